//! The dead-letter file: every record that failed (a template error, a document
//! Elasticsearch rejected) is kept here as one NDJSON line, so nothing is lost.
//!
//! A run replaces the file an earlier run left, but never a file this tool did not
//! write: an existing file is removed or truncated only when its first line is a
//! dead-letter entry ([`check_replaceable`]); any other file (`dead_letter:
//! /etc/hosts`, an empty file, a folder) stops the run before anything is read.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

/// One failed record.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterEntry {
    /// The pipeline's name.
    pub pipeline: String,
    /// Which stage failed it (`transforms[0]`, `sink`).
    pub stage: String,
    /// The index the document was going to, when it was known and valid.
    #[serde(rename = "_index", skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The document id, when one was rendered.
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The Redis key (base64 when not UTF-8, see `key_encoding`).
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_encoding: Option<&'static str>,
    pub database: u32,
    /// Kind of error (`template_error`, `mapper_parsing_exception`, ...).
    pub error_type: String,
    /// What went wrong, for a human.
    pub reason: String,
    /// The document that was rejected (for a failure at the sink: always, so the
    /// line can be replayed as `_index`, `_id` and this body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
    /// The record a template could not render (`key`, `database`, `key_type`, `value`,
    /// `size_in_bytes`, `ttl`), for a failure before any document existed: what the
    /// template saw, to render again once it is fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Value>,
}

/// Failures logged one by one at WARN per dead-letter file; later ones are logged at
/// DEBUG and counted in one line at the end of the run (the file has them all).
pub const LOGGED_FAILURES: u64 = 5;

/// A shared, lazily created dead-letter file. Cloning shares the same file. A run
/// removes the file of an earlier run at its start ([`DeadLetter::remove_previous`]),
/// and creates it again at its first failure: after a clean run there is none. A file
/// at the path that this tool did not write is never removed nor truncated.
///
/// The file is truncated at its first entry in this process only: a second pipeline
/// of the same run naming the same file (each entry names its pipeline) appends to it
/// rather than wiping what the first wrote, in turn or in parallel.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    /// The first write that failed (see [`DeadLetter::write_error`]).
    error: Option<String>,
    /// Entries are counted and logged, never written (`verify` writes nothing).
    discard: bool,
}

/// The dead-letter files this process has created (absolute paths).
static CREATED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

