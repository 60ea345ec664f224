/* maxpool, avgpool, globalavgpool and globalmaxpool layers. */
#include "layers.h"

pool2d_params layer_pool_params(const ts_model *m, const layer *l, int n) {
    const ts_shape *in = input_shape(m, l, 0);
    pool2d_params p = {0};
    p.n = n;
    p.c = (int)in->dims[0];
    p.h = (int)in->dims[1];
    p.w = (int)in->dims[2];
    p.kh = l->kh;
    p.kw = l->kw;
    p.sh = l->sh;
    p.sw = l->sw;
    p.ph = l->ph;
    p.pw = l->pw;
    p.pbh = l->pbh;
    p.pbw = l->pbw;
    p.dh = l->kind == LAYER_MAXPOOL ? l->dh : 1; /* average pooling has no dilation */
    p.dw = l->kind == LAYER_MAXPOOL ? l->dw : 1;
    p.ceil_mode = l->ceil_mode;
    p.count_include_pad = l->count_include_pad;
    pool2d_params_finish(&p);
    return p;
}

static ts_status pool_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_shape in;
    ts_status st = expect_image_input(ctx, m, l, source, &in);
    if (st) return st;
    pool2d_params p = layer_pool_params(m, l, 1);
    /* PyTorch wants at most half the kernel; ONNX models pad up to the kernel's extent */
    const int64_t ekh = (int64_t)p.dh * (l->kh - 1) + 1, ekw = (int64_t)p.dw * (l->kw - 1) + 1;
    if (l->ph >= ekh || l->pbh >= ekh || l->pw >= ekw || l->pbw >= ekw)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s': padding %d,%d,%d,%d (top, left, bottom, right) must be "
                       "less than the kernel's extent %lldx%lld", source, l->line, LAYER_OPS[l->kind].name, l->name,
                       l->ph, l->pw, l->pbh, l->pbw, (long long)ekh, (long long)ekw);
    if (!pool2d_params_finish(&p))
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s': kernel %dx%d does not fit input %lldx%lld", source, l->line,
                       LAYER_OPS[l->kind].name, l->name, l->kh, l->kw, (long long)in.dims[1], (long long)in.dims[2]);
    l->out.ndim = 3;
    l->out.dims[0] = in.dims[0];
    l->out.dims[1] = p.oh;
    l->out.dims[2] = p.ow;
    return TS_OK;
}

ts_status maxpool_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) { return pool_infer(ctx, m, l, source); }
ts_status avgpool_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) { return pool_infer(ctx, m, l, source); }

/* Room for the workspace of any layout a pass may use, whatever the ctx's backend now
 * (a plan outlives a change of backend): one s32 per output value, channels padded to
 * 16, covers the reference's argmax (one s32 each) and oneDNN's (one u8 or s32 each, in
 * the output's layout: nChw16c in training, exec_blocked.c). */
size_t maxpool_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    const pool2d_params p = layer_pool_params(m, l, n);
    return (size_t)n * (size_t)((p.c + 15) / 16 * 16) * (size_t)p.oh * (size_t)p.ow * sizeof(int32_t);
}

ts_status maxpool_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    pool2d_params p = layer_pool_params(m, l, m->exec.n);
    p.nhwc = layer_cl(m, l->inputs[0]);
    p.blocked = layer_blk(m, li); /* a training pass: then its input is too (exec_blocked.c) */
    return ops_maxpool2d_forward(ctx, &p, m->exec.ls[li].out, m->exec.train ? m->exec.ls[li].aux : NULL,
                                 layer_input(m, li, 0));
}

ts_status maxpool_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    pool2d_params p = layer_pool_params(m, l, m->exec.n);
    p.blocked = layer_blk(m, li);
    ts_status st = ops_maxpool2d_backward(ctx, &p, din, m->exec.ls[li].grad, m->exec.ls[li].aux);
    if (st) return st;
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status avgpool_forward(ts_ctx *ctx, ts_model *m, int li) {
    pool2d_params p = layer_pool_params(m, &m->layers[li], m->exec.n);
    p.nhwc = layer_cl(m, m->layers[li].inputs[0]);
    return ops_avgpool2d_forward(ctx, &p, m->exec.ls[li].out, layer_input(m, li, 0));
}

ts_status avgpool_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    pool2d_params p = layer_pool_params(m, &m->layers[li], m->exec.n);
    ts_status st = ops_avgpool2d_backward(ctx, &p, din, m->exec.ls[li].grad);
    if (st) return st;
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* (C,H,W) -> (C): the mean over each channel plane. */
ts_status globalavgpool_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_shape in;
    ts_status st = expect_image_input(ctx, m, l, source, &in);
    if (st) return st;
    l->out.ndim = 1;
    l->out.dims[0] = in.dims[0];
    return TS_OK;
}

ts_status globalavgpool_forward(ts_ctx *ctx, ts_model *m, int li) {
    const ts_shape *in = input_shape(m, &m->layers[li], 0);
    if (layer_cl(m, m->layers[li].inputs[0])) { /* fused inference kept it channels-last */
        global_avgpool_forward_nhwc(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), m->exec.ls[li].out,
                                    layer_input(m, li, 0));
        return TS_OK;
    }
    if (layer_blk(m, m->layers[li].inputs[0])) { /* training on nChw16c */
        global_avgpool_forward_blocked16(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]),
                                         m->exec.ls[li].out, layer_input(m, li, 0));
        return TS_OK;
    }
    (ctx->constant_time ? global_avgpool_forward_ct : global_avgpool_forward_ref)(
        m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), m->exec.ls[li].out, layer_input(m, li, 0));
    return TS_OK;
}

ts_status globalavgpool_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const ts_shape *in = input_shape(m, &m->layers[li], 0);
    if (layer_blk(m, m->layers[li].inputs[0]))
        global_avgpool_backward_blocked16(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), din,
                                          m->exec.ls[li].grad);
    else
        global_avgpool_backward_ref(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), din,
                                    m->exec.ls[li].grad);
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

/* (C,H,W) -> (C): the maximum of each channel plane (ONNX GlobalMaxPool, which keeps
 * 1x1 spatial axes; here a vector like globalavgpool). Training keeps the argmax. */
ts_status globalmaxpool_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    return globalavgpool_infer(ctx, m, l, source);
}

size_t globalmaxpool_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    (void)m;
    return sizeof(int32_t) * (size_t)n * (size_t)l->out.dims[0];
}

ts_status globalmaxpool_forward(ts_ctx *ctx, ts_model *m, int li) {
    const ts_shape *in = input_shape(m, &m->layers[li], 0);
    if (ctx->constant_time) { /* inference only */
        global_maxpool_forward_ct(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), m->exec.ls[li].out,
                                  layer_input(m, li, 0));
        return TS_OK;
    }
    global_maxpool_forward_ref(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), m->exec.ls[li].out,
                               m->exec.train ? m->exec.ls[li].aux : NULL, layer_input(m, li, 0));
    return TS_OK;
}

ts_status globalmaxpool_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    const ts_shape *in = input_shape(m, &m->layers[li], 0);
    global_maxpool_backward_ref(m->exec.n, (int)in->dims[0], (int)(in->dims[1] * in->dims[2]), din,
                                m->exec.ls[li].grad, m->exec.ls[li].aux);
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
