#!/usr/bin/env bash
# scripts/test.sh - the project's test command (README "Run the tests"; CI runs exactly this).
#
# 1. installs the test IPFS node (js-ipfs 0.66.1 from the npm registry, pinned and patched; cached),
# 2. checks formatting and lints,
# 3. starts one node on a free loopback port with a temporary repo and runs the whole test suite
#    against it (IPFS_API_URL is set for the tests), then stops the node whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ipfs-node.sh install
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/ipfs-node.sh run -- cargo test --workspace --locked "$@"
