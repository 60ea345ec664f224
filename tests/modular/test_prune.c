/* Pruning (src/modular/prune.c, docs/pruning.md). At initialization: ResNet-20 in every
 * mode reaches its target within a few points, its residual additions still match
 * (the architecture text parses again into the same model), its MACs and parameters are
 * what ts_model_layer counts (`tessera info`), the same seed gives the same text; a
 * VGG-like network (flatten into dense), a network with a concat and a depthwise block; a small pruned
 * residual network trains (loss finite and lower after a few epochs on a tiny set).
 * Magnitude pruning: the sliced model's outputs equal the masked original's within
 * 1e-5, it has the planned channels, the weakest filters are the ones that go. Widths
 * kept to a multiple (cfg.multiple) in both ways. Bad arguments fail with messages. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h"

static ts_ctx *g_ctx;

/* A residual CNN on 1x8x8 images, 4 classes: a stem, one block, a projection block. */
static const char *SMALL_RES =
    "input shape=1x8x8 classes=4\n"
    "conv2d name=stem out=8 kernel=3 padding=1 bias=0\n"
    "batchnorm name=stem.bn\n"
    "relu name=stem.relu\n"
    "conv2d name=b1.conv1 out=8 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b1.bn1\n"
    "relu name=b1.relu1\n"
    "conv2d name=b1.conv2 out=8 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b1.bn2\n"
    "add name=b1.add in=b1.bn2,stem.relu\n"
    "relu name=b1.relu2\n"
    "conv2d name=b2.conv1 out=16 kernel=3 stride=2 padding=1 bias=0\n"
    "batchnorm name=b2.bn1\n"
    "relu name=b2.relu1\n"
    "conv2d name=b2.conv2 out=16 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b2.bn2\n"
    "conv2d name=b2.down in=b1.relu2 out=16 kernel=1 stride=2 bias=0\n"
    "batchnorm name=b2.down.bn\n"
    "add name=b2.add in=b2.bn2,b2.down.bn\n"
    "relu name=b2.relu2\n"
    "globalavgpool name=pool\n"
    "dense name=fc out=classes\n";

/* VGG-like: conv blocks, flatten, two dense layers */
static const char *VGG_LIKE =
    "input shape=3x16x16 classes=10\n"
    "conv2d name=c1 out=16 kernel=3 padding=1\n"
    "batchnorm name=c1.bn\n"
    "relu name=c1.relu\n"
    "maxpool name=p1 kernel=2\n"
    "conv2d name=c2 out=32 kernel=3 padding=1\n"
    "relu name=c2.relu\n"
    "maxpool name=p2 kernel=2\n"
    "flatten name=flat\n"
    "dense name=fc1 out=64\n"
    "relu name=fc1.relu\n"
    "dropout name=drop p=0.5\n"
    "dense name=fc2 out=classes\n";

/* Two branches concatenated on channels, then a conv */
static const char *CONCAT_NET =
    "input shape=3x8x8 classes=5\n"
    "conv2d name=a out=12 kernel=3 padding=1\n"
    "relu name=a.relu\n"
    "conv2d name=b in=input0 out=20 kernel=1\n"
    "relu name=b.relu\n"
    "concat name=cat in=a.relu,b.relu\n"
    "conv2d name=c out=16 kernel=3 padding=1\n"
    "relu name=c.relu\n"
    "globalavgpool name=gap\n"
    "dense name=fc out=classes\n";

/* A depthwise-separable block: the depthwise conv follows its input's channels */
static const char *DEPTHWISE_NET =
    "input shape=3x16x16 classes=6\n"
    "conv2d name=c1 out=16 kernel=3 padding=1 bias=0\n"
    "batchnorm name=c1.bn\n"
    "relu name=c1.relu\n"
    "conv2d name=dw out=16 kernel=3 padding=1 groups=16 bias=0\n"
    "batchnorm name=dw.bn\n"
    "relu name=dw.relu\n"
    "conv2d name=pw out=24 kernel=1 bias=0\n"
    "batchnorm name=pw.bn\n"
    "relu name=pw.relu\n"
    "globalavgpool name=gap\n"
    "dense name=fc out=classes\n";

