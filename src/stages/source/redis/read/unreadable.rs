//! A key whose value the source read but cannot make sense of (a RedisJSON document
//! nested deeper than the JSON parser goes, a reply of an unexpected shape): that
//! key's failure, not the run's. It is counted as failed, sent to the dead-letter file
//! with its reason, its document of an earlier run kept, and the run goes on, in
//! one-shot runs, live resyncs and follow phases alike.

use crate::dead_letter::DeadLetterEntry;
use crate::record::{bytes_to_text, show_key};
use crate::stages::StageContext;

/// The `error_type` of a source failure in the dead-letter file.
pub const ERROR_TYPE: &str = "unreadable_value";

/// One key whose value could not be read into a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The key, binary-safe.
    pub key: Vec<u8>,
    /// Why, for a human (`value nests 176 levels deep, ...`).
    pub reason: String,
}

/// Counts each key of `failures` (read in `database`) as read and failed, notes it so
/// stale deletion keeps what an earlier run wrote for it, and writes its dead-letter
/// line. A dead-letter file that cannot be written stops the run (a failed key that
/// reached no file would be lost).
pub fn report(ctx: &StageContext, database: u32, failures: Vec<Unreadable>) -> anyhow::Result<()> {
    for Unreadable { key, reason } in failures {
        ctx.counters.add_received(1);
        ctx.counters.add_failed(1);
        ctx.failed_before_sink.add_failed_key(database, &key);
        let (text, base64) = bytes_to_text(&key);
        let entry = DeadLetterEntry {
            pipeline: ctx.pipeline.to_string(),
            stage: ctx.stage.clone(),
            index: None,
            id: None,
            key: text,
            key_encoding: base64.then_some("base64"),
            database,
            error_type: ERROR_TYPE.to_owned(),
            reason: format!("cannot read key `{}` in db {database}: {reason}", show_key(&key)),
            document: None,
            record: None,
        };
        ctx.dead_letter.write(&entry).map_err(|error| {
            anyhow::anyhow!(
                "cannot write the dead-letter file {}: {error}",
                ctx.dead_letter.path().display()
            )
        })?;
    }
    Ok(())
}
