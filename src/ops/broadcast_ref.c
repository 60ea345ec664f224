/* Reference elementwise binary operations with numpy broadcasting (ONNX Add, Sub,
 * Mul, Div) and their gradients, reduced over the broadcast axes. */
#include "ct_math.h"
#include "nd_index.h"

#include <string.h>

#define BINARY_PARALLEL_MIN 65536

/* One innermost run: out[i] = a[i*sa] op b[i*sb]. The common stride patterns get
 * their own loops so the compiler can vectorize them. */
#define BINARY_RUN(EXPR)                                                                         \
    do {                                                                                         \
        if (sa == 1 && sb == 1)                                                                  \
            for (int64_t i = 0; i < len; i++) {                                                  \
                const float x = a[i], y = b[i];                                                  \
                out[i] = (EXPR);                                                                 \
            }                                                                                    \
        else if (sa == 1 && sb == 0) {                                                           \
            const float y = b[0];                                                                \
            for (int64_t i = 0; i < len; i++) {                                                  \
                const float x = a[i];                                                            \
                out[i] = (EXPR);                                                                 \
            }                                                                                    \
        } else if (sa == 0 && sb == 1) {                                                         \
            const float x = a[0];                                                                \
            for (int64_t i = 0; i < len; i++) {                                                  \
                const float y = b[i];                                                            \
                out[i] = (EXPR);                                                                 \
            }                                                                                    \
        } else                                                                                   \
            for (int64_t i = 0; i < len; i++) {                                                  \
                const float x = a[i * sa], y = b[i * sb];                                        \
                out[i] = (EXPR);                                                                 \
            }                                                                                    \
    } while (0)

/* x / y without dividing a value (constant time): x times 1/y from Newton steps, in
 * double, rounded once; the same as the float quotient but for ties within 1e-15. */
static inline float ct_div(float x, float y) { return (float)((double)x * ct_recip((double)y)); }

/* ct: division by ct_div (add, sub and mul are branch-free as they are) */
static void binary_run(binary_op op, int ct, int64_t len, float *restrict out, const float *a, int64_t sa,
                       const float *b, int64_t sb) {
    switch (op) {
    case BINARY_ADD: BINARY_RUN(x + y); break;
    case BINARY_SUB: BINARY_RUN(x - y); break;
    case BINARY_MUL: BINARY_RUN(x * y); break;
    case BINARY_DIV:
        if (ct) BINARY_RUN(ct_div(x, y));
        else BINARY_RUN(x / y);
        break;
    }
}

static void binary_forward(binary_op op, int ct, int rank, const int64_t *dims, float *out, const float *a,
                           const int64_t *a_strides, const float *b, const int64_t *b_strides, int nthreads) {
    int64_t d[OPS_MAX_RANK], so[OPS_MAX_RANK], sa[OPS_MAX_RANK], sb[OPS_MAX_RANK];
    memcpy(d, dims, (size_t)rank * sizeof *d);
    memcpy(sa, a_strides, (size_t)rank * sizeof *sa);
    memcpy(sb, b_strides, (size_t)rank * sizeof *sb);
    nd_contiguous_strides(rank, d, so);
    int64_t *strides[3] = {so, sa, sb};
    const int r = nd_simplify(rank, d, 3, strides);
    const int64_t len = d[r - 1];
    int64_t rows = 1;
    for (int k = 0; k < r - 1; k++) rows *= d[k];
#pragma omp parallel for num_threads(nthreads) schedule(static) if (rows * len >= BINARY_PARALLEL_MIN && rows > 1)
    for (int64_t row = 0; row < rows; row++)
        binary_run(op, ct, len, out + row * len, a + nd_row_offset(r, d, sa, row), sa[r - 1],
                   b + nd_row_offset(r, d, sb, row), sb[r - 1]);
}

void binary_forward_ref(binary_op op, int rank, const int64_t *dims /* (rank) */, float *out /* (dims) */,
                        const float *a, const int64_t *a_strides /* (rank) */, const float *b,
                        const int64_t *b_strides /* (rank) */, int nthreads) {
    binary_forward(op, 0, rank, dims, out, a, a_strides, b, b_strides, nthreads);
}

