//! Phase 4: the facts against the thresholds. One [`Check`] per line of the table.
//!
//! What is critical is what breaks the recovery guarantee now: no archive, an archive older
//! than the nightly period allows, an archive not off the host when upload is on, a failed
//! nightly or weekly job, a disk too full for the next export. What degrades without breaking
//! it is a warning: an unverified archive, a stale snapshot (the nightly job builds one
//! anyway), an unreachable node, a lock held long. A long-held lock is never critical by
//! itself: a hung job's real consequence, the missing archive, turns critical at
//! `max_archive_age` on its own, and a big night legitimately runs long.

use super::human::format_age;
use super::{
    ArchiveFacts, Check, DiskFacts, Facts, LockFacts, NodeState, RunFacts, RunSummary, Severity,
    Thresholds, UploadSetting,
};
use crate::runs::RunStatus;
use arke_core::human_bytes;
use arke_core::snapshot::{Trespass, publisher};

fn check(name: &str, severity: Severity, message: String) -> Check {
    Check {
        name: name.to_string(),
        severity,
        message,
    }
}

/// Every check, in the order of the table.
pub fn evaluate(f: &Facts, t: &Thresholds, upload: &UploadSetting) -> Vec<Check> {
    let mut out = vec![snapshot(f, t)];
    out.extend(node(f));
    out.extend(writer(f));
    out.push(archive(f, t));
    if let Some(a) = &f.archive {
        out.push(verified(a));
        out.extend(metadata(a));
    }
    out.extend(upload_check(f, upload));
    out.extend(rpo(f));
    out.push(offhost_rpo(f, t, upload));
    out.push(disk(f.disk.as_ref(), f, t));
    out.extend(f.locks.iter().map(|l| lock(l, t)));
    out.extend(f.runs.iter().map(|r| match r.job.as_str() {
        "restore-drill" => drill(r, t),
        _ => job(r),
    }));
    out.extend(notify(f));
    out.extend(f.bucket.iter().flat_map(super::bucket::checks));
    out.extend(f.problems.iter().map(|p| {
        // Not knowing whether archives exist is as bad as having none.
        let sev = if p.check == "archive" {
            Severity::Critical
        } else {
            Severity::Warning
        };
        check(&p.check, sev, p.message.clone())
    }));
    out
}

/// The newest notification failed: the next failure may reach nobody. A warning, not
/// critical: the archives themselves are as safe as the other checks say.
fn notify(f: &Facts) -> Option<Check> {
    let n = &f.notify;
    if !n.failing() {
        return None;
    }
    let last = n.last_failure.as_deref().unwrap_or("?");
    let msg = format!(
        "the newest notification was not delivered ({last}); {} failed in all",
        n.failures_total
    );
    Some(check("notify", Severity::Warning, msg))
}

fn snapshot(f: &Facts, t: &Thresholds) -> Check {
    let Some(s) = &f.snapshot else {
        let msg = format!("no snapshot in {} (latest.json)", f.snapshots_dir.display());
        return check("snapshot", Severity::Warning, msg);
    };
    let age = s
        .age_secs
        .map_or("age unknown".into(), |a| format!("{} old", format_age(a)));
    let msg = format!("snapshot seq {}, {age} ({})", s.seq, s.cid);
    match s.age_secs {
        Some(a) if a > t.max_snapshot_age_secs as i64 => check(
            "snapshot",
            Severity::Warning,
            format!(
                "{msg}: older than {}; is hourly-snapshot running?",
                format_age(t.max_snapshot_age_secs as i64)
            ),
        ),
        _ => check("snapshot", Severity::Ok, msg),
    }
}

fn node(f: &Facts) -> Option<Check> {
    let n = &f.node;
    let unknown = || n.error.clone().unwrap_or_default();
    Some(match n.state {
        NodeState::NotAsked => return None,
        NodeState::Up => match n.events_since_snapshot {
            Some(e) => check(
                "node",
                Severity::Ok,
                format!("node up, {e} events since the snapshot"),
            ),
            None => check(
                "node",
                Severity::Ok,
                "node up; events since the snapshot unknown (the snapshot records no event count)"
                    .into(),
            ),
        },
        NodeState::NoPointer => check("node", Severity::Warning, format!("node: {}", unknown())),
        NodeState::Unreachable => check(
            "node",
            Severity::Warning,
            format!(
                "node unreachable, events since the snapshot unknown: {}",
                unknown()
            ),
        ),
    })
}

