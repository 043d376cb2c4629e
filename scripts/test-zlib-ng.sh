#!/usr/bin/env bash
# test-zlib-ng.sh: the tests that the `zlib-ng` feature changes, built with it. The feature
# swaps permessage-deflate's compressor from zlib-rs to zlib-ng's C one (and flate2's backend
# with it), so what runs is: every unit test whose path says `deflate` (the deflate module's),
# and the whole of each integration test target named for deflate or interop (the property
# tests, fan-out compression, and the peers that inflate what ringsock compressed: Python's
# websockets and Chromium). Not the whole suite again: it would rebuild and rerun every test
# binary (about 5 more minutes of CI) for code the feature does not touch.
#
# With the workspace selected, as the main `cargo test --workspace`: cargo then resolves every
# dependency's features as it did there and rebuilds only flate2, libz-ng-sys (cmake, from
# scripts/setup.sh) and the workspace's own crates.
set -euo pipefail
cd "$(dirname "$0")/.."

# The package that owns permessage-deflate and the `zlib-ng` feature.
PKG=ringsock-engine
args=(--workspace --features "$PKG/zlib-ng" --locked)

# Test targets named for deflate or interop, across the workspace, as cargo reads them.
mapfile -t targets < <(
    cargo metadata --no-deps --format-version 1 | python3 -c '
import json, re, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "test" in target["kind"] and re.search("deflate|interop", target["name"]):
            print(target["name"])'
)
target_args=()
for t in "${targets[@]}"; do
    target_args+=(--test "$t")
done
echo "test-zlib-ng.sh: cargo test ${args[*]}: unit tests matching 'deflate'; test targets: ${targets[*]:-none by name}"

# Build first, and check that zlib-ng is what got linked (its symbols are zng_-prefixed), so
# that a feature that stopped meaning zlib-ng cannot pass as tested.
mapfile -t exes < <(
    cargo test "${args[@]}" --lib "${target_args[@]}" --no-run --message-format=json |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'
)
linked=0
for exe in "${exes[@]}"; do
    # grep reads all of nm's output (no -q): an early exit would kill nm with SIGPIPE, and
    # pipefail would count a found symbol as missing.
    if nm "$exe" 2>/dev/null | grep ' zng_deflate' >/dev/null; then
        linked=1
        break
    fi
done
if [[ $linked -ne 1 ]]; then
    echo "test-zlib-ng.sh: no test binary built with --features $PKG/zlib-ng holds zlib-ng" >&2
    exit 1
fi

cargo test "${args[@]}" --lib -- deflate
if [[ ${#targets[@]} -gt 0 ]]; then
    cargo test "${args[@]}" "${target_args[@]}"
else
    # No target is named for them (the tests may live as modules of one binary per crate):
    # then their paths say deflate or interop.
    cargo test "${args[@]}" --tests -- deflate interop
fi
