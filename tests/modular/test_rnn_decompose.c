/* Decomposing recurrent classifiers into per-label modules (ts_decompose_text,
 * src/modular/decompose_text.c and rnn_units.c; Imtiaz, Pan & Rajan ICSE'23, unrolled and
 * rolled).
 *
 * Three small classifiers are trained here on a synthetic 4-label task that needs
 * the recurrence (which of four marker tokens comes first): a stacked LSTM, a
 * bidirectional GRU and a stacked relu RNN. For each: removing units leaves their
 * states exactly 0 at every step and the sliced model computes what the zeroed one
 * does; every module answers its own label on the texts the model is sure of; all
 * modules composed vote like the model on at least 95% of test texts, within a few
 * points of its accuracy; a subset composes (reuse); modules of two models compose
 * (replace); with nothing removed the composition outputs the model's channelled
 * logits; a module file round-trips; decomposition is deterministic. Then the
 * refusals, and a label without confident positives (its module keeps every unit).
 * The measured figures are printed (docs/sequences.md quotes them). */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h" /* rnn_remove_units, rnn_probe_model: the removed states checked directly */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_rnndec_XXXXXX";

enum { T = 10, VOCAB = 14, K = 4, NTRAIN = 1200, NTEST = 400, POSITIVES = 200 };

static const char *const LSTM = "input shape=10\nembedding name=e vocab=14 dim=8 padding_idx=0\n"
                                "lstm name=l1 in=e,input0 hidden=24\ndropout name=d p=0.1\n"
                                "lstm name=l2 in=d,input0 hidden=16 sequence=0\ndense name=out out=classes\n";
static const char *const GRU = "input shape=10\nembedding name=e vocab=14 dim=8 padding_idx=0\n"
                               "gru name=g in=e,input0 hidden=16 bidirectional=1 sequence=0\n"
                               "dense name=out out=classes\n";
static const char *const RELU = "input shape=10\nembedding name=e vocab=14 dim=8 padding_idx=0\n"
                                "rnn name=r1 in=e,input0 hidden=24 act=relu\n"
                                "rnn name=r2 in=r1,input0 hidden=16 act=relu sequence=0\n"
                                "dense name=out out=classes\n";

static ts_text_dataset *g_train, *g_testset;
static float *g_x; /* (NTEST, T) the test ids as floats */

static ts_model *train_model(const char *arch, int epochs) {
    return test_train_text_adam(g_ctx, arch, K, g_train, NULL, 5, epochs, NULL);
}

