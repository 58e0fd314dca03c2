#!/usr/bin/env bash
# daily-backup.sh - the daily disaster-recovery pipeline (cron, 02:00 UTC). Replaces the legacy
# cron-daily-dr-backup.sh / daily-car-export.sh, which exported without building, verifying or
# cleaning up, and uploaded where the IAM policy forbade it (bugs B24, B25, B27).
#
#   1. build-snapshot            a fresh snapshot (incremental; "unchanged" is fine)
#   2. export-car                the archive of the pointer's snapshot + event chain: incremental over
#                                the newest verified archive (only what its chain does not hold), a
#                                full archive every FULL_EVERY_DAYS days or when no parent is usable
#   3. verify-car                the archive re-read offline with its whole chain, every block re-hashed
#   4. upload                    CAR, then its .json, to s3://$S3_BUCKET/$S3_PREFIX; remote sizes checked;
#                                any member of its chain not yet in S3 (a failed night) goes first
#   5. retention                 local archives beyond KEEP_ARCHIVES / KEEP_DAYS deleted (newest always
#                                kept; never an archive a kept incremental builds on: chains go whole)
#   6. prune-snapshots           snapshots beyond SNAPSHOT_KEEP_LAST unpinned (SNAPSHOT_GC=1: and GC)
#
# Every enabled step is required: the first failure stops the pipeline (nothing is deleted after
# a failed export, verification or upload) and becomes the exit code. Each step is logged with
# UTC timestamps to $LOG_FILE; the last line is a summary with sizes and durations.
#
# Usage: daily-backup.sh [--no-upload] [--no-prune] [--log-file FILE] [--config FILE] [-v]
#
# Configuration (environment, else $ARKE_DR_CONFIG = /etc/arke-dr/arke-dr.env, else default):
#   IPFS_API_URL        http://127.0.0.1:5001/api/v0   (the host's Kubo; no Docker socket needed)
#   INDEX_POINTER_PATH  /arke/index_pointer
#   SNAPSHOTS_DIR       /var/lib/arke-dr/snapshots
#   BACKUPS_DIR         /var/lib/arke-dr/backups
#   ARKE_LOG_DIR        /var/log/arke-dr               (LOG_FILE: $ARKE_LOG_DIR/daily-backup.log)
#   ARKE_BIN_DIR        (where the binaries are, when not on PATH)
#   UPLOAD              1 (0: skip the upload, e.g. no bucket on this host)
#   S3_BUCKET           (required when UPLOAD=1)
#   S3_PREFIX           backups/<instance-id>/ (the lifecycle rule's prefix; must end with /)
#   AWS_REGION          us-east-1
#   S3_STORAGE_CLASS    STANDARD_IA
#   ARKE_INSTANCE_ID    (else IMDSv2, else the host name)
#   INCREMENTAL         1 (0: a full archive every night)
#   FULL_EVERY_DAYS     7 (a new chain starts with a full archive once the base is this old)
#   KEEP_ARCHIVES       3 local archives kept (the host has a 30 GB disk); their chains are kept too
#   KEEP_DAYS           (unset: count only; set: archives younger than D days are kept too)
#   PRUNE_SNAPSHOTS     1   SNAPSHOT_KEEP_LAST 48 (two days of hourly snapshots)
#   SNAPSHOT_GC         1   (repo/gc after the unpin: what actually frees the space; on Kubo it
#                           briefly blocks writes, hence 02:00)
#   BUILD_LOCK_WAIT     900 seconds to wait for an hourly build-snapshot that holds the build lock
#                       (steps 1 and 6 share it)
#
# Exit codes: 0 ok; 1-5 the failing binary's own code (1 data failure, 2 usage/config,
# 3 node, 4 local I/O, 5 locked); 6 upload failed or the remote size differs; 7 the night
# completed (archive verified and uploaded) but build-snapshot or export-car skipped damaged
# items, named in the log. See docs/RUNBOOK.md.
#
# Expected S3 setup (the legacy policy allowed only daily/* while the code wrote backups/: B24):
#   IAM policy of the instance role, for the bucket arke-ipfs-backups-<account>:
#     {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload",
#                                    "s3:RestoreObject"],
#      "Resource": "arn:aws:s3:::arke-ipfs-backups-<account>/backups/*"},
#     {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::arke-ipfs-backups-<account>",
#      "Condition": {"StringLike": {"s3:prefix": "backups/*"}}}
#   (GetObject: the size check by head-object and restores; RestoreObject: archives in Glacier.)
#   Lifecycle rule on the same prefix, versioned bucket, in lifecycle.json:
#     {"Rules": [{"ID": "arke-backups", "Filter": {"Prefix": "backups/"}, "Status": "Enabled",
#       "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}], "Expiration": {"Days": 90},
#       "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
#       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}]}
#   applied with: aws s3api put-bucket-lifecycle-configuration --bucket <bucket> \
#                   --lifecycle-configuration file://lifecycle.json
#   STANDARD_IA has a 30-day minimum; the Glacier transition at 30 days respects it.
set -euo pipefail

