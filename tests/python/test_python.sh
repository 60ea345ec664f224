#!/bin/sh
# The Python binding (python/tessera) over BUILD/libtessera.so with Debian's
# /usr/bin/python3 and numpy: tests/python/test_binding.py, after checking that the
# binding's mirrors of tessera.h's structs have the compiler's sizes and offsets.
# Run by scripts/run-tests.sh (plain builds); prints "test_python: N passed, N failed".
# Usage: tests/python/test_python.sh [BUILD]
build=${1:-build}
cd "$(dirname "$0")/../.." || exit 2
py=/usr/bin/python3
if ! "$py" -c 'import numpy' 2>/dev/null; then
    echo "test_python: numpy missing for $py (apt-get install python3-numpy; make deps installs it)"
    echo "test_python: 0 passed, 1 failed"
    exit 1
fi
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -Iinclude tests/python/struct_layout.c -o "$tmp/struct_layout" && "$tmp/struct_layout" >"$tmp/layout" || {
    echo "test_python: cannot build tests/python/struct_layout.c"; echo "test_python: 0 passed, 1 failed"; exit 1; }
# not exec: the trap must still remove $tmp
TESSERA_LIB="$build/libtessera.so" PYTHONPATH=python PYTHONDONTWRITEBYTECODE=1 \
    "$py" tests/python/test_binding.py "$tmp/layout" "$tmp"
