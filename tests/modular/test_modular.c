/* Modularity (src/modular, src/modular/module_file.c, the mask layer).
 *
 * A small CNN trained here on a Fashion-MNIST subset is decomposed into one module
 * per class, and the modules are checked against the model they came from: the
 * counts each module reports; each module answers its own class on the inputs the
 * model is sure of; a module's score equals the margin of the origin with its keep
 * bits applied, written out independently here; composing all of them (sharing
 * layers, or each with its own copy) votes like the model, and with own copies
 * output j is exactly module j's score; a subset composed in a shuffled order
 * predicts the argmax of the model's margins over those classes; a class replaced
 * by a module of a second model (another normalization) outputs exactly that
 * module's score; a composed model serves as an origin in turn; unmasked modules
 * reproduce the model. .tsm files round-trip bit-identically; truncated,
 * corrupted or inconsistent ones and files of the wrong kind are refused with the
 * file named. Re-tuning calibrates; decomposition is deterministic. Without the
 * dataset, the checks that need no training data still run: the mask layer, a
 * softmax-ended model, a residual network on synthetic images, hostile files. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h" /* the keep bits, for the independent check of a module's semantics */

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_modular_XXXXXX";

/* Model a trains on NTRAIN samples for 2 epochs (about 87% test accuracy, with
 * confident inputs of every class, shirts included); model b on the first
 * NTRAIN_B of them, so that its input normalization differs. */
enum { K = 10, NTRAIN = 10000, NTRAIN_B = 4000, NTEST = 1000, IN = 28 * 28, POSITIVES = 200 };

static const char *ARCH = "input     shape=1x28x28 classes=10\n"
                          "conv2d    name=conv1 out=8 kernel=3 padding=1\n"
                          "batchnorm name=bn1\n"
                          "relu      name=relu1\n"
                          "maxpool   name=pool1 kernel=2\n"
                          "conv2d    name=conv2 out=16 kernel=3 padding=1\n"
                          "relu      name=relu2\n"
                          "maxpool   name=pool2 kernel=2\n"
                          "flatten   name=flat\n"
                          "dense     name=fc1 out=32\n"
                          "relu      name=relu3\n"
                          "dense     name=fc2 out=classes\n";

/* What every data-dependent case works on, built once by test_setup. */
typedef struct fixture {
    int ready;                 /* 1 when everything below was built */
    ts_dataset *train, *test;  /* NTRAIN training and NTEST test samples */
    ts_dataset *train_b;       /* the first NTRAIN_B training samples */
    ts_model *a, *b;           /* trained from different seeds and data */
    float *x;                  /* (NTEST, 1, 28, 28) test inputs, normalized as a expects */
    float *x_b;                /* the same, normalized as b expects */
    float *logits;             /* (NTEST, K) of model a */
    int *pred;                 /* (NTEST) argmax of logits */
    uint8_t *confident;        /* (NTEST) a is right with softmax p > 0.9 */
    ts_module **mods;          /* K modules of a */
    int nmods;
    ts_module **mods_b;        /* class 3 of b */
    int nmods_b;
    float *score[K];           /* (NTEST) ts_module_model of mods[c] */
    float *score_b3;           /* (NTEST) ts_module_model of mods_b[0] */
    ts_decompose_config dcfg;
    int64_t progress_calls, progress_last_done, progress_last_total, progress_bad;
} fixture;

static fixture g;

/* ------------------------------------------------------------------ helpers */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* buf (PATH_LEN) = g_tmp/name */
enum { PATH_LEN = 512 };
static const char *tpath(char *buf, const char *name) {
    snprintf(buf, PATH_LEN, "%s/%s", g_tmp, name);
    return buf;
}

static int msg_has(const char *part) { return strstr(ts_ctx_error(g_ctx), part) != NULL; }

/* Status `want` and a message containing `part`. */
#define CHECK_FAIL(st, want, part)                                                                   \
    do {                                                                                             \
        ts_status st_ = (st);                                                                        \
        CHECK(st_ == (want), "status %s, expected %s: %s", ts_status_name(st_), ts_status_name(want), \
              ts_ctx_error(g_ctx));                                                                  \
        CHECK(msg_has(part), "message \"%s\" lacks \"%s\"", ts_ctx_error(g_ctx), (part));            \
    } while (0)

static int argmax(const float *row, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[best]) best = j;
    return best;
}

/* logit_c - mean of the other logits, in double */
static double margin(const float *row, int k, int c) {
    double sum = 0;
    for (int j = 0; j < k; j++) sum += row[j];
    return row[c] - (sum - row[c]) / (k - 1);
}

/* Outputs (NTEST, classes of m) of m on test inputs x; NULL on failure. */
static float *outputs_on(ts_model *m, const float *x) {
    int k = ts_model_classes(m);
    float *o = test_falloc((size_t)NTEST * (size_t)k);
    ts_status st = ts_model_predict(g_ctx, m, x, NTEST, o);
    CHECK(st == TS_OK, "predict: %s", ts_ctx_error(g_ctx));
    if (st) {
        free(o);
        return NULL;
    }
    return o;
}

/* ... on the test inputs normalized as model a (and every composed model here) expects */
static float *outputs(ts_model *m) { return outputs_on(m, g.x); }

static ts_model *compose(ts_module *const *mods, int k, double max_macs) {
    ts_compose_config cfg;
    ts_compose_config_default(&cfg);
    if (max_macs > 0) cfg.max_macs = max_macs;
    ts_model *m = NULL;
    ts_status st = ts_compose(g_ctx, mods, k, &cfg, &m);
    CHECK(st == TS_OK && m, "compose %d modules (max_macs %g): %s", k, cfg.max_macs, ts_ctx_error(g_ctx));
    return m;
}

/* The score of one module alone on test inputs x (NULL on failure). */
static float *module_scores_on(const ts_module *mod, const float *x) {
    ts_model *mm = NULL;
    ts_status st = ts_module_model(g_ctx, mod, &mm);
    CHECK(st == TS_OK, "module model: %s", ts_ctx_error(g_ctx));
    if (st) return NULL;
    CHECK(ts_model_classes(mm) == 1, "module model has %d outputs", ts_model_classes(mm));
    float *s = ts_model_classes(mm) == 1 ? outputs_on(mm, x) : NULL;
    ts_model_free(mm);
    return s;
}

static float *module_scores(const ts_module *mod) { return module_scores_on(mod, g.x); }

/* Column j of out (NTEST, k) against want (NTEST) within 1e-4 relative/absolute. */
static void check_column(const char *what, const float *out, int k, int j, const float *want) {
    float *col = test_falloc(NTEST);
    for (int i = 0; i < NTEST; i++) col[i] = out[(size_t)i * k + j];
    test_allclose(what, col, want, NTEST, 1e-4, 1e-4);
    free(col);
}

static int64_t model_macs(const ts_model *m) {
    int64_t t = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (ts_model_layer(m, i, &li) == TS_OK) t += li.macs;
    }
    return t;
}

/* "name0\nname1\n..." of the given classes of the fixture's dataset */
static void class_list(const int *classes, int k, char *out, size_t cap) {
    size_t at = 0;
    out[0] = 0;
    for (int j = 0; j < k; j++)
        at += (size_t)snprintf(out + at, cap - at, "%s%s", j ? "\n" : "", g.train->class_names[classes[j]]);
}

/* The id=... field of a composed.origin.N metadata value, or "" */
static void origin_id_of(const ts_model *m, int j, char *out, size_t cap) {
    char key[48];
    snprintf(key, sizeof key, "composed.origin.%d", j);
    const char *v = ts_model_get_meta(m, key);
    const char *id = v ? strstr(v, "id=") : NULL;
    snprintf(out, cap, "%s", id ? id + 3 : "");
}

static void set_class_meta(ts_model *m, const ts_dataset *ds, const char *origin) {
    char names[1024];
    int all[K];
    for (int c = 0; c < K; c++) all[c] = c;
    class_list(all, K, names, sizeof names);
    CHECK(ts_model_set_meta(g_ctx, m, "classes", names) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_set_meta(g_ctx, m, "dataset", ds->name) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_set_meta(g_ctx, m, "origin", origin) == TS_OK, "%s", ts_ctx_error(g_ctx));
}

static ts_model *train_model(uint64_t seed, const char *origin, const ts_dataset *train, int epochs) {
    ts_model *m = test_train_adam(g_ctx, ARCH, "modular.arch", train, seed, seed, epochs, 32, 2e-3f);
    if (m) set_class_meta(m, g.train, origin);
    return m;
}

static int on_progress(void *user, int64_t done, int64_t total) {
    fixture *f = user;
    if (done < f->progress_last_done || done > total || total != NTRAIN) f->progress_bad++;
    f->progress_calls++;
    f->progress_last_done = done;
    f->progress_last_total = total;
    return 0;
}

/* A dataset of `count` blank 8x8 images (px: count x 64 bytes) with labels 0. */
static ts_dataset tiny_dataset(uint8_t *px, int32_t *lab, int count) {
    ts_dataset ds;
    memset(&ds, 0, sizeof ds);
    memset(px, 0, (size_t)count * 64);
    memset(lab, 0, sizeof *lab * (size_t)count);
    ds.count = count;
    ds.channels = 1;
    ds.height = ds.width = 8;
    ds.classes = K;
    ds.images = px;
    ds.labels = lab;
    snprintf(ds.name, sizeof ds.name, "tiny8x8");
    return ds;
}

static int same_info(const ts_module_info *p, const ts_module_info *q, const char *what) {
    int same = p->class_index == q->class_index && !strcmp(p->class_name, q->class_name) &&
               !strcmp(p->dataset, q->dataset) && !strcmp(p->origin, q->origin) && p->origin_id == q->origin_id &&
               p->origin_classes == q->origin_classes && p->input.ndim == q->input.ndim &&
               !memcmp(p->input.dims, q->input.dims, sizeof p->input.dims) && p->positives == q->positives &&
               p->negatives == q->negatives && p->units == q->units && p->units_kept == q->units_kept &&
               p->conv_units == q->conv_units && p->conv_units_kept == q->conv_units_kept &&
               p->weights == q->weights && p->weights_kept == q->weights_kept && p->jaccard == q->jaccard &&
               p->scale == q->scale && p->shift == q->shift && p->threshold == q->threshold;
    CHECK(same,
          "%s: info differs: class %d/%d '%s'/'%s' origin '%s'/'%s' id %llx/%llx pos %d/%d neg %d/%d units %lld/%lld "
          "kept %lld/%lld weights kept %lld/%lld scale %g/%g shift %g/%g threshold %g/%g",
          what, p->class_index, q->class_index, p->class_name, q->class_name, p->origin, q->origin,
          (unsigned long long)p->origin_id, (unsigned long long)q->origin_id, p->positives, q->positives, p->negatives,
          q->negatives, (long long)p->units, (long long)q->units, (long long)p->units_kept, (long long)q->units_kept,
          (long long)p->weights_kept, (long long)q->weights_kept, (double)p->scale, (double)q->scale,
          (double)p->shift, (double)q->shift, (double)p->threshold, (double)q->threshold);
    return same;
}

/* ------------------------------------------------------------------ setup */

