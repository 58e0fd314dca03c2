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
#[command(version, after_help = AFTER_HELP)]
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

const AFTER_HELP: &str = "Exit codes:
  0  the night completed: archive written, verified, uploaded; retention and pruning done
  1  a data failure (a missing or corrupt block, an archive that does not verify)
  2  bad flags or configuration (named with the file and line it came from)
  3  the IPFS node is unreachable, timed out or failed a call
  4  local file error (disk full, permissions, the log file not writable)
  5  another daily-backup (or an hourly archive) is running, or a build-snapshot held the build lock past BUILD_LOCK_WAIT
  6  S3: the upload failed, the stored copy differs, or the credentials or bucket are wrong
     (nothing local is deleted; the next night uploads what S3 lacks)
  7  the night completed, but damaged items were skipped (named in the log)";

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
