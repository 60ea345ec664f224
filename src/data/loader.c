/* Batches from a dataset: epoch order, normalization and augmentation.
 *
 * Reproducibility: the order of epoch e is a Fisher-Yates shuffle from an RNG
 * seeded by hash(seed, e); the augmentation of the sample at position p of epoch e
 * (p counts from the start of the epoch, so it does not depend on the batch size)
 * comes from an RNG seeded by hash(seed, e, p). Nothing depends on which thread
 * fills which sample, so any batch can be rebuilt alone and results match for any
 * thread count. */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DOMAIN_ORDER 0x6f72646572ULL /* "order" */
#define DOMAIN_AUG 0x617567ULL       /* "aug" */
#define MAX_CROP_PAD 4096

struct ts_loader {
    ts_ctx *ctx;             /* for the thread count and error messages; not owned */
    const ts_dataset *ds;    /* not owned: must outlive the loader */
    const ts_text_dataset *text; /* instead of ds: token ids (ts_loader_create_text) */
    int64_t count;           /* samples of ds or text */
    int batch, shuffle;
    ts_preprocess pp;
    uint64_t seed;
    int64_t epoch;
    int64_t *order;          /* (count) dataset index of each position this epoch */
    float lut[4][256];       /* (C, 256) normalized value of each byte per channel */
};

/* Values of one sample of a text dataset's batches */
static int64_t shape_numel_text(const ts_text_dataset *ds) {
    const ts_shape s = ts_text_input_shape(ds);
    return s.ndim == 1 ? s.dims[0] : s.dims[0] * s.dims[1];
}

/* A loader over count samples in epoch 0's order; the caller sets its data. */
static ts_status loader_new(ts_ctx *ctx, int64_t count, int batch, int shuffle, uint64_t seed, ts_loader **out) {
    size_t bytes;
    if (!ts_mul_size((size_t)count, sizeof(int64_t), &bytes)) return ts_fail(ctx, TS_ENOMEM, "loader: too many samples");
    ts_loader *ld = calloc(1, sizeof *ld);
    int64_t *order = ld ? malloc(bytes) : NULL;
    if (!order) {
        free(ld);
        return ts_fail(ctx, TS_ENOMEM, "loader: out of memory for %lld samples", (long long)count);
    }
    ld->ctx = ctx;
    ld->count = count;
    ld->batch = batch;
    ld->shuffle = shuffle != 0;
    ld->seed = seed;
    ld->order = order;
    ts_loader_begin_epoch(ld, 0);
    *out = ld;
    return TS_OK;
}

ts_status ts_loader_create(ts_ctx *ctx, const ts_dataset *ds, int batch, int shuffle, const ts_preprocess *pp,
                           uint64_t seed, ts_loader **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "loader: out is NULL");
    *out = NULL;
    if (!ds || !ds->images || !ds->labels || ds->count < 1)
        return ts_fail(ctx, TS_EINVAL, "loader: dataset is NULL or empty");
    if (batch < 1) return ts_fail(ctx, TS_EINVAL, "loader: batch size %d (expected >= 1)", batch);
    if (ds->channels < 1 || ds->channels > 4)
        return ts_fail(ctx, TS_EUNSUPPORTED, "loader: %d channels (expected 1..4)", ds->channels);
    ts_preprocess p = {.channels = ds->channels};
    for (int c = 0; c < 4; c++) p.std[c] = 1.0f;
    if (pp) {
        p = *pp;
        if (p.channels != ds->channels)
            return ts_fail(ctx, TS_EINVAL, "loader: preprocess has %d channels but %s has %d", p.channels, ds->name,
                           ds->channels);
        for (int c = 0; c < p.channels; c++)
            if (!isfinite(p.mean[c]) || !isfinite(p.std[c]) || !(p.std[c] > 0))
                return ts_fail(ctx, TS_EINVAL, "loader: channel %d has mean %g, std %g (expected finite, std > 0)", c,
                               (double)p.mean[c], (double)p.std[c]);
        if (p.crop_pad < 0 || p.crop_pad > MAX_CROP_PAD)
            return ts_fail(ctx, TS_EINVAL, "loader: crop_pad %d (expected 0..%d)", p.crop_pad, MAX_CROP_PAD);
    }
    ts_loader *ld;
    ts_status st = loader_new(ctx, ds->count, batch, shuffle, seed, &ld);
    if (st) return st;
    ld->ds = ds;
    ld->pp = p;
    for (int c = 0; c < p.channels; c++) data_norm_table(&p, c, ld->lut[c]);
    *out = ld;
    return TS_OK;
}

