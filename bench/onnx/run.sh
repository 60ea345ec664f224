#!/bin/sh
# `make bench-onnx`: tessera against onnxruntime on torchvision's classification models.
#
#   sh bench/onnx/run.sh [BUILD]      (after `make all build/bench/onnx_run`)
#
# Exports the models with PyTorch (bench/onnx/export_torchvision.py, random weights,
# fixed seed) into $TV_DIR, installs onnxruntime-node from npm into $TV_DIR/ort,
# then per model: tessera's parity with PyTorch, and for batch 1 and 32 at 1 and 2
# threads, $ROUNDS rounds alternating tessera (bench/onnx/onnx_run.c) and onnxruntime
# (bench/onnx/ort_run.js), each the median of several runs after a warm-up. Prints
# the median over rounds per engine and the ratio onnxruntime ms / tessera ms (above 1:
# tessera is faster), then the geometric mean of the ratios. A benchmark: it judges
# nothing, and `make test` does not run it.
#
# Environment: MODELS (space-separated, default below), OPSET (13), TV_DIR
# (/tmp/tessera-torchvision), ROUNDS (3), BATCHES ("1 32"), THREADS ("1 2"), AB (0; 1:
# also tessera with Winograd off, `onnx_run --winograd 0`, in the same rounds: two more
# columns, its ms and the Winograd speed-up), BASE (unset; a second build's directory, as
# BUILD: its onnx_run too in the same rounds, e.g. main before a change built in a git
# worktree: two more columns, its ms and the speed-up of BUILD over it).
set -eu
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
MODELS=${MODELS:-"resnet18 resnet50 mobilenet_v2 mobilenet_v3_small squeezenet1_1 shufflenet_v2_x1_0 efficientnet_b0 googlenet densenet121 regnet_y_400mf convnext_tiny vit_b_16"}
OPSET=${OPSET:-13}
TV_DIR=${TV_DIR:-/tmp/tessera-torchvision}
ROUNDS=${ROUNDS:-3}
BATCHES=${BATCHES:-"1 32"}
THREADS=${THREADS:-"1 2"}
AB=${AB:-0}
BASE=${BASE:-}
PY=/usr/bin/python3

if ! $PY -c "import torch, torchvision, onnx" 2>/dev/null; then
    echo "bench-onnx: installing python3-torch, python3-torchvision, python3-onnx" >&2
    apt-get install -y python3-torch python3-torchvision python3-onnx >/dev/null
fi
if [ ! -e "$TV_DIR/ort/node_modules/onnxruntime-node" ]; then
    mkdir -p "$TV_DIR/ort"
    (cd "$TV_DIR/ort" && npm init -y >/dev/null && npm install onnxruntime-node --ignore-scripts >/dev/null)
fi
cp "$HERE/ort_run.js" "$TV_DIR/ort/ort_run.js"
missing=""
for m in $MODELS; do [ -e "$TV_DIR/${m}_op$OPSET.onnx" ] || missing="$missing,$m"; done
if [ -n "$missing" ]; then
    $PY "$HERE/export_torchvision.py" "$TV_DIR" --opsets "$OPSET" --models "${missing#,}" 2>&1 | grep -v -i warn >&2 || true
fi

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
echo "bench-onnx $(date -u +%Y-%m-%d) on $cpu, $(nproc) cores; onnxruntime-node $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$TV_DIR/ort/node_modules/onnxruntime-node/package.json"), opset $OPSET, $ROUNDS rounds"
printf "%-20s %-34s %5s %3s %11s %11s %7s" model "parity vs PyTorch" batch thr "tessera ms" "ort ms" ratio
[ "$AB" = 1 ] && printf " %11s %7s" "direct ms" "wino x"
[ -n "$BASE" ] && printf " %11s %7s" "base ms" "vs base"
echo
logs=$(mktemp)
trap 'rm -f "$logs"' EXIT
for m in $MODELS; do
    f="$TV_DIR/${m}_op$OPSET.onnx"
    io="$TV_DIR/${m}_io.bin"
    if ! par=$("$BUILD/bench/onnx_run" "$f" "$io" 2>&1); then
        printf "%-20s %s\n" "$m" "does not import: $(echo "$par" | tail -1)"
        continue
    fi
    par=$(echo "$par" | sed 's/^parity //')
    for b in $BATCHES; do
        reps=20
        [ "$b" -gt 1 ] && reps=5
        for t in $THREADS; do
            : > "$logs"
            for r in $(seq "$ROUNDS"); do
                OMP_NUM_THREADS=$t "$BUILD/bench/onnx_run" "$f" "$io" --threads "$t" --batch "$b" --reps $reps |
                    sed -n "s/.*ms_b$b=\([0-9.]*\).*/T \1/p" >> "$logs"
                node "$TV_DIR/ort/ort_run.js" "$f" "$io" "$b" "$t" $reps | sed -n "s/ms_b$b=\([0-9.]*\)/O \1/p" >> "$logs"
                if [ "$AB" = 1 ]; then
                    OMP_NUM_THREADS=$t "$BUILD/bench/onnx_run" "$f" "$io" --threads "$t" --batch "$b" --reps $reps \
                        --winograd 0 | sed -n "s/.*ms_b$b=\([0-9.]*\).*/D \1/p" >> "$logs"
                fi
                if [ -n "$BASE" ]; then
                    OMP_NUM_THREADS=$t "$BASE/bench/onnx_run" "$f" "$io" --threads "$t" --batch "$b" --reps $reps |
                        sed -n "s/.*ms_b$b=\([0-9.]*\).*/B \1/p" >> "$logs"
                fi
            done
            tm=$(awk '$1=="T"{print $2}' "$logs" | median)
            om=$(awk '$1=="O"{print $2}' "$logs" | median)
            ratio=$(awk -v o="$om" -v t="$tm" 'BEGIN{printf "%.2f", o/t}')
            printf "%-20s %-34s %5s %3s %11s %11s %7s" "$m" "$par" "$b" "$t" "$tm" "$om" "$ratio"
            if [ "$AB" = 1 ]; then
                dm=$(awk '$1=="D"{print $2}' "$logs" | median)
                printf " %11s %7s" "$dm" "$(awk -v d="$dm" -v t="$tm" 'BEGIN{printf "%.2f", d/t}')"
            fi
            if [ -n "$BASE" ]; then
                bm=$(awk '$1=="B"{print $2}' "$logs" | median)
                printf " %11s %7s" "$bm" "$(awk -v d="$bm" -v t="$tm" 'BEGIN{printf "%.2f", d/t}')"
            fi
            echo
            echo "$ratio" >> "$logs.ratios"
            par=""
        done
    done
done
awk '{s+=log($1); n++} END {if (n) printf "geometric mean ratio (onnxruntime ms / tessera ms) over %d runs: %.2f\n", n, exp(s/n)}' "$logs.ratios"
rm -f "$logs.ratios"
