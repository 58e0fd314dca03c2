//! What notifications leave in the state folder (`<state>/notify/`):
//!
//! - `failures.log`: one line per notification that failed after its tries, appended (the
//!   metric `arke_dr_notify_failures_total` is its line count: a counter that survives
//!   restarts and concurrent jobs, since small appends do not interleave);
//! - `last-delivered`: the time of the newest delivered notification (so a failure that a
//!   later delivery followed is no longer a warning);
//! - `dr-status.json`: the verdict dr-status last notified, so it notifies on a change only.
//!
//! None of these is ever fatal: a state folder that cannot be written is a log line.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::status::Severity;

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("notify")
}

fn failures_path(state_dir: &Path) -> PathBuf {
    dir(state_dir).join("failures.log")
}

fn delivered_path(state_dir: &Path) -> PathBuf {
    dir(state_dir).join("last-delivered")
}

fn now() -> String {
    crate::job::rfc3339(Utc::now())
}

/// What became of one notification (in the run record and `--json`; never the URL).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// `heartbeat` or `webhook`.
    pub channel: String,
    /// `start`, `finish` (heartbeat) or the event (webhook).
    pub what: String,
    pub delivered: bool,
    pub tries: u32,
    /// Why it failed (HTTP status, timeout, connection), never the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Logs a delivery and leaves its trace in the ledger.
pub(super) fn note(state_dir: &Path, job: &str, d: &Delivery) {
    let written = if d.delivered {
        tracing::info!("notify: {} {} delivered", d.channel, d.what);
        let _ = std::fs::create_dir_all(dir(state_dir));
        arke_core::atomic_write(&delivered_path(state_dir), now().as_bytes())
    } else {
        let why = d.error.as_deref().unwrap_or("failed");
        tracing::warn!(
            "notify: {} {} NOT delivered after {} tries: {why} (the run's outcome is unchanged)",
            d.channel,
            d.what,
            d.tries
        );
        let line = format!("{} {job} {} {}: {why}\n", now(), d.channel, d.what);
        append(&failures_path(state_dir), &line)
    };
    if let Err(e) = written {
        tracing::warn!(
            "notify: cannot write under {}: {e}",
            dir(state_dir).display()
        );
    }
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())
}

/// What dr-status and the metrics say of notifications.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NotifyFacts {
    /// Notifications that failed after their tries, ever (lines of `failures.log`).
    pub failures_total: u64,
    /// The newest failure's line (time, job, channel, event, why).
    pub last_failure: Option<String>,
    pub last_failure_at: Option<String>,
    pub last_delivered_at: Option<String>,
}

impl NotifyFacts {
    /// The newest notification failed: nobody may be hearing about this host.
    pub fn failing(&self) -> bool {
        match (&self.last_failure_at, &self.last_delivered_at) {
            (Some(f), Some(d)) => f > d, // RFC 3339 UTC to the second sorts as time
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Reads the ledger (absent files: nothing happened yet).
pub fn notify_facts(state_dir: &Path) -> NotifyFacts {
    let text = std::fs::read_to_string(failures_path(state_dir)).unwrap_or_default();
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    NotifyFacts {
        failures_total: text.lines().filter(|l| !l.trim().is_empty()).count() as u64,
        last_failure: last.map(str::to_string),
        last_failure_at: last
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string),
        last_delivered_at: std::fs::read_to_string(delivered_path(state_dir))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    }
}

/// The verdict dr-status last told of (`<state>/notify/dr-status.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusMemory {
    pub severity: Severity,
    /// When the verdict became this one (RFC 3339 UTC).
    pub since: String,
    pub summary: String,
    /// The change was told (or nothing was to be sent for it); `false`: retried next run.
    pub notified: bool,
}

impl StatusMemory {
    fn path(state_dir: &Path) -> PathBuf {
        dir(state_dir).join("dr-status.json")
    }

    pub fn load(state_dir: &Path) -> Option<StatusMemory> {
        let bytes = std::fs::read(Self::path(state_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir(state_dir))?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        arke_core::atomic_write(&Self::path(state_dir), &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(delivered: bool) -> Delivery {
        Delivery {
            channel: "webhook".into(),
            what: "failure".into(),
            delivered,
            tries: 3,
            error: (!delivered).then(|| "HTTP 500 Internal Server Error".into()),
        }
    }

    #[test]
    fn failures_are_counted_and_a_later_delivery_clears_the_warning() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(notify_facts(dir.path()), NotifyFacts::default());
        note(dir.path(), "daily-backup", &delivery(false));
        note(dir.path(), "daily-backup", &delivery(false));
        let f = notify_facts(dir.path());
        assert_eq!(f.failures_total, 2);
        assert!(f.failing());
        assert!(
            f.last_failure
                .unwrap()
                .contains("daily-backup webhook failure: HTTP 500")
        );
        // The same second: a delivery stamped later than the failure is needed to clear it.
        std::fs::write(delivered_path(dir.path()), "2999-01-01T00:00:00Z").unwrap();
        let f = notify_facts(dir.path());
        assert!(!f.failing());
        assert_eq!(f.failures_total, 2, "a counter never goes down");
    }
}
