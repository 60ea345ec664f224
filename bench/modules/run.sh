#!/bin/sh
# bench/modules: how small modules get, and what composing them costs, per method.
# Prints, for the activation method (Pan & Rajan) and the grad method (learned kernel
# masks, GradSplitter-style): the decompose table (kernels, parameters, MACs kept per
# module), the mean kernel retention (KRR), the composed model's top-1 beside the
# origin's, the size of one module file and of the origin's, and `tessera bench` of the
# origin and of all modules composed (inference, batch 64). Then `tessera extract` for
# a few class pairs (SeaM-style sub-task models): the extraction's report, the file size
# and the inference speed of the origin and the extracted model, side by side. A
# benchmark: it passes or fails nothing and `make test` does not run it.
#
#   sh bench/modules/run.sh                       # trains the demo CNN on Fashion-MNIST first
#   MODEL=demo-out/fashion-demo.tsr sh bench/modules/run.sh
#   GRAD_ARGS="--epochs 8 --alpha 0.05" sh bench/modules/run.sh
#   METHODS= EXTRACT_CLASSES="2,4 0,2,4,6" sh bench/modules/run.sh   # extraction only
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
for method in ${METHODS-activation grad}; do
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

# extract: a smaller model for a sub-task (SeaM-style), against the origin
for pair in ${EXTRACT_CLASSES:-3,5 0,6 2,4}; do
    echo
    echo "== extract --classes $pair"
    # shellcheck disable=SC2086
    $T extract "$MODEL" --classes "$pair" ${EXTRACT_ARGS:-} --out "$OUT/extract-$pair.tsr" --quiet
    ls -l "$OUT/extract-$pair.tsr" | awk '{print "extracted file: " $5 " bytes"}'
    for b in 1 64; do
        o=$($T bench "$MODEL" --batch $b --threads 1 --seconds 2 | grep -o '[0-9.]* images/s' | head -1)
        x=$($T bench "$OUT/extract-$pair.tsr" --batch $b --threads 1 --seconds 2 | grep -o '[0-9.]* images/s' | head -1)
        echo "inference, batch $b, 1 thread: origin $o, extracted $x" |
            awk '{print $0 " (" sprintf("%.2f", $(NF-1) / $(NF-4)) "x)"}'
    done
done
