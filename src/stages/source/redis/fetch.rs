//! Reading one SCAN page: pipelined `TYPE` (unless the rule fixes it), then one
//! pipeline of `TTL`, `MEMORY USAGE` and a cheap size probe (`STRLEN`, `HLEN`, ...),
//! then one pipeline of value reads for every key that fits; large collections go
//! through the chunked reader. No round trip per key.

use redis::{Pipeline, RedisError, Value};

use super::chunked::{read_chunked, Chunked};
use super::reconnect::DbConnection;
use super::value;
use crate::record::{bytes_to_text, KeyType, Record, RedisValue};

/// How values are read.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Ask `MEMORY USAGE` for every key.
    pub size_in_bytes: bool,
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
}

impl Skips {
    /// `(reason, count)` for every reason with a count, as the counters name them.
    pub fn reasons(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("vanished", self.vanished),
            ("too_large", self.too_large),
            ("unsupported_type", self.unsupported_type),
            ("json_module_missing", self.json_module_missing),
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
}

/// Why a key was not emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Vanished,
    TooLarge,
    Unsupported,
    JsonModuleMissing,
}

/// What is known about one key while its page is read.
struct Slot {
    key_type: KeyType,
    ttl: Option<i64>,
    memory: Option<u64>,
    /// `STRLEN` or the element count.
    len: Option<u64>,
}

/// One value-read plan for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// One command reads the whole value.
    Whole,
    /// `STRLEN` first (its memory was over the limit), then `GET` if it fits.
    CheckedString,
    /// Read in chunks, stopping past the size limit.
    Chunked,
}

fn server_error(value: &Value) -> Option<RedisError> {
    match value {
        Value::ServerError(error) => Some(RedisError::from(error.clone())),
        _ => None,
    }
}

fn is_wrong_type(error: &RedisError) -> bool {
    error.code() == Some("WRONGTYPE")
}

fn is_unknown_command(error: &RedisError) -> bool {
    let text = error.to_string();
    text.contains("unknown command") || text.contains("unknown subcommand")
}

/// The key as text for messages (base64 when it is not UTF-8).
pub fn show_key(key: &[u8]) -> String {
    let (text, base64) = bytes_to_text(key);
    if base64 {
        format!("base64:{text}")
    } else {
        text
    }
}

