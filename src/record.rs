//! The [`Record`] that flows between stages: one Redis key, its typed value, and
//! (once a transform has rendered it) the document that will be written.

use base64::Engine as _;
use serde_json::map::Entry;
use serde_json::{json, Map, Value};

use crate::document::Document;

/// What flows through the channels between stages: a SCAN page in, a bulk request out.
pub type Batch = Vec<Record>;

/// One Redis key as read by the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The database index the key lives in.
    pub database: u32,
    /// The key, binary-safe (text when it is UTF-8).
    pub key: Vec<u8>,
    /// The key's Redis type.
    pub key_type: KeyType,
    /// The typed value.
    pub value: RedisValue,
    /// `MEMORY USAGE` of the key, when asked for.
    pub size_in_bytes: Option<u64>,
    /// Remaining time to live in seconds; `None` when the key does not expire.
    pub ttl: Option<i64>,
    /// The document rendered by a transform; `None` means "use the default document".
    pub document: Option<Document>,
    /// What the sink does with the record's document: write it, or delete it.
    pub operation: Operation,
}

/// What a record asks of the sink.
///
/// A one-shot run reads keys that exist, so its records are all upserts. Live mode
/// also sends deletes: a key that is gone (only `database` and `key` are then
/// meaningful; `key_type` and `value` are placeholders, see [`Record::gone`]), or a
/// record a filter now excludes (read whole: a later template can still render its id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    /// Write the document (a bulk `index` action).
    #[default]
    Upsert,
    /// Remove the document (a bulk `delete` action; one already gone is no error).
    Delete,
    /// Remove the document of a key that no longer exists: its value is not known.
    DeleteGone,
}

impl Operation {
    /// Whether the sink removes the document.
    pub fn is_delete(self) -> bool {
        matches!(self, Operation::Delete | Operation::DeleteGone)
    }
}

/// The Redis types the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    String,
    Hash,
    List,
    Set,
    ZSet,
    Stream,
    /// RedisJSON (`ReJSON-RL`).
    Json,
}

impl KeyType {
    /// All types, in a stable order.
    pub const ALL: [KeyType; 7] = [
        KeyType::String,
        KeyType::Hash,
        KeyType::List,
        KeyType::Set,
        KeyType::ZSet,
        KeyType::Stream,
        KeyType::Json,
    ];

    /// Redis's own name of the type, as `TYPE` answers it and `SCAN ... TYPE` takes it.
    pub fn redis_name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::List => "list",
            KeyType::Set => "set",
            KeyType::ZSet => "zset",
            KeyType::Stream => "stream",
            KeyType::Json => "ReJSON-RL",
        }
    }

    /// Parses a type as a rule's `_type` or Redis's `TYPE` spells it
    /// (`HASH`, `hash`, `ReJSON-RL`, `JSON`, ...). Case-insensitive.
    pub fn parse(name: &str) -> Option<KeyType> {
        // No allocation: this runs once per key on the source's hot path.
        const SPELLINGS: [(&str, KeyType); 8] = [
            ("string", KeyType::String),
            ("hash", KeyType::Hash),
            ("list", KeyType::List),
            ("set", KeyType::Set),
            ("zset", KeyType::ZSet),
            ("stream", KeyType::Stream),
            ("rejson-rl", KeyType::Json),
            ("json", KeyType::Json),
        ];
        SPELLINGS
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(name))
            .map(|(_, key_type)| *key_type)
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.redis_name())
    }
}

/// One entry of a Redis stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A key's value, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisValue {
    String(Vec<u8>),
    /// Field/value pairs in the order Redis returned them.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    List(Vec<Vec<u8>>),
    /// Members, sorted for stable output.
    Set(Vec<Vec<u8>>),
    /// `(member, score)` in score order.
    ZSet(Vec<(Vec<u8>, f64)>),
    Stream(Vec<StreamEntry>),
    Json(Value),
}

/// The JSON object key marking a byte string that is not UTF-8: `{"$base64": "..."}`.
pub const BASE64_MARKER: &str = "$base64";

/// A byte string as JSON: a string when it is UTF-8, otherwise `{"$base64": "..."}`.
/// Nothing is ever dropped or turned into `""`.
pub fn bytes_to_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => json!({ BASE64_MARKER: base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// A byte string as text: itself when UTF-8, otherwise its standard base64 encoding.
/// The second value says whether base64 was used.
pub fn bytes_to_text(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(bytes), true),
    }
}

/// The key as text for messages (base64 when it is not UTF-8).
pub fn show_key(key: &[u8]) -> String {
    let (text, base64) = bytes_to_text(key);
    if base64 {
        format!("base64:{text}")
    } else if text.chars().any(char::is_control) {
        // A newline or escape code in a key must not break or color the log line.
        text.escape_debug().to_string()
    } else {
        text
    }
}

