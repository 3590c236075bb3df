//! The Elasticsearch bulk sink stage: checks its configuration (pure), connects and
//! prepares the target index, writes documents in concurrent bulk requests, and at the
//! end of a complete run deletes stale documents and refreshes.
//!
//! This file holds the type and its public surface; the work is split by job, one
//! folder each: `setup/` (configuration, names, index setup, checks before
//! writing), `write/` (routing, batching, encoding, one run's state, the end of a
//! run), `http/` (the client, the transport, the bulk service, retries),
//! `reconcile/` (content hashes, stale deletion), `alias/`.
//! - `config.rs` checks the configuration (URLs, credentials, sizes) and reads secrets;
//!   `names.rs` says where documents go (fixed index or `index` template) and checks ids.
//! - `running.rs` is one run's state; `indices.rs` the indices it met, in one map (state,
//!   written, content hashes), and what happens at an index's first document.
//! - `routing.rs` takes each record to its index and into the bulk; `writer.rs` batches
//!   and keeps up to `bulk.concurrency` requests in flight; `encoder.rs` writes bulk
//!   bodies; `service.rs` sends them and acts on the answers (413 splits, per-item
//!   outcomes), over a `transport.rs` (`client.rs`, the HTTP client of one or several
//!   nodes, in a run; a scripted one in unit tests); `retry.rs` decides what to retry.
//! - `finish.rs` ends a run; `verify.rs` ends a `verify` run (what drifts);
//!   `stale.rs` finds and deletes stale documents;
//!   `changes.rs` holds the content hashes and the `(_id, hash)` map of change-aware
//!   sync; `repeated.rs` notes ids produced twice.
//! - `index.rs` sets indices up and reads their ownership marker; `mapping_update.rs`
//!   adds the fields of `mappings` an existing index lacks; `creation_check.rs`
//!   checks the pipeline's settings and mappings before reading; `dry_check.rs` asks
//!   Elasticsearch about a dry run's documents, `compat.rs` checks them offline when it
//!   cannot; `alias/` writes behind an alias (`mod.rs`: fingerprints and the plan;
//!   `generations.rs`: swaps, pruning, rollback).
//!
//! Change-aware sync: before its first write to an existing index, the sink reads
//! every `(_id, hash)` the index holds; each document is encoded with its content
//! hash, compared, and sent only when new or changed (`--full`: always). After a
//! complete run the map's ids that no document produced are the stale ones.
//!
//! Templated indices (`index: "redis-{{ database }}"`, or a template transform's
//! `index`): each index is created at its first document. Stale deletion covers each
//! index this run wrote to (plus the fixed `index` itself, even when the run wrote
//! nothing to it); indices the template could name but this run never wrote to are
//! left alone, since nothing says they are this pipeline's to clean.

pub mod alias;
mod http;
mod reconcile;
mod setup;
mod write;

pub(crate) use setup::mappings;

use std::sync::Arc;

use anyhow::Context as _;
use elasticsearch::http::Url;
use tokio::sync::mpsc;

use crate::config::model::ElasticsearchSinkConfig;
use crate::config::FieldError;
use crate::record::Batch;
use crate::stages::{SinkReport, StageContext, Upstream, UpstreamOutcome};

use http::client::{self, EsClient};
use http::retry::RetryCounters;
use http::service::BulkService;
use setup::names::Target;
use setup::{config, creation_check, index};
use write::running::Running;

/// The Elasticsearch sink.
pub struct ElasticsearchSink {
    config: ElasticsearchSinkConfig,
    urls: Vec<Url>,
    target: Target,
    running: Option<Running>,
    /// Whether a template stage renders the documents' bodies (so the built-in
    /// mapping of the default document must not be given to a new index); `None`
    /// when not told, and then each record says (a rendered document or none).
    rendered_documents: Option<bool>,
    /// The pipeline fingerprint, seed of every content hash (see `changes.rs`).
    fingerprint: u64,
    /// Whether a template transform chooses every document's index: the sink's own
    /// fixed `index` is then never written to, so never created nor cleaned.
    routed_by_transform: bool,
    /// With `alias`: what this run does there, decided by `open`.
    alias_plan: Option<alias::Plan>,
}

impl ElasticsearchSink {
    /// Checks and compiles the configuration; no I/O. The sink is told nothing of the
    /// stages before it (see [`Upstream::default`]): for a sink used on its own.
    pub fn build(config: &ElasticsearchSinkConfig) -> Result<Self, Vec<FieldError>> {
        Self::build_receiving(config, &Upstream::default())
    }

    /// Checks and compiles the configuration; no I/O. `upstream`: what the stages
    /// before the sink do to records (worked out by the pipeline build).
    pub fn build_receiving(config: &ElasticsearchSinkConfig, upstream: &Upstream) -> Result<Self, Vec<FieldError>> {
        let (urls, target) = config::check(config)?;
        Ok(ElasticsearchSink {
            config: config.clone(),
            urls,
            target,
            running: None,
            rendered_documents: upstream.bodies_rendered,
            fingerprint: upstream.fingerprint,
            routed_by_transform: upstream.routed,
            alias_plan: None,
        })
    }

