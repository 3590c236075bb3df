//! The bulk request body: action and document lines written straight into one byte
//! buffer (no per-document intermediate `String`), plus, for every document, where its
//! lines sit in the buffer and which Redis key it came from, so that single items can
//! be resent (429) or dead-lettered without re-rendering anything. Pure: no I/O.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::super::reconcile::content_hash::{content_hash, hash_hex, CONTENT_HASH_FIELD};
use crate::document::write_default_document;
use crate::json_out;
use crate::record::Record;

/// One document of a bulk body.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Byte range of the action line and the document line (both `\n`-terminated).
    pub start: usize,
    pub end: usize,
    /// The Redis database and key the document came from (for the dead letter).
    pub database: u32,
    pub key: Vec<u8>,
    /// A `delete` action (its action line only), not an `index` action with a document.
    pub delete: bool,
}

/// A bulk request being built, or built.
#[derive(Debug, Default, Clone)]
pub struct Bulk {
    body: Vec<u8>,
    items: Vec<Item>,
}

/// Writes `{"index":{"_index":INDEX,"_id":ID}}\n`.
pub fn write_index_action(buf: &mut Vec<u8>, index: &str, id: &str) {
    write_action(buf, b"{\"index\":{\"_index\":", index, id);
}

/// Writes `{"delete":{"_index":INDEX,"_id":ID}}\n`.
pub fn write_delete_action(buf: &mut Vec<u8>, index: &str, id: &str) {
    write_action(buf, b"{\"delete\":{\"_index\":", index, id);
}

fn write_action(buf: &mut Vec<u8>, head: &[u8], index: &str, id: &str) {
    buf.extend_from_slice(head);
    json_out::write_str(buf, index);
    buf.extend_from_slice(b",\"_id\":");
    json_out::write_str(buf, id);
    buf.extend_from_slice(b"}}\n");
}

impl Bulk {
    /// An empty body with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Bulk {
        Bulk {
            body: Vec::with_capacity(bytes),
            items: Vec::new(),
        }
    }

    /// Appends an `index` action for `id` in `index` and the document `body`, with its
    /// content hash (over the document's bytes, seeded with `seed`) as the last field
    /// ([`CONTENT_HASH_FIELD`]). `default_body`: the body is the default document (a
    /// template that sets only `id` or `index`), whose last field, `_timestamp`, the
    /// hash leaves out. Returns the hash. The item's key is empty until
    /// [`Bulk::set_last_key`].
    pub fn push_index(
        &mut self,
        index: &str,
        id: &str,
        body: &Map<String, Value>,
        database: u32,
        seed: u64,
        default_body: bool,
    ) -> u64 {
        let start = self.body.len();
        write_index_action(&mut self.body, index, id);
        let doc_start = self.body.len();
        json_out::write_map(&mut self.body, body);
        let mut hashed_end = self.body.len();
        if let (true, Some((last, timestamp))) = (default_body, body.iter().next_back()) {
            if last == "_timestamp" && body.len() > 1 {
                let mut tail = Vec::with_capacity(48);
                tail.extend_from_slice(b",\"_timestamp\":");
                json_out::write_value(&mut tail, timestamp);
                tail.push(b'}');
                hashed_end -= tail.len();
            }
        }
        let hash = content_hash(seed, &self.body[doc_start..hashed_end]);
        self.seal(start, database, hash);
        hash
    }

    /// Closes the document just written (it ends with `}`): adds the hash field and the
    /// line's `\n`, and records the item.
    fn seal(&mut self, start: usize, database: u32, hash: u64) {
        self.body.pop();
        if self.body.last() != Some(&b'{') {
            self.body.push(b',');
        }
        self.body.push(b'"');
        self.body.extend_from_slice(CONTENT_HASH_FIELD.as_bytes());
        self.body.extend_from_slice(b"\":\"");
        self.body.extend_from_slice(&hash_hex(hash));
        self.body.extend_from_slice(b"\"}\n");
        self.items.push(Item {
            start,
            end: self.body.len(),
            database,
            key: Vec::new(),
            delete: false,
        });
    }

    /// Appends a `delete` action for `id` in `index` (one line, no document), with
    /// the key it stands for (for the dead letter). Returns the bytes it added.
    pub fn push_delete(&mut self, index: &str, id: &str, database: u32, key: Vec<u8>) -> usize {
        let start = self.body.len();
        write_delete_action(&mut self.body, index, id);
        let end = self.body.len();
        self.items.push(Item {
            start,
            end,
            database,
            key,
            delete: true,
        });
        end - start
    }

    /// Sets the Redis key of the last document (for the dead letter).
    pub fn set_last_key(&mut self, key: Vec<u8>) {
        if let Some(item) = self.items.last_mut() {
            item.key = key;
        }
    }

    /// Removes the last document (unchanged: not to be sent).
    pub fn pop_last(&mut self) {
        if let Some(item) = self.items.pop() {
            self.body.truncate(item.start);
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No documents yet.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Size of the body in bytes.
    pub fn byte_len(&self) -> usize {
        self.body.len()
    }

    /// The body, ready to send (no copy).
    pub fn take_body(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.body))
    }

    /// Moves the last document into a bulk of its own (used when it made this one
    /// exceed `max_bytes`).
    pub fn split_off_last(&mut self) -> Bulk {
        let Some(mut last) = self.items.pop() else {
            return Bulk::default();
        };
        let tail = self.body.split_off(last.start);
        last.end -= last.start;
        last.start = 0;
        Bulk {
            body: tail,
            items: vec![last],
        }
    }
}

