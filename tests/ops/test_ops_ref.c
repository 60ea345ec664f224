/* Reference kernels against their definitions: every forward against a direct
 * nested-loop implementation written here, every backward against central finite
 * differences of loss = sum(out * r), plus gemm edge cases and thread determinism. */
#include "common/test.h"
#include "ops/ops.h"

#include <stdint.h>

/* ------------------------------------------------------------------ helpers */

static float *frand(size_t n, unsigned long long seed, float lo, float hi) {
    float *p = test_falloc(n);
    test_fill_uniform(p, n, seed, lo, hi);
    return p;
}

static void to_float(float *dst, const double *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

/* A problem for finite differences: forward() recomputes out from the current
 * inputs; the loss is sum(out * r), so dL/dout = r. */
typedef struct fd_problem {
    void (*forward)(struct fd_problem *pr);
    float *out;
    const float *r;
    size_t nout;
    void *data;
} fd_problem;

static double fd_loss(fd_problem *pr) {
    pr->forward(pr);
    double s = 0.0;
    for (size_t i = 0; i < pr->nout; i++) s += (double)pr->out[i] * pr->r[i];
    return s;
}

/* Compares analytic gradient `ana` of x (n) with central differences. */
static void fd_check(const char *what, fd_problem *pr, float *x, size_t n, const float *ana, float h, double rtol,
                     double atol) {
    float *num = test_falloc(n);
    for (size_t i = 0; i < n; i++) {
        const float save = x[i];
        const float xp = save + h, xm = save - h;
        x[i] = xp;
        const double lp = fd_loss(pr);
        x[i] = xm;
        const double lm = fd_loss(pr);
        x[i] = save;
        num[i] = (float)((lp - lm) / ((double)xp - (double)xm)); /* the step actually taken */
    }
    pr->forward(pr); /* leave out consistent with the unperturbed inputs */
    test_allclose(what, ana, num, n, rtol, atol);
    free(num);
}

/* --------------------------------------------------------------------- gemm */

static void gemm_direct(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                        int ldb, float beta, const float *c0, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                const double av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const double bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += av * bv;
            }
            const double prev = beta == 0.0f ? 0.0 : (double)beta * c0[(size_t)i * ldc + j];
            c[(size_t)i * ldc + j] = (float)(alpha * s + prev);
        }
}

static void test_gemm(void) {
    /* sizes straddle the 64/128/128 blocking, leading dimensions are padded */
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {67, 130, 131}, {4, 16, 128}, {65, 17, 3}, {5, 3, 0}};
    const float alphas[] = {1.0f, -0.5f}, betas[] = {0.0f, 1.0f, 0.25f};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int ai = 0; ai < 2; ai++)
                    for (int bi = 0; bi < 3; bi++) {
                        const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
                        const size_t asz = (size_t)(ta ? k : m) * lda, bsz = (size_t)(tb ? n : k) * ldb;
                        const size_t csz = (size_t)m * ldc;
                        float *a = frand(asz, 1 + si, -1, 1), *b = frand(bsz, 2 + si, -1, 1);
                        float *c0 = frand(csz, 3 + si, -1, 1), *c = test_falloc(csz), *want = test_falloc(csz);
                        memcpy(c, c0, csz * sizeof(float));
                        memcpy(want, c0, csz * sizeof(float));
                        if (betas[bi] == 0.0f) /* beta 0 must not read C (NaN must not leak) */
                            for (size_t i = 0; i < csz; i++) c[i] = NAN;
                        gemm_ref(ta, tb, m, n, k, alphas[ai], a, lda, b, ldb, betas[bi], c, ldc, 2);
                        gemm_direct(ta, tb, m, n, k, alphas[ai], a, lda, b, ldb, betas[bi], c0, want, ldc);
                        /* compare only the m x n window (padding columns are untouched) */
                        for (int i = 0; i < m; i++) {
                            char what[96];
                            snprintf(what, sizeof what, "gemm m%d n%d k%d ta%d tb%d a%g b%g row %d", m, n, k, ta, tb,
                                     alphas[ai], betas[bi], i);
                            if (!test_allclose(what, c + (size_t)i * ldc, want + (size_t)i * ldc, n, 1e-5, 1e-5))
                                break;
                            if (betas[bi] != 0.0f) CHECK(c[(size_t)i * ldc + n] == c0[(size_t)i * ldc + n], "ldc pad");
                        }
                        free(a), free(b), free(c0), free(c), free(want);
                    }
    }
}

static void test_gemm_determinism(void) {
    const int m = 70, n = 150, k = 140;
    float *a = frand((size_t)m * k, 11, -1, 1), *b = frand((size_t)k * n, 12, -1, 1);
    float *c1 = test_falloc((size_t)m * n), *c2 = test_falloc((size_t)m * n), *c3 = test_falloc((size_t)m * n);
    gemm_ref(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n, 2);
    gemm_ref(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n, 2);
    gemm_ref(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c3, n, 1);
    CHECK(memcmp(c1, c2, (size_t)m * n * sizeof(float)) == 0, "same thread count differs");
    /* by design (one thread per output tile) the count does not matter either */
    CHECK(memcmp(c1, c3, (size_t)m * n * sizeof(float)) == 0, "1 vs 2 threads differ");
    free(a), free(b), free(c1), free(c2), free(c3);
}

/* ---------------------------------------------------------------- conv2d */

/* The definition: out[n,k,oy,ox] = b[k] + sum_{c,ky,kx} in[n, g*CG+c, iy, ix] w[k,c,ky,kx]. */
static void conv_direct_forward(const conv2d_params *p, double *out, const float *in, const float *w,
                                const float *bias) {
    const int cg = p->c / p->groups, kg = p->k / p->groups;
    for (int n = 0; n < p->n; n++)
        for (int k = 0; k < p->k; k++)
            for (int oy = 0; oy < p->oh; oy++)
                for (int ox = 0; ox < p->ow; ox++) {
                    double s = bias ? bias[k] : 0.0;
                    const int g = k / kg;
                    for (int c = 0; c < cg; c++)
                        for (int ky = 0; ky < p->kh; ky++)
                            for (int kx = 0; kx < p->kw; kx++) {
                                const int iy = oy * p->sh - p->ph + ky * p->dh, ix = ox * p->sw - p->pw + kx * p->dw;
                                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                                s += (double)in[(((size_t)n * p->c + g * cg + c) * p->h + iy) * p->w + ix] *
                                     w[(((size_t)k * cg + c) * p->kh + ky) * p->kw + kx];
                            }
                    out[(((size_t)n * p->k + k) * p->oh + oy) * p->ow + ox] = s;
                }
}

/* Adjoint of the same loops: scatter dout into din and dw. */
static void conv_direct_backward(const conv2d_params *p, double *din, double *dw, double *db, const float *dout,
                                 const float *in, const float *w) {
    const int cg = p->c / p->groups, kg = p->k / p->groups;
    memset(din, 0, (size_t)p->n * p->c * p->h * p->w * sizeof(double));
    memset(dw, 0, (size_t)p->k * cg * p->kh * p->kw * sizeof(double));
    memset(db, 0, (size_t)p->k * sizeof(double));
    for (int n = 0; n < p->n; n++)
        for (int k = 0; k < p->k; k++)
            for (int oy = 0; oy < p->oh; oy++)
                for (int ox = 0; ox < p->ow; ox++) {
                    const double g_out = dout[(((size_t)n * p->k + k) * p->oh + oy) * p->ow + ox];
                    const int g = k / kg;
                    db[k] += g_out;
                    for (int c = 0; c < cg; c++)
                        for (int ky = 0; ky < p->kh; ky++)
                            for (int kx = 0; kx < p->kw; kx++) {
                                const int iy = oy * p->sh - p->ph + ky * p->dh, ix = ox * p->sw - p->pw + kx * p->dw;
                                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                                const size_t xi = (((size_t)n * p->c + g * cg + c) * p->h + iy) * p->w + ix;
                                const size_t wi = (((size_t)k * cg + c) * p->kh + ky) * p->kw + kx;
                                din[xi] += g_out * w[wi];
                                dw[wi] += g_out * in[xi];
                            }
                }
}

typedef struct conv_case {
    conv2d_params p;
    float *in, *w, *b, *out, *scratch;
    int nthreads;
} conv_case;

static void conv_fd_forward(fd_problem *pr) {
    conv_case *cc = pr->data;
    conv2d_forward_ref(&cc->p, cc->out, cc->in, cc->w, cc->b, cc->scratch, cc->nthreads);
}

/* One convolution: forward and backward against the direct loops; gradients against
 * finite differences when fd is set (small shapes only). */
