//! Phase 1: the facts on the local disk. No network, no lock taken; a few small files read.

use std::path::{Path, PathBuf};

use arke_core::backup::BackupFiles;
use arke_core::model::{BackupMeta, SnapshotMeta};
use arke_core::snapshot::PublishedMarker;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::time::{age, mtime, parse_time, rfc3339};
use super::{
    ArchiveFacts, DiskFacts, Facts, OffhostFacts, Problem, RunFacts, RunSummary, SnapshotFacts,
    UploadFacts, UploadSetting,
};
use crate::config::Config;
use crate::ops::file_name;
use crate::runs::{RunRecord, UploadRecord};

/// The jobs whose run records are read, in the order they are shown.
pub const JOBS: [&str; 4] = [
    "daily-backup",
    "weekly-verify",
    "restore-drill",
    "hourly-snapshot",
];

/// Why a local fact could not be read (each becomes a check's message).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> StatusError + '_ {
    move |source| StatusError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Every local fact: snapshot, newest archive, run records, disk, locks.
pub fn local_facts(config: &Config, upload: &UploadSetting, now: DateTime<Utc>) -> Facts {
    let mut f = Facts {
        snapshots_dir: config.snapshots_dir.clone(),
        backups_dir: config.backups_dir.clone(),
        ..Facts::default()
    };
    let mut problem = |check: &str, e: StatusError| {
        f.problems.push(Problem {
            check: check.into(),
            message: e.to_string(),
        })
    };
    let snapshot = snapshot(&config.snapshots_dir, now).unwrap_or_else(|e| {
        problem("snapshot", e);
        None
    });
    let mut daily = Vec::new();
    let mut runs = Vec::new();
    for job in JOBS {
        let (facts, records) = run_facts(&config.state_dir, job, now, &mut problem);
        // Both jobs upload archives (hourly-snapshot with HOURLY_ARCHIVE).
        if job == "daily-backup" || job == "hourly-snapshot" {
            daily.extend(records);
        }
        runs.push(facts);
    }
    let backups = backups(&config.backups_dir, now).unwrap_or_else(|e| {
        problem("archive", e);
        (0, 0, None)
    });
    let disk = disk(&config.backups_dir)
        .map_err(|e| problem("disk", e))
        .ok();
    f.snapshot = snapshot;
    f.published = PublishedMarker::read(&config.snapshots_dir).unwrap_or_else(|e| {
        f.problems.push(Problem {
            check: "snapshot_writer".into(),
            message: format!("{e:#}"),
        });
        None
    });
    f.runs = runs;
    (f.archive_count, f.backups_bytes, f.archive) = backups;
    f.disk = disk;
    f.last_upload = last_upload(&daily);
    f.offhost = offhost(&daily, upload, now);
    if let Some(a) = f.archive.as_mut() {
        upload_evidence(a, &daily, upload);
    }
    f.locks = super::locks::lock_facts(config, now);
    f.notify = crate::notify::notify_facts(&config.state_dir);
    fill_rpo(&mut f, upload, now);
    f
}

/// `latest.json`; `None` when there is none yet.
fn snapshot(dir: &Path, now: DateTime<Utc>) -> Result<Option<SnapshotFacts>, StatusError> {
    let path = dir.join("latest.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(&path)(e)),
    };
    let meta = SnapshotMeta::parse(&bytes).map_err(|e| StatusError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let at = meta
        .ts
        .as_deref()
        .and_then(parse_time)
        .or_else(|| mtime(&path));
    Ok(Some(SnapshotFacts {
        seq: meta.seq,
        cid: meta.cid.to_string(),
        ts: at.map(rfc3339),
        timestamp: at.map(|t| t.timestamp()),
        age_secs: at.map(|t| age(t, now)),
        entities: meta.count,
    }))
}

/// (archives, bytes of every file in the folder, the newest archive). A folder that does not
/// exist holds no archive (the checks say so).
fn backups(
    dir: &Path,
    now: DateTime<Utc>,
) -> Result<(u64, u64, Option<ArchiveFacts>), StatusError> {
    let archives = match BackupFiles::new(dir).archives() {
        Ok(a) => a,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0, None)),
        Err(e) => return Err(read_err(dir)(e)),
    };
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let meta = entry.and_then(|e| e.metadata()).map_err(read_err(dir))?;
        if meta.is_file() {
            bytes += meta.len();
        }
    }
    let newest = archives
        .last()
        .map(|a| archive(&a.car, a.seq, a.stamp, now));
    Ok((archives.len() as u64, bytes, newest))
}

