/* Evaluation: top-1, top-5, mean loss and the confusion matrix of a model on a
 * dataset, with the model's own preprocessing; and the branch-free argmax and top-k
 * that it and `tessera predict` rank scores with. */
#include "ops/ct_math.h"
#include "nn/layers.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>

ts_status train_check_dataset(ts_ctx *ctx, const ts_model *m, const ts_dataset *ds, const char *what) {
    ts_shape in = m->input;
    if (in.ndim != 3 || in.dims[0] != ds->channels || in.dims[1] != ds->height || in.dims[2] != ds->width)
        return ts_fail(ctx, TS_ESHAPE, "%s set %s has %dx%dx%d images but the model takes %lldx%lldx%lld", what,
                       ds->name, ds->channels, ds->height, ds->width, (long long)(in.ndim > 0 ? in.dims[0] : 0),
                       (long long)(in.ndim > 1 ? in.dims[1] : 0), (long long)(in.ndim > 2 ? in.dims[2] : 0));
    if (ds->classes > m->classes)
        return ts_fail(ctx, TS_ESHAPE, "%s set %s has %d classes but the model outputs %d", what, ds->name,
                       ds->classes, m->classes);
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= m->classes)
            return ts_fail(ctx, TS_EFORMAT, "%s set %s: sample %lld has label %d (expected 0..%d)", what, ds->name,
                           (long long)i, ds->labels[i], m->classes - 1);
    return TS_OK;
}

ts_status evaluate_classes(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, const ts_preprocess *pp, const int *classes,
                           int k, double *top1) {
    *top1 = 0;
    const int outs = m->classes;
    if (k < 1 || k > outs) return ts_fail(ctx, TS_EINVAL, "sub-task of %d classes: the model outputs %d", k, outs);
    for (int j = 0; classes && j < k; j++)
        if (classes[j] < 0 || classes[j] >= outs)
            return ts_fail(ctx, TS_EINVAL, "sub-task class %d: the model outputs %d", classes[j], outs);
    const ts_shape in = m->input;
    if (in.ndim != 3 || in.dims[0] != ds->channels || in.dims[1] != ds->height || in.dims[2] != ds->width)
        return ts_fail(ctx, TS_ESHAPE, "evaluation set %s has %dx%dx%d images; the model takes another shape", ds->name,
                       ds->channels, ds->height, ds->width);
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= k)
            return ts_fail(ctx, TS_EFORMAT, "evaluation set %s: sample %lld has label %d (expected 0..%d)", ds->name,
                           (long long)i, ds->labels[i], k - 1);
    const int B = 128;
    const size_t in_sz = (size_t)shape_numel(&in);
    float *x = ts_alloc(ctx, (size_t)B * in_sz * sizeof(float), "evaluation batch");
    float *o = ts_alloc(ctx, (size_t)B * (size_t)outs * sizeof(float), "evaluation outputs");
    ts_status st = x && o ? TS_OK : TS_ENOMEM;
    int64_t right = 0;
    for (int64_t s = 0; s < ds->count && !st; s += B) {
        const int n = (int)(ds->count - s < B ? ds->count - s : B);
        ts_preprocess_images(pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        if ((st = ts_model_predict(ctx, m, x, n, o))) break;
        for (int i = 0; i < n; i++) {
            const float *r = o + (size_t)i * (size_t)outs;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (r[classes ? classes[j] : j] > r[classes ? classes[best] : best]) best = j;
            right += best == ds->labels[s + i];
        }
    }
    if (!st) *top1 = ds->count ? (double)right / (double)ds->count : 0;
    ts_free(x);
    ts_free(o);
    return st;
}

ts_status ts_evaluate_classes(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, const int *classes, int k, double *top1) {
    if (!ctx || !m || !ds || !top1) return ts_fail(ctx, TS_EINVAL, "ts_evaluate_classes: NULL argument");
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(ctx, m, &pp);
    return st ? st : evaluate_classes(ctx, m, ds, &pp, classes, k, top1);
}

