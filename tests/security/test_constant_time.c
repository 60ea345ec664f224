/* Constant-time inference (ts_ctx_set_constant_time, docs/security.md).
 *
 * Functional: every *_ct kernel against its reference on ordinary and special values
 * (signed zeros, infinities, NaN, subnormals, the largest floats), bit for bit where
 * the kernel is a select and within 1e-6 relative where exp, log or a division is
 * computed differently; the polynomial exp/expm1/log/reciprocal against libm; whole
 * models of every inference layer kind, constant-time against the reference backend;
 * ts_argmax and ts_top_k against the plain loops they replace; ts_evaluate in both
 * modes; the branch-free preprocessing; training refused; the floating-point
 * environment (flush-to-zero, denormals-are-zero) set during prediction only.
 *
 * Timing: a small dudect run (bench/security/dudect.c does the real one): Welch's t
 * on the cycle counts of two input classes drawn at random, in constant-time mode;
 * |t| must stay below 10 (dudect's "certainly leaks" line; noise alone gives about
 * 2 here), in one of three attempts. The reference backend's t is printed beside it
 * (it leaks: ReLU and max pooling branch). Skipped under AddressSanitizer, where
 * timing means nothing. */
#include "tessera.h"

#include "common/test.h"
#include "ops/ct_math.h"
#include "ops/ops.h"

#include <float.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_MXCSR 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_ct_XXXXXX";

/* ------------------------------------------------------------------ helpers */

/* Values that stress selects and special cases, then uniform ones in [-6, 6). */
static float *special_values(size_t n) {
    static const float head[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, INFINITY, -INFINITY, NAN, -NAN,
                                 1e-40f, -1e-40f, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX, 88.0f, -88.0f, 100.0f,
                                 -100.0f, 1e-7f, -1e-7f, 20.0f, -20.0f, 9.0f, -9.0f, 0.25f, 3.0f, 6.0f, -3.0f};
    float *x = test_falloc(n);
    test_fill_uniform(x, n, 11, -6, 6);
    const size_t h = sizeof head / sizeof head[0];
    for (size_t i = 0; i < n && i < h; i++) x[i] = head[i];
    return x;
}

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Same bits, or both NaN. */
static int expect_same_bits(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (bits_of(got[i]) == bits_of(want[i]) || (got[i] != got[i] && want[i] != want[i])) continue;
        CHECK(0, "%s: [%zu] got %.9g (0x%08x), want %.9g (0x%08x)", what, i, (double)got[i], bits_of(got[i]),
              (double)want[i], bits_of(want[i]));
        return 0;
    }
    return 1;
}

/* |got - want| <= 1e-6 |want| + atol, or both NaN, or equal infinities. */
static int expect_close(const char *what, const float *got, const float *want, size_t n, double atol) {
    for (size_t i = 0; i < n; i++) {
        const double g = got[i], w = want[i];
        if ((g != g && w != w) || g == w || fabs(g - w) <= 1e-6 * fabs(w) + atol) continue;
        CHECK(0, "%s: [%zu] got %.9g, want %.9g", what, i, g, w);
        return 0;
    }
    return 1;
}

static ts_model *make_model(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, text, "ct.arch", NULL, 0, seed, &m);
    CHECK(st == TS_OK, "model: %s\n%s", ts_ctx_error(g_ctx), text);
    return m;
}

/* Fills the named buffer or parameter with uniform values in [lo, hi). */
static void fill_tensor(ts_model *m, const char *name, float lo, float hi, unsigned long long seed) {
    int i = ts_model_find_tensor(m, name);
    CHECK(i >= 0, "tensor %s missing", name);
    if (i < 0) return;
    ts_tensor_info t;
    ts_model_tensor(m, i, &t);
    test_fill_uniform(t.data, (size_t)t.numel, seed, lo, hi);
}

/* Logits of n samples with the reference backend, and in constant-time mode (under
 * the oneDNN backend setting, which the mode must override). */
