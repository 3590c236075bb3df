//! Checking one pipeline file from bytes to built stages: UTF-8, YAML (with
//! positions), `${VAR}` interpolation, the JSON Schema, the typed structs, then the
//! stages' own `build` (templates, globs, regexes). Each step reports every problem
//! it finds; a step whose input is broken is skipped so one mistake gives one message.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::failing_field;
use crate::config::interpolate::{interpolate_tree, InterpolatedValues};
use crate::config::locate::{self, locate, Anchor};
use crate::config::model::{Pipeline, ScheduleConfig, SinkConfig, SourceConfig, TransformConfig};
use crate::config::schedule::Schedule;
use crate::config::schema::{self, is_secret_field};
use crate::config::secrets;
use crate::config::variables;
use crate::config::yaml::{self, Node, NodeKind, Position};
use crate::config::Diagnostic;
use crate::config::FieldError;
use crate::pipeline::{self, Parts};
use crate::stages::sink::elasticsearch::mappings;

/// Everything learnt about one file: its tree (for locating later, cross-file
/// problems), its pipeline when it is valid, and its problems.
#[derive(Debug)]
pub struct FileCheck {
    pub root: Option<Node>,
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diagnostic>,
    /// What works but should not be so: secrets written in the file (errors under
    /// `validate --strict`).
    pub warnings: Vec<Diagnostic>,
    /// What the check could not do: variables that were not set, stood in for by a
    /// placeholder (`validate --allow-unset`), and the checks skipped for them.
    pub notes: Vec<Diagnostic>,
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
            warnings: Vec::new(),
            notes: Vec::new(),
        },
    }
}

