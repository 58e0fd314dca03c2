#!/usr/bin/env bash
# s3-server.sh - a throwaway S3-compatible server (SeaweedFS) on 127.0.0.1, with a temporary data
# folder and signature checking ON, for the arke-s3 tests and for trying the upload by hand.
#
# SeaweedFS is built from the Go module proxy as a tool of the pinned throwaway module in
# scripts/s3-server/ (go.mod + go.sum; see its README), once, and cached by the hash of those
# files. One `weed server` process runs master + volume + filer + S3 gateway (multipart uploads,
# SHA-256 checksums, storage classes, SigV4). Every listener is on 127.0.0.1; telemetry, Iceberg
# and Lance listeners are off. `start` returns once a write goes through (~10 s: the gateway
# answers in ~2.5 s, then a fresh master holds volume allocation a few seconds); `restart` on the
# same data ~17 s (a restarted master refuses writes during a 15 s warmup).
#
#   scripts/s3-server.sh install              build once into $S3_SERVER_DIR (checked by the binary)
#   scripts/s3-server.sh start <statedir>     start a server; prints its endpoint on stdout and writes
#                                             <statedir>/env (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
#                                             AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_SERVER_PID)
#   scripts/s3-server.sh start <statedir> --watch-pid <pid>
#                                             same, and stop the server when process <pid> exits
#                                             (test harnesses: no server outlives the test binary)
#   scripts/s3-server.sh restart <statedir>   start the server of <statedir> again, on the same data
#                                             and ports (after a crash or kill -9: what a test of a
#                                             server that died mid-upload needs)
#   scripts/s3-server.sh stop <statedir>      SIGTERM, SIGKILL after 2 s (weed is slow to stop and
#                                             the data is throwaway), remove the state folder
#   scripts/s3-server.sh run -- <cmd> [args]  start a server, run cmd with the env set, always stop it
#   scripts/s3-server.sh bin                  print the path of `weed` (after install)
#
# Credentials: one identity with the Admin action on every bucket (access key and secret are
# random per server, written to <statedir>/env). A request with another key or a wrong secret
# is refused (InvalidAccessKeyId / SignatureDoesNotMatch): signatures are checked. No bucket
# exists and none is created on upload (-s3.autoCreateBucket=false, as on AWS): the tests create
# their own (CreateBucket).
#
# Environment: S3_SERVER_DIR (install dir, default ~/.cache/arke-s3-server), S3_START_TIMEOUT
# (seconds, default 60). The first install downloads about 500 Go modules and compiles for
# 5-10 min on 2 cores.
set -euo pipefail

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/s3-server" && pwd)
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
SERVER_DIR=${S3_SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/arke-s3-server}
START_TIMEOUT=${S3_START_TIMEOUT:-60}
REGION=us-east-1

log() { echo "s3-server: $*" >&2; }

# The folder of this build: a new go.mod/go.sum gives a new folder, old ones stay usable.
bin_dir() {
  local key
  key=$(cat "$KIT_DIR/go.mod" "$KIT_DIR/go.sum" | sha256sum | cut -c1-12)
  echo "$SERVER_DIR/seaweedfs-$key"
}

cmd_install() {
  local dir tmp
  dir=$(bin_dir)
  if [ -x "$dir/weed" ]; then return 0; fi
  command -v go >/dev/null || { log "Go (>= 1.26.6) is required to build SeaweedFS"; return 1; }
  log "building SeaweedFS from the Go module proxy into $dir (first build: 5-10 min)"
  mkdir -p "$SERVER_DIR"
  tmp=$(mktemp -d "$SERVER_DIR/.build.XXXXXX")
  # -mod=readonly: go.sum is the pin; a build never edits it. GOFLAGS from the caller is ignored
  # so that a stray -mod=mod cannot change what is built. -s -w: no symbol tables (230 -> 150 MB).
  if ! (cd "$KIT_DIR" && export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOTOOLCHAIN=local &&
        go build -trimpath -ldflags='-s -w' -o "$tmp/weed" github.com/seaweedfs/seaweedfs/weed) >&2; then
    rm -rf "$tmp"; log "the build failed (see above)"; return 1
  fi
  "$tmp/weed" version >&2
  rm -rf "$dir" && mv "$tmp" "$dir"
}

