//! A live pipeline as `serve` shows it: its phase (syncing, following, resyncing,
//! failed), its lag, pending keys and resyncs, read from the run's shared
//! [`LiveState`], and the [`Observer`] that keeps this view, the metrics and the log
//! lines (following started, each resync) current while [`crate::live::follow_with`]
//! runs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use super::metrics::LiveSample;
use super::time::rfc3339;
use crate::pipeline::executor::RunCounters;
use crate::stages::source::redis::change_source::pending::LiveState;

/// How long a live pipeline's resyncs may keep failing before `/readyz` says it is not
/// ready, unless `serve --live-unready-after` says otherwise.
pub const DEFAULT_UNREADY_AFTER: Duration = Duration::from_secs(60);

static UNREADY_AFTER: OnceLock<Duration> = OnceLock::new();

/// Sets, once for the process, how long a live pipeline may keep failing before it
/// is not ready (`serve --live-unready-after`).
pub fn set_unready_after(bound: Duration) {
    let _ = UNREADY_AFTER.set(bound);
}

fn unready_after() -> Duration {
    UNREADY_AFTER.get().copied().unwrap_or(DEFAULT_UNREADY_AFTER)
}

/// What a live pipeline is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its first full sync runs (or it is subscribing before it).
    Syncing,
    /// Changes are applied as they arrive.
    Following,
    /// A resync runs (changes keep being collected).
    Resyncing,
    /// It stopped on an error and starts again at `retry_at`.
    Failed,
}

impl Phase {
    /// The word `/status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Syncing => "syncing",
            Phase::Following => "following",
            Phase::Resyncing => "resyncing",
            Phase::Failed => "failed",
        }
    }
}

/// Figures already handed to the metrics, so each sample adds only what is new.
#[derive(Debug, Default, Clone, Copy)]
struct Exported {
    events: u64,
    dropped: u64,
    upserts: u64,
    deletes: u64,
}

/// One live pipeline's state, kept across its restarts after failures (a new
/// configuration starts a new one).
pub struct LiveView {
    pub phase: Phase,
    /// When the phase began.
    pub since: DateTime<Utc>,
    /// When following started after the first sync of the current attempt.
    pub following_since: Option<DateTime<Utc>>,
    /// The current attempt's shared state, once subscribed.
    pub(super) state: Option<Arc<LiveState>>,
    /// The counters of the follow phase running now.
    pub(super) phase_counters: Option<RunCounters>,
    /// Upserts and deletes of the follow phases that ended.
    pub(super) upserts: u64,
    pub(super) deletes: u64,
    /// Events and dropped keys of the attempts that ended.
    events_before: u64,
    dropped_before: u64,
    exported: Exported,
    pub syncs: u64,
    pub resyncs: BTreeMap<&'static str, u64>,
    /// Attempts started (1 + restarts after a failure).
    pub attempts: u64,
    /// Why the last attempt failed, while it waits to start again.
    pub error: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    /// Since when its resyncs (or follow phases) have kept failing, and the last
    /// error: cleared by a sync that succeeds.
    pub failing_since: Option<DateTime<Utc>>,
    pub failure: Option<String>,
}

impl LiveView {
    /// A pipeline about to follow for the first time.
    pub fn new() -> LiveView {
        LiveView {
            phase: Phase::Syncing,
            since: Utc::now(),
            following_since: None,
            state: None,
            phase_counters: None,
            upserts: 0,
            deletes: 0,
            events_before: 0,
            dropped_before: 0,
            exported: Exported::default(),
            syncs: 0,
            resyncs: BTreeMap::new(),
            attempts: 0,
            error: None,
            retry_at: None,
            failing_since: None,
            failure: None,
        }
    }

    /// A resync or follow phase failed with `error`: changes are not applied.
    pub(super) fn failed(&mut self, error: &str) {
        self.failing_since.get_or_insert_with(Utc::now);
        self.failure = Some(error.to_owned());
    }

    /// Why the pipeline is not ready although its first sync succeeded: its resyncs
    /// have kept failing for longer than `serve --live-unready-after`.
    pub fn failing_too_long(&self) -> Option<String> {
        let since = self.failing_since?;
        let failing = (Utc::now() - since).to_std().unwrap_or_default();
        (failing > unready_after()).then(|| {
            format!(
                "applying changes has failed since {} (over {:?}): {}",
                rfc3339(since),
                unready_after(),
                self.failure.as_deref().unwrap_or("unknown error")
            )
        })
    }

