#!/bin/sh
# Runs every libFuzzer target in BUILD (default build-fuzz) for SECONDS (default 60)
# from its committed seed corpus (tests/fuzz/corpus/NAME), growing a scratch corpus
# in BUILD/corpus/NAME, JOBS targets at a time (default 3: three rounds on 2 cores). A crash,
# leak or timeout fails, with the input saved as BUILD/crash-* (a regression input).
# Prints each target's runs and speed.
set -u
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
JOBS=${3:-3}
cd "$(dirname "$0")/.."
one() {
    bin=$1
    name=$(basename "$bin" | sed 's/^fuzz_//')
    seeds=tests/fuzz/corpus/$name
    work=$BUILD/corpus/$name
    mkdir -p "$work"
    log=$BUILD/fuzz_$name.log
    "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$BUILD/" "$work" "$seeds" >"$log" 2>&1
    echo $? >"$BUILD/fuzz_$name.rc"
}
running=0
for bin in "$BUILD"/fuzz_*; do
    [ -x "$bin" ] || continue
    one "$bin" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait
        running=0
    fi
done
wait
status=0
for bin in "$BUILD"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    log=$BUILD/fuzz_$name.log
    rc=$(cat "$BUILD/fuzz_$name.rc" 2>/dev/null || echo 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $name: ${runs:-?} runs in ${SECONDS_EACH}s (${rate:-?}/s), no crash"
    else
        echo "fuzz $name: FAILED (exit $rc); log: $log"
        grep -m 5 -E "ERROR|SUMMARY|Test unit written" "$log"
        status=1
    fi
done
exit $status
