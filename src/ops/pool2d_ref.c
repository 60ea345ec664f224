/* Reference max and average pooling with PyTorch's MaxPool2d/AvgPool2d semantics:
 * output size, ceil_mode, padding, max pooling's dilation and the average's divisor
 * are computed exactly as ATen's CPU kernels do, extended to ONNX's per-side padding
 * (top/left ph, pw; bottom/right pbh, pbw). Average pooling takes dilation 1 only
 * (the dispatcher checks). Loops are threaded over (n,c) planes; each plane belongs
 * to one thread, so results do not depend on the thread count. */
#include "ct_math.h"
#include "ops.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define POOL_PAR_MIN 32768 /* work below which a loop runs on one thread */

/* ATen pooling_output_shape, with each side's padding (ONNX pads): floor, or ceil
 * where the last window must start inside the input or the begin padding. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t pad_l, int64_t pad_r, int64_t stride, int64_t dil,
                             int ceil_mode) {
    const int64_t num = in + pad_l + pad_r - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
    /* floor division: num may be negative when the kernel exceeds the padded input */
    int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad_l) out--;
    return out;
}

int pool2d_params_finish(pool2d_params *p) {
    if (!p) return 0;
    if (p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0) return 0;
    if (p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 || p->dw <= 0) return 0;
    if (p->ph < 0 || p->pw < 0 || p->pbh < 0 || p->pbw < 0) return 0;
    /* PyTorch asks for at most half the kernel; ONNX models pad more (its backend
     * tests pad a 3x3 kernel by 2), so each side's padding must only be shorter
     * than the kernel's extent. */
    const int64_t eh = (int64_t)p->dh * (p->kh - 1) + 1, ew = (int64_t)p->dw * (p->kw - 1) + 1;
    if (p->ph >= eh || p->pbh >= eh || p->pw >= ew || p->pbw >= ew) return 0;
    const int64_t oh = pool_out_size(p->h, p->kh, p->ph, p->pbh, p->sh, p->dh, p->ceil_mode);
    const int64_t ow = pool_out_size(p->w, p->kw, p->pw, p->pbw, p->sw, p->dw, p->ceil_mode);
    if (oh < 1 || ow < 1 || oh > INT_MAX || ow > INT_MAX) return 0;
    /* argmax stores h*W+w in int32; tensors are indexed with size_t */
    if ((int64_t)p->h * p->w > INT32_MAX || (int64_t)p->n * p->c > INT_MAX) return 0;
    /* window positions are computed in int */
    if ((oh - 1) * p->sh + eh > INT_MAX / 2 || (ow - 1) * p->sw + ew > INT_MAX / 2) return 0;
    const double big = (double)SIZE_MAX / 8;
    if ((double)p->n * p->c * p->h * p->w > big || (double)p->n * p->c * oh * ow > big) return 0;
    p->oh = (int)oh;
    p->ow = (int)ow;
    return 1;
}

static int pool_threads(const pool2d_params *p, int nthreads) {
    const double work = (double)p->n * p->c * p->oh * p->ow * p->kh * p->kw;
    return work < POOL_PAR_MIN || nthreads < 1 ? 1 : nthreads;
}

/* The taps [k0, k1) of a dilated window starting at `start` that fall inside [0, in). */
static void window_taps(int start, int k, int dil, int in, int *k0, int *k1) {
    *k0 = start < 0 ? (-start + dil - 1) / dil : 0;
    const int last = in - start <= 0 ? 0 : (in - start + dil - 1) / dil; /* taps before `in` */
    *k1 = last < k ? last : k;
    if (*k1 < *k0) *k1 = *k0;
}

