/* dense layer: weight (OUT, IN) as nn.Linear, optional bias (OUT). A vector input
 * (IN); or, as nn.Linear, any input whose last axis is IN, each position along the
 * axes before it on its own (a tagger's scores per step: (T, H) -> (T, OUT)). */
#include "layers.h"

ts_status dense_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs != 1)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: dense '%s' takes exactly one input", source, l->line, l->name);
    const ts_shape *in = input_shape(m, l, 0);
    if (in->ndim != 1 && in->ndim != 2)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: dense '%s' needs a vector (or a sequence, TxF) input but '%s' outputs "
                       "%d-d; add a flatten layer before it", source, l->line, l->name, m->layers[l->inputs[0]].name,
                       in->ndim);
    l->out = *in;
    l->out.dims[in->ndim - 1] = l->features;
    int li = (int)(l - m->layers);
    ts_shape ws = {2, {l->features, in->dims[in->ndim - 1]}};
    if ((l->weight = model_add_tensor(ctx, m, li, "weight", TS_TENSOR_PARAM, &ws)) < 0) return ts_ctx_status(ctx);
    if (l->bias) {
        ts_shape bs = {1, {l->features}};
        if ((l->bias_t = model_add_tensor(ctx, m, li, "bias", TS_TENSOR_PARAM, &bs)) < 0) return ts_ctx_status(ctx);
    }
    return TS_OK;
}

/* IN, and the rows of a pass: samples times the positions before the last axis */
static int dense_in(const ts_model *m, const layer *l) {
    const ts_shape *in = input_shape(m, l, 0);
    return (int)in->dims[in->ndim - 1];
}
static int dense_rows(const ts_model *m, const layer *l) {
    const ts_shape *in = input_shape(m, l, 0);
    return m->exec.n * (in->ndim == 2 ? (int)in->dims[0] : 1);
}

int64_t dense_macs(const ts_model *m, const layer *l) {
    return shape_numel(input_shape(m, l, 0)) * l->features;
}

ts_status dense_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    return ops_dense_forward(ctx, dense_rows(m, l), dense_in(m, l), l->features, m->exec.ls[li].out,
                             layer_input(m, li, 0), tensor_data(m, l->weight),
                             l->bias ? tensor_data(m, l->bias_t) : NULL);
}

ts_status dense_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const int in_f = dense_in(m, l), rows = dense_rows(m, l);
    const float *dout = m->exec.ls[li].grad;
    ts_status st = ops_dense_backward_weights(ctx, rows, in_f, l->features, tensor_grad(m, l->weight),
                                              l->bias ? tensor_grad(m, l->bias_t) : NULL, dout, layer_input(m, li, 0));
    if (st) return st;
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    st = ops_dense_backward_data(ctx, rows, in_f, l->features, din, dout, tensor_data(m, l->weight));
    if (st) return st;
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