static void test_setup(void) {
    double t0 = now_s();
    ts_dataset *full = NULL, *full_test = NULL;
    ts_status st = ts_dataset_load(g_ctx, "fashion-mnist", TS_SPLIT_TRAIN, NULL, &full);
    if (st == TS_ENOTFOUND) {
        printf("note: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); "
               "decomposition checks skipped\n");
        return;
    }
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!st) st = ts_dataset_load(g_ctx, "fashion-mnist", TS_SPLIT_TEST, NULL, &full_test);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (st) goto out;
    {
        int64_t *idx = malloc(sizeof *idx * NTRAIN);
        if (!idx) exit(2);
        for (int i = 0; i < NTRAIN; i++) idx[i] = (int64_t)i * 5;
        CHECK(ts_dataset_subset(g_ctx, full, idx, NTRAIN, &g.train) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_dataset_subset(g_ctx, full, idx, NTRAIN_B, &g.train_b) == TS_OK, "%s", ts_ctx_error(g_ctx));
        for (int i = 0; i < NTEST; i++) idx[i] = (int64_t)i * 10;
        CHECK(ts_dataset_subset(g_ctx, full_test, idx, NTEST, &g.test) == TS_OK, "%s", ts_ctx_error(g_ctx));
        free(idx);
    }
    if (!g.train || !g.train_b || !g.test || !g.train->class_names) goto out;
    /* one thread: the machines that run the tests are shared, and OpenMP teams
     * slow down badly on oversubscribed cores */
    g.a = train_model(11, "model-a", g.train, 2);
    g.b = train_model(22, "model-b", g.train_b, 2);
    if (!g.a || !g.b) goto out;
    double t1 = now_s();

    /* the models normalize differently (statistics of different training sets), so
     * composing them needs the renormalization layer */
    ts_preprocess pa, pb;
    CHECK(ts_model_get_preprocess(g_ctx, g.a, &pa) == TS_OK && ts_model_get_preprocess(g_ctx, g.b, &pb) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(pa.channels == 1 && pb.channels == 1 && (pa.mean[0] != pb.mean[0] || pa.std[0] != pb.std[0]),
          "preprocess %g/%g vs %g/%g", (double)pa.mean[0], (double)pa.std[0], (double)pb.mean[0], (double)pb.std[0]);
    g.x = test_falloc((size_t)NTEST * IN);
    g.x_b = test_falloc((size_t)NTEST * IN);
    ts_preprocess_images(&pa, g.test->images, NTEST, 1, 28, 28, g.x);
    ts_preprocess_images(&pb, g.test->images, NTEST, 1, 28, 28, g.x_b);
    if (!(g.logits = outputs(g.a))) goto out;
    g.pred = calloc(NTEST, sizeof *g.pred);
    g.confident = calloc(NTEST, 1);
    if (!g.pred || !g.confident) exit(2);
    int right = 0, sure = 0;
    for (int i = 0; i < NTEST; i++) {
        const float *row = g.logits + (size_t)i * K;
        g.pred[i] = argmax(row, K);
        double z = 0;
        for (int j = 0; j < K; j++) z += exp((double)row[j] - row[g.pred[i]]);
        right += g.pred[i] == g.test->labels[i];
        g.confident[i] = g.pred[i] == g.test->labels[i] && 1.0 / z > 0.9;
        sure += g.confident[i];
    }
    CHECK(right > NTEST * 0.7, "model a: test accuracy %.3f", (double)right / NTEST);
    CHECK(sure > NTEST / 3, "model a: only %d confident test inputs", sure);

    ts_decompose_config_default(&g.dcfg);
    CHECK(g.dcfg.positives == 1000 && g.dcfg.confidence == 0.9f && g.dcfg.tangling == 1.0f && g.dcfg.seed == 0 &&
              g.dcfg.batch == 128,
          "decompose defaults");
    CHECK(g.dcfg.rule == TS_DECOMPOSE_RULE_EVERY && g.dcfg.bln_delta == 1.0f, "decompose defaults: rule, BLN");
    g.dcfg.positives = POSITIVES;
    /* without BLN backtracking, which drops units some inputs use: every module then
     * keeps what its confident positives and the negatives activate, and composing
     * them reproduces the model (BLN: tests/modular/test_activation_rule.c) */
    g.dcfg.bln_delta = 1.0f;
    st = ts_decompose(g_ctx, g.a, g.train, &g.dcfg, NULL, 0, on_progress, &g, &g.mods, &g.nmods);
    CHECK(st == TS_OK, "decompose a: %s", ts_ctx_error(g_ctx));
    if (st) goto out;
    const int three = 3;
    st = ts_decompose(g_ctx, g.b, g.train, &g.dcfg, &three, 1, NULL, NULL, &g.mods_b, &g.nmods_b);
    CHECK(st == TS_OK, "decompose b: %s", ts_ctx_error(g_ctx));
    if (st) goto out;
    CHECK(g.nmods == K && g.nmods_b == 1, "counts %d %d", g.nmods, g.nmods_b);
    if (g.nmods != K || g.nmods_b != 1) goto out;
    double t2 = now_s();
    for (int c = 0; c < K; c++)
        if (!(g.score[c] = module_scores(g.mods[c]))) goto out;
    if (!(g.score_b3 = module_scores_on(g.mods_b[0], g.x_b))) goto out;
    g.ready = 1;
    printf("note: setup: training %.2f s, decomposition %.2f s, module scores %.2f s; model a: test accuracy %.3f, "
           "%d confident\n",
           t1 - t0, t2 - t1, now_s() - t2, (double)right / NTEST, sure);
out:
    ts_dataset_free(full);
    ts_dataset_free(full_test);
}

static void fixture_free(void) {
    ts_modules_free(g.mods, g.nmods);
    ts_modules_free(g.mods_b, g.nmods_b);
    for (int c = 0; c < K; c++) free(g.score[c]);
    free(g.score_b3);
    free(g.x);
    free(g.x_b);
    free(g.logits);
    free(g.pred);
    free(g.confident);
    ts_model_free(g.a);
    ts_model_free(g.b);
    ts_dataset_free(g.train);
    ts_dataset_free(g.train_b);
    ts_dataset_free(g.test);
    memset(&g, 0, sizeof g);
}

/* ------------------------------------------------------------------ cases */

/* ts_module_mask: one mask per ReLU, its kernels' kept fractions adding up to the
 * units and kernels that ts_module_info counts. */
