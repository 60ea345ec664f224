#!/bin/sh
# Runs every libFuzzer target in BUILD (default build-fuzz), JOBS at a time (default: the
# number of processors).
#
#   fuzz-smoke.sh BUILD            the deterministic run of `make test`: each target replays
#                                  its committed seeds (tests/fuzz/corpus/NAME) and saved
#                                  crash inputs (tests/fuzz/regress/NAME), then makes a
#                                  fixed number of mutations from a fixed seed into a fresh
#                                  scratch corpus: the same commit runs the same inputs.
#   fuzz-smoke.sh BUILD SECONDS    open-ended (`make fuzz-long`): SECONDS per target, the
#                                  scratch corpus BUILD/corpus/NAME kept and grown.
#
# A crash, leak or timeout fails, with the input saved as BUILD/crash-*; copy it into
# tests/fuzz/regress/NAME/ so that every later run replays it. Prints each target's runs.
set -u
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-}
JOBS=${3:-$(nproc 2>/dev/null || echo 2)}
SEED=${FUZZ_SEED:-1}
cd "$(dirname "$0")/.."
# Mutations per target in the deterministic run: from 3 s (pnm) to about 25 s (idx)
# each on a 2-vCPU Zen 4 beside the other jobs (docs/robustness.md). The slow readers
# (idx, cifar, text: a gzip stream or a whole file per input, 500-1,500/s) and the
# biggest counts run fewer than before 2026-12-04, so that make test stays under CI's
# 15 minutes; make fuzz-long goes deep.
runs_for() {
    case $1 in
        arch) echo 200000 ;;
        onnx) echo 150000 ;;
        tensorproto) echo 3000000 ;;
        image) echo 8000 ;; # whole decodes and resizes: about 300/s
        idx) echo 12000 ;;
        cifar | text) echo 15000 ;;
        *) echo 50000 ;;
    esac
}
# one thread per target: a thread pool's scheduling must not steer the coverage
export OMP_NUM_THREADS=1
one() {
    bin=$1
    name=$(basename "$bin" | sed 's/^fuzz_//')
    seeds=tests/fuzz/corpus/$name
    regress=tests/fuzz/regress/$name
    work=$BUILD/corpus/$name
    log=$BUILD/fuzz_$name.log
    norandom=""
    if [ -n "$SECONDS_EACH" ]; then
        limit="-max_total_time=$SECONDS_EACH"
    else
        rm -rf "$work"
        # -use_cmp=0: no mutations drawn from compared values, which include inode
        # numbers (the writer's same-file checks) and pids that differ between runs
        limit="-runs=$(runs_for "$name") -seed=$SEED -use_cmp=0"
        # without address randomization: libFuzzer draws mutations from the values the
        # target compares, and some of those are pointers
        setarch "$(uname -m)" -R true 2>/dev/null && norandom="setarch $(uname -m) -R"
    fi
    mkdir -p "$work"
    # the scratch files' folder: the same relative path in every checkout (the strings
    # a reader compares stay the same), kept in /dev/shm where there is one
    scratch=$BUILD/scratch/$name
    rm -rf "$scratch"
    mkdir -p "$BUILD/scratch"
    if [ -w /dev/shm ] && shm=$(mktemp -d /dev/shm/tessera-fuzz-XXXXXX); then
        ln -s "$shm" "$scratch"
    else
        mkdir -p "$scratch"
    fi
    dirs="$work $seeds"
    [ -d "$regress" ] && dirs="$dirs $regress"
    # shellcheck disable=SC2086
    FUZZ_SCRATCH=$scratch $norandom "$bin" $limit -rss_limit_mb=4096 -timeout=60 -reload=0 -print_final_stats=1 \
        -artifact_prefix="$BUILD/" $dirs >"$log" 2>&1
    echo $? >"$BUILD/fuzz_$name.rc"
    [ -L "$scratch" ] && rm -rf "$(readlink "$scratch")"
    rm -rf "$scratch"
}
# JOBS at a time (scripts/pool.sh), the slowest targets first, so that the run does not
# end waiting on one of them.
list=$BUILD/fuzz-order
: >"$list"
for name in arch idx cifar text onnx tensorproto; do
    [ -x "$BUILD/fuzz_$name" ] && echo "$BUILD/fuzz_$name" >>"$list"
done
for bin in "$BUILD"/fuzz_*; do
    [ -x "$bin" ] || continue
    grep -qx "$bin" "$list" || echo "$bin" >>"$list"
done
count=$(wc -l <"$list")
run_target() { one "$(sed -n "${1}p" "$list")"; }
. scripts/pool.sh
pool_run "$JOBS" "$count" "$BUILD" run_target
rm -f "$list"
status=0
for bin in "$BUILD"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    log=$BUILD/fuzz_$name.log
    rc=$(cat "$BUILD/fuzz_$name.rc" 2>/dev/null || echo 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    what=${SECONDS_EACH:+in ${SECONDS_EACH}s}
    what=${what:-seed $SEED}
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $name: ${runs:-?} runs ($what, ${rate:-?}/s), no crash"
    else
        echo "fuzz $name: FAILED (exit $rc); log: $log"
        grep -m 5 -E "ERROR|SUMMARY|Test unit written" "$log"
        status=1
    fi
done
exit $status
