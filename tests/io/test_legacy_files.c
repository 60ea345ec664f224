/* Files written by an earlier tessera still load and compute the same: models and
 * modules saved by main on 2026-12-02 (before the graph builder), in
 * tests/fixtures/legacy/, with the outputs that build computed for a fixed input on
 * the reference backend (expected.bin). TS_LEGACY_WRITE=1 rewrites the two
 * architecture models and expected.bin: only ever with the old build. */
#include "common/test.h"

#include <stdint.h>

static ts_ctx *g_ctx;

#define DIR "tests/fixtures/legacy/"

/* every layer kind of the text format at that date, in two models */
static const char *const KINDS_A =
    "input shape=2x6x6\n"
    "conv2d name=c out=4 kernel=3 padding=1,0,1,2 bias=1\n"
    "prelu name=p shape=4x1x1\n"
    "maxpool name=mp kernel=2 stride=1 padding=0,0,1,1\n"
    "elu name=e alpha=0.5\n"
    "clip name=cl min=-1 max=2\n"
    "transpose name=t perm=0,2,1\n"
    "pad name=pd pads=0,1,0,0,0,1 mode=reflect\n"
    "binary name=b op=mul const=1x1x7\n"
    "binary name=b2 op=sub const=7x7 const_first=1\n"
    "selu name=s\n"
    "hardsigmoid name=h\n"
    "reshape name=r shape=4x49\n"
    "matmul name=mm b=49x5\n"
    "logsoftmax name=ls axis=0\n"
    "flatten name=f\n"
    "dense name=fc out=3\n"
    "softmax name=sm\n";
static const char *const KINDS_B =
    "input shape=3x8x8\n"
    "conv2d name=c1 out=4 kernel=3 padding=1\n"
    "batchnorm name=bn\n"
    "relu name=r\n"
    "mask name=mk\n"
    "conv2d name=c2 out=4 kernel=3 padding=1 in=r groups=2 dilation=1x1\n"
    "concat name=cat in=mk,c2 axis=0\n"
    "tanh name=t\n"
    "avgpool name=ap kernel=2 padding=0,0,1,1 count_include_pad=0\n"
    "constant name=k shape=8x4x4 in=ap\n"
    "add name=a in=ap,k\n"
    "sigmoid name=s\n"
    "leakyrelu name=lr slope=0.1\n"
    "convtranspose name=ct out=3 kernel=3 stride=2 padding=1,0,0,1 output_padding=1\n"
    "relu name=r2\n"
    "globalmaxpool name=g\n"
    "dropout name=d p=0.3\n"
    "dense name=fc out=5\n";

/* Every tensor filled from a seeded stream, keep masks with some zeros. */
static void fill_all(ts_model *m, uint64_t seed) {
    int tn = ts_model_tensor_count(m);
    for (int i = 0; i < tn; i++) {
        ts_tensor_info info;
        if (ts_model_tensor(m, i, &info)) continue;
        if (strstr(info.name, ".keep")) {
            for (int64_t j = 0; j < info.numel; j++) info.data[j] = (float)((j * 7 + 3) % 5 != 0);
        } else if (strstr(info.name, "running_var")) {
            test_fill_uniform(info.data, (size_t)info.numel, seed + (uint64_t)i, 0.5f, 1.5f);
        } else {
            test_fill_uniform(info.data, (size_t)info.numel, seed + (uint64_t)i, -1.0f, 1.0f);
        }
    }
    ts_model_params_changed(m);
}

