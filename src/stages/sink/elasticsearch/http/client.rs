//! The HTTP side of the Elasticsearch sink: one `elasticsearch` crate [`Transport`] per
//! node URL, round-robin between them, skipping a node that just failed to connect,
//! with basic or API-key authentication and TLS trust settings.
//!
//! Why not the crate's `MultiNodeConnectionPool`: it rotates blindly (a dead node keeps
//! getting its share of requests) and never says which node a request went to, which
//! errors must name. A small round-robin over single-node transports does both.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::{Method, Url};

use crate::config::model::EsTlsConfig;

/// How long a node that refused a connection is skipped (when another node is up).
const NODE_DOWN_FOR: Duration = Duration::from_secs(5);

/// How the sink authenticates.
#[derive(Clone)]
pub enum Auth {
    /// Basic authentication.
    Basic { username: String, password: String },
    /// An API key: the `encoded` form, or `id:key`.
    ApiKey(String),
}

impl Auth {
    /// Who the requests run as, for error messages (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Auth::Basic { username, .. } => format!("user `{username}`"),
            Auth::ApiKey(_) => "the API key".to_owned(),
        }
    }

    fn credentials(&self) -> elasticsearch::auth::Credentials {
        use elasticsearch::auth::Credentials;
        match self {
            Auth::Basic { username, password } => Credentials::Basic(username.clone(), password.clone()),
            Auth::ApiKey(key) => match key.split_once(':') {
                Some((id, secret)) => Credentials::ApiKey(id.to_owned(), secret.to_owned()),
                None => Credentials::EncodedApiKey(key.clone()),
            },
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An answer from Elasticsearch (any status).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    /// The node that answered (URL without credentials).
    pub node: Arc<str>,
}

impl Reply {
    /// The body as JSON, or an error naming the request.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "Elasticsearch at {} answered with a body that is not JSON: {}",
                self.node,
                self.snippet()
            )
        })
    }

    /// The start of the body, for error messages.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.chars().count() > 300 {
            format!("{}…", text.chars().take(300).collect::<String>())
        } else {
            text.to_owned()
        }
    }

    /// `error.type: error.reason` of an Elasticsearch error body, or the body's start.
    pub fn error_summary(&self) -> String {
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(value) => match (&value["error"]["type"], &value["error"]["reason"]) {
                (serde_json::Value::String(ty), serde_json::Value::String(reason)) => format!("{ty}: {reason}"),
                _ => match &value["error"] {
                    serde_json::Value::String(text) => text.clone(),
                    _ => self.snippet(),
                },
            },
            Err(_) => self.snippet(),
        }
    }
}

/// Why a request got no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection refused, reset, DNS failure, ...
    Connect,
    /// The server's certificate was not accepted.
    Tls,
    /// No answer within the request timeout.
    Timeout,
}

/// A request that got no answer.
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub node: Arc<str>,
    pub kind: FailureKind,
    /// The error and its causes, joined with `: `.
    pub message: String,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FailureKind::Tls => write!(
                f,
                "the TLS certificate of Elasticsearch at {} is not trusted ({}); set tls.ca_file to the CA that signed it (or tls.insecure_skip_verify: true for tests)",
                self.node, self.message
            ),
            FailureKind::Timeout => write!(f, "Elasticsearch at {} did not answer in time ({})", self.node, self.message),
            FailureKind::Connect => write!(f, "cannot connect to Elasticsearch at {} ({})", self.node, self.message),
        }
    }
}

struct Node {
    /// URL without credentials, as errors and logs show it.
    shown: Arc<str>,
    transport: Transport,
    down_until: Mutex<Option<Instant>>,
}

/// A client over one or several nodes. Cheap to clone.
#[derive(Clone)]
pub struct EsClient {
    nodes: Arc<[Node]>,
    next: Arc<AtomicUsize>,
    auth: Option<Auth>,
}

/// A URL as shown to users: without user name or password.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string().trim_end_matches('/').to_owned()
}

