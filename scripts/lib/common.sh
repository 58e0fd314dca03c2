# shellcheck shell=bash
# scripts/lib/common.sh - shared by the cron jobs (daily-backup.sh, hourly-snapshot.sh,
# weekly-verify.sh): configuration, UTC-stamped logging to a file the cron user can write,
# a flock lock, finding the binaries, running one step with its duration and exit code.
#
# Configuration, first found wins for each variable: the environment, then the file named by
# ARKE_DR_CONFIG (default /etc/arke-dr/arke-dr.env, written by scripts/install.sh), then the
# defaults below. The file is plain `NAME=value` lines (shell syntax).

# Exit codes shared with the binaries (docs/RUNBOOK.md has the table); 6 is the scripts' own.
# shellcheck disable=SC2034 # used by the scripts that source this file
readonly EXIT_OK=0 EXIT_FAILED=1 EXIT_USAGE=2 EXIT_NODE=3 EXIT_IO=4 EXIT_LOCKED=5 EXIT_REMOTE=6 EXIT_SKIPPED=7

arke_load_config() {
  local file=${ARKE_DR_CONFIG:-/etc/arke-dr/arke-dr.env}
  if [ -f "$file" ]; then
    if [ ! -r "$file" ]; then
      echo "$ARKE_JOB: cannot read the configuration $file" >&2
      exit "$EXIT_USAGE"
    fi
    # Only variables the environment does not already set are taken from the file.
    local line name
    while IFS= read -r line || [ -n "$line" ]; do
      case $line in '' | '#'*) continue ;; esac
      name=${line%%=*}
      if ! [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ "$name" = "$line" ]; then
        echo "$ARKE_JOB: $file: not a NAME=value line: $line" >&2
        exit "$EXIT_USAGE"
      fi
      if [ -z "${!name+x}" ]; then
        if ! eval "export $line" 2>/dev/null; then
          echo "$ARKE_JOB: $file: cannot parse (quote values with spaces): $line" >&2
          exit "$EXIT_USAGE"
        fi
      fi
    done <"$file"
  fi
  : "${IPFS_API_URL:=${IPFS_API:-http://127.0.0.1:5001/api/v0}}"
  : "${INDEX_POINTER_PATH:=/arke/index_pointer}"
  : "${SNAPSHOTS_DIR:=/var/lib/arke-dr/snapshots}"
  : "${BACKUPS_DIR:=/var/lib/arke-dr/backups}"
  : "${ARKE_LOG_DIR:=/var/log/arke-dr}"
  export IPFS_API_URL INDEX_POINTER_PATH SNAPSHOTS_DIR BACKUPS_DIR
  # The binaries: ARKE_BIN_DIR, else next to this script's installed location, else PATH.
  if [ -n "${ARKE_BIN_DIR:-}" ]; then
    PATH="$ARKE_BIN_DIR:$PATH"
  fi
  # Cron runs the binaries without a terminal: periodic log lines instead of bars.
  export ARKE_NO_PROGRESS=${ARKE_NO_PROGRESS:-0}
}

# Opens the job's log file (appending) on fd 4. Fails loudly if the cron user cannot write it,
# instead of cron swallowing every line (legacy bug B27).
arke_open_log() {
  LOG_FILE=${1:-${LOG_FILE:-$ARKE_LOG_DIR/$ARKE_JOB.log}}
  local dir
  dir=$(dirname "$LOG_FILE")
  if ! mkdir -p "$dir" 2>/dev/null || ! { : >>"$LOG_FILE"; } 2>/dev/null; then
    echo "$ARKE_JOB: cannot write the log file $LOG_FILE (user $(id -un)); set LOG_FILE or ARKE_LOG_DIR, or run scripts/install.sh" >&2
    exit "$EXIT_IO"
  fi
  exec 4>>"$LOG_FILE"
}

arke_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# arke_usage: the calling script's header comment, as its --help.
arke_usage() {
  local script=${BASH_SOURCE[${#BASH_SOURCE[@]} - 1]}
  sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'
}

# arke_parse_args "$@": the options every job takes; anything else is a usage error (exit 2).
arke_parse_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      --log-file) LOG_FILE=${2:?--log-file needs a path}; shift ;;
      --config) ARKE_DR_CONFIG=${2:?--config needs a path}; shift ;;
      -v | --verbose) ARKE_VERBOSE=1 ;;
      -h | --help) arke_usage; exit 0 ;;
      *) echo "$ARKE_JOB: unknown argument: $1 (see --help)" >&2; exit "$EXIT_USAGE" ;;
    esac
    shift
  done
}

# log <message>: one UTC-stamped line in the log; on stderr too when a person is watching (or
# when the log cannot take it: a full disk must not turn into a silent exit 1).
log() {
  local line
  line="$(arke_now) $ARKE_JOB: $*"
  if ! printf '%s\n' "$line" >&4 2>/dev/null || [ -t 2 ] || [ "${ARKE_VERBOSE:-0}" = 1 ]; then
    printf '%s\n' "$line" >&2 || true
  fi
}

# Every line of a step's stderr, stamped, into the log (and stderr when watched).
arke_stamp() {
  local step=$1 line
  while IFS= read -r line; do
    line="$(arke_now) $ARKE_JOB: [$step] $line"
    if ! printf '%s\n' "$line" >&4 2>/dev/null || [ -t 2 ] || [ "${ARKE_VERBOSE:-0}" = 1 ]; then
      printf '%s\n' "$line" >&2 || true
    fi
  done
}

# Takes the job's lock (flock on fd 5, released by the kernel when the job dies) or exits 5.
arke_lock() {
  local file=$1
  if ! mkdir -p "$(dirname "$file")" 2>/dev/null || ! { exec 5>>"$file"; } 2>/dev/null; then
    log "FAILED: cannot open the lock file $file (user $(id -un))"
    echo "$ARKE_JOB: cannot open the lock file $file (user $(id -un))" >&2
    exit "$EXIT_IO"
  fi
  if ! flock -n 5; then
    log "another $ARKE_JOB holds $file; nothing done"
    echo "$ARKE_JOB: another run holds $file" >&2
    exit "$EXIT_LOCKED"
  fi
}

arke_need_bin() {
  local b
  for b in "$@"; do
    if ! command -v "$b" >/dev/null 2>&1; then
      log "FAILED: $b not found (set ARKE_BIN_DIR or install with scripts/install.sh)"
      echo "$ARKE_JOB: $b not found" >&2
      exit "$EXIT_USAGE"
    fi
  done
}

# step <name> <stdout-file> <command...>: runs the command, its stdout into <stdout-file>, its
# stderr stamped into the log. Sets STEP_RC and STEP_SECS; logs start and end.
step() {
  local name=$1 out=$2 t0
  shift 2
  t0=$(date +%s)
  log "step $name: start: $*"
  set +e
  "$@" 2>&1 >"$out" 3>&- | arke_stamp "$name"
  STEP_RC=${PIPESTATUS[0]}
  set -e
  STEP_SECS=$(($(date +%s) - t0))
  if [ "$STEP_RC" -eq 0 ]; then
    log "step $name: ok (${STEP_SECS}s)"
  else
    log "step $name: FAILED with exit $STEP_RC (${STEP_SECS}s)"
  fi
}

# Bytes as a short human size.
human() {
  awk -v b="${1:-0}" 'BEGIN { split("B KiB MiB GiB TiB", u); i = 1; while (b >= 1024 && i < 5) { b /= 1024; i++ } printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}
