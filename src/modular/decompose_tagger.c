/* Decomposing a recurrent tagger (many-to-many: a tag per token) into per-tag modules,
 * after Imtiaz, Pan & Rajan (ICSE'23), Alg. 2 "many-output": observations are taken
 * per output step, a token at step t being a positive of tag c when its gold tag is c
 * (brief ../shared/reference/modularization-successors.md, docs/sequences.md).
 *
 * Per tag c and step t: up to M tokens of c the model tags right with probability at
 * least the confidence (positives), and from each tag up to M/(tags-1) tokens
 * (negatives for the other tags' modules), drawn in a seeded sentence order in one
 * inference pass over the training set shared by every module, which also keeps the
 * hidden states of every recurrent layer at those tokens (only). Rolled: one removal set per layer from every step's
 * observations pooled (decompose_text.c's rule). Unrolled (the default, the paper's
 * choice for many-output models): a set per step from that step's observations
 * only; a step with fewer than step_min positives or negatives takes the rolled set.
 * The module's layers then carry the sets as a per-step mask (rnn_units.c). */
#include "modular.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROLE_POS = 1, ROLE_NEG = 2 };
typedef struct token_obs {
    int64_t sent; /* index into the drawn sentences */
    int t, tag;
    uint8_t role; /* ROLE_POS: a positive of its tag; ROLE_NEG: a negative for the other tags */
} token_obs;

typedef struct draw_set {
    int64_t *sent;    /* (nsent) indices into the training set, in draw order */
    int64_t nsent;
    token_obs *obs;   /* (nobs), grouped by sentence in draw order */
    int64_t nobs, cap;
    int64_t *off;     /* (nsent + 1): the sentence's observations */
    int nl;           /* chain layers */
    int64_t U[RNN_CHAIN_MAX];
    float *vals[RNN_CHAIN_MAX]; /* (nobs, U[k]): chain layer k's state at each observed token */
} draw_set;

static void draw_set_free(draw_set *d) {
    free(d->sent);
    free(d->obs);
    free(d->off);
    for (int k = 0; k < d->nl; k++) free(d->vals[k]);
}

/* Appends an observation with its states (rows[k]: (U[k]) each). */
static int obs_push(draw_set *d, token_obs o, const float *const *rows) {
    if (d->nobs == d->cap) {
        const int64_t cap = d->cap ? d->cap * 2 : 4096;
        token_obs *p = realloc(d->obs, sizeof *p * (size_t)cap);
        if (!p) return 0;
        d->obs = p;
        for (int k = 0; k < d->nl; k++) {
            float *v = realloc(d->vals[k], sizeof *v * (size_t)cap * (size_t)d->U[k]);
            if (!v) return 0;
            d->vals[k] = v;
        }
        d->cap = cap;
    }
    for (int k = 0; k < d->nl; k++)
        memcpy(d->vals[k] + d->nobs * d->U[k], rows[k], sizeof(float) * (size_t)d->U[k]);
    d->obs[d->nobs++] = o;
    return 1;
}

static void fill_ids(const ts_text_dataset *ds, const int64_t *idx, int n, float *x) {
    const int T = ds->max_len;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < T; t++) x[(size_t)i * T + t] = (float)ds->tokens[idx[i] * T + t];
}

/* The chain layers' outputs of one batch, read through the capture API while the
 * model tags it: buf[k] (B, T, U[k]). */
typedef struct batch_states {
    const rnn_chain *ch;
    const draw_set *d;
    float *buf[RNN_CHAIN_MAX];
    int T;
} batch_states;

static int keep_batch(void *user, int layer, int64_t first, int n, const float *out) {
    const batch_states *bs = user;
    const int k = rnn_chain_index(bs->ch, layer);
    if (k < 0) return 1;
    const size_t per = (size_t)bs->T * (size_t)bs->d->U[k];
    memcpy(bs->buf[k] + (size_t)first * per, out, sizeof(float) * per * (size_t)n);
    return 0;
}

/* The observations and their states (see the top of the file), in one inference
 * pass; want[c]: M for a tag a module is made for, else 0 (its tokens still serve as
 * negatives). npos (K): positives per tag. */
