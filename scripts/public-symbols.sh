#!/bin/sh
# Prints the functions that include/tessera.h declares, one a line, sorted: the
# export list of libtessera.a (Makefile) and what scripts/check-symbols.sh expects.
# Comments are stripped first, so only declarations count.
# Usage: public-symbols.sh [include/tessera.h]
set -e
header=${1:-include/tessera.h}
${CC:-gcc} -fpreprocessed -dD -E -P "$header" |
    grep -o '\bts_[a-z0-9_]*[[:space:]]*(' | sed 's/[[:space:]]*($//' | LC_ALL=C sort -u
