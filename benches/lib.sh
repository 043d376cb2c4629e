# benches/lib.sh: what the load scripts (run-load.sh, run-actors.sh, run-deflate.sh) share.
# Sourced after the script has set LOGDIR, BIN, SERVER_CORE and QUIET_WAIT (and NEXT_PORT, for
# start_server); it sets the EXIT trap that stops the server and removes LOGDIR.

log() { printf '%s\n' "$*" >&2; }

# The number (or string) after "key": in a flat JSON line.
field() { sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p" <<<"$2" | tr -d '"'; }

# A value for a table cell, "–" when it is missing.
fmt() { [[ -n $1 && $1 != null ]] && printf "%s" "$1" || printf "–"; }

# The median of the numbers on stdin (the lower middle one for an even count).
median() { sort -g | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]}'; }

# A command as one would type it: binaries without their directory, the server's pid as $!.
shown() {
    local args=("${@//$BIN\//}")
    printf '%s ' "${args[@]}" | sed 's/--server-pid [0-9]*/--server-pid $!/; s/ $//'
}

# Busy CPU of the whole machine over half a second, in % of one core.
machine_busy() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
    awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN{split(a,x," "); split(b,y," ");
        t=y[2]-x[2]; printf "%.0f", (t > 0 ? (y[1]-x[1])*100*n/t : 0)}'
}

# Waits (up to QUIET_WAIT s) until nothing else keeps the machine busy; other sessions may be
# compiling on the same two cores, and a figure measured next to a compiler is not one to keep.
wait_for_quiet() {
    [[ $QUIET_WAIT -gt 0 ]] || return 0
    local until=$((SECONDS + QUIET_WAIT)) busy
    while :; do
        busy=$(machine_busy)
        [[ $busy -le 25 ]] && return 0
        if [[ $SECONDS -ge $until ]]; then
            log "   machine still ${busy}% busy after ${QUIET_WAIT} s; running anyway"
            return 0
        fi
        sleep 2
    done
}

SERVER_PID=

# Waits (up to 10 s) for the server SERVER_PID, started as NAME, to listen on port P; stops it
# and fails if it exits or does not.
wait_listening() {
    local name=$1 port=$2
    for _ in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$name did not start: $(cat "$LOGDIR/$name.log")"
            SERVER_PID=
            return 1
        fi
        if ss -Hltn "sport = :$port" | grep -q LISTEN; then
            sleep 0.2
            return 0
        fi
        sleep 0.1
    done
    log "$name is not listening on $port after 10 s"
    stop_server
    return 1
}

# start_server NAME CMD...: runs CMD --addr 127.0.0.1:PORT pinned to SERVER_CORE, on a fresh
# port per run (NEXT_PORT on), so no run meets the previous one's TIME_WAIT sockets.
start_server() {
    local name=$1
    shift
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    taskset -c "$SERVER_CORE" "$@" --addr "127.0.0.1:$PORT" >"$LOGDIR/$name.out" 2>"$LOGDIR/$name.log" &
    SERVER_PID=$!
    wait_listening "$name" "$PORT"
}

# Stops the server: SIGTERM (ringsock-echo gives close handshakes up to 5 s), SIGKILL after 10 s.
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap 'stop_server; rm -rf "$LOGDIR"' EXIT
