//! verify-car: offline verification of a CAR archive (no node, no ipfs binary).

use std::path::PathBuf;
use std::process::ExitCode;

use arke_dr::args::OutputArgs;
use clap::Parser;

/// Verify a CAR archive offline: header and roots, every block re-hashed, then the closure walk
/// from the root, naming every missing block with its role.
///
/// stdout: with --json, the legacy keys (car_file, snapshot_cid, manifest_count, component_count,
/// event_count, verified) and the findings.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::after_help())]
struct Args {
    /// CARv1 or CARv2 file
    car: PathBuf,
    /// Expected root; default: the descriptor, else <car>.json
    #[arg(long, value_name = "CID")]
    root: Option<String>,
    /// Structure only: header, roots present, metadata size and sha256
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
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("verify-car", &args.out, async {
        let _ = &args;
        Err(arke_core::report::Failure::new(
            arke_core::report::Exit::Failed,
            "verify-car is not implemented in this build yet (issue 4)",
        )
        .into())
    })
}
