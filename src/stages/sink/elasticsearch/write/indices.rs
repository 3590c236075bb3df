//! The indices a run meets, in ONE map from name to everything the run knows of the
//! index: its state when first seen (`index.rs`), whether this run wrote to it, and
//! the `(_id, content hash)` it held (change-aware sync). Also what happens at an
//! index's first document: it is inspected, its ownership marker checked, created
//! when missing, and its hashes read.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context as _;

use super::super::alias;
use super::super::reconcile::content_hash::{self, IndexHashes};
use super::super::setup::index::{self, IndexState};
use super::running::Running;
use crate::config::model::ElasticsearchSinkConfig;
use crate::stages::StageContext;

/// What a run knows of one index.
pub struct IndexEntry {
    pub state: IndexState,
    /// Whether this run wrote (or would write, in a dry run) a document to it.
    pub written: bool,
    /// The `(_id, content hash)` the index held when first seen; `None` for an index
    /// that did not exist then (or while following changes, which compares nothing).
    pub hashes: Option<IndexHashes>,
}

/// The indices seen this run, by name, in the order first seen (which the summary's
/// notes follow).
#[derive(Default)]
pub struct Indices {
    entries: Vec<IndexEntry>,
    positions: HashMap<String, usize>,
}

impl Indices {
    /// Adds an index seen for the first time; returns its position.
    pub fn add(&mut self, state: IndexState) -> usize {
        let position = self.entries.len();
        self.positions.insert(state.name.clone(), position);
        self.entries.push(IndexEntry {
            state,
            written: false,
            hashes: None,
        });
        position
    }

    /// The position of the index called `name`, when seen.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// Whether the index called `name` was seen.
    pub fn contains(&self, name: &str) -> bool {
        self.positions.contains_key(name)
    }

    /// The index at `position`.
    pub fn get(&self, position: usize) -> &IndexEntry {
        &self.entries[position]
    }

    /// The index at `position`, to change.
    pub fn get_mut(&mut self, position: usize) -> &mut IndexEntry {
        &mut self.entries[position]
    }

    /// Every index seen, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = &IndexEntry> {
        self.entries.iter()
    }

    /// The names of the indices this run wrote to.
    pub fn written(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|e| e.written).map(|e| e.state.name.as_str())
    }
}

impl Running {
    /// The position of `name` in `indices`, creating the index at its first document
    /// (not in a dry run), with the built-in mapping when `default_documents`.
    pub async fn prepare(
        &mut self,
        name: &str,
        default_documents: bool,
        config: &ElasticsearchSinkConfig,
        ctx: &StageContext,
    ) -> anyhow::Result<usize> {
        if let Some(position) = self.indices.position(name) {
            return Ok(position);
        }
        let known_missing = self.known_missing.take().is_some_and(|missing| missing == name);
        let client = self.client();
        let found = if known_missing {
            None
        } else {
            index::inspect(client, name).await?
        };
        let state = match found {
            Some(mut state) => {
                // As `open` does for the fixed index: refused before anything is written
                // to another pipeline's index (whose stale deletion would then remove it).
                self.check_owner(&mut state, ctx).await?;
                state
            }
            // The documents are checked against the mapping a real run would create.
            None if ctx.options.dry_run => IndexState {
                name: name.to_owned(),
                existed: false,
                created: false,
                owner: None,
                owner_deletes_stale: None,
                docs_at_start: 0,
                mapping: Some(
                    index::creation_body(
                        config.settings.as_ref(),
                        config.mappings.as_ref(),
                        default_documents,
                        &ctx.pipeline,
                        config.delete_stale.enabled,
                    )["mappings"]
                        .take(),
                ),
            },
            None => {
                let mut body = index::creation_body(
                    config.settings.as_ref(),
                    config.mappings.as_ref(),
                    default_documents,
                    &ctx.pipeline,
                    config.delete_stale.enabled,
                );
                if let Some(fields) = &self.marker_fields {
                    alias::mark_creation_body(&mut body, fields);
                }
                if index::create(client, name, &body).await? {
                    tracing::info!(index = name, "created index");
                    IndexState {
                        name: name.to_owned(),
                        existed: false,
                        created: true,
                        owner: Some(ctx.pipeline.to_string()),
                        owner_deletes_stale: Some(config.delete_stale.enabled),
                        docs_at_start: 0,
                        mapping: None,
                    }
                } else {
                    // Made meanwhile by another writer: checked as an existing index.
                    let mut state = index::inspect(client, name)
                        .await?
                        .with_context(|| format!("index {name} was reported as existing but cannot be read"))?;
                    self.check_owner(&mut state, ctx).await?;
                    state
                }
            }
        };
        let existed = state.existed;
        let position = self.indices.add(state);
        if existed {
            self.update_mapping(position, config, ctx).await?;
        }
        // (A live mode follow phase compares nothing: it writes what changed.)
        if existed && !self.following {
            self.read_hashes(position, ctx).await?;
        }
        Ok(position)
    }

