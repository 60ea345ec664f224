/* Softmax cross-entropy over wide rows, written for the vector units: a translator's
 * rows span its target vocabulary (11,000-16,000 words), and softmax_xent_ignore_ref's
 * exp in double took about half of such a model's training step and most of its
 * teacher-forced evaluation.
 *
 * Same semantics as softmax_xent_ignore_ref (ignored rows, label smoothing, a label
 * out of range poisoning the loss and its row's gradient with NaN); the results agree
 * to float rounding (about 1e-6 relative). exp is a polynomial on 16 lanes side by
 * side (exp_lanes); a row's sums run in float over 16 lanes, in blocks of XV_BLOCK
 * elements whose sums are added in double. Threads split the rows; each row's loss is
 * kept and the total summed in row order, so results do not depend on the thread count. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define XV_BLOCK 512     /* elements per float partial sum (32 per lane) */
#define XV_CHUNK 256     /* rows whose losses are held before they are added */
#define XV_PAR_MIN 65536 /* elements below which a chunk runs on one thread */

#if defined(__GNUC__)
/* 64-byte vectors passed between these static helpers: on a CPU without AVX-512 the
 * compilers warn that such arguments change the ABI, which matters only across files */
#if defined(__clang__)
#if __has_warning("-Wpsabi")
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#else
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float xv_f __attribute__((vector_size(64)));
typedef int32_t xv_i __attribute__((vector_size(64)));
typedef uint32_t xv_u __attribute__((vector_size(64)));
enum { XV_LANES = 16 };

static inline xv_f xv_splat(float v) {
    xv_f r;
    for (int l = 0; l < XV_LANES; l++) r[l] = v;
    return r;
}

static inline xv_f xv_load(const float *p) {
    xv_f r;
    memcpy(&r, p, sizeof r);
    return r;
}

static inline xv_f xv_select(xv_i m, xv_f a, xv_f b) { return (xv_f)(((xv_i)a & m) | ((xv_i)b & ~m)); }

/* exp(t) for t <= 0 (or NaN, which stays NaN) on 16 lanes: t = n ln2 + r with
 * |r| <= ln2/2 (ln2 in two parts), exp(r) by its Taylor series to r^7 (error about
 * 5e-9 relative), times 2^n built in the exponent bits. t below -87 is taken as -87
 * (exp about 1.6e-38: nothing next to the row maximum's 1). No float-to-int
 * conversion: n is read from the bits of t log2(e) + 1.5·2^23. */
static inline xv_f exp_lanes(xv_f t) {
    const xv_f lo = xv_splat(-87.0f), magic = xv_splat(12582912.0f);
    t = xv_select(t < lo, lo, t);
    const xv_f y = t * xv_splat(1.44269504088896341f) + magic;
    const xv_u n = (xv_u)y - (xv_u)magic; /* n mod 2^32 (unsigned: no overflow) */
    const xv_f nf = y - magic;
    const xv_f r = (t - nf * xv_splat(0.693359375f)) - nf * xv_splat(-2.12194440e-4f);
    xv_f p = xv_splat(1.0f / 5040.0f);
    p = p * r + xv_splat(1.0f / 720.0f);
    p = p * r + xv_splat(1.0f / 120.0f);
    p = p * r + xv_splat(1.0f / 24.0f);
    p = p * r + xv_splat(1.0f / 6.0f);
    p = p * r + xv_splat(0.5f);
    p = p * r + xv_splat(1.0f);
    p = p * r + xv_splat(1.0f);
    const xv_u scale = (n + 127u) << 23;
    return p * (xv_f)scale;
}

static inline float exp_one(float t) {
    xv_f v = xv_splat(t);
    return exp_lanes(v)[0];
}

static inline double lanes_sum(xv_f a) {
    double s = 0.0;
    for (int l = 0; l < XV_LANES; l++) s += a[l];
    return s;
}

/* The row's maximum (NaNs skipped; -inf when every value is NaN or -inf). */
static float row_max(const float *x, int k) {
    xv_f m = xv_splat(-INFINITY);
    int j = 0;
    for (; j + XV_LANES <= k; j += XV_LANES) {
        const xv_f v = xv_load(x + j);
        m = xv_select(v > m, v, m);
    }
    float r = -INFINITY;
    for (int l = 0; l < XV_LANES; l++) r = m[l] > r ? m[l] : r;
    for (; j < k; j++) r = x[j] > r ? x[j] : r;
    return r;
}

