#!/usr/bin/env bash
# install.sh - installs arke-dr on a host: the binaries (the tools and the jobs), a configuration
# file, the data, state and log folders (owned by the cron user), the crontab and the log
# rotation (logrotate: daily, 14 days kept, compressed).
#
# Usage: scripts/install.sh [options]        (as root for the default paths)
#   --prebuilt DIR     take the binaries from DIR (e.g. dist/ from `--static` on another machine,
#                      or the Dockerfile's `binaries` stage) instead of building them
#   --static           build static (musl) binaries (needs musl-tools: apt-get install musl-tools;
#                      the Rust target is added if missing): they run on any x86_64 Linux and can be
#                      copied into a container (`docker cp`), no glibc needed
#   --prefix DIR       binaries in DIR/bin                                      (/usr/local)
#   --etc-dir DIR      DIR/arke-dr/arke-dr.env, DIR/cron.d/arke-dr and DIR/logrotate.d/arke-dr (/etc)
#   --data-dir DIR     DIR/snapshots, DIR/backups, DIR/state (run records, metrics) (/var/lib/arke-dr)
#   --log-dir DIR      the jobs' logs                                           (/var/log/arke-dr)
#   --user USER        the cron user, owner of the data and log folders         ($SUDO_USER, else ubuntu, else you)
#   --api URL          the Kubo RPC API written into the configuration          (http://127.0.0.1:5001/api/v0)
#   --pointer-path P   the index pointer's MFS path                             (/arke/index_pointer)
#   --no-cron          do not install the crontab
#   --no-logrotate     do not install the log rotation
#
# An existing configuration file is never overwritten: the new one is written beside it as
# arke-dr.env.new. Re-running the script upgrades binaries and scripts in place.
# Exit codes: 0 installed; 2 bad arguments or missing prerequisite; 4 a file could not be written.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINS=(build-snapshot export-car restore-from-car verify-snapshot verify-car prune-snapshots
  fetch-archive daily-backup weekly-verify hourly-snapshot dr-status)

PREBUILT='' STATIC=0 PREFIX=/usr/local ETC=/etc DATA=/var/lib/arke-dr LOGS=/var/log/arke-dr
API=http://127.0.0.1:5001/api/v0 POINTER=/arke/index_pointer CRON=1 LOGROTATE=1
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
    --no-logrotate) LOGROTATE=0 ;;
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
# Incremental archives: a full archive every FULL_EVERY_DAYS days, incrementals between
# (INCREMENTAL=0: a full archive every night).
INCREMENTAL=1
FULL_EVERY_DAYS=7
# Local retention (chains are kept whole) and snapshot pruning.
KEEP_ARCHIVES=3
SNAPSHOT_KEEP_LAST=48
SNAPSHOT_GC=1
# dr-status's thresholds (the jobs' metrics refresh uses them too; defaults shown).
# ALERT_ARCHIVE_AGE_HOURS=26
# ALERT_SNAPSHOT_AGE_HOURS=2
# ALERT_LOCK_MINUTES=30
# ALERT_DISK_WARN_PERCENT=80
# ALERT_DISK_CRIT_PERCENT=95
CONF
mkdir -p "$ETC/arke-dr" || die "cannot create $ETC/arke-dr" 4
if [ -e "$CONFIG" ]; then
  put 0644 "$tmp" "$CONFIG.new"
  say "kept the existing $CONFIG; the new defaults are in $CONFIG.new"
else
  put 0644 "$tmp" "$CONFIG"
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
say "done"
