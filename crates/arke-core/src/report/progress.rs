//! Progress of long phases, as a trait the front end implements (after rustic_core's
//! `ProgressBars`): the core counts, the front end decides how a count is shown (a bar on a
//! terminal, a log line every 10 s under cron, nothing with `--quiet`). The core never asks
//! whether a human is watching, and carries no terminal code.
//!
//! Tasks are cheap to clone and safe to update from many concurrent fetchers; their counts are
//! kept here, so every front end shows the same numbers ([`Counts::summary`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a task counts, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Items (blocks, entities, events), with bytes shown alongside when reported.
    Items(&'static str),
    /// Bytes.
    Bytes,
}

/// Shows progress: implemented by the front end.
pub trait ProgressSink: Send + Sync + std::fmt::Debug {
    /// A task started; the returned view is told of every change to it.
    fn begin(&self, name: &str, total: Option<u64>, unit: Unit) -> Box<dyn TaskView>;
}

/// How one task is shown. Every method has a default that shows nothing.
pub trait TaskView: Send + Sync + std::fmt::Debug {
    /// The counts moved (called on every increment: keep it cheap).
    fn advance(&self, _counts: &Counts) {}
    /// The expected total is now known or larger.
    fn set_total(&self, _total: u64) {}
    /// A short note to show after the counts.
    fn set_message(&self, _message: &str) {}
    /// The task ended.
    fn finish(&self, _counts: &Counts) {}
}

/// Starts tasks. `Progress::off()` counts without showing anything (library callers, tests).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
}

impl Progress {
    /// Progress shown by `sink`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Progress { sink: Some(sink) }
    }

    /// No output at all.
    pub fn off() -> Self {
        Progress { sink: None }
    }

    /// Starts a task. `total` is the expected count when known (a bar with ETA), else counts
    /// and rate only.
    pub fn task(&self, name: &str, total: Option<u64>, unit: Unit) -> Task {
        let view = self.sink.as_ref().map(|s| s.begin(name, total, unit));
        Task {
            inner: Arc::new(TaskInner {
                counts: Counts {
                    name: name.to_string(),
                    unit,
                    total: AtomicU64::new(total.unwrap_or(0)),
                    has_total: AtomicBool::new(total.is_some()),
                    pos: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    started: Instant::now(),
                    message: Mutex::new(String::new()),
                },
                view,
            }),
        }
    }
}

/// The counts of one task, as every front end shows them.
#[derive(Debug)]
pub struct Counts {
    name: String,
    unit: Unit,
    total: AtomicU64,
    has_total: AtomicBool,
    pos: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    message: Mutex<String>,
}

impl Counts {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// Items (or bytes, for a [`Unit::Bytes`] task) counted so far.
    pub fn position(&self) -> u64 {
        self.pos.load(Ordering::Relaxed)
    }

    /// Bytes counted alongside items.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The expected total, when known.
    pub fn total(&self) -> Option<u64> {
        self.has_total
            .load(Ordering::Relaxed)
            .then(|| self.total.load(Ordering::Relaxed))
    }

    /// Time since the task started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// "12345 blocks of 470000 (2.6%), 1.2 GiB, 1520 blocks/s, 70s elapsed \[note\]".
    pub fn summary(&self) -> String {
        let pos = self.position();
        let secs = self.elapsed().as_secs_f64().max(0.001);
        let mut s = match self.unit {
            Unit::Bytes => human_bytes(pos),
            Unit::Items(noun) => format!("{pos} {noun}"),
        };
        if let Some(t) = self.total().filter(|t| *t > 0) {
            let shown = match self.unit {
                Unit::Bytes => human_bytes(t),
                Unit::Items(_) => t.to_string(),
            };
            s = format!("{s} of {shown} ({:.1}%)", pos as f64 * 100.0 / t as f64);
        }
        let bytes = self.bytes();
        if bytes > 0 && matches!(self.unit, Unit::Items(_)) {
            s.push_str(&format!(", {}", human_bytes(bytes)));
        }
        let rate = pos as f64 / secs;
        match self.unit {
            Unit::Bytes => s.push_str(&format!(", {}/s", human_bytes(rate as u64))),
            Unit::Items(noun) => s.push_str(&format!(", {rate:.0} {noun}/s")),
        }
        s.push_str(&format!(", {secs:.0}s elapsed"));
        if let Ok(m) = self.message.lock()
            && !m.is_empty()
        {
            s.push_str(&format!(" [{m}]"));
        }
        s
    }
}

