#!/usr/bin/env bash
# scripts/bench-car.sh - export-car against Kubo's own dag/export of the same snapshot root
# (time, blocks, bytes, and what each file lacks according to verify-car), and verify-car against
# go-car's `car verify` (the `car` that scripts/ipfs-node.sh builds) and sha256sum on the same
# file, side by side on production-shaped data in one throwaway Kubo node (scripts/ipfs-node.sh
# run: loopback, temporary repo, stopped whatever happens). Every command runs under GNU time
# (CPU seconds, peak RSS); the node's CPU seconds over each run come from /proc. Prints Markdown
# tables (not a test).
#
#   scripts/bench-car.sh                      # 10K entities
#   SIZES=10000,100000 scripts/bench-car.sh   # and 100K (archives of several GB)
#
# Environment: SIZES (default 10000), REPS (timed runs of each command, default 3),
# WORK_DIR (keep the archives there; default a temporary folder), VERIFY_CAR_BASELINE (another
# verify-car binary, e.g. main's, timed on the same file in the same run), IPFS_NODE_DIR (see
# scripts/ipfs-node.sh), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-10000}
REPS=${REPS:-3}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -p arke-dr -p arke-bench
NODE_BIN=$(scripts/ipfs-node.sh bin)
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
extra=()
[ -n "${WORK_DIR:-}" ] && extra+=(--work-dir "$WORK_DIR")
[ -n "${VERIFY_CAR_BASELINE:-}" ] && extra+=(--verify-car-baseline "$VERIFY_CAR_BASELINE")
scripts/ipfs-node.sh run -- "$BIN/bench-car" --sizes "$SIZES" --reps "$REPS" \
  --export-car "$BIN/export-car" --verify-car "$BIN/verify-car" \
  --build-snapshot "$BIN/build-snapshot" --car "$NODE_BIN/car" \
  --no-progress "${extra[@]}"
