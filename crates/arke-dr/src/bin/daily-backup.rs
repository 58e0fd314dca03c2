//! daily-backup: the daily disaster-recovery pipeline, run by cron at 02:00 UTC.

use std::process::ExitCode;

use arke_dr::job::{JobArgs, job_main};
use arke_ops::daily::{self, DailyOptions, NoStore};
use arke_ops::runs::RunRecord;
use arke_ops::store::S3Store;
use clap::Parser;

/// The daily pipeline: build-snapshot -> export-car (incremental over the newest verified
/// archive; a full one every FULL_EVERY_DAYS days) -> verify-car (with its chain) -> upload to
/// s3://$S3_BUCKET/$S3_PREFIX (every chain member S3 lacks first, each checked after upload) ->
/// local retention (KEEP_ARCHIVES, KEEP_DAYS; chains kept whole) -> prune-snapshots
/// (SNAPSHOT_KEEP_LAST, then GC when SNAPSHOT_GC=1).
///
/// Every enabled step is required: the first failure stops the run, nothing is deleted after a
/// failed export, verification or upload, and the failure's code is the exit code. Log:
/// $ARKE_LOG_DIR/daily-backup.log; run record: $ARKE_STATE_DIR/runs/daily-backup.json.
///
/// Configuration: the environment, then the configuration file, then the defaults (see
/// README "Configuration"): IPFS_API_URL, INDEX_POINTER_PATH, SNAPSHOTS_DIR, BACKUPS_DIR,
/// ARKE_LOG_DIR, ARKE_STATE_DIR, UPLOAD, S3_BUCKET, S3_PREFIX, AWS_REGION, S3_STORAGE_CLASS,
/// S3_PART_SIZE_MB, ARKE_INSTANCE_ID, INCREMENTAL, FULL_EVERY_DAYS, KEEP_ARCHIVES, KEEP_DAYS, PRUNE_SNAPSHOTS,
/// SNAPSHOT_KEEP_LAST, SNAPSHOT_GC, BUILD_LOCK_WAIT.
///
/// stdout: the archive's path, or the run record with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::DAILY_BACKUP))]
struct Args {
    #[command(flatten)]
    job: JobArgs,
    /// Skip the S3 upload (as UPLOAD=0)
    #[arg(long)]
    no_upload: bool,
    /// Skip snapshot pruning (as PRUNE_SNAPSHOTS=0)
    #[arg(long)]
    no_prune: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut overrides = Vec::new();
    if args.no_upload {
        overrides.push(("UPLOAD", "0"));
    }
    let opts_prune = !args.no_prune;
    job_main(
        daily::JOB,
        &args.job,
        &overrides,
        |ctx| async move {
            let opts = DailyOptions {
                upload: ctx.config.upload.is_some(),
                prune: opts_prune,
                log_file: ctx.log_file.clone(),
            };
            let Some(settings) = &ctx.config.upload else {
                return daily::run::<NoStore>(&ctx.config, &opts, None, &ctx.progress).await;
            };
            match S3Store::connect(settings).await {
                Ok(store) => daily::run(&ctx.config, &opts, Some(&store), &ctx.progress).await,
                Err(e) => daily::refused(&ctx.config, &opts, &e),
            }
        },
        archive_path,
    )
}

fn archive_path(rec: &RunRecord) -> Option<String> {
    rec.archive.as_ref().map(|a| a.path.clone())
}
