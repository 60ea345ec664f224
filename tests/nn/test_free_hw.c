/* Free image size (input free=hw, src/nn/free_hw.c): a model run at several sizes
 * gives what the same graph declared at each size gives with the same weights;
 * alternating sizes, changed weights, a training step and int8 scales set later reach
 * the cached plan; the .tsr file keeps free=hw; fixed-size graphs (a dense after a
 * flatten) are refused, naming the layer. */
#include "common/test.h"

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_freehw_XXXXXX";

#define FREE_ARCH                                   \
    "input shape=3x12x16 free=hw\n"                 \
    "conv2d name=c1 out=6 kernel=3 padding=1 bias=0\n" \
    "batchnorm name=bn1\n"                          \
    "relu\n"                                        \
    "maxpool kernel=2\n"                            \
    "conv2d name=c2 out=6 kernel=3 padding=1\n"     \
    "relu\n"                                        \
    "resize scale=2\n"                              \
    "conv2d name=c3 out=6 kernel=3 stride=2 padding=1\n" \
    "add in=c3,maxpool4\n"                          \
    "conv2d name=head out=4 kernel=1\n"

/* FREE_ARCH declared at h x w (fixed), with m's weights */
static ts_model *fixed_at(const ts_model *m, int h, int w) {
    const char *text = ts_model_arch_text(m);
    char buf[1024];
    const char *nl = strchr(text, '\n');
    snprintf(buf, sizeof buf, "input shape=3x%dx%d\n%s", h, w, nl + 1);
    ts_model *f = NULL;
    ts_status st = ts_model_from_arch(g_ctx, buf, "fixed", NULL, 0, 1, &f);
    CHECK(st == TS_OK, "fixed at %dx%d: %s", h, w, ts_ctx_error(g_ctx));
    for (int t = 0; f && t < ts_model_tensor_count(f); t++) {
        ts_tensor_info a, b;
        ts_model_tensor(m, t, &a);
        ts_model_tensor(f, t, &b);
        memcpy(b.data, a.data, (size_t)a.numel * sizeof(float));
    }
    return f;
}

/* m at h x w on n random images against the fixed model's ts_model_predict */
static void check_size(ts_model *m, int n, int h, int w, uint64_t seed) {
    float *x = test_falloc((size_t)n * 3 * h * w);
    test_fill_uniform(x, (size_t)n * 3 * h * w, seed, -1, 1);
    ts_shape os;
    ts_status st = ts_model_output_shape_hw(g_ctx, m, h, w, &os);
    CHECK(st == TS_OK, "%dx%d: %s", h, w, ts_ctx_error(g_ctx));
    const int64_t k = ts_shape_numel(&os);
    CHECK(os.ndim == 3 && os.dims[0] == 4 && os.dims[1] == h / 2 && os.dims[2] == w / 2,
          "%dx%d: output %lldx%lldx%lld", h, w, (long long)os.dims[0], (long long)os.dims[1], (long long)os.dims[2]);
    float *got = test_falloc((size_t)(n * k)), *want = test_falloc((size_t)(n * k));
    ts_shape ps;
    st = ts_model_predict_hw(g_ctx, m, x, n, h, w, got, &ps);
    CHECK(st == TS_OK && ts_shape_numel(&ps) == k, "predict %dx%d: %s", h, w, ts_ctx_error(g_ctx));
    ts_model *f = fixed_at(m, h, w);
    if (f) {
        CHECK(ts_model_classes(f) == k, "fixed model outputs %d", ts_model_classes(f));
        st = ts_model_predict(g_ctx, f, x, n, want);
        CHECK(st == TS_OK, "fixed predict: %s", ts_ctx_error(g_ctx));
        char what[64];
        snprintf(what, sizeof what, "free model at %dx%d", h, w);
        CHECK(test_allclose(what, got, want, (size_t)(n * k), 0, 0), "%s differs from the fixed model", what);
    }
    ts_model_free(f);
    free(x);
    free(got);
    free(want);
}

static ts_model *free_model(void) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, FREE_ARCH, "free.arch", NULL, 0, 1, &m);
    CHECK(st == TS_OK, "free.arch: %s", ts_ctx_error(g_ctx));
    if (m) test_randomize_model(m, 7);
    return m;
}

