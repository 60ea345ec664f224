/* Reference 2-D convolution (PyTorch Conv2d semantics) as im2col + gemm_ref per
 * sample and group. The column buffer comes from the caller (conv2d_scratch_size).
 *
 * For group g of sample n, with CG = C/groups, KG = K/groups, R = CG*KH*KW, P = OH*OW:
 *   col (R,P)     = im2col(in[n, g*CG:(g+1)*CG])
 *   out (KG,P)    = w_g (KG,R) col (R,P)                    forward
 *   col (R,P)     = w_g^T (R,KG) dout_g (KG,P); col2im       backward data
 *   dw_g (KG,R)  += dout_g (KG,P) col^T (P,R), over n       backward weights
 * A 1x1, stride-1, unpadded convolution is a plain gemm on the input planes, so it
 * skips the column buffer. Padding may differ per side (ph/pw top and left, pbh/pbw
 * bottom and right): the end padding only sets the output size, since taps past the
 * input read zeros either way. */
#include "ops.h"

#include <limits.h>
#include <string.h>

/* Work (floats touched) below which a loop runs on one thread. */
#define CONV_PAR_MIN 32768

int conv2d_params_finish(conv2d_params *p) {
    if (!p) return 0;
    if (p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->k <= 0) return 0;
    if (p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 || p->dw <= 0) return 0;
    if (p->ph < 0 || p->pw < 0 || p->pbh < 0 || p->pbw < 0 || p->groups <= 0) return 0;
    if (p->c % p->groups != 0 || p->k % p->groups != 0) return 0;
    /* int64 so that large paddings or dilations cannot overflow */
    const int64_t eh = (int64_t)p->dh * (p->kh - 1) + 1, ew = (int64_t)p->dw * (p->kw - 1) + 1;
    const int64_t spanh = (int64_t)p->h + (int64_t)p->ph + (int64_t)p->pbh - eh;
    const int64_t spanw = (int64_t)p->w + (int64_t)p->pw + (int64_t)p->pbw - ew;
    if (spanh < 0 || spanw < 0) return 0; /* kernel larger than the padded input */
    const int64_t oh = spanh / p->sh + 1, ow = spanw / p->sw + 1;
    if (oh > INT_MAX || ow > INT_MAX) return 0;
    p->oh = (int)oh;
    p->ow = (int)ow;
    /* The kernels index with size_t; keep every tensor and the column buffer addressable. */
    const double big = (double)SIZE_MAX / 8;
    if ((double)p->n * p->c * p->h * p->w > big || (double)p->n * p->k * oh * ow > big ||
        (double)p->c * p->kh * p->kw * oh * ow > big || (double)p->kh * p->kw * p->c > INT_MAX ||
        (double)oh * ow > INT_MAX)
        return 0;
    return 1;
}

static int conv_is_pointwise(const conv2d_params *p) {
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0 && p->pbh == 0 &&
           p->pbw == 0;
}

size_t conv2d_scratch_size(const conv2d_params *p) {
    if (conv_is_pointwise(p)) return 0;
    size_t rows, cols, bytes;
    if (!ts_mul_size((size_t)(p->c / p->groups), (size_t)p->kh * (size_t)p->kw, &rows) ||
        !ts_mul_size((size_t)p->oh, (size_t)p->ow, &cols) || !ts_mul_size(rows, cols, &bytes) ||
        !ts_mul_size(bytes, sizeof(float), &bytes))
        return SIZE_MAX; /* the caller's allocation then fails cleanly */
    return bytes;
}