static ts_status draw_tokens(ts_ctx *ctx, ts_model *work, const rnn_chain *ch, const ts_text_dataset *ds,
                             const ts_decompose_text_config *cfg, int K, const int *want, int nneg, draw_set *d,
                             int *npos) {
    const int T = ds->max_len, B = cfg->batch;
    const int probs = work->layers[work->nlayers - 1].kind == LAYER_SOFTMAX;
    int64_t *perm = malloc(sizeof *perm * (size_t)ds->count), *ib = malloc(sizeof *ib * (size_t)B);
    int *qpos = calloc((size_t)K * (size_t)T, sizeof *qpos), *qneg = calloc((size_t)K * (size_t)T, sizeof *qneg);
    float *x = malloc(sizeof *x * (size_t)B * (size_t)T);
    float *logits = malloc(sizeof *logits * (size_t)B * (size_t)T * (size_t)K);
    batch_states bs = {ch, d, {0}, T};
    int ok = perm && ib && qpos && qneg && x && logits;
    d->nl = ch->n;
    for (int k = 0; k < ch->n; k++) {
        d->U[k] = (int64_t)ch->dirs[k] * ch->hidden[k];
        ok &= (bs.buf[k] = malloc(sizeof(float) * (size_t)B * (size_t)T * (size_t)d->U[k])) != NULL;
    }
    ok &= (d->sent = malloc(sizeof *d->sent * (size_t)(ds->count ? ds->count : 1))) != NULL;
    ts_status st = ok ? TS_OK : ts_fail(ctx, TS_ENOMEM, "decompose (tagger): out of memory");
    if (st) goto done;
    text_draw_order(perm, ds->count, cfg->seed);
    memset(npos, 0, sizeof *npos * (size_t)K);
    const ts_capture cap = {ch->layer, ch->n, keep_batch, &bs};
    for (int64_t s0 = 0; s0 < ds->count && !st; s0 += B) {
        const int b = (int)(ds->count - s0 < B ? ds->count - s0 : B);
        memcpy(ib, perm + s0, sizeof *ib * (size_t)b);
        fill_ids(ds, ib, b, x);
        if ((st = ts_model_predict_capture(ctx, work, x, b, logits, &cap))) break;
        for (int i = 0; i < b && !st; i++) {
            const int64_t before = d->nobs;
            for (int t = 0; t < T && !st; t++) {
                const int c = ds->labels[ib[i] * T + t];
                if (c < 0 || c >= K) continue; /* past the length */
                int top;
                const float p = text_prob_row(logits + ((size_t)i * T + (size_t)t) * K, K, c, probs, &top);
                uint8_t role = 0;
                if (qpos[c * T + t] < want[c] && top && p >= cfg->confidence) {
                    role |= ROLE_POS;
                    qpos[c * T + t]++;
                    npos[c]++;
                }
                if (qneg[c * T + t] < nneg) {
                    role |= ROLE_NEG;
                    qneg[c * T + t]++;
                }
                const float *rows[RNN_CHAIN_MAX];
                for (int k = 0; k < ch->n; k++) rows[k] = bs.buf[k] + ((size_t)i * T + (size_t)t) * (size_t)d->U[k];
                if (role && !obs_push(d, (token_obs){d->nsent, t, c, role}, rows))
                    st = ts_fail(ctx, TS_ENOMEM, "decompose (tagger): out of memory for the drawn tokens' states");
            }
            if (d->nobs > before) d->sent[d->nsent++] = ib[i];
        }
    }
    if (!st && !(d->off = calloc((size_t)d->nsent + 1, sizeof *d->off)))
        st = ts_fail(ctx, TS_ENOMEM, "decompose (tagger): out of memory");
    for (int64_t o = 0; !st && o < d->nobs; o++) d->off[d->obs[o].sent + 1] = o + 1;
    for (int64_t s = 1; !st && s <= d->nsent; s++)
        if (d->off[s] < d->off[s - 1]) d->off[s] = d->off[s - 1];
done:
    for (int k = 0; k < ch->n; k++) free(bs.buf[k]);
    free(perm);
    free(ib);
    free(qpos);
    free(qneg);
    free(x);
    free(logits);
    return st;
}

/* ---- per module */

/* The rows of tag c's positives and of the negatives for it, all steps (step -1) or
 * step t's only. */
static void rows_of(const draw_set *d, int c, int t, int64_t *pos, int64_t *np, int64_t *neg, int64_t *nn) {
    *np = *nn = 0;
    for (int64_t o = 0; o < d->nobs; o++) {
        const token_obs *b = &d->obs[o];
        if (t >= 0 && b->t != t) continue;
        if (b->tag == c && (b->role & ROLE_POS)) pos[(*np)++] = o;
        if (b->tag != c && (b->role & ROLE_NEG)) neg[(*nn)++] = o;
    }
}

