//! The first round trip of a SCAN page: `TYPE` (unless the rule fixes it), `TTL` and
//! `MEMORY USAGE` (or `STRLEN`) for every key, in one pipeline, and from the replies
//! how each value will be read ([`inspect_page`]); a page split into parts bounded in
//! bytes by the sizes known ([`Inspected::split`]).

use redis::Value;

use super::super::connection::errors::{fatal, is_wrong_type, server_error};
use super::super::connection::reconnect::DbConnection;
use super::page::{warn_too_large, FetchSettings};
use super::value;
use crate::record::{show_key, KeyType};

/// Why a key was not emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    Vanished,
    /// Overwritten with another type while it was read: to be read again.
    Changed,
    TooLarge,
    Unsupported,
    JsonModuleMissing,
}

/// What is known about one key while its page is read.
pub(crate) struct Slot {
    pub(crate) key_type: KeyType,
    pub(crate) ttl: Option<i64>,
    pub(crate) memory: Option<u64>,
    /// `STRLEN` of a string, when asked.
    pub(crate) len: Option<u64>,
}

/// One value-read plan for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// One command reads the whole value (string, RedisJSON).
    Whole,
    /// The first bounded chunk of a collection, in the page's pipeline.
    FirstChunk,
    /// `STRLEN` first (its memory was over the limit), then `GET` if it fits.
    CheckedString,
    /// Read in chunks from the start, stopping past the size limit.
    Chunked,
}

/// One key of an inspected page: what is known of it, and how its value will be read.
pub(crate) struct Inspection {
    pub(crate) key: Vec<u8>,
    pub(crate) slot: Slot,
    /// Why the key will not be emitted, once that is known.
    pub(crate) outcome: Option<Skip>,
    /// How its value will be read; `None` for a key skipped.
    pub(crate) plan: Option<Read>,
}

/// A page whose keys' types, TTLs and sizes are known, and whose reads are planned:
/// what [`inspect_page`] gives and [`read_page`](super::page::read_page) takes.
pub struct Inspected {
    /// The rule's type, when it fixes one: a key found another type is then out of
    /// the selection (vanished), not read again.
    pub(crate) fixed_type: Option<KeyType>,
    /// The page's keys, in SCAN order.
    pub(crate) keys: Vec<Inspection>,
}

/// The most memory RedisJSON keeps per byte of a document's JSON text, rounded up:
/// measured on RedisJSON 2.4.9 from 0.45 (a long string of escaped characters) and 1
/// (a long string) to 17.4 (an array of small objects); a small document of a few
/// fields, about 12. A document whose `MEMORY USAGE` over this is above
/// `max_value_bytes` is over it without being read; any other is read and measured.
const JSON_MEMORY_PER_TEXT_BYTE: u64 = 20;

/// The most payload a collection holds per byte of its exact `MEMORY USAGE`, rounded
/// up: elements are kept at least as large as their bytes, except integers, which a
/// listpack stores in as few as a third of their text's bytes. A collection whose
/// memory over this is above `max_value_bytes` is skipped without a single element
/// read, so no chunk of it (`chunk_size` elements, each of any size) is ever held.
const COLLECTION_PAYLOAD_PER_MEMORY_BYTE: u64 = 4;

/// What a key is assumed to weigh when its size is not known (sizes off, a collection).
const UNKNOWN_KEY_BYTES: u64 = 256;

impl Inspection {
    /// What reading the key should bring into memory: its known size (else a guess)
    /// plus the key; nothing for a key that will not be read.
    fn weight(&self) -> u64 {
        if self.outcome.is_some() {
            return 0;
        }
        let value = self.slot.len.or(self.slot.memory).unwrap_or(UNKNOWN_KEY_BYTES);
        value + self.key.len() as u64
    }
}

impl Inspected {
    /// No keys yet, for the rule type `fixed_type`.
    pub(crate) fn empty(fixed_type: Option<KeyType>) -> Inspected {
        Inspected {
            fixed_type,
            keys: Vec::new(),
        }
    }

    /// What reading the page's values should bring into memory, by the sizes known.
    pub fn estimated_bytes(&self) -> u64 {
        self.keys.iter().map(Inspection::weight).sum()
    }

