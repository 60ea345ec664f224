#!/bin/sh
# Runs every test binary in the given build folders (and, for plain builds, the shell
# tests tests/*/test_*.sh) and prints the totals as the last line: "N passed, N failed".
# Exit status is non-zero when anything failed.
# Test binaries run from the repository root so fixture paths are stable.
cd "$(dirname "$0")/.." || exit 2
total_pass=0
total_fail=0
for build in "$@"; do
    [ -d "$build/tests" ] || { echo "no tests built in $build"; total_fail=$((total_fail + 1)); continue; }
    export TESSERA_BIN="$build/tessera"
    case "$build" in *asan*) export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ;; esac
    # Shell tests (tests/*/test_*.sh: install, the Python binding) take the build
    # folder; they load or link its libraries, so sanitizer builds skip them.
    scripts=
    case "$build" in *asan*) ;; *) scripts=$(find tests -mindepth 2 -maxdepth 2 -type f -name 'test_*.sh' | sort) ;; esac
    for t in $(find "$build/tests" -type f -name 'test_*' | sort) $scripts; do
        start=$(date +%s)
        case "$t" in
        *.sh) out=$(sh "$t" "$build" 2>&1) ;;
        *) out=$("$t" 2>&1) ;;
        esac
        rc=$?
        line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
        secs=$(( $(date +%s) - start ))
        if [ -z "$line" ]; then
            printf '%s\n' "$out" | tail -n 30
            echo "$t: crashed or printed no summary (exit $rc)"
            total_fail=$((total_fail + 1))
            continue
        fi
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
        f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        [ "$f" -ne 0 ] && printf '%s\n' "$out" | grep -v -E ' passed, [0-9]+ failed$' | tail -n 40
        echo "[$build] $(basename "$t"): $p passed, $f failed (${secs}s)"
        total_pass=$((total_pass + p))
        total_fail=$((total_fail + f))
    done
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
