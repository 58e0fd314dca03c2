#!/usr/bin/env bash
# weekly-verify.sh - cron's weekly deep verification (Sunday 05:00 UTC, clear of the 03:00
# EBS snapshot and the legacy 03:00/04:00 reboots: B27):
#   1. verify-snapshot --deep   the pointer's snapshot: every block, every tip against MFS
#   2. verify-car               the newest local archive, in full (every block re-hashed, closure)
# Both run even if the first fails; the exit code is the first failure's.
#
# Usage: weekly-verify.sh [--log-file FILE] [--config FILE] [-v]
# Exit codes: 0 both clean; otherwise the failing binary's (1 data, 3 node, 4 I/O, ...).
set -euo pipefail

ARKE_JOB=weekly-verify
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

arke_parse_args "$@"

arke_load_config
arke_open_log "${LOG_FILE:-}"
arke_need_bin verify-snapshot verify-car
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arke-weekly.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
rc=0

step verify-snapshot "$WORK/snap.out" verify-snapshot --deep
snap_rc=$STEP_RC snap_secs=$STEP_SECS
[ "$snap_rc" -eq 0 ] || rc=$snap_rc

# Newest archive by its name's timestamp (arke-{seq}-{YYYYMMDD-HHMMSS}.car), not by mtime.
car=$(find "$BACKUPS_DIR" -maxdepth 1 -name 'arke-*.car' -printf '%f\n' 2>/dev/null |
  awk -F- '{ print $3 $4 "\t" $0 }' | sort | tail -n 1 | cut -f 2) || true
if [ -z "$car" ]; then
  log "verify-car: FAILED: no archive in $BACKUPS_DIR"
  car_rc=$EXIT_FAILED car_secs=0
else
  step verify-car "$WORK/car.out" verify-car "$BACKUPS_DIR/$car"
  car_rc=$STEP_RC car_secs=$STEP_SECS
fi
[ "$rc" -ne 0 ] || rc=$car_rc
log "summary: $([ "$rc" -eq 0 ] && echo ok || echo FAILED) snapshot=exit $snap_rc (${snap_secs}s) archive=${car:-none} exit $car_rc (${car_secs}s)"
exit "$rc"
