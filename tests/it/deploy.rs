//! The deployment files in `deploy/` and `.pre-commit-hooks.yaml`: the Kubernetes
//! manifests against the Kubernetes schemas (offline, `scripts/check-manifests`),
//! the pipelines they carry and the command lines they run against the real
//! binary, the systemd unit with `systemd-analyze verify`, and the pre-commit hook's
//! command on valid and invalid pipeline files.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{connector, repo_root, write_file};
use redis_connector::config::yaml;
use serde_json::Value;

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The documents of a manifest, each parsed by the connector's own YAML parser (which
/// takes one document at a time: they are split at their `---` lines).
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            documents.push(String::new());
        } else if let Some(document) = documents.last_mut() {
            document.push_str(line);
            document.push('\n');
        }
    }
    documents
        .iter()
        .map(|document| yaml::from_str(document).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|document: &Value| !document.is_null())
        .collect()
}

fn check_manifests(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(repo_root().join("scripts/check-manifests"))
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schemas() {
    let files = manifests();
    assert_eq!(files.len(), 3, "{files:?}");
    let (ok, output) = check_manifests(&files);
    assert!(ok, "{output}");
    for resource in [
        "cronjob/redis-connector",
        "configmap/redis-connector-pipelines",
        "deployment/redis-connector",
    ] {
        assert!(output.contains(&format!("passed for resource {resource}")), "{output}");
    }
    assert!(!output.contains("failed"), "{output}");

    // The check has teeth: a misspelt field fails it.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes/serve-configmap.yaml")).unwrap();
    let broken = write_file(
        dir.path(),
        "broken.yaml",
        &text.replace("readinessProbe:", "readynessProbe:"),
    );
    let (ok, output) = check_manifests(&[broken]);
    assert!(!ok, "{output}");
    assert!(output.contains("readynessProbe"), "{output}");
}

/// Every container of a manifest that runs the connector: its arguments.
fn connector_args(document: &Value) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![document];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if map
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| i.starts_with("redis-connector:"))
                {
                    let args = map["args"].as_array().unwrap();
                    found.push(args.iter().map(|a| a.as_str().unwrap().to_owned()).collect());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

#[test]
fn the_manifests_pipelines_validate_and_their_command_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for file in manifests() {
        for document in documents(&file) {
            if document["kind"] == "ConfigMap" {
                for (name, text) in document["data"].as_object().unwrap() {
                    let path = write_file(dir.path(), name, text.as_str().unwrap());
                    let out = connector()
                        .args(["validate"])
                        .arg(&path)
                        .env("REDIS_PASSWORD", "x")
                        .env("ES_API_KEY", "x")
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
            }
            for args in connector_args(&document) {
                // The same flags with --help: clap rejects any it does not know (exit 2).
                let flags: Vec<&String> = args
                    .iter()
                    .filter(|a| a.starts_with('-') || *a == "serve" || *a == "run")
                    .collect();
                let out = connector().args(flags).arg("--help").output().unwrap();
                assert!(
                    out.status.success(),
                    "{}: {args:?}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 3, "serve (git-sync), serve (ConfigMap), run (CronJob)");
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/redis-connector.service")).unwrap();
    let binary = env!("CARGO_BIN_EXE_redis-connector");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/redis-connector serve "),
        "{unit}"
    );
    let path = write_file(
        dir.path(),
        "redis-connector.service",
        &unit.replace("/usr/local/bin/redis-connector", binary),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && problems.trim().is_empty(), "{problems}");
    // Its command line parses.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let flags: Vec<&str> = exec
        .split_whitespace()
        .skip(1)
        .filter(|a| a.starts_with('-') || *a == "serve" || !a.starts_with('/'))
        .collect();
    let out = connector().args(&flags).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_pre_commit_hook_validates_pipeline_files() {
    let hooks: Value =
        yaml::from_str(&std::fs::read_to_string(repo_root().join(".pre-commit-hooks.yaml")).unwrap()).unwrap();
    let hook = &hooks[0];
    assert_eq!(hook["id"], "redis-connector-validate");
    let entry: Vec<&str> = hook["entry"].as_str().unwrap().split_whitespace().collect();
    assert_eq!(entry[0], "redis-connector");
    let files = regex::Regex::new(hook["files"].as_str().unwrap()).unwrap();
    assert!(files.is_match("pipelines/users.yaml") && files.is_match("pipelines/team/a.yml"));
    assert!(!files.is_match(".github/workflows/ci.yaml"));

    // pre-commit runs `entry` with the changed files appended.
    let run = |files: &[PathBuf]| connector().args(&entry[1..]).args(files).output().unwrap();
    let examples: Vec<PathBuf> = std::fs::read_dir(repo_root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = run(&examples);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let invalid = repo_root().join("tests/fixtures/invalid/unknown-field-no-suggestion.yaml");
    let out = run(&[invalid]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown field `colour`"));
}
