//! What the executor hands every stage: who it is, where failures go, its counters,
//! the cancellation signal and the run's options.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::dead_letter::DeadLetter;
use crate::stats::StageCounters;

/// Options of one run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read and render, check the target, write nothing.
    pub dry_run: bool,
    /// Let stale deletion remove more than `delete_stale.max_fraction` of the index.
    pub allow_mass_delete: bool,
    /// Rendered documents to show in a dry run.
    pub sample: usize,
    /// A live mode phase applying changes: sinks send what they hold as soon as no
    /// record is waiting, instead of waiting for a full bulk.
    pub follow: bool,
    /// Rewrite every document, even one whose content hash says it is unchanged.
    pub full: bool,
}

/// Everything a stage gets from the executor.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The stage's place in the pipeline: `source`, `transforms[0]`, `sink`.
    pub stage: String,
    /// This stage's counters.
    pub counters: Arc<StageCounters>,
    /// Where failed records go.
    pub dead_letter: DeadLetter,
    /// Fires on Ctrl-C / SIGTERM: sources stop reading; later stages drain their input.
    pub cancel: CancellationToken,
    /// The run's options.
    pub options: Arc<RunOptions>,
    /// Estimated number of keys the source will read (0 = unknown); the source sets it.
    pub estimated_total: Arc<AtomicU64>,
    /// Timestamp of the run's start (ISO 8601 UTC), used as the documents' `_timestamp`.
    pub run_timestamp: Arc<str>,
    /// The run's records that failed before the sink (shared by every stage).
    pub failed_before_sink: Arc<FailedBeforeSink>,
    /// Databases whose key scan started over (shared by every stage).
    pub scans_restarted: Arc<ScansRestarted>,
    /// Set in a `verify` run (a dry run that writes nothing, not even dead letters):
    /// where the sink puts what it finds drifting instead of checking documents.
    pub drift: Option<Arc<crate::stages::drift::Drift>>,
}

/// The databases whose key scan started over because Redis restarted while they were
/// read: the source marks them before it sends a page read after the restart, so a
/// later stage that sees a key twice can name that cause (the new scan read the key
/// again), not another.
#[derive(Debug, Default)]
pub struct ScansRestarted(Mutex<BTreeSet<u32>>);

impl ScansRestarted {
    /// Marks `database`'s scan as started over.
    pub fn mark(&self, database: u32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(database);
    }

    /// Whether `database`'s scan started over so far in this run.
    pub fn contains(&self, database: u32) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(&database)
    }
}

/// The document ids of records that failed on their way to the sink (a template that
/// could not render them, a key the source skipped although it exists): their keys
/// still exist, so stale deletion must keep what an earlier run wrote for them. Ids
/// are kept as 64-bit xxh3 hashes; a record that failed before its id was known is
/// only counted.
#[derive(Debug, Default)]
pub struct FailedBeforeSink(Mutex<FailedIds>);

#[derive(Debug, Default)]
struct FailedIds {
    ids: HashSet<u64>,
    without_id: u64,
    /// Keys skipped by the source whose id is unknown (a template renders ids).
    skipped_without_id: u64,
    /// A template renders the documents' ids (so a skipped key's id is unknown).
    ids_rendered: bool,
}

/// The 64-bit hash by which a failed record's document id is kept (xxh3 of the id):
/// stale deletion looks ids up by the same hash.
pub fn failed_id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

impl FailedBeforeSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, FailedIds> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Says whether a template stage renders the documents' ids (`id:`); without one,
    /// a document's id is the default one, computed from its key.
    pub fn set_ids_rendered(&self, rendered: bool) {
        self.lock().ids_rendered = rendered;
    }

    /// Notes a key the source skipped although it exists (too large, ...): its id is
    /// the default one unless a template renders ids, when it is not known and only
    /// counted. (Unlike a record that failed, such a key does not stop stale
    /// deletion: it may stay too large for good, and would stop it for good.)
    pub fn add_skipped_key(&self, database: u32, key: &[u8]) {
        let mut inner = self.lock();
        if inner.ids_rendered {
            inner.skipped_without_id += 1;
        } else {
            inner
                .ids
                .insert(failed_id_hash(&crate::document::default_id(database, key)));
        }
    }

    /// Notes a key the source failed to read (its value could not be parsed): a failed
    /// record, with the default id unless a template renders ids (then its id is not
    /// known, and stale deletion is skipped, as for a template's failure before `id`).
    pub fn add_failed_key(&self, database: u32, key: &[u8]) {
        let rendered = self.lock().ids_rendered;
        if rendered {
            self.add(None);
        } else {
            self.add(Some(&crate::document::default_id(database, key)));
        }
    }

    /// Keys skipped by the source whose document id is not known.
    pub fn skipped_without_id(&self) -> u64 {
        self.lock().skipped_without_id
    }

    /// Notes one failed record, with its document id when it was known.
    pub fn add(&self, id: Option<&str>) {
        let mut inner = self.lock();
        match id {
            Some(id) => {
                inner.ids.insert(failed_id_hash(id));
            }
            None => inner.without_id += 1,
        }
    }

    /// The [`failed_id_hash`]es of the ids noted.
    pub fn id_hashes(&self) -> Vec<u64> {
        self.lock().ids.iter().copied().collect()
    }

    /// Failed records whose id was not known.
    pub fn without_id(&self) -> u64 {
        self.lock().without_id
    }
}

impl StageContext {
    /// A context for a stage of `pipeline`, with fresh counters; used by the executor
    /// and by tests that drive a single stage.
    pub fn new(pipeline: &str, stage: &str, dead_letter: DeadLetter, options: RunOptions) -> Self {
        StageContext {
            pipeline: Arc::from(pipeline),
            stage: stage.to_owned(),
            counters: Arc::new(StageCounters::default()),
            dead_letter,
            cancel: CancellationToken::new(),
            options: Arc::new(options),
            estimated_total: Arc::new(AtomicU64::new(0)),
            run_timestamp: Arc::from(crate::document::now_timestamp()),
            failed_before_sink: Arc::new(FailedBeforeSink::default()),
            scans_restarted: Arc::new(ScansRestarted::default()),
            drift: None,
        }
    }

    /// The same run, another stage, with its own counters.
    pub fn for_stage(&self, stage: &str) -> Self {
        StageContext {
            stage: stage.to_owned(),
            counters: Arc::new(StageCounters::default()),
            ..self.clone()
        }
    }
}
