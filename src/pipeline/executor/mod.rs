//! The generic stage executor: runs one pipeline's source, transforms and sink as
//! tokio tasks joined by bounded channels of [`Batch`]es, and sums up the run.
//!
//! - Backpressure: every channel holds [`CHANNEL_CAPACITY`] batches; a slow sink makes
//!   the transforms wait, which makes the source wait, so memory stays flat.
//! - Downstream stages end when their input closes; a transform's `apply` (CPU work,
//!   e.g. template rendering) runs on tokio's blocking pool, one batch at a time.
//! - The sink is opened first, so a bad target fails the run before any read.
//! - Cancellation (Ctrl-C, SIGTERM, given by the caller as a token) stops the source;
//!   what is in flight drains through the transforms and the sink, and the sink's
//!   `finish` is told the run is incomplete (no stale deletion).
//! - A fatal error in any stage stops the others the same way; the first error is the
//!   one reported.
//! - Every task a run starts (the stages, the transforms' blocking work, the sample
//!   tap) is spawned on the run's own [`TaskTracker`], and the run returns only once
//!   all of them have ended: nothing of a run outlives it, so `serve` can run
//!   pipelines again and again in one process, and no task is left for the runtime's
//!   shutdown to cut.
//!
//! The executor knows nothing of Redis, templates or Elasticsearch: it only speaks to
//! the stage enums of [`crate::stages`].

pub mod progress;
mod run;
pub mod summary;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use progress::{NoProgress, Progress, RunCounters};
pub use summary::{PipelineSummary, StageSummary, Status};

use crate::config::model::Pipeline;
use crate::config::FieldError;
use crate::dead_letter::DeadLetter;
use crate::pipeline::Stages;
use crate::record::Batch;
use crate::stages::{RunOptions, Sink, SinkReport, Source, SourceReport, StageContext, Transform, UpstreamOutcome};
use run::Run;

/// Batches each channel between two stages holds before the sender waits.
pub const CHANNEL_CAPACITY: usize = 4;

/// The first fatal error of a run, and the stage it came from.
#[derive(Default)]
struct FirstError(Mutex<Option<(String, anyhow::Error)>>);

impl FirstError {
    /// Keeps the error when it is the first; later ones are consequences, logged only.
    fn record(&self, stage: &str, error: anyhow::Error, stop: &CancellationToken) {
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            tracing::debug!(stage, "fatal: {error:#}");
            *first = Some((stage.to_owned(), error));
        } else {
            tracing::debug!(stage, "after the first error: {error:#}");
        }
        stop.cancel();
    }

    fn take(&self) -> Option<String> {
        let first = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        first.map(|(stage, error)| format!("{stage}: {error:#}"))
    }

    fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// The dead-letter files a run of `pipeline` writes: the pipeline's, then the sink's
/// own when it sets another; beside them (`.dry-run`) for a dry run.
pub fn dead_letter_paths(pipeline: &Pipeline, dry_run: bool) -> Vec<PathBuf> {
    let in_this_run = |path: PathBuf| {
        if dry_run {
            crate::dead_letter::dry_run_path(&path)
        } else {
            path
        }
    };
    let mut paths = vec![in_this_run(pipeline.dead_letter_path())];
    if let Some(path) = pipeline.sink.dead_letter_path().map(in_this_run) {
        if path != paths[0] {
            paths.push(path);
        }
    }
    paths
}

/// Runs one pipeline to its end and returns its summary.
///
/// `cancel` is the caller's shutdown signal (Ctrl-C / SIGTERM). Errors of the run
/// itself (a stage failing) are in the summary (`status`, `error`); `Err` means the
/// pipeline's stages could not be built (an invalid configuration).
pub async fn run_pipeline(
    pipeline: &Pipeline,
    options: RunOptions,
    cancel: CancellationToken,
    progress: &dyn Progress,
) -> anyhow::Result<PipelineSummary> {
    run_pipeline_with(pipeline, None, options, cancel, progress).await
}

/// [`run_pipeline`], with `source` in place of the pipeline's own when given (live
/// mode's follow phases read changed keys through the same transforms and sink).
pub async fn run_pipeline_with(
    pipeline: &Pipeline,
    source: Option<Source>,
    options: RunOptions,
    cancel: CancellationToken,
    progress: &dyn Progress,
) -> anyhow::Result<PipelineSummary> {
    run_joined(pipeline, source, options, None, cancel, progress).await
}