impl Bulk {
    /// Appends an `index` action for `id` and the record's default document, written
    /// straight from the record: the same bytes as serializing
    /// [`crate::document::default_document`]'s body, without building it (no map, no
    /// copy of the value into a `String`), plus the content hash field. The hash leaves
    /// out `_timestamp` (the last field: the run's start, new on every run). Returns the
    /// hash; the item's key is empty until [`Bulk::set_last_key`].
    pub fn push_default(&mut self, index: &str, id: &str, record: &Record, timestamp: &str, seed: u64) -> u64 {
        let start = self.body.len();
        write_index_action(&mut self.body, index, id);
        let doc_start = self.body.len();
        write_default_document(&mut self.body, record, timestamp);
        // `,"_timestamp":"<timestamp>"}`: an ISO 8601 text needs no escaping.
        let timestamp_len = ",\"_timestamp\":\"\"}".len() + timestamp.len();
        let hashed_end = self.body.len() - timestamp_len;
        debug_assert!(self.body[hashed_end..].starts_with(b",\"_timestamp\":"));
        let hash = content_hash(seed, &self.body[doc_start..hashed_end]);
        self.seal(start, record.database, hash);
        hash
    }
}

/// A bulk that was sent: its body (shared, cheap to clone) and its items.
#[derive(Debug, Clone)]
pub struct SentBulk {
    pub body: Bytes,
    pub items: Vec<Item>,
}

impl SentBulk {
    /// Freezes a built bulk.
    pub fn from_bulk(mut bulk: Bulk) -> SentBulk {
        let body = bulk.take_body();
        SentBulk {
            body,
            items: bulk.items,
        }
    }

    /// The action line of item `i` (without its `\n`).
    pub fn action(&self, i: usize) -> &[u8] {
        let item = &self.items[i];
        let lines = &self.body[item.start..item.end];
        let cut = lines.iter().position(|&b| b == b'\n').unwrap_or(lines.len());
        &lines[..cut]
    }

    /// The document line of item `i` (without its `\n`).
    pub fn document(&self, i: usize) -> &[u8] {
        let item = &self.items[i];
        let lines = &self.body[item.start..item.end];
        let cut = lines
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(lines.len());
        let doc = &lines[cut..];
        doc.strip_suffix(b"\n").unwrap_or(doc)
    }

