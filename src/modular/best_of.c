/* Best-of-N composition (GradSplitter's ensemble of modules, Qi et al. TOSEM; brief
 * section 3): several models decomposed into modules of the same classes; for each
 * class the module with the best F1 on validation data is kept, and the picks are
 * composed into one classifier (ts_compose). A module's F1 is its own yes/no answer
 * (score above its threshold) for its class, as ts_module_evaluate counts it. */
#include "modular.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The module's scores on every sample of val (s: val->count), with its calibration. */
static ts_status scores_on(ts_ctx *ctx, const ts_module *mod, const ts_dataset *val, float *s) {
    ts_model *mm = NULL;
    ts_status st = ts_module_model(ctx, mod, &mm);
    if (!st) st = module_model_scores(ctx, mm, val, MODULE_EVAL_BATCH_MAX, s, NULL, NULL, "best-of");
    ts_model_free(mm);
    return st;
}

/* Refits the module's calibration on its raw margins s (val->count, computed with
 * scale 1 and shift 0): class-balanced logistic regression of "is my class",
 * threshold 0, as ts_module_retune's second step does, so that modules of different
 * models answer on one scale; s becomes the calibrated scores. */
static ts_status calibrate(ts_ctx *ctx, ts_module *mod, const ts_dataset *val, float *s) {
    float *sp = malloc(sizeof *sp * (size_t)val->count), *sn = malloc(sizeof *sn * (size_t)val->count);
    if (!sp || !sn) {
        free(sp);
        free(sn);
        return ts_fail(ctx, TS_ENOMEM, "best-of: out of memory");
    }
    int64_t np = 0, nn = 0;
    for (int64_t i = 0; i < val->count; i++) {
        if (!isfinite(s[i])) continue; /* an overflowing score stays out of the fit */
        if (val->labels[i] == mod->cls) sp[np++] = s[i];
        else sn[nn++] = s[i];
    }
    float a = 1.0f, b = 0.0f;
    if (np && nn) module_fit_logistic(sp, np, sn, nn, &a, &b);
    mod->info.scale = a;
    mod->info.shift = b;
    mod->info.threshold = 0.0f;
    for (int64_t i = 0; i < val->count; i++) s[i] = a * s[i] + b;
    free(sp);
    free(sn);
    return TS_OK;
}

/* F1 of the module's yes/no answer (score > threshold) for its class. */
static double answer_f1(const float *s, const ts_dataset *val, int cls, float threshold) {
    int64_t tp = 0, fp = 0, fn = 0;
    for (int64_t i = 0; i < val->count; i++) {
        const int mine = val->labels[i] == cls, yes = s[i] > threshold;
        tp += mine & yes;
        fp += (!mine) & yes;
        fn += mine & (!yes);
    }
    return tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0;
}

/* Top-1 on val of the composition that takes output j from run pick[j]: argmax over
 * the outputs' scores (S: (runs, k, count)), ties to the lower output. */
static double composed_top1(const float *S, int k, int64_t count, const int *pick, const int *cls, const int32_t *y) {
    int64_t right = 0;
    for (int64_t i = 0; i < count; i++) {
        int best = 0;
        float bs = S[((size_t)pick[0] * k) * count + i];
        for (int j = 1; j < k; j++) {
            const float v = S[((size_t)pick[j] * k + j) * count + i];
            if (v > bs) {
                bs = v;
                best = j;
            }
        }
        right += cls[best] == y[i];
    }
    return count ? (double)right / (double)count : 0;
}

void ts_best_of_config_default(ts_best_of_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    ts_compose_config_default(&cfg->compose);
    cfg->recalibrate = 1;
    cfg->select = TS_BEST_OF_F1;
}

