/* Backend dispatch (dispatch.h): the oneDNN kernel when ctx->backend is
 * TS_BACKEND_DNNL and it supports the case, else the reference kernel.
 *
 * A *_dnnl kernel returns TS_EUNSUPPORTED only for reasons that depend on the
 * parameters (oneDNN has no implementation, or its semantics differ from PyTorch's
 * for the case), so a forward and its backward take the same path. Any other error
 * is returned as is: a failing fast path is never silently replaced. */
#include "dispatch.h"

#include <math.h>

/* Constant-time mode (docs/security.md) never calls oneDNN: its kernels are not
 * checked for value-dependent timing. Where the reference looks at values, the
 * mode takes the *_ct variant instead. */
static int use_dnnl(const ts_ctx *ctx) { return ctx->backend == TS_BACKEND_DNNL && !ctx->constant_time; }

/* ------------------------------------------------------------ convolution */

/* The reference size whatever the backend: a oneDNN case may fall back, and a
 * model planned under one backend keeps working after ts_ctx_set_backend. oneDNN
 * manages its own scratch. */
size_t ops_conv2d_scratch_size(ts_ctx *ctx, const conv2d_params *p) {
    (void)ctx;
    return conv2d_scratch_size(p);
}

static ts_status conv2d_check_scratch(ts_ctx *ctx, const conv2d_params *p, const void *scratch) {
    if (!scratch && conv2d_scratch_size(p) > 0)
        return ts_fail(ctx, TS_EINVAL, "conv2d: reference kernel needs %zu bytes of scratch, got none",
                       conv2d_scratch_size(p));
    return TS_OK;
}

/* nChw16c operands (conv2d_params.src_blocked, dst_blocked: training keeps them between
 * layers) on the reference backend, or where oneDNN has no kernel: the kernels run on
 * NCHW copies. */
static int blocked(const conv2d_params *p) { return p->src_blocked || p->dst_blocked; }

static float *plain_copy(ts_ctx *ctx, int blk, int64_t n, int64_t c, int64_t s, const float *x, const char *what) {
    float *y = ts_alloc(ctx, (size_t)(n * c * s) * sizeof *y, what);
    if (y && blk) blocked16_to_nchw(n, c, s, y, x, ts_ctx_threads(ctx));
    return y;
}

static ts_status conv2d_forward_via_nchw(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in,
                                         const float *w, const float *bias, void *scratch) {
    conv2d_params q = *p;
    q.src_blocked = q.dst_blocked = 0;
    const int64_t hw = (int64_t)p->h * p->w, ohw = (int64_t)p->oh * p->ow;
    float *x = p->src_blocked ? plain_copy(ctx, 1, p->n, p->c, hw, in, "a convolution's NCHW input") : NULL;
    float *y = p->dst_blocked ? plain_copy(ctx, 0, p->n, p->k, ohw, NULL, "a convolution's NCHW output") : NULL;
    ts_status st = (p->src_blocked && !x) || (p->dst_blocked && !y) ? TS_ENOMEM : TS_OK;
    if (!st) st = ops_conv2d_forward(ctx, &q, y ? y : out, x ? x : in, w, bias, scratch);
    if (!st && y) nchw_to_blocked16(p->n, p->k, ohw, out, y, ts_ctx_threads(ctx));
    ts_free(x);
    ts_free(y);
    return st;
}

