//! Per-stage counters, shared between a stage and the executor that reports them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Counters of one stage. Stages add to them as they go; the executor reads them for
/// progress and the summary. Every record a stage takes in ends as exactly one of
/// `out`, `unchanged`, `deleted`, `filtered`, `skipped` or `failed`.
#[derive(Debug, Default)]
pub struct StageCounters {
    /// Records taken in (for a source: keys read).
    pub received: AtomicU64,
    /// Records passed on (for a sink: documents written).
    pub out: AtomicU64,
    /// For a sink: documents the index already held with the same content, not written.
    pub unchanged: AtomicU64,
    /// Documents deleted (a sink's `delete` actions, live mode: one already gone counts).
    pub deleted: AtomicU64,
    /// Records dropped on purpose by a filter rule.
    pub filtered: AtomicU64,
    /// Records not processed, for a reason (`vanished`, `too_large`, `unsupported_type`).
    pub skipped: AtomicU64,
    /// Records that failed and went to the dead-letter file.
    pub failed: AtomicU64,
    /// Time spent working (not waiting on channels), in nanoseconds.
    pub busy_nanos: AtomicU64,
    skipped_reasons: Mutex<BTreeMap<String, u64>>,
}

impl StageCounters {
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_out(&self, n: u64) {
        self.out.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_unchanged(&self, n: u64) {
        self.unchanged.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_deleted(&self, n: u64) {
        self.deleted.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_filtered(&self, n: u64) {
        self.filtered.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_busy(&self, elapsed: Duration) {
        self.busy_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
    /// Counts `n` records skipped for `reason` (a short snake_case word).
    pub fn add_skipped(&self, reason: &str, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
        let mut reasons = self.skipped_reasons.lock().unwrap_or_else(|e| e.into_inner());
        *reasons.entry(reason.to_owned()).or_default() += n;
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            received: self.received.load(Ordering::Relaxed),
            out: self.out.load(Ordering::Relaxed),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
            skipped_reasons: self.skipped_reasons.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// A copy of [`StageCounters`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CountersSnapshot {
    pub received: u64,
    pub out: u64,
    pub unchanged: u64,
    /// Documents deleted (zero outside live mode).
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: u64,
    pub filtered: u64,
    pub skipped: u64,
    pub failed: u64,
    #[serde(serialize_with = "serialize_seconds")]
    pub busy: Duration,
    pub skipped_reasons: BTreeMap<String, u64>,
}

fn serialize_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
