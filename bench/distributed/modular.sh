#!/bin/sh
# decompose, the CNNSplitter search and eval on 2 ranks against 1 (docs/distributed.md,
# "Evaluation and decomposition on several ranks"): ResNet-20 on CIFAR-10, 1 thread per
# rank, RUNS runs of each alternating which goes first; prints the median wall times,
# the speed-up, and whether the 2-rank printout equals the lone one (timings aside).
# Settings: MODEL (a trained ResNet-20 .tsr; default: 1 epoch on LIMIT samples, trained
# here), RUNS=3, LIMIT=10000, DATA_DIR=../shared/data. About RUNS x 5 min on 2 cores.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
LIMIT=${LIMIT:-10000}
DATA_DIR=${DATA_DIR:-../shared/data}
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "bench: no mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
MPIRUN="mpirun --allow-run-as-root --oversubscribe -np 2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
    MODEL=$tmp/r20.tsr
    "$T" train --arch resnet20 --data cifar10 --data-dir "$DATA_DIR" --limit "$LIMIT" --epochs 1 --threads 2 --quiet \
        --no-test --out "$MODEL" >/dev/null
fi
D="--data cifar10 --data-dir $DATA_DIR --threads 1"
# name, then the arguments after the model; {out} becomes an output folder
set -- \
    "decompose" "decompose $MODEL $D --quiet --out {out}" \
    "decompose-ga" "decompose $MODEL $D --quiet --method ga --population 20 --generations 5 --parents 10 --elites 4 --val-per-class 30 --no-eval --out {out}" \
    "eval" "eval $MODEL $D"
strip() { grep -v 'secs\|/s\| in \|written to' "$1" | sed 's/ [0-9.]*$//'; }
while [ $# -ge 2 ]; do
    name=$1; cmd=$2; shift 2
    : >"$tmp/t1"; : >"$tmp/t2"
    for r in $(seq "$RUNS"); do
        for who in $( [ $((r % 2)) -eq 1 ] && echo "1 2" || echo "2 1"); do
            rm -rf "$tmp/o$who"
            c=$(echo "$cmd" | sed "s|{out}|$tmp/o$who|")
            s=$(date +%s.%N)
            if [ "$who" = 1 ]; then "$T" $c >"$tmp/out$who"; else $MPIRUN "$T" $c >"$tmp/out$who"; fi
            awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN { print e - s }' >>"$tmp/t$who"
        done
    done
    med() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    same=no
    strip "$tmp/out1" >"$tmp/s1"; strip "$tmp/out2" >"$tmp/s2"
    if cmp -s "$tmp/s1" "$tmp/s2"; then same=yes; else diff "$tmp/s1" "$tmp/s2" | head -20; fi
    awk -v n="$name" -v a="$(med "$tmp/t1")" -v b="$(med "$tmp/t2")" -v s="$same" -v runs="$RUNS" 'BEGIN {
        printf "%-13s 1 rank %7.1f s   2 ranks %7.1f s   %.2fx   same printout: %s   (median of %d)\n", n, a, b, a / b, s, runs }'
done
