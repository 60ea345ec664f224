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