static void write_kinds(void) {
    const char *texts[2] = {KINDS_A, KINDS_B}, *names[2] = {DIR "kinds_a.tsr", DIR "kinds_b.tsr"};
    for (int k = 0; k < 2; k++) {
        ts_model *m = NULL;
        CHECK(ts_model_from_arch(g_ctx, texts[k], names[k], NULL, 0, 1, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!m) continue;
        fill_all(m, 100 * (uint64_t)(k + 1));
        CHECK(ts_model_save(g_ctx, m, names[k]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_model_free(m);
    }
}

/* The outputs of one model for 3 fixed inputs, appended to out (NULL: counted). */
static size_t outputs(ts_model *m, float *out) {
    ts_shape in = ts_model_input_shape(m);
    size_t n = (size_t)ts_shape_numel(&in), k = (size_t)ts_model_classes(m);
    if (out) {
        float *x = test_falloc(3 * n);
        test_fill_uniform(x, 3 * n, 77, -1.0f, 1.0f);
        CHECK(ts_model_predict(g_ctx, m, x, 3, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        free(x);
    }
    return 3 * k;
}

static ts_model *load(const char *path) {
    ts_model *m = NULL;
    if (strstr(path, ".tsm")) {
        ts_module *mod = NULL;
        CHECK(ts_module_load(g_ctx, path, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (mod) CHECK(ts_module_model(g_ctx, mod, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_module_free(mod);
    } else {
        CHECK(ts_model_load(g_ctx, path, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    }
    return m;
}

static const char *const FILES[] = {DIR "lenet5.tsr",      DIR "composed.tsr",     DIR "mods/class0.tsm",
                                    DIR "mods/class3.tsm", DIR "kinds_a.tsr",      DIR "kinds_b.tsr"};
#define NFILES (sizeof FILES / sizeof FILES[0])

static void test_legacy_outputs(void) {
    int writing = getenv("TS_LEGACY_WRITE") != NULL;
    if (writing) write_kinds();
    float *all = test_falloc(1 << 16);
    size_t total = 0;
    for (size_t f = 0; f < NFILES; f++) {
        ts_model *m = load(FILES[f]);
        if (!m) return;
        if (total + outputs(m, NULL) > (1 << 16)) CHECK(0, "too many outputs");
        else total += outputs(m, all + total);
        ts_model_free(m);
    }
    if (writing) {
        CHECK(test_write_file(DIR "expected.bin", all, total * sizeof(float)), "writing expected.bin");
    } else {
        size_t len = 0;
        uint8_t *want = test_read_file(DIR "expected.bin", &len);
        CHECK(want && len == total * sizeof(float), "expected.bin: %zu bytes, want %zu", len, total * sizeof(float));
        if (want && len == total * sizeof(float))
            test_allclose("legacy outputs", all, (const float *)want, total, 0, 0);
        free(want);
    }
    free(all);
}

static char g_tmp[] = "/tmp/tessera_legacy_XXXXXX";

/* A module of MODL version 2 (sliced, no stored sizes: they are recounted from the
 * origin's architecture it holds) saved again as version 3 reads back with the same
 * figures. */
static void test_module_v2_sizes(void) {
    ts_module *a = NULL, *b = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/v3.tsm", g_tmp);
    CHECK(ts_module_load(g_ctx, DIR "sliced-v2.tsm", &a) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!a) return;
    CHECK(ts_module_save(g_ctx, a, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_load(g_ctx, path, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (b) {
        ts_module_info x, y;
        ts_module_info_get(a, &x);
        ts_module_info_get(b, &y);
        CHECK(x.params == y.params && x.params_kept == y.params_kept && x.origin_macs == y.origin_macs &&
                  x.macs_kept == y.macs_kept && x.weights == y.weights && x.weights_kept == y.weights_kept &&
                  x.kernels_kept == y.kernels_kept && x.units_kept == y.units_kept,
              "sizes after a version 3 round trip: params %lld/%lld vs %lld/%lld, MACs %lld/%lld vs %lld/%lld",
              (long long)x.params_kept, (long long)x.params, (long long)y.params_kept, (long long)y.params,
              (long long)x.macs_kept, (long long)x.origin_macs, (long long)y.macs_kept, (long long)y.origin_macs);
        CHECK(x.params == 1014 && x.origin_macs == 4508, "the origin's figures of the fixture: %lld parameters, %lld MACs",
              (long long)x.params, (long long)x.origin_macs);
    }
    ts_module_free(a);
    ts_module_free(b);
}

int main(void) {
    char *tmp = g_tmp;
    if (!test_begin(&g_ctx, tmp)) return 1;
    /* the reference kernels: the same figures on any processor */
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_legacy_outputs);
    RUN(test_module_v2_sizes);
    test_end(g_ctx, tmp);
    TEST_MAIN_END("test_legacy_files");
}
