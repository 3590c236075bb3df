//! The command line: `validate` and `run`. This is the one place that prints fatal
//! errors and chooses exit codes (0 success, 1 errors found, 2 usage error).

pub mod follow;
pub mod progress;
pub mod run;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the run or validation found errors (invalid pipeline, failed documents)
  2  usage error (bad flags, missing file)";

/// Sync Redis into Elasticsearch with declarative YAML pipelines.
#[derive(Debug, Parser)]
#[command(name = "redis-connector", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline files offline: YAML, schema, templates, globs, regexes.
    ///
    /// Prints `file:line:col: error: message (at /json/pointer)` for every problem in
    /// every file (on a terminal, with the source line underlined), or a JSON array
    /// with `--format json`; then `N files checked, M invalid` on standard error.
    /// Folders are searched for `*.yaml` / `*.yml` (hidden files and folders skipped);
    /// a quoted pattern (`'pipelines/*.yaml'`) is expanded. Two pipelines with one
    /// `name`, sharing an index where `delete_stale` is on, or writing one dead-letter
    /// file, are errors. `${VAR}` is read from
    /// the environment (an unset one is an error); values are never shown in
    /// messages. Never connects anywhere.
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// Run pipelines: read Redis, transform, write to the sink.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
}

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// `file:line:col: error: message (at /pointer)` lines, with the source line
    /// underlined on a terminal.
    Text,
    /// A JSON array of `{file, line, column, pointer, message}`.
    Json,
}

/// Log line format of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Pipeline files, folders searched for `*.yaml` / `*.yml`, or patterns.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline files, folders searched for `*.yaml` / `*.yml`, or patterns.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Read and render everything, check the target, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rendered documents to print in a dry run.
    #[arg(long, default_value_t = 3)]
    pub sample: usize,
    /// Let stale deletion remove more than `delete_stale.max_fraction` of an index.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Live mode: sync, then follow Redis's keyspace notifications until Ctrl-C or
    /// SIGTERM (every pipeline given, at once; `live:` in the file sets the details).
    #[arg(long, conflicts_with = "dry_run")]
    pub follow: bool,
    /// Run up to N pipelines at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Write the summary of every pipeline as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output: only errors and the summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Entry point of the binary: parses flags, runs the command, maps the outcome to an
/// exit code. Usage errors (bad flags) exit 2, as clap does.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(2),
            };
        }
    };
    match cli.command {
        Command::Validate(args) => validate::execute(&args),
        Command::Run(args) => run::execute(&args),
    }
}