/* One running maximum: the first index of the largest value, NaNs never taken, 0 when
 * scores[0] is NaN; branch-free (constant-time mode reads it). */
static int argmax_serial(const float *scores, int k) {
    float best = scores[0];
    uint32_t bi = 0;
    for (int j = 1; j < k; j++) {
        const uint32_t take = ct_mask32(scores[j] > best);
        best = ct_self(take, scores[j], best);
        bi = ct_selu(take, (uint32_t)j, bi);
    }
    return (int)bi;
}

#if defined(__GNUC__)
/* The same answer from 16 running maxima side by side (lane l takes the elements
 * j = l mod 16), merged after: the larger, ties to the lower index. GCC's vector
 * extension makes the compares and selects vector instructions, so it stays
 * branch-free (plain conditionals compiled to branches). A translator's argmax over
 * 11,000-16,000 target words was a fifth of its evaluation; this is about 16x faster. */
typedef float argmax_vf __attribute__((vector_size(64)));
typedef int32_t argmax_vi __attribute__((vector_size(64)));
enum { ARGMAX_LANES = 16 };

int ts_argmax(const float *scores, int k) {
    if (!scores || k < 1) return -1;
    if (k < 2 * ARGMAX_LANES) return argmax_serial(scores, k);
    /* lane 0 starts at scores[0]; the others at -inf with index k (none yet), so a NaN
     * never becomes a lane's maximum and an -inf is never taken over it */
    argmax_vf best;
    argmax_vi at, lane;
    for (int l = 0; l < ARGMAX_LANES; l++) {
        best[l] = l ? -INFINITY : scores[0];
        at[l] = l ? k : 0;
        lane[l] = l;
    }
    int j = 0;
    for (; j + ARGMAX_LANES <= k; j += ARGMAX_LANES) {
        argmax_vf x;
        memcpy(&x, scores + j, sizeof x);
        const argmax_vi take = x > best, idx = lane + j; /* -1 where x is larger */
        best = (argmax_vf)(((argmax_vi)x & take) | ((argmax_vi)best & ~take));
        at = (idx & take) | (at & ~take);
    }
    float b[ARGMAX_LANES];
    uint32_t bi[ARGMAX_LANES];
    for (int l = 0; l < ARGMAX_LANES; l++) {
        b[l] = best[l];
        bi[l] = (uint32_t)at[l];
    }
    for (int l = 0; j < k; j++, l++) { /* the tail, lane l */
        const uint32_t take = ct_mask32(scores[j] > b[l]);
        b[l] = ct_self(take, scores[j], b[l]);
        bi[l] = ct_selu(take, (uint32_t)j, bi[l]);
    }
    float m = b[0];
    uint32_t r = bi[0];
    for (int l = 1; l < ARGMAX_LANES; l++) { /* the larger, ties to the lower index */
        const uint32_t take = ct_mask32(b[l] > m) | (ct_mask32(b[l] == m) & ct_mask32(bi[l] < r));
        m = ct_self(take, b[l], m);
        r = ct_selu(take, bi[l], r);
    }
    return (int)ct_selu(ct_mask32(scores[0] != scores[0]), 0u, r);
}
#else
int ts_argmax(const float *scores, int k) { return scores && k >= 1 ? argmax_serial(scores, k) : -1; }
#endif

