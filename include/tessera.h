/* libtessera: a C11 deep-learning engine for convolutional networks.
 *
 * Conventions
 *  - Every fallible call returns ts_status and leaves a one-line message on its
 *    context (ts_ctx_error). The library never prints, exits or aborts.
 *  - Whoever creates frees: ts_X_create / ts_X_load pair with ts_X_free.
 *  - Tensors are float32, row-major, batch first: images are (N, C, H, W).
 *  - The same seed and thread count give bit-identical results.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum ts_status {
    TS_OK = 0,
    TS_EINVAL = 1,       /* bad argument or option */
    TS_ENOMEM = 2,       /* allocation failed */
    TS_EIO = 3,          /* file missing, unreadable or unwritable */
    TS_EFORMAT = 4,      /* file contents malformed */
    TS_EUNSUPPORTED = 5, /* valid request that tessera does not support */
    TS_ESHAPE = 6,       /* tensor shapes do not fit together */
    TS_ENOTFOUND = 7,    /* named dataset, layer or tensor not found */
    TS_EDIVERGED = 8,    /* training produced NaN or Inf */
    TS_ECANCELED = 9,    /* stopped by a callback */
    TS_STATUS_COUNT
} ts_status;

const char *ts_status_name(ts_status s);

/* --------------------------------------------------------------- context */

typedef struct ts_ctx ts_ctx;

typedef enum ts_backend {
    TS_BACKEND_DNNL = 0, /* oneDNN primitives where available (default) */
    TS_BACKEND_REF = 1,  /* plain-C reference kernels only */
} ts_backend;

ts_status ts_ctx_create(ts_ctx **out);
void ts_ctx_free(ts_ctx *ctx);
/* Message of the last failed call on ctx ("" when none). */
const char *ts_ctx_error(const ts_ctx *ctx);
ts_status ts_ctx_status(const ts_ctx *ctx);
void ts_ctx_clear_error(ts_ctx *ctx);
/* Threads used by kernels (default: 1). */
ts_status ts_ctx_set_threads(ts_ctx *ctx, int nthreads);
int ts_ctx_get_threads(const ts_ctx *ctx);
ts_status ts_ctx_set_backend(ts_ctx *ctx, ts_backend backend);
ts_backend ts_ctx_get_backend(const ts_ctx *ctx);

/* ----------------------------------------------------------------- shapes */

#define TS_MAX_DIMS 6

/* Shape of one sample (no batch axis): (C, H, W) for images; (T, F) for sequences. */
typedef struct ts_shape {
    int ndim;
    int64_t dims[TS_MAX_DIMS];
} ts_shape;

int64_t ts_shape_numel(const ts_shape *s);


/* --------------------------------------------------------------- datasets */

/* An image classification dataset held in memory as bytes, as the files store it. */
typedef struct ts_dataset {
    int64_t count;           /* number of samples */
    int channels, height, width;
    int classes;             /* number of classes (labels are 0..classes-1) */
    uint8_t *images;         /* (count, C, H, W), 0..255 */
    int32_t *labels;         /* (count) */
    char name[64];           /* "fashion-mnist", "mnist", "cifar10", "cifar100", or the path */
    char **class_names;      /* classes entries, owned */
} ts_dataset;

typedef enum ts_split { TS_SPLIT_TRAIN = 0, TS_SPLIT_TEST = 1 } ts_split;

/* Loads a dataset. `spec` is a known name (fashion-mnist, mnist, cifar10, cifar100)
 * or a directory or file path in one of those layouts (IDX files, raw or .gz; CIFAR
 * binary batches, raw or .gz). Known names are looked up in `data_dir` when given,
 * else $TESSERA_DATA, else the standard places (see docs/data.md). A known name that
 * is not installed fails with TS_ENOTFOUND and a message saying how to install it. */
ts_status ts_dataset_load(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, ts_dataset **out);
void ts_dataset_free(ts_dataset *ds);

/* Splits `ds` into a training part and a held-out validation part of `val_count`
 * samples, chosen by a seeded shuffle (stratification not attempted). Both are new
 * datasets owned by the caller; ds is unchanged. */
ts_status ts_dataset_split(ts_ctx *ctx, const ts_dataset *ds, int64_t val_count, uint64_t seed, ts_dataset **train,
                           ts_dataset **val);
/* Copy of the samples at `idx` (count entries). */
ts_status ts_dataset_subset(ts_ctx *ctx, const ts_dataset *ds, const int64_t *idx, int64_t count, ts_dataset **out);

/* Per-channel mean and standard deviation of pixel/255 over the whole dataset
 * (population std), as torchvision's Normalize expects. */
void ts_dataset_channel_stats(const ts_dataset *ds, float *mean /* (C) */, float *std /* (C) */);

/* How a batch is made from bytes: x = (pixel/255 - mean[c]) / std[c], then optional
 * augmentation (training only). */
typedef struct ts_preprocess {
    int channels;
    float mean[4], std[4];
    int crop_pad;  /* random crop after zero padding by this many pixels (0: off) */
    int flip;      /* random horizontal flip with p = 0.5 (0: off) */
} ts_preprocess;

/* Iterates a dataset in batches. The order of an epoch and every random augmentation
 * are functions of (seed, epoch, sample position) only, so any batch can be rebuilt
 * exactly (resume) and results do not depend on the thread count. */
typedef struct ts_loader ts_loader;

ts_status ts_loader_create(ts_ctx *ctx, const ts_dataset *ds, int batch, int shuffle, const ts_preprocess *pp,
                           uint64_t seed, ts_loader **out);
void ts_loader_free(ts_loader *ld);
/* Batches per epoch (the last may be partial). */
int64_t ts_loader_batches(const ts_loader *ld);
/* Fixes the sample order for `epoch` (identity when shuffle is off). */
void ts_loader_begin_epoch(ts_loader *ld, int64_t epoch);
/* Fills batch `index` of the current epoch: x is (B, C, H, W) floats, y is (B)
 * labels, *count the number of samples (B except possibly the last batch).
 * Augmentation applies only when `augment` is non-zero. */
ts_status ts_loader_get(ts_loader *ld, int64_t index, int augment, float *x, int32_t *y, int *count);

#ifdef __cplusplus
}
#endif
#endif
