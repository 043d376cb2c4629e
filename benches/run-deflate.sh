#!/usr/bin/env bash
# run-deflate.sh: permessage-deflate's figures (issue 6), three parts:
#
#   BENCH  the `deflate` criterion benchmark once per flate2 backend (zlib-rs, the default, and
#          zlib-ng: `--features zlib-ng`, built with cmake, installed here via apt if missing),
#          in interleaved rounds; per message compress and inflate times side by side, the
#          ratio, and the compressed sizes
#   E      echo: 1 KiB JSON-like text (a different message each time), 100 connections x 4 in
#          flight, `ringsock-echo --shards 1` with permessage-deflate (context takeover and
#          without) against `ringsock-echo --no-deflate`; msgs/s, bytes on the wire per message
#          (the generator's sockets' TCP counters), the server's CPU time per message
#   M      memory: MEM_CONNS connections to the actors server (`ringsock-fanout --idle`, which
#          echoes), each exchanging EXCHANGES 1 KiB JSON messages both ways (compressed and
#          inflated on both ends), then idle; server VmRSS growth per connection without
#          deflate, with deflate without takeover, with takeover, and with takeover at a
#          10-bit window and/or mem level 1
#
#   benches/run-deflate.sh                            # all three, 3 rounds
#   PARTS="E M" ROUNDS=5 benches/run-deflate.sh
#
# Environment (all optional):
#   PARTS         any of BENCH E M (default "BENCH E M")
#   ROUNDS        rounds of every part, configurations interleaved in each; medians reported
#                 (default 3). The machine is shared: one round is not a figure
#   QUIET_WAIT    before each run, wait up to this many seconds for the rest of the machine to
#                 fall under 25% of a core (default 0)
#   SERVER_CORE / LOAD_CORE   cores to pin to (default 0 / 1); BENCH runs on SERVER_CORE
#   BENCH_ARGS    criterion's options (default "--warm-up-time 1 --measurement-time 2")
#   E: DURATION (5), WARMUP (1), ECHO_CONNS (100), ECHO_DEPTH (4), ECHO_SIZE (1024)
#   M: MEM_CONNS (5000), EXCHANGES ("1 64": one message, and enough to fill a 32 KiB window),
#      HOLD (1), M_CONFIGS (any of plain no-takeover takeover takeover-w10 takeover-m1
#      takeover-w10-m1; default all)
#   OUT           markdown report (default benches/results/deflate.md; "-" for stdout only)
#   NO_BUILD=1    use the binaries already built (E, M)
#
# Every run is bounded: criterion by its own settings (and `timeout`), the generator by its run
# time plus a few seconds (and `timeout`); servers get SIGTERM, then SIGKILL.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
PARTS=${PARTS:-BENCH E M}
ROUNDS=${ROUNDS:-3}
QUIET_WAIT=${QUIET_WAIT:-0}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
BENCH_ARGS=${BENCH_ARGS:---warm-up-time 1 --measurement-time 2}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ECHO_CONNS=${ECHO_CONNS:-100}
ECHO_DEPTH=${ECHO_DEPTH:-4}
ECHO_SIZE=${ECHO_SIZE:-1024}
MEM_CONNS=${MEM_CONNS:-5000}
EXCHANGES=${EXCHANGES:-1 64}
HOLD=${HOLD:-1}
OUT=${OUT:-benches/results/deflate.md}
LOGDIR=$(mktemp -d -t ringsock-deflate.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

has() { [[ " $PARTS " == *" $1 "* ]]; }

# a ÷ b with DIGITS decimals, or "–" when either is missing.
ratio() {
    if [[ -n $1 && -n $2 && $1 != null && $2 != null ]] && awk -v b="$2" 'BEGIN{exit !(b+0 != 0)}'; then
        awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN{printf "%.*f", d, a/b}'
    else
        printf "–"
    fi
}

# Where start_server (lib.sh) takes its ports from.
NEXT_PORT=9750

COMMANDS=()
declare -A RESULT LINKED

# ---- BENCH: criterion, both backends --------------------------------------------------------

# cmake for libz-ng-sys, installed once; nothing else in the workspace needs it.
ensure_cmake() {
    command -v cmake >/dev/null && return 0
    log "installing cmake (zlib-ng's build needs it)"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >&2
}

BACKENDS=(zlib-rs zlib-ng)
features() { [[ $1 == zlib-ng ]] && echo "--features zlib-ng" || true; }

# Records the finished run's medians of BACKEND's benchmarks: "round backend id ns bytes".
collect_bench() {
    local be=$1 f id ns bytes
    while IFS= read -r f; do
        id=$(sed -n 's/.*"function_id":"\([^"]*\)".*/\1/p' "$f")
        [[ $id == */$be ]] || continue
        bytes=$(sed -n 's/.*"Bytes":\([0-9]*\).*/\1/p' "$f")
        ns=$(sed -n 's/.*"median":{"confidence_interval":{[^}]*},"point_estimate":\([-0-9.e+]*\).*/\1/p' "$(dirname "$f")/estimates.json")
        echo "$ROUND $be ${id%/"$be"} $ns $bytes" >>"$LOGDIR/bench.txt"
    done < <(find "$TARGET/criterion/deflate" -path '*/new/benchmark.json' 2>/dev/null)
}

if has BENCH; then
    ensure_cmake
    for be in "${BACKENDS[@]}"; do
        log "building the deflate bench ($be)"
        # shellcheck disable=SC2046
        exe=$(cargo bench --locked -p ringsock-benches --bench deflate $(features "$be") --no-run \
            --message-format=json | sed -n 's/.*"executable":"\([^"]*deflate[^"]*\)".*/\1/p' | tail -n1)
        # Which zlib the executable really holds: zlib-ng's symbols are zng_-prefixed.
        if nm "$exe" 2>/dev/null | grep -q ' zng_deflate'; then LINKED[$be]=zlib-ng; else LINKED[$be]=zlib-rs; fi
        log "   $exe: ${LINKED[$be]}"
    done
    : >"$LOGDIR/bench.txt"
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        for be in "${BACKENDS[@]}"; do
            wait_for_quiet
            log "== BENCH $be (round $ROUND of $ROUNDS)"
            # shellcheck disable=SC2046,SC2086
            timeout 1800 taskset -c "$SERVER_CORE" cargo bench --locked -p ringsock-benches \
                --bench deflate $(features "$be") -- $BENCH_ARGS --noplot \
                >"$LOGDIR/bench-$be.out" 2>"$LOGDIR/bench-$be.err" || log "   the $be run failed: $(tail -n3 "$LOGDIR/bench-$be.err")"
            grep '^ratio ' "$LOGDIR/bench-$be.out" | sed "s|/$be | |" >"$LOGDIR/ratio-$be.txt" || true
            collect_bench "$be"
        done
    done
fi

# ---- E: echo ---------------------------------------------------------------------------------

E_CONFIGS=(plain no-takeover takeover)
declare -A E_DESC=([plain]="none (\`ringsock-echo --no-deflate\`)" [no-takeover]="without context takeover" [takeover]="with context takeover")

echo_one() {
    local cfg=$1 srv cmd
    srv=("$BIN/ringsock-echo" --shards 1)
    [[ $cfg == plain ]] && srv+=(--no-deflate)
    wait_for_quiet
    start_server echo "${srv[@]}" || return 0
    cmd=(taskset -c "$LOAD_CORE" "$BIN/ringsock-load" echo --addr "127.0.0.1:$PORT"
        --conns "$ECHO_CONNS" --size "$ECHO_SIZE" --depth "$ECHO_DEPTH" --payload json)
    case $cfg in
    no-takeover) cmd+=(--deflate) ;;
    takeover) cmd+=(--deflate-takeover) ;;
    esac
    cmd+=(--duration "$DURATION" --warmup "$WARMUP" --json --quiet --server-pid "$SERVER_PID"
        --label "E/$cfg")
    [[ $ROUND -eq 1 ]] && COMMANDS+=("$(shown taskset -c "$SERVER_CORE" "${srv[@]}" --addr "127.0.0.1:$PORT") & $(shown "${cmd[@]}")")
    log "== E $cfg (round $ROUND of $ROUNDS)"
    local out
    out=$(timeout $((WARMUP + DURATION + 90)) "${cmd[@]}" 2>"$LOGDIR/load.err") || true
    sed 's/^/   /' "$LOGDIR/load.err" >&2
    stop_server
    [[ -n $out ]] && RESULT[E,$cfg,$ROUND]=$out
}