/* col (CG*KH*KW, OH*OW) from one sample's group planes; out-of-image taps are 0. */
static void im2col(const conv2d_params *p, float *restrict col, const float *restrict in /* (CG,H,W) */,
                   int nthreads) {
    const int cg = p->c / p->groups, rows = cg * p->kh * p->kw;
    const size_t plane = (size_t)p->oh * (size_t)p->ow;
    const int nt = (double)rows * plane < CONV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < rows; r++) {
        const int kw = r % p->kw, kh = (r / p->kw) % p->kh, c = r / (p->kw * p->kh);
        const float *src = in + (size_t)c * p->h * p->w;
        float *dst = col + (size_t)r * plane;
        for (int oy = 0; oy < p->oh; oy++) {
            const int iy = oy * p->sh - p->ph + kh * p->dh;
            float *drow = dst + (size_t)oy * p->ow;
            if (iy < 0 || iy >= p->h) {
                memset(drow, 0, (size_t)p->ow * sizeof(float));
                continue;
            }
            const float *srow = src + (size_t)iy * p->w;
            const int x0 = kw * p->dw - p->pw;
            for (int ox = 0; ox < p->ow; ox++) {
                const int ix = ox * p->sw + x0;
                drow[ox] = ix >= 0 && ix < p->w ? srow[ix] : 0.0f;
            }
        }
    }
}

/* din (CG,H,W) = sum of the column taps that read each pixel (adjoint of im2col).
 * Threaded over channels; each pixel sums its taps in a fixed (kh,kw,oy,ox) order. */
static void col2im(const conv2d_params *p, float *restrict din /* (CG,H,W) */, const float *restrict col,
                   int nthreads) {
    const int cg = p->c / p->groups;
    const size_t plane = (size_t)p->oh * (size_t)p->ow, hw = (size_t)p->h * (size_t)p->w;
    const int nt = (double)cg * p->kh * p->kw * plane < CONV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int c = 0; c < cg; c++) {
        float *dst = din + (size_t)c * hw;
        memset(dst, 0, hw * sizeof(float));
        for (int kh = 0; kh < p->kh; kh++)
            for (int kw = 0; kw < p->kw; kw++) {
                const float *src = col + ((size_t)(c * p->kh + kh) * p->kw + kw) * plane;
                for (int oy = 0; oy < p->oh; oy++) {
                    const int iy = oy * p->sh - p->ph + kh * p->dh;
                    if (iy < 0 || iy >= p->h) continue;
                    float *drow = dst + (size_t)iy * p->w;
                    const float *srow = src + (size_t)oy * p->ow;
                    const int x0 = kw * p->dw - p->pw;
                    for (int ox = 0; ox < p->ow; ox++) {
                        const int ix = ox * p->sw + x0;
                        if (ix >= 0 && ix < p->w) drow[ix] += srow[ox];
                    }
                }
            }
    }
}

void conv2d_forward_ref(const conv2d_params *p, float *out /* (N,K,OH,OW) */, const float *in /* (N,C,H,W) */,
                        const float *w /* (K,C/G,KH,KW) */, const float *bias /* (K) or NULL */,
                        float *scratch /* conv2d_scratch_size bytes */, int nthreads) {
    const int g_n = p->groups, cg = p->c / g_n, kg = p->k / g_n;
    const int r = cg * p->kh * p->kw, plane = p->oh * p->ow;
    const size_t hw = (size_t)p->h * (size_t)p->w;
    const int pointwise = conv_is_pointwise(p);
    for (int n = 0; n < p->n; n++) {
        for (int g = 0; g < g_n; g++) {
            const float *x = in + ((size_t)n * p->c + (size_t)g * cg) * hw;
            const float *col = x; /* pointwise: the input planes are the columns */
            if (!pointwise) {
                im2col(p, scratch, x, nthreads);
                col = scratch;
            }
            float *y = out + ((size_t)n * p->k + (size_t)g * kg) * (size_t)plane;
            gemm_ref(0, 0, kg, plane, r, 1.0f, w + (size_t)g * kg * r, r, col, plane, 0.0f, y, plane, nthreads);
        }
        if (bias) {
            float *y = out + (size_t)n * p->k * (size_t)plane;
            const int nt = (double)p->k * plane < CONV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int k = 0; k < p->k; k++) {
                float *yk = y + (size_t)k * plane;
                const float b = bias[k];
                for (int i = 0; i < plane; i++) yk[i] += b;
            }
        }
    }
}

