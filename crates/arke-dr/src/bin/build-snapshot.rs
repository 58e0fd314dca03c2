//! build-snapshot: a complete, bounded, incremental snapshot of the Arke index.

use std::process::ExitCode;

use arke_core::snapshot::{Build, BuildOptions, BuildOutcome};
use arke_core::spill::MemoryBudget;
use arke_dr::args::{BuildLockArg, NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg};
use arke_dr::operation::{self, Mode};
use clap::Parser;

/// Build a snapshot of every entity (event chain ∪ MFS tips), store it as bounded blocks, and move
/// the index pointer's snapshot fields without losing concurrent event updates.
///
/// stdout: the snapshot CID (legacy contract), or the report with --json. With --dry-run: the
/// plan (what would be read, stored, pinned, pointed to, written and skipped), as JSON with
/// --json; nothing is written.
#[derive(Debug, Parser)]
// 5: the build lock; 7: damaged items skipped.
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::BUILD_SNAPSHOT))]
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
    /// Build over a latest snapshot that another writer published after arke-dr's (or a
    /// pointer whose snapshot_seq went back), which is otherwise refused with exit 1 once
    /// arke-dr has published on this host (the marker .arke-dr-published.json in the
    /// snapshots folder). Stop the other writer first. No environment variable on purpose: left
    /// set, it would disarm the guard on every run
    #[arg(long)]
    adopt: bool,
    /// Print the plan and write nothing: no block stored or pinned, no pointer move, no
    /// snapshot-{seq}.json or latest.json (exit 7 still reports damaged items)
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("build-snapshot", &args.out, async {
        let memory = MemoryBudget::from_env()?;
        let kubo = args.node.connect().await?;
        let mut opts = options(&args, args.pointer.resolve(&kubo).await?);
        opts.memory = memory;
        let mode = Mode::dry_run_if(args.dry_run);
        operation::run(&Build { kubo: &kubo }, &opts, mode, &args.out, |outcome| {
            render(&args, outcome)
        })
        .await
    })
}

fn options(args: &Args, pointer_path: String) -> BuildOptions {
    let mut opts = BuildOptions::new(&pointer_path, args.snapshots.snapshots_dir.clone());
    if let Some(lock) = &args.lock.lock_file {
        opts.lock_file = lock.clone();
    }
    opts.index_root = args.index_root.clone();
    opts.test_index_root = args.test_index_root.clone();
    opts.include_test_network = args.include_test_network;
    opts.full = args.full;
    opts.strict_append_only = args.strict_append_only;
    opts.strict = args.strict;
    opts.adopt = args.adopt;
    opts.concurrency = args.concurrency;
    opts
}

/// The log line of what was done, then stdout: the snapshot CID alone (legacy contract; nothing
/// when unchanged) or the report with --json.
fn render(args: &Args, outcome: &BuildOutcome) -> anyhow::Result<()> {
    let r = outcome.report();
    let latest = args.snapshots.snapshots_dir.join("latest.json");
    let cid = r.cid.as_deref().unwrap_or("-");
    match outcome {
        BuildOutcome::Unchanged(_) if r.metadata_refreshed => tracing::info!(
            "unchanged: same event head and index as snapshot {cid} (seq {}); nothing written on the node; {} written (it was missing or named another snapshot)",
            r.seq,
            latest.display()
        ),
        BuildOutcome::Unchanged(_) => tracing::info!(
            "unchanged: same event head and index as snapshot {cid} (seq {}); nothing written",
            r.seq
        ),
        BuildOutcome::Built(_) => tracing::info!(
            "snapshot {cid} seq {} ({}): {} entities ({} new, {} updated), {} events walked, chunks {} written / {} reused, {:.1}s",
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
    if r.skipped > 0 {
        tracing::warn!(
            "{} damaged item(s) skipped; the snapshot holds everything else (see skipped_items in --json)",
            r.skipped
        );
    }
    if args.out.json {
        arke_dr::print_json(r)?;
    } else if let BuildOutcome::Built(_) = outcome {
        arke_dr::print_line(r.cid.as_deref().unwrap_or_default())?;
    }
    Ok(())
}
