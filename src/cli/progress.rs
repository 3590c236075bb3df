//! Progress of running pipelines: a progress bar per pipeline on a terminal
//! (indicatif), periodic log lines elsewhere (cron jobs, Kubernetes, CI logs).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::executor::{Progress, RunCounters};

/// How often a progress bar is refreshed.
const BAR_TICK: Duration = Duration::from_millis(200);
/// How often a progress line is logged off a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress bars on standard error, one per running pipeline.
pub struct BarProgress {
    multi: MultiProgress,
    running: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
}

impl BarProgress {
    /// Bars drawn on `multi`; each bar's refresh task is spawned on `tasks`, for the
    /// caller to await once the pipelines are done.
    pub fn new(multi: MultiProgress, tasks: TaskTracker) -> Self {
        BarProgress {
            multi,
            running: Mutex::new(HashMap::new()),
            tasks,
        }
    }
}

impl Progress for BarProgress {
    fn started(&self, pipeline: &str, live: RunCounters) {
        let bar = self.multi.add(ProgressBar::no_length());
        bar.set_prefix(pipeline.to_owned());
        bar.set_style(spinner_style());
        let stop = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pipeline.to_owned(), stop.clone());
        let multi = self.multi.clone();
        let started = Instant::now();
        self.tasks.spawn(async move {
            let mut has_length = false;
            loop {
                let total = live.estimated_total();
                if total > 0 && !has_length {
                    bar.set_length(total);
                    bar.set_style(bar_style());
                    has_length = true;
                }
                let read = live.read();
                bar.set_position(if has_length { read.min(total) } else { read });
                let unchanged = match live.unchanged() {
                    0 => String::new(),
                    n => format!(", {n} unchanged"),
                };
                bar.set_message(format!(
                    "{} written{unchanged}, {:.0} docs/s",
                    live.written(),
                    rate(live.written(), started)
                ));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(BAR_TICK) => {}
                }
            }
            bar.finish_and_clear();
            multi.remove(&bar);
        });
    }

    fn finished(&self, pipeline: &str) {
        if let Some(stop) = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(pipeline) {
            stop.cancel();
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {pos} keys read, {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: [{bar:30}] {pos}/{len} keys, ETA {eta}, {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Progress as log lines (target `redis_connector::progress`), every few seconds.
pub struct LogProgress {
    running: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
}

impl LogProgress {
    /// Log lines from a task per pipeline spawned on `tasks`, for the caller to await
    /// once the pipelines are done.
    pub fn new(tasks: TaskTracker) -> Self {
        LogProgress {
            running: Mutex::new(HashMap::new()),
            tasks,
        }
    }
}

impl Progress for LogProgress {
    fn started(&self, pipeline: &str, live: RunCounters) {
        let stop = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pipeline.to_owned(), stop.clone());
        let pipeline = pipeline.to_owned();
        let started = Instant::now();
        tracing::info!(target: "redis_connector::progress", pipeline = %pipeline, "started");
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(LOG_EVERY) => {}
                }
                let (read, written, total) = (live.read(), live.written(), live.estimated_total());
                let unchanged = live.unchanged();
                let of_total = if total > 0 {
                    format!(" of ~{total}")
                } else {
                    String::new()
                };
                tracing::info!(
                    target: "redis_connector::progress",
                    pipeline = %pipeline, read, written, unchanged, estimated_total = total,
                    "{read}{of_total} keys read, {written} written, {unchanged} unchanged, {:.0} docs/s",
                    rate(written, started)
                );
            }
        });
    }

    fn finished(&self, pipeline: &str) {
        if let Some(stop) = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(pipeline) {
            stop.cancel();
        }
    }
}

fn rate(count: u64, since: Instant) -> f64 {
    let seconds = since.elapsed().as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// A log writer that hides the progress bars while a line is written, so log lines
/// and bars do not garble each other.
#[derive(Clone)]
pub struct BarAwareStderr {
    multi: Option<MultiProgress>,
}

impl BarAwareStderr {
    pub fn new(multi: Option<MultiProgress>) -> Self {
        BarAwareStderr { multi }
    }
}

impl Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.multi {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarAwareStderr {
    type Writer = BarAwareStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A multi-progress drawing on standard error.
pub fn terminal_bars() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
}
