#!/bin/sh
# Training-step throughput of ResNet-20 unpruned and pruned at initialization in each
# mode (the architectures bench/prune/run.sh trains: same TARGET and SEED), measured
# with `tessera bench ARCH --train` at batch 128, ROUNDS rounds alternating the
# networks so that a busy machine weighs on all alike; prints the median images/s of
# each and its ratio to the unpruned network's, beside the FLOPs ratio.
# Settings: ROUNDS=3 SECS=3 THREADS=1 TARGET=0.5 SEED=1.
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
THREADS=${THREADS:-1}
TARGET=${TARGET:-0.5}
SEED=${SEED:-1}
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$T" zoo resnet20 >"$tmp/unpruned.arch"
for mode in params flops memory; do
    "$T" prune --arch resnet20 --mode "$mode" --target "$TARGET" --seed "$SEED" --out "$tmp/$mode.arch" >/dev/null
done
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for n in unpruned params flops memory; do
        OMP_NUM_THREADS=$THREADS "$T" bench "$tmp/$n.arch" --train --batch 128 --threads "$THREADS" --seconds "$SECS" \
            | sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' >>"$tmp/$n.ips"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
base=$(median "$tmp/unpruned.ips")
bmacs=$("$T" info "$tmp/unpruned.arch" | sed -n 's/.* parameters ([^)]*), \([0-9]*\) MACs.*/\1/p')
printf '%-10s %12s %10s %12s\n' network images/s speed-up FLOPs-ratio
for n in unpruned params flops memory; do
    ips=$(median "$tmp/$n.ips")
    macs=$("$T" info "$tmp/$n.arch" | sed -n 's/.* parameters ([^)]*), \([0-9]*\) MACs.*/\1/p')
    printf '%-10s %12s %10s %12s\n' "$n" "$ips" "$(echo "$ips $base" | awk '{printf "%.2fx", $1 / $2}')" \
        "$(echo "$macs $bmacs" | awk '{printf "%.2f", $1 / $2}')"
done