async fn run_pipeline(
    connection: &DbConnection,
    doing: &str,
    pipe: &Pipeline,
) -> anyhow::Result<Vec<Value>> {
    connection
        .run(doing, |mut c| async move {
            pipe.query_async::<Vec<Value>>(&mut c).await
        })
        .await
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

/// Reads the values of `keys` (one SCAN page). `fixed_type` is the rule's `_type`.
pub async fn fetch_page(
    connection: &DbConnection,
    settings: &FetchSettings,
    keys: Vec<Vec<u8>>,
    fixed_type: Option<KeyType>,
) -> anyhow::Result<Page> {
    let db = connection.db();
    let mut outcome: Vec<Option<Skip>> = vec![None; keys.len()];
    let mut slots: Vec<Option<Slot>> = Vec::with_capacity(keys.len());

    // 1. Types.
    match fixed_type {
        Some(key_type) => {
            slots.extend(keys.iter().map(|_| {
                Some(Slot {
                    key_type,
                    ttl: None,
                    memory: None,
                    len: None,
                })
            }));
        }
        None => {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for key in &keys {
                pipe.cmd("TYPE").arg(key);
            }
            let replies =
                run_pipeline(connection, &format!("TYPE of a page of db {db}"), &pipe).await?;
            for (i, reply) in replies.into_iter().enumerate() {
                if let Some(error) = server_error(&reply) {
                    return Err(fatal(connection, &error, "TYPE", &keys[i]));
                }
                let name = value::status(&reply).map_err(|e| anyhow::anyhow!("db {db}: {e}"))?;
                if name == "none" {
                    outcome[i] = Some(Skip::Vanished);
                    slots.push(None);
                } else if let Some(key_type) = KeyType::parse(&name) {
                    slots.push(Some(Slot {
                        key_type,
                        ttl: None,
                        memory: None,
                        len: None,
                    }));
                } else {
                    tracing::debug!(db, key = %show_key(&keys[i]), "skipping key of unsupported type {name}");
                    outcome[i] = Some(Skip::Unsupported);
                    slots.push(None);
                }
            }
        }
    }

    // 2. TTL, MEMORY USAGE and the size probe.
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut probed = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let Some(slot) = slot else { continue };
        let key = &keys[i];
        pipe.cmd("TTL").arg(key);
        if settings.size_in_bytes {
            pipe.cmd("MEMORY").arg("USAGE").arg(key);
        }
        let probe = match slot.key_type {
            KeyType::String if !settings.size_in_bytes => Some("STRLEN"),
            KeyType::String | KeyType::Json => None,
            KeyType::Hash => Some("HLEN"),
            KeyType::List => Some("LLEN"),
            KeyType::Set => Some("SCARD"),
            KeyType::ZSet => Some("ZCARD"),
            KeyType::Stream => Some("XLEN"),
        };
        if let Some(probe) = probe {
            pipe.cmd(probe).arg(key);
        }
        probed.push((i, probe));
    }
    if !probed.is_empty() {
        let replies = run_pipeline(
            connection,
            &format!("TTL/MEMORY USAGE of a page of db {db}"),
            &pipe,
        )
        .await?;
        let mut replies = replies.into_iter();
        for (i, probe) in probed {
            let ttl_reply = replies.next().unwrap_or_default();
            let memory_reply = if settings.size_in_bytes {
                Some(replies.next().unwrap_or_default())
            } else {
                None
            };
            let probe_reply = probe.map(|_| replies.next().unwrap_or_default());
            let slot = slots[i].as_mut().expect("probed keys have a slot");
            for (command, reply) in [
                ("TTL", Some(&ttl_reply)),
                ("MEMORY USAGE", memory_reply.as_ref()),
                (probe.unwrap_or(""), probe_reply.as_ref()),
            ] {
                if let Some(error) = reply.and_then(server_error) {
                    if is_wrong_type(&error) {
                        // Deleted and re-created with another type since TYPE: not the key we saw.
                        outcome[i] = Some(Skip::Vanished);
                    } else {
                        return Err(fatal(connection, &error, command, &keys[i]));
                    }
                }
            }
            if outcome[i].is_some() {
                continue;
            }
            let parse = |v: &Value| value::int(v).map_err(|e| anyhow::anyhow!("db {db}: {e}"));
            match parse(&ttl_reply)? {
                Some(-2) | None => outcome[i] = Some(Skip::Vanished),
                Some(-1) => slot.ttl = None,
                Some(ttl) => slot.ttl = Some(ttl),
            }
            if let Some(reply) = &memory_reply {
                match parse(reply)? {
                    Some(bytes) => slot.memory = Some(bytes.max(0) as u64),
                    None => outcome[i] = Some(Skip::Vanished),
                }
            }
            if let Some(reply) = &probe_reply {
                let len = parse(reply)?.unwrap_or(0).max(0) as u64;
                if len == 0 && !matches!(slot.key_type, KeyType::String | KeyType::Stream) {
                    // Hashes, lists, sets and zsets cannot be empty: it is gone.
                    outcome[i] = Some(Skip::Vanished);
                }
                slot.len = Some(len);
            }
        }
    }

    // 3. Decide how to read each value.
    let max = settings.max_value_bytes;
    let mut plans: Vec<Option<Read>> = vec![None; keys.len()];
    for (i, slot) in slots.iter().enumerate() {
        let Some(slot) = slot else { continue };
        if outcome[i].is_some() {
            continue;
        }
        let over_memory = slot.memory.is_some_and(|m| m > max);
        plans[i] = Some(match slot.key_type {
            KeyType::String => match slot.len {
                Some(len) if len > max => {
                    outcome[i] = Some(Skip::TooLarge);
                    warn_too_large(db, &keys[i], len, max);
                    continue;
                }
                Some(_) => Read::Whole,
                None if over_memory => Read::CheckedString,
                None => Read::Whole,
            },
            KeyType::Json => {
                if over_memory {
                    outcome[i] = Some(Skip::TooLarge);
                    warn_too_large(db, &keys[i], slot.memory.unwrap_or_default(), max);
                    continue;
                }
                Read::Whole
            }
            _ if over_memory || slot.len.is_some_and(|n| n > u64::from(settings.chunk_size)) => {
                Read::Chunked
            }
            _ => Read::Whole,
        });
    }

    // 4. One pipeline reads every value that fits in one reply.
    let mut values: Vec<Option<RedisValue>> = vec![None; keys.len()];
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut whole = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        if *plan != Some(Read::Whole) {
            continue;
        }
        let key = &keys[i];
        let key_type = slots[i]
            .as_ref()
            .expect("planned keys have a slot")
            .key_type;
        match key_type {
            KeyType::String => pipe.cmd("GET").arg(key),
            KeyType::Hash => pipe.cmd("HGETALL").arg(key),
            KeyType::List => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
            KeyType::Set => pipe.cmd("SMEMBERS").arg(key),
            KeyType::ZSet => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
            KeyType::Stream => pipe.cmd("XRANGE").arg(key).arg("-").arg("+"),
            KeyType::Json => pipe.cmd("JSON.GET").arg(key).arg("$"),
        };
        whole.push((i, key_type));
    }
    if !whole.is_empty() {
        let replies = run_pipeline(
            connection,
            &format!("reading the values of a page of db {db}"),
            &pipe,
        )
        .await?;
        for ((i, key_type), reply) in whole.into_iter().zip(replies) {
            if let Some(error) = server_error(&reply) {
                if is_wrong_type(&error) {
                    outcome[i] = Some(Skip::Vanished);
                } else if key_type == KeyType::Json && is_unknown_command(&error) {
                    outcome[i] = Some(Skip::JsonModuleMissing);
                } else {
                    return Err(fatal(connection, &error, read_command(key_type), &keys[i]));
                }
                continue;
            }
            match typed_value(key_type, reply)
                .map_err(|e| anyhow::anyhow!("db {db}, key `{}`: {e}", show_key(&keys[i])))?
            {
                None => outcome[i] = Some(Skip::Vanished),
                Some(value) => {
                    let size = value.payload_len() as u64;
                    if size > max {
                        warn_too_large(db, &keys[i], size, max);
                        outcome[i] = Some(Skip::TooLarge);
                    } else {
                        values[i] = Some(value);
                    }
                }
            }
        }
    }

    // 5. The rare keys that need more care, one at a time.
    for (i, plan) in plans.iter().enumerate() {
        let Some(plan) = plan else { continue };
        if *plan == Read::Whole || outcome[i].is_some() {
            continue;
        }
        let key_type = slots[i]
            .as_ref()
            .expect("planned keys have a slot")
            .key_type;
        let result = match plan {
            Read::CheckedString => read_checked_string(connection, &keys[i], max).await?,
            _ => read_chunked(connection, &keys[i], key_type, settings.chunk_size, max).await?,
        };
        match result {
            Chunked::Value(value) => values[i] = Some(value),
            Chunked::Vanished => outcome[i] = Some(Skip::Vanished),
            Chunked::TooLarge(size) => {
                warn_too_large(db, &keys[i], size, max);
                outcome[i] = Some(Skip::TooLarge);
            }
        }
    }

    // 6. Records, in SCAN order.
    let mut page = Page {
        records: Vec::with_capacity(keys.len()),
        skips: Skips::default(),
    };
    for (i, key) in keys.into_iter().enumerate() {
        match outcome[i] {
            Some(Skip::Vanished) => page.skips.vanished += 1,
            Some(Skip::TooLarge) => page.skips.too_large += 1,
            Some(Skip::Unsupported) => page.skips.unsupported_type += 1,
            Some(Skip::JsonModuleMissing) => page.skips.json_module_missing += 1,
            None => {
                let slot = slots[i].take().expect("emitted keys have a slot");
                let value = values[i].take().expect("emitted keys have a value");
                page.records.push(Record {
                    database: db,
                    key,
                    key_type: slot.key_type,
                    value,
                    size_in_bytes: slot.memory,
                    ttl: slot.ttl,
                    document: None,
                });
            }
        }
    }
    Ok(page)
}

