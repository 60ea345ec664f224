/* Post-training int8 quantization (issue 18): calibration and what inference reads.
 *
 * What is quantized: every conv2d's input (one scale per tensor, 0..255 when the
 * calibration never saw it negative, as after a ReLU, else -128..127) and its weights
 * (per output channel, symmetric, from the weights themselves at packing time, after
 * batch norm is folded in). The output of a convolution stays f32, and so does every
 * other layer (batch norm folded, activations, pooling, additions, the classifier):
 * oneDNN's int8 convolution reads u8/s8 and writes f32, which keeps residual additions
 * exact and needs no output calibration.
 *
 * The scales live in the model's metadata ("int8.inputs": one line per layer,
 * "NAME SCALE u8|s8"), so a quantized model is an ordinary .tsr file with fp32 weights
 * that saves, loads, clones and slices as any other. Training ignores them. */
#include "nn.h"

#include "../ops/ops.h"
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses "NAME SCALE u8|s8" lines into scale/u8 (nlayers entries); 0 and *bad set to
 * the first line that names no conv2d of m or has no positive finite scale. */
static int quant_parse(const ts_model *m, const char *text, float *scale, unsigned char *u8, int *bad) {
    int line = 0;
    for (const char *p = text; p && *p; line++) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[LAYER_NAME_MAX + 64], name[LAYER_NAME_MAX], sign[8];
        float s = 0.0f;
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, p, len);
        buf[len] = 0;
        p = end ? end + 1 : NULL;
        if (!len) continue;
        int li = -1;
        if (sscanf(buf, "%63s %g %7s", name, &s, sign) == 3 && isfinite(s) && s > 0.0f && isfinite(1.0f / s) &&
            (!strcmp(sign, "u8") || !strcmp(sign, "s8")))
            for (int j = 1; j < m->nlayers && li < 0; j++)
                if (m->layers[j].kind == LAYER_CONV2D && !strcmp(m->layers[j].name, name)) li = j;
        if (li < 0) {
            *bad = line + 1;
            return 0;
        }
        scale[li] = s;
        u8[li] = sign[0] == 'u';
    }
    return 1;
}

void model_quant_refresh(ts_model *m) {
    if (!m->qdirty) return;
    m->qdirty = 0;
    free(m->qscale);
    free(m->qu8);
    m->qscale = NULL;
    m->qu8 = NULL;
    exec_weights_changed(m); /* packed convolutions are rebuilt, in the new precision */
    const char *text = ts_model_get_meta(m, QUANT_META_KEY);
    if (!text || !*text) return;
    float *scale = calloc((size_t)m->nlayers, sizeof *scale);
    unsigned char *u8 = calloc((size_t)m->nlayers, 1);
    int bad = 0;
    if (scale && u8 && quant_parse(m, text, scale, u8, &bad)) {
        m->qscale = scale;
        m->qu8 = u8;
        return;
    }
    /* unreadable (checked where it is set and loaded: ts_model_quant_check): fp32 */
    free(scale);
    free(u8);
}

ts_status model_quant_check(ts_ctx *ctx, const ts_model *m, const char *source) {
    const char *text = ts_model_get_meta(m, QUANT_META_KEY);
    if (!text) return TS_OK;
    float *scale = calloc((size_t)m->nlayers, sizeof *scale);
    unsigned char *u8 = calloc((size_t)m->nlayers, 1);
    int bad = 0;
    ts_status st = TS_OK;
    if (!scale || !u8) st = ts_fail(ctx, TS_ENOMEM, "out of memory reading int8 scales");
    else if (!quant_parse(m, text, scale, u8, &bad))
        st = ts_fail(ctx, TS_EFORMAT, "%s: metadata %s, line %d: expected 'CONV2D_LAYER SCALE u8|s8' naming a conv2d "
                     "layer of the model and a positive scale", source, QUANT_META_KEY, bad);
    free(scale);
    free(u8);
    return st;
}

int ts_model_int8_layer(const ts_model *m, int index, float *scale, int *is_unsigned) {
    if (!m || index < 1 || index >= m->nlayers || m->layers[index].kind != LAYER_CONV2D) return 0;
    if (!m->qdirty) { /* the parsed scales are current */
        float s;
        int u8;
        if (!model_quant_layer(m, index, &s, &u8)) return 0;
        if (scale) *scale = s;
        if (is_unsigned) *is_unsigned = u8;
        return 1;
    }
    const char *text = ts_model_get_meta(m, QUANT_META_KEY);
    if (!text) return 0;
    float *sc = calloc((size_t)m->nlayers, sizeof *sc);
    unsigned char *u8 = calloc((size_t)m->nlayers, 1);
    int bad = 0, yes = 0;
    if (sc && u8 && quant_parse(m, text, sc, u8, &bad) && sc[index] > 0.0f) {
        yes = 1;
        if (scale) *scale = sc[index];
        if (is_unsigned) *is_unsigned = u8[index];
    }
    free(sc);
    free(u8);
    return yes;
}

/* ------------------------------------------------------------------- calibration */

#define QUANT_BINS 4096

typedef struct calib {
    const ts_model *m;
    int pass;              /* 0: extremes; 1: histograms of |x| */
    float *minv, *maxabs;  /* (nlayers), per layer whose output some conv2d reads */
    uint64_t *hist;        /* (nlayers, QUANT_BINS) in pass 1 */
} calib;

