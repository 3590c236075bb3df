//! The stage kinds and the registry that builds a stage from its `type:`.
//!
//! Each kind is one variant of a closed enum ([`Source`], [`Transform`], [`Sink`]) with
//! its code in one file or folder below. Building a stage is pure (no I/O): it checks
//! and compiles the configuration (templates, globs, regexes), so `validate` runs the
//! very same code as `run`. Running a stage does the I/O.

pub mod context;
pub mod drift;
pub mod sink;
pub mod source;
pub mod transform;
pub mod upstream;

use std::collections::BTreeMap;

use tokio::sync::mpsc;

pub use context::{RunOptions, ScansRestarted, StageContext};
pub use upstream::Upstream;

use crate::config::model::{SinkConfig, SourceConfig, TransformConfig};
use crate::config::FieldError;
use crate::record::Batch;

/// What a source reports at its end.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceReport {
    /// Keys read, by database then by Redis type name.
    pub keys: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Lines worth showing in the summary (warnings, fallbacks used).
    pub notes: Vec<String>,
}

/// Whether everything upstream of the sink finished: the source read all it was
/// asked to and no stage failed fatally or was cancelled. Stale deletion needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamOutcome {
    pub complete: bool,
}

/// What a sink reports at its end.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SinkReport {
    /// Documents written (or, in a dry run, that would be written).
    pub written: u64,
    /// Documents the index already held with the same content hash, not written.
    pub unchanged: u64,
    /// Of the documents sent (or, in a dry run, that would be): those the index did
    /// not hold, and those it held with another content. `None` for a sink that does
    /// not compare (NDJSON).
    pub new: Option<u64>,
    pub changed: Option<u64>,
    /// Documents the index held with the same content, written again (`--full`).
    pub rewritten: u64,
    /// Documents rejected and sent to the dead-letter file.
    pub failed: u64,
    /// Documents deleted as stale.
    pub deleted_stale: u64,
    /// Stale documents found (deleted or, in a dry run or when guarded, not).
    pub stale_found: u64,
    /// The indices the documents went to (or would go to); empty for a sink without.
    pub targets: Vec<String>,
    /// Lines worth showing in the summary.
    pub notes: Vec<String>,
    /// Set when the run must exit non-zero although nothing failed fatally
    /// (e.g. the mass-delete guard stopped a stale deletion).
    pub error: Option<String>,
}

/// The source stage.
// One value per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Redis(source::redis::RedisSource),
    /// Live mode's follow phase: changed keys, read as they are now (built by the live
    /// runner, not from a pipeline file).
    Changes(source::redis::change_source::ChangeSource),
}

impl Source {
    /// Checks and compiles the configuration; no I/O. `ttl_read`: whether any later
    /// stage reads the record's `ttl`; when none does, it is not asked (one command
    /// per key fewer).
    pub fn build(config: &SourceConfig, ttl_read: bool) -> Result<Source, Vec<FieldError>> {
        match config {
            SourceConfig::Redis(redis) => source::redis::RedisSource::build(redis).map(|mut redis| {
                redis.set_ttl_needed(ttl_read);
                Source::Redis(redis)
            }),
        }
    }

    /// Tells a source built elsewhere (live mode's follow phase) whether any later
    /// stage reads the record's `ttl`; when none does, it is not asked.
    pub fn set_ttl_needed(&mut self, needed: bool) {
        match self {
            Source::Redis(redis) => redis.set_ttl_needed(needed),
            Source::Changes(changes) => changes.set_ttl_needed(needed),
        }
    }

    /// Reads everything, sending batches to `out`, until done or `ctx.cancel` fires.
    pub async fn run(self, out: mpsc::Sender<Batch>, ctx: StageContext) -> anyhow::Result<SourceReport> {
        match self {
            Source::Redis(redis) => redis.run(out, ctx).await,
            Source::Changes(changes) => changes.run(out, ctx).await,
        }
    }
}

/// A transform stage.
pub enum Transform {
    Template(transform::template::TemplateTransform),
    Filter(transform::filter::FilterTransform),
}

impl Transform {
    /// Checks and compiles the configuration; no I/O.
    pub fn build(config: &TransformConfig) -> Result<Transform, Vec<FieldError>> {
        match config {
            TransformConfig::Template(t) => transform::template::TemplateTransform::build(t).map(Transform::Template),
            TransformConfig::Filter(f) => transform::filter::FilterTransform::build(f).map(Transform::Filter),
        }
    }

