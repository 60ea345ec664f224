/* Decomposing a many-to-one recurrent classifier into per-label modules (Imtiaz, Pan
 * & Rajan, ICSE'23; brief ../shared/reference/modularization-successors.md,
 * docs/sequences.md): rolled by default (one removal set for every step), or
 * unrolled (a set per step from that step's states, identify_steps).
 *
 * Per label c: up to M positives (texts of c the model classifies right with
 * probability above the confidence) and M/(labels-1) negatives from each other
 * label, drawn in a seeded order in one pass shared by every module. The hidden
 * states of every recurrent layer at every real step of those texts are pooled per
 * unit. Concern and tangling identification per unit: a relu cell's unit stays when
 * a positive or a negative makes it positive at some step (Alg. 5); a tanh, lstm or
 * gru unit goes when the trimmed mean of |state| over the positives is below the
 * negatives', most negative differences first, up to max_remove of its layer (Alg.
 * 4). Removed units are cut out of the model (rnn_units.c); the head is channelled
 * when the module runs (compose.c), as for image modules. */
#include "modular.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ts_decompose_text_config_default(ts_decompose_text_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->positives = 500;
    cfg->confidence = 0.9f;
    cfg->tangling = 1.0f;
    cfg->max_remove = -1.0f; /* each kind's: ts_decompose_text_max_remove */
    cfg->outlier_m = 2.0f;
    cfg->batch = 128;
    cfg->step_min = 10;
    cfg->rolled = -1;
    cfg->compensate = cfg->fit_scores = 1; /* rank_by_margin 0: it cost a GRU 0.4 points (bench/RESULTS.md) */
}

float ts_decompose_text_max_remove(const ts_decompose_text_config *cfg, ts_seq_task task) {
    if (cfg && cfg->max_remove >= 0.0f) return cfg->max_remove;
    return task == TS_SEQ_TRANSLATE ? 0.05f : 0.2f;
}

static ts_status check_config(ts_ctx *ctx, const ts_decompose_text_config *c) {
    const char *w = "decompose (text)";
    if (c->positives < 1 || c->positives > (1 << 20))
        return ts_fail(ctx, TS_EINVAL, "%s: positives %d out of [1, %d]", w, c->positives, 1 << 20);
    if (!(c->confidence >= 0.0f && c->confidence < 1.0f))
        return ts_fail(ctx, TS_EINVAL, "%s: confidence %g out of [0, 1)", w, (double)c->confidence);
    if (!(c->tangling > 0.0f && c->tangling <= 100.0f))
        return ts_fail(ctx, TS_EINVAL, "%s: tangling %g out of (0, 100]", w, (double)c->tangling);
    if (!(c->max_remove == -1.0f || (c->max_remove >= 0.0f && c->max_remove <= 1.0f)))
        return ts_fail(ctx, TS_EINVAL, "%s: max_remove %g out of [0, 1] (or -1: the default)", w, (double)c->max_remove);
    if (!(c->outlier_m > 0.0f && c->outlier_m < INFINITY))
        return ts_fail(ctx, TS_EINVAL, "%s: outlier_m %g is not positive", w, (double)c->outlier_m);
    if (c->batch < 1 || c->batch > 4096) return ts_fail(ctx, TS_EINVAL, "%s: batch %d out of [1, 4096]", w, c->batch);
    if (c->rolled < -1 || c->rolled > 1)
        return ts_fail(ctx, TS_EINVAL, "%s: rolled %d is not -1, 0 or 1", w, c->rolled);
    if (c->step_min < 1 || c->step_min > (1 << 20))
        return ts_fail(ctx, TS_EINVAL, "%s: step_min %d out of [1, %d]", w, c->step_min, 1 << 20);
    if ((c->rank_by_margin | c->compensate | c->fit_scores | c->rank_by_use) & ~1)
        return ts_fail(ctx, TS_EINVAL, "%s: rank_by_margin, compensate, fit_scores and rank_by_use are 0 or 1", w);
    return TS_OK;
}

/* ---- drawing the texts */

enum { ROLE_POS = 1, ROLE_NEG = 2 };
typedef struct drawn {
    int64_t idx;   /* in the training set */
    int label;
    uint8_t role;  /* ROLE_POS: a positive of its label; ROLE_NEG: a negative for the others */
} drawn;

/* Row y's probability and whether y is the argmax, from logits or, after a final
 * softmax, probabilities. */
float text_prob_row(const float *row, int k, int y, int probs, int *top) {
    if (!probs) return decompose_prob_of(row, k, y, top);
    int best = 0;
    for (int j = 1; j < k; j++) best = row[j] > row[best] ? j : best;
    *top = best == y;
    return row[y];
}

