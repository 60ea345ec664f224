/* Patching a weak model with a module from a strong one (CNNSplitter, Qi et al.
 * ASE'22; the brief is ../shared/reference/modularization-successors.md, section 2,
 * "Patching"): the weak model's softmax over its classes, with the target class's
 * entry replaced by the module's score rescaled to [0, 1] by the least and greatest
 * score it gives on training data; the prediction is the argmax.
 *
 * The result is one graph, saved and exported like any other model:
 *
 *   patch.input -> weak.* (the weak model up to its logits) -> patch.weak.softmax (K) --+
 *               -> [patch.renorm] -> module.* (the module alone, its score) (1)         |
 *                  -> patch.rescale (dense 1 -> 1: (s - min) / (max - min)) (1) --------+
 *   patch.concat (K + 1) -> patch.out (dense K + 1 -> K, no bias: column j for output j,
 *                           column K for output `target`)
 *
 * A module whose origin normalizes its input differently gets the same exact
 * per-channel affine that composition uses (a batch norm in inference form). */
#include "modular.h"

#include "train/train.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_patch_config_default(ts_patch_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->batch = 256;
}

static int find_layer(const ts_model *m, const char *name) {
    for (int li = 0; li < m->nlayers; li++)
        if (!strcmp(m->layers[li].name, name)) return li;
    return -1;
}

static int same_shape(const ts_shape *a, const ts_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->dims[d] != b->dims[d]) return 0;
    return 1;
}

/* Layers [1, end] of src added under "<prefix><name>", its input read from `input`
 * (a builder layer); dropout is left out (identity at inference). at[li] receives
 * the builder index of src layer li (-1 for dropout). */
static ts_status embed(ts_ctx *ctx, nn_builder *b, const ts_model *src, int end, const char *prefix, int input,
                       int *at) {
    int *map = malloc(sizeof *map * (size_t)src->nlayers);
    if (!map) return ts_fail(ctx, TS_ENOMEM, "patch: out of memory");
    map[0] = input;
    at[0] = -1;
    ts_status st = TS_OK;
    for (int li = 1; li <= end && !st; li++) {
        const layer *l = &src->layers[li];
        at[li] = -1;
        if (l->kind == LAYER_DROPOUT) {
            map[li] = map[l->inputs[0]];
            continue;
        }
        char name[LAYER_NAME_MAX];
        int n = snprintf(name, sizeof name, "%s%s", prefix, l->name);
        if (n < 0 || n >= LAYER_NAME_MAX) {
            st = ts_fail(ctx, TS_EUNSUPPORTED, "patch: layer name '%s%s' is longer than %d characters", prefix, l->name,
                         LAYER_NAME_MAX - 1);
            break;
        }
        int ins[LAYER_MAX_INPUTS];
        for (int i = 0; i < l->ninputs; i++) ins[i] = map[l->inputs[i]];
        nn_added ad;
        if (!(st = nn_add_at(b, l->kind, name, ins, l->ninputs, &l->attrs, &ad))) map[li] = at[li] = ad.layer;
    }
    free(map);
    return st;
}

/* The least and greatest finite value of the n scores s; *used: how many are finite. */
static void score_range(const float *s, int64_t n, float *lo, float *hi, int64_t *used) {
    *lo = INFINITY;
    *hi = -INFINITY;
    *used = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(s[i])) continue;
        *lo = s[i] < *lo ? s[i] : *lo;
        *hi = s[i] > *hi ? s[i] : *hi;
        ++*used;
    }
}

static ts_status set_tensor(ts_ctx *ctx, ts_model *m, int t, const float *v, int64_t n) {
    if (t < 0 || t >= m->ntensors || m->tensors[t].numel != n)
        return ts_fail(ctx, TS_EINVAL, "patch: tensor %d is missing or not %lld values", t, (long long)n);
    memcpy(tensor_data(m, t), v, (size_t)n * sizeof(float));
    return TS_OK;
}

