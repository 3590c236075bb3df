//! What live mode's parts share while a pipeline follows Redis: the bounded set of
//! changed keys waiting to be applied, the reasons a resync is due, the counters the
//! progress line and the summary show, and the signal that ends the current phase.
//!
//! Subscribers add keys; the change source takes them in pages; the runner clears
//! the set when a resync starts (the resync reads every key after that moment, so
//! what was pending is covered) and ends a follow phase as soon as a resync is due.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::record::KeyType;

/// Why a resync (a full sync that also deletes documents whose keys are gone) ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Redis restarted (its `run_id` changed): what it lost or reloaded sent no event.
    Restart,
    /// `FLUSHDB` or `FLUSHALL` ran (they send no per-key event).
    Flush,
    /// The subscription dropped (`CLIENT KILL TYPE pubsub`, the output buffer limit,
    /// a network cut): events of that time are lost.
    SubscriptionDropped,
    /// More changed keys were pending than `live.max_pending_keys`: the set was dropped.
    Overflow,
    /// A Redis Cluster's masters or slots changed.
    Topology,
    /// A key is gone whose document cannot be named from its key alone (the `id` or
    /// `index` template reads its value).
    DeleteWithoutId,
    /// Applying changes failed (Elasticsearch or Redis unreachable past the retries):
    /// what was being applied is read again.
    Error,
    /// `live.reconcile_every` elapsed.
    ReconcileEvery,
    /// A sync built a new index behind the alias and moved the alias to it: changes
    /// followed meanwhile went to the index that served, so a change-aware pass over
    /// the new one catches them (see `live/rebuild.rs`).
    Rebuild,
    /// `notify-keyspace-events` lost a flag live mode needs (`CONFIG SET
    /// notify-keyspace-events ""` at runtime), or got it back: changes of that time
    /// sent no event.
    Notifications,
}

impl Reason {
    /// Every reason, in the order they are declared (the order of `/metrics`).
    pub const ALL: [Reason; 10] = [
        Reason::Restart,
        Reason::Flush,
        Reason::SubscriptionDropped,
        Reason::Overflow,
        Reason::Topology,
        Reason::DeleteWithoutId,
        Reason::Error,
        Reason::ReconcileEvery,
        Reason::Rebuild,
        Reason::Notifications,
    ];

    /// The reason's name in summaries and logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Restart => "restart",
            Reason::Flush => "flush",
            Reason::SubscriptionDropped => "subscription_dropped",
            Reason::Overflow => "overflow",
            Reason::Topology => "topology",
            Reason::DeleteWithoutId => "delete_without_id",
            Reason::Error => "error",
            Reason::ReconcileEvery => "reconcile_every",
            Reason::Rebuild => "rebuild",
            Reason::Notifications => "notifications",
        }
    }
}

/// The Redis types a changed key may have to be in the selection: the union of the
/// `_type`s of the rules whose pattern delivered its event (all types when one has
/// none, or without rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TypeMask(u8);

impl TypeMask {
    /// Every type.
    pub const ANY: TypeMask = TypeMask(u8::MAX);

    /// One type, or every type for `None`.
    pub fn of(key_type: Option<KeyType>) -> TypeMask {
        match key_type {
            None => TypeMask::ANY,
            Some(t) => TypeMask(1 << KeyType::ALL.iter().position(|k| *k == t).unwrap_or(0)),
        }
    }

    /// Both masks' types.
    pub fn union(self, other: TypeMask) -> TypeMask {
        TypeMask(self.0 | other.0)
    }

    /// Whether `key_type` is selected.
    pub fn allows(self, key_type: KeyType) -> bool {
        self.0 & TypeMask::of(Some(key_type)).0 != 0
    }
}

/// A changed key: the node that told (index of the server, or of a cluster master),
/// its database and the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingKey {
    pub node: usize,
    pub database: u32,
    pub key: Vec<u8>,
}

/// The changed keys not applied yet, each once, oldest first.
#[derive(Debug, Default)]
struct Pending {
    keys: HashMap<PendingKey, (Instant, TypeMask)>,
    order: VecDeque<PendingKey>,
}

/// Counters of a live run, shown while it runs and in its summary.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Keyspace notifications received.
    pub events: AtomicU64,
    /// Keys dropped with the pending set when it overflowed.
    pub dropped: AtomicU64,
}

/// The state live mode's tasks share.
#[derive(Debug)]
pub struct LiveState {
    max_pending: usize,
    pending: Mutex<Pending>,
    /// Wakes the change source when keys arrive.
    pub arrived: Notify,
    dirty: Mutex<BTreeMap<Reason, u64>>,
    /// The follow phase running now; cancelled when a resync becomes due.
    phase: Mutex<CancellationToken>,
    /// Set on Ctrl-C / SIGTERM: apply what is pending, then stop.
    draining: AtomicBool,
    /// A problem that stops the run (notifications turned off after a restart).
    fatal: Mutex<Option<String>>,
    /// The oldest change a resync took over from the pending set (or the resync's
    /// start) and has not applied yet: set when a resync begins, cleared when one
    /// succeeds, so the lag keeps growing while resyncs fail.
    behind_since: Mutex<Option<Instant>>,
    pub counters: EventCounters,
}

