//! verify-entity: one or more entities checked whole, on the live node or inside an archive.

use std::path::PathBuf;
use std::process::ExitCode;

use arke_core::entity::{
    ArchiveChain, EntityCheck, VerifyEntityOptions, verify_in_archive, verify_on_node,
};
use arke_core::shard::EntityId;
use arke_core::{Exit, Failure, Severity};
use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs};
use clap::Parser;

/// Check that an entity is whole: its tip file (under both shard rules: the worker's last-four
/// and the legacy first-four), the tip manifest (whose id must be the entity's), every version
/// back to the first through `prev`, every block of every component (UnixFS files and folders
/// to their leaves, records and what they link to), and the events of the chain that name it.
/// With --archive, the same inside an archive chain (the tip from the archive's snapshot and
/// live state, the events from the archived chain), without a node.
///
/// Each problem is named with its role and CID ("entity … v3, component image.jpg, link 12 at
/// depth 1"). The event walk starts at the pointer's event head (the archive's, with
/// --archive) and ends at the event naming the entity's first version, at the chain's first
/// event, or after --max-events events, whichever comes first (reaching the bound is a
/// warning, not a failure).
///
/// An id that is not a valid entity id is exit 2; an id with no tip (no tip file, or not in
/// the archive) is exit 1 with a `not_found` finding.
///
/// stdout: one line per entity and one per problem, or with --json the report envelope
/// (`result.entities[]`: id, found, tip, tip_from, tip_files, versions, blocks, bytes, events,
/// findings, whole).
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::VERIFY_ENTITY))]
struct Args {
    /// Entity ids
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// Check inside this archive (and its chain) instead of the node
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Folder holding an incremental archive's parents (default: the archive's folder)
    #[arg(long, value_name = "DIR", value_parser = arke_dr::args::dir_path)]
    chain_dir: Option<PathBuf>,
    /// Events read at most from the head, looking for those naming the entity
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_events: u64,
    /// Parallel block reads
    #[arg(long, env = "ARKE_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// MFS root of the tips
    #[arg(long, env = "ARKE_INDEX_ROOT", default_value = arke_core::shard::INDEX_ROOT)]
    index_root: String,
    /// MFS root of the test network's tips (ids starting with II)
    #[arg(long, default_value = arke_core::shard::TEST_INDEX_ROOT)]
    test_index_root: String,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    out: OutputArgs,
}

fn parse_ids(ids: &[String]) -> Result<Vec<EntityId>, Failure> {
    ids.iter()
        .map(|s| EntityId::parse(s).map_err(|e| Failure::new(Exit::Usage, e.to_string())))
        .collect()
}

fn summary(c: &EntityCheck) -> String {
    if !c.found {
        return format!("{}: NOT FOUND", c.id);
    }
    let events = match &c.events {
        Some(e) => format!(
            "{} events name it ({} read, {})",
            e.naming.len(),
            e.walked,
            e.end.describe()
        ),
        None => "events not checked".into(),
    };
    format!(
        "{}: {} (tip {} from {}; {} versions{}; {} blocks, {} bytes; {events})",
        c.id,
        if c.whole { "whole" } else { "DAMAGED" },
        c.tip.as_deref().unwrap_or("?"),
        c.tip_from.as_deref().unwrap_or("?"),
        c.versions.list.len(),
        if c.versions.complete {
            " to the first"
        } else {
            ", chain INCOMPLETE"
        },
        c.blocks,
        c.bytes,
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = arke_dr::Started::now("verify-entity");
    arke_dr::run("verify-entity", &args.out, async {
        let ids = parse_ids(&args.ids)?;
        let opts = VerifyEntityOptions {
            max_events: args.max_events,
            concurrency: args.concurrency,
            index_root: args.index_root.clone(),
            test_index_root: args.test_index_root.clone(),
        };
        let progress = args.out.progress();
        let report = match &args.archive {
            Some(path) => {
                let chain = ArchiveChain::open(
                    path,
                    args.chain_dir.as_deref(),
                    arke_core::spill::MemoryBudget::from_env()?,
                    &progress,
                )?;
                verify_in_archive(&chain, &ids, &opts, &progress).await?
            }
            None => {
                let kubo = args.node.connect().await?;
                let path = args.pointer.resolve(&kubo).await?;
                let head = arke_core::pointer::read(&kubo, &path)
                    .await?
                    .and_then(|p| p.pointer.event_head);
                if head.is_none() {
                    tracing::warn!("no event head in the pointer {path}: events are not checked");
                }
                verify_on_node(&kubo, &ids, head, &opts, &progress).await?
            }
        };
        let exit = if report.whole { Exit::Ok } else { Exit::Failed };
        let findings: Vec<_> = report.entities.iter().flat_map(|e| &e.findings).collect();
        if args.out.json {
            arke_dr::print_json(&started.envelope(exit, &report, &findings))?;
        } else {
            for c in &report.entities {
                arke_dr::print_line(&summary(c))?;
                for f in &c.findings {
                    let sev = match f.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    };
                    arke_dr::print_line(&format!("  {sev} {}: {}", f.kind, f.message))?;
                }
            }
        }
        Ok(exit)
    })
}
