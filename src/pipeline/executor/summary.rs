//! The summary of one pipeline run: what was read, written, filtered, skipped,
//! failed and deleted, how long it took; as JSON (`--summary-json`) and as text.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value as Json;

use crate::stats::CountersSnapshot;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything read was written, filtered or skipped; nothing failed.
    Ok,
    /// Documents failed, a stage failed fatally, or the sink reported an error.
    Failed,
    /// Stopped by Ctrl-C / SIGTERM: what was read was drained, stale deletion skipped.
    Interrupted,
}

impl Status {
    /// The word for logs, `/status` and JSON: `ok`, `failed`, `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

/// The counters of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// `source`, `transforms[0]`, `sink`.
    pub stage: String,
    #[serde(flatten)]
    pub counters: CountersSnapshot,
}

/// The summary of one pipeline run. `read = written + unchanged + filtered + skipped + failed`
/// holds in every summary of a run that was not stopped by a fatal error; when a
/// stage fails fatally, `not_processed` counts the records lost in flight.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineSummary {
    pub pipeline: String,
    pub dry_run: bool,
    pub status: Status,
    /// Keys read from the source (including the skipped ones).
    pub read: u64,
    /// Documents written (in a dry run: that would be written).
    pub written: u64,
    /// Documents the index already held with the same content (change-aware sync):
    /// not written.
    pub unchanged: u64,
    /// Of the documents sent (in a dry run: to send; those Elasticsearch then rejects
    /// are also counted failed), those the index did not hold and those it held with
    /// another content; absent for a sink that does not compare (NDJSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<u64>,
    /// Of the documents sent, those the index held with the same content, written
    /// again because of `--full` (not counted as changed).
    #[serde(skip_serializing_if = "is_zero")]
    pub rewritten: u64,
    /// Documents deleted because their key is gone or a filter excludes it now (live
    /// mode only; stale deletion is `deleted_stale`).
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: u64,
    /// Records dropped by filter rules.
    pub filtered: u64,
    /// Records not processed, for a reason (see `skipped_reasons`).
    pub skipped: u64,
    pub skipped_reasons: BTreeMap<String, u64>,
    /// Records that failed and went to the dead-letter file.
    pub failed: u64,
    /// Records read but neither written nor accounted for because the run stopped.
    pub not_processed: u64,
    /// Documents deleted as stale.
    pub deleted_stale: u64,
    /// Stale documents found (in a dry run: that would be deleted).
    pub stale_found: u64,
    pub seconds: f64,
    /// Documents written per second.
    pub docs_per_second: f64,
    /// Keys read per second.
    pub keys_per_second: f64,
    /// The indices the documents went to (in a dry run: would go to).
    pub targets: Vec<String>,
    /// Dead-letter files that received entries in this run.
    pub dead_letter: Vec<PathBuf>,
    /// Keys read, by database then Redis type.
    pub keys: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Notes from the stages (fallbacks used, index created, mapping checks).
    pub notes: Vec<String>,
    /// Why the run failed, when it did (fatal error or the sink's error).
    pub error: Option<String>,
    /// Whether `read = written + unchanged + filtered + skipped + failed + not_processed`.
    pub counts_add_up: bool,
    pub stages: Vec<StageSummary>,
    /// Rendered documents (dry run with `--sample`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Json>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PipelineSummary {
    /// Whether the run should make the process exit non-zero.
    pub fn is_failure(&self) -> bool {
        self.status != Status::Ok
    }
}

impl fmt::Display for PipelineSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_counts(&mut out);
        self.write_outcome(&mut out);
        self.write_samples(&mut out);
        f.write_str(out.trim_end_matches('\n'))
    }
}

