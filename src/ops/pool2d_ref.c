/* Reference max and average pooling with PyTorch's MaxPool2d/AvgPool2d semantics:
 * output size, ceil_mode, padding and the average's divisor are computed exactly as
 * ATen's CPU kernels do. Loops are threaded over (n,c) planes; each plane belongs to
 * one thread, so results do not depend on the thread count. */
#include "ops.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define POOL_PAR_MIN 32768 /* work below which a loop runs on one thread */

/* ATen pooling_output_shape (dilation 1). */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int ceil_mode) {
    const int64_t num = in + 2 * pad - k + (ceil_mode ? stride - 1 : 0);
    /* floor division: num may be negative when the kernel exceeds the padded input */
    int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
    /* ceil_mode: the last window must start inside the input or left padding */
    if (ceil_mode && (out - 1) * stride >= in + pad) out--;
    return out;
}

int pool2d_params_finish(pool2d_params *p) {
    if (!p) return 0;
    if (p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0) return 0;
    if (p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->ph < 0 || p->pw < 0) return 0;
    /* PyTorch: "pad should be at most half of effective kernel size" */
    if (p->ph > p->kh / 2 || p->pw > p->kw / 2) return 0;
    const int64_t oh = pool_out_size(p->h, p->kh, p->ph, p->sh, p->ceil_mode);
    const int64_t ow = pool_out_size(p->w, p->kw, p->pw, p->sw, p->ceil_mode);
    if (oh < 1 || ow < 1 || oh > INT_MAX || ow > INT_MAX) return 0;
    /* argmax stores h*W+w in int32; tensors are indexed with size_t */
    if ((int64_t)p->h * p->w > INT32_MAX || (int64_t)p->n * p->c > INT_MAX) return 0;
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
            const int ys = y0 < 0 ? 0 : y0, ye = y0 + p->kh < p->h ? y0 + p->kh : p->h;
            for (int ox = 0; ox < p->ow; ox++) {
                const int x0 = ox * p->sw - p->pw;
                const int xs = x0 < 0 ? 0 : x0, xe = x0 + p->kw < p->w ? x0 + p->kw : p->w;
                /* as ATen: start at -inf with the window's first pixel as index; the
                 * first maximum wins and NaN propagates */
                float best = -INFINITY;
                int32_t bi = (int32_t)(ys * p->w + xs);
                for (int iy = ys; iy < ye; iy++)
                    for (int ix = xs; ix < xe; ix++) {
                        const float v = x[(size_t)iy * p->w + ix];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = (int32_t)(iy * p->w + ix);
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
        for (size_t i = 0; i < ohw; i++) dx[am[i]] += dy[i]; /* overlapping windows add up */
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
    int ye = ys + p->kh < p->h + p->ph ? ys + p->kh : p->h + p->ph;
    int xe = xs + p->kw < p->w + p->pw ? xs + p->kw : p->w + p->pw;
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
