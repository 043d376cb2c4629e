#!/usr/bin/env bash
# The project's test command: what CI runs and what a new user runs on a fresh Debian machine.
# It installs what the tests need (idempotently), then checks formatting, lints and runs every
# test, in this order:
#   1. cargo fmt, clippy, cargo test (the workspace), the deflate tests again with the `zlib-ng`
#      feature (scripts/test-zlib-ng.sh), the fuzz targets' build (scripts/fuzz-build.sh), and
#      the release build of the Autobahn testees; one after another, each using both cores.
#      wstest's install (autobahn/install.sh: downloads, little CPU) runs beside them.
#   2. Side by side, each suite's output kept apart and shown as one block when it ends:
#      Autobahn|Testsuite with ringsock as server (every case, io_uring) and as client (every
#      case), Autobahn's groups 1-10 against the server on the epoll backend, and each fuzz
#      target for a short run after replaying its seeds (scripts/fuzz-run.sh, at low priority:
#      its runs are bounded in time, so it takes only the CPU the others leave).
# Any failure fails the run; the verdicts come last.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

logs=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    rm -rf "$logs"
}
trap cleanup EXIT

# Autobahn's wstest, fetched while the builds run; waited for before its suites.
bash autobahn/install.sh >"$logs/install" 2>&1 &
install_pid=$!
pids+=("$install_pid")

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee "$logs/test"

echo "== cargo test with the zlib-ng feature: the deflate unit, property and interop tests"
bash scripts/test-zlib-ng.sh 2>&1 | tee "$logs/zlib-ng"

echo "== fuzz targets build (coverage-instrumented, stable toolchain)"
bash scripts/fuzz-build.sh

echo "== Autobahn|Testsuite: wstest install, testees' release build"
install_status=0
wait "$install_pid" || install_status=$?
pids=()
cat "$logs/install"
if [[ $install_status -ne 0 ]]; then
    echo "autobahn/install.sh failed (exit $install_status)" >&2
    exit 1
fi
cargo build --release --locked -q -p ringsock-tools --bin ringsock-echo --bin ringsock-autobahn-client

# Each Autobahn run is one single-threaded wstest (Python 2.7) doing most of the work, so on two
# cores the server and client suites run side by side in about the time of one (measured: 8-9
# min together against 12 + 9 min one after the other; autobahn/results.md). The epoll run
# (about a minute) and the fuzz runs (a couple of minutes) fit beside them.
echo "== side by side: Autobahn server (io_uring) and client, every case; Autobahn server on epoll, groups 1-10; fuzzing"
declare -A name_of started status_of
start_suite() {
    local name=$1
    shift
    "$@" >"$logs/$name" 2>&1 &
    name_of[$!]=$name
    started[$name]=$(date +%s)
    pids+=("$!")
}
start_suite autobahn-server env NO_BUILD=1 bash autobahn/server.sh
start_suite autobahn-client env NO_BUILD=1 bash autobahn/client.sh
start_suite autobahn-epoll env NO_BUILD=1 BACKEND=epoll \
    CASES='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*"]' bash autobahn/server.sh
start_suite fuzz env NO_BUILD=1 nice -n 10 bash scripts/fuzz-run.sh
running=("${!name_of[@]}")
while [[ ${#running[@]} -gt 0 ]]; do
    ended=
    status=0
    wait -n -p ended "${running[@]}" || status=$?
    name=${name_of[$ended]}
    status_of[$name]=$status
    echo "== $name: exit $status after $(($(date +%s) - started[$name]))s"
    cat "$logs/$name"
    left=()
    for pid in "${running[@]}"; do
        [[ $pid == "$ended" ]] || left+=("$pid")
    done
    running=("${left[@]}")
done
pids=()

# The verdicts. First one closing line over every test binary of the main run (cargo prints one
# per binary, the last often a doc-test run with nothing in it).
count() { awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed", p, f }' "$1"; }
echo "tests: $(count "$logs/test")"
echo "zlib-ng: PASS ($(count "$logs/zlib-ng") with --features zlib-ng: deflate unit, property and interop tests)"
verdict() { if [[ $1 -eq 0 ]]; then echo PASS; else echo "FAIL (exit $1)"; fi; }
fuzz_line=$(grep '^fuzz: \(PASS\|FAIL\)' "$logs/fuzz" | tail -1 || true)
echo "${fuzz_line:-fuzz: $(verdict "${status_of[fuzz]}")}"
echo "autobahn: server $(verdict "${status_of[autobahn-server]}"), client $(verdict "${status_of[autobahn-client]}")," \
    "server on epoll (groups 1-10) $(verdict "${status_of[autobahn-epoll]}") (reports in autobahn/reports/)"
for name in "${!status_of[@]}"; do
    if [[ ${status_of[$name]} -ne 0 ]]; then
        exit 1
    fi
done
