//! The metrics `serve` exposes on `/metrics`, in the Prometheus text format (crate
//! `prometheus-client`): per pipeline (runs by outcome, documents by operation, keys
//! read, skipped ticks, last duration, last success, running), and for the process
//! (reloads by result, last reload, build info). Labels are pipeline names and fixed
//! words, never a Redis key.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::executor::{PipelineSummary, Status};

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
struct ResultLabel {
    result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

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
    last_success: Family<PipelineLabel, FloatGauge>,
    running: Family<PipelineLabel, Gauge>,
    reloads: Family<ResultLabel, Counter>,
    last_reload_success: FloatGauge,
    last_reload_ok: Gauge,
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
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Metrics {
            runs: Family::default(),
            documents: Family::default(),
            keys_read: Family::default(),
            skipped_ticks: Family::default(),
            last_duration: Family::default(),
            last_success: Family::default(),
            running: Family::default(),
            reloads: Family::default(),
            last_reload_success: FloatGauge::default(),
            last_reload_ok: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "pipeline_runs",
            "Pipeline runs ended, by outcome (ok, failed, interrupted, error: could not start)",
            metrics.runs.clone(),
        );
        registry.register(
            "pipeline_documents",
            "Documents by operation (written, unchanged, deleted as stale, failed, filtered, skipped), summed over runs",
            metrics.documents.clone(),
        );
        registry.register("pipeline_keys_read", "Redis keys read, summed over runs", metrics.keys_read.clone());
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
            "pipeline_last_success_timestamp",
            "When the pipeline's last run with outcome ok ended (Unix time)",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        registry.register("pipeline_running", "1 while the pipeline runs", metrics.running.clone());
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
            "build",
            "The running build",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        for result in ["success", "failure"] {
            let _ = metrics.reloads.get_or_create(&ResultLabel { result: result.into() });
        }
        metrics.last_reload_ok.set(1);
        Metrics { registry, ..metrics }
    }

    /// Creates a pipeline's series at 0, so they exist before its first run ends.
    pub fn add_pipeline(&self, pipeline: &str) {
        let label = PipelineLabel { pipeline: pipeline.into() };
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
        self.running.get_or_create(&label).set(0);
    }

    /// Drops a removed pipeline's series.
    pub fn remove_pipeline(&self, pipeline: &str) {
        let label = PipelineLabel { pipeline: pipeline.into() };
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
        self.last_success.remove(&label);
        self.running.remove(&label);
    }

    /// A run started.
    pub fn run_started(&self, pipeline: &str) {
        self.running.get_or_create(&PipelineLabel { pipeline: pipeline.into() }).set(1);
    }

    /// A run ended with `summary`, or could not start (`None`) after `seconds`.
    pub fn run_ended(&self, pipeline: &str, summary: Option<&PipelineSummary>, seconds: f64, ended_at: f64) {
        let label = PipelineLabel { pipeline: pipeline.into() };
        self.running.get_or_create(&label).set(0);
        self.last_duration.get_or_create(&label).set(seconds);
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
            .get_or_create(&PipelineLabel { pipeline: pipeline.into() })
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

    /// The pipeline files were loaded at start (a success, not a reload).
    pub fn loaded_at_start(&self, at: f64) {
        self.last_reload_success.set(at);
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
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
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_s_series_exist_at_zero_and_go_when_it_is_removed() {
        let metrics = Metrics::new();
        metrics.add_pipeline("users");
        let text = metrics.encode();
        assert!(text.contains("redis_connector_pipeline_runs_total{pipeline=\"users\",outcome=\"ok\"} 0"), "{text}");
        assert!(text.contains("redis_connector_pipeline_documents_total{pipeline=\"users\",operation=\"written\"} 0"));
        assert!(text.contains("redis_connector_config_reloads_total{result=\"failure\"} 0"));
        assert!(text.contains("redis_connector_build_info{version=\""));
        metrics.remove_pipeline("users");
        assert!(!metrics.encode().contains("pipeline=\"users\""));
    }

    #[test]
    fn reloads_count_by_result() {
        let metrics = Metrics::new();
        metrics.reloaded(false, 0.0);
        let text = metrics.encode();
        assert!(text.contains("redis_connector_config_reloads_total{result=\"failure\"} 1"), "{text}");
        assert!(text.contains("redis_connector_config_last_reload_successful 0"));
        metrics.reloaded(true, 1234.5);
        let text = metrics.encode();
        assert!(text.contains("redis_connector_config_last_reload_success_timestamp_seconds 1234.5"), "{text}");
    }
}
