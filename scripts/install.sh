#!/usr/bin/env bash
# install.sh - installs arke-dr on a host: the binaries (the tools, the jobs and dr-server), a
# configuration file, the data, state and log folders (owned by the cron user), the crontab, the
# log rotation (logrotate: daily, 14 days kept, compressed) and dr-server's systemd unit; and
# disables the legacy DR jobs in the cron user's crontab (below).
#
# Usage: scripts/install.sh [options]        (as root for the default paths)
#   --prebuilt DIR     take the binaries from DIR (e.g. dist/ from `--static` on another machine,
#                      or the Dockerfile's `binaries` stage) instead of building them
#   --static           build static (musl) binaries (needs musl-tools: apt-get install musl-tools;
#                      the Rust target is added if missing): they run on any x86_64 Linux and can be
#                      copied into a container (`docker cp`), no glibc needed
#   --prefix DIR       binaries in DIR/bin                                      (/usr/local)
#   --etc-dir DIR      DIR/arke-dr/arke-dr.env, DIR/cron.d/arke-dr, DIR/logrotate.d/arke-dr and
#                      DIR/systemd/system/arke-dr-server.service                (/etc)
#   --data-dir DIR     DIR/snapshots, DIR/backups, DIR/state (run records, metrics) (/var/lib/arke-dr)
#   --log-dir DIR      the jobs' logs                                           (/var/log/arke-dr)
#   --user USER        the cron user, owner of the data and log folders         ($SUDO_USER, else ubuntu, else you)
#   --api URL          the Kubo RPC API written into the configuration          (http://127.0.0.1:5001/api/v0)
#   --pointer-path P   the index pointer's MFS path                             (/arke/index_pointer)
#   --no-cron          do not install the crontab (and leave the legacy jobs running)
#   --keep-legacy-cron do not disable the legacy DR jobs in the cron user's crontab
#   --no-logrotate     do not install the log rotation
#   --no-server        do not install (or start) dr-server's systemd unit
#
# An existing configuration file is never overwritten: the new one is written beside it as
# arke-dr.env.new. The file may hold secrets (DR_SERVER_TOKEN, HEARTBEAT_URL, NOTIFY_WEBHOOK_URL:
# notifications, docs/operations.md): it is written 0640 root:<the cron
# user's group> (0600 when not run as root), and an existing one that everyone can read is
# narrowed to that. Re-running the script upgrades binaries and scripts in place.
#
# The legacy DR jobs: once the arke-dr crontab is installed, the job lines of the cron user's own
# crontab (crontab -l -u USER) that run a legacy DR script (daily-car-export.sh,
# cleanup-old-snapshots.sh, cron-daily-dr-backup.sh, build-snapshot.sh, export-car.sh, or the
# Python modules build_snapshot, export_car, verify_snapshot, verify_car) are commented out as
# "# arke-dr-disabled <UTC time>: <the line>", each said on stderr, after the whole crontab is
# saved as DATA/state/crontab-USER-<UTC time>.bak (mode 0600; `crontab -u USER <that file>` puts
# it back). Other lines are kept as they are; a second run finds nothing to change and says so.
# Such lines in root's crontab, ETC/crontab or ETC/cron.d/* (other than arke-dr's own file) are
# only reported (WARNING), never edited. No crontab command (cron not installed): nothing to do.
#
# Notifications (set in the configuration file; docs/operations.md "Notifications"): HEARTBEAT_URL
# (a healthchecks.io check every job pings: /start, success, /<exit code>), HEARTBEAT_URL_<JOB>
# (DAILY_BACKUP, HOURLY_SNAPSHOT, WEEKLY_VERIFY, RESTORE_DRILL: a job's own check, or off),
# NOTIFY_WEBHOOK_URL (a JSON POST with a Slack/Mattermost/Teams "text"), NOTIFY_ON (its events:
# failure,skipped,alert,warning,critical,recovery by default; success; all), NOTIFY_TIMEOUT (10 s
# per request, 3 tries), ARKE_HOST_NAME. The URLs are secrets, hence the file's mode.
#
# dr-server: the unit runs it as the cron user with ARKE_DR_CONFIG naming the configuration.
# When systemd is running and the unit went to /etc, it is enabled and (re)started; otherwise
# the commands to do so are printed.
#
# Exit codes: 0 installed; 2 bad arguments or missing prerequisite; 4 a file could not be
# written (or the crontab could not be read or installed); 5 dr-server's unit could not be
# enabled or started.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINS=(build-snapshot export-car restore-from-car verify-snapshot verify-car prune-snapshots
  fetch-archive verify-entity inspect-archive daily-backup weekly-verify restore-drill
  hourly-snapshot dr-status dr-server)

