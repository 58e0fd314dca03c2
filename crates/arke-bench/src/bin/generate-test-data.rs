//! generate-test-data: production-shaped Arke data in a (test) node.

use std::path::PathBuf;
use std::process::ExitCode;

use arke_core::Exit;
use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs};
use arke_testkit::generator::{GenConfig, generate};
use clap::Parser;

/// Write N production-shaped entities into an IPFS node: ULID ids, eidos manifest chains mixing
/// dag-cbor, dag-json and plain-map-linked dag-cbor, raw and UnixFS (>256 KiB) components,
/// relationships, tips at the worker's shard paths, dag-cbor events with plain-map links (some
/// creates without events), and a v2 index pointer. Seeded: the same seed writes the same data.
///
/// stdout: a JSON summary (ids, tips, event head, counts by kind).
/// Refuses to overwrite an existing index or pointer unless --force. Never point it at production.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::after_help())]
struct Args {
    /// Number of entities (main network)
    #[arg(long, default_value_t = 100)]
    entities: usize,
    /// Extra test-network entities (II… ids under /arke/test/index)
    #[arg(long, default_value_t = 0)]
    test_network: usize,
    /// Seed for reproducible data
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most versions per entity
    #[arg(long, default_value_t = 4)]
    max_versions: u32,
    /// Fraction of entities with a UnixFS file over 256 KiB
    #[arg(long, default_value_t = 0.02)]
    large_file_ratio: f64,
    /// Fraction of later versions written without an event
    #[arg(long, default_value_t = 0.1)]
    silent_version_ratio: f64,
    /// Largest raw component in bytes (production shape: 256000). A small cap with
    /// `--large-file-ratio 0` is the lean profile of the million-entity benchmark: the same
    /// entities, versions and events, with small files
    #[arg(long, default_value_t = 250 << 10, value_parser = clap::value_parser!(u64).range(1..))]
    max_component_bytes: u64,
    /// Also write a legacy @v1 and a proofs @v2 snapshot (named by the pointer) and some tips at legacy paths
    #[arg(long)]
    legacy: bool,
    /// MFS root of the index
    #[arg(long, default_value = arke_core::shard::INDEX_ROOT)]
    index_root: String,
    /// MFS root of the test network's index
    #[arg(long, default_value = arke_core::shard::TEST_INDEX_ROOT)]
    test_index_root: String,
    /// Replace an existing index and pointer
    #[arg(long)]
    force: bool,
    /// Concurrent `add` calls
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Do not pin the objects (production pins every write; unpinned loads faster, for large
    /// benchmark data sets)
    #[arg(long)]
    no_pin: bool,
    /// Folder for the temporary import batches (default: the system temp dir)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write the summary to this file instead of stdout
    #[arg(long)]
    summary: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("generate-test-data", &args.out, async {
        let kubo = args.node.kubo()?;
        let cfg = GenConfig {
            entities: args.entities,
            test_network: args.test_network,
            seed: args.seed,
            max_versions: args.max_versions,
            large_file_ratio: args.large_file_ratio,
            silent_version_ratio: args.silent_version_ratio,
            max_component_bytes: usize::try_from(args.max_component_bytes).unwrap_or(usize::MAX),
            pointer_path: args.pointer.pointer_path.clone(),
            index_root: args.index_root.clone(),
            test_index_root: args.test_index_root.clone(),
            legacy: args.legacy,
            force: args.force,
            concurrency: args.concurrency,
            work_dir: args.work_dir.clone(),
            pin: !args.no_pin,
            ..GenConfig::default()
        };
        let summary = generate(&kubo, &cfg, &args.out.progress()).await?;
        tracing::info!(
            "wrote {} entities, {} versions, {} events, {} blocks in {:.1}s",
            summary.counts.entities + summary.counts.test_network_entities,
            summary.counts.manifest_versions,
            summary.event_count,
            summary.counts.blocks_imported,
            summary.seconds
        );
        match &args.summary {
            Some(path) => {
                let json = serde_json::to_vec_pretty(&summary).map_err(std::io::Error::other)?;
                std::fs::write(path, json)?;
            }
            None => arke_dr::print_json(&summary)?,
        }
        Ok(Exit::Ok)
    })
}
