//! dr-status's facts and verdicts on hosts shaped as the jobs leave them: a fresh install, a
//! good night, an old archive, a full disk, a held lock, a dead node, S3 probes; and the
//! metrics file read back as Prometheus would. Files are written with the core's own types
//! (`SnapshotMeta`, `BackupMeta`, `RunRecord`), as build-snapshot, export-car and the jobs do;
//! crates/arke-dr/tests/status.rs runs the real pipeline against Kubo.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arke_core::kubo::{Kubo, KuboConfig};
use arke_core::model::{BackupMeta, SnapshotMeta};
use arke_core::{LockOutcome, RunLock};
use arke_ops::config::{Config, Settings};
use arke_ops::drill::OFF;
use arke_ops::runs::DrillRecord;
use arke_ops::runs::{RunRecord, RunStatus, UploadRecord};
use arke_ops::status::{
    self, Inputs, NoRemote, NodeState, RemoteProbe, Severity, Status, Thresholds, page,
};
use chrono::{DateTime, Duration as Span, Utc};

const SNAPSHOT_CID: &str = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

struct Host {
    dir: tempfile::TempDir,
    config: Config,
}

impl Host {
    /// Empty folders, as install.sh leaves them; upload on (`S3_BUCKET=b`) unless `upload` is off.
    fn new(upload: bool) -> Host {
        Host::configured(upload, &[])
    }

