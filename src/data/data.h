/* Internal interface of the data subsystem: file reading (raw or gzip), the two
 * binary formats (IDX, CIFAR) and dataset construction. Public entry points are the
 * "datasets" section of tessera.h. */
#ifndef TS_DATA_H
#define TS_DATA_H

#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

/* Reads the content of `path`, at most `max` bytes of it (SIZE_MAX: all), into a new
 * buffer (free with free()). A gzip file is decompressed, and only as far as `max`;
 * any other file is read as is. The buffer grows with what is actually read, so a
 * lying header can never make it allocate more than the data.
 * Errors: TS_EIO (missing, not a regular file, unreadable), TS_EFORMAT (corrupt or
 * truncated gzip stream, within what is read), TS_ENOMEM. */
ts_status data_read_file(ts_ctx *ctx, const char *path, size_t max, uint8_t **buf, size_t *len);

/* 1 when `path` names an existing regular file, 2 for a directory, 0 otherwise. */
int data_path_kind(const char *path);

/* Finds `dir/base` or `dir/base.gz`; writes the first that exists as a regular file
 * to out (size outsz) and returns 1, else returns 0. */
int data_find_file(const char *dir, const char *base, char *out, size_t outsz);

/* Last component of a path, for short error messages ("cifar10/test_batch.bin"
 * would read better, but a path is what the user gave, so callers print it). */
const char *data_basename(const char *path);

/* Dataset arrays (images, labels, class_names and its strings) are plain malloc
 * blocks, since a file buffer from data_read_file may become the image array. */
void *data_malloc(ts_ctx *ctx, size_t bytes, const char *what);

/* A new dataset with images (count*C*H*W bytes) and labels (count) allocated but
 * not filled, class_names NULL, name set to `name` (truncated to fit). count may
 * be 0. With `arrays` 0 only the struct is made (images and labels NULL, count
 * still set) for a caller that supplies its own buffers. */
ts_status data_dataset_new(ts_ctx *ctx, int64_t count, int channels, int height, int width, int classes,
                           const char *name, int arrays, ts_dataset **out);

/* Sets ds->class_names to copies of names[0..classes-1]; or, when names is NULL,
 * to "0", "1", ... */
ts_status data_dataset_set_names(ts_ctx *ctx, ts_dataset *ds, const char *const *names);

/* Reads class names from a text file, one per line (blank lines and trailing
 * whitespace ignored). Exactly `classes` names are required. */
ts_status data_read_names(ts_ctx *ctx, const char *path, int classes, char ***names_out);
void data_free_names(char **names, int classes);

/* IDX pair (images magic 0x00000803, labels 0x00000801), labels checked < classes.
 * The new dataset has one channel and no class names. Only the bytes the header
 * declares are inflated (and a little more, to report trailing data); limit > 0
 * reads only the first `limit` samples, and what follows them is not checked. */
ts_status data_idx_load(ts_ctx *ctx, const char *images_path, const char *labels_path, int classes,
                        const char *name, int64_t limit, ts_dataset **out);

/* CIFAR binary batches, concatenated in the given order. label_bytes is 1 for
 * CIFAR-10 (label < 10) or 2 for CIFAR-100 (coarse < 20, fine < 100; the fine label
 * is kept). The new dataset is (3, 32, 32) and has no class names. limit > 0 reads
 * only the first `limit` records (and the files they are in). */
ts_status data_cifar_load(ts_ctx *ctx, const char *const *paths, int npaths, int label_bytes, const char *name,
                          int64_t limit, ts_dataset **out);

/* Seed for one stream identified by (seed, a, b) in domain `domain`. */
static inline uint64_t data_seed3(uint64_t seed, uint64_t domain, uint64_t a, uint64_t b) {
    return ts_splitmix64(ts_splitmix64(ts_splitmix64(seed ^ ts_splitmix64(domain)) ^ a) ^ b);
}

/* The normalized value of every byte for channel c of pp: (v/255 - mean)/std.
 * The loader and ts_preprocess_images both use it, so training and evaluation see
 * identical inputs. */
void data_norm_table(const ts_preprocess *pp, int c, float table[256]);

#endif
