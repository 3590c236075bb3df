//! The command line: `validate`, `run`, `verify`, `serve`, `alias rollback`, and `schema`,
//! `completions`, `man` for packaging. This is the one place that prints fatal errors
//! and chooses exit codes
//! (0 success, 1 errors found, 2 usage error).

pub mod alias;
mod alias_report;
pub mod generate;
pub mod progress;
pub mod run;
mod run_live;
pub mod serve;
pub mod summary_json;
pub mod validate;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the run or validation found errors (invalid pipeline, failed documents)
  2  usage error (bad flags, missing file)";

/// The version with the commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("REDIS_CONNECTOR_COMMIT"), ")");

const RUN_EXIT_CODES: &str = "\
Exit codes:
  0    success (with --follow: stopped by Ctrl-C / SIGTERM after draining)
  1    errors found (invalid pipeline, failed documents, fatal error, a run without
       --follow interrupted by Ctrl-C / SIGTERM)
  2    usage error (bad flags, missing file)
  130  quit at once by a second Ctrl-C (SIGINT)
  143  quit at once by a second SIGTERM
       (130 and 143: no summary printed; --summary-json says \"aborted\")";

/// Sync Redis into Elasticsearch with declarative YAML pipelines.
#[derive(Debug, Parser)]
#[command(name = "redis-connector", version = VERSION, about, after_help = EXIT_CODES)]
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
    /// the environment, or from `--env-file` (an unset one is an error, or with
    /// `--allow-unset` a placeholder and a note); a problem in a value that came from
    /// `${VAR}` names the variable and the problem, never the value. A password, API
    /// key or `user:password@` written in the file itself is a warning (an error with
    /// `--strict`). Never connects anywhere.
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// Run pipelines: read Redis, transform, write to the sink.
    ///
    /// The first Ctrl-C or SIGTERM stops reading, drains what is in flight, skips
    /// stale deletion, prints the summary (INTERRUPTED) and exits 1. With --follow,
    /// Ctrl-C or SIGTERM is the normal way to stop: it stops following, applies the
    /// changes already received (at most `live.drain_timeout`), prints the summary
    /// and exits 0. A second one quits at once (exit 130 / 143).
    #[command(after_help = RUN_EXIT_CODES)]
    Run(RunArgs),
    /// Run pipelines continuously: on their `schedule:` (or once at start), reloaded
    /// when their files change, with metrics and health over HTTP.
    ///
    /// The whole set is validated first, as `validate` does: any problem and nothing
    /// starts (exit 1). A pipeline with `schedule: {every: 15m}` or `schedule: {cron:
    /// "0 3 * * *", timezone: Europe/Paris}` runs at start and then on its schedule; one
    /// without runs once, at start. A pipeline never runs twice at once (a time that
    /// finds its run still going is skipped and counted). The paths are watched: a
    /// changed set is validated whole, and if valid, changed pipelines restart after
    /// their run in progress, removed ones stop, added ones start, unchanged ones are
    /// left alone; if invalid, everything keeps running (logged, and shown in /metrics
    /// and /status). SIGHUP reloads too. HTTP: /metrics (Prometheus), /healthz,
    /// /readyz (503 with the pipelines not ready and why), /status (JSON),
    /// POST /pipelines/NAME/run (with --allow-trigger). SIGTERM or Ctrl-C: no new runs,
    /// runs in progress finish (exit 0) or, past --shutdown-timeout, are interrupted
    /// (exit 1); a second signal quits at once.
    #[command(after_help = SERVE_EXIT_CODES)]
    Serve(ServeArgs),
    /// Print the pipeline files' JSON Schema (draft 2020-12), as built into this binary.
    ///
    /// Save it and point an editor at it, e.g. `redis-connector schema >
    /// ~/.config/redis-connector/pipeline.schema.json` and a first line
    /// `# yaml-language-server: $schema=/home/me/.config/redis-connector/pipeline.schema.json`.
    Schema,
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    ///
    /// bash: `redis-connector completions bash > ~/.local/share/bash-completion/completions/redis-connector`;
    /// zsh: `redis-connector completions zsh > ~/.zfunc/_redis-connector` (with `fpath+=~/.zfunc`
    /// before `compinit`); fish: `redis-connector completions fish > ~/.config/fish/completions/redis-connector.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual (roff): `redis-connector man | man -l -`, or save it as
    /// `~/.local/share/man/man1/redis-connector.1`; with `--dir`, write one page per
    /// command (`redis-connector-run.1`, `redis-connector-alias-rollback.1`, ...).
    Man {
        /// Write one page per command into this folder (created when missing), e.g.
        /// `--dir ~/.local/share/man/man1`, and print the files written.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// See and manage the aliases pipelines write behind (`sink.alias`): `list`,
    /// `status`, `rollback`.
    #[command(after_help = EXIT_CODES)]
    Alias(AliasArgs),
    /// Compare what each pipeline would write now with what its index holds, by
    /// content hash: documents missing, different and extra. Read-only.
    #[command(after_help = VERIFY_EXIT_CODES)]
    Verify(VerifyArgs),
}

const VERIFY_EXIT_CODES: &str = "\
Exit codes:
  0  every index holds exactly what its pipeline would write
  1  drift found, or a pipeline could not be compared (invalid file, records that
     failed to render, a fatal error, interrupted)
  2  usage error (bad flags, missing file)";

/// `verify`'s arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Pipeline files, or folders of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Documents shown of each kind of drift (missing, different, extra).
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// `text` for people, `json` for bots.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Logs errors only (default: warnings too).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct AliasArgs {
    #[command(subcommand)]
    pub command: AliasCommand,
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point the pipeline's alias back at the index it served from before.
    ///
    /// The alias moves to the index it pointed to before the last
    /// swap (kept by `sink.keep_previous`); both must carry the pipeline's marker.
    /// Prints what it moved. The next `run` moves the alias to the index of the
    /// pipeline file as it is then: revert the file to stay.
    #[command(after_help = EXIT_CODES)]
    Rollback {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Say what would move, from which index to which, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every alias pipelines built, with its indices, sizes and fingerprints.
    ///
    /// Lists every alias redis-connector pipelines built on the Elasticsearch clusters
    /// the given pipeline files write to (each cluster once; the files give its
    /// URLs and credentials): per alias, its pipeline, the index it serves from, and
    /// every index built for it (oldest first) with whether the build finished, its
    /// documents, size on disk, creation time and fingerprint. Reads only.
    #[command(after_help = EXIT_CODES)]
    List {
        /// Pipeline files, folders searched for `*.yaml` / `*.yml`, or patterns.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
    /// Show one pipeline's alias: what serves, what was built, what a run would do.
    ///
    /// Shows the index the alias serves from, the index built for the
    /// pipeline file as it is now, what a run would do (as `run --dry-run` says), and
    /// every index built for it, as `alias list` shows them. Reads only.
    #[command(after_help = EXIT_CODES)]
    Status {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

/// Output format of `alias list` and `alias status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Lines for a person.
    Text,
    /// One JSON document with the same fields.
    Json,
}

const SERVE_EXIT_CODES: &str = "\
Exit codes:
  0  stopped by SIGTERM / Ctrl-C after every run in progress finished
  1  cannot listen, runs interrupted at the shutdown timeout, or (--strict)
     invalid pipeline files: nothing started
  2  usage error (bad flags, an unreadable --auth-token-file, --allow-trigger
     open to the network without a token; with --strict, a missing file)";

/// How `serve` watches its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchKind {
    /// inotify: changes are seen at once.
    Native,
    /// Scan the files every --poll-interval (network volumes, where inotify sees nothing).
    Poll,
    /// No watching; SIGHUP reloads.
    Off,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Pipeline files, folders searched for `*.yaml` / `*.yml`, or patterns.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Address of the HTTP endpoints (metrics, health, status). Loopback by default:
    /// give `0.0.0.0:9464` to let Prometheus and Kubernetes probes reach it.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// How to notice changed pipeline files.
    #[arg(long, value_enum, default_value = "native")]
    pub watch: WatchKind,
    /// How often `--watch poll` scans the files.
    #[arg(long, default_value = "2s", value_parser = duration_arg)]
    pub poll_interval: std::time::Duration,
    /// On SIGTERM, how long runs in progress may take to finish before they are
    /// interrupted.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub shutdown_timeout: std::time::Duration,
    /// A live pipeline whose resyncs (or follow phases) have kept failing for longer
    /// than this makes `/readyz` answer 503 (it is followed again once one succeeds).
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub live_unready_after: std::time::Duration,
    /// Allow `POST /pipelines/NAME/run` to run a pipeline now. On an address other
    /// than loopback it needs --auth-token-file.
    #[arg(long)]
    pub allow_trigger: bool,
    /// A file holding a bearer token: `/status` and `POST /pipelines/NAME/run` then
    /// need `Authorization: Bearer TOKEN` (`/metrics`, `/healthz`, `/readyz` stay open).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Bound to loopback, serve answers only requests whose `Host` is its address or
    /// `localhost` (DNS rebinding); add another accepted name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub allowed_host: Vec<String>,
    /// Refuse any set with a problem: at start exit 1 (or 2 for a missing path), on
    /// reload keep the running pipelines. Without it, every valid file runs and each
    /// invalid one is reported (its last valid version keeps running), and a missing
    /// folder is waited for.
    #[arg(long)]
    pub strict: bool,
    /// Let stale deletion remove more than `delete_stale.max_fraction` of an index.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output: errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A duration flag: `30s`, `5m`, `500ms`, or seconds.
fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::units::parse_duration(text)
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

/// Log line format of `run` and `serve`.
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
    /// Read `${VAR}`s from this file of `NAME=value` lines (`#` comments, `export `
    /// and quotes allowed) before the environment: CI can validate with stand-in
    /// values instead of production secrets.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// A `${VAR}` set nowhere is no error: a placeholder stands for it, a note on
    /// standard error names it, and the checks that need its value are skipped.
    #[arg(long)]
    pub allow_unset: bool,
    /// Warnings (a secret written in the file, a template calling now()) are errors:
    /// they are reported as errors and make the exit code 1.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline files, folders searched for `*.yaml` / `*.yml`, or patterns.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Read and render everything, check the target, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rendered documents to print in a dry run (only with `--dry-run`; default 3,
    /// or 0 with `-q`).
    #[arg(long, requires = "dry_run")]
    pub sample: Option<usize>,
    /// Let stale deletion remove more than `delete_stale.max_fraction` of an index.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Live mode: sync, then follow Redis's keyspace notifications until Ctrl-C or
    /// SIGTERM (every pipeline given, at once; `live:` in the file sets the details).
    /// A signal while following drains what is pending and exits 0; a signal during
    /// the first sync stops it half-way: reported `interrupted`, exit 1 (the next
    /// start's change-aware sync writes what is missing).
    #[arg(long, conflicts_with = "dry_run")]
    pub follow: bool,
    /// Rewrite every document, even those the index holds with the same content hash
    /// (after an ingest pipeline change, a restore, or documents edited by hand).
    #[arg(long)]
    pub full: bool,
    /// Run up to N pipelines at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Write the summary of every pipeline as JSON to this file. It is written at the
    /// start with `"status": "running"` (and the process id), replaced by the summary
    /// at the end, or by `"status": "aborted"` when a second signal quits at once.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace). `RUST_LOG` (a tracing filter
    /// such as `RUST_LOG=redis_connector=debug`) overrides the level when set.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output: only errors and the summary (no progress, no warnings; a dry run
    /// prints no sample documents unless `--sample N` is given).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Entry point of the binary: parses flags, runs the command, maps the outcome to an
/// exit code. Usage errors (bad flags) exit 2, as clap does.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    let _ = error.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    let _ = error.print();
                    if wants_json(std::env::args()) {
                        usage_error_json(&first_line(&error.to_string()));
                    }
                    ExitCode::from(2)
                }
            };
        }
    };
    match cli.command {
        Command::Validate(args) => validate::execute(&args),
        Command::Run(args) => run::execute(&args),
        Command::Serve(args) => serve::execute(&args),
        Command::Alias(args) => alias::execute(&args),
        Command::Verify(args) => verify::execute(&args),
        Command::Schema => generate::schema(),
        Command::Completions { shell } => generate::completions(shell),
        Command::Man { dir } => generate::man(dir.as_deref()),
    }
}

/// Whether the command line asks `validate` for JSON (`--format json` or
/// `--format=json`), read without clap, which just refused it.
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "validate") && args.windows(2).any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json")
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// A usage error for a bot that asked for JSON: `{"error": "...", "exit_code": 2}` on
/// standard output (the human message stays on standard error).
pub fn usage_error_json(message: &str) {
    let document = serde_json::json!({ "error": message, "exit_code": 2 });
    println!("{document}");
}
