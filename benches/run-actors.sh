#!/usr/bin/env bash
# run-actors.sh: the actors layer's two figures.
#
#   F  fan-out: one shard, SUBSCRIBERS subscribers on loopback, SIZE-byte messages published
#      with Running::publish; deliveries per second as the subscribers read them (the load
#      generator's fanout mode), once per burst size in BURSTS.
#   M  memory: server VmRSS growth per idle WebSocket, the actors server (handler state: one u64)
#      against the engine-only ringsock-echo, measured the same way (the generator's idle mode).
#
#   benches/run-actors.sh                        # both, defaults below
#   SCENARIOS=F BURSTS="100 1000" ROUNDS=3 benches/run-actors.sh
#
# Environment (all optional):
#   SCENARIOS     any of F M (default "F M")
#   LOADGEN       the client side: ws-load or ringsock-load (ringsock's own client, a ClientPool
#                 on LOAD_SHARDS shards, default 1). Unset: ws-load in F, where each delivery
#                 costs ringsock-load a handler call (about 35 ns: 28 M deliveries/s on its
#                 core, below what the server pushes in bursts of 100 and more), ringsock-load
#                 in M, where the two measure the same (benches/results/loadgen.md)
#   BACKENDS      reactor backends to run: io_uring epoll (default io_uring)
#   ROUNDS        runs per configuration, interleaved; the median is reported (default 1)
#   QUIET_WAIT    before each run, wait up to this many seconds for the machine to fall under 25%
#                 of a core (default 0)
#   SERVER_CORE / LOAD_CORE   cores the server and the generator are pinned to (default 0 / 1)
#   F: SUBSCRIBERS (10000), SIZE (16), DURATION (5), WARMUP (1),
#      BURSTS        messages the publisher publishes back to back; the shard's mailbox holds as
#                    many, so one loop turn writes about one burst to each subscriber
#                    (default "10 100 1000")
#      RATE          messages per second (default 0: flat out, retrying when the mailbox is full)
#      HIGH_WATER    bytes past which a subscriber is skipped (default 1048576, the server's
#                    default); the `dropped` column must stay 0 for every delivery to be real
#   M: IDLE_CONNS (10000), HOLD (2),
#   PERF_DIR      F only: perf record -e cpu-clock -g the server over the measured window (its
#                 middle DURATION-2 s) into PERF_DIR/F-BACKEND-BURST-rROUND.data, and summarise
#                 each profile in the report (default: no profiling)
#   OUT           also write the markdown report to this file (default: stdout only)
#   NO_BUILD=1    use the release binaries already built
#
# Every run is bounded: the generator stops by itself after WARMUP + DURATION (or HOLD) plus a few
# seconds of closing, and `timeout` kills it if it does not; servers get SIGTERM, then SIGKILL.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SCENARIOS=${SCENARIOS:-F M}
LOADGEN=${LOADGEN:-}
LOAD_SHARDS=${LOAD_SHARDS:-1}
[[ -z $LOADGEN || $LOADGEN == ws-load || $LOADGEN == ringsock-load ]] || { echo "unknown LOADGEN $LOADGEN" >&2; exit 2; }
GEN_F=${LOADGEN:-ws-load}
GEN_M=${LOADGEN:-ringsock-load}
BACKENDS=${BACKENDS:-io_uring}
ROUNDS=${ROUNDS:-1}
QUIET_WAIT=${QUIET_WAIT:-0}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
SIZE=${SIZE:-16}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
BURSTS=${BURSTS:-10 100 1000}
RATE=${RATE:-0}
HIGH_WATER=${HIGH_WATER:-1048576}
IDLE_CONNS=${IDLE_CONNS:-10000}
HOLD=${HOLD:-2}
OUT=${OUT:--}
LOGDIR=$(mktemp -d -t ringsock-actors.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release --locked -p ringsock-tools -p ringsock-benches --bins >&2
fi

HARD=$(ulimit -Hn)
WANT=30000
if [[ $HARD != unlimited && $HARD -lt $WANT ]]; then
    WANT=$HARD
fi
ulimit -n "$WANT"
NOFILE=$(ulimit -n)
MAXCONNS=$((SUBSCRIBERS > IDLE_CONNS ? SUBSCRIBERS : IDLE_CONNS))
if [[ $NOFILE -lt $((MAXCONNS + 100)) ]]; then
    log "warning: open-file limit $NOFILE is below the $MAXCONNS connections asked for"
fi

# Spread connections over several source addresses when one would use most ephemeral ports.
read -r PLO PHI </proc/sys/net/ipv4/ip_local_port_range
SRC_ARGS=()
NSRC=$(((MAXCONNS * 10 / 8 + PHI - PLO) / (PHI - PLO + 1)))
if [[ $NSRC -gt 1 ]]; then
    SRC_ARGS=(--src "$(seq -s, -f '127.0.0.%g' 1 "$NSRC")")
fi

# A fresh port per run, so no run meets the previous one's TIME_WAIT sockets.
NEXT_PORT=9700

# The JSON array after "key": in a flat JSON line, without brackets.
array() { sed -n "s/.*\"$1\":\\[\\([^]]*\\)\\].*/\\1/p" <<<"$2"; }

declare -A RESULT SERVER_RESULT
COMMANDS=()

# fanout_one BACKEND BURST: one fan-out run; the generator's and the server's JSON lines are kept.
fanout_one() {
    local be=$1 burst=$2 key="F,$1,$2,$ROUND"
    local srv=("$BIN/ringsock-fanout" --backend "$be" --burst "$burst" --mailbox "$burst"
        --rate "$RATE" --high-water "$HIGH_WATER" --subscribers "$SUBSCRIBERS" --size "$SIZE")
    wait_for_quiet
    start_server fanout "${srv[@]}" || return 0
    local cmd
    if [[ $GEN_F == ws-load ]]; then
        cmd=(taskset -c "$LOAD_CORE" "$BIN/ws-load" --addr "127.0.0.1:$PORT" --fanout "$SUBSCRIBERS")
    else
        cmd=(taskset -c "$LOAD_CORE" "$BIN/ringsock-load" fanout --addr "127.0.0.1:$PORT"
            --conns "$SUBSCRIBERS" --shards "$LOAD_SHARDS" --json --quiet)
    fi
    cmd+=(--size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" "${SRC_ARGS[@]}"
        --server-pid "$SERVER_PID" --label "F/$be/burst=$burst")
    [[ $ROUND -eq 1 ]] && COMMANDS+=("$(shown taskset -c "$SERVER_CORE" "${srv[@]}" --addr "127.0.0.1:$PORT") & $(shown "${cmd[@]}")")
    log "== F $be burst $burst (round $ROUND of $ROUNDS)"
    local out
    if [[ -n ${PERF_DIR:-} ]]; then
        mkdir -p "$PERF_DIR"
        timeout $((WARMUP + DURATION + 90)) "${cmd[@]}" >"$LOGDIR/load.out" 2>"$LOGDIR/load.err" &
        local lp=$!
        for _ in $(seq 600); do
            grep -q "connections open" "$LOGDIR/load.err" && break
            sleep 0.1
        done
        sleep $((WARMUP + 1))
        perf record -q -e cpu-clock -g -p "$SERVER_PID" -o "$PERF_DIR/F-$be-$burst-r$ROUND.data" \
            -- sleep $((DURATION > 3 ? DURATION - 2 : 1)) >/dev/null 2>&1 || log "   perf record failed"
        wait "$lp" || true
        out=$(cat "$LOGDIR/load.out")
    else
        out=$(timeout $((WARMUP + DURATION + 90)) "${cmd[@]}" 2>"$LOGDIR/load.err") || true
    fi
    sed 's/^/   /' "$LOGDIR/load.err" >&2
    stop_server
    local server_line
    server_line=$(tail -n1 "$LOGDIR/fanout.out")
    log "   server: $server_line"
    [[ -n $out ]] && RESULT[$key]=$out
    SERVER_RESULT[$key]=$server_line
}

# idle_one BACKEND SERVER: one idle-memory run.
idle_one() {
    local be=$1 name=$2 key="M,$1,$2,$ROUND" srv
    case $name in
    actors) srv=("$BIN/ringsock-fanout" --idle --backend "$be") ;;
    echo) srv=("$BIN/ringsock-echo" --shards 1 --backend "$be") ;;
    esac
    wait_for_quiet
    start_server "$name" "${srv[@]}" || return 0
    local cmd
    if [[ $GEN_M == ws-load ]]; then
        cmd=(taskset -c "$LOAD_CORE" "$BIN/ws-load" --addr "127.0.0.1:$PORT" --idle "$IDLE_CONNS")
    else
        cmd=(taskset -c "$LOAD_CORE" "$BIN/ringsock-load" idle --addr "127.0.0.1:$PORT"
            --conns "$IDLE_CONNS" --shards "$LOAD_SHARDS" --json --quiet)
    fi
    cmd+=(--hold "$HOLD" "${SRC_ARGS[@]}" --server-pid "$SERVER_PID" --label "M/$be/$name")
    [[ $ROUND -eq 1 ]] && COMMANDS+=("$(shown taskset -c "$SERVER_CORE" "${srv[@]}" --addr "127.0.0.1:$PORT") & $(shown "${cmd[@]}")")
    log "== M $be $name (round $ROUND of $ROUNDS)"
    local out
    out=$(timeout $((HOLD + 90)) "${cmd[@]}" 2>"$LOGDIR/load.err") || true
    sed 's/^/   /' "$LOGDIR/load.err" >&2
    stop_server
    [[ -n $out ]] && RESULT[$key]=$out
}

