#!/usr/bin/env bash
# profile-load.sh: where a server's time goes under one load scenario of run-load.sh.
#
#   benches/profile-load.sh SERVER SCENARIO [perf|dwarf|syscalls]
#     SERVER    ringsock-uring | ringsock-epoll | tungstenite | fastwebsockets | tcp
#     SCENARIO  A | B | C (the same ws-load arguments as run-load.sh)
#     perf      (default) perf record -e cpu-clock -g on the server: kernel call chains
#     dwarf     the same with --call-graph dwarf: user-space call chains too (larger files)
#     syscalls  perf stat of the server's syscalls and page faults, per 1000 echoed messages
#
# Same pinning as run-load.sh (server on core 0, ws-load on core 1). ws-load runs 1 s warm-up
# + 6 s; the server is sampled for 4 s in the middle. Output goes to $OUTDIR (default
# /tmp/ringsock-profile); read a profile with e.g.
#   perf report -i /tmp/ringsock-profile/B-ringsock-uring.data --no-children --stdio
# Hardware counters are not available on every VM, so only cpu-clock and tracepoints are used.
set -euo pipefail

cd "$(dirname "$0")/.."
SERVER=${1:?usage: profile-load.sh SERVER SCENARIO [perf|dwarf|syscalls]}
SCENARIO=${2:?usage: profile-load.sh SERVER SCENARIO [perf|dwarf|syscalls]}
MODE=${3:-perf}
BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/release
OUTDIR=${OUTDIR:-/tmp/ringsock-profile}
PORT=${PORT:-9191}
mkdir -p "$OUTDIR"

case $SERVER in
ringsock-uring) CMD=("$BIN/ringsock-echo" --shards 1 --backend io_uring) ;;
ringsock-epoll) CMD=("$BIN/ringsock-echo" --shards 1 --backend epoll) ;;
tungstenite) CMD=("$BIN/tungstenite-echo") ;;
fastwebsockets) CMD=("$BIN/fastwebsockets-echo") ;;
tcp) CMD=("$BIN/tcp-echo") ;;
*) echo "unknown server $SERVER" >&2 && exit 2 ;;
esac
case $SCENARIO in
A) ARGS=(--conns 100 --size 16 --depth 16) ;;
B) ARGS=(--conns 100 --size 16384 --depth 4 --binary) ;;
C) ARGS=(--conns 10 --size 1048576 --depth 1 --binary) ;;
*) echo "unknown scenario $SCENARIO" >&2 && exit 2 ;;
esac
[[ $SERVER == tcp ]] && ARGS+=(--raw)

NAME=$SCENARIO-$SERVER
taskset -c 0 "${CMD[@]}" --addr "127.0.0.1:$PORT" 2>"$OUTDIR/$NAME.server.log" &
SP=$!
trap 'kill -TERM $SP 2>/dev/null || true; wait $SP 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    ss -Hltn "sport = :$PORT" | grep -q LISTEN && break
    sleep 0.1
done
timeout 40 taskset -c 1 "$BIN/ws-load" --addr "127.0.0.1:$PORT" "${ARGS[@]}" --warmup 1 \
    --duration 6 --server-pid "$SP" >"$OUTDIR/$NAME.json" 2>"$OUTDIR/$NAME.load.log" &
LP=$!
sleep 2
case $MODE in
perf | dwarf)
    CG=(-g)
    [[ $MODE == dwarf ]] && CG=(--call-graph dwarf,16384)
    perf record -q -e cpu-clock "${CG[@]}" -p "$SP" -o "$OUTDIR/$NAME.data" -- sleep 4 \
        >/dev/null 2>&1
    ;;
syscalls)
    EVENTS=page-faults
    for sc in sendmsg sendto writev write read recvfrom recvmsg epoll_wait epoll_ctl \
        io_uring_enter mmap munmap madvise brk; do
        EVENTS+=",syscalls:sys_enter_$sc"
    done
    perf stat -x, -e "$EVENTS" -p "$SP" -o "$OUTDIR/$NAME.stat" -- sleep 4 >/dev/null 2>&1
    ;;
*) echo "unknown mode $MODE" >&2 && exit 2 ;;
esac
wait "$LP" || true
grep -v "connections open" "$OUTDIR/$NAME.load.log" >&2 || true
if [[ $MODE == syscalls ]]; then
    MSGS=$(sed -n 's/.*"msgs_per_s":\([0-9]*\).*/\1/p' "$OUTDIR/$NAME.json")
    echo "$NAME: per 1000 echoed messages ($MSGS msgs/s):"
    awk -F, -v m="$MSGS" '$1 ~ /^[0-9]+$/ && $1 > 0 && m > 0 {
        printf "  %-36s %10.1f\n", $3, $1 / (m * 4) * 1000 }' "$OUTDIR/$NAME.stat"
else
    perf report -i "$OUTDIR/$NAME.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -25
    echo "full profile: $OUTDIR/$NAME.data"
fi
