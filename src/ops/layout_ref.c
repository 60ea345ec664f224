/* Reference kernels that move values without arithmetic: a strided gather (transpose),
 * NCHW <-> nChw16c, and ONNX Pad. */
#include "nd_index.h"

#include <string.h>

/* Threads only where the copy is large enough to pay for them. */
#define LAYOUT_PARALLEL_MIN 65536

void strided_copy_ref(int rank, const int64_t *dims /* (rank) */, float *out /* (dims) */, const float *in,
                      const int64_t *in_strides /* (rank) */, int nthreads) {
    int64_t d[OPS_MAX_RANK], so[OPS_MAX_RANK], si[OPS_MAX_RANK];
    memcpy(d, dims, (size_t)rank * sizeof *d);
    memcpy(si, in_strides, (size_t)rank * sizeof *si);
    nd_contiguous_strides(rank, d, so);
    int64_t *strides[2] = {so, si};
    const int r = nd_simplify(rank, d, 2, strides);
    const int64_t inner = d[r - 1], step = si[r - 1];
    int64_t rows = 1;
    for (int k = 0; k < r - 1; k++) rows *= d[k];
#pragma omp parallel for num_threads(nthreads) schedule(static) if (rows * inner >= LAYOUT_PARALLEL_MIN && rows > 1)
    for (int64_t row = 0; row < rows; row++) {
        float *dst = out + row * inner;
        const float *src = in + nd_row_offset(r, d, si, row);
        if (step == 1) memcpy(dst, src, (size_t)inner * sizeof(float));
        else
            for (int64_t i = 0; i < inner; i++) dst[i] = src[i * step];
    }
}

void nchw_to_blocked16(int64_t n, int64_t c, int64_t s, float *dst, const float *src, int nthreads) {
    const int64_t cb = (c + 15) / 16, planes = n * cb;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (planes * s * 16 >= LAYOUT_PARALLEL_MIN)
    for (int64_t q = 0; q < planes; q++) {
        const int64_t c0 = q % cb * 16, real = c - c0 < 16 ? c - c0 : 16; /* the block's channels */
        const float *x = src + (q / cb * c + c0) * s;
        float *y = dst + q * s * 16;
        if (real == 16) /* a constant trip count for the full blocks */
            for (int64_t k = 0; k < s; k++)
                for (int j = 0; j < 16; j++) y[k * 16 + j] = x[j * s + k];
        else
            for (int64_t k = 0; k < s; k++)
                for (int j = 0; j < 16; j++) y[k * 16 + j] = j < real ? x[j * s + k] : 0.0f;
    }
}

void blocked16_to_nchw(int64_t n, int64_t c, int64_t s, float *dst, const float *src, int nthreads) {
    const int64_t cb = (c + 15) / 16, planes = n * cb;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (planes * s * 16 >= LAYOUT_PARALLEL_MIN)
    for (int64_t q = 0; q < planes; q++) {
        const int64_t c0 = q % cb * 16, real = c - c0 < 16 ? c - c0 : 16;
        const float *x = src + q * s * 16;
        float *y = dst + (q / cb * c + c0) * s;
        if (real == 16)
            for (int64_t k = 0; k < s; k++)
                for (int j = 0; j < 16; j++) y[j * s + k] = x[k * 16 + j];
        else
            for (int64_t k = 0; k < s; k++)
                for (int j = 0; j < real; j++) y[j * s + k] = x[k * 16 + j];
    }
}

/* ------------------------------------------------------------------- pad */

/* One axis of a pad: the input keeps [lo, lo + len) after cropping, then gets `before`
 * values in front; the output has `out` values. */
typedef struct pad_axis {
    int64_t lo, len, before, out;
} pad_axis;

static pad_axis pad_axis_of(int64_t dim, int begin, int end) {
    pad_axis a;
    a.lo = begin < 0 ? -(int64_t)begin : 0;
    a.len = dim - a.lo - (end < 0 ? -(int64_t)end : 0);
    a.before = begin > 0 ? begin : 0;
    a.out = dim + begin + end;
    return a;
}

/* The input index that output index o reads on this axis, or -1 for the constant. */
static int64_t pad_source(const pad_axis *a, pad_mode mode, int64_t o) {
    int64_t j = o - a->before; /* relative to the kept part */
    if (j >= 0 && j < a->len) return a->lo + j;
    switch (mode) {
    case PAD_EDGE: return a->lo + (j < 0 ? 0 : a->len - 1);
    case PAD_REFLECT: {
        if (a->len == 1) return a->lo;
        const int64_t period = 2 * (a->len - 1);
        int64_t r = j % period;
        if (r < 0) r += period;
        if (r >= a->len) r = period - r;
        return a->lo + r;
    }
    default: return -1;
    }
}