PREBUILT='' STATIC=0 PREFIX=/usr/local ETC=/etc DATA=/var/lib/arke-dr LOGS=/var/log/arke-dr
API=http://127.0.0.1:5001/api/v0 POINTER=/arke/index_pointer CRON=1 LOGROTATE=1
LEGACY_CRON=disable SERVER=1
CRON_USER=${SUDO_USER:-}
if [ -z "$CRON_USER" ]; then
  if id ubuntu >/dev/null 2>&1; then CRON_USER=ubuntu; else CRON_USER=$(id -un); fi
fi

die() { echo "install: $*" >&2; exit "${2:-2}"; }
say() { echo "install: $*" >&2; }

while [ $# -gt 0 ]; do
  case $1 in
    --prebuilt) PREBUILT=${2:?--prebuilt needs a folder}; shift ;;
    --static) STATIC=1 ;;
    --prefix) PREFIX=${2:?}; shift ;;
    --etc-dir) ETC=${2:?}; shift ;;
    --data-dir) DATA=${2:?}; shift ;;
    --log-dir) LOGS=${2:?}; shift ;;
    --user) CRON_USER=${2:?}; shift ;;
    --api) API=${2:?}; shift ;;
    --pointer-path) POINTER=${2:?}; shift ;;
    --no-cron) CRON=0 ;;
    --keep-legacy-cron) LEGACY_CRON=keep ;;
    --no-logrotate) LOGROTATE=0 ;;
    --no-server) SERVER=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