ARKE_JOB=daily-backup
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Its own options first; the rest are the options every job takes.
args=()
for a in "$@"; do
  case $a in
    --no-upload) UPLOAD=0 ;;
    --no-prune) PRUNE_SNAPSHOTS=0 ;;
    *) args+=("$a") ;;
  esac
done
arke_parse_args "${args[@]}"

arke_load_config
: "${UPLOAD:=1}" "${PRUNE_SNAPSHOTS:=1}" "${SNAPSHOT_KEEP_LAST:=48}" "${SNAPSHOT_GC:=1}"
: "${KEEP_ARCHIVES:=3}" "${KEEP_DAYS:=}" "${BUILD_LOCK_WAIT:=900}"
: "${INCREMENTAL:=1}" "${FULL_EVERY_DAYS:=7}"
: "${AWS_REGION:=us-east-1}" "${S3_STORAGE_CLASS:=STANDARD_IA}" "${S3_BUCKET:=}" "${S3_PREFIX:=}"
arke_open_log "${LOG_FILE:-}"

T0=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arke-daily.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
declare -A SECS=()

# fail <exit> <message>: the pipeline stops here; the summary says where and why.
fail() {
  local rc=$1
  shift
  log "FAILED: $*"
  log "summary: FAILED exit=$rc $* total=$(($(date +%s) - T0))s"
  echo "daily-backup: FAILED: $* (exit $rc; log: $LOG_FILE)" >&2
  exit "$rc"
}

# meta_field <file.json> <key>: a top-level string value of an archive's metadata (written by
# export-car, one key per line), or nothing.
meta_field() {
  sed -n "s/^  \"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" "$1" | head -n 1
}

# chain_of <car>: the archive's chain, base first, one path per line (the metadata's "parent").
chain_of() {
  local car=$1 parent out=()
  while :; do
    out=("$car" "${out[@]}")
    parent=$(meta_field "${car%.car}.json" parent)
    [ -n "$parent" ] || break
    car="$(dirname "$car")/$parent"
    [ "${#out[@]}" -lt 10000 ] || break
  done
  printf '%s\n' "${out[@]}"
}

config_error() { log "configuration: $*"; fail "$EXIT_USAGE" "$*"; }

# --- preflight ---------------------------------------------------------------------------------
arke_need_bin build-snapshot export-car verify-car prune-snapshots
mkdir -p "$SNAPSHOTS_DIR" "$BACKUPS_DIR" || fail "$EXIT_IO" "cannot create $SNAPSHOTS_DIR or $BACKUPS_DIR"
arke_lock "$BACKUPS_DIR/.daily-backup.lock"
case $UPLOAD in 0 | 1) ;; *) config_error "UPLOAD must be 0 or 1, not '$UPLOAD'" ;; esac
case $INCREMENTAL in 0 | 1) ;; *) config_error "INCREMENTAL must be 0 or 1, not '$INCREMENTAL'" ;; esac
if ! [[ $FULL_EVERY_DAYS =~ ^[1-9][0-9]*$ ]]; then
  config_error "FULL_EVERY_DAYS must be at least 1, not '$FULL_EVERY_DAYS'"
fi
if ! [[ $KEEP_ARCHIVES =~ ^[1-9][0-9]*$ ]]; then
  config_error "KEEP_ARCHIVES must be at least 1, not '$KEEP_ARCHIVES'"
fi
if [ -n "$KEEP_DAYS" ] && ! [[ $KEEP_DAYS =~ ^[0-9]+$ ]]; then
  config_error "KEEP_DAYS must be a number of days, not '$KEEP_DAYS'"
fi
if [ "$UPLOAD" = 1 ]; then
  [ -n "$S3_BUCKET" ] || config_error "S3_BUCKET is not set (or set UPLOAD=0 / --no-upload)"
  command -v aws >/dev/null 2>&1 || config_error "the aws CLI is not installed (or set UPLOAD=0)"
fi
log "start: api $IPFS_API_URL, pointer $INDEX_POINTER_PATH, backups $BACKUPS_DIR, upload $UPLOAD, log $LOG_FILE"

