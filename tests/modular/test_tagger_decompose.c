/* Decomposing a recurrent tagger into per-tag modules (ts_decompose_text on a tag set,
 * src/modular/decompose_tagger.c; Imtiaz, Pan & Rajan ICSE'23, Alg. 2, rolled and
 * unrolled), and the per-step unit mask the unrolled modules run with (step_mask=1,
 * ops/rnn_ref.c).
 *
 * The mask first: the kernel with units masked at some steps against a hand-written
 * cell that uses, at each step, its own copy of the weights with those units'
 * rows, biases and recurrent columns zeroed and their outputs cut (the paper's
 * per-step weight copies), for lstm, gru (both linear_before_reset), tanh rnn and a
 * bidirectional lstm; and a unit masked at step t does not reach the head at t.
 *
 * Then a bidirectional LSTM tagger trained here on a synthetic 4-tag task that needs
 * the recurrence (a token's tag is the last marker seen up to it, 0 before any):
 * every module says yes to the tokens of its tag the model is sure of; the unrolled
 * modules composed tag like the model on at least 95% of the test tokens; a subset
 * composes and evaluates on the selected tags; the mask round-trips through module and
 * model files, and a damaged or truncated one is refused with a one-line message;
 * training through a mask is refused. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_tagdec_XXXXXX";

enum { T = 10, VOCAB = 14, K = 4, NTRAIN = 1200, NTEST = 300, POSITIVES = 100 };

static const char *const TAGGER = "input shape=10\nembedding name=e vocab=14 dim=8 padding_idx=0\n"
                                  "lstm name=l in=e,input0 hidden=16 bidirectional=1\ndropout name=d p=0.1\n"
                                  "dense name=out out=4\n";

/* ---- the step mask against per-step weight copies */

/* Layer index by name, or -1. */
static int find_layer(const ts_model *m, const char *name) {
    for (int li = 0; li < m->nlayers; li++)
        if (!strcmp(m->layers[li].name, name)) return li;
    return -1;
}

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

/* One direction of a cell over x (T, F) with, at step t, the weights of a copy where
 * the units masked at t (keep (T, D, H), this direction's) have their gate rows, both
 * biases and their W_hh columns zeroed; y (T, D*H) gets h_t times the mask (the next
 * layer's weight for the unit zeroed at t). */
static void per_step_copies(rnn_cell cell, int lbr, int F, int H, int D, int d, const float *x, const float *w,
                            const float *b, const float *keep, float *y) {
    const int G = rnn_gates(cell), GH = G * H, C = F + H;
    float h[32] = {0}, c[32] = {0}, Wt[4 * 32 * 64], bi[4 * 32], bh[4 * 32], xg[4 * 32], hg[4 * 32], hn[32];
    for (int s = 0; s < T; s++) {
        const int t = d ? T - 1 - s : s;
        const float *mk = keep + ((size_t)t * D + d) * H;
        memcpy(Wt, w + (size_t)d * GH * C, sizeof(float) * (size_t)GH * C);
        memcpy(bi, b + (size_t)d * 2 * GH, sizeof(float) * (size_t)GH);
        memcpy(bh, b + (size_t)d * 2 * GH + GH, sizeof(float) * (size_t)GH);
        for (int j = 0; j < H; j++) {
            if (mk[j] != 0.0f) continue;
            for (int g = 0; g < G; g++) {
                memset(Wt + (size_t)(g * H + j) * C, 0, sizeof(float) * (size_t)C);
                bi[g * H + j] = bh[g * H + j] = 0.0f;
            }
            for (int r = 0; r < GH; r++) Wt[(size_t)r * C + F + j] = 0.0f;
        }
        for (int r = 0; r < GH; r++) {
            float a = bi[r], e = bh[r];
            for (int f = 0; f < F; f++) a += Wt[(size_t)r * C + f] * x[(size_t)t * F + f];
            for (int j = 0; j < H; j++) e += Wt[(size_t)r * C + F + j] * h[j];
            xg[r] = a;
            hg[r] = e;
        }
        if (cell == RNN_GRU && !lbr) /* W_hn (r h) + b_hn */
            for (int q = 0; q < H; q++) {
                float e = bh[2 * H + q];
                for (int j = 0; j < H; j++) e += Wt[(size_t)(2 * H + q) * C + F + j] * sigm(xg[j] + hg[j]) * h[j];
                hn[q] = e;
            }
        float hnew[32];
        for (int j = 0; j < H; j++) {
            if (cell == RNN_TANH) hnew[j] = tanhf(xg[j] + hg[j]);
            if (cell == RNN_LSTM) {
                const float i = sigm(xg[j] + hg[j]), f = sigm(xg[H + j] + hg[H + j]);
                const float g = tanhf(xg[2 * H + j] + hg[2 * H + j]), o = sigm(xg[3 * H + j] + hg[3 * H + j]);
                c[j] = f * c[j] + i * g;
                hnew[j] = o * tanhf(c[j]);
            }
            if (cell == RNN_GRU) {
                const float r = sigm(xg[j] + hg[j]), z = sigm(xg[H + j] + hg[H + j]);
                const float n = tanhf(xg[2 * H + j] + (lbr ? r * hg[2 * H + j] : hn[j]));
                hnew[j] = (1 - z) * n + z * h[j];
            }
        }
        memcpy(h, hnew, sizeof(float) * (size_t)H);
        for (int j = 0; j < H; j++) y[(size_t)t * D * H + (size_t)d * H + j] = h[j] * mk[j];
    }
}

