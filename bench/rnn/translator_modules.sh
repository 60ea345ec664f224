#!/bin/sh
# A Tatoeba translator trained both ways (English <-> French), decomposed per target
# language (docs/sequences.md, "Decomposing a translator") at several max_remove,
# each time: every module's greedy BLEU on the test pairs into its language beside the
# model's, then both modules composed (routed by the language tag) and evaluated.
# With WEAK=model.tsr (a weaker model trained the same way, so the same vocabularies):
# replace its module for language REPLACE_CLASS (default 1, eng) by the strong model's
# (of REPLACE_MR, default 0.05, which must be among MAX_REMOVE).
#
#   sh bench/rnn/translator_modules.sh STRONG.tsr [OUT_DIR]
# Settings: MAX_REMOVE="0.2 0.1 0.05" POSITIVES=500 THREADS=1 TESSERA=build/tessera
# The models (4 and 1 epochs, 1 thread; about 45 and 12 minutes on a 2-vCPU Zen 4):
#   tessera train --data tatoeba --both-ways --max-len 13 --target-len 14 --optimizer adam \
#     --lr 0.002 --batch 64 --epochs 4 --threads 1 --out strong.tsr
set -eu
STRONG=$1
OUT=${2:-/tmp/translator-modules}
T=${TESSERA:-build/tessera}
TH=${THREADS:-1}
mkdir -p "$OUT"
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cpus, $(date -u +%Y-%m-%dT%H:%MZ)"
first=1
for mr in ${MAX_REMOVE:-0.2 0.1 0.05}; do
    d=$OUT/mr$mr
    rm -rf "$d"
    echo "## max_remove $mr"
    "$T" decompose "$STRONG" --out "$d" --max-remove "$mr" --positives "${POSITIVES:-500}" --threads "$TH"
    "$T" compose "$d/class0.tsm" "$d/class1.tsm" --out "$d/composed.tsr" | head -n 2
    # the composed model's rows are its modules' bit for bit (test_translator_decompose):
    # its BLEU per language is the modules' above; evaluated once, as the check
    [ "$first" = 1 ] && "$T" eval "$d/composed.tsr" --threads "$TH" | tail -n 3
    first=0
done
if [ -n "${WEAK:-}" ]; then
    c=${REPLACE_CLASS:-1}
    mr=${REPLACE_MR:-0.05}
    d=$OUT/weak
    rm -rf "$d"
    echo "## replace: $WEAK's module for language $c by the strong model's (max_remove $mr)"
    "$T" eval "$WEAK" --threads "$TH" | tail -n 3
    "$T" decompose "$WEAK" --out "$d" --max-remove "$mr" --no-eval --quiet --threads "$TH" | tail -n 1
    "$T" replace "$d" --class "$c" --with "$OUT/mr$mr/class$c.tsm" --out "$d/replaced.tsr" | tail -n 1
    "$T" eval "$d/replaced.tsr" --threads "$TH" | tail -n 3
fi
