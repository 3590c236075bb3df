//! A pipeline's task under `serve`: what it needs (its configuration as it changes,
//! the signals that stop it, the shared state), run on a schedule by [`super::runner`]
//! or, for a live pipeline, by [`super::live_task`]; and the progress that hands a
//! run's counters to `/status`.

use std::sync::Arc;

use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio_util::sync::CancellationToken;

use super::state::Shared;
use crate::config::LoadedPipeline;
use crate::pipeline::executor::{Progress, RunCounters};
use crate::stages::RunOptions;

/// What a pipeline task needs.
pub struct PipelineTask {
    pub name: String,
    pub generation: u64,
    pub config: watch::Receiver<Arc<LoadedPipeline>>,
    /// Stop scheduling: end after the run in progress.
    pub stop: CancellationToken,
    /// Interrupt the run in progress (shutdown past its timeout).
    pub interrupt: CancellationToken,
    pub trigger: Arc<Notify>,
    /// Held during a run: a removed pipeline's last run and a new pipeline of the same
    /// name never overlap.
    pub run_lock: Arc<AsyncMutex<()>>,
    pub shared: Arc<Shared>,
    pub options: RunOptions,
}

/// Hands the run's live counters to `/status`.
pub(super) struct StateProgress {
    pub shared: Arc<Shared>,
    pub generation: u64,
}

impl Progress for StateProgress {
    fn started(&self, pipeline: &str, live: RunCounters) {
        self.shared.update(pipeline, self.generation, |state| {
            if let Some(running) = &mut state.running {
                running.live = Some(live);
            }
        });
    }

    fn finished(&self, _pipeline: &str) {}
}
