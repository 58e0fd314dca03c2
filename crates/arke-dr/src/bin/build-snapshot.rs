//! build-snapshot: a complete, bounded, incremental snapshot of the Arke index.

use std::process::ExitCode;

use arke_core::report::Exit;
use arke_core::snapshot::{BuildOptions, BuildOutcome, build};
use arke_dr::args::{BuildLockArg, NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg};
use clap::Parser;

/// Build a snapshot of every entity (event chain ∪ MFS tips), store it as bounded blocks, and move
/// the index pointer's snapshot fields without losing concurrent event updates.
///
/// stdout: the snapshot CID (legacy contract), or the report with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::after_help())]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    snapshots: SnapshotsDirArg,
    #[command(flatten)]
    lock: BuildLockArg,
    /// Ignore the previous snapshot and walk the whole event chain
    #[arg(long)]
    full: bool,
    /// Include the test network (/arke/test/index, ids starting with II)
    #[arg(long, env = "ARKE_INCLUDE_TEST_NETWORK")]
    include_test_network: bool,
    /// Exit non-zero when the append-only check against the previous snapshot finds a violation
    #[arg(long)]
    strict_append_only: bool,
    /// Fail (exit 1, nothing written) on the first damaged item instead of skipping it: a tip
    /// file that does not hold a CID, an event naming an invalid id, a manifest that does not
    /// decode or names another entity. Without it such items are left out, the entity keeps
    /// its previous state, and the run ends with exit 7 after writing the snapshot
    #[arg(long, env = "ARKE_STRICT", value_parser = clap::builder::BoolishValueParser::new())]
    strict: bool,
    /// Concurrent manifest fetches
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// MFS root of the index (production: /arke/index)
    #[arg(long, env = "ARKE_INDEX_ROOT", value_name = "MFS_PATH", default_value = arke_core::shard::INDEX_ROOT)]
    index_root: String,
    /// MFS root of the test network's index
    #[arg(long, value_name = "MFS_PATH", default_value = arke_core::shard::TEST_INDEX_ROOT)]
    test_index_root: String,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("build-snapshot", &args.out, async {
        let kubo = args.node.connect().await?;
        let dir = args.snapshots.snapshots_dir.clone();
        let mut opts = BuildOptions::new(&args.pointer.pointer_path, dir.clone());
        if let Some(lock) = &args.lock.lock_file {
            opts.lock_file = lock.clone();
        }
        opts.index_root = args.index_root.clone();
        opts.test_index_root = args.test_index_root.clone();
        opts.include_test_network = args.include_test_network;
        opts.full = args.full;
        opts.strict_append_only = args.strict_append_only;
        opts.strict = args.strict;
        opts.concurrency = args.concurrency;
        let outcome = build(&kubo, &opts, &args.out.progress()).await?;
        let r = outcome.report();
        match &outcome {
            BuildOutcome::Unchanged(_) => tracing::info!(
                "unchanged: same event head and index as snapshot {} (seq {}); nothing written",
                r.cid.as_deref().unwrap_or("-"),
                r.seq
            ),
            BuildOutcome::Built(_) => tracing::info!(
                "snapshot {} seq {} ({}): {} entities ({} new, {} updated), {} events walked, chunks {} written / {} reused, {:.1}s",
                r.cid.as_deref().unwrap_or("-"),
                r.seq,
                r.mode,
                r.entity_count,
                r.append_only.new,
                r.append_only.updated,
                r.events_walked,
                r.chunks_written,
                r.chunks_reused,
                r.seconds
            ),
        }
        if args.out.json {
            arke_dr::print_json(r)?;
        } else if let BuildOutcome::Built(_) = outcome {
            // Legacy contract: the snapshot CID alone on stdout; nothing when unchanged.
            arke_dr::print_line(r.cid.as_deref().unwrap_or_default())?;
        }
        if r.skipped > 0 {
            tracing::warn!(
                "{} damaged item(s) skipped; the snapshot holds everything else (see skipped_items in --json)",
                r.skipped
            );
            return Ok(Exit::Skipped);
        }
        Ok(Exit::Ok)
    })
}
