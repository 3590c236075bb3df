//! What the bulk service needs of the network: post one request body to a path and
//! get the answer (any status), or learn why no answer came; and the words for a
//! status that ends the run. [`EsClient`] is the real transport. Keeping the service
//! generic over it lets batching, 413 splitting, retries and per-item accounting be
//! unit-tested against a scripted transport (`scripted`, tests only); the integration
//! tests in `tests/` use the real Elasticsearch.

use std::future::Future;

use bytes::Bytes;
use elasticsearch::http::Method;

use super::client::{EsClient, Reply, SendFailure};

/// Sends request bodies to Elasticsearch.
pub trait Transport: Send + Sync + 'static {
    /// Posts `body` (of `content_type`) to `path` (which may carry a query string).
    /// Any HTTP status is a [`Reply`]; no answer at all is a [`SendFailure`].
    fn post(
        &self,
        path: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> impl Future<Output = Result<Reply, SendFailure>> + Send;

    /// The error for an answer whose status ends the run, naming the request (`what`).
    fn status_error(&self, reply: &Reply, what: &str) -> anyhow::Error;
}

impl Transport for EsClient {
    fn post(
        &self,
        path: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> impl Future<Output = Result<Reply, SendFailure>> + Send {
        self.request(Method::Post, path, Some((body, content_type)))
    }

    fn status_error(&self, reply: &Reply, what: &str) -> anyhow::Error {
        EsClient::status_error(self, reply, what)
    }
}

/// A transport that answers from a script, for unit tests: each request's body is
/// recorded, and a function of the request's number and body gives the answer.
#[cfg(test)]
pub mod scripted {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;

    use super::Transport;
    use crate::config::model::RetryConfig;
    use crate::config::units::DurationSpec;
    use crate::dead_letter::DeadLetter;
    use crate::stages::sink::elasticsearch::http::client::{FailureKind, Reply, SendFailure};
    use crate::stages::sink::elasticsearch::http::retry::RetryCounters;
    use crate::stages::sink::elasticsearch::http::service::BulkService;
    use crate::stats::StageCounters;

    /// The node every scripted answer names.
    pub const NODE: &str = "http://scripted:9200";

    type Script = dyn Fn(usize, &str) -> Result<Reply, SendFailure> + Send + Sync;

    /// Answers request `n` (from 0) with body `body` as the script says.
    pub struct ScriptedTransport {
        script: Box<Script>,
        sent: Mutex<Vec<(String, String)>>,
    }

    impl ScriptedTransport {
        /// A transport whose answers come from `script(request number, body)`.
        pub fn new(script: impl Fn(usize, &str) -> Result<Reply, SendFailure> + Send + Sync + 'static) -> Arc<Self> {
            Arc::new(ScriptedTransport {
                script: Box::new(script),
                sent: Mutex::new(Vec::new()),
            })
        }

        /// `(path, body)` of every request so far, in order.
        pub fn sent(&self) -> Vec<(String, String)> {
            self.sent.lock().unwrap().clone()
        }

        /// The bodies of the requests so far, in order.
        pub fn bodies(&self) -> Vec<String> {
            self.sent().into_iter().map(|(_, body)| body).collect()
        }
    }

    impl Transport for Arc<ScriptedTransport> {
        async fn post(&self, path: &str, body: Bytes, _content_type: &'static str) -> Result<Reply, SendFailure> {
            let body = String::from_utf8_lossy(&body).into_owned();
            let n = {
                let mut sent = self.sent.lock().unwrap();
                sent.push((path.to_owned(), body.clone()));
                sent.len() - 1
            };
            (self.script)(n, &body)
        }

        fn status_error(&self, reply: &Reply, what: &str) -> anyhow::Error {
            anyhow::anyhow!(
                "Elasticsearch at {} answered {what} with HTTP {}: {}",
                reply.node,
                reply.status,
                reply.error_summary()
            )
        }
    }

    /// A bulk service over `transport` for pipeline `users`, whose retries wait 1 to
    /// 2 ms and give up after `max_elapsed_ms`, its dead-letter file `dead.ndjson` in
    /// `dir`.
    pub fn service(
        transport: &Arc<ScriptedTransport>,
        dir: &std::path::Path,
        max_elapsed_ms: u64,
    ) -> BulkService<Arc<ScriptedTransport>> {
        let millis = |ms| DurationSpec(Duration::from_millis(ms));
        BulkService {
            transport: transport.clone(),
            policy: RetryConfig {
                max_elapsed: millis(max_elapsed_ms),
                initial_backoff: millis(1),
                max_backoff: millis(2),
            },
            retries: Arc::new(RetryCounters::default()),
            pipeline: "users".into(),
            stage: "sink".to_owned(),
            dead_letter: DeadLetter::new(dir.join("dead.ndjson")),
            counters: Arc::new(StageCounters::default()),
        }
    }

    /// An answer with `status` and the JSON `body`.
    pub fn answer(status: u16, body: serde_json::Value) -> Result<Reply, SendFailure> {
        Ok(Reply {
            status,
            body: Bytes::from(body.to_string()),
            node: NODE.into(),
        })
    }

    /// No answer: the connection was refused.
    pub fn refused() -> Result<Reply, SendFailure> {
        Err(SendFailure {
            node: NODE.into(),
            kind: FailureKind::Connect,
            message: "connection refused".to_owned(),
        })
    }

    /// A bulk answer with one item per status in `statuses`, each rejected one with an
    /// error of `error_type`.
    pub fn bulk_answer(statuses: &[u16], error_type: &str) -> Result<Reply, SendFailure> {
        let errors = statuses.iter().any(|s| !(200..300).contains(s));
        let items: Vec<serde_json::Value> = statuses
            .iter()
            .map(|&status| {
                if (200..300).contains(&status) {
                    serde_json::json!({ "index": { "status": status } })
                } else {
                    serde_json::json!({ "index": { "status": status, "error": {
                        "type": error_type,
                        "reason": format!("rejected with {status}"),
                    } } })
                }
            })
            .collect();
        answer(200, serde_json::json!({ "errors": errors, "items": items }))
    }

    /// The `_id`s of the documents in a bulk body, in order.
    pub fn ids(body: &str) -> Vec<String> {
        body.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|line| {
                let action = line.as_object()?.values().next()?.clone();
                action["_id"].as_str().map(str::to_owned)
            })
            .collect()
    }
}
