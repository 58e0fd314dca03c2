#!/usr/bin/env bash
# scripts/bench-incremental.sh - incremental archives against full ones on production-shaped
# data in one throwaway Kubo node (scripts/ipfs-node.sh run): the night after 1% of the
# entities changed (full export vs export-car --incremental of the same state: time, bytes,
# blocks, peak RSS; verify-car of each), and the restore of a chain of 1 full + 6 incrementals
# vs one full archive of the same state, each into a fresh node. Every command runs under GNU
# time. Prints Markdown tables (not a test).
#
#   scripts/bench-incremental.sh                      # 10K entities
#   SIZES=100000 scripts/bench-incremental.sh         # 100K
#
# Environment: SIZES (default 10000), CHANGE_PERCENT (1), CHAIN_LEN (7), WORK_DIR (keep the
# archives there; default a temporary folder), IPFS_NODE_DIR (see scripts/ipfs-node.sh),
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-10000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -p arke-dr -p arke-bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
extra=()
[ -n "${WORK_DIR:-}" ] && extra+=(--work-dir "$WORK_DIR")
scripts/ipfs-node.sh run -- "$BIN/bench-incremental" --sizes "$SIZES" \
  --change-percent "${CHANGE_PERCENT:-1}" --chain-len "${CHAIN_LEN:-7}" \
  --bin-dir "$BIN" --no-progress "${extra[@]}"
