/* Softmax and log-softmax forward on oneDNN (softmax_v2, vectorized exp): over the
 * middle axis of (outer, len, inner), as softmax_axis_forward_ref. A transformer's
 * attention spends a quarter of its time here on the reference's scalar expf. */
#include "dnnl_backend.h"

ts_status softmax_forward_dnnl(ts_ctx *ctx, size_t outer, size_t len, size_t inner, int log_softmax,
                               float *out /* (outer,len,inner) */, const float *in /* (outer,len,inner) */) {
    if (outer == 0 || len == 0 || inner == 0) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, log_softmax ? "log-softmax forward" : "softmax forward") != TS_OK)
        return job.status;
    dnnl_dims_t dims = {(dnnl_dim_t)outer, (dnnl_dim_t)len, (dnnl_dim_t)inner};
    dnnl_memory_desc_t md = dnnl_job_md(&job, 3, dims, dnnl_abc);
    dnnl_softmax_v2_desc_t sd;
    dnnl_primitive_desc_t pd = NULL;
    if (job.status == TS_OK &&
        dnnl_job_check(&job,
                       dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
                                                         log_softmax ? dnnl_softmax_log : dnnl_softmax_accurate, &md,
                                                         &md, 1),
                       "dnnl_softmax_v2_forward_desc_init"))
        pd = dnnl_job_pd(&job, &sd, NULL, 0);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, dnnl_job_memory(&job, &md, (void *)in)},
                               {DNNL_ARG_DST, dnnl_job_memory(&job, &md, out)}};
    dnnl_job_execute(&job, pd, 2, args);
    return dnnl_job_end(&job);
}