    /// Whether this stage reads the record's `field` (`ttl`, ...), so the source
    /// must fetch it.
    pub fn reads(&self, field: &str) -> bool {
        match self {
            Transform::Template(t) => t.reads(field),
            Transform::Filter(f) => f.reads(field),
        }
    }

    /// Whether this stage makes each record's document (a template, which replaces an
    /// earlier one's document, index included), rather than passing it on.
    pub fn makes_documents(&self) -> bool {
        matches!(self, Transform::Template(_))
    }

    /// Whether this stage renders the documents' bodies (not only `id` or `index`).
    pub fn renders_body(&self) -> bool {
        match self {
            Transform::Template(t) => t.renders_body(),
            Transform::Filter(_) => false,
        }
    }

    /// Whether this stage renders the documents' ids.
    pub fn renders_id(&self) -> bool {
        match self {
            Transform::Template(t) => t.renders_id(),
            Transform::Filter(_) => false,
        }
    }

    /// Whether this stage chooses each document's index.
    pub fn renders_index(&self) -> bool {
        match self {
            Transform::Template(t) => t.renders_index(),
            Transform::Filter(_) => false,
        }
    }

    /// Whether this stage can still name the document of a key that no longer exists
    /// from its `key` and `database` alone (its `id` and `index` read nothing else).
    pub fn locates_by_key(&self) -> bool {
        match self {
            Transform::Template(t) => t.locates_by_key(),
            Transform::Filter(_) => true,
        }
    }

    /// Transforms one batch. Per-record failures are counted in `ctx.counters` and
    /// written to `ctx.dead_letter`; the records that go on are returned.
    pub fn apply(&self, batch: Batch, ctx: &StageContext) -> Batch {
        match self {
            Transform::Template(t) => t.apply(batch, ctx),
            Transform::Filter(f) => f.apply(batch, ctx),
        }
    }
}

/// The sink stage.
pub enum Sink {
    Elasticsearch(Box<sink::elasticsearch::ElasticsearchSink>),
    Ndjson(sink::ndjson::NdjsonSink),
}

impl Sink {
    /// Checks and compiles the configuration; no I/O. `upstream`: what the stages
    /// before it do to records.
    pub fn build(config: &SinkConfig, upstream: &Upstream) -> Result<Sink, Vec<FieldError>> {
        match config {
            SinkConfig::Elasticsearch(es) => sink::elasticsearch::ElasticsearchSink::build_receiving(es, upstream)
                .map(|s| Sink::Elasticsearch(Box::new(s))),
            SinkConfig::Ndjson(nd) => sink::ndjson::NdjsonSink::build(nd).map(Sink::Ndjson),
        }
    }

    /// Whether this sink reads the record's `field` (in an `index` template).
    pub fn reads(&self, field: &str) -> bool {
        match self {
            Sink::Elasticsearch(es) => es.reads(field),
            Sink::Ndjson(_) => false,
        }
    }

    /// Whether the sink can place the document of a key that no longer exists from
    /// its `key` and `database` alone (a fixed index, or an `index` template reading
    /// nothing else of the record).
    pub fn locates_by_key(&self) -> bool {
        ["key_type", "value", "size_in_bytes", "ttl"]
            .iter()
            .all(|field| !self.reads(field))
    }

    /// Connects and prepares the target (checks the cluster, creates the index).
    /// Called before the source starts, so a bad target fails the run before any read.
    pub async fn open(&mut self, ctx: &StageContext) -> anyhow::Result<()> {
        match self {
            Sink::Elasticsearch(es) => es.open(ctx).await,
            Sink::Ndjson(nd) => nd.open(ctx).await,
        }
    }

    /// Writes every batch from `input` until it closes.
    pub async fn consume(&mut self, input: mpsc::Receiver<Batch>, ctx: &StageContext) -> anyhow::Result<()> {
        match self {
            Sink::Elasticsearch(es) => es.consume(input, ctx).await,
            Sink::Ndjson(nd) => nd.consume(input, ctx).await,
        }
    }

    /// Ends the run: flushes, deletes stale documents when `upstream.complete`, refreshes.
    pub async fn finish(self, upstream: UpstreamOutcome, ctx: &StageContext) -> anyhow::Result<SinkReport> {
        match self {
            Sink::Elasticsearch(es) => es.finish(upstream, ctx).await,
            Sink::Ndjson(nd) => nd.finish(upstream, ctx).await,
        }
    }
}
