/* 2-D convolution on oneDNN: forward (optional bias), backward data, backward
 * weights (optional bias gradient); stride, padding (each side its own), dilation,
 * groups, depthwise.
 *
 * The caller's tensors are plain: NCHW activations, (K, C/G, KH, KW) weights, which
 * is oneDNN's oihw (groups == 1) or goihw with dims (G, K/G, C/G, KH, KW) (same bytes).
 * The primitives are created with format `any` and the tensors reordered into the
 * blocked layouts oneDNN picks (nChw16c, OIhw16i16o on AVX-512: jit:avx512_core) and
 * back, in the ctx's temporary buffers (dnnl_job_memory_alloc). Measured on N=64, C=K=32, 16x16,
 * 3x3, pad 1 (AVX-512 EPYC, reorders included, ms per call, fwd / bwd data / bwd
 * weights):  2 threads  `any` 1.3 / 1.3 / 1.5   nchw (x64:gemm:jit) 3.0 / 4.2 / 3.6
 *            1 thread   `any` 5.0 / 4.9 / 5.1   nchw                5.1 / 6.5 / 8.6
 * Training may hand over activations already in nChw16c (conv2d_params.src_blocked,
 * dst_blocked): then their reorders are no-ops (dnnl_job_layout).
 * Define TS_CONV_DNNL_PLAIN to force the plain layouts on the primitive instead. */
#include "dnnl_backend.h"

#include <math.h>

#include <omp.h>
#include <stdlib.h>
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
    d->src_user = dnnl_job_md(job, 4, src_dims, p->src_blocked ? dnnl_nChw16c : dnnl_nchw);
    d->dst_user = dnnl_job_md(job, 4, dst_dims, p->dst_blocked ? dnnl_nChw16c : dnnl_nchw);
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

/* Which pass a set of descriptors is for: with ctx->bf16 (mixed precision) each pass
 * reads its large operands in bfloat16 and writes float32 (forward: src and weights
 * in, dst out; backward data: dst gradient and weights in, src gradient out;
 * backward weights: src and dst gradient in, weight gradient out). The hint for the
 * backward passes is a forward with everything in bfloat16. */
typedef enum conv_pass { PASS_FWD, PASS_BWD_DATA, PASS_BWD_WEIGHTS, PASS_HINT } conv_pass;

/* md with data type dt in the layout oneDNN picks */
static void md_type(dnnl_job *job, dnnl_memory_desc_t *md, dnnl_data_type_t dt) {
    dnnl_dims_t dims;
    memcpy(dims, md->dims, sizeof dims);
    dnnl_job_check(job, dnnl_memory_desc_init_by_tag(md, md->ndims, dims, dt, dnnl_format_tag_any),
                   "dnnl_memory_desc_init_by_tag");
}

static conv_descs conv_descs_for(dnnl_job *job, const conv_descs *d, conv_pass pass) {
    conv_descs e = *d;
    if (!job->ctx->bf16 || !CONV_LAYOUT_ANY || job->status != TS_OK) return e;
    if (pass != PASS_BWD_DATA) md_type(job, &e.src, dnnl_bf16);
    if (pass != PASS_BWD_WEIGHTS) md_type(job, &e.wei, dnnl_bf16);
    if (pass != PASS_FWD) md_type(job, &e.dst, dnnl_bf16);
    return e;
}

/* Winograd where it pays. oneDNN 2.6 on an AVX-512 EPYC (Zen 4), 1 thread, 3x3
 * stride-1 convolutions, Winograd against direct (brgconv / jit): forward inference
 * with 64-512 channels 1.2-2.5x faster at batch 1 and 1.9-2.2x at batch 32; at batch
 * 128 with 32 / 64 channels forward 1.5x / 1.9x and backward data 1.5x / 2.0x, but
 * with 16 channels in and out 0.7-0.9x (16 in, 64 out: 1.4x at batch 1, 1.6x at 32;
 * 3 in: 0.3x); backward weights 0.9x at 32 channels, 1.5x at 64. So: at least 16
 * input and 32 output channels. Results
 * differ from direct by float rounding (about 1e-6 of the outputs' scale), which Adam
 * amplifies over training steps (test_parity_torch's AdamW run: 2x its tolerance
 * against 0.3x direct), so the training passes take Winograd only when asked
 * (TS_WINOGRAD_TRAINING) and backward weights never. bf16 and int8 keep the direct
 * kernels. When oneDNN has no Winograd kernel for a case (a clip post-op, a padding),
 * the pd falls back to direct (conv_pd). */
