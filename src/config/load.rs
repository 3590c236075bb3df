//! Checking one pipeline file from bytes to built stages: UTF-8, YAML (with
//! positions), `${VAR}` interpolation, the JSON Schema, the typed structs, then the
//! stages' own `build` (templates, globs, regexes). Each step reports every problem
//! it finds; a step whose input is broken is skipped so one mistake gives one message.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::interpolate::interpolate_tree;
use super::locate::{locate, Anchor};
use super::model::{Pipeline, SinkConfig, SourceConfig, TransformConfig};
use super::schema::{self, is_secret_field};
use super::yaml::{self, Node, NodeKind, Position};
use super::Diagnostic;
use crate::stages::{FieldError, Sink, Source, Transform};

/// Everything learnt about one file: its tree (for locating later, cross-file
/// problems), its pipeline when it is valid, and its problems.
#[derive(Debug)]
pub struct FileCheck {
    pub root: Option<Node>,
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads and checks the file at `path`; variables come from `lookup`.
pub fn check_file(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> FileCheck {
    match std::fs::read(path) {
        Ok(bytes) => check_bytes(path, &bytes, lookup),
        Err(error) => FileCheck {
            root: None,
            pipeline: None,
            diagnostics: vec![Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                pointer: String::new(),
                message: format!("cannot read the file: {error}"),
            }],
        },
    }
}

/// Checks the contents of a pipeline file; `path` only names it in diagnostics.
pub fn check_bytes(
    path: &Path,
    bytes: &[u8],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> FileCheck {
    let mut check = FileCheck {
        root: None,
        pipeline: None,
        diagnostics: Vec::new(),
    };
    let diagnostic = |position: Position, pointer: String, message: String| Diagnostic {
        file: path.to_path_buf(),
        line: position.line,
        column: position.column,
        pointer,
        message,
    };

    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default();
            let line = valid.matches('\n').count() + 1;
            let column = valid
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            let byte = bytes[error.valid_up_to()];
            check.diagnostics.push(diagnostic(
                Position { line, column },
                String::new(),
                format!("the file is not UTF-8 text (byte 0x{byte:02x} here): save it as UTF-8"),
            ));
            return check;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let (root, yaml_errors) = yaml::parse(text);
    for error in yaml_errors {
        check
            .diagnostics
            .push(diagnostic(error.position, error.pointer, error.message));
    }
    let Some(mut root) = root else {
        if check.diagnostics.is_empty() {
            check.diagnostics.push(diagnostic(
                Position { line: 1, column: 1 },
                String::new(),
                "the file is empty: a pipeline needs at least `name`, `source` and `sink`".into(),
            ));
        }
        return check;
    };
    if !matches!(root.kind, NodeKind::Mapping(_)) {
        check.diagnostics.push(diagnostic(
            root.position,
            String::new(),
            format!(
                "the top level of a pipeline file must be a mapping (`name:`, `source:`, `transforms:`, `sink:`), not {}",
                root.kind_name()
            ),
        ));
        check.root = Some(root);
        return check;
    }

    let (interpolated, interpolation_errors) = interpolate_tree(&mut root, lookup);
    let mut reported: HashSet<String> = HashSet::new();
    for error in interpolation_errors {
        reported.insert(error.pointer.clone());
        check
            .diagnostics
            .push(diagnostic(error.position, error.pointer, error.message));
    }
    for d in &check.diagnostics {
        reported.insert(d.pointer.clone());
    }

    let value = root.to_json();
    let is_interpolated = |pointer: &str| interpolated.contains(pointer);
    let schema_errors = schema::check(&value, &is_secret_field, &is_interpolated);
    let schema_failed = !schema_errors.is_empty();
    for error in schema_errors {
        // A value whose `${VAR}` failed is reported once, not again for its raw text.
        if reported.contains(&error.pointer) {
            continue;
        }
        let position = locate(&root, &error.pointer, error.anchor);
        check
            .diagnostics
            .push(diagnostic(position, error.pointer, error.message));
    }
    if schema_failed || !check.diagnostics.is_empty() {
        sort(&mut check.diagnostics);
        check.root = Some(root);
        return check;
    }

    match Pipeline::deserialize(&value) {
        Ok(pipeline) => {
            for error in build_stages(&pipeline) {
                let position = locate(&root, &error.pointer, Anchor::Value);
                check
                    .diagnostics
                    .push(diagnostic(position, error.pointer, error.message));
            }
            if check.diagnostics.is_empty() {
                check.pipeline = Some(pipeline);
            }
        }
        Err(error) => {
            // The schema mirrors the structs, so this is rare (e.g. a number too large
            // for its field); place it at the stage that fails to convert.
            let pointer = failing_part(&value);
            let position = locate(&root, &pointer, Anchor::Value);
            let message = if interpolated.is_empty() {
                format!("invalid value: {error}")
            } else {
                "invalid value (not shown: the file uses `${...}`)".to_owned()
            };
            check
                .diagnostics
                .push(diagnostic(position, pointer, message));
        }
    }
    sort(&mut check.diagnostics);
    check.root = Some(root);
    check
}

/// Builds every stage (pure: compiles templates, globs, regexes) and returns their
/// errors with pointers from the file's root.
fn build_stages(pipeline: &Pipeline) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut add = |prefix: String, found: Vec<FieldError>| {
        for error in found {
            errors.push(FieldError {
                pointer: format!("{prefix}{}", error.pointer),
                message: error.message,
            });
        }
    };
    if let Err(found) = Source::build(&pipeline.source) {
        add("/source".into(), found);
    }
    for (i, transform) in pipeline.transforms.iter().enumerate() {
        if let Err(found) = Transform::build(transform) {
            add(format!("/transforms/{i}"), found);
        }
    }
    if let Err(found) = Sink::build(&pipeline.sink) {
        add("/sink".into(), found);
    }
    errors
}

/// The pointer of the first part of `value` that does not convert to its struct.
fn failing_part(value: &Value) -> String {
    if let Some(source) = value.get("source") {
        if serde_json::from_value::<SourceConfig>(source.clone()).is_err() {
            return "/source".into();
        }
    }
    if let Some(Value::Array(transforms)) = value.get("transforms") {
        for (i, transform) in transforms.iter().enumerate() {
            if serde_json::from_value::<TransformConfig>(transform.clone()).is_err() {
                return format!("/transforms/{i}");
            }
        }
    }
    if let Some(sink) = value.get("sink") {
        if serde_json::from_value::<SinkConfig>(sink.clone()).is_err() {
            return "/sink".into();
        }
    }
    String::new()
}

/// Orders a file's diagnostics by position, dropping exact repeats.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (a.line, a.column, &a.pointer, &a.message).cmp(&(b.line, b.column, &b.pointer, &b.message))
    });
    diagnostics.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn messages(text: &[u8]) -> Vec<String> {
        check_bytes(Path::new("p.yaml"), text, &no_env)
            .diagnostics
            .iter()
            .map(|d| format!("{}:{} {} {}", d.line, d.column, d.pointer, d.message))
            .collect()
    }

    const VALID: &str =
        "name: p\nsource:\n  type: redis\n  host: h\nsink:\n  type: ndjson\n  path: '-'\n";

    #[test]
    fn a_valid_file_gives_its_pipeline() {
        let check = check_bytes(Path::new("p.yaml"), VALID.as_bytes(), &no_env);
        assert_eq!(check.diagnostics, vec![]);
        assert_eq!(check.pipeline.unwrap().name, "p");
    }

    #[test]
    fn non_utf8_bytes_are_located() {
        assert_eq!(
            messages(b"name: p\nsource: ab\xffc\n"),
            vec!["2:11  the file is not UTF-8 text (byte 0xff here): save it as UTF-8"]
        );
    }

    #[test]
    fn empty_and_comment_only_files_are_errors() {
        let expected =
            vec!["1:1  the file is empty: a pipeline needs at least `name`, `source` and `sink`"];
        assert_eq!(messages(b""), expected);
        assert_eq!(messages(b"# nothing\n"), expected);
    }

    #[test]
    fn a_list_at_the_top_is_an_error() {
        assert_eq!(
            messages(b"- name: p\n"),
            vec!["1:1  the top level of a pipeline file must be a mapping (`name:`, `source:`, `transforms:`, `sink:`), not a list"]
        );
    }

    #[test]
    fn every_error_of_a_file_is_reported_in_order() {
        let text = VALID.replace("host: h", "host: h\n  port: 70000\n  databse: 1");
        assert_eq!(
            messages(text.as_bytes()),
            vec![
                "5:9 /source/port expected an integer <= 65535, got 70000",
                "6:3 /source/databse unknown field `databse`, did you mean `database`?",
            ]
        );
    }

    #[test]
    fn an_unset_variable_is_reported_once() {
        let text = VALID.replace("host: h", "host: h\n  port: ${NO_SUCH_PORT}");
        assert_eq!(
            messages(text.as_bytes()),
            vec!["5:9 /source/port environment variable `NO_SUCH_PORT` is not set (set it, or give a default: `${NO_SUCH_PORT:-default}`)"]
        );
    }

    #[test]
    fn interpolated_values_are_never_echoed() {
        let text = VALID.replace("host: h", "host: h\n  port: ${SECRET_PORT}");
        let lookup = |name: &str| (name == "SECRET_PORT").then(|| "s3cr3t".to_string());
        let found = check_bytes(Path::new("p.yaml"), text.as_bytes(), &lookup).diagnostics;
        assert_eq!(found.len(), 1);
        assert!(!found[0].message.contains("s3cr3t"), "{}", found[0].message);
    }
}
