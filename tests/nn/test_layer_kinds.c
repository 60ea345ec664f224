/* Every layer kind from one table (ggml's test-backend-ops habit): for each row, a
 * small model around the kind; its inference on oneDNN and in constant-time mode
 * against the reference kernels; its training gradients on oneDNN against the
 * reference; and a finite-difference check of the reference gradients. A kind with
 * no parameters sits after a 1x1 convolution ("pre"), whose weight gradient carries
 * the kind's backward. The test fails for a kind with no row: a new kind is tested
 * by adding one. */
#include "common/test.h"
#include "nn/nn.h"

#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;

#define PRE "conv2d name=pre out=3 kernel=1\n"
#define N 3

typedef struct kind_case {
    const char *kind;
    const char *arch; /* after the input line */
    const char *input;
} kind_case;

/* a model that starts with this embedding (vocab 7) reads token ids */
#define EMB "embedding name=e vocab=7 dim=3\n"
#define EMB_VOCAB 7

static const kind_case CASES[] = {
    {"conv2d", "conv2d name=t out=3 kernel=3 stride=2 padding=1,0,1,2 dilation=1x2\n", "2x7x7"},
    {"convtranspose", "convtranspose name=t out=3 kernel=3 stride=2 padding=1 output_padding=1 groups=1\n", "2x4x4"},
    {"maxpool", PRE "maxpool name=t kernel=3 stride=2 padding=1\n", "2x6x6"},
    {"avgpool", PRE "avgpool name=t kernel=3 stride=2 padding=1 count_include_pad=0\n", "2x6x6"},
    {"globalavgpool", PRE "globalavgpool name=t\n", "2x5x5"},
    {"globalmaxpool", PRE "globalmaxpool name=t\n", "2x5x5"},
    {"batchnorm", PRE "batchnorm name=t\n", "2x4x4"},
    {"dense", "dense name=t out=5\n", "12"},
    {"relu", PRE "relu name=t\n", "2x4x4"},
    {"leakyrelu", PRE "leakyrelu name=t slope=0.1\n", "2x4x4"},
    {"sigmoid", PRE "sigmoid name=t\n", "2x4x4"},
    {"tanh", PRE "tanh name=t\n", "2x4x4"},
    {"softmax", PRE "softmax name=t axis=0\n", "2x4x4"},
    {"add", PRE "conv2d name=pre2 in=input0 out=3 kernel=1\nadd name=t in=pre,pre2\n", "2x4x4"},
    {"concat", PRE "conv2d name=pre2 in=input0 out=2 kernel=1\nconcat name=t in=pre,pre2 axis=0\n", "2x4x4"},
    {"flatten", PRE "flatten name=t\n", "2x4x4"},
    {"dropout", PRE "dropout name=t p=0.3\n", "2x4x4"},
    {"mask", PRE "mask name=t\n", "2x4x4"},
    {"elu", PRE "elu name=t alpha=0.7\n", "2x4x4"},
    {"selu", PRE "selu name=t\n", "2x4x4"},
    {"hardsigmoid", PRE "hardsigmoid name=t\n", "2x4x4"},
    {"clip", PRE "clip name=t min=-0.3 max=0.4\n", "2x4x4"},
    {"prelu", PRE "prelu name=t shape=3x1x1\n", "2x4x4"},
    {"logsoftmax", PRE "logsoftmax name=t axis=1\n", "2x4x4"},
    {"reshape", PRE "reshape name=t shape=6x8\n", "2x4x4"},
    {"transpose", PRE "transpose name=t perm=2,0,1\n", "2x4x5"},
    {"pad", PRE "pad name=t pads=0,1,2,0,2,-1 mode=reflect\n", "2x4x5"},
    {"pad", PRE "pad name=t pads=0,-1,-2,0,-1,0\n", "2x4x5"}, /* a crop: ONNX Slice and Gather of computed values */
    {"binary", PRE "conv2d name=pre2 in=input0 out=3 kernel=1\nbinary name=b1 in=pre,pre2 op=mul\n"
               "binary name=t op=div const=3x1x1\n", "2x4x4"},
    {"matmul", "matmul name=t b=5x4\n", "3x5"},
    {"matmul", PRE "reshape name=r shape=3x16\ntranspose name=tt perm=1,0\nmatmul name=t in=r,tt\n", "2x4x4"},
    {"constant", PRE "constant name=k shape=3x4x4 in=input0\nadd name=t in=pre,k\n", "2x4x4"},
    {"hardswish", PRE "hardswish name=t\n", "2x4x4"},
    {"sqrt", PRE "sigmoid name=s\nsqrt name=t\n", "2x4x4"},
    {"erf", PRE "erf name=t\n", "2x4x4"},
    {"pow", PRE "pow name=t exponent=3\n", "2x4x4"},
    {"reducemean", PRE "reducemean name=t axes=0,2\n", "2x4x5"},
    {"resize", PRE "resize name=t size=7x3 mode=linear coord=pytorch_half_pixel\n", "2x4x5"},
    {"resize", PRE "resize name=t scale=2x1.5 coord=asymmetric nearest=floor\n", "2x3x4"},
    {"resize", PRE "resize name=t scale=1.5x0.5 mode=linear coord=align_corners\n", "2x4x5"},
    {"embedding", "embedding name=t vocab=7 dim=3\n", "5"},
    {"rnn", "rnn name=t hidden=3 bidirectional=1\n", "4x3"},
    {"rnn", EMB "rnn name=t in=e,input0 hidden=3 act=relu sequence=0\n", "6"},
    {"lstm", EMB "lstm name=t in=e,input0 hidden=3 bidirectional=1\n", "6"},
    {"lstm", "lstm name=t hidden=2 sequence=0\n", "4x3"},
    {"gru", EMB "gru name=t in=e,input0 hidden=3 bidirectional=1 sequence=0\n", "6"},
    {"gru", "gru name=t hidden=3 linear_before_reset=0\n", "4x3"},
    /* an encoder's final h and c start a decoder over the same steps */
    {"lstm", EMB "lstm name=enc in=e,input0 hidden=2 bidirectional=1 sequence=2\n"
             "lstm name=t in=e,input0,enc hidden=2 bidirectional=1 initial=1\n", "6"},
    {"gru", "gru name=enc hidden=3 sequence=2\ngru name=t in=input0,enc hidden=3 initial=1 sequence=0\n", "4x3"},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

/* Every tensor from a seeded stream: variances and divisors away from zero, keep
 * masks with some units removed. */
static void fill_tensors(ts_model *m, uint64_t seed) {
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info t;
        ts_model_tensor(m, i, &t);
        if (strstr(t.name, ".keep"))
            for (int64_t j = 0; j < t.numel; j++) t.data[j] = (float)(j % 3 != 1);
        else if (strstr(t.name, "running_var") || strstr(t.name, ".const"))
            test_fill_uniform(t.data, (size_t)t.numel, seed + (uint64_t)i, 0.5f, 1.5f);
        else
            test_fill_uniform(t.data, (size_t)t.numel, seed + (uint64_t)i, -1.0f, 1.0f);
    }
}

