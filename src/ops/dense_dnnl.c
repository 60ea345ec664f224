/* Dense (fully connected) layer on oneDNN's inner product: y = x W^T + b with x
 * (N, IN) nc, W (OUT, IN) oi (PyTorch's nn.Linear layout), b (OUT) x, all in the
 * caller's buffers. Inner product on plain nc/oi runs as a GEMM, so no reorders. */
#include "dnnl_backend.h"

typedef struct dense_descs {
    dnnl_memory_desc_t src, wei, bias, dst;
} dense_descs;

static void dense_descs_init(dnnl_job *job, int n, int in_f, int out_f, dense_descs *d) {
    if (n < 1 || in_f < 1 || out_f < 1) {
        dnnl_job_fail(job, TS_EINVAL, "invalid sizes");
        return;
    }
    dnnl_dims_t src_dims = {n, in_f}, wei_dims = {out_f, in_f}, bias_dims = {out_f}, dst_dims = {n, out_f};
    d->src = dnnl_job_md(job, 2, src_dims, dnnl_nc);
    d->wei = dnnl_job_md(job, 2, wei_dims, dnnl_oi);
    d->bias = dnnl_job_md(job, 1, bias_dims, dnnl_x);
    d->dst = dnnl_job_md(job, 2, dst_dims, dnnl_nc);
}

static dnnl_primitive_desc_t dense_forward_pd(dnnl_job *job, const dense_descs *d, int with_bias) {
    if (job->status != TS_OK) return NULL;
    dnnl_inner_product_desc_t ipd;
    if (!dnnl_job_check(job,
                        dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_training, &d->src, &d->wei,
                                                             with_bias ? &d->bias : NULL, &d->dst),
                        "dnnl_inner_product_forward_desc_init"))
        return NULL;
    return dnnl_job_pd(job, &ipd, NULL, 0);
}

ts_status dense_forward_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *out, const float *in, const float *w,
                             const float *bias) {
    if (n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "inner product forward") != TS_OK) return job.status;
    dense_descs d;
    dense_descs_init(&job, n, in_f, out_f, &d);
    dnnl_primitive_desc_t pd = dense_forward_pd(&job, &d, bias != NULL);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, dnnl_job_memory(&job, &d.src, (void *)in)},
                               {DNNL_ARG_WEIGHTS, dnnl_job_memory(&job, &d.wei, (void *)w)},
                               {DNNL_ARG_DST, dnnl_job_memory(&job, &d.dst, out)},
                               {DNNL_ARG_BIAS, NULL}};
    if (bias) args[3].memory = dnnl_job_memory(&job, &d.bias, (void *)bias);
    dnnl_job_execute(&job, pd, bias ? 4 : 3, args);
    return dnnl_job_end(&job);
}

ts_status dense_backward_data_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *din, const float *dout,
                                   const float *w) {
    if (n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "inner product backward data") != TS_OK) return job.status;
    dense_descs d;
    dense_descs_init(&job, n, in_f, out_f, &d);
    dnnl_primitive_desc_t fwd = dense_forward_pd(&job, &d, 0);
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK) {
        dnnl_inner_product_desc_t ipd;
        if (dnnl_job_check(&job, dnnl_inner_product_backward_data_desc_init(&ipd, &d.src, &d.wei, &d.dst),
                           "dnnl_inner_product_backward_data_desc_init"))
            pd = dnnl_job_pd(&job, &ipd, fwd, 0);
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, &d.dst, (void *)dout)},
                               {DNNL_ARG_WEIGHTS, dnnl_job_memory(&job, &d.wei, (void *)w)},
                               {DNNL_ARG_DIFF_SRC, dnnl_job_memory(&job, &d.src, din)}};
    dnnl_job_execute(&job, pd, 3, args);
    return dnnl_job_end(&job);
}

ts_status dense_backward_weights_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *dw, float *dbias,
                                      const float *dout, const float *in) {
    if (n == 0) return TS_EUNSUPPORTED; /* empty batch: left to the reference */
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "inner product backward weights") != TS_OK) return job.status;
    dense_descs d;
    dense_descs_init(&job, n, in_f, out_f, &d);
    dnnl_primitive_desc_t fwd = dense_forward_pd(&job, &d, dbias != NULL);
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK) {
        dnnl_inner_product_desc_t ipd;
        if (dnnl_job_check(&job,
                           dnnl_inner_product_backward_weights_desc_init(&ipd, &d.src, &d.wei,
                                                                         dbias ? &d.bias : NULL, &d.dst),
                           "dnnl_inner_product_backward_weights_desc_init"))
            pd = dnnl_job_pd(&job, &ipd, fwd, 0);
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, dnnl_job_memory(&job, &d.src, (void *)in)},
                               {DNNL_ARG_DIFF_DST, dnnl_job_memory(&job, &d.dst, (void *)dout)},
                               {DNNL_ARG_DIFF_WEIGHTS, dnnl_job_memory(&job, &d.wei, dw)},
                               {DNNL_ARG_DIFF_BIAS, NULL}};
    if (dbias) args[3].memory = dnnl_job_memory(&job, &d.bias, dbias);
    dnnl_job_execute(&job, pd, dbias ? 4 : 3, args);
    return dnnl_job_end(&job);
}