static dnnl_alg_kind_t conv_alg(const dnnl_job *job, const conv_descs *d, conv_pass pass, int training) {
    const dnnl_memory_desc_t *w = &d->wei;
    const int mode = job->ctx->winograd;
    if (!CONV_LAYOUT_ANY || mode == TS_WINOGRAD_OFF || (training && mode != TS_WINOGRAD_TRAINING) || job->ctx->bf16 ||
        pass == PASS_BWD_WEIGHTS || w->ndims != 4 || w->data_type != dnnl_f32 || d->src.data_type != dnnl_f32)
        return dnnl_convolution_direct;
    if (w->dims[2] != 3 || w->dims[3] != 3 || d->strides[0] != 1 || d->strides[1] != 1 || d->dilates[0] ||
        d->dilates[1])
        return dnnl_convolution_direct;
    return w->dims[0] >= 32 && w->dims[1] >= 16 ? dnnl_convolution_winograd : dnnl_convolution_direct;
}

typedef enum conv_kind { KIND_FWD_TRAIN, KIND_FWD_INFER, KIND_BWD_DATA, KIND_BWD_WEIGHTS } conv_kind;

/* The primitive descriptor of one convolution pass, tried with alg and, when that is
 * Winograd and oneDNN has no kernel for it, again with the direct algorithm. On
 * `engine` when it is not the job's (a packed set's; its pd is the caller's to
 * destroy). */
static dnnl_primitive_desc_t conv_pd(dnnl_job *job, conv_kind kind, dnnl_alg_kind_t alg, const conv_descs *d,
                                     int with_bias, const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint,
                                     dnnl_engine_t engine) {
    for (;;) {
        if (job->status != TS_OK) return NULL;
        dnnl_convolution_desc_t cd;
        const dnnl_memory_desc_t *bias = with_bias ? &d->bias : NULL;
        dnnl_status_t st;
        if (kind == KIND_BWD_DATA)
            st = dnnl_dilated_convolution_backward_data_desc_init(&cd, alg, &d->src, &d->wei, &d->dst, d->strides,
                                                                  d->dilates, d->pad_l, d->pad_r);
        else if (kind == KIND_BWD_WEIGHTS)
            st = dnnl_dilated_convolution_backward_weights_desc_init(&cd, alg, &d->src, &d->wei, bias, &d->dst,
                                                                     d->strides, d->dilates, d->pad_l, d->pad_r);
        else
            st = dnnl_dilated_convolution_forward_desc_init(
                &cd, kind == KIND_FWD_TRAIN ? dnnl_forward_training : dnnl_forward_inference, alg, &d->src, &d->wei,
                bias, &d->dst, d->strides, d->dilates, d->pad_l, d->pad_r);
        if (!dnnl_job_check(job, st, "dnnl_dilated_convolution_desc_init")) return NULL;
        dnnl_primitive_desc_t pd = NULL;
        if (!engine || engine == job->dnnl->engine) {
            pd = dnnl_job_pd_attr(job, &cd, attr, hint, 0);
        } else {
            st = dnnl_primitive_desc_create(&pd, &cd, attr, engine, hint);
            if (st == dnnl_unimplemented) job->status = TS_EUNSUPPORTED; /* the caller falls back */
            else dnnl_job_check(job, st, "dnnl_primitive_desc_create");
            if (st != dnnl_success) pd = NULL;
        }
        if (pd || alg != dnnl_convolution_winograd || job->status != TS_EUNSUPPORTED) return pd;
        job->status = TS_OK;
        alg = dnnl_convolution_direct;
    }
}

static dnnl_primitive_desc_t conv_forward_pd(dnnl_job *job, const conv_descs *d, int with_bias) {
    return conv_pd(job, KIND_FWD_TRAIN, conv_alg(job, d, PASS_FWD, 1), d, with_bias, NULL, NULL, NULL);
}

static dnnl_primitive_desc_t conv_backward_data_pd(dnnl_job *job, const conv_descs *d,
                                                   const_dnnl_primitive_desc_t fwd) {
    return conv_pd(job, KIND_BWD_DATA, conv_alg(job, d, PASS_BWD_DATA, 1), d, 0, NULL, fwd, NULL);
}

static dnnl_primitive_desc_t conv_backward_weights_pd(dnnl_job *job, const conv_descs *d, int with_bias,
                                                      const_dnnl_primitive_desc_t fwd) {
    return conv_pd(job, KIND_BWD_WEIGHTS, conv_alg(job, d, PASS_BWD_WEIGHTS, 1), d, with_bias, NULL, fwd, NULL);
}

/* Runs forward primitive pd on the caller's plain tensors (reordered in and out of the
 * layouts pd chose) and ends the job. */