impl DeadLetter {
    /// A dead-letter file at `path`, created (truncated) at the first entry only.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DeadLetter {
            inner: Arc::new(Mutex::new(Inner {
                path: path.into(),
                file: None,
                written: 0,
                error: None,
                discard: false,
            })),
        }
    }

    /// A handle that counts and logs entries but writes no file (`verify`, which
    /// writes nothing anywhere); `path` names the file a real run would write.
    pub fn discarding(path: impl Into<PathBuf>) -> Self {
        let handle = Self::new(path);
        handle.lock().discard = true;
        handle
    }

    /// Where entries go.
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    /// How many entries were written (through this handle and its clones).
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Appends one entry, in one write of its whole line (so lines of pipelines
    /// sharing the file never interleave), and flushes it, so a crash loses nothing
    /// already reported.
    pub fn write(&self, entry: &DeadLetterEntry) -> std::io::Result<()> {
        // The reason may quote a configured value; the document is data, kept as read.
        let mut line = match crate::redact::text(&entry.reason) {
            std::borrow::Cow::Borrowed(_) => serde_json::to_vec(entry)?,
            std::borrow::Cow::Owned(reason) => serde_json::to_vec(&DeadLetterEntry {
                reason,
                ..entry.clone()
            })?,
        };
        line.push(b'\n');
        let mut inner = self.lock();
        let result = Self::write_line(&mut inner, &line);
        if let Err(error) = &result {
            inner.error.get_or_insert_with(|| error.to_string());
        }
        let number = inner.written;
        drop(inner);
        log(entry, number);
        result
    }

    /// Logs, at WARN, how many failures went past the first [`LOGGED_FAILURES`] that
    /// were logged one by one; nothing when there were no more than that.
    pub fn log_the_rest(&self) {
        let (written, path) = {
            let inner = self.lock();
            (inner.written, inner.path.clone())
        };
        if written > LOGGED_FAILURES {
            tracing::warn!(
                "{written} records failed in all ({} more than logged above); every one is in {}",
                written - LOGGED_FAILURES,
                path.display()
            );
        }
    }

    fn write_line(inner: &mut Inner, line: &[u8]) -> std::io::Result<()> {
        if inner.discard {
            inner.written += 1;
            return Ok(());
        }
        if inner.file.is_none() {
            let file = open(&inner.path).map_err(|e| with_path(e, &inner.path))?;
            inner.file = Some(file);
        }
        let file = inner.file.as_mut().expect("file was just opened");
        file.write_all(line)?;
        file.flush()?;
        inner.written += 1;
        Ok(())
    }

    /// Removes the file an earlier run left at this path, so that after this run the
    /// file holds this run's failures and nothing else, and no file means nothing
    /// failed (a monitoring job may test for it). A file this process already wrote
    /// (another handle on the same path) is left alone; a file that is no dead-letter
    /// file of this tool's is an error, and stays as it is ([`check_replaceable`]).
    /// Gives whether a file was removed.
    pub fn remove_previous(&self) -> std::io::Result<bool> {
        let inner = self.lock();
        if inner.file.is_some() || inner.discard {
            return Ok(false);
        }
        let absolute = std::path::absolute(&inner.path)?;
        let created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
        if created.as_ref().is_some_and(|c| c.contains(&absolute)) {
            return Ok(false);
        }
        check_replaceable(&inner.path)
            .map_err(|message| std::io::Error::new(std::io::ErrorKind::AlreadyExists, message))?;
        match std::fs::remove_file(&inner.path) {
            Ok(()) => Ok(true),
            // No file there, or no folder for one (a path under a file: the first
            // failure says it cannot create the file, and stops the run).
            Err(error)
                if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) =>
            {
                Ok(false)
            }
            Err(error) => Err(std::io::Error::new(
                error.kind(),
                format!(
                    "cannot remove the dead-letter file of an earlier run, {}: {error} (it would be taken for this run's \
                     failures; remove it, or set `dead_letter:` to a path this user may write)",
                    inner.path.display()
                ),
            )),
        }
    }

    /// The first write that failed, if any: a stage that cannot return the error
    /// where it happens (a transform, per record) lets the executor stop the run on it,
    /// since a failed record that is in no file is lost.
    pub fn write_error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Logs one failure on one line: the first [`LOGGED_FAILURES`] of a file at WARN, the
/// others at DEBUG (`-vv`).
fn log(entry: &DeadLetterEntry, number: u64) {
    let reason = entry.reason.replace(['\n', '\r'], " ");
    if number <= LOGGED_FAILURES {
        tracing::warn!(
            pipeline = %entry.pipeline,
            stage = %entry.stage,
            key = ?entry.key,
            database = entry.database,
            "{}: {reason}",
            entry.error_type
        );
    } else {
        tracing::debug!(
            pipeline = %entry.pipeline,
            stage = %entry.stage,
            key = ?entry.key,
            database = entry.database,
            "{}: {reason}",
            entry.error_type
        );
    }
}

/// Where a dry run puts its failures: beside `path`, with `.dry-run` before the
/// extension (`users.dead-letter.dry-run.ndjson`), so a dry run never overwrites the
/// dead-letter file of the last real run, the one record of what that run failed to
/// write.
pub fn dry_run_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dry = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => format!("{stem}.dry-run.{extension}"),
        _ => format!("{name}.dry-run"),
    };
    path.with_file_name(dry)
}

