/* Batch normalization on plain (N,C,S) tensors, written for the compiler's vector
 * units: the fast path of the oneDNN backend for images (oneDNN's own kernel for
 * the plain layout, ncsp_bnorm, took 27% of a ResNet-20 training step).
 *
 * Same results as batchnorm_*_ref up to float rounding, and as careful: the mean
 * first, then the squared deviations from it (no E[x^2] - E[x]^2 cancellation).
 * Each (n, c) plane is summed in float over 64 independent lanes, in blocks of
 * BN_BLOCK elements whose sums are added in double, so a float partial sum never
 * holds more than BN_BLOCK/64 terms. Threads split the channels; a channel's sums
 * run in a fixed order, so results do not depend on the thread count.
 *
 * With `relu`, the forward writes max(0, y), and the backward takes that output
 * and masks dy where it is zero: batch norm and a following ReLU in one pass. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define BN_LANES 64 /* four AVX-512 vectors: hides the add latency */
#define BN_BLOCK 1024
#define BN_PAR_MIN 32768 /* elements below which a loop runs on one thread */

static int vec_threads(const bn_params *p, int nthreads) {
    return (double)p->n * p->c * p->spatial < BN_PAR_MIN || nthreads < 1 ? 1 : nthreads;
}

/* sum of x[0..len) (len <= BN_BLOCK) */
static double block_sum(const float *x, size_t len) {
    float a[BN_LANES] = {0};
    size_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) a[j] += x[i + (size_t)j];
    for (int j = 0; i < len; i++, j++) a[j] += x[i];
    double s = 0.0;
    for (int j = 0; j < BN_LANES; j++) s += a[j];
    return s;
}

/* sums of x[0..len) (len <= BN_BLOCK) less `shift`, and of its squares */
static void block_sums(const float *x, size_t len, float shift, double *sum, double *sumsq) {
    float a[BN_LANES] = {0}, b[BN_LANES] = {0};
    size_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) {
            const float d = x[i + (size_t)j] - shift;
            a[j] += d;
            b[j] += d * d;
        }
    for (int j = 0; i < len; i++, j++) {
        const float d = x[i] - shift;
        a[j] += d;
        b[j] += d * d;
    }
    double s = 0.0, q = 0.0;
    for (int j = 0; j < BN_LANES; j++) s += a[j], q += b[j];
    *sum += s;
    *sumsq += q;
}

void batchnorm_forward_train_vec(const bn_params *p, float *out /* (N,C,S) */, float *mean /* (C) */,
                                 float *var /* (C), biased */, const float *in /* (N,C,S) */,
                                 const float *gamma /* (C) */, const float *beta /* (C) */, int relu, int nthreads) {
    const size_t s = (size_t)p->spatial;
    const double count = (double)p->n * (double)s;
#pragma omp parallel for num_threads(vec_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        double sum = 0.0;
        for (int n = 0; n < p->n; n++) {
            const float *x = in + ((size_t)n * p->c + (size_t)ch) * s;
            for (size_t o = 0; o < s; o += BN_BLOCK) sum += block_sum(x + o, s - o < BN_BLOCK ? s - o : BN_BLOCK);
        }
        const double mu = count > 0 ? sum / count : 0.0;
        /* deviations from the float mean; the float rounding of mu (d0) is
         * corrected for exactly: sum (x - m)^2 = sum (x - mu)^2 + M d0^2 */
        const float mf = (float)mu;
        double dev = 0.0, sq = 0.0;
        for (int n = 0; n < p->n; n++) {
            const float *x = in + ((size_t)n * p->c + (size_t)ch) * s;
            for (size_t o = 0; o < s; o += BN_BLOCK) block_sums(x + o, s - o < BN_BLOCK ? s - o : BN_BLOCK, mf, &dev, &sq);
        }
        const double d0 = count > 0 ? dev / count : 0.0; /* mean of (x - mf) */
        double v = count > 0 ? sq / count - d0 * d0 : 0.0;
        if (v < 0) v = 0;
        mean[ch] = (float)mu;
        var[ch] = (float)v;
        const float invstd = (float)(1.0 / sqrt((double)var[ch] + (double)p->eps));
        const float scale = gamma[ch] * invstd, shift = beta[ch] - mean[ch] * scale;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            const float *x = in + off;
            float *y = out + off;
            if (relu)
                for (size_t i = 0; i < s; i++) {
                    const float t = x[i] * scale + shift;
                    y[i] = t > 0.0f ? t : 0.0f;
                }
            else
                for (size_t i = 0; i < s; i++) y[i] = x[i] * scale + shift;
        }
    }
}