static ts_status conv_forward_run(dnnl_job *job, const conv_descs *d, const_dnnl_primitive_desc_t pd, float *out,
                                  const float *in, const float *w, const float *bias) {
    dnnl_memory_t src_user = dnnl_job_memory(job, &d->src_user, (void *)in);
    dnnl_memory_t wei_user = dnnl_job_memory(job, &d->wei_user, (void *)w);
    dnnl_memory_t dst_user = dnnl_job_memory(job, &d->dst_user, out);
    dnnl_memory_t src = dnnl_job_layout(job, src_user, dnnl_job_query_md(job, pd, dnnl_query_src_md), 1);
    dnnl_memory_t wei = dnnl_job_layout(job, wei_user, dnnl_job_query_md(job, pd, dnnl_query_weights_md), 1);
    dnnl_memory_t dst = dnnl_job_layout(job, dst_user, dnnl_job_query_md(job, pd, dnnl_query_dst_md), 0);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, NULL}};
    if (bias) args[3].memory = dnnl_job_memory(job, &d->bias, (void *)bias);
    dnnl_job_execute(job, pd, bias ? 4 : 3, args);
    dnnl_job_reorder(job, dst, dst_user);
    return dnnl_job_end(job);
}

ts_status conv2d_forward_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                              const float *bias) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "convolution forward") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    conv_descs f = conv_descs_for(&job, &d, PASS_FWD);
    dnnl_primitive_desc_t pd = conv_forward_pd(&job, &f, bias != NULL);

    return conv_forward_run(&job, &d, pd, out, in, w, bias);
}

/* Both backward passes in one job, so the output gradient is reordered into the
 * blocked layout once (when the two primitives want the same layout, as they do on
 * AVX-512) instead of once per pass. din may be NULL (the input needs no gradient). */
ts_status conv2d_backward_dnnl(ts_ctx *ctx, const conv2d_params *p, float *din, float *dw, float *dbias,
                               const float *dout, const float *in, const float *w) {
    if (p->n == 0) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "convolution backward") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    conv_descs h = conv_descs_for(&job, &d, PASS_HINT), bw = conv_descs_for(&job, &d, PASS_BWD_WEIGHTS);
    conv_descs bd = conv_descs_for(&job, &d, PASS_BWD_DATA);
    dnnl_primitive_desc_t fwd = conv_forward_pd(&job, &h, dbias != NULL);
    dnnl_primitive_desc_t bww = conv_backward_weights_pd(&job, &bw, dbias != NULL, fwd);
    dnnl_primitive_desc_t bwd = din ? conv_backward_data_pd(&job, &bd, fwd) : NULL;

    dnnl_memory_t src_user = dnnl_job_memory(&job, &d.src_user, (void *)in);
    dnnl_memory_t ddst_user = dnnl_job_memory(&job, &d.dst_user, (void *)dout);
    dnnl_memory_t dwei_user = dnnl_job_memory(&job, &d.wei_user, dw);
    dnnl_memory_t src = dnnl_job_layout(&job, src_user, dnnl_job_query_md(&job, bww, dnnl_query_src_md), 1);
    dnnl_memory_t ddst = dnnl_job_layout(&job, ddst_user, dnnl_job_query_md(&job, bww, dnnl_query_diff_dst_md), 1);
    dnnl_memory_t dwei = dnnl_job_layout(&job, dwei_user, dnnl_job_query_md(&job, bww, dnnl_query_diff_weights_md), 0);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei}, {DNNL_ARG_DIFF_BIAS, NULL}};
    if (dbias) args[3].memory = dnnl_job_memory(&job, &d.bias, dbias);
    dnnl_job_execute(&job, bww, dbias ? 4 : 3, args);
    dnnl_job_reorder(&job, dwei, dwei_user);
    if (din && job.status == TS_OK) {
        const dnnl_memory_desc_t *want = dnnl_job_query_md(&job, bwd, dnnl_query_diff_dst_md), *have = NULL;
        dnnl_memory_t ddst_d = NULL;
        if (want && dnnl_job_check(&job, dnnl_memory_get_memory_desc(ddst, &have), "dnnl_memory_get_memory_desc"))
            ddst_d = dnnl_memory_desc_equal(have, want) ? ddst : dnnl_job_layout(&job, ddst_user, want, 1);
        dnnl_memory_t dsrc_user = dnnl_job_memory(&job, &d.src_user, din);
        dnnl_memory_t wei_user = dnnl_job_memory(&job, &d.wei_user, (void *)w);
        dnnl_memory_t wei = dnnl_job_layout(&job, wei_user, dnnl_job_query_md(&job, bwd, dnnl_query_weights_md), 1);
        dnnl_memory_t dsrc = dnnl_job_layout(&job, dsrc_user, dnnl_job_query_md(&job, bwd, dnnl_query_diff_src_md), 0);
        dnnl_exec_arg_t dargs[3] = {{DNNL_ARG_DIFF_DST, ddst_d}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc}};
        dnnl_job_execute(&job, bwd, 3, dargs);
        dnnl_job_reorder(&job, dsrc, dsrc_user);
    }
    return dnnl_job_end(&job);
}