static void conv_check(const char *name, conv2d_params p, int use_bias, int fd) {
    char what[128];
    CHECK(conv2d_params_finish(&p), "%s: params rejected", name);
    if (g_test.case_failed) return;
    const size_t nin = (size_t)p.n * p.c * p.h * p.w, nout = (size_t)p.n * p.k * p.oh * p.ow;
    const size_t nw = (size_t)p.k * (p.c / p.groups) * p.kh * p.kw;
    size_t sbytes = conv2d_scratch_size(&p);
    conv_case cc = {p, frand(nin, 21, -1, 1), frand(nw, 22, -1, 1), use_bias ? frand(p.k, 23, -1, 1) : NULL,
                    test_falloc(nout), test_falloc(sbytes / sizeof(float)), 2};
    float *r = frand(nout, 24, -1, 1);
    double *want = calloc(nout + nin + nw + p.k, sizeof(double));
    float *wantf = test_falloc(nout + nin + nw + p.k);
    float *din = test_falloc(nin), *dw = test_falloc(nw), *db = test_falloc(p.k);

    conv2d_forward_ref(&cc.p, cc.out, cc.in, cc.w, cc.b, cc.scratch, 2);
    conv_direct_forward(&cc.p, want, cc.in, cc.w, cc.b);
    to_float(wantf, want, nout);
    snprintf(what, sizeof what, "%s forward", name);
    test_allclose(what, cc.out, wantf, nout, 1e-4, 1e-5);

    conv2d_backward_data_ref(&cc.p, din, r, cc.w, cc.scratch, 2);
    conv2d_backward_weights_ref(&cc.p, dw, use_bias ? db : NULL, r, cc.in, cc.scratch, 2);
    conv_direct_backward(&cc.p, want, want + nin, want + nin + nw, r, cc.in, cc.w);
    to_float(wantf, want, nin + nw + p.k);
    snprintf(what, sizeof what, "%s backward data", name);
    test_allclose(what, din, wantf, nin, 1e-4, 1e-5);
    snprintf(what, sizeof what, "%s backward weights", name);
    test_allclose(what, dw, wantf + nin, nw, 1e-4, 1e-5);
    if (use_bias) {
        snprintf(what, sizeof what, "%s backward bias", name);
        test_allclose(what, db, wantf + nin + nw, p.k, 1e-4, 1e-5);
    }

    if (fd) { /* convolution is linear in each argument, so differences are exact up to rounding */
        fd_problem pr = {conv_fd_forward, cc.out, r, nout, &cc};
        snprintf(what, sizeof what, "%s fd input", name);
        fd_check(what, &pr, cc.in, nin, din, 1e-2f, 1e-2, 2e-3);
        snprintf(what, sizeof what, "%s fd weights", name);
        fd_check(what, &pr, cc.w, nw, dw, 1e-2f, 1e-2, 2e-3);
        if (use_bias) {
            snprintf(what, sizeof what, "%s fd bias", name);
            fd_check(what, &pr, cc.b, p.k, db, 1e-2f, 1e-2, 2e-3);
        }
    }
    free(cc.in), free(cc.w), free(cc.b), free(cc.out), free(cc.scratch), free(r), free(want), free(wantf);
    free(din), free(dw), free(db);
}

/* fields: n c h w k kh kw sh sw ph pw dh dw groups */
static conv2d_params cp(int n, int c, int h, int w, int k, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                        int dw, int groups) {
    conv2d_params p = {n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups, 0, 0, ph, pw, 0, 0};
    return p;
}

static void test_conv_shapes(void) {
    conv_check("3x3 pad1 7x5", cp(2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1, 1);
    conv_check("3x3 stride2 nobias", cp(2, 2, 7, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1), 0, 1);
    conv_check("dilation2", cp(1, 2, 7, 6, 2, 3, 3, 1, 1, 2, 2, 2, 2, 1), 1, 1);
    conv_check("groups2 3x2 stride(2,1)", cp(2, 4, 7, 5, 6, 3, 2, 2, 1, 1, 0, 1, 1, 2), 1, 1);
    conv_check("depthwise", cp(2, 3, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3), 1, 1);
    conv_check("pointwise 1x1", cp(2, 3, 4, 3, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1), 1, 1);
    conv_check("1x1 stride2", cp(1, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1), 0, 1);
    conv_check("5x5 asym pad no-overlap", cp(1, 1, 6, 7, 2, 5, 3, 3, 2, 2, 1, 1, 1, 1), 1, 1);
    /* several gemm tiles in every dimension: M=70>64, N=144>128, K=144>128 */
    conv_check("large tiled", cp(2, 16, 12, 12, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1, 0);
    conv_check("large pointwise groups", cp(1, 8, 13, 11, 12, 1, 1, 1, 1, 0, 0, 1, 1, 4), 1, 0);
}

static void test_conv_params(void) {
    conv2d_params p = cp(1, 3, 7, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1);
    CHECK(conv2d_params_finish(&p) && p.oh == 4 && p.ow == 3, "oh %d ow %d", p.oh, p.ow);
    p = cp(1, 3, 7, 6, 4, 3, 3, 1, 1, 0, 0, 2, 2, 1); /* effective kernel 5 */
    CHECK(conv2d_params_finish(&p) && p.oh == 3 && p.ow == 2, "oh %d ow %d", p.oh, p.ow);
    p = cp(1, 3, 2, 2, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1); /* kernel larger than input */
    CHECK(!conv2d_params_finish(&p), "kernel > input accepted");
    p = cp(1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2); /* 3 channels, 2 groups */
    CHECK(!conv2d_params_finish(&p), "indivisible groups accepted");
    p = cp(1, 3, 8, 8, 4, 3, 3, 0, 1, 1, 1, 1, 1, 1);
    CHECK(!conv2d_params_finish(&p), "zero stride accepted");
    p = cp(1, 3, 8, 8, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1);
    CHECK(conv2d_params_finish(&p) && conv2d_scratch_size(&p) == 0, "pointwise needs no scratch");
    p = cp(1, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2);
    CHECK(conv2d_params_finish(&p) && conv2d_scratch_size(&p) == 2 * 9 * 64 * sizeof(float), "scratch %zu",
          conv2d_scratch_size(&p));
}

static void test_conv_determinism(void) {
    conv2d_params p = cp(2, 16, 12, 12, 70, 3, 3, 1, 1, 1, 1, 1, 1, 2);
    CHECK(conv2d_params_finish(&p), "params");
    const size_t nin = (size_t)p.n * p.c * p.h * p.w, nout = (size_t)p.n * p.k * p.oh * p.ow;
    const size_t nw = (size_t)p.k * (p.c / p.groups) * 9;
    float *in = frand(nin, 31, -1, 1), *w = frand(nw, 32, -1, 1), *b = frand(p.k, 33, -1, 1);
    float *dy = frand(nout, 34, -1, 1), *scratch = test_falloc(conv2d_scratch_size(&p) / sizeof(float));
    float *res[3];
    for (int t = 0; t < 3; t++) {
        const int nt = t < 2 ? 2 : 1;
        res[t] = test_falloc(nout + nin + nw + p.k);
        conv2d_forward_ref(&p, res[t], in, w, b, scratch, nt);
        conv2d_backward_data_ref(&p, res[t] + nout, dy, w, scratch, nt);
        conv2d_backward_weights_ref(&p, res[t] + nout + nin, res[t] + nout + nin + nw, dy, in, scratch, nt);
    }
    const size_t bytes = (nout + nin + nw + p.k) * sizeof(float);
    CHECK(memcmp(res[0], res[1], bytes) == 0, "conv: two runs with 2 threads differ");
    CHECK(memcmp(res[0], res[2], bytes) == 0, "conv: 1 vs 2 threads differ");
    free(in), free(w), free(b), free(dy), free(scratch), free(res[0]), free(res[1]), free(res[2]);
}

/* --------------------------------------------------------------- pooling */

static pool2d_params pp(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int ceil_mode,
                        int cip) {
    pool2d_params p = {n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode, cip, 0, 0, ph, pw, 1, 1, 0, 0};
    return p;
}

/* Windows enumerated position by position: a padded position counts when it lies
 * within input + padding, a real one when inside the input. Max ignores padding. */
static void pool_direct(const pool2d_params *p, int is_max, float *out, const float *in) {
    for (int pl = 0; pl < p->n * p->c; pl++)
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                double s = 0.0, mx = -INFINITY;
                int all = 0, inside = 0;
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        const int iy = oy * p->sh - p->ph + ky, ix = ox * p->sw - p->pw + kx;
                        if (iy < p->h + p->ph && ix < p->w + p->pw) all++;
                        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                        inside++;
                        const double v = in[((size_t)pl * p->h + iy) * p->w + ix];
                        s += v;
                        if (v > mx) mx = v;
                    }
                const int div = p->count_include_pad ? all : inside;
                out[((size_t)pl * p->oh + oy) * p->ow + ox] = (float)(is_max ? mx : (inside ? s / div : 0.0));
            }
}

typedef struct pool_case {
    pool2d_params p;
    int is_max;
    float *in, *out;
} pool_case;

static void pool_fd_forward(fd_problem *pr) {
    pool_case *pc = pr->data;
    if (pc->is_max) maxpool2d_forward_ref(&pc->p, pc->out, NULL, pc->in, 1);
    else avgpool2d_forward_ref(&pc->p, pc->out, pc->in, 1);
}

