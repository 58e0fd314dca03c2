#!/usr/bin/env bash
# scripts/bench-drill.sh - restore-drill's RTO by phase beside a plain restore-from-car of the
# same archive, on production-shaped data. One live Kubo node (scripts/ipfs-node.sh) receives
# ENTITIES entities from generate-test-data; daily-backup writes the night's full archive into a
# local folder and (S3=1) uploads it to a throwaway SeaweedFS (scripts/s3-server.sh). Then, RUNS
# times each: restore-drill --from-dir (the archive in place), restore-drill from S3 (download
# included), both with the scratch Kubo the project builds; and restore-from-car of the same
# archive into a brand-new node. Every command runs under GNU time (wall, peak RSS: for the
# drill the largest of the drill and the scratch daemon it waits for); the fresh node's own
# peak comes from /proc (VmHWM). Nodes and the S3 server are stopped when the script exits,
# whatever happens (their watchdogs). Prints Markdown tables (not a test).
#
#   scripts/bench-drill.sh                          # 10K entities, 3 runs
#   ENTITIES=100000 RUNS=1 scripts/bench-drill.sh   # 100K (generation alone takes 10+ min)
#   S3=0 scripts/bench-drill.sh                     # the local folder only
#
# Environment: ENTITIES (10000), RUNS (3), S3 (1), SEED (1), WORK_DIR (keep the files there;
# default a temporary folder, removed), IPFS_NODE_DIR, S3_SERVER_DIR, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENTITIES=${ENTITIES:-10000}
RUNS=${RUNS:-3}
S3=${S3:-1}
SEED=${SEED:-1}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
cargo build --release --locked -p arke-dr -p arke-bench
scripts/ipfs-node.sh install
[ "$S3" = 1 ] && scripts/s3-server.sh install
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
KUBO="$(scripts/ipfs-node.sh bin)/ipfs"

if [ -n "${WORK_DIR:-}" ]; then
  WORK=$WORK_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /var/tmp/bench-drill.XXXXXX)