typedef struct tag_scratch {
    int64_t *pos, *neg; /* (nobs) each */
    float *a, *s;       /* (nobs) each */
    double *diff;       /* (max U) */
    int *order;         /* (max U) */
} tag_scratch;

/* keep[k] (U_k): the rolled set of tag c; step_keep[k] (T, U_k) when unrolled. */
static void identify_tag(const ts_model *m, const rnn_chain *ch, const draw_set *d, int c, int T,
                         const ts_decompose_text_config *cfg, tag_scratch *w, uint8_t **keep, uint8_t **step_keep) {
    const int64_t *U = d->U;
    float *const *vals = d->vals;
    int64_t np, nn;
    rows_of(d, c, -1, w->pos, &np, w->neg, &nn);
    for (int k = 0; k < ch->n; k++) {
        const layer *l = &m->layers[ch->layer[k]];
        const int relu = l->kind == LAYER_RNN && l->cell_act;
        if (np) rnn_identify_rows(relu, vals[k], U[k], w->pos, np, w->neg, nn, cfg, w->a, w->s, w->diff, w->order,
                                  keep[k]);
        else memset(keep[k], 1, (size_t)U[k]); /* no confident positive: nothing is known, keep all */
    }
    if (cfg->rolled) return;
    for (int t = 0; t < T; t++) {
        rows_of(d, c, t, w->pos, &np, w->neg, &nn);
        const int own = np >= cfg->step_min && nn >= cfg->step_min;
        for (int k = 0; k < ch->n; k++) {
            uint8_t *kt = step_keep[k] + (int64_t)t * U[k];
            const layer *l = &m->layers[ch->layer[k]];
            if (own)
                rnn_identify_rows(l->kind == LAYER_RNN && l->cell_act, vals[k], U[k], w->pos, np, w->neg, nn, cfg,
                                  w->a, w->s, w->diff, w->order, kt);
            else memcpy(kt, keep[k], (size_t)U[k]); /* too few observations at t: the rolled set */
        }
    }
}

/* The module's yes/no threshold, as for classifier modules: the best balanced cut of
 * its scores on the drawn tokens of its tag against the drawn negatives, up to M of
 * each, first drawn first; only the sentences holding those run (a rare tag's few
 * tokens do not make it score every drawn sentence). */
static ts_status set_tag_threshold(ts_ctx *ctx, ts_module *mod, const ts_text_dataset *ds, const draw_set *d,
                                   int batch, int M) {
    const int T = ds->max_len, c = mod->cls;
    ts_model *mm = NULL;
    ts_status st = ts_module_model(ctx, mod, &mm);
    if (st) return st;
    const size_t rows = (size_t)(d->nobs ? d->nobs : 1);
    float *x = malloc(sizeof *x * (size_t)batch * (size_t)T), *score = malloc(sizeof *score * (size_t)batch * (size_t)T);
    float *sp = malloc(sizeof *sp * rows), *sn = malloc(sizeof *sn * rows);
    int64_t *pick = malloc(sizeof *pick * (size_t)(d->nsent ? d->nsent : 1)), *idx = malloc(sizeof *idx * (size_t)batch);
    int64_t np = 0, nn = 0, npick = 0, wp = 0, wn = 0;
    if (!x || !score || !sp || !sn || !pick || !idx) st = ts_fail(ctx, TS_ENOMEM, "decompose (tagger): out of memory");
    for (int64_t s = 0; !st && s < d->nsent && (wp < M || wn < M); s++) {
        int use = 0;
        for (int64_t o = d->off[s]; o < d->off[s + 1]; o++) {
            const token_obs *b = &d->obs[o];
            const int own = b->tag == c && wp < M, neg = b->tag != c && (b->role & ROLE_NEG) && wn < M;
            wp += own;
            wn += neg;
            use |= own | neg;
        }
        if (use) pick[npick++] = s;
    }
    for (int64_t b0 = 0; b0 < npick && !st; b0 += batch) {
        const int n = (int)(npick - b0 < batch ? npick - b0 : batch);
        for (int i = 0; i < n; i++) idx[i] = d->sent[pick[b0 + i]];
        fill_ids(ds, idx, n, x);
        if ((st = ts_model_predict(ctx, mm, x, n, score))) break;
        for (int i = 0; i < n; i++)
            for (int64_t o = d->off[pick[b0 + i]]; o < d->off[pick[b0 + i] + 1]; o++) {
                const token_obs *b = &d->obs[o];
                const float v = score[(size_t)i * T + (size_t)b->t];
                if (!isfinite(v)) continue;
                if (b->tag == c && np < M) sp[np++] = v;
                else if (b->tag != c && (b->role & ROLE_NEG) && nn < M) sn[nn++] = v;
            }
    }
    if (!st) mod->info.threshold = np && nn ? module_balanced_threshold(sp, np, sn, nn) : 0.0f;
    ts_model_free(mm);
    free(x);
    free(score);
    free(sp);
    free(sn);
    free(pick);
    free(idx);
    return st;
}

