//! restore-from-car: a wiped node back to serving from one archive, or (--entity) some
//! entities put back into a live node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use arke_core::backup::VerifyCarOptions;
use arke_core::kubo::Kubo;
use arke_core::shard::EntityId;
use arke_core::{EntityRestore, EntityRestoreOptions, EntityRestoreReport, Exit, Failure};
use arke_core::{Restore, RestoreOptions, RestoreReport, ShardChoice};
use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs, cid_arg};
use arke_dr::operation::{self, Mode};
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
///
/// Partial restore (--entity ID, repeatable, or --entities-file FILE): only these entities are
/// put back into a LIVE node, no --force needed. Each gets the tip a full restore of the
/// archive would write; its blocks (every version's manifest, components to their leaves,
/// records) are read from the archive chain, imported and pinned with one pin anchor per
/// entity; its tip files are written (the rules of --shard-rule, and any it already has).
/// Every other tip, the pointer and the event chain are left as they are: the restored tip is
/// not announced by an event (the API reads the tip file, and its next event for the entity
/// links normally). Per entity, one action: `restore` (no tip, an older or unrelated tip, or
/// blocks missing), `keep` (the live tip descends from the archive's through `prev`: the
/// entity moved on since the archive, and restoring would roll it back; --force does),
/// `unchanged` (the tip files name the archive's tip and the node holds every block: a rerun
/// changes nothing). An id not in the archive is refused before anything is written (exit 2),
/// as is an entity whose blocks are not whole in the archive (exit 1). --dry-run lists each
/// entity (live tip, archive tip, action and why) and writes nothing. stdout: one line per
/// entity, or with --json the report (mode "entities", entities[] with id, live_tip,
/// archive_tip, action, reason, tip_paths, blocks, pin_anchor).
#[derive(Debug, Parser)]
// No lock (a rerun resumes through the marker); nothing is skipped: an incomplete archive is refused (1).
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::RESTORE_FROM_CAR))]
struct Args {
    /// CARv1 or CARv2 archive
    car: PathBuf,
    /// Snapshot CID; default: the descriptor, <car>.json, or the CAR root when it is a snapshot
    snapshot: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    /// Restore into a node that already has a pointer or tips (and remove entries in the way of
    /// tip paths); with --entity: roll back entities whose live tip descends from the archive's
    #[arg(long)]
    force: bool,
    /// Restore only this entity into the live node (repeatable)
    #[arg(long = "entity", value_name = "ID")]
    entities: Vec<String>,
    /// Restore only the entities listed in FILE (one id per line; `#` starts a comment)
    #[arg(long, value_name = "FILE")]
    entities_file: Option<PathBuf>,
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Restore from an archive that fails verification (not with --entity)
    #[arg(long, conflicts_with_all = ["entities", "entities_file"])]
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
    /// (sent to the node as its timeout; the upload itself must progress within --timeout).
    /// Default: by what is imported, the largest of 600 s, bytes / 2 MiB/s and blocks / 1,000
    /// a second (4 GB: 32 min, 6.5M blocks: 1 h 48 min, 100 GB: 13 h); an explicit value wins
    /// whatever the size
    #[arg(long, env = "ARKE_IMPORT_TIMEOUT", value_name = "SECS")]
    import_timeout: Option<u64>,
    /// Concurrent tip writes and read-backs
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    out: OutputArgs,
}

