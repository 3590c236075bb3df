//! Reading collections in bounded chunks (`HSCAN`/`SSCAN` pages, `ZRANGE`/`LRANGE` by
//! index, `XRANGE ... COUNT`), so no single reply can blow memory. The first chunk of
//! every collection goes in the page's pipeline; only collections with more than one
//! chunk are continued here, one call at a time, stopping as soon as the value is over
//! `max_value_bytes`.
//!
//! A read over several calls is one value only if every call reached the same server
//! process: after a restart (a new `run_id`, noticed by the reconnect, as the key scan
//! notices it) an `HSCAN`/`SSCAN` cursor means nothing (new hash seed), and an index
//! or stream id may point into other data (writes lost with the AOF's last second). So
//! a collection whose read spans a restart is read again from its first element.

use redis::{Cmd, Value};

use super::super::connection::errors::unless_wrong_type;
use super::super::connection::reconnect::DbConnection;
use super::value;
use crate::record::{show_key, KeyType, RedisValue, StreamEntry};

/// What a chunked read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunked {
    Value(RedisValue),
    /// The key was deleted before or while it was read.
    Vanished,
    /// The key now holds another type (overwritten while it was read): read it again.
    Changed,
    /// The value passed the limit after this many bytes (it was not read further).
    TooLarge(u64),
    /// A chunk could not be made sense of (that key's failure): why.
    Unreadable(String),
}

/// Where the next chunk starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to read.
    Done,
    /// `HSCAN`/`SSCAN` cursor.
    Cursor(u64),
    /// `LRANGE`/`ZRANGE` start index.
    Index(i64),
    /// `XRANGE` start (`-`, or the smallest id after the last one read).
    From(String),
}

/// Times a collection's read may start over because Redis restarted during it; past
/// that the run stops (a server that restarts that often is not serving reads).
const MAX_STARTS_OVER: u32 = 3;

/// Elements asked by the first call of a read from the start, before any element's
/// size is known (see [`Partial::next_count`]).
const FIRST_PROBE: u32 = 16;

/// A collection read so far.
#[derive(Debug)]
pub struct Partial {
    key_type: KeyType,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    items: Vec<Vec<u8>>,
    scored: Vec<(Vec<u8>, f64)>,
    entries: Vec<StreamEntry>,
    /// Payload bytes read so far.
    pub size: u64,
    /// Chunks read so far.
    chunks: u32,
    pub next: Next,
    /// The connection's [`DbConnection::restarts`] when the first chunk was asked: a
    /// reply read after another restart belongs to another server process.
    restarts: u64,
}

impl Partial {
    /// Nothing read yet of a collection of `key_type`, whose first chunk is asked
    /// while the connection has seen `restarts` restarts.
    pub fn start(key_type: KeyType, restarts: u64) -> Partial {
        let next = match key_type {
            KeyType::Hash | KeyType::Set => Next::Cursor(0),
            KeyType::Stream => Next::From("-".into()),
            _ => Next::Index(0),
        };
        Partial {
            key_type,
            pairs: Vec::new(),
            items: Vec::new(),
            scored: Vec::new(),
            entries: Vec::new(),
            size: 0,
            chunks: 0,
            next,
            restarts,
        }
    }

    /// The command that reads the next chunk of `key` (`chunk` elements or so).
    pub fn command(&self, key: &[u8], chunk: u32) -> Cmd {
        let mut command;
        match (&self.next, self.key_type) {
            (Next::Cursor(cursor), KeyType::Hash | KeyType::Set) => {
                command = redis::cmd(if self.key_type == KeyType::Hash {
                    "HSCAN"
                } else {
                    "SSCAN"
                });
                command.arg(key).arg(*cursor).arg("COUNT").arg(chunk);
            }
            (Next::Index(start), KeyType::ZSet) => {
                command = redis::cmd("ZRANGE");
                command
                    .arg(key)
                    .arg(*start)
                    .arg(start + i64::from(chunk) - 1)
                    .arg("WITHSCORES");
            }
            (Next::Index(start), _) => {
                command = redis::cmd("LRANGE");
                command.arg(key).arg(*start).arg(start + i64::from(chunk) - 1);
            }
            (Next::From(start), _) => {
                command = redis::cmd("XRANGE");
                command.arg(key).arg(start.as_str()).arg("+").arg("COUNT").arg(chunk);
            }
            (Next::Done, _) | (Next::Cursor(_), _) => {
                // Not reached: callers stop at `Done`; a cursor only goes with hashes and sets.
                command = redis::cmd("PING");
            }
        }
        command
    }