    /// [`Host::new`] with more settings. The disk thresholds are configured at 100% (the real
    /// disk's use must not decide these tests: it has tests of its own), so that the jobs'
    /// metrics refresh, which uses the configured thresholds, is not judged by it either.
    fn configured(upload: bool, extra: &[(&str, &str)]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
        for d in ["snapshots", "backups", "state"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let mut s = Settings::default();
        s.overlay([
            ("SNAPSHOTS_DIR".into(), p("snapshots")),
            ("BACKUPS_DIR".into(), p("backups")),
            ("ARKE_STATE_DIR".into(), p("state")),
            ("UPLOAD".into(), if upload { "1" } else { "0" }.into()),
            ("S3_BUCKET".into(), "b".into()),
            ("S3_PREFIX".into(), "backups/i-1/".into()),
            ("ALERT_DISK_WARN_PERCENT".into(), "100".into()),
            ("ALERT_DISK_CRIT_PERCENT".into(), "100".into()),
            // A daily-only host unless a test says otherwise.
            ("HOURLY_ARCHIVE".into(), "0".into()),
        ]);
        s.overlay(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_settings(&s).unwrap();
        Host { dir, config }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `latest.json` as build-snapshot writes it.
    fn snapshot(&self, seq: u64, at: DateTime<Utc>) {
        let meta = SnapshotMeta {
            cid: SNAPSHOT_CID.parse().unwrap(),
            seq,
            ts: Some(at.to_rfc3339()),
            count: Some(12),
            extra: Default::default(),
        };
        let bytes = meta.to_json_bytes().unwrap();
        std::fs::write(self.path("snapshots/latest.json"), bytes).unwrap();
    }

    /// An archive as export-car names it, its `.json`, and verify-car's stamp when `verified`.
    fn archive(&self, seq: u64, at: DateTime<Utc>, verified: bool) -> String {
        let file = format!("arke-{seq}-{}.car", at.format("%Y%m%d-%H%M%S"));
        let car = self.path("backups").join(&file);
        std::fs::write(&car, vec![7u8; 4096]).unwrap();
        let mut meta = BackupMeta {
            snapshot_cid: SNAPSHOT_CID.parse().unwrap(),
            seq,
            timestamp: at.format("%Y%m%d-%H%M%S").to_string(),
            filename: file.clone(),
            path: car.to_string_lossy().into_owned(),
            size_bytes: 4096,
            cid_counts: None,
            extra: Default::default(),
        };
        meta.extra.insert("kind".into(), "full".into());
        meta.extra.insert("created".into(), at.to_rfc3339().into());
        std::fs::write(car.with_extension("json"), meta.to_json_bytes().unwrap()).unwrap();
        if verified {
            let stamp = serde_json::json!({
                "schema": "arke/verified@v1", "file": file, "sha256": "00", "size": 4096,
                "root": SNAPSHOT_CID, "verified_at": at.to_rfc3339(), "tool": "test",
                "chain": [file],
            });
            std::fs::write(car.with_extension("verified"), stamp.to_string()).unwrap();
        }
        file
    }

    /// The daily job's record of a night that ended at `at` (upload of `uploaded` when given).
    fn daily_run(&self, at: DateTime<Utc>, status: RunStatus, uploaded: Option<&str>) {
        self.job_run("daily-backup", at, status, uploaded);
    }

    /// `job`'s record of a run that ended at `at` (upload of `uploaded` when given).
    fn job_run(&self, job: &str, at: DateTime<Utc>, status: RunStatus, uploaded: Option<&str>) {
        let upload = uploaded.map(|f| UploadRecord {
            bucket: "b".into(),
            prefix: "backups/i-1/".into(),
            url: format!("s3://b/backups/i-1/{f}"),
            uploaded_at: at.to_rfc3339(),
            size_bytes: 4096,
            verified_by: "sha256".into(),
            sse: Some("AES256".into()),
            retain_until: None,
            files: vec![f.to_string(), f.replace(".car", ".json")],
        });
        let failed = status == RunStatus::Failed;
        RunRecord {
            job: job.into(),
            started: (at - Span::minutes(3)).to_rfc3339(),
            finished: at.to_rfc3339(),
            duration_secs: 180.0,
            exit: if failed { 6 } else { 0 },
            status,
            error: failed.then(|| "upload failed: AccessDenied".into()),
            upload,
            log_file: format!("/var/log/arke-dr/{job}.log"),
            ..RunRecord::default()
        }
        .save(&self.path("state"))
        .unwrap();
    }

    /// restore-drill's record of a run that ended at `at`: a drill with a 10-minute RTO, or
    /// one off by configuration (`off`: its steps skipped, nothing measured).
    fn drill_run(&self, at: DateTime<Utc>, off: Option<&str>) {
        let drill = off.is_none().then(|| DrillRecord {
            rto_secs: 600.0,
            rto_target_secs: 240 * 60,
            ..DrillRecord::default()
        });
        RunRecord {
            job: "restore-drill".into(),
            started: (at - Span::minutes(20)).to_rfc3339(),
            finished: at.to_rfc3339(),
            duration_secs: 1200.0,
            exit: 0,
            status: RunStatus::Ok,
            drill,
            off: off.map(str::to_string),
            log_file: "/var/log/arke-dr/restore-drill.log".into(),
            ..RunRecord::default()
        }
        .save(&self.path("state"))
        .unwrap();
    }

    /// The night of 02:00 that ended six hours before `now`: snapshot, archive, upload.
    fn good_night(&self, now: DateTime<Utc>) -> String {
        let night = now - Span::hours(6);
        self.snapshot(41, now - Span::minutes(20));
        let file = self.archive(41, night, true);
        self.daily_run(night + Span::minutes(3), RunStatus::Ok, Some(&file));
        file
    }

    fn inputs(&self, now: DateTime<Utc>) -> Inputs<'_, NoRemote> {
        Inputs {
            thresholds: any_disk(),
            now,
            ..Inputs::local(&self.config)
        }
    }

    async fn status(&self, now: DateTime<Utc>) -> Status {
        status::collect(&self.inputs(now)).await
    }
}

/// The real disk's use must not decide these tests: the disk has tests of its own.
fn any_disk() -> Thresholds {
    Thresholds {
        disk_warn_percent: 100.0,
        disk_crit_percent: 100.0,
        ..Thresholds::default()
    }
}

fn check<'a>(s: &'a Status, name: &str) -> &'a status::Check {
    s.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {:#?}", s.checks))
}

fn table(s: &Status) -> String {
    s.human_lines().join("\n")
}

#[tokio::test]
async fn a_fresh_install_is_critical_with_no_archive() {
    let host = Host::new(true);
    let s = host.status(Utc::now()).await;
    assert_eq!(s.severity, Severity::Critical, "{}", table(&s));
    assert_eq!(s.exit_code, 2);
    let dir = host.path("backups");
    assert_eq!(s.summary, format!("no archive in {}", dir.display()));
    assert_eq!(
        s.verdict_line(),
        format!("dr-status: CRITICAL: no archive in {}", dir.display())
    );
    assert!(s.facts.snapshot.is_none() && s.facts.rpo_secs.is_none());
    assert!(s.facts.locks.iter().all(|l| !l.held));
}

#[tokio::test]
async fn after_a_good_night_everything_is_ok() {
    let host = Host::new(true);
    let now = Utc::now();
    let file = host.good_night(now);
    let s = host.status(now).await;
    assert_eq!(s.severity, Severity::Ok, "{}", table(&s));
    let a = s.facts.archive.as_ref().unwrap();
    assert_eq!(a.file, file);
    assert_eq!(
        (a.size_bytes, a.verified, a.uploaded),
        (4096, true, Some(true))
    );
    assert_eq!(a.age_secs, 6 * 3600);
    assert_eq!(a.kind.as_deref(), Some("full"));
    assert_eq!(a.present_in_s3, None, "no probe: unknown");
    assert_eq!(s.facts.rpo_secs, Some(6 * 3600));
    assert_eq!(s.facts.snapshot.as_ref().unwrap().age_secs, Some(20 * 60));
    assert!(table(&s).ends_with("dr-status: OK: every check passed"));
    // The JSON document reads back.
    let json = serde_json::to_string(&s).unwrap();
    let back: Status = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(json.contains("\"schema_version\":1"));
}

#[tokio::test]
async fn an_old_archive_is_critical_and_an_unverified_one_a_warning() {
    let host = Host::new(false);
    let now = Utc::now();
    host.snapshot(41, now - Span::minutes(20));
    host.archive(40, now - Span::hours(30), true);
    let s = host.status(now).await;
    assert_eq!(s.severity, Severity::Critical, "{}", table(&s));
    assert!(
        check(&s, "archive").message.contains("older than 1d 2h"),
        "{}",
        table(&s)
    );
    // A fresh archive that verify-car has not passed on.
    host.archive(41, now - Span::hours(1), false);
    let s = host.status(now).await;
    assert_eq!(s.severity, Severity::Warning, "{}", table(&s));
    assert_eq!(check(&s, "archive_verified").severity, Severity::Warning);
    assert_eq!(check(&s, "upload").message, "upload off (UPLOAD=0)");
    assert_eq!(
        s.facts.rpo_secs,
        Some(3600),
        "upload off: the local archive counts"
    );
}

/// The thresholds come from the configuration (`ALERT_*`), and the jobs' metrics refresh judges
/// with them as dr-status does: the metrics file's two writers agree.
#[test]
fn configured_thresholds_decide_for_the_jobs_metrics_too() {
    let now = Utc::now();
    let severity = |host: &Host| {
        arke_ops::metrics::write_metrics(&host.config).unwrap();
        let text = std::fs::read_to_string(&host.config.metrics_file).unwrap();
        let samples = parse_exposition(&text);
        let key = "arke_dr_check_status{check=\"archive\"}";
        let code = samples.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        code.unwrap_or_else(|| panic!("no {key}: {text}"))
    };
    for (extra, want) in [
        (&[][..], Severity::Critical),
        (&[("ALERT_ARCHIVE_AGE_HOURS", "48")][..], Severity::Ok),
    ] {
        let host = Host::configured(false, extra);
        host.snapshot(41, now - Span::minutes(20));
        host.archive(40, now - Span::hours(30), true);
        assert_eq!(severity(&host), f64::from(want.exit_code()), "{extra:?}");
    }
    // A warning level above the default critical one moves the critical one up with it.
    let mut s = Settings::default();
    s.overlay([
        ("UPLOAD".to_string(), "0".to_string()),
        ("ALERT_DISK_WARN_PERCENT".to_string(), "97".to_string()),
    ]);
    let t = Config::from_settings(&s).unwrap().thresholds;
    assert_eq!((t.disk_warn_percent, t.disk_crit_percent), (97.0, 97.0));
    for (name, value, needle) in [
        ("ALERT_DISK_WARN_PERCENT", "101", "from 1 to 100"),
        ("ALERT_DISK_CRIT_PERCENT", "50", ">= 80"),
        ("ALERT_ARCHIVE_AGE_HOURS", "0", ">= 1"),
        ("ALERT_LOCK_MINUTES", "half an hour", ">= 1"),
    ] {
        let mut s = Settings::default();
        s.overlay([("UPLOAD".into(), "0".into())]);
        s.overlay([(name.to_string(), value.to_string())]);
        let err = Config::from_settings(&s)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(name) && err.contains(needle), "{err}");
    }
}

