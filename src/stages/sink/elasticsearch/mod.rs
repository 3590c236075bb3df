//! The Elasticsearch bulk sink stage: checks its configuration (pure), connects and
//! prepares the target index, writes documents in concurrent bulk requests, and at the
//! end of a complete run deletes stale documents and refreshes.
//!
//! Split by job: `client.rs` speaks HTTP to one or several nodes, `encoder.rs` writes
//! bulk bodies, `retry.rs` decides what to retry, `service.rs` sends bulks and acts on
//! the answers, `index.rs` sets indices up, `changes.rs` holds the content hashes and
//! the `(_id, hash)` map of change-aware sync, `stale.rs` finds and deletes stale
//! documents, `creation_check.rs` checks the pipeline's settings and mappings before
//! reading, `dry_check.rs` asks Elasticsearch about a dry run's documents, `compat.rs`
//! checks them offline when it cannot, `alias.rs` writes
//! behind an alias (rebuilds and swaps).
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
pub mod changes;
pub mod client;
pub mod compat;
pub mod creation_check;
pub mod dry_check;
pub mod encoder;
pub mod index;
pub mod repeated;
pub mod retry;
pub mod service;
pub mod stale;
pub mod transport;
pub mod writer;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use elasticsearch::http::{Method, Url};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::model::ElasticsearchSinkConfig;
use crate::templating;
use crate::dead_letter::DeadLetterEntry;
use crate::templating::checks::check_index_name;
use crate::templating::index::render_index;
use crate::document::{default_document, default_id};
use crate::record::{Batch, Record};
use crate::stages::{FieldError, ScansRestarted, SinkReport, StageContext, UpstreamOutcome};

use changes::{key_hash, Comparison, IndexHashes, CONTENT_HASH_FIELD};
use client::{Auth, EsClient, FailureKind};
use encoder::{Bulk, SentBulk};
use index::IndexState;
use repeated::RepeatedIds;
use retry::RetryCounters;
use service::BulkService;
use stale::{IdSet, Mode};

/// A partly filled bulk is sent when no record arrived for this long.
const FLUSH_IDLE: Duration = Duration::from_millis(500);

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

/// Where documents go.
enum Target {
    Fixed(String),
    /// The `index` template, compiled (named `index`).
    Template(minijinja::Environment<'static>),
}

/// State of an opened sink.
struct Running {
    service: Arc<BulkService>,
    server: String,
    /// Every index seen this run, in the order first seen.
    indices: Vec<IndexState>,
    positions: HashMap<String, usize>,
    /// Indices written to (by position in `indices`).
    written: Vec<bool>,
    /// The `(index, _id)` this run produced: kept with `delete_stale`, which reads it,
    /// and for rendered documents (an `id` template can give two records one `_id`).
    ids: IdSet,
    track_ids: bool,
    /// The pipeline's `delete_stale` (what the index's marker records). Live mode's
    /// follow phases keep no ids (a key written again and again is no repeated id,
    /// and the set would grow for as long as the phase runs): `track_ids` is off there.
    deletes_stale: bool,
    following: bool,
    /// Documents whose `_id` an earlier document of this run already had.
    repeated: RepeatedIds,
    /// The databases whose scan started over after a Redis restart (the run's).
    scans_restarted: Arc<ScansRestarted>,
    /// The sink's fixed index, when `open` found it missing: the first document
    /// creates it without asking again.
    known_missing: Option<String>,
    fatal: Option<String>,
    /// Documents rejected before any request (bad index name or index template).
    rejected_before: u64,
    /// The `(_id, content hash)` each index held when first seen (by position in
    /// `indices`); `None` for an index that did not exist then.
    maps: Vec<Option<IndexHashes>>,
    /// Documents of this run the indices lacked, and held with another content.
    new: u64,
    changed: u64,
    /// Documents and time of the maps read, for the summary.
    map_documents: u64,
    map_seconds: f64,
    /// Notes from `open`, for the summary.
    notes: Vec<String>,
    /// Dry run: documents waiting to be checked by Elasticsearch.
    dry_pending: Vec<dry_check::Pending>,
    /// Dry run: why documents are checked offline (Elasticsearch could not check them).
    dry_offline: Option<String>,
    /// Dry run: documents checked so far.
    dry_checked: u64,
    /// With `alias`: the fields added to the marker of the index this run creates.
    marker_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The largest request Elasticsearch can take: `http.max_content_length` is an `int`
/// number of bytes.
const MAX_REQUEST_BYTES: u64 = i32::MAX as u64;

impl ElasticsearchSink {
    /// Checks and compiles the configuration; no I/O.
    pub fn build(config: &ElasticsearchSinkConfig) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let urls_text = config.url.to_vec();
        let many = matches!(config.url, crate::config::model::OneOrMany::Many(_));
        if urls_text.is_empty() {
            errors.push(FieldError::new("/url", "give at least one Elasticsearch URL"));
        }
        let mut urls = Vec::new();
        for (i, text) in urls_text.iter().enumerate() {
            let pointer = if many { format!("/url/{i}") } else { "/url".to_owned() };
            match parse_url(text) {
                Ok(url) => urls.push(url),
                Err(message) => errors.push(FieldError::new(pointer, message)),
            }
        }
        let target = if let Some(alias) = &config.alias {
            // `open` names the concrete index, from the fingerprints.
            match check_index_name(alias) {
                Ok(()) => Some(Target::Fixed(String::new())),
                Err(message) => {
                    errors.push(FieldError::new("/alias", message));
                    None
                }
            }
        } else if config.index.contains("{{") || config.index.contains("{%") {
            templating::index::compile_index(&config.index, &mut errors).map(Target::Template)
        } else {
            match check_index_name(&config.index) {
                Ok(()) => Some(Target::Fixed(config.index.clone())),
                Err(message) => {
                    errors.push(FieldError::new("/index", message));
                    None
                }
            }
        };
        let has_password = config.password.is_some() || config.password_file.is_some();
        let has_api_key = config.api_key.is_some() || config.api_key_file.is_some();
        if config.username.is_some() && !has_password {
            errors.push(FieldError::new(
                "/username",
                "username needs a password (password or password_file)",
            ));
        }
        if has_password && config.username.is_none() {
            let pointer = if config.password.is_some() {
                "/password"
            } else {
                "/password_file"
            };
            errors.push(FieldError::new(pointer, "a password needs a username"));
        }
        if config.password.is_some() && config.password_file.is_some() {
            errors.push(FieldError::new(
                "/password_file",
                "give password or password_file, not both",
            ));
        }
        if config.api_key.is_some() && config.api_key_file.is_some() {
            errors.push(FieldError::new(
                "/api_key_file",
                "give api_key or api_key_file, not both",
            ));
        }
        if has_api_key && config.username.is_some() {
            let pointer = if config.api_key.is_some() {
                "/api_key"
            } else {
                "/api_key_file"
            };
            errors.push(FieldError::new(
                pointer,
                "use either an API key or username/password, not both",
            ));
        }
        if config.bulk.max_docs == 0 {
            errors.push(FieldError::new("/bulk/max_docs", "must be at least 1"));
        }
        if config.bulk.max_bytes.0 == 0 {
            errors.push(FieldError::new("/bulk/max_bytes", "must be more than 0 bytes"));
        } else if config.bulk.max_bytes.0 > MAX_REQUEST_BYTES {
            errors.push(FieldError::new(
                "/bulk/max_bytes",
                "must be at most 2GiB: Elasticsearch takes no larger request (http.max_content_length \
                 cannot be set higher, and is 100mb by default); a few MiB per request is fastest",
            ));
        }
        if config.bulk.concurrency == 0 {
            errors.push(FieldError::new("/bulk/concurrency", "must be at least 1"));
        }
        let fraction = config.delete_stale.max_fraction;
        if !(fraction > 0.0 && fraction <= 1.0) {
            errors.push(FieldError::new(
                "/delete_stale/max_fraction",
                format!("must be more than 0 and at most 1 (a fraction of the index), not {fraction}"),
            ));
        }
        if config.timeout.0.is_zero() {
            errors.push(FieldError::new("/timeout", "must be more than 0"));
        }
        match (errors.is_empty(), target) {
            (true, Some(target)) => Ok(ElasticsearchSink {
                config: config.clone(),
                urls,
                target,
                running: None,
                rendered_documents: None,
                fingerprint: 0,
                routed_by_transform: false,
                alias_plan: None,
            }),
            _ => Err(errors),
        }
    }

