//! How a running pipeline shows its progress: the executor hands a [`RunCounters`]
//! view to whatever [`Progress`] the caller gives (a progress bar, log lines, nothing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::stats::StageCounters;

/// A live, read-only view of a running pipeline's counters.
#[derive(Debug, Clone)]
pub struct RunCounters {
    pub(crate) source: Arc<StageCounters>,
    pub(crate) sink: Arc<StageCounters>,
    pub(crate) estimated_total: Arc<AtomicU64>,
}

impl RunCounters {
    /// Keys read so far (including the ones skipped).
    pub fn read(&self) -> u64 {
        self.source.received.load(Ordering::Relaxed) + self.source.skipped.load(Ordering::Relaxed)
    }

    /// Documents written so far.
    pub fn written(&self) -> u64 {
        self.sink.out.load(Ordering::Relaxed)
    }

    /// Documents deleted so far (live mode).
    pub fn deleted(&self) -> u64 {
        self.sink.deleted.load(Ordering::Relaxed)
    }

    /// Records that failed so far in the sink.
    pub fn failed(&self) -> u64 {
        self.sink.failed.load(Ordering::Relaxed)
    }

    /// Documents the index already held with the same content (not written) so far.
    pub fn unchanged(&self) -> u64 {
        self.sink.unchanged.load(Ordering::Relaxed)
    }

    /// Keys the source expects to read (`0` until it knows).
    pub fn estimated_total(&self) -> u64 {
        self.estimated_total.load(Ordering::Relaxed)
    }
}

/// Receives the start and end of each pipeline run.
pub trait Progress: Send + Sync {
    /// The pipeline's stages are running; `live` can be polled until [`Progress::finished`].
    fn started(&self, pipeline: &str, live: RunCounters);
    /// The pipeline ended (its summary follows).
    fn finished(&self, pipeline: &str);
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn started(&self, _pipeline: &str, _live: RunCounters) {}
    fn finished(&self, _pipeline: &str) {}
}