static ts_status patch_meta(ts_ctx *ctx, const ts_model *weak, int target, const ts_module *mod,
                            const ts_patch_config *cfg, float lo, float hi, ts_model *pm) {
    ts_status st = TS_OK;
    for (int i = 0; i < weak->nmeta && !st; i++) st = ts_model_set_meta(ctx, pm, weak->meta[i].key, weak->meta[i].value);
    ts_strbuf v = {0};
    ts_strbuf_printf(&v, "%d", target);
    if (!st) st = ts_model_set_meta(ctx, pm, "arch", "patched");
    if (!st) st = ts_model_set_meta(ctx, pm, "patch.class", v.s);
    if (!st && cfg->weak_name) st = ts_model_set_meta(ctx, pm, "patch.weak", cfg->weak_name);
    v.len = 0;
    ts_strbuf_printf(&v, "file=%s;class=%d;name=%s;dataset=%s;origin=%s;id=%016" PRIx64,
                     cfg->module_name ? cfg->module_name : "", mod->cls, mod->class_name, mod->dataset,
                     mod->origin_name, mod->origin_id);
    if (!st) st = v.failed ? ts_fail(ctx, TS_ENOMEM, "patch: out of memory") : ts_model_set_meta(ctx, pm, "patch.module", v.s);
    v.len = 0;
    ts_strbuf_printf(&v, "%.9g %.9g", (double)lo, (double)hi);
    if (!st) st = v.failed ? ts_fail(ctx, TS_ENOMEM, "patch: out of memory") : ts_model_set_meta(ctx, pm, "patch.range", v.s);
    ts_strbuf_free(&v);
    return st;
}