static void predict_both(ts_model *m, const float *x, int n, float *ref, float *ct) {
    ts_ctx_set_constant_time(g_ctx, 0);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_model_predict(g_ctx, m, x, n, ref) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    ts_ctx_set_constant_time(g_ctx, 1);
    CHECK(ts_model_predict(g_ctx, m, x, n, ct) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_constant_time(g_ctx, 0);
}

/* ------------------------------------------------------------------- ct_math */

static void test_math_against_libm(void) {
    double worst[4] = {0};
    for (int i = 0; i <= 200000; i++) {
        const double u = i / 200000.0;
        const double x = -708 + 1417 * u, small = (u - 0.5) * 1e-3, y = exp((u - 0.5) * 1400);
        const double e = fabs(ct_exp(x) - exp(x)) / exp(x);
        const double m = fabs(ct_expm1(small) - expm1(small)) / (small != 0 ? fabs(expm1(small)) : 1);
        const double l = fabs(ct_log(y) - log(y)) / (fabs(log(y)) > 1 ? fabs(log(y)) : 1);
        const double d = (u + 1e-6) * pow(10, (i % 580) - 290) * (i % 2 ? -1 : 1);
        const double r = fabs(ct_recip(d) - 1 / d) * fabs(d);
        const double v[4] = {e, m, l, r};
        for (int k = 0; k < 4; k++)
            if (v[k] > worst[k]) worst[k] = v[k];
    }
    CHECK(worst[0] < 1e-14, "ct_exp: worst relative error %g", worst[0]);
    CHECK(worst[1] < 1e-14, "ct_expm1: worst relative error %g", worst[1]);
    CHECK(worst[2] < 1e-14, "ct_log: worst relative error %g", worst[2]);
    CHECK(worst[3] < 1e-14, "ct_recip: worst relative error %g", worst[3]);
    CHECK(ct_exp(-INFINITY) == 0 && ct_exp(INFINITY) == INFINITY && isnan(ct_exp(NAN)), "ct_exp special values");
    CHECK(ct_exp(-800) == 0 && ct_exp(0) == 1, "ct_exp(-800) %g, ct_exp(0) %g", ct_exp(-800), ct_exp(0));
    CHECK(ct_expm1(-INFINITY) == -1 && ct_expm1(0) == 0 && isnan(ct_expm1(NAN)), "ct_expm1 special values");
    CHECK(ct_log(0) == -INFINITY && ct_log(INFINITY) == INFINITY && isnan(ct_log(-1)) && isnan(ct_log(NAN)) &&
              ct_log(1) == 0,
          "ct_log special values");
    CHECK(ct_recip(0.0) == INFINITY && ct_recip(-0.0) == -INFINITY && ct_recip(INFINITY) == 0 &&
              signbit(ct_recip(-INFINITY)) && isnan(ct_recip(NAN)),
          "ct_recip special values");
    /* float exp: the kernels' (float)ct_exp against glibc's expf */
    long differ = 0;
    for (int i = 0; i <= 400000; i++) {
        const float x = -87.0f + 175.0f * (float)i / 400000.0f, a = (float)ct_exp(x), b = expf(x);
        if (a != b) differ++;
        CHECK(fabsf(a - b) <= 1.2e-7f * b, "exp(%.9g): %.9g vs expf %.9g", (double)x, (double)a, (double)b);
    }
    printf("  (float)ct_exp differs from expf by one ulp in %ld of 400001 arguments\n", differ);
}

/* ------------------------------------------------------------------- kernels */

static void test_select_kernels_bit_identical(void) {
    const size_t n = 4096;
    float *x = special_values(n), *ref = test_falloc(n), *ct = test_falloc(n);
    const eltwise_kind ek[2] = {ELTWISE_RELU, ELTWISE_LEAKY_RELU};
    for (int k = 0; k < 2; k++) {
        eltwise_forward_ref(ek[k], 0.01f, n, ref, x, 2);
        eltwise_forward_ct(ek[k], 0.01f, n, ct, x, 2);
        expect_same_bits(k ? "leaky relu" : "relu", ct, ref, n);
    }
    unary_params hs = {.kind = UNARY_HARDSIGMOID, .alpha = 0.2f, .beta = 0.5f};
    unary_params cl = {.kind = UNARY_CLIP, .lo = -1.5f, .hi = 2.5f}, cl2 = {.kind = UNARY_CLIP, .lo = 1, .hi = -1};
    unary_params cl3 = {.kind = UNARY_CLIP, .lo = -INFINITY, .hi = 6};
    const unary_params *up[4] = {&hs, &cl, &cl2, &cl3};
    for (int k = 0; k < 4; k++) {
        unary_forward_ref(up[k], n, ref, x, 1);
        unary_forward_ct(up[k], n, ct, x, 1);
        expect_same_bits(k ? "clip" : "hardsigmoid", ct, ref, n);
    }
    /* prelu: per-channel slope over (4, 32, 32) */
    const int64_t dims[3] = {4, 32, 32}, sdims[3] = {4, 1, 1};
    const float slope[4] = {0.25f, -0.5f, 0.0f, 2.0f};
    prelu_forward_ref(1, 3, dims, sdims, ref, x, slope, 1);
    prelu_forward_ct(1, 3, dims, sdims, ct, x, slope, 1);
    expect_same_bits("prelu", ct, ref, n);
    /* max pooling: plain, padded + ceil, dilated + asymmetric, window in padding only */
    pool2d_params pp[4] = {
        {.n = 2, .c = 2, .h = 32, .w = 32, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1},
        {.n = 1, .c = 4, .h = 32, .w = 32, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .pbh = 1, .pbw = 1,
         .ceil_mode = 1, .dh = 1, .dw = 1},
        {.n = 1, .c = 4, .h = 32, .w = 32, .kh = 3, .kw = 2, .sh = 1, .sw = 3, .ph = 2, .pw = 0, .pbh = 1, .pbw = 1,
         .dh = 2, .dw = 3},
        {.n = 4, .c = 1, .h = 32, .w = 32, .kh = 3, .kw = 3, .sh = 3, .sw = 3, .ph = 2, .pw = 2, .pbh = 2, .pbw = 2,
         .ceil_mode = 1, .dh = 1, .dw = 1},
    };
    for (int k = 0; k < 4; k++) {
        CHECK(pool2d_params_finish(&pp[k]), "pool params %d", k);
        const size_t outn = (size_t)pp[k].n * pp[k].c * pp[k].oh * pp[k].ow;
        maxpool2d_forward_ref(&pp[k], ref, NULL, x, 1);
        maxpool2d_forward_ct(&pp[k], ct, x, 1);
        char what[32];
        snprintf(what, sizeof what, "maxpool %d", k);
        expect_same_bits(what, ct, ref, outn);
    }
    global_maxpool_forward_ref(4, 4, 256, ref, NULL, x);
    global_maxpool_forward_ct(4, 4, 256, ct, x);
    expect_same_bits("global max pooling", ct, ref, 16);
    free(x);
    free(ref);
    free(ct);
}

static void test_math_kernels_close(void) {
    const size_t n = 4096;
    float *x = special_values(n), *ref = test_falloc(n), *ct = test_falloc(n);
    /* results below FLT_MIN may be flushed where ct_exp rounds a tiny double */
    const double atol = 1e-37;
    const eltwise_kind ek[3] = {ELTWISE_SIGMOID, ELTWISE_TANH, ELTWISE_GELU};
    static const char *const ek_name[3] = {"sigmoid", "tanh", "gelu"};
    for (int k = 0; k < 3; k++) {
        eltwise_forward_ref(ek[k], 0, n, ref, x, 1);
        eltwise_forward_ct(ek[k], 0, n, ct, x, 1);
        /* gelu's 1 + erf cancels for negative x: an ulp of erf is up to |x| 3e-8 */
        expect_close(ek_name[k], ct, ref, n, k == 2 ? 2e-7 : atol);
    }
    unary_params elu = {.kind = UNARY_ELU, .alpha = 1.0f};
    unary_params selu = {.kind = UNARY_SELU, .alpha = 1.67326319f, .gamma = 1.05070102f};
    unary_forward_ref(&elu, n, ref, x, 1);
    unary_forward_ct(&elu, n, ct, x, 1);
    expect_close("elu", ct, ref, n, atol);
    unary_forward_ref(&selu, n, ref, x, 1);
    unary_forward_ct(&selu, n, ct, x, 1);
    expect_close("selu", ct, ref, n, atol);
    /* the kinds ONNX models brought: hardswish (* 1/6 for / 6), sqrt and erf from
     * ct_exp/ct_log, pow by multiplication for whole exponents */
    const struct {
        const char *what;
        unary_params p;
    } more[] = {
        {"hardswish", {.kind = UNARY_HARDSWISH}}, {"sqrt", {.kind = UNARY_SQRT}},
        {"erf", {.kind = UNARY_ERF}},             {"pow 2", {.kind = UNARY_POW, .alpha = 2.0f}},
        {"pow 3", {.kind = UNARY_POW, .alpha = 3.0f}}, {"pow -1", {.kind = UNARY_POW, .alpha = -1.0f}},
        {"pow 0.5", {.kind = UNARY_POW, .alpha = 0.5f}}, {"pow 0", {.kind = UNARY_POW, .alpha = 0.0f}},
    };
    for (size_t k = 0; k < sizeof more / sizeof more[0]; k++) {
        unary_forward_ref(&more[k].p, n, ref, x, 1);
        unary_forward_ct(&more[k].p, n, ct, x, 1);
        expect_close(more[k].what, ct, ref, n, atol);
    }
    /* softmax / log-softmax over rows of 10 (the special values give inf/NaN rows),
     * and over a strided middle axis */
    for (int log_sm = 0; log_sm < 2; log_sm++) {
        softmax_axis_forward_ref(n / 10, 10, 1, log_sm, ref, x, 1);
        softmax_axis_forward_ct(n / 10, 10, 1, log_sm, ct, x, 1);
        expect_close(log_sm ? "log-softmax rows" : "softmax rows", ct, ref, n / 10 * 10, atol);
        softmax_axis_forward_ref(4, 16, 64, log_sm, ref, x, 2);
        softmax_axis_forward_ct(4, 16, 64, log_sm, ct, x, 2);
        expect_close(log_sm ? "log-softmax axis" : "softmax axis", ct, ref, 4 * 16 * 64, atol);
    }
    /* average pooling, both divisors, with ceil windows reaching into padding */
    pool2d_params ap[2] = {
        {.n = 1, .c = 4, .h = 32, .w = 32, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .pbh = 1, .pbw = 1,
         .ceil_mode = 1, .count_include_pad = 1, .dh = 1, .dw = 1},
        {.n = 1, .c = 4, .h = 32, .w = 32, .kh = 3, .kw = 2, .sh = 3, .sw = 1, .ph = 1, .pw = 0, .pbh = 2, .pbw = 1,
         .ceil_mode = 1, .count_include_pad = 0, .dh = 1, .dw = 1},
    };
    for (int k = 0; k < 2; k++) {
        CHECK(pool2d_params_finish(&ap[k]), "avg params %d", k);
        avgpool2d_forward_ref(&ap[k], ref, x, 1);
        avgpool2d_forward_ct(&ap[k], ct, x, 1);
        expect_close("avgpool", ct, ref, (size_t)ap[k].c * ap[k].oh * ap[k].ow, atol);
    }
    global_avgpool_forward_ref(4, 4, 256, ref, x);
    global_avgpool_forward_ct(4, 4, 256, ct, x);
    expect_close("global average pooling", ct, ref, 16, atol);
    /* division, both operands from the special values (x / reversed x) */
    float *y = test_falloc(n);
    for (size_t i = 0; i < n; i++) y[i] = x[n - 1 - i];
    for (size_t i = 0; i < 30; i++) y[i + 30] = x[i]; /* special / special */
    const int64_t dims[1] = {(int64_t)n}, st[1] = {1};
    for (int op = BINARY_ADD; op <= BINARY_DIV; op++) {
        binary_forward_ref((binary_op)op, 1, dims, ref, x, st, y, st, 1);
        binary_forward_ct((binary_op)op, 1, dims, ct, x, st, y, st, 1);
        if (op == BINARY_DIV) expect_close("division", ct, ref, n, atol);
        else expect_same_bits("add/sub/mul", ct, ref, n);
    }
    /* the loss: ordinary rows, labels everywhere, then one row with an inf */
    int32_t labels[64];
    for (int i = 0; i < 64; i++) labels[i] = (i * 7) % 10;
    const float a = softmax_xent_ref(64, 10, x + 100, labels, 0.0f, NULL), b = softmax_xent_ct(64, 10, x + 100, labels, 0.0f);
    CHECK_NEAR(b, a, 1e-6, 0);
    const float c = softmax_xent_ref(64, 10, x + 100, labels, 0.1f, NULL), d = softmax_xent_ct(64, 10, x + 100, labels, 0.1f);
    CHECK_NEAR(d, c, 1e-6, 0);
    labels[3] = 10; /* out of range: NaN in both */
    CHECK(isnan(softmax_xent_ct(64, 10, x + 100, labels, 0.0f)) && isnan(softmax_xent_ref(64, 10, x + 100, labels, 0.0f, NULL)),
          "a bad label poisons the loss");
    free(x);
    free(y);
    free(ref);
    free(ct);
}

/* ----------------------------------------------------------- whole models */

/* Convolution, batch norm, ReLU, max pooling, dropout, mask, dense: the constant-time
 * kernels and the shared ones give the reference backend's bits. */
static const char *CNN = "input shape=3x16x16 classes=7\n"
                         "conv2d name=c1 out=8 kernel=3 padding=1 bias=0\n"
                         "batchnorm name=bn1\n"
                         "relu name=r1\n"
                         "mask name=m1\n"
                         "maxpool name=p1 kernel=3 stride=2 padding=1 ceil=1\n"
                         "conv2d name=c2 out=8 kernel=3 dilation=2 padding=2 groups=2\n"
                         "leakyrelu name=lr slope=0.1\n"
                         "add name=res in=lr,p1\n"
                         "maxpool name=p2 kernel=2\n"
                         "clip name=cl min=-0.5 max=0.75\n"
                         "prelu name=pr shape=8x1x1\n"
                         "flatten name=f\n"
                         "dropout name=d p=0.5\n"
                         "dense name=fc1 out=32\n"
                         "relu name=r2\n"
                         "dense name=fc2 out=classes\n";

/* Every kind whose constant-time kernel computes differently (exp, log, division) */
static const char *SMOOTH = "input shape=2x12x12 classes=5\n"
                            "conv2d name=c1 out=6 kernel=3 padding=1\n"
                            "elu name=e1\n"
                            "conv2d name=c2 out=6 kernel=3 padding=1\n"
                            "selu name=s1\n"
                            "sigmoid name=sg\n"
                            "binary name=dv op=div const=6x1x1\n"
                            "tanh name=th\n"
                            "hardsigmoid name=hs\n"
                            "avgpool name=ap kernel=3 stride=2 padding=1 ceil=1 count_include_pad=0\n"
                            "softmax name=sm axis=0\n"
                            "globalmaxpool name=gm\n"
                            "globalavgpool name=ga in=ap\n"
                            "concat name=cat in=gm,ga\n"
                            "dense name=fc out=classes\n"
                            "logsoftmax name=ls\n";

static void test_models_match_reference(void) {
    const int n = 9;
    ts_model *a = make_model(CNN, 3), *b = make_model(SMOOTH, 5);
    if (!a || !b) goto done;
    fill_tensor(a, "bn1.running_mean", -0.2f, 0.2f, 1);
    fill_tensor(a, "bn1.running_var", 0.5f, 1.5f, 2);
    fill_tensor(a, "bn1.weight", 0.5f, 1.5f, 3);
    fill_tensor(a, "bn1.bias", -0.3f, 0.3f, 4);
    fill_tensor(a, "m1.keep", 0.0f, 2.0f, 5);
    int km = ts_model_find_tensor(a, "m1.keep");
    if (km >= 0) { /* a 0/1 mask, as decomposition makes */
        ts_tensor_info t;
        ts_model_tensor(a, km, &t);
        for (int64_t i = 0; i < t.numel; i++) t.data[i] = t.data[i] < 0.6f ? 0.0f : 1.0f;
    }
    fill_tensor(b, "dv.const", 0.5f, 2.0f, 6);
    float *xa = test_falloc((size_t)n * 3 * 16 * 16), *xb = test_falloc((size_t)n * 2 * 12 * 12);
    test_fill_uniform(xa, (size_t)n * 3 * 16 * 16, 21, -2, 2);
    test_fill_uniform(xb, (size_t)n * 2 * 12 * 12, 22, -3, 3);
    xa[5] = NAN; /* sample 0 carries a NaN through every layer */
    float ra[9 * 7], ca[9 * 7], rb[9 * 5], cb[9 * 5];
    predict_both(a, xa, n, ra, ca);
    expect_same_bits("select-type CNN", ca, ra, sizeof ra / sizeof ra[0]);
    CHECK(ra[0] != ra[0], "the NaN sample gives NaN logits");
    predict_both(b, xb, n, rb, cb);
    expect_close("exp/log/division CNN", cb, rb, sizeof rb / sizeof rb[0], 0);
    /* the same after a batch of one (execution buffers are reused, not re-planned) */
    predict_both(a, xa + 3 * 16 * 16, 1, ra, ca);
    expect_same_bits("batch of one", ca, ra, 7);
    free(xa);
    free(xb);
done:
    ts_model_free(a);
    ts_model_free(b);
}

/* The zoo's demo and a ResNet (add, global average pooling) on a few samples. */
static void test_zoo_models(void) {
    const char *names[2] = {"demo", "resnet20"};
    for (int k = 0; k < 2; k++) {
        ts_shape in = {.ndim = 3, .dims = {1, 28, 28}};
        ts_model *m = NULL;
        CHECK(ts_model_from_arch(g_ctx, ts_zoo_arch(names[k]), names[k], &in, 10, 9, &m) == TS_OK, "%s: %s",
              names[k], ts_ctx_error(g_ctx));
        if (!m) continue;
        float *x = test_falloc(3 * 28 * 28), r[30], c[30];
        test_fill_uniform(x, 3 * 28 * 28, 30 + k, -1, 2);
        predict_both(m, x, 3, r, c);
        if (k) expect_close(names[k], c, r, 30, 0); /* global average pooling: within an ulp */
        else expect_same_bits(names[k], c, r, 30);
        free(x);
        ts_model_free(m);
    }
}

/* --------------------------------------------------------- argmax and top-k */

static int argmax_loop(const float *row, int k) { /* what ts_evaluate did */
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[best]) best = j;
    return best;
}