/* sums of dy and of dy * (x - shift) over x, dy [0..len), dy masked by y > 0 when y */
static void block_grad_sums(const float *x, const float *dy, const float *y, size_t len, float shift, double *sdy,
                            double *sdyx) {
    float a[BN_LANES] = {0}, b[BN_LANES] = {0};
    size_t i = 0;
    if (y) {
        for (; i + BN_LANES <= len; i += BN_LANES)
            for (int j = 0; j < BN_LANES; j++) {
                const size_t k = i + (size_t)j;
                const float g = y[k] > 0.0f ? dy[k] : 0.0f;
                a[j] += g;
                b[j] += g * (x[k] - shift);
            }
        for (int j = 0; i < len; i++, j++) {
            const float g = y[i] > 0.0f ? dy[i] : 0.0f;
            a[j] += g;
            b[j] += g * (x[i] - shift);
        }
    } else {
        for (; i + BN_LANES <= len; i += BN_LANES)
            for (int j = 0; j < BN_LANES; j++) {
                const size_t k = i + (size_t)j;
                a[j] += dy[k];
                b[j] += dy[k] * (x[k] - shift);
            }
        for (int j = 0; i < len; i++, j++) {
            a[j] += dy[i];
            b[j] += dy[i] * (x[i] - shift);
        }
    }
    double s = 0.0, q = 0.0;
    for (int j = 0; j < BN_LANES; j++) s += a[j], q += b[j];
    *sdy += s;
    *sdyx += q;
}

/* With xhat = (x - mean) * invstd and M = N*S (dy masked by the ReLU when relu_out):
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma). */
void batchnorm_backward_vec(const bn_params *p, float *din /* (N,C,S) */, float *dgamma /* (C) */,
                            float *dbeta /* (C) */, const float *dout /* (N,C,S) */, const float *in /* (N,C,S) */,
                            const float *relu_out /* (N,C,S) or NULL */, const float *gamma /* (C) */,
                            const float *mean /* (C) */, const float *var /* (C) */, int nthreads) {
    const size_t s = (size_t)p->spatial;
    const double count = (double)p->n * (double)s;
#pragma omp parallel for num_threads(vec_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        const float mf = mean[ch];
        const double invstd = 1.0 / sqrt((double)var[ch] + (double)p->eps);
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            for (size_t o = 0; o < s; o += BN_BLOCK)
                block_grad_sums(in + off + o, dout + off + o, relu_out ? relu_out + off + o : NULL,
                                s - o < BN_BLOCK ? s - o : BN_BLOCK, mf, &sdy, &sdyx);
        }
        sdyx *= invstd; /* sum dy * xhat */
        dbeta[ch] = (float)sdy;
        dgamma[ch] = (float)sdyx;
        if (count <= 0) continue;
        /* dx = a * dy + b * x + c, folded so the inner loop is one multiply-add chain */
        const double k = gamma[ch] * invstd;
        const double a = k, b = -k * invstd * sdyx / count;
        const double c = -k * sdy / count - b * (double)mf;
        const float af = (float)a, bf = (float)b, cf = (float)c;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            const float *x = in + off, *dy = dout + off;
            float *dx = din + off;
            if (relu_out) {
                const float *y = relu_out + off;
                for (size_t i = 0; i < s; i++) dx[i] = af * (y[i] > 0.0f ? dy[i] : 0.0f) + bf * x[i] + cf;
            } else {
                for (size_t i = 0; i < s; i++) dx[i] = af * dy[i] + bf * x[i] + cf;
            }
        }
    }
}