impl EsClient {
    /// Builds the transports. `auth` overrides credentials written in a URL.
    /// No request is made.
    pub fn new(urls: &[Url], auth: Option<Auth>, tls: &EsTlsConfig, timeout: Duration) -> anyhow::Result<EsClient> {
        let ca = match &tls.ca_file {
            Some(path) => Some((
                path,
                std::fs::read(path).with_context(|| format!("cannot read tls.ca_file {}", path.display()))?,
            )),
            None => None,
        };
        let mut nodes = Vec::with_capacity(urls.len());
        let mut effective_auth = auth.clone();
        for url in urls {
            let mut clean = url.clone();
            // Credentials in the URL are basic auth, unless the pipeline gives its own.
            let url_auth = (!url.username().is_empty()).then(|| Auth::Basic {
                username: url.username().to_owned(),
                password: url.password().unwrap_or("").to_owned(),
            });
            let _ = clean.set_username("");
            let _ = clean.set_password(None);
            if !clean.path().ends_with('/') {
                // `Url::join` replaces the last segment unless the path ends with `/`.
                let path = format!("{}/", clean.path());
                clean.set_path(&path);
            }
            let node_auth = auth.clone().or(url_auth);
            if effective_auth.is_none() {
                effective_auth = node_auth.clone();
            }
            let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(clean.clone()))
                .timeout(timeout)
                .enable_meta_header(false);
            if let Some(a) = &node_auth {
                builder = builder.auth(a.credentials());
            }
            if tls.insecure_skip_verify {
                builder = builder.cert_validation(CertificateValidation::None);
            } else if let Some((path, pem)) = &ca {
                builder = builder.cert_validation(CertificateValidation::Full(parse_ca(path, pem)?));
            }
            let transport = builder
                .build()
                .with_context(|| format!("cannot set up the HTTP client for {}", redact_url(url)))?;
            nodes.push(Node {
                shown: Arc::from(redact_url(url)),
                transport,
                down_until: Mutex::new(None),
            });
        }
        anyhow::ensure!(!nodes.is_empty(), "no Elasticsearch URL given");
        Ok(EsClient {
            nodes: nodes.into(),
            next: Arc::new(AtomicUsize::new(0)),
            auth: effective_auth,
        })
    }

    /// Who the requests run as (`user `x``, `the API key`), or `None` without auth.
    pub fn describe_auth(&self) -> Option<String> {
        self.auth.as_ref().map(Auth::describe)
    }

    /// The next node in turn, skipping nodes marked down unless every node is.
    fn pick(&self) -> &Node {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        for i in 0..n {
            let node = &self.nodes[(start + i) % n];
            let down = node.down_until.lock().unwrap_or_else(|e| e.into_inner());
            if down.is_none_or(|until| until <= now) {
                return node;
            }
        }
        &self.nodes[start % n]
    }

    /// Sends one request (`path` may carry a query string) to the next node.
    /// `body` is `(bytes, content type)`. Any HTTP status is a [`Reply`]; no answer
    /// at all is a [`SendFailure`] (and marks that node down for a few seconds).
    ///
    /// A node that cannot be connected to is skipped: the request goes to the next
    /// node, once to each at most, so a dead node in the list fails no request while
    /// another answers (index checks and refreshes included, not only bulks).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Reply, SendFailure> {
        let mut attempts = self.nodes.len();
        loop {
            let node = self.pick();
            match self.request_to(node, method, path, body.clone()).await {
                Err(failure) if failure.kind == FailureKind::Connect && attempts > 1 => {
                    tracing::debug!(node = %failure.node, error = %failure.message, "node unreachable; trying the next one");
                    attempts -= 1;
                }
                result => return result,
            }
        }
    }

    /// [`EsClient::request`] to one given node.
    async fn request_to(
        &self,
        node: &Node,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Reply, SendFailure> {
        let mut headers = HeaderMap::new();
        if let Some((_, content_type)) = &body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let result = node
            .transport
            .send(
                method,
                path.trim_start_matches('/'),
                headers,
                None::<&()>,
                body.map(|(b, _)| b),
                None,
            )
            .await;
        let failure = match result {
            Ok(response) => {
                let status = response.status_code().as_u16();
                match response.bytes().await {
                    Ok(body) => {
                        *node.down_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        return Ok(Reply {
                            status,
                            body,
                            node: node.shown.clone(),
                        });
                    }
                    Err(error) => classify(&error, node.shown.clone()),
                }
            }
            Err(error) => classify(&error, node.shown.clone()),
        };
        if failure.kind == FailureKind::Connect && self.nodes.len() > 1 {
            *node.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + NODE_DOWN_FOR);
        }
        Err(failure)
    }
}

