//! Routing: each record of the input to its index and into the writer. Per record:
//! the index it goes to (`names.rs`; a record that has none valid is dead-lettered),
//! the id and reserved-field checks, deletes (live mode), the index prepared at its
//! first document (`indices.rs`), the document encoded with its content hash and
//! compared with what the index held (unchanged ones are dropped), then appended to
//! the bulk being built (`writer.rs`), or, in a dry run, held for checking.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::super::reconcile::content_hash::{Comparison, CONTENT_HASH_FIELD};
use super::super::setup::dry_check;
use super::super::setup::names::check_id;
use super::super::ElasticsearchSink;
use super::encoder::Bulk;
use super::running::Running;
use super::writer::{Limits, Writer};
use crate::document::{default_document, default_id};
use crate::record::{Batch, Record};
use crate::stages::StageContext;

/// A partly filled bulk is sent when no record arrived for this long.
const FLUSH_IDLE: Duration = Duration::from_millis(500);

/// What routing one run's records works with: the writer and its bulks, the scratch
/// bulk a dry run encodes into, the stage's context, and `bulk.max_docs` (a dry run
/// checks that many documents at a time).
struct Route<'a> {
    writer: Writer,
    scratch: Bulk,
    ctx: &'a StageContext,
    max_docs: usize,
}

impl ElasticsearchSink {
    /// Writes every batch from `input` until it closes (see the module's header); an
    /// error when the run cannot go on.
    pub(crate) async fn consume_opened(
        &self,
        running: &mut Running,
        input: &mut mpsc::Receiver<Batch>,
        ctx: &StageContext,
    ) -> anyhow::Result<()> {
        let max_bytes = usize::try_from(self.config.bulk.max_bytes.0).unwrap_or(usize::MAX);
        // Following changes, one bulk at a time: a key read twice (changed again
        // meanwhile) must land in the order it was read, and two requests in flight
        // may be applied in either order.
        let concurrency = if ctx.options.follow {
            1
        } else {
            self.config.bulk.concurrency as usize
        };
        // Following changes, a partly filled bulk grows while the one before is in
        // flight and goes as soon as that one is answered (Writer::next_following).
        let following = ctx.options.follow;
        let max_docs = self.config.bulk.max_docs as usize;
        let limits = Limits {
            max_docs,
            max_bytes,
            concurrency,
        };
        let mut route = Route {
            writer: Writer::new(running.service.clone(), limits),
            scratch: Bulk::default(),
            ctx,
            max_docs,
        };

        let result: anyhow::Result<()> = async {
            loop {
                let writer = &mut route.writer;
                let next = if following {
                    writer.next_following(input).await?
                } else if writer.is_empty() {
                    input.recv().await
                } else {
                    match tokio::time::timeout(FLUSH_IDLE, input.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            writer.flush().await?;
                            continue;
                        }
                    }
                };
                let Some(batch) = next else { break };
                let started = Instant::now();
                ctx.counters.add_received(batch.len() as u64);
                for record in batch {
                    self.route(record, running, &mut route).await?;
                }
                ctx.counters.add_busy(started.elapsed());
                // Surface a failed request early rather than at the end.
                route.writer.check_ended()?;
            }
            if !running.dry_pending.is_empty() {
                running.check_dry_run(ctx).await?;
            }
            route.writer.finish().await
        }
        .await;