    /// `_index` and `_id` of item `i`, read back from its action line.
    pub fn index_and_id(&self, i: usize) -> (String, String) {
        let action: Value = serde_json::from_slice(self.action(i)).unwrap_or(Value::Null);
        let inner = action
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        (
            inner["_index"].as_str().unwrap_or_default().to_owned(),
            inner["_id"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// A new bulk holding only the items at `positions` (in that order), copied.
    pub fn subset(&self, positions: &[usize]) -> SentBulk {
        let mut body = Vec::with_capacity(positions.iter().map(|&i| self.items[i].end - self.items[i].start).sum());
        let mut items = Vec::with_capacity(positions.len());
        for &i in positions {
            let item = &self.items[i];
            let start = body.len();
            body.extend_from_slice(&self.body[item.start..item.end]);
            items.push(Item {
                start,
                end: body.len(),
                database: item.database,
                key: item.key.clone(),
                delete: item.delete,
            });
        }
        SentBulk {
            body: Bytes::from(body),
            items,
        }
    }

    /// Splits into two halves (for a request that was too large).
    pub fn halves(&self) -> (SentBulk, SentBulk) {
        let mid = self.items.len() / 2;
        let first: Vec<usize> = (0..mid).collect();
        let second: Vec<usize> = (mid..self.items.len()).collect();
        (self.subset(&first), self.subset(&second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RedisValue;
    use serde_json::json;

    fn doc(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// Appends a document as the sink does: `push_index`, then its key.
    fn push(bulk: &mut Bulk, index: &str, id: &str, body: &Map<String, Value>, database: u32, key: &[u8]) -> u64 {
        let hash = bulk.push_index(index, id, body, database, 0, false);
        bulk.set_last_key(key.to_vec());
        hash
    }

    /// The hash field as written after a document's other fields.
    fn hash_of(document: &str) -> String {
        let hex = hash_hex(content_hash(0, document.as_bytes()));
        format!("\"_content_hash\":\"{}\"", std::str::from_utf8(&hex).unwrap())
    }

    #[test]
    fn a_delete_is_one_action_line_and_survives_a_split() {
        let mut bulk = Bulk::with_capacity(0);
        bulk.push_index("idx", "a1", &doc(json!({"n": 1})), 0, 7, false);
        bulk.push_delete("idx", "b\"2", 3, b"b".to_vec());
        let sent = SentBulk::from_bulk(bulk);
        assert!(std::str::from_utf8(&sent.body)
            .unwrap()
            .ends_with("}\n{\"delete\":{\"_index\":\"idx\",\"_id\":\"b\\\"2\"}}\n"));
        assert!(!sent.items[0].delete && sent.items[1].delete);
        assert_eq!(sent.document(1), b"");
        assert_eq!(sent.index_and_id(1), ("idx".to_owned(), "b\"2".to_owned()));
        let (_, second) = sent.halves();
        assert!(second.items[0].delete);
        assert_eq!(
            second.action(0),
            &b"{\"delete\":{\"_index\":\"idx\",\"_id\":\"b\\\"2\"}}"[..]
        );
    }

    #[test]
    fn bulk_body_is_action_line_then_document_line_with_its_content_hash_last() {
        let mut bulk = Bulk::with_capacity(0);
        push(&mut bulk, "idx", "a1", &doc(json!({"key": "k", "n": 1})), 0, b"k");
        push(&mut bulk, "idx", "b2", &doc(json!({"key": "line\nbreak"})), 3, b"j");
        push(&mut bulk, "idx", "c3", &doc(json!({})), 3, b"e");
        let text = String::from_utf8(bulk.take_body().to_vec()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"index\":{{\"_index\":\"idx\",\"_id\":\"a1\"}}}}\n{{\"key\":\"k\",\"n\":1,{}}}\n\
                 {{\"index\":{{\"_index\":\"idx\",\"_id\":\"b2\"}}}}\n{{\"key\":\"line\\nbreak\",{}}}\n\
                 {{\"index\":{{\"_index\":\"idx\",\"_id\":\"c3\"}}}}\n{{{}}}\n",
                hash_of("{\"key\":\"k\",\"n\":1}"),
                hash_of("{\"key\":\"line\\nbreak\"}"),
                hash_of("{}"),
            )
        );
    }

    #[test]
    fn an_unchanged_document_is_taken_back_out_of_the_body() {
        let mut bulk = Bulk::with_capacity(0);
        push(&mut bulk, "idx", "a", &doc(json!({"n": 1})), 0, b"a");
        let before = bulk.byte_len();
        let first = push(&mut bulk, "idx", "b", &doc(json!({"n": 2})), 0, b"b");
        assert_ne!(first, push(&mut bulk, "idx", "c", &doc(json!({"n": 3})), 0, b"c"));
        bulk.pop_last();
        bulk.pop_last();
        assert_eq!((bulk.len(), bulk.byte_len()), (1, before));
    }

    #[test]
    fn a_default_body_from_a_template_is_hashed_without_its_timestamp() {
        let at = |t: &str| doc(json!({"key": "k", "value": "v", "_timestamp": t}));
        let mut bulk = Bulk::default();
        let first = bulk.push_index("i", "a", &at("2026-01-01T00:00:00Z"), 0, 0, true);
        assert_eq!(
            first,
            bulk.push_index("i", "a", &at("2027-01-01T00:00:00Z"), 0, 0, true)
        );
        assert_eq!(first, content_hash(0, b"{\"key\":\"k\",\"value\":\"v\""));
        assert_ne!(
            first,
            bulk.push_index("i", "a", &at("2027-01-01T00:00:00Z"), 0, 0, false)
        );
    }

    #[test]
    fn ids_and_index_names_are_json_escaped() {
        let mut buf = Vec::new();
        write_index_action(&mut buf, "i\"x", "a\"b\\c");
        assert_eq!(buf, b"{\"index\":{\"_index\":\"i\\\"x\",\"_id\":\"a\\\"b\\\\c\"}}\n");
        let parsed: Value = serde_json::from_slice(&buf[..buf.len() - 1]).unwrap();
        assert_eq!(parsed["index"]["_id"], "a\"b\\c");
        let mut buf = Vec::new();
        write_delete_action(&mut buf, "i", "x");
        assert_eq!(buf, b"{\"delete\":{\"_index\":\"i\",\"_id\":\"x\"}}\n");
    }

    #[test]
    fn items_can_be_read_back_and_resent_alone() {
        let mut bulk = Bulk::default();
        for n in 0..3 {
            push(
                &mut bulk,
                "idx",
                &format!("id{n}"),
                &doc(json!({"n": n})),
                n,
                format!("key{n}").as_bytes(),
            );
        }
        let sent = SentBulk::from_bulk(bulk);
        assert_eq!(sent.index_and_id(1), ("idx".to_owned(), "id1".to_owned()));
        let (two, zero) = (
            format!("{{\"n\":2,{}}}", hash_of("{\"n\":2}")),
            format!("{{\"n\":0,{}}}", hash_of("{\"n\":0}")),
        );
        assert_eq!(sent.document(2), two.as_bytes());
        let retry = sent.subset(&[2, 0]);
        assert_eq!(
            std::str::from_utf8(&retry.body).unwrap(),
            format!(
                "{{\"index\":{{\"_index\":\"idx\",\"_id\":\"id2\"}}}}\n{two}\n{{\"index\":{{\"_index\":\"idx\",\"_id\":\"id0\"}}}}\n{zero}\n"
            )
        );
        assert_eq!(retry.items[0].key, b"key2");
        assert_eq!(retry.document(1), zero.as_bytes());
        let (a, b) = sent.halves();
        assert_eq!((a.items.len(), b.items.len()), (1, 2));
        assert_eq!(b.index_and_id(0).1, "id1");
    }

    #[test]
    fn the_document_that_overflows_moves_to_its_own_bulk() {
        let mut bulk = Bulk::default();
        push(&mut bulk, "idx", "a", &doc(json!({"n": 1})), 0, b"a");
        let before = bulk.byte_len();
        push(&mut bulk, "idx", "b", &doc(json!({"big": "x".repeat(100)})), 0, b"b");
        let tail = bulk.split_off_last();
        assert_eq!(bulk.byte_len(), before);
        assert_eq!(bulk.len(), 1);
        let tail = SentBulk::from_bulk(tail);
        assert_eq!(tail.items.len(), 1);
        assert_eq!(tail.index_and_id(0).1, "b");
        assert!(tail.body.starts_with(b"{\"index\""));
    }

    #[test]
    fn default_documents_are_written_byte_for_byte_as_default_document_serializes() {
        use crate::document::default_document;
        use crate::record::{KeyType, StreamEntry};
        let records = vec![
            (
                KeyType::String,
                RedisValue::String(b"hello \"w\"\n\\ \x01 \xc3\xa9".to_vec()),
                b"k".to_vec(),
                Some(56),
            ),
            (
                KeyType::String,
                RedisValue::String(vec![0xff, 0xfe, 0x00]),
                vec![0xff, 0x10],
                None,
            ),
            (
                KeyType::Hash,
                RedisValue::Hash(vec![
                    (b"na\"me".to_vec(), b"A\tda\x02".to_vec()),
                    (vec![0xff], vec![0xfe]),
                ]),
                b"h".to_vec(),
                Some(1),
            ),
            (
                KeyType::List,
                RedisValue::List(vec![b"a".to_vec(), b"\\".to_vec()]),
                b"l".to_vec(),
                Some(2),
            ),
            (KeyType::Set, RedisValue::Set(vec![]), b"s".to_vec(), Some(3)),
            (
                KeyType::ZSet,
                RedisValue::ZSet(vec![(b"m".to_vec(), 1.5), (b"n".to_vec(), f64::INFINITY)]),
                b"z".to_vec(),
                None,
            ),
            (
                KeyType::Stream,
                RedisValue::Stream(vec![StreamEntry {
                    id: "1-0".into(),
                    fields: vec![(b"f".to_vec(), "v\u{2028}".as_bytes().to_vec())],
                }]),
                b"x".to_vec(),
                Some(9),
            ),
            (
                KeyType::Json,
                RedisValue::Json(json!({"a": [1, "two", {"b": null}], "c": "\u{7f}\u{1f}"})),
                "clé".as_bytes().to_vec(),
                Some(4),
            ),
        ];
        for (key_type, value, key, size) in records {
            let mut record = Record {
                database: 7,
                key,
                key_type,
                value,
                size_in_bytes: size,
                ttl: None,
                document: None,
                operation: crate::record::Operation::Upsert,
            };
            let mut body = default_document(&record, "2026-01-01T00:00:00.000Z").body;
            let mut bulk = Bulk::default();
            let hash = bulk.push_default("i", "id", &record, "2026-01-01T00:00:00.000Z", 0);
            // The hash leaves the timestamp out: another run's start gives the same hash.
            let mut other = Bulk::default();
            assert_eq!(
                other.push_default("i", "id", &record, "2027-05-05T10:00:00.000Z", 0),
                hash
            );
            record.size_in_bytes = Some(size.unwrap_or(0) + 1);
            assert_ne!(
                other.push_default("i", "id", &record, "2026-01-01T00:00:00.000Z", 0),
                hash
            );
            body.insert(
                "_content_hash".into(),
                Value::String(String::from_utf8(hash_hex(hash).to_vec()).unwrap()),
            );
            let expected = serde_json::to_vec(&body).unwrap();
            let sent = SentBulk::from_bulk(bulk);
            assert_eq!(
                String::from_utf8_lossy(sent.document(0)),
                String::from_utf8_lossy(&expected),
                "{key_type:?}"
            );
        }
    }
}
