//! What `serve` knows about itself, shared by the pipeline tasks (which write it)
//! and the HTTP endpoints (which read it): each pipeline's state, schedule, next
//! run, last summary and readiness; the last reload and the state of each pipeline
//! file; the file watch; who may see what ([`Access`]); the metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value as Json};
use tokio::sync::Notify;

use super::auth::Access;
use super::live_view::LiveView;
use super::metrics::Metrics;
use super::reload::FileReport;
use super::time::rfc3339;
use crate::pipeline::executor::{PipelineSummary, RunCounters, Status};

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The pipeline started (serve started, or its file was added or changed).
    Start,
    /// Its schedule's time came.
    Schedule,
    /// `POST /pipelines/NAME/run`.
    Manual,
}

impl Trigger {
    /// The word used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// A run in progress.
pub struct Running {
    pub trigger: Trigger,
    pub since: DateTime<Utc>,
    /// The run's counters, once its stages are running.
    pub live: Option<RunCounters>,
}

/// One pipeline as `/status` shows it.
pub struct PipelineState {
    /// Which task owns this entry (a pipeline removed and added again gets a new one).
    pub generation: u64,
    pub file: PathBuf,
    /// `every 15m`, `cron "..." (UTC)`, or `once` for a pipeline without a schedule.
    pub schedule: String,
    /// Whether a pipeline waiting for its first scheduled time counts as ready
    /// (`at_start: false`: nothing to wait for).
    pub ready_without_run: bool,
    pub running: Option<Running>,
    pub next_run: Option<DateTime<Utc>>,
    pub runs: u64,
    pub skipped_ticks: u64,
    /// A run of the current configuration ended `ok`.
    pub succeeded: bool,
    pub last_started: Option<DateTime<Utc>>,
    pub last_ended: Option<DateTime<Utc>>,
    pub last_summary: Option<PipelineSummary>,
    /// Why the last run could not start (its stages could not be built).
    pub last_error: Option<String>,
    /// Removed from the files; ends after its run in progress.
    pub stopping: bool,
    /// Wakes the pipeline's task for a run now.
    pub trigger: Arc<Notify>,
    /// A live pipeline's phase and figures (`None` for a scheduled one).
    pub live: Option<LiveView>,
}

impl PipelineState {
    /// Why the pipeline is not ready, or `None` when it is.
    pub fn not_ready_because(&self) -> Option<String> {
        if let Some(why) = self.live.as_ref().and_then(LiveView::failing_too_long) {
            return Some(why);
        }
        if self.stopping || self.succeeded || (self.ready_without_run && self.runs == 0 && self.running.is_none()) {
            return None;
        }
        if let Some(live) = &self.live {
            return Some(live.not_ready_because());
        }
        Some(match (&self.running, &self.last_summary, &self.last_error) {
            (Some(running), None, None) if self.runs == 0 => {
                format!("first run in progress since {}", rfc3339(running.since))
            }
            (_, _, Some(error)) => format!("last run could not start: {error}"),
            (_, Some(summary), _) => match (&summary.status, &summary.error) {
                (_, Some(error)) => format!("last run {}: {error}", summary.status.as_str()),
                (Status::Failed, None) => format!("last run failed: {} documents failed", summary.failed),
                (status, None) => format!("last run {}", status.as_str()),
            },
            (Some(running), _, _) => format!("run in progress since {}", rfc3339(running.since)),
            (None, None, None) => match self.next_run {
                Some(next) => format!("first run not started yet (due {})", rfc3339(next)),
                None => "first run not started yet".to_owned(),
            },
        })
    }

    fn to_json(&self, name: &str) -> Json {
        let state = if self.stopping {
            "stopping"
        } else if let Some(live) = &self.live {
            live.phase.as_str()
        } else if self.running.is_some() {
            "running"
        } else if self.next_run.is_some() {
            "scheduled"
        } else {
            "idle"
        };
        let running = self.running.as_ref().map(|running| {
            let live = running.live.as_ref();
            json!({
                "trigger": running.trigger,
                "since": rfc3339(running.since),
                "read": live.map_or(0, RunCounters::read),
                "written": live.map_or(0, RunCounters::written),
                "estimated_total": live.map_or(0, RunCounters::estimated_total),
            })
        });
        json!({
            "name": name,
            "file": self.file,
            "state": state,
            "schedule": self.schedule,
            "next_run": self.next_run.map(rfc3339),
            "ready": self.not_ready_because().is_none(),
            "not_ready_because": self.not_ready_because(),
            "running": running,
            "runs": self.runs,
            "skipped_ticks": self.skipped_ticks,
            "last_started": self.last_started.map(rfc3339),
            "last_ended": self.last_ended.map(rfc3339),
            "last_error": self.last_error,
            "last_summary": self.last_summary,
            "live": self.live.as_ref().map(LiveView::to_json),
        })
    }
}

/// The last reload, as `/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadState {
    /// `success` (every path there, every file valid) or `failure`.
    pub result: Option<&'static str>,
    /// Whether the valid files were applied (always, unless `--strict` refused a
    /// set with a problem).
    pub applied: bool,
    pub at: Option<String>,
    pub last_success: Option<String>,
    /// What made the last one fail: `file:line:col: error: ...` lines, paths that
    /// cannot be read.
    pub errors: Vec<String>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Every pipeline file found, valid or not.
    pub files: Vec<FileReport>,
    /// Paths given that do not exist (yet): waited for, not ready meanwhile.
    pub missing: Vec<String>,
}

