#!/usr/bin/env bash
# fuzz-run.sh: runs every fuzz target briefly, one after another, with the stable toolchain.
# Each target (every [[bin]] of the fuzz crate) is a libFuzzer program built by
# scripts/fuzz-build.sh with coverage instrumentation; libFuzzer first replays the seed corpus
# (scripts/fuzz-seeds.py writes it, plus <fuzz crate>/corpus/<target>/ if there is one), then
# fuzzes for FUZZ_TIME seconds. A crash, panic, timeout or out-of-memory fails the target and
# leaves the input in <fuzz crate>/artifacts/<target>/ (git-ignored), with the command that
# replays it. Exits 0 only when every target passed.
#
# Environment: FUZZ_TIME (seconds of new fuzzing per target after the replay, default 25),
# NO_BUILD=1 (use the targets already built), FUZZ_DIR (scripts/fuzz-common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/fuzz-common.sh
source scripts/fuzz-common.sh
FUZZ_TIME=${FUZZ_TIME:-25}
ARTIFACTS=$FUZZ_DIR/artifacts

if [[ ${NO_BUILD:-0} != 1 ]]; then
    bash scripts/fuzz-build.sh
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/fuzz-seeds.py "$work/seeds"

mapfile -t targets < <(fuzz_targets)
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz-run.sh: $FUZZ_DIR/Cargo.toml lists no fuzz targets" >&2
    exit 2
fi
echo "fuzz-run.sh: ${#targets[@]} targets (${targets[*]}), ${FUZZ_TIME}s each after replaying their seeds"

# "cov: 123" from a libFuzzer status line.
field() { sed -n "s/.* $1: \([0-9]*\).*/\1/p" <<<"$2"; }

passed=0
failed=()
replayed=0
for t in "${targets[@]}"; do
    bin=$FUZZ_BIN_DIR/$t
    if [[ ! -x $bin ]]; then
        echo "fuzz: $t FAIL: $bin is missing (bash scripts/fuzz-build.sh builds it)"
        failed+=("$t")
        continue
    fi
    # The first folder is where libFuzzer adds what it finds: a scratch one, so the seeds and
    # any corpus kept in the crate are read, never changed.
    dirs=("$work/corpus/$t")
    seeds=0
    for d in "$work/seeds/$t" "$FUZZ_DIR/corpus/$t"; do
        if [[ -d $d ]]; then
            dirs+=("$d")
            seeds=$((seeds + $(find "$d" -type f | wc -l)))
        fi
    done
    replayed=$((replayed + seeds))
    mkdir -p "${dirs[0]}" "$ARTIFACTS/$t"
    log=$work/$t.log
    start=$(date +%s)
    status=0
    # -timeout: one input running 20 s is a hang; the outer timeout bounds a stuck process.
    timeout --kill-after=10 $((FUZZ_TIME + 120)) "$bin" -max_total_time="$FUZZ_TIME" \
        -timeout=20 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t/" "${dirs[@]}" \
        >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))

    inited=$(grep -m1 'INITED' "$log" || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    seed=$(sed -n 's/^INFO: Seed: //p' "$log" | head -1)
    if [[ $status -ne 0 ]]; then
        why="exit $status"
        [[ $status -eq 124 || $status -eq 137 ]] && why="still running after $((FUZZ_TIME + 120))s, stopped"
        echo "fuzz: $t FAIL ($why after ${elapsed}s); its log ends:"
        tail -40 "$log" | sed 's/^/    /'
        find "$ARTIFACTS/$t" -type f -newer "$work/seeds" | while read -r a; do
            echo "    input kept in $a; replay: $bin $a"
        done
        failed+=("$t")
    elif [[ $inited != *"cov: "* ]]; then
        # A build without the coverage flags runs but reports no coverage: fuzzing blind.
        echo "fuzz: $t FAIL: libFuzzer reports no coverage (built without instrumentation?):"
        head -20 "$log" | sed 's/^/    /'
        failed+=("$t")
    else
        echo "fuzz: $t PASS: replayed $seeds seeds (cov $(field cov "$inited"))," \
            "then ${runs:-?} runs in ${elapsed}s: cov $(field cov "$last"), corpus $(field corp "$last")" \
            "(-seed=$seed)"
        passed=$((passed + 1))
    fi
done

if [[ ${#failed[@]} -eq 0 ]]; then
    echo "fuzz: PASS, ${passed} of ${#targets[@]} targets (replayed $replayed seeds, then ${FUZZ_TIME}s each)"
    exit 0
fi
echo "fuzz: FAIL: ${failed[*]} (${passed} of ${#targets[@]} targets passed)"
exit 1