impl LiveState {
    /// An empty state holding at most `max_pending` changed keys.
    pub fn new(max_pending: u64) -> LiveState {
        LiveState {
            max_pending: usize::try_from(max_pending).unwrap_or(usize::MAX).max(1),
            pending: Mutex::new(Pending::default()),
            arrived: Notify::new(),
            dirty: Mutex::new(BTreeMap::new()),
            phase: Mutex::new(CancellationToken::new()),
            draining: AtomicBool::new(false),
            fatal: Mutex::new(None),
            behind_since: Mutex::new(None),
            counters: EventCounters::default(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes one event for `key`. A key already pending stays once (its types
    /// widened); past the bound the whole set is dropped and a resync marked due.
    pub fn add(&self, key: PendingKey, types: TypeMask) {
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending();
        if let Some((_, mask)) = pending.keys.get_mut(&key) {
            *mask = mask.union(types);
            return;
        }
        if pending.keys.len() >= self.max_pending {
            let dropped = pending.keys.len() as u64 + 1;
            *pending = Pending::default();
            drop(pending);
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.mark_dirty(Reason::Overflow);
            return;
        }
        pending.order.push_back(key.clone());
        pending.keys.insert(key, (Instant::now(), types));
        drop(pending);
        self.arrived.notify_one();
    }

    /// Takes up to `n` pending keys, oldest first.
    pub fn take(&self, n: usize) -> Vec<(PendingKey, TypeMask)> {
        self.take_timed(n).0
    }

    /// [`LiveState::take`], with how long the oldest key taken had waited (zero when
    /// none was taken).
    pub fn take_timed(&self, n: usize) -> (Vec<(PendingKey, TypeMask)>, Duration) {
        let mut pending = self.pending();
        let mut taken = Vec::with_capacity(n.min(pending.order.len()));
        let mut waited = None;
        while taken.len() < n {
            let Some(key) = pending.order.pop_front() else { break };
            if let Some((since, mask)) = pending.keys.remove(&key) {
                waited.get_or_insert_with(|| since.elapsed());
                taken.push((key, mask));
            }
        }
        (taken, waited.unwrap_or_default())
    }

    /// Keys pending now.
    pub fn pending_len(&self) -> usize {
        self.pending().keys.len()
    }

    /// How long the oldest change not applied yet has waited: the oldest pending key,
    /// or the oldest change a resync took over and has not applied (see
    /// [`LiveState::caught_up`]); zero when none waits.
    pub fn lag(&self) -> Duration {
        let pending = self.oldest_pending().map(|since| since.elapsed()).unwrap_or_default();
        let behind = self
            .behind_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|since| since.elapsed())
            .unwrap_or_default();
        pending.max(behind)
    }

    fn oldest_pending(&self) -> Option<Instant> {
        let pending = self.pending();
        pending
            .order
            .front()
            .and_then(|key| pending.keys.get(key))
            .map(|(since, _)| *since)
    }

    /// A resync (or the first sync) succeeded: every change it took over is applied.
    pub fn caught_up(&self) {
        *self.behind_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Notes that changes wait on a resync, since the oldest pending one (or now).
    fn fall_behind(&self) {
        self.behind_since(self.oldest_pending().unwrap_or_else(Instant::now));
    }

    /// Notes that changes taken at `since` or later were not applied (a follow phase
    /// that failed): the lag counts from then until a resync succeeds.
    pub fn behind_since(&self, oldest: Instant) {
        let mut behind = self.behind_since.lock().unwrap_or_else(|e| e.into_inner());
        let since = behind.map_or(oldest, |b| b.min(oldest));
        *behind = Some(since);
    }

    /// Marks a resync due for `reason` and ends the follow phase running now.
    pub fn mark_dirty(&self, reason: Reason) {
        *self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
        tracing::info!(reason = reason.name(), "live: a resync is due");
        self.phase.lock().unwrap_or_else(|e| e.into_inner()).cancel();
    }

    /// Whether a resync is due for `reason` (among others).
    pub fn has_reason(&self, reason: Reason) -> bool {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&reason)
    }

    /// Whether a resync is due.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Starts a resync: takes the reasons it is due for and drops the pending keys
    /// (the resync reads every key after this moment). Returns the reasons.
    pub fn begin_resync(&self) -> Vec<Reason> {
        self.fall_behind();
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        *self.pending() = Pending::default();
        std::mem::take(&mut *dirty).into_keys().collect()
    }

    /// Takes the reasons a resync is due for, keeping the pending keys: a build of a
    /// new index behind the alias covers the reasons, while follow phases keep applying
    /// the pending keys to the index that serves meanwhile.
    pub fn take_reasons(&self) -> Vec<Reason> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
            .into_keys()
            .collect()
    }

    /// A fresh token for a follow phase, already cancelled when a resync is due.
    pub fn new_phase(&self) -> CancellationToken {
        let token = CancellationToken::new();
        if self.is_dirty() {
            token.cancel();
        }
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = token.clone();
        token
    }

    /// Asks the change source to apply what is pending and stop.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.arrived.notify_one();
    }

    /// Whether the run is draining to stop.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Records a problem that stops the run, and ends the phase.
    pub fn fail(&self, message: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(message);
        }
        drop(fatal);
        self.phase.lock().unwrap_or_else(|e| e.into_inner()).cancel();
    }

