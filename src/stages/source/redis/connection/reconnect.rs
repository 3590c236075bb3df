//! One database's connection that survives drops: a command that fails because the
//! connection is gone is retried on a new connection (bounded retries with backoff),
//! and a server restart (a new `run_id`) is noticed so the scan, and a collection's
//! read in chunks, can start over.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{Pipeline, RedisError, RedisResult, Value};

use super::connect::{is_connection_error, is_loading, Connector};
use super::packed::PackedConnection;
use crate::backoff::Doubling;

/// How long to keep trying to get a connection back before the run fails.
pub const RECONNECT_BUDGET: Duration = Duration::from_secs(30);
/// The wait between reconnection attempts: 50 ms, doubling to 2 s.
const BACKOFF: Doubling = Doubling::new(Duration::from_millis(50), Duration::from_secs(2));

/// Server restarts seen by one database's connection, and what they made start over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartCounts {
    /// Restarts seen (a new `run_id`, or none to compare).
    pub restarts: u64,
    /// Key scans started over from cursor 0.
    pub scans_started_over: u64,
    /// Collections read again from their first element.
    pub reads_started_over: u64,
}

/// A connection to one database that reconnects on I/O errors.
pub struct DbConnection {
    connector: Arc<Connector>,
    db: u32,
    current: Mutex<(u64, MultiplexedConnection)>,
    reconnecting: tokio::sync::Mutex<()>,
    run_id: Mutex<Option<String>>,
    /// Bumped each time the server is found restarted (or cannot be told apart from one).
    restarts: AtomicU64,
    reconnects: AtomicU64,
    /// Key scans started over from cursor 0 after a restart.
    scans_started_over: AtomicU64,
    /// Collections whose read in chunks spanned a restart and was started over.
    reads_started_over: AtomicU64,
    /// Idle lean connections for pages' pipelines (plain TCP only), as many as
    /// pipelines ran at once (a page's inspection and another's read: up to two per
    /// page in flight); opened when first needed.
    idle_packed: Mutex<Vec<PackedConnection>>,
}

impl DbConnection {
    /// Connects to `db`.
    pub async fn open(connector: Arc<Connector>, db: u32) -> anyhow::Result<DbConnection> {
        let mut connection = connector.connect(db).await?;
        let run_id = server_run_id(&mut connection).await.unwrap_or(None);
        Ok(DbConnection {
            connector,
            db,
            current: Mutex::new((0, connection)),
            reconnecting: tokio::sync::Mutex::new(()),
            run_id: Mutex::new(run_id),
            restarts: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            scans_started_over: AtomicU64::new(0),
            reads_started_over: AtomicU64::new(0),
            idle_packed: Mutex::new(Vec::new()),
        })
    }

    /// The database number.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// The connector (for error messages).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// How many times the server was found restarted since the start.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// What the restarts seen so far made start over, for the summary.
    pub fn restart_counts(&self) -> RestartCounts {
        RestartCounts {
            restarts: self.restarts(),
            scans_started_over: self.scans_started_over.load(Ordering::SeqCst),
            reads_started_over: self.reads_started_over.load(Ordering::SeqCst),
        }
    }

    /// Counts one key scan started over from cursor 0 after a restart.
    pub fn note_scan_started_over(&self) {
        self.scans_started_over.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts one collection read again from its start after a restart.
    pub fn note_read_started_over(&self) {
        self.reads_started_over.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times the connection was replaced.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::SeqCst)
    }

