/* Corpus BLEU-4 (Papineni et al. 2002) in two styles.
 * NLTK's corpus_bleu without smoothing (TS_BLEU_NLTK): per order n, clipped n-gram
 * matches and hypothesis n-gram counts (at least 1 per hypothesis) summed over the
 * corpus; the brevity penalty from the summed hypothesis length c and closest
 * reference lengths r, exp(1 - r/c) when c <= r; an order without a match gives 0.
 * sacrebleu 2.x's corpus_bleu with tokenize='none' and its default 'exp' smoothing
 * (TS_BLEU_SACREBLEU): the same matches, but a hypothesis shorter than n adds no
 * n-grams (no floor of 1); no match at any order gives 0; an order with n-grams but
 * no match counts as 1 / (2^k * its n-grams), k = 1, 2, ... over such orders; an
 * order with no n-grams at all gives 0 (sacrebleu takes its log as -1e10); brevity
 * penalty exp(1 - r/c) when c < r, 0 when c = 0. */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLEU_N 4

/* Count of the n-gram g (n ids) in s. Quadratic, but sentences are short. */
static int64_t occurrences(const int32_t *g, int n, const ts_token_seq *s) {
    int64_t c = 0;
    for (int i = 0; i + n <= s->len; i++)
        if (memcmp(s->ids + i, g, (size_t)n * sizeof *g) == 0) c++;
    return c;
}

/* Clipped matches of order n for one hypothesis: each distinct n-gram of hyp
 * counts min(its count, its largest count in one reference). */
static int64_t clipped_matches(const ts_token_seq *hyp, const ts_token_seq *refs, int nrefs, int n) {
    int64_t matches = 0;
    for (int i = 0; i + n <= hyp->len; i++) {
        const int32_t *g = hyp->ids + i;
        int first = 1; /* count each distinct n-gram once, at its first position */
        for (int j = 0; j < i && first; j++)
            if (memcmp(hyp->ids + j, g, (size_t)n * sizeof *g) == 0) first = 0;
        if (!first) continue;
        int64_t in_hyp = occurrences(g, n, hyp), best = 0;
        for (int r = 0; r < nrefs; r++) {
            int64_t c = occurrences(g, n, &refs[r]);
            if (c > best) best = c;
        }
        matches += in_hyp < best ? in_hyp : best;
    }
    return matches;
}

ts_status ts_corpus_bleu_style(ts_ctx *ctx, ts_bleu_style style, const ts_token_seq *hyps, const ts_token_seq *refs,
                               int64_t count, int refs_per_hyp, double *bleu) {
    if (!bleu) return ts_fail(ctx, TS_EINVAL, "bleu: result is NULL");
    *bleu = 0;
    if (style != TS_BLEU_NLTK && style != TS_BLEU_SACREBLEU)
        return ts_fail(ctx, TS_EINVAL, "bleu: style %d is neither NLTK (0) nor sacrebleu (1)", (int)style);
    if (count < 0 || refs_per_hyp < 1 || (count && (!hyps || !refs)))
        return ts_fail(ctx, TS_EINVAL, "bleu: bad arguments (count %lld, %d references per hypothesis)",
                       (long long)count, refs_per_hyp);
    for (int64_t i = 0; i < count; i++)
        for (int r = -1; r < refs_per_hyp; r++) {
            const ts_token_seq *s = r < 0 ? &hyps[i] : &refs[i * refs_per_hyp + r];
            if (s->len < 0 || (s->len && !s->ids))
                return ts_fail(ctx, TS_EINVAL, "bleu: sequence %lld (%s) has no ids or a negative length", (long long)i,
                               r < 0 ? "hypothesis" : "reference");
        }
    int64_t num[BLEU_N] = {0}, den[BLEU_N] = {0}, c = 0, r = 0;
    for (int64_t i = 0; i < count; i++) {
        const ts_token_seq *h = &hyps[i], *rs = &refs[i * refs_per_hyp];
        for (int n = 1; n <= BLEU_N; n++) {
            num[n - 1] += clipped_matches(h, rs, refs_per_hyp, n);
            const int grams = h->len - n + 1 > 0 ? h->len - n + 1 : 0;
            den[n - 1] += style == TS_BLEU_NLTK && grams < 1 ? 1 : grams;
        }
        int closest = rs[0].len;
        for (int k = 1; k < refs_per_hyp; k++) {
            int d = abs(rs[k].len - h->len), best = abs(closest - h->len);
            if (d < best || (d == best && rs[k].len < closest)) closest = rs[k].len;
        }
        c += h->len;
        r += closest;
    }
    if (c == 0) return TS_OK;
    double log_p = 0, smooth = 1;
    int any = 0;
    for (int n = 0; n < BLEU_N; n++) any |= num[n] > 0;
    if (!any) return TS_OK;
    for (int n = 0; n < BLEU_N; n++) {
        if (num[n] == 0 && (style == TS_BLEU_NLTK || den[n] == 0)) return TS_OK; /* 0 (sacrebleu: ~1e-2500000000) */
        if (num[n] == 0) smooth *= 2; /* sacrebleu's 'exp' smoothing */
        log_p += log(num[n] ? (double)num[n] / (double)den[n] : 1.0 / (smooth * (double)den[n])) / BLEU_N;
    }
    double bp = style == TS_BLEU_NLTK ? (c > r ? 1.0 : exp(1.0 - (double)r / (double)c))
                                      : (c < r ? exp(1.0 - (double)r / (double)c) : 1.0);
    *bleu = bp * exp(log_p);
    return TS_OK;
}

