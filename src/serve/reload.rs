//! Loading the pipeline files, at start and on each reload, so that one bad file
//! never stops the others:
//!
//! - every valid pipeline runs; each invalid file (a wrong field, a `${VAR}` not
//!   set, a clash with another file) is reported in the log, in `/status` and by
//!   `pipeline_file_valid{file}`, and the last valid version of its pipeline, if
//!   one runs, keeps running;
//! - a path given that does not exist is waited for (not ready meanwhile), and a
//!   path that cannot be read keeps what runs from it: a removed or unreadable
//!   folder is more often a moment of a deployment than a wish to stop everything;
//! - a file removed (even the last one of a folder) stops its pipeline.
//!
//! With `--strict`, a set with any problem changes nothing (the running pipelines
//! are kept), as `serve` always did before.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use chrono::Utc;
use serde::Serialize;

use super::state::{ReloadState, Shared};
use super::supervisor::{Changes, Supervisor};
use super::time::{rfc3339, unix_seconds};
use super::LOG_TARGET;
use crate::config::{self, LoadedPipeline, UsageError};

/// One pipeline file as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub valid: bool,
    /// The pipeline it holds (valid), or whose last valid version it still runs.
    pub pipeline: Option<String>,
    /// Invalid: its last valid version keeps running under `pipeline`.
    pub running_last_valid_version: bool,
    /// What is wrong with it: `file:line:col: error: ...` lines.
    pub errors: Vec<String>,
}

/// The files the paths lead to now.
#[derive(Debug, Default)]
struct Found {
    files: Vec<PathBuf>,
    /// Paths that do not exist.
    missing: Vec<PathBuf>,
    /// Paths that cannot be read, with why.
    unreadable: Vec<String>,
}

/// Expands each path as `validate` does, except that a folder without pipeline
/// files (or a pattern matching none) is an empty set, not an error.
fn find_files(paths: &[PathBuf]) -> Found {
    let mut found = Found::default();
    for path in paths {
        match config::discover(std::slice::from_ref(path)) {
            Ok(files) => found.files.extend(files),
            Err(UsageError::EmptyFolder(_) | UsageError::NoMatch(_)) => {}
            Err(UsageError::NotFound(path)) => found.missing.push(path),
            Err(error @ UsageError::Io { .. }) => found.unreadable.push(error.to_string()),
        }
    }
    // A file reached through two paths is loaded once (or it clashes with itself).
    let mut seen = HashSet::new();
    found
        .files
        .retain(|file| seen.insert(std::fs::canonicalize(file).unwrap_or_else(|_| file.clone())));
    found
}

/// Loads the paths and applies what is valid (everything or nothing with
/// `strict`); `cause` is `start`, `SIGHUP`, `file change` or `watch re-armed`.
/// One log line for the reload, one per invalid file.
pub fn reload(supervisor: &mut Supervisor, shared: &Shared, paths: &[PathBuf], strict: bool, cause: &str) {
    let now = Utc::now();
    let found = find_files(paths);
    let (valid, diagnostics) = crate::pipeline::load_all(&found.files);
    let mut problems: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for diagnostic in &diagnostics {
        problems
            .entry(diagnostic.file.clone())
            .or_default()
            .push(diagnostic.to_string());
    }
    let mut errors: Vec<String> = found.unreadable.clone();
    errors.extend(diagnostics.iter().map(ToString::to_string));
    let missing: Vec<String> = found.missing.iter().map(|p| p.display().to_string()).collect();
    let complete = errors.is_empty() && missing.is_empty();

    if strict && !complete {
        refuse(shared, cause, now, errors, missing);
        return;
    }
    let (set, kept) = with_last_valid_versions(supervisor, valid, &found, &problems);
    let files = reports(&found.files, &set, &problems, &kept);
    let changes = supervisor.apply(set);
    for report in files.iter().filter(|report| !report.valid) {
        tracing::error!(
            target: LOG_TARGET,
            event = "invalid_file",
            file = %report.file,
            kept = report.pipeline.as_deref().unwrap_or(""),
            errors = %report.errors.join("\n"),
            "{} is invalid ({}): {}",
            report.file,
            match &report.pipeline {
                Some(name) => format!("its last valid version keeps running as `{name}`"),
                None => "not running".to_owned(),
            },
            report.errors.join("; ")
        );
    }
    for path in &missing {
        tracing::warn!(
            target: LOG_TARGET,
            event = "waiting_for_path",
            path = %path,
            "{path}: no such file or folder; waiting for it to appear (not ready meanwhile)"
        );
    }
    for error in &found.unreadable {
        tracing::error!(target: LOG_TARGET, event = "unreadable_path", error = %error, "{error}; what runs from it keeps running");
    }
    record(shared, cause, now, complete, changes, files, errors, missing);
}

