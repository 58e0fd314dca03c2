//! hourly-snapshot: build-snapshot as cron's hourly job, then the hour's archive off the host
//! (HOURLY_ARCHIVE), logged and recorded.

use std::process::ExitCode;

use arke_dr::job::{JobArgs, job_main};
use arke_ops::daily::NoStore;
use arke_ops::hourly;
use arke_ops::runs::RunRecord;
use arke_ops::store::S3Store;
use clap::Parser;

/// cron's hourly snapshot (minute 17): build-snapshot, then, with HOURLY_ARCHIVE=1 (the
/// default when upload is on), the last hour off the host: export-car (an incremental over the
/// newest verified archive; nothing written when that archive already holds the pointer's
/// snapshot) -> verify-car (with its chain) -> upload to s3://$S3_BUCKET/$S3_PREFIX (every
/// chain member S3 lacks first). HOURLY_ARCHIVE=1 without upload writes and verifies the
/// archive only. The archive steps take the daily's lock (BACKUPS_DIR/.daily-backup.lock):
/// when daily-backup holds it they are skipped and the run succeeds (the daily does the same
/// work). New chains (FULL_EVERY_DAYS), retention and pruning stay the daily's.
///
/// A build already running counts as success (it does the same work). Log:
/// $ARKE_LOG_DIR/hourly-snapshot.log; run record: $ARKE_STATE_DIR/runs/hourly-snapshot.json
/// (`archive` and `upload` as daily-backup's).
///
/// Configuration as daily-backup: IPFS_API_URL, INDEX_POINTER_PATH, ARKE_INDEX_ROOT,
/// SNAPSHOTS_DIR, BACKUPS_DIR, ARKE_LOG_DIR, ARKE_STATE_DIR, HOURLY_ARCHIVE, INCREMENTAL,
/// UPLOAD, S3_BUCKET, S3_PREFIX, AWS_REGION, S3_STORAGE_CLASS, S3_PART_SIZE_MB,
/// ARKE_INSTANCE_ID.
///
/// stdout: the new snapshot's CID (nothing when unchanged, whatever the archive steps did: the
/// archive is in the log and the record), or the run record with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::HOURLY_SNAPSHOT))]
struct Args {
    #[command(flatten)]
    job: JobArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    job_main(
        hourly::JOB,
        &args.job,
        &[],
        |ctx| async move {
            let (cfg, log, progress) = (&ctx.config, &ctx.log_file, &ctx.progress);
            // The S3 client only when the hour's archive is uploaded.
            let settings = ctx.config.upload.as_ref().filter(|_| cfg.hourly_archive);
            let Some(settings) = settings else {
                return hourly::run::<NoStore>(cfg, log, Ok(None), progress).await;
            };
            match S3Store::connect(settings).await {
                Ok(store) => hourly::run(cfg, log, Ok(Some(&store)), progress).await,
                // The snapshot and the archive are still made; the upload step fails.
                Err(e) => hourly::run::<NoStore>(cfg, log, Err(e), progress).await,
            }
        },
        new_snapshot,
    )
}

fn new_snapshot(rec: &RunRecord) -> Option<String> {
    rec.snapshot
        .as_ref()
        .filter(|s| s.built)
        .map(|s| s.cid.clone())
}
