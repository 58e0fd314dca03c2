//! Run records: what every job leaves behind when it ends, for `dr-status`, the metrics file
//! and the `--json` summary (the same value).
//!
//! `<state-dir>/runs/<job>.json` is the last run, whatever its outcome; `<job>.ok.json` is the
//! last run that succeeded (exit 0 or 7), so a failed night does not hide when the last good
//! archive went to S3. Both are written atomically (temporary file, fsync, rename), mode 0644.
//! The schema is versioned (`schema`); fields are only ever added.
//!
//! Every save also appends the record to the job's bounded history,
//! `<state-dir>/runs/history/<job>.jsonl` (one compact record per line, oldest first, the
//! newest [`HISTORY_LIMIT`] kept), for the status page's chart of the last nights. The history
//! is a convenience: a failure to write it is a warning in the log, never the job's failure,
//! and a line that does not parse is skipped (with a warning), never fatal to reader or writer.

use std::path::{Path, PathBuf};

use arke_core::Exit;
use serde::{Deserialize, Serialize};

/// The schema of a run record.
pub const RUN_SCHEMA: &str = "arke-dr/run@v1";

/// Records kept in each job's history: the status page charts 30 nights of daily-backup, and
/// 100 leaves room for reruns (and is about four days of hourly-snapshot). At a few KiB a
/// record, a history file stays well under a megabyte, rewritten whole at each save.
pub const HISTORY_LIMIT: usize = 100;

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
    /// The archive the run wrote (daily-backup, hourly-snapshot with HOURLY_ARCHIVE) or
    /// verified (weekly-verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveRecord>,
    /// Where the archive went (daily-backup, hourly-snapshot with HOURLY_ARCHIVE, upload on).
    /// An unchanged hour's names the newest archive, already in S3 (`files` empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadRecord>,
    /// Archives deleted by local retention (file names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives_deleted: Vec<String>,
    /// Archives deleted from the bucket by `S3_RETENTION=1` (file names of the `.car`s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s3_archives_deleted: Vec<String>,
    /// Objects in the bucket whose Object Lock retain-until the night extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_lock_extended: Option<u64>,
    /// Snapshots unpinned by prune-snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_pruned: Option<u64>,
    /// Space on the backups folder's file system when the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskRecord>,
    /// Something a person must hear about although the run did its work (a restore drill
    /// whose RTO passed its target): notified as a warning, shown by dr-status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// What a restore drill restored, compared and measured (restore-drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillRecord>,
    /// The job is off by configuration, and why (restore-drill without a Kubo binary): the run
    /// did nothing, its steps recorded as skipped. Not a success: never the last-success record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<String>,
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

/// A record says how its run ended: the exit of a failed run, 7 for skipped items.
impl arke_core::Outcome for RunRecord {
    fn failed(&self) -> Option<Exit> {
        (self.status == RunStatus::Failed)
            .then(|| Exit::from_code(self.exit).unwrap_or(Exit::Failed))
    }
    fn skipped(&self) -> u64 {
        u64::from(self.status == RunStatus::OkWithSkipped)
    }
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
    /// RFC 3339, UTC: when the archive's upload was confirmed (or, in an unchanged hour, when
    /// S3 was found to hold it and its chain): the off-host recovery point.
    pub uploaded_at: String,
    pub size_bytes: u64,
    /// How the remote copy was checked after the upload (`sha256`, `etag-md5`).
    pub verified_by: String,
    /// The server-side encryption HeadObject reported for tonight's archive (`AES256`,
    /// `aws:kms`); absent when the server reports none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<String>,
    /// Tonight's archive's Object Lock retain-until (RFC 3339), on a locked bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
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

/// An empty record of this schema (status ok, exit 0, nothing done): the base that
/// [`crate::job::Job::finish`] and tests fill with struct update syntax, so a field added to
/// the record is written in one place.
impl Default for RunRecord {
    fn default() -> Self {
        RunRecord {
            schema: RUN_SCHEMA.into(),
            job: String::new(),
            started: String::new(),
            finished: String::new(),
            duration_secs: 0.0,
            exit: 0,
            status: RunStatus::Ok,
            error: None,
            steps: Vec::new(),
            snapshot: None,
            archive: None,
            upload: None,
            archives_deleted: Vec::new(),
            s3_archives_deleted: Vec::new(),
            s3_lock_extended: None,
            snapshots_pruned: None,
            disk: None,
            alert: None,
            drill: None,
            off: None,
            log_file: String::new(),
        }
    }
}

impl RunRecord {
    /// `ok`, `ok_with_skipped` or `failed`, as the record's `status` says it.
    pub fn status_label(&self) -> &'static str {
        match self.status {
            RunStatus::Ok => "ok",
            RunStatus::OkWithSkipped => "ok_with_skipped",
            RunStatus::Failed => "failed",
        }
    }

