/* Physical slicing (src/nn/slice.c): small models with mask layers whose keep planes
 * zero whole channels (and parts of others), random weights and batch-norm statistics,
 * sliced and checked against the original: the outputs agree within 1e-5 of the
 * largest output on random inputs, under the reference and the oneDNN backends; the
 * expected channel count of each layer; fewer parameters and MACs where channels
 * went, the same where none could. Cases: a conv-bn-relu-mask chain into conv and
 * flatten-dense, a residual block whose two sides zero different channels (the union
 * rule), a concat of two branches, global average pooling into dense, a depthwise
 * conv, channel-wise kinds with per-channel parameters (prelu, binary), a dense-relu-
 * mask-dense tail, a conv whose inputs are all zero, a model without masks, masks of
 * all ones, barriers (transpose, reshape, a grouped conv); and 60 random graphs with
 * random masks. */
#include "tessera.h"

#include "common/test.h"
#include "nn/nn.h"

#include <stdarg.h>
#include <stdint.h>

static ts_ctx *g_ctx;

/* ------------------------------------------------------------------ helpers */

/* A model from architecture text, randomized from seed. */
static ts_model *make_model(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "slice.arch", NULL, 0, seed, &m) == TS_OK, "model: %s", ts_ctx_error(g_ctx));
    if (m) test_randomize_model(m, seed * 100);
    return m;
}

/* Mask `name`: the channels listed (ending with -1) zeroed whole; with partial, every
 * third value of the other channels zeroed too. */
static void set_mask(ts_model *m, const char *name, const int *zero, int partial) {
    char full[128];
    snprintf(full, sizeof full, "%s.keep", name);
    ts_tensor_info k = test_tensor(m, full);
    if (!k.data) return;
    const int64_t per = k.numel / k.dims[0];
    for (int64_t i = 0; i < k.numel; i++) k.data[i] = partial && i % 3 == 1 ? 0.0f : 1.0f;
    for (int i = 0; zero[i] >= 0; i++)
        for (int64_t j = 0; j < per; j++) k.data[zero[i] * per + j] = 0.0f;
}

/* Channels of layer `name`'s output in m, or -1 when m has no such layer. */
static int64_t channels(const ts_model *m, const char *name) {
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        ts_model_layer(m, i, &li);
        if (!strcmp(li.name, name)) return li.out.dims[0];
    }
    return -1;
}

static int64_t macs(const ts_model *m) {
    int64_t total = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        ts_model_layer(m, i, &li);
        total += li.macs;
    }
    return total;
}

/* The sliced model's outputs equal the original's within 1e-5 of the largest, on
 * random inputs, under both backends. */