/// Who wrote the pointer's latest snapshot (node asked only): a legacy writer that came back
/// after arke-dr published here, or a pointer seq that went back, is CRITICAL: the next
/// incremental build would stand on it. The rule is build-snapshot's own
/// ([`arke_core::snapshot::publisher::check`]).
fn writer(f: &Facts) -> Option<Check> {
    let latest = f.node.latest_snapshot.as_ref()?;
    let name = "snapshot_writer";
    Some(
        match (publisher::check(f.published.as_ref(), latest), &f.published) {
            (Ok(()), Some(ours)) => check(
                name,
                Severity::Ok,
                format!(
                    "latest snapshot written by arke-dr (pointer seq {}; this host published seq {})",
                    latest.pointer_seq.unwrap_or(0),
                    ours.seq
                ),
            ),
            (Ok(()), None) => check(
                name,
                Severity::Ok,
                format!(
                    "arke-dr has not published on this host yet (no {}); latest snapshot {}",
                    arke_core::snapshot::MARKER_FILE,
                    latest.schema.as_deref().unwrap_or("none")
                ),
            ),
            (Err(t @ Trespass::Unreadable { .. }), _) => {
                check(name, Severity::Warning, format!("{}: {t}", t.label()))
            }
            (Err(t), _) => check(name, Severity::Critical, format!("{}: {t}", t.label())),
        },
    )
}

fn archive(f: &Facts, t: &Thresholds) -> Check {
    let Some(a) = &f.archive else {
        let msg = format!("no archive in {}", f.backups_dir.display());
        return check("archive", Severity::Critical, msg);
    };
    let kind = match (&a.kind, &a.parent) {
        (Some(k), Some(p)) => format!(", {k} on {p}"),
        (Some(k), None) => format!(", {k}"),
        _ => String::new(),
    };
    let msg = format!(
        "archive {}: {} old, {}{kind}",
        a.file,
        format_age(a.age_secs),
        human_bytes(a.size_bytes)
    );
    if a.age_secs > t.max_archive_age_secs as i64 {
        let limit = format_age(t.max_archive_age_secs as i64);
        let msg = format!("newest {msg}: older than {limit}");
        return check("archive", Severity::Critical, msg);
    }
    if a.partial == Some(true) {
        let msg = format!("{msg}: a PARTIAL (salvage) archive, blocks were missing");
        return check("archive", Severity::Warning, msg);
    }
    check("archive", Severity::Ok, msg)
}

fn verified(a: &ArchiveFacts) -> Check {
    match (&a.verified, &a.verified_at) {
        (true, at) => check(
            "archive_verified",
            Severity::Ok,
            format!("archive verified at {}", at.as_deref().unwrap_or("?")),
        ),
        (false, _) => check(
            "archive_verified",
            Severity::Warning,
            format!(
                "{} has no valid .verified stamp: verify-car has not passed on it",
                a.file
            ),
        ),
    }
}

fn metadata(a: &ArchiveFacts) -> Option<Check> {
    let e = a.metadata_error.as_ref()?;
    Some(check("archive_metadata", Severity::Warning, e.clone()))
}