# step_after_build_lock <name> <out> <command...>: like step, but while an hourly build-snapshot
# holds the build lock (exit 5) it retries every 15 s, up to BUILD_LOCK_WAIT seconds.
step_after_build_lock() {
  local waited=0
  while :; do
    step "$@"
    if [ "$STEP_RC" -ne "$EXIT_LOCKED" ] || [ "$waited" -ge "$BUILD_LOCK_WAIT" ]; then
      return
    fi
    log "a build-snapshot holds the build lock; retrying in 15 s (waited ${waited}s of ${BUILD_LOCK_WAIT}s)"
    sleep 15
    waited=$((waited + 15))
  done
}

# --- 1. build-snapshot ------------------------------------------------------------------------
step_after_build_lock build-snapshot "$WORK/build.out" build-snapshot
SECS[build]=$STEP_SECS
# 7: the snapshot was written without the damaged items it names; the night goes on (export,
# verify, upload, retention) and ends with 7 so that the damage is not forgotten.
FINAL_RC=$EXIT_OK
if [ "$STEP_RC" -eq "$EXIT_SKIPPED" ]; then
  FINAL_RC=$EXIT_SKIPPED
  log "WARNING: build-snapshot skipped damaged items (exit 7; named in the log above); archiving everything else"
elif [ "$STEP_RC" -ne 0 ]; then
  fail "$STEP_RC" "build-snapshot exited $STEP_RC"
fi
SNAPSHOT=$(head -n 1 "$WORK/build.out")
log "snapshot: ${SNAPSHOT:-unchanged since the last build}"

# --- 2. export-car ----------------------------------------------------------------------------
export_args=()
if [ "$INCREMENTAL" = 1 ]; then
  export_args+=(--incremental --full-every-days "$FULL_EVERY_DAYS")
fi
step export-car "$WORK/export.out" export-car "${export_args[@]}"
SECS[export]=$STEP_SECS
if [ "$STEP_RC" -eq "$EXIT_SKIPPED" ]; then
  FINAL_RC=$EXIT_SKIPPED
  log "WARNING: export-car left out damaged live-state items (exit 7; named in the log above and in the archive's descriptor)"
elif [ "$STEP_RC" -ne 0 ]; then
  fail "$STEP_RC" "export-car exited $STEP_RC"
fi
CAR=$(head -n 1 "$WORK/export.out")
META="${CAR%.car}.json"
if [ ! -f "$CAR" ] || [ ! -f "$META" ]; then
  fail "$EXIT_FAILED" "export-car reported '$CAR' but it or its .json is not there"
fi
CAR_SIZE=$(stat -c %s "$CAR")
KIND=$(meta_field "$META" kind)
log "archive: $(basename "$CAR") (${KIND:-full}$( [ "$KIND" = incremental ] && echo " over $(meta_field "$META" parent)"))"

# --- 3. verify-car ----------------------------------------------------------------------------
step verify-car "$WORK/verify.out" verify-car "$CAR"
SECS[verify]=$STEP_SECS
[ "$STEP_RC" -eq 0 ] || fail "$STEP_RC" "verify-car exited $STEP_RC on $CAR (the archive is kept for inspection)"

