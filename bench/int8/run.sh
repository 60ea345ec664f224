#!/bin/sh
# int8 inference (tessera quantize) against fp32, side by side in one run:
#   1. quantizes MODEL (a ResNet-20 trained on CIFAR-10, or any CNN with its dataset)
#      and prints both models' test top-1 on the whole test split;
#   2. times inference at batch 128 (2 and 1 threads) and batch 1 (1 thread): tessera
#      int8, tessera fp32, and PyTorch fp32 (bench/resnet20/torch_bench.py, the same
#      ResNet-20 architecture with random weights: speed does not depend on them).
# RUNS runs of each (default 5), the engines' order rotating; prints medians and ratios.
# Usage: bench/int8/run.sh MODEL.tsr [DATA]   (DATA: default the model's own, e.g. cifar10)
# Settings: RUNS=5 SECONDS_EACH=3 PYTHON=/usr/bin/python3 DATA_DIR=...
set -eu
cd "$(dirname "$0")/../.."
MODEL=${1:?usage: bench/int8/run.sh MODEL.tsr [DATA]}
DATA=${2:-}
RUNS=${RUNS:-5}
SECS=${SECONDS_EACH:-3}
PYTHON=${PYTHON:-/usr/bin/python3}
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), flags:$(grep -m1 -o -w -e avx512_vnni -e avx512_bf16 -e amx_int8 /proc/cpuinfo | sort -u | tr '\n' ' '), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$T" quantize "$MODEL" ${DATA:+--data "$DATA"} ${DATA_DIR:+--data-dir "$DATA_DIR"} --threads 2 --out "$tmp/q.tsr" | grep -E "calibrated|convolutions in int8|test top-1"
for cfg in "128 2" "128 1" "1 1"; do
    set -- $cfg
    batch=$1 threads=$2
    : >"$tmp/i8" && : >"$tmp/f32" && : >"$tmp/pt"
    for r in $(seq "$RUNS"); do
        tb() { OMP_NUM_THREADS=$threads "$T" bench "$1" --batch "$batch" --threads "$threads" --seconds "$SECS" |
               sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' >>"$2"; }
        pb() { OMP_NUM_THREADS=$threads "$PYTHON" bench/resnet20/torch_bench.py infer "$batch" "$threads" "$SECS" |
               sed -n 's/.*median_ms \([0-9.]*\).*/\1/p' >>"$tmp/pt"; }
        case $((r % 3)) in
        1) tb "$tmp/q.tsr" "$tmp/i8"; tb "$MODEL" "$tmp/f32"; pb ;;
        2) pb; tb "$tmp/q.tsr" "$tmp/i8"; tb "$MODEL" "$tmp/f32" ;;
        *) tb "$MODEL" "$tmp/f32"; pb; tb "$tmp/q.tsr" "$tmp/i8" ;;
        esac
    done
    med() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    awk -v b="$batch" -v th="$threads" -v r="$RUNS" -v i8="$(med "$tmp/i8")" -v f="$(med "$tmp/f32")" -v p="$(med "$tmp/pt")" 'BEGIN {
        printf "batch %d, %d threads (median of %d): tessera int8 %.3f ms (%.0f img/s) | tessera fp32 %.3f ms (%.0f img/s) | PyTorch fp32 %.3f ms (%.0f img/s) | int8 vs PyTorch fp32 %.2fx, vs tessera fp32 %.2fx\n",
            b, th, r, i8, b * 1000 / i8, f, b * 1000 / f, p, b * 1000 / p, p / i8, f / i8 }'
done
