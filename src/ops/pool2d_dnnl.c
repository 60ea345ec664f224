/* 2-D max and average pooling on oneDNN (pooling v2: with dilation), NCHW in the
 * caller's buffers.
 *
 * PyTorch and ONNX pad ph/pw before and pbh/pbw after; with ceil_mode they add
 * output positions whose windows run past the end padding. oneDNN requires
 * out = (in - ek + pad_l + pad_r) / s + 1 (ek the dilated kernel extent), so pad_r
 * is chosen as the smallest that yields our output size (never less than pbh, pbw).
 *
 * Max pooling ignores padding on both sides, so it matches, except for a window
 * whose dilated taps all miss the input (-inf for us, oneDNN's lowest float): such
 * cases return TS_EUNSUPPORTED. Average pooling excluding padding divides by the
 * number of real inputs in the window on both sides. Average pooling including
 * padding divides by kh*kw in oneDNN but we (as PyTorch) divide by the window
 * clipped to the padded input [-ph, H+pbh): they differ exactly when a ceil_mode
 * window extends past H+pbh (or W+pbw); that case returns TS_EUNSUPPORTED and the
 * dispatcher uses the reference kernel.
 *
 * Max-pool workspace: oneDNN's own (u8 or s32 window offsets, one per output), in
 * the layout of the training forward primitive, which the backward gets as hint. */
#include "dnnl_backend.h"

typedef struct pool_geom {
    dnnl_dims_t src, dst, strides, kernel, dilation, pad_l, pad_r;
    dnnl_format_tag_t tag; /* of src and dst: nchw, nhwc (p->nhwc) or nChw16c (p->blocked) */
} pool_geom;

/* Whether some dilated window along one axis has no tap inside [0, in). */
static int axis_has_empty_window(int in, int k, int s, int pad, int d, int out) {
    if (d == 1) return 0; /* a dense window always touches the input (pool2d_params_finish) */
    for (int o = 0; o < out; o++) {
        const int start = o * s - pad;
        int hit = 0;
        for (int t = 0; t < k && !hit; t++) hit = start + t * d >= 0 && start + t * d < in;
        if (!hit) return 1;
    }
    return 0;
}

/* Fills g; returns 0 when the parameters are not a valid finished pool2d_params. */
static int pool_geom_init(const pool2d_params *p, pool_geom *g) {
    if (p->n < 1 || p->c < 1 || p->h < 1 || p->w < 1 || p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 ||
        p->ph < 0 || p->pw < 0 || p->pbh < 0 || p->pbw < 0 || p->dh < 1 || p->dw < 1 || p->oh < 1 || p->ow < 1)
        return 0;
    g->tag = p->blocked ? dnnl_nChw16c : p->nhwc ? dnnl_nhwc : dnnl_nchw;
    g->src[0] = p->n, g->src[1] = p->c, g->src[2] = p->h, g->src[3] = p->w;
    g->dst[0] = p->n, g->dst[1] = p->c, g->dst[2] = p->oh, g->dst[3] = p->ow;
    g->strides[0] = p->sh, g->strides[1] = p->sw;
    g->kernel[0] = p->kh, g->kernel[1] = p->kw;
    g->dilation[0] = p->dh - 1, g->dilation[1] = p->dw - 1; /* oneDNN counts the gaps */
    g->pad_l[0] = p->ph, g->pad_l[1] = p->pw;
    /* the last window ends at (oh-1)*sh - ph + ekh */
    const dnnl_dim_t ekh = (dnnl_dim_t)(p->kh - 1) * p->dh + 1, ekw = (dnnl_dim_t)(p->kw - 1) * p->dw + 1;
    dnnl_dim_t need_h = (dnnl_dim_t)(p->oh - 1) * p->sh + ekh - p->h - p->ph;
    dnnl_dim_t need_w = (dnnl_dim_t)(p->ow - 1) * p->sw + ekw - p->w - p->pw;
    g->pad_r[0] = need_h > p->pbh ? need_h : p->pbh;
    g->pad_r[1] = need_w > p->pbw ? need_w : p->pbw;
    return 1;
}

/* Cases where oneDNN's result would differ from ours (see the top of the file). */
static int pool_matches(const pool2d_params *p, const pool_geom *g, int is_max) {
    if (is_max)
        return !axis_has_empty_window(p->h, p->kh, p->sh, p->ph, p->dh, p->oh) &&
               !axis_has_empty_window(p->w, p->kw, p->sw, p->pw, p->dw, p->ow);
    return p->dh == 1 && p->dw == 1 && (!p->count_include_pad || (g->pad_r[0] == p->pbh && g->pad_r[1] == p->pbw));
}

