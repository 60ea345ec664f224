#!/bin/sh
# Compressed activations (COMET, docs/compressed-activations.md) on ResNet-20 / CIFAR-10:
# the same training run without compression and with each error bound in EBS, then, for
# each, one `tessera bench --train` at batch 128 for the activation memory kept for
# backward, the activation buffers, the peak resident memory and the step time.
# Prints per configuration: test top-1, seconds per epoch, the activations kept for
# backward in training on the real images (the last epoch's largest step, as `train`
# prints it), and from `bench` on random batches: step time, activation buffers, kept
# for backward (and its ratio), peak RSS.
# Settings: EPOCHS=3 LIMIT=5000 (training samples; 0: all 50,000) THREADS=1 SEED=1
# EBS="0.01 0.05" BATCH=128 DATA=../shared/data/cifar10 (relative to the repository)
# TESSERA=./build/tessera LOG_DIR (unset; a directory to keep each run's training log).
set -eu
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-5000}
THREADS=${THREADS:-1}
SEED=${SEED:-1}
EBS=${EBS:-0.01 0.05}
BATCH=${BATCH:-128}
DATA=${DATA:-../shared/data/cifar10}
T=${TESSERA:-./build/tessera}
[ -x "$T" ] || { echo "bench: build/tessera not built (make all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
limit=""
[ "$LIMIT" -gt 0 ] && limit="--limit $LIMIT"
train="--arch resnet20 --data $DATA $limit --epochs $EPOCHS --batch $BATCH --lr 0.1 --momentum 0.9 --weight-decay 5e-4 \
--schedule cosine --augment crop,flip --seed $SEED --threads $THREADS --quiet"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); ResNet-20, $EPOCHS epochs on ${LIMIT} samples (0: all), batch $BATCH, $THREADS thread(s)"
printf '%-10s %7s %9s %24s %9s %12s %22s %9s\n' eb top-1 s/epoch kept-MiB-training step-ms buffers-MiB kept-MiB-bench peak-MiB

for eb in none $EBS; do
    opt=""
    [ "$eb" = none ] || opt="--compress-activations $eb"
    OMP_NUM_THREADS=$THREADS "$T" train $train $opt --out "$tmp/m.tsr" >"$tmp/train.log" 2>&1
    acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p' "$tmp/train.log")
    if [ -n "${LOG_DIR:-}" ]; then mkdir -p "$LOG_DIR" && cp "$tmp/train.log" "$LOG_DIR/train-$eb.log"; fi
    real=$(sed -n 's/^epoch .*| activations kept \([0-9.]*\) of \([0-9.]*\) MiB (\([0-9.]*x\)).*/\1 of \2 (\3)/p' "$tmp/train.log" | tail -1)
    [ -n "$real" ] || real=-
    secs=$(sed -n 's/^epoch [0-9]*: .*| \([0-9.]*\)s$/\1/p' "$tmp/train.log" | awk '{s += $1; n++} END {if (n) printf "%.1f", s / n}')
    OMP_NUM_THREADS=$THREADS "$T" bench resnet20 --train --batch "$BATCH" --threads "$THREADS" --iters 5 --warmup 2 \
        $opt >"$tmp/bench.log"
    step=$(sed -n 's/^time per batch: median \([0-9.]*\) ms.*/\1/p' "$tmp/bench.log")
    buf=$(sed -n 's/^activation buffers: \([0-9.]*\) MiB.*/\1/p' "$tmp/bench.log")
    kept=$(sed -n 's/^kept for backward: \([0-9.]*\) MiB compressed of \([0-9.]*\) MiB (\([0-9.]*x\).*/\1 of \2 (\3)/p; s/^kept for backward: \([0-9.]*\) MiB$/\1/p' "$tmp/bench.log")
    peak=$(sed -n 's/^peak resident memory: \([0-9.]*\) MiB.*/\1/p' "$tmp/bench.log")
    printf '%-10s %7s %9s %24s %9s %12s %22s %9s\n' "$eb" "$acc" "$secs" "$real" "$step" "$buf" "$kept" "$peak"
done
