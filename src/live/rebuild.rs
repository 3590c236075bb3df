//! Live mode behind an alias (`sink.alias`): a sync that builds a new index while
//! changes keep reaching the index the alias points at.
//!
//! Before each sync (the first, and every resync) the live loop asks the sink what a
//! run would do behind the alias ([`crate::stages::sink::elasticsearch::alias::Plan`]).
//! No alias yet, or the alias on the index of the pipeline as it is: the sync runs as
//! for a plain index, changes waiting meanwhile. The alias on an index built for
//! other mappings, settings or document template: the sync **builds** the new index
//! (a full sync into it, then the alias swap), and follow phases run at the same time,
//! writing **through the alias**, so into the index that serves. After a build that
//! moved the alias, a resync with reason `rebuild` runs over the new index,
//! change-aware. A build that fails leaves the alias where it was: following goes on
//! for the retry wait, then the next resync plans (and builds) again; the first
//! sync's failure ends the run, as for a plain index.
//!
//! Why nothing is lost, and nothing removed wrongly:
//! - The build and the follow phases never write to the same index at the same time.
//!   The build writes to its own new index, which the alias does not point at until
//!   the swap, the build's last write: its stale deletion (over the new index only:
//!   a pipeline behind an alias has no routed documents) runs before it. The follow
//!   phases write through the alias: into the old index up to the swap, into the new
//!   one after it, when the build no longer writes. So no stale deletion of the build
//!   removes a document a follow phase wrote, and no follow phase delete or upsert
//!   races a write of the build.
//! - A change made while the build runs may be missed by the build (its scan passed
//!   the key before the change). It reaches the old index through a follow phase, and
//!   the new one through the `rebuild` resync: that resync starts after the last
//!   follow phase of the build ended, reads every key as it is then, writes what
//!   differs from the new index (content hash) and deletes the documents whose keys
//!   are gone (stale deletion). Changes after the resync starts are events in the
//!   pending set, applied after it, through the alias, into the new index.
//! - Values are read when applied (latest wins) and one follow phase runs at a time,
//!   one bulk at a time, so a document a follow phase writes is never older than what
//!   the index held. A follow request in flight during the swap lands in either
//!   index: in the old one the `rebuild` resync covers it, in the new one it is a
//!   value read after the build's.
//! - The old index is exact up to the swap only as far as the follow phases keep it
//!   (a resync reason met during the build, such as an overflow or a flush, stops
//!   them until the build ends); the new index is exact after the `rebuild` resync.
//!
//! This assumes one process follows the pipeline and only its swaps move the alias.
//! `alias rollback` while following is fine: the follow phases write through the
//! alias to the index rolled back to, and the next resync moves the alias back to
//! the index of the pipeline as it is (see the README).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::observer::{Observer, Tee};
use super::{wait_or_stop, LiveSummary, PhaseProgress};
use crate::config::model::Pipeline;
use crate::pipeline::executor::{self, PipelineSummary, Progress};
use crate::stages::sink::elasticsearch::alias::{Case, Plan};
use crate::stages::source::redis::change_source::pending::{LiveState, Reason};
use crate::stages::source::redis::change_source::Follower;
use crate::stages::{RunOptions, Sink, Source};

/// What the live loop's syncs need to follow changes while one builds.
pub(super) struct Following<'a> {
    /// The pipeline as live mode runs it (stale deletion on).
    pub pipeline: &'a Pipeline,
    pub state: &'a Arc<LiveState>,
    pub locates_by_key: bool,
    /// The follow phases' options (`follow: true`).
    pub options: RunOptions,
    pub progress: &'a PhaseProgress,
    /// Told each resync's reason and each follow phase, those during a build too.
    pub observer: &'a dyn Observer,
    pub drain_timeout: Duration,
}

/// How a sync of the live loop went.
pub(super) struct Synced {
    pub summary: PipelineSummary,
    /// The resync reasons it covered (none for the first sync).
    pub reasons: Vec<Reason>,
    /// Whether, after a failure, it already waited `retry_wait` (following meanwhile).
    pub waited: bool,
}

/// Which sync of the live loop this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SyncKind {
    /// The first: its failure ends the run.
    First,
    /// A resync; after a failure it waits `retry_wait` (following meanwhile, when it
    /// builds behind an alias) before the loop tries again.
    Resync { retry_wait: Duration },
}

