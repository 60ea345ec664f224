#!/bin/sh
# Data-parallel ResNet-20 training on CIFAR-10 (docs/distributed.md): 1 rank x 1 thread
# against `mpirun -np 2` x 1 thread, the same global batch (128) and samples, RUNS runs
# of each alternating which goes first; prints the medians of training images/s, the
# speed-up and scaling efficiency, the time per step spent in allreduce (not overlapped
# with backward: all of it is exposed, waiting for the slower rank included), the
# loopback cost of the allreduce alone (allreduce_bench.c, after a barrier), and a
# scaling model for 2-64 machines (ring allreduce, alpha-beta, 10 and 100 Gbit/s).
# Settings: RUNS=5 LIMIT=5120 (training samples per run) DATA_DIR=../shared/data TORCH_RUNS=3.
# Then PyTorch DistributedDataParallel on the same network, side by side (torch_ddp.py).
# Takes about RUNS x 25 s on a 2-core machine.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
LIMIT=${LIMIT:-5120}
DATA_DIR=${DATA_DIR:-../shared/data}
BATCH=128
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "bench: no mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpicc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -DTS_HAVE_MPI -Iinclude -Itools bench/distributed/allreduce_bench.c \
    tools/dist_mpi.c -o "$tmp/allreduce_bench"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
args="train --arch resnet20 --data cifar10 --data-dir $DATA_DIR --limit $LIMIT --batch $BATCH --epochs 1 --threads 1 --quiet --no-test"
one() { "$T" $args --out "$tmp/one.tsr" >"$tmp/out"; sed -n 's/.*(\([0-9.]*\)s of training).*/\1/p' "$tmp/out" >>"$tmp/t1"; }
two() { $MPIRUN -np 2 "$T" $args --out "$tmp/two.tsr" >"$tmp/out"; sed -n 's/.*(\([0-9.]*\)s of training).*/\1/p' "$tmp/out" >>"$tmp/t2"
        sed -n 's/.* \([0-9.]*\) ms per step in allreduce.*/\1/p' "$tmp/out" >>"$tmp/ar"; }
: >"$tmp/t1"; : >"$tmp/t2"; : >"$tmp/ar"
for r in $(seq "$RUNS"); do
    if [ $((r % 2)) -eq 1 ]; then one; two; else two; one; fi
done
med() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
t1=$(med "$tmp/t1"); t2=$(med "$tmp/t2"); ar=$(med "$tmp/ar")
# ResNet-20's gradients (272,474 floats) and the 1-float sums (loss, stop flag)
$MPIRUN -np 2 "$tmp/allreduce_bench" 1 272474 >"$tmp/lb"
lat=$(awk '$2 == 1 {print $3}' "$tmp/lb"); big=$(awk '$2 == 272474 {print $3}' "$tmp/lb")
steps=$(( (LIMIT + BATCH - 1) / BATCH ))
awk -v t1="$t1" -v t2="$t2" -v ar="$ar" -v n="$LIMIT" -v runs="$RUNS" -v steps="$steps" -v lat="$lat" -v big="$big" 'BEGIN {
    printf "ResNet-20 training, CIFAR-10, %d samples, global batch 128, 1 thread per rank (median of %d):\n", n, runs
    printf "  1 rank : %.1f s, %.0f images/s\n", t1, n / t1
    printf "  2 ranks: %.1f s, %.0f images/s: %.2fx, scaling efficiency %.0f%%\n", t2, n / t2, t1 / t2, 50 * t1 / t2
    printf "  allreduce per step (exposed, waiting included): %.2f ms of %.0f ms (%.1f%%)\n", ar, 1000 * t2 / steps, 100 * ar * steps / (1000 * t2)
    printf "  loopback allreduce after a barrier: 1 float %.1f us, 272,474 floats %.0f us\n", lat, big
    # Scaling model: weak scaling, 64 images per machine per step (the 2-rank run per
    # rank), compute = measured 2-rank step time minus its allreduce. Ring allreduce of
    # S bytes over p machines: 2(p-1) alpha + 2(p-1)/p S / B; 2 sums a step (gradients
    # with the running statistics and the loss; the stop flags, latency only).
    tc = 1000 * t2 / steps - ar; S = 272474 * 4; alpha = 50e-3
    printf "\nScaling model (ms; compute %.0f ms/step at 64 images per machine; alpha %.0f us per message):\n", tc, alpha * 1000
    printf "  %8s %14s %14s %14s %14s\n", "machines", "10G allreduce", "10G effic.", "100G allreduce", "100G effic."
    for (p = 2; p <= 64; p *= 2) {
        a10 = 2 * 2 * (p - 1) * alpha + 2 * (p - 1) / p * S * 8 / 10e9 * 1000
        a100 = 2 * 2 * (p - 1) * alpha + 2 * (p - 1) / p * S * 8 / 100e9 * 1000
        printf "  %8d %14.2f %13.1f%% %14.2f %13.1f%%\n", p, a10, 100 * tc / (tc + a10), a100, 100 * tc / (tc + a100)
    }
}'

# PyTorch's DistributedDataParallel (gloo, loopback) on the same network, global batch
# and threads, measured in this run after tessera (torch_ddp.py; random input, so no
# data loading or augmentation on its side): 1 and 2 processes, TORCH_RUNS runs each,
# alternating; medians. Skipped without Debian's python3-torch.
TORCH_RUNS=${TORCH_RUNS:-3}
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    : >"$tmp/p1"; : >"$tmp/p2"
    for r in $(seq "$TORCH_RUNS"); do
        for w in $( [ $((r % 2)) -eq 1 ] && echo "1 2" || echo "2 1"); do
            /usr/bin/python3 bench/distributed/torch_ddp.py "$w" 30 | sed -n 's/.* \([0-9]*\) images\/s/\1/p' >>"$tmp/p$w"
        done
    done
    awk -v p1="$(med "$tmp/p1")" -v p2="$(med "$tmp/p2")" -v t1="$t1" -v t2="$t2" -v n="$LIMIT" -v runs="$TORCH_RUNS" 'BEGIN {
        printf "\nPyTorch %s DistributedDataParallel (gloo), the same ResNet-20, batch 128, 1 thread per process (median of %d):\n", "'"$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"'", runs
        printf "  1 process : %.0f images/s   tessera / PyTorch: %.2fx\n", p1, (n / t1) / p1
        printf "  2 processes: %.0f images/s: %.2fx   tessera / PyTorch: %.2fx\n", p2, p2 / p1, (n / t2) / p2
    }'
else
    echo "(PyTorch side skipped: /usr/bin/python3 has no torch; apt-get install python3-torch)"
fi
