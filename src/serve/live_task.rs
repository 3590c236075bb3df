//! A live pipeline under `serve`: its task follows Redis ([`crate::live::follow_with`])
//! for as long as the pipeline exists, instead of running on a schedule.
//!
//! - An attempt that ends on its own (Redis unreachable at start, the first sync
//!   failed, a fatal error such as notifications turned off) is started again after
//!   a wait that doubles from 1 s to 30 s ([`crate::backoff::LIVE_RETRY`]); `/readyz` names the error
//!   meanwhile.
//! - A new configuration (a changed file), removal, or shutdown drains the attempt
//!   (pending changes applied for at most `live.drain_timeout`); a changed pipeline
//!   then starts over with its new configuration. Past the shutdown timeout,
//!   `interrupt` drops the attempt where it is (what was pending is read by the next
//!   start's first sync).
//! - An attempt that failed before any sync ended (Redis unreachable, the
//!   subscription refused) counts as a run with outcome `error`, as a scheduled run
//!   that cannot start does; a sync that ended is counted by its own outcome.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::live_view::LiveView;
use super::observer::ServeObserver;
use super::state::{Running, Trigger};
use super::task::{PipelineTask, StateProgress};
use super::time::unix_seconds;
use super::LOG_TARGET;
use crate::backoff::LIVE_RETRY;
use crate::config::LoadedPipeline;
use crate::live::{self, LiveSummary};

/// Why a live pipeline's task stopped following.
pub enum FollowEnd {
    /// Removed, or shutdown: the task ends.
    Stop,
    /// Its file changed: the task takes the new configuration.
    Reconfigured,
}

/// How one attempt ended.
enum Attempt {
    /// It returned on its own (a failure) or after a drain.
    Returned(Box<anyhow::Result<LiveSummary>>),
    /// Dropped past the shutdown timeout.
    Interrupted,
}

/// Whether `pipeline` follows changes under `serve`.
pub fn is_live(loaded: &LoadedPipeline) -> bool {
    loaded.pipeline.live.as_ref().is_some_and(|live| live.enabled)
}

