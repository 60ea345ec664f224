#!/bin/sh
# make layers: every #include "..." in src/ and tools/ points down the layers
#   core <- ops <- nn <- train, data <- io <- onnx <- modular <- tools
# (docs/design.md). A folder may include its own headers, any lower folder's and
# tessera.h; train and data, side by side, do not include each other; tools/
# includes only tessera.h and its own headers. Names file and line of each breach.
cd "$(dirname "$0")/.." || exit 2
grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' src/*/*.[ch] tools/*.[ch] | awk -F: '
function level(d) {
    if (d == "core") return 0; if (d == "ops") return 1; if (d == "nn") return 2
    if (d == "train" || d == "data") return 3; if (d == "io") return 4; if (d == "onnx") return 5
    if (d == "modular") return 6; if (d == "tools") return 7
    return -1
}
{
    n++
    file = $1; line = $2; inc = $0
    sub(/^[^"]*"/, "", inc); sub(/".*$/, "", inc)
    split(file, f, "/"); own = (f[1] == "tools") ? "tools" : f[2]
    path = inc; sub(/^(\.\.\/)+/, "", path)
    if (path == "tessera.h") next
    if (index(path, "/") == 0) next                      # a header of its own folder
    split(path, t, "/"); to = t[1]
    why = ""
    if (level(to) < 0) why = "a folder outside the layers"
    else if (own == "tools") why = "an internal header (tools/ uses tessera.h only)"
    else if (level(to) > level(own)) why = to " is above " own
    else if (level(to) == level(own) && to != own) why = to " and " own " are side by side"
    if (why != "") { printf "%s:%s: includes \"%s\": %s\n", file, line, inc, why; bad++ }
}
END {
    if (bad) { printf "layers: FAIL: %d of %d includes point up or sideways\n", bad, n; exit 1 }
    printf "layers: PASS: %d includes in src/ and tools/ point down core <- ops <- nn <- train/data <- io <- onnx <- modular <- tools\n", n
}'