static ts_model *from_text(const char *text, const char *source) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, source, NULL, 0, 1, &m) == TS_OK, "%s: %s", source, ts_ctx_error(g_ctx));
    return m;
}

static void totals(const ts_model *m, int64_t *params, int64_t *macs) {
    *params = *macs = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        ts_model_layer(m, i, &li);
        *params += li.params;
        *macs += li.macs;
    }
}

static int64_t channels_of(const ts_model *m, const char *name) {
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        ts_model_layer(m, i, &li);
        if (!strcmp(li.name, name)) return li.out.dims[0];
    }
    return -1;
}

static const ts_prune_layer *report_layer(const ts_prune_report *rep, const char *name) {
    for (int i = 0; i < rep->nlayers; i++)
        if (!strcmp(rep->layers[i].name, name)) return &rep->layers[i];
    return NULL;
}

/* Prunes text at init in `mode` and checks the result against the report, the target
 * and a fresh parse of its text; returns the pruned model (caller frees). */
static ts_model *prune_checked(const char *text, const char *source, ts_prune_mode mode, double target, uint64_t seed,
                               ts_prune_report *rep) {
    ts_model *m = from_text(text, source), *p = NULL;
    if (!m) return NULL;
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    cfg.mode = mode;
    cfg.target = target;
    cfg.seed = seed;
    CHECK(ts_prune_arch(g_ctx, m, &cfg, &p, rep) == TS_OK, "%s mode %d: %s", source, (int)mode, ts_ctx_error(g_ctx));
    if (p) {
        int64_t params, macs, pb, mb;
        totals(p, &params, &macs);
        totals(m, &pb, &mb);
        CHECK(params == rep->params_after && params == ts_model_param_count(p), "params %lld vs report %lld",
              (long long)params, (long long)rep->params_after);
        CHECK(macs == rep->macs_after && mb == rep->macs_before && pb == rep->params_before, "macs %lld vs %lld",
              (long long)macs, (long long)rep->macs_after);
        const double got[3] = {1.0 - (double)params / (double)pb, 1.0 - (double)macs / (double)mb,
                               1.0 - (double)rep->memory_after / (double)rep->memory_before};
        CHECK(fabs(got[mode] - rep->achieved) < 1e-12, "achieved %g vs counted %g", rep->achieved, got[mode]);
        CHECK(rep->achieved >= target && rep->achieved < target + 0.05, "%s mode %d: achieved %.4f for target %.2f",
              source, (int)mode, rep->achieved, target);
        /* the text is a valid architecture of the same model */
        ts_model *again = from_text(ts_model_arch_text(p), "pruned.arch");
        if (again) {
            int64_t p2, m2;
            totals(again, &p2, &m2);
            CHECK(p2 == params && m2 == macs, "reparsed: %lld params %lld macs", (long long)p2, (long long)m2);
        }
        ts_model_free(again);
    }
    ts_model_free(m);
    return p;
}

static void test_resnet20_modes(void) {
    for (int mode = 0; mode < 3; mode++) {
        ts_prune_report rep;
        ts_model *p = prune_checked(ts_zoo_arch("resnet20"), "resnet20", (ts_prune_mode)mode, 0.5, 7, &rep);
        if (!p) continue;
        /* 12 groups: stem + stage 1, stages 2 and 3 (tied by their additions), nine first convs */
        CHECK(rep.groups == 12, "groups %d", rep.groups);
        const ts_prune_layer *fc = report_layer(&rep, "fc"), *c1 = report_layer(&rep, "conv1");
        CHECK(fc && fc->group < 0 && fc->after == 10, "the classifier stays whole");
        /* the stem, every stage-1 second conv: one group, the same channels */
        const char *tied[] = {"layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"};
        for (int i = 0; i < 3; i++) {
            const ts_prune_layer *t = report_layer(&rep, tied[i]);
            CHECK(c1 && t && t->group == c1->group && t->after == c1->after, "%s tied to conv1", tied[i]);
        }
        const ts_prune_layer *d = report_layer(&rep, "layer2.0.downsample.0"), *s2 = report_layer(&rep, "layer2.2.conv2");
        CHECK(d && s2 && d->group == s2->group && d->after == s2->after, "the projection tied to its stage");
        CHECK(channels_of(p, "layer3.2.bn2") == report_layer(&rep, "layer3.2.conv2")->after, "bn follows its conv");
        ts_prune_report_free(&rep);
        ts_model_free(p);
    }
}