int ts_top_k(const float *scores, int k, int top, int *idx) {
    if (!idx || top < 1) return 0;
    for (int t = 0; t < top; t++) idx[t] = -1;
    if (!scores || k < 1) return 0;
    const int picks = top < k ? top : k;
    float prev = 0.0f;
    uint32_t prev_i = 0, alive = ~0u;
    int found = 0;
    for (int t = 0; t < picks; t++) {
        float best = 0.0f;
        uint32_t bi = 0, have = 0;
        for (int j = 0; j < k; j++) {
            const float v = scores[j];
            /* ranked below the previous pick: lower, or equal at a higher index */
            const uint32_t below = t == 0 ? ~0u
                                          : ct_mask32(v < prev) | (ct_mask32(v == prev) & ct_mask32((uint32_t)j > prev_i));
            const uint32_t take = below & (~have | ct_mask32(v > best));
            best = ct_self(take, v, best);
            bi = ct_selu(take, (uint32_t)j, bi);
            have |= take;
        }
        alive &= have; /* nothing below the previous pick (NaNs): stop here */
        idx[t] = (int)ct_selu(alive, bi, ~0u);
        found += (int)(alive & 1u);
        prev = best;
        prev_i = bi;
    }
    return found;
}

/* Adds one (label, prediction) pair to the k x k confusion matrix touching every
 * cell, so that the address written does not tell the prediction (constant-time
 * mode; labels are checked to lie in 0..k-1 beforehand). */
static void confusion_add_ct(int64_t *confusion, int k, int32_t label, int pred) {
    const uint64_t cell = (uint64_t)label * (uint64_t)k + (uint64_t)pred;
    for (uint64_t c = 0; c < (uint64_t)k * (uint64_t)k; c++) confusion[c] += (int64_t)(ct_mask64(c == cell) & 1u);
}

/* Ranks rows (n, k) of scores against labels y (n): hits at top-1 and top-5 (k < 5:
 * top-k) added to *top1 and *top5, each (label, prediction) to the confusion matrix,
 * and right[i] (may be NULL) set to whether row i's top-1 is its label. A row
 * labelled -1 (a tagger's padding) is skipped. Constant-time mode (ct): no branch or
 * address that depends on the scores. */
static void score_rows(int ct, int n, int k, const float *logits, const int32_t *y, int64_t *confusion, int64_t *top1,
                       int64_t *top5, unsigned char *right) {
    const int topk = k < 5 ? k : 5;
    for (int i = 0; i < n; i++) {
        if (right) right[i] = y[i] < 0;
        if (y[i] < 0) continue;
        const float *row = logits + (size_t)i * k;
        const int best = ts_argmax(row, k);
        /* the true class's score (in constant-time mode read without indexing by the
         * label); its rank, ties broken by index as ts_argmax does; a NaN score is
         * never a hit */
        float ty = 0.0f;
        int rank = 0;
        if (ct || y[i] >= k) {
            for (int j = 0; j < k; j++) ty = ct_self(ct_mask32(j == y[i]), row[j], ty);
            for (int j = 0; j < k; j++)
                rank += (int)((ct_mask32(row[j] > ty) | (ct_mask32(row[j] == ty) & ct_mask32(j < y[i]))) & 1u);
        } else { /* the same count in two loops the compiler vectorizes (a translator's rows are wide) */
            ty = row[y[i]];
            for (int j = 0; j < y[i]; j++) rank += row[j] >= ty;
            for (int j = y[i] + 1; j < k; j++) rank += row[j] > ty;
        }
        const uint32_t valid = ct_mask32(ty == ty), hit = ct_mask32(best == y[i]) & valid & 1u;
        *top1 += (int64_t)hit;
        *top5 += (int64_t)(ct_mask32(rank < topk) & valid & 1u);
        if (right) right[i] = (unsigned char)hit;
        if (!confusion) continue;
        if (ct) confusion_add_ct(confusion, k, y[i], best);
        else confusion[(size_t)y[i] * k + best]++;
    }
}

/* One batch's figures in ts_evaluate. */
typedef struct eval_part {
    double loss; /* mean loss times samples */
    int64_t top1, top5, exit_top1;
} eval_part;

/* Every rank's batch figures (nb), and the confusion matrices (k, k) summed: the
 * ranks' shares of ts_evaluate put together. Alone: nothing to do. */