/// What one sync runs with: the run's options (the first sync keeps the mass-delete
/// guard, a resync lifts it), the shutdown signal, and where progress goes.
pub(super) struct SyncRun<'a> {
    pub options: RunOptions,
    pub shutdown: &'a CancellationToken,
    pub progress: &'a dyn Progress,
}

/// Runs one sync of the live loop: the first (its failure ends the run) or a resync.
/// Builds a new index behind the alias while following changes when the plan says
/// so; otherwise a plain sync, the pending keys dropped when it is a resync (it
/// reads every key after this moment).
pub(super) async fn sync(
    following: &Following<'_>,
    follower: &Follower,
    kind: SyncKind,
    run: SyncRun<'_>,
    summary: &mut LiveSummary,
) -> anyhow::Result<Synced> {
    let SyncRun {
        options,
        shutdown,
        progress,
    } = run;
    let (first, retry_wait) = match kind {
        SyncKind::First => (true, Duration::ZERO),
        SyncKind::Resync { retry_wait } => (false, retry_wait),
    };
    let plan = match planned(following.pipeline).await {
        Ok(plan) => plan,
        // The sync itself meets the same problem (Elasticsearch unreachable, an
        // alias over an index of another pipeline) and reports it.
        Err(error) => {
            tracing::debug!(pipeline = %following.pipeline.name, "live: no alias plan ({error:#})");
            None
        }
    };
    let Some(plan) = plan.filter(|plan| matches!(plan.case, Case::Rebuild { .. })) else {
        return plain_sync(
            following,
            first,
            SyncRun {
                options,
                shutdown,
                progress,
            },
        )
        .await;
    };
    let reasons = if first {
        Vec::new()
    } else {
        following.state.take_reasons()
    };
    if !first {
        following
            .observer
            .resync(reasons.first().copied().unwrap_or(Reason::Error));
    }
    tracing::info!(pipeline = %following.pipeline.name, "live: {}; changes are applied through the alias meanwhile", plan.describe(false));
    let done = CancellationToken::new();
    let stop_build = shutdown.child_token();
    let build = build_index(
        following,
        &plan,
        first,
        retry_wait,
        SyncRun {
            options,
            shutdown,
            progress,
        },
        &stop_build,
        &done,
    );
    let follow = async {
        let followed = follow_meanwhile(following, follower, &done, shutdown).await;
        if followed.is_err() {
            stop_build.cancel();
        }
        followed
    };
    let (built, followed) = tokio::join!(build, follow);
    let totals = followed?;
    let (built, waited) = built?;
    add_followed(summary, &totals, &built, &plan);
    Ok(Synced {
        summary: built,
        reasons,
        waited,
    })
}

/// A sync without a new index behind the alias: a plain run of the pipeline, the
/// pending keys dropped when it is a resync (it reads every key after this moment).
async fn plain_sync(following: &Following<'_>, first: bool, run: SyncRun<'_>) -> anyhow::Result<Synced> {
    let SyncRun {
        options,
        shutdown,
        progress,
    } = run;
    let reasons = if first {
        Vec::new()
    } else {
        following.state.begin_resync()
    };
    if !first {
        following
            .observer
            .resync(reasons.first().copied().unwrap_or(Reason::Error));
    }
    let summary = executor::run_pipeline(following.pipeline, options, shutdown.child_token(), progress).await?;
    Ok(Synced {
        summary,
        reasons,
        waited: false,
    })
}