ts_status ts_patch(ts_ctx *ctx, const ts_model *weak, int target, const ts_module *mod, const ts_dataset *train,
                   const ts_patch_config *cfg, ts_progress_fn progress, void *user, ts_model **out,
                   ts_patch_report *rep) {
    if (!ctx || !weak || !mod || !train || !out) return ts_fail(ctx, TS_EINVAL, "ts_patch: NULL argument");
    *out = NULL;
    ts_patch_config def;
    if (!cfg) {
        ts_patch_config_default(&def);
        cfg = &def;
    }
    /* messages name both files when the caller gave them */
    const char *wn = cfg->weak_name ? cfg->weak_name : "(weak)";
    const char *mn = cfg->module_name ? cfg->module_name : "(module)";
    const int K = weak->classes;
    if (K < 2) return ts_fail(ctx, TS_EINVAL, "patch: weak model %s has %d output%s; patching needs 2 or more", wn, K, K == 1 ? "" : "s");
    if (target < 0 || target >= K)
        return ts_fail(ctx, TS_EINVAL, "patch: class %d is out of range: weak model %s has classes 0..%d", target,
                       wn, K - 1);
    if (cfg->rescale != TS_PATCH_MINMAX && cfg->rescale != TS_PATCH_POSTERIOR)
        return ts_fail(ctx, TS_EINVAL, "patch: unknown rescaling %d", (int)cfg->rescale);
    if (cfg->batch < 1 || cfg->batch > MODULE_EVAL_BATCH_MAX)
        return ts_fail(ctx, TS_EINVAL, "patch: batch %d is not in 1..%d", cfg->batch, MODULE_EVAL_BATCH_MAX);
    const ts_model *o = mod->origin;
    char ws[64], ms[64];
    shape_text(&weak->input, ws, sizeof ws);
    shape_text(&o->input, ms, sizeof ms);
    if (!same_shape(&weak->input, &o->input))
        return ts_fail(ctx, TS_ESHAPE, "patch: module %s takes %s inputs, weak model %s takes %s", mn, ms, wn, ws);
    ts_preprocess pw, pmod;
    ts_status st = ts_model_get_preprocess(ctx, weak, &pw);
    if (!st) st = ts_model_get_preprocess(ctx, o, &pmod);
    if (st) return st;
    if (pw.channels != pmod.channels)
        return ts_fail(ctx, TS_ESHAPE, "patch: module %s normalizes %d input channels, weak model %s %d", mn,
                       pmod.channels, wn, pw.channels);
    if (weak->input.ndim != 3 || train->channels != weak->input.dims[0] || train->height != weak->input.dims[1] ||
        train->width != weak->input.dims[2])
        return ts_fail(ctx, TS_ESHAPE, "patch: the score range's data '%s' has %dx%dx%d images, the models take %s",
                       train->name, train->channels, train->height, train->width, ws);
    if (train->count < 2) return ts_fail(ctx, TS_EINVAL, "patch: the score range needs 2 or more samples of '%s'", train->name);

    ts_model *mm = NULL, *pm = NULL;
    nn_builder *b = NULL;
    int *at_w = NULL, *at_m = NULL;
    float *sel = NULL, *all = NULL;
    if ((st = ts_module_model(ctx, mod, &mm))) return st;
    float lo, hi;
    int64_t used;
    if (!(all = malloc(sizeof *all * (size_t)train->count))) {
        st = ts_fail(ctx, TS_ENOMEM, "patch: out of memory");
        goto done;
    }
    if ((st = module_model_scores(ctx, mm, train, cfg->batch, all, progress, user, "patch"))) goto done;
    score_range(all, train->count, &lo, &hi, &used);
    if (!(hi > lo)) {
        st = ts_fail(ctx, TS_EINVAL, "patch: the score of module %s is the same (%g) on all %lld samples of '%s' it was finite on; "
                     "it cannot be rescaled", mn, (double)lo, (long long)used, train->name);
        goto done;
    }
    /* the rescaling: (s - lo) / (hi - lo), or the posterior sigmoid(a s + b) */
    float w = (float)(1.0 / ((double)hi - (double)lo)), bias = (float)(-(double)lo / ((double)hi - (double)lo));
    int64_t npos = 0, nneg = 0;
    if (cfg->rescale == TS_PATCH_POSTERIOR) {
        float *sp = malloc(sizeof *sp * (size_t)used), *sn = malloc(sizeof *sn * (size_t)used);
        if (!sp || !sn) {
            free(sp);
            free(sn);
            st = ts_fail(ctx, TS_ENOMEM, "patch: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < train->count; i++) {
            if (!isfinite(all[i])) continue;
            if (train->labels[i] == target) sp[npos++] = all[i];
            else sn[nneg++] = all[i];
        }
        if (npos && nneg) {
            /* the class-balanced fit estimates the log-odds at equal priors; the data's
             * prior moves them by log(npos / nneg) */
            module_fit_logistic(sp, npos, sn, nneg, &w, &bias);
            bias += (float)log((double)npos / (double)nneg);
        }
        free(sp);
        free(sn);
        if (!npos || !nneg) {
            st = ts_fail(ctx, TS_EINVAL, "patch: the posterior needs samples of class %d and of the others in '%s' (it has %lld and %lld)",
                         target, train->name, (long long)npos, (long long)nneg);
            goto done;
        }
    }
    at_w = malloc(sizeof *at_w * (size_t)weak->nlayers);
    at_m = malloc(sizeof *at_m * (size_t)mm->nlayers);
    sel = calloc((size_t)K * (size_t)(K + 1), sizeof *sel);
    if (!at_w || !at_m || !sel) {
        st = ts_fail(ctx, TS_ENOMEM, "patch: out of memory");
        goto done;
    }
    if ((st = nn_builder_create(ctx, "<patched>", 0, &weak->input, K, "patch.input", &b))) goto done;
    const int h = module_logits_layer(weak);
    if ((st = embed(ctx, b, weak, h, "weak.", 0, at_w))) goto done;
    nn_added ad, renorm = {0}, rescale, selout;
    layer_attrs a;
    nn_attrs_default(LAYER_SOFTMAX, &a);
    {
        /* the weak logits: the builder layer of h, or of what a dropout at h reads */
        int src = h;
        while (at_w[src] < 0 && src > 0) src = weak->layers[src].inputs[0];
        int in = src > 0 ? at_w[src] : 0;
        if ((st = nn_add_at(b, LAYER_SOFTMAX, "patch.weak.softmax", &in, 1, &a, &ad))) goto done;
    }
    const int softmax_at = ad.layer;
    const int renormed = !module_same_preprocess(&pw, &pmod);
    int module_in = 0;
    if (renormed) {
        nn_attrs_default(LAYER_BATCHNORM, &a);
        a.eps = 1e-12f;
        if ((st = nn_add_at(b, LAYER_BATCHNORM, "patch.renorm", &module_in, 1, &a, &renorm))) goto done;
        module_in = renorm.layer;
    }
    const int mh = mm->nlayers - 1;
    if ((st = embed(ctx, b, mm, mh, "module.", module_in, at_m))) goto done;
    int score_at = mh;
    while (at_m[score_at] < 0 && score_at > 0) score_at = mm->layers[score_at].inputs[0];
    int in = score_at > 0 ? at_m[score_at] : module_in;
    nn_attrs_default(LAYER_DENSE, &a);
    a.features = 1;
    a.bias = 1;
    if ((st = nn_add_at(b, LAYER_DENSE, "patch.rescale", &in, 1, &a, &rescale))) goto done;
    int module_out = rescale.layer;
    if (cfg->rescale == TS_PATCH_POSTERIOR) {
        nn_attrs_default(LAYER_SIGMOID, &a);
        if ((st = nn_add_at(b, LAYER_SIGMOID, "patch.posterior", &module_out, 1, &a, &ad))) goto done;
        module_out = ad.layer;
    }
    nn_attrs_default(LAYER_CONCAT, &a);
    a.axis = 0;
    const int parts[2] = {softmax_at, module_out};
    if ((st = nn_add_at(b, LAYER_CONCAT, "patch.concat", parts, 2, &a, &ad))) goto done;
    nn_attrs_default(LAYER_DENSE, &a);
    a.features = K;
    a.bias = 0;
    if ((st = nn_add_at(b, LAYER_DENSE, "patch.out", &ad.layer, 1, &a, &selout))) goto done;
    st = nn_builder_finish(b, 0, NULL, &pm);
    b = NULL;
    if (st) goto done;
    for (int li = 1; li <= h && !st; li++)
        if (at_w[li] >= 0) st = model_copy_layer_tensors(ctx, weak, li, pm, at_w[li], "patch");
    for (int li = 1; li <= mh && !st; li++)
        if (at_m[li] >= 0) st = model_copy_layer_tensors(ctx, mm, li, pm, at_m[li], "patch");
    if (st) goto done;
    if (renormed) {
        float gam[4], bet[4], zero[4] = {0, 0, 0, 0}, one[4] = {1, 1, 1, 1};
        module_renorm_affine(&pw, &pmod, gam, bet);
        const float *vals[4] = {gam, bet, zero, one};
        const int ts[4] = {renorm.weight, renorm.bias, renorm.running_mean, renorm.running_var};
        for (int q = 0; q < 4 && !st; q++) st = set_tensor(ctx, pm, ts[q], vals[q], pw.channels);
    }
    if (!st) st = set_tensor(ctx, pm, rescale.weight, &w, 1);
    if (!st) st = set_tensor(ctx, pm, rescale.bias, &bias, 1);
    /* patch.out: (K, K + 1), row j reads column j, the target's row column K */
    for (int j = 0; j < K; j++) sel[(size_t)j * (K + 1) + (j == target ? K : j)] = 1.0f;
    if (!st) st = set_tensor(ctx, pm, selout.weight, sel, (int64_t)K * (K + 1));
    if (!st) st = patch_meta(ctx, weak, target, mod, cfg, lo, hi, pm);
    if (!st) st = ts_model_set_meta(ctx, pm, "patch.rescale", cfg->rescale == TS_PATCH_POSTERIOR ? "posterior" : "minmax");
    if (st) goto done;
    exec_weights_changed(pm);
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->score_min = lo;
        rep->score_max = hi;
        rep->range_samples = used;
        rep->renormalized = renormed;
        rep->a = w;
        rep->b = bias;
    }
    *out = pm;
    pm = NULL;
done:
    nn_builder_free(b);
    ts_model_free(pm);
    ts_model_free(mm);
    free(at_w);
    free(at_m);
    free(sel);
    free(all);
    return st;
}

