/* Re-tuning a module for reuse next to modules of other datasets. Pan & Rajan's
 * "continuous learning" re-runs tangling identification with the other dataset's
 * inputs as negatives: units those inputs activate are restored. Scores of modules
 * cut from different models are not on one scale, so we also fit a calibration,
 * score = scale * margin + shift, by class-balanced logistic regression of "is
 * my class" on the module's own positives against the negatives. No weight of the
 * network changes. */
#include "modular.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ts_status check_images(ts_ctx *ctx, const ts_module *mod, const ts_dataset *ds, const char *what) {
    const ts_shape *in = &mod->origin->input;
    if (in->ndim != 3 || in->dims[0] != ds->channels || in->dims[1] != ds->height || in->dims[2] != ds->width)
        return ts_fail(ctx, TS_ESHAPE, "retune: %s '%s' has %dx%dx%d images, the module takes %lldx%lldx%lld", what,
                       ds->name, ds->channels, ds->height, ds->width, (long long)in->dims[0],
                       (long long)(in->ndim > 1 ? in->dims[1] : 0), (long long)(in->ndim > 2 ? in->dims[2] : 0));
    if (ds->count < 1) return ts_fail(ctx, TS_EINVAL, "retune: %s '%s' is empty", what, ds->name);
    return TS_OK;
}

/* Runs `m` over ds in chunks; per chunk either ORs ReLU activity into the module's
 * masks (scores NULL) or writes the single output per sample to scores. */
static ts_status run_over(ts_ctx *ctx, ts_module *mod, ts_model *m, const ts_dataset *ds, int batch, float *scores) {
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(ctx, m, &pp);
    if (st) return st;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    const int k = m->classes;
    float *x = ts_alloc(ctx, (size_t)batch * in_sz * sizeof(float), "retune batch");
    float *out = ts_alloc(ctx, (size_t)batch * (size_t)k * sizeof(float), "retune outputs");
    int64_t *off = malloc(sizeof *off * (size_t)(mod->nmasks + 1));
    uint64_t *bits = NULL;
    if (!x || !out || !off) {
        st = ts_fail(ctx, TS_ENOMEM, "retune: out of memory");
        goto done;
    }
    off[0] = 0;
    for (int q = 0; q < mod->nmasks; q++) off[q + 1] = off[q] + mask_words(mod->masks[q].units);
    if (!scores && !(bits = calloc((size_t)(off[mod->nmasks] ? off[mod->nmasks] : 1), sizeof *bits))) {
        st = ts_fail(ctx, TS_ENOMEM, "retune: out of memory");
        goto done;
    }
    int *relus = malloc(sizeof *relus * (size_t)(mod->nmasks ? mod->nmasks : 1));
    if (!relus) {
        st = ts_fail(ctx, TS_ENOMEM, "retune: out of memory");
        goto done;
    }
    for (int q = 0; q < mod->nmasks; q++) relus[q] = mod->masks[q].layer;
    activity_sink sink = {mod->masks, mod->nmasks, off, off[mod->nmasks], bits, 0};
    const ts_capture capture = {relus, scores ? 0 : mod->nmasks, module_record_activity, &sink};
    for (int64_t s = 0; s < ds->count && !st; s += batch) {
        int n = (int)(ds->count - s < batch ? ds->count - s : batch);
        ts_preprocess_images(&pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        if ((st = ts_model_predict_capture(ctx, m, x, n, out, &capture))) break;
        if (scores)
            for (int i = 0; i < n; i++) scores[s + i] = out[(size_t)i * k];
    }
    free(relus);
    if (st) goto done;
    if (bits)
        for (int q = 0; q < mod->nmasks; q++)
            for (int64_t w = 0; w < mask_words(mod->masks[q].units); w++) mod->masks[q].keep[w] |= bits[off[q] + w];
done:
    ts_free(x);
    ts_free(out);
    free(off);
    free(bits);
    return st;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The cut t maximizing TPR(s > t) + TNR(s <= t); midway between the two scores
 * around it. Sorts sp and sn, which must be finite (NaN has no place in the order). */
float module_balanced_threshold(float *sp, int64_t np, float *sn, int64_t nn) {
    qsort(sp, (size_t)np, sizeof *sp, cmp_float);
    qsort(sn, (size_t)nn, sizeof *sn, cmp_float);
    /* t below everything: TPR 1, TNR 0 */
    double best = 1.0;
    float lo = sp[0] < sn[0] ? sp[0] : sn[0];
    float best_t = lo - (fabsf(lo) > 1.0f ? fabsf(lo) * 1e-3f : 1.0f); /* below everything, still finite */
    int64_t i = 0, j = 0; /* scores <= t: i positives, j negatives */
    while (i < np || j < nn) {
        float v = i < np && (j >= nn || sp[i] <= sn[j]) ? sp[i] : sn[j];
        while (i < np && sp[i] == v) i++;
        while (j < nn && sn[j] == v) j++;
        double score = (double)(np - i) / (double)np + (double)j / (double)nn;
        if (score > best) {
            float next = i < np && (j >= nn || sp[i] <= sn[j]) ? sp[i] : j < nn ? sn[j] : v + 1.0f;
            best = score;
            best_t = 0.5f * v + 0.5f * next; /* no overflow for huge scores */
        }
    }
    return best_t;
}

/* Weighted log loss of the calibration (a, b), with the ridge towards (1, 0). */
static double logistic_loss(const float *sp, int64_t np, const float *sn, int64_t nn, double a, double b,
                            double ridge) {
    double l = 0.5 * ridge * ((a - 1.0) * (a - 1.0) + b * b);
    for (int64_t i = 0; i < np; i++) { /* -log sigmoid(z) */
        double z = a * sp[i] + b;
        l += (0.5 / (double)np) * (z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z)));
    }
    for (int64_t i = 0; i < nn; i++) { /* -log(1 - sigmoid(z)) */
        double z = a * sn[i] + b;
        l += (0.5 / (double)nn) * (z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)));
    }
    return l;
}

