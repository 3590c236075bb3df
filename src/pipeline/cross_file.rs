//! Checks that span pipeline files: two pipelines with one `name`, two pipelines
//! writing one Elasticsearch index where stale deletion would delete the other's
//! documents, and two pipelines writing one dead-letter file (each run removes it at its start).

use std::path::PathBuf;

use crate::config::locate::{locate, node_at, Anchor};
use crate::config::model::{ElasticsearchSinkConfig, Pipeline, SinkConfig};
use crate::config::yaml::{Node, Position};
use crate::config::Diagnostic;

/// A valid pipeline and the tree of its file (to locate what is reported).
pub struct Checked<'a> {
    pub path: &'a PathBuf,
    pub root: &'a Node,
    pub pipeline: &'a Pipeline,
}

/// Every cross-file problem among `pipelines`.
pub fn check(pipelines: &[Checked<'_>]) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let at = |c: &Checked<'_>, pointer: &str, message: String| {
        let Position { line, column } = locate(c.root, pointer, Anchor::Value);
        Diagnostic {
            file: c.path.clone(),
            line,
            column,
            pointer: pointer.to_owned(),
            message,
        }
    };
    for (i, a) in pipelines.iter().enumerate() {
        if let Some(first) = pipelines[..i].iter().find(|b| b.pipeline.name == a.pipeline.name) {
            let first_at = locate(first.root, "/name", Anchor::Value);
            diagnostics.push(at(
                a,
                "/name",
                format!(
                    "pipeline name `{}` is already used by {}:{}:{}: names must be unique",
                    a.pipeline.name,
                    first.path.display(),
                    first_at.line,
                    first_at.column
                ),
            ));
        }
    }
    for (i, a) in pipelines.iter().enumerate() {
        for (j, b) in pipelines.iter().enumerate() {
            if i == j {
                continue;
            }
            let (SinkConfig::Elasticsearch(sa), SinkConfig::Elasticsearch(sb)) = (&a.pipeline.sink, &b.pipeline.sink)
            else {
                continue;
            };
            if sa.target() != sb.target()
                || urls(sa) != urls(sb)
                || !(sa.delete_stale.enabled || sb.delete_stale.enabled)
            {
                continue;
            }
            let pointer = if node_at(a.root, "/sink/delete_stale").is_some() {
                "/sink/delete_stale"
            } else {
                "/sink/index"
            };
            let who = if sa.delete_stale.enabled && sb.delete_stale.enabled {
                "both pipelines delete stale documents"
            } else if sa.delete_stale.enabled {
                "this pipeline deletes stale documents"
            } else {
                "that pipeline deletes stale documents"
            };
            diagnostics.push(at(
                a,
                pointer,
                format!(
                    "index `{}` is also written by pipeline `{}` ({}) and {who}: stale deletion would delete the other pipeline's documents; a shared index needs `delete_stale: false` in every pipeline that writes it",
                    sa.target(),
                    b.pipeline.name,
                    b.path.display()
                ),
            ));
        }
    }
    let files: Vec<_> = pipelines.iter().map(dead_letter_files).collect();
    for (i, a) in pipelines.iter().enumerate() {
        for (pointer, path) in &files[i] {
            let Some(b) = pipelines[..i].iter().zip(&files).find_map(|(b, theirs)| {
                // Two pipelines of one name are reported as such already.
                (b.pipeline.name != a.pipeline.name && theirs.iter().any(|(_, other)| other == path)).then_some(b)
            }) else {
                continue;
            };
            diagnostics.push(at(
                a,
                pointer,
                format!(
                    "dead-letter file `{}` is also written by pipeline `{}` ({}): each run removes it at its start, so one pipeline's failed records would erase the other's; give each pipeline its own `dead_letter`",
                    path.display(),
                    b.pipeline.name,
                    b.path.display()
                ),
            ));
        }
    }
    diagnostics
}

/// The dead-letter files a pipeline writes (its own, and its sink's when that is
/// another), each with the pointer that names it (`/name` for the default one,
/// which comes from the name), as written without `./` parts.
fn dead_letter_files(checked: &Checked<'_>) -> Vec<(&'static str, PathBuf)> {
    let normal = |path: PathBuf| -> PathBuf {
        path.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    };
    let pipeline = checked.pipeline;
    let own_pointer = if pipeline.dead_letter.is_some() {
        "/dead_letter"
    } else {
        "/name"
    };
    let own = normal(pipeline.dead_letter_path());
    let mut files = vec![(own_pointer, own.clone())];
    if let Some(path) = pipeline.sink.dead_letter_path().map(normal).filter(|p| *p != own) {
        files.push(("/sink/dead_letter", path));
    }
    files
}

/// The sink's node URLs, normalised (case, trailing `/`) and sorted, to compare clusters.
fn urls(sink: &ElasticsearchSinkConfig) -> Vec<String> {
    let mut urls: Vec<String> = sink
        .url
        .to_vec()
        .iter()
        .map(|u| u.trim().trim_end_matches('/').to_lowercase())
        .collect();
    urls.sort();
    urls.dedup();
    urls
}