static int top_loop(const float *s, int k, int top, int *idx) { /* what tessera predict did */
    int prev = -1, found = 0;
    for (int t = 0; t < top && t < k; t++) {
        int best = -1;
        for (int j = 0; j < k; j++) {
            if (prev >= 0 && !(s[j] < s[prev] || (s[j] == s[prev] && j > prev))) continue;
            if (best < 0 || s[j] > s[best]) best = j;
        }
        if (best < 0) break;
        idx[found++] = prev = best;
    }
    for (int t = found; t < top; t++) idx[t] = -1;
    return found;
}

static void test_argmax_top_k(void) {
    float row[12];
    int a[12], b[12];
    uint64_t s = 99;
    for (int trial = 0; trial < 20000; trial++) {
        const int k = 1 + trial % 12, top = 1 + (trial / 12) % 12;
        for (int j = 0; j < k; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            const int r = (int)(s >> 59); /* 0..31: few distinct values, many ties */
            row[j] = r == 31 ? NAN : r == 30 ? INFINITY : r == 29 ? -INFINITY : (float)(r % 5) - 2.0f;
            if (r == 28) row[j] = -0.0f;
        }
        CHECK(ts_argmax(row, k) == argmax_loop(row, k), "argmax, trial %d", trial);
        const int fa = ts_top_k(row, k, top, a), fb = top_loop(row, k, top, b);
        CHECK(fa == fb && !memcmp(a, b, (size_t)top * sizeof a[0]), "top-%d of %d, trial %d: found %d vs %d", top, k,
              trial, fa, fb);
        if (g_test.case_failed) break;
    }
    /* longer rows take the lanes (evaluate.c): lengths around the lane count and its
     * multiples, few distinct values (ties across lanes), NaN and infinities */
    float wide[200];
    for (int trial = 0; trial < 6000; trial++) {
        const int k = 1 + trial % 200;
        for (int j = 0; j < k; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            const int r = (int)(s >> 57); /* 0..127 */
            wide[j] = r == 127 ? NAN : r == 126 ? INFINITY : r < 40 ? -INFINITY : r == 125 ? -0.0f : (float)(r % 7) - 3.0f;
        }
        if (trial % 7 == 0) wide[0] = NAN;
        if (trial % 11 == 0) for (int j = 0; j < k; j++) wide[j] = -INFINITY;
        CHECK(ts_argmax(wide, k) == argmax_loop(wide, k), "argmax of %d, trial %d: %d vs %d", k, trial,
              ts_argmax(wide, k), argmax_loop(wide, k));
        if (g_test.case_failed) break;
    }
    CHECK(ts_argmax(row, 0) == -1 && ts_argmax(NULL, 3) == -1, "argmax of nothing");
    CHECK(ts_top_k(row, 0, 2, a) == 0 && a[0] == -1 && a[1] == -1, "top-k of nothing");
}

