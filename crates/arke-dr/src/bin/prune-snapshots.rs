//! prune-snapshots: keep the newest snapshots pinned, unpin the older ones, optionally GC.

use std::process::ExitCode;
use std::time::Duration;

use arke_core::snapshot::{Prune, PruneOptions, PruneReport};
use arke_core::{Exit, Failure};
use arke_dr::args::{BuildLockArg, NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg};
use arke_dr::operation::{self, Mode};
use clap::Parser;

/// Keep the newest N snapshots of the pointer's chain pinned and unpin the older ones, so the
/// node's garbage collector can free them. Only snapshot blocks are unpinned: manifests,
/// events and components keep their own pins. v4 snapshots share chunks, so a block any kept
/// snapshot lists stays pinned. Legacy snapshots (recursive pins) are held: a kept legacy
/// snapshot pins its predecessors through prev_snapshot anyway, and a legacy snapshot's pin may be
/// the only one protecting the entities' data on a node restored from a legacy archive; give
/// --unpin-legacy once the writers' own pins are known to cover it.
///
/// A DRY RUN unless --apply is given: it prints the plan (each snapshot kept, held or unpinned
/// with the reason). Holds build-snapshot's lock for the whole run.
///
/// stdout: one line per pruned snapshot, or the report with --json; a dry run prints the plan,
/// as JSON with --json (the report's keys with dry_run true, and under plan each decision with
/// its reason and the blocks that go).
#[derive(Debug, Parser)]
// 5: build-snapshot's lock; nothing is skipped.
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::PRUNE_SNAPSHOTS))]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    snapshots: SnapshotsDirArg,
    /// Snapshots kept pinned, the pointer's own included (legacy variable KEEP_LAST)
    #[arg(long, env = "KEEP_LAST", value_name = "N", default_value_t = 5)]
    keep_last: usize,
    /// Unpin and remove metadata for real (without it: dry run)
    #[arg(long)]
    apply: bool,
    /// After unpinning, run the node's garbage collector (repo/gc) and report the space freed;
    /// blocks nothing pins any more are deleted from the node
    #[arg(long, requires = "apply")]
    gc: bool,
    /// Also remove legacy snapshots' recursive pins (only when every manifest, version and
    /// component is pinned by its writer, as production's `dag put --pin=true` does)
    #[arg(long)]
    unpin_legacy: bool,
    /// Deadline for the garbage collection, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    gc_timeout: u64,
    #[command(flatten)]
    lock: BuildLockArg,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("prune-snapshots", &args.out, async {
        let kubo = args.node.connect().await?;
        let opts = options(&args, &args.pointer.resolve(&kubo).await?);
        let mode = Mode::dry_run_if(!args.apply);
        operation::run(&Prune { kubo: &kubo }, &opts, mode, &args.out, |r| {
            render(&args, r)
        })
        .await
    })
}

fn options(args: &Args, pointer_path: &str) -> PruneOptions {
    let mut opts = PruneOptions::new(
        pointer_path,
        args.snapshots.snapshots_dir.clone(),
        args.keep_last,
    );
    if let Some(l) = &args.lock.lock_file {
        opts.lock_file = l.clone();
    }
    opts.gc = args.gc;
    opts.unpin_legacy = args.unpin_legacy;
    opts.gc_timeout = Duration::from_secs(args.gc_timeout.max(1));
    opts
}

/// The log lines of what was done, then stdout: one line per pruned snapshot or the report with
/// --json; a garbage collection that reported errors fails the run (exit 3) after both.
fn render(args: &Args, r: &PruneReport) -> anyhow::Result<()> {
    tracing::info!(
        "kept {}, pruned {} ({} blocks; {} shared with kept snapshots), held {}; walk ended: {}",
        r.kept.len(),
        r.pruned.len(),
        r.blocks_unpinned,
        r.blocks_shared_with_kept,
        r.held.len(),
        r.chain_end
    );
    if let Some(gc) = &r.gc {
        tracing::info!(
            "GC removed {} blocks, repo {} -> {} bytes ({} freed) in {:.1}s",
            gc.removed_blocks,
            gc.size_before,
            gc.size_after,
            gc.freed_bytes,
            gc.seconds
        );
        for e in &gc.errors {
            tracing::warn!("GC reported: {e}");
        }
    }
    if args.out.json {
        arke_dr::print_json(r)?;
    } else {
        for p in &r.pruned {
            let line = format!("pruned\t{}\t{}\t{}\t{}", p.seq, p.cid, p.schema, p.unpinned);
            arke_dr::print_line(&line)?;
        }
    }
    if let Some(e) = r.gc.as_ref().and_then(|g| g.errors.first()) {
        return Err(Failure::new(
            Exit::Node,
            format!("the garbage collection reported errors (first: {e}); unpinning is done, rerun with --gc"),
        )
        .into());
    }
    Ok(())
}
