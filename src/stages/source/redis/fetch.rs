//! Reading one SCAN page in two pipelined round trips: `TYPE` (unless the rule fixes
//! it), `TTL` and `MEMORY USAGE` (or `STRLEN`) for every key ([`inspect_page`]), then
//! every value that fits, with the first bounded chunk of each collection
//! ([`read_page`], on the whole page or on parts of it bounded in bytes). Only large
//! collections take more calls (see `chunked`). No round trip per key.

use redis::{RedisError, Value};

use super::chunked::{command_name, read_rest, Chunked, Next, Partial};
use super::reconnect::DbConnection;
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
}

/// Why a key was not emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Vanished,
    /// Overwritten with another type while it was read: to be read again.
    Changed,
    TooLarge,
    Unsupported,
    JsonModuleMissing,
}

/// What is known about one key while its page is read.
struct Slot {
    key_type: KeyType,
    ttl: Option<i64>,
    memory: Option<u64>,
    /// `STRLEN` of a string, when asked.
    len: Option<u64>,
}

/// One value-read plan for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// One command reads the whole value (string, RedisJSON).
    Whole,
    /// The first bounded chunk of a collection, in the page's pipeline.
    FirstChunk,
    /// `STRLEN` first (its memory was over the limit), then `GET` if it fits.
    CheckedString,
    /// Read in chunks from the start, stopping past the size limit.
    Chunked,
}

fn server_error(value: &Value) -> Option<RedisError> {
    match value {
        Value::ServerError(error) => Some(RedisError::from(error.clone())),
        _ => None,
    }
}

/// `WRONGTYPE`: the key holds another type than the command reads. RedisJSON's
/// `JSON.GET` on a key of another type says it in its own words instead, "Existing key
/// has wrong Redis type" (2.4.9, from its redis-module crate).
fn is_wrong_type(error: &RedisError) -> bool {
    error.code() == Some("WRONGTYPE") || error.to_string().contains("key has wrong Redis type")
}