ts_status ts_compose_best_of(ts_ctx *ctx, ts_module *const *cand, int runs, int k, const ts_dataset *val,
                             const ts_best_of_config *cfg, ts_best_of_report *rep, ts_model **out) {
    if (!ctx || !cand || !val || !rep || !out) return ts_fail(ctx, TS_EINVAL, "ts_compose_best_of: NULL argument");
    *out = NULL;
    memset(rep, 0, sizeof *rep);
    ts_best_of_config def;
    if (!cfg) {
        ts_best_of_config_default(&def);
        cfg = &def;
    }
    if (runs < 1 || k < 1) return ts_fail(ctx, TS_EINVAL, "best-of: %d runs of %d classes (at least 1 of each)", runs, k);
    if (cfg->select != TS_BEST_OF_F1 && cfg->select != TS_BEST_OF_GREEDY)
        return ts_fail(ctx, TS_EINVAL, "best-of: unknown selection %d", (int)cfg->select);
    int *cls = malloc(sizeof *cls * (size_t)k);
    if (!cls) return ts_fail(ctx, TS_ENOMEM, "best-of: out of memory");
    ts_status st = TS_OK;
    for (int j = 0; j < k && !st; j++) {
        const ts_module *first = NULL;
        for (int r = 0; r < runs && !st; r++) {
            const ts_module *m = cand[(size_t)r * k + j];
            if (!m) continue;
            if (!first) first = m;
            else if (m->cls != first->cls || strcmp(m->class_name, first->class_name))
                st = ts_fail(ctx, TS_EINVAL,
                             "best-of: candidates for output %d differ: class %d '%s' (run %d) and class %d '%s'", j,
                             m->cls, m->class_name, r, first->cls, first->class_name);
        }
        if (!st && !first) st = ts_fail(ctx, TS_EINVAL, "best-of: no run has a module for output %d", j);
        if (st) break;
        cls[j] = first->cls;
        int64_t npos = 0;
        for (int64_t i = 0; i < val->count; i++) npos += val->labels[i] == first->cls;
        if (!npos)
            st = ts_fail(ctx, TS_EINVAL, "best-of: the validation data '%s' has no sample of class %d '%s'", val->name,
                         first->cls, first->class_name);
    }
    const size_t cells = (size_t)runs * (size_t)k;
    float *S = NULL;
    int *pick = NULL;
    if (!st) {
        S = malloc(sizeof *S * cells * (size_t)val->count);
        pick = malloc(sizeof *pick * (size_t)k);
        rep->picks = malloc(sizeof *rep->picks * (size_t)k);
        rep->f1 = malloc(sizeof *rep->f1 * cells);
        rep->run_top1 = malloc(sizeof *rep->run_top1 * (size_t)runs);
        if (!S || !pick || !rep->picks || !rep->f1 || !rep->run_top1) st = ts_fail(ctx, TS_ENOMEM, "best-of: out of memory");
    }
    /* every candidate's scores on val (calibrated first when asked) and its F1 */
    for (int r = 0; r < runs && !st; r++)
        for (int j = 0; j < k && !st; j++) {
            ts_module *m = cand[(size_t)r * k + j];
            float *s = S + ((size_t)r * k + j) * (size_t)val->count;
            rep->f1[(size_t)j * runs + r] = -1;
            if (!m) {
                for (int64_t i = 0; i < val->count; i++) s[i] = -INFINITY;
                continue;
            }
            if (cfg->recalibrate) {
                m->info.scale = 1.0f;
                m->info.shift = 0.0f;
            }
            if ((st = scores_on(ctx, m, val, s))) break;
            if (cfg->recalibrate && (st = calibrate(ctx, m, val, s))) break;
            rep->f1[(size_t)j * runs + r] = answer_f1(s, val, m->cls, m->info.threshold);
        }
    if (!st) {
        /* per class, the best F1 (ties: the earlier run) */
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int r = 0; r < runs; r++)
                if (cand[(size_t)r * k + j] && (best < 0 || rep->f1[(size_t)j * runs + r] > rep->f1[(size_t)j * runs + best]))
                    best = r;
            pick[j] = best;
        }
        /* each run alone, its missing outputs from the F1 picks */
        int best_run = 0;
        for (int r = 0; r < runs; r++) {
            int *alone = malloc(sizeof *alone * (size_t)k);
            if (!alone) {
                st = ts_fail(ctx, TS_ENOMEM, "best-of: out of memory");
                break;
            }
            for (int j = 0; j < k; j++) alone[j] = cand[(size_t)r * k + j] ? r : pick[j];
            rep->run_top1[r] = composed_top1(S, k, val->count, alone, cls, val->labels);
            if (rep->run_top1[r] > rep->run_top1[best_run]) best_run = r;
            free(alone);
        }
        if (!st && cfg->select == TS_BEST_OF_GREEDY) {
            /* coordinate ascent on the composition's validation top-1, from the best run */
            for (int j = 0; j < k; j++) pick[j] = cand[(size_t)best_run * k + j] ? best_run : pick[j];
            double cur = composed_top1(S, k, val->count, pick, cls, val->labels);
            for (int round = 0, changed = 1; changed && round < 10; round++) {
                changed = 0;
                for (int j = 0; j < k; j++)
                    for (int r = 0; r < runs; r++) {
                        if (r == pick[j] || !cand[(size_t)r * k + j]) continue;
                        const int was = pick[j];
                        pick[j] = r;
                        const double t = composed_top1(S, k, val->count, pick, cls, val->labels);
                        if (t > cur) {
                            cur = t;
                            changed = 1;
                        } else
                            pick[j] = was;
                    }
            }
        }
    }
    if (!st) {
        memcpy(rep->picks, pick, sizeof *pick * (size_t)k);
        rep->runs = runs;
        rep->classes = k;
        rep->val_top1 = composed_top1(S, k, val->count, pick, cls, val->labels);
        ts_module **chosen = malloc(sizeof *chosen * (size_t)k);
        if (!chosen) st = ts_fail(ctx, TS_ENOMEM, "best-of: out of memory");
        for (int j = 0; j < k && chosen; j++) chosen[j] = cand[(size_t)pick[j] * k + j];
        if (!st) st = ts_compose(ctx, chosen, k, &cfg->compose, out);
        free(chosen);
    }
    if (st) ts_best_of_report_free(rep);
    free(S);
    free(pick);
    free(cls);
    return st;
}

void ts_best_of_report_free(ts_best_of_report *rep) {
    if (!rep) return;
    free(rep->picks);
    free(rep->f1);
    free(rep->run_top1);
    memset(rep, 0, sizeof *rep);
}
