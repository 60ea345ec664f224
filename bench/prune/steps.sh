#!/bin/sh
# Training-step throughput of ResNet-20 unpruned and pruned at initialization in each
# mode (the architectures bench/prune/run.sh trains: same TARGET and SEED), measured
# with `tessera bench ARCH --train` at batch 128, ROUNDS rounds alternating the
# networks so that a busy machine weighs on all alike; prints the median images/s of
# each and its ratio to the unpruned network's, beside the FLOPs ratio. Each mode is
# pruned once per width multiple in MULTIPLES (`tessera prune --multiple-of`; 1: any
# width); a mode that cannot reach the target at a multiple is skipped with a note.
# Settings: ROUNDS=3 SECS=3 THREADS=1 TARGET=0.5 SEED=1 MULTIPLES="1 8 16".
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
THREADS=${THREADS:-1}
TARGET=${TARGET:-0.5}
SEED=${SEED:-1}
MULTIPLES=${MULTIPLES:-1 8 16}
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$T" zoo resnet20 >"$tmp/unpruned.arch"
nets=unpruned
for k in $MULTIPLES; do
    for mode in params flops memory; do
        n=$mode; [ "$k" -gt 1 ] && n=$mode/$k
        if "$T" prune --arch resnet20 --mode "$mode" --target "$TARGET" --seed "$SEED" --multiple-of "$k" \
            --out "$tmp/$mode-$k.arch" >/dev/null 2>"$tmp/err"; then
            nets="$nets $mode-$k"
        else
            echo "$n: $(cat "$tmp/err")"
        fi
    done
done
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for n in $nets; do
        OMP_NUM_THREADS=$THREADS "$T" bench "$tmp/$n.arch" --train --batch 128 --threads "$THREADS" --seconds "$SECS" \
            | sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' >>"$tmp/$n.ips"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
base=$(median "$tmp/unpruned.ips")
bmacs=$("$T" info "$tmp/unpruned.arch" | sed -n 's/.* parameters ([^)]*), \([0-9]*\) MACs.*/\1/p')
printf '%-12s %12s %10s %12s\n' network images/s speed-up FLOPs-ratio
for n in $nets; do
    ips=$(median "$tmp/$n.ips")
    macs=$("$T" info "$tmp/$n.arch" | sed -n 's/.* parameters ([^)]*), \([0-9]*\) MACs.*/\1/p')
    label=$(echo "$n" | sed 's/-1$//; s/-\([0-9]*\)$/\/\1/')
    printf '%-12s %12s %10s %12s\n' "$label" "$ips" "$(echo "$ips $base" | awk '{printf "%.2fx", $1 / $2}')" \
        "$(echo "$macs $bmacs" | awk '{printf "%.2f", $1 / $2}')"
done
