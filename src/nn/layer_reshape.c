/* Layers that rearrange a sample's values: reshape (ONNX Reshape: the same values
 * under another per-sample shape) and transpose (ONNX Transpose: a permutation of
 * the per-sample axes). */
#include "layers.h"

#include <stdio.h>
#include <string.h>

static size_t out_count(const ts_model *m, int li) {
    return (size_t)m->exec.n * (size_t)shape_numel(&m->layers[li].out);
}

/* ---- reshape: a copy, as flatten (activations are never aliased) */
ts_status reshape_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    if (shape_numel(&l->tshape) != shape_numel(in)) {
        char a[96], b[96];
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: reshape '%s': shape=%s holds %lld values, but '%s' outputs %s (%lld)",
                       source, l->line, l->name, shape_text(&l->tshape, a, sizeof a),
                       (long long)shape_numel(&l->tshape), m->layers[l->inputs[0]].name, shape_text(in, b, sizeof b),
                       (long long)shape_numel(in));
    }
    l->out = l->tshape;
    return TS_OK;
}

ts_status reshape_forward(ts_ctx *ctx, ts_model *m, int li) {
    (void)ctx;
    const float *in = layer_input(m, li, 0);
    if (m->exec.ls[li].out != in) memcpy(m->exec.ls[li].out, in, out_count(m, li) * sizeof(float)); /* else an alias */
    return TS_OK;
}

ts_status reshape_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    memcpy(din, m->exec.ls[li].grad, out_count(m, li) * sizeof(float));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ---- transpose: output axis i is input axis perm[i] */
ts_status transpose_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    if (l->nperm == 0) { /* ONNX's default: reverse the axes */
        l->nperm = in->ndim;
        for (int i = 0; i < in->ndim; i++) l->perm[i] = in->ndim - 1 - i;
    }
    if (l->nperm != in->ndim) {
        char text[96];
        const attr_spec *sp = attr_find(LAYER_TRANSPOSE, "perm");
        attr_write_value(sp, &l->attrs, text, sizeof text);
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: transpose '%s': perm=%s lists %d axes, but '%s' outputs %d-d", source,
                       l->line, l->name, text, l->nperm, m->layers[l->inputs[0]].name, in->ndim);
    }
    int seen[TS_MAX_DIMS] = {0};
    for (int i = 0; i < in->ndim; i++) {
        const int p = l->perm[i];
        if (p < 0 || p >= in->ndim || seen[p]) {
            char text[64] = "";
            for (int j = 0; j < in->ndim; j++) {
                size_t len = strlen(text);
                snprintf(text + len, sizeof text - len, "%s%d", j ? "," : "", l->perm[j]);
            }
            return ts_fail(ctx, TS_ESHAPE, "%s:%d: transpose '%s': perm=%s is not a permutation of 0..%d", source,
                           l->line, l->name, text, in->ndim - 1);
        }
        seen[p] = 1;
    }
    l->out.ndim = in->ndim;
    for (int i = 0; i < in->ndim; i++) l->out.dims[i] = in->dims[l->perm[i]];
    return TS_OK;
}

/* Walk of (N, out dims): out[s, i...] = in[s, i permuted back]; `inverse` walks
 * (N, in dims) reading the output layout instead (the backward). */
static void transpose_walk(const ts_model *m, const layer *l, int inverse, int64_t *dims, int64_t *strides) {
    const ts_shape *in = input_shape(m, l, 0);
    const int r = in->ndim;
    int64_t in_strides[TS_MAX_DIMS], out_strides[TS_MAX_DIMS];
    int64_t s = 1, t = 1;
    for (int d = r - 1; d >= 0; d--) {
        in_strides[d] = s;
        s *= in->dims[d];
        out_strides[d] = t;
        t *= l->out.dims[d];
    }
    dims[0] = m->exec.n;
    strides[0] = s;
    for (int i = 0; i < r; i++) {
        if (!inverse) {
            dims[1 + i] = l->out.dims[i];
            strides[1 + i] = in_strides[l->perm[i]];
        } else {
            dims[1 + l->perm[i]] = in->dims[l->perm[i]];
            strides[1 + l->perm[i]] = out_strides[i];
        }
    }
}

ts_status transpose_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    int64_t dims[OPS_MAX_RANK], strides[OPS_MAX_RANK];
    transpose_walk(m, l, 0, dims, strides);
    strided_copy_ref(l->out.ndim + 1, dims, m->exec.ls[li].out, layer_input(m, li, 0), strides, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status transpose_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    int64_t dims[OPS_MAX_RANK], strides[OPS_MAX_RANK];
    transpose_walk(m, l, 1, dims, strides);
    strided_copy_ref(l->out.ndim + 1, dims, din, m->exec.ls[li].grad, strides, ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
