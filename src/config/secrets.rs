//! Finding the secrets of a loaded pipeline file, for [`crate::redact`], and keeping
//! values that came from `${VAR}` out of `validate`'s messages.

use serde_json::Value;

use super::interpolate::InterpolatedValues;
use crate::redact;

/// Fields whose string values are registered as secrets wherever they are.
const SECRET_VALUE_FIELDS: [&str; 2] = ["password", "api_key"];

/// Registers every secret of a file's (interpolated) `value`: `password` and
/// `api_key` values, the password of any `user:password@` in any string, and the
/// whole value of a `${VAR}` whose name looks secret.
pub fn register(value: &Value, interpolated: &InterpolatedValues) {
    walk(value, None);
    for (pointer, found) in interpolated {
        if !found.names.iter().any(|name| redact::is_secret_name(name)) {
            continue;
        }
        match value.pointer(pointer) {
            Some(Value::String(text)) => redact::register(text),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => redact::register(&other.to_string()),
            _ => {}
        }
    }
}

fn walk(value: &Value, key: Option<&str>) {
    match value {
        Value::String(text) => {
            if key.is_some_and(|k| SECRET_VALUE_FIELDS.contains(&k)) {
                redact::register(text);
            }
            redact::register_userinfo(text);
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, key)),
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, Some(k))),
        _ => {}
    }
}

/// `message`, about the field at `pointer`, with the value that came from `${VAR}`
/// there shown as written in the file (`${ES_URL}`) instead, and the variable named
/// when the message does not name it already.
pub fn hide_interpolated(message: &str, pointer: &str, value: &Value, interpolated: &InterpolatedValues) -> String {
    let Some(found) = interpolated.get(pointer) else {
        return message.to_owned();
    };
    let mut shown = message.to_owned();
    let expanded = match value.pointer(pointer) {
        Some(Value::String(text)) => Some(text.clone()),
        Some(other @ (Value::Number(_) | Value::Bool(_))) => Some(other.to_string()),
        _ => None,
    };
    // Short values (`1`, `on`) would match unrelated text; the schema's messages
    // never quote a value from `${VAR}` anyway.
    if let Some(expanded) = expanded
        .as_ref()
        .filter(|e| e.chars().count() >= redact::MIN_SECRET_LEN)
    {
        shown = shown.replace(expanded.as_str(), &found.written);
    }
    if let Some(expanded) = &expanded {
        shown = hide_derived_spans(&shown, expanded, &found.written);
    }
    shown = shown.replace("`\"${...}\"`", &format!("`\"{}\"`", found.written));
    shown = shown.replace("`${...}`", &format!("`{}`", found.written));
    if !shown.contains(&found.written) {
        shown.push_str(&format!(" (the value of `{}`)", found.written));
    }
    shown
}

/// Fields whose value may hold a URL's `user:password@`.
const URL_FIELDS: [&str; 2] = ["url", "host"];

/// A secret written in the file itself: where, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralSecret {
    pub pointer: String,
    pub message: String,
}

/// Every secret written literally in a file's `value` (not from `${VAR}`): a
/// non-empty `password` or `api_key`, and the password of a `user:password@` in a
/// `url` or `host`, in the `source` and the `sink` (a transform's `password` field
/// is a document's, not a credential). Anyone who reads the file, or its git
/// history, has them.
pub fn literal_secrets(value: &Value, interpolated: &InterpolatedValues) -> Vec<LiteralSecret> {
    let mut found = Vec::new();
    for section in ["source", "sink"] {
        if let Some(part) = value.get(section) {
            let mut pointer = format!("/{section}");
            find_literal(part, None, &mut pointer, interpolated, &mut found);
        }
    }
    found
}

