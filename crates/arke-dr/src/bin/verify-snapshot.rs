//! verify-snapshot: checks a snapshot of any schema, optionally against the node and the live index.

use std::process::ExitCode;

use anyhow::Context;
use arke_core::model::SnapshotMeta;
use arke_core::snapshot::{VerifyOptions, verify};
use arke_core::{Exit, Failure};
use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg, cid_arg as parse_cid};
use clap::Parser;

/// Verify a snapshot: every entry, every chunk, every block within 1 MiB; optionally the tip
/// manifests on the node (--deep), the live MFS tips (--drift), or append-only against another
/// snapshot (--against).
///
/// stdout: with --json, the legacy keys (snapshot_cid, seq, entity_count, all_checks_passed) and the findings.
#[derive(Debug, Parser)]
// No lock, nothing skipped: a damaged item is a failed check (1).
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::VERIFY_SNAPSHOT))]
struct Args {
    /// Snapshot CID; default: the pointer's latest_snapshot_cid, else <snapshots-dir>/latest.json
    snapshot: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    snapshots: SnapshotsDirArg,
    /// Also check that every tip manifest is on the node (offline) and matches its entry's id and ver
    #[arg(long)]
    deep: bool,
    /// Also compare with the live MFS tips (both shard rules)
    #[arg(long)]
    drift: bool,
    /// Append-only check against an older snapshot
    #[arg(long, value_name = "CID")]
    against: Option<String>,
    /// Include the test network (/arke/test/index) in --drift
    #[arg(long, env = "ARKE_INCLUDE_TEST_NETWORK")]
    include_test_network: bool,
    /// MFS root of the index, for --drift
    #[arg(long, env = "ARKE_INDEX_ROOT", value_name = "MFS_PATH", default_value = arke_core::shard::INDEX_ROOT)]
    index_root: String,
    /// Concurrent block reads for --deep and --against
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    out: OutputArgs,
}

/// The snapshot to check: the argument, else the pointer's latest, else latest.json.
async fn which(args: &Args, kubo: &arke_core::kubo::Kubo) -> anyhow::Result<arke_core::ipld::Cid> {
    if let Some(s) = &args.snapshot {
        return parse_cid(s, "snapshot CID");
    }
    let pointer_path = args.pointer.resolve(kubo).await?;
    if let Some(p) = arke_core::pointer::read(kubo, &pointer_path).await?
        && let Some(c) = p.pointer.latest_snapshot_cid
    {
        return Ok(c);
    }
    let latest = args.snapshots.snapshots_dir.join("latest.json");
    let bytes = std::fs::read(&latest).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!(
                "no snapshot given, none in the pointer {pointer_path}, and {}: {e}",
                latest.display()
            ),
        )
    })?;
    Ok(SnapshotMeta::parse(&bytes)
        .with_context(|| format!("reading {}", latest.display()))?
        .cid)
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("verify-snapshot", &args.out, async {
        let kubo = args.node.connect().await?;
        let cid = which(&args, &kubo).await?;
        let opts = VerifyOptions {
            deep: args.deep,
            drift: args.drift,
            against: args
                .against
                .as_deref()
                .map(|s| parse_cid(s, "--against"))
                .transpose()?,
            index_root: args.index_root.clone(),
            include_test_network: args.include_test_network,
            concurrency: args.concurrency,
            tmp_dir: std::env::temp_dir(),
            budget: arke_core::spill::MemoryBudget::from_env()?,
            ..VerifyOptions::default()
        };
        let r = verify(&kubo, cid, &opts, &args.out.progress()).await?;
        for f in &r.findings {
            tracing::warn!("{}: {}", f.kind, f.message);
        }
        tracing::info!(
            "snapshot {} ({} seq {}): {} entities, {} blocks (largest {} B), checks [{}]: {}",
            r.snapshot_cid,
            r.schema.as_deref().unwrap_or("?"),
            r.seq.map_or("?".into(), |s| s.to_string()),
            r.entity_count,
            r.blocks,
            r.largest_block,
            r.checked
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if r.all_checks_passed {
                "all passed".to_string()
            } else {
                format!("FAILED {:?}", r.findings_by_kind)
            }
        );
        if args.out.json {
            arke_dr::print_json(&r)?;
        }
        Ok(if r.all_checks_passed {
            Exit::Ok
        } else {
            Exit::Failed
        })
    })
}
