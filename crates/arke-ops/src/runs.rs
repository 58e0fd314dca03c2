//! Run records: what every job leaves behind when it ends, for `dr-status`, the metrics file
//! and the `--json` summary (the same value).
//!
//! `<state-dir>/runs/<job>.json` is the last run, whatever its outcome; `<job>.ok.json` is the
//! last run that succeeded (exit 0 or 7), so a failed night does not hide when the last good
//! archive went to S3. Both are written atomically (temporary file, fsync, rename), mode 0644.
//! The schema is versioned (`schema`); fields are only ever added.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The schema of a run record.
pub const RUN_SCHEMA: &str = "arke-dr/run@v1";

/// One job run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// Always [`RUN_SCHEMA`].
    pub schema: String,
    /// `daily-backup`, `weekly-verify` or `hourly-snapshot`.
    pub job: String,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC.
    pub finished: String,
    pub duration_secs: f64,
    /// The job's exit code (see the job's `--help`).
    pub exit: u8,
    pub status: RunStatus,
    /// The failure, one line, when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The steps in the order they ran (a step not reached is absent).
    pub steps: Vec<StepRecord>,
    /// The snapshot the run built or found (daily-backup, hourly-snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRecord>,
    /// The archive the run wrote (daily-backup) or verified (weekly-verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveRecord>,
    /// Where the archive went (daily-backup with upload on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadRecord>,
    /// Archives deleted by local retention (file names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives_deleted: Vec<String>,
    /// Snapshots unpinned by prune-snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_pruned: Option<u64>,
    /// Space on the backups folder's file system when the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskRecord>,
    /// The job's log file.
    pub log_file: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    /// Completed; damaged items were skipped and named in the log (exit 7).
    OkWithSkipped,
    Failed,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// `build-snapshot`, `export-car`, `verify-car`, `upload`, `retention`, `prune-snapshots`,
    /// `verify-snapshot`.
    pub name: String,
    pub status: StepStatus,
    /// The exit code the step would have as its own binary.
    pub exit: u8,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_secs: f64,
    /// One line: what it did, or why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    OkWithSkipped,
    /// Not run, by configuration (`UPLOAD=0`, `--no-prune`).
    Skipped,
    Failed,
}

/// A snapshot, as the run saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRecord {
    pub cid: String,
    pub seq: u64,
    /// False when nothing had changed since the last build.
    pub built: bool,
}

/// An archive, as the run wrote or read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveRecord {
    /// File name in the backups folder (`arke-{seq}-{YYYYMMDD-HHMMSS}.car`).
    pub file: String,
    pub path: String,
    /// `full` or `incremental`.
    pub kind: String,
    /// The parent's file name, for an incremental archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub size_bytes: u64,
    pub blocks: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    pub snapshot_cid: String,
    pub seq: u64,
    /// verify-car passed on it (with its chain) in this run.
    pub verified: bool,
}

/// An upload to S3.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadRecord {
    pub bucket: String,
    /// Ends in `/`.
    pub prefix: String,
    /// `s3://bucket/prefix/file` of tonight's archive.
    pub url: String,
    /// RFC 3339, UTC: when the archive's upload was confirmed.
    pub uploaded_at: String,
    pub size_bytes: u64,
    /// How the remote copy was checked after the upload (`sha256`, `etag-md5`).
    pub verified_by: String,
    /// Every file uploaded by this run, in order (chain members S3 lacked first, each `.car`
    /// before its `.json`).
    pub files: Vec<String>,
}

/// Disk space where the archives are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskRecord {
    pub path: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl RunRecord {
    /// `<state-dir>/runs/<job>.json`.
    pub fn last_path(state_dir: &Path, job: &str) -> PathBuf {
        state_dir.join("runs").join(format!("{job}.json"))
    }

    /// `<state-dir>/runs/<job>.ok.json`.
    pub fn last_ok_path(state_dir: &Path, job: &str) -> PathBuf {
        state_dir.join("runs").join(format!("{job}.ok.json"))
    }

    /// Saves the record as the job's last run (and last success when it succeeded).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        arke_core::atomic_write(&Self::last_path(state_dir, &self.job), &bytes)?;
        if self.status != RunStatus::Failed {
            arke_core::atomic_write(&Self::last_ok_path(state_dir, &self.job), &bytes)?;
        }
        Ok(())
    }

    /// Reads a record; `Ok(None)` when the file does not exist (the job never ran here).
    pub fn load(path: &Path) -> std::io::Result<Option<RunRecord>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_does_not_replace_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RunRecord {
            schema: RUN_SCHEMA.into(),
            job: "daily-backup".into(),
            started: "2026-12-01T02:00:00Z".into(),
            finished: "2026-12-01T02:03:00Z".into(),
            duration_secs: 180.0,
            exit: 0,
            status: RunStatus::Ok,
            error: None,
            steps: vec![],
            snapshot: None,
            archive: None,
            upload: None,
            archives_deleted: vec![],
            snapshots_pruned: None,
            disk: None,
            log_file: "/var/log/arke-dr/daily-backup.log".into(),
        };
        r.save(dir.path()).unwrap();
        let ok = r.clone();
        r.status = RunStatus::Failed;
        r.exit = 6;
        r.save(dir.path()).unwrap();
        let last = RunRecord::load(&RunRecord::last_path(dir.path(), "daily-backup")).unwrap();
        let last_ok =
            RunRecord::load(&RunRecord::last_ok_path(dir.path(), "daily-backup")).unwrap();
        assert_eq!(last.unwrap().exit, 6);
        assert_eq!(last_ok, Some(ok));
        assert_eq!(
            RunRecord::load(&dir.path().join("absent.json")).unwrap(),
            None
        );
    }
}