/// Checks the contents of a pipeline file; `path` only names it in diagnostics.
pub fn check_bytes(path: &Path, bytes: &[u8], lookup: &dyn Fn(&str) -> Option<String>) -> FileCheck {
    let mut check = FileCheck {
        root: None,
        pipeline: None,
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
    };
    let diagnostic = |position: Position, pointer: String, message: String| Diagnostic {
        file: path.to_path_buf(),
        line: position.line,
        column: position.column,
        pointer,
        message,
    };
    let text = match yaml_text(bytes) {
        Ok(text) => text,
        Err((position, message)) => {
            check.diagnostics.push(diagnostic(position, String::new(), message));
            return check;
        }
    };

    let (root, yaml_errors) = yaml::parse(text);
    let mut reported: HashSet<String> = HashSet::new();
    for error in yaml_errors {
        // A merge key that brought nothing in leaves its mapping short of fields: that
        // mapping's "missing field" messages would only repeat the problem.
        if let Some(mapping) = error.pointer.strip_suffix("/<<") {
            reported.insert(mapping.to_owned());
        }
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
    secrets::register(&value, &interpolated);
    for secret in secrets::literal_secrets(&value, &interpolated) {
        let position = locate(&root, &secret.pointer, Anchor::Value);
        check
            .warnings
            .push(diagnostic(position, secret.pointer, secret.message));
    }
    // Fields holding a placeholder for an unset variable (`validate --allow-unset`):
    // the problems found there are about the placeholder, not the file.
    let unset = variables::unset_fields(&value, &interpolated);
    let mut skipped: Vec<String> = Vec::new();
    schema_problems(
        &mut check,
        &root,
        &value,
        &interpolated,
        &reported,
        &unset,
        &mut skipped,
        &diagnostic,
    );

    let found = stage_problems(&mut check, &root, &value, &interpolated, &skipped);
    match found {
        Ok(found) => {
            for error in found {
                let position = locate(&root, &error.pointer, Anchor::Value);
                check
                    .diagnostics
                    .push(diagnostic(position, error.pointer, error.message));
            }
        }
        Err((position, pointer, message)) => check.diagnostics.push(diagnostic(position, pointer, message)),
    }
    finish_check(&mut check, &root, &value, &interpolated, &unset, skipped, &diagnostic);
    check.root = Some(root);
    check
}

/// Adds the schema's problems to `check`, each at its place, except those already
/// reported (a failed `${VAR}`, a key that is not text); those at a placeholder for
/// an unset variable go to `skipped` instead.
#[allow(clippy::too_many_arguments)]
fn schema_problems(
    check: &mut FileCheck,
    root: &Node,
    value: &Value,
    interpolated: &InterpolatedValues,
    reported: &HashSet<String>,
    unset: &[(String, Vec<String>)],
    skipped: &mut Vec<String>,
    diagnostic: &impl Fn(Position, String, String) -> Diagnostic,
) {
    let is_interpolated = |pointer: &str| interpolated.contains_key(pointer);
    let schema_errors = schema::check(value, &is_secret_field, &is_interpolated);
    for error in schema_errors {
        // A value whose `${VAR}` failed is reported once, not again for its raw text;
        // a key that is not text (`? [a, b]`) was reported by the YAML step, and its
        // stand-in name is no field to report as unknown.
        if reported.contains(&error.pointer) || error.pointer.contains('\u{0}') {
            continue;
        }
        if at_unset(unset, &error.pointer) {
            skipped.push(error.pointer);
            continue;
        }
        let position = locate(root, &error.pointer, error.anchor);
        check
            .diagnostics
            .push(diagnostic(position, error.pointer, error.message));
    }
}

/// Drops the problems at a placeholder for an unset variable (noting each such
/// field instead), hides interpolated values in the messages, and sorts both lists.
fn finish_check(
    check: &mut FileCheck,
    root: &Node,
    value: &Value,
    interpolated: &InterpolatedValues,
    unset: &[(String, Vec<String>)],
    mut skipped: Vec<String>,
    diagnostic: &impl Fn(Position, String, String) -> Diagnostic,
) {
    check.diagnostics.retain(|d| {
        let placeholder = at_unset(unset, &d.pointer);
        if placeholder {
            skipped.push(d.pointer.clone());
        }
        !placeholder
    });
    for (pointer, names) in unset {
        let position = locate(root, pointer, Anchor::Value);
        let message = variables::unset_note(names, skipped.iter().any(|s| is_within(s, pointer)));
        check.notes.push(diagnostic(position, pointer.clone(), message));
    }
    sort(&mut check.notes);
    for d in &mut check.diagnostics {
        d.message = secrets::hide_interpolated(&d.message, &d.pointer, value, interpolated);
    }
    sort(&mut check.diagnostics);
}

/// The stages' own checks (`build`, the sink and schedule checks), over the fields
/// that passed the schema when some did not; or, the file converting to a
/// [`Pipeline`] with none found, that pipeline in `check`. A conversion error is
/// given with its place.
fn stage_problems(
    check: &mut FileCheck,
    root: &Node,
    value: &Value,
    interpolated: &InterpolatedValues,
    skipped: &[String],
) -> Result<Vec<FieldError>, (Position, String, String)> {
    if !check.diagnostics.is_empty() || !skipped.is_empty() {
        let failed: Vec<&str> = check
            .diagnostics
            .iter()
            .map(|d| d.pointer.as_str())
            .chain(skipped.iter().map(String::as_str))
            .collect();
        Ok(stage_checks_without(value, &failed))
    } else {
        match Pipeline::deserialize(value) {
            Ok(pipeline) => {
                let built = pipeline::build(&pipeline, None).err().unwrap_or_default();
                let checks = config_checks(Some(&pipeline.sink), pipeline.schedule.as_ref());
                let found: Vec<FieldError> = built
                    .into_iter()
                    .chain(checks)
                    .chain(live_schedule(&pipeline))
                    .collect();
                if found.is_empty() {
                    check.pipeline = Some(pipeline);
                }
                Ok(found)
            }
            Err(error) => Err(conversion_error(root, value, interpolated, &error)),
        }
    }
}

/// Whether a problem at `pointer` is at (or inside) a field holding a placeholder.
fn at_unset(unset: &[(String, Vec<String>)], pointer: &str) -> bool {
    unset.iter().any(|(field, _)| is_within(pointer, field))
}

/// The file's text, without a byte-order mark; or where and why it is no YAML text:
/// not UTF-8, or a control character YAML cannot hold.
fn yaml_text(bytes: &[u8]) -> Result<&str, (Position, String)> {
    let at = |before: &str| Position {
        line: before.matches('\n').count() + 1,
        column: before.rsplit('\n').next().unwrap_or_default().chars().count() + 1,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default();
            let byte = bytes[error.valid_up_to()];
            return Err((
                at(valid),
                format!("the file is not UTF-8 text (byte 0x{byte:02x} here): save it as UTF-8"),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((offset, c)) = text.char_indices().find(|(_, c)| !is_yaml_printable(*c)) {
        // The YAML parser stops at a NUL as at the end of the file: whatever follows
        // (a `transforms:` section) would be silently ignored.
        return Err((
            at(&text[..offset]),
            format!(
                "control character U+{:04X} here: YAML text cannot hold it; remove it (inside double quotes, write it as an escape such as `\\x{:02x}`)",
                u32::from(c),
                u32::from(c) & 0xff
            ),
        ));
    }
    Ok(text)
}

/// The stages' own checks (`timeout: 0`, templates, globs) of a file that failed
/// the schema, run on what is left once every field found wrong (`failed`) is taken
/// out, so one pass reports all. A check of what holds a removed field (a rule whose
/// misspelt `key_patern` was taken out "selects nothing") only repeats the problem.
fn stage_checks_without(value: &Value, failed: &[&str]) -> Vec<FieldError> {
    let cleaned = without_fields(value, failed);
    let related = |pointer: &str| failed.iter().any(|f| is_within(f, pointer) || is_within(pointer, f));
    build_parts(&cleaned)
        .into_iter()
        .filter(|e| !related(&e.pointer))
        .collect()
}

/// A file that passed the schema but does not convert to the typed structs. The
/// schema mirrors the structs, so this is rare: what the schema cannot say (`1e3` or
/// `1.0` where a whole number is needed, a duration past the largest one). Placed at
/// the field that fails to convert.
fn conversion_error(
    root: &Node,
    value: &Value,
    interpolated: &InterpolatedValues,
    error: &serde_json::Error,
) -> (Position, String, String) {
    let pointer = failing_field::failing_field(value, &error.to_string());
    let position = locate(root, &pointer, Anchor::Value);
    let secret = is_secret_field(&pointer) || interpolated.keys().any(|p| p.starts_with(&pointer));
    let message = match locate::node_at(root, &pointer).map(|n| &n.kind) {
        _ if secret => "invalid value (not shown: it comes from `${...}` or is a secret)".to_owned(),
        Some(NodeKind::Scalar(scalar)) if scalar.value.is_f64() && error.to_string().contains("floating point") => {
            format!(
                "expected a whole number, got `{}`: write it without a decimal point or exponent",
                scalar.text
            )
        }
        _ => format!("invalid value: {error}"),
    };
    (position, pointer, message)
}

/// Whether `inner` is `outer` or inside it, segment by segment (`/a/b` is within
/// `/a`, `/ab` is not). The root `""` holds nothing here: it is no field.
fn is_within(inner: &str, outer: &str) -> bool {
    !outer.is_empty()
        && inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `value` less the fields at `pointers` (problems already reported): an object's
/// member is removed; a list item's problem removes the list's whole field (removing
/// the item would shift the pointers of the next ones), a whole stage of
/// `transforms` becomes `null`. The root pointer removes nothing.
fn without_fields(value: &Value, pointers: &[&str]) -> Value {
    let mut cleaned = value.clone();
    for pointer in pointers {
        let mut target: Vec<&str> = pointer.split('/').skip(1).collect();
        // `/source/rules/1/database` takes `/source/rules` out; `/transforms/1` stays
        // itself (that stage alone is set aside).
        while target.len() > 1
            && target.last().is_some_and(|s| s.parse::<usize>().is_ok())
            && !(target.len() == 2 && target[0] == "transforms")
        {
            target.pop();
        }
        let Some((last, parents)) = target.split_last() else {
            continue;
        };
        let parent: String = parents.iter().map(|p| format!("/{p}")).collect();
        let last = last.replace("~1", "/").replace("~0", "~");
        match cleaned.pointer_mut(&parent) {
            Some(Value::Object(map)) => {
                map.shift_remove(&last);
            }
            Some(Value::Array(items)) => {
                if let Some(item) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    *item = Value::Null;
                }
            }
            _ => {}
        }
    }
    cleaned
}

/// Builds each part of a file that failed the schema whose section still converts
/// on its own (the source, each transform, the sink), returning their errors.
fn build_parts(value: &Value) -> Vec<FieldError> {
    let source = value.get("source").and_then(|v| SourceConfig::deserialize(v).ok());
    let transforms: Vec<Option<TransformConfig>> = value
        .get("transforms")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|t| TransformConfig::deserialize(t).ok()).collect())
        .unwrap_or_default();
    let sink = value.get("sink").and_then(|v| SinkConfig::deserialize(v).ok());
    let schedule = value.get("schedule").and_then(|v| ScheduleConfig::deserialize(v).ok());
    let parts = Parts {
        source: source.as_ref(),
        transforms: transforms.iter().map(Option::as_ref).collect(),
        sink: sink.as_ref(),
    };
    let mut errors = pipeline::check(&parts);
    errors.extend(config_checks(sink.as_ref(), schedule.as_ref()));
    errors
}

/// Whether YAML allows `c` in a file (the spec's `c-printable`): tab, line breaks
/// and every printable character, but no other control character.
fn is_yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || c >= '\u{10000}'
}

/// The checks of sections that are not stages: the sink's own mappings and settings,
/// and the schedule; pointers from the file's root.
fn config_checks(sink: Option<&SinkConfig>, schedule: Option<&ScheduleConfig>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut add = |prefix: &str, found: Vec<FieldError>| {
        errors.extend(
            found
                .into_iter()
                .map(|e| FieldError::new(format!("{prefix}{}", e.pointer), e.message)),
        );
    };
    if let Some(sink) = sink {
        add("/sink", mappings::check_sink(sink));
    }
    if let Some(schedule) = schedule {
        if let Err(found) = Schedule::build(schedule) {
            add("/schedule", found);
        }
    }
    errors
}

/// A `schedule` on a live pipeline: refused, since `serve` follows it continuously.
fn live_schedule(pipeline: &Pipeline) -> Option<FieldError> {
    let live = pipeline.live.as_ref().is_some_and(|live| live.enabled);
    (live && pipeline.schedule.is_some()).then(|| {
        FieldError::new(
            "/schedule",
            "a live pipeline is never scheduled: `serve` follows it continuously, and its periodic \
             full resync is `live.reconcile_every`; remove `schedule`, or set `live: false` to run \
             it on this schedule",
        )
    })
}

/// Orders a file's diagnostics by position, dropping exact repeats.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics
        .sort_by(|a, b| (a.line, a.column, &a.pointer, &a.message).cmp(&(b.line, b.column, &b.pointer, &b.message)));
    diagnostics.dedup();
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
