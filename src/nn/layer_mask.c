/* mask: out = in * keep, where keep is a per-sample tensor of the input's shape
 * (a buffer, not trained) holding 1 for units a module keeps and 0 for units it
 * removes. Decomposition inserts one after each ReLU (src/modular). A multiply,
 * not a branch, so the cost and timing do not depend on the mask's contents. */
#include "layers.h"

ts_status mask_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs != 1)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: mask '%s' takes exactly one input, got %d", source, l->line, l->name,
                       l->ninputs);
    l->out = *input_shape(m, l, 0);
    int li = (int)(l - m->layers);
    l->mask = model_add_tensor(ctx, m, li, "keep", TS_TENSOR_BUFFER, &l->out);
    return l->mask < 0 ? ts_ctx_status(ctx) : TS_OK;
}

/* x, out: (N, U); keep: (U) */
static void mask_apply(size_t n, size_t u, float *out, const float *x, const float *keep, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (n * u > 65536)
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < u; j++) out[i * u + j] = x[i * u + j] * keep[j];
}

ts_status mask_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    mask_apply((size_t)m->exec.n, (size_t)shape_numel(&l->out), m->exec.ls[li].out, layer_input(m, li, 0),
               tensor_data(m, l->mask), ts_ctx_threads(ctx));
    return TS_OK;
}

/* d in = d out * keep */
ts_status mask_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    mask_apply((size_t)m->exec.n, (size_t)shape_numel(&l->out), din, m->exec.ls[li].grad, tensor_data(m, l->mask),
               ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
