//! Offline checks of an Elasticsearch sink's own `mappings` and `settings`: the
//! mistakes that are certain without asking a server (a field type that does not
//! exist, a field written where only mapping parameters go, a shard count of 0).
//! Elasticsearch itself still has the last word when the index is created.

use serde_json::Value;

use crate::config::model::SinkConfig;
use crate::config::suggest::did_you_mean;
use crate::config::yaml::escape_pointer;
use crate::config::FieldError;

/// Field types of Elasticsearch 9 (with those of its official plugins:
/// `murmur3`, `annotated_text`, `icu_collation_keyword`).
const FIELD_TYPES: &[&str] = &[
    "aggregate_metric_double",
    "alias",
    "annotated_text",
    "binary",
    "boolean",
    "byte",
    "completion",
    "constant_keyword",
    "counted_keyword",
    "date",
    "date_nanos",
    "date_range",
    "dense_vector",
    "double",
    "double_range",
    "flattened",
    "float",
    "float_range",
    "geo_point",
    "geo_shape",
    "half_float",
    "histogram",
    "icu_collation_keyword",
    "integer",
    "integer_range",
    "ip",
    "ip_range",
    "join",
    "keyword",
    "long",
    "long_range",
    "match_only_text",
    "murmur3",
    "nested",
    "object",
    "passthrough",
    "percolator",
    "point",
    "rank_feature",
    "rank_features",
    "scaled_float",
    "search_as_you_type",
    "semantic_text",
    "shape",
    "short",
    "sparse_vector",
    "text",
    "token_count",
    "unsigned_long",
    "version",
    "wildcard",
];

/// What may stand at the top of `mappings` (besides `properties`).
const ROOT_PARAMETERS: &[&str] = &[
    "_data_stream_timestamp",
    "_field_names",
    "_meta",
    "_routing",
    "_source",
    "date_detection",
    "dynamic",
    "dynamic_date_formats",
    "dynamic_templates",
    "enabled",
    "numeric_detection",
    "properties",
    "runtime",
    "subobjects",
];

/// Checks the `mappings` and `settings` of an Elasticsearch sink; other sinks have
/// none. Pointers are relative to the sink.
pub fn check_sink(sink: &SinkConfig) -> Vec<FieldError> {
    let SinkConfig::Elasticsearch(es) = sink else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    if let Some(Value::Object(mappings)) = &es.mappings {
        for (key, value) in mappings {
            let pointer = format!("/mappings/{}", escape_pointer(key));
            if key == "properties" {
                check_properties(value, &pointer, &mut errors);
            } else if key == "dynamic" {
                check_dynamic(value, &pointer, &mut errors);
            } else if !ROOT_PARAMETERS.contains(&key.as_str()) {
                let message = if value.get("type").is_some() || value.get("properties").is_some() {
                    format!(
                        "`{key}` looks like a field: fields go under `mappings.properties` (`properties: {{ {key}: ... }}`)"
                    )
                } else {
                    match did_you_mean(key, ROOT_PARAMETERS.iter().copied()) {
                        Some(s) => format!("unknown mapping parameter `{key}`, did you mean `{s}`?"),
                        None => format!(
                            "unknown mapping parameter `{key}`: fields go under `properties`; the others are {}",
                            ROOT_PARAMETERS.join(", ")
                        ),
                    }
                };
                errors.push(FieldError::new(pointer, message));
            }
        }
    }
    if let Some(settings) = &es.settings {
        check_settings(settings, "/settings", &mut errors);
    }
    errors
}