void text_draw_order(int64_t *perm, int64_t n, uint64_t seed) {
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ts_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

ts_status text_modules_hand_over(ts_status st, ts_module **mods, int nmod, ts_module ***modules, int *count) {
    if (st) {
        ts_modules_free(mods, nmod);
        return st;
    }
    *modules = mods;
    *count = nmod;
    return TS_OK;
}

/* Fills dr (capacity: the whole set) with the drawn texts, in draw order. */
static ts_status draw(ts_ctx *ctx, ts_model *work, const ts_text_dataset *ds, const ts_decompose_text_config *cfg,
                      const int *want_pos, int nneg, drawn *dr, int64_t *ndr, int *npos) {
    const int K = work->classes, T = ds->max_len, B = cfg->batch;
    const int probs = work->layers[work->nlayers - 1].kind == LAYER_SOFTMAX;
    int64_t *perm = malloc(sizeof *perm * (size_t)ds->count), *ib = malloc(sizeof *ib * (size_t)B);
    int *neg = calloc((size_t)K, sizeof *neg);
    float *x = malloc(sizeof *x * (size_t)B * (size_t)T), *logits = malloc(sizeof *logits * (size_t)B * (size_t)K);
    ts_status st = TS_OK;
    if (!perm || !ib || !neg || !x || !logits) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (text): out of memory");
        goto done;
    }
    text_draw_order(perm, ds->count, cfg->seed);
    memset(npos, 0, sizeof *npos * (size_t)K);
    *ndr = 0;
    for (int64_t cursor = 0; cursor < ds->count;) {
        int b = 0;
        while (b < B && cursor < ds->count) {
            const int64_t idx = perm[cursor++];
            const int c = ds->labels[idx];
            if (npos[c] >= want_pos[c] && neg[c] >= nneg) continue;
            for (int t = 0; t < T; t++) x[(size_t)b * T + t] = (float)ds->tokens[idx * T + t];
            ib[b++] = idx;
        }
        if (!b) break;
        if ((st = ts_model_predict(ctx, work, x, b, logits))) goto done;
        for (int i = 0; i < b; i++) {
            const int c = ds->labels[ib[i]];
            int top;
            const float p = text_prob_row(logits + (size_t)i * K, K, c, probs, &top);
            uint8_t role = 0;
            if (npos[c] < want_pos[c] && top && p > cfg->confidence) {
                role |= ROLE_POS;
                npos[c]++;
            }
            if (neg[c] < nneg) {
                role |= ROLE_NEG;
                neg[c]++;
            }
            if (role) dr[(*ndr)++] = (drawn){ib[i], c, role};
        }
        int all = 1;
        for (int c = 0; c < K && all; c++) all = npos[c] >= want_pos[c] && neg[c] >= nneg;
        if (all) break;
    }
done:
    free(perm);
    free(ib);
    free(neg);
    free(x);
    free(logits);
    return st;
}

/* ---- recording hidden states */

/* The states of one chain layer at every real step of every drawn text:
 * vals (steps, U), rows of text s from off[s] to off[s + 1]. */
typedef struct states {
    int64_t U;
    int64_t *off; /* (ndr + 1) */
    float *vals;
} states;

typedef struct recorder {
    const rnn_chain *ch;
    states *st;
    int T;
    int64_t base; /* the drawn index of the call's first text */
} recorder;

static int record(void *user, int layer, int64_t first, int n, const float *out) {
    const recorder *rc = user;
    const int k = rnn_chain_index(rc->ch, layer);
    if (k < 0) return 1;
    const states *s = &rc->st[k];
    for (int j = 0; j < n; j++) {
        const int64_t d = rc->base + first + j, steps = s->off[d + 1] - s->off[d];
        memcpy(s->vals + s->off[d] * s->U, out + (size_t)j * (size_t)rc->T * (size_t)s->U,
               sizeof(float) * (size_t)(steps * s->U));
    }
    return 0;
}

/* Steps the layer reads as real: 1 + the last non-zero id when it reads the ids (the
 * padding rule of docs/sequences.md), else every step. */
static int64_t real_steps(const int32_t *ids, int T, int masked) {
    if (!masked) return T;
    int64_t n = 0;
    for (int t = 0; t < T; t++) n = ids[t] ? t + 1 : n;
    return n;
}

/* Runs m over the drawn texts in batches, cap's sink seeing each batch's layers;
 * *base is the drawn index of the batch's first text as the sink runs. */
static ts_status capture_drawn(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, const drawn *dr, int64_t ndr,
                               int batch, const ts_capture *cap, int64_t *base) {
    const int T = ds->max_len;
    const int64_t out_per = shape_numel(&m->layers[m->nlayers - 1].out);
    float *x = malloc(sizeof *x * (size_t)batch * (size_t)T), *out = malloc(sizeof *out * (size_t)batch * (size_t)out_per);
    ts_status st = x && out ? TS_OK : ts_fail(ctx, TS_ENOMEM, "decompose (text): out of memory");
    for (int64_t b0 = 0; b0 < ndr && !st; b0 += batch) {
        const int n = (int)(ndr - b0 < batch ? ndr - b0 : batch);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++) x[(size_t)i * T + t] = (float)ds->tokens[dr[b0 + i].idx * T + t];
        *base = b0;
        st = ts_model_predict_capture(ctx, m, x, n, out, cap);
    }
    free(x);
    free(out);
    return st;
}

