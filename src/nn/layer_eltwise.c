/* Elementwise layers: elu, selu, hardsigmoid, clip, hardswish, sqrt, erf, pow (one
 * shared set of functions over unary_*_ref), and prelu with its trainable slope
 * `<name>.slope` broadcast over each sample. */
#include "layers.h"

static size_t out_count(const ts_model *m, int li) {
    return (size_t)m->exec.n * (size_t)shape_numel(&m->layers[li].out);
}

/* ---- elu, selu, hardsigmoid, clip, hardswish, sqrt, erf, pow */
static unary_params unary_of(const layer *l) {
    unary_params p = {.alpha = l->alpha, .beta = l->beta, .gamma = l->gamma, .lo = l->lo, .hi = l->hi};
    switch (l->kind) {
    case LAYER_SELU: p.kind = UNARY_SELU; break;
    case LAYER_HARDSIGMOID: p.kind = UNARY_HARDSIGMOID; break;
    case LAYER_CLIP: p.kind = UNARY_CLIP; break;
    case LAYER_HARDSWISH: p.kind = UNARY_HARDSWISH; break;
    case LAYER_SQRT: p.kind = UNARY_SQRT; break;
    case LAYER_ERF: p.kind = UNARY_ERF; break;
    case LAYER_POW:
        p.kind = UNARY_POW;
        p.alpha = l->exponent;
        break;
    default: p.kind = UNARY_ELU; break;
    }
    return p;
}

ts_status eltwise_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    l->out = *input_shape(m, l, 0);
    return TS_OK;
}

ts_status eltwise_forward(ts_ctx *ctx, ts_model *m, int li) {
    const unary_params p = unary_of(&m->layers[li]);
    if (ctx->constant_time)
        unary_forward_ct(&p, out_count(m, li), m->exec.ls[li].out, layer_input(m, li, 0), ts_ctx_threads(ctx));
    else
        unary_forward_ref(&p, out_count(m, li), m->exec.ls[li].out, layer_input(m, li, 0), ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status eltwise_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const unary_params p = unary_of(&m->layers[li]);
    unary_backward_ref(&p, out_count(m, li), din, m->exec.ls[li].grad, layer_input(m, li, 0), ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ---- prelu: out = in > 0 ? in : slope * in */

/* The slope's shape right-aligned to the input's per-sample rank (leading 1s). */
static void slope_dims(const layer *l, const ts_shape *in, int64_t *sdims) {
    const int lead = in->ndim - l->tshape.ndim;
    for (int d = 0; d < in->ndim; d++) sdims[d] = d < lead ? 1 : l->tshape.dims[d - lead];
}

ts_status prelu_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    int ok = l->tshape.ndim >= 1 && l->tshape.ndim <= in->ndim;
    for (int d = 0; ok && d < l->tshape.ndim; d++) {
        const int64_t s = l->tshape.dims[d], x = in->dims[in->ndim - l->tshape.ndim + d];
        ok = s == 1 || s == x;
    }
    if (!ok) {
        char is[96], ss[96];
        return ts_fail(ctx, TS_ESHAPE,
                       "%s:%d: prelu '%s': slope shape %s does not broadcast to the input %s (right-aligned, each "
                       "axis 1 or equal)", source, l->line, l->name, shape_text(&l->tshape, ss, sizeof ss),
                       shape_text(in, is, sizeof is));
    }
    l->out = *in;
    int li = (int)(l - m->layers);
    if ((l->weight = model_add_tensor(ctx, m, li, "slope", TS_TENSOR_PARAM, &l->tshape)) < 0)
        return ts_ctx_status(ctx);
    return TS_OK;
}

ts_status prelu_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const ts_shape *in = input_shape(m, l, 0);
    int64_t sdims[TS_MAX_DIMS];
    slope_dims(l, in, sdims);
    (ctx->constant_time ? prelu_forward_ct : prelu_forward_ref)(m->exec.n, in->ndim, in->dims, sdims,
                                                                m->exec.ls[li].out, layer_input(m, li, 0),
                                                                tensor_data(m, l->weight), ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status prelu_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const ts_shape *in = input_shape(m, l, 0);
    int64_t sdims[TS_MAX_DIMS];
    slope_dims(l, in, sdims);
    float *din = layer_input_grad(m, li, 0);
    prelu_backward_ref(m->exec.n, in->ndim, in->dims, sdims, din, tensor_grad(m, l->weight), m->exec.ls[li].grad,
                       layer_input(m, li, 0), tensor_data(m, l->weight), ts_ctx_threads(ctx));
    if (din) layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
