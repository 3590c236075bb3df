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
    if let Some(expanded) = expanded.filter(|e| e.chars().count() >= redact::MIN_SECRET_LEN) {
        shown = shown.replace(&expanded, &found.written);
    }
    shown = shown.replace("`\"${...}\"`", &format!("`\"{}\"`", found.written));
    shown = shown.replace("`${...}`", &format!("`{}`", found.written));
    if !shown.contains(&found.written) {
        shown.push_str(&format!(" (the value of `{}`)", found.written));
    }
    shown
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
