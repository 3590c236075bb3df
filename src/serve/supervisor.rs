//! The set of running pipelines and how it changes: a new, valid set of pipeline
//! files is compared with the running one by name and parsed content. Unchanged
//! pipelines (comments, whitespace, quoting or key order aside) keep running
//! untouched; changed ones get their new configuration between runs (a run in
//! progress finishes first) and start over; removed ones stop after their run in
//! progress; added ones start. Every pipeline task is spawned on one
//! [`TaskTracker`], which shutdown waits for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::{PipelineState, Shared};
use super::task::PipelineTask;
use crate::config::LoadedPipeline;
use crate::stages::RunOptions;

/// What a new set changed.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

/// A pipeline task, as the supervisor holds it.
struct Handle {
    content: Json,
    config: watch::Sender<Arc<LoadedPipeline>>,
    stop: CancellationToken,
}

/// How shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// Every run in progress finished within the timeout.
    InTime,
    /// The timeout passed: these pipelines' runs were interrupted.
    Interrupted(Vec<String>),
}

/// Owns the pipeline tasks.
pub struct Supervisor {
    shared: Arc<Shared>,
    options: RunOptions,
    running: BTreeMap<String, Handle>,
    /// One per name ever seen: runs of one name never overlap.
    run_locks: HashMap<String, Arc<AsyncMutex<()>>>,
    tasks: TaskTracker,
    /// Parent of every run's cancellation: fired past the shutdown timeout.
    interrupt: CancellationToken,
    generation: u64,
}

impl Supervisor {
    pub fn new(shared: Arc<Shared>, options: RunOptions) -> Self {
        Supervisor {
            shared,
            options,
            running: BTreeMap::new(),
            run_locks: HashMap::new(),
            tasks: TaskTracker::new(),
            interrupt: CancellationToken::new(),
            generation: 0,
        }
    }

    /// The pipelines running now, each in the version it runs.
    pub fn running(&self) -> Vec<Arc<LoadedPipeline>> {
        self.running
            .values()
            .map(|handle| handle.config.borrow().clone())
            .collect()
    }

    /// Makes `set` (valid as a whole) the running set.
    pub fn apply(&mut self, set: Vec<LoadedPipeline>) -> Changes {
        let mut changes = Changes::default();
        let mut wanted: BTreeMap<String, LoadedPipeline> = set
            .into_iter()
            .map(|loaded| (loaded.pipeline.name.clone(), loaded))
            .collect();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            match wanted.remove(&name) {
                None => {
                    let handle = self.running.remove(&name).expect("listed above");
                    handle.stop.cancel();
                    self.shared.update_any(&name, |state| state.stopping = true);
                    changes.removed.push(name);
                }
                Some(loaded) => {
                    let handle = self.running.get_mut(&name).expect("listed above");
                    if handle.content == loaded.content {
                        changes.unchanged += 1;
                        // A file moved (a git-sync worktree) keeps its pipeline: only
                        // the path shown changes.
                        let path = loaded.path.clone();
                        self.shared.update_any(&name, |state| state.file = path);
                        continue;
                    }
                    handle.content = loaded.content.clone();
                    self.shared.update_any(&name, |state| {
                        state.file = loaded.path.clone();
                        state.schedule = describe(&loaded);
                        state.ready_without_run = ready_without_run(&loaded);
                        state.succeeded = false;
                        state.last_error = None;
                    });
                    handle.config.send_replace(Arc::new(loaded));
                    changes.changed.push(name);
                }
            }
        }
        for (name, loaded) in wanted {
            self.start(name.clone(), loaded);
            changes.added.push(name);
        }
        changes
    }

    fn start(&mut self, name: String, loaded: LoadedPipeline) {
        self.generation += 1;
        let trigger = Arc::new(Notify::new());
        self.shared.metrics.add_pipeline(&name);
        self.shared.pipelines().insert(
            name.clone(),
            PipelineState {
                generation: self.generation,
                file: loaded.path.clone(),
                schedule: describe(&loaded),
                ready_without_run: ready_without_run(&loaded),
                running: None,
                next_run: None,
                runs: 0,
                skipped_ticks: 0,
                succeeded: false,
                last_started: None,
                last_ended: None,
                last_summary: None,
                last_error: None,
                stopping: false,
                trigger: trigger.clone(),
                live: None,
            },
        );
        let content = loaded.content.clone();
        let (config, receiver) = watch::channel(Arc::new(loaded));
        let stop = CancellationToken::new();
        let task = PipelineTask {
            name: name.clone(),
            generation: self.generation,
            config: receiver,
            stop: stop.clone(),
            interrupt: self.interrupt.clone(),
            trigger,
            run_lock: self.run_locks.entry(name.clone()).or_default().clone(),
            shared: self.shared.clone(),
            options: self.options.clone(),
        };
        self.tasks.spawn(task.run());
        self.running.insert(name, Handle { content, config, stop });
    }

    /// Stops scheduling, waits up to `timeout` for the runs in progress, then
    /// interrupts those still going (no stale deletion) and waits for them to drain.
    pub async fn shutdown(mut self, timeout: Duration) -> Drained {
        for (_, handle) in std::mem::take(&mut self.running) {
            handle.stop.cancel();
        }
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait()).await.is_ok() {
            return Drained::InTime;
        }
        let interrupted: Vec<String> = self
            .shared
            .pipelines()
            .iter()
            .filter(|(_, state)| state.running.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        tracing::warn!(
            target: super::LOG_TARGET,
            event = "interrupting",
            interrupted = %interrupted.join(","),
            "shutdown timeout passed: interrupting {} (they stop reading and drain what is in flight; no stale deletion)",
            interrupted.join(", ")
        );
        self.interrupt.cancel();
        self.tasks.wait().await;
        Drained::Interrupted(interrupted)
    }
}

/// The schedule as `/status` shows it.
fn describe(loaded: &LoadedPipeline) -> String {
    if super::live_task::is_live(loaded) {
        return "live".to_owned();
    }
    match &loaded.pipeline.schedule {
        Some(config) => match crate::config::schedule::Schedule::build(config) {
            Ok(schedule) if config.at_start => schedule.describe(),
            Ok(schedule) => format!("{} (not at start)", schedule.describe()),
            Err(_) => "invalid".to_owned(),
        },
        None => "once".to_owned(),
    }
}

/// A pipeline told not to run at start is ready before its first run.
fn ready_without_run(loaded: &LoadedPipeline) -> bool {
    loaded.pipeline.schedule.as_ref().is_some_and(|s| !s.at_start)
}