#[tokio::test]
async fn a_night_that_did_not_upload_is_critical_unless_it_is_still_running() {
    let host = Host::new(true);
    let now = Utc::now();
    let old = host.good_night(now - Span::days(1));
    // Tonight's archive is written and the job is still running (the upload comes next).
    let tonight = host.archive(42, now - Span::hours(6), true);
    {
        let _running = RunLock::try_acquire(&host.path("backups/.daily-backup.lock")).unwrap();
        let s = host.status(now).await;
        assert_eq!(s.severity, Severity::Warning, "{}", table(&s));
        assert!(
            check(&s, "upload")
                .message
                .contains("daily-backup is running")
        );
    }
    // Its upload failed.
    host.daily_run(now - Span::hours(5), RunStatus::Failed, None);
    let s = host.status(now).await;
    assert_eq!(s.severity, Severity::Critical, "{}", table(&s));
    let up = check(&s, "upload");
    assert!(
        up.message.contains(&format!("{tonight} was not uploaded")),
        "{}",
        up.message
    );
    assert!(
        up.message.contains(&old),
        "names the last upload: {}",
        up.message
    );
    assert_eq!(check(&s, "job_daily_backup").severity, Severity::Critical);
    assert_eq!(
        s.facts.rpo_secs,
        Some(30 * 3600),
        "yesterday's upload is the recovery point"
    );
}

