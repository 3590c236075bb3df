//! The NDJSON sink: one `{"_id": ..., ["_index": ...,] ...document}` line per record,
//! to a file (created or truncated) or to standard output (`path: -`).

use std::fs::File;
use std::io::{BufWriter, Write};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::config::model::NdjsonSinkConfig;
use crate::document::{default_id, Document};
use crate::record::{bytes_to_text, Batch, Record, RedisValue};
use crate::stages::{FieldError, SinkReport, StageContext, UpstreamOutcome};

/// Writes each document as one JSON line.
pub struct NdjsonSink {
    config: NdjsonSinkConfig,
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
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
            writer: None,
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
            let file = File::create(&self.config.path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the NDJSON output file {}: {e}",
                    self.config.path
                )
            })?;
            Box::new(file)
        };
        self.writer = Some(BufWriter::with_capacity(BUFFER_BYTES, target));
        Ok(())
    }

    /// Writes every batch from `input` until it closes.
    pub async fn consume(
        &mut self,
        mut input: mpsc::Receiver<Batch>,
        ctx: &StageContext,
    ) -> anyhow::Result<()> {
        while let Some(batch) = input.recv().await {
            let started = std::time::Instant::now();
            let n = batch.len() as u64;
            ctx.counters.add_received(n);
            if let Some(writer) = self.writer.as_mut() {
                for record in &batch {
                    let written = match (&record.document, &record.value) {
                        (None, RedisValue::String(value)) => {
                            write_default_string_line(writer, record, value, &ctx.run_timestamp)
                        }
                        _ => write_line(writer, &record.document_or_default(&ctx.run_timestamp)),
                    };
                    written.map_err(|e| {
                        anyhow::anyhow!(
                            "cannot write to the NDJSON output {}: {e}",
                            self.config.path
                        )
                    })?;
                }
            }
            self.written += n;
            ctx.counters.add_out(n);
            ctx.counters.add_busy(started.elapsed());
        }
        Ok(())
    }

    /// Flushes the output and reports what was written.
    pub async fn finish(
        mut self,
        _upstream: UpstreamOutcome,
        _ctx: &StageContext,
    ) -> anyhow::Result<SinkReport> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().map_err(|e| {
                anyhow::anyhow!(
                    "cannot write to the NDJSON output {}: {e}",
                    self.config.path
                )
            })?;
        }
        Ok(SinkReport {
            written: self.written,
            ..SinkReport::default()
        })
    }
}

/// Writes `{"_id":..,"_index":..,<body fields>}\n` straight into `out`, with no
/// intermediate `String` or merged map.
pub fn write_line<W: Write>(out: &mut W, document: &Document) -> std::io::Result<()> {
    out.write_all(b"{\"_id\":")?;
    serde_json::to_writer(&mut *out, &document.id)?;
    if let Some(index) = &document.index {
        out.write_all(b",\"_index\":")?;
        serde_json::to_writer(&mut *out, index)?;
    }
    write_fields(out, &document.body)?;
    out.write_all(b"}\n")
}

/// Writes the default document of a string record (no template) straight from the
/// record: the same bytes as `write_line` of `default_document` (a unit test holds
/// them equal), without building the document's map or copying the value, which is
/// most of the sink's work on plain string keys (measured: see the commit).
fn write_default_string_line<W: Write>(
    out: &mut W,
    record: &Record,
    value: &[u8],
    timestamp: &str,
) -> std::io::Result<()> {
    out.write_all(b"{\"_id\":")?;
    serde_json::to_writer(&mut *out, &default_id(record.database, &record.key))?;
    out.write_all(b",\"key\":")?;
    write_text(out, &record.key, "key_encoding")?;
    out.write_all(b",\"value\":")?;
    write_text(out, value, "value_encoding")?;
    out.write_all(b",\"size_in_bytes\":")?;
    match record.size_in_bytes {
        Some(size) => serde_json::to_writer(&mut *out, &size)?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"database\":")?;
    serde_json::to_writer(&mut *out, &record.database)?;
    out.write_all(b",\"key_type\":")?;
    serde_json::to_writer(&mut *out, record.key_type.redis_name())?;
    out.write_all(b",\"_timestamp\":")?;
    serde_json::to_writer(&mut *out, timestamp)?;
    out.write_all(b"}\n")
}

/// Bytes as a JSON string (UTF-8 as it is, otherwise base64 followed by the
/// `"<encoding_field>":"base64"` member), as `default_document` stores them.
fn write_text<W: Write>(out: &mut W, bytes: &[u8], encoding_field: &str) -> std::io::Result<()> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::to_writer(&mut *out, text).map_err(Into::into),
        Err(_) => {
            serde_json::to_writer(&mut *out, &bytes_to_text(bytes).0)?;
            out.write_all(b",")?;
            serde_json::to_writer(&mut *out, encoding_field)?;
            out.write_all(b":\"base64\"")
        }
    }
}

fn write_fields<W: Write>(out: &mut W, body: &Map<String, Value>) -> std::io::Result<()> {
    for (name, value) in body {
        if name == "_id" || name == "_index" {
            // Already written from the document itself; a second copy would make the
            // line's meaning depend on the reader's duplicate-key rule.
            continue;
        }
        out.write_all(b",")?;
        serde_json::to_writer(&mut *out, name)?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        write_line(&mut out, &document(None)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\"_id\":\"abc\",\"key\":\"user:1\",\"value\":\"line\\nbreak \\\"quoted\\\"\",\"database\":0}\n");
    }

    #[test]
    fn a_document_index_is_written_as_underscore_index() {
        let mut out = Vec::new();
        write_line(&mut out, &document(Some("users-0"))).unwrap();
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["_index"], "users-0");
        assert_eq!(line["_id"], "abc");
    }

    #[test]
    fn string_records_are_written_as_their_default_document_is() {
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
            };
            let timestamp = "2026-11-27T11:36:27.123Z";
            let mut expected = Vec::new();
            write_line(&mut expected, &default_document(&record, timestamp)).unwrap();
            let mut got = Vec::new();
            write_default_string_line(&mut got, &record, &value, timestamp).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected)
            );
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn an_empty_path_is_refused_at_build() {
        let errors = NdjsonSink::build(&NdjsonSinkConfig { path: " ".into() })
            .err()
            .unwrap();
        assert_eq!(errors[0].pointer, "/path");
    }
}