    /// Elements read so far.
    fn elements(&self) -> usize {
        self.pairs.len() + self.items.len() + self.scored.len() + self.entries.len()
    }

    /// How many elements the next call of [`read_rest`] asks for: `chunk` is a count,
    /// and elements can be big (a list of 1 MB items: 1000 of them in one reply is
    /// 1 GB, whatever `max_value_bytes` says). So a read from the start (a key whose
    /// memory is known to be over the limit) opens with [`FIRST_PROBE`] elements, and
    /// every later call asks only what, at the average size read so far, still fits
    /// under `max`, plus one to see it pass: at most `chunk`, at least 1.
    pub fn next_count(&self, chunk: u32, max: u64) -> u32 {
        let read = self.elements() as u64;
        if read == 0 {
            return chunk.min(FIRST_PROBE);
        }
        let average = (self.size / read).max(1);
        let room = max.saturating_sub(self.size) / average + 1;
        room.clamp(1, u64::from(chunk)) as u32
    }

    /// The name of the command that reads a chunk, for messages.
    pub fn command_name(&self) -> &'static str {
        command_name(self.key_type)
    }

    /// Adds the reply of [`Partial::command`]; `next` says where the following chunk starts.
    pub fn add(&mut self, reply: Value, chunk: u32) -> Result<(), String> {
        self.chunks += 1;
        let full = |n: usize| n as u64 >= u64::from(chunk);
        match self.key_type {
            KeyType::Hash | KeyType::Set => {
                let (cursor, items) = value::scan_page(reply)?;
                if self.key_type == KeyType::Hash {
                    for (field, val) in value::pairs(Value::Array(items))? {
                        self.size += (field.len() + val.len()) as u64;
                        self.pairs.push((field, val));
                    }
                } else {
                    for member in value::byte_list(Value::Array(items))? {
                        self.size += member.len() as u64;
                        self.items.push(member);
                    }
                }
                self.next = if cursor == 0 { Next::Done } else { Next::Cursor(cursor) };
            }
            KeyType::List => {
                let page = value::byte_list(reply)?;
                let n = page.len();
                self.size += page.iter().map(|i| i.len() as u64).sum::<u64>();
                self.items.extend(page);
                self.next = match &self.next {
                    Next::Index(start) if full(n) => Next::Index(start + n as i64),
                    _ => Next::Done,
                };
            }
            KeyType::ZSet => {
                let page = value::scored_members(reply)?;
                let n = page.len();
                self.size += page.iter().map(|(m, _)| m.len() as u64 + 8).sum::<u64>();
                self.scored.extend(page);
                self.next = match &self.next {
                    Next::Index(start) if full(n) => Next::Index(start + n as i64),
                    _ => Next::Done,
                };
            }
            KeyType::Stream => {
                let page = value::stream_entries(reply)?;
                let n = page.len();
                for entry in page {
                    self.size += entry.id.len() as u64
                        + entry
                            .fields
                            .iter()
                            .map(|(f, v)| (f.len() + v.len()) as u64)
                            .sum::<u64>();
                    self.entries.push(entry);
                }
                self.next = match self.entries.last() {
                    Some(last) if full(n) => Next::From(id_after(&last.id)),
                    _ => Next::Done,
                };
            }
            KeyType::String | KeyType::Json => {
                return Err(format!(
                    "internal error: {} values are not read in chunks",
                    self.key_type
                ))
            }
        }
        Ok(())
    }

    /// Whether the end of this read needs the key's existence confirmed before the
    /// value is trusted: a read over several calls ends on an empty or short chunk,
    /// which is also what a key deleted (or expired) between two calls gives, and
    /// would otherwise be sent cut short as if whole; and `XRANGE` of a missing key
    /// answers an empty list, as an empty stream does.
    pub fn needs_existence_check(&self) -> bool {
        self.chunks > 1 || (self.key_type == KeyType::Stream && self.entries.is_empty())
    }

    /// The value read: `None` when the collection turned out empty (the key is gone;
    /// a stream, which may exist empty, is the exception).
    pub fn finish(mut self) -> Option<RedisValue> {
        match self.key_type {
            KeyType::Hash => {
                if self.chunks > 1 {
                    // A walk over several calls may return a field twice (while rehashing).
                    self.pairs.sort_by(|a, b| a.0.cmp(&b.0));
                    self.pairs.dedup_by(|a, b| a.0 == b.0);
                }
                (!self.pairs.is_empty()).then_some(RedisValue::Hash(self.pairs))
            }
            KeyType::Set => {
                self.items.sort_unstable();
                self.items.dedup();
                (!self.items.is_empty()).then_some(RedisValue::Set(self.items))
            }
            KeyType::List => (!self.items.is_empty()).then_some(RedisValue::List(self.items)),
            KeyType::ZSet => (!self.scored.is_empty()).then_some(RedisValue::ZSet(self.scored)),
            KeyType::Stream => Some(RedisValue::Stream(self.entries)),
            KeyType::String | KeyType::Json => None,
        }
    }
}

