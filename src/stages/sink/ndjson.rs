//! The NDJSON sink: one `{"_id": ..., ["_index": ...,] ...document}` line per record,
//! to a file (created or truncated) or to standard output (`path: -`). A delete (live
//! mode) is `{"_op": "delete", "_id": ..., ["_index": ...,] "key": ..., "database": N}`:
//! a reader removes the document with that `_id`.

use std::fs::File;
use std::io::Write;

use tokio::sync::mpsc;

use crate::config::model::NdjsonSinkConfig;
use crate::config::FieldError;
use crate::document::{default_id, write_default_members, Document};
use crate::json_out;
use crate::record::{Batch, Record};
use crate::stages::{SinkReport, StageContext, UpstreamOutcome};

/// Writes each document as one JSON line.
pub struct NdjsonSink {
    config: NdjsonSinkConfig,
    /// The file or standard output; `None` in a dry run.
    target: Option<Box<dyn Write + Send>>,
    /// Lines not yet written to `target`: lines are encoded straight into it (see
    /// [`crate::json_out`]) and it is written out once it holds [`BUFFER_BYTES`].
    buffer: Vec<u8>,
    written: u64,
}

const BUFFER_BYTES: usize = 256 * 1024;

impl NdjsonSink {
    /// Checks the configuration: `path` is a file path or `-`.
    pub fn build(config: &NdjsonSinkConfig) -> Result<Self, Vec<FieldError>> {
        if config.path.trim().is_empty() {
            return Err(vec![FieldError::new(
                "/path",
                "`path` is empty: give a file to write, or `-` for standard output",
            )]);
        }
        Ok(NdjsonSink {
            config: config.clone(),
            target: None,
            buffer: Vec::new(),
            written: 0,
        })
    }

    /// Creates (or truncates) the file, or takes standard output for `-`.
    /// In a dry run nothing is opened.
    pub async fn open(&mut self, ctx: &StageContext) -> anyhow::Result<()> {
        if ctx.options.dry_run {
            return Ok(());
        }
        let target: Box<dyn Write + Send> = if self.config.path == "-" {
            Box::new(std::io::stdout())
        } else {
            // Live mode's follow phases add to what the sync before them wrote.
            let file = if ctx.options.follow {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.config.path)
            } else {
                File::create(&self.config.path)
            };
            let file =
                file.map_err(|e| anyhow::anyhow!("cannot create the NDJSON output file {}: {e}", self.config.path))?;
            Box::new(file)
        };
        self.target = Some(target);
        self.buffer = Vec::with_capacity(BUFFER_BYTES + BUFFER_BYTES / 4);
        Ok(())
    }

    /// Writes every batch from `input` until it closes.
    pub async fn consume(&mut self, mut input: mpsc::Receiver<Batch>, ctx: &StageContext) -> anyhow::Result<()> {
        while let Some(batch) = input.recv().await {
            let started = std::time::Instant::now();
            let n = batch.len() as u64;
            ctx.counters.add_received(n);
            let deletes = batch.iter().filter(|r| r.operation.is_delete()).count() as u64;
            if self.target.is_some() {
                for record in &batch {
                    match &record.document {
                        _ if record.operation.is_delete() => write_delete_line(&mut self.buffer, record),
                        None => write_default_line(&mut self.buffer, record, &ctx.run_timestamp),
                        Some(document) => write_line(&mut self.buffer, document),
                    }
                    if self.buffer.len() >= BUFFER_BYTES {
                        self.write_out(false)?;
                    }
                }
            }
            self.written += n - deletes;
            ctx.counters.add_out(n - deletes);
            ctx.counters.add_deleted(deletes);
            ctx.counters.add_busy(started.elapsed());
        }
        Ok(())
    }

    /// Writes the buffered lines to the target; with `flush`, flushes it too.
    fn write_out(&mut self, flush: bool) -> anyhow::Result<()> {
        if let Some(target) = self.target.as_mut() {
            target
                .write_all(&self.buffer)
                .and_then(|()| if flush { target.flush() } else { Ok(()) })
                .map_err(|e| anyhow::anyhow!("cannot write to the NDJSON output {}: {e}", self.config.path))?;
        }
        self.buffer.clear();
        Ok(())
    }

    /// Flushes the output and reports what was written.
    pub async fn finish(mut self, _upstream: UpstreamOutcome, _ctx: &StageContext) -> anyhow::Result<SinkReport> {
        self.write_out(true)?;
        Ok(SinkReport {
            written: self.written,
            ..SinkReport::default()
        })
    }
}

/// Appends `{"_id":..,"_index":..,<body fields>}\n`, with no intermediate `String` or
/// merged map.
pub fn write_line(out: &mut Vec<u8>, document: &Document) {
    out.extend_from_slice(b"{\"_id\":");
    json_out::write_str(out, &document.id);
    if let Some(index) = &document.index {
        out.extend_from_slice(b",\"_index\":");
        json_out::write_str(out, index);
    }
    // `_id` and `_index` in the body were written from the document itself; a second
    // copy would make the line's meaning depend on the reader's duplicate-key rule.
    json_out::write_members(out, &document.body, |name| name != "_id" && name != "_index", true);
    out.extend_from_slice(b"}\n");
}

