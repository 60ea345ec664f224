/* reducemean: the mean over some per-sample axes, which stay with size 1 (ONNX
 * ReduceMean with keepdims=1; the importer views keepdims=0 away). The kernels are
 * reducemean_forward_ref / reducemean_backward_ref (ops/reduce_ref.c), which do not
 * branch on values and so also serve constant-time inference. */
#include "layers.h"

static unsigned axes_mask(const layer *l) {
    unsigned mask = 0;
    for (int k = 0; k < l->naxes; k++) mask |= 1u << l->axes[k];
    return mask;
}

ts_status reducemean_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    unsigned seen = 0;
    for (int k = 0; k < l->naxes; k++) {
        const int a = l->axes[k];
        if (a >= in->ndim || (seen >> a & 1u)) {
            char is[96];
            return ts_fail(ctx, TS_ESHAPE,
                           "%s:%d: reducemean '%s': axis %d is %s (the input '%s' is %s, axes 0..%d, each once)",
                           source, l->line, l->name, a, a >= in->ndim ? "out of range" : "repeated",
                           m->layers[l->inputs[0]].name, shape_text(in, is, sizeof is), in->ndim - 1);
        }
        seen |= 1u << a;
    }
    l->out = *in;
    for (int k = 0; k < l->naxes; k++) l->out.dims[l->axes[k]] = 1;
    return TS_OK;
}

ts_status reducemean_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const ts_shape *in = input_shape(m, l, 0);
    reducemean_forward_ref(m->exec.n, in->ndim, in->dims, axes_mask(l), m->exec.ls[li].out, layer_input(m, li, 0),
                           ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status reducemean_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const ts_shape *in = input_shape(m, l, 0);
    reducemean_backward_ref(m->exec.n, in->ndim, in->dims, axes_mask(l), din, m->exec.ls[li].grad,
                            ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
