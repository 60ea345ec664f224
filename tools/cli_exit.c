/* The early exit in eval, predict and bench (docs/early-exit.md): --exit-threshold,
 * and eval's sweep of the threshold with the accuracy and mean MACs of each. */
#include "cli_exit.h"

#include <stdlib.h>
#include <string.h>

int cli_exit_threshold(const cli_cmd *cmd, const ts_model *m, ts_ctx *ctx, float *rho) {
    *rho = -1.0f;
    if (!cli_get(cmd, "exit-threshold")) return 0;
    double f;
    if (!cli_float(cmd, "exit-threshold", 1.0, 0.0, 1.0, &f)) return EXIT_USAGE;
    if (!ts_model_exit_info(m, &(ts_exit_info){0})) {
        fprintf(stderr, "tessera %s: --exit-threshold: the model has no early exit (train one with --early-exit)\n",
                cmd->name);
        return EXIT_USAGE;
    }
    if (ts_ctx_get_constant_time(ctx)) {
        fprintf(stderr, "tessera %s: --exit-threshold: refused in constant-time mode (whether a sample leaves early "
                        "shows in the time taken; docs/security.md)\n", cmd->name);
        return EXIT_USAGE;
    }
    *rho = (float)f;
    return 0;
}

/* Runs ts_model_predict_exit at rho over ds: top-1, the fraction that exited, seconds. */
static ts_status measure(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, float rho, double *top1,
                         double *exited, double *secs) {
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(ctx, m, &pp);
    if (st) return st;
    const int k = ts_model_classes(m);
    const size_t in_sz = (size_t)ds->channels * ds->height * ds->width;
    float *x = malloc(sizeof *x * in_sz * (size_t)batch), *logits = malloc(sizeof *logits * (size_t)k * batch);
    int *out = malloc(sizeof *out * (size_t)batch);
    int64_t right = 0, left = 0;
    double t = 0;
    if (!x || !logits || !out) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    for (int64_t s = 0; s < ds->count && !st; s += batch) {
        const int n = (int)(ds->count - s < batch ? ds->count - s : batch);
        ts_preprocess_images(&pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        const double t0 = cli_now();
        if ((st = ts_model_predict_exit(ctx, m, x, n, rho, logits, out))) break;
        t += cli_now() - t0;
        for (int i = 0; i < n; i++) {
            right += ts_argmax(logits + (size_t)i * k, k) == ds->labels[s + i];
            left += out[i];
        }
    }
    free(x);
    free(logits);
    free(out);
    *top1 = ds->count ? (double)right / ds->count : 0;
    *exited = ds->count ? (double)left / ds->count : 0;
    *secs = t;
    return st;
}

static void json_point(json_out *J, const char *key, const ts_exit_point *p, double plain_macs) {
    json_object(J, key);
    json_num(J, "rho", p->rho);
    json_num(J, "top1", p->top1);
    json_num(J, "exited", p->exited);
    json_num(J, "macs_per_sample", p->macs);
    json_num(J, "macs_saved", 1.0 - p->macs / plain_macs);
    json_close(J);
}

#define SWEEP_POINTS 11 /* 0.50, 0.55, ..., 0.95, then 1.0: no early exit */

ts_status cli_exit_eval(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, float rho, json_out *J) {
    ts_exit_info info;
    if (!ts_model_exit_info(m, &info)) return TS_OK;
    if (ts_ctx_get_constant_time(ctx)) {
        printf("\nearly exit: not evaluated in constant-time mode (it would show in the time taken)\n");
        return TS_OK;
    }
    ts_exit_point pts[SWEEP_POINTS + 1];
    int np = 0;
    if (rho >= 0) pts[np++].rho = rho;
    else
        for (int i = 0; i < SWEEP_POINTS; i++) pts[np++].rho = i + 1 < SWEEP_POINTS ? 0.5f + 0.05f * (float)i : 1.0f;
    pts[np++].rho = 1.0f; /* the reference: no early exit */
    ts_status st = ts_evaluate_exit(ctx, m, ds, batch, pts, np);
    if (st) return st;
    const ts_exit_point *plain = &pts[np - 1];
    const double base = (double)info.macs_plain;
    /* the cheapest threshold within 1 point of the network without early exit */
    int best = np - 1;
    for (int i = 0; i < np - 1; i++)
        if (pts[i].top1 >= plain->top1 - 0.01 && pts[i].macs < pts[best].macs) best = i;
    char name[128];
    ts_layer_info li;
    snprintf(name, sizeof name, "%s", ts_model_layer(m, info.layer, &li) ? "?" : li.name);
    printf("\nearly exit '%s': %.2fM MACs per sample to the exit, %.2fM more to the end (%.2fM without exits)\n",
           name, info.macs_exit / 1e6, info.macs_rest / 1e6, base / 1e6);
    printf("%6s %8s %8s %12s %8s\n", "rho", "top-1", "exited", "MACs/sample", "saved");
    for (int i = 0; i < np - (rho >= 0 ? 0 : 1); i++)
        printf("%6.2f %7.2f%% %7.2f%% %11.2fM %7.2f%%%s\n", pts[i].rho, 100 * pts[i].top1, 100 * pts[i].exited,
               pts[i].macs / 1e6, 100 * (1 - pts[i].macs / base),
               pts[i].rho >= 1.0f ? "  (no early exit)" : i == best && rho < 0 ? "  <- chosen" : "");
    if (rho < 0)
        printf("chosen rho %.2f: the fewest MACs within 1 point of top-1 without early exit (%.2f%%)\n",
               pts[best].rho, 100 * plain->top1);
    /* the chosen threshold run for real: the continuing samples in smaller batches */
    const float run_rho = rho >= 0 ? rho : pts[best].rho;
    double top1, exited, secs;
    if ((st = measure(ctx, m, ds, batch, run_rho, &top1, &exited, &secs))) return st;
    printf("ts_model_predict_exit at rho %.2f: top-1 %.2f%%, %.2f%% left at the exit, %.2fs\n", run_rho, 100 * top1,
           100 * exited, secs);
    if (J) {
        json_object(J, "early_exit");
        json_str(J, "layer", name);
        json_int(J, "macs_exit", (long long)info.macs_exit);
        json_int(J, "macs_rest", (long long)info.macs_rest);
        json_int(J, "macs_plain", (long long)info.macs_plain);
        json_array(J, "sweep");
        for (int i = 0; i < np; i++) json_point(J, NULL, &pts[i], base);
        json_close(J);
        json_point(J, "chosen", rho >= 0 ? &pts[0] : &pts[best], base);
        json_object(J, "measured");
        json_num(J, "rho", run_rho);
        json_num(J, "top1", top1);
        json_num(J, "exited", exited);
        json_num(J, "seconds", secs);
        json_close(J);
        json_close(J);
    }
    return TS_OK;
}
