//! Which databases to read: `"*"` asks `CONFIG GET databases` and the size of each,
//! falling back to `INFO keyspace` where `CONFIG` is renamed away or denied (managed
//! Redis); a list is checked first, and every database that does not exist is named
//! in one error before anything is read.

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};

use super::super::connection::connect::{is_connection_error, is_permission_denied, Connector};
use super::super::connection::errors::is_unknown_command;
use super::value;

/// The databases chosen, and notes for the summary (fallbacks used).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub databases: Vec<u32>,
    pub notes: Vec<String>,
}

/// Whether a server error means "this command is not available to us" (renamed away,
/// unknown, or denied by ACL) rather than a failure worth stopping for.
fn is_unavailable(error: &RedisError) -> bool {
    is_permission_denied(error) || is_unknown_command(error)
}

/// `CONFIG GET databases`, or `None` when `CONFIG` is not available to us.
pub async fn database_count(connector: &Connector, control: &mut MultiplexedConnection) -> anyhow::Result<Option<u32>> {
    let reply: Result<Value, RedisError> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("databases")
        .query_async(control)
        .await;
    match reply {
        Ok(reply) => {
            let pairs = value::pairs(reply).map_err(|e| anyhow::anyhow!("CONFIG GET databases: {e}"))?;
            Ok(pairs
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(b"databases"))
                .and_then(|(_, count)| std::str::from_utf8(&count).ok()?.parse().ok()))
        }
        Err(error) if !is_connection_error(&error) && is_unavailable(&error) => Ok(None),
        Err(error) => Err(anyhow::anyhow!(connector.describe(&error, "CONFIG GET databases"))),
    }
}

/// Parses `INFO keyspace`: `(database, keys)` for every database that holds keys.
pub fn parse_keyspace(info: &str) -> Vec<(u32, u64)> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().split_once(':')?;
            let db: u32 = name.strip_prefix("db")?.parse().ok()?;
            let keys = fields
                .split(',')
                .find_map(|field| field.strip_prefix("keys="))
                .and_then(|n| n.parse().ok())?;
            Some((db, keys))
        })
        .collect()
}

async fn keyspace(connector: &Connector, control: &mut MultiplexedConnection) -> anyhow::Result<Vec<(u32, u64)>> {
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(control)
        .await
        .map_err(|e| {
            anyhow::anyhow!(connector.describe(&e, "INFO keyspace (to list the databases for `database: \"*\"`)"))
        })?;
    Ok(parse_keyspace(&info))
}

/// `SELECT db` then `DBSIZE` for every database of `databases`, in one pipeline that
/// ends back on database 0: the replies, two per database, errors included.
async fn select_and_dbsize(
    connector: &Connector,
    control: &mut MultiplexedConnection,
    databases: std::ops::Range<u32>,
    doing: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for db in databases {
        pipe.cmd("SELECT").arg(db).cmd("DBSIZE");
    }
    pipe.cmd("SELECT").arg(0);
    pipe.query_async(control)
        .await
        .map_err(|e| anyhow::anyhow!(connector.describe(&e, doing)))
}

/// `DBSIZE` of databases `0..count`, through `SELECT`; `None` when `SELECT` is denied.
/// A size is `None` when `DBSIZE` is denied (an ACL listing only the read commands).
async fn sizes_by_select(
    connector: &Connector,
    control: &mut MultiplexedConnection,
    count: u32,
) -> anyhow::Result<Option<Vec<(u32, Option<u64>)>>> {
    let replies = select_and_dbsize(connector, control, 0..count, "DBSIZE of every database").await?;
    let mut sizes = Vec::new();
    for (db, pair) in (0..count).zip(replies.chunks(2)) {
        if matches!(pair[0], Value::ServerError(_)) {
            return Ok(None);
        }
        let keys = match &pair[1] {
            Value::ServerError(_) => None,
            reply => Some(value::int(reply).ok().flatten().unwrap_or(0).max(0) as u64),
        };
        sizes.push((db, keys));
    }
    Ok(Some(sizes))
}

/// `"*"`: every database that holds keys, in order.
pub async fn resolve_all(connector: &Connector, control: &mut MultiplexedConnection) -> anyhow::Result<Resolved> {
    if let Some(count) = database_count(connector, control).await? {
        if let Some(sizes) = sizes_by_select(connector, control, count).await? {
            let mut notes = Vec::new();
            if sizes.iter().any(|(_, keys)| keys.is_none()) {
                notes.push("DBSIZE is not available to this user: databases of unknown size were read too (an empty one costs one SCAN)".to_owned());
            }
            let databases = sizes
                .into_iter()
                .filter(|(_, keys)| *keys != Some(0))
                .map(|(db, _)| db)
                .collect();
            return Ok(Resolved { databases, notes });
        }
    }
    match keyspace(connector, control).await {
        Ok(keyspace) => Ok(Resolved {
            databases: keyspace.into_iter().map(|(db, _)| db).collect(),
            notes: vec!["CONFIG is not available on this server: the databases holding keys were found with INFO keyspace".into()],
        }),
        Err(error) => match probe_sizes(connector, control).await? {
            Some(sizes) => Ok(Resolved {
                databases: sizes.into_iter().filter(|(_, keys)| *keys > 0).map(|(db, _)| db).collect(),
                notes: vec!["neither CONFIG nor INFO is available to this user: the databases holding keys were found with SELECT and DBSIZE".into()],
            }),
            // Only database 0 can be read, and the user may not know it.
            None => Err(anyhow::anyhow!(
                "{error}; SELECT is denied to this user too, so `database: \"*\"` cannot find the databases: name them instead (`database: 0`)"
            )),
        },
    }
}