/* several sizes, alternating, and the default through both entries */
static void test_sizes(void) {
    ts_model *m = free_model();
    if (!m) return;
    CHECK(ts_model_any_size(m), "free=hw not seen");
    const ts_shape in = ts_model_input_shape(m);
    CHECK(in.ndim == 3 && in.dims[1] == 12 && in.dims[2] == 16, "default size lost");
    check_size(m, 2, 12, 16, 1);
    check_size(m, 1, 20, 24, 2);
    check_size(m, 3, 9, 14, 3);
    check_size(m, 1, 20, 24, 4);
    check_size(m, 2, 12, 16, 5);
    check_size(m, 2, 9, 14, 6);
    /* three sizes besides the default: two plans are kept, the least recent goes */
    check_size(m, 1, 16, 20, 7);
    check_size(m, 1, 20, 24, 8);
    check_size(m, 1, 9, 14, 9);
    /* ts_model_predict runs the default size */
    float x[2 * 3 * 12 * 16], a[2 * 4 * 6 * 8], b[2 * 4 * 6 * 8];
    test_fill_uniform(x, sizeof x / sizeof x[0], 9, -1, 1);
    CHECK(ts_model_classes(m) == 4 * 6 * 8, "classes %d at the default size", ts_model_classes(m));
    CHECK(ts_model_predict(g_ctx, m, x, 2, a) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_predict_hw(g_ctx, m, x, 2, 12, 16, b, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(a, b, sizeof a), "predict and predict_hw differ at the default size");
    /* too small for the graph: the layer is named */
    ts_shape os;
    CHECK(ts_model_output_shape_hw(g_ctx, m, 1, 1, &os) == TS_ESHAPE && strstr(ts_ctx_error(g_ctx), "at 1x1"),
          "1x1: %s", ts_ctx_error(g_ctx));
    check_size(m, 1, 20, 24, 10); /* still runs after a refused size */
    ts_model_free(m);
}

/* the cached plan at another size sees changed weights, a training step included */
static void test_weights_change(void) {
    ts_model *m = free_model();
    if (!m) return;
    check_size(m, 2, 20, 24, 1); /* plans and packs 20x24 */
    ts_tensor_info w = test_tensor(m, "c2.weight");
    for (int64_t i = 0; i < w.numel; i++) w.data[i] *= -0.5f;
    check_size(m, 2, 20, 24, 2);
    /* one SGD step at the default size (batch norm's running statistics move too) */
    float x[4 * 3 * 12 * 16], logits[4 * 192], dl[4 * 192];
    test_fill_uniform(x, sizeof x / sizeof x[0], 3, -1, 1);
    ts_optim_config oc;
    ts_optim_config_default(&oc, TS_OPT_SGD);
    ts_optimizer *opt = NULL;
    CHECK(ts_optimizer_create(g_ctx, m, &oc, &opt) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_forward_train(g_ctx, m, x, 4, logits, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int i = 0; i < 4 * 192; i++) dl[i] = logits[i] * 0.1f;
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_optimizer_step(g_ctx, opt, 0.1f) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_optimizer_free(opt);
    check_size(m, 2, 20, 24, 4);
    /* constant-time mode at another size */
    ts_ctx_set_constant_time(g_ctx, 1);
    check_size(m, 1, 9, 14, 5);
    ts_ctx_set_constant_time(g_ctx, 0);
    ts_model_free(m);
}

static void test_file(void) {
    ts_model *m = free_model(), *l = NULL;
    if (!m) return;
    char path[128];
    snprintf(path, sizeof path, "%s/free.tsr", g_tmp);
    CHECK(ts_model_save(g_ctx, m, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_load(g_ctx, path, &l) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (l) {
        CHECK(ts_model_any_size(l) && strstr(ts_model_arch_text(l), "free=hw"), "free=hw lost in the file");
        check_size(l, 1, 20, 24, 1);
        check_size(l, 2, 12, 16, 2);
        float x[3 * 20 * 24], a[4 * 10 * 12], b[4 * 10 * 12];
        test_fill_uniform(x, sizeof x / sizeof x[0], 3, -1, 1);
        CHECK(ts_model_predict_hw(g_ctx, m, x, 1, 20, 24, a, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_predict_hw(g_ctx, l, x, 1, 20, 24, b, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(!memcmp(a, b, sizeof a), "the loaded model differs");
        ts_layer_info li;
        ts_model_layer(l, 0, &li);
        CHECK(!strcmp(li.attrs, "free=hw"), "input attrs '%s'", li.attrs);
    }
    ts_model_free(l);
    ts_model_free(m);
}

static void refused(const char *text, ts_status want, const char *msg1, const char *msg2) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, text, "r.arch", NULL, 0, 1, &m);
    CHECK(st == want && strstr(ts_ctx_error(g_ctx), msg1) && strstr(ts_ctx_error(g_ctx), msg2), "%d: %s", st,
          ts_ctx_error(g_ctx));
    ts_model_free(m);
}

static void test_refusals(void) {
    refused("input shape=3x8x8 free=hw\nconv2d out=4 kernel=3\nflatten\ndense name=fc out=5\n", TS_ESHAPE,
            "dense 'fc'", "depend on the image size");
    refused("input shape=3x8x8 free=hw\nconv2d out=4 kernel=3\nreshape name=r shape=144\ndense out=5\n", TS_ESHAPE,
            "reshape 'r'", "does not run at another size");
    refused("input shape=16 free=hw\ndense out=5\n", TS_ESHAPE, "free=hw", "CxHxW");
    refused("input shape=3x8x8 free=xy\nconv2d out=4 kernel=3\n", TS_EFORMAT, "free=xy", "hw");
    /* a global pooling before the dense makes it size-free */
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, "input shape=3x8x8 free=hw\nconv2d out=4 kernel=3\nglobalavgpool\n"
                                             "flatten\ndense out=5\n", "ok.arch", NULL, 0, 1, &m);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m) {
        float x[3 * 17 * 11], y[5];
        ts_shape os;
        test_fill_uniform(x, sizeof x / sizeof x[0], 1, -1, 1);
        CHECK(ts_model_predict_hw(g_ctx, m, x, 1, 17, 11, y, &os) == TS_OK && os.ndim == 1 && os.dims[0] == 5, "%s",
              ts_ctx_error(g_ctx));
        /* sizes no image has: refused before anything is built */
        const int bad[3][2] = {{0, 11}, {-4, 11}, {1 << 14, 1 << 14}};
        for (int i = 0; i < 3; i++)
            CHECK(ts_model_predict_hw(g_ctx, m, x, 1, bad[i][0], bad[i][1], y, NULL) == TS_ESHAPE &&
                      strstr(ts_ctx_error(g_ctx), "pixels"),
                  "%dx%d: %s", bad[i][0], bad[i][1], ts_ctx_error(g_ctx));
    }
    ts_model_free(m);
    /* a fixed model runs at its own size only */
    st = ts_model_from_arch(g_ctx, "input shape=3x8x8\nconv2d out=4 kernel=3\n", "fixed.arch", NULL, 0, 1, &m);
    CHECK(st == TS_OK && !ts_model_any_size(m), "%s", ts_ctx_error(g_ctx));
    if (m) {
        float x[3 * 9 * 9], y[4 * 7 * 7];
        test_fill_uniform(x, sizeof x / sizeof x[0], 1, -1, 1);
        CHECK(ts_model_predict_hw(g_ctx, m, x, 1, 9, 9, y, NULL) == TS_ESHAPE && strstr(ts_ctx_error(g_ctx), "fixed"),
              "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_predict_hw(g_ctx, m, x, 1, 8, 8, y, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    }
    ts_model_free(m);
}

/* int8 scales set on a free model after it ran at another size reach that size:
 * the same outputs as the quantized copy, not the fp32 ones */
static void test_int8_scales(void) {
    ts_model *m = NULL, *q = NULL;
    CHECK(ts_model_from_arch(g_ctx, FREE_ARCH, "free", NULL, 0, 5, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    const int n = 2, h = 20, w = 24, k = 4 * (h / 2) * (w / 2);
    float *cal = test_falloc(16 * 3 * 12 * 16), *x = test_falloc((size_t)n * 3 * h * w);
    float *fp = test_falloc((size_t)n * k), *a = test_falloc((size_t)n * k), *b = test_falloc((size_t)n * k);
    test_fill_uniform(cal, 16 * 3 * 12 * 16, 8, -1, 1);
    test_fill_uniform(x, (size_t)n * 3 * h * w, 9, -1, 1);
    CHECK(ts_model_predict_hw(g_ctx, m, x, n, h, w, fp, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_quantize_config qc;
    ts_quantize_config_default(&qc);
    CHECK(ts_model_quantize(g_ctx, m, cal, 16, &qc, &q) == TS_OK, "quantize: %s", ts_ctx_error(g_ctx));
    const char *scales = q ? ts_model_get_meta(q, "int8.inputs") : NULL;
    CHECK(scales && ts_model_set_meta(g_ctx, m, "int8.inputs", scales) == TS_OK, "set the scales: %s",
          ts_ctx_error(g_ctx));
    CHECK(ts_model_predict_hw(g_ctx, m, x, n, h, w, a, NULL) == TS_OK &&
              ts_model_predict_hw(g_ctx, q, x, n, h, w, b, NULL) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)n * k), "the scales set later are not those the size runs with");
    CHECK(memcmp(a, fp, sizeof(float) * (size_t)n * k), "int8 gave the fp32 outputs bit for bit");
    free(cal);
    free(x);
    free(fp);
    free(a);
    free(b);
    ts_model_free(q);
    ts_model_free(m);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_sizes);
    RUN(test_weights_change);
    RUN(test_file);
    RUN(test_int8_scales);
    RUN(test_refusals);
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_free_hw");
}
