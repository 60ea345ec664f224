#!/bin/sh
# Checks tessera's ONNX exports with the reference tools (not part of `make test`:
# they need python3-onnx and the npm package onnxruntime-node):
#   1. test_onnx writes every model it round-trips (zoo architectures, the new layer
#      kinds, imported PyTorch networks) with a TSIO file of its input and tessera's
#      output into build/onnx-check;
#   2. onnx.checker.check_model (Debian python3-onnx, /usr/bin/python3) on each;
#   3. onnxruntime-node runs each on the same input: outputs within
#      |ort - tessera| <= 1e-4*|tessera| + 1e-5 (scripts/ort-run.js).
# ORT_DIR must point at a node_modules holding onnxruntime-node (see ort-run.js for
# the offline install); without it step 3 is skipped with a message.
set -u
cd "$(dirname "$0")/.."
OUT=build/onnx-check
rm -rf "$OUT" && mkdir -p "$OUT"
make --no-print-directory build/tests/onnx/test_onnx >/dev/null || exit 1
TESSERA_ONNX_EXPORT_DIR=$OUT build/tests/onnx/test_onnx | tail -n 1
status=0
for m in "$OUT"/*.onnx; do
    name=$(basename "$m" .onnx)
    if /usr/bin/python3 -c "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)" "$m" 2>"$OUT/$name.checker"; then
        chk="checker ok"
    else
        chk="checker FAILED: $(tail -n 1 "$OUT/$name.checker")"
        status=1
    fi
    if [ -n "${ORT_DIR:-}${ORT_NODE_PATH:-}" ]; then
        ort=$(node scripts/ort-run.js "$m" "$OUT/${name}_io.bin" 2>&1 | tail -n 1) || status=1
    else
        ort="onnxruntime skipped (set ORT_DIR)"
    fi
    echo "$name: $chk; $ort"
done
exit $status
