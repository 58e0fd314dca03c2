//! One run of a job: its steps timed, logged and recorded, then its [`RunRecord`].
//!
//! Every step logs `step <name>: start`, then `step <name>: ok (12s)` or
//! `step <name>: FAILED with exit <n> (12s): <why>`, the lines the shell jobs wrote, so log
//! searches and alerts keep working.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arke_core::{Error, Exit, Outcome};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::runs::{DiskRecord, RunRecord, RunStatus, StepRecord, StepStatus};

/// What a step that ran to its end produced.
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    /// Completed, but damaged items were skipped (exit 7 for the run).
    pub skipped_items: bool,
    /// One line for the log and the record.
    pub detail: String,
}

impl<T> Done<T> {
    pub fn ok(value: T, detail: impl Into<String>) -> Done<T> {
        Done {
            value,
            skipped_items: false,
            detail: detail.into(),
        }
    }

    /// A step whose core report decides the outcome ([`Outcome`]): skipped items make the run
    /// 7. A partial result is the caller's failure to return before this.
    pub fn of(value: T, report: &impl Outcome, detail: impl Into<String>) -> Done<T> {
        Done {
            value,
            skipped_items: report.exit() == Exit::Skipped,
            detail: detail.into(),
        }
    }
}

impl<T: Outcome> Done<T> {
    /// [`Done::of`] a step whose value is its report.
    pub fn report(report: T, detail: impl Into<String>) -> Done<T> {
        Done {
            skipped_items: report.exit() == Exit::Skipped,
            value: report,
            detail: detail.into(),
        }
    }
}

/// A job run in progress.
#[derive(Debug)]
pub struct Job {
    pub name: &'static str,
    started: DateTime<Utc>,
    t0: Instant,
    steps: Vec<StepRecord>,
    skipped_items: bool,
    log_file: PathBuf,
}

/// The run so far: 7 once a step skipped damaged items (a failure ends the run instead).
impl Outcome for Job {
    fn skipped(&self) -> u64 {
        u64::from(self.skipped_items)
    }
}

impl Job {
    pub fn start(name: &'static str, log_file: &Path) -> Job {
        Job {
            name,
            started: Utc::now(),
            t0: Instant::now(),
            steps: Vec::new(),
            skipped_items: false,
            log_file: log_file.to_path_buf(),
        }
    }

    /// Runs one step, logging and recording it. A failure is returned for the caller to stop
    /// on (`?`), already logged.
    pub async fn step<T, F>(&mut self, name: &str, what: &str, f: F) -> Result<T, Error>
    where
        F: Future<Output = Result<Done<T>, Error>>,
    {
        let started = Utc::now();
        let t = Instant::now();
        tracing::info!("step {name}: start: {what}");
        let outcome = f.await;
        let secs = t.elapsed().as_secs_f64();
        let (status, exit, detail) = match &outcome {
            Ok(d) if d.skipped_items => (StepStatus::OkWithSkipped, Exit::Skipped, &d.detail),
            Ok(d) => (StepStatus::Ok, Exit::Ok, &d.detail),
            Err(e) => (StepStatus::Failed, e.exit(), &e.line()),
        };
        match status {
            StepStatus::Failed => tracing::error!(
                "step {name}: FAILED with exit {} ({secs:.0}s): {detail}",
                exit.code()
            ),
            StepStatus::OkWithSkipped => tracing::warn!(
                "step {name}: ok, damaged items skipped (exit 7; named above) ({secs:.0}s): {detail}"
            ),
            _ => tracing::info!("step {name}: ok ({secs:.0}s): {detail}"),
        }
        self.steps.push(StepRecord {
            name: name.to_string(),
            status,
            exit: exit.code(),
            started: rfc3339(started),
            duration_secs: round(secs),
            detail: (!detail.is_empty()).then(|| detail.clone()),
        });
        let done = outcome?;
        self.skipped_items |= done.skipped_items;
        Ok(done.value)
    }

    /// Records a step not run by configuration.
    pub fn skip(&mut self, name: &str, why: &str) {
        tracing::info!("step {name}: skipped ({why})");
        self.steps.push(StepRecord {
            name: name.to_string(),
            status: StepStatus::Skipped,
            exit: Exit::Ok.code(),
            started: rfc3339(Utc::now()),
            duration_secs: 0.0,
            detail: Some(why.to_string()),
        });
    }

    /// A step completed with damaged items skipped: the run ends with 7.
    pub fn skipped_items(&self) -> bool {
        self.exit() == Exit::Skipped
    }

    /// Seconds a step took, 0 when it did not run.
    pub fn secs(&self, name: &str) -> f64 {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .map_or(0.0, |s| s.duration_secs)
    }

    pub fn elapsed(&self) -> f64 {
        round(self.t0.elapsed().as_secs_f64())
    }

    /// The record of the run: failed with `error`'s exit, or ok (7 when items were skipped).
    pub fn finish(self, error: Option<&Error>) -> RunRecord {
        let (exit, status) = match error {
            Some(e) => (e.exit(), RunStatus::Failed),
            None if self.exit() == Exit::Skipped => (Exit::Skipped, RunStatus::OkWithSkipped),
            None => (Exit::Ok, RunStatus::Ok),
        };
        RunRecord {
            job: self.name.into(),
            started: rfc3339(self.started),
            finished: rfc3339(Utc::now()),
            duration_secs: round(self.t0.elapsed().as_secs_f64()),
            exit: exit.code(),
            status,
            error: error.map(Error::line),
            steps: self.steps,
            log_file: self.log_file.display().to_string(),
            ..RunRecord::default()
        }
    }
}

/// RFC 3339 in UTC to the second, as every record and log line writes time.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn round(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

/// Space on the file system holding `path` (`df`), or `None` when it cannot be read.
pub fn disk_of(path: &Path) -> Option<DiskRecord> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(DiskRecord {
        path: path.display().to_string(),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
    })
}
