//! No secret is ever printed: a secret in every field that takes one (written in the
//! file, from `${VAR}`, from a file, in a URL's userinfo, in a `host` given as a URL),
//! driven through every error path reachable from the command line (validate, run,
//! dry run, bad URLs, an unknown host, a wrong password, refused connections,
//! per-document failures), and every output grepped for it: standard output and
//! error, logs at `-vvv` in text and JSON, `--summary-json` and the dead-letter file.

use std::path::Path;
use std::process::Output;

use crate::support;
use crate::support::{connector, es_url, free_port, unique_index, write_file, RedisServer};

/// The secret, in every place a secret goes.
const SECRET: &str = "Sekr1t-zq9x";

/// Every form of the secret that must never appear: as is, percent-encoded (as a URL
/// may show it), and base64 in a basic-auth header (`elastic:SECRET`).
fn forms() -> Vec<String> {
    use base64::Engine as _;
    vec![
        SECRET.to_owned(),
        "Sekr1t%2Dzq9x".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("elastic:{SECRET}")),
    ]
}

/// Runs the connector in `dir` with the secret in `ES_PASSWORD`, `MY_TOKEN` and the
/// variables of URLs.
fn run(dir: &Path, args: &[&str]) -> Output {
    connector()
        .current_dir(dir)
        .args(args)
        .env("ES_PASSWORD", SECRET)
        .env("MY_TOKEN", SECRET)
        .env("ES_URL_NO_SCHEME", format!("elastic:{SECRET}@127.0.0.1:9200"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run redis-connector")
}

/// Panics when the secret is anywhere in the output or in a file of `dir`.
fn assert_no_secret(dir: &Path, what: &str, output: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for form in forms() {
        assert!(!all.contains(&form), "{what}: the secret was printed:\n{all}");
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The pipeline files and secret files hold it on purpose.
        if name.ends_with(".yaml") || name.ends_with(".secret") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for form in forms() {
            assert!(!text.contains(&form), "{what}: the secret is in {name}:\n{text}");
        }
    }
}

/// Every way to run one pipeline file, each grepped.
fn every_command(dir: &Path, file: &str) -> Vec<Output> {
    let commands: [&[&str]; 6] = [
        &["validate", file],
        &["validate", "--format", "json", file],
        &["run", "--summary-json", "summary.json", file],
        &["run", "-vvv", file],
        &[
            "run",
            "-vvv",
            "--log-format",
            "json",
            "--summary-json",
            "summary.json",
            file,
        ],
        &["run", "--dry-run", "-vvv", "--summary-json", "summary.json", file],
    ];
    commands
        .iter()
        .map(|args| {
            let output = run(dir, args);
            assert_no_secret(dir, &format!("{args:?}"), &output);
            output
        })
        .collect()
}

#[test]
fn invalid_pipelines_never_print_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        // The case: the scheme forgotten, the password in the URL, from `${VAR}`.
        "name: a\nsource: {type: redis, host: 127.0.0.1}\nsink: {type: elasticsearch, url: \"${ES_URL_NO_SCHEME}\", index: a}\n".to_owned(),
        // Written in the file: userinfo without a scheme, a bad URL with userinfo.
        format!("name: b\nsource: {{type: redis, host: 127.0.0.1, password: \"{SECRET}\", timeout: 0}}\nsink: {{type: elasticsearch, url: [\"elastic:{SECRET}@127.0.0.1:9200\", \"ftp://u:{SECRET}@h\", \"http://u:{SECRET}@h:9200?x=1\"], index: B, api_key: \"{SECRET}\"}}\n"),
        // A `host` given as a URL with a password; a secret of the wrong type.
        format!("name: c\nsource: {{type: redis, host: \"redis://u:{SECRET}@127.0.0.1:6379\", username: [\"{SECRET}\"]}}\nsink: {{type: elasticsearch, url: http://127.0.0.1:9200, index: c, password: [\"${{ES_PASSWORD}}\"], username: elastic}}\n"),
        // A secret-named variable where a number goes, and in an index name.
        "name: d\nsource: {type: redis, host: 127.0.0.1, port: \"${MY_TOKEN}\"}\nsink: {type: elasticsearch, url: http://127.0.0.1:9200, index: \"${MY_TOKEN}\"}\n".to_owned(),
    ];
    for (i, text) in files.iter().enumerate() {
        let file = format!("p{i}.yaml");
        write_file(dir.path(), &file, text);
        for output in every_command(dir.path(), &file) {
            assert_eq!(output.status.code(), Some(1), "{file} is invalid");
        }
    }
}