/* Descriptors of an inference convolution: bf16 source and weights when ctx->bf16
 * (PASS_FWD: the reorders convert; the output stays f32), act as a post-op (relu for
 * {0, inf}, else clip_v2, which is torch.clamp). The primitive descriptor is created
 * on `engine` (the ctx's, or a packed set's). */
static dnnl_primitive_desc_t conv_inference_pd(dnnl_job *job, const conv2d_params *p, conv_descs *d, int with_bias,
                                               conv_act act, const conv_quant *q, dnnl_engine_t engine) {
    conv_descs_init(job, p, d);
    dnnl_primitive_attr_t attr = NULL;
    float *scales = NULL;
    if (!q) {
        *d = conv_descs_for(job, d, PASS_FWD);
    } else if (job->status == TS_OK) {
        /* int8: u8 or s8 source, s8 weights, f32 output; oneDNN adds the bias to the
         * int32 sums and then multiplies by the output scale (src_scale * wei_scale[k]),
         * so the caller passes the bias divided by that scale */
        if (!CONV_LAYOUT_ANY) {
            job->status = TS_EUNSUPPORTED;
            return NULL;
        }
        md_type(job, &d->src, q->src_u8 ? dnnl_u8 : dnnl_s8);
        md_type(job, &d->wei, dnnl_s8);
    }
    attr = dnnl_job_attr_create(job);
    if (q && attr && job->status == TS_OK) {
        if (!(scales = malloc(sizeof *scales * (size_t)p->k))) {
            dnnl_job_fail(job, TS_ENOMEM, "out of memory for int8 scales");
        } else {
            for (int k = 0; k < p->k; k++) scales[k] = q->src_scale * q->wei_scale[k];
            dnnl_job_check(job, dnnl_primitive_attr_set_output_scales(attr, p->k, 1 << 1, scales),
                           "dnnl_primitive_attr_set_output_scales");
        }
    }
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_alg_kind_t alg = dnnl_eltwise_relu;
    float alpha = 0.0f, beta = 0.0f;
    if (act.kind == CONV_ACT_CLAMP && !(act.lo == 0.0f && act.hi == INFINITY)) {
        alg = dnnl_eltwise_clip_v2; /* torch.clamp: hi wins where lo > hi */
        alpha = act.lo;
        beta = act.hi;
    } else if (act.kind == CONV_ACT_SWISH) {
        alg = dnnl_eltwise_swish;
        alpha = 1.0f;
    } else if (act.kind == CONV_ACT_HARDSWISH) {
        alg = dnnl_eltwise_hardswish;
    }
    /* a residual is oneDNN's sum post-op (dst += the result; the caller fills dst with
     * the residual first): its binary post-op with a whole tensor has no brgconv
     * implementation in oneDNN 2.6, and the gemm one it falls to is 10x slower */
    if (job->status == TS_OK && (act.kind != CONV_ACT_NONE || act.residual)) {
        if (dnnl_job_check(job, dnnl_post_ops_create(&ops), "dnnl_post_ops_create") &&
            (!act.residual || dnnl_job_check(job, dnnl_post_ops_append_sum(ops, 1.0f), "dnnl_post_ops_append_sum")) &&
            (act.kind == CONV_ACT_NONE ||
             dnnl_job_check(job, dnnl_post_ops_append_eltwise(ops, 1.0f, alg, alpha, beta), "dnnl_post_ops_append_eltwise")))
            dnnl_job_check(job, dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops");
    }
    /* int8 keeps the direct kernels (conv_alg sees the s8 weights) */
    pd = conv_pd(job, KIND_FWD_INFER, conv_alg(job, d, PASS_FWD, 0), d, with_bias, attr, NULL, engine);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    free(scales);
    return pd;
}

/* Inference: forward_inference propagation, and act applied as a post-op (batch norm
 * is folded into w and bias by the caller). */
ts_status conv2d_forward_inference_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in,
                                        const float *w, const float *bias, conv_act act) {
    if (p->n == 0 || act.residual) return TS_EUNSUPPORTED; /* a residual: the packed path, or the caller adds it */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "fused convolution") != TS_OK) return job.status;
    conv_descs d;
    dnnl_primitive_desc_t pd = conv_inference_pd(&job, p, &d, bias != NULL, act, NULL, job.dnnl->engine);
    return conv_forward_run(&job, &d, pd, out, in, w, bias);
}

/* ------------------------------------------------------- packed inference convolutions
 *
 * The per-call path above creates a primitive descriptor, reorders the weights into
 * the primitive's blocked layout and frees it all again on every call; at batch 1 that
 * is about a third of ResNet-20's time. A packed set does it once: each slot keeps its
 * primitive, its weights (batch norm folded by the caller) already in the
 * primitive's layout, and the reorders of the activations in and out. The set has
 * its own engine and stream, so it does not depend on the ctx that built it (a model
 * may outlive its ctx); it is built for one batch size and thread count. */

