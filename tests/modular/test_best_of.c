/* Best-of-N composition (src/modular/best_of.c) on synthetic 4-class quadrant images:
 * three runs of the same classes, one of them blind to class 2. Each output's pick is
 * the candidate with the best F1, recomputed here from ts_module_evaluate; the blind
 * run's class-2 module is never picked; the result is exactly ts_compose of the picks;
 * a run without a module for an output is skipped; refused: candidates of different
 * classes for one output, an output no run has, validation data without a class. */
#include "tessera.h"

#include "common/test.h"

#include <stdint.h>
#include <stdio.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera-best-of-XXXXXX";

enum { K = 4, RUNS = 3, NTRAIN = 800, NVAL = 400 };

static const char *ARCH = "input   shape=1x8x8 classes=4\n"
                          "flatten name=flat\n"
                          "dense   name=fc1 out=8\n"
                          "relu    name=relu1\n"
                          "dense   name=fc2 out=classes\n";

static ts_dataset *g_train, *g_val;

static ts_model *train(uint64_t seed) {
    return test_train_adam(g_ctx, ARCH, "best.arch", g_train, seed, seed, 1, 32, 5e-3f);
}

static float *outputs(ts_model *m, int k) {
    ts_preprocess pp;
    CHECK(ts_model_get_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *x = test_falloc((size_t)NVAL * 64), *out = test_falloc((size_t)NVAL * (size_t)k);
    ts_preprocess_images(&pp, g_val->images, NVAL, 1, 8, 8, x);
    CHECK(ts_model_predict(g_ctx, m, x, NVAL, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
    free(x);
    return out;
}

static void test_best_of(void) {
    ts_model *models[RUNS] = {0};
    ts_module *own[RUNS * K] = {0}, *cand[RUNS * K];
    for (int r = 0; r < RUNS; r++) {
        if (!(models[r] = train(40 + (uint64_t)r))) goto out;
        if (r == 1) {
            /* run 1 never answers class 2 */
            int t = ts_model_find_tensor(models[r], "fc2.bias");
            ts_tensor_info ti;
            CHECK(t >= 0 && ts_model_tensor(models[r], t, &ti) == TS_OK, "fc2.bias");
            ti.data[2] = -1e4f;
            ts_model_params_changed(models[r]);
        }
        for (int j = 0; j < K; j++)
            CHECK(ts_module_from_model(g_ctx, models[r], j, &own[r * K + j]) == TS_OK, "%s", ts_ctx_error(g_ctx));
    }
    memcpy(cand, own, sizeof cand);
    ts_model *best = NULL;
    ts_best_of_config bc;
    ts_best_of_config_default(&bc);
    CHECK(bc.recalibrate == 1 && bc.select == TS_BEST_OF_F1 && bc.compose.max_macs == 1.5, "defaults");
    bc.recalibrate = 0;
    ts_best_of_report rep;
    ts_status st = ts_compose_best_of(g_ctx, cand, RUNS, K, g_val, &bc, &rep, &best);
    const int *picks = rep.picks;
    const double *f1 = rep.f1;
    CHECK(st == TS_OK, "best of: %s", ts_ctx_error(g_ctx));
    if (st) goto out;
    int64_t npos[K] = {0};
    for (int i = 0; i < NVAL; i++) npos[g_val->labels[i]]++;
    ts_module *chosen[K];
    for (int j = 0; j < K; j++) {
        double bestf = -1;
        int want = -1;
        for (int r = 0; r < RUNS; r++) {
            double own, rest;
            CHECK(ts_module_evaluate(g_ctx, cand[r * K + j], g_val, 64, &own, &rest) == TS_OK, "%s",
                  ts_ctx_error(g_ctx));
            const double tp = own * (double)npos[j], fp = (1 - rest) * (double)(NVAL - npos[j]);
            const double f = tp > 0 ? 2 * tp / (2 * tp + fp + ((double)npos[j] - tp)) : 0;
            CHECK_NEAR(f1[j * RUNS + r], f, 0, 1e-12);
            if (f > bestf) {
                bestf = f;
                want = r;
            }
        }
        CHECK(picks[j] == want, "output %d: picked run %d, best F1 is run %d", j, picks[j], want);
        chosen[j] = cand[picks[j] * K + j];
    }
    CHECK(picks[2] != 1 && f1[2 * RUNS + 1] == 0, "the blind run's class 2 (F1 %g) was picked: %d", f1[2 * RUNS + 1],
          picks[2]);
    ts_model *direct = NULL;
    CHECK(ts_compose(g_ctx, chosen, K, NULL, &direct) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (direct) {
        float *a = outputs(best, K), *b = outputs(direct, K);
        CHECK(!memcmp(a, b, sizeof(float) * NVAL * K), "best-of differs from composing its picks");
        free(a);
        free(b);
    }
    ts_model_free(direct);
    ts_model_free(best);
    best = NULL;

    /* greedy selection, recalibrated: never below the best run alone on val */
    ts_best_of_report g2;
    bc.select = TS_BEST_OF_GREEDY;
    bc.recalibrate = 1;
    st = ts_compose_best_of(g_ctx, cand, RUNS, K, g_val, &bc, &g2, &best);
    CHECK(st == TS_OK, "greedy: %s", ts_ctx_error(g_ctx));
    if (!st) {
        double top = 0;
        for (int r = 0; r < RUNS; r++) top = g2.run_top1[r] > top ? g2.run_top1[r] : top;
        CHECK(g2.val_top1 >= top && g2.picks[2] != 1, "greedy: %.4f below the best run's %.4f, or blind pick %d",
              g2.val_top1, top, g2.picks[2]);
        ts_module_info mi;
        ts_module_info_get(cand[g2.picks[0] * K], &mi);
        CHECK(mi.threshold == 0.0f && mi.scale != 1.0f, "recalibrated: scale %g threshold %g", (double)mi.scale,
              (double)mi.threshold);
        /* the composition's argmax on val is what val_top1 counted */
        float *o = outputs(best, K);
        int64_t right = 0;
        for (int i = 0; i < NVAL; i++) {
            int b = 0;
            for (int j = 1; j < K; j++)
                if (o[i * K + j] > o[i * K + b]) b = j;
            right += b == g_val->labels[i];
        }
        CHECK_NEAR((double)right / NVAL, g2.val_top1, 0, 0.5 / NVAL);
        free(o);
        ts_best_of_report_free(&g2);
    }
    ts_model_free(best);
    best = NULL;
    ts_best_of_report_free(&rep);

    /* a run without a module for output 0 is skipped */
    bc.select = TS_BEST_OF_F1;
    cand[0] = NULL;
    st = ts_compose_best_of(g_ctx, cand, RUNS, K, g_val, &bc, &rep, &best);
    CHECK(st == TS_OK && rep.picks[0] != 0 && rep.f1[0] == -1, "a missing candidate: %s", ts_ctx_error(g_ctx));
    ts_best_of_report_free(&rep);
    ts_model_free(best);
    best = NULL;
    /* refusals */
    for (int r = 0; r < RUNS; r++) cand[r * K] = NULL;
    st = ts_compose_best_of(g_ctx, cand, RUNS, K, g_val, &bc, &rep, &best);
    CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "no run has a module for output 0") && !rep.picks, "%s: %s",
          ts_status_name(st), ts_ctx_error(g_ctx));
    cand[0] = own[1 * K + 1]; /* class 1 offered for output 0 beside class 0 */
    cand[K] = own[K];
    st = ts_compose_best_of(g_ctx, cand, RUNS, K, g_val, &bc, &rep, &best);
    CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "differ"), "%s: %s", ts_status_name(st), ts_ctx_error(g_ctx));
    memcpy(cand, own, sizeof cand);
    {
        /* validation data without class 3 */
        ts_dataset *few = test_quadrant_dataset(NVAL, 9);
        for (int64_t i = 0; i < few->count; i++) few->labels[i] = few->labels[i] == 3 ? 0 : few->labels[i];
        st = ts_compose_best_of(g_ctx, cand, RUNS, K, few, &bc, &rep, &best);
        CHECK(st == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "no sample of class 3"), "%s: %s", ts_status_name(st),
              ts_ctx_error(g_ctx));
        test_free_dataset(few);
    }
    CHECK(best == NULL, "a refused call left a model");
out:
    for (int i = 0; i < RUNS * K; i++) ts_module_free(own[i]);
    for (int r = 0; r < RUNS; r++) ts_model_free(models[r]);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    ts_ctx_set_threads(g_ctx, 1);
    g_train = test_quadrant_dataset(NTRAIN, 3);
    g_val = test_quadrant_dataset(NVAL, 4);
    RUN(test_best_of);
    test_free_dataset(g_train);
    test_free_dataset(g_val);
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_best_of");
}