static ts_status conv2d_backward_via_nchw(ts_ctx *ctx, const conv2d_params *p, float *din, float *dw, float *dbias,
                                          const float *dout, const float *in, const float *w, void *scratch) {
    conv2d_params q = *p;
    q.src_blocked = q.dst_blocked = 0;
    const int64_t hw = (int64_t)p->h * p->w, ohw = (int64_t)p->oh * p->ow;
    const int sb = p->src_blocked, db = p->dst_blocked;
    float *x = sb ? plain_copy(ctx, 1, p->n, p->c, hw, in, "a convolution's NCHW input") : NULL;
    float *dy = db ? plain_copy(ctx, 1, p->n, p->k, ohw, dout, "a convolution's NCHW output gradient") : NULL;
    float *dx = sb && din ? plain_copy(ctx, 0, p->n, p->c, hw, NULL, "a convolution's NCHW input gradient") : NULL;
    ts_status st = (sb && !x) || (db && !dy) || (sb && din && !dx) ? TS_ENOMEM : TS_OK;
    if (!st) st = ops_conv2d_backward(ctx, &q, dx ? dx : din, dw, dbias, dy ? dy : dout, x ? x : in, w, scratch);
    if (!st && dx) nchw_to_blocked16(p->n, p->c, hw, din, dx, ts_ctx_threads(ctx));
    ts_free(x);
    ts_free(dy);
    ts_free(dx);
    return st;
}

static ts_status blocked_internal(ts_ctx *ctx) {
    return ts_fail(ctx, TS_EINVAL, "conv2d: nChw16c operands go through ops_conv2d_forward or ops_conv2d_backward (internal)");
}

