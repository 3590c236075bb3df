//! Notifications turned off or narrowed while following (`CONFIG SET
//! notify-keyspace-events ""`): changes then send no event and would be lost without
//! a word. Where `CONFIG GET` is allowed (`live.check_notifications`, the default),
//! each node's flags are read every [`EVERY`]; a flag live mode had lost marks a
//! resync due (reason `notifications`) and is logged, and with
//! `live.configure_server` the flag is set again at once. Without it, the flags
//! getting back mark one more resync (for the changes of the time they were off).
//! Where `CONFIG` is refused, nothing can watch them: the start-up note says so and
//! that `live.reconcile_every` bounds how long a change can be missed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::connect::{self, Connector};
use super::notify::{missing, with_missing, MODULE_EVENTS, NEEDED};
use super::pending::{LiveState, Reason};

/// How often each node's flags are read: a change is noticed within this.
pub const EVERY: Duration = Duration::from_secs(1);

/// While the flags stay off (not set back by the connector), a resync this often,
/// so the index is never further behind than this.
pub const WHILE_OFF: Duration = Duration::from_secs(30);

/// The start-up note when the flags cannot be watched.
pub fn unwatched_note(reconcile_every: Duration) -> String {
    format!(
        "notifications are not checked (live.check_notifications: false, as where CONFIG is not allowed): \
         if notify-keyspace-events is turned off or narrowed while following, changes are missed without \
         a word until the next periodic resync (live.reconcile_every, now {}); set it to the longest \
         such gap you accept (for example 5m)",
        if reconcile_every.is_zero() {
            "never".to_owned()
        } else {
            format!("{} s", reconcile_every.as_secs())
        }
    )
}

/// Reads `connector`'s `notify-keyspace-events` every [`EVERY`] until `stop`. The
/// flags relied on: [`NEEDED`] (checked, or set, before subscribing), and module
/// events (`d`) once seen set.
pub async fn watch(connector: Arc<Connector>, configure: bool, state: Arc<LiveState>, stop: CancellationToken) {
    let mut needed = NEEDED.to_owned();
    let mut degraded = false;
    let mut last_resync = std::time::Instant::now();
    let mut connection = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if connection.is_none() {
            connection = connector.try_connect(0).await.ok();
        }
        let Some(c) = connection.as_mut() else { continue };
        let reply: Result<Vec<String>, redis::RedisError> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(c)
            .await;
        let now = match reply {
            Ok(pair) => pair.get(1).cloned().unwrap_or_default(),
            Err(error) if connect::is_connection_error(&error) => {
                connection = None;
                continue;
            }
            Err(error) => {
                tracing::warn!(
                    "live: cannot read notify-keyspace-events on Redis at {} any more ({error}): \
                     notifications turned off from now on would not be noticed",
                    connector.endpoint()
                );
                return;
            }
        };
        if !needed.contains(MODULE_EVENTS) && missing(&now, &MODULE_EVENTS.to_string()).is_empty() {
            needed.push(MODULE_EVENTS);
        }
        let lost = missing(&now, &needed);
        if lost.is_empty() {
            if degraded {
                tracing::warn!(
                    "live: Redis at {} publishes the notifications again: a resync reads what changed meanwhile",
                    connector.endpoint()
                );
                state.mark_dirty(Reason::Notifications);
                degraded = false;
            }
            continue;
        }
        if degraded && last_resync.elapsed() >= WHILE_OFF {
            state.mark_dirty(Reason::Notifications);
            last_resync = std::time::Instant::now();
        }
        if !degraded {
            last_resync = std::time::Instant::now();
            tracing::warn!(
                "live: notify-keyspace-events on Redis at {} is now \"{now}\", without \"{lost}\": changes send \
                 no event; a resync reads what changed",
                connector.endpoint()
            );
            state.mark_dirty(Reason::Notifications);
            degraded = true;
        }
        if configure {
            let value = with_missing(&now, &needed);
            let set: Result<(), redis::RedisError> = redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(&value)
                .query_async(c)
                .await;
            match set {
                Ok(()) => {
                    tracing::warn!(
                        "live: set notify-keyspace-events on Redis at {} back to \"{value}\" (live.configure_server)",
                        connector.endpoint()
                    );
                    degraded = false;
                }
                Err(error) => tracing::warn!(
                    "live: cannot set notify-keyspace-events on Redis at {} back to \"{value}\": {error}",
                    connector.endpoint()
                ),
            }
        }
    }
}