fn upload_check(f: &Facts, upload: &UploadSetting) -> Vec<Check> {
    let target = match upload {
        UploadSetting::Off => {
            return vec![check(
                "upload",
                Severity::Ok,
                "upload off (UPLOAD=0)".into(),
            )];
        }
        UploadSetting::NotConfigured { reason } => {
            let msg = format!("upload not configured: {reason}");
            return vec![check("upload", Severity::Warning, msg)];
        }
        UploadSetting::To { bucket, prefix } => {
            format!(
                "s3://{bucket}/{}",
                prefix.as_deref().unwrap_or("backups/<instance-id>/")
            )
        }
    };
    let Some(a) = &f.archive else {
        return vec![];
    };
    let mut out = vec![match (a.present_in_s3, a.uploaded) {
        (Some(false), _) => check(
            "upload",
            Severity::Critical,
            format!("{} is not in {target}", a.file),
        ),
        (Some(true), _) | (None, Some(true)) => check(
            "upload",
            Severity::Ok,
            format!(
                "uploaded {}to {}",
                a.uploaded_at
                    .as_deref()
                    .map(|t| format!("at {t} "))
                    .unwrap_or_default(),
                a.upload_url.as_deref().unwrap_or(&target)
            ),
        ),
        _ => not_uploaded(f, a, &target),
    }];
    if let Some(e) = &a.remote_error {
        let msg = format!("cannot tell whether {} is in {target}: {e}", a.file);
        out.push(check("s3", Severity::Warning, msg));
    }
    out
}

/// No run record tells of the newest archive's upload: critical, unless the daily job is
/// running now (the archive is written before it is uploaded).
fn not_uploaded(f: &Facts, a: &ArchiveFacts, target: &str) -> Check {
    let last = f
        .last_upload
        .as_ref()
        .map(|u| format!(" (last upload: {} at {})", u.file, u.uploaded_at))
        .unwrap_or_else(|| " (no upload recorded)".into());
    let running = f.locks.iter().any(|l| l.name == "daily" && l.held);
    if running {
        let msg = format!("{} not uploaded yet: daily-backup is running{last}", a.file);
        return check("upload", Severity::Warning, msg);
    }
    let msg = format!("{} was not uploaded to {target}{last}", a.file);
    check("upload", Severity::Critical, msg)
}

fn rpo(f: &Facts) -> Option<Check> {
    let r = f.rpo_secs?;
    Some(check(
        "rpo",
        Severity::Ok,
        format!("RPO {}: the writes since would be lost now", format_age(r)),
    ))
}

/// The off-host RPO: a warning past `ALERT_OFFHOST_RPO_HOURS` or with no upload recorded (the
/// archive age and upload checks turn critical when a whole night is missing), critical when
/// S3 lacks the archive the records say it holds. Upload off or not configured: said, not an error (the upload check
/// speaks of it).
fn offhost_rpo(f: &Facts, t: &Thresholds, upload: &UploadSetting) -> Check {
    let name = "offhost_rpo";
    match upload {
        UploadSetting::Off => {
            let msg = "off-host RPO: upload off (UPLOAD=0), no archive leaves the host";
            return check(name, Severity::Ok, msg.into());
        }
        UploadSetting::NotConfigured { .. } => {
            let msg = "off-host RPO: upload not configured, no archive leaves the host";
            return check(name, Severity::Ok, msg.into());
        }
        UploadSetting::To { .. } => {}
    }
    let Some(o) = &f.offhost else {
        // The archive and upload checks are critical then already.
        let msg = "off-host RPO unknown: no upload to S3 recorded yet";
        return check(name, Severity::Warning, msg.into());
    };
    if o.confirmed_in_s3 == Some(false) {
        let msg = format!(
            "off-host RPO: {} is not in S3 at its recorded size (recorded by {} at {})",
            o.url, o.job, o.uploaded_at
        );
        return check(name, Severity::Critical, msg);
    }
    let Some(age) = o.rpo_secs else {
        let msg = format!(
            "off-host RPO unknown: bad time {:?} in the {} record",
            o.uploaded_at, o.job
        );
        return check(name, Severity::Warning, msg);
    };
    let how = match o.confirmed_in_s3 {
        Some(true) => ", confirmed in S3",
        _ => "",
    };
    let msg = format!(
        "off-host RPO {}: S3 held the state of {} ({}{how})",
        format_age(age),
        o.uploaded_at,
        o.file
    );
    if age > t.max_offhost_rpo_secs as i64 {
        let msg = format!(
            "{msg}; older than {}",
            format_age(t.max_offhost_rpo_secs as i64)
        );
        return check(name, Severity::Warning, msg);
    }
    check(name, Severity::Ok, msg)
}

