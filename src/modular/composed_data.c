/* The evaluation set of a composed model: for each output j, the samples of its
 * module's class from that module's own dataset, relabelled j. This is how a
 * model reused across datasets (Fashion-MNIST classes next to MNIST digits) is
 * scored. */
#include "modular.h"

#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct origin_ref {
    char dataset[256];
    int cls;
} origin_ref;

static ts_status parse_origin(ts_ctx *ctx, const ts_model *m, int j, origin_ref *o) {
    char key[48];
    snprintf(key, sizeof key, "composed.origin.%d", j);
    const char *v = ts_model_get_meta(m, key);
    if (!v) return ts_fail(ctx, TS_EINVAL, "model metadata has no '%s': not a composed model", key);
    const char *d = strstr(v, "dataset="), *c = strstr(v, ";class=");
    if (!d || !c || c < d) return ts_fail(ctx, TS_EFORMAT, "model metadata '%s' is malformed: '%s'", key, v);
    size_t n = (size_t)(c - (d + 8));
    if (n == 0 || n >= sizeof o->dataset)
        return ts_fail(ctx, TS_EFORMAT, "model metadata '%s' names no dataset (or one too long)", key);
    memcpy(o->dataset, d + 8, n);
    o->dataset[n] = 0;
    char *end;
    long cls = strtol(c + 7, &end, 10);
    if (end == c + 7 || cls < 0 || cls > (1 << 24))
        return ts_fail(ctx, TS_EFORMAT, "model metadata '%s' has a bad class index", key);
    o->cls = (int)cls;
    return TS_OK;
}

ts_status ts_composed_dataset(ts_ctx *ctx, const ts_model *m, ts_split split, const char *data_dir,
                              int64_t per_class_limit, ts_dataset **out) {
    if (!ctx || !m || !out) return ts_fail(ctx, TS_EINVAL, "ts_composed_dataset: NULL argument");
    *out = NULL;
    const int k = m->classes;
    origin_ref *refs = calloc((size_t)k, sizeof *refs);
    ts_dataset **src = calloc((size_t)k, sizeof *src); /* loaded once per distinct dataset */
    ts_dataset *r = NULL;
    ts_status st = TS_OK;
    if (!refs || !src) {
        st = ts_fail(ctx, TS_ENOMEM, "out of memory");
        goto done;
    }
    for (int j = 0; j < k && !st; j++) st = parse_origin(ctx, m, j, &refs[j]);
    if (st) goto done;
    int64_t total = 0;
    for (int j = 0; j < k; j++) {
        int first = j;
        for (int i = 0; i < j; i++)
            if (!strcmp(refs[i].dataset, refs[j].dataset)) {
                first = i;
                break;
            }
        if (first == j && (st = ts_dataset_load(ctx, refs[j].dataset, split, data_dir, &src[j]))) goto done;
        const ts_dataset *ds = src[first];
        if (refs[j].cls >= ds->classes) {
            st = ts_fail(ctx, TS_EINVAL, "output %d: class %d is not a class of dataset '%s'", j, refs[j].cls,
                         refs[j].dataset);
            goto done;
        }
        if (ds->channels != src[0]->channels || ds->height != src[0]->height || ds->width != src[0]->width) {
            st = ts_fail(ctx, TS_ESHAPE, "dataset '%s' has %dx%dx%d images, '%s' %dx%dx%d", refs[j].dataset,
                         ds->channels, ds->height, ds->width, refs[0].dataset, src[0]->channels, src[0]->height,
                         src[0]->width);
            goto done;
        }
        int64_t n = 0;
        for (int64_t i = 0; i < ds->count; i++) n += ds->labels[i] == refs[j].cls;
        if (per_class_limit > 0 && n > per_class_limit) n = per_class_limit;
        total += n;
    }
    const ts_dataset *d0 = src[0];
    if ((st = data_dataset_new(ctx, total, d0->channels, d0->height, d0->width, k, "composed", 1, &r))) goto done;
    size_t per = (size_t)d0->channels * (size_t)d0->height * (size_t)d0->width;
    int64_t at = 0;
    for (int j = 0; j < k; j++) {
        const ts_dataset *ds = NULL;
        for (int i = 0; i <= j && !ds; i++)
            if (src[i] && !strcmp(refs[i].dataset, refs[j].dataset)) ds = src[i];
        int64_t n = 0;
        for (int64_t i = 0; i < ds->count && (per_class_limit <= 0 || n < per_class_limit); i++) {
            if (ds->labels[i] != refs[j].cls) continue;
            memcpy(r->images + (size_t)at * per, ds->images + (size_t)i * per, per);
            r->labels[at++] = j;
            n++;
        }
    }
    /* class names from the model */
    char **names = calloc((size_t)k, sizeof *names);
    const char *list = ts_model_get_meta(m, "classes");
    int ok = names != NULL;
    for (int j = 0; ok && j < k; j++) {
        size_t len = list ? strcspn(list, "\n") : 0;
        if (!(names[j] = malloc(len + 1))) {
            ok = 0;
            break;
        }
        if (len) memcpy(names[j], list, len);
        names[j][len] = 0;
        if (list) list = list[len] ? list + len + 1 : list + len;
    }
    st = ok ? data_dataset_set_names(ctx, r, (const char *const *)names) : ts_fail(ctx, TS_ENOMEM, "out of memory");
    for (int j = 0; names && j < k; j++) free(names[j]);
    free(names);
    if (st) goto done;
    *out = r;
    r = NULL;
done:
    ts_dataset_free(r);
    for (int j = 0; src && j < k; j++) ts_dataset_free(src[j]);
    free(src);
    free(refs);
    return st;
}