static void check_mask_kernel(rnn_cell cell, int lbr, int D, const char *what) {
    enum { F = 3, H = 5 };
    const rnn_params p = {cell, 1, T, F, H, D, 1, lbr};
    const int64_t nw = rnn_weight_count(&p), nb = (int64_t)D * 2 * rnn_gates(cell) * H;
    float *w = malloc(sizeof(float) * (size_t)nw), *b = malloc(sizeof(float) * (size_t)nb);
    float x[T * F], keep[T * 2 * H], got[T * 2 * H], want[T * 2 * H];
    float *scratch = malloc(sizeof(float) * rnn_scratch_floats(&p));
    ts_rng r;
    ts_rng_seed(&r, 7 + (uint64_t)cell * 3 + (uint64_t)lbr + 10 * (uint64_t)D);
    for (int64_t i = 0; i < nw; i++) w[i] = ts_rng_uniform(&r) - 0.5f;
    for (int64_t i = 0; i < nb; i++) b[i] = ts_rng_uniform(&r) - 0.5f;
    for (int i = 0; i < T * F; i++) x[i] = 2 * ts_rng_uniform(&r) - 1;
    for (int i = 0; i < T * D * H; i++) keep[i] = ts_rng_below(&r, 3) ? 1.0f : 0.0f; /* a third removed */
    rnn_forward_ref(&p, x, NULL, NULL, w, b, keep, got, NULL, scratch, 0, 1);
    for (int d = 0; d < D; d++) per_step_copies(cell, lbr, F, H, D, d, x, w, b, keep, want);
    double worst = 0;
    int zero_out = 1;
    for (int i = 0; i < T * D * H; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        zero_out &= keep[i] != 0.0f || got[i] == 0.0f;
    }
    CHECK(worst < 1e-5, "%s: the step mask computes the per-step weight copies (max diff %g)", what, worst);
    CHECK(zero_out, "%s: a unit masked at a step outputs exactly 0 there", what);
    /* constant-time mode gives the same */
    float ct[T * 2 * H];
    rnn_forward_ref(&p, x, NULL, NULL, w, b, keep, ct, NULL, scratch, 1, 1);
    double dct = 0;
    for (int i = 0; i < T * D * H; i++) dct = fmax(dct, fabs(ct[i] - got[i]));
    CHECK(dct < 1e-5, "%s: constant-time kernels agree (%g)", what, dct);
    /* final states (sequence=0, a classifier's unrolled module) of a sample of L < T
     * real steps: every step's output at its last real step (step 0 backward) */
    const int32_t len[1] = {T - 2};
    rnn_params p0 = p;
    p0.sequence = 0;
    float fin[2 * H];
    for (int c = 0; c < 2; c++) {
        rnn_forward_ref(&p, x, len, NULL, w, b, keep, got, NULL, scratch, c, 1);
        rnn_forward_ref(&p0, x, len, NULL, w, b, keep, fin, NULL, scratch, c, 1);
        int same = 1;
        for (int d = 0; d < D; d++)
            for (int j = 0; j < H; j++) same &= fin[d * H + j] == got[(d ? 0 : len[0] - 1) * D * H + d * H + j];
        CHECK(same, "%s%s: masked final states are the last real step's masked outputs", what,
              c ? " (constant-time)" : "");
    }
    free(w);
    free(b);
    free(scratch);
}

