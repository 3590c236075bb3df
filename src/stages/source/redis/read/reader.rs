//! Reading one database: its scans one after the other, each a stream of SCAN pages
//! whose values are fetched `pages_in_flight` at a time (SCAN and fetch overlap),
//! each page sent on as one batch. Keys selected by two rules are sent once.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::AbortOnDropHandle;

use super::super::connection::reconnect::DbConnection;
use super::inspect::{inspect_page, Inspected};
use super::page::{read_page, FetchSettings, Page, Skips};
use super::scan::{ScanSpec, Scanner};
use crate::record::{show_key, Batch};
use crate::stages::StageContext;

/// A page of big values is read and sent in parts of at most this many bytes (by the
/// sizes `MEMORY USAGE` or `STRLEN` gave, and by the bytes actually read where they are
/// unknown: plus one value), so memory does not grow with value sizes.
pub const PART_BYTES: u64 = 2 * 1024 * 1024;

/// Bytes of values read but not yet handed to the next stage, all databases together.
pub const BYTES_IN_FLIGHT: u64 = 16 * 1024 * 1024;

/// Times a key overwritten with another type while it was read is read again (from
/// its new type); after that it is skipped as `kept_changing_type`, its document of an
/// earlier run kept, so a key rewritten without pause cannot stall the run.
const READS_OF_A_CHANGING_KEY: u32 = 3;

/// The unit of [`ReadSettings::bytes_in_flight`]'s permits.
const PERMIT_BYTES: u64 = 1024;

/// How one database is read.
#[derive(Debug)]
pub struct ReadSettings {
    pub fetch: FetchSettings,
    pub scan_count: u32,
    pub pages_in_flight: u32,
    /// Shared by every database's reader: one permit per KiB of values in flight
    /// ([`BYTES_IN_FLIGHT`] in all), taken before a part is read, given back once it
    /// is sent on.
    pub bytes_in_flight: Arc<Semaphore>,
}

impl ReadSettings {
    /// The semaphore [`ReadSettings::bytes_in_flight`] starts with.
    pub fn bytes_in_flight_semaphore() -> Arc<Semaphore> {
        Arc::new(Semaphore::new((BYTES_IN_FLIGHT / PERMIT_BYTES) as usize))
    }
}

/// What reading one database gave.
#[derive(Debug, Default)]
pub struct DatabaseReport {
    /// Keys sent, by Redis type name.
    pub keys: BTreeMap<String, u64>,
    pub skips: Skips,
}

/// The pages of a part, as [`read_part`] yields them.
pub(crate) type PageStream = Pin<Box<dyn Stream<Item = anyhow::Result<(Page, OwnedSemaphorePermit)>> + Send>>;

/// The pages of one part, each with the permits its bytes took. One part gives one
/// page, or several when its collections turn out big (their sizes unknown,
/// `size_in_bytes: false`): `read_page` stops once it holds [`PART_BYTES`] and gives
/// back the rest, read next as parts of its own. Keys overwritten with another type
/// while they were read are inspected again and read as a part of their own.
/// (Boxed: the reader polls several at once, and a named type keeps the spawned
/// task's future `Send`.)
pub(crate) fn read_part(connection: Arc<DbConnection>, settings: Arc<ReadSettings>, part: Inspected) -> PageStream {
    Box::pin(futures::stream::try_unfold(
        VecDeque::from([(part, 1)]),
        move |mut pending: VecDeque<(Inspected, u32)>| {
            let (connection, settings) = (connection.clone(), settings.clone());
            async move {
                let Some((part, reads)) = pending.pop_front() else {
                    return Ok(None);
                };
                let permits = part
                    .estimated_bytes()
                    .div_ceil(PERMIT_BYTES)
                    .clamp(1, BYTES_IN_FLIGHT / PERMIT_BYTES) as u32;
                let permit = settings
                    .bytes_in_flight
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading db {}: {e}", connection.db()))?;
                let (mut page, rest) = read_page(&connection, &settings.fetch, part, PART_BYTES).await?;
                if let Some(rest) = rest {
                    pending.extend(rest.split(PART_BYTES).into_iter().map(|p| (p, reads)));
                }
                let changed = std::mem::take(&mut page.changed);
                if reads >= READS_OF_A_CHANGING_KEY {
                    for key in changed {
                        tracing::warn!(
                            db = connection.db(),
                            "skipping key `{}`: overwritten with another type each of the {reads} times it was read",
                            show_key(&key)
                        );
                        page.skips.kept_changing_type += 1;
                        page.skipped_existing.push(key);
                    }
                } else if !changed.is_empty() {
                    let again = inspect_page(&connection, &settings.fetch, changed, None).await?;
                    pending.extend(again.split(PART_BYTES).into_iter().map(|p| (p, reads + 1)));
                }
                Ok(Some(((page, permit), pending)))
            }
        },
    ))
}