/* ------------------------------------------------------ evaluate, preprocess */

static void test_evaluate_modes_agree(void) {
    ts_dataset *ds = test_quadrant_dataset(300, 4);
    ts_model *m = make_model("input shape=1x8x8 classes=4\n"
                             "conv2d name=c out=4 kernel=3 padding=1\n"
                             "relu name=r\n"
                             "maxpool name=p kernel=2\n"
                             "flatten name=f\n"
                             "dense name=fc out=classes\n",
                             12);
    if (!ds || !m) goto done;
    ts_preprocess pp = {.channels = 1, .mean = {0.3f}, .std = {0.4f}};
    ts_model_set_preprocess(g_ctx, m, &pp);
    ts_eval_report r, c;
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_evaluate(g_ctx, m, ds, 64, &r) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_constant_time(g_ctx, 1);
    CHECK(ts_evaluate(g_ctx, m, ds, 64, &c) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_constant_time(g_ctx, 0);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    CHECK(r.top1 == c.top1 && r.top5 == c.top5 && r.count == c.count, "top-1 %g/%g, top-5 %g/%g", r.top1, c.top1,
          r.top5, c.top5);
    CHECK(!memcmp(r.confusion, c.confusion, 16 * sizeof(int64_t)), "confusion matrices differ");
    CHECK_NEAR(c.loss, r.loss, 1e-6, 0);
    int64_t total = 0;
    for (int i = 0; i < 16; i++) total += c.confusion[i];
    CHECK(total == 300, "confusion counts %lld samples", (long long)total);
    ts_eval_report_free(&r);
    ts_eval_report_free(&c);
done:
    ts_model_free(m);
    test_free_dataset(ds);
}

static void test_preprocess_ct_identical(void) {
    uint8_t px[2 * 256 * 3];
    for (int i = 0; i < 2 * 256 * 3; i++) px[i] = (uint8_t)(i * 7 + i / 256);
    ts_preprocess pp = {.channels = 3, .mean = {0.1f, 0.5f, 0.9f}, .std = {0.3f, 0.25f, 1.7f}};
    float a[2 * 256 * 3], b[2 * 256 * 3];
    ts_preprocess_images(&pp, px, 2, 3, 16, 16, a);
    ts_preprocess_images_ct(&pp, px, 2, 3, 16, 16, b);
    expect_same_bits("preprocessing", b, a, 2 * 256 * 3);
}

/* ------------------------------------------------- training, environment */

static void test_training_refused(void) {
    ts_model *m = make_model(CNN, 3);
    if (!m) return;
    float x[3 * 16 * 16] = {0}, logits[7];
    ts_ctx_set_constant_time(g_ctx, 1);
    CHECK(ts_ctx_get_constant_time(g_ctx) == 1, "the flag reads back");
    ts_status st = ts_model_forward_train(g_ctx, m, x, 1, logits, 1);
    CHECK(st == TS_EUNSUPPORTED && strstr(ts_ctx_error(g_ctx), "constant-time"), "status %d: %s", (int)st,
          ts_ctx_error(g_ctx));
    ts_ctx_set_constant_time(g_ctx, 0);
    CHECK(ts_model_forward_train(g_ctx, m, x, 1, logits, 1) == TS_OK, "training after turning it off: %s",
          ts_ctx_error(g_ctx));
    CHECK(ts_ctx_set_constant_time(NULL, 1) == TS_EINVAL && ts_ctx_get_constant_time(NULL) == 0, "NULL context");
    ts_model_free(m);
}

/* Flush-to-zero and denormals-are-zero hold during a constant-time prediction only:
 * a subnormal input then counts as 0, and MXCSR is as before afterwards, on the
 * caller and on the OpenMP threads. */
static void test_denormals_flushed(void) {
#ifdef HAVE_MXCSR
    ts_model *m = make_model(CNN, 3);
    if (!m) return;
    const size_t sz = 3 * 16 * 16;
    float *zero = test_falloc(sz), *sub = test_falloc(sz), lz[7], ls[7];
    for (size_t i = 0; i < sz; i++) sub[i] = (i % 3 ? 1e-39f : -3e-40f);
    const unsigned before = _mm_getcsr();
    ts_ctx_set_threads(g_ctx, 2);
    ts_ctx_set_constant_time(g_ctx, 1);
    CHECK(ts_model_predict(g_ctx, m, zero, 1, lz) == TS_OK && ts_model_predict(g_ctx, m, sub, 1, ls) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    ts_ctx_set_constant_time(g_ctx, 0);
    expect_same_bits("subnormal input as zeros", ls, lz, 7);
    CHECK(_mm_getcsr() == before, "MXCSR 0x%x after, 0x%x before", _mm_getcsr(), before);
    int bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : bad)
    bad += (_mm_getcsr() & 0x8040u) != (before & 0x8040u);
    CHECK(bad == 0, "%d OpenMP threads kept flush-to-zero", bad);
    ts_ctx_set_threads(g_ctx, 1);
    free(zero);
    free(sub);
    ts_model_free(m);
#endif
}

/* ------------------------------------------------------------------- timing */

#ifndef UNDER_ASAN
#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t ticks(void) {
    _mm_lfence();
    const uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}