static void predict(ts_model *m, float *out) {
    CHECK(ts_model_predict(g_ctx, m, g_x, NTEST, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
}

static int argmax(const float *row, int k) {
    int b = 0;
    for (int j = 1; j < k; j++) b = row[j] > row[b] ? j : b;
    return b;
}

/* Capture sink: a chain layer's every-step states (NTEST, T, U). */
typedef struct sink {
    float *st;
    int64_t per; /* T * U */
} sink;

static int keep_states(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    const sink *s = user;
    memcpy(s->st + first * s->per, out, sizeof(float) * (size_t)(n * s->per));
    return 0;
}

/* Removing every third unit of every layer: the removed states are exactly 0 at
 * every step, and the sliced model computes what the zeroed one does. */
/* Compensation (rnn_remove_units with means): against the same removal without, every
 * bias that reads a removed unit moved by the sum of its weights to the removed units
 * times their means (b_hh of the unit's own layer, b_ih of the next, the head's bias
 * with the final means), every other bias not at all; recomputed here row by row. */
static void check_compensation(const ts_model *m, const rnn_chain *ch, uint8_t *const *keep, const char *what) {
    float *mean[RNN_CHAIN_MAX] = {0}, *last = NULL;
    rnn_means mv = {{0}, NULL};
    for (int k = 0; k < ch->n; k++) {
        const int U = ch->dirs[k] * ch->hidden[k];
        mean[k] = malloc(sizeof(float) * (size_t)U);
        for (int u = 0; u < U; u++) mean[k][u] = 0.1f * (float)(k + 1) + 0.01f * (float)u - 0.2f;
        mv.mean[k] = mean[k];
        if (k + 1 == ch->n) {
            last = malloc(sizeof(float) * (size_t)U);
            for (int u = 0; u < U; u++) last[u] = 0.5f - 0.02f * (float)u;
        }
    }
    mv.last = last;
    ts_model *z0 = NULL, *z1 = NULL;
    CHECK(rnn_remove_units(g_ctx, m, ch, (const uint8_t *const *)keep, NULL, &z0, NULL) == TS_OK &&
              rnn_remove_units(g_ctx, m, ch, (const uint8_t *const *)keep, &mv, &z1, NULL) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    int bad = 0, moved = 0;
    for (int k = 0; z0 && z1 && k < ch->n; k++) {
        const layer *l = &m->layers[ch->layer[k]];
        const int D = ch->dirs[k], H = ch->hidden[k], G = l->kind == LAYER_LSTM ? 4 : l->kind == LAYER_GRU ? 3 : 1;
        const int F = (int)input_shape(m, l, 0)->dims[1], C = F + H;
        const float *W = tensor_data((ts_model *)m, l->weight);
        const float *b0 = tensor_data(z0, z0->layers[ch->layer[k]].bias_t), *b1 = tensor_data(z1, z1->layers[ch->layer[k]].bias_t);
        for (int d = 0; d < D; d++)
            for (int r = 0; r < G * H; r++) {
                const int kept = keep[k][d * H + r % H];
                double want_hh = 0, want_ih = 0;
                for (int j = 0; j < H && kept; j++)
                    if (!keep[k][d * H + j]) want_hh += (double)W[((size_t)d * G * H + r) * C + F + j] * mean[k][d * H + j];
                if (k > 0 && kept) { /* b_ih reads the previous layer's removed units */
                    const int Up = ch->dirs[k - 1] * ch->hidden[k - 1];
                    for (int u = 0; u < Up; u++)
                        if (!keep[k - 1][u]) want_ih += (double)W[((size_t)d * G * H + r) * C + u] * mean[k - 1][u];
                }
                const size_t ih = (size_t)(d * 2) * G * H + r, hh = ih + (size_t)G * H;
                bad += fabs(b1[hh] - b0[hh] - want_hh) > 1e-5 + 1e-4 * fabs(want_hh);
                bad += fabs(b1[ih] - b0[ih] - want_ih) > 1e-5 + 1e-4 * fabs(want_ih);
                moved += b1[hh] != b0[hh] || b1[ih] != b0[ih];
            }
    }
    if (z0 && z1) { /* the head, from the last layer's final means */
        const int kl = ch->n - 1, U = ch->dirs[kl] * ch->hidden[kl];
        const layer *h = &m->layers[ch->head];
        const float *HW = tensor_data((ts_model *)m, h->weight);
        const float *h0 = tensor_data(z0, z0->layers[ch->head].bias_t), *h1 = tensor_data(z1, z1->layers[ch->head].bias_t);
        for (int o = 0; o < h->features; o++) {
            double want = 0;
            for (int u = 0; u < U; u++)
                if (!keep[kl][u]) want += (double)HW[(size_t)o * U + u] * last[u];
            bad += fabs(h1[o] - h0[o] - want) > 1e-5 + 1e-4 * fabs(want);
            moved += h1[o] != h0[o];
        }
    }
    CHECK(!bad && moved > 0, "%s: %d compensated biases differ from the sums of weights x means (%d moved)", what, bad,
          moved);
    ts_model_free(z0);
    ts_model_free(z1);
    for (int k = 0; k < ch->n; k++) free(mean[k]);
    free(last);
}

static void check_removal(const ts_model *m, const char *what) {
    rnn_chain ch;
    CHECK(rnn_chain_find(g_ctx, m, &ch, "test") == TS_OK, "%s", ts_ctx_error(g_ctx));
    uint8_t *keep[RNN_CHAIN_MAX] = {0};
    for (int k = 0; k < ch.n; k++) {
        const int U = ch.dirs[k] * ch.hidden[k];
        keep[k] = malloc((size_t)U);
        for (int u = 0; u < U; u++) keep[k][u] = u % 3 != 1;
    }
    check_compensation(m, &ch, keep, what);
    ts_model *z = NULL, *s = NULL, *probe = NULL;
    CHECK(rnn_remove_units(g_ctx, m, &ch, (const uint8_t *const *)keep, NULL, &z, &s) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (z && s) {
        for (int k = 0; k < ch.n; k++) {
            const int Hs = s->layers[ch.layer[k]].features, H = ch.hidden[k];
            /* per direction, units 1, 4, 7, ... go: H - ceil((H - 1) / 3) stay */
            int gone = 0;
            for (int u = 0; u < H; u++) gone += u % 3 == 1;
            CHECK(Hs == H - gone, "%s: layer %d sliced to %d units of %d", what, k, Hs, H);
        }
        CHECK(ts_model_param_count(s) < ts_model_param_count(m), "%s: fewer parameters (%lld of %lld)", what,
              (long long)ts_model_param_count(s), (long long)ts_model_param_count(m));
        float *lz = malloc(sizeof(float) * NTEST * K), *ls = malloc(sizeof(float) * NTEST * K);
        predict(z, lz);
        predict(s, ls);
        CHECK(test_allclose(what, ls, lz, (size_t)NTEST * K, 1e-4, 1e-5), "%s: the sliced model computes the zeroed one",
              what);
        free(lz);
        free(ls);
        CHECK(rnn_probe_model(g_ctx, z, &ch, &probe) == TS_OK, "%s", ts_ctx_error(g_ctx));
        int64_t nonzero = 0, removed = 0, live = 0;
        for (int k = 0; probe && k < ch.n; k++) {
            const int U = ch.dirs[k] * ch.hidden[k];
            sink sk = {malloc(sizeof(float) * (size_t)NTEST * T * U), (int64_t)T * U};
            ts_layer_info li;
            ts_model_layer(probe, ts_model_layer_count(probe) - 1, &li);
            float *out = malloc(sizeof(float) * (size_t)NTEST * (size_t)ts_shape_numel(&li.out));
            const ts_capture cap = {&ch.layer[k], 1, keep_states, &sk};
            CHECK(ts_model_predict_capture(g_ctx, probe, g_x, NTEST, out, &cap) == TS_OK, "%s", ts_ctx_error(g_ctx));
            for (int64_t i = 0; i < (int64_t)NTEST * T; i++)
                for (int u = 0; u < U; u++) {
                    const float v = sk.st[i * U + u];
                    if (!keep[k][u]) {
                        removed++;
                        nonzero += v != 0.0f;
                    } else {
                        live += v != 0.0f;
                    }
                }
            free(out);
            free(sk.st);
        }
        CHECK(removed > 0 && nonzero == 0, "%s: %lld of %lld removed states are not 0", what, (long long)nonzero,
              (long long)removed);
        CHECK(live > 0, "%s: the kept units do work", what);
    }
    for (int k = 0; k < ch.n; k++) free(keep[k]);
    ts_model_free(z);
    ts_model_free(s);
    ts_model_free(probe);
}

/* Share of the rows of a and b (n rows of k) with the same argmax. */
static double agreement(const float *a, const float *b, int n, int k) {
    int same = 0;
    for (int i = 0; i < n; i++) same += argmax(a + (size_t)i * k, k) == argmax(b + (size_t)i * k, k);
    return (double)same / n;
}

static double accuracy(const float *out, int n, int k) {
    int right = 0;
    for (int i = 0; i < n; i++) right += argmax(out + (size_t)i * k, k) == g_testset->labels[i];
    return (double)right / n;
}

/* Every module says yes to the test texts of its label the model is sure of (p > 0.9). */
static void check_own(ts_module **mods, const float *logits, const char *what) {
    for (int c = 0; c < K; c++) {
        ts_model *mm = NULL;
        CHECK(ts_module_model(g_ctx, mods[c], &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!mm) continue;
        float *score = malloc(sizeof(float) * NTEST);
        predict(mm, score);
        int sure = 0, yes = 0;
        for (int i = 0; i < NTEST; i++) {
            const float *row = logits + (size_t)i * K;
            if (g_testset->labels[i] != c || argmax(row, K) != c) continue;
            double z = 0;
            for (int j = 0; j < K; j++) z += exp((double)(row[j] - row[c]));
            if (1.0 / z <= 0.9) continue;
            sure++;
            yes += score[i] > 0;
        }
        CHECK(sure > 20 && yes == sure, "%s: module %d says yes to %d of the %d texts the model is sure of", what, c,
              yes, sure);
        double own = 0, rest = 0;
        CHECK(ts_module_evaluate_text(g_ctx, mods[c], g_testset, 64, &own, &rest) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        printf("  %s module %d: units %lld/%lld (%.0f%%), params %lld/%lld, MACs %lld/%lld, "
               "own %.3f, rest %.3f\n",
               what, c, (long long)in.units_kept, (long long)in.units, 100.0 * in.units_kept / in.units,
               (long long)in.params_kept, (long long)in.params, (long long)in.macs_kept, (long long)in.origin_macs, own,
               rest);
        CHECK(in.positives == POSITIVES || in.positives > 50, "%s: %d positives", what, in.positives);
        CHECK(in.class_index == c && in.params_kept <= in.params && in.macs_kept <= in.origin_macs,
              "%s: the module's counts", what);
        free(score);
        ts_model_free(mm);
    }
}

/* Decomposes m, rolled (1), unrolled (0) or by default (-1: rolled for a classifier);
 * checks modules and composition; returns the modules (K). */
static ts_module **check_model(ts_model *m, const char *what, double min_acc, int rolled) {
    check_removal(m, what);
    float *lo = malloc(sizeof(float) * NTEST * K), *lc = malloc(sizeof(float) * NTEST * K);
    predict(m, lo);
    const double acc = accuracy(lo, NTEST, K);
    CHECK(acc >= min_acc, "%s learns the task: test top-1 %.3f", what, acc);
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    cfg.positives = POSITIVES;
    cfg.rolled = rolled;
    ts_module **mods = NULL;
    int n = 0;
    CHECK(ts_decompose_text(g_ctx, m, g_train, &cfg, NULL, 0, &mods, &n) == TS_OK && n == K, "%s",
          ts_ctx_error(g_ctx));
    if (!mods) goto done;
    check_own(mods, lo, what);
    int64_t kept = 0, units = 0;
    for (int c = 0; c < K; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        kept += in.units_kept;
        units += in.units;
    }
    CHECK(kept < units, "%s: units are removed (%lld of %lld kept)", what, (long long)kept, (long long)units);
    /* unrolled: a unit kept at some step and removed at another makes a step mask */
    int masked = 0;
    for (int c = 0; c < K; c++)
        for (int li = 0; li < mods[c]->origin->nlayers; li++) masked += mods[c]->origin->layers[li].step_mask;
    CHECK(rolled ? !masked : masked > 0, "%s: %d module layers with a step mask", what, masked);
    /* tanh/lstm/gru layers lose at most 20% of their units, a module's model keeps the
     * origin's layers with fewer units (a direction may carry zeroed ones) */
    rnn_chain ch;
    CHECK(rnn_chain_find(g_ctx, m, &ch, "test") == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int c = 0; c < K; c++)
        for (int k = 0; k < ch.n; k++) {
            const layer *l = &m->layers[ch.layer[k]], *ml = &mods[c]->origin->layers[ch.layer[k]];
            const int relu = l->kind == LAYER_RNN && l->cell_act, H = ch.hidden[k];
            CHECK(ml->kind == l->kind && ml->features <= H && (relu || ml->features >= H - H / 5),
                  "%s: module %d keeps %d of layer %d's %d units", what, c, ml->features, k, H);
        }
    ts_compose_config cc;
    ts_compose_config_default(&cc);
    ts_model *cm = NULL;
    CHECK(ts_compose(g_ctx, mods, K, &cc, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm) {
        predict(cm, lc);
        const double agree = agreement(lo, lc, NTEST, K), cacc = accuracy(lc, NTEST, K);
        ts_eval_report ev;
        CHECK(ts_evaluate_text(g_ctx, cm, g_testset, 64, &ev, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(fabs(ev.top1 - cacc) < 1e-9, "ts_evaluate_text takes the composed model");
        ts_eval_report_free(&ev);
        printf("  %s: origin top-1 %.4f, composed %.4f (%+.2f points), agreement %.4f; params %lld composed, %lld "
               "origin; units kept %.1f%%\n",
               what, acc, cacc, 100 * (cacc - acc), agree, (long long)ts_model_param_count(cm),
               (long long)ts_model_param_count(m), 100.0 * kept / units);
        CHECK(agree >= 0.95, "%s: the composition agrees with the model on %.3f of the texts", what, agree);
        int emb = 0; /* the modules keep the embedding whole: one copy serves them all */
        for (int li = 0; li < cm->nlayers; li++) emb += cm->layers[li].kind == LAYER_EMBEDDING;
        CHECK(emb == 1, "%s: the composed model has %d embeddings", what, emb);
        CHECK(cacc >= acc - 0.03, "%s: composed top-1 %.3f, origin %.3f", what, cacc, acc);
    }
    ts_model_free(cm);
done:
    free(lo);
    free(lc);
    return mods;
}

static ts_model *g_lstm, *g_gru;
static ts_module **g_lstm_mods, **g_gru_mods;

static void test_lstm(void) {
    g_lstm = train_model(LSTM, 6);
    if (!g_lstm) return;
    g_lstm_mods = check_model(g_lstm, "lstm", 0.95, -1);
    ts_modules_free(check_model(g_lstm, "lstm unrolled", 0.95, 0), K);
}

static void test_gru(void) {
    g_gru = train_model(GRU, 6);
    if (g_gru) g_gru_mods = check_model(g_gru, "bigru", 0.95, -1); /* the default: rolled */
}

static void test_relu(void) {
    ts_model *m = train_model(RELU, 6);
    if (m) ts_modules_free(check_model(m, "relu-rnn", 0.85, -1), K);
    ts_model_free(m);
}

/* Reuse (labels 3 and 1 of the lstm) and replace (label 2 from the gru). */
static void test_reuse_replace(void) {
    if (!g_lstm_mods || !g_gru_mods) return;
    float *lo = malloc(sizeof(float) * NTEST * K), *out = malloc(sizeof(float) * NTEST * K);
    predict(g_lstm, lo);
    ts_module *sub[2] = {g_lstm_mods[3], g_lstm_mods[1]};
    ts_model *cm = NULL;
    CHECK(ts_compose(g_ctx, sub, 2, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm) {
        predict(cm, out);
        int n = 0, agree = 0, right = 0;
        for (int i = 0; i < NTEST; i++) {
            const int y = g_testset->labels[i];
            if (y != 3 && y != 1) continue;
            const float *r = lo + (size_t)i * K;
            const int origin = r[3] > r[1] ? 0 : 1, got = argmax(out + (size_t)i * 2, 2);
            n++;
            agree += got == origin;
            right += got == (y == 3 ? 0 : 1);
        }
        printf("  reuse (lstm labels 3, 1): top-1 %.4f on their texts, agreement with the origin's choice %.4f\n",
               (double)right / n, (double)agree / n);
        CHECK((double)agree / n >= 0.95, "reuse agrees with the origin on %d of %d", agree, n);
    }
    ts_model_free(cm);
    ts_module *mix[K] = {g_lstm_mods[0], g_lstm_mods[1], g_gru_mods[2], g_lstm_mods[3]};
    CHECK(ts_compose(g_ctx, mix, K, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm) {
        predict(cm, out);
        const double acc = accuracy(out, NTEST, K), oacc = accuracy(lo, NTEST, K);
        printf("  replace (label 2 from the gru): top-1 %.4f, lstm alone %.4f\n", acc, oacc);
        CHECK(acc >= oacc - 0.05, "replace: top-1 %.3f against %.3f", acc, oacc);
    }
    ts_model_free(cm);
    free(lo);
    free(out);
}

/* Re-tuning text modules (calibration only, ts_module_retune_text): the replace
 * composition of test_reuse_replace with every module calibrated on the training texts
 * keeps its top-1 within 5 points of the uncalibrated one; scales are finite and
 * positive, thresholds 0; a refusal leaves the module as it was. */
static void test_retune_text(void) {
    if (!g_lstm_mods || !g_gru_mods) return;
    const ts_module *src[K] = {g_lstm_mods[0], g_lstm_mods[1], g_gru_mods[2], g_lstm_mods[3]};
    ts_module *mix[K] = {NULL};
    for (int c = 0; c < K; c++) { /* copies: the others' tests read the modules as decomposed */
        char path[512];
        snprintf(path, sizeof path, "%s/retune%d.tsm", g_tmp, c);
        CHECK(ts_module_save(g_ctx, src[c], path) == TS_OK && ts_module_load(g_ctx, path, &mix[c]) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        if (!mix[c]) goto done;
    }
    float *out = malloc(sizeof(float) * NTEST * K);
    ts_model *cm = NULL;
    double raw = 0, tuned = 0;
    CHECK(ts_compose(g_ctx, mix, K, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm) predict(cm, out), raw = accuracy(out, NTEST, K);
    ts_model_free(cm);
    cm = NULL;
    for (int c = 0; c < K; c++) {
        CHECK(ts_module_retune_text(g_ctx, mix[c], g_train, c, 60, 64) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_module_info in;
        ts_module_info_get(mix[c], &in);
        CHECK(isfinite(in.scale) && in.scale > 0 && isfinite(in.shift) && in.threshold == 0.0f,
              "module %d: scale %g shift %g threshold %g", c, in.scale, in.shift, in.threshold);
    }
    CHECK(ts_compose(g_ctx, mix, K, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm) predict(cm, out), tuned = accuracy(out, NTEST, K);
    printf("  replace (label 2 from the gru), re-tuned: top-1 %.4f, uncalibrated %.4f\n", tuned, raw);
    CHECK(tuned >= raw - 0.05, "re-tuned top-1 %.3f against %.3f", tuned, raw);
    ts_model_free(cm);
    free(out);
    ts_module_info before, after;
    ts_module_info_get(mix[0], &before);
    CHECK(ts_module_retune_text(g_ctx, mix[0], g_train, K, 60, 64) == TS_EINVAL, "a label past the set's");
    ts_module_info_get(mix[0], &after);
    CHECK(before.scale == after.scale && before.shift == after.shift && before.threshold == after.threshold,
          "a refusal changed the module");
done:
    for (int c = 0; c < K; c++) ts_module_free(mix[c]);
}

/* With max_remove 0 nothing is removed from a gru: every module is the origin, and
 * the composition votes exactly as the model does. */
static void test_no_removal(void) {
    if (!g_gru) return;
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    cfg.positives = 50;
    cfg.max_remove = 0;
    ts_module **mods = NULL;
    int n = 0;
    CHECK(ts_decompose_text(g_ctx, g_gru, g_train, &cfg, NULL, 0, &mods, &n) == TS_OK && n == K, "%s",
          ts_ctx_error(g_ctx));
    ts_model *cm = NULL;
    if (mods) CHECK(ts_compose(g_ctx, mods, K, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int c = 0; mods && c < K; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(in.units_kept == in.units && in.params_kept == in.params, "module %d keeps everything", c);
        /* fit_scores: a module equal to the model fits its own margin, scale 1 and shift 0 */
        CHECK(fabs(in.scale - 1) < 1e-4 && fabs(in.shift) < 1e-4, "module %d's fitted score: %g * margin + %g", c,
              (double)in.scale, (double)in.shift);
    }
    if (cm) {
        float *lo = malloc(sizeof(float) * NTEST * K), *lc = malloc(sizeof(float) * NTEST * K);
        predict(g_gru, lo);
        predict(cm, lc);
        /* output c = logit_c - mean of the others = (K logit_c - sum) / (K - 1): the same argmax */
        CHECK(agreement(lo, lc, NTEST, K) == 1.0, "the composition of unreduced modules votes as the model");
        for (int i = 0; i < NTEST; i++) {
            const float *r = lo + (size_t)i * K;
            const double sum = r[0] + r[1] + r[2] + r[3];
            for (int c = 0; c < K; c++)
                if (fabs(lc[i * K + c] - (K * r[c] - sum) / (K - 1)) > 1e-4) {
                    CHECK(0, "text %d output %d: %g, channelled logit %g", i, c, (double)lc[i * K + c],
                          (K * r[c] - sum) / (K - 1));
                    i = NTEST;
                    break;
                }
        }
        free(lo);
        free(lc);
    }
    ts_model_free(cm);
    ts_modules_free(mods, n);
}

/* The refinements (docs/sequences.md, step 6) against the paper's rule, on the LSTM:
 * as many units go from each layer; rank_by_margin alone may pick others of the
 * last layer only; compensate alone keeps the paper's units and weights and moves
 * biases only; fit_scores alone changes nothing but the calibration. */
static void test_refinements(void) {
    if (!g_lstm) return;
    ts_decompose_text_config paper, one;
    ts_decompose_text_config_default(&paper);
    paper.positives = POSITIVES;
    paper.rank_by_margin = paper.compensate = paper.fit_scores = 0;
    ts_module **pm = NULL, **rm = NULL;
    int n = 0, n2 = 0;
    CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &paper, NULL, 0, &pm, &n) == TS_OK && n == K, "%s",
          ts_ctx_error(g_ctx));
    for (int which = 0; which < 3 && pm; which++) {
        one = paper;
        if (which == 0) one.rank_by_margin = 1;
        if (which == 1) one.compensate = 1;
        if (which == 2) one.fit_scores = 1;
        CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &one, NULL, 0, &rm, &n2) == TS_OK && n2 == K, "%s",
              ts_ctx_error(g_ctx));
        int moved_bias = 0, fitted = 0;
        for (int c = 0; rm && c < K; c++) {
            ts_module_info a, b;
            ts_module_info_get(pm[c], &a);
            ts_module_info_get(rm[c], &b);
            CHECK(a.units_kept == b.units_kept && a.params_kept == b.params_kept, "refinement %d, module %d: %lld units kept, the paper's rule %lld",
                  which, c, (long long)b.units_kept, (long long)a.units_kept);
            CHECK(which == 2 || (b.scale == 1.0f && b.shift == 0.0f), "refinement %d, module %d: calibration %g, %g", which, c,
                  (double)b.scale, (double)b.shift);
            CHECK(b.scale > 0 && isfinite(b.scale) && isfinite(b.shift), "module %d: calibration %g, %g", c,
                  (double)b.scale, (double)b.shift);
            fitted |= b.scale != 1.0f || b.shift != 0.0f;
            const ts_model *x = pm[c]->origin, *y = rm[c]->origin;
            CHECK(x->ntensors == y->ntensors, "module %d: tensor counts", c);
            /* rank_by_margin chooses again in the last recurrent layer only: the first
             * layer (l1, layer 2) keeps the paper's units, so its weights are the same */
            if (which == 0 && x->nlayers > 2 && y->nlayers > 2 && x->layers[2].weight >= 0)
                CHECK(x->layers[2].features == y->layers[2].features &&
                          !memcmp(tensor_data((ts_model *)x, x->layers[2].weight),
                                  tensor_data((ts_model *)y, y->layers[2].weight),
                                  sizeof(float) * (size_t)x->tensors[x->layers[2].weight].numel),
                      "rank_by_margin, module %d: the first recurrent layer kept the paper's units", c);
            for (int li = 1; li < x->nlayers && li < y->nlayers && which > 0; li++) {
                const layer *lx = &x->layers[li], *ly = &y->layers[li];
                if (lx->weight >= 0 && ly->weight >= 0)
                    CHECK(!memcmp(tensor_data((ts_model *)x, lx->weight), tensor_data((ts_model *)y, ly->weight),
                                  sizeof(float) * (size_t)x->tensors[lx->weight].numel),
                          "refinement %d, module %d: layer %s's weights differ from the paper rule's", which, c, lx->name);
                if (lx->bias_t >= 0 && ly->bias_t >= 0)
                    moved_bias |= memcmp(tensor_data((ts_model *)x, lx->bias_t), tensor_data((ts_model *)y, ly->bias_t),
                                         sizeof(float) * (size_t)x->tensors[lx->bias_t].numel) != 0;
            }
        }
        if (which == 1) CHECK(moved_bias, "compensate moves some bias");
        if (which == 2) CHECK(!moved_bias && fitted, "fit_scores leaves the biases (%d) and fits some calibration (%d)",
                              !moved_bias, fitted);
        ts_modules_free(rm, n2);
        rm = NULL;
    }
    ts_modules_free(pm, n);
}

/* A module file round-trips; decomposition is deterministic. */
/* A translator's rank_by_use on known numbers: 4 units, each the same |state| on every
 * row; lower on the positives than on the negatives for units 0 (0.5 vs 0.9), 1 (0.05
 * vs 0.1) and 3 (0.2 vs 0.5). With a cap of 2 the paper's rule removes the largest
 * differences (0 and 3); rank_by_use removes, of those three, the two the positives use
 * least (1 and 3). */
static void test_rank_by_use(void) {
    enum { H = 4, ROWS = 6 };
    static const float on_pos[H] = {0.5f, 0.05f, 0.7f, 0.2f}, on_neg[H] = {0.9f, 0.1f, 0.3f, 0.5f};
    float vals[ROWS * H];
    const int64_t pos[3] = {0, 2, 4}, neg[3] = {1, 3, 5};
    for (int r = 0; r < ROWS; r++)
        for (int u = 0; u < H; u++) vals[r * H + u] = (r % 2 ? on_neg[u] : on_pos[u]) * (r % 4 < 2 ? 1.0f : -1.0f);
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    cfg.max_remove = 0.5f;
    float a[ROWS], scratch[ROWS];
    double diff[H], use[H];
    int order[H];
    uint8_t keep[H];
    rnn_identify_rows(0, vals, H, pos, 3, neg, 3, &cfg, a, scratch, diff, order, keep);
    CHECK(!keep[0] && keep[1] && keep[2] && !keep[3], "the paper's rule keeps %d %d %d %d", keep[0], keep[1], keep[2],
          keep[3]);
    rnn_rank_by_use(vals, H, pos, 3, diff, use, order, keep);
    CHECK(keep[0] && !keep[1] && keep[2] && !keep[3], "rank_by_use keeps %d %d %d %d", keep[0], keep[1], keep[2],
          keep[3]);
    CHECK(fabs(use[1] - 0.05) < 1e-6 && fabs(use[0] - 0.5) < 1e-6, "mean |state| on the positives %g %g", use[0],
          use[1]);
}

/* fit_scores' least squares on known numbers: an exact line whatever the weights; a
 * weighted fit (1 positive against 2 negatives, each side half the weight: a = 26/11,
 * b = -3/11, where plain least squares gives 2.5 and -0.5); no fit (1, 0) for a
 * negative covariance and for no spread. */
static void test_fit_margins(void) {
    const float s4[4] = {0, 1, 2, 3}, line[4] = {1, 3, 5, 7};
    const uint8_t own4[4] = {1, 0, 0, 0};
    float a = 0, b = 0;
    rnn_fit_margins(s4, line, own4, 4, &a, &b);
    CHECK(fabsf(a - 2.0f) < 1e-6f && fabsf(b - 1.0f) < 1e-6f, "exact line: a %g b %g", a, b);
    const float s3[3] = {0, 1, 2}, m3[3] = {0, 1, 5};
    const uint8_t own3[3] = {1, 0, 0};
    rnn_fit_margins(s3, m3, own3, 3, &a, &b);
    CHECK(fabsf(a - 26.0f / 11) < 1e-5f && fabsf(b + 3.0f / 11) < 1e-5f, "weighted: a %g (26/11) b %g (-3/11)", a, b);
    const float down[3] = {2, 1, 0};
    rnn_fit_margins(s3, down, own3, 3, &a, &b);
    CHECK(a == 1.0f && b == 0.0f, "negative covariance: a %g b %g", a, b);
    const float flat[3] = {1, 1, 1};
    rnn_fit_margins(flat, m3, own3, 3, &a, &b);
    CHECK(a == 1.0f && b == 0.0f, "no spread: a %g b %g", a, b);
}

static void test_file_and_determinism(void) {
    if (!g_gru_mods) return;
    char path[256];
    snprintf(path, sizeof path, "%s/bigru2.tsm", g_tmp);
    ts_module *back = NULL;
    CHECK(ts_module_save(g_ctx, g_gru_mods[2], path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_load(g_ctx, path, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model *a = NULL, *b = NULL;
    float *sa = malloc(sizeof(float) * NTEST), *sb = malloc(sizeof(float) * NTEST);
    if (back) {
        CHECK(ts_module_model(g_ctx, g_gru_mods[2], &a) == TS_OK && ts_module_model(g_ctx, back, &b) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        if (a && b) {
            predict(a, sa);
            predict(b, sb);
            CHECK(!memcmp(sa, sb, sizeof(float) * NTEST), "a loaded module scores as the saved one");
        }
        /* the sizes against the real origin survive, though the file holds only the
         * module's own smaller model */
        ts_module_info x, y;
        ts_module_info_get(g_gru_mods[2], &x);
        ts_module_info_get(back, &y);
        CHECK(y.params == ts_model_param_count(g_gru) && x.params == y.params && x.params_kept == y.params_kept &&
                  x.origin_macs == y.origin_macs && x.macs_kept == y.macs_kept && x.weights_kept == y.weights_kept &&
                  x.jaccard == y.jaccard,
              "loaded module's sizes: params %lld of %lld (saved %lld of %lld; the origin has %lld), MACs %lld of %lld "
              "(saved %lld of %lld)",
              (long long)y.params_kept, (long long)y.params, (long long)x.params_kept, (long long)x.params,
              (long long)ts_model_param_count(g_gru), (long long)y.macs_kept, (long long)y.origin_macs,
              (long long)x.macs_kept, (long long)x.origin_macs);
        ts_model_free(a);
        ts_model_free(b);
        a = b = NULL;
    }
    ts_module_free(back);
    unlink(path);
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    cfg.positives = POSITIVES;
    ts_module **again = NULL;
    int n = 0;
    const int which[1] = {2};
    CHECK(ts_decompose_text(g_ctx, g_gru, g_train, &cfg, which, 1, &again, &n) == TS_OK && n == 1, "%s",
          ts_ctx_error(g_ctx));
    if (again) {
        CHECK(ts_module_model(g_ctx, g_gru_mods[2], &a) == TS_OK && ts_module_model(g_ctx, again[0], &b) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        CHECK(a && b && ts_model_param_count(a) == ts_model_param_count(b), "the same sizes again");
        if (a && b && ts_model_param_count(a) == ts_model_param_count(b)) {
            ts_tensor_info ta, tb;
            int same = ts_model_tensor_count(a) == ts_model_tensor_count(b);
            for (int t = 0; same && t < ts_model_tensor_count(a); t++) {
                ts_model_tensor(a, t, &ta);
                ts_model_tensor(b, t, &tb);
                same = ta.numel == tb.numel && !memcmp(ta.data, tb.data, sizeof(float) * (size_t)ta.numel);
            }
            CHECK(same, "a second decomposition (of one label) gives the same module, bit for bit");
        }
    }
    ts_model_free(a);
    ts_model_free(b);
    ts_modules_free(again, n);
    free(sa);
    free(sb);
}

static void test_refusals(void) {
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    ts_module **mods = NULL;
    int n = 0;
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, "input shape=10\ndense name=a out=8\nrelu name=r\ndense name=b out=classes\n",
                             "mlp.arch", NULL, K, 1, &m) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(ts_decompose_text(g_ctx, m, g_train, &cfg, NULL, 0, &mods, &n) == TS_EUNSUPPORTED && !mods,
          "a model without recurrent layers is refused");
    CHECK(strstr(ts_ctx_error(g_ctx), "no rnn, lstm or gru"), "message: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    m = NULL;
    CHECK(ts_model_from_arch(g_ctx,
                             "input shape=10\nembedding name=e vocab=14 dim=8 padding_idx=0\n"
                             "gru name=g in=e,input0 hidden=8\ndense name=out out=4\n",
                             "tagger.arch", NULL, 0, 1, &m) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(ts_decompose_text(g_ctx, m, g_train, &cfg, NULL, 0, &mods, &n) == TS_EUNSUPPORTED, "a tagger is refused");
    CHECK(strstr(ts_ctx_error(g_ctx), "tagger"), "message: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    m = NULL;
    CHECK(ts_model_from_arch(g_ctx,
                             "input shape=10\nembedding name=e vocab=14 dim=8 padding_idx=0\n"
                             "lstm name=l in=e,input0 hidden=8\nlstm name=l2 in=e,input0 hidden=8 sequence=0\n"
                             "dense name=out out=classes\n",
                             "branch.arch", NULL, K, 1, &m) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(ts_decompose_text(g_ctx, m, g_train, &cfg, NULL, 0, &mods, &n) == TS_EUNSUPPORTED,
          "a graph that is not one chain is refused");
    CHECK(strstr(ts_ctx_error(g_ctx), "does not read 'l'"), "message: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    if (!g_lstm) return;
    cfg.positives = 0;
    CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &cfg, NULL, 0, &mods, &n) == TS_EINVAL, "positives 0");
    ts_decompose_text_config_default(&cfg);
    cfg.max_remove = 1.5f;
    CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &cfg, NULL, 0, &mods, &n) == TS_EINVAL, "max_remove 1.5");
    CHECK(strstr(ts_ctx_error(g_ctx), "max_remove"), "message: %s", ts_ctx_error(g_ctx));
    ts_decompose_text_config_default(&cfg);
    const int bad[1] = {K};
    CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &cfg, bad, 1, &mods, &n) == TS_EINVAL, "a label past the model's");
    g_train->max_len = T - 1;
    CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &cfg, NULL, 0, &mods, &n) == TS_ESHAPE, "texts of another length");
    g_train->max_len = T;
    /* no text is that sure: no positives, so every module keeps every unit */
    cfg.confidence = 0.99999994f;
    CHECK(ts_decompose_text(g_ctx, g_lstm, g_train, &cfg, NULL, 0, &mods, &n) == TS_OK && n == K, "%s",
          ts_ctx_error(g_ctx));
    for (int c = 0; mods && c < n; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(in.positives > 0 || (in.units_kept == in.units && in.params_kept == in.params),
              "module %d without positives (%d) keeps every unit", c, in.positives);
    }
    ts_modules_free(mods, n);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 2);
    g_train = test_first_marker_texts(NTRAIN, T, VOCAB, K, 11);
    g_testset = test_first_marker_texts(NTEST, T, VOCAB, K, 12);
    g_x = malloc(sizeof(float) * NTEST * T);
    for (int i = 0; i < NTEST * T; i++) g_x[i] = (float)g_testset->tokens[i];
    RUN(test_lstm);
    RUN(test_gru);
    RUN(test_relu);
    RUN(test_reuse_replace);
    RUN(test_retune_text);
    RUN(test_no_removal);
    RUN(test_refinements);
    RUN(test_rank_by_use);
    RUN(test_fit_margins);
    RUN(test_file_and_determinism);
    RUN(test_refusals);
    ts_modules_free(g_lstm_mods, K);
    ts_modules_free(g_gru_mods, K);
    ts_model_free(g_lstm);
    ts_model_free(g_gru);
    free(g_x);
    test_free_texts(g_train);
    test_free_texts(g_testset);
    ts_ctx_free(g_ctx);
    rmdir(g_tmp);
    TEST_MAIN_END("test_rnn_decompose");
}
