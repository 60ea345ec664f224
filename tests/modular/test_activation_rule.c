/* The activation method's concern identification rule and BLN backtracking
 * (src/modular/decompose.c, src/modular/backtrack.c; docs/modules.md).
 *
 * A dense network (two hidden ReLU layers) trained here on synthetic 8x8 images in
 * well under a second is decomposed with FSE'20's rule ("every": a dense unit is
 * kept only when it is active on every confident positive) and with the "any"
 * rule, with few negatives (FSE'20's TI-I ratio): every keeps a subset of any's
 * units, strictly fewer units and weights in all, and the counts follow the masks. The composed model's accuracy under the default
 * rule is printed. A network built by hand, whose classifier reads unit c for class
 * c only, checks BLN exactly: module c keeps unit c of both hidden layers and
 * nothing else of them, its count says so, and its score is the one written out
 * here. The running intersection and its reset are checked on bit patterns. The
 * counts of what a module needs (params_kept, macs_kept) are checked
 * against a hand count. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h" /* the keep bits */

#include <time.h>

static ts_ctx *g_ctx;

enum { NQ = 4, H = 24, NTRAIN = 2000, NTEST = 400 };

static const char *ARCH = "input   shape=1x8x8 classes=4\n"
                          "flatten name=flat\n"
                          "dense   name=fc1 out=24\n"
                          "relu    name=relu1\n"
                          "dense   name=fc2 out=24\n"
                          "relu    name=relu2\n"
                          "dense   name=fc3 out=classes\n";

/* count 8x8 images of NQ classes: class q has a prototype of 16 pixels (drawn from
 * the seed), each lit (200..255) with probability 0.6 in a sample, and every other
 * pixel is lit with probability 0.12: units fire on varying subsets of a class. */
static ts_dataset *patterns_dataset(int64_t count, uint64_t seed) {
    ts_dataset *ds = test_quadrant_dataset(count, seed); /* the arrays and fields; the pixels are redrawn */
    uint64_t s = 0x2545f4914f6cdd1dULL, proto[NQ] = {0};
    for (int q = 0; q < NQ; q++)
        while (__builtin_popcountll(proto[q]) < 16) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            proto[q] |= 1ull << (s >> 58);
        }
    s = seed * 0x9e3779b97f4a7c15ULL + 7;
    for (int64_t i = 0; i < count; i++) {
        int q = ds->labels[i];
        for (int p = 0; p < 64; p++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned r = (unsigned)(s >> 40) % 1000;
            int lit = (proto[q] >> p & 1) ? r < 600 : r < 120;
            ds->images[i * 64 + p] = (uint8_t)(lit ? 200 + (s >> 20) % 56 : (s >> 24) % 30);
        }
    }
    return ds;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static ts_model *train_dense(const ts_dataset *train) {
    return test_train_adam(g_ctx, ARCH, "dense.arch", train, 7, 7, 2, 32, 3e-3f);
}

/* 150 positives, negatives per positive as given */
static ts_module **decompose(const ts_model *m, const ts_dataset *train, ts_decompose_rule rule, float delta,
                             float tangling) {
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    cfg.positives = 150;
    cfg.tangling = tangling;
    cfg.rule = rule;
    cfg.bln_delta = delta;
    ts_module **mods = NULL;
    int n = 0;
    ts_status st = ts_decompose(g_ctx, m, train, &cfg, NULL, 0, NULL, NULL, &mods, &n);
    CHECK(st == TS_OK && n == NQ, "decompose (rule %d, delta %g): %s", (int)rule, (double)delta, ts_ctx_error(g_ctx));
    if (st || n != NQ) {
        ts_modules_free(mods, n);
        return NULL;
    }
    return mods;
}

static double composed_top1(ts_module **mods, const ts_dataset *test) {
    ts_compose_config cc;
    ts_compose_config_default(&cc);
    ts_model *cm = NULL;
    ts_eval_report r;
    double top1 = -1;
    ts_status st = ts_compose(g_ctx, mods, NQ, &cc, &cm);
    if (!st && !(st = ts_evaluate(g_ctx, cm, test, 100, &r))) {
        top1 = r.top1;
        ts_eval_report_free(&r);
    }
    CHECK(st == TS_OK, "compose and evaluate: %s", ts_ctx_error(g_ctx));
    ts_model_free(cm);
    return top1;
}

