//! `redis-connector verify PIPELINE|FOLDER...`: compares what each pipeline would write
//! now with what its Elasticsearch index holds, by content hash, and reports the
//! documents missing, different and extra (counts, and up to `--samples N` of each
//! with their key and `_id`), as text or `--format json`. Read-only: nothing is
//! written to Elasticsearch, Redis or any file (not even a dead-letter file). Exit
//! code 0 when every index is exact, 1 on drift or when a pipeline cannot be compared
//! (invalid, failed records, a fatal error, interrupted), 2 usage error.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use super::{OutputFormat, VerifyArgs};
use crate::config::{self, model::SinkConfig, LoadedPipeline};
use crate::pipeline::executor::{self, NoProgress, PipelineSummary, Status};
use crate::redact;
use crate::stages::drift::{Drift, DriftCount, DriftReport};

/// What `verify` found for one pipeline.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub pipeline: String,
    pub file: String,
    /// `exact`, `drift`, or `error` (not compared, or not completely).
    pub status: &'static str,
    /// The indices compared.
    pub indices: Vec<String>,
    /// Documents the pipeline would write now.
    pub documents: u64,
    /// Documents the indices held.
    pub indexed: u64,
    pub missing: DriftCount,
    pub different: DriftCount,
    pub extra: DriftCount,
    /// Records that could not be read or rendered (not compared: `run --dry-run`
    /// shows why).
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Verified {
    fn new(loaded: &LoadedPipeline, summary: &PipelineSummary, drift: DriftReport) -> Verified {
        let error = match (&summary.error, summary.status, summary.failed) {
            (Some(error), _, _) => Some(error.clone()),
            (None, Status::Interrupted, _) => Some("interrupted: not every key was compared".to_owned()),
            (None, _, failed) if failed > 0 => Some(format!(
                "{failed} records could not be read or rendered, so their documents were not compared \
                 (`run --dry-run` shows why)"
            )),
            _ => None,
        };
        let status = match (&error, drift.exact()) {
            (Some(_), _) => "error",
            (None, true) => "exact",
            (None, false) => "drift",
        };
        Verified {
            pipeline: loaded.pipeline.name.clone(),
            file: loaded.path.display().to_string(),
            status,
            indices: summary.targets.clone(),
            documents: summary.written + summary.unchanged,
            indexed: drift.indexed,
            missing: drift.missing,
            different: drift.different,
            extra: drift.extra,
            failed: summary.failed,
            error,
        }
    }

    fn error(loaded: &LoadedPipeline, error: String) -> Verified {
        Verified {
            pipeline: loaded.pipeline.name.clone(),
            file: loaded.path.display().to_string(),
            status: "error",
            indices: Vec::new(),
            documents: 0,
            indexed: 0,
            missing: DriftCount::default(),
            different: DriftCount::default(),
            extra: DriftCount::default(),
            failed: 0,
            error: Some(error),
        }
    }

    /// The text report: one line of counts, then the samples.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let (Some(error), true) = (&self.error, self.indices.is_empty() && self.documents == 0) {
            let _ = writeln!(out, "pipeline {}: not compared: {error}", self.pipeline);
            return out;
        }
        let indices = if self.indices.is_empty() {
            "no index".to_owned()
        } else {
            format!("index {}", self.indices.join(", "))
        };
        let _ = match self.status {
            "exact" => writeln!(
                out,
                "pipeline {}: exact ({indices} holds the {} documents the pipeline would write)",
                self.pipeline, self.documents
            ),
            _ => writeln!(
                out,
                "pipeline {}: {} missing, {} different, {} extra ({indices} holds {} documents; the pipeline \
                 would write {})",
                self.pipeline, self.missing.count, self.different.count, self.extra.count, self.indexed, self.documents
            ),
        };
        for (kind, count) in [
            ("missing", &self.missing),
            ("different", &self.different),
            ("extra", &self.extra),
        ] {
            for sample in &count.samples {
                let key = match (&sample.key, sample.database) {
                    (Some(key), Some(db)) => format!("key {key:?} (db {db})"),
                    (Some(key), None) => format!("key {key:?}"),
                    _ => "key unknown".to_owned(),
                };
                let _ = writeln!(out, "  {kind:<9} {key}, _id {} in {}", sample.id, sample.index);
            }
        }
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  error: {error}");
        }
        out
    }
}

/// Runs the `verify` command and returns the process's exit code.
pub fn execute(args: &VerifyArgs) -> ExitCode {
    let default = if args.quiet { "error" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| redact::Redacting::new(std::io::stderr()))
        .try_init();
    let files = match config::discover(&args.paths) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {}", redact::text(&error.to_string()));
            return ExitCode::from(2);
        }
    };
    let (loaded, diagnostics) = crate::pipeline::load_all(&files);
    if !diagnostics.is_empty() {
        for diagnostic in &diagnostics {
            eprintln!("{diagnostic}");
        }
        eprintln!(
            "error: {} problem(s) in the pipeline files; nothing was compared",
            diagnostics.len()
        );
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let results = runtime.block_on(verify_all(&loaded, args.samples));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let exact = results.iter().all(|r| r.status == "exact");
    match args.format {
        OutputFormat::Text => {
            let text: Vec<String> = results.iter().map(Verified::text).collect();
            print!("{}", redact::text(&text.join("\n")));
        }
        OutputFormat::Json => {
            let document = serde_json::json!({
                "status": if exact { "exact" } else if results.iter().any(|r| r.status == "error") { "error" } else { "drift" },
                "pipelines": results,
            });
            let text = serde_json::to_string_pretty(&document).unwrap_or_default();
            println!("{}", redact::text(&text));
        }
    }
    if exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Verifies each pipeline in turn; Ctrl-C / SIGTERM stops the one being compared.
async fn verify_all(loaded: &[LoadedPipeline], samples: usize) -> Vec<Verified> {
    let cancel = CancellationToken::new();
    let signals = crate::shutdown::cancel_on_stop_signal(cancel.clone(), crate::shutdown::VERIFY_STOP, |_| {});
    let mut results = Vec::new();
    for pipeline in loaded {
        if !matches!(pipeline.pipeline.sink, SinkConfig::Elasticsearch(_)) {
            results.push(Verified::error(
                pipeline,
                "verify compares with an Elasticsearch index; this pipeline's sink is not elasticsearch".to_owned(),
            ));
            continue;
        }
        if cancel.is_cancelled() {
            results.push(Verified::error(
                pipeline,
                "interrupted before it was compared".to_owned(),
            ));
            continue;
        }
        let drift = Arc::new(Drift::new(samples));
        let outcome = executor::verify_pipeline(&pipeline.pipeline, drift.clone(), cancel.clone(), &NoProgress).await;
        results.push(match outcome {
            Ok(summary) => Verified::new(pipeline, &summary, drift.report()),
            Err(error) => Verified::error(pipeline, format!("{error:#}")),
        });
    }
    signals.abort();
    results
}
