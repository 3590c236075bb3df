//! Unit tests of [`super`]: checking a pipeline file from its bytes.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn messages(text: &[u8]) -> Vec<String> {
    check_bytes(Path::new("p.yaml"), text, &no_env)
        .diagnostics
        .iter()
        .map(|d| format!("{}:{} {} {}", d.line, d.column, d.pointer, d.message))
        .collect()
}

const VALID: &str = "name: p\nsource:\n  type: redis\n  host: h\nsink:\n  type: ndjson\n  path: '-'\n";

#[test]
fn a_valid_file_gives_its_pipeline() {
    let check = check_bytes(Path::new("p.yaml"), VALID.as_bytes(), &no_env);
    assert_eq!(check.diagnostics, vec![]);
    assert_eq!(check.pipeline.unwrap().name, "p");
}

#[test]
fn non_utf8_bytes_are_located() {
    assert_eq!(
        messages(b"name: p\nsource: ab\xffc\n"),
        vec!["2:11  the file is not UTF-8 text (byte 0xff here): save it as UTF-8"]
    );
}

#[test]
fn control_characters_are_located_errors_not_the_end_of_the_file() {
    // A NUL used to end the parse there: the filter after it was silently dropped.
    let text = format!("{VALID}\0transforms:\n  - type: filter\n    rules: []\n");
    assert_eq!(
        messages(text.as_bytes()),
        vec!["8:1  control character U+0000 here: YAML text cannot hold it; remove it (inside double quotes, write it as an escape such as `\\x00`)"]
    );
    let text = VALID.replace("host: h", "host: h\u{1}x");
    assert_eq!(messages(text.as_bytes())[0].split(' ').next(), Some("4:10"));
    assert_eq!(messages(VALID.replace("name: p", "name: p\u{7f}").as_bytes()).len(), 1);
    // Tabs, CR LF, escapes inside double quotes and non-ASCII text are fine.
    let text = VALID
        .replace('\n', "\r\n")
        .replace("host: h", "host: \"h\\0\\t\" # é\t");
    assert_eq!(messages(text.as_bytes()), Vec::<String>::new());
}

#[test]
fn a_key_that_is_not_text_is_reported_once() {
    let text = VALID.replace("host: h", "host: h\n  ? [a, b]\n  : 1");
    assert_eq!(
        messages(text.as_bytes()),
        vec!["5:5 /source a key must be plain text, not a list"]
    );
}

#[test]
fn empty_and_comment_only_files_are_errors() {
    let expected = vec!["1:1  the file is empty: a pipeline needs at least `name`, `source` and `sink`"];
    assert_eq!(messages(b""), expected);
    assert_eq!(messages(b"# nothing\n"), expected);
}

#[test]
fn a_list_at_the_top_is_an_error() {
    assert_eq!(
        messages(b"- name: p\n"),
        vec!["1:1  the top level of a pipeline file must be a mapping (`name:`, `source:`, `transforms:`, `sink:`), not a list"]
    );
}

#[test]
fn every_error_of_a_file_is_reported_in_order() {
    let text = VALID.replace("host: h", "host: h\n  port: 70000\n  databse: 1");
    assert_eq!(
        messages(text.as_bytes()),
        vec![
            "5:9 /source/port expected an integer <= 65535, got 70000",
            "6:3 /source/databse unknown field `databse`, did you mean `database`?",
        ]
    );
}

#[test]
fn schema_errors_and_stage_checks_are_reported_in_one_pass() {
    let text = "name: p\nsource: {type: redis, host: h, port: 70000, timeout: 0}\ntransforms:\n  - {type: template, document: 5}\n  - {type: template, document: {a: '{{ x '}}\nsink: {type: ndjson, path: '-'}\n";
    let found = messages(text.as_bytes());
    let pointers: Vec<&str> = found.iter().map(|m| m.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        pointers,
        vec![
            "/source/port",
            "/source/timeout",
            "/transforms/0/document",
            "/transforms/1/document/a"
        ],
        "{found:?}"
    );
    // A misspelt field taken out does not make its rule "select nothing" too.
    let text = VALID.replace("host: h", "host: h\n  rules:\n    - {database: 0, key_patern: a}");
    assert_eq!(
        messages(text.as_bytes()),
        vec!["6:21 /source/rules/0/key_patern unknown field `key_patern`, did you mean `key_pattern`?"]
    );
}

#[test]
fn an_unset_variable_is_reported_once() {
    let text = VALID.replace("host: h", "host: h\n  port: ${NO_SUCH_PORT}");
    assert_eq!(
        messages(text.as_bytes()),
        vec!["5:9 /source/port environment variable `NO_SUCH_PORT` is not set (set it, or give a default: `${NO_SUCH_PORT:-default}`)"]
    );
}

#[test]
fn a_whole_number_written_as_a_float_is_located_at_its_field() {
    let text = VALID.replace("host: h", "host: h\n  scan_count: 1e3");
    assert_eq!(
        messages(text.as_bytes()),
        vec![
            "5:15 /source/scan_count expected a whole number, got `1e3`: write it without a decimal point or exponent"
        ]
    );
    let text = VALID.replace(
        "host: h",
        "host: h\n  rules:\n    - {database: 0, key_pattern: a}\n    - {database: 1.0, key_pattern: b}",
    );
    assert_eq!(
        messages(text.as_bytes()),
        vec!["7:18 /source/rules/1/database expected a whole number, got `1.0`: write it without a decimal point or exponent"]
    );
}

#[test]
fn a_float_deep_in_a_long_list_is_found_by_halves() {
    let rules: String = (0..5000)
        .map(|i| format!("    - {{database: 0, key_pattern: k{i}}}\n"))
        .collect();
    let text = format!("name: p\nsource:\n  type: redis\n  host: h\n  rules:\n{rules}    - {{database: 2.0, key_pattern: x}}\nsink:\n  type: ndjson\n  path: '-'\n");
    let started = std::time::Instant::now();
    let found = messages(text.as_bytes());
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("5006:18 /source/rules/5000/database expected a whole number"),
        "{found:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_duration_too_large_is_an_error_at_its_field() {
    let text = "name: p\nsource:\n  type: redis\n  host: h\n  timeout: 99999999999999999999h\nsink:\n  type: ndjson\n  path: '-'\n";
    assert_eq!(
        messages(text.as_bytes()),
        vec!["5:12 /source/timeout invalid value: duration `99999999999999999999h` is out of range"]
    );
}

#[test]
fn a_value_from_a_variable_that_fails_to_convert_is_not_echoed() {
    let text = VALID.replace("host: h", "host: h\n  timeout: ${T}");
    let lookup = |name: &str| (name == "T").then(|| "99999999999999999999h".to_string());
    let found = check_bytes(Path::new("p.yaml"), text.as_bytes(), &lookup).diagnostics;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "/source/timeout");
    assert!(!found[0].message.contains("9999"), "{}", found[0].message);
}

#[test]
fn interpolated_values_are_never_echoed() {
    let text = VALID.replace("host: h", "host: h\n  port: ${SECRET_PORT}");
    let lookup = |name: &str| (name == "SECRET_PORT").then(|| "s3cr3t".to_string());
    let found = check_bytes(Path::new("p.yaml"), text.as_bytes(), &lookup).diagnostics;
    assert_eq!(found.len(), 1);
    assert!(!found[0].message.contains("s3cr3t"), "{}", found[0].message);
}
