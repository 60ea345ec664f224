/* The oneDNN fast paths against the reference kernels: every op, forward and
 * backward, through the dispatcher with TS_BACKEND_DNNL, on fixed and random shapes
 * (odd sizes, strides, padding, dilation, groups, depthwise, ceil_mode, both avg
 * divisors, no bias). Also checks that standard cases really run on oneDNN, that
 * the cases oneDNN cannot match fall back, and that oneDNN errors are reported. */
#include "common/test.h"
#include "ops/dispatch.h"

#include <stdint.h>

#define RTOL 1e-4

static ts_ctx *g_ctx; /* backend DNNL, 2 threads */

/* Deterministic shape generator (xorshift). */
static uint64_t g_rand = 0x9e3779b97f4a7c15ULL;
static int rand_int(int lo, int hi) { /* [lo, hi] */
    g_rand ^= g_rand << 13;
    g_rand ^= g_rand >> 7;
    g_rand ^= g_rand << 17;
    return lo + (int)(g_rand % (uint64_t)(hi - lo + 1));
}

static float *fvec(size_t n, unsigned long long seed, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    test_fill_uniform(x, n, seed, lo, hi);
    return x;
}

/* got ~ want within RTOL relative and 1e-5 of want's largest magnitude absolute */
static int close_to(const char *what, const float *got, const float *want, size_t n) {
    double big = 0;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs((double)want[i]));
    return test_allclose(what, got, want, n, RTOL, 1e-5 * fmax(big, 1e-3));
}

static int bit_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* ------------------------------------------------------------ convolution */

static const char *conv_str(const conv2d_params *p) {
    static char buf[200];
    snprintf(buf, sizeof buf, "n%d c%d %dx%d k%d kernel %dx%d stride %d,%d pad %d,%d dil %d,%d groups %d", p->n, p->c,
             p->h, p->w, p->k, p->kh, p->kw, p->sh, p->sw, p->ph, p->pw, p->dh, p->dw, p->groups);
    return buf;
}

/* Forward, backward data and backward weights of p through the dispatcher
 * (oneDNN) against the reference kernels. Returns 1 when all close. */
static int conv_compare(conv2d_params p, int with_bias, unsigned seed) {
    if (!conv2d_params_finish(&p)) {
        CHECK(0, "invalid test case %s", conv_str(&p));
        return 0;
    }
    size_t n_in = (size_t)p.n * p.c * p.h * p.w, n_out = (size_t)p.n * p.k * p.oh * p.ow;
    size_t n_w = (size_t)p.k * (p.c / p.groups) * p.kh * p.kw;
    float *in = fvec(n_in, seed, -1, 1), *w = fvec(n_w, seed + 1, -0.5f, 0.5f);
    float *bias = with_bias ? fvec(p.k, seed + 2, -1, 1) : NULL, *dout = fvec(n_out, seed + 3, -1, 1);
    float *out = fvec(n_out, 0, 0, 0), *out_ref = fvec(n_out, 0, 0, 0);
    float *din = fvec(n_in, 0, 0, 0), *din_ref = fvec(n_in, 0, 0, 0);
    float *dw = fvec(n_w, 0, 0, 0), *dw_ref = fvec(n_w, 0, 0, 0);
    float *db = fvec(p.k, 0, 0, 0), *db_ref = fvec(p.k, 0, 0, 0);
    size_t scratch_bytes = ops_conv2d_scratch_size(g_ctx, &p);
    void *scratch = malloc(scratch_bytes ? scratch_bytes : 1);
    int ok = 1;

    conv2d_forward_ref(&p, out_ref, in, w, bias, scratch, 2);
    conv2d_backward_data_ref(&p, din_ref, dout, w, scratch, 2);
    conv2d_backward_weights_ref(&p, dw_ref, with_bias ? db_ref : NULL, dout, in, scratch, 2);

    ts_status s = ops_conv2d_forward(g_ctx, &p, out, in, w, bias, scratch);
    CHECK(s == TS_OK, "%s: forward: %s", conv_str(&p), ts_ctx_error(g_ctx));
    ok &= close_to("conv forward", out, out_ref, n_out);
    s = ops_conv2d_backward_data(g_ctx, &p, din, dout, w, scratch);
    CHECK(s == TS_OK, "%s: backward data: %s", conv_str(&p), ts_ctx_error(g_ctx));
    ok &= close_to("conv backward data", din, din_ref, n_in);
    s = ops_conv2d_backward_weights(g_ctx, &p, dw, with_bias ? db : NULL, dout, in, scratch);
    CHECK(s == TS_OK, "%s: backward weights: %s", conv_str(&p), ts_ctx_error(g_ctx));
    ok &= close_to("conv backward weights", dw, dw_ref, n_w);
    if (with_bias) ok &= close_to("conv backward bias", db, db_ref, p.k);
    /* both passes in one call (the output gradient reordered once), and weights only */
    memset(din, 0, n_in * sizeof *din), memset(dw, 0, n_w * sizeof *dw), memset(db, 0, p.k * sizeof *db);
    s = ops_conv2d_backward(g_ctx, &p, din, dw, with_bias ? db : NULL, dout, in, w, scratch);
    CHECK(s == TS_OK, "%s: backward: %s", conv_str(&p), ts_ctx_error(g_ctx));
    ok &= close_to("conv backward (both) data", din, din_ref, n_in);
    ok &= close_to("conv backward (both) weights", dw, dw_ref, n_w);
    if (with_bias) ok &= close_to("conv backward (both) bias", db, db_ref, p.k);
    memset(dw, 0, n_w * sizeof *dw);
    s = ops_conv2d_backward(g_ctx, &p, NULL, dw, with_bias ? db : NULL, dout, in, w, scratch);
    CHECK(s == TS_OK, "%s: backward without din: %s", conv_str(&p), ts_ctx_error(g_ctx));
    ok &= close_to("conv backward (weights only)", dw, dw_ref, n_w);
    if (!ok) fprintf(stderr, "  case: %s%s\n", conv_str(&p), with_bias ? " bias" : "");

    free(in), free(w), free(bias), free(dout), free(out), free(out_ref), free(din), free(din_ref);
    free(dw), free(dw_ref), free(db), free(db_ref), free(scratch);
    return ok;
}

static conv2d_params conv(int n, int c, int h, int w, int k, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                          int dw, int groups) {
    conv2d_params p = {.n = n, .c = c, .h = h, .w = w, .k = k, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .ph = ph,
                       .pw = pw, .pbh = ph, .pbw = pw, .dh = dh, .dw = dw, .groups = groups};
    return p;
}

