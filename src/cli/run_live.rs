//! `redis-connector run --follow`: every pipeline given follows Redis at once (live
//! mode, see [`crate::live`]) until Ctrl-C or SIGTERM, which drains what is pending
//! and exits 0; a pipeline that cannot start, stops on a fatal error, or is stopped
//! during its first sync (`interrupted`), exits 1.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::summary_json::SummaryJson;
use crate::config::LoadedPipeline;
use crate::live::{self, LiveSummary};
use crate::pipeline::executor::{Progress, Status};
use crate::redact::{self, Redacting};
use crate::stages::RunOptions;

/// What following every pipeline gave: a summary each, or why it could not start.
pub struct FollowOutcome {
    results: Vec<(String, Result<LiveSummary, String>)>,
}

/// Follows every pipeline until a signal; returns when all have stopped.
pub async fn follow_all(
    pipelines: Vec<LoadedPipeline>,
    options: RunOptions,
    progress: Arc<dyn Progress>,
    summary_file: Option<std::path::PathBuf>,
) -> FollowOutcome {
    let shutdown = CancellationToken::new();
    // (The first signal drains what is pending, at most `live.drain_timeout`.)
    let signals =
        crate::shutdown::cancel_on_stop_signal(shutdown.clone(), crate::shutdown::FOLLOW_STOP, move |second| {
            super::summary_json::mark_aborted(second, summary_file)
        });
    let runs = pipelines.into_iter().map(|loaded| {
        let (options, shutdown, progress) = (options.clone(), shutdown.clone(), progress.clone());
        async move {
            let name = loaded.pipeline.name.clone();
            tracing::info!(pipeline = %name, file = %loaded.path.display(), "following");
            let result = live::follow(&loaded.pipeline, options, shutdown, progress.as_ref()).await;
            (name, result.map_err(|error| format!("{error:#}")))
        }
    });
    let results = futures::future::join_all(runs).await;
    signals.abort();
    FollowOutcome { results }
}

/// Prints every summary (and writes `--summary-json`, `-` being standard output),
/// and picks the exit code. `to_stderr`: standard output is taken (by documents or
/// by the JSON summary), so the text summary goes to standard error.
pub fn report(outcome: FollowOutcome, summary_json: Option<&mut SummaryJson>, to_stderr: bool) -> ExitCode {
    let mut out: Box<dyn Write> = if to_stderr {
        Box::new(Redacting::new(std::io::stderr().lock()))
    } else {
        Box::new(Redacting::new(std::io::stdout().lock()))
    };
    let mut failed = false;
    let mut interrupted = false;
    let mut summaries = Vec::new();
    let mut errors = Vec::new();
    for (name, result) in outcome.results {
        match result {
            Ok(summary) => {
                let _ = writeln!(out, "{summary}");
                interrupted |= summary.status == Status::Interrupted;
                failed |= summary.is_failure() && summary.status != Status::Interrupted;
                summaries.push(summary);
            }
            Err(message) => {
                eprintln!("error: pipeline {name}: {}", redact::text(&message));
                errors.push(serde_json::json!({"pipeline": name, "error": message}));
                failed = true;
            }
        }
    }
    let _ = out.flush();
    drop(out);
    if let Some(target) = summary_json {
        let document = serde_json::json!({
            "status": if failed { "failed" } else if interrupted { "interrupted" } else { "ok" },
            "pipelines": summaries,
            "errors": errors,
        });
        if let Err(error) = target.write(&document) {
            eprintln!("error: cannot write the summary to {}: {error}", target.describe());
            failed = true;
        }
    }
    if failed || interrupted {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
