//! `serve`: one long-running process for a set of pipeline files. Each pipeline
//! runs on its schedule, or once at start ([`runner`]), or, when it is live, is
//! followed for as long as it is in the set ([`live_task`]); the set is reloaded when a
//! file changes ([`file_watch`]) or on SIGHUP, validated whole first, and applied by name
//! and content ([`supervisor`]); [`http`] exposes metrics, health and status; SIGTERM
//! stops scheduling and drains ([`supervisor::Supervisor::shutdown`]).

pub mod file_watch;
pub mod http;
pub mod live_task;
pub mod live_view;
pub mod metrics;
mod observer;
pub mod runner;
pub mod state;
pub mod supervisor;
mod task;
mod time;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, LoadedPipeline};
use crate::shutdown::{Signal, Signals};
use crate::stages::RunOptions;
use file_watch::{WatchMode, Watcher};
use state::Shared;
use supervisor::{Changes, Drained, Supervisor};
use time::{rfc3339, unix_seconds};

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
}

/// Runs `serve` over an already validated set until a stop signal; returns how the
/// runs in progress ended.
pub async fn serve(
    options: Options,
    initial: Vec<LoadedPipeline>,
    listener: std::net::TcpListener,
) -> anyhow::Result<Drained> {
    let mut signals = Signals::new(true)?;
    let shared = Arc::new(Shared::new(options.allow_trigger));
    let now = Utc::now();
    shared.metrics.loaded_at_start(unix_seconds(now));
    shared.reload().last_success = Some(rfc3339(now));
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
    let names: Vec<String> = initial.iter().map(|l| l.pipeline.name.clone()).collect();
    let address = listener.local_addr()?;
    supervisor.apply(initial);
    tracing::info!(
        target: LOG_TARGET,
        event = "started",
        listen = %address,
        pipelines = %names.join(","),
        "serving {} pipeline(s) on http://{address}: {}",
        names.len(),
        names.join(", ")
    );

    let http_stop = CancellationToken::new();
    let mut http = http::spawn(listener, shared.clone(), http_stop.clone())?;
    let (mut watcher, mut changes) = Watcher::new(options.watch, options.paths.clone());
    warn_unwatched(watcher.rewatch());

    let stopped_by = loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Signal::Hangup => reload(&mut supervisor, &shared, &options.paths, "SIGHUP"),
                stop => break Ok(stop),
            },
            Some(()) = changes.recv() => {
                debounce(&mut changes).await;
                warn_unwatched(watcher.rewatch());
                reload(&mut supervisor, &shared, &options.paths, "file change");
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
    tokio::spawn(async move {
        let signal = signals.next_stop().await;
        eprintln!(
            "second {}: quitting at once, exit {}: runs in progress were not drained",
            signal.name(),
            signal.exit_code()
        );
        std::process::exit(signal.exit_code());
    });
    let drained = supervisor.shutdown(options.shutdown_timeout).await;
    match &drained {
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
    http_stop.cancel();
    let _ = http.await;
    stopped_by.map(|_| drained)
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

fn warn_unwatched(problems: Vec<String>) {
    for problem in problems {
        tracing::warn!(target: LOG_TARGET, "cannot watch {problem}: changes there need SIGHUP to be seen");
    }
}

/// Loads the paths again; a valid set replaces the running one, an invalid one
/// changes nothing. One log line either way.
fn reload(supervisor: &mut Supervisor, shared: &Shared, paths: &[PathBuf], cause: &str) {
    let now = Utc::now();
    let loaded = config::discover(paths)
        .map_err(|error| vec![error.to_string()])
        .and_then(|files| match crate::pipeline::load_all(&files) {
            (loaded, diagnostics) if diagnostics.is_empty() => Ok(loaded),
            (_, diagnostics) => Err(diagnostics.iter().map(ToString::to_string).collect()),
        });
    let mut state = shared.reload();
    state.at = Some(rfc3339(now));
    match loaded {
        Ok(set) => {
            let Changes {
                added,
                changed,
                removed,
                unchanged,
            } = supervisor.apply(set);
            shared.metrics.reloaded(true, unix_seconds(now));
            tracing::info!(
                target: LOG_TARGET,
                event = "reload",
                result = "success",
                cause,
                added = %added.join(","),
                changed = %changed.join(","),
                removed = %removed.join(","),
                unchanged,
                "reload ({cause}): added [{}], changed [{}], removed [{}], {unchanged} unchanged",
                added.join(", "),
                changed.join(", "),
                removed.join(", "),
            );
            *state = state::ReloadState {
                result: Some("success"),
                at: Some(rfc3339(now)),
                last_success: Some(rfc3339(now)),
                errors: Vec::new(),
                added,
                changed,
                removed,
                unchanged,
            };
        }
        Err(errors) => {
            shared.metrics.reloaded(false, unix_seconds(now));
            tracing::error!(
                target: LOG_TARGET,
                event = "reload",
                result = "failure",
                cause,
                errors = %errors.join("\n"),
                "reload ({cause}) failed, the running pipelines are kept: {}",
                errors.join("; ")
            );
            state.result = Some("failure");
            state.errors = errors;
            state.added.clear();
            state.changed.clear();
            state.removed.clear();
            state.unchanged = 0;
        }
    }
}