/// The valid pipelines, plus the running version of each pipeline whose file is
/// invalid now or cannot be read; and the names kept that way.
fn with_last_valid_versions(
    supervisor: &Supervisor,
    mut set: Vec<LoadedPipeline>,
    found: &Found,
    problems: &BTreeMap<PathBuf, Vec<String>>,
) -> (Vec<LoadedPipeline>, BTreeSet<String>) {
    let unsure = !found.missing.is_empty() || !found.unreadable.is_empty();
    let mut names: BTreeSet<String> = set.iter().map(|l| l.pipeline.name.clone()).collect();
    let mut kept = BTreeSet::new();
    for running in supervisor.running() {
        let invalid_now = problems.contains_key(&running.path);
        let out_of_sight = unsure && !found.files.contains(&running.path);
        if (invalid_now || out_of_sight) && !names.contains(&running.pipeline.name) {
            names.insert(running.pipeline.name.clone());
            kept.insert(running.pipeline.name.clone());
            set.push(running.as_ref().clone());
        }
    }
    (set, kept)
}

/// A report per file found.
fn reports(
    files: &[PathBuf],
    set: &[LoadedPipeline],
    problems: &BTreeMap<PathBuf, Vec<String>>,
    kept: &BTreeSet<String>,
) -> Vec<FileReport> {
    files
        .iter()
        .map(|file| {
            let pipeline = set.iter().find(|l| l.path == *file).map(|l| l.pipeline.name.clone());
            let errors = problems.get(file).cloned().unwrap_or_default();
            FileReport {
                file: file.display().to_string(),
                valid: errors.is_empty(),
                running_last_valid_version: pipeline.as_ref().is_some_and(|name| kept.contains(name)),
                pipeline,
                errors,
            }
        })
        .collect()
}

/// The `event` field of the log line: `loaded` at start, `reload` after.
fn event_name(cause: &str) -> &'static str {
    if cause == "start" {
        "loaded"
    } else {
        "reload"
    }
}

/// `--strict` and a set with a problem: nothing changes.
fn refuse(shared: &Shared, cause: &str, now: chrono::DateTime<Utc>, errors: Vec<String>, missing: Vec<String>) {
    if cause == "start" {
        shared.metrics.loaded_at_start(false, unix_seconds(now));
    } else {
        shared.metrics.reloaded(false, unix_seconds(now));
    }
    let mut all = errors;
    all.extend(missing.iter().map(|path| format!("{path}: no such file or folder")));
    tracing::error!(
        target: LOG_TARGET,
        event = event_name(cause),
        result = "failure",
        cause,
        errors = %all.join("\n"),
        "reload ({cause}) failed, the running pipelines are kept (--strict): {}",
        all.join("; ")
    );
    let mut state = shared.reload();
    state.result = Some("failure");
    state.applied = false;
    state.at = Some(rfc3339(now));
    state.errors = all;
    state.missing = missing;
    state.added.clear();
    state.changed.clear();
    state.removed.clear();
    state.unchanged = 0;
}

/// Metrics, `/status` and the log line of a reload that was applied.
#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    cause: &str,
    now: chrono::DateTime<Utc>,
    complete: bool,
    changes: Changes,
    files: Vec<FileReport>,
    errors: Vec<String>,
    missing: Vec<String>,
) {
    let Changes {
        added,
        changed,
        removed,
        unchanged,
    } = changes;
    if cause == "start" {
        shared.metrics.loaded_at_start(complete, unix_seconds(now));
    } else {
        shared.metrics.reloaded(complete, unix_seconds(now));
    }
    let mut state = shared.reload();
    let now_files: HashSet<&str> = files.iter().map(|f| f.file.as_str()).collect();
    for gone in state.files.iter().filter(|f| !now_files.contains(f.file.as_str())) {
        shared.metrics.file_gone(&gone.file);
    }
    for file in &files {
        shared.metrics.file_checked(&file.file, file.valid);
    }
    let result = if complete { "success" } else { "failure" };
    let invalid: Vec<&str> = files.iter().filter(|f| !f.valid).map(|f| f.file.as_str()).collect();
    tracing::info!(
        target: LOG_TARGET,
        event = event_name(cause),
        result,
        cause,
        added = %added.join(","),
        changed = %changed.join(","),
        removed = %removed.join(","),
        unchanged,
        invalid = %invalid.join(","),
        missing = %missing.join(","),
        "reload ({cause}): added [{}], changed [{}], removed [{}], {unchanged} unchanged; invalid files [{}], missing paths [{}]",
        added.join(", "),
        changed.join(", "),
        removed.join(", "),
        invalid.join(", "),
        missing.join(", "),
    );
    let last_success = if complete {
        Some(rfc3339(now))
    } else {
        state.last_success.take()
    };
    *state = ReloadState {
        result: Some(result),
        applied: true,
        at: Some(rfc3339(now)),
        last_success,
        errors,
        added,
        changed,
        removed,
        unchanged,
        files,
        missing,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_folder_is_no_files_and_a_missing_one_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("a.yaml"), "name: a\n").unwrap();
        let missing = dir.path().join("later");

        let found = find_files(&[empty, full.clone(), missing.clone(), full.join("a.yaml")]);
        assert_eq!(
            found.files,
            vec![full.join("a.yaml")],
            "a file reached twice is listed once"
        );
        assert_eq!(found.missing, vec![missing]);
        assert!(found.unreadable.is_empty());
        assert!(find_files(&[dir.path().join("empty/*.yaml")]).files.is_empty());
    }
}