    /// The problem that stops the run, if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_holds_every_reason_once() {
        // Exhaustive: a new reason does not compile here until it has a place in ALL.
        let position = |reason: Reason| match reason {
            Reason::Restart => 0,
            Reason::Flush => 1,
            Reason::SubscriptionDropped => 2,
            Reason::Overflow => 3,
            Reason::Topology => 4,
            Reason::DeleteWithoutId => 5,
            Reason::Error => 6,
            Reason::ReconcileEvery => 7,
            Reason::Rebuild => 8,
            Reason::Notifications => 9,
        };
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(position(reason), i, "{}", reason.name());
        }
    }

    fn key(name: &str) -> PendingKey {
        PendingKey {
            node: 0,
            database: 0,
            key: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_lag_keeps_growing_while_resyncs_fail_and_ends_when_one_succeeds() {
        let state = LiveState::new(10);
        state.add(key("a"), TypeMask::ANY);
        std::thread::sleep(Duration::from_millis(20));
        state.mark_dirty(Reason::Error);
        state.begin_resync();
        assert_eq!(state.pending_len(), 0, "the resync took the pending keys over");
        assert!(state.lag() >= Duration::from_millis(20), "{:?}", state.lag());
        // The resync failed; the next one begins: the lag still counts from `a`.
        state.mark_dirty(Reason::Error);
        state.begin_resync();
        assert!(state.lag() >= Duration::from_millis(20), "{:?}", state.lag());
        state.caught_up();
        assert_eq!(state.lag(), Duration::ZERO);
        state.behind_since(Instant::now() - Duration::from_secs(5));
        assert!(state.lag() >= Duration::from_secs(5));
    }

    #[test]
    fn a_key_changed_many_times_is_pending_once_oldest_first() {
        let state = LiveState::new(10);
        state.add(key("a"), TypeMask::of(Some(KeyType::Hash)));
        state.add(key("b"), TypeMask::ANY);
        state.add(key("a"), TypeMask::of(Some(KeyType::Set)));
        assert_eq!(state.pending_len(), 2);
        let taken = state.take(10);
        assert_eq!(
            taken.iter().map(|(k, _)| k.key.clone()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        let mask = taken[0].1;
        assert!(mask.allows(KeyType::Hash) && mask.allows(KeyType::Set) && !mask.allows(KeyType::String));
        assert_eq!(state.counters.events.load(Ordering::Relaxed), 3);
        assert_eq!(state.pending_len(), 0);
    }

    #[test]
    fn a_page_taken_says_how_long_its_oldest_key_waited() {
        let state = LiveState::new(10);
        assert_eq!(state.take_timed(10), (Vec::new(), Duration::ZERO));
        state.add(key("old"), TypeMask::ANY);
        std::thread::sleep(Duration::from_millis(20));
        state.add(key("new"), TypeMask::ANY);
        let (taken, waited) = state.take_timed(10);
        assert_eq!(taken.len(), 2);
        // (At least the sleep: the oldest key's wait, not the newest's.)
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
    }

    #[test]
    fn past_the_bound_the_set_is_dropped_and_a_resync_is_due() {
        let state = LiveState::new(2);
        let phase = state.new_phase();
        state.add(key("a"), TypeMask::ANY);
        state.add(key("b"), TypeMask::ANY);
        assert!(!state.is_dirty());
        state.add(key("c"), TypeMask::ANY);
        assert_eq!(state.pending_len(), 0);
        assert!(state.is_dirty() && phase.is_cancelled());
        assert_eq!(state.counters.dropped.load(Ordering::Relaxed), 3);
        state.add(key("d"), TypeMask::ANY);
        assert_eq!(state.begin_resync(), vec![Reason::Overflow]);
        assert_eq!(
            state.pending_len(),
            0,
            "a resync reads every key: what was pending is covered"
        );
        assert!(!state.is_dirty() && !state.new_phase().is_cancelled());
    }
}