impl EsClient {
    /// Sends `body` as JSON and expects 200: any other status is [`EsClient::status_error`]
    /// naming `what`; no answer at all is the send failure. For the small requests that
    /// change an index's metadata (mappings, markers, aliases).
    pub async fn json_call(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> anyhow::Result<Reply> {
        let bytes = Bytes::from(serde_json::to_vec(body)?);
        let reply = self
            .request(method, path, Some((bytes, "application/json")))
            .await
            .map_err(anyhow::Error::msg)?;
        if reply.status != 200 {
            return Err(self.status_error(&reply, what));
        }
        Ok(reply)
    }

    /// The error for an answer with an unexpected status, saying which request (`what`)
    /// failed where: authentication (401) and privileges (403) get their own words.
    pub fn status_error(&self, reply: &Reply, what: &str) -> anyhow::Error {
        let who = self.describe_auth();
        match reply.status {
            401 => match who {
                Some(who) => anyhow::anyhow!(
                    "authentication failed for {who} at Elasticsearch {} ({what}): check the credentials",
                    reply.node
                ),
                None => anyhow::anyhow!(
                    "Elasticsearch at {} requires authentication ({what}): set username/password or api_key",
                    reply.node
                ),
            },
            403 => anyhow::anyhow!(
                "{} lacks the privilege for {what} at Elasticsearch {}: {}",
                who.unwrap_or_else(|| "the anonymous user".to_owned()),
                reply.node,
                reply.error_summary()
            ),
            status => anyhow::anyhow!(
                "Elasticsearch at {} answered {what} with HTTP {status}: {}",
                reply.node,
                reply.error_summary()
            ),
        }
    }
}

/// The one request of `open`: which server answers, and its version. With several
/// nodes, each is tried until one answers (the client itself moves on from a node
/// that refuses connections; this also moves on from one that does not answer in time).
pub async fn check_cluster(client: &EsClient, nodes: usize) -> anyhow::Result<String> {
    let path = "_nodes/_local?filter_path=cluster_name,nodes.*.version,nodes.*.name";
    let mut last = None;
    for _ in 0..nodes {
        match client.request(Method::Get, path, None).await {
            Ok(reply) if reply.status == 200 => {
                let body = reply.json()?;
                let node = body["nodes"]
                    .as_object()
                    .and_then(|n| n.values().next())
                    .cloned()
                    .unwrap_or_default();
                return Ok(format!(
                    "Elasticsearch {} at {} (cluster {}, node {})",
                    node["version"].as_str().unwrap_or("of unknown version"),
                    reply.node,
                    body["cluster_name"].as_str().unwrap_or("?"),
                    node["name"].as_str().unwrap_or("?"),
                ));
            }
            Ok(reply) => return Err(client.status_error(&reply, "GET _nodes/_local (the connection check)")),
            Err(failure) if failure.kind == FailureKind::Tls => return Err(anyhow::anyhow!("{failure}")),
            Err(failure) => last = Some(failure),
        }
    }
    let failure = last.expect("at least one node was tried");
    Err(anyhow::anyhow!("{failure}: is the url right and the server up?"))
}

fn parse_ca(path: &Path, pem: &[u8]) -> anyhow::Result<Certificate> {
    Certificate::from_pem(pem)
        .map_err(|e| anyhow::anyhow!("tls.ca_file {} holds no usable PEM certificate: {e}", path.display()))
}

/// Names what went wrong from the error's chain of causes.
fn classify(error: &(dyn std::error::Error + 'static), node: Arc<str>) -> SendFailure {
    let mut parts: Vec<String> = Vec::new();
    let mut kind = FailureKind::Connect;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if e.downcast_ref::<rustls::Error>().is_some() || text.contains("certificate") {
            kind = FailureKind::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                kind = FailureKind::Timeout;
            }
        }
        if kind != FailureKind::Tls && text.to_ascii_lowercase().contains("timed out") {
            kind = FailureKind::Timeout;
        }
        // Drop the request URL reqwest puts in its message: it is already named.
        let text = match text.find(" for url (") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    SendFailure {
        node,
        kind,
        message: parts.join(": "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let url = Url::parse("https://elastic:s3cret@es.example:9200/").unwrap();
        assert_eq!(redact_url(&url), "https://es.example:9200");
    }

    #[test]
    fn api_key_auth_is_described_without_the_key() {
        let auth = Auth::ApiKey("c2VjcmV0".into());
        assert_eq!(auth.describe(), "the API key");
        assert!(!format!("{auth:?}").contains("c2VjcmV0"));
        let auth = Auth::Basic {
            username: "bob".into(),
            password: "pw".into(),
        };
        assert_eq!(format!("{auth:?}"), "user `bob`");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure_naming_the_node() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://u:pw@127.0.0.1:{port}")).unwrap();
        let client = EsClient::new(&[url], None, &EsTlsConfig::default(), Duration::from_secs(5)).unwrap();
        let failure = client.request(Method::Get, "_cluster/health", None).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Connect);
        assert_eq!(&*failure.node, format!("http://127.0.0.1:{port}"));
        assert!(!failure.to_string().contains("pw"), "{failure}");
        assert_eq!(client.describe_auth().as_deref(), Some("user `u`"));
    }
}
