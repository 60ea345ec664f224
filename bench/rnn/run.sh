#!/bin/sh
# tessera's recurrent layers against PyTorch 1.13 (Debian python3-torch) and
# onnxruntime (npm onnxruntime-node), same model, weights, batch, length and threads,
# run back to back: tokens per second at inference and per training step (PyTorch and
# tessera; onnxruntime infers only, on the ONNX file rnn_bench exports). Needs
# build/bench/rnn_bench (make bench-rnn builds it), /usr/bin/python3 with torch
# (apt-get install python3-torch) and node with npm (onnxruntime-node is installed
# into $ORT_DIR from the npm registry; --ignore-scripts skips its binary download).
# Settings: RNN_BATCH=64 RNN_STEPS=32 RNN_THREADS="1 2" RNN_RUNS=7 RNN_CELLS="lstm gru rnn"
#           ORT_DIR=/tmp/tessera-torchvision/ort (shared with bench/onnx/run.sh)
set -eu
BUILD=${1:-build}
HERE=$(dirname "$0")
B=${RNN_BATCH:-64}; T=${RNN_STEPS:-32}; RUNS=${RNN_RUNS:-7}
ORT_DIR=${ORT_DIR:-/tmp/tessera-torchvision/ort}
if [ ! -e "$ORT_DIR/node_modules/onnxruntime-node" ]; then
    mkdir -p "$ORT_DIR"
    (cd "$ORT_DIR" && npm init -y >/dev/null && npm install onnxruntime-node --ignore-scripts >/dev/null)
fi
cp "$HERE/ort_rnn.js" "$ORT_DIR/ort_rnn.js"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ortv=$(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$ORT_DIR/node_modules/onnxruntime-node/package.json")
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cpus, $(date -u +%Y-%m-%d); onnxruntime-node $ortv, torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
for th in ${RNN_THREADS:-1 2}; do
    for cell in ${RNN_CELLS:-lstm gru rnn}; do
        "$BUILD/bench/rnn_bench" "$cell" "$B" "$T" "$th" "$RUNS" "$tmp/$cell.onnx"
        /usr/bin/python3 "$HERE/torch_rnn.py" "$cell" "$B" "$T" "$th" "$RUNS"
        node "$ORT_DIR/ort_rnn.js" "$tmp/$cell.onnx" "$cell" "$B" "$T" "$th" "$RUNS"
    done
done