void maxpool2d_forward_ref(const pool2d_params *p, float *out /* (N,C,OH,OW) */,
                           int32_t *argmax /* (N,C,OH,OW) or NULL at inference */,
                           const float *in /* (N,C,H,W) */, int nthreads) {
    const int planes = p->n * p->c;
    const size_t ihw = (size_t)p->h * p->w, ohw = (size_t)p->oh * p->ow;
#pragma omp parallel for num_threads(pool_threads(p, nthreads)) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * ihw;
        float *y = out + (size_t)pl * ohw;
        int32_t *am = argmax ? argmax + (size_t)pl * ohw : NULL;
        for (int oy = 0; oy < p->oh; oy++) {
            const int y0 = oy * p->sh - p->ph;
            int ky0, ky1;
            window_taps(y0, p->kh, p->dh, p->h, &ky0, &ky1);
            for (int ox = 0; ox < p->ow; ox++) {
                const int x0 = ox * p->sw - p->pw;
                int kx0, kx1;
                window_taps(x0, p->kw, p->dw, p->w, &kx0, &kx1);
                /* as ATen: start at -inf with the window's first tap as index; the
                 * first maximum wins and NaN propagates. No tap: -inf, index -1. */
                float best = -INFINITY;
                int32_t bi = ky0 < ky1 && kx0 < kx1 ? (int32_t)((y0 + ky0 * p->dh) * p->w + x0 + kx0 * p->dw) : -1;
                for (int ky = ky0; ky < ky1; ky++) {
                    const int iy = y0 + ky * p->dh;
                    for (int kx = kx0; kx < kx1; kx++) {
                        const int ix = x0 + kx * p->dw;
                        const float v = x[(size_t)iy * p->w + ix];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = (int32_t)(iy * p->w + ix);
                        }
                    }
                }
                y[(size_t)oy * p->ow + ox] = best;
                if (am) am[(size_t)oy * p->ow + ox] = bi;
            }
        }
    }
}

void maxpool2d_backward_ref(const pool2d_params *p, float *din /* (N,C,H,W) */, const float *dout /* (N,C,OH,OW) */,
                            const int32_t *argmax /* (N,C,OH,OW) */, int nthreads) {
    const int planes = p->n * p->c;
    const size_t ihw = (size_t)p->h * p->w, ohw = (size_t)p->oh * p->ow;
#pragma omp parallel for num_threads(pool_threads(p, nthreads)) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = din + (size_t)pl * ihw;
        const float *dy = dout + (size_t)pl * ohw;
        const int32_t *am = argmax + (size_t)pl * ohw;
        memset(dx, 0, ihw * sizeof(float));
        for (size_t i = 0; i < ohw; i++) /* overlapping windows add up */
            if (am[i] >= 0) dx[am[i]] += dy[i];
    }
}

/* Window of output (oy,ox), clipped to the input, and ATen's divisor for it. */
typedef struct pool_window {
    int ys, ye, xs, xe;
    float divisor;
} pool_window;

static pool_window avg_window(const pool2d_params *p, int oy, int ox) {
    pool_window w;
    int ys = oy * p->sh - p->ph, xs = ox * p->sw - p->pw;
    /* the window may cover padding but not run past it (ceil_mode's last window) */
    int ye = ys + p->kh < p->h + p->pbh ? ys + p->kh : p->h + p->pbh;
    int xe = xs + p->kw < p->w + p->pbw ? xs + p->kw : p->w + p->pbw;
    const int padded = (ye - ys) * (xe - xs);
    w.ys = ys < 0 ? 0 : ys;
    w.xs = xs < 0 ? 0 : xs;
    w.ye = ye < p->h ? ye : p->h;
    w.xe = xe < p->w ? xe : p->w;
    const int inside = (w.ye - w.ys) * (w.xe - w.xs);
    w.divisor = (float)(p->count_include_pad ? padded : inside);
    return w;
}

void avgpool2d_forward_ref(const pool2d_params *p, float *out /* (N,C,OH,OW) */, const float *in /* (N,C,H,W) */,
                           int nthreads) {
    const int planes = p->n * p->c;
    const size_t ihw = (size_t)p->h * p->w, ohw = (size_t)p->oh * p->ow;
#pragma omp parallel for num_threads(pool_threads(p, nthreads)) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * ihw;
        float *y = out + (size_t)pl * ohw;
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                const pool_window w = avg_window(p, oy, ox);
                double s = 0.0; /* double: the mean is then within one rounding of exact */
                if (w.ys >= w.ye || w.xs >= w.xe) { /* window entirely in padding: ATen gives 0 */
                    y[(size_t)oy * p->ow + ox] = 0.0f;
                    continue;
                }
                for (int iy = w.ys; iy < w.ye; iy++)
                    for (int ix = w.xs; ix < w.xe; ix++) s += x[(size_t)iy * p->w + ix];
                y[(size_t)oy * p->ow + ox] = (float)(s / w.divisor);
            }
    }
}