/// The name of the command that reads a chunk of a `key_type` collection.
pub fn command_name(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::Hash => "HSCAN",
        KeyType::Set => "SSCAN",
        KeyType::ZSet => "ZRANGE",
        KeyType::Stream => "XRANGE",
        _ => "LRANGE",
    }
}

/// The smallest stream id after `id` (`5-3` gives `5-4`, `5-18446744073709551615`
/// gives `6-0`), as an inclusive `XRANGE` start. The exclusive `(id` form needs Redis
/// 6.2; servers before it (Debian 11 ships 6.0) refuse it, and streams longer than one
/// chunk could not be read there. An id of another shape falls back to `(id`.
fn id_after(id: &str) -> String {
    let parsed = id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
    match parsed {
        Some((ms, seq)) if seq < u64::MAX => format!("{ms}-{}", seq + 1),
        Some((ms, _)) if ms < u64::MAX => format!("{}-0", ms + 1),
        _ => format!("({id}"),
    }
}

/// Reads the rest of a collection of which `partial` holds the start, one chunk per
/// call, stopping once it is over `max` bytes. When Redis restarted since the first
/// chunk was asked, what was read is dropped and the collection read again from its
/// first element (counted in [`DbConnection::restart_counts`]).
pub async fn read_rest(
    connection: &DbConnection,
    key: &[u8],
    mut partial: Partial,
    chunk: u32,
    max: u64,
) -> anyhow::Result<Chunked> {
    let chunk = chunk.max(1);
    let db = connection.db();
    let mut starts_over = 0;
    loop {
        let restarts = connection.restarts();
        if restarts != partial.restarts {
            starts_over += 1;
            if starts_over > MAX_STARTS_OVER {
                anyhow::bail!(
                    "db {db}, key `{}`: Redis at {} restarted {MAX_STARTS_OVER} times while this {} was read in chunks; \
                     the run stops rather than send it partial (run it again once the server stays up)",
                    show_key(key),
                    connection.connector().endpoint(),
                    partial.key_type
                );
            }
            tracing::warn!(
                db,
                "Redis restarted while key `{}` was read in chunks: reading it again from its start",
                show_key(key)
            );
            connection.note_read_started_over();
            partial = Partial::start(partial.key_type, restarts);
        }
        if partial.size > max {
            return Ok(Chunked::TooLarge(partial.size));
        }
        if partial.next == Next::Done {
            if partial.needs_existence_check() {
                match type_now(connection, key).await?.as_str() {
                    "none" => return Ok(Chunked::Vanished),
                    name if KeyType::parse(name) != Some(partial.key_type) => return Ok(Chunked::Changed),
                    _ => {}
                }
            }
            return Ok(match partial.finish() {
                Some(value) => Chunked::Value(value),
                None => Chunked::Vanished,
            });
        }
        let count = partial.next_count(chunk, max);
        let command = partial.command(key, count);
        let doing = format!("{} of key `{}` in db {db}", partial.command_name(), show_key(key));
        let reply: Option<Value> = connection
            .run(&doing, |mut c| {
                let command = &command;
                async move { unless_wrong_type(command.query_async(&mut c).await) }
            })
            .await?;
        if connection.restarts() != partial.restarts {
            // This reply came from a server restarted since the first chunk: start over.
            continue;
        }
        let Some(reply) = reply else {
            // Another type now: the collection we were reading was overwritten.
            return Ok(Chunked::Changed);
        };
        if let Err(reason) = partial.add(reply, count) {
            return Ok(Chunked::Unreadable(reason));
        }
    }
}

