//! The JSON Schema check of a pipeline file: `schemas/pipeline.schema.json`, compiled
//! once, run over the file's JSON value, every error turned into a message a user
//! can act on and a pointer [`locate`](super::locate) can place.
//!
//! Messages come from the error's kind plus the schema node that failed: its
//! `properties` (to suggest a field name), `enum` (to list the choices),
//! `patternErrorMessage` (what a pattern means) and `errorMessage` (what an
//! `anyOf`/`not` means); the two last keywords are the ones VS Code's JSON language
//! service shows, so editors and `validate` say the same thing. A value is echoed
//! only when it is not a secret (see `is_secret` of [`check`]).

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use super::locate::{segments, Anchor};
use super::suggest::did_you_mean;
use super::yaml::{escape_pointer, json_kind_name};

/// The schema's text, as shipped in `schemas/`.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/pipeline.schema.json");

/// The schema as JSON.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).expect("schemas/pipeline.schema.json is valid JSON"))
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema()).expect("schemas/pipeline.schema.json is a valid draft 2020-12 schema")
    })
}

/// One schema violation: where (pointer, and whether at the key or the value) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub pointer: String,
    pub anchor: Anchor,
    pub message: String,
}

/// Checks `instance` against the schema and returns every violation.
/// `is_secret(pointer)` says whether the value at a pointer must never be echoed;
/// `is_interpolated(pointer)` whether it came from `${VAR}`.
pub fn check(
    instance: &Value,
    is_secret: &dyn Fn(&str) -> bool,
    is_interpolated: &dyn Fn(&str) -> bool,
) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    let mut missing = Vec::new();
    for error in validator().iter_errors(instance) {
        let is_missing = matches!(
            error.kind(),
            ValidationErrorKind::Required { .. } | ValidationErrorKind::AnyOf { .. }
        );
        let before = errors.len();
        explain(&error, is_secret, is_interpolated, &mut errors);
        if is_missing {
            missing.extend(before..errors.len());
        }
    }
    // `key_patern: x` also makes `key_pattern` missing: the suggestion says it all.
    let suggested_in: Vec<String> = errors
        .iter()
        .filter(|e| e.anchor == Anchor::Key && e.message.contains("did you mean"))
        .filter_map(|e| e.pointer.rsplit_once('/').map(|(parent, _)| parent.to_owned()))
        .collect();
    let mut index = 0;
    errors.retain(|e| {
        let keep = !(missing.contains(&index) && suggested_in.contains(&e.pointer));
        index += 1;
        keep
    });
    errors
}

/// Field names whose values are never echoed, wherever they are.
pub const SECRET_FIELDS: [&str; 3] = ["password", "api_key", "username"];

/// Whether the last segment of `pointer` names a secret field.
pub fn is_secret_field(pointer: &str) -> bool {
    segments(pointer)
        .last()
        .is_some_and(|last| SECRET_FIELDS.contains(&last.as_str()))
}

