/* Decomposition into per-class modules (Pan & Rajan, FSE'20 / ICSE'22; docs/modules.md).
 *
 * Concern identification: a unit of a convolution map is removed from class c's
 * module when it is inactive (<= 0) on every confident positive of c (ICSE'22's map
 * of inactive positions). A unit of a dense layer is kept only when it is active on
 * every confident positive (FSE'20, rule "every"; rule "any" treats it as a
 * convolution unit). Tangling identification: a removed unit is restored when it is
 * active on any sampled negative (inputs of the other classes), so the module can
 * still tell them apart. Concern modularization: the module's output is channelled
 * into logit_c - mean of the other logits (done when composing, compose.c), and BLN
 * backtracking removes the units feeding the classifier that are tied mostly to the
 * other classes, then units of dense layers that feed only removed units.
 *
 * Every module of a model comes from the same single pass over the training data:
 * per class we OR the activity of its positives (P_c), AND it for the dense units
 * (I_c, with FSE'20's reset), and OR the activity of its first negatives (Q_c);
 * module c keeps P_c (I_c on dense units) | OR_{j != c} Q_j. That is the paper's
 * result for all classes at the cost of one inference pass over at most
 * classes x positives inputs. */
#include "modular.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ts_modules_free(ts_module **mods, int n) {
    for (int i = 0; mods && i < n; i++) ts_module_free(mods[i]);
    free(mods);
}

void ts_decompose_config_default(ts_decompose_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->positives = 1000;
    cfg->confidence = 0.9f;
    cfg->tangling = 1.0f;
    cfg->seed = 0;
    cfg->batch = 128;
    cfg->method = TS_DECOMPOSE_ACTIVATION;
    cfg->alpha = 0.01f;
    cfg->epochs = 4;
    cfg->epoch_samples = 10000;
    cfg->val_count = 2000;
    cfg->lr = 0.05f;
    cfg->lr_head = 0.01f;
    cfg->train_batch = 64;
    cfg->max_loss = 1.0f;
    cfg->rule = TS_DECOMPOSE_RULE_EVERY;
    cfg->bln_delta = 1.0f;
    cfg->theta = 0.9f;
    cfg->ga_population = 100;
    cfg->ga_generations = 200;
    cfg->ga_parents = 50;
    cfg->ga_elites = 20;
    cfg->ga_mutation = 0.05f;
    cfg->ga_patience = 20;
    cfg->ga_val_per_class = 50;
    cfg->ga_alpha = 0.9f;
    cfg->ga_gamma = 0.9f;
}