void avgpool2d_backward_ref(const pool2d_params *p, float *din /* (N,C,H,W) */, const float *dout /* (N,C,OH,OW) */,
                            int nthreads) {
    const int planes = p->n * p->c;
    const size_t ihw = (size_t)p->h * p->w, ohw = (size_t)p->oh * p->ow;
#pragma omp parallel for num_threads(pool_threads(p, nthreads)) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = din + (size_t)pl * ihw;
        const float *dy = dout + (size_t)pl * ohw;
        memset(dx, 0, ihw * sizeof(float));
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                const pool_window w = avg_window(p, oy, ox);
                if (w.ys >= w.ye || w.xs >= w.xe) continue;
                const float g = dy[(size_t)oy * p->ow + ox] / w.divisor;
                for (int iy = w.ys; iy < w.ye; iy++)
                    for (int ix = w.xs; ix < w.xe; ix++) dx[(size_t)iy * p->w + ix] += g;
            }
    }
}

/* ------------------------------------------------------- global max pooling */

void global_maxpool_forward_ref(int n, int c, int spatial, float *out /* (N,C) */, int32_t *argmax /* (N,C) */,
                                const float *in /* (N,C,S) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * s;
        float best = -INFINITY;
        int32_t bi = 0;
        for (size_t i = 0; i < s; i++)
            if (x[i] > best || isnan(x[i])) { /* as max pooling: first maximum, NaN propagates */
                best = x[i];
                bi = (int32_t)i;
            }
        out[pl] = best;
        if (argmax) argmax[pl] = bi;
    }
}

void global_maxpool_backward_ref(int n, int c, int spatial, float *din /* (N,C,S) */, const float *dout /* (N,C) */,
                                 const int32_t *argmax /* (N,C) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    memset(din, 0, planes * s * sizeof(float));
    for (size_t pl = 0; pl < planes; pl++) din[pl * s + (size_t)argmax[pl]] = dout[pl];
}

/* ---------------------------------------------------------- constant time */

/* The inference forwards above without a branch on the values: windows and taps
 * depend on the shape only; the running maximum is a select by mask (the same first
 * maximum and NaN propagation, bit for bit, and no argmax); the average multiplies
 * by the reciprocal of the divisor, a shape constant, instead of dividing a value
 * (within an ulp of the reference: both round a double to float). */
void maxpool2d_forward_ct(const pool2d_params *p, float *out /* (N,C,OH,OW) */, const float *in /* (N,C,H,W) */,
                          int nthreads) {
    const int planes = p->n * p->c;
    const size_t ihw = (size_t)p->h * p->w, ohw = (size_t)p->oh * p->ow;
#pragma omp parallel for num_threads(pool_threads(p, nthreads)) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * ihw;
        float *y = out + (size_t)pl * ohw;
        for (int oy = 0; oy < p->oh; oy++) {
            const int y0 = oy * p->sh - p->ph;
            int ky0, ky1;
            window_taps(y0, p->kh, p->dh, p->h, &ky0, &ky1);
            for (int ox = 0; ox < p->ow; ox++) {
                const int x0 = ox * p->sw - p->pw;
                int kx0, kx1;
                window_taps(x0, p->kw, p->dw, p->w, &kx0, &kx1);
                float best = -INFINITY;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *row = x + (size_t)(y0 + ky * p->dh) * p->w;
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float v = row[x0 + kx * p->dw];
                        best = ct_self(ct_mask32(v > best) | ct_mask32(v != v), v, best);
                    }
                }
                y[(size_t)oy * p->ow + ox] = best;
            }
        }
    }
}

void avgpool2d_forward_ct(const pool2d_params *p, float *out /* (N,C,OH,OW) */, const float *in /* (N,C,H,W) */,
                          int nthreads) {
    const int planes = p->n * p->c;
    const size_t ihw = (size_t)p->h * p->w, ohw = (size_t)p->oh * p->ow;
#pragma omp parallel for num_threads(pool_threads(p, nthreads)) schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * ihw;
        float *y = out + (size_t)pl * ohw;
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                const pool_window w = avg_window(p, oy, ox);
                double s = 0.0;
                if (w.ys >= w.ye || w.xs >= w.xe) { /* a shape fact, not a value */
                    y[(size_t)oy * p->ow + ox] = 0.0f;
                    continue;
                }
                for (int iy = w.ys; iy < w.ye; iy++)
                    for (int ix = w.xs; ix < w.xe; ix++) s += x[(size_t)iy * p->w + ix];
                y[(size_t)oy * p->ow + ox] = (float)(s * (1.0 / w.divisor));
            }
    }
}

void global_maxpool_forward_ct(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * s;
        float best = -INFINITY;
        for (size_t i = 0; i < s; i++) best = ct_self(ct_mask32(x[i] > best) | ct_mask32(x[i] != x[i]), x[i], best);
        out[pl] = best;
    }
}