    /// Connects (one request that names the server and its version), then checks the
    /// fixed target index: its ownership marker (with stale deletion on, that the index
    /// is this pipeline's to clean; without, that no other pipeline keeps it exact with
    /// stale deletion), and in a dry run whether it exists. A missing index is created
    /// at the first document.
    pub async fn open(&mut self, ctx: &StageContext) -> anyhow::Result<()> {
        let auth = self.auth()?;
        let client = EsClient::new(&self.urls, auth, &self.config.tls, self.config.timeout.0)?;
        let server = check_cluster(&client, self.urls.len()).await?;
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
        let mut running = Running {
            service,
            server,
            indices: Vec::new(),
            positions: HashMap::new(),
            written: Vec::new(),
            ids: IdSet::default(),
            track_ids: self.config.delete_stale.enabled && !ctx.options.follow,
            deletes_stale: self.config.delete_stale.enabled,
            following: ctx.options.follow,
            repeated: RepeatedIds::default(),
            scans_restarted: ctx.scans_restarted.clone(),
            known_missing: None,
            fatal: None,
            rejected_before: 0,
            maps: Vec::new(),
            new: 0,
            changed: 0,
            map_documents: 0,
            map_seconds: 0.0,
            notes: Vec::new(),
            dry_pending: Vec::new(),
            dry_offline: None,
            dry_checked: 0,
            marker_fields: None,
        };
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
            let client = &running.service.transport;
            if let creation_check::Checked::NotAllowed(reason) = creation_check::check(client, &body).await? {
                running.notes.push(format!(
                    "the sink's settings and mappings were not checked before reading (the credentials may not \
                     simulate an index template: {reason}); Elasticsearch checks them when it creates the index"
                ));
            }
        }
        if let Some(alias) = &self.config.alias {
            let fingerprints = alias::Fingerprints::new(
                self.fingerprint,
                self.config.mappings.as_ref(),
                self.config.settings.as_ref(),
            );
            let plan = alias::plan(
                &running.service.transport,
                alias,
                fingerprints,
                self.config.mappings.as_ref(),
                &ctx.pipeline,
            )
            .await?;
            tracing::info!(pipeline = %ctx.pipeline, "{}", plan.describe(ctx.options.dry_run));
            running.notes.push(plan.describe(ctx.options.dry_run));
            running.marker_fields = Some(alias::marker_fields(alias, fingerprints));
            self.target = Target::Fixed(plan.target.clone());
            self.alias_plan = Some(plan);
        }
        if let Some(name) = self.fixed_index() {
            match index::inspect(&running.service.transport, name).await? {
                Some(mut state) => {
                    running.check_owner(&mut state, ctx).await?;
                    let position = running.add_index(state);
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

    /// Tells the sink whether a template stage renders the documents' bodies (a
    /// template with only `id` or `index` keeps the default document, and its mapping).
    pub fn set_rendered_documents(&mut self, rendered: bool) {
        self.rendered_documents = Some(rendered);
    }

    /// Gives the sink the pipeline fingerprint
    /// ([`crate::config::fingerprint::pipeline_fingerprint`]), which seeds every
    /// document's content hash.
    pub fn set_fingerprint(&mut self, fingerprint: u64) {
        self.fingerprint = fingerprint;
    }

    /// Tells the sink whether a template transform chooses every document's index.
    pub fn set_routed_by_transform(&mut self, routed: bool) {
        self.routed_by_transform = routed;
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
        match &self.target {
            Target::Fixed(_) => false,
            Target::Template(env) => templating::environment_reads(env, field),
        }
    }

    /// A client for the sink's cluster (secrets read, nothing sent yet).
    pub fn connect(&self) -> anyhow::Result<EsClient> {
        EsClient::new(&self.urls, self.auth()?, &self.config.tls, self.config.timeout.0)
    }

    /// Reads the secrets and chooses the authentication.
    fn auth(&self) -> anyhow::Result<Option<Auth>> {
        let password = match (&self.config.password, &self.config.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(read_secret(path, "password_file")?),
            (None, None) => None,
        };
        let api_key = match (&self.config.api_key, &self.config.api_key_file) {
            (Some(k), _) => Some(k.trim().to_owned()),
            (None, Some(path)) => Some(read_secret(path, "api_key_file")?),
            (None, None) => None,
        };
        Ok(match (&self.config.username, password, api_key) {
            (_, _, Some(key)) => Some(Auth::ApiKey(key)),
            (Some(username), Some(password), None) => Some(Auth::Basic {
                username: username.clone(),
                password,
            }),
            _ => None,
        })
    }

    /// Writes every batch from `input` until it closes, with up to `bulk.concurrency`
    /// bulk requests in flight. Returns an error when the run cannot go on.
    pub async fn consume(&mut self, mut input: mpsc::Receiver<Batch>, ctx: &StageContext) -> anyhow::Result<()> {
        let mut running = self.running.take().context("the Elasticsearch sink was not opened")?;
        let result = self.consume_opened(&mut running, &mut input, ctx).await;
        self.running = Some(running);
        result
    }

    async fn consume_opened(
        &self,
        running: &mut Running,
        input: &mut mpsc::Receiver<Batch>,
        ctx: &StageContext,
    ) -> anyhow::Result<()> {
        let max_bytes = usize::try_from(self.config.bulk.max_bytes.0).unwrap_or(usize::MAX);
        // Following changes, one bulk at a time: a key read twice (changed again
        // meanwhile) must land in the order it was read, and two requests in flight
        // may be applied in either order.
        let concurrency = if ctx.options.follow { 1 } else { self.config.bulk.concurrency as usize };
        // Following changes, a partly filled bulk goes as soon as nothing is waiting:
        // under load the bulks fill while the one before is in flight.
        let flush_idle = if ctx.options.follow { Duration::ZERO } else { FLUSH_IDLE };
        let max_docs = self.config.bulk.max_docs as usize;
        let capacity = max_bytes.min(8 << 20) + (max_bytes.min(8 << 20) >> 3);
        let dry_run = ctx.options.dry_run;
        let mut in_flight: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let mut bulk = Bulk::with_capacity(capacity);
        let mut scratch = Bulk::default();
        let seed = self.fingerprint;
        let full = ctx.options.full;

        let result: anyhow::Result<()> = async {
            loop {
                let next = if bulk.is_empty() {
                    input.recv().await
                } else {
                    match tokio::time::timeout(flush_idle, input.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            let full = std::mem::replace(&mut bulk, Bulk::with_capacity(capacity));
                            dispatch(&mut in_flight, &running.service, full, concurrency).await?;
                            continue;
                        }
                    }
                };
                let Some(batch) = next else { break };
                let started = Instant::now();
                ctx.counters.add_received(batch.len() as u64);
                for record in batch {
                    let Some(index_name) = self.target_index(&record, running, ctx)? else {
                        continue;
                    };
                    if let Some(document) = &record.document {
                        if let Err(reason) = check_id(&document.id) {
                            // Elasticsearch refuses the whole bulk request for one such id.
                            let index = Some(index_name.to_string());
                            self.reject(&record, document.id.clone(), index, running, ctx, "invalid_id", reason)?;
                            continue;
                        }
                        if document.body.contains_key(CONTENT_HASH_FIELD) {
                            let reason = format!(
                                "the document has a field `{CONTENT_HASH_FIELD}`, which redis-connector writes itself \
                                 (each document's content hash): rename that field in the template"
                            );
                            // Its key exists: what an earlier run wrote for it stays.
                            running.ids.insert_anywhere(&document.id);
                            let index = Some(index_name.to_string());
                            self.reject(&record, document.id.clone(), index, running, ctx, "reserved_field", reason)?;
                            continue;
                        }
                    }
                    if record.operation.is_delete() {
                        // Live mode: the key is gone, or a filter excludes it now.
                        if dry_run {
                            continue;
                        }
                        let id = match &record.document {
                            Some(document) => document.id.clone(),
                            None => default_id(record.database, &record.key),
                        };
                        bulk.push_delete(&index_name, &id, record.database, record.key);
                        self.flush_if_full(&mut bulk, &mut in_flight, running, capacity).await?;
                        continue;
                    }
                    let default_documents = !self.rendered_documents.unwrap_or(record.document.is_some());
                    let position = running
                        .prepare(&index_name, default_documents, &self.config, ctx)
                        .await?;
                    running.written[position] = true;
                    let mut record = record;
                    let document = record.document.take();
                    let rendered = document.is_some();
                    // A dry run encodes too (the hash is over the bytes), into a scratch
                    // bulk that is never sent.
                    let target = if dry_run { &mut scratch } else { &mut bulk };
                    let (id, hash) = match &document {
                        Some(document) => {
                            // A template that sets only `id` or `index` keeps the default
                            // body, whose `_timestamp` the hash leaves out.
                            let default_body = self.rendered_documents == Some(false);
                            let hash = target.push_index(
                                &index_name,
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
                            let hash = target.push_default(&index_name, &id, &record, &ctx.run_timestamp, seed);
                            (Cow::Owned(id), hash)
                        }
                    };
                    match running.compare(position, &index_name, &id, hash, rendered, &record, full) {
                        Comparison::Unchanged => {
                            target.pop_last();
                            ctx.counters.add_unchanged(1);
                            continue;
                        }
                        Comparison::New => running.new += 1,
                        Comparison::Changed | Comparison::Repeated => running.changed += 1,
                    }
                    if dry_run {
                        scratch.pop_last();
                        record.document = Some(match document {
                            Some(document) => document,
                            None => default_document(&record, &ctx.run_timestamp),
                        });
                        let state = &running.indices[position];
                        let mapping_addition = if state.existed { None } else { state.mapping.clone() };
                        running.dry_pending.push(dry_check::Pending {
                            index: index_name.to_string(),
                            record,
                            mapping_addition,
                        });
                        if running.dry_pending.len() >= max_docs {
                            self.check_dry_run(running, ctx).await?;
                        }
                        continue;
                    }
                    bulk.set_last_key(std::mem::take(&mut record.key));
                    self.flush_if_full(&mut bulk, &mut in_flight, running, capacity).await?;
                }
                ctx.counters.add_busy(started.elapsed());
                // Surface a failed request early rather than at the end.
                while let Some(done) = in_flight.try_join_next() {
                    flatten(done)?;
                }
            }
            if !running.dry_pending.is_empty() {
                self.check_dry_run(running, ctx).await?;
            }
            if !bulk.is_empty() {
                let last = std::mem::take(&mut bulk);
                dispatch(&mut in_flight, &running.service, last, concurrency).await?;
            }
            while let Some(done) = in_flight.join_next().await {
                flatten(done)?;
            }
            Ok(())
        }
        .await;

        if let Err(error) = result {
            in_flight.abort_all();
            let written = ctx.counters.out.load(std::sync::atomic::Ordering::Relaxed);
            let message = format!("{error:#}; {written} documents written before the failure");
            running.fatal = Some(message.clone());
            return Err(anyhow::anyhow!(message));
        }
        Ok(())
    }

    /// Sends the bulk once it holds `bulk.max_docs` documents or `bulk.max_bytes`
    /// (the last document alone when it took the bulk over the bytes).
    async fn flush_if_full(
        &self,
        bulk: &mut Bulk,
        in_flight: &mut JoinSet<anyhow::Result<()>>,
        running: &Running,
        capacity: usize,
    ) -> anyhow::Result<()> {
        let max_docs = self.config.bulk.max_docs as usize;
        let max_bytes = usize::try_from(self.config.bulk.max_bytes.0).unwrap_or(usize::MAX);
        let concurrency = if running.following { 1 } else { self.config.bulk.concurrency as usize };
        if bulk.byte_len() > max_bytes && bulk.len() > 1 {
            let tail = bulk.split_off_last();
            let full = std::mem::replace(bulk, tail);
            dispatch(in_flight, &running.service, full, concurrency).await?;
        }
        if bulk.len() >= max_docs || bulk.byte_len() >= max_bytes {
            let full = std::mem::replace(bulk, Bulk::with_capacity(capacity));
            dispatch(in_flight, &running.service, full, concurrency).await?;
        }
        Ok(())
    }

    /// The index a record goes to: the document's own, else the sink's (rendered when
    /// templated). `None` when the record was dead-lettered (bad template or name).
    fn target_index<'a>(
        &'a self,
        record: &Record,
        running: &mut Running,
        ctx: &StageContext,
    ) -> anyhow::Result<Option<Cow<'a, str>>> {
        let rendered = match (&record.document, &self.target) {
            (Some(document), _) if document.index.is_some() => Ok(document.index.clone().unwrap_or_default()),
            (_, Target::Fixed(name)) => return Ok(Some(Cow::Borrowed(name))),
            (_, Target::Template(env)) => render_index(env, record, &ctx.pipeline),
        };
        let (error_type, reason) = match rendered {
            Ok(name) => match check_index_name(&name) {
                Ok(()) => return Ok(Some(Cow::Owned(name))),
                Err(message) => ("invalid_index_name", message),
            },
            Err(message) => ("index_template_error", message),
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
        self.reject(record, id, None, running, ctx, error_type, reason)?;
        Ok(None)
    }

    /// Dry run: checks the pending documents (with Elasticsearch, or offline when it
    /// cannot) and counts each as the real run would: written, or failed and
    /// dead-lettered (in the dry run's file) with the reason.
    async fn check_dry_run(&self, running: &mut Running, ctx: &StageContext) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut running.dry_pending);
        // Offline first, for every document; Elasticsearch then checks the first
        // `dry_check::CHECKED_IN_FULL` documents of the run and, after them, those the
        // offline check flags (its verdict and words win). It takes about 10 to 20
        // times what indexing the same documents takes, so checking them all would
        // make a dry run of millions of keys slower than the real run.
        let mut verdicts: Vec<Option<(String, String)>> = pending
            .iter()
            .map(|p| {
                let document = p.document()?;
                let position = running.positions.get(&p.index).copied();
                let mapping = position.and_then(|at| running.indices[at].mapping.as_ref());
                check_offline(mapping, &p.index, document).map(|reason| ("document_parsing_exception".to_owned(), reason))
            })
            .collect();
        if running.dry_offline.is_none() {
            let chosen: Vec<usize> = (0..pending.len())
                .filter(|&i| running.dry_checked + (i as u64) < dry_check::CHECKED_IN_FULL || verdicts[i].is_some())
                .collect();
            let asked: Vec<&dry_check::Pending> = chosen.iter().map(|&i| &pending[i]).collect();
            match dry_check::check(&running.service.transport, &asked).await {
                Ok(found) => {
                    for (i, verdict) in chosen.into_iter().zip(found) {
                        verdicts[i] = verdict;
                    }
                }
                Err(dry_check::Unavailable(reason)) => {
                    tracing::warn!("Elasticsearch cannot check the dry run's documents ({reason}); checking them offline");
                    running.dry_offline = Some(reason);
                }
            }
        }
        running.dry_checked += pending.len() as u64;
        for (p, verdict) in pending.into_iter().zip(verdicts) {
            let Some(document) = p.document() else { continue };
            match verdict {
                None => ctx.counters.add_out(1),
                Some((error_type, reason)) => {
                    let id = document.id.clone();
                    let index = Some(p.index.clone());
                    self.reject(&p.record, id, index, running, ctx, error_type.as_str(), reason)?;
                }
            }
        }
        Ok(())
    }

