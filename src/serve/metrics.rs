//! The metrics `serve` exposes on `/metrics`, in the Prometheus text format (crate
//! `prometheus-client`): per pipeline (runs by outcome, a run duration histogram,
//! documents by operation, keys read, skipped ticks, last duration, last success,
//! running), per pipeline file (valid or not), and for the process (reloads by
//! result, last reload, whether the file watch is up, build info with the commit,
//! and the standard `process_*` series of [`super::process_metrics`]); for live
//! pipelines also lag, pending keys, events received, keys dropped on overflow and
//! resyncs by reason. Labels are pipeline names, file paths and fixed words, never
//! a Redis key. `docs/src/serve.md` lists every series.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::pipeline::executor::{PipelineSummary, Status};
use crate::stages::source::redis::change_source::pending::Reason;

/// Every metric name starts with this.
pub const PREFIX: &str = "redis_connector";

/// `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    pipeline: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    pipeline: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    pipeline: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    file: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Run durations: buckets from 0.1 s to about 2 hours (0.1 s, then each 3 times
/// the one before), enough to tell a 5-second run from a 20-minute one.
type DurationHistogram = Family<PipelineLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.1, 3.0, 11))
}

/// The commit the binary was built from (`git rev-parse` in build.rs), or
/// `unknown` outside a git checkout.
pub const COMMIT: &str = env!("REDIS_CONNECTOR_COMMIT_HASH");

/// How a run ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The run ended `ok`.
    Ok,
    /// Documents failed, or a stage failed.
    Failed,
    /// Stopped by shutdown before its end.
    Interrupted,
    /// The stages could not even be built.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a summary.
    pub fn of(summary: &PipelineSummary) -> Self {
        match summary.status {
            Status::Ok => Outcome::Ok,
            Status::Failed => Outcome::Failed,
            Status::Interrupted => Outcome::Interrupted,
        }
    }
}