impl PipelineSummary {
    /// Writes the status line, the targets, the counts and the comparison with the index.
    fn write_counts(&self, out: &mut String) {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Interrupted => "INTERRUPTED",
        };
        let dry = if self.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "pipeline {}: {status}{dry} in {:.2} s, {:.0} keys/s, {:.0} docs/s",
            self.pipeline, self.seconds, self.keys_per_second, self.docs_per_second
        );
        if !self.targets.is_empty() {
            let _ = writeln!(out, "  {}", describe_targets(&self.targets));
        }
        let written = if self.dry_run { "would write" } else { "written" };
        let mut line = format!("  read {} = {written} {}", self.read, self.written);
        if self.new.is_some() {
            let _ = write!(line, " + unchanged {}", self.unchanged);
        }
        let _ = write!(
            line,
            " + filtered {} + skipped {} + failed {}",
            self.filtered, self.skipped, self.failed
        );
        if self.deleted > 0 {
            let _ = write!(line, " + deleted {}", self.deleted);
        }
        if self.not_processed > 0 {
            let _ = write!(line, " + not processed {}", self.not_processed);
        }
        let _ = writeln!(out, "{line}");
        if let (Some(new), Some(changed)) = (self.new, self.changed) {
            // Sent (or, in a dry run, to send): what Elasticsearch then rejects is failed.
            let verb = if self.dry_run { "to send" } else { "sent" };
            let sent = if self.rewritten > 0 {
                format!(
                    "{new} new, {changed} changed and {} rewritten (same content, --full)",
                    self.rewritten
                )
            } else {
                format!("{new} new and {changed} changed")
            };
            let _ = writeln!(
                out,
                "  compared with the index: {sent} documents {verb}, {} unchanged",
                self.unchanged
            );
        }
    }

    /// Writes the skipped reasons, stale deletions, keys per type (dry run), failures,
    /// notes, interruption, error, records not processed and a count that does not add up.
    fn write_outcome(&self, out: &mut String) {
        if !self.skipped_reasons.is_empty() {
            let reasons: Vec<String> = self.skipped_reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(out, "  skipped: {}", reasons.join(", "));
        }
        if self.dry_run {
            let _ = writeln!(out, "  stale documents that would be deleted: {}", self.stale_found);
        } else if self.deleted_stale > 0 || self.stale_found > 0 {
            let _ = writeln!(
                out,
                "  deleted as stale: {} (found {})",
                self.deleted_stale, self.stale_found
            );
        }
        if self.dry_run && !self.keys.is_empty() {
            let _ = writeln!(out, "  keys per database and type:");
            for (db, types) in &self.keys {
                let types: Vec<String> = types.iter().map(|(t, n)| format!("{t} {n}")).collect();
                let _ = writeln!(out, "    db {db}: {}", types.join(", "));
            }
        }
        if self.failed > 0 {
            let paths: Vec<String> = self.dead_letter.iter().map(|p| p.display().to_string()).collect();
            let failed = if self.dry_run { "would fail" } else { "failed" };
            let _ = writeln!(out, "  {} documents {failed}; see {}", self.failed, paths.join(", "));
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        if self.status == Status::Interrupted {
            let _ = writeln!(
                out,
                "  interrupted: stopped reading, drained what was in flight, skipped stale deletion"
            );
        }
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  error: {error}");
        }
        if self.not_processed > 0 {
            let _ = writeln!(
            out,
            "  not processed: {} records were read but not yet written, filtered, skipped or failed when this error \
             stopped the run; they are in no dead-letter file: fix the error and run again (a rerun reads every key)",
            self.not_processed
        );
        }
        if !self.counts_add_up {
            let _ = writeln!(
            out,
            "  BUG: the counts do not add up (read {} != written + unchanged + filtered + skipped + failed {}); please report it",
            self.read,
            self.written + self.unchanged + self.filtered + self.skipped + self.failed + self.not_processed
        );
        }
    }

    /// Writes the sample documents (dry run), pretty-printed.
    fn write_samples(&self, out: &mut String) {
        if !self.samples.is_empty() {
            let _ = writeln!(out, "  sample documents ({}):", self.samples.len());
            for sample in &self.samples {
                let pretty = serde_json::to_string_pretty(sample).unwrap_or_default();
                for text in pretty.lines() {
                    let _ = writeln!(out, "    {text}");
                }
            }
        }
    }
}

/// `into index a`, `into indices a, b`, `into 12 indices: a, b, c, d, e, ...`.
fn describe_targets(targets: &[String]) -> String {
    const SHOWN: usize = 5;
    match targets {
        [one] => format!("into index {one}"),
        many if many.len() <= SHOWN => format!("into indices {}", many.join(", ")),
        many => format!("into {} indices: {}, ...", many.len(), many[..SHOWN].join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> PipelineSummary {
        PipelineSummary {
            pipeline: "users".into(),
            dry_run: false,
            status: Status::Failed,
            read: 10,
            written: 6,
            unchanged: 0,
            new: None,
            changed: None,
            rewritten: 0,
            deleted: 0,
            filtered: 1,
            skipped: 1,
            skipped_reasons: [("vanished".to_owned(), 1)].into(),
            failed: 2,
            not_processed: 0,
            deleted_stale: 3,
            stale_found: 3,
            seconds: 2.0,
            docs_per_second: 3.0,
            keys_per_second: 5.0,
            targets: vec!["redis-users".into()],
            dead_letter: vec![PathBuf::from("users.dead-letter.ndjson")],
            keys: BTreeMap::new(),
            notes: vec![],
            error: None,
            counts_add_up: true,
            stages: vec![],
            samples: vec![],
        }
    }

    #[test]
    fn failed_documents_name_the_dead_letter_file() {
        let text = summary().to_string();
        assert_eq!(
            text,
            "pipeline users: FAILED in 2.00 s, 5 keys/s, 3 docs/s\n  \
             into index redis-users\n  \
             read 10 = written 6 + filtered 1 + skipped 1 + failed 2\n  \
             skipped: vanished 1\n  \
             deleted as stale: 3 (found 3)\n  \
             2 documents failed; see users.dead-letter.ndjson"
        );
    }

    #[test]
    fn counts_that_do_not_add_up_are_reported_as_a_bug() {
        let mut s = summary();
        s.counts_add_up = false;
        s.read = 11;
        assert!(s.to_string().contains(
            "BUG: the counts do not add up (read 11 != written + unchanged + filtered + skipped + failed 10)"
        ));
    }
}
