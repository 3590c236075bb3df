//! Live mode: follow Redis's keyspace notifications and keep the index within a
//! fraction of a second of Redis, exact once writes stop, whatever broke in between.
//!
//! One run alternates two kinds of phase, never both at once:
//! - a **sync**: the pipeline's full sync, with stale deletion on (so the index ends
//!   exact even when the pipeline's `delete_stale` is off). The first one runs right
//!   after the subscriptions are confirmed; a **resync** runs whenever something may
//!   have hidden a change (see [`state::Reason`]). Changes arriving meanwhile wait in
//!   the pending set and are applied after it: a value read by the sync before a
//!   change is always overwritten by the change's own read, which comes later.
//! - a **follow phase**: the same transforms and sink, fed by the change source
//!   (changed keys read as they are now), until a resync is due or the run stops.
//!
//! Behind an alias, a sync that builds a new index runs together with follow phases
//! that write through the alias (see [`rebuild`]).
//!
//! Ctrl-C / SIGTERM: the follow phase applies what is pending for at most
//! `live.drain_timeout`, then the run ends (exit 0); during the first sync, the sync
//! stops half-way and the run is reported `interrupted` (exit 1). A fatal error ends
//! it (exit 1).

pub mod observer;
mod rebuild;
pub mod summary;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backoff::{Doubling, LIVE_RETRY};
use crate::config::model::{LiveConfig, Pipeline, RedisSourceConfig, SinkConfig, SourceConfig};
use crate::pipeline::executor::{self, PipelineSummary, Progress, RunCounters, Status};
use crate::stages::source::redis::change_source::pending::{LiveState, Reason};
use crate::stages::source::redis::change_source::Follower;
use crate::stages::{RunOptions, Source};
pub use observer::{Observer, Unobserved};
use rebuild::SyncKind;
pub use summary::LiveSummary;

/// How often the progress line is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why `run --follow` stops when its first sync fails, and what to do.
const FIRST_SYNC_FAILED: &str = "the first sync failed, so nothing was followed: run --follow stops (exit 1) rather \
     than retry, so that a wrong pipeline or an unreachable service shows at once. Start it again once fixed, or \
     let a supervisor restart it (systemd Restart=on-failure, a Kubernetes restart policy): the next start's sync \
     is change-aware and writes only what is missing";

/// Why `run --follow` stopped during its first sync reports `interrupted` (exit 1).
const FIRST_SYNC_INTERRUPTED: &str = "stopped during the first sync: the index holds only part of what Redis \
     holds (exit 1); the next start's sync is change-aware and writes what is missing";

/// The pipeline as live mode runs it: stale deletion on (a resync must leave the index
/// exact, and the index's marker says so to other pipelines), with the pipeline's own
/// `max_fraction`.
fn sync_pipeline(pipeline: &Pipeline) -> Pipeline {
    let mut sync = pipeline.clone();
    if let SinkConfig::Elasticsearch(es) = &mut sync.sink {
        es.delete_stale.enabled = true;
    }
    sync
}

/// The counters of the follow phase running now, for the progress line.
#[derive(Default)]
struct PhaseProgress(Mutex<Option<RunCounters>>);

impl Progress for PhaseProgress {
    fn started(&self, _pipeline: &str, live: RunCounters) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
    }
    fn finished(&self, _pipeline: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl PhaseProgress {
    fn current(&self) -> (u64, u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|live| (live.written(), live.deleted()))
            .unwrap_or_default()
    }
}

/// Follows `pipeline` until `shutdown` fires (then drains and returns) or a fatal
/// error. `Err` means it could not start following (invalid stages, notifications
/// missing, Redis unreachable); the first sync's failure is in the summary.
pub async fn follow(
    pipeline: &Pipeline,
    options: RunOptions,
    shutdown: CancellationToken,
    progress: &dyn Progress,
) -> anyhow::Result<LiveSummary> {
    follow_with(pipeline, options, shutdown, progress, &Unobserved).await
}