static void test_seed_repeats(void) {
    ts_prune_report r1, r2, r3;
    ts_model *a = prune_checked(ts_zoo_arch("resnet20"), "resnet20", TS_PRUNE_FLOPS, 0.4, 3, &r1);
    ts_model *b = prune_checked(ts_zoo_arch("resnet20"), "resnet20", TS_PRUNE_FLOPS, 0.4, 3, &r2);
    ts_model *c = prune_checked(ts_zoo_arch("resnet20"), "resnet20", TS_PRUNE_FLOPS, 0.4, 4, &r3);
    if (a && b && c) {
        CHECK(!strcmp(ts_model_arch_text(a), ts_model_arch_text(b)), "same seed, same text");
        CHECK(strcmp(ts_model_arch_text(a), ts_model_arch_text(c)) != 0, "another seed, another text");
        CHECK(r1.draws > 0 && r1.draws == r2.draws, "draws %d %d", r1.draws, r2.draws);
    }
    ts_prune_report_free(&r1);
    ts_prune_report_free(&r2);
    ts_prune_report_free(&r3);
    ts_model_free(a);
    ts_model_free(b);
    ts_model_free(c);
}

static void test_vgg_and_concat(void) {
    for (int mode = 0; mode < 3; mode++) {
        ts_prune_report rep;
        ts_model *p = prune_checked(VGG_LIKE, "vgg-like", (ts_prune_mode)mode, 0.3, 1, &rep);
        if (p) {
            CHECK(rep.groups == 3, "vgg groups %d (c1, c2, fc1)", rep.groups);
            CHECK(channels_of(p, "fc2") == 10, "classifier whole");
        }
        ts_prune_report_free(&rep);
        ts_model_free(p);
        p = prune_checked(DEPTHWISE_NET, "depthwise", (ts_prune_mode)mode, 0.4, 3, &rep);
        if (p) {
            const ts_prune_layer *c1 = report_layer(&rep, "c1"), *dw = report_layer(&rep, "dw");
            CHECK(rep.groups == 2 && c1 && dw && dw->group == c1->group && dw->after == c1->after,
                  "depthwise follows c1: %d groups", rep.groups);
        }
        ts_prune_report_free(&rep);
        ts_model_free(p);
        p = prune_checked(CONCAT_NET, "concat", (ts_prune_mode)mode, 0.3, 2, &rep);
        if (p) {
            CHECK(rep.groups == 3, "concat groups %d (a, b, c)", rep.groups);
            CHECK(channels_of(p, "cat") == channels_of(p, "a") + channels_of(p, "b"), "concat of the branches");
        }
        ts_prune_report_free(&rep);
        ts_model_free(p);
    }
    /* a chunk of a quarter of a layer per draw still reaches the target */
    ts_model *m = from_text(VGG_LIKE, "vgg-like"), *p = NULL;
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    cfg.chunk = 0.25;
    ts_prune_report rep;
    CHECK(m && ts_prune_arch(g_ctx, m, &cfg, &p, &rep) == TS_OK && rep.achieved >= 0.5, "chunk: %s", ts_ctx_error(g_ctx));
    if (p) CHECK(rep.draws < 20, "a quarter per draw: %d draws", rep.draws);
    ts_prune_report_free(&rep);
    ts_model_free(p);
    ts_model_free(m);
}

/* cfg.multiple: every narrowed width a multiple of it, at least it; a group narrower
 * than it (CONCAT_NET's a: 12, b: 20 at 16) stays whole or keeps a multiple; the
 * target is still reached, at initialization and by magnitude; a sliced model equals
 * its masked original. */