static ts_status record_states(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const ts_text_dataset *ds,
                               const drawn *dr, int64_t ndr, int batch, states *st) {
    const int T = ds->max_len;
    ts_model *probe = NULL;
    ts_status s = rnn_probe_model(ctx, m, ch, &probe);
    if (s) return s;
    for (int k = 0; k < ch->n && !s; k++) {
        states *q = &st[k];
        q->U = (int64_t)ch->dirs[k] * ch->hidden[k];
        if (!(q->off = malloc(sizeof *q->off * (size_t)(ndr + 1)))) {
            s = ts_fail(ctx, TS_ENOMEM, "decompose (text): out of memory");
            break;
        }
        q->off[0] = 0;
        for (int64_t d = 0; d < ndr; d++) q->off[d + 1] = q->off[d] + real_steps(ds->tokens + dr[d].idx * T, T, ch->ids[k]);
        q->vals = ts_alloc(ctx, sizeof(float) * (size_t)(q->off[ndr] ? q->off[ndr] : 1) * (size_t)q->U,
                           "hidden states of the drawn texts");
        if (!q->vals) s = TS_ENOMEM;
    }
    recorder rc = {ch, st, T, 0};
    const ts_capture cap = {ch->layer, ch->n, record, &rc};
    if (!s) s = capture_drawn(ctx, probe, ds, dr, ndr, batch, &cap, &rc.base);
    ts_model_free(probe);
    return s;
}

/* ---- statistics per unit */

/* The k-th smallest of v[0..n) (reorders v). */
static float select_kth(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return v[k];
}

/* numpy's median: the mean of the two middle values when n is even (reorders v). */
static double median(float *v, int64_t n) {
    const double hi = select_kth(v, n, n / 2);
    if (n % 2) return hi;
    float lo = v[0];
    for (int64_t i = 1; i < n / 2; i++) lo = v[i] > lo ? v[i] : lo; /* the lower half is v[0..n/2) */
    return (lo + hi) / 2;
}

/* The paper's central tendency of a unit: the mean of a = |state| over the values
 * whose distance to the median is at most m median absolute deviations (the median
 * when none is; 0 for no values). a: (n), scratch: (n). */
static double trimmed_mean(const float *a, float *scratch, int64_t n, double m) {
    if (!n) return 0;
    memcpy(scratch, a, sizeof(float) * (size_t)n);
    const double med = median(scratch, n);
    for (int64_t i = 0; i < n; i++) scratch[i] = (float)fabs(a[i] - med);
    const double mad = median(scratch, n);
    double sum = 0;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i] - med) <= m * mad) {
            sum += a[i];
            kept++;
        }
    return kept ? sum / (double)kept : med;
}

/* Unit a before unit b: smaller difference first, then the lower index. */
static int unit_after(const double *diff, int a, int b) { return diff[a] > diff[b] || (diff[a] == diff[b] && a > b); }

/* Sorts units by diff, ascending, ties by index (no qsort_r in C11: an insertion
 * sort, a layer's units are few). */
