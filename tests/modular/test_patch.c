/* Patching (src/modular/patch.c): on synthetic 4-class quadrant images, a strong CNN
 * and weak models of another architecture and normalization.
 *
 * The patched model's outputs equal the rule written out here independently: the
 * weak model's softmax with the target's column replaced by the module's score
 * rescaled by its least and greatest score on the training data (also recomputed
 * here), the module running on its own normalization. A model patched on a class
 * it already knows perfectly, with a module that knows it too, predicts what it
 * predicted; a class the weak model never predicts gets recall above zero.
 * ts_patch_evaluate's figures match counts made here. The patched model saves,
 * reloads and exports to ONNX (read back to the same outputs) like any other. Refused: a class out of range, a
 * module of another input shape (both files named), a module whose score is
 * constant, a batch out of range; a file that claims to be patched without the
 * structure is not read as one. */
#include "tessera.h"

#include "common/test.h"

#include <stdint.h>
#include <stdio.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera-patch-XXXXXX";

enum { K = 4, NTRAIN = 1200, NTEST = 400, IN = 64 };

static const char *STRONG = "input   shape=1x8x8 classes=4\n"
                            "conv2d  name=conv1 out=6 kernel=3 padding=1\n"
                            "batchnorm name=bn1\n"
                            "relu    name=relu1\n"
                            "maxpool name=pool1 kernel=2\n"
                            "flatten name=flat\n"
                            "dense   name=fc1 out=16\n"
                            "relu    name=relu2\n"
                            "dropout name=drop p=0.1\n"
                            "dense   name=fc2 out=classes\n";

static const char *WEAK = "input   shape=1x8x8 classes=4\n"
                          "flatten name=flat\n"
                          "dense   name=fc1 out=8\n"
                          "relu    name=relu1\n"
                          "dense   name=fc2 out=classes\n"
                          "softmax name=prob\n";

static ts_dataset *g_train, *g_testset;

static ts_model *train(const char *arch, uint64_t seed, int epochs) {
    return test_train_adam(g_ctx, arch, "patch.arch", g_train, seed, seed, epochs, 32, 5e-3f);
}

/* Outputs (count, K) of m on ds's first `count` images, with m's own normalization. */
static float *outputs(ts_model *m, const ts_dataset *ds, int64_t count, int k) {
    ts_preprocess pp;
    CHECK(ts_model_get_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *x = test_falloc((size_t)count * IN), *out = test_falloc((size_t)count * (size_t)k);
    ts_preprocess_images(&pp, ds->images, count, 1, 8, 8, x);
    ts_status st = ts_model_predict(g_ctx, m, x, (int)count, out);
    CHECK(st == TS_OK, "predict: %s", ts_ctx_error(g_ctx));
    free(x);
    return out;
}

static int argmax(const float *row, int k) {
    int b = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[b]) b = j;
    return b;
}