    /// Sends a record the sink cannot write (no valid index, an id Elasticsearch
    /// refuses) to the dead-letter file, before any request, and counts it as failed.
    /// The line holds the document (the default one when no template rendered one) and
    /// `index` when it is a valid name, so it can be replayed.
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &self,
        record: &Record,
        id: String,
        index: Option<String>,
        running: &mut Running,
        ctx: &StageContext,
        error_type: &str,
        reason: String,
    ) -> anyhow::Result<()> {
        let (key, is_base64) = record.key_text();
        running
            .service
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
                    running.service.dead_letter.path().display()
                )
            })?;
        ctx.counters.add_failed(1);
        running.rejected_before += 1;
        Ok(())
    }

    /// Ends the run: deletes stale documents when the run was complete and nothing
    /// failed fatally, refreshes, and reports.
    pub async fn finish(mut self, upstream: UpstreamOutcome, ctx: &StageContext) -> anyhow::Result<SinkReport> {
        let mut running = self.running.take().context("the Elasticsearch sink was not opened")?;
        let snapshot = ctx.counters.snapshot();
        let dry_run = ctx.options.dry_run;
        let mut report = SinkReport {
            written: snapshot.out,
            failed: snapshot.failed,
            ..SinkReport::default()
        };
        report.notes.push(running.server.clone());
        report.notes.append(&mut running.notes);
        if let Some(reason) = &running.dry_offline {
            report.notes.push(format!(
                "Elasticsearch could not check the documents ({reason}): they were checked offline against \
                 the mapping, for type clashes only"
            ));
        }
        let mut errors = Vec::new();

        // A complete run that found nothing still leaves its fixed index in place (a
        // run that failed or was interrupted before any document creates nothing).
        if let (Some(name), false) = (self.fixed_index(), dry_run) {
            let read_everything = upstream.complete && !ctx.cancel.is_cancelled();
            if read_everything && running.fatal.is_none() && !running.positions.contains_key(name) {
                let name = name.to_owned();
                let mut body = index::creation_body(
                    self.config.settings.as_ref(),
                    self.config.mappings.as_ref(),
                    !self.rendered_documents.unwrap_or(false),
                    &ctx.pipeline,
                    self.config.delete_stale.enabled,
                );
                if let Some(fields) = &running.marker_fields {
                    alias::mark_creation_body(&mut body, fields);
                }
                index::create(&running.service.transport, &name, &body).await?;
                running.add_index(IndexState {
                    name: name.clone(),
                    existed: false,
                    created: true,
                    owner: Some(ctx.pipeline.to_string()),
                    owner_deletes_stale: Some(self.config.delete_stale.enabled),
                    docs_at_start: 0,
                    mapping: None,
                });
            }
        }

        for state in &running.indices {
            if dry_run {
                report.notes.push(match (&state.existed, &state.owner) {
                    (false, _) => format!("index {} does not exist: a real run would create it", state.name),
                    (true, Some(owner)) => format!(
                        "index {} exists with {} documents (written by pipeline `{owner}`)",
                        state.name, state.docs_at_start
                    ),
                    (true, None) => format!("index {} exists with {} documents", state.name, state.docs_at_start),
                });
            }
        }

        let fixed = self.fixed_index();
        // A live mode follow phase wrote changed keys only: nothing tells stale
        // documents from the others (its syncs delete them).
        if self.config.delete_stale.enabled && !running.following {
            if running.fatal.is_some() {
                report.notes.push("stale deletion skipped: the run failed".to_owned());
            } else if !upstream.complete || ctx.cancel.is_cancelled() {
                report
                    .notes
                    .push("stale deletion skipped: the run did not read everything".to_owned());
            } else if ctx.failed_before_sink.without_id() > 0 {
                report.notes.push(format!(
                    "stale deletion skipped: {} records failed before their document id was rendered, \
                     so what earlier runs wrote for their keys cannot be told from stale documents",
                    ctx.failed_before_sink.without_id()
                ));
            } else {
                let unknown = ctx.failed_before_sink.skipped_without_id();
                if unknown > 0 {
                    report.notes.push(format!(
                        "{unknown} keys the source skipped have no rendered id: documents earlier runs \
                         wrote for them are deleted as stale"
                    ));
                }
                // Records a template could not render, and keys the source skipped
                // (too large, ...), still exist in Redis: keep their documents, in
                // whichever index they are.
                for hash in ctx.failed_before_sink.id_hashes() {
                    running.ids.insert_anywhere_hash(hash);
                }
                // Documents routed per document (a templated `index`, in the sink or in
                // a template transform): also cover the indices earlier runs of this
                // pipeline wrote to and this run did not (their keys are all gone).
                // A run that wrote nothing cannot tell routing is used: it checks only
                // the sink's own index, which errs on the side of deleting nothing.
                let routed = fixed.is_none()
                    || running
                        .indices
                        .iter()
                        .zip(&running.written)
                        .any(|(state, written)| *written && Some(state.name.as_str()) != fixed);
                if routed {
                    for name in index::owned_by(&running.service.transport, &ctx.pipeline).await? {
                        if !running.positions.contains_key(&name) {
                            if let Some(state) = index::inspect(&running.service.transport, &name).await? {
                                running.add_index(state);
                            }
                        }
                    }
                }
                for (i, state) in running.indices.iter().enumerate() {
                    let owned = state.owner.as_deref() == Some(&*ctx.pipeline);
                    let in_scope = running.written[i] || Some(state.name.as_str()) == fixed || (routed && owned);
                    if !in_scope || !(state.existed || state.created) {
                        continue;
                    }
                    if let Err(message) = index::stale_deletion_allowed(state, &ctx.pipeline) {
                        errors.push(message);
                        continue;
                    }
                    if let Some(map) = &running.maps[i] {
                        // Change-aware: the map read before the first write says which
                        // ids no document of this run produced; no second read of ids.
                        let stale_entries = map.unseen(|key| running.ids.kept_anywhere(key));
                        let (found, total) = (stale_entries.len() as u64, map.len() as u64);
                        report.stale_found += found;
                        let max_fraction = self.config.delete_stale.max_fraction;
                        let guard = stale::guard_message(&state.name, found, total, max_fraction);
                        if dry_run {
                            report.notes.push(format!(
                                "{found} of {total} documents in index {} are stale: a real run would delete them",
                                state.name
                            ));
                            // The words the real run would stop with.
                            if let (Some(guard), false) = (guard, ctx.options.allow_mass_delete) {
                                errors.push(guard);
                            }
                        } else if let (Some(message), false) = (guard, ctx.options.allow_mass_delete) {
                            errors.push(message);
                        } else if found > 0 {
                            index::refresh(&running.service.transport, std::slice::from_ref(&state.name)).await?;
                            let chunk = self.config.bulk.max_docs as usize;
                            let outcome =
                                stale::delete_by_hash(&running.service, &state.name, &stale_entries, chunk).await?;
                            report.deleted_stale += outcome.deleted;
                            errors.extend(outcome.errors);
                            if outcome.deleted > 0 {
                                report.notes.push(format!(
                                    "deleted {} stale documents of {total} from index {}",
                                    outcome.deleted, state.name
                                ));
                            }
                        }
                        continue;
                    }
                    if state.created {
                        // Created by this run: it holds only this run's documents.
                        continue;
                    }
                    if !dry_run {
                        index::refresh(&running.service.transport, std::slice::from_ref(&state.name)).await?;
                    }
                    let mode = if dry_run {
                        Mode::Count
                    } else if ctx.options.allow_mass_delete {
                        Mode::DeleteAsFound
                    } else {
                        Mode::Collect {
                            max_fraction: self.config.delete_stale.max_fraction,
                        }
                    };
                    let deleted_before = report.deleted_stale;
                    let scan = stale::scan(&running.service, &state.name, &running.ids, mode).await?;
                    report.stale_found += scan.stale;
                    let guard = stale::guard_message(
                        &state.name,
                        scan.stale,
                        scan.total,
                        self.config.delete_stale.max_fraction,
                    );
                    match mode {
                        Mode::Count => {
                            report.notes.push(format!(
                                "{} of {} documents in index {} are stale: a real run would delete them",
                                scan.stale, scan.total, state.name
                            ));
                            // The words the real run would stop with.
                            if let (Some(guard), false) = (guard, ctx.options.allow_mass_delete) {
                                errors.push(guard);
                            }
                        }
                        Mode::DeleteAsFound => {
                            report.deleted_stale += scan.deleted;
                            errors.extend(scan.errors);
                        }
                        Mode::Collect { .. } => match guard {
                            Some(message) => errors.push(message),
                            None => {
                                let (deleted, failures) = delete_in_chunks(
                                    &running.service,
                                    &state.name,
                                    &scan.held,
                                    self.config.bulk.max_docs as usize,
                                )
                                .await?;
                                report.deleted_stale += deleted;
                                errors.extend(failures);
                            }
                        },
                    }
                    let deleted_here = report.deleted_stale - deleted_before;
                    if deleted_here > 0 {
                        report.notes.push(format!(
                            "deleted {deleted_here} stale documents of {} from index {}",
                            scan.total, state.name
                        ));
                    }
                }
            }
        }

        if self.config.refresh && !dry_run && running.fatal.is_none() {
            let names: Vec<String> = running
                .indices
                .iter()
                .enumerate()
                .filter(|(i, s)| running.written[*i] || s.created)
                .map(|(_, s)| s.name.clone())
                .collect();
            index::refresh(&running.service.transport, &names).await?;
        }

        report.unchanged = snapshot.unchanged;
        report.new = Some(running.new);
        report.changed = Some(running.changed);
        let maps_bytes: usize = running.maps.iter().flatten().map(IndexHashes::memory_bytes).sum();
        let maps_count = running.maps.iter().flatten().count();
        if maps_count > 0 {
            report.notes.push(format!(
                "compared with the (_id, content hash) of {} documents read from {maps_count} {} in {:.2} s \
                 ({:.1} MB in memory)",
                running.map_documents,
                if maps_count == 1 { "index" } else { "indices" },
                running.map_seconds,
                maps_bytes as f64 / 1e6
            ));
        }
        if ctx.options.full && !dry_run {
            report
                .notes
                .push("--full: every document was rewritten, whatever its content hash".to_owned());
        }
        report.notes.extend(running.repeated.notes());
        let (requests, items) = running.service.retries.get();
        if requests > 0 || items > 0 {
            report.notes.push(format!(
                "retried {requests} bulk requests and {items} documents Elasticsearch rejected with 429"
            ));
        }
        // The summary names the dead-letter file of rejected documents once, with the
        // count: no note repeats it here.
        report.targets = running
            .indices
            .iter()
            .zip(&running.written)
            .filter(|(_, written)| **written)
            .map(|(state, _)| state.name.clone())
            .collect();
        if let (true, Some(name)) = (report.targets.is_empty(), fixed) {
            report.targets.push(name.to_owned());
        }
        if let (Some(plan), false) = (&self.alias_plan, dry_run) {
            let blocked = if let Some(fatal) = &running.fatal {
                Some(format!("the run failed ({fatal})"))
            } else if !upstream.complete || ctx.cancel.is_cancelled() {
                Some("the run did not read everything".to_owned())
            } else if report.failed > 0 {
                Some(format!("{} documents failed", report.failed))
            } else if ctx.failed_before_sink.without_id() > 0 || !ctx.failed_before_sink.id_hashes().is_empty() {
                Some("records failed before the sink".to_owned())
            } else if !errors.is_empty() {
                Some("the run reported errors".to_owned())
            } else {
                None
            };
            let ending = alias::Ending {
                pipeline: &ctx.pipeline,
                blocked,
                max_fraction: self.config.delete_stale.max_fraction,
                allow_mass_delete: ctx.options.allow_mass_delete,
                keep_previous: self.config.keep_previous as usize,
            };
            let (notes, error) = alias::finish_build(&running.service.transport, plan, ending).await?;
            report.notes.extend(notes);
            errors.extend(error);
        }
        report.targets.sort();
        if !errors.is_empty() {
            report.error = Some(errors.join("; "));
        }
        Ok(report)
    }

    /// Requests retried so far: `(whole requests, documents rejected with 429)`.
    /// Zero before `open`.
    pub fn retries(&self) -> (u64, u64) {
        self.running.as_ref().map(|r| r.service.retries.get()).unwrap_or((0, 0))
    }
}

