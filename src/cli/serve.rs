//! `redis-connector serve [--listen ADDR] PATH...`: runs every valid pipeline
//! file on its schedule (each invalid one reported; with `--strict`, any problem
//! stops it before it starts, exit 1 with `validate`'s diagnostics), reloads them
//! when the files change or on SIGHUP, and serves metrics, health and status over
//! HTTP until SIGTERM or Ctrl-C. Exit 0 when every run in progress finished within
//! `--shutdown-timeout`, 1 when some had to be interrupted, 2 for access flags that
//! cannot be used.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use super::{LogFormat, ServeArgs, WatchKind};
use crate::config;
use crate::redact::{self, Redacting};
use crate::serve::auth::Access;
use crate::serve::file_watch::WatchMode;
use crate::serve::supervisor::Drained;
use crate::serve::{self, Options};

/// Runs `serve` and returns the process's exit code.
pub fn execute(args: &ServeArgs) -> ExitCode {
    init_tracing(args);
    if args.strict {
        if let Err(code) = check_strictly(&args.paths) {
            return code;
        }
    }
    let listener = match std::net::TcpListener::bind(&args.listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {}: {error}", args.listen);
            return ExitCode::from(1);
        }
    };
    let access = listener.local_addr().map_err(anyhow::Error::from).and_then(|local| {
        Access::new(
            args.auth_token_file.as_deref(),
            &args.allowed_host,
            local,
            args.allow_trigger,
        )
        .map_err(anyhow::Error::from)
    });
    let access = match access {
        Ok(access) => access,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let options = Options {
        paths: args.paths.clone(),
        watch: match args.watch {
            WatchKind::Native => WatchMode::Native,
            WatchKind::Poll => WatchMode::Poll(args.poll_interval),
            WatchKind::Off => WatchMode::Off,
        },
        shutdown_timeout: args.shutdown_timeout,
        allow_trigger: args.allow_trigger,
        allow_mass_delete: args.allow_mass_delete,
        strict: args.strict,
        access,
    };
    crate::serve::live_view::set_unready_after(args.live_unready_after);
    let outcome = runtime.block_on(serve::serve(options, listener));
    // Every pipeline task was awaited; what may remain are the client libraries'
    // own connection tasks, dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(Drained::InTime) => ExitCode::SUCCESS,
        Ok(Drained::Interrupted(_)) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {}", redact::text(&format!("{error:#}")));
            ExitCode::from(1)
        }
    }
}

/// `--strict`: the whole set must be valid, as `validate` says (exit 1 with its
/// diagnostics), and every path must exist (exit 2).
fn check_strictly(paths: &[std::path::PathBuf]) -> Result<(), ExitCode> {
    let files = match config::discover(paths) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {error}");
            return Err(ExitCode::from(2));
        }
    };
    let (_, diagnostics) = crate::pipeline::load_all(&files);
    if diagnostics.is_empty() {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    let _ = super::validate::write_text(&mut err, &diagnostics, std::io::stderr().is_terminal());
    let invalid: std::collections::BTreeSet<_> = diagnostics.iter().map(|d| &d.file).collect();
    eprintln!(
        "error: {} problem(s) in {} pipeline file(s); serve did not start (--strict)",
        diagnostics.len(),
        invalid.len()
    );
    Err(ExitCode::from(1))
}

/// Logs go to standard error: by default warnings, plus one line per run start and
/// end and per reload (target `redis_connector::serve`); `-v` info, `-vv` debug,
/// `-vvv` trace; `-q` errors only. `RUST_LOG` overrides.
fn init_tracing(args: &ServeArgs) {
    let default = if args.quiet {
        "error"
    } else {
        match args.verbose {
            0 => "warn,redis_connector::serve=info",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Each event is written whole through its own redacting writer.
        .with_writer(|| Redacting::new(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
