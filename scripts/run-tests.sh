#!/bin/sh
# Runs every test binary in the given build folders (and, for plain builds, the shell
# tests tests/*/test_*.sh) and prints the totals as the last line: "N passed, N failed".
# Exit status is non-zero when anything failed.
# Test binaries run from the repository root so fixture paths are stable.
#
# TEST_JOBS tests run at once (default: the number of processors). Each test is a
# separate process with its own temporary folder, and none depends on another's
# timing, so the totals are the same at any TEST_JOBS; TEST_JOBS=1 runs them one
# after the other in the listed order. Each test's line is printed when it ends.
cd "$(dirname "$0")/.." || exit 2
jobs=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
case "$jobs" in '' | *[!0-9]* | 0) jobs=1 ;; esac
work=$(mktemp -d) || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# The slowest tests start first, so that the last ones to finish are short: the
# ASan build's before the plain build's, and within each, these (slowest first, as
# measured on a 2-vCPU Zen 4) before the rest.
slow="test_cli test_alloc_fail test_modular test_cli_user test_seq_train test_rnn_decompose test_translator_decompose test_cli_mpi
test_onnx test_cli_text test_bad_inputs test_parity_torch test_file_safety test_tagger_decompose test_cli_report"

# One line per test: "build path", the ASan builds first.
list=$work/list
: >"$list"
for pass in asan plain; do
    for build in "$@"; do
        case "$build" in *asan*) kind=asan ;; *) kind=plain ;; esac
        [ "$kind" = "$pass" ] || continue
        if [ ! -d "$build/tests" ]; then
            echo "no tests built in $build"
            echo "$build -" >>"$list"
            continue
        fi
        all=$(find "$build/tests" -type f -name 'test_*' | sort)
        for s in $slow; do
            printf '%s\n' "$all" | grep "/$s\$" | sed "s|^|$build |" >>"$list"
        done
        for t in $all; do
            case " $(echo $slow) " in *" $(basename "$t") "*) continue ;; esac
            echo "$build $t" >>"$list"
        done
        # Shell tests (tests/*/test_*.sh: install, the Python binding) take the build
        # folder; they load or link its libraries, so sanitizer builds skip them.
        [ "$kind" = asan ] || find tests -mindepth 2 -maxdepth 2 -type f -name 'test_*.sh' | sort | sed "s|^|$build |" >>"$list"
    done
done

# Runs test number $1 (line $1 of the list): its output goes to $work/$1.out, its
# counts ("passed failed") to $work/$1.res, and its summary line to stdout.
run_one() {
    n=$1
    set -- $(sed -n "${n}p" "$list")
    build=$1 t=$2
    if [ "$t" = - ]; then echo "0 1" >"$work/$n.res"; return; fi
    export TESSERA_BIN="$build/tessera"
    case "$build" in
    *asan*) export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ;;
    *) # glibc's malloc keeping freed blocks (up to 32 MB) for reuse, as the CLI does
       # (tools/main.c): on these VMs a page fault and the munmap TLB shootdown cost so
       # much that returning memory to the kernel between allocations made
       # test_alloc_fail's MobileNetV2 flow 35 s instead of 10 s. Results do not change.
       export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824}" ;;
    esac
    start=$(date +%s)
    case "$t" in
    *.sh) sh "$t" "$build" >"$work/$n.out" 2>&1 ;;
    *) "$t" >"$work/$n.out" 2>&1 ;;
    esac
    rc=$?
    secs=$(($(date +%s) - start))
    line=$(grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' "$work/$n.out" | tail -n 1)
    if [ -z "$line" ]; then
        { tail -n 30 "$work/$n.out"; echo "$t: crashed or printed no summary (exit $rc)"; } >"$work/$n.msg"
        echo "0 1" >"$work/$n.res"
    else
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
        f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        : >"$work/$n.msg"
        [ "$f" -ne 0 ] && grep -v -E ' passed, [0-9]+ failed$' "$work/$n.out" | tail -n 40 >"$work/$n.msg"
        echo "[$build] $(basename "$t"): $p passed, $f failed (${secs}s)" >>"$work/$n.msg"
        echo "$p $f" >"$work/$n.res"
    fi
    # one write, so that lines from tests ending together do not interleave
    cat "$work/$n.msg"
}

count=$(wc -l <"$list")
. scripts/pool.sh
pool_run "$jobs" "$count" "$work" run_one

total_pass=0
total_fail=0
n=1
while [ "$n" -le "$count" ]; do
    if [ -f "$work/$n.res" ]; then
        read -r p f <"$work/$n.res"
    else
        p=0 f=1
        echo "$(sed -n "${n}p" "$list"): did not run"
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    n=$((n + 1))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