/// `DBSIZE` of every database, found by `SELECT`ing 0, 1, 2, ... until Redis answers
/// "DB index is out of range", for a user allowed neither `CONFIG` nor `INFO` (ACLs
/// such as `+@read -@dangerous`). `None` when `SELECT` or `DBSIZE` is denied too.
async fn probe_sizes(
    connector: &Connector,
    control: &mut MultiplexedConnection,
) -> anyhow::Result<Option<Vec<(u32, u64)>>> {
    const STEP: u32 = 64;
    let mut sizes = Vec::new();
    let mut first = 0u32;
    loop {
        let doing = "SELECT and DBSIZE (to list the databases)";
        let replies = select_and_dbsize(connector, control, first..first + STEP, doing).await?;
        for (db, pair) in (first..first + STEP).zip(replies.chunks(2)) {
            match &pair[0] {
                Value::ServerError(e) if e.details().unwrap_or("").contains("out of range") => return Ok(Some(sizes)),
                Value::ServerError(_) => return Ok(None),
                _ => {}
            }
            if matches!(pair[1], Value::ServerError(_)) {
                return Ok(None);
            }
            let keys = value::int(&pair[1]).ok().flatten().unwrap_or(0).max(0) as u64;
            sizes.push((db, keys));
        }
        first += STEP;
    }
}

/// How many keys the databases to read hold, for the progress estimate: `DBSIZE` of
/// each, through `SELECT` on the control connection (database 0 needs none; the
/// pipeline ends back on 0). A database this user may not `SELECT` is an error naming
/// it, before anything is read; a `DBSIZE` that fails (denied by an ACL that allows
/// the reads) only leaves that database out of the estimate.
pub async fn estimate_keys(
    connector: &Connector,
    control: &mut MultiplexedConnection,
    databases: &[u32],
) -> anyhow::Result<u64> {
    if databases.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for &db in databases {
        if db != 0 {
            pipe.cmd("SELECT").arg(db);
        }
        pipe.cmd("DBSIZE");
    }
    if databases.iter().any(|&db| db != 0) {
        pipe.cmd("SELECT").arg(0);
    }
    let replies: Vec<Value> = pipe
        .query_async(control)
        .await
        .map_err(|e| anyhow::anyhow!(connector.describe(&e, "DBSIZE (to estimate the keys to read)")))?;
    let mut replies = replies.into_iter();
    let mut total = 0u64;
    for &db in databases {
        if db != 0 {
            if let Some(Value::ServerError(error)) = replies.next() {
                let error = RedisError::from(error);
                return Err(anyhow::anyhow!(
                    connector.describe(&error, &format!("SELECT of db {db}"))
                ));
            }
        }
        if let Some(Ok(Some(keys))) = replies.next().map(|reply| value::int(&reply)) {
            total += keys.max(0) as u64;
        }
    }
    Ok(total)
}

/// Checks that every database of `listed` exists; the error names all that do not.
pub async fn check_listed(
    connector: &Connector,
    control: &mut MultiplexedConnection,
    listed: &[u32],
) -> anyhow::Result<()> {
    if let Some(count) = database_count(connector, control).await? {
        let bad: Vec<u32> = listed.iter().copied().filter(|db| *db >= count).collect();
        if bad.is_empty() {
            return Ok(());
        }
        return Err(anyhow::anyhow!(
            "Redis at {} has no {} {} (it has {count} databases, 0 to {})",
            connector.endpoint(),
            if bad.len() == 1 { "database" } else { "databases" },
            join(&bad),
            count.saturating_sub(1)
        ));
    }
    // Without CONFIG, ask SELECT itself.
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for db in listed {
        pipe.cmd("SELECT").arg(*db);
    }
    pipe.cmd("SELECT").arg(0);
    let replies: Vec<Value> = pipe
        .query_async(control)
        .await
        .map_err(|e| anyhow::anyhow!(connector.describe(&e, "SELECT (to check the databases)")))?;
    let bad: Vec<u32> = listed
        .iter()
        .zip(&replies)
        .filter(
            |(_, reply)| matches!(reply, Value::ServerError(e) if e.details().unwrap_or("").contains("out of range")),
        )
        .map(|(db, _)| *db)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "Redis at {} has no {} {} (SELECT: DB index is out of range)",
            connector.endpoint(),
            if bad.len() == 1 { "database" } else { "databases" },
            join(&bad)
        ))
    }
}

fn join(dbs: &[u32]) -> String {
    dbs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lists_databases_with_their_key_counts() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb12:keys=40,expires=0,avg_ttl=0\r\n";
        assert_eq!(parse_keyspace(info), vec![(0, 3), (12, 40)]);
        assert_eq!(parse_keyspace("# Keyspace\r\n"), vec![]);
    }
}