static void pool_check(const char *name, pool2d_params p, int is_max) {
    char what[128];
    CHECK(pool2d_params_finish(&p), "%s: params rejected", name);
    if (g_test.case_failed) return;
    const size_t nin = (size_t)p.n * p.c * p.h * p.w, nout = (size_t)p.n * p.c * p.oh * p.ow;
    pool_case pc = {p, is_max, test_falloc(nin), test_falloc(nout)};
    /* distinct values 0.05 apart in shuffled order: no ties within 2h for max pooling */
    for (size_t i = 0; i < nin; i++) pc.in[i] = (float)((double)((i * 7919) % nin) * 0.05 - 0.5);
    float *r = frand(nout, 41, -1, 1), *want = test_falloc(nout), *din = test_falloc(nin);
    int32_t *am = calloc(nout, sizeof(int32_t));
    if (is_max) maxpool2d_forward_ref(&p, pc.out, am, pc.in, 2);
    else avgpool2d_forward_ref(&p, pc.out, pc.in, 2);
    pool_direct(&p, is_max, want, pc.in);
    snprintf(what, sizeof what, "%s forward", name);
    test_allclose(what, pc.out, want, nout, 1e-6, 1e-6);
    if (is_max) {
        for (size_t i = 0; i < nout; i++) {
            const size_t plane = i / ((size_t)p.oh * p.ow);
            CHECK(pc.in[plane * p.h * p.w + (size_t)am[i]] == pc.out[i], "%s argmax %zu", name, i);
        }
        maxpool2d_backward_ref(&p, din, r, am, 2);
    } else {
        avgpool2d_backward_ref(&p, din, r, 2);
    }
    fd_problem pr = {pool_fd_forward, pc.out, r, nout, &pc};
    snprintf(what, sizeof what, "%s fd input", name);
    fd_check(what, &pr, pc.in, nin, din, 1e-2f, 1e-2, 2e-3);
    free(pc.in), free(pc.out), free(r), free(want), free(din), free(am);
}

static void test_pool_shapes(void) {
    for (int is_max = 0; is_max < 2; is_max++) {
        for (int cip = 0; cip < 2; cip++) {
            if (is_max && cip) continue; /* count_include_pad is avg only */
            const char *kind = is_max ? "max" : cip ? "avg incl-pad" : "avg excl-pad";
            char name[96];
            snprintf(name, sizeof name, "%s 2x2 s2 7x5", kind);
            pool_check(name, pp(2, 2, 7, 5, 2, 2, 2, 2, 0, 0, 0, cip), is_max);
            snprintf(name, sizeof name, "%s 2x2 s2 7x5 ceil", kind);
            pool_check(name, pp(2, 2, 7, 5, 2, 2, 2, 2, 0, 0, 1, cip), is_max);
            snprintf(name, sizeof name, "%s 3x3 s2 p1 7x5", kind);
            pool_check(name, pp(1, 3, 7, 5, 3, 3, 2, 2, 1, 1, 0, cip), is_max);
            snprintf(name, sizeof name, "%s 3x3 s2 p1 7x5 ceil", kind);
            pool_check(name, pp(1, 3, 7, 5, 3, 3, 2, 2, 1, 1, 1, cip), is_max);
            snprintf(name, sizeof name, "%s 2x2 s2 p1 5x5 ceil", kind); /* last window dropped */
            pool_check(name, pp(1, 2, 5, 5, 2, 2, 2, 2, 1, 1, 1, cip), is_max);
            snprintf(name, sizeof name, "%s 3x2 s(1,2) overlap 6x7", kind);
            pool_check(name, pp(2, 1, 6, 7, 3, 2, 1, 2, 1, 0, 1, cip), is_max);
        }
    }
}

/* Output sizes and values as PyTorch gives them (worked by hand from ATen's rules). */
static void test_pool_pytorch_values(void) {
    pool2d_params p = pp(1, 1, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 3 && p.ow == 3, "ceil drop: oh %d ow %d", p.oh, p.ow);
    p = pp(1, 1, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 4, "oh %d", p.oh);
    p = pp(1, 1, 7, 7, 3, 3, 2, 2, 1, 1, 0, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 4, "oh %d", p.oh);
    p = pp(1, 1, 6, 6, 3, 3, 2, 2, 0, 0, 0, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 2, "oh %d", p.oh);
    p = pp(1, 1, 6, 6, 3, 3, 2, 2, 0, 0, 1, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 3, "oh %d", p.oh);
    p = pp(1, 1, 6, 6, 3, 3, 2, 2, 2, 2, 0, 1); /* pad > kernel/2: not PyTorch, but ONNX */
    CHECK(pool2d_params_finish(&p) && p.oh == 4, "pad 2 of kernel 3: oh %d", p.oh);
    p = pp(1, 1, 6, 6, 3, 3, 2, 2, 3, 3, 0, 1); /* pad = kernel */
    CHECK(!pool2d_params_finish(&p), "pad = kernel accepted");

    /* 3x3 input 1..9, AvgPool2d(2, 2, padding=1, ceil_mode=True): 2x2 output */
    float in9[9], out[4];
    for (int i = 0; i < 9; i++) in9[i] = (float)(i + 1);
    p = pp(1, 1, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 2 && p.ow == 2, "oh %d ow %d", p.oh, p.ow);
    avgpool2d_forward_ref(&p, out, in9, 1);
    const float incl[4] = {0.25f, 1.25f, 2.75f, 7.0f}, excl[4] = {1.0f, 2.5f, 5.5f, 7.0f};
    test_allclose("avg 3x3 count_include_pad=True", out, incl, 4, 0, 1e-6);
    p.count_include_pad = 0;
    avgpool2d_forward_ref(&p, out, in9, 1);
    test_allclose("avg 3x3 count_include_pad=False", out, excl, 4, 0, 1e-6);

    /* 4x4 input 1..16, AvgPool2d(3, 2, ceil_mode=True): the last windows hang off the
     * input and their divisor shrinks even with count_include_pad */
    float in16[16];
    for (int i = 0; i < 16; i++) in16[i] = (float)(i + 1);
    p = pp(1, 1, 4, 4, 3, 3, 2, 2, 0, 0, 1, 1);
    CHECK(pool2d_params_finish(&p) && p.oh == 2 && p.ow == 2, "oh %d ow %d", p.oh, p.ow);
    avgpool2d_forward_ref(&p, out, in16, 1);
    const float ceil_want[4] = {6.0f, 7.5f, 12.0f, 13.5f};
    test_allclose("avg 4x4 k3 s2 ceil", out, ceil_want, 4, 0, 1e-6);

    /* max: ties pick the first in window order; NaN propagates */
    float tie[4] = {1, 3, 3, 2}, mo;
    int32_t am;
    p = pp(1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 1);
    CHECK(pool2d_params_finish(&p), "params");
    maxpool2d_forward_ref(&p, &mo, &am, tie, 1);
    CHECK(mo == 3.0f && am == 1, "tie: %g at %d", mo, am);
    tie[3] = NAN;
    maxpool2d_forward_ref(&p, &mo, &am, tie, 1);
    CHECK(isnan(mo) && am == 3, "nan: %g at %d", mo, am);
}

/* ------------------------------------------------------------ batch norm */

typedef struct bn_case {
    bn_params p;
    float *in, *gamma, *beta, *out, *mean, *var;
} bn_case;

static void bn_fd_forward(fd_problem *pr) {
    bn_case *bc = pr->data;
    batchnorm_forward_train_ref(&bc->p, bc->out, bc->mean, bc->var, bc->in, bc->gamma, bc->beta, 1);
}

static void bn_check(int n, int c, int s) {
    char what[96];
    bn_params p = {n, c, s, 1e-5f};
    const size_t cnt = (size_t)n * c * s;
    bn_case bc = {p, frand(cnt, 51, -2, 3), frand(c, 52, 0.5f, 1.5f), frand(c, 53, -1, 1), test_falloc(cnt), test_falloc(c),
                  test_falloc(c)};
    float *want = test_falloc(cnt), *wmean = test_falloc(c), *wvar = test_falloc(c), *r = frand(cnt, 54, -1, 1);
    float *din = test_falloc(cnt), *dg = test_falloc(c), *dbt = test_falloc(c);
    batchnorm_forward_train_ref(&p, bc.out, bc.mean, bc.var, bc.in, bc.gamma, bc.beta, 2);
    for (int ch = 0; ch < c; ch++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < s; j++) m += bc.in[((size_t)i * c + ch) * s + j];
        m /= (double)n * s;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < s; j++) {
                const double d = bc.in[((size_t)i * c + ch) * s + j] - m;
                v += d * d;
            }
        v /= (double)n * s; /* biased */
        wmean[ch] = (float)m, wvar[ch] = (float)v;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < s; j++) {
                const size_t k = ((size_t)i * c + ch) * s + j;
                want[k] = (float)((bc.in[k] - m) / sqrt(v + 1e-5) * bc.gamma[ch] + bc.beta[ch]);
            }
    }
    snprintf(what, sizeof what, "bn train n%d c%d s%d", n, c, s);
    test_allclose(what, bc.out, want, cnt, 1e-4, 1e-5);
    test_allclose("bn mean", bc.mean, wmean, c, 1e-5, 1e-6);
    test_allclose("bn var", bc.var, wvar, c, 1e-5, 1e-6);
    /* inference with the batch statistics reproduces the training output */
    float *inf = test_falloc(cnt);
    batchnorm_forward_infer_ref(&p, inf, bc.in, bc.gamma, bc.beta, bc.mean, bc.var, 2);
    test_allclose("bn infer", inf, bc.out, cnt, 0, 0);

    batchnorm_backward_ref(&p, din, dg, dbt, r, bc.in, bc.gamma, bc.mean, bc.var, 2);
    fd_problem pr = {bn_fd_forward, bc.out, r, cnt, &bc};
    snprintf(what, sizeof what, "bn fd input n%d c%d s%d", n, c, s);
    fd_check(what, &pr, bc.in, cnt, din, 1e-2f, 2e-2, 3e-3);
    fd_check("bn fd gamma", &pr, bc.gamma, c, dg, 1e-2f, 1e-2, 2e-3);
    fd_check("bn fd beta", &pr, bc.beta, c, dbt, 1e-2f, 1e-2, 2e-3);

    /* same thread count twice, and 1 vs 2, are bit-identical (one channel per thread) */
    float *din2 = test_falloc(cnt), *dg2 = test_falloc(c), *dbt2 = test_falloc(c);
    batchnorm_backward_ref(&p, din2, dg2, dbt2, r, bc.in, bc.gamma, bc.mean, bc.var, 1);
    CHECK(memcmp(din, din2, cnt * sizeof(float)) == 0 && memcmp(dg, dg2, c * sizeof(float)) == 0,
          "bn backward depends on threads");
    free(bc.in), free(bc.gamma), free(bc.beta), free(bc.out), free(bc.mean), free(bc.var), free(want), free(wmean);
    free(wvar), free(r), free(din), free(dg), free(dbt), free(inf), free(din2), free(dg2), free(dbt2);
}

