/* The layer kinds ONNX models need besides the shape kinds: elu, selu, hardsigmoid,
 * clip, prelu, globalmaxpool, softmax/logsoftmax along any axis (and ONNX's older
 * coerced form), asymmetric padding of conv2d/maxpool/avgpool, dilated max pooling.
 * Forward values against hand-computed ones (ONNX defaults, edge cases), whole-model
 * finite-difference gradients through the public API on both backends, oneDNN
 * against the reference kernels for asymmetric and dilated cases, the attribute
 * writer read back by the parser, and parse errors naming file and line. */
#include "tessera.h"

#include "common/test.h"
#include "nn/nn.h"
#include "ops/dispatch.h"

#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_eltwise_XXXXXX";

/* ------------------------------------------------------------------ helpers */

static ts_model *make_model(const char *text) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, text, "layers.arch", NULL, 0, 7, &m);
    CHECK(st == TS_OK, "model: %s\n%s", ts_ctx_error(g_ctx), text);
    return m;
}

/* n uniform values in [-1, 1) */
static float *fvec(size_t n, unsigned long long seed) {
    float *x = test_falloc(n);
    test_fill_uniform(x, n, seed, -1, 1);
    return x;
}

/* Predicts n samples of x with the model `text` and compares with want (count values). */
static void expect_outputs(const char *what, const char *text, int n, const float *x, const float *want, size_t count,
                           double rtol, double atol) {
    ts_model *m = make_model(text);
    if (!m) return;
    CHECK((size_t)n * (size_t)ts_model_classes(m) == count, "%s: %d outputs per sample, expected %zu", what,
          ts_model_classes(m), count / (size_t)n);
    float *out = test_falloc(count);
    CHECK(ts_model_predict(g_ctx, m, x, n, out) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    test_allclose(what, out, want, count, rtol, atol);
    free(out);
    ts_model_free(m);
}

/* Expects `text` to fail with `want`, the message naming "layers.arch:<line>:" and
 * each of the NULL-terminated words. */
static void expect_error(const char *text, ts_status want, int line, ...) {
    ts_model *m = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_model_from_arch(g_ctx, text, "layers.arch", NULL, 0, 1, &m);
    const char *msg = ts_ctx_error(g_ctx);
    CHECK(st == want, "%s: status %s, want %s (%s)", text, ts_status_name(st), ts_status_name(want), msg);
    CHECK(m == NULL, "%s: model on failure", text);
    ts_model_free(m);
    char loc[64];
    snprintf(loc, sizeof loc, "layers.arch:%d:", line);
    CHECK(strstr(msg, loc) != NULL, "%s: message '%s' lacks '%s'", text, msg, loc);
    va_list ap;
    va_start(ap, line);
    for (const char *w; (w = va_arg(ap, const char *));)
        CHECK(strstr(msg, w) != NULL, "%s: message '%s' lacks '%s'", text, msg, w);
    va_end(ap);
}

/* ------------------------------------------------------------ elementwise */

static void test_elu_selu(void) {
    const float x[6] = {-10.0f, -2.0f, -0.5f, 0.0f, 0.5f, 3.0f};
    /* elu, ONNX default alpha 1: e^x - 1 below zero */
    const float elu1[6] = {-0.9999546f, -0.86466472f, -0.39346934f, 0.0f, 0.5f, 3.0f};
    expect_outputs("elu alpha=1", "input shape=6\nelu\n", 1, x, elu1, 6, 1e-6, 1e-7);
    float elu05[6];
    for (int i = 0; i < 6; i++) elu05[i] = x[i] > 0 ? x[i] : 0.5f * elu1[i];
    expect_outputs("elu alpha=0.5", "input shape=6\nelu alpha=0.5\n", 1, x, elu05, 6, 1e-6, 1e-7);
    /* selu with ONNX's defaults = torch.selu: 1.0507 x, 1.0507 * 1.6733 (e^x - 1) */
    const float selu[6] = {-1.7580195f, -1.5201665f, -0.69175819f, 0.0f, 0.52535051f, 3.1521031f};
    expect_outputs("selu defaults", "input shape=6\nselu\n", 1, x, selu, 6, 1e-6, 1e-7);
    float selu2[6];
    for (int i = 0; i < 6; i++) selu2[i] = x[i] > 0 ? 3.0f * x[i] : 3.0f * 2.0f * elu1[i];
    expect_outputs("selu alpha=2 gamma=3", "input shape=6\nselu alpha=2 gamma=3\n", 1, x, selu2, 6, 1e-6, 1e-7);
}

static void test_hardsigmoid_clip(void) {
    const float x[7] = {-5.0f, -2.5f, -1.0f, 0.0f, 1.0f, 2.5f, 5.0f};
    /* ONNX defaults alpha 0.2, beta 0.5 */
    const float hs[7] = {0.0f, 0.0f, 0.3f, 0.5f, 0.7f, 1.0f, 1.0f};
    expect_outputs("hardsigmoid defaults", "input shape=7\nhardsigmoid\n", 1, x, hs, 7, 1e-6, 1e-7);
    /* PyTorch's Hardsigmoid: alpha 1/6 */
    const float hs6[7] = {0.0f, 1.0f / 12, 1.0f / 3, 0.5f, 2.0f / 3, 11.0f / 12, 1.0f};
    expect_outputs("hardsigmoid alpha=1/6", "input shape=7\nhardsigmoid alpha=0.16666667\n", 1, x, hs6, 7, 1e-6,
                   1e-7);
    const float relu6[7] = {0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 2.5f, 5.0f};
    expect_outputs("clip 0..6 (relu6)", "input shape=7\nclip min=0 max=6\n", 1, x, relu6, 7, 0, 0);
    const float maxonly[7] = {-5.0f, -2.5f, -1.0f, 0.0f, 1.0f, 1.5f, 1.5f};
    expect_outputs("clip max only", "input shape=7\nclip max=1.5\n", 1, x, maxonly, 7, 0, 0);
    const float minonly[7] = {-1.0f, -1.0f, -1.0f, 0.0f, 1.0f, 2.5f, 5.0f};
    expect_outputs("clip min only", "input shape=7\nclip min=-1\n", 1, x, minonly, 7, 0, 0);
    expect_outputs("clip no bounds", "input shape=7\nclip\n", 1, x, x, 7, 0, 0);
    const float crossed[7] = {-2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f}; /* min > max: max wins */
    expect_outputs("clip min > max", "input shape=7\nclip min=1 max=-2\n", 1, x, crossed, 7, 0, 0);

    /* NaN propagates through every kind */
    const char *kinds[] = {"elu", "selu", "hardsigmoid", "clip min=0 max=6", "clip"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char text[96];
        snprintf(text, sizeof text, "input shape=2\n%s\n", kinds[k]);
        ts_model *m = make_model(text);
        if (!m) continue;
        float in[2] = {NAN, 1.0f}, out[2];
        CHECK(ts_model_predict(g_ctx, m, in, 1, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(isnan(out[0]) && !isnan(out[1]), "%s: NaN gives %g, 1 gives %g", kinds[k], out[0], out[1]);
        ts_model_free(m);
    }
}

/* hardswish, sqrt, erf, pow (the kinds torchvision's newer networks need), values
 * from torch 1.13 (torch.nn.functional.hardswish, torch.erf, torch.sqrt, torch.pow) */
static void test_hardswish_sqrt_erf_pow(void) {
    const float x[7] = {-5.0f, -3.0f, -1.0f, 0.0f, 1.0f, 3.0f, 5.0f};
    const float hsw[7] = {-0.0f, -0.0f, -0.33333334f, 0.0f, 0.66666669f, 3.0f, 5.0f};
    expect_outputs("hardswish", "input shape=7\nhardswish\n", 1, x, hsw, 7, 1e-7, 0);
    const float erf[7] = {-1.0f, -0.99997791f, -0.84270078f, 0.0f, 0.84270078f, 0.99997791f, 1.0f};
    expect_outputs("erf", "input shape=7\nerf\n", 1, x, erf, 7, 1e-7, 0);
    const float sx[4] = {0.0f, 1.0f, 4.0f, 2.0f}, sq[4] = {0.0f, 1.0f, 2.0f, 1.41421354f};
    expect_outputs("sqrt", "input shape=4\nsqrt\n", 1, sx, sq, 4, 0, 0);
    const float px[4] = {-2.0f, 0.5f, 3.0f, 0.0f};
    const float p3[4] = {-8.0f, 0.125f, 27.0f, 0.0f}, p2[4] = {4.0f, 0.25f, 9.0f, 0.0f};
    expect_outputs("pow 3", "input shape=4\npow exponent=3\n", 1, px, p3, 4, 0, 0);
    expect_outputs("pow default 2", "input shape=4\npow\n", 1, px, p2, 4, 0, 0);
    const float hx[3] = {4.0f, 0.25f, 9.0f}, hp[3] = {2.0f, 0.5f, 3.0f}, inv[3] = {0.25f, 4.0f, 0.11111111f};
    expect_outputs("pow 0.5", "input shape=3\npow exponent=0.5\n", 1, hx, hp, 3, 0, 0);
    expect_outputs("pow -1", "input shape=3\npow exponent=-1\n", 1, hx, inv, 3, 1e-7, 0);
    /* sqrt of a negative is NaN, as torch; NaN passes through every new kind */
    const char *kinds[] = {"sqrt", "hardswish", "erf", "pow exponent=3"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char text[96];
        snprintf(text, sizeof text, "input shape=2\n%s\n", kinds[k]);
        ts_model *m = make_model(text);
        if (!m) continue;
        float in[2] = {NAN, k == 0 ? -1.0f : 1.0f}, out[2];
        CHECK(ts_model_predict(g_ctx, m, in, 1, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(isnan(out[0]) && (k == 0) == !!isnan(out[1]), "%s: gives %g, %g", kinds[k], out[0], out[1]);
        ts_model_free(m);
    }
}

/* reducemean keeps the reduced axes with size 1; over any set of axes */
static void test_reducemean(void) {
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = (float)(i + 1);
    /* 2x3x4: over axis 2 (rows of 4), axis 0, axes 0 and 2, all */
    float rows[6], ax0[12], ax02[3];
    for (int i = 0; i < 6; i++) rows[i] = 4.0f * (float)i + 2.5f;
    for (int i = 0; i < 12; i++) ax0[i] = (float)i + 7.0f;
    for (int j = 0; j < 3; j++) ax02[j] = 4.0f * (float)j + 2.5f + 6.0f;
    const float all[1] = {12.5f};
    expect_outputs("reducemean axis 2", "input shape=2x3x4\nreducemean axes=2\n", 1, x, rows, 6, 0, 0);
    expect_outputs("reducemean axis 0", "input shape=2x3x4\nreducemean axes=0\n", 1, x, ax0, 12, 0, 0);
    expect_outputs("reducemean axes 0,2", "input shape=2x3x4\nreducemean axes=2,0\n", 1, x, ax02, 3, 0, 0);
    expect_outputs("reducemean all", "input shape=2x3x4\nreducemean axes=0,1,2\n", 1, x, all, 1, 0, 0);
    ts_model *m = make_model("input shape=2x3x4\nreducemean name=r axes=0,2\n");
    if (m) {
        const ts_shape s = m->layers[m->nlayers - 1].out;
        CHECK(s.ndim == 3 && s.dims[0] == 1 && s.dims[1] == 3 && s.dims[2] == 1, "keeps 1x3x1, got %dd", s.ndim);
        ts_model_free(m);
    }
    expect_error("input shape=2x3\nreducemean axes=2\n", TS_ESHAPE, 2, "out of range", NULL, NULL);
    expect_error("input shape=2x3\nreducemean axes=1,1\n", TS_ESHAPE, 2, "repeated", NULL, NULL);
    expect_error("input shape=2x3\nreducemean\n", TS_EFORMAT, 2, "axes", NULL, NULL);
}

/* Gradients at the kinks and saturations, as PyTorch: elu's alpha e^x at x <= 0,
 * clamp's 1 on the closed interval, hardsigmoid's alpha only strictly inside. */
static void test_eltwise_gradients_at_edges(void) {
    const struct {
        const char *layer;
        float x[5], want[5];
    } cases[] = {
        {"elu alpha=0.5", {-1.0f, 0.0f, 1e-3f, 2.0f, -30.0f}, {0.5f * 0.36787944f, 0.5f, 1.0f, 1.0f, 0.0f}},
        {"clip min=0 max=6", {-1.0f, 0.0f, 3.0f, 6.0f, 7.0f}, {0.0f, 1.0f, 1.0f, 1.0f, 0.0f}},
        {"hardsigmoid", {-2.5f, -2.4f, 0.0f, 2.4f, 2.5f}, {0.0f, 0.2f, 0.2f, 0.2f, 0.0f}},
        {"selu", {-1.0f, 0.0f, 1.0f, 2.0f, -0.5f},
         {1.7580993f * 0.36787944f, 1.7580993f, 1.0507010f, 1.0507010f, 1.7580993f * 0.60653066f}},
        {"prelu", {-1.0f, 0.0f, 1.0f, 2.0f, -3.0f}, {0.25f, 0.25f, 1.0f, 1.0f, 0.25f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* the dense layer in front (identity weights) receives d loss / d its output */
        char text[160];
        snprintf(text, sizeof text, "input shape=5\ndense name=fc out=5 bias=0\n%s name=act\n", cases[c].layer);
        ts_model *m = make_model(text);
        if (!m) continue;
        ts_tensor_info w = test_tensor(m, "fc.weight");
        for (int i = 0; i < 25; i++) w.data[i] = i % 6 == 0 ? 1.0f : 0.0f;
        float out[5], dl[5] = {1, 1, 1, 1, 1};
        CHECK(ts_model_forward_train(g_ctx, m, cases[c].x, 1, out, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
        /* d loss / d W[i][i] = x_i * act'(x_i); recover act' where x_i != 0 */
        w = test_tensor(m, "fc.weight");
        for (int i = 0; i < 5; i++) {
            if (cases[c].x[i] == 0.0f) continue;
            const double got = w.grad[i * 6] / cases[c].x[i];
            CHECK(fabs(got - cases[c].want[i]) <= 1e-5 * fabs(cases[c].want[i]) + 1e-7, "%s: slope at %g is %.8g, want %.8g",
                  cases[c].layer, cases[c].x[i], got, cases[c].want[i]);
        }
        ts_model_free(m);
    }
    /* at exactly 0 (where the dense weight gradient vanishes): through a bias instead */
    const char *text = "input shape=1\ndense name=fc out=3 bias=1\nclip min=0 max=0.5 name=c\n";
    ts_model *m = make_model(text);
    if (m) {
        ts_tensor_info w = test_tensor(m, "fc.weight"), b = test_tensor(m, "fc.bias");
        w.data[0] = w.data[1] = w.data[2] = 0.0f;
        b.data[0] = 0.0f, b.data[1] = 0.5f, b.data[2] = 0.25f;
        float x = 1.0f, out[3], dl[3] = {1, 1, 1};
        CHECK(ts_model_forward_train(g_ctx, m, &x, 1, out, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
        b = test_tensor(m, "fc.bias");
        CHECK(b.grad[0] == 1.0f && b.grad[1] == 1.0f && b.grad[2] == 1.0f, "clip gradient at the bounds: %g %g %g",
              b.grad[0], b.grad[1], b.grad[2]);
        ts_model_free(m);
    }
}

/* ------------------------------------------------------------------ prelu */

/* Element i = (c*2 + h)*2 + w of a 3x2x2 sample reads this slope element under the
 * slope shapes of test_prelu, by the right-aligned broadcast rule written out. */
static int prelu_slope_index(int shape_case, int i) {
    const int c = i / 4, h = (i / 2) % 2, w = i % 2;
    switch (shape_case) {
    case 0: return c;         /* 3x1x1 */
    case 1: return w;         /* 2: the last axis */
    case 2: return h;         /* 2x1 */
    case 3: return h * 2 + w; /* 1x2x2 */
    case 4: return i;         /* 3x2x2 */
    default: return c * 2 + w; /* 3x1x2 */
    }
}

static void test_prelu(void) {
    /* default: one slope, 0.25 as PyTorch */
    const float x[4] = {-2.0f, -0.5f, 0.0f, 3.0f}, want[4] = {-0.5f, -0.125f, 0.0f, 3.0f};
    expect_outputs("prelu default", "input shape=4\nprelu\n", 1, x, want, 4, 0, 0);
    {
        ts_model *m = make_model("input shape=4\nprelu name=p\n");
        if (m) {
            ts_tensor_info s = test_tensor(m, "p.slope");
            CHECK(s.role == TS_TENSOR_PARAM && s.ndim == 1 && s.dims[0] == 1 && s.data[0] == 0.25f,
                  "slope: role %d ndim %d dim %lld value %g", (int)s.role, s.ndim, (long long)s.dims[0],
                  s.data ? s.data[0] : 0.0);
            ts_model_free(m);
        }
    }
    /* broadcast shapes over a 3x2x2 sample */
    float in[12];
    for (int i = 0; i < 12; i++) in[i] = (float)(i % 2 ? -(i + 1) : i + 1); /* odd positions negative */
    static const char *const shapes[] = {"3x1x1", "2", "2x1", "1x2x2", "3x2x2", "3x1x2"};
    for (int c = 0; c < 6; c++) {
        char text[96];
        snprintf(text, sizeof text, "input shape=3x2x2\nprelu name=p shape=%s\n", shapes[c]);
        ts_model *m = make_model(text);
        if (!m) continue;
        ts_tensor_info s = test_tensor(m, "p.slope");
        static const int64_t counts[] = {3, 2, 2, 4, 12, 6};
        CHECK(s.numel == counts[c], "%s: %lld slopes", shapes[c], (long long)s.numel);
        for (int64_t i = 0; i < s.numel; i++) s.data[i] = 0.05f * (float)(i + 1) * (i % 2 ? -1.0f : 1.0f);
        float out[12], want2[12];
        for (int i = 0; i < 12; i++) {
            const float a = s.data[prelu_slope_index(c, i)];
            want2[i] = in[i] > 0 ? in[i] : a * in[i];
        }
        CHECK(ts_model_predict(g_ctx, m, in, 1, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        char what[64];
        snprintf(what, sizeof what, "prelu shape=%s", shapes[c]);
        test_allclose(what, out, want2, 12, 0, 0);
        /* slope gradient: sum of x * dy where x <= 0, per slope element, over 2 samples */
        float dl[24], out2[24], in2[24];
        memcpy(in2, in, sizeof in), memcpy(in2 + 12, in, sizeof in);
        for (int i = 0; i < 24; i++) dl[i] = 0.1f * (float)(i + 1);
        CHECK(ts_model_forward_train(g_ctx, m, in2, 2, out2, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
        s = test_tensor(m, "p.slope");
        double gw[12] = {0};
        for (int smp = 0; smp < 2; smp++)
            for (int i = 0; i < 12; i++)
                if (in[i] <= 0) gw[prelu_slope_index(c, i)] += (double)in[i] * dl[smp * 12 + i];
        for (int64_t i = 0; i < s.numel; i++) CHECK_NEAR(s.grad[i], gw[i], 1e-5, 1e-6);
        ts_model_free(m);
    }
    /* a vector input and a per-feature slope */
    const float v[3] = {-1.0f, -1.0f, 2.0f};
    ts_model *m = make_model("input shape=3\nprelu name=p shape=3\n");
    if (m) {
        ts_tensor_info s = test_tensor(m, "p.slope");
        s.data[0] = 0.1f, s.data[1] = -2.0f, s.data[2] = 7.0f;
        float out[3];
        CHECK(ts_model_predict(g_ctx, m, v, 1, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(out[0] == -0.1f && out[1] == 2.0f && out[2] == 2.0f, "per-feature: %g %g %g", out[0], out[1], out[2]);
        ts_model_free(m);
    }
}

/* ---------------------------------------------------------- globalmaxpool */

static void test_globalmaxpool(void) {
    /* 2 channels of 2x3; ties: the first; NaN propagates */
    const float x[12] = {1, 5, 2, 5, 0, -1, /**/ -4, -3, -7, -3, -9, -8};
    const float want[2] = {5, -3};
    expect_outputs("globalmaxpool", "input shape=2x2x3\nglobalmaxpool\n", 1, x, want, 2, 0, 0);
    ts_model *m = make_model("input shape=2x2x3\nglobalmaxpool name=g\n");
    if (!m) return;
    ts_layer_info li;
    CHECK(ts_model_layer(m, 1, &li) == TS_OK && li.out.ndim == 1 && li.out.dims[0] == 2, "output shape");
    float xn[12];
    memcpy(xn, x, sizeof x);
    xn[7] = NAN;
    float out[2];
    CHECK(ts_model_predict(g_ctx, m, xn, 1, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(out[0] == 5.0f && isnan(out[1]), "nan: %g %g", out[0], out[1]);
    ts_model_free(m);
}

/* ---------------------------------------------------------------- softmax */

/* softmax / log-softmax by definition, over the elements (start + j*stride) */
static void softmax_line(const float *x, float *y, int count, int stride, int log_softmax) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < count; j++) mx = fmax(mx, x[j * stride]);
    for (int j = 0; j < count; j++) sum += exp(x[j * stride] - mx);
    for (int j = 0; j < count; j++)
        y[j * stride] = (float)(log_softmax ? x[j * stride] - mx - log(sum) : exp(x[j * stride] - mx) / sum);
}

static void test_softmax_axes(void) {
    /* a 2x3x2 sample */
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = 0.37f * (float)((i * 7) % 12) - 1.5f;
    for (int lg = 0; lg <= 1; lg++) {
        const char *kind = lg ? "logsoftmax" : "softmax";
        float want[12];
        char text[128], what[96];
        /* axis -1 (default) and 2: pairs */
        for (int i = 0; i < 12; i += 2) softmax_line(x + i, want + i, 2, 1, lg);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s\n", kind);
        snprintf(what, sizeof what, "%s default axis", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s axis=2\n", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
        /* axis 1 = -2: over the 3, stride 2 */
        for (int a = 0; a < 2; a++)
            for (int k = 0; k < 2; k++) softmax_line(x + a * 6 + k, want + a * 6 + k, 3, 2, lg);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s axis=-2\n", kind);
        snprintf(what, sizeof what, "%s axis=-2", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
        /* axis 0: over the 2, stride 6 */
        for (int k = 0; k < 6; k++) softmax_line(x + k, want + k, 2, 6, lg);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s axis=0\n", kind);
        snprintf(what, sizeof what, "%s axis=0", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
        /* coerce axis 1: over the 3x2 block of each of the 2 */
        for (int a = 0; a < 2; a++) softmax_line(x + a * 6, want + a * 6, 6, 1, lg);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s axis=1 coerce=1\n", kind);
        snprintf(what, sizeof what, "%s axis=1 coerce=1", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
        /* coerce axis 0 = -3: everything */
        softmax_line(x, want, 12, 1, lg);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s axis=-3 coerce=1\n", kind);
        snprintf(what, sizeof what, "%s axis=-3 coerce=1", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
        /* coerce on the last axis is the plain softmax */
        for (int i = 0; i < 12; i += 2) softmax_line(x + i, want + i, 2, 1, lg);
        snprintf(text, sizeof text, "input shape=2x3x2\n%s axis=-1 coerce=1\n", kind);
        snprintf(what, sizeof what, "%s axis=-1 coerce=1", kind);
        expect_outputs(what, text, 1, x, want, 12, 1e-5, 1e-6);
    }
    /* the vector softmax is bit for bit the row kernel, over a batch */
    float v[3 * 10], ref[3 * 10], out[3 * 10];
    test_fill_uniform(v, 30, 5, -30, 30);
    softmax_forward_ref(3, 10, ref, v);
    ts_model *m = make_model("input shape=10\nsoftmax\n");
    if (m) {
        CHECK(ts_model_predict(g_ctx, m, v, 3, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(!memcmp(out, ref, sizeof out), "vector softmax changed");
        ts_model_free(m);
    }
    /* log-softmax of large logits stays finite */
    const float big[3] = {1000.0f, 0.0f, -1000.0f}, bigw[3] = {0.0f, -1000.0f, -2000.0f};
    expect_outputs("logsoftmax large", "input shape=3\nlogsoftmax\n", 1, big, bigw, 3, 1e-6, 1e-4);
}

/* ---------------------------------------------------- padding and pooling */

/* Pooling by enumerating every tap: the ONNX/PyTorch definition with per-side
 * padding t,l,b,r and dilation; the include-padding divisor counts taps within
 * [-t, H+b) x [-l, W+r). */
static void pool_brute(int is_max, int include_pad, const pool2d_params *p, const float *in, float *out) {
    for (int pl = 0; pl < p->n * p->c; pl++)
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                double s = 0, mx = -INFINITY;
                int all = 0, inside = 0;
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        const int iy = oy * p->sh - p->ph + ky * p->dh, ix = ox * p->sw - p->pw + kx * p->dw;
                        if (iy < p->h + p->pbh && ix < p->w + p->pbw) all++;
                        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                        inside++;
                        const double v = in[((size_t)pl * p->h + iy) * p->w + ix];
                        s += v;
                        mx = fmax(mx, v);
                    }
                out[((size_t)pl * p->oh + oy) * p->ow + ox] =
                    (float)(is_max ? mx : inside ? s / (include_pad ? all : inside) : 0.0);
            }
}

static void test_pool_asymmetric_values(void) {
    float in9[9];
    for (int i = 0; i < 9; i++) in9[i] = (float)(i + 1);
    /* 3x3 input 1..9, kernel 2 stride 2, top/left padding 1: windows rows {-1,0}, {1,2} */
    const float tl_incl[4] = {0.25f, 1.25f, 2.75f, 7.0f}, tl_excl[4] = {1.0f, 2.5f, 5.5f, 7.0f};
    expect_outputs("avgpool padding=1,1,0,0 include", "input shape=1x3x3\navgpool kernel=2 padding=1,1,0,0\n", 1, in9,
                   tl_incl, 4, 0, 1e-6);
    expect_outputs("avgpool padding=1,1,0,0 exclude",
                   "input shape=1x3x3\navgpool kernel=2 padding=1,1,0,0 count_include_pad=0\n", 1, in9, tl_excl, 4, 0,
                   1e-6);
    /* bottom/right padding 1: windows {0,1}, {2,3} */
    const float br_incl[4] = {3.0f, 2.25f, 3.75f, 2.25f}, br_excl[4] = {3.0f, 4.5f, 7.5f, 9.0f};
    expect_outputs("avgpool padding=0,0,1,1 include", "input shape=1x3x3\navgpool kernel=2 padding=0,0,1,1\n", 1, in9,
                   br_incl, 4, 0, 1e-6);
    expect_outputs("avgpool padding=0,0,1,1 exclude",
                   "input shape=1x3x3\navgpool kernel=2 padding=0,0,1,1 count_include_pad=0\n", 1, in9, br_excl, 4, 0,
                   1e-6);
    const float br_max[4] = {5, 6, 8, 9};
    expect_outputs("maxpool padding=0,0,1,1", "input shape=1x3x3\nmaxpool kernel=2 padding=0,0,1,1\n", 1, in9, br_max,
                   4, 0, 0);
    /* ceil mode: a window starting in the bottom padding is dropped (PyTorch, ONNX):
     * 4x4, kernel 2 stride 2, bottom/right 1: 3 by the formula, 2 after the rule */
    float in16[16];
    for (int i = 0; i < 16; i++) in16[i] = (float)(i + 1);
    const float drop[4] = {6, 8, 14, 16};
    expect_outputs("maxpool ceil drops a window in the end padding",
                   "input shape=1x4x4\nmaxpool kernel=2 padding=0,0,1,1 ceil=1\n", 1, in16, drop, 4, 0, 0);
    /* ... but one starting in the input stays: top/left 1 gives windows {-1,0},{1,2},{3,4} */
    const float keep[9] = {1, 3, 4, 9, 11, 12, 13, 15, 16};
    expect_outputs("maxpool ceil keeps a window starting inside",
                   "input shape=1x4x4\nmaxpool kernel=2 padding=1,1,0,0 ceil=1\n", 1, in16, keep, 9, 0, 0);
    /* ceil with count_include_pad: the last window runs past H+pbh and its divisor
     * shrinks to the padded extent. 1x5x5, kernel 3 stride 2, padding 1,1,0,0:
     * rows {-1..1}, {1..3}, {3..5}; the last counts rows 3, 4 only */
    float in25[25];
    for (int i = 0; i < 25; i++) in25[i] = (float)((i * 11) % 25) - 7.0f;
    for (int include = 0; include <= 1; include++) {
        pool2d_params p = {.n = 1, .c = 1, .h = 5, .w = 5, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1,
                           .pbh = 0, .pbw = 0, .dh = 1, .dw = 1, .ceil_mode = 1, .count_include_pad = include};
        CHECK(pool2d_params_finish(&p) && p.oh == 3 && p.ow == 3, "oh %d ow %d", p.oh, p.ow);
        float want[9];
        pool_brute(0, include, &p, in25, want);
        char text[160];
        snprintf(text, sizeof text, "input shape=1x5x5\navgpool kernel=3 stride=2 padding=1,1,0,0 ceil=1 count_include_pad=%d\n",
                 include);
        expect_outputs(include ? "avg ceil include" : "avg ceil exclude", text, 1, in25, want, 9, 1e-6, 1e-6);
        /* the corner: rows 3,4 x cols 3,4 of the padded extent, 4 taps either way */
        CHECK_NEAR(want[8], (in25[18] + in25[19] + in25[23] + in25[24]) / 4.0, 1e-6, 1e-6);
        /* the first: rows/cols {-1..1}; include counts 9, exclude 4 */
        CHECK_NEAR(want[0], (in25[0] + in25[1] + in25[5] + in25[6]) / (include ? 9.0 : 4.0), 1e-6, 1e-6);
    }
    /* padding up to the kernel's extent minus one (ONNX backend tests: 3x3, pads 2) */
    float in28[3 * 6 * 6];
    test_fill_uniform(in28, 108, 8, -1, 1);
    for (int is_max = 0; is_max <= 1; is_max++) {
        pool2d_params p = {.n = 1, .c = 3, .h = 6, .w = 6, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 2, .pw = 2,
                           .pbh = 2, .pbw = 2, .dh = 1, .dw = 1, .count_include_pad = 0};
        CHECK(pool2d_params_finish(&p) && p.oh == 8, "oh %d", p.oh);
        float want[3 * 64];
        pool_brute(is_max, 0, &p, in28, want);
        expect_outputs(is_max ? "maxpool pads 2" : "avgpool pads 2",
                       is_max ? "input shape=3x6x6\nmaxpool kernel=3 stride=1 padding=2\n"
                              : "input shape=3x6x6\navgpool kernel=3 stride=1 padding=2 count_include_pad=0\n",
                       1, in28, want, 3 * 64, 1e-6, 1e-6);
    }
}

static void test_maxpool_dilation(void) {
    /* ONNX's maxpool_2d_dilations: 4x4 of 1..16, kernel 2, stride 1, dilation 2 */
    float in16[16];
    for (int i = 0; i < 16; i++) in16[i] = (float)(i + 1);
    const float want[4] = {11, 12, 15, 16};
    expect_outputs("maxpool dilation=2", "input shape=1x4x4\nmaxpool kernel=2 stride=1 dilation=2\n", 1, in16, want, 4,
                   0, 0);
    /* dilated with asymmetric padding, ceil mode and HxW dilation against enumeration */
    float x[2 * 9 * 11];
    test_fill_uniform(x, 198, 12, -2, 2);
    pool2d_params p = {.n = 1, .c = 2, .h = 9, .w = 11, .kh = 3, .kw = 2, .sh = 2, .sw = 3, .ph = 2, .pw = 0,
                       .pbh = 1, .pbw = 2, .dh = 2, .dw = 3, .ceil_mode = 1};
    CHECK(pool2d_params_finish(&p), "params");
    float *w = test_falloc((size_t)2 * p.oh * p.ow);
    pool_brute(1, 0, &p, x, w);
    expect_outputs("maxpool dilation=2x3 padding=2,0,1,2 ceil",
                   "input shape=2x9x11\nmaxpool kernel=3x2 stride=2x3 dilation=2x3 padding=2,0,1,2 ceil=1\n", 1, x, w,
                   (size_t)2 * p.oh * p.ow, 0, 0);
    free(w);
    /* a window whose dilated taps all miss the input: -inf, and no gradient */
    pool2d_params q = {.n = 1, .c = 1, .h = 1, .w = 1, .kh = 2, .kw = 1, .sh = 1, .sw = 1, .ph = 2, .pw = 0,
                       .pbh = 1, .pbw = 0, .dh = 3, .dw = 1};
    CHECK(pool2d_params_finish(&q) && q.oh == 1, "oh %d", q.oh); /* taps -2 and 1 of a 1-row input */
    float one = 4.0f, o = 0, g = 1.0f, din = 7.0f;
    int32_t am = 0;
    maxpool2d_forward_ref(&q, &o, &am, &one, 1);
    CHECK(o == -INFINITY && am == -1, "empty window: %g at %d", o, am);
    maxpool2d_backward_ref(&q, &din, &g, &am, 1);
    CHECK(din == 0.0f, "empty window gradient %g", din);
    CHECK(ops_maxpool2d_forward(g_ctx, &q, &o, NULL, &one) == TS_OK && o == -INFINITY, "dispatch: %g", o);
}

/* conv2d with padding t,l,b,r against a direct sum */
static void test_conv_asymmetric_values(void) {
    const char *text = "input shape=2x5x4\nconv2d name=c out=3 kernel=3x2 stride=2x1 padding=1,0,2,1\n";
    ts_model *m = make_model(text);
    if (!m) return;
    ts_layer_info li;
    CHECK(ts_model_layer(m, 1, &li) == TS_OK, "layer");
    /* OH = (5 + 1 + 2 - 3) / 2 + 1 = 3, OW = (4 + 0 + 1 - 2) / 1 + 1 = 4 */
    CHECK(li.out.ndim == 3 && li.out.dims[0] == 3 && li.out.dims[1] == 3 && li.out.dims[2] == 4,
          "output %lldx%lldx%lld", (long long)li.out.dims[0], (long long)li.out.dims[1], (long long)li.out.dims[2]);
    ts_tensor_info w = test_tensor(m, "c.weight"), b = test_tensor(m, "c.bias");
    float x[2 * 2 * 5 * 4], out[2 * 36], want[2 * 36];
    test_fill_uniform(x, 80, 3, -1, 1);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 3; k++)
            for (int oy = 0; oy < 3; oy++)
                for (int ox = 0; ox < 4; ox++) {
                    double acc = b.data[k];
                    for (int c = 0; c < 2; c++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 2; kx++) {
                                const int iy = oy * 2 - 1 + ky, ix = ox - 0 + kx;
                                if (iy < 0 || iy >= 5 || ix < 0 || ix >= 4) continue;
                                acc += (double)w.data[((k * 2 + c) * 3 + ky) * 2 + kx] * x[((s * 2 + c) * 5 + iy) * 4 + ix];
                            }
                    want[((s * 3 + k) * 3 + oy) * 4 + ox] = (float)acc;
                }
    for (int be = 0; be < 2; be++) {
        ts_ctx_set_backend(g_ctx, be ? TS_BACKEND_DNNL : TS_BACKEND_REF);
        CHECK(ts_model_predict(g_ctx, m, x, 2, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        test_allclose(be ? "conv padding=1,0,2,1 dnnl" : "conv padding=1,0,2,1 ref", out, want, 72, 1e-5, 1e-6);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    ts_model_free(m);
}

/* ------------------------------------------------------- convtranspose */

/* ONNX's ConvTranspose example: 3x3 of 0..8, weights all ones (1, 2, 3, 3) */
static void test_convtranspose_onnx_example(void) {
    ts_model *m = make_model("input shape=1x3x3\nconvtranspose name=t out=2 kernel=3 bias=0\n");
    if (!m) return;
    ts_tensor_info w = test_tensor(m, "t.weight");
    CHECK(w.ndim == 4 && w.dims[0] == 1 && w.dims[1] == 2 && w.dims[2] == 3 && w.dims[3] == 3, "weight shape");
    for (int i = 0; i < 18; i++) w.data[i] = 1.0f;
    float x[9], out[50];
    for (int i = 0; i < 9; i++) x[i] = (float)i;
    const float plane[25] = {0, 1, 3, 3, 2, 3, 8, 15, 12, 7, 9, 21, 36, 27, 15, 9, 20, 33, 24, 13, 6, 13, 21, 15, 8};
    float want[50];
    memcpy(want, plane, sizeof plane), memcpy(want + 25, plane, sizeof plane);
    for (int be = 0; be < 2; be++) {
        ts_ctx_set_backend(g_ctx, be ? TS_BACKEND_DNNL : TS_BACKEND_REF);
        CHECK(ts_model_predict(g_ctx, m, x, 1, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        test_allclose(be ? "convtranspose example dnnl" : "convtranspose example ref", out, want, 50, 0, 1e-5);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    ts_model_free(m);
}

/* Every attribute at once against the definition: each input value scatters
 * x[c,iy,ix] * w[c,o,ky,kx] to (iy*sh - top + ky*dh, ix*sw - left + kx*dw). */
static void test_convtranspose_values(void) {
    const int C = 4, H = 3, W = 4, O = 6, G = 2, KH = 3, KW = 2, SH = 2, SW = 3, PT = 1, PL = 0, PB = 0, PR = 1;
    const int OPH = 1, OPW = 2, DH = 1, DW = 2;
    const int OH = (H - 1) * SH - PT - PB + DH * (KH - 1) + OPH + 1, OW = (W - 1) * SW - PL - PR + DW * (KW - 1) + OPW + 1;
    ts_model *m = make_model("input shape=4x3x4\nconvtranspose name=t out=6 kernel=3x2 stride=2x3 padding=1,0,0,1 "
                             "output_padding=1x2 dilation=1x2 groups=2\n");
    if (!m) return;
    ts_layer_info li;
    CHECK(ts_model_layer(m, 1, &li) == TS_OK && li.out.dims[0] == O && li.out.dims[1] == OH && li.out.dims[2] == OW,
          "output %lldx%lldx%lld, want %dx%dx%d", (long long)li.out.dims[0], (long long)li.out.dims[1],
          (long long)li.out.dims[2], O, OH, OW);
    ts_tensor_info w = test_tensor(m, "t.weight"), b = test_tensor(m, "t.bias");
    CHECK(w.dims[0] == C && w.dims[1] == O / G && w.dims[2] == KH && w.dims[3] == KW, "weight shape");
    const int n = 2;
    float *x = fvec((size_t)n * C * H * W, 61), *out = test_falloc((size_t)n * O * OH * OW);
    double *acc = calloc((size_t)n * O * OH * OW, sizeof *acc);
    float *want = test_falloc((size_t)n * O * OH * OW);
    for (int s = 0; s < n; s++) {
        for (int o = 0; o < O; o++)
            for (int i = 0; i < OH * OW; i++) acc[((size_t)s * O + o) * OH * OW + i] = b.data[o];
        for (int c = 0; c < C; c++) {
            const int g = c / (C / G);
            for (int ol = 0; ol < O / G; ol++) {
                const int o = g * (O / G) + ol;
                for (int iy = 0; iy < H; iy++)
                    for (int ix = 0; ix < W; ix++)
                        for (int ky = 0; ky < KH; ky++)
                            for (int kx = 0; kx < KW; kx++) {
                                const int oy = iy * SH - PT + ky * DH, ox = ix * SW - PL + kx * DW;
                                if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
                                acc[(((size_t)s * O + o) * OH + oy) * OW + ox] +=
                                    (double)x[(((size_t)s * C + c) * H + iy) * W + ix] *
                                    w.data[((c * (O / G) + ol) * KH + ky) * KW + kx];
                            }
            }
        }
    }
    for (size_t i = 0; i < (size_t)n * O * OH * OW; i++) want[i] = (float)acc[i];
    for (int be = 0; be < 2; be++) {
        ts_ctx_set_backend(g_ctx, be ? TS_BACKEND_DNNL : TS_BACKEND_REF);
        CHECK(ts_model_predict(g_ctx, m, x, n, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        test_allclose(be ? "convtranspose dnnl" : "convtranspose ref", out, want, (size_t)n * O * OH * OW, 1e-5,
                      1e-6);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    free(x), free(out), free(acc), free(want);
    ts_model_free(m);
}

/* ------------------------------------------------- oneDNN against the ref */

/* Within 1e-4 relative and 1e-5 of want's largest finite magnitude absolute; equal
 * infinities (empty max windows) match. */
static int close_to(const char *what, const float *got, const float *want, size_t n) {
    float *g = test_falloc(n), *w = test_falloc(n);
    double big = 0;
    for (size_t i = 0; i < n; i++) {
        const int same_inf = isinf(got[i]) && got[i] == want[i];
        g[i] = same_inf ? 0.0f : got[i];
        w[i] = same_inf ? 0.0f : want[i];
        big = fmax(big, fabs((double)w[i]));
    }
    const int ok = test_allclose(what, g, w, n, 1e-4, 1e-5 * fmax(big, 1e-3));
    free(g), free(w);
    return ok;
}

static void conv_parity(conv2d_params p, int with_bias, unsigned seed) {
    CHECK(conv2d_params_finish(&p), "conv case");
    const size_t n_in = (size_t)p.n * p.c * p.h * p.w, n_out = (size_t)p.n * p.k * p.oh * p.ow;
    const size_t n_w = (size_t)p.k * (p.c / p.groups) * p.kh * p.kw;
    float *in = fvec(n_in, seed), *w = fvec(n_w, seed + 1), *bias = with_bias ? fvec((size_t)p.k, seed + 2) : NULL;
    float *dout = fvec(n_out, seed + 3), *o1 = test_falloc(n_out), *o2 = test_falloc(n_out);
    float *d1 = test_falloc(n_in), *d2 = test_falloc(n_in), *w1 = test_falloc(n_w), *w2 = test_falloc(n_w);
    float *b1 = test_falloc((size_t)p.k), *b2 = test_falloc((size_t)p.k);
    void *scratch = malloc(conv2d_scratch_size(&p) + 1);
    conv2d_forward_ref(&p, o1, in, w, bias, scratch, 2);
    conv2d_backward_data_ref(&p, d1, dout, w, scratch, 2);
    conv2d_backward_weights_ref(&p, w1, with_bias ? b1 : NULL, dout, in, scratch, 2);
    /* the oneDNN kernels directly: they must take these cases, not fall back */
    CHECK(conv2d_forward_dnnl(g_ctx, &p, o2, in, w, bias) == TS_OK, "forward: %s", ts_ctx_error(g_ctx));
    CHECK(conv2d_backward_data_dnnl(g_ctx, &p, d2, dout, w) == TS_OK, "data: %s", ts_ctx_error(g_ctx));
    CHECK(conv2d_backward_weights_dnnl(g_ctx, &p, w2, with_bias ? b2 : NULL, dout, in) == TS_OK, "weights: %s",
          ts_ctx_error(g_ctx));
    int ok = close_to("conv forward", o2, o1, n_out) & close_to("conv backward data", d2, d1, n_in) &
             close_to("conv backward weights", w2, w1, n_w);
    if (with_bias) ok &= close_to("conv backward bias", b2, b1, (size_t)p.k);
    if (!ok)
        fprintf(stderr, "  case: c%d %dx%d k%d kernel %dx%d stride %d,%d pad %d,%d,%d,%d dil %d,%d g%d\n", p.c, p.h,
                p.w, p.k, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.pbh, p.pbw, p.dh, p.dw, p.groups);
    free(in), free(w), free(bias), free(dout), free(o1), free(o2), free(d1), free(d2), free(w1), free(w2);
    free(b1), free(b2), free(scratch);
}

static uint64_t g_rand = 0x2545f4914f6cdd1dULL;
static int rand_int(int lo, int hi) {
    g_rand ^= g_rand << 13;
    g_rand ^= g_rand >> 7;
    g_rand ^= g_rand << 17;
    return lo + (int)(g_rand % (uint64_t)(hi - lo + 1));
}

static void test_conv_dnnl_asymmetric(void) {
    conv2d_params p = {.n = 2, .c = 3, .h = 9, .w = 8, .k = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 1,
                       .pbh = 2, .pbw = 0, .dh = 1, .dw = 1, .groups = 1};
    conv_parity(p, 1, 10);
    p.sh = 2, p.sw = 3, p.ph = 1, p.pw = 2, p.pbh = 0, p.pbw = 3, p.dh = 2; /* stride, dilation */
    conv_parity(p, 0, 20);
    p = (conv2d_params){.n = 2, .c = 8, .h = 7, .w = 7, .k = 8, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 0, .pw = 0,
                        .pbh = 1, .pbw = 1, .dh = 1, .dw = 1, .groups = 8}; /* depthwise, TF "SAME" style */
    conv_parity(p, 1, 30);
    p = (conv2d_params){.n = 1, .c = 4, .h = 5, .w = 6, .k = 6, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0,
                        .pbh = 1, .pbw = 2, .dh = 1, .dw = 1, .groups = 2}; /* 1x1 with end padding */
    conv_parity(p, 1, 40);
    for (int i = 0, done = 0; done < 12 && i < 500; i++) {
        conv2d_params q = {.n = rand_int(1, 2), .c = 2 * rand_int(1, 2), .h = rand_int(3, 11), .w = rand_int(3, 11),
                           .k = 2 * rand_int(1, 2), .kh = rand_int(1, 4), .kw = rand_int(1, 4), .sh = rand_int(1, 3),
                           .sw = rand_int(1, 3), .ph = rand_int(0, 3), .pw = rand_int(0, 3), .pbh = rand_int(0, 3),
                           .pbw = rand_int(0, 3), .dh = rand_int(1, 2), .dw = rand_int(1, 2), .groups = rand_int(1, 2)};
        conv2d_params r = q;
        if (!conv2d_params_finish(&r)) continue;
        conv_parity(q, rand_int(0, 1), 100 + (unsigned)i);
        done++;
    }
}

/* Through the dispatcher; *fell_back: the oneDNN kernel declined the forward. */
static void pool_parity(pool2d_params p, int is_max, unsigned seed, int *fell_back) {
    CHECK(pool2d_params_finish(&p), "pool case");
    const size_t n_in = (size_t)p.n * p.c * p.h * p.w, n_out = (size_t)p.n * p.c * p.oh * p.ow;
    float *in = fvec(n_in, seed), *dout = fvec(n_out, seed + 1), *o1 = test_falloc(n_out), *o2 = test_falloc(n_out);
    float *o3 = test_falloc(n_out), *d1 = test_falloc(n_in), *d2 = test_falloc(n_in), *brute = test_falloc(n_out);
    int ok = 1;
    pool_brute(is_max, p.count_include_pad, &p, in, brute);
    if (is_max) {
        int32_t *am = malloc(n_out * sizeof *am);
        size_t wsb = ops_maxpool2d_workspace_size(g_ctx, &p);
        void *ws = malloc(wsb + 1);
        maxpool2d_forward_ref(&p, o1, am, in, 2);
        maxpool2d_backward_ref(&p, d1, dout, am, 2);
        ts_status direct = maxpool2d_forward_dnnl(g_ctx, &p, o3, ws, in);
        CHECK(direct == TS_OK || direct == TS_EUNSUPPORTED, "%s", ts_ctx_error(g_ctx));
        if (fell_back) *fell_back = direct == TS_EUNSUPPORTED;
        CHECK(ops_maxpool2d_forward(g_ctx, &p, o2, ws, in) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ops_maxpool2d_backward(g_ctx, &p, d2, dout, ws) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ok &= close_to("maxpool forward", o2, o1, n_out) & close_to("maxpool backward", d2, d1, n_in);
        CHECK(ops_maxpool2d_forward(g_ctx, &p, o3, NULL, in) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ok &= close_to("maxpool inference forward", o3, o1, n_out);
        free(am), free(ws);
    } else {
        avgpool2d_forward_ref(&p, o1, in, 2);
        avgpool2d_backward_ref(&p, d1, dout, 2);
        ts_status direct = avgpool2d_forward_dnnl(g_ctx, &p, o3, in);
        CHECK(direct == TS_OK || direct == TS_EUNSUPPORTED, "%s", ts_ctx_error(g_ctx));
        CHECK(avgpool2d_backward_dnnl(g_ctx, &p, d2, dout) == direct, "forward and backward disagree on support");
        if (fell_back) *fell_back = direct == TS_EUNSUPPORTED;
        CHECK(ops_avgpool2d_forward(g_ctx, &p, o2, in) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ops_avgpool2d_backward(g_ctx, &p, d2, dout) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ok &= close_to("avgpool forward", o2, o1, n_out) & close_to("avgpool backward", d2, d1, n_in);
    }
    ok &= close_to("ref against enumeration", o1, brute, n_out);
    if (!ok)
        fprintf(stderr, "  case: %s c%d %dx%d kernel %dx%d stride %d,%d pad %d,%d,%d,%d dil %d,%d%s%s\n",
                is_max ? "max" : "avg", p.c, p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.pbh, p.pbw, p.dh, p.dw,
                p.ceil_mode ? " ceil" : "", p.count_include_pad ? " include_pad" : "");
    free(in), free(dout), free(o1), free(o2), free(o3), free(d1), free(d2), free(brute);
}

static void test_pool_dnnl_asymmetric(void) {
    int fb = 0;
    pool2d_params p = {.n = 2, .c = 3, .h = 7, .w = 8, .kh = 3, .kw = 2, .sh = 2, .sw = 2, .ph = 1, .pw = 0,
                       .pbh = 0, .pbw = 1, .dh = 1, .dw = 1};
    for (int ceil = 0; ceil <= 1; ceil++) {
        p.ceil_mode = ceil;
        pool_parity(p, 1, 200, &fb);
        CHECK(!fb, "asymmetric max pooling fell back (ceil %d)", ceil);
        for (int inc = 0; inc <= 1; inc++) {
            p.count_include_pad = inc;
            pool_parity(p, 0, 210, &fb);
            CHECK(!fb || (inc && ceil), "asymmetric avg pooling fell back (ceil %d include %d)", ceil, inc);
        }
    }
    /* ceil overhang past H+pbh with include padding: falls back and matches */
    p = (pool2d_params){.n = 1, .c = 2, .h = 6, .w = 6, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 0, .pw = 0,
                        .pbh = 0, .pbw = 1, .dh = 1, .dw = 1, .ceil_mode = 1, .count_include_pad = 1};
    pool_parity(p, 0, 220, &fb);
    CHECK(fb, "the ceil overhang with include padding did not fall back");
    /* dilated max pooling on oneDNN */
    p = (pool2d_params){.n = 2, .c = 3, .h = 9, .w = 10, .kh = 3, .kw = 2, .sh = 1, .sw = 2, .ph = 2, .pw = 1,
                        .pbh = 1, .pbw = 0, .dh = 2, .dw = 3};
    pool_parity(p, 1, 230, &fb);
    CHECK(!fb, "dilated max pooling fell back");
    /* an empty dilated window: falls back, -inf as the reference */
    p = (pool2d_params){.n = 1, .c = 2, .h = 1, .w = 5, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .ph = 2, .pw = 0,
                        .pbh = 1, .pbw = 0, .dh = 3, .dw = 1};
    pool_parity(p, 1, 240, &fb);
    CHECK(fb, "a window with no input did not fall back");
    /* random cases */
    int done = 0, fell = 0;
    for (int i = 0; done < 30 && i < 2000; i++) {
        const int is_max = rand_int(0, 1), kh = rand_int(1, 4), kw = rand_int(1, 4);
        const int dh = is_max ? rand_int(1, 2) : 1, dw = is_max ? rand_int(1, 2) : 1;
        pool2d_params q = {.n = rand_int(1, 2), .c = rand_int(1, 3), .h = rand_int(3, 12), .w = rand_int(3, 12),
                           .kh = kh, .kw = kw, .sh = rand_int(1, 3), .sw = rand_int(1, 3),
                           .ph = rand_int(0, (kh - 1) * dh), .pw = rand_int(0, (kw - 1) * dw),
                           .pbh = rand_int(0, (kh - 1) * dh), .pbw = rand_int(0, (kw - 1) * dw), .dh = dh, .dw = dw,
                           .ceil_mode = rand_int(0, 1), .count_include_pad = rand_int(0, 1)};
        pool2d_params r = q;
        if (!pool2d_params_finish(&r)) continue;
        int f = 0;
        pool_parity(q, is_max, 300 + (unsigned)i, &f);
        fell += f;
        done++;
    }
    CHECK(done == 30, "only %d random cases", done);
    CHECK(fell < done / 2, "%d of %d random cases fell back", fell, done);
}

/* ------------------------------------------------- whole-model gradients */

/* Finite differences of a softmax cross-entropy loss against the analytic gradient,
 * several elements of every parameter tensor, as test_graph does. */
static void gradcheck(const char *what, const char *arch, int n, ts_backend backend) {
    CHECK(ts_ctx_set_backend(g_ctx, backend) == TS_OK, "backend");
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, arch, what, NULL, 0, 11, &m);
    CHECK(st == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    if (!m) return;
    const int k = ts_model_classes(m);
    ts_shape s = ts_model_input_shape(m);
    const size_t in_sz = (size_t)ts_shape_numel(&s);
    float *x = test_falloc((size_t)n * in_sz), *logits = test_falloc((size_t)n * k), *dl = test_falloc((size_t)n * k);
    test_fill_uniform(x, (size_t)n * in_sz, 17, -1.5f, 1.5f);
    int32_t *y = calloc((size_t)n, sizeof *y);
    for (int i = 0; i < n; i++) y[i] = (i * 7 + 1) % k;
    CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 1) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    const float loss0 = ts_softmax_cross_entropy(n, k, logits, y, 0.0f, dl);
    CHECK(isfinite(loss0), "%s: loss %g", what, loss0);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    const int64_t np = ts_model_param_count(m);
    float *ana = test_falloc((size_t)np);
    const int nt = ts_model_tensor_count(m);
    double gmax = 0;
    for (int t = 0, off = 0; t < nt; t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        if (ti.role != TS_TENSOR_PARAM) continue;
        memcpy(ana + off, ti.grad, (size_t)ti.numel * sizeof(float));
        for (int64_t i = 0; i < ti.numel; i++) gmax = fmax(gmax, fabs(ti.grad[i]));
        off += (int)ti.numel;
    }
    CHECK(gmax > 1e-4, "%s: gradients vanish (max %g)", what, gmax);
    const float hs[3] = {2e-3f, 5e-4f, 2.5e-4f};
    int checked = 0, retried = 0;
    for (int t = 0, off = 0; t < nt; t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        if (ti.role != TS_TENSOR_PARAM) continue;
        const int64_t picks = ti.numel < 7 ? ti.numel : 7;
        for (int64_t p = 0; p < picks; p++) {
            const int64_t i = picks == ti.numel ? p : (p * (ti.numel - 1)) / (picks - 1);
            const double a = ana[off + i];
            double num = 0, lim = 0;
            int ok = 0;
            for (int h = 0; h < 3 && !ok; h++) {
                const float save = ti.data[i], xp = save + hs[h], xm = save - hs[h];
                ti.data[i] = xp;
                ts_model_forward_train(g_ctx, m, x, n, logits, 1);
                const double lp = ts_softmax_cross_entropy(n, k, logits, y, 0.0f, NULL);
                ti.data[i] = xm;
                ts_model_forward_train(g_ctx, m, x, n, logits, 1);
                const double lm = ts_softmax_cross_entropy(n, k, logits, y, 0.0f, NULL);
                ti.data[i] = save;
                num = (lp - lm) / ((double)xp - (double)xm);
                lim = 2e-2 * fmax(fabs(a), fabs(num)) + 1e-5 + 3e-8 / hs[h];
                ok = fabs(num - a) <= lim;
                retried += !ok;
            }
            CHECK(ok, "%s (backend %d): d loss / d %s[%lld]: analytic %.6g, numeric %.6g (allowed %.3g)", what,
                  (int)backend, ti.name, (long long)i, a, num, lim);
            checked++;
        }
        off += (int)ti.numel;
    }
    CHECK(retried <= checked / 5, "%s: %d of %d elements needed a smaller step", what, retried, checked);
    free(x), free(logits), free(dl), free(y), free(ana);
    ts_model_free(m);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
}

/* Each model ends in a dense layer so every kind sits between two parameterized
 * layers: its input gradient reaches the convolution in front. */
static const char *const GRAD_MODELS[][2] = {
    {"elu+asymmetric conv/maxpool",
     "input shape=2x7x6 classes=3\n"
     "conv2d name=c1 out=3 kernel=3 padding=1,0,2,1\n"
     "elu    alpha=0.7\n"
     "maxpool kernel=2 stride=2 padding=0,1,1,0 ceil=1\n"
     "conv2d name=c2 out=4 kernel=2 stride=1x2 padding=0,1,1,0\n"
     "flatten\n"
     "dense  name=fc out=classes\n"},
    {"selu+prelu+asymmetric avgpool",
     "input shape=2x7x7 classes=3\n"
     "conv2d name=c1 out=4 kernel=3 padding=0,1,1,1\n"
     "selu\n"
     "prelu  name=pc shape=4x1x1\n"
     "avgpool kernel=3 stride=2 padding=1,0,1,2 ceil=1\n"
     "conv2d name=c2 out=3 kernel=1\n"
     "prelu  name=pw shape=1x1x4\n"
     "avgpool kernel=2 stride=2 padding=0,1,1,0 ceil=1 count_include_pad=0\n"
     "flatten\n"
     "prelu  name=pv\n"
     "dense  name=fc out=classes\n"},
    {"hardsigmoid+clip+globalmaxpool",
     "input shape=2x5x5 classes=3\n"
     "conv2d name=c1 out=4 kernel=3 padding=1\n"
     "hardsigmoid alpha=0.6 beta=0.45\n"
     "conv2d name=c2 out=4 kernel=3 padding=1\n"
     "clip   min=-0.3 max=0.35\n"
     "globalmaxpool\n"
     "dense  name=fc out=classes\n"},
    {"softmax/logsoftmax axes, dilated maxpool",
     "input shape=2x7x7 classes=4\n"
     "conv2d name=c1 out=3 kernel=3 padding=1\n"
     "softmax axis=0\n"
     "maxpool kernel=2 stride=1 dilation=2 padding=1,0,0,1\n"
     "conv2d name=c2 out=3 kernel=2\n"
     "logsoftmax axis=-2\n"
     "softmax axis=1 coerce=1\n"
     "flatten\n"
     "dense  name=fc out=8\n"
     "logsoftmax\n"
     "dense  name=fc2 out=classes\n"},
    {"convtranspose",
     "input shape=4x3x3 classes=3\n"
     "convtranspose name=t1 out=4 kernel=3 stride=2 padding=1,0,0,1 output_padding=1 groups=2\n"
     "tanh\n"
     "convtranspose name=t2 out=2 kernel=2x3 stride=1x2 dilation=2x1 bias=0\n"
     "conv2d name=c out=2 kernel=3 stride=2\n"
     "flatten\n"
     "dense  name=fc out=classes\n"},
};

static void test_gradcheck_ref(void) {
    for (size_t i = 0; i < sizeof GRAD_MODELS / sizeof GRAD_MODELS[0]; i++)
        gradcheck(GRAD_MODELS[i][0], GRAD_MODELS[i][1], 4, TS_BACKEND_REF);
}

static void test_gradcheck_dnnl(void) {
    for (size_t i = 0; i < sizeof GRAD_MODELS / sizeof GRAD_MODELS[0]; i++)
        gradcheck(GRAD_MODELS[i][0], GRAD_MODELS[i][1], 4, TS_BACKEND_DNNL);
}

/* The two backends agree on the training forward and gradients of these models. */
static void test_backends_agree(void) {
    for (size_t mi = 0; mi < sizeof GRAD_MODELS / sizeof GRAD_MODELS[0]; mi++) {
        ts_model *m = make_model(GRAD_MODELS[mi][1]);
        if (!m) continue;
        const int n = 5, k = ts_model_classes(m);
        ts_shape s = ts_model_input_shape(m);
        const size_t in_sz = (size_t)ts_shape_numel(&s), np = (size_t)ts_model_param_count(m);
        float *x = fvec((size_t)n * in_sz, 40 + mi), *l[2], *g[2], *dl = test_falloc((size_t)n * k);
        int32_t y[5] = {0, 1, 2, 0, 1};
        for (int b = 0; b < 2; b++) {
            ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_DNNL : TS_BACKEND_REF);
            l[b] = test_falloc((size_t)n * k), g[b] = test_falloc(np);
            CHECK(ts_model_forward_train(g_ctx, m, x, n, l[b], 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
            ts_softmax_cross_entropy(n, k, l[b], y, 0.0f, dl);
            CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
            ts_tensor_info first;
            ts_model_tensor(m, 0, &first);
            memcpy(g[b], first.grad, np * sizeof(float));
        }
        char what[128];
        snprintf(what, sizeof what, "%s: logits dnnl vs ref", GRAD_MODELS[mi][0]);
        test_allclose(what, l[1], l[0], (size_t)n * k, 1e-4, 1e-5);
        snprintf(what, sizeof what, "%s: gradients dnnl vs ref", GRAD_MODELS[mi][0]);
        test_allclose(what, g[1], g[0], np, 1e-3, 1e-5);
        free(x), free(dl), free(l[0]), free(l[1]), free(g[0]), free(g[1]);
        ts_model_free(m);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
}

/* globalmaxpool's gradient goes to the first maximum of each plane only */
static void test_globalmaxpool_backward(void) {
    ts_model *m = make_model("input shape=1x2x2\nconv2d name=c out=2 kernel=1 bias=1\nglobalmaxpool\n");
    if (!m) return;
    ts_tensor_info w = test_tensor(m, "c.weight"), b = test_tensor(m, "c.bias");
    w.data[0] = 1.0f, w.data[1] = -1.0f, b.data[0] = b.data[1] = 0.0f;
    const float x[4] = {0.5f, 2.0f, 2.0f, -3.0f}; /* channel 0: max 2 at 1 (tie at 2); channel 1: 3 at 3 */
    float out[2], dl[2] = {0.5f, -2.0f};
    CHECK(ts_model_forward_train(g_ctx, m, x, 1, out, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(out[0] == 2.0f && out[1] == 3.0f, "out %g %g", out[0], out[1]);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    w = test_tensor(m, "c.weight"), b = test_tensor(m, "c.bias");
    /* dW0 = dl0 * x[1], dW1 = dl1 * x[3] */
    CHECK(w.grad[0] == 0.5f * 2.0f && w.grad[1] == -2.0f * -3.0f, "dW %g %g", w.grad[0], w.grad[1]);
    CHECK(b.grad[0] == 0.5f && b.grad[1] == -2.0f, "db %g %g", b.grad[0], b.grad[1]);
    /* inference and training forward agree */
    float o2[2];
    CHECK(ts_model_predict(g_ctx, m, x, 1, o2) == TS_OK && !memcmp(out, o2, sizeof o2), "predict");
    ts_model_free(m);
}

/* ------------------------------------------------------ writer and parser */

/* arch_layer_attrs writes what the parser reads: every new attribute survives. */
static void test_attrs_round_trip(void) {
    const char *text = "input shape=4x9x9\n"
                       "conv2d name=c out=4 kernel=3 padding=1,0,2,1 dilation=2x1\n"
                       "conv2d name=d out=4 kernel=3 padding=1\n"
                       "maxpool name=mp kernel=3 stride=1 padding=2,1,0,2 dilation=2x1 ceil=1\n"
                       "avgpool name=ap kernel=2 padding=0,1,1,0 ceil=1 count_include_pad=0\n"
                       "elu name=e alpha=0.3\n"
                       "selu name=s\n"
                       "hardsigmoid name=h alpha=0.16666667 beta=0.5\n"
                       "clip name=c1 max=6\n"
                       "clip name=c2 min=-1.5\n"
                       "clip name=c3\n"
                       "prelu name=p shape=4x1x1\n"
                       "softmax name=sm axis=0\n"
                       "logsoftmax name=ls axis=-2 coerce=1\n"
                       "globalmaxpool name=g\n"
                       "convtranspose name=t in=ap out=3 kernel=3 stride=2 padding=1,0,0,1 output_padding=1x0 "
                       "dilation=1x2 groups=1 bias=0\n";
    ts_model *m = make_model(text);
    if (!m) return;
    /* rebuild the text from the writer, parse it, compare every layer */
    size_t cap = 8192, len = 0;
    char *re = malloc(cap);
    len += (size_t)snprintf(re, cap, "input shape=4x9x9\n");
    for (int i = 1; i < m->nlayers; i++) {
        len += (size_t)snprintf(re + len, cap - len, "%s name=%s in=%s", LAYER_OPS[m->layers[i].kind].name,
                                m->layers[i].name, m->layers[m->layers[i].inputs[0]].name);
        len += (size_t)attrs_write(m->layers[i].kind, &m->layers[i].attrs, re + len, cap - len);
        len += (size_t)snprintf(re + len, cap - len, "\n");
    }
    CHECK(len < cap, "text too long");
    ts_model *m2 = make_model(re);
    if (m2) {
        CHECK(m2->nlayers == m->nlayers, "layers %d vs %d", m2->nlayers, m->nlayers);
        for (int i = 1; i < m->nlayers && i < m2->nlayers; i++) {
            const layer *a = &m->layers[i], *b = &m2->layers[i];
            int same = a->kind == b->kind && a->oph == b->oph && a->opw == b->opw && a->features == b->features &&
                       a->bias == b->bias && a->ph == b->ph && a->pw == b->pw && a->pbh == b->pbh && a->pbw == b->pbw &&
                       a->dh == b->dh && a->dw == b->dw && a->ceil_mode == b->ceil_mode &&
                       a->count_include_pad == b->count_include_pad && a->alpha == b->alpha && a->beta == b->beta &&
                       a->gamma == b->gamma && a->lo == b->lo && a->hi == b->hi && a->axis == b->axis &&
                       a->coerce == b->coerce && a->tshape.ndim == b->tshape.ndim &&
                       !memcmp(a->tshape.dims, b->tshape.dims, sizeof a->tshape.dims) && a->out.ndim == b->out.ndim &&
                       !memcmp(a->out.dims, b->out.dims, sizeof a->out.dims);
            CHECK(same, "layer %s differs after writing and reading: %s", a->name, re);
        }
        ts_model_free(m2);
    }
    /* spot checks of what the parser read */
    const layer *c = &m->layers[1], *d = &m->layers[2], *mp = &m->layers[3];
    CHECK(c->ph == 1 && c->pw == 0 && c->pbh == 2 && c->pbw == 1, "conv t,l,b,r %d %d %d %d", c->ph, c->pw, c->pbh,
          c->pbw);
    CHECK(d->ph == 1 && d->pbh == 1 && d->pw == 1 && d->pbw == 1, "symmetric padding");
    CHECK(mp->dh == 2 && mp->dw == 1, "maxpool dilation %dx%d", mp->dh, mp->dw);
    CHECK(m->layers[6].alpha == 1.67326319217681884765625f && m->layers[6].gamma == 1.05070102214813232421875f,
          "selu defaults %.9g %.9g", m->layers[6].alpha, m->layers[6].gamma);
    CHECK(m->layers[8].lo == -INFINITY && m->layers[8].hi == 6.0f, "clip max only");
    CHECK(m->layers[10].lo == -INFINITY && m->layers[10].hi == INFINITY, "clip unbounded");
    free(re);
    ts_model_free(m);
}

static void test_parse_errors(void) {
    expect_error("input shape=1x8x8\nconv2d out=2 kernel=3 padding=1,2,3\n", TS_EFORMAT, 2, "padding=1,2,3", "t,l,b,r",
                 NULL);
    expect_error("input shape=1x8x8\nconv2d out=2 kernel=3 padding=1,2,3,-1\n", TS_EFORMAT, 2, "padding", NULL);
    expect_error("input shape=1x8x8\nconv2d out=2 kernel=3 padding=1x2,3,4\n", TS_EFORMAT, 2, "padding", NULL);
    expect_error("input shape=1x8x8\nconv2d out=2 kernel=3 padding=1,2,3,4,5\n", TS_EFORMAT, 2, "padding", NULL);
    expect_error("input shape=1x8x8\nconv2d out=2 kernel=3 padding=1,,3,4\n", TS_EFORMAT, 2, "padding", NULL);
    expect_error("input shape=1x8x8\nmaxpool kernel=2 padding=1,1,\n", TS_EFORMAT, 2, "padding", NULL);
    expect_error("input shape=1x8x8\n\nmaxpool kernel=2 dilation=0\n", TS_EFORMAT, 3, "dilation", NULL);
    expect_error("input shape=1x8x8\navgpool kernel=2 dilation=2\n", TS_EFORMAT, 2, "unknown key", "dilation", NULL);
    expect_error("input shape=1x8x8\nmaxpool kernel=3 padding=0,0,3,0\n", TS_ESHAPE, 2, "padding", "extent", NULL);
    expect_error("input shape=1x8x8\nmaxpool kernel=2 dilation=2 padding=3\n", TS_ESHAPE, 2, "padding", NULL);
    expect_error("input shape=1x4x4\nconv2d out=2 kernel=7 padding=1,1,1,1\n", TS_ESHAPE, 2, "1,1,1,1", NULL);
    expect_error("input shape=4\nelu alpha=x\n", TS_EFORMAT, 2, "alpha=x", NULL);
    expect_error("input shape=4\nselu gamma=nan\n", TS_EFORMAT, 2, "gamma", NULL);
    expect_error("input shape=4\nhardsigmoid gamma=1\n", TS_EFORMAT, 2, "unknown key", "gamma", NULL);
    expect_error("input shape=4\nclip min=abc\n", TS_EFORMAT, 2, "min=abc", "finite", NULL);
    expect_error("input shape=4\nclip max=inf\n", TS_EFORMAT, 2, "max=inf", NULL);
    expect_error("input shape=4\nclip max=1e39\n", TS_EFORMAT, 2, "max", NULL);
    expect_error("input shape=4\nprelu shape=0\n", TS_EFORMAT, 2, "shape", NULL);
    expect_error("input shape=3x2x2\nprelu shape=4\n", TS_ESHAPE, 2, "prelu", "slope", "3x2x2", NULL);
    expect_error("input shape=3x2x2\nprelu shape=3x1\n", TS_ESHAPE, 2, "slope", NULL);
    expect_error("input shape=3x2x2\nprelu shape=1x3x2x2\n", TS_ESHAPE, 2, "slope", NULL);
    expect_error("input shape=2x3\nsoftmax axis=2\n", TS_ESHAPE, 2, "axis=2", "-2..1", NULL);
    expect_error("input shape=2x3\nlogsoftmax axis=-3\n", TS_ESHAPE, 2, "logsoftmax", "axis=-3", NULL);
    expect_error("input shape=2x3\nsoftmax axis=x\n", TS_EFORMAT, 2, "axis=x", NULL);
    expect_error("input shape=2x3\nsoftmax coerce=2\n", TS_EFORMAT, 2, "coerce=2", NULL);
    expect_error("input shape=2x3\nglobalmaxpool\n", TS_ESHAPE, 2, "globalmaxpool", NULL);
    expect_error("input shape=2x3x3\nelu in=input0,input0\n", TS_EFORMAT, 2, "exactly one input", NULL);
    expect_error("input shape=2x3x3\nconvtranspose out=2 kernel=3 stride=2 output_padding=2\n", TS_ESHAPE, 2,
                 "output_padding", "stride", NULL);
    expect_error("input shape=2x3x3\nconvtranspose out=2 kernel=3 output_padding=1x\n", TS_EFORMAT, 2,
                 "output_padding", NULL);
    expect_error("input shape=3x3x3\nconvtranspose out=2 kernel=3 groups=2\n", TS_ESHAPE, 2, "groups", NULL);
    expect_error("input shape=2x1x1\nconvtranspose out=2 kernel=1 padding=1\n", TS_ESHAPE, 2, "output", NULL);
    expect_error("input shape=2x3x3\nconvtranspose out=2 kernel=3 ceil=1\n", TS_EFORMAT, 2, "unknown key", NULL);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_elu_selu);
    RUN(test_hardsigmoid_clip);
    RUN(test_hardswish_sqrt_erf_pow);
    RUN(test_reducemean);
    RUN(test_eltwise_gradients_at_edges);
    RUN(test_prelu);
    RUN(test_globalmaxpool);
    RUN(test_globalmaxpool_backward);
    RUN(test_softmax_axes);
    RUN(test_pool_asymmetric_values);
    RUN(test_maxpool_dilation);
    RUN(test_conv_asymmetric_values);
    RUN(test_convtranspose_onnx_example);
    RUN(test_convtranspose_values);
    RUN(test_conv_dnnl_asymmetric);
    RUN(test_pool_dnnl_asymmetric);
    RUN(test_gradcheck_ref);
    RUN(test_gradcheck_dnnl);
    RUN(test_backends_agree);
    RUN(test_attrs_round_trip);
    RUN(test_parse_errors);
    ts_ctx_free(g_ctx);
    rmdir(g_tmp);
    TEST_MAIN_END("test_layers_eltwise");
}
