//! Checking a Redis source's configuration before anything connects (pure, no I/O):
//! rules, globs, TLS files, credentials and tuning values, every problem at once.

use crate::config::model::RedisSourceConfig;
use crate::config::FieldError;
use crate::stages::source::redis::glob::check_redis_glob;

use super::read::scan::ScanSpec;

/// What is wrong with a `host` that is a URL (`redis://h:6379`) or holds a port
/// (`h:6379`), with what to write instead; `None` for a plain host name or address
/// (an IPv6 address, bare or in brackets, is one).
pub fn host_mistake(host: &str, port: u16) -> Option<String> {
    let host = host.trim();
    if let Some((scheme, rest)) = host.split_once("://") {
        let tls = matches!(scheme, "rediss" | "valkeys");
        // `user:password@` is masked by the caller's redaction; named here only as fields.
        let (userinfo, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => (Some(userinfo), address),
            None => (None, rest),
        };
        let address = address.split(['/', '?', '#']).next().unwrap_or_default();
        let (name, written_port) = split_port(address).unwrap_or((address, None));
        let mut fields = vec![format!("`host: {}`", if name.is_empty() { "127.0.0.1" } else { name })];
        fields.push(format!("`port: {}`", written_port.unwrap_or(port)));
        if let Some(userinfo) = userinfo {
            if userinfo.split_once(':').is_some_and(|(user, _)| !user.is_empty()) || !userinfo.contains(':') {
                fields.push("`username`".to_owned());
            }
            if userinfo.contains(':') {
                fields.push("`password` (better `password: \"${REDIS_PASSWORD}\"`)".to_owned());
            }
        }
        if tls {
            fields.push("`tls: { enabled: true }`".to_owned());
        }
        if rest.split_once('/').is_some_and(|(_, db)| !db.is_empty()) {
            fields.push("`database`".to_owned());
        }
        return Some(format!(
            "`host` takes a host name or IP address, not a URL: write {}",
            fields.join(", ")
        ));
    }
    if let Some((name, Some(written_port))) = split_port(host) {
        return Some(format!(
            "`host` takes a host name or IP address without a port: write `host: {name}` and `port: {written_port}`"
        ));
    }
    None
}

/// `host:port` or `[v6]:port` split in two; `None` when `text` holds no port (a bare
/// IPv6 address has several colons and no port).
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(inner) = text.strip_prefix('[') {
        let (address, rest) = inner.split_once(']')?;
        return Some((address, rest.strip_prefix(':').and_then(|p| p.parse().ok())));
    }
    match text.matches(':').count() {
        1 => {
            let (name, port) = text.split_once(':')?;
            Some((name, Some(port.parse().ok()?)))
        }
        _ => None,
    }
}

/// Checks `config` and returns the rules as scans (empty when there are no rules).
pub fn check(config: &RedisSourceConfig) -> Result<Vec<ScanSpec>, Vec<FieldError>> {
    let mut errors = Vec::new();
    check_connection(config, &mut errors);
    check_limits(config, &mut errors);
    let specs = rule_specs(config, &mut errors);
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

/// The connection's settings: host, port, password, TLS.
fn check_connection(config: &RedisSourceConfig, errors: &mut Vec<FieldError>) {
    if config.host.trim().is_empty() {
        errors.push(FieldError::new(
            "/host",
            "`host` is empty: give the Redis server's host name or IP",
        ));
    }
    if let Some(message) = host_mistake(&config.host, config.port) {
        errors.push(FieldError::new("/host", message));
    }
    if config.port == 0 {
        errors.push(FieldError::new("/port", "`port` must be between 1 and 65535"));
    }
    if config.password.is_some() && config.password_file.is_some() {
        errors.push(FieldError::new(
            "/password_file",
            "give `password` or `password_file`, not both",
        ));
    }
    let tls = &config.tls;
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => errors.push(FieldError::new(
            "/tls/cert_file",
            "`cert_file` needs `key_file` (the client certificate's private key) for mutual TLS",
        )),
        (None, Some(_)) => errors.push(FieldError::new(
            "/tls/key_file",
            "`key_file` needs `cert_file` (the client certificate) for mutual TLS",
        )),
        _ => {}
    }
    let tls_details =
        tls.ca_file.is_some() || tls.cert_file.is_some() || tls.key_file.is_some() || tls.insecure_skip_verify;
    if tls_details && !tls.enabled {
        errors.push(FieldError::new(
            "/tls/enabled",
            "TLS settings are given but `enabled` is false: set `enabled: true` or remove them",
        ));
    }
}

/// The bounds of the reading settings: page and chunk sizes, pages in flight, the
/// largest value, the timeout.
fn check_limits(config: &RedisSourceConfig, errors: &mut Vec<FieldError>) {
    // Upper bounds: Redis serves no other client while one SCAN, HSCAN or LRANGE call
    // walks its entries (about a microsecond each), and every page in flight holds its
    // keys in memory.
    for (field, value, max, why) in [
        (
            "scan_count",
            config.scan_count,
            100_000,
            "one SCAN call walking that many entries stalls Redis for every other client",
        ),
        (
            "pages_in_flight",
            config.pages_in_flight,
            1_000,
            "more pages in flight only hold more keys in memory",
        ),
        (
            "chunk_size",
            config.chunk_size,
            100_000,
            "one call reading that many elements stalls Redis for every other client",
        ),
    ] {
        if value == 0 {
            errors.push(FieldError::new(
                format!("/{field}"),
                format!("`{field}` must be at least 1"),
            ));
        } else if value > max {
            errors.push(FieldError::new(
                format!("/{field}"),
                format!("`{field}` must be at most {max}: {why}"),
            ));
        }
    }
    if config.max_value_bytes.0 == 0 {
        errors.push(FieldError::new(
            "/max_value_bytes",
            "`max_value_bytes` must be more than 0",
        ));
    }
    if config.timeout.0.is_zero() {
        errors.push(FieldError::new("/timeout", "`timeout` must be more than 0"));
    }
}