/// The type `key` holds now (`none` when it is gone), after a read over several calls.
async fn type_now(connection: &DbConnection, key: &[u8]) -> anyhow::Result<String> {
    let doing = format!(
        "TYPE of key `{}` in db {} (after reading it in chunks)",
        show_key(key),
        connection.db()
    );
    let reply: Value = connection
        .run(&doing, |mut c| async move {
            redis::cmd("TYPE").arg(key).query_async(&mut c).await
        })
        .await?;
    value::status(&reply).map_err(|e| anyhow::anyhow!("{doing}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_full_list_chunk_asks_for_the_next_index_and_a_short_one_ends() {
        let mut partial = Partial::start(KeyType::List, 0);
        partial.add(Value::Array(vec![bulk("a"), bulk("b")]), 2).unwrap();
        assert_eq!(partial.next, Next::Index(2));
        partial.add(Value::Array(vec![bulk("c")]), 2).unwrap();
        assert_eq!(partial.next, Next::Done);
        assert_eq!(partial.size, 3);
        assert_eq!(
            partial.finish(),
            Some(RedisValue::List(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]))
        );
    }

    #[test]
    fn chunks_shrink_to_what_still_fits_under_the_limit() {
        let mut partial = Partial::start(KeyType::List, 0);
        assert_eq!(partial.next_count(1000, 10_000), 16, "nothing known yet: a probe");
        // Two elements of 1000 bytes: 8000 bytes of room is 8 more, plus one.
        let big = Value::BulkString(vec![b'x'; 1000]);
        partial.add(Value::Array(vec![big.clone(), big]), 2).unwrap();
        assert_eq!(partial.next_count(1000, 10_000), 9);
        assert_eq!(partial.next_count(5, 10_000), 5, "never more than a chunk");
        assert_eq!(partial.next_count(1000, 1_000), 1, "never less than one");
        // Small elements: the whole chunk.
        let mut partial = Partial::start(KeyType::List, 0);
        partial.add(Value::Array(vec![bulk("a")]), 1).unwrap();
        assert_eq!(partial.next_count(1000, 10_000), 1000);
    }

    #[test]
    fn hash_chunks_follow_the_cursor_and_drop_repeated_fields() {
        let mut partial = Partial::start(KeyType::Hash, 0);
        let page = |cursor: &str, items: Vec<Value>| Value::Array(vec![bulk(cursor), Value::Array(items)]);
        partial
            .add(page("7", vec![bulk("b"), bulk("2"), bulk("a"), bulk("1")]), 2)
            .unwrap();
        assert_eq!(partial.next, Next::Cursor(7));
        partial.add(page("0", vec![bulk("a"), bulk("1")]), 2).unwrap();
        assert_eq!(partial.next, Next::Done);
        assert_eq!(
            partial.finish(),
            Some(RedisValue::Hash(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]))
        );
    }

    #[test]
    fn stream_chunks_continue_after_the_last_id() {
        let mut partial = Partial::start(KeyType::Stream, 0);
        let entry = |id: &str| Value::Array(vec![bulk(id), Value::Array(vec![bulk("f"), bulk("v")])]);
        partial.add(Value::Array(vec![entry("1-0"), entry("2-0")]), 2).unwrap();
        assert_eq!(partial.next, Next::From("2-1".into()));
        let command = partial.command(b"s", 2);
        assert_eq!(command.args_iter().count(), 6, "XRANGE s 2-1 + COUNT 2");
    }

    #[test]
    fn the_next_stream_chunk_starts_at_the_smallest_id_after_the_last() {
        // No `(id` (Redis 6.2+ only) where an inclusive id can say the same.
        assert_eq!(id_after("1526985054069-0"), "1526985054069-1");
        assert_eq!(id_after("7-18446744073709551615"), "8-0");
        assert_eq!(
            id_after("18446744073709551615-18446744073709551615"),
            "(18446744073709551615-18446744073709551615"
        );
        assert_eq!(id_after("odd"), "(odd");
    }

    #[test]
    fn reads_over_several_calls_and_empty_streams_need_the_key_confirmed() {
        let mut partial = Partial::start(KeyType::List, 0);
        partial.add(Value::Array(vec![bulk("a")]), 10).unwrap();
        assert!(!partial.needs_existence_check(), "one short chunk is the whole list");
        let mut partial = Partial::start(KeyType::List, 0);
        partial.add(Value::Array(vec![bulk("a"), bulk("b")]), 2).unwrap();
        partial.add(Value::Array(vec![]), 2).unwrap();
        assert!(
            partial.needs_existence_check(),
            "an empty second chunk may be a deleted key"
        );
        let mut partial = Partial::start(KeyType::Stream, 0);
        partial.add(Value::Array(vec![]), 10).unwrap();
        assert!(partial.needs_existence_check(), "XRANGE of a missing key is empty too");
    }

    #[test]
    fn an_empty_first_chunk_means_the_key_is_gone_except_for_streams() {
        let mut partial = Partial::start(KeyType::Set, 0);
        partial
            .add(Value::Array(vec![bulk("0"), Value::Array(vec![])]), 10)
            .unwrap();
        assert_eq!(partial.finish(), None);
        let mut partial = Partial::start(KeyType::Stream, 0);
        partial.add(Value::Array(vec![]), 10).unwrap();
        assert_eq!(partial.finish(), Some(RedisValue::Stream(vec![])));
    }
}
