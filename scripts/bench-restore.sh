#!/usr/bin/env bash
# scripts/bench-restore.sh - restore-from-car against Kubo's own dag/import of the same archive
# with its root pinned (the floor) and the legacy request loop (the same dag/import, then
# files/mkdir + files/write per entity, one request at a time), side by side, on
# production-shaped data. Every node (the source and one brand-new node per contender) is a
# Kubo node started with scripts/ipfs-node.sh on loopback with a temporary repo, and stopped
# when its step ends or the benchmark exits, whatever happens (the script's watchdog); each
# contender starts once the disk has written back the last one's writes, and the stopped
# nodes' repos are deleted only when the size is done (a deletion under the next import
# measures the disk's discard, not the import). They are deleted when the run ends: give the
# disk a minute before the next run (its first contender measured 14 s instead of 5 s when run
# at once). One pair per size is noisy; the ratio in docs/benchmarks.md is the median of six.
# restore-from-car runs under GNU time (peak RSS); each node's CPU seconds and peak RSS come
# from /proc. Prints a Markdown table (not a test).
#
#   scripts/bench-restore.sh                       # 10K entities
#   SIZES=10000,100000 scripts/bench-restore.sh    # and 100K
#   WORK_DIR=/tmp/rb scripts/bench-restore.sh      # keep the archives; a rerun reuses them
#   CONTENDERS=restore,floor scripts/bench-restore.sh
#   PIN_ROOTS=false scripts/bench-restore.sh       # floor/reference import without pinning the root
#   REFERENCE_SAMPLE=10000 SIZES=100000 scripts/bench-restore.sh
#                                                  # the legacy loop for the first 10,000 entries only,
#                                                  # extrapolated linearly (a lower bound; marked)
#   CONTENDERS=floor,reference,restore REFERENCE_ON_FLOOR_NODE=true scripts/bench-restore.sh
#                                                  # the reference's loop on the floor's node, after
#                                                  # its import (one dag/import fewer)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-10000}
CONTENDERS=${CONTENDERS:-floor,restore,reference}
PIN_ROOTS=${PIN_ROOTS:-true}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
cargo build --release --locked -p arke-dr -p arke-bench
scripts/ipfs-node.sh install
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
args=(--sizes "$SIZES" --contenders "$CONTENDERS" --bin-dir "$BIN" --no-progress)
[ -n "${WORK_DIR:-}" ] && args+=(--work-dir "$WORK_DIR")
args+=(--pin-roots "$PIN_ROOTS" --reference-sample "${REFERENCE_SAMPLE:-0}" \
  --reference-on-floor-node "${REFERENCE_ON_FLOOR_NODE:-false}")
exec "$BIN/bench-restore" "${args[@]}"
