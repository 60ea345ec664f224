/* Internal interface of the data subsystem: file reading (raw or gzip), the two
 * binary formats (IDX, CIFAR) and dataset construction. Public entry points are the
 * "datasets" section of tessera.h. */
#ifndef TS_DATA_H
#define TS_DATA_H

#include "core/core.h"

#include <stddef.h>
#include <stdio.h>
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

/* ------------------------------------------------------------------ images */

/* Decoders of one format each, over bytes in memory, as ts_image_decode says (name
 * for messages). Only image_png.c includes png.h, only image_jpeg.c jpeglib.h. */
ts_status data_png_decode(ts_ctx *ctx, const char *name, const uint8_t *data, size_t len, int *c, int *h, int *w,
                          uint8_t **pixels);
ts_status data_jpeg_decode(ts_ctx *ctx, const char *name, const uint8_t *data, size_t len, int *c, int *h, int *w,
                           uint8_t **pixels);
/* A PGM/PPM image from f, which holds `size` bytes (-1: a stream of unknown length). */
ts_status data_pnm_read(ts_ctx *ctx, FILE *f, const char *path, long long size, int *c, int *h, int *w,
                        uint8_t **pixels);
/* Pixels (c, h, w) from interleaved rows (h, w, c). */
void data_planar_from_interleaved(uint8_t *chw, const uint8_t *hwc, int c, int h, int w);

/* Image folders (image_folder.c), torchvision's ImageFolder layout: 1 when dir holds
 * class folders of images (or train/ with them), 0 when not, -1 when out of memory. */
int data_image_folder_detect(const char *dir);
/* The split of an image folder, images brought to ts_ctx_get_image_shape's shape. */
ts_status data_image_folder_load(ts_ctx *ctx, const char *dir, ts_split split, const char *name, int64_t limit,
                                 ts_dataset **out);

/* Seed for one stream identified by (seed, a, b) in domain `domain`. */
static inline uint64_t data_seed3(uint64_t seed, uint64_t domain, uint64_t a, uint64_t b) {
    return ts_splitmix64(ts_splitmix64(ts_splitmix64(seed ^ ts_splitmix64(domain)) ^ a) ^ b);
}

/* The normalized value of every byte for channel c of pp: (v/255 - mean)/std.
 * The loader and ts_preprocess_images both use it, so training and evaluation see
 * identical inputs. */
void data_norm_table(const ts_preprocess *pp, int c, float table[256]);

/* ------------------------------------------------------------------ text */

/* Tokens written by data_tokenize: NUL-terminated in buf, token i at buf + start[i].
 * Reused across calls (it grows); zero-initialize, free with data_tokens_free. */
typedef struct data_tokens {
    char *buf;
    size_t size, cap;
    int32_t *start;
    int count, cap_tokens;
} data_tokens;

#define DATA_TOKEN_MAX 64 /* bytes of a token; longer ones keep their first whole characters */

/* How data_tokenize splits: TOKENIZE_TEXT as ts_text_tokenize says; TOKENIZE_WORDS
 * the same but only whitespace separates (punctuation stays inside words), for
 * corpora that come tokenized such as Brown; TOKENIZE_RAW whitespace only, bytes
 * kept as they are and no length limit (BLEU over token strings). */
typedef enum data_tokenize_mode { TOKENIZE_TEXT = 0, TOKENIZE_WORDS = 1, TOKENIZE_RAW = 2 } data_tokenize_mode;

/* Tokenizes text[0..len) into t (emptied first). */
ts_status data_tokenize(ts_ctx *ctx, const char *text, size_t len, data_tokenize_mode mode, data_tokens *t);
void data_tokens_free(data_tokens *t);

/* Vocabulary internals shared by the dataset builder. A counter is a ts_vocab whose
 * words are not yet sorted. */
ts_status data_vocab_counter(ts_ctx *ctx, ts_vocab **out);
ts_status data_vocab_count(ts_ctx *ctx, ts_vocab *counter, const char *word);
/* The sorted vocabulary of the counter's words seen >= min_count times. */
ts_status data_vocab_finish(ts_ctx *ctx, const ts_vocab *counter, int min_count, ts_vocab **out);
ts_status data_vocab_copy(ts_ctx *ctx, const ts_vocab *v, ts_vocab **out);

/* Raw samples a reader gives the dataset builder (text_dataset.c). classify: src and
 * label; tag: src (words separated by spaces, as the corpus has them) and tags (one
 * class per word); translate: src and tgt. */
