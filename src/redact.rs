//! The one redaction path: every secret the configuration holds is registered here
//! when a pipeline file is loaded (or a secret file is read), and every message that
//! leaves the process (diagnostics, logs, summaries, `--summary-json`, the reasons in
//! dead-letter files) passes through [`text`], which replaces each registered secret
//! with `***`.
//!
//! What counts as a secret:
//! - the value of every `password` and `api_key` field, and what `password_file` /
//!   `api_key_file` hold;
//! - the password of every `user:password@` written in any value (a URL, or a
//!   `host` given as one), scheme or not;
//! - the whole value of every `${VAR}` whose name looks secret (`PASSWORD`, `PASS`,
//!   `PWD`, `SECRET`, `TOKEN`, `KEY`, `AUTH`, `CREDENTIAL`, `PRIVATE`, `CERT`), unless
//!   the name ends in `_FILE`, `_PATH` or `_DIR`: that value is where a secret is kept.
//!
//! Why not every interpolated value: a host or a port from `${REDIS_HOST}` is what an
//! operator needs to read in "cannot resolve host" or a summary, and values such as
//! `6379` or `1` would blank out unrelated text. `validate` still never quotes a value
//! that came from `${VAR}`: its messages show the text written in the file instead
//! (`${ES_URL}`), see `config::load`.
//!
//! Secrets shorter than [`MIN_SECRET_LEN`] characters are not registered: replacing
//! every `ab` in every message would garble them, and such a value protects nothing.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not registered.
pub const MIN_SECRET_LEN: usize = 4;

/// The secrets registered so far, longest first (so a secret that holds another is
/// replaced whole).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Parts of variable names that mark their value as a secret.
const SECRET_NAME_PARTS: [&str; 10] = [
    "PASSWORD",
    "PASS",
    "PWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "AUTH",
    "CREDENTIAL",
    "PRIVATE",
    "CERT",
];

/// Registers `secret`: from now on [`text`] never lets it through. Trailing and
/// leading white space is ignored (secret files end with a newline).
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if secrets.iter().any(|s| s == secret) {
        return;
    }
    secrets.push(secret.to_owned());
    // As a JSON string holds it (`--summary-json`, JSON logs, dead-letter lines), when
    // that differs (a quote, a backslash, a control character).
    let escaped = serde_json::to_string(secret).unwrap_or_default();
    let escaped = &escaped[1..escaped.len().saturating_sub(1).max(1)];
    if escaped != secret {
        secrets.push(escaped.to_owned());
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Whether a variable's name says its value is a secret (`ES_API_KEY`,
/// `REDIS_PASSWORD`, `GITHUB_TOKEN`), case-insensitively.
/// A name ending in `_FILE`, `_PATH` or `_DIR` (`ES_API_KEY_FILE`) names where a
/// secret is kept, not the secret: its value is a path an operator needs to see in
/// "cannot read api_key_file /run/secrets/...". (What the file holds is registered
/// when it is read.)
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if ["_FILE", "_PATH", "_DIR"].iter().any(|end| upper.ends_with(end)) {
        return false;
    }
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

/// The password of a `user:password@` in `value` (a URL with or without its
/// scheme), if it has one.
pub fn userinfo_password(value: &str) -> Option<&str> {
    let rest = match value.find("://") {
        Some(at) => &value[at + 3..],
        None => value,
    };
    // The authority ends at the first `/`, `?` or `#`; its userinfo at its last `@`.
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// Registers the password of a `user:password@` in `value`, if any.
pub fn register_userinfo(value: &str) {
    if let Some(password) = userinfo_password(value) {
        register(password);
        // As percent-decoded, the form a URL parser shows it in.
        if let Ok(decoded) = url_decode(password) {
            register(&decoded);
        }
    }
}

fn url_decode(text: &str) -> Result<String, ()> {
    if !text.contains('%') {
        return Err(());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `message` with every registered secret replaced by [`MASK`].
pub fn text(message: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| message.contains(s.as_str())) {
        return Cow::Borrowed(message);
    }
    let mut out = message.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

/// A writer that redacts what goes through it, line by line: it keeps a partial line
/// until its end (a secret written in two pieces is still found), and writes the rest
/// when flushed or dropped.
pub struct Redacting<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Redacting<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Redacting {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_pending(&mut self, upto: usize) -> std::io::Result<()> {
        let chunk: Vec<u8> = self.pending.drain(..upto).collect();
        let shown = String::from_utf8_lossy(&chunk);
        self.inner.write_all(text(&shown).as_bytes())
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') {
            self.write_pending(last + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let all = self.pending.len();
            self.write_pending(all)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Redacting<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_longest_first() {
        register("redact-test-abcd");
        register("redact-test-abcd-longer");
        assert_eq!(text("a redact-test-abcd-longer and redact-test-abcd"), "a *** and ***");
        assert!(matches!(text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_is_masked_as_json_escapes_it_too() {
        register("redact\"json\\secret");
        assert_eq!(text(r#"{"reason":"redact\"json\\secret"}"#), r#"{"reason":"***"}"#);
    }

    #[test]
    fn short_values_are_not_registered() {
        register("xyz");
        assert_eq!(text("xyz"), "xyz");
    }

    #[test]
    fn userinfo_is_found_with_or_without_a_scheme() {
        assert_eq!(userinfo_password("elastic:pw1@127.0.0.1:9200"), Some("pw1"));
        assert_eq!(userinfo_password("http://u:p%40ss@h:1/x@y"), Some("p%40ss"));
        assert_eq!(userinfo_password("redis://:only-pw@h"), Some("only-pw"));
        assert_eq!(userinfo_password("http://u@h"), None);
        assert_eq!(userinfo_password("http://h/a:b@c"), None);
        register_userinfo("http://u:redact%40test@h");
        assert_eq!(text("redact@test and redact%40test"), "*** and ***");
    }

    #[test]
    fn secret_names_are_recognised() {
        for name in ["ES_API_KEY", "redis_password", "GH_TOKEN", "DB_PWD", "MY_SECRET"] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "ES_URL",
            "REDIS_HOST",
            "RPORT",
            "INDEX",
            "ES_API_KEY_FILE",
            "REDIS_PASSWORD_FILE",
            "TLS_CERT_PATH",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn the_writer_redacts_a_secret_split_across_writes() {
        register("redact-split-secret");
        let mut out = Vec::new();
        {
            let mut writer = Redacting::new(&mut out);
            writer.write_all(b"one redact-spl").unwrap();
            writer.write_all(b"it-secret two\nthree").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "one *** two\nthree");
    }
}
