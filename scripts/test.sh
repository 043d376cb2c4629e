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
cargo test --workspace --locked

echo "== fuzz targets build"
bash scripts/fuzz-build.sh