#[tokio::test]
async fn disk_use_over_the_thresholds_warns_then_is_critical() {
    let host = Host::new(false);
    let now = Utc::now();
    host.good_night(now);
    let mut inputs = host.inputs(now);
    inputs.thresholds.disk_warn_percent = 0.0;
    let s = status::collect(&inputs).await;
    assert_eq!(
        check(&s, "disk").severity,
        Severity::Warning,
        "{}",
        table(&s)
    );
    assert_eq!(s.severity, Severity::Warning);
    inputs.thresholds.disk_crit_percent = 0.0;
    let s = status::collect(&inputs).await;
    assert_eq!(check(&s, "disk").severity, Severity::Critical);
    let d = s.facts.disk.as_ref().unwrap();
    assert!(
        d.total_bytes > 0 && d.used_ratio > 0.0 && d.used_ratio <= 1.0,
        "{d:?}"
    );
    assert_eq!(
        s.facts.backups_bytes,
        4096 + file_len(&host, ".json") + file_len(&host, ".verified")
    );
}

fn file_len(host: &Host, ext: &str) -> u64 {
    std::fs::read_dir(host.path("backups"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn a_held_lock_is_seen_without_being_taken() {
    let host = Host::new(false);
    let now = Utc::now();
    host.good_night(now);
    let path = host.path("backups/.daily-backup.lock");
    let held = RunLock::try_acquire(&path).unwrap();
    assert!(matches!(held, LockOutcome::Acquired(_)));
    let contents = std::fs::read_to_string(&path).unwrap();
    // 45 minutes later by dr-status's clock: over the 30-minute limit.
    let s = host.status(Utc::now() + Span::minutes(45)).await;
    let lock = s.facts.locks.iter().find(|l| l.name == "daily").unwrap();
    assert!(lock.held, "{lock:?}");
    assert_eq!(lock.pid, Some(std::process::id()));
    let secs = lock.held_secs.unwrap();
    assert!((45 * 60..45 * 60 + 30).contains(&secs), "{secs}");
    let c = check(&s, "lock_daily");
    assert_eq!(c.severity, Severity::Warning, "{}", table(&s));
    assert!(c.message.contains("longer than 30m"), "{}", c.message);
    assert!(!s.facts.locks.iter().any(|l| l.name != "daily" && l.held));
    // Undisturbed: still ours, still refused to others, the file unchanged.
    assert!(matches!(
        RunLock::try_acquire(&path).unwrap(),
        LockOutcome::Busy
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), contents);
    // An older lock file holds only the pid: the file's mtime says since when.
    std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
    let s = host.status(Utc::now()).await;
    let lock = s.facts.locks.iter().find(|l| l.name == "daily").unwrap();
    assert!(lock.held && lock.held_secs.unwrap() < 30, "{lock:?}");
    drop(held);
    let s = host.status(Utc::now()).await;
    assert!(
        s.facts.locks.iter().all(|l| !l.held),
        "released: {:?}",
        s.facts.locks
    );
    assert_eq!(s.severity, Severity::Ok, "{}", table(&s));
}

#[tokio::test]
async fn an_unreachable_node_is_a_warning_within_the_deadline() {
    let host = Host::new(false);
    let now = Utc::now();
    host.good_night(now);
    let mut cfg = KuboConfig::new("http://127.0.0.1:9", None).unwrap();
    cfg.retries = 0;
    let kubo = Kubo::new(cfg).unwrap();
    let inputs = Inputs {
        node: Some(&kubo),
        node_timeout: Duration::from_secs(3),
        ..host.inputs(now)
    };
    let started = Instant::now();
    let s = status::collect(&inputs).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(s.facts.node.state, NodeState::Unreachable);
    assert_eq!(s.facts.node.events_since_snapshot, None);
    assert_eq!(
        check(&s, "node").severity,
        Severity::Warning,
        "{}",
        table(&s)
    );
    assert_eq!(s.severity, Severity::Warning);
}

/// A stand-in for the S3 client: what HEAD answers.
struct Probe(Result<Option<u64>, String>);

impl RemoteProbe for Probe {
    async fn head(&self, _file_name: &str) -> Result<Option<u64>, String> {
        self.0.clone()
    }
}

#[tokio::test]
async fn the_remote_probe_decides_presence_in_s3() {
    let host = Host::new(true);
    let now = Utc::now();
    host.good_night(now);
    let run = async |answer| {
        let probe = Probe(answer);
        let inputs = Inputs {
            config: &host.config,
            upload: status::UploadSetting::from_config(&host.config),
            thresholds: any_disk(),
            node: None,
            node_timeout: Duration::from_secs(1),
            remote: Some(&probe),
            now,
        };
        status::collect(&inputs).await
    };
    let s = run(Ok(Some(4096))).await;
    assert_eq!(s.severity, Severity::Ok, "{}", table(&s));
    assert_eq!(s.facts.archive.as_ref().unwrap().present_in_s3, Some(true));
    // The record says uploaded, S3 says it is gone (lifecycle rule, deleted by hand).
    let s = run(Ok(None)).await;
    assert_eq!(
        check(&s, "upload").severity,
        Severity::Critical,
        "{}",
        table(&s)
    );
    assert_eq!(s.facts.rpo_secs, None);
    let s = run(Err("AccessDenied".into())).await;
    assert_eq!(check(&s, "s3").severity, Severity::Warning, "{}", table(&s));
    assert_eq!(
        check(&s, "upload").severity,
        Severity::Ok,
        "the record still counts"
    );
}

#[test]
fn the_metrics_file_is_valid_exposition_written_atomically() {
    let host = Host::new(true);
    let now = Utc::now();
    host.good_night(now);
    let _lock = RunLock::try_acquire(&host.path("snapshots/.build-snapshot.lock")).unwrap();
    arke_ops::metrics::write_metrics(&host.config).unwrap();
    arke_ops::metrics::write_metrics(&host.config).unwrap();
    let file = &host.config.metrics_file;
    assert_eq!(file, &host.path("state/metrics/arke_dr.prom"));
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["arke_dr.prom"], "no temporary file left");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let samples = parse_exposition(&std::fs::read_to_string(file).unwrap());
    let get = |key: &str| {
        samples
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no sample {key}: {samples:?}"))
    };
    assert_eq!(get("arke_dr_status_code"), 0.0);
    assert_eq!(get("arke_dr_archive_verified"), 1.0);
    assert_eq!(get("arke_dr_archive_uploaded"), 1.0);
    assert_eq!(get("arke_dr_archive_size_bytes"), 4096.0);
    assert_eq!(get("arke_dr_last_snapshot_seq"), 41.0);
    assert_eq!(get("arke_dr_lock_held{lock=\"build\"}"), 1.0);
    assert_eq!(get("arke_dr_lock_held{lock=\"daily\"}"), 0.0);
    assert_eq!(get("arke_dr_job_last_exit_code{job=\"daily-backup\"}"), 0.0);
    assert_eq!(
        get("arke_dr_job_last_duration_seconds{job=\"daily-backup\"}"),
        180.0
    );
    let rpo = get("arke_dr_rpo_seconds");
    assert!((6.0 * 3600.0..6.0 * 3600.0 + 60.0).contains(&rpo), "{rpo}");
    let ts = get("arke_dr_archive_timestamp_seconds");
    assert_eq!(ts as i64, (now - Span::hours(6)).timestamp());
    assert!(
        samples.iter().all(|(k, _)| !k.contains("events_since")),
        "node not asked"
    );
}

/// Checks every line as Prometheus's text parser would (HELP and TYPE before a family's
/// samples, `name{labels} value`), and returns the samples.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.split_whitespace();
            let (kind, name) = (w.next().unwrap(), w.next().unwrap());
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            if kind == "TYPE" {
                // Gauges, and counters (`_total`: the notification failures).
                let kind = w.next();
                let counter = kind == Some("counter") && name.ends_with("_total");
                assert!(kind == Some("gauge") || counter, "{line}");
                assert!(typed.insert(name.to_string()), "family typed twice: {line}");
            }
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = key.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.starts_with("arke_dr_"),
            "{line}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = key.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        assert!(
            samples.iter().all(|(k, _): &(String, f64)| k != key),
            "duplicate series: {line}"
        );
        samples.push((key.to_string(), v));
    }
    assert!(!samples.is_empty());
    samples
}

