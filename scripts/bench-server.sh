#!/usr/bin/env bash
# scripts/bench-server.sh - dr-server's GET /snapshot/latest against what the legacy API served
# (Kubo's `dag/get` of one dag-json snapshot block), on production-shaped data in one
# throwaway Kubo node (scripts/ipfs-node.sh run). Not a test: prints a Markdown table.
#
# For each size: generates the data (generate-test-data), builds an arke/snapshot@v4
# (build-snapshot, release), starts dr-server (release) on a free loopback port, and measures
#   - the time to the last byte of GET /snapshot/latest (curl's time_total, RUNS runs, median),
#   - dr-server's peak RSS after those requests (VmHWM in /proc/<pid>/status), and again after
#     CLIENTS clients at once (4 stream, the others wait their turn);
# beside `dag/get` of a legacy single-block arke/snapshot@v2 (proofs: entries[] and all_cids[])
# of the same entity count, put with `--allow-big-block` as api/dr/build_snapshot.py did.
#
# The legacy size limit: Kubo checks a produced block against its soft limit (cmdutils
# SoftBlockLimit: 1 MiB in older Kubo; the pinned v0.43.1 accepts 1 MiB and refuses 2 MiB plus a
# few bytes; the script asks the node and prints what it found) unless
# `allow-big-block` is given, and the legacy builder always gave it: no limit was enforced, the
# block simply grew with the archive (~0.6 KB per entity with the proofs' all_cids). What bounded
# it in practice were the API's SNAPSHOT_TIMEOUT_SECONDS=60 for streaming it and the builder's
# 300 s `docker exec` timeout.
#
# SYNTHETIC sizes add the memory curve where generating data takes too long here: an
# arke/snapshot@v4 of that many made-up entries written straight to the node (dag/put of each
# chunk as dag-json into dag-cbor, real links), served the same way (no legacy row).
#
#   scripts/bench-server.sh                    # 10K entities
#   ENTITIES=10000,100000 SYNTHETIC=1000000 RUNS=7 scripts/bench-server.sh
#
# Environment: ENTITIES (default 10000), SYNTHETIC (default none), RUNS (default 5), CLIENTS
# (default 16), IPFS_NODE_DIR (scripts/ipfs-node.sh), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENTITIES=${ENTITIES:-10000}
SYNTHETIC=${SYNTHETIC:-}
RUNS=${RUNS:-5}
CLIENTS=${CLIENTS:-16}

if [ "${1:-}" != --inside-node ]; then
  cargo build --release --locked -p arke-dr -p arke-bench
  scripts/ipfs-node.sh install
  exec scripts/ipfs-node.sh run -- "${BASH_SOURCE[0]}" --inside-node
fi

BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
API=${IPFS_API_URL%/}
case $API in */api/v0) ;; *) API=$API/api/v0 ;; esac
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The median of RUNS times to the last byte of a request (curl's time_total, seconds).
median_time() {
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    times+=("$(curl -sf -o /dev/null -w '%{time_total}' "$@")")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

size_of() { curl -sf -o /dev/null -w '%{size_download}' "$@"; }

# Which block size the node refuses without allow-big-block (the limit the legacy builder skipped).
soft_limit() {
  local n ok=none
  for n in 1048576 2097152 4194304; do
    python3 -c "import json,sys; sys.stdout.write(json.dumps({'pad': 'x' * ($n - 8)}))" >"$WORK/probe.json"
    if ! curl -sf -X POST -F "file=@$WORK/probe.json" \
      "$API/dag/put?store-codec=dag-json&input-codec=json&pin=false" >/dev/null 2>&1; then
      echo "accepts $ok B, refuses $n B blocks"
      return
    fi
    ok=$n
  done
  echo "accepts 4 MiB blocks"
}

# A legacy proofs snapshot (arke/snapshot@v2) of N realistic entries, put as one block.
legacy_block() {
  python3 - "$1" >"$WORK/legacy.json" <<'PY'
import json, random, sys, hashlib, base64
n = int(sys.argv[1]); rnd = random.Random(7)
def cid(i, kind):  # a real CIDv1 (dag-cbor, sha2-256), as production's tips and events are
    h = hashlib.sha256(f"{kind}{i}".encode()).digest()
    return "b" + base64.b32encode(bytes([1, 0x71, 0x12, 0x20]) + h).decode().lower().rstrip("=")
crock = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
entries, all_cids = [], []
for i in range(n):
    pi = "01K" + "".join(rnd.choice(crock) for _ in range(23))
    entries.append({"pi": pi, "ver": rnd.randint(1, 4), "tip_cid": {"/": cid(i, "tip")},
                    "ts": "2025-12-%02dT%02d:%02d:%02d.%03dZ" % (rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59), rnd.randint(0, 999)),
                    "chain_cid": {"/": cid(i, "event")}})
    all_cids += [cid(i, "tip"), cid(i, "event"), cid(i, "v1"), cid(i, "c1"), cid(i, "c2")]
all_cids.sort()
json.dump({"schema": "arke/snapshot@v2", "seq": 812, "ts": "2026-01-01T00:00:00Z",
           "event_cid": cid(n, "event"), "total_count": n, "entries": entries,
           "prev_snapshot": {"/": cid(0, "snap")}, "merkle_root": hashlib.sha256(b"r").hexdigest(),
           "cid_count": len(all_cids), "all_cids": all_cids, "consistency": None}, sys.stdout, indent=2)
PY
  curl -sf -X POST -F "file=@$WORK/legacy.json" \
    "$API/dag/put?store-codec=dag-json&input-codec=json&pin=true&allow-big-block=true" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Cid"]["/"])'
}

# A synthetic arke/snapshot@v4 of $1 entries (chunks of 2048, the header over them), named by
# a pointer of its own at $2.
synthetic_v4() {
  python3 - "$1" "$API" "$2" <<'PY'
import base64, hashlib, json, subprocess, sys
n, api, pointer = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def cid(s):
    h = hashlib.sha256(s.encode()).digest()
    return "b" + base64.b32encode(bytes([1, 0x71, 0x12, 0x20]) + h).decode().lower().rstrip("=")
def post(path, body):
    return subprocess.run(["curl", "-sf", "-X", "POST", "-F", "file=@-", api + path],
                          input=body, capture_output=True, check=True).stdout
def put(doc):
    out = post("/dag/put?store-codec=dag-cbor&input-codec=dag-json&pin=false", json.dumps(doc).encode())
    return json.loads(out)["Cid"]["/"]
chunks = []
for c in range(0, n, 2048):
    entries = [{"id": "01K%023d" % i, "ver": 1, "tip_cid": {"/": cid("tip%d" % i)},
                "ts": "2026-12-06T00:00:00.000Z", "chain_cid": {"/": cid("ev%d" % i)}}
               for i in range(c, min(n, c + 2048))]
    chunks.append({"/": put({"schema": "arke/snapshot-chunk@v3", "chunk_index": len(chunks),
                             "entries": entries})})
head = put({"schema": "arke/snapshot@v4", "seq": 1, "ts": "2026-12-06T00:00:00Z",
            "event_cid": None, "event_count": None, "entity_count": n, "chunk_entries": 2048,
            "height": 0, "children": chunks, "prev_snapshot": None, "prev_seq": None,
            "index_cid": None, "test_index_cid": None, "report": None, "tool": "bench-server"})
ptr = {"schema": "arke/index-pointer@v2", "latest_snapshot_cid": head, "snapshot_seq": 1,
       "snapshot_count": n, "last_updated": "2026-12-06T00:00:00Z"}
post("/files/write?arg=%s&create=true&truncate=true&parents=true" % pointer, json.dumps(ptr).encode())
PY
}

# Starts dr-server with the environment in the arguments after $2, measures /snapshot/latest,
# stops it, and adds a row labelled $1 for $2 entities.
measure_server() {
  local label=$1 n=$2 port url bytes t rss rss_many pids=()
  shift 2
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env IPFS_API_URL="$API" SNAPSHOTS_DIR="$WORK/snapshots-$n" ARKE_DR_CONFIG="$WORK/no-config.env" "$@" \
    "$BIN/dr-server" --listen "127.0.0.1:$port" >"$WORK/dr-server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 60); do
    curl -sf -o /dev/null -I "http://127.0.0.1:$port/snapshot/latest" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/dr-server.log" >&2; exit 1; }
    sleep 1
  done
  url=http://127.0.0.1:$port/snapshot/latest
  bytes=$(size_of "$url")
  t=$(median_time "$url")
  rss=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")
  for _ in $(seq 1 "$CLIENTS"); do
    curl -sf -o /dev/null "$url" &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "bench-server: a client failed" >&2; exit 1; }; done
  rss_many=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  ROWS+=("| $label | $n | $bytes | $t | $rss | $rss_many |")
}

ROWS=()
LIMIT=$(soft_limit)
IFS=, read -r -a SIZES <<<"$ENTITIES"
for n in "${SIZES[@]}"; do
  echo "bench-server: $n entities: generating" >&2
  "$BIN/generate-test-data" --entities "$n" --force --no-pin --seed 5 --api "$API" >"$WORK/summary.json"
  echo "bench-server: $n entities: build-snapshot" >&2
  # A snapshots folder per size: each size is a new data set with a new pointer, which the
  # previous size's publish marker would (rightly) refuse as a pointer gone back.
  SNAPSHOTS_DIR=$WORK/snapshots-$n "$BIN/build-snapshot" --api "$API" --no-progress --json >"$WORK/build.json"
  measure_server "dr-server GET /snapshot/latest (v4 → legacy shape)" "$n"

  echo "bench-server: $n entities: legacy single block" >&2
  cid=$(legacy_block "$n")
  lbytes=$(size_of -X POST "$API/dag/get?arg=$cid")
  lt=$(median_time -X POST "$API/dag/get?arg=$cid")
  ROWS+=("| Kubo dag/get of a legacy @v2 block (what the API streamed) | $n | $lbytes | $lt | (Kubo) | (Kubo) |")
  curl -sf -X POST "$API/pin/rm?arg=$cid" >/dev/null || true
done

IFS=, read -r -a SYNTH <<<"$SYNTHETIC"
for n in "${SYNTH[@]}"; do
  echo "bench-server: $n synthetic entries: writing the snapshot" >&2
  synthetic_v4 "$n" /bench-server/pointer
  measure_server "dr-server, synthetic v4 (made-up entries)" "$n" INDEX_POINTER_PATH=/bench-server/pointer
done

echo
echo "bench-server: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); node $LIMIT without allow-big-block"
echo
echo "| what | entities | bytes | time to last byte, median of $RUNS (s) | peak RSS (MiB) | peak RSS after $CLIENTS clients at once (MiB) |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