ts_status ts_corpus_bleu(ts_ctx *ctx, const ts_token_seq *hyps, const ts_token_seq *refs, int64_t count,
                         int refs_per_hyp, double *bleu) {
    return ts_corpus_bleu_style(ctx, TS_BLEU_NLTK, hyps, refs, count, refs_per_hyp, bleu);
}

/* Splits every text on spaces into ids of one shared table (a counter vocabulary). */
static ts_status texts_to_ids(ts_ctx *ctx, const char *const *texts, int64_t n, ts_vocab *table, data_tokens *t,
                              int32_t **ids, ts_token_seq *seqs) {
    for (int64_t i = 0; i < n; i++) {
        if (!texts[i]) return ts_fail(ctx, TS_EINVAL, "bleu: text %lld is NULL", (long long)i);
        ts_status st = data_tokenize(ctx, texts[i], strlen(texts[i]), TOKENIZE_RAW, t);
        int32_t *row = st ? NULL : malloc((t->count ? (size_t)t->count : 1) * sizeof *row);
        if (!st && !row) st = ts_fail(ctx, TS_ENOMEM, "bleu: out of memory");
        for (int k = 0; !st && k < t->count; k++) {
            st = data_vocab_count(ctx, table, t->buf + t->start[k]);
            row[k] = ts_vocab_id(table, t->buf + t->start[k]);
        }
        ids[i] = row;
        seqs[i].ids = row;
        seqs[i].len = t->count;
        if (st) return st;
    }
    return TS_OK;
}

ts_status ts_corpus_bleu_text_style(ts_ctx *ctx, ts_bleu_style style, const char *const *hyps,
                                    const char *const *refs, int64_t count, int refs_per_hyp, double *bleu) {
    if (!bleu) return ts_fail(ctx, TS_EINVAL, "bleu: result is NULL");
    *bleu = 0;
    if (count < 0 || refs_per_hyp < 1 || (count && (!hyps || !refs)) || count > INT64_MAX / (refs_per_hyp + 1))
        return ts_fail(ctx, TS_EINVAL, "bleu: bad arguments (count %lld, %d references per hypothesis)",
                       (long long)count, refs_per_hyp);
    int64_t total = count * (refs_per_hyp + 1);
    int32_t **ids = calloc(total ? (size_t)total : 1, sizeof *ids);
    ts_token_seq *seqs = calloc(total ? (size_t)total : 1, sizeof *seqs);
    ts_vocab *table = NULL;
    data_tokens t = {0};
    ts_status st = ids && seqs ? data_vocab_counter(ctx, &table) : ts_fail(ctx, TS_ENOMEM, "bleu: out of memory");
    if (!st) st = texts_to_ids(ctx, hyps, count, table, &t, ids, seqs);
    if (!st) st = texts_to_ids(ctx, refs, count * refs_per_hyp, table, &t, ids + count, seqs + count);
    if (!st) st = ts_corpus_bleu_style(ctx, style, seqs, seqs + count, count, refs_per_hyp, bleu);
    for (int64_t i = 0; ids && i < total; i++) free(ids[i]);
    free(ids);
    free(seqs);
    ts_vocab_free(table);
    data_tokens_free(&t);
    return st;
}

ts_status ts_corpus_bleu_text(ts_ctx *ctx, const char *const *hyps, const char *const *refs, int64_t count,
                              int refs_per_hyp, double *bleu) {
    return ts_corpus_bleu_text_style(ctx, TS_BLEU_NLTK, hyps, refs, count, refs_per_hyp, bleu);
}
