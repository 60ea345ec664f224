/* Evaluating a model's early exit (docs/early-exit.md): both heads of every sample in
 * one pass, then the accuracy and mean cost of each threshold computed from them. */
#include "train.h"

#include <string.h>

typedef struct exit_sink {
    float *logits; /* (n, classes) of the current call */
    int classes;
} exit_sink;

static int keep_exit(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    exit_sink *s = user;
    memcpy(s->logits + (size_t)first * (size_t)s->classes, out, sizeof *out * (size_t)n * (size_t)s->classes);
    return 0;
}

ts_status evaluate_exit_pass(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, float *exit_logits) {
    exit_sink sink = {exit_logits, m->classes};
    const ts_capture cap = {&m->exit_layer, 1, keep_exit, &sink};
    return ts_model_predict_capture(ctx, m, x, n, logits, &cap);
}

ts_status ts_evaluate_exit(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, ts_exit_point *points,
                           int npoints) {
    if (!ctx || !m || !ds || (npoints > 0 && !points) || npoints < 0)
        return ts_fail(ctx, TS_EINVAL, "ts_evaluate_exit: bad argument");
    ts_exit_info info;
    if (!ts_model_exit_info(m, &info)) return ts_fail(ctx, TS_EINVAL, "ts_evaluate_exit: the model has no early exit");
    ts_status st = train_check_dataset(ctx, m, ds, "evaluation");
    if (st) return st;
    if (batch < 1) batch = 256;
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) return st;
    const int k = m->classes;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    float *x = ts_alloc(ctx, (size_t)batch * in_sz * sizeof(float), "evaluation batch");
    float *logits = ts_alloc(ctx, (size_t)batch * (size_t)k * sizeof(float), "evaluation logits");
    float *exit_logits = ts_alloc(ctx, (size_t)batch * (size_t)k * sizeof(float), "exit logits");
    int64_t *right = ts_calloc(ctx, sizeof *right * (size_t)(npoints ? npoints : 1), "exit counts");
    int64_t *left = ts_calloc(ctx, sizeof *left * (size_t)(npoints ? npoints : 1), "exit counts");
    if (!x || !logits || !exit_logits || !right || !left) {
        st = TS_ENOMEM;
        goto done;
    }
    for (int64_t s = 0; s < ds->count && !st; s += batch) {
        const int n = (int)(ds->count - s < batch ? ds->count - s : batch);
        ts_preprocess_images(&pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        if ((st = evaluate_exit_pass(ctx, m, x, n, logits, exit_logits))) break;
        for (int i = 0; i < n; i++) {
            const float *ze = exit_logits + (size_t)i * k, *zf = logits + (size_t)i * k;
            const float p = exit_top_probability(ze, k);
            const int y = ds->labels[s + i], ok_exit = ts_argmax(ze, k) == y, ok_final = ts_argmax(zf, k) == y;
            for (int j = 0; j < npoints; j++) {
                const int out = points[j].rho < 1.0f && p >= points[j].rho;
                left[j] += out;
                right[j] += out ? ok_exit : ok_final;
            }
        }
    }
    for (int j = 0; j < npoints && !st; j++) {
        const double c = ds->count ? (double)ds->count : 1.0;
        points[j].top1 = (double)right[j] / c;
        points[j].exited = (double)left[j] / c;
        points[j].macs = points[j].rho >= 1.0f ? (double)info.macs_plain
                                                : (double)info.macs_exit + (1.0 - points[j].exited) * (double)info.macs_rest;
    }
done:
    ts_free(x);
    ts_free(logits);
    ts_free(exit_logits);
    ts_free(right);
    ts_free(left);
    return st;
}
