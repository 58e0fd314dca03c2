#!/usr/bin/env bash
# scripts/demo.sh - the main job end to end on a local throwaway node (README "Try it").
#
# Starts a Kubo node (scripts/ipfs-node.sh) with a temporary repo, writes production-shaped data
# into it, and runs the toolkit's binaries against it. ENTITIES (default 1000) and SEED (default 1) size the data.
# The last line is the verdict: "demo: PASS: ..." or "demo: FAIL: <step>" (exit status non-zero).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENTITIES=${ENTITIES:-1000}
SEED=${SEED:-1}
TEST_NETWORK=5
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arke-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The step under way, for the verdict when one fails (the demo runs in a child shell).
step() {
  echo "$1" >"$WORK/step"
  echo "== $1" >&2
}
export -f step

verdict_fail() {
  echo "demo: FAIL: $(cat "$WORK/step" 2>/dev/null || echo 'before the first step')"
  exit 1
}

step "cargo build --release"
cargo build --release --locked --workspace || verdict_fail
step "build the test node (scripts/ipfs-node.sh install)"
scripts/ipfs-node.sh install || verdict_fail
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

# Prints what the generator's and the first build's numbers mean (they differ on purpose).
explain_counts() {
  python3 - "$WORK/summary.json" "$WORK/build.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
c = s["counts"]
a = b["append_only"]
written = c["entities"] + c["test_network_entities"]
extra = b["entity_count"] - b["tips_found"]
left = c["test_network_entities"] - extra
print(f"""== what the numbers mean
  {c['entities']:,} entities asked (ENTITIES) + {c['test_network_entities']} test-network entities
  (II..., under /arke/test/index) = {written:,} entities written, {c['manifest_versions']:,} versions, {c['events']:,} events.
  total_count {s['total_count']:,} in the pointer: what the API counts, one per `create` event, not
  entities: {c['creates_without_event']} creates emitted no event (only creates between 2025-10-14 and
  12-13 did, legacy bug B2), and the test network's creates count too.
  The snapshot holds {b['entity_count']:,}: the {b['tips_found']:,} main-network tips ({c['legacy_path_tips']} of them at
  the legacy shard path) plus {extra} test-network entities the legacy proofs snapshot already listed
  (the legacy build did not leave the test network out, and a snapshot never drops a member of the
  previous one: {a['unchanged']} unchanged + {a['updated']} updated + {a['new']} new); the other {left}
  test-network entities are left out, as build-snapshot does without --include-test-network.""")
PY
}

demo() {
  set -euo pipefail
  echo "== node: $IPFS_API_URL" >&2
  step "generate-test-data --entities $ENTITIES --seed $SEED --test-network $TEST_NETWORK"
  "$BIN/generate-test-data" --entities "$ENTITIES" --seed "$SEED" --test-network "$TEST_NETWORK" \
    --legacy --summary "$WORK/summary.json"
  step "build-snapshot (incremental on the legacy proofs snapshot the pointer names)"
  "$BIN/build-snapshot" --snapshots-dir "$WORK/snapshots" --json >"$WORK/build.json"
  explain_counts >&2
  step "build-snapshot again (nothing changed)"
  "$BIN/build-snapshot" --snapshots-dir "$WORK/snapshots"
  step "verify-snapshot --deep --drift"
  "$BIN/verify-snapshot" --deep --drift --snapshots-dir "$WORK/snapshots"
  step "export-car"
  "$BIN/export-car" --backups-dir "$WORK/backups" --json >"$WORK/export.json"
  car=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["car_path"])' "$WORK/export.json")
  step "verify-car (offline)"
  "$BIN/verify-car" --stats "$car"
  step "car verify (go-car's library, built beside Kubo: an independent second opinion)"
  "$IPFS_NODE_BIN/car" verify "$car"
  step "restore-from-car into a brand-new node"
  "$PWD/scripts/ipfs-node.sh" start "$WORK/fresh" --watch-pid $$ >"$WORK/fresh.url"
  "$BIN/restore-from-car" "$car" --api "$(cat "$WORK/fresh.url")" >/dev/null
  step "verify-snapshot --deep on the restored node"
  "$BIN/verify-snapshot" --deep --api "$(cat "$WORK/fresh.url")"
  "$PWD/scripts/ipfs-node.sh" stop "$WORK/fresh"
  echo finished >"$WORK/step"
}
export -f demo explain_counts
export BIN WORK ENTITIES SEED TEST_NETWORK
scripts/ipfs-node.sh run -- bash -c demo || verdict_fail
[[ $(cat "$WORK/step") == finished ]] || verdict_fail

python3 - "$WORK/summary.json" "$WORK/export.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["counts"]
e = json.load(open(sys.argv[2]))
written = c["entities"] + c["test_network_entities"]
print(f"demo: PASS: {written:,} entities written, archived ({e['blocks']:,} blocks, "
      f"{e['size_bytes'] / 1e6:.1f} MB), verified offline twice, restored onto a fresh node "
      f"and verified there (verify-snapshot --deep)")
PY