# ---- M: memory -------------------------------------------------------------------------------

read -r -a M_CONFIGS <<<"${M_CONFIGS:-plain no-takeover takeover takeover-w10 takeover-m1 takeover-w10-m1}"
declare -A M_DESC=([plain]="none" [no-takeover]="without context takeover (shared per shard)"
    [takeover]="with context takeover, window 15" [takeover-w10]="with context takeover, window 10 (\`--deflate-window 10\`)"
    [takeover-m1]="with context takeover, window 15, mem level 1 (\`--deflate-mem-level 1\`)"
    [takeover-w10-m1]="with context takeover, window 10, mem level 1")

mem_one() {
    local cfg=$1 ex=$2 srv cmd
    srv=("$BIN/ringsock-fanout" --idle --backend io_uring)
    local gen_deflate=()
    case $cfg in
    no-takeover) srv+=(--deflate) gen_deflate=(--deflate) ;;
    takeover) srv+=(--deflate-takeover) gen_deflate=(--deflate-takeover) ;;
    takeover-w10) srv+=(--deflate-takeover --deflate-window 10) gen_deflate=(--deflate-takeover) ;;
    takeover-m1) srv+=(--deflate-takeover --deflate-mem-level 1) gen_deflate=(--deflate-takeover) ;;
    takeover-w10-m1)
        srv+=(--deflate-takeover --deflate-window 10 --deflate-mem-level 1)
        gen_deflate=(--deflate-takeover)
        ;;
    esac
    wait_for_quiet
    start_server fanout "${srv[@]}" || return 0
    cmd=(taskset -c "$LOAD_CORE" "$BIN/ringsock-load" idle --addr "127.0.0.1:$PORT"
        --conns "$MEM_CONNS" --hold "$HOLD" --exchange "$ex" --size 1024 --payload json
        "${gen_deflate[@]}" "${SRC_ARGS[@]}" --json --quiet --server-pid "$SERVER_PID"
        --label "M/$cfg/$ex")
    [[ $ROUND -eq 1 ]] && COMMANDS+=("$(shown taskset -c "$SERVER_CORE" "${srv[@]}" --addr "127.0.0.1:$PORT") & $(shown "${cmd[@]}")")
    log "== M $cfg, $ex exchanged (round $ROUND of $ROUNDS)"
    local out
    out=$(timeout $((HOLD + 120)) "${cmd[@]}" 2>"$LOGDIR/load.err") || true
    sed 's/^/   /' "$LOGDIR/load.err" >&2
    stop_server
    [[ -n $out ]] && RESULT[M,$cfg,$ex,$ROUND]=$out
}