# --- 4. upload --------------------------------------------------------------------------------
instance_id() {
  if [ -n "${ARKE_INSTANCE_ID:-}" ]; then
    echo "$ARKE_INSTANCE_ID"
    return
  fi
  local imds=${ARKE_IMDS_URL:-http://169.254.169.254} token id attempt
  # IMDSv2: a session token first (IMDSv1 may be disabled on the instance). Three tries: a
  # transient failure must not move the uploads to another folder.
  for attempt in 1 2 3; do
    token=$(curl -sf -m 2 -X PUT "$imds/latest/api/token" \
      -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' 2>/dev/null) &&
      id=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" \
        "$imds/latest/meta-data/instance-id" 2>/dev/null) &&
      [[ $id =~ ^i-[0-9a-f]+$ ]] && { echo "$id"; return; }
    [ "$attempt" -lt 3 ] && sleep 1
  done
  log "WARNING: instance id: IMDSv2 did not answer (not on EC2?); using the host name. Set ARKE_INSTANCE_ID or S3_PREFIX to pin the folder"
  hostname -s
}

# remote_size <key>: ContentLength of the object, or nothing.
remote_size() {
  aws s3api head-object --bucket "$S3_BUCKET" --key "$1" --region "$AWS_REGION" \
    --query ContentLength --output text 2>&1
}

upload() {
  local file=$1 key=$2 size=$3 got
  # aws s3 cp switches to multipart above 8 MiB and has no overall timeout (the legacy 300 s
  # limit failed multi-GB archives).
  if ! aws s3 cp "$file" "s3://$S3_BUCKET/$key" --region "$AWS_REGION" \
    --storage-class "$S3_STORAGE_CLASS" --only-show-errors --no-progress 2>&1 | arke_stamp upload; then
    return 1
  fi
  got=$(remote_size "$key") || true
  if [ "$got" != "$size" ]; then
    log "upload: s3://$S3_BUCKET/$key has size '$got', the local file $size bytes"
    return 1
  fi
  log "upload: s3://$S3_BUCKET/$key ($size bytes) confirmed"
}

if [ "$UPLOAD" = 1 ]; then
  t=$(date +%s)
  if [ -z "$S3_PREFIX" ]; then
    S3_PREFIX="backups/$(instance_id)/"
  fi
  case $S3_PREFIX in */) ;; *) S3_PREFIX="$S3_PREFIX/" ;; esac
  log "step upload: start: s3://$S3_BUCKET/$S3_PREFIX (region $AWS_REGION, class $S3_STORAGE_CLASS)"
  # The CAR first, the metadata last: a listing that shows the .json shows a complete upload.
  # Every member of the chain that S3 does not hold yet (a night whose upload failed), base
  # first, then tonight's archive: S3 never holds an incremental without its parents.
  set -o pipefail
  while IFS= read -r member; do
    m_meta="${member%.car}.json"
    m_size=$(stat -c %s "$member")
    if [ "$member" != "$CAR" ] && [ "$(remote_size "$S3_PREFIX$(basename "$member")")" = "$m_size" ]; then
      continue
    fi
    if ! upload "$member" "$S3_PREFIX$(basename "$member")" "$m_size" ||
      ! upload "$m_meta" "$S3_PREFIX$(basename "$m_meta")" "$(stat -c %s "$m_meta")"; then
      SECS[upload]=$(($(date +%s) - t))
      fail "$EXIT_REMOTE" "upload of $(basename "$member") to s3://$S3_BUCKET/$S3_PREFIX failed (local archives are not pruned)"
    fi
  done < <(chain_of "$CAR")
  SECS[upload]=$(($(date +%s) - t))
  log "step upload: ok (${SECS[upload]}s)"
  UPLOADED="s3://$S3_BUCKET/$S3_PREFIX$(basename "$CAR")"
else
  log "step upload: skipped (UPLOAD=0)"
  UPLOADED=skipped
fi

# --- 5. local retention -----------------------------------------------------------------------
retention_args=(--prune-only --keep-last "$KEEP_ARCHIVES")
if [ -n "$KEEP_DAYS" ]; then retention_args+=(--keep-days "$KEEP_DAYS"); fi
step retention "$WORK/retention.out" export-car "${retention_args[@]}"
SECS[retention]=$STEP_SECS
[ "$STEP_RC" -eq 0 ] || fail "$STEP_RC" "retention (export-car --prune-only) exited $STEP_RC"
DELETED=$(grep -c . "$WORK/retention.out" || true)

# --- 6. snapshot pruning ----------------------------------------------------------------------
PRUNED=skipped
if [ "$PRUNE_SNAPSHOTS" = 1 ]; then
  prune_args=(--keep-last "$SNAPSHOT_KEEP_LAST" --apply)
  if [ "$SNAPSHOT_GC" = 1 ]; then prune_args+=(--gc); fi
  step_after_build_lock prune-snapshots "$WORK/prune.out" prune-snapshots "${prune_args[@]}"
  SECS[prune]=$STEP_SECS
  [ "$STEP_RC" -eq 0 ] || fail "$STEP_RC" "prune-snapshots exited $STEP_RC"
  PRUNED=$(grep -c . "$WORK/prune.out" || true)
fi

FREE=$(df -Pk "$BACKUPS_DIR" | awk 'NR == 2 { print $4 * 1024 }')
STATUS=ok
[ "$FINAL_RC" -eq "$EXIT_SKIPPED" ] && STATUS="ok-with-skipped-items exit=7"
log "summary: $STATUS car=$(basename "$CAR") size=$(human "$CAR_SIZE") ($CAR_SIZE bytes) upload=$UPLOADED" \
  "archives_deleted=$DELETED snapshots_pruned=$PRUNED disk_free=$(human "$FREE")" \
  "build=${SECS[build]}s export=${SECS[export]}s verify=${SECS[verify]}s" \
  "upload=${SECS[upload]:-0}s retention=${SECS[retention]}s prune=${SECS[prune]:-0}s total=$(($(date +%s) - T0))s"
echo "$CAR"
exit "$FINAL_RC"