static void test_batchnorm(void) {
    bn_check(3, 2, 10); /* after a convolution: (N,C,H*W) */
    bn_check(5, 4, 1);  /* after a dense layer: (N,C) */
}

/* The vectorized plain-layout kernels (batchnorm_vec.c), with and without the fused
 * ReLU: against the reference (ReLU applied after it, and dy masked by the ReLU's
 * output for the backward), a finite-difference check of their own backward,
 * planes longer than a block and not a multiple of the lanes, data far from zero
 * (the variance must not cancel), and results independent of the thread count. */
typedef struct bnv_case {
    bn_params p;
    float *in, *gamma, *beta, *out, *mean, *var;
} bnv_case;

static void bnv_fd_forward(fd_problem *pr) {
    bnv_case *bc = pr->data;
    batchnorm_forward_train_vec(&bc->p, bc->out, bc->mean, bc->var, bc->in, bc->gamma, bc->beta, 0, 1);
}

/* A training batch-norm kernel's forward (out in NCHW, its mean and var) against the
 * reference's (ro, rmean, rvar), with the ReLU applied when relu; then the reference
 * backward of dy masked where that output is zero, into rdin, rdg, rdb. */
typedef struct bn_ref_run {
    const float *ro, *rmean, *rvar;
    float *masked, *rdin, *rdg, *rdb;
} bn_ref_run;

static void bn_against_ref(const char *kind, const bn_params *p, int relu, float lo, float hi, const float *in,
                           const float *gamma, const float *dy, const float *out, const float *mean, const float *var,
                           const bn_ref_run *r) {
    char what[96];
    const size_t cnt = (size_t)p->n * p->c * p->spatial, c = (size_t)p->c;
    float *want = test_falloc(cnt);
    for (size_t i = 0; i < cnt; i++) want[i] = relu && r->ro[i] < 0 ? 0.0f : r->ro[i];
    snprintf(what, sizeof what, "bn %s%s n%d c%d s%d [%g,%g]", kind, relu ? "+relu" : "", p->n, p->c, p->spatial, lo,
             hi);
    test_allclose(what, out, want, cnt, 1e-4, 1e-5);
    snprintf(what, sizeof what, "bn %s mean", kind);
    test_allclose(what, mean, r->rmean, c, 1e-6, 1e-6 * (fabs(lo) + fabs(hi)));
    snprintf(what, sizeof what, "bn %s var", kind);
    test_allclose(what, var, r->rvar, c, 1e-4, 1e-7);
    for (size_t i = 0; i < cnt; i++) r->masked[i] = relu && !(out[i] > 0.0f) ? 0.0f : dy[i];
    batchnorm_backward_ref(p, r->rdin, r->rdg, r->rdb, r->masked, in, gamma, r->rmean, r->rvar, 2);
    free(want);
}

/* Finite differences of a batch-norm kernel's forward (pr) against its backward's din,
 * dgamma and dbeta. */
static void bn_fd_checks(const char *kind, fd_problem *pr, const bn_params *p, float *in, float *gamma, float *beta,
                         const float *din, const float *dg, const float *db) {
    char what[96];
    const size_t cnt = (size_t)p->n * p->c * p->spatial, c = (size_t)p->c;
    snprintf(what, sizeof what, "bn %s fd input n%d c%d s%d", kind, p->n, p->c, p->spatial);
    fd_check(what, pr, in, cnt, din, 1e-2f, 2e-2, 3e-3);
    snprintf(what, sizeof what, "bn %s fd gamma", kind);
    fd_check(what, pr, gamma, c, dg, 1e-2f, 1e-2, 2e-3);
    snprintf(what, sizeof what, "bn %s fd beta", kind);
    fd_check(what, pr, beta, c, db, 1e-2f, 1e-2, 2e-3);
}

static void bn_vec_check(int n, int c, int s, float lo, float hi, int fd) {
    char what[96];
    bn_params p = {n, c, s, 1e-5f};
    const size_t cnt = (size_t)n * c * s;
    float *in = frand(cnt, 61, lo, hi), *gamma = frand(c, 62, 0.5f, 1.5f), *beta = frand(c, 63, -1, 1);
    float *dy = frand(cnt, 64, -1, 1);
    float *out = test_falloc(cnt), *mean = test_falloc(c), *var = test_falloc(c);
    float *ro = test_falloc(cnt), *rmean = test_falloc(c), *rvar = test_falloc(c);
    float *din = test_falloc(cnt), *dg = test_falloc(c), *db = test_falloc(c);
    float *rdin = test_falloc(cnt), *rdg = test_falloc(c), *rdb = test_falloc(c), *masked = test_falloc(cnt);
    batchnorm_forward_train_ref(&p, ro, rmean, rvar, in, gamma, beta, 2);
    for (int relu = 0; relu < 2; relu++) {
        batchnorm_forward_train_vec(&p, out, mean, var, in, gamma, beta, relu, 2);
        const bn_ref_run rr = {ro, rmean, rvar, masked, rdin, rdg, rdb};
        bn_against_ref("vec", &p, relu, lo, hi, in, gamma, dy, out, mean, var, &rr);
        batchnorm_backward_vec(&p, din, dg, db, dy, in, relu ? out : NULL, gamma, mean, var, 2);
        snprintf(what, sizeof what, "bn vec%s backward n%d c%d s%d", relu ? "+relu" : "", n, c, s);
        test_allclose(what, din, rdin, cnt, 1e-3, 1e-4);
        test_allclose("bn vec dgamma", dg, rdg, c, 1e-3, 1e-3);
        test_allclose("bn vec dbeta", db, rdb, c, 1e-4, 1e-4);
        /* 1 thread and 2 give the same bits */
        float *din1 = test_falloc(cnt), *out1 = test_falloc(cnt), *m1 = test_falloc(c), *v1 = test_falloc(c);
        batchnorm_forward_train_vec(&p, out1, m1, v1, in, gamma, beta, relu, 1);
        batchnorm_backward_vec(&p, din1, dg, db, dy, in, relu ? out1 : NULL, gamma, m1, v1, 1);
        CHECK(!memcmp(out1, out, cnt * sizeof(float)) && !memcmp(din1, din, cnt * sizeof(float)) &&
                  !memcmp(v1, var, c * sizeof(float)),
              "bn vec depends on the thread count");
        free(din1), free(out1), free(m1), free(v1);
    }
    if (fd) {
        bnv_case bc = {p, in, gamma, beta, out, mean, var};
        batchnorm_forward_train_vec(&p, out, mean, var, in, gamma, beta, 0, 1);
        batchnorm_backward_vec(&p, din, dg, db, dy, in, NULL, gamma, mean, var, 1);
        fd_problem pr = {bnv_fd_forward, out, dy, cnt, &bc};
        bn_fd_checks("vec", &pr, &p, in, gamma, beta, din, dg, db);
    }
    free(in), free(gamma), free(beta), free(dy), free(out), free(mean), free(var), free(ro), free(rmean), free(rvar);
    free(din), free(dg), free(db), free(rdin), free(rdg), free(rdb), free(masked);
}

/* The layouts go through nchw_to_blocked16 / blocked16_to_nchw (layout_ref.c), which
 * test_conv_blocked (test_ops_dnnl.c) checks against oneDNN's own nChw16c. */
typedef struct bnb_case {
    bn_params p;
    float *in, *gamma, *beta, *out, *mean, *var, *xb, *yb;
    double *part;
} bnb_case;