#else
static inline uint64_t ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Largest |t| of Welch's test over all measurements and those below the 50th, 75th
 * and 90th percentiles (dudect's cropping, a few of its thresholds). */
static double welch_max_t(const uint64_t *t, const uint8_t *cls, int n) {
    uint64_t *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return 0;
    memcpy(sorted, t, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u64);
    const uint64_t limits[4] = {UINT64_MAX, sorted[n / 2], sorted[n * 3 / 4], sorted[n * 9 / 10]};
    free(sorted);
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        double cnt[2] = {0}, sum[2] = {0}, sq[2] = {0};
        for (int i = 0; i < n; i++)
            if (t[i] < limits[k] || k == 0) {
                cnt[cls[i]] += 1;
                sum[cls[i]] += (double)t[i];
            }
        if (cnt[0] < 2 || cnt[1] < 2) continue;
        const double m0 = sum[0] / cnt[0], m1 = sum[1] / cnt[1];
        for (int i = 0; i < n; i++)
            if (t[i] < limits[k] || k == 0) {
                const double d = (double)t[i] - (cls[i] ? m1 : m0);
                sq[cls[i]] += d * d;
            }
        const double se = sqrt(sq[0] / (cnt[0] - 1) / cnt[0] + sq[1] / (cnt[1] - 1) / cnt[1]);
        const double tk = se > 0 ? fabs(m0 - m1) / se : 0;
        if (tk > worst) worst = tk;
    }
    return worst;
}

