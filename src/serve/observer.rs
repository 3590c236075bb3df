//! The [`Observer`] `serve` gives [`crate::live::follow_with`]: it keeps a live
//! pipeline's view (`/status`, `/readyz`), its metrics and its log lines (following
//! started, each resync) current while the pipeline follows.

use std::sync::Arc;

use chrono::Utc;

use super::live_view::{LiveView, Phase};
use super::state::Shared;
use super::time::unix_seconds;
use super::LOG_TARGET;
use crate::live::Observer;
use crate::pipeline::executor::{PipelineSummary, RunCounters};
use crate::stages::source::redis::change_source::pending::{LiveState, Reason};

/// Keeps a live pipeline's view, metrics and log lines current while it follows.
pub struct ServeObserver {
    pub shared: Arc<Shared>,
    pub name: String,
    pub generation: u64,
}

impl ServeObserver {
    fn view(&self, change: impl FnOnce(&mut LiveView)) {
        self.shared.update(&self.name, self.generation, |state| {
            if let Some(live) = &mut state.live {
                change(live);
            }
        });
    }
}

impl Observer for ServeObserver {
    fn subscribed(&self, state: Arc<LiveState>) {
        self.view(|live| live.state = Some(state));
    }

    fn synced(&self, first: bool, summary: &PipelineSummary) {
        let ended = Utc::now();
        let ok = summary.error.is_none() && summary.counts_add_up;
        self.shared
            .metrics
            .sync_ended(&self.name, Some(summary), summary.seconds, unix_seconds(ended));
        self.shared.update(&self.name, self.generation, |state| {
            state.runs += 1;
            state.last_ended = Some(ended);
            state.last_summary = Some(summary.clone());
            // The sync's counters, shown while it ran, are in its summary now.
            if let Some(running) = &mut state.running {
                running.live = None;
            }
            if first && ok {
                state.succeeded = true;
            }
            if let Some(live) = &mut state.live {
                live.syncs += 1;
                if ok {
                    live.failing_since = None;
                    live.failure = None;
                } else if !first {
                    live.failed(summary.error.as_deref().unwrap_or("its counts do not add up"));
                }
                if ok {
                    live.set_phase(Phase::Following);
                    if first {
                        live.following_since = Some(ended);
                    }
                }
            }
        });
        if first && ok {
            tracing::info!(
                target: LOG_TARGET,
                event = "following",
                pipeline = %self.name,
                read = summary.read,
                written = summary.written,
                unchanged = summary.unchanged,
                filtered = summary.filtered,
                skipped = summary.skipped,
                failed = summary.failed,
                deleted_stale = summary.deleted_stale,
                seconds = summary.seconds,
                "following changes after the first sync: {} read, {} written, {} unchanged, {} deleted as stale, {:.2}s",
                summary.read,
                summary.written,
                summary.unchanged,
                summary.deleted_stale,
                summary.seconds
            );
        } else if !ok {
            if !first {
                self.shared.metrics.live_resync_failed(&self.name);
            }
            let error = summary.error.as_deref().unwrap_or("its counts do not add up");
            tracing::warn!(
                target: LOG_TARGET,
                event = if first { "first_sync_failed" } else { "resync_failed" },
                pipeline = %self.name,
                error,
                "{} failed: {error}",
                if first { "the first sync" } else { "a resync" }
            );
        }
    }

    fn resync(&self, reason: Reason) {
        self.shared.metrics.live_resync(&self.name, reason);
        self.view(|live| {
            live.set_phase(Phase::Resyncing);
            *live.resyncs.entry(reason.name()).or_default() += 1;
        });
        tracing::info!(
            target: LOG_TARGET,
            event = "resync",
            pipeline = %self.name,
            reason = reason.name(),
            "resync started ({})",
            reason.name()
        );
    }

    fn following(&self, counters: RunCounters) {
        self.view(|live| {
            live.set_phase(Phase::Following);
            live.phase_counters = Some(counters);
        });
    }

    fn applied(&self, summary: &PipelineSummary) {
        self.shared.metrics.live_phase_ended(&self.name, summary);
        if summary.error.is_some() {
            self.shared.metrics.live_resync_failed(&self.name);
        }
        self.view(|live| {
            live.phase_counters = None;
            live.upserts += summary.written;
            live.deletes += summary.deleted;
            if let Some(error) = &summary.error {
                live.failed(error);
            }
        });
    }
}
