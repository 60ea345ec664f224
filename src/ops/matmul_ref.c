/* Reference numpy.matmul of every sample's A with one shared B (ONNX MatMul with a
 * constant or trained right operand), forward and gradients, on gemm_ref.
 *
 * When B is a single matrix (no batch axes, or all of size 1), A's matrices stacked
 * over the samples and batch axes are one tall matrix, and each pass is one GEMM.
 * Otherwise every (sample, batch index) is its own small GEMM; gradient sums over
 * broadcast axes run in a fixed order, so results do not depend on thread counts. */
#include "ops.h"

#include <limits.h>
#include <string.h>

/* Matrix offsets of output batch index i in A (within a sample) and in B. */
void matmul_batch_index(const matmul_params *q, int64_t i, int64_t *ia, int64_t *ib) {
    int64_t oa = 0, ob = 0;
    for (int d = q->batch_rank - 1; d >= 0; d--) {
        const int64_t x = i % q->batch[d];
        i /= q->batch[d];
        oa += x * q->a_stride[d];
        ob += x * q->b_stride[d];
    }
    *ia = oa;
    *ib = ob;
}

/* Samples per GEMM in the single-B case, so that the stacked row count fits an int. */
static int64_t matmul_chunk(const matmul_params *q) {
    const int64_t rows = q->c_count * q->m; /* per sample, <= per-sample output size */
    const int64_t c = (int64_t)INT_MAX / (rows > 0 ? rows : 1);
    return c < 1 ? 1 : c;
}

void matmul_forward_ref(const matmul_params *q, float *c /* (N,c_count,m,p) */, const float *a /* (N,a_count,m,k) */,
                        const float *b /* (b_count,k,p) */, int nthreads) {
    const int64_t mk = (int64_t)q->m * q->k, kp = (int64_t)q->k * q->p, mp = (int64_t)q->m * q->p;
    if (q->b_count == 1) { /* then a_count == c_count */
        const int64_t chunk = matmul_chunk(q), rows = q->c_count * q->m;
        for (int64_t s = 0; s < q->n; s += chunk) {
            const int64_t ns = q->n - s < chunk ? q->n - s : chunk;
            gemm_ref(0, 0, (int)(ns * rows), q->p, q->k, 1.0f, a + s * q->a_count * mk, q->k, b, q->p, 0.0f,
                     c + s * q->c_count * mp, q->p, nthreads);
        }
        return;
    }
    const int64_t total = (int64_t)q->n * q->c_count;
    const int outer = total >= nthreads ? nthreads : 1, inner = outer > 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(outer) schedule(static)
    for (int64_t t = 0; t < total; t++) {
        const int64_t s = t / q->c_count;
        int64_t ia, ib;
        matmul_batch_index(q, t % q->c_count, &ia, &ib);
        gemm_ref(0, 0, q->m, q->p, q->k, 1.0f, a + (s * q->a_count + ia) * mk, q->k, b + ib * kp, q->p, 0.0f,
                 c + t * mp, q->p, inner);
    }
}

void matmul_backward_data_ref(const matmul_params *q, float *da /* (N,a_count,m,k) */,
                              const float *dc /* (N,c_count,m,p) */, const float *b /* (b_count,k,p) */, int nthreads) {
    const int64_t mk = (int64_t)q->m * q->k, kp = (int64_t)q->k * q->p, mp = (int64_t)q->m * q->p;
    if (q->b_count == 1) { /* dA = dC B^T over the stacked rows */
        const int64_t chunk = matmul_chunk(q), rows = q->c_count * q->m;
        for (int64_t s = 0; s < q->n; s += chunk) {
            const int64_t ns = q->n - s < chunk ? q->n - s : chunk;
            gemm_ref(0, 1, (int)(ns * rows), q->k, q->p, 1.0f, dc + s * q->c_count * mp, q->p, b, q->p, 0.0f,
                     da + s * q->a_count * mk, q->k, nthreads);
        }
        return;
    }
    /* each sample's dA is its own: samples in parallel, batch indices in order */
    const int outer = q->n >= nthreads ? nthreads : 1, inner = outer > 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(outer) schedule(static)
    for (int s = 0; s < q->n; s++) {
        float *das = da + (int64_t)s * q->a_count * mk;
        memset(das, 0, (size_t)(q->a_count * mk) * sizeof(float));
        for (int64_t i = 0; i < q->c_count; i++) {
            int64_t ia, ib;
            matmul_batch_index(q, i, &ia, &ib);
            gemm_ref(0, 1, q->m, q->k, q->p, 1.0f, dc + ((int64_t)s * q->c_count + i) * mp, q->p, b + ib * kp, q->p,
                     1.0f, das + ia * mk, q->k, inner);
        }
    }
}

void matmul_backward_weights_ref(const matmul_params *q, float *db /* (b_count,k,p) */,
                                 const float *dc /* (N,c_count,m,p) */, const float *a /* (N,a_count,m,k) */,
                                 int nthreads) {
    const int64_t mk = (int64_t)q->m * q->k, kp = (int64_t)q->k * q->p, mp = (int64_t)q->m * q->p;
    if (q->b_count == 1) { /* dB = A^T dC over the stacked rows, chunks added in order */
        const int64_t chunk = matmul_chunk(q), rows = q->c_count * q->m;
        for (int64_t s = 0; s < q->n; s += chunk) {
            const int64_t ns = q->n - s < chunk ? q->n - s : chunk;
            gemm_ref(1, 0, q->k, q->p, (int)(ns * rows), 1.0f, a + s * q->a_count * mk, q->k,
                     dc + s * q->c_count * mp, q->p, s == 0 ? 0.0f : 1.0f, db, q->p, nthreads);
        }
        return;
    }
    /* each B matrix sums its own (sample, batch index) products, in order */
    const int outer = q->b_count >= nthreads ? nthreads : 1, inner = outer > 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(outer) schedule(static)
    for (int64_t jb = 0; jb < q->b_count; jb++) {
        float *dbj = db + jb * kp;
        memset(dbj, 0, (size_t)kp * sizeof(float));
        for (int s = 0; s < q->n; s++)
            for (int64_t i = 0; i < q->c_count; i++) {
                int64_t ia, ib;
                matmul_batch_index(q, i, &ia, &ib);
                if (ib != jb) continue;
                gemm_ref(1, 0, q->k, q->p, q->m, 1.0f, a + ((int64_t)s * q->a_count + ia) * mk, q->k,
                         dc + ((int64_t)s * q->c_count + i) * mp, q->p, 1.0f, dbj, q->p, inner);
            }
    }
}