/* the blocked forward of a plain input, its output back in plain */
static void bnb_fd_forward(fd_problem *pr) {
    bnb_case *bc = pr->data;
    const bn_params *p = &bc->p;
    nchw_to_blocked16(p->n, p->c, p->spatial, bc->xb, bc->in, 1);
    batchnorm_forward_train_blocked(p, bc->yb, bc->mean, bc->var, bc->xb, bc->gamma, bc->beta, 0, bc->part, 1);
    blocked16_to_nchw(p->n, p->c, p->spatial, bc->out, bc->yb, 1);
}

/* Sets (fill) or checks to be zero (fill NULL) the padded channels of an nChw16c
 * tensor of c channels; returns 1 when they are (or after setting). */
static int blocked_pad(int n, int c, int s, float *x, const float *fill) {
    const int cb = (c + 15) / 16;
    int zero = 1;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < s; k++)
            for (int j = c - (cb - 1) * 16; j < 16; j++) {
                float *v = x + (((size_t)i * cb + (size_t)(cb - 1)) * s + (size_t)k) * 16 + (size_t)j;
                if (fill) *v = *fill;
                else zero &= *v == 0.0f;
            }
    return zero;
}

/* The nChw16c kernels (training with blocked activations): the reference's values in
 * the blocked places, with and without the ReLU; the same bits on 1 and 2 threads;
 * a finite-difference check of their backward. With c not a multiple of 16 the last
 * block's padding holds garbage on the way in and must come out zero. */
static void bn_blocked_check(int n, int c, int s, float lo, float hi, int fd) {
    char what[96];
    bn_params p = {n, c, s, 1e-5f};
    const size_t cnt = (size_t)n * c * s, cntb = (size_t)n * (size_t)((c + 15) / 16 * 16) * s;
    float *in = frand(cnt, 71, lo, hi), *gamma = frand(c, 72, 0.5f, 1.5f), *beta = frand(c, 73, -1, 1);
    float *dy = frand(cnt, 74, -1, 1), *xb = test_falloc(cntb), *dyb = test_falloc(cntb), *yb = test_falloc(cntb);
    float *out = test_falloc(cnt), *mean = test_falloc(c), *var = test_falloc(c), *ro = test_falloc(cnt);
    float *rmean = test_falloc(c), *rvar = test_falloc(c), *dinb = test_falloc(cntb), *din = test_falloc(cnt);
    float *dg = test_falloc(c), *db = test_falloc(c), *rdin = test_falloc(cnt), *rdg = test_falloc(c);
    float *rdb = test_falloc(c), *masked = test_falloc(cnt);
    float *yb1 = test_falloc(cntb), *dinb1 = test_falloc(cntb), *m1 = test_falloc(c), *v1 = test_falloc(c);
    double *part = calloc(BN_BLOCKED_PART(n, c), sizeof *part);
    const float garbage = 7.5f;
    nchw_to_blocked16(n, c, s, xb, in, 1);
    nchw_to_blocked16(n, c, s, dyb, dy, 1);
    CHECK(blocked_pad(n, c, s, xb, NULL), "nchw_to_blocked16 left the padding unset");
    blocked_pad(n, c, s, xb, &garbage);
    blocked_pad(n, c, s, dyb, &garbage);
    batchnorm_forward_train_ref(&p, ro, rmean, rvar, in, gamma, beta, 2);
    for (int relu = 0; relu < 2; relu++) {
        batchnorm_forward_train_blocked(&p, yb, mean, var, xb, gamma, beta, relu, part, 2);
        blocked16_to_nchw(n, c, s, out, yb, 1);
        const bn_ref_run rr = {ro, rmean, rvar, masked, rdin, rdg, rdb};
        bn_against_ref("blocked", &p, relu, lo, hi, in, gamma, dy, out, mean, var, &rr);
        CHECK(blocked_pad(n, c, s, yb, NULL), "bn blocked forward left non-zero padding (c %d)", c);
        batchnorm_backward_blocked(&p, dinb, dg, db, dyb, xb, relu ? yb : NULL, gamma, mean, var, part, 2);
        CHECK(blocked_pad(n, c, s, dinb, NULL), "bn blocked backward left non-zero padding (c %d)", c);
        blocked16_to_nchw(n, c, s, din, dinb, 1);
        snprintf(what, sizeof what, "bn blocked%s backward n%d c%d s%d", relu ? "+relu" : "", n, c, s);
        test_allclose(what, din, rdin, cnt, 1e-3, 1e-4);
        test_allclose("bn blocked dgamma", dg, rdg, c, 1e-3, 1e-3);
        test_allclose("bn blocked dbeta", db, rdb, c, 1e-4, 1e-4);
        batchnorm_forward_train_blocked(&p, yb1, m1, v1, xb, gamma, beta, relu, part, 1);
        batchnorm_backward_blocked(&p, dinb1, dg, db, dyb, xb, relu ? yb1 : NULL, gamma, m1, v1, part, 1);
        CHECK(!memcmp(yb1, yb, cntb * sizeof(float)) && !memcmp(dinb1, dinb, cntb * sizeof(float)) &&
                  !memcmp(v1, var, c * sizeof(float)),
              "bn blocked depends on the thread count");
    }
    if (fd) {
        bnb_case bc = {p, in, gamma, beta, out, mean, var, xb, yb, part};
        bnb_fd_forward(&(fd_problem){NULL, NULL, NULL, 0, &bc});
        batchnorm_backward_blocked(&p, dinb, dg, db, dyb, xb, NULL, gamma, mean, var, part, 1);
        blocked16_to_nchw(n, c, s, din, dinb, 1);
        fd_problem pr = {bnb_fd_forward, out, dy, cnt, &bc};
        bn_fd_checks("blocked", &pr, &p, in, gamma, beta, din, dg, db);
    }
    free(in), free(gamma), free(beta), free(dy), free(xb), free(dyb), free(yb), free(out), free(mean), free(var);
    free(ro), free(rmean), free(rvar), free(dinb), free(din), free(dg), free(db), free(rdin), free(rdg), free(rdb);
    free(masked), free(yb1), free(dinb1), free(m1), free(v1), free(part);
}

static void test_batchnorm_blocked(void) {
    bn_blocked_check(3, 16, 5, -2, 3, 1);       /* small, with the finite-difference check */
    bn_blocked_check(2, 32, 67, -1, 1, 0);      /* more rows than a block, not a multiple of 4 */
    bn_blocked_check(8, 16, 64, 999, 1001, 0);  /* far from zero: the variance must not cancel */
    bn_blocked_check(16, 48, 256, -3, 1, 0);    /* ResNet-sized planes, three channel blocks */
    bn_blocked_check(3, 13, 5, -2, 3, 1);       /* padded: one block, 3 channels of padding */
    bn_blocked_check(4, 40, 33, -1, 2, 0);      /* padded: the third block half used */
}

static void test_batchnorm_vec(void) {
    bn_vec_check(3, 2, 20, -2, 3, 1);         /* small, with the finite-difference check */
    bn_vec_check(4, 5, 17, -2, 3, 0);         /* plane shorter than the lanes plus a tail */
    bn_vec_check(2, 3, 2100, -1, 1, 0);       /* planes longer than a block */
    bn_vec_check(8, 16, 64, 999, 1001, 0);    /* far from zero: the variance must not cancel */
    bn_vec_check(16, 4, 1024, -3, 1, 0);      /* ResNet-sized planes */
}

static void test_batchnorm_infer(void) {
    bn_params p = {2, 2, 3, 1e-3f};
    const float in[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const float g[2] = {2, -1}, b[2] = {0.5f, 1}, m[2] = {3, -1}, v[2] = {4, 0.25f};
    float out[12], want[12];
    for (int i = 0; i < 12; i++) {
        const int ch = (i / 3) % 2;
        want[i] = (float)((in[i] - m[ch]) / sqrt(v[ch] + 1e-3) * g[ch] + b[ch]);
    }
    batchnorm_forward_infer_ref(&p, out, in, g, b, m, v, 1);
    test_allclose("bn infer running stats", out, want, 12, 1e-5, 1e-6);

    /* channels-last rows (fused inference): the same values per (sample, position,
     * channel), C = 300 across the kernel's 256-channel blocks, and ReLU after when asked */
    enum { N = 2, C = 300, S = 5 };
    float *x = frand(N * C * S, 104, -3, 3), *gam = frand(C, 105, -2, 2), *bet = frand(C, 106, -1, 1);
    float *mu = frand(C, 107, -1, 1), *var = frand(C, 108, 0.1f, 2), *ref = test_falloc(N * C * S);
    float *rows = test_falloc(N * C * S), *got = test_falloc(N * C * S), *want2 = test_falloc(N * C * S);
    bn_params q = {N, C, S, 1e-5f};
    batchnorm_forward_infer_ref(&q, ref, x, gam, bet, mu, var, 1);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < S; i++) rows[(n * S + i) * C + c] = x[(n * C + c) * S + i];
    for (int relu = 0; relu < 2; relu++) {
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < S; i++) {
                    const float r = ref[(n * C + c) * S + i];
                    want2[(n * S + i) * C + c] = relu && r < 0.0f ? 0.0f : r;
                }
        batchnorm_infer_rows(&q, relu, got, rows, gam, bet, mu, var, 2);
        test_allclose(relu ? "bn rows + relu" : "bn rows", got, want2, N * C * S, 0.0, 0.0);
        /* the same by parts of 100 and 200 channels read from tensors of their own
         * (a concatenation's inputs), channels-last and NCHW */
        for (int cl = 0; cl < 2; cl++) {
            float *part = test_falloc(N * C * S), *whole = test_falloc(N * C * S);
            memset(whole, 0, sizeof(float) * N * C * S);
            for (int c0 = 0, cp = 100; c0 < C; c0 += cp, cp = 200) {
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < cp; c++)
                        for (int i = 0; i < S; i++)
                            part[cl ? (n * S + i) * cp + c : (n * cp + c) * S + i] = x[(n * C + c0 + c) * S + i];
                batchnorm_infer_part(&q, relu, cl, c0, cp, whole, part, gam, bet, mu, var, 2);
            }
            int same = 1;
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < S; i++)
                        same &= whole[cl ? (n * S + i) * C + c : (n * C + c) * S + i] == want2[(n * S + i) * C + c];
            CHECK(same, "bn by parts, %s, relu %d", cl ? "channels-last" : "NCHW", relu);
            free(part), free(whole);
        }
    }
    free(x), free(gam), free(bet), free(mu), free(var), free(ref), free(rows), free(got), free(want2);
}

