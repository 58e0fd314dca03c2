//! export-car: a complete, verified CARv1 archive of the snapshot, its history and the event chain.

use std::process::ExitCode;

use arke_dr::args::{BackupsDirArg, NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg};
use clap::Parser;

/// Export the closure of a snapshot (snapshot, chunks, every manifest version, every component,
/// the whole event chain) to backups/arke-{seq}-{YYYYMMDD-HHMMSS}.car, every block re-hashed.
///
/// stdout: the CAR path (legacy contract), or the report with --json.
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
    backups: BackupsDirArg,
    /// Export this snapshot instead of the pointer's latest
    #[arg(long, value_name = "CID", conflicts_with = "latest")]
    snapshot: Option<String>,
    /// Export the snapshot named in <snapshots-dir>/latest.json (legacy contract)
    #[arg(long)]
    latest: bool,
    /// Also archive previous snapshots
    #[arg(long)]
    with_history: bool,
    /// Write a salvage archive marked partial instead of failing on missing blocks
    #[arg(long)]
    allow_missing: bool,
    /// After a successful export, keep only the newest N archives
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// After a successful export, delete archives older than D days
    #[arg(long, value_name = "D")]
    keep_days: Option<u64>,
    /// Concurrent block fetches
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("export-car", &args.out, async {
        let _ = &args;
        Err(arke_core::report::Failure::new(
            arke_core::report::Exit::Failed,
            "export-car is not implemented in this build yet (issue 4)",
        )
        .into())
    })
}
