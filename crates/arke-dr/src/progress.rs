//! How the binaries show the core's progress ([`arke_core::ProgressSink`]):
//!
//! - a bar (indicatif) on stderr when stderr is a terminal;
//! - a `tracing` info line every 10 s otherwise (cron, `docker exec` without `-t`): indicatif
//!   alone would print nothing there, and a silent hour-long export looks exactly like a hung one;
//! - nothing with `--no-progress` / `ARKE_NO_PROGRESS`, or with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arke_core::{Counts, Progress, ProgressSink, TaskView, Unit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Interval between log lines when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

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
    pub fn detect(off: bool) -> ProgressMode {
        if off {
            return ProgressMode::Off;
        }
        let dumb = std::env::var("TERM").map(|t| t == "dumb").unwrap_or(false);
        if std::io::stderr().is_terminal() && !dumb {
            ProgressMode::Bar
        } else {
            ProgressMode::Log {
                interval: LOG_INTERVAL,
            }
        }
    }

    /// The core's progress, shown this way.
    pub fn progress(self) -> Progress {
        match self {
            ProgressMode::Off => Progress::off(),
            ProgressMode::Bar => Progress::new(Arc::new(Bars)),
            ProgressMode::Log { interval } => Progress::new(Arc::new(LogLines::new(interval))),
        }
    }
}

/// The one `MultiProgress` of the process, so log lines can be printed above the bars without
/// tearing them (see [`suspend`]).
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

static BARS_USED: AtomicBool = AtomicBool::new(false);

/// Runs `f` (typically: write one log line to stderr) with the bars hidden, then redraws them.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    if BARS_USED.load(Ordering::Relaxed) {
        multi().suspend(f)
    } else {
        f()
    }
}

#[derive(Debug)]
struct Bars;

impl ProgressSink for Bars {
    fn begin(&self, name: &str, total: Option<u64>, unit: Unit) -> Box<dyn TaskView> {
        BARS_USED.store(true, Ordering::Relaxed);
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(style(total.is_some(), unit));
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Box::new(BarView(multi().add(bar)))
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
struct BarView(ProgressBar);

impl TaskView for BarView {
    fn advance(&self, c: &Counts) {
        self.0.set_position(c.position());
    }
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
    fn finish(&self, _: &Counts) {
        self.0.finish_and_clear();
        multi().remove(&self.0);
    }
}

#[derive(Debug)]
struct LogLines {
    interval: Duration,
    /// Lines written while tasks ran (final lines not counted), shared with the views.
    lines: Arc<AtomicU64>,
}

impl LogLines {
    fn new(interval: Duration) -> Self {
        LogLines {
            interval,
            lines: Arc::default(),
        }
    }
}

impl ProgressSink for LogLines {
    fn begin(&self, _: &str, _: Option<u64>, _: Unit) -> Box<dyn TaskView> {
        Box::new(LogView {
            interval: self.interval,
            last_ms: AtomicU64::new(0),
            lines: self.lines.clone(),
        })
    }
}

/// At most one line per interval while the task runs, and a final line.
#[derive(Debug)]
struct LogView {
    interval: Duration,
    /// Milliseconds since the task started at which the last line was written.
    last_ms: AtomicU64,
    lines: Arc<AtomicU64>,
}

impl LogView {
    /// Whether a line is due now; exactly one caller wins each interval.
    fn due(&self, c: &Counts) -> bool {
        let now = c.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= self.interval.as_millis() as u64
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl TaskView for LogView {
    fn advance(&self, c: &Counts) {
        if self.due(c) {
            self.lines.fetch_add(1, Ordering::Relaxed);
            tracing::info!("{}: {}", c.name(), c.summary());
        }
    }
    fn finish(&self, c: &Counts) {
        tracing::info!("{} done: {}", c.name(), c.summary());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_rate_limited() {
        let sink = Arc::new(LogLines::new(Duration::from_millis(300)));
        let task = Progress::new(sink.clone()).task("walk", None, Unit::Items("blocks"));
        let lines = || sink.lines.load(Ordering::Relaxed);
        for _ in 0..1000 {
            task.inc(1);
        }
        assert_eq!(lines(), 0, "no line before one interval has passed");
        std::thread::sleep(Duration::from_millis(350));
        for _ in 0..1000 {
            task.inc(1);
        }
        assert_eq!(lines(), 1, "one line per interval, however many updates");
        assert_eq!(task.position(), 2000);
        task.finish();
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
}
