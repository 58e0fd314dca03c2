//! hourly-snapshot: build-snapshot as cron's hourly job, logged and recorded.

use std::process::ExitCode;

use arke_dr::job::{JobArgs, job_main};
use arke_ops::hourly;
use arke_ops::runs::RunRecord;
use clap::Parser;

/// cron's hourly snapshot (minute 17): build-snapshot, logged with UTC timestamps to
/// $ARKE_LOG_DIR/hourly-snapshot.log, recorded in $ARKE_STATE_DIR/runs/hourly-snapshot.json.
/// A build already running counts as success (it does the same work).
///
/// Configuration as daily-backup: IPFS_API_URL, INDEX_POINTER_PATH, ARKE_INDEX_ROOT,
/// SNAPSHOTS_DIR, ARKE_LOG_DIR, ARKE_STATE_DIR.
///
/// stdout: the new snapshot's CID (nothing when unchanged), or the run record with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    #[command(flatten)]
    job: JobArgs,
}

const AFTER_HELP: &str = "Exit codes:
  0  a snapshot was built, nothing had changed, or another build was already running
  1  the data is incomplete or corrupt (the log names the CID)
  2  bad flags or configuration
  3  the IPFS node is unreachable, timed out or failed a call
  4  local file error (the snapshots folder, the log file)
  7  built, but damaged items were skipped (named in the log)";

fn main() -> ExitCode {
    let args = Args::parse();
    job_main(
        hourly::JOB,
        &args.job,
        &[],
        |ctx| async move { hourly::run(&ctx.config, &ctx.log_file, &ctx.progress).await },
        new_snapshot,
    )
}

fn new_snapshot(rec: &RunRecord) -> Option<String> {
    rec.snapshot
        .as_ref()
        .filter(|s| s.built)
        .map(|s| s.cid.clone())
}
