#!/usr/bin/env bash
# The project's test command: what CI runs and what a new user runs on a fresh Debian machine.
# It installs what the tests need (idempotently), then checks formatting, lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== fuzz targets build"
bash scripts/fuzz-build.sh

# One closing line over every test binary (cargo prints one per binary, the last often a doc-test
# run with nothing in it).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