typedef struct text_samples {
    ts_seq_task task;
    int64_t count, cap;
    char **src, **tgt, **label;
    uint8_t **tags;
    int32_t *ntags;
    const char *const *fixed_names; /* class names when the format fixes them */
    int nfixed;
    int64_t stop; /* > 0: a reader may stop after this many samples (the limit) */
    int both_ways;              /* pairs: also read each pair target to source, labelled by language */
    char lang[2][16];           /* pairs read both ways: the languages (class 0: the file's target) */
    const char *lang_names[2];  /* pointers to lang, for fixed_names */
} text_samples;

ts_status text_samples_add(ts_ctx *ctx, text_samples *s, const char *src, size_t src_len, const char *tgt,
                           size_t tgt_len, const char *label, size_t label_len);
/* For tagging: the sample's tags (n entries) after text_samples_add. */
ts_status text_samples_set_tags(ts_ctx *ctx, text_samples *s, const uint8_t *tags, int n);
void text_samples_free(text_samples *s);
/* The source tag of a translation into lang, "<2lang>" (a set read both ways). */
enum { TEXT_TAG_MAX = 24 };
void text_language_tag(const char *lang, char out[TEXT_TAG_MAX]);
/* Tokenizes, builds or reuses vocabularies and class names, pads: the dataset. */
ts_status text_dataset_build(ts_ctx *ctx, text_samples *s, const ts_text_options *opt, const char *name,
                             ts_text_dataset **out);

/* s shortened to fit out (size bytes), control bytes as '?': for quoting a
 * file's strings in a one-line message. Returns out. */
const char *data_quote(const char *s, char *out, size_t size);

/* Readers: every sample of `split` (the rule of each is in docs/data.md). */
ts_status text_read_clinc(ts_ctx *ctx, const char *path, ts_split split, text_samples *s);
ts_status text_read_brown(ts_ctx *ctx, const char *path, ts_split split, text_samples *s);
ts_status text_read_pairs(ts_ctx *ctx, const char *path, ts_split split, text_samples *s);
ts_status text_read_spam(ts_ctx *ctx, const char *dir, ts_split split, text_samples *s);

/* The universal tag (index into data_universal_tags) of a Brown tag. */
extern const char *const data_universal_tags[12];
int data_brown_universal(const char *tag, size_t len);

/* A small strict JSON reader over a buffer (json.c). */
typedef struct json_cursor {
    const char *start, *p, *end;
    const char *file; /* for messages */
    int depth;
} json_cursor;
/* Skips whitespace; then 1 when the next byte is c (consumed), else 0. */
int json_accept(json_cursor *c, char ch);
/* Skips whitespace; then 1 when nothing is left. */
int json_at_end(json_cursor *c);
/* Requires ch next (after whitespace); else TS_EFORMAT naming the byte offset. */
ts_status json_expect(ts_ctx *ctx, json_cursor *c, char ch, const char *what);
/* A string: *out is a new NUL-terminated UTF-8 copy (free()), *len its length. */
ts_status json_string(ts_ctx *ctx, json_cursor *c, char **out, size_t *len);
/* Skips any value (depth limited). */
ts_status json_skip(ts_ctx *ctx, json_cursor *c);

/* Zip archives in memory (zip.c): stored or deflated entries, no ZIP64. */
typedef struct zip_entry {
    char name[256];
    uint32_t method, crc, comp_size, size, local_offset;
} zip_entry;
/* The central directory of buf: *entries (free()) and their count. */
ts_status data_zip_list(ts_ctx *ctx, const char *path, const uint8_t *buf, size_t len, zip_entry **entries,
                        int *count);
/* The bytes of entry e, checked against its size and CRC (*out: free()). */
ts_status data_zip_read(ts_ctx *ctx, const char *path, const uint8_t *buf, size_t len, const zip_entry *e,
                        uint8_t **out, size_t *out_len);

/* A seeded split of a dataset of n samples (image or text), as ts_dataset_split
 * says: subset() copies the samples at idx into a new dataset, release() frees one.
 * Checked here: ds not NULL, val_count in 0..n, train not NULL (callers pass NULL
 * when either of theirs is); *train and *val start NULL. */
typedef ts_status (*data_subset_fn)(ts_ctx *ctx, const void *ds, const int64_t *idx, int64_t count, void **out);
ts_status data_split(ts_ctx *ctx, const void *ds, int64_t n, int64_t val_count, uint64_t seed, data_subset_fn subset,
                     void (*release)(void *), void **train, void **val);

/* 64-bit FNV-1a of bytes: hash tables and hash-based splits. */
static inline uint64_t data_fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

#endif
