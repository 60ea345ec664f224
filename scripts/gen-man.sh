#!/bin/sh
# Prints the man page tessera(1), in troff, made from the CLI's own help texts
# (`tessera --help` and `tessera COMMAND --help`) and the exit-code table of
# docs/cli.md, so the page says what the binary says. No date: the same binary and
# docs give the same page.
# Usage: gen-man.sh BUILD/tessera
set -e
bin=${1:?usage: gen-man.sh BUILD/tessera}
cd "$(dirname "$0")/.." || exit 2
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

"$bin" --help >"$tmp/top"
version=$("$bin" --version | sed -n 's/^tessera //p')
[ -n "$version" ] || { echo "gen-man.sh: $bin --version printed no version" >&2; exit 1; }
# "  name   summary" lines of the commands: section
sed -n '/^commands:/,/^$/p' "$tmp/top" | sed -n 's/^  \([a-z][a-z-]*\)  *.*/\1/p' >"$tmp/cmds"
[ -s "$tmp/cmds" ] || { echo "gen-man.sh: $bin --help lists no commands" >&2; exit 1; }
for c in $(cat "$tmp/cmds"); do
    echo "@@command $c"
    "$bin" "$c" --help || { echo "gen-man.sh: $bin $c --help failed" >&2; exit 1; }
done >"$tmp/help"
# the "| code | meaning |" table under "## Exit codes"
sed -n '/^## Exit codes/,/^## /p' docs/cli.md | sed -n 's/^| *\([0-9][0-9]*\) *| *\(.*[^ ]\) *|$/\1\t\2/p' >"$tmp/exit"

awk -v version="$version" -v top="$tmp/top" -v help="$tmp/help" -v exitf="$tmp/exit" '
# troff text: backslashes escaped, option dashes as \-, no line read as a request
function esc(s,    out, i, ch, prev) {
    gsub(/\\/, "\\e", s)
    out = ""; prev = " "
    for (i = 1; i <= length(s); i++) {
        ch = substr(s, i, 1)
        if (ch == "-" && (prev ~ /[ [(|,=-]/ || i == 1)) out = out "\\-"
        else out = out ch
        prev = ch
    }
    if (out ~ /^[.\047]/) out = "\\&" out
    return out
}
function trim(s) { sub(/^ +/, "", s); sub(/ +$/, "", s); return s }
BEGIN {
    print ".TH TESSERA 1 \"\" \"tessera " version "\" \"User Commands\""
    print ".SH NAME"
    print "tessera \\- train convolutional networks, cut them into per-class modules and compose new models"
    print ".SH SYNOPSIS"
    print ".B tessera"
    print ".I COMMAND"
    print "[\\fIoptions\\fR]"
    print ".br"
    print ".B tessera"
    print ".I COMMAND"
    print "\\fB\\-\\-help\\fR"
    print ".br"
    print ".B tessera \\-\\-version"
    print ".SH DESCRIPTION"
    print "A command line over libtessera (\\fItessera.h\\fR), a C11 deep\\-learning engine. Results go to"
    print "standard output, progress bars and errors to standard error. Each command and its options"
    print "follow, as \\fBtessera\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR prints them."
    print ".SH COMMANDS"
    incmds = 0
    while ((getline line < top) > 0) {
        if (line ~ /^commands:/) { incmds = 1; continue }
        if (incmds && line == "") break
        if (incmds && match(line, /^  [a-z][a-z-]*  +/)) {
            name = trim(substr(line, 1, RLENGTH))
            print ".TP"; print ".B " name; print esc(substr(line, RLENGTH + 1))
        }
    }
    # one subsection per command: usage, description paragraphs, options
    state = ""
    while ((getline line < help) > 0) {
        if (line ~ /^@@command /) {
            cmd = substr(line, 11)
            print ".SS \"tessera " cmd "\""
            state = "start"; continue
        }
        if (line ~ /^usage: /) {
            rest = line; sub(/^usage: tessera [a-z-]+ */, "", rest)
            print ".PP"; print "\\fBtessera " cmd "\\fR " esc(rest)
            state = "text"; continue
        }
        if (line == "") { state = (state == "option" ? "afteropts" : "para"); continue }
        if (line ~ /^options:$/) continue
        if (line ~ /^  -/) {
            # tools/cli.c prints "  %-26s %s": the help starts after two spaces, or,
            # after a long "--name ARG", after the first space from column 29 on
            if (match(line, /^  -[^ ]*( [^ ]+)?  +/)) { spec = substr(line, 1, RLENGTH); text = substr(line, RLENGTH + 1) }
            else {
                p = index(substr(line, 29), " ")
                if (p) { spec = substr(line, 1, 28 + p); text = substr(line, 29 + p) } else { spec = line; text = "" }
            }
            spec = trim(spec)
            n = index(spec, " ")
            if (n) opt = "\\fB" esc(substr(spec, 1, n - 1)) "\\fR \\fI" esc(substr(spec, n + 1)) "\\fR"
            else opt = "\\fB" esc(spec) "\\fR"
            print ".TP"; print opt; print esc(text)
            state = "option"; continue
        }
        if (state == "option" && line ~ /^      /) { print esc(trim(line)); continue }
        if (state == "para" || state == "afteropts") print ".PP"
        print esc(trim(line))
        state = "text"
    }
    print ".SH \"EXIT STATUS\""
    while ((getline line < exitf) > 0) {
        split(line, f, "\t")
        gsub(/`/, "", f[2])
        print ".TP"; print ".B " f[1]; print esc(f[2])
    }
    print ".SH ENVIRONMENT"
    print ".TP"
    print ".B TESSERA_DATA"
    print "where known dataset names (fashion\\-mnist, mnist, cifar10, cifar100) are looked up when"
    print "\\fB\\-\\-data\\-dir\\fR is not given."
    print ".SH FILES"
    print ".TP"
    print ".I tessera.h, libtessera.so, libtessera.a, tessera.pc"
    print "the library this command is built on; link with \\fBpkg\\-config \\-\\-cflags \\-\\-libs tessera\\fR."
    print ".SH \"SEE ALSO\""
    print "The tessera documentation: docs/cli.md (every command with examples), docs/modules.md,"
    print "docs/onnx.md, docs/training.md."
}' </dev/null
