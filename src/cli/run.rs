//! `redis-connector run [--dry-run] PIPELINE|FOLDER...`: loads and checks every
//! pipeline (nothing runs if one is invalid), runs them in turn or `--parallel N`,
//! shows progress, stops cleanly on Ctrl-C / SIGTERM, prints a summary per pipeline
//! (and `--summary-json`, which says `running` from the start and `aborted` when a
//! second signal quits at once), and chooses the exit code: 0 success, 1 errors found
//! (invalid pipeline, failed documents, fatal error, interrupted), 2 usage error,
//! 130 / 143 quit at once by a second Ctrl-C / SIGTERM.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::EnvFilter;

use super::progress::{terminal_bars, BarAwareStderr, BarProgress, LogProgress};
use super::summary_json::{mark_aborted, write_status_json, SummaryJson};
use super::{LogFormat, RunArgs};
use crate::config::{self, LoadedPipeline};
use crate::pipeline::executor::{self, NoProgress, PipelineSummary, Progress, Status};
use crate::redact::{self, Redacting};
use crate::shutdown;
use crate::stages::RunOptions;

/// Runs the `run` command and returns the process's exit code.
pub fn execute(args: &RunArgs) -> ExitCode {
    let bars = (!args.quiet && std::io::stderr().is_terminal()).then(terminal_bars);
    init_tracing(args, bars.clone());

    let files = match config::discover(&args.paths) {
        Ok(files) => files,
        Err(error) => {
            report_error(args, &error.to_string());
            return ExitCode::from(2);
        }
    };
    // Checked before anything is loaded or read: a summary that cannot be written
    // would otherwise be found missing only after the whole run.
    let mut summary_json = match args.summary_json.as_deref().map(SummaryJson::open).transpose() {
        Ok(target) => target,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let (loaded, diagnostics) = crate::pipeline::load_all(&files);
    if !diagnostics.is_empty() {
        report_invalid(args, &diagnostics, &mut summary_json);
        return ExitCode::from(1);
    }

    // A dead-letter path holding a file this tool did not write: refused before
    // anything connects or runs (a run would remove it).
    if refuse_foreign_dead_letters(args, &loaded, &mut summary_json) {
        return ExitCode::from(1);
    }

    // From here on the summary file says this run is going: an older run's summary
    // never stands for this one, even if the process is killed before its end.
    let summary_file = args.summary_json.clone().filter(|p| p.as_path() != Path::new("-"));
    if let Some(path) = &summary_file {
        if let Err(error) = write_status_json(path, "running", None) {
            eprintln!(
                "error: cannot write the summary to {}: {error}; nothing was run",
                path.display()
            );
            return ExitCode::from(1);
        }
    }

    let writes_documents_to_stdout = loaded
        .iter()
        .any(|l| matches!(&l.pipeline.sink, crate::config::model::SinkConfig::Ndjson(nd) if nd.path == "-"));
    if writes_documents_to_stdout && summary_json.as_ref().is_some_and(SummaryJson::is_stdout) {
        eprintln!(
            "error: --summary-json - and a pipeline writing its documents to standard output (ndjson \
             `path: -`) would mix on standard output: give --summary-json a file"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    // The progress bars' and log lines' own tasks, awaited before the runtime goes.
    let progress_tasks = TaskTracker::new();
    let progress = choose_progress(args, bars.as_ref(), &progress_tasks);
    let options = run_options(args);
    if args.follow {
        let outcome = runtime.block_on(super::run_live::follow_all(
            loaded,
            options,
            progress,
            summary_file.clone(),
        ));
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        let summary_takes_stdout = summary_json.as_ref().is_some_and(SummaryJson::is_stdout);
        return super::run_live::report(
            outcome,
            summary_json.as_mut(),
            writes_documents_to_stdout || summary_takes_stdout,
        );
    }
    let outcome = runtime.block_on(async {
        let outcome = run_all(loaded, options, usize::from(args.parallel), progress, summary_file).await;
        progress_tasks.close();
        progress_tasks.wait().await;
        outcome
    });
    // Every task of ours has ended (the executor waits for its stages, the progress
    // tasks were awaited above). What may remain are the client libraries' own
    // connection tasks, dropped with the runtime, and a blocking call of theirs (a DNS
    // lookup towards a dead resolver), which must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));

    // The summary goes to stdout, unless a pipeline writes its documents there
    // (an NDJSON sink with `path: -`) or the JSON summary does (`--summary-json -`):
    // then to stderr, so stdout stays pure NDJSON or JSON.
    let summary_takes_stdout = summary_json.as_ref().is_some_and(SummaryJson::is_stdout);
    print_summaries(&outcome, writes_documents_to_stdout || summary_takes_stdout);
    exit_code(&outcome, &mut summary_json)
}

/// Reports every problem found while loading the pipelines (one line each, or one
/// JSON log line each), says nothing was run, and marks the summary file as invalid.
fn report_invalid(args: &RunArgs, diagnostics: &[crate::config::Diagnostic], summary_json: &mut Option<SummaryJson>) {
    for diagnostic in diagnostics {
        match args.log_format {
            LogFormat::Text => eprintln!("{diagnostic}"),
            // One JSON log line per problem, its place as fields.
            LogFormat::Json => tracing::error!(
                file = %diagnostic.file.display(),
                line = diagnostic.line,
                column = diagnostic.column,
                pointer = %diagnostic.pointer,
                "{}",
                diagnostic.message
            ),
        }
    }
    let files_with_errors = {
        let mut files: Vec<_> = diagnostics.iter().map(|d| &d.file).collect();
        files.dedup();
        files.len()
    };
    report_error(
        args,
        &format!(
            "{} problem(s) in {files_with_errors} pipeline file(s); nothing was run",
            diagnostics.len()
        ),
    );
    // A bot reading the summary must not find the previous run's `ok` there.
    if let Some(target) = summary_json {
        if let Err(error) = target.write(&invalid_summary_json(diagnostics)) {
            eprintln!("error: cannot write the summary to {}: {error}", target.describe());
        }
    }
}

/// Refuses a dead-letter path holding a file this tool did not write (a run would
/// remove it): reports each one, writes an `error` summary, and says whether any was.
fn refuse_foreign_dead_letters(
    args: &RunArgs,
    loaded: &[LoadedPipeline],
    summary_json: &mut Option<SummaryJson>,
) -> bool {
    let refused: Vec<String> = loaded
        .iter()
        .flat_map(|l| executor::dead_letter_paths(&l.pipeline, args.dry_run))
        .filter_map(|path| crate::dead_letter::check_replaceable(&path).err())
        .collect();
    if refused.is_empty() {
        return false;
    }
    for message in &refused {
        report_error(args, message);
    }
    if let Some(target) = summary_json {
        let document = serde_json::json!({
            "status": "error",
            "pipelines": [],
            "not_run": loaded.iter().map(|l| l.pipeline.name.clone()).collect::<Vec<_>>(),
            "reason": refused.join("; "),
        });
        if let Err(error) = target.write(&document) {
            eprintln!("error: cannot write the summary to {}: {error}", target.describe());
        }
    }
    true
}

/// Prints each pipeline's summary, the pipelines not run, and a total line when
/// there was more than one, to standard error when `to_stderr`, else standard output.
fn print_summaries(outcome: &Outcome, to_stderr: bool) {
    let mut out: Box<dyn Write> = if to_stderr {
        Box::new(Redacting::new(std::io::stderr().lock()))
    } else {
        Box::new(Redacting::new(std::io::stdout().lock()))
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
    if outcome.summaries.len() + outcome.not_run.len() + outcome.not_started > 1 {
        let _ = writeln!(out, "\n{}", total_line(outcome));
    }
    let _ = out.flush();
    drop(out);
}

/// The progress shown while pipelines run: none with `--quiet`, bars on a
/// terminal, log lines otherwise; their own tasks join `progress_tasks`.
fn choose_progress(
    args: &RunArgs,
    bars: Option<&indicatif::MultiProgress>,
    progress_tasks: &TaskTracker,
) -> Arc<dyn Progress> {
    match (bars, args.quiet) {
        (_, true) => Arc::new(NoProgress),
        (Some(multi), false) => Arc::new(BarProgress::new(multi.clone(), progress_tasks.clone())),
        (None, false) => Arc::new(LogProgress::new(progress_tasks.clone())),
    }
}

/// The stages' options for a one-shot run, from the command line.
fn run_options(args: &RunArgs) -> RunOptions {
    RunOptions {
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
        sample: args.sample.unwrap_or(if args.quiet { 0 } else { 3 }),
        follow: false,
        full: args.full,
    }
}

/// Writes the JSON summary (when asked for) and chooses the exit code: 1 when a
/// pipeline failed, was not run, or the summary could not be written.
fn exit_code(outcome: &Outcome, summary_json: &mut Option<SummaryJson>) -> ExitCode {
    let mut failed = outcome.failed || !outcome.not_run.is_empty();
    failed |= outcome.summaries.iter().any(PipelineSummary::is_failure);
    if let Some(target) = summary_json {
        if let Err(error) = target.write(&summary_json_document(outcome, failed)) {
            eprintln!("error: cannot write the summary to {}: {error}", target.describe());
            failed = true;
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a fatal error: `error: ...` on standard error, or a JSON log line with
/// `--log-format json` (so a log collector reading JSON gets every line as JSON).
fn report_error(args: &RunArgs, message: &str) {
    match args.log_format {
        LogFormat::Text => eprintln!("error: {}", redact::text(message)),
        LogFormat::Json => tracing::error!("{message}"),
    }
}

/// What a run of every pipeline gave.
struct Outcome {
    summaries: Vec<PipelineSummary>,
    /// Pipelines not started because the run was interrupted first.
    not_run: Vec<String>,
    /// A pipeline could not even start.
    failed: bool,
    /// How many pipelines could not even start.
    not_started: usize,
}

/// The last line of a run of several pipelines: how many ended how, and the sums.
fn total_line(outcome: &Outcome) -> String {
    let count = |status: Status| outcome.summaries.iter().filter(|s| s.status == status).count();
    let sum = |field: fn(&PipelineSummary) -> u64| outcome.summaries.iter().map(field).sum::<u64>();
    let pipelines = outcome.summaries.len() + outcome.not_run.len() + outcome.not_started;
    let mut ended = vec![format!("{} ok", count(Status::Ok))];
    let failed = count(Status::Failed) + outcome.not_started;
    if failed > 0 {
        ended.push(format!("{failed} failed"));
    }
    let interrupted = count(Status::Interrupted);
    if interrupted > 0 {
        ended.push(format!("{interrupted} interrupted"));
    }
    if !outcome.not_run.is_empty() {
        ended.push(format!("{} not run", outcome.not_run.len()));
    }
    let dry_run = outcome.summaries.iter().any(|s| s.dry_run);
    // Documents left unchanged (change-aware sync), when any pipeline compared.
    let unchanged = if outcome.summaries.iter().any(|s| s.new.is_some()) {
        format!(" + unchanged {}", sum(|s| s.unchanged))
    } else {
        String::new()
    };
    format!(
        "total: {pipelines} pipelines ({}): read {} = {} {}{unchanged} + filtered {} + skipped {} + failed {}",
        ended.join(", "),
        sum(|s| s.read),
        if dry_run { "would write" } else { "written" },
        sum(|s| s.written),
        sum(|s| s.filtered),
        sum(|s| s.skipped),
        sum(|s| s.failed),
    )
}

async fn run_all(
    pipelines: Vec<LoadedPipeline>,
    options: RunOptions,
    parallel: usize,
    progress: Arc<dyn Progress>,
    summary_file: Option<std::path::PathBuf>,
) -> Outcome {
    let cancel = CancellationToken::new();
    let signals = shutdown::cancel_on_stop_signal(cancel.clone(), shutdown::ONE_SHOT_STOP, move |second| {
        mark_aborted(second, summary_file)
    });
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
    let _ = signals.await;

    let mut outcome = Outcome {
        summaries: Vec::new(),
        not_run: Vec::new(),
        failed: false,
        not_started: 0,
    };
    for (name, result) in results {
        match result {
            Ok(Some(summary)) => outcome.summaries.push(summary),
            Ok(None) => outcome.not_run.push(name),
            Err(message) => {
                eprintln!("error: pipeline {name}: {}", redact::text(&message));
                outcome.failed = true;
                outcome.not_started += 1;
            }
        }
    }
    outcome
}

fn summary_json_document(outcome: &Outcome, failed: bool) -> serde_json::Value {
    serde_json::json!({
        "status": if failed { "failed" } else { "ok" },
        "pipelines": outcome.summaries,
        "not_run": outcome.not_run,
    })
}

/// The `--summary-json` of a run stopped by invalid pipelines: status `invalid`, no
/// pipeline run, and every problem as `validate --format json` gives it.
fn invalid_summary_json(problems: &[config::Diagnostic]) -> serde_json::Value {
    serde_json::json!({
        "status": "invalid",
        "pipelines": [],
        "not_run": [],
        "problems": problems,
    })
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
        // Each event is written whole through its own redacting writer.
        .with_writer(move || Redacting::new(BarAwareStderr::new(bars.clone())))
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