/// What each rule scans (the same rule once); a rule selecting nothing or with an
/// invalid pattern is an error.
fn rule_specs(config: &RedisSourceConfig, errors: &mut Vec<FieldError>) -> Vec<ScanSpec> {
    let mut specs = Vec::new();
    for (i, rule) in config.rules.iter().enumerate() {
        if rule.key_pattern.is_none() && rule.key_type.is_none() {
            errors.push(FieldError::new(
                format!("/rules/{i}"),
                "a rule needs `key_pattern`, `_type` or both (it selects nothing otherwise)",
            ));
            continue;
        }
        if let Some(pattern) = &rule.key_pattern {
            if let Err(message) = check_redis_glob(pattern) {
                errors.push(FieldError::new(format!("/rules/{i}/key_pattern"), message));
                continue;
            }
        }
        let spec = ScanSpec {
            database: rule.database,
            pattern: rule.key_pattern.clone(),
            key_type: rule.key_type,
        };
        // The same rule twice reads the same keys twice for nothing.
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    specs
}

#[cfg(test)]
mod host_tests {
    use super::host_mistake;

    #[test]
    fn a_url_or_a_port_in_host_says_what_to_write() {
        assert_eq!(
            host_mistake("redis://127.0.0.1:6441", 6379).unwrap(),
            "`host` takes a host name or IP address, not a URL: write `host: 127.0.0.1`, `port: 6441`"
        );
        assert_eq!(
            host_mistake("rediss://u:pw@cache.example:6380/2", 6379).unwrap(),
            "`host` takes a host name or IP address, not a URL: write `host: cache.example`, `port: 6380`, `username`, `password` (better `password: \"${REDIS_PASSWORD}\"`), `tls: { enabled: true }`, `database`"
        );
        assert_eq!(
            host_mistake("10.0.0.5:6380", 6379).unwrap(),
            "`host` takes a host name or IP address without a port: write `host: 10.0.0.5` and `port: 6380`"
        );
        assert_eq!(
            host_mistake("[::1]:6380", 6379).unwrap(),
            "`host` takes a host name or IP address without a port: write `host: ::1` and `port: 6380`"
        );
        for fine in ["127.0.0.1", "::1", "redis.internal", "fe80::1"] {
            assert_eq!(host_mistake(fine, 6379), None, "{fine}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> RedisSourceConfig {
        crate::config::yaml::from_str(yaml).unwrap()
    }

    fn pointers(result: Result<Vec<ScanSpec>, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn a_rule_needs_a_pattern_or_a_type() {
        let c = config(
            "host: h\nrules:\n  - {database: 0, key_pattern: 'a*'}\n  - {database: 1}\n  - {database: 2, _type: SET}\n",
        );
        assert_eq!(pointers(check(&c)), vec!["/rules/1"]);
    }

    #[test]
    fn bad_globs_are_reported_at_the_rule_pattern() {
        let c = config("host: h\nrules:\n  - {database: 0, key_pattern: 'test[12'}\n");
        let errors = check(&c).unwrap_err();
        assert_eq!(errors[0].pointer, "/rules/0/key_pattern");
    }

    #[test]
    fn mutual_tls_needs_both_files_and_tls_enabled() {
        let c = config("host: h\ntls: {cert_file: c.pem}\n");
        assert_eq!(pointers(check(&c)), vec!["/tls/cert_file", "/tls/enabled"]);
        let c = config("host: h\ntls: {enabled: true, key_file: k.pem}\n");
        assert_eq!(pointers(check(&c)), vec!["/tls/key_file"]);
    }

    #[test]
    fn tuning_values_must_be_positive_and_every_error_is_reported() {
        let c = config("host: ''\nscan_count: 0\npages_in_flight: 0\nchunk_size: 0\n");
        assert_eq!(
            pointers(check(&c)),
            vec!["/host", "/scan_count", "/pages_in_flight", "/chunk_size"]
        );
    }

    #[test]
    fn tuning_values_have_upper_bounds_that_say_why() {
        let c = config("host: h\nscan_count: 10000000\npages_in_flight: 1001\nchunk_size: 100000\n");
        let errors = check(&c).err().unwrap();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/scan_count", "/pages_in_flight"]);
        assert!(
            errors[0].message.contains("at most 100000: one SCAN call"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn rules_become_scans_and_exact_duplicates_collapse() {
        let c = config(
            "host: h\nrules:\n  - {database: 0, key_pattern: 'a*', _type: hash}\n  - {database: 0, key_pattern: 'a*', type: HASH}\n  - {database: 3, _type: JSON}\n",
        );
        let specs = check(&c).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].database, 3);
        assert_eq!(specs[1].key_type, Some(crate::record::KeyType::Json));
    }
}