static ts_status check_config(ts_ctx *ctx, const ts_decompose_config *c) {
    if (c->positives < 1 || c->positives > 1000000)
        return ts_fail(ctx, TS_EINVAL, "decompose: positives %d out of 1..1000000", c->positives);
    if (!(c->confidence >= 0.0f && c->confidence < 1.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: confidence %g out of [0, 1)", (double)c->confidence);
    if (!(c->tangling >= 0.0f && c->tangling <= 100.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: tangling ratio %g out of [0, 100]", (double)c->tangling);
    if (c->batch < 1) return ts_fail(ctx, TS_EINVAL, "decompose: batch %d must be at least 1", c->batch);
    if (c->rule != TS_DECOMPOSE_RULE_EVERY && c->rule != TS_DECOMPOSE_RULE_ANY)
        return ts_fail(ctx, TS_EINVAL, "decompose: rule %d is neither every (%d) nor any (%d)", (int)c->rule,
                       (int)TS_DECOMPOSE_RULE_EVERY, (int)TS_DECOMPOSE_RULE_ANY);
    if (c->method == TS_DECOMPOSE_MWT && !(c->theta > 0.0f && c->theta <= 1.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: theta %g out of (0, 1]", (double)c->theta);
    if (!(c->bln_delta >= 0.0f && c->bln_delta <= 1.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: BLN delta %g out of [0, 1]", (double)c->bln_delta);
    return TS_OK;
}

/* Softmax probability of class y in row (k logits), and whether y is the argmax. */
float decompose_prob_of(const float *row, int k, int y, int *is_max) {
    float mx = row[0];
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > mx) {
            mx = row[j];
            best = j;
        }
    double z = 0;
    for (int j = 0; j < k; j++) z += exp((double)(row[j] - mx));
    *is_max = best == y;
    return (float)(exp((double)(row[y] - mx)) / z);
}

/* Which drawn samples a module's masks may change: the bits of the masks whose
 * keep bits can differ from "active on some positive of c or some negative" (dense
 * units under the every rule, the masks BLN backtracking walks), one row of W
 * words per drawn sample, mask k at word off[k] (-1: not kept). */
typedef struct drawn_activity {
    const int64_t *off;
    int64_t W;
    const uint64_t *bits;
} drawn_activity;

/* Whether every unit sample s activates in the recorded masks is kept by mod. */
static int activity_kept(const ts_module *mod, const drawn_activity *da, int64_t s) {
    for (int k = 0; k < mod->nmasks; k++) {
        if (da->off[k] < 0) continue;
        const uint64_t *a = da->bits + (size_t)s * (size_t)da->W + da->off[k];
        for (int64_t w = 0; w < mask_words(mod->masks[k].units); w++)
            if (a[w] & ~mod->masks[k].keep[w]) return 0;
    }
    return 1;
}

/* The module's yes/no threshold. Its score on a drawn sample is the origin's margin
 * exactly when the module keeps every unit the sample activates: so for the
 * negatives and confident positives whose recorded activity it keeps (conv units
 * always are: they follow the "any" rule); the rest are run through the module
 * itself. Non-finite scores (a model that overflows) are left out. */
static ts_status fit_threshold(ts_ctx *ctx, ts_module *mod, const ts_dataset *train, const ts_preprocess *pp,
                               const float *seen, const uint8_t *role, const int32_t *seen_y, const int64_t *seen_idx,
                               int64_t nseen, const drawn_activity *da, float *sp, float *sn, uint8_t *run) {
    const int K = mod->origin->classes, c = mod->cls;
    const size_t in_sz = (size_t)shape_numel(&mod->origin->input);
    int64_t np = 0, nn = 0, nrun = 0;
    for (int64_t s = 0; s < nseen; s++) {
        run[s] = (role[s] & 2) && ((seen_y[s] == c && role[s] == 2) || !activity_kept(mod, da, s));
        nrun += run[s];
    }
    ts_model *mm = NULL;
    float *x = NULL, *score = NULL;
    ts_status st = TS_OK;
    if (nrun) {
        if ((st = ts_module_model(ctx, mod, &mm))) return st;
        const int B = MODULE_EVAL_BATCH_MAX;
        x = ts_alloc(ctx, (size_t)B * in_sz * sizeof(float), "threshold inputs");
        score = ts_alloc(ctx, (size_t)nrun * sizeof(float), "threshold scores");
        if (!x || !score) {
            st = TS_ENOMEM;
            goto done;
        }
        int64_t r = 0, s = 0;
        while (r < nrun) {
            int n = 0;
            for (; s < nseen && n < B; s++)
                if (run[s])
                    ts_preprocess_images(pp, train->images + (size_t)seen_idx[s] * in_sz, 1, train->channels,
                                         train->height, train->width, x + (size_t)(n++) * in_sz);
            if ((st = ts_model_predict(ctx, mm, x, n, score + r))) goto done;
            r += n;
        }
    }
    int64_t r = 0;
    for (int64_t s = 0; s < nseen; s++) {
        if (!(role[s] & 2)) continue;
        float mg;
        if (run[s]) {
            mg = score[r++];
        } else {
            const float *row = seen + (size_t)s * K;
            double sum = 0;
            for (int j = 0; j < K; j++) sum += row[j];
            mg = K > 1 ? (float)(row[c] - (sum - row[c]) / (K - 1)) : row[c];
        }
        if (!isfinite(mg)) continue;
        if (seen_y[s] == c) sp[np++] = mg;
        else sn[nn++] = mg;
    }
    mod->info.threshold = np && nn ? module_balanced_threshold(sp, np, sn, nn) : 0.0f;
    if (!isfinite(mod->info.threshold)) mod->info.threshold = 0.0f;
done:
    ts_free(x);
    ts_free(score);
    ts_model_free(mm);
    return st;
}

static void or_words(uint64_t *dst, const uint64_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] |= src[i];
}

static int64_t popcount_words(const uint64_t *w, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += __builtin_popcountll(w[i]);
    return c;
}

void every_rule_add(every_rule *e, const module_mask *masks, int nmasks, const int64_t *word_off, int64_t W, int c,
                    const uint64_t *a) {
    if (!e->on) return;
    uint64_t *I = e->I + (size_t)c * (size_t)W;
    for (int k = 0; k < nmasks; k++) {
        if (!e->dense[k]) continue;
        for (int64_t w = word_off[k]; w < word_off[k + 1]; w++) I[w] = e->fresh[c] ? a[w] : I[w] & a[w];
    }
    const int r = e->reset_mask;
    int64_t kept = popcount_words(I + word_off[r], word_off[r + 1] - word_off[r]);
    e->fresh[c] = kept * 10 < masks[r].units;
}

/* Module c's keep bits before backtracking: the positives' activity (I_c on dense
 * units under the every rule) OR every other class's negatives'. */
static void keep_bits(const every_rule *e, const uint64_t *P, const uint64_t *Q, int K, int c, int nmasks,
                      const int64_t *word_off, int64_t W, uint64_t *keep) {
    memcpy(keep, P + (size_t)c * (size_t)W, (size_t)W * sizeof *keep);
    if (e->on)
        for (int k = 0; k < nmasks; k++)
            if (e->dense[k])
                memcpy(keep + word_off[k], e->I + (size_t)c * (size_t)W + word_off[k],
                       (size_t)(word_off[k + 1] - word_off[k]) * sizeof *keep);
    for (int j = 0; j < K; j++)
        if (j != c) or_words(keep, Q + (size_t)j * (size_t)W, W);
}

ts_status ts_decompose(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                       const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                       int *count) {
    if (!ctx || !m || !train || !modules || !count || n < 0 || (n > 0 && !classes))
        return ts_fail(ctx, TS_EINVAL, "ts_decompose: bad argument");
    *modules = NULL;
    *count = 0;
    ts_decompose_config def;
    if (!cfg) {
        ts_decompose_config_default(&def);
        cfg = &def;
    }
    ts_status st = check_config(ctx, cfg);
    if (st) return st;
    if ((st = train_check_dataset(ctx, m, train, "decomposition"))) return st;
    const int K = m->classes;
    const int want = n ? n : K;
    for (int i = 0; i < n; i++)
        if (classes[i] < 0 || classes[i] >= K)
            return ts_fail(ctx, TS_EINVAL, "decompose: class %d is not a class of the model (0..%d)", classes[i], K - 1);
    if (train->count < 1) return ts_fail(ctx, TS_EINVAL, "decompose: the training set is empty");
    if (cfg->method == TS_DECOMPOSE_GRAD)
        return decompose_grad(ctx, m, train, cfg, classes, n, progress, user, modules, count);
    if (cfg->method == TS_DECOMPOSE_MWT)
        return decompose_mwt(ctx, m, train, cfg, classes, n, progress, user, modules, count);
    if (cfg->method == TS_DECOMPOSE_GA)
        return decompose_ga(ctx, m, train, cfg, classes, n, progress, user, modules, count);

    double t0 = ts_monotonic_s();
    ts_model *work = NULL;
    ts_module *proto = NULL, **mods = NULL;
    uint64_t *P = NULL, *Q = NULL, *negor = NULL, *act = NULL;
    int *relus = NULL;
    int64_t *word_off = NULL, *perm = NULL, *pos = NULL, *neg = NULL;
    int64_t *quota = NULL; /* positives wanted per class: only the requested classes need them */
    float *x = NULL, *logits = NULL;
    int64_t *ib = NULL;
    float *seen = NULL, *sp = NULL, *sn = NULL; /* logits of every sample used, for the yes/no thresholds */
    uint8_t *role = NULL;                       /* bit 0: a positive of its class, bit 1: a negative */
    int32_t *seen_y = NULL;
    int64_t *seen_idx = NULL;                   /* their training-set indices */
    int64_t nseen = 0;
    uint8_t *dense = NULL, *chain = NULL, *run = NULL;
    int64_t *da_off = NULL;                     /* drawn_activity layout */
    uint64_t *da_bits = NULL;
    every_rule every = {0, NULL, -1, NULL, NULL};
    /* The prototype module lays out the masks (one per ReLU). */
    if ((st = module_create(ctx, m, 0, &proto))) goto done;
    if ((st = model_clone(ctx, m, &work))) goto done;
    word_off = malloc(sizeof *word_off * (size_t)(proto->nmasks + 1));
    if (!word_off) goto nomem;
    word_off[0] = 0;
    for (int k = 0; k < proto->nmasks; k++) word_off[k + 1] = word_off[k] + mask_words(proto->masks[k].units);
    const int64_t W = word_off[proto->nmasks];
    /* which masks the every rule and BLN backtracking may change: the drawn samples'
     * activity there is recorded for the thresholds */
    dense = calloc((size_t)proto->nmasks + 1, 1);
    chain = calloc((size_t)proto->nmasks + 1, 1);
    da_off = malloc(sizeof *da_off * (size_t)(proto->nmasks + 1));
    if (!dense || !chain || !da_off) goto nomem;
    if (cfg->bln_delta < 1.0f) module_backtrack_masks(proto, chain);
    int64_t DW = 0;
    for (int k = 0; k < proto->nmasks; k++) {
        dense[k] = m->layers[proto->masks[k].layer].out.ndim != 3;
        if (dense[k]) every.reset_mask = k;
        da_off[k] = (cfg->rule == TS_DECOMPOSE_RULE_EVERY && dense[k]) || chain[k] ? DW : -1;
        if (da_off[k] >= 0) DW += word_off[k + 1] - word_off[k];
    }
    every.on = cfg->rule == TS_DECOMPOSE_RULE_EVERY && every.reset_mask >= 0;
    every.dense = dense;
    if (every.on) {
        every.I = calloc((size_t)K * (size_t)(W ? W : 1), sizeof *every.I);
        every.fresh = malloc((size_t)K);
        if (!every.I || !every.fresh) goto nomem;
        memset(every.fresh, 1, (size_t)K);
    }
    P = calloc((size_t)K * (size_t)(W ? W : 1), sizeof *P);
    Q = calloc((size_t)K * (size_t)(W ? W : 1), sizeof *Q);
    negor = calloc((size_t)(W ? W : 1), sizeof *negor);
    pos = calloc((size_t)K, sizeof *pos);
    neg = calloc((size_t)K, sizeof *neg);
    perm = malloc(sizeof *perm * (size_t)train->count);
    quota = calloc((size_t)K, sizeof *quota);
    if (!P || !Q || !negor || !pos || !neg || !perm || !quota) goto nomem;

    const int64_t npos = cfg->positives;
    const int64_t nneg = K > 1 ? (int64_t)ceil((double)cfg->tangling * (double)npos / (double)(K - 1)) : 0;
    for (int w = 0; w < want; w++) quota[n ? classes[w] : w] = npos;
    ts_rng r;
    ts_rng_seed(&r, cfg->seed ^ 0x6d6f64756c65ull);
    for (int64_t i = 0; i < train->count; i++) perm[i] = i;
    for (int64_t i = train->count - 1; i > 0; i--) {
        int64_t j = (int64_t)ts_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }

    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto done;
    const int B = cfg->batch > 1024 ? 1024 : cfg->batch; /* bounds the batch's memory, activity bits included */
    /* With ranks (ts_ctx_set_comm), R batches at once, rank r running the r-th: each
     * is formed as a lone run forms it, from the classes still wanting samples; a
     * batch that a class filled by the batches before it would have changed is run
     * again from there. Every rank gets every batch's logits and activity and keeps
     * the same books, so the result is a lone run's. */
    const int R = ctx_ranks(ctx), me = ctx_rank(ctx);
    const size_t in_sz = (size_t)shape_numel(&m->input), WB = (size_t)(W ? W : 1);
    x = ts_alloc(ctx, (size_t)B * in_sz * sizeof(float), "decomposition batch");
    /* which ReLU units each sample of the R batches activates, read through the capture API */
    act = ts_alloc(ctx, (size_t)R * (size_t)B * WB * sizeof *act, "decomposition activity");
    relus = malloc(sizeof *relus * (size_t)(proto->nmasks ? proto->nmasks : 1));
    if (!act || !relus) goto nomem;
    for (int k = 0; k < proto->nmasks; k++) relus[k] = proto->masks[k].layer;
    activity_sink sink = {proto->masks, proto->nmasks, word_off, W, act + (size_t)me * B * WB, 1};
    const ts_capture capture = {relus, proto->nmasks, module_record_activity, &sink};
    logits = ts_alloc(ctx, (size_t)R * (size_t)B * (size_t)K * sizeof(float), "decomposition logits");
    ib = malloc(sizeof *ib * (size_t)R * (size_t)B);
    int64_t *bend = malloc(sizeof *bend * (size_t)R); /* the cursor after each batch */
    int *bn = malloc(sizeof *bn * (size_t)R);          /* samples in each batch */
    const int64_t max_seen = (int64_t)K * (npos + nneg);
    seen = malloc(sizeof *seen * (size_t)max_seen * (size_t)K);
    role = malloc((size_t)max_seen);
    seen_y = malloc(sizeof *seen_y * (size_t)max_seen);
    seen_idx = malloc(sizeof *seen_idx * (size_t)max_seen);
    sp = malloc(sizeof *sp * (size_t)max_seen);
    sn = malloc(sizeof *sn * (size_t)max_seen);
    run = malloc((size_t)max_seen);
    da_bits = malloc(sizeof *da_bits * (size_t)max_seen * (size_t)(DW ? DW : 1));
    if (!x || !logits || !ib || !bend || !bn || !seen || !role || !seen_y || !seen_idx || !sp || !sn || !run ||
        !da_bits) {
        free(bend);
        free(bn);
        goto nomem;
    }
    const drawn_activity da = {da_off, DW, da_bits};

    int64_t cursor = 0;
    for (int finished = 0; !finished;) {
        /* Form up to R batches of inputs of classes that still need positives or negatives. */
        int nbat = 0;
        for (int64_t cur = cursor; nbat < R; nbat++) {
            int b = 0;
            while (b < B && cur < train->count) {
                int64_t idx = perm[cur++];
                int c = train->labels[idx];
                if (pos[c] >= quota[c] && neg[c] >= nneg) continue;
                ib[(size_t)nbat * B + b++] = idx;
            }
            if (b == 0) break;
            bn[nbat] = b;
            bend[nbat] = cur;
        }
        if (nbat == 0) break;
        if (me < nbat) {
            const int64_t *mine = ib + (size_t)me * B;
            for (int i = 0; i < bn[me]; i++)
                ts_preprocess_images(&pp, train->images + (size_t)mine[i] * in_sz, 1, train->channels, train->height,
                                     train->width, x + (size_t)i * in_sz);
            if ((st = ts_model_predict_capture(ctx, work, x, bn[me], logits + (size_t)me * B * K, &capture))) break;
        }
        if ((st = ctx_gather_rows(ctx, logits, R, 0, sizeof *logits * (size_t)B * K, "decompose")) ||
            (st = ctx_gather_rows(ctx, act, R, 0, sizeof *act * (size_t)B * WB, "decompose")))
            break;
        for (int j = 0; j < nbat && !finished; j++) {
            const int64_t *yi = ib + (size_t)j * B;
            int stale = 0; /* a class this batch draws from was filled since it was formed */
            for (int i = 0; i < bn[j] && j > 0 && !stale; i++) {
                const int c = train->labels[yi[i]];
                stale = pos[c] >= quota[c] && neg[c] >= nneg;
            }
            if (stale) break;
            for (int i = 0; i < bn[j]; i++) {
                const int c = train->labels[yi[i]];
                const float *row = logits + ((size_t)j * B + i) * K;
                const uint64_t *bits = act + ((size_t)j * B + i) * WB;
                int top;
                float p = decompose_prob_of(row, K, c, &top);
                int was_pos = pos[c] < quota[c] && top && p > cfg->confidence;
                if (was_pos) {
                    or_words(P + (size_t)c * W, bits, W);
                    every_rule_add(&every, proto->masks, proto->nmasks, word_off, W, c, bits);
                    pos[c]++;
                }
                uint8_t rl = 0;
                if (was_pos) rl |= 1;
                if (neg[c] < nneg) {
                    or_words(Q + (size_t)c * W, bits, W);
                    neg[c]++;
                    rl |= 2;
                }
                if (rl && nseen < max_seen) {
                    memcpy(seen + (size_t)nseen * K, row, sizeof(float) * (size_t)K);
                    for (int k = 0; k < proto->nmasks; k++)
                        if (da_off[k] >= 0)
                            memcpy(da_bits + (size_t)nseen * (size_t)DW + da_off[k], bits + word_off[k],
                                   (size_t)(word_off[k + 1] - word_off[k]) * sizeof *da_bits);
                    role[nseen] = rl;
                    seen_idx[nseen] = yi[i];
                    seen_y[nseen++] = c;
                }
            }
            cursor = bend[j];
            if (progress && progress(user, cursor, train->count)) {
                st = ts_fail(ctx, TS_ECANCELED, "decompose: canceled");
                break;
            }
            int all = 1;
            for (int c = 0; c < K && all; c++) all = pos[c] >= quota[c] && neg[c] >= nneg;
            finished = all;
        }
        if (st) break;
    }
    free(bend);
    free(bn);
    if (st) goto done;
    if (progress) progress(user, train->count, train->count);
    double shared_s = ts_monotonic_s() - t0;

    /* the origin's own baseline: every unit some drawn input activates */
    for (int c = 0; c < K; c++) {
        or_words(negor, P + (size_t)c * W, W);
        or_words(negor, Q + (size_t)c * W, W);
    }
    for (int k = 0; k < proto->nmasks; k++)
        memcpy(proto->masks[k].keep, negor + word_off[k], (size_t)mask_words(proto->masks[k].units) * 8);
    if ((st = module_count(ctx, proto))) goto done;

    if (!(mods = calloc((size_t)want, sizeof *mods))) goto nomem;
    for (int w = 0; w < want; w++) {
        double t1 = ts_monotonic_s();
        int c = n ? classes[w] : w;
        if ((st = module_create(ctx, m, c, &mods[w]))) goto done;
        ts_module *mod = mods[w];
        int64_t negs = 0;
        for (int j = 0; j < K; j++) negs += j == c ? 0 : neg[j];
        mod->info.positives = (int)pos[c];
        mod->info.negatives = (int)negs;
        mod->info.rule = (int)cfg->rule;
        mod->info.origin_params_live = proto->info.params_kept;
        mod->info.origin_macs_live = proto->info.macs_kept;
        if (pos[c] > 0) {
            keep_bits(&every, P, Q, K, c, mod->nmasks, word_off, W, negor);
            for (int k = 0; k < mod->nmasks; k++)
                memcpy(mod->masks[k].keep, negor + word_off[k], (size_t)mask_words(mod->masks[k].units) * 8);
            mod->info.bln_removed = module_backtrack(mod, cfg->bln_delta);
        } /* no confident positive: nothing is known to be unused, keep every unit */
        if ((st = module_count(ctx, mod))) goto done;
        /* yes/no threshold: best balanced accuracy on the inputs drawn for tangling
         * identification, its own class's draws being the positives */
        if ((st = fit_threshold(ctx, mod, train, &pp, seen, role, seen_y, seen_idx, nseen, &da, sp, sn, run)))
            goto done;
        mod->info.seconds = shared_s / want + (ts_monotonic_s() - t1);
    }
    *modules = mods;
    *count = want;
    mods = NULL;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "decompose: out of memory");
done:
    ts_modules_free(mods, want);
    ts_module_free(proto);
    ts_model_free(work);
    free(P);
    free(Q);
    free(negor);
    ts_free(act);
    free(relus);
    free(word_off);
    free(perm);
    free(pos);
    free(neg);
    free(quota);
    ts_free(x);
    ts_free(logits);
    free(ib);
    free(seen);
    free(role);
    free(seen_y);
    free(seen_idx);
    free(sp);
    free(sn);
    free(run);
    free(dense);
    free(chain);
    free(da_off);
    free(da_bits);
    free(every.I);
    free(every.fresh);
    return st;
}