    /// Before the first write to an existing index: adds the content hash field to its
    /// mapping (not in a dry run), then reads every `(_id, hash)` it holds.
    pub async fn read_hashes(&mut self, position: usize, ctx: &StageContext) -> anyhow::Result<()> {
        let state = &mut self.indices.get_mut(position).state;
        if !ctx.options.dry_run {
            content_hash::ensure_hash_field(&self.service.transport, state).await?;
        }
        let started = Instant::now();
        let map = content_hash::load(&self.service, &state.name).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            index = %state.name,
            documents = map.len(),
            bytes = map.memory_bytes(),
            "read the (_id, content hash) of {} documents in {seconds:.2} s",
            map.len()
        );
        self.map_documents += map.len() as u64;
        self.map_seconds += seconds;
        self.indices.get_mut(position).hashes = Some(map);
        Ok(())
    }

    /// Checks an existing target index's ownership marker before anything is written to
    /// it (in a dry run too): with stale deletion on, that stale deletion may clean it;
    /// without, that no other pipeline keeps it exact with stale deletion (its next run
    /// would delete what this run writes). Then, not in a dry run, keeps the marker
    /// current: with stale deletion on, an index without an owner that stale deletion
    /// may clean (it held no documents) is marked as this pipeline's, so that the next
    /// run, finding this run's documents in it, may clean it too; on an index this
    /// pipeline owns, the marker's `delete_stale` is set to the pipeline's when it
    /// differs.
    pub async fn check_owner(&self, state: &mut IndexState, ctx: &StageContext) -> anyhow::Result<()> {
        if self.deletes_stale {
            index::stale_deletion_allowed(state, &ctx.pipeline).map_err(anyhow::Error::msg)?;
        } else {
            index::writing_allowed(state, &ctx.pipeline).map_err(anyhow::Error::msg)?;
        }
        if ctx.options.dry_run {
            return Ok(());
        }
        match state.owner.as_deref() {
            None if self.deletes_stale => {
                index::claim(self.client(), state, &ctx.pipeline, true).await?;
                tracing::info!(index = %state.name, "marked the empty index as this pipeline's (_meta.{})", index::META_KEY);
            }
            // A marker that does not say counts as `delete_stale: true` (see
            // `index::writing_allowed`), so only a change is written.
            Some(owner)
                if owner == &*ctx.pipeline && state.owner_deletes_stale.unwrap_or(true) != self.deletes_stale =>
            {
                match index::claim(self.client(), state, &ctx.pipeline, self.deletes_stale).await {
                    Ok(()) => tracing::info!(
                        index = %state.name,
                        "recorded delete_stale: {} in the index's marker (_meta.{})",
                        self.deletes_stale,
                        index::META_KEY
                    ),
                    // Other pipelines must learn that this one now deletes stale documents.
                    Err(error) if self.deletes_stale => return Err(error),
                    // That it no longer does only lets other pipelines share the index:
                    // a key allowed to write documents but not mappings loses nothing.
                    Err(error) => tracing::warn!(
                        index = %state.name,
                        error = %format!("{error:#}"),
                        "could not record delete_stale: false in the index's marker; other pipelines \
                         without delete_stale are still refused this index"
                    ),
                }
            }
            _ => {}
        }
        Ok(())
    }
}