void binary_forward_ct(binary_op op, int rank, const int64_t *dims /* (rank) */, float *out /* (dims) */,
                       const float *a, const int64_t *a_strides /* (rank) */, const float *b,
                       const int64_t *b_strides /* (rank) */, int nthreads) {
    binary_forward(op, 1, rank, dims, out, a, a_strides, b, b_strides, nthreads);
}

/* d out / d a (which = 0) or d out / d b (which = 1) at one element, times g. */
static inline float binary_grad(binary_op op, int which, float g, float x, float y) {
    switch (op) {
    case BINARY_ADD: return g;
    case BINARY_SUB: return which ? -g : g;
    case BINARY_MUL: return which ? g * x : g * y;
    case BINARY_DIV: return which ? -g * x / (y * y) : g / y;
    }
    return 0.0f;
}

/* Adds one operand's gradient (which: 0 = a, 1 = b) over the whole walk into dx,
 * which is laid out as that operand (its strides). */
static void binary_grad_walk(binary_op op, int which, int r, const int64_t *d, float *dx,
                             const int64_t *sx, const float *dout, const float *a, const int64_t *sa, const float *b,
                             const int64_t *sb, int nthreads) {
    const int64_t len = d[r - 1], lx = sx[r - 1], la = sa[r - 1], lb = sb[r - 1];
    /* Axis 0 is split across threads only when it owns its slice of dx (nonzero
     * stride); every element of dx is then summed by one thread, in walk order. */
    const int64_t outer = r >= 2 ? d[0] : 1;
    int64_t per = 1; /* rows under one index of axis 0 */
    for (int k = 1; k < r - 1; k++) per *= d[k];
    const int owned = r >= 2 && sx[0] != 0;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (owned && outer > 1 && outer * per * len >= BINARY_PARALLEL_MIN)
    for (int64_t i0 = 0; i0 < outer; i0++)
        for (int64_t rr = 0; rr < per; rr++) {
            const int64_t row = r >= 2 ? i0 * per + rr : 0;
            const float *g = dout + row * len;
            const float *x = a + nd_row_offset(r, d, sa, row), *y = b + nd_row_offset(r, d, sb, row);
            float *dst = dx + nd_row_offset(r, d, sx, row);
            if (lx == 0) { /* the run reduces into one element: sum in double */
                double acc = 0.0;
                for (int64_t i = 0; i < len; i++) acc += binary_grad(op, which, g[i], x[i * la], y[i * lb]);
                dst[0] += (float)acc;
            } else {
                for (int64_t i = 0; i < len; i++) dst[i * lx] += binary_grad(op, which, g[i], x[i * la], y[i * lb]);
            }
        }
}

void binary_backward_ref(binary_op op, int rank, const int64_t *dims, float *da, float *db,
                         const float *dout /* (dims) */, const float *a, const int64_t *a_strides, const float *b,
                         const int64_t *b_strides, int nthreads) {
    for (int which = 0; which < 2; which++) {
        float *dx = which ? db : da;
        if (!dx) continue;
        int64_t d[OPS_MAX_RANK], so[OPS_MAX_RANK], sa[OPS_MAX_RANK], sb[OPS_MAX_RANK];
        memcpy(d, dims, (size_t)rank * sizeof *d);
        memcpy(sa, a_strides, (size_t)rank * sizeof *sa);
        memcpy(sb, b_strides, (size_t)rank * sizeof *sb);
        nd_contiguous_strides(rank, d, so);
        /* the operand's own numel: its strides are row-major with 0 on broadcast axes */
        const int64_t *sx0 = which ? b_strides : a_strides;
        int64_t numel = 1;
        for (int k = 0; k < rank; k++) numel += (dims[k] - 1) * sx0[k];
        memset(dx, 0, (size_t)numel * sizeof(float));
        int64_t *strides[3] = {so, sa, sb};
        const int r = nd_simplify(rank, d, 3, strides);
        binary_grad_walk(op, which, r, d, dx, which ? sb : sa, dout, a, sa, b, sb, nthreads);
    }
}
