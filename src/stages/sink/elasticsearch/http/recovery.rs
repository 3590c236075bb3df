//! An Elasticsearch restart is transient, wherever the run meets it: the first
//! connection, and the read of every `(_id, content hash)` pair of a change-aware
//! run, are tried again with backoff until `retry.max_elapsed`, as bulks are. While a
//! node starts, it refuses connections or answers 503; while its shards recover, a
//! search answers "all shards failed" (HTTP 503, or 404 when the point in time it read
//! through died with the old process). The read then starts over from a new point in
//! time (its pages are not kept across a restart).

use std::future::Future;

use elasticsearch::http::Method;

use super::client::{check_cluster, EsClient};
use super::retry::{human_duration, Backoff};
use crate::config::model::RetryConfig;

/// What Elasticsearch says while its shards are not (yet) searchable after a start,
/// or when the point in time a read went through died with a restarted node.
const RECOVERING: [&str; 6] = [
    "search_phase_execution_exception",
    "search_context_missing_exception",
    "no_shard_available_action_exception",
    "unavailable_shards_exception",
    "all shards failed",
    "No search context found",
];

/// What a connection check says when no server answered (or one is starting).
const NOT_ANSWERING: [&str; 5] = [
    "is the url right and the server up?",
    "HTTP 502",
    "HTTP 503",
    "HTTP 504",
    "HTTP 429",
];

/// Whether `error` (with its causes) says Elasticsearch is recovering from a restart.
pub fn is_recovering(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    RECOVERING.iter().any(|marker| text.contains(marker))
}

/// Whether a connection check's `error` says no server answered yet (not a wrong
/// certificate, credentials or privileges, which no wait cures).
fn is_not_answering(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    NOT_ANSWERING.iter().any(|marker| text.contains(marker))
}

/// Runs `attempt` until it succeeds, fails for a reason `transient` does not accept,
/// or `retry.max_elapsed` is used up (then its last error, saying how long it tried).
pub async fn retrying<T, F, Fut>(
    policy: &RetryConfig,
    what: &str,
    transient: fn(&anyhow::Error) -> bool,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Backoff::new(policy);
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if transient(&error) => error,
            Err(error) => return Err(error),
        };
        match backoff.next_delay() {
            Some(delay) => {
                tracing::warn!("{what} failed ({error:#}); Elasticsearch may be restarting: trying again in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            None => {
                return Err(anyhow::anyhow!(
                    "{error:#} ({what}: tried for {}, retry.max_elapsed)",
                    human_duration(backoff.elapsed())
                ))
            }
        }
    }
}

/// The first connection ([`check_cluster`]), tried again while no node answers. A
/// node that had to be waited for is starting: then its shards are given up to
/// [`SHARDS_WAIT`] to become searchable (cluster health yellow) before the run uses
/// them.
pub async fn first_contact(client: &EsClient, nodes: usize, policy: &RetryConfig) -> anyhow::Result<String> {
    let mut tries = 0;
    let server = retrying(policy, "connecting to Elasticsearch", is_not_answering, || {
        tries += 1;
        check_cluster(client, nodes)
    })
    .await?;
    if tries > 1 {
        let path = format!(
            "_cluster/health?wait_for_status=yellow&timeout={}s",
            SHARDS_WAIT.as_secs()
        );
        match client.request(Method::Get, &path, None).await {
            Ok(reply) => tracing::info!(
                "Elasticsearch answered after a wait; cluster health: {}",
                reply.snippet()
            ),
            Err(failure) => tracing::debug!("cluster health after a wait: {failure}"),
        }
    }
    Ok(server)
}

/// How long a node that was starting is given for its shards to become searchable.
const SHARDS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_recovering_are_transient_and_a_missing_privilege_is_not() {
        let recovering = anyhow::anyhow!(
            "Elasticsearch at http://127.0.0.1:9200 answered POST _search with HTTP 404: \
             search_phase_execution_exception: all shards failed"
        );
        assert!(is_recovering(&recovering));
        let denied = anyhow::anyhow!("the user lacks the privilege for POST _search");
        assert!(!is_recovering(&denied));
        assert!(is_not_answering(&anyhow::anyhow!(
            "cannot connect to http://127.0.0.1:1: is the url right and the server up?"
        )));
        assert!(!is_not_answering(&anyhow::anyhow!("authentication failed for user x")));
    }
}