/* sum_j exp(x[j] - mx) and sum_j x[j] */
static void row_sums(const float *x, int k, float mx, double *se, double *sx) {
    const xv_f vm = xv_splat(mx);
    double e = 0.0, s = 0.0;
    int j = 0;
    while (j + XV_LANES <= k) {
        xv_f ae = xv_splat(0.0f), as = xv_splat(0.0f);
        const int end = j + XV_BLOCK < k ? j + XV_BLOCK : k;
        for (; j + XV_LANES <= end; j += XV_LANES) {
            const xv_f v = xv_load(x + j);
            ae += exp_lanes(v - vm);
            as += v;
        }
        e += lanes_sum(ae);
        s += lanes_sum(as);
    }
    for (; j < k; j++) {
        e += exp_one(x[j] - mx);
        s += x[j];
    }
    *se = e;
    *sx = s;
}

/* dx[j] = (exp(x[j] - mx - ls) - uni) * invn for every j (lse = mx + ls, apart: x - mx
 * is exact near the maximum, where x - lse in float would lose digits of large logits) */
static void row_grad(const float *x, int k, float mx, float ls, float uni, float invn, float *dx) {
    const xv_f vm = xv_splat(mx), vl = xv_splat(ls), vu = xv_splat(uni), vi = xv_splat(invn);
    int j = 0;
    for (; j + XV_LANES <= k; j += XV_LANES) {
        const xv_f g = (exp_lanes((xv_load(x + j) - vm) - vl) - vu) * vi;
        memcpy(dx + j, &g, sizeof g);
    }
    for (; j < k; j++) dx[j] = (exp_one((x[j] - mx) - ls) - uni) * invn;
}
#else
static float row_max(const float *x, int k) {
    float r = -INFINITY;
    for (int j = 0; j < k; j++) r = x[j] > r ? x[j] : r;
    return r;
}

static void row_sums(const float *x, int k, float mx, double *se, double *sx) {
    double e = 0.0, s = 0.0;
    for (int j = 0; j < k; j++) {
        e += expf(x[j] - mx);
        s += x[j];
    }
    *se = e;
    *sx = s;
}

static void row_grad(const float *x, int k, float mx, float ls, float uni, float invn, float *dx) {
    for (int j = 0; j < k; j++) dx[j] = (expf((x[j] - mx) - ls) - uni) * invn;
}
#endif

/* One row's loss, and its gradient when dx is not NULL. */
static double xent_row(const float *x /* (k) */, int k, int32_t y, int32_t ignore, double eps, double invn,
                       float *dx /* (k) or NULL */) {
    if (y == ignore) {
        if (dx) memset(dx, 0, sizeof *dx * (size_t)k);
        return 0.0;
    }
    if (y < 0 || y >= k) {
        if (dx)
            for (int j = 0; j < k; j++) dx[j] = NAN;
        return NAN;
    }
    const float mx = row_max(x, k);
    double se, sx;
    row_sums(x, k, mx, &se, &sx);
    /* every value -inf or NaN: as the reference, a NaN loss */
    const double ls = mx == -INFINITY ? NAN : log(se), lse = (double)mx + ls, uni = eps / k;
    if (dx) {
        row_grad(x, k, mx, (float)ls, (float)uni, (float)invn, dx);
        dx[y] = (float)((exp((double)x[y] - lse) - (1.0 - eps) - uni) * invn);
    }
    /* the smoothing term only with smoothing: a -inf logit (a masked word) would make it 0 * inf */
    return -(1.0 - eps) * ((double)x[y] - lse) - (eps > 0 ? uni * (sx - k * lse) : 0.0);
}

float softmax_xent_vec(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                       int32_t ignore, float smoothing, float *dlogits /* (N,classes) or NULL */, int *counted,
                       int nthreads) {
    if (counted) *counted = 0;
    if (n <= 0 || classes <= 0) return 0.0f;
    int valid = 0;
    for (int i = 0; i < n; i++) valid += labels[i] != ignore;
    if (counted) *counted = valid;
    const double eps = smoothing, invn = valid ? 1.0 / valid : 0.0;
    double total = 0.0, loss[XV_CHUNK];
    for (int c0 = 0; c0 < n; c0 += XV_CHUNK) {
        const int rows = n - c0 < XV_CHUNK ? n - c0 : XV_CHUNK;
        const int nt = (double)rows * classes < XV_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int r = 0; r < rows; r++) {
            const size_t i = (size_t)(c0 + r);
            loss[r] = xent_row(logits + i * (size_t)classes, classes, labels[i], ignore, eps, invn,
                               dlogits ? dlogits + i * (size_t)classes : NULL);
        }
        for (int r = 0; r < rows; r++) total += loss[r];
    }
    return (float)(total * invn);
}