/* Class-balanced logistic regression of y on a*s + b by Newton's method with a
 * backtracking step (the loss must go down), and a small ridge towards (1, 0) so
 * that separable data still has a finite answer. */
void module_fit_logistic(const float *sp, int64_t np, const float *sn, int64_t nn, float *a_out, float *b_out) {
    double a = 1.0, b = 0.0;
    const double wp = 0.5 / (double)np, wn = 0.5 / (double)nn, ridge = 1e-3;
    double loss = logistic_loss(sp, np, sn, nn, a, b, ridge);
    for (int it = 0; it < 100; it++) {
        double ga = ridge * (a - 1.0), gb = ridge * b, haa = ridge, hab = 0, hbb = ridge;
        for (int side = 0; side < 2; side++) {
            const float *s = side ? sn : sp;
            int64_t cnt = side ? nn : np;
            double w = side ? wn : wp, y = side ? 0.0 : 1.0;
            for (int64_t i = 0; i < cnt; i++) {
                double z = a * s[i] + b, p = 1.0 / (1.0 + exp(-z)), r = w * (p - y), h = w * p * (1.0 - p);
                ga += r * s[i];
                gb += r;
                haa += h * s[i] * s[i];
                hab += h * s[i];
                hbb += h;
            }
        }
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) break;
        double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
        double t = 1.0, next = loss;
        for (int h = 0; h < 40; h++, t *= 0.5) {
            next = logistic_loss(sp, np, sn, nn, a - t * da, b - t * db, ridge);
            if (next <= loss) break;
        }
        if (!(next <= loss)) break;
        a -= t * da;
        b -= t * db;
        double gain = loss - next;
        loss = next;
        if (gain < 1e-12) break;
    }
    if (!(a > 1e-3) || !isfinite(a) || !isfinite(b)) { /* degenerate data: keep the margin as it is */
        a = 1.0;
        b = 0.0;
    }
    *a_out = (float)a;
    *b_out = (float)b;
}