/// The ids of --entity and --entities-file, each once, in the order given; a malformed id or
/// an unreadable file is refused before anything is read.
fn entity_ids(args: &Args) -> Result<Vec<EntityId>, Failure> {
    let mut raw: Vec<String> = args.entities.clone();
    if let Some(f) = &args.entities_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Failure::new(Exit::Io, format!("{}: {e}", f.display())))?;
        raw.extend(entities_in(&text));
    }
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    for r in raw {
        let id = EntityId::parse(&r).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        if seen.insert(r) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// One id per line; blank lines and everything after `#` ignored.
fn entities_in(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn shard(rule: ShardRuleArg) -> ShardChoice {
    match rule {
        ShardRuleArg::Worker => ShardChoice::Worker,
        ShardRuleArg::Legacy => ShardChoice::Legacy,
        ShardRuleArg::Both => ShardChoice::Both,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("restore-from-car", &args.out, async {
        let ids = entity_ids(&args)?;
        if ids.is_empty() && args.entities_file.is_some() {
            return Err(Failure::new(Exit::Usage, "the entities file names no entity").into());
        }
        let kubo = args.node.connect().await?;
        let mode = Mode::dry_run_if(args.dry_run);
        if !ids.is_empty() {
            let opts = entity_options(&args, ids)?;
            let op = EntityRestore { kubo: &kubo };
            return operation::run(&op, &opts, mode, &args.out, |r| render_some(&args, r)).await;
        }
        let opts = options(&args, &kubo).await?;
        // stdout is JSON whatever --json says (the legacy contract), a dry run's plan too.
        let out = OutputArgs {
            json: true,
            ..args.out.clone()
        };
        operation::run(&Restore { kubo: &kubo }, &opts, mode, &out, render).await
    })
}

fn snapshot_arg(args: &Args) -> anyhow::Result<Option<arke_core::ipld::Cid>> {
    args.snapshot
        .as_deref()
        .map(|s| cid_arg(s, "snapshot CID"))
        .transpose()
}

/// The full restore's options. Which spelling of the pointer this node uses can only be asked
/// of the node, so a restore that must probe waits for the node first (before, not while, the
/// archive is verified); the plan waits again, at once satisfied.
async fn options(args: &Args, kubo: &Kubo) -> Result<RestoreOptions, arke_core::Error> {
    let wait = Duration::from_secs(args.wait);
    if !args.pointer.explicit {
        kubo.wait_ready(wait)
            .await
            .context("waiting for the node")?;
    }
    Ok(RestoreOptions {
        car: args.car.clone(),
        snapshot: snapshot_arg(args)?,
        allow_incomplete: args.allow_incomplete,
        force: args.force,
        shard: shard(args.shard_rule),
        index_root: args.index_root.clone(),
        pointer_path: args.pointer.resolve(kubo).await?,
        wait,
        concurrency: args.concurrency.max(1),
        import_timeout: args.import_timeout.map(|s| Duration::from_secs(s.max(1))),
        verify: VerifyCarOptions {
            chain_dir: args.chain_dir.clone(),
            budget: arke_core::spill::MemoryBudget::from_env()?,
            ..VerifyCarOptions::default()
        },
    })
}

/// --entity: the partial restore's options.
fn entity_options(args: &Args, ids: Vec<EntityId>) -> anyhow::Result<EntityRestoreOptions> {
    Ok(EntityRestoreOptions {
        car: args.car.clone(),
        chain_dir: args.chain_dir.clone(),
        ids,
        snapshot: snapshot_arg(args)?,
        force: args.force,
        shard: shard(args.shard_rule),
        index_root: args.index_root.clone(),
        wait: Duration::from_secs(args.wait),
        concurrency: args.concurrency.max(1),
        import_timeout: args.import_timeout.map(|s| Duration::from_secs(s.max(1))),
        budget: arke_core::spill::MemoryBudget::from_env()?,
    })
}

/// The restore's log line (a rerun of a completed restore said "already restored" when it
/// was planned, and wrote nothing), then the report on stdout.
fn render(r: &RestoreReport) -> anyhow::Result<()> {
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    if !r.already_restored {
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
    arke_dr::print_json(r)?;
    Ok(())
}

/// --entity: the counts in the log, then one line per entity, or the report with --json.
fn render_some(args: &Args, r: &EntityRestoreReport) -> anyhow::Result<()> {
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!("{}", r.summary());
    if args.out.json {
        arke_dr::print_json(r)?;
    } else {
        for l in r.lines() {
            arke_dr::print_line(&l)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::entities_in;

    #[test]
    fn entities_file_skips_comments_and_blank_lines() {
        let text =
            "# damaged on 2026-03-01\n01J8ME3HXYZW\n\n  01J8ME3HABCD  # the image\n#01J8ME3HNOPE\n";
        assert_eq!(entities_in(text), ["01J8ME3HXYZW", "01J8ME3HABCD"]);
    }
}
