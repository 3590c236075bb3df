//! One run's stage contexts and dead-letter files ([`Run::new`]), and its summary
//! once every stage has ended ([`Run::summary`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::dead_letter_paths;
use super::summary::*;
use crate::config::model::Pipeline;
use crate::dead_letter::DeadLetter;
use crate::stages::{RunOptions, SinkReport, SourceReport, StageContext};
use crate::stats::CountersSnapshot;

/// What the summary is computed from.
pub(super) struct Run<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) started: Instant,
    pub(super) dry_run: bool,
    pub(super) source_ctx: StageContext,
    pub(super) transform_ctxs: Vec<StageContext>,
    pub(super) sink_ctx: StageContext,
    pub(super) dead_letters: Vec<DeadLetter>,
    pub(super) samples: Vec<Json>,
}

impl<'a> Run<'a> {
    /// The contexts of every stage of one run, under `stop`, and its dead-letter
    /// files (a dry run's in a place of their own; the sink's own file when it names one).
    pub(super) fn new(
        pipeline: &'a Pipeline,
        started: Instant,
        options: RunOptions,
        requirements: &crate::pipeline::Requirements,
        stop: &CancellationToken,
        transforms: usize,
        drift: Option<Arc<crate::stages::drift::Drift>>,
    ) -> Run<'a> {
        let dry_run = options.dry_run;
        let mut paths = dead_letter_paths(pipeline, dry_run).into_iter();
        // `verify` writes nothing anywhere: its failed records are only counted.
        let verifying = drift.is_some();
        let dead_letter_at = |path: PathBuf| {
            if verifying {
                DeadLetter::discarding(path)
            } else {
                DeadLetter::new(path)
            }
        };
        let dead_letter = dead_letter_at(paths.next().unwrap_or_else(|| pipeline.dead_letter_path()));
        let mut root = StageContext::new(&pipeline.name, "source", dead_letter.clone(), options);
        root.drift = drift;
        root.failed_before_sink
            .set_ids_rendered(requirements.upstream.ids_rendered);
        root.cancel = stop.clone();
        let source_ctx = root.for_stage("source");
        let mut sink_ctx = root.for_stage("sink");
        let mut dead_letters = vec![dead_letter];
        if let Some(path) = paths.next() {
            sink_ctx.dead_letter = dead_letter_at(path);
            dead_letters.push(sink_ctx.dead_letter.clone());
        }
        let transform_ctxs: Vec<StageContext> = (0..transforms)
            .map(|i| root.for_stage(&format!("transforms[{i}]")))
            .collect();
        Run {
            pipeline,
            started,
            dry_run,
            source_ctx,
            transform_ctxs,
            sink_ctx,
            dead_letters,
            samples: Vec::new(),
        }
    }
}

impl Run<'_> {
    /// The summary of this run from its stages' counters, the source's and sink's
    /// reports, a fatal error and whether it was interrupted.
    pub(super) fn summary(
        &mut self,
        source: SourceReport,
        sink: Option<SinkReport>,
        fatal: Option<String>,
        interrupted: bool,
    ) -> PipelineSummary {
        let seconds = self.started.elapsed().as_secs_f64();
        for dead_letter in &self.dead_letters {
            dead_letter.log_the_rest();
        }
        let (stages, sink_counters) = self.stage_summaries();

        let source_counters = &stages[0].counters;
        let read = source_counters.received + source_counters.skipped;
        let (skipped_reasons, filtered, skipped, mut failed) = tally(&stages);
        let report = sink.unwrap_or_else(|| SinkReport {
            written: sink_counters.out,
            unchanged: sink_counters.unchanged,
            failed: sink_counters.failed,
            ..SinkReport::default()
        });
        failed += report.failed.max(sink_counters.failed);
        let written = report.written;
        let unchanged = report.unchanged;
        let deleted = sink_counters.deleted;
        let accounted = written + unchanged + deleted + filtered + skipped + failed;
        // Records lost in flight are expected only when a stage failed fatally.
        let not_processed = if fatal.is_some() {
            read.saturating_sub(accounted)
        } else {
            0
        };
        let counts_add_up = read == accounted + not_processed;
        if !counts_add_up {
            tracing::error!(
                pipeline = %self.pipeline.name,
                read, written, unchanged, filtered, skipped, failed,
                "BUG: the counts do not add up: read != written + unchanged + filtered + skipped + failed"
            );
        }
        let mut notes = source.notes.clone();
        notes.extend(report.notes.iter().cloned());
        let error = fatal.or_else(|| report.error.clone());
        let status = if error.is_some() || !counts_add_up {
            Status::Failed
        } else if interrupted {
            Status::Interrupted
        } else if failed > 0 {
            Status::Failed
        } else {
            Status::Ok
        };
        PipelineSummary {
            pipeline: self.pipeline.name.clone(),
            dry_run: self.dry_run,
            status,
            read,
            written,
            unchanged,
            deleted,
            new: report.new,
            changed: report.changed,
            rewritten: report.rewritten,
            filtered,
            skipped,
            skipped_reasons,
            failed,
            not_processed,
            deleted_stale: report.deleted_stale,
            stale_found: report.stale_found,
            seconds,
            docs_per_second: if seconds > 0.0 { written as f64 / seconds } else { 0.0 },
            keys_per_second: if seconds > 0.0 { read as f64 / seconds } else { 0.0 },
            targets: report.targets.clone(),
            dead_letter: self
                .dead_letters
                .iter()
                .filter(|d| d.written() > 0)
                .map(DeadLetter::path)
                .collect(),
            keys: source.keys,
            notes,
            error,
            counts_add_up,
            stages,
            samples: std::mem::take(&mut self.samples),
        }
    }

    /// Each stage's counters (source, transforms, sink), and the sink's again.
    fn stage_summaries(&self) -> (Vec<StageSummary>, CountersSnapshot) {
        let mut stages = vec![StageSummary {
            stage: "source".into(),
            counters: self.source_ctx.counters.snapshot(),
        }];
        stages.extend(self.transform_ctxs.iter().map(|ctx| StageSummary {
            stage: ctx.stage.clone(),
            counters: ctx.counters.snapshot(),
        }));
        let sink_counters = self.sink_ctx.counters.snapshot();
        stages.push(StageSummary {
            stage: "sink".into(),
            counters: sink_counters.clone(),
        });
        (stages, sink_counters)
    }
}

/// The records filtered, skipped (with their reasons) and failed over the stages;
/// the sink's failures are left out (its report gives them).
fn tally(stages: &[StageSummary]) -> (std::collections::BTreeMap<String, u64>, u64, u64, u64) {
    let mut skipped_reasons = std::collections::BTreeMap::new();
    let (mut filtered, mut skipped, mut failed) = (0, 0, 0);
    for stage in stages {
        filtered += stage.counters.filtered;
        skipped += stage.counters.skipped;
        for (reason, n) in &stage.counters.skipped_reasons {
            *skipped_reasons.entry(reason.clone()).or_insert(0) += n;
        }
    }
    // The sink's written and failed come from its report; its counters stand in
    // when `finish` failed.
    for stage in &stages[..stages.len() - 1] {
        failed += stage.counters.failed;
    }
    (skipped_reasons, filtered, skipped, failed)
}
