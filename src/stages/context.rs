//! What the executor hands every stage: who it is, where failures go, its counters,
//! the cancellation signal and the run's options.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetter;
use crate::stats::StageCounters;

/// Options of one run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read and render, check the target, write nothing.
    pub dry_run: bool,
    /// Let stale deletion remove more than `delete_stale.max_fraction` of the index.
    pub allow_mass_delete: bool,
    /// Rendered documents to show in a dry run.
    pub sample: usize,
}

/// Everything a stage gets from the executor.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The stage's place in the pipeline: `source`, `transforms[0]`, `sink`.
    pub stage: String,
    /// This stage's counters.
    pub counters: Arc<StageCounters>,
    /// Where failed records go.
    pub dead_letter: DeadLetter,
    /// Fires on Ctrl-C / SIGTERM: sources stop reading; later stages drain their input.
    pub cancel: CancellationToken,
    /// The run's options.
    pub options: Arc<RunOptions>,
    /// Estimated number of keys the source will read (0 = unknown); the source sets it.
    pub estimated_total: Arc<AtomicU64>,
    /// Timestamp of the run's start (ISO 8601 UTC), used as the documents' `_timestamp`.
    pub run_timestamp: Arc<str>,
}

impl StageContext {
    /// A context for a stage of `pipeline`, with fresh counters; used by the executor
    /// and by tests that drive a single stage.
    pub fn new(pipeline: &str, stage: &str, dead_letter: DeadLetter, options: RunOptions) -> Self {
        StageContext {
            pipeline: Arc::from(pipeline),
            stage: stage.to_owned(),
            counters: Arc::new(StageCounters::default()),
            dead_letter,
            cancel: CancellationToken::new(),
            options: Arc::new(options),
            estimated_total: Arc::new(AtomicU64::new(0)),
            run_timestamp: Arc::from(crate::document::now_timestamp()),
        }
    }

    /// The same run, another stage, with its own counters.
    pub fn for_stage(&self, stage: &str) -> Self {
        StageContext { stage: stage.to_owned(), counters: Arc::new(StageCounters::default()), ..self.clone() }
    }
}
