//! Who may use `serve`'s endpoints:
//!
//! - `--auth-token-file FILE`: a bearer token (`Authorization: Bearer TOKEN`)
//!   guards `/status` and `POST /pipelines/NAME/run`, compared in constant time;
//!   `/metrics`, `/healthz` and `/readyz` stay open for scrapers and probes.
//! - Bound to a loopback address, a request whose `Host` is not that address (nor
//!   `localhost`, nor a name given with `--allowed-host`) is refused: a web page
//!   cannot reach the endpoints through a DNS name that resolves to 127.0.0.1 (DNS
//!   rebinding).
//! - `--allow-trigger` on an address other than loopback needs a token: anyone who
//!   can reach the address could otherwise run pipelines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::state::Shared;

/// Why `serve` cannot start with the access flags given (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read --auth-token-file {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("--auth-token-file {0} is empty: write the token in it (one line)")]
    Empty(PathBuf),
    #[error(
        "--allow-trigger on {0}, which is not a loopback address, needs --auth-token-file: \
         anyone who can reach {0} could run pipelines (or listen on 127.0.0.1)"
    )]
    OpenTrigger(SocketAddr),
}

/// The access rules of one `serve` process.
#[derive(Debug, Clone, Default)]
pub struct Access {
    token: Option<Vec<u8>>,
    /// Host names accepted in `Host` (lowercase, without port); empty: any.
    hosts: Vec<String>,
}

impl Access {
    /// The rules for a server on `local`: reads the token file, checks that a
    /// trigger is not open to the network.
    pub fn new(
        token_file: Option<&Path>,
        allowed_hosts: &[String],
        local: SocketAddr,
        allow_trigger: bool,
    ) -> Result<Access, AccessError> {
        let token = match token_file {
            None => None,
            Some(path) => Some(read_token(path)?),
        };
        if allow_trigger && token.is_none() && !local.ip().is_loopback() {
            return Err(AccessError::OpenTrigger(local));
        }
        let hosts = if local.ip().is_loopback() {
            let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(str::to_owned).to_vec();
            hosts.push(host_name(&local.to_string()));
            hosts.extend(allowed_hosts.iter().map(|h| host_name(h)));
            hosts
        } else {
            Vec::new()
        };
        Ok(Access { token, hosts })
    }

    /// Whether a token guards `/status` and the trigger.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the request may see what the token guards (always, without a token).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else { return true };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        // Constant time over the token's bytes: how long the comparison takes says
        // nothing about how much of a guess was right (only a length differs at once).
        bool::from(given.as_bytes().ct_eq(token))
    }

    /// Why the request's `Host` is refused, or `None` when it is accepted.
    pub fn refused_host(&self, headers: &HeaderMap) -> Option<String> {
        if self.hosts.is_empty() {
            return None;
        }
        let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
        match host {
            Some(host) if self.hosts.contains(&host_name(host)) => None,
            Some(host) => Some(format!(
                "Host `{host}` is not this server's address: serve is bound to loopback and answers only to {} (add a name with --allowed-host)",
                self.hosts.join(", ")
            )),
            None => Some("no Host header: serve is bound to loopback and checks it".to_owned()),
        }
    }
}

/// The token in `path`, without surrounding whitespace (a trailing newline).
fn read_token(path: &Path) -> Result<Vec<u8>, AccessError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccessError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AccessError::Empty(path.to_owned()));
    }
    Ok(token.as_bytes().to_vec())
}

/// `Host` without its port, lowercase (`[::1]:9464` -> `[::1]`, `Example:80` -> `example`).
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(&host).to_owned();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
}

fn refused(code: StatusCode, message: String) -> Response {
    let mut response = (code, Json(json!({"error": message}))).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// Middleware on every route: refuses a foreign `Host` (403).
pub async fn check_host(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    match shared.access.refused_host(request.headers()) {
        Some(why) => refused(StatusCode::FORBIDDEN, why),
        None => next.run(request).await,
    }
}

/// Middleware on the guarded routes: refuses a request without the token (401).
pub async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if shared.access.authorized(request.headers()) {
        next.run(request).await
    } else {
        refused(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the token of --auth-token-file: send `Authorization: Bearer TOKEN`".to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_token_must_match_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        let local: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let access = Access::new(Some(&file), &[], local, true).unwrap();
        assert!(access.authorized(&headers(&[(header::AUTHORIZATION, "Bearer s3cret-token")])));
        assert!(!access.authorized(&headers(&[(header::AUTHORIZATION, "Bearer s3cret-tokeN")])));
        assert!(!access.authorized(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")])));
        assert!(!access.authorized(&headers(&[(header::AUTHORIZATION, "s3cret-token")])));
        assert!(!access.authorized(&HeaderMap::new()));

        std::fs::write(&file, " \n").unwrap();
        let error = Access::new(Some(&file), &[], local, false).unwrap_err();
        assert!(error
            .to_string()
            .ends_with("is empty: write the token in it (one line)"));
    }

    #[test]
    fn an_open_trigger_on_the_network_is_refused() {
        let anywhere: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let error = Access::new(None, &[], anywhere, true).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--allow-trigger on 0.0.0.0:9464, which is not a loopback address, needs --auth-token-file: \
             anyone who can reach 0.0.0.0:9464 could run pipelines (or listen on 127.0.0.1)"
        );
        assert!(Access::new(None, &[], "127.0.0.1:9464".parse().unwrap(), true).is_ok());
        assert!(Access::new(None, &[], anywhere, false).is_ok());
    }

    #[test]
    fn on_loopback_only_its_own_names_are_accepted_as_host() {
        let access = Access::new(
            None,
            &["Connector.Local".into()],
            "127.0.0.1:9464".parse().unwrap(),
            false,
        )
        .unwrap();
        for host in [
            "127.0.0.1:9464",
            "localhost:9464",
            "[::1]:9464",
            "connector.local:9464",
            "localhost",
        ] {
            assert_eq!(access.refused_host(&headers(&[(header::HOST, host)])), None, "{host}");
        }
        let why = access
            .refused_host(&headers(&[(header::HOST, "evil.example:9464")]))
            .unwrap();
        assert!(
            why.starts_with("Host `evil.example:9464` is not this server's address"),
            "{why}"
        );
        assert!(access.refused_host(&HeaderMap::new()).is_some());

        let open = Access::new(None, &[], "0.0.0.0:9464".parse().unwrap(), false).unwrap();
        assert_eq!(open.refused_host(&headers(&[(header::HOST, "10.1.2.3:9464")])), None);
    }
}
