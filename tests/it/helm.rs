//! The Helm chart `deploy/helm/redis-connector` checked with Helm itself
//! (`scripts/helm`: Helm v4 built once from the Go module proxy): `helm lint` and
//! `helm template` with every `ci/*-values.yaml`, every rendered manifest valid
//! against the Kubernetes schemas, and what each value set must render: hardened
//! pods, the one-time clone, the mounts of secrets and certificates, the monitors and
//! the NetworkPolicy, command lines the real binary accepts, pipelines that validate;
//! and values that cannot work, or misspelt ones (values.schema.json), refused with a
//! message naming the value.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::manifests::{
    assert_command_line_parses, assert_flag_files_mounted, assert_hardened, connector_args, containers, documents,
    pod_specs, strings,
};
use crate::support::{connector, repo_root, write_file};
use serde_json::Value;

fn helm(args: &[&str], render_dir: Option<&Path>) -> Output {
    let mut command = Command::new(repo_root().join("scripts/helm"));
    command.args(args);
    if let Some(dir) = render_dir {
        command.env("HELM_RENDER_DIR", dir);
    }
    command.output().unwrap()
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The rendered resources of one value set, by `kind/name`.
fn resource<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn mount_paths(container: &Value) -> Vec<String> {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_chart_lints_renders_and_validates_with_every_ci_value_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = helm(&["check"], Some(dir.path()));
    let output = printed(&out);
    assert!(out.status.success(), "{output}");
    let sets = ["configmap", "git-sync", "tls-monitoring"];
    for set in sets {
        let file: PathBuf = dir.path().join(format!("{set}.yaml"));
        assert!(
            output.contains(&format!(
                "{} passed for resource deployment/redis-connector",
                file.display()
            )),
            "{output}"
        );
    }
    assert!(
        output.contains("passed for resource cronjob/redis-connector"),
        "plain files too: {output}"
    );
    assert!(
        !output.contains("ERROR") && !output.contains("did not validate"),
        "{output}"
    );

    let binary = Path::new(env!("CARGO_BIN_EXE_redis-connector"));
    let rendered: Vec<(&str, Vec<Value>)> = sets
        .iter()
        .map(|set| (*set, documents(&dir.path().join(format!("{set}.yaml")))))
        .collect();
    for (set, docs) in &rendered {
        for document in docs {
            for pod in pod_specs(document) {
                assert_hardened(pod, set);
                assert_flag_files_mounted(pod, set);
            }
            for args in connector_args(document) {
                assert_command_line_parses(binary, &args, set);
            }
        }
    }
    check_git_sync(&rendered[1].1);
    check_configmap(&rendered[0].1);
    check_tls_monitoring(&rendered[2].1);
}

/// git-sync over SSH: the one-time clone, /tmp, the key and known_hosts, the trigger
/// behind the token, the folder of the repository.
fn check_git_sync(docs: &[Value]) {
    let pod = pod_specs(resource(docs, "Deployment"))[0];
    let init = &pod["initContainers"][0];
    assert!(strings(init, "args").contains(&"--one-time".to_owned()));
    for container in containers(pod).into_iter().filter(|c| c["name"] != "redis-connector") {
        assert!(mount_paths(container).contains(&"/tmp".to_owned()), "{container:?}");
    }
    let serve = &pod["containers"][0];
    assert_eq!(serve["image"], "registry.example.com/platform/redis-connector:0.1.0");
    let args = strings(serve, "args");
    for expected in [
        "--allow-trigger",
        "--auth-token-file=/etc/redis-connector/auth/token",
        "--shutdown-timeout=1m",
        "/git/current/pipelines/production",
    ] {
        assert!(args.contains(&expected.to_owned()), "{args:?}");
    }
    assert_eq!(pod["terminationGracePeriodSeconds"], 75);
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-credentials");
    let volumes = pod["volumes"].as_array().unwrap();
    let git = volumes.iter().find(|v| v["name"] == "git-credentials").unwrap();
    assert_eq!(git["secret"]["secretName"], "redis-connector-git-ssh");
    let env = serde_json::to_string_pretty(&init["env"]).unwrap();
    assert!(env.contains("GITSYNC_SSH_KNOWN_HOSTS_FILE") && env.contains("git@github.com:example/pipelines.git"));
    assert!(
        docs.iter().all(|d| d["kind"] != "ConfigMap"),
        "no ConfigMap for git-sync"
    );
}

/// Inline pipelines: the ConfigMap's files validate, credentials come from Secrets as
/// variables, strict mode, a pinned digest.
fn check_configmap(docs: &[Value]) {
    let map = resource(docs, "ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in map["data"].as_object().unwrap() {
        let path = write_file(dir.path(), name.as_str(), text.as_str().unwrap());
        let out = connector()
            .args(["validate"])
            .arg(&path)
            .env("REDIS_PASSWORD", "x")
            .env("ES_API_KEY", "x")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", printed(&out));
    }
    let pod = pod_specs(resource(docs, "Deployment"))[0];
    assert!(pod.get("initContainers").is_none());
    let serve = &pod["containers"][0];
    assert!(serve["image"]
        .as_str()
        .unwrap()
        .ends_with("/redis-connector@sha256:0000000000000000000000000000000000000000000000000000000000000000"));
    let args = strings(serve, "args");
    assert!(
        args.contains(&"--strict".to_owned()) && args.contains(&"--watch=poll".to_owned()),
        "{args:?}"
    );
    assert_eq!(args.last().unwrap(), "/etc/redis-connector/pipelines");
    assert_eq!(
        serve["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "redis-credentials"
    );
    assert_eq!(serve["envFrom"][0]["secretRef"]["name"], "elasticsearch-credentials");
}

/// TLS mounts, the ServiceMonitor with Prometheus's label, the NetworkPolicy's rules.
fn check_tls_monitoring(docs: &[Value]) {
    let pod = pod_specs(resource(docs, "Deployment"))[0];
    let mounts = mount_paths(&pod["containers"][0]);
    for path in [
        "/etc/redis-connector/tls/elasticsearch",
        "/etc/redis-connector/tls/redis",
        "/etc/redis-connector/credentials",
        "/etc/redis-connector/auth",
    ] {
        assert!(mounts.contains(&path.to_owned()), "{mounts:?}");
    }
    let args = strings(&pod["containers"][0], "args");
    assert!(
        args.contains(&"--auth-token-file=/etc/redis-connector/auth/bearer".to_owned()),
        "{args:?}"
    );
    let monitor = resource(docs, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert!(docs.iter().all(|d| d["kind"] != "PodMonitor"));
    let policy = resource(docs, "NetworkPolicy");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 9464);
    let egress = serde_json::to_string_pretty(&policy["spec"]["egress"]).unwrap();
    for port in ["53", "6380", "9200", "443"] {
        assert!(egress.contains(&format!("\"port\": {port}")), "{egress}");
    }
    assert!(egress.contains("203.0.113.10/32"), "{egress}");
}

#[test]
fn the_chart_refuses_values_that_cannot_work() {
    let chart = repo_root().join("deploy/helm/redis-connector");
    let chart = chart.to_str().unwrap();
    for (set, message) in [
        (
            "serve.allowTrigger=true",
            "serve.allowTrigger needs authToken.existingSecret",
        ),
        ("pipelines.from=gitSync", "pipelines.gitSync.repo is empty"),
        (
            "pipelines.from=git",
            "at '/pipelines/from': value must be one of 'gitSync', 'configMap'",
        ),
        (
            "pipelines.from=gitSync,pipelines.gitSync.repo=https://x/y.git,pipelines.gitSync.credentials.type=token",
            "name the Secret in pipelines.gitSync.credentials.existingSecret",
        ),
        (
            "serviceMonitor.enabled=true,podMonitor.enabled=true",
            "Prometheus would scrape every series twice",
        ),
        // values.schema.json: a misspelt value is an error, not ignored.
        (
            "pipelines.gitsync.repo=x",
            "additional properties 'gitsync' not allowed",
        ),
        ("serve.shutdownTimeout=soon", "'soon' does not match pattern"),
    ] {
        let out = helm(&["run", "template", "redis-connector", chart, "--set", set], None);
        assert!(!out.status.success(), "{set}: rendered");
        assert!(printed(&out).contains(message), "{set}: {}", printed(&out));
    }
}
