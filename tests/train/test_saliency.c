/* ts_model_saliency: the plain map is the finite-difference gradient of the class
 * logit of the inference function (batch norm's running statistics, residual adds,
 * dropout, a final softmax); the guided map differs only by the ReLU rule, checked
 * by hand on a one-hidden-layer network; the model is unchanged. */
#include "common/test.h"

static ts_ctx *g_ctx;

static ts_model *model_of(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, text, "saliency.arch", NULL, 0, seed, &m);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    return m;
}

/* Running statistics away from (0, 1), so that using them (and not the batch's) shows. */
static void set_running_stats(ts_model *m) {
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info t;
        ts_model_tensor(m, i, &t);
        const int mean = strstr(t.name, "running_mean") != NULL, var = strstr(t.name, "running_var") != NULL;
        for (int64_t k = 0; (mean || var) && k < t.numel; k++) t.data[k] = mean ? 0.1f * (float)(k % 5) - 0.2f : 0.5f + 0.3f * (float)(k % 3);
    }
}

static float logit_of(ts_model *m, const float *x, int c) {
    float logits[16];
    CHECK(ts_model_predict(g_ctx, m, x, 1, logits) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return logits[c];
}

/* Central differences of logit c at x (one sample of `size` values) against g: an
 * element counts as wrong when the two differ by more than tol; elements whose
 * differences at h and h/2 disagree (a ReLU or max pool kink inside the step) are
 * skipped. Returns the number checked. */
static int check_fd(ts_model *m, float *x, int size, int c, const float *g, double tol) {
    int checked = 0, wrong = 0;
    const float h = 1e-2f;
    for (int i = 0; i < size; i++) {
        const float x0 = x[i];
        double d[2];
        for (int k = 0; k < 2; k++) {
            const float s = k ? h / 2 : h;
            x[i] = x0 + s;
            const double up = logit_of(m, x, c);
            x[i] = x0 - s;
            d[k] = (up - logit_of(m, x, c)) / (2.0 * s);
        }
        x[i] = x0;
        if (fabs(d[0] - d[1]) > tol) continue;
        checked++;
        if (fabs(d[1] - g[i]) > tol + 1e-2 * fabs(g[i])) {
            if (wrong++ < 5) fprintf(stderr, "  element %d: fd %.6g, saliency %.6g\n", i, d[1], g[i]);
        }
    }
    CHECK(wrong == 0, "%d of %d elements differ from the finite difference", wrong, checked);
    return checked;
}

/* conv -> bn -> relu, a residual add, max pool, dropout, dense, final softmax */
static const char *RESIDUAL =
    "input shape=2x6x6 classes=4\n"
    "conv2d name=c1 out=3 kernel=3 padding=1\n"
    "batchnorm name=bn1\n"
    "relu name=r1\n"
    "conv2d name=c2 out=3 kernel=3 padding=1 bias=0\n"
    "batchnorm name=bn2\n"
    "add name=sum in=bn2,r1\n"
    "relu name=r2\n"
    "maxpool name=pool kernel=2\n"
    "flatten name=flat\n"
    "dropout name=drop p=0.5\n"
    "dense name=fc out=classes\n"
    "softmax name=prob\n";

static void test_plain_equals_finite_differences(void) {
    ts_model *m = model_of(RESIDUAL, 3);
    if (!m) return;
    set_running_stats(m);
    enum { N = 3, S = 2 * 6 * 6 };
    float x[N * S], g[N * S], before[N * 4], after[N * 4];
    test_fill_uniform(x, N * S, 11, -1.0f, 1.0f);
    CHECK(ts_model_predict(g_ctx, m, x, N, before) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const int cls[N] = {0, 2, 3};
    CHECK(ts_model_saliency(g_ctx, m, x, N, cls, 0, g) == TS_OK, "%s", ts_ctx_error(g_ctx));
    /* the softmax is skipped: the gradient is the logit's, which the model's output
     * hides; a copy without the softmax gives the logits to difference */
    ts_model *logits = model_of(
        "input shape=2x6x6 classes=4\nconv2d name=c1 out=3 kernel=3 padding=1\nbatchnorm name=bn1\nrelu name=r1\n"
        "conv2d name=c2 out=3 kernel=3 padding=1 bias=0\nbatchnorm name=bn2\nadd name=sum in=bn2,r1\nrelu name=r2\n"
        "maxpool name=pool kernel=2\nflatten name=flat\ndropout name=drop p=0.5\ndense name=fc out=classes\n",
        4);
    if (!logits) goto done;
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info a, b;
        ts_model_tensor(m, i, &a);
        ts_model_tensor(logits, i, &b);
        memcpy(b.data, a.data, sizeof(float) * (size_t)a.numel);
    }
    int checked = 0;
    for (int i = 0; i < N; i++) checked += check_fd(logits, x + i * S, S, cls[i], g + i * S, 2e-3);
    CHECK(checked > N * S * 3 / 4, "only %d of %d elements away from kinks", checked, N * S);
    double norm = 0;
    for (int i = 0; i < N * S; i++) norm += fabs(g[i]);
    CHECK(norm > 0.1, "the map is (almost) zero: %g", norm);
    /* the running statistics were neither used as the batch's nor updated */
    CHECK(ts_model_predict(g_ctx, m, x, N, after) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(before, after, sizeof before), "the model changed");
    /* class NULL: each sample's predicted class */
    float g2[N * S];
    int pred[N];
    for (int i = 0; i < N; i++) pred[i] = ts_argmax(before + 4 * i, 4);
    CHECK(ts_model_saliency(g_ctx, m, x, N, pred, 0, g) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_saliency(g_ctx, m, x, N, NULL, 0, g2) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(g, g2, sizeof g), "NULL classes are not the predicted ones");
    ts_model_free(logits);
done:
    ts_model_free(m);
}

/* Without a ReLU, guided is the plain gradient, and both are the finite difference. */
static void test_no_relu(void) {
    ts_model *m = model_of("input shape=1x4x4 classes=3\nconv2d out=2 kernel=3\nbatchnorm\ntanh\nflatten\n"
                           "dense out=5\nsigmoid\ndense out=classes\n",
                           5);
    if (!m) return;
    set_running_stats(m);
    float x[2 * 16], g[2 * 16], gg[2 * 16];
    test_fill_uniform(x, 32, 7, -1.0f, 1.0f);
    CHECK(ts_model_saliency(g_ctx, m, x, 2, NULL, 0, g) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_saliency(g_ctx, m, x, 2, NULL, 1, gg) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(g, gg, sizeof g), "guided differs from plain without a ReLU");
    float logits[6];
    CHECK(ts_model_predict(g_ctx, m, x, 2, logits) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int i = 0; i < 2; i++) check_fd(m, x + 16 * i, 16, ts_argmax(logits + 3 * i, 3), g + 16 * i, 1e-3);
    ts_model_free(m);
}

/* x (4) -> dense W1 (3x4), b1 -> relu -> dense W2 (2x3): d logit_c / dx is
 * sum_j W2[c][j] [h_j > 0] W1[j]; guided keeps only the terms with W2[c][j] > 0. */
static void test_guided_by_hand(void) {
    ts_model *m = model_of("input shape=4 classes=2\ndense name=fc1 out=3\nrelu name=r\ndense name=fc2 out=classes\n", 1);
    if (!m) return;
    const float W1[12] = {1, -2, 0.5f, 3, -1, 1, 2, -0.5f, 0.25f, 0.5f, -1, 1};
    const float b1[3] = {0.1f, 0.2f, -0.3f};
    const float W2[6] = {2, -3, 1, -1, 0.5f, -2};
    memcpy(test_tensor(m, "fc1.weight").data, W1, sizeof W1);
    memcpy(test_tensor(m, "fc1.bias").data, b1, sizeof b1);
    memcpy(test_tensor(m, "fc2.weight").data, W2, sizeof W2);
    ts_model_params_changed(m);
    const float x[4] = {0.5f, 0.25f, 1.0f, 0.2f};
    int active[3];
    for (int j = 0; j < 3; j++) {
        float h = b1[j];
        for (int i = 0; i < 4; i++) h += W1[j * 4 + i] * x[i];
        active[j] = h > 0;
    }
    CHECK(active[0] + active[1] + active[2] == 2, "the example should have one unit off");
    for (int c = 0; c < 2; c++) {
        float plain[4], guided[4], want_p[4] = {0}, want_g[4] = {0};
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++) {
                const float w = W2[c * 3 + j];
                if (active[j]) want_p[i] += w * W1[j * 4 + i];
                if (active[j] && w > 0) want_g[i] += w * W1[j * 4 + i];
            }
        CHECK(ts_model_saliency(g_ctx, m, x, 1, &c, 0, plain) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_saliency(g_ctx, m, x, 1, &c, 1, guided) == TS_OK, "%s", ts_ctx_error(g_ctx));
        test_allclose("plain", plain, want_p, 4, 1e-6, 1e-6);
        test_allclose("guided", guided, want_g, 4, 1e-6, 1e-6);
    }
    ts_model_free(m);
}

static void test_refusals(void) {
    ts_model *m = model_of("input shape=4 classes=2\ndense out=classes\n", 1);
    if (!m) return;
    float x[4] = {0}, g[4];
    const int bad = 2;
    CHECK(ts_model_saliency(g_ctx, m, x, 1, &bad, 0, g) == TS_EINVAL, "class 2 of 2 accepted");
    CHECK(strstr(ts_ctx_error(g_ctx), "class 2") != NULL, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_saliency(g_ctx, m, x, 0, NULL, 0, g) == TS_EINVAL, "n = 0 accepted");
    ts_ctx_set_constant_time(g_ctx, 1);
    CHECK(ts_model_saliency(g_ctx, m, x, 1, NULL, 0, g) == TS_EUNSUPPORTED, "constant time accepted");
    ts_ctx_set_constant_time(g_ctx, 0);
    ts_model_free(m);
}

int main(void) {
    if (ts_ctx_create(&g_ctx)) return 1;
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    RUN(test_plain_equals_finite_differences);
    RUN(test_no_relu);
    RUN(test_guided_by_hand);
    RUN(test_refusals);
    /* the oneDNN backend's training kernels give the same map */
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    RUN(test_plain_equals_finite_differences);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_saliency");
}
