#!/bin/sh
# bench/modules: how small modules get, and what composing them costs, per method.
# Prints, for the activation method (Pan & Rajan) and the grad method (learned kernel
# masks, GradSplitter-style): the decompose table (kernels, parameters, MACs kept per
# module), the mean kernel retention (KRR), the composed model's top-1 beside the
# origin's, the size of one module file and of the origin's, and `tessera bench` of the
# origin and of all modules composed (inference, batch 64). A benchmark: it passes or
# fails nothing and `make test` does not run it.
#
#   sh bench/modules/run.sh                       # trains the demo CNN on Fashion-MNIST first
#   MODEL=demo-out/fashion-demo.tsr sh bench/modules/run.sh
#   GRAD_ARGS="--epochs 8 --alpha 0.05" sh bench/modules/run.sh
set -e
cd "$(dirname "$0")/../.."
T=./build/tessera
OUT=${BENCH_OUT:-/tmp/tessera-bench-modules}
mkdir -p "$OUT"
make -j2 all >/dev/null
MODEL=${MODEL:-$OUT/fashion-demo.tsr}
if [ ! -f "$MODEL" ]; then
    echo "== training the demo CNN (make demo's recipe) into $MODEL"
    $T train --arch demo --data fashion-mnist --epochs 3 --optimizer adam --lr 0.002 --schedule cosine \
        --batch 64 --seed 1 --out "$MODEL" --quiet
fi
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== origin"
$T eval "$MODEL" | head -1
ls -l "$MODEL" | awk '{print "origin file: " $5 " bytes"}'
$T bench "$MODEL" --batch 64 --seconds 3 | tail -2
for method in activation grad; do
    echo
    echo "== decompose --method $method"
    rm -rf "$OUT/$method"
    args=""
    [ "$method" = grad ] && args="${GRAD_ARGS:-}"
    start=$(date +%s)
    # shellcheck disable=SC2086
    $T decompose "$MODEL" --method $method $args --out "$OUT/$method" --quiet
    echo "decompose wall time: $(( $(date +%s) - start )) s"
    ls -l "$OUT/$method"/class*.tsm | awk '{s += $5} END {print "module files: " NR ", " s / NR " bytes each on average"}'
    $T info "$OUT/$method/class3.tsm" | sed -n 3p
    $T compose "$OUT/$method"/class[0-9].tsm --out "$OUT/$method-all.tsr" --max-macs 1 >/dev/null
    echo "all modules composed (one shared trunk, --max-macs 1):"
    $T eval "$OUT/$method-all.tsr" | head -1
    $T info "$OUT/$method-all.tsr" | grep '^total'
    $T bench "$OUT/$method-all.tsr" --batch 64 --seconds 3 | tail -2
done