/// Reads every scan of one database, sending each page's records on `out`.
/// Returns early (with what was read) when `ctx.cancel` fires or `out` is closed.
pub async fn read_database(
    connection: Arc<DbConnection>,
    specs: Vec<ScanSpec>,
    settings: Arc<ReadSettings>,
    out: mpsc::Sender<Batch>,
    ctx: StageContext,
) -> anyhow::Result<DatabaseReport> {
    let mut report = DatabaseReport::default();
    // Only rules of the same database can overlap; one walk needs no memory of keys.
    let dedupe = specs.len() > 1;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for spec in specs {
        let key_type = spec.key_type;
        // The walk runs ahead in its own task, `pages_in_flight` pages ahead of the
        // fetches, so SCAN round trips overlap with value reads.
        let in_flight = settings.pages_in_flight.max(1) as usize;
        let (page_tx, page_rx) = mpsc::channel::<Vec<Vec<u8>>>(in_flight);
        let scanner = Scanner::new(spec, settings.scan_count, &connection);
        let walker = spawn_walker(scanner, &connection, page_tx);
        let seen = &mut seen;
        let connection = &connection;
        let settings = &settings;
        let pages = futures::stream::unfold(page_rx, |mut rx| async move { rx.recv().await.map(|keys| (keys, rx)) })
            .map(move |mut keys| {
                if dedupe {
                    keys.retain(|key| seen.insert(key.clone()));
                }
                keys
            })
            .filter(|keys| std::future::ready(!keys.is_empty()))
            .map(|keys| inspect_page(connection, &settings.fetch, keys, key_type))
            .buffered(in_flight)
            .map_ok(|inspected| {
                futures::stream::iter(inspected.split(PART_BYTES).into_iter().map(Ok::<_, anyhow::Error>))
            })
            .try_flatten()
            // Up to `in_flight` parts are read at once, and their pages handed on as soon
            // as they are read, in no set order: a part waiting for permits never holds
            // up a page that is ready to be sent (and to give its permits back).
            .map_ok(|part| read_part(connection.clone(), settings.clone(), part))
            .try_flatten_unordered(in_flight);
        let mut pages = std::pin::pin!(pages);
        loop {
            let started = Instant::now();
            let next = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Ok(report),
                next = pages.next() => next,
            };
            let Some((mut page, _permit)) = next.transpose()? else {
                // The walk ended (or failed: its error is the run's).
                walker
                    .await
                    .map_err(|e| anyhow::anyhow!("the SCAN walk of db {} stopped: {e}", connection.db()))??;
                break;
            };
            count_skips(&ctx, connection, &mut page, &mut report)?;
            ctx.counters.add_busy(started.elapsed());
            if page.records.is_empty() {
                continue;
            }
            let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
            for record in &page.records {
                *by_type.entry(record.key_type.redis_name()).or_default() += 1;
            }
            let n = page.records.len() as u64;
            if connection.restart_counts().scans_started_over > 0 {
                // Keys of this page may have been sent before the restart, by the old scan.
                ctx.scans_restarted.mark(connection.db());
            }
            let sent = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Ok(report),
                sent = out.send(page.records) => sent,
            };
            if sent.is_err() {
                // The next stage has stopped; the executor reports why.
                return Ok(report);
            }
            // A source's `received` counts keys read, its `out` records passed on:
            // the same here, as every record read is sent.
            ctx.counters.add_received(n);
            ctx.counters.add_out(n);
            for (name, count) in by_type {
                *report.keys.entry(name.to_owned()).or_default() += count;
            }
        }
    }
    Ok(report)
}

/// Spawns the SCAN walk of one rule, sending each non-empty page of keys on `page_tx`
/// (it stops when the receiver is gone); dropping the handle aborts it.
fn spawn_walker(
    mut scanner: Scanner,
    connection: &Arc<DbConnection>,
    page_tx: mpsc::Sender<Vec<Vec<u8>>>,
) -> AbortOnDropHandle<anyhow::Result<()>> {
    AbortOnDropHandle::new(tokio::spawn({
        let connection = connection.clone();
        async move {
            while let Some(keys) = scanner.next_page(&connection).await? {
                if !keys.is_empty() && page_tx.send(keys).await.is_err() {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        }
    }))
}

/// Counts a page's skipped keys: by reason in the counters, those failed before the
/// sink, the unreadable ones, and in the database's report.
fn count_skips(
    ctx: &StageContext,
    connection: &DbConnection,
    page: &mut Page,
    report: &mut DatabaseReport,
) -> anyhow::Result<()> {
    for (reason, n) in page.skips.reasons() {
        ctx.counters.add_skipped(reason, n);
    }
    for key in &page.skipped_existing {
        ctx.failed_before_sink.add_skipped_key(connection.db(), key);
    }
    super::unreadable::report(ctx, connection.db(), std::mem::take(&mut page.unreadable))?;
    report.skips.add(&page.skips);
    Ok(())
}
