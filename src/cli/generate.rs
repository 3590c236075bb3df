//! What packaging needs from the binary itself: the JSON Schema of pipeline files,
//! shell completion scripts (`clap_complete`) and the manual page (`clap_mangen`),
//! each printed on standard output.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;
use crate::config::schema::SCHEMA_TEXT;

/// `redis-connector schema`: the schema built into this binary, the very one
/// `validate` checks files against.
pub fn schema() -> ExitCode {
    finish(std::io::stdout().lock().write_all(SCHEMA_TEXT.as_bytes()))
}

/// `redis-connector completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "redis-connector", &mut out);
    finish(std::io::stdout().lock().write_all(&out))
}

/// `redis-connector man`: section 1, with a page section per subcommand.
pub fn man() -> ExitCode {
    let command = Cli::command();
    let mut out = Vec::new();
    let result = clap_mangen::Man::new(command.clone()).render(&mut out).and_then(|()| {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            // Each subcommand's own synopsis, options and description.
            let title = format!("redis-connector {}", sub.get_name());
            let man = clap_mangen::Man::new(sub.clone().bin_name(title.clone()));
            writeln!(out, ".SH \"{}\"", title.to_uppercase())?;
            man.render_synopsis_section(&mut out)?;
            man.render_description_section(&mut out)?;
            man.render_options_section(&mut out)?;
        }
        Ok(())
    });
    if let Err(error) = result {
        eprintln!("error: cannot render the manual page: {error}");
        return ExitCode::from(1);
    }
    finish(std::io::stdout().lock().write_all(&out))
}

/// A closed pipe (`... | head`) is no error worth reporting.
fn finish(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