static ts_model *build(const kind_case *c) {
    char text[1024];
    snprintf(text, sizeof text, "input shape=%s\n%s", c->input, c->arch);
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, c->kind, NULL, 0, 7, &m) == TS_OK, "%s: %s", c->kind, ts_ctx_error(g_ctx));
    if (m) fill_tensors(m, 11);
    return m;
}

/* Inference on the current ctx settings; logits (N, classes). */
static void infer(ts_model *m, const float *x, float *y) {
    CHECK(ts_model_predict(g_ctx, m, x, N, y) == TS_OK, "predict: %s", ts_ctx_error(g_ctx));
}

/* A linear loss sum(r * y) of a training forward, and its gradients (backward). */
static double loss_of(ts_model *m, const float *x, const float *r, float *y, int k, int backward) {
    CHECK(ts_model_forward_train(g_ctx, m, x, N, y, 99) == TS_OK, "forward: %s", ts_ctx_error(g_ctx));
    double l = 0;
    for (int i = 0; i < N * k; i++) l += (double)r[i] * y[i];
    if (backward) CHECK(ts_model_backward(g_ctx, m, r) == TS_OK, "backward: %s", ts_ctx_error(g_ctx));
    return l;
}

/* All parameter gradients, in tensor order, into g (param count). */
static void grads_of(ts_model *m, float *g) {
    int64_t off = 0;
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info t;
        ts_model_tensor(m, i, &t);
        if (t.role != TS_TENSOR_PARAM) continue;
        memcpy(g + off, t.grad, (size_t)t.numel * sizeof(float));
        off += t.numel;
    }
}