id "$CRON_USER" >/dev/null 2>&1 || die "the cron user '$CRON_USER' does not exist (--user)"
for p in "$PREFIX" "$ETC" "$DATA" "$LOGS"; do
  case $p in /*) ;; *) die "paths must be absolute: $p" ;; esac
done

# --- binaries ---------------------------------------------------------------------------------
if [ -z "$PREBUILT" ]; then
  command -v cargo >/dev/null ||
    die "cargo not found (sudo hides ~/.cargo/bin): build as your user with 'cargo build --release --locked -p arke-dr' and pass --prebuilt target/release"
  if [ "$STATIC" = 1 ]; then
    target=x86_64-unknown-linux-musl
    # ring (the TLS of the S3 client) compiles C and assembly: it needs musl's C compiler.
    command -v x86_64-linux-musl-gcc >/dev/null || command -v musl-gcc >/dev/null ||
      die "--static needs musl's C compiler: sudo apt-get install musl-tools"
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
      say "adding the Rust target $target"
      rustup target add "$target" >&2
    fi
    say "building static release binaries ($target)"
    (cd "$REPO" && cargo build --release --locked --target "$target" -p arke-dr >&2)
    PREBUILT=$REPO/target/$target/release
  else
    say "building release binaries"
    (cd "$REPO" && cargo build --release --locked -p arke-dr >&2)
    PREBUILT=$REPO/target/release
  fi
fi
for b in "${BINS[@]}"; do
  [ -x "$PREBUILT/$b" ] || die "$PREBUILT/$b is missing or not executable"
done

# install -D is atomic enough per file (written, then renamed by install); a failure is exit 4.
put() { install -D -m "$1" "$2" "$3" || die "cannot write $3" 4; }

for b in "${BINS[@]}"; do put 0755 "$PREBUILT/$b" "$PREFIX/bin/$b"; done
# The shell jobs an earlier version installed: the crontab below no longer names them. Only
# those files go (and their folders, if then empty).
old=$PREFIX/lib/arke-dr
rm -f "$old/daily-backup.sh" "$old/hourly-snapshot.sh" "$old/weekly-verify.sh" "$old/lib/common.sh"
rmdir "$old/lib" "$old" 2>/dev/null || true
say "binaries in $PREFIX/bin"

# --- folders ------------------------------------------------------------------------------------
mkdir -p "$DATA/snapshots" "$DATA/backups" "$DATA/state/metrics" "$LOGS" ||
  die "cannot create $DATA or $LOGS" 4
if [ "$(id -u)" = 0 ]; then
  chown "$CRON_USER:" "$DATA" "$DATA/snapshots" "$DATA/backups" "$DATA/state" \
    "$DATA/state/metrics" "$LOGS"
fi
# The metrics folder is node_exporter's textfile directory: readable by everyone.
chmod 0750 "$DATA/backups" "$LOGS"
chmod 0755 "$DATA/state" "$DATA/state/metrics"

# --- configuration ------------------------------------------------------------------------------
CONFIG=$ETC/arke-dr/arke-dr.env
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
q() { printf '%q' "$1"; }
cat >"$tmp" <<CONF
# arke-dr configuration, read as data by the jobs (daily-backup, weekly-verify, hourly-snapshot,
# dr-status, fetch-archive): NAME=value lines, quotes as in the shell ('a b'), never evaluated
# (\$VAR and \$(...) are refused). The environment wins over this file. README "Configuration"
# lists every variable.
IPFS_API_URL=$(q "$API")
INDEX_POINTER_PATH=$(q "$POINTER")
SNAPSHOTS_DIR=$(q "$DATA/snapshots")
BACKUPS_DIR=$(q "$DATA/backups")
ARKE_LOG_DIR=$(q "$LOGS")
# Run records (runs/<job>.json) and the metrics file (metrics/arke_dr.prom: point
# node_exporter's --collector.textfile.directory at $DATA/state/metrics).
ARKE_STATE_DIR=$(q "$DATA/state")
# S3 upload (daily-backup; fetch-archive reads the same settings). Set the bucket, or UPLOAD=0 on a host without one.
UPLOAD=1
S3_BUCKET=
# S3_PREFIX=backups/<instance-id>/   (default; must match the lifecycle rule's prefix)
# ARKE_INSTANCE_ID=                   (default: asked from IMDSv2 at each run)
AWS_REGION=us-east-1
S3_STORAGE_CLASS=STANDARD_IA
# S3_PART_SIZE_MB=64                  (MiB per multipart part, at least 5)
# Server-side encryption of every upload: AES256 (SSE-S3), aws:kms (with S3_SSE_KMS_KEY_ID),
# or none (no header: S3-compatible servers that refuse it).
S3_SSE=AES256
# S3_SSE_KMS_KEY_ID=                  (aws:kms only; default the account's aws/s3 key)
# On a bucket with Object Lock: uploads retained this many days, the newest chain extended
# nightly (0: neither). GOVERNANCE or COMPLIANCE.
# S3_OBJECT_LOCK_DAYS=30
# S3_OBJECT_LOCK_MODE=GOVERNANCE
# S3_RETENTION=1: the KEEP_* policy below applied to the bucket too (whole chains); then use a
# lifecycle rule without Expiration (docs/operations.md "Retention in the bucket").
S3_RETENTION=0
# Incremental archives: a full archive every FULL_EVERY_DAYS days, incrementals between
# (INCREMENTAL=0: a full archive every night).
INCREMENTAL=1
FULL_EVERY_DAYS=7
# The last hour off the host: hourly-snapshot also writes, verifies and uploads an incremental
# archive (default: 1 with upload on and INCREMENTAL=1; 0 keeps one archive a night).
# HOURLY_ARCHIVE=1
# The nightly and hourly verification of an incremental re-hashes only the new file; its
# parents are trusted by their verify-car stamps and index files (weekly-verify re-hashes the
# whole chain). VERIFY_FULL_CHAIN=1 re-hashes the whole chain every time.
# VERIFY_FULL_CHAIN=0
# Local retention, restic's rule (the newest archive of each of the last N days, ISO weeks,
# months, years that have one; the rules ORed; chains kept whole; the newest always): the
# legacy policy. KEEP_HOURLY=24 keeps a day of hourly archives; KEEP_ARCHIVES=N the newest N.
# See what it keeps: export-car --prune-only --dry-run --backups-dir ... --keep-daily 7 ...
KEEP_DAILY=7
KEEP_WEEKLY=4
KEEP_MONTHLY=12
KEEP_YEARLY=unlimited
SNAPSHOT_KEEP_LAST=48
SNAPSHOT_GC=1
# dr-status's thresholds (the jobs' metrics refresh uses them too; defaults shown).
# ALERT_ARCHIVE_AGE_HOURS=26
# ALERT_OFFHOST_RPO_HOURS=2           (2 with hourly archives, else 26)
# ALERT_SNAPSHOT_AGE_HOURS=2
# ALERT_LOCK_MINUTES=30
# ALERT_DISK_WARN_PERCENT=80
# ALERT_DISK_CRIT_PERCENT=95
# Notifications (docs/operations.md "Notifications"). Secrets, like DR_SERVER_TOKEN below.
# HEARTBEAT_URL: a healthchecks.io check pinged by every job (/start, success, /<exit code>);
# HEARTBEAT_URL_DAILY_BACKUP, _HOURLY_SNAPSHOT, _WEEKLY_VERIFY, _RESTORE_DRILL: a job's own check.
# NOTIFY_WEBHOOK_URL: a JSON POST (Slack, Mattermost and Teams show its "text") on NOTIFY_ON's events.
# HEARTBEAT_URL=
# NOTIFY_WEBHOOK_URL=
# NOTIFY_ON=failure,skipped,alert,warning,critical,recovery
# NOTIFY_TIMEOUT=10
# ARKE_HOST_NAME=                     (default: the host name)
# dr-server (systemd unit arke-dr-server, or a container): the address it listens on, and the
# bearer token it asks of non-loopback clients for /admin/* and /metrics. A token makes this
# file a secret: keep it 0640 root:<cron user's group> (as install.sh writes it), never 0644.
# DR_SERVER_LISTEN=127.0.0.1:8090
# DR_SERVER_TOKEN=
CONF
mkdir -p "$ETC/arke-dr" || die "cannot create $ETC/arke-dr" 4
# The jobs and dr-server run as the cron user and read the file; nobody else needs to (it may
# hold DR_SERVER_TOKEN). As root: root's, readable by the cron user's group. Otherwise the
# installing user is the cron user (nothing is chowned then): its own, 0600.
config_access() {
  if [ "$(id -u)" = 0 ]; then
    chgrp "$(id -gn "$CRON_USER")" "$1" && chmod 0640 "$1"
  else
    chmod 0600 "$1"
  fi
}
if [ -e "$CONFIG" ]; then
  put 0600 "$tmp" "$CONFIG.new"
  config_access "$CONFIG.new" || die "cannot set the group or mode of $CONFIG.new" 4
  say "kept the existing $CONFIG; the new defaults are in $CONFIG.new"
  # An older install.sh wrote it 0644: once it holds a token, everyone could read it.
  if [ -n "$(find "$CONFIG" -maxdepth 0 -perm -o=r)" ]; then
    if config_access "$CONFIG"; then
      say "$CONFIG was readable by everyone: now $(stat -c '%a %U:%G' "$CONFIG") (it may hold DR_SERVER_TOKEN)"
    else
      say "WARNING: $CONFIG is readable by everyone and could not be narrowed: do not put DR_SERVER_TOKEN in it"
    fi
  fi
else
  put 0600 "$tmp" "$CONFIG"
  config_access "$CONFIG" || die "cannot set the group or mode of $CONFIG" 4
  say "configuration: $CONFIG (set S3_BUCKET, or UPLOAD=0)"
fi

# --- crontab ------------------------------------------------------------------------------------
if [ "$CRON" = 1 ]; then
  sed -e "s|@USER@|$CRON_USER|g" -e "s|@BIN@|$PREFIX/bin|g" \
    -e "s|@CONFIG@|$CONFIG|g" -e "s|@LOG_DIR@|$LOGS|g" "$REPO/cron/arke-dr.cron" >"$tmp"
  # cron.d ignores files with dots in their names and wants them root-owned, mode 0644.
  put 0644 "$tmp" "$ETC/cron.d/arke-dr"
  say "crontab: $ETC/cron.d/arke-dr (jobs run as $CRON_USER; logs in $LOGS)"
fi

# --- the legacy DR jobs ---------------------------------------------------------------------------
# What the legacy repository scheduled or documented for cron (the arke-data-model spec §6.7-6.9):
# daily-car-export.sh (setup-monitoring.sh put it in ubuntu's crontab), the bash predecessors and
# cleanup-old-snapshots.sh, the planned cron-daily-dr-backup.sh, and the Python modules run as
# `docker exec ipfs-api python3 -m dr.<module>`. Our own binaries are hyphenated and have no .sh,
# so no pattern matches them.
LEGACY_JOBS=(daily-car-export.sh cleanup-old-snapshots.sh cron-daily-dr-backup.sh build-snapshot.sh
  export-car.sh build_snapshot export_car verify_snapshot verify_car)
LEGACY_MARK='# arke-dr-disabled'

# A job line (not a comment, a blank or a VAR=value line: those start otherwise) naming a
# legacy job anywhere in it.
legacy_job() {
  [[ $1 =~ ^[[:space:]]*[0-9*@] ]] || return 1
  local p
  for p in "${LEGACY_JOBS[@]}"; do [[ $1 == *"$p"* ]] && return 0; done
  return 1
}

# Prints "<line number>: <line>" for each legacy job line of the file $1.
legacy_lines() {
  local line n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    if legacy_job "$line"; then printf '%s: %s\n' "$n" "$line"; fi
  done <"$1"
}

# The cron user's own crontab: saved, its legacy job lines commented out, installed again.
disable_legacy_user_jobs() {
  local as=() cur new backup line stamp found=0 kept
  if [ "$(id -u)" = 0 ]; then
    as=(-u "$CRON_USER")
  elif [ "$CRON_USER" != "$(id -un)" ]; then
    say "WARNING: legacy cron: cannot read $CRON_USER's crontab without root: check it (crontab -l -u $CRON_USER)"
    return 0
  fi
  cur=$(mktemp) new=$(mktemp)
  # shellcheck disable=SC2064 # the names are fixed now
  trap "rm -f '$tmp' '$cur' '$new'" EXIT
  if ! crontab "${as[@]}" -l >"$cur" 2>"$new"; then
    if grep -q '^no crontab for' "$new"; then
      say "legacy cron: $CRON_USER has no crontab: nothing to disable"
      return 0
    fi
    die "cannot read $CRON_USER's crontab: $(head -n 1 "$new")" 4
  fi
  stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  : >"$new"
  while IFS= read -r line || [ -n "$line" ]; do
    if legacy_job "$line"; then
      printf '%s %s: %s\n' "$LEGACY_MARK" "$stamp" "$line" >>"$new"
      say "legacy cron: disabled in $CRON_USER's crontab: $line"
      found=$((found + 1))
    else
      printf '%s\n' "$line" >>"$new"
    fi
  done <"$cur"
  if [ "$found" = 0 ]; then
    kept=$(grep -c "^$LEGACY_MARK " "$cur" || true)
    say "legacy cron: nothing to change in $CRON_USER's crontab (no legacy job running; $kept line(s) disabled earlier)"
    return 0
  fi
  backup=$DATA/state/crontab-$CRON_USER-${stamp//[-:]/}.bak
  # The crontab may hold secrets of its own: for root's eyes (or the installing user's) only.
  put 0600 "$cur" "$backup"
  crontab "${as[@]}" "$new" || die "cannot install $CRON_USER's edited crontab (it is unchanged; saved in $backup)" 4
  say "legacy cron: $found job line(s) disabled in $CRON_USER's crontab; the previous one saved in $backup (to put it back: crontab${as[*]:+ ${as[*]}} $backup)"
}

# Lines that are not ours to edit: only reported.
report_legacy_elsewhere() {
  local f name hits line
  for f in "$ETC/crontab" "$ETC"/cron.d/*; do
    [ -f "$f" ] || continue
    name=${f##*/}
    # cron.d: cron reads only names of letters, digits, _ and - (no .dpkg-old), and arke-dr is ours.
    if [ "$f" != "$ETC/crontab" ]; then
      if [[ ! $name =~ ^[A-Za-z0-9_-]+$ ]] || [ "$name" = arke-dr ]; then continue; fi
    fi
    hits=$(legacy_lines "$f") || true
    while IFS= read -r line; do
      [ -n "$line" ] && say "WARNING: legacy cron: $f line $line (not edited: comment it out by hand)"
    done <<<"$hits"
  done
  if [ "$(id -u)" = 0 ] && [ "$CRON_USER" != root ] && crontab -u root -l >"$tmp" 2>/dev/null; then
    hits=$(legacy_lines "$tmp") || true
    while IFS= read -r line; do
      [ -n "$line" ] && say "WARNING: legacy cron: root's crontab line $line (not edited: sudo crontab -e)"
    done <<<"$hits"
  fi
}