static void check_multiple(const char *text, const char *source, int multiple, double target) {
    ts_model *m = from_text(text, source);
    if (!m) return;
    test_randomize_model(m, 5);
    for (int mode = 0; mode < 3; mode++)
        for (int magnitude = 0; magnitude < 2; magnitude++) {
            ts_prune_config cfg;
            ts_prune_config_default(&cfg);
            cfg.mode = (ts_prune_mode)mode;
            cfg.target = target;
            cfg.seed = 11;
            cfg.multiple = multiple;
            ts_prune_report rep;
            ts_model *p = NULL;
            const ts_status st = magnitude ? ts_prune_model(g_ctx, m, &cfg, &p, &rep) : ts_prune_arch(g_ctx, m, &cfg, &p, &rep);
            CHECK(st == TS_OK, "%s mode %d %s: %s", source, mode, magnitude ? "magnitude" : "init", ts_ctx_error(g_ctx));
            if (st) continue;
            CHECK(rep.multiple == multiple && rep.achieved >= target, "%s: achieved %.4f", source, rep.achieved);
            int narrowed = 0;
            for (int i = 0; i < rep.nlayers; i++) {
                const ts_prune_layer *l = &rep.layers[i];
                CHECK(channels_of(p, l->name) == l->after, "%s channels", l->name);
                if (l->after == l->before) continue;
                narrowed++;
                CHECK(l->after % multiple == 0 && l->after >= multiple, "%s %s: %lld -> %lld is not a multiple of %d",
                      source, l->name, (long long)l->before, (long long)l->after, multiple);
            }
            CHECK(narrowed > 0, "%s: nothing narrowed", source);
            ts_prune_report_free(&rep);
            ts_model_free(p);
        }
    ts_model_free(m);
}

static void test_multiple(void) {
    check_multiple(ts_zoo_arch("resnet20"), "resnet20", 8, 0.4);
    check_multiple(ts_zoo_arch("resnet20"), "resnet20", 16, 0.3);
    check_multiple(VGG_LIKE, "vgg-like", 8, 0.5);
    check_multiple(CONCAT_NET, "concat", 8, 0.3);
    /* a group narrower than the multiple stays whole; one between goes down to it */
    ts_model *m = from_text(CONCAT_NET, "concat"), *p = NULL;
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    cfg.multiple = 16;
    cfg.target = 0.1;
    ts_prune_report rep = {0};
    CHECK(m && ts_prune_arch(g_ctx, m, &cfg, &p, &rep) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (p) {
        const ts_prune_layer *a = report_layer(&rep, "a"), *b = report_layer(&rep, "b");
        CHECK(a && a->after == 12, "a (12 < 16) stays whole: %lld", a ? (long long)a->after : -1LL);
        CHECK(b && b->after == 16, "b: 20 -> 16: %lld", b ? (long long)b->after : -1LL);
    }
    ts_prune_report_free(&rep);
    ts_model_free(p);
    /* unreachable with the floors: the message names them */
    ts_prune_config_default(&cfg);
    cfg.multiple = 16;
    cfg.target = 0.9;
    CHECK(m && ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "16 filters"),
          "unreachable: %s", ts_ctx_error(g_ctx));
    cfg.multiple = -1;
    CHECK(m && ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "multiple"),
          "negative multiple: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
}

/* Mean loss of a few epochs of Adam on the quadrant set, first and last epoch */
static void train_losses(ts_model *m, const ts_dataset *ds, int epochs, float *first, float *last) {
    enum { B = 32 };
    const int64_t in = (int64_t)ds->channels * ds->height * ds->width;
    float *x = test_falloc((size_t)(B * in)), *logits = test_falloc(B * 4), *d = test_falloc(B * 4);
    ts_optim_config oc;
    ts_optim_config_default(&oc, TS_OPT_ADAM);
    ts_optimizer *opt = NULL;
    CHECK(ts_optimizer_create(g_ctx, m, &oc, &opt) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int e = 0; e < epochs && opt; e++) {
        double sum = 0;
        int n = 0;
        for (int64_t s = 0; s + B <= ds->count; s += B, n++) {
            for (int64_t i = 0; i < B * in; i++) x[i] = ds->images[s * in + i] / 255.0f;
            ts_status st = ts_model_forward_train(g_ctx, m, x, B, logits, (uint64_t)(e * 1000 + n));
            const float loss = ts_softmax_cross_entropy(B, 4, logits, ds->labels + s, 0.0f, d);
            if (!st) st = ts_model_backward(g_ctx, m, d);
            if (!st) st = ts_optimizer_step(g_ctx, opt, 0.01f);
            CHECK(st == TS_OK && isfinite(loss), "step: %s, loss %g", ts_ctx_error(g_ctx), loss);
            sum += loss;
        }
        if (e == 0) *first = (float)(sum / n);
        *last = (float)(sum / n);
    }
    ts_optimizer_free(opt);
    free(x);
    free(logits);
    free(d);
}

