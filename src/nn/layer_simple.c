/* Layers without parameters: input, activations, softmax, add, concat (along any
 * axis), flatten, dropout. */
#include "layers.h"

#include <limits.h>
#include <string.h>

/* in the pass's layout: a blocked output has padded channels (layer_count) */
static size_t out_count(const ts_model *m, int li) { return layer_count(m, li); }

/* ---- input: the caller's batch; nothing to compute */
ts_status input_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    (void)ctx;
    (void)source;
    l->out = m->input;
    return TS_OK;
}
ts_status input_forward(ts_ctx *ctx, ts_model *m, int li) {
    (void)ctx;
    (void)m;
    (void)li;
    return TS_OK;
}
ts_status input_backward(ts_ctx *ctx, ts_model *m, int li) {
    (void)ctx;
    (void)m;
    (void)li;
    return TS_OK;
}

/* ---- relu, leakyrelu, sigmoid, tanh */
static eltwise_kind eltwise_of(layer_kind k) {
    switch (k) {
    case LAYER_LEAKYRELU: return ELTWISE_LEAKY_RELU;
    case LAYER_SIGMOID: return ELTWISE_SIGMOID;
    case LAYER_TANH: return ELTWISE_TANH;
    default: return ELTWISE_RELU;
    }
}

ts_status activation_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    l->out = *input_shape(m, l, 0);
    return TS_OK;
}

ts_status activation_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    return ops_eltwise_forward(ctx, eltwise_of(l->kind), l->alpha, out_count(m, li), m->exec.ls[li].out,
                               layer_input(m, li, 0));
}

ts_status activation_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    /* a ReLU's mask from its output (out <= 0 exactly where in <= 0, NaN alike): its
     * input need not be kept for backward (act_compress.c) */
    const float *out = m->exec.ls[li].out;
    const float *in = l->kind == LAYER_RELU ? out : layer_input(m, li, 0);
    ts_status st = ops_eltwise_backward(ctx, eltwise_of(l->kind), l->alpha, out_count(m, li), din,
                                        m->exec.ls[li].grad, in, out);
    if (st) return st;
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ---- softmax and logsoftmax along a per-sample axis (or, with coerce, over every
 * axis from it on, flattened: ONNX opset < 13) */

/* The per-sample shape as (outer, len, inner) around the softmax axis. */
static void softmax_geometry(const layer *l, size_t *outer, size_t *len, size_t *inner) {
    const int r = l->out.ndim, a = l->axis < 0 ? l->axis + r : l->axis;
    *outer = *len = *inner = 1;
    for (int d = 0; d < r; d++) {
        size_t *f = d < a ? outer : d == a || l->coerce ? len : inner;
        *f *= (size_t)l->out.dims[d];
    }
}

ts_status softmax_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    l->out = *input_shape(m, l, 0);
    const int r = l->out.ndim;
    if (l->axis < -r || l->axis >= r)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s': axis=%d is out of range for a %d-d input (expected %d..%d)",
                       source, l->line, LAYER_OPS[l->kind].name, l->name, l->axis, r, -r, r - 1);
    return TS_OK;
}

#define SOFTMAX_DNNL_MIN 65536 /* values in a call from which inference's softmax goes to oneDNN */

