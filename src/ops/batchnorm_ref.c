/* Reference batch normalization (PyTorch BatchNorm2d / BatchNorm1d on (N,C)).
 * Tensors are (N,C,S) with S = H*W. Loops are threaded over channels: each channel's
 * sums belong to one thread and run in a fixed order, in double. */
#include "ops.h"

#include <math.h>

#define BN_PAR_MIN 32768 /* elements below which a loop runs on one thread */

static int bn_threads(const bn_params *p, int nthreads) {
    return (double)p->n * p->c * p->spatial < BN_PAR_MIN || nthreads < 1 ? 1 : nthreads;
}

/* Normalizes channel ch with the given statistics (shared by train and infer, so a
 * model gives the same output in both modes when the statistics agree). */
static void bn_normalize_channel(const bn_params *p, int ch, float *out, const float *in, float gamma, float beta,
                                 float mean, float var) {
    const float invstd = (float)(1.0 / sqrt((double)var + (double)p->eps));
    const float scale = gamma * invstd, shift = beta - mean * scale;
    const size_t s = (size_t)p->spatial;
    for (int n = 0; n < p->n; n++) {
        const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
        const float *x = in + off;
        float *y = out + off;
        for (size_t i = 0; i < s; i++) y[i] = x[i] * scale + shift;
    }
}

void batchnorm_forward_train_ref(const bn_params *p, float *out /* (N,C,S) */, float *mean /* (C) */,
                                 float *var /* (C), biased */, const float *in /* (N,C,S) */,
                                 const float *gamma /* (C) */, const float *beta /* (C) */, int nthreads) {
    const size_t s = (size_t)p->spatial;
    const double count = (double)p->n * (double)s;
#pragma omp parallel for num_threads(bn_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        /* two passes (mean, then squared deviations): no cancellation as in E[x^2]-E[x]^2 */
        double sum = 0.0;
        for (int n = 0; n < p->n; n++) {
            const float *x = in + ((size_t)n * p->c + (size_t)ch) * s;
            for (size_t i = 0; i < s; i++) sum += x[i];
        }
        const double mu = count > 0 ? sum / count : 0.0;
        double sq = 0.0;
        for (int n = 0; n < p->n; n++) {
            const float *x = in + ((size_t)n * p->c + (size_t)ch) * s;
            for (size_t i = 0; i < s; i++) {
                const double d = x[i] - mu;
                sq += d * d;
            }
        }
        mean[ch] = (float)mu;
        var[ch] = count > 0 ? (float)(sq / count) : 0.0f; /* biased, as PyTorch normalizes with */
        bn_normalize_channel(p, ch, out, in, gamma[ch], beta[ch], mean[ch], var[ch]);
    }
}

void batchnorm_forward_infer_ref(const bn_params *p, float *out /* (N,C,S) */, const float *in /* (N,C,S) */,
                                 const float *gamma /* (C) */, const float *beta /* (C) */,
                                 const float *mean /* (C) */, const float *var /* (C) */, int nthreads) {
#pragma omp parallel for num_threads(bn_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) bn_normalize_channel(p, ch, out, in, gamma[ch], beta[ch], mean[ch], var[ch]);
}

/* With xhat = (x - mean) * invstd and M = N*S:
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma). */
void batchnorm_backward_ref(const bn_params *p, float *din /* (N,C,S) */, float *dgamma /* (C) */,
                            float *dbeta /* (C) */, const float *dout /* (N,C,S) */, const float *in /* (N,C,S) */,
                            const float *gamma /* (C) */, const float *mean /* (C) */, const float *var /* (C) */,
                            int nthreads) {
    const size_t s = (size_t)p->spatial;
    const double count = (double)p->n * (double)s;
#pragma omp parallel for num_threads(bn_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        const double mu = mean[ch];
        const double invstd = 1.0 / sqrt((double)var[ch] + (double)p->eps);
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            const float *x = in + off, *dy = dout + off;
            for (size_t i = 0; i < s; i++) {
                sdy += dy[i];
                sdyx += dy[i] * ((x[i] - mu) * invstd);
            }
        }
        dbeta[ch] = (float)sdy;
        dgamma[ch] = (float)sdyx;
        if (count <= 0) continue;
        /* dx = a * dy + b * x + c, folded so the inner loop is one multiply-add chain */
        const double k = gamma[ch] * invstd;
        const double a = k, b = -k * invstd * sdyx / count;
        const double c = -k * sdy / count - b * mu;
        const float af = (float)a, bf = (float)b, cf = (float)c;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            const float *x = in + off, *dy = dout + off;
            float *dx = din + off;
            for (size_t i = 0; i < s; i++) dx[i] = af * dy[i] + bf * x[i] + cf;
        }
    }
}

