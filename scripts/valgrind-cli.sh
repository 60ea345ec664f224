#!/bin/sh
# valgrind memcheck over the CLI flows: train (oneDNN and reference kernels), a
# checkpoint and its resume, eval, predict (dataset samples; PNG and JPEG files),
# info, decompose, compose, report, ONNX export and import. Any invalid access, use
# of uninitialized memory, or definite or indirect leak fails. BUILD (default
# build-vg) must hold a tessera built without -march=native (valgrind 3.19 has no
# AVX-512): make BUILD=build-vg OPT="-O1 -g".
# Needs dataset-fashion-mnist; prints one line per flow and a summary.
set -u
BUILD=${1:-build-vg}
cd "$(dirname "$0")/.."
T="$(pwd)/$BUILD/tessera"
command -v valgrind >/dev/null || { echo "valgrind: not installed, skipped"; exit 0; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "valgrind: no fashion-mnist, skipped"; exit 0; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf 'input shape=1x28x28 classes=10\nconv2d name=c1 out=4 kernel=3 stride=2 padding=1\nbatchnorm name=bn\nrelu name=r1\nmaxpool kernel=2\nflatten\ndense name=fc out=classes\n' >"$dir/tiny.arch"
# libjpeg-turbo's SIMD code makes valgrind see decoded pixels as uninitialized (its
# vector shuffles defeat valgrind's tracking; the plain-C path gives the same pixels,
# tests/data/test_images.c passes both ways): the C path, under valgrind only
export JSIMD_FORCENONE=1
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --error-exitcode=99"
pass=0
fail=0
flow() {
    name=$1
    shift
    if (cd "$dir" && $VG "$T" "$@" >"$dir/$name.out" 2>"$dir/$name.err"); then
        pass=$((pass + 1))
        echo "valgrind $name: clean"
    else
        fail=$((fail + 1))
        echo "valgrind $name: FAILED"
        grep -E "==[0-9]+==" "$dir/$name.err" | head -n 30
    fi
}
common="--data fashion-mnist --limit 256 --batch 64 --threads 1 --quiet --no-test"
flow train train --arch tiny.arch $common --epochs 1 --log run --log-every 2 --checkpoint t.ckpt --out t.tsr
flow train-ref train --arch tiny.arch $common --epochs 1 --backend ref --out r.tsr
flow resume train --resume t.ckpt --epochs 2 --quiet --no-test --out t2.tsr
flow eval eval t2.tsr --data fashion-mnist --limit 200
flow predict predict t2.tsr --data fashion-mnist --index 0,1,2
flow predict-images predict t2.tsr "$(pwd)/tests/fixtures/images/progressive.jpg" \
    "$(pwd)/tests/fixtures/images/rgb8_interlaced.png" "$(pwd)/tests/fixtures/images/graya16.png"
flow info info t2.tsr
flow decompose decompose t2.tsr --out mods --positives 20 --classes 0,1,2 --quiet
flow compose compose mods/class0.tsm mods/class2.tsm --out two.tsr
flow report report run t2.tsr --modules mods --limit 100 --worst 3 --saliency 1 --out r.html
flow export export two.tsr --out two.onnx
flow import import two.onnx --out two-i.tsr
flow import-pytorch import "$(pwd)/tests/fixtures/onnx/mobilenetv2_train.onnx" --out mb.tsr
echo "valgrind: $pass flows clean, $fail failed"
[ "$fail" -eq 0 ]