if [ "$CRON" = 0 ]; then
  say "legacy cron: left as it is (--no-cron: the arke-dr jobs are not installed to replace it)"
elif [ "$LEGACY_CRON" = keep ]; then
  say "legacy cron: left as it is (--keep-legacy-cron)"
elif ! command -v crontab >/dev/null; then
  say "legacy cron: no crontab command (cron is not installed): no user crontab to check"
  report_legacy_elsewhere
else
  disable_legacy_user_jobs
  report_legacy_elsewhere
fi
# --- log rotation -------------------------------------------------------------------------------
if [ "$LOGROTATE" = 1 ]; then
  command -v logrotate >/dev/null ||
    say "WARNING: logrotate is not installed (apt-get install logrotate); the rotation is installed anyway"
  group=$(id -gn "$CRON_USER")
  sed -e "s|@USER@|$CRON_USER|g" -e "s|@GROUP@|$group|g" -e "s|@LOG_DIR@|$LOGS|g" \
    "$REPO/cron/arke-dr.logrotate" >"$tmp"
  # logrotate skips files that are group- or world-writable; 0644, root-owned.
  put 0644 "$tmp" "$ETC/logrotate.d/arke-dr"
  say "log rotation: $ETC/logrotate.d/arke-dr (daily, 14 days, compressed)"