impl Running {
    /// Compares a document this run produced for `index` (at `position`) with what the
    /// index held, and notes its id as produced (for stale deletion, and to tell when a
    /// document replaces one this run wrote). `rendered`: the id came from a template
    /// transform, not from the key. `full`: every document counts as changed.
    #[allow(clippy::too_many_arguments)]
    fn compare(
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
        let held = self.maps[position].as_mut().and_then(|map| map.compare(key_hash(id), hash, full));
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

    /// Before the first write to an existing index: adds the content hash field to its
    /// mapping (not in a dry run), then reads every `(_id, hash)` it holds.
    async fn read_hashes(&mut self, position: usize, ctx: &StageContext) -> anyhow::Result<()> {
        let state = &mut self.indices[position];
        if !ctx.options.dry_run {
            changes::ensure_hash_field(&self.service.transport, state).await?;
        }
        let started = Instant::now();
        let map = changes::load(&self.service, &state.name).await?;
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
        self.maps[position] = Some(map);
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
    async fn check_owner(&self, state: &mut IndexState, ctx: &StageContext) -> anyhow::Result<()> {
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
                index::claim(&self.service.transport, state, &ctx.pipeline, true).await?;
                tracing::info!(index = %state.name, "marked the empty index as this pipeline's (_meta.{})", index::META_KEY);
            }
            // A marker that does not say counts as `delete_stale: true` (see
            // `index::writing_allowed`), so only a change is written.
            Some(owner) if owner == &*ctx.pipeline && state.owner_deletes_stale.unwrap_or(true) != self.deletes_stale => {
                match index::claim(&self.service.transport, state, &ctx.pipeline, self.deletes_stale).await {
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

    fn add_index(&mut self, state: IndexState) -> usize {
        let position = self.indices.len();
        self.positions.insert(state.name.clone(), position);
        self.indices.push(state);
        self.written.push(false);
        self.maps.push(None);
        position
    }

    /// The position of `name` in `indices`, creating the index at its first document
    /// (not in a dry run), with the built-in mapping when `default_documents`.
    async fn prepare(
        &mut self,
        name: &str,
        default_documents: bool,
        config: &ElasticsearchSinkConfig,
        ctx: &StageContext,
    ) -> anyhow::Result<usize> {
        if let Some(&position) = self.positions.get(name) {
            return Ok(position);
        }
        let known_missing = self.known_missing.take().is_some_and(|missing| missing == name);
        let client = &self.service.transport;
        let found = if known_missing { None } else { index::inspect(client, name).await? };
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
        let position = self.add_index(state);
        // (A live mode follow phase compares nothing: it writes what changed.)
        if existed && !self.following {
            self.read_hashes(position, ctx).await?;
        }
        Ok(position)
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

/// Sends `bulk` once fewer than `concurrency` requests are in flight.
async fn dispatch(
    in_flight: &mut JoinSet<anyhow::Result<()>>,
    service: &Arc<BulkService>,
    bulk: Bulk,
    concurrency: usize,
) -> anyhow::Result<()> {
    if bulk.is_empty() {
        return Ok(());
    }
    while in_flight.len() >= concurrency {
        if let Some(done) = in_flight.join_next().await {
            flatten(done)?;
        }
    }
    let service = service.clone();
    let sent = SentBulk::from_bulk(bulk);
    in_flight.spawn(async move { service.write(sent).await });
    Ok(())
}

fn flatten(done: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    done.map_err(|e| anyhow::anyhow!("a bulk request task failed: {e}"))?
}

async fn delete_in_chunks(
    service: &BulkService,
    index: &str,
    ids: &[String],
    chunk: usize,
) -> anyhow::Result<(u64, Vec<String>)> {
    let mut deleted = 0;
    let mut errors = Vec::new();
    for part in ids.chunks(chunk.max(1)) {
        let (d, e) = service.delete(index, part).await?;
        deleted += d;
        errors.extend(e);
    }
    Ok((deleted, errors))
}

/// The one request of `open`: which server answers, and its version. With several
/// nodes, each is tried until one answers (the client itself moves on from a node
/// that refuses connections; this also moves on from one that does not answer in time).
async fn check_cluster(client: &EsClient, nodes: usize) -> anyhow::Result<String> {
    let path = "_nodes/_local?filter_path=cluster_name,nodes.*.version,nodes.*.name";
    let mut last = None;
    for _ in 0..nodes {
        match client.request(Method::Get, path, None).await {
            Ok(reply) if reply.status == 200 => {
                let body = reply.json()?;
                let node = body["nodes"]
                    .as_object()
                    .and_then(|n| n.values().next())
                    .cloned()
                    .unwrap_or_default();
                return Ok(format!(
                    "Elasticsearch {} at {} (cluster {}, node {})",
                    node["version"].as_str().unwrap_or("of unknown version"),
                    reply.node,
                    body["cluster_name"].as_str().unwrap_or("?"),
                    node["name"].as_str().unwrap_or("?"),
                ));
            }
            Ok(reply) => return Err(client.status_error(&reply, "GET _nodes/_local (the connection check)")),
            Err(failure) if failure.kind == FailureKind::Tls => return Err(anyhow::anyhow!("{failure}")),
            Err(failure) => last = Some(failure),
        }
    }
    let failure = last.expect("at least one node was tried");
    Err(anyhow::anyhow!("{failure}: is the url right and the server up?"))
}

fn read_secret(path: &std::path::Path, field: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {field} {}", path.display()))?;
    let secret = text.trim().to_owned();
    anyhow::ensure!(!secret.is_empty(), "{field} {} is empty", path.display());
    crate::redact::register(&secret);
    Ok(secret)
}

fn parse_url(text: &str) -> Result<Url, String> {
    if !text.contains("://") && Url::parse(&format!("http://{}", text.trim())).is_ok() {
        // `127.0.0.1:9200` or `user:pass@host:9200`: the scheme was forgotten (the URL
        // parser would take `user` or `127.0.0.1` for one). A password in it is masked
        // where every message is (`config::load`, `redact`).
        let shown = text.trim();
        return Err(format!("`{shown}` has no scheme: write `http://{shown}` (or `https://`)"));
    }
    let url = Url::parse(text.trim()).map_err(|e| format!("`{}` is not a URL: {e}", redact_text(text)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "`{}`: the scheme must be http or https",
            client::redact_url(&url)
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` has no host", client::redact_url(&url)));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{}`: a node URL takes no query or fragment",
            client::redact_url(&url)
        ));
    }
    Ok(url)
}

/// A URL text that did not parse, with anything that looks like `user:pass@` removed.
fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &text[..scheme], &text[at + 1..]),
        _ => text.to_owned(),
    }
}

/// Elasticsearch's limit on a document id: at most 512 bytes. One longer id makes it
/// refuse the whole bulk request (`action_request_validation_exception`), so it is
/// caught here, for that document alone.
fn check_id(id: &str) -> Result<(), String> {
    const MAX_ID_BYTES: usize = 512;
    if id.len() <= MAX_ID_BYTES {
        return Ok(());
    }
    let start: String = id.chars().take(40).collect();
    Err(format!(
        "the document id `{start}…` is {} bytes long; Elasticsearch takes at most {MAX_ID_BYTES}: \
         make the `id` template shorter (e.g. `{{{{ key | md5 }}}}`)",
        id.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{DeleteStale, OneOrMany};
    use crate::record::{KeyType, RedisValue};

    fn config(yaml: &str) -> ElasticsearchSinkConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn pointers(result: Result<ElasticsearchSink, Vec<FieldError>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn a_valid_configuration_builds() {
        assert!(ElasticsearchSink::build(&config("url: http://127.0.0.1:9200\nindex: redis")).is_ok());
        assert!(ElasticsearchSink::build(&config(
            "url: [http://a:9200, https://b:9200]\nindex: 'redis-{{ database }}'\ndelete_stale: {max_fraction: 1}"
        ))
        .is_ok());
    }

    #[test]
    fn bad_urls_are_located_by_pointer() {
        assert_eq!(
            pointers(ElasticsearchSink::build(&config("url: 'not a url'\nindex: i"))),
            ["/url"]
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: [http://a:9200, 'ftp://b']\nindex: i"
            ))),
            ["/url/1"]
        );
    }

    #[test]
    fn a_url_error_never_shows_its_password() {
        let errors = ElasticsearchSink::build(&config("url: 'ftp://elastic:hunter2@b'\nindex: i"))
            .err()
            .unwrap();
        assert!(!errors[0].message.contains("hunter2"), "{}", errors[0].message);
        assert_eq!(redact_text("http://u:hunter2@[bad"), "http://…@[bad");
    }

    #[test]
    fn index_template_syntax_errors_point_at_index() {
        let errors = ElasticsearchSink::build(&config("url: http://a:9200\nindex: 'redis-{{ database '"))
            .err()
            .unwrap();
        assert_eq!(errors[0].pointer, "/index");
        assert!(
            errors[0].message.starts_with("invalid index template"),
            "{}",
            errors[0].message
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config("url: http://a:9200\nindex: Users"))),
            ["/index"]
        );
    }

    #[test]
    fn credentials_must_come_in_pairs_and_not_mix() {
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: http://a:9200\nindex: i\nusername: u"
            ))),
            ["/username"]
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: http://a:9200\nindex: i\npassword: p"
            ))),
            ["/password"]
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: http://a:9200\nindex: i\nusername: u\npassword: p\napi_key: k"
            ))),
            ["/api_key"]
        );
    }

    #[test]
    fn sizes_and_fractions_are_checked() {
        let mut c = config("url: http://a:9200\nindex: i");
        c.bulk.max_docs = 0;
        c.bulk.concurrency = 0;
        c.delete_stale = DeleteStale {
            enabled: true,
            max_fraction: 0.0,
        };
        assert_eq!(
            pointers(ElasticsearchSink::build(&c)),
            ["/bulk/max_docs", "/bulk/concurrency", "/delete_stale/max_fraction"]
        );
        c = config("url: http://a:9200\nindex: i\nbulk: {max_bytes: 10GB}");
        assert_eq!(pointers(ElasticsearchSink::build(&c)), ["/bulk/max_bytes"]);
        c = config("url: http://a:9200\nindex: i\ndelete_stale: {max_fraction: 1.5}");
        assert_eq!(pointers(ElasticsearchSink::build(&c)), ["/delete_stale/max_fraction"]);
        c.url = OneOrMany::Many(vec![]);
        c.delete_stale.max_fraction = 0.5;
        assert_eq!(pointers(ElasticsearchSink::build(&c)), ["/url"]);
    }

    #[test]
    fn the_index_template_sees_the_record_and_the_pipeline() {
        let sink = ElasticsearchSink::build(&config(
            "url: http://a:9200\nindex: '{{ pipeline }}-{{ key_type }}-{{ database }}'",
        ))
        .unwrap();
        let Target::Template(env) = &sink.target else {
            panic!("templated")
        };
        let record = Record {
            database: 3,
            key: b"k".to_vec(),
            key_type: KeyType::Hash,
            value: RedisValue::Hash(vec![]),
            size_in_bytes: None,
            ttl: None,
            document: None,
            operation: crate::record::Operation::Upsert,
        };
        assert_eq!(render_index(env, &record, "users").unwrap(), "users-hash-3");
    }

    #[test]
    fn ids_over_512_bytes_are_refused_with_their_length() {
        assert!(check_id(&"a".repeat(512)).is_ok());
        let error = check_id(&"é".repeat(300)).unwrap_err();
        assert!(error.contains("is 600 bytes long; Elasticsearch takes at most 512"), "{error}");
        assert!(error.contains("{{ key | md5 }}"), "{error}");
    }
}
