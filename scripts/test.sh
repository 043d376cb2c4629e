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

# Autobahn|Testsuite, every case, ringsock as server (ringsock-echo) and as client
# (ringsock-autobahn-client). Each run is one single-threaded wstest (Python 2.7) doing most of
# the work, so on two cores the two suites run side by side in about the time of one (measured:
# 8-9 min together against 12 + 9 min one after the other; autobahn/results.md). Their output
# is shown one after the other; each script bounds its own run and exits with its verdict.
echo "== Autobahn|Testsuite (server and client suites in parallel)"
bash autobahn/install.sh
cargo build --release --locked -q -p ringsock-tools --bin ringsock-echo --bin ringsock-autobahn-client
ab=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$ab"' EXIT
NO_BUILD=1 bash autobahn/server.sh >"$ab/server" 2>&1 &
server_pid=$!
NO_BUILD=1 bash autobahn/client.sh >"$ab/client" 2>&1 &
client_pid=$!
server_status=0
wait "$server_pid" || server_status=$?
client_status=0
wait "$client_pid" || client_status=$?
cat "$ab/server" "$ab/client"

# One closing line over every test binary (cargo prints one per binary, the last often a doc-test
# run with nothing in it), then the Autobahn verdicts.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
verdict() { if [[ $1 -eq 0 ]]; then echo PASS; else echo "FAIL (exit $1)"; fi; }
echo "autobahn: server $(verdict "$server_status"), client $(verdict "$client_status") (reports in autobahn/reports/)"
if [[ $server_status -ne 0 || $client_status -ne 0 ]]; then
    exit 1
fi
