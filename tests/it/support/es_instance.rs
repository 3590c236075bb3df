//! An extra Elasticsearch node started by `scripts/services es-instance` for one
//! test (its own port, data and settings), stopped when dropped.

use std::path::PathBuf;
use std::process::Command;

use super::repo_root;

/// `scripts/services`.
pub fn services() -> PathBuf {
    repo_root().join("scripts/services")
}

/// An extra Elasticsearch node of `scripts/services`, stopped when dropped.
pub struct EsInstance {
    pub name: String,
    pub port: u16,
}

impl EsInstance {
    /// Starts (or keeps) node `name` on `port` with `settings` (`k=v`) and `env`.
    pub fn start(name: &str, port: u16, settings: &[&str], env: &[(&str, &str)]) -> EsInstance {
        let mut command = Command::new(services());
        command.args(["es-instance", name, &port.to_string()]);
        for setting in settings {
            command.args(["-E", setting]);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().expect("scripts/services");
        assert!(
            out.status.success(),
            "scripts/services es-instance {name} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        EsInstance {
            name: name.to_owned(),
            port,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (it may be started again with [`EsInstance::start`]).
    pub fn stop(&self) {
        let out = Command::new(services())
            .args(["es-instance-stop", &self.name])
            .output()
            .expect("scripts/services");
        assert!(
            out.status.success(),
            "es-instance-stop {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for EsInstance {
    fn drop(&mut self) {
        let _ = Command::new(services()).args(["es-instance-stop", &self.name]).output();
    }
}
