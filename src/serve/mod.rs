//! `serve`: one long-running process for a set of pipeline files. Each pipeline
//! runs on its schedule, or once at start ([`runner`]), or, when it is live, is
//! followed for as long as it is in the set ([`live_task`]); the set is loaded at start
//! and reloaded when a file changes ([`file_watch`]) or on SIGHUP, every valid file
//! applied and each invalid one reported ([`reload`]), by name and content
//! ([`supervisor`]); [`http`] exposes metrics, health and status, guarded by
//! [`auth`]; SIGTERM stops scheduling and drains ([`supervisor::Supervisor::shutdown`]).

pub mod auth;
pub mod file_watch;
pub mod http;
pub mod live_task;
pub mod live_view;
pub mod metrics;
mod observer;
pub mod process_metrics;
pub mod reload;
pub mod runner;
pub mod state;
pub mod supervisor;
mod task;
mod time;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::shutdown::{Signal, Signals};
use crate::stages::RunOptions;
use auth::Access;
use file_watch::{WatchMode, Watcher};
use state::{Shared, WatchState};
use supervisor::{Drained, Supervisor};

/// Target of the log lines of runs and reloads.
pub const LOG_TARGET: &str = "redis_connector::serve";

/// Quiet time after a file change before the reload: a `git checkout` or a
/// ConfigMap update is many events within a few milliseconds.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a burst of changes delays the reload.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The paths given (files, folders, patterns), read again at each reload.
    pub paths: Vec<PathBuf>,
    pub watch: WatchMode,
    /// Longest wait for runs in progress at shutdown before interrupting them.
    pub shutdown_timeout: Duration,
    pub allow_trigger: bool,
    pub allow_mass_delete: bool,
    /// A set with any problem changes nothing (at start: `serve` does not start).
    pub strict: bool,
    /// Token and `Host` rules of the endpoints.
    pub access: Access,
}

/// Loads the paths and runs `serve` until a stop signal; returns how the runs in
/// progress ended.
pub async fn serve(options: Options, listener: std::net::TcpListener) -> anyhow::Result<Drained> {
    let mut signals = Signals::new(true)?;
    let shared = Arc::new(Shared::new(options.allow_trigger, options.access.clone()));
    let mut supervisor = Supervisor::new(
        shared.clone(),
        RunOptions {
            dry_run: false,
            allow_mass_delete: options.allow_mass_delete,
            sample: 0,
            // Change-aware: a scheduled run writes only what changed.
            full: false,
            follow: false,
        },
    );
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() && !options.access.has_token() {
        tracing::warn!(
            target: LOG_TARGET,
            "/status (file paths, errors, host names) is readable by anyone who can reach {address}: give --auth-token-file to guard it"
        );
    }
    // Watched before the first load: a file added meanwhile is seen.
    let (mut watcher, mut changes) = Watcher::new(options.watch, options.paths.clone());
    arm(&mut watcher, &shared, options.watch);
    reload::reload(&mut supervisor, &shared, &options.paths, options.strict, "start");
    log_started(&supervisor, address);

    let http_stop = CancellationToken::new();
    let mut http = http::spawn(listener, shared.clone(), http_stop.clone())?;
    let mut rearm = tokio::time::interval(file_watch::RETRY);
    rearm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let load = |supervisor: &mut Supervisor, cause: &str| {
        reload::reload(supervisor, &shared, &options.paths, options.strict, cause)
    };

    let stopped_by = loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Signal::Hangup => {
                    arm(&mut watcher, &shared, options.watch);
                    load(&mut supervisor, "SIGHUP");
                }
                stop => break Ok(stop),
            },
            Some(()) = changes.recv() => {
                debounce(&mut changes).await;
                arm(&mut watcher, &shared, options.watch);
                load(&mut supervisor, "file change");
            }
            _ = rearm.tick() => {
                // A watch that died is set again; what changed meanwhile was not seen.
                if !watcher.is_up() && arm(&mut watcher, &shared, options.watch) {
                    load(&mut supervisor, "watch re-armed");
                }
            }
            served = &mut http => break Err(match served {
                Ok(Ok(())) | Err(_) => anyhow::anyhow!("the HTTP server stopped"),
                Ok(Err(error)) => anyhow::anyhow!("the HTTP server failed: {error}"),
            }),
        }
    };
    drop(watcher);
    let signal = stopped_by.as_ref().map_or("an error", |s| s.name());
    tracing::info!(
        target: LOG_TARGET,
        event = "stopping",
        signal,
        timeout_seconds = options.shutdown_timeout.as_secs_f64(),
        "{signal}: no new runs; waiting up to {:?} for the runs in progress (send it again to quit at once)",
        options.shutdown_timeout
    );
    // A second stop signal quits at once.
    quit_on_second_signal(signals);
    let drained = supervisor.shutdown(options.shutdown_timeout).await;
    log_stopped(&drained);
    http_stop.cancel();
    let _ = http.await;
    stopped_by.map(|_| drained)
}

/// Logs that serve started: its address and the pipelines it runs.
fn log_started(supervisor: &Supervisor, address: std::net::SocketAddr) {
    let names: Vec<String> = supervisor.running().iter().map(|l| l.pipeline.name.clone()).collect();
    tracing::info!(
        target: LOG_TARGET,
        event = "started",
        listen = %address,
        pipelines = %names.join(","),
        "serving {} pipeline(s) on http://{address}: {}",
        names.len(),
        names.join(", ")
    );
}

/// Quits the process at once on a second stop signal, runs in progress not drained.
fn quit_on_second_signal(mut signals: Signals) {
    tokio::spawn(async move {
        let signal = signals.next_stop().await;
        eprintln!(
            "second {}: quitting at once, exit {}: runs in progress were not drained",
            signal.name(),
            signal.exit_code()
        );
        std::process::exit(signal.exit_code());
    });
}

/// Logs that serve stopped, naming the runs interrupted past the timeout.
fn log_stopped(drained: &Drained) {
    match drained {
        Drained::InTime => {
            tracing::info!(target: LOG_TARGET, event = "stopped", "every run in progress finished; stopped")
        }
        Drained::Interrupted(names) => tracing::warn!(
            target: LOG_TARGET,
            event = "stopped",
            interrupted = %names.join(","),
            "stopped; interrupted: {}",
            names.join(", ")
        ),
    }
}

/// Waits until changes stop arriving for [`DEBOUNCE`] (at most [`DEBOUNCE_MAX`]).
async fn debounce(changes: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    loop {
        tokio::select! {
            more = changes.recv() => if more.is_none() { return },
            _ = tokio::time::sleep(DEBOUNCE) => return,
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Sets the watches again; records and logs whether they are up. Returns whether
/// every path is watched.
fn arm(watcher: &mut Watcher, shared: &Shared, mode: WatchMode) -> bool {
    let was_up = shared.watch_is_up();
    let problems = watcher.rewatch();
    let up = watcher.is_up();
    if !up && was_up {
        tracing::warn!(
            target: LOG_TARGET,
            event = "watch_down",
            problems = %problems.join("\n"),
            "cannot watch {}: trying again every {:?}; SIGHUP reloads meanwhile",
            problems.join("; "),
            file_watch::RETRY
        );
    } else if up && !was_up {
        tracing::info!(target: LOG_TARGET, event = "watch_up", "the pipeline files are watched again");
    }
    shared.set_watch(WatchState {
        mode: match mode {
            WatchMode::Native => "native",
            WatchMode::Poll(_) => "poll",
            WatchMode::Off => "off",
        },
        up,
        problems: watcher.problems(),
    });
    up
}