static void sort_units(int *order, int64_t n, const double *diff) {
    for (int64_t i = 1; i < n; i++) {
        const int v = order[i];
        int64_t j = i;
        while (j > 0 && unit_after(diff, order[j - 1], v)) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

/* The units the rule removed from the last recurrent layer (keep 0; diff < 0 marks
 * every candidate), chosen again: as many, the candidates least important to label c's
 * channelled margin, importance = |head weight of the unit for c less its mean over the
 * other labels| x the unit's mean |state| on the rows pos and neg. imp: (U) doubles,
 * cand: (U) ints, scratch. */
static void rank_by_margin(const ts_model *m, const rnn_chain *ch, int c, const states *s, const int64_t *pos,
                           int64_t np, const int64_t *neg, int64_t nn, const double *diff, double *imp, int *cand,
                           uint8_t *keep) {
    const layer *hl = &m->layers[ch->head];
    const float *HW = tensor_data((ts_model *)m, hl->weight); /* (K, U) */
    const int K = (int)hl->features;
    const int64_t U = s->U;
    int64_t nc = 0, removed = 0;
    for (int64_t u = 0; u < U; u++) {
        removed += !keep[u];
        double sum = 0;
        for (int q = 0; q < K; q++) sum += HW[(size_t)q * U + u];
        const double own = HW[(size_t)c * U + u], wm = K > 1 ? own - (sum - own) / (K - 1) : own;
        double mh = 0;
        for (int64_t i = 0; i < np; i++) mh += fabsf(s->vals[pos[i] * U + u]);
        for (int64_t i = 0; i < nn; i++) mh += fabsf(s->vals[neg[i] * U + u]);
        imp[u] = fabs(wm) * mh / (double)(np + nn ? np + nn : 1);
        if (diff[u] < 0) cand[nc++] = (int)u;
        keep[u] = 1;
    }
    rnn_remove_least(imp, cand, nc, removed, keep);
}

void rnn_remove_least(const double *score, int *cand, int64_t nc, int64_t count, uint8_t *keep) {
    for (int64_t r = 0; r < count && r < nc; r++) {
        int64_t best = r;
        for (int64_t i = r + 1; i < nc; i++) /* the swaps below unsort cand: compare indices too */
            if (score[cand[i]] < score[cand[best]] || (score[cand[i]] == score[cand[best]] && cand[i] < cand[best]))
                best = i;
        const int t = cand[r];
        cand[r] = cand[best];
        cand[best] = t;
        keep[cand[r]] = 0;
    }
}

/* keep (U) for label c's module in chain layer k: the rows of every real step of the
 * label's positives against those of the negatives drawn for it. a, scratch, pos, neg:
 * room for every recorded step; diff, imp: (U) doubles; order: (U) ints. */
static void identify(const ts_model *m, const rnn_chain *ch, int k, const states *s, const drawn *dr, int64_t ndr,
                     int c, const ts_decompose_text_config *cfg, float *a, float *scratch, int64_t *pos,
                     int64_t *neg, double *diff, double *imp, int *order, uint8_t *keep) {
    const layer *l = &m->layers[ch->layer[k]];
    int64_t np = 0, nn = 0;
    for (int64_t d = 0; d < ndr; d++) {
        const int own = dr[d].label == c;
        if (own && !(dr[d].role & ROLE_POS)) continue;
        if (!own && !(dr[d].role & ROLE_NEG)) continue;
        for (int64_t r = s->off[d]; r < s->off[d + 1]; r++) {
            if (own) pos[np++] = r;
            else neg[nn++] = r;
        }
    }
    rnn_identify_rows(l->kind == LAYER_RNN && l->cell_act, s->vals, s->U, pos, np, neg, nn, cfg, a, scratch, diff,
                      order, keep);
    if (cfg->rank_by_margin && cfg->rolled == 1 && k + 1 == ch->n && !(l->kind == LAYER_RNN && l->cell_act))
        rank_by_margin(m, ch, c, s, pos, np, neg, nn, diff, imp, order, keep);
}

void rnn_identify_rows(int relu, const float *vals, int64_t U, const int64_t *pos, int64_t np, const int64_t *neg,
                       int64_t nn, const ts_decompose_text_config *cfg, float *a, float *scratch, double *diff,
                       int *order, uint8_t *keep) {
    if (relu) { /* active (> 0) on some positive or negative row */
        for (int64_t u = 0; u < U; u++) {
            keep[u] = 0;
            for (int64_t i = 0; i < np && !keep[u]; i++) keep[u] = vals[pos[i] * U + u] > 0.0f;
            for (int64_t i = 0; i < nn && !keep[u]; i++) keep[u] = vals[neg[i] * U + u] > 0.0f;
        }
        return;
    }
    for (int64_t u = 0; u < U; u++) {
        for (int64_t i = 0; i < np; i++) a[i] = fabsf(vals[pos[i] * U + u]);
        const double ct_pos = trimmed_mean(a, scratch, np, cfg->outlier_m);
        for (int64_t i = 0; i < nn; i++) a[i] = fabsf(vals[neg[i] * U + u]);
        diff[u] = ct_pos - trimmed_mean(a, scratch, nn, cfg->outlier_m);
        keep[u] = 1;
        order[u] = (int)u;
    }
    sort_units(order, U, diff);
    const int64_t cap = (int64_t)floor((double)cfg->max_remove * (double)U);
    for (int64_t i = 0; i < cap && diff[order[i]] < 0; i++) keep[order[i]] = 0;
}

/* Mean state of each unit of chain layer k over every real step of the texts label
 * c's module identified its units on (its positives and negatives): mean (U); with
 * last (U) given, also the mean final state (direction 0's last real step, direction
 * 1's first: what a classifier's head reads). acc: (2U) doubles, scratch. */
static void unit_means(const rnn_chain *ch, int k, const states *s, const drawn *dr, int64_t ndr, int c, double *acc,
                       float *mean, float *last) {
    const int64_t U = s->U, H = ch->hidden[k];
    memset(acc, 0, sizeof *acc * 2 * (size_t)U);
    int64_t rows = 0, texts = 0;
    for (int64_t d = 0; d < ndr; d++) {
        const int own = dr[d].label == c;
        if ((own && !(dr[d].role & ROLE_POS)) || (!own && !(dr[d].role & ROLE_NEG))) continue;
        if (s->off[d + 1] == s->off[d]) continue;
        for (int64_t r = s->off[d]; r < s->off[d + 1]; r++)
            for (int64_t u = 0; u < U; u++) acc[u] += s->vals[r * U + u];
        rows += s->off[d + 1] - s->off[d];
        for (int64_t u = 0; u < U; u++) acc[U + u] += s->vals[(u < H ? s->off[d + 1] - 1 : s->off[d]) * U + u];
        texts++;
    }
    for (int64_t u = 0; u < U; u++) {
        mean[u] = rows ? (float)(acc[u] / (double)rows) : 0.0f;
        if (last) last[u] = texts ? (float)(acc[U + u] / (double)texts) : 0.0f;
    }
}

/* step_keep (T, U) of label c's module in chain layer k, unrolled: at step t, the
 * rows of step t of the label's positives against those of its negatives (texts
 * shorter than t + 1 have none there); a step with fewer than step_min of either
 * takes keep, the rolled set. Scratch as identify's. */
static void identify_steps(const ts_model *m, const rnn_chain *ch, int k, const states *s, const drawn *dr,
                           int64_t ndr, int c, int T, const ts_decompose_text_config *cfg, float *a, float *scratch,
                           int64_t *pos, int64_t *neg, double *diff, int *order, const uint8_t *keep,
                           uint8_t *step_keep) {
    const layer *l = &m->layers[ch->layer[k]];
    for (int t = 0; t < T; t++) {
        int64_t np = 0, nn = 0;
        for (int64_t d = 0; d < ndr; d++) {
            const int own = dr[d].label == c;
            if (s->off[d] + t >= s->off[d + 1] || !(dr[d].role & (own ? ROLE_POS : ROLE_NEG))) continue;
            if (own) pos[np++] = s->off[d] + t;
            else neg[nn++] = s->off[d] + t;
        }
        uint8_t *kt = step_keep + (int64_t)t * s->U;
        if (np >= cfg->step_min && nn >= cfg->step_min)
            rnn_identify_rows(l->kind == LAYER_RNN && l->cell_act, s->vals, s->U, pos, np, neg, nn, cfg, a, scratch,
                              diff, order, kt);
        else memcpy(kt, keep, (size_t)s->U);
    }
}

/* ---- the modules */

static int64_t layer_macs_sum(const ts_model *m) {
    int64_t s = 0;
    for (int li = 1; li < m->nlayers; li++) s += LAYER_OPS[m->layers[li].kind].macs(m, &m->layers[li]);
    return s;
}

static int64_t chain_weights(const ts_model *m, const rnn_chain *ch) {
    int64_t s = 0;
    for (int t = 0; t < m->ntensors; t++) {
        int li = m->tensors[t].layer, in = li == ch->head;
        for (int k = 0; k < ch->n; k++) in |= li == ch->layer[k];
        s += in && m->tensors[t].role == TS_TENSOR_PARAM ? m->tensors[t].numel : 0;
    }
    return s;
}

void text_module_sizes(ts_module_info *in, const ts_model *m, const ts_model *s, int64_t weights, int64_t weights_kept) {
    in->weights = weights;
    in->weights_kept = weights_kept;
    in->jaccard = weights ? (double)weights_kept / (double)weights : 1.0;
    in->params = in->origin_params_live = ts_model_param_count(m);
    in->params_kept = ts_model_param_count(s);
    in->origin_macs = in->origin_macs_live = layer_macs_sum(m);
    in->macs_kept = layer_macs_sum(s);
    in->method = TS_DECOMPOSE_ACTIVATION;
}

ts_status text_module_make(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const uint8_t *const *keep,
                           const rnn_means *comp, const uint8_t *const *step_keep, int T, int c, int npos, int nneg,
                           ts_module **out) {
    ts_model *sliced = NULL;
    ts_status st = step_keep ? rnn_remove_units_steps(ctx, m, ch, step_keep, T, &sliced)
                             : rnn_remove_units(ctx, m, ch, keep, comp, NULL, &sliced);
    if (!st) st = module_create(ctx, sliced, c, out);
    if (!st) {
        ts_module_info *in = &(*out)->info;
        in->positives = npos;
        in->negatives = nneg;
        in->units = in->units_kept = 0;
        int64_t step_sum = 0; /* unrolled: units kept summed over the steps */
        for (int k = 0; k < ch->n; k++) {
            const int64_t U = (int64_t)ch->dirs[k] * ch->hidden[k];
            in->units += U;
            for (int64_t u = 0; u < U && !step_keep; u++) in->units_kept += keep[k][u] != 0;
            for (int64_t q = 0; step_keep && q < (int64_t)T * U; q++) step_sum += step_keep[k][q] != 0;
        }
        if (step_keep) in->units_kept = (step_sum + T / 2) / T; /* the mean over the steps */
        text_module_sizes(in, m, sliced, chain_weights(m, ch), chain_weights(sliced, ch));
    }
    ts_model_free(sliced);
    return st;
}

/* The origin's dense-head outputs (ndr, K) for every drawn text: what each module's
 * channelled margin approximates. */
typedef struct head_rec {
    float *out;
    int64_t base;
    int K;
} head_rec;

static int record_head(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    const head_rec *h = user;
    memcpy(h->out + (size_t)(h->base + first) * (size_t)h->K, out, sizeof(float) * (size_t)n * (size_t)h->K);
    return 0;
}

static ts_status origin_heads(ts_ctx *ctx, ts_model *work, int head, const ts_text_dataset *ds, const drawn *dr,
                              int64_t ndr, int batch, float *heads /* (ndr, K) */) {
    head_rec h = {heads, 0, work->classes};
    const ts_capture cap = {&head, 1, record_head, &h};
    return capture_drawn(ctx, work, ds, dr, ndr, batch, &cap, &h.base);
}

/* Scale a > 0 and shift b that bring the module's raw margins s closer to the origin's
 * margins M (least squares, positives and negatives weighted equally in total), so
 * that composed modules compare on the origin's scale; (1, 0) when the fit says
 * nothing usable. */
void rnn_fit_margins(const float *s, const float *M, const uint8_t *own, int64_t n, float *a, float *b) {
    double w[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) w[own[i] ? 1 : 0] += 1;
    double sw = 0, ss = 0, sm = 0, sss = 0, ssm = 0;
    for (int64_t i = 0; i < n; i++) {
        const double wi = 1.0 / w[own[i] ? 1 : 0];
        sw += wi;
        ss += wi * s[i];
        sm += wi * M[i];
        sss += wi * s[i] * s[i];
        ssm += wi * s[i] * M[i];
    }
    *a = 1.0f;
    *b = 0.0f;
    if (!(sw > 0)) return;
    const double var = sss / sw - (ss / sw) * (ss / sw), cov = ssm / sw - (ss / sw) * (sm / sw);
    if (!(var > 0) || !(cov > 0)) return;
    const double sa = cov / var, sb = sm / sw - sa * ss / sw;
    if (!isfinite(sa) || !isfinite(sb) || !isfinite((float)sa) || !((float)sa > 0)) return;
    *a = (float)sa;
    *b = (float)sb;
}

/* The module's yes/no threshold, as for image modules (docs/modules.md): the cut
 * with the best balanced accuracy of its scores on the drawn texts of its label
 * against the drawn negatives of the others. */
static ts_status set_threshold(ts_ctx *ctx, ts_module *mod, const ts_text_dataset *ds, const drawn *dr, int64_t ndr,
                               int batch, const float *heads /* (ndr, K) or NULL */) {
    const int T = ds->max_len, c = mod->cls;
    ts_model *mm = NULL;
    ts_status st = ts_module_model(ctx, mod, &mm);
    if (st) return st;
    float *x = malloc(sizeof *x * (size_t)batch * (size_t)T), *score = malloc(sizeof *score * (size_t)batch);
    float *sp = malloc(sizeof *sp * (size_t)ndr), *sn = malloc(sizeof *sn * (size_t)ndr);
    float *all = malloc(sizeof *all * (size_t)ndr), *M = malloc(sizeof *M * (size_t)ndr);
    uint8_t *own = malloc((size_t)ndr + 1);
    int64_t *pick = malloc(sizeof *pick * (size_t)ndr), npick = 0, np = 0, nn = 0, nall = 0;
    if (!x || !score || !sp || !sn || !pick || !all || !M || !own)
        st = ts_fail(ctx, TS_ENOMEM, "decompose (text): out of memory");
    for (int64_t d = 0; d < ndr && !st; d++)
        if (dr[d].label == c || (dr[d].role & ROLE_NEG)) pick[npick++] = d;
    for (int64_t b0 = 0; b0 < npick && !st; b0 += batch) {
        const int n = (int)(npick - b0 < batch ? npick - b0 : batch);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++) x[(size_t)i * T + t] = (float)ds->tokens[dr[pick[b0 + i]].idx * T + t];
        if ((st = ts_model_predict(ctx, mm, x, n, score))) break;
        for (int i = 0; i < n; i++) {
            if (!isfinite(score[i])) continue;
            const drawn *d = &dr[pick[b0 + i]];
            if (d->label == c) sp[np++] = score[i];
            else sn[nn++] = score[i];
            if (heads) { /* the origin's channelled margin on this text */
                const float *z = heads + (size_t)(d - dr) * (size_t)mod->origin->classes;
                const int K = mod->origin->classes;
                double sum = 0;
                for (int q = 0; q < K; q++) sum += z[q];
                M[nall] = (float)(K > 1 ? z[c] - (sum - z[c]) / (K - 1) : z[c]);
                own[nall] = d->label == c;
                all[nall++] = score[i];
            }
        }
    }
    if (!st) mod->info.threshold = np && nn ? module_balanced_threshold(sp, np, sn, nn) : 0.0f;
    if (!st && heads && nall) {
        /* scores were raw (scale 1, shift 0); the threshold moves with them */
        float a, b;
        rnn_fit_margins(all, M, own, nall, &a, &b);
        mod->info.scale = a;
        mod->info.shift = b;
        mod->info.threshold = a * mod->info.threshold + b;
    }
    free(all);
    free(M);
    free(own);
    ts_model_free(mm);
    free(x);
    free(score);
    free(sp);
    free(sn);
    free(pick);
    return st;
}

static ts_status check_args(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *train,
                            const ts_decompose_text_config *cfg, const int *classes, int n, rnn_chain *ch) {
    ts_status st = check_config(ctx, cfg);
    if (!st) st = rnn_chain_find(ctx, m, ch, "decompose (text)");
    if (!st && !ch->tagger && train->task != TS_SEQ_CLASSIFY)
        st = ts_fail(ctx, TS_EUNSUPPORTED, "decompose (text): set %s is not a classification set (one label a text)",
                     train->name);
    if (!st && ch->tagger && train->task != TS_SEQ_TAG)
        st = ts_fail(ctx, TS_EUNSUPPORTED,
                     "decompose (text): the model is a tagger but set %s is not a tagging set (a tag a token)",
                     train->name);
    if (!st) st = train_check_text(ctx, m, train, "decompose (text): training");
    const int K = st ? 0 : rnn_chain_labels(m, ch);
    if (!st && K < 2) st = ts_fail(ctx, TS_EINVAL, "decompose (text): the model has %d label", K);
    if (!st && (n < 0 || (n > 0 && !classes) || n > K))
        st = ts_fail(ctx, TS_EINVAL, "decompose (text): %d labels listed (the model has %d)", n, K);
    for (int i = 0; i < n && !st; i++)
        if (classes[i] < 0 || classes[i] >= K)
            st = ts_fail(ctx, TS_EINVAL, "decompose (text): label %d is not a label of the model (0..%d)", classes[i],
                         K - 1);
    return st;
}

ts_status ts_decompose_text(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *train,
                            const ts_decompose_text_config *cfg, const int *classes, int n, ts_module ***modules,
                            int *count) {
    if (!ctx || !m || !train || !modules || !count) return ts_fail(ctx, TS_EINVAL, "ts_decompose_text: NULL argument");
    *modules = NULL;
    *count = 0;
    ts_decompose_text_config defaults;
    if (!cfg) {
        ts_decompose_text_config_default(&defaults);
        cfg = &defaults;
    }
    if (cfg->rank_by_use && train->task != TS_SEQ_TRANSLATE) /* not silently ignored */
        return ts_fail(ctx, TS_EINVAL, "decompose (text): rank_by_use ranks a translator's decoder units; %s is not "
                       "a translation set", train->name);
    if (train->task == TS_SEQ_TRANSLATE) { /* a module per target language */
        ts_status st = check_config(ctx, cfg);
        ts_decompose_text_config eff = *cfg;
        if (eff.rolled < 0) eff.rolled = 1;
        eff.max_remove = ts_decompose_text_max_remove(cfg, train->task);
        return st ? st : decompose_translator(ctx, m, train, &eff, classes, n, modules, count);
    }
    rnn_chain ch;
    ts_status st = check_args(ctx, m, train, cfg, classes, n, &ch);
    if (st) return st;
    ts_decompose_text_config eff = *cfg;
    if (eff.rolled < 0) eff.rolled = !ch.tagger; /* each kind's better variant as measured */
    eff.max_remove = ts_decompose_text_max_remove(cfg, train->task);
    cfg = &eff;
    if (ch.tagger) return decompose_tagger(ctx, m, &ch, train, cfg, classes, n, modules, count);
    const double t0 = ts_monotonic_s();
    const int K = m->classes, nmod = n ? n : K;
    const int nneg = (int)ceil((double)cfg->tangling * cfg->positives / (K - 1));
    int *want = calloc((size_t)K, sizeof *want), *npos = calloc((size_t)K, sizeof *npos), *order = NULL;
    drawn *dr = malloc(sizeof *dr * (size_t)(train->count ? train->count : 1));
    states sts[RNN_CHAIN_MAX] = {0};
    float *a = NULL, *scratch = NULL;
    int64_t *pos = NULL, *neg = NULL;
    double *diff = NULL, *imp = NULL, *acc = NULL;
    float *means[RNN_CHAIN_MAX] = {0}, *last = NULL;
    uint8_t *keep[RNN_CHAIN_MAX] = {0}, *step_keep[RNN_CHAIN_MAX] = {0};
    const int T = train->max_len;
    ts_module **mods = calloc((size_t)nmod, sizeof *mods);
    ts_model *work = NULL;
    float *heads = NULL;
    int64_t ndr = 0;
    double shared_s = 0;
    if (!want || !npos || !dr || !mods) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (text): out of memory");
        goto done;
    }
    for (int i = 0; i < nmod; i++) want[n ? classes[i] : i] = cfg->positives;
    if ((st = model_clone(ctx, m, &work))) goto done;
    if ((st = draw(ctx, work, train, cfg, want, nneg, dr, &ndr, npos))) goto done;
    if ((st = record_states(ctx, m, &ch, train, dr, ndr, cfg->batch, sts))) goto done;
    if (cfg->rolled && cfg->fit_scores) {
        if (!(heads = ts_alloc(ctx, sizeof(float) * (size_t)(ndr ? ndr : 1) * (size_t)K, "the origin's scores"))) {
            st = TS_ENOMEM;
            goto done;
        }
        if ((st = origin_heads(ctx, work, ch.head, train, dr, ndr, cfg->batch, heads))) goto done;
    }
    shared_s = ts_monotonic_s() - t0;
    int64_t most = 1, maxU = 1;
    for (int k = 0; k < ch.n; k++) {
        most = sts[k].off[ndr] > most ? sts[k].off[ndr] : most;
        maxU = sts[k].U > maxU ? sts[k].U : maxU;
    }
    a = malloc(sizeof *a * (size_t)most);
    scratch = malloc(sizeof *scratch * (size_t)most);
    pos = malloc(sizeof *pos * (size_t)most);
    neg = malloc(sizeof *neg * (size_t)most);
    diff = malloc(sizeof *diff * (size_t)maxU);
    imp = malloc(sizeof *imp * (size_t)maxU);
    order = malloc(sizeof *order * (size_t)maxU);
    for (int k = 0; k < ch.n; k++) keep[k] = malloc((size_t)sts[k].U);
    for (int k = 0; k < ch.n && !cfg->rolled; k++) step_keep[k] = malloc((size_t)sts[k].U * (size_t)T);
    /* compensate: each module's mean states (unit_means), in these buffers */
    const int comp = cfg->rolled && cfg->compensate;
    for (int k = 0; k < ch.n && comp; k++) means[k] = malloc(sizeof(float) * (size_t)sts[k].U);
    if (comp) {
        last = malloc(sizeof *last * (size_t)sts[ch.n - 1].U);
        acc = malloc(sizeof *acc * 2 * (size_t)maxU);
    }
    int ok = a && scratch && pos && neg && diff && imp && order && (!comp || (last && acc));
    for (int k = 0; k < ch.n; k++) ok &= keep[k] != NULL && (cfg->rolled || step_keep[k] != NULL) && (!comp || means[k]);
    if (!ok) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (text): out of memory");
        goto done;
    }
    for (int i = 0; i < nmod && !st; i++) {
        const int c = n ? classes[i] : i;
        const double tc = ts_monotonic_s();
        for (int k = 0; k < ch.n; k++) {
            if (npos[c]) identify(m, &ch, k, &sts[k], dr, ndr, c, cfg, a, scratch, pos, neg, diff, imp, order, keep[k]);
            else memset(keep[k], 1, (size_t)sts[k].U); /* no confident positive: nothing is known, keep all */
            if (!cfg->rolled)
                identify_steps(m, &ch, k, &sts[k], dr, ndr, c, T, cfg, a, scratch, pos, neg, diff, order, keep[k],
                               step_keep[k]);
        }
        int negs = 0;
        for (int64_t d = 0; d < ndr; d++) negs += dr[d].label != c && (dr[d].role & ROLE_NEG);
        rnn_means mv = {.last = last};
        for (int k = 0; k < ch.n && comp; k++) {
            mv.mean[k] = means[k];
            unit_means(&ch, k, &sts[k], dr, ndr, c, acc, means[k], k + 1 == ch.n ? last : NULL);
        }
        st = text_module_make(ctx, m, &ch, (const uint8_t *const *)keep, comp ? &mv : NULL,
                              cfg->rolled ? NULL : (const uint8_t *const *)step_keep, T, c, npos[c], negs, &mods[i]);
        if (!st) st = set_threshold(ctx, mods[i], train, dr, ndr, cfg->batch, heads);
        if (!st) mods[i]->info.seconds = ts_monotonic_s() - tc;
    }
    /* drawing and recording are shared: each module gets its share, as decompose.c does */
    for (int i = 0; i < nmod && !st; i++) mods[i]->info.seconds += shared_s / nmod;
