#!/bin/sh
# ResNet-20 on 3x32x32, tessera vs PyTorch (bench/resnet20/torch_bench.py), side by
# side in one run: inference at batch 128 (2 threads), a training step at batch 128
# (SGD momentum, 2 threads), bf16 inference and bf16 mixed-precision training at
# batch 128 (both against PyTorch fp32), and batch-1 latency (1 and 2 threads). RUNS runs of
# each (default 5), alternating which engine goes first; prints the medians, the
# ratio, GFLOP/s as a fraction of the measured sgemm ceiling, and peak memory.
# Settings: RUNS=5 SECONDS=4 (measuring time per run) PYTHON=/usr/bin/python3.
# Takes about RUNS x 12 x SECONDS plus start-up (8 minutes by default).
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
SECS=${SECONDS_EACH:-4}
PYTHON=${PYTHON:-/usr/bin/python3}
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 bench/resnet20/sgemm_ceiling.c -ldnnl -o "$tmp/sgemm"
ceiling=$(OMP_NUM_THREADS=2 "$tmp/sgemm" | sed 's/sgemm_gflops //')
echo "sgemm ceiling (oneDNN, 2 threads, 2048^3): $ceiling GFLOP/s"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
# mode batch threads
set -- "infer 128 2" "bf16 128 2" "train 128 2" "train-bf16 128 2" "infer 1 1" "infer 1 2"
for cfg in "$@"; do
    set -- $cfg
    mode=$1 batch=$2 threads=$3
    flag="" pmode=$mode
    [ "$mode" = train ] && flag="--train"
    [ "$mode" = bf16 ] && flag="--bf16" pmode=infer  # tessera bf16 against PyTorch fp32
    [ "$mode" = train-bf16 ] && flag="--train --bf16" pmode=train
    : >"$tmp/t" && : >"$tmp/p"
    for r in $(seq "$RUNS"); do
        runt() { OMP_NUM_THREADS=$threads "$T" bench resnet20 --input 3x32x32 --classes 10 --batch "$batch" --threads "$threads" --seconds "$SECS" $flag >"$tmp/out"; \
                 ms=$(sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' "$tmp/out"); gf=$(sed -n 's/.*images\/s, \([0-9.]*\) GFLOP.*/\1/p' "$tmp/out"); \
                 rss=$(sed -n 's/peak resident memory: \([0-9.]*\).*/\1/p' "$tmp/out"); echo "$ms $gf $rss" >>"$tmp/t"; }
        runp() { OMP_NUM_THREADS=$threads "$PYTHON" bench/resnet20/torch_bench.py "$pmode" "$batch" "$threads" "$SECS" >"$tmp/out"; \
                 ms=$(sed -n 's/.*median_ms \([0-9.]*\).*/\1/p' "$tmp/out"); rss=$(sed -n 's/.*peak_rss_mib \([0-9.]*\).*/\1/p' "$tmp/out"); \
                 echo "$ms $rss" >>"$tmp/p"; }
        if [ $((r % 2)) -eq 1 ]; then runt; runp; else runp; runt; fi
    done
    tm=$(sort -n "$tmp/t" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    tg=$(sort -n "$tmp/t" | awk '{a[NR]=$2} END {print a[int((NR+1)/2)]}')
    tr=$(awk '{print $3}' "$tmp/t" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    pm=$(sort -n "$tmp/p" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    pr=$(awk '{print $2}' "$tmp/p" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    awk -v m="$mode" -v b="$batch" -v th="$threads" -v tm="$tm" -v pm="$pm" -v tg="$tg" -v c="$ceiling" -v tr="$tr" -v pr="$pr" -v runs="$RUNS" 'BEGIN {
        printf "%s batch %d, %d threads (median of %d): tessera %.3f ms (%.0f img/s) | PyTorch %.3f ms (%.0f img/s) | speed ratio %.2fx | tessera %.1f GFLOP/s = %.0f%% of sgemm | peak RSS tessera %.0f MiB, PyTorch %.0f MiB (%.2fx)\n",
            m, b, th, runs, tm, b * 1000 / tm, pm, b * 1000 / pm, pm / tm, tg, 100 * tg / c, tr, pr, tr / pr }'
done
