#!/bin/sh
# tessera's recurrent layers against PyTorch 1.13 (Debian python3-torch), same model,
# batch, length and threads, run back to back: tokens per second at inference and per
# training step. Needs build/bench/rnn_bench (make bench-rnn builds it) and
# /usr/bin/python3 with torch (apt-get install python3-torch).
# Settings: RNN_BATCH=64 RNN_STEPS=32 RNN_THREADS="1 2" RNN_RUNS=7 RNN_CELLS="lstm gru rnn"
set -eu
BUILD=${1:-build}
B=${RNN_BATCH:-64}; T=${RNN_STEPS:-32}; RUNS=${RNN_RUNS:-7}
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cpus, $(date -u +%Y-%m-%d)"
for th in ${RNN_THREADS:-1 2}; do
    for cell in ${RNN_CELLS:-lstm gru rnn}; do
        "$BUILD/bench/rnn_bench" "$cell" "$B" "$T" "$th" "$RUNS"
        /usr/bin/python3 "$(dirname "$0")/torch_rnn.py" "$cell" "$B" "$T" "$th" "$RUNS"
    done
done
