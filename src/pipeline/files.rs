//! Loading pipeline files for the commands: one file (`alias`) or every file given
//! (`validate`, `run`, `serve`), each checked from bytes to built stages
//! ([`super::load`]), then the checks that span files ([`super::cross_file`]); every
//! diagnostic with its secrets masked.

use std::path::{Path, PathBuf};

use super::{cross_file, load};
use crate::config::{Diagnostic, LoadedPipeline};

/// Loads and checks one pipeline file (variables from the environment). Never
/// connects anywhere.
pub fn load_pipeline(path: &Path) -> Result<LoadedPipeline, Vec<Diagnostic>> {
    let check = load::check_file(path, &environment);
    let content = check.root.as_ref().map(|root| root.to_json()).unwrap_or_default();
    match check.pipeline {
        Some(pipeline) if check.diagnostics.is_empty() => Ok(LoadedPipeline {
            path: path.to_path_buf(),
            pipeline,
            content,
        }),
        _ => Err(redacted(check.diagnostics)),
    }
}

/// Diagnostics with every registered secret masked (see [`crate::redact`]).
fn redacted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    for diagnostic in &mut diagnostics {
        diagnostic.message = crate::redact::text(&diagnostic.message).into_owned();
    }
    diagnostics
}

/// Loads every file, then checks what spans files (two pipelines with one `name`,
/// an Elasticsearch index shared where stale deletion is on). Returns the pipelines
/// that are valid and every diagnostic found, file by file in the order given.
pub fn load_all(files: &[PathBuf]) -> (Vec<LoadedPipeline>, Vec<Diagnostic>) {
    let set = load_set(files, &crate::config::variables::Variables::environment());
    (set.loaded, set.diagnostics)
}

/// What [`load_set`] found in a set of files.
#[derive(Debug, Default)]
pub struct LoadedSet {
    /// The valid pipelines.
    pub loaded: Vec<LoadedPipeline>,
    /// Every problem, file by file in the order given.
    pub diagnostics: Vec<Diagnostic>,
    /// Secrets written in the valid files (see [`load::FileCheck::warnings`]).
    pub warnings: Vec<Diagnostic>,
    /// Variables stood in for by a placeholder, and the checks skipped for them.
    pub notes: Vec<Diagnostic>,
}

/// [`load_all`] with the variables of `validate` (`--env-file`, `--allow-unset`), and
/// the warnings and notes too.
pub fn load_set(files: &[PathBuf], variables: &crate::config::variables::Variables) -> LoadedSet {
    let lookup = |name: &str| variables.lookup(name);
    let mut checks: Vec<(PathBuf, load::FileCheck)> = files
        .iter()
        .map(|file| (file.clone(), load::check_file(file, &lookup)))
        .collect();
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    for (_, check) in &mut checks {
        warnings.append(&mut check.warnings);
        notes.append(&mut check.notes);
    }
    let valid: Vec<cross_file::Checked<'_>> = checks
        .iter()
        .filter_map(|(path, check)| match (&check.root, &check.pipeline) {
            (Some(root), Some(pipeline)) => Some(cross_file::Checked { path, root, pipeline }),
            _ => None,
        })
        .collect();
    let cross = cross_file::check(&valid);
    let mut loaded = Vec::new();
    let mut diagnostics = Vec::new();
    for (path, check) in checks {
        let mut own = check.diagnostics;
        own.extend(cross.iter().filter(|d| d.file == path).cloned());
        load::sort(&mut own);
        let content = check.root.as_ref().map(|root| root.to_json()).unwrap_or_default();
        match check.pipeline {
            Some(pipeline) if own.is_empty() => loaded.push(LoadedPipeline {
                path,
                pipeline,
                content,
            }),
            _ => diagnostics.extend(own),
        }
    }
    // A file's errors come first: its warnings are given once it has none.
    warnings.retain(|w| loaded.iter().any(|l| l.path == w.file));
    LoadedSet {
        loaded,
        diagnostics: redacted(diagnostics),
        warnings: redacted(warnings),
        notes: redacted(notes),
    }
}

/// Variables for `${VAR}`: the process environment.
fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
