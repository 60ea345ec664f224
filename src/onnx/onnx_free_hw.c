/* Free image size on import: a graph input whose height and width are symbolic
 * becomes a free-size model (`input ... free=hw`, src/nn/free_hw.c) when nothing in
 * the graph depends on them. The importer folds shape arithmetic into constants at
 * the size it imports at, so the graph is imported at two sizes: any layer, tensor or
 * constant that differs between the two (a Reshape to a size computed from the
 * input's shape, a Resize to sizes computed from it, a Gemm after a Flatten) fixes
 * the size, and the model is refused without --input-shape, naming that layer. */
#include "onnx_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first size is the model's default (ImageNet's 224x224: what ts_model_predict
 * runs at); the second only shows what depends on the size. */
static const int64_t FREE_FIRST[2] = {224, 224}, FREE_SECOND[2] = {256, 288};

static ts_status refuse(ts_ctx *ctx, const char *file, const char *why) {
    return ts_fail(ctx, TS_EUNSUPPORTED,
                   "%s: the graph input's height and width are symbolic, but %s: the model has a fixed size; give it "
                   "with --input-shape CxHxW (ts_onnx_import_config.input_shape)",
                   file, why);
}

/* The next line of *t (its length), advancing *t past it; NULL at the end. */
static const char *next_line(const char **t, size_t *len) {
    if (!*t || !**t) return NULL;
    const char *s = *t, *nl = strchr(s, '\n');
    *len = nl ? (size_t)(nl - s) : strlen(s);
    *t = nl ? nl + 1 : s + *len;
    return s;
}

/* An architecture line's name= value into buf. */
static void line_name(const char *line, size_t len, char *buf, size_t cap) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(len < sizeof tmp - 1 ? len : sizeof tmp - 1), line);
    const char *p = strstr(tmp, " name=");
    if (p) snprintf(buf, cap, "%.*s", (int)strcspn(p + 6, " "), p + 6);
}

/* TS_OK when a and b, the graph imported at FREE_FIRST and FREE_SECOND, have the same
 * layers and attributes (architecture text past the input line) and the same tensors
 * and values. */
static ts_status same_graph(ts_ctx *ctx, const char *file, const ts_model *a, const ts_model *b) {
    const char *ta = a->arch_text, *tb = b->arch_text, *la, *lb;
    size_t na = 0, nb = 0;
    char why[768];
    next_line(&ta, &na); /* the input lines differ by their shape */
    next_line(&tb, &nb);
    do {
        la = next_line(&ta, &na);
        lb = next_line(&tb, &nb);
        if (!la && !lb) break;
        if (la && lb && na == nb && !memcmp(la, lb, na)) continue;
        char name[LAYER_NAME_MAX] = "?";
        if (la) line_name(la, na, name, sizeof name);
        snprintf(why, sizeof why, "layer '%s' depends on them ('%.*s' at %lldx%lld, '%.*s' at %lldx%lld)", name,
                 (int)(na > 200 ? 200 : na), la ? la : "", (long long)FREE_FIRST[0], (long long)FREE_FIRST[1],
                 (int)(nb > 200 ? 200 : nb), lb ? lb : "", (long long)FREE_SECOND[0], (long long)FREE_SECOND[1]);
        return refuse(ctx, file, why);
    } while (1);
    for (int t = 0; t < a->ntensors; t++) {
        const tensor_entry *e = &a->tensors[t];
        if (t < b->ntensors && e->numel == b->tensors[t].numel && e->role == b->tensors[t].role &&
            !memcmp(tensor_data((ts_model *)a, t), tensor_data((ts_model *)b, t), (size_t)e->numel * sizeof(float)))
            continue;
        snprintf(why, sizeof why, "tensor '%s' of layer '%s' holds values computed from them", e->name,
                 a->layers[e->layer].name);
        return refuse(ctx, file, why);
    }
    return TS_OK;
}

/* The refusal for a graph that does not import at `hw` (what failed on ctx). */
static ts_status refuse_at(ts_ctx *ctx, const char *file, const int64_t hw[2]) {
    char why[900];
    snprintf(why, sizeof why, "the graph does not import at %lldx%lld (%s)", (long long)hw[0], (long long)hw[1],
             ts_ctx_error(ctx));
    return refuse(ctx, file, why);
}

/* check mode: the refusal on ctx as the report's last line (after what the walk listed) */
static ts_status report_refusal(ts_ctx *ctx, char **report) {
    const size_t had = *report ? strlen(*report) : 0, len = strlen(ts_ctx_error(ctx));
    char *r = realloc(*report, had + len + 2);
    if (!r) return ts_fail(ctx, TS_ENOMEM, "out of memory");
    memcpy(r + had, ts_ctx_error(ctx), len);
    memcpy(r + had + len, "\n", 2);
    *report = r;
    return TS_EUNSUPPORTED;
}

/* check mode on a free-size graph: the walk at the first size, then the whole import,
 * whose refusal (what depends on the size) becomes a report line */
static ts_status check_free(ts_ctx *ctx, const void *data, size_t size, const char *name,
                            const ts_onnx_import_config *cfg, ts_status walked, char **report) {
    if (walked == TS_EUNSUPPORTED || walked == TS_ENOMEM) return walked;
    if (walked) {
        refuse_at(ctx, name, FREE_FIRST);
        return report_refusal(ctx, report);
    }
    ts_model *m = NULL;
    ts_status st = onnx_import_bytes(ctx, data, size, name, cfg, 0, &m, NULL);
    ts_model_free(m);
    return st == TS_EUNSUPPORTED ? report_refusal(ctx, report) : st;
}

ts_status onnx_import_bytes(ts_ctx *ctx, const void *data, size_t size, const char *name,
                            const ts_onnx_import_config *cfg, int checking, ts_model **out, char **report) {
    int any_size = 0;
    ts_status st = onnx_import_at(ctx, data, size, name, cfg, checking, FREE_FIRST, &any_size, out, report);
    if (!any_size) return st;
    if (checking) return check_free(ctx, data, size, name, cfg, st, report);
    if (st) return st == TS_ENOMEM ? st : refuse_at(ctx, name, FREE_FIRST);
    ts_model *second = NULL;
    st = onnx_import_at(ctx, data, size, name, cfg, 0, FREE_SECOND, NULL, &second, NULL);
    if (st && st != TS_ENOMEM) st = refuse_at(ctx, name, FREE_SECOND);
    if (!st) st = same_graph(ctx, name, *out, second);
    ts_model_free(second);
    if (st) {
        ts_model_free(*out);
        *out = NULL;
    }
    return st;
}