    fn current(&self) -> (u64, MultiplexedConnection) {
        let guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Runs `op` on the connection; when the connection is lost (or the server is still
    /// loading), waits, reconnects and runs it again, for at most [`RECONNECT_BUDGET`].
    /// Other errors are returned as they are. `doing` names the action in errors.
    pub async fn run<T, F, Fut>(&self, doing: &str, op: F) -> anyhow::Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut deadline: Option<Instant> = None;
        let mut backoff = BACKOFF;
        loop {
            let (generation, connection) = self.current();
            let error = match op(connection).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !(is_connection_error(&error) || is_loading(&error)) {
                return Err(anyhow::anyhow!(self.connector.describe(&error, doing)));
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + RECONNECT_BUDGET);
            if Instant::now() >= deadline {
                return Err(anyhow::anyhow!(
                    "{} (gave up after retrying for {} s)",
                    self.connector.describe(&error, doing),
                    RECONNECT_BUDGET.as_secs()
                ));
            }
            if is_loading(&error) {
                tokio::time::sleep(backoff.current()).await;
            } else {
                tracing::warn!(
                    db = self.db,
                    "lost the connection to Redis at {}: reconnecting",
                    self.connector.endpoint()
                );
                self.reconnect(generation, deadline).await?;
            }
            backoff.double();
        }
    }

    /// The idle lean connections (a poisoned lock still holds a usable list).
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PackedConnection>> {
        self.idle_packed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a page's pipeline and gives its replies, a server error on one command
    /// being that command's reply (as with the crate's `ignore_errors`). On plain TCP
    /// it goes over a lean connection (see `packed`), else over the crate's; either
    /// way a lost connection is retried as [`DbConnection::run`] retries.
    pub async fn pipeline(&self, doing: &str, pipe: &Pipeline) -> anyhow::Result<Vec<Value>> {
        let Some(server) = self.connector.plain_server() else {
            // The server refused a lean connection (`maxclients`): the idle ones of
            // this database are closed, so their slots go to connections the run
            // needs (the next database's, a reconnect).
            self.idle().clear();
            return self
                .run(doing, |mut c| async move {
                    unless_loading(pipe.query_async::<Vec<Value>>(&mut c).await?)
                })
                .await;
        };
        let packed = pipe.get_packed_pipeline();
        let packed = packed.as_slice();
        self.run(doing, |mut shared| async move {
            let idle = self.idle().pop();
            let mut connection = match idle {
                Some(connection) => connection,
                None => match PackedConnection::open(server, self.db).await {
                    Ok(connection) => connection,
                    Err(error) if is_connection_error(&error) || is_loading(&error) => return Err(error),
                    // Refused (too many clients, ...): the crate's connection reads.
                    Err(error) => {
                        self.connector.refuse_lean(&error);
                        return unless_loading(pipe.query_async::<Vec<Value>>(&mut shared).await?);
                    }
                },
            };
            match connection.query(packed, pipe.len()).await {
                Ok(replies) => {
                    self.idle().push(connection);
                    unless_loading(replies)
                }
                Err(error) => {
                    // This connection is dropped; the idle ones may be as dead (a
                    // restarted server), so the retry starts on a new one.
                    self.idle().clear();
                    Err(error)
                }
            }
        })
        .await
    }

    /// Replaces the connection of `generation` (unless another task already did).
    async fn reconnect(&self, generation: u64, deadline: Instant) -> anyhow::Result<()> {
        let _one_at_a_time = self.reconnecting.lock().await;
        if self.current().0 != generation {
            return Ok(());
        }
        let mut backoff = BACKOFF;
        loop {
            let connected = match self.connector.try_connect(self.db).await {
                // A server too slow to answer `INFO` (paused, busy) is not one that
                // restarted: this attempt failed, like one that could not connect.
                Ok(mut connection) => server_run_id(&mut connection).await.map(|run_id| (connection, run_id)),
                Err(error) => Err(error),
            };
            match connected {
                Ok((connection, run_id)) => {
                    {
                        let mut known = self.run_id.lock().unwrap_or_else(|e| e.into_inner());
                        // Without a run id (INFO denied) a restart cannot be ruled out.
                        if run_id.is_none() || *known != run_id {
                            self.restarts.fetch_add(1, Ordering::SeqCst);
                        }
                        *known = run_id;
                    }
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = (generation + 1, connection);
                    self.reconnects.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(error) => {
                    let retryable = is_connection_error(&error) || is_loading(&error);
                    if !retryable || Instant::now() >= deadline {
                        return Err(anyhow::anyhow!(
                            "{} (after losing the connection while reading)",
                            self.connector
                                .describe(&error, &format!("reconnecting to db {}", self.db))
                        ));
                    }
                    tokio::time::sleep(backoff.current()).await;
                    backoff.double();
                }
            }
        }
    }
}

/// A pipeline's replies, or the `LOADING` error one of them is: the server is loading
/// its data set again under open connections (`DEBUG RELOAD`, a replica's full sync),
/// so the pipeline waits and is sent again, as a single command refused `LOADING` is.
fn unless_loading(replies: Vec<Value>) -> RedisResult<Vec<Value>> {
    let loading = replies.iter().find_map(|reply| match reply {
        Value::ServerError(error) if error.code() == "LOADING" => Some(error.clone()),
        _ => None,
    });
    match loading {
        Some(error) => Err(RedisError::from(error)),
        None => Ok(replies),
    }
}

/// The server's `run_id` (new at each start), or `None` when `INFO` is not allowed;
/// an error when the connection failed (lost, or no answer in time).
async fn server_run_id(connection: &mut MultiplexedConnection) -> RedisResult<Option<String>> {
    let info: String = match redis::cmd("INFO").arg("server").query_async(connection).await {
        Ok(info) => info,
        Err(error) if is_connection_error(&error) || is_loading(&error) => return Err(error),
        Err(_) => return Ok(None),
    };
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loading_reply_anywhere_in_a_pipeline_is_a_loading_error_to_wait_out() {
        let error = |line: &[u8]| redis::parse_redis_value(line).unwrap();
        let replies = vec![Value::Int(1), error(b"-WRONGTYPE Operation against a key\r\n")];
        assert_eq!(unless_loading(replies.clone()).unwrap(), replies);
        let loading = error(b"-LOADING Redis is loading the dataset in memory\r\n");
        let error = unless_loading(vec![Value::Int(1), loading]).unwrap_err();
        assert!(is_loading(&error), "{error:?}");
    }
}