/// Builds the new index behind the alias (a run of the pipeline), then ends the
/// follow phase (`done`): when built, the resync over the new index comes next; when
/// a resync's build failed, the alias stays and the next attempt waits `retry_wait`.
/// Gives the build's summary and whether it waited.
async fn build_index(
    following: &Following<'_>,
    plan: &Plan,
    first: bool,
    retry_wait: Duration,
    run: SyncRun<'_>,
    stop_build: &CancellationToken,
    done: &CancellationToken,
) -> anyhow::Result<(PipelineSummary, bool)> {
    let SyncRun {
        options,
        shutdown,
        progress,
    } = run;
    let result = executor::run_pipeline(following.pipeline, options, stop_build.clone(), progress).await;
    let built = matches!(&result, Ok(s) if s.error.is_none());
    let mut waited = false;
    if built {
        // Ends the follow phase: the resync over the new index comes next.
        following.state.mark_dirty(Reason::Rebuild);
    } else if !first && !shutdown.is_cancelled() && !stop_build.is_cancelled() {
        // The alias stays: keep following into the index that serves until the
        // next attempt.
        let error = match &result {
            Ok(summary) => summary.error.clone().unwrap_or_default(),
            Err(error) => format!("{error:#}"),
        };
        tracing::warn!(
            pipeline = %following.pipeline.name,
            "live: the build of {} failed ({error}); changes keep going through the alias to {}; trying again in {} s",
            plan.target,
            match &plan.case {
                Case::Rebuild { from, .. } => from.name.as_str(),
                _ => plan.alias.as_str(),
            },
            retry_wait.as_secs()
        );
        wait_or_stop(retry_wait, shutdown).await;
        waited = true;
    }
    done.cancel();
    result.map(|summary| (summary, waited))
}

/// Adds what was followed during the build to the live summary, and a note of the
/// alias move when the build succeeded.
fn add_followed(summary: &mut LiveSummary, totals: &Totals, built: &PipelineSummary, plan: &Plan) {
    summary.upserts += totals.written;
    summary.deletes += totals.deleted;
    summary.failed += totals.failed;
    summary.skipped += totals.skipped;
    if built.error.is_none() {
        if let Case::Rebuild { from, .. } = &plan.case {
            summary.notes.push(format!(
                "built {} and moved alias {} to it from {} ({} changes applied through the alias meanwhile); \
                 a change-aware pass over it follows (resync reason rebuild)",
                plan.target,
                plan.alias,
                from.name,
                totals.written + totals.deleted
            ));
        }
    }
}

/// What a run of `pipeline` would do behind its alias now; `None` without one.
async fn planned(pipeline: &Pipeline) -> anyhow::Result<Option<Plan>> {
    match executor::build_stages(pipeline, None)?.sink {
        Sink::Elasticsearch(sink) => sink.alias_plan(&pipeline.name).await,
        Sink::Ndjson(_) => Ok(None),
    }
}

/// Counts of the follow phases run during a build.
#[derive(Default)]
struct Totals {
    written: u64,
    deleted: u64,
    failed: u64,
    skipped: u64,
}

/// Follow phases, one after the other, until `done` (the build ended), a resync
/// reason, a fatal problem, or the drain after `shutdown` is over.
async fn follow_meanwhile(
    following: &Following<'_>,
    follower: &Follower,
    done: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<Totals> {
    let state = following.state;
    let mut totals = Totals::default();
    let mut drain_until: Option<tokio::time::Instant> = None;
    while !done.is_cancelled() && !state.is_dirty() && state.fatal().is_none() {
        let phase = state.new_phase();
        let source = Source::Changes(follower.change_source(state, following.locates_by_key));
        let tee = Tee {
            progress: following.progress,
            observer: following.observer,
        };
        let run = executor::run_pipeline_with(
            following.pipeline,
            Some(source),
            following.options.clone(),
            phase.clone(),
            &tee,
        );
        let mut run = std::pin::pin!(run);
        let outcome = loop {
            let drain_over = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                outcome = &mut run => break outcome,
                _ = shutdown.cancelled(), if drain_until.is_none() => {
                    state.start_draining();
                    drain_until = Some(tokio::time::Instant::now() + following.drain_timeout);
                }
                _ = drain_over => {
                    phase.cancel();
                    drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                // The build ended (not on a signal: then the drain decides).
                _ = done.cancelled(), if drain_until.is_none() && !phase.is_cancelled() => phase.cancel(),
            }
        };
        let phase_summary = outcome?;
        following.observer.applied(&phase_summary);
        totals.written += phase_summary.written;
        totals.deleted += phase_summary.deleted;
        totals.failed += phase_summary.failed;
        totals.skipped += phase_summary.skipped;
        if let Some(error) = &phase_summary.error {
            if shutdown.is_cancelled() {
                break;
            }
            // The build goes on; what this phase was applying is read again by the
            // resync after it.
            tracing::warn!(pipeline = %following.pipeline.name, "live: applying changes during the build failed ({error})");
            state.mark_dirty(Reason::Error);
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    Ok(totals)
}
