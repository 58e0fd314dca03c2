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

arke_parse_args "$@"

arke_load_config
arke_open_log "${LOG_FILE:-}"
arke_need_bin build-snapshot
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arke-hourly.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step build-snapshot "$WORK/out" build-snapshot
case $STEP_RC in
  0) log "summary: ok snapshot=$(head -n 1 "$WORK/out" | grep . || echo unchanged) ${STEP_SECS}s" ;;
  "$EXIT_LOCKED") log "summary: skipped, another build-snapshot is running" ;;
  "$EXIT_SKIPPED") log "summary: ok-with-skipped-items exit=7 snapshot=$(head -n 1 "$WORK/out") ${STEP_SECS}s"; exit "$STEP_RC" ;;
  *) log "summary: FAILED exit=$STEP_RC ${STEP_SECS}s"; exit "$STEP_RC" ;;
esac
