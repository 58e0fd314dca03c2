//! The weekly deep verification (cron, Sunday 05:00 UTC, clear of the 03:00 EBS snapshot and
//! the Lambda's reboot):
//!
//! 1. verify-snapshot --deep: the pointer's snapshot, every block, every tip against MFS
//! 2. verify-car: the newest local archive in full, with its chain (every block re-hashed,
//!    the closure walked)
//!
//! Both run even when the first fails (two independent copies of the truth: the node and the
//! archive); the run's exit code is the first failure's.

use arke_core::human_bytes;
use std::path::PathBuf;

use arke_core::Progress;
use arke_core::backup::BackupFiles;
use arke_core::kubo::Kubo;
use arke_core::snapshot::{VerifyOptions, verify};
use arke_core::{Exit, RunLock};

use crate::config::Config;
use crate::daily::{pointer_snapshot, verify_archive, with_pointer};
use crate::job::{Done, Job, disk_of};
use crate::ops::{ensure_dir, file_name, kubo};
use crate::runs::{ArchiveRecord, RunRecord, SnapshotRecord};
use arke_core::Error;

/// The weekly job's name.
pub const JOB: &str = "weekly-verify";

/// Runs both checks and returns the record.
pub async fn run(cfg: &Config, log_file: &std::path::Path, progress: &Progress) -> RunRecord {
    let mut job = Job::start(JOB, log_file);
    let mut snapshot = None;
    let mut archive = None;
    let outcome = checks(cfg, progress, &mut job, &mut snapshot, &mut archive).await;
    let line = match &outcome {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("FAILED exit={} {}", e.exit().code(), e.line()),
    };
    tracing::info!(
        "summary: {line} snapshot={} archive={} snapshot_check={:.0}s archive_check={:.0}s total={:.0}s",
        snapshot
            .as_ref()
            .map_or("-", |s: &SnapshotRecord| s.cid.as_str()),
        archive
            .as_ref()
            .map_or("none", |a: &ArchiveRecord| a.file.as_str()),
        job.secs("verify-snapshot"),
        job.secs("verify-car"),
        job.elapsed()
    );
    let mut rec = job.finish(outcome.as_ref().err());
    rec.snapshot = snapshot;
    rec.archive = archive;
    rec.disk = disk_of(&cfg.backups_dir);
    rec
}

async fn checks(
    cfg: &Config,
    progress: &Progress,
    job: &mut Job,
    snapshot: &mut Option<SnapshotRecord>,
    archive: &mut Option<ArchiveRecord>,
) -> Result<(), Error> {
    ensure_dir(&cfg.backups_dir)?;
    let lock = cfg.backups_dir.join(format!(".{JOB}.lock"));
    let _lock = RunLock::acquire(&lock, "another weekly-verify", "nothing done")?;
    let kubo = kubo(cfg)?;
    let cfg = &with_pointer(cfg, &kubo).await?;
    let first = job
        .step(
            "verify-snapshot",
            "--deep, the pointer's snapshot",
            snapshot_step(cfg, &kubo, progress),
        )
        .await;
    *snapshot = first.as_ref().ok().cloned();
    let what = "the newest archive, with its chain";
    let second = job.step("verify-car", what, car_step(cfg, progress)).await;
    *archive = second.as_ref().ok().cloned();
    first.and(second).map(|_| ())
}

async fn snapshot_step(
    cfg: &Config,
    kubo: &Kubo,
    progress: &Progress,
) -> Result<Done<SnapshotRecord>, Error> {
    let (_, cid) = pointer_snapshot(cfg, kubo).await?;
    let opts = VerifyOptions {
        deep: true,
        index_root: cfg.index_root.clone(),
        budget: arke_core::spill::MemoryBudget::from_env()?,
        ..VerifyOptions::default()
    };
    let r = verify(kubo, cid, &opts, progress).await?;
    for f in &r.findings {
        tracing::warn!("{}: {}", f.kind, f.message);
    }
    if !r.all_checks_passed {
        let msg = format!("snapshot {cid} FAILED {:?}", r.findings_by_kind);
        return Err(Error::new(Exit::Failed, msg));
    }
    let detail = format!(
        "{} entities, {} blocks, all checks passed",
        r.entity_count, r.blocks
    );
    let rec = SnapshotRecord {
        cid: cid.to_string(),
        seq: r.seq.unwrap_or_default(),
        built: false,
    };
    Ok(Done::ok(rec, detail))
}

/// The newest archive by the time in its name (not its mtime, which a copy changes).
fn newest_archive(cfg: &Config) -> Result<PathBuf, Error> {
    let files = BackupFiles::new(&cfg.backups_dir).archives().map_err(|e| {
        Error::new(
            Exit::Io,
            format!("listing {}: {e}", cfg.backups_dir.display()),
        )
    })?;
    files
        .into_iter()
        .max_by_key(|a| a.stamp)
        .map(|a| a.car)
        .ok_or_else(|| {
            Error::new(
                Exit::Failed,
                format!("no archive in {}", cfg.backups_dir.display()),
            )
        })
}

async fn car_step(cfg: &Config, progress: &Progress) -> Result<Done<ArchiveRecord>, Error> {
    let car = newest_archive(cfg)?;
    let v = verify_archive(&car, progress, JOB, false).await?;
    let r = &v.report;
    let size = std::fs::metadata(&car).map(|m| m.len()).unwrap_or_default();
    let rec = ArchiveRecord {
        file: file_name(&car),
        path: car.display().to_string(),
        kind: if v.members.len() > 1 {
            "incremental"
        } else {
            "full"
        }
        .into(),
        parent: v.members.iter().rev().nth(1).map(|p| file_name(p)),
        size_bytes: size,
        blocks: r.scan.blocks,
        sha256: r.scan.sha256.clone().unwrap_or_default(),
        snapshot_cid: r.snapshot_cid.clone().unwrap_or_default(),
        seq: r.snapshot_seq.unwrap_or_default(),
        verified: true,
    };
    let detail = format!(
        "{} ({}, chain of {}) verified",
        rec.file,
        human_bytes(size),
        v.members.len()
    );
    Ok(Done::ok(rec, detail))
}