/* FSE'20's rule keeps a subset of the any rule's units, strictly fewer in all, and
 * only on dense units (this network has no others). */
static void test_every_keeps_fewer(void) {
    double t0 = now_s();
    ts_dataset *train = patterns_dataset(NTRAIN, 41), *test = patterns_dataset(NTEST, 42);
    ts_model *m = train_dense(train);
    ts_module **every = NULL, **any = NULL;
    if (!m) goto done;
    ts_eval_report r;
    CHECK(ts_evaluate(g_ctx, m, test, 100, &r) == TS_OK && r.top1 > 0.9, "the dense model learned: %s",
          ts_ctx_error(g_ctx));
    double model_top1 = r.top1;
    ts_eval_report_free(&r);
    ts_decompose_config def;
    ts_decompose_config_default(&def);
    CHECK(def.rule == TS_DECOMPOSE_RULE_EVERY && def.bln_delta == 1.0f, "defaults: rule %d, delta %g", (int)def.rule,
          (double)def.bln_delta);
    /* the rule alone (no backtracking on either side), with few negatives as FSE'20's
     * TI-I (1000 positives to 1 per other class): here 2 per other class. With as many
     * negatives as positives, tangling identification restores every unit the every
     * rule removed on this network (printed below) */
    every = decompose(m, train, TS_DECOMPOSE_RULE_EVERY, 1.0f, 0.04f);
    any = decompose(m, train, TS_DECOMPOSE_RULE_ANY, 1.0f, 0.04f);
    if (!every || !any) goto done;
    int64_t ue = 0, ua = 0, we = 0, wa = 0;
    for (int c = 0; c < NQ; c++) {
        ts_module_info ie, ia;
        ts_module_info_get(every[c], &ie);
        ts_module_info_get(any[c], &ia);
        CHECK(ie.rule == TS_DECOMPOSE_RULE_EVERY && ia.rule == TS_DECOMPOSE_RULE_ANY, "module %d: rules %d %d", c,
              ie.rule, ia.rule);
        CHECK(ie.bln_removed == 0 && ia.bln_removed == 0, "module %d: BLN off, removed %lld %lld", c,
              (long long)ie.bln_removed, (long long)ia.bln_removed);
        CHECK(ie.positives == ia.positives && ie.positives > 0, "module %d: positives %d %d", c, ie.positives,
              ia.positives);
        for (int k = 0; k < every[c]->nmasks; k++) {
            const module_mask *me = &every[c]->masks[k], *ma = &any[c]->masks[k];
            int64_t kept_e = 0, kept_a = 0, outside = 0;
            for (int64_t u = 0; u < me->units; u++) {
                kept_e += mask_get(me, u);
                kept_a += mask_get(ma, u);
                outside += mask_get(me, u) && !mask_get(ma, u);
            }
            CHECK(outside == 0, "module %d, mask %d: %lld units kept by every but not by any", c, k, (long long)outside);
            printf("note: module %d, relu%d: every keeps %lld, any %lld of %lld units\n", c, k + 1, (long long)kept_e,
                   (long long)kept_a, (long long)me->units);
        }
        CHECK(ie.units_kept <= ia.units_kept && ie.weights_kept <= ia.weights_kept, "module %d: every %lld/%lld, any %lld/%lld",
              c, (long long)ie.units_kept, (long long)ie.weights_kept, (long long)ia.units_kept,
              (long long)ia.weights_kept);
        ue += ie.units_kept;
        ua += ia.units_kept;
        we += ie.weights_kept;
        wa += ia.weights_kept;
        /* what a module needs: all but the dead dense weights, here every parameter is one */
        CHECK(ie.params == ts_model_param_count(m) && ie.params_kept == ie.params - (ie.weights - ie.weights_kept),
              "module %d: params %lld kept %lld", c, (long long)ie.params, (long long)ie.params_kept);
        /* a dense weight is a multiply-accumulate; the dead ones include some biases */
        CHECK(ie.macs_kept <= ie.origin_macs && ie.macs_kept >= ie.origin_macs - (ie.weights - ie.weights_kept) &&
                  ie.macs_kept < ia.macs_kept + (ia.weights_kept - ie.weights_kept) + 1,
              "module %d: MACs %lld of %lld", c, (long long)ie.macs_kept, (long long)ie.origin_macs);
        CHECK(ie.origin_params_live >= ie.params_kept && ie.origin_params_live <= ie.params,
              "module %d: the origin's own live parameters %lld, the module's %lld", c,
              (long long)ie.origin_params_live, (long long)ie.params_kept);
    }
    CHECK(ue < ua && we < wa, "every keeps %lld units and %lld weights, any %lld and %lld", (long long)ue,
          (long long)we, (long long)ua, (long long)wa);
    ts_modules_free(every, NQ);
    ts_modules_free(any, NQ);
    any = NULL;
    /* the defaults (every, 1 negative per positive, BLN 0.5): the composed model's
     * accuracy, printed */
    every = decompose(m, train, def.rule, def.bln_delta, def.tangling);
    if (!every) goto done;
    int64_t bln = 0, ud = 0;
    for (int c = 0; c < NQ; c++) {
        bln += every[c]->info.bln_removed;
        ud += every[c]->info.units_kept;
    }
    double top1 = composed_top1(every, test);
    CHECK(top1 > 0.25, "composed top-1 %.3f", top1);
    printf("note: dense %d-%d network, 4 pattern classes: model top-1 %.4f; 2 negatives per other class: every keeps "
           "%lld units and %lld weights, any %lld and %lld; defaults (every, tangling 1, BLN 0.5): %lld units kept, %lld "
           "removed by BLN, composed top-1 %.4f; %.2f s\n",
           H, H, model_top1, (long long)ue, (long long)we, (long long)ua, (long long)wa, (long long)ud, (long long)bln,
           top1, now_s() - t0);
done:
    ts_modules_free(every, NQ);
    ts_modules_free(any, NQ);
    ts_model_free(m);
    test_free_dataset(train);
    test_free_dataset(test);
}

