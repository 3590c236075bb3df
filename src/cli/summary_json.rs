//! Where `run --summary-json` writes: a file, opened (and so checked) before anything
//! runs, or standard output for `-`.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use crate::shutdown::Signal;

/// The destination of the JSON summary.
pub enum SummaryJson {
    /// `-`: standard output (the text summary then goes to standard error).
    Stdout,
    /// A file, already open: written over at the end of the run.
    File { path: PathBuf, file: File },
}

impl SummaryJson {
    /// Opens the destination before the run, so a path that cannot be written is a
    /// usage error found before anything is read, not after the whole run. The file
    /// is created when missing and kept as it is until the run ends.
    pub fn open(path: &Path) -> Result<SummaryJson, String> {
        if path.as_os_str() == "-" {
            return Ok(SummaryJson::Stdout);
        }
        if path.is_dir() {
            return Err(format!(
                "cannot write the summary to {}: it is a directory, give a file name; nothing was run",
                path.display()
            ));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|file| SummaryJson::File {
                path: path.to_owned(),
                file,
            })
            .map_err(|error| {
                format!(
                    "cannot write the summary to {}: {error}; nothing was run",
                    path.display()
                )
            })
    }

    /// Whether the summary takes standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, SummaryJson::Stdout)
    }

    /// Where it goes, for messages.
    pub fn describe(&self) -> String {
        match self {
            SummaryJson::Stdout => "standard output".to_owned(),
            SummaryJson::File { path, .. } => path.display().to_string(),
        }
    }

    /// Writes `document`, pretty-printed and redacted, replacing what the file held.
    pub fn write(&mut self, document: &serde_json::Value) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(document).map_err(std::io::Error::other)?;
        // No secret in the summary, wherever it goes.
        let text = crate::redact::text(&text).into_owned() + "\n";
        match self {
            SummaryJson::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()
            }
            SummaryJson::File { file, .. } => {
                file.set_len(0)?;
                file.rewind()?;
                file.write_all(text.as_bytes())?;
                file.flush()
            }
        }
    }
}

/// Before a second signal quits at once: says what was lost, and marks the summary
/// file `aborted`.
pub(super) fn mark_aborted(second: Signal, summary_file: Option<std::path::PathBuf>) {
    eprintln!(
        "second {}: quitting at once, exit {}: documents in flight were not drained and no summary \
         was printed; a rerun writes whatever this run did not",
        second.name(),
        second.exit_code()
    );
    if let Some(path) = &summary_file {
        let reason = format!(
            "quit at once by a second {}: no summary; documents in flight were not drained",
            second.name()
        );
        if let Err(error) = write_status_json(path, "aborted", Some(&reason)) {
            eprintln!("error: cannot write the summary to {}: {error}", path.display());
        }
    }
}

/// A `--summary-json` without pipelines' summaries: `running` (written at the start),
/// or `aborted` (quit at once by a second signal), with this process's id and why.
pub(super) fn write_status_json(path: &Path, status: &str, reason: Option<&str>) -> std::io::Result<()> {
    let mut document = serde_json::json!({
        "status": status,
        "pid": std::process::id(),
        "pipelines": [],
        "not_run": [],
    });
    if let Some(reason) = reason {
        document["reason"] = reason.into();
    }
    let text = serde_json::to_string_pretty(&document).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_is_standard_output_and_a_directory_or_missing_folder_is_refused() {
        assert!(SummaryJson::open(Path::new("-")).unwrap().is_stdout());
        let dir = tempfile::tempdir().unwrap();
        let error = SummaryJson::open(dir.path()).err().unwrap();
        assert!(error.contains("is a directory"), "{error}");
        let error = SummaryJson::open(&dir.path().join("no/such/folder/s.json"))
            .err()
            .unwrap();
        assert!(error.contains("No such file or directory"), "{error}");
    }

    #[test]
    fn the_file_is_written_over_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "an older, longer summary that must not show through\n").unwrap();
        let mut target = SummaryJson::open(&path).unwrap();
        assert!(
            std::fs::read_to_string(&path).unwrap().starts_with("an older"),
            "kept until the end"
        );
        target.write(&serde_json::json!({"status": "ok"})).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\n  \"status\": \"ok\"\n}\n");
    }
}
