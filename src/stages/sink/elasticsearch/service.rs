//! Sending bulk requests and acting on their answers: whole-request retries, 413
//! splitting, per-item outcomes (written, resent after 429, or dead-lettered), and bulk
//! deletes for stale documents. The decisions come from `retry.rs`; this module does
//! the I/O.

use std::sync::Arc;

use bytes::Bytes;
use elasticsearch::http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::client::{EsClient, FailureKind, Reply};
use super::encoder::{write_delete_action, SentBulk};
use super::retry::{human_duration, item_is_retryable, request_verdict, Backoff, RetryCounters, Verdict};
use crate::config::model::RetryConfig;
use crate::dead_letter::{DeadLetter, DeadLetterEntry};
use crate::record::bytes_to_text;
use crate::stats::StageCounters;

/// Only what the sink reads of a bulk answer.
const BULK_PATH: &str = "_bulk?filter_path=errors,items.*.status,items.*.error";

/// The first look at a bulk answer: most say `"errors": false`, and then the items
/// need not be read into maps (serde skips them without allocating; reading them all
/// was 5% of the connector's CPU on small documents).
#[derive(Deserialize)]
struct BulkErrors {
    errors: bool,
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, ItemAnswer>>,
}

#[derive(Deserialize)]
struct ItemAnswer {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

impl ItemAnswer {
    fn error_type_and_reason(&self) -> (String, String) {
        error_type_and_reason(self.error.as_ref().unwrap_or(&Value::Null))
    }
}

/// The error type and reason of a document Elasticsearch rejected, as the
/// dead-letter file gives them: `reason: caused_by.reason`.
pub fn error_type_and_reason(error: &Value) -> (String, String) {
    let ty = error["type"].as_str().unwrap_or("unknown_error").to_owned();
    let mut reason = error["reason"].as_str().unwrap_or("no reason given").to_owned();
    if let Some(cause) = error["caused_by"]["reason"].as_str() {
        reason = format!("{reason}: {cause}");
    }
    (ty, reason)
}

/// Everything a bulk request needs; shared by the requests in flight.
pub struct BulkService {
    pub client: EsClient,
    pub policy: RetryConfig,
    pub retries: Arc<RetryCounters>,
    pub pipeline: Arc<str>,
    pub stage: String,
    pub dead_letter: DeadLetter,
    pub counters: Arc<StageCounters>,
}

impl BulkService {
    /// Writes one bulk: counts written documents in `counters.out` and deletes in
    /// `counters.deleted` (a document already gone counts as deleted), dead-letters
    /// rejected ones (`counters.failed`), resends 429-rejected ones alone. An error is
    /// fatal: Elasticsearch stopped answering, or answered a status that is no
    /// per-document problem.
    pub async fn write(&self, bulk: SentBulk) -> anyhow::Result<()> {
        let mut stack = vec![bulk];
        let mut item_backoff: Option<Backoff> = None;
        while let Some(current) = stack.pop() {
            if current.items.is_empty() {
                continue;
            }
            let reply = self
                .send(BULK_PATH, current.body.clone(), "application/x-ndjson")
                .await?;
            if reply.status == 413 {
                if current.items.len() > 1 {
                    let (first, second) = current.halves();
                    stack.push(second);
                    stack.push(first);
                } else {
                    let reason = format!(
                        "the document ({} bytes in its bulk request) is larger than Elasticsearch's http.max_content_length",
                        current.body.len()
                    );
                    self.dead_letter(&current, 0, "request_entity_too_large", &reason)?;
                }
                continue;
            }
            let unreadable = |e: serde_json::Error| {
                anyhow::anyhow!(
                    "Elasticsearch at {} sent a bulk answer that cannot be read ({e}): {}",
                    reply.node,
                    reply.snippet()
                )
            };
            let first_look: BulkErrors = serde_json::from_slice(&reply.body).map_err(unreadable)?;
            if !first_look.errors {
                let deletes = current.items.iter().filter(|item| item.delete).count() as u64;
                self.counters.add_out(current.items.len() as u64 - deletes);
                self.counters.add_deleted(deletes);
                continue;
            }
            let answer: BulkAnswer = serde_json::from_slice(&reply.body).map_err(unreadable)?;
            anyhow::ensure!(
                answer.items.len() == current.items.len(),
                "Elasticsearch at {} answered a bulk of {} documents with {} items",
                reply.node,
                current.items.len(),
                answer.items.len()
            );
            let (mut written, mut deleted) = (0, 0);
            let mut resend = Vec::new();
            for (i, item) in answer.items.iter().enumerate() {
                let Some(item) = item.values().next() else { continue };
                // A delete whose document is already gone (404) did what it was for.
                if current.items[i].delete && ((200..300).contains(&item.status) || item.status == 404) {
                    deleted += 1;
                } else if (200..300).contains(&item.status) {
                    written += 1;
                } else if item_is_retryable(item.status) {
                    resend.push(i);
                } else {
                    let (ty, reason) = item.error_type_and_reason();
                    self.dead_letter(&current, i, &ty, &reason)?;
                }
            }
            self.counters.add_out(written);
            self.counters.add_deleted(deleted);
            if resend.is_empty() {
                continue;
            }
            let backoff = item_backoff.get_or_insert_with(|| Backoff::new(&self.policy));
            match backoff.next_delay() {
                Some(delay) => {
                    self.retries.add_items(resend.len() as u64);
                    tracing::debug!(
                        documents = resend.len(),
                        ?delay,
                        "Elasticsearch rejected documents with 429; resending them"
                    );
                    tokio::time::sleep(delay).await;
                    stack.push(current.subset(&resend));
                }
                None => {
                    let reason = format!(
                        "Elasticsearch kept rejecting the document with 429 (too many requests) for {}",
                        human_duration(backoff.elapsed())
                    );
                    for i in resend {
                        self.dead_letter(&current, i, "es_rejected_execution_exception", &reason)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn dead_letter(&self, bulk: &SentBulk, i: usize, error_type: &str, reason: &str) -> anyhow::Result<()> {
        let item = &bulk.items[i];
        let (index, id) = bulk.index_and_id(i);
        let (key, is_base64) = bytes_to_text(&item.key);
        let document = serde_json::from_slice::<Value>(bulk.document(i)).ok();
        self.dead_letter
            .write(&DeadLetterEntry {
                pipeline: self.pipeline.to_string(),
                stage: self.stage.clone(),
                index: Some(index),
                id: Some(id),
                key,
                key_encoding: is_base64.then_some("base64"),
                database: item.database,
                error_type: error_type.to_owned(),
                reason: reason.to_owned(),
                document,
                record: None,
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the dead-letter file {}: {e}",
                    self.dead_letter.path().display()
                )
            })?;
        self.counters.add_failed(1);
        Ok(())
    }

    /// Sends one request, retrying 429/502/503/504 and unanswered requests with
    /// backoff until `retry.max_elapsed`. Returns a 2xx or 413 answer; anything else
    /// is a fatal error that says what happened.
    pub async fn send(&self, path: &str, body: Bytes, content_type: &'static str) -> anyhow::Result<Reply> {
        let mut backoff = Backoff::new(&self.policy);
        loop {
            let (node, last) = match self
                .client
                .request(Method::Post, path, Some((body.clone(), content_type)))
                .await
            {
                Ok(reply) => match request_verdict(reply.status) {
                    Verdict::Done | Verdict::TooLarge => return Ok(reply),
                    Verdict::Fatal => {
                        let what = format!("POST {}", path.split('?').next().unwrap_or(path));
                        return Err(self.client.status_error(&reply, &what));
                    }
                    Verdict::Retry => (
                        reply.node.clone(),
                        format!("HTTP {}: {}", reply.status, reply.error_summary()),
                    ),
                },
                Err(failure) if failure.kind == FailureKind::Tls => return Err(anyhow::anyhow!("{failure}")),
                Err(failure) => (failure.node.clone(), failure.message.clone()),
            };
            match backoff.next_delay() {
                Some(delay) => {
                    self.retries.add_request();
                    tracing::warn!(node = %node, error = %last, ?delay, "bulk request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    anyhow::bail!(
                        "Elasticsearch at {node} did not answer for {} (last error: {last})",
                        human_duration(backoff.elapsed())
                    )
                }
            }
        }
    }

    /// Deletes `ids` from `index` with bulk `delete` actions, resending 429-rejected
    /// ones. Returns how many were deleted (a document already gone counts as not
    /// deleted) and the errors of any that could not be.
    pub async fn delete(&self, index: &str, ids: &[String]) -> anyhow::Result<(u64, Vec<String>)> {
        let mut pending: Vec<&String> = ids.iter().collect();
        let mut deleted = 0;
        let mut errors = Vec::new();
        let mut backoff: Option<Backoff> = None;
        while !pending.is_empty() {
            let mut body = Vec::with_capacity(pending.len() * 64);
            for id in &pending {
                write_delete_action(&mut body, index, id);
            }
            let reply = self.send(BULK_PATH, Bytes::from(body), "application/x-ndjson").await?;
            anyhow::ensure!(
                reply.status != 413,
                "a bulk delete of {} ids was too large for Elasticsearch",
                pending.len()
            );
            let answer: BulkAnswer = serde_json::from_slice(&reply.body).map_err(|e| {
                anyhow::anyhow!(
                    "Elasticsearch at {} sent a bulk answer that cannot be read: {e}",
                    reply.node
                )
            })?;
            let mut again = Vec::new();
            for (id, item) in pending
                .iter()
                .zip(answer.items.iter().filter_map(|m| m.values().next()))
            {
                match item.status {
                    200..=299 => deleted += 1,
                    404 => {}
                    429 => again.push(*id),
                    _ => {
                        let (ty, reason) = item.error_type_and_reason();
                        errors.push(format!("{id}: {ty}: {reason}"));
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            let backoff = backoff.get_or_insert_with(|| Backoff::new(&self.policy));
            match backoff.next_delay() {
                Some(delay) => {
                    self.retries.add_items(again.len() as u64);
                    tokio::time::sleep(delay).await;
                }
                None => {
                    errors.extend(
                        again
                            .iter()
                            .map(|id| format!("{id}: still rejected with 429 after retrying")),
                    );
                    break;
                }
            }
            pending = again;
        }
        Ok((deleted, errors))
    }
}
