//! `redis-connector alias ...`: what pipelines built behind their aliases, and
//! moving an alias back.
//! - `alias list PATH...`: every alias any pipeline built on the Elasticsearch
//!   clusters the given pipeline files write to;
//! - `alias status PIPELINE`: the same for one pipeline, with the index built for
//!   the file as it is now and what a run would do;
//! - `alias rollback [--dry-run] PIPELINE`: points the alias back at the index it
//!   pointed to before its last swap (one kept by `sink.keep_previous`).
//!
//! Exit codes: 0 done, 1 failed (invalid file, Elasticsearch error, nothing to roll
//! back), 2 usage error (no such file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::alias_report;
use super::{AliasArgs, AliasCommand, ReportFormat};
use crate::config::{self, model::SinkConfig, LoadedPipeline};
use crate::stages::sink::elasticsearch::{alias, ElasticsearchSink};
use crate::stages::Sink;

/// Runs the `alias` command and returns the process's exit code.
pub fn execute(args: &AliasArgs) -> ExitCode {
    let result = match &args.command {
        AliasCommand::Rollback { pipeline, dry_run } => {
            one_file(pipeline).and_then(|loaded| block_on(rollback(&loaded, *dry_run)))
        }
        AliasCommand::Status { pipeline, format } => {
            one_file(pipeline).and_then(|loaded| block_on(status(&loaded, *format)))
        }
        AliasCommand::List { paths, format } => match config::discover(paths) {
            Ok(files) => block_on(list(&files, *format)),
            Err(error) => Err(Failure::Usage(error.to_string())),
        },
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {}", crate::redact::text(&message));
            ExitCode::from(2)
        }
        Err(Failure::Failed(error)) => {
            eprintln!("error: {}", crate::redact::text(&format!("{error:#}")));
            ExitCode::from(1)
        }
    }
}

/// Why an `alias` command failed: a usage error (exit 2) or anything else (exit 1).
enum Failure {
    Usage(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Failed(error)
    }
}

fn block_on(work: impl std::future::Future<Output = Result<String, Failure>>) -> Result<String, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(e.into()))?;
    runtime.block_on(work)
}

/// Loads one pipeline file: missing is a usage error, invalid a failure.
fn one_file(path: &Path) -> Result<LoadedPipeline, Failure> {
    if !path.is_file() {
        return Err(Failure::Usage(format!("{}: no such file", path.display())));
    }
    crate::pipeline::load_pipeline(path).map_err(|diagnostics| {
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        Failure::Failed(anyhow::anyhow!("the pipeline file is invalid:\n{}", lines.join("\n")))
    })
}

/// The pipeline's Elasticsearch sink and alias, or why it has none.
fn alias_sink(loaded: &LoadedPipeline) -> anyhow::Result<(ElasticsearchSink, String)> {
    let pipeline = &loaded.pipeline;
    let Some(alias_name) = sink_alias(&pipeline.sink) else {
        anyhow::bail!(
            "pipeline `{}` ({}) does not write behind an alias (sink.alias): there is no alias to show or move",
            pipeline.name,
            loaded.path.display()
        );
    };
    // Built as a run builds it, so the sink knows the pipeline's fingerprint.
    match crate::pipeline::executor::build_stages(pipeline, None)?.sink {
        Sink::Elasticsearch(sink) => Ok((*sink, alias_name)),
        Sink::Ndjson(_) => anyhow::bail!("pipeline `{}` writes no Elasticsearch index", pipeline.name),
    }
}

async fn rollback(loaded: &LoadedPipeline, dry_run: bool) -> Result<String, Failure> {
    let (sink, alias_name) = alias_sink(loaded)?;
    let client = sink.connect()?;
    Ok(alias::rollback(&client, &alias_name, &loaded.pipeline.name, dry_run).await?)
}

async fn status(loaded: &LoadedPipeline, format: ReportFormat) -> Result<String, Failure> {
    let (sink, alias_name) = alias_sink(loaded)?;
    let client = sink.connect()?;
    let pipeline = &loaded.pipeline.name;
    let built = alias::inventory(&client, Some(&alias_name))
        .await?
        .into_iter()
        .find(|entry| entry.pipeline == *pipeline);
    let plan = sink
        .alias_plan(pipeline)
        .await?
        .ok_or_else(|| anyhow::anyhow!("pipeline `{pipeline}` writes behind no alias"))?;
    let status = alias_report::Status {
        pipeline: pipeline.clone(),
        file: loaded.path.clone(),
        cluster: crate::redact::text(&urls_of(&loaded.pipeline.sink)).into_owned(),
        alias: alias_name,
        serving: built.as_ref().and_then(|b| b.serving.clone()),
        for_the_file: plan.target.clone(),
        a_run_would: plan.describe(true),
        indices: built.map(|b| b.indices).unwrap_or_default(),
    };
    Ok(match format {
        ReportFormat::Text => status.to_string(),
        ReportFormat::Json => serde_json::to_string_pretty(&status).map_err(anyhow::Error::from)?,
    })
}

async fn list(files: &[PathBuf], format: ReportFormat) -> Result<String, Failure> {
    let (loaded, diagnostics) = crate::pipeline::load_all(files);
    if !diagnostics.is_empty() {
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        return Err(Failure::Failed(anyhow::anyhow!(
            "invalid pipeline files (the clusters to list are read from them):\n{}",
            lines.join("\n")
        )));
    }
    // One listing per cluster, however many pipelines write there.
    let mut clusters: Vec<(String, ElasticsearchSink)> = Vec::new();
    for pipeline in &loaded {
        let SinkConfig::Elasticsearch(es) = &pipeline.pipeline.sink else {
            continue;
        };
        let key = urls(es);
        if clusters.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let sink = ElasticsearchSink::build(es).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("/sink{}: {}", e.pointer, e.message))
                .collect();
            anyhow::anyhow!(
                "the sink of {} is invalid: {}",
                pipeline.path.display(),
                lines.join("; ")
            )
        })?;
        clusters.push((key, sink));
    }
    if clusters.is_empty() {
        return Err(Failure::Failed(anyhow::anyhow!(
            "none of these pipelines writes to Elasticsearch: there is no cluster to list"
        )));
    }
    let mut listed = Vec::new();
    for (key, sink) in clusters {
        let client = sink.connect()?;
        listed.push(alias_report::Cluster {
            cluster: crate::redact::text(&key).into_owned(),
            aliases: alias::inventory(&client, None).await?,
        });
    }
    Ok(match format {
        ReportFormat::Text => listed.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n\n"),
        ReportFormat::Json => serde_json::to_string_pretty(&listed).map_err(anyhow::Error::from)?,
    })
}

/// The sink's node URLs, as written, in one line.
fn urls(es: &crate::config::model::ElasticsearchSinkConfig) -> String {
    es.url.to_vec().join(", ")
}

fn urls_of(sink: &SinkConfig) -> String {
    match sink {
        SinkConfig::Elasticsearch(es) => urls(es),
        SinkConfig::Ndjson(_) => String::new(),
    }
}

fn sink_alias(sink: &SinkConfig) -> Option<String> {
    match sink {
        SinkConfig::Elasticsearch(es) => es.alias.clone(),
        SinkConfig::Ndjson(_) => None,
    }
}