static ts_status gather_parts(ts_ctx *ctx, eval_part *part, int64_t nb, int64_t *confusion, int k) {
    const int R = ctx_ranks(ctx);
    if (R == 1) return TS_OK;
    ts_status st = ctx_gather_rows(ctx, part, nb, 1, sizeof *part, "evaluation");
    const size_t kk = (size_t)k * (size_t)k;
    int64_t *all = st ? NULL : ts_alloc(ctx, sizeof *all * kk * (size_t)R, "confusion matrices");
    if (!st && !all) st = TS_ENOMEM;
    if (!st) {
        memcpy(all + kk * (size_t)ctx_rank(ctx), confusion, sizeof *all * kk);
        st = ctx_gather_rows(ctx, all, R, 0, sizeof *all * kk, "evaluation");
    }
    for (size_t c = 0; !st && c < kk; c++) { /* integers: any order gives the same sums */
        confusion[c] = 0;
        for (int r = 0; r < R; r++) confusion[c] += all[kk * (size_t)r + c];
    }
    ts_free(all);
    return st;
}

ts_status ts_evaluate(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, ts_eval_report *out) {
    memset(out, 0, sizeof *out);
    ts_status st = train_check_dataset(ctx, m, ds, "evaluation");
    if (st) return st;
    const ts_shape in = m->input;
    if (batch < 1) batch = 256;
    ts_preprocess pp;
    st = ts_model_get_preprocess(ctx, m, &pp);
    if (st) return st;
    const int k = m->classes;
    const size_t in_sz = (size_t)shape_numel(&in);
    float *x = ts_alloc(ctx, (size_t)batch * in_sz * sizeof(float), "evaluation batch");
    float *logits = ts_alloc(ctx, (size_t)batch * (size_t)k * sizeof(float), "evaluation logits");
    out->confusion = ts_calloc(ctx, (size_t)k * (size_t)k * sizeof(int64_t), "confusion matrix");
    /* a model with an early exit: its head's logits too, from the same pass */
    float *exit_logits = m->exit_layer ? ts_alloc(ctx, (size_t)batch * (size_t)k * sizeof(float), "exit logits") : NULL;
    if (!x || !logits || !out->confusion || (m->exit_layer && !exit_logits)) {
        st = TS_ENOMEM;
        goto done;
    }
    out->classes = k;
    double loss_sum = 0;
    int64_t top1 = 0, top5 = 0, exit_top1 = 0;
    /* Constant-time mode: branch-free preprocessing, loss and confusion update too;
     * the ranking below is branch-free in both modes. */
    const int ct = ctx->constant_time;
    /* Each batch's figures, kept per batch so that ranks sharing the batches
     * (ts_ctx_set_comm) add them up in a lone run's order. */
    const int64_t nb = (ds->count + batch - 1) / batch;
    eval_part *part = ts_calloc(ctx, sizeof *part * (size_t)(nb ? nb : 1), "evaluation figures");
    if (!part) {
        st = TS_ENOMEM;
        goto done;
    }
    int64_t lo, hi;
    ctx_batch_rows(ctx, ds->count, batch, &lo, &hi);
    for (int64_t s = lo; s < hi; s += batch) {
        int n = (int)(hi - s < batch ? hi - s : batch);
        eval_part *p = &part[s / batch];
        (ct ? ts_preprocess_images_ct : ts_preprocess_images)(&pp, ds->images + (size_t)s * in_sz, n, ds->channels,
                                                              ds->height, ds->width, x);
        if ((st = exit_logits ? evaluate_exit_pass(ctx, m, x, n, logits, exit_logits)
                              : ts_model_predict(ctx, m, x, n, logits)))
            break;
        const int32_t *y = ds->labels + s;
        for (int i = 0; exit_logits && i < n; i++) p->exit_top1 += ts_argmax(exit_logits + (size_t)i * k, k) == y[i];
        p->loss = (double)(ct ? softmax_xent_ct(n, k, logits, y, 0.0f)
                              : ts_softmax_cross_entropy(n, k, logits, y, 0.0f, NULL)) * n;
        score_rows(ct, n, k, logits, y, out->confusion, &p->top1, &p->top5, NULL);
    }
    if (!st) st = gather_parts(ctx, part, nb, out->confusion, k);
    for (int64_t b = 0; !st && b < nb; b++) {
        loss_sum += part[b].loss;
        top1 += part[b].top1;
        top5 += part[b].top5;
        exit_top1 += part[b].exit_top1;
    }
    ts_free(part);
    if (st) goto done;
    out->count = ds->count;
    out->top1 = ds->count ? (double)top1 / ds->count : 0;
    out->top5 = ds->count ? (double)top5 / ds->count : 0;
    out->loss = ds->count ? loss_sum / ds->count : 0;
    out->exit_top1 = !exit_logits ? -1 : ds->count ? (double)exit_top1 / ds->count : 0;
done:
    ts_free(x);
    ts_free(logits);
    ts_free(exit_logits);
    if (st) ts_eval_report_free(out);
    return st;
}