# One line on where a profile's samples went: kernel and user shares, then the top symbols.
perf_summary() {
    perf report -i "$1" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' |
        awk '{p=$1; sub("%","",p); if ($2=="[k]") k+=p; else u+=p;
              if (n < 10) { sym=$3; for (i=4; i<=NF && $i!="-"; i++) sym=sym" "$i;
                            sub(/^.*::/, "", sym); top=top sprintf("%s`%s` %.1f%%", (n?", ":""), sym, p); n++ } }
             END{printf "kernel %.0f%%, user %.0f%%; top: %s", k, u, top}'
}

# The round whose METRIC is the median (the lower middle one for an even count) of PREFIX,r.
median_round() {
    local prefix=$1 m=$2 r lines=()
    for ((r = 1; r <= ROUNDS; r++)); do
        local v=${RESULT[$prefix,$r]:-}
        [[ -n $v ]] && lines+=("$(field "$m" "$v") $r")
    done
    [[ ${#lines[@]} -gt 0 ]] || return 0
    printf '%s\n' "${lines[@]}" | sort -g | awk '{a[NR]=$2} END{print a[int((NR+1)/2)]}'
}

for sc in $SCENARIOS; do
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        for be in $BACKENDS; do
            if [[ $sc == F ]]; then
                for burst in $BURSTS; do
                    fanout_one "$be" "$burst"
                done
            else
                idle_one "$be" echo
                idle_one "$be" actors
            fi
        done
    done
done

# ---- the report -------------------------------------------------------------------------------
millions() { [[ -n $1 ]] && awk -v v="$1" 'BEGIN{printf "%.1f M", v/1e6}' || printf "–"; }

report() {
    local commit dirty
    commit=$(git rev-parse --short HEAD)
    dirty=$(git diff --quiet HEAD -- . 2>/dev/null || echo " (+ uncommitted changes)")
    echo "# ringsock actors: fan-out and idle memory"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- commit: \`$commit\`$dirty on branch \`$(git rev-parse --abbrev-ref HEAD)\`"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)"
    echo "- run: \`LOADGEN=$LOADGEN SCENARIOS=\"$SCENARIOS\" BACKENDS=\"$BACKENDS\" ROUNDS=$ROUNDS QUIET_WAIT=$QUIET_WAIT benches/run-actors.sh\`; median of $ROUNDS round(s)"
    echo "- server on core $SERVER_CORE (its shard and the publisher thread), the client side on core $LOAD_CORE (F: \`$GEN_F\`, M: \`$GEN_M\`); loopback; open-file limit $NOFILE"
    echo
    for sc in $SCENARIOS; do
        if [[ $sc == F ]]; then
            echo "## F: fan-out, 1 shard, $SUBSCRIBERS subscribers, $SIZE-byte messages"
            echo
            echo "Publisher: Running::publish $(if [[ $RATE == 0 ]]; then echo "flat out, retrying after 200 µs on a full mailbox"; else echo "at $RATE msgs/s"; fi); mailbox = burst; high-water mark $HIGH_WATER bytes. ${DURATION} s measured after ${WARMUP} s; deliveries = whole messages the subscribers read (the by-bytes column divides the bytes read by the frame size); published and dropped are the server's counters over the whole run; cpu rest = busy time of the machine charged to neither process (other work, softirqs), ⚠ over 25%."
            echo
            echo "| backend | burst | deliveries/s | by bytes read | msgs per read | per second | cpu server % | cpu reader % | cpu rest % | published | dropped | errors |"
            echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
            for be in $BACKENDS; do
                for burst in $BURSTS; do
                    local r
                    r=$(median_round "F,$be,$burst" deliveries_per_s)
                    if [[ -z $r ]]; then
                        echo "| $be | $burst | failed | | | | | | | | | |"
                        continue
                    fi
                    local j=${RESULT[F,$be,$burst,$r]} s=${SERVER_RESULT[F,$be,$burst,$r]:-}
                    local series
                    series=$(array per_second "$j" | tr ',' '\n' | awk '{printf "%s%.1f", (NR>1?" ":""), $1/1e6}')
                    local noisy=""
                    awk -v o="$(field other_cpu_pct "$j")" 'BEGIN{exit !(o+0 > 25)}' && noisy=" ⚠"
                    echo "| $be | $burst | **$(millions "$(field deliveries_per_s "$j")")** | $(millions "$(field deliveries_per_s_by_bytes "$j")") | $(fmt "$(field msgs_per_read "$j")") | $series M | $(fmt "$(field server_cpu_pct "$j")") | $(field gen_cpu_pct "$j") | $(fmt "$(field other_cpu_pct "$j")")$noisy | $(fmt "$(field published "$s")") | $(fmt "$(field dropped "$s")") | $(field errors "$j") |"
                done
            done
            echo
            if [[ -n ${PERF_DIR:-} ]]; then
                echo "Server profiles (perf record -e cpu-clock -g, median round, self time by symbol):"
                echo
                for be in $BACKENDS; do
                    for burst in $BURSTS; do
                        local r f
                        r=$(median_round "F,$be,$burst" deliveries_per_s)
                        f=$PERF_DIR/F-$be-$burst-r${r:-1}.data
                        [[ -f $f ]] && echo "- $be, burst $burst: $(perf_summary "$f") (\`$f\`)"
                    done
                done
                echo
            fi
        else
            echo "## M: $IDLE_CONNS idle connections, server VmRSS growth per connection"
            echo
            echo "| backend | ringsock-echo (engine only) | actors (handler: one u64) | actors − echo |"
            echo "|---|---:|---:|---:|"
            for be in $BACKENDS; do
                local re ra e="" a=""
                re=$(median_round "M,$be,echo" rss_per_conn_bytes)
                ra=$(median_round "M,$be,actors" rss_per_conn_bytes)
                [[ -n $re ]] && e=$(field rss_per_conn_bytes "${RESULT[M,$be,echo,$re]}")
                [[ -n $ra ]] && a=$(field rss_per_conn_bytes "${RESULT[M,$be,actors,$ra]}")
                local d="–"
                [[ -n $e && -n $a && $e != null && $a != null ]] && d="**$((a - e)) B**"
                echo "| $be | $(fmt "$e") B | $(fmt "$a") B | $d |"
            done
            echo
        fi
    done
    echo "## Commands"
    echo
    echo '```'
    echo "ulimit -n $NOFILE"
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
}

REPORT=$(report)
printf '%s\n' "$REPORT"
if [[ $OUT != - ]]; then
    mkdir -p "$(dirname "$OUT")"
    printf '%s\n' "$REPORT" >"$OUT"
    log "written to $OUT"
fi
