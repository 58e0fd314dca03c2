#!/usr/bin/env bash
# scripts/bench-memory.sh - the memory curve (issue 22): build-snapshot (full), export-car (full),
# verify-car and restore-from-car (into a brand-new node) at several sizes of production-shaped
# data, each under GNU time: wall seconds, CPU seconds, peak RSS, and the disk the run needs (the
# archive; the restored node's repo). The point is the curve: a tool whose peak RSS grows with
# the entity count holds something per entity in RAM. Each size's row is checked against the
# flatness target (RSS at the size within 25% + 32 MB of RSS at the smallest size) and the
# ceiling (256 MB). Prints Markdown tables (not a test: nothing is asserted).
#
#   scripts/bench-memory.sh                               # 10K and 50K entities
#   SIZES=10000,50000,100000 scripts/bench-memory.sh
#   DATA_DIR=/work/data scripts/bench-memory.sh           # reuse generated nodes (see below)
#   ARKE_MEMORY_BUDGET=16M scripts/bench-memory.sh        # the tools' budget (default 128M)
#
# Data: `generate-test-data --entities N --seed 7 --no-pin $GEN_ARGS` into a node of
# scripts/ipfs-node.sh. The lean profile of the million-entity run (small files, pebble datastore):
#   IPFS_NODE_PROFILE=test,pebbleds GEN_ARGS="--max-component-bytes 1024 --large-file-ratio 0" \
#     SIZES=10000,100000,1000000 scripts/bench-memory.sh
# Also measured at each size: verify-snapshot, inspect-archive (the listing, and a diff of the
# archive with itself), and verify-entity --archive of one entity (the summary's first).
# With DATA_DIR, a node state dir DATA_DIR/n<N/1000>k holding a file READY (a stopped node's
# repo, as this script leaves it with KEEP_DATA=1) is copied and started instead of generating
# again; the original is never written to. Environment: SIZES, DATA_DIR, KEEP_DATA (1: leave
# the generated nodes in DATA_DIR), WORK_DIR (default a temporary folder), BIN_DIR (binaries to
# measure instead of building this tree's release build, e.g. a copy of another commit's, for a
# before/after pair), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-10000,50000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
else
  cargo build --release --locked -p arke-dr -p arke-bench >&2
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
scripts/ipfs-node.sh install
WORK=${WORK_DIR:-$(mktemp -d)}
mkdir -p "$WORK"
nodes=()
cleanup() {
  for n in "${nodes[@]}"; do scripts/ipfs-node.sh stop "$n" 2>/dev/null || true; done
  [ -n "${WORK_DIR:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "bench-memory: $*" >&2; }

# shellcheck disable=SC1091  # the node's env file, written by scripts/ipfs-node.sh
api_of() { (. "$1/env"; echo "$IPFS_API_URL"); }

# A node holding N entities in $SRC: a copy of DATA_DIR's, or a new one with the data generated.
source_node() {
  local n=$1 name state
  name=n$((n / 1000))k
  state=$WORK/$name
  rm -rf "$state"
  if [ -n "${DATA_DIR:-}" ] && [ -f "$DATA_DIR/$name/READY" ]; then
    log "$name: copying $DATA_DIR/$name"
    cp -a "$DATA_DIR/$name" "$state"
    scripts/ipfs-node.sh restart "$state" >/dev/null
  else
    scripts/ipfs-node.sh start "$state" >/dev/null
    log "$name: generating $n entities"
    local s=$SECONDS
    # shellcheck disable=SC2086  # GEN_ARGS is a list of flags
    IPFS_API_URL=$(api_of "$state") "$BIN/generate-test-data" --entities "$n" --seed 7 --no-pin \
      --no-progress --summary "$state/summary.json" --work-dir "$WORK" ${GEN_ARGS:-} >&2
    log "$name: generated in $((SECONDS - s)) s"
    if [ "${KEEP_DATA:-0}" = 1 ] && [ -n "${DATA_DIR:-}" ]; then
      local pid; pid=$(cat "$state/pid")
      kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
      mkdir -p "$DATA_DIR"; rm -rf "${DATA_DIR:?}/$name"; cp -a "$state" "$DATA_DIR/$name"
      touch "$DATA_DIR/$name/READY"
      scripts/ipfs-node.sh restart "$state" >/dev/null
    fi
  fi
  nodes+=("$state")
  SRC=$state
}


# Runs a tool under GNU time; prints "wall cpu rss_mb" and keeps its stdout in $WORK/out.json.
timed() {
  local t=$WORK/time.txt s e
  s=$(date +%s.%N)
  if ! /usr/bin/time -o "$t" -f "%U %S %M" "$@" >"$WORK/out.json" 2>"$WORK/err.txt"; then
    log "failed: $*"; tail -5 "$WORK/err.txt" >&2; return 1
  fi
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" '{ printf "%.1f %.1f %d\n", e - s, $1 + $2, $3 / 1024 }' "$t"
}

# Logs and runs one tool under `timed`; its wall s, CPU s and peak RSS MB in w, c, r.
# shellcheck disable=SC2034  # w, c, r are read by the caller's row
measure() {
  local what=$1 res
  shift
  log "$n: $what"
  res=$(timed "$@")
  read -r w c r <<<"$res"
}

# Keeps a row, and logs it at once (a long run's rows survive its interruption).
row() {
  rows+=("$1")
  log "row: $1"
}

rows=()
for n in ${SIZES//,/ }; do
  source_node "$n"
  src=$SRC api=$(api_of "$SRC")
  snaps=$WORK/snapshots-$n back=$WORK/backups-$n
  rm -rf "$snaps" "$back"; mkdir -p "$snaps" "$back"
  load=$(cut -d' ' -f1 /proc/loadavg)
  measure "build-snapshot" "$BIN/build-snapshot" --api "$api" --snapshots-dir "$snaps" --json --no-progress
  row "$n|build-snapshot (full)|$w|$c|$r|-|$load"
  measure "export-car" "$BIN/export-car" --api "$api" --backups-dir "$back" --json --no-progress
  car=$(sed -n 's/.*"car_path": *"\([^"]*\)".*/\1/p' "$WORK/out.json" | head -1)
  bytes=$(stat -c %s "$car")
  row "$n|export-car (full)|$w|$c|$r|archive $((bytes / 1048576)) MB|$load"
  measure "verify-car" "$BIN/verify-car" "$car" --json --no-progress
  row "$n|verify-car|$w|$c|$r|-|$load"
  measure "verify-snapshot" "$BIN/verify-snapshot" --api "$api" --json --no-progress
  row "$n|verify-snapshot|$w|$c|$r|-|$load"
  measure "inspect-archive (every entity)" "$BIN/inspect-archive" "$car" --json --no-progress
  row "$n|inspect-archive (list)|$w|$c|$r|-|$load"
  measure "inspect-archive --diff (the archive against itself)" "$BIN/inspect-archive" "$car" --diff "$car" --json --no-progress
  row "$n|inspect-archive --diff|$w|$c|$r|-|$load"
  id=$(grep -o '"id": *"[0-9A-Z]\{26\}"' "$src/summary.json" 2>/dev/null | head -1 | grep -o '[0-9A-Z]\{26\}' || true)
  if [ -n "$id" ]; then
    measure "verify-entity --archive (one entity)" "$BIN/verify-entity" --archive "$car" "$id" --json --no-progress
    row "$n|verify-entity --archive|$w|$c|$r|-|$load"
  fi
  fresh=$WORK/fresh-$n
  scripts/ipfs-node.sh start "$fresh" >/dev/null
  nodes+=("$fresh")
  measure "restore-from-car" "$BIN/restore-from-car" "$car" --api "$(api_of "$fresh")" --no-progress
  repo=$(du -sm "$fresh/repo" | cut -f1)
  row "$n|restore-from-car|$w|$c|$r|node repo $repo MB|$load"
  scripts/ipfs-node.sh stop "$fresh"; scripts/ipfs-node.sh stop "$src"
  rm -rf "$back"
done

echo "| entities | tool | wall s | CPU s | peak RSS MB | disk | load |"
echo "|---:|---|---:|---:|---:|---|---:|"
printf '%s\n' "${rows[@]}" | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }'
echo
echo "| tool | peak RSS by size (MB) | flat (within 25% + 32 MB of the smallest) | at most 256 MB |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}" | awk -F'|' '
  { if (!($2 in first)) { first[$2] = $5; order[++k] = $2 }
    curve[$2] = curve[$2] (curve[$2] ? ", " : "") $1 ": " $5
    if ($5 > first[$2] * 1.25 + 32) flat[$2] = "no"; if ($5 > 256) cap[$2] = "no" }
  END { for (i = 1; i <= k; i++) { t = order[i]
    printf "| %s | %s | %s | %s |\n", t, curve[t], (t in flat) ? "no" : "yes", (t in cap) ? "no" : "yes" } }'