/* ---- evaluation: the patched model beside the weak model inside it */

typedef struct weak_sink {
    int K;
    const int32_t *labels; /* of this batch's first sample */
    int64_t *confusion;    /* (K, K) */
} weak_sink;

static int record_weak(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    weak_sink *w = user;
    for (int i = 0; i < n; i++) {
        const int y = w->labels[first + i], p = ts_argmax(out + (size_t)i * w->K, w->K);
        w->confusion[(size_t)y * w->K + (p < 0 ? 0 : p)]++;
    }
    return 0;
}

static void figures(const int64_t *cm, int K, int t, ts_patch_eval *e) {
    int64_t tp = cm[(size_t)t * K + t], pred = 0, actual = 0, others = 0, others_right = 0, right = 0, all = 0;
    for (int j = 0; j < K; j++) {
        pred += cm[(size_t)j * K + t];
        actual += cm[(size_t)t * K + j];
        right += cm[(size_t)j * K + j];
        for (int q = 0; q < K; q++) all += cm[(size_t)j * K + q];
        if (j == t) continue;
        others_right += cm[(size_t)j * K + j];
        for (int q = 0; q < K; q++) others += cm[(size_t)j * K + q];
    }
    memset(e, 0, sizeof *e);
    e->precision = pred ? (double)tp / (double)pred : 0;
    e->recall = actual ? (double)tp / (double)actual : 0;
    e->f1 = e->precision + e->recall > 0 ? 2 * e->precision * e->recall / (e->precision + e->recall) : 0;
    e->others = others ? (double)others_right / (double)others : 0;
    e->top1 = all ? (double)right / (double)all : 0;
    e->target_count = actual;
    e->other_count = others;
}

