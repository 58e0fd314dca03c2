#!/usr/bin/env bash
# ipfs-node.sh - a throwaway IPFS node that speaks the Kubo RPC API (/api/v0) on
# 127.0.0.1:<port chosen by the kernel>, with a temporary repo, for tests and demos.
#
# There is no Kubo package in the registries these machines reach, so the node is
# js-ipfs 0.66.1 from the npm registry, installed from the pinned lockfile in
# scripts/ipfs-node/ and patched by patch-js-ipfs.mjs (dag/get output-codec,
# block/put cid-codec). Production runs Kubo; its documented RPC is the contract.
#
#   scripts/ipfs-node.sh install              install once into $IPFS_NODE_DIR (checked by a stamp)
#   scripts/ipfs-node.sh start <statedir>     start a node; prints its API URL on stdout and writes
#                                             <statedir>/env (IPFS_API_URL, IPFS_NODE_PID, IPFS_PATH)
#   scripts/ipfs-node.sh start <statedir> --watch-pid <pid>
#                                             same, and stop the node when process <pid> exits (test
#                                             harnesses: no node outlives the test binary)
#   scripts/ipfs-node.sh stop <statedir>      SIGTERM the node by its PID, SIGKILL after 10 s, remove state
#   scripts/ipfs-node.sh run -- <cmd> [args]  start a node, run cmd with IPFS_API_URL set, always stop it
#
# Environment: IPFS_NODE_DIR (install dir, default ~/.cache/arke-ipfs-node),
# IPFS_START_TIMEOUT (seconds, default 60).
set -euo pipefail

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/ipfs-node" && pwd)
NODE_DIR=${IPFS_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/arke-ipfs-node}
START_TIMEOUT=${IPFS_START_TIMEOUT:-60}

log() { echo "ipfs-node: $*" >&2; }

need_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "node/npm missing: installing Debian's nodejs and npm"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "node (>= 18) and npm are required"; return 1
  fi
}

cmd_install() {
  need_node
  local want have
  want=$(cat "$KIT_DIR/package.json" "$KIT_DIR/package-lock.json" "$KIT_DIR/patch-js-ipfs.mjs" | sha256sum | cut -c1-16)
  have=$(cat "$NODE_DIR/.stamp" 2>/dev/null || true)
  [ "$want" = "$have" ] && [ -x "$NODE_DIR/node_modules/.bin/jsipfs" ] && return 0
  log "installing js-ipfs 0.66.1 into $NODE_DIR (first run takes 2-4 min)"
  mkdir -p "$NODE_DIR"
  cp "$KIT_DIR/package.json" "$KIT_DIR/package-lock.json" "$NODE_DIR/"
  # `npm ci` refuses this lockfile (an optional dependency of electron-eval is a GitHub
  # tarball); `npm install` with the lockfile present installs exactly the locked versions.
  local try
  for try in 1 2 3; do
    (cd "$NODE_DIR" && npm install --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error >&2) && break
    [ "$try" = 3 ] && { log "npm install failed 3 times"; return 1; }
    log "npm install failed (try $try); retrying"
    sleep 5
  done
  node "$KIT_DIR/patch-js-ipfs.mjs" "$NODE_DIR" >&2
  echo "$want" > "$NODE_DIR/.stamp"
}

cmd_stop() {
  local state=$1 pid
  pid=$(cat "$state/pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "node $pid ignored SIGTERM; killing its process group"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$state/repo" "$state/pid" "$state/env" "$state/init.log" "$state/daemon.log"
  rmdir "$state" 2>/dev/null || true
}

cmd_start() {
  local state=$1 watch="" jsipfs
  if [ "${2:-}" = "--watch-pid" ]; then watch=${3:?--watch-pid needs a pid}; fi
  cmd_install
  jsipfs="$NODE_DIR/node_modules/.bin/jsipfs"
  mkdir -p "$state/repo"
  state=$(cd "$state" && pwd)
  export IPFS_PATH="$state/repo"
  # test profile: no bootstrap, no MDNS, every listener on 127.0.0.1:0 (the JSON adds the gRPC port).
  "$jsipfs" init --profile test --emptyRepo "$KIT_DIR/init-config.json" >"$state/init.log" 2>&1 \
    || { cat "$state/init.log" >&2; return 1; }
  start_daemon "$state" "$watch"
}

# Stops the daemon of <statedir> and starts it again on the same repo (a new port): what a node
# restart does to a client in the middle of a job.
cmd_restart() {
  local state pid
  state=$(cd "$1" && pwd)
  pid=$(cat "$state/pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$state/repo/api" "$state/repo/repo.lock"
  export IPFS_PATH="$state/repo"
  start_daemon "$state" ""
}

start_daemon() {
  local state=$1 watch=$2 jsipfs pid port url deadline
  jsipfs="$NODE_DIR/node_modules/.bin/jsipfs"
  # A recursive pin of a large DAG opens many block files at once (EMFILE at the default 1024).
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  # --offline only disables IPNS in js-ipfs; isolation comes from the config above.
  setsid "$jsipfs" daemon --offline --enable-preload=false >"$state/daemon.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$state/pid"
  deadline=$((SECONDS + START_TIMEOUT))
  until [ -s "$IPFS_PATH/api" ]; do   # written once the RPC server is bound: no free-port race
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      log "node failed to start:"; cat "$state/daemon.log" >&2; cmd_stop "$state"; return 1
    fi
    sleep 0.1
  done
  port=$(sed -E 's#^/ip4/[^/]+/tcp/([0-9]+).*#\1#' "$IPFS_PATH/api")
  url="http://127.0.0.1:$port"
  until curl -sf -m 2 -X POST "$url/api/v0/id" >/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      log "API not answering"; cmd_stop "$state"; return 1
    fi
    sleep 0.1
  done
  printf 'IPFS_API_URL=%s\nIPFS_NODE_PID=%s\nIPFS_PATH=%s\n' "$url" "$pid" "$IPFS_PATH" > "$state/env"
  if [ -n "$watch" ]; then
    # Detached watchdog: when the owner dies (even by SIGKILL), stop the node and remove its state.
    # shellcheck disable=SC2016  # expanded by the inner shell, from its arguments
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$3" ]; do sleep 1; done; "$2" stop "$3"' \
      watchdog "$watch" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")" "$state" \
      >/dev/null 2>&1 </dev/null &
  fi
  log "node up: $url (pid $pid)"
  echo "$url"
}

cmd_run() {
  [ "${1:-}" = "--" ] && shift
  local url rc=0
  RUN_STATE=$(mktemp -d "${TMPDIR:-/tmp}/arke-ipfs-node.XXXXXX")
  trap 'cmd_stop "$RUN_STATE"' EXIT
  trap 'exit 130' INT TERM
  url=$(cmd_start "$RUN_STATE")
  IPFS_API_URL="$url" IPFS_NODE_PID="$(cat "$RUN_STATE/pid")" "$@" || rc=$?
  return "$rc"
}

case "${1:-}" in
  install) cmd_install ;;
  start)   cmd_start "${2:?usage: $0 start <statedir> [--watch-pid <pid>]}" "${3:-}" "${4:-}" ;;
  restart) cmd_restart "${2:?usage: $0 restart <statedir>}" ;;
  stop)    cmd_stop "${2:?usage: $0 stop <statedir>}" ;;
  run)     shift; cmd_run "$@" ;;
  *) echo "usage: $0 install | start <statedir> | restart <statedir> | stop <statedir> | run -- <cmd...>" >&2; exit 2 ;;
esac