ts_status ts_module_retune(ts_ctx *ctx, ts_module *mod, const ts_dataset *pos, const ts_dataset *neg, int batch) {
    if (!ctx || !mod || !pos || !neg) return ts_fail(ctx, TS_EINVAL, "ts_module_retune: NULL argument");
    ts_status st = check_images(ctx, mod, pos, "positives");
    if (!st) st = check_images(ctx, mod, neg, "negatives");
    if (st) return st;
    if (batch < 1 || batch > MODULE_EVAL_BATCH_MAX) batch = MODULE_EVAL_BATCH_MAX;
    /* the module as it was, restored if anything below fails */
    const ts_module_info before = mod->info;
    int64_t words = 0;
    for (int q = 0; q < mod->nmasks; q++) words += mask_words(mod->masks[q].units);
    uint64_t *saved = malloc(sizeof *saved * (size_t)(words ? words : 1));
    if (!saved) return ts_fail(ctx, TS_ENOMEM, "retune: out of memory");
    for (int64_t q = 0, at = 0; q < mod->nmasks; at += mask_words(mod->masks[q].units), q++)
        memcpy(saved + at, mod->masks[q].keep, sizeof *saved * (size_t)mask_words(mod->masks[q].units));
    ts_model *work = NULL, *mm = NULL;
    float *sp = NULL, *sn = NULL;
    /* 1. tangling identification against the new negatives */
    if ((st = model_clone(ctx, mod->origin, &work))) goto done;
    if ((st = run_over(ctx, mod, work, neg, batch, NULL))) goto done;
    int64_t negs = (int64_t)mod->info.negatives + neg->count;
    mod->info.negatives = (int)(negs > 1000000000 ? 1000000000 : negs);
    if ((st = module_count(ctx, mod))) goto done;
    /* 2. calibration on raw margins */
    mod->info.scale = 1.0f;
    mod->info.shift = 0.0f;
    if ((st = ts_module_model(ctx, mod, &mm))) goto done;
    sp = malloc(sizeof *sp * (size_t)pos->count);
    sn = malloc(sizeof *sn * (size_t)neg->count);
    if (!sp || !sn) st = ts_fail(ctx, TS_ENOMEM, "retune: out of memory");
    if (!st) st = run_over(ctx, mod, mm, pos, batch, sp);
    if (!st) st = run_over(ctx, mod, mm, neg, batch, sn);
    if (!st) {
        int64_t np = 0, nn = 0; /* an overflowing model's NaN scores stay out of the fit */
        for (int64_t i = 0; i < pos->count; i++)
            if (isfinite(sp[i])) sp[np++] = sp[i];
        for (int64_t i = 0; i < neg->count; i++)
            if (isfinite(sn[i])) sn[nn++] = sn[i];
        if (np && nn) module_fit_logistic(sp, np, sn, nn, &mod->info.scale, &mod->info.shift);
        mod->info.threshold = 0.0f;
    }
done:
    if (st) {
        for (int64_t q = 0, at = 0; q < mod->nmasks; at += mask_words(mod->masks[q].units), q++)
            memcpy(mod->masks[q].keep, saved + at, sizeof *saved * (size_t)mask_words(mod->masks[q].units));
        mod->info = before;
    }
    free(saved);
    free(sp);
    free(sn);
    ts_model_free(work);
    ts_model_free(mm);
    return st;
}

/* Raw scores of a text module's model on the texts idx[0..n) of ds, into s (n). */
static ts_status text_scores(ts_ctx *ctx, ts_model *mm, const ts_text_dataset *ds, const int64_t *idx, int64_t n,
                             int batch, float *s) {
    const int T = ds->max_len;
    float *x = ts_alloc(ctx, sizeof(float) * (size_t)batch * (size_t)T, "retune batch");
    ts_status st = x ? TS_OK : TS_ENOMEM;
    for (int64_t b0 = 0; b0 < n && !st; b0 += batch) {
        const int cnt = (int)(n - b0 < batch ? n - b0 : batch);
        for (int i = 0; i < cnt; i++)
            for (int t = 0; t < T; t++) x[(size_t)i * T + t] = (float)ds->tokens[idx[b0 + i] * T + t];
        st = ts_model_predict(ctx, mm, x, cnt, s + b0);
    }
    ts_free(x);
    return st;
}

