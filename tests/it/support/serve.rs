//! A `redis-connector serve` process for the tests that drive it: started in a
//! folder with `--log-format json` on a free port, its HTTP endpoints read as a user
//! (or Prometheus) would, its JSON log lines, signals, exit; killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{connector, free_port, http};

/// How long a test waits for something the daemon should do soon. Generous: the
/// machine is shared; nothing is asserted about how long it took.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A running `serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `serve --listen 127.0.0.1:PORT --log-format json ARGS...` in `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Serve {
        Serve::start_with(dir, connector(), args)
    }

    /// The same through `command`: the connector, or a program that runs it (as
    /// another user: `setpriv ... redis-connector`).
    pub fn start_with(dir: &Path, mut command: std::process::Command, args: &[&str]) -> Serve {
        let port = free_port();
        let log = dir.join(format!("serve-{port}.log"));
        let child = command
            .current_dir(dir)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let serve = Serve { child, port, log };
        serve.wait_for("the HTTP endpoints", || {
            serve.get("/healthz").map(|(s, _)| s == 200).unwrap_or(false)
        });
        serve
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path`: status and body, or `None` while nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = http().get(self.url(path)).send().ok()?;
        Some((response.status().as_u16(), response.text().unwrap_or_default()))
    }

    pub fn post(&self, path: &str) -> (u16, Value) {
        let response = http().post(self.url(path)).send().unwrap();
        (response.status().as_u16(), response.json().unwrap())
    }

    pub fn status(&self) -> Value {
        let (code, body) = self.get("/status").expect("serve answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn pipeline(&self, name: &str) -> Option<Value> {
        self.status()["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// The value of one sample in `/metrics` (`name{labels}` exactly as printed).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines with `event` in their fields.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["event"] == event)
            .collect()
    }

    pub fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` over `metrics` (Debian's prometheus package): what it
/// found, empty when nothing.
pub fn promtool_problems(metrics: &str) -> String {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/services start installs it)");
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    if checked.status.success() {
        problems.trim().to_owned()
    } else {
        format!("promtool failed ({}): {problems}", checked.status)
    }
}
