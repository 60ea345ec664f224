/* Free image size: a model whose input is `free=hw` takes images of any height and
 * width. Its layers keep the shapes of the declared (default) size; a call at another
 * size runs a view of the model: the same layers rebuilt through the builder for
 * that size (every shape inferred again), sharing the owner's parameters and
 * buffers, with its own execution plan. The views of the last two sizes other than
 * the default are kept (FREE_HW_VIEWS), so repeated calls at one size, or calls
 * alternating between two, plan once. */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The graph of m for inputs (C, h, w): m's layers and attributes, shapes inferred
 * anew, nothing allocated. The builder's message is prefixed with what was tried. */
static ts_status rebuild_at(ts_ctx *ctx, const ts_model *m, int h, int w, const char *source, ts_model **out) {
    *out = NULL;
    ts_shape in = m->input;
    in.dims[1] = h;
    in.dims[2] = w;
    nn_builder *b;
    ts_status st = nn_builder_create(ctx, source, 0, &in, 0, m->layers[0].name, &b);
    for (int li = 1; li < m->nlayers && !st; li++) {
        const layer *l = &m->layers[li];
        nn_builder_set_line(b, l->line);
        st = nn_add_at(b, l->kind, l->name, l->inputs, l->ninputs, &l->attrs, NULL);
    }
    if (!st) return nn_builder_finish_unallocated(b, out); /* consumes b */
    nn_builder_free(b);
    char why[512];
    snprintf(why, sizeof why, "%s", ts_ctx_error(ctx));
    return ts_fail(ctx, st, "at %dx%d: %s", h, w, why);
}

/* The first tensor of v whose shape is not m's, or -1. */
static int tensor_mismatch(const ts_model *m, const ts_model *v) {
    for (int t = 0; t < m->ntensors; t++) {
        if (t >= v->ntensors) return t;
        const ts_shape *a = &m->tensors[t].shape, *b = &v->tensors[t].shape;
        if (a->ndim != b->ndim || memcmp(a->dims, b->dims, (size_t)a->ndim * sizeof a->dims[0])) return t;
    }
    return v->ntensors != m->ntensors ? m->ntensors : -1;
}

ts_status free_hw_check(ts_ctx *ctx, const ts_model *m, const char *source) {
    /* another size that every size-free graph takes: larger (pooling needs room), by a
     * step, not a factor (the largest graphs stay under ARCH_MAX_ELEMENTS) */
    const int h = (int)m->input.dims[1] + 32, w = (int)m->input.dims[2] + 32;
    ts_model *v;
    ts_status st = rebuild_at(ctx, m, h, w, source, &v);
    if (st) {
        char why[600];
        snprintf(why, sizeof why, "%s", ts_ctx_error(ctx));
        return ts_fail(ctx, st, "%s: input free=hw: the model does not run at another size (%s)", source, why);
    }
    const int t = tensor_mismatch(m, v);
    if (t >= 0 && t < m->ntensors) {
        const tensor_entry *e = &m->tensors[t];
        char a[96], b[96];
        st = ts_fail(ctx, TS_ESHAPE,
                     "%s: input free=hw: %s '%s' has parameters that depend on the image size (%s is %s at %lldx%lld, "
                     "%s at %dx%d); a fixed-size model cannot take free=hw (a global pooling before it would make it "
                     "size-free)",
                     source, LAYER_OPS[m->layers[e->layer].kind].name, m->layers[e->layer].name, e->name,
                     shape_text(&e->shape, a, sizeof a), (long long)m->input.dims[1], (long long)m->input.dims[2],
                     shape_text(&v->tensors[t].shape, b, sizeof b), h, w);
    } else if (t >= 0) {
        st = ts_fail(ctx, TS_ESHAPE, "%s: input free=hw: the model's tensors differ at %dx%d", source, h, w);
    }
    ts_model_free(v);
    return st;
}

