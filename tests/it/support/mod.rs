//! Shared helpers of the integration tests: real services, never mocks.
//!
//! - [`RedisServer`]: a private `redis-server` on a free loopback port, in its own
//!   temporary folder, killed when dropped. Tests that need Redis start their own, so
//!   they can run in parallel and flush freely.
//! - [`es_url`] / [`unique_index`]: the shared Elasticsearch started by
//!   `scripts/services start` (the README's test command starts it), and an index name
//!   no other test uses.
//! - [`connector`]: the built `redis-connector` binary, for tests that drive the CLI.

pub mod es_instance;
pub mod live;
pub mod manifests;
pub mod redisjson;
pub mod serve;
pub mod source;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A private redis-server for one test.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` on a free port with no persistence, plus `extra` arguments
    /// (e.g. `["--rename-command", "CONFIG", "\"\""]`), and waits until it answers.
    pub fn start(extra: &[&str]) -> RedisServer {
        let port = free_port();
        Self::start_on(port, extra)
    }

    /// Like [`RedisServer::start`] on a given port (used to restart a server on the same port).
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", dir.path().to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/services start installs it)");
        let server = RedisServer { port, dir, child };
        server.wait_ready(extra);
        server
    }

    fn wait_ready(&self, extra: &[&str]) {
        // A server whose plain port is replaced (TLS only) answers no plain ping: wait for the port.
        let plain = !extra.contains(&"--port");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if plain {
                if let Ok(out) = Command::new("redis-cli")
                    .args(["-p", &self.port.to_string(), "ping"])
                    .output()
                {
                    let text = String::from_utf8_lossy(&out.stdout);
                    // (LOADING: up, still loading its data, which a test may want.)
                    if text.contains("PONG") || text.contains("NOAUTH") || text.contains("LOADING") {
                        return;
                    }
                }
            } else if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer within 10 s", self.port);
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli -p PORT ARGS...` and returns its standard output; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pipes raw commands (one per line, redis-cli syntax) into `redis-cli -p PORT`.
    pub fn cli_pipe(&self, commands: &str) {
        pipe_into_cli(&["-p", &self.port.to_string()], commands);
    }

    /// Kills the server at once (no save), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of private servers: `masters` masters with `replicas` replicas
/// each, slots assigned by `redis-cli --cluster create`, ready (`cluster_state:ok`
/// on every node) when `start` returns.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        Self::start_with(masters, replicas, &[])
    }

    /// Like [`RedisCluster::start`], every node started with `extra` arguments too
    /// (e.g. `--loadmodule PATH`).
    pub fn start_with(masters: usize, replicas: usize, extra: &[&str]) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let mut args = vec!["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
                args.extend_from_slice(extra);
                RedisServer::start_on(cluster_port(), &args)
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            loop {
                let info = node.cli(&["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{}", nodes.len())) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster was not ready within 30 s: {info}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster { nodes }
    }

    /// Pipes commands into `redis-cli -c`, which follows each key to its node.
    pub fn cli_pipe(&self, commands: &str) {
        pipe_into_cli(&["-c", "-p", &self.nodes[0].port.to_string()], commands);
    }

    /// The nodes whose `ROLE` is `role` (`master` or `slave`).
    pub fn with_role(&self, role: &str) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.cli(&["ROLE"]).lines().next() == Some(role))
            .collect()
    }
}

