//! The container image `scripts/image` builds, tested without a container runtime
//! (containers cannot start on these machines): the image is mounted
//! (`buildah from` + `buildah mount`) and its binary run with `chroot`, as the
//! image's non-root user, against the test Redis and Elasticsearch: `run` once, then
//! `serve` until SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{es_count, es_delete_index, es_url, free_port, http, repo_root, unique_index, RedisServer};

/// A working container of the image, mounted; unmounted and removed when dropped.
struct Mounted {
    container: String,
    root: PathBuf,
}

impl Mounted {
    fn new(image: &str) -> Mounted {
        let name = format!("redis-connector-test-{}", std::process::id());
        let container = buildah(&["from", "--name", &name, image]);
        let root = PathBuf::from(buildah(&["mount", &container]));
        Mounted { container, root }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["umount", &self.container]).output();
        let _ = Command::new("buildah").args(["rm", &self.container]).output();
    }
}

fn buildah(args: &[&str]) -> String {
    let out = Command::new("buildah")
        .args(args)
        .output()
        .expect("buildah (Debian's buildah package; scripts/services start installs it)");
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `chroot --userspec=65532:65532 ROOT /usr/local/bin/redis-connector ARGS...`.
fn in_image(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("chroot");
    command
        .arg("--userspec=65532:65532")
        .arg(root)
        .arg("/usr/local/bin/redis-connector")
        .args(args);
    command
}

#[test]
fn the_image_runs_run_and_serve_as_its_non_root_user() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.oci.tar");
    // The binary this test run built (debug): the image's layout, user and libraries
    // are what is tested; a release build would add minutes to every CI run.
    let built = Command::new(repo_root().join("scripts/image"))
        .args(["--binary", env!("CARGO_BIN_EXE_redis-connector")])
        .arg(&archive)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    let image = format!("redis-connector:{version}");
    assert!(
        printed.starts_with(&format!("{image}: ")) && printed.contains(" MiB)"),
        "{printed}"
    );
    assert!(std::fs::metadata(&archive).unwrap().len() > 1 << 20);

    let mounted = Mounted::new(&image);
    let root = &mounted.root;
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("redis-connector:x:65532:65532:"), "{passwd}");
    assert!(root.join("etc/ssl/certs/ca-certificates.crt").is_file());
    let config: serde_json::Value = serde_json::from_str(&buildah(&["inspect", "--type", "image", &image])).unwrap();
    assert_eq!(config["OCIv1"]["config"]["User"], "65532:65532", "{config:#}");
    // OCI labels: the version, the commit it was built from, when.
    let labels = &config["OCIv1"]["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], version, "{labels:#}");
    let revision = labels["org.opencontainers.image.revision"].as_str().unwrap_or_default();
    assert!(
        revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()),
        "{labels:#}"
    );
    assert!(
        labels["org.opencontainers.image.created"]
            .as_str()
            .is_some_and(|c| c.ends_with('Z')),
        "{labels:#}"
    );

    let redis = RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 name ada\nHSET user:2 name grace\nHSET user:3 name edsger\n");
    let index = unique_index("image");
    let work = root.join("var/lib/redis-connector");
    std::fs::write(
        work.join("users.yaml"),
        format!(
            "name: users\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: elasticsearch, url: '{}', index: {index}}}\n\
             dead_letter: /var/lib/redis-connector/users.dead-letter.ndjson\n",
            redis.port,
            es_url()
        ),
    )
    .unwrap();

    let ran = in_image(root, &["run", "/var/lib/redis-connector/users.yaml"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(es_count(&index), 3);

    redis.cli_pipe("HSET user:4 name barbara\n");
    let port = free_port();
    let serve = in_image(
        root,
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "/var/lib/redis-connector/",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = http()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "serve in the image never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(es_count(&index), 4);
    assert!(Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = serve.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    es_delete_index(&index);
}
