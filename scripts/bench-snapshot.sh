#!/usr/bin/env bash
# scripts/bench-snapshot.sh - build-snapshot against the legacy request loop, side by side, on
# production-shaped data in a throwaway node. Prints a Markdown table (not a test).
#
#   scripts/bench-snapshot.sh                 # 10K entities
#   SIZES=10000,100000 scripts/bench-snapshot.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-10000}
CHANGES=${CHANGES:-1000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -p arke-dr -p arke-testkit
scripts/ipfs-node.sh install
BIN=$PWD/target/release
scripts/ipfs-node.sh run -- "$BIN/bench-snapshot" --sizes "$SIZES" --changes "$CHANGES" \
  --build-snapshot "$BIN/build-snapshot" --no-progress
