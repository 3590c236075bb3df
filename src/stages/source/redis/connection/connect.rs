//! Connecting to Redis: the client settings (ACL user, password or password file,
//! TLS and mutual TLS), one connection per database, and errors that say which
//! server failed and how, without ever showing the password.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ServerErrorKind, TlsCertificates,
};

use super::packed::PlainServer;
use crate::config::model::RedisSourceConfig;

/// Opens connections to one Redis server, each on a chosen database.
pub struct Connector {
    info: ConnectionInfo,
    tls: Option<TlsCertificates>,
    /// `host:port`, for messages.
    endpoint: String,
    user: Option<String>,
    timeout: Duration,
    /// The same server for the lean connection of the hot path, when it is plain TCP.
    plain: Option<PlainServer>,
    /// Set once the server refused a lean connection (`maxclients` reached, ...):
    /// from then on every database reads on its one connection.
    lean_refused: AtomicBool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info holds the password: show only what is safe.
        f.debug_struct("Connector")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .finish()
    }
}

/// Reads a password file: the whole file, less one trailing newline (`\n` or `\r\n`).
pub fn read_password_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the Redis password file {}: {e}", path.display()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    crate::redact::register(text);
    Ok(text.to_owned())
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the Redis TLS {what} {}: {e}", path.display()))
}

impl Connector {
    /// Prepares the client: reads the password file and the TLS files (no network yet).
    pub fn new(config: &RedisSourceConfig) -> Result<Connector, String> {
        let endpoint = format!("{}:{}", config.host, config.port);
        let password = match (&config.password, &config.password_file) {
            // `password: "${REDIS_PASSWORD:-}"` with the variable unset: no password,
            // not an empty one (which the server refuses with a misleading reason).
            (Some(password), None) if password.is_empty() => None,
            (Some(password), _) => Some(password.clone()),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        let addr = if config.tls.enabled {
            ConnectionAddr::TcpTls {
                host: config.host.clone(),
                port: config.port,
                insecure: config.tls.insecure_skip_verify,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(config.host.clone(), config.port)
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &password {
            settings = settings.set_password(password);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| format!("invalid Redis address {endpoint}: {e}"))?
            .set_redis_settings(settings);
        let tls = if config.tls.enabled {
            let root_cert = config
                .tls
                .ca_file
                .as_deref()
                .map(|p| read_pem(p, "CA file"))
                .transpose()?;
            let client_tls = match (&config.tls.cert_file, &config.tls.key_file) {
                (Some(cert), Some(key)) => Some(ClientTlsConfig {
                    client_cert: read_pem(cert, "certificate file")?,
                    client_key: read_pem(key, "key file")?,
                }),
                _ => None,
            };
            Some(TlsCertificates { client_tls, root_cert })
        } else {
            None
        };
        let plain = (!config.tls.enabled).then(|| PlainServer {
            host: config.host.clone(),
            port: config.port,
            username: config.username.clone(),
            password: password.clone(),
            timeout: config.timeout.0,
        });
        Ok(Connector {
            info,
            tls,
            endpoint,
            user: config.username.clone(),
            timeout: config.timeout.0,
            plain,
            lean_refused: AtomicBool::new(false),
        })
    }

    /// `host:port` of the server.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn client(&self, db: u32) -> Result<Client, RedisError> {
        let settings = self.info.redis_settings().clone().set_db(i64::from(db));
        let info = self.info.clone().set_redis_settings(settings);
        match &self.tls {
            Some(certificates) => Client::build_with_tls(info, certificates.clone()),
            None => Client::open(info),
        }
    }

    /// Opens a connection on database `db`; the error is raw, see [`Connector::describe`].
    pub async fn try_connect(&self, db: u32) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client(db)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Opens a publish/subscribe connection (live mode's keyspace notifications).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        let client = self.client(0)?;
        match tokio::time::timeout(self.timeout, client.get_async_pubsub()).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to the subscription connection",
            ))),
        }
    }

    /// The server as the lean connection reaches it: `None` with TLS, where the
    /// crate's connection does all the reading.
    pub fn plain_server(&self) -> Option<&PlainServer> {
        self.plain
            .as_ref()
            .filter(|_| !self.lean_refused.load(Ordering::Relaxed))
    }

    /// Stops opening lean connections, after the server refused one with `error`
    /// (says so once): the crate's connection of each database does the reading.
    pub fn refuse_lean(&self, error: &RedisError) {
        if !self.lean_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Redis at {} refused an extra connection ({}): reading each database on its one connection, which is slower",
                self.endpoint,
                error
            );
        }
    }

    /// Opens a connection on database `db`, with an error that names the server.
    pub async fn connect(&self, db: u32) -> anyhow::Result<MultiplexedConnection> {
        match self.try_connect(db).await {
            Ok(connection) => Ok(connection),
            Err(error) => {
                let error = self.server_reason(error, db).await;
                Err(anyhow::anyhow!(self.describe(&error, &format!("connecting to db {db}"))))
            }
        }
    }

    /// The crate reports a refused `AUTH` without the server's words ("Password
    /// authentication failed"): asked again on a plain connection, the server says
    /// why (`WRONGPASS ...`, or `AUTH ... called without any password configured`).
    /// Any other error, or one the second try does not explain, is kept.
    async fn server_reason(&self, error: RedisError, db: u32) -> RedisError {
        if error.kind() != ErrorKind::AuthenticationFailed {
            return error;
        }
        let Some(server) = &self.plain else {
            return error;
        };
        match super::packed::PackedConnection::open(server, db).await {
            Err(refused) if !is_connection_error(&refused) => refused,
            _ => error,
        }
    }

    /// One line saying which server failed, while doing what, and why.
    pub fn describe(&self, error: &RedisError, doing: &str) -> String {
        describe_error(&self.endpoint, self.user.as_deref(), self.timeout, error, doing)
    }
}

