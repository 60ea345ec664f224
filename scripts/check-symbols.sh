#!/bin/sh
# The library users link (BUILD/libtessera.a) must define, as global symbols,
# exactly the functions include/tessera.h declares: no internal helper (attr,
# add_forward, ...), no generated protobuf-c code (onnx__*), no data table.
# Usage: check-symbols.sh [BUILD]   (default: build)
cd "$(dirname "$0")/.." || exit 2
build=${1:-build}
lib=$build/libtessera.a
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
[ -f "$lib" ] || { echo "symbols: FAIL: $lib not built"; exit 1; }
sh scripts/public-symbols.sh include/tessera.h >"$tmp/header" || { echo "symbols: FAIL: cannot read tessera.h"; exit 1; }
nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' | LC_ALL=C sort -u >"$tmp/lib"
extra=$(LC_ALL=C comm -13 "$tmp/header" "$tmp/lib")
missing=$(LC_ALL=C comm -23 "$tmp/header" "$tmp/lib")
if [ -z "$extra" ] && [ -z "$missing" ]; then
    echo "symbols: PASS: $lib exports exactly the $(wc -l <"$tmp/header") functions of tessera.h"
    exit 0
fi
[ -n "$extra" ] && echo "exported but not in tessera.h:" && echo "$extra" | sed 's/^/  /'
[ -n "$missing" ] && echo "in tessera.h but not exported:" && echo "$missing" | sed 's/^/  /'
echo "symbols: FAIL: $lib exports $(wc -l <"$tmp/lib") symbols; tessera.h declares $(wc -l <"$tmp/header") functions"
exit 1