/* Inference on channels-last rows (N*H*W rows of C, fused inference), the reference's
 * arithmetic per element (x * scale + shift, scale and shift from float gamma/sqrt(var
 * + eps) as bn_normalize_channel has them), then max(0, .) when `relu`. Channels in
 * blocks whose scale and shift sit on the stack; rows split over the threads. */
void batchnorm_infer_rows(const bn_params *p, int relu, float *out /* (rows, C) */, const float *in /* (rows, C) */,
                          const float *gamma, const float *beta, const float *mean, const float *var, int nthreads) {
    batchnorm_infer_part(p, relu, 1, 0, p->c, out, in, gamma, beta, mean, var, nthreads);
}

void batchnorm_infer_part(const bn_params *p, int relu, int cl, int64_t c0, int64_t cp, float *out, const float *in,
                          const float *gamma, const float *beta, const float *mean, const float *var, int nthreads) {
    enum { BLOCK = 256 };
    const int64_t rows = (int64_t)p->n * p->spatial, c = p->c, s = p->spatial;
    for (int64_t b0 = 0; b0 < cp; b0 += BLOCK) {
        const int len = (int)(cp - b0 < BLOCK ? cp - b0 : BLOCK);
        float scale[BLOCK], shift[BLOCK];
        for (int j = 0; j < len; j++) {
            const int64_t ch = c0 + b0 + j;
            const float invstd = (float)(1.0 / sqrt((double)var[ch] + (double)p->eps));
            scale[j] = gamma[ch] * invstd;
            shift[j] = beta[ch] - mean[ch] * scale[j];
        }
        const int nt = rows * len < 65536 || nthreads < 1 ? 1 : nthreads;
        if (cl) {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                const float *x = in + r * cp + b0;
                float *y = out + r * c + c0 + b0;
                if (relu)
                    for (int j = 0; j < len; j++) {
                        const float v = x[j] * scale[j] + shift[j];
                        y[j] = v < 0.0f ? 0.0f : v;
                    }
                else
                    for (int j = 0; j < len; j++) y[j] = x[j] * scale[j] + shift[j];
            }
        } else {
            /* each (sample, channel) a plane of S */
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t q = 0; q < (int64_t)p->n * len; q++) {
                const int64_t i = q / len, j = q % len;
                const float *x = in + (i * cp + b0 + j) * s;
                float *y = out + (i * c + c0 + b0 + j) * s;
                const float a = scale[j], b = shift[j];
                if (relu)
                    for (int64_t k = 0; k < s; k++) {
                        const float v = x[k] * a + b;
                        y[k] = v < 0.0f ? 0.0f : v;
                    }
                else
                    for (int64_t k = 0; k < s; k++) y[k] = x[k] * a + b;
            }
        }
    }
}

/* ---- nChw16c: sample i, channel block b is a plane of S rows of 16 channels at
 * ((i * C/16 + b) * S) * 16. Each (sample, channel) is summed in float over 4 x 16
 * lanes in blocks of BLK_ROWS rows, the blocks added in double; the samples' sums are
 * then added in order. Two terms per float partial, nearly double accumulation: with
 * 16 or 32 rows a block (4 or 8 terms), test_parity_torch's ResNet-20 SGD run turned at
 * its fifth step (loss 0.018, where the gradients are small sums that cancel) and ended
 * 20x its tolerance from PyTorch, which the plain kernels, 8 and 64 rows, and PyTorch in
 * float64 all stay within 0.03-0.08 of; with 64 rows (16 terms, the plain kernels' 1024
 * / 64) data near 1,000 with unit spread moved the mean by an ulp, which the output's
 * x * scale + shift turns into 2e-4 (tests/ops, bn_blocked_check). */