#[test]
fn lock_paths_are_the_jobs() {
    let host = Host::new(false);
    let p = |n| status::lock_path(&host.config, n).unwrap();
    assert_eq!(p("build"), host.path("snapshots/.build-snapshot.lock"));
    assert_eq!(p("daily"), host.path("backups/.daily-backup.lock"));
    assert_eq!(p("weekly"), host.path("backups/.weekly-verify.lock"));
    assert!(Path::new(&p("export")).ends_with(".export.lock"));
    assert_eq!(p("drill"), host.path("drill/.restore-drill.lock"));
}

#[tokio::test]
async fn a_held_drill_lock_shows_its_age_and_warns_past_twice_the_rto_target() {
    let host = Host::new(true);
    let now = Utc::now();
    host.good_night(now);
    std::fs::create_dir_all(host.path("drill")).unwrap();
    let path = host.path("drill/.restore-drill.lock");
    let held = RunLock::try_acquire(&path).unwrap();
    assert!(matches!(held, LockOutcome::Acquired(_)));
    // 45 minutes in: past the other locks' 30 minutes, but a drill legitimately runs long.
    let s = host.status(Utc::now() + Span::minutes(45)).await;
    let lock = s.facts.locks.iter().find(|l| l.name == "drill").unwrap();
    assert!(lock.held, "{lock:?}");
    assert_eq!(lock.pid, Some(std::process::id()));
    let secs = lock.held_secs.unwrap();
    assert!((45 * 60..45 * 60 + 30).contains(&secs), "{secs}");
    let c = check(&s, "lock_drill");
    assert_eq!(c.severity, Severity::Ok, "{}", table(&s));
    assert!(
        c.message.starts_with("drill lock held by pid"),
        "{}",
        c.message
    );
    assert!(c.message.contains("for 45m"), "{}", c.message);
    let html = page::render(&s, &[], now);
    let row = "<tr class=\"lock held\" data-lock=\"drill\"><td>drill</td>";
    assert!(html.contains(row), "the page's lock table: {html}");
    assert!(html.contains(&path.display().to_string()), "{html}");
    // Twice the default RTO target (240 minutes) passed: a warning.
    let s = host.status(Utc::now() + Span::hours(9)).await;
    let c = check(&s, "lock_drill");
    assert_eq!(c.severity, Severity::Warning, "{}", table(&s));
    assert!(c.message.contains("longer than 8h 0m"), "{}", c.message);
    drop(held);
    let s = host.status(Utc::now()).await;
    assert_eq!(check(&s, "lock_drill").message, "drill lock free");
    // The limit follows RTO_TARGET_MINUTES.
    let host = Host::configured(true, &[("RTO_TARGET_MINUTES", "60")]);
    assert_eq!(host.config.thresholds.max_drill_lock_secs, 2 * 3600);
}