/// One archive: its size, its `.json`, its `.verified` stamp.
fn archive(car: &Path, seq: u64, stamp: DateTime<Utc>, now: DateTime<Utc>) -> ArchiveFacts {
    let file = file_name(car);
    let size_bytes = std::fs::metadata(car).map(|m| m.len()).unwrap_or(0);
    let meta_path = car.with_extension("json");
    let meta = std::fs::read(&meta_path)
        .map_err(|e| e.to_string())
        .and_then(|b| BackupMeta::parse(&b).map_err(|e| e.to_string()));
    let extra = |key: &str| meta.as_ref().ok().and_then(|m| m.extra.get(key).cloned());
    let text = |key: &str| extra(key).and_then(|v| v.as_str().map(str::to_string));
    let created = text("created")
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(stamp);
    let (verified, verified_at) = verified_stamp(car, &file, size_bytes);
    ArchiveFacts {
        path: car.to_path_buf(),
        seq,
        created: rfc3339(created),
        timestamp: created.timestamp(),
        age_secs: age(created, now),
        size_bytes,
        kind: text("kind"),
        parent: text("parent"),
        partial: extra("partial").and_then(|v| v.as_bool()),
        metadata_error: meta.err().map(|e| format!("{}: {e}", meta_path.display())),
        verified,
        verified_at,
        uploaded: None,
        upload_url: None,
        uploaded_at: None,
        present_in_s3: None,
        remote_size: None,
        remote_error: None,
        file,
    }
}