#define BLK 16
#define BLK_ROWS 8
/* The 16-lane loops below vectorize with this hint under GCC (without it the apply
 * passes ran scalar stores: bench/NOTES.md); clang's sanitizer builds (`make fuzz`)
 * cannot always, and -Wpass-failed would stop them, so the hint is GCC's. */
#if defined(__GNUC__) && !defined(__clang__)
#define BN_SIMD _Pragma("omp simd")
#else
#define BN_SIMD
#endif

/* Per lane j: sum[j] += sum of (x[r][j] - shift[j]) over rows r < s, and sq[j] the
 * same of its squares (sq NULL: not). */
static void rows_sums(const float *x /* (S,16) */, size_t s, const float *shift /* (16) */, double *sum /* (16) */,
                      double *sq /* (16) or NULL */) {
    for (size_t o = 0; o < s; o += BLK_ROWS) {
        const size_t len = s - o < BLK_ROWS ? s - o : BLK_ROWS;
        const float *r = x + o * BLK;
        float a[4][BLK] = {{0}}, q[4][BLK] = {{0}};
        size_t i = 0;
        if (sq) {
            for (; i + 4 <= len; i += 4)
                for (int k = 0; k < 4; k++)
                    for (int j = 0; j < BLK; j++) {
                        const float d = r[(i + (size_t)k) * BLK + (size_t)j] - shift[j];
                        a[k][j] += d;
                        q[k][j] += d * d;
                    }
            for (; i < len; i++)
                for (int j = 0; j < BLK; j++) {
                    const float d = r[i * BLK + (size_t)j] - shift[j];
                    a[0][j] += d;
                    q[0][j] += d * d;
                }
        } else {
            for (; i + 4 <= len; i += 4)
                for (int k = 0; k < 4; k++)
                    for (int j = 0; j < BLK; j++) a[k][j] += r[(i + (size_t)k) * BLK + (size_t)j] - shift[j];
            for (; i < len; i++)
                for (int j = 0; j < BLK; j++) a[0][j] += r[i * BLK + (size_t)j] - shift[j];
        }
        for (int j = 0; j < BLK; j++) {
            sum[j] += ((double)a[0][j] + (double)a[1][j]) + ((double)a[2][j] + (double)a[3][j]);
            if (sq) sq[j] += ((double)q[0][j] + (double)q[1][j]) + ((double)q[2][j] + (double)q[3][j]);
        }
    }
}

/* Per lane: sdy[j] += sum of g, sdyx[j] += sum of g * (x - shift[j]), g = dy masked by
 * y > 0 when y. */
static void rows_grad_sums(const float *x, const float *dy, const float *y /* or NULL */, size_t s,
                           const float *shift /* (16) */, double *sdy /* (16) */, double *sdyx /* (16) */) {
    for (size_t o = 0; o < s; o += BLK_ROWS) {
        const size_t len = s - o < BLK_ROWS ? s - o : BLK_ROWS, base = o * BLK;
        float a[4][BLK] = {{0}}, q[4][BLK] = {{0}};
        /* four rows a step, row i into accumulator i % 4 (a fixed index per statement,
         * so the accumulators stay in registers) */
        for (size_t i = 0; i < len; i += 4)
            for (int k = 0; k < 4 && i + (size_t)k < len; k++) {
                const size_t e = base + (i + (size_t)k) * BLK;
                if (y) {
BN_SIMD
                    for (int j = 0; j < BLK; j++) {
                        const float g = y[e + (size_t)j] > 0.0f ? dy[e + (size_t)j] : 0.0f;
                        a[k][j] += g;
                        q[k][j] += g * (x[e + (size_t)j] - shift[j]);
                    }
                } else {
BN_SIMD
                    for (int j = 0; j < BLK; j++) {
                        const float g = dy[e + (size_t)j];
                        a[k][j] += g;
                        q[k][j] += g * (x[e + (size_t)j] - shift[j]);
                    }
                }
            }
        for (int j = 0; j < BLK; j++) {
            sdy[j] += ((double)a[0][j] + (double)a[1][j]) + ((double)a[2][j] + (double)a[3][j]);
            sdyx[j] += ((double)q[0][j] + (double)q[1][j]) + ((double)q[2][j] + (double)q[3][j]);
        }
    }
}

