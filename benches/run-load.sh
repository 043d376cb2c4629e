#!/usr/bin/env bash
# run-load.sh: ringsock against tokio-tungstenite and fastwebsockets, side by side, one server at
# a time, each server pinned to one core and the load generator to another.
#
#   benches/run-load.sh                      # all scenarios, 5 s each
#   DURATION=20 SCENARIOS="A B" benches/run-load.sh
#   LOADGEN="ringsock-load ws-load" SCENARIOS="A B C" ROUNDS=3 benches/run-load.sh
#
# Environment (all optional):
#   LOADGEN       the load generator(s) for every scenario: ringsock-load (ringsock's own
#                 client, a ClientPool on one shard) and/or ws-load (the hand-written epoll
#                 client). With both, each run of a server is repeated with each generator,
#                 interleaved, the first one's figures fill the tables, and a last table compares
#                 them. Unset: ringsock-load (it drops echoed payloads in the kernel as ws-load
#                 does, and measures the same; benches/results/loadgen.md)
#   DURATION      measured seconds per load run (default 5)
#   WARMUP        unmeasured seconds before each (default 1)
#   SCENARIOS     any of A B C D H (default "A B C D H")
#   SERVERS       any of ringsock-uring ringsock-epoll tungstenite fastwebsockets tcp
#                 (default: all; tcp = the tcp-echo baseline, run in A, B and C, always driven
#                 by ws-load --raw: a WebSocket client cannot talk to a plain TCP echo)
#   IDLE_CONNS    connections in D (default 10000); HOLD seconds they stay open (default 2)
#   CONCURRENCY   H: handshakes in progress at once (default 64)
#   SERVER_CORE / LOAD_CORE   cores to pin to (default 0 / 1)
#   OUT           markdown results file (default benches/results/latest.md; "-" for none)
#   ROUNDS        run every server this many times per scenario, interleaved, and report the
#                 median round (default 1); use 3+ on a machine other work shares
#   QUIET_WAIT    before each run, wait up to this many seconds for the rest of the machine to
#                 fall under 25% of a core (default 0: do not wait); runs that start noisy are
#                 marked in the table
#   NO_BUILD=1    use the release binaries already built
#
# Every run is bounded: the generator stops by itself after WARMUP + DURATION (+ a few seconds
# of draining and closing), and is killed by `timeout` if it does not.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-A B C D H}
LOADGEN=${LOADGEN:-}
for g in $LOADGEN; do
    [[ $g == ringsock-load || $g == ws-load ]] || { echo "unknown LOADGEN $g" >&2; exit 2; }
done
# The generators of one scenario, the first filling its table.
gens_of() { echo "${LOADGEN:-ringsock-load}"; }
CONCURRENCY=${CONCURRENCY:-64}
SERVERS=${SERVERS:-ringsock-uring ringsock-epoll tungstenite fastwebsockets tcp}
IDLE_CONNS=${IDLE_CONNS:-10000}
HOLD=${HOLD:-2}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
OUT=${OUT:-benches/results/latest.md}
ROUNDS=${ROUNDS:-1}
QUIET_WAIT=${QUIET_WAIT:-0}
LOGDIR=$(mktemp -d -t ringsock-load.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# Each server on its own loopback port, so no run meets the previous one's TIME_WAIT sockets.
declare -A PORT=([ringsock-uring]=9101 [ringsock-epoll]=9105 [tungstenite]=9102
    [fastwebsockets]=9103 [tcp]=9104)

if [[ -z ${NO_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release --locked -p ringsock-tools -p ringsock-benches --bins >&2
fi

# 10,000 idle connections need 10,000+ descriptors in the server and in the generator (each is
# its own process with its own limit). Ask for 30000, or as much as the hard limit allows.
HARD=$(ulimit -Hn)
WANT=30000
if [[ $HARD != unlimited && $HARD -lt $WANT ]]; then
    WANT=$HARD
fi
ulimit -n "$WANT"
NOFILE=$(ulimit -n)
if [[ $NOFILE -lt $((IDLE_CONNS + 100)) ]]; then
    log "warning: open-file limit $NOFILE is below the $IDLE_CONNS idle connections scenario D needs"
fi

# Ephemeral ports: all connections go to one destination, so one source address offers the whole
# range; beyond ~80% of it, spread connections over 127.0.0.2, 127.0.0.3, ...
read -r PLO PHI </proc/sys/net/ipv4/ip_local_port_range
PORTS=$((PHI - PLO + 1))
SRC_ARGS=()
NSRC=$(((IDLE_CONNS * 10 / 8 + PORTS - 1) / PORTS))
if [[ $NSRC -gt 1 ]]; then
    SRC=$(seq -s, -f '127.0.0.%g' 1 "$NSRC")
    SRC_ARGS=(--src "$SRC")
fi

server_cmd() {
    local name=$1 port=${PORT[$1]}
    case $name in
    ringsock-uring) echo "$BIN/ringsock-echo --addr 127.0.0.1:$port --shards 1 --backend io_uring" ;;
    ringsock-epoll) echo "$BIN/ringsock-echo --addr 127.0.0.1:$port --shards 1 --backend epoll" ;;
    tungstenite) echo "$BIN/tungstenite-echo --addr 127.0.0.1:$port" ;;
    fastwebsockets) echo "$BIN/fastwebsockets-echo --addr 127.0.0.1:$port" ;;
    tcp) echo "$BIN/tcp-echo --addr 127.0.0.1:$port" ;;
    esac
}

