//! restore-drill: the weekly restore drill, run by cron on Sunday after weekly-verify.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use arke_dr::job::{JobArgs, job_main};
use arke_ops::drill::{self, DrillOptions, compare::Compare};
use arke_ops::runs::RunRecord;
use clap::Parser;

/// The weekly restore drill: proves that the off-host copy restores, and measures how long it
/// takes (the RTO). Fetches the newest complete chain from S3 (or takes the newest archive of
/// --from-dir, in place) into a temporary folder under DRILL_WORK_DIR, the free disk checked
/// first; verifies it in full; starts a scratch Kubo (a temporary repo, offline, loopback)
/// or uses --scratch-api; restores the chain into it as restore-from-car does; then compares
/// with the live node: every restored entity's tip is the live tip or an ancestor of it
/// (changes since the archive are counted, not errors), and the restored blocks' bytes (all,
/// or a sample) are the live node's. The scratch node and the temporary folder are removed
/// whatever happens.
///
/// Off when there is nothing to restore into: no --scratch-api, no --ipfs-bin, DRILL_IPFS_BIN
/// unset and no `ipfs` on PATH (production's Kubo runs in Docker). Then the drill says
/// "restore-drill: off: no Kubo binary (...)" on stderr and in the log, records an ok run
/// with its steps skipped (dr-status: "restore drill off", not a warning), and exits 0.
///
/// The RTO is download + verify + import + tips (what a real recovery pays); a drill over
/// RTO_TARGET_MINUTES is a WARNING and an alert in the run record, and still exits 0.
///
/// Configuration as daily-backup (the environment, then the configuration file): IPFS_API_URL
/// (the live node), INDEX_POINTER_PATH, ARKE_INDEX_ROOT, S3_BUCKET, S3_PREFIX, AWS_REGION,
/// DRILL_IPFS_BIN, DRILL_WORK_DIR, DRILL_MIN_FREE_MB, RTO_TARGET_MINUTES, ARKE_LOG_DIR,
/// ARKE_STATE_DIR. Log: $ARKE_LOG_DIR/restore-drill.log; run record:
/// $ARKE_STATE_DIR/runs/restore-drill.json.
///
/// stdout: the RTO line, or the run record with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::RESTORE_DRILL))]
struct Args {
    /// Drill on the newest archive of this folder (e.g. BACKUPS_DIR), used in place: nothing
    /// is downloaded
    #[arg(long, value_name = "DIR", value_parser = arke_dr::args::dir_path)]
    from_dir: Option<PathBuf>,
    /// The scratch node's Kubo binary (else DRILL_IPFS_BIN, else `ipfs` on PATH; none: the
    /// drill is off)
    #[arg(long, value_name = "PATH", conflicts_with = "scratch_api")]
    ipfs_bin: Option<PathBuf>,
    /// Restore into this empty node instead of starting a scratch Kubo
    #[arg(long, value_name = "URL")]
    scratch_api: Option<String>,
    /// Blocks compared with the live node: `all`, or `sample N`
    #[arg(long, value_name = "all|sample N", default_value = "sample 1000")]
    compare: Compare,
    /// Seconds the scratch node may take to answer
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    start_timeout: u64,
    #[command(flatten)]
    job: JobArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bin = args.ipfs_bin.as_ref().map(|p| p.display().to_string());
    let overrides: Vec<(&str, &str)> = bin
        .as_deref()
        .map(|b| ("DRILL_IPFS_BIN", b))
        .into_iter()
        .collect();
    let opts = DrillOptions {
        from_dir: args.from_dir.clone(),
        scratch_api: args.scratch_api.clone(),
        compare: args.compare,
        start_timeout: Duration::from_secs(args.start_timeout.max(1)),
    };
    job_main(
        drill::JOB,
        &args.job,
        &overrides,
        |ctx| async move { drill::run(&ctx.config, &opts, &ctx.log_file, &ctx.progress).await },
        rto_line,
    )
}

fn rto_line(rec: &RunRecord) -> Option<String> {
    let d = rec.drill.as_ref()?;
    Some(format!(
        "{}: RTO {:.0}s (target {}s), {} entities, {} blocks compared, {} changed since the archive",
        d.archive,
        d.rto_secs,
        d.rto_target_secs,
        d.entities,
        d.blocks_compared,
        d.changed_since_archive
    ))
}