    /// Splits the page, in SCAN order, into parts of at most `max_bytes` each by the
    /// sizes known (a single key over it is a part of its own), so a page of big
    /// values is read and sent a few megabytes at a time, not whole.
    pub fn split(self, max_bytes: u64) -> Vec<Inspected> {
        if self.estimated_bytes() <= max_bytes {
            return vec![self];
        }
        let mut parts = Vec::new();
        let fixed_type = self.fixed_type;
        let mut current = Inspected::empty(fixed_type);
        let mut bytes = 0u64;
        for entry in self.keys {
            let weight = entry.weight();
            if !current.keys.is_empty() && bytes + weight > max_bytes {
                parts.push(std::mem::replace(&mut current, Inspected::empty(fixed_type)));
                bytes = 0;
            }
            bytes += weight;
            current.keys.push(entry);
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
    let mut entries: Vec<Inspection> = Vec::with_capacity(keys.len());

    // 1. Type, TTL and size of every key, in one pipeline.
    let ask_strlen = !settings.size_in_bytes && matches!(fixed_type, None | Some(KeyType::String));
    let pipe = meta_pipeline(settings, &keys, fixed_type, ask_strlen);
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
    for key in keys {
        entries.push(inspect_key(
            connection,
            settings,
            fixed_type,
            ask_strlen,
            key,
            &mut replies,
        )?);
    }

    // 2. Decide how to read each value.
    plan_reads(db, max, &mut entries);

    Ok(Inspected {
        fixed_type,
        keys: entries,
    })
}

/// The pipeline of the first round trip: `TYPE` (unless fixed), `TTL`, `MEMORY USAGE`
/// (or `STRLEN` when sizes are off) for every key of the page, in that order.
fn meta_pipeline(
    settings: &FetchSettings,
    keys: &[Vec<u8>],
    fixed_type: Option<KeyType>,
    ask_strlen: bool,
) -> redis::Pipeline {
    let mut pipe = redis::Pipeline::with_capacity(keys.len() * 4);
    pipe.ignore_errors();
    for key in keys {
        if fixed_type.is_none() {
            pipe.cmd("TYPE").arg(key);
        }
        if settings.ttl {
            pipe.cmd("TTL").arg(key);
        }
        if settings.size_in_bytes {
            // Exact (`SAMPLES 0`): a sampled size can miss the few huge elements of a
            // long collection, which must be known before one is read. (O(1) for the
            // small encodings; a walk of the nodes or entries of a big collection,
            // which reading it would walk anyway.)
            pipe.cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0);
        }
        if ask_strlen {
            pipe.cmd("STRLEN").arg(key);
        }
    }
    pipe
}

/// Reads one key's replies of the first round trip (in the order [`meta_pipeline`]
/// asked them): its type, TTL and size, or why it is skipped; a server error is fatal.
fn inspect_key(
    connection: &DbConnection,
    settings: &FetchSettings,
    fixed_type: Option<KeyType>,
    ask_strlen: bool,
    key: Vec<u8>,
    replies: &mut impl Iterator<Item = Value>,
) -> anyhow::Result<Inspection> {
    let db = connection.db();
    let parse = |v: &Value| value::int(v).map_err(|e| anyhow::anyhow!("db {db}: {e}"));
    let mut outcome = None;
    let type_reply = fixed_type.is_none().then(|| replies.next().unwrap_or_default());
    let ttl_reply = settings.ttl.then(|| replies.next().unwrap_or_default());
    let memory_reply = settings.size_in_bytes.then(|| replies.next().unwrap_or_default());
    let strlen_reply = ask_strlen.then(|| replies.next().unwrap_or_default());
    let mut slot = Slot {
        key_type: fixed_type.unwrap_or(KeyType::String),
        ttl: None,
        memory: None,
        len: None,
    };
    if let Some(reply) = &type_reply {
        if let Some(error) = server_error(reply) {
            return Err(fatal(connection, &error, "TYPE", &key));
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
                _ if name == "none" => outcome = Some(Skip::Vanished),
                Some(key_type) => slot.key_type = key_type,
                None => {
                    tracing::debug!(db, key = ?show_key(&key), "skipping key of unsupported type {name}");
                    outcome = Some(Skip::Unsupported);
                }
            }
        }
    }
    if outcome.is_none() {
        for (command, reply) in [("TTL", ttl_reply.as_ref()), ("MEMORY USAGE", memory_reply.as_ref())] {
            if let Some(error) = reply.and_then(server_error) {
                return Err(fatal(connection, &error, command, &key));
            }
        }
        if let Some(reply) = &ttl_reply {
            match parse(reply)? {
                Some(-2) | None => outcome = Some(Skip::Vanished),
                Some(-1) => slot.ttl = None,
                Some(ttl) => slot.ttl = Some(ttl),
            }
        }
        if let Some(reply) = &memory_reply {
            match parse(reply)? {
                Some(bytes) => slot.memory = Some(bytes.max(0) as u64),
                None => outcome = Some(Skip::Vanished),
            }
        }
        if let Some(reply) = strlen_reply.as_ref().filter(|_| slot.key_type == KeyType::String) {
            match server_error(reply) {
                // Re-created with another type since TYPE: not the key we saw.
                Some(error) if is_wrong_type(&error) => outcome = Some(Skip::Changed),
                Some(error) => return Err(fatal(connection, &error, "STRLEN", &key)),
                None => slot.len = parse(reply)?.map(|n| n.max(0) as u64),
            }
        }
    }
    Ok(Inspection {
        key,
        slot,
        outcome,
        plan: None,
    })
}