fn read_command(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::String => "GET",
        KeyType::Hash => "HGETALL",
        KeyType::List => "LRANGE",
        KeyType::Set => "SMEMBERS",
        KeyType::ZSet => "ZRANGE",
        KeyType::Stream => "XRANGE",
        KeyType::Json => "JSON.GET",
    }
}

/// A whole-value reply as a typed value; `None` when the key is gone (nil or empty).
fn typed_value(key_type: KeyType, reply: Value) -> Result<Option<RedisValue>, String> {
    let value = match key_type {
        KeyType::String => return Ok(value::bytes(reply)?.map(RedisValue::String)),
        KeyType::Json => return Ok(value::json_root(reply)?.map(RedisValue::Json)),
        KeyType::Hash => RedisValue::Hash(value::pairs(reply)?),
        KeyType::List => RedisValue::List(value::byte_list(reply)?),
        KeyType::Set => {
            let mut members = value::byte_list(reply)?;
            members.sort_unstable();
            RedisValue::Set(members)
        }
        KeyType::ZSet => RedisValue::ZSet(value::scored_members(reply)?),
        KeyType::Stream => RedisValue::Stream(value::stream_entries(reply)?),
    };
    let empty = match &value {
        RedisValue::Hash(items) => items.is_empty(),
        RedisValue::List(items) | RedisValue::Set(items) => items.is_empty(),
        RedisValue::ZSet(items) => items.is_empty(),
        RedisValue::Stream(items) => items.is_empty(),
        RedisValue::String(_) | RedisValue::Json(_) => false,
    };
    Ok(if empty && key_type != KeyType::Stream {
        None
    } else {
        Some(value)
    })
}

