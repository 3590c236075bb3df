//! Dry run: asks Elasticsearch whether it would index each document, without writing
//! it, so the dry run fails on the documents the real run would see rejected, with
//! Elasticsearch's own words (`document_parsing_exception: [1:8] failed to parse field
//! [age] of type [long] ...`).
//!
//! How: `POST _ingest/_simulate` with the documents, their `_index` and `_id`. It
//! parses each document against the index's mapping, as indexing does, and writes
//! nothing (no document, no mapping update). For an index that does not exist yet,
//! `mapping_addition` gives it the mapping a real run would create. It is in the
//! server itself, so the stripped 9.2.8 distribution has it. Where it is missing (an
//! older server) or denied, the documents are checked offline against the mapping
//! instead ([`super::compat`]: type clashes only), and the summary says so.
//!
//! Cost: Elasticsearch takes 10 to 20 times longer to simulate a document than to
//! index it (1000 documents of ~200 bytes: 1.2-2 s against 0.05-0.12 s for the same
//! bulk, on a busy shared machine), so it checks the first [`CHECKED_IN_FULL`]
//! documents of a run and, after them, the ones the offline check flags.
//!
//! Limit: each document is checked against the mapping as it is; a field that an
//! earlier document of the same run would add by dynamic mapping is not seen.

use elasticsearch::http::Method;
use serde_json::{json, Map, Value};

use super::super::http::client::EsClient;
use super::super::http::service::error_type_and_reason;
use super::super::write::running::Running;
use super::compat;
use crate::document::Document;
use crate::record::Record;
use crate::stages::StageContext;

/// Documents of a dry run that Elasticsearch checks whatever the offline check says;
/// after them it checks only those the offline check flags.
pub const CHECKED_IN_FULL: u64 = 2000;

/// One document waiting to be checked.
pub struct Pending {
    pub index: String,
    /// The record, its `document` set (the default document when no template ran).
    pub record: Record,
    /// The mapping the index would be created with, when it does not exist yet.
    pub mapping_addition: Option<Value>,
}

impl Pending {
    /// The document to check.
    pub fn document(&self) -> Option<&Document> {
        self.record.document.as_ref()
    }
}

/// Asks Elasticsearch about `pending` (one request per distinct `mapping_addition`).
/// Returns, in order, `None` for a document it would index and `Some((type, reason))`
/// for one it would reject; `Err(Unavailable)` when the API is missing or denied.
pub async fn check(client: &EsClient, pending: &[&Pending]) -> Result<Vec<Option<(String, String)>>, Unavailable> {
    let mut verdicts = vec![None; pending.len()];
    let mut groups: Vec<(Option<&Value>, Vec<usize>)> = Vec::new();
    for (i, p) in pending.iter().enumerate() {
        match groups.iter_mut().find(|(m, _)| *m == p.mapping_addition.as_ref()) {
            Some((_, members)) => members.push(i),
            None => groups.push((p.mapping_addition.as_ref(), vec![i])),
        }
    }
    for (mapping, members) in groups {
        let docs: Vec<Value> = members
            .iter()
            .filter_map(|&i| {
                let (index, document) = (&pending[i].index, pending[i].document()?);
                Some(json!({"_index": index, "_id": document.id, "_source": Value::Object(document.body.clone())}))
            })
            .collect();
        let mut body = Map::new();
        body.insert("docs".into(), Value::Array(docs));
        if let Some(mapping) = mapping {
            body.insert("mapping_addition".into(), without_meta(mapping));
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| Unavailable(e.to_string()))?;
        let reply = client
            .request(
                Method::Post,
                "_ingest/_simulate?filter_path=docs.doc._id,docs.doc.error",
                Some((bytes.into(), "application/json")),
            )
            .await
            .map_err(|failure| Unavailable(failure.to_string()))?;
        if reply.status != 200 {
            return Err(Unavailable(format!("HTTP {}: {}", reply.status, reply.error_summary())));
        }
        let answer: Value = serde_json::from_slice(&reply.body).map_err(|e| Unavailable(e.to_string()))?;
        let answered = answer["docs"].as_array().map(Vec::as_slice).unwrap_or_default();
        if answered.len() != members.len() {
            return Err(Unavailable(format!(
                "it answered {} documents with {} verdicts",
                members.len(),
                answered.len()
            )));
        }
        for (&i, doc) in members.iter().zip(answered) {
            let error = &doc["doc"]["error"];
            if error.is_object() {
                verdicts[i] = Some(error_type_and_reason(error));
            }
        }
    }
    Ok(verdicts)
}

/// Why the documents could not be checked by Elasticsearch.
#[derive(Debug)]
pub struct Unavailable(pub String);

/// The mapping without `_meta` (a mapping addition is merged into the index's
/// mapping; the ownership marker is no part of what a document is checked against).
fn without_meta(mapping: &Value) -> Value {
    let mut mapping = mapping.clone();
    if let Value::Object(map) = &mut mapping {
        map.remove("_meta");
    }
    mapping
}

impl Running {
    /// Dry run: checks the pending documents (with Elasticsearch, or offline when it
    /// cannot) and counts each as the real run would: written, or failed and
    /// dead-lettered (in the dry run's file) with the reason.
    pub async fn check_dry_run(&mut self, ctx: &StageContext) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut self.dry_pending);
        // Offline first, for every document; Elasticsearch then checks the first
        // `CHECKED_IN_FULL` documents of the run and, after them, those the
        // offline check flags (its verdict and words win). It takes about 10 to 20
        // times what indexing the same documents takes, so checking them all would
        // make a dry run of millions of keys slower than the real run.
        let mut verdicts: Vec<Option<(String, String)>> = pending
            .iter()
            .map(|p| {
                let document = p.document()?;
                let position = self.indices.position(&p.index);
                let mapping = position.and_then(|at| self.indices.get(at).state.mapping.as_ref());
                check_offline(mapping, &p.index, document)
                    .map(|reason| ("document_parsing_exception".to_owned(), reason))
            })
            .collect();
        if self.dry_offline.is_none() {
            let chosen: Vec<usize> = (0..pending.len())
                .filter(|&i| self.dry_checked + (i as u64) < CHECKED_IN_FULL || verdicts[i].is_some())
                .collect();
            let asked: Vec<&Pending> = chosen.iter().map(|&i| &pending[i]).collect();
            match check(self.client(), &asked).await {
                Ok(found) => {
                    for (i, verdict) in chosen.into_iter().zip(found) {
                        verdicts[i] = verdict;
                    }
                }
                Err(Unavailable(reason)) => {
                    tracing::warn!(
                        "Elasticsearch cannot check the dry run's documents ({reason}); checking them offline"
                    );
                    self.dry_offline = Some(reason);
                }
            }
        }
        self.dry_checked += pending.len() as u64;
        for (p, verdict) in pending.into_iter().zip(verdicts) {
            let Some(document) = p.document() else { continue };
            match verdict {
                None => ctx.counters.add_out(1),
                Some((error_type, reason)) => {
                    let id = document.id.clone();
                    let index = Some(p.index.clone());
                    self.reject(&p.record, id, index, ctx, error_type.as_str(), reason)?;
                }
            }
        }
        Ok(())
    }
}

/// Offline dry-run check of `document` against `mapping` (when Elasticsearch cannot
/// check it): why it would be rejected, if it would.
fn check_offline(
    mapping: Option<&serde_json::Value>,
    index: &str,
    document: &crate::document::Document,
) -> Option<String> {
    let problems = compat::check_document(mapping?, &document.body);
    (!problems.is_empty()).then(|| format!("the mapping of index {index} would reject it: {}", problems.join("; ")))
}