/// Decides how to read each value not already skipped (skipping, with a warning,
/// what is known to be over the limit `max`).
fn plan_reads(db: u32, max: u64, entries: &mut [Inspection]) {
    for entry in entries {
        if entry.outcome.is_some() {
            continue;
        }
        let slot = &entry.slot;
        let over_memory = slot.memory.is_some_and(|m| m > max);
        entry.plan = Some(match slot.key_type {
            KeyType::String => match slot.len {
                Some(len) if len > max => {
                    warn_too_large(db, &entry.key, len, max);
                    entry.outcome = Some(Skip::TooLarge);
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
                    warn_too_large(db, &entry.key, memory / JSON_MEMORY_PER_TEXT_BYTE, max);
                    entry.outcome = Some(Skip::TooLarge);
                    continue;
                }
                _ => Read::Whole,
            },
            // Far over the limit: skipped unread.
            _ if slot
                .memory
                .is_some_and(|m| m / COLLECTION_PAYLOAD_PER_MEMORY_BYTE > max) =>
            {
                let at_least = slot.memory.unwrap_or_default() / COLLECTION_PAYLOAD_PER_MEMORY_BYTE;
                warn_too_large(db, &entry.key, at_least, max);
                entry.outcome = Some(Skip::TooLarge);
                continue;
            }
            // Probably over the limit: read chunk by chunk, stopping once it is.
            _ if over_memory => Read::Chunked,
            _ => Read::FirstChunk,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspected(memories: &[u64]) -> Inspected {
        Inspected {
            fixed_type: None,
            keys: memories
                .iter()
                .enumerate()
                .map(|(i, &m)| Inspection {
                    key: vec![b'k', b'0' + i as u8],
                    slot: Slot {
                        key_type: KeyType::String,
                        ttl: None,
                        memory: Some(m),
                        len: None,
                    },
                    outcome: None,
                    plan: Some(Read::Whole),
                })
                .collect(),
        }
    }

    #[test]
    fn a_page_of_big_values_is_split_in_scan_order_into_parts_under_the_bound() {
        let parts = inspected(&[600, 600, 600, 5000, 100]).split(1300);
        let keys: Vec<Vec<Vec<u8>>> = parts
            .iter()
            .map(|p| p.keys.iter().map(|k| k.key.clone()).collect())
            .collect();
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
        assert!(parts.iter().all(|p| p
            .keys
            .iter()
            .all(|k| k.plan == Some(Read::Whole) && k.outcome.is_none())));
    }

    #[test]
    fn a_page_under_the_bound_stays_whole_and_skipped_keys_weigh_nothing() {
        let mut page = inspected(&[600, 600, 600]);
        page.keys[1].outcome = Some(Skip::TooLarge);
        assert_eq!(page.estimated_bytes(), 2 * (600 + 2));
        assert_eq!(page.split(1300).len(), 1);
    }
}
