#!/usr/bin/env bash
# scripts/bench-hourly.sh - the hourly archive (hourly-snapshot with HOURLY_ARCHIVE=1) on
# production-shaped data in one throwaway Kubo node (scripts/ipfs-node.sh run): a night
# (daily-backup, full archive), 1% of the entities changed, one hourly run (build-snapshot,
# incremental archive, verify-car of its chain) beside a full export-car of the same state: time,
# bytes, blocks, peak RSS. Then HOURS more hourly runs (a 24th of a day's changes each), and
# verify-car and restore-from-car of the whole chain, and a full export-car of the last state
# restored the same way (the chain's restore against one full archive's). Upload off (S3 time is the link's). Every
# command runs under GNU time. Prints Markdown tables (not a test).
#
#   scripts/bench-hourly.sh                          # 10K entities, a day of hourly archives
#   SIZES=1000 HOURS=167 scripts/bench-hourly.sh     # a week's chain (169 members)
#   SIZES=100000 scripts/bench-hourly.sh             # 100K (generation alone takes 10+ min)
#
# Environment: SIZES (default 10000), CHANGE_PERCENT (1), HOURS (23), WORK_DIR (keep the
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
scripts/ipfs-node.sh run -- "$BIN/bench-hourly" --sizes "$SIZES" \
  --change-percent "${CHANGE_PERCENT:-1}" --hours "${HOURS:-23}" \
  --bin-dir "$BIN" --no-progress "${extra[@]}"
