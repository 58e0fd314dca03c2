#!/usr/bin/env bash
# hourly-snapshot.sh - cron's hourly build-snapshot, logged with UTC timestamps to
# $ARKE_LOG_DIR/hourly-snapshot.log (replaces the API container's APScheduler job).
#
# Usage: hourly-snapshot.sh [--log-file FILE] [--config FILE] [-v]
# Configuration: as daily-backup.sh (IPFS_API_URL, INDEX_POINTER_PATH, SNAPSHOTS_DIR, ...).
# Exit codes: build-snapshot's own; a build already running (5) is logged and counts as 0,
# since the running build does the same work.
set -euo pipefail

ARKE_JOB=hourly-snapshot
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

while [ $# -gt 0 ]; do
  case $1 in
    --log-file) LOG_FILE=${2:?--log-file needs a path}; shift ;;
    --config) ARKE_DR_CONFIG=${2:?--config needs a path}; shift ;;
    -v | --verbose) ARKE_VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "hourly-snapshot: unknown argument: $1" >&2; exit "$EXIT_USAGE" ;;
  esac
  shift
done

arke_load_config
arke_open_log "${LOG_FILE:-}"
arke_need_bin build-snapshot
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arke-hourly.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step build-snapshot "$WORK/out" build-snapshot
case $STEP_RC in
  0) log "summary: ok snapshot=$(head -n 1 "$WORK/out" | grep . || echo unchanged) ${STEP_SECS}s" ;;
  "$EXIT_LOCKED") log "summary: skipped, another build-snapshot is running" ;;
  *) log "summary: FAILED exit=$STEP_RC ${STEP_SECS}s"; exit "$STEP_RC" ;;
esac