static int blocked_threads(const bn_params *p, int nthreads) {
    return (double)p->n * p->c * p->spatial < BN_PAR_MIN || nthreads < 1 ? 1 : nthreads;
}

void batchnorm_forward_train_blocked(const bn_params *p, float *out, float *mean, float *var, const float *in,
                                     const float *gamma, const float *beta, int relu, double *part, int nthreads) {
    static const float zero[BLK];
    const int cb = (p->c + BLK - 1) / BLK, nt = blocked_threads(p, nthreads);
    const int64_t planes = (int64_t)p->n * cb;
    /* cp: the channels with the padding of the last block, whose coefficients are 0 */
    const size_t s = (size_t)p->spatial, c = (size_t)p->c, cp = (size_t)cb * BLK, nc = (size_t)p->n * cp;
    const double count = (double)p->n * (double)s;
    double *ps = part, *pq = part + nc;
    float *scale = (float *)(part + 2 * nc), *shift = scale + cp, *mu = shift + cp;
    /* the mean first */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        double *o = ps + (size_t)(q / cb) * cp + (size_t)(q % cb) * BLK;
        for (int j = 0; j < BLK; j++) o[j] = 0.0;
        rows_sums(in + (size_t)q * s * BLK, s, zero, o, NULL);
    }
    for (size_t ch = 0; ch < cp; ch++) {
        double sum = 0.0;
        for (int i = 0; ch < c && i < p->n; i++) sum += ps[(size_t)i * cp + ch];
        mu[ch] = (float)(count > 0 ? sum / count : 0.0);
        if (ch < c) mean[ch] = mu[ch];
    }
    /* then the deviations from the float mean (see batchnorm_forward_train_vec) */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        const size_t at = (size_t)(q / cb) * cp + (size_t)(q % cb) * BLK;
        for (int j = 0; j < BLK; j++) ps[at + (size_t)j] = pq[at + (size_t)j] = 0.0;
        rows_sums(in + (size_t)q * s * BLK, s, mu + (size_t)(q % cb) * BLK, ps + at, pq + at);
    }
    for (size_t ch = c; ch < cp; ch++) scale[ch] = shift[ch] = 0.0f;
    for (size_t ch = 0; ch < c; ch++) {
        double dev = 0.0, sq = 0.0;
        for (int i = 0; i < p->n; i++) dev += ps[(size_t)i * cp + ch], sq += pq[(size_t)i * cp + ch];
        const double d0 = count > 0 ? dev / count : 0.0;
        double v = count > 0 ? sq / count - d0 * d0 : 0.0;
        if (v < 0) v = 0;
        var[ch] = (float)v;
        const float invstd = (float)(1.0 / sqrt((double)var[ch] + (double)p->eps));
        scale[ch] = gamma[ch] * invstd;
        shift[ch] = beta[ch] - mean[ch] * scale[ch];
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        /* the coefficients on the stack: through part they might alias y, and the
         * loop would reload them for every row */
        float a[BLK], b[BLK];
        memcpy(a, scale + (size_t)(q % cb) * BLK, sizeof a);
        memcpy(b, shift + (size_t)(q % cb) * BLK, sizeof b);
        const float *x = in + (size_t)q * s * BLK;
        float *y = out + (size_t)q * s * BLK;
        if (relu)
            for (size_t r = 0; r < s; r++, x += BLK, y += BLK) {
BN_SIMD
                for (int j = 0; j < BLK; j++) {
                    const float t = x[j] * a[j] + b[j];
                    y[j] = t > 0.0f ? t : 0.0f;
                }
            }
        else
            for (size_t r = 0; r < s; r++, x += BLK, y += BLK) {
BN_SIMD
                for (int j = 0; j < BLK; j++) y[j] = x[j] * a[j] + b[j];
            }
    }
}

