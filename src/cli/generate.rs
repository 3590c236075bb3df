//! What packaging needs from the binary itself: the JSON Schema of pipeline files,
//! shell completion scripts (`clap_complete`) and the manual (`clap_mangen`), each
//! printed on standard output; the manual also as one page per command in a folder.

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// `redis-connector man`: the whole manual on standard output (the main page, then
/// a section per command, nested ones such as `alias rollback` included); with
/// `--dir DIR`, one page per command written into DIR (`redis-connector.1`,
/// `redis-connector-run.1`, `redis-connector-alias-rollback.1`, ...), the pages the
/// SUBCOMMANDS sections name.
pub fn man(dir: Option<&Path>) -> ExitCode {
    let Some(dir) = dir else {
        return finish(whole_manual().and_then(|text| std::io::stdout().lock().write_all(&text)));
    };
    match write_pages(dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot write the manual pages into {}: {error}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// The command tree as built (each command's display name is
/// `redis-connector-alias-rollback`), and every command of it but `help`, parents
/// first.
fn commands() -> Vec<clap::Command> {
    fn walk(command: &clap::Command, out: &mut Vec<clap::Command>) {
        for sub in command
            .get_subcommands()
            .filter(|s| s.get_name() != "help" && !s.is_hide_set())
        {
            out.push(sub.clone());
            walk(sub, out);
        }
    }
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut out = vec![root.clone()];
    walk(&root, &mut out);
    out
}

/// The main page, then each command's synopsis, description and options.
fn whole_manual() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut commands = commands().into_iter();
    if let Some(root) = commands.next() {
        clap_mangen::Man::new(root).render(&mut out)?;
    }
    for command in commands {
        let title = command.get_bin_name().unwrap_or_else(|| command.get_name()).to_owned();
        let man = clap_mangen::Man::new(command);
        writeln!(out, ".SH \"{}\"", title.to_uppercase())?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
    }
    Ok(out)
}

/// Writes one page per command into `dir` (created when missing); returns the
/// files written.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    commands()
        .into_iter()
        .map(|command| clap_mangen::Man::new(command).generate_to(dir))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `redis-connector alias rollback` -> `redis-connector-alias-rollback.1`.
    fn page_name(path: &[&str]) -> String {
        format!("{}.1", path.join("-"))
    }

    fn every_command_path(command: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_owned());
            out.push(path.clone());
            every_command_path(sub, path, out);
        }
    }

    #[test]
    fn every_command_has_its_own_page_and_every_page_named_exists() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let written = write_pages(dir.path()).expect("pages written");
        let mut paths = vec![vec!["redis-connector".to_owned()]];
        every_command_path(&Cli::command(), vec!["redis-connector".to_owned()], &mut paths);
        assert!(paths.iter().any(|p| p.join(" ") == "redis-connector alias rollback"));
        for path in &paths {
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            let file = dir.path().join(page_name(&parts));
            assert!(file.is_file(), "no page {} for `{}`", file.display(), path.join(" "));
        }
        assert_eq!(written.len(), paths.len(), "{written:?}");
        // Every `redis-connector-NAME(1)` a page points to is one of the pages.
        for page in &written {
            let text = std::fs::read_to_string(page).expect("a page is text");
            for reference in text.split_whitespace().filter_map(|word| word.strip_suffix("(1)")) {
                let reference = reference.trim_start_matches("\\fB").trim_start_matches("\\fR");
                if reference.starts_with("redis\\-connector") || reference.starts_with("redis-connector") {
                    let name = reference.replace("\\-", "-");
                    assert!(
                        dir.path().join(format!("{name}.1")).is_file(),
                        "{} names {name}(1), which is not written",
                        page.display()
                    );
                }
            }
        }
    }

    #[test]
    fn the_whole_manual_has_a_section_for_nested_commands() {
        let text = String::from_utf8(whole_manual().expect("rendered")).expect("roff is text");
        for section in [
            "REDIS-CONNECTOR VALIDATE",
            "REDIS-CONNECTOR ALIAS",
            "REDIS-CONNECTOR ALIAS ROLLBACK",
        ] {
            assert!(
                text.contains(&format!(".SH \"{section}\"")),
                "the manual lacks {section}"
            );
        }
    }
}