    /// `<state-dir>/runs/<job>.json`.
    pub fn last_path(state_dir: &Path, job: &str) -> PathBuf {
        state_dir.join("runs").join(format!("{job}.json"))
    }

    /// `<state-dir>/runs/<job>.ok.json`.
    pub fn last_ok_path(state_dir: &Path, job: &str) -> PathBuf {
        state_dir.join("runs").join(format!("{job}.ok.json"))
    }

    /// `<state-dir>/runs/history/<job>.jsonl`.
    pub fn history_path(state_dir: &Path, job: &str) -> PathBuf {
        state_dir
            .join("runs")
            .join("history")
            .join(format!("{job}.jsonl"))
    }

    /// Saves the record as the job's last run (and last success when it succeeded and was not
    /// off: an off drill proved nothing), then appends it to the job's history. Only the first
    /// two can fail the save: the history's own failure is logged as a warning (it feeds a
    /// chart, not the recovery guarantee).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        arke_core::atomic_write(&Self::last_path(state_dir, &self.job), &bytes)?;
        if self.status != RunStatus::Failed && self.off.is_none() {
            arke_core::atomic_write(&Self::last_ok_path(state_dir, &self.job), &bytes)?;
        }
        if let Err(e) = self.append_history(state_dir) {
            let path = Self::history_path(state_dir, &self.job);
            tracing::warn!("cannot add the run to its history {}: {e}", path.display());
        }
        Ok(())
    }

    /// Appends the record to the job's history, keeping the newest [`HISTORY_LIMIT`]: the
    /// whole file is rewritten atomically (never a partial line), under a lock on a sibling
    /// file so that two runs of a job ending together do not lose one another's record.
    /// Lines that do not parse are dropped here (with a warning).
    pub fn append_history(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Self::history_path(state_dir, &self.job);
        let dir = path.parent().unwrap_or(state_dir);
        std::fs::create_dir_all(dir)?;
        let _lock = history_lock(dir, &self.job)?;
        let mut lines: Vec<String> = read_history(&path)?
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .collect();
        lines.push(serde_json::to_string(self).map_err(std::io::Error::other)?);
        let keep = lines.split_off(lines.len().saturating_sub(HISTORY_LIMIT));
        let mut bytes = keep.join("\n").into_bytes();
        bytes.push(b'\n');
        arke_core::atomic_write(&path, &bytes)
    }

    /// The job's history, oldest first, at most [`HISTORY_LIMIT`] records; empty when the job
    /// has none yet or it cannot be read (a warning then: the page says "no runs recorded").
    pub fn history(state_dir: &Path, job: &str) -> Vec<RunRecord> {
        let path = Self::history_path(state_dir, job);
        read_history(&path).unwrap_or_else(|e| {
            tracing::warn!("cannot read the run history {}: {e}", path.display());
            Vec::new()
        })
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

/// The records of a history file, the newest [`HISTORY_LIMIT`]; a line that does not parse is
/// skipped with a warning naming the file and line.
fn read_history(path: &Path) -> std::io::Result<Vec<RunRecord>> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<RunRecord> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(
                "{}:{}: skipped, not a run record: {e}",
                path.display(),
                n + 1
            ),
        }
    }
    let excess = out.len().saturating_sub(HISTORY_LIMIT);
    Ok(out.split_off(excess))
}

/// An exclusive lock on `<dir>/.<job>.lock` (blocking: the other holder is a save of a few
/// milliseconds), released when the file is dropped.
fn history_lock(dir: &Path, job: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!(".{job}.lock")))?;
    // 0644 whatever the umask, as every file the tools write (arke-core's FILE_MODE); best
    // effort: the file may be another user's (a job run by hand as root, then by cron).
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    file.lock()?;
    Ok(file)
}

