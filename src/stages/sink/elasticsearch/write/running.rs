//! The state of an opened sink for one run: the bulk service, the indices seen
//! (`indices.rs`), the ids produced (for stale deletion and repeated ids), the counts
//! of change-aware sync, the dry run's pending documents, and the notes for the
//! summary. Also the two things every part of a run does with a record: compare its
//! document with what the index held, and dead-letter it before any request.

use std::sync::Arc;

use anyhow::Context as _;

use super::super::http::client::EsClient;
use super::super::http::service::BulkService;
use super::super::reconcile::content_hash::{key_hash, Comparison};
use super::super::reconcile::stale::IdSet;
use super::super::setup::dry_check;
use super::indices::Indices;
use super::repeated::RepeatedIds;
use crate::dead_letter::DeadLetterEntry;
use crate::record::Record;
use crate::stages::{ScansRestarted, StageContext};

/// State of an opened sink.
pub struct Running {
    pub service: Arc<BulkService>,
    /// Which server answered `open`, for the summary.
    pub server: String,
    /// Every index seen this run, in the order first seen.
    pub indices: Indices,
    /// The `(index, _id)` this run produced: kept with `delete_stale`, which reads it,
    /// and for rendered documents (an `id` template can give two records one `_id`).
    pub ids: IdSet,
    pub track_ids: bool,
    /// The pipeline's `delete_stale` (what the index's marker records). Live mode's
    /// follow phases keep no ids (a key written again and again is no repeated id,
    /// and the set would grow for as long as the phase runs): `track_ids` is off there.
    pub deletes_stale: bool,
    pub following: bool,
    /// Documents whose `_id` an earlier document of this run already had.
    pub repeated: RepeatedIds,
    /// The databases whose scan started over after a Redis restart (the run's).
    pub scans_restarted: Arc<ScansRestarted>,
    /// The sink's fixed index, when `open` found it missing: the first document
    /// creates it without asking again.
    pub known_missing: Option<String>,
    pub fatal: Option<String>,
    /// Documents of this run the indices lacked, and held with another content.
    pub new: u64,
    pub changed: u64,
    /// Documents the index held with the same content, written again by `--full`.
    pub rewritten: u64,
    /// Documents and time of the maps read, for the summary.
    pub map_documents: u64,
    pub map_seconds: f64,
    /// Notes from `open`, for the summary.
    pub notes: Vec<String>,
    /// Dry run: documents waiting to be checked by Elasticsearch.
    pub dry_pending: Vec<dry_check::Pending>,
    /// Dry run: why documents are checked offline (Elasticsearch could not check them).
    pub dry_offline: Option<String>,
    /// Dry run: documents checked so far.
    pub dry_checked: u64,
    /// With `alias`: the fields added to the marker of the index this run creates.
    pub marker_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Running {
    /// The state of a run that has written nothing yet.
    pub fn new(service: Arc<BulkService>, server: String, deletes_stale: bool, ctx: &StageContext) -> Running {
        Running {
            service,
            server,
            indices: Indices::default(),
            ids: IdSet::default(),
            track_ids: deletes_stale && !ctx.options.follow,
            deletes_stale,
            following: ctx.options.follow,
            repeated: RepeatedIds::default(),
            scans_restarted: ctx.scans_restarted.clone(),
            known_missing: None,
            fatal: None,
            new: 0,
            changed: 0,
            rewritten: 0,
            map_documents: 0,
            map_seconds: 0.0,
            notes: Vec::new(),
            dry_pending: Vec::new(),
            dry_offline: None,
            dry_checked: 0,
            marker_fields: None,
        }
    }

    /// The Elasticsearch client (the bulk service's transport), for the requests
    /// that are no bulk: index checks, creation, refreshes, markers.
    pub fn client(&self) -> &EsClient {
        &self.service.transport
    }

    /// Compares a document this run produced for `index` (at `position`) with what the
    /// index held, and notes its id as produced (for stale deletion, and to tell when a
    /// document replaces one this run wrote). `rendered`: the id came from a template
    /// transform, not from the key. `full`: every document counts as changed.
    #[allow(clippy::too_many_arguments)]
    pub fn compare(
        &mut self,
        position: usize,
        index: &str,
        id: &str,
        hash: u64,
        rendered: bool,
        record: &Record,
        full: bool,
    ) -> Comparison {
        if self.following {
            // Live mode: a key written again and again is no repeated id, and a set of
            // ids would grow for as long as the phase runs.
            return Comparison::New;
        }
        let held = self
            .indices
            .get_mut(position)
            .hashes
            .as_mut()
            .and_then(|map| map.compare(key_hash(id), hash, full));
        let comparison = match held {
            Some(comparison) => comparison,
            // Ids the index did not hold are kept only where a repeat must be noticed.
            None if (self.track_ids || rendered) && !self.ids.insert(index, id) => Comparison::Repeated,
            None => Comparison::New,
        };
        if comparison == Comparison::Repeated {
            let restarted = self.scans_restarted.contains(record.database);
            self.repeated.add(index, id, rendered, restarted, record);
        }
        comparison
    }

    /// Sends a record the sink cannot write (no valid index, an id Elasticsearch
    /// refuses) to the dead-letter file, before any request, and counts it as failed.
    /// The line holds the document (the default one when no template rendered one) and
    /// `index` when it is a valid name, so it can be replayed.
    pub fn reject(
        &self,
        record: &Record,
        id: String,
        index: Option<String>,
        ctx: &StageContext,
        error_type: &str,
        reason: String,
    ) -> anyhow::Result<()> {
        let (key, is_base64) = record.key_text();
        self.service
            .dead_letter
            .write(&DeadLetterEntry {
                pipeline: ctx.pipeline.to_string(),
                stage: ctx.stage.clone(),
                index,
                id: Some(id),
                key,
                key_encoding: is_base64.then_some("base64"),
                database: record.database,
                error_type: error_type.to_owned(),
                reason,
                document: Some(serde_json::Value::Object(
                    record.document_or_default(&ctx.run_timestamp).body.clone(),
                )),
                record: None,
            })
            .with_context(|| {
                format!(
                    "cannot write the dead-letter file {}",
                    self.service.dead_letter.path().display()
                )
            })?;
        ctx.counters.add_failed(1);
        Ok(())
    }
}