    pub(super) fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.since = Utc::now();
        }
    }

    /// A new attempt starts (subscribing, then the first sync).
    pub fn attempt_started(&mut self) {
        self.attempts += 1;
        self.set_phase(Phase::Syncing);
        self.following_since = None;
        self.error = None;
        self.retry_at = None;
    }

    /// The attempt ended: its counters are kept, its state let go.
    pub fn attempt_ended(&mut self, error: Option<String>, retry_at: Option<DateTime<Utc>>) {
        if let Some(state) = self.state.take() {
            self.events_before += state.counters.events.load(Ordering::Relaxed);
            self.dropped_before += state.counters.dropped.load(Ordering::Relaxed);
        }
        if let Some(counters) = self.phase_counters.take() {
            self.upserts += counters.written();
            self.deletes += counters.deleted();
        }
        if error.is_some() {
            self.set_phase(Phase::Failed);
        }
        self.following_since = None;
        self.error = error;
        self.retry_at = retry_at;
    }

    fn lag_seconds(&self) -> f64 {
        self.state.as_ref().map_or(0.0, |s| s.lag().as_secs_f64())
    }

    fn pending(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.pending_len() as u64)
    }

    fn totals(&self) -> Exported {
        let counter = |f: fn(&LiveState) -> u64| self.state.as_deref().map_or(0, f);
        Exported {
            events: self.events_before + counter(|s| s.counters.events.load(Ordering::Relaxed)),
            dropped: self.dropped_before + counter(|s| s.counters.dropped.load(Ordering::Relaxed)),
            upserts: self.upserts + self.phase_counters.as_ref().map_or(0, RunCounters::written),
            deletes: self.deletes + self.phase_counters.as_ref().map_or(0, RunCounters::deleted),
        }
    }

    /// The figures now, with what is new since the last sample.
    pub fn sample(&mut self) -> LiveSample {
        let now = self.totals();
        let before = std::mem::replace(&mut self.exported, now);
        LiveSample {
            lag_seconds: self.lag_seconds(),
            pending: self.pending(),
            new_events: now.events.saturating_sub(before.events),
            new_dropped: now.dropped.saturating_sub(before.dropped),
            new_upserts: now.upserts.saturating_sub(before.upserts),
            new_deletes: now.deletes.saturating_sub(before.deletes),
        }
    }

    /// Why the pipeline is not ready yet (its first sync has not succeeded).
    pub fn not_ready_because(&self) -> String {
        match (&self.error, self.retry_at) {
            (Some(error), Some(at)) => format!("first sync failed: {error}; trying again at {}", rfc3339(at)),
            (Some(error), None) => format!("first sync failed: {error}"),
            (None, _) => format!("first sync running since {}", rfc3339(self.since)),
        }
    }

    /// The `live` part of the pipeline's `/status`.
    pub fn to_json(&self) -> Json {
        let totals = self.totals();
        json!({
            "phase_since": rfc3339(self.since),
            "following_since": self.following_since.map(rfc3339),
            "lag_seconds": self.lag_seconds(),
            "pending": self.pending(),
            "events": totals.events,
            "upserts": totals.upserts,
            "deletes": totals.deletes,
            "dropped": totals.dropped,
            "syncs": self.syncs,
            "resyncs": self.resyncs,
            "attempts": self.attempts,
            "error": self.error.as_ref().or(self.failure.as_ref()),
            "failing_since": self.failing_since.map(rfc3339),
            "retry_at": self.retry_at.map(rfc3339),
        })
    }
}

impl Default for LiveView {
    fn default() -> Self {
        LiveView::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::source::redis::change_source::pending::{PendingKey, TypeMask};

    fn key(name: &str) -> PendingKey {
        PendingKey {
            node: 0,
            database: 0,
            key: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn samples_hand_over_what_is_new_once_even_across_attempts() {
        let mut view = LiveView::new();
        view.attempt_started();
        let state = Arc::new(LiveState::new(10));
        view.state = Some(state.clone());
        state.add(key("a"), TypeMask::ANY);
        state.add(key("a"), TypeMask::ANY);
        let first = view.sample();
        assert_eq!((first.new_events, first.pending), (2, 1));
        assert_eq!(view.sample().new_events, 0, "nothing new");

        // The attempt fails; the next one starts its own state from zero.
        state.add(key("b"), TypeMask::ANY);
        view.attempt_ended(Some("Redis unreachable".into()), None);
        assert_eq!(view.phase, Phase::Failed);
        assert!(view
            .not_ready_because()
            .starts_with("first sync failed: Redis unreachable"));
        view.attempt_started();
        let next = Arc::new(LiveState::new(10));
        view.state = Some(next.clone());
        next.add(key("c"), TypeMask::ANY);
        let sample = view.sample();
        assert_eq!(sample.new_events, 2, "b from the ended attempt, c from this one");
        assert_eq!(view.to_json()["events"], 4);
        assert_eq!(view.attempts, 2);
    }
}
