//! build-snapshot: a complete, bounded, incremental snapshot of the Arke index.

use std::path::PathBuf;
use std::process::ExitCode;

use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs, SnapshotsDirArg};
use clap::Parser;

/// Build a snapshot of every entity (event chain ∪ MFS tips), store it as bounded blocks, and move
/// the index pointer's snapshot fields without losing concurrent event updates.
///
/// stdout: the snapshot CID (legacy contract), or the report with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::after_help())]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    #[command(flatten)]
    snapshots: SnapshotsDirArg,
    /// Lock file (flock, released by the kernel if the process dies). Default: <snapshots-dir>/.build-snapshot.lock
    #[arg(long, env = "ARKE_LOCK_FILE", value_name = "PATH")]
    lock_file: Option<PathBuf>,
    /// Ignore the previous snapshot and walk the whole event chain
    #[arg(long)]
    full: bool,
    /// Include the test network (/arke/test/index, ids starting with II)
    #[arg(long, env = "ARKE_INCLUDE_TEST_NETWORK")]
    include_test_network: bool,
    /// Exit non-zero when the append-only check against the previous snapshot finds a violation
    #[arg(long)]
    strict_append_only: bool,
    /// Concurrent manifest fetches
    #[arg(long, env = "ARKE_CONCURRENCY", value_name = "N", default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("build-snapshot", &args.out, async {
        let _ = &args;
        Err(arke_core::report::Failure::new(
            arke_core::report::Exit::Failed,
            "build-snapshot is not implemented in this build yet (issue 3)",
        )
        .into())
    })
}
