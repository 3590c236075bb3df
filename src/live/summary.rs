//! What a live run reports: while it runs (the progress line) and when it ends (the
//! text summary and `--summary-json`).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::pipeline::executor::{PipelineSummary, Status};

/// The summary of a live run.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSummary {
    pub pipeline: String,
    /// `ok`, `failed` (a fatal error: the first sync failed, the server stopped
    /// publishing notifications, ...), or `interrupted` (stopped by a signal during
    /// the first sync: the index holds only part of Redis).
    pub status: Status,
    pub live: bool,
    pub seconds: f64,
    /// Keyspace notifications received.
    pub events: u64,
    /// Changed keys written as documents by the follow phases.
    pub upserts: u64,
    /// Documents deleted by the follow phases (key gone, or excluded by a filter now).
    pub deletes: u64,
    /// Changes that failed (in the dead-letter file).
    pub failed: u64,
    /// Changed keys skipped (too large, ...), as a full sync skips them.
    pub skipped: u64,
    /// Keys still pending at the end (not applied; the next start's sync covers them).
    pub pending: u64,
    /// Age of the oldest pending change at the end, in seconds.
    pub lag_seconds: f64,
    /// Keys dropped when the pending set overflowed (each overflow led to a resync).
    pub dropped: u64,
    /// Full syncs run: the first one plus every resync.
    pub syncs: u64,
    /// Resyncs by the reason that started them (the first by priority when several
    /// were due at once: restart, flush, subscription_dropped, overflow, topology,
    /// delete_without_id, error, reconcile_every, rebuild, notifications).
    pub resyncs: BTreeMap<String, u64>,
    /// Documents written and deleted as stale by the syncs, in all.
    pub sync_written: u64,
    pub sync_deleted_stale: u64,
    /// The last full sync's own summary.
    pub last_sync: Option<PipelineSummary>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

impl LiveSummary {
    /// An empty summary of `pipeline`.
    pub fn new(pipeline: &str) -> LiveSummary {
        LiveSummary {
            pipeline: pipeline.to_owned(),
            status: Status::Ok,
            live: true,
            seconds: 0.0,
            events: 0,
            upserts: 0,
            deletes: 0,
            failed: 0,
            skipped: 0,
            pending: 0,
            lag_seconds: 0.0,
            dropped: 0,
            syncs: 0,
            resyncs: BTreeMap::new(),
            sync_written: 0,
            sync_deleted_stale: 0,
            last_sync: None,
            notes: Vec::new(),
            error: None,
        }
    }

    /// Whether the process should exit non-zero.
    pub fn is_failure(&self) -> bool {
        self.status != Status::Ok
    }
}

impl fmt::Display for LiveSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let status = match self.status {
            Status::Ok => "stopped",
            Status::Interrupted => "INTERRUPTED during its first sync",
            Status::Failed => "FAILED",
        };
        let _ = writeln!(
            out,
            "pipeline {} (live): {status} after {:.1} s",
            self.pipeline, self.seconds
        );
        let _ = writeln!(
            out,
            "  events {}, applied {} upserts + {} deletes, failed {}, skipped {}; pending {} (lag {:.2} s) at the end",
            self.events, self.upserts, self.deletes, self.failed, self.skipped, self.pending, self.lag_seconds
        );
        let reasons: Vec<String> = self.resyncs.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            out,
            "  syncs {} (the first, then resyncs: {}), wrote {} documents, deleted {} stale",
            self.syncs,
            if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons.join(", ")
            },
            self.sync_written,
            self.sync_deleted_stale
        );
        if self.dropped > 0 {
            let _ = writeln!(
                out,
                "  {} pending keys dropped on overflow (read again by a resync)",
                self.dropped
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  error: {error}");
        }
        f.write_str(out.trim_end())
    }
}
