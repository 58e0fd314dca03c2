//! The hourly snapshot (cron, minute 17): build-snapshot, then, with `HOURLY_ARCHIVE=1` (the
//! default when upload is on), the last hour off the host:
//!
//! 1. build-snapshot: a build already running (the build lock is held) counts as success:
//!    that build does the same work.
//! 2. export-car: an incremental archive over the newest verified one. Always incremental
//!    (no `FULL_EVERY_DAYS` here, and `INCREMENTAL` is the daily's): the daily job, at 02:00,
//!    starts new chains, so the hourly run stays small; only a folder without any usable
//!    parent gets a full archive from it. Another build-snapshot running does not stop it: the
//!    pointer's snapshot is archived.
//!    Nothing is written when the newest verified archive already holds the pointer's
//!    snapshot ("unchanged": an empty archive every quiet hour would only lengthen the chain).
//! 3. verify-car: the archive with its chain, stamps updated.
//! 4. upload: every chain member S3 lacks, parents first, then the new archive (as the daily).
//!    In an unchanged hour the same step confirms that S3 holds the current archive and its
//!    chain, uploading only what a failed run left out: its record is the off-host recovery
//!    point dr-status reports.
//!
//! The archive steps run under the daily's lock ([`ARCHIVE_LOCK`]): when the daily (or
//! another hourly archive, or a manual export-car) holds it, they are skipped with a log line
//! and the run succeeds, since that job does the same work. No retention and no pruning here:
//! those stay the daily's.

use std::path::{Path, PathBuf};

use arke_core::backup::{LineagePolicy, newest_parent};
use arke_core::kubo::Kubo;
use arke_core::snapshot::Build;
use arke_core::{Exit, Operation, Progress, human_bytes};

use crate::config::Config;
use crate::daily::{
    ARCHIVE_LOCK, ArchiveStore, archive_record, export_step, pointer_snapshot, upload_step,
    verify_step, with_pointer,
};
use crate::job::{Done, Job};
use crate::ops::{ensure_dir, file_name, kubo};
use crate::runs::{ArchiveRecord, RunRecord, SnapshotRecord, UploadRecord};
use arke_core::Error;

/// The hourly job's name.
pub const JOB: &str = "hourly-snapshot";

/// What the archive steps did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum ArchiveOutcome {
    /// `HOURLY_ARCHIVE=0`.
    #[default]
    Off,
    /// A new archive written and verified.
    Written,
    /// The newest verified archive already holds the pointer's snapshot: nothing written.
    Unchanged(String),
    /// Another job holds the archive lock (or export-car's own).
    Skipped,
}

/// What the hour produced, for the record.
#[derive(Debug, Default)]
struct Hour {
    snapshot: Option<SnapshotRecord>,
    /// The build lock was held: another build-snapshot is running.
    build_busy: bool,
    outcome: ArchiveOutcome,
    archive: Option<ArchiveRecord>,
    upload: Option<UploadRecord>,
}

/// Builds a snapshot, archives the hour when configured, and returns the record. `store` is
/// `Ok(None)` when upload is off (an hourly archive is then written and verified, not
/// uploaded), `Err` when the S3 client could not be set up: the snapshot and the archive are
/// still made, and the upload step fails with that error.
pub async fn run<S: ArchiveStore>(
    cfg: &Config,
    log_file: &Path,
    store: Result<Option<&S>, Error>,
    progress: &Progress,
) -> RunRecord {
    let mut job = Job::start(JOB, log_file);
    let mut hour = Hour::default();
    let outcome = steps(cfg, store, progress, &mut job, &mut hour).await;
    let error = outcome.err();
    let summary = summary_line(&job, &hour, error.as_ref());
    let mut rec = job.finish(error.as_ref());
    match &error {
        None => tracing::info!("summary: {summary}"),
        Some(_) => tracing::error!("summary: {summary}"),
    }
    rec.snapshot = hour.snapshot;
    rec.archive = hour.archive;
    rec.upload = hour.upload;
    rec
}