/// Whether an error means the connection is gone (reconnecting may help).
pub fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() || error.is_timeout()
}

/// Whether the server refused the command to this user (ACL, `NOPERM`). The redis
/// crate reports it as its own error kind, not always with that word in the text.
pub fn is_permission_denied(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) || error.to_string().contains("NOPERM")
}

/// Whether the server refused a command only because of the key it names: the user
/// may run the command, not on that key (`NOPERM this user has no permissions to
/// access one of the keys used as arguments` in Redis 6 and 7.0, `NOPERM No
/// permissions to access a key` from 7.2). A denied command says "run" instead.
pub fn is_key_permission_denied(error: &RedisError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    is_permission_denied(error) && text.contains("access") && text.contains("key")
}

/// Whether the server is still loading its data set (`LOADING`): wait and retry.
pub fn is_loading(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
}

/// Whether a connection failed because the host name has no address (DNS).
fn is_unresolved_host(text: &str) -> bool {
    text.contains("failed to lookup address information")
        || text.contains("Name or service not known")
        || text.contains("nodename nor servname")
        || text.contains("No address associated with hostname")
}

/// Renders a Redis error for a person: server, action, cause, and what to do.
pub fn describe_error(
    endpoint: &str,
    user: Option<&str>,
    timeout: Duration,
    error: &RedisError,
    doing: &str,
) -> String {
    let text = error.to_string();
    let who = user
        .map(|u| format!("user `{u}`"))
        .unwrap_or_else(|| "the default user".to_owned());
    let cause = if error.is_connection_refusal() {
        "connection refused (is Redis running and listening on that port?)".to_owned()
    } else if error.is_timeout() || text.contains("timed out") {
        format!("no answer within {} (timeout)", humantime(timeout))
    } else if text.contains("without any password configured") {
        // The server has no password (and no ACL user with one): what was sent is
        // not wrong, it is not wanted.
        format!(
            "authentication refused for {who}: the server has no password set, but one was sent; remove \
             `password` / `password_file` (the server said: {})",
            server_words(error)
        )
    } else if text.contains("WRONGPASS") || error.kind() == ErrorKind::AuthenticationFailed {
        format!(
            "authentication failed for {who}: wrong password, or the user does not exist or is disabled (the \
             server said: {})",
            server_words(error)
        )
    } else if text.contains("NOAUTH") {
        "the server requires a password (NOAUTH): set `password` or `password_file`".to_owned()
    } else if is_permission_denied(error) {
        let detail = error.detail().map(str::to_owned).unwrap_or_else(|| text.clone());
        format!("permission denied to {who} (NOPERM): {detail}")
    } else if super::cluster::is_cluster_change(error) {
        format!(
            "the cluster moved the key's slot to another node, or cannot serve it now ({}): resharding or a failover during the run; run again once it is over (cluster_state:ok)",
            strip_kind(&text)
        )
    } else if is_tls_error(&text) {
        format!("TLS handshake failed: {}", strip_kind(&text))
    } else if is_unresolved_host(&text) {
        format!(
            "the host name could not be resolved ({}): check `host`",
            strip_kind(&text).trim_start_matches("failed to lookup address information: ")
        )
    } else if error.is_io_error() || error.is_connection_dropped() {
        format!("connection lost: {}", strip_kind(&text))
    } else {
        text
    };
    format!("Redis at {endpoint}: {doing} failed: {cause}")
}

