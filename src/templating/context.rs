//! A record as templates and filters see it: the names it offers (one list) and its
//! context, as JSON (dead-letter entries) and as minijinja values (rendering).

use minijinja::Value;
use serde_json::{Map, Value as Json};

use crate::record::{bytes_to_json, bytes_to_map_key, Record, RedisValue};

/// Every name a record offers, in the order error messages list them: the record's
/// own fields, then `pipeline` (every template), then `timestamp` (the template
/// transform's templates only).
const NAMES: [&str; 8] = [
    "key",
    "database",
    "key_type",
    "value",
    "size_in_bytes",
    "ttl",
    "pipeline",
    "timestamp",
];

/// The record's own fields (see [`record_json`]): what a filter finds whatever a
/// template rendered.
pub const RECORD_FIELDS: &[&str] = NAMES.split_at(6).0;

/// The names the sink's `index` template sees: the record and `pipeline`.
pub const INDEX_TEMPLATE_NAMES: &[&str] = NAMES.split_at(7).0;

/// The names a record's templates see (see [`record_context`]): the index
/// template's, and `timestamp`.
pub const RECORD_NAMES: &[&str] = &NAMES;

/// The record as the JSON object templates and filters see:
/// `key`, `database`, `key_type`, `value` (typed), `size_in_bytes`, `ttl`.
pub fn record_json(record: &Record) -> Map<String, Json> {
    let mut map = Map::new();
    map.insert("key".into(), Json::String(record.key_text().0));
    map.insert("database".into(), Json::from(record.database));
    map.insert("key_type".into(), Json::String(record.key_type.redis_name().into()));
    map.insert("value".into(), record.value.to_json());
    map.insert(
        "size_in_bytes".into(),
        record.size_in_bytes.map(Json::from).unwrap_or(Json::Null),
    );
    map.insert("ttl".into(), record.ttl.map(Json::from).unwrap_or(Json::Null));
    map
}

/// The value templates see for one record, built once per record: the same shape as
/// [`record_json`] plus `pipeline` and, for the template transform, `timestamp`
/// (the sink's `index` template has no `timestamp`). Built directly as minijinja
/// values (not through `serde_json`), which halves the allocations per record.
pub fn record_context(record: &Record, pipeline: &str, timestamp: Option<&str>) -> Value {
    let optional = |n: Option<Value>| n.unwrap_or(Value::from(()));
    let fields = [
        ("key", Value::from(record.key_text().0)),
        ("database", Value::from(record.database)),
        ("key_type", Value::from(record.key_type.redis_name())),
        ("value", redis_value(&record.value)),
        ("size_in_bytes", optional(record.size_in_bytes.map(Value::from))),
        ("ttl", optional(record.ttl.map(Value::from))),
        ("pipeline", Value::from(pipeline)),
    ];
    match timestamp {
        Some(timestamp) => Value::from_iter(fields.into_iter().chain([("timestamp", Value::from(timestamp))])),
        None => Value::from_iter(fields),
    }
}

/// A typed Redis value as minijinja sees it; mirrors [`RedisValue::to_json`].
fn redis_value(value: &RedisValue) -> Value {
    match value {
        RedisValue::String(bytes) => bytes_value(bytes),
        RedisValue::Hash(pairs) => pairs_value(
            pairs,
            pairs.iter().any(|(field, _)| std::str::from_utf8(field).is_err()),
        ),
        RedisValue::List(items) | RedisValue::Set(items) => items.iter().map(|item| bytes_value(item)).collect(),
        RedisValue::ZSet(members) => members
            .iter()
            .map(|(member, score)| {
                let score = if score.is_finite() {
                    Value::from(*score)
                } else {
                    Value::from(if *score > 0.0 { "inf" } else { "-inf" })
                };
                Value::from_iter([("member", bytes_value(member)), ("score", score)])
            })
            .collect(),
        RedisValue::Stream(entries) => entries
            .iter()
            .map(|entry| {
                Value::from_iter([
                    ("id", Value::from(entry.id.as_str())),
                    ("fields", pairs_value(&entry.fields, true)),
                ])
            })
            .collect(),
        RedisValue::Json(json) => Value::from_serialize(json),
    }
}

/// Bytes as [`bytes_to_json`] gives them: a string, or `{"$base64": ...}`.
fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::from_serialize(bytes_to_json(bytes)),
    }
}

/// Mirrors `RedisValue::to_json` for field/value pairs: a repeated name keeps every
/// value, as a list in order. `names_may_repeat` is false for a hash whose field names
/// are all text (Redis keeps them unique), which skips the grouping.
fn pairs_value(pairs: &[(Vec<u8>, Vec<u8>)], names_may_repeat: bool) -> Value {
    let named = pairs
        .iter()
        .map(|(field, value)| (bytes_to_map_key(field), bytes_value(value)));
    if !names_may_repeat {
        return named.collect();
    }
    let mut fields: Vec<(String, Vec<Value>)> = Vec::with_capacity(pairs.len());
    let mut positions: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (name, value) in named {
        match positions.get(&name) {
            Some(&at) => fields[at].1.push(value),
            None => {
                positions.insert(name.clone(), fields.len());
                fields.push((name, vec![value]));
            }
        }
    }
    fields
        .into_iter()
        .map(|(name, mut values)| {
            let value = if values.len() == 1 {
                values.pop().unwrap_or_default()
            } else {
                Value::from(values)
            };
            (name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_names_lists_are_one_list() {
        assert_eq!(
            RECORD_FIELDS,
            ["key", "database", "key_type", "value", "size_in_bytes", "ttl"]
        );
        assert_eq!(INDEX_TEMPLATE_NAMES, [RECORD_FIELDS, &["pipeline"]].concat());
        assert_eq!(RECORD_NAMES, [INDEX_TEMPLATE_NAMES, &["timestamp"]].concat());
    }
}
