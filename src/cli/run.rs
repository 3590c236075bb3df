//! `redis-connector run [--dry-run] PIPELINE|FOLDER...`: loads and checks every
//! pipeline (nothing runs if one is invalid), runs them in turn or `--parallel N`,
//! shows progress, stops cleanly on Ctrl-C / SIGTERM, prints a summary per pipeline
//! (and `--summary-json`), and chooses the exit code: 0 success, 1 errors found
//! (invalid pipeline, failed documents, fatal error, interrupted), 2 usage error.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use super::progress::{terminal_bars, BarAwareStderr, BarProgress, LogProgress};
use super::{LogFormat, RunArgs};
use crate::config::{self, LoadedPipeline};
use crate::executor::{self, NoProgress, PipelineSummary, Progress};
use crate::stages::RunOptions;

/// Runs the `run` command and returns the process's exit code.
pub fn execute(args: &RunArgs) -> ExitCode {
    let bars = (!args.quiet && std::io::stderr().is_terminal()).then(terminal_bars);
    init_tracing(args, bars.clone());

    let files = match config::discover(&args.paths) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let (loaded, diagnostics) = config::load_all(&files);
    if !diagnostics.is_empty() {
        for diagnostic in &diagnostics {
            eprintln!("{diagnostic}");
        }
        let files_with_errors = {
            let mut files: Vec<_> = diagnostics.iter().map(|d| &d.file).collect();
            files.dedup();
            files.len()
        };
        eprintln!(
            "error: {} problem(s) in {files_with_errors} pipeline file(s); nothing was run",
            diagnostics.len()
        );
        // A bot reading the summary must not find the previous run's `ok` there.
        if let Some(path) = &args.summary_json {
            if let Err(error) = write_invalid_summary_json(path, &diagnostics) {
                eprintln!("error: cannot write the summary to {}: {error}", path.display());
            }
        }
        return ExitCode::from(1);
    }

    let writes_documents_to_stdout = loaded.iter().any(|l| {
        matches!(&l.pipeline.sink, crate::config::model::SinkConfig::Ndjson(nd) if nd.path == "-")
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let progress: Arc<dyn Progress> = match (&bars, args.quiet) {
        (_, true) => Arc::new(NoProgress),
        (Some(multi), false) => Arc::new(BarProgress::new(multi.clone())),
        (None, false) => Arc::new(LogProgress::default()),
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
        sample: args.sample,
        follow: false,
    };
    if args.follow {
        let outcome = runtime.block_on(super::follow::follow_all(loaded, options, progress));
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        return super::follow::report(outcome, args.summary_json.as_deref(), writes_documents_to_stdout);
    }
    let outcome = runtime.block_on(run_all(loaded, options, usize::from(args.parallel), progress));
    // Stage tasks that outlive a fatal error (e.g. a source blocked on a dead server)
    // must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));

    // The summary goes to stdout, unless a pipeline writes its documents there
    // (an NDJSON sink with `path: -`): then to stderr, so stdout stays pure NDJSON.
    let mut out: Box<dyn Write> = if writes_documents_to_stdout {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    for (i, summary) in outcome.summaries.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{summary}");
    }
    for name in &outcome.not_run {
        let _ = writeln!(out, "pipeline {name}: not run (interrupted)");
    }
    let _ = out.flush();
    drop(out);
    let mut failed = outcome.failed || !outcome.not_run.is_empty();
    failed |= outcome.summaries.iter().any(PipelineSummary::is_failure);
    if let Some(path) = &args.summary_json {
        if let Err(error) = write_summary_json(path, &outcome, failed) {
            eprintln!("error: cannot write the summary to {}: {error}", path.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What a run of every pipeline gave.
struct Outcome {
    summaries: Vec<PipelineSummary>,
    /// Pipelines not started because the run was interrupted first.
    not_run: Vec<String>,
    /// A pipeline could not even start.
    failed: bool,
}

async fn run_all(
    pipelines: Vec<LoadedPipeline>,
    options: RunOptions,
    parallel: usize,
    progress: Arc<dyn Progress>,
) -> Outcome {
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let results: Vec<(String, Result<Option<PipelineSummary>, String>)> = futures::stream::iter(pipelines)
        .map(|loaded| {
            let (options, cancel, progress) = (options.clone(), cancel.clone(), progress.clone());
            async move {
                let name = loaded.pipeline.name.clone();
                if cancel.is_cancelled() {
                    return (name, Ok(None));
                }
                tracing::info!(pipeline = %name, file = %loaded.path.display(), "running");
                let result = executor::run_pipeline(&loaded.pipeline, options, cancel, progress.as_ref()).await;
                (name, result.map(Some).map_err(|error| format!("{error:#}")))
            }
        })
        .buffered(parallel.max(1))
        .collect()
        .await;
    signals.abort();

    let mut outcome = Outcome {
        summaries: Vec::new(),
        not_run: Vec::new(),
        failed: false,
    };
    for (name, result) in results {
        match result {
            Ok(Some(summary)) => outcome.summaries.push(summary),
            Ok(None) => outcome.not_run.push(name),
            Err(message) => {
                eprintln!("error: pipeline {name}: {message}");
                outcome.failed = true;
            }
        }
    }
    outcome
}

/// Fires `cancel` on the first Ctrl-C or SIGTERM, saying `what` happens next; a second one exits at once.
pub(super) async fn watch_signals_then(cancel: CancellationToken, what: &str) {
    let signal = first_signal().await;
    eprintln!("{signal} received: {what} (send it again to quit at once)");
    cancel.cancel();
    first_signal().await;
    eprintln!("second {signal}: quitting at once");
    std::process::exit(130);
}

/// Fires `cancel` on the first Ctrl-C or SIGTERM; a second one exits at once.
async fn watch_signals(cancel: CancellationToken) {
    watch_signals_then(
        cancel,
        "stopping reading, draining what is in flight, skipping stale deletion",
    )
    .await;
}

async fn first_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(error) => {
                tracing::warn!("cannot watch SIGTERM: {error}");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

fn write_summary_json(path: &Path, outcome: &Outcome, failed: bool) -> std::io::Result<()> {
    let document = serde_json::json!({
        "status": if failed { "failed" } else { "ok" },
        "pipelines": outcome.summaries,
        "not_run": outcome.not_run,
    });
    let text = serde_json::to_string_pretty(&document).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// The `--summary-json` of a run stopped by invalid pipelines: status `invalid`, no
/// pipeline run, and every problem as `validate --format json` gives it.
fn write_invalid_summary_json(path: &Path, problems: &[config::Diagnostic]) -> std::io::Result<()> {
    let document = serde_json::json!({
        "status": "invalid",
        "pipelines": [],
        "not_run": [],
        "problems": problems,
    });
    let text = serde_json::to_string_pretty(&document).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Logs go to standard error: `-q` errors only; default warnings (plus progress lines
/// off a terminal); `-v` info, `-vv` debug, `-vvv` trace. `RUST_LOG` overrides.
fn init_tracing(args: &RunArgs, bars: Option<indicatif::MultiProgress>) {
    let default = if args.quiet {
        "error"
    } else {
        match args.verbose {
            0 => "warn,redis_connector::progress=info",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BarAwareStderr::new(bars))
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
