//! The source of a follow phase: takes changed keys from the pending set in pages and
//! reads them with the full sync's own page reader (pipelined `TYPE`/`TTL`/`MEMORY
//! USAGE`, then the values, big collections in chunks), so a change becomes the same
//! record a full sync would make. Values are read now, whatever the events said
//! (latest wins, event order does not matter). A key that is gone, or now of a type
//! its rules do not select, becomes a delete.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::sync::mpsc;

use super::super::connection::connect::Connector;
use super::super::connection::reconnect::DbConnection;
use super::super::read::inspect::inspect_page;
use super::super::read::reader::{read_part, ReadSettings, PART_BYTES};
use crate::record::{Batch, Operation, Record};
use crate::stages::source::redis::change_source::pending::{LiveState, Reason, TypeMask};
use crate::stages::{SourceReport, StageContext};

/// The log target of live mode's per-stage timings (`RUST_LOG=redis_connector::live::timing=debug`):
/// for each page of changed keys, how long its oldest key waited in the pending set,
/// how long reading it took and how long the next stage took to accept it; for each
/// bulk of a follow phase, how long it waited for the one before and how long
/// Elasticsearch took to answer it.
pub const TIMING: &str = "redis_connector::live::timing";

/// Milliseconds to the hundredth, for the timing lines.
pub fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

/// Connections of a live run, one per node and database, kept across phases.
pub type Connections = Arc<Mutex<HashMap<(usize, u32), Arc<DbConnection>>>>;

/// Changed keys of one node and database, each with the types its rules select.
type Keys = Vec<(Vec<u8>, TypeMask)>;

/// Reads changed keys until its phase ends.
pub struct ChangeSource {
    pub(super) nodes: Vec<Arc<Connector>>,
    pub(super) connections: Connections,
    pub(super) settings: Arc<ReadSettings>,
    pub(super) state: Arc<LiveState>,
    /// Keys taken from the pending set at a time.
    pub(super) page: usize,
    /// Whether a gone key's document can be named from its key (else a resync
    /// deletes it).
    pub(super) locates_by_key: bool,
}

impl ChangeSource {
    /// Whether records carry `ttl` (some later stage reads it).
    pub fn set_ttl_needed(&mut self, needed: bool) {
        // (Settings hold the semaphore every reader shares: a copy keeps the same one.)
        let mut fetch = self.settings.fetch.clone();
        fetch.ttl = needed;
        self.settings = Arc::new(ReadSettings {
            fetch,
            scan_count: self.settings.scan_count,
            pages_in_flight: self.settings.pages_in_flight,
            bytes_in_flight: self.settings.bytes_in_flight.clone(),
        });
    }

    async fn connection(&self, node: usize, db: u32) -> anyhow::Result<Arc<DbConnection>> {
        if let Some(connection) = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(node, db))
        {
            return Ok(connection.clone());
        }
        let connection = Arc::new(DbConnection::open(self.nodes[node].clone(), db).await?);
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((node, db), connection.clone());
        Ok(connection)
    }

    /// Applies pending changes, one page at a time, until `ctx.cancel` fires (a resync
    /// is due, or the drain time is over) or, when draining, nothing is pending. A
    /// page taken is always read and sent whole: no change is dropped half-way.
    pub async fn run(self, out: mpsc::Sender<Batch>, ctx: StageContext) -> anyhow::Result<SourceReport> {
        let mut report = SourceReport::default();
        loop {
            if ctx.cancel.is_cancelled() {
                break;
            }
            let (taken, waited) = self.state.take_timed(self.page);
            if taken.is_empty() {
                if self.state.is_draining() {
                    break;
                }
                tokio::select! {
                    _ = self.state.arrived.notified() => {}
                    _ = ctx.cancel.cancelled() => break,
                }
                continue;
            }
            let taken_keys = taken.len();
            let mut groups: BTreeMap<(usize, u32), Keys> = BTreeMap::new();
            for (key, types) in taken {
                groups
                    .entry((key.node, key.database))
                    .or_default()
                    .push((key.key, types));
            }
            let (mut read_time, mut handoff_time) = (Duration::ZERO, Duration::ZERO);
            for ((node, db), keys) in groups {
                let reading = Instant::now();
                let batch = self.read(node, db, keys, &ctx, &mut report).await?;
                read_time += reading.elapsed();
                if batch.is_empty() {
                    continue;
                }
                let n = batch.len() as u64;
                let handing = Instant::now();
                if out.send(batch).await.is_err() {
                    // The next stage stopped; the executor reports why.
                    return Ok(report);
                }
                handoff_time += handing.elapsed();
                ctx.counters.add_received(n);
            }
            tracing::debug!(
                target: TIMING,
                keys = taken_keys,
                pending_ms = ms(waited),
                read_ms = ms(read_time),
                handoff_ms = ms(handoff_time),
                "live: a page of changed keys applied"
            );
        }
        Ok(report)
    }

    /// Reads one node's and database's changed keys into upserts and deletes.
    async fn read(
        &self,
        node: usize,
        db: u32,
        keys: Keys,
        ctx: &StageContext,
        report: &mut SourceReport,
    ) -> anyhow::Result<Batch> {
        let connection = self.connection(node, db).await?;
        let types: HashMap<Vec<u8>, TypeMask> = keys.iter().cloned().collect();
        let keys: Vec<Vec<u8>> = keys.into_iter().map(|(key, _)| key).collect();
        let inspected = inspect_page(&connection, &self.settings.fetch, keys, None).await?;
        let mut batch = Vec::new();
        for part in inspected.split(PART_BYTES) {
            let mut pages = read_part(connection.clone(), self.settings.clone(), part);
            while let Some((mut page, _permit)) = pages.try_next().await? {
                super::super::read::unreadable::report(ctx, db, std::mem::take(&mut page.unreadable))?;
                for (reason, n) in page.skips.reasons() {
                    // Gone keys become deletes below, not skips.
                    let n = if reason == "vanished" || reason == "unsupported_type" {
                        0
                    } else {
                        n
                    };
                    if n > 0 {
                        ctx.counters.add_skipped(reason, n);
                    }
                }
                for mut record in page.records {
                    let selected = types.get(&record.key).is_none_or(|mask| mask.allows(record.key_type));
                    if !selected {
                        // Overwritten with a type its rules do not select.
                        record.operation = Operation::Delete;
                    }
                    *report
                        .keys
                        .entry(db)
                        .or_default()
                        .entry(record.key_type.redis_name().to_owned())
                        .or_default() += 1;
                    batch.push(record);
                }
                for key in page.gone {
                    if self.locates_by_key {
                        batch.push(Record::gone(db, key));
                    } else {
                        self.state.mark_dirty(Reason::DeleteWithoutId);
                    }
                }
            }
        }
        Ok(batch)
    }
}
