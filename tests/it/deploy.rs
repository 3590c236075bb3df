//! The deployment files in `deploy/` and `.pre-commit-hooks.yaml`: the Kubernetes
//! manifests against the Kubernetes schemas (offline, `scripts/check-manifests`),
//! every pod hardened, git-sync cloning before serve starts, the pipelines they
//! carry and the command lines they run against the real binary, the systemd unit
//! with `systemd-analyze verify`, and the pre-commit hook's command on the whole
//! pipeline set (valid, a cross-file error, an invalid file). The Helm chart is
//! tests/helm.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::manifests::{
    assert_command_line_parses, assert_flag_files_mounted, assert_hardened, check_manifests, connector_args,
    containers, documents, pod_specs, strings,
};
use crate::support::{connector, repo_root, write_file};
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

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schemas() {
    let files = manifests();
    assert_eq!(files.len(), 8, "{files:?}");
    let (ok, output) = check_manifests(&repo_root(), &files);
    assert!(ok, "{output}");
    for resource in [
        "cronjob/redis-connector",
        "configmap/redis-connector-pipelines",
        "deployment/redis-connector",
        "service/redis-connector",
        "networkpolicy/redis-connector",
        "secret/redis-connector-auth",
        "secret/redis-connector-git-ssh",
    ] {
        assert!(output.contains(&format!("passed for resource {resource}")), "{output}");
    }
    assert!(!output.contains("failed") && !output.contains("ERROR"), "{output}");
    // The prometheus-operator kinds have no schema here: said, not hidden.
    assert!(
        output.contains("kind ServiceMonitor") && output.contains("kind PodMonitor"),
        "{output}"
    );

    // The check has teeth: a misspelt field fails it, and so does a misspelt kind.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes/serve-configmap.yaml")).unwrap();
    let broken = write_file(
        dir.path(),
        "broken.yaml",
        &text.replace("readinessProbe:", "readynessProbe:"),
    );
    let (ok, output) = check_manifests(&repo_root(), &[broken]);
    assert!(!ok, "{output}");
    assert!(output.contains("readynessProbe"), "{output}");
    let misspelt = write_file(
        dir.path(),
        "kind.yaml",
        &text.replace("kind: Deployment", "kind: Deploymnet"),
    );
    let (ok, output) = check_manifests(&repo_root(), &[misspelt]);
    assert!(!ok, "{output}");
    assert!(
        output.contains("no schema") && output.contains("Deploymnet"),
        "{output}"
    );
}

#[test]
fn every_pod_is_hardened_and_mounts_what_its_flags_name() {
    let mut pods = 0;
    for file in manifests() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# "),
            "{}: no comment block at the top",
            file.display()
        );
        assert!(
            text.contains("What to change"),
            "{}: does not say what to change",
            file.display()
        );
        for document in documents(&file) {
            for pod in pod_specs(&document) {
                assert_hardened(pod, &file_name(&file));
                assert_flag_files_mounted(pod, &file_name(&file));
                pods += 1;
            }
        }
    }
    assert_eq!(pods, 4, "git-sync (HTTPS), git-sync (SSH), ConfigMap, CronJob");
}

