/* Inference with an early exit (docs/early-exit.md): the layers the exit needs run for
 * every sample; the samples confident enough there stop, and the others, gathered into
 * a smaller batch, run the rest of the network. The saving is real compute: the rest
 * runs on fewer samples, never masked. */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

#define EXIT_CHUNK 256 /* samples per pass, as ts_model_predict's */

/* What one call needs beside the model: the layer sets and the gathered batch. */
typedef struct exit_run {
    unsigned char *on_exit;    /* (nlayers) the exit's path: part one, which part two skips */
    unsigned char *skip_one;   /* (nlayers) the layers part one skips */
    unsigned char *not_final;  /* (nlayers) layers the final output does not need */
    unsigned char *gather;     /* (nlayers) part-one layers that part two reads */
    float *x;                  /* (chunk, input) the continuing samples */
    int *keep;                 /* (chunk) their positions in the chunk */
} exit_run;

static void exit_run_free(exit_run *r) {
    free(r->on_exit);
    free(r->skip_one);
    free(r->not_final);
    free(r->gather);
    free(r->x);
    free(r->keep);
}

/* for chunks of up to cap samples */
static ts_status exit_run_init(ts_ctx *ctx, const ts_model *m, int cap, exit_run *r) {
    const size_t nl = (size_t)m->nlayers, in_sz = (size_t)shape_numel(&m->input);
    memset(r, 0, sizeof *r);
    r->on_exit = malloc(nl);
    r->skip_one = malloc(nl);
    r->not_final = malloc(nl);
    r->gather = calloc(nl, 1);
    r->x = malloc(sizeof *r->x * in_sz * (size_t)cap);
    r->keep = malloc(sizeof *r->keep * (size_t)cap);
    if (!r->on_exit || !r->skip_one || !r->not_final || !r->gather || !r->x || !r->keep)
        return ts_fail(ctx, TS_ENOMEM, "early exit: out of memory");
    exit_ancestors(m, m->exit_layer, r->on_exit);
    exit_ancestors(m, m->nlayers - 1, r->not_final);
    for (size_t li = 0; li < nl; li++) r->skip_one[li] = !r->on_exit[li];
    for (size_t li = 0; li < nl; li++) r->not_final[li] = !r->not_final[li];
    for (int li = 1; li < m->nlayers; li++)
        if (!r->on_exit[li])
            for (int k = 0; k < m->layers[li].ninputs; k++) r->gather[m->layers[li].inputs[k]] = 1;
    r->gather[0] = 0; /* the input is gathered into r->x */
    return TS_OK;
}

/* Fused inference may read other layers than the graph says (a channel-shuffle gather
 * or a batch norm reads a skipped concat's inputs: gather_sources): once a pass has
 * planned it, those of part two's layers are moved too. */
static void mark_sources(const ts_model *m, exit_run *r) {
    for (int li = 1; li < m->nlayers; li++) {
        if (r->on_exit[li]) continue;
        int src[LAYER_MAX_INPUTS];
        const int ns = gather_sources(m, li, src);
        for (int k = 0; k < ns; k++) r->gather[src[k]] = 1;
    }
    r->gather[0] = 0;
}

/* Rows keep[0..n2) of every part-one output that part two reads moved to rows 0..n2
 * (in place, upwards only: keep is increasing); a buffer shared by aliases moves once. */
static void gather_rows(ts_model *m, const exit_run *r, int n2) {
    const float *done[64];
    int ndone = 0;
    for (int li = 1; li < m->nlayers; li++) {
        if (!r->gather[li]) continue;
        float *buf = m->exec.ls[li].out;
        int seen = 0;
        for (int i = 0; i < ndone; i++) seen |= done[i] == buf;
        if (seen) continue;
        if (ndone < 64) done[ndone++] = buf;
        const size_t row = (size_t)shape_numel(&m->layers[li].out);
        for (int i = 0; i < n2; i++)
            if (r->keep[i] != i) memcpy(buf + (size_t)i * row, buf + (size_t)r->keep[i] * row, row * sizeof *buf);
    }
}

/* One chunk of b samples at x: logits (b, classes), exited (b). */
static ts_status exit_chunk(ts_ctx *ctx, ts_model *m, exit_run *r, const float *x, int b, float rho,
                            float *logits, int *exited) {
    const int k = m->classes;
    const size_t in_sz = (size_t)shape_numel(&m->input), row = (size_t)k * sizeof *logits;
    int layout1, layout2, n2 = 0;
    ts_status st;
    if (rho >= 1.0f) { /* no exit: the final output's layers alone */
        if ((st = exec_predict_part(ctx, m, x, b, r->not_final, &layout1))) return st;
        memcpy(logits, m->exec.ls[m->nlayers - 1].out, (size_t)b * row);
        memset(exited, 0, sizeof *exited * (size_t)b);
        return TS_OK;
    }
    if ((st = exec_predict_part(ctx, m, x, b, r->skip_one, &layout1))) return st;
    const float *z = m->exec.ls[m->exit_layer].out;
    for (int i = 0; i < b; i++) {
        exited[i] = exit_top_probability(z + (size_t)i * k, k) >= rho;
        if (exited[i]) memcpy(logits + (size_t)i * k, z + (size_t)i * k, row);
        else r->keep[n2++] = i;
    }
    if (n2 == 0) return TS_OK;
    for (int i = 0; i < n2; i++) memcpy(r->x + (size_t)i * in_sz, x + (size_t)r->keep[i] * in_sz, in_sz * sizeof *x);
    mark_sources(m, r);
    gather_rows(m, r, n2);
    if ((st = exec_predict_part(ctx, m, r->x, n2, r->on_exit, &layout2))) return st;
    /* the smaller batch ran in another layout (oneDNN could not pack it alike): part
     * one's outputs do not fit it, so the continuing samples run the whole path */
    if (layout2 != layout1 && (st = exec_predict_part(ctx, m, r->x, n2, r->not_final, &layout2))) return st;
    const float *f = m->exec.ls[m->nlayers - 1].out;
    for (int i = 0; i < n2; i++) memcpy(logits + (size_t)r->keep[i] * k, f + (size_t)i * k, row);
    return TS_OK;
}

ts_status ts_model_predict_exit(ts_ctx *ctx, ts_model *m, const float *x, int n, float rho, float *logits,
                                int *exited) {
    if (!ctx || !m || !x || !logits || n < 0 || !(rho >= 0.0f))
        return ts_fail(ctx, TS_EINVAL, "ts_model_predict_exit: bad argument");
    if (!m->exit_layer) return ts_fail(ctx, TS_EINVAL, "ts_model_predict_exit: the model has no early exit");
    if (ctx->constant_time)
        return ts_fail(ctx, TS_EUNSUPPORTED, "early exit: refused in constant-time mode (the time taken would tell "
                                             "which samples left early; docs/security.md)");
    exit_run r;
    int own[EXIT_CHUNK];
    ts_status st = exit_run_init(ctx, m, n < EXIT_CHUNK ? (n > 0 ? n : 1) : EXIT_CHUNK, &r);
    for (int s = 0; s < n && !st; s += EXIT_CHUNK) {
        const int b = n - s < EXIT_CHUNK ? n - s : EXIT_CHUNK;
        st = exit_chunk(ctx, m, &r, x + (size_t)s * (size_t)shape_numel(&m->input), b, rho,
                        logits + (size_t)s * (size_t)m->classes, exited ? exited + s : own);
    }
    exit_run_free(&r);
    return st;
}