ts_status ops_conv2d_forward(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                             const float *bias, void *scratch) {
    if (!ctx || !p) return TS_EINVAL;
    if (use_dnnl(ctx)) {
        ts_status s = conv2d_forward_dnnl(ctx, p, out, in, w, bias);
        if (s != TS_EUNSUPPORTED) return s;
    }
    if (blocked(p)) return conv2d_forward_via_nchw(ctx, p, out, in, w, bias, scratch);
    if (conv2d_check_scratch(ctx, p, scratch) != TS_OK) return ctx->status;
    conv2d_forward_ref(p, out, in, w, bias, scratch, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_conv2d_backward_data(ts_ctx *ctx, const conv2d_params *p, float *din, const float *dout,
                                   const float *w, void *scratch) {
    if (!ctx || !p) return TS_EINVAL;
    if (blocked(p)) return blocked_internal(ctx);
    if (use_dnnl(ctx)) {
        ts_status s = conv2d_backward_data_dnnl(ctx, p, din, dout, w);
        if (s != TS_EUNSUPPORTED) return s;
    }
    if (conv2d_check_scratch(ctx, p, scratch) != TS_OK) return ctx->status;
    conv2d_backward_data_ref(p, din, dout, w, scratch, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_conv2d_backward_weights(ts_ctx *ctx, const conv2d_params *p, float *dw, float *dbias,
                                      const float *dout, const float *in, void *scratch) {
    if (!ctx || !p) return TS_EINVAL;
    if (blocked(p)) return blocked_internal(ctx);
    if (use_dnnl(ctx)) {
        ts_status s = conv2d_backward_weights_dnnl(ctx, p, dw, dbias, dout, in);
        if (s != TS_EUNSUPPORTED) return s;
    }
    if (conv2d_check_scratch(ctx, p, scratch) != TS_OK) return ctx->status;
    conv2d_backward_weights_ref(p, dw, dbias, dout, in, scratch, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_conv2d_backward(ts_ctx *ctx, const conv2d_params *p, float *din, float *dw, float *dbias,
                              const float *dout, const float *in, const float *w, void *scratch) {
    if (!ctx || !p) return TS_EINVAL;
    if (use_dnnl(ctx)) {
        ts_status s = conv2d_backward_dnnl(ctx, p, din, dw, dbias, dout, in, w);
        if (s != TS_EUNSUPPORTED) return s;
    }
    if (blocked(p)) return conv2d_backward_via_nchw(ctx, p, din, dw, dbias, dout, in, w, scratch);
    ts_status s = ops_conv2d_backward_weights(ctx, p, dw, dbias, dout, in, scratch);
    if (!s && din) s = ops_conv2d_backward_data(ctx, p, din, dout, w, scratch);
    return s;
}

/* ---------------------------------------------------------------- pooling */

/* Big enough for either interpretation: int32 argmax per output (ref) and, under
 * the oneDNN backend, oneDNN's workspace. */
size_t ops_maxpool2d_workspace_size(ts_ctx *ctx, const pool2d_params *p) {
    if (!ctx || !p || p->n < 1 || p->c < 1 || p->oh < 1 || p->ow < 1) return 0;
    size_t ref = (size_t)p->n * (size_t)p->c * (size_t)p->oh * (size_t)p->ow * sizeof(int32_t);
    size_t dnnl = use_dnnl(ctx) ? maxpool2d_workspace_size_dnnl(ctx, p) : 0;
    return ref > dnnl ? ref : dnnl;
}

/* A channels-last pooling oneDNN does not take: the reference on NCHW copies. */
static ts_status pool_nhwc_ref(ts_ctx *ctx, const pool2d_params *p, float *out, const float *in, int is_max) {
    const int64_t n = p->n, c = p->c, h = p->h, w = p->w, oh = p->oh, ow = p->ow;
    float *a = ts_alloc(ctx, (size_t)(n * c * h * w) * sizeof *a, "a channels-last pooling's input");
    float *b = a ? ts_alloc(ctx, (size_t)(n * c * oh * ow) * sizeof *b, "a channels-last pooling's output") : NULL;
    if (!b) {
        ts_free(a);
        return TS_ENOMEM;
    }
    const int nt = ts_ctx_threads(ctx);
    const int64_t to_nchw[4] = {n, c, h, w}, nhwc_strides[4] = {h * w * c, 1, w * c, c};
    strided_copy_ref(4, to_nchw, a, in, nhwc_strides, nt);
    pool2d_params q = *p;
    q.nhwc = 0;
    if (is_max) maxpool2d_forward_ref(&q, b, NULL, a, nt);
    else avgpool2d_forward_ref(&q, b, a, nt);
    const int64_t to_nhwc[4] = {n, oh, ow, c}, nchw_strides[4] = {c * oh * ow, ow, 1, oh * ow};
    strided_copy_ref(4, to_nhwc, out, b, nchw_strides, nt);
    ts_free(a);
    ts_free(b);
    return TS_OK;
}

ts_status ops_maxpool2d_forward(ts_ctx *ctx, const pool2d_params *p, float *out, void *ws, const float *in) {
    if (!ctx || !p) return TS_EINVAL;
    if (ctx->constant_time) { /* inference only: no argmax for a backward */
        if (ws) return ts_fail(ctx, TS_EUNSUPPORTED, "max pooling: constant-time mode is for inference only");
        maxpool2d_forward_ct(p, out, in, ts_ctx_threads(ctx));
        return TS_OK;
    }
    if (use_dnnl(ctx) || p->blocked) {
        ts_status s = maxpool2d_forward_dnnl(ctx, p, out, ws, in);
        if (s != TS_EUNSUPPORTED) return s;
        if (p->blocked) return ts_fail(ctx, TS_EUNSUPPORTED, "max pooling: oneDNN has no kernel for this case on nChw16c");
    }
    if (p->nhwc) return ws ? ts_fail(ctx, TS_EINVAL, "max pooling: channels-last is for inference") : pool_nhwc_ref(ctx, p, out, in, 1);
    maxpool2d_forward_ref(p, out, ws, in, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_maxpool2d_backward(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout, const void *ws) {
    if (!ctx || !p) return TS_EINVAL;
    if (!ws) return ts_fail(ctx, TS_EINVAL, "max pooling backward: no workspace (the forward ran without one)");
    if (use_dnnl(ctx) || p->blocked) {
        /* EUNSUPPORTED here means the training forward had no oneDNN implementation
         * either (maxpool2d_backward_dnnl), so ws holds the reference's argmax */
        ts_status s = maxpool2d_backward_dnnl(ctx, p, din, dout, ws);
        if (s != TS_EUNSUPPORTED) return s;
        if (p->blocked) return ts_fail(ctx, TS_EUNSUPPORTED, "max pooling: oneDNN has no kernel for this case on nChw16c");
    }
    maxpool2d_backward_ref(p, din, dout, ws, ts_ctx_threads(ctx));
    return TS_OK;
}

/* The average kernels have no dilation (PyTorch's AvgPool2d has none). */
static ts_status avgpool_dilation_error(ts_ctx *ctx, const pool2d_params *p) {
    return ts_fail(ctx, TS_EINVAL, "average pooling: dilation %dx%d is not supported (only 1)", p->dh, p->dw);
}

ts_status ops_avgpool2d_forward(ts_ctx *ctx, const pool2d_params *p, float *out, const float *in) {
    if (!ctx || !p) return TS_EINVAL;
    if (p->dh != 1 || p->dw != 1) return avgpool_dilation_error(ctx, p);
    if (ctx->constant_time) {
        avgpool2d_forward_ct(p, out, in, ts_ctx_threads(ctx));
        return TS_OK;
    }
    if (use_dnnl(ctx)) {
        ts_status s = avgpool2d_forward_dnnl(ctx, p, out, in);
        if (s != TS_EUNSUPPORTED) return s;
    }
    if (p->nhwc) return pool_nhwc_ref(ctx, p, out, in, 0);
    avgpool2d_forward_ref(p, out, in, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_avgpool2d_backward(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout) {
    if (!ctx || !p) return TS_EINVAL;
    if (p->dh != 1 || p->dw != 1) return avgpool_dilation_error(ctx, p);
    if (use_dnnl(ctx)) {
        ts_status s = avgpool2d_backward_dnnl(ctx, p, din, dout);
        if (s != TS_EUNSUPPORTED) return s;
    }
    avgpool2d_backward_ref(p, din, dout, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ------------------------------------------------------------- batch norm */

/* Images take the vectorized plain-layout kernels (batchnorm_vec.c: 3-4x oneDNN's
 * ncsp_bnorm on ResNet-20's shapes); vectors (spatial 1, after a dense layer) and
 * tiny planes stay on oneDNN, whose kernel reads them across channels. */
#define BN_VEC_MIN_SPATIAL 16

ts_status ops_batchnorm_forward_train(ts_ctx *ctx, const bn_params *p, float *out, float *mean, float *var,
                                      const float *in, const float *gamma, const float *beta) {
    if (!ctx || !p) return TS_EINVAL;
    if (use_dnnl(ctx) && p->spatial >= BN_VEC_MIN_SPATIAL) {
        if (!out || !mean || !var || !in || !gamma || !beta)
            return ts_fail(ctx, TS_EINVAL, "batch normalization forward: a required tensor pointer is NULL");
        batchnorm_forward_train_vec(p, out, mean, var, in, gamma, beta, 0, ts_ctx_threads(ctx));
        return TS_OK;
    }
    if (use_dnnl(ctx)) {
        ts_status s = batchnorm_forward_train_dnnl(ctx, p, out, mean, var, in, gamma, beta);
        if (s != TS_EUNSUPPORTED) return s;
    }
    batchnorm_forward_train_ref(p, out, mean, var, in, gamma, beta, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_batchnorm_forward_infer(ts_ctx *ctx, const bn_params *p, float *out, const float *in,
                                      const float *gamma, const float *beta, const float *mean, const float *var) {
    if (!ctx || !p) return TS_EINVAL;
    if (!out || !in || !gamma || !beta || !mean || !var)
        return ts_fail(ctx, TS_EINVAL, "batch normalization forward (inference): a required tensor pointer is NULL");
    /* images: the plain kernel (one multiply-add an element) outruns oneDNN's
     * ncsp_bnorm; the same values as the reference backend's */
    if (use_dnnl(ctx) && p->spatial < BN_VEC_MIN_SPATIAL) {
        ts_status s = batchnorm_forward_infer_dnnl(ctx, p, out, in, gamma, beta, mean, var);
        if (s != TS_EUNSUPPORTED) return s;
    }
    batchnorm_forward_infer_ref(p, out, in, gamma, beta, mean, var, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_batchnorm_backward(ts_ctx *ctx, const bn_params *p, float *din, float *dgamma, float *dbeta,
                                 const float *dout, const float *in, const float *gamma, const float *mean,
                                 const float *var) {
    if (!ctx || !p) return TS_EINVAL;
    if (use_dnnl(ctx) && p->spatial >= BN_VEC_MIN_SPATIAL) {
        if (!din || !dgamma || !dbeta || !dout || !in || !gamma || !mean || !var)
            return ts_fail(ctx, TS_EINVAL, "batch normalization backward: a required tensor pointer is NULL");
        batchnorm_backward_vec(p, din, dgamma, dbeta, dout, in, NULL, gamma, mean, var, ts_ctx_threads(ctx));
        return TS_OK;
    }
    if (use_dnnl(ctx)) {
        ts_status s = batchnorm_backward_dnnl(ctx, p, din, dgamma, dbeta, dout, in, gamma, mean, var);
        if (s != TS_EUNSUPPORTED) return s;
    }
    batchnorm_backward_ref(p, din, dgamma, dbeta, dout, in, gamma, mean, var, ts_ctx_threads(ctx));
    return TS_OK;
}

int ops_batchnorm_relu_fusable(const ts_ctx *ctx, const bn_params *p) {
    return use_dnnl(ctx) && p->spatial >= BN_VEC_MIN_SPATIAL;
}

ts_status ops_batchnorm_relu_forward_train(ts_ctx *ctx, const bn_params *p, float *out, float *mean, float *var,
                                           const float *in, const float *gamma, const float *beta) {
    if (!ctx || !p) return TS_EINVAL;
    if (!ops_batchnorm_relu_fusable(ctx, p))
        return ts_fail(ctx, TS_EINVAL, "batch normalization + ReLU: not fusable here (internal)");
    if (!out || !mean || !var || !in || !gamma || !beta)
        return ts_fail(ctx, TS_EINVAL, "batch normalization + ReLU forward: a required tensor pointer is NULL");
    batchnorm_forward_train_vec(p, out, mean, var, in, gamma, beta, 1, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_batchnorm_relu_backward(ts_ctx *ctx, const bn_params *p, float *din, float *dgamma, float *dbeta,
                                      const float *dout, const float *in, const float *relu_out, const float *gamma,
                                      const float *mean, const float *var) {
    if (!ctx || !p) return TS_EINVAL;
    /* no backend check: the backward follows its forward, even if the backend changed
     * in between (the kernel is plain C) */
    if (!din || !dgamma || !dbeta || !dout || !in || !relu_out || !gamma || !mean || !var)
        return ts_fail(ctx, TS_EINVAL, "batch normalization + ReLU backward: a required tensor pointer is NULL");
    batchnorm_backward_vec(p, din, dgamma, dbeta, dout, in, relu_out, gamma, mean, var, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ----------------------------------------------------------- dense layer */

/* oneDNN's sgemm per product (one for every sample when B is one matrix: the rows of
 * all A matrices stacked), else the reference. */
ts_status ops_matmul_forward(ts_ctx *ctx, const matmul_params *q, float *c, const float *a, const float *b) {
    if (!ctx) return TS_EINVAL;
    if (use_dnnl(ctx)) {
        const int64_t mk = (int64_t)q->m * q->k, kp = (int64_t)q->k * q->p, mp = (int64_t)q->m * q->p;
        ts_status s = TS_OK;
        if (q->b_count == 1) { /* then a_count == c_count */
            s = gemm_dnnl(ctx, (int64_t)q->n * q->c_count * q->m, q->p, q->k, c, a, b);
        } else {
            for (int64_t t = 0; t < (int64_t)q->n * q->c_count && s == TS_OK; t++) {
                int64_t ia, ib;
                matmul_batch_index(q, t % q->c_count, &ia, &ib);
                s = gemm_dnnl(ctx, q->m, q->p, q->k, c + t * mp, a + ((t / q->c_count) * q->a_count + ia) * mk,
                              b + ib * kp);
            }
        }
        if (s != TS_EUNSUPPORTED) return s;
    }
    matmul_forward_ref(q, c, a, b, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_dense_forward(ts_ctx *ctx, int n, int in_f, int out_f, float *out, const float *in, const float *w,
                            const float *bias) {
    if (!ctx) return TS_EINVAL;
    if (use_dnnl(ctx)) {
        ts_status s = dense_forward_dnnl(ctx, n, in_f, out_f, out, in, w, bias);
        if (s != TS_EUNSUPPORTED) return s;
    }
    dense_forward_ref(n, in_f, out_f, out, in, w, bias, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_dense_backward_data(ts_ctx *ctx, int n, int in_f, int out_f, float *din, const float *dout,
                                  const float *w) {
    if (!ctx) return TS_EINVAL;
    if (use_dnnl(ctx)) {
        ts_status s = dense_backward_data_dnnl(ctx, n, in_f, out_f, din, dout, w);
        if (s != TS_EUNSUPPORTED) return s;
    }
    dense_backward_data_ref(n, in_f, out_f, din, dout, w, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_dense_backward_weights(ts_ctx *ctx, int n, int in_f, int out_f, float *dw, float *dbias,
                                     const float *dout, const float *in) {
    if (!ctx) return TS_EINVAL;
    if (use_dnnl(ctx)) {
        ts_status s = dense_backward_weights_dnnl(ctx, n, in_f, out_f, dw, dbias, dout, in);
        if (s != TS_EUNSUPPORTED) return s;
    }
    dense_backward_weights_ref(n, in_f, out_f, dw, dbias, dout, in, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ------------------------------------------------------------ elementwise */

ts_status ops_softmax_forward(ts_ctx *ctx, size_t outer, size_t len, size_t inner, int log_softmax, float *out,
                              const float *in) {
    if (!ctx) return TS_EINVAL;
    if (ctx->constant_time) {
        softmax_axis_forward_ct(outer, len, inner, log_softmax, out, in, ts_ctx_threads(ctx));
        return TS_OK;
    }
    if (use_dnnl(ctx)) {
        ts_status s = softmax_forward_dnnl(ctx, outer, len, inner, log_softmax, out, in);
        if (s != TS_EUNSUPPORTED) return s;
    }
    softmax_axis_forward_ref(outer, len, inner, log_softmax, out, in, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_eltwise_forward(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *out,
                              const float *in) {
    if (!ctx) return TS_EINVAL;
    if ((unsigned)kind >= ELTWISE_COUNT) return ts_fail(ctx, TS_EINVAL, "eltwise: unknown kind %d", (int)kind);
    if (ctx->constant_time) {
        eltwise_forward_ct(kind, alpha, count, out, in, ts_ctx_threads(ctx));
        return TS_OK;
    }
    if (use_dnnl(ctx)) {
        ts_status s = eltwise_forward_dnnl(ctx, kind, alpha, count, out, in);
        if (s != TS_EUNSUPPORTED) return s;
    }
    eltwise_forward_ref(kind, alpha, count, out, in, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_eltwise_backward(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *din,
                               const float *dout, const float *in, const float *out) {
    if (!ctx) return TS_EINVAL;
    if ((unsigned)kind >= ELTWISE_COUNT) return ts_fail(ctx, TS_EINVAL, "eltwise: unknown kind %d", (int)kind);
    if (use_dnnl(ctx)) {
        ts_status s = eltwise_backward_dnnl(ctx, kind, alpha, count, din, dout, in, out);
        if (s != TS_EUNSUPPORTED) return s;
    }
    eltwise_backward_ref(kind, alpha, count, din, dout, in, out, ts_ctx_threads(ctx));
    return TS_OK;
}

/* ------------------------------------------------------------ fused inference */

int ops_fusion_enabled(const ts_ctx *ctx) { return use_dnnl(ctx); }

ts_status ops_conv2d_forward_fused(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                                   const float *bias, conv_act act, const float *residual, void *scratch) {
    if (!ctx || !p || (act.residual && !residual)) return TS_EINVAL;
    const size_t count = (size_t)p->n * (size_t)p->k * (size_t)p->oh * (size_t)p->ow;
    if (act.residual) { /* the convolution alone, then the sum and the activation here */
        const conv_act none = {CONV_ACT_NONE, 0.0f, 0.0f, 0};
        ts_status s = ops_conv2d_forward_fused(ctx, p, out, in, w, bias, none, NULL, scratch);
        if (s) return s;
        for (size_t i = 0; i < count; i++) out[i] += residual[i];
        conv_act_apply_ref(act, count, out);
        return TS_OK;
    }
    ts_status s = conv2d_forward_inference_dnnl(ctx, p, out, in, w, bias, act);
    if (s != TS_EUNSUPPORTED) return s;
    if (conv2d_check_scratch(ctx, p, scratch) != TS_OK) return ctx->status;
    conv2d_forward_ref(p, out, in, w, bias, scratch, ts_ctx_threads(ctx));
    conv_act_apply_ref(act, count, out);
    return TS_OK;
}

void conv_act_apply_ref(conv_act act, size_t count, float *x) {
    switch (act.kind) {
    case CONV_ACT_CLAMP:
        for (size_t i = 0; i < count; i++) {
            const float v = x[i] < act.lo ? act.lo : x[i];
            x[i] = v > act.hi ? act.hi : v;
        }
        break;
    case CONV_ACT_SWISH:
        for (size_t i = 0; i < count; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case CONV_ACT_HARDSWISH:
        for (size_t i = 0; i < count; i++) {
            float v = x[i] * (1.0f / 6.0f) + 0.5f;
            v = v < 0.0f ? 0.0f : v;
            x[i] *= v > 1.0f ? 1.0f : v;
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ recurrent layers */

size_t ops_rnn_workspace_size(ts_ctx *ctx, const rnn_params *p) {
    if (!ctx || !p) return 0;
    /* oneDNN's share whatever the backend now: a model planned under the reference
     * may train after ts_ctx_set_backend(DNNL) without being planned again */
    const size_t ref = rnn_workspace_floats(p) * sizeof(float);
    const size_t dnnl = !ctx->constant_time ? rnn_dnnl_workspace_bytes(ctx, p) : 0;
    return ref > dnnl ? ref : dnnl;
}

ts_status ops_rnn_forward(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                          const float *w, const float *b, const float *keep, float *y, void *ws, size_t ws_bytes,
                          float *scratch, int *on_dnnl) {
    if (!ctx || !p || !on_dnnl) return TS_EINVAL;
    *on_dnnl = 0;
    if (use_dnnl(ctx) && !keep) {
        ts_status s = rnn_forward_dnnl(ctx, p, x, len, h0, w, b, y, ws, ws_bytes);
        if (s != TS_EUNSUPPORTED) {
            *on_dnnl = s != TS_OK ? 0 : rnn_bf16(ctx) ? 2 : 1;
            return s;
        }
    }
    if (ws && ws_bytes < rnn_workspace_floats(p) * sizeof(float))
        return ts_fail(ctx, TS_EINVAL, "rnn: the reference kernel needs %zu bytes of workspace, got %zu",
                       rnn_workspace_floats(p) * sizeof(float), ws_bytes);
    rnn_forward_ref(p, x, len, h0, w, b, keep, y, (float *)ws, scratch, ctx->constant_time, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status ops_rnn_backward(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                           const float *w, const float *b, const float *dy, const void *ws, size_t ws_bytes,
                           int on_dnnl, float *dx, float *dh0, float *dw, float *db, float *scratch) {
    if (!ctx || !p) return TS_EINVAL;
    if (on_dnnl && (on_dnnl == 2) != rnn_bf16(ctx))
        return ts_fail(ctx, TS_EINVAL, "rnn: bf16 was switched %s between the forward pass and its backward",
                       on_dnnl == 2 ? "off" : "on");
    if (on_dnnl) return rnn_backward_dnnl(ctx, p, x, len, h0, w, b, dy, ws, ws_bytes, dx, dh0, dw, db);
    rnn_backward_ref(p, x, len, w, dy, (const float *)ws, dx, dh0, dw, db, scratch, ts_ctx_threads(ctx));
    return TS_OK;
}