ts_status ts_module_retune_text(ts_ctx *ctx, ts_module *mod, const ts_text_dataset *ds, int label, int64_t per_class,
                                int batch) {
    if (!ctx || !mod || !ds) return ts_fail(ctx, TS_EINVAL, "ts_module_retune_text: NULL argument");
    /* the module reads tokens; its one score a text is calibrated against any labels */
    const ts_shape *in = &mod->origin->input;
    if (in->ndim != 1 || in->dims[0] != ds->max_len)
        return ts_fail(ctx, TS_ESHAPE, "retune: set %s has texts of %d tokens, the module of '%s' takes %lld", ds->name,
                       ds->max_len, mod->class_name, (long long)(in->ndim == 1 ? in->dims[0] : 0));
    ts_status st = TS_OK;
    if (ds->task != TS_SEQ_CLASSIFY)
        return ts_fail(ctx, TS_EUNSUPPORTED, "retune: set %s is not a classification set (one label a text); modules "
                       "of taggers and translators are composed as decomposed", ds->name);
    if (label < 0 || label >= ds->classes)
        return ts_fail(ctx, TS_EINVAL, "retune: label %d is not one of set %s's %d", label, ds->name, ds->classes);
    if (batch < 1 || batch > MODULE_EVAL_BATCH_MAX) batch = MODULE_EVAL_BATCH_MAX;
    /* the first per_class texts of each label (all with per_class < 1) */
    int64_t *seen = calloc((size_t)ds->classes, sizeof *seen);
    int64_t *pi = malloc(sizeof *pi * (size_t)(ds->count ? ds->count : 1));
    int64_t *ni = malloc(sizeof *ni * (size_t)(ds->count ? ds->count : 1)), np = 0, nn = 0;
    float *sp = malloc(sizeof *sp * (size_t)(ds->count ? ds->count : 1));
    float *sn = malloc(sizeof *sn * (size_t)(ds->count ? ds->count : 1));
    ts_model *mm = NULL;
    const ts_module_info before = mod->info;
    if (!seen || !pi || !ni || !sp || !sn) st = ts_fail(ctx, TS_ENOMEM, "retune: out of memory");
    for (int64_t i = 0; i < ds->count && !st; i++) {
        const int32_t y = ds->labels[i];
        if (y < 0 || y >= ds->classes || (per_class > 0 && seen[y] >= per_class)) continue;
        seen[y]++;
        if (y == label) pi[np++] = i;
        else ni[nn++] = i;
    }
    if (!st && !np)
        st = ts_fail(ctx, TS_EINVAL, "retune: set %s has no texts of label %d ('%s')", ds->name, label,
                     ds->class_names[label]);
    if (!st && !nn)
        st = ts_fail(ctx, TS_EINVAL, "retune: set %s has only texts of label %d ('%s')", ds->name, label,
                     ds->class_names[label]);
    /* scores on the raw margin, as ts_module_retune calibrates them */
    mod->info.scale = 1.0f;
    mod->info.shift = 0.0f;
    if (!st) st = ts_module_model(ctx, mod, &mm);
    if (!st && shape_numel(&mm->layers[mm->nlayers - 1].out) != 1)
        st = ts_fail(ctx, TS_EUNSUPPORTED, "retune: the module of '%s' does not give one score a text",
                     mod->class_name);
    if (!st) st = text_scores(ctx, mm, ds, pi, np, batch, sp);
    if (!st) st = text_scores(ctx, mm, ds, ni, nn, batch, sn);
    if (!st) {
        int64_t fp = 0, fn = 0; /* an overflowing model's NaN scores stay out of the fit */
        for (int64_t i = 0; i < np; i++)
            if (isfinite(sp[i])) sp[fp++] = sp[i];
        for (int64_t i = 0; i < nn; i++)
            if (isfinite(sn[i])) sn[fn++] = sn[i];
        mod->info = before;
        if (fp && fn) {
            module_fit_logistic(sp, fp, sn, fn, &mod->info.scale, &mod->info.shift);
            mod->info.threshold = 0.0f;
        } else {
            st = ts_fail(ctx, TS_EDIVERGED, "retune: the module of '%s' gives no finite score on the %s of set %s",
                         mod->class_name, fp ? "other labels' texts" : "texts of its label", ds->name);
        }
    }
    if (st) mod->info = before;
    free(seen);
    free(pi);
    free(ni);
    free(sp);
    free(sn);
    ts_model_free(mm);
    return st;
}
