//! Watching the paths `serve` was given (crate `notify`: inotify, or polling for
//! volumes where inotify sees nothing, such as network file systems). Every change
//! that could alter the set of pipeline files is reported on a channel; the caller
//! debounces and reloads, then calls [`Watcher::rewatch`], because what a path
//! points to may have moved:
//!
//! - a Kubernetes ConfigMap or Secret volume swaps its `..data` symlink atomically:
//!   the folder itself is watched recursively, so the swap is an event in it;
//! - git-sync moves its worktree symlink (`/git/current` -> `.worktrees/<sha>`):
//!   for every path given, the folder holding each symlink on the way to it is
//!   watched too, so the move is seen, and the watches are set again on the new
//!   target after the reload.
//!
//! A watch can die: the folder unreadable for a moment (no watch can be set on it),
//! removed, or the watcher reporting an error. [`Watcher::is_up`] says so, and the
//! caller calls [`Watcher::rewatch`] again every [`RETRY`] until it succeeds (then
//! reloads: changes made meanwhile were not seen), and on SIGHUP.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How often a dead watch is set again.
pub const RETRY: Duration = Duration::from_secs(1);

/// How the paths are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// The kernel's notifications (inotify).
    Native,
    /// Scanning the paths every interval.
    Poll(Duration),
    /// Not at all (SIGHUP still reloads).
    Off,
}

/// The watches on the paths; dropping it stops them.
pub struct Watcher {
    mode: WatchMode,
    paths: Vec<PathBuf>,
    events: mpsc::UnboundedSender<()>,
    inner: Option<Box<dyn notify::Watcher + Send>>,
    /// What the last [`Watcher::rewatch`] could not watch.
    problems: Vec<String>,
    /// Set when the watcher reported an error since the last [`Watcher::rewatch`].
    failed: Arc<AtomicBool>,
}

impl Watcher {
    /// A watcher of `paths` (not started: call [`Watcher::rewatch`]) and the channel
    /// its changes arrive on.
    pub fn new(mode: WatchMode, paths: Vec<PathBuf>) -> (Self, mpsc::UnboundedReceiver<()>) {
        let (events, receiver) = mpsc::unbounded_channel();
        (
            Watcher {
                mode,
                paths,
                events,
                inner: None,
                problems: Vec::new(),
                failed: Arc::new(AtomicBool::new(false)),
            },
            receiver,
        )
    }

    /// Whether every path is watched and the watcher reported no error since
    /// (always, with [`WatchMode::Off`]).
    pub fn is_up(&self) -> bool {
        self.mode == WatchMode::Off
            || (self.inner.is_some() && self.problems.is_empty() && !self.failed.load(Ordering::Relaxed))
    }

    /// What is not watched now, with why (empty while [`Watcher::is_up`]).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.problems.clone();
        if self.failed.load(Ordering::Relaxed) {
            problems.push("the watcher reported an error: set again".to_owned());
        }
        problems
    }

    /// Sets the watches again on what the paths point to now. Returns the paths that
    /// could not be watched, with why (the others are watched).
    pub fn rewatch(&mut self) -> Vec<String> {
        self.problems = self.watch_now();
        self.problems.clone()
    }

    fn watch_now(&mut self) -> Vec<String> {
        self.inner = None;
        self.failed.store(false, Ordering::Relaxed);
        let failed = self.failed.clone();
        let events = self.events.clone();
        let targets = targets(&self.paths);
        let named: Vec<PathBuf> = self
            .paths
            .iter()
            .chain(symlinks_on_the_way(&self.paths).iter())
            .cloned()
            .collect();
        let handler = move |event: notify::Result<Event>| {
            if event.is_err() {
                // The watch may be gone (inotify's queue overflowed, a folder vanished):
                // the caller sets it again.
                failed.store(true, Ordering::Relaxed);
            }
            if event.as_ref().map_or(true, |event| matters(event, &named)) {
                let _ = events.send(());
            }
        };
        let watcher: notify::Result<Box<dyn notify::Watcher + Send>> = match self.mode {
            WatchMode::Off => return Vec::new(),
            WatchMode::Native => notify::RecommendedWatcher::new(handler, notify::Config::default())
                .map(|w| Box::new(w) as Box<dyn notify::Watcher + Send>),
            WatchMode::Poll(interval) => notify::PollWatcher::new(
                handler,
                notify::Config::default()
                    .with_poll_interval(interval)
                    .with_compare_contents(true),
            )
            .map(|w| Box::new(w) as Box<dyn notify::Watcher + Send>),
        };
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => return vec![format!("cannot start watching: {error}")],
        };
        let mut problems = missing(&self.paths);
        for (path, mode) in targets {
            if let Err(error) = watcher.watch(&path, mode) {
                problems.push(format!("{}: {error}", path.display()));
            }
        }
        self.inner = Some(watcher);
        problems
    }
}

/// The paths whose folder does not exist: nothing there can be watched until it
/// appears (a missing file or folder whose parent exists is watched through the
/// parent).
fn missing(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|path| {
            let fixed = fixed_prefix(path);
            let watched_through = if fixed == *path { parent_of(path) } else { Some(fixed) };
            match watched_through {
                Some(folder) if !folder.is_dir() => Some(format!(
                    "{}: no such folder (watched again once it appears)",
                    folder.display()
                )),
                _ => None,
            }
        })
        .collect()
}

