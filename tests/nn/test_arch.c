/* The architecture parser through the public API: every zoo entry parses, known
 * parameter counts and layer shapes, input/classes overrides, and every error the
 * format defines returns the right status with a message naming "<source>:<line>:"
 * and the offending word. */
#include "tessera.h"

#include "common/test.h"

#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_arch_XXXXXX";

/* ------------------------------------------------------------------ helpers */

/* Builds a model from text; returns the status and leaves *out NULL on failure. */
static ts_status build(const char *text, const ts_shape *input, int classes, ts_model **out) {
    ts_ctx_clear_error(g_ctx);
    *out = NULL;
    return ts_model_from_arch(g_ctx, text, "net.arch", input, classes, 1, out);
}

/* Expects `text` to fail with `want`; the message must contain "net.arch:<line>:"
 * (line 0: just "net.arch") and every one of the NULL-terminated words. */
static void expect_error(const char *what, const char *text, ts_status want, int line, ...) {
    ts_model *m = (ts_model *)0x1;
    ts_status st = build(text, NULL, 0, &m);
    CHECK(st == want, "%s: status %s, want %s (message: %s)", what, ts_status_name(st), ts_status_name(want),
          ts_ctx_error(g_ctx));
    CHECK(m == NULL, "%s: out not NULL on failure", what);
    if (m) ts_model_free(m);
    const char *msg = ts_ctx_error(g_ctx);
    char loc[64];
    if (line > 0) snprintf(loc, sizeof loc, "net.arch:%d:", line);
    else snprintf(loc, sizeof loc, "net.arch");
    CHECK(strstr(msg, loc) != NULL, "%s: message '%s' lacks '%s'", what, msg, loc);
    va_list ap;
    va_start(ap, line);
    for (const char *w; (w = va_arg(ap, const char *));)
        CHECK(strstr(msg, w) != NULL, "%s: message '%s' lacks '%s'", what, msg, w);
    va_end(ap);
    CHECK(ts_ctx_status(g_ctx) == want, "%s: ctx status %s", what, ts_status_name(ts_ctx_status(g_ctx)));
}

static int find_layer(const ts_model *m, const char *name, ts_layer_info *info) {
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        if (ts_model_layer(m, i, info) == TS_OK && !strcmp(info->name, name)) return i;
    }
    return -1;
}

static int shape_is(const ts_shape *s, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    if (s->ndim != ndim) return 0;
    const int64_t d[3] = {d0, d1, d2};
    for (int i = 0; i < ndim && i < 3; i++)
        if (s->dims[i] != d[i]) return 0;
    return 1;
}

#define CHECK_LAYER_SHAPE(m, name, nd, a, b, c)                                                              \
    do {                                                                                                     \
        ts_layer_info li_;                                                                                   \
        int idx_ = find_layer(m, name, &li_);                                                                \
        CHECK(idx_ >= 0, "layer %s not found", name);                                                        \
        if (idx_ >= 0)                                                                                       \
            CHECK(shape_is(&li_.out, nd, a, b, c), "layer %s: shape ndim %d (%lld,%lld,%lld), want %d (%d,%d,%d)", \
                  name, li_.out.ndim, (long long)li_.out.dims[0], (long long)li_.out.dims[1],                \
                  (long long)li_.out.dims[2], nd, (int)(a), (int)(b), (int)(c));                             \
    } while (0)

/* -------------------------------------------------------------------- zoo */

