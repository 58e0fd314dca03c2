//! The limits `dr-status` checks the facts against: read by the configuration, used by the
//! status. Here, below both, so that the configuration does not import the status it configures.

use serde::{Deserialize, Serialize};

/// The limits the facts are checked against. Defaults are the user's plan's (Phase 6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// Newest archive older than this: critical (the nightly backup did not happen). 26 h.
    pub max_archive_age_secs: u64,
    /// Off-host recovery point (since S3 last held the node's state) older than this:
    /// critical. 2 h with hourly archives, else 26 h.
    #[serde(default = "default_offhost_rpo")]
    pub max_offhost_rpo_secs: u64,
    /// Newest snapshot older than this: warning (the hourly job is not running). 2 h.
    pub max_snapshot_age_secs: u64,
    /// A lock held longer than this: warning ("alert if build takes > 30 minutes"). 30 min.
    pub max_lock_secs: u64,
    /// Backups file system used above this percentage: warning. 80.
    pub disk_warn_percent: f64,
    /// ... and above this one: critical (the next export will not fit). 95.
    pub disk_crit_percent: f64,
    /// No successful restore drill for longer than this: warning. 8 days.
    #[serde(default = "default_drill_age")]
    pub max_drill_age_secs: u64,
    /// The drill's lock held longer than this: warning. Twice `RTO_TARGET_MINUTES` (8 h): its
    /// RTO alone may reach the target, and the re-verification and comparison come on top; the
    /// other locks' 30 minutes would warn (and notify) during every large drill.
    #[serde(default = "default_drill_lock")]
    pub max_drill_lock_secs: u64,
}

fn default_drill_age() -> u64 {
    8 * 86_400
}

fn default_drill_lock() -> u64 {
    2 * 240 * 60
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_archive_age_secs: 26 * 3600,
            max_offhost_rpo_secs: default_offhost_rpo(),
            max_snapshot_age_secs: 2 * 3600,
            max_lock_secs: 30 * 60,
            disk_warn_percent: 80.0,
            disk_crit_percent: 95.0,
            max_drill_age_secs: default_drill_age(),
            max_drill_lock_secs: default_drill_lock(),
        }
    }
}

fn default_offhost_rpo() -> u64 {
    26 * 3600
}
