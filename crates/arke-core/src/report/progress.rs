//! Progress for long walks, in three modes:
//!
//! - [`ProgressMode::Bar`]: an indicatif bar on stderr, when stderr is a terminal.
//! - [`ProgressMode::Log`]: a `tracing` info line every `interval` (default 10 s), when stderr is
//!   not a terminal (cron, `docker exec` without `-t`). indicatif alone would print nothing there,
//!   and a silent hour-long export looks exactly like a hung one.
//! - [`ProgressMode::Off`]: nothing (`--no-progress` / `ARKE_NO_PROGRESS`).
//!
//! Tasks are cheap to clone and safe to update from many concurrent fetchers.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Default interval between log lines in [`ProgressMode::Log`].
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bar,
    Log { interval: Duration },
    Off,
}

impl ProgressMode {
    /// Off when asked; a bar when stderr is a terminal (and `TERM` is not `dumb`); log lines
    /// otherwise.
    pub fn detect(no_progress: bool) -> ProgressMode {
        if no_progress {
            return ProgressMode::Off;
        }
        let dumb = std::env::var("TERM").map(|t| t == "dumb").unwrap_or(false);
        if std::io::stderr().is_terminal() && !dumb {
            ProgressMode::Bar
        } else {
            ProgressMode::Log {
                interval: DEFAULT_LOG_INTERVAL,
            }
        }
    }
}

/// What a task counts, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Items (blocks, entities, events), with bytes shown alongside when reported.
    Items(&'static str),
    /// Bytes.
    Bytes,
}

/// The one `MultiProgress` of the process, so log lines can be printed above the bars without
/// tearing them (see [`suspend`]).
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Runs `f` (typically: write one log line to stderr) with the bars hidden, then redraws them.
/// The front end's log writer goes through this.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match multi_if_used() {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

static BARS_USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn multi_if_used() -> Option<&'static MultiProgress> {
    BARS_USED.load(Ordering::Relaxed).then(multi)
}

/// Factory for tasks in one mode.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: ProgressMode,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        Progress { mode }
    }

    /// No output at all (library callers, tests).
    pub fn off() -> Self {
        Progress {
            mode: ProgressMode::Off,
        }
    }

    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    /// Starts a task. `total` is the expected count when known (a bar with ETA), else a spinner
    /// with counts and rate.
    pub fn task(&self, name: &str, total: Option<u64>, unit: Unit) -> Task {
        let bar = match self.mode {
            ProgressMode::Bar => {
                BARS_USED.store(true, Ordering::Relaxed);
                let bar = match total {
                    Some(t) => ProgressBar::new(t),
                    None => ProgressBar::new_spinner(),
                };
                bar.set_style(style(total.is_some(), unit));
                bar.set_prefix(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                Some(multi().add(bar))
            }
            _ => None,
        };
        let interval = match self.mode {
            ProgressMode::Log { interval } => Some(interval),
            _ => None,
        };
        Task {
            inner: Arc::new(TaskInner {
                name: name.to_string(),
                unit,
                total: AtomicU64::new(total.unwrap_or(0)),
                has_total: std::sync::atomic::AtomicBool::new(total.is_some()),
                pos: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                started: Instant::now(),
                last_log_ms: AtomicU64::new(0),
                interval,
                bar,
                message: Mutex::new(String::new()),
            }),
        }
    }
}

fn style(with_total: bool, unit: Unit) -> ProgressStyle {
    let tpl = match (with_total, unit) {
        (true, Unit::Bytes) => {
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}"
        }
        (false, Unit::Bytes) => "{prefix:>12} {spinner} {bytes} {bytes_per_sec} {elapsed} {msg}",
        (true, Unit::Items(_)) => "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        (false, Unit::Items(_)) => "{prefix:>12} {spinner} {pos} {per_sec} {elapsed} {msg}",
    };
    ProgressStyle::with_template(tpl)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[derive(Debug)]
struct TaskInner {
    name: String,
    unit: Unit,
    total: AtomicU64,
    has_total: std::sync::atomic::AtomicBool,
    pos: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last_log_ms: AtomicU64,
    interval: Option<Duration>,
    bar: Option<ProgressBar>,
    message: Mutex<String>,
}

