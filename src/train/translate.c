/* Decoding with an encoder-decoder model trained on a translation set
 * (ts_text_input_shape: a source row and a target row of Tm ids; output (Tm, V)
 * scores). The decoder reads the target row left to right, so the scores at step u
 * depend on the source and target ids 0..u only: decoding writes word u + 1 into
 * the row and runs the model again (Tm passes for a sentence of Tm words; no state is
 * carried between passes, so any model of that layout decodes).
 * Greedy: the best word at each step. Beam search of width B: per sentence the B
 * best prefixes by summed log-probability; a prefix that ends with <eos> is finished,
 * scored by its mean log-probability per word (so short ones are not favoured); the
 * search ends when B prefixes have finished (or at Tm words, where every prefix
 * counts as finished) and the best finished one wins. */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log-softmax of row (k) into out (k) */
static void log_softmax(const float *row, int k, double *out) {
    double mx = row[0], se = 0;
    for (int j = 1; j < k; j++) mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j < k; j++) se += exp(row[j] - mx);
    const double lse = mx + log(se);
    for (int j = 0; j < k; j++) out[j] = row[j] - lse;
}

typedef struct decode_run {
    ts_ctx *ctx;
    ts_model *m;
    const ts_text_dataset *ds;
    int tm, v;       /* steps per row, scores per step */
    float *x, *logits;
} decode_run;

/* Source row of sample s into x (2, Tm), the target row cleared to <bos> */
static void start_row(const decode_run *r, int64_t s, float *x) {
    memset(x, 0, sizeof *x * 2 * (size_t)r->tm);
    for (int t = 0; t < r->ds->max_len; t++) x[t] = (float)r->ds->tokens[s * r->ds->max_len + t];
    x[r->tm] = (float)TS_TOKEN_BOS;
}

static ts_status greedy(decode_run *r, int64_t first, int n, int32_t *out /* (n, Tm) */) {
    const int tm = r->tm, v = r->v;
    for (int i = 0; i < n; i++) start_row(r, first + i, r->x + (size_t)i * 2 * tm);
    memset(out, 0, sizeof *out * (size_t)n * tm);
    unsigned char *done = n > 0 ? calloc((size_t)n, 1) : NULL;
    if (!done) return ts_fail(r->ctx, TS_ENOMEM, "decoding: out of memory");
    ts_status st = TS_OK;
    int left = n;
    for (int u = 0; u < tm && left > 0 && !st; u++) {
        if ((st = ts_model_predict(r->ctx, r->m, r->x, n, r->logits))) break;
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            const int w = ts_argmax(r->logits + ((size_t)i * tm + u) * v, v);
            out[(size_t)i * tm + u] = w;
            if (w == TS_TOKEN_EOS || u + 1 == tm) {
                done[i] = 1;
                left--;
            } else {
                r->x[(size_t)i * 2 * tm + tm + u + 1] = (float)w;
            }
        }
    }
    free(done);
    return st;
}

typedef struct cand {
    double score;
    int from, word;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    if (x->from != y->from) return x->from - y->from;
    return x->word - y->word;
}

/* Beam search of one sentence; r->x and r->logits hold beam rows. */
static ts_status beam_one(decode_run *r, int64_t s, int beam, int32_t *out /* (Tm) */) {
    const int tm = r->tm, v = r->v;
    double *score = calloc((size_t)beam, sizeof *score), *lp = malloc(sizeof *lp * (size_t)v);
    cand *c = malloc(sizeof *c * (size_t)beam * (size_t)beam);
    float *nx = malloc(sizeof *nx * (size_t)beam * 2 * tm);
    ts_status st = score && lp && c && nx ? TS_OK : ts_fail(r->ctx, TS_ENOMEM, "beam search: out of memory");
    double best = -INFINITY;
    memset(out, 0, sizeof *out * (size_t)tm);
    int alive = 1, finished = 0; /* one prefix, <bos>, to start */
    if (!st) start_row(r, s, r->x);
    for (int u = 0; u < tm && alive > 0 && !st; u++) {
        if ((st = ts_model_predict(r->ctx, r->m, r->x, alive, r->logits))) break;
        int nc = 0;
        for (int b = 0; b < alive; b++) {
            log_softmax(r->logits + ((size_t)b * tm + u) * v, v, lp);
            for (int k = 0; k < beam; k++) { /* this prefix's k best words (ties to the lower id) */
                int w = -1;
                for (int j = 0; j < v; j++) {
                    int taken = 0;
                    for (int q = nc - k; q < nc && !taken; q++) taken = c[q].word == j;
                    if (!taken && (w < 0 || lp[j] > lp[w])) w = j;
                }
                c[nc++] = (cand){score[b] + lp[w], b, w};
            }
        }
        qsort(c, (size_t)nc, sizeof *c, cand_cmp);
        int next = 0;
        for (int q = 0; q < nc && next < beam; q++) {
            const float *row = r->x + (size_t)c[q].from * 2 * tm;
            if (c[q].word == TS_TOKEN_EOS || u + 1 == tm) { /* finished: mean log-probability per word */
                const double norm = c[q].score / (u + 1);
                if (norm > best) {
                    best = norm;
                    for (int t = 0; t < u; t++) out[t] = (int32_t)row[tm + 1 + t];
                    out[u] = c[q].word;
                    for (int t = u + 1; t < tm; t++) out[t] = 0;
                }
                finished++;
                if (c[q].word == TS_TOKEN_EOS) continue;
            }
            float *nrow = nx + (size_t)next * 2 * tm;
            memcpy(nrow, row, sizeof *nrow * 2 * (size_t)tm);
            if (u + 1 < tm) nrow[tm + u + 1] = (float)c[q].word;
            score[next++] = c[q].score;
        }
        alive = finished >= beam ? 0 : next; /* enough finished: done */
        memcpy(r->x, nx, sizeof *nx * (size_t)alive * 2 * tm);
    }
    free(score);
    free(lp);
    free(c);
    free(nx);
    return st;
}

