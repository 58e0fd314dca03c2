//! weekly-verify: the weekly deep verification, run by cron on Sunday at 05:00 UTC.

use std::process::ExitCode;

use arke_dr::job::{JobArgs, job_main};
use arke_ops::runs::RunRecord;
use arke_ops::weekly;
use clap::Parser;

/// The weekly deep verification: verify-snapshot --deep of the pointer's snapshot (every block,
/// every tip against MFS), then verify-car of the newest local archive in full, with its chain.
/// Both run even when the first fails; the exit code is the first failure's.
///
/// Configuration as daily-backup (the environment, then the configuration file): IPFS_API_URL,
/// INDEX_POINTER_PATH, ARKE_INDEX_ROOT, BACKUPS_DIR, ARKE_LOG_DIR, ARKE_STATE_DIR.
/// Log: $ARKE_LOG_DIR/weekly-verify.log; run record: $ARKE_STATE_DIR/runs/weekly-verify.json.
///
/// stdout: nothing, or the run record with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::WEEKLY_VERIFY))]
struct Args {
    #[command(flatten)]
    job: JobArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    job_main(
        weekly::JOB,
        &args.job,
        &[],
        |ctx| async move { weekly::run(&ctx.config, &ctx.log_file, &ctx.progress).await },
        |_: &RunRecord| None,
    )
}
