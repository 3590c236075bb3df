//! `${VAR}` interpolation from the environment, in string scalars only (never in
//! keys): `${VAR}`, `${VAR:-default}` (used when VAR is unset or empty), and `$${`
//! for a literal `${`. An unset variable without a default is an error that names
//! it. Interpolated values are remembered by pointer so that no message ever
//! echoes them (they are often secrets).
//!
//! An unquoted value is resolved again after interpolation, as if its result had been
//! written in the file (`port: ${PORT}` gives an integer); a quoted one stays a string
//! (`password: "${REDIS_PASSWORD}"`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use super::yaml::{escape_pointer, resolve_plain, Node, NodeKind, Position, YamlError};
use serde_json::Value;

/// A problem in one string: its character offset there and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub offset: usize,
    pub message: String,
}

/// Expands every `${...}` of `text` with `lookup`. Returns `Ok(None)` when `text`
/// holds nothing to expand.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ExpandError> {
    if !text.contains("${") {
        return Ok(None);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
            out.push_str("${");
            i += 3;
            continue;
        }
        if chars[i] != '$' || chars.get(i + 1) != Some(&'{') {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        let Some(close) = chars[i + 2..].iter().position(|c| *c == '}').map(|p| p + i + 2) else {
            return Err(ExpandError {
                offset: start,
                message: "unclosed `${`: write `${NAME}`, or `$${` for a literal `${`".into(),
            });
        };
        let inner: String = chars[i + 2..close].iter().collect();
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner.as_str(), None),
        };
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            // `${X-default}`, `${X:=default}`, `${X:?message}`: shell forms this does not take.
            let prefix: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let message = if !prefix.is_empty()
                && !prefix.starts_with(|c: char| c.is_ascii_digit())
                && name[prefix.len()..].starts_with(['-', ':', '=', '?', '+'])
            {
                format!(
                    "`${{{inner}}}` is not a form this takes: write `${{{prefix}}}`, or `${{{prefix}:-default}}` for a default"
                )
            } else {
                format!("`${{{name}}}` is not a variable name: use letters, digits and `_`, not starting with a digit")
            };
            return Err(ExpandError { offset: start, message });
        }
        if default.is_some_and(|d| d.contains("${")) {
            // `${A:-${B}}` would stop at the first `}` and leave a literal `${B}`.
            return Err(ExpandError {
                offset: start,
                message: format!(
                    "the default of `${{{name}:-...}}` holds another `${{`: nested variables are not expanded; give a plain default"
                ),
            });
        }
        match (lookup(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(ExpandError {
                    offset: start,
                    message: format!(
                        "environment variable `{name}` is not set (set it, or give a default: `${{{name}:-default}}`)"
                    ),
                })
            }
        }
        i = close + 1;
    }
    Ok(Some(out))
}

/// A value that came from `${VAR}`s: what the file wrote and which variables it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    /// The text as written in the file (`http://${ES_HOST}:9200`): safe to show.
    pub written: String,
    /// The variables read, in order (`ES_HOST`).
    pub names: Vec<String>,
}

/// The values that came from `${VAR}`, by JSON pointer.
pub type InterpolatedValues = HashMap<String, Interpolated>;