# Replaces lib.sh's start_server: here each server keeps one port (PORT: name → port) for the
# whole run.
start_server() {
    local name=$1
    # shellcheck disable=SC2046
    taskset -c "$SERVER_CORE" $(server_cmd "$name") 2>"$LOGDIR/$name.log" &
    SERVER_PID=$!
    wait_listening "$name" "${PORT[$name]}"
}

# Which backend ringsock-echo reports it runs ("io_uring" or "epoll"), from its log line.
backend_of() { sed -n 's/.*(\(.*\) backend).*/\1/p' "$LOGDIR/$1.log" | head -n1; }

COMMANDS=()
declare -A RESULT BACKEND

# The generator that drives SERVER in SCENARIO when GEN is asked for: tcp-echo only speaks
# ws-load --raw, and only ringsock-load has a handshake scenario.
gen_for() {
    local sc=$1 name=$2 gen=$3
    if [[ $name == tcp ]]; then
        echo ws-load
    elif [[ $sc == H ]]; then
        echo ringsock-load
    else
        echo "$gen"
    fi
}

# The generator's command line for SCENARIO against SERVER, up to --server-pid.
gen_cmd() {
    local sc=$1 name=$2 gen=$3 addr=127.0.0.1:${PORT[$2]}
    case $gen,$sc in
    ws-load,[ABC])
        # shellcheck disable=SC2086
        echo "$BIN/ws-load --addr $addr $([[ $name == tcp ]] && echo --raw) ${ARGS[$sc]} --duration $DURATION --warmup $WARMUP" ;;
    ws-load,D) echo "$BIN/ws-load --addr $addr --idle $IDLE_CONNS --hold $HOLD ${SRC_ARGS[*]}" ;;
    ringsock-load,[ABC]) echo "$BIN/ringsock-load echo --addr $addr ${ARGS[$sc]} --duration $DURATION --warmup $WARMUP --json --quiet" ;;
    ringsock-load,D) echo "$BIN/ringsock-load idle --addr $addr --conns $IDLE_CONNS --hold $HOLD ${SRC_ARGS[*]} --json --quiet" ;;
    ringsock-load,H) echo "$BIN/ringsock-load connect --addr $addr --concurrency $CONCURRENCY --duration $DURATION --warmup $WARMUP --json --quiet" ;;
    esac
}

# run_one SCENARIO SERVER GENERATOR
run_one() {
    local sc=$1 name=$2 gen
    gen=$(gen_for "$sc" "$name" "$3")
    wait_for_quiet
    start_server "$name" || return 0
    [[ $name == ringsock-* ]] && BACKEND[$name]=$(backend_of "$name")
    local cmd
    read -r -a cmd <<<"$(gen_cmd "$sc" "$name" "$gen")"
    cmd=(taskset -c "$LOAD_CORE" "${cmd[@]}" --server-pid "$SERVER_PID" --label "$sc/$name/$gen")
    [[ $ROUND -eq 1 ]] && COMMANDS+=("$(server_cmd "$name" | sed "s|$BIN/||; s|^|taskset -c $SERVER_CORE |") & ${cmd[*]//$BIN\//}")
    log "== $sc $name, $gen (round $ROUND of $ROUNDS)"
    local out
    out=$(timeout $((WARMUP + DURATION + HOLD + 90)) "${cmd[@]}" 2>"$LOGDIR/load.err") || true
    sed 's/^/   /' "$LOGDIR/load.err" >&2
    [[ -n $out ]] && RESULT[$sc,$name,$gen,$ROUND]=$out
    stop_server
}

