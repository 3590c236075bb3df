//! The second round trip of a SCAN page: every value that fits, with the first
//! bounded chunk of each collection, in one pipeline ([`read_page`], on the whole page
//! or on parts of it bounded in bytes); only large collections take more calls (see
//! `chunked`). No round trip per key. The first round trip is `inspect`'s.

use super::super::connection::errors::{fatal, is_unknown_command, is_wrong_type, server_error, unless_wrong_type};
use super::super::connection::reconnect::DbConnection;
use super::chunked::{command_name, read_rest, Chunked, Next, Partial};
use super::inspect::{Inspected, Inspection, Read, Skip};
use super::unreadable::Unreadable;
use super::value;
use crate::record::{show_key, KeyType, Record, RedisValue};

/// How values are read.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Ask `MEMORY USAGE` for every key.
    pub size_in_bytes: bool,
    /// Ask `TTL` for every key (records carry `ttl: None` otherwise).
    pub ttl: bool,
    /// Values larger than this are skipped.
    pub max_value_bytes: u64,
    /// Elements per call for large collections; collections longer than this are chunked.
    pub chunk_size: u32,
}

/// Keys of a page that were not emitted, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skips {
    pub vanished: u64,
    pub too_large: u64,
    pub unsupported_type: u64,
    pub json_module_missing: u64,
    /// Overwritten with another type each time it was read (see `reader`).
    pub kept_changing_type: u64,
}

impl Skips {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Skips) {
        self.vanished += other.vanished;
        self.too_large += other.too_large;
        self.unsupported_type += other.unsupported_type;
        self.json_module_missing += other.json_module_missing;
        self.kept_changing_type += other.kept_changing_type;
    }

    /// `(reason, count)` for every reason with a count, as the counters name them.
    pub fn reasons(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("vanished", self.vanished),
            ("too_large", self.too_large),
            ("unsupported_type", self.unsupported_type),
            ("json_module_missing", self.json_module_missing),
            ("kept_changing_type", self.kept_changing_type),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
    }
}

/// What a page gave: the records to send, in SCAN order, and what was skipped.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<Record>,
    pub skips: Skips,
    /// Keys skipped although they exist and earlier runs may have written them (too
    /// large, no RedisJSON module): stale deletion must keep those documents.
    pub skipped_existing: Vec<Vec<u8>>,
    /// Keys that have no document to keep any more: gone (`vanished`), of a type the
    /// rule does not select now, or of a type this connector does not read. Live mode
    /// deletes their documents; a full sync leaves that to stale deletion.
    pub gone: Vec<Vec<u8>>,
    /// Keys overwritten with another type while they were read (`WRONGTYPE`, or a
    /// collection read in chunks that ended another type): they exist, and are read
    /// again, from their type, by the caller.
    pub changed: Vec<Vec<u8>>,
    /// Keys whose value was read but could not be made a record (nested too deep,
    /// a reply of an unexpected shape): each is that key's failure (see `unreadable`).
    pub unreadable: Vec<Unreadable>,
}

/// The second round trip of a page: the value, or the first bounded chunk of a
/// collection, of every key that fits, in one pipeline. Collections longer than one
/// chunk and strings whose size needs a closer look are finished one at a time
/// afterwards, until the values read reach `budget` bytes: the keys left then are
/// given back, to be read as a part of their own (their sizes were unknown, or the
/// split would have kept them apart). Gives the records in SCAN order.
pub async fn read_page(
    connection: &DbConnection,
    settings: &FetchSettings,
    inspected: Inspected,
    budget: u64,
) -> anyhow::Result<(Page, Option<Inspected>)> {
    let Inspected { fixed_type, keys } = inspected;
    let mut read = PageRead::new(keys);
    read_what_fits(connection, settings, &mut read).await?;
    let later = read_the_rest(connection, settings, &mut read, budget).await?;
    Ok(records_in_scan_order(connection.db(), fixed_type, read, later))
}

/// A page's keys as their values are read: each key's value once read, its
/// collection read so far (a first chunk), and the bytes of the values read so far.
struct PageRead {
    entries: Vec<Inspection>,
    values: Vec<Option<RedisValue>>,
    partials: Vec<Option<Partial>>,
    /// Why a key's value, read, could not be made a record (that key's failure).
    failures: Vec<Option<String>>,
    bytes: u64,
}

impl PageRead {
    fn new(entries: Vec<Inspection>) -> PageRead {
        PageRead {
            values: vec![None; entries.len()],
            partials: (0..entries.len()).map(|_| None).collect(),
            failures: vec![None; entries.len()],
            entries,
            bytes: 0,
        }
    }

    /// Keeps `value` as key `i`'s, counting its bytes.
    fn keep(&mut self, i: usize, value: RedisValue, len: u64) {
        self.values[i] = Some(value);
        self.bytes += len;
    }

    /// Skips key `i` as too large, with a warning.
    fn too_large(&mut self, db: u32, i: usize, size: u64, max: u64) {
        warn_too_large(db, &self.entries[i].key, size, max);
        self.entries[i].outcome = Some(Skip::TooLarge);
    }
}