        if let Err(error) = result {
            route.writer.abort();
            let written = ctx.counters.out.load(std::sync::atomic::Ordering::Relaxed);
            let message = format!("{error:#}; {written} documents written before the failure");
            running.fatal = Some(message.clone());
            return Err(anyhow::anyhow!(message));
        }
        Ok(())
    }

    /// One record to its index and into the bulk (or, in a dry run, to the dry-run
    /// check): refused, deleted, unchanged, or written.
    async fn route(&self, record: Record, running: &mut Running, route: &mut Route<'_>) -> anyhow::Result<()> {
        let ctx = route.ctx;
        let Some(index_name) = self.target_index(&record, running, ctx)? else {
            return Ok(());
        };
        if let Some(document) = &record.document {
            if let Err(reason) = check_id(&document.id) {
                // Elasticsearch refuses the whole bulk request for one such id.
                let index = Some(index_name.to_string());
                return running.reject(&record, document.id.clone(), index, ctx, "invalid_id", reason);
            }
            if document.body.contains_key(CONTENT_HASH_FIELD) {
                let reason = format!(
                    "the document has a field `{CONTENT_HASH_FIELD}`, which redis-connector writes itself \
                     (each document's content hash): rename that field in the template"
                );
                // Its key exists: what an earlier run wrote for it stays.
                running.ids.insert_anywhere(&document.id);
                let index = Some(index_name.to_string());
                return running.reject(&record, document.id.clone(), index, ctx, "reserved_field", reason);
            }
        }
        if record.operation.is_delete() {
            // Live mode: the key is gone, or a filter excludes it now.
            if ctx.options.dry_run {
                return Ok(());
            }
            let id = match &record.document {
                Some(document) => document.id.clone(),
                None => default_id(record.database, &record.key),
            };
            route
                .writer
                .bulk()
                .push_delete(&index_name, &id, record.database, record.key);
            return route.writer.flush_if_full().await;
        }
        self.route_upsert(record, &index_name, running, route).await
    }

    /// A record to write: encoded (a dry run too: the hash is over the bytes),
    /// compared with what the index holds, and kept in the bulk when new or changed.
    async fn route_upsert(
        &self,
        mut record: Record,
        index_name: &str,
        running: &mut Running,
        route: &mut Route<'_>,
    ) -> anyhow::Result<()> {
        let ctx = route.ctx;
        let dry_run = ctx.options.dry_run;
        let default_documents = !self.rendered_documents.unwrap_or(record.document.is_some());
        let position = running
            .prepare(index_name, default_documents, &self.config, ctx)
            .await?;
        running.indices.get_mut(position).written = true;
        let document = record.document.take();
        let rendered = document.is_some();
        // A dry run encodes too (the hash is over the bytes), into a scratch
        // bulk that is never sent.
        let target = if dry_run {
            &mut route.scratch
        } else {
            route.writer.bulk()
        };
        let seed = self.fingerprint;
        let (id, hash) = match &document {
            Some(document) => {
                // A template that sets only `id` or `index` keeps the default
                // body, whose `_timestamp` the hash leaves out.
                let default_body = self.rendered_documents == Some(false);
                let hash = target.push_index(
                    index_name,
                    &document.id,
                    &document.body,
                    record.database,
                    seed,
                    default_body,
                );
                (Cow::Borrowed(document.id.as_str()), hash)
            }
            None => {
                // The hot path: the default document written straight into the body.
                let id = default_id(record.database, &record.key);
                let hash = target.push_default(index_name, &id, &record, &ctx.run_timestamp, seed);
                (Cow::Owned(id), hash)
            }
        };
        let comparison = running.compare(position, index_name, &id, hash, rendered, &record, ctx.options.full);
        match comparison {
            Comparison::Unchanged => {
                target.pop_last();
                ctx.counters.add_unchanged(1);
                return Ok(());
            }
            Comparison::New => running.new += 1,
            Comparison::Changed | Comparison::Repeated => running.changed += 1,
            Comparison::Rewritten => running.rewritten += 1,
        }
        if let Some(drift) = &ctx.drift {
            // `verify`: noted, not checked (see reconcile/compare.rs).
            route.scratch.pop_last();
            ctx.counters.add_out(1);
            super::super::reconcile::compare::note(drift, comparison, index_name, &id, &record);
            return Ok(());
        }
        if dry_run {
            route.scratch.pop_last();
            record.document = Some(match document {
                Some(document) => document,
                None => default_document(&record, &ctx.run_timestamp),
            });
            let state = &running.indices.get(position).state;
            let mapping_addition = if state.existed { None } else { state.mapping.clone() };
            running.dry_pending.push(dry_check::Pending {
                index: index_name.to_string(),
                record,
                mapping_addition,
            });
            if running.dry_pending.len() >= route.max_docs {
                running.check_dry_run(ctx).await?;
            }
            return Ok(());
        }
        route.writer.bulk().set_last_key(std::mem::take(&mut record.key));
        route.writer.flush_if_full().await
    }

    /// The index a record goes to: the document's own, else the sink's (rendered when
    /// templated). `None` when the record was dead-lettered (bad template or name).
    fn target_index<'a>(
        &'a self,
        record: &Record,
        running: &mut Running,
        ctx: &StageContext,
    ) -> anyhow::Result<Option<Cow<'a, str>>> {
        let (error_type, reason) = match self.target.index_for(record, &ctx.pipeline) {
            Ok(name) => return Ok(Some(name)),
            Err(rejected) => rejected,
        };
        let id = record
            .document
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_else(|| default_id(record.database, &record.key));
        // A document that cannot be placed keeps its id live in every index, so stale
        // deletion keeps whatever an earlier run wrote for the key, wherever it went.
        if running.track_ids {
            running.ids.insert_anywhere(&id);
        }
        running.reject(record, id, None, ctx, error_type, reason)?;
        Ok(None)
    }
}