fi
# --- dr-server ----------------------------------------------------------------------------------
if [ "$SERVER" = 1 ]; then
  unit=$ETC/systemd/system/arke-dr-server.service
  sed -e "s|@USER@|$CRON_USER|g" -e "s|@GROUP@|$(id -gn "$CRON_USER")|g" -e "s|@BIN@|$PREFIX/bin|g" \
    -e "s|@CONFIG@|$CONFIG|g" "$REPO/systemd/arke-dr-server.service" >"$tmp"
  put 0644 "$tmp" "$unit"
  say "dr-server: $unit (runs $PREFIX/bin/dr-server as $CRON_USER; listens on DR_SERVER_LISTEN of $CONFIG, default 127.0.0.1:8090)"
  # Only the running system's own /etc is systemd's to load; a restart picks up new binaries.
  if [ -d /run/systemd/system ] && [ "$ETC" = /etc ] && [ "$(id -u)" = 0 ]; then
    { systemctl daemon-reload && systemctl enable arke-dr-server.service &&
      systemctl restart arke-dr-server.service; } >&2 ||
      die "dr-server did not start: systemctl status arke-dr-server; journalctl -u arke-dr-server" 5
    say "dr-server: enabled and (re)started (systemctl status arke-dr-server)"
  elif [ "$ETC" = /etc ]; then
    say "dr-server: systemd is not running here (or not as root): start it with 'systemctl daemon-reload && systemctl enable --now arke-dr-server'"
  else
    say "dr-server: the unit is not under /etc: copy it to /etc/systemd/system/, then 'systemctl daemon-reload && systemctl enable --now arke-dr-server'"
  fi
fi
say "done"