fn find_literal(
    value: &Value,
    key: Option<&str>,
    pointer: &mut String,
    interpolated: &InterpolatedValues,
    found: &mut Vec<LiteralSecret>,
) {
    match value {
        Value::String(text) if !interpolated.contains_key(pointer.as_str()) => {
            let message = match key {
                Some("password") if !text.is_empty() => Some(
                    "a password written in the pipeline file: anyone who reads the file or its git history \
                     has it; write `password: \"${REDIS_PASSWORD}\"` (any variable name) or use `password_file`",
                ),
                Some("api_key") if !text.is_empty() => Some(
                    "an API key written in the pipeline file: anyone who reads the file or its git history \
                     has it; write `api_key: \"${ES_API_KEY}\"` (any variable name) or use `api_key_file`",
                ),
                Some(k) if URL_FIELDS.contains(&k) && redact::userinfo_password(text).is_some() => Some(
                    "a password written in a URL (`user:password@`) in the pipeline file: give the user in \
                     `username` and the password as `password: \"${ES_PASSWORD}\"` (any variable name) or \
                     `password_file`, or take the whole URL from `${VAR}`",
                ),
                _ => None,
            };
            if let Some(message) = message {
                found.push(LiteralSecret {
                    pointer: pointer.clone(),
                    message: message.to_owned(),
                });
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                find_literal(item, key, pointer, interpolated, found);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                find_literal(item, Some(k), pointer, interpolated, found);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Pieces of a quoted span shorter than this are not taken for part of a value
/// (`http`, `9200` are words a message names on its own).
const DERIVED_PIECE_LEN: usize = 6;

/// `message` with every backquoted span that quotes part of `expanded` (the value
/// from `${VAR}`), even masked (`http://…@h:9200x`, `u:***@h`), replaced by `written`
/// (the text in the file): such a span would show what the variable holds.
fn hide_derived_spans(message: &str, expanded: &str, written: &str) -> String {
    let parts: Vec<&str> = message.split('`').collect();
    if parts.len() < 3 {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are inside backquotes (when the quote is closed).
        let quoted = i % 2 == 1 && i + 1 < parts.len();
        let derived = quoted
            && *part != written
            && part
                .split(['…', '*'])
                .filter(|piece| piece.chars().count() >= DERIVED_PIECE_LEN)
                .any(|piece| expanded.contains(piece) && !written.contains(piece));
        out.push_str(if derived { written } else { part });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::interpolate::Interpolated;
    use serde_json::json;

    fn from(written: &str, names: &[&str]) -> Interpolated {
        Interpolated {
            written: written.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn an_interpolated_value_is_shown_as_written() {
        let value = json!({"sink": {"url": "elastic:pw-secret-1@h:9200"}});
        let interpolated = InterpolatedValues::from([("/sink/url".to_owned(), from("${ES_URL}", &["ES_URL"]))]);
        assert_eq!(
            hide_interpolated(
                "`elastic:pw-secret-1@h:9200`: the scheme must be http or https",
                "/sink/url",
                &value,
                &interpolated
            ),
            "`${ES_URL}`: the scheme must be http or https"
        );
        assert_eq!(
            hide_interpolated("expected an integer, got a string", "/sink/url", &value, &interpolated),
            "expected an integer, got a string (the value of `${ES_URL}`)"
        );
    }

    #[test]
    fn a_masked_or_trimmed_quote_of_an_interpolated_value_is_not_shown() {
        let value = json!({"sink": {"url": "http://elastic:pw-secret-1@127.0.0.1:19200x"}});
        let interpolated = InterpolatedValues::from([("/sink/url".to_owned(), from("${ES_URL}", &["ES_URL"]))]);
        assert_eq!(
            hide_interpolated(
                "`http://…@127.0.0.1:19200x` is not a URL: invalid port number",
                "/sink/url",
                &value,
                &interpolated
            ),
            "`${ES_URL}` is not a URL: invalid port number"
        );
        // Words the message names on its own stay.
        assert_eq!(
            hide_interpolated(
                "the scheme must be `http` or `https`",
                "/sink/url",
                &value,
                &interpolated
            ),
            "the scheme must be `http` or `https` (the value of `${ES_URL}`)"
        );
    }

    #[test]
    fn literal_passwords_keys_and_url_userinfo_are_found_but_not_those_from_variables() {
        let value = json!({
            "source": {"password": "hunter2hunter2", "host": "h"},
            "sink": {
                "url": ["http://elastic:Secret@es:9200", "http://es2:9200"],
                "api_key": "from-var",
                "password": ""
            },
            "transforms": [{"document": {"password": "{{ value.password }}"}}]
        });
        let interpolated = InterpolatedValues::from([("/sink/api_key".to_owned(), from("${K}", &["K"]))]);
        let pointers: Vec<String> = literal_secrets(&value, &interpolated)
            .into_iter()
            .map(|s| s.pointer)
            .collect();
        assert_eq!(pointers, vec!["/source/password", "/sink/url/0"]);
    }

    #[test]
    fn secrets_are_registered_by_field_userinfo_and_variable_name() {
        let value = json!({
            "source": {"password": "field-secret-1", "host": "h"},
            "sink": {"url": ["http://u:userinfo-secret-1@h"], "index": "var-secret-1"}
        });
        let interpolated = InterpolatedValues::from([("/sink/index".to_owned(), from("${MY_TOKEN}", &["MY_TOKEN"]))]);
        register(&value, &interpolated);
        assert_eq!(
            redact::text("field-secret-1 userinfo-secret-1 var-secret-1 h"),
            "*** *** *** h"
        );
    }
}