#[tokio::test]
async fn a_drill_that_is_off_is_said_at_ok_and_keeps_the_last_real_success() {
    let host = Host::new(true);
    let now = Utc::now();
    host.good_night(now);
    // A real drill a month ago, then the drill off (no Kubo binary on the host): no warning
    // that the last success is old, no failure; the last success is still the real drill.
    host.drill_run(now - Span::days(30), None);
    host.drill_run(now - Span::hours(1), Some(OFF));
    let s = host.status(now).await;
    assert_eq!(s.severity, Severity::Ok, "{}", table(&s));
    let c = check(&s, "job_restore_drill");
    assert!(
        c.message
            .starts_with(&format!("restore drill off: {OFF} (at ")),
        "{}",
        c.message
    );
    let runs = s
        .facts
        .runs
        .iter()
        .find(|r| r.job == "restore-drill")
        .unwrap();
    assert_eq!(runs.last.as_ref().unwrap().off.as_deref(), Some(OFF));
    let ok = runs.last_success.as_ref().unwrap();
    assert_eq!((ok.off.as_deref(), ok.rto_secs), (None, Some(600.0)));
    let html = page::render(&s, &[], now);
    assert!(html.contains(&format!("restore drill off: {}", page::esc(OFF))));
    assert!(
        html.contains("<span class=\"badge off\">off</span>"),
        "{html}"
    );
    // A real drill again: the check says its RTO.
    host.drill_run(now, None);
    let s = host.status(now).await;
    let c = check(&s, "job_restore_drill");
    assert!(
        c.message.starts_with("restore-drill ok at"),
        "{}",
        c.message
    );
}

