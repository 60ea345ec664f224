/* The in-memory dataset: creation, class names, free, and the operations on it
 * (subset, split, channel statistics). */
#include "data/data.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

/* ------------------------------------------------------------ datasets */

static void set_name(ts_dataset *ds, const char *name) {
    /* keep the end of a long path: it names the dataset better than the start */
    size_t n = strlen(name), room = sizeof ds->name - 1;
    const char *s = n > room ? name + (n - room) : name;
    memcpy(ds->name, s, strlen(s) + 1);
}

ts_status data_dataset_new(ts_ctx *ctx, int64_t count, int channels, int height, int width, int classes,
                           const char *name, int arrays, ts_dataset **out) {
    *out = NULL;
    if (count < 0 || channels < 1 || height < 1 || width < 1 || classes < 1)
        return ts_fail(ctx, TS_EINVAL, "dataset: bad shape (%lld, %d, %d, %d) or %d classes", (long long)count,
                       channels, height, width, classes);
    ts_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return ts_fail(ctx, TS_ENOMEM, "dataset: out of memory");
    ds->count = count;
    ds->channels = channels;
    ds->height = height;
    ds->width = width;
    ds->classes = classes;
    set_name(ds, name ? name : "");
    if (arrays) {
        size_t img, lab;
        if (!ts_mul_size((size_t)count, (size_t)channels * (size_t)height, &img) ||
            !ts_mul_size(img, (size_t)width, &img) || !ts_mul_size((size_t)count, sizeof(int32_t), &lab)) {
            free(ds);
            return ts_fail(ctx, TS_ENOMEM, "dataset: %lld samples overflow the address space", (long long)count);
        }
        ds->images = data_malloc(ctx, img, "dataset images");
        ds->labels = ds->images ? data_malloc(ctx, lab, "dataset labels") : NULL;
        if (!ds->labels) {
            ts_dataset_free(ds);
            return TS_ENOMEM;
        }
    }
    *out = ds;
    return TS_OK;
}

void data_free_names(char **names, int classes) {
    if (!names) return;
    for (int i = 0; i < classes; i++) free(names[i]);
    free(names);
}

void ts_dataset_free(ts_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    data_free_names(ds->class_names, ds->classes);
    free(ds);
}

ts_status data_dataset_set_names(ts_ctx *ctx, ts_dataset *ds, const char *const *names) {
    char **v = calloc((size_t)ds->classes, sizeof *v);
    if (!v) return ts_fail(ctx, TS_ENOMEM, "dataset: out of memory for class names");
    for (int i = 0; i < ds->classes; i++) {
        char num[16];
        const char *s = names ? names[i] : num;
        if (!names) snprintf(num, sizeof num, "%d", i);
        v[i] = strdup(s ? s : "");
        if (!v[i]) {
            data_free_names(v, ds->classes);
            return ts_fail(ctx, TS_ENOMEM, "dataset: out of memory for class names");
        }
    }
    data_free_names(ds->class_names, ds->classes);
    ds->class_names = v;
    return TS_OK;
}

ts_status data_read_names(ts_ctx *ctx, const char *path, int classes, char ***names_out) {
    *names_out = NULL;
    uint8_t *buf;
    size_t len;
    ts_status st = data_read_file(ctx, path, SIZE_MAX, &buf, &len);
    if (st) return st;
    char **v = calloc((size_t)classes, sizeof *v);
    if (!v) {
        free(buf);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory for class names", path);
    }
    int k = 0, line = 0;
    size_t i = 0;
    while (i < len && !st) {
        size_t start = i;
        while (i < len && buf[i] != '\n') i++;
        size_t end = i;
        i++; /* past the newline */
        line++;
        while (end > start && isspace(buf[end - 1])) end--;
        while (start < end && isspace(buf[start])) start++;
        if (end == start) continue;
        if (memchr(buf + start, 0, end - start)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: line %d contains a NUL byte (expected text)", path, line);
        } else if (k == classes) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: more than %d class names (extra name on line %d)", path, classes, line);
        } else if (!(v[k] = strndup((const char *)buf + start, end - start))) {
            st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for class names", path);
        } else {
            k++;
        }
    }
    if (!st && k != classes)
        st = ts_fail(ctx, TS_EFORMAT, "%s: %d class names (expected %d, one per line)", path, k, classes);
    free(buf);
    if (st) {
        data_free_names(v, classes);
        return st;
    }
    *names_out = v;
    return TS_OK;
}

/* ------------------------------------------------------------ split, subset, stats */

ts_status ts_dataset_subset(ts_ctx *ctx, const ts_dataset *ds, const int64_t *idx, int64_t count, ts_dataset **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "subset: out is NULL");
    *out = NULL;
    if (!ds || count < 0 || (count > 0 && !idx))
        return ts_fail(ctx, TS_EINVAL, "subset: bad arguments (dataset %p, %lld indices)", (const void *)ds,
                       (long long)count);
    for (int64_t i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= ds->count)
            return ts_fail(ctx, TS_EINVAL, "subset: index[%lld] = %lld is out of range (dataset has %lld samples)",
                           (long long)i, (long long)idx[i], (long long)ds->count);
    ts_dataset *r;
    ts_status st = data_dataset_new(ctx, count, ds->channels, ds->height, ds->width, ds->classes, ds->name, 1, &r);
    if (st) return st;
    if (ds->class_names && (st = data_dataset_set_names(ctx, r, (const char *const *)ds->class_names))) {
        ts_dataset_free(r);
        return st;
    }
    size_t per = (size_t)ds->channels * (size_t)ds->height * (size_t)ds->width;
    for (int64_t i = 0; i < count; i++) {
        memcpy(r->images + (size_t)i * per, ds->images + (size_t)idx[i] * per, per);
        r->labels[i] = ds->labels[idx[i]];
    }
    *out = r;
    return TS_OK;
}