/* One run of n measurements of predict + argmax on a batch of one: class 0 an
 * all-zero input (every ReLU and pooling window the same), class 1 random values.
 * Inputs sit in one slot per measurement (dudect's layout), so that no address
 * depends on the class. */
static double measure_t(ts_model *m, int n, int constant_time, uint64_t seed) {
    const size_t sz = 1 * 28 * 28;
    float *slots = test_falloc((size_t)n * sz), logits[10];
    uint64_t *t = malloc((size_t)n * sizeof *t);
    uint8_t *cls = malloc((size_t)n);
    if (!t || !cls) exit(2);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        cls[i] = (uint8_t)(s >> 63);
        /* write class 0's zeros too: untouched calloc pages would all be the one
         * shared zero page, always cached */
        if (cls[i]) test_fill_uniform(slots + (size_t)i * sz, sz, seed + 7, -1, 1);
        else memset(slots + (size_t)i * sz, 0, sz * sizeof(float));
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    ts_ctx_set_constant_time(g_ctx, constant_time);
    volatile int sink = 0;
    for (int i = -200; i < n; i++) { /* 200 warm-up calls */
        const float *x = slots + (size_t)(i < 0 ? 0 : i) * sz;
        const uint64_t t0 = ticks();
        ts_model_predict(g_ctx, m, x, 1, logits);
        sink += ts_argmax(logits, 10);
        const uint64_t t1 = ticks();
        if (i >= 0) t[i] = t1 - t0;
    }
    (void)sink;
    ts_ctx_set_constant_time(g_ctx, 0);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    const double tv = welch_max_t(t, cls, n);
    free(slots);
    free(t);
    free(cls);
    return tv;
}
#endif /* !UNDER_ASAN */