ts_status free_hw_output_at(ts_ctx *ctx, const ts_model *m, int h, int w, ts_shape *out) {
    ts_model *v;
    ts_status st = rebuild_at(ctx, m, h, w, "model", &v);
    if (st) return st;
    *out = v->layers[v->nlayers - 1].out;
    ts_model_free(v);
    return TS_OK;
}

int ts_model_any_size(const ts_model *m) { return m && m->nlayers > 0 && m->layers[0].free_hw; }

/* The model to run for (h, w): m itself at its own size, else its view for that size
 * (a cached one, or a new one replacing the least recent). */
static ts_status view_at(ts_ctx *ctx, ts_model *m, int h, int w, ts_model **out) {
    *out = NULL;
    if (m->input.ndim != 3) return ts_fail(ctx, TS_ESHAPE, "the model's input is not an image (CxHxW)");
    const int H = (int)m->input.dims[1], W = (int)m->input.dims[2];
    if (h == H && w == W) {
        *out = m;
        return TS_OK;
    }
    if (!ts_model_any_size(m))
        return ts_fail(ctx, TS_ESHAPE, "the model takes %dx%d images (its height and width are fixed), not %dx%d", H, W, h,
                       w);
    if (h < 1 || w < 1 || (long)h * w > TS_IMAGE_MAX_PIXELS)
        return ts_fail(ctx, TS_ESHAPE, "image size %dx%d: expected 1 to %ld pixels", h, w, (long)TS_IMAGE_MAX_PIXELS);
    ts_model *v;
    for (int i = 0; i < FREE_HW_VIEWS; i++) {
        v = m->hw_view[i];
        if (!v || v->input.dims[1] != h || v->input.dims[2] != w) continue;
        memmove(m->hw_view + 1, m->hw_view, (size_t)i * sizeof *m->hw_view); /* most recent first */
        m->hw_view[0] = *out = v;
        return TS_OK;
    }
    char source[64];
    snprintf(source, sizeof source, "model at %dx%d", h, w);
    ts_status st = rebuild_at(ctx, m, h, w, source, &v);
    if (st) return st;
    if (tensor_mismatch(m, v) >= 0) { /* free_hw_check made sure of it when m was built */
        ts_model_free(v);
        return ts_fail(ctx, TS_ESHAPE, "%s: the tensors differ from the model's", source);
    }
    v->params = m->params;
    v->buffers = m->buffers;
    v->shares_storage = 1;
    v->exit_layer = m->exit_layer;
    for (int i = 0; i < m->nmeta && !st; i++) st = ts_model_set_meta(ctx, v, m->meta[i].key, m->meta[i].value);
    if (st) {
        ts_model_free(v);
        return st;
    }
    ts_model_free(m->hw_view[FREE_HW_VIEWS - 1]); /* the least recent goes */
    memmove(m->hw_view + 1, m->hw_view, (FREE_HW_VIEWS - 1) * sizeof *m->hw_view);
    m->hw_view[0] = *out = v;
    return TS_OK;
}

ts_status ts_model_output_shape_hw(ts_ctx *ctx, ts_model *m, int h, int w, ts_shape *out) {
    if (!ctx || !m || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_output_shape_hw: NULL argument");
    ts_model *v;
    ts_status st = view_at(ctx, m, h, w, &v);
    if (!st) *out = v->layers[v->nlayers - 1].out;
    return st;
}

ts_status ts_model_predict_hw(ts_ctx *ctx, ts_model *m, const float *x, int n, int h, int w, float *out,
                              ts_shape *out_shape) {
    if (!ctx || !m || !x || !out || n < 0) return ts_fail(ctx, TS_EINVAL, "ts_model_predict_hw: bad argument");
    ts_model *v;
    ts_status st = view_at(ctx, m, h, w, &v);
    if (st) return st;
    if (out_shape) *out_shape = v->layers[v->nlayers - 1].out;
    return ts_model_predict(ctx, v, x, n, out);
}
