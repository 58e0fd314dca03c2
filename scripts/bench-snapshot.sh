#!/usr/bin/env bash
# scripts/bench-snapshot.sh - build-snapshot against the legacy request loop, side by side, on
# production-shaped data in one throwaway Kubo node (scripts/ipfs-node.sh run): a full build,
# then CHANGES entity updates with events and an incremental build. build-snapshot runs under
# GNU time (CPU seconds, peak RSS); the node's CPU seconds over each row come from /proc.
# Prints a Markdown table and the targets' ratios (not a test).
#
#   scripts/bench-snapshot.sh                 # 10K entities
#   SIZES=10000,100000 scripts/bench-snapshot.sh
#
# Environment: SIZES (default 10000), CHANGES (default 1000), IPFS_NODE_DIR (see
# scripts/ipfs-node.sh), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-10000}
CHANGES=${CHANGES:-1000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -p arke-dr -p arke-bench
scripts/ipfs-node.sh install
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
scripts/ipfs-node.sh run -- "$BIN/bench-snapshot" --sizes "$SIZES" --changes "$CHANGES" \
  --build-snapshot "$BIN/build-snapshot" --no-progress