/// `verify`: reads and renders as a dry run does, and has the sink compare every
/// document with what its index holds, into `drift`, instead of checking it; writes
/// nothing anywhere (no dead-letter file: failed records are only counted).
pub async fn verify_pipeline(
    pipeline: &Pipeline,
    drift: Arc<crate::stages::drift::Drift>,
    cancel: CancellationToken,
    progress: &dyn Progress,
) -> anyhow::Result<PipelineSummary> {
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    run_joined(pipeline, None, options, Some(drift), cancel, progress).await
}

/// [`run_tracked`], then waits for every task it spawned.
async fn run_joined(
    pipeline: &Pipeline,
    source: Option<Source>,
    options: RunOptions,
    drift: Option<Arc<crate::stages::drift::Drift>>,
    cancel: CancellationToken,
    progress: &dyn Progress,
) -> anyhow::Result<PipelineSummary> {
    let tasks = TaskTracker::new();
    let result = run_tracked(pipeline, source, options, drift, cancel, progress, &tasks).await;
    // Every task was joined on the way (or never started); this holds the run until
    // the last of them, whatever path the run took out.
    tasks.close();
    tasks.wait().await;
    result
}

/// [`run_pipeline_with`], spawning every task on `tasks`.
async fn run_tracked(
    pipeline: &Pipeline,
    source: Option<Source>,
    options: RunOptions,
    drift: Option<Arc<crate::stages::drift::Drift>>,
    cancel: CancellationToken,
    progress: &dyn Progress,
    tasks: &TaskTracker,
) -> anyhow::Result<PipelineSummary> {
    let started = Instant::now();
    let Stages {
        source,
        transforms,
        mut sink,
        requirements,
    } = build_stages(pipeline, source)?;
    let dry_run = options.dry_run;
    let options_follow = options.follow;
    let sample = if dry_run { options.sample } else { 0 };
    // A child token: a fatal error here stops this pipeline, not the caller's others.
    let stop = cancel.child_token();
    let mut run = Run::new(
        pipeline,
        started,
        options,
        &requirements,
        &stop,
        transforms.len(),
        drift,
    );
    let (source_ctx, transform_ctxs, sink_ctx) =
        (run.source_ctx.clone(), run.transform_ctxs.clone(), run.sink_ctx.clone());
    let first_error = Arc::new(FirstError::default());

    // After this run its dead-letter files hold its own failures, or are absent: an
    // earlier run's go first (a dry run's own file only; the real one stays).
    if !remove_earlier_dead_letters(pipeline, &run.dead_letters, &first_error, &stop) {
        return Ok(run.summary(SourceReport::default(), None, first_error.take(), cancel.is_cancelled()));
    }

    if let Err(error) = sink.open(&sink_ctx).await.context("cannot open the sink") {
        first_error.record("sink", error, &stop);
        return Ok(run.summary(SourceReport::default(), None, first_error.take(), cancel.is_cancelled()));
    }

    progress.started(
        &pipeline.name,
        RunCounters {
            source: source_ctx.counters.clone(),
            sink: sink_ctx.counters.clone(),
            estimated_total: source_ctx.estimated_total.clone(),
        },
    );

    // source -> transforms[0] -> ... -> (sample tap) -> sink
    let (source_tx, rx) = mpsc::channel::<Batch>(CHANNEL_CAPACITY);
    let source_task = spawn_source(tasks, source, source_tx, source_ctx, &first_error, &stop);
    let (transform_tasks, rx) = spawn_transforms(tasks, transforms, transform_ctxs, rx, &first_error, &stop);
    let (rx, tap_task) = sample_tap(tasks, rx, sample, &sink_ctx);
    let sink_task: JoinHandle<(Sink, anyhow::Result<()>)> = {
        let ctx = sink_ctx.clone();
        tasks.spawn(async move {
            let result = sink.consume(rx, &ctx).await;
            (sink, result)
        })
    };

    let source_report = join(source_task, "source", &first_error, &stop).await.flatten();
    for (i, task) in transform_tasks.into_iter().enumerate() {
        join(task, &format!("transforms[{i}]"), &first_error, &stop).await;
    }
    if let Some(task) = tap_task {
        if let Some(samples) = join(task, "sample", &first_error, &stop).await {
            run.samples = samples;
        }
    }
    let sink_report = match join(sink_task, "sink", &first_error, &stop).await {
        Some((sink, consumed)) => {
            if let Err(error) = consumed {
                first_error.record("sink", error, &stop);
            }
            // A live mode follow phase reads changed keys, never everything: no stale
            // deletion may follow it, however it ends.
            let complete =
                source_report.is_some() && !first_error.is_set() && !cancel.is_cancelled() && !options_follow;
            finish_sink(sink, complete, &sink_ctx, &first_error, &stop).await
        }
        None => None,
    };
    progress.finished(&pipeline.name);
    Ok(run.summary(
        source_report.unwrap_or_default(),
        sink_report,
        first_error.take(),
        cancel.is_cancelled(),
    ))
}