async fn steps<S: ArchiveStore>(
    cfg: &Config,
    store: Result<Option<&S>, Error>,
    progress: &Progress,
    job: &mut Job,
    hour: &mut Hour,
) -> Result<(), Error> {
    ensure_dir(&cfg.snapshots_dir)?;
    let kubo = kubo(cfg)?;
    let cfg = &with_pointer(cfg, &kubo).await?;
    hour.snapshot = job
        .step("build-snapshot", "incremental", build(cfg, &kubo, progress))
        .await?;
    hour.build_busy = hour.snapshot.is_none();
    if !cfg.hourly_archive {
        return Ok(());
    }
    ensure_dir(&cfg.backups_dir)?;
    let Some(_lock) = archive_lock(cfg)? else {
        hour.outcome = ArchiveOutcome::Skipped;
        job.skip(
            "export-car",
            "daily-backup or another hourly archive holds the archive lock; it does the same work",
        );
        return Ok(());
    };
    archive_steps(cfg, &kubo, store, progress, job, hour).await
}

/// Export (or "unchanged"), verify, upload, under the archive lock.
async fn archive_steps<S: ArchiveStore>(
    cfg: &Config,
    kubo: &Kubo,
    store: Result<Option<&S>, Error>,
    progress: &Progress,
    job: &mut Job,
    hour: &mut Hour,
) -> Result<(), Error> {
    let (_, snapshot) = pointer_snapshot(cfg, kubo).await?;
    // Never FULL_EVERY_DAYS here: see the module docs.
    let policy = LineagePolicy::default();
    let chain = match newest_parent(&cfg.backups_dir, policy, chrono::Utc::now()) {
        Ok((chain, held)) if held == snapshot => {
            let newest = chain.last().map_or(String::new(), |p| file_name(p));
            let why = format!("unchanged: {newest} holds snapshot {snapshot}");
            job.skip("export-car", &why);
            hour.outcome = ArchiveOutcome::Unchanged(newest);
            chain
        }
        _ if export_busy(cfg) => {
            hour.outcome = ArchiveOutcome::Skipped;
            job.skip(
                "export-car",
                "another export-car is running; it does the same work",
            );
            return Ok(());
        }
        _ => {
            let what = "incremental over the newest verified archive";
            // Always incremental: INCREMENTAL=0 is the daily's choice of full nights (and
            // turns the hourly archive off by default).
            let cfg = &Config {
                incremental: true,
                ..cfg.clone()
            };
            let export = export_step(cfg, kubo, progress, JOB, policy);
            let report = match job.step("export-car", what, export).await {
                Ok(r) => r,
                // A manual export-car took its lock since export_busy looked: the same.
                Err(e) if e.exit() == Exit::Locked => {
                    hour.outcome = ArchiveOutcome::Skipped;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let car = PathBuf::from(&report.car_path);
            let chain = job
                .step(
                    "verify-car",
                    &report.car_path,
                    verify_step(&car, progress, JOB, cfg.verify_full_chain),
                )
                .await?;
            hour.archive = Some(archive_record(&report, true));
            hour.outcome = ArchiveOutcome::Written;
            chain
        }
    };
    match store {
        Ok(Some(s)) => {
            let unchanged = matches!(hour.outcome, ArchiveOutcome::Unchanged(_));
            let what = s.location();
            let up = upload_step(s, &chain, unchanged);
            hour.upload = Some(job.step("upload", &what, up).await?);
        }
        Ok(None) => job.skip("upload", "UPLOAD=0"),
        Err(e) => job.step::<(), _>("upload", "S3", async { Err(e) }).await?,
    }
    Ok(())
}

/// The archive lock without waiting: `None` when another job holds it.
fn archive_lock(cfg: &Config) -> Result<Option<arke_core::RunLock>, Error> {
    let path = cfg.backups_dir.join(ARCHIVE_LOCK);
    match arke_core::RunLock::try_acquire(&path) {
        Ok(arke_core::LockOutcome::Acquired(l)) => Ok(Some(l)),
        Ok(arke_core::LockOutcome::Busy) => {
            tracing::info!(
                "{} is held (daily-backup or another hourly archive): the archive steps are skipped",
                path.display()
            );
            Ok(None)
        }
        Err(e) => {
            let msg = format!("lock file {}: {e}", path.display());
            Err(Error::new(Exit::Io, msg))
        }
    }
}

/// A manual export-car holds its own lock (`.export.lock`; the daily's run holds the
/// archive lock too): the hour's export would fail on it.
fn export_busy(cfg: &Config) -> bool {
    let path = cfg.backups_dir.join(".export.lock");
    let busy = matches!(
        arke_core::RunLock::try_acquire(&path),
        Ok(arke_core::LockOutcome::Busy)
    );
    if busy {
        tracing::info!("{} is held: the archive steps are skipped", path.display());
    }
    busy
}

async fn build(
    cfg: &Config,
    kubo: &Kubo,
    progress: &Progress,
) -> Result<Done<Option<SnapshotRecord>>, Error> {
    let mut opts =
        arke_core::snapshot::BuildOptions::new(&cfg.index_pointer_path, cfg.snapshots_dir.clone());
    opts.index_root = cfg.index_root.clone();
    opts.memory = arke_core::spill::MemoryBudget::from_env()?;
    let op = Build { kubo };
    let plan = match op.plan(&opts, progress).await {
        Ok(plan) => plan,
        Err(e) => {
            let e = Error::from(e);
            // The lock is taken by planning: another build does the same work.
            if e.exit() == Exit::Locked {
                return Ok(Done::ok(None, "another build-snapshot is running"));
            }
            return Err(e);
        }
    };
    let outcome = op.apply(plan, progress).await?;
    let r = outcome.report();
    let built = matches!(outcome, arke_core::snapshot::BuildOutcome::Built(_));
    let cid = r.cid.clone().unwrap_or_default();
    let detail = format!(
        "{} {cid} seq {}",
        if built { "built" } else { "unchanged since" },
        r.seq
    );
    let value = Some(SnapshotRecord {
        cid,
        seq: r.seq,
        built,
    });
    Ok(Done::of(value, r, detail))
}

/// The last log line: the snapshot, then the archive and the upload.
fn summary_line(job: &Job, hour: &Hour, err: Option<&Error>) -> String {
    let total = job.elapsed();
    if let Some(e) = err {
        return format!(
            "FAILED exit={} {} total={total:.0}s",
            e.exit().code(),
            e.line()
        );
    }
    if hour.build_busy && hour.outcome == ArchiveOutcome::Off {
        return "skipped, another build-snapshot is running".into();
    }
    let status = if job.skipped_items() {
        "ok-with-skipped-items exit=7"
    } else {
        "ok"
    };
    let snapshot = match &hour.snapshot {
        _ if hour.build_busy => "skipped (another build-snapshot is running)".to_string(),
        Some(s) => {
            let what = if s.built { "built" } else { "unchanged" };
            format!("{} seq {} ({what})", s.cid, s.seq)
        }
        None => "-".to_string(),
    };
    let archive = match (&hour.outcome, &hour.archive) {
        (ArchiveOutcome::Off, _) => "off".to_string(),
        (ArchiveOutcome::Skipped, _) => "skipped (archive lock held)".to_string(),
        (ArchiveOutcome::Unchanged(f), _) => format!("unchanged ({f})"),
        (ArchiveOutcome::Written, Some(a)) => {
            format!("{} ({}, {})", a.file, a.kind, human_bytes(a.size_bytes))
        }
        (ArchiveOutcome::Written, None) => "-".to_string(),
    };
    let upload = hour.upload.as_ref().map_or("skipped".to_string(), |u| {
        format!("{} ({} file(s))", u.url, u.files.len())
    });
    format!(
        "{status} snapshot={snapshot} archive={archive} upload={upload} build={:.0}s export={:.0}s \
         verify={:.0}s upload={:.0}s total={total:.0}s",
        job.secs("build-snapshot"),
        job.secs("export-car"),
        job.secs("verify-car"),
        job.secs("upload"),
    )
}
