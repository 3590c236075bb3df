//! Shutdown: the signals a process obeys and the cancellation every long-running part
//! listens to. `run` and `serve` share it; the library itself never installs a
//! signal handler (the CLI hands it a [`CancellationToken`]).
//!
//! - SIGINT (Ctrl-C) and SIGTERM ask for a clean stop: stop reading, drain what is in
//!   flight, skip stale deletion. A second one quits at once, with 128 + the
//!   signal's number (130 for SIGINT, 143 for SIGTERM).
//! - SIGHUP asks `serve` to reload its pipeline files; only a process that asks for
//!   it ([`Signals::new`] with `reload`) replaces SIGHUP's default (terminate).

use std::io;

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A signal the process received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C): stop.
    Interrupt,
    /// SIGTERM: stop.
    Terminate,
    /// SIGHUP: reload the configuration.
    Hangup,
}

impl Signal {
    /// The signal's usual name (`SIGTERM`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// The exit code of a process quit at once by this signal: 128 + its number.
    pub fn exit_code(self) -> i32 {
        128 + match self {
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
            Signal::Hangup => 1,
        }
    }

    /// Whether the signal asks the process to stop.
    pub fn is_stop(self) -> bool {
        matches!(self, Signal::Interrupt | Signal::Terminate)
    }
}

/// The signals a process listens to, from the moment this is made (inside a tokio
/// runtime) until it is dropped.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening to SIGINT and SIGTERM, and to SIGHUP when `reload` is set.
    pub fn new(reload: bool) -> io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: if reload {
                Some(signal(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> Signal {
        let hangup = async {
            match &mut self.hangup {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
            _ = hangup => Signal::Hangup,
        }
    }

    /// The next signal that asks the process to stop (SIGHUP is not one).
    pub async fn next_stop(&mut self) -> Signal {
        loop {
            let signal = self.recv().await;
            if signal.is_stop() {
                return signal;
            }
        }
    }
}

/// What the first signal does to a one-shot `run`.
pub const ONE_SHOT_STOP: &str =
    "stopping reading, draining what is in flight, skipping stale deletion; the run ends INTERRUPTED (exit 1)";

/// What the first signal does to `run --follow`.
pub const FOLLOW_STOP: &str =
    "stopping following, applying the changes already received (at most live.drain_timeout); then exit 0";

/// What the first signal does to `verify`.
pub const VERIFY_STOP: &str = "stopping the comparison; what was not compared is reported as not compared (exit 1)";

/// What `run` does with signals: the first SIGINT or SIGTERM cancels `cancel` (the
/// run stops reading and drains) and prints `SIGNAL received: {first}`, where `first`
/// says what the command does now ([`ONE_SHOT_STOP`], [`FOLLOW_STOP`]); the second
/// calls `at_once` then quits the process with [`Signal::exit_code`]. The returned
/// task ends when aborted; abort and await it once the work is done.
pub fn cancel_on_stop_signal(
    cancel: CancellationToken,
    first: &'static str,
    at_once: impl FnOnce(Signal) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut signals = match Signals::new(false) {
            Ok(signals) => signals,
            Err(error) => {
                tracing::warn!("cannot watch SIGINT and SIGTERM: {error}");
                return;
            }
        };
        let signal = signals.next_stop().await;
        eprintln!("{} received: {first} (send it again to quit at once)", signal.name());
        cancel.cancel();
        let second = signals.next_stop().await;
        at_once(second);
        std::process::exit(second.exit_code());
    })
}
