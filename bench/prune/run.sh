#!/bin/sh
# ResNet-20 on CIFAR-10, unpruned against pruned at initialization (tessera prune --arch,
# docs/pruning.md) in each mode, every network trained from scratch with the same
# settings and epochs; then the trained unpruned model pruned by filter norms
# (tessera prune MODEL) and fine-tuned for FT_EPOCHS. Prints per network: parameters,
# FLOPs (2 x MACs), memory, test top-1, and seconds per training epoch.
# Settings: EPOCHS=3 LIMIT=20000 (training samples; 0: all 50,000) THREADS=1 TARGET=0.5
# SEED=1 FT_EPOCHS=1 MULTIPLE=1 (widths kept to multiples of it: tessera prune
# --multiple-of) DATA=../shared/data/cifar10 (relative to the repository).
set -eu
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-20000}
THREADS=${THREADS:-1}
TARGET=${TARGET:-0.5}
SEED=${SEED:-1}
FT_EPOCHS=${FT_EPOCHS:-1}
MULTIPLE=${MULTIPLE:-1}
DATA=${DATA:-../shared/data/cifar10}
T=./build/tessera
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
limit=""
[ "$LIMIT" -gt 0 ] && limit="--limit $LIMIT"
train="--data $DATA $limit --batch 128 --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --schedule cosine \
--augment crop,flip --seed $SEED --threads $THREADS --quiet"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); ResNet-20, $EPOCHS epochs on $([ "$LIMIT" -gt 0 ] && echo "$LIMIT" || echo all) samples, $THREADS thread(s), target $TARGET, widths multiples of $MULTIPLE"
printf '%-16s %10s %12s %12s %8s %10s\n' network params FLOPs memory top-1 s/epoch

# one row: name, the model file, the train log
row() {
    OMP_NUM_THREADS=$THREADS "$T" info "$2" >"$tmp/info"
    params=$(sed -n 's/^total: [0-9]* layers, \([0-9]*\) parameters.*/\1/p' "$tmp/info")
    macs=$(sed -n 's/.* parameters ([^)]*), \([0-9]*\) MACs.*/\1/p' "$tmp/info")
    acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p' "$3")
    secs=$(sed -n 's/^epoch [0-9]*: .*| \([0-9.]*\)s$/\1/p' "$3" | awk '{s += $1; n++} END {if (n) printf "%.1f", s / n}')
    mem=${4:--}
    printf '%-16s %10s %12s %12s %8s %10s\n' "$1" "$params" "$((2 * macs))" "$mem" "$acc" "$secs"
}

OMP_NUM_THREADS=$THREADS "$T" train --arch resnet20 $train --epochs "$EPOCHS" --out "$tmp/base.tsr" >"$tmp/base.log" 2>&1
"$T" prune --arch resnet20 --mode memory --target 0.01 --out "$tmp/x.arch" >"$tmp/p" # the unpruned memory figure
row unpruned "$tmp/base.tsr" "$tmp/base.log" "$(sed -n 's/^memory per sample: \([0-9]*\) .*/\1/p' "$tmp/p")"
for mode in params flops memory; do
    if ! "$T" prune --arch resnet20 --mode "$mode" --target "$TARGET" --seed "$SEED" --multiple-of "$MULTIPLE" \
        --out "$tmp/$mode.arch" >"$tmp/p" 2>"$tmp/err"; then
        echo "init-$mode: $(cat "$tmp/err")"
        continue
    fi
    OMP_NUM_THREADS=$THREADS "$T" train --arch "$tmp/$mode.arch" $train --epochs "$EPOCHS" --out "$tmp/$mode.tsr" \
        >"$tmp/$mode.log" 2>&1
    row "init-$mode" "$tmp/$mode.tsr" "$tmp/$mode.log" "$(sed -n 's/^memory per sample: [0-9]* -> \([0-9]*\) .*/\1/p' "$tmp/p")"
done
if [ "$FT_EPOCHS" -gt 0 ] && ! "$T" prune "$tmp/base.tsr" --mode flops --target "$TARGET" --multiple-of "$MULTIPLE" \
    --out "$tmp/l1.tsr" >"$tmp/p" 2>"$tmp/err"; then
    echo "l1-flops: $(cat "$tmp/err")"
elif [ "$FT_EPOCHS" -gt 0 ]; then
    OMP_NUM_THREADS=$THREADS "$T" train --init "$tmp/l1.tsr" $train --epochs "$FT_EPOCHS" --lr 0.01 --out "$tmp/l1ft.tsr" \
        >"$tmp/l1.log" 2>&1
    row "l1-flops+ft$FT_EPOCHS" "$tmp/l1ft.tsr" "$tmp/l1.log" "$(sed -n 's/^memory per sample: [0-9]* -> \([0-9]*\) .*/\1/p' "$tmp/p")"
fi