ts_status softmax_forward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    size_t outer, len, inner;
    softmax_geometry(l, &outer, &len, &inner);
    const size_t rows = (size_t)m->exec.n * outer;
    const int log_softmax = l->kind == LAYER_LOGSOFTMAX;
    /* a large softmax in inference (attention's) on oneDNN: within 1e-5 of the
     * reference; training, log-softmax and small ones (a classifier's) stay on the
     * reference, which gradient checks and bit-exact expectations rely on */
    if (!m->exec.train && !log_softmax && rows * len * inner >= SOFTMAX_DNNL_MIN)
        return ops_softmax_forward(ctx, rows, len, inner, 0, m->exec.ls[li].out, layer_input(m, li, 0));
    (ctx->constant_time ? softmax_axis_forward_ct : softmax_axis_forward_ref)(
        rows, len, inner, log_softmax, m->exec.ls[li].out, layer_input(m, li, 0), ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status softmax_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const layer *l = &m->layers[li];
    size_t outer, len, inner;
    softmax_geometry(l, &outer, &len, &inner);
    softmax_axis_backward_ref((size_t)m->exec.n * outer, len, inner, l->kind == LAYER_LOGSOFTMAX, din,
                              m->exec.ls[li].grad, m->exec.ls[li].out, ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ---- add: elementwise sum of inputs of one shape (residual connections) */
ts_status add_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs < 2)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: add '%s' needs at least two inputs (in=a,b)", source, l->line, l->name);
    const ts_shape *s0 = input_shape(m, l, 0);
    for (int k = 1; k < l->ninputs; k++) {
        const ts_shape *s = input_shape(m, l, k);
        int same = s->ndim == s0->ndim;
        for (int d = 0; same && d < s->ndim; d++) same = s->dims[d] == s0->dims[d];
        if (!same)
            return ts_fail(ctx, TS_ESHAPE, "%s:%d: add '%s': input '%s' has a different shape from '%s'", source,
                           l->line, l->name, m->layers[l->inputs[k]].name, m->layers[l->inputs[0]].name);
    }
    l->out = *s0;
    return TS_OK;
}

ts_status add_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    size_t cnt = out_count(m, li);
    float *out = m->exec.ls[li].out;
    const float *a = layer_input(m, li, 0);
    int nt = ts_ctx_threads(ctx);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < cnt; i++) out[i] = a[i];
    for (int k = 1; k < l->ninputs; k++) {
        const float *b = layer_input(m, li, k);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < cnt; i++) out[i] += b[i];
    }
    return TS_OK;
}

ts_status add_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    size_t cnt = out_count(m, li);
    for (int k = 0; k < l->ninputs; k++) {
        float *din = layer_input_grad(m, li, k);
        if (!din) continue;
        memcpy(din, m->exec.ls[li].grad, cnt * sizeof(float));
        layer_input_grad_commit(m, li, k, ts_ctx_threads(ctx));
    }
    return TS_OK;
}

/* ---- concat along per-sample axis l->axis (0, the channels, by default). Each
 * input is a stack of rows (samples times the axes before `axis`) of dims[axis] *
 * (the axes after) values, and each output row their concatenation. */
ts_status concat_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs < 2)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: concat '%s' needs at least two inputs (in=a,b)", source, l->line,
                       l->name);
    const ts_shape *s0 = input_shape(m, l, 0);
    if (l->axis >= s0->ndim || l->axis < -s0->ndim)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: concat '%s': axis=%d, but '%s' outputs %d-d", source, l->line, l->name,
                       l->axis, m->layers[l->inputs[0]].name, s0->ndim);
    if (l->axis < 0) l->axis += s0->ndim; /* counted from the end: stored from the front */
    const int axis = l->axis;
    l->out = *s0;
    for (int k = 1; k < l->ninputs; k++) {
        const ts_shape *s = input_shape(m, l, k);
        int same = s->ndim == s0->ndim;
        for (int d = 0; same && d < s->ndim; d++) same = d == axis || s->dims[d] == s0->dims[d];
        if (!same)
            return ts_fail(ctx, TS_ESHAPE, "%s:%d: concat '%s': input '%s' differs from '%s' outside axis %d", source,
                           l->line, l->name, m->layers[l->inputs[k]].name, m->layers[l->inputs[0]].name, axis);
        l->out.dims[axis] += s->dims[axis];
    }
    return TS_OK;
}

/* Rows of the concatenation over a batch of n, and each input's row length, with the
 * per-sample axes stored in their order, or (cl) a (C,H,W) tensor stored channels-last
 * as (H,W,C) (fused inference). */
static int64_t concat_rows(const ts_model *m, const layer *l, int n, int cl, size_t *sizes) {
    static const int cl_order[3] = {1, 2, 0};
    int64_t outer = 1, inner = 1;
    int pos = 0; /* where the concat axis is stored */
    while ((cl ? cl_order[pos] : pos) != l->axis) pos++;
    for (int i = 0; i < l->out.ndim; i++) {
        const int64_t d = l->out.dims[cl ? cl_order[i] : i];
        if (i < pos) outer *= d;
        else if (i > pos) inner *= d;
    }
    for (int k = 0; k < l->ninputs; k++) sizes[k] = (size_t)(input_shape(m, l, k)->dims[l->axis] * inner);
    return (int64_t)n * outer;
}

