//! build-snapshot: a complete, bounded, incremental snapshot of the Arke index.

use std::process::ExitCode;

use arke_core::snapshot::{BuildOptions, BuildOutcome, BuildPlan, BuildReport, build, dry_run};
use arke_core::{Exit, Outcome};
use arke_dr::args::{BuildLockArg, NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg};
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
        let kubo = args.node.connect().await?;
        let dir = args.snapshots.snapshots_dir.clone();
        let pointer_path = args.pointer.resolve(&kubo).await?;
        let mut opts = BuildOptions::new(&pointer_path, dir.clone());
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
        if args.dry_run {
            let plan = dry_run(&kubo, &opts, &args.out.progress()).await?;
            if args.out.json {
                arke_dr::print_json(&plan)?;
            } else {
                print_plan(&plan)?;
            }
            return Ok(skipped_exit(&plan.report));
        }
        let outcome = build(&kubo, &opts, &args.out.progress()).await?;
        let r = outcome.report();
        match &outcome {
            BuildOutcome::Unchanged(_) if r.metadata_refreshed => tracing::info!(
                "unchanged: same event head and index as snapshot {} (seq {}); nothing written on the node; {} written (it was missing or named another snapshot)",
                r.cid.as_deref().unwrap_or("-"),
                r.seq,
                dir.join("latest.json").display()
            ),
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
        Ok(skipped_exit(r))
    })
}

/// The report's exit ([`Outcome`]: 7 when damaged items were skipped), said when not 0.
fn skipped_exit(r: &BuildReport) -> Exit {
    if r.exit() == Exit::Skipped {
        tracing::warn!(
            "{} damaged item(s) skipped; the snapshot holds everything else (see skipped_items in --json)",
            r.skipped
        );
    }
    r.exit()
}

/// The plan for a human: one line per question (what is read, stored, pinned, moved, written,
/// skipped), then the skipped items with their reasons.
fn print_plan(plan: &BuildPlan) -> std::io::Result<()> {
    let r = &plan.report;
    let cid = r.cid.as_deref().unwrap_or("-");
    let mut lines = vec!["DRY RUN: nothing written".to_string()];
    if plan.is_unchanged() {
        lines.push(format!(
            "unchanged: same event head and index as snapshot {cid} (seq {}); nothing to do on the node",
            r.seq
        ));
        // latest.json missing or naming another snapshot: the build would write it.
        for f in &plan.metadata_files {
            lines.push(format!("write: {}", f.display()));
        }
        return lines.iter().try_for_each(|l| arke_dr::print_line(l));
    }
    let a = &r.append_only;
    lines.push(format!(
        "build: snapshot {cid} seq {} ({}), {} entities: {} new, {} updated, {} unchanged",
        r.seq, r.mode, r.entity_count, a.new, a.updated, a.unchanged
    ));
    lines.push(format!(
        "read: pointer {}, previous snapshot {}, {} events (walk end: {}), index by {} ({} blocks, {} tips), {} manifests",
        r.pointer_path,
        plan.previous_snapshot.as_deref().unwrap_or("none"),
        r.events_walked,
        r.walk_end,
        r.index_scan,
        r.index_blocks,
        r.tips_found + r.test_network_tips,
        r.manifests_fetched
    ));
    lines.push(format!(
        "store: {} blocks, {} bytes ({} chunks, {} nodes, the header); {} chunks reused",
        plan.store.len(),
        plan.store.iter().map(|b| b.size).sum::<u64>(),
        r.chunks_written,
        r.nodes_written,
        r.chunks_reused
    ));
    lines.push(format!("pin: {} blocks, directly", plan.pin.len()));
    if let Some(p) = &plan.pointer {
        lines.push(format!(
            "pointer: {} gets latest_snapshot_cid {}, snapshot_seq {}, snapshot_count {}, snapshot_event_cid {}",
            r.pointer_path,
            p.latest_snapshot_cid,
            p.snapshot_seq,
            p.snapshot_count,
            p.snapshot_event_cid.map_or("-".into(), |c| c.to_string())
        ));
    }
    for f in plan.metadata_files.iter().chain(&plan.marker_file) {
        lines.push(format!("write: {}", f.display()));
    }
    if let Some(a) = &r.adopted {
        lines.push(format!("adopt: {a}"));
    }
    lines.push(format!(
        "append-only: {} ({} lost, {} not descending)",
        if a.append_only { "yes" } else { "VIOLATED" },
        a.lost,
        a.non_descendant
    ));
    lines.push(format!("skipped: {}", r.skipped));
    for s in &r.skipped_items {
        let id =
            s.id.as_deref()
                .map_or(String::new(), |i| format!(" (entity {i})"));
        lines.push(format!("  {} {}{id}: {}", s.kind, s.cid, s.reason));
    }
    lines.iter().try_for_each(|l| arke_dr::print_line(l))
}