#[test]
fn failing_runs_never_print_a_secret() {
    // Redis wants the secret as its password; Elasticsearch (no security) takes any.
    let redis = RedisServer::start(&["--requirepass", SECRET]);
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "redis.secret", &format!("{SECRET}\n"));
    write_file(dir.path(), "es.secret", &format!("{SECRET}\n"));
    let closed = free_port();
    let port = redis.port;
    let index = unique_index("secrets");
    let es = es_url().replacen("://", &format!("://elastic:{SECRET}@"), 1);
    let files = [
        // A wrong password that holds the right one; Elasticsearch's password from `${VAR}`.
        format!("name: wrong-password\nsource: {{type: redis, host: 127.0.0.1, port: {port}, password: \"${{ES_PASSWORD}}x\"}}\nsink: {{type: elasticsearch, url: \"{}\", index: {index}, password: \"${{ES_PASSWORD}}\", username: elastic}}\n", es_url()),
        // An unknown host, the password from a file.
        "name: unknown-host\nsource: {type: redis, host: nosuchhost.invalid, password_file: redis.secret}\nsink: {type: ndjson, path: out.ndjson}\n".to_owned(),
        // Right password from a file; the ES URL carries the secret; every document
        // fails its template, so the dead-letter file is written.
        format!("name: dead-letters\nsource: {{type: redis, host: 127.0.0.1, port: {port}, password_file: redis.secret}}\ntransforms:\n  - type: template\n    document: {{ name: \"{{{{ value.nope.deeper }}}}\" }}\nsink: {{type: elasticsearch, url: \"{es}\", index: {index}, api_key_file: es.secret}}\n"),
        // Right password literally; the ES connection refused (tried again for 1 s:
        // the first connection waits out a restart within retry.max_elapsed).
        format!("name: refused\nsource: {{type: redis, host: 127.0.0.1, port: {port}, password: \"{SECRET}\"}}\nsink: {{type: elasticsearch, url: [\"http://u:{SECRET}@127.0.0.1:{closed}\"], index: {index}, api_key: \"${{MY_TOKEN}}\", retry: {{max_elapsed: 1s}}}}\n"),
    ];
    redis.cli(&["-a", SECRET, "--no-auth-warning", "set", "k1", "v"]);
    redis.cli(&["-a", SECRET, "--no-auth-warning", "hset", "k2", "f", "v"]);
    for (i, text) in files.iter().enumerate() {
        let file = format!("p{i}.yaml");
        write_file(dir.path(), &file, text);
        let outputs = every_command(dir.path(), &file);
        assert_eq!(outputs[0].status.code(), Some(0), "{file} is valid");
        assert_eq!(outputs[2].status.code(), Some(1), "{file}: the run fails");
    }
    // The failures above were really reached.
    let wrong = run(dir.path(), &["run", "p0.yaml"]);
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("WRONGPASS"));
    let unknown = run(dir.path(), &["run", "p1.yaml"]);
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("could not be resolved"));
    let dead = std::fs::read_to_string(dir.path().join("dead-letters.dead-letter.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 2, "{dead}");
    support::es_delete_index(&index);
}

#[test]
fn a_missing_secret_file_named_by_a_file_variable_is_named_in_the_error() {
    // `ES_API_KEY_FILE` holds "KEY" but names where the key is kept: the path is
    // what an operator needs to see, and is not masked.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("run-secrets").join("api-key");
    let index = unique_index("secret-file");
    write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: key-file\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: elasticsearch, url: \"{}\", index: {index}, api_key_file: \"${{ES_API_KEY_FILE}}\"}}\n",
            free_port(),
            es_url()
        ),
    );
    let output = connector()
        .current_dir(dir.path())
        .args(["run", "p.yaml"])
        .env("ES_API_KEY_FILE", &missing)
        .env_remove("RUST_LOG")
        .output()
        .expect("run redis-connector");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("cannot read api_key_file {}", missing.display())),
        "{stdout}"
    );
}
