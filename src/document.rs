//! The [`Document`] a sink writes, and the default document built from a record when
//! no template is given: the reference connector's document, field for field.

use std::io::Write as _;

use md5::{Digest, Md5};
use serde_json::{Map, Value};

use crate::json_out;
use crate::record::{Record, RedisValue};

/// A document ready for a sink: its id, an optional target index (overriding the
/// sink's), and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    /// Index chosen per document by a template; `None` means the sink's own `index`.
    pub index: Option<String>,
    pub body: Map<String, Value>,
}

/// The reference's document id: md5 hex of `"{database}/{key}"` (key bytes as they are).
pub fn default_id(database: u32, key: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Md5::new();
    hasher.update(database.to_string().as_bytes());
    hasher.update(b"/");
    hasher.update(key);
    // Once per document: hex digits from a table rather than through `fmt`.
    let mut id = String::with_capacity(32);
    for byte in hasher.finalize() {
        id.push(HEX[usize::from(byte >> 4)] as char);
        id.push(HEX[usize::from(byte & 15)] as char);
    }
    id
}

/// The current time as ISO 8601 UTC (`2026-11-27T11:36:27.123Z`), as `_timestamp` holds it.
pub fn now_timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The default document for a record: `key`, `value`, `size_in_bytes`, `database`,
/// `key_type`, `_timestamp`.
///
/// `value` is always a string: the string itself for string keys, the JSON text of the
/// typed value for every other type. A key or string value that is not UTF-8 is stored
/// as base64, and `key_encoding` / `value_encoding` say `base64`.
pub fn default_document(record: &Record, timestamp: &str) -> Document {
    let mut body = Map::new();
    let (key, key_is_base64) = record.key_text();
    body.insert("key".into(), Value::String(key));
    if key_is_base64 {
        body.insert("key_encoding".into(), Value::String("base64".into()));
    }
    match &record.value {
        RedisValue::String(bytes) => {
            let (text, is_base64) = crate::record::bytes_to_text(bytes);
            body.insert("value".into(), Value::String(text));
            if is_base64 {
                body.insert("value_encoding".into(), Value::String("base64".into()));
            }
        }
        other => {
            body.insert("value".into(), Value::String(other.to_json().to_string()));
        }
    }
    body.insert(
        "size_in_bytes".into(),
        record.size_in_bytes.map(Value::from).unwrap_or(Value::Null),
    );
    body.insert("database".into(), Value::from(record.database));
    body.insert("key_type".into(), Value::String(record.key_type.redis_name().into()));
    body.insert("_timestamp".into(), Value::String(timestamp.to_owned()));
    Document {
        id: default_id(record.database, &record.key),
        index: None,
        body,
    }
}

/// Appends the default document of `record` as one JSON object: the same bytes as
/// serializing [`default_document`]'s body (a test holds them equal), written
/// straight from the record, without building the map or copying the value.
pub fn write_default_document(buf: &mut Vec<u8>, record: &Record, timestamp: &str) {
    buf.push(b'{');
    write_default_members(buf, record, timestamp);
    buf.push(b'}');
}

/// [`write_default_document`] without the braces: `"key":..,"value":..,...`, for a
/// writer that puts other members (the NDJSON line's `_id`) in front.
pub fn write_default_members(buf: &mut Vec<u8>, record: &Record, timestamp: &str) {
    buf.extend_from_slice(b"\"key\":");
    if !json_out::write_bytes_as_text(buf, &record.key) {
        buf.extend_from_slice(b",\"key_encoding\":\"base64\"");
    }
    buf.extend_from_slice(b",\"value\":");
    match &record.value {
        RedisValue::String(bytes) => {
            if !json_out::write_bytes_as_text(buf, bytes) {
                buf.extend_from_slice(b",\"value_encoding\":\"base64\"");
            }
        }
        other => json_out::write_json_text_as_string(buf, |text| other.write_json(text)),
    }
    buf.extend_from_slice(b",\"size_in_bytes\":");
    // Writing into a Vec cannot fail.
    let _ = match record.size_in_bytes {
        Some(n) => write!(buf, "{n}"),
        None => buf.write_all(b"null"),
    };
    let _ = write!(buf, ",\"database\":{}", record.database);
    buf.extend_from_slice(b",\"key_type\":");
    json_out::write_str(buf, record.key_type.redis_name());
    buf.extend_from_slice(b",\"_timestamp\":");
    json_out::write_str(buf, timestamp);
}

impl Record {
    /// The document to write for this record: the rendered one, or the default one.
    pub fn document_or_default(&self, timestamp: &str) -> std::borrow::Cow<'_, Document> {
        match &self.document {
            Some(document) => std::borrow::Cow::Borrowed(document),
            None => std::borrow::Cow::Owned(default_document(self, timestamp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::KeyType;

    fn record(key: &[u8], value: RedisValue, key_type: KeyType) -> Record {
        Record {
            database: 0,
            key: key.to_vec(),
            key_type,
            value,
            size_in_bytes: Some(56),
            ttl: None,
            document: None,
            operation: crate::record::Operation::Upsert,
        }
    }

    #[test]
    fn id_is_md5_of_database_slash_key() {
        assert_eq!(default_id(0, b"user:1"), format!("{:x}", Md5::digest(b"0/user:1")));
        assert_eq!(default_id(3, b"a"), format!("{:x}", Md5::digest(b"3/a")));
    }

    #[test]
    fn string_values_are_stored_as_themselves_and_others_as_json_text() {
        let doc = default_document(
            &record(b"k", RedisValue::String(b"hello".to_vec()), KeyType::String),
            "T",
        );
        assert_eq!(doc.body["value"], "hello");
        assert_eq!(doc.body["key_type"], "string");
        assert_eq!(doc.body["_timestamp"], "T");
        let doc = default_document(
            &record(
                b"h",
                RedisValue::Hash(vec![(b"a".to_vec(), b"1".to_vec())]),
                KeyType::Hash,
            ),
            "T",
        );
        assert_eq!(doc.body["value"], r#"{"a":"1"}"#);
        assert_eq!(doc.body["size_in_bytes"], 56);
    }

    #[test]
    fn binary_keys_and_values_are_base64_and_marked() {
        let doc = default_document(&record(&[0xff], RedisValue::String(vec![0xfe]), KeyType::String), "T");
        assert_eq!(doc.body["key"], "/w==");
        assert_eq!(doc.body["key_encoding"], "base64");
        assert_eq!(doc.body["value"], "/g==");
        assert_eq!(doc.body["value_encoding"], "base64");
        assert_eq!(doc.id, format!("{:x}", Md5::digest([b'0', b'/', 0xff])));
    }
}
