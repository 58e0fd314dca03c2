//! The hourly snapshot (cron, minute 17): build-snapshot, logged and recorded. A build already
//! running (the build lock is held) counts as success: that build does the same work.

use arke_core::{Exit, Progress};

use crate::config::Config;
use crate::daily::{ensure_dir, kubo, with_pointer};
use crate::job::{Done, Job, StepError};
use crate::runs::{RunRecord, SnapshotRecord};

/// The hourly job's name.
pub const JOB: &str = "hourly-snapshot";

/// Builds a snapshot and returns the record.
pub async fn run(cfg: &Config, log_file: &std::path::Path, progress: &Progress) -> RunRecord {
    let mut job = Job::start(JOB, log_file);
    let outcome = job
        .step("build-snapshot", "incremental", build(cfg, progress))
        .await;
    let (snapshot, error) = match outcome {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    let mut rec = job.finish(error.as_ref());
    if error.is_none() && snapshot.is_none() {
        tracing::info!("summary: skipped, another build-snapshot is running");
    } else if let Some(s) = &snapshot {
        let what = if s.built { "built" } else { "unchanged" };
        tracing::info!(
            "summary: ok snapshot={} seq {} ({what}) {:.0}s",
            s.cid,
            s.seq,
            rec.duration_secs
        );
    } else if let Some(e) = &error {
        tracing::error!("summary: FAILED exit={} {}", e.exit.code(), e.message);
    }
    rec.snapshot = snapshot;
    rec
}

async fn build(
    cfg: &Config,
    progress: &Progress,
) -> Result<Done<Option<SnapshotRecord>>, StepError> {
    ensure_dir(&cfg.snapshots_dir)?;
    let kubo = kubo(cfg)?;
    let cfg = &with_pointer(cfg, &kubo).await?;
    let mut opts =
        arke_core::snapshot::BuildOptions::new(&cfg.index_pointer_path, cfg.snapshots_dir.clone());
    opts.index_root = cfg.index_root.clone();
    let outcome = match arke_core::snapshot::build(&kubo, &opts, progress).await {
        Ok(o) => o,
        Err(e) => {
            let e = StepError::from(e);
            if e.exit == Exit::Locked {
                return Ok(Done::ok(None, "another build-snapshot is running"));
            }
            return Err(e);
        }
    };
    let r = outcome.report();
    let built = matches!(outcome, arke_core::snapshot::BuildOutcome::Built(_));
    let cid = r.cid.clone().unwrap_or_default();
    let detail = format!(
        "{} {cid} seq {}",
        if built { "built" } else { "unchanged since" },
        r.seq
    );
    Ok(Done {
        skipped_items: r.skipped > 0,
        detail,
        value: Some(SnapshotRecord {
            cid,
            seq: r.seq,
            built,
        }),
    })
}