static int calib_see(void *user, int layer, int64_t first, int n, const float *out) {
    (void)first;
    calib *c = user;
    const ts_shape *s = layer == 0 ? &c->m->input : &c->m->layers[layer].out;
    const size_t count = (size_t)n * (size_t)shape_numel(s);
    if (c->pass == 0) {
        float lo = c->minv[layer], mx = c->maxabs[layer];
        for (size_t i = 0; i < count; i++) {
            if (!isfinite(out[i])) continue; /* a range is of the finite values */
            lo = out[i] < lo ? out[i] : lo;
            mx = fabsf(out[i]) > mx ? fabsf(out[i]) : mx;
        }
        c->minv[layer] = lo;
        c->maxabs[layer] = mx;
        return 0;
    }
    uint64_t *h = c->hist + (size_t)layer * QUANT_BINS;
    const float mx = c->maxabs[layer];
    const float per = mx > 0.0f ? (float)QUANT_BINS / mx : 0.0f;
    if (!(per > 0.0f) || !isfinite(per)) return 0; /* no histogram: the range is the maximum */
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(out[i])) continue;
        const float v = fabsf(out[i]) * per;
        const int b = v >= (float)QUANT_BINS ? QUANT_BINS - 1 : (int)v;
        h[b]++;
    }
    return 0;
}

/* The |x| below which `pct` percent of the counted values lie (upper bin edge). */
static float calib_range(const uint64_t *h, float maxabs, double pct) {
    uint64_t total = 0;
    for (int b = 0; b < QUANT_BINS; b++) total += h[b];
    if (!total || pct >= 100.0) return maxabs;
    const double want = pct / 100.0 * (double)total;
    uint64_t seen = 0;
    for (int b = 0; b < QUANT_BINS; b++) {
        seen += h[b];
        if ((double)seen >= want) return maxabs * (float)(b + 1) / (float)QUANT_BINS;
    }
    return maxabs;
}

void ts_quantize_config_default(ts_quantize_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->percentile = 99.99;
}

ts_status ts_model_quantize(ts_ctx *ctx, const ts_model *m, const float *x, int n, const ts_quantize_config *cfg,
                            ts_model **out) {
    if (!ctx || !m || !x || n < 1 || !cfg || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_quantize: bad argument");
    *out = NULL;
    if (!(cfg->percentile > 50.0 && cfg->percentile <= 100.0))
        return ts_fail(ctx, TS_EINVAL, "quantize: percentile %g outside (50, 100]", cfg->percentile);
    int convs = 0;
    for (int li = 1; li < m->nlayers; li++) convs += m->layers[li].kind == LAYER_CONV2D;
    if (!convs) return ts_fail(ctx, TS_EUNSUPPORTED, "quantize: the model has no conv2d layer (int8 covers convolutions)");
    ts_model *q = NULL;
    ts_status st = model_clone(ctx, m, &q);
    if (st) return st;
    if ((st = ts_model_set_meta(ctx, q, QUANT_META_KEY, NULL))) goto done; /* calibrate in f32 */
    calib c = {.m = q};
    int *want = calloc((size_t)m->nlayers, sizeof *want), nwant = 0;
    c.minv = malloc(sizeof *c.minv * (size_t)m->nlayers);
    c.maxabs = calloc((size_t)m->nlayers, sizeof *c.maxabs);
    c.hist = cfg->percentile < 100.0 ? calloc((size_t)m->nlayers * QUANT_BINS, sizeof *c.hist) : NULL;
    float *logits = malloc(sizeof *logits * (size_t)n * (size_t)(m->classes > 0 ? m->classes : 1));
    ts_strbuf text = {0};
    if (!want || !c.minv || !c.maxabs || !logits || (cfg->percentile < 100.0 && !c.hist)) {
        st = ts_fail(ctx, TS_ENOMEM, "quantize: out of memory");
        goto free_calib;
    }
    for (int li = 0; li < m->nlayers; li++) c.minv[li] = INFINITY;
    /* the layers whose outputs convolutions read (each once) */
    for (int li = 1; li < m->nlayers; li++) {
        if (m->layers[li].kind != LAYER_CONV2D) continue;
        const int src = m->layers[li].inputs[0];
        int seen = 0;
        for (int k = 0; k < nwant; k++) seen |= want[k] == src;
        if (!seen) want[nwant++] = src;
    }
    for (c.pass = 0; c.pass < (c.hist ? 2 : 1) && !st; c.pass++) {
        const ts_capture cap = {want, nwant, calib_see, &c};
        st = ts_model_predict_capture(ctx, q, x, n, logits, &cap);
    }
    for (int li = 1; li < m->nlayers && !st; li++) {
        if (m->layers[li].kind != LAYER_CONV2D) continue;
        const int src = m->layers[li].inputs[0];
        const int u8 = c.minv[src] >= 0.0f;
        float range = c.hist ? calib_range(c.hist + (size_t)src * QUANT_BINS, c.maxabs[src], cfg->percentile)
                             : c.maxabs[src];
        float scale = range / (u8 ? 255.0f : 127.0f);
        if (!(scale > 0.0f) || !isfinite(scale) || !isfinite(1.0f / scale)) scale = 1.0f; /* all zero: any scale */
        ts_strbuf_printf(&text, "%s %.9g %s\n", m->layers[li].name, (double)scale, u8 ? "u8" : "s8");
    }
    if (!st && text.failed) st = ts_fail(ctx, TS_ENOMEM, "quantize: out of memory");
    if (!st) st = ts_model_set_meta(ctx, q, QUANT_META_KEY, text.s);
    if (!st) {
        char info[96];
        snprintf(info, sizeof info, "%d samples, percentile %g", n, cfg->percentile);
        st = ts_model_set_meta(ctx, q, "int8.calibration", info);
    }
free_calib:
    free(want);
    free(c.minv);
    free(c.maxabs);
    free(c.hist);
    free(logits);
    ts_strbuf_free(&text);
done:
    if (st) ts_model_free(q);
    else *out = q;
    return st;
}