/// A reply, or `None` when the key now holds another type (`WRONGTYPE`: it was
/// deleted and created again, or overwritten, since its type was asked): the key we
/// saw is gone, as a vanished one is; not a reason to stop the run.
pub fn unless_wrong_type<T>(result: redis::RedisResult<T>) -> redis::RedisResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_wrong_type(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

fn is_unknown_command(error: &RedisError) -> bool {
    let text = error.to_string();
    text.contains("unknown command") || text.contains("unknown subcommand")
}

/// A server error on one key of a pipeline that no skip explains: the run fails.
fn fatal(
    connection: &DbConnection,
    error: &RedisError,
    command: &str,
    key: &[u8],
) -> anyhow::Error {
    anyhow::anyhow!(connection.connector().describe(
        error,
        &format!(
            "{command} of key `{}` in db {}",
            show_key(key),
            connection.db()
        )
    ))
}

/// A page whose keys' types, TTLs and sizes are known, and whose reads are planned:
/// what [`inspect_page`] gives and [`read_page`] takes.
#[derive(Default)]
pub struct Inspected {
    /// The rule's type, when it fixes one: a key found another type is then out of
    /// the selection (vanished), not read again.
    fixed_type: Option<KeyType>,
    keys: Vec<Vec<u8>>,
    slots: Vec<Slot>,
    outcome: Vec<Option<Skip>>,
    plans: Vec<Option<Read>>,
}

/// The most memory RedisJSON keeps per byte of a document's JSON text, rounded up:
/// measured on RedisJSON 2.4.9 from 0.45 (a long string of escaped characters) and 1
/// (a long string) to 17.4 (an array of small objects); a small document of a few
/// fields, about 12. A document whose `MEMORY USAGE` over this is above
/// `max_value_bytes` is over it without being read; any other is read and measured.
const JSON_MEMORY_PER_TEXT_BYTE: u64 = 20;

/// What a key is assumed to weigh when its size is not known (sizes off, a collection).
const UNKNOWN_KEY_BYTES: u64 = 256;

impl Inspected {
    /// No keys yet, for the rule type `fixed_type`.
    fn empty(fixed_type: Option<KeyType>) -> Inspected {
        Inspected {
            fixed_type,
            ..Inspected::default()
        }
    }

    /// What reading key `i` should bring into memory: its known size (else a guess)
    /// plus the key; nothing for a key that will not be read.
    fn weight(&self, i: usize) -> u64 {
        if self.outcome[i].is_some() {
            return 0;
        }
        let slot = &self.slots[i];
        let value = slot.len.or(slot.memory).unwrap_or(UNKNOWN_KEY_BYTES);
        value + self.keys[i].len() as u64
    }

    /// What reading the page's values should bring into memory, by the sizes known.
    pub fn estimated_bytes(&self) -> u64 {
        (0..self.keys.len()).map(|i| self.weight(i)).sum()
    }

    /// Splits the page, in SCAN order, into parts of at most `max_bytes` each by the
    /// sizes known (a single key over it is a part of its own), so a page of big
    /// values is read and sent a few megabytes at a time, not whole.
    pub fn split(self, max_bytes: u64) -> Vec<Inspected> {
        if self.estimated_bytes() <= max_bytes {
            return vec![self];
        }
        let weights: Vec<u64> = (0..self.keys.len()).map(|i| self.weight(i)).collect();
        let mut parts = Vec::new();
        let mut keys = self.keys.into_iter();
        let mut slots = self.slots.into_iter();
        let mut outcome = self.outcome.into_iter();
        let mut plans = self.plans.into_iter();
        let fixed_type = self.fixed_type;
        let mut current = Inspected::empty(fixed_type);
        let mut bytes = 0u64;
        for weight in weights {
            if !current.keys.is_empty() && bytes + weight > max_bytes {
                parts.push(std::mem::replace(&mut current, Inspected::empty(fixed_type)));
                bytes = 0;
            }
            bytes += weight;
            current.keys.extend(keys.next());
            current.slots.extend(slots.next());
            current.outcome.extend(outcome.next());
            current.plans.extend(plans.next());
        }
        if !current.keys.is_empty() {
            parts.push(current);
        }
        parts
    }
}

/// The first round trip of a page: `TYPE` (unless fixed), `TTL`, `MEMORY USAGE` (or
/// `STRLEN` when sizes are off) for every key, in one pipeline; then how each value
/// will be read (skipping, with a warning, what is known to be over the limit).
pub async fn inspect_page(
    connection: &DbConnection,
    settings: &FetchSettings,
    keys: Vec<Vec<u8>>,
    fixed_type: Option<KeyType>,
) -> anyhow::Result<Inspected> {
    let db = connection.db();
    let max = settings.max_value_bytes;
    let mut outcome: Vec<Option<Skip>> = vec![None; keys.len()];
    let mut slots: Vec<Slot> = Vec::with_capacity(keys.len());

    // 1. Type, TTL and size of every key, in one pipeline.
    let ask_strlen = !settings.size_in_bytes && matches!(fixed_type, None | Some(KeyType::String));
    let mut pipe = redis::Pipeline::with_capacity(keys.len() * 4);
    pipe.ignore_errors();
    for key in &keys {
        if fixed_type.is_none() {
            pipe.cmd("TYPE").arg(key);
        }
        if settings.ttl {
            pipe.cmd("TTL").arg(key);
        }
        if settings.size_in_bytes {
            pipe.cmd("MEMORY").arg("USAGE").arg(key);
        }
        if ask_strlen {
            pipe.cmd("STRLEN").arg(key);
        }
    }
    // A rule that fixes the type, with sizes and TTLs off, has nothing to ask here
    // (and the redis crate refuses to send an empty pipeline: "empty command").
    let replies = if pipe.is_empty() {
        Vec::new()
    } else {
        connection
            .pipeline(&format!("TYPE/TTL/MEMORY USAGE of a page of db {db}"), &pipe)
            .await?
    };
    let mut replies = replies.into_iter();
    let parse = |v: &Value| value::int(v).map_err(|e| anyhow::anyhow!("db {db}: {e}"));
    for (i, key) in keys.iter().enumerate() {
        let type_reply = fixed_type
            .is_none()
            .then(|| replies.next().unwrap_or_default());
        let ttl_reply = settings.ttl.then(|| replies.next().unwrap_or_default());
        let memory_reply = settings
            .size_in_bytes
            .then(|| replies.next().unwrap_or_default());
        let strlen_reply = ask_strlen.then(|| replies.next().unwrap_or_default());
        let mut slot = Slot {
            key_type: fixed_type.unwrap_or(KeyType::String),
            ttl: None,
            memory: None,
            len: None,
        };
        if let Some(reply) = &type_reply {
            if let Some(error) = server_error(reply) {
                return Err(fatal(connection, &error, "TYPE", key));
            }
            // The usual reply, matched without allocating.
            let known = match reply {
                Value::SimpleString(name) => KeyType::parse(name),
                _ => None,
            };
            if let Some(key_type) = known {
                slot.key_type = key_type;
            } else {
                let name = value::status(reply).map_err(|e| anyhow::anyhow!("db {db}: {e}"))?;
                match KeyType::parse(&name) {
                    _ if name == "none" => outcome[i] = Some(Skip::Vanished),
                    Some(key_type) => slot.key_type = key_type,
                    None => {
                        tracing::debug!(db, key = ?show_key(key), "skipping key of unsupported type {name}");
                        outcome[i] = Some(Skip::Unsupported);
                    }
                }
            }
        }
        if outcome[i].is_none() {
            for (command, reply) in [
                ("TTL", ttl_reply.as_ref()),
                ("MEMORY USAGE", memory_reply.as_ref()),
            ] {
                if let Some(error) = reply.and_then(server_error) {
                    return Err(fatal(connection, &error, command, key));
                }
            }
            if let Some(reply) = &ttl_reply {
                match parse(reply)? {
                    Some(-2) | None => outcome[i] = Some(Skip::Vanished),
                    Some(-1) => slot.ttl = None,
                    Some(ttl) => slot.ttl = Some(ttl),
                }
            }
            if let Some(reply) = &memory_reply {
                match parse(reply)? {
                    Some(bytes) => slot.memory = Some(bytes.max(0) as u64),
                    None => outcome[i] = Some(Skip::Vanished),
                }
            }
            if let Some(reply) = strlen_reply
                .as_ref()
                .filter(|_| slot.key_type == KeyType::String)
            {
                match server_error(reply) {
                    // Re-created with another type since TYPE: not the key we saw.
                    Some(error) if is_wrong_type(&error) => outcome[i] = Some(Skip::Changed),
                    Some(error) => return Err(fatal(connection, &error, "STRLEN", key)),
                    None => slot.len = parse(reply)?.map(|n| n.max(0) as u64),
                }
            }
        }
        slots.push(slot);
    }

    // 2. Decide how to read each value.
    let mut plans: Vec<Option<Read>> = vec![None; keys.len()];
    for (i, slot) in slots.iter().enumerate() {
        if outcome[i].is_some() {
            continue;
        }
        let over_memory = slot.memory.is_some_and(|m| m > max);
        plans[i] = Some(match slot.key_type {
            KeyType::String => match slot.len {
                Some(len) if len > max => {
                    warn_too_large(db, &keys[i], len, max);
                    outcome[i] = Some(Skip::TooLarge);
                    continue;
                }
                None if over_memory => Read::CheckedString,
                _ => Read::Whole,
            },
            // A document's size is its JSON text, which no command gives without
            // writing it: read it and measure, unless its memory is too large for
            // any text under the limit.
            KeyType::Json => match slot.memory {
                Some(memory) if memory / JSON_MEMORY_PER_TEXT_BYTE > max => {
                    warn_too_large(db, &keys[i], memory / JSON_MEMORY_PER_TEXT_BYTE, max);
                    outcome[i] = Some(Skip::TooLarge);
                    continue;
                }
                _ => Read::Whole,
            },
            // Probably over the limit: read chunk by chunk, stopping once it is.
            _ if over_memory => Read::Chunked,
            _ => Read::FirstChunk,
        });
    }

    Ok(Inspected {
        fixed_type,
        keys,
        slots,
        outcome,
        plans,
    })
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
    let db = connection.db();
    let max = settings.max_value_bytes;
    let chunk = settings.chunk_size.max(1);
    let Inspected {
        fixed_type,
        keys,
        slots,
        mut outcome,
        plans,
    } = inspected;

    // 3. One pipeline reads every value that fits in one reply, and the first chunk
    //    of every collection.
    let mut values: Vec<Option<RedisValue>> = vec![None; keys.len()];
    let mut partials: Vec<Option<Partial>> = (0..keys.len()).map(|_| None).collect();
    let mut pipe = redis::Pipeline::with_capacity(keys.len());
    pipe.ignore_errors();
    let mut asked = Vec::new();
    // Bytes of the values read so far (chunked collections count in step 4).
    let mut bytes: u64 = 0;
    // Read before the pipeline is sent: a first chunk may come from a server that
    // restarted after this (then the rest of its read starts over, needlessly but
    // safely), never from one that restarted before it unnoticed by this count.
    let restarts = connection.restarts();
    for (i, plan) in plans.iter().enumerate() {
        let key = &keys[i];
        let key_type = slots[i].key_type;
        match plan {
            Some(Read::Whole) if key_type == KeyType::Json => {
                pipe.cmd("JSON.GET").arg(key).arg("$")
            }
            Some(Read::Whole) => pipe.cmd("GET").arg(key),
            Some(Read::FirstChunk) => {
                let partial = Partial::start(key_type, restarts);
                pipe.add_command(partial.command(key, chunk));
                partials[i] = Some(partial);
                &mut pipe
            }
            _ => continue,
        };
        asked.push(i);
    }
    if !asked.is_empty() {
        let replies = connection
            .pipeline(&format!("reading the values of a page of db {db}"), &pipe)
            .await?;
        for (i, reply) in asked.into_iter().zip(replies) {
            let key_type = slots[i].key_type;
            if let Some(error) = server_error(&reply) {
                partials[i] = None;
                if is_wrong_type(&error) {
                    outcome[i] = Some(Skip::Changed);
                } else if key_type == KeyType::Json && is_unknown_command(&error) {
                    outcome[i] = Some(Skip::JsonModuleMissing);
                } else {
                    let command = match key_type {
                        KeyType::String => "GET",
                        KeyType::Json => "JSON.GET",
                        _ => command_name(key_type),
                    };
                    return Err(fatal(connection, &error, command, &keys[i]));
                }
                continue;
            }
            let context = |e: String| anyhow::anyhow!("db {db}, key `{}`: {e}", show_key(&keys[i]));
            if let Some(partial) = partials[i].as_mut() {
                partial.add(reply, chunk).map_err(context)?;
                if partial.size > max {
                    warn_too_large(db, &keys[i], partial.size, max);
                    outcome[i] = Some(Skip::TooLarge);
                    partials[i] = None;
                } else if partial.next == Next::Done && !partial.needs_existence_check() {
                    // (An empty stream is confirmed in step 4, by `read_rest`.)
                    match partials[i].take().and_then(Partial::finish) {
                        Some(value) => {
                            bytes += value.payload_len() as u64;
                            values[i] = Some(value);
                        }
                        None => outcome[i] = Some(Skip::Vanished),
                    }
                }
                continue;
            }
            // (With the size of what was read: a document's JSON text, a string's bytes.)
            let read = match key_type {
                KeyType::Json => value::json_root(reply)
                    .map_err(context)?
                    .map(|(value, len)| (RedisValue::Json(value), len as u64)),
                _ => value::bytes(reply).map_err(context)?.map(|bytes| {
                    let len = bytes.len() as u64;
                    (RedisValue::String(bytes), len)
                }),
            };
            match read {
                None => outcome[i] = Some(Skip::Vanished),
                Some((_, len)) if len > max => {
                    warn_too_large(db, &keys[i], len, max);
                    outcome[i] = Some(Skip::TooLarge);
                }
                Some((value, len)) => {
                    values[i] = Some(value);
                    bytes += len;
                }
            }
        }
    }

    // 4. The rare keys that need more calls, one at a time, while the page is under
    //    its budget (at least one is read, so every call makes progress).
    let mut read_one = false;
    let mut later = vec![false; keys.len()];
    for i in 0..keys.len() {
        if outcome[i].is_some() || values[i].is_some() {
            continue;
        }
        let more_calls = matches!(plans[i], Some(Read::CheckedString | Read::Chunked))
            || partials[i].is_some();
        if more_calls && read_one && bytes >= budget {
            later[i] = true;
            continue;
        }
        let result = match (plans[i], partials[i].take()) {
            (Some(Read::CheckedString), _) => {
                read_checked_string(connection, &keys[i], max).await?
            }
            (Some(Read::Chunked), _) => {
                read_rest(
                    connection,
                    &keys[i],
                    Partial::start(slots[i].key_type, connection.restarts()),
                    chunk,
                    max,
                )
                .await?
            }
            (_, Some(partial)) => read_rest(connection, &keys[i], partial, chunk, max).await?,
            _ => continue,
        };
        read_one = true;
        match result {
            Chunked::Value(value) => {
                bytes += value.payload_len() as u64;
                values[i] = Some(value);
            }
            Chunked::Vanished => outcome[i] = Some(Skip::Vanished),
            Chunked::Changed => outcome[i] = Some(Skip::Changed),
            Chunked::TooLarge(size) => {
                warn_too_large(db, &keys[i], size, max);
                outcome[i] = Some(Skip::TooLarge);
            }
        }
    }

    // 5. Records, in SCAN order; the keys left for later, read again from the start.
    let mut page = Page {
        records: Vec::with_capacity(keys.len()),
        skips: Skips::default(),
        skipped_existing: Vec::new(),
        gone: Vec::new(),
        changed: Vec::new(),
    };
    let mut rest = Inspected::empty(fixed_type);
    for (((key, slot), (skip, value)), (later, plan)) in keys
        .into_iter()
        .zip(slots)
        .zip(outcome.into_iter().zip(values))
        .zip(later.into_iter().zip(plans))
    {
        if later {
            rest.keys.push(key);
            rest.slots.push(slot);
            rest.outcome.push(None);
            rest.plans.push(match plan {
                Some(Read::CheckedString) => plan,
                _ => Some(Read::Chunked),
            });
            continue;
        }
        match (skip, value) {
            (Some(Skip::Vanished), _) | (None, None) => {
                page.skips.vanished += 1;
                page.gone.push(key);
            }
            (Some(Skip::Changed), _) if fixed_type.is_none() => page.changed.push(key),
            // Another type than the rule selects: out of the selection now.
            (Some(Skip::Changed), _) => {
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
    Ok((page, (!rest.keys.is_empty()).then_some(rest)))
}

/// `STRLEN` then `GET`: for a string whose memory use is over the limit.
async fn read_checked_string(
    connection: &DbConnection,
    key: &[u8],
    max: u64,
) -> anyhow::Result<Chunked> {
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

fn warn_too_large(db: u32, key: &[u8], size: u64, max: u64) {
    tracing::warn!(
        "skipping key `{}` in db {db}: its value is {size} bytes or more, over max_value_bytes ({max})",
        show_key(key)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspected(memories: &[u64]) -> Inspected {
        Inspected {
            fixed_type: None,
            keys: (0..memories.len())
                .map(|i| vec![b'k', b'0' + i as u8])
                .collect(),
            slots: memories
                .iter()
                .map(|&m| Slot {
                    key_type: KeyType::String,
                    ttl: None,
                    memory: Some(m),
                    len: None,
                })
                .collect(),
            outcome: vec![None; memories.len()],
            plans: vec![Some(Read::Whole); memories.len()],
        }
    }

    #[test]
    fn a_page_of_big_values_is_split_in_scan_order_into_parts_under_the_bound() {
        let parts = inspected(&[600, 600, 600, 5000, 100]).split(1300);
        let keys: Vec<Vec<Vec<u8>>> = parts.iter().map(|p| p.keys.clone()).collect();
        assert_eq!(
            keys,
            vec![
                vec![b"k0".to_vec(), b"k1".to_vec()],
                vec![b"k2".to_vec()],
                // One key over the bound is a part of its own.
                vec![b"k3".to_vec()],
                vec![b"k4".to_vec()],
            ]
        );
        assert!(parts.iter().all(|p| p.slots.len() == p.keys.len()
            && p.plans.len() == p.keys.len()
            && p.outcome.len() == p.keys.len()));
    }

    #[test]
    fn a_page_under_the_bound_stays_whole_and_skipped_keys_weigh_nothing() {
        let mut page = inspected(&[600, 600, 600]);
        page.outcome[1] = Some(Skip::TooLarge);
        assert_eq!(page.estimated_bytes(), 2 * (600 + 2));
        assert_eq!(page.split(1300).len(), 1);
    }

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