/* The patched outputs by the rule, from the weak model and the module separately. */
static float *by_rule(ts_model *weak, const ts_module *mod, int t, const ts_dataset *ds, int64_t n, float *lo_out,
                      float *hi_out) {
    ts_model *mm = NULL;
    CHECK(ts_module_model(g_ctx, mod, &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *range = outputs(mm, g_train, NTRAIN, 1);
    float lo = range[0], hi = range[0];
    for (int i = 1; i < NTRAIN; i++) {
        lo = range[i] < lo ? range[i] : lo;
        hi = range[i] > hi ? range[i] : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
    float *score = outputs(mm, ds, n, 1), *w = outputs(weak, ds, n, K);
    /* WEAK ends in softmax already; the patch takes the softmax of its logits, the same */
    for (int64_t i = 0; i < n; i++) w[i * K + t] = (score[i] - lo) / (hi - lo);
    free(range);
    free(score);
    ts_model_free(mm);
    return w;
}

static void setup(void) {
    g_train = test_quadrant_dataset(NTRAIN, 1);
    g_testset = test_quadrant_dataset(NTEST, 2);
}

static void test_outputs_follow_the_rule(void) {
    ts_model *strong = train(STRONG, 3, 3), *weak = train(WEAK, 4, 1);
    if (!strong || !weak) goto out;
    /* another normalization than the strong model's: the patch maps it */
    ts_preprocess pp = {1, {0.25f}, {0.5f}, 0, 0};
    CHECK(ts_model_set_preprocess(g_ctx, weak, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_module *mod = NULL;
    CHECK(ts_module_from_model(g_ctx, strong, 2, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model *pm = NULL;
    ts_patch_config cfg;
    ts_patch_config_default(&cfg);
    cfg.weak_name = "weak.tsr";
    cfg.module_name = "class2.tsm";
    ts_patch_report rep;
    ts_status st = ts_patch(g_ctx, weak, 2, mod, g_train, &cfg, NULL, NULL, &pm, &rep);
    CHECK(st == TS_OK, "patch: %s", ts_ctx_error(g_ctx));
    if (st) {
        ts_module_free(mod);
        goto out;
    }
    CHECK(rep.renormalized == 1 && rep.range_samples == NTRAIN, "report: renorm %d, %lld samples", rep.renormalized,
          (long long)rep.range_samples);
    float lo, hi;
    float *want = by_rule(weak, mod, 2, g_testset, NTEST, &lo, &hi);
    CHECK_NEAR(rep.score_min, lo, 1e-5, 1e-5);
    CHECK_NEAR(rep.score_max, hi, 1e-5, 1e-5);
    float *got = outputs(pm, g_testset, NTEST, K);
    test_allclose("patched outputs", got, want, (size_t)NTEST * K, 1e-4, 1e-5);
    CHECK(ts_patch_target(pm) == 2 && ts_patch_target(weak) == -1 && ts_patch_target(strong) == -1,
          "ts_patch_target %d", ts_patch_target(pm));
    CHECK(!strcmp(ts_model_get_meta(pm, "patch.weak"), "weak.tsr") &&
              strstr(ts_model_get_meta(pm, "patch.module"), "file=class2.tsm;class=2;") &&
              !strcmp(ts_model_get_meta(pm, "arch"), "patched"),
          "metadata: %s / %s", ts_model_get_meta(pm, "patch.weak"), ts_model_get_meta(pm, "patch.module"));

    /* evaluation: the patched and the weak figures, counted here too */
    ts_patch_eval we, pe;
    st = ts_patch_evaluate(g_ctx, pm, g_testset, 64, &we, &pe);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *wout = outputs(weak, g_testset, NTEST, K);
    int64_t tp[2] = {0}, pred[2] = {0}, act = 0, orr[2] = {0}, others = 0;
    for (int i = 0; i < NTEST; i++) {
        const int y = g_testset->labels[i], p[2] = {argmax(wout + i * K, K), argmax(want + i * K, K)};
        act += y == 2;
        others += y != 2;
        for (int v = 0; v < 2; v++) {
            tp[v] += y == 2 && p[v] == 2;
            pred[v] += p[v] == 2;
            orr[v] += y != 2 && p[v] == y;
        }
    }
    CHECK(we.target_count == act && we.other_count == others && pe.target_count == act, "counts %lld %lld",
          (long long)we.target_count, (long long)we.other_count);
    const ts_patch_eval *e[2] = {&we, &pe};
    for (int v = 0; v < 2; v++) {
        CHECK_NEAR(e[v]->recall, (double)tp[v] / (double)act, 0, 1e-12);
        CHECK_NEAR(e[v]->precision, pred[v] ? (double)tp[v] / (double)pred[v] : 0, 0, 1e-12);
        CHECK_NEAR(e[v]->others, (double)orr[v] / (double)others, 0, 1e-12);
    }

    /* saved, reloaded, exported like any model */
    char path[512], onnx[512];
    snprintf(path, sizeof path, "%s/patched.tsr", g_tmp);
    snprintf(onnx, sizeof onnx, "%s/patched.onnx", g_tmp);
    CHECK(ts_model_save(g_ctx, pm, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model *back = NULL;
    CHECK(ts_model_load(g_ctx, path, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (back) {
        float *again = outputs(back, g_testset, NTEST, K);
        CHECK(!memcmp(again, got, sizeof(float) * NTEST * K), "reloaded outputs differ");
        CHECK(ts_patch_target(back) == 2, "reloaded target %d", ts_patch_target(back));
        free(again);
    }
    CHECK(ts_onnx_export(g_ctx, pm, onnx) == TS_OK, "export: %s", ts_ctx_error(g_ctx));
    {
        /* the ONNX file reads back to the same function (normalization is not in ONNX:
         * the weak model's is set on the import) */
        ts_model *im = NULL;
        CHECK(ts_onnx_import(g_ctx, onnx, NULL, &im) == TS_OK, "import: %s", ts_ctx_error(g_ctx));
        if (im) {
            ts_preprocess wp;
            CHECK(ts_model_get_preprocess(g_ctx, pm, &wp) == TS_OK && ts_model_set_preprocess(g_ctx, im, &wp) == TS_OK,
                  "%s", ts_ctx_error(g_ctx));
            float *io = outputs(im, g_testset, NTEST, K);
            test_allclose("ONNX round trip", io, got, (size_t)NTEST * K, 1e-5, 1e-6);
            free(io);
        }
        ts_model_free(im);
    }
    ts_model_free(back);

    /* the posterior rescaling: sigmoid(a s + b) in the target's column */
    ts_model *post = NULL;
    cfg.rescale = TS_PATCH_POSTERIOR;
    ts_patch_report prep;
    st = ts_patch(g_ctx, weak, 2, mod, g_train, &cfg, NULL, NULL, &post, &prep);
    CHECK(st == TS_OK && prep.a > 0, "posterior: %s (a %g)", ts_ctx_error(g_ctx), (double)prep.a);
    if (post) {
        ts_model *mm = NULL;
        CHECK(ts_module_model(g_ctx, mod, &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        float *s = outputs(mm, g_testset, NTEST, 1), *pw = outputs(weak, g_testset, NTEST, K);
        for (int i = 0; i < NTEST; i++) pw[i * K + 2] = 1.0f / (1.0f + expf(-(prep.a * s[i] + prep.b)));
        float *po = outputs(post, g_testset, NTEST, K);
        test_allclose("posterior outputs", po, pw, (size_t)NTEST * K, 1e-4, 1e-5);
        CHECK(!strcmp(ts_model_get_meta(post, "patch.rescale"), "posterior"), "meta");
        /* the prior: the mean posterior on the training data is near the class's share */
        float *st_ = outputs(mm, g_train, NTRAIN, 1);
        double mean = 0;
        int64_t pos = 0;
        for (int i = 0; i < NTRAIN; i++) {
            mean += 1.0 / (1.0 + exp(-((double)prep.a * st_[i] + prep.b)));
            pos += g_train->labels[i] == 2;
        }
        CHECK(fabs(mean / NTRAIN - (double)pos / NTRAIN) < 0.05, "mean posterior %.3f, class share %.3f", mean / NTRAIN,
              (double)pos / NTRAIN);
        free(st_);
        free(s);
        free(pw);
        free(po);
        ts_model_free(mm);
    }
    ts_model_free(post);
    free(wout);
    free(got);
    free(want);
    ts_model_free(pm);
    ts_module_free(mod);
out:
    ts_model_free(strong);
    ts_model_free(weak);
}

static void test_known_class_unchanged_and_blind_class_recovered(void) {
    ts_model *strong = train(STRONG, 5, 3);
    if (!strong) return;
    float *base = outputs(strong, g_testset, NTEST, K);
    int right = 0;
    for (int i = 0; i < NTEST; i++) right += argmax(base + i * K, K) == g_testset->labels[i];
    CHECK(right == NTEST, "the strong model is not perfect on the test images: %d of %d", right, NTEST);
    /* a class it knows perfectly, patched with its own module: nothing changes */
    ts_module *mod = NULL;
    CHECK(ts_module_from_model(g_ctx, strong, 1, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model *pm = NULL;
    CHECK(ts_patch(g_ctx, strong, 1, mod, g_train, NULL, NULL, NULL, &pm, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (pm) {
        float *p = outputs(pm, g_testset, NTEST, K);
        int same = 0;
        for (int i = 0; i < NTEST; i++) same += argmax(p + i * K, K) == argmax(base + i * K, K);
        CHECK(same == NTEST, "patched predictions differ on %d of %d", NTEST - same, NTEST);
        free(p);
    }
    ts_model_free(pm);

    /* a weak model blind to class 3 (its logit pushed far down) */
    ts_model *blind = train(WEAK, 6, 1);
    if (blind) {
        int t = ts_model_find_tensor(blind, "fc2.bias");
        ts_tensor_info ti;
        CHECK(t >= 0 && ts_model_tensor(blind, t, &ti) == TS_OK, "fc2.bias");
        if (t >= 0) {
            ti.data[3] = -1e4f;
            ts_model_params_changed(blind);
        }
        ts_module *m3 = NULL;
        CHECK(ts_module_from_model(g_ctx, strong, 3, &m3) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_model *fixed = NULL;
        CHECK(ts_patch(g_ctx, blind, 3, m3, g_train, NULL, NULL, NULL, &fixed, NULL) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        ts_patch_eval we, pe;
        if (fixed) {
            CHECK(ts_patch_evaluate(g_ctx, fixed, g_testset, 256, &we, &pe) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(we.recall == 0 && pe.recall > 0.5, "recall of the blind class: weak %.3f, patched %.3f", we.recall,
                  pe.recall);
            printf("note: blind class 3: recall %.3f -> %.3f, precision %.3f -> %.3f, others %.3f -> %.3f\n",
                   we.recall, pe.recall, we.precision, pe.precision, we.others, pe.others);
        }
        ts_model_free(fixed);
        ts_module_free(m3);
    }
    ts_model_free(blind);
    ts_module_free(mod);
    free(base);
    ts_model_free(strong);
}

static void test_refusals(void) {
    ts_model *strong = NULL, *weak = NULL, *other = NULL, *flat = NULL;
    CHECK(ts_model_from_arch(g_ctx, STRONG, "s.arch", NULL, 0, 7, &strong) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx, WEAK, "w.arch", NULL, 0, 8, &weak) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const ts_shape ten = {3, {1, 10, 10}};
    CHECK(ts_model_from_arch(g_ctx, "input shape=1x10x10 classes=4\nflatten name=f\ndense name=d out=classes\n",
                             "o.arch", &ten, 4, 9, &other) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx, WEAK, "z.arch", NULL, 0, 10, &flat) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!strong || !weak || !other || !flat) goto out;
    ts_module *mod = NULL, *mod10 = NULL, *modz = NULL;
    CHECK(ts_module_from_model(g_ctx, strong, 0, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_from_model(g_ctx, other, 0, &mod10) == TS_OK, "%s", ts_ctx_error(g_ctx));
    /* every weight zero: the same score for every input */
    ts_tensor_info ti;
    for (int t = 0; ts_model_tensor(flat, t, &ti) == TS_OK; t++) memset(ti.data, 0, sizeof(float) * (size_t)ti.numel);
    ts_model_params_changed(flat);
    CHECK(ts_module_from_model(g_ctx, flat, 0, &modz) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_patch_config cfg;
    ts_patch_config_default(&cfg);
    cfg.weak_name = "weak.tsr";
    cfg.module_name = "mod.tsm";
    ts_model *pm = NULL;
    ts_status st = ts_patch(g_ctx, weak, 4, mod, g_train, &cfg, NULL, NULL, &pm, NULL);
    CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "class 4 is out of range") &&
              strstr(ts_ctx_error(g_ctx), "weak.tsr"),
          "%s: %s", ts_status_name(st), ts_ctx_error(g_ctx));
    st = ts_patch(g_ctx, weak, -1, mod, g_train, &cfg, NULL, NULL, &pm, NULL);
    CHECK(st == TS_EINVAL, "class -1: %s", ts_status_name(st));
    st = ts_patch(g_ctx, weak, 0, mod10, g_train, &cfg, NULL, NULL, &pm, NULL);
    CHECK(st == TS_ESHAPE && strstr(ts_ctx_error(g_ctx), "mod.tsm takes 1x10x10") &&
              strstr(ts_ctx_error(g_ctx), "weak.tsr takes 1x8x8"),
          "%s: %s", ts_status_name(st), ts_ctx_error(g_ctx));
    st = ts_patch(g_ctx, weak, 0, modz, g_train, &cfg, NULL, NULL, &pm, NULL);
    CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "cannot be rescaled"), "%s: %s", ts_status_name(st),
          ts_ctx_error(g_ctx));
    cfg.batch = 0;
    st = ts_patch(g_ctx, weak, 0, mod, g_train, &cfg, NULL, NULL, &pm, NULL);
    CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "batch"), "%s: %s", ts_status_name(st), ts_ctx_error(g_ctx));
    CHECK(pm == NULL, "a refused patch left a model");
    ts_patch_eval a, b;
    st = ts_patch_evaluate(g_ctx, weak, g_testset, 64, &a, &b);
    CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "not a patched model"), "%s: %s", ts_status_name(st),
          ts_ctx_error(g_ctx));
    {
        /* a file claiming to be patched whose "patch.weak.softmax" has the wrong width
         * is no patched model: never read as one */
        ts_model *fake = NULL;
        CHECK(ts_model_from_arch(g_ctx,
                                 "input shape=1x8x8 classes=4\nflatten name=f\ndense name=d out=3\n"
                                 "softmax name=patch.weak.softmax\ndense name=o out=classes\n",
                                 "fake.arch", NULL, 0, 11, &fake) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        if (fake) {
            CHECK(ts_model_set_meta(g_ctx, fake, "patch.class", "1") == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(ts_patch_target(fake) == -1, "a 3-wide weak softmax in a 4-class model: target %d",
                  ts_patch_target(fake));
            st = ts_patch_evaluate(g_ctx, fake, g_testset, 64, &a, &b);
            CHECK(st == TS_EINVAL, "evaluating the fake: %s", ts_status_name(st));
        }
        ts_model_free(fake);
    }
    ts_module_free(mod);
    ts_module_free(mod10);
    ts_module_free(modz);
out:
    ts_model_free(strong);
    ts_model_free(weak);
    ts_model_free(other);
    ts_model_free(flat);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    ts_ctx_set_threads(g_ctx, 1);
    setup();
    RUN(test_outputs_follow_the_rule);
    RUN(test_known_class_unchanged_and_blind_class_recovered);
    RUN(test_refusals);
    test_free_dataset(g_train);
    test_free_dataset(g_testset);
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_patch");
}
