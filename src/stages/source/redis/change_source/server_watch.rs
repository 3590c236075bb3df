//! What no keyspace event tells, watched by polling `INFO server commandstats` on
//! each node: a restart (`run_id` changed: keys lost or loaded from disk without an
//! event) and `FLUSHDB` / `FLUSHALL` (their call counts grew: they publish no per-key
//! event). Either marks a resync due. On a cluster, each master's own account of its
//! role and slots (`CLUSTER NODES`, its `myself` line) too: a change (resharding, a
//! failover) marks a resync due for `topology`, and the runner follows the masters
//! the cluster has then.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::connection::connect::Connector;
use crate::stages::source::redis::change_source::pending::{LiveState, Reason};

/// How often each node is asked.
pub const POLL: Duration = Duration::from_millis(250);

/// What the poll reads of `INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    pub run_id: Option<String>,
    /// Calls of `FLUSHDB` plus `FLUSHALL` since the server started (or `CONFIG RESETSTAT`).
    pub flushes: u64,
}

/// Reads `run_id` and the flush calls out of an `INFO server commandstats` reply.
pub fn parse_info(info: &str) -> Seen {
    let mut seen = Seen::default();
    for line in info.lines() {
        if let Some(id) = line.strip_prefix("run_id:") {
            seen.run_id = Some(id.trim().to_owned());
        } else if let Some(stats) = line
            .strip_prefix("cmdstat_flushdb:")
            .or_else(|| line.strip_prefix("cmdstat_flushall:"))
        {
            let calls = stats
                .split(',')
                .find_map(|part| part.strip_prefix("calls="))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            seen.flushes += calls;
        }
    }
    seen
}

/// What changed between two polls.
pub fn compare(before: &Seen, now: &Seen) -> Option<Reason> {
    if before.run_id.is_some() && now.run_id.is_some() && before.run_id != now.run_id {
        Some(Reason::Restart)
    } else if now.flushes != before.flushes {
        // Fewer calls than before: the counts were reset (CONFIG RESETSTAT), and a
        // flush may have come with it.
        Some(Reason::Flush)
    } else {
        None
    }
}

/// Polls `connector` until `stop`, marking resyncs due on `state`. A node that does
/// not answer is asked again at the next poll (the subscriber notices it is gone).
pub async fn watch(connector: Arc<Connector>, cluster: bool, state: Arc<LiveState>, stop: CancellationToken) {
    let mut last: Option<Seen> = None;
    let mut last_view = None;
    let mut connection = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        if connection.is_none() {
            connection = connector.try_connect(0).await.ok();
        }
        let Some(c) = connection.as_mut() else { continue };
        let reply: Result<String, redis::RedisError> = redis::cmd("INFO")
            .arg("server")
            .arg("commandstats")
            .query_async(c)
            .await;
        let info = match reply {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!("live: INFO on Redis at {}: {error}", connector.endpoint());
                connection = None;
                continue;
            }
        };
        if cluster {
            match super::super::connection::cluster::own_view(&connector, c).await {
                Ok(view) => {
                    if last_view.as_ref().is_some_and(|before| *before != view) {
                        tracing::info!("live: the cluster changed at {}", connector.endpoint());
                        state.mark_dirty(Reason::Topology);
                    }
                    last_view = Some(view);
                }
                Err(error) => {
                    tracing::debug!("live: CLUSTER NODES on {}: {error:#}", connector.endpoint());
                    connection = None;
                    continue;
                }
            }
        }
        let seen = parse_info(&info);
        if let Some(before) = &last {
            if let Some(reason) = compare(before, &seen) {
                tracing::info!("live: Redis at {}: {}", connector.endpoint(), reason.name());
                state.mark_dirty(reason);
            }
        }
        last = Some(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_and_flushes_are_told_apart() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Commandstats\r\n\
                    cmdstat_set:calls=10,usec=5\r\ncmdstat_flushdb:calls=2,usec=1,rejected_calls=0\r\n\
                    cmdstat_flushall:calls=1,usec=1\r\n";
        let seen = parse_info(info);
        assert_eq!(
            seen,
            Seen {
                run_id: Some("abc".into()),
                flushes: 3
            }
        );
        assert_eq!(compare(&seen, &seen), None);
        let flushed = Seen {
            flushes: 4,
            ..seen.clone()
        };
        assert_eq!(compare(&seen, &flushed), Some(Reason::Flush));
        let restarted = Seen {
            run_id: Some("def".into()),
            flushes: 0,
        };
        assert_eq!(compare(&seen, &restarted), Some(Reason::Restart));
    }
}