/* A primitive of a packed slot and, when it wants a scratchpad, a memory object over
 * the set's (its handle set at each run: the buffer may grow when later slots are
 * added). */
typedef struct packed_prim {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch;
} packed_prim;

typedef struct packed_conv {
    int ready;
    dnnl_primitive_desc_t pd;
    packed_prim conv, src_reorder, dst_reorder; /* reorders NULL where the layout is plain */
    packed_prim res_reorder; /* the residual into a blocked output (Winograd's), else NULL */
    dnnl_memory_t src_user, dst_user, src, dst, wei, bias, res_user;
    int res_mode; /* 0: no residual; else 4 | 2 (the residual is NHWC) | 1 (the output is) */
    void *wei_buf, *bias_buf; /* what wei and bias hold (ts_alloc) */
} packed_conv;

enum { PACKED_SRC, PACKED_DST, PACKED_SCRATCH, PACKED_NBUF };

struct conv2d_packed_set {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads, nslots;
    packed_conv *slot;      /* (nslots) */
    /* shared by the slots, which run one at a time: blocked copies of a slot's source
     * and output, and the scratchpad of its primitives */
    void *buf[PACKED_NBUF];
    size_t buf_bytes[PACKED_NBUF];
};

static void packed_prim_release(packed_prim *p) {
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->scratch) dnnl_memory_destroy(p->scratch);
}

static void packed_conv_release(packed_conv *c) {
    packed_prim_release(&c->conv);
    packed_prim_release(&c->src_reorder);
    packed_prim_release(&c->dst_reorder);
    packed_prim_release(&c->res_reorder);
    if (c->res_user) dnnl_memory_destroy(c->res_user);
    if (c->pd) dnnl_primitive_desc_destroy(c->pd);
    dnnl_memory_t mem[6] = {c->src_user, c->dst_user, c->src, c->dst, c->wei, c->bias};
    for (int i = 0; i < 6; i++)
        if (mem[i] && !(i == 2 && mem[i] == c->src_user) && !(i == 3 && mem[i] == c->dst_user))
            dnnl_memory_destroy(mem[i]);
    ts_free(c->wei_buf);
    ts_free(c->bias_buf);
    memset(c, 0, sizeof *c);
}

void conv2d_packed_set_free(conv2d_packed_set *s) {
    if (!s) return;
    for (int i = 0; i < s->nslots; i++) packed_conv_release(&s->slot[i]);
    free(s->slot);
    for (int i = 0; i < PACKED_NBUF; i++) ts_free(s->buf[i]);
    if (s->stream) dnnl_stream_destroy(s->stream);
    if (s->engine) dnnl_engine_destroy(s->engine);
    free(s);
}

ts_status conv2d_packed_set_create(ts_ctx *ctx, int nslots, conv2d_packed_set **out) {
    *out = NULL;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "packed convolutions") != TS_OK) return job.status;
    conv2d_packed_set *s = calloc(1, sizeof *s);
    if (!s || !(s->slot = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *s->slot))) {
        free(s);
        return ts_fail(ctx, TS_ENOMEM, "oneDNN packed convolutions: out of memory");
    }
    s->nslots = nslots;
    s->threads = ts_ctx_threads(ctx);
    if (dnnl_job_check(&job, dnnl_engine_create(&s->engine, dnnl_cpu, 0), "dnnl_engine_create"))
        dnnl_job_check(&job, dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags), "dnnl_stream_create");
    ts_status st = dnnl_job_end(&job);
    if (st) {
        conv2d_packed_set_free(s);
        return st;
    }
    *out = s;
    return TS_OK;
}

int conv2d_packed_ready(const conv2d_packed_set *s, int slot) {
    return s && slot >= 0 && slot < s->nslots && s->slot[slot].ready;
}

/* Memory object of md on the set's engine, over `data` (DNNL_MEMORY_NONE: set later). */
static dnnl_memory_t packed_memory(dnnl_job *job, conv2d_packed_set *s, const dnnl_memory_desc_t *md, void *data) {
    dnnl_memory_t m = NULL;
    if (job->status != TS_OK) return NULL;
    if (!dnnl_job_check(job, dnnl_memory_create(&m, md, s->engine, data), "dnnl_memory_create")) return NULL;
    return m;
}

static int packed_grow(dnnl_job *job, conv2d_packed_set *s, int k, size_t bytes) {
    return dnnl_job_grow(job, &s->buf[k], &s->buf_bytes[k], bytes,
                         k == PACKED_SCRATCH ? "a scratchpad" : "a blocked activation buffer");
}

