//! The status as a Prometheus text-format file for node_exporter's textfile collector
//! (`--collector.textfile.directory`), written atomically (temporary file in the same folder,
//! fsync, rename; the collector reads only `*.prom`, so it never sees the temporary file).
//!
//! Every job rewrites it at its end ([`write_metrics`], local facts only), and dr-status does on
//! each run, so the file is at most as old as the last thing that happened. Unknown values are
//! left out rather than written as 0 (an absent series is what `absent()` alerts on); a
//! timestamp is seconds since the epoch, as node_exporter's own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::Utc;

use crate::config::Config;
use crate::status::{Severity, Status, collect_local};

/// Collects the local facts (no node, no S3: fast) and writes `config.metrics_file`.
/// Call it at the end of every job, after its run record is saved.
pub fn write_metrics(config: &Config) -> std::io::Result<()> {
    let status = collect_local(config, &config.thresholds, Utc::now());
    write_status(&config.metrics_file, &status)
}

/// Writes `status` to `path` atomically, mode 0644.
pub fn write_status(path: &Path, status: &Status) -> std::io::Result<()> {
    arke_core::atomic_write(path, render(status).as_bytes())
}

/// One metric family: HELP and TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    started: bool,
    help: &'static str,
    kind: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        if !self.started {
            let _ = writeln!(self.out, "# HELP {} {}", self.name, self.help);
            let _ = writeln!(self.out, "# TYPE {} {}", self.name, self.kind);
            self.started = true;
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.out, "{}{labels} {value}", self.name);
    }

    fn opt(&mut self, value: Option<f64>) {
        if let Some(v) = value {
            self.sample(&[], v);
        }
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, help: &'static str) -> Family<'a> {
    Family {
        out,
        name,
        started: false,
        help,
        kind: "gauge",
    }
}

/// A counter: only ever goes up (Prometheus' `rate()` and `increase()` read it).
fn counter<'a>(out: &'a mut String, name: &'static str, help: &'static str) -> Family<'a> {
    Family {
        kind: "counter",
        ..family(out, name, help)
    }
}

/// Label values: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The text exposition of `status`.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    verdict(&mut out, s);
    snapshot(&mut out, s);
    archive(&mut out, s);
    disk(&mut out, s);
    locks(&mut out, s);
    jobs(&mut out, s);
    notify(&mut out, s);
    out
}

fn notify(out: &mut String, s: &Status) {
    let n = &s.facts.notify;
    counter(
        out,
        "arke_dr_notify_failures_total",
        "Notifications (heartbeat pings, webhook posts) not delivered after their tries.",
    )
    .sample(&[], n.failures_total as f64);
}

fn verdict(out: &mut String, s: &Status) {
    let at = chrono::DateTime::parse_from_rfc3339(&s.checked_at).map(|t| t.timestamp() as f64);
    family(
        out,
        "arke_dr_status_collected_timestamp_seconds",
        "When the status was collected.",
    )
    .opt(at.ok());
    family(
        out,
        "arke_dr_status_code",
        "Verdict: 0 ok, 1 warning, 2 critical, 3 unknown.",
    )
    .sample(&[], f64::from(s.exit_code));
    let mut f = family(
        out,
        "arke_dr_status",
        "1 for the verdict's severity, 0 for the others.",
    );
    for sev in [
        Severity::Ok,
        Severity::Warning,
        Severity::Critical,
        Severity::Unknown,
    ] {
        let label = sev.label().to_lowercase();
        f.sample(&[("severity", &label)], bool_value(s.severity == sev));
    }
    // One series per check name (the worst, when a name repeats).
    let mut worst: BTreeMap<&str, Severity> = BTreeMap::new();
    for c in &s.checks {
        let e = worst.entry(c.name.as_str()).or_insert(c.severity);
        *e = (*e).max(c.severity);
    }
    let mut f = family(
        out,
        "arke_dr_check_status",
        "Each check: 0 ok, 1 warning, 2 critical.",
    );
    for (name, sev) in worst {
        f.sample(&[("check", name)], f64::from(sev.exit_code()));
    }
}

fn snapshot(out: &mut String, s: &Status) {
    let snap = s.facts.snapshot.as_ref();
    family(
        out,
        "arke_dr_last_snapshot_timestamp_seconds",
        "When the newest snapshot was taken.",
    )
    .opt(snap.and_then(|x| x.timestamp).map(|t| t as f64));
    family(
        out,
        "arke_dr_last_snapshot_seq",
        "The newest snapshot's seq.",
    )
    .opt(snap.map(|x| x.seq as f64));
    let n = &s.facts.node;
    if n.state != crate::status::NodeState::NotAsked {
        let up = n.state == crate::status::NodeState::Up;
        family(
            out,
            "arke_dr_node_up",
            "The node answered dr-status's pointer read.",
        )
        .sample(&[], bool_value(up));
    }
    family(
        out,
        "arke_dr_events_since_snapshot",
        "Events written since the newest snapshot.",
    )
    .opt(n.events_since_snapshot.map(|e| e as f64));
}

