#!/usr/bin/env bash
# server.sh: Autobahn|Testsuite against ringsock as a server. Builds ringsock-echo (release),
# starts it on 127.0.0.1 (a port the kernel picks), runs every case of wstest's fuzzingclient
# against it, writes autobahn/reports/server/ (server-BACKEND/ when BACKEND is set), stops the
# server and exits with the verdict of autobahn/summary.py (0: every case and every close OK or
# INFORMATIONAL).
#
# Needs autobahn/install.sh first. Environment: AUTOBAHN_TIMEOUT (seconds for the whole wstest
# run, default 2400), CASES (a JSON list of case patterns, default ["*"]), SHARDS (the echo
# server's shard threads, default one per core), BACKEND (the echo server's --backend: io_uring
# or epoll; default its own choice, io_uring where the kernel has it), NO_BUILD=1 (use the
# binary already built).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd .. && pwd)
WSTEST=$HERE/.cache/wstest
TIMEOUT=${AUTOBAHN_TIMEOUT:-2400}
CASES=${CASES:-'["*"]'}
BACKEND=${BACKEND:-}
# A run on a chosen backend keeps its own reports and agent name, so that it can run beside the
# default one without either overwriting the other's.
REPORTS=$HERE/reports/server${BACKEND:+-$BACKEND}
AGENT=ringsock${BACKEND:+-$BACKEND}

if [[ ! -x $WSTEST ]]; then
    echo "autobahn/server.sh: wstest is not installed; run bash autobahn/install.sh" >&2
    exit 2
fi

if [[ ${NO_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked -q -p ringsock-tools --bin ringsock-echo)
fi
ECHO_BIN=$ROOT/target/release/ringsock-echo

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the server reports the port it got, so two runs (or another program) never collide.
echo_args=()
[[ -n ${SHARDS:-} ]] && echo_args+=(--shards "$SHARDS")
[[ -n $BACKEND ]] && echo_args+=(--backend "$BACKEND")
"$ECHO_BIN" --addr 127.0.0.1:0 "${echo_args[@]}" 2>"$work/echo.log" &
server_pid=$!
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$work/echo.log")
    [[ -n $addr ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $addr ]]; then
    echo "autobahn/server.sh: ringsock-echo did not start:" >&2
    cat "$work/echo.log" >&2
    exit 2
fi
echo "autobahn/server.sh: $(head -1 "$work/echo.log")"

rm -rf "$REPORTS"
mkdir -p "$REPORTS"
cat >"$work/fuzzingclient.json" <<EOF
{
    "outdir": "$REPORTS",
    "servers": [{"agent": "$AGENT", "url": "ws://$addr"}],
    "cases": $CASES,
    "exclude-cases": [],
    "exclude-agent-cases": {}
}
EOF

echo "autobahn/server.sh: wstest -m fuzzingclient against ws://$addr (timeout ${TIMEOUT}s)"
start=$(date +%s)
status=0
(cd "$work" && timeout --kill-after=10 "$TIMEOUT" "$WSTEST" -m fuzzingclient \
    -s "$work/fuzzingclient.json" >"$work/wstest.log" 2>&1) || status=$?
elapsed=$(($(date +%s) - start))
if [[ $status -ne 0 ]]; then
    echo "autobahn/server.sh: wstest exited with $status after ${elapsed}s (124: timed out); its log ends:" >&2
    tail -20 "$work/wstest.log" >&2
fi
cp "$work/wstest.log" "$REPORTS/wstest.log"

# The server's CPU time (fields 14 and 15 of /proc/PID/stat, in clock ticks), against the wall
# time: it shows how much of the run was ringsock's and how much wstest's.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' \
    "/proc/$server_pid/stat" 2>/dev/null || echo "?")
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=
cp "$work/echo.log" "$REPORTS/ringsock-echo.log"

echo "autobahn/server.sh: wstest ran ${elapsed}s; ringsock-echo used ${cpu}s of CPU"
verdict=0
python3 "$HERE/summary.py" "$REPORTS" --title "server (ringsock-echo${BACKEND:+ --backend $BACKEND}), ${elapsed}s wall" || verdict=$?
if [[ $status -ne 0 && $verdict -eq 0 ]]; then
    verdict=1
fi
exit "$verdict"
