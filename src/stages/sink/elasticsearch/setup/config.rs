//! The sink's configuration, checked without I/O: node URLs (each located by its JSON
//! pointer, never showing a password), credentials (pairs that go together, sources
//! that exclude each other), bulk sizes, `delete_stale`'s fraction and the timeout;
//! the target index's rules are `names.rs`. Also reads the secrets (`password_file`,
//! `api_key_file`) when the sink connects.

use anyhow::Context as _;
use elasticsearch::http::Url;

use super::super::http::client::{self, Auth};
use super::names::Target;
use crate::config::model::ElasticsearchSinkConfig;
use crate::config::FieldError;

/// The largest request Elasticsearch can take: `http.max_content_length` is an `int`
/// number of bytes.
const MAX_REQUEST_BYTES: u64 = i32::MAX as u64;

/// Checks `config`: the node URLs and the target when every field is right, else every
/// problem found, each at its field's JSON pointer.
pub fn check(config: &ElasticsearchSinkConfig) -> Result<(Vec<Url>, Target), Vec<FieldError>> {
    let mut errors = Vec::new();
    let urls_text = config.url.to_vec();
    let many = matches!(config.url, crate::config::model::OneOrMany::Many(_));
    if urls_text.is_empty() {
        errors.push(FieldError::new("/url", "give at least one Elasticsearch URL"));
    }
    let mut urls = Vec::new();
    for (i, text) in urls_text.iter().enumerate() {
        let pointer = if many { format!("/url/{i}") } else { "/url".to_owned() };
        match parse_url(text) {
            Ok(url) => urls.push(url),
            Err(message) => errors.push(FieldError::new(pointer, message)),
        }
    }
    let target = Target::from_config(config, &mut errors);
    let has_password = config.password.is_some() || config.password_file.is_some();
    let has_api_key = config.api_key.is_some() || config.api_key_file.is_some();
    if config.username.is_some() && !has_password {
        errors.push(FieldError::new(
            "/username",
            "username needs a password (password or password_file)",
        ));
    }
    if has_password && config.username.is_none() {
        let pointer = if config.password.is_some() {
            "/password"
        } else {
            "/password_file"
        };
        errors.push(FieldError::new(pointer, "a password needs a username"));
    }
    if config.password.is_some() && config.password_file.is_some() {
        errors.push(FieldError::new(
            "/password_file",
            "give password or password_file, not both",
        ));
    }
    if config.api_key.is_some() && config.api_key_file.is_some() {
        errors.push(FieldError::new(
            "/api_key_file",
            "give api_key or api_key_file, not both",
        ));
    }
    if has_api_key && config.username.is_some() {
        let pointer = if config.api_key.is_some() {
            "/api_key"
        } else {
            "/api_key_file"
        };
        errors.push(FieldError::new(
            pointer,
            "use either an API key or username/password, not both",
        ));
    }
    if config.bulk.max_docs == 0 {
        errors.push(FieldError::new("/bulk/max_docs", "must be at least 1"));
    }
    if config.bulk.max_bytes.0 == 0 {
        errors.push(FieldError::new("/bulk/max_bytes", "must be more than 0 bytes"));
    } else if config.bulk.max_bytes.0 > MAX_REQUEST_BYTES {
        errors.push(FieldError::new(
            "/bulk/max_bytes",
            "must be at most 2GiB: Elasticsearch takes no larger request (http.max_content_length \
             cannot be set higher, and is 100mb by default); a few MiB per request is fastest",
        ));
    }
    if config.bulk.concurrency == 0 {
        errors.push(FieldError::new("/bulk/concurrency", "must be at least 1"));
    }
    let fraction = config.delete_stale.max_fraction;
    if !(fraction > 0.0 && fraction <= 1.0) {
        errors.push(FieldError::new(
            "/delete_stale/max_fraction",
            format!("must be more than 0 and at most 1 (a fraction of the index), not {fraction}"),
        ));
    }
    if config.timeout.0.is_zero() {
        errors.push(FieldError::new("/timeout", "must be more than 0"));
    }
    match (errors.is_empty(), target) {
        (true, Some(target)) => Ok((urls, target)),
        _ => Err(errors),
    }
}

/// Reads the secrets and chooses the authentication.
pub fn auth(config: &ElasticsearchSinkConfig) -> anyhow::Result<Option<Auth>> {
    let password = match (&config.password, &config.password_file) {
        // `password: "${ES_PASSWORD:-}"` with the variable unset: no password.
        (Some(p), None) if p.is_empty() => None,
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => Some(read_secret(path, "password_file")?),
        (None, None) => None,
    };
    let api_key = match (&config.api_key, &config.api_key_file) {
        (Some(k), None) if k.trim().is_empty() => None,
        (Some(k), _) => Some(k.trim().to_owned()),
        (None, Some(path)) => Some(read_secret(path, "api_key_file")?),
        (None, None) => None,
    };
    Ok(match (&config.username, password, api_key) {
        (_, _, Some(key)) => Some(Auth::ApiKey(key)),
        (Some(username), Some(password), None) => Some(Auth::Basic {
            username: username.clone(),
            password,
        }),
        _ => None,
    })
}