# port_free <port>: nothing accepts connections on 127.0.0.1:<port>.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_ports: eight distinct free ports below the kernel's ephemeral range (32768+), so that no
# client socket of the tests can take one between this check and the bind. A lost race shows as
# a server that exits at once; start_server then tries other ports.
pick_ports() {
  local ports=() p
  while [ "${#ports[@]}" -lt 8 ]; do
    p=$((20000 + RANDOM % 12000))
    if port_free "$p" && [[ " ${ports[*]} " != *" $p "* ]]; then ports+=("$p"); fi
  done
  echo "${ports[*]}"
}

write_identity() {
  local state=$1 key secret
  key="ARKE$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr '[:lower:]' '[:upper:]')"
  secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n%s\n' "$key" "$secret" >"$state/credentials"
  cat >"$state/s3.json" <<EOF
{"identities": [{"name": "arke-test-admin",
  "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
}

cmd_start() {
  local state=$1 watch=""
  if [ "${2:-}" = "--watch-pid" ]; then watch=${3:?--watch-pid needs a pid}; fi
  cmd_install
  mkdir -p "$state/data"
  state=$(cd "$state" && pwd)
  write_identity "$state"
  local attempt
  for attempt in 1 2 3; do
    rm -rf "$state/data" && mkdir "$state/data" # a failed attempt's master state is not reused
    pick_ports >"$state/ports"
    if start_server "$state"; then break; fi
    remove_sockets "$state"
    if [ "$attempt" -eq 3 ]; then cmd_stop "$state"; return 1; fi
    log "start attempt $attempt failed (a port taken?); trying other ports"
  done
  if [ -n "$watch" ]; then
    # Detached watchdog: when the owner dies (even by SIGKILL), stop the server and remove its state.
    # shellcheck disable=SC2016  # expanded by the inner shell, from its arguments
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$3" ]; do sleep 1; done; "$2" stop "$3"' \
      watchdog "$watch" "$SELF" "$state" >/dev/null 2>&1 </dev/null &
  fi
  endpoint "$state"
}

endpoint() {
  local s3
  read -r _ _ _ _ _ _ s3 _ <"$1/ports"
  echo "http://127.0.0.1:$s3"
}

# start_server <statedir>: runs weed with the ports in <statedir>/ports, waits (bounded) until it
# takes writes, writes <statedir>/env.
start_server() {
  local state=$1 weed master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc
  read -r master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc <"$state/ports"
  { read -r KEY; read -r SECRET; } <"$state/credentials"
  weed="$(bin_dir)/weed"
  # volume.max 0: as many volumes as the disk allows (each bucket is a collection with its own
  # volumes; the default 8 runs out after a few buckets). 64 MB volumes keep the data folder
  # small. electionTimeout 1s: a restarted master resumes its raft state and waits this long
  # before it leads (10 s by default). autoCreateBucket off: a missing bucket is an error, as
  # on AWS. WEED_S3_SSE_KEY (any string; the key encrypting the data keys is derived from it)
  # turns SSE-S3 on, so that uploads asking for AES256 are stored encrypted, as on AWS; without
  # it SeaweedFS answers such a PUT with InternalError. Derived from the server's secret: the
  # same after a restart on the same data.
  WEED_S3_SSE_KEY="sse-$SECRET" setsid "$weed" -logtostderr=true server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$state/data" \
    -master.port="$master" -master.port.grpc="$master_grpc" -master.telemetry=false \
    -master.volumeSizeLimitMB=64 -master.electionTimeout=1s -volume.max=0 -volume.preStopSeconds=0 \
    -volume.port="$volume" -volume.port.grpc="$volume_grpc" \
    -filer -filer.port="$filer" -filer.port.grpc="$filer_grpc" -filer.localSocket="$state/filer.sock" \
    -s3 -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.localSocket="$state/s3.sock" -s3.config="$state/s3.json" -s3.autoCreateBucket=false \
    >>"$state/server.log" 2>&1 </dev/null &
  PID=$!
  disown "$PID" 2>/dev/null || true # no "Killed" job report from this shell when it is stopped
  echo "$PID" >"$state/pid"
  URL="http://127.0.0.1:$s3"
  DEADLINE=$((SECONDS + START_TIMEOUT))
  NEXT_LOG=$((SECONDS + 5))
  # Ready means a write goes through, which comes last: the gateway answers a signed request,
  # the master knows the volume server, and volume ids may be allocated (a fresh master holds
  # them for ~5 s; a restarted one refuses assignments during its 15 s warmup).
  wait_for "$state" "the S3 gateway" s3_curl "$URL/" || return 1
  wait_for "$state" "a volume server" volume_joined "$master" || return 1
  s3_curl -X PUT "$URL/$PROBE" || true # exists already after a restart
  echo probe >"$state/probe"
  wait_for "$state" "writes" s3_curl -T "$state/probe" "$URL/$PROBE/probe" || return 1
  s3_curl -X DELETE "$URL/$PROBE/probe" || true
  s3_curl -X DELETE "$URL/$PROBE" || true
  printf 'AWS_ENDPOINT_URL=%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_REGION=%s\nS3_SERVER_PID=%s\n' \
    "$URL" "$KEY" "$SECRET" "$REGION" "$PID" >"$state/env"
  log "server up: $URL (pid $PID, data $state/data)"
}

PROBE=arke-s3-server-probe

# A signed request (SigV4 by curl) with the server's own key, answered 2xx, within 30 s.
s3_curl() {
  curl -sf -m 30 -o /dev/null --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY:$SECRET" "$@"
}

# volume_joined <master port>: the master's topology lists a volume server.
volume_joined() {
  curl -sf -m 2 "http://127.0.0.1:$1/dir/status" | grep -q '"DataNodes":\[{'
}

# wait_for <statedir> <what> <command...>: retries the command until it succeeds, the server
# dies or the deadline passes (then the end of the server's log is shown and it is killed).
wait_for() {
  local state=$1 what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    waiting "$state" "$what" || return 1
  done
}

waiting() {
  local state=$1 what=$2
  if ! kill -0 "$PID" 2>/dev/null || [ "$SECONDS" -ge "$DEADLINE" ]; then
    log "SeaweedFS did not start (pid $PID, ${START_TIMEOUT}s, waiting for: $what); the end of its log:"
    tail -n 30 "$state/server.log" >&2
    kill -KILL "$PID" 2>/dev/null || true
    return 1
  fi
  if [ "$SECONDS" -ge "$NEXT_LOG" ]; then
    log "waiting for SeaweedFS ($what) on $URL (pid $PID, $((START_TIMEOUT - DEADLINE + SECONDS))s of ${START_TIMEOUT}s)"
    NEXT_LOG=$((SECONDS + 5))
  fi
  sleep 0.2
}

# Starts the server of <statedir> again on its data and ports (the old process is killed first).
cmd_restart() {
  local state pid
  state=$(cd "$1" && pwd)
  [ -f "$state/ports" ] || { log "$state holds no server"; return 1; }
  pid=$(cat "$state/pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  start_server "$state"
  endpoint "$state"
}

cmd_stop() {
  local state=$1 pid
  pid=$(cat "$state/pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # The data is throwaway: a server slow to stop is killed, with its process group.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  remove_sockets "$state"
  rm -rf "$state/data" "$state/pid" "$state/env" "$state/ports" "$state/credentials" \
    "$state/s3.json" "$state/server.log" "$state/filer.sock" "$state/s3.sock" "$state/probe"
  rmdir "$state" 2>/dev/null || true
}

# weed puts each service's local gRPC socket in /tmp, named by its port (no flag moves them).
remove_sockets() {
  local ports=() p
  read -r -a ports <"$1/ports" 2>/dev/null || true
  for p in "${ports[@]}"; do rm -f /tmp/seaweedfs-*-grpc-"$p".sock; done
}

cmd_run() {
  [ "${1:-}" = "--" ] && shift
  local rc=0
  RUN_STATE=$(mktemp -d "${TMPDIR:-/tmp}/arke-s3-server.XXXXXX")
  trap 'cmd_stop "$RUN_STATE"' EXIT
  trap 'exit 130' INT TERM
  cmd_start "$RUN_STATE" >/dev/null
  # shellcheck source=/dev/null  # written by cmd_start
  (set -a && . "$RUN_STATE/env" && "$@") || rc=$?
  return "$rc"
}

case "${1:-}" in
  install) cmd_install ;;
  bin)     cmd_install && echo "$(bin_dir)/weed" ;;
  start)   cmd_start "${2:?usage: $0 start <statedir> [--watch-pid <pid>]}" "${3:-}" "${4:-}" ;;
  restart) cmd_restart "${2:?usage: $0 restart <statedir>}" ;;
  stop)    cmd_stop "${2:?usage: $0 stop <statedir>}" ;;
  run)     shift; cmd_run "$@" ;;
  *) echo "usage: $0 install | bin | start <statedir> [--watch-pid PID] | restart <statedir> | stop <statedir> | run -- <cmd...>" >&2; exit 2 ;;
esac
