#!/usr/bin/env bash
# Builds the fuzz targets with the stable toolchain and plain cargo: coverage-instrumented
# libFuzzer programs (scripts/fuzz-common.sh says which flags and why), release with debug
# assertions, in <fuzz crate>/target/<host>/release/. scripts/fuzz-run.sh runs them; the build
# alone also keeps the targets in step with the code.
set -euo pipefail
# shellcheck source=scripts/fuzz-common.sh
source "$(dirname "$0")/fuzz-common.sh"
cd "$FUZZ_DIR"
# Not --locked: the fuzz crate's lock file trails the engine's dependencies, and a stale lock
# should not fail the tests; the workspace build is --locked.
RUSTFLAGS=$FUZZ_RUSTFLAGS cargo build --release --bins --target "$FUZZ_HOST"