/* Sets tensor `name` of m to v (n floats). */
static void set_tensor(ts_model *m, const char *name, const float *v, int64_t n) {
    int t = ts_model_find_tensor(m, name);
    ts_tensor_info ti;
    CHECK(t >= 0 && ts_model_tensor(m, t, &ti) == TS_OK && ti.numel == n, "tensor %s", name);
    if (t >= 0 && ti.numel == n) memcpy(ti.data, v, sizeof(float) * (size_t)n);
}

/* fc1: hidden unit q sums quadrant q's pixels (+1, so every unit is active on every
 * input and concern identification keeps all of them, under either rule); fc2: the
 * identity; fc3: logit j reads unit j only (weight 1, bias b_j). Module c's classifier
 * input f != c has w_c = 0 and w_uc = 1/3: tied wholly to the other classes, so BLN
 * removes it, then unit f of relu1, which fed only it. */
static void test_bln_constructed(void) {
    static const char *TXT = "input   shape=1x8x8 classes=4\n"
                             "flatten name=flat\n"
                             "dense   name=fc1 out=4\n"
                             "relu    name=relu1\n"
                             "dense   name=fc2 out=4\n"
                             "relu    name=relu2\n"
                             "dense   name=fc3 out=classes\n";
    ts_model *m = NULL;
    ts_dataset *ds = test_quadrant_dataset(400, 51);
    ts_module **mods = NULL;
    ts_model *mm = NULL;
    float *x = NULL;
    CHECK(ts_model_from_arch(g_ctx, TXT, "bln.arch", NULL, 0, 3, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) goto done;
    float w1[4 * 64], b1[4] = {1, 1, 1, 1}, w2[16] = {0}, b2[4] = {0}, w3[16] = {0}, b3[4] = {0.5f, -0.25f, 0.125f, 0};
    for (int q = 0; q < 4; q++)
        for (int i = 0; i < 64; i++) w1[q * 64 + i] = ((i / 8 >= 4) * 2 + (i % 8 >= 4)) == q ? 1.0f : 0.0f;
    for (int q = 0; q < 4; q++) w2[q * 4 + q] = w3[q * 4 + q] = 1.0f;
    set_tensor(m, "fc1.weight", w1, 4 * 64);
    set_tensor(m, "fc1.bias", b1, 4);
    set_tensor(m, "fc2.weight", w2, 16);
    set_tensor(m, "fc2.bias", b2, 4);
    set_tensor(m, "fc3.weight", w3, 16);
    set_tensor(m, "fc3.bias", b3, 4);
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    cfg.bln_delta = 0.5f; /* the paper's setting; off by default */
    cfg.positives = 40;
    int n = 0;
    ts_status st = ts_decompose(g_ctx, m, ds, &cfg, NULL, 0, NULL, NULL, &mods, &n);
    CHECK(st == TS_OK && n == 4, "decompose: %s", ts_ctx_error(g_ctx));
    if (st || n != 4) goto done;
    ts_preprocess pp;
    CHECK(ts_model_get_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    x = test_falloc((size_t)ds->count * 64);
    ts_preprocess_images(&pp, ds->images, ds->count, 1, 8, 8, x);
    for (int c = 0; c < 4; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(in.positives > 0, "module %d: no positive", c);
        CHECK(in.bln_removed == 6, "module %d: BLN removed %lld units, want 3 + 3", c, (long long)in.bln_removed);
        CHECK(in.units == 8 && in.units_kept == 2, "module %d keeps %lld of %lld units", c, (long long)in.units_kept,
              (long long)in.units);
        for (int k = 0; k < 2; k++)
            for (int u = 0; u < 4; u++)
                CHECK(mask_get(&mods[c]->masks[k], u) == (u == c), "module %d, relu%d unit %d: kept %d", c, k + 1, u,
                      mask_get(&mods[c]->masks[k], u));
        /* weights: fc1 keeps row c (64 + bias), fc2 row c reads unit c (1 + bias), fc3 (the head) reads unit c */
        const int64_t weights = 4 * 64 + 4 + 16 + 4 + 16 + 4, kept = 64 + 1 + 1 + 1 + 4 * 1 + 4;
        CHECK(in.weights == weights && in.weights_kept == kept, "module %d: weights %lld kept %lld, want %lld %lld", c,
              (long long)in.weights, (long long)in.weights_kept, (long long)weights, (long long)kept);
        CHECK(in.params == weights && in.params_kept == kept, "module %d: params %lld kept %lld", c,
              (long long)in.params, (long long)in.params_kept);
        /* MACs: the live weights less the biases (64 + 1 + 4) of the origin's 256 + 16 + 16 */
        CHECK(in.origin_macs == 288 && in.macs_kept == 69, "module %d: MACs %lld of %lld", c, (long long)in.macs_kept,
              (long long)in.origin_macs);
        CHECK(in.origin_params_live == in.params && in.origin_macs_live == in.origin_macs,
              "module %d: every unit is live in the origin: %lld %lld", c, (long long)in.origin_params_live,
              (long long)in.origin_macs_live);
        /* the module's score: h_c + b_c - mean of the other biases (their units are gone) */
        CHECK(ts_module_model(g_ctx, mods[c], &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!mm) continue;
        float score[400];
        CHECK(ts_model_predict(g_ctx, mm, x, (int)ds->count, score) == TS_OK, "%s", ts_ctx_error(g_ctx));
        double others = 0;
        for (int j = 0; j < 4; j++) others += j == c ? 0 : b3[j];
        double worst = 0;
        for (int64_t s = 0; s < ds->count; s++) {
            double h = 1;
            for (int i = 0; i < 64; i++) h += w1[c * 64 + i] * x[s * 64 + i];
            double want = (h > 0 ? h : 0) + b3[c] - others / 3;
            worst = fmax(worst, fabs(score[s] - want) / (1 + fabs(want)));
        }
        CHECK(worst < 1e-5, "module %d: score off by %g relative", c, worst);
        ts_model_free(mm);
        mm = NULL;
    }
    /* delta 1 turns BLN off: every unit stays */
    ts_modules_free(mods, n);
    mods = NULL;
    cfg.bln_delta = 1.0f;
    st = ts_decompose(g_ctx, m, ds, &cfg, NULL, 0, NULL, NULL, &mods, &n);
    CHECK(st == TS_OK && n == 4, "decompose: %s", ts_ctx_error(g_ctx));
    for (int c = 0; !st && c < n; c++)
        CHECK(mods[c]->info.bln_removed == 0 && mods[c]->info.units_kept == 8, "delta 1, module %d: removed %lld", c,
              (long long)mods[c]->info.bln_removed);
    /* refusals */
    ts_module **none = NULL;
    int nn = -1;
    cfg.bln_delta = 1.5f;
    CHECK(ts_decompose(g_ctx, m, ds, &cfg, NULL, 0, NULL, NULL, &none, &nn) == TS_EINVAL &&
              strstr(ts_ctx_error(g_ctx), "BLN delta") && !none && nn == 0,
          "delta 1.5: %s", ts_ctx_error(g_ctx));
    cfg.bln_delta = 0.5f;
    cfg.rule = (ts_decompose_rule)7;
    CHECK(ts_decompose(g_ctx, m, ds, &cfg, NULL, 0, NULL, NULL, &none, &nn) == TS_EINVAL &&
              strstr(ts_ctx_error(g_ctx), "rule 7"),
          "rule 7: %s", ts_ctx_error(g_ctx));
done:
    free(x);
    ts_model_free(mm);
    ts_modules_free(mods, n);
    test_free_dataset(ds);
    ts_model_free(m);
}

/* The every rule's running intersection and its reset, on bit patterns: a dense mask
 * of 20 units (the reset mask: fewer than 2 kept restarts) and a convolution mask the
 * rule leaves alone, for two classes. */
static void test_every_reset(void) {
    module_mask masks[2] = {{1, 20, NULL}, {3, 70, NULL}};
    const int64_t word_off[3] = {0, 1, 3}, W = 3;
    const uint8_t dense[2] = {1, 0};
    uint64_t I[2 * 3] = {0};
    uint8_t fresh[2] = {1, 1};
    every_rule e = {1, dense, 0, I, fresh};
    struct {
        int cls;
        uint64_t act, want;
        int fresh_after;
    } steps[] = {
        {0, 0x003ff, 0x003ff, 0}, /* units 0..9: the first positive starts it */
        {1, 0xf0000, 0xf0000, 0}, /* class 1 has its own */
        {0, 0x07fe0, 0x003e0, 0}, /* 5..14: 5..9 left */
        {0, 0xf8200, 0x00200, 1}, /* 9, 15..19: unit 9 alone, 1 of 20 is under 10%: restart next */
        {0, 0x00007, 0x00007, 0}, /* 0..2: a new intersection */
        {0, 0x0000e, 0x00006, 0}, /* 1..3: 1, 2 */
        {0, 0x00010, 0x00000, 1}, /* 4: none left: restart next */
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        uint64_t a[3] = {steps[i].act, ~0ull, 0x3full};
        every_rule_add(&e, masks, 2, word_off, W, steps[i].cls, a);
        const uint64_t *row = I + (size_t)steps[i].cls * W;
        CHECK(row[0] == steps[i].want && fresh[steps[i].cls] == steps[i].fresh_after,
              "step %zu: I = %llx, want %llx; restart %d, want %d", i, (unsigned long long)row[0],
              (unsigned long long)steps[i].want, fresh[steps[i].cls], steps[i].fresh_after);
        CHECK(row[1] == 0 && row[2] == 0, "step %zu: the convolution mask's words were touched", i);
    }
    CHECK(I[3] == 0xf0000, "class 1: %llx", (unsigned long long)I[3]);
}

int main(void) {
    if (ts_ctx_create(&g_ctx) != TS_OK) return 2;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_every_reset);
    RUN(test_every_keeps_fewer);
    RUN(test_bln_constructed);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_activation_rule");
}