/* ----------------------------------------------------------------- dense */

typedef struct dense_case {
    int n, in_f, out_f;
    float *in, *w, *b, *out;
} dense_case;

static void dense_fd_forward(fd_problem *pr) {
    dense_case *dc = pr->data;
    dense_forward_ref(dc->n, dc->in_f, dc->out_f, dc->out, dc->in, dc->w, dc->b, 1);
}

static void dense_check(int n, int in_f, int out_f, int use_bias, int fd) {
    char what[96];
    dense_case dc = {n, in_f, out_f, frand((size_t)n * in_f, 61, -1, 1), frand((size_t)out_f * in_f, 62, -1, 1),
                     use_bias ? frand(out_f, 63, -1, 1) : NULL, test_falloc((size_t)n * out_f)};
    float *want = test_falloc((size_t)n * out_f), *r = frand((size_t)n * out_f, 64, -1, 1);
    float *din = test_falloc((size_t)n * in_f), *dw = test_falloc((size_t)out_f * in_f), *db = test_falloc(out_f);
    float *wdin = test_falloc((size_t)n * in_f), *wdw = test_falloc((size_t)out_f * in_f), *wdb = test_falloc(out_f);
    dense_forward_ref(n, in_f, out_f, dc.out, dc.in, dc.w, dc.b, 2);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out_f; o++) {
            double s = use_bias ? dc.b[o] : 0.0;
            for (int j = 0; j < in_f; j++) s += (double)dc.in[(size_t)i * in_f + j] * dc.w[(size_t)o * in_f + j];
            want[(size_t)i * out_f + o] = (float)s;
        }
    snprintf(what, sizeof what, "dense forward %dx%d->%d", n, in_f, out_f);
    test_allclose(what, dc.out, want, (size_t)n * out_f, 1e-4, 1e-5);
    dense_backward_data_ref(n, in_f, out_f, din, r, dc.w, 2);
    dense_backward_weights_ref(n, in_f, out_f, dw, use_bias ? db : NULL, r, dc.in, 2);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < in_f; j++) {
            double s = 0;
            for (int o = 0; o < out_f; o++) s += (double)r[(size_t)i * out_f + o] * dc.w[(size_t)o * in_f + j];
            wdin[(size_t)i * in_f + j] = (float)s;
        }
    for (int o = 0; o < out_f; o++) {
        double sb = 0;
        for (int i = 0; i < n; i++) sb += r[(size_t)i * out_f + o];
        wdb[o] = (float)sb;
        for (int j = 0; j < in_f; j++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += (double)r[(size_t)i * out_f + o] * dc.in[(size_t)i * in_f + j];
            wdw[(size_t)o * in_f + j] = (float)s;
        }
    }
    test_allclose("dense backward data", din, wdin, (size_t)n * in_f, 1e-4, 1e-5);
    test_allclose("dense backward weights", dw, wdw, (size_t)out_f * in_f, 1e-4, 1e-5);
    if (use_bias) test_allclose("dense backward bias", db, wdb, out_f, 1e-4, 1e-5);
    if (fd) {
        fd_problem pr = {dense_fd_forward, dc.out, r, (size_t)n * out_f, &dc};
        fd_check("dense fd input", &pr, dc.in, (size_t)n * in_f, din, 1e-2f, 1e-2, 2e-3);
        fd_check("dense fd weights", &pr, dc.w, (size_t)out_f * in_f, dw, 1e-2f, 1e-2, 2e-3);
        if (use_bias) fd_check("dense fd bias", &pr, dc.b, out_f, db, 1e-2f, 1e-2, 2e-3);
    }
    free(dc.in), free(dc.w), free(dc.b), free(dc.out), free(want), free(r), free(din), free(dw), free(db);
    free(wdin), free(wdw), free(wdb);
}

static void test_dense(void) {
    dense_check(3, 7, 5, 1, 1);
    dense_check(4, 6, 3, 0, 1);
    dense_check(70, 150, 131, 1, 0); /* several gemm tiles */
}

/* ----------------------------------------------------------- elementwise */

typedef struct eltwise_case {
    eltwise_kind kind;
    float alpha;
    size_t n;
    float *in, *out;
} eltwise_case;

static void eltwise_fd_forward(fd_problem *pr) {
    eltwise_case *ec = pr->data;
    eltwise_forward_ref(ec->kind, ec->alpha, ec->n, ec->out, ec->in, 1);
}

static double eltwise_direct(eltwise_kind kind, double alpha, double x) {
    switch (kind) {
    case ELTWISE_RELU: return x > 0 ? x : 0;
    case ELTWISE_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case ELTWISE_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case ELTWISE_TANH: return tanh(x);
    case ELTWISE_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    default: return NAN;
    }
}

static void test_eltwise(void) {
    const size_t n = 50;
    for (int kind = 0; kind < ELTWISE_COUNT; kind++) {
        char what[64];
        eltwise_case ec = {(eltwise_kind)kind, 0.1f, n, frand(n, 71 + kind, -3, 3), test_falloc(n)};
        for (size_t i = 0; i < n; i++) /* keep away from the kink at 0 for differences */
            if (fabsf(ec.in[i]) < 0.05f) ec.in[i] = ec.in[i] < 0 ? -0.1f : 0.1f;
        float *want = test_falloc(n), *r = frand(n, 81, -1, 1), *din = test_falloc(n);
        eltwise_forward_ref(ec.kind, ec.alpha, n, ec.out, ec.in, 2);
        for (size_t i = 0; i < n; i++) want[i] = (float)eltwise_direct(ec.kind, ec.alpha, ec.in[i]);
        snprintf(what, sizeof what, "eltwise %d forward", kind);
        test_allclose(what, ec.out, want, n, 1e-6, 1e-7);
        eltwise_backward_ref(ec.kind, ec.alpha, n, din, r, ec.in, ec.out, 2);
        fd_problem pr = {eltwise_fd_forward, ec.out, r, n, &ec};
        snprintf(what, sizeof what, "eltwise %d fd", kind);
        fd_check(what, &pr, ec.in, n, din, 1e-3f, 1e-2, 1e-3);
        free(ec.in), free(ec.out), free(want), free(r), free(din);
    }
}

static void test_eltwise_edges(void) {
    const float x[6] = {0.0f, -0.0f, 100.0f, -100.0f, 1000.0f, -1000.0f};
    const float one[6] = {1, 1, 1, 1, 1, 1};
    float y[6], d[6];
    eltwise_forward_ref(ELTWISE_RELU, 0, 6, y, x, 1);
    eltwise_backward_ref(ELTWISE_RELU, 0, 6, d, one, x, y, 1);
    CHECK(d[0] == 0.0f && d[1] == 0.0f && d[2] == 1.0f && d[3] == 0.0f, "relu grad at 0: %g %g", d[0], d[1]);
    eltwise_forward_ref(ELTWISE_LEAKY_RELU, 0.2f, 6, y, x, 1);
    eltwise_backward_ref(ELTWISE_LEAKY_RELU, 0.2f, 6, d, one, x, y, 1);
    CHECK(y[3] == -20.0f && d[0] == 0.2f && d[2] == 1.0f, "leaky: %g %g", y[3], d[0]);
    eltwise_forward_ref(ELTWISE_SIGMOID, 0, 6, y, x, 1);
    CHECK(y[0] == 0.5f && y[2] == 1.0f && y[4] == 1.0f && y[5] == 0.0f, "sigmoid extremes %g %g", y[4], y[5]);
    CHECK(y[3] > 0.0f && y[3] < 1e-40f, "sigmoid(-100) = %g (stable form keeps the denormal)", y[3]);
    for (int i = 0; i < 6; i++) CHECK(isfinite(y[i]), "sigmoid(%g) not finite", x[i]);
    eltwise_backward_ref(ELTWISE_SIGMOID, 0, 6, d, one, x, y, 1);
    CHECK(d[0] == 0.25f && d[4] == 0.0f && isfinite(d[5]), "sigmoid grad %g %g", d[0], d[5]);
    eltwise_forward_ref(ELTWISE_TANH, 0, 6, y, x, 1);
    CHECK(y[4] == 1.0f && y[5] == -1.0f, "tanh extremes");
    const float nan_in = NAN;
    eltwise_forward_ref(ELTWISE_RELU, 0, 1, y, &nan_in, 1);
    CHECK(isnan(y[0]), "relu(NaN) = %g", y[0]);
}