/// `STRLEN` then `GET`: for a string whose memory use is over the limit.
async fn read_checked_string(
    connection: &DbConnection,
    key: &[u8],
    max: u64,
) -> anyhow::Result<Chunked> {
    let db = connection.db();
    let doing = format!("STRLEN of key `{}` in db {db}", show_key(key));
    let len: i64 = connection
        .run(&doing, |mut c| async move {
            redis::cmd("STRLEN").arg(key).query_async(&mut c).await
        })
        .await?;
    if len as u64 > max {
        return Ok(Chunked::TooLarge(len as u64));
    }
    let doing = format!("GET of key `{}` in db {db}", show_key(key));
    let value: Option<Vec<u8>> = connection
        .run(&doing, |mut c| async move {
            redis::cmd("GET").arg(key).query_async(&mut c).await
        })
        .await?;
    Ok(match value {
        Some(bytes) => Chunked::Value(RedisValue::String(bytes)),
        None => Chunked::Vanished,
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

    #[test]
    fn empty_collections_read_as_gone_but_empty_strings_do_not() {
        assert_eq!(
            typed_value(KeyType::Hash, Value::Array(vec![])).unwrap(),
            None
        );
        assert_eq!(
            typed_value(KeyType::Set, Value::Array(vec![])).unwrap(),
            None
        );
        assert_eq!(
            typed_value(KeyType::String, Value::BulkString(vec![])).unwrap(),
            Some(RedisValue::String(vec![]))
        );
        assert_eq!(typed_value(KeyType::String, Value::Nil).unwrap(), None);
    }

    #[test]
    fn sets_come_out_sorted() {
        let reply = Value::Array(vec![
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"a".to_vec()),
        ]);
        assert_eq!(
            typed_value(KeyType::Set, reply).unwrap(),
            Some(RedisValue::Set(vec![b"a".to_vec(), b"b".to_vec()]))
        );
    }

    #[test]
    fn keys_that_are_not_utf8_are_shown_as_base64() {
        assert_eq!(show_key(b"user:1"), "user:1");
        assert_eq!(show_key(&[0xff, 0x00]), "base64:/wA=");
    }

    #[test]
    fn skip_reasons_list_only_what_happened() {
        let skips = Skips {
            vanished: 2,
            too_large: 0,
            unsupported_type: 1,
            json_module_missing: 0,
        };
        assert_eq!(
            skips.reasons().collect::<Vec<_>>(),
            vec![("vanished", 2), ("unsupported_type", 1)]
        );
    }
}
