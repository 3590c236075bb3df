//! Keeps `schemas/pipeline.schema.json` and the structs of [`super::model`] in step.
//!
//! For every object of the schema, a part of a pipeline that uses every field is
//! probed against its struct: the struct accepts each field the schema declares,
//! rejects an unknown one and names exactly the schema's fields in that error (serde
//! lists the fields it knows), needs exactly the schema's `required` fields, and
//! gives each field the schema's `default` when it is left out.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    use crate::config::model::*;
    use crate::config::schema::{check, is_secret_field, schema};

    /// A pipeline that uses every field of the schema.
    fn every_field() -> Value {
        json!({
            "name": "every-field",
            "description": "uses every field",
            "source": {
                "type": "redis", "host": "h", "port": 6380, "username": "u", "password": "p",
                "password_file": "/p", "database": [0, 1],
                "tls": {"enabled": true, "ca_file": "/ca", "cert_file": "/c", "key_file": "/k", "insecure_skip_verify": true},
                "rules": [{"database": 0, "key_pattern": "a*", "_type": "HASH"}],
                "scan_count": 10, "pages_in_flight": 2, "size_in_bytes": false, "max_value_bytes": "1MiB",
                "chunk_size": 10, "timeout": "5s"
            },
            "transforms": [
                {"type": "template", "id": "{{ key }}", "index": "i", "document": {"k": "{{ key }}"}, "fuel": 1000, "max_output_bytes": "1MiB"},
                {"type": "filter", "rules": [{"policy": "include", "field": "key", "rule": "equals", "value": "a"}]}
            ],
            "sink": {
                "type": "elasticsearch", "url": ["http://a:9200"], "index": "i", "username": "u", "password": "p",
                "password_file": "/p", "api_key": "k", "api_key_file": "/k",
                "tls": {"ca_file": "/ca", "insecure_skip_verify": true},
                "bulk": {"max_docs": 10, "max_bytes": "1MiB", "concurrency": 1},
                "retry": {"max_elapsed": "1m", "initial_backoff": "1s", "max_backoff": "2s"},
                "delete_stale": {"enabled": true, "max_fraction": 0.25},
                "refresh": false, "settings": {}, "mappings": {}, "dead_letter": "/d", "timeout": "1s",
                "keep_previous": 2
            },
            "dead_letter": "/dl",
            "live": {
                "enabled": true, "max_pending_keys": 10, "configure_server": true,
                "check_notifications": false, "reconcile_every": "1m", "drain_timeout": "5s"
            },
            "schedule": {"every": "15m", "cron": "0 * * * *", "timezone": "Europe/Paris", "at_start": false}
        })
    }

    type Probe = fn(Value) -> Result<String, String>;

    fn probe<T: DeserializeOwned + std::fmt::Debug>(value: Value) -> Result<String, String> {
        serde_json::from_value::<T>(value)
            .map(|t| format!("{t:?}"))
            .map_err(|e| e.to_string())
    }

    /// (schema object, part of `every_field()` or a literal, struct, whether `type` is
    /// the enum's tag rather than a field of the struct).
    fn objects() -> Vec<(&'static str, Value, Probe, bool)> {
        let every = every_field();
        let at = |pointer: &str| every.pointer(pointer).unwrap().clone();
        vec![
            ("", every.clone(), probe::<Pipeline>, false),
            ("/$defs/redis_source", at("/source"), probe::<RedisSourceConfig>, true),
            ("/$defs/redis_tls", at("/source/tls"), probe::<RedisTlsConfig>, false),
            ("/$defs/sync_rule", at("/source/rules/0"), probe::<SyncRule>, false),
            (
                "/$defs/template_transform",
                at("/transforms/0"),
                probe::<TemplateConfig>,
                true,
            ),
            (
                "/$defs/filter_transform",
                at("/transforms/1"),
                probe::<FilterConfig>,
                true,
            ),
            (
                "/$defs/filter_rule",
                at("/transforms/1/rules/0"),
                probe::<FilterRule>,
                false,
            ),
            (
                "/$defs/elasticsearch_sink",
                at("/sink"),
                probe::<ElasticsearchSinkConfig>,
                true,
            ),
            (
                "/$defs/ndjson_sink",
                json!({"type": "ndjson", "path": "-"}),
                probe::<NdjsonSinkConfig>,
                true,
            ),
            ("/$defs/es_tls", at("/sink/tls"), probe::<EsTlsConfig>, false),
            ("/$defs/bulk", at("/sink/bulk"), probe::<BulkConfig>, false),
            ("/$defs/retry", at("/sink/retry"), probe::<RetryConfig>, false),
            (
                "/$defs/delete_stale",
                at("/sink/delete_stale"),
                probe::<DeleteStale>,
                false,
            ),
            ("/$defs/live", at("/live"), probe::<LiveConfig>, false),
            ("/$defs/schedule", at("/schedule"), probe::<ScheduleConfig>, false),
        ]
    }

    fn without(value: &Value, field: &str) -> Value {
        let mut value = value.clone();
        value.as_object_mut().unwrap().remove(field);
        value
    }

    fn with(value: &Value, field: &str, v: Value) -> Value {
        let mut value = value.clone();
        value.as_object_mut().unwrap().insert(field.to_owned(), v);
        value
    }

    /// The field names serde lists in its "unknown field" error, if it lists them
    /// (`expected `a``, `expected `a` or `b``, `expected one of `a`, `b`, `c``).
    fn serde_fields(error: &str) -> Option<BTreeSet<String>> {
        let list = error
            .split_once(", expected one of ")
            .or_else(|| error.split_once(", expected "))?
            .1;
        Some(
            list.split(", ")
                .flat_map(|part| part.split(" or "))
                .map(|f| f.trim().trim_matches('`').to_owned())
                .collect(),
        )
    }

    #[test]
    fn the_every_field_pipeline_passes_the_schema_and_the_structs() {
        let every = every_field();
        assert_eq!(check(&every, &is_secret_field, &|_| false), vec![]);
        probe::<Pipeline>(every).unwrap();
    }

    #[test]
    fn schema_and_structs_agree() {
        for (name, instance, probe, tagged) in objects() {
            let node = schema().pointer(name).unwrap_or_else(|| panic!("schema has no {name}"));
            let properties: BTreeSet<String> = node["properties"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !(tagged && *k == "type"))
                .cloned()
                .collect();
            let required: BTreeSet<String> = node
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            let instance = if tagged { without(&instance, "type") } else { instance };

            // The example uses every field (`type` of a rule is `_type`'s other spelling).
            for field in &properties {
                assert!(
                    instance.get(field).is_some()
                        || (name == "/$defs/sync_rule" && field == "type")
                        // `alias` replaces `index` (the schema refuses both).
                        || (name == "/$defs/elasticsearch_sink" && field == "alias"),
                    "{name}: the example lacks `{field}`"
                );
            }
            probe(instance.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));

            // Unknown fields are rejected, and serde knows exactly the schema's fields.
            let error = probe(with(&instance, "zz_unknown", json!(1))).expect_err(name);
            if let Some(fields) = serde_fields(&error) {
                assert_eq!(
                    fields, properties,
                    "{name}: struct fields differ from the schema's properties"
                );
            } else {
                // The `true|{...}` forms go through an untagged enum, which names no field.
                assert!(
                    name == "/$defs/delete_stale" || name == "/$defs/live",
                    "{name}: serde did not list its fields: {error}"
                );
            }

            // Required in the schema <=> required by the struct.
            for field in &properties {
                if field == "type" && name == "/$defs/sync_rule" {
                    continue;
                }
                let result = probe(without(&instance, field));
                assert_eq!(
                    result.is_err(),
                    required.contains(field),
                    "{name}: `{field}` is {} in the schema but the struct {}",
                    if required.contains(field) {
                        "required"
                    } else {
                        "optional"
                    },
                    if result.is_err() { "needs it" } else { "does not" }
                );
            }

            // Each schema default is the struct's default.
            for (field, spec) in node["properties"].as_object().unwrap() {
                let Some(default) = spec.get("default") else {
                    continue;
                };
                if tagged && field == "type" {
                    continue;
                }
                let left_out = probe(without(&instance, field));
                let given = probe(with(&instance, field, default.clone()));
                assert_eq!(
                    left_out, given,
                    "{name}: the schema's default of `{field}` is not the struct's"
                );
            }
        }
    }

    #[test]
    fn the_alias_type_of_a_rule_is_accepted_by_both() {
        let rule = json!({"database": 0, "type": "set"});
        probe::<SyncRule>(rule.clone()).unwrap();
        let mut p = every_field();
        p["source"]["rules"] = json!([rule]);
        assert_eq!(check(&p, &is_secret_field, &|_| false), vec![]);
    }

    #[test]
    fn every_schema_property_has_a_description() {
        fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
            if let Some(properties) = node.get("properties").and_then(Value::as_object) {
                for (name, spec) in properties {
                    if spec
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        missing.push(format!("{path}/properties/{name}"));
                    }
                }
            }
            match node {
                Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, &format!("{path}/{k}"), missing)),
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| walk(v, &format!("{path}/{i}"), missing)),
                _ => {}
            }
        }
        let mut missing = Vec::new();
        walk(schema(), "", &mut missing);
        // `if` clauses only test a `type`; they document nothing.
        missing.retain(|p| !p.contains("/if/"));
        assert_eq!(missing, Vec::<String>::new());
    }

    #[test]
    fn every_object_forbids_unknown_fields() {
        fn walk(node: &Value, path: &str, open: &mut Vec<String>) {
            if let Some(map) = node.as_object() {
                let is_object = map
                    .get("type")
                    .is_some_and(|t| t == "object" || t.as_array().is_some_and(|a| a.contains(&json!("object"))));
                let dispatch = map.contains_key("allOf") && map.get("required").is_some_and(|r| r == &json!(["type"]));
                if is_object
                    && map.contains_key("properties")
                    && !dispatch
                    && !path.ends_with("/if")
                    && map.get("additionalProperties") != Some(&json!(false))
                {
                    open.push(path.to_owned());
                }
                map.iter().for_each(|(k, v)| walk(v, &format!("{path}/{k}"), open));
            } else if let Some(items) = node.as_array() {
                items
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| walk(v, &format!("{path}/{i}"), open));
            }
        }
        let mut open = Vec::new();
        walk(schema(), "", &mut open);
        assert_eq!(open, Vec::<String>::new());
    }
}
