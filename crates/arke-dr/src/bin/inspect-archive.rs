//! inspect-archive: what an archive chain holds, one entity's history in it, or how it differs
//! from another archive or a snapshot on the node. Read-only; streams.

// Errors carry the CIDs they concern (see arke-core); they are on the cold path.
#![allow(clippy::result_large_err)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arke_core::entity::{
    ArchiveChain, ArchiveSummary, DiffLine, DiffSide, Differ, EntityHistory, RUN_SIZE, StateStream,
    TipSource, entity_history, sort_state,
};
use arke_core::shard::EntityId;
use arke_core::{Exit, Failure, Finding, FindingKind, Severity};
use arke_dr::Started;
use arke_dr::args::{NodeArgs, OutputArgs};
use clap::Parser;

/// List what an archive chain holds: its kind (full or incremental), parent, the chain's
/// files, the snapshot and its seq, counts (blocks, bytes, entities), then every entity with
/// its version and tip (the archive's state: the snapshot's entries, each replaced by the live
/// tip the export saw, then the live entities the snapshot lacks). An incremental is read with
/// its parents, found by name in its folder (or --chain-dir).
///
/// --entity ID shows one entity's versions (with their components) and the archived events
/// naming it. --diff OTHER compares with OTHER, another archive file (the older state) or a
/// snapshot CID on the node (--api): entities added, changed (old and new tip) and removed.
///
/// Memory does not grow with the entity count: the entities are streamed chunk by chunk
/// (the CAR index, about 40 bytes a block, is the only thing held), and a diff sorts each side
/// on disk (a v4 snapshot keeps its entries in insertion order, not by id) before merging.
///
/// stdout: a human table, or with --json the report envelope written as a stream
/// (`result.archive`, then `result.entities[]` and `result.entity_count`; with --entity
/// `result.entity`; with --diff `result.changes[]` and the counts).
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::INSPECT_ARCHIVE))]
struct Args {
    /// The archive (CARv1 with an arke/backup@v1 descriptor)
    file: PathBuf,
    /// Folder holding an incremental archive's parents (default: the archive's folder)
    #[arg(long, value_name = "DIR", value_parser = arke_dr::args::dir_path)]
    chain_dir: Option<PathBuf>,
    /// One entity's versions, components and events
    #[arg(long, value_name = "ID", conflicts_with = "diff")]
    entity: Option<String>,
    /// Compare with another archive (the older state) or a snapshot CID on the node
    #[arg(long, value_name = "FILE|CID")]
    diff: Option<String>,
    /// With --entity: events read at most from the archived head
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_events: u64,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Started::now("inspect-archive");
    arke_dr::run("inspect-archive", &args.out, async {
        let entity = args
            .entity
            .as_deref()
            .map(|s| EntityId::parse(s).map_err(|e| Failure::new(Exit::Usage, e.to_string())))
            .transpose()?;
        let progress = args.out.progress();
        let budget = arke_core::spill::MemoryBudget::from_env()?;
        let chain = ArchiveChain::open(&args.file, args.chain_dir.as_deref(), budget, &progress)?;
        let summary = chain.summary();
        if !args.out.json {
            print_summary(&summary)?;
        }
        if let Some(id) = entity {
            let h = entity_history(&chain, &id, args.max_events).await?;
            return show_entity(&args, &started, summary, h);
        }
        if let Some(other) = &args.diff {
            return diff(&args, &started, &chain, summary, other).await;
        }
        list(&args, &started, &chain, &summary).await
    })
}

fn print_summary(s: &ArchiveSummary) -> std::io::Result<()> {
    let mut lines = vec![
        format!("archive   {} ({})", s.file, s.kind),
        format!("root      {}", s.root),
    ];
    if let (Some(p), Some(b)) = (&s.parent, &s.base) {
        lines.push(format!("parent    {p} (base {b})"));
    }
    let files: Vec<String> = s.chain.iter().map(|m| m.file.clone()).collect();
    lines.push(format!("chain     {}", files.join(" <- ")));
    lines.push(format!(
        "snapshot  {} ({} seq {})",
        s.snapshot, s.snapshot_schema, s.snapshot_seq
    ));
    lines.push(format!(
        "events    {} (head {})",
        s.event_count,
        s.event_head.as_deref().unwrap_or("none")
    ));
    lines.push(format!(
        "blocks    {} in {} bytes; {} live tips; created {}{}",
        s.blocks,
        s.bytes,
        s.live_count,
        s.created,
        if s.partial { "; PARTIAL" } else { "" }
    ));
    for l in lines {
        arke_dr::print_line(&l)?;
    }
    Ok(())
}