/// A JSON object key: the text when UTF-8, otherwise `base64:` followed by the encoding.
pub fn bytes_to_map_key(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

impl RedisValue {
    /// The value as JSON: string; hash as an object; list and set as arrays;
    /// zset as `[{member, score}]`; stream as `[{id, fields}]`; RedisJSON as itself.
    pub fn to_json(&self) -> Value {
        match self {
            RedisValue::String(bytes) => bytes_to_json(bytes),
            RedisValue::Hash(pairs) => Value::Object(pairs_to_map(pairs)),
            RedisValue::List(items) | RedisValue::Set(items) => {
                Value::Array(items.iter().map(|item| bytes_to_json(item)).collect())
            }
            RedisValue::ZSet(members) => Value::Array(
                members
                    .iter()
                    .map(|(member, score)| json!({ "member": bytes_to_json(member), "score": score_to_json(*score) }))
                    .collect(),
            ),
            RedisValue::Stream(entries) => Value::Array(
                entries
                    .iter()
                    .map(|entry| json!({ "id": entry.id, "fields": Value::Object(pairs_to_map(&entry.fields)) }))
                    .collect(),
            ),
            RedisValue::Json(value) => value.clone(),
        }
    }

    /// Appends the JSON text of [`RedisValue::to_json`], the same bytes serde_json
    /// writes for it (a test holds them equal), without building the `Value` for the
    /// common shapes. Streams (whose entries may repeat a field name), RedisJSON, and
    /// hashes with a field that is not UTF-8 (whose `base64:` name could meet a text
    /// field's) go through `to_json`, so the two can never differ.
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        use crate::json_out::write_array;
        match self {
            RedisValue::String(bytes) => write_bytes_json(buf, bytes),
            RedisValue::List(items) | RedisValue::Set(items) => {
                write_array(buf, items, |buf, item| write_bytes_json(buf, item))
            }
            RedisValue::ZSet(members) => write_array(buf, members, |buf, (member, score)| {
                buf.extend_from_slice(b"{\"member\":");
                write_bytes_json(buf, member);
                buf.extend_from_slice(b",\"score\":");
                if score.is_finite() {
                    serde_json::to_writer(&mut *buf, score).expect("a number serializes into a Vec");
                } else {
                    buf.extend_from_slice(if *score > 0.0 { b"\"inf\"" } else { b"\"-inf\"" });
                }
                buf.push(b'}');
            }),
            RedisValue::Hash(pairs) if pairs.iter().all(|(field, _)| std::str::from_utf8(field).is_ok()) => {
                buf.push(b'{');
                for (i, (field, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    crate::json_out::write_bytes_as_text(buf, field);
                    buf.push(b':');
                    write_bytes_json(buf, value);
                }
                buf.push(b'}');
            }
            other => crate::json_out::write_value(buf, &other.to_json()),
        }
    }

    /// Approximate size in bytes of the value's payload (used for limits and batching).
    pub fn payload_len(&self) -> usize {
        match self {
            RedisValue::String(bytes) => bytes.len(),
            RedisValue::Hash(pairs) => pairs.iter().map(|(f, v)| f.len() + v.len()).sum(),
            RedisValue::List(items) | RedisValue::Set(items) => items.iter().map(Vec::len).sum(),
            RedisValue::ZSet(members) => members.iter().map(|(m, _)| m.len() + 8).sum(),
            RedisValue::Stream(entries) => entries
                .iter()
                .map(|e| e.id.len() + e.fields.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>())
                .sum(),
            RedisValue::Json(value) => value.to_string().len(),
        }
    }
}

/// Appends [`bytes_to_json`] of `bytes` as JSON text.
fn write_bytes_json(buf: &mut Vec<u8>, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => crate::json_out::write_str(buf, text),
        Err(_) => {
            buf.extend_from_slice(b"{\"");
            buf.extend_from_slice(BASE64_MARKER.as_bytes());
            buf.extend_from_slice(b"\":");
            crate::json_out::write_bytes_as_text(buf, bytes);
            buf.push(b'}');
        }
    }
}

/// Field/value pairs as a JSON object. A name that comes twice (a stream entry may
/// repeat a field, `XADD s * a 1 a 2`; a binary hash field's `base64:` name could meet
/// a text one) keeps every value: the field holds them as a list, in order. (A byte
/// string's JSON is never a list, so a list here always means a repeated name.)
fn pairs_to_map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (field, value) in pairs {
        let value = bytes_to_json(value);
        match map.entry(bytes_to_map_key(field)) {
            Entry::Vacant(entry) => {
                entry.insert(value);
            }
            Entry::Occupied(mut entry) => match entry.get_mut() {
                Value::Array(values) => values.push(value),
                first => *first = Value::Array(vec![first.take(), value]),
            },
        }
    }
    map
}