/// [`follow`], telling `observer` what the run does (its state once subscribed, each
/// sync, resync and follow phase).
pub async fn follow_with(
    pipeline: &Pipeline,
    options: RunOptions,
    shutdown: CancellationToken,
    progress: &dyn Progress,
    observer: &dyn Observer,
) -> anyhow::Result<LiveSummary> {
    let started = Instant::now();
    let live = pipeline.live.clone().unwrap_or_default();
    let SourceConfig::Redis(redis) = &pipeline.source;
    // A gone key's document is named from its key alone, unless an id or index
    // template reads its value: then a resync's stale deletion removes it.
    let locates_by_key = executor::build_stages(pipeline, None)?.requirements.locates_by_key;
    let sync = sync_pipeline(pipeline);
    let mut summary = LiveSummary::new(&pipeline.name);
    if !locates_by_key {
        summary.notes.push(
            "the id or index template reads more than key and database: a deleted key's document \
             is removed by a resync (reason delete_without_id), not at once"
                .to_owned(),
        );
    }

    let state = Arc::new(LiveState::new(live.max_pending_keys));
    let mut subscriptions = Subscriptions::start(redis, &live, &state).await?;
    summary.notes.append(&mut subscriptions.follower.notes);
    observer.subscribed(state.clone());

    let phase_progress = Arc::new(PhaseProgress::default());
    let ticker = tokio::spawn(progress_line(
        pipeline.name.clone(),
        state.clone(),
        phase_progress.clone(),
        subscriptions.stop.clone(),
    ));
    let follow_loop = FollowLoop {
        following: rebuild::Following {
            pipeline: &sync,
            state: &state,
            locates_by_key,
            options: RunOptions {
                follow: true,
                ..options.clone()
            },
            progress: phase_progress.as_ref(),
            observer,
            drain_timeout: live.drain_timeout.0,
        },
        redis,
        live: &live,
        shutdown: &shutdown,
        progress,
        resync_options: RunOptions {
            allow_mass_delete: true,
            ..options.clone()
        },
        every: (!live.reconcile_every.0.is_zero()).then_some(live.reconcile_every.0),
    };

    // The first sync: the pipeline's own guard against mass deletes applies.
    let run = rebuild::SyncRun {
        options,
        shutdown: &shutdown,
        progress,
    };
    let first = rebuild::sync(
        &follow_loop.following,
        &subscriptions.follower,
        SyncKind::First,
        run,
        &mut summary,
    )
    .await?;
    summary.syncs += 1;
    observer.synced(true, &first.summary);
    let first_failed = first_sync_outcome(&mut summary, &first.summary, &shutdown);
    // (The first sync's error is the run's own: no note repeats it.)
    add_sync(&mut summary, first.summary, false);

    if !first_failed {
        follow_loop.run(&mut subscriptions, &mut summary).await?;
    }
    if let Some(fatal) = state.fatal() {
        summary.status = Status::Failed;
        summary.error.get_or_insert(fatal);
    }

    subscriptions.stop.cancel();
    ticker.abort();
    subscriptions.finish().await;
    record_end(&mut summary, &state, started);
    Ok(summary)
}

/// Records the first sync's outcome in the live summary: interrupted or failed (with
/// its note); says whether it failed.
fn first_sync_outcome(
    summary: &mut LiveSummary,
    first: &executor::PipelineSummary,
    shutdown: &CancellationToken,
) -> bool {
    let first_failed = first.error.is_some() || !first.counts_add_up;
    let first_interrupted = !first_failed && first.status == executor::Status::Interrupted;
    if first_interrupted {
        // Stopped half-way through the first sync: the index is not what Redis holds.
        summary.status = Status::Interrupted;
        summary.notes.push(FIRST_SYNC_INTERRUPTED.to_owned());
    }
    if first_failed {
        summary.status = Status::Failed;
        summary.error = first.error.clone();
        if !shutdown.is_cancelled() {
            summary.notes.push(FIRST_SYNC_FAILED.to_owned());
        }
    }
    first_failed
}

/// Records the end of the run in the live summary: events, dropped and pending
/// keys (with a note when some are), lag and duration.
fn record_end(summary: &mut LiveSummary, state: &LiveState, started: Instant) {
    summary.events = state.counters.events.load(Ordering::Relaxed);
    summary.dropped = state.counters.dropped.load(Ordering::Relaxed);
    summary.pending = state.pending_len() as u64;
    summary.lag_seconds = state.lag().as_secs_f64();
    if summary.pending > 0 {
        summary.notes.push(format!(
            "{} changed keys were not applied before the end (the next start's sync reads them)",
            summary.pending
        ));
    }
    summary.seconds = started.elapsed().as_secs_f64();
}

/// The keyspace subscriptions of a live run: the follower, its tasks, and the token
/// that stops them (cancelled, too, when the run returns early).
struct Subscriptions {
    follower: Follower,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    _stop_on_return: DropGuard,
}

