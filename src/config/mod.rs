//! Loading a pipeline file: YAML -> `${VAR}` interpolation -> JSON Schema check ->
//! typed structs -> semantic checks (stages are built, which compiles templates,
//! globs and regexes). Every problem is a [`Diagnostic`] located by file, line,
//! column and JSON pointer, and all problems of a file are reported together.

pub mod glob;
pub mod interpolate;
pub mod locate;
pub mod model;
pub mod schema;
pub mod suggest;
pub mod units;
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
        write!(f, "{}:{}:{}: error: {}", self.file.display(), self.line, self.column, self.message)?;
        if !self.pointer.is_empty() {
            write!(f, " (at {})", self.pointer)?;
        }
        Ok(())
    }
}

/// A pipeline file that passed every check.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub path: PathBuf,
    pub pipeline: Pipeline,
}

/// A path given on the command line that cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}: no such file or folder")]
    NotFound(PathBuf),
    #[error("{0}: no pipeline files (*.yaml, *.yml) in this folder")]
    EmptyFolder(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Expands the command line's paths: files as they are, folders searched (recursively)
/// for `*.yaml` / `*.yml`, sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
        } else if path.is_dir() {
            let mut found = Vec::new();
            for extension in ["yaml", "yml"] {
                let pattern = path.join("**").join(format!("*.{extension}"));
                let pattern = ::glob::Pattern::escape(&path.display().to_string())
                    + &pattern.display().to_string()[path.display().to_string().len()..];
                for entry in ::glob::glob(&pattern).map_err(|e| UsageError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })? {
                    let entry = entry.map_err(|e| UsageError::Io { path: path.clone(), source: e.into_error() })?;
                    if entry.is_file() {
                        found.push(entry);
                    }
                }
            }
            if found.is_empty() {
                return Err(UsageError::EmptyFolder(path.clone()));
            }
            found.sort();
            files.extend(found);
        } else {
            return Err(UsageError::NotFound(path.clone()));
        }
    }
    Ok(files)
}

/// Loads and checks one pipeline file. Never connects anywhere.
pub fn load_pipeline(path: &Path) -> Result<LoadedPipeline, Vec<Diagnostic>> {
    let whole_file = |message: String| Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        pointer: String::new(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| vec![whole_file(format!("cannot read file: {e}"))])?;
    let value: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| vec![whole_file(format!("invalid YAML: {e}"))])?;
    let pipeline: Pipeline =
        serde_json::from_value(value).map_err(|e| vec![whole_file(format!("invalid pipeline: {e}"))])?;
    let mut diagnostics = Vec::new();
    let mut stage_errors = |prefix: &str, errors: Vec<crate::stages::FieldError>| {
        for error in errors {
            diagnostics.push(Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                pointer: format!("{prefix}{}", error.pointer),
                message: error.message,
            });
        }
    };
    if let Err(errors) = crate::stages::Source::build(&pipeline.source) {
        stage_errors("/source", errors);
    }
    for (i, transform) in pipeline.transforms.iter().enumerate() {
        if let Err(errors) = crate::stages::Transform::build(transform) {
            stage_errors(&format!("/transforms/{i}"), errors);
        }
    }
    if let Err(errors) = crate::stages::Sink::build(&pipeline.sink) {
        stage_errors("/sink", errors);
    }
    if diagnostics.is_empty() {
        Ok(LoadedPipeline { path: path.to_path_buf(), pipeline })
    } else {
        Err(diagnostics)
    }
}

/// Loads every file, then checks what spans files (two pipelines with one `name`).
/// Returns the pipelines that are valid and every diagnostic found.
pub fn load_all(files: &[PathBuf]) -> (Vec<LoadedPipeline>, Vec<Diagnostic>) {
    let mut loaded = Vec::new();
    let mut diagnostics = Vec::new();
    for file in files {
        match load_pipeline(file) {
            Ok(pipeline) => loaded.push(pipeline),
            Err(mut errors) => diagnostics.append(&mut errors),
        }
    }
    for (i, a) in loaded.iter().enumerate() {
        if let Some(b) = loaded[..i].iter().find(|b| b.pipeline.name == a.pipeline.name) {
            diagnostics.push(Diagnostic {
                file: a.path.clone(),
                line: 0,
                column: 0,
                pointer: "/name".into(),
                message: format!(
                    "pipeline name `{}` is already used by {}: names must be unique",
                    a.pipeline.name,
                    b.path.display()
                ),
            });
        }
    }
    (loaded, diagnostics)
}
