#!/bin/sh
# `make install` into a temporary PREFIX: every file where it belongs, the SONAME and
# its links, a program built against the installed copy with pkg-config (shared, then
# static with --static), the installed CLI, the man page (rendered by man or groff
# when installed); the same under DESTDIR; `make uninstall` removes exactly those
# files. Run by scripts/run-tests.sh (plain builds) with the build folder; prints
# "test_install: N passed, N failed".
# Usage: tests/install/test_install.sh [BUILD]
build=${1:-build}
cd "$(dirname "$0")/../.." || exit 2
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
# run-tests.sh may run under make: the nested make must not inherit its flags
unset MAKEFLAGS MFLAGS MAKELEVEL
passed=0
failed=0
check() { # check WHAT COMMAND...: one case
    what=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then passed=$((passed + 1)); else
        failed=$((failed + 1)); echo "FAIL $what"; sed 's/^/  /' "$tmp/out" | tail -n 20; fi
}
version=$(sed -n 's/^#define TS_VERSION_STRING "\(.*\)"/\1/p' include/tessera.h)
major=${version%%.*}
p=$tmp/prefix
mkdir -p "$p/lib"
echo keep >"$p/lib/other.txt" # not ours: uninstall leaves it

check "make install PREFIX" make -s --no-print-directory BUILD="$build" PREFIX="$p" install
files_are_there() {
    for f in bin/tessera lib/libtessera.so.$version lib/libtessera.a include/tessera.h lib/pkgconfig/tessera.pc \
        share/man/man1/tessera.1; do
        [ -f "$p/$f" ] || { echo "missing $p/$f"; return 1; }
    done
    [ -x "$p/bin/tessera" ] || { echo "bin/tessera not executable"; return 1; }
    [ "$(readlink "$p/lib/libtessera.so.$major")" = "libtessera.so.$version" ] || { echo "bad libtessera.so.$major"; return 1; }
    [ "$(readlink "$p/lib/libtessera.so")" = "libtessera.so.$major" ] || { echo "bad libtessera.so link"; return 1; }
    cmp include/tessera.h "$p/include/tessera.h"
}
check "installed files and links" files_are_there
soname() { readelf -d "$p/lib/libtessera.so.$version" | grep -q "Library soname: \[libtessera.so.$major\]"; }
check "SONAME libtessera.so.$major" soname

export PKG_CONFIG_PATH="$p/lib/pkgconfig"
pc_fields() {
    [ "$(pkg-config --modversion tessera)" = "$version" ] || { echo "pkg-config --modversion"; return 1; }
    [ "$(pkg-config --variable=prefix tessera)" = "$p" ] || { echo "prefix is not $p"; return 1; }
    pkg-config --static --libs tessera | grep -q -- '-ldnnl' || { echo "--static lacks -ldnnl"; return 1; }
}
check "tessera.pc" pc_fields
# shellcheck disable=SC2046
shared_prog() {
    ${CC:-cc} tests/install/installed_prog.c $(pkg-config --cflags --libs tessera) -o "$tmp/prog" || return 1
    readelf -d "$tmp/prog" | grep -q "NEEDED.*\[libtessera.so.$major\]" || { echo "prog does not need libtessera.so.$major"; return 1; }
    out=$(LD_LIBRARY_PATH="$p/lib" "$tmp/prog") || { echo "$out"; return 1; }
    echo "$out" | grep -q "^ok $version 10 " || { echo "prog printed: $out"; return 1; }
    # the library the program ran with is the installed one
    LD_LIBRARY_PATH="$p/lib" LD_TRACE_LOADED_OBJECTS=1 "$tmp/prog" | grep -q "libtessera.so.$major => $p/lib/"
}
check "program built with pkg-config --cflags --libs, shared" shared_prog
# shellcheck disable=SC2046
static_prog() {
    ${CC:-cc} tests/install/installed_prog.c $(pkg-config --cflags tessera) \
        $(pkg-config --static --libs tessera | sed 's/-ltessera\b/-l:libtessera.a/') -o "$tmp/sprog" || return 1
    if readelf -d "$tmp/sprog" | grep -q "libtessera"; then echo "static program needs libtessera.so"; return 1; fi
    "$tmp/sprog" | grep -q "^ok $version 10 "
}
check "program built with pkg-config --static, libtessera.a" static_prog
check "installed tessera --version" sh -c "'$p/bin/tessera' --version | grep -qx 'tessera $version'"

man_page() {
    page=$p/share/man/man1/tessera.1
    head -n 1 "$page" | grep -q '^\.TH TESSERA 1 ' || { echo "no .TH line"; return 1; }
    # every command of tessera --help has its section
    for c in $("$p/bin/tessera" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'); do
        grep -q "^\.SS \"tessera $c\"" "$page" || { echo "no section for $c"; return 1; }
    done
    if command -v groff >/dev/null; then
        warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
        [ -z "$warn" ] || { echo "groff warns: $warn"; return 1; }
    else echo "groff not installed: not rendered"; fi
    if command -v man >/dev/null; then
        MANPAGER=cat MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q -- '--checkpoint FILE' || { echo "man -l: no --checkpoint"; return 1; }
        [ "$(MANPATH="$p/share/man" man -w tessera)" = "$page" ] || { echo "man -w tessera does not find $page"; return 1; }
    else echo "man not installed: not rendered"; fi
}
check "man page tessera(1)" man_page

check "make uninstall PREFIX" make -s --no-print-directory BUILD="$build" PREFIX="$p" uninstall
nothing_left() {
    left=$(find "$p" ! -type d ! -path "$p/lib/other.txt")
    [ -z "$left" ] || { echo "left after uninstall: $left"; return 1; }
    [ "$(cat "$p/lib/other.txt")" = keep ]
}
check "uninstall removes exactly what install put" nothing_left

d=$tmp/stage
check "make install DESTDIR PREFIX=/usr" make -s --no-print-directory BUILD="$build" DESTDIR="$d" PREFIX=/usr install
staged() {
    [ -f "$d/usr/lib/libtessera.so.$version" ] && [ -f "$d/usr/share/man/man1/tessera.1" ] || { echo "not under DESTDIR"; return 1; }
    grep -qx 'prefix=/usr' "$d/usr/lib/pkgconfig/tessera.pc" || { echo "tessera.pc prefix is not /usr"; return 1; }
    make -s --no-print-directory BUILD="$build" DESTDIR="$d" PREFIX=/usr uninstall || return 1
    left=$(find "$d" ! -type d)
    [ -z "$left" ] || { echo "left after uninstall: $left"; return 1; }
}
check "DESTDIR staging and uninstall" staged

echo "test_install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