#[test]
fn the_git_sync_deployments_clone_once_before_serve_starts() {
    for name in ["serve-git-sync.yaml", "serve-git-sync-ssh.yaml"] {
        let file = repo_root().join("deploy/kubernetes").join(name);
        let document = &documents(&file)[0];
        let pod = pod_specs(document)[0];
        let init = &pod["initContainers"][0];
        assert!(init["image"].as_str().unwrap().contains("git-sync:v4"), "{name}");
        assert_eq!(strings(init, "args"), ["--one-time"], "{name}");
        let volumes = pod["volumes"].as_array().unwrap();
        for container in containers(pod) {
            if !container["image"].as_str().unwrap().contains("git-sync") {
                continue;
            }
            // git-sync v4 writes its gitconfig under /tmp: writable, an emptyDir.
            let tmp = container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == "/tmp")
                .unwrap_or_else(|| panic!("{name}: {:?} has no /tmp", container["name"]));
            let volume = volumes.iter().find(|v| v["name"] == tmp["name"]).unwrap();
            assert!(volume["emptyDir"].is_object(), "{name}");
        }
        let serve = &pod["containers"][0];
        assert_eq!(
            strings(serve, "args").last().unwrap(),
            "/git/current/pipelines",
            "{name}"
        );
        let env: Vec<&str> = init["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        let credentials: &[&str] = if name.contains("ssh") {
            &["GITSYNC_SSH", "GITSYNC_SSH_KEY_FILE", "GITSYNC_SSH_KNOWN_HOSTS_FILE"]
        } else {
            &["GITSYNC_USERNAME", "GITSYNC_PASSWORD_FILE"]
        };
        for variable in credentials {
            assert!(env.contains(variable), "{name}: {env:?}");
        }
    }
}

#[test]
fn the_manifests_pipelines_validate_and_their_command_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_redis-connector"));
    let mut runs = 0;
    for file in manifests() {
        for document in documents(&file) {
            if document["kind"] == "ConfigMap" {
                for (name, text) in document["data"].as_object().unwrap() {
                    let path = write_file(dir.path(), name.as_str(), text.as_str().unwrap());
                    let out = connector().args(["validate"]).arg(&path).output().unwrap();
                    assert!(
                        out.status.success(),
                        "{}: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
            }
            for args in connector_args(&document) {
                assert_command_line_parses(binary, &args, &file_name(&file));
                runs += 1;
            }
        }
    }
    assert_eq!(
        runs, 4,
        "serve (git-sync, HTTPS and SSH), serve (ConfigMap), run (CronJob)"
    );
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
fn the_pre_commit_hook_validates_the_whole_pipeline_set() {
    let hooks: Value = redis_connector::config::yaml::from_str::<Value>(
        &std::fs::read_to_string(repo_root().join(".pre-commit-hooks.yaml")).unwrap(),
    )
    .unwrap();
    let hook = &hooks[0];
    assert_eq!(hook["id"], "redis-connector-validate");
    // The whole set, so the cross-file checks see every file: no file names passed.
    assert_eq!(hook["pass_filenames"], false);
    let entry: Vec<&str> = hook["entry"].as_str().unwrap().split_whitespace().collect();
    assert_eq!(entry[0], "redis-connector");
    let args: Vec<&str> = hook["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["pipelines/"]);
    let files = regex::Regex::new(hook["files"].as_str().unwrap()).unwrap();
    assert!(files.is_match("pipelines/users.yaml") && files.is_match("pipelines/team/a.yml"));
    assert!(!files.is_match(".github/workflows/ci.yaml"));

    // pre-commit runs `entry args` in the repository's root.
    let run = |root: &Path| {
        connector()
            .args(&entry[1..])
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap()
    };
    let out = run(&repo_root());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // Two files, each valid alone, that together delete each other's documents.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("pipelines");
    std::fs::create_dir(&folder).unwrap();
    for name in ["users", "admins"] {
        write_file(
            &folder,
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nsource: {{type: redis, host: localhost, rules: [{{database: 0, key_pattern: '{name}:*'}}]}}\n\
                 sink: {{type: elasticsearch, url: 'http://localhost:9200', index: people, delete_stale: true}}\n"
            ),
        );
        let alone = connector()
            .args(["validate"])
            .arg(folder.join(format!("{name}.yaml")))
            .output()
            .unwrap();
        assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stdout));
    }
    let out = run(dir.path());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("people"), "{printed}");

    std::fs::copy(
        repo_root().join("tests/fixtures/invalid/unknown-field-no-suggestion.yaml"),
        folder.join("colour.yaml"),
    )
    .unwrap();
    let out = run(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown field `colour`"));
}
