/* pad: ONNX Pad over the per-sample axes (constant, reflect or edge; negative pads
 * crop). The kernels are pad_forward_ref / pad_backward_ref (ops/layout_ref.c). */
#include "layers.h"

ts_status pad_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    const int r = in->ndim;
    if (l->npads != 2 * r) {
        char text[160];
        attr_write_value(attr_find(LAYER_PAD, "pads"), &l->attrs, text, sizeof text);
        return ts_fail(ctx, TS_EFORMAT,
                       "%s:%d: pad '%s': pads=%s has %d values, expected %d (begins then ends of each axis of '%s', "
                       "%d-d)",
                       source, l->line, l->name, text, l->npads, 2 * r, m->layers[l->inputs[0]].name, r);
    }
    l->out.ndim = r;
    for (int d = 0; d < r; d++) {
        const int64_t begin = l->pads[d], end = l->pads[r + d];
        const int64_t crop = (begin < 0 ? -begin : 0) + (end < 0 ? -end : 0);
        if (crop >= in->dims[d])
            return ts_fail(ctx, TS_ESHAPE,
                           "%s:%d: pad '%s': pads %lld and %lld crop all %lld values of axis %d of '%s' (at least one "
                           "must stay)",
                           source, l->line, l->name, (long long)begin, (long long)end, (long long)in->dims[d], d,
                           m->layers[l->inputs[0]].name);
        l->out.dims[d] = in->dims[d] + begin + end;
    }
    return TS_OK;
}

ts_status pad_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const ts_shape *in = input_shape(m, l, 0);
    pad_forward_ref(m->exec.n, in->ndim, in->dims, l->pads, (pad_mode)l->pad_mode, l->value, m->exec.ls[li].out,
                    layer_input(m, li, 0), ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status pad_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const ts_shape *in = input_shape(m, l, 0);
    pad_backward_ref(m->exec.n, in->ndim, in->dims, l->pads, (pad_mode)l->pad_mode, din, m->exec.ls[li].grad,
                     ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