/// A score as JSON: a number, or the strings `inf` / `-inf` that JSON cannot hold.
fn score_to_json(score: f64) -> Value {
    serde_json::Number::from_f64(score)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(if score > 0.0 { "inf".into() } else { "-inf".into() }))
}

impl Record {
    /// The delete of a key that no longer exists: `database` and `key` only (the value
    /// is an empty string, never read by anything that sees the operation).
    pub fn gone(database: u32, key: Vec<u8>) -> Record {
        Record {
            database,
            key,
            key_type: KeyType::String,
            value: RedisValue::String(Vec::new()),
            size_in_bytes: None,
            ttl: None,
            document: None,
            operation: Operation::DeleteGone,
        }
    }

    /// The key as text (base64 when it is not UTF-8) and whether base64 was used.
    pub fn key_text(&self) -> (String, bool) {
        bytes_to_text(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_as_base64_when_binary_and_escaped_when_they_hold_control_characters() {
        assert_eq!(show_key(b"user:1"), "user:1");
        assert_eq!(show_key(&[0xff, 0x00]), "base64:/wA=");
        assert_eq!(show_key(b"a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn a_field_repeated_in_a_stream_entry_keeps_every_value() {
        let value = RedisValue::Stream(vec![StreamEntry {
            id: "1-0".into(),
            fields: vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"x".to_vec()),
                (b"a".to_vec(), b"2".to_vec()),
                (b"a".to_vec(), b"3".to_vec()),
            ],
        }]);
        assert_eq!(
            value.to_json(),
            json!([{"id": "1-0", "fields": {"a": ["1", "2", "3"], "b": "x"}}])
        );
    }

    #[test]
    fn write_json_gives_the_bytes_serde_json_writes_for_to_json() {
        let text = |s: &str| s.as_bytes().to_vec();
        let odd = "q\"b\\s\n\u{1}é\u{2028}".as_bytes().to_vec();
        let values = vec![
            RedisValue::String(odd.clone()),
            RedisValue::String(vec![0xff, 0x00]),
            RedisValue::List(vec![text("a"), vec![0xfe], odd.clone(), Vec::new()]),
            RedisValue::Set(vec![]),
            RedisValue::ZSet(vec![
                (text("m"), 1.5),
                (text("n"), 3.0),
                (vec![0xff], -0.0),
                (text("big"), 1e300),
                (text("x"), f64::INFINITY),
                (text("y"), f64::NEG_INFINITY),
            ]),
            RedisValue::Hash(vec![(text("f"), odd.clone()), (odd.clone(), vec![0xc3])]),
            RedisValue::Hash(vec![(vec![0xff], text("v")), (text("base64:/w=="), text("w"))]),
            RedisValue::Hash(vec![]),
            RedisValue::Stream(vec![StreamEntry {
                id: "1-0".into(),
                fields: vec![(text("a"), text("1")), (text("a"), text("2"))],
            }]),
            RedisValue::Json(json!({"a": [1, 2.5, null, "t"]})),
        ];
        for value in values {
            let mut buf = Vec::new();
            value.write_json(&mut buf);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                serde_json::to_string(&value.to_json()).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn non_utf8_bytes_become_base64_objects_not_empty_strings() {
        assert_eq!(bytes_to_json(b"abc"), json!("abc"));
        assert_eq!(bytes_to_json(&[0xff, 0x00]), json!({"$base64": "/wA="}));
    }

    #[test]
    fn zset_and_stream_have_the_documented_shape() {
        let zset = RedisValue::ZSet(vec![(b"a".to_vec(), 1.5), (b"b".to_vec(), f64::INFINITY)]);
        assert_eq!(
            zset.to_json(),
            json!([{"member": "a", "score": 1.5}, {"member": "b", "score": "inf"}])
        );
        let stream = RedisValue::Stream(vec![StreamEntry {
            id: "1-0".into(),
            fields: vec![(b"f".to_vec(), b"v".to_vec())],
        }]);
        assert_eq!(stream.to_json(), json!([{"id": "1-0", "fields": {"f": "v"}}]));
    }

    #[test]
    fn key_types_parse_every_documented_spelling() {
        assert_eq!(KeyType::parse("HASH"), Some(KeyType::Hash));
        assert_eq!(KeyType::parse("zset"), Some(KeyType::ZSet));
        assert_eq!(KeyType::parse("ReJSON-RL"), Some(KeyType::Json));
        assert_eq!(KeyType::parse("JSON"), Some(KeyType::Json));
        assert_eq!(KeyType::parse("FOO"), None);
    }
}
