/* Reference GEMM: cache-blocked, packed, threaded over output tiles.
 *
 * C (M,N) is cut into MC x NC tiles; each tile belongs to exactly one thread and its
 * elements are summed over k in a fixed order, so results are bit-identical for any
 * thread count. Inside a tile, k is cut into KC blocks; the A block is packed into
 * 4-row strips and the B block into 16-column panels (zero padded), so the 4x16
 * micro-kernel reads both contiguously and keeps its accumulators in registers. */
#include "ops.h"

#include <string.h>

enum {
    GEMM_MR = 4,   /* micro-kernel rows (gemm_micro is written for exactly 4) */
    GEMM_NR = 16,  /* micro-kernel columns (two AVX registers) */
    GEMM_MC = 64,  /* tile rows, multiple of MR */
    GEMM_NC = 128, /* tile columns, multiple of NR */
    GEMM_KC = 128, /* k block; packed A (32 KiB) + B (64 KiB) live on the thread's stack */
};

/* acc (MR,NR) = sum_p ap[p] (MR) x bp[p] (NR): the only hot loop. */
static void gemm_micro(int kb, const float *restrict ap /* (KB,MR) */, const float *restrict bp /* (KB,NR) */,
                       float *restrict acc /* (MR,NR) */) {
    /* One accumulator row per A row, updated by a single j loop: gcc turns each row
     * into one 16-wide (or two 8-wide) register and the loop into FMAs. */
    float t0[GEMM_NR] = {0}, t1[GEMM_NR] = {0}, t2[GEMM_NR] = {0}, t3[GEMM_NR] = {0};
    for (int p = 0; p < kb; p++) {
        const float *restrict brow = bp + (size_t)p * GEMM_NR;
        const float *restrict acol = ap + (size_t)p * GEMM_MR;
        const float a0 = acol[0], a1 = acol[1], a2 = acol[2], a3 = acol[3];
        for (int j = 0; j < GEMM_NR; j++) {
            t0[j] += a0 * brow[j];
            t1[j] += a1 * brow[j];
            t2[j] += a2 * brow[j];
            t3[j] += a3 * brow[j];
        }
    }
    memcpy(acc + 0 * GEMM_NR, t0, sizeof t0);
    memcpy(acc + 1 * GEMM_NR, t1, sizeof t1);
    memcpy(acc + 2 * GEMM_NR, t2, sizeof t2);
    memcpy(acc + 3 * GEMM_NR, t3, sizeof t3);
}

/* Packs alpha * op(A)[i0:i0+mb, p0:p0+kb] as strips of MR rows, p-major inside a strip. */
static void gemm_pack_a(int trans_a, const float *a, int lda, float alpha, int i0, int mb, int p0, int kb,
                        float *restrict ap /* (ceil(MB/MR),KB,MR) */) {
    for (int s = 0; s < mb; s += GEMM_MR) {
        float *strip = ap + (size_t)s * kb;
        for (int p = 0; p < kb; p++)
            for (int r = 0; r < GEMM_MR; r++) {
                const int i = s + r;
                float v = 0.0f; /* rows past the edge are zero so the kernel needs no bounds */
                if (i < mb) {
                    const size_t row = (size_t)(i0 + i), col = (size_t)(p0 + p);
                    v = alpha * (trans_a ? a[col * (size_t)lda + row] : a[row * (size_t)lda + col]);
                }
                strip[(size_t)p * GEMM_MR + r] = v;
            }
    }
}

/* Packs op(B)[p0:p0+kb, j0:j0+nb] as panels of NR columns, p-major inside a panel. */
static void gemm_pack_b(int trans_b, const float *b, int ldb, int p0, int kb, int j0, int nb,
                        float *restrict bp /* (ceil(NB/NR),KB,NR) */) {
    for (int s = 0; s < nb; s += GEMM_NR) {
        float *panel = bp + (size_t)s * kb;
        const int w = nb - s < GEMM_NR ? nb - s : GEMM_NR;
        for (int p = 0; p < kb; p++) {
            float *dst = panel + (size_t)p * GEMM_NR;
            const size_t row = (size_t)(p0 + p);
            if (!trans_b) {
                memcpy(dst, b + row * (size_t)ldb + (size_t)(j0 + s), (size_t)w * sizeof(float));
            } else {
                for (int j = 0; j < w; j++) dst[j] = b[(size_t)(j0 + s + j) * (size_t)ldb + row];
            }
            for (int j = w; j < GEMM_NR; j++) dst[j] = 0.0f;
        }
    }
}

/* One MC x NC tile of C. */
static void gemm_tile(int trans_a, int trans_b, int i0, int mb, int j0, int nb, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    float ap[GEMM_MC * GEMM_KC];
    float bp[GEMM_NC * GEMM_KC];
    float acc[GEMM_MR * GEMM_NR];

    if (k == 0) { /* no product: C = beta C (beta == 0 clears, never reads C, as BLAS) */
        for (int i = 0; i < mb; i++) {
            float *crow = c + (size_t)(i0 + i) * (size_t)ldc + (size_t)j0;
            for (int j = 0; j < nb; j++) crow[j] = beta == 0.0f ? 0.0f : beta * crow[j];
        }
        return;
    }
    for (int p0 = 0; p0 < k; p0 += GEMM_KC) {
        const int kb = k - p0 < GEMM_KC ? k - p0 : GEMM_KC;
        const int first = p0 == 0;
        gemm_pack_a(trans_a, a, lda, alpha, i0, mb, p0, kb, ap);
        gemm_pack_b(trans_b, b, ldb, p0, kb, j0, nb, bp);
        for (int is = 0; is < mb; is += GEMM_MR) {
            const int mr = mb - is < GEMM_MR ? mb - is : GEMM_MR;
            for (int js = 0; js < nb; js += GEMM_NR) {
                const int nr = nb - js < GEMM_NR ? nb - js : GEMM_NR;
                gemm_micro(kb, ap + (size_t)is * kb, bp + (size_t)js * kb, acc);
                for (int r = 0; r < mr; r++) {
                    float *crow = c + (size_t)(i0 + is + r) * (size_t)ldc + (size_t)(j0 + js);
                    const float *arow = acc + r * GEMM_NR;
                    if (!first) {
                        for (int j = 0; j < nr; j++) crow[j] += arow[j];
                    } else if (beta == 0.0f) {
                        for (int j = 0; j < nr; j++) crow[j] = arow[j];
                    } else {
                        for (int j = 0; j < nr; j++) crow[j] = beta * crow[j] + arow[j];
                    }
                }
            }
        }
    }
}

void gemm_ref(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
              int ldb, float beta, float *c, int ldc, int nthreads) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    const int tm = (m + GEMM_MC - 1) / GEMM_MC, tn = (n + GEMM_NC - 1) / GEMM_NC;
    const int tiles = tm * tn;
    /* Threads cost more than they save on tiny products. */
    const double flops = 2.0 * m * n * (k > 0 ? k : 1);
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > tiles) nt = tiles;
    if (flops < 1e5) nt = 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < tiles; t++) {
        const int i0 = (t / tn) * GEMM_MC, j0 = (t % tn) * GEMM_NC;
        const int mb = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
        const int nb = n - j0 < GEMM_NC ? n - j0 : GEMM_NC;
        gemm_tile(trans_a, trans_b, i0, mb, j0, nb, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
}