/* The primitive of pd, with the set's scratchpad grown to what pd wants. */
static void packed_prim_create(dnnl_job *job, conv2d_packed_set *s, const_dnnl_primitive_desc_t pd, packed_prim *p) {
    if (job->status != TS_OK) return;
    size_t bytes = dnnl_pd_scratchpad_size(pd);
    if (bytes > 0 && packed_grow(job, s, PACKED_SCRATCH, bytes))
        p->scratch = packed_memory(job, s, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0),
                                   DNNL_MEMORY_NONE);
    dnnl_job_headroom(job);
    if (job->status == TS_OK) dnnl_job_check(job, dnnl_primitive_create(&p->prim, pd), "dnnl_primitive_create");
}

/* Executes p on the set's stream (nargs <= 5), the scratchpad added when it has one. */
static void packed_prim_execute(dnnl_job *job, conv2d_packed_set *s, const packed_prim *p, int nargs,
                                const dnnl_exec_arg_t *args) {
    if (job->status != TS_OK) return;
    dnnl_exec_arg_t all[6];
    memcpy(all, args, (size_t)nargs * sizeof *args);
    if (p->scratch) {
        if (!dnnl_job_check(job, dnnl_memory_set_data_handle(p->scratch, s->buf[PACKED_SCRATCH]),
                            "dnnl_memory_set_data_handle"))
            return;
        all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    dnnl_job_check(job, dnnl_primitive_execute(p->prim, s->stream, nargs, all), "dnnl_primitive_execute");
}

/* A reorder from -> to; with scales (count of them, over the dims in mask), the values
 * are multiplied on the way (quantization: 1/scale, rounded to nearest even and
 * saturated to the target type). */
static void packed_reorder_scaled(dnnl_job *job, conv2d_packed_set *s, dnnl_memory_t from, dnnl_memory_t to,
                                  packed_prim *p, int count, int mask, const float *scales) {
    if (job->status != TS_OK) return;
    const dnnl_memory_desc_t *fmd = NULL, *tmd = NULL;
    dnnl_primitive_attr_t attr = dnnl_job_attr_create(job);
    dnnl_primitive_desc_t pd = NULL;
    if (attr && scales)
        dnnl_job_check(job, dnnl_primitive_attr_set_output_scales(attr, count, mask, scales),
                       "dnnl_primitive_attr_set_output_scales");
    if (attr && job->status == TS_OK && dnnl_job_check(job, dnnl_memory_get_memory_desc(from, &fmd), "dnnl_memory_get_memory_desc") &&
        dnnl_job_check(job, dnnl_memory_get_memory_desc(to, &tmd), "dnnl_memory_get_memory_desc") &&
        dnnl_job_check(job, dnnl_reorder_primitive_desc_create(&pd, fmd, s->engine, tmd, s->engine, attr),
                       "dnnl_reorder_primitive_desc_create"))
        packed_prim_create(job, s, pd, p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
}

static void packed_reorder(dnnl_job *job, conv2d_packed_set *s, dnnl_memory_t from, dnnl_memory_t to, packed_prim *p) {
    packed_reorder_scaled(job, s, from, to, p, 0, 0, NULL);
}

/* Memory of md on the set's engine over a new buffer of tessera's (*buf, owned by the slot). */
static dnnl_memory_t packed_memory_owned(dnnl_job *job, conv2d_packed_set *s, const dnnl_memory_desc_t *md,
                                         void **buf, const char *what) {
    size_t cap = 0;
    if (!md || !dnnl_job_grow(job, buf, &cap, dnnl_memory_desc_get_size(md), what)) return NULL;
    return packed_memory(job, s, md, *buf);
}

ts_status conv2d_packed_add(ts_ctx *ctx, conv2d_packed_set *s, int slot, const conv2d_params *p, const float *w,
                            const float *bias, conv_act act, unsigned nhwc, const conv_quant *q) {
    if (!s || slot < 0 || slot >= s->nslots || p->n == 0) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "packed convolution") != TS_OK) return job.status;
    packed_conv *c = &s->slot[slot];
    packed_conv_release(c);
    conv_descs d;
    float *inv = NULL; /* int8: 1 / the weight scales, then 1 / the source scale */
    if (q && !(inv = malloc(sizeof *inv * (size_t)(p->k + 1)))) {
        dnnl_job_fail(&job, TS_ENOMEM, "out of memory for int8 scales");
        return dnnl_job_end(&job);
    }
    for (int k = 0; q && k < p->k; k++) inv[k] = 1.0f / q->wei_scale[k];
    if (q) inv[p->k] = 1.0f / q->src_scale;
    c->pd = conv_inference_pd(&job, p, &d, bias != NULL, act, q, s->engine);
    /* the caller's tensors in channels-last order where it asks: oneDNN's own choice
     * on AVX-512 (acdb), so no reorder at all */
    dnnl_dims_t src_dims = {p->n, p->c, p->h, p->w}, dst_dims = {p->n, p->k, p->oh, p->ow};
    if (nhwc & CONV_PACKED_SRC_NHWC) d.src_user = dnnl_job_md(&job, 4, src_dims, dnnl_nhwc);
    if (nhwc & CONV_PACKED_DST_NHWC) d.dst_user = dnnl_job_md(&job, 4, dst_dims, dnnl_nhwc);
    const dnnl_memory_desc_t *src_md = dnnl_job_query_md(&job, c->pd, dnnl_query_src_md);
    const dnnl_memory_desc_t *wei_md = dnnl_job_query_md(&job, c->pd, dnnl_query_weights_md);
    const dnnl_memory_desc_t *dst_md = dnnl_job_query_md(&job, c->pd, dnnl_query_dst_md);
    packed_prim_create(&job, s, c->pd, &c->conv);
    /* the residual is copied into the output before the convolution adds to it: where
     * the primitive writes the caller's buffer itself, by residual_fill; where it writes
     * a blocked copy (Winograd's nChw16c), by a reorder into that copy (bit 3) */
    if (act.residual && job.status == TS_OK) {
        if (!dst_md) job.status = TS_EUNSUPPORTED;
        else if (!dnnl_memory_desc_equal(dst_md, &d.dst_user)) c->res_mode = 8;
        else c->res_mode = (nhwc & CONV_PACKED_RES_NHWC ? 2 : 0) | (nhwc & CONV_PACKED_DST_NHWC ? 1 : 0);
        c->res_mode |= 4; /* bit 2: there is a residual */
    }
    c->src_user = packed_memory(&job, s, &d.src_user, DNNL_MEMORY_NONE);
    c->dst_user = packed_memory(&job, s, &d.dst_user, DNNL_MEMORY_NONE);
    if (job.status == TS_OK) {
        if (dnnl_memory_desc_equal(src_md, &d.src_user)) {
            c->src = c->src_user;
        } else if (packed_grow(&job, s, PACKED_SRC, dnnl_memory_desc_get_size(src_md))) {
            c->src = packed_memory(&job, s, src_md, DNNL_MEMORY_NONE);
            packed_reorder_scaled(&job, s, c->src_user, c->src, &c->src_reorder, 1, 0, q ? inv + p->k : NULL);
        }
    }
    if (job.status == TS_OK) {
        if (dnnl_memory_desc_equal(dst_md, &d.dst_user)) {
            c->dst = c->dst_user;
        } else if (packed_grow(&job, s, PACKED_DST, dnnl_memory_desc_get_size(dst_md))) {
            c->dst = packed_memory(&job, s, dst_md, DNNL_MEMORY_NONE);
            packed_reorder(&job, s, c->dst, c->dst_user, &c->dst_reorder);
        }
    }
    if ((c->res_mode & 8) && job.status == TS_OK) {
        dnnl_memory_desc_t rmd = dnnl_job_md(&job, 4, dst_dims, nhwc & CONV_PACKED_RES_NHWC ? dnnl_nhwc : dnnl_nchw);
        c->res_user = packed_memory(&job, s, &rmd, DNNL_MEMORY_NONE);
        packed_reorder(&job, s, c->res_user, c->dst, &c->res_reorder);
    }
    /* the weights, reordered once into the primitive's layout (and type) */
    c->wei = packed_memory_owned(&job, s, wei_md, &c->wei_buf, "packed weights");
    if (job.status == TS_OK) {
        dnnl_memory_t wu = packed_memory(&job, s, &d.wei_user, (void *)w);
        packed_prim r = {0};
        /* int8: per output channel, axis 0 (oihw) or axes 0 and 1 (goihw) */
        packed_reorder_scaled(&job, s, wu, c->wei, &r, p->k, p->groups == 1 ? 1 : 3, inv);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, c->wei}};
        packed_prim_execute(&job, s, &r, 2, args);
        if (job.status == TS_OK) dnnl_job_check(&job, dnnl_stream_wait(s->stream), "dnnl_stream_wait");
        packed_prim_release(&r);
        if (wu) dnnl_memory_destroy(wu);
    }
    if (bias) {
        c->bias = packed_memory_owned(&job, s, &d.bias, &c->bias_buf, "packed bias");
        if (c->bias) memcpy(c->bias_buf, bias, (size_t)p->k * sizeof(float));
        for (int k = 0; c->bias && q && k < p->k; k++) ((float *)c->bias_buf)[k] *= inv[k] * inv[p->k];
    }
    free(inv);
    ts_status st = dnnl_job_end(&job);
    if (st) packed_conv_release(c);
    else c->ready = 1;
    return st;
}