/// Opens `path` for appending; truncated first unless this process created it already.
fn open(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let absolute = std::path::absolute(path)?;
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    if created.get_or_insert_with(HashSet::new).insert(absolute.clone()) {
        if let Err(message) = check_replaceable(path) {
            if let Some(created) = created.as_mut() {
                created.remove(&absolute);
            }
            return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, message));
        }
        File::create(path)?;
    }
    OpenOptions::new().append(true).create(true).open(path)
}

/// How much of an existing file's first line is read to tell whether it is a
/// dead-letter file (an entry holds a whole document, which may be large).
const FIRST_LINE_LIMIT: u64 = 64 << 20;

/// The fields every dead-letter entry has, by which a file this tool wrote is known.
const ENTRY_FIELDS: [&str; 6] = ["pipeline", "stage", "key", "database", "error_type", "reason"];

/// Whether a run may remove or overwrite what is at `path`: nothing is there, or a
/// dead-letter file this tool wrote (its first line is a dead-letter entry). The
/// error says what is there and what to do; it is checked before anything runs.
pub fn check_replaceable(path: &Path) -> Result<(), String> {
    match foreign(path) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(format!(
            "the dead-letter file {} was not written by redis-connector ({why}): a run would replace it, so \
             nothing was run and it is left as it is; move it away, or set `dead_letter:` to another path",
            path.display()
        )),
        Err(error) => Err(format!(
            "cannot read {} to tell whether it is a dead-letter file of an earlier run: {error}; move it \
             away, or set `dead_letter:` to another path",
            path.display()
        )),
    }
}

/// Why the file at `path` is no dead-letter file of this tool's; `None` when there is
/// no file (nor folder for one) or it is one.
fn foreign(path: &Path) -> std::io::Result<Option<&'static str>> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error),
    };
    if metadata.is_dir() {
        return Ok(Some("it is a folder"));
    }
    if !metadata.is_file() {
        return Ok(Some("it is not a regular file"));
    }
    if metadata.len() == 0 {
        return Ok(Some("it is empty, and a dead-letter file never is"));
    }
    let mut first = Vec::new();
    std::io::BufReader::new(File::open(path)?.take(FIRST_LINE_LIMIT)).read_until(b'\n', &mut first)?;
    let entry = serde_json::from_slice::<Value>(&first).ok();
    let is_entry = entry
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|fields| ENTRY_FIELDS.iter().all(|name| fields.contains_key(*name)));
    Ok((!is_entry).then_some("its first line is not a dead-letter entry"))
}