/// The watch on the pipeline files, as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WatchState {
    /// `native`, `poll` or `off`.
    pub mode: &'static str,
    pub up: bool,
    /// What cannot be watched now, and why.
    pub problems: Vec<String>,
}

/// The state shared by every part of `serve`.
pub struct Shared {
    pub metrics: Metrics,
    pub started: DateTime<Utc>,
    /// Whether `POST /pipelines/NAME/run` is allowed.
    pub allow_trigger: bool,
    /// The token and `Host` rules of the endpoints.
    pub access: Access,
    pipelines: Mutex<BTreeMap<String, PipelineState>>,
    reload: Mutex<ReloadState>,
    watch: Mutex<WatchState>,
}

impl Shared {
    pub fn new(allow_trigger: bool, access: Access) -> Self {
        Shared {
            metrics: Metrics::new(),
            started: Utc::now(),
            allow_trigger,
            access,
            pipelines: Mutex::new(BTreeMap::new()),
            reload: Mutex::new(ReloadState::default()),
            watch: Mutex::new(WatchState {
                mode: "off",
                up: true,
                problems: Vec::new(),
            }),
        }
    }

    /// Whether the file watch was up when last set.
    pub fn watch_is_up(&self) -> bool {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).up
    }

    /// Records the state of the file watch (status and metric).
    pub fn set_watch(&self, watch: WatchState) {
        self.metrics.watch_up(watch.up);
        *self.watch.lock().unwrap_or_else(|e| e.into_inner()) = watch;
    }

    /// The pipelines, locked (briefly: never across an await).
    pub fn pipelines(&self) -> MutexGuard<'_, BTreeMap<String, PipelineState>> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last reload, locked.
    pub fn reload(&self) -> MutexGuard<'_, ReloadState> {
        self.reload.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the entry of `name` when `generation` still owns it.
    pub fn update(&self, name: &str, generation: u64, change: impl FnOnce(&mut PipelineState)) {
        if let Some(state) = self.pipelines().get_mut(name) {
            if state.generation == generation {
                change(state);
            }
        }
    }

    /// Changes the entry of `name`, whichever task owns it.
    pub fn update_any(&self, name: &str, change: impl FnOnce(&mut PipelineState)) {
        if let Some(state) = self.pipelines().get_mut(name) {
            change(state);
        }
    }

    /// What is not ready, with why: each pipeline not ready by its name, each path
    /// given that does not exist by the path. Empty when all is.
    pub fn not_ready(&self) -> BTreeMap<String, String> {
        let mut not_ready: BTreeMap<String, String> = self
            .pipelines()
            .iter()
            .filter_map(|(name, state)| state.not_ready_because().map(|why| (name.clone(), why)))
            .collect();
        for path in &self.reload().missing {
            not_ready.insert(
                path.clone(),
                "no such file or folder: waiting for it to appear".to_owned(),
            );
        }
        not_ready
    }

    /// Hands each live pipeline's figures now (lag, pending keys, what is new) to the
    /// metrics; called before `/metrics` is encoded.
    pub fn sample_live(&self) {
        for (name, state) in self.pipelines().iter_mut() {
            if let (Some(live), false) = (&mut state.live, state.stopping) {
                self.metrics.live_sample(name, live.sample());
            }
        }
    }

    /// `/status`: every pipeline, the last reload, the process.
    pub fn status(&self) -> Json {
        let pipelines: Vec<Json> = self
            .pipelines()
            .iter()
            .map(|(name, state)| state.to_json(name))
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "started": rfc3339(self.started),
            "ready": self.not_ready().is_empty(),
            "pipelines": pipelines,
            "reload": *self.reload(),
            "watch": *self.watch.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }
}