/* -------------------------------------------------------------- softmax */

typedef struct softmax_case {
    size_t rows, cols;
    float *in, *out;
} softmax_case;

static void softmax_fd_forward(fd_problem *pr) {
    softmax_case *sc = pr->data;
    softmax_forward_ref(sc->rows, sc->cols, sc->out, sc->in);
}

static void test_softmax(void) {
    const size_t rows = 4, cols = 7, n = rows * cols;
    softmax_case sc = {rows, cols, frand(n, 91, -3, 3), test_falloc(n)};
    sc.in[cols] += 1000.0f; /* a huge logit must not overflow */
    float *want = test_falloc(n), *r = frand(n, 92, -1, 1), *din = test_falloc(n);
    softmax_forward_ref(rows, cols, sc.out, sc.in);
    for (size_t i = 0; i < rows; i++) {
        double mx = -INFINITY, s = 0;
        for (size_t j = 0; j < cols; j++) mx = fmax(mx, sc.in[i * cols + j]);
        for (size_t j = 0; j < cols; j++) s += exp(sc.in[i * cols + j] - mx);
        for (size_t j = 0; j < cols; j++) want[i * cols + j] = (float)(exp(sc.in[i * cols + j] - mx) / s);
    }
    test_allclose("softmax forward", sc.out, want, n, 1e-5, 1e-7);
    softmax_backward_ref(rows, cols, din, r, sc.out);
    fd_problem pr = {softmax_fd_forward, sc.out, r, n, &sc};
    fd_check("softmax fd", &pr, sc.in, n, din, 1e-2f, 2e-2, 2e-3);
    free(sc.in), free(sc.out), free(want), free(r), free(din);
}

/* ------------------------------------------------ global avgpool, concat, dropout */

typedef struct gap_case {
    int n, c, s;
    float *in, *out;
} gap_case;

static void gap_fd_forward(fd_problem *pr) {
    gap_case *gc = pr->data;
    global_avgpool_forward_ref(gc->n, gc->c, gc->s, gc->out, gc->in);
}

static void test_global_avgpool(void) {
    gap_case gc = {2, 3, 35, frand(210, 101, -1, 1), test_falloc(6)};
    float want[6], *r = frand(6, 102, -1, 1), *din = test_falloc(210);
    global_avgpool_forward_ref(gc.n, gc.c, gc.s, gc.out, gc.in);
    for (int i = 0; i < 6; i++) {
        double s = 0;
        for (int j = 0; j < 35; j++) s += gc.in[i * 35 + j];
        want[i] = (float)(s / 35);
    }
    test_allclose("global avgpool forward", gc.out, want, 6, 1e-6, 1e-7);
    global_avgpool_backward_ref(gc.n, gc.c, gc.s, din, r);
    fd_problem pr = {gap_fd_forward, gc.out, r, 6, &gc};
    fd_check("global avgpool fd", &pr, gc.in, 210, din, 1e-2f, 1e-2, 1e-3);
    free(gc.in), free(gc.out), free(r), free(din);

    /* channels-last input (N,S,C), C across the kernel's 64-channel blocks: the means
     * of the same planes, and the constant-time variant within an ulp too */
    enum { N = 2, C = 70, S = 9 };
    float *nchw = frand(N * C * S, 103, -3, 3), *nhwc = test_falloc(N * C * S);
    float a[N * C], b[N * C], ct[N * C];
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < S; i++) nhwc[(n * S + i) * C + c] = nchw[(n * C + c) * S + i];
    global_avgpool_forward_ref(N, C, S, a, nchw);
    global_avgpool_forward_nhwc(N, C, S, b, nhwc);
    global_avgpool_forward_ct(N, C, S, ct, nchw);
    test_allclose("global avgpool channels-last", b, a, N * C, 1e-6, 1e-7);
    test_allclose("global avgpool constant-time", ct, a, N * C, 1e-6, 1e-7);
    /* nChw16c with C = 70 (the last block padded by 10): the same means forward, and
     * backward the reference's gradient with zeros in the padding */
    enum { CB = (C + 15) / 16 };
    float *blk = test_falloc(N * CB * 16 * S), *bb = test_falloc(N * C);
    nchw_to_blocked16(N, C, S, blk, nchw, 1);
    global_avgpool_forward_blocked16(N, C, S, bb, blk);
    test_allclose("global avgpool nChw16c", bb, a, N * C, 1e-6, 1e-7);
    float *g = frand(N * C, 109, -1, 1), *dref = test_falloc(N * C * S), *dcl = test_falloc(N * CB * 16 * S);
    global_avgpool_backward_ref(N, C, S, dref, g);
    for (int i = 0; i < N * CB * 16 * S; i++) dcl[i] = 1.0f; /* the padding must be overwritten */
    global_avgpool_backward_blocked16(N, C, S, dcl, g);
    int same = 1;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < CB * 16; c++)
            for (int i = 0; i < S; i++) {
                const float v = dcl[((n * CB + c / 16) * S + i) * 16 + c % 16];
                same &= c < C ? v == dref[(n * C + c) * S + i] : v == 0.0f;
            }
    CHECK(same, "global avgpool nChw16c backward differs from the reference or leaves the padding");
    free(blk), free(bb);
    free(nchw), free(nhwc), free(g), free(dref), free(dcl);
}

typedef struct concat_case {
    int n, count;
    const size_t *sizes;
    float **ins, *out;
} concat_case;

static void concat_fd_forward(fd_problem *pr) {
    concat_case *cc = pr->data;
    concat_forward_ref(cc->n, cc->count, cc->sizes, cc->out, (const float *const *)cc->ins);
}

static void test_concat(void) {
    const size_t sizes[3] = {5, 1, 12}; /* e.g. (5,1,1), (1,1,1), (3,2,2) blocks */
    float *ins[3], *dins[3];
    for (int i = 0; i < 3; i++) ins[i] = frand(2 * sizes[i], 111 + i, -1, 1), dins[i] = test_falloc(2 * sizes[i]);
    concat_case cc = {2, 3, sizes, ins, test_falloc(36)};
    float *r = frand(36, 115, -1, 1);
    concat_forward_ref(2, 3, sizes, cc.out, (const float *const *)ins);
    int ok = 1;
    for (int row = 0; row < 2; row++) {
        size_t off = (size_t)row * 18;
        for (int i = 0; i < 3; i++)
            for (size_t j = 0; j < sizes[i]; j++) ok &= cc.out[off++] == ins[i][row * sizes[i] + j];
    }
    CHECK(ok, "concat forward layout");
    concat_backward_ref(2, 3, sizes, dins, r);
    fd_problem pr = {concat_fd_forward, cc.out, r, 36, &cc};
    for (int i = 0; i < 3; i++) {
        char what[48];
        snprintf(what, sizeof what, "concat fd input %d", i);
        fd_check(what, &pr, ins[i], 2 * sizes[i], dins[i], 1e-2f, 1e-2, 1e-3);
    }
    for (int i = 0; i < 3; i++) free(ins[i]), free(dins[i]);
    free(cc.out), free(r);
    /* the threaded copy: the reference's bits, on 1 to 3 threads, for one long row
     * (NCHW at batch 1), many short ones (channels-last) and a size below its cut-off */
    static const struct {
        int n, count;
        size_t sizes[4];
    } cases[] = {{1, 3, {64 * 3025, 64 * 3025, 7}}, {3025, 2, {64, 64}}, {9, 4, {5, 1, 12, 3}}, {40, 3, {1000, 3, 999}}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t total = 0;
        float *in[4];
        for (int i = 0; i < cases[c].count; i++) {
            total += (size_t)cases[c].n * cases[c].sizes[i];
            in[i] = frand((size_t)cases[c].n * cases[c].sizes[i], 120 + (uint64_t)i, -1, 1);
        }
        float *want = test_falloc(total), *got = test_falloc(total);
        concat_forward_ref(cases[c].n, cases[c].count, cases[c].sizes, want, (const float *const *)in);
        for (int t = 1; t <= 3; t++) {
            memset(got, 0, total * sizeof(float));
            concat_forward_par(cases[c].n, cases[c].count, cases[c].sizes, got, (const float *const *)in, t);
            CHECK(!memcmp(got, want, total * sizeof(float)), "concat case %zu on %d threads", c, t);
        }
        for (int i = 0; i < cases[c].count; i++) free(in[i]);
        free(want), free(got);
    }
}

typedef struct dropout_case {
    size_t n;
    float *in, *mask, *out;
} dropout_case;

static void dropout_fd_forward(fd_problem *pr) {
    dropout_case *dc = pr->data;
    dropout_apply_ref(dc->n, dc->out, dc->in, dc->mask);
}