ts_status concat_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    size_t sizes[LAYER_MAX_INPUTS], row = 0;
    const float *ins[LAYER_MAX_INPUTS];
    const int64_t rows = concat_rows(m, l, m->exec.n, layer_cl(m, li), sizes);
    for (int k = 0; k < l->ninputs; k++) row += sizes[k];
    /* the kernel counts rows in an int */
    for (int64_t r = 0; r < rows; r += INT_MAX) {
        const int64_t nr = rows - r < INT_MAX ? rows - r : INT_MAX;
        for (int k = 0; k < l->ninputs; k++) ins[k] = layer_input(m, li, k) + (size_t)r * sizes[k];
        concat_forward_par((int)nr, l->ninputs, sizes, m->exec.ls[li].out + (size_t)r * row, ins, ts_ctx_threads(ctx));
    }
    return TS_OK;
}

ts_status concat_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const float *dout = m->exec.ls[li].grad;
    size_t sizes[LAYER_MAX_INPUTS], row = 0, off = 0;
    const int64_t rows = concat_rows(m, l, m->exec.n, 0, sizes);
    for (int k = 0; k < l->ninputs; k++) row += sizes[k];
    for (int k = 0; k < l->ninputs; k++) {
        const size_t sz = sizes[k];
        float *din = layer_input_grad(m, li, k);
        if (din) {
            for (int64_t r = 0; r < rows; r++)
                memcpy(din + (size_t)r * sz, dout + (size_t)r * row + off, sz * sizeof(float));
            layer_input_grad_commit(m, li, k, ts_ctx_threads(ctx));
        }
        off += sz;
    }
    return TS_OK;
}

/* ---- flatten to a vector: a copy (activations are not aliased, keeping ownership simple) */
ts_status flatten_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    l->out.ndim = 1;
    l->out.dims[0] = shape_numel(input_shape(m, l, 0));
    return TS_OK;
}

ts_status flatten_forward(ts_ctx *ctx, ts_model *m, int li) {
    (void)ctx;
    const float *in = layer_input(m, li, 0);
    if (m->exec.ls[li].out != in) memcpy(m->exec.ls[li].out, in, out_count(m, li) * sizeof(float)); /* else an alias */
    return TS_OK;
}

ts_status flatten_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    memcpy(din, m->exec.ls[li].grad, out_count(m, li) * sizeof(float));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ---- dropout (inverted): identity at inference */
ts_status dropout_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    l->out = *input_shape(m, l, 0);
    return TS_OK;
}

size_t dropout_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    (void)m;
    return sizeof(float) * (size_t)n * (size_t)shape_numel(&l->out);
}

ts_status dropout_forward(ts_ctx *ctx, ts_model *m, int li) {
    (void)ctx;
    layer *l = &m->layers[li];
    size_t cnt = out_count(m, li);
    float *out = m->exec.ls[li].out;
    const float *in = layer_input(m, li, 0);
    if (!m->exec.train || l->p == 0.0f) {
        memcpy(out, in, cnt * sizeof(float));
        if (m->exec.train) {
            float *mask = m->exec.ls[li].aux;
            for (size_t i = 0; i < cnt; i++) mask[i] = 1.0f;
        }
        return TS_OK;
    }
    /* mask from (step seed, layer index): reproducible on resume */
    ts_rng r;
    ts_rng_seed(&r, rng_mix(m->exec.dropout_seed, (uint64_t)li));
    float *mask = m->exec.ls[li].aux;
    float keep = 1.0f / (1.0f - l->p);
    for (size_t i = 0; i < cnt; i++) mask[i] = ts_rng_uniform(&r) < l->p ? 0.0f : keep;
    dropout_apply_ref(cnt, out, in, mask);
    return TS_OK;
}

ts_status dropout_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    dropout_apply_ref(out_count(m, li), din, m->exec.ls[li].grad, m->exec.ls[li].aux);
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
