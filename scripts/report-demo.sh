#!/bin/sh
# `make report-demo`: a model's report opened in headless Chromium. Reuses `make demo`'s
# outputs (DEMO_OUT, default demo-out: the model, its --log folder and its modules)
# when they are there; otherwise trains the demo CNN briefly on Fashion-MNIST (one
# epoch on 12,000 images, about half a minute) and cuts its modules. Then writes the
# report, checks it in the browser (scripts/report-browser-check.js: no console error,
# nothing fetched, every figure non-empty) and prints the screenshot's path.
# THREADS=N limits the threads (default: all cores).
set -e
cd "$(dirname "$0")/.."
T=./build/tessera
TH=${THREADS:+--threads $THREADS}
OUT=${DEMO_OUT:-demo-out}
if [ -f "$OUT/fashion-demo.tsr" ] && [ -f "$OUT/run/metrics.csv" ] && [ -f "$OUT/modules/class0.tsm" ]; then
    echo "== reusing make demo's model, training log and modules in $OUT"
    MODEL=$OUT/fashion-demo.tsr
else
    OUT=${REPORT_DEMO_OUT:-report-demo-out}
    MODEL=$OUT/quick.tsr
    mkdir -p "$OUT"
    rm -rf "$OUT/run" "$OUT/modules"
    echo "== train: the demo CNN, 1 epoch on 12,000 Fashion-MNIST images (1,000 held out), logged to $OUT/run"
    # shellcheck disable=SC2086
    $T train --arch demo --data fashion-mnist --limit 12000 --val-split 1000 --epochs 1 --optimizer adam \
        --lr 0.002 --schedule cosine --batch 64 --log "$OUT/run" --log-every 10 --no-test --quiet $TH --out "$MODEL"
    echo "== decompose: one module per class"
    # shellcheck disable=SC2086
    $T decompose "$MODEL" --positives 200 --no-eval --quiet $TH --out "$OUT/modules"
fi
echo "== report"
# shellcheck disable=SC2086
$T report "$OUT/run" "$MODEL" --modules "$OUT/modules" $TH --out "$OUT/report.html"
echo "== browser check (headless Chromium)"
PW=$(sh scripts/report-browser-deps.sh) || { echo "report-demo: no browser check (see the line above)" >&2; exit 1; }
PLAYWRIGHT_DIR=$PW node scripts/report-browser-check.js "$OUT/report.html" "$OUT/report.png" --modules
echo "report:     $(cd "$OUT" && pwd)/report.html"
echo "screenshot: $(cd "$OUT" && pwd)/report.png"
