#!/usr/bin/env bash
# Checks that the fuzz targets compile. They are built with the stable toolchain (plain cargo, no
# sanitizer flags), which is enough to keep them in step with the code; README says how to run them.
set -euo pipefail
cd "$(dirname "$0")/../proto/fuzz"
# Not --locked: the fuzz crate's lock file trails the engine's dependencies, and a stale lock
# should not fail the tests; the workspace build above is --locked.
cargo build --bins