/// verify-car's `<name>.verified` (`arke/verified@v1`): it counts only when it names this file
/// at its current size, as export-car requires of a parent.
fn verified_stamp(car: &Path, file: &str, size: u64) -> (bool, Option<String>) {
    let Some(v) = std::fs::read(car.with_extension("verified"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return (false, None);
    };
    let ok = v["file"].as_str() == Some(file) && v["size"].as_u64() == Some(size);
    (ok, v["verified_at"].as_str().map(str::to_string))
}

/// A job's last run and last success, and the records themselves (the upload evidence).
fn run_facts(
    state_dir: &Path,
    job: &str,
    now: DateTime<Utc>,
    problem: &mut impl FnMut(&str, StatusError),
) -> (RunFacts, Vec<RunRecord>) {
    let check = format!("job_{}", job.replace('-', "_"));
    let mut load = |path: PathBuf| {
        RunRecord::load(&path)
            .map_err(|e| problem(&check, read_err(&path)(e)))
            .ok()
            .flatten()
    };
    let last = load(RunRecord::last_path(state_dir, job));
    let last_ok = load(RunRecord::last_ok_path(state_dir, job));
    let facts = RunFacts {
        job: job.to_string(),
        last: last.as_ref().map(|r| summary(r, now)),
        last_success: last_ok.as_ref().map(|r| summary(r, now)),
    };
    (facts, last.into_iter().chain(last_ok).collect())
}

fn summary(r: &RunRecord, now: DateTime<Utc>) -> RunSummary {
    let finished = parse_time(&r.finished).map(|t| t.timestamp());
    RunSummary {
        started: r.started.clone(),
        finished: r.finished.clone(),
        finished_timestamp: finished,
        age_secs: finished.map(|t| now.timestamp() - t),
        duration_secs: r.duration_secs,
        exit: r.exit,
        status: r.status,
        error: r.error.clone(),
        rto_secs: r.drill.as_ref().map(|d| d.rto_secs),
        rto_target_secs: r.drill.as_ref().map(|d| d.rto_target_secs),
        off: r.off.clone(),
    }
}

/// Whether a daily run uploaded this archive (upload off: not asked).
fn upload_evidence(a: &mut ArchiveFacts, daily: &[RunRecord], upload: &UploadSetting) {
    if matches!(upload, UploadSetting::Off) {
        return;
    }
    let hit = daily
        .iter()
        .filter_map(|r| r.upload.as_ref())
        .find(|u| names_file(u, &a.file));
    a.uploaded = Some(hit.is_some());
    a.upload_url = hit.map(|u| u.url.clone());
    a.uploaded_at = hit.map(|u| u.uploaded_at.clone());
}

fn names_file(u: &UploadRecord, file: &str) -> bool {
    let base = |s: &str| s.rsplit('/').next().map(str::to_string);
    base(&u.url).as_deref() == Some(file)
        || u.files.iter().any(|f| base(f).as_deref() == Some(file))
}

/// The most recent upload any daily record tells of.
fn last_upload(daily: &[RunRecord]) -> Option<UploadFacts> {
    daily
        .iter()
        .filter_map(|r| r.upload.as_ref())
        .map(|u| {
            let file = u.url.rsplit('/').next().unwrap_or_default().to_string();
            UploadFacts {
                archive_timestamp: name_stamp(&file).map(|t| t.timestamp()),
                file,
                url: u.url.clone(),
                uploaded_at: u.uploaded_at.clone(),
            }
        })
        .max_by(|a, b| a.uploaded_at.cmp(&b.uploaded_at))
}

/// The off-host recovery point from the run records: the newest upload (`uploaded_at`, when S3
/// was confirmed to hold the node's then current archive and its chain), `None` when upload is
/// off or nothing was uploaded yet.
fn offhost(
    records: &[RunRecord],
    upload: &UploadSetting,
    now: DateTime<Utc>,
) -> Option<OffhostFacts> {
    if !matches!(upload, UploadSetting::To { .. }) {
        return None;
    }
    let (job, u) = records
        .iter()
        .filter_map(|r| r.upload.as_ref().map(|u| (&r.job, u)))
        .max_by(|a, b| a.1.uploaded_at.cmp(&b.1.uploaded_at))?;
    let at = parse_time(&u.uploaded_at);
    Some(OffhostFacts {
        job: job.clone(),
        file: u.url.rsplit('/').next().unwrap_or_default().to_string(),
        url: u.url.clone(),
        size_bytes: u.size_bytes,
        uploaded_at: u.uploaded_at.clone(),
        rpo_secs: at.map(|t| now.timestamp() - t.timestamp()),
        confirmed_in_s3: None,
        remote_error: None,
    })
}

/// The recovery point: the newest archive where it must be (S3 when upload is on).
pub(super) fn fill_rpo(f: &mut Facts, upload: &UploadSetting, now: DateTime<Utc>) {
    let newest_safe = match (upload, &f.archive) {
        (UploadSetting::Off, a) => a.as_ref().map(|a| a.timestamp),
        (_, Some(a)) if a.present_in_s3 == Some(true) => Some(a.timestamp),
        (_, Some(a)) if a.present_in_s3.is_none() && a.uploaded == Some(true) => Some(a.timestamp),
        (_, a) => f
            .last_upload
            .as_ref()
            .filter(|u| a.as_ref().is_none_or(|a| a.file != u.file))
            .and_then(|u| u.archive_timestamp),
    };
    f.rpo_secs = newest_safe.map(|t| now.timestamp() - t);
}

/// statvfs of the backups folder (or of its nearest existing parent on a fresh host).
fn disk(dir: &Path) -> Result<DiskFacts, StatusError> {
    let at = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    let st = rustix::fs::statvfs(at).map_err(|e| read_err(at)(e.into()))?;
    let unit = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    let avail = st.f_bavail;
    Ok(DiskFacts {
        path: at.to_path_buf(),
        total_bytes: st.f_blocks.saturating_mul(unit),
        free_bytes: avail.saturating_mul(unit),
        used_ratio: used_ratio(used, avail),
    })
}

/// `df`'s Use%: used / (used + available to unprivileged users), so root's reserve counts as
/// used and 100% means the jobs cannot write.
pub(super) fn used_ratio(used: u64, avail: u64) -> f64 {
    let all = used.saturating_add(avail);
    if all == 0 {
        0.0
    } else {
        used as f64 / all as f64
    }
}

/// The stamp in `arke-{seq}-{YYYYMMDD-HHMMSS}[-n].car` (UTC), as the core reads it.
pub(super) fn name_stamp(name: &str) -> Option<DateTime<Utc>> {
    arke_core::backup::ArchiveName::parse(name)?.stamp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_stamps_and_df_ratios() {
        let t = name_stamp("arke-5-20261101-020304.car").unwrap();
        assert_eq!(rfc3339(t), "2026-11-01T02:03:04Z");
        assert_eq!(
            name_stamp("arke-5-20261101-020304-2.car").map(rfc3339),
            Some("2026-11-01T02:03:04Z".into())
        );
        assert_eq!(name_stamp("arke-5.car"), None);
        assert_eq!(used_ratio(0, 0), 0.0);
        assert_eq!(used_ratio(80, 20), 0.8);
        assert_eq!(used_ratio(100, 0), 1.0);
    }
}
