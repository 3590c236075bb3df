//! Dry-run check of documents against an existing index's mapping: a field mapped as a
//! number receiving text, an object field receiving a scalar (or the reverse), a new
//! field in a `dynamic: strict` mapping. It names what a real run would see rejected,
//! without writing anything. Pure: no I/O.

use serde_json::{Map, Value};

const NUMERIC: &[&str] = &[
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
];

/// Problems `doc` would meet against `mappings` (an index's `mappings` object), each as
/// `field `path`: what`.
pub fn check_document(mappings: &Value, doc: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    check_object(mappings, doc, "", &mut problems);
    problems
}

fn check_object(mapping: &Value, doc: &Map<String, Value>, prefix: &str, problems: &mut Vec<String>) {
    let strict = mapping["dynamic"].as_str() == Some("strict");
    for (field, value) in doc {
        let path = if prefix.is_empty() {
            field.clone()
        } else {
            format!("{prefix}.{field}")
        };
        match mapping["properties"].get(field) {
            Some(property) => check_value(property, value, &path, problems),
            None if strict => problems.push(format!("field `{path}`: not in the mapping, which is dynamic: strict")),
            None => {}
        }
    }
}

fn check_value(property: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if let Value::Array(items) = value {
        for item in items {
            check_value(property, item, path, problems);
        }
        return;
    }
    if value.is_null() {
        return;
    }
    let ty = property["type"]
        .as_str()
        .unwrap_or(if property.get("properties").is_some() {
            "object"
        } else {
            ""
        });
    let shown = preview(value);
    match ty {
        "object" | "nested" => match value {
            Value::Object(map) => check_object(property, map, path, problems),
            _ => problems.push(format!("field `{path}`: mapped as {ty}, got the scalar {shown}")),
        },
        _ if value.is_object() && ty != "flattened" && !ty.is_empty() => {
            problems.push(format!("field `{path}`: mapped as {ty}, got an object"))
        }
        t if NUMERIC.contains(&t) => {
            let ok = match value {
                Value::Number(_) => true,
                Value::String(s) => s.trim().parse::<f64>().is_ok(),
                _ => false,
            };
            if !ok {
                problems.push(format!(
                    "field `{path}`: mapped as {t}, got {shown}, which is not a number"
                ));
            }
        }
        "boolean" => {
            let ok = matches!(value, Value::Bool(_))
                || matches!(value, Value::String(s) if s == "true" || s == "false" || s.is_empty());
            if !ok {
                problems.push(format!("field `{path}`: mapped as boolean, got {shown}"));
            }
        }
        _ => {}
    }
}

fn preview(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_number_field_receiving_text_or_an_object_is_reported() {
        let mappings = json!({"properties": {"age": {"type": "long"}, "name": {"type": "keyword"}}});
        assert!(check_document(&mappings, &doc(json!({"age": 3, "name": "a"}))).is_empty());
        assert!(
            check_document(&mappings, &doc(json!({"age": "42"}))).is_empty(),
            "numeric strings are coerced"
        );
        let problems = check_document(&mappings, &doc(json!({"age": "old", "name": {"first": "a"}})));
        assert_eq!(
            problems,
            vec![
                "field `age`: mapped as long, got \"old\", which is not a number".to_owned(),
                "field `name`: mapped as keyword, got an object".to_owned(),
            ]
        );
    }

    #[test]
    fn an_object_field_receiving_a_scalar_is_reported_and_objects_are_walked() {
        let mappings = json!({"properties": {"address": {"properties": {"zip": {"type": "integer"}}}}});
        assert_eq!(
            check_document(&mappings, &doc(json!({"address": "Main St"}))),
            vec!["field `address`: mapped as object, got the scalar \"Main St\"".to_owned()]
        );
        assert_eq!(
            check_document(&mappings, &doc(json!({"address": {"zip": "x"}}))),
            vec!["field `address.zip`: mapped as integer, got \"x\", which is not a number".to_owned()]
        );
    }

    #[test]
    fn strict_mappings_reject_new_fields() {
        let mappings = json!({"dynamic": "strict", "properties": {"a": {"type": "keyword"}}});
        assert_eq!(
            check_document(&mappings, &doc(json!({"b": 1}))),
            vec!["field `b`: not in the mapping, which is dynamic: strict".to_owned()]
        );
    }
}
