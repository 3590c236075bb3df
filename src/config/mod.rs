//! A pipeline file's configuration, the bottom layer: YAML (with positions) ->
//! `${VAR}` interpolation -> JSON Schema check -> typed structs. Every problem is a
//! [`Diagnostic`] located by file, line, column and JSON pointer, and all problems
//! of a file are reported together. Building the stages to check them is the
//! pipeline layer's (`crate::pipeline::load`); this module imports nothing above it.

pub mod failing_field;
pub mod fingerprint;
pub mod interpolate;
pub mod locate;
pub mod model;
pub mod schedule;
pub mod schema;
mod schema_sync;
pub mod secrets;
pub mod suggest;
pub mod units;
pub mod variables;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use model::Pipeline;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given on the command line or found in a folder.
    pub file: PathBuf,
    /// 1-based line (0 when the problem concerns the whole file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// JSON pointer of the offending field (`/source/rules/1/_type`); `""` for the root.
    pub pointer: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.pointer.is_empty() {
            write!(f, " (at {})", self.pointer)?;
        }
        Ok(())
    }
}

/// A problem found in one part of a pipeline (a stage, the schedule, the mappings),
/// located by a JSON pointer relative to that part (`/rules/1/key_pattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    /// A problem at `pointer`, said by `message`.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// A pipeline file that passed every check.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub path: PathBuf,
    pub pipeline: Pipeline,
    /// The file's content as parsed, `${VAR}`s expanded: equal for two files that
    /// differ only in comments, whitespace, quoting or key order (`serve` keeps such a
    /// pipeline running across a reload).
    pub content: serde_json::Value,
}

/// A path given on the command line that cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}: no such file or folder")]
    NotFound(PathBuf),
    #[error("{0}: no pipeline files (*.yaml, *.yml) in this folder")]
    EmptyFolder(PathBuf),
    #[error("{0}: no file or folder matches this pattern")]
    NoMatch(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Expands the command line's paths: files (or pipes) as they are, folders searched (recursively)
/// for `*.yaml` / `*.yml`, sorted, and patterns (`'pipelines/*.yaml'`, quoted so the
/// shell left them alone, as CI files often do) expanded the same way. A folder
/// search skips hidden files and folders (`.git/`, Kubernetes' `..data/` beside the
/// files of a mounted ConfigMap). A file reached twice is listed once.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    for path in paths {
        // Not only regular files: `validate <(envsubst < p.yaml)` and `/dev/stdin`
        // name pipes.
        if path.exists() && !path.is_dir() {
            files.push(path.clone());
        } else if path.is_dir() {
            files.extend(search_folder(path)?);
        } else if is_pattern(path) {
            let mut matched = Vec::new();
            for entry in glob_paths(&path.display().to_string(), path)? {
                if entry.is_file() {
                    matched.push(entry);
                } else if entry.is_dir() {
                    matched.extend(search_folder(&entry)?);
                }
            }
            if matched.is_empty() {
                return Err(UsageError::NoMatch(path.clone()));
            }
            files.extend(matched);
        } else {
            return Err(UsageError::NotFound(path.clone()));
        }
    }
    // A file named twice (`pipelines/ pipelines/demo.yaml`) is checked once, or it
    // would clash with itself over its `name`.
    let mut seen = std::collections::HashSet::new();
    files.retain(|file| seen.insert(std::fs::canonicalize(file).unwrap_or_else(|_| file.clone())));
    Ok(files)
}

/// Whether a path that names nothing is a glob pattern to expand.
fn is_pattern(path: &Path) -> bool {
    path.to_str().is_some_and(|text| text.contains(['*', '?', '[']))
}

/// What `pattern` matches, leaving hidden files and folders out unless the pattern
/// names them with a literal `.`; errors are reported as about `path`.
fn glob_paths(pattern: &str, path: &Path) -> Result<Vec<PathBuf>, UsageError> {
    let io = |source: std::io::Error| UsageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let options = ::glob::MatchOptions {
        require_literal_leading_dot: true,
        ..::glob::MatchOptions::new()
    };
    ::glob::glob_with(pattern, options)
        .map_err(|e| io(std::io::Error::other(e.to_string())))?
        .map(|entry| entry.map_err(|e| io(e.into())))
        .collect()
}

/// The `*.yaml` / `*.yml` files under `folder`, at any depth, sorted; hidden files and
/// folders are skipped.
fn search_folder(folder: &Path) -> Result<Vec<PathBuf>, UsageError> {
    let mut found = Vec::new();
    for extension in ["yaml", "yml"] {
        let literal = ::glob::Pattern::escape(&folder.display().to_string());
        let pattern = PathBuf::from(literal)
            .join("**")
            .join(format!("*.{extension}"))
            .display()
            .to_string();
        found.extend(
            glob_paths(&pattern, folder)?
                .into_iter()
                .filter(|entry| entry.is_file()),
        );
    }
    if found.is_empty() {
        return Err(UsageError::EmptyFolder(folder.to_path_buf()));
    }
    found.sort();
    Ok(found)
}
