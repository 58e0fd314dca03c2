//! restore-from-car: a wiped node back to serving from one archive.

use std::path::PathBuf;
use std::process::ExitCode;

use arke_dr::args::{NodeArgs, OutputArgs, PointerArgs};
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
/// stdout: JSON with the legacy keys (snapshot_cid, entity_count, restored) and counts per phase.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::after_help())]
struct Args {
    /// CARv1 or CARv2 archive
    car: PathBuf,
    /// Snapshot CID; default: the descriptor, <car>.json, or the CAR root when it is a snapshot
    snapshot: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    pointer: PointerArgs,
    /// Restore into a node that already has a pointer or tips
    #[arg(long)]
    force: bool,
    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Restore from an archive that fails verification
    #[arg(long)]
    allow_incomplete: bool,
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
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("restore-from-car", &args.out, async {
        let _ = &args;
        Err(arke_core::report::Failure::new(
            arke_core::report::Exit::Failed,
            "restore-from-car is not implemented in this build yet (issue 5)",
        )
        .into())
    })
}