static void check_outputs(ts_model *m, ts_model *s) {
    enum { N = 6 };
    const ts_shape in = ts_model_input_shape(m);
    const size_t in_sz = (size_t)ts_shape_numel(&in), nc = (size_t)ts_model_classes(m);
    CHECK(ts_model_classes(s) == (int)nc, "classes %d vs %zu", ts_model_classes(s), nc);
    float *x = test_falloc(N * in_sz), *want = test_falloc(N * nc), *got = test_falloc(N * nc);
    test_fill_uniform(x, N * in_sz, 99, -1.0f, 1.0f);
    const ts_backend backends[2] = {TS_BACKEND_REF, TS_BACKEND_DNNL};
    for (int b = 0; b < 2; b++) {
        CHECK(ts_ctx_set_backend(g_ctx, backends[b]) == TS_OK, "backend");
        CHECK(ts_model_predict(g_ctx, m, x, N, want) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_predict(g_ctx, s, x, N, got) == TS_OK, "%s", ts_ctx_error(g_ctx));
        double top = 0;
        for (size_t i = 0; i < N * nc; i++) top = fmax(top, fabs(want[i]));
        CHECK(top > 0, "the original's outputs are all zero");
        test_allclose(b ? "sliced (dnnl)" : "sliced (ref)", got, want, N * nc, 0.0, 1e-5 * top);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    free(x);
    free(want);
    free(got);
}

/* Layer names and their expected channel counts (-1: the layer is gone), up to a NULL
 * name. */
typedef struct expect {
    const char *name;
    int64_t channels;
} expect;

/* Slices m and checks the outputs, the report against both models and, when want is
 * given, the channel counts; the caller frees the result. */
static ts_model *slice_checked(ts_model *m, const expect *want, slice_report *rep) {
    ts_model *s = NULL;
    CHECK(model_slice(g_ctx, m, &s, rep) == TS_OK, "slice: %s", ts_ctx_error(g_ctx));
    if (!s) return NULL;
    check_outputs(m, s);
    CHECK(rep->params_before == ts_model_param_count(m) && rep->params_after == ts_model_param_count(s),
          "params %lld/%lld vs %lld/%lld", (long long)rep->params_before, (long long)rep->params_after,
          (long long)ts_model_param_count(m), (long long)ts_model_param_count(s));
    CHECK(rep->macs_before == macs(m) && rep->macs_after == macs(s), "macs %lld/%lld", (long long)rep->macs_before,
          (long long)rep->macs_after);
    for (; want && want->name; want++) {
        int64_t c = channels(s, want->name);
        CHECK(c == want->channels, "%s: %lld channels, expected %lld", want->name, (long long)c,
              (long long)want->channels);
    }
    return s;
}

/* slice_checked, and parameters, MACs and kernels all fewer */
static ts_model *slice_smaller(ts_model *m, const expect *want, slice_report *r) {
    ts_model *s = slice_checked(m, want, r);
    CHECK(r->params_after < r->params_before, "params %lld -> %lld", (long long)r->params_before,
          (long long)r->params_after);
    CHECK(r->macs_after < r->macs_before, "macs %lld -> %lld", (long long)r->macs_before, (long long)r->macs_after);
    CHECK(r->channels_after < r->channels_before, "channels %lld -> %lld", (long long)r->channels_before,
          (long long)r->channels_after);
    return s;
}

/* ------------------------------------------------------------------ cases */

/* conv-bn-relu-mask into conv-bn-relu-mask, flatten, dense: the masks' zero channels
 * go from the convs that make them, their batch norms and the dense's columns;
 * metadata and preprocessing stay. */
static void test_chain(void) {
    ts_model *m = make_model("input shape=3x8x8 classes=5\n"
                             "conv2d name=c1 out=8 kernel=3 padding=1\n"
                             "batchnorm name=bn1\n"
                             "relu name=r1\n"
                             "mask name=mk1\n"
                             "conv2d name=c2 out=6 kernel=3 padding=1\n"
                             "batchnorm name=bn2\n"
                             "relu name=r2\n"
                             "mask name=mk2\n"
                             "flatten name=fl\n"
                             "dense name=fc out=classes\n",
                             1);
    if (!m) return;
    set_mask(m, "mk1", (const int[]){1, 4, 6, -1}, 1);
    set_mask(m, "mk2", (const int[]){0, 5, -1}, 0);
    ts_model_set_meta(g_ctx, m, "origin", "test_chain");
    const ts_preprocess pp = {.channels = 3, .mean = {0.1f, 0.2f, 0.3f}, .std = {0.5f, 0.6f, 0.7f}};
    CHECK(ts_model_set_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    slice_report r = {0};
    ts_model *s = slice_smaller(m, (const expect[]){{"c1", 5}, {"bn1", 5}, {"mk1", 5}, {"c2", 4}, {"bn2", 4},
                                                    {"fl", 4 * 64}, {"fc", 5}, {"mk2", -1}, {NULL, 0}},
                                &r);
    if (s) {
        CHECK(r.channels_before == 8 + 6 + 5 && r.channels_after == 5 + 4 + 5, "channels %lld -> %lld",
              (long long)r.channels_before, (long long)r.channels_after);
        const char *v = ts_model_get_meta(s, "origin");
        CHECK(v && !strcmp(v, "test_chain"), "metadata kept");
        ts_preprocess got;
        CHECK(ts_model_get_preprocess(g_ctx, s, &got) == TS_OK && got.channels == 3 && got.mean[2] == pp.mean[2] &&
                  got.std[1] == pp.std[1], "preprocess kept");
        /* the kept rows are the origin's, in order: c1's channel 2 is sliced channel 1 */
        ts_tensor_info a = test_tensor(m, "c1.weight"), b = test_tensor(s, "c1.weight");
        if (a.data && b.data) CHECK(!memcmp(a.data + 2 * 27, b.data + 1 * 27, 27 * sizeof(float)), "c1 row 2");
    }
    ts_model_free(s);
    ts_model_free(m);
}

/* A residual block whose sides zero different channels: m0 (the shortcut) zeroes
 * 0, 1, 2 and the block's output mask m2 zeroes 1, 2, 7. Channel 0 is zero on the
 * shortcut but not on the convolution side: both keep it (the union rule), m0
 * zeroing it. Channel 7 goes at m2 but c1 reads it from m0, so the whole ring
 * (stem, c2, the add) keeps it and m2 zeroes it: 0, 3, 4, 5, 6, 7 stay. The inner
 * mask m1 zeroes 3, 4 of c1 alone. */
static void test_residual(void) {
    ts_model *m = make_model("input shape=4x6x6 classes=3\n"
                             "conv2d name=stem out=8 kernel=3 padding=1\n"
                             "batchnorm name=bn0\n"
                             "relu name=r0\n"
                             "mask name=m0\n"
                             "conv2d name=c1 out=8 kernel=3 padding=1\n"
                             "batchnorm name=bn1\n"
                             "relu name=r1\n"
                             "mask name=m1\n"
                             "conv2d name=c2 out=8 kernel=3 padding=1\n"
                             "batchnorm name=bn2\n"
                             "add name=res in=bn2,m0\n"
                             "relu name=r2\n"
                             "mask name=m2\n"
                             "globalavgpool name=gap\n"
                             "dense name=fc out=classes\n",
                             2);
    if (!m) return;
    set_mask(m, "m0", (const int[]){0, 1, 2, -1}, 1);
    set_mask(m, "m1", (const int[]){3, 4, -1}, 1);
    set_mask(m, "m2", (const int[]){1, 2, 7, -1}, 0);
    slice_report r = {0};
    ts_model_free(slice_smaller(m, (const expect[]){{"stem", 6}, {"m0", 6}, {"c1", 6}, {"m1", 6}, {"c2", 6},
                                                    {"bn2", 6}, {"res", 6}, {"m2", 6}, {"gap", 6}, {"fc", 3},
                                                    {NULL, 0}},
                                &r));
    ts_model_free(m);
}

/* Two branches concatenated: each keeps its own live channels; the conv after the
 * concat reads the six left. */
static void test_concat(void) {
    ts_model *m = make_model("input shape=3x8x8 classes=4\n"
                             "conv2d name=a out=4 kernel=3 padding=1\n"
                             "relu name=ra\n"
                             "mask name=ma\n"
                             "conv2d name=b in=input0 out=6 kernel=1\n"
                             "relu name=rb\n"
                             "mask name=mb\n"
                             "concat name=cat in=ma,mb\n"
                             "conv2d name=c out=5 kernel=3 padding=1\n"
                             "relu name=rc\n"
                             "maxpool name=pool kernel=2\n"
                             "flatten name=fl\n"
                             "dense name=fc out=classes\n",
                             3);
    if (!m) return;
    set_mask(m, "ma", (const int[]){1, -1}, 1);
    set_mask(m, "mb", (const int[]){0, 2, 3, -1}, 0);
    slice_report r = {0};
    ts_model_free(slice_smaller(
        m, (const expect[]){{"a", 3}, {"b", 3}, {"cat", 6}, {"c", 5}, {"fl", 5 * 16}, {"mb", -1}, {NULL, 0}}, &r));
    ts_model_free(m);
}

/* A depthwise convolution without bias carries zero channels and slices with its
 * input (groups follow); with a bias its zero channels become its bias, so when a
 * batch norm follows nothing before it can go: only correctness there. */
static void test_depthwise(void) {
    static const char *const ARCH[2] = {
        "input shape=4x8x8 classes=3\n"
        "conv2d name=c1 out=6 kernel=3 padding=1\n"
        "batchnorm name=bn1\n"
        "relu name=r1\n"
        "mask name=m1\n"
        "conv2d name=dw out=6 kernel=3 padding=1 groups=6 bias=0\n"
        "relu name=r2\n"
        "conv2d name=pw out=5 kernel=1\n"
        "globalavgpool name=gap\n"
        "dense name=fc out=classes\n",
        "input shape=4x8x8 classes=3\n"
        "conv2d name=c1 out=6 kernel=3 padding=1\n"
        "batchnorm name=bn1\n"
        "relu name=r1\n"
        "mask name=m1\n"
        "conv2d name=dw out=6 kernel=3 padding=1 groups=6\n"
        "batchnorm name=bn2\n"
        "relu name=r2\n"
        "conv2d name=pw out=5 kernel=1\n"
        "globalavgpool name=gap\n"
        "dense name=fc out=classes\n"};
    for (int bias = 0; bias < 2; bias++) {
        ts_model *m = make_model(ARCH[bias], 4);
        if (!m) return;
        set_mask(m, "m1", (const int[]){2, 3, -1}, 1);
        slice_report r = {0};
        if (!bias) {
            ts_model_free(slice_smaller(
                m, (const expect[]){{"c1", 4}, {"bn1", 4}, {"dw", 4}, {"r2", 4}, {"pw", 5}, {NULL, 0}}, &r));
        } else {
            ts_model_free(slice_checked(m, (const expect[]){{"c1", 6}, {"dw", 6}, {"pw", 5}, {NULL, 0}}, &r));
            CHECK(r.params_after == r.params_before, "nothing to remove with a bias and a batch norm");
        }
        ts_model_free(m);
    }
}

/* Channel-wise kinds with per-channel parameters slice them: a Cx1x1 prelu slope and
 * binary constant; a 1x1x1 constant stays whole; pooling, leaky ReLU, resize and tanh
 * carry zeros. */
static void test_channelwise_kinds(void) {
    ts_model *m = make_model("input shape=3x8x8 classes=4\n"
                             "conv2d name=c1 out=8 kernel=3 padding=1\n"
                             "prelu name=p shape=8x1x1\n"
                             "mask name=m1\n"
                             "binary name=scale op=mul const=8x1x1\n"
                             "binary name=half op=mul const=1x1x1\n"
                             "leakyrelu name=lr\n"
                             "avgpool name=ap kernel=3 stride=2 padding=1\n"
                             "resize name=up scale=2 mode=linear\n"
                             "tanh name=t\n"
                             "conv2d name=c2 out=4 kernel=3 padding=1\n"
                             "globalavgpool name=gap\n"
                             "dense name=fc out=classes\n",
                             6);
    if (!m) return;
    set_mask(m, "m1", (const int[]){0, 3, 7, -1}, 1);
    slice_report r = {0};
    ts_model *s = slice_smaller(
        m, (const expect[]){{"c1", 5}, {"p", 5}, {"scale", 5}, {"half", 5}, {"up", 5}, {"t", 5}, {"c2", 4}, {NULL, 0}}, &r);
    if (s) {
        ts_tensor_info a = test_tensor(m, "scale.const"), b = test_tensor(s, "scale.const");
        if (a.data && b.data) CHECK(b.numel == 5 && b.data[0] == a.data[1] && b.data[2] == a.data[4], "const rows");
        CHECK(test_tensor(s, "half.const").numel == 1, "a scalar constant stays whole");
    }
    ts_model_free(s);
    ts_model_free(m);
    /* pad (not of the channels), elu, selu, clip, hardsigmoid with beta 0 and dropout
     * carry zeros; a softmax along the rows works per channel */
    m = make_model("input shape=3x8x8 classes=4\n"
                   "conv2d name=c1 out=6 kernel=3 padding=1\n"
                   "mask name=m1\n"
                   "pad name=pd pads=0,1,1,0,1,1\n"
                   "elu name=e\n"
                   "selu name=se\n"
                   "clip name=cl min=-1 max=1\n"
                   "hardsigmoid name=hs beta=0\n"
                   "dropout name=dr\n"
                   "conv2d name=c2 out=5 kernel=3\n"
                   "softmax name=sm axis=2\n"
                   "mask name=m2\n"
                   "conv2d name=c3 out=4 kernel=1\n"
                   "globalavgpool name=gap\n"
                   "dense name=fc out=classes\n",
                   61);
    if (!m) return;
    set_mask(m, "m1", (const int[]){2, 4, -1}, 1);
    set_mask(m, "m2", (const int[]){0, 3, -1}, 0);
    ts_model_free(slice_smaller(m, (const expect[]){{"c1", 4}, {"pd", 4}, {"hs", 4}, {"dr", 4}, {"c2", 3}, {"sm", 3},
                                                    {"m2", -1}, {"c3", 4}, {NULL, 0}},
                                &r));
    ts_model_free(m);
}

/* A conv's last channel zeroed before flatten-dense, and a dense-bn-relu-mask-dense
 * tail whose mask zeroes features. */
static void test_dense_tail(void) {
    ts_model *m = make_model("input shape=2x6x6 classes=3\n"
                             "conv2d name=c1 out=4 kernel=3 padding=1\n"
                             "relu name=r1\n"
                             "mask name=m1\n"
                             "flatten name=fl\n"
                             "dense name=fc1 out=10\n"
                             "batchnorm name=bn\n"
                             "relu name=r2\n"
                             "mask name=m2\n"
                             "dense name=fc2 out=classes\n",
                             7);
    if (!m) return;
    set_mask(m, "m1", (const int[]){3, -1}, 0);
    set_mask(m, "m2", (const int[]){0, 4, 5, 9, -1}, 0);
    slice_report r = {0};
    ts_model_free(slice_smaller(m, (const expect[]){{"c1", 3}, {"fl", 3 * 36}, {"fc1", 6}, {"bn", 6}, {"fc2", 3},
                                                    {"m1", -1}, {"m2", -1}, {NULL, 0}},
                                &r));
    ts_model_free(m);
}

/* Every input channel of c2 zero: its outputs are its bias. One zero channel stays
 * (a layer outputs something) and c2 reads it. */
static void test_all_zero_input(void) {
    ts_model *m = make_model("input shape=2x6x6 classes=3\n"
                             "conv2d name=c1 out=4 kernel=3 padding=1\n"
                             "relu name=r1\n"
                             "mask name=m1\n"
                             "conv2d name=c2 out=5 kernel=3 padding=1\n"
                             "relu name=r2\n"
                             "globalavgpool name=gap\n"
                             "dense name=fc out=classes\n",
                             8);
    if (!m) return;
    set_mask(m, "m1", (const int[]){0, 1, 2, 3, -1}, 0);
    slice_report r = {0};
    ts_model_free(slice_smaller(m, (const expect[]){{"c1", 1}, {"m1", 1}, {"c2", 5}, {NULL, 0}}, &r));
    ts_model_free(m);
}

/* No mask, or masks of all ones: the same model (the masks gone), the same sizes. */
static void test_unchanged(void) {
    const ts_shape in = {3, {3, 16, 16}};
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, ts_zoo_arch("resnet20"), "resnet20", &in, 10, 9, &m) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (!m) return;
    test_randomize_model(m, 900);
    slice_report r = {0};
    ts_model *s = slice_checked(m, NULL, &r);
    if (s) {
        CHECK(r.params_after == r.params_before && r.macs_after == r.macs_before &&
                  r.channels_after == r.channels_before, "resnet20 unchanged");
        CHECK(ts_model_layer_count(s) == ts_model_layer_count(m), "layers %d vs %d", ts_model_layer_count(s),
              ts_model_layer_count(m));
    }
    ts_model_free(s);
    ts_model_free(m);
    /* masks of all ones: m1 goes; m2 is the output, so it stays */
    m = make_model("input shape=3x8x8\n"
                   "conv2d name=c1 out=6 kernel=3 padding=1\n"
                   "relu name=r1\n"
                   "mask name=m1\n"
                   "conv2d name=c2 out=4 kernel=3\n"
                   "relu name=r2\n"
                   "mask name=m2\n",
                   10);
    if (!m) return;
    ts_model_free(slice_checked(m, (const expect[]){{"m1", -1}, {"m2", 4}, {NULL, 0}}, &r));
    CHECK(r.params_after == r.params_before && r.macs_after == r.macs_before, "all ones: unchanged");
    ts_model_free(m);
}

/* A transpose keeps every channel it reads and outputs: masks before it stay whole;
 * masks after it still slice. A reshape that keeps axis 0 (4x8x8 -> 4x64) is
 * channel-wise: a mask after it slices the conv before it too, and goes. */
static void test_barriers(void) {
    ts_model *m = make_model("input shape=3x8x8 classes=4\n"
                             "conv2d name=c1 out=8 kernel=3 padding=1\n"
                             "relu name=r1\n"
                             "mask name=m1\n"
                             "transpose name=tr perm=0,2,1\n"
                             "conv2d name=c2 out=6 kernel=3 padding=1\n"
                             "relu name=r2\n"
                             "mask name=m2\n"
                             "conv2d name=c3 out=4 kernel=3 padding=1\n"
                             "reshape name=rs shape=4x64\n"
                             "mask name=m3\n"
                             "flatten name=fl\n"
                             "dense name=fc out=classes\n",
                             11);
    if (!m) return;
    set_mask(m, "m1", (const int[]){1, 2, -1}, 1);
    set_mask(m, "m2", (const int[]){0, 5, -1}, 0);
    set_mask(m, "m3", (const int[]){3, -1}, 0);
    slice_report r = {0};
    ts_model_free(slice_smaller(m, (const expect[]){{"c1", 8}, {"m1", 8}, {"c2", 4}, {"c3", 3}, {"rs", 3}, {"m3", -1},
                                                    {"fc", 4}, {NULL, 0}},
                                &r));
    ts_model_free(m);
    /* a grouped conv other than depthwise keeps its input's and its own channels */
    m = make_model("input shape=4x6x6 classes=3\n"
                   "conv2d name=c1 out=8 kernel=3 padding=1\n"
                   "relu name=r1\n"
                   "mask name=m1\n"
                   "conv2d name=g out=4 kernel=3 padding=1 groups=2\n"
                   "relu name=r2\n"
                   "mask name=m2\n"
                   "conv2d name=c3 out=5 kernel=1\n"
                   "globalavgpool name=gap\n"
                   "dense name=fc out=classes\n",
                   12);
    if (!m) return;
    set_mask(m, "m1", (const int[]){0, 5, -1}, 1);
    set_mask(m, "m2", (const int[]){1, -1}, 0);
    ts_model_free(
        slice_checked(m, (const expect[]){{"c1", 8}, {"m1", 8}, {"g", 4}, {"m2", 4}, {"c3", 5}, {NULL, 0}}, &r));
    CHECK(r.params_after == r.params_before, "grouped: nothing removed");
    ts_model_free(m);
}

/* ------------------------------------------------------------------ random graphs */

/* A random image network: convs (plain, 1x1, depthwise, with or without bias), batch
 * norms, activations, masks, max pooling, residual additions and concatenations with
 * earlier layers of the same shape, branches from earlier layers, then global average
 * pooling or flatten into a dense-relu-mask-dense tail. Dead branches happen too. */
typedef struct graph_gen {
    char text[8192];
    size_t len;
    int n;                       /* layers so far */
    int c[64], h[64];            /* each layer's channels and height (= width) */
    uint64_t rng;
} graph_gen;

static int gen_rand(graph_gen *g, int n) {
    g->rng = g->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((g->rng >> 33) % (uint64_t)n);
}

/* Appends a layer named l<index> reading `in` (a layer index), of c channels and height h. */
static void gen_add(graph_gen *g, const char *kind, int c, int h, const char *fmt, ...) {
    va_list ap;
    g->len += (size_t)snprintf(g->text + g->len, sizeof g->text - g->len, "%s name=l%d ", kind, g->n);
    va_start(ap, fmt);
    g->len += (size_t)vsnprintf(g->text + g->len, sizeof g->text - g->len, fmt, ap);
    va_end(ap);
    g->len += (size_t)snprintf(g->text + g->len, sizeof g->text - g->len, "\n");
    g->c[g->n] = c;
    g->h[g->n] = h;
    g->n++;
}

/* An earlier layer (not the last) with channels c (0: any) and height h, or -1. */
static int gen_find(graph_gen *g, int c, int h) {
    int found[64], n = 0;
    for (int i = 1; i < g->n - 1; i++)
        if ((!c || g->c[i] == c) && g->h[i] == h) found[n++] = i;
    return n ? found[gen_rand(g, n)] : -1;
}

static void gen_graph(graph_gen *g, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->rng = seed;
    g->len = (size_t)snprintf(g->text, sizeof g->text, "input name=l0 shape=3x8x8 classes=4\n");
    g->c[0] = 3;
    g->h[0] = 8;
    g->n = 1;
    const int steps = 8 + gen_rand(g, 10);
    for (int i = 0; i < steps && g->n < 56; i++) {
        const int t = g->n - 1, c = g->c[t], h = g->h[t], o = 2 + gen_rand(g, 7);
        int e;
        switch (gen_rand(g, 11)) {
        case 0: gen_add(g, "conv2d", o, h, "in=l%d out=%d kernel=3 padding=1 bias=%d", t, o, gen_rand(g, 2)); break;
        case 1: gen_add(g, "conv2d", o, h, "in=l%d out=%d kernel=1", t, o); break;
        case 2: /* depthwise */
            gen_add(g, "conv2d", c, h, "in=l%d out=%d kernel=3 padding=1 groups=%d bias=%d", t, c, c, gen_rand(g, 2));
            break;
        case 3: gen_add(g, "batchnorm", c, h, "in=l%d", t); break;
        case 4: gen_add(g, gen_rand(g, 3) ? "relu" : gen_rand(g, 2) ? "tanh" : "sigmoid", c, h, "in=l%d", t); break;
        case 5: case 6: gen_add(g, "mask", c, h, "in=l%d", t); break;
        case 7:
            if (h >= 4) gen_add(g, "maxpool", c, h / 2, "in=l%d kernel=2", t);
            break;
        case 8:
            if ((e = gen_find(g, c, h)) >= 0) gen_add(g, "add", c, h, "in=l%d,l%d", t, e);
            break;
        case 9:
            if ((e = gen_find(g, 0, h)) >= 0 && c + g->c[e] <= 24)
                gen_add(g, "concat", c + g->c[e], h, "in=l%d,l%d", t, e);
            break;
        default: /* a branch from an earlier layer */
            e = gen_find(g, 0, h);
            if (e >= 0) gen_add(g, "conv2d", o, h, "in=l%d out=%d kernel=3 padding=1", e, o);
            break;
        }
    }
    const int t = g->n - 1;
    gen_add(g, "mask", g->c[t], g->h[t], "in=l%d", t);
    if (gen_rand(g, 2)) {
        gen_add(g, "globalavgpool", g->c[t], 1, "in=l%d", t + 1);
        gen_add(g, "dense", 4, 1, "in=l%d out=classes", t + 2);
    } else {
        gen_add(g, "flatten", g->c[t] * g->h[t] * g->h[t], 1, "in=l%d", t + 1);
        gen_add(g, "dense", 6, 1, "in=l%d out=6", t + 2);
        gen_add(g, "relu", 6, 1, "in=l%d", t + 3);
        gen_add(g, "mask", 6, 1, "in=l%d", t + 4);
        gen_add(g, "dense", 4, 1, "in=l%d out=classes", t + 5);
    }
}

/* Each mask's channels zeroed whole with p = 0.4, others partly with p = 0.3. */
static void random_masks(ts_model *m, uint64_t seed) {
    graph_gen r = {.rng = seed}; /* only its generator */
    for (int t = 0; t < ts_model_tensor_count(m); t++) {
        ts_tensor_info k;
        ts_model_tensor(m, t, &k);
        if (!test_ends_with(k.name, ".keep")) continue;
        const int64_t per = k.numel / k.dims[0];
        for (int64_t c = 0; c < k.dims[0]; c++) {
            const int whole = gen_rand(&r, 10) < 4, part = gen_rand(&r, 10) < 3;
            for (int64_t j = 0; j < per; j++) k.data[c * per + j] = whole || (part && j % 2) ? 0.0f : 1.0f;
        }
    }
}

/* Random graphs and masks: always equivalent, never larger; most get smaller. */
static void test_random_graphs(void) {
    enum { GRAPHS = 60 };
    int smaller = 0;
    for (int i = 0; i < GRAPHS; i++) {
        graph_gen g;
        gen_graph(&g, 1000 + (uint64_t)i);
        ts_model *m = make_model(g.text, 200 + (uint64_t)i);
        if (!m) {
            fprintf(stderr, "%s", g.text);
            return;
        }
        random_masks(m, 300 + (uint64_t)i);
        const int failed = g_test.case_failed;
        slice_report r = {0};
        ts_model_free(slice_checked(m, NULL, &r));
        CHECK(r.params_after <= r.params_before && r.macs_after <= r.macs_before, "graph %d grew", i);
        smaller += r.params_after < r.params_before;
        if (g_test.case_failed && !failed) fprintf(stderr, "graph %d:\n%s", i, g.text);
        ts_model_free(m);
    }
    CHECK(smaller > GRAPHS / 2, "only %d of %d graphs got smaller", smaller, GRAPHS);
}

int main(void) {
    if (ts_ctx_create(&g_ctx) != TS_OK) {
        fprintf(stderr, "cannot create a context\n");
        return 2;
    }
    RUN(test_chain);
    RUN(test_residual);
    RUN(test_concat);
    RUN(test_depthwise);
    RUN(test_channelwise_kinds);
    RUN(test_dense_tail);
    RUN(test_all_zero_input);
    RUN(test_unchanged);
    RUN(test_barriers);
    RUN(test_random_graphs);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_slice");
}
