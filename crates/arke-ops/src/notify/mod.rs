//! Notifications: a failed night reaches a person who is not looking at the host.
//!
//! Two channels, both optional, both configured as secrets (a URL with a token in it):
//!
//! - **Heartbeat** (`HEARTBEAT_URL`, or `HEARTBEAT_URL_<JOB>` per job), the healthchecks.io
//!   protocol: `<url>/start` when a job starts, `<url>` when it ends with exit 0, `<url>/<exit>`
//!   otherwise, the finish body being the summary line and the run's last log lines (at most
//!   100 KB, the protocol's limit). A run that never happens is then caught off the host by the
//!   check's period and grace time: the one failure a job cannot report itself.
//! - **Webhook** (`NOTIFY_WEBHOOK_URL`): a JSON POST ([`Notification`]) on the events `NOTIFY_ON`
//!   names: a failure, exit 7, an alert (the drill's RTO over target), dr-status turning
//!   WARNING or CRITICAL, a recovery. Its `text` field is what Slack, Mattermost and Teams
//!   incoming webhooks show as the message.
//!
//! Bounded and harmless: 10 s per request (`NOTIFY_TIMEOUT`), 3 tries, and a notification
//! that fails never changes a job's exit code or stops it. It is logged (never with its URL),
//! appended to `<state>/notify/failures.log` (the metric `arke_dr_notify_failures_total`
//! counts its lines) and, while no later notification succeeded, a dr-status WARNING.

mod ledger;
mod report;
mod send;
mod settings;

use serde::{Deserialize, Serialize};

pub use ledger::{Delivery, NotifyFacts, StatusMemory, notify_facts};
pub use report::{job_events, job_finished, status_checked, status_event};
pub use send::Notifier;
pub use settings::{
    DEFAULT_NOTIFY_ON, Event, EventSet, HEARTBEAT_JOBS, NotifySettings, Secret, secret_names,
};

/// The schema of the webhook's JSON body.
pub const NOTIFICATION_SCHEMA: &str = "arke-dr/notification@v1";

/// The most a heartbeat body carries (healthchecks.io keeps the first 100 KB of a ping body).
pub const MAX_BODY: usize = 100 * 1024;

/// The webhook's JSON body. Fields are only ever added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    /// [`NOTIFICATION_SCHEMA`].
    pub schema: String,
    /// `failure`, `skipped`, `alert`, `warning`, `critical`, `recovery` or `success`.
    pub event: Event,
    /// `daily-backup`, `hourly-snapshot`, `weekly-verify`, `restore-drill` or `dr-status`.
    pub job: String,
    pub host: String,
    /// A job's run status (`ok`, `ok_with_skipped`, `failed`), or dr-status's verdict
    /// (`OK`, `WARNING`, `CRITICAL`).
    pub status: String,
    /// The job's exit code (dr-status: its Nagios code).
    pub exit: u8,
    /// The run's summary line, or dr-status's verdict line.
    pub summary: String,
    /// The newest archive (file name), when there is one.
    pub archive: Option<String>,
    /// The recovery point: age in seconds of the newest archive where it must be.
    pub rpo_secs: Option<i64>,
    /// RFC 3339 UTC.
    pub time: String,
    /// The job's log file on the host.
    pub log_file: Option<String>,
    /// One message for chat webhooks (Slack, Mattermost, Teams).
    pub text: String,
}

impl Notification {
    /// The chat line: `[arke-dr] daily-backup FAILED on ip-10-0-0-5 (exit 6): …`.
    pub fn chat_text(event: Event, job: &str, host: &str, exit: u8, summary: &str) -> String {
        let what = match event {
            Event::Failure => format!("FAILED (exit {exit})"),
            Event::Skipped => "completed, damaged items skipped (exit 7)".to_string(),
            Event::Alert => "needs attention".to_string(),
            Event::Warning => "WARNING".to_string(),
            Event::Critical => "CRITICAL".to_string(),
            Event::Recovery => "recovered".to_string(),
            Event::Success => "ok".to_string(),
        };
        format!("[arke-dr] {job} {what} on {host}: {summary}")
    }
}

/// This host's name, as the kernel has it (`ARKE_HOST_NAME` overrides it: an instance's
/// private DNS name says little in a chat channel).
pub fn host_name(configured: Option<&str>) -> String {
    if let Some(h) = configured {
        return h.to_string();
    }
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
