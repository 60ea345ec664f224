#!/bin/sh
# The end-to-end demo: train the demo CNN on Fashion-MNIST, evaluate it, inspect it,
# classify a few test images, cut it into per-class modules and compose a four-class
# model from them, then write the HTML report of it all. Run by `make demo` after the build.
set -e
cd "$(dirname "$0")/.."
T=./build/tessera
OUT=${DEMO_OUT:-demo-out}
mkdir -p "$OUT"
echo "== tessera demo: the demo CNN on Fashion-MNIST (Debian package dataset-fashion-mnist)"
$T info demo
echo
rm -rf "$OUT/run"
echo "== train: 3 epochs, Adam, cosine schedule, batch 64"
$T train --arch demo --data fashion-mnist --epochs 3 --optimizer adam --lr 0.002 --schedule cosine \
    --batch 64 --seed 1 --log "$OUT/run" --log-every 50 --out "$OUT/fashion-demo.tsr" --checkpoint "$OUT/fashion-demo.ckpt"
echo
echo "== eval"
$T eval "$OUT/fashion-demo.tsr" --data fashion-mnist
echo
echo "== predict: the first five test images"
$T predict "$OUT/fashion-demo.tsr" --data fashion-mnist --index 0,1,2,3,4
echo
echo "== decompose: one module per class (concern + tangling identification, channelled output)"
rm -rf "$OUT/modules"
$T decompose "$OUT/fashion-demo.tsr" --data fashion-mnist --out "$OUT/modules"
echo
echo "== compose: four classes from the modules, no retraining (Trouser, Sandal, Bag, Ankle boot)"
$T compose "$OUT/modules/class1.tsm" "$OUT/modules/class5.tsm" "$OUT/modules/class8.tsm" \
    "$OUT/modules/class9.tsm" --out "$OUT/four-classes.tsr"
$T eval "$OUT/four-classes.tsr" | head -2
echo
echo "== report: curves, confusion matrix, mistakes, saliency maps and the modules, in one HTML file"
$T report "$OUT/run" "$OUT/fashion-demo.tsr" --modules "$OUT/modules" --out "$OUT/report.html"
echo "open $(cd "$OUT" && pwd)/report.html in a browser"
