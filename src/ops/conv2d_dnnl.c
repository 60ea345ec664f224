/* 2-D convolution on oneDNN: forward (optional bias), backward data, backward
 * weights (optional bias gradient); stride, padding (each side its own), dilation,
 * groups, depthwise.
 *
 * The caller's tensors are plain: NCHW activations, (K, C/G, KH, KW) weights, which
 * is oneDNN's oihw (groups == 1) or goihw with dims (G, K/G, C/G, KH, KW) (same bytes).
 * The primitives are created with format `any` and the tensors reordered into the
 * blocked layouts oneDNN picks (nChw16c, OIhw16i16o on AVX-512: jit:avx512_core) and
 * back, in buffers oneDNN allocates for the call. Measured on N=64, C=K=32, 16x16,
 * 3x3, pad 1 (AVX-512 EPYC, reorders included, ms per call, fwd / bwd data / bwd
 * weights):  2 threads  `any` 1.3 / 1.3 / 1.5   nchw (x64:gemm:jit) 3.0 / 4.2 / 3.6
 *            1 thread   `any` 5.0 / 4.9 / 5.1   nchw                5.1 / 6.5 / 8.6
 * Define TS_CONV_DNNL_PLAIN to force the plain layouts on the primitive instead. */
#include "dnnl_backend.h"

#include <string.h>

#ifdef TS_CONV_DNNL_PLAIN
#define CONV_LAYOUT_ANY 0
#else
#define CONV_LAYOUT_ANY 1
#endif

/* Memory descriptors and geometry of one convolution, in oneDNN's terms. */
typedef struct conv_descs {
    dnnl_memory_desc_t src_user, wei_user, dst_user, bias; /* plain, the caller's */
    dnnl_memory_desc_t src, wei, dst;                      /* what the primitive is created with */
    dnnl_dims_t strides, dilates, pad_l, pad_r;
} conv_descs;

static void conv_descs_init(dnnl_job *job, const conv2d_params *p, conv_descs *d) {
    memset(d, 0, sizeof *d);
    if (p->n < 1 || p->c < 1 || p->k < 1 || p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 || p->dh < 1 ||
        p->dw < 1 || p->ph < 0 || p->pw < 0 || p->pbh < 0 || p->pbw < 0 || p->oh < 1 || p->ow < 1 || p->groups < 1 || p->c % p->groups ||
        p->k % p->groups) {
        dnnl_job_fail(job, TS_EINVAL, "invalid parameters (conv2d_params_finish not called or failed)");
        return;
    }
    const int g = p->groups;
    dnnl_dims_t src_dims = {p->n, p->c, p->h, p->w};
    dnnl_dims_t dst_dims = {p->n, p->k, p->oh, p->ow};
    dnnl_dims_t wei_dims = {p->k, p->c, p->kh, p->kw};
    dnnl_dims_t gwei_dims = {g, p->k / g, p->c / g, p->kh, p->kw};
    dnnl_dims_t bias_dims = {p->k};
    d->src_user = dnnl_job_md(job, 4, src_dims, dnnl_nchw);
    d->dst_user = dnnl_job_md(job, 4, dst_dims, dnnl_nchw);
    d->wei_user = g == 1 ? dnnl_job_md(job, 4, wei_dims, dnnl_oihw) : dnnl_job_md(job, 5, gwei_dims, dnnl_goihw);
    d->bias = dnnl_job_md(job, 1, bias_dims, dnnl_x);
    if (CONV_LAYOUT_ANY) {
        d->src = dnnl_job_md(job, 4, src_dims, dnnl_format_tag_any);
        d->dst = dnnl_job_md(job, 4, dst_dims, dnnl_format_tag_any);
        d->wei = g == 1 ? dnnl_job_md(job, 4, wei_dims, dnnl_format_tag_any)
                        : dnnl_job_md(job, 5, gwei_dims, dnnl_format_tag_any);
    } else {
        d->src = d->src_user;
        d->dst = d->dst_user;
        d->wei = d->wei_user;
    }
    d->strides[0] = p->sh, d->strides[1] = p->sw;
    d->dilates[0] = p->dh - 1, d->dilates[1] = p->dw - 1; /* oneDNN counts the gaps */
    /* PyTorch (and ONNX) pad ph/pw before and pbh/pbw after and drop what a stride
     * leaves over, which is exactly oneDNN's output-size rule. */
    d->pad_l[0] = p->ph, d->pad_r[0] = p->pbh;
    d->pad_l[1] = p->pw, d->pad_r[1] = p->pbw;
}

