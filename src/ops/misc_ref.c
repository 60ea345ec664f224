/* Reference kernels without a oneDNN counterpart: global average pooling, channel
 * concatenation and dropout. */
#include "ops.h"

#include <string.h>

/* Sum of s floats in double, in a fixed order: eight interleaved partial sums (so the
 * additions do not wait on each other and vectorize), combined pairwise. */
double sum_f64(const float *x, size_t s) {
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 8 <= s; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + (size_t)j];
    for (int j = 0; i < s; i++, j++) acc[j] += (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void global_avgpool_forward_ref(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    for (size_t pl = 0; pl < planes; pl++) /* double: the mean is within one rounding */
        out[pl] = s ? (float)(sum_f64(in + pl * s, s) / (double)s) : 0.0f;
}

/* The same with the mean as sum times 1/S (a shape constant) instead of a division of
 * the value: within an ulp of the reference. */
void global_avgpool_forward_ct(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    const double inv = s ? 1.0 / (double)s : 0.0;
    for (size_t pl = 0; pl < planes; pl++) out[pl] = (float)(sum_f64(in + pl * s, s) * inv);
}

/* Channels in blocks of 64, each block's sums in double over the positions in order:
 * contiguous reads, and a fixed order. */
void global_avgpool_forward_nhwc(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,S,C) */) {
    enum { BLOCK = 64 };
    const size_t s = (size_t)spatial, cs = (size_t)c;
    for (int b = 0; b < n; b++)
        for (size_t c0 = 0; c0 < cs; c0 += BLOCK) {
            const size_t len = cs - c0 < BLOCK ? cs - c0 : BLOCK;
            double acc[BLOCK] = {0.0};
            const float *x = in + (size_t)b * s * cs + c0;
            for (size_t i = 0; i < s; i++, x += cs)
                for (size_t j = 0; j < len; j++) acc[j] += (double)x[j];
            for (size_t j = 0; j < len; j++) out[(size_t)b * cs + c0 + j] = s ? (float)(acc[j] / (double)s) : 0.0f;
        }
}

void global_avgpool_backward_ref(int n, int c, int spatial, float *din /* (N,C,S) */, const float *dout /* (N,C) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    for (size_t pl = 0; pl < planes; pl++) {
        const float g = (float)(dout[pl] / (double)s);
        float *dx = din + pl * s;
        for (size_t i = 0; i < s; i++) dx[i] = g;
    }
}

/* On nChw16c, (N, ceil(C/16), S, 16): each block's 16 sums in double over the
 * positions in order, as global_avgpool_forward_nhwc. The padded channels of the last
 * block are skipped forward and written as zeros backward. */
void global_avgpool_forward_blocked16(int n, int c, int spatial, float *out, const float *in) {
    const int cb = (c + 15) / 16;
    const size_t s = (size_t)spatial;
    for (int b = 0; b < n; b++)
        for (int k = 0; k < cb; k++) {
            const int real = c - 16 * k < 16 ? c - 16 * k : 16;
            double acc[16] = {0.0};
            const float *x = in + ((size_t)b * (size_t)cb + (size_t)k) * s * 16;
            for (size_t i = 0; i < s; i++, x += 16)
                for (int j = 0; j < 16; j++) acc[j] += (double)x[j];
            for (int j = 0; j < real; j++) out[(size_t)b * (size_t)c + (size_t)(16 * k + j)] = s ? (float)(acc[j] / (double)s) : 0.0f;
        }
}

void global_avgpool_backward_blocked16(int n, int c, int spatial, float *din, const float *dout) {
    const int cb = (c + 15) / 16;
    const size_t s = (size_t)spatial;
    for (int b = 0; b < n; b++)
        for (int k = 0; k < cb; k++) {
            const int real = c - 16 * k < 16 ? c - 16 * k : 16;
            float g[16] = {0.0f};
            for (int j = 0; j < real; j++) g[j] = (float)(dout[(size_t)b * (size_t)c + (size_t)(16 * k + j)] / (double)s);
            float *dx = din + ((size_t)b * (size_t)cb + (size_t)k) * s * 16;
            for (size_t i = 0; i < s; i++, dx += 16)
                for (int j = 0; j < 16; j++) dx[j] = g[j];
        }
}

void concat_forward_ref(int n, int count, const size_t *sizes /* (count) */, float *out /* (N, sum sizes) */,
                        const float *const *ins /* count tensors, (N, sizes[i]) */) {
    size_t row = 0;
    for (int i = 0; i < count; i++) row += sizes[i];
    for (int r = 0; r < n; r++) {
        float *dst = out + (size_t)r * row;
        for (int i = 0; i < count; i++) {
            memcpy(dst, ins[i] + (size_t)r * sizes[i], sizes[i] * sizeof(float));
            dst += sizes[i];
        }
    }
}

void concat_forward_par(int n, int count, const size_t *sizes, float *out, const float *const *ins, int nthreads) {
    size_t row = 0;
    for (int i = 0; i < count; i++) row += sizes[i];
    const size_t total = (size_t)n * row;
    /* below about 64 KB a second thread costs more than it copies */
    const int parts = total < 16384 || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(parts) schedule(static)
    for (int part = 0; part < parts; part++) {
        size_t at = total / (size_t)parts * (size_t)part, end = total / (size_t)parts * (size_t)(part + 1);
        if (part == parts - 1) end = total;
        if (at >= end) continue;
        size_t r = at / row, off = at % row, base = 0; /* row r, offset off in it, input i from base */
        int i = 0;
        while (off >= base + sizes[i]) base += sizes[i++];
        while (at < end) {
            size_t len = base + sizes[i] - off;
            if (len > end - at) len = end - at;
            memcpy(out + at, ins[i] + r * sizes[i] + (off - base), len * sizeof(float));
            at += len;
            off += len;
            if (off == base + sizes[i]) { /* the next input, or the next row */
                base += sizes[i++];
                if (i == count) i = 0, base = 0, off = 0, r++;
            }
        }
    }
}

void concat_backward_ref(int n, int count, const size_t *sizes /* (count) */,
                         float *const *dins /* count tensors, (N, sizes[i]) */, const float *dout /* (N, sum sizes) */) {
    size_t row = 0;
    for (int i = 0; i < count; i++) row += sizes[i];
    for (int r = 0; r < n; r++) {
        const float *src = dout + (size_t)r * row;
        for (int i = 0; i < count; i++) {
            memcpy(dins[i] + (size_t)r * sizes[i], src, sizes[i] * sizeof(float));
            src += sizes[i];
        }
    }
}

/* Also the backward: din = dout * mask. */
void dropout_apply_ref(size_t count, float *out /* (count) */, const float *in /* (count) */,
                       const float *mask /* (count), 0 or 1/(1-p) */) {
    for (size_t i = 0; i < count; i++) out[i] = in[i] * mask[i];
}