impl Subscriptions {
    /// Subscribes on every node the source reads.
    async fn start(redis: &RedisSourceConfig, live: &LiveConfig, state: &Arc<LiveState>) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mut follower = Follower::prepare(redis, live).await?;
        let tasks = follower.start(state, &stop).await?;
        Ok(Subscriptions {
            follower,
            tasks,
            _stop_on_return: stop.clone().drop_guard(),
            stop,
        })
    }

    /// Waits for the subscription tasks to end (once `stop` is cancelled).
    async fn finish(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// What the live loop does after a step.
enum Next {
    Continue,
    Stop,
}

/// The waits of the live loop: between failed attempts, and until the next periodic
/// resync (`live.reconcile_every`).
struct Waits {
    retry: Doubling,
    next_reconcile: Option<tokio::time::Instant>,
}

/// The loop after the first sync: resyncs when something may have hidden a change,
/// follow phases otherwise, until shutdown or a fatal error.
struct FollowLoop<'a> {
    following: rebuild::Following<'a>,
    redis: &'a RedisSourceConfig,
    live: &'a LiveConfig,
    shutdown: &'a CancellationToken,
    progress: &'a dyn Progress,
    resync_options: RunOptions,
    every: Option<Duration>,
}

impl FollowLoop<'_> {
    /// Runs until shutdown or a fatal error (said in `summary`).
    async fn run(&self, subscriptions: &mut Subscriptions, summary: &mut LiveSummary) -> anyhow::Result<()> {
        let state = self.following.state;
        let mut waits = Waits {
            retry: LIVE_RETRY,
            next_reconcile: self.reconcile_at(),
        };
        while !self.shutdown.is_cancelled() {
            if let Some(fatal) = state.fatal() {
                summary.status = Status::Failed;
                summary.error = Some(fatal);
                break;
            }
            let next = if state.is_dirty() {
                self.resync(subscriptions, &mut waits, summary).await?
            } else {
                self.follow_phase(&subscriptions.follower, &mut waits, summary).await?
            };
            if let Next::Stop = next {
                break;
            }
        }
        Ok(())
    }

    /// When the next periodic resync is due, counted from now.
    fn reconcile_at(&self) -> Option<tokio::time::Instant> {
        self.every.map(|every| tokio::time::Instant::now() + every)
    }

    /// A cluster's masters changed: follow the ones it has now (subscribed before the
    /// resync reads, as at the start).
    async fn resubscribe(&self, subscriptions: &mut Subscriptions) -> anyhow::Result<()> {
        subscriptions.stop.cancel();
        for task in subscriptions.tasks.drain(..) {
            let _ = task.await;
        }
        subscriptions.stop = CancellationToken::new();
        subscriptions._stop_on_return = subscriptions.stop.clone().drop_guard();
        let mut next = Follower::prepare(self.redis, self.live).await?;
        let tasks = next.start(self.following.state, &subscriptions.stop).await?;
        subscriptions.follower = next;
        subscriptions.tasks = tasks;
        Ok(())
    }

    /// A resync (after resubscribing when the cluster changed); on failure, the wait
    /// before the next attempt.
    async fn resync(
        &self,
        subscriptions: &mut Subscriptions,
        waits: &mut Waits,
        summary: &mut LiveSummary,
    ) -> anyhow::Result<Next> {
        let state = self.following.state;
        let name = &self.following.pipeline.name;
        if state.has_reason(Reason::Topology) {
            if let Err(error) = self.resubscribe(subscriptions).await {
                tracing::warn!(pipeline = %name, "live: cannot follow the cluster again ({error:#}); trying again in {} s", waits.retry.current().as_secs());
                wait_or_stop(waits.retry.current(), self.shutdown).await;
                waits.retry.double();
                return Ok(Next::Continue);
            }
        }
        tracing::info!(pipeline = %name, "live: resync");
        let run = rebuild::SyncRun {
            options: self.resync_options.clone(),
            shutdown: self.shutdown,
            progress: self.progress,
        };
        let kind = SyncKind::Resync {
            retry_wait: waits.retry.current(),
        };
        let resync = rebuild::sync(&self.following, &subscriptions.follower, kind, run, summary).await?;
        let reason = resync.reasons.first().copied().unwrap_or(Reason::Error);
        *summary.resyncs.entry(reason.name().to_owned()).or_default() += 1;
        tracing::info!(pipeline = %name, reason = reason.name(), "live: resync done");
        summary.syncs += 1;
        self.following.observer.synced(false, &resync.summary);
        let failed = resync.summary.error.clone();
        add_sync(summary, resync.summary, true);
        if let Some(error) = failed {
            if self.shutdown.is_cancelled() {
                return Ok(Next::Stop);
            }
            // (A failed build behind the alias waited already, following meanwhile.)
            if !resync.waited {
                tracing::warn!(pipeline = %name, "live: the resync failed ({error}); trying again in {} s", waits.retry.current().as_secs());
                wait_or_stop(waits.retry.current(), self.shutdown).await;
            }
            state.mark_dirty(Reason::Error);
            waits.retry.double();
            return Ok(Next::Continue);
        }
        state.caught_up();
        waits.retry.reset();
        waits.next_reconcile = self.reconcile_at();
        Ok(Next::Continue)
    }

    /// A follow phase, until a resync is due, the drain ends, or a fatal error.
    async fn follow_phase(
        &self,
        follower: &Follower,
        waits: &mut Waits,
        summary: &mut LiveSummary,
    ) -> anyhow::Result<Next> {
        let state = self.following.state;
        let phase = state.new_phase();
        let source = Source::Changes(follower.change_source(state, self.following.locates_by_key));
        // (With the syncs' `delete_stale`, so the index's marker keeps saying what the
        // syncs do; a follow phase keeps no ids and deletes nothing as stale.)
        let tee = observer::Tee {
            progress: self.following.progress,
            observer: self.following.observer,
        };
        let options = self.following.options.clone();
        let run = executor::run_pipeline_with(self.following.pipeline, Some(source), options, phase.clone(), &tee);
        let mut run = std::pin::pin!(run);
        let mut drain_until: Option<tokio::time::Instant> = None;
        let outcome = loop {
            let next_reconcile = waits.next_reconcile;
            let reconcile = async {
                match next_reconcile {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let drain_over = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = reconcile => {
                    waits.next_reconcile = None;
                    state.mark_dirty(Reason::ReconcileEvery);
                }
                _ = self.shutdown.cancelled(), if drain_until.is_none() => {
                    state.start_draining();
                    drain_until = Some(tokio::time::Instant::now() + self.following.drain_timeout);
                }
                _ = drain_over => {
                    phase.cancel();
                    drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
            }
        };
        let phase_summary = outcome?;
        self.following.observer.applied(&phase_summary);
        summary.upserts += phase_summary.written;
        summary.deletes += phase_summary.deleted;
        summary.failed += phase_summary.failed;
        summary.skipped += phase_summary.skipped;
        if let Some(error) = &phase_summary.error {
            if self.shutdown.is_cancelled() {
                summary.notes.push(format!("applying the last changes failed: {error}"));
                return Ok(Next::Stop);
            }
            let name = &self.following.pipeline.name;
            tracing::warn!(pipeline = %name, "live: applying changes failed ({error}); a resync follows in {} s", waits.retry.current().as_secs());
            // What the phase took was not applied: the lag counts from its start.
            let phase_start = Instant::now().checked_sub(Duration::from_secs_f64(phase_summary.seconds));
            state.behind_since(phase_start.unwrap_or_else(Instant::now));
            state.mark_dirty(Reason::Error);
            wait_or_stop(waits.retry.current(), self.shutdown).await;
            waits.retry.double();
        } else if self.every.is_some() && waits.next_reconcile.is_none() && !state.is_dirty() {
            waits.next_reconcile = self.reconcile_at();
        }
        Ok(Next::Continue)
    }
}

fn add_sync(summary: &mut LiveSummary, sync: PipelineSummary, note_failure: bool) {
    summary.sync_written += sync.written;
    summary.sync_deleted_stale += sync.deleted_stale;
    if let (Some(error), true) = (&sync.error, note_failure) {
        summary.notes.push(format!("a sync failed: {error}"));
    }
    summary.last_sync = Some(sync);
}

async fn wait_or_stop(wait: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Writes `live NAME: events .., applied .. upserts + .. deletes, pending .., lag ..`
/// every [`PROGRESS_EVERY`] (a log line on the `redis_connector::progress` target).
async fn progress_line(name: String, state: Arc<LiveState>, phase: Arc<PhaseProgress>, stop: CancellationToken) {
    let (mut upserts, mut deletes) = (0, 0);
    let mut last_phase = (0, 0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
        let now = phase.current();
        // A new phase starts its counters from zero.
        if now.0 < last_phase.0 || now.1 < last_phase.1 {
            last_phase = (0, 0);
        }
        upserts += now.0 - last_phase.0;
        deletes += now.1 - last_phase.1;
        last_phase = now;
        tracing::info!(
            target: "redis_connector::progress",
            "live {name}: events {}, applied {upserts} upserts + {deletes} deletes, pending {}, lag {:.2} s",
            state.counters.events.load(Ordering::Relaxed),
            state.pending_len(),
            state.lag().as_secs_f64()
        );
    }
}
