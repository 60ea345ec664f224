/* Batch normalization on oneDNN: training forward (batch mean and biased variance),
 * inference with given statistics, backward with scale and shift gradients.
 * (N, C, S) data is oneDNN's nchw with H = S, W = 1; gamma/beta are separate (C)
 * vectors through dnnl_use_scale | dnnl_use_shift (2.6 also has the packed
 * dnnl_use_scaleshift, which would need a (2,C) copy). Every pointer is required,
 * as in the reference kernels. */
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

static const unsigned bn_affine = (unsigned)dnnl_use_scale | (unsigned)dnnl_use_shift;

ts_status batchnorm_forward_train_dnnl(ts_ctx *ctx, const bn_params *p, float *out, float *mean, float *var,
                                       const float *in, const float *gamma, const float *beta) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "batch normalization forward (training)") != TS_OK) return job.status;
    bn_descs d;
    bn_descs_init(&job, p, &d);
    dnnl_primitive_desc_t pd = bn_forward_pd(&job, p, &d, dnnl_forward_training, bn_affine);
    dnnl_exec_arg_t args[6] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, &d.data, (void *)in)},
        {DNNL_ARG_DST, dnnl_job_memory(&job, &d.data, out)},
        {DNNL_ARG_MEAN, dnnl_job_memory(&job, &d.stat, mean)},
        {DNNL_ARG_VARIANCE, dnnl_job_memory(&job, &d.stat, var)},
        {DNNL_ARG_SCALE, dnnl_job_memory(&job, &d.stat, (void *)gamma)},
        {DNNL_ARG_SHIFT, dnnl_job_memory(&job, &d.stat, (void *)beta)},
    };
    dnnl_job_execute(&job, pd, 6, args);
    return dnnl_job_end(&job);
}

ts_status batchnorm_forward_infer_dnnl(ts_ctx *ctx, const bn_params *p, float *out, const float *in,
                                       const float *gamma, const float *beta, const float *mean, const float *var) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "batch normalization forward (inference)") != TS_OK) return job.status;
    bn_descs d;
    bn_descs_init(&job, p, &d);
    dnnl_primitive_desc_t pd =
        bn_forward_pd(&job, p, &d, dnnl_forward_inference, (unsigned)dnnl_use_global_stats | bn_affine);
    dnnl_exec_arg_t args[6] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, &d.data, (void *)in)},
        {DNNL_ARG_DST, dnnl_job_memory(&job, &d.data, out)},
        {DNNL_ARG_MEAN, dnnl_job_memory(&job, &d.stat, (void *)mean)},
        {DNNL_ARG_VARIANCE, dnnl_job_memory(&job, &d.stat, (void *)var)},
        {DNNL_ARG_SCALE, dnnl_job_memory(&job, &d.stat, (void *)gamma)},
        {DNNL_ARG_SHIFT, dnnl_job_memory(&job, &d.stat, (void *)beta)},
    };
    dnnl_job_execute(&job, pd, 6, args);
    return dnnl_job_end(&job);
}

ts_status batchnorm_backward_dnnl(ts_ctx *ctx, const bn_params *p, float *din, float *dgamma, float *dbeta,
                                  const float *dout, const float *in, const float *gamma, const float *mean,
                                  const float *var) {
    if (p->n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "batch normalization backward") != TS_OK) return job.status;
    bn_descs d;
    bn_descs_init(&job, p, &d);
    dnnl_primitive_desc_t fwd = bn_forward_pd(&job, p, &d, dnnl_forward_training, bn_affine);
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK) {
        dnnl_batch_normalization_desc_t bd;
        if (dnnl_job_check(&job,
                           dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &d.data, &d.data, p->eps,
                                                                       bn_affine),
                           "dnnl_batch_normalization_backward_desc_init"))
            pd = dnnl_job_pd(&job, &bd, fwd, 0);
    }
    dnnl_exec_arg_t args[9] = {
        {DNNL_ARG_SRC, dnnl_job_memory(&job, &d.data, (void *)in)},
        {DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, &d.data, (void *)dout)},
        {DNNL_ARG_MEAN, dnnl_job_memory(&job, &d.stat, (void *)mean)},
        {DNNL_ARG_VARIANCE, dnnl_job_memory(&job, &d.stat, (void *)var)},
        {DNNL_ARG_SCALE, dnnl_job_memory(&job, &d.stat, (void *)gamma)},
        /* oneDNN 2.6 wants a shift argument in the backward pass too (execute fails
         * with invalid_arguments without one) though it does not read it: an unused
         * oneDNN-owned buffer */
        {DNNL_ARG_SHIFT, dnnl_job_memory_alloc(&job, &d.stat)},
        {DNNL_ARG_DIFF_SRC, dnnl_job_memory(&job, &d.data, din)},
        {DNNL_ARG_DIFF_SCALE, dnnl_job_memory(&job, &d.stat, dgamma)},
        {DNNL_ARG_DIFF_SHIFT, dnnl_job_memory(&job, &d.stat, dbeta)},
    };
    dnnl_job_execute(&job, pd, 9, args);
    return dnnl_job_end(&job);
}