fn with_path(error: std::io::Error, path: &Path) -> std::io::Error {
    // A file refused by `check_replaceable` is named by its message already.
    if error.kind() == std::io::ErrorKind::AlreadyExists {
        return error;
    }
    std::io::Error::new(
        error.kind(),
        format!("cannot create dead-letter file {}: {error}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line an earlier run of this tool wrote.
    const EARLIER_ENTRY: &str = "{\"pipeline\":\"p\",\"stage\":\"sink\",\"key\":\"k\",\"database\":0,\
                                 \"error_type\":\"e\",\"reason\":\"an earlier run\"}\n";

    fn entry() -> DeadLetterEntry {
        DeadLetterEntry {
            pipeline: "p".into(),
            stage: "sink".into(),
            index: None,
            id: None,
            key: "k".into(),
            key_encoding: None,
            database: 0,
            error_type: "e".into(),
            reason: "r".into(),
            document: None,
            record: None,
        }
    }

    #[test]
    fn a_file_this_tool_did_not_write_is_neither_removed_nor_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let foreign = b"127.0.0.1 localhost\n::1 localhost\n";
        std::fs::write(&path, foreign).unwrap();
        let error = DeadLetter::new(&path).remove_previous().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the dead-letter file {} was not written by redis-connector (its first line is not a dead-letter \
                 entry): a run would replace it, so nothing was run and it is left as it is; move it away, or set \
                 `dead_letter:` to another path",
                path.display()
            )
        );
        // Nor by a first failure (a handle that did not remove anything first).
        let error = DeadLetter::new(&path).write(&entry()).unwrap_err();
        assert!(error.to_string().starts_with("the dead-letter file"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), foreign, "kept byte for byte");
        // JSON that is not an entry, an empty file and a folder are refused too.
        for (text, why) in [
            ("{\"pipeline\": \"p\"}\n", "its first line is not a dead-letter entry"),
            ("", "it is empty, and a dead-letter file never is"),
        ] {
            std::fs::write(&path, text).unwrap();
            let message = check_replaceable(&path).unwrap_err();
            assert!(message.contains(why), "{message}");
            assert!(DeadLetter::new(&path).remove_previous().is_err());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
        let message = check_replaceable(dir.path()).unwrap_err();
        assert!(message.contains("(it is a folder)"), "{message}");
        assert!(check_replaceable(&dir.path().join("absent")).is_ok());
        assert!(check_replaceable(&path.join("under-a-file")).is_ok());
    }

    #[test]
    fn a_dry_run_writes_beside_the_real_file() {
        assert_eq!(
            dry_run_path(Path::new("users.dead-letter.ndjson")),
            PathBuf::from("users.dead-letter.dry-run.ndjson")
        );
        assert_eq!(
            dry_run_path(Path::new("/var/dl/failed")),
            PathBuf::from("/var/dl/failed.dry-run")
        );
        assert_eq!(
            dry_run_path(Path::new("dl/.hidden")),
            PathBuf::from("dl/.hidden.dry-run")
        );
    }

    #[test]
    fn an_earlier_run_s_file_is_removed_but_not_one_this_process_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        std::fs::write(&path, EARLIER_ENTRY).unwrap();
        let dl = DeadLetter::new(&path);
        assert!(dl.remove_previous().unwrap());
        assert!(!path.exists());
        assert!(!dl.remove_previous().unwrap(), "nothing left to remove");
        let entry = entry();
        dl.write(&entry).unwrap();
        assert!(
            !DeadLetter::new(&path).remove_previous().unwrap(),
            "this process's lines stay"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(!DeadLetter::new(dir.path().join("file/dl.ndjson"))
            .remove_previous()
            .unwrap());
    }

    #[test]
    fn two_handles_on_one_path_in_one_process_append_to_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.ndjson");
        std::fs::write(&path, EARLIER_ENTRY).unwrap();
        let entry = |pipeline: &str| DeadLetterEntry {
            pipeline: pipeline.into(),
            ..entry()
        };
        let first = DeadLetter::new(&path);
        first.write(&entry("a")).unwrap();
        drop(first);
        let second = DeadLetter::new(dir.path().join(".").join("shared.ndjson"));
        second.write(&entry("b")).unwrap();
        assert_eq!(second.written(), 1, "counted per handle");
        let text = std::fs::read_to_string(&path).unwrap();
        let pipelines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["pipeline"].clone())
            .collect();
        assert_eq!(
            pipelines,
            ["a", "b"],
            "the earlier process's line is gone, this one's kept"
        );
    }

    #[test]
    fn entries_are_appended_as_ndjson_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dl.ndjson");
        let dl = DeadLetter::new(&path);
        assert!(!path.exists(), "nothing is created before the first failure");
        let entry = DeadLetterEntry {
            pipeline: "p".into(),
            stage: "sink".into(),
            index: None,
            id: Some("abc".into()),
            key: "k".into(),
            key_encoding: None,
            database: 0,
            error_type: "mapper_parsing_exception".into(),
            reason: "failed to parse".into(),
            document: None,
            record: None,
        };
        dl.clone().write(&entry).unwrap();
        dl.write(&entry).unwrap();
        assert_eq!(dl.written(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["_id"], "abc");
        assert_eq!(lines[0]["error_type"], "mapper_parsing_exception");
    }
}
