//! `redis-connector validate`, driven through the real binary: the exact output for
//! every invalid fixture (insta snapshots), the JSON format, exit codes, the example
//! pipelines, cross-file checks and a 5 MB file.

use std::path::Path;
use std::process::Output;

use crate::support::{connector, repo_root, write_file};

/// Set for every run: the fixture `interpolated-value-not-echoed.yaml` reads it.
const SECRET: &str = "hunter2-secret";

/// Runs `validate ARGS...` from the repository root (so paths in the output are
/// relative, as given).
fn validate(args: &[&str]) -> Output {
    connector()
        .current_dir(repo_root())
        .arg("validate")
        .args(args)
        .env("REDIS_CONNECTOR_TEST_SECRET", SECRET)
        .env_remove("REDIS_CONNECTOR_TEST_UNSET_VARIABLE")
        .output()
        .expect("run redis-connector")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

#[test]
fn every_invalid_fixture_reports_its_mistake() {
    insta::glob!("../fixtures/invalid", "*.yaml", |path| {
        let relative = path.strip_prefix(repo_root()).unwrap().to_str().unwrap().to_owned();
        let output = validate(&[&relative]);
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{relative}: {text}");
        assert_eq!(stderr(&output), "1 file checked, 1 invalid\n");
        for line in text.lines().filter(|l| !l.starts_with(' ')) {
            assert!(
                line.starts_with(&format!("{relative}:")),
                "{relative}: every problem names the file: {line}"
            );
        }
        assert!(!text.contains(SECRET), "{relative}: an interpolated value was echoed");
        assert!(
            !text.contains("S3cretPW"),
            "{relative}: a password written in a URL was echoed"
        );
        insta::assert_snapshot!(text);
    });
}

#[test]
fn there_are_at_least_25_distinct_invalid_fixtures() {
    let count = std::fs::read_dir(repo_root().join("tests/fixtures/invalid"))
        .unwrap()
        .count();
    assert!(count >= 25, "only {count} fixtures");
}

fn is_pipeline_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

#[test]
fn the_example_pipelines_are_all_valid() {
    let output = connector()
        .current_dir(repo_root())
        .args(["validate", "pipelines/"])
        // As a user or CI would run it: no secrets in the environment.
        .env_remove("REDIS_PASSWORD")
        .env_remove("ES_API_KEY")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "");
    let files = std::fs::read_dir(repo_root().join("pipelines"))
        .unwrap()
        .filter(|e| is_pipeline_file(&e.as_ref().unwrap().path()))
        .count();
    assert_eq!(stderr(&output), format!("{files} files checked, 0 invalid\n"));
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn the_examples_name_the_schema_and_say_what_they_show() {
    for entry in std::fs::read_dir(repo_root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if !is_pipeline_file(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("# yaml-language-server: $schema=../schemas/pipeline.schema.json"),
            "{}",
            path.display()
        );
        assert!(
            lines.next().is_some_and(|l| l.starts_with("# ")),
            "{}: a comment says what it shows",
            path.display()
        );
    }
}

#[test]
fn the_valid_fixtures_pass() {
    let output = validate(&["tests/fixtures/valid"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn json_format_prints_only_an_array_of_problems() {
    let output = validate(&[
        "--format",
        "json",
        "tests/fixtures/invalid/two-errors.yaml",
        "tests/fixtures/valid",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let problems: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("stdout is one JSON value");
    assert_eq!(
        problems,
        serde_json::json!([
            {
                "file": "tests/fixtures/invalid/two-errors.yaml",
                "line": 5,
                "column": 9,
                "pointer": "/source/port",
                "message": "expected an integer <= 65535, got 70000"
            },
            {
                "file": "tests/fixtures/invalid/two-errors.yaml",
                "line": 8,
                "column": 14,
                "pointer": "/source/rules/0/_type",
                "message": "`_type` must be one of HASH, LIST, SET, STREAM, STRING, ZSET, ReJSON-RL (or JSON), in any case; got `hashes`"
            }
        ])
    );
    assert_eq!(stderr(&output), "5 files checked, 1 invalid\n");
}

#[test]
fn json_format_of_valid_files_is_an_empty_array() {
    let output = validate(&["--format", "json", "tests/fixtures/valid"]);
    assert_eq!(stdout(&output).trim(), "[]");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_missing_path_is_a_usage_error() {
    let output = validate(&["tests/fixtures/no-such-file.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "error: tests/fixtures/no-such-file.yaml: no such file or folder\n"
    );
}

#[test]
fn an_empty_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = validate(&[dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}: no pipeline files (*.yaml, *.yml) in this folder\n",
            dir.path().display()
        )
    );
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let output = validate(&["--format", "xml", "pipelines/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid value 'xml' for '--format <FORMAT>'"),
        "{}",
        stderr(&output)
    );
    let output = validate(&[]);
    assert_eq!(output.status.code(), Some(2));
}

fn pipeline(name: &str, index: &str, delete_stale: &str) -> String {
    format!(
        "name: {name}\nsource:\n  type: redis\n  host: 127.0.0.1\nsink:\n  type: elasticsearch\n  url: http://127.0.0.1:9200\n  index: {index}\n  delete_stale: {delete_stale}\n"
    )
}

fn validate_folder(dir: &Path) -> Output {
    connector().current_dir(dir).args(["validate", "."]).output().unwrap()
}

#[test]
fn two_pipelines_with_one_name_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.yaml", &pipeline("users", "users-a", "false"));
    write_file(dir.path(), "b.yml", &pipeline("users", "users-b", "false"));
    let output = validate_folder(dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "b.yml:1:7: error: pipeline name `users` is already used by a.yaml:1:7: names must be unique (at /name)\n"
    );
    assert_eq!(stderr(&output), "2 files checked, 1 invalid\n");
}

#[test]
fn a_shared_index_with_stale_deletion_is_an_error_in_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.yaml", &pipeline("users", "shared", "true"));
    write_file(dir.path(), "b.yaml", &pipeline("orders", "shared", "false"));
    let output = validate_folder(dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "a.yaml:9:17: error: index `shared` is also written by pipeline `orders` (b.yaml) and this pipeline deletes stale documents: stale deletion would delete the other pipeline's documents; a shared index needs `delete_stale: false` in every pipeline that writes it (at /sink/delete_stale)\n\
         b.yaml:9:17: error: index `shared` is also written by pipeline `users` (a.yaml) and that pipeline deletes stale documents: stale deletion would delete the other pipeline's documents; a shared index needs `delete_stale: false` in every pipeline that writes it (at /sink/delete_stale)\n"
    );
}

#[test]
fn a_shared_index_without_stale_deletion_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.yaml", &pipeline("users", "shared", "false"));
    write_file(dir.path(), "b.yaml", &pipeline("orders", "shared", "{enabled: false}"));
    let output = validate_folder(dir.path());
    assert_eq!(stdout(&output), "");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn the_same_index_on_another_cluster_is_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.yaml", &pipeline("users", "shared", "true"));
    let other = pipeline("orders", "shared", "true").replace("127.0.0.1:9200", "10.0.0.9:9200");
    write_file(dir.path(), "b.yaml", &other);
    let output = validate_folder(dir.path());
    assert_eq!(stdout(&output), "");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_5_mb_file_is_checked_and_its_error_located() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "name: big\nsource:\n  type: redis\n  host: 127.0.0.1\ntransforms:\n  - type: filter\n    rules:\n",
    );
    let mut rules = 0;
    while text.len() < 5 * 1024 * 1024 {
        text.push_str(&format!(
            "      - policy: exclude\n        field: key\n        rule: equals\n        value: \"user:{rules:08}\"\n"
        ));
        rules += 1;
    }
    text.push_str("      - policy: exclude\n        field: key\n        rule: like\n        value: \"x\"\n");
    text.push_str("sink:\n  type: ndjson\n  path: \"-\"\n");
    let line = text.lines().position(|l| l == "        rule: like").unwrap() + 1;
    let path = write_file(dir.path(), "big.yaml", &text);
    let output = connector().arg("validate").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!(
            "{}:{line}:15: error: `rule` must be one of equals, contains, starts_with, ends_with, regex, <, >; got `like` (at /transforms/0/rules/{rules}/rule)\n",
            path.display()
        )
    );
}

#[test]
fn help_explains_commands_formats_and_exit_codes() {
    let output = connector().arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for expected in ["validate", "run", "Exit codes:", "usage error"] {
        assert!(help.contains(expected), "--help lacks {expected:?}:\n{help}");
    }
    let output = connector().args(["validate", "--help"]).output().unwrap();
    let help = stdout(&output);
    for expected in ["--format", "json", "file:line:col", "Exit codes:", "Never connects"] {
        assert!(help.contains(expected), "validate --help lacks {expected:?}:\n{help}");
    }
}

#[test]
fn a_file_named_twice_is_checked_once() {
    let output = validate(&["tests/fixtures/valid", "tests/fixtures/valid/anchors-and-sizes.yaml"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "4 files checked, 0 invalid\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_quoted_pattern_is_expanded_and_one_matching_nothing_is_a_usage_error() {
    // CI files often pass the pattern quoted, so no shell expands it.
    let output = validate(&["tests/fixtures/valid/*.yaml"]);
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "4 files checked, 0 invalid\n");
    assert_eq!(output.status.code(), Some(0));

    let output = validate(&["tests/fixtures/invalid/two-*.yaml"]);
    assert_eq!(stderr(&output), "2 files checked, 2 invalid\n");
    assert_eq!(output.status.code(), Some(1));

    let output = validate(&["tests/fixtures/valid/*.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: tests/fixtures/valid/*.json: no file or folder matches this pattern\n"
    );
}

#[test]
fn a_folder_search_skips_hidden_files_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "users.yaml", &pipeline("users", "users", "false"));
    // A CI workflow, and the `..data` folder Kubernetes puts beside a mounted
    // ConfigMap's files: neither is a pipeline of this folder.
    std::fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
    std::fs::create_dir_all(dir.path().join("..data")).unwrap();
    write_file(&dir.path().join(".github/workflows"), "ci.yml", "on: push\n");
    write_file(
        &dir.path().join("..data"),
        "users.yaml",
        &pipeline("users", "users", "false"),
    );
    write_file(dir.path(), ".draft.yaml", "name: [\n");
    let output = validate_folder(dir.path());
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "1 file checked, 0 invalid\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_document_of_100_000_fields_is_checked_in_linear_time() {
    // Each key used to be compared with every earlier key of its mapping (for
    // duplicates): 50,000 fields took 8 s in a release build, 100,000 four times that.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "name: wide\nsource:\n  type: redis\n  host: 127.0.0.1\ntransforms:\n  - type: template\n    document:\n",
    );
    for i in 0..100_000 {
        text.push_str(&format!("      f{i}: \"{{{{ value.f{i} }}}}\"\n"));
    }
    text.push_str("      f7: duplicate\nsink:\n  type: ndjson\n  path: \"-\"\n");
    let path = write_file(dir.path(), "wide.yaml", &text);
    let started = std::time::Instant::now();
    let output = connector().arg("validate").arg(&path).output().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        stdout(&output),
        format!(
            "{}:100008:7: error: duplicate key `f7` (first defined at line 15): each key appears once in a mapping (at /transforms/0/document/f7)\n",
            path.display()
        )
    );
    assert!(elapsed < std::time::Duration::from_secs(40), "{elapsed:?}");
}