if has E || has M; then
    if [[ -z ${NO_BUILD:-} ]]; then
        log "building release binaries"
        cargo build --release --locked -p ringsock-tools --bins >&2
    fi
    HARD=$(ulimit -Hn)
    WANT=30000
    if [[ $HARD != unlimited && $HARD -lt $WANT ]]; then
        WANT=$HARD
    fi
    ulimit -n "$WANT"
    NOFILE=$(ulimit -n)
    read -r PLO PHI </proc/sys/net/ipv4/ip_local_port_range
    SRC_ARGS=()
    NSRC=$(((MEM_CONNS * 10 / 8 + PHI - PLO) / (PHI - PLO + 1)))
    if [[ $NSRC -gt 1 ]]; then
        SRC_ARGS=(--src "$(seq -s, -f '127.0.0.%g' 1 "$NSRC")")
    fi
fi

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    if has E; then
        for cfg in "${E_CONFIGS[@]}"; do
            echo_one "$cfg"
        done
    fi
    if has M; then
        for ex in $EXCHANGES; do
            for cfg in "${M_CONFIGS[@]}"; do
                mem_one "$cfg" "$ex"
            done
        done
    fi
done

# The round of PREFIX whose METRIC is the median.
median_round() {
    local prefix=$1 m=$2 r lines=()
    for ((r = 1; r <= ROUNDS; r++)); do
        local v=${RESULT[$prefix,$r]:-}
        [[ -n $v ]] && lines+=("$(field "$m" "$v") $r")
    done
    [[ ${#lines[@]} -gt 0 ]] || return 0
    printf '%s\n' "${lines[@]}" | sort -g | awk '{a[NR]=$2} END{print a[int((NR+1)/2)]}'
}

# ---- the report -------------------------------------------------------------------------------

# The median over rounds of BACKEND's time for benchmark ID, in ns (with its bytes).
bench_ns() { awk -v be="$1" -v id="$2" '$2 == be && $3 == id {print $4}' "$LOGDIR/bench.txt" | median; }
bench_bytes() { awk -v be="$1" -v id="$2" '$2 == be && $3 == id {print $5; exit}' "$LOGDIR/bench.txt"; }
# Microseconds per message: the set's time over its message count (bytes / message size).
per_msg_us() {
    local ns=$1 bytes=$2 size=$3
    [[ -n $ns && -n $bytes ]] || { printf "–"; return; }
    awk -v ns="$ns" -v b="$bytes" -v s="$size" 'BEGIN{printf "%.2f", ns / (b / s) / 1000}'
}
mb_per_s() {
    [[ -n $1 && -n $2 ]] || { printf "–"; return; }
    awk -v ns="$1" -v b="$2" 'BEGIN{printf "%.0f", b / ns * 1000}'
}
size_of() {
    case $1 in
    *-200B) echo 200 ;;
    *-1KiB) echo 1024 ;;
    *-64KiB) echo 65536 ;;
    esac
}
# Compressed ÷ original size of case ID (without op) for BACKEND, from the bench's ratio lines.
size_ratio() {
    [[ -f $LOGDIR/ratio-$1.txt ]] || { printf "–"; return; }
    awk -v id="size/$2" '$2 == id {printf "%.3f", $3 / $4; exit}' "$LOGDIR/ratio-$1.txt"
}

