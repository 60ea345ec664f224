/* Batch normalization on oneDNN: training forward (batch mean and biased variance),
 * inference with given statistics, backward with scale and shift gradients.
 * (N, C, S) data is oneDNN's nchw with H = S, W = 1; gamma/beta are separate (C)
 * vectors through dnnl_use_scale / dnnl_use_shift (2.6 also has the packed
 * dnnl_use_scaleshift, which would need a copy). A NULL gamma or beta means scale 1
 * or shift 0 (the flag is left out). */
#include "dnnl_backend.h"

typedef struct bn_descs {
    dnnl_memory_desc_t data, stat; /* (N,C,S,1) nchw and (C) x */
} bn_descs;

static int bn_descs_init(dnnl_job *job, const bn_params *p, bn_descs *d) {
    if (p->n < 1 || p->c < 1 || p->spatial < 1 || !(p->eps >= 0)) {
        dnnl_job_fail(job, TS_EINVAL, "invalid parameters");
        return 0;
    }
    dnnl_dims_t data_dims = {p->n, p->c, p->spatial, 1};
    dnnl_dims_t stat_dims = {p->c};
    d->data = dnnl_job_md(job, 4, data_dims, dnnl_nchw);
    d->stat = dnnl_job_md(job, 1, stat_dims, dnnl_x);
    return job->status == TS_OK;
}

static dnnl_primitive_desc_t bn_forward_pd(dnnl_job *job, const bn_params *p, const bn_descs *d,
                                           dnnl_prop_kind_t prop, unsigned flags) {
    if (job->status != TS_OK) return NULL;
    dnnl_batch_normalization_desc_t bd;
    if (!dnnl_job_check(job, dnnl_batch_normalization_forward_desc_init(&bd, prop, &d->data, p->eps, flags),
                        "dnnl_batch_normalization_forward_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &bd, NULL, 0);
}

static unsigned bn_affine_flags(const float *gamma, const float *beta) {
    return (gamma ? (unsigned)dnnl_use_scale : 0u) | (beta ? (unsigned)dnnl_use_shift : 0u);
}

ts_status batchnorm_forward_train_dnnl(ts_ctx *ctx, const bn_params *p, float *out, float *mean, float *var,
                                       const float *in, const float *gamma, const float *beta) {
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "batch normalization forward (training)") != TS_OK) return job.status;
    bn_descs d;
    bn_descs_init(&job, p, &d);
    dnnl_primitive_desc_t pd = bn_forward_pd(&job, p, &d, dnnl_forward_training, bn_affine_flags(gamma, beta));
    dnnl_exec_arg_t args[6] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, &d.data, (void *)in)},
        {DNNL_ARG_DST, dnnl_job_memory(&job, &d.data, out)},
        {DNNL_ARG_MEAN, dnnl_job_memory(&job, &d.stat, mean)}, /* NULL mean/var: oneDNN-owned, discarded */
        {DNNL_ARG_VARIANCE, dnnl_job_memory(&job, &d.stat, var)},
    };
    int nargs = 4;
    if (gamma) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, dnnl_job_memory(&job, &d.stat, (void *)gamma)};
    if (beta) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, dnnl_job_memory(&job, &d.stat, (void *)beta)};
    dnnl_job_execute(&job, pd, nargs, args);
    return dnnl_job_end(&job);
}

ts_status batchnorm_forward_infer_dnnl(ts_ctx *ctx, const bn_params *p, float *out, const float *in,
                                       const float *gamma, const float *beta, const float *mean, const float *var) {
    if (!mean || !var) return ts_fail(ctx, TS_EINVAL, "oneDNN batch normalization forward (inference): no statistics");
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "batch normalization forward (inference)") != TS_OK) return job.status;
    bn_descs d;
    bn_descs_init(&job, p, &d);
    dnnl_primitive_desc_t pd = bn_forward_pd(&job, p, &d, dnnl_forward_inference,
                                             (unsigned)dnnl_use_global_stats | bn_affine_flags(gamma, beta));
    dnnl_exec_arg_t args[6] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, &d.data, (void *)in)},
        {DNNL_ARG_DST, dnnl_job_memory(&job, &d.data, out)},
        {DNNL_ARG_MEAN, dnnl_job_memory(&job, &d.stat, (void *)mean)},
        {DNNL_ARG_VARIANCE, dnnl_job_memory(&job, &d.stat, (void *)var)},
    };
    int nargs = 4;
    if (gamma) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, dnnl_job_memory(&job, &d.stat, (void *)gamma)};
    if (beta) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, dnnl_job_memory(&job, &d.stat, (void *)beta)};
    dnnl_job_execute(&job, pd, nargs, args);
    return dnnl_job_end(&job);
}

ts_status batchnorm_backward_dnnl(ts_ctx *ctx, const bn_params *p, float *din, float *dgamma, float *dbeta,
                                  const float *dout, const float *in, const float *gamma, const float *mean,
                                  const float *var) {
    if (!mean || !var) return ts_fail(ctx, TS_EINVAL, "oneDNN batch normalization backward: no statistics");
    /* without a scale oneDNN computes no scale gradient */
    if (!gamma && dgamma) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "batch normalization backward") != TS_OK) return job.status;
    bn_descs d;
    bn_descs_init(&job, p, &d);
    /* the shift gradient is computed whenever asked for; it needs no shift value */
    unsigned flags = (gamma ? (unsigned)dnnl_use_scale : 0u) | (dbeta ? (unsigned)dnnl_use_shift : 0u);
    dnnl_primitive_desc_t fwd = bn_forward_pd(&job, p, &d, dnnl_forward_training, flags);
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK) {
        dnnl_batch_normalization_desc_t bd;
        if (dnnl_job_check(&job,
                           dnnl_batch_normalization_backward_desc_init(&bd, flags ? dnnl_backward : dnnl_backward_data,
                                                                       &d.data, &d.data, p->eps, flags),
                           "dnnl_batch_normalization_backward_desc_init"))
            pd = dnnl_job_pd(&job, &bd, fwd, 0);
    }
    dnnl_exec_arg_t args[8] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, &d.data, (void *)in)},
        {DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, &d.data, (void *)dout)},
        {DNNL_ARG_MEAN, dnnl_job_memory(&job, &d.stat, (void *)mean)},
        {DNNL_ARG_VARIANCE, dnnl_job_memory(&job, &d.stat, (void *)var)},
        {DNNL_ARG_DIFF_SRC, dnnl_job_memory(&job, &d.data, din)},
    };
    int nargs = 5;
    if (gamma) {
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, dnnl_job_memory(&job, &d.stat, (void *)gamma)};
        /* NULL dgamma: a oneDNN-owned buffer, discarded */
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE, dnnl_job_memory(&job, &d.stat, dgamma)};
    }
    if (dbeta) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, dnnl_job_memory(&job, &d.stat, dbeta)};
    dnnl_job_execute(&job, pd, nargs, args);
    return dnnl_job_end(&job);
}
