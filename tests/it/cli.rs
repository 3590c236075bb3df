//! The command line itself, through the real binary: usage errors (also as JSON for
//! bots), flags that cannot go together, `--version` with the commit, and what
//! packaging uses: `schema`, `completions`, `man`.

use std::process::Output;

use crate::support::{connector, repo_root, write_file};

fn run(args: &[&str]) -> Output {
    connector()
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("run redis-connector")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn a_usage_error_of_validate_in_json_is_json_on_stdout() {
    for args in [
        &["validate", "--format", "json", "no-such-file.yaml"][..],
        &["validate", "--format=json", "--no-such-flag", "pipelines/"][..],
        &["validate", "--format", "json"][..],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let document: serde_json::Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&output)));
        assert_eq!(document["exit_code"], 2);
        assert!(!document["error"].as_str().unwrap().is_empty());
        // The person at the terminal still reads it on standard error.
        assert!(stderr(&output).contains("error:"), "{args:?}");
    }
    let output = run(&["validate", "--format", "json", "no-such-file.yaml"]);
    assert_eq!(
        stdout(&output),
        "{\"error\":\"no-such-file.yaml: no such file or folder\",\"exit_code\":2}\n"
    );
}

#[test]
fn quiet_and_verbose_together_are_a_usage_error() {
    let output = run(&["run", "-q", "-v", "pipelines/demo.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("'--quiet' cannot be used with '--verbose"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sample_without_dry_run_is_a_usage_error() {
    let output = run(&["run", "--sample", "5", "pipelines/demo.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--dry-run"), "{}", stderr(&output));
    assert!(stdout(&run(&["run", "--help"])).contains("only with `--dry-run`"));
}

#[test]
fn run_with_json_logs_reports_an_invalid_pipeline_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "p.yaml",
        "name: p\nsource: {type: redis, host: 127.0.0.1, port: 70000, timeout: 0}\nsink: {type: ndjson, path: '-'}\n",
    );
    let output = connector()
        .args(["run", "--log-format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "two problems and the closing line: {lines:?}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["fields"]["pointer"], "/source/port");
    assert_eq!(lines[0]["fields"]["line"], 2);
    assert_eq!(lines[1]["fields"]["message"], "`timeout` must be more than 0");
    assert!(lines[2]["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("nothing was run"));
}

#[test]
fn the_version_names_the_commit() {
    let output = run(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("redis-connector {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn schema_prints_the_schema_validate_uses() {
    let output = run(&["schema"]);
    assert_eq!(output.status.code(), Some(0));
    let file = std::fs::read_to_string(repo_root().join("schemas/pipeline.schema.json")).unwrap();
    assert_eq!(stdout(&output), file);
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef redis-connector"),
        ("fish", "complete -c redis-connector"),
    ] {
        let output = run(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let text = stdout(&output);
        assert!(text.contains(marker), "{shell}: {text}");
        for command in ["validate", "run", "schema", "--dry-run"] {
            assert!(text.contains(command), "{shell} lacks {command}");
        }
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_prints_a_manual_page_with_every_command() {
    let output = run(&["man"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(
        text.starts_with(".ie \\n(.g .ds Aq \\(aq") || text.contains(".TH redis-connector 1"),
        "{text}"
    );
    for section in [
        "REDIS-CONNECTOR VALIDATE",
        "REDIS-CONNECTOR RUN",
        "dry\\-run",
        "Exit codes",
    ] {
        assert!(text.contains(section), "the page lacks {section}");
    }
}
