//! Sending bulk requests and acting on their answers: whole-request retries, 413
//! splitting, per-item outcomes (written, resent after 429, or dead-lettered), and bulk
//! deletes for stale documents. The decisions come from `retry.rs`; this module does
//! the I/O.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::super::write::encoder::{write_delete_action, SentBulk};
use super::client::{EsClient, FailureKind, Reply};
use super::retry::{human_duration, item_is_retryable, request_verdict, Backoff, RetryCounters, Verdict};
use super::transport::Transport;
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

/// Everything a bulk request needs; shared by the requests in flight. Generic over
/// its [`Transport`] so that its decisions are unit-tested without a server.
pub struct BulkService<T = EsClient> {
    pub transport: T,
    pub policy: RetryConfig,
    pub retries: Arc<RetryCounters>,
    pub pipeline: Arc<str>,
    pub stage: String,
    pub dead_letter: DeadLetter,
    pub counters: Arc<StageCounters>,
}

impl<T: Transport> BulkService<T> {
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
            let (node, last) = match self.transport.post(path, body.clone(), content_type).await {
                Ok(reply) => match request_verdict(reply.status) {
                    Verdict::Done | Verdict::TooLarge => return Ok(reply),
                    Verdict::Fatal => {
                        let what = format!("POST {}", path.split('?').next().unwrap_or(path));
                        return Err(self.transport.status_error(&reply, &what));
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use serde_json::json;

    use super::*;
    use crate::stages::sink::elasticsearch::http::transport::scripted::{
        self, answer, bulk_answer, ids, refused, ScriptedTransport, NODE,
    };
    use crate::stages::sink::elasticsearch::write::encoder::Bulk;

    fn service(
        transport: &Arc<ScriptedTransport>,
        dir: &tempfile::TempDir,
        max_elapsed_ms: u64,
    ) -> BulkService<Arc<ScriptedTransport>> {
        scripted::service(transport, dir.path(), max_elapsed_ms)
    }

    /// A bulk of one small document per id, in index `users`, from key `k:<id>`.
    fn bulk(ids: &[&str]) -> SentBulk {
        let mut bulk = Bulk::default();
        for id in ids {
            let body = json!({ "name": id }).as_object().unwrap().clone();
            bulk.push_index("users", id, &body, 0, 0, false);
            bulk.set_last_key(format!("k:{id}").into_bytes());
        }
        SentBulk::from_bulk(bulk)
    }

    /// The dead-letter file's lines.
    fn dead_letters(dir: &tempfile::TempDir) -> Vec<Value> {
        std::fs::read_to_string(dir.path().join("dead.ndjson"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn counts(service: &BulkService<Arc<ScriptedTransport>>) -> (u64, u64) {
        (
            service.counters.out.load(Ordering::Relaxed),
            service.counters.failed.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn a_413_splits_the_bulk_in_halves_down_to_the_one_document_then_dead_letters_it() {
        // Any request holding document `c` is too large.
        let transport = ScriptedTransport::new(|_, body| {
            let ids = ids(body);
            if ids.iter().any(|id| id == "c") {
                answer(413, json!({}))
            } else {
                bulk_answer(&vec![201; ids.len()], "")
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 1_000);
        service.write(bulk(&["a", "b", "c", "d"])).await.unwrap();

        let sent: Vec<Vec<String>> = transport.bodies().iter().map(|b| ids(b)).collect();
        assert_eq!(
            sent,
            [
                vec!["a", "b", "c", "d"],
                vec!["a", "b"],
                vec!["c", "d"],
                vec!["c"],
                vec!["d"]
            ]
        );
        assert_eq!(counts(&service), (3, 1));
        let dead = dead_letters(&dir);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["_id"], "c");
        assert_eq!(dead[0]["key"], "k:c");
        assert_eq!(dead[0]["_index"], "users");
        assert_eq!(dead[0]["error_type"], "request_entity_too_large");
        let reason = dead[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("is larger than Elasticsearch's http.max_content_length"),
            "{reason}"
        );
        assert_eq!(dead[0]["document"]["name"], "c");
    }

    #[tokio::test]
    async fn a_429_answer_is_retried_then_the_bulk_is_written() {
        let transport = ScriptedTransport::new(|n, body| match n {
            0 => answer(
                429,
                json!({ "error": { "type": "es_rejected_execution_exception", "reason": "queue full" } }),
            ),
            _ => bulk_answer(&vec![201; ids(body).len()], ""),
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 60_000);
        service.write(bulk(&["a", "b"])).await.unwrap();

        let bodies = transport.bodies();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0], bodies[1], "the same request is sent again");
        assert_eq!(counts(&service), (2, 0));
        assert_eq!(service.retries.get(), (1, 0));
        assert!(dead_letters(&dir).is_empty());
    }

    #[tokio::test]
    async fn only_the_items_rejected_with_429_are_resent() {
        let transport = ScriptedTransport::new(|n, body| match n {
            0 => bulk_answer(&[201, 429, 201, 429], "es_rejected_execution_exception"),
            _ => bulk_answer(&vec![201; ids(body).len()], ""),
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 60_000);
        service.write(bulk(&["a", "b", "c", "d"])).await.unwrap();

        let sent: Vec<Vec<String>> = transport.bodies().iter().map(|b| ids(b)).collect();
        assert_eq!(sent, [vec!["a", "b", "c", "d"], vec!["b", "d"]]);
        assert_eq!(counts(&service), (4, 0));
        assert_eq!(service.retries.get(), (0, 2));
    }

    #[tokio::test]
    async fn items_rejected_with_400_are_not_retried_and_count_as_failed() {
        let transport = ScriptedTransport::new(|_, _| bulk_answer(&[201, 400, 201], "document_parsing_exception"));
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 60_000);
        service.write(bulk(&["a", "b", "c"])).await.unwrap();

        assert_eq!(transport.bodies().len(), 1, "nothing is resent");
        assert_eq!(counts(&service), (2, 1));
        assert_eq!(service.retries.get(), (0, 0));
        let dead = dead_letters(&dir);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["_id"], "b");
        assert_eq!(dead[0]["error_type"], "document_parsing_exception");
        assert_eq!(dead[0]["reason"], "rejected with 400");
    }

    #[tokio::test]
    async fn items_still_rejected_with_429_when_retries_run_out_are_dead_lettered() {
        let transport = ScriptedTransport::new(|n, body| match n {
            0 => bulk_answer(&[201, 429], "es_rejected_execution_exception"),
            _ => bulk_answer(&vec![429; ids(body).len()], "es_rejected_execution_exception"),
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 20);
        service.write(bulk(&["a", "b"])).await.unwrap();

        assert!(transport.bodies()[1..].iter().all(|body| ids(body) == ["b"]));
        assert_eq!(counts(&service), (1, 1));
        let dead = dead_letters(&dir);
        assert_eq!(dead[0]["_id"], "b");
        assert_eq!(dead[0]["error_type"], "es_rejected_execution_exception");
        let reason = dead[0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("Elasticsearch kept rejecting the document with 429 (too many requests) for "),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn retries_give_up_after_max_elapsed_with_the_last_error() {
        let transport = ScriptedTransport::new(|_, _| {
            answer(
                503,
                json!({ "error": { "type": "cluster_block_exception", "reason": "blocked" } }),
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 20);
        let error = service.write(bulk(&["a"])).await.unwrap_err().to_string();

        assert!(
            error.starts_with(&format!("Elasticsearch at {NODE} did not answer for ")),
            "{error}"
        );
        assert!(
            error.ends_with("(last error: HTTP 503: cluster_block_exception: blocked)"),
            "{error}"
        );
        assert!(transport.bodies().len() >= 2, "retried before giving up");
        let (requests, _) = service.retries.get();
        assert_eq!(requests as usize, transport.bodies().len() - 1);
        assert_eq!(counts(&service), (0, 0));
    }

    #[tokio::test]
    async fn an_unanswered_request_is_retried_then_written() {
        let transport = ScriptedTransport::new(|n, body| match n {
            0 | 1 => refused(),
            _ => bulk_answer(&vec![201; ids(body).len()], ""),
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 60_000);
        service.write(bulk(&["a"])).await.unwrap();
        assert_eq!(service.retries.get(), (2, 0));
        assert_eq!(counts(&service), (1, 0));
    }

    #[tokio::test]
    async fn a_status_that_is_no_document_problem_ends_the_run_without_retry() {
        let transport = ScriptedTransport::new(|_, _| {
            answer(
                400,
                json!({ "error": { "type": "illegal_argument_exception", "reason": "bad bulk" } }),
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 60_000);
        let error = service.write(bulk(&["a"])).await.unwrap_err().to_string();
        assert_eq!(
            error,
            format!("Elasticsearch at {NODE} answered POST _bulk with HTTP 400: illegal_argument_exception: bad bulk")
        );
        assert_eq!(transport.bodies().len(), 1);
    }

    #[tokio::test]
    async fn deletes_count_as_deleted_and_a_missing_document_as_already_gone() {
        let transport = ScriptedTransport::new(|_, _| {
            answer(
                200,
                json!({ "errors": true, "items": [
                    { "delete": { "status": 200 } },
                    { "delete": { "status": 404 } },
                ] }),
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let service = service(&transport, &dir, 60_000);
        let mut deletes = Bulk::default();
        deletes.push_delete("users", "a", 0, b"k:a".to_vec());
        deletes.push_delete("users", "b", 0, b"k:b".to_vec());
        service.write(SentBulk::from_bulk(deletes)).await.unwrap();
        assert_eq!(service.counters.deleted.load(Ordering::Relaxed), 2);
        assert_eq!(counts(&service), (0, 0));
    }
}