ts_status decompose_tagger(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const ts_text_dataset *train,
                           const ts_decompose_text_config *cfg, const int *classes, int n, ts_module ***modules,
                           int *count) {
    const double t0 = ts_monotonic_s();
    const int K = rnn_chain_labels(m, ch), T = train->max_len, nmod = n ? n : K;
    const int nneg = (int)ceil((double)cfg->tangling * cfg->positives / (K - 1));
    int *want = calloc((size_t)K, sizeof *want), *npos = calloc((size_t)K, sizeof *npos);
    ts_module **mods = calloc((size_t)nmod, sizeof *mods);
    draw_set d = {0};
    uint8_t *keep[RNN_CHAIN_MAX] = {0}, *step_keep[RNN_CHAIN_MAX] = {0};
    tag_scratch w = {0};
    ts_model *work = NULL;
    ts_status st = TS_OK;
    if (!want || !npos || !mods) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (tagger): out of memory");
        goto done;
    }
    for (int i = 0; i < nmod; i++) want[n ? classes[i] : i] = cfg->positives;
    if ((st = model_clone(ctx, m, &work))) goto done;
    if ((st = draw_tokens(ctx, work, ch, train, cfg, K, want, nneg, &d, npos))) goto done;
    const int64_t *U = d.U;
    const double shared_s = ts_monotonic_s() - t0;
    int64_t maxU = 1;
    for (int k = 0; k < ch->n; k++) maxU = U[k] > maxU ? U[k] : maxU;
    const size_t rows = (size_t)(d.nobs ? d.nobs : 1);
    w.pos = malloc(sizeof *w.pos * rows);
    w.neg = malloc(sizeof *w.neg * rows);
    w.a = malloc(sizeof *w.a * rows);
    w.s = malloc(sizeof *w.s * rows);
    w.diff = malloc(sizeof *w.diff * (size_t)maxU);
    w.order = malloc(sizeof *w.order * (size_t)maxU);
    int ok = w.pos && w.neg && w.a && w.s && w.diff && w.order;
    for (int k = 0; k < ch->n; k++) {
        ok &= (keep[k] = malloc((size_t)U[k])) != NULL;
        if (!cfg->rolled) ok &= (step_keep[k] = malloc((size_t)U[k] * (size_t)T)) != NULL;
    }
    if (!ok) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (tagger): out of memory");
        goto done;
    }
    for (int i = 0; i < nmod && !st; i++) {
        const int c = n ? classes[i] : i;
        const double tc = ts_monotonic_s();
        identify_tag(m, ch, &d, c, T, cfg, &w, keep, step_keep);
        int negs = 0;
        for (int64_t o = 0; o < d.nobs; o++) negs += d.obs[o].tag != c && (d.obs[o].role & ROLE_NEG);
        st = text_module_make(ctx, m, ch, (const uint8_t *const *)keep, NULL,
                              cfg->rolled ? NULL : (const uint8_t *const *)step_keep, T, c, npos[c], negs, &mods[i]);
        if (!st) st = set_tag_threshold(ctx, mods[i], train, &d, cfg->batch, cfg->positives);
        if (!st) mods[i]->info.seconds = ts_monotonic_s() - tc + shared_s / nmod;
    }
done:
    for (int k = 0; k < RNN_CHAIN_MAX; k++) {
        free(keep[k]);
        free(step_keep[k]);
    }
    free(w.pos);
    free(w.neg);
    free(w.a);
    free(w.s);
    free(w.diff);
    free(w.order);
    draw_set_free(&d);
    free(want);
    free(npos);
    ts_model_free(work);
    return text_modules_hand_over(st, mods, nmod, modules, count);
}