fn archive(out: &mut String, s: &Status) {
    let a = s.facts.archive.as_ref();
    family(out, "arke_dr_archives", "Archives in the backups folder.")
        .sample(&[], s.facts.archive_count as f64);
    family(
        out,
        "arke_dr_archive_timestamp_seconds",
        "When the newest archive was exported.",
    )
    .opt(a.map(|a| a.timestamp as f64));
    family(
        out,
        "arke_dr_archive_seq",
        "The newest archive's snapshot seq.",
    )
    .opt(a.map(|a| a.seq as f64));
    family(
        out,
        "arke_dr_archive_size_bytes",
        "The newest archive's size.",
    )
    .opt(a.map(|a| a.size_bytes as f64));
    family(
        out,
        "arke_dr_archive_verified",
        "The newest archive has a valid .verified stamp.",
    )
    .opt(a.map(|a| bool_value(a.verified)));
    family(
        out,
        "arke_dr_archive_uploaded",
        "A daily run uploaded the newest archive.",
    )
    .opt(a.and_then(|a| a.uploaded).map(bool_value));
    family(
        out,
        "arke_dr_archive_present_in_s3",
        "The newest archive is in S3 (probed).",
    )
    .opt(a.and_then(|a| a.present_in_s3).map(bool_value));
    family(
        out,
        "arke_dr_rpo_seconds",
        "Age of the newest archive where it must be (S3 with upload on).",
    )
    .opt(s.facts.rpo_secs.map(|r| r as f64));
    family(
        out,
        "arke_dr_offhost_rpo_seconds",
        "Seconds since S3 was last confirmed to hold the node's state (the newest upload).",
    )
    .opt(
        s.facts
            .offhost
            .as_ref()
            .and_then(|o| o.rpo_secs)
            .map(|r| r as f64),
    );
}

fn disk(out: &mut String, s: &Status) {
    let d = s.facts.disk.as_ref();
    family(
        out,
        "arke_dr_backups_bytes",
        "Bytes of the files in the backups folder.",
    )
    .sample(&[], s.facts.backups_bytes as f64);
    family(
        out,
        "arke_dr_backups_disk_used_ratio",
        "Used share of the backups file system, as df.",
    )
    .opt(d.map(|d| d.used_ratio));
    family(
        out,
        "arke_dr_backups_disk_free_bytes",
        "Bytes available on the backups file system.",
    )
    .opt(d.map(|d| d.free_bytes as f64));
    family(
        out,
        "arke_dr_backups_disk_total_bytes",
        "Size of the backups file system.",
    )
    .opt(d.map(|d| d.total_bytes as f64));
}

fn locks(out: &mut String, s: &Status) {
    let mut f = family(out, "arke_dr_lock_held", "1 while a job holds the lock.");
    for l in &s.facts.locks {
        f.sample(&[("lock", &l.name)], bool_value(l.held));
    }
    let mut f = family(
        out,
        "arke_dr_lock_held_seconds",
        "How long the lock has been held (0: free).",
    );
    for l in &s.facts.locks {
        let secs = if l.held { l.held_secs.unwrap_or(0) } else { 0 };
        f.sample(&[("lock", &l.name)], secs as f64);
    }
}

fn jobs(out: &mut String, s: &Status) {
    let runs = &s.facts.runs;
    let last = |r: &crate::status::RunFacts| r.last.clone();
    let mut f = family(
        out,
        "arke_dr_job_last_run_timestamp_seconds",
        "When the job's last run ended.",
    );
    for r in runs {
        if let Some(t) = last(r).and_then(|l| l.finished_timestamp) {
            f.sample(&[("job", &r.job)], t as f64);
        }
    }
    let mut f = family(
        out,
        "arke_dr_job_last_duration_seconds",
        "How long the job's last run took.",
    );
    for r in runs {
        if let Some(l) = last(r) {
            f.sample(&[("job", &r.job)], l.duration_secs);
        }
    }
    let mut f = family(
        out,
        "arke_dr_job_last_exit_code",
        "The job's last exit code.",
    );
    for r in runs {
        if let Some(l) = last(r) {
            f.sample(&[("job", &r.job)], f64::from(l.exit));
        }
    }
    let mut f = family(
        out,
        "arke_dr_job_last_success_timestamp_seconds",
        "When the job's last successful run ended.",
    );
    for r in runs {
        if let Some(t) = r.last_success.as_ref().and_then(|l| l.finished_timestamp) {
            f.sample(&[("job", &r.job)], t as f64);
        }
    }
    drill(out, s);
}

/// The last successful restore drill: its RTO and when it ended.
fn drill(out: &mut String, s: &Status) {
    let ok = s
        .facts
        .runs
        .iter()
        .find(|r| r.job == "restore-drill")
        .and_then(|r| r.last_success.as_ref());
    let Some(ok) = ok else { return };
    if let Some(rto) = ok.rto_secs {
        let mut f = family(
            out,
            "arke_dr_drill_rto_seconds",
            "The last successful restore drill's RTO: download, verify, import and tips.",
        );
        f.sample(&[], rto);
    }
    if let Some(t) = ok.finished_timestamp {
        let mut f = family(
            out,
            "arke_dr_drill_last_success_timestamp_seconds",
            "When the last successful restore drill ended.",
        );
        f.sample(&[], t as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