/* out = the residual, in out's layout (the sum post-op adds the convolution to it). */
static void residual_fill(const conv2d_packed_set *s, int slot, float *out, const float *residual) {
    const packed_conv *c = &s->slot[slot];
    const dnnl_memory_desc_t *md = NULL;
    if (dnnl_memory_get_memory_desc(c->dst_user, &md) != dnnl_success) return;
    const int64_t n = md->dims[0], k = md->dims[1], h = md->dims[2], w = md->dims[3];
    const int res_nhwc = (c->res_mode & 2) != 0, out_nhwc = (c->res_mode & 1) != 0;
    if (res_nhwc == out_nhwc) {
        memcpy(out, residual, (size_t)(n * k * h * w) * sizeof *out);
    } else if (out_nhwc) { /* (N,K,H,W) read as (N,H,W,K) */
        const int64_t dims[4] = {n, h, w, k}, strides[4] = {k * h * w, w, 1, h * w};
        strided_copy_ref(4, dims, out, residual, strides, s->threads);
    } else {
        const int64_t dims[4] = {n, k, h, w}, strides[4] = {h * w * k, 1, w * k, k};
        strided_copy_ref(4, dims, out, residual, strides, s->threads);
    }
}

ts_status conv2d_packed_run(ts_ctx *ctx, conv2d_packed_set *s, int slot, float *out, const float *in,
                            const float *residual) {
    if (!conv2d_packed_ready(s, slot)) return ts_fail(ctx, TS_EINVAL, "packed convolution: slot %d is not packed", slot);
    packed_conv *c = &s->slot[slot];
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "packed convolution") != TS_OK) return job.status;
    if (s->threads != ts_ctx_threads(ctx)) { /* the count it was built for */
        omp_set_num_threads(s->threads);
        if ((job.status = ts_threads_start(ctx, s->threads)) != TS_OK) return dnnl_job_end(&job);
    }
    dnnl_job_check(&job, dnnl_memory_set_data_handle(c->src_user, (void *)in), "dnnl_memory_set_data_handle");
    dnnl_job_check(&job, dnnl_memory_set_data_handle(c->dst_user, out), "dnnl_memory_set_data_handle");
    if (c->src_reorder.prim) {
        dnnl_job_check(&job, dnnl_memory_set_data_handle(c->src, s->buf[PACKED_SRC]), "dnnl_memory_set_data_handle");
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, c->src_user}, {DNNL_ARG_TO, c->src}};
        packed_prim_execute(&job, s, &c->src_reorder, 2, a);
    }
    if (c->dst_reorder.prim)
        dnnl_job_check(&job, dnnl_memory_set_data_handle(c->dst, s->buf[PACKED_DST]), "dnnl_memory_set_data_handle");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->wei}, {DNNL_ARG_DST, c->dst}};
    int nargs = 3;
    if (c->bias) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->bias};
    if (c->res_mode && job.status == TS_OK) {
        if (!residual) {
            dnnl_job_fail(&job, TS_EINVAL, "the convolution adds a residual, and none was given");
        } else if (c->res_mode & 8) {
            dnnl_job_check(&job, dnnl_memory_set_data_handle(c->res_user, (void *)residual),
                           "dnnl_memory_set_data_handle");
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, c->res_user}, {DNNL_ARG_TO, c->dst}};
            packed_prim_execute(&job, s, &c->res_reorder, 2, a);
        } else {
            residual_fill(s, slot, out, residual);
        }
    }
    packed_prim_execute(&job, s, &c->conv, nargs, args);
    if (c->dst_reorder.prim) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, c->dst}, {DNNL_ARG_TO, c->dst_user}};
        packed_prim_execute(&job, s, &c->dst_reorder, 2, a);
    }
    if (job.status == TS_OK) dnnl_job_check(&job, dnnl_stream_wait(s->stream), "dnnl_stream_wait");
    return dnnl_job_end(&job);
}

ts_status conv2d_backward_data_dnnl(ts_ctx *ctx, const conv2d_params *p, float *din, const float *dout,
                                    const float *w) {
    if (p->n == 0) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "convolution backward data") != TS_OK) return job.status;
    conv_descs d;
    conv_descs_init(&job, p, &d);
    conv_descs h = conv_descs_for(&job, &d, PASS_HINT), b = conv_descs_for(&job, &d, PASS_BWD_DATA);
    dnnl_primitive_desc_t fwd = conv_forward_pd(&job, &h, 0);
    dnnl_primitive_desc_t pd = conv_backward_data_pd(&job, &b, fwd);

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

/* the combined backward without its data pass */
ts_status conv2d_backward_weights_dnnl(ts_ctx *ctx, const conv2d_params *p, float *dw, float *dbias,
                                       const float *dout, const float *in) {
    return conv2d_backward_dnnl(ctx, p, NULL, dw, dbias, dout, in, NULL); /* n == 0: the reference zeroes dw */
}