/// Appends the line of a delete: `{"_op":"delete","_id":..,["_index":..,]"key":..,
/// ["key_encoding":"base64",]"database":N}`; the id and index are the rendered
/// document's when a template gave one, else the default id.
pub fn write_delete_line(out: &mut Vec<u8>, record: &Record) {
    out.extend_from_slice(b"{\"_op\":\"delete\",\"_id\":");
    match &record.document {
        Some(document) => {
            json_out::write_str(out, &document.id);
            if let Some(index) = &document.index {
                out.extend_from_slice(b",\"_index\":");
                json_out::write_str(out, index);
            }
        }
        None => json_out::write_str(out, &default_id(record.database, &record.key)),
    }
    let (key, base64) = record.key_text();
    out.extend_from_slice(b",\"key\":");
    json_out::write_str(out, &key);
    if base64 {
        out.extend_from_slice(b",\"key_encoding\":\"base64\"");
    }
    out.extend_from_slice(format!(",\"database\":{}}}\n", record.database).as_bytes());
}

/// Appends the line of a record that has no rendered document: its default document,
/// written straight from the record, the same bytes as `write_line` of
/// `default_document` (a unit test holds them equal), without building the document's
/// map or copying the value (most of the sink's work on plain string keys).
fn write_default_line(out: &mut Vec<u8>, record: &Record, timestamp: &str) {
    out.extend_from_slice(b"{\"_id\":");
    json_out::write_str(out, &default_id(record.database, &record.key));
    out.push(b',');
    write_default_members(out, record, timestamp);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RedisValue;
    use serde_json::{json, Value};

    fn document(index: Option<&str>) -> Document {
        let body = json!({"key": "user:1", "value": "line\nbreak \"quoted\"", "database": 0});
        Document {
            id: "abc".into(),
            index: index.map(str::to_owned),
            body: body.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_id_first_then_the_body() {
        let mut out = Vec::new();
        write_line(&mut out, &document(None));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"_id\":\"abc\",\"key\":\"user:1\",\"value\":\"line\\nbreak \\\"quoted\\\"\",\"database\":0}\n"
        );
    }

    #[test]
    fn a_document_index_is_written_as_underscore_index() {
        let mut out = Vec::new();
        write_line(&mut out, &document(Some("users-0")));
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["_index"], "users-0");
        assert_eq!(line["_id"], "abc");
    }

    #[test]
    fn records_without_a_document_are_written_as_their_default_document_is() {
        use crate::document::default_document;
        use crate::record::KeyType;
        let cases: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = vec![
            (b"user:1".to_vec(), b"plain".to_vec(), Some(56)),
            (
                b"k \"q\"\n\t\\ \xc3\xa9".to_vec(),
                "line\nbreak \u{1} \u{2028} é".as_bytes().to_vec(),
                None,
            ),
            (vec![0xff, 0x00, b'k'], b"text".to_vec(), Some(0)),
            (b"bin".to_vec(), vec![0xfe, 0xff, 0x00], Some(u64::MAX)),
            (vec![0x80], vec![0xc3], None),
            (Vec::new(), Vec::new(), Some(1)),
        ];
        for (database, (key, value, size)) in cases.into_iter().enumerate() {
            let record = Record {
                database: database as u32,
                key,
                key_type: KeyType::String,
                value: RedisValue::String(value.clone()),
                size_in_bytes: size,
                ttl: Some(5),
                document: None,
                operation: crate::record::Operation::Upsert,
            };
            let timestamp = "2026-11-27T11:36:27.123Z";
            let mut expected = Vec::new();
            write_line(&mut expected, &default_document(&record, timestamp));
            let mut got = Vec::new();
            write_default_line(&mut got, &record, timestamp);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
            assert_eq!(got, expected);
        }
        let hash = Record {
            database: 2,
            key: b"h".to_vec(),
            key_type: KeyType::Hash,
            value: RedisValue::Hash(vec![(b"f\"".to_vec(), b"v\n".to_vec()), (vec![0xff], vec![0xfe])]),
            size_in_bytes: Some(7),
            ttl: None,
            document: None,
            operation: crate::record::Operation::Upsert,
        };
        let mut expected = Vec::new();
        write_line(&mut expected, &default_document(&hash, "T"));
        let mut got = Vec::new();
        write_default_line(&mut got, &hash, "T");
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
    }

    #[test]
    fn a_delete_line_names_the_document_by_id_and_its_key() {
        let mut out = Vec::new();
        write_delete_line(&mut out, &Record::gone(3, b"user:\"1".to_vec()));
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line,
            json!({"_op": "delete", "_id": default_id(3, b"user:\"1"), "key": "user:\"1", "database": 3})
        );
        let mut excluded = Record::gone(0, vec![0xff]);
        excluded.operation = crate::record::Operation::Delete;
        excluded.document = Some(document(Some("users-0")));
        let mut out = Vec::new();
        write_delete_line(&mut out, &excluded);
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line,
            json!({"_op": "delete", "_id": "abc", "_index": "users-0", "key": "/w==", "key_encoding": "base64", "database": 0})
        );
    }

    #[test]
    fn an_empty_path_is_refused_at_build() {
        let errors = NdjsonSink::build(&NdjsonSinkConfig { path: " ".into() }).err().unwrap();
        assert_eq!(errors[0].pointer, "/path");
    }
}