    /// Connects (one request that names the server and its version), then checks the
    /// fixed target index: its ownership marker (with stale deletion on, that the index
    /// is this pipeline's to clean; without, that no other pipeline keeps it exact with
    /// stale deletion), and in a dry run whether it exists. A missing index is created
    /// at the first document.
    pub async fn open(&mut self, ctx: &StageContext) -> anyhow::Result<()> {
        let auth = config::auth(&self.config)?;
        let client = EsClient::new(&self.urls, auth, &self.config.tls, self.config.timeout.0)?;
        let server = http::recovery::first_contact(&client, self.urls.len(), &self.config.retry).await?;
        tracing::info!(pipeline = %ctx.pipeline, "{server}");
        // The executor hands the sink its own `dead_letter` file, when one is set, in
        // `ctx` (a dry run's beside it), and names it in the summary from there.
        let dead_letter = ctx.dead_letter.clone();
        let service = Arc::new(BulkService {
            transport: client,
            policy: self.config.retry.clone(),
            retries: Arc::new(RetryCounters::default()),
            pipeline: ctx.pipeline.clone(),
            stage: ctx.stage.clone(),
            dead_letter,
            counters: ctx.counters.clone(),
        });
        let mut running = Running::new(service, server, self.config.delete_stale.enabled, ctx);
        // The pipeline's own settings and mappings, before any key is read (the
        // built-in mapping needs no check).
        if self.config.settings.is_some() || self.config.mappings.is_some() {
            let body = index::creation_body(
                self.config.settings.as_ref(),
                self.config.mappings.as_ref(),
                false,
                &ctx.pipeline,
                self.config.delete_stale.enabled,
            );
            let client = running.client();
            if let creation_check::Checked::NotAllowed(reason) = creation_check::check(client, &body).await? {
                running.notes.push(format!(
                    "the sink's settings and mappings were not checked before reading (the credentials may not \
                     simulate an index template: {reason}); Elasticsearch checks them when it creates the index"
                ));
            }
        }
        if let (Some(alias), true) = (&self.config.alias, ctx.drift.is_some()) {
            // `verify`: what the alias serves now (no alias: nothing is served, every
            // document is missing).
            self.target = Target::Fixed(alias.clone());
        } else if let (Some(alias), true) = (&self.config.alias, ctx.options.follow) {
            // A live mode follow phase: through the alias, to the index it points at
            // (the one serving, also while a sync builds the next; see live/rebuild.rs).
            alias::check_follow_target(running.client(), alias, &ctx.pipeline).await?;
            self.target = Target::Fixed(alias.clone());
        } else if let Some(alias) = &self.config.alias {
            let fingerprints = alias::Fingerprints::new(
                self.fingerprint,
                self.config.mappings.as_ref(),
                self.config.settings.as_ref(),
            );
            let plan = alias::plan(
                running.client(),
                alias,
                fingerprints,
                self.config.mappings.as_ref(),
                &ctx.pipeline,
            )
            .await?;
            tracing::info!(pipeline = %ctx.pipeline, "{}", plan.describe(ctx.options.dry_run));
            running.notes.push(plan.describe(ctx.options.dry_run));
            running.marker_fields = Some(alias::marker_fields(alias, fingerprints, self.config.mappings.as_ref()));
            self.target = Target::Fixed(plan.target.clone());
            self.alias_plan = Some(plan);
        }
        if let Some(name) = self.fixed_index() {
            match index::inspect(running.client(), name).await? {
                Some(mut state) => {
                    running.check_owner(&mut state, ctx).await?;
                    let position = running.indices.add(state);
                    running.update_mapping(position, &self.config, ctx).await?;
                    if !ctx.options.follow {
                        running.read_hashes(position, ctx).await?;
                    }
                }
                None => running.known_missing = Some(name.to_owned()),
            }
        }
        self.running = Some(running);
        Ok(())
    }

    /// The sink's own fixed index, when documents may go to it: not when `index` is a
    /// template, nor when a template transform chooses every document's index.
    fn fixed_index(&self) -> Option<&str> {
        match &self.target {
            Target::Fixed(name) if !self.routed_by_transform => Some(name),
            _ => None,
        }
    }

    /// Whether the `index` template reads the record's `field`.
    pub fn reads(&self, field: &str) -> bool {
        self.target.reads(field)
    }

    /// A client for the sink's cluster (secrets read, nothing sent yet).
    pub fn connect(&self) -> anyhow::Result<EsClient> {
        EsClient::new(
            &self.urls,
            config::auth(&self.config)?,
            &self.config.tls,
            self.config.timeout.0,
        )
    }

    /// Writes every batch from `input` until it closes, with up to `bulk.concurrency`
    /// bulk requests in flight. Returns an error when the run cannot go on.
    pub async fn consume(&mut self, mut input: mpsc::Receiver<Batch>, ctx: &StageContext) -> anyhow::Result<()> {
        let mut running = self.running.take().context("the Elasticsearch sink was not opened")?;
        let result = self.consume_opened(&mut running, &mut input, ctx).await;
        self.running = Some(running);
        result
    }

    /// Ends the run: deletes stale documents when the run was complete and nothing
    /// failed fatally, refreshes, and reports.
    pub async fn finish(self, upstream: UpstreamOutcome, ctx: &StageContext) -> anyhow::Result<SinkReport> {
        self.finish_run(upstream, ctx).await
    }

    /// Requests retried so far: `(whole requests, documents rejected with 429)`.
    /// Zero before `open`.
    pub fn retries(&self) -> (u64, u64) {
        self.running.as_ref().map(|r| r.service.retries.get()).unwrap_or((0, 0))
    }
}