#[tokio::test]
async fn the_offhost_rpo_is_the_newest_upload_of_either_job_confirmed_in_s3() {
    let host = Host::configured(true, &[("HOURLY_ARCHIVE", "1")]);
    assert_eq!(host.config.thresholds.max_offhost_rpo_secs, 2 * 3600);
    let now = Utc::now();
    host.good_night(now);
    let run = async |probe: Option<Probe>| {
        let inputs = Inputs {
            config: &host.config,
            upload: status::UploadSetting::from_config(&host.config),
            thresholds: host.config.thresholds.clone(),
            node: None,
            node_timeout: Duration::from_secs(1),
            remote: probe.as_ref(),
            now,
        };
        status::collect(&inputs).await
    };
    // Only the night's upload, 5 h 57 min ago: over the 2 h of hourly archives.
    let s = run(None).await;
    let o = s.facts.offhost.clone().unwrap();
    assert_eq!(
        (o.job.as_str(), o.rpo_secs),
        ("daily-backup", Some(6 * 3600 - 180))
    );
    let c = check(&s, "offhost_rpo");
    assert_eq!(c.severity, Severity::Warning, "{}", table(&s));
    assert!(c.message.contains("older than 2h"), "{}", c.message);
    // An hourly archive uploaded 20 minutes ago: the newest of the two records.
    let at = now - Span::minutes(20);
    let file = host.archive(42, at, true);
    host.job_run("hourly-snapshot", at, RunStatus::Ok, Some(&file));
    let s = run(None).await;
    assert_eq!(s.severity, Severity::Ok, "{}", table(&s));
    let o = s.facts.offhost.clone().unwrap();
    assert_eq!(
        (o.job.as_str(), o.rpo_secs),
        ("hourly-snapshot", Some(1200))
    );
    assert_eq!((o.file.as_str(), o.confirmed_in_s3), (file.as_str(), None));
    assert_eq!(
        check(&s, "upload").severity,
        Severity::Ok,
        "the hourly record counts"
    );
    // Confirmed by S3 at the recorded size; absent or of another size: critical.
    let s = run(Some(Probe(Ok(Some(4096))))).await;
    assert_eq!(
        s.facts.offhost.as_ref().unwrap().confirmed_in_s3,
        Some(true)
    );
    assert!(check(&s, "offhost_rpo").message.contains("confirmed in S3"));
    for answer in [Ok(None), Ok(Some(17))] {
        let s = run(Some(Probe(answer))).await;
        let c = check(&s, "offhost_rpo");
        assert_eq!(c.severity, Severity::Critical, "{}", table(&s));
    }
    let s = run(Some(Probe(Err("AccessDenied".into())))).await;
    let o = s.facts.offhost.as_ref().unwrap();
    assert_eq!(
        (o.confirmed_in_s3, o.remote_error.as_deref()),
        (None, Some("AccessDenied"))
    );
    assert_eq!(check(&s, "offhost_rpo").severity, Severity::Ok);
    // The metric, from the same facts.
    let s = run(None).await;
    let file = host.path("offhost.prom");
    arke_ops::metrics::write_status(&file, &s).unwrap();
    let samples = parse_exposition(&std::fs::read_to_string(&file).unwrap());
    let rpo = samples
        .iter()
        .find(|(k, _)| k == "arke_dr_offhost_rpo_seconds");
    assert_eq!(rpo.map(|(_, v)| *v), Some(1200.0));
}

#[tokio::test]
async fn upload_off_the_offhost_check_says_so() {
    let host = Host::new(false);
    let now = Utc::now();
    host.good_night(now);
    let s = host.status(now).await;
    let c = check(&s, "offhost_rpo");
    assert_eq!(c.severity, Severity::Ok);
    assert!(c.message.contains("upload off"), "{}", c.message);
    assert_eq!(s.facts.offhost, None);
    assert_eq!(host.config.thresholds.max_offhost_rpo_secs, 26 * 3600);
}
