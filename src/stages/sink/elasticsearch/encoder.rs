//! The bulk request body: action and document lines written straight into one byte
//! buffer (no per-document intermediate `String`), plus, for every document, where its
//! lines sit in the buffer and which Redis key it came from, so that single items can
//! be resent (429) or dead-lettered without re-rendering anything. Pure: no I/O.

use bytes::Bytes;
use serde_json::{Map, Value};

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

    /// Appends an `index` action for `id` in `index` and the document `body`.
    /// Returns the bytes the document added.
    pub fn push_index(
        &mut self,
        index: &str,
        id: &str,
        body: &Map<String, Value>,
        database: u32,
        key: Vec<u8>,
    ) -> usize {
        let start = self.body.len();
        write_index_action(&mut self.body, index, id);
        json_out::write_map(&mut self.body, body);
        self.body.push(b'\n');
        let end = self.body.len();
        self.items.push(Item {
            start,
            end,
            database,
            key,
            delete: false,
        });
        end - start
    }

    /// Appends a `delete` action for `id` in `index` (one line, no document).
    /// Returns the bytes it added.
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

    /// The documents' positions and keys.
    pub fn items(&self) -> &[Item] {
        &self.items
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
    /// copy of the value into a `String`). Returns the bytes the document added.
    pub fn push_default(&mut self, index: &str, id: &str, record: &mut Record, timestamp: &str) -> usize {
        let start = self.body.len();
        write_index_action(&mut self.body, index, id);
        write_default_document(&mut self.body, record, timestamp);
        self.body.push(b'\n');
        let end = self.body.len();
        self.items.push(Item {
            start,
            end,
            database: record.database,
            key: std::mem::take(&mut record.key),
            delete: false,
        });
        end - start
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

    #[test]
    fn a_delete_is_one_action_line_and_survives_a_split() {
        let mut bulk = Bulk::with_capacity(0);
        bulk.push_index("idx", "a1", &doc(json!({"n": 1})), 0, b"a".to_vec());
        bulk.push_delete("idx", "b\"2", 3, b"b".to_vec());
        let sent = SentBulk::from_bulk(bulk);
        assert_eq!(
            std::str::from_utf8(&sent.body).unwrap(),
            "{\"index\":{\"_index\":\"idx\",\"_id\":\"a1\"}}\n{\"n\":1}\n{\"delete\":{\"_index\":\"idx\",\"_id\":\"b\\\"2\"}}\n"
        );
        assert!(!sent.items[0].delete && sent.items[1].delete);
        assert_eq!(sent.document(1), b"");
        assert_eq!(sent.index_and_id(1), ("idx".to_owned(), "b\"2".to_owned()));
        let (_, second) = sent.halves();
        assert!(second.items[0].delete);
        assert_eq!(second.action(0), &b"{\"delete\":{\"_index\":\"idx\",\"_id\":\"b\\\"2\"}}"[..]);
    }

    #[test]
    fn bulk_body_is_action_line_then_document_line() {
        let mut bulk = Bulk::with_capacity(0);
        bulk.push_index("idx", "a1", &doc(json!({"key": "k", "n": 1})), 0, b"k".to_vec());
        bulk.push_index("idx", "b2", &doc(json!({"key": "line\nbreak"})), 3, b"j".to_vec());
        let text = String::from_utf8(bulk.take_body().to_vec()).unwrap();
        assert_eq!(
            text,
            "{\"index\":{\"_index\":\"idx\",\"_id\":\"a1\"}}\n{\"key\":\"k\",\"n\":1}\n\
             {\"index\":{\"_index\":\"idx\",\"_id\":\"b2\"}}\n{\"key\":\"line\\nbreak\"}\n"
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
            bulk.push_index(
                "idx",
                &format!("id{n}"),
                &doc(json!({"n": n})),
                n,
                format!("key{n}").into_bytes(),
            );
        }
        let sent = SentBulk::from_bulk(bulk);
        assert_eq!(sent.index_and_id(1), ("idx".to_owned(), "id1".to_owned()));
        assert_eq!(sent.document(2), b"{\"n\":2}");
        let retry = sent.subset(&[2, 0]);
        assert_eq!(
            std::str::from_utf8(&retry.body).unwrap(),
            "{\"index\":{\"_index\":\"idx\",\"_id\":\"id2\"}}\n{\"n\":2}\n{\"index\":{\"_index\":\"idx\",\"_id\":\"id0\"}}\n{\"n\":0}\n"
        );
        assert_eq!(retry.items[0].key, b"key2");
        assert_eq!(retry.document(1), b"{\"n\":0}");
        let (a, b) = sent.halves();
        assert_eq!((a.items.len(), b.items.len()), (1, 2));
        assert_eq!(b.index_and_id(0).1, "id1");
    }

    #[test]
    fn the_document_that_overflows_moves_to_its_own_bulk() {
        let mut bulk = Bulk::default();
        bulk.push_index("idx", "a", &doc(json!({"n": 1})), 0, b"a".to_vec());
        let before = bulk.byte_len();
        bulk.push_index("idx", "b", &doc(json!({"big": "x".repeat(100)})), 0, b"b".to_vec());
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
            let expected = serde_json::to_vec(&default_document(&record, "2026-01-01T00:00:00.000Z").body).unwrap();
            let mut bulk = Bulk::default();
            bulk.push_default("i", "id", &mut record, "2026-01-01T00:00:00.000Z");
            let sent = SentBulk::from_bulk(bulk);
            assert_eq!(
                String::from_utf8_lossy(sent.document(0)),
                String::from_utf8_lossy(&expected),
                "{key_type:?}"
            );
        }
    }
}
