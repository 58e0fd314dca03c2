//! export-car: a complete, verified CARv1 archive of the snapshot, its history and the event chain.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use arke_core::backup::retention::Policy;
use arke_core::backup::{
    Export, ExportOptions, ExportReport, Incremental, LineagePolicy, Retention, RetentionReport,
    TipChecks,
};
use arke_core::kubo::Kubo;
use arke_core::model::SnapshotMeta;
use arke_core::{Exit, Failure, Outcome};
use arke_dr::args::{BackupsDirArg, NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg, cid_arg};
use arke_dr::operation::{self, Mode};
use clap::Parser;

/// Export the closure of a snapshot (snapshot, chunks, every manifest version, every component,
/// the whole event chain from the pointer's event head) to
/// <backups-dir>/arke-{seq}-{YYYYMMDD-HHMMSS}.car, every block re-hashed; metadata in the
/// .json beside it. The file appears only when complete (temp file, fsync, rename).
///
/// stdout: the CAR path (legacy contract), or the report with --json.
#[derive(Debug, Parser)]
// 5: the backups folder's lock; 7: damaged items left out (live state, hostile events).
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::EXPORT_CAR))]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    snapshots: SnapshotsDirArg,
    #[command(flatten)]
    backups: BackupsDirArg,
    /// Export this snapshot instead of the pointer's latest
    #[arg(long, value_name = "CID", conflicts_with = "latest")]
    snapshot: Option<String>,
    /// Export the snapshot named in <snapshots-dir>/latest.json (legacy contract)
    #[arg(long)]
    latest: bool,
    /// Also archive previous snapshots (followed through prev_snapshot)
    #[arg(long)]
    with_history: bool,
    /// Write a salvage archive marked partial instead of failing on missing blocks
    #[arg(long)]
    allow_missing: bool,
    #[command(flatten)]
    keep: KeepArgs,
    /// Export nothing: only apply the --keep-* rules to the backups folder (no node needed;
    /// the newest archive is always kept, chains are kept whole). stdout: the deleted CARs,
    /// one per line; with --dry-run, every archive and why it is kept, deleting nothing
    #[arg(long, conflicts_with_all = ["snapshot", "latest", "with_history", "allow_missing", "incremental", "parent"])]
    prune_only: bool,
    /// Concurrent block fetches
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// Fetch block by block only (no bulk dag/export of the snapshot tree)
    #[arg(long)]
    no_bulk: bool,
    /// Abandon a bulk dag/export that delivers nothing for this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    stall_timeout: u64,
    /// MFS root of the tips: every entity whose tip there differs from the snapshot's when the
    /// export starts (created or moved since, with or without an event) is archived with it
    #[arg(long, env = "ARKE_INDEX_ROOT", value_name = "MFS_PATH", default_value = arke_core::shard::INDEX_ROOT)]
    index_root: String,
    /// Archive the snapshot and the event chain only, not the live tips (archives as before
    /// the live capture; restore then loses entities created without an event since the snapshot)
    #[arg(long)]
    snapshot_only: bool,
    /// Write an incremental archive: only the blocks its parent chain does not hold, over the
    /// newest archive in the backups folder that verify-car verified (or --parent). With no
    /// usable parent a full archive is written and the report says why (`full_reason`)
    #[arg(long, env = "ARKE_INCREMENTAL")]
    incremental: bool,
    /// The parent of an incremental archive (implies --incremental; an unusable parent is an
    /// error, exit 1). It must sit in the backups folder with its chain
    #[arg(long, value_name = "FILE")]
    parent: Option<std::path::PathBuf>,
    /// With --incremental: start a new chain with a full archive once the chain's base is
    /// this many days old
    #[arg(long, env = "FULL_EVERY_DAYS", value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    full_every_days: Option<u64>,
    /// Print the plan (the archive it would write, full or incremental over which parent, how
    /// many blocks the chain holds, the live state, what would be left out: exit 7) and write
    /// nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run_one_thread("export-car", &args.out, async {
        let mode = Mode::dry_run_if(args.dry_run);
        if args.prune_only {
            let policy = retention_policy(&args)?;
            let op = Retention {
                backups_dir: &args.backups.backups_dir,
            };
            return operation::run(&op, &policy, mode, &args.out, |r| {
                render_retention(&args, r)
            })
            .await;
        }
        let kubo = args.node.connect().await?;
        let opts = options(&args, &kubo).await?;
        operation::run(&Export { kubo: &kubo }, &opts, mode, &args.out, |r| {
            render(&args, r)
        })
        .await
    })
}

