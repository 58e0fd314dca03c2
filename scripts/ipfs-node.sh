#!/usr/bin/env bash
# ipfs-node.sh - a throwaway Kubo node (the production node's software) on 127.0.0.1:<port chosen
# by the kernel>, with a temporary repo, for tests, demos and benchmarks.
#
# Kubo v0.43.1 and the `car` checker are built from the Go module proxy as dependencies of the
# pinned throwaway module in scripts/ipfs-node/ (go.mod + go.sum; see its README), once, and
# cached by the hash of those files. The daemon runs ONLINE, as production does, configured like
# production's private mode: no bootstrap peers, no routing, no MDNS, no announcements, every
# listener on loopback. No peer is ever reachable, so a block that is not stored is wanted until
# the request ends: tests see the real waits for missing blocks.
#
#   scripts/ipfs-node.sh install              build once into $IPFS_NODE_DIR (checked by a stamp)
#   scripts/ipfs-node.sh start <statedir>     start a node; prints its API URL on stdout and writes
#                                             <statedir>/env (IPFS_API_URL, IPFS_NODE_PID, IPFS_PATH)
#   scripts/ipfs-node.sh start <statedir> --watch-pid <pid>
#                                             same, and stop the node when process <pid> exits (test
#                                             harnesses: no node outlives the test binary)
#   scripts/ipfs-node.sh restart <statedir>   stop the daemon and start it again on the same repo
#   scripts/ipfs-node.sh stop <statedir>      SIGTERM the node by its PID, SIGKILL after 10 s, remove state
#   scripts/ipfs-node.sh run -- <cmd> [args]  start a node, run cmd with IPFS_API_URL set, always stop it
#   scripts/ipfs-node.sh bin                  print the folder holding `ipfs` and `car` (after install)
#
# Environment: IPFS_NODE_DIR (install dir, default ~/.cache/arke-ipfs-node), IPFS_START_TIMEOUT
# (seconds, default 60), IPFS_NODE_PROFILE (init profiles, default "test"; e.g. "test,pebbleds").
# The first install downloads about 300 Go modules and compiles for 3-6 minutes on 2 cores.
set -euo pipefail

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/ipfs-node" && pwd)
NODE_DIR=${IPFS_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/arke-ipfs-node}
START_TIMEOUT=${IPFS_START_TIMEOUT:-60}
KUBO_VERSION=0.43.1

log() { echo "ipfs-node: $*" >&2; }

# The folder of this build: a new go.mod/go.sum/checker gives a new folder, old ones stay usable.
bin_dir() {
  local key
  key=$(cat "$KIT_DIR/go.mod" "$KIT_DIR/go.sum" "$KIT_DIR/car/main.go" | sha256sum | cut -c1-12)
  echo "$NODE_DIR/kubo-v$KUBO_VERSION-$key"
}

cmd_install() {
  local dir tmp
  dir=$(bin_dir)
  if [ -x "$dir/ipfs" ] && [ -x "$dir/car" ]; then return 0; fi
  command -v go >/dev/null || { log "Go (>= 1.26.5) is required to build Kubo"; return 1; }
  log "building Kubo v$KUBO_VERSION and car from the Go module proxy into $dir (first build: 3-6 min)"
  mkdir -p "$NODE_DIR"
  tmp=$(mktemp -d "$NODE_DIR/.build.XXXXXX")
  # -mod=readonly: go.sum is the pin; a build never edits it. GOFLAGS from the caller is ignored
  # so that a stray -mod=mod cannot change what is built.
  if ! (cd "$KIT_DIR" && export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOTOOLCHAIN=local &&
        go build -trimpath -o "$tmp/ipfs" github.com/ipfs/kubo/cmd/ipfs &&
        go build -trimpath -o "$tmp/car" ./car) >&2; then
    rm -rf "$tmp"; log "the build failed (see above)"; return 1
  fi
  "$tmp/ipfs" version >&2
  rm -rf "$dir" && mv "$tmp" "$dir"
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

# Production's private mode (ipfs-init.d/001-private-mode.sh) on top of the test profile, which
# already puts every listener on 127.0.0.1:0, empties the bootstrap list and turns MDNS off.
configure() {
  local ipfs=$1
  "$ipfs" config Routing.Type none
  "$ipfs" config --json Provide.Enabled false
  "$ipfs" config --json Addresses.Gateway '[]'
  "$ipfs" config --json Addresses.Announce '[]'
  "$ipfs" config --json Addresses.NoAnnounce '["/ip4/0.0.0.0/ipcidr/0", "/ip6/::/ipcidr/0"]'
  "$ipfs" config --json Swarm.RelayClient.Enabled false
  "$ipfs" config --json Swarm.RelayService.Enabled false
  "$ipfs" config --json Swarm.EnableHolePunching false
  "$ipfs" config AutoNAT.ServiceMode disabled
  "$ipfs" config --json Swarm.ConnMgr '{"Type":"basic","LowWater":0,"HighWater":10,"GracePeriod":"20s"}'
}

cmd_start() {
  local state=$1 watch="" ipfs
  if [ "${2:-}" = "--watch-pid" ]; then watch=${3:?--watch-pid needs a pid}; fi
  cmd_install
  ipfs="$(bin_dir)/ipfs"
  mkdir -p "$state/repo"
  state=$(cd "$state" && pwd)
  export IPFS_PATH="$state/repo"
  if ! { "$ipfs" init --profile="${IPFS_NODE_PROFILE:-test}" --empty-repo && configure "$ipfs"; } \
      >"$state/init.log" 2>&1; then
    cat "$state/init.log" >&2; return 1
  fi
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
  rm -f "$state/repo/api"
  export IPFS_PATH="$state/repo"
  start_daemon "$state" ""
}

start_daemon() {
  local state=$1 watch=$2 ipfs pid port url deadline
  ipfs="$(bin_dir)/ipfs"
  # Production raises the limit too (IPFS_FD_MAX=4096): flatfs opens one file per block.
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  # Online, as production: no --offline (it would hide the network waits for missing blocks).
  # No --enable-gc: production runs GC by hand (the tools' prune step), never automatically.
  GOLOG_LOG_LEVEL=${GOLOG_LOG_LEVEL:-error} IPFS_FD_MAX=65536 \
    setsid "$ipfs" daemon >"$state/daemon.log" 2>&1 </dev/null &
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
  IPFS_API_URL="$url" IPFS_NODE_PID="$(cat "$RUN_STATE/pid")" IPFS_NODE_BIN="$(bin_dir)" "$@" || rc=$?
  return "$rc"
}

case "${1:-}" in
  install) cmd_install ;;
  bin)     cmd_install && bin_dir ;;
  start)   cmd_start "${2:?usage: $0 start <statedir> [--watch-pid <pid>]}" "${3:-}" "${4:-}" ;;
  restart) cmd_restart "${2:?usage: $0 restart <statedir>}" ;;
  stop)    cmd_stop "${2:?usage: $0 stop <statedir>}" ;;
  run)     shift; cmd_run "$@" ;;
  *) echo "usage: $0 install | bin | start <statedir> | restart <statedir> | stop <statedir> | run -- <cmd...>" >&2; exit 2 ;;
esac