void batchnorm_backward_blocked(const bn_params *p, float *din, float *dgamma, float *dbeta, const float *dout,
                                const float *in, const float *relu_out, const float *gamma, const float *mean,
                                const float *var, double *part, int nthreads) {
    const int cb = (p->c + BLK - 1) / BLK, nt = blocked_threads(p, nthreads);
    const int64_t planes = (int64_t)p->n * cb;
    const size_t s = (size_t)p->spatial, c = (size_t)p->c, cp = (size_t)cb * BLK, nc = (size_t)p->n * cp;
    const double count = (double)p->n * (double)s;
    double *ps = part, *pq = part + nc;
    /* (4, CP) floats in (2, CP) doubles; the padded channels' coefficients are 0 */
    float *ca = (float *)(part + 2 * nc), *cbias = ca + cp, *cx = cbias + cp, *mu = cx + cp;
    for (size_t ch = 0; ch < cp; ch++) {
        mu[ch] = ch < c ? mean[ch] : 0.0f;
        if (ch >= c) ca[ch] = cbias[ch] = cx[ch] = 0.0f;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        const size_t at = (size_t)(q / cb) * cp + (size_t)(q % cb) * BLK, off = (size_t)q * s * BLK;
        for (int j = 0; j < BLK; j++) ps[at + (size_t)j] = pq[at + (size_t)j] = 0.0;
        rows_grad_sums(in + off, dout + off, relu_out ? relu_out + off : NULL, s, mu + (size_t)(q % cb) * BLK,
                       ps + at, pq + at);
    }
    for (size_t ch = 0; ch < c; ch++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < p->n; i++) sdy += ps[(size_t)i * cp + ch], sdyx += pq[(size_t)i * cp + ch];
        const double invstd = 1.0 / sqrt((double)var[ch] + (double)p->eps);
        sdyx *= invstd; /* sum dy * xhat */
        dbeta[ch] = (float)sdy;
        dgamma[ch] = (float)sdyx;
        /* dx = a * dy + b * x + c, as batchnorm_backward_vec */
        const double k = gamma[ch] * invstd;
        const double b = count > 0 ? -k * invstd * sdyx / count : 0.0;
        ca[ch] = (float)k;
        cx[ch] = (float)b;
        cbias[ch] = (float)(count > 0 ? -k * sdy / count - b * (double)mean[ch] : 0.0);
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t q = 0; q < planes; q++) {
        const size_t off = (size_t)q * s * BLK, cc = (size_t)(q % cb) * BLK;
        const float *x = in + off, *dy = dout + off, *y = relu_out ? relu_out + off : NULL;
        float a[BLK], b[BLK], k[BLK]; /* on the stack, as in the forward */
        memcpy(a, ca + cc, sizeof a);
        memcpy(b, cx + cc, sizeof b);
        memcpy(k, cbias + cc, sizeof k);
        float *dx = din + off;
        if (y)
            for (size_t e = 0; e < s * BLK; e += BLK) {
BN_SIMD
                for (int j = 0; j < BLK; j++)
                    dx[e + (size_t)j] = a[j] * (y[e + (size_t)j] > 0.0f ? dy[e + (size_t)j] : 0.0f) +
                                        b[j] * x[e + (size_t)j] + k[j];
            }
        else
            for (size_t e = 0; e < s * BLK; e += BLK) {
BN_SIMD
                for (int j = 0; j < BLK; j++) dx[e + (size_t)j] = a[j] * dy[e + (size_t)j] + b[j] * x[e + (size_t)j] + k[j];
            }
    }
}