#[derive(Debug)]
struct TaskInner {
    counts: Counts,
    view: Option<Box<dyn TaskView>>,
}

/// One unit of progress reporting (a phase of a run).
#[derive(Debug, Clone)]
pub struct Task {
    inner: Arc<TaskInner>,
}

impl Task {
    /// Counts `n` more items (or bytes, for a [`Unit::Bytes`] task).
    pub fn inc(&self, n: u64) {
        self.inner.counts.pos.fetch_add(n, Ordering::Relaxed);
        if let Some(v) = &self.inner.view {
            v.advance(&self.inner.counts);
        }
    }

    /// Counts one item of `bytes` bytes (for item tasks that also show volume).
    pub fn inc_item(&self, bytes: u64) {
        self.inner.counts.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.inc(1);
    }

    /// Sets or raises the expected total (walks discover their size as they go).
    pub fn set_total(&self, total: u64) {
        let c = &self.inner.counts;
        c.total.store(total, Ordering::Relaxed);
        c.has_total.store(true, Ordering::Relaxed);
        if let Some(v) = &self.inner.view {
            v.set_total(total);
        }
    }

    /// A short note shown after the counts (current entity, file name, …).
    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        if let Some(v) = &self.inner.view {
            v.set_message(&msg);
        }
        if let Ok(mut m) = self.inner.counts.message.lock() {
            *m = msg;
        }
    }

    pub fn position(&self) -> u64 {
        self.inner.counts.position()
    }

    pub fn bytes(&self) -> u64 {
        self.inner.counts.bytes()
    }

    /// Ends the task (the front end removes its bar or prints a final line).
    pub fn finish(&self) {
        if let Some(v) = &self.inner.view {
            v.finish(&self.inner.counts);
        }
    }

    /// The log-mode line for this task (see [`Counts::summary`]).
    pub fn summary(&self) -> String {
        self.inner.counts.summary()
    }
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (task, final position, total) of every finished task.
    type Finished = Arc<Mutex<Vec<(String, u64, Option<u64>)>>>;

    /// Records what a front end would be told.
    #[derive(Debug, Default)]
    struct Recorder {
        finished: Finished,
    }

    #[derive(Debug)]
    struct View(Finished);

    impl TaskView for View {
        fn finish(&self, c: &Counts) {
            self.0
                .lock()
                .unwrap()
                .push((c.name().to_string(), c.position(), c.total()));
        }
    }

    impl ProgressSink for Recorder {
        fn begin(&self, _: &str, _: Option<u64>, _: Unit) -> Box<dyn TaskView> {
            Box::new(View(self.finished.clone()))
        }
    }

    #[test]
    fn off_mode_counts_without_output() {
        let p = Progress::off();
        let t = p.task("walk", Some(10), Unit::Items("blocks"));
        let t2 = t.clone();
        t.inc_item(100);
        t2.inc_item(50);
        assert_eq!(t.position(), 2);
        assert_eq!(t.bytes(), 150);
        let s = t.summary();
        assert!(s.starts_with("2 blocks of 10 (20.0%), 150 B"), "{s}");
        t.finish();
    }

    #[test]
    fn the_sink_sees_the_final_counts() {
        let rec = Arc::new(Recorder::default());
        let p = Progress::new(rec.clone());
        let t = p.task("import", None, Unit::Bytes);
        t.set_total(4096);
        t.inc(1024);
        t.clone().inc(3072);
        t.finish();
        let got = rec.finished.lock().unwrap().clone();
        assert_eq!(got, vec![("import".to_string(), 4096, Some(4096))]);
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
