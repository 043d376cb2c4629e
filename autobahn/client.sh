#!/usr/bin/env bash
# client.sh: Autobahn|Testsuite against ringsock as a client. Builds ringsock-autobahn-client
# (release), starts `wstest -m fuzzingserver` on 127.0.0.1 (a free port; its web page is off),
# runs every case with the client, writes autobahn/reports/client/, stops wstest and exits with
# the verdict of autobahn/summary.py (0: every case and every close OK or INFORMATIONAL).
#
# Needs autobahn/install.sh first. Environment: AUTOBAHN_TIMEOUT (seconds for the whole client
# run, default 2400), CASES (a JSON list of case patterns, default ["*"]), DEFLATE (the client's
# --deflate: takeover, default or off; default takeover), NO_BUILD=1 (use the binary already
# built).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd .. && pwd)
WSTEST=$HERE/.cache/wstest
REPORTS=$HERE/reports/client
TIMEOUT=${AUTOBAHN_TIMEOUT:-2400}
CASES=${CASES:-'["*"]'}
DEFLATE=${DEFLATE:-takeover}
AGENT=ringsock

if [[ ! -x $WSTEST ]]; then
    echo "autobahn/client.sh: wstest is not installed; run bash autobahn/install.sh" >&2
    exit 2
fi

if [[ ${NO_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked -q -p ringsock-tools \
        --bin ringsock-autobahn-client)
fi
CLIENT_BIN=$ROOT/target/release/ringsock-autobahn-client

work=$(mktemp -d)
wstest_pid=
cleanup() {
    if [[ -n $wstest_pid ]] && kill -0 "$wstest_pid" 2>/dev/null; then
        kill -TERM "$wstest_pid" 2>/dev/null || true
        wait "$wstest_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# wstest takes its port from the spec and cannot report one it was given 0 for: ask the kernel
# for a free one first (the window until wstest binds it is short, and a collision shows as
# wstest not starting).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

rm -rf "$REPORTS"
mkdir -p "$REPORTS"
cat >"$work/fuzzingserver.json" <<EOF
{
    "url": "ws://127.0.0.1:$port",
    "outdir": "$REPORTS",
    "cases": $CASES,
    "exclude-cases": [],
    "exclude-agent-cases": {}
}
EOF

# -u 0: no web page on 8080. PYTHONPATH=loopback: wstest's listener binds 127.0.0.1 only
# (loopback/sitecustomize.py; autobahn's listenWS would bind every interface).
(cd "$work" && PYTHONPATH=$HERE/loopback PYTHONDONTWRITEBYTECODE=1 exec "$WSTEST" -m fuzzingserver -u 0 \
    -s "$work/fuzzingserver.json" >"$work/wstest.log" 2>&1) &
wstest_pid=$!
ready=
for _ in $(seq 150); do
    if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 1).close()" \
        2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$wstest_pid" 2>/dev/null || break
    sleep 0.2
done
if [[ -z $ready ]]; then
    echo "autobahn/client.sh: wstest -m fuzzingserver did not start on port $port:" >&2
    cat "$work/wstest.log" >&2
    exit 2
fi

echo "autobahn/client.sh: ringsock-autobahn-client (--deflate $DEFLATE) against ws://127.0.0.1:$port (timeout ${TIMEOUT}s)"
start=$(date +%s)
status=0
timeout --kill-after=10 "$TIMEOUT" "$CLIENT_BIN" --url "ws://127.0.0.1:$port" --agent "$AGENT" \
    --deflate "$DEFLATE" 2>&1 | tee "$work/client.log" || status=${PIPESTATUS[0]}
elapsed=$(($(date +%s) - start))
if [[ $status -ne 0 ]]; then
    echo "autobahn/client.sh: the client exited with $status after ${elapsed}s (124: timed out)" >&2
fi

kill -TERM "$wstest_pid" 2>/dev/null || true
wait "$wstest_pid" 2>/dev/null || true
wstest_pid=
cp "$work/wstest.log" "$REPORTS/wstest.log"
cp "$work/client.log" "$REPORTS/client.log"

echo "autobahn/client.sh: the client ran ${elapsed}s"
verdict=0
python3 "$HERE/summary.py" "$REPORTS" --title "client (ringsock-autobahn-client), ${elapsed}s wall" ||
    verdict=$?
if [[ $status -ne 0 && $verdict -eq 0 ]]; then
    verdict=1
fi
exit "$verdict"