/// Checks every field of a `properties` object, and the fields nested in it.
fn check_properties(properties: &Value, pointer: &str, errors: &mut Vec<FieldError>) {
    let Value::Object(fields) = properties else {
        errors.push(FieldError::new(
            pointer,
            "`properties` must be a mapping of field names to their definitions",
        ));
        return;
    };
    for (name, definition) in fields {
        let here = format!("{pointer}/{}", escape_pointer(name));
        let Value::Object(parameters) = definition else {
            errors.push(FieldError::new(
                here,
                format!("the definition of field `{name}` must be a mapping such as `{{ type: keyword }}`"),
            ));
            continue;
        };
        match parameters.get("type") {
            Some(Value::String(kind)) if !FIELD_TYPES.contains(&kind.as_str()) => {
                let message = match did_you_mean(kind, FIELD_TYPES.iter().copied()) {
                    _ if did_you_mean(kind, ["string"]).is_some() => format!(
                        "unknown field type `{kind}`: for text write `text` (searched word by word) or `keyword` (exact values); `string` is gone since Elasticsearch 5"
                    ),
                    Some(s) => format!("unknown field type `{kind}`, did you mean `{s}`?"),
                    None => format!(
                        "unknown field type `{kind}`: Elasticsearch's types include text, keyword, long, integer, double, boolean, date, object, nested, ip, geo_point (see its \"Field data types\" page)"
                    ),
                };
                errors.push(FieldError::new(format!("{here}/type"), message));
            }
            Some(Value::String(_)) | None => {}
            Some(_) => errors.push(FieldError::new(
                format!("{here}/type"),
                "a field type is a name such as `keyword`",
            )),
        }
        if let Some(nested) = parameters.get("properties") {
            check_properties(nested, &format!("{here}/properties"), errors);
        }
        if let Some(multi) = parameters.get("fields") {
            check_properties(multi, &format!("{here}/fields"), errors);
        }
        if let Some(dynamic) = parameters.get("dynamic") {
            check_dynamic(dynamic, &format!("{here}/dynamic"), errors);
        }
    }
}

fn check_dynamic(value: &Value, pointer: &str, errors: &mut Vec<FieldError>) {
    let valid = match value {
        Value::Bool(_) => true,
        Value::String(s) => matches!(s.as_str(), "true" | "false" | "strict" | "runtime"),
        _ => false,
    };
    if !valid {
        errors.push(FieldError::new(
            pointer,
            "`dynamic` must be true, false, `strict` or `runtime`",
        ));
    }
}

/// Shard and replica counts, in any of the forms settings take (`number_of_shards`,
/// `index.number_of_shards`, `index: { number_of_shards }`).
fn check_settings(settings: &Value, pointer: &str, errors: &mut Vec<FieldError>) {
    let Value::Object(map) = settings else {
        return;
    };
    for (key, value) in map {
        let here = format!("{pointer}/{}", escape_pointer(key));
        let name = key.strip_prefix("index.").unwrap_or(key);
        let least = match name {
            "number_of_shards" => 1,
            "number_of_replicas" => 0,
            "index" => {
                check_settings(value, &here, errors);
                continue;
            }
            _ => continue,
        };
        let number = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if n >= least => {}
            _ => errors.push(FieldError::new(
                here,
                format!("`{name}` must be a whole number >= {least}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mappings: Value, settings: Value) -> Vec<(String, String)> {
        let sink: SinkConfig = serde_json::from_value(serde_json::json!({
            "type": "elasticsearch", "url": "http://h:9200", "index": "i",
            "mappings": mappings, "settings": settings,
        }))
        .unwrap();
        check_sink(&sink).into_iter().map(|e| (e.pointer, e.message)).collect()
    }

    #[test]
    fn an_unknown_field_type_is_an_error_with_a_suggestion() {
        let found = check(
            serde_json::json!({"properties": {"name": {"type": "strng"}, "age": {"type": "integer"},
                "address": {"properties": {"city": {"type": "keywrd"}}},
                "title": {"type": "text", "fields": {"raw": {"type": "nope"}}}}}),
            serde_json::json!({}),
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "/mappings/properties/name/type");
        assert!(
            found[0]
                .1
                .starts_with("unknown field type `strng`: for text write `text`"),
            "{found:?}"
        );
        assert_eq!(found[1].1, "unknown field type `keywrd`, did you mean `keyword`?");
    }

    #[test]
    fn a_field_at_the_root_of_mappings_is_an_error() {
        let found = check(serde_json::json!({"name": {"type": "text"}}), serde_json::json!({}));
        assert_eq!(found[0].0, "/mappings/name");
        assert!(
            found[0].1.contains("fields go under `mappings.properties`"),
            "{found:?}"
        );
    }

    #[test]
    fn zero_shards_is_an_error_in_every_form() {
        for settings in [
            serde_json::json!({"number_of_shards": 0}),
            serde_json::json!({"index.number_of_shards": "0"}),
            serde_json::json!({"index": {"number_of_shards": 0}}),
        ] {
            let found = check(serde_json::json!({}), settings.clone());
            assert_eq!(found.len(), 1, "{settings}");
            assert!(found[0].1.contains("whole number >= 1"));
        }
        assert!(check(serde_json::json!({}), serde_json::json!({"number_of_replicas": 0})).is_empty());
    }
}
