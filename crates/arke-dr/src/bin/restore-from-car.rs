//! restore-from-car: a wiped node back to serving from one archive.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use arke_core::Exit;
use arke_core::backup::VerifyCarOptions;
use arke_core::{RestoreOptions, ShardChoice, restore};
use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs, cid_arg};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShardRuleArg {
    Worker,
    Legacy,
    Both,
}

/// Restore a node from a CAR archive: verify first, import, pin, write every tip at the worker's
/// shard path, replay archived events newer than the snapshot, write the pointer last, verify after.
///
/// A node that already has a pointer or tips is refused unless --force (or when it holds this
/// archive's own unfinished restore, which a rerun finishes). Entries under the index root that
/// are not tips are never touched; one in the way of a tip path needs --force. --dry-run lists
/// every existing path that would change or be removed.
///
/// An incremental archive is restored with its whole chain in one run: the parents it names
/// are found in the same folder (or --chain-dir), verified with it, and imported base first in
/// the same dag/import; the tips and the pointer are the newest archive's.
///
/// stdout: JSON with the legacy keys (snapshot_cid, entity_count, restored) and counts per phase.
#[derive(Debug, Parser)]
// No lock (a rerun resumes through the marker); nothing is skipped: an incomplete archive is refused (1).
#[command(version, after_help = arke_dr::after_help_for(&[Exit::Ok, Exit::Failed, Exit::Usage, Exit::Node, Exit::Io]))]
struct Args {
    /// CARv1 or CARv2 archive
    car: PathBuf,
    /// Snapshot CID; default: the descriptor, <car>.json, or the CAR root when it is a snapshot
    snapshot: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    /// Restore into a node that already has a pointer or tips (and remove entries in the way of tip paths)
    #[arg(long)]
    force: bool,
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Restore from an archive that fails verification
    #[arg(long)]
    allow_incomplete: bool,
    /// Folder holding an incremental archive's parents (default: the archive's folder)
    #[arg(long, value_name = "DIR", value_parser = arke_dr::args::dir_path)]
    chain_dir: Option<PathBuf>,
    /// Where tips are written
    #[arg(long, value_enum, default_value_t = ShardRuleArg::Worker)]
    shard_rule: ShardRuleArg,
    /// Seconds to wait for the node to answer before giving up
    #[arg(
        long,
        env = "ARKE_WAIT_NODE",
        value_name = "SECS",
        default_value_t = 60
    )]
    wait: u64,
    /// MFS root of the index
    #[arg(long, env = "ARKE_INDEX_ROOT", value_name = "MFS_PATH", default_value = arke_core::shard::INDEX_ROOT)]
    index_root: String,
    /// Seconds one dag/import may take: sending the archive, storing it and pinning its roots
    /// (sent to the node as its timeout; the upload itself must progress within --timeout)
    #[arg(
        long,
        env = "ARKE_IMPORT_TIMEOUT",
        value_name = "SECS",
        default_value_t = 3600
    )]
    import_timeout: u64,
    /// Concurrent tip writes and read-backs
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("restore-from-car", &args.out, async {
        let kubo = args.node.connect().await?;
        let wait = Duration::from_secs(args.wait);
        // Which spelling of the pointer this node uses can only be asked of the node, so a
        // restore that must probe waits for the node first (before, not while, the archive
        // is verified); restore() waits again, at once satisfied.
        if !args.pointer.explicit {
            kubo.wait_ready(wait)
                .await
                .context("waiting for the node")?;
        }
        let pointer_path = args.pointer.resolve(&kubo).await?;
        let opts = RestoreOptions {
            car: args.car.clone(),
            snapshot: args
                .snapshot
                .as_deref()
                .map(|s| cid_arg(s, "snapshot CID"))
                .transpose()?,
            allow_incomplete: args.allow_incomplete,
            force: args.force,
            dry_run: args.dry_run,
            shard: match args.shard_rule {
                ShardRuleArg::Worker => ShardChoice::Worker,
                ShardRuleArg::Legacy => ShardChoice::Legacy,
                ShardRuleArg::Both => ShardChoice::Both,
            },
            index_root: args.index_root.clone(),
            pointer_path,
            wait,
            concurrency: args.concurrency.max(1),
            import_timeout: Duration::from_secs(args.import_timeout.max(1)),
            verify: VerifyCarOptions {
                chain_dir: args.chain_dir.clone(),
                ..VerifyCarOptions::default()
            },
        };
        let r = restore(&kubo, &opts, &args.out.progress()).await?;
        for w in &r.warnings {
            tracing::warn!("{w}");
        }
        if !r.dry_run {
            tracing::info!(
                "restored snapshot {} from {}: {} entities ({} moved forward and {} created by newer events), {} tips written, {} unchanged, {} blocks, {} direct pins, pointer {} in {:.1}s",
                r.snapshot_cid,
                r.car_file,
                r.entity_count,
                r.replayed,
                r.created_after_snapshot,
                r.tips_written,
                r.tips_unchanged,
                r.blocks_imported,
                r.direct_pins,
                r.pointer_path,
                r.durations.total
            );
        }
        arke_dr::print_json(&r)?;
        Ok(Exit::Ok)
    })
}