/// The export's options: the snapshot named by --snapshot, latest.json (--latest) or the
/// pointer, and the pointer as read now.
async fn options(args: &Args, kubo: &Kubo) -> Result<ExportOptions, arke_core::Error> {
    let pointer_path = args.pointer.resolve(kubo).await?;
    // The pointer's own errors name it ("index pointer <path>: ...").
    let pointer = arke_core::pointer::read(kubo, &pointer_path).await?;
    let snapshot = if let Some(s) = &args.snapshot {
        cid_arg(s, "--snapshot")?
    } else if args.latest {
        let latest = args.snapshots.snapshots_dir.join("latest.json");
        let bytes =
            std::fs::read(&latest).with_context(|| format!("reading {}", latest.display()))?;
        SnapshotMeta::parse(&bytes)
            .with_context(|| format!("reading {}", latest.display()))?
            .cid
    } else {
        pointer
            .as_ref()
            .and_then(|p| p.pointer.latest_snapshot_cid)
            .ok_or_else(|| {
                Failure::new(
                    Exit::Usage,
                    format!(
                        "the index pointer {pointer_path} names no snapshot: run build-snapshot, or pass --snapshot or --latest",
                    ),
                )
            })?
    };
    Ok(ExportOptions {
        snapshot,
        pointer,
        pointer_path,
        backups_dir: args.backups.backups_dir.clone(),
        with_history: args.with_history,
        allow_missing: args.allow_missing,
        retention: args.keep.policy(),
        concurrency: args.concurrency.max(1),
        bulk: !args.no_bulk,
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
        tool: format!("arke-dr export-car {}", env!("CARGO_PKG_VERSION")),
        index_root: (!args.snapshot_only).then(|| args.index_root.clone()),
        incremental: (args.incremental || args.parent.is_some()).then(|| Incremental {
            parent: args.parent.clone(),
            policy: LineagePolicy {
                full_every_days: args.full_every_days,
            },
        }),
        memory: arke_core::spill::MemoryBudget::from_env()?,
        // A dry run says what would be left out without the walk; a run reads the tips once,
        // in the walk.
        tip_checks: if args.dry_run {
            TipChecks::Plan
        } else {
            TipChecks::Walk
        },
    })
}

/// The log lines of what was written, then stdout: the CAR path (legacy contract) or the
/// report with --json.
fn render(args: &Args, r: &ExportReport) -> anyhow::Result<()> {
    if let Some(parent) = &r.chain.parent {
        tracing::info!(
            "incremental over {parent} (chain depth {}): {} blocks held by the chain were left out",
            r.chain.chain_depth,
            r.chain.held_blocks
        );
    }
    tracing::info!(
        "wrote {} ({} blocks, {} bytes, {} entities, {} events{}, sha256 {}) in {:.1}s; {} blocks by dag/export, {} by block/get",
        r.car_path,
        r.blocks,
        r.size_bytes,
        r.entities,
        r.event_count,
        if r.partial { ", PARTIAL" } else { "" },
        r.sha256,
        r.duration_secs,
        r.bulk_blocks,
        r.fetched_blocks
    );
    if args.out.json {
        arke_dr::print_json(r)?;
    } else {
        arke_dr::print_line(&r.car_path)?;
    }
    if r.exit() == Exit::Skipped {
        tracing::warn!(
            "{} damaged item(s) left out or not trusted (named above and in the report's `skipped`; live-state ones in the descriptor too); the archive holds everything else",
            r.skipped.len()
        );
    }
    Ok(())
}

/// The `--keep-*` rules (ORed, restic's rule; see `arke_core::backup::retention`).
#[derive(Debug, clap::Args)]
struct KeepArgs {
    /// After a successful export, keep the newest N archives
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_last: Option<u64>,
    /// After a successful export, keep archives younger than D days
    #[arg(long, value_name = "D")]
    keep_days: Option<u64>,
    /// Keep the newest archive of each of the last N hours that have one ("unlimited": all)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_hourly: Option<u64>,
    /// Keep the newest archive of each of the last N days that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_daily: Option<u64>,
    /// Keep the newest archive of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_weekly: Option<u64>,
    /// Keep the newest archive of each of the last N months that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_monthly: Option<u64>,
    /// Keep the newest archive of each of the last N years that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_yearly: Option<u64>,
}

impl KeepArgs {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            within_days: self.keep_days,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        }
    }
}

fn parse_count(s: &str) -> Result<u64, String> {
    arke_core::backup::retention::parse_count(s)
}

/// --prune-only's policy: at least one --keep-* rule.
fn retention_policy(args: &Args) -> Result<Policy, Failure> {
    let policy = args.keep.policy();
    if policy.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "--prune-only needs a --keep-* rule (--keep-last, --keep-days, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly)",
        ));
    }
    Ok(policy)
}

/// What --prune-only did: the log line, then stdout: the deleted CARs one per line, or the
/// report with --json.
fn render_retention(args: &Args, r: &RetentionReport) -> anyhow::Result<()> {
    tracing::info!(
        "retention in {}: {} archive(s) deleted, {} kept",
        args.backups.backups_dir.display(),
        r.deleted.len(),
        r.kept
    );
    if args.out.json {
        arke_dr::print_json(r)?;
    } else {
        r.deleted.iter().try_for_each(|d| arke_dr::print_line(d))?;
    }
    Ok(())
}