/// The metrics of one `serve` process.
pub struct Metrics {
    registry: Registry,
    runs: Family<OutcomeLabels, Counter>,
    documents: Family<OperationLabels, Counter>,
    keys_read: Family<PipelineLabel, Counter>,
    skipped_ticks: Family<PipelineLabel, Counter>,
    last_duration: Family<PipelineLabel, FloatGauge>,
    duration: DurationHistogram,
    last_success: Family<PipelineLabel, FloatGauge>,
    running: Family<PipelineLabel, Gauge>,
    live_lag: Family<PipelineLabel, FloatGauge>,
    live_pending: Family<PipelineLabel, Gauge>,
    live_events: Family<PipelineLabel, Counter>,
    live_dropped: Family<PipelineLabel, Counter>,
    live_resyncs: Family<ReasonLabels, Counter>,
    live_resyncs_failed: Family<PipelineLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    last_reload_success: FloatGauge,
    last_reload_ok: Gauge,
    file_valid: Family<FileLabel, Gauge>,
    watch_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric; the reload counters start at 0 for both results so a
    /// query sees them before the first reload.
    pub fn new() -> Self {
        let mut root = Registry::default();
        // The standard process series keep their usual, unprefixed names.
        root.register_collector(Box::new(super::process_metrics::ProcessCollector));
        let registry = root.sub_registry_with_prefix(PREFIX);
        let metrics = Metrics {
            runs: Family::default(),
            documents: Family::default(),
            keys_read: Family::default(),
            skipped_ticks: Family::default(),
            last_duration: Family::default(),
            duration: DurationHistogram::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            running: Family::default(),
            live_lag: Family::default(),
            live_pending: Family::default(),
            live_events: Family::default(),
            live_dropped: Family::default(),
            live_resyncs: Family::default(),
            live_resyncs_failed: Family::default(),
            reloads: Family::default(),
            last_reload_success: FloatGauge::default(),
            last_reload_ok: Gauge::default(),
            file_valid: Family::default(),
            watch_up: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "pipeline_runs",
            "Pipeline runs ended, by outcome (ok, failed, interrupted, error: could not start)",
            metrics.runs.clone(),
        );
        registry.register(
            "pipeline_documents",
            "Documents by operation (written, unchanged, deleted: as stale, or by live mode for a key gone; failed, filtered, skipped), summed over runs and live changes",
            metrics.documents.clone(),
        );
        registry.register(
            "pipeline_keys_read",
            "Redis keys read, summed over runs",
            metrics.keys_read.clone(),
        );
        registry.register(
            "pipeline_skipped_ticks",
            "Scheduled times skipped because the pipeline's previous run was still going",
            metrics.skipped_ticks.clone(),
        );
        registry.register_with_unit(
            "pipeline_last_run_duration",
            "Duration of the pipeline's last run",
            Unit::Seconds,
            metrics.last_duration.clone(),
        );
        registry.register_with_unit(
            "pipeline_run_duration",
            "Durations of the pipeline's runs (a live pipeline: its first sync and resyncs), whatever their outcome",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register_with_unit(
            "pipeline_last_success_timestamp",
            "When the pipeline's last run with outcome ok ended (Unix time); 0 until its first success since serve started",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        registry.register(
            "pipeline_running",
            "1 while the pipeline runs (a live pipeline: while it follows)",
            metrics.running.clone(),
        );
        registry.register_with_unit(
            "pipeline_live_lag",
            "Live pipelines: age of the oldest change not applied yet (0 when none waits)",
            Unit::Seconds,
            metrics.live_lag.clone(),
        );
        registry.register(
            "pipeline_live_pending_keys",
            "Live pipelines: changed keys waiting to be applied",
            metrics.live_pending.clone(),
        );
        registry.register(
            "pipeline_live_events",
            "Live pipelines: keyspace notifications received",
            metrics.live_events.clone(),
        );
        registry.register(
            "pipeline_live_dropped_keys",
            "Live pipelines: pending keys dropped when the pending set overflowed (each overflow starts a resync)",
            metrics.live_dropped.clone(),
        );
        registry.register(
            "pipeline_live_resyncs",
            format!(
                "Live pipelines: resyncs started, by reason ({})",
                Reason::ALL.map(Reason::name).join(", ")
            ),
            metrics.live_resyncs.clone(),
        );
        registry.register(
            "pipeline_live_resyncs_failed",
            "Live pipelines: resyncs (and follow phases) that failed; each is tried again",
            metrics.live_resyncs_failed.clone(),
        );
        registry.register(
            "config_reloads",
            "Reloads of the pipeline files, by result (success, failure)",
            metrics.reloads.clone(),
        );
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "When the pipeline files were last loaded successfully, at start or on reload (Unix time)",
            Unit::Seconds,
            metrics.last_reload_success.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload succeeded (or none was tried), 0 when it failed",
            metrics.last_reload_ok.clone(),
        );
        registry.register(
            "pipeline_file_valid",
            "1 when the pipeline file passes every check, 0 when it does not (its last valid version, if any, keeps running)",
            metrics.file_valid.clone(),
        );
        registry.register(
            "serve_file_watch_up",
            "1 while the pipeline files are watched for changes, 0 while the watch is down (it is set again every second; SIGHUP reloads meanwhile)",
            metrics.watch_up.clone(),
        );
        registry.register(
            "build",
            "The running build: version and git commit",
            Info::new(vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ("commit".to_owned(), COMMIT.to_owned()),
            ]),
        );
        for result in ["success", "failure"] {
            let _ = metrics.reloads.get_or_create(&ResultLabel { result: result.into() });
        }
        metrics.last_reload_ok.set(1);
        metrics.watch_up.set(1);
        Metrics {
            registry: root,
            ..metrics
        }
    }