/// Removes the dead-letter files of an earlier run (a dry run's own file only; the
/// real one stays); false, the error recorded, when one cannot be removed.
fn remove_earlier_dead_letters(
    pipeline: &Pipeline,
    dead_letters: &[DeadLetter],
    first_error: &FirstError,
    stop: &CancellationToken,
) -> bool {
    for dead_letter in dead_letters {
        match dead_letter.remove_previous() {
            Ok(true) => tracing::info!(
                pipeline = %pipeline.name,
                "removed the dead-letter file of an earlier run: {}",
                dead_letter.path().display()
            ),
            Ok(false) => {}
            Err(error) => {
                first_error.record("dead_letter", error.into(), stop);
                return false;
            }
        }
    }
    true
}

/// Spawns the source on `tasks`, sending its batches to `source_tx`; its error is
/// recorded (stopping the run) and gives no report.
fn spawn_source(
    tasks: &TaskTracker,
    source: Source,
    source_tx: mpsc::Sender<Batch>,
    source_ctx: StageContext,
    first_error: &Arc<FirstError>,
    stop: &CancellationToken,
) -> JoinHandle<Option<SourceReport>> {
    let first_error = first_error.clone();
    let stop = stop.clone();
    tasks.spawn(async move {
        match source.run(source_tx, source_ctx).await {
            Ok(report) => Some(report),
            Err(error) => {
                first_error.record("source", error, &stop);
                None
            }
        }
    })
}

/// Spawns each transform on `tasks`, chained by channels from `rx`; gives their
/// tasks and the receiver of the last one's output (`rx` itself without any).
fn spawn_transforms(
    tasks: &TaskTracker,
    transforms: Vec<Transform>,
    transform_ctxs: Vec<StageContext>,
    mut rx: mpsc::Receiver<Batch>,
    first_error: &Arc<FirstError>,
    stop: &CancellationToken,
) -> (Vec<JoinHandle<()>>, mpsc::Receiver<Batch>) {
    let mut transform_tasks = Vec::new();
    for (transform, ctx) in transforms.into_iter().zip(transform_ctxs) {
        let (tx, next_rx) = mpsc::channel::<Batch>(CHANNEL_CAPACITY);
        let (first_error, stop) = (first_error.clone(), stop.clone());
        transform_tasks.push(spawn_transform(
            tasks,
            Arc::new(transform),
            ctx,
            rx,
            tx,
            first_error,
            stop,
        ));
        rx = next_rx;
    }
    (transform_tasks, rx)
}

/// Builds every stage (the source from the pipeline unless `source` is given) with
/// what they require of each other, through [`crate::pipeline::build()`]; all
/// configuration errors together, as one error naming the pipeline.
pub fn build_stages(pipeline: &Pipeline, source: Option<Source>) -> anyhow::Result<crate::pipeline::Stages> {
    crate::pipeline::build(pipeline, source).map_err(|errors| invalid(pipeline, errors))
}

/// The error of a pipeline whose stages do not build (one that skipped `validate`).
fn invalid(pipeline: &Pipeline, errors: Vec<FieldError>) -> anyhow::Error {
    let errors: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.pointer, e.message)).collect();
    anyhow::anyhow!("pipeline `{}` is invalid: {}", pipeline.name, errors.join("; "))
}