/// The drill in the run record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DrillRecord {
    /// `s3://bucket/prefix/` or the local folder.
    pub source: String,
    /// The chain's newest archive (file name).
    pub archive: String,
    pub chain_length: u64,
    /// The chain's files together.
    pub chain_bytes: u64,
    /// `kubo <binary>` (a temporary repo) or the `--scratch-api` URL.
    pub scratch: String,
    pub phases: DrillPhases,
    /// Entities restored (the scratch node's tips).
    pub entities: u64,
    /// Entities whose live tip descends from the restored one (changed since the archive).
    pub changed_since_archive: u64,
    /// Live entities the archive does not have.
    pub created_since_archive: u64,
    /// `all` or `sample N`.
    pub compare: String,
    /// Blocks the newest archive's closure uses.
    pub blocks_in_archive: u64,
    pub blocks_compared: u64,
    /// Compared blocks the live node lacks (logged; the archive holds the only copy).
    pub blocks_missing_live: u64,
    /// download + verify + import + tips, seconds.
    pub rto_secs: f64,
    pub rto_target_secs: u64,
}

/// Seconds per phase. `download`, `verify`, `import` and `tips` make the RTO.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DrillPhases {
    pub download: f64,
    pub verify: f64,
    /// The restore's plan, node wait, `dag/import` and pins.
    pub import: f64,
    /// The restore's tips, pointer and read-back.
    pub tips: f64,
    /// Not in the RTO: the scratch node's start, the restore's own re-verification, the
    /// comparison with the live node.
    pub scratch_start: f64,
    pub restore_reverify: f64,
    pub compare: f64,
    /// The RTO.
    pub total: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(job: &str, started: &str) -> RunRecord {
        RunRecord {
            job: job.into(),
            started: started.into(),
            finished: "2026-12-01T02:03:00Z".into(),
            duration_secs: 180.0,
            exit: 0,
            status: RunStatus::Ok,
            log_file: "/var/log/arke-dr/daily-backup.log".into(),
            ..RunRecord::default()
        }
    }

    /// A record's exit through [`arke_core::Outcome`]: what the run ended with.
    #[test]
    fn a_record_says_how_its_run_ended() {
        use arke_core::Outcome;
        let ok = record("daily-backup", "2026-12-01T02:00:00Z");
        assert_eq!(ok.exit(), Exit::Ok);
        let skipped = RunRecord {
            exit: 7,
            status: RunStatus::OkWithSkipped,
            ..ok.clone()
        };
        assert_eq!(skipped.exit(), Exit::Skipped);
        let failed = RunRecord {
            exit: 6,
            status: RunStatus::Failed,
            ..ok.clone()
        };
        assert_eq!(failed.exit(), Exit::Remote);
    }

    #[test]
    fn a_failed_run_does_not_replace_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record("daily-backup", "2026-12-01T02:00:00Z");
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

    #[test]
    fn the_history_keeps_the_newest_records_oldest_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(RunRecord::history(dir.path(), "daily-backup").is_empty());
        for i in 0..HISTORY_LIMIT + 5 {
            record("daily-backup", &format!("run-{i}"))
                .save(dir.path())
                .unwrap();
        }
        record("weekly-verify", "weekly").save(dir.path()).unwrap();
        let h = RunRecord::history(dir.path(), "daily-backup");
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].started, "run-5");
        assert_eq!(
            h[HISTORY_LIMIT - 1].started,
            format!("run-{}", HISTORY_LIMIT + 4)
        );
        assert_eq!(RunRecord::history(dir.path(), "weekly-verify").len(), 1);
        let path = RunRecord::history_path(dir.path(), "daily-backup");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), HISTORY_LIMIT, "one record per line");
        for file in [path.clone(), path.with_file_name(".daily-backup.lock")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", file.display());
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn a_corrupt_history_line_is_skipped_and_dropped_at_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        record("daily-backup", "first").save(dir.path()).unwrap();
        let path = RunRecord::history_path(dir.path(), "daily-backup");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"schema\": \"arke-dr/run@v1\", cut short\n");
        std::fs::write(&path, text).unwrap();
        let h = RunRecord::history(dir.path(), "daily-backup");
        assert_eq!(
            h.iter().map(|r| r.started.as_str()).collect::<Vec<_>>(),
            ["first"]
        );
        record("daily-backup", "second").save(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("cut short"));
    }

    #[test]
    fn a_history_that_cannot_be_written_does_not_fail_the_save() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runs")).unwrap();
        // A file where the history folder should be: the history cannot be written.
        std::fs::write(dir.path().join("runs/history"), b"not a folder").unwrap();
        let r = record("daily-backup", "2026-12-01T02:00:00Z");
        r.save(dir.path()).unwrap();
        assert!(r.append_history(dir.path()).is_err());
        let last = RunRecord::load(&RunRecord::last_path(dir.path(), "daily-backup")).unwrap();
        assert_eq!(last, Some(r));
        assert!(RunRecord::history(dir.path(), "daily-backup").is_empty());
    }
}