    /// Creates a pipeline's series at 0, so they exist before its first run ends.
    pub fn add_pipeline(&self, pipeline: &str) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        for outcome in [Outcome::Ok, Outcome::Failed, Outcome::Interrupted, Outcome::Error] {
            let _ = self.runs.get_or_create(&OutcomeLabels {
                pipeline: pipeline.into(),
                outcome: outcome.as_str().into(),
            });
        }
        for operation in OPERATIONS {
            let _ = self.documents.get_or_create(&OperationLabels {
                pipeline: pipeline.into(),
                operation: operation.into(),
            });
        }
        let _ = self.keys_read.get_or_create(&label);
        let _ = self.skipped_ticks.get_or_create(&label);
        let _ = self.duration.get_or_create(&label);
        // 0 until the first success: an alert on its age fires for a pipeline that
        // never succeeded too.
        let _ = self.last_success.get_or_create(&label);
        self.running.get_or_create(&label).set(0);
    }

    /// Drops a removed pipeline's series.
    pub fn remove_pipeline(&self, pipeline: &str) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        for outcome in [Outcome::Ok, Outcome::Failed, Outcome::Interrupted, Outcome::Error] {
            self.runs.remove(&OutcomeLabels {
                pipeline: pipeline.into(),
                outcome: outcome.as_str().into(),
            });
        }
        for operation in OPERATIONS {
            self.documents.remove(&OperationLabels {
                pipeline: pipeline.into(),
                operation: operation.into(),
            });
        }
        for family in [&self.keys_read, &self.skipped_ticks] {
            family.remove(&label);
        }
        self.last_duration.remove(&label);
        self.duration.remove(&label);
        self.last_success.remove(&label);
        self.running.remove(&label);
        self.remove_live(pipeline);
    }

    /// A live pipeline starts following: its live series exist from now on, at 0.
    pub fn live_started(&self, pipeline: &str) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        self.running.get_or_create(&label).set(1);
        self.live_lag.get_or_create(&label).set(0.0);
        self.live_pending.get_or_create(&label).set(0);
        let _ = self.live_events.get_or_create(&label);
        let _ = self.live_dropped.get_or_create(&label);
        let _ = self.live_resyncs_failed.get_or_create(&label);
        for reason in Reason::ALL {
            let _ = self.live_resyncs.get_or_create(&ReasonLabels {
                pipeline: pipeline.into(),
                reason: reason.name().into(),
            });
        }
    }

    /// A live pipeline stopped following (it ended, failed, or is being replaced).
    pub fn live_stopped(&self, pipeline: &str) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        self.running.get_or_create(&label).set(0);
        self.live_lag.get_or_create(&label).set(0.0);
        self.live_pending.get_or_create(&label).set(0);
    }

    /// A live pipeline's resync or follow phase failed (it is tried again).
    pub fn live_resync_failed(&self, pipeline: &str) {
        self.live_resyncs_failed
            .get_or_create(&PipelineLabel {
                pipeline: pipeline.into(),
            })
            .inc();
    }

    /// Drops a pipeline's live series (removed, or no longer live).
    pub fn remove_live(&self, pipeline: &str) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        self.live_lag.remove(&label);
        self.live_pending.remove(&label);
        self.live_events.remove(&label);
        self.live_dropped.remove(&label);
        self.live_resyncs_failed.remove(&label);
        for reason in Reason::ALL {
            self.live_resyncs.remove(&ReasonLabels {
                pipeline: pipeline.into(),
                reason: reason.name().into(),
            });
        }
    }

    /// A live pipeline's figures now: lag and pending keys, and what was received,
    /// dropped and applied since the last sample.
    pub fn live_sample(&self, pipeline: &str, sample: LiveSample) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        self.live_lag.get_or_create(&label).set(sample.lag_seconds);
        self.live_pending
            .get_or_create(&label)
            .set(i64::try_from(sample.pending).unwrap_or(i64::MAX));
        self.live_events.get_or_create(&label).inc_by(sample.new_events);
        self.live_dropped.get_or_create(&label).inc_by(sample.new_dropped);
        for (operation, n) in [("written", sample.new_upserts), ("deleted", sample.new_deletes)] {
            self.documents
                .get_or_create(&OperationLabels {
                    pipeline: pipeline.into(),
                    operation: operation.into(),
                })
                .inc_by(n);
        }
    }

    /// A live pipeline's resync starts.
    pub fn live_resync(&self, pipeline: &str, reason: Reason) {
        self.live_resyncs
            .get_or_create(&ReasonLabels {
                pipeline: pipeline.into(),
                reason: reason.name().into(),
            })
            .inc();
    }

    /// A live pipeline's follow phase ended: its failed, skipped and filtered changes
    /// (its upserts and deletes are counted as they happen, by [`Metrics::live_sample`]).
    pub fn live_phase_ended(&self, pipeline: &str, summary: &PipelineSummary) {
        for (operation, n) in [
            ("failed", summary.failed),
            ("skipped", summary.skipped),
            ("filtered", summary.filtered),
        ] {
            self.documents
                .get_or_create(&OperationLabels {
                    pipeline: pipeline.into(),
                    operation: operation.into(),
                })
                .inc_by(n);
        }
    }

    /// A run started.
    pub fn run_started(&self, pipeline: &str) {
        self.running
            .get_or_create(&PipelineLabel {
                pipeline: pipeline.into(),
            })
            .set(1);
    }

    /// A run ended with `summary`, or could not start (`None`) after `seconds`.
    pub fn run_ended(&self, pipeline: &str, summary: Option<&PipelineSummary>, seconds: f64, ended_at: f64) {
        self.running
            .get_or_create(&PipelineLabel {
                pipeline: pipeline.into(),
            })
            .set(0);
        self.sync_ended(pipeline, summary, seconds, ended_at);
    }

    /// A full sync ended (a run, or a live pipeline's first sync or resync), or could
    /// not start (`None`): counted as a run, with its documents.
    pub fn sync_ended(&self, pipeline: &str, summary: Option<&PipelineSummary>, seconds: f64, ended_at: f64) {
        let label = PipelineLabel {
            pipeline: pipeline.into(),
        };
        self.last_duration.get_or_create(&label).set(seconds);
        self.duration.get_or_create(&label).observe(seconds);
        let outcome = summary.map_or(Outcome::Error, Outcome::of);
        self.runs
            .get_or_create(&OutcomeLabels {
                pipeline: pipeline.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
        if outcome == Outcome::Ok {
            self.last_success.get_or_create(&label).set(ended_at);
        }
        let Some(summary) = summary else { return };
        self.keys_read.get_or_create(&label).inc_by(summary.read);
        for (operation, n) in documents_by_operation(summary) {
            self.documents
                .get_or_create(&OperationLabels {
                    pipeline: pipeline.into(),
                    operation: operation.into(),
                })
                .inc_by(n);
        }
    }

    /// Scheduled times skipped while a run was still going.
    pub fn ticks_skipped(&self, pipeline: &str, n: u64) {
        self.skipped_ticks
            .get_or_create(&PipelineLabel {
                pipeline: pipeline.into(),
            })
            .inc_by(n);
    }

    /// A reload ended; `at` is the Unix time of a success.
    pub fn reloaded(&self, success: bool, at: f64) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabel { result: result.into() }).inc();
        self.last_reload_ok.set(i64::from(success));
        if success {
            self.last_reload_success.set(at);
        }
    }

    /// The pipeline files were loaded at start (not a reload): `at` is the Unix
    /// time of a success (every path there, every file valid).
    pub fn loaded_at_start(&self, success: bool, at: f64) {
        self.last_reload_ok.set(i64::from(success));
        if success {
            self.last_reload_success.set(at);
        }
    }

    /// Whether `file` passed every check.
    pub fn file_checked(&self, file: &str, valid: bool) {
        self.file_valid
            .get_or_create(&FileLabel { file: file.into() })
            .set(i64::from(valid));
    }

    /// Drops the series of a file no longer among the pipeline files.
    pub fn file_gone(&self, file: &str) {
        self.file_valid.remove(&FileLabel { file: file.into() });
    }

    /// Whether the pipeline files are watched now.
    pub fn watch_up(&self, up: bool) {
        self.watch_up.set(i64::from(up));
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// A live pipeline's figures at one moment, for [`Metrics::live_sample`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveSample {
    pub lag_seconds: f64,
    pub pending: u64,
    /// Events received since the last sample.
    pub new_events: u64,
    /// Keys dropped on overflow since the last sample.
    pub new_dropped: u64,
    /// Changed keys written since the last sample.
    pub new_upserts: u64,
    /// Documents deleted by follow phases since the last sample.
    pub new_deletes: u64,
}

/// The values of the `operation` label.
const OPERATIONS: [&str; 6] = ["written", "unchanged", "deleted", "failed", "filtered", "skipped"];

/// A summary's documents by operation, as the `operation` label names them
/// (`unchanged`: held by the index with the same content, not written; `deleted`:
/// stale documents removed).
fn documents_by_operation(summary: &PipelineSummary) -> [(&'static str, u64); OPERATIONS.len()] {
    [
        ("written", summary.written),
        ("unchanged", summary.unchanged),
        ("deleted", summary.deleted_stale),
        ("failed", summary.failed),
        ("filtered", summary.filtered),
        ("skipped", summary.skipped),
    ]
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
