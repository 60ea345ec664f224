/* Matrix products on oneDNN's sgemm (row-major, no layout of its own, so no reorders):
 * the MatMul layer's forward, where a model (an imported transformer or ConvNeXt's
 * pointwise layers) spends most of its time. The reference is gemm_ref. */
#include "dnnl_backend.h"

ts_status gemm_dnnl(ts_ctx *ctx, int64_t m, int64_t n, int64_t k, float *c /* (m,n) */, const float *a /* (m,k) */,
                    const float *b /* (k,n) */) {
    if (m < 1 || n < 1 || k < 1) return TS_EUNSUPPORTED;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "matrix product") != TS_OK) return job.status;
    dnnl_job_check(&job, dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, b, n, 0.0f, c, n), "dnnl_sgemm");
    return dnnl_job_end(&job);
}