fn explain(
    error: &ValidationError<'_>,
    is_secret: &dyn Fn(&str) -> bool,
    is_interpolated: &dyn Fn(&str) -> bool,
    out: &mut Vec<SchemaError>,
) {
    let pointer = error.instance_path().as_str().to_owned();
    let node = schema_node_of(error.schema_path().as_str());
    let secret = is_secret(&pointer) || is_interpolated(&pointer);
    let value: &Value = error.instance();
    let field = segments(&pointer).last().cloned().unwrap_or_default();
    let at_value = |message: String| SchemaError {
        pointer: pointer.clone(),
        anchor: Anchor::Value,
        message,
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known: Vec<&str> = node
                .and_then(|n| n.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            for name in unexpected {
                let message = match did_you_mean(name, known.iter().copied()) {
                    Some(suggestion) => {
                        format!("unknown field `{name}`, did you mean `{suggestion}`?")
                    }
                    None => format!("unknown field `{name}`: expected one of {}", list(&known)),
                };
                out.push(SchemaError {
                    pointer: format!("{pointer}/{}", escape_pointer(name)),
                    anchor: Anchor::Key,
                    message,
                });
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let choices = node
                .and_then(|n| n.pointer(&format!("/properties/{}/enum", escape_pointer(name))))
                .and_then(Value::as_array)
                .map(|options| {
                    format!(
                        " (one of {})",
                        list(&options.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                    )
                })
                .unwrap_or_default();
            // `tpye: filter`: the stage's own fields are checked only once its `type`
            // is known, so a misspelt `type` would get no "did you mean" otherwise.
            let known: Vec<&str> = node
                .and_then(|n| n.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let misspelt = value.as_object().and_then(|fields| {
                fields
                    .keys()
                    .filter(|key| !known.contains(&key.as_str()))
                    .find(|key| did_you_mean(key, [name]).is_some())
            });
            let hint = misspelt
                .map(|key| format!("; `{key}` is not a field, did you mean `{name}`?"))
                .unwrap_or_default();
            out.push(SchemaError {
                pointer,
                anchor: Anchor::Key,
                message: format!("missing required field `{name}`{choices}{hint}"),
            });
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => type_name(*t).to_owned(),
                TypeKind::Multiple(set) => {
                    let names: Vec<&str> = set.iter().map(type_name).collect();
                    join_or(&names)
                }
            };
            let mut message = format!("expected {expected}, got {}", got_with_kind(value, secret));
            // YAML 1.1 (PyYAML, Ansible) reads these as booleans; YAML 1.2 as text.
            let yaml11_boolean = value
                .as_str()
                .map(str::to_ascii_lowercase)
                .is_some_and(|text| matches!(text.as_str(), "yes" | "no" | "on" | "off" | "y" | "n"));
            if expected.contains("a boolean") && yaml11_boolean && !secret {
                message.push_str(" (YAML 1.2 reads it as text: write `true` or `false`)");
            }
            if is_interpolated(&pointer) && expected.contains("string") {
                message.push_str(" (the value comes from `${...}`: quote it, `\"${...}\"`, to keep it a string)");
            }
            out.push(at_value(message));
        }
        ValidationErrorKind::Minimum { limit } | ValidationErrorKind::Maximum { limit } => {
            let op = if matches!(error.kind(), ValidationErrorKind::Minimum { .. }) {
                ">="
            } else {
                "<="
            };
            let what = if value.is_i64() || value.is_u64() {
                "an integer"
            } else {
                "a number"
            };
            out.push(at_value(format!(
                "expected {what} {op} {limit}, got {}",
                got(value, secret)
            )));
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<&str> = options
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut message = format!(
                "`{field}` must be one of {}; got {}",
                list(&options),
                got(value, secret)
            );
            if let Some(suggestion) = value.as_str().and_then(|v| did_you_mean(v, options.iter().copied())) {
                if !secret {
                    message.push_str(&format!(", did you mean `{suggestion}`?"));
                }
            }
            out.push(at_value(message));
        }
        ValidationErrorKind::Constant { expected_value } => {
            out.push(at_value(format!(
                "`{field}` must be {expected_value}; got {}",
                got(value, secret)
            )));
        }
        ValidationErrorKind::Pattern { .. } => {
            let meaning = node
                .and_then(|n| n.get("patternErrorMessage"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| "has the wrong form".to_owned());
            out.push(at_value(format!("{meaning}; got {}", got(value, secret))));
        }
        ValidationErrorKind::MinLength { limit: 1 } => {
            // A list item has an index, not a name: say which list it is in.
            let parts = segments(&pointer);
            let message = match parts.as_slice() {
                [.., list, index] if index.parse::<usize>().is_ok() => {
                    format!("item {index} of `{list}` must not be empty")
                }
                _ => format!("`{field}` must not be empty"),
            };
            out.push(at_value(message))
        }
        ValidationErrorKind::MinItems { limit: 1 } => {
            out.push(at_value(format!("`{field}` must not be an empty list")))
        }
        ValidationErrorKind::AnyOf { .. }
        | ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. }
        | ValidationErrorKind::Not { .. } => {
            let message = node
                .and_then(|n| n.get("errorMessage"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| error.masked().to_string());
            out.push(at_value(message));
        }
        _ => out.push(at_value(if secret {
            error.masked().to_string()
        } else {
            error.to_string()
        })),
    }
}

/// The schema object that holds the failing keyword: the schema path without its last
/// segment, walked from the root, following local `$ref`s.
fn schema_node_of(schema_path: &str) -> Option<&'static Value> {
    let mut parts = segments(schema_path);
    parts.pop();
    let root = schema();
    let mut node = root;
    for part in parts {
        if part == "$ref" {
            let target = node.get("$ref")?.as_str()?;
            node = root.pointer(target.strip_prefix('#')?)?;
            continue;
        }
        node = match node {
            Value::Object(map) => map.get(&part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Array => "a list",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Null => "nothing (null)",
        JsonType::Number => "a number",
        JsonType::Object => "a mapping",
        JsonType::String => "a string",
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// `a, b, c` (the choices of an enum or the fields of an object).
fn list(names: &[&str]) -> String {
    names.join(", ")
}

/// The value as a message shows it: itself when short and not secret.
fn got(value: &Value, secret: bool) -> String {
    if secret {
        return format!("{} (value not shown)", json_kind_name(value));
    }
    match value {
        Value::String(s) => format!("`{}`", shorten(s)),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => json_kind_name(other).to_owned(),
    }
}

/// The kind of the value, followed by the value when it is a short non-secret scalar.
fn got_with_kind(value: &Value, secret: bool) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) if !secret => {
            format!("{} {}", json_kind_name(value), got(value, false))
        }
        _ => json_kind_name(value).to_owned(),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(instance: Value) -> Vec<(String, String)> {
        check(&instance, &is_secret_field, &|_| false)
            .into_iter()
            .map(|e| (e.pointer, e.message))
            .collect()
    }

    fn minimal() -> Value {
        json!({
            "name": "p",
            "source": {"type": "redis", "host": "h"},
            "sink": {"type": "ndjson", "path": "-"}
        })
    }

    #[test]
    fn the_minimal_pipeline_passes() {
        assert_eq!(errors(minimal()), vec![]);
    }

    #[test]
    fn unknown_fields_get_a_suggestion() {
        let mut p = minimal();
        p["source"]["rules"] = json!([{"database": 0, "key_patern": "a*"}]);
        let found = errors(p);
        assert!(
            found.contains(&(
                "/source/rules/0/key_patern".into(),
                "unknown field `key_patern`, did you mean `key_pattern`?".into()
            )),
            "{found:?}"
        );
    }

    #[test]
    fn errors_concern_the_chosen_stage_only() {
        let mut p = minimal();
        p["sink"] = json!({"type": "ndjson", "path": "-", "index": "x"});
        assert_eq!(
            errors(p),
            vec![(
                "/sink/index".into(),
                "unknown field `index`: expected one of type, path".into()
            )]
        );
    }

    #[test]
    fn unknown_stage_type_lists_the_kinds() {
        let mut p = minimal();
        p["sink"] = json!({"type": "kafka"});
        assert_eq!(
            errors(p),
            vec![(
                "/sink/type".into(),
                "`type` must be one of elasticsearch, ndjson; got `kafka`".into()
            )]
        );
    }

    #[test]
    fn missing_type_names_the_choices() {
        let mut p = minimal();
        p["sink"] = json!({"path": "-"});
        assert_eq!(
            errors(p),
            vec![(
                "/sink".into(),
                "missing required field `type` (one of elasticsearch, ndjson)".into()
            )]
        );
    }

    #[test]
    fn yaml_1_1_booleans_get_a_hint() {
        let mut p = minimal();
        p["source"]["size_in_bytes"] = json!("no");
        assert_eq!(
            errors(p),
            vec![(
                "/source/size_in_bytes".into(),
                "expected a boolean, got a string `no` (YAML 1.2 reads it as text: write `true` or `false`)".into()
            )]
        );
    }

    #[test]
    fn an_empty_list_item_is_named_by_its_list() {
        let mut p = minimal();
        p["sink"] = json!({"type": "elasticsearch", "url": ["http://a:9200", ""], "index": "i"});
        assert_eq!(
            errors(p),
            vec![("/sink/url/1".into(), "item 1 of `url` must not be empty".into())]
        );
    }

    #[test]
    fn a_misspelt_type_is_named_in_the_missing_type_message() {
        let mut p = minimal();
        p["transforms"] = json!([{"tpye": "filter", "rules": []}]);
        assert_eq!(
            errors(p),
            vec![(
                "/transforms/0".into(),
                "missing required field `type` (one of template, filter); `tpye` is not a field, did you mean `type`?"
                    .into()
            )]
        );
    }

    #[test]
    fn rule_type_and_database_messages() {
        let mut p = minimal();
        p["source"]["rules"] = json!([{"database": -1, "_type": "FOO"}, {"database": 0}]);
        let found = errors(p);
        assert!(
            found.contains(&(
                "/source/rules/0/database".into(),
                "expected an integer >= 0, got -1".into()
            )),
            "{found:?}"
        );
        assert!(found.contains(&(
            "/source/rules/0/_type".into(),
            "`_type` must be one of HASH, LIST, SET, STREAM, STRING, ZSET, ReJSON-RL (or JSON), in any case; got `FOO`"
                .into()
        )));
        assert!(found.contains(&(
            "/source/rules/1".into(),
            "a rule needs `key_pattern`, `_type`, or both".into()
        )));
    }

    #[test]
    fn type_spellings_are_case_insensitive() {
        let mut p = minimal();
        p["source"]["rules"] = json!([{"database": 0, "_type": "hash"}, {"database": 0, "type": "ReJSON-RL"}, {"database": 1, "_type": "Json"}]);
        assert_eq!(errors(p), vec![]);
    }

    #[test]
    fn secrets_are_never_echoed() {
        let mut p = minimal();
        p["source"]["password"] = json!(12345);
        let found = errors(p);
        assert_eq!(
            found,
            vec![("/source/password".into(), "expected a string, got an integer".into())]
        );
        let mut p = minimal();
        p["source"]["port"] = json!("hunter2");
        let found = check(&p, &is_secret_field, &|ptr| ptr == "/source/port");
        assert_eq!(found[0].message, "expected an integer, got a string");
    }

    #[test]
    fn sizes_durations_and_databases_take_their_forms() {
        let mut p = minimal();
        p["source"]["database"] = json!("0, 1,2");
        p["source"]["max_value_bytes"] = json!("1.5 MiB");
        p["source"]["timeout"] = json!("500ms");
        assert_eq!(errors(p.clone()), vec![]);
        p["source"]["database"] = json!("0,x");
        p["source"]["max_value_bytes"] = json!("5 parsecs");
        p["source"]["timeout"] = json!(-3);
        let found = errors(p);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].1.ends_with("; got `0,x`") || found.iter().any(|e| e.1.ends_with("; got `0,x`")));
        assert!(found
            .iter()
            .any(|e| e.1.starts_with("expected a size such as `5MiB`") && e.1.ends_with("got `5 parsecs`")));
        assert!(found
            .iter()
            .any(|e| e.1 == "expected a number >= 0, got -3" || e.1 == "expected an integer >= 0, got -3"));
    }
}