int ts_patch_target(const ts_model *m) {
    const char *v = m ? ts_model_get_meta(m, "patch.class") : NULL;
    const int li = v ? find_layer(m, "patch.weak.softmax") : -1;
    /* a file may carry the key and the name without the structure: the weak softmax
     * must have one value per class, as ts_patch_evaluate reads it */
    if (li < 0 || shape_numel(&m->layers[li].out) != m->classes) return -1;
    char *end;
    long t = strtol(v, &end, 10);
    return *end || end == v || t < 0 || t >= m->classes ? -1 : (int)t;
}

ts_status ts_patch_evaluate(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, ts_patch_eval *weak,
                            ts_patch_eval *patched) {
    if (!ctx || !m || !ds || !weak || !patched) return ts_fail(ctx, TS_EINVAL, "ts_patch_evaluate: NULL argument");
    const int t = ts_patch_target(m);
    if (t < 0) return ts_fail(ctx, TS_EINVAL, "patch evaluation: the model is not a patched model (no patch.class)");
    ts_status st = train_check_dataset(ctx, m, ds, "patch evaluation");
    if (st) return st;
    if (batch < 1 || batch > MODULE_EVAL_BATCH_MAX) batch = MODULE_EVAL_BATCH_MAX;
    const int K = m->classes;
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) return st;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    float *x = ts_alloc(ctx, (size_t)batch * in_sz * sizeof(float), "patch evaluation batch");
    float *out = ts_alloc(ctx, (size_t)batch * K * sizeof(float), "patch evaluation outputs");
    int64_t *cw = calloc((size_t)K * K, sizeof *cw), *cp = calloc((size_t)K * K, sizeof *cp);
    if (!x || !out || !cw || !cp) {
        st = cw && cp ? TS_ENOMEM : ts_fail(ctx, TS_ENOMEM, "patch evaluation: out of memory");
        goto done;
    }
    const int layer = find_layer(m, "patch.weak.softmax");
    weak_sink sink = {K, NULL, cw};
    ts_capture cap = {&layer, 1, record_weak, &sink};
    for (int64_t s = 0; s < ds->count; s += batch) {
        const int n = (int)(ds->count - s < batch ? ds->count - s : batch);
        (ctx->constant_time ? ts_preprocess_images_ct : ts_preprocess_images)(
            &pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        sink.labels = ds->labels + s;
        if ((st = ts_model_predict_capture(ctx, m, x, n, out, &cap))) goto done;
        for (int i = 0; i < n; i++) {
            const int p = ts_argmax(out + (size_t)i * K, K);
            cp[(size_t)ds->labels[s + i] * K + (p < 0 ? 0 : p)]++;
        }
    }
    figures(cw, K, t, weak);
    figures(cp, K, t, patched);
done:
    ts_free(x);
    ts_free(out);
    free(cw);
    free(cp);
    return st;
}