static void test_mask_kernel(void) {
    check_mask_kernel(RNN_LSTM, 0, 1, "lstm");
    check_mask_kernel(RNN_LSTM, 0, 2, "bidirectional lstm");
    check_mask_kernel(RNN_GRU, 1, 1, "gru");
    check_mask_kernel(RNN_GRU, 0, 2, "gru without linear_before_reset, bidirectional");
    check_mask_kernel(RNN_TANH, 0, 1, "tanh rnn");
}

/* In a model, a unit masked at step t does not reach the head at t: changing the
 * head's weights for that unit changes the outputs at the other steps only. */
static void test_mask_in_model(void) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx,
                             "input shape=10\nembedding name=e vocab=14 dim=4\n"
                             "gru name=g in=e hidden=6 step_mask=1\ndense name=out out=3\n",
                             "masked.arch", NULL, 0, 3, &m) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    const int li = find_layer(m, "g"), ho = find_layer(m, "out");
    float *keep = tensor_data(m, m->layers[li].mask); /* (T, 1, 6), all 1 after creation */
    int ones = 1;
    for (int i = 0; i < T * 6; i++) ones &= keep[i] == 1.0f;
    CHECK(ones, "a new step mask keeps every unit");
    keep[4 * 6 + 2] = 0.0f; /* unit 2 at step 4 */
    float x[T], a[T * 3], b2[T * 3];
    for (int t = 0; t < T; t++) x[t] = (float)(1 + t % 13);
    CHECK(ts_model_predict(g_ctx, m, x, 1, a) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *hw = tensor_data(m, m->layers[ho].weight); /* (3, 6) */
    for (int o = 0; o < 3; o++) hw[o * 6 + 2] += 1.0f;
    ts_model_params_changed(m);
    CHECK(ts_model_predict(g_ctx, m, x, 1, b2) == TS_OK, "%s", ts_ctx_error(g_ctx));
    int same_at_4 = 1, other_changed = 1;
    for (int t = 0; t < T; t++) {
        int same = 1;
        for (int o = 0; o < 3; o++) same &= a[t * 3 + o] == b2[t * 3 + o];
        if (t == 4) same_at_4 = same;
        else other_changed &= !same;
    }
    CHECK(same_at_4 && other_changed, "unit 2 reaches the head at every step but step 4");
    ts_model_free(m);
}

/* ---- the tagger */

/* Texts of 3..T tokens from VOCAB: markers 1..3 (a fifth of the tokens), the rest
 * fillers; a token's tag is the last marker at or before it (0 before any). */
static ts_text_dataset *make_tags(int64_t count, uint64_t seed) {
    ts_text_dataset *ds = test_alloc_texts(count, T, TS_SEQ_TAG, K, "synthetic-last-marker");
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int64_t i = 0; i < count; i++) {
        const int len = 3 + (int)ts_rng_below(&r, T - 2);
        ds->lengths[i] = len;
        int32_t *tok = ds->tokens + i * T, *tag = ds->labels + i * T;
        int last = 0;
        for (int t = 0; t < T; t++) {
            if (t >= len) {
                tag[t] = -1;
                continue;
            }
            tok[t] = ts_rng_below(&r, 5) ? 4 + (int32_t)ts_rng_below(&r, VOCAB - 4) : 1 + (int32_t)ts_rng_below(&r, 3);
            last = tok[t] <= 3 ? tok[t] : last;
            tag[t] = last;
        }
    }
    return ds;
}