/* Labels per sample (1, or the steps of a tagger or translator) and scores per label */
static int text_lps(const ts_text_dataset *ds) {
    const ts_shape s = ts_text_input_shape(ds);
    return ds->task == TS_SEQ_CLASSIFY ? 1 : (int)s.dims[s.ndim - 1];
}

ts_status train_check_text(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *ds, const char *what) {
    const ts_shape in = m->input, want = ts_text_input_shape(ds);
    const int translate = ds->task == TS_SEQ_TRANSLATE;
    if (!ds->tokens || ds->max_len < 1 || (translate ? !ds->targets || !ds->target_vocab : !ds->labels))
        return ts_fail(ctx, TS_EINVAL, "%s set %s has no tokens, labels or targets", what, ds->name);
    char a[64], b[64];
    if (in.ndim != want.ndim || in.dims[0] != want.dims[0] || (in.ndim == 2 && in.dims[1] != want.dims[1]))
        return ts_fail(ctx, TS_ESHAPE, "%s set %s needs a model input of %s token ids, but the model takes %s", what,
                       ds->name, shape_text(&want, a, sizeof a), shape_text(&in, b, sizeof b));
    const int lps = text_lps(ds);
    if (m->classes % lps)
        return ts_fail(ctx, TS_ESHAPE, "%s set %s: the model must output a score per %s for each of %d steps, but it "
                       "outputs %d values", what, ds->name, translate ? "target word" : "tag", lps, m->classes);
    const int k = m->classes / lps;
    const int need = translate ? ts_vocab_size(ds->target_vocab) : ds->classes;
    if (need > k)
        return ts_fail(ctx, TS_ESHAPE, "%s set %s has %d %s but the model outputs %d", what, ds->name, need,
                       translate ? "target words" : lps > 1 ? "tags" : "classes", k);
    const int64_t nl = translate ? 0 : ds->count * lps;
    for (int64_t i = 0; i < nl; i++)
        if (ds->labels[i] < (lps > 1 ? -1 : 0) || ds->labels[i] >= k)
            return ts_fail(ctx, TS_EFORMAT, "%s set %s: sample %lld has %s %d (expected %s0..%d)", what, ds->name,
                           (long long)(i / lps), lps > 1 ? "tag" : "label", ds->labels[i], lps > 1 ? "-1 or " : "",
                           k - 1);
    return TS_OK;
}

