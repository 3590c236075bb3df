//! How `alias list` and `alias status` show what was built behind aliases: text for
//! a person (one line per index, the serving one marked `*`), or the same fields as
//! JSON with `--format json`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::stages::sink::elasticsearch::alias::{AliasInventory, BuiltIndex};

/// `alias list`: what one cluster holds behind aliases.
#[derive(Debug, Serialize)]
pub struct Cluster {
    /// The node URLs, as the pipeline files give them (passwords masked).
    pub cluster: String,
    pub aliases: Vec<AliasInventory>,
}

/// `alias status`: one pipeline's alias.
#[derive(Debug, Serialize)]
pub struct Status {
    pub pipeline: String,
    pub file: PathBuf,
    pub cluster: String,
    pub alias: String,
    /// The index the alias points to now, if any.
    pub serving: Option<String>,
    /// The index built for the pipeline file as it is now (it may not exist yet).
    pub for_the_file: String,
    /// What a run would do now, as `run --dry-run` says it.
    pub a_run_would: String,
    /// The indices the pipeline built for the alias, oldest first.
    pub indices: Vec<BuiltIndex>,
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.aliases.is_empty() {
            return write!(f, "{}: no alias built by redis-connector", self.cluster);
        }
        write!(f, "{}:", self.cluster)?;
        for entry in &self.aliases {
            let serving = entry.serving.as_deref().unwrap_or("no index built by this pipeline");
            write!(
                f,
                "\nalias {} (pipeline {}): serves {serving}",
                entry.alias, entry.pipeline
            )?;
            for index in &entry.indices {
                write!(f, "\n{}", index_line(index))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {} ({}): alias {} on {}",
            self.pipeline,
            self.file.display(),
            self.alias,
            self.cluster
        )?;
        writeln!(
            f,
            "  serves: {}",
            self.serving.as_deref().unwrap_or("no index (the alias does not exist)")
        )?;
        let built = self.indices.iter().find(|i| i.name == self.for_the_file);
        let state = match built {
            Some(index) if index.serving => "serving",
            Some(index) if index.complete => "built, not serving",
            Some(_) => "a build that did not finish",
            None => "not built yet",
        };
        writeln!(f, "  index for the file as it is: {} ({state})", self.for_the_file)?;
        writeln!(f, "  a run would: {}", self.a_run_would)?;
        if self.indices.is_empty() {
            write!(f, "  built: none")
        } else {
            write!(f, "  built (oldest first, * serves):")?;
            for index in &self.indices {
                write!(f, "\n{}", index_line(index))?;
            }
            Ok(())
        }
    }
}

/// `  * users-0cdb5bcc  complete  2000 documents  1.2 MB  2026-12-07 23:01:02 UTC  fingerprint 0cdb...`
fn index_line(index: &BuiltIndex) -> String {
    format!(
        "  {} {}  {}  {} documents  {}  built {}  fingerprint {}",
        if index.serving { "*" } else { " " },
        index.name,
        if index.complete { "complete" } else { "unfinished" },
        index.documents,
        size(index.size_bytes),
        created(index.created_ms),
        index.fingerprint.as_deref().unwrap_or("none recorded")
    )
}

/// Bytes in the largest unit that keeps a number from 1 up (`1.2 MB`, `830 B`).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// A creation time in milliseconds, as `2026-12-07 23:01:02 UTC`.
fn created(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "at an unknown time".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, serving: bool, complete: bool) -> BuiltIndex {
        BuiltIndex {
            name: name.into(),
            serving,
            complete,
            created_ms: 1_796_684_462_000,
            fingerprint: Some("0cdb5bcc12345678".into()),
            documents: 2000,
            size_bytes: 1_234_567,
        }
    }

    #[test]
    fn sizes_and_times_read_as_a_person_writes_them() {
        assert_eq!(size(830), "830 B");
        assert_eq!(size(1_234_567), "1.2 MB");
        assert_eq!(size(5_000_000_000), "5.0 GB");
        assert_eq!(created(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn a_list_marks_the_serving_index_and_says_when_there_is_nothing() {
        let cluster = Cluster {
            cluster: "http://es:9200".into(),
            aliases: vec![AliasInventory {
                alias: "users".into(),
                pipeline: "users".into(),
                serving: Some("users-0cdb5bcc".into()),
                indices: vec![
                    index("users-0ff2ac5b", false, true),
                    index("users-0cdb5bcc", true, true),
                ],
            }],
        };
        let text = cluster.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "http://es:9200:");
        assert_eq!(lines[1], "alias users (pipeline users): serves users-0cdb5bcc");
        assert!(
            lines[2].starts_with("    users-0ff2ac5b  complete  2000 documents  1.2 MB  built "),
            "{text}"
        );
        assert!(lines[3].starts_with("  * users-0cdb5bcc  complete"), "{text}");
        assert!(lines[3].ends_with("fingerprint 0cdb5bcc12345678"), "{text}");
        let empty = Cluster {
            cluster: "http://es:9200".into(),
            aliases: Vec::new(),
        };
        assert_eq!(empty.to_string(), "http://es:9200: no alias built by redis-connector");
    }
}