static void test_dropout(void) {
    const size_t n = 40;
    dropout_case dc = {n, frand(n, 121, -1, 1), frand(n, 122, 0, 1), test_falloc(n)};
    for (size_t i = 0; i < n; i++) dc.mask[i] = dc.mask[i] < 0.3f ? 0.0f : 1.0f / 0.7f; /* p = 0.3 */
    float *r = frand(n, 123, -1, 1), *din = test_falloc(n);
    dropout_apply_ref(n, dc.out, dc.in, dc.mask);
    for (size_t i = 0; i < n; i++) CHECK(dc.out[i] == dc.in[i] * dc.mask[i], "dropout %zu", i);
    dropout_apply_ref(n, din, r, dc.mask); /* backward is the same product */
    fd_problem pr = {dropout_fd_forward, dc.out, r, n, &dc};
    fd_check("dropout fd", &pr, dc.in, n, din, 1e-2f, 1e-2, 1e-3);
    free(dc.in), free(dc.mask), free(dc.out), free(r), free(din);
}

/* ------------------------------------------------------- cross-entropy */

typedef struct xent_case {
    int n, classes;
    float *logits, smoothing, loss;
    const int32_t *labels;
} xent_case;

static void xent_fd_forward(fd_problem *pr) {
    xent_case *xc = pr->data;
    xc->loss = softmax_xent_ref(xc->n, xc->classes, xc->logits, xc->labels, xc->smoothing, NULL);
}

static void test_softmax_xent(void) {
    const int n = 4, classes = 5;
    const int32_t labels[4] = {0, 3, 4, 2};
    const float eps_list[2] = {0.0f, 0.1f};
    for (int e = 0; e < 2; e++) {
        char what[64];
        xent_case xc = {n, classes, frand(n * classes, 131, -2, 2), eps_list[e], 0, labels};
        xc.logits[classes + 1] = 60.0f; /* a confident logit must not overflow */
        float *dl = test_falloc(n * classes);
        const float loss = softmax_xent_ref(n, classes, xc.logits, labels, xc.smoothing, dl);
        /* PyTorch: (1-eps) nll + eps mean_j(-logp_j), averaged over the batch */
        double want = 0;
        for (int i = 0; i < n; i++) {
            const float *x = xc.logits + i * classes;
            double mx = -INFINITY, s = 0, sum_logp = 0;
            for (int j = 0; j < classes; j++) mx = fmax(mx, x[j]);
            for (int j = 0; j < classes; j++) s += exp(x[j] - mx);
            for (int j = 0; j < classes; j++) sum_logp += x[j] - mx - log(s);
            want += (1 - xc.smoothing) * -(x[labels[i]] - mx - log(s)) + xc.smoothing * -sum_logp / classes;
        }
        want /= n;
        CHECK_NEAR(loss, want, 1e-5, 1e-6);
        float one = 1.0f;
        fd_problem pr = {xent_fd_forward, &xc.loss, &one, 1, &xc};
        snprintf(what, sizeof what, "xent fd smoothing %g", xc.smoothing);
        fd_check(what, &pr, xc.logits, n * classes, dl, 1e-2f, 2e-2, 1e-3);
        free(xc.logits), free(dl);
    }
    /* an out-of-range label poisons the loss instead of reading out of bounds */
    const float lg[2] = {0, 1};
    const int32_t bad = 2;
    CHECK(isnan(softmax_xent_ref(1, 2, lg, &bad, 0, NULL)), "bad label not NaN");
    /* ignore_index: the ignored rows add nothing and get zero gradients; the others are
     * the plain loss of those rows alone (mean over them) */
    {
        enum { R = 5, K = 4 };
        float x[R * K], d[R * K], xs[3 * K], ds[3 * K];
        const int32_t y[R] = {2, -1, 0, -1, 3}, ys[3] = {2, 0, 3};
        test_fill_uniform(x, R * K, 41, -2.0f, 2.0f);
        for (int j = 0; j < K; j++) {
            xs[j] = x[j];
            xs[K + j] = x[2 * K + j];
            xs[2 * K + j] = x[4 * K + j];
        }
        int counted = 0;
        const float li = softmax_xent_ignore_ref(R, K, x, y, -1, 0.1f, d, &counted);
        const float ls = softmax_xent_ref(3, K, xs, ys, 0.1f, ds);
        CHECK(counted == 3 && li == ls, "ignore: loss %g vs %g over the 3 kept rows (%d counted)", li, ls, counted);
        for (int j = 0; j < K; j++) {
            CHECK(d[K + j] == 0.0f && d[3 * K + j] == 0.0f, "ignored rows get no gradient");
            CHECK(d[j] == ds[j] && d[2 * K + j] == ds[K + j] && d[4 * K + j] == ds[2 * K + j], "kept rows' gradient");
        }
        const int32_t none[2] = {-1, -1};
        CHECK(softmax_xent_ignore_ref(2, K, x, none, -1, 0.0f, d, &counted) == 0.0f && counted == 0,
              "every row ignored: loss 0");
    }
}

/* softmax_xent_vec against the reference: wide rows (a translator's vocabulary, odd
 * widths for the tails), ignored rows, smoothing, extreme logits (exp underflows, a
 * masked word at -inf: a finite loss without smoothing, +inf with it, as PyTorch),
 * large logits (the gradient keeps its digits), a bad label; the same bits on 1 and 2
 * threads. */
static void test_softmax_xent_vec(void) {
    const int widths[4] = {5, 17, 300, 11233};
    for (int w = 0; w < 4; w++) {
        const int K = widths[w], R = 37;
        float *x = test_falloc((size_t)R * K), *dr = test_falloc((size_t)R * K), *dv = test_falloc((size_t)R * K),
              *d2 = test_falloc((size_t)R * K);
        int32_t y[37];
        test_fill_uniform(x, (size_t)R * K, 77 + (uint64_t)w, -8.0f, 8.0f);
        for (int i = 0; i < R; i++) y[i] = i % 5 == 3 ? -1 : (int32_t)((i * 7919) % K);
        x[K + 1] = 95.0f;            /* a confident row: the others' exp underflow */
        x[2 * K] = -200.0f;          /* a word all but masked: exp underflows in float */
        x[4 * K] = -INFINITY;        /* a masked word (not row 4's label) */
        for (int j = 0; j < K; j++) x[5 * K + j] += 900.0f; /* large logits */
        for (int e = 0; e < 2; e++) {
            const float eps = e ? 0.1f : 0.0f;
            int cr = 0, cv = 0, c2 = 0;
            const float lr = softmax_xent_ignore_ref(R, K, x, y, -1, eps, dr, &cr);
            const float lv = softmax_xent_vec(R, K, x, y, -1, eps, dv, &cv, 1);
            const float l2 = softmax_xent_vec(R, K, x, y, -1, eps, d2, &c2, 2);
            CHECK(cr == cv && cv == c2, "counted %d %d %d", cr, cv, c2);
            if (e) CHECK(isinf(lv) && lv > 0 && lv == lr, "K %d: a -inf with smoothing: loss %g, reference %g", K, lv, lr);
            else CHECK_NEAR(lv, lr, 1e-5, 1e-6);
            CHECK(lv == l2 && !memcmp(dv, d2, sizeof *dv * (size_t)R * K), "K %d: threads change the bits", K);
            double worst = 0;
            for (size_t j = 0; j < (size_t)R * K; j++) {
                /* relative, with a floor: exp below 1e-38 is taken as about 1e-38 */
                const double err = fabs((double)dv[j] - dr[j]) / (fabs(dr[j]) + 1e-3);
                worst = err > worst ? err : worst;
            }
            CHECK(worst < 2e-5, "K %d eps %g: gradient off by %g relative", K, eps, worst);
        }
        free(x), free(dr), free(dv), free(d2);
    }
    const float lg[2] = {0, 1};
    const int32_t bad = 2;
    float d[2];
    CHECK(isnan(softmax_xent_vec(1, 2, lg, &bad, -1, 0, d, NULL, 1)) && isnan(d[0]), "bad label not NaN");
    const float nanrow[3] = {0, NAN, 1};
    const int32_t zero = 0;
    CHECK(isnan(softmax_xent_vec(1, 3, nanrow, &zero, -1, 0.1f, NULL, NULL, 1)), "a NaN logit: NaN loss");
}

int main(void) {
    RUN(test_gemm);
    RUN(test_gemm_determinism);
    RUN(test_conv_params);
    RUN(test_conv_shapes);
    RUN(test_conv_determinism);
    RUN(test_pool_shapes);
    RUN(test_pool_pytorch_values);
    RUN(test_batchnorm);
    RUN(test_batchnorm_infer);
    RUN(test_batchnorm_vec);
    RUN(test_batchnorm_blocked);
    RUN(test_dense);
    RUN(test_eltwise);
    RUN(test_eltwise_edges);
    RUN(test_softmax);
    RUN(test_global_avgpool);
    RUN(test_concat);
    RUN(test_dropout);
    RUN(test_softmax_xent);
    RUN(test_softmax_xent_vec);
    TEST_MAIN_END("test_ops_ref");
}
