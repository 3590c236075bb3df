//! `redis-connector alias rollback PIPELINE`: points a pipeline's alias back at the
//! index it pointed to before its last swap (one kept by `sink.keep_previous`).

use std::process::ExitCode;

use super::AliasArgs;
use super::AliasCommand;
use crate::config::model::SinkConfig;
use crate::stages::sink::elasticsearch::{alias, ElasticsearchSink};

/// Runs the `alias` command and returns the process's exit code.
pub fn execute(args: &AliasArgs) -> ExitCode {
    match &args.command {
        AliasCommand::Rollback { pipeline } => {
            if !pipeline.is_file() {
                eprintln!("error: {}: no such file", pipeline.display());
                return ExitCode::from(2);
            }
            match rollback(pipeline) {
                Ok(done) => {
                    println!("{done}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn rollback(path: &std::path::Path) -> anyhow::Result<String> {
    let loaded = crate::pipeline::load_pipeline(path).map_err(|diagnostics| {
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the pipeline file is invalid:\n{}", lines.join("\n"))
    })?;
    let pipeline = &loaded.pipeline;
    let (SinkConfig::Elasticsearch(es), Some(alias_name)) = (&pipeline.sink, sink_alias(&pipeline.sink)) else {
        anyhow::bail!(
            "pipeline `{}` ({}) does not write behind an alias (sink.alias): there is nothing to roll back",
            pipeline.name,
            path.display()
        );
    };
    let sink = ElasticsearchSink::build(es).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("/sink{}: {}", e.pointer, e.message))
            .collect();
        anyhow::anyhow!("the pipeline's sink is invalid: {}", lines.join("; "))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = sink.connect()?;
        alias::rollback(&client, &alias_name, &pipeline.name).await
    })
}

fn sink_alias(sink: &SinkConfig) -> Option<String> {
    match sink {
        SinkConfig::Elasticsearch(es) => es.alias.clone(),
        SinkConfig::Ndjson(_) => None,
    }
}
