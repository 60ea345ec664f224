#!/bin/sh
# The library users link (BUILD/libtessera.a, and BUILD/libtessera.so) must define, as global symbols,
# exactly the functions include/tessera.h declares: no internal helper (attr,
# add_forward, ...), no generated protobuf-c code (onnx__*), no data table. And it
# must not call what exits, aborts or prints (outside the sanitizer build, whose
# TS_ASSERT may).
# Usage: check-symbols.sh [BUILD]   (default: build)
cd "$(dirname "$0")/.." || exit 2
build=${1:-build}
lib=$build/libtessera.a
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
[ -f "$lib" ] || { echo "symbols: FAIL: $lib not built"; exit 1; }
sh scripts/public-symbols.sh include/tessera.h >"$tmp/header" || { echo "symbols: FAIL: cannot read tessera.h"; exit 1; }
nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' | LC_ALL=C sort -u >"$tmp/lib"
nm -u "$lib" | awk '{ print $2 }' | LC_ALL=C sort -u >"$tmp/undef"
forbidden=
calls="calls nothing that exits, aborts or prints"
if nm "$lib" | grep -q ' ts_assert_fail$'; then
    calls="(a sanitizer build: TS_ASSERT may abort)"
else
    forbidden=$(grep -E -x 'abort|exit|_exit|_Exit|quick_exit|__assert_fail|printf|vprintf|puts|putchar|perror|__printf_chk|__vprintf_chk|__puts_chk|stdout|stderr' "$tmp/undef")
fi
extra=$(LC_ALL=C comm -13 "$tmp/header" "$tmp/lib")
missing=$(LC_ALL=C comm -23 "$tmp/header" "$tmp/lib")
# The shared library (when built) must export the same: its dynamic symbol table.
so=$build/libtessera.so
if [ -e "$so" ]; then
    nm -D --defined-only "$so" | awk 'NF == 3 { print $3 }' | LC_ALL=C sort -u >"$tmp/so"
    so_diff=$(LC_ALL=C comm -3 "$tmp/header" "$tmp/so")
    [ -n "$so_diff" ] && { echo "$so exports differ from tessera.h (left: header only, right: library only):"
        echo "$so_diff" | sed 's/^/  /'; echo "symbols: FAIL: $so"; exit 1; }
    calls="$calls; $so exports the same"
fi
if [ -z "$extra" ] && [ -z "$missing" ] && [ -z "$forbidden" ]; then
    echo "symbols: PASS: $lib exports exactly the $(wc -l <"$tmp/header") functions of tessera.h; $calls"
    exit 0
fi
[ -n "$extra" ] && echo "exported but not in tessera.h:" && echo "$extra" | sed 's/^/  /'
[ -n "$missing" ] && echo "in tessera.h but not exported:" && echo "$missing" | sed 's/^/  /'
[ -n "$forbidden" ] && echo "calls what exits, aborts or prints:" && echo "$forbidden" | sed 's/^/  /'
echo "symbols: FAIL: $lib exports $(wc -l <"$tmp/lib") symbols, tessera.h declares $(wc -l <"$tmp/header") functions (see above)"
exit 1