fn from_name(f: TipSource) -> &'static str {
    match f {
        TipSource::Snapshot => "snapshot",
        TipSource::Live => "live",
    }
}

fn ver(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Every entity, streamed.
async fn list(
    args: &Args,
    started: &Started,
    chain: &ArchiveChain,
    summary: &ArchiveSummary,
) -> Result<Exit, arke_core::Error> {
    let src = chain.source();
    let d = &chain.newest().descriptor;
    let (mut state, _) = StateStream::open(&src, d.snapshot, &d.live).await?;
    let mut out = arke_dr::stdout_stream();
    let json = args.out.json;
    if json {
        started.open_stream(&mut out)?;
        write!(out, "{{\"archive\":{},\"entities\":[", to_json(summary)?)?;
    } else {
        writeln!(out, "\n{:<28} {:>5}  {:<62} from", "entity", "ver", "tip")?;
    }
    let mut n = 0u64;
    while let Some(e) = state.next().await? {
        if json {
            let sep = if n == 0 { "" } else { "," };
            write!(out, "{sep}{}", to_json(&e)?)?;
        } else {
            let line = format!(
                "{:<28} {:>5}  {:<62} {}",
                e.id,
                ver(e.ver),
                e.tip.to_string(),
                from_name(e.from)
            );
            writeln!(out, "{line}")?;
        }
        n += 1;
    }
    if json {
        write!(out, "],\"entity_count\":{n}}}")?;
        started.close_stream(&mut out, Exit::Ok, &[])?;
    } else {
        writeln!(out, "{n} entities")?;
        out.flush()?;
    }
    Ok(Exit::Ok)
}

fn to_json<T: serde::Serialize>(v: &T) -> std::io::Result<String> {
    serde_json::to_string(v).map_err(std::io::Error::other)
}

fn show_entity(
    args: &Args,
    started: &Started,
    summary: ArchiveSummary,
    h: EntityHistory,
) -> Result<Exit, arke_core::Error> {
    let not_found = Finding {
        severity: Severity::Error,
        kind: FindingKind::NotFound,
        id: Some(h.id.clone()),
        cid: None,
        role: None,
        message: format!(
            "entity {} not found: not in the archive's snapshot {} nor its live state",
            h.id, summary.snapshot
        ),
    };
    let exit = if h.whole() { Exit::Ok } else { Exit::Failed };
    let mut findings: Vec<&Finding> = h.findings.iter().collect();
    if !h.found {
        findings.push(&not_found);
    }
    if args.out.json {
        let result = serde_json::json!({ "archive": summary, "entity": h });
        arke_dr::print_json(&started.envelope(exit, result, &findings))?;
        return Ok(exit);
    }
    arke_dr::print_line("")?;
    if let (Some(tip), Some(from)) = (&h.tip, h.from) {
        arke_dr::print_line(&format!(
            "entity {}: tip {tip} (from the {})",
            h.id,
            from_name(from)
        ))?;
    }
    for v in &h.versions.list {
        arke_dr::print_line(&format!("  v{} {}", ver(v.ver), v.cid))?;
        for (label, cid) in &v.components {
            arke_dr::print_line(&format!("      {label}: {cid}"))?;
        }
    }
    if let Some(ev) = &h.events {
        arke_dr::print_line(&format!(
            "  {} archived events name it ({} read, {})",
            ev.naming.len(),
            ev.walked,
            ev.end.describe()
        ))?;
        for e in &ev.naming {
            arke_dr::print_line(&format!(
                "    event {} {} v{} tip {} {}",
                e.n,
                e.cid,
                ver(e.ver),
                e.tip.as_deref().unwrap_or("-"),
                e.ts.as_deref().unwrap_or("")
            ))?;
        }
    }
    for f in findings {
        arke_dr::print_line(&format!("  error {}: {}", f.kind, f.message))?;
    }
    Ok(exit)
}

/// The other side of a diff: an archive file, or a snapshot CID on the node.
enum Other {
    Archive(PathBuf),
    Snapshot(arke_core::ipld::Cid),
}

fn other_of(s: &str) -> Result<Other, Failure> {
    if Path::new(s).exists() {
        return Ok(Other::Archive(PathBuf::from(s)));
    }
    arke_core::ipld::parse_cid(s)
        .map(Other::Snapshot)
        .map_err(|_| {
            Failure::new(
                Exit::Usage,
                format!("--diff {s}: no such file, and not a CID"),
            )
        })
}

async fn diff(
    args: &Args,
    started: &Started,
    chain: &ArchiveChain,
    summary: ArchiveSummary,
    other: &str,
) -> Result<Exit, arke_core::Error> {
    let progress = args.out.progress();
    let d = &chain.newest().descriptor;
    let (new, new_count) = sort_state(&chain.source(), d.snapshot, &d.live, RUN_SIZE).await?;
    let (old, old_count, other_json) = match other_of(other)? {
        Other::Archive(path) => {
            let oc = ArchiveChain::open(
                &path,
                args.chain_dir.as_deref(),
                arke_core::spill::MemoryBudget::from_env()?,
                &progress,
            )?;
            let od = &oc.newest().descriptor;
            let (s, n) = sort_state(&oc.source(), od.snapshot, &od.live, RUN_SIZE).await?;
            (s, n, serde_json::json!({ "archive": oc.summary() }))
        }
        Other::Snapshot(cid) => {
            let kubo = args.node.connect().await?;
            let src = arke_core::NodeSource { kubo };
            let (s, n) = sort_state(&src, cid, &[], RUN_SIZE).await?;
            (s, n, serde_json::json!({ "snapshot": cid.to_string() }))
        }
    };
    let mut differ = Differ::new(old, new)?;
    let mut out = arke_dr::stdout_stream();
    let json = args.out.json;
    if json {
        started.open_stream(&mut out)?;
        write!(
            out,
            "{{\"archive\":{},\"other\":{},\"changes\":[",
            to_json(&summary)?,
            other_json
        )?;
    } else {
        writeln!(out, "\ncompared with {other} (the older state)")?;
    }
    let (mut added, mut changed, mut removed) = (0u64, 0u64, 0u64);
    while let Some(line) = differ.next_change()? {
        match &line {
            DiffLine::Added { .. } => added += 1,
            DiffLine::Changed { .. } => changed += 1,
            DiffLine::Removed { .. } => removed += 1,
        }
        if json {
            let sep = if added + changed + removed == 1 {
                ""
            } else {
                ","
            };
            write!(out, "{sep}{}", to_json(&line)?)?;
        } else {
            writeln!(out, "{}", human_line(&line))?;
        }
    }
    let unchanged = differ.unchanged;
    if json {
        write!(
            out,
            "],\"added\":{added},\"changed\":{changed},\"removed\":{removed},\"unchanged\":{unchanged},\"entities\":{new_count},\"other_entities\":{old_count}}}"
        )?;
        started.close_stream(&mut out, Exit::Ok, &[])?;
    } else {
        writeln!(
            out,
            "{added} added, {changed} changed, {removed} removed, {unchanged} unchanged ({new_count} entities here, {old_count} there)"
        )?;
        out.flush()?;
    }
    Ok(Exit::Ok)
}

fn side(s: &DiffSide) -> String {
    format!("v{} {}", ver(s.ver), s.tip)
}

fn human_line(l: &DiffLine) -> String {
    match l {
        DiffLine::Added { new } => format!("+ {} {}", new.id, side(new)),
        DiffLine::Changed { old, new } => {
            format!("~ {} {} -> {}", new.id, side(old), side(new))
        }
        DiffLine::Removed { old } => format!("- {} {}", old.id, side(old)),
    }
}
