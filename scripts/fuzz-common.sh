# Sourced by scripts/fuzz-build.sh and scripts/fuzz-run.sh: where the fuzz crate is, how its
# targets are built on the stable toolchain, and which targets it has.
#
# FUZZ_DIR: the cargo-fuzz crate. Default: the one */fuzz/Cargo.toml under the repository that
# says `cargo-fuzz = true` (proto/fuzz today), so the scripts follow the crate if it moves.

FUZZ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${FUZZ_DIR:-} ]]; then
    for manifest in "$FUZZ_ROOT"/*/fuzz/Cargo.toml; do
        if grep -q '^cargo-fuzz *= *true' "$manifest" 2>/dev/null; then
            FUZZ_DIR=$(dirname "$manifest")
            break
        fi
    done
fi
if [[ -z ${FUZZ_DIR:-} || ! -f $FUZZ_DIR/Cargo.toml ]]; then
    echo "fuzz: no cargo-fuzz crate (*/fuzz/Cargo.toml with cargo-fuzz = true); set FUZZ_DIR" >&2
    exit 2
fi

# What cargo-fuzz passes to rustc, less what needs a nightly compiler (-Zsanitizer=address): the
# SanitizerCoverage pass and its options are stable codegen flags, and with them libFuzzer (which
# libfuzzer-sys compiles and links) is coverage-guided. Without them a build of the same targets
# still runs but fuzzes blind: libFuzzer sees no coverage ("no interesting inputs were found so
# far. Is the code instrumented for coverage?") and keeps one empty input. Release with debug
# assertions and overflow checks, as cargo-fuzz builds by default.
FUZZ_RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"

# An explicit --target, as cargo-fuzz gives: RUSTFLAGS then reach only the target's crates, not
# build scripts and proc macros (which would not link without libFuzzer's coverage callbacks).
FUZZ_HOST=$(rustc -vV | sed -n 's/^host: //p')
FUZZ_BIN_DIR=$FUZZ_DIR/target/$FUZZ_HOST/release

# The fuzz targets: the crate's binaries ([[bin]] entries), from cargo's own reading of its
# manifest, one name a line.
fuzz_targets() {
    cargo metadata --manifest-path "$FUZZ_DIR/Cargo.toml" --no-deps --format-version 1 |
        python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "bin" in target["kind"]:
            print(target["name"])'
}
