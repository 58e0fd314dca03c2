//! verify-car: offline verification of a CAR archive (no node, no ipfs binary).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arke_core::Exit;
use arke_core::Severity;
use arke_core::backup::{ChainCheck, VerifyCarOptions};
use arke_core::backup::{update_stamps, verify_chain};
use arke_dr::args::{OutputArgs, cid_arg};
use clap::Parser;

/// Verify a CAR archive offline: header and roots, every block re-hashed, then the closure walk
/// from the root (snapshot, chunks, manifests, components, event chain), naming every missing
/// block with its role. An incremental archive is verified with its chain: its parents are
/// found by name in the same folder (or --chain-dir). When every parent carries a stamp and an
/// index file, only the new file is re-hashed: each parent is trusted by its stamp (the sha256
/// its child names, its size and mtime on disk, the sha256 of its index), and every block the
/// new file links into a parent is read at the parent's index offset and re-hashed. A parent
/// modified after its stamp, or an index that does not match its stamp or lies about an offset,
/// fails (exit 1) naming the file. A parent without stamp or index, or --full-chain, re-hashes
/// every parent and walks the closure over the union; a missing or altered parent is named
/// (exit 1).
///
/// A full verification that passes leaves a stamp `<name>.verified` and an index
/// `<name>.car.index` beside our archives, and one that fails removes the stamp and index of
/// the archive (or of the parent) that failed: export-car --incremental builds only on a
/// stamped archive.
///
/// stdout: with --json, the legacy keys (car_file, snapshot_cid, manifest_count, component_count,
/// event_count, verified) and the findings. A human summary goes to stderr.
#[derive(Debug, Parser)]
// Offline: no node (3), no lock (5), nothing skipped (7).
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::VERIFY_CAR))]
struct Args {
    /// CARv1 or CARv2 file
    car: PathBuf,
    /// Expected root; default: the descriptor, else <car>.json
    #[arg(long, value_name = "CID")]
    root: Option<String>,
    /// Structure only: header, roots present, not a partial archive, metadata size and sha256
    #[arg(long)]
    quick: bool,
    /// Accept blocks whose hash function cannot be checked
    #[arg(long)]
    allow_unverifiable: bool,
    /// Blocks per codec and hash, block size statistics
    #[arg(long)]
    stats: bool,
    /// Largest CAR section accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    max_section: usize,
    /// Hashing threads (0: one per core)
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Folder holding an incremental's parents (default: the archive's folder)
    #[arg(long, value_name = "DIR", value_parser = arke_dr::args::dir_path)]
    chain_dir: Option<PathBuf>,
    /// Do not leave the `<name>.verified` stamp and `<name>.car.index` after a full
    /// verification that passed
    #[arg(long)]
    no_stamp: bool,
    /// Re-hash every parent of an incremental, even those trusted by their stamps and indexes
    #[arg(long, env = "VERIFY_FULL_CHAIN", value_parser = clap::builder::BoolishValueParser::new())]
    full_chain: bool,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("verify-car", &args.out, async {
        let opts = VerifyCarOptions {
            root: args
                .root
                .as_deref()
                .map(|r| cid_arg(r, "--root"))
                .transpose()?,
            quick: args.quick,
            allow_unverifiable: args.allow_unverifiable,
            max_section: args.max_section,
            threads: args.threads,
            chain_dir: args.chain_dir.clone(),
            trust_stamps: !args.full_chain,
            budget: arke_core::spill::MemoryBudget::from_env()?,
        };
        let v = verify_chain(&args.car, &opts, &args.out.progress())
            .await
            .with_context(|| format!("reading {}", args.car.display()))?;
        if !args.no_stamp {
            let tool = format!("arke-dr verify-car {}", env!("CARGO_PKG_VERSION"));
            match update_stamps(&v, &tool) {
                Ok(c) => {
                    if let Some(p) = c.written {
                        tracing::info!("stamped {}", p.display());
                    }
                    if let Some(p) = c.index {
                        tracing::info!("indexed {}", p.display());
                    }
                    for p in c.removed {
                        tracing::warn!("removed {}: that archive no longer verifies", p.display());
                    }
                }
                // The verdict stands; only the next incremental's choice of parent is affected.
                Err(e) => tracing::warn!("cannot update the verification stamps: {e}"),
            }
        }
        if v.members.len() > 1 {
            tracing::info!(
                "chain of {} archives verified together: {}",
                v.members.len(),
                v.members
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" <- ")
            );
        }
        let r = v.report;
        if r.chain_check == Some(ChainCheck::Stamps) {
            tracing::info!(
                "parents trusted by their stamps ({} files); --full-chain re-hashes them",
                r.chain.len()
            );
        }
        for f in &r.findings {
            match f.severity {
                Severity::Error => tracing::error!("{}: {}", f.kind, f.message),
                Severity::Warning => tracing::warn!("{}: {}", f.kind, f.message),
            }
        }
        if args.stats {
            let s = &r.scan.stats;
            tracing::info!(
                "blocks by codec {:?}, by hash {:?}; size min {} / avg {} / max {} bytes",
                s.by_codec,
                s.by_hash,
                s.min_size,
                s.avg_size,
                s.max_size
            );
        }
        tracing::info!(
            "{} ({} check): root {} ({}), snapshot {} {} seq {}, {} entities, {} manifests, {} components, {} events{}, {} blocks ({} duplicates, {} unreferenced): {}",
            r.car_file,
            r.mode,
            r.root.as_deref().unwrap_or("?"),
            r.root_kind.map_or("?", |k| k.as_str()),
            r.snapshot_cid.as_deref().unwrap_or("?"),
            r.snapshot_schema.as_deref().unwrap_or(""),
            r.snapshot_seq.map_or("?".into(), |s| s.to_string()),
            r.entity_count,
            r.manifest_count,
            r.component_count,
            r.event_count,
            match &r.closure {
                Some(c) if c.event_chain.reaches_first_event => " (to the first event)",
                Some(c) if c.event_chain.stopped_at.is_some() => " (to the parent's event head)",
                Some(c) if c.event_chain.head.is_some() => " (chain INCOMPLETE)",
                _ => "",
            },
            r.scan.blocks,
            r.scan.duplicates,
            r.unreferenced_blocks,
            if r.verified {
                "verified".to_string()
            } else {
                format!("VERIFICATION FAILED [{}]", r.error_kinds().join(", "))
            }
        );
        if args.out.json {
            if args.stats {
                arke_dr::print_json(&r)?;
            } else {
                let mut v = serde_json::to_value(&r).map_err(std::io::Error::other)?;
                if let Some(scan) = v.get_mut("scan").and_then(|s| s.as_object_mut()) {
                    scan.remove("stats");
                }
                arke_dr::print_json(&v)?;
            }
        }
        Ok(if r.verified { Exit::Ok } else { Exit::Failed })
    })
}