/* Indices of a seeded split of n samples: parts[0..n-val_count) training, then the
 * val_count validation ones, each in the original order (free()). */
static ts_status split_indices(ts_ctx *ctx, int64_t n, int64_t val_count, uint64_t seed, int64_t **parts_out) {
    *parts_out = NULL;
    size_t bytes;
    if (!ts_mul_size((size_t)n, sizeof(int64_t), &bytes)) return ts_fail(ctx, TS_ENOMEM, "split: too many samples");
    int64_t *perm = data_malloc(ctx, bytes, "split indices");
    int64_t *parts = perm ? data_malloc(ctx, bytes, "split indices") : NULL;
    uint8_t *in_val = parts ? calloc((size_t)n + 1, 1) : NULL;
    if (!in_val) {
        free(perm);
        free(parts);
        return ctx && ctx->status == TS_ENOMEM ? TS_ENOMEM : ts_fail(ctx, TS_ENOMEM, "split: out of memory");
    }
    /* Fisher-Yates; the first val_count positions are the validation samples */
    ts_rng rng;
    ts_rng_seed(&rng, data_seed3(seed, 0x73706c6974ULL /* "split" */, 0, 0));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ts_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < val_count; i++) in_val[perm[i]] = 1;
    /* each part keeps the original order: train indices first, then val */
    int64_t nt = 0, nv = 0;
    for (int64_t i = 0; i < n; i++)
        if (!in_val[i]) parts[nt++] = i;
    for (int64_t i = 0; i < n; i++)
        if (in_val[i]) parts[nt + nv++] = i;
    free(perm);
    free(in_val);
    *parts_out = parts;
    return TS_OK;
}

ts_status data_split(ts_ctx *ctx, const void *ds, int64_t n, int64_t val_count, uint64_t seed, data_subset_fn subset,
                     void (*release)(void *), void **train, void **val) {
    if (!train) return ts_fail(ctx, TS_EINVAL, "split: train or val is NULL");
    if (!ds) return ts_fail(ctx, TS_EINVAL, "split: dataset is NULL");
    if (val_count < 0 || val_count > n)
        return ts_fail(ctx, TS_EINVAL, "split: validation count %lld is out of range (expected 0..%lld)",
                       (long long)val_count, (long long)n);
    int64_t *parts;
    ts_status st = split_indices(ctx, n, val_count, seed, &parts);
    if (st) return st;
    st = subset(ctx, ds, parts, n - val_count, train);
    if (!st) st = subset(ctx, ds, parts + n - val_count, val_count, val);
    if (st) {
        release(*train);
        *train = NULL;
    }
    free(parts);
    return st;
}

static ts_status subset_any(ts_ctx *ctx, const void *ds, const int64_t *idx, int64_t count, void **out) {
    ts_dataset *d = NULL;
    ts_status st = ts_dataset_subset(ctx, ds, idx, count, &d);
    *out = d;
    return st;
}

static void release_any(void *ds) { ts_dataset_free(ds); }

ts_status ts_dataset_split(ts_ctx *ctx, const ts_dataset *ds, int64_t val_count, uint64_t seed, ts_dataset **train,
                           ts_dataset **val) {
    void *a = NULL, *b = NULL;
    ts_status st = data_split(ctx, ds, ds ? ds->count : 0, val_count, seed, subset_any, release_any,
                              train && val ? &a : NULL, &b);
    if (train) *train = a;
    if (val) *val = b;
    return st;
}

void ts_dataset_channel_stats(const ts_dataset *ds, float *mean, float *std) {
    if (!ds || !mean || !std) return;
    int C = ds->channels;
    size_t plane = (size_t)ds->height * (size_t)ds->width;
    for (int c = 0; c < C; c++) {
        /* a byte histogram makes the sums exact and the pass a single cheap loop */
        uint64_t hist[256] = {0};
        for (int64_t i = 0; i < ds->count; i++) {
            const uint8_t *p = ds->images + ((size_t)i * (size_t)C + (size_t)c) * plane;
            for (size_t k = 0; k < plane; k++) hist[p[k]]++;
        }
        double n = 0, s = 0, s2 = 0;
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            n += (double)hist[v];
            s += (double)hist[v] * x;
            s2 += (double)hist[v] * x * x;
        }
        if (n == 0) {
            mean[c] = 0.0f;
            std[c] = 1.0f; /* documented: an empty dataset normalizes as identity */
            continue;
        }
        double m = s / n, var = s2 / n - m * m;
        mean[c] = (float)m;
        std[c] = (float)sqrt(var > 0 ? var : 0);
    }
}