fn disk(d: Option<&DiskFacts>, f: &Facts, t: &Thresholds) -> Check {
    let Some(d) = d else {
        return check("disk", Severity::Warning, "disk use unknown".into());
    };
    let pct = d.used_ratio * 100.0;
    let msg = format!(
        "disk {pct:.0}% used, {} free of {} at {}; the backups folder holds {} in {} archives",
        human_bytes(d.free_bytes),
        human_bytes(d.total_bytes),
        d.path.display(),
        human_bytes(f.backups_bytes),
        f.archive_count
    );
    check("disk", disk_severity(pct, t), msg)
}

/// Over the warning percentage: warning; over the critical one: critical.
pub(super) fn disk_severity(used_percent: f64, t: &Thresholds) -> Severity {
    if used_percent > t.disk_crit_percent {
        Severity::Critical
    } else if used_percent > t.disk_warn_percent {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

fn lock(l: &LockFacts, t: &Thresholds) -> Check {
    let name = format!("lock_{}", l.name);
    if let Some(e) = &l.error {
        return check(&name, Severity::Warning, e.clone());
    }
    if !l.held {
        return check(&name, Severity::Ok, format!("{} lock free", l.name));
    }
    let pid = l
        .pid
        .map_or("an unknown pid".into(), |p| format!("pid {p}"));
    let Some(secs) = l.held_secs else {
        return check(
            &name,
            Severity::Ok,
            format!("{} lock held by {pid}", l.name),
        );
    };
    let since = l.since.as_deref().unwrap_or("?");
    let msg = format!(
        "{} lock held by {pid} for {} (since {since})",
        l.name,
        format_age(secs)
    );
    let max = match l.name.as_str() {
        "drill" => t.max_drill_lock_secs,
        _ => t.max_lock_secs,
    };
    if secs > max as i64 {
        let limit = format_age(max as i64);
        return check(
            &name,
            Severity::Warning,
            format!("{msg}: longer than {limit}"),
        );
    }
    check(&name, Severity::Ok, msg)
}

fn job(r: &RunFacts) -> Check {
    let name = format!("job_{}", r.job.replace('-', "_"));
    let Some(last) = &r.last else {
        // Only the nightly job's absence matters; the archive check says how much.
        let sev = if r.job == "daily-backup" {
            Severity::Warning
        } else {
            Severity::Ok
        };
        return check(&name, sev, format!("{}: no run recorded", r.job));
    };
    let took = format_age(last.duration_secs.round() as i64);
    if let Some(c) = stale(r, last) {
        return c;
    }
    match last.status {
        RunStatus::Ok => check(
            &name,
            Severity::Ok,
            format!("{} ok at {} in {took}", r.job, last.finished),
        ),
        RunStatus::OkWithSkipped => check(
            &name,
            Severity::Warning,
            format!(
                "{} completed at {} with damaged items skipped (exit 7): see the log",
                r.job, last.finished
            ),
        ),
        RunStatus::Failed => {
            let sev = if r.job == "hourly-snapshot" {
                Severity::Warning
            } else {
                Severity::Critical
            };
            let why = last.error.as_deref().unwrap_or("see the log");
            let msg = format!(
                "{} FAILED at {} (exit {}): {why}",
                r.job, last.finished, last.exit
            );
            check(&name, sev, msg)
        }
    }
}

/// The weekly restore drill: failed, no success for `ALERT_DRILL_AGE_DAYS`, or its RTO over
/// its target are warnings (the archives themselves are judged by the other checks). Never
/// run is OK (a new host, before its first Sunday), and so is a drill off by configuration
/// (no Kubo binary on the host): said, not warned about every five minutes.
fn drill(r: &RunFacts, t: &Thresholds) -> Check {
    let name = "job_restore_drill";
    let Some(last) = &r.last else {
        return check(
            name,
            Severity::Ok,
            "restore-drill: no drill recorded".into(),
        );
    };
    if let Some(why) = &last.off {
        let msg = format!("restore drill off: {why} (at {})", last.finished);
        return check(name, Severity::Ok, msg);
    }
    if last.status == RunStatus::Failed {
        let why = last.error.as_deref().unwrap_or("see the log");
        let msg = format!(
            "restore-drill FAILED at {} (exit {}): {why}",
            last.finished, last.exit
        );
        return check(name, Severity::Warning, msg);
    }
    let max = t.max_drill_age_secs as i64;
    let ok = r.last_success.as_ref().unwrap_or(last);
    if let Some(age) = ok.age_secs.filter(|&a| a > max) {
        let msg = format!(
            "no successful restore drill for {} (last at {}; limit {}): is its cron line installed?",
            format_age(age),
            ok.finished,
            format_age(max)
        );
        return check(name, Severity::Warning, msg);
    }
    let rto = last.rto_secs.unwrap_or_default();
    let target = last.rto_target_secs.unwrap_or(u64::MAX);
    let rto_text = format_age(rto.round() as i64);
    if rto > target as f64 {
        let msg = format!(
            "restore drill RTO {rto_text} over the {} target (at {})",
            format_age(target as i64),
            last.finished
        );
        return check(name, Severity::Warning, msg);
    }
    let msg = format!("restore-drill ok at {}: RTO {rto_text}", last.finished);
    check(name, Severity::Ok, msg)
}

/// The weekly verification runs on Sundays; no run for over 8 days means its cron line is gone
/// or it hangs. (The other jobs' absence shows in the snapshot's and the archive's age.)
const WEEKLY_STALE_SECS: i64 = 8 * 24 * 3600;

fn stale(r: &RunFacts, last: &RunSummary) -> Option<Check> {
    let age = last.age_secs.filter(|&a| a > WEEKLY_STALE_SECS)?;
    (r.job == "weekly-verify").then(|| {
        let msg = format!(
            "weekly-verify last ran {} ago (at {}): is its cron line installed?",
            format_age(age),
            last.finished
        );
        check("job_weekly_verify", Severity::Warning, msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_severity_math() {
        let t = Thresholds::default();
        assert_eq!(disk_severity(0.0, &t), Severity::Ok);
        assert_eq!(disk_severity(80.0, &t), Severity::Ok, "80% is not over 80%");
        assert_eq!(disk_severity(80.1, &t), Severity::Warning);
        assert_eq!(disk_severity(95.0, &t), Severity::Warning);
        assert_eq!(disk_severity(95.5, &t), Severity::Critical);
        assert_eq!(disk_severity(100.0, &t), Severity::Critical);
        let zero = Thresholds {
            disk_warn_percent: 0.0,
            ..t
        };
        assert_eq!(disk_severity(0.5, &zero), Severity::Warning);
    }

    #[test]
    fn the_verdict_is_the_worst_check_and_exit_codes_are_nagios() {
        assert!(Severity::Critical > Severity::Unknown);
        assert!(Severity::Unknown > Severity::Warning);
        assert!(Severity::Warning > Severity::Ok);
        let codes: Vec<u8> = [
            Severity::Ok,
            Severity::Warning,
            Severity::Critical,
            Severity::Unknown,
        ]
        .iter()
        .map(|s| s.exit_code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }

    #[test]
    fn a_weekly_run_older_than_eight_days_is_a_warning() {
        let run = |job: &str, age_days: i64| RunFacts {
            job: job.into(),
            last: Some(RunSummary {
                started: "2026-11-01T05:00:00Z".into(),
                finished: "2026-11-01T05:40:00Z".into(),
                finished_timestamp: Some(0),
                age_secs: Some(age_days * 24 * 3600),
                duration_secs: 2400.0,
                exit: 0,
                status: RunStatus::Ok,
                error: None,
                rto_secs: None,
                rto_target_secs: None,
                off: None,
            }),
            last_success: None,
        };
        assert_eq!(job(&run("weekly-verify", 7)).severity, Severity::Ok);
        let c = job(&run("weekly-verify", 9));
        assert_eq!(c.severity, Severity::Warning);
        assert!(c.message.contains("cron line"), "{}", c.message);
        // The hourly and daily jobs' absence shows in the snapshot's and archive's age.
        assert_eq!(job(&run("hourly-snapshot", 9)).severity, Severity::Ok);
    }

    #[test]
    fn a_drill_failed_stale_or_over_its_rto_target_is_a_warning() {
        let t = Thresholds::default();
        let run = |age_days: i64, status: RunStatus, rto: f64| {
            let failed = status == RunStatus::Failed;
            let s = RunSummary {
                started: "2026-11-01T07:00:00Z".into(),
                finished: "2026-11-01T07:40:00Z".into(),
                finished_timestamp: Some(0),
                age_secs: Some(age_days * 24 * 3600),
                duration_secs: 2400.0,
                exit: if failed { 3 } else { 0 },
                status,
                error: failed.then(|| "the scratch node did not start".into()),
                rto_secs: Some(rto),
                rto_target_secs: Some(240 * 60),
                off: None,
            };
            RunFacts {
                job: "restore-drill".into(),
                last: Some(s.clone()),
                last_success: (!failed).then_some(s),
            }
        };
        let c = drill(&run(1, RunStatus::Ok, 600.0), &t);
        assert_eq!(c.severity, Severity::Ok, "{}", c.message);
        assert!(c.message.contains("RTO 10m"), "{}", c.message);
        let c = drill(&run(1, RunStatus::Failed, 0.0), &t);
        assert_eq!(c.severity, Severity::Warning);
        assert!(c.message.contains("did not start"), "{}", c.message);
        let c = drill(&run(9, RunStatus::Ok, 600.0), &t);
        assert_eq!(c.severity, Severity::Warning);
        assert!(
            c.message.contains("no successful restore drill"),
            "{}",
            c.message
        );
        let c = drill(&run(1, RunStatus::Ok, 312.0 * 60.0), &t);
        assert_eq!(c.severity, Severity::Warning);
        assert!(c.message.contains("over the 4h 0m target"), "{}", c.message);
        let none = RunFacts {
            job: "restore-drill".into(),
            last: None,
            last_success: None,
        };
        assert_eq!(drill(&none, &t).severity, Severity::Ok);
        // Off by configuration, after an old success: said at OK, not a stale-drill warning.
        let mut off = run(30, RunStatus::Ok, 0.0);
        let why = "no Kubo binary (set DRILL_IPFS_BIN or --ipfs-bin, or --scratch-api)";
        off.last.as_mut().unwrap().off = Some(why.into());
        let c = drill(&off, &t);
        assert_eq!(c.severity, Severity::Ok, "{}", c.message);
        assert!(
            c.message.starts_with("restore drill off: no Kubo binary"),
            "{}",
            c.message
        );
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use crate::status::NodeFacts;
    use arke_core::snapshot::{PointerSnapshot, PublishedMarker};

    fn facts(published: Option<u64>, schema: Option<&str>, error: Option<&str>) -> Facts {
        Facts {
            published: published.map(|seq| PublishedMarker {
                cid: "bafyours".into(),
                seq,
                ts: "t".into(),
                tool: "arke-dr 0".into(),
            }),
            node: NodeFacts {
                state: NodeState::Up,
                latest_snapshot: Some(PointerSnapshot {
                    cid: Some("bafylatest".into()),
                    pointer_seq: Some(6),
                    schema: schema.map(Into::into),
                    seq: Some(6),
                    error: error.map(Into::into),
                }),
                ..NodeFacts::default()
            },
            ..Facts::default()
        }
    }

    #[test]
    fn the_writer_check_follows_build_snapshots_rule() {
        let sev = |f: &Facts| writer(f).map(|c| c.severity);
        assert_eq!(sev(&Facts::default()), None, "node not asked: no check");
        let legacy = facts(Some(5), Some("arke/snapshot@v2"), None);
        let c = writer(&legacy).unwrap();
        assert_eq!(c.severity, Severity::Critical);
        assert!(
            c.message.starts_with("legacy snapshot writer active: "),
            "{}",
            c.message
        );
        assert_eq!(
            sev(&facts(None, Some("arke/snapshot@v2"), None)),
            Some(Severity::Ok)
        );
        assert_eq!(
            sev(&facts(Some(5), Some("arke/snapshot@v4"), None)),
            Some(Severity::Ok)
        );
        assert_eq!(
            sev(&facts(Some(7), Some("arke/snapshot@v4"), None)),
            Some(Severity::Critical)
        );
        assert_eq!(
            sev(&facts(Some(5), None, Some("timed out"))),
            Some(Severity::Warning)
        );
    }
}