fn is_tls_error(text: &str) -> bool {
    [
        "certificate",
        "Certificate",
        "TLS",
        "tls",
        "handshake",
        "InvalidCertificate",
        "UnknownIssuer",
        "alert",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Drops the crate's error-kind prefix (`I/O error: ...` stays readable without it).
/// A server's error reply as it sent it (`WRONGPASS invalid username-password pair
/// or user is disabled.`); the error's text when it is no reply.
fn server_words(error: &RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => strip_kind(&error.to_string()).to_owned(),
    }
}

fn strip_kind(text: &str) -> &str {
    text.strip_prefix("I/O error: ")
        .or_else(|| text.strip_prefix("Io: "))
        .unwrap_or(text)
}

fn humantime(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, " two words \n\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap(), " two words \n");
        let missing = read_password_file(&dir.path().join("nope")).unwrap_err();
        assert!(
            missing.contains("cannot read the Redis password file") && missing.contains("nope"),
            "{missing}"
        );
    }

    #[test]
    fn refused_connections_name_the_server_and_the_cause() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let message = describe_error(
            "127.0.0.1:1",
            None,
            Duration::from_secs(30),
            &RedisError::from(io),
            "connecting to db 0",
        );
        assert_eq!(
            message,
            "Redis at 127.0.0.1:1: connecting to db 0 failed: connection refused (is Redis running and listening on that port?)"
        );
    }

    #[test]
    fn a_key_whose_slot_moved_says_the_cluster_changed_and_what_to_do() {
        let Ok(redis::Value::ServerError(moved)) = redis::parse_redis_value(b"-MOVED 3999 127.0.0.1:6381\r\n") else {
            panic!("a MOVED reply parses as a server error")
        };
        let message = describe_error(
            "127.0.0.1:7000",
            None,
            Duration::from_secs(30),
            &RedisError::from(moved),
            "GET of key `k` in db 0",
        );
        assert!(
            message.starts_with("Redis at 127.0.0.1:7000: GET of key `k` in db 0 failed: the cluster moved the key's slot to another node"),
            "{message}"
        );
        assert!(message.contains("3999 127.0.0.1:6381"), "{message}");
        assert!(
            message.ends_with("run again once it is over (cluster_state:ok)"),
            "{message}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let config: RedisSourceConfig =
            crate::config::yaml::from_str("host: 127.0.0.1\nport: 6379\nusername: u\npassword: hunter2\n").unwrap();
        let connector = Connector::new(&config).unwrap();
        let shown = format!("{connector:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"));
    }
}
