#!/bin/sh
# Timing-leak measurement of tessera inference (docs/security.md): dudect-style Welch
# t-tests of the default (oneDNN), reference and constant-time modes, on a small
# random-weight CNN for the image, zero, subnormal and null experiments, then on a trained
# model when one is at hand. Prints the set-up (date, CPU, commit, load) and one line
# per (experiment, mode); `make dudect` runs it after building.
#
# Settings (environment):
#   DUDECT_N=100000        measurements per (experiment, mode) on the small CNN
#   DUDECT_MODEL=FILE      a trained model (default: demo-out/fashion-demo.tsr, made by
#                          `make demo`, when present); DUDECT_MODEL_N=20000 measurements
#   DUDECT_CPU=N           pin to CPU N with taskset (default: not pinned)
#   DUDECT_SEED=1
# Typical time on one idle core of a 2.6 GHz x86: 2 minutes for the small CNN at
# 100000, 2 more for the demo CNN at 20000.
set -eu
cd "$(dirname "$0")/../.."
BIN=${1:-build/bench/dudect}
N=${DUDECT_N:-100000}
MODEL=${DUDECT_MODEL:-demo-out/fashion-demo.tsr}
MODEL_N=${DUDECT_MODEL_N:-20000}
SEED=${DUDECT_SEED:-1}
PIN=""
if [ -n "${DUDECT_CPU:-}" ] && command -v taskset >/dev/null 2>&1; then PIN="taskset -c $DUDECT_CPU"; fi
[ -x "$BIN" ] || { echo "bench/security/run.sh: $BIN not built (make dudect)" >&2; exit 1; }

echo "== dudect: timing of inference, default vs constant-time mode"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), family $(lscpu 2>/dev/null | sed -n 's/^CPU family:[[:space:]]*//p' | head -n1) model $(lscpu 2>/dev/null | sed -n 's/^Model:[[:space:]]*//p' | head -n1), $(nproc) cores visible${PIN:+, pinned: $PIN}"
echo "tessera: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## small CNN (conv8-relu-pool-conv16-relu-pool-dense, random weights), $N measurements each"
$PIN "$BIN" --arch small --experiment all --measurements "$N" --seed "$SEED"
if [ -f "$MODEL" ]; then
    echo
    echo "## trained model $MODEL, image experiment, $MODEL_N measurements each"
    $PIN "$BIN" --model "$MODEL" --experiment image --measurements "$MODEL_N" --seed "$SEED"
else
    echo
    echo "## no trained model ($MODEL missing; make demo makes one, or set DUDECT_MODEL)"
fi
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (after)"