void ts_loader_free(ts_loader *ld) {
    if (!ld) return;
    free(ld->order);
    free(ld);
}

int64_t ts_loader_batches(const ts_loader *ld) {
    if (!ld) return 0;
    return (ld->count + ld->batch - 1) / ld->batch;
}

void ts_loader_begin_epoch(ts_loader *ld, int64_t epoch) {
    if (!ld) return;
    int64_t n = ld->count;
    ld->epoch = epoch;
    for (int64_t i = 0; i < n; i++) ld->order[i] = i;
    if (!ld->shuffle) return;
    ts_rng rng;
    ts_rng_seed(&rng, data_seed3(ld->seed, DOMAIN_ORDER, (uint64_t)epoch, 0));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ts_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = ld->order[i];
        ld->order[i] = ld->order[j];
        ld->order[j] = t;
    }
}

/* One sample: out (C, H, W) from src (C, H, W) bytes. With pad > 0 the image is
 * zero-padded by pad pixels and the HxW window at (oy, ox) of the padded image is
 * taken; flip mirrors the window horizontally (crop first, then flip, as
 * torchvision's RandomCrop then RandomHorizontalFlip). */
static void sample_fill(float *out, const uint8_t *src, const float (*lut)[256], int C, int H, int W, int pad, int oy,
                        int ox, int flip) {
    for (int c = 0; c < C; c++) {
        const float *t = lut[c];
        const size_t hw = (size_t)H * (size_t)W;
        const uint8_t *s = src + (size_t)c * hw;
        float *o = out + (size_t)c * hw;
        if (pad == 0 && !flip) {
            for (size_t k = 0; k < hw; k++) o[k] = t[s[k]];
            continue;
        }
        for (int y = 0; y < H; y++) {
            int sy = y + oy - pad;
            float *orow = o + (size_t)y * W;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++) orow[x] = t[0];
                continue;
            }
            const uint8_t *srow = s + (size_t)sy * W;
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + ox - pad;
                orow[x] = (sx >= 0 && sx < W) ? t[srow[sx]] : t[0];
            }
        }
    }
}

ts_status ts_loader_create_text(ts_ctx *ctx, const ts_text_dataset *ds, int batch, int shuffle, uint64_t seed,
                                ts_loader **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "loader: out is NULL");
    *out = NULL;
    if (!ds || !ds->tokens || ds->count < 1 || ds->max_len < 1 ||
        (ds->task == TS_SEQ_TRANSLATE ? !ds->targets || ds->target_len < 2 : !ds->labels))
        return ts_fail(ctx, TS_EINVAL, "loader: text dataset is NULL, empty or has no labels or targets");
    if (batch < 1) return ts_fail(ctx, TS_EINVAL, "loader: batch size %d (expected >= 1)", batch);
    ts_loader *ld;
    ts_status st = loader_new(ctx, ds->count, batch, shuffle, seed, &ld);
    if (st) return st;
    ld->text = ds;
    *out = ld;
    return TS_OK;
}

ts_shape ts_text_input_shape(const ts_text_dataset *ds) {
    ts_shape s = {1, {ds ? ds->max_len : 0}};
    if (ds && ds->task == TS_SEQ_TRANSLATE) {
        s.ndim = 2;
        s.dims[0] = 2;
        s.dims[1] = ds->max_len > ds->target_len - 1 ? ds->max_len : ds->target_len - 1;
    }
    return s;
}

int ts_loader_labels_per_sample(const ts_loader *ld) {
    if (!ld || !ld->text || ld->text->task == TS_SEQ_CLASSIFY) return 1;
    const ts_shape s = ts_text_input_shape(ld->text);
    return (int)s.dims[s.ndim - 1];
}

/* x (n, T) ids as floats and y (n) labels or (n, T) tags; translation: x (n, 2, Tm),
 * the source then the target from <bos> without its last token, and y (n, Tm) the
 * target from its first word on (teacher forcing), -1 past its end */
