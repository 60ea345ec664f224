/* Elementwise activations on oneDNN over `count` contiguous floats (a 1-D tensor):
 * relu, leaky relu (relu with alpha = negative slope), logistic sigmoid, tanh, gelu.
 * Backward uses the forward output where oneDNN can (sigmoid, tanh: cheaper and
 * what PyTorch does), else the forward input. */
#include "dnnl_backend.h"

#include <stdbool.h>

static dnnl_alg_kind_t eltwise_alg(eltwise_kind kind, bool use_dst) {
    switch (kind) {
    case ELTWISE_RELU:
    case ELTWISE_LEAKY_RELU: return use_dst ? dnnl_eltwise_relu_use_dst_for_bwd : dnnl_eltwise_relu;
    case ELTWISE_SIGMOID: return use_dst ? dnnl_eltwise_logistic_use_dst_for_bwd : dnnl_eltwise_logistic;
    case ELTWISE_TANH: return use_dst ? dnnl_eltwise_tanh_use_dst_for_bwd : dnnl_eltwise_tanh;
    case ELTWISE_GELU: return use_dst ? dnnl_alg_kind_undef : dnnl_eltwise_gelu_erf;
    default: return dnnl_alg_kind_undef;
    }
}

static float eltwise_alpha(eltwise_kind kind, float alpha) { return kind == ELTWISE_LEAKY_RELU ? alpha : 0.0f; }

static dnnl_primitive_desc_t eltwise_forward_pd(dnnl_job *job, const dnnl_memory_desc_t *md, dnnl_alg_kind_t alg,
                                                float alpha) {
    if (job->status != TS_OK) return NULL;
    dnnl_eltwise_desc_t ed;
    if (!dnnl_job_check(job, dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training, alg, md, alpha, 0.0f),
                        "dnnl_eltwise_forward_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &ed, NULL, 0);
}

ts_status eltwise_forward_dnnl(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *out,
                               const float *in) {
    if ((unsigned)kind >= ELTWISE_COUNT)
        return ts_fail(ctx, TS_EINVAL, "oneDNN eltwise forward: unknown kind %d", (int)kind);
    if (count == 0) return TS_OK;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "eltwise forward") != TS_OK) return job.status;
    dnnl_dims_t dims = {(dnnl_dim_t)count};
    dnnl_memory_desc_t md = dnnl_job_md(&job, 1, dims, dnnl_a);
    dnnl_primitive_desc_t pd = eltwise_forward_pd(&job, &md, eltwise_alg(kind, false), eltwise_alpha(kind, alpha));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, dnnl_job_memory(&job, &md, (void *)in)},
                               {DNNL_ARG_DST, dnnl_job_memory(&job, &md, out)}};
    dnnl_job_execute(&job, pd, 2, args);
    return dnnl_job_end(&job);
}

ts_status eltwise_backward_dnnl(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *din,
                                const float *dout, const float *in, const float *out) {
    if ((unsigned)kind >= ELTWISE_COUNT)
        return ts_fail(ctx, TS_EINVAL, "oneDNN eltwise backward: unknown kind %d", (int)kind);
    if (count == 0) return TS_OK;
    float a = eltwise_alpha(kind, alpha);
    bool is_relu = kind == ELTWISE_RELU || kind == ELTWISE_LEAKY_RELU;
    /* relu from the output is only defined for a non-negative slope; gelu needs its input */
    bool use_dst = is_relu ? (!in && out && a >= 0.0f) : kind == ELTWISE_GELU ? false : out != NULL;
    const float *data = use_dst ? out : in;
    if (!data) return TS_EUNSUPPORTED; /* no usable forward tensor: let the reference decide */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "eltwise backward") != TS_OK) return job.status;
    dnnl_dims_t dims = {(dnnl_dim_t)count};
    dnnl_memory_desc_t md = dnnl_job_md(&job, 1, dims, dnnl_a);
    dnnl_alg_kind_t alg = eltwise_alg(kind, use_dst);
    dnnl_primitive_desc_t fwd = eltwise_forward_pd(&job, &md, alg, a);
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK) {
        dnnl_eltwise_desc_t ed;
        if (dnnl_job_check(&job, dnnl_eltwise_backward_desc_init(&ed, alg, &md, &md, a, 0.0f),
                           "dnnl_eltwise_backward_desc_init"))
            pd = dnnl_job_pd(&job, &ed, fwd, 0);
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, &md, (void *)dout)},
                               {use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, dnnl_job_memory(&job, &md, (void *)data)},
                               {DNNL_ARG_DIFF_SRC, dnnl_job_memory(&job, &md, din)}};
    dnnl_job_execute(&job, pd, 3, args);
    return dnnl_job_end(&job);
}
