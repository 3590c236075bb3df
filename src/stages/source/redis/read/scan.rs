//! Walking a database with `SCAN cursor MATCH pattern COUNT n TYPE t`, so Redis itself
//! decides which keys a rule selects. The cursor survives a dropped connection; after
//! a server restart (new hash seed, so old cursors mean nothing) the walk starts over.

use redis::Value;

use super::super::connection::reconnect::DbConnection;
use super::value;
use crate::record::KeyType;

/// One walk over one database: everything, or what one rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSpec {
    pub database: u32,
    /// Redis glob given to `MATCH`; `None` selects every key.
    pub pattern: Option<String>,
    /// Type given to `TYPE`; when set, the keys' types need not be asked.
    pub key_type: Option<KeyType>,
}

/// The state of one walk.
pub struct Scanner {
    spec: ScanSpec,
    count: u32,
    cursor: u64,
    done: bool,
    restarts_seen: u64,
}

impl Scanner {
    /// A walk of `spec` asking `count` keys per call, from cursor 0.
    pub fn new(spec: ScanSpec, count: u32, connection: &DbConnection) -> Scanner {
        Scanner {
            spec,
            count,
            cursor: 0,
            done: false,
            restarts_seen: connection.restarts(),
        }
    }

    /// The next page of keys (possibly empty: `MATCH` filters after sampling), or `None`
    /// at the end of the walk.
    pub async fn next_page(&mut self, connection: &DbConnection) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let mut command = redis::cmd("SCAN");
            command.arg(self.cursor);
            if let Some(pattern) = &self.spec.pattern {
                command.arg("MATCH").arg(pattern.as_bytes());
            }
            command.arg("COUNT").arg(self.count);
            if let Some(key_type) = self.spec.key_type {
                command.arg("TYPE").arg(key_type.redis_name());
            }
            let doing = format!("SCAN of db {}", self.spec.database);
            let reply: Value = connection
                .run(&doing, |mut c| {
                    let command = command.clone();
                    async move { command.query_async(&mut c).await }
                })
                .await?;
            let restarts = connection.restarts();
            if restarts != self.restarts_seen {
                // The server restarted while we walked: its cursors are not ours any more.
                self.restarts_seen = restarts;
                self.cursor = 0;
                connection.note_scan_started_over();
                continue;
            }
            let (cursor, items) = value::scan_page(reply).map_err(|e| anyhow::anyhow!("{doing}: {e}"))?;
            let keys = value::byte_list(Value::Array(items)).map_err(|e| anyhow::anyhow!("{doing}: {e}"))?;
            self.cursor = cursor;
            self.done = cursor == 0;
            return Ok(Some(keys));
        }
    }
}