static void test_timing_welch(void) {
#ifdef UNDER_ASAN
    printf("  timing: skipped under AddressSanitizer (functional checks only)\n");
#else
    ts_model *m = make_model("input shape=1x28x28 classes=10\n"
                             "conv2d name=c1 out=8 kernel=3 padding=1\n"
                             "relu name=r1\n"
                             "maxpool name=p1 kernel=2\n"
                             "conv2d name=c2 out=16 kernel=3 padding=1\n"
                             "relu name=r2\n"
                             "maxpool name=p2 kernel=2\n"
                             "flatten name=f\n"
                             "dense name=fc out=classes\n",
                             1);
    if (!m) return;
    const int n = 6000;
    double tct = 0;
    int attempt;
    for (attempt = 1; attempt <= 3; attempt++) {
        tct = measure_t(m, n, 1, 1000 + (uint64_t)attempt);
        if (tct < 10) break;
        printf("  timing, attempt %d: constant-time max |t| %.2f\n", attempt, tct);
    }
    const double tref = measure_t(m, n, 0, 2000);
    printf("  timing, %d measurements: constant-time max |t| %.2f (attempt %d); reference backend %.2f%s\n", n, tct,
           attempt > 3 ? 3 : attempt, tref, tref > 10 ? " (leaks, as expected)" : "");
    CHECK(tct < 10, "constant-time mode: |t| = %.2f in three attempts (dudect: > 10 means a timing leak)", tct);
    ts_model_free(m);
#endif
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_math_against_libm);
    RUN(test_select_kernels_bit_identical);
    RUN(test_math_kernels_close);
    RUN(test_models_match_reference);
    RUN(test_zoo_models);
    RUN(test_argmax_top_k);
    RUN(test_evaluate_modes_agree);
    RUN(test_preprocess_ct_identical);
    RUN(test_training_refused);
    RUN(test_denormals_flushed);
    RUN(test_timing_welch);
    ts_ctx_free(g_ctx);
    rmdir(g_tmp);
    TEST_MAIN_END("test_constant_time");
}