static dnnl_primitive_desc_t conv_forward_pd(dnnl_job *job, const conv_descs *d, int with_bias) {
    if (job->status != TS_OK) return NULL;
    dnnl_convolution_desc_t cd;
    if (!dnnl_job_check(job,
                        dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                                                   &d->src, &d->wei, with_bias ? &d->bias : NULL,
                                                                   &d->dst, d->strides, d->dilates, d->pad_l,
                                                                   d->pad_r),
                        "dnnl_dilated_convolution_forward_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &cd, NULL, 0);
}

static dnnl_primitive_desc_t conv_backward_data_pd(dnnl_job *job, const conv_descs *d,
                                                   const_dnnl_primitive_desc_t fwd) {
    if (job->status != TS_OK) return NULL;
    dnnl_convolution_desc_t cd;
    if (!dnnl_job_check(job,
                        dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &d->src, &d->wei,
                                                                         &d->dst, d->strides, d->dilates, d->pad_l,
                                                                         d->pad_r),
                        "dnnl_dilated_convolution_backward_data_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &cd, fwd, 0);
}

static dnnl_primitive_desc_t conv_backward_weights_pd(dnnl_job *job, const conv_descs *d, int with_bias,
                                                      const_dnnl_primitive_desc_t fwd) {
    if (job->status != TS_OK) return NULL;
    dnnl_convolution_desc_t cd;
    if (!dnnl_job_check(job,
                        dnnl_dilated_convolution_backward_weights_desc_init(
                            &cd, dnnl_convolution_direct, &d->src, &d->wei, with_bias ? &d->bias : NULL, &d->dst,
                            d->strides, d->dilates, d->pad_l, d->pad_r),
                        "dnnl_dilated_convolution_backward_weights_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &cd, fwd, 0);
}

ts_status conv2d_forward_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                              const float *bias) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "convolution forward") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    dnnl_primitive_desc_t pd = conv_forward_pd(&job, &d, bias != NULL);

    dnnl_memory_t src_user = dnnl_job_memory(&job, &d.src_user, (void *)in);
    dnnl_memory_t wei_user = dnnl_job_memory(&job, &d.wei_user, (void *)w);
    dnnl_memory_t dst_user = dnnl_job_memory(&job, &d.dst_user, out);
    dnnl_memory_t src = dnnl_job_layout(&job, src_user, dnnl_job_query_md(&job, pd, dnnl_query_src_md), 1);
    dnnl_memory_t wei = dnnl_job_layout(&job, wei_user, dnnl_job_query_md(&job, pd, dnnl_query_weights_md), 1);
    dnnl_memory_t dst = dnnl_job_layout(&job, dst_user, dnnl_job_query_md(&job, pd, dnnl_query_dst_md), 0);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, NULL}};
    if (bias) args[3].memory = dnnl_job_memory(&job, &d.bias, (void *)bias);
    dnnl_job_execute(&job, pd, bias ? 4 : 3, args);
    dnnl_job_reorder(&job, dst, dst_user);
    return dnnl_job_end(&job);
}

/* Inference: forward_inference propagation, and ReLU applied as a post-op when
 * relu (batch norm is folded into w and bias by the caller). */
