//! Helpers of the tests of Kubernetes manifests (tests/deploy.rs for the plain files
//! of `deploy/kubernetes/`, tests/helm.rs for what the Helm chart renders): reading
//! multi-document YAML, the offline schema check of `scripts/check-manifests`, and the
//! checks every pod must pass (hardened containers, the connector's command lines
//! accepted by the real binary, the files its flags name mounted).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Every YAML document of a file (a `---` separated stream), empty ones left out.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The connector's own parser takes one document at a time: split at the `---` lines.
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            documents.push(String::new());
        } else if let Some(document) = documents.last_mut() {
            document.push_str(line);
            document.push('\n');
        }
    }
    documents
        .iter()
        .map(|document| {
            redis_connector::config::yaml::from_str::<Value>(document)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// `scripts/check-manifests FILES`: whether it passed, and what it printed.
pub fn check_manifests(root: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(root.join("scripts/check-manifests"))
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

/// Every pod spec in a document: a mapping with `containers`, wherever it is nested
/// (Deployment, CronJob's job template, ...).
pub fn pod_specs(document: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    let mut stack = vec![document];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if map.get("containers").is_some_and(Value::is_array) {
                    found.push(value);
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// The containers and init containers of a pod spec.
pub fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod.get(*k).and_then(Value::as_array))
        .flatten()
        .collect()
}

/// A container's string list under `key` (`args`), empty when absent.
pub fn strings(container: &Value, key: &str) -> Vec<String> {
    container
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|a| a.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Whether a container runs the connector (its image is `.../redis-connector:TAG` or
/// `@digest`).
pub fn is_connector(container: &Value) -> bool {
    container["image"]
        .as_str()
        .is_some_and(|i| i.contains("/redis-connector:") || i.contains("/redis-connector@"))
}

/// Asserts what every pod of the deployment files must do: non-root, and each
/// container with a read-only root, no privilege escalation, every capability
/// dropped, requests and a memory limit, and an image with a registry in its name.
pub fn assert_hardened(pod: &Value, origin: &str) {
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "{origin}: pod not runAsNonRoot"
    );
    assert_eq!(pod["automountServiceAccountToken"], false, "{origin}");
    for container in containers(pod) {
        let name = container["name"].as_str().unwrap();
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{origin}: {name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{origin}: {name}");
        let drop = security["capabilities"]["drop"].as_array();
        assert!(
            drop.is_some_and(|d| d.iter().any(|c| c == "ALL")),
            "{origin}: {name} keeps capabilities"
        );
        assert!(container["resources"]["requests"].is_object(), "{origin}: {name}");
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{origin}: {name} has no memory limit"
        );
        let image = container["image"].as_str().unwrap();
        assert!(
            image.split('/').count() >= 2 && image.split('/').next().unwrap().contains('.'),
            "{origin}: {name}: image {image} names no registry"
        );
    }
}

/// Asserts that every file a connector flag names (`--auth-token-file=PATH`) is under
/// one of the container's volume mounts.
pub fn assert_flag_files_mounted(pod: &Value, origin: &str) {
    for container in containers(pod).into_iter().filter(|c| is_connector(c)) {
        let mounts: Vec<String> = container["volumeMounts"]
            .as_array()
            .map(|m| m.iter().map(|v| v["mountPath"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        for arg in strings(container, "args") {
            if let Some(path) = arg.strip_prefix("--auth-token-file=") {
                assert!(
                    mounts.iter().any(|m| Path::new(path).starts_with(m)),
                    "{origin}: {path} is in no volume mount of {mounts:?}"
                );
            }
        }
    }
}

/// The argument lists of the containers that run the connector.
pub fn connector_args(document: &Value) -> Vec<Vec<String>> {
    pod_specs(document)
        .into_iter()
        .flat_map(containers)
        .filter(|c| is_connector(c))
        .map(|c| strings(c, "args"))
        .collect()
}

/// Asserts that the real binary accepts a manifest's subcommand and flags: they are
/// run with `--help`, and clap rejects any flag it does not know (exit 2).
pub fn assert_command_line_parses(binary: &Path, args: &[String], origin: &str) {
    let flags: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with('-') || *a == "serve" || *a == "run")
        .collect();
    let out = Command::new(binary).args(flags).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{origin}: {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