static void text_batch(const ts_loader *ld, int64_t index, float *x, int32_t *y, int *count) {
    const ts_text_dataset *ds = ld->text;
    const int64_t T = ds->max_len, first = index * ld->batch, per = shape_numel_text(ds);
    const int n = (int)(ds->count - first < ld->batch ? ds->count - first : ld->batch);
    const int64_t lps = ts_loader_labels_per_sample(ld), TL = ds->target_len;
    for (int i = 0; i < n; i++) {
        const int64_t s = ld->order[first + i];
        float *xi = x + i * per;
        int32_t *yi = y + i * lps;
        for (int64_t t = 0; t < per; t++) xi[t] = 0.0f;
        for (int64_t t = 0; t < T; t++) xi[t] = (float)ds->tokens[s * T + t];
        if (ds->task != TS_SEQ_TRANSLATE) {
            memcpy(yi, ds->labels + s * lps, sizeof *y * (size_t)lps);
            continue;
        }
        const int32_t *tg = ds->targets + s * TL;
        for (int64_t u = 0; u < lps; u++) {
            xi[lps + u] = u < TL - 1 ? (float)tg[u] : 0.0f;
            yi[u] = u + 1 < TL && tg[u + 1] != TS_TOKEN_PAD ? tg[u + 1] : -1;
        }
    }
    *count = n;
}

/* Samples in batch `index` (checked against the batch count first). */
static int batch_count(const ts_loader *ld, int64_t index) {
    const int64_t first = index * ld->batch;
    return (int)(ld->count - first < ld->batch ? ld->count - first : ld->batch);
}

static ts_status check_index(ts_loader *ld, int64_t index) {
    int64_t nb = ts_loader_batches(ld);
    if (index < 0 || index >= nb)
        return ts_fail(ld->ctx, TS_EINVAL, "loader: batch %lld is out of range (expected 0..%lld)", (long long)index,
                       (long long)(nb - 1));
    return TS_OK;
}

ts_status ts_loader_get(ts_loader *ld, int64_t index, int augment, float *x, int32_t *y, int *count) {
    if (!ld) return TS_EINVAL;
    if (!x || !y || !count) return ts_fail(ld->ctx, TS_EINVAL, "loader: x, y or count is NULL");
    ts_status st = check_index(ld, index);
    if (st) return st;
    if (ld->text) {
        text_batch(ld, index, x, y, count);
        return TS_OK;
    }
    const int n = batch_count(ld, index);
    if ((st = ts_loader_get_range(ld, index, 0, n, augment, x, y))) return st;
    *count = n;
    return TS_OK;
}

ts_status ts_loader_get_range(ts_loader *ld, int64_t index, int lo, int hi, int augment, float *x, int32_t *y) {
    if (!ld) return TS_EINVAL;
    if (!x || !y) return ts_fail(ld->ctx, TS_EINVAL, "loader: x or y is NULL");
    if (ld->text) return ts_fail(ld->ctx, TS_EUNSUPPORTED, "loader: shares of a text batch are not supported");
    ts_status st = check_index(ld, index);
    if (st) return st;
    if (lo < 0 || lo > hi || hi > batch_count(ld, index))
        return ts_fail(ld->ctx, TS_EINVAL, "loader: samples [%d, %d) of batch %lld (expected within [0, %d))", lo, hi,
                       (long long)index, batch_count(ld, index));
    const ts_dataset *ds = ld->ds;
    const int C = ds->channels, H = ds->height, W = ds->width;
    const size_t per = (size_t)C * H * W;
    const int64_t first = index * ld->batch + lo;
    const int n = hi - lo;
    const int pad = augment ? ld->pp.crop_pad : 0;
    const int flip_on = augment && ld->pp.flip;
    const int nt = ts_ctx_threads(ld->ctx);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (size_t)n * per >= ((size_t)1 << 16))
    for (int i = 0; i < n; i++) {
        int64_t pos = first + i;
        int64_t s = ld->order[pos];
        int oy = 0, ox = 0, flip = 0;
        if (pad || flip_on) {
            ts_rng rng;
            ts_rng_seed(&rng, data_seed3(ld->seed, DOMAIN_AUG, (uint64_t)ld->epoch, (uint64_t)pos));
            if (pad) {
                oy = (int)ts_rng_below(&rng, 2 * (uint64_t)pad + 1);
                ox = (int)ts_rng_below(&rng, 2 * (uint64_t)pad + 1);
            }
            if (flip_on) flip = (int)(ts_rng_next(&rng) >> 63);
        }
        sample_fill(x + (size_t)i * per, ds->images + (size_t)s * per, (const float(*)[256])ld->lut, C, H, W, pad,
                    oy, ox, flip);
        y[i] = ds->labels[s];
    }
    return TS_OK;
}