static void test_conv_fixed(void) {
    conv_compare(conv(2, 3, 9, 11, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1, 10);     /* standard 3x3 */
    conv_compare(conv(3, 5, 13, 10, 7, 3, 5, 2, 2, 1, 2, 1, 1, 1), 0, 20);    /* stride 2, no bias */
    conv_compare(conv(2, 4, 12, 13, 6, 3, 3, 1, 2, 2, 1, 2, 3, 1), 1, 30);    /* dilation */
    conv_compare(conv(2, 6, 8, 9, 9, 3, 3, 2, 1, 1, 0, 1, 1, 3), 1, 40);      /* groups */
    conv_compare(conv(2, 8, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8), 1, 50);    /* depthwise */
    conv_compare(conv(2, 4, 11, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4), 0, 60);     /* depthwise x2, stride 2 */
    conv_compare(conv(2, 16, 7, 7, 32, 1, 1, 1, 1, 0, 0, 1, 1, 1), 1, 70);    /* pointwise */
    conv_compare(conv(2, 16, 9, 9, 24, 1, 1, 2, 2, 0, 0, 1, 1, 1), 0, 80);    /* 1x1 stride 2 */
    conv_compare(conv(1, 3, 32, 32, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1), 1, 90);   /* CIFAR stem */
    conv_compare(conv(4, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1, 100); /* blocked layouts */
    conv_compare(conv(2, 3, 6, 5, 2, 7, 5, 1, 1, 3, 2, 1, 1, 1), 1, 110);     /* kernel > input */
}

/* nChw16c operands (training's blocked activations): a convolution with its input,
 * output or both blocked gives the NCHW reference's values in the blocked places,
 * forward and backward, on oneDNN and on the reference backend (NCHW copies). */
static void blocked_case(int c, int k, int src_blocked, int dst_blocked, ts_backend backend) {
    conv2d_params p = conv(3, c, 9, 9, k, 3, 3, 2, 2, 1, 1, 1, 1, 1);
    CHECK(conv2d_params_finish(&p), "blocked case");
    const int64_t hw = 81, ohw = (int64_t)p.oh * p.ow;
    const size_t n_in = (size_t)p.n * p.c * hw, n_out = (size_t)p.n * p.k * ohw, n_w = (size_t)p.k * p.c * 9;
    /* nChw16c pads the channels to 16 */
    const size_t nb_in = (size_t)p.n * (size_t)((c + 15) / 16 * 16) * hw, nb_out = (size_t)p.n * (size_t)((k + 15) / 16 * 16) * ohw;
    float *x = fvec(n_in, 201, -1, 1), *w = fvec(n_w, 202, -0.3f, 0.3f), *bias = fvec(p.k, 203, -1, 1);
    float *dy = fvec(n_out, 204, -1, 1), *y0 = fvec(n_out, 0, 0, 0), *dx0 = fvec(n_in, 0, 0, 0);
    float *dw0 = fvec(n_w, 0, 0, 0), *db0 = fvec(p.k, 0, 0, 0), *y = fvec(nb_out, 0, 0, 0), *dx = fvec(nb_in, 0, 0, 0);
    float *dw = fvec(n_w, 0, 0, 0), *db = fvec(p.k, 0, 0, 0), *xb = fvec(nb_in, 0, 0, 0), *dyb = fvec(nb_out, 0, 0, 0);
    float *back = fvec(nb_out > nb_in ? nb_out : nb_in, 0, 0, 0);
    float *t_out = fvec(n_out, 0, 0, 0), *t_in = fvec(n_in, 0, 0, 0);
    void *scratch = malloc(ops_conv2d_scratch_size(g_ctx, &p) + 1);
    char what[96];
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(!ops_conv2d_forward(g_ctx, &p, y0, x, w, bias, scratch), "reference forward: %s", ts_ctx_error(g_ctx));
    CHECK(!ops_conv2d_backward(g_ctx, &p, dx0, dw0, db0, dy, x, w, scratch), "reference backward");
    ts_ctx_set_backend(g_ctx, backend);
    conv2d_params q = p;
    q.src_blocked = src_blocked;
    q.dst_blocked = dst_blocked;
    nchw_to_blocked16(p.n, p.c, hw, xb, x, 1);
    nchw_to_blocked16(p.n, p.k, ohw, dyb, dy, 1);
    CHECK(!ops_conv2d_forward(g_ctx, &q, y, src_blocked ? xb : x, w, bias, scratch), "blocked forward: %s",
          ts_ctx_error(g_ctx));
    if (dst_blocked) blocked16_to_nchw(p.n, p.k, ohw, t_out, y, 1);
    snprintf(what, sizeof what, "conv forward, c %d k %d, src %d dst %d blocked, backend %d", c, k, src_blocked,
             dst_blocked, (int)backend);
    close_to(what, dst_blocked ? t_out : y, y0, n_out);
    /* a blocked output's padding is zero (the next layers rely on it) */
    if (dst_blocked) {
        nchw_to_blocked16(p.n, p.k, ohw, back, t_out, 1);
        CHECK(bit_equal(back, y, nb_out), "conv forward: nChw16c padding not zero (k %d, backend %d)", k, (int)backend);
    }
    CHECK(!ops_conv2d_backward(g_ctx, &q, dx, dw, db, dst_blocked ? dyb : dy, src_blocked ? xb : x, w, scratch),
          "blocked backward: %s", ts_ctx_error(g_ctx));
    if (src_blocked) blocked16_to_nchw(p.n, p.c, hw, t_in, dx, 1);
    snprintf(what, sizeof what, "conv backward data, c %d k %d, src %d dst %d blocked, backend %d", c, k, src_blocked,
             dst_blocked, (int)backend);
    close_to(what, src_blocked ? t_in : dx, dx0, n_in);
    if (src_blocked) {
        nchw_to_blocked16(p.n, p.c, hw, back, t_in, 1);
        CHECK(bit_equal(back, dx, nb_in), "conv backward data: nChw16c padding not zero (c %d, backend %d)", c,
              (int)backend);
    }
    close_to("conv backward weights, blocked", dw, dw0, n_w);
    close_to("conv backward bias, blocked", db, db0, (size_t)p.k);
    /* the two halves of the backward alone do not take blocked operands */
    if (src_blocked || dst_blocked)
        CHECK(ops_conv2d_backward_data(g_ctx, &q, dx, dy, w, scratch) == TS_EINVAL, "backward data took nChw16c");
    ts_ctx_clear_error(g_ctx);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    free(x), free(w), free(bias), free(dy), free(y0), free(dx0), free(dw0), free(db0), free(y), free(dx), free(dw);
    free(db), free(xb), free(dyb), free(t_out), free(t_in), free(back), free(scratch);
}

static void test_conv_blocked(void) {
    for (int b = 0; b < 2; b++) {
        const ts_backend be = b ? TS_BACKEND_REF : TS_BACKEND_DNNL;
        blocked_case(16, 32, 1, 1, be);
        blocked_case(16, 32, 0, 1, be);
        blocked_case(16, 32, 1, 0, be);
        blocked_case(13, 21, 1, 1, be); /* padded channels (a pruned network's widths) */
        blocked_case(13, 21, 0, 1, be);
        blocked_case(13, 21, 1, 0, be);
    }
    /* the layout helpers: a round trip, and the documented offset */
    float *x = fvec(2 * 32 * 5, 205, -1, 1), *b = fvec(2 * 32 * 5, 0, 0, 0), *back = fvec(2 * 32 * 5, 0, 0, 0);
    nchw_to_blocked16(2, 32, 5, b, x, 2);
    blocked16_to_nchw(2, 32, 5, back, b, 2);
    CHECK(bit_equal(back, x, 2 * 32 * 5), "nChw16c round trip");
    CHECK(b[((1 * 2 + 1) * 5 + 3) * 16 + 7] == x[(1 * 32 + 23) * 5 + 3], "nChw16c offset of sample 1, channel 23, position 3");
    free(x), free(b), free(back);
}

/* Winograd (ts_ctx_set_winograd): a 3x3 stride-1 convolution of 16+ channels in and
 * 32+ out. With TS_WINOGRAD_TRAINING the training forward and backward data run it
 * and stay within the tolerance of the reference; its outputs are not the direct
 * kernels' bits (so it did run). Packed inference with a ReLU and a residual, NCHW
 * and channels-last, where the residual is reordered into Winograd's blocked output,
 * against the reference. */
static void packed_residual_case(int nhwc, int wino) {
    conv2d_params p = conv(2, 16, 10, 10, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    CHECK(conv2d_params_finish(&p), "params");
    const size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.k * p.oh * p.ow, nw = (size_t)p.k * p.c * 9;
    float *x = fvec(nx, 5001, -1, 1), *w = fvec(nw, 5002, -0.3f, 0.3f), *b = fvec((size_t)p.k, 5003, -0.2f, 0.2f);
    float *res = fvec(ny, 5004, -1, 1), *want = fvec(ny, 0, 0, 0), *got = fvec(ny, 0, 0, 0);
    float *xl = fvec(nx, 0, 0, 0), *resl = fvec(ny, 0, 0, 0), *gotl = fvec(ny, 0, 0, 0);
    void *scratch = malloc(conv2d_scratch_size(&p) + 64);
    conv2d_forward_ref(&p, want, x, w, b, scratch, 2);
    for (size_t i = 0; i < ny; i++) want[i] = want[i] + res[i] > 0.0f ? want[i] + res[i] : 0.0f;
    /* channels-last copies: (N,C,H,W) -> (N,H,W,C) */
    for (int n = 0; n < p.n; n++)
        for (int c = 0; c < p.c; c++)
            for (int i = 0; i < p.h * p.w; i++) xl[((size_t)n * p.h * p.w + i) * p.c + c] = x[((size_t)n * p.c + c) * p.h * p.w + i];
    for (int n = 0; n < p.n; n++)
        for (int k = 0; k < p.k; k++)
            for (int i = 0; i < p.oh * p.ow; i++)
                resl[((size_t)n * p.oh * p.ow + i) * p.k + k] = res[((size_t)n * p.k + k) * p.oh * p.ow + i];
    ts_ctx *ctx = NULL;
    CHECK(ts_ctx_create(&ctx) == TS_OK && ts_ctx_set_threads(ctx, 1) == TS_OK, "ctx");
    CHECK(ts_ctx_set_winograd(ctx, wino ? TS_WINOGRAD_INFERENCE : TS_WINOGRAD_OFF) == TS_OK, "winograd");
    conv2d_packed_set *set = NULL;
    CHECK(conv2d_packed_set_create(ctx, 1, &set) == TS_OK, "set");
    const conv_act act = {CONV_ACT_CLAMP, 0.0f, INFINITY, 1};
    const unsigned flags = nhwc ? CONV_PACKED_SRC_NHWC | CONV_PACKED_DST_NHWC | CONV_PACKED_RES_NHWC : 0;
    CHECK(conv2d_packed_add(ctx, set, 0, &p, w, b, act, flags, NULL) == TS_OK, "packed: %s", ts_ctx_error(ctx));
    CHECK(conv2d_packed_run(ctx, set, 0, nhwc ? gotl : got, nhwc ? xl : x, nhwc ? resl : res) == TS_OK, "run: %s",
          ts_ctx_error(ctx));
    for (int n = 0; nhwc && n < p.n; n++)
        for (int k = 0; k < p.k; k++)
            for (int i = 0; i < p.oh * p.ow; i++)
                got[((size_t)n * p.k + k) * p.oh * p.ow + i] = gotl[((size_t)n * p.oh * p.ow + i) * p.k + k];
    if (!close_to("packed conv + residual + relu", got, want, ny))
        fprintf(stderr, "  case: winograd %d, channels-last %d\n", wino, nhwc);
    conv2d_packed_set_free(set);
    ts_ctx_free(ctx);
    free(x), free(w), free(b), free(res), free(want), free(got), free(xl), free(resl), free(gotl), free(scratch);
}

static void test_conv_winograd(void) {
    CHECK(ts_ctx_get_winograd(g_ctx) == TS_WINOGRAD_INFERENCE, "default: Winograd in inference only");
    CHECK(ts_ctx_set_winograd(g_ctx, (ts_winograd)7) == TS_EINVAL, "mode 7 accepted");
    ts_ctx_clear_error(g_ctx);
    conv2d_params p = conv(2, 32, 12, 12, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    CHECK(conv2d_params_finish(&p), "params");
    const size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.k * p.oh * p.ow, nw = (size_t)p.k * p.c * 9;
    float *x = fvec(nx, 4001, -1, 1), *w = fvec(nw, 4002, -0.3f, 0.3f), *dy = fvec(ny, 4003, -1, 1);
    float *y[2], *dx[2];
    void *scratch = malloc(ops_conv2d_scratch_size(g_ctx, &p) + 1);
    for (int wino = 0; wino < 2; wino++) {
        CHECK(ts_ctx_set_winograd(g_ctx, wino ? TS_WINOGRAD_TRAINING : TS_WINOGRAD_OFF) == TS_OK, "set");
        y[wino] = fvec(ny, 0, 0, 0), dx[wino] = fvec(nx, 0, 0, 0);
        CHECK(conv2d_forward_dnnl(g_ctx, &p, y[wino], x, w, NULL) == TS_OK, "fwd: %s", ts_ctx_error(g_ctx));
        CHECK(conv2d_backward_data_dnnl(g_ctx, &p, dx[wino], dy, w) == TS_OK, "bwd: %s", ts_ctx_error(g_ctx));
    }
    CHECK(!bit_equal(y[0], y[1], ny) && !bit_equal(dx[0], dx[1], nx), "Winograd gave the direct kernels' bits");
    /* every pass of a training mode within the reference's tolerance */
    CHECK(ts_ctx_set_winograd(g_ctx, TS_WINOGRAD_TRAINING) == TS_OK, "set");
    conv_compare(p, 1, 4100);
    conv_compare(conv(3, 16, 9, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0, 4200); /* odd sizes */
    CHECK(ts_ctx_set_winograd(g_ctx, TS_WINOGRAD_INFERENCE) == TS_OK, "set");
    for (int nhwc = 0; nhwc < 2; nhwc++)
        for (int wino = 0; wino < 2; wino++) packed_residual_case(nhwc, wino);
    free(x), free(w), free(dy), free(y[0]), free(y[1]), free(dx[0]), free(dx[1]), free(scratch);
}

static void test_conv_random(void) {
    int done = 0;
    for (int tries = 0; done < 24 && tries < 1000; tries++) {
        int g = rand_int(1, 3), depthwise = rand_int(0, 3) == 0;
        int c = g * rand_int(1, 3), k = g * rand_int(1, 3);
        if (depthwise) g = c = rand_int(2, 6), k = c * rand_int(1, 2);
        conv2d_params p = conv(rand_int(1, 3), c, rand_int(3, 14), rand_int(3, 14), k, rand_int(1, 4), rand_int(1, 4),
                               rand_int(1, 3), rand_int(1, 3), rand_int(0, 2), rand_int(0, 2), rand_int(1, 2),
                               rand_int(1, 2), g);
        conv2d_params q = p;
        if (!conv2d_params_finish(&q)) continue;
        if (!conv_compare(p, rand_int(0, 1), 1000 + (unsigned)done)) break; /* one report is enough */
        done++;
    }
    CHECK(done == 24, "only %d random cases ran", done);
}

/* ---------------------------------------------------------------- pooling */

static const char *pool_str(const pool2d_params *p) {
    static char buf[200];
    snprintf(buf, sizeof buf, "n%d c%d %dx%d kernel %dx%d stride %d,%d pad %d,%d%s%s", p->n, p->c, p->h, p->w, p->kh,
             p->kw, p->sh, p->sw, p->ph, p->pw, p->ceil_mode ? " ceil" : "",
             p->count_include_pad ? " include_pad" : " exclude_pad");
    return buf;
}

static pool2d_params pool(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int ceil_mode,
                          int include_pad) {
    pool2d_params p = {.n = n, .c = c, .h = h, .w = w, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .ph = ph, .pw = pw,
                       .pbh = ph, .pbw = pw, .dh = 1, .dw = 1, .ceil_mode = ceil_mode, .count_include_pad = include_pad};
    return p;
}

static int maxpool_compare(pool2d_params p, unsigned seed) {
    if (!pool2d_params_finish(&p)) {
        CHECK(0, "invalid test case %s", pool_str(&p));
        return 0;
    }
    size_t n_in = (size_t)p.n * p.c * p.h * p.w, n_out = (size_t)p.n * p.c * p.oh * p.ow;
    float *in = fvec(n_in, seed, -1, 1), *dout = fvec(n_out, seed + 1, -1, 1);
    float *out = fvec(n_out, 0, 0, 0), *out_ref = fvec(n_out, 0, 0, 0), *out_infer = fvec(n_out, 0, 0, 0);
    float *din = fvec(n_in, 0, 0, 0), *din_ref = fvec(n_in, 0, 0, 0);
    int32_t *argmax = malloc(n_out * sizeof *argmax);
    size_t ws_bytes = ops_maxpool2d_workspace_size(g_ctx, &p);
    CHECK(ws_bytes >= n_out * sizeof(int32_t), "%s: workspace %zu bytes", pool_str(&p), ws_bytes);
    void *ws = malloc(ws_bytes);
    int ok = 1;

    maxpool2d_forward_ref(&p, out_ref, argmax, in, 2);
    maxpool2d_backward_ref(&p, din_ref, dout, argmax, 2);
    ts_status s = ops_maxpool2d_forward(g_ctx, &p, out, ws, in);
    CHECK(s == TS_OK, "%s: forward: %s", pool_str(&p), ts_ctx_error(g_ctx));
    s = ops_maxpool2d_forward(g_ctx, &p, out_infer, NULL, in);
    CHECK(s == TS_OK, "%s: inference forward: %s", pool_str(&p), ts_ctx_error(g_ctx));
    s = ops_maxpool2d_backward(g_ctx, &p, din, dout, ws);
    CHECK(s == TS_OK, "%s: backward: %s", pool_str(&p), ts_ctx_error(g_ctx));
    /* a max is a copy and its gradient a sum of copies: exact up to summation order */
    ok &= close_to("maxpool forward", out, out_ref, n_out);
    ok &= close_to("maxpool inference forward", out_infer, out_ref, n_out);
    ok &= close_to("maxpool backward", din, din_ref, n_in);
    if (!ok) fprintf(stderr, "  case: %s\n", pool_str(&p));
    free(in), free(dout), free(out), free(out_ref), free(out_infer), free(din), free(din_ref), free(argmax);
    free(ws);
    return ok;
}

/* *fell_back: set to whether oneDNN declined the case. */
static int avgpool_compare(pool2d_params p, unsigned seed, int *fell_back) {
    if (!pool2d_params_finish(&p)) {
        CHECK(0, "invalid test case %s", pool_str(&p));
        return 0;
    }
    size_t n_in = (size_t)p.n * p.c * p.h * p.w, n_out = (size_t)p.n * p.c * p.oh * p.ow;
    float *in = fvec(n_in, seed, -1, 1), *dout = fvec(n_out, seed + 1, -1, 1);
    float *out = fvec(n_out, 0, 0, 0), *out_ref = fvec(n_out, 0, 0, 0);
    float *din = fvec(n_in, 0, 0, 0), *din_ref = fvec(n_in, 0, 0, 0);
    int ok = 1;

    avgpool2d_forward_ref(&p, out_ref, in, 2);
    avgpool2d_backward_ref(&p, din_ref, dout, 2);
    ts_status direct = avgpool2d_forward_dnnl(g_ctx, &p, out, in);
    CHECK(direct == TS_OK || direct == TS_EUNSUPPORTED, "%s: %s", pool_str(&p), ts_ctx_error(g_ctx));
    if (fell_back) *fell_back = direct == TS_EUNSUPPORTED;
    CHECK(avgpool2d_backward_dnnl(g_ctx, &p, din, dout) == direct, "%s: forward and backward disagree on support",
          pool_str(&p));
    ts_status s = ops_avgpool2d_forward(g_ctx, &p, out, in);
    CHECK(s == TS_OK, "%s: forward: %s", pool_str(&p), ts_ctx_error(g_ctx));
    s = ops_avgpool2d_backward(g_ctx, &p, din, dout);
    CHECK(s == TS_OK, "%s: backward: %s", pool_str(&p), ts_ctx_error(g_ctx));
    ok &= close_to("avgpool forward", out, out_ref, n_out);
    ok &= close_to("avgpool backward", din, din_ref, n_in);
    if (!ok) fprintf(stderr, "  case: %s\n", pool_str(&p));
    free(in), free(dout), free(out), free(out_ref), free(din), free(din_ref);
    return ok;
}

static void test_pool_fixed(void) {
    static const pool2d_params cases[] = {
        {.n = 2, .c = 3, .h = 8, .w = 8, .kh = 2, .kw = 2, .sh = 2, .sw = 2},
        {.n = 2, .c = 3, .h = 9, .w = 11, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1},
        {.n = 2, .c = 3, .h = 9, .w = 11, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .ceil_mode = 1},
        {.n = 1, .c = 4, .h = 10, .w = 7, .kh = 3, .kw = 2, .sh = 2, .sw = 2, .ceil_mode = 1},
        {.n = 3, .c = 2, .h = 7, .w = 7, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
        {.n = 2, .c = 5, .h = 13, .w = 6, .kh = 4, .kw = 2, .sh = 3, .sw = 1, .ph = 2, .pw = 0, .ceil_mode = 1},
        {.n = 2, .c = 2, .h = 5, .w = 5, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .ph = 2, .pw = 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pool2d_params c = cases[i]; /* symmetric, dense */
        c.pbh = c.ph, c.pbw = c.pw, c.dh = c.dw = 1;
        maxpool_compare(c, 200 + (unsigned)i);
        for (int include = 0; include <= 1; include++) {
            pool2d_params p = c;
            p.count_include_pad = include;
            avgpool_compare(p, 300 + (unsigned)i, NULL);
        }
    }
}

static void test_pool_random(void) {
    int done = 0, fell_back = 0;
    for (int tries = 0; done < 30 && tries < 1000; tries++) {
        int kh = rand_int(1, 4), kw = rand_int(1, 4);
        pool2d_params p = pool(rand_int(1, 3), rand_int(1, 5), rand_int(3, 15), rand_int(3, 15), kh, kw,
                               rand_int(1, 3), rand_int(1, 3), rand_int(0, kh / 2), rand_int(0, kw / 2),
                               rand_int(0, 1), rand_int(0, 1));
        pool2d_params q = p;
        if (!pool2d_params_finish(&q)) continue;
        int fb = 0;
        if (!maxpool_compare(p, 2000 + (unsigned)done) || !avgpool_compare(p, 3000 + (unsigned)done, &fb)) break;
        fell_back += fb;
        done++;
    }
    CHECK(done == 30, "only %d random cases ran", done);
    CHECK(fell_back < done / 2, "%d of %d random average poolings fell back", fell_back, done);
}

/* PyTorch's divisor for a ceil_mode window past the symmetric padding counts only
 * up to H+ph; oneDNN would divide by kh*kw: that case must fall back (and match). */
static void test_avgpool_ceil_include_pad_falls_back(void) {
    pool2d_params p = pool(2, 3, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1);
    pool2d_params q = p;
    CHECK(pool2d_params_finish(&q) && q.oh == 4, "oh %d", q.oh); /* last window rows 5..7, H+ph = 7 */
    int fell_back = 0;
    avgpool_compare(p, 400, &fell_back);
    CHECK(fell_back, "oneDNN was used where its divisor differs from PyTorch's");
    p.count_include_pad = 0; /* excluding padding the divisors agree */
    avgpool_compare(p, 401, &fell_back);
    CHECK(!fell_back, "exclude-padding ceil_mode pooling fell back");
    p.count_include_pad = 1, p.ceil_mode = 0; /* floor mode: no window passes H+ph */
    avgpool_compare(p, 402, &fell_back);
    CHECK(!fell_back, "floor-mode include-padding pooling fell back");
}

/* ------------------------------------------------------------- batch norm */

static int bn_compare(int n, int c, int spatial, unsigned seed) {
    bn_params p = {.n = n, .c = c, .spatial = spatial, .eps = 1e-5f};
    size_t count = (size_t)n * c * spatial;
    float *in = fvec(count, seed, -2, 3), *dout = fvec(count, seed + 1, -1, 1);
    float *gamma = fvec(c, seed + 2, 0.5f, 1.5f), *beta = fvec(c, seed + 3, -0.5f, 0.5f);
    float *rmean = fvec(c, seed + 4, -0.5f, 0.5f), *rvar = fvec(c, seed + 5, 0.5f, 2.0f);
    float *out = fvec(count, 0, 0, 0), *out_ref = fvec(count, 0, 0, 0);
    float *mean = fvec(c, 0, 0, 0), *mean_ref = fvec(c, 0, 0, 0), *var = fvec(c, 0, 0, 0), *var_ref = fvec(c, 0, 0, 0);
    float *din = fvec(count, 0, 0, 0), *din_ref = fvec(count, 0, 0, 0);
    float *dg = fvec(c, 0, 0, 0), *dg_ref = fvec(c, 0, 0, 0), *dbeta = fvec(c, 0, 0, 0), *dbeta_ref = fvec(c, 0, 0, 0);
    int ok = 1;

    batchnorm_forward_train_ref(&p, out_ref, mean_ref, var_ref, in, gamma, beta, 2);
    ts_status s = ops_batchnorm_forward_train(g_ctx, &p, out, mean, var, in, gamma, beta);
    CHECK(s == TS_OK, "forward train: %s", ts_ctx_error(g_ctx));
    ok &= close_to("bn train out", out, out_ref, count);
    ok &= close_to("bn mean", mean, mean_ref, c);
    ok &= close_to("bn var", var, var_ref, c);

    batchnorm_backward_ref(&p, din_ref, dg_ref, dbeta_ref, dout, in, gamma, mean_ref, var_ref, 2);
    s = ops_batchnorm_backward(g_ctx, &p, din, dg, dbeta, dout, in, gamma, mean_ref, var_ref);
    CHECK(s == TS_OK, "backward: %s", ts_ctx_error(g_ctx));
    ok &= close_to("bn din", din, din_ref, count);
    ok &= close_to("bn dgamma", dg, dg_ref, c);
    ok &= close_to("bn dbeta", dbeta, dbeta_ref, c);

    batchnorm_forward_infer_ref(&p, out_ref, in, gamma, beta, rmean, rvar, 2);
    s = ops_batchnorm_forward_infer(g_ctx, &p, out, in, gamma, beta, rmean, rvar);
    CHECK(s == TS_OK, "forward infer: %s", ts_ctx_error(g_ctx));
    ok &= close_to("bn infer out", out, out_ref, count);
    if (!ok) fprintf(stderr, "  case: n%d c%d spatial %d\n", n, c, spatial);

    free(in), free(dout), free(gamma), free(beta), free(rmean), free(rvar), free(out), free(out_ref);
    free(mean), free(mean_ref), free(var), free(var_ref), free(din), free(din_ref);
    free(dg), free(dg_ref), free(dbeta), free(dbeta_ref);
    return ok;
}

static void test_batchnorm(void) {
    bn_compare(4, 3, 25, 500);   /* after a convolution */
    bn_compare(7, 5, 1, 510);    /* after a dense layer */
    bn_compare(2, 16, 49, 520);  /* 16 channels: blocked kernels */
    bn_compare(3, 19, 13, 530);  /* odd channel count */
    bn_compare(32, 8, 64, 540);  /* larger batch */
    for (int i = 0; i < 6; i++) bn_compare(rand_int(2, 6), rand_int(1, 20), rand_int(1, 30), 550 + (unsigned)i);
}

/* ----------------------------------------------------------- dense layer */

static int dense_compare(int n, int in_f, int out_f, int with_bias, unsigned seed) {
    size_t n_in = (size_t)n * in_f, n_out = (size_t)n * out_f, n_w = (size_t)out_f * in_f;
    float *in = fvec(n_in, seed, -1, 1), *w = fvec(n_w, seed + 1, -0.5f, 0.5f), *dout = fvec(n_out, seed + 2, -1, 1);
    float *bias = with_bias ? fvec(out_f, seed + 3, -1, 1) : NULL;
    float *out = fvec(n_out, 0, 0, 0), *out_ref = fvec(n_out, 0, 0, 0);
    float *din = fvec(n_in, 0, 0, 0), *din_ref = fvec(n_in, 0, 0, 0);
    float *dw = fvec(n_w, 0, 0, 0), *dw_ref = fvec(n_w, 0, 0, 0);
    float *db = fvec(out_f, 0, 0, 0), *db_ref = fvec(out_f, 0, 0, 0);
    int ok = 1;

    dense_forward_ref(n, in_f, out_f, out_ref, in, w, bias, 2);
    dense_backward_data_ref(n, in_f, out_f, din_ref, dout, w, 2);
    dense_backward_weights_ref(n, in_f, out_f, dw_ref, with_bias ? db_ref : NULL, dout, in, 2);
    CHECK(ops_dense_forward(g_ctx, n, in_f, out_f, out, in, w, bias) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ops_dense_backward_data(g_ctx, n, in_f, out_f, din, dout, w) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ops_dense_backward_weights(g_ctx, n, in_f, out_f, dw, with_bias ? db : NULL, dout, in) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    ok &= close_to("dense forward", out, out_ref, n_out);
    ok &= close_to("dense backward data", din, din_ref, n_in);
    ok &= close_to("dense backward weights", dw, dw_ref, n_w);
    if (with_bias) ok &= close_to("dense backward bias", db, db_ref, out_f);
    if (!ok) fprintf(stderr, "  case: n%d in %d out %d%s\n", n, in_f, out_f, with_bias ? " bias" : "");

    free(in), free(w), free(dout), free(bias), free(out), free(out_ref), free(din), free(din_ref);
    free(dw), free(dw_ref), free(db), free(db_ref);
    return ok;
}

static void test_dense(void) {
    dense_compare(5, 17, 9, 1, 600);
    dense_compare(5, 17, 9, 0, 610);
    dense_compare(1, 1, 1, 1, 620);
    dense_compare(33, 64, 10, 1, 630);
    dense_compare(8, 300, 7, 0, 640);
    dense_compare(64, 128, 100, 1, 650);
    for (int i = 0; i < 6; i++)
        dense_compare(rand_int(1, 20), rand_int(1, 70), rand_int(1, 40), rand_int(0, 1), 660 + (unsigned)i);
}

/* ------------------------------------------------------------ matrix product */

/* oneDNN's sgemm against the reference: one B for every matrix (the stacked-rows
 * product), and A broadcast against three B matrices (one product each). */
static void test_matmul(void) {
    static const matmul_params cases[] = {
        {3, 5, 7, 4, 1, {2}, {1}, {0}, 2, 1, 2},
        {2, 6, 33, 17, 1, {3}, {0}, {1}, 1, 3, 3},
        {1, 49, 96, 384, 0, {0}, {0}, {0}, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const matmul_params *q = &cases[i];
        const size_t na = (size_t)q->n * (size_t)(q->a_count * q->m * q->k), nb = (size_t)(q->b_count * q->k * q->p);
        const size_t nc = (size_t)q->n * (size_t)(q->c_count * q->m * q->p);
        float *a = fvec(na, 700 + i, -1, 1), *b = fvec(nb, 710 + i, -1, 1);
        float *c = fvec(nc, 0, 0, 0), *c_ref = fvec(nc, 0, 0, 0);
        matmul_forward_ref(q, c_ref, a, b, 2);
        CHECK(ops_matmul_forward(g_ctx, q, c, a, b) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!close_to("matmul forward", c, c_ref, nc)) fprintf(stderr, "  case %zu\n", i);
        free(a), free(b), free(c), free(c_ref);
    }
}

/* ------------------------------------------------------------ softmax */

/* oneDNN's softmax and log-softmax against the reference: rows (an attention's), a
 * middle axis with inner > 1, a single column, large logits. */
static void test_softmax(void) {
    static const size_t shapes[][3] = {{12 * 7, 197, 1}, {3, 10, 5}, {4, 1, 3}, {2, 33, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int lg = 0; lg < 2; lg++) {
            const size_t outer = shapes[i][0], len = shapes[i][1], inner = shapes[i][2], n = outer * len * inner;
            float *in = fvec(n, 800 + i, -30, 30), *out = fvec(n, 0, 0, 0), *want = fvec(n, 0, 0, 0);
            softmax_axis_forward_ref(outer, len, inner, lg, want, in, 2);
            CHECK(ops_softmax_forward(g_ctx, outer, len, inner, lg, out, in) == TS_OK, "%s", ts_ctx_error(g_ctx));
            if (!close_to(lg ? "log-softmax" : "softmax", out, want, n))
                fprintf(stderr, "  case %zux%zux%zu\n", outer, len, inner);
            free(in), free(out), free(want);
        }
}

/* ------------------------------------------------------------ elementwise */

static void test_eltwise(void) {
    static const size_t counts[] = {1, 17, 1000, 4099};
    static const char *const names[ELTWISE_COUNT] = {"relu", "leaky relu", "sigmoid", "tanh", "gelu"};
    for (int kind = 0; kind < ELTWISE_COUNT; kind++) {
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = counts[ci];
            float alpha = kind == ELTWISE_LEAKY_RELU ? 0.1f : 0.0f;
            float *in = fvec(n, 700 + ci, -4, 4), *dout = fvec(n, 710 + ci, -1, 1);
            for (size_t i = 0; i < n; i += 7) in[i] = 0.0f; /* the kink of relu */
            float *out = fvec(n, 0, 0, 0), *out_ref = fvec(n, 0, 0, 0);
            float *din = fvec(n, 0, 0, 0), *din_ref = fvec(n, 0, 0, 0);
            eltwise_forward_ref(kind, alpha, n, out_ref, in, 2);
            eltwise_backward_ref(kind, alpha, n, din_ref, dout, in, out_ref, 2);
            CHECK(ops_eltwise_forward(g_ctx, kind, alpha, n, out, in) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(ops_eltwise_backward(g_ctx, kind, alpha, n, din, dout, in, out) == TS_OK, "%s",
                  ts_ctx_error(g_ctx));
            int ok = close_to("eltwise forward", out, out_ref, n);
            ok &= close_to("eltwise backward", din, din_ref, n);
            if (!ok) fprintf(stderr, "  case: %s count %zu\n", names[kind], n);
            free(in), free(dout), free(out), free(out_ref), free(din), free(din_ref);
        }
    }
}

/* ----------------------------------------------- the dispatcher uses oneDNN */

/* Standard cases: the oneDNN kernel accepts them, and the dispatcher's result is
 * bit for bit the oneDNN kernel's (deterministic on a fixed thread count). */
static void test_dispatch_reaches_dnnl(void) {
    conv2d_params p = conv(2, 16, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    CHECK(conv2d_params_finish(&p), "conv params");
    size_t n_in = (size_t)p.n * p.c * p.h * p.w, n_out = (size_t)p.n * p.k * p.oh * p.ow, n_w = (size_t)16 * 16 * 9;
    float *in = fvec(n_in, 800, -1, 1), *w = fvec(n_w, 801, -1, 1), *b = fvec(16, 802, -1, 1);
    float *a = fvec(n_out, 0, 0, 0), *d = fvec(n_out, 0, 0, 0);
    void *scratch = malloc(ops_conv2d_scratch_size(g_ctx, &p) + 1);
    CHECK(conv2d_forward_dnnl(g_ctx, &p, a, in, w, b) == TS_OK, "conv: %s", ts_ctx_error(g_ctx));
    CHECK(ops_conv2d_forward(g_ctx, &p, d, in, w, b, scratch) == TS_OK, "conv: %s", ts_ctx_error(g_ctx));
    CHECK(bit_equal(a, d, n_out), "conv dispatch did not take the oneDNN path");
    CHECK(g_ctx->dnnl != NULL, "no oneDNN engine on the ctx");
    free(in), free(w), free(b), free(a), free(d), free(scratch);

    pool2d_params q = pool(2, 3, 10, 9, 3, 3, 2, 2, 1, 1, 1, 0); /* ceil adds a row */
    CHECK(pool2d_params_finish(&q), "pool params");
    n_in = (size_t)q.n * q.c * q.h * q.w, n_out = (size_t)q.n * q.c * q.oh * q.ow;
    in = fvec(n_in, 810, -1, 1);
    float *dout = fvec(n_out, 811, -1, 1), *din = fvec(n_in, 0, 0, 0), *din_ref = fvec(n_in, 0, 0, 0);
    a = fvec(n_out, 0, 0, 0), d = fvec(n_out, 0, 0, 0);
    void *ws = malloc(ops_maxpool2d_workspace_size(g_ctx, &q));
    int32_t *argmax = malloc(n_out * sizeof *argmax);
    CHECK(maxpool2d_forward_dnnl(g_ctx, &q, a, ws, in) == TS_OK, "maxpool: %s", ts_ctx_error(g_ctx));
    CHECK(avgpool2d_forward_dnnl(g_ctx, &q, d, in) == TS_OK, "avgpool: %s", ts_ctx_error(g_ctx));
    q.count_include_pad = 1;
    CHECK(avgpool2d_forward_dnnl(g_ctx, &q, d, in) == TS_EUNSUPPORTED, "ceil include-pad avgpool taken by oneDNN");
    q.ceil_mode = 0;
    CHECK(pool2d_params_finish(&q), "pool params");
    CHECK(avgpool2d_forward_dnnl(g_ctx, &q, d, in) == TS_OK, "avgpool: %s", ts_ctx_error(g_ctx));
    q.ceil_mode = 1, q.count_include_pad = 0;
    CHECK(pool2d_params_finish(&q), "pool params");
    /* the dispatcher's backward reads oneDNN's workspace as written by oneDNN */
    CHECK(ops_maxpool2d_backward(g_ctx, &q, din, dout, ws) == TS_OK, "%s", ts_ctx_error(g_ctx));
    maxpool2d_forward_ref(&q, d, argmax, in, 1);
    maxpool2d_backward_ref(&q, din_ref, dout, argmax, 1);
    close_to("maxpool backward from oneDNN workspace", din, din_ref, n_in);
    free(in), free(dout), free(din), free(din_ref), free(a), free(d), free(ws), free(argmax);

    bn_params bp = {.n = 4, .c = 8, .spatial = 9, .eps = 1e-5f};
    float *x = fvec(288, 820, -1, 1), *y = fvec(288, 0, 0, 0), *gm = fvec(8, 821, 0.5f, 1), *bt = fvec(8, 822, 0, 1);
    float *m = fvec(8, 0, 0, 0), *v = fvec(8, 0, 0, 0), *dg = fvec(16, 0, 0, 0), *db = fvec(16, 0, 0, 0);
    CHECK(batchnorm_forward_train_dnnl(g_ctx, &bp, y, m, v, x, gm, bt) == TS_OK, "bn: %s", ts_ctx_error(g_ctx));
    CHECK(batchnorm_forward_infer_dnnl(g_ctx, &bp, y, x, gm, bt, m, v) == TS_OK, "bn: %s", ts_ctx_error(g_ctx));
    CHECK(batchnorm_backward_dnnl(g_ctx, &bp, y, dg, db, x, x, gm, m, v) == TS_OK, "bn: %s", ts_ctx_error(g_ctx));
    CHECK(dense_forward_dnnl(g_ctx, 4, 72, 4, y, x, x, NULL) == TS_OK, "dense: %s", ts_ctx_error(g_ctx));
    CHECK(dense_backward_data_dnnl(g_ctx, 4, 8, 9, y, x, x) == TS_OK, "dense: %s", ts_ctx_error(g_ctx));
    CHECK(dense_backward_weights_dnnl(g_ctx, 4, 8, 9, y, db, x, x) == TS_OK, "dense: %s", ts_ctx_error(g_ctx));
    for (int kind = 0; kind < ELTWISE_COUNT; kind++) {
        CHECK(eltwise_forward_dnnl(g_ctx, kind, 0.2f, 288, y, x) == TS_OK, "eltwise: %s", ts_ctx_error(g_ctx));
        CHECK(eltwise_backward_dnnl(g_ctx, kind, 0.2f, 288, x, x, y, y) == TS_OK, "eltwise: %s", ts_ctx_error(g_ctx));
    }
    free(x), free(y), free(gm), free(bt), free(m), free(v), free(dg), free(db);
    CHECK(ts_ctx_status(g_ctx) == TS_OK, "an error was recorded: %s", ts_ctx_error(g_ctx));
}

/* Under TS_BACKEND_REF the dispatcher never touches oneDNN. */
static void test_dispatch_ref_backend(void) {
    ts_ctx *ctx = NULL;
    CHECK(ts_ctx_create(&ctx) == TS_OK && ts_ctx_set_backend(ctx, TS_BACKEND_REF) == TS_OK, "ctx");
    if (!ctx) return;
    float in[12], out[12], want[12];
    test_fill_uniform(in, 12, 900, -1, 1);
    CHECK(ops_eltwise_forward(ctx, ELTWISE_TANH, 0, 12, out, in) == TS_OK, "%s", ts_ctx_error(ctx));
    eltwise_forward_ref(ELTWISE_TANH, 0, 12, want, in, 1);
    CHECK(bit_equal(out, want, 12), "ref backend result differs from the ref kernel");
    CHECK(ctx->dnnl == NULL, "ref backend created a oneDNN engine");
    ts_ctx_free(ctx);
}

/* A case oneDNN rejects as invalid is an error on ctx naming the primitive and the
 * call, returned by the dispatcher (no silent fallback). */
static void test_dnnl_error_reported(void) {
    conv2d_params p = conv(1, 2, 5, 5, 2, 3, 3, 1, 1, 0, 0, 1, 1, 1);
    CHECK(conv2d_params_finish(&p), "params");
    p.oh = 4; /* inconsistent with the geometry (3) */
    float in[50] = {0}, w[36] = {0}, out[2 * 4 * 3] = {0};
    char scratch[4096];
    ts_status s = ops_conv2d_forward(g_ctx, &p, out, in, w, NULL, scratch);
    CHECK(s == TS_EINVAL, "status %d", (int)s);
    CHECK(strstr(ts_ctx_error(g_ctx), "convolution forward") && strstr(ts_ctx_error(g_ctx), "desc_init"),
          "message: %s", ts_ctx_error(g_ctx));
    ts_ctx_clear_error(g_ctx);

    /* a missing tensor is an error, not a buffer oneDNN makes up */
    bn_params bp = {.n = 2, .c = 1, .spatial = 25, .eps = 1e-5f};
    float var[1], gamma[1] = {1}, beta[1] = {0};
    s = ops_batchnorm_forward_train(g_ctx, &bp, in, NULL, var, in, gamma, beta);
    CHECK(s == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "batch normalization"), "status %d: %s", (int)s,
          ts_ctx_error(g_ctx));
    ts_ctx_clear_error(g_ctx);
}

/* The engine and stream are made once per ctx and freed with it; repeated
 * create/use/free must not leak (ASan) */
static void test_ctx_lifecycle(void) {
    for (int i = 0; i < 3; i++) {
        ts_ctx *ctx = NULL;
        CHECK(ts_ctx_create(&ctx) == TS_OK, "ctx");
        if (!ctx) return;
        ts_ctx_set_threads(ctx, 1 + i);
        float x[8] = {-1, 2, -3, 4, -5, 6, -7, 8}, y[8];
        CHECK(ops_eltwise_forward(ctx, ELTWISE_RELU, 0, 8, y, x) == TS_OK, "%s", ts_ctx_error(ctx));
        CHECK(y[0] == 0 && y[1] == 2, "relu");
        void *first = ctx->dnnl;
        CHECK(ops_eltwise_forward(ctx, ELTWISE_RELU, 0, 8, y, x) == TS_OK, "%s", ts_ctx_error(ctx));
        CHECK(first && ctx->dnnl == first, "engine not kept on the ctx");
        ts_ctx_free(ctx);
    }
}

int main(void) {
    if (ts_ctx_create(&g_ctx) != TS_OK) return 2;
    ts_ctx_set_threads(g_ctx, 2);
    RUN(test_conv_fixed);
    RUN(test_conv_random);
    RUN(test_conv_winograd);
    RUN(test_conv_blocked);
    RUN(test_pool_fixed);
    RUN(test_pool_random);
    RUN(test_avgpool_ceil_include_pad_falls_back);
    RUN(test_batchnorm);
    RUN(test_dense);
    RUN(test_matmul);
    RUN(test_softmax);
    RUN(test_eltwise);
    RUN(test_dispatch_reaches_dnnl);
    RUN(test_dispatch_ref_backend);
    RUN(test_dnnl_error_reported);
    RUN(test_ctx_lifecycle);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_ops_dnnl");
}