report_bench() {
    echo "## BENCH: compress and inflate, zlib-rs against zlib-ng (\`cargo bench -p ringsock-benches --bench deflate\`)"
    echo
    echo "Through the engine's extension API: a \`PerMessageDeflate\` server session compresses (\`encode\`), a client session inflates (\`decode\`), negotiated by the real extension, level 6 unless said, window 15, threshold 0. Sets of distinct JSON-like messages (\`ringsock_tools::json\`), each several windows long: 512 × 200 B, 256 × 1 KiB, 8 × 64 KiB; \"×64\" spreads 2,048 × 1 KiB over 64 connections round robin (32 per connection per pass: each window full of its own history, 64 contexts instead of one in cache). Time per message = criterion's median time for the set ÷ its messages, then the median over $ROUNDS rounds, backends interleaved, pinned to core $SERVER_CORE; speed-up = zlib-rs time ÷ zlib-ng time (above 1: zlib-ng faster). Size = compressed ÷ original bytes (steady state: the set's second pass). Criterion options: \`$BENCH_ARGS\`."
    echo
    echo "| messages | context | level | compress zlib-rs µs | zlib-ng µs | speed-up | inflate zlib-rs µs | zlib-ng µs | speed-up | size zlib-rs | size zlib-ng |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local id
    for id in json-200B/no-takeover/l6 json-200B/takeover/l6 json-1KiB/no-takeover/l6 json-1KiB/takeover/l6 \
        json-1KiB/no-takeover/l1 json-1KiB/takeover/l1 json-1KiB/no-takeover-x64/l6 json-1KiB/takeover-x64/l6 json-1KiB/takeover-x64/l1 \
        json-64KiB/no-takeover/l6 json-64KiB/takeover/l6; do
        local set=${id%%/*} rest=${id#*/} ctx lvl size
        ctx=${rest%/*}
        lvl=${rest#*/}
        size=$(size_of "$set")
        local label=${set#json-}
        if [[ $ctx == *-x64 ]]; then
            label+=" ×64"
            ctx=${ctx%-x64}
        fi
        local row="| $label | $ctx | ${lvl#l}"
        local op
        for op in compress inflate; do
            local rs ng brs bng
            rs=$(bench_ns zlib-rs "$op/$id")
            ng=$(bench_ns zlib-ng "$op/$id")
            brs=$(bench_bytes zlib-rs "$op/$id")
            bng=$(bench_bytes zlib-ng "$op/$id")
            row+=" | $(per_msg_us "$rs" "$brs" "$size") | $(per_msg_us "$ng" "$bng" "$size") | **$(ratio "$rs" "$ng")**"
        done
        row+=" | $(size_ratio zlib-rs "$id") | $(size_ratio zlib-ng "$id") |"
        echo "$row"
    done
    echo
    echo "Throughput of the 64 KiB messages (MB/s of original bytes, 10^6): compress zlib-rs $(mb_per_s "$(bench_ns zlib-rs compress/json-64KiB/no-takeover/l6)" "$(bench_bytes zlib-rs compress/json-64KiB/no-takeover/l6)"), zlib-ng $(mb_per_s "$(bench_ns zlib-ng compress/json-64KiB/no-takeover/l6)" "$(bench_bytes zlib-ng compress/json-64KiB/no-takeover/l6)"); inflate zlib-rs $(mb_per_s "$(bench_ns zlib-rs inflate/json-64KiB/no-takeover/l6)" "$(bench_bytes zlib-rs inflate/json-64KiB/no-takeover/l6)"), zlib-ng $(mb_per_s "$(bench_ns zlib-ng inflate/json-64KiB/no-takeover/l6)" "$(bench_bytes zlib-ng inflate/json-64KiB/no-takeover/l6)") (no takeover)."
    echo
    if [[ -f $LOGDIR/ratio-zlib-rs.txt ]]; then
        echo "Compressed ÷ original size without takeover by message size, around \`DEFAULT_THRESHOLD\` (128 B; shorter messages go out as they are by default), zlib-rs / zlib-ng:"
        echo
        echo "| JSON message | $(awk '$2 ~ /^threshold\// {split($2, p, "/"); printf "%s%s", (n++ ? " | " : ""), p[2]}' "$LOGDIR/ratio-zlib-rs.txt" | sed 's/json-//g') |"
        echo "|---|$(awk '$2 ~ /^threshold\// {printf "---:|"}' "$LOGDIR/ratio-zlib-rs.txt")"
        local be
        for be in "${BACKENDS[@]}"; do
            [[ -f $LOGDIR/ratio-$be.txt ]] || continue
            echo "| $be | $(awk '$2 ~ /^threshold\// {printf "%s%.2f%s", (n++ ? " | " : ""), $3 / $4, ($5 > 0 ? " (" $5 " of 256 sent raw)" : "")}' "$LOGDIR/ratio-$be.txt") |"
        done
        echo
    fi
    echo "Single rounds, µs per message in round order, to judge the noise:"
    echo
    echo "| benchmark | zlib-rs | zlib-ng |"
    echo "|---|---|---|"
    local be
    for id in $(awk '{print $3}' "$LOGDIR/bench.txt" | sort -u); do
        local set=${id#*/}
        set=${set%%/*}
        local cells=""
        for be in "${BACKENDS[@]}"; do
            cells+=" | $(awk -v be="$be" -v id="$id" -v s="$(size_of "$set")" '$2 == be && $3 == id {printf "%s%.2f", (n++ ? " " : ""), $4 / ($5 / s) / 1000}' "$LOGDIR/bench.txt")"
        done
        echo "| $id$cells |"
    done
    echo
    echo "Backends as linked (the bench executables checked for zlib-ng's \`zng_\`-prefixed symbols): default build \`$(fmt "${LINKED[zlib-rs]:-}")\`, \`--features zlib-ng\` build \`$(fmt "${LINKED[zlib-ng]:-}")\`."
    echo
}

report_echo() {
    echo "## E: echo of ${ECHO_SIZE}-byte JSON-like text, \`ringsock-echo --shards 1\`, $ECHO_CONNS connections × $ECHO_DEPTH in flight"
    echo
    echo "\`ringsock-load echo --payload json\`: every message different (a cycle of 256 distinct ones, 256 KiB, per connection from its own place); with permessage-deflate the generator compresses each message for its connection and inflates every echo and compares it with what it sent, so both ends do the full work (level 6, window 15; \`ringsock-echo\` accepts takeover, \`--deflate\` asks for none). Wire bytes = the TCP payload bytes the generator's sockets sent (client → server, masked frames) and received over the ${DURATION} s window (\`TCP_INFO\` \`tcpi_bytes_acked\`/\`tcpi_bytes_received\` of every socket), per message; wire ratio = wire bytes both ways ÷ the uncompressed run's. Server µs per message = its CPU time over the window ÷ messages echoed. Median of $ROUNDS interleaved rounds by msgs/s; server on core $SERVER_CORE, generator on core $LOAD_CORE."
    echo
    echo "| permessage-deflate | msgs/s | vs uncompressed | wire B/msg out | wire B/msg in | wire ratio | server µs/msg | cpu server % | cpu load % | p50 µs | p99 µs | deflate conns | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local rp base_msgs="" base_wire=""
    rp=$(median_round E,plain msgs_per_s)
    if [[ -n $rp ]]; then
        local b=${RESULT[E,plain,$rp]}
        base_msgs=$(field msgs_per_s "$b")
        base_wire=$(awk -v o="$(field wire_out_per_msg "$b")" -v i="$(field wire_in_per_msg "$b")" 'BEGIN{print o + i}')
    fi
    local cfg
    for cfg in "${E_CONFIGS[@]}"; do
        local r
        r=$(median_round "E,$cfg" msgs_per_s)
        if [[ -z $r ]]; then
            echo "| ${E_DESC[$cfg]} | failed | | | | | | | | | | | |"
            continue
        fi
        local j=${RESULT[E,$cfg,$r]} wire us
        wire=$(awk -v o="$(field wire_out_per_msg "$j")" -v i="$(field wire_in_per_msg "$j")" 'BEGIN{print o + i}')
        us=$(awk -v c="$(field server_cpu_pct "$j")" -v m="$(field msgs_per_s "$j")" 'BEGIN{if (m > 0 && c != "null") printf "%.2f", c / 100 / m * 1e6; else printf "–"}')
        local noisy=""
        awk -v o="$(field other_cpu_pct "$j")" 'BEGIN{exit !(o+0 > 25)}' && noisy=" ⚠"
        echo "| ${E_DESC[$cfg]} | **$(field msgs_per_s "$j")** | $(ratio "$(field msgs_per_s "$j")" "$base_msgs") | $(field wire_out_per_msg "$j") | $(field wire_in_per_msg "$j") | **$(ratio "$wire" "$base_wire" 3)** | $us | $(fmt "$(field server_cpu_pct "$j")")$noisy | $(field gen_cpu_pct "$j") | $(field p50_us "$j") | $(field p99_us "$j") | $(field deflate_conns "$j") | $(field errors "$j") |"
    done
    echo
    echo "Single rounds (msgs/s): $(for cfg in "${E_CONFIGS[@]}"; do
        printf '%s ' "$cfg"
        for ((r = 1; r <= ROUNDS; r++)); do printf '%s ' "$(fmt "$(field msgs_per_s "${RESULT[E,$cfg,$r]:-}")")"; done
        printf '; '
    done | sed 's/; $//')."
    echo
}

report_mem() {
    echo "## M: memory per connection, actors server (\`ringsock-fanout --idle\`), $MEM_CONNS connections"
    echo
    echo "Each connection of \`ringsock-load idle --exchange N --size 1024 --payload json\` sends N JSON messages of 1 KiB one after the other and reads each echo (so the server has inflated N and compressed N on it), then idles; the server's VmRSS is read 0.5 s after the last connection finished, and its growth since before the first connection is divided by the connections. Median of $ROUNDS interleaved rounds; server on core $SERVER_CORE (io_uring), generator on core $LOAD_CORE."
    echo
    local header="| permessage-deflate |" sep="|---|" ex
    for ex in $EXCHANGES; do
        header+=" bytes/conn after $ex message(s) | above none |"
        sep+="---:|---:|"
    done
    echo "$header"
    echo "$sep"
    declare -A BASE=()
    for ex in $EXCHANGES; do
        local r
        r=$(median_round "M,plain,$ex" rss_per_conn_bytes)
        [[ -n $r ]] && BASE[$ex]=$(field rss_per_conn_bytes "${RESULT[M,plain,$ex,$r]}")
    done
    local cfg
    for cfg in "${M_CONFIGS[@]}"; do
        local row="| ${M_DESC[$cfg]} |"
        for ex in $EXCHANGES; do
            local r v="" d="–"
            r=$(median_round "M,$cfg,$ex" rss_per_conn_bytes)
            if [[ -n $r ]]; then
                local j=${RESULT[M,$cfg,$ex,$r]}
                v=$(field rss_per_conn_bytes "$j")
                [[ $(field errors "$j") != 0 ]] && v="$v (errors $(field errors "$j"))"
            fi
            [[ $cfg != plain && -n $v && -n ${BASE[$ex]:-} ]] && d="**$(awk -v a="${v%% *}" -v b="${BASE[$ex]}" 'BEGIN{printf "%+.0f", a - b}')**"
            row+=" $(fmt "$v") | $d |"
        done
        echo "$row"
    done
    echo
    echo "Single rounds (bytes per connection): $(for ex in $EXCHANGES; do for cfg in "${M_CONFIGS[@]}"; do
        printf '%s/%s ' "$cfg" "$ex"
        for ((r = 1; r <= ROUNDS; r++)); do printf '%s ' "$(fmt "$(field rss_per_conn_bytes "${RESULT[M,$cfg,$ex,$r]:-}")")"; done
        printf '; '
    done; done | sed 's/; $//')."
    echo
}

report() {
    local commit dirty
    commit=$(git rev-parse --short HEAD)
    dirty=$(git diff --quiet HEAD -- . 2>/dev/null || echo " (+ uncommitted changes)")
    echo "# permessage-deflate: backends, echo, memory"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- commit: \`$commit\`$dirty on branch \`$(git rev-parse --abbrev-ref HEAD)\`"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)"
    echo "- run: \`PARTS=\"$PARTS\" ROUNDS=$ROUNDS QUIET_WAIT=$QUIET_WAIT benches/run-deflate.sh\`; medians of $ROUNDS interleaved rounds (the machine is shared with other work)"
    echo
    has BENCH && report_bench
    has E && report_echo
    has M && report_mem
    if [[ ${#COMMANDS[@]} -gt 0 ]] || has BENCH; then
        echo "## Commands"
        echo
        echo '```'
        if has BENCH; then
            echo "taskset -c $SERVER_CORE cargo bench -p ringsock-benches --bench deflate -- $BENCH_ARGS --noplot"
            echo "taskset -c $SERVER_CORE cargo bench -p ringsock-benches --bench deflate --features zlib-ng -- $BENCH_ARGS --noplot   # needs cmake"
        fi
        if [[ ${#COMMANDS[@]} -gt 0 ]]; then
            echo "ulimit -n $NOFILE"
            printf '%s\n' "${COMMANDS[@]}"
        fi
        echo '```'
    fi
}

REPORT=$(report)
printf '%s\n' "$REPORT"
if [[ $OUT != - ]]; then
    mkdir -p "$(dirname "$OUT")"
    printf '%s\n' "$REPORT" >"$OUT"
    log "written to $OUT"
fi