ts_status ts_translate(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, int32_t *out) {
    if (!ctx || !m || !ds || !out) return ts_fail(ctx, TS_EINVAL, "ts_translate: NULL argument");
    if (ds->task != TS_SEQ_TRANSLATE)
        return ts_fail(ctx, TS_EINVAL, "ts_translate: %s is not a translation set", ds->name);
    if (beam < 1 || beam > 64) return ts_fail(ctx, TS_EINVAL, "ts_translate: beam %d out of 1..64", beam);
    ts_status st = train_check_text(ctx, m, ds, "translation");
    if (st) return st;
    if (batch < 1) batch = 64;
    const ts_shape in = ts_text_input_shape(ds);
    decode_run r = {ctx, m, ds, (int)in.dims[1], m->classes / (int)in.dims[1], NULL, NULL};
    const int rows = beam > 1 ? beam : batch;
    r.x = ts_alloc(ctx, sizeof *r.x * (size_t)rows * 2 * r.tm, "decoding rows");
    r.logits = ts_alloc(ctx, sizeof *r.logits * (size_t)rows * (size_t)m->classes, "decoding scores");
    if (!r.x || !r.logits) st = TS_ENOMEM;
    for (int64_t s = 0; s < ds->count && !st; s += beam > 1 ? 1 : batch) {
        if (beam > 1) st = beam_one(&r, s, beam, out + s * r.tm);
        else st = greedy(&r, s, (int)(ds->count - s < batch ? ds->count - s : batch), out + s * r.tm);
    }
    ts_free(r.x);
    ts_free(r.logits);
    return st;
}

ts_status ts_evaluate_bleu(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, double *bleu) {
    if (!ctx || !m || !ds || !bleu) return ts_fail(ctx, TS_EINVAL, "ts_evaluate_bleu: NULL argument");
    *bleu = 0;
    if (ds->task != TS_SEQ_TRANSLATE || ds->count < 1)
        return ts_fail(ctx, TS_EINVAL, "ts_evaluate_bleu: %s is not a translation set with samples", ds->name);
    const ts_shape in = ts_text_input_shape(ds);
    const int tm = (int)in.dims[in.ndim - 1];
    int32_t *out = ts_alloc(ctx, sizeof *out * (size_t)ds->count * tm, "translations");
    ts_token_seq *hyp = ts_alloc(ctx, sizeof *hyp * (size_t)ds->count, "hypotheses");
    ts_token_seq *ref = ts_alloc(ctx, sizeof *ref * (size_t)ds->count, "references");
    ts_status st = out && hyp && ref ? ts_translate(ctx, m, ds, beam, batch, out) : TS_ENOMEM;
    for (int64_t s = 0; s < ds->count && !st; s++) {
        const int32_t *h = out + s * tm;
        int n = 0;
        while (n < tm && h[n] != TS_TOKEN_EOS && h[n] != TS_TOKEN_PAD) n++;
        hyp[s] = (ts_token_seq){h, n};
        /* the reference: the target between <bos> and <eos> */
        const int len = ds->target_lengths[s];
        ref[s] = (ts_token_seq){ds->targets + s * ds->target_len + 1, len >= 2 ? len - 2 : 0};
    }
    if (!st) st = ts_corpus_bleu(ctx, hyp, ref, ds->count, 1, bleu);
    ts_free(out);
    ts_free(hyp);
    ts_free(ref);
    return st;
}