# The median round of SCENARIO/SERVER/GENERATOR by METRIC (the lower middle one for an even
# count).
median_result() {
    local sc=$1 name=$2 gen=$3 m=$4 r lines=()
    for ((r = 1; r <= ROUNDS; r++)); do
        local v=${RESULT[$sc,$name,$gen,$r]:-}
        [[ -n $v ]] && lines+=("$(field "$m" "$v") $r")
    done
    [[ ${#lines[@]} -gt 0 ]] || return 0
    local pick
    pick=$(printf '%s\n' "${lines[@]}" | sort -g | awk '{a[NR]=$2} END{print a[int((NR+1)/2)]}')
    printf '%s' "${RESULT[$sc,$name,$gen,$pick]}"
}

declare -A DESC=(
    [A]="100 connections x 16-byte text, depth 16 (msgs/s; target ringsock >= 1.5x the faster peer)"
    [B]="100 connections x 16 KiB binary, depth 4 (MB/s; target >= 1.2x)"
    [C]="10 connections x 1 MiB binary, depth 1 (MB/s; target >= 1.2x)"
    [D]="$IDLE_CONNS idle connections: server VmRSS growth per connection (target <= 1 KiB for ringsock)"
    [H]="handshakes per second: connect + 101 + close, $CONCURRENCY at once, one shard of ringsock-load"
)
declare -A ARGS=(
    [A]="--conns 100 --size 16 --depth 16"
    [B]="--conns 100 --size 16384 --depth 4 --binary"
    [C]="--conns 10 --size 1048576 --depth 1 --binary"
)
declare -A TARGET=([A]=1.5 [B]=1.2 [C]=1.2)

declare -A METRIC=([A]=msgs_per_s [B]=mb_per_s [C]=mb_per_s [D]=rss_per_conn_bytes [H]=handshakes_per_s)
for sc in $SCENARIOS; do
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        for name in $SERVERS; do
            [[ $name == tcp && $sc =~ [DH] ]] && continue
            # Each generator once per server and round, unless it would be the same one again.
            declare -A RAN=()
            for gen in $(gens_of "$sc"); do
                g=$(gen_for "$sc" "$name" "$gen")
                [[ -n ${RAN[$g]:-} ]] && continue
                RAN[$g]=1
                run_one "$sc" "$name" "$gen"
            done
            unset RAN
        done
    done
    read -r -a gens <<<"$(gens_of "$sc")"
    for name in $SERVERS; do
        for gen in "${gens[@]}"; do
            g=$(gen_for "$sc" "$name" "$gen")
            RESULT[$sc,$name,$g]=$(median_result "$sc" "$name" "$g" "${METRIC[$sc]}")
        done
        # What the tables show: the first generator's figure (or the only one that ran).
        RESULT[$sc,$name]=${RESULT[$sc,$name,$(gen_for "$sc" "$name" "${gens[0]}")]:-}
    done
done

# ---- the report -------------------------------------------------------------------------------
# a ÷ b to two decimals, or nothing when either is missing (a failed run, no peer in SERVERS).
ratio() {
    if [[ -n $1 && -n $2 && $1 != null && $2 != null && $2 != 0 ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'
    fi
}

report() {
    local commit dirty
    commit=$(git rev-parse --short HEAD)
    dirty=$(git diff --quiet HEAD -- . 2>/dev/null || echo " (+ uncommitted changes)")
    echo "# ringsock load scenarios"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- commit: \`$commit\`$dirty on branch \`$(git rev-parse --abbrev-ref HEAD)\`"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)"
    echo "- run: \`LOADGEN=\"$LOADGEN\" SCENARIOS=\"$SCENARIOS\" ROUNDS=$ROUNDS QUIET_WAIT=$QUIET_WAIT DURATION=$DURATION WARMUP=$WARMUP IDLE_CONNS=$IDLE_CONNS HOLD=$HOLD benches/run-load.sh\`"
    local gl="" s
    for s in $SCENARIOS; do
        gl+="${gl:+, }$s: \`$(gen_for "$s" x "$(gens_of "$s" | cut -d' ' -f1)")\`"
    done
    echo "- load generator (the tables): $gl$([[ $LOADGEN == *' '* ]] && echo "; compared with \`${LOADGEN#* }\` in the last section"); tcp-echo rows are driven by \`ws-load --raw\`"
    echo "- server on core $SERVER_CORE, the load generator on core $LOAD_CORE; loopback; ${DURATION} s measured after ${WARMUP} s warm-up; open-file limit $NOFILE (hard $HARD)"
    echo "- ringsock backends as reported: uring row = \`$(fmt "${BACKEND[ringsock-uring]:-}")\`, epoll row = \`$(fmt "${BACKEND[ringsock-epoll]:-}")\`"
    echo "- each figure is the median of $ROUNDS round(s), servers interleaved; the machine is shared with other work, so each run first waits (up to ${QUIET_WAIT} s) for it to be idle"
    echo "- MB = 10^6 payload bytes echoed; latency = round trip per message, from queueing the send to parsing the echo; cpu = % of one core over the measured window"
    echo "- cpu rest = busy time of the whole machine not charged to the server or the generator: other processes, plus network softirq work the kernel charges to no task (io_uring rows show 10-20% of that on an idle machine); ⚠ = over 25%, the row may be disturbed"
    echo
    for sc in $SCENARIOS; do
        echo "## $sc: ${DESC[$sc]}"
        echo
        if [[ $sc == H ]]; then
            echo "| server | handshakes/s | dial to 101 p50 µs | p99 µs | errors | cpu server % | cpu load % | cpu rest % |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|"
            for name in $SERVERS; do
                [[ $name == tcp ]] && continue
                local r=${RESULT[H,$name]:-}
                if [[ -z $r ]]; then
                    echo "| $name | failed | | | | | | |"
                    continue
                fi
                echo "| $name | **$(field handshakes_per_s "$r")** | $(field p50_us "$r") | $(field p99_us "$r") | $(field errors "$r") | $(fmt "$(field server_cpu_pct "$r")") | $(field gen_cpu_pct "$r") | $(fmt "$(field other_cpu_pct "$r")") |"
            done
            echo
            continue
        fi
        if [[ $sc == D ]]; then
            echo "| server | open | open time s | VmRSS before KiB | VmRSS after KiB | bytes per connection | errors |"
            echo "|---|---:|---:|---:|---:|---:|---:|"
            for name in $SERVERS; do
                [[ $name == tcp ]] && continue
                local r=${RESULT[D,$name]:-}
                if [[ -z $r ]]; then
                    echo "| $name | failed | | | | | |"
                    continue
                fi
                echo "| $name | $(field open "$r")/$(field conns "$r") | $(field open_s "$r") | $(field rss_before_kib "$r") | $(field rss_after_kib "$r") | **$(field rss_per_conn_bytes "$r")** | $(field errors "$r") |"
            done
            echo
            continue
        fi
        local m=${METRIC[$sc]} best_peer=""
        for peer in tungstenite fastwebsockets; do
            local v
            v=$(field "$m" "${RESULT[$sc,$peer]:-}")
            if [[ -n $v ]] && { [[ -z $best_peer ]] || awk -v a="$v" -v b="$best_peer" 'BEGIN{exit !(a>b)}'; }; then
                best_peer=$v
            fi
        done
        echo "| server | msgs/s | MB/s | p50 µs | p99 µs | errors | cpu server % | cpu load % | cpu rest % | ratio to faster peer (target ${TARGET[$sc]}) |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for name in $SERVERS; do
            local r=${RESULT[$sc,$name]:-}
            local label=$name
            [[ $name == tcp ]] && label="tcp-echo (raw TCP baseline, ws-load --raw)"
            if [[ -z $r ]]; then
                echo "| $label | failed | | | | | | | | |"
                continue
            fi
            local rt="" noisy=""
            [[ $name == ringsock-* ]] && rt=$(ratio "$(field "$m" "$r")" "$best_peer")
            awk -v o="$(field other_cpu_pct "$r")" 'BEGIN{exit !(o+0 > 25)}' && noisy=" ⚠"
            echo "| $label | $(field msgs_per_s "$r") | $(field mb_per_s "$r") | $(field p50_us "$r") | $(field p99_us "$r") | $(field errors "$r") | $(fmt "$(field server_cpu_pct "$r")") | $(field gen_cpu_pct "$r") | $(fmt "$(field other_cpu_pct "$r")")$noisy | ${rt:+**$rt**} |"
        done
        echo
        # The generator's own ceiling: what it drove through raw TCP, and what that would be with
        # all of its core (its CPU per message is near constant; the server there is trivial).
        local t=${RESULT[$sc,tcp]:-}
        if [[ -n $t ]]; then
            local tv tc
            tv=$(field "$m" "$t")
            tc=$(field gen_cpu_pct "$t")
            local unit=msgs/s
            [[ $m == mb_per_s ]] && unit=MB/s
            echo "ws-load's own ceiling: against tcp-echo it drove $tv $unit using ${tc}% of its core, i.e. ≈ $(awk -v v="$tv" -v c="$tc" 'BEGIN{printf "%.0f", (c > 0 ? v*100/c : 0)}') at 100%."
            echo
        fi
        # ringsock-load cannot drive a raw TCP echo; its headroom shows in its CPU use instead:
        # the most it drove per % of its core, over the servers, extrapolated to the whole core.
        local best="" bname="" bv="" bc=""
        for name in $SERVERS; do
            local r=${RESULT[$sc,$name,ringsock-load]:-}
            [[ -n $r && $name != tcp ]] || continue
            local v c per
            v=$(field "$m" "$r")
            c=$(field gen_cpu_pct "$r")
            per=$(awk -v v="$v" -v c="$c" 'BEGIN{printf "%.2f", (c > 0 ? v*100/c : 0)}')
            if [[ -z $best ]] || awk -v a="$per" -v b="$best" 'BEGIN{exit !(a>b)}'; then
                best=$per bname=$name bv=$v bc=$c
            fi
        done
        if [[ -n $best ]]; then
            local unit=msgs/s
            [[ $m == mb_per_s ]] && unit=MB/s
            echo "ringsock-load's headroom: against $bname it drove $bv $unit using ${bc}% of its core, i.e. ≈ $(awk -v b="$best" 'BEGIN{printf "%.0f", b}') at 100% (its cost per message grows as batches shrink, so this is an upper estimate)."
            echo
        fi
    done
    local GENS
    read -r -a GENS <<<"$LOADGEN"
    if [[ ${#GENS[@]} -gt 1 ]]; then
        echo "## Load generators compared: ${GENS[*]}"
        echo
        echo "The same server runs, one generator after the other, interleaved; the ratio is ${GENS[0]} ÷ ${GENS[1]} of each scenario's figure (msgs/s in A, MB/s in B and C, bytes per connection in D). A generator that is not the bottleneck leaves the server near 100% of its core and shows the server's figure, whichever it is."
        echo
        echo "| scenario | server | ${GENS[0]} | cpu server % | cpu ${GENS[0]} % | ${GENS[1]} | cpu server % | cpu ${GENS[1]} % | ratio |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
        for sc in $SCENARIOS; do
            [[ $sc == H ]] && continue
            local m=${METRIC[$sc]}
            for name in $SERVERS; do
                [[ $name == tcp ]] && continue
                local a=${RESULT[$sc,$name,${GENS[0]}]:-} b=${RESULT[$sc,$name,${GENS[1]}]:-}
                [[ -n $a || -n $b ]] || continue
                local va vb
                va=$(field "$m" "$a")
                vb=$(field "$m" "$b")
                echo "| $sc | $name | $(fmt "$va") | $(fmt "$(field server_cpu_pct "$a")") | $(fmt "$(field gen_cpu_pct "$a")") | $(fmt "$vb") | $(fmt "$(field server_cpu_pct "$b")") | $(fmt "$(field gen_cpu_pct "$b")") | $(ratio "$va" "$vb") |"
            done
        done
        echo
    fi
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