typedef struct pad_plan {
    int ndim;
    pad_axis ax[TS_MAX_DIMS];
    int64_t in_stride[TS_MAX_DIMS];
    int64_t in_numel, out_numel, rows; /* rows: output rows of one sample (all axes but the last) */
} pad_plan;

static pad_plan pad_plan_of(int ndim, const int64_t *dims, const int *pads) {
    pad_plan p;
    memset(&p, 0, sizeof p);
    p.ndim = ndim;
    nd_contiguous_strides(ndim, dims, p.in_stride);
    p.in_numel = p.out_numel = p.rows = 1;
    for (int d = 0; d < ndim; d++) {
        p.ax[d] = pad_axis_of(dims[d], pads[d], pads[ndim + d]);
        p.in_numel *= dims[d];
        p.out_numel *= p.ax[d].out;
        if (d < ndim - 1) p.rows *= p.ax[d].out;
    }
    return p;
}

/* Input offset (within a sample) of output row `row`'s kept part, or -1 when the row
 * lies in a constant pad. */
static int64_t pad_row_source(const pad_plan *p, pad_mode mode, int64_t row) {
    int64_t off = 0;
    for (int d = p->ndim - 2; d >= 0; d--) {
        const int64_t o = row % p->ax[d].out;
        row /= p->ax[d].out;
        const int64_t s = pad_source(&p->ax[d], mode, o);
        if (s < 0) return -1;
        off += s * p->in_stride[d];
    }
    return off;
}

void pad_forward_ref(int n, int ndim, const int64_t *dims /* (ndim) */, const int *pads /* (2*ndim) */, pad_mode mode,
                     float value, float *out /* (N, padded dims) */, const float *in /* (N,dims) */, int nthreads) {
    const pad_plan p = pad_plan_of(ndim, dims, pads);
    const pad_axis *last = &p.ax[ndim - 1];
    const int64_t total = (int64_t)n * p.rows, width = last->out;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (total * width >= LAYOUT_PARALLEL_MIN && total > 1)
    for (int64_t t = 0; t < total; t++) {
        const int64_t s = t / p.rows;
        float *dst = out + t * width;
        const int64_t off = pad_row_source(&p, mode, t % p.rows);
        if (off < 0) {
            for (int64_t o = 0; o < width; o++) dst[o] = value;
            continue;
        }
        const float *src = in + s * p.in_numel + off;
        for (int64_t o = 0; o < last->before; o++) {
            const int64_t i = pad_source(last, mode, o);
            dst[o] = i < 0 ? value : src[i];
        }
        memcpy(dst + last->before, src + last->lo, (size_t)last->len * sizeof(float));
        for (int64_t o = last->before + last->len; o < width; o++) {
            const int64_t i = pad_source(last, mode, o);
            dst[o] = i < 0 ? value : src[i];
        }
    }
}

void pad_backward_ref(int n, int ndim, const int64_t *dims, const int *pads, pad_mode mode, float *din /* (N,dims) */,
                      const float *dout /* (N, padded dims) */, int nthreads) {
    const pad_plan p = pad_plan_of(ndim, dims, pads);
    const pad_axis *last = &p.ax[ndim - 1];
    const int64_t width = last->out;
    /* Samples are independent; inside one, rows add up in order (deterministic). */
#pragma omp parallel for num_threads(nthreads) schedule(static) if ((int64_t)n * p.out_numel >= LAYOUT_PARALLEL_MIN && n > 1)
    for (int s = 0; s < n; s++) {
        float *dx = din + (int64_t)s * p.in_numel;
        memset(dx, 0, (size_t)p.in_numel * sizeof(float));
        for (int64_t row = 0; row < p.rows; row++) {
            const int64_t off = pad_row_source(&p, mode, row);
            if (off < 0) continue;
            const float *g = dout + ((int64_t)s * p.rows + row) * width;
            float *d = dx + off;
            for (int64_t o = 0; o < last->before; o++) {
                const int64_t i = pad_source(last, mode, o);
                if (i >= 0) d[i] += g[o];
            }
            for (int64_t j = 0; j < last->len; j++) d[last->lo + j] += g[last->before + j];
            for (int64_t o = last->before + last->len; o < width; o++) {
                const int64_t i = pad_source(last, mode, o);
                if (i >= 0) d[i] += g[o];
            }
        }
    }
}
