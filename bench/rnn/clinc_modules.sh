#!/bin/sh
# The CLINC150 intent classifiers of the zoo (lstm-clinc, gru-clinc, rnn-clinc: embedding
# 64, one recurrent layer of 128 units, dense 151), each trained as in bench/RESULTS.md
# ("Accuracy: CLINC150"), decomposed into 151 modules by Imtiaz et al.'s rolled rule at
# each max_remove, all 151 composed back and evaluated on the 5,500 test texts beside
# the model (the issue's decomposition cost, many-to-one, for the three cells).
#
#   sh bench/rnn/clinc_modules.sh [OUT_DIR]
# Settings: CELLS="lstm gru rnn" MAX_REMOVE="0.05 0.2" EPOCHS=10 THREADS=1
#           DATA_DIR=../shared/data TESSERA=build/tessera
set -eu
OUT=${1:-/tmp/clinc-modules}
T=${TESSERA:-build/tessera}
TH=${THREADS:-1}
DD=${DATA_DIR:-../shared/data}
mkdir -p "$OUT"
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cpus, $(date -u +%Y-%m-%dT%H:%MZ)"
secs() { date +%s; }
for cell in ${CELLS:-lstm gru rnn}; do
    m=$OUT/$cell-clinc.tsr
    t0=$(secs)
    "$T" train --data clinc_oos --data-dir "$DD" --arch "$cell-clinc" --optimizer adam --lr 0.002 --batch 64 \
        --epochs "${EPOCHS:-10}" --threads "$TH" --seed 1 --no-test --quiet --out "$m" >/dev/null
    echo "## $cell-clinc: trained in $(( $(secs) - t0 )) s"
    "$T" eval "$m" --data-dir "$DD" --threads "$TH" | sed -n 2p
    for mr in ${MAX_REMOVE:-0.05 0.2}; do
        d=$OUT/$cell-mr$mr
        rm -rf "$d"
        t0=$(secs)
        "$T" decompose "$m" --data-dir "$DD" --out "$d" --max-remove "$mr" --rolled --no-eval --quiet \
            --threads "$TH" | tail -n 1
        t1=$(secs)
        # shellcheck disable=SC2046 # the 151 module files, in class order
        "$T" compose $(ls "$d"/class*.tsm | sort -V) --out "$d/composed.tsr" >/dev/null
        echo "max_remove $mr: decomposed in $(( t1 - t0 )) s; composed model:"
        "$T" eval "$d/composed.tsr" --data-dir "$DD" --threads "$TH" | sed -n 2p
        echo "  (compose and eval $(( $(secs) - t1 )) s)"
    done
done
