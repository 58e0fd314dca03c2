#!/usr/bin/env bash
# scripts/demo.sh - the main job end to end on a local throwaway node (README "Try it").
#
# Starts a Kubo node (scripts/ipfs-node.sh) with a temporary repo, writes production-shaped data
# into it, and runs the toolkit's binaries against it. ENTITIES (default 1000) and SEED (default 1) size the data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENTITIES=${ENTITIES:-1000}
SEED=${SEED:-1}

cargo build --release --locked --workspace
scripts/ipfs-node.sh install
BIN=$PWD/target/release
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arke-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

demo() {
  set -euo pipefail
  echo "== node: $IPFS_API_URL" >&2
  echo "== generate-test-data --entities $ENTITIES --seed $SEED" >&2
  "$BIN/generate-test-data" --entities "$ENTITIES" --seed "$SEED" --test-network 5 --legacy \
    --summary "$WORK/summary.json"
  python3 - "$WORK/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({k: s[k] for k in ("event_head", "event_count", "total_count", "counts", "legacy", "seconds")}, indent=2))
PY
  echo "== build-snapshot (incremental on the legacy proofs snapshot the pointer names)" >&2
  "$BIN/build-snapshot" --snapshots-dir "$WORK/snapshots"
  echo "== build-snapshot again (nothing changed)" >&2
  "$BIN/build-snapshot" --snapshots-dir "$WORK/snapshots"
  echo "== verify-snapshot --deep --drift" >&2
  "$BIN/verify-snapshot" --deep --drift --snapshots-dir "$WORK/snapshots"
  cat "$WORK/snapshots/latest.json"
  echo "== export-car, then verify-car (offline)" >&2
  car=$("$BIN/export-car" --backups-dir "$WORK/backups")
  "$BIN/verify-car" --stats "$car"
  echo "== car verify (go-car's library, built beside Kubo: an independent second opinion)" >&2
  "$IPFS_NODE_BIN/car" verify "$car"
  echo "== restore-from-car into a brand-new node" >&2
  "$PWD/scripts/ipfs-node.sh" start "$WORK/fresh" --watch-pid $$ >"$WORK/fresh.url"
  "$BIN/restore-from-car" "$car" --api "$(cat "$WORK/fresh.url")"
  "$BIN/verify-snapshot" --deep --api "$(cat "$WORK/fresh.url")"
  "$PWD/scripts/ipfs-node.sh" stop "$WORK/fresh"
}
export -f demo
export BIN WORK ENTITIES SEED
scripts/ipfs-node.sh run -- bash -c demo
