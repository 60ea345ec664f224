/* Reference fully connected layer (PyTorch nn.Linear: y = x W^T + b, W is (OUT,IN)),
 * as gemm_ref calls. */
#include "ops.h"

#define DENSE_PAR_MIN 32768 /* elements below which a loop runs on one thread */

void dense_forward_ref(int n, int in_f, int out_f, float *out /* (N,OUT) */, const float *in /* (N,IN) */,
                       const float *w /* (OUT,IN) */, const float *bias /* (OUT) or NULL */, int nthreads) {
    /* out (N,OUT) = in (N,IN) w^T (IN,OUT) */
    gemm_ref(0, 1, n, out_f, in_f, 1.0f, in, in_f, w, in_f, 0.0f, out, out_f, nthreads);
    if (!bias) return;
    const int nt = (double)n * out_f < DENSE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n; i++) {
        float *y = out + (size_t)i * out_f;
        for (int j = 0; j < out_f; j++) y[j] += bias[j];
    }
}

void dense_backward_data_ref(int n, int in_f, int out_f, float *din /* (N,IN) */, const float *dout /* (N,OUT) */,
                             const float *w /* (OUT,IN) */, int nthreads) {
    /* din (N,IN) = dout (N,OUT) w (OUT,IN) */
    gemm_ref(0, 0, n, in_f, out_f, 1.0f, dout, out_f, w, in_f, 0.0f, din, in_f, nthreads);
}

void dense_backward_weights_ref(int n, int in_f, int out_f, float *dw /* (OUT,IN) */, float *dbias /* (OUT) or NULL */,
                                const float *dout /* (N,OUT) */, const float *in /* (N,IN) */, int nthreads) {
    /* dw (OUT,IN) = dout^T (OUT,N) in (N,IN); k = n = 0 clears dw */
    gemm_ref(1, 0, out_f, in_f, n, 1.0f, dout, out_f, in, in_f, 0.0f, dw, in_f, nthreads);
    if (!dbias) return;
    const int nt = (double)n * out_f < DENSE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int j = 0; j < out_f; j++) {
        double s = 0.0; /* column sum over the batch, in a fixed order */
        for (int i = 0; i < n; i++) s += dout[(size_t)i * out_f + j];
        dbias[j] = (float)s;
    }
}
