/* CIFAR binary reader. A batch file is a sequence of records, each the label
 * byte(s) then 3072 pixel bytes: the 32x32 red plane, then green, then blue.
 * CIFAR-10 records have 1 label byte (0..9); CIFAR-100 records have 2, coarse
 * (0..19) then fine (0..99), and tessera keeps the fine label. There is no header:
 * the record count is the file length over the record size, which must divide it. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

#define CIFAR_PIXELS 3072 /* 3 * 32 * 32 */

/* Grows ds's arrays to hold at least `need` samples. */
static ts_status cifar_reserve(ts_ctx *ctx, ts_dataset *ds, int64_t *cap, int64_t need) {
    if (need <= *cap) return TS_OK;
    int64_t ncap = *cap * 2 > need ? *cap * 2 : need;
    size_t img_bytes, lab_bytes;
    if (!ts_mul_size((size_t)ncap, CIFAR_PIXELS, &img_bytes) || !ts_mul_size((size_t)ncap, sizeof(int32_t), &lab_bytes))
        return ts_fail(ctx, TS_ENOMEM, "cifar: %lld records overflow the address space", (long long)ncap);
    uint8_t *img = realloc(ds->images, img_bytes);
    if (!img) return ts_fail(ctx, TS_ENOMEM, "cifar: out of memory for %lld images", (long long)ncap);
    ds->images = img;
    int32_t *lab = realloc(ds->labels, lab_bytes);
    if (!lab) return ts_fail(ctx, TS_ENOMEM, "cifar: out of memory for %lld labels", (long long)ncap);
    ds->labels = lab;
    *cap = ncap;
    return TS_OK;
}

/* Checks one batch file's bytes and appends its records to ds. */
static ts_status cifar_append(ts_ctx *ctx, ts_dataset *ds, int64_t *cap, const char *path, const uint8_t *buf,
                              size_t len, int label_bytes, int64_t files_left) {
    size_t rec = (size_t)label_bytes + CIFAR_PIXELS;
    if (len == 0) return ts_fail(ctx, TS_EFORMAT, "%s: empty file (expected records of %zu bytes)", path, rec);
    size_t n = len / rec;
    if (len % rec)
        return ts_fail(ctx, TS_EFORMAT, "%s: record %zu truncated at byte %zu (expected %zu bytes)", path, n, len, rec);
    if (n > (size_t)INT32_MAX || ds->count > (int64_t)INT32_MAX - (int64_t)n)
        return ts_fail(ctx, TS_EFORMAT, "%s: %zu records is more than tessera supports", path, n);
    /* first file: guess that the others are the same size, to allocate once */
    int64_t guess = ds->count + (int64_t)n * (files_left > 0 ? files_left : 1);
    if (guess > INT32_MAX) guess = ds->count + (int64_t)n;
    ts_status st = cifar_reserve(ctx, ds, cap, *cap == 0 ? guess : ds->count + (int64_t)n);
    if (st) return st;
    const int fine_max = label_bytes == 1 ? 10 : 100;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = buf + i * rec;
        if (label_bytes == 2 && r[0] >= 20)
            return ts_fail(ctx, TS_EFORMAT, "%s: record %zu has coarse label %u at byte %zu (expected 0..19)", path, i,
                           (unsigned)r[0], i * rec);
        uint8_t label = r[label_bytes - 1];
        if (label >= fine_max)
            return ts_fail(ctx, TS_EFORMAT, "%s: record %zu has %slabel %u at byte %zu (expected 0..%d)", path, i,
                           label_bytes == 2 ? "fine " : "", (unsigned)label, i * rec + (size_t)label_bytes - 1,
                           fine_max - 1);
        int64_t k = ds->count + (int64_t)i;
        ds->labels[k] = label;
        memcpy(ds->images + (size_t)k * CIFAR_PIXELS, r + label_bytes, CIFAR_PIXELS);
    }
    ds->count += (int64_t)n;
    return TS_OK;
}

ts_status data_cifar_load(ts_ctx *ctx, const char *const *paths, int npaths, int label_bytes, const char *name,
                          int64_t limit, ts_dataset **out) {
    *out = NULL;
    if (npaths < 1 || (label_bytes != 1 && label_bytes != 2))
        return ts_fail(ctx, TS_EINVAL, "cifar: bad arguments (%d files, %d label bytes)", npaths, label_bytes);
    ts_dataset *ds = NULL;
    ts_status st = data_dataset_new(ctx, 0, 3, 32, 32, label_bytes == 1 ? 10 : 100, name, 0, &ds);
    if (st) return st;
    int64_t cap = 0;
    const size_t rec = (size_t)label_bytes + CIFAR_PIXELS;
    for (int f = 0; f < npaths && !st && (limit <= 0 || ds->count < limit); f++) {
        uint8_t *buf = NULL;
        size_t len = 0, max = SIZE_MAX;
        if (limit > 0 && (uint64_t)(limit - ds->count) < SIZE_MAX / rec) max = (size_t)(limit - ds->count) * rec;
        st = data_read_file(ctx, paths[f], max, &buf, &len);
        if (!st) st = cifar_append(ctx, ds, &cap, paths[f], buf, len, label_bytes, npaths - f);
        free(buf);
    }
    if (st) {
        ts_dataset_free(ds);
        return st;
    }
    *out = ds;
    return TS_OK;
}