ts_status conv2d_forward_inference_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in,
                                        const float *w, const float *bias, int relu) {
    if (p->n == 0) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "fused convolution") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    if (ctx->bf16 && job.status == TS_OK) {
        /* bfloat16 source and weights (the reorders convert), float32 output */
        dnnl_job_check(&job, dnnl_memory_desc_init_by_tag(&d.src, 4, d.src_user.dims, dnnl_bf16, dnnl_format_tag_any),
                       "dnnl_memory_desc_init_by_tag");
        if (p->groups == 1)
            dnnl_job_check(&job, dnnl_memory_desc_init_by_tag(&d.wei, 4, d.wei_user.dims, dnnl_bf16, dnnl_format_tag_any),
                           "dnnl_memory_desc_init_by_tag");
        else
            dnnl_job_check(&job, dnnl_memory_desc_init_by_tag(&d.wei, 5, d.wei_user.dims, dnnl_bf16, dnnl_format_tag_any),
                           "dnnl_memory_desc_init_by_tag");
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK && relu &&
        (!dnnl_job_check(&job, dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create") ||
         !dnnl_job_check(&job, dnnl_post_ops_create(&ops), "dnnl_post_ops_create") ||
         !dnnl_job_check(&job, dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f),
                         "dnnl_post_ops_append_eltwise") ||
         !dnnl_job_check(&job, dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops"))) {
        /* failure recorded on the job */
    }
    if (job.status == TS_OK) {
        dnnl_convolution_desc_t cd;
        if (dnnl_job_check(&job,
                           dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                                      dnnl_convolution_direct, &d.src, &d.wei,
                                                                      bias ? &d.bias : NULL, &d.dst, d.strides,
                                                                      d.dilates, d.pad_l, d.pad_r),
                           "dnnl_dilated_convolution_forward_desc_init"))
            pd = dnnl_job_pd_attr(&job, &cd, attr, NULL, 0);
    }
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    dnnl_memory_t src_user = dnnl_job_memory(&job, &d.src_user, (void *)in);
    dnnl_memory_t wei_user = dnnl_job_memory(&job, &d.wei_user, (void *)w);
    dnnl_memory_t dst_user = dnnl_job_memory(&job, &d.dst_user, out);
    dnnl_memory_t src = dnnl_job_layout(&job, src_user, dnnl_job_query_md(&job, pd, dnnl_query_src_md), 1);
    dnnl_memory_t wei = dnnl_job_layout(&job, wei_user, dnnl_job_query_md(&job, pd, dnnl_query_weights_md), 1);
    dnnl_memory_t dst = dnnl_job_layout(&job, dst_user, dnnl_job_query_md(&job, pd, dnnl_query_dst_md), 0);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, NULL}};
    if (bias) args[3].memory = dnnl_job_memory(&job, &d.bias, (void *)bias);
    dnnl_job_execute(&job, pd, bias ? 4 : 3, args);
    dnnl_job_reorder(&job, dst, dst_user);
    return dnnl_job_end(&job);
}

ts_status conv2d_backward_data_dnnl(ts_ctx *ctx, const conv2d_params *p, float *din, const float *dout,
                                    const float *w) {
    if (p->n == 0) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "convolution backward data") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    dnnl_primitive_desc_t fwd = conv_forward_pd(&job, &d, 0);
    dnnl_primitive_desc_t pd = conv_backward_data_pd(&job, &d, fwd);

    dnnl_memory_t dsrc_user = dnnl_job_memory(&job, &d.src_user, din);
    dnnl_memory_t wei_user = dnnl_job_memory(&job, &d.wei_user, (void *)w);
    dnnl_memory_t ddst_user = dnnl_job_memory(&job, &d.dst_user, (void *)dout);
    dnnl_memory_t ddst = dnnl_job_layout(&job, ddst_user, dnnl_job_query_md(&job, pd, dnnl_query_diff_dst_md), 1);
    dnnl_memory_t wei = dnnl_job_layout(&job, wei_user, dnnl_job_query_md(&job, pd, dnnl_query_weights_md), 1);
    dnnl_memory_t dsrc = dnnl_job_layout(&job, dsrc_user, dnnl_job_query_md(&job, pd, dnnl_query_diff_src_md), 0);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc}};
    dnnl_job_execute(&job, pd, 3, args);
    dnnl_job_reorder(&job, dsrc, dsrc_user);
    return dnnl_job_end(&job);
}

ts_status conv2d_backward_weights_dnnl(ts_ctx *ctx, const conv2d_params *p, float *dw, float *dbias,
                                       const float *dout, const float *in) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* the reference zeroes dw and dbias */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "convolution backward weights") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    dnnl_primitive_desc_t fwd = conv_forward_pd(&job, &d, dbias != NULL);
    dnnl_primitive_desc_t pd = conv_backward_weights_pd(&job, &d, dbias != NULL, fwd);

    dnnl_memory_t src_user = dnnl_job_memory(&job, &d.src_user, (void *)in);
    dnnl_memory_t ddst_user = dnnl_job_memory(&job, &d.dst_user, (void *)dout);
    dnnl_memory_t dwei_user = dnnl_job_memory(&job, &d.wei_user, dw);
    dnnl_memory_t src = dnnl_job_layout(&job, src_user, dnnl_job_query_md(&job, pd, dnnl_query_src_md), 1);
    dnnl_memory_t ddst = dnnl_job_layout(&job, ddst_user, dnnl_job_query_md(&job, pd, dnnl_query_diff_dst_md), 1);
    dnnl_memory_t dwei = dnnl_job_layout(&job, dwei_user, dnnl_job_query_md(&job, pd, dnnl_query_diff_weights_md), 0);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei}, {DNNL_ARG_DIFF_BIAS, NULL}};
    if (dbias) args[3].memory = dnnl_job_memory(&job, &d.bias, dbias);
    dnnl_job_execute(&job, pd, dbias ? 4 : 3, args);
    dnnl_job_reorder(&job, dwei, dwei_user);
    return dnnl_job_end(&job);
}