done:
    for (int k = 0; k < RNN_CHAIN_MAX; k++) {
        free(sts[k].off);
        ts_free(sts[k].vals);
        free(keep[k]);
        free(step_keep[k]);
        free(means[k]);
    }
    free(last);
    free(acc);
    free(want);
    free(npos);
    free(dr);
    free(a);
    free(scratch);
    free(pos);
    free(neg);
    free(diff);
    free(imp);
    free(order);
    ts_free(heads);
    ts_model_free(work);
    return text_modules_hand_over(st, mods, nmod, modules, count);
}

ts_status ts_module_evaluate_text(ts_ctx *ctx, const ts_module *mod, const ts_text_dataset *ds, int batch, double *own,
                                  double *rest) {
    if (!ctx || !mod || !ds || !own || !rest) return ts_fail(ctx, TS_EINVAL, "ts_module_evaluate_text: NULL argument");
    *own = *rest = 0;
    ts_status st = train_check_text(ctx, mod->origin, ds, "module evaluation");
    if (!st && ds->task != TS_SEQ_CLASSIFY && ds->task != TS_SEQ_TAG)
        st = ts_fail(ctx, TS_EUNSUPPORTED, "module evaluation: set %s is not a classification or tagging set",
                     ds->name);
    if (st) return st;
    if (batch < 1 || batch > MODULE_EVAL_BATCH_MAX) batch = MODULE_EVAL_BATCH_MAX;
    ts_model *mm = NULL;
    if ((st = ts_module_model(ctx, mod, &mm))) return st;
    /* labels and scores per text: one, or a tagger's one per step (-1 past the length) */
    const int T = ds->max_len, lps = ds->task == TS_SEQ_TAG ? T : 1;
    if (shape_numel(&mm->layers[mm->nlayers - 1].out) != lps) {
        ts_model_free(mm);
        return ts_fail(ctx, TS_EUNSUPPORTED, "module evaluation: the module of '%s' does not give %d score%s a text",
                       mod->class_name, lps, lps > 1 ? "s" : "");
    }
    float *x = ts_alloc(ctx, sizeof(float) * (size_t)batch * (size_t)T, "module evaluation batch");
    float *score = ts_alloc(ctx, sizeof(float) * (size_t)batch * (size_t)lps, "module scores");
    int64_t npos = 0, nneg = 0, tp = 0, tn = 0;
    if (!x || !score) st = TS_ENOMEM;
    for (int64_t s = 0; s < ds->count && !st; s += batch) {
        const int n = (int)(ds->count - s < batch ? ds->count - s : batch);
        for (int64_t i = 0; i < (int64_t)n * T; i++) x[i] = (float)ds->tokens[s * T + i];
        if ((st = ts_model_predict(ctx, mm, x, n, score))) break;
        for (int64_t i = 0; i < (int64_t)n * lps; i++) {
            const int32_t y = ds->labels[s * lps + i];
            /* bitwise, not &&: no branch on the score (constant-time mode) */
            const int real = y >= 0, mine = y == mod->cls, yes = score[i] > mod->info.threshold;
            npos += mine;
            nneg += real & !mine;
            tp += mine & yes;
            tn += real & !mine & !yes;
        }
    }
    if (!st) {
        *own = npos ? (double)tp / (double)npos : 0;
        *rest = nneg ? (double)tn / (double)nneg : 0;
    }
    ts_free(x);
    ts_free(score);
    ts_model_free(mm);
    return st;
}