impl PipelineTask {
    /// Follows `loaded` until the pipeline is removed, changed, or serve stops.
    pub(super) async fn follow(&mut self, loaded: Arc<LoadedPipeline>) -> FollowEnd {
        let _turn = self.run_lock.lock().await;
        self.shared.update(&self.name, self.generation, |state| {
            state.live = Some(LiveView::new());
            state.next_run = None;
        });
        let mut retry_wait = LIVE_RETRY;
        loop {
            let since = Utc::now();
            let started = std::time::Instant::now();
            let runs_before = self.runs();
            self.attempt_started(&loaded, since);

            let drain = CancellationToken::new();
            let progress = StateProgress {
                shared: self.shared.clone(),
                generation: self.generation,
            };
            let observer = ServeObserver {
                shared: self.shared.clone(),
                name: self.name.clone(),
                generation: self.generation,
            };
            let run = live::follow_with(
                &loaded.pipeline,
                self.options.clone(),
                drain.clone(),
                &progress,
                &observer,
            );
            let mut run = std::pin::pin!(run);
            let mut ending: Option<FollowEnd> = None;
            let attempt = loop {
                tokio::select! {
                    biased;
                    _ = self.interrupt.cancelled() => break Attempt::Interrupted,
                    result = &mut run => break Attempt::Returned(Box::new(result)),
                    _ = self.stop.cancelled(), if ending.is_none() => {
                        ending = Some(FollowEnd::Stop);
                        drain.cancel();
                    }
                    changed = self.config.changed(), if ending.is_none() => {
                        ending = Some(if changed.is_ok() { FollowEnd::Reconfigured } else { FollowEnd::Stop });
                        drain.cancel();
                    }
                }
            };
            let first_synced = self.shared.pipelines().get(&self.name).is_some_and(|s| {
                s.generation == self.generation && s.live.as_ref().is_some_and(|l| l.following_since.is_some())
            });
            let failure = self.ended(&attempt, ending.is_some());
            if failure.is_some() && self.runs() == runs_before {
                let seconds = started.elapsed().as_secs_f64();
                self.shared
                    .metrics
                    .sync_ended(&self.name, None, seconds, unix_seconds(Utc::now()));
            }
            let retry = failure.is_some().then(|| {
                if first_synced {
                    retry_wait.reset();
                }
                retry_wait.advance()
            });
            let retry_at = retry.map(|wait| Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
            // Counted before the view lets the attempt's state go.
            self.shared.sample_live();
            self.shared.metrics.live_stopped(&self.name);
            self.shared.update(&self.name, self.generation, |state| {
                state.running = None;
                state.last_ended = Some(Utc::now());
                if let Some(live) = &mut state.live {
                    live.attempt_ended(failure.clone(), retry_at);
                }
            });
            if let Some(end) = ending {
                return end;
            }
            let Some(wait) = retry else {
                // Interrupted: serve is quitting.
                return FollowEnd::Stop;
            };
            tracing::warn!(
                target: LOG_TARGET,
                event = "live_retry",
                pipeline = %self.name,
                retry_in_seconds = wait.as_secs_f64(),
                "following again in {} s",
                wait.as_secs()
            );
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return FollowEnd::Stop,
                changed = self.config.changed() => {
                    return if changed.is_ok() { FollowEnd::Reconfigured } else { FollowEnd::Stop };
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Marks an attempt started at `since`: the pipeline's state, the metric, the log line.
    fn attempt_started(&self, loaded: &LoadedPipeline, since: chrono::DateTime<Utc>) {
        self.shared.update(&self.name, self.generation, |state| {
            state.running = Some(Running {
                trigger: Trigger::Start,
                since,
                live: None,
            });
            state.last_started = Some(since);
            if let Some(live) = &mut state.live {
                live.attempt_started();
            }
        });
        self.shared.metrics.live_started(&self.name);
        tracing::info!(
            target: LOG_TARGET,
            event = "live_started",
            pipeline = %self.name,
            file = %loaded.path.display(),
            "subscribing to keyspace notifications, then the first sync"
        );
    }

    /// Syncs (first or resync) counted for this pipeline so far.
    fn runs(&self) -> u64 {
        self.shared
            .pipelines()
            .get(&self.name)
            .filter(|state| state.generation == self.generation)
            .map_or(0, |state| state.runs)
    }

    /// Logs how an attempt ended; returns its error when it failed on its own.
    fn ended(&self, attempt: &Attempt, asked_to_stop: bool) -> Option<String> {
        let result = match attempt {
            Attempt::Interrupted => {
                tracing::warn!(
                    target: LOG_TARGET,
                    event = "live_ended",
                    pipeline = %self.name,
                    status = "interrupted",
                    "stopped following: interrupted past the shutdown timeout (the next start's first sync reads what was pending)"
                );
                return None;
            }
            Attempt::Returned(result) => result.as_ref(),
        };
        let summary = match result {
            Err(error) => {
                let message = format!("{error:#}");
                tracing::error!(
                    target: LOG_TARGET,
                    event = "live_ended",
                    pipeline = %self.name,
                    status = "error",
                    error = %message,
                    "cannot follow: {message}"
                );
                return Some(message);
            }
            Ok(summary) => summary,
        };
        let failure = match (&summary.error, summary.is_failure()) {
            (Some(error), true) => Some(error.clone()),
            (None, true) => Some("the live run failed".to_owned()),
            _ if !asked_to_stop => Some("the live run ended on its own".to_owned()),
            _ => None,
        };
        let status = if failure.is_some() { "failed" } else { "stopped" };
        let resyncs: Vec<String> = summary.resyncs.iter().map(|(r, n)| format!("{r}={n}")).collect();
        macro_rules! end {
            ($level:ident) => {
                tracing::$level!(
                    target: LOG_TARGET,
                    event = "live_ended",
                    pipeline = %self.name,
                    status,
                    events = summary.events,
                    upserts = summary.upserts,
                    deletes = summary.deletes,
                    failed = summary.failed,
                    skipped = summary.skipped,
                    pending = summary.pending,
                    lag_seconds = summary.lag_seconds,
                    dropped = summary.dropped,
                    syncs = summary.syncs,
                    resyncs = %resyncs.join(","),
                    seconds = summary.seconds,
                    error = failure.as_deref().unwrap_or(""),
                    "stopped following ({status}): {} events, {} upserts + {} deletes applied, {} failed, {} pending at the end, {} syncs{}",
                    summary.events,
                    summary.upserts,
                    summary.deletes,
                    summary.failed,
                    summary.pending,
                    summary.syncs,
                    failure.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                )
            };
        }
        if failure.is_some() {
            end!(error);
        } else {
            end!(info);
        }
        failure
    }
}