static ts_text_dataset *g_train, *g_testset;
static float *g_x;      /* (NTEST, T) */
static float *g_logits; /* (NTEST, T, K) the origin's */
static ts_model *g_model;
static ts_module **g_unrolled;

static int argmax(const float *row, int k) {
    int b = 0;
    for (int j = 1; j < k; j++) b = row[j] > row[b] ? j : b;
    return b;
}

/* Share of real test tokens where out (NTEST, T, k) agrees with the origin, and
 * the token accuracy of out. */
static double agreement(const float *out, double *acc) {
    int64_t n = 0, same = 0, right = 0;
    for (int64_t i = 0; i < (int64_t)NTEST * T; i++) {
        if (g_testset->labels[i] < 0) continue;
        const int a = argmax(out + i * K, K);
        n++;
        same += a == argmax(g_logits + i * K, K);
        right += a == g_testset->labels[i];
    }
    *acc = (double)right / (double)n;
    return (double)same / (double)n;
}

/* Module c says yes (score > 0) to every test token of tag c the model is sure of. */
static void check_own(ts_module **mods, const char *what) {
    float *score = malloc(sizeof(float) * NTEST * T);
    for (int c = 0; c < K; c++) {
        ts_model *mm = NULL;
        CHECK(ts_module_model(g_ctx, mods[c], &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!mm) continue;
        CHECK(ts_model_predict(g_ctx, mm, g_x, NTEST, score) == TS_OK, "%s", ts_ctx_error(g_ctx));
        int sure = 0, yes = 0;
        for (int64_t i = 0; i < (int64_t)NTEST * T; i++) {
            const float *row = g_logits + i * K;
            if (g_testset->labels[i] != c || argmax(row, K) != c) continue;
            double z = 0;
            for (int j = 0; j < K; j++) z += exp((double)(row[j] - row[c]));
            if (1.0 / z <= 0.9) continue;
            sure++;
            yes += score[i] > 0;
        }
        double own = 0, rest = 0;
        CHECK(ts_module_evaluate_text(g_ctx, mods[c], g_testset, 64, &own, &rest) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        printf("  %s module %d: %d positives, units %lld/%lld, params %lld/%lld, yes to %d of %d sure tokens, "
               "own %.3f, rest %.3f\n",
               what, c, in.positives, (long long)in.units_kept, (long long)in.units, (long long)in.params_kept,
               (long long)in.params, yes, sure, own, rest);
        CHECK(sure > 50 && yes == sure, "%s: module %d says yes to %d of the %d tokens the model is sure of", what, c,
              yes, sure);
        CHECK(own > 0.9 && rest > 0.8, "%s: module %d alone: own %.3f, rest %.3f", what, c, own, rest);
        ts_model_free(mm);
    }
    free(score);
}

static ts_module **decompose(int rolled, const char *what, double *agree_out) {
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    cfg.positives = POSITIVES;
    cfg.rolled = rolled;
    ts_module **mods = NULL;
    int n = 0;
    CHECK(ts_decompose_text(g_ctx, g_model, g_train, &cfg, NULL, 0, &mods, &n) == TS_OK && n == K, "%s: %s", what,
          ts_ctx_error(g_ctx));
    if (!mods) return NULL;
    check_own(mods, what);
    ts_model *cm = NULL;
    CHECK(ts_compose(g_ctx, mods, K, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm) {
        float *out = malloc(sizeof(float) * NTEST * T * K);
        CHECK(ts_model_predict(g_ctx, cm, g_x, NTEST, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        double acc = 0, oacc = 0;
        *agree_out = agreement(out, &acc);
        agreement(g_logits, &oacc);
        ts_eval_report ev;
        CHECK(ts_evaluate_text(g_ctx, cm, g_testset, 64, &ev, NULL) == TS_OK && fabs(ev.top1 - acc) < 1e-9,
              "%s: ts_evaluate_text scores the composed tagger per token (%s)", what, ts_ctx_error(g_ctx));
        ts_eval_report_free(&ev);
        printf("  %s: origin token accuracy %.4f, composed %.4f (%+.2f points), agreement %.4f\n", what, oacc, acc,
               100 * (acc - oacc), *agree_out);
        free(out);
    }
    ts_model_free(cm);
    return mods;
}

static void test_decompose(void) {
    g_model = test_train_text_adam(g_ctx, TAGGER, 0, g_train, NULL, 5, 6, NULL);
    if (!g_model) return;
    CHECK(ts_model_predict(g_ctx, g_model, g_x, NTEST, g_logits) == TS_OK, "%s", ts_ctx_error(g_ctx));
    double acc = 0, agree = 0;
    agreement(g_logits, &acc);
    CHECK(acc >= 0.95, "the tagger learns the task: test token accuracy %.3f", acc);
    g_unrolled = decompose(0, "unrolled", &agree);
    CHECK(agree >= 0.95, "unrolled: the composition tags like the model on %.3f of the tokens", agree);
    int masked = 0;
    for (int c = 0; g_unrolled && c < K; c++) masked += g_unrolled[c]->origin->layers[2].step_mask;
    CHECK(masked > 0, "unrolled modules carry a per-step mask (%d of %d)", masked, K);
    ts_module **rolled = decompose(1, "rolled", &agree);
    for (int c = 0; rolled && c < K; c++)
        CHECK(!rolled[c]->origin->layers[2].step_mask, "rolled module %d has no step mask", c);
    ts_modules_free(rolled, K);
}

/* Two tags composed (reuse) evaluate on a set where the other tags are not scored. */
static void test_reuse(void) {
    if (!g_unrolled) return;
    ts_module *two[2] = {g_unrolled[3], g_unrolled[1]};
    ts_model *cm = NULL;
    CHECK(ts_compose(g_ctx, two, 2, NULL, &cm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const int cls[2] = {3, 1};
    ts_text_dataset *sel = NULL;
    CHECK(ts_text_dataset_select(g_ctx, g_testset, cls, 2, &sel) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (cm && sel) {
        ts_eval_report ev;
        CHECK(ts_evaluate_text(g_ctx, cm, sel, 64, &ev, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        int64_t tokens = 0;
        for (int64_t i = 0; i < (int64_t)NTEST * T; i++)
            tokens += g_testset->labels[i] == 3 || g_testset->labels[i] == 1;
        printf("  reuse of tags 3 and 1: token accuracy %.4f on %lld tokens\n", ev.top1, (long long)ev.count);
        CHECK(ev.count == tokens && ev.top1 > 0.95, "reuse: %lld tokens scored (%lld), accuracy %.3f",
              (long long)ev.count, (long long)tokens, ev.top1);
        ts_eval_report_free(&ev);
    }
    ts_text_dataset_free(sel);
    ts_model_free(cm);
    /* a tagger's module beside a classifier's is refused */
    ts_model *clf = NULL;
    ts_module *cmod = NULL;
    CHECK(ts_model_from_arch(g_ctx,
                             "input shape=10\nembedding name=e vocab=14 dim=4\nlstm name=l in=e hidden=4 sequence=0\n"
                             "dense name=out out=classes\n",
                             "clf.arch", NULL, K, 1, &clf) == TS_OK &&
              module_create(g_ctx, clf, 0, &cmod) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    ts_module *mixed[2] = {g_unrolled[0], cmod};
    CHECK(cmod && ts_compose(g_ctx, mixed, 2, NULL, &cm) == TS_ESHAPE && strstr(ts_ctx_error(g_ctx), "tagger"),
          "a tagger's module beside a classifier's is refused: %s", ts_ctx_error(g_ctx));
    ts_module_free(cmod);
    ts_model_free(clf);
}

/* Byte offset of the step mask's first value in a model file (the tensor's name, dtype,
 * role, rank, three dimensions, then the floats), or 0. */
static size_t mask_offset(const uint8_t *d, size_t n) {
    const char *name = "l.step_keep";
    const size_t ln = strlen(name);
    for (size_t i = 4; i + ln < n; i++)
        if (!memcmp(d + i, name, ln) && d[i - 4] == ln) return i + ln + 1 + 1 + 4 + 3 * 8;
    return 0;
}

static void test_files(void) {
    if (!g_unrolled) return;
    int c = 0;
    while (c < K && !g_unrolled[c]->origin->layers[2].step_mask) c++;
    if (c == K) return;
    /* a module is not trained: training through its step mask is refused, the layer named */
    ts_model *tm = NULL;
    ts_trainer *tr = NULL;
    ts_train_config tc;
    ts_train_config_default(&tc);
    tc.epochs = 1;
    CHECK(model_clone(g_ctx, g_unrolled[c]->origin, &tm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_status ts = tm ? ts_trainer_create_text(g_ctx, tm, g_train, NULL, &tc, &tr) : TS_EINVAL;
    if (!ts) ts = ts_trainer_run(g_ctx, tr, NULL);
    CHECK(ts == TS_EUNSUPPORTED && strstr(ts_ctx_error(g_ctx), "'l' has a per-step unit mask"),
          "training a module with a step mask is refused: %s", ts_ctx_error(g_ctx));
    ts_trainer_free(tr);
    ts_model_free(tm);
    char path[512], mpath[512];
    snprintf(path, sizeof path, "%s/tag%d.tsm", g_tmp, c);
    snprintf(mpath, sizeof mpath, "%s/tag%d.tsr", g_tmp, c);
    ts_module *back = NULL;
    ts_model *mm = NULL, *mb = NULL, *loaded = NULL;
    CHECK(ts_module_save(g_ctx, g_unrolled[c], path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_load(g_ctx, path, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_module_model(g_ctx, g_unrolled[c], &mm) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (back) CHECK(ts_module_model(g_ctx, back, &mb) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float *a = malloc(sizeof(float) * NTEST * T), *b = malloc(sizeof(float) * NTEST * T);
    if (mm && mb) {
        CHECK(ts_model_predict(g_ctx, mm, g_x, NTEST, a) == TS_OK &&
                  ts_model_predict(g_ctx, mb, g_x, NTEST, b) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        CHECK(!memcmp(a, b, sizeof(float) * NTEST * T), "a module file keeps its step mask: the same scores");
        const layer *la = &mm->layers[find_layer(mm, "l")], *lb = &mb->layers[find_layer(mb, "l")];
        CHECK(la->step_mask && lb->step_mask &&
                  !memcmp(tensor_data(mm, la->mask), tensor_data(mb, lb->mask),
                          sizeof(float) * (size_t)mm->tensors[la->mask].numel),
              "the mask itself round-trips");
    }
    /* the module's model as a model file: version 2, and what damage is refused */
    CHECK(mm && ts_model_save(g_ctx, mm, mpath) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_load(g_ctx, mpath, &loaded) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (loaded) {
        CHECK(ts_model_predict(g_ctx, loaded, g_x, NTEST, b) == TS_OK && !memcmp(a, b, sizeof(float) * NTEST * T),
              "a model file keeps the step mask");
        ts_model_free(loaded);
        loaded = NULL;
    }
    size_t n = 0;
    uint8_t *d = test_read_file(mpath, &n);
    const size_t at = d ? mask_offset(d, n) : 0;
    CHECK(d && d[4] == 2 && at > 0 && at + 4 < n, "the file is version 2 and holds l.step_keep");
    if (d && at) {
        char bad[512];
        snprintf(bad, sizeof bad, "%s/bad.tsr", g_tmp);
        const float half = 0.5f;
        uint8_t *e = malloc(n);
        memcpy(e, d, n);
        memcpy(e + at + 4, &half, 4);
        CHECK(test_write_file(bad, e, n) && ts_model_load(g_ctx, bad, &loaded) == TS_EFORMAT && !loaded,
              "a mask value of 0.5 is refused");
        const char *msg = ts_ctx_error(g_ctx);
        CHECK(strstr(msg, "step_keep") && strstr(msg, "0 or 1") && !strchr(msg, '\n'), "message: %s", msg);
        memcpy(e, d, n);
        e[4] = 1; /* version 1 cannot hold a step mask */
        CHECK(test_write_file(bad, e, n) && ts_model_load(g_ctx, bad, &loaded) == TS_EFORMAT && !loaded,
              "a version 1 file with a step mask is refused");
        CHECK(strstr(ts_ctx_error(g_ctx), "version 1"), "message: %s", ts_ctx_error(g_ctx));
        e[4] = 3; /* a newer version: refused by its number */
        CHECK(test_write_file(bad, e, n) && ts_model_load(g_ctx, bad, &loaded) == TS_EUNSUPPORTED && !loaded,
              "a version 3 file is refused");
        CHECK(strstr(ts_ctx_error(g_ctx), "reads versions 1 to 2"), "message: %s", ts_ctx_error(g_ctx));
        CHECK(test_write_file(bad, d, at + 8) && ts_model_load(g_ctx, bad, &loaded) != TS_OK && !loaded &&
                  !strchr(ts_ctx_error(g_ctx), '\n'),
              "a file cut inside the mask is refused: %s", ts_ctx_error(g_ctx));
        free(e);
    }
    free(d);
    free(a);
    free(b);
    ts_model_free(mm);
    ts_model_free(mb);
    ts_module_free(back);
}

static void test_refusals(void) {
    if (!g_model) return;
    ts_decompose_text_config cfg;
    ts_decompose_text_config_default(&cfg);
    ts_module **mods = NULL;
    int n = 0;
    cfg.step_min = 0;
    CHECK(ts_decompose_text(g_ctx, g_model, g_train, &cfg, NULL, 0, &mods, &n) == TS_EINVAL && !mods,
          "step_min 0 is refused");
    cfg.step_min = 10;
    cfg.rolled = 2;
    CHECK(ts_decompose_text(g_ctx, g_model, g_train, &cfg, NULL, 0, &mods, &n) == TS_EINVAL && !mods,
          "rolled 2 is refused");
    ts_decompose_text_config_default(&cfg);
    ts_text_dataset *clf = test_first_marker_texts(50, T, VOCAB, K, 3);
    CHECK(ts_decompose_text(g_ctx, g_model, clf, &cfg, NULL, 0, &mods, &n) == TS_EUNSUPPORTED && !mods &&
              strstr(ts_ctx_error(g_ctx), "not a tagging set"),
          "a tagger with a classification set is refused: %s", ts_ctx_error(g_ctx));
    test_free_texts(clf);
    /* a module's model is not decomposed again */
    if (g_unrolled)
        for (int c = 0; c < K; c++)
            if (g_unrolled[c]->origin->layers[2].step_mask) {
                CHECK(ts_decompose_text(g_ctx, g_unrolled[c]->origin, g_train, &cfg, NULL, 0, &mods, &n) ==
                              TS_EUNSUPPORTED &&
                          strstr(ts_ctx_error(g_ctx), "per-step unit mask"),
                      "a masked model is refused: %s", ts_ctx_error(g_ctx));
                break;
            }
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 1);
    g_train = make_tags(NTRAIN, 21);
    g_testset = make_tags(NTEST, 22);
    g_x = malloc(sizeof(float) * NTEST * T);
    g_logits = malloc(sizeof(float) * NTEST * T * K);
    for (int i = 0; i < NTEST * T; i++) g_x[i] = (float)g_testset->tokens[i];
    RUN(test_mask_kernel);
    RUN(test_mask_in_model);
    RUN(test_decompose);
    RUN(test_reuse);
    RUN(test_files);
    RUN(test_refusals);
    ts_modules_free(g_unrolled, K);
    ts_model_free(g_model);
    free(g_x);
    free(g_logits);
    test_free_texts(g_train);
    test_free_texts(g_testset);
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_tagger_decompose");
}
