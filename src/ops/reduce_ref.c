/* Mean over some axes of each sample (ONNX ReduceMean with keepdims=1). One output
 * element at a time: its kept coordinates give a base offset, and an odometer walks
 * the reduced axes in row-major order, summing in double. Every output is summed in
 * the same order whatever the thread count, and nothing branches on values, so the
 * same kernel serves constant-time inference. */
#include "nd_index.h"
#include "ops.h"

#define REDUCE_PAR_MIN 4096 /* output elements below which one thread runs */

typedef struct reduce_geom {
    int ndim;
    int64_t rdims[TS_MAX_DIMS], rstride[TS_MAX_DIMS]; /* reduced axes: sizes and input strides */
    int nr;
    int64_t kdims[TS_MAX_DIMS], kstride[TS_MAX_DIMS]; /* kept axes */
    int nk;
    int64_t per_in, per_out, count; /* elements per sample in and out; elements per mean */
} reduce_geom;

static reduce_geom reduce_geom_of(int ndim, const int64_t *dims, unsigned axes_mask) {
    reduce_geom g = {.ndim = ndim, .count = 1, .per_out = 1};
    int64_t strides[TS_MAX_DIMS] = {0};
    nd_contiguous_strides(ndim, dims, strides);
    g.per_in = ndim > 0 ? strides[0] * dims[0] : 1;
    for (int d = 0; d < ndim; d++) {
        if (axes_mask >> d & 1u) {
            g.rdims[g.nr] = dims[d];
            g.rstride[g.nr++] = strides[d];
            g.count *= dims[d];
        } else {
            g.kdims[g.nk] = dims[d];
            g.kstride[g.nk++] = strides[d];
            g.per_out *= dims[d];
        }
    }
    return g;
}

/* Input offset of output element o within its sample. */
static int64_t reduce_base(const reduce_geom *g, int64_t o) {
    int64_t off = 0;
    for (int d = g->nk - 1; d >= 0; d--) {
        off += (o % g->kdims[d]) * g->kstride[d];
        o /= g->kdims[d];
    }
    return off;
}

/* Calls body(offset) for each reduced element of one output, in row-major order. */
#define REDUCE_WALK(g, base, body)                                                   \
    do {                                                                             \
        int64_t idx_[TS_MAX_DIMS] = {0}, off_ = (base);                              \
        for (int64_t r_ = 0; r_ < (g)->count; r_++) {                                \
            body;                                                                    \
            for (int d_ = (g)->nr - 1; d_ >= 0; d_--) {                              \
                off_ += (g)->rstride[d_];                                            \
                if (++idx_[d_] < (g)->rdims[d_]) break;                              \
                off_ -= (g)->rstride[d_] * (g)->rdims[d_];                           \
                idx_[d_] = 0;                                                        \
            }                                                                        \
        }                                                                            \
    } while (0)

void reducemean_forward_ref(int n, int ndim, const int64_t *dims /* (ndim) */, unsigned axes_mask,
                            float *out /* (N, dims with the reduced axes 1) */, const float *in /* (N, dims) */,
                            int nthreads) {
    const reduce_geom g = reduce_geom_of(ndim, dims, axes_mask);
    const int64_t total = (int64_t)n * g.per_out;
    const double inv = 1.0 / (double)g.count;
    const int nt = total < REDUCE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
    /* the reduced axes the last ones (LayerNorm's): each mean a contiguous run */
    const int trailing = axes_mask == ((1u << ndim) - 1u) - ((1u << (ndim - g.nr)) - 1u);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t o = 0; o < total; o++) {
        if (trailing) {
            out[o] = (float)(sum_f64(in + o * g.count, (size_t)g.count) * inv);
            continue;
        }
        const float *x = in + (o / g.per_out) * g.per_in;
        double sum = 0.0;
        REDUCE_WALK(&g, reduce_base(&g, o % g.per_out), sum += (double)x[off_]);
        out[o] = (float)(sum * inv);
    }
}

void reducemean_backward_ref(int n, int ndim, const int64_t *dims, unsigned axes_mask, float *din /* (N, dims) */,
                             const float *dout /* (N, dims with the reduced axes 1) */, int nthreads) {
    const reduce_geom g = reduce_geom_of(ndim, dims, axes_mask);
    const int64_t total = (int64_t)n * g.per_out;
    const float inv = (float)(1.0 / (double)g.count);
    const int nt = total < REDUCE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t o = 0; o < total; o++) {
        float *dx = din + (o / g.per_out) * g.per_in;
        const float v = dout[o] * inv;
        REDUCE_WALK(&g, reduce_base(&g, o % g.per_out), dx[off_] = v);
    }
}