static void test_module_masks(void) {
    if (!g.ready) return;
    static const int channels[3] = {8, 16, 32};
    static const int64_t plane[3] = {28 * 28, 14 * 14, 1};
    for (int c = 0; c < K; c++) {
        ts_module_info in;
        ts_module_info_get(g.mods[c], &in);
        CHECK(ts_module_mask_count(g.mods[c]) == 3, "module %d: %d masks", c, ts_module_mask_count(g.mods[c]));
        int64_t units = 0, kernels = 0;
        for (int k = 0; k < 3 && k < ts_module_mask_count(g.mods[c]); k++) {
            ts_module_mask_info mi;
            float kept[32];
            CHECK(ts_module_mask(g_ctx, g.mods[c], k, &mi, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(mi.channels == channels[k] && mi.plane == plane[k] && mi.layer && mi.layer_index > 0,
                  "module %d mask %d: %d x %lld", c, k, mi.channels, (long long)mi.plane);
            CHECK(ts_module_mask(g_ctx, g.mods[c], k, &mi, kept) == TS_OK, "%s", ts_ctx_error(g_ctx));
            for (int j = 0; j < mi.channels; j++) {
                CHECK(kept[j] >= 0 && kept[j] <= 1, "kept %g", (double)kept[j]);
                units += (int64_t)llround(kept[j] * (double)mi.plane);
                if (k < 2) kernels += kept[j] > 0;
            }
        }
        CHECK(units == in.units_kept, "module %d: masks keep %lld units, info %lld", c, (long long)units,
              (long long)in.units_kept);
        CHECK(kernels == in.kernels_kept, "module %d: masks keep %lld kernels, info %lld", c, (long long)kernels,
              (long long)in.kernels_kept);
        CHECK(ts_module_mask(g_ctx, g.mods[c], 3, &(ts_module_mask_info){0}, NULL) == TS_EINVAL, "mask 3 accepted");
    }
}

static void test_decompose_info(void) {
    if (!g.ready) return;
    CHECK(g.progress_calls >= 2 && g.progress_bad == 0 && g.progress_last_done == NTRAIN &&
              g.progress_last_total == NTRAIN,
          "progress: %lld calls, %lld bad, last %lld/%lld", (long long)g.progress_calls, (long long)g.progress_bad,
          (long long)g.progress_last_done, (long long)g.progress_last_total);
    int pruned = 0;
    uint64_t id0 = 0;
    for (int c = 0; c < K; c++) {
        ts_module_info in;
        CHECK(ts_module_info_get(g.mods[c], &in) == TS_OK, "info %d", c);
        if (c == 0) id0 = in.origin_id;
        CHECK(in.class_index == c, "module %d: class %d", c, in.class_index);
        CHECK(!strcmp(in.class_name, g.train->class_names[c]), "module %d: class name '%s'", c, in.class_name);
        CHECK(!strcmp(in.dataset, "fashion-mnist") && !strcmp(in.origin, "model-a"),
              "module %d: dataset '%s' origin '%s'", c, in.dataset, in.origin);
        CHECK(in.origin_id == id0 && in.origin_id != 0, "module %d: origin id %llx vs %llx", c,
              (unsigned long long)in.origin_id, (unsigned long long)id0);
        CHECK(in.origin_classes == K && in.input.ndim == 3 && in.input.dims[0] == 1 && in.input.dims[1] == 28 &&
                  in.input.dims[2] == 28,
              "module %d: origin shape", c);
        CHECK(in.positives > 0 && in.positives <= POSITIVES, "module %d: %d positives", c, in.positives);
        /* tangling: ceil(200 / 9) = 23 drawn per other class */
        CHECK(in.negatives > 0 && in.negatives <= 9 * 23, "module %d: %d negatives", c, in.negatives);
        /* 8x28x28 + 16x14x14 + 32 ReLU units, the first two convolutional */
        CHECK(in.units == 8 * 28 * 28 + 16 * 14 * 14 + 32 && in.conv_units == 8 * 28 * 28 + 16 * 14 * 14,
              "module %d: units %lld conv %lld", c, (long long)in.units, (long long)in.conv_units);
        CHECK(in.units_kept > 0 && in.units_kept <= in.units && in.conv_units_kept <= in.conv_units &&
                  in.conv_units_kept <= in.units_kept,
              "module %d: kept %lld of %lld (conv %lld of %lld)", c, (long long)in.units_kept, (long long)in.units,
              (long long)in.conv_units_kept, (long long)in.conv_units);
        const int64_t weights = 8 * 9 + 8 + 16 * 8 * 9 + 16 + 32 * 784 + 32 + 10 * 32 + 10;
        CHECK(in.weights == weights, "module %d: %lld weights, want %lld", c, (long long)in.weights,
              (long long)weights);
        CHECK(in.weights_kept > 0 && in.weights_kept <= in.weights, "module %d: weights kept %lld of %lld", c,
              (long long)in.weights_kept, (long long)in.weights);
        CHECK(in.jaccard > 0 && in.jaccard <= 1 &&
                  fabs(in.jaccard - (double)in.weights_kept / (double)in.weights) < 1e-12,
              "module %d: jaccard %g", c, in.jaccard);
        CHECK(in.scale == 1.0f && in.shift == 0.0f, "module %d: calibration %g %g", c, (double)in.scale,
              (double)in.shift);
        CHECK(isfinite(in.threshold) && in.seconds >= 0, "module %d: threshold %g seconds %g", c,
              (double)in.threshold, in.seconds);
        pruned += in.units_kept < in.units;
    }
    CHECK(pruned > 0, "no module removed a single unit");
    /* a class subset is decomposed exactly as in the all-classes pass */
    ts_module_info ib, ia;
    ts_module_info_get(g.mods_b[0], &ib);
    CHECK(ib.class_index == 3 && ib.positives > 0 && !strcmp(ib.origin, "model-b") && ib.origin_id != id0,
          "b's module: class %d, %d positives, origin '%s'", ib.class_index, ib.positives, ib.origin);
    ts_module **one = NULL;
    int n1 = 0;
    const int cls[2] = {6, 1};
    CHECK(ts_decompose(g_ctx, g.a, g.train, &g.dcfg, cls, 2, NULL, NULL, &one, &n1) == TS_OK && n1 == 2, "%s",
          ts_ctx_error(g_ctx));
    for (int i = 0; i < n1; i++) {
        ts_module_info_get(one[i], &ib);
        ts_module_info_get(g.mods[cls[i]], &ia);
        ib.seconds = ia.seconds;
        same_info(&ib, &ia, "class subset vs all classes");
    }
    ts_modules_free(one, n1);
    /* refusals */
    one = NULL;
    n1 = -1;
    const int bad = K;
    CHECK_FAIL(ts_decompose(g_ctx, g.a, g.train, &g.dcfg, &bad, 1, NULL, NULL, &one, &n1), TS_EINVAL, "class 10");
    CHECK(one == NULL && n1 == 0, "outputs after a refusal");
    ts_decompose_config c = g.dcfg;
    c.positives = 0;
    CHECK_FAIL(ts_decompose(g_ctx, g.a, g.train, &c, NULL, 0, NULL, NULL, &one, &n1), TS_EINVAL, "positives");
    c = g.dcfg;
    c.confidence = 1.0f;
    CHECK_FAIL(ts_decompose(g_ctx, g.a, g.train, &c, NULL, 0, NULL, NULL, &one, &n1), TS_EINVAL, "confidence");
    /* a dataset of another image size */
    uint8_t px[64];
    int32_t lab[1];
    ts_dataset tiny = tiny_dataset(px, lab, 1);
    CHECK_FAIL(ts_decompose(g_ctx, g.a, &tiny, &g.dcfg, NULL, 0, NULL, NULL, &one, &n1), TS_ESHAPE, "tiny8x8");
    CHECK(one == NULL && n1 == 0, "outputs after a refusal");
}

/* Cancels from the progress callback. */
static int cancel_now(void *user, int64_t done, int64_t total) {
    (void)user;
    (void)total;
    return done > 0;
}

static void test_decompose_cancel(void) {
    if (!g.ready) return;
    ts_module **mods = NULL;
    int n = -1;
    CHECK_FAIL(ts_decompose(g_ctx, g.a, g.train, &g.dcfg, NULL, 0, cancel_now, NULL, &mods, &n), TS_ECANCELED,
               "cancel");
    CHECK(mods == NULL && n == 0, "outputs after a cancel");
}

static void test_module_answers_own_class(void) {
    if (!g.ready) return;
    double min_yes = 1, min_own = 1, min_rest = 1;
    for (int c = 0; c < K; c++) {
        ts_module_info in;
        ts_module_info_get(g.mods[c], &in);
        int mine = 0, yes = 0;
        int64_t tp = 0, tn = 0, np = 0, nn = 0;
        for (int i = 0; i < NTEST; i++) {
            const float s = g.score[c][i];
            if (g.confident[i] && g.test->labels[i] == c) {
                mine++;
                yes += s > in.threshold;
            }
            if (g.test->labels[i] == c) np++, tp += s > in.threshold;
            else nn++, tn += !(s > in.threshold);
        }
        CHECK(mine > 0, "class %d: no confident test input", c);
        CHECK(yes >= 0.95 * mine, "module %d says yes to %d of %d confident inputs of its class (threshold %g)", c, yes,
              mine, (double)in.threshold);
        double own = -1, rest = -1;
        ts_status st = ts_module_evaluate(g_ctx, g.mods[c], g.test, 100, &own, &rest);
        CHECK(st == TS_OK, "evaluate %d: %s", c, ts_ctx_error(g_ctx));
        CHECK(own > 0.8, "module %d: own-class rate %.3f", c, own);
        min_own = fmin(min_own, own);
        min_rest = fmin(min_rest, rest);
        if (mine) min_yes = fmin(min_yes, (double)yes / mine);
        CHECK(rest > 0.6, "module %d: rest rate %.3f", c, rest);
        /* the same counts from the module's model */
        CHECK(fabs(own - (double)tp / (double)np) <= 0.01 && fabs(rest - (double)tn / (double)nn) <= 0.01,
              "module %d: evaluate %.4f/%.4f vs module model %.4f/%.4f", c, own, rest, (double)tp / (double)np,
              (double)tn / (double)nn);
    }
    printf("note: modules: yes to >= %.3f of their confident inputs, own-class rate >= %.3f, rest >= %.3f\n", min_yes,
           min_own, min_rest);
    /* refusal: a dataset of another image size */
    uint8_t px[2 * 64];
    int32_t lab[2];
    ts_dataset ds = tiny_dataset(px, lab, 2);
    double own, rest;
    CHECK_FAIL(ts_module_evaluate(g_ctx, g.mods[0], &ds, 100, &own, &rest), TS_ESHAPE, "tiny8x8");
}

static void test_compose_all(void) {
    if (!g.ready) return;
    const double macs_a = (double)model_macs(g.a);
    int all[K];
    for (int c = 0; c < K; c++) all[c] = c;
    char names[1024];
    class_list(all, K, names, sizeof names);
    for (int v = 0; v < 2; v++) {
        const double max_macs = v ? 10.0 : 0; /* default (1.5), then each module its own copy */
        ts_model *cm = compose(g.mods, K, max_macs);
        if (!cm) continue;
        CHECK(ts_model_classes(cm) == K, "composed classes %d", ts_model_classes(cm));
        const char *meta = ts_model_get_meta(cm, "classes");
        CHECK(meta && !strcmp(meta, names), "classes metadata '%s'", meta ? meta : "(none)");
        const char *ds = ts_model_get_meta(cm, "dataset");
        CHECK(ds && !strcmp(ds, "fashion-mnist"), "dataset metadata '%s'", ds ? ds : "(none)");
        for (int j = 0; j < K; j++) {
            char key[48], want[32];
            snprintf(key, sizeof key, "composed.origin.%d", j);
            snprintf(want, sizeof want, "class=%d;", j);
            const char *o = ts_model_get_meta(cm, key);
            CHECK(o && strstr(o, want) && strstr(o, "origin=model-a"), "%s = '%s'", key, o ? o : "(none)");
        }
        ts_preprocess pc, pa;
        ts_model_get_preprocess(g_ctx, cm, &pc);
        ts_model_get_preprocess(g_ctx, g.a, &pa);
        CHECK(pc.mean[0] == pa.mean[0] && pc.std[0] == pa.std[0], "composed preprocessing %g/%g", (double)pc.mean[0],
              (double)pc.std[0]);
        const double macs = (double)model_macs(cm);
        if (v == 0) CHECK(macs <= 1.5 * macs_a, "default composition: %.0f MACs, origin %.0f", macs, macs_a);
        else CHECK(macs >= 9.0 * macs_a, "one copy per module: %.0f MACs, origin %.0f", macs, macs_a);
        float *out = outputs(cm);
        if (out) {
            int agree = 0;
            for (int i = 0; i < NTEST; i++) agree += argmax(out + (size_t)i * K, K) == g.pred[i];
            CHECK(agree >= 0.95 * NTEST, "max_macs %g: composed agrees with the model on %d of %d", v ? 10.0 : 1.5,
                  agree, NTEST);
            printf("note: composed (max_macs %g): agrees with the model on %d of %d, %.2fx its MACs\n", v ? 10.0 : 1.5,
                   agree, NTEST, macs / macs_a);
            /* own copies: output j is module j's score */
            if (v == 1)
                for (int j = 0; j < K; j++) {
                    char what[64];
                    snprintf(what, sizeof what, "max_macs 10: output %d vs module %d alone", j, j);
                    check_column(what, out, K, j, g.score[j]);
                }
            free(out);
        }
        ts_model_free(cm);
    }
    /* max_macs below 1 is refused */
    ts_compose_config bad = {0.5};
    ts_model *m = NULL;
    CHECK_FAIL(ts_compose(g_ctx, g.mods, K, &bad, &m), TS_EINVAL, "max_macs");
    CHECK(m == NULL, "model after a refusal");
}


/* tessera extract on model a: a two-class model that is much smaller than the origin,
 * about as accurate on those classes as the origin's argmax over their two logits,
 * labelled so that ts_composed_dataset finds its test samples, deterministic, and
 * saved and read back to the same outputs. */
static void test_extract(void) {
    if (!g.ready) return;
    ts_extract_config cfg;
    ts_extract_config_default(&cfg);
    CHECK(cfg.alpha == 0.25f && cfg.adapt == 1 && cfg.epochs == 8 && cfg.val_count == 1000 && cfg.max_loss == 0.0f,
          "extract defaults");
    cfg.epochs = 3;
    cfg.val_count = 300;
    cfg.seed = 3;
    /* refusals: too few classes, a class twice, a class the model lacks */
    ts_model *x = NULL;
    const int one[1] = {2}, twice[2] = {2, 2}, beyond[2] = {2, 10}, pair[2] = {2, 4};
    CHECK_FAIL(ts_extract(g_ctx, g.a, g.train, one, 1, &cfg, NULL, NULL, &x, NULL), TS_EINVAL, "2 to 10 classes");
    CHECK_FAIL(ts_extract(g_ctx, g.a, g.train, twice, 2, &cfg, NULL, NULL, &x, NULL), TS_EINVAL, "listed twice");
    CHECK_FAIL(ts_extract(g_ctx, g.a, g.train, beyond, 2, &cfg, NULL, NULL, &x, NULL), TS_EINVAL, "not a class");
    /* training data without one of the classes (class_names has fewer entries than the model's outputs) */
    {
        int64_t idx[400];
        int64_t m = 0;
        for (int64_t i = 0; i < g.train->count && m < 400; i++)
            if (g.train->labels[i] == 2) idx[m++] = i;
        ts_dataset *only2 = NULL;
        CHECK(ts_dataset_subset(g_ctx, g.train, idx, m, &only2) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (only2)
            CHECK_FAIL(ts_extract(g_ctx, g.a, only2, pair, 2, &cfg, NULL, NULL, &x, NULL), TS_EINVAL,
                       "no sample of class 4");
        ts_dataset_free(only2);
    }
    CHECK(x == NULL, "no model from a refusal");
    ts_extract_report rep;
    double t0 = now_s();
    ts_status st = ts_extract(g_ctx, g.a, g.train, pair, 2, &cfg, NULL, NULL, &x, &rep);
    CHECK(st == TS_OK && x, "extract 2,4: %s", ts_ctx_error(g_ctx));
    if (st) return;
    const double secs = now_s() - t0;
    CHECK(ts_model_classes(x) == 2, "%d outputs", ts_model_classes(x));
    CHECK(rep.params < rep.origin_params / 2 && rep.macs < rep.origin_macs && rep.units_kept < rep.units &&
              rep.params == ts_model_param_count(x) && rep.selected_epoch >= 1 && rep.selected_epoch <= 3 &&
              rep.val_count == 300,
          "extracted: %lld of %lld parameters, %lld of %lld MACs, %lld of %lld units, epoch %d, %lld validation",
          (long long)rep.params, (long long)rep.origin_params, (long long)rep.macs, (long long)rep.origin_macs,
          (long long)rep.units_kept, (long long)rep.units, rep.selected_epoch, (long long)rep.val_count);
    /* on the test inputs of the two classes: against the origin's argmax over their logits */
    float *ox = outputs(x);
    int n = 0, right_x = 0, right_o = 0;
    for (int i = 0; ox && i < NTEST; i++) {
        const int y = g.test->labels[i];
        if (y != pair[0] && y != pair[1]) continue;
        const float *lo = g.logits + (size_t)i * K;
        n++;
        right_o += (lo[pair[1]] > lo[pair[0]] ? pair[1] : pair[0]) == y;
        right_x += pair[argmax(ox + (size_t)i * 2, 2)] == y;
    }
    CHECK(n > 100 && right_x >= right_o - 5 * n / 100, "extracted: %d of %d right, the origin %d", right_x, n, right_o);
    /* metadata: the names and the evaluation set */
    const char *names = ts_model_get_meta(x, "classes");
    CHECK(names && !strcmp(names, "Pullover\nCoat"), "class names '%s'", names ? names : "(none)");
    ts_dataset *ev = NULL;
    st = ts_composed_dataset(g_ctx, x, TS_SPLIT_TEST, NULL, 0, &ev);
    CHECK(st == TS_OK && ev && ev->count == 2000 && ev->classes == 2, "composed dataset: %s, %lld samples",
          ts_ctx_error(g_ctx), ev ? (long long)ev->count : -1LL);
    /* the sub-task top-1 both models are scored with */
    double ax = -1, ao = -1;
    if (ev) {
        CHECK(ts_evaluate_classes(g_ctx, x, ev, NULL, 2, &ax) == TS_OK &&
                  ts_evaluate_classes(g_ctx, g.a, ev, pair, 2, &ao) == TS_OK,
              "evaluate classes: %s", ts_ctx_error(g_ctx));
        CHECK(ao > 0.5 && ax >= ao - 0.05, "on the 2000 test images: extracted %.4f, origin %.4f", ax, ao);
        CHECK_FAIL(ts_evaluate_classes(g_ctx, g.a, ev, beyond, 2, &ao), TS_EINVAL, "sub-task class 10");
        CHECK_FAIL(ts_evaluate_classes(g_ctx, x, ev, NULL, 1, &ao), TS_EFORMAT, "expected 0..0");
    }
    ts_dataset_free(ev);
    /* deterministic, and the same after a save and a load */
    ts_model *again = NULL;
    st = ts_extract(g_ctx, g.a, g.train, pair, 2, &cfg, NULL, NULL, &again, NULL);
    CHECK(st == TS_OK && again && ts_model_param_count(again) == ts_model_param_count(x), "again: %s",
          ts_ctx_error(g_ctx));
    float *oa = again ? outputs(again) : NULL;
    CHECK(ox && oa && !memcmp(ox, oa, sizeof(float) * NTEST * 2), "two runs give different outputs");
    char pbuf[PATH_LEN];
    const char *path = tpath(pbuf, "extracted.tsr");
    ts_model *back = NULL;
    st = ts_model_save(g_ctx, x, path);
    if (!st) st = ts_model_load(g_ctx, path, &back);
    CHECK(st == TS_OK, "save/load: %s", ts_ctx_error(g_ctx));
    float *ob = back ? outputs(back) : NULL;
    CHECK(ox && ob && !memcmp(ox, ob, sizeof(float) * NTEST * 2), "read back: outputs differ");
    printf("note: extract 2,4: %lld of %lld parameters, %.2f%% of the MACs, %d of %d right (origin %d), %.2f s\n",
           (long long)rep.params, (long long)rep.origin_params, 100.0 * (double)rep.macs / (double)rep.origin_macs,
           right_x, n, right_o, secs);
    free(ox);
    free(oa);
    free(ob);
    ts_model_free(x);
    ts_model_free(again);
    ts_model_free(back);
}

/* A composed model (classes 7, 2, 5, its own mask layers, outputs `out`) as an
 * origin: its unmasked module 0 alone scores the margin of its output 0, and its
 * modules next to one of model a, out of group order ([composed 0, a's 1,
 * composed 2]), keep their scores. */
static void recompose(const ts_model *cm, const float *out) {
    ts_module *g0 = NULL, *g2 = NULL;
    CHECK(ts_module_from_model(g_ctx, cm, 0, &g0) == TS_OK && ts_module_from_model(g_ctx, cm, 2, &g2) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    float *alone = g0 ? module_scores(g0) : NULL;
    if (alone) {
        float *want = test_falloc(NTEST);
        for (int i = 0; i < NTEST; i++) want[i] = (float)margin(out + (size_t)i * 3, 3, 0);
        test_allclose("module 0 of a composed model, alone, vs the margin of its output 0", alone, want, NTEST, 1e-4,
                      1e-4);
        free(want);
        free(alone);
    }
    ts_module *mix[3] = {g0, g.mods[1], g2};
    ts_model *m = g0 && g2 ? compose(mix, 3, 0) : NULL;
    float *o = m ? outputs(m) : NULL;
    if (o) {
        char names[256];
        const int cls[3] = {7, 1, 5};
        class_list(cls, 3, names, sizeof names);
        const char *meta = ts_model_get_meta(m, "classes");
        CHECK(meta && !strcmp(meta, names), "recomposed classes '%s', want '%s'", meta ? meta : "(none)", names);
        float *want0 = test_falloc(NTEST), *want2 = test_falloc(NTEST);
        for (int i = 0; i < NTEST; i++) {
            want0[i] = (float)margin(out + (size_t)i * 3, 3, 0);
            want2[i] = (float)margin(out + (size_t)i * 3, 3, 2);
        }
        check_column("recomposed: output 0 vs the composed model's margin of its output 0", o, 3, 0, want0);
        check_column("recomposed: output 1 vs a's module 1 alone", o, 3, 1, g.score[1]);
        check_column("recomposed: output 2 vs the composed model's margin of its output 2", o, 3, 2, want2);
        free(want0);
        free(want2);
    }
    free(o);
    ts_model_free(m);
    ts_module_free(g0);
    ts_module_free(g2);
}

static void test_compose_subset_shuffled(void) {
    if (!g.ready) return;
    const int cls[3] = {7, 2, 5};
    ts_module *mods[3] = {g.mods[7], g.mods[2], g.mods[5]};
    char names[256];
    class_list(cls, 3, names, sizeof names);
    for (int v = 0; v < 2; v++) {
        ts_model *cm = compose(mods, 3, v ? 3.0 : 0);
        if (!cm) continue;
        CHECK(ts_model_classes(cm) == 3, "classes %d", ts_model_classes(cm));
        const char *meta = ts_model_get_meta(cm, "classes");
        CHECK(meta && !strcmp(meta, names), "classes metadata '%s', want '%s'", meta ? meta : "(none)", names);
        for (int j = 0; j < 3; j++) {
            char key[48], want[32];
            snprintf(key, sizeof key, "composed.origin.%d", j);
            snprintf(want, sizeof want, "class=%d;", cls[j]);
            const char *o = ts_model_get_meta(cm, key);
            CHECK(o && strstr(o, want), "%s = '%s'", key, o ? o : "(none)");
        }
        float *out = outputs(cm);
        if (out) {
            int agree = 0;
            for (int i = 0; i < NTEST; i++) {
                const float *row = g.logits + (size_t)i * K;
                int best = 0;
                for (int j = 1; j < 3; j++)
                    if (margin(row, K, cls[j]) > margin(row, K, cls[best])) best = j;
                agree += argmax(out + (size_t)i * 3, 3) == best;
            }
            CHECK(agree >= 0.95 * NTEST, "classes 7,2,5 (max_macs %g): %d of %d agree with the model's margins",
                  v ? 3.0 : 1.5, agree, NTEST);
            if (v == 1) {
                for (int j = 0; j < 3; j++) {
                    char what[64];
                    snprintf(what, sizeof what, "classes 7,2,5: output %d vs module %d alone", j, cls[j]);
                    check_column(what, out, 3, j, g.score[cls[j]]);
                }
                recompose(cm, out);
                /* a composed model is a model: saved and loaded, masks included */
                char pb[PATH_LEN];
                const char *path = tpath(pb, "composed.tsr");
                ts_model *back = NULL;
                CHECK(ts_model_save(g_ctx, cm, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
                CHECK(ts_model_load(g_ctx, path, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
                float *again = back ? outputs(back) : NULL;
                if (again) CHECK(!memcmp(again, out, sizeof(float) * NTEST * 3), "composed model: outputs changed by a "
                                 "save and load");
                const char *bm = back ? ts_model_get_meta(back, "classes") : NULL;
                CHECK(bm && !strcmp(bm, names), "loaded classes '%s'", bm ? bm : "(none)");
                free(again);
                ts_model_free(back);
                unlink(path);
            }
            free(out);
        }
        ts_model_free(cm);
    }
    /* a single module composed is its module model */
    ts_model *one = compose(&mods[0], 1, 0);
    if (one) {
        float *out = outputs(one);
        if (out) test_allclose("one module composed vs module model", out, g.score[7], NTEST, 0, 0);
        free(out);
        ts_model_free(one);
    }
}

static void test_replace_class(void) {
    if (!g.ready) return;
    ts_module *mods[K];
    for (int c = 0; c < K; c++) mods[c] = g.mods[c];
    mods[3] = g.mods_b[0];
    for (int v = 0; v < 2; v++) {
        ts_model *cm = compose(mods, K, v ? 10.0 : 0);
        if (!cm) continue;
        CHECK(ts_model_classes(cm) == K, "classes %d", ts_model_classes(cm));
        char id0[64], id1[64], id3[64];
        origin_id_of(cm, 0, id0, sizeof id0);
        origin_id_of(cm, 1, id1, sizeof id1);
        origin_id_of(cm, 3, id3, sizeof id3);
        CHECK(id0[0] && id3[0] && strcmp(id0, id3) != 0 && !strcmp(id0, id1), "origin ids 0 '%s', 1 '%s', 3 '%s'", id0,
              id1, id3);
        const char *o3 = ts_model_get_meta(cm, "composed.origin.3");
        CHECK(o3 && strstr(o3, "origin=model-b") && strstr(o3, "class=3;"), "composed.origin.3 = '%s'",
              o3 ? o3 : "(none)");
        float *out = outputs(cm);
        if (out) {
            char what[80];
            /* b's module is the only one of its origin: exact whatever the sharing */
            snprintf(what, sizeof what, "max_macs %g: output 3 vs b's module 3 alone", v ? 10.0 : 1.5);
            check_column(what, out, K, 3, g.score_b3);
            if (v == 1)
                for (int j = 0; j < K; j++) {
                    if (j == 3) continue;
                    snprintf(what, sizeof what, "replaced, max_macs 10: output %d vs module %d alone", j, j);
                    check_column(what, out, K, j, g.score[j]);
                }
            free(out);
        }
        ts_model_free(cm);
    }
}

static void test_from_model(void) {
    if (!g.ready) return;
    ts_module *mods[K] = {0};
    for (int c = 0; c < K; c++) {
        CHECK(ts_module_from_model(g_ctx, g.a, c, &mods[c]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!mods[c]) goto done;
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(in.class_index == c && in.units_kept == in.units && in.weights_kept == in.weights && in.jaccard == 1.0 &&
                  in.threshold == 0.0f && in.scale == 1.0f && in.shift == 0.0f && in.positives == 0,
              "unmasked module %d: kept %lld/%lld weights %lld/%lld threshold %g", c, (long long)in.units_kept,
              (long long)in.units, (long long)in.weights_kept, (long long)in.weights, (double)in.threshold);
    }
    ts_module *bad = NULL;
    CHECK_FAIL(ts_module_from_model(g_ctx, g.a, K, &bad), TS_EINVAL, "class 10");
    CHECK(bad == NULL, "module after a refusal");
    { /* no mask: the default composition (shared layers) is exact */
        ts_model *cm = compose(mods, K, 0);
        float *out = cm ? outputs(cm) : NULL;
        if (out) {
            int same = 0, ties = 0;
            for (int i = 0; i < NTEST; i++) {
                const float *row = g.logits + (size_t)i * K;
                int p = argmax(out + (size_t)i * K, K);
                if (p == g.pred[i]) same++;
                else if (row[g.pred[i]] - row[p] < 1e-4f * (1 + fabsf(row[p]))) ties++; /* a rounding-level tie */
            }
            CHECK(same + ties == NTEST && ties <= 2,
                  "unmasked modules: %d of %d predictions as the model's (%d near-ties)", same, NTEST, ties);
            /* output j is the model's margin of class j */
            float *want = test_falloc((size_t)NTEST * K);
            for (int i = 0; i < NTEST; i++)
                for (int j = 0; j < K; j++) want[(size_t)i * K + j] = (float)margin(g.logits + (size_t)i * K, K, j);
            test_allclose("unmasked modules vs the model's margins", out, want, (size_t)NTEST * K, 1e-4, 1e-4);
            free(want);
        }
        free(out);
        ts_model_free(cm);
    }
done:
    for (int c = 0; c < K; c++) ts_module_free(mods[c]);
}

static void test_save_load(void) {
    if (!g.ready) return;
    char pbuf[PATH_LEN];
    const char *path = tpath(pbuf, "m4.tsm");
    CHECK(ts_module_save(g_ctx, g.mods[4], path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_module *back = NULL;
    CHECK(ts_module_load(g_ctx, path, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!back) return;
    ts_module_info p, q;
    ts_module_info_get(g.mods[4], &p);
    ts_module_info_get(back, &q);
    same_info(&q, &p, "loaded module");
    CHECK(q.seconds == p.seconds, "seconds %g vs %g", q.seconds, p.seconds);
    /* composed alone and with others: bit-identical outputs */
    ts_module *set_a[3] = {g.mods[1], g.mods[4], g.mods[8]}, *set_b[3] = {g.mods[1], back, g.mods[8]};
    for (int v = 0; v < 2; v++) {
        int k = v ? 3 : 1;
        ts_model *ma = compose(v ? set_a : &set_a[1], k, 0), *mb = compose(v ? set_b : &set_b[1], k, 0);
        float *oa = ma ? outputs(ma) : NULL, *ob = mb ? outputs(mb) : NULL;
        if (oa && ob) CHECK(!memcmp(oa, ob, sizeof(float) * (size_t)NTEST * (size_t)k), "%d module(s): outputs differ "
                            "after the round trip", k);
        free(oa);
        free(ob);
        ts_model_free(ma);
        ts_model_free(mb);
    }
    /* the loaded module is the same class of the same model as the original */
    ts_model *m = NULL;
    ts_module *twice[2] = {g.mods[4], back};
    CHECK_FAIL(ts_compose(g_ctx, twice, 2, NULL, &m), TS_EINVAL, "same class");
    ts_model_free(m);
    /* the origin name set on a module is saved */
    CHECK(ts_module_set_origin(g_ctx, back, "renamed.tsr") == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_save(g_ctx, back, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_module *again = NULL;
    CHECK(ts_module_load(g_ctx, path, &again) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (again) {
        ts_module_info_get(again, &q);
        CHECK(!strcmp(q.origin, "renamed.tsr"), "origin '%s'", q.origin);
        q.origin = p.origin;
        same_info(&q, &p, "renamed module");
    }
    ts_module_free(again);
    ts_module_free(back);
    unlink(path);
}

/* ---- hostile and mistaken files */

/* A module file with a MODL section whose fields the cases below edit. */
typedef struct modl_at {
    size_t sec;         /* offset of the MODL section's length field */
    size_t start, len;  /* payload */
    size_t cls, id, scale, nlayers, ch0, sizes, hash;
} modl_at;

static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int find_modl(const uint8_t *d, size_t n, modl_at *at) {
    if (n < 16 || memcmp(d, "TSRM", 4)) return 0;
    uint32_t nsec = get_u32(d + 12);
    size_t off = 16;
    for (uint32_t i = 0; i < nsec; i++) {
        if (off + 12 > n) return 0;
        uint64_t len = get_u64(d + off + 4);
        if (!memcmp(d + off, "MODL", 4)) {
            at->sec = off + 4;
            at->start = off + 12;
            at->len = (size_t)len;
            size_t p = at->start + 4; /* version */
            at->cls = p;
            p += 4;
            for (int s = 0; s < 3; s++) p += 4 + get_u32(d + p); /* class name, dataset, origin */
            at->id = p;
            p += 8;
            at->scale = p;
            p += 3 * 4 + 2 * 4 + 8;   /* scale, shift, threshold, positives, negatives, seconds */
            p += 4 + 4 + 8 + 8;       /* method, epoch, validation accuracies (version 2) */
            p += 4 + get_u32(d + p);  /* the origin's architecture */
            at->nlayers = p;
            p += 4;
            at->ch0 = p;              /* the input layer's channel count, then its kept bits */
            at->hash = at->start + at->len - 16;
            at->sizes = at->hash - 8 * 8; /* version 3: eight u64 sizes before the model hash */
            return at->ch0 + 8 <= at->sizes;
        }
        off += 12 + (size_t)len;
    }
    return 0;
}

/* Rewrites the MODL checksum (FNV-1a of the section's bytes before it) of a section
 * starting at `start` and `len` bytes long, so that an edited field reaches its own check. */
static void reseal(uint8_t *d, size_t start, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = start; i < start + len - 8; i++) h = (h ^ d[i]) * 0x100000001b3ull;
    for (int i = 0; i < 8; i++) d[start + len - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
}

/* Loads `d` (n bytes) written to a file; expects status `want` and `part` in the message. */
static void expect_refused(const char *what, const uint8_t *d, size_t n, ts_status want, const char *part) {
    char pbuf[PATH_LEN];
    const char *path = tpath(pbuf, "hostile.tsm");
    CHECK(test_write_file(path, d, n), "write %s", path);
    ts_module *mod = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_module_load(g_ctx, path, &mod);
    CHECK(st == want && mod == NULL, "%s: status %s, expected %s: %s", what, ts_status_name(st), ts_status_name(want),
          ts_ctx_error(g_ctx));
    CHECK(msg_has(path), "%s: message does not name the file: %s", what, ts_ctx_error(g_ctx));
    if (part) CHECK(msg_has(part), "%s: message \"%s\" lacks \"%s\"", what, ts_ctx_error(g_ctx), part);
    ts_module_free(mod);
    unlink(path);
}

static void test_refusals(void) {
    /* untrained models serve: these checks need no data */
    char mbuf[PATH_LEN], rbuf[PATH_LEN], sbuf[PATH_LEN];
    ts_model *m28 = NULL, *m32 = NULL;
    ts_shape s32 = {3, {1, 32, 32}};
    CHECK(ts_model_from_arch(g_ctx, ARCH, "modular.arch", NULL, 0, 5, &m28) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx, ARCH, "modular.arch", &s32, 0, 5, &m32) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_module *a = NULL, *b = NULL, *c = NULL;
    if (m28) CHECK(ts_module_from_model(g_ctx, m28, 2, &a) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m28) CHECK(ts_module_from_model(g_ctx, m28, 5, &c) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m32) CHECK(ts_module_from_model(g_ctx, m32, 2, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!a || !b || !c) goto done;
    ts_model *cm = NULL;
    /* different input shapes */
    ts_module *ab[2] = {a, b};
    CHECK_FAIL(ts_compose(g_ctx, ab, 2, NULL, &cm), TS_ESHAPE, "1x32x32");
    CHECK(msg_has("1x28x28"), "message: %s", ts_ctx_error(g_ctx));
    CHECK(cm == NULL, "model after a refusal");
    /* the same module twice, here with another between */
    ts_module *aca[3] = {a, c, a};
    CHECK_FAIL(ts_compose(g_ctx, aca, 3, NULL, &cm), TS_EINVAL, "same class");
    CHECK(msg_has("modules 0 and 2"), "message: %s", ts_ctx_error(g_ctx));
    CHECK(cm == NULL, "model after a refusal");
    ts_module *none[2] = {a, NULL};
    CHECK_FAIL(ts_compose(g_ctx, none, 2, NULL, &cm), TS_EINVAL, "NULL");
    CHECK_FAIL(ts_compose(g_ctx, none, 0, NULL, &cm), TS_EINVAL, "at least one");
    /* a missing file */
    ts_module *mod = NULL;
    const char *missing = tpath(mbuf, "no-such-module.tsm");
    CHECK_FAIL(ts_module_load(g_ctx, missing, &mod), TS_EIO, missing);
    CHECK(mod == NULL, "module after a refusal");
    /* a model file is not a module, and a module file is not a model */
    const char *tsr = tpath(rbuf, "plain.tsr"), *tsm = tpath(sbuf, "a.tsm");
    CHECK(ts_model_save(g_ctx, m28, tsr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_FAIL(ts_module_load(g_ctx, tsr, &mod), TS_EINVAL, "not a module");
    CHECK(msg_has(tsr) && mod == NULL, "message: %s", ts_ctx_error(g_ctx));
    CHECK(ts_module_save(g_ctx, a, tsm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model *m = NULL;
    CHECK_FAIL(ts_model_load(g_ctx, tsm, &m), TS_EINVAL, "module");
    CHECK(msg_has(tsm) && m == NULL, "message: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    CHECK(ts_module_load(g_ctx, tsm, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_module_free(mod);
    mod = NULL;

    size_t n = 0;
    uint8_t *d = test_read_file(tsm, &n);
    modl_at at;
    CHECK(d && find_modl(d, n, &at) && at.start + at.len == n, "cannot find the MODL section of %s", tsm);
    if (!d || !find_modl(d, n, &at) || at.start + at.len != n) {
        free(d);
        goto done;
    }
    uint8_t *e = malloc(n + 16);
    if (!e) exit(2);
    /* truncated anywhere: header, sections, tensor data, module section */
    const size_t cuts[] = {0, 3, 10, 15, 16, 40, n / 3, n / 2, at.sec, at.start, at.id + 4, n - 9, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "cut at byte %zu of %zu", cuts[i], n);
        expect_refused(what, d, cuts[i], TS_EFORMAT, NULL);
    }
    /* a flipped byte in the tensor data: the origin hash no longer matches */
    {
        ts_tensor_info ti;
        CHECK(ts_model_tensor(m28, 0, &ti) == TS_OK && ti.numel >= 4, "tensor 0");
        const uint8_t *hit = NULL;
        for (size_t o = 0; o + 16 <= n && !hit; o++)
            if (!memcmp(d + o, ti.data, 16)) hit = d + o;
        CHECK(hit != NULL, "tensor %s not found in the file", ti.name);
        if (hit) {
            memcpy(e, d, n);
            e[(hit - d) + 8] ^= 0x01; /* low mantissa byte of the third element */
            expect_refused("flipped tensor byte", e, n, TS_EFORMAT, "model hash");
        }
    }
    /* an inconsistent module section, its length kept right */
    memcpy(e, d, n);
    e[at.cls] = 99;
    reseal(e, at.start, at.len);
    expect_refused("class index 99", e, n, TS_EFORMAT, "class index 99");
    memcpy(e, d, n);
    e[at.hash] ^= 0x40;
    reseal(e, at.start, at.len);
    expect_refused("model hash", e, n, TS_EFORMAT, "model hash");
    memcpy(e, d, n);
    {
        float zero = 0.0f, nan = NAN;
        memcpy(e + at.scale, &zero, 4);
        reseal(e, at.start, at.len);
        expect_refused("scale 0", e, n, TS_EFORMAT, "calibration");
        memcpy(e, d, n);
        memcpy(e + at.scale + 4, &nan, 4);
        reseal(e, at.start, at.len);
        expect_refused("shift NaN", e, n, TS_EFORMAT, "calibration");
    }
    memcpy(e, d, n);
    e[at.nlayers] += 1;
    reseal(e, at.start, at.len);
    expect_refused("one layer too many", e, n, TS_EFORMAT, "layers");
    memcpy(e, d, n);
    e[at.ch0] ^= 0x01;
    expect_refused("channel count, checksum not updated", e, n, TS_EFORMAT, "checksum");
    reseal(e, at.start, at.len);
    expect_refused("channel count", e, n, TS_EFORMAT, "channels");
    /* one kept-channel bit flipped: only the checksum can tell */
    memcpy(e, d, n);
    e[at.sizes - 1] ^= 0x01;
    expect_refused("flipped kept bit", e, n, TS_EFORMAT, "checksum");
    /* sizes (version 3): a kept count above its total, a count past INT64_MAX */
    memcpy(e, d, n);
    {
        uint64_t v = get_u64(e + at.sizes) + 1; /* params_kept = the origin's params + 1 */
        memcpy(e + at.sizes + 8, &v, 8);
        reseal(e, at.start, at.len);
        expect_refused("more parameters kept than the origin has", e, n, TS_EFORMAT, "parameters kept");
        memcpy(e, d, n);
        v = UINT64_MAX;
        memcpy(e + at.sizes + 6 * 8, &v, 8);
        reseal(e, at.start, at.len);
        expect_refused("a size past INT64_MAX", e, n, TS_EFORMAT, "origin live parameters");
        memcpy(e, d, n);
        v = get_u64(e + at.sizes + 2 * 8) + 1; /* live MACs = the origin's MACs + 1 */
        memcpy(e + at.sizes + 7 * 8, &v, 8);
        reseal(e, at.start, at.len);
        expect_refused("more live MACs than the origin has", e, n, TS_EFORMAT, "origin live MACs");
    }
    /* the section shortened consistently: the model hash is missing */
    memcpy(e, d, n - 8);
    {
        uint64_t len = at.len - 8;
        memcpy(e + at.sec, &len, 8);
        reseal(e, at.start, (size_t)len);
        expect_refused("model hash missing", e, n - 8, TS_EFORMAT, "model hash");
        /* and lengthened: trailing bytes */
        memcpy(e, d, n);
        memset(e + n, 0, 4);
        len = at.len + 4;
        memcpy(e + at.sec, &len, 8);
        reseal(e, at.start, (size_t)len);
        expect_refused("trailing bytes", e, n + 4, TS_EFORMAT, "unexpected bytes");
    }
    /* bits past the last channel of a layer are ignored */
    memcpy(e, d, n);
    e[at.sizes - 1] |= 0xfc; /* fc2: 10 channels, the upper 6 bits of its second byte */
    reseal(e, at.start, at.len);
    {
        char hb[PATH_LEN];
        const char *hp = tpath(hb, "padded.tsm");
        CHECK(test_write_file(hp, e, n), "write %s", hp);
        CHECK(ts_module_load(g_ctx, hp, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (mod) {
            ts_module_info in;
            ts_module_info_get(mod, &in);
            CHECK(in.units_kept == in.units && in.kernels_kept == in.kernels, "padding bits counted: %lld of %lld kept",
                  (long long)in.units_kept, (long long)in.units);
        }
        ts_module_free(mod);
        mod = NULL;
        unlink(hp);
    }
    /* the untouched file still loads */
    CHECK(ts_module_load(g_ctx, tsm, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_module_free(mod);
    free(e);
    free(d);
done:
    unlink(tpath(mbuf, "plain.tsr"));
    unlink(tpath(mbuf, "a.tsm"));
    ts_module_free(a);
    ts_module_free(b);
    ts_module_free(c);
    ts_model_free(m28);
    ts_model_free(m32);
}

static void test_retune(void) {
    if (!g.ready) return;
    const int cls = 6; /* shirt: the class the model confuses most */
    int64_t *ip = malloc(sizeof(int64_t) * NTEST), *in = malloc(sizeof(int64_t) * NTEST);
    if (!ip || !in) exit(2);
    int64_t np = 0, nn = 0;
    for (int i = 0; i < NTEST; i++) {
        if (g.test->labels[i] == cls) ip[np++] = i;
        else in[nn++] = i;
    }
    ts_dataset *pos = NULL, *neg = NULL;
    CHECK(ts_dataset_subset(g_ctx, g.test, ip, np, &pos) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_dataset_subset(g_ctx, g.test, in, nn, &neg) == TS_OK, "%s", ts_ctx_error(g_ctx));
    char pbuf[PATH_LEN], pbuf2[PATH_LEN];
    const char *path = tpath(pbuf, "m6.tsm");
    ts_module *mod = NULL;
    CHECK(ts_module_save(g_ctx, g.mods[cls], path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_load(g_ctx, path, &mod) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!mod || !pos || !neg) goto done;
    ts_module_info before, after;
    ts_module_info_get(mod, &before);
    ts_status st = ts_module_retune(g_ctx, mod, pos, neg, 100);
    CHECK(st == TS_OK, "retune: %s", ts_ctx_error(g_ctx));
    ts_module_info_get(mod, &after);
    CHECK(after.scale > 0 && isfinite(after.scale) && isfinite(after.shift), "calibration %g %g",
          (double)after.scale, (double)after.shift);
    CHECK(after.threshold == 0.0f, "threshold %g after re-tuning", (double)after.threshold);
    CHECK(after.units_kept >= before.units_kept && after.weights_kept >= before.weights_kept,
          "units kept %lld -> %lld, weights %lld -> %lld", (long long)before.units_kept, (long long)after.units_kept,
          (long long)before.weights_kept, (long long)after.weights_kept);
    CHECK(after.negatives == before.negatives + nn && after.positives == before.positives, "negatives %d -> %d",
          before.negatives, after.negatives);
    CHECK(after.class_index == cls && after.origin_id == before.origin_id, "identity changed");
    /* The calibration is the class-balanced logistic fit of "is class 6" on the
     * margin over exactly these inputs (pos, neg), so its log loss is at most that
     * of the margin itself (scale 1, shift 0, where the fit starts), and answering
     * "score > 0" is about as good as the module's own threshold was. */
    double own = 0, rest = 0, own0 = 0, rest0 = 0;
    CHECK(ts_module_evaluate(g_ctx, g.mods[cls], g.test, 128, &own0, &rest0) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_evaluate(g_ctx, mod, g.test, 128, &own, &rest) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *cal = module_scores(mod);
    if (cal) {
        double loss_cal = 0, loss_raw = 0;
        for (int i = 0; i < NTEST; i++) {
            const int y = g.test->labels[i] == cls;
            const double w = 0.5 / (double)(y ? np : nn);
            const double z = cal[i], m = ((double)cal[i] - after.shift) / after.scale;
            /* -log p(y): softplus(-z) for a positive, softplus(z) for a negative */
            const double zc = y ? -z : z, zm = y ? -m : m;
            loss_cal += w * (fmax(zc, 0) + log1p(exp(-fabs(zc))));
            loss_raw += w * (fmax(zm, 0) + log1p(exp(-fabs(zm))));
        }
        CHECK(loss_cal <= loss_raw + 1e-6,
              "calibration (scale %g, shift %g) has balanced log loss %.4f, worse than the raw margin's %.4f",
              (double)after.scale, (double)after.shift, loss_cal, loss_raw);
    }
    CHECK((own + rest) / 2 >= (own0 + rest0) / 2 - 0.05,
          "re-tuned on these inputs: balanced accuracy %.3f (own %.3f rest %.3f), before %.3f (own %.3f rest %.3f)",
          (own + rest) / 2, own, rest, (own0 + rest0) / 2, own0, rest0);
    {
        const char *p2 = tpath(pbuf2, "m6-retuned.tsm");
        CHECK(ts_module_save(g_ctx, mod, p2) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_module *back = NULL;
        CHECK(ts_module_load(g_ctx, p2, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (back) {
            ts_module_info bi;
            ts_module_info_get(back, &bi);
            same_info(&bi, &after, "re-tuned module after a round trip");
            float *again = module_scores(back);
            if (cal && again) CHECK(!memcmp(cal, again, sizeof(float) * NTEST), "re-tuned scores after a round trip");
            free(again);
        }
        ts_module_free(back);
        unlink(p2);
    }
    free(cal);
    /* refusals */
    {
        uint8_t px[64];
        int32_t lab[1];
        ts_dataset tiny = tiny_dataset(px, lab, 1);
        CHECK_FAIL(ts_module_retune(g_ctx, mod, pos, &tiny, 100), TS_ESHAPE, "tiny8x8");
        ts_dataset empty = *neg;
        empty.count = 0;
        snprintf(empty.name, sizeof empty.name, "nothing");
        CHECK_FAIL(ts_module_retune(g_ctx, mod, &empty, neg, 100), TS_EINVAL, "nothing");
    }
done:
    ts_module_free(mod);
    unlink(path);
    ts_dataset_free(pos);
    ts_dataset_free(neg);
    free(ip);
    free(in);
}

/* The mask layer alone: out = in * keep, keep all ones when created. */
static void test_mask_layer(void) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, "input shape=1x2x3 classes=6\nflatten name=f\nmask name=m\n", "mask.arch", NULL, 0,
                             1, &m) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    int t = ts_model_find_tensor(m, "m.keep");
    ts_tensor_info ti;
    CHECK(t >= 0 && ts_model_tensor(m, t, &ti) == TS_OK && ti.numel == 6 && ti.role == TS_TENSOR_BUFFER,
          "m.keep: index %d", t);
    CHECK(ts_model_param_count(m) == 0, "a mask has %lld parameters", (long long)ts_model_param_count(m));
    if (t < 0) goto done;
    float x[12], y[12], want[12];
    test_fill_uniform(x, 12, 3, -1, 1);
    CHECK(ts_model_predict(g_ctx, m, x, 2, y) == TS_OK, "%s", ts_ctx_error(g_ctx));
    test_allclose("fresh mask", y, x, 12, 0, 0);
    const float keep[6] = {1, 0, 1, 1, 0, 1};
    memcpy(ti.data, keep, sizeof keep);
    for (int i = 0; i < 12; i++) want[i] = x[i] * keep[i % 6];
    CHECK(ts_model_predict(g_ctx, m, x, 2, y) == TS_OK, "%s", ts_ctx_error(g_ctx));
    test_allclose("mask 101101", y, want, 12, 0, 0);
    /* a mask takes exactly one input */
    ts_model *bad = NULL;
    CHECK_FAIL(ts_model_from_arch(g_ctx,
                                  "input shape=4 classes=4\nrelu name=a\nrelu name=b\nmask name=m in=a,b\n",
                                  "mask2.arch", NULL, 0, 1, &bad),
               TS_EFORMAT, "exactly one input");
    ts_model_free(bad);
done:
    ts_model_free(m);
}

/* A classifier ending in softmax: the module reads the logits before it. */
static void test_softmax_head(void) {
    size_t n = strlen(ARCH) + 64;
    char *text = malloc(n);
    if (!text) exit(2);
    snprintf(text, n, "%ssoftmax   name=prob\n", ARCH);
    ts_model *sm = NULL, *plain = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "softmax.arch", NULL, 0, 7, &sm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx, ARCH, "plain.arch", NULL, 0, 7, &plain) == TS_OK, "%s", ts_ctx_error(g_ctx));
    free(text);
    ts_module *mods[K] = {0};
    ts_model *cm = NULL;
    enum { N = 8 };
    float *x = test_falloc((size_t)N * IN), logits[N * K], out[N * K], want[N * K];
    if (!sm || !plain || ts_model_tensor_count(sm) != ts_model_tensor_count(plain)) goto done;
    for (int t = 0; t < ts_model_tensor_count(sm); t++) { /* the same weights, whatever the init order */
        ts_tensor_info a, b;
        ts_model_tensor(sm, t, &a);
        ts_model_tensor(plain, ts_model_find_tensor(plain, a.name), &b);
        memcpy(b.data, a.data, sizeof(float) * (size_t)a.numel);
    }
    for (int c = 0; c < K; c++)
        if (ts_module_from_model(g_ctx, sm, c, &mods[c]) != TS_OK) {
            CHECK(0, "%s", ts_ctx_error(g_ctx));
            goto done;
        }
    cm = compose(mods, K, 0);
    test_fill_uniform(x, (size_t)N * IN, 5, -1, 2);
    if (!cm || ts_model_predict(g_ctx, plain, x, N, logits) || ts_model_predict(g_ctx, cm, x, N, out)) {
        CHECK(0, "predict: %s", ts_ctx_error(g_ctx));
        goto done;
    }
    for (int i = 0; i < N; i++)
        for (int c = 0; c < K; c++) want[i * K + c] = (float)margin(logits + i * K, K, c);
    test_allclose("softmax model, composed: margins of the logits", out, want, N * K, 1e-4, 1e-5);
done:
    for (int c = 0; c < K; c++) ts_module_free(mods[c]);
    ts_model_free(cm);
    ts_model_free(sm);
    ts_model_free(plain);
    free(x);
}

/* A residual network (a skip connection around a block) trained on synthetic
 * data: modules of it composed with their own copies equal each module alone,
 * with the cut inside the residual block the composition still votes like the
 * model, and unmasked modules reproduce its margins at any cut. Needs no files. */
static void test_residual(void) {
    static const char *RES = "input     shape=1x8x8 classes=4\n"
                             "conv2d    name=c1 out=4 kernel=3 padding=1 bias=0\n"
                             "batchnorm name=b1\n"
                             "relu      name=r1\n"
                             "conv2d    name=c2 out=4 kernel=3 padding=1 bias=0\n"
                             "batchnorm name=b2\n"
                             "add       name=sum in=b2,r1\n"
                             "relu      name=r2\n"
                             "maxpool   name=pool kernel=4\n"
                             "flatten   name=flat\n"
                             "dense     name=fc out=classes\n";
    enum { NQ = 200, KQ = 4 };
    ts_dataset *train = test_quadrant_dataset(256, 31), *test = test_quadrant_dataset(NQ, 32);
    ts_model *m = NULL;
    ts_module **mods = NULL, *plain[KQ] = {0};
    int n = 0;
    float *x = test_falloc((size_t)NQ * 64), *logits = test_falloc((size_t)NQ * KQ);
    CHECK(ts_model_from_arch(g_ctx, RES, "res.arch", NULL, 0, 3, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) goto done;
    {
        ts_train_config cfg;
        ts_train_config_default(&cfg);
        cfg.epochs = 6;
        cfg.batch = 32;
        cfg.lr = 0.01f;
        ts_optim_config_default(&cfg.optim, TS_OPT_ADAM);
        cfg.seed = 4;
        ts_trainer *tr = NULL;
        CHECK(ts_trainer_create(g_ctx, m, train, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (tr) CHECK(ts_trainer_run(g_ctx, tr, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_trainer_free(tr);
    }
    ts_preprocess pp;
    CHECK(ts_model_get_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_preprocess_images(&pp, test->images, NQ, 1, 8, 8, x);
    CHECK(ts_model_predict(g_ctx, m, x, NQ, logits) == TS_OK, "%s", ts_ctx_error(g_ctx));
    int right = 0;
    for (int i = 0; i < NQ; i++) right += argmax(logits + i * KQ, KQ) == test->labels[i];
    CHECK(right >= 0.9 * NQ, "residual model: test accuracy %.3f", (double)right / NQ);
    ts_decompose_config dc;
    ts_decompose_config_default(&dc);
    dc.positives = 30;
    CHECK(ts_decompose(g_ctx, m, train, &dc, NULL, 0, NULL, NULL, &mods, &n) == TS_OK && n == KQ, "%s",
          ts_ctx_error(g_ctx));
    if (n != KQ) goto done;
    float *alone[KQ] = {0};
    int pruned = 0;
    for (int c = 0; c < KQ; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(in.positives > 0 && in.units == 2 * 4 * 64, "residual module %d: %d positives, %lld units", c,
              in.positives, (long long)in.units);
        pruned += in.units_kept < in.units;
        ts_model *mm = NULL;
        CHECK(ts_module_model(g_ctx, mods[c], &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        alone[c] = test_falloc(NQ);
        if (mm) CHECK(ts_model_predict(g_ctx, mm, x, NQ, alone[c]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_model_free(mm);
    }
    CHECK(pruned > 0, "no residual module removed a unit");
    /* 4 copies; the cut after c2 (2.5x: the convolutions shared, the add and r2 per module); all shared */
    const double budgets[3] = {4.0, 2.5, 1.0};
    for (int v = 0; v < 3; v++) {
        ts_compose_config cc = {budgets[v]};
        ts_model *cm = NULL;
        float out[NQ * KQ];
        CHECK(ts_compose(g_ctx, mods, KQ, &cc, &cm) == TS_OK, "max_macs %g: %s", budgets[v], ts_ctx_error(g_ctx));
        if (!cm) continue;
        CHECK(ts_model_predict(g_ctx, cm, x, NQ, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        int agree = 0;
        for (int i = 0; i < NQ; i++) agree += argmax(out + i * KQ, KQ) == argmax(logits + i * KQ, KQ);
        CHECK(agree >= 0.95 * NQ, "residual, max_macs %g: %d of %d agree with the model", budgets[v], agree, NQ);
        if (v == 0)
            for (int c = 0; c < KQ; c++) {
                float col[NQ];
                for (int i = 0; i < NQ; i++) col[i] = out[i * KQ + c];
                test_allclose("residual, own copies: output vs module alone", col, alone[c], NQ, 1e-4, 1e-4);
            }
        ts_model_free(cm);
    }
    for (int c = 0; c < KQ; c++) free(alone[c]);
    /* unmasked: the model's margins at every cut */
    for (int c = 0; c < KQ; c++)
        if (ts_module_from_model(g_ctx, m, c, &plain[c]) != TS_OK) {
            CHECK(0, "%s", ts_ctx_error(g_ctx));
            goto done;
        }
    for (int v = 0; v < 3; v++) {
        ts_compose_config cc = {budgets[v]};
        ts_model *cm = NULL;
        float out[NQ * KQ], want[NQ * KQ];
        CHECK(ts_compose(g_ctx, plain, KQ, &cc, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!cm) continue;
        CHECK(ts_model_predict(g_ctx, cm, x, NQ, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        for (int i = 0; i < NQ; i++)
            for (int c = 0; c < KQ; c++) want[i * KQ + c] = (float)margin(logits + i * KQ, KQ, c);
        test_allclose("residual, unmasked modules vs margins", out, want, NQ * KQ, 1e-4, 1e-4);
        ts_model_free(cm);
    }
done:
    ts_modules_free(mods, n);
    for (int c = 0; c < KQ; c++) ts_module_free(plain[c]);
    ts_model_free(m);
    free(x);
    free(logits);
    test_free_dataset(train);
    test_free_dataset(test);
}

/* A module's meaning written out independently of compose.c: the origin's text
 * with a mask layer after every ReLU holding the module's keep bits, and the
 * margin logit_c - mean of the others computed here. */
static void test_module_semantics(void) {
    if (!g.ready) return;
    const int classes[3] = {0, 6, 9};
    for (int q = 0; q < 3; q++) {
        const int c = classes[q];
        const ts_module *mod = g.mods[c];
        char text[2048];
        size_t at = 0;
        for (const char *line = ARCH; *line;) {
            const char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line + 1) : strlen(line);
            at += (size_t)snprintf(text + at, sizeof text - at, "%.*s", (int)len, line);
            if (!strncmp(line, "relu ", 5)) {
                const char *nm = strstr(line, "name=") + 5;
                at += (size_t)snprintf(text + at, sizeof text - at, "mask name=%.*s.m\n", (int)strcspn(nm, " \n"), nm);
            }
            line += len;
        }
        ts_model *om = NULL;
        CHECK(ts_model_from_arch(g_ctx, text, "masked.arch", NULL, 0, 1, &om) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!om) continue;
        for (int t = 0; t < ts_model_tensor_count(g.a); t++) {
            ts_tensor_info src, dst;
            ts_model_tensor(g.a, t, &src);
            int d = ts_model_find_tensor(om, src.name);
            CHECK(d >= 0, "%s missing", src.name);
            if (d < 0) continue;
            ts_model_tensor(om, d, &dst);
            memcpy(dst.data, src.data, sizeof(float) * (size_t)src.numel);
        }
        CHECK(mod->nmasks == 3, "module %d: %d masks", c, mod->nmasks);
        int64_t kept = 0;
        for (int k = 0; k < mod->nmasks; k++) {
            const module_mask *mk = &mod->masks[k];
            char name[128];
            snprintf(name, sizeof name, "%s.m.keep", mod->origin->layers[mk->layer].name);
            int d = ts_model_find_tensor(om, name);
            ts_tensor_info ti;
            CHECK(d >= 0 && ts_model_tensor(om, d, &ti) == TS_OK && ti.numel == mk->units, "%s", name);
            if (d < 0) continue;
            for (int64_t u = 0; u < mk->units; u++) kept += ti.data[u] = (float)mask_get(mk, u);
        }
        ts_module_info in;
        ts_module_info_get(mod, &in);
        CHECK(kept == in.units_kept, "module %d: %lld bits set, info says %lld kept", c, (long long)kept,
              (long long)in.units_kept);
        float *lg = outputs(om);
        if (lg) {
            float *want = test_falloc(NTEST);
            for (int i = 0; i < NTEST; i++) want[i] = (float)margin(lg + (size_t)i * K, K, c);
            char what[64];
            snprintf(what, sizeof what, "module %d vs the masked origin's margin", c);
            test_allclose(what, g.score[c], want, NTEST, 1e-4, 1e-4);
            free(want);
            free(lg);
        }
        ts_model_free(om);
    }
}

/* --method grad on model a: learned kernel masks keep fewer kernels than the activation
 * method's modules; all classes' modules composed on a shared trunk stay within 2
 * points of the origin on the test inputs, and as separate copies within 8. The copies
 * compose each module's own head, and one module that claims too much costs several
 * points: over seeds 1-6 they came 1.2-3.6 points below the origin (1.5 at this seed),
 * and 6.6 at this seed on a model a that differed from this one by float rounding in
 * training (its class-6 module took 160 of the 1,000 inputs), while the trunk came
 * within 0.9 every time. */
static void test_decompose_grad(void) {
    if (!g.ready) return;
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    cfg.method = TS_DECOMPOSE_GRAD;
    cfg.epochs = 3;
    cfg.epoch_samples = 3000;
    cfg.val_count = 1000;
    cfg.lr = 0.05f;
    cfg.alpha = 0.1f; /* pinned: the default may be retuned */
    cfg.seed = 5;
    ts_module **mods = NULL;
    int n = 0;
    double t0 = now_s();
    ts_status st = ts_decompose(g_ctx, g.a, g.train, &cfg, NULL, 0, NULL, NULL, &mods, &n);
    CHECK(st == TS_OK && n == K, "decompose --method grad: %s", ts_ctx_error(g_ctx));
    if (st) return;
    int64_t kg = 0, ka = 0, kall = 0;
    for (int c = 0; c < K; c++) {
        ts_module_info in, ia;
        ts_module_info_get(mods[c], &in);
        ts_module_info_get(g.mods[c], &ia);
        CHECK(in.method == TS_DECOMPOSE_GRAD && in.kernels == 24 && in.selected_epoch >= 1 && in.selected_epoch <= 3,
              "class %d: method %d, %lld kernels, epoch %d", c, (int)in.method, (long long)in.kernels,
              in.selected_epoch);
        kg += in.kernels_kept;
        ka += ia.kernels_kept;
        kall += in.kernels;
    }
    CHECK(kg < ka, "grad modules keep %lld of %lld kernels, activation modules %lld", (long long)kg, (long long)kall,
          (long long)ka);
    /* each module its own copy (the modules' exact semantics), and one shared trunk
     * keeping the union of their kernels (the origin's MACs at most) */
    int right[2] = {0, 0}, right_o = 0;
    for (int i = 0; i < NTEST; i++) right_o += g.pred[i] == g.test->labels[i];
    for (int v = 0; v < 2; v++) {
        ts_model *cm = compose(mods, K, v ? 1.0 : (double)K);
        float *out = cm ? outputs(cm) : NULL;
        for (int i = 0; out && i < NTEST; i++) right[v] += argmax(out + (size_t)i * K, K) == g.test->labels[i];
        CHECK(out && right[v] >= right_o - (v ? 2 : 8) * NTEST / 100, "composed grad modules (%s): %d of %d right, the origin %d",
              v ? "shared trunk" : "copies", right[v], NTEST, right_o);
        free(out);
        ts_model_free(cm);
    }
    /* physically sliced files: smaller than the origin's, and read back to the same modules */
    {
        char pbuf[PATH_LEN], obuf[PATH_LEN];
        const char *opath = tpath(obuf, "origin-a.tsr");
        CHECK(ts_model_save(g_ctx, g.a, opath) == TS_OK, "%s", ts_ctx_error(g_ctx));
        struct stat so, sm;
        CHECK(stat(opath, &so) == 0, "stat %s", opath);
        ts_module *back[K] = {0};
        int64_t biggest = 0;
        for (int c = 0; c < K; c++) {
            char name[32];
            snprintf(name, sizeof name, "grad%d.tsm", c);
            const char *path = tpath(pbuf, name);
            CHECK(ts_module_save(g_ctx, mods[c], path) == TS_OK, "%s", ts_ctx_error(g_ctx));
            if (stat(path, &sm) == 0 && sm.st_size > biggest) biggest = sm.st_size;
            CHECK(ts_module_load(g_ctx, path, &back[c]) == TS_OK, "%s", ts_ctx_error(g_ctx));
            unlink(path);
        }
        unlink(opath);
        CHECK(biggest < so.st_size, "largest grad module file %lld bytes, the origin's %lld", (long long)biggest,
              (long long)so.st_size);
        ts_model *ca = compose(mods, K, (double)K), *cb = back[K - 1] ? compose(back, K, (double)K) : NULL;
        float *oa = ca ? outputs(ca) : NULL, *ob = cb ? outputs(cb) : NULL;
        double worst = 0;
        for (size_t i = 0; oa && ob && i < (size_t)NTEST * K; i++) {
            double d = fabs((double)oa[i] - (double)ob[i]);
            if (d > worst) worst = d;
        }
        CHECK(oa && ob && worst < 1e-4, "grad modules read back from sliced files: outputs differ by %g", worst);
        printf("  grad module files: largest %lld bytes, the origin %lld; read back: outputs within %g\n",
               (long long)biggest, (long long)so.st_size, worst);
        free(oa);
        free(ob);
        ts_model_free(ca);
        ts_model_free(cb);
        for (int c = 0; c < K; c++) ts_module_free(back[c]);
    }
    printf("  grad: %lld of %lld kernels kept (activation: %lld); composed %.1f%% (shared trunk %.1f%%) vs origin "
           "%.1f%%; %.1fs\n",
           (long long)kg, (long long)kall, (long long)ka, 100.0 * right[0] / NTEST, 100.0 * right[1] / NTEST,
           100.0 * right_o / NTEST, now_s() - t0);
    ts_modules_free(mods, n);
}

static void test_determinism(void) {
    if (!g.ready) return;
    ts_module **again = NULL;
    int n = 0;
    ts_status st = ts_decompose(g_ctx, g.a, g.train, &g.dcfg, NULL, 0, NULL, NULL, &again, &n);
    CHECK(st == TS_OK && n == K, "%s", ts_ctx_error(g_ctx));
    if (st || n != K) goto done;
    for (int c = 0; c < K; c++) {
        ts_module_info p, q;
        ts_module_info_get(g.mods[c], &p);
        ts_module_info_get(again[c], &q);
        q.seconds = p.seconds;
        same_info(&q, &p, "second decomposition");
    }
    /* every mask, in the module files (but for the wall time they record) */
    for (int c = 0; c < K; c++) {
        char b1[PATH_LEN], b2[PATH_LEN];
        const char *p1 = tpath(b1, "d1.tsm"), *p2 = tpath(b2, "d2.tsm");
        size_t n1 = 0, n2 = 0;
        CHECK(ts_module_save(g_ctx, g.mods[c], p1) == TS_OK && ts_module_save(g_ctx, again[c], p2) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        uint8_t *d1 = test_read_file(p1, &n1), *d2 = test_read_file(p2, &n2);
        modl_at at;
        if (d1 && d2 && n1 == n2 && find_modl(d1, n1, &at)) {
            size_t secs = at.scale + 3 * 4 + 2 * 4; /* the f64 after the calibration and the counts */
            memset(d1 + secs, 0, 8);
            memset(d2 + secs, 0, 8);
            memset(d1 + at.start + at.len - 8, 0, 8); /* the checksum covers the time */
            memset(d2 + at.start + at.len - 8, 0, 8);
            CHECK(!memcmp(d1, d2, n1), "module %d: files differ beyond the recorded time", c);
        } else {
            CHECK(0, "module %d: files of %zu and %zu bytes", c, n1, n2);
        }
        free(d1);
        free(d2);
        unlink(p1);
        unlink(p2);
    }
    /* and the composed outputs */
    ts_model *m1 = compose(g.mods, K, 0), *m2 = compose(again, K, 0);
    float *o1 = m1 ? outputs(m1) : NULL, *o2 = m2 ? outputs(m2) : NULL;
    if (o1 && o2) CHECK(!memcmp(o1, o2, sizeof(float) * NTEST * K), "composed outputs differ");
    free(o1);
    free(o2);
    ts_model_free(m1);
    ts_model_free(m2);
done:
    ts_modules_free(again, n);
}

/* A model whose logits overflow (finite but huge weights, which files may hold):
 * decomposition and re-tuning still finish, with finite thresholds and calibration. */
static void test_overflowing_model(void) {
    static const char *TXT = "input shape=1x8x8 classes=4\n"
                             "conv2d name=c out=4 kernel=3 padding=1\n"
                             "relu name=r\n"
                             "flatten name=f\n"
                             "dense name=fc out=classes\n";
    ts_model *m = NULL;
    ts_dataset *ds = test_quadrant_dataset(400, 3);
    ts_module **mods = NULL;
    int n = 0;
    CHECK(ts_model_from_arch(g_ctx, TXT, "overflow.arch", NULL, 0, 5, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) goto done;
    int t = ts_model_find_tensor(m, "fc.weight");
    ts_tensor_info ti;
    CHECK(t >= 0 && ts_model_tensor(m, t, &ti) == TS_OK, "fc.weight");
    /* rows 0, 1 push their logits to +inf, rows 2, 3 to -inf: margins are NaN */
    for (int64_t i = 0; t >= 0 && i < ti.numel; i++) ti.data[i] = i < ti.numel / 2 ? 1e38f : -1e38f;
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    cfg.positives = 20;
    cfg.confidence = 0.0f;
    ts_status st = ts_decompose(g_ctx, m, ds, &cfg, NULL, 0, NULL, NULL, &mods, &n);
    CHECK(st == TS_OK && n == 4, "decompose: %s", ts_ctx_error(g_ctx));
    for (int c = 0; c < n; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(isfinite(in.threshold), "module %d threshold %g", c, (double)in.threshold);
        st = ts_module_retune(g_ctx, mods[c], ds, ds, 64);
        ts_module_info_get(mods[c], &in);
        CHECK(st == TS_OK && isfinite(in.scale) && in.scale > 0 && isfinite(in.shift), "retune %d: %s (%g, %g)", c,
              ts_ctx_error(g_ctx), (double)in.scale, (double)in.shift);
    }
done:
    ts_modules_free(mods, n);
    test_free_dataset(ds);
    ts_model_free(m);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    double t0 = now_s();
    RUN(test_mask_layer);
    RUN(test_softmax_head);
    RUN(test_refusals);
    RUN(test_residual);
    RUN(test_overflowing_model);
    RUN(test_setup);
    RUN(test_decompose_info);
    RUN(test_module_masks);
    RUN(test_decompose_cancel);
    RUN(test_module_answers_own_class);
    RUN(test_module_semantics);
    RUN(test_compose_all);
    RUN(test_decompose_grad);
    RUN(test_extract);
    RUN(test_compose_subset_shuffled);
    RUN(test_replace_class);
    RUN(test_from_model);
    RUN(test_save_load);
    RUN(test_retune);
    RUN(test_determinism);
    printf("note: %.2f s in all\n", now_s() - t0);
    fixture_free();
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_modular");
}