static void test_zoo_all_parse(void) {
    int count = 0;
    for (int i = 0; ts_zoo_name(i); i++, count++) {
        const char *name = ts_zoo_name(i);
        const char *text = ts_zoo_arch(name);
        CHECK(text != NULL, "zoo %s has no text", name);
        if (!text) continue;
        ts_model *m = NULL;
        ts_status st = build(text, NULL, 0, &m);
        CHECK(st == TS_OK, "zoo %s: %s", name, ts_ctx_error(g_ctx));
        if (!m) continue;
        CHECK(ts_model_param_count(m) > 0, "zoo %s: no parameters", name);
        CHECK(ts_model_classes(m) >= 2, "zoo %s: classes %d", name, ts_model_classes(m));
        CHECK(strcmp(ts_model_arch_text(m), text) == 0, "zoo %s: arch text not kept", name);
        /* layer params add up to the model's, and every tensor's numel to the count */
        int64_t sum = 0, tsum = 0;
        for (int l = 0; l < ts_model_layer_count(m); l++) {
            ts_layer_info li;
            CHECK(ts_model_layer(m, l, &li) == TS_OK, "layer %d", l);
            sum += li.params;
        }
        for (int t = 0; t < ts_model_tensor_count(m); t++) {
            ts_tensor_info ti;
            CHECK(ts_model_tensor(m, t, &ti) == TS_OK, "tensor %d", t);
            if (ti.role == TS_TENSOR_PARAM) tsum += ti.numel;
            CHECK(ts_model_find_tensor(m, ti.name) == t, "zoo %s: find_tensor(%s)", name, ti.name);
        }
        CHECK(sum == ts_model_param_count(m), "zoo %s: layer params %lld vs %lld", name, (long long)sum,
              (long long)ts_model_param_count(m));
        CHECK(tsum == ts_model_param_count(m), "zoo %s: tensor params %lld", name, (long long)tsum);
        ts_layer_info last;
        ts_model_layer(m, ts_model_layer_count(m) - 1, &last);
        /* a classifier's scores, or a tagger's per step (T, tags) */
        CHECK((last.out.ndim == 1 || (last.out.ndim == 2 && strstr(text, "embedding"))) &&
                  ts_shape_numel(&last.out) == ts_model_classes(m), "zoo %s: last layer", name);
        ts_model_free(m);
    }
    CHECK(count >= 8, "zoo lists %d architectures", count);
    CHECK(ts_zoo_arch("resnet20") && ts_zoo_arch("demo") && ts_zoo_arch("vgg11"), "known names");
    CHECK(ts_zoo_arch("no-such-net") == NULL, "unknown zoo name");
    CHECK(ts_zoo_name(-1) == NULL, "ts_zoo_name(-1) not NULL");
    CHECK(ts_zoo_name(count) == NULL, "ts_zoo_name(count) not NULL");
}

static void test_param_counts(void) {
    ts_model *m = NULL;
    ts_shape cifar = {3, {3, 32, 32}};
    CHECK(build(ts_zoo_arch("resnet20"), &cifar, 10, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_param_count(m) == 272474, "resnet20 params %lld", (long long)ts_model_param_count(m));
        CHECK(ts_model_classes(m) == 10, "classes");
        /* a 1x1 projection shortcut exists */
        int wi = ts_model_find_tensor(m, "layer2.0.downsample.0.weight");
        CHECK(wi >= 0, "projection shortcut weight missing");
        if (wi >= 0) {
            ts_tensor_info ti;
            ts_model_tensor(m, wi, &ti);
            CHECK(ti.ndim == 4 && ti.dims[0] == 32 && ti.dims[1] == 16 && ti.dims[2] == 1 && ti.dims[3] == 1,
                  "downsample shape");
        }
        CHECK_LAYER_SHAPE(m, "conv1", 3, 16, 32, 32);
        CHECK_LAYER_SHAPE(m, "layer2.0.conv1", 3, 32, 16, 16);
        CHECK_LAYER_SHAPE(m, "layer2.0.downsample.0", 3, 32, 16, 16);
        ts_layer_info li;
        if (find_layer(m, "layer1.0.add", &li) >= 0) {
            CHECK(li.ninputs == 2 && !strcmp(li.inputs[0], "layer1.0.bn2") && !strcmp(li.inputs[1], "conv1.relu"),
                  "add inputs");
            CHECK(!strcmp(li.kind, "add"), "kind %s", li.kind);
        }
        if (find_layer(m, "conv1", &li) >= 0) {
            CHECK(li.macs == 16LL * 3 * 9 * 32 * 32, "conv1 macs %lld", (long long)li.macs);
            CHECK(li.params == 16 * 3 * 9, "conv1 params %lld", (long long)li.params);
            CHECK(li.line == 4, "conv1 line %d", li.line);
        }
        ts_shape in = ts_model_input_shape(m);
        CHECK(shape_is(&in, 3, 3, 32, 32), "input shape");
        ts_model_free(m);
    }

    ts_shape mnist = {3, {1, 28, 28}};
    CHECK(build(ts_zoo_arch("demo"), &mnist, 10, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_param_count(m) == 421738, "demo params %lld", (long long)ts_model_param_count(m));
        CHECK_LAYER_SHAPE(m, "conv1", 3, 32, 28, 28);
        CHECK_LAYER_SHAPE(m, "pool1", 3, 32, 14, 14);
        CHECK_LAYER_SHAPE(m, "pool2", 3, 64, 7, 7);
        CHECK_LAYER_SHAPE(m, "flatten", 1, 3136, 0, 0);
        CHECK_LAYER_SHAPE(m, "fc1", 1, 128, 0, 0);
        CHECK_LAYER_SHAPE(m, "fc2", 1, 10, 0, 0);
        /* tensor order: parameters in layer order, then buffers */
        const char *want[] = {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
                              "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "bn1.running_mean",
                              "bn1.running_var", "bn2.running_mean", "bn2.running_var"};
        int nt = ts_model_tensor_count(m);
        CHECK(nt == 14, "demo tensors %d", nt);
        for (int i = 0; i < nt && i < 14; i++) {
            ts_tensor_info ti;
            ts_model_tensor(m, i, &ti);
            CHECK(!strcmp(ti.name, want[i]), "tensor %d is %s, want %s", i, ti.name, want[i]);
            CHECK((ti.role == TS_TENSOR_BUFFER) == (i >= 10), "tensor %s role", ti.name);
            CHECK(ti.grad == NULL, "tensor %s has no gradient before training", ti.name);
        }
        ts_tensor_info ti;
        CHECK(ts_model_tensor(m, nt, &ti) != TS_OK, "tensor past the end");
        CHECK(ts_model_tensor(m, -1, &ti) != TS_OK, "tensor -1");
        ts_layer_info li;
        CHECK(ts_model_layer(m, ts_model_layer_count(m), &li) != TS_OK, "layer past the end");
        CHECK(ts_model_find_tensor(m, "nope.weight") == -1, "find unknown tensor");
        ts_model_free(m);
    }
}

