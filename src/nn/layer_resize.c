/* resize: the last two per-sample axes (H, W) resized by nearest or bilinear
 * interpolation, as ONNX Resize and PyTorch's F.interpolate; every axis before them
 * (the channels) is a plane resized on its own. The output size is `size`, or
 * floor(in * scale) (ONNX and PyTorch both), and the coordinates use `scale` when
 * given, else out / in. The kernels are resize_forward_ref / resize_backward_ref
 * (ops/resize_ref.c), over taps computed from the shapes into the scratch; they do not
 * branch on values, so they also serve constant-time inference. */
#include "layers.h"

#include <math.h>

/* per-sample shape in: planes of ih x iw */
static void resize_geometry(const ts_shape *in, int64_t *planes, int *ih, int *iw) {
    *planes = 1;
    for (int d = 0; d < in->ndim - 2; d++) *planes *= in->dims[d];
    *ih = (int)in->dims[in->ndim - 2];
    *iw = (int)in->dims[in->ndim - 1];
}

ts_status resize_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    const char *from = m->layers[l->inputs[0]].name;
    char is[96];
    if (in->ndim < 2)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: resize '%s' needs an input with H and W axes (CxHxW), but '%s' is %s",
                       source, l->line, l->name, from, shape_text(in, is, sizeof is));
    const int has_size = l->size_h > 0 && l->size_w > 0, has_scale = l->scale_h > 0 && l->scale_w > 0;
    if (has_size == has_scale || (!has_size && (l->size_h || l->size_w)) || (!has_scale && (l->scale_h || l->scale_w)))
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: resize '%s' needs exactly one of size=HxW and scale=HxW", source,
                       l->line, l->name);
    l->out = *in;
    int64_t *oh = &l->out.dims[in->ndim - 2], *ow = &l->out.dims[in->ndim - 1];
    if (has_size) {
        *oh = l->size_h;
        *ow = l->size_w;
    } else {
        *oh = (int64_t)floor((double)in->dims[in->ndim - 2] * l->scale_h);
        *ow = (int64_t)floor((double)in->dims[in->ndim - 1] * l->scale_w);
    }
    if (*oh < 1 || *ow < 1 || *oh > 65536 || *ow > 65536)
        return ts_fail(ctx, TS_ESHAPE,
                       "%s:%d: resize '%s': '%s' (%s) resized to %lldx%lld (each side must be 1..65536)", source,
                       l->line, l->name, from, shape_text(in, is, sizeof is), (long long)*oh, (long long)*ow);
    return TS_OK;
}

/* the taps of H, then of W */
size_t resize_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    (void)m;
    (void)n;
    return (size_t)(l->out.dims[l->out.ndim - 2] + l->out.dims[l->out.ndim - 1]) * sizeof(resize_tap);
}

typedef struct resize_run {
    int64_t planes; /* per batch */
    int ih, iw, oh, ow;
    resize_tap *ty, *tx;
} resize_run;

static resize_run resize_prepare(ts_model *m, const layer *l) {
    resize_run r;
    resize_geometry(input_shape(m, l, 0), &r.planes, &r.ih, &r.iw);
    r.planes *= m->exec.n;
    r.oh = (int)l->out.dims[l->out.ndim - 2];
    r.ow = (int)l->out.dims[l->out.ndim - 1];
    r.ty = m->exec.scratch;
    r.tx = r.ty + r.oh;
    const resize_mode mode = (resize_mode)l->resize_mode;
    const resize_coord coord = (resize_coord)l->coord_mode;
    const resize_nearest nearest = (resize_nearest)l->nearest_mode;
    resize_taps(mode, coord, nearest, r.ih, r.oh, l->scale_h, r.ty);
    resize_taps(mode, coord, nearest, r.iw, r.ow, l->scale_w, r.tx);
    return r;
}

ts_status resize_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const resize_run r = resize_prepare(m, l);
    resize_forward_ref((resize_mode)l->resize_mode, r.planes, r.ih, r.iw, r.oh, r.ow, r.ty, r.tx, m->exec.ls[li].out,
                       layer_input(m, li, 0), ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status resize_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const resize_run r = resize_prepare(m, l);
    resize_backward_ref((resize_mode)l->resize_mode, r.planes, r.ih, r.iw, r.oh, r.ow, r.ty, r.tx, din,
                        m->exec.ls[li].grad, ts_ctx_threads(ctx));
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