static dnnl_primitive_desc_t pool_forward_pd(dnnl_job *job, const pool_geom *g, dnnl_prop_kind_t prop,
                                             dnnl_alg_kind_t alg) {
    dnnl_memory_desc_t src = dnnl_job_md(job, 4, g->src, g->tag);
    dnnl_memory_desc_t dst = dnnl_job_md(job, 4, g->dst, g->tag);
    if (job->status != TS_OK) return NULL;
    dnnl_pooling_v2_desc_t pd;
    if (!dnnl_job_check(job,
                        dnnl_pooling_v2_forward_desc_init(&pd, prop, alg, &src, &dst, g->strides, g->kernel,
                                                          g->dilation, g->pad_l, g->pad_r),
                        "dnnl_pooling_v2_forward_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &pd, NULL, 0);
}

static dnnl_primitive_desc_t pool_backward_pd(dnnl_job *job, const pool_geom *g, dnnl_alg_kind_t alg,
                                              const_dnnl_primitive_desc_t fwd, int required) {
    dnnl_memory_desc_t dsrc = dnnl_job_md(job, 4, g->src, g->tag);
    dnnl_memory_desc_t ddst = dnnl_job_md(job, 4, g->dst, g->tag);
    if (job->status != TS_OK) return NULL;
    dnnl_pooling_v2_desc_t pd;
    if (!dnnl_job_check(job,
                        dnnl_pooling_v2_backward_desc_init(&pd, alg, &dsrc, &ddst, g->strides, g->kernel, g->dilation,
                                                           g->pad_l, g->pad_r),
                        "dnnl_pooling_v2_backward_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &pd, fwd, required);
}

size_t maxpool2d_workspace_size_dnnl(ts_ctx *ctx, const pool2d_params *p) {
    pool_geom g;
    if (!pool_geom_init(p, &g) || !pool_matches(p, &g, 1)) return 0;
    dnnl_job job;
    size_t bytes = 0;
    if (dnnl_job_begin(&job, ctx, "max pooling workspace") == TS_OK) {
        dnnl_primitive_desc_t pd = pool_forward_pd(&job, &g, dnnl_forward_training, dnnl_pooling_max);
        const dnnl_memory_desc_t *ws = dnnl_job_query_md(&job, pd, dnnl_query_workspace_md);
        if (ws) bytes = dnnl_memory_desc_get_size(ws);
    }
    dnnl_job_end(&job);
    return bytes;
}

ts_status maxpool2d_forward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *out, void *ws, const float *in) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    pool_geom g;
    if (!pool_geom_init(p, &g)) return ts_fail(ctx, TS_EINVAL, "oneDNN max pooling forward: invalid parameters");
    if (!pool_matches(p, &g, 1)) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, ws ? "max pooling forward (training)" : "max pooling forward (inference)") != TS_OK)
        return job.status;
    dnnl_primitive_desc_t pd =
        pool_forward_pd(&job, &g, ws ? dnnl_forward_training : dnnl_forward_inference, dnnl_pooling_max);
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_src_md), (void *)in)},
        {DNNL_ARG_DST, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_dst_md), out)},
        {DNNL_ARG_WORKSPACE, NULL}};
    if (ws) args[2].memory = dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_workspace_md), ws);
    dnnl_job_execute(&job, pd, ws ? 3 : 2, args);
    return dnnl_job_end(&job);
}

ts_status maxpool2d_backward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout,
                                  const void *ws) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    pool_geom g;
    if (!pool_geom_init(p, &g)) return ts_fail(ctx, TS_EINVAL, "oneDNN max pooling backward: invalid parameters");
    if (!pool_matches(p, &g, 1)) return TS_EUNSUPPORTED;
    if (!ws) return ts_fail(ctx, TS_EINVAL, "oneDNN max pooling backward: no workspace (forward ran without one)");
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "max pooling backward") != TS_OK) return job.status;
    dnnl_primitive_desc_t fwd = pool_forward_pd(&job, &g, dnnl_forward_training, dnnl_pooling_max);
    /* The forward found an implementation and wrote oneDNN's workspace: falling back
     * to the reference now would misread it, so "unimplemented" is an error here. */
    dnnl_primitive_desc_t pd = pool_backward_pd(&job, &g, dnnl_pooling_max, fwd, 1);
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_diff_dst_md), (void *)dout)},
        {DNNL_ARG_WORKSPACE, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_workspace_md), (void *)ws)},
        {DNNL_ARG_DIFF_SRC, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_diff_src_md), din)}};
    dnnl_job_execute(&job, pd, 3, args);
    return dnnl_job_end(&job);
}

static dnnl_alg_kind_t avg_alg(const pool2d_params *p) {
    return p->count_include_pad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding;
}

ts_status avgpool2d_forward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *out, const float *in) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    pool_geom g;
    if (!pool_geom_init(p, &g)) return ts_fail(ctx, TS_EINVAL, "oneDNN average pooling forward: invalid parameters");
    if (!pool_matches(p, &g, 0)) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "average pooling forward") != TS_OK) return job.status;
    dnnl_primitive_desc_t pd = pool_forward_pd(&job, &g, dnnl_forward_inference, avg_alg(p));
    dnnl_exec_arg_t args[2] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_src_md), (void *)in)},
        {DNNL_ARG_DST, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_dst_md), out)}};
    dnnl_job_execute(&job, pd, 2, args);
    return dnnl_job_end(&job);
}

ts_status avgpool2d_backward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    pool_geom g;
    if (!pool_geom_init(p, &g)) return ts_fail(ctx, TS_EINVAL, "oneDNN average pooling backward: invalid parameters");
    if (!pool_matches(p, &g, 0)) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "average pooling backward") != TS_OK) return job.status;
    dnnl_primitive_desc_t fwd = pool_forward_pd(&job, &g, dnnl_forward_training, avg_alg(p));
    dnnl_primitive_desc_t pd = pool_backward_pd(&job, &g, avg_alg(p), fwd, 0);
    dnnl_exec_arg_t args[2] = {
        {DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_diff_dst_md), (void *)dout)},
        {DNNL_ARG_DIFF_SRC, dnnl_job_memory(&job, dnnl_job_query_md(&job, pd, dnnl_query_diff_src_md), din)}};
    dnnl_job_execute(&job, pd, 2, args);
    return dnnl_job_end(&job);
}
