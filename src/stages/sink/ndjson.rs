//! The NDJSON sink: one `{"_id": ..., ["_index": ...,] ...document}` line per record,
//! to a file (created or truncated) or to standard output (`path: -`).

use std::fs::File;
use std::io::{BufWriter, Write};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::config::model::NdjsonSinkConfig;
use crate::document::Document;
use crate::record::Batch;
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
                    let document = record.document_or_default(&ctx.run_timestamp);
                    write_line(writer, &document).map_err(|e| {
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
    fn an_empty_path_is_refused_at_build() {
        let errors = NdjsonSink::build(&NdjsonSinkConfig { path: " ".into() })
            .err()
            .unwrap();
        assert_eq!(errors[0].pointer, "/path");
    }
}
