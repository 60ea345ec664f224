#!/bin/sh
# Lists every conditional jump whose flags come straight from a floating-point
# comparison ((v)ucomiss/sd, (v)comiss/sd) in the compiled constant-time code paths:
# the *_ct kernels, resize's forward, the recurrent forward and embedding_forward_ct,
# ts_argmax, ts_top_k, the branch-free preprocessing, and the
# kernels both modes share (gemm, convolution, dense, batch norm, layout, matmul,
# mask, add, concat). A jump on a compared value is a branch on data; the ones listed
# under "shared" must be on parameters (gemm's beta, batch norm's running variance),
# never on activations. x86-64 objdump output; docs/security.md.
#   sh bench/security/fp-branches.sh [BUILD]
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
scan() { # OBJECT REGEX
    objdump -d --no-show-raw-insn "$1" | awk -v pat="$2" -v obj="$1" '
    /^[0-9a-f]+ <.*>:$/ { fn = $2; infn = (fn ~ pat); last = ""; next }
    infn && /\t/ { split($0, a, "\t"); split(a[2], b, " "); op = b[1]
        if (op ~ /^j/ && op != "jmp") { if (last ~ /comis/) { print obj, fn, a[1], op, "after", last; hits++ } }
        else if (op ~ /^(v?u?comis|cmp|test|sub|add|and|or|xor|inc|dec|neg|bt)/) last = op }
    END { exit hits > 0 }'
}
status=0
echo "== constant-time kernels (expect nothing)"
for o in eltwise_ref unary_ref pool2d_ref softmax_ref loss_ref misc_ref; do
    scan "$B/src/ops/$o.o" '_ct[>.]' || status=1
done
scan "$B/src/ops/broadcast_ref.o" 'binary_forward[>.]' || status=1
scan "$B/src/ops/resize_ref.o" 'resize_forward' || status=1 # its taps branch on the shapes only
scan "$B/src/train/evaluate.o" 'ts_argmax|ts_top_k|confusion_add_ct' || status=1
scan "$B/src/data/preprocess.o" '_ct[>.]' || status=1
scan "$B/src/ops/rnn_ref.o" 'rnn_forward_ref|rnn_lengths_from_ids|embedding_forward_ct' || status=1
echo "== shared kernels (expect parameter tests only)"
for o in gemm_ref conv2d_ref dense_ref layout_ref matmul_ref; do
    scan "$B/src/ops/$o.o" 'forward|gemm|im2col|pad_|strided' || true
done
scan "$B/src/ops/batchnorm_ref.o" 'forward_infer' || true
scan "$B/src/nn/layer_mask.o" 'forward' || true
scan "$B/src/nn/layer_simple.o" 'add_forward|concat_forward|flatten_forward' || true
[ $status -eq 0 ] && echo "constant-time kernels: no jump on a floating-point comparison"
exit $status