/// One transform task: applies the transform to each batch on the blocking pool and
/// passes the result on; ends when its input closes or its output is gone.
fn spawn_transform(
    tasks: &TaskTracker,
    transform: Arc<Transform>,
    ctx: StageContext,
    mut input: mpsc::Receiver<Batch>,
    output: mpsc::Sender<Batch>,
    first_error: Arc<FirstError>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let blocking = tasks.clone();
    tasks.spawn(async move {
        while let Some(batch) = input.recv().await {
            ctx.counters.add_received(batch.len() as u64);
            let busy = Instant::now();
            let (transform_ref, ctx_ref) = (transform.clone(), ctx.clone());
            let applied = blocking
                .spawn_blocking(move || transform_ref.apply(batch, &ctx_ref))
                .await;
            ctx.counters.add_busy(busy.elapsed());
            let batch = match applied {
                Ok(batch) => batch,
                Err(panic) => {
                    first_error.record(&ctx.stage, anyhow::anyhow!("the transform panicked: {panic}"), &stop);
                    return;
                }
            };
            if let Some(error) = ctx.dead_letter.write_error() {
                // A failed record that reached no file would be lost: stop the run.
                first_error.record(
                    &ctx.stage,
                    anyhow::anyhow!(
                        "cannot write the dead-letter file {}: {error}",
                        ctx.dead_letter.path().display()
                    ),
                    &stop,
                );
                return;
            }
            ctx.counters.add_out(batch.len() as u64);
            if !batch.is_empty() && output.send(batch).await.is_err() {
                // The sink is gone (it failed); its error is the one reported.
                return;
            }
        }
    })
}

/// In a dry run that shows `sample` documents, a tap between the transforms and the
/// sink that keeps the first ones; gives what the sink reads from, and the tap's task.
fn sample_tap(
    tasks: &TaskTracker,
    rx: mpsc::Receiver<Batch>,
    sample: usize,
    sink_ctx: &StageContext,
) -> (mpsc::Receiver<Batch>, Option<JoinHandle<Vec<Json>>>) {
    if sample == 0 {
        return (rx, None);
    }
    let (tx, next_rx) = mpsc::channel::<Batch>(CHANNEL_CAPACITY);
    let task = spawn_sample_tap(tasks, rx, tx, sample, sink_ctx.run_timestamp.clone());
    (next_rx, Some(task))
}

/// Passes batches on unchanged and keeps the first `n` documents, as the sink will
/// see them (`_id`, `_index` when set, then the body).
fn spawn_sample_tap(
    tasks: &TaskTracker,
    mut input: mpsc::Receiver<Batch>,
    output: mpsc::Sender<Batch>,
    n: usize,
    timestamp: Arc<str>,
) -> JoinHandle<Vec<Json>> {
    tasks.spawn(async move {
        let mut samples = Vec::new();
        while let Some(batch) = input.recv().await {
            for record in batch.iter().take(n.saturating_sub(samples.len())) {
                let document = record.document_or_default(&timestamp);
                let mut shown = Map::new();
                shown.insert("_id".into(), Json::String(document.id.clone()));
                if let Some(index) = &document.index {
                    shown.insert("_index".into(), Json::String(index.clone()));
                }
                shown.extend(document.body.iter().map(|(k, v)| (k.clone(), v.clone())));
                samples.push(Json::Object(shown));
            }
            if output.send(batch).await.is_err() {
                break;
            }
        }
        samples
    })
}

/// Ends the sink after its input closed: stale deletion when the run is `complete`,
/// refresh; its report, or `None` with the error recorded.
async fn finish_sink(
    sink: Sink,
    complete: bool,
    ctx: &StageContext,
    first_error: &FirstError,
    stop: &CancellationToken,
) -> Option<SinkReport> {
    match sink.finish(UpstreamOutcome { complete }, ctx).await {
        Ok(report) => Some(report),
        Err(error) => {
            first_error.record("sink", error.context("cannot finish the sink"), stop);
            None
        }
    }
}

/// Awaits a stage task; a panic is that stage's fatal error.
async fn join<T>(task: JoinHandle<T>, stage: &str, first_error: &FirstError, stop: &CancellationToken) -> Option<T> {
    match task.await {
        Ok(value) => Some(value),
        Err(error) => {
            first_error.record(stage, anyhow::anyhow!("the stage task failed: {error}"), stop);
            None
        }
    }
}
