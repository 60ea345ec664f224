/* Decomposing an encoder-decoder translator into one module per target language
 * (ts_decompose_text on a set read both ways; src/modular/decompose_translator.c).
 *
 * A small pairs file in two made-up languages is written here: "lat" sentences of
 * 2..5 letters a..h, each paired with "alt", the sentence reversed with every letter
 * mapped to p..w. Read both ways, one model learns both directions, a tag word
 * naming the language to write. Then: each module cuts decoder units; its sliced
 * model computes what the origin computes with those units zeroed (the encoder
 * permuted and its state cropped); each module translates into its language with at
 * least 0.8 of the model's BLEU (the figures are printed); composed, the modules
 * route each sample by its tag to its language's module, exactly; a module file round-trips; decomposition is deterministic;
 * the refusals. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_trdec_XXXXXX";

/* lines `lat<TAB>alt` written to DIR/lat-alt.txt; returns the path (static) */
static const char *write_pairs(int count, uint64_t seed) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/lat-alt.txt", g_tmp);
    char *buf = malloc((size_t)count * 32), *p = buf;
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int i = 0; i < count; i++) {
        const int len = 2 + (int)ts_rng_below(&r, 4);
        char w[5];
        for (int t = 0; t < len; t++) w[t] = (char)('a' + ts_rng_below(&r, 8));
        for (int t = 0; t < len; t++) p += sprintf(p, t ? " %c" : "%c", w[t]);
        *p++ = '\t';
        for (int t = 0; t < len; t++) p += sprintf(p, t ? " %c" : "%c", 'p' + (w[len - 1 - t] - 'a'));
        *p++ = '\n';
    }
    CHECK(test_write_file(path, buf, (size_t)(p - buf)), "write %s", path);
    free(buf);
    return path;
}

/* The teacher-forced input rows (n, 2, Tm) of the first n pairs of ds. */
static float *teacher_rows(const ts_text_dataset *ds, int n, int Tm) {
    float *x = calloc((size_t)n * 2 * (size_t)Tm, sizeof *x);
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < ds->max_len; t++) x[(size_t)i * 2 * Tm + t] = (float)ds->tokens[i * ds->max_len + t];
        for (int u = 0; u < Tm && u < ds->target_len - 1; u++)
            x[(size_t)i * 2 * Tm + Tm + u] = (float)ds->targets[i * ds->target_len + u];
    }
    return x;
}

static int layer_named(const ts_model *m, const char *name) {
    for (int li = 0; li < m->nlayers; li++)
        if (!strcmp(m->layers[li].name, name)) return li;
    return -1;
}

/* The origin with the decoder units the module dropped zeroed (rows of every gate,
 * biases, W_hh columns, head columns): the module's model must compute the same.
 * The module's decoder rows are copies of the origin's, which identifies them. */
