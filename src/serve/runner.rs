//! One pipeline under `serve`: a task that waits for its next time (schedule,
//! start, or a trigger), runs the pipeline through the executor, and records the
//! run (state, metrics, one log line at start and one at end); a live pipeline's
//! task follows it instead ([`super::live_task`]). Runs of one pipeline
//! never overlap: the task runs one at a time, and a time that passes while a run is
//! still going is skipped and counted. A new configuration (a changed file) is taken
//! between runs; `stop` ends the task between runs too, so a run in progress always
//! finishes (or drains, once `interrupt` fires).

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::live_task::{is_live, FollowEnd};
use super::state::{Running, Trigger};
use super::task::{PipelineTask, StateProgress};
use super::time::unix_seconds;
use super::LOG_TARGET;
use crate::config::schedule::Schedule;
use crate::config::LoadedPipeline;
use crate::pipeline::executor::{self, PipelineSummary};

impl PipelineTask {
    /// Runs until `stop`; removes the pipeline's state and metrics at the end when this
    /// task still owns them.
    pub async fn run(mut self) {
        'config: loop {
            let loaded = self.config.borrow_and_update().clone();
            if is_live(&loaded) {
                match self.follow(loaded).await {
                    FollowEnd::Stop => break 'config,
                    FollowEnd::Reconfigured => continue 'config,
                }
            }
            // Not (or no longer) live.
            self.shared.metrics.remove_live(&self.name);
            self.shared
                .update(&self.name, self.generation, |state| state.live = None);
            let (schedule, at_start) = match &loaded.pipeline.schedule {
                // Checked when the file was loaded.
                Some(config) => match Schedule::build(config) {
                    Ok(schedule) => (Some(schedule), config.at_start),
                    Err(_) => (None, true),
                },
                None => (None, true),
            };
            let anchor = Utc::now();
            let mut next: Option<(DateTime<Utc>, Trigger)> = if at_start {
                Some((anchor, Trigger::Start))
            } else {
                schedule
                    .as_ref()
                    .and_then(|s| s.next_after(anchor, anchor))
                    .map(|t| (t, Trigger::Schedule))
            };
            loop {
                self.set_next(next.map(|(t, _)| t));
                let due = async {
                    match next {
                        Some((time, _)) => {
                            let wait = (time - Utc::now()).to_std().unwrap_or_default();
                            tokio::time::sleep(wait).await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let trigger = tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => break 'config,
                    changed = self.config.changed() => {
                        if changed.is_err() {
                            break 'config;
                        }
                        continue 'config;
                    }
                    _ = self.trigger.notified() => Trigger::Manual,
                    _ = due => next.map_or(Trigger::Schedule, |(_, trigger)| trigger),
                };
                let tick = next.map(|(t, _)| t);
                self.run_once(&loaded, trigger).await;

                // The time that started this run is used; times that passed during it
                // are skipped.
                next = match &schedule {
                    None => None,
                    Some(schedule) => {
                        let now = Utc::now();
                        let mut upcoming = match (trigger, tick) {
                            (Trigger::Manual, Some(tick)) => Some(tick),
                            (_, Some(tick)) => schedule.next_after(tick.max(anchor), anchor),
                            (_, None) => schedule.next_after(anchor, anchor),
                        };
                        let mut skipped = 0u64;
                        while let Some(time) = upcoming.filter(|t| *t <= now) {
                            skipped += 1;
                            upcoming = schedule.next_after(time, anchor);
                        }
                        if skipped > 0 {
                            self.ticks_skipped(skipped, schedule);
                        }
                        upcoming.map(|t| (t, Trigger::Schedule))
                    }
                };
            }
        }
        let mut pipelines = self.shared.pipelines();
        if pipelines
            .get(&self.name)
            .is_some_and(|s| s.generation == self.generation)
        {
            pipelines.remove(&self.name);
            self.shared.metrics.remove_pipeline(&self.name);
        }
    }

    fn set_next(&self, next: Option<DateTime<Utc>>) {
        self.shared
            .update(&self.name, self.generation, |state| state.next_run = next);
    }

    fn ticks_skipped(&self, n: u64, schedule: &Schedule) {
        self.shared.metrics.ticks_skipped(&self.name, n);
        self.shared
            .update(&self.name, self.generation, |state| state.skipped_ticks += n);
        tracing::warn!(
            target: LOG_TARGET,
            pipeline = %self.name,
            skipped = n,
            schedule = %schedule.describe(),
            "{n} scheduled run(s) skipped: the previous run was still going"
        );
    }

    /// One run: state, metrics and log lines around the executor.
    async fn run_once(&self, loaded: &LoadedPipeline, trigger: Trigger) {
        let _turn = self.run_lock.lock().await;
        let started_at = Utc::now();
        let started = Instant::now();
        self.shared.update(&self.name, self.generation, |state| {
            state.running = Some(Running {
                trigger,
                since: started_at,
                live: None,
            });
            state.last_started = Some(started_at);
        });
        self.shared.metrics.run_started(&self.name);
        tracing::info!(
            target: LOG_TARGET,
            event = "run_started",
            pipeline = %self.name,
            trigger = trigger.as_str(),
            file = %loaded.path.display(),
            "run started"
        );
        let progress = StateProgress {
            shared: self.shared.clone(),
            generation: self.generation,
        };
        let cancel = self.interrupt.child_token();
        let result = executor::run_pipeline(&loaded.pipeline, self.options.clone(), cancel, &progress).await;
        let seconds = started.elapsed().as_secs_f64();
        let ended_at = Utc::now();
        match result {
            Ok(summary) => {
                self.shared
                    .metrics
                    .run_ended(&self.name, Some(&summary), seconds, unix_seconds(ended_at));
                log_end(&summary, trigger);
                self.shared.update(&self.name, self.generation, |state| {
                    state.running = None;
                    state.runs += 1;
                    state.last_ended = Some(ended_at);
                    state.succeeded |= summary.status == executor::Status::Ok;
                    state.last_summary = Some(summary);
                    state.last_error = None;
                });
            }
            Err(error) => {
                let message = format!("{error:#}");
                self.shared
                    .metrics
                    .run_ended(&self.name, None, seconds, unix_seconds(ended_at));
                tracing::error!(
                    target: LOG_TARGET,
                    event = "run_ended",
                    pipeline = %self.name,
                    trigger = trigger.as_str(),
                    status = "error",
                    seconds,
                    error = %message,
                    "run could not start: {message}"
                );
                self.shared.update(&self.name, self.generation, |state| {
                    state.running = None;
                    state.runs += 1;
                    state.last_ended = Some(ended_at);
                    state.last_error = Some(message);
                });
            }
        }
    }
}

/// The line logged when a run ends, with the summary's figures as fields.
fn log_end(summary: &PipelineSummary, trigger: Trigger) {
    let status = summary.status.as_str();
    let error = summary.error.as_deref().unwrap_or("");
    macro_rules! end {
        ($level:ident) => {
            tracing::$level!(
                target: LOG_TARGET,
                event = "run_ended",
                pipeline = %summary.pipeline,
                trigger = trigger.as_str(),
                status,
                read = summary.read,
                written = summary.written,
                unchanged = summary.unchanged,
                filtered = summary.filtered,
                skipped = summary.skipped,
                failed = summary.failed,
                deleted_stale = summary.deleted_stale,
                seconds = summary.seconds,
                error,
                "run ended {status}: {} read, {} written, {} unchanged, {} filtered, {} skipped, {} failed, {} deleted as stale, {:.2}s{}",
                summary.read,
                summary.written,
                summary.unchanged,
                summary.filtered,
                summary.skipped,
                summary.failed,
                summary.deleted_stale,
                summary.seconds,
                if error.is_empty() { String::new() } else { format!(": {error}") }
            )
        };
    }
    match summary.status {
        executor::Status::Ok => end!(info),
        executor::Status::Interrupted => end!(warn),
        executor::Status::Failed => end!(error),
    }
}