fn read_secret(path: &std::path::Path, field: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {field} {}", path.display()))?;
    let secret = text.trim().to_owned();
    anyhow::ensure!(!secret.is_empty(), "{field} {} is empty", path.display());
    crate::redact::register(&secret);
    Ok(secret)
}

fn parse_url(text: &str) -> Result<Url, String> {
    if !text.contains("://") && Url::parse(&format!("http://{}", text.trim())).is_ok() {
        // `127.0.0.1:9200` or `user:pass@host:9200`: the scheme was forgotten (the URL
        // parser would take `user` or `127.0.0.1` for one). A password in it is masked
        // where every message is (`config::load`, `redact`).
        let shown = text.trim();
        return Err(format!(
            "`{shown}` has no scheme: write `http://{shown}` (or `https://`)"
        ));
    }
    let url = Url::parse(text.trim()).map_err(|e| format!("`{}` is not a URL: {e}", redact_text(text)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "`{}`: the scheme must be http or https",
            client::redact_url(&url)
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` has no host", client::redact_url(&url)));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{}`: a node URL takes no query or fragment",
            client::redact_url(&url)
        ));
    }
    Ok(url)
}

/// A URL text that did not parse, with anything that looks like `user:pass@` removed.
fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &text[..scheme], &text[at + 1..]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{DeleteStale, OneOrMany};
    use crate::stages::sink::elasticsearch::ElasticsearchSink;

    fn config(yaml: &str) -> ElasticsearchSinkConfig {
        crate::config::yaml::from_str(yaml).unwrap()
    }

    fn pointers(result: Result<ElasticsearchSink, Vec<FieldError>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn a_valid_configuration_builds() {
        assert!(ElasticsearchSink::build(&config("url: http://127.0.0.1:9200\nindex: redis")).is_ok());
        assert!(ElasticsearchSink::build(&config(
            "url: [http://a:9200, https://b:9200]\nindex: 'redis-{{ database }}'\ndelete_stale: {max_fraction: 1}"
        ))
        .is_ok());
    }

    #[test]
    fn bad_urls_are_located_by_pointer() {
        assert_eq!(
            pointers(ElasticsearchSink::build(&config("url: 'not a url'\nindex: i"))),
            ["/url"]
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: [http://a:9200, 'ftp://b']\nindex: i"
            ))),
            ["/url/1"]
        );
    }

    #[test]
    fn a_url_error_never_shows_its_password() {
        let errors = ElasticsearchSink::build(&config("url: 'ftp://elastic:hunter2@b'\nindex: i"))
            .err()
            .unwrap();
        assert!(!errors[0].message.contains("hunter2"), "{}", errors[0].message);
        assert_eq!(redact_text("http://u:hunter2@[bad"), "http://…@[bad");
    }

    #[test]
    fn index_template_syntax_errors_point_at_index() {
        let errors = ElasticsearchSink::build(&config("url: http://a:9200\nindex: 'redis-{{ database '"))
            .err()
            .unwrap();
        assert_eq!(errors[0].pointer, "/index");
        assert!(
            errors[0].message.starts_with("invalid index template"),
            "{}",
            errors[0].message
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config("url: http://a:9200\nindex: Users"))),
            ["/index"]
        );
    }

    #[test]
    fn credentials_must_come_in_pairs_and_not_mix() {
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: http://a:9200\nindex: i\nusername: u"
            ))),
            ["/username"]
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: http://a:9200\nindex: i\npassword: p"
            ))),
            ["/password"]
        );
        assert_eq!(
            pointers(ElasticsearchSink::build(&config(
                "url: http://a:9200\nindex: i\nusername: u\npassword: p\napi_key: k"
            ))),
            ["/api_key"]
        );
    }

    #[test]
    fn sizes_and_fractions_are_checked() {
        let mut c = config("url: http://a:9200\nindex: i");
        c.bulk.max_docs = 0;
        c.bulk.concurrency = 0;
        c.delete_stale = DeleteStale {
            enabled: true,
            max_fraction: 0.0,
        };
        assert_eq!(
            pointers(ElasticsearchSink::build(&c)),
            ["/bulk/max_docs", "/bulk/concurrency", "/delete_stale/max_fraction"]
        );
        c = config("url: http://a:9200\nindex: i\nbulk: {max_bytes: 10GB}");
        assert_eq!(pointers(ElasticsearchSink::build(&c)), ["/bulk/max_bytes"]);
        c = config("url: http://a:9200\nindex: i\ndelete_stale: {max_fraction: 1.5}");
        assert_eq!(pointers(ElasticsearchSink::build(&c)), ["/delete_stale/max_fraction"]);
        c.url = OneOrMany::Many(vec![]);
        c.delete_stale.max_fraction = 0.5;
        assert_eq!(pointers(ElasticsearchSink::build(&c)), ["/url"]);
    }
}
