/* Best-of-N composition (GradSplitter's ensemble of modules, Qi et al. TOSEM; brief
 * section 3): several models decomposed into modules of the same classes; for each
 * class the module with the best F1 on validation data is kept, and the picks are
 * composed into one classifier (ts_compose). A module's F1 is its own yes/no answer
 * (score above its threshold) for its class, as ts_module_evaluate counts it. */
#include "modular.h"

#include "train/train.h"

#include <stdlib.h>
#include <string.h>

/* F1 of "is class c" from the module's rates on npos positives and nneg negatives. */
static double f1_of(double own, double rest, int64_t npos, int64_t nneg) {
    const double tp = own * (double)npos, fn = (double)npos - tp, fp = (1.0 - rest) * (double)nneg;
    return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0;
}

ts_status ts_compose_best_of(ts_ctx *ctx, ts_module *const *cand, int runs, int k, const ts_dataset *val,
                             const ts_compose_config *cfg, int *picks, double *f1, ts_model **out) {
    if (!ctx || !cand || !val || !picks || !out) return ts_fail(ctx, TS_EINVAL, "ts_compose_best_of: NULL argument");
    *out = NULL;
    if (runs < 1 || k < 1) return ts_fail(ctx, TS_EINVAL, "best-of: %d runs of %d classes (at least 1 of each)", runs, k);
    for (int j = 0; j < k; j++) {
        const ts_module *first = NULL;
        for (int r = 0; r < runs; r++) {
            const ts_module *m = cand[(size_t)r * k + j];
            if (!m) continue;
            if (!first) first = m;
            else if (m->cls != first->cls || strcmp(m->class_name, first->class_name))
                return ts_fail(ctx, TS_EINVAL,
                               "best-of: candidates for output %d differ: class %d '%s' (run %d) and class %d '%s'", j,
                               m->cls, m->class_name, r, first->cls, first->class_name);
        }
        if (!first) return ts_fail(ctx, TS_EINVAL, "best-of: no run has a module for output %d", j);
    }
    ts_status st = TS_OK;
    for (int j = 0; j < k && !st; j++) {
        int best = -1;
        double best_f1 = -1;
        int64_t npos = 0;
        for (int r = 0; r < runs && !st; r++) {
            const ts_module *m = cand[(size_t)r * k + j];
            if (f1) f1[(size_t)j * runs + r] = -1;
            if (!m) continue;
            if (!npos) {
                for (int64_t i = 0; i < val->count; i++) npos += val->labels[i] == m->cls;
                if (!npos) {
                    st = ts_fail(ctx, TS_EINVAL, "best-of: the validation data '%s' has no sample of class %d '%s'",
                                 val->name, m->cls, m->class_name);
                    break;
                }
            }
            double own, rest;
            if ((st = ts_module_evaluate(ctx, m, val, MODULE_EVAL_BATCH_MAX, &own, &rest))) break;
            const double f = f1_of(own, rest, npos, val->count - npos);
            if (f1) f1[(size_t)j * runs + r] = f;
            /* ties go to the earlier run */
            if (f > best_f1) {
                best_f1 = f;
                best = r;
            }
        }
        picks[j] = best;
    }
    if (st) return st;
    ts_module **chosen = malloc(sizeof *chosen * (size_t)k);
    if (!chosen) return ts_fail(ctx, TS_ENOMEM, "best-of: out of memory");
    for (int j = 0; j < k; j++) chosen[j] = cand[(size_t)picks[j] * k + j];
    st = ts_compose(ctx, chosen, k, cfg, out);
    free(chosen);
    return st;
}