/* ---- synchronized batch norm (data-parallel training with sync_bn): each rank sums
 * over its own samples, the ranks' sums are added (the caller's allreduce), and the
 * statistics and gradients come from the totals, as one process would compute them
 * from the whole batch. */

void batchnorm_sums_ref(const bn_params *p, const float *in /* (N,C,S) */, const float *center /* (C) or NULL */,
                        float *out /* (C) */, int nthreads) {
    const size_t s = (size_t)p->spatial;
#pragma omp parallel for num_threads(bn_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        double sum = 0.0;
        const double mu = center ? center[ch] : 0.0;
        for (int n = 0; n < p->n; n++) {
            const float *x = in + ((size_t)n * p->c + (size_t)ch) * s;
            if (!center)
                for (size_t i = 0; i < s; i++) sum += x[i];
            else
                for (size_t i = 0; i < s; i++) {
                    const double d = x[i] - mu;
                    sum += d * d;
                }
        }
        out[ch] = (float)sum;
    }
}

void batchnorm_backward_sums_ref(const bn_params *p, float *sdy /* (C) */, float *sdyx /* (C) */,
                                 const float *dout /* (N,C,S) */, const float *in /* (N,C,S) */,
                                 const float *mean /* (C) */, const float *var /* (C) */, int nthreads) {
    const size_t s = (size_t)p->spatial;
#pragma omp parallel for num_threads(bn_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        const double mu = mean[ch], invstd = 1.0 / sqrt((double)var[ch] + (double)p->eps);
        double a = 0.0, b = 0.0;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            const float *x = in + off, *dy = dout + off;
            for (size_t i = 0; i < s; i++) {
                a += dy[i];
                b += dy[i] * ((x[i] - mu) * invstd);
            }
        }
        sdy[ch] = (float)a;
        sdyx[ch] = (float)b;
    }
}

void batchnorm_backward_apply_ref(const bn_params *p, float *din /* (N,C,S) */, const float *dout /* (N,C,S) */,
                                  const float *in /* (N,C,S) */, const float *gamma /* (C) */,
                                  const float *mean /* (C) */, const float *var /* (C) */, const float *sdy /* (C) */,
                                  const float *sdyx /* (C) */, double count, int nthreads) {
    const size_t s = (size_t)p->spatial;
#pragma omp parallel for num_threads(bn_threads(p, nthreads)) schedule(static)
    for (int ch = 0; ch < p->c; ch++) {
        const double mu = mean[ch], invstd = 1.0 / sqrt((double)var[ch] + (double)p->eps);
        const double k = gamma[ch] * invstd;
        const double a = k, b = count > 0 ? -k * invstd * sdyx[ch] / count : 0.0;
        const double c = (count > 0 ? -k * sdy[ch] / count : 0.0) - b * mu;
        const float af = (float)a, bf = (float)b, cf = (float)c;
        for (int n = 0; n < p->n; n++) {
            const size_t off = ((size_t)n * p->c + (size_t)ch) * s;
            const float *x = in + off, *dy = dout + off;
            float *dx = din + off;
            for (size_t i = 0; i < s; i++) dx[i] = af * dy[i] + bf * x[i] + cf;
        }
    }
}