fi
NODES=()
cleanup() {
  local n
  for n in "${NODES[@]}"; do scripts/ipfs-node.sh stop "$n" >/dev/null 2>&1 || true; done
  [ -f "$WORK/s3/env" ] && scripts/s3-server.sh stop "$WORK/s3" >/dev/null 2>&1
  [ -z "${WORK_DIR:-}" ] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT

# A node that stops when this script does.
start_node() {
  NODES+=("$1")
  scripts/ipfs-node.sh start "$1" --watch-pid $$
}

# `<wall seconds> <peak RSS KiB>` from GNU time's -v report.
time_of() {
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0;
      for (i = 1; i <= n; i++) w = w * 60 + p[i] }
    /Maximum resident set size/ { r = $2 }
    END { printf "%.1f %d\n", w, r }' "$1"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

echo "== data: $ENTITIES entities (seed $SEED) into a live node" >&2
LIVE=$(start_node "$WORK/live")
env=(ARKE_DR_CONFIG=/nonexistent IPFS_API_URL="$LIVE" SNAPSHOTS_DIR="$WORK/snapshots"
  BACKUPS_DIR="$WORK/backups" ARKE_LOG_DIR="$WORK/log" ARKE_STATE_DIR="$WORK/state"
  DRILL_WORK_DIR="$WORK/drill" DRILL_IPFS_BIN="$KUBO" DRILL_MIN_FREE_MB=64 SNAPSHOT_GC=0)
t0=$SECONDS
IPFS_API_URL=$LIVE "$BIN/generate-test-data" --entities "$ENTITIES" --seed "$SEED" >/dev/null
echo "   generated in $((SECONDS - t0)) s" >&2

if [ "$S3" = 1 ]; then
  endpoint=$(scripts/s3-server.sh start "$WORK/s3" --watch-pid $$)
  # shellcheck disable=SC1091
  . "$WORK/s3/env"
  bucket=bench-drill
  # The server creates no bucket on upload (as AWS): one signed PUT makes it.
  curl -fsS -X PUT --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$endpoint/$bucket" >/dev/null
  env+=(UPLOAD=1 S3_BUCKET="$bucket" S3_PREFIX=backups/bench/ AWS_ENDPOINT_URL="$endpoint"
    AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
    AWS_REGION="$AWS_REGION" S3_STORAGE_CLASS=STANDARD)
else
  env+=(UPLOAD=0)
fi

echo "== the night: daily-backup (snapshot, full archive, verify$([ "$S3" = 1 ] && echo ', upload'))" >&2
env "${env[@]}" /usr/bin/time -v -o "$WORK/night.time" "$BIN/daily-backup" >/dev/null
CAR=$(find "$WORK/backups" -maxdepth 1 -name 'arke-*.car' | sort | tail -n 1)
CAR_MIB=$(mib "$(($(stat -c %s "$CAR") / 1024))")
read -r night_wall _ < <(time_of "$WORK/night.time")
echo "   $(basename "$CAR"): $CAR_MIB MiB in $night_wall s" >&2

ROWS=()
drill() { # <label> [args]
  local label=$1 i wall rss
  shift
  for i in $(seq 1 "$RUNS"); do
    env "${env[@]}" /usr/bin/time -v -o "$WORK/drill.time" \
      "$BIN/restore-drill" --json --compare "sample 1000" "$@" >"$WORK/drill.json"
    read -r wall rss < <(time_of "$WORK/drill.time")
    ROWS+=("$(jq -r --arg l "$label" --arg i "$i" --arg w "$wall" --arg r "$(mib "$rss")" \
      '.drill as $d | $d.phases as $p | "| \($l) | \($i) | \($p.download) | \($p.verify) |
      \($p.import) | \($p.tips) | **\($p.total)** | \($p.scratch_start) | \($p.restore_reverify) |
      \($p.compare) | \($w) | \($r) |"' "$WORK/drill.json" | tr -d '\n')")
    echo "   ${ROWS[-1]}" >&2
  done
}

plain() {
  local i node url wall rss hwm pid
  for i in $(seq 1 "$RUNS"); do
    node="$WORK/fresh-$i"
    url=$(start_node "$node")
    pid=$(cat "$node/pid")
    IPFS_API_URL=$url /usr/bin/time -v -o "$WORK/plain.time" \
      "$BIN/restore-from-car" --json --no-progress "$CAR" >"$WORK/plain.json" 2>"$WORK/plain.err"
    hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    scripts/ipfs-node.sh stop "$node" >/dev/null
    read -r wall rss < <(time_of "$WORK/plain.time")
    ROWS+=("$(jq -r --arg i "$i" --arg w "$wall" --arg r "$(mib "$rss")" --arg h "$(mib "$hwm")" \
      '.durations as $d | "| restore-from-car | \($i) | - | \($d.verify) |
      \($d.plan + $d.wait + $d.import + $d.pin) | \($d.tips + $d.pointer + $d.verify_after) |
      **\($d.total)** | - | - | - | \($w) | \($r) (node \($h)) |"' "$WORK/plain.json" | tr -d '\n')")
    echo "   ${ROWS[-1]}" >&2
  done
}

echo "== restore-drill --from-dir (in place)" >&2
drill "drill --from-dir" --from-dir "$WORK/backups"
if [ "$S3" = 1 ]; then
  echo "== restore-drill from S3 (SeaweedFS on loopback)" >&2
  drill "drill from S3"
fi
echo "== restore-from-car into a brand-new node" >&2
plain

cat <<EOF

### restore-drill vs restore-from-car, $ENTITIES entities ($(date -u +%Y-%m-%d), $(nproc) cores)

Archive: $(basename "$CAR"), $CAR_MIB MiB (a full archive: a chain of one). Seconds; RTO =
download + verify + import + tips. "scratch" (the scratch Kubo's init and start), "re-verify"
(restore-from-car's own verification inside the drill) and "compare" (tips and a sample of 1000
blocks against the live node) are not in the RTO. Peak RSS in MiB.

| run | # | download | verify | import | tips | RTO / total | scratch | re-verify | compare | wall | peak RSS |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${ROWS[@]}"