ts_status ts_evaluate_text(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int batch, ts_eval_report *out,
                           double *seq_acc) {
    if (!ctx || !m || !ds || !out) return ts_fail(ctx, TS_EINVAL, "ts_evaluate_text: NULL argument");
    memset(out, 0, sizeof *out);
    out->exit_top1 = -1;
    if (seq_acc) *seq_acc = 0;
    ts_status st = train_check_text(ctx, m, ds, "evaluation");
    if (st) return st;
    if (batch < 1) batch = 256;
    const int lps = text_lps(ds), k = m->classes / lps;
    const int ct = ctx->constant_time;
    ts_loader *ld = NULL;
    if ((st = ts_loader_create_text(ctx, ds, batch, 0, 0, &ld))) return st;
    const ts_shape in = ts_text_input_shape(ds);
    float *x = ts_alloc(ctx, (size_t)batch * (size_t)ts_shape_numel(&in) * sizeof(float), "evaluation batch");
    float *logits = ts_alloc(ctx, (size_t)batch * (size_t)m->classes * sizeof(float), "evaluation logits");
    int32_t *y = ts_alloc(ctx, (size_t)batch * (size_t)lps * sizeof(int32_t), "evaluation labels");
    unsigned char *right = ts_alloc(ctx, (size_t)batch * (size_t)lps, "evaluation hits");
    /* none over a translator's target vocabulary: 11,233 words would be 1 GB of counts */
    const int table = ds->task != TS_SEQ_TRANSLATE;
    if (table) out->confusion = ts_calloc(ctx, (size_t)k * (size_t)k * sizeof(int64_t), "confusion matrix");
    if (!x || !logits || !y || !right || (table && !out->confusion)) {
        st = TS_ENOMEM;
        goto done;
    }
    out->classes = k;
    double loss_sum = 0;
    int64_t top1 = 0, top5 = 0, units = 0, whole = 0;
    for (int64_t b = 0; b < ts_loader_batches(ld); b++) {
        int n = 0;
        if ((st = ts_loader_get(ld, b, 0, x, y, &n)) || (st = ts_model_predict(ctx, m, x, n, logits))) goto done;
        int counted = n;
        const float loss = ct && lps == 1 ? softmax_xent_ct(n, k, logits, y, 0.0f)
                           : ct ? softmax_xent_ignore_ref(n * lps, k, logits, y, -1, 0.0f, NULL, &counted)
                                : softmax_xent_vec(n * lps, k, logits, y, -1, 0.0f, NULL, &counted, ts_ctx_threads(ctx));
        loss_sum += (double)loss * counted;
        units += counted;
        score_rows(ct, n * lps, k, logits, y, out->confusion, &top1, &top5, right);
        for (int i = 0; i < n; i++) {
            int all = 1;
            for (int t = 0; t < lps; t++) all &= right[(size_t)i * lps + t];
            whole += all;
        }
    }
    out->count = units;
    out->top1 = units ? (double)top1 / units : 0;
    out->top5 = units ? (double)top5 / units : 0;
    out->loss = units ? loss_sum / units : 0;
    if (seq_acc) *seq_acc = ds->count ? (double)whole / ds->count : 0;
done:
    ts_loader_free(ld);
    ts_free(x);
    ts_free(logits);
    ts_free(y);
    ts_free(right);
    if (st) ts_eval_report_free(out);
    return st;
}

void ts_eval_report_free(ts_eval_report *r) {
    if (!r) return;
    ts_free(r->confusion);
    r->confusion = NULL;
}

double ts_eval_precision(const ts_eval_report *r, int cls) {
    if (!r->confusion) return 0;
    int64_t tp = r->confusion[(size_t)cls * r->classes + cls], col = 0;
    for (int i = 0; i < r->classes; i++) col += r->confusion[(size_t)i * r->classes + cls];
    return col ? (double)tp / col : 0;
}

double ts_eval_recall(const ts_eval_report *r, int cls) {
    if (!r->confusion) return 0;
    int64_t tp = r->confusion[(size_t)cls * r->classes + cls], row = 0;
    for (int j = 0; j < r->classes; j++) row += r->confusion[(size_t)cls * r->classes + j];
    return row ? (double)tp / row : 0;
}
