//! What a caller of [`super::follow_with`] is told while a pipeline follows Redis:
//! the shared [`LiveState`] once subscribed (pending keys, lag, counters), each full
//! sync's end, each resync's reason, and each follow phase's counters and summary.
//! `serve` builds its readiness, `/status` and metrics from it; `run --follow`
//! observes nothing.

use std::sync::Arc;

use crate::pipeline::executor::{PipelineSummary, Progress, RunCounters};
use crate::stages::source::redis::change_source::pending::{LiveState, Reason};

/// Told what a live run does, as it does it. Every method defaults to nothing.
pub trait Observer: Send + Sync {
    /// The subscriptions are confirmed; `state` is shared with the run until it ends.
    fn subscribed(&self, _state: Arc<LiveState>) {}
    /// A full sync ended: the first one (`first`), or a resync.
    fn synced(&self, _first: bool, _summary: &PipelineSummary) {}
    /// A resync starts, for `reason` (the first by priority when several were due).
    fn resync(&self, _reason: Reason) {}
    /// A follow phase's stages run; `counters` count what it applies until it ends.
    fn following(&self, _counters: RunCounters) {}
    /// A follow phase ended with `summary` (written: upserts, deleted: deletes).
    fn applied(&self, _summary: &PipelineSummary) {}
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Observer for Unobserved {}

/// The progress of a follow phase: shown by `progress`, and told to `observer`.
pub(super) struct Tee<'a> {
    pub progress: &'a dyn Progress,
    pub observer: &'a dyn Observer,
}

impl Progress for Tee<'_> {
    fn started(&self, pipeline: &str, live: RunCounters) {
        self.observer.following(live.clone());
        self.progress.started(pipeline, live);
    }

    fn finished(&self, pipeline: &str) {
        self.progress.finished(pipeline);
    }
}
