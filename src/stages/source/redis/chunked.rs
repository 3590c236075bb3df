//! Reading a large collection in chunks (`HSCAN`/`SSCAN` pages, `ZRANGE`/`LRANGE` by
//! index, `XRANGE ... COUNT`), so no single reply can blow memory, and stopping as
//! soon as the value is known to be over `max_value_bytes`.

use redis::Value;

use super::fetch::show_key;
use super::reconnect::DbConnection;
use super::value;
use crate::record::{KeyType, RedisValue};

/// What a chunked read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunked {
    Value(RedisValue),
    /// The key was deleted before or while it was read.
    Vanished,
    /// The value passed the limit after this many bytes (it was not read further).
    TooLarge(u64),
}

async fn call(
    connection: &DbConnection,
    key: &[u8],
    command: &redis::Cmd,
    name: &str,
) -> anyhow::Result<Value> {
    let doing = format!(
        "{name} of key `{}` in db {}",
        show_key(key),
        connection.db()
    );
    connection
        .run(&doing, |mut c| async move {
            command.query_async::<Value>(&mut c).await
        })
        .await
}

/// Reads `key` of `key_type` (hash, list, set, zset or stream) `chunk` elements at a time.
pub async fn read_chunked(
    connection: &DbConnection,
    key: &[u8],
    key_type: KeyType,
    chunk: u32,
    max: u64,
) -> anyhow::Result<Chunked> {
    let chunk = chunk.max(1);
    let db = connection.db();
    let context = |e: String| anyhow::anyhow!("db {db}, key `{}`: {e}", show_key(key));
    let mut size: u64 = 0;
    match key_type {
        KeyType::Hash | KeyType::Set => {
            let (command_name, is_hash) = if key_type == KeyType::Hash {
                ("HSCAN", true)
            } else {
                ("SSCAN", false)
            };
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut members: Vec<Vec<u8>> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let mut command = redis::cmd(command_name);
                command.arg(key).arg(cursor).arg("COUNT").arg(chunk);
                let reply = call(connection, key, &command, command_name).await?;
                let (next, items) = value::scan_page(reply).map_err(context)?;
                if is_hash {
                    for (field, val) in value::pairs(Value::Array(items)).map_err(context)? {
                        size += (field.len() + val.len()) as u64;
                        pairs.push((field, val));
                    }
                } else {
                    for member in value::byte_list(Value::Array(items)).map_err(context)? {
                        size += member.len() as u64;
                        members.push(member);
                    }
                }
                if size > max {
                    return Ok(Chunked::TooLarge(size));
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            // A SCAN-family walk may return an element twice (while the table rehashes).
            if is_hash {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs.dedup_by(|a, b| a.0 == b.0);
                Ok(if pairs.is_empty() {
                    Chunked::Vanished
                } else {
                    Chunked::Value(RedisValue::Hash(pairs))
                })
            } else {
                members.sort_unstable();
                members.dedup();
                Ok(if members.is_empty() {
                    Chunked::Vanished
                } else {
                    Chunked::Value(RedisValue::Set(members))
                })
            }
        }
        KeyType::List | KeyType::ZSet => {
            let is_list = key_type == KeyType::List;
            let name = if is_list { "LRANGE" } else { "ZRANGE" };
            let mut items: Vec<Vec<u8>> = Vec::new();
            let mut scored: Vec<(Vec<u8>, f64)> = Vec::new();
            let mut start: i64 = 0;
            loop {
                let stop = start + i64::from(chunk) - 1;
                let mut command = redis::cmd(name);
                command.arg(key).arg(start).arg(stop);
                if !is_list {
                    command.arg("WITHSCORES");
                }
                let reply = call(connection, key, &command, name).await?;
                let got = if is_list {
                    let page = value::byte_list(reply).map_err(context)?;
                    let n = page.len();
                    size += page.iter().map(|i| i.len() as u64).sum::<u64>();
                    items.extend(page);
                    n
                } else {
                    let page = value::scored_members(reply).map_err(context)?;
                    let n = page.len();
                    size += page.iter().map(|(m, _)| m.len() as u64 + 8).sum::<u64>();
                    scored.extend(page);
                    n
                };
                if size > max {
                    return Ok(Chunked::TooLarge(size));
                }
                if (got as u64) < u64::from(chunk) {
                    break;
                }
                start += i64::from(chunk);
            }
            Ok(match (is_list, items.is_empty() && scored.is_empty()) {
                (_, true) => Chunked::Vanished,
                (true, false) => Chunked::Value(RedisValue::List(items)),
                (false, false) => Chunked::Value(RedisValue::ZSet(scored)),
            })
        }
        KeyType::Stream => {
            let mut entries = Vec::new();
            let mut start = "-".to_owned();
            loop {
                let mut command = redis::cmd("XRANGE");
                command
                    .arg(key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(chunk);
                let reply = call(connection, key, &command, "XRANGE").await?;
                let page = value::stream_entries(reply).map_err(context)?;
                let n = page.len();
                for entry in page {
                    size += entry.id.len() as u64
                        + entry
                            .fields
                            .iter()
                            .map(|(f, v)| (f.len() + v.len()) as u64)
                            .sum::<u64>();
                    start = format!("({}", entry.id);
                    entries.push(entry);
                }
                if size > max {
                    return Ok(Chunked::TooLarge(size));
                }
                if (n as u64) < u64::from(chunk) {
                    break;
                }
            }
            Ok(if entries.is_empty() {
                Chunked::Vanished
            } else {
                Chunked::Value(RedisValue::Stream(entries))
            })
        }
        KeyType::String | KeyType::Json => Err(anyhow::anyhow!(
            "internal error: {key_type} values are not read in chunks"
        )),
    }
}