static void test_default_init(void) {
    /* PyTorch defaults: weights and biases in +-1/sqrt(fan_in), bn gamma 1 beta 0, running 0/1 */
    ts_model *m = NULL;
    const char *text = "input shape=2x5x5 classes=3\n"
                       "conv2d name=c out=4 kernel=3\n"
                       "batchnorm name=bn\n"
                       "flatten\n"
                       "dense name=fc out=classes\n";
    CHECK(build(text, NULL, 0, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    for (int t = 0; t < ts_model_tensor_count(m); t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        double bound = 0;
        if (!strncmp(ti.name, "c.", 2)) bound = 1.0 / sqrt(2 * 9);
        if (!strncmp(ti.name, "fc.", 3)) bound = 1.0 / sqrt(4 * 3 * 3);
        double lo = 1e30, hi = -1e30;
        for (int64_t i = 0; i < ti.numel; i++) {
            lo = fmin(lo, ti.data[i]);
            hi = fmax(hi, ti.data[i]);
        }
        if (bound > 0) {
            CHECK(lo >= -bound && hi <= bound, "%s in [%g,%g] outside +-%g", ti.name, lo, hi, bound);
            CHECK(hi - lo > 0.5 * bound || ti.numel < 8, "%s range [%g,%g] too narrow", ti.name, lo, hi);
        } else if (!strcmp(ti.name, "bn.weight") || !strcmp(ti.name, "bn.running_var")) {
            CHECK(lo == 1.0 && hi == 1.0, "%s not ones", ti.name);
        } else {
            CHECK(lo == 0.0 && hi == 0.0, "%s not zeros", ti.name);
        }
    }
    ts_model_free(m);
}

static void test_overrides(void) {
    ts_model *m = NULL;
    ts_shape mnist = {3, {1, 28, 28}};
    CHECK(build(ts_zoo_arch("resnet20"), &mnist, 100, &m) == TS_OK, "resnet20 1x28x28/100: %s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_classes(m) == 100, "classes %d", ts_model_classes(m));
        ts_shape in = ts_model_input_shape(m);
        CHECK(shape_is(&in, 3, 1, 28, 28), "input");
        CHECK_LAYER_SHAPE(m, "conv1", 3, 16, 28, 28);
        CHECK_LAYER_SHAPE(m, "layer2.0.conv1", 3, 32, 14, 14);
        CHECK_LAYER_SHAPE(m, "layer3.0.conv1", 3, 64, 7, 7);
        /* conv1 now has 1 input channel; fc 64*100+100 */
        int64_t want = 272474 - 16 * 2 * 9 - (64 * 10 + 10) + (64 * 100 + 100);
        CHECK(ts_model_param_count(m) == want, "params %lld want %lld", (long long)ts_model_param_count(m),
              (long long)want);
        ts_model_free(m);
    }
    /* classes alone; input alone */
    CHECK(build(ts_zoo_arch("demo"), NULL, 3, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_classes(m) == 3, "classes %d", ts_model_classes(m));
        CHECK_LAYER_SHAPE(m, "fc2", 1, 3, 0, 0);
        ts_model_free(m);
    }
    ts_shape empty = {0, {0}};
    CHECK(build(ts_zoo_arch("demo"), &empty, 0, &m) == TS_OK, "ndim 0 input keeps the text's: %s", ts_ctx_error(g_ctx));
    if (m) {
        ts_shape in = ts_model_input_shape(m);
        CHECK(shape_is(&in, 3, 1, 28, 28), "input kept");
        CHECK(ts_model_classes(m) == 10, "classes kept");
        ts_model_free(m);
    }

    /* vgg11 needs 32x32: five 2x2 pools collapse 28 to 0 */
    ts_status st = build(ts_zoo_arch("vgg11"), &mnist, 10, &m);
    CHECK(st == TS_ESHAPE, "vgg11 on 1x28x28: %s (%s)", ts_status_name(st), ts_ctx_error(g_ctx));
    CHECK(m == NULL, "out set on failure");
    const char *msg = ts_ctx_error(g_ctx);
    CHECK(strstr(msg, "net.arch:") != NULL, "message names the source: %s", msg);
    /* find the failing line: the message's line must be a pool or conv line of vgg11 */
    const char *colon = strstr(msg, "net.arch:");
    if (colon) {
        int line = atoi(colon + 9);
        CHECK(line > 3, "line %d", line);
        const char *t = ts_zoo_arch("vgg11");
        for (int l = 1; l < line && t; l++) {
            t = strchr(t, '\n');
            if (t) t++;
        }
        CHECK(t && (!strncmp(t, "maxpool", 7) || !strncmp(t, "conv2d", 6)), "line %d is not a pool/conv: %.30s", line,
              t ? t : "");
    }
}

/* ----------------------------------------------------------------- errors */

static void test_error_kind_and_keys(void) {
    expect_error("unknown kind", "input shape=1x4x4 classes=2\nflatten\nconvolution out=3\ndense out=2\n", TS_EFORMAT,
                 3, "unknown layer kind", "convolution", NULL);
    expect_error("unknown key", "input shape=1x4x4 classes=2\nconv2d out=2 kernel=3 strides=2\nflatten\ndense out=2\n",
                 TS_EFORMAT, 2, "unknown key", "strides", "stride", "padding", "dilation", "groups", "bias", NULL);
    expect_error("unknown key on dense", "input shape=4 classes=2\ndense out=2 kernel=3\n", TS_EFORMAT, 2,
                 "unknown key", "kernel", "out", "bias", NULL);
    expect_error("missing out", "input shape=1x4x4 classes=2\nconv2d kernel=3\nflatten\ndense out=2\n", TS_EFORMAT, 2,
                 "missing", "out", NULL);
    expect_error("missing kernel", "input shape=1x4x4 classes=2\nconv2d out=3\nflatten\ndense out=2\n", TS_EFORMAT, 2,
                 "missing", "kernel", NULL);
    expect_error("missing pool kernel", "input shape=1x4x4 classes=2\nmaxpool stride=2\nflatten\ndense out=2\n",
                 TS_EFORMAT, 2, "missing", "kernel", NULL);
    expect_error("missing shape", "input classes=2\ndense out=2\n", TS_EFORMAT, 1, "missing", "shape", NULL);
    expect_error("missing dense out", "input shape=4 classes=2\ndense bias=0\n", TS_EFORMAT, 2, "missing", "out", NULL);
    expect_error("not key=value", "input shape=4 classes=2\ndense out\n", TS_EFORMAT, 2, "out", "key=value", NULL);
    expect_error("key twice", "input shape=1x4x4 classes=2\nconv2d out=2 kernel=3 out=4\nflatten\ndense out=2\n",
                 TS_EFORMAT, 2, "twice", "out", NULL);
}

static void test_error_values(void) {
    const char *pre = "input shape=1x8x8 classes=2\n";
    struct {
        const char *line, *key;
    } cases[] = {
        {"conv2d out=2 kernel=0", "kernel"},    {"conv2d out=2 kernel=3x", "kernel"},
        {"conv2d out=2 kernel=x3", "kernel"},   {"conv2d out=2 kernel=3x3x3", "kernel"},
        {"conv2d out=2 kernel=3 stride=-1", "stride"}, {"conv2d out=2 kernel=3 stride=0", "stride"},
        {"conv2d out=abc kernel=3", "out"},     {"conv2d out=0 kernel=3", "out"},
        {"conv2d out=2 kernel=3 padding=-1", "padding"}, {"conv2d out=2 kernel=3 bias=2", "bias"},
        {"conv2d out=2 kernel=3 groups=0", "groups"}, {"conv2d out=2.5 kernel=3", "out"},
        {"dropout p=1.5", "p"},                 {"dropout p=-0.1", "p"},
        {"dropout p=abc", "p"},                 {"batchnorm eps=0", "eps"},
        {"batchnorm momentum=2", "momentum"},   {"leakyrelu slope=nan", "slope"},
        {"maxpool kernel=2 ceil=5", "ceil"},    {"conv2d name=a/b out=2 kernel=3", "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "%s%s\nflatten\ndense out=2\n", pre, cases[i].line);
        char key[32];
        snprintf(key, sizeof key, "%s=", cases[i].key);
        expect_error(cases[i].line, text, TS_EFORMAT, 2, key, "invalid", NULL);
    }
    /* input shape values */
    expect_error("shape 0", "input shape=1x0x4 classes=2\nflatten\ndense out=2\n", TS_EFORMAT, 1, "shape=", NULL);
    expect_error("shape junk", "input shape=1x4y4 classes=2\nflatten\ndense out=2\n", TS_EFORMAT, 1, "shape=", NULL);
    expect_error("classes 0", "input shape=4 classes=0\ndense out=2\n", TS_EFORMAT, 1, "classes=", NULL);
    /* valid corner values are accepted */
    ts_model *m = NULL;
    CHECK(build("input shape=1x8x8 classes=2\nconv2d out=2 kernel=3x1 stride=2x1 padding=1x0\nflatten\n"
                "dropout p=0\ndense out=2\n",
                NULL, 0, &m) == TS_OK,
          "valid asymmetric values: %s", ts_ctx_error(g_ctx));
    if (m) {
        ts_layer_info li;
        ts_model_layer(m, 1, &li);
        CHECK(shape_is(&li.out, 3, 2, 4, 8), "3x1 kernel stride 2x1 padding 1x0: (%lld,%lld,%lld)",
              (long long)li.out.dims[0], (long long)li.out.dims[1], (long long)li.out.dims[2]);
        ts_model_free(m);
    }
}

static void test_error_graph(void) {
    expect_error("duplicate name",
                 "input shape=1x4x4 classes=2\nconv2d name=a out=2 kernel=3\nrelu name=a\nflatten\ndense out=2\n",
                 TS_EFORMAT, 3, "'a'", "already", NULL);
    expect_error("in= unknown", "input shape=1x4x4 classes=2\nconv2d name=a out=2 kernel=3\nrelu in=zz\nflatten\n"
                 "dense out=2\n",
                 TS_EFORMAT, 3, "'zz'", "earlier", NULL);
    expect_error("in= later", "input shape=1x4x4 classes=2\nconv2d name=a out=2 kernel=3\nrelu name=r in=b\n"
                 "relu name=b in=a\nflatten\ndense out=2\n",
                 TS_EFORMAT, 3, "'b'", "earlier", NULL);
    expect_error("in= itself", "input shape=1x4x4 classes=2\nrelu name=r in=r\nflatten\ndense out=2\n", TS_EFORMAT, 2,
                 "'r'", "earlier", NULL);
    expect_error("first not input", "conv2d out=2 kernel=3\nflatten\ndense out=2\n", TS_EFORMAT, 1, "first", "input",
                 NULL);
    expect_error("second input", "input shape=4 classes=2\ninput shape=4\ndense out=2\n", TS_EFORMAT, 2, "input",
                 NULL);
    expect_error("add mismatch",
                 "input shape=1x8x8 classes=2\nconv2d name=a out=2 kernel=3\nconv2d name=b in=input0 out=2 kernel=1\n"
                 "add name=sum in=a,b\nflatten\ndense out=2\n",
                 TS_ESHAPE, 4, "'sum'", "'b'", "'a'", "shape", NULL);
    expect_error("add one input", "input shape=1x8x8 classes=2\nrelu name=a\nadd name=s in=a\nflatten\ndense out=2\n",
                 TS_EFORMAT, 3, "add", "two", NULL);
    expect_error("concat mismatch",
                 "input shape=1x8x8 classes=2\nconv2d name=a out=2 kernel=3\nconv2d name=b in=input0 out=3 kernel=1\n"
                 "concat name=cat in=a,b\nflatten\ndense out=2\n",
                 TS_ESHAPE, 4, "'cat'", "'b'", NULL);
    expect_error("dense after 3-d", "input shape=1x8x8 classes=2\nconv2d name=a out=2 kernel=3\ndense name=fc out=2\n",
                 TS_ESHAPE, 3, "'fc'", "flatten", NULL);
    /* any output shape is allowed; classes must then count its values */
    expect_error("last not classes", "input shape=1x8x8 classes=2\nconv2d name=last out=2 kernel=3\n", TS_ESHAPE, 2,
                 "'last'", "72 values", NULL);
    expect_error("classes mismatch", "input shape=1x8x8 classes=3\nflatten\ndense name=fc out=5\n", TS_ESHAPE, 3,
                 "'fc'", "classes=3", "5", NULL);
    expect_error("out=classes without classes", "input shape=1x8x8\nflatten\ndense name=fc out=classes\n", TS_EFORMAT,
                 3, "classes", NULL);
    expect_error("conv on a vector", "input shape=16 classes=2\nconv2d name=c out=2 kernel=1\nflatten\ndense out=2\n",
                 TS_ESHAPE, 2, "'c'", "CxHxW", NULL);
    expect_error("kernel too big", "input shape=1x4x4 classes=2\nconv2d name=c out=2 kernel=5\nflatten\ndense out=2\n",
                 TS_ESHAPE, 2, "'c'", "fit", NULL);
    expect_error("groups do not divide",
                 "input shape=3x4x4 classes=2\nconv2d name=c out=4 kernel=1 groups=2\nflatten\ndense out=2\n",
                 TS_ESHAPE, 2, "'c'", "groups", NULL);
    expect_error("input with in=", "input shape=4 classes=2 in=x\ndense out=2\n", TS_EFORMAT, 1, "in", NULL);
    expect_error("relu two inputs",
                 "input shape=4 classes=2\nrelu name=a\nrelu name=b in=a,input0\ndense out=2\n", TS_EFORMAT, 3, "'b'",
                 "one input", NULL);
    /* only the input line */
    expect_error("input only", "input shape=4 classes=2\n", TS_EFORMAT, 0, "no layers", NULL);

    /* out=classes without classes is fine when the caller gives classes */
    ts_model *m = NULL;
    CHECK(build("input shape=1x8x8\nflatten\ndense name=fc out=classes\n", NULL, 7, &m) == TS_OK,
          "out=classes with caller classes: %s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_classes(m) == 7, "classes %d", ts_model_classes(m));
        ts_model_free(m);
    }
    /* no classes anywhere: taken from the last layer */
    CHECK(build("input shape=6\ndense out=4\n", NULL, 0, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_classes(m) == 4, "classes from last layer %d", ts_model_classes(m));
        ts_model_free(m);
    }
    /* default names are kind plus position, and 'in=' can use them */
    CHECK(build("input shape=1x4x4 classes=2\nrelu\nrelu in=relu1\nadd in=relu1,relu2\nflatten\ndense out=2\n", NULL, 0,
                &m) == TS_OK,
          "default names: %s", ts_ctx_error(g_ctx));
    if (m) {
        ts_layer_info li;
        CHECK(ts_model_layer(m, 0, &li) == TS_OK && !strcmp(li.name, "input0") && li.ninputs == 0, "input0 %s",
              li.name);
        CHECK(ts_model_layer(m, 3, &li) == TS_OK && !strcmp(li.name, "add3") && li.ninputs == 2, "add3 %s", li.name);
        CHECK(ts_model_layer(m, 5, &li) == TS_OK && !strcmp(li.name, "dense5") && li.line == 6, "dense5 %s line %d",
              li.name, li.line);
        ts_model_free(m);
    }
}

static void test_error_text(void) {
    expect_error("empty", "", TS_EFORMAT, 0, NULL);
    expect_error("only comments", "# nothing\n\n   # here\n", TS_EFORMAT, 0, NULL);
    /* comments and blank lines count as lines */
    expect_error("line numbers", "# header\n\ninput shape=1x4x4 classes=2   # trailing comment\n\n# c\n"
                 "   \t\nflatten\n\nbogus x=1\n",
                 TS_EFORMAT, 9, "bogus", NULL);
    expect_error("CRLF line numbers", "input shape=1x4x4 classes=2\r\nflatten\r\n\r\nbogus\r\n", TS_EFORMAT, 4,
                 "bogus", NULL);
    ts_model *m = NULL;
    CHECK(build("\n# c\ninput shape=1x4x4 classes=2\n\n  flatten   # x\ndense name=fc out=2", NULL, 0, &m) == TS_OK,
          "comments, indentation, no final newline: %s", ts_ctx_error(g_ctx));
    if (m) {
        ts_layer_info li;
        CHECK(find_layer(m, "fc", &li) == 2 && li.line == 6, "fc line %d", li.line);
        ts_model_free(m);
    }
    /* source NULL still names something */
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_model_from_arch(g_ctx, "nonsense\n", NULL, NULL, 0, 1, &m);
    CHECK(st == TS_EFORMAT && m == NULL, "NULL source: %s", ts_status_name(st));
    CHECK(strstr(ts_ctx_error(g_ctx), ":1:") != NULL, "NULL source message: %s", ts_ctx_error(g_ctx));
    /* NULL arguments */
    st = ts_model_from_arch(g_ctx, NULL, "x", NULL, 0, 1, &m);
    CHECK(st == TS_EINVAL, "NULL text: %s", ts_status_name(st));
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n, "short write");
    fclose(f);
}

static void test_arch_file(void) {
    char path[256];
    ts_model *m = NULL;
    ts_status st;
    /* a good file: the message source is the path */
    snprintf(path, sizeof path, "%s/good.arch", g_tmp);
    const char *good = "input shape=1x6x6 classes=3\nflatten\ndense name=fc out=classes\n";
    write_file(path, good, strlen(good));
    st = ts_model_from_arch_file(g_ctx, path, NULL, 0, 1, &m);
    CHECK(st == TS_OK, "good file: %s", ts_ctx_error(g_ctx));
    if (m) {
        CHECK(ts_model_param_count(m) == 36 * 3 + 3, "params %lld", (long long)ts_model_param_count(m));
        CHECK(!strcmp(ts_model_arch_text(m), good), "arch text");
        ts_model_free(m);
    }
    /* errors in a file are reported against its path */
    snprintf(path, sizeof path, "%s/bad.arch", g_tmp);
    const char *badtxt = "input shape=1x6x6 classes=3\nflatten\ndense name=fc out=4\n";
    write_file(path, badtxt, strlen(badtxt));
    ts_ctx_clear_error(g_ctx);
    st = ts_model_from_arch_file(g_ctx, path, NULL, 0, 1, &m);
    char loc[300];
    snprintf(loc, sizeof loc, "%s:3:", path);
    CHECK(st == TS_ESHAPE && m == NULL, "bad file: %s", ts_status_name(st));
    CHECK(strstr(ts_ctx_error(g_ctx), loc) != NULL, "message '%s' lacks '%s'", ts_ctx_error(g_ctx), loc);

    /* NUL byte */
    snprintf(path, sizeof path, "%s/nul.arch", g_tmp);
    const char nul[] = "input shape=1x6x6 classes=3\nfla\0tten\ndense out=3\n";
    write_file(path, nul, sizeof nul - 1);
    ts_ctx_clear_error(g_ctx);
    st = ts_model_from_arch_file(g_ctx, path, NULL, 0, 1, &m);
    CHECK(st == TS_EFORMAT && m == NULL, "NUL byte: %s", ts_status_name(st));
    CHECK(strstr(ts_ctx_error(g_ctx), path) && strstr(ts_ctx_error(g_ctx), "NUL"), "NUL message: %s",
          ts_ctx_error(g_ctx));

    /* larger than 16 MiB: comment lines */
    snprintf(path, sizeof path, "%s/big.arch", g_tmp);
    {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL, "create big");
        if (f) {
            fputs("input shape=4 classes=2\n", f);
            char line[1024];
            memset(line, ' ', sizeof line);
            line[0] = '#';
            line[sizeof line - 1] = '\n';
            for (int i = 0; i < 16 * 1024 + 8; i++) fwrite(line, 1, sizeof line, f);
            fputs("dense out=2\n", f);
            fclose(f);
        }
    }
    ts_ctx_clear_error(g_ctx);
    m = NULL;
    st = ts_model_from_arch_file(g_ctx, path, NULL, 0, 1, &m);
    CHECK(st == TS_EFORMAT && m == NULL, "16 MiB + 8 KiB file: %s", ts_status_name(st));
    ts_model_free(m);
    m = NULL;
    CHECK(strstr(ts_ctx_error(g_ctx), path) && strstr(ts_ctx_error(g_ctx), "16 MiB"), "big message: %s",
          ts_ctx_error(g_ctx));
    unlink(path);

    /* missing file */
    snprintf(path, sizeof path, "%s/missing.arch", g_tmp);
    ts_ctx_clear_error(g_ctx);
    st = ts_model_from_arch_file(g_ctx, path, NULL, 0, 1, &m);
    CHECK(st == TS_EIO && m == NULL, "missing: %s", ts_status_name(st));
    CHECK(strstr(ts_ctx_error(g_ctx), path) != NULL, "missing message: %s", ts_ctx_error(g_ctx));
    /* a directory */
    ts_ctx_clear_error(g_ctx);
    st = ts_model_from_arch_file(g_ctx, g_tmp, NULL, 0, 1, &m);
    CHECK(st != TS_OK && m == NULL, "directory: %s", ts_status_name(st));
}

static void test_repeated_create_free(void) {
    /* a leak per create/free would show under ASan; also errors after a success */
    for (int i = 0; i < 20; i++) {
        ts_model *m = NULL;
        CHECK(build(ts_zoo_arch(i % 2 ? "lenet5" : "demo"), NULL, 0, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_model_free(m);
        CHECK(build("input shape=1x4x4 classes=2\nconv2d name=c out=2 kernel=3\nflatten\ndense out=3\n", NULL, 0,
                    &m) == TS_ESHAPE,
              "iteration %d", i);
    }
    ts_model_free(NULL);
}

/* Shapes whose element count overflows or exceeds what kernels index are refused
 * at parse time, and so are models too large to hold. */
static void test_size_limits(void) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, "input shape=16777216x16777216x16777216x16777216 classes=10\nflatten\n"
                                      "dense out=10\n", "ovf.arch", NULL, 0, 1, &m);
    CHECK(st == TS_ESHAPE && m == NULL, "overflowing input: %s (%s)", ts_status_name(st), ts_ctx_error(g_ctx));
    CHECK(strstr(ts_ctx_error(g_ctx), "ovf.arch:1:") != NULL, "names the line: %s", ts_ctx_error(g_ctx));
    st = ts_model_from_arch(g_ctx, "input shape=1x16384x16384 classes=10\nflatten\ndense out=16\ndense out=10\n",
                            "big.arch", NULL, 0, 1, &m);
    CHECK(st == TS_ESHAPE && m == NULL, "4G-parameter model: %s (%s)", ts_status_name(st), ts_ctx_error(g_ctx));
    CHECK(strstr(ts_ctx_error(g_ctx), "big.arch") && strstr(ts_ctx_error(g_ctx), "larger than"), "message: %s",
          ts_ctx_error(g_ctx));
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_zoo_all_parse);
    RUN(test_param_counts);
    RUN(test_default_init);
    RUN(test_overrides);
    RUN(test_error_kind_and_keys);
    RUN(test_error_values);
    RUN(test_error_graph);
    RUN(test_error_text);
    RUN(test_arch_file);
    RUN(test_repeated_create_free);
    RUN(test_size_limits);
    char p[300];
    const char *files[] = {"good.arch", "bad.arch", "nul.arch", "big.arch"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_tmp, files[i]);
        unlink(p);
    }
    rmdir(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_arch");
}