/// One unit of progress reporting (a phase of a run).
#[derive(Debug, Clone)]
pub struct Task {
    inner: Arc<TaskInner>,
}

impl Task {
    /// Counts `n` more items (or bytes, for a [`Unit::Bytes`] task).
    pub fn inc(&self, n: u64) {
        self.inner.pos.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.inc(n);
        }
        self.maybe_log();
    }

    /// Counts one item of `bytes` bytes (for item tasks that also show volume).
    pub fn inc_item(&self, bytes: u64) {
        self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.inc(1);
    }

    /// Sets or raises the expected total (walks discover their size as they go).
    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
        self.inner.has_total.store(true, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.set_length(total);
        }
    }

    /// A short note shown after the counts (current entity, file name, …).
    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        if let Some(bar) = &self.inner.bar {
            bar.set_message(msg.clone());
        }
        if let Ok(mut m) = self.inner.message.lock() {
            *m = msg;
        }
    }

    pub fn position(&self) -> u64 {
        self.inner.pos.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Ends the task: removes the bar, and in log mode prints a final line.
    pub fn finish(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
            multi().remove(bar);
        }
        if self.inner.interval.is_some() {
            tracing::info!("{} done: {}", self.inner.name, self.summary());
        }
    }

    /// "12345/470000 blocks (2.6%), 1.2 GiB, 1520 blocks/s, 1m 10s" — the log-mode line.
    pub fn summary(&self) -> String {
        let i = &self.inner;
        let pos = i.pos.load(Ordering::Relaxed);
        let secs = i.started.elapsed().as_secs_f64().max(0.001);
        let total = i
            .has_total
            .load(Ordering::Relaxed)
            .then(|| i.total.load(Ordering::Relaxed));
        let mut s = match i.unit {
            Unit::Bytes => human_bytes(pos),
            Unit::Items(noun) => format!("{pos} {noun}"),
        };
        if let Some(t) = total.filter(|t| *t > 0) {
            let shown = match i.unit {
                Unit::Bytes => human_bytes(t),
                Unit::Items(_) => t.to_string(),
            };
            s = format!("{s} of {shown} ({:.1}%)", pos as f64 * 100.0 / t as f64);
        }
        let bytes = i.bytes.load(Ordering::Relaxed);
        if bytes > 0 && matches!(i.unit, Unit::Items(_)) {
            s.push_str(&format!(", {}", human_bytes(bytes)));
        }
        let rate = pos as f64 / secs;
        match i.unit {
            Unit::Bytes => s.push_str(&format!(", {}/s", human_bytes(rate as u64))),
            Unit::Items(noun) => s.push_str(&format!(", {rate:.0} {noun}/s")),
        }
        s.push_str(&format!(", {:.0}s elapsed", secs));
        if let Ok(m) = i.message.lock()
            && !m.is_empty()
        {
            s.push_str(&format!(" [{m}]"));
        }
        s
    }

    fn maybe_log(&self) {
        let Some(interval) = self.inner.interval else {
            return;
        };
        let now_ms = self.inner.started.elapsed().as_millis() as u64;
        let last = self.inner.last_log_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < interval.as_millis() as u64 {
            return;
        }
        // One thread wins the right to log this interval.
        if self
            .inner
            .last_log_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!("{}: {}", self.inner.name, self.summary());
        }
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
    fn log_mode_rate_limits() {
        let p = Progress::new(ProgressMode::Log {
            interval: Duration::from_secs(3600),
        });
        let t = p.task("x", None, Unit::Bytes);
        for _ in 0..1000 {
            t.inc(1024);
        }
        // The first line may be emitted at most once per interval: the stamp did not move past 0
        // more than once within this test.
        assert!(t.inner.last_log_ms.load(Ordering::Relaxed) < 3_600_000);
        assert_eq!(t.position(), 1024 * 1000);
        assert!(t.summary().starts_with("1000.0 KiB"), "{}", t.summary());
    }

    #[test]
    fn detect_honours_no_progress() {
        assert_eq!(ProgressMode::detect(true), ProgressMode::Off);
        // Under `cargo test` stderr is captured, not a terminal.
        assert!(matches!(
            ProgressMode::detect(false),
            ProgressMode::Log { .. } | ProgressMode::Bar
        ));
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