void conv2d_backward_data_ref(const conv2d_params *p, float *din /* (N,C,H,W) */,
                              const float *dout /* (N,K,OH,OW) */, const float *w /* (K,C/G,KH,KW) */,
                              float *scratch /* conv2d_scratch_size bytes */, int nthreads) {
    const int g_n = p->groups, cg = p->c / g_n, kg = p->k / g_n;
    const int r = cg * p->kh * p->kw, plane = p->oh * p->ow;
    const size_t hw = (size_t)p->h * (size_t)p->w;
    const int pointwise = conv_is_pointwise(p);
    for (int n = 0; n < p->n; n++)
        for (int g = 0; g < g_n; g++) {
            float *dx = din + ((size_t)n * p->c + (size_t)g * cg) * hw;
            const float *dy = dout + ((size_t)n * p->k + (size_t)g * kg) * (size_t)plane;
            const float *wg = w + (size_t)g * kg * r;
            if (pointwise) { /* the columns are the input gradient itself */
                gemm_ref(1, 0, r, plane, kg, 1.0f, wg, r, dy, plane, 0.0f, dx, plane, nthreads);
            } else {
                gemm_ref(1, 0, r, plane, kg, 1.0f, wg, r, dy, plane, 0.0f, scratch, plane, nthreads);
                col2im(p, dx, scratch, nthreads);
            }
        }
}

void conv2d_backward_weights_ref(const conv2d_params *p, float *dw /* (K,C/G,KH,KW) */,
                                 float *dbias /* (K) or NULL */, const float *dout /* (N,K,OH,OW) */,
                                 const float *in /* (N,C,H,W) */, float *scratch /* conv2d_scratch_size bytes */,
                                 int nthreads) {
    const int g_n = p->groups, cg = p->c / g_n, kg = p->k / g_n;
    const int r = cg * p->kh * p->kw, plane = p->oh * p->ow;
    const size_t hw = (size_t)p->h * (size_t)p->w;
    const int pointwise = conv_is_pointwise(p);
    if (p->n <= 0) memset(dw, 0, (size_t)p->k * (size_t)r * sizeof(float));
    /* Samples are added one after another, so the sum order is fixed. */
    for (int n = 0; n < p->n; n++)
        for (int g = 0; g < g_n; g++) {
            const float *x = in + ((size_t)n * p->c + (size_t)g * cg) * hw;
            const float *col = x;
            if (!pointwise) {
                im2col(p, scratch, x, nthreads);
                col = scratch;
            }
            const float *dy = dout + ((size_t)n * p->k + (size_t)g * kg) * (size_t)plane;
            gemm_ref(0, 1, kg, r, plane, 1.0f, dy, plane, col, plane, n == 0 ? 0.0f : 1.0f,
                     dw + (size_t)g * kg * r, r, nthreads);
        }
    if (dbias) {
        const int nt = (double)p->n * p->k * plane < CONV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int k = 0; k < p->k; k++) {
            double s = 0.0; /* double: a sum over N*OH*OW terms */
            for (int n = 0; n < p->n; n++) {
                const float *dy = dout + ((size_t)n * p->k + (size_t)k) * (size_t)plane;
                for (int i = 0; i < plane; i++) s += dy[i];
            }
            dbias[k] = (float)s;
        }
    }
}

void channel_bias_add_ref(int n, int c, size_t spatial, float *out /* (N,C,S) */, const float *bias /* (C) */,
                          int nthreads) {
    const int planes = n * c;
    const int nt = (double)planes * spatial < CONV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *y = out + (size_t)pl * spatial;
        const float b = bias[pl % c];
        for (size_t i = 0; i < spatial; i++) y[i] += b;
    }
}

void channel_bias_grad_ref(int n, int c, size_t spatial, float *dbias /* (C) */, const float *dout /* (N,C,S) */,
                           int nthreads) {
    const int nt = (double)n * c * spatial < CONV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int k = 0; k < c; k++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            const float *dy = dout + ((size_t)i * c + (size_t)k) * spatial;
            for (size_t j = 0; j < spatial; j++) s += dy[j];
        }
        dbias[k] = (float)s;
    }
}
