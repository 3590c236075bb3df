//! `validate` as CI and a pre-commit hook run it, through the real binary:
//! `--env-file`, `--allow-unset` (placeholders and notes), secrets written in a file
//! (warnings, errors with `--strict`), a bad value from `${VAR}` named by its
//! variable and never quoted; and the help text of `run` saying what the tool does.

use std::path::Path;
use std::process::Output;

use crate::support::{connector, write_file};

fn validate(dir: &Path, args: &[&str]) -> Output {
    connector()
        .current_dir(dir)
        .arg("validate")
        .args(args)
        .env_remove("CI_ES_URL")
        .env_remove("CI_REDIS_PORT")
        .env_remove("U_PORT")
        .env_remove("U_HOST")
        .env_remove("U_URL")
        .output()
        .expect("run redis-connector")
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const FROM_VARIABLES: &str = "name: ci\nsource:\n  type: redis\n  host: 127.0.0.1\n  port: ${CI_REDIS_PORT}\n\
                              sink:\n  type: elasticsearch\n  url: ${CI_ES_URL}\n  index: ci\n";

#[test]
fn an_env_file_gives_the_variables_ci_lacks() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "p.yaml", FROM_VARIABLES);
    let output = validate(dir.path(), &["p.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        out(&output).contains("environment variable `CI_REDIS_PORT` is not set"),
        "{}",
        out(&output)
    );

    write_file(
        dir.path(),
        "ci.env",
        "# stand-ins for CI\nexport CI_REDIS_PORT=6380\nCI_ES_URL=\"http://es.example:9200\"\n",
    );
    let output = validate(dir.path(), &["--env-file", "ci.env", "p.yaml"]);
    assert_eq!(out(&output), "");
    assert_eq!(err(&output), "1 file checked, 0 invalid\n");
    assert_eq!(output.status.code(), Some(0));

    // A line that is no assignment is a usage error naming the file and line.
    write_file(dir.path(), "bad.env", "CI_REDIS_PORT=1\nnot an assignment\n");
    let output = validate(dir.path(), &["--env-file", "bad.env", "p.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(err(&output), "error: bad.env:2: expected `NAME=value`\n");
}

#[test]
fn allow_unset_checks_with_placeholders_and_notes_each_variable() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: ci\nsource:\n  type: redis\n  host: ${U_HOST}\n  port: ${U_PORT}\n\
                sink:\n  type: elasticsearch\n  url: ${U_URL}\n  index: ci\n";
    write_file(dir.path(), "p.yaml", text);
    let output = validate(dir.path(), &["--allow-unset", "p.yaml"]);
    assert_eq!(out(&output), "");
    assert_eq!(
        err(&output),
        "p.yaml:4:9: note: `${U_HOST}` is not set (--allow-unset): checked with a placeholder (at /source/host)\n\
         p.yaml:5:9: note: `${U_PORT}` is not set (--allow-unset): the checks that need its value were skipped (at /source/port)\n\
         p.yaml:8:8: note: `${U_URL}` is not set (--allow-unset): the checks that need its value were skipped (at /sink/url)\n\
         1 file checked, 0 invalid\n"
    );
    assert_eq!(output.status.code(), Some(0));

    // The rest of the file is still checked.
    write_file(
        dir.path(),
        "p.yaml",
        &text.replace("  index: ci\n", "  index: ci\n  timeout: 0\n"),
    );
    let output = validate(dir.path(), &["--allow-unset", "p.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", err(&output));
    assert_eq!(
        out(&output).lines().next(),
        Some("p.yaml:10:12: error: must be more than 0 (at /sink/timeout)")
    );
}

#[test]
fn secrets_written_in_the_file_are_warnings_and_errors_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "p.yaml",
        "name: s\nsource:\n  type: redis\n  host: 127.0.0.1\n  password: \"hunter2hunter2\"\n\
         sink:\n  type: elasticsearch\n  url: http://elastic:Secret9@127.0.0.1:9200\n  index: s\n",
    );
    let output = validate(dir.path(), &["p.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", err(&output));
    let warnings = err(&output);
    assert!(
        warnings.contains("p.yaml:5:13: warning: a password written in the pipeline file: anyone who reads the file or its git history has it; write `password: \"${REDIS_PASSWORD}\"` (any variable name) or use `password_file` (at /source/password)"),
        "{warnings}"
    );
    assert!(
        warnings.contains("p.yaml:8:8: warning: a password written in a URL (`user:password@`)"),
        "{warnings}"
    );
    assert!(
        !warnings.contains("hunter2hunter2") && !warnings.contains("Secret9"),
        "{warnings}"
    );

    let output = validate(dir.path(), &["--strict", "p.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let errors = out(&output);
    assert!(
        errors.contains("p.yaml:5:13: error: a password written in the pipeline file"),
        "{errors}"
    );
    assert!(
        errors.contains("p.yaml:8:8: error: a password written in a URL"),
        "{errors}"
    );
    assert!(
        !errors.contains("hunter2hunter2") && !errors.contains("Secret9"),
        "{errors}"
    );
    assert_eq!(err(&output), "1 file checked, 1 invalid\n");

    // From a variable: no warning.
    write_file(
        dir.path(),
        "p.yaml",
        "name: s\nsource:\n  type: redis\n  host: 127.0.0.1\n  password: \"${U_PW:-}\"\n\
         sink:\n  type: elasticsearch\n  url: http://127.0.0.1:9200\n  index: s\n",
    );
    let output = validate(dir.path(), &["--strict", "p.yaml"]);
    assert_eq!(err(&output), "1 file checked, 0 invalid\n");
}

#[test]
fn a_bad_url_from_a_variable_names_the_variable_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "p.yaml",
        "name: u\nsource: {type: redis, host: 127.0.0.1}\nsink:\n  type: elasticsearch\n  url: ${CI_ES_URL}\n  index: u\n",
    );
    let output = connector()
        .current_dir(dir.path())
        .args(["validate", "p.yaml"])
        .env("CI_ES_URL", "http://elastic:pw-secret-9@127.0.0.1:19200x")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = out(&output);
    assert!(
        text.starts_with("p.yaml:5:8: error: `${CI_ES_URL}` is not a URL: invalid port number (at /sink/url)"),
        "{text}"
    );
    assert!(!text.contains("19200x") && !text.contains("pw-secret-9"), "{text}");
}

#[test]
fn run_help_says_what_ctrl_c_and_quiet_do() {
    let output = connector().args(["run", "--help"]).output().unwrap();
    let help = out(&output).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "prints the summary (INTERRUPTED) and exits 1. With --follow, Ctrl-C or SIGTERM is the normal way to stop"
        ),
        "{help}"
    );
    assert!(help.contains("and exits 0"), "{help}");
    assert!(
        help.contains("a dry run prints no sample documents unless `--sample N` is given"),
        "{help}"
    );
}