static ts_model *zeroed_like(const ts_model *m, const ts_model *mm, int *kept) {
    ts_model *z = NULL;
    CHECK(model_clone(g_ctx, m, &z) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const int dz = layer_named(z, "dec"), dm = layer_named(mm, "dec"), hz = layer_named(z, "out");
    const layer *lz = &z->layers[dz], *lm = &mm->layers[dm];
    const int H = lz->features, k = lm->features, G = 4;
    const int64_t F = input_shape(z, lz, 0)->dims[1];
    float *W = tensor_data(z, lz->weight), *B = tensor_data(z, lz->bias_t);
    const float *MW = tensor_data((ts_model *)mm, lm->weight);
    uint8_t *keep = calloc((size_t)H, 1);
    for (int r = 0; r < k; r++) {
        int found = -1;
        for (int j = 0; j < H && found < 0; j++)
            if (!memcmp(MW + (int64_t)r * (F + k), W + (int64_t)j * (F + H), sizeof(float) * (size_t)F)) found = j;
        CHECK(found >= 0 && !keep[found], "module decoder row %d is an origin unit's", r);
        if (found >= 0) keep[found] = 1;
    }
    for (int j = 0; j < H; j++) {
        if (keep[j]) continue;
        for (int g = 0; g < G; g++) {
            memset(W + ((int64_t)g * H + j) * (F + H), 0, sizeof(float) * (size_t)(F + H));
            B[g * H + j] = B[G * H + g * H + j] = 0;
        }
        for (int64_t rr = 0; rr < (int64_t)G * H; rr++) W[rr * (F + H) + F + j] = 0;
        float *HW = tensor_data(z, z->layers[hz].weight);
        for (int64_t o = 0; o < z->layers[hz].features; o++) HW[o * H + j] = 0;
    }
    ts_model_params_changed(z);
    *kept = k;
    free(keep);
    return z;
}

static void test_translator(void) {
    const char *path = write_pairs(700, 11);
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.both_ways = 1;
    ts_text_dataset *train = NULL, *test = NULL, *one = NULL;
    CHECK(ts_text_dataset_load(g_ctx, path, TS_SPLIT_TRAIN, NULL, &opt, &train) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!train) return;
    opt.vocab = train->vocab;
    opt.target_vocab = train->target_vocab;
    opt.max_len = train->max_len;
    opt.target_len = train->target_len;
    CHECK(ts_text_dataset_load(g_ctx, path, TS_SPLIT_TEST, NULL, &opt, &test) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(train->classes == 2 && !strcmp(train->class_names[0], "alt") && test && test->count > 100,
          "two languages, %lld test pairs", test ? (long long)test->count : -1LL);
    const ts_shape in = ts_text_input_shape(train);
    const int Tm = (int)in.dims[1];
    char arch[2048];
    snprintf(arch, sizeof arch, "%s", ts_zoo_arch("lstm-seq2seq"));
    char *h;
    while ((h = strstr(arch, "hidden=256"))) memcpy(h, "hidden=048", 10); /* smaller, for the test */
    ts_model *m = NULL;
    CHECK(ts_model_from_arch_seq(g_ctx, arch, "seq2seq", &in, 0, ts_vocab_size(train->vocab),
                                 ts_vocab_size(train->target_vocab), 3, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m || !test) goto done;
    CHECK(ts_model_set_meta(g_ctx, m, "classes", "alt\nlat") == TS_OK, "meta");
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 6;
    cfg.batch = 32;
    cfg.lr = 0.01f;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAM);
    ts_trainer *tr = NULL;
    CHECK(ts_trainer_create_text(g_ctx, m, train, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr) CHECK(ts_trainer_run(g_ctx, tr, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_trainer_free(tr);

    ts_decompose_text_config dc;
    ts_decompose_text_config_default(&dc);
    dc.positives = 300;
    ts_module **mods = NULL, **again = NULL;
    int n = 0, n2 = 0;
    CHECK(ts_decompose_text(g_ctx, m, train, &dc, NULL, 0, &mods, &n) == TS_OK && n == 2, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_decompose_text(g_ctx, m, train, &dc, NULL, 0, &again, &n2) == TS_OK && n2 == 2, "%s",
          ts_ctx_error(g_ctx));
    float *x = teacher_rows(test, 64, Tm);
    const int64_t per = (int64_t)Tm * ts_vocab_size(train->target_vocab);
    float *a = malloc(sizeof *a * 64 * (size_t)per), *b = malloc(sizeof *b * 64 * (size_t)per);
    double lang_bleu[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        ts_module_info info;
        ts_module_info_get(mods[i], &info);
        CHECK(info.class_index == i && !strcmp(info.class_name, i ? "lat" : "alt"), "module %d: %s", i,
              info.class_name);
        /* a translator's default max_remove is 0.05: floor(0.05 * 48) = 2 units at most */
        CHECK(info.units == 48 && info.units_kept == 46, "module %d keeps %lld of 48 units", i,
              (long long)info.units_kept);
        CHECK(info.params_kept < info.params && info.macs_kept < info.origin_macs, "module %d is smaller", i);
        CHECK(info.positives == 300 && info.negatives == 300, "drawn %d %d", info.positives, info.negatives);
        ts_model *mm = NULL, *mm2 = NULL;
        CHECK(ts_module_model(g_ctx, mods[i], &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_module_model(g_ctx, again[i], &mm2) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!mm || !mm2) continue;
        /* deterministic */
        CHECK(ts_model_predict(g_ctx, mm, x, 64, a) == TS_OK && ts_model_predict(g_ctx, mm2, x, 64, b) == TS_OK &&
                  !memcmp(a, b, sizeof *a * 64 * (size_t)per),
              "module %d twice: the same", i);
        /* the sliced model is the origin with the dropped units zeroed */
        int k = 0;
        ts_model *z = zeroed_like(m, mm, &k);
        CHECK(k == info.units_kept, "decoder of %d units", k);
        double diff = 0;
        if (z && ts_model_predict(g_ctx, z, x, 64, b) == TS_OK)
            for (int64_t q = 0; q < 64 * per; q++) diff = fmax(diff, fabs(a[q] - b[q]));
        CHECK(diff < 1e-4, "module %d vs the zeroed origin: max |diff| %g", i, diff);
        ts_model_free(z);
        /* a module file round-trips */
        char file[1100];
        snprintf(file, sizeof file, "%s/m%d.tsm", g_tmp, i);
        ts_module *back = NULL;
        ts_model *mb = NULL;
        CHECK(ts_module_save(g_ctx, mods[i], file) == TS_OK && ts_module_load(g_ctx, file, &back) == TS_OK &&
                  ts_module_model(g_ctx, back, &mb) == TS_OK && ts_model_predict(g_ctx, mb, x, 64, b) == TS_OK &&
                  !memcmp(a, b, sizeof *a * 64 * (size_t)per),
              "module %d saved and loaded: %s", i, ts_ctx_error(g_ctx));
        /* translating into its language about as well as the model */
        double bm = 0, bo = 0;
        int64_t cnt = 0;
        ts_text_dataset *sel = NULL;
        CHECK(ts_module_evaluate_bleu(g_ctx, mods[i], test, 1, 64, &bm, &cnt) == TS_OK && cnt > 40, "%s",
              ts_ctx_error(g_ctx));
        CHECK(ts_text_dataset_select(g_ctx, test, &i, 1, &sel) == TS_OK &&
                  ts_evaluate_bleu(g_ctx, m, sel, 1, 64, &bo) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        printf("  module %s: %d of 48 decoder units, %.1f%% of the parameters; BLEU %.4f (the model %.4f) on %lld "
               "test pairs\n",
               info.class_name, k, 100.0 * (double)info.params_kept / (double)info.params, bm, bo, (long long)cnt);
        /* 48 units trained briefly (measured: 0.00 and +0.45 points after 2 units went) */
        CHECK(bo > 0.6 && bm > 0.8 * bo, "module %d BLEU %.4f vs the model's %.4f", i, bm, bo);
        if (i < 2) lang_bleu[i] = bo;
        ts_text_dataset_free(sel);
        ts_model_free(mb);
        ts_module_free(back);
        ts_model_free(mm);
        ts_model_free(mm2);
    }
    /* each language's BLEU from one decoding of the whole set, as from its own part */
    double all = 0, each[2] = {0, 0}, whole = 0;
    CHECK(ts_evaluate_bleu_each(g_ctx, m, test, 1, 64, &all, each) == TS_OK &&
              ts_evaluate_bleu(g_ctx, m, test, 1, 64, &whole) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    /* equal here; a near tie decoded in other batches could flip a word on another CPU */
    CHECK(all == whole && fabs(each[0] - lang_bleu[0]) < 0.01 && fabs(each[1] - lang_bleu[1]) < 0.01,
          "BLEU by language %.6f %.6f (apart %.6f %.6f), all %.6f (%.6f)", each[0], each[1], lang_bleu[0],
          lang_bleu[1], all, whole);
    /* composed: each sample routed by its tag to its language's module, exactly */
    ts_model *cm = NULL, *c1 = NULL, *m0 = NULL, *m1 = NULL;
    CHECK(ts_compose(g_ctx, mods, 2, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_compose(g_ctx, mods + 1, 1, NULL, &c1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_model(g_ctx, mods[0], &m0) == TS_OK && ts_module_model(g_ctx, mods[1], &m1) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    float *c = malloc(sizeof *c * 64 * (size_t)per), *one_lang = malloc(sizeof *one_lang * 64 * (size_t)per);
    if (cm && c1 && m0 && m1 && ts_model_predict(g_ctx, cm, x, 64, c) == TS_OK &&
        ts_model_predict(g_ctx, c1, x, 64, one_lang) == TS_OK && ts_model_predict(g_ctx, m0, x, 64, a) == TS_OK &&
        ts_model_predict(g_ctx, m1, x, 64, b) == TS_OK) {
        int routed = 1, zeros = 1, langs[2] = {0, 0};
        for (int r = 0; r < 64; r++) {
            const int lang = test->labels[r];
            langs[lang]++;
            const float *want = (lang ? b : a) + (size_t)r * per;
            routed &= !memcmp(c + (size_t)r * per, want, sizeof *c * (size_t)per);
            for (int64_t q = 0; q < per; q++)
                zeros &= lang ? one_lang[(size_t)r * per + q] == b[(size_t)r * per + q]
                              : one_lang[(size_t)r * per + q] == 0.0f;
        }
        CHECK(langs[0] > 0 && langs[1] > 0 && routed, "composed: each row is its language's module's (%d, %d rows)",
              langs[0], langs[1]);
        CHECK(zeros, "composed of one language: the other's rows score 0");
        double bc = 0, bo = 0;
        CHECK(ts_evaluate_bleu(g_ctx, cm, test, 1, 64, &bc) == TS_OK && ts_evaluate_bleu(g_ctx, m, test, 1, 64, &bo) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        printf("  both modules composed: BLEU %.4f (the model %.4f) on %lld test pairs\n", bc, bo,
               (long long)test->count);
    } else {
        CHECK(0, "composed models run: %s", ts_ctx_error(g_ctx));
    }
    ts_module *twice[2] = {mods[0], mods[0]};
    ts_model *bad = NULL;
    CHECK(ts_compose(g_ctx, twice, 2, NULL, &bad) == TS_EINVAL && !bad, "one language twice refused");
    free(c);
    free(one_lang);
    ts_model_free(cm);
    ts_model_free(c1);
    ts_model_free(m0);
    ts_model_free(m1);
    free(a);
    free(b);
    free(x);
    ts_modules_free(mods, n);
    ts_modules_free(again, n2);
    /* refusals: unrolled; a set read one way */
    dc.rolled = 0;
    CHECK(ts_decompose_text(g_ctx, m, train, &dc, NULL, 0, &mods, &n) == TS_EUNSUPPORTED, "unrolled refused");
    dc.rolled = -1;
    ts_text_options o1;
    ts_text_options_default(&o1);
    o1.max_len = train->max_len;
    o1.target_len = train->target_len;
    o1.vocab = train->vocab;
    o1.target_vocab = train->target_vocab;
    CHECK(ts_text_dataset_load(g_ctx, path, TS_SPLIT_TRAIN, NULL, &o1, &one) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(one && ts_decompose_text(g_ctx, m, one, &dc, NULL, 0, &mods, &n) == TS_EUNSUPPORTED &&
              strstr(ts_ctx_error(g_ctx), "both-ways"),
          "one way: %s", ts_ctx_error(g_ctx));
    int lang2 = 2;
    CHECK(ts_decompose_text(g_ctx, m, train, &dc, &lang2, 1, &mods, &n) == TS_EINVAL, "language 2 of 2 refused");
done:
    ts_model_free(m);
    ts_text_dataset_free(train);
    ts_text_dataset_free(test);
    ts_text_dataset_free(one);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 1;
    RUN(test_translator);
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_translator_decompose");
}