/// One pipeline reads every value that fits in one reply, and the first chunk of
/// every collection.
async fn read_what_fits(
    connection: &DbConnection,
    settings: &FetchSettings,
    read: &mut PageRead,
) -> anyhow::Result<()> {
    let chunk = settings.chunk_size.max(1);
    let mut pipe = redis::Pipeline::with_capacity(read.entries.len());
    pipe.ignore_errors();
    let mut asked = Vec::new();
    // Read before the pipeline is sent: a first chunk may come from a server that
    // restarted after this (then the rest of its read starts over, needlessly but
    // safely), never from one that restarted before it unnoticed by this count.
    let restarts = connection.restarts();
    for (i, entry) in read.entries.iter().enumerate() {
        let key = &entry.key;
        let key_type = entry.slot.key_type;
        match entry.plan {
            Some(Read::Whole) if key_type == KeyType::Json => pipe.cmd("JSON.GET").arg(key).arg("$"),
            Some(Read::Whole) => pipe.cmd("GET").arg(key),
            Some(Read::FirstChunk) => {
                let partial = Partial::start(key_type, restarts);
                pipe.add_command(partial.command(key, chunk));
                read.partials[i] = Some(partial);
                &mut pipe
            }
            _ => continue,
        };
        asked.push(i);
    }
    if asked.is_empty() {
        return Ok(());
    }
    let db = connection.db();
    let replies = connection
        .pipeline(&format!("reading the values of a page of db {db}"), &pipe)
        .await?;
    for (i, reply) in asked.into_iter().zip(replies) {
        take_reply(connection, settings, read, i, reply)?;
    }
    Ok(())
}

/// Key `i`'s reply to the first pipeline: its value, its first chunk, or a skip.
fn take_reply(
    connection: &DbConnection,
    settings: &FetchSettings,
    read: &mut PageRead,
    i: usize,
    reply: redis::Value,
) -> anyhow::Result<()> {
    let db = connection.db();
    let (max, chunk) = (settings.max_value_bytes, settings.chunk_size.max(1));
    let key_type = read.entries[i].slot.key_type;
    if let Some(error) = server_error(&reply) {
        read.partials[i] = None;
        if is_wrong_type(&error) {
            read.entries[i].outcome = Some(Skip::Changed);
        } else if key_type == KeyType::Json && is_unknown_command(&error) {
            read.entries[i].outcome = Some(Skip::JsonModuleMissing);
        } else {
            let command = match key_type {
                KeyType::String => "GET",
                KeyType::Json => "JSON.GET",
                _ => command_name(key_type),
            };
            return Err(fatal(connection, &error, command, &read.entries[i].key));
        }
        return Ok(());
    }
    if let Some(partial) = read.partials[i].as_mut() {
        if let Err(reason) = partial.add(reply, chunk) {
            read.failures[i] = Some(reason);
            read.partials[i] = None;
            return Ok(());
        }
        if partial.size > max {
            let size = partial.size;
            read.partials[i] = None;
            read.too_large(db, i, size, max);
        } else if partial.next == Next::Done && !partial.needs_existence_check() {
            // (An empty stream is confirmed by `read_the_rest`, through `read_rest`.)
            match read.partials[i].take().and_then(Partial::finish) {
                Some(value) => {
                    let len = value.payload_len() as u64;
                    read.keep(i, value, len);
                }
                None => read.entries[i].outcome = Some(Skip::Vanished),
            }
        }
        return Ok(());
    }
    // (With the size of what was read: a document's JSON text, a string's bytes.)
    let value = match key_type {
        KeyType::Json => {
            value::json_root(reply).map(|read| read.map(|(value, len)| (RedisValue::Json(value), len as u64)))
        }
        _ => value::bytes(reply).map(|read| {
            read.map(|bytes| {
                let len = bytes.len() as u64;
                (RedisValue::String(bytes), len)
            })
        }),
    };
    let value = match value {
        Ok(value) => value,
        Err(reason) => {
            read.failures[i] = Some(reason);
            return Ok(());
        }
    };
    match value {
        None => read.entries[i].outcome = Some(Skip::Vanished),
        Some((_, len)) if len > max => read.too_large(db, i, len, max),
        Some((value, len)) => read.keep(i, value, len),
    }
    Ok(())
}