/// Whether an event can change the pipeline files: not reading them (`serve`'s own
/// reload opens every file), and not a file of another kind in a watched folder (a
/// log, a dead-letter or NDJSON output written beside the pipelines).
fn matters(event: &Event, named: &[PathBuf]) -> bool {
    let kind = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind && (event.paths.is_empty() || event.paths.iter().any(|path| may_hold_pipelines(path, named)))
}

/// A pipeline file, a folder or symlink that may lead to some (no extension, or
/// Kubernetes' `..data` and `..2024_01_01_...` entries), or a path given.
fn may_hold_pipelines(path: &Path, named: &[PathBuf]) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    matches!(path.extension().and_then(|e| e.to_str()), None | Some("yaml" | "yml"))
        || name.starts_with("..")
        || path.is_dir()
        || named.iter().any(|n| n == path || n.file_name() == path.file_name())
}

/// The symlinks on the way to each path (`/git/current` for `/git/current/pipelines`).
fn symlinks_on_the_way(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for path in paths {
        let mut on_the_way = PathBuf::new();
        for component in fixed_prefix(path).components() {
            on_the_way.push(component);
            if std::fs::symlink_metadata(&on_the_way).is_ok_and(|m| m.file_type().is_symlink()) {
                found.push(on_the_way.clone());
            }
        }
    }
    found
}

/// What to watch for `paths`: a folder recursively, a file's folder (editors and
/// `kubectl cp` replace a file by renaming another over it), a pattern's fixed
/// leading folder recursively, and the folder of every symlink on the way to each.
pub fn targets(paths: &[PathBuf]) -> Vec<(PathBuf, RecursiveMode)> {
    let mut targets: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let mut add = |path: PathBuf, mode: RecursiveMode| {
        if !targets.iter().any(|(p, m)| *p == path && *m == mode) {
            targets.push((path, mode));
        }
    };
    for path in paths {
        let fixed = fixed_prefix(path);
        if fixed != *path || path.is_dir() {
            if fixed.is_dir() {
                add(fixed.clone(), RecursiveMode::Recursive);
            }
        } else if let Some(parent) = parent_of(path) {
            add(parent, RecursiveMode::NonRecursive);
        }
        for symlink in symlinks_on_the_way(std::slice::from_ref(path)) {
            if let Some(parent) = parent_of(&symlink) {
                add(parent, RecursiveMode::NonRecursive);
            }
        }
    }
    targets
}

/// The folder holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(parent) => Some(parent.to_path_buf()),
        None => None,
    }
}

/// The leading components of `path` without a glob character.
fn fixed_prefix(path: &Path) -> PathBuf {
    let mut fixed = PathBuf::new();
    for component in path.components() {
        if let Component::Normal(part) = component {
            if part.to_string_lossy().contains(['*', '?', '[']) {
                break;
            }
        }
        fixed.push(component);
    }
    if fixed.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        fixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_files_patterns_and_symlinks_on_the_way_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("worktrees/abc/pipelines")).unwrap();
        std::fs::write(root.join("worktrees/abc/pipelines/a.yaml"), "").unwrap();
        std::os::unix::fs::symlink(root.join("worktrees/abc"), root.join("current")).unwrap();

        let folder = root.join("current/pipelines");
        let found = targets(std::slice::from_ref(&folder));
        assert_eq!(
            found,
            vec![
                (folder.clone(), RecursiveMode::Recursive),
                (root.to_path_buf(), RecursiveMode::NonRecursive)
            ]
        );

        let file = root.join("worktrees/abc/pipelines/a.yaml");
        assert_eq!(
            targets(std::slice::from_ref(&file)),
            vec![(root.join("worktrees/abc/pipelines"), RecursiveMode::NonRecursive)]
        );

        let pattern = root.join("current/pipelines/*.yaml");
        assert_eq!(targets(&[pattern])[0], (folder, RecursiveMode::Recursive));
    }

    #[test]
    fn reading_a_file_or_writing_a_log_beside_it_is_not_a_change() {
        let named = [PathBuf::from("/p/users.yaml"), PathBuf::from("/git/current")];
        let event = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        let write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let create = EventKind::Create(notify::event::CreateKind::Any);
        assert!(!matters(
            &event(EventKind::Access(AccessKind::Open(AccessMode::Any)), "/p/a.yaml"),
            &named
        ));
        assert!(!matters(
            &event(EventKind::Access(AccessKind::Close(AccessMode::Read)), "/p/a.yaml"),
            &named
        ));
        assert!(matters(&event(write, "/p/a.yaml"), &named));
        assert!(matters(&event(create, "/p/b.yml"), &named));
        assert!(!matters(&event(write, "/p/serve.log"), &named));
        assert!(!matters(&event(write, "/p/users.dead-letter.ndjson"), &named));
        assert!(matters(&event(create, "/p/..data"), &named));
        assert!(matters(&event(create, "/p/..2026_12_07_10_00_00.123"), &named));
        assert!(matters(&event(create, "/git/current"), &named));
        assert!(matters(&event(create, "/git/.worktrees/0a1b2c"), &named));
        assert!(matters(&Event::new(create), &named));
    }
}