/// Expands the string scalars of the whole tree in place. Returns the values that
/// changed (by pointer: never to be echoed) and the errors found.
pub fn interpolate_tree(
    root: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (InterpolatedValues, Vec<YamlError>) {
    let mut interpolated = HashMap::new();
    let mut errors = Vec::new();
    let mut pointer = String::new();
    walk(root, &mut pointer, lookup, &mut interpolated, &mut errors);
    (interpolated, errors)
}

/// Walks the tree; `pointer` is the current node's, grown and shrunk in place (no
/// allocation per node: large files have hundreds of thousands of them).
fn walk(
    node: &mut Node,
    pointer: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    interpolated: &mut InterpolatedValues,
    errors: &mut Vec<YamlError>,
) {
    let position = node.position;
    match &mut node.kind {
        NodeKind::Scalar(scalar) => {
            if !matches!(scalar.value, Value::String(_)) {
                return;
            }
            let names = RefCell::new(Vec::new());
            let recording = |name: &str| {
                names.borrow_mut().push(name.to_owned());
                lookup(name)
            };
            match expand(&scalar.text, &recording) {
                Ok(None) => {}
                Ok(Some(expanded)) => {
                    let written = std::mem::take(&mut scalar.text);
                    scalar.value = if scalar.plain {
                        resolve_plain(&expanded)
                    } else {
                        Value::String(expanded.clone())
                    };
                    scalar.text = expanded;
                    interpolated.insert(
                        pointer.clone(),
                        Interpolated {
                            written,
                            names: names.take(),
                        },
                    );
                }
                Err(error) => {
                    let position = if scalar.single_line {
                        Position {
                            line: position.line,
                            column: scalar.text_column + error.offset,
                        }
                    } else {
                        position
                    };
                    errors.push(YamlError {
                        position,
                        pointer: pointer.clone(),
                        message: error.message,
                    });
                }
            }
        }
        NodeKind::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                let _ = write!(pointer, "/{i}");
                walk(item, pointer, lookup, interpolated, errors);
                pointer.truncate(len);
            }
        }
        NodeKind::Mapping(entries) => {
            for entry in entries.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                if entry.key.contains(['~', '/']) {
                    pointer.push_str(&escape_pointer(&entry.key));
                } else {
                    pointer.push_str(&entry.key);
                }
                walk(&mut entry.value, pointer, lookup, interpolated, errors);
                pointer.truncate(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("redis.local".into()),
            "PORT" => Some("6380".into()),
            "EMPTY" => Some(String::new()),
            "SECRET" => Some("12345".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(expand("${HOST}:${PORT}", &env), Ok(Some("redis.local:6380".into())));
        assert_eq!(expand("${NOPE:-fallback}", &env), Ok(Some("fallback".into())));
        assert_eq!(expand("${EMPTY:-fallback}", &env), Ok(Some("fallback".into())));
        assert_eq!(expand("${EMPTY}", &env), Ok(Some(String::new())));
        assert_eq!(expand("${HOST:-x}", &env), Ok(Some("redis.local".into())));
        assert_eq!(expand("plain text, $5", &env), Ok(None));
    }

    #[test]
    fn double_dollar_escapes_a_literal() {
        assert_eq!(expand("cost $${HOST}", &env), Ok(Some("cost ${HOST}".into())));
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let error = expand("pre ${MISSING_VAR} post", &env).unwrap_err();
        assert_eq!(error.offset, 4);
        assert!(error
            .message
            .starts_with("environment variable `MISSING_VAR` is not set"));
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("${HOST", &env).unwrap_err().message.starts_with("unclosed `${`"));
        assert!(expand("${1X}", &env)
            .unwrap_err()
            .message
            .contains("is not a variable name"));
    }

    #[test]
    fn shell_forms_and_nested_defaults_are_errors_that_say_what_to_write() {
        assert_eq!(
            expand("${NOPE-x}", &env).unwrap_err().message,
            "`${NOPE-x}` is not a form this takes: write `${NOPE}`, or `${NOPE:-default}` for a default"
        );
        assert!(expand("${HOST:?need it}", &env)
            .unwrap_err()
            .message
            .contains("write `${HOST}`, or `${HOST:-default}`"));
        // It used to give the literal text `${HOST}` (the first `}` closed the reference).
        assert_eq!(
            expand("${NOPE:-${HOST}}", &env).unwrap_err().message,
            "the default of `${NOPE:-...}` holds another `${`: nested variables are not expanded; give a plain default"
        );
    }

    #[test]
    fn tree_interpolation_resolves_plain_values_and_keeps_quoted_strings() {
        let (root, _) = parse("port: ${PORT}\npassword: \"${SECRET}\"\n${HOST}: k\nlist: [a, '$${x}']\n");
        let mut root = root.unwrap();
        let (interpolated, errors) = interpolate_tree(&mut root, &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            root.to_json(),
            json!({"port": 6380, "password": "12345", "${HOST}": "k", "list": ["a", "${x}"]})
        );
        assert_eq!(interpolated["/port"].names, vec!["PORT"]);
        assert_eq!(interpolated["/port"].written, "${PORT}");
        let mut pointers: Vec<_> = interpolated.into_keys().collect();
        pointers.sort();
        assert_eq!(pointers, vec!["/list/1", "/password", "/port"]);
    }

    #[test]
    fn tree_errors_point_at_the_reference() {
        let (root, _) = parse("a:\n  b: 'x ${NOPE}'\n");
        let mut root = root.unwrap();
        let (_, errors) = interpolate_tree(&mut root, &env);
        assert_eq!(errors[0].pointer, "/a/b");
        assert_eq!(errors[0].position, Position { line: 2, column: 9 });
    }
}