/// The rare keys that need more calls, one at a time, while the page is under its
/// budget (at least one is read, so every call makes progress). Gives, per key,
/// whether it is left for later.
async fn read_the_rest(
    connection: &DbConnection,
    settings: &FetchSettings,
    read: &mut PageRead,
    budget: u64,
) -> anyhow::Result<Vec<bool>> {
    let db = connection.db();
    let (max, chunk) = (settings.max_value_bytes, settings.chunk_size.max(1));
    let mut read_one = false;
    let mut later = vec![false; read.entries.len()];
    for (i, left) in later.iter_mut().enumerate() {
        if read.entries[i].outcome.is_some() || read.values[i].is_some() || read.failures[i].is_some() {
            continue;
        }
        let more_calls =
            matches!(read.entries[i].plan, Some(Read::CheckedString | Read::Chunked)) || read.partials[i].is_some();
        if more_calls && read_one && read.bytes >= budget {
            *left = true;
            continue;
        }
        let key = &read.entries[i].key;
        let result = match (read.entries[i].plan, read.partials[i].take()) {
            (Some(Read::CheckedString), _) => read_checked_string(connection, key, max).await?,
            (Some(Read::Chunked), _) => {
                let start = Partial::start(read.entries[i].slot.key_type, connection.restarts());
                read_rest(connection, key, start, chunk, max).await?
            }
            (_, Some(partial)) => read_rest(connection, key, partial, chunk, max).await?,
            _ => continue,
        };
        read_one = true;
        match result {
            Chunked::Value(value) => {
                let len = value.payload_len() as u64;
                read.keep(i, value, len);
            }
            Chunked::Vanished => read.entries[i].outcome = Some(Skip::Vanished),
            Chunked::Changed => read.entries[i].outcome = Some(Skip::Changed),
            Chunked::TooLarge(size) => read.too_large(db, i, size, max),
            Chunked::Unreadable(reason) => read.failures[i] = Some(reason),
        }
    }
    Ok(later)
}

/// Records, in SCAN order, and what was skipped; the keys left for later given back,
/// to be read again from the start.
fn records_in_scan_order(
    db: u32,
    fixed_type: Option<KeyType>,
    read: PageRead,
    later: Vec<bool>,
) -> (Page, Option<Inspected>) {
    let mut page = Page {
        records: Vec::with_capacity(read.entries.len()),
        ..Page::default()
    };
    let mut rest = Inspected::empty(fixed_type);
    let entries = read.entries.into_iter().zip(read.values).zip(later).zip(read.failures);
    for (((entry, value), later), failure) in entries {
        let Inspection {
            key,
            slot,
            outcome,
            plan,
        } = entry;
        if let Some(reason) = failure {
            page.unreadable.push(Unreadable { key, reason });
            continue;
        }
        if later {
            rest.keys.push(Inspection {
                key,
                slot,
                outcome: None,
                plan: match plan {
                    Some(Read::CheckedString) => plan,
                    _ => Some(Read::Chunked),
                },
            });
            continue;
        }
        match (outcome, value) {
            (Some(Skip::Changed), _) if fixed_type.is_none() => page.changed.push(key),
            // (Changed with a rule's type: another type than the rule selects, out of
            // the selection now.)
            (Some(Skip::Vanished | Skip::Changed), _) | (None, None) => {
                page.skips.vanished += 1;
                page.gone.push(key);
            }
            (Some(Skip::TooLarge), _) => {
                page.skips.too_large += 1;
                page.skipped_existing.push(key);
            }
            (Some(Skip::Unsupported), _) => {
                page.skips.unsupported_type += 1;
                page.gone.push(key);
            }
            (Some(Skip::JsonModuleMissing), _) => {
                page.skips.json_module_missing += 1;
                page.skipped_existing.push(key);
            }
            (None, Some(value)) => page.records.push(Record {
                database: db,
                key,
                key_type: slot.key_type,
                value,
                size_in_bytes: slot.memory,
                ttl: slot.ttl,
                document: None,
                operation: crate::record::Operation::Upsert,
            }),
        }
    }
    (page, (!rest.keys.is_empty()).then_some(rest))
}

/// `STRLEN` then `GET`: for a string whose memory use is over the limit.
async fn read_checked_string(connection: &DbConnection, key: &[u8], max: u64) -> anyhow::Result<Chunked> {
    let db = connection.db();
    let doing = format!("STRLEN of key `{}` in db {db}", show_key(key));
    let len: Option<i64> = connection
        .run(&doing, |mut c| async move {
            unless_wrong_type(redis::cmd("STRLEN").arg(key).query_async(&mut c).await)
        })
        .await?;
    let Some(len) = len else {
        return Ok(Chunked::Changed);
    };
    if len as u64 > max {
        return Ok(Chunked::TooLarge(len as u64));
    }
    let doing = format!("GET of key `{}` in db {db}", show_key(key));
    let value: Option<Option<Vec<u8>>> = connection
        .run(&doing, |mut c| async move {
            unless_wrong_type(redis::cmd("GET").arg(key).query_async(&mut c).await)
        })
        .await?;
    Ok(match value {
        Some(Some(bytes)) => Chunked::Value(RedisValue::String(bytes)),
        Some(None) => Chunked::Vanished,
        None => Chunked::Changed,
    })
}

/// Warns that a key is skipped for its size.
pub(crate) fn warn_too_large(db: u32, key: &[u8], size: u64, max: u64) {
    tracing::warn!(
        "skipping key `{}` in db {db}: its value is {size} bytes or more, over max_value_bytes ({max})",
        show_key(key)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_list_only_what_happened() {
        let skips = Skips {
            vanished: 2,
            too_large: 0,
            unsupported_type: 1,
            json_module_missing: 0,
            kept_changing_type: 3,
        };
        assert_eq!(
            skips.reasons().collect::<Vec<_>>(),
            vec![("vanished", 2), ("unsupported_type", 1), ("kept_changing_type", 3)]
        );
    }
}