/// Pipes raw commands (one per line) into `redis-cli ARGS...`.
fn pipe_into_cli(args: &[&str], commands: &str) {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli");
    child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// A free port whose cluster bus port (+10000) is valid and free too.
pub fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    // Bind to port 0 and let the kernel choose.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shared Elasticsearch of `scripts/services` (`ES_URL`, default `http://127.0.0.1:9200`).
pub fn es_url() -> String {
    std::env::var("ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_owned())
}

/// An index name unique to this test and process: `test-<prefix>-<pid>-<n>`.
pub fn unique_index(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}-{}",
        prefix,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built `redis-connector` binary.
pub fn connector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-connector"))
}

/// Writes `yaml` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A blocking HTTP client for checking Elasticsearch from tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `GET {es}/{index}/_count` after a refresh; 0 when the index does not exist.
pub fn es_count(index: &str) -> u64 {
    let client = http();
    let _ = client.post(format!("{}/{}/_refresh", es_url(), index)).send();
    let response = client.get(format!("{}/{}/_count", es_url(), index)).send().unwrap();
    if response.status() == 404 {
        return 0;
    }
    let body: serde_json::Value = response.json().unwrap();
    body["count"].as_u64().unwrap_or_else(|| panic!("no count in {body}"))
}

/// `GET {es}/{index}/_doc/{id}`'s `_source`, or `None` when absent.
pub fn es_get(index: &str, id: &str) -> Option<serde_json::Value> {
    let response = http()
        .get(format!("{}/{}/_doc/{}", es_url(), index, id))
        .send()
        .unwrap();
    if response.status() == 404 {
        return None;
    }
    let body: serde_json::Value = response.json().unwrap();
    body.get("_source").cloned()
}

/// Deletes an index (ignores "not found").
pub fn es_delete_index(index: &str) {
    let _ = http().delete(format!("{}/{}", es_url(), index)).send();
}

/// TLS material made by the test with the openssl CLI: a CA, a server certificate for
/// 127.0.0.1/localhost (subjectAltName) and a client certificate, both signed by the CA.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
}

impl TestCerts {
    /// Generates a fresh CA, server and client certificate in a temporary folder.
    pub fn generate() -> TestCerts {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-sha256",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let key = format!("{who}.key");
            let csr = format!("{who}.csr");
            let crt = format!("{who}.crt");
            let ext = format!("{who}.ext");
            std::fs::write(
                dir.path().join(&ext),
                format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"),
            )
            .unwrap();
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-subj",
                &format!("/CN=test {who}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ]);
        }
        TestCerts { dir }
    }

    /// The path of `name` (`ca.crt`, `server.crt`, `server.key`, `client.crt`, `client.key`).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

impl RedisServer {
    /// A redis-server that speaks only TLS on a free port, with `certs`' server
    /// certificate; `auth_clients` makes it demand a client certificate (mutual TLS).
    pub fn start_tls(certs: &TestCerts, auth_clients: bool) -> RedisServer {
        let port = free_port();
        let port_text = port.to_string();
        let (cert, key, ca) = (certs.path("server.crt"), certs.path("server.key"), certs.path("ca.crt"));
        let auth = if auth_clients { "yes" } else { "no" };
        Self::start_on(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port_text,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                auth,
            ],
        )
    }

    /// Runs `redis-cli` over TLS (with the client certificate) and returns its output.
    pub fn cli_tls(&self, certs: &TestCerts, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                &certs.path("ca.crt"),
                "--cert",
                &certs.path("client.crt"),
            ])
            .args(["--key", &certs.path("client.key"), "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A synchronous `redis` crate connection (binary-safe set-up of test data).
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .expect("connect to the test redis-server")
    }
}

/// The indices `alias` points to, sorted (none when it does not exist).
pub fn pointed(alias: &str) -> Vec<String> {
    let response = http().get(format!("{}/_alias/{alias}", es_url())).send().unwrap();
    if response.status() == 404 {
        return Vec::new();
    }
    let body: serde_json::Value = response.json().unwrap();
    let mut names: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

/// The indices named `ALIAS-*` (built behind `alias`), sorted.
pub fn alias_indices(alias: &str) -> Vec<String> {
    let body: serde_json::Value = http()
        .get(format!("{}/_cat/indices/{alias}-*?format=json&h=index", es_url()))
        .send()
        .unwrap()
        .json()
        .unwrap_or(serde_json::Value::Null);
    let mut names: Vec<String> = body
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["index"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