#[test]
fn a_pipe_is_read_as_a_file() {
    // `validate /dev/stdin` and `validate <(envsubst < p.yaml)` name pipes, which are
    // neither files nor folders; they used to be "no such file or folder".
    let mut child = connector()
        .current_dir(repo_root())
        .args(["validate", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(repo_root().join("tests/fixtures/invalid/two-errors.yaml")).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &text).unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("/dev/stdin:5:9: error: expected an integer <= 65535"),
        "{}",
        stdout(&output)
    );
    assert_eq!(stderr(&output), "1 file checked, 1 invalid\n");
}

#[test]
fn two_pipelines_with_one_dead_letter_file_are_an_error() {
    // Each run removes its dead-letter file at its start: in one `run` of
    // both, the second pipeline's failures erased the first's.
    let dir = tempfile::tempdir().unwrap();
    let with_dead_letter = |name: &str, path: &str| format!("{}dead_letter: {path}\n", pipeline(name, name, "false"));
    write_file(dir.path(), "a.yaml", &with_dead_letter("a", "failed.ndjson"));
    write_file(dir.path(), "b.yaml", &with_dead_letter("b", "./failed.ndjson"));
    // `team/x` and `team_x` both default to `team_x.dead-letter.ndjson`.
    write_file(dir.path(), "c.yaml", &pipeline("team/x", "c", "false"));
    write_file(dir.path(), "d.yaml", &pipeline("team_x", "d", "false"));
    let output = validate_folder(dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "b.yaml:10:14: error: dead-letter file `failed.ndjson` is also written by pipeline `a` (a.yaml): each run removes it at its start, so one pipeline's failed records would erase the other's; give each pipeline its own `dead_letter` (at /dead_letter)\n\
         d.yaml:1:7: error: dead-letter file `team_x.dead-letter.ndjson` is also written by pipeline `team/x` (c.yaml): each run removes it at its start, so one pipeline's failed records would erase the other's; give each pipeline its own `dead_letter` (at /name)\n"
    );
    assert_eq!(stderr(&output), "4 files checked, 2 invalid\n");
}

#[test]
fn a_template_calling_now_is_valid_with_a_warning_about_change_aware_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("now.yaml");
    std::fs::write(
        &path,
        "name: now\nsource: {type: redis, host: 127.0.0.1}\ntransforms:\n  - type: template\n    \
         document: {key: '{{ key }}', seen: '{{ now() }}'}\nsink: {type: elasticsearch, url: 'http://127.0.0.1:9200', index: i}\n",
    )
    .unwrap();
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("now.yaml: warning: the template calls now(): every run renders a different document")
            && err.contains("(at /transforms/0/document/seen)"),
        "{err}"
    );
    let output = validate(&["--format", "json", path.to_str().unwrap()]);
    assert_eq!(stdout(&output).trim(), "[]", "the JSON lists problems only");
}