static void test_pruned_trains(void) {
    ts_dataset *ds = test_quadrant_dataset(256, 5);
    ts_prune_report rep;
    ts_model *p = prune_checked(SMALL_RES, "small-res", TS_PRUNE_FLOPS, 0.5, 9, &rep);
    if (p) {
        float first = 0, last = 0;
        train_losses(p, ds, 4, &first, &last);
        CHECK(isfinite(first) && isfinite(last) && last < 0.8f * first, "loss %g -> %g", first, last);
    }
    ts_prune_report_free(&rep);
    ts_model_free(p);
    test_free_dataset(ds);
}

/* Magnitude pruning: the sliced model against the masked original on random inputs */
static void check_magnitude(const char *text, const char *source, ts_prune_mode mode, double target) {
    ts_model *m = from_text(text, source), *masked = NULL, *p = NULL;
    if (!m) return;
    test_randomize_model(m, 11);
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    cfg.mode = mode;
    cfg.target = target;
    ts_prune_report rep;
    CHECK(ts_prune_model(g_ctx, m, &cfg, &p, &rep) == TS_OK, "%s: %s", source, ts_ctx_error(g_ctx));
    CHECK(prune_masked_model(g_ctx, m, &cfg, &masked) == TS_OK, "%s: %s", source, ts_ctx_error(g_ctx));
    if (p && masked) {
        CHECK(rep.achieved >= target && rep.achieved < target + 0.05, "%s: achieved %.4f", source, rep.achieved);
        CHECK(rep.ratio > 0 && rep.ratio < 1, "ratio %g", rep.ratio);
        int64_t params, macs;
        totals(p, &params, &macs);
        CHECK(params == rep.params_after && macs == rep.macs_after, "counts");
        for (int i = 0; i < rep.nlayers; i++)
            CHECK(channels_of(p, rep.layers[i].name) == rep.layers[i].after, "%s channels", rep.layers[i].name);
        for (int i = 0; i < ts_model_layer_count(p); i++) {
            ts_layer_info li;
            ts_model_layer(p, i, &li);
            CHECK(strcmp(li.kind, "mask") != 0, "no mask is left: %s", li.name);
        }
        enum { N = 5 };
        const ts_shape in = ts_model_input_shape(m);
        const size_t isz = (size_t)ts_shape_numel(&in), nc = (size_t)ts_model_classes(m);
        float *x = test_falloc(N * isz), *want = test_falloc(N * nc), *got = test_falloc(N * nc);
        test_fill_uniform(x, N * isz, 3, -1.0f, 1.0f);
        CHECK(ts_model_predict(g_ctx, masked, x, N, want) == TS_OK && ts_model_predict(g_ctx, p, x, N, got) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        double top = 0;
        for (size_t i = 0; i < N * nc; i++) top = fmax(top, fabs(want[i]));
        test_allclose(source, got, want, N * nc, 0.0, 1e-5 * top);
        free(x);
        free(want);
        free(got);
    }
    ts_prune_report_free(&rep);
    ts_model_free(p);
    ts_model_free(masked);
    ts_model_free(m);
}

static void test_magnitude(void) {
    for (int mode = 0; mode < 3; mode++) {
        check_magnitude(SMALL_RES, "small-res", (ts_prune_mode)mode, 0.4);
        check_magnitude(VGG_LIKE, "vgg-like", (ts_prune_mode)mode, 0.5);
        check_magnitude(CONCAT_NET, "concat", (ts_prune_mode)mode, 0.3);
        check_magnitude(DEPTHWISE_NET, "depthwise", (ts_prune_mode)mode, 0.4);
    }
}

/* the filters of smallest L1 norm are the ones removed */
static void test_magnitude_order(void) {
    ts_model *m = from_text(VGG_LIKE, "vgg-like"), *p = NULL;
    if (!m) return;
    test_randomize_model(m, 2);
    ts_tensor_info w = test_tensor(m, "c2.weight");
    const int64_t per = w.numel / w.dims[0];
    for (int64_t k = 0; k < w.dims[0]; k++) /* filter k scaled by (k + 1): the first ones go */
        for (int64_t e = 0; e < per; e++) w.data[k * per + e] = (float)(k + 1) * (e % 2 ? 0.01f : -0.01f);
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    cfg.mode = TS_PRUNE_PARAMS;
    ts_prune_report rep;
    CHECK(ts_prune_model(g_ctx, m, &cfg, &p, &rep) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (p) {
        const ts_prune_layer *c2 = report_layer(&rep, "c2");
        ts_tensor_info pw = test_tensor(p, "c2.weight");
        const int64_t removed = c2 ? c2->before - c2->after : 0;
        CHECK(removed > 0 && pw.dims[0] == c2->after, "c2 lost %lld", (long long)removed);
        /* kept filter j is the origin's filter removed + j, its input columns sliced */
        if (removed > 0 && pw.data)
            CHECK(fabs(fabs(pw.data[0]) - 0.01 * (double)(removed + 1)) < 1e-6, "first kept filter %g", pw.data[0]);
    }
    ts_prune_report_free(&rep);
    ts_model_free(p);
    ts_model_free(m);
}

static void test_bad_arguments(void) {
    ts_model *m = from_text(VGG_LIKE, "vgg-like"), *p = NULL;
    if (!m) return;
    ts_prune_config cfg;
    const double bad[] = {0.0, 1.0, -0.5, 1.5, NAN};
    for (int i = 0; i < 5; i++) {
        ts_prune_config_default(&cfg);
        cfg.target = bad[i];
        CHECK(ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && !p && strstr(ts_ctx_error(g_ctx), "target"),
              "target %g: %s", bad[i], ts_ctx_error(g_ctx));
        CHECK(ts_prune_model(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && !p, "target %g", bad[i]);
    }
    ts_prune_config_default(&cfg);
    cfg.mode = (ts_prune_mode)7;
    CHECK(ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "mode"), "mode");
    ts_prune_config_default(&cfg);
    cfg.chunk = 1.0;
    CHECK(ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "chunk"), "chunk");
    ts_prune_config_default(&cfg);
    cfg.target = 0.999;
    CHECK(ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "cannot remove"),
          "unreachable: %s", ts_ctx_error(g_ctx));
    CHECK(ts_prune_model(g_ctx, m, &cfg, &p, NULL) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "cannot remove"),
          "unreachable: %s", ts_ctx_error(g_ctx));
    CHECK(ts_prune_arch(g_ctx, NULL, &cfg, &p, NULL) == TS_EINVAL, "NULL model");
    ts_model_free(m);
    /* nothing to prune: one dense layer, its output the model's */
    m = from_text("input shape=4 classes=3\ndense name=fc out=classes\n", "one-dense");
    ts_prune_config_default(&cfg);
    CHECK(m && ts_prune_arch(g_ctx, m, &cfg, &p, NULL) == TS_EUNSUPPORTED && strstr(ts_ctx_error(g_ctx), "no layer"),
          "nothing prunable: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
}

int main(void) {
    if (ts_ctx_create(&g_ctx)) return 2;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_resnet20_modes);
    RUN(test_seed_repeats);
    RUN(test_vgg_and_concat);
    RUN(test_pruned_trains);
    RUN(test_magnitude);
    RUN(test_magnitude_order);
    RUN(test_multiple);
    RUN(test_bad_arguments);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_prune");
}