static void run_case(const kind_case *c) {
    ts_model *m = build(c);
    if (!m) return;
    const ts_shape s = ts_model_input_shape(m);
    const size_t in = (size_t)ts_shape_numel(&s);
    const int k = ts_model_classes(m);
    const int64_t np = ts_model_param_count(m);
    float *x = test_falloc(N * in), *r = test_falloc((size_t)N * k);
    float *ref = test_falloc((size_t)N * k), *y = test_falloc((size_t)N * k);
    float *gref = test_falloc((size_t)np), *g = test_falloc((size_t)np);
    test_fill_uniform(x, N * in, 3, -1.0f, 1.0f);
    if (!strncmp(c->arch, "embedding", 9)) /* ids, nonzero but for the last two steps of sample 1 (padding) */
        for (size_t i = 0; i < N * in; i++)
            x[i] = i / in == 1 && i % in >= in - 2 ? 0.0f : (float)(1 + (i * 5 + 3) % (EMB_VOCAB - 1));
    test_fill_uniform(r, (size_t)N * k, 5, -1.0f, 1.0f);
    char what[96];

    /* inference: oneDNN and constant-time mode against the reference kernels */
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    infer(m, x, ref);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    infer(m, x, y);
    snprintf(what, sizeof what, "%s: oneDNN inference", c->kind);
    test_allclose(what, y, ref, (size_t)N * k, 1e-4, 1e-5);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_ctx_set_constant_time(g_ctx, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    infer(m, x, y);
    ts_ctx_set_constant_time(g_ctx, 0);
    snprintf(what, sizeof what, "%s: constant-time inference", c->kind);
    test_allclose(what, y, ref, (size_t)N * k, 1e-4, 1e-5);

    /* training: oneDNN gradients against the reference's */
    loss_of(m, x, r, y, k, 1);
    grads_of(m, gref);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    fill_tensors(m, 11); /* batch norm moved its running statistics */
    loss_of(m, x, r, y, k, 1);
    grads_of(m, g);
    snprintf(what, sizeof what, "%s: oneDNN gradients", c->kind);
    test_allclose(what, g, gref, (size_t)np, 1e-3, 1e-5);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    fill_tensors(m, 11);

    /* finite differences of the reference gradients, a few elements per tensor; an
     * element whose step crosses a kink (ReLU at 0, a pooling window's winner) is
     * retried with smaller steps */
    const float hs[3] = {1e-3f, 2.5e-4f, 6e-5f};
    int64_t off = 0;
    int checked = 0;
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info t;
        ts_model_tensor(m, i, &t);
        if (t.role != TS_TENSOR_PARAM) continue;
        for (int64_t e = 0; e < t.numel; e += (t.numel + 3) / 4) {
            double num = 0, lim = 0;
            int ok = 0;
            for (int h = 0; h < 3 && !ok; h++) {
                const float save = t.data[e], xp = save + hs[h], xm = save - hs[h];
                t.data[e] = xp;
                const double lp = loss_of(m, x, r, y, k, 0);
                t.data[e] = xm;
                const double lm = loss_of(m, x, r, y, k, 0);
                t.data[e] = save;
                num = (lp - lm) / ((double)xp - (double)xm);
                lim = 2e-2 * fmax(fabs(num), fabs(gref[off + e])) + 1e-4 + 1e-7 / hs[h];
                ok = fabs(num - gref[off + e]) <= lim;
            }
            CHECK(ok, "%s: d loss / d %s[%lld]: analytic %.6g, numeric %.6g (allowed %.3g)", c->kind, t.name,
                  (long long)e, gref[off + e], num, lim);
            checked++;
        }
        off += t.numel;
    }
    CHECK(checked > 0, "%s: no parameter to check", c->kind);
    free(x);
    free(r);
    free(ref);
    free(y);
    free(gref);
    free(g);
    ts_model_free(m);
}

static void test_every_kind_has_a_row(void) {
    for (int kind = 0; kind < LAYER_KIND_COUNT; kind++) {
        if (kind == LAYER_INPUT) continue; /* in every row */
        int found = 0;
        for (int i = 0; i < NCASES && !found; i++) found = !strcmp(CASES[i].kind, LAYER_OPS[kind].name);
        CHECK(found, "layer kind '%s' has no row in test_layer_kinds.c", LAYER_OPS[kind].name);
    }
}

static void test_kinds(void) {
    for (int i = 0; i < NCASES; i++) run_case(&CASES[i]);
}

int main(void) {
    char tmp[] = "/tmp/tessera_kinds_XXXXXX";
    if (!test_begin(&g_ctx, tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_every_kind_has_a_row);
    RUN(test_kinds);
    ts_ctx_free(g_ctx);
    rmdir(tmp);
    TEST_MAIN_END("test_layer_kinds");
}
