/* Resizing H and W of each plane (ONNX Resize nearest/linear, PyTorch's interpolate
 * nearest/bilinear). Where each output index reads is a function of the shapes and
 * attributes alone (resize_taps, computed once per call into the caller's scratch),
 * so the forward gathers from fixed addresses with fixed weights: the same kernel
 * serves constant-time inference. Coordinates are computed in double: t / scale when
 * the scale is given (as ONNX's reference divides by the float scales value), else
 * t * in / out, so that a tie (x.5 for the rounding modes, a whole number for floor
 * and ceil) is seen exactly when the true coordinate is one. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define RESIZE_PAR_MIN 32768 /* output values below which one thread runs */

/* t / s, with s the scale or out_len / in_len */
static double by_scale(double t, int in_len, int out_len, float scale) {
    return scale > 0.0f ? t / (double)scale : t * in_len / out_len;
}

/* where output index o reads along the axis (ONNX's coordinate_transformation_mode).
 * The resized length is in * scale when the scale is given, not floored (ONNX's
 * reference: align_corners shrinking 4 by 0.6 divides by 2.4 - 1), else out_len. */
static double resize_source(resize_coord coord, int o, int in_len, int out_len, float scale) {
    const double len = scale > 0.0f ? (double)in_len * scale : out_len;
    switch (coord) {
    case RESIZE_ASYMMETRIC: return by_scale(o, in_len, out_len, scale);
    case RESIZE_ALIGN_CORNERS: return len != 1.0 ? (double)o * (in_len - 1) / (len - 1.0) : 0.0;
    case RESIZE_PYTORCH_HALF_PIXEL:
        if (len == 1.0) return 0.0; /* ONNX's -0.5 reads the same after rounding and clamping */
        return by_scale(o + 0.5, in_len, out_len, scale) - 0.5;
    case RESIZE_TF_HALF_PIXEL_FOR_NN: return by_scale(o + 0.5, in_len, out_len, scale);
    case RESIZE_HALF_PIXEL:
    default: return by_scale(o + 0.5, in_len, out_len, scale) - 0.5;
    }
}

/* ONNX's nearest_mode; a tie is a coordinate exactly halfway */
static double resize_round(resize_nearest nearest, double x) {
    const double f = floor(x);
    switch (nearest) {
    case RESIZE_FLOOR: return f;
    case RESIZE_CEIL: return ceil(x);
    case RESIZE_ROUND_PREFER_CEIL: return x - f == 0.5 ? f + 1.0 : round(x);
    case RESIZE_ROUND_PREFER_FLOOR:
    default: return x - f == 0.5 ? f : round(x);
    }
}

static int clamp_index(double x, int len) { return x <= 0.0 ? 0 : x >= len - 1 ? len - 1 : (int)x; }

void resize_taps(resize_mode mode, resize_coord coord, resize_nearest nearest, int in_len, int out_len, float scale,
                 resize_tap *taps /* (out_len) */) {
    for (int o = 0; o < out_len; o++) {
        const double x = resize_source(coord, o, in_len, out_len, scale);
        resize_tap *t = &taps[o];
        if (mode == RESIZE_NEAREST) {
            t->i0 = t->i1 = clamp_index(resize_round(nearest, x), in_len);
            t->w0 = 1.0f;
            t->w1 = 0.0f;
            continue;
        }
        const double c = x <= 0.0 ? 0.0 : x >= in_len - 1 ? in_len - 1 : x;
        t->i0 = (int)c;
        t->i1 = t->i0 + 1 < in_len ? t->i0 + 1 : t->i0;
        t->w1 = (float)(c - t->i0);
        t->w0 = 1.0f - t->w1;
    }
}

void resize_forward_ref(resize_mode mode, int64_t planes, int ih, int iw, int oh, int ow,
                        const resize_tap *ty /* (oh) */, const resize_tap *tx /* (ow) */,
                        float *out /* (planes,OH,OW) */, const float *in /* (planes,H,W) */, int nthreads) {
    const int64_t isz = (int64_t)ih * iw, osz = (int64_t)oh * ow;
    const int nt = planes * osz < RESIZE_PAR_MIN || planes < 2 || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        const float *src = in + p * isz;
        for (int y = 0; y < oh; y++) {
            const float *r0 = src + (int64_t)ty[y].i0 * iw, *r1 = src + (int64_t)ty[y].i1 * iw;
            float *dst = out + p * osz + (int64_t)y * ow;
            if (mode == RESIZE_NEAREST) {
                for (int x = 0; x < ow; x++) dst[x] = r0[tx[x].i0];
                continue;
            }
            const float h0 = ty[y].w0, h1 = ty[y].w1;
            for (int x = 0; x < ow; x++) {
                const resize_tap t = tx[x];
                dst[x] = h0 * (t.w0 * r0[t.i0] + t.w1 * r0[t.i1]) + h1 * (t.w0 * r1[t.i0] + t.w1 * r1[t.i1]);
            }
        }
    }
}

void resize_backward_ref(resize_mode mode, int64_t planes, int ih, int iw, int oh, int ow,
                         const resize_tap *ty /* (oh) */, const resize_tap *tx /* (ow) */,
                         float *din /* (planes,H,W) */, const float *dout /* (planes,OH,OW) */, int nthreads) {
    const int64_t isz = (int64_t)ih * iw, osz = (int64_t)oh * ow;
    const int nt = planes * osz < RESIZE_PAR_MIN || planes < 2 || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *g = din + p * isz;
        memset(g, 0, (size_t)isz * sizeof *g);
        for (int y = 0; y < oh; y++) {
            float *g0 = g + (int64_t)ty[y].i0 * iw, *g1 = g + (int64_t)ty[y].i1 * iw;
            const float *d = dout + p * osz + (int64_t)y * ow;
            if (mode == RESIZE_NEAREST) {
                for (int x = 0; x < ow; x++) g0[tx[x].i0] += d[x];
                continue;
            }
            const float h0 = ty[y].w0, h1 = ty[y].w1;
            for (int x = 0; x < ow; x++) {
                const resize_tap t = tx[x];
                g0[t.i0] += h0 * t.w0 * d[x];
                g0[t.i1] += h0 * t.w1 * d[x];
                g1[t.i0] += h1 * t.w0 * d[x];
                g1[t.i1] += h1 * t.w1 * d[x];
            }
        }
    }
}
