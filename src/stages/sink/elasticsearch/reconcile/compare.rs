//! A `verify` run's sink: each document is compared with the `(_id, content hash)`
//! its index held, read as change-aware sync reads it (`content_hash.rs`), and noted as
//! missing or different ([`note`]); at the end, the ids of the map that no document
//! produced are the extra ones ([`ElasticsearchSink::finish_verify`]). Nothing is
//! written, created or marked; documents are not checked against the mapping (a dry
//! run does that). The cost is that of an unchanged change-aware resync: one read of
//! the map, every key read and rendered once; only when documents are extra, one more
//! search finds the ids of the samples, and one `_mget` their `key`.

use anyhow::Context as _;
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::super::setup::index::encode;
use super::super::write::running::Running;
use super::super::ElasticsearchSink;
use super::content_hash::Comparison;
use super::stale;
use crate::record::{show_key, Record};
use crate::stages::drift::{Drift, DriftKind, DriftSample};
use crate::stages::{SinkReport, StageContext, UpstreamOutcome};

/// Notes a document the index lacks or holds with another content.
pub fn note(drift: &Drift, comparison: Comparison, index: &str, id: &str, record: &Record) {
    let kind = match comparison {
        Comparison::Unchanged | Comparison::Rewritten => return,
        Comparison::New => DriftKind::Missing,
        Comparison::Changed | Comparison::Repeated => DriftKind::Different,
    };
    drift.add(kind, 1, |_| {
        vec![DriftSample {
            index: index.to_owned(),
            id: id.to_owned(),
            key: Some(show_key(&record.key)),
            database: Some(record.database),
        }]
    });
}

impl ElasticsearchSink {
    /// Ends a `verify` run: counts the extra documents of every index compared (not
    /// when the run failed or did not read everything: then nothing tells them), with
    /// samples, and reports.
    pub(in crate::stages::sink::elasticsearch) async fn finish_verify(
        mut self,
        drift: &Drift,
        upstream: UpstreamOutcome,
        ctx: &StageContext,
    ) -> anyhow::Result<SinkReport> {
        let mut running = self.running.take().context("the Elasticsearch sink was not opened")?;
        let snapshot = ctx.counters.snapshot();
        let mut report = SinkReport {
            written: snapshot.out,
            failed: snapshot.failed,
            unchanged: snapshot.unchanged,
            new: Some(running.new),
            changed: Some(running.changed),
            ..SinkReport::default()
        };
        report.notes.push(running.server.clone());
        report.notes.append(&mut running.notes);
        report.targets = running.indices.iter().map(|e| e.state.name.clone()).collect();
        if running.fatal.is_some() || !upstream.complete || ctx.cancel.is_cancelled() {
            return Ok(report);
        }
        // Keys that failed before the sink still exist: their documents are not extra.
        for hash in ctx.failed_before_sink.id_hashes() {
            running.ids.insert_anywhere_hash(hash);
        }
        for entry in running.indices.iter() {
            let Some(map) = &entry.hashes else { continue };
            drift.add_indexed(map.len() as u64);
            let extra = map.unseen(|key| running.ids.kept_anywhere(key));
            if extra.is_empty() {
                continue;
            }
            let samples = extra_samples(&running, &entry.state.name, &extra, drift.samples()).await?;
            drift.add(DriftKind::Extra, extra.len() as u64, |_| samples);
        }
        Ok(report)
    }
}

/// Up to `limit` extra documents of `index`, by id, with their `key` and `database`
/// fields when they have them (the default document does).
async fn extra_samples(
    running: &Running,
    index: &str,
    extra: &[(u64, u64)],
    limit: usize,
) -> anyhow::Result<Vec<DriftSample>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let ids = stale::find_by_hash(&running.service, index, extra, limit).await?;
    let body = json!({ "ids": ids });
    let reply = running
        .client()
        .json_call(
            Method::Post,
            &format!("{}/_mget?_source_includes=key,database", encode(index)),
            &body,
            &format!("POST {index}/_mget (the keys of extra documents)"),
        )
        .await?;
    let answer = reply.json()?;
    let docs = answer["docs"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(ids
        .iter()
        .map(|id| {
            let source = docs
                .iter()
                .find(|d| d["_id"].as_str() == Some(id.as_str()))
                .map(|d| &d["_source"])
                .unwrap_or(&Value::Null);
            DriftSample {
                index: index.to_owned(),
                id: id.clone(),
                key: source["key"].as_str().map(str::to_owned),
                database: source["database"].as_u64().and_then(|d| u32::try_from(d).ok()),
            }
        })
        .collect())
}
