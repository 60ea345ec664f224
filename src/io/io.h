/* Binary file plumbing shared by tessera's own formats: a growable little-endian
 * writer, a bounds-checked reader that names the file and byte offset in every
 * error, and atomic file replacement. */
#ifndef TS_IO_H
#define TS_IO_H

#include "train/train.h"

typedef struct wbuf {
    uint8_t *data;
    size_t len, cap;
    int failed;       /* an allocation failed: the buffer is unusable */
} wbuf;

void wbuf_bytes(wbuf *b, const void *p, size_t n);
void wbuf_u8(wbuf *b, uint8_t v);
void wbuf_u32(wbuf *b, uint32_t v);
void wbuf_u64(wbuf *b, uint64_t v);
void wbuf_f32(wbuf *b, float v);
void wbuf_f64(wbuf *b, double v);
void wbuf_str(wbuf *b, const char *s); /* u32 length + bytes */
void wbuf_free(wbuf *b);

typedef struct rbuf {
    const uint8_t *data;
    size_t len, off;
    size_t base;          /* file offset of data[0], for messages */
    const char *path;
    ts_ctx *ctx;
} rbuf;

ts_status rbuf_bytes(rbuf *r, void *out, size_t n, const char *field);
ts_status rbuf_u8(rbuf *r, uint8_t *v, const char *field);
ts_status rbuf_u32(rbuf *r, uint32_t *v, const char *field);
ts_status rbuf_u64(rbuf *r, uint64_t *v, const char *field);
ts_status rbuf_i64(rbuf *r, int64_t *v, const char *field);
ts_status rbuf_f32(rbuf *r, float *v, const char *field);
ts_status rbuf_f64(rbuf *r, double *v, const char *field);
/* Reads a u32-length string of at most max bytes into a new NUL-terminated buffer. */
ts_status rbuf_str(rbuf *r, char **out, size_t max, const char *field);
/* A view of the next n bytes (no copy). */
ts_status rbuf_view(rbuf *r, const uint8_t **out, size_t n, const char *field);

/* Reads a whole file (at most max bytes). */
ts_status io_read_file(ts_ctx *ctx, const char *path, size_t max, uint8_t **data, size_t *len);
/* Writes data to path atomically (file_write.c; tessera.h, "files"): an exclusive
 * temporary in the same folder, fsync, rename, folder fsync; the old file's mode kept,
 * a write-protected one refused unless forced. Nothing is left behind on failure. */
ts_status io_write_atomic(ts_ctx *ctx, const char *path, const void *data, size_t len);

/* Section tags of the model file */
#define IO_TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define TAG_ARCH IO_TAG('A', 'R', 'C', 'H')
#define TAG_META IO_TAG('M', 'E', 'T', 'A')
#define TAG_TENS IO_TAG('T', 'E', 'N', 'S')
#define TAG_TRAN IO_TAG('T', 'R', 'A', 'N')
#define TAG_MODL IO_TAG('M', 'O', 'D', 'L')

typedef struct io_section {
    uint32_t tag;
    const uint8_t *data;
    size_t len;
} io_section;

/* Model file with optional extra sections (the checkpoint's TRAN). */
ts_status model_file_write(ts_ctx *ctx, const ts_model *m, const char *path, uint32_t kind, const io_section *extra,
                           int nextra);
/* Model file with one extra section holding b's bytes (tag), then frees b. When an
 * allocation failed while b was filled (b->failed), writes nothing and reports
 * running out of memory serializing `what`. */
ts_status model_file_write_with(ts_ctx *ctx, const ts_model *m, const char *path, uint32_t kind, uint32_t tag, wbuf *b,
                                const char *what);
/* Reads a model; when `extra` is not NULL, returns a malloc'ed copy of the
 * section with tag `extra_tag` (NULL when absent), its length, and its offset in
 * the file (extra_base, may be NULL) for error messages. */
ts_status model_file_read(ts_ctx *ctx, const char *path, ts_model **out, uint32_t extra_tag, uint8_t **extra,
                          size_t *extra_len, size_t *extra_base);

#define MODEL_FILE_MAGIC "TSRM"
/* Version 2: a layer may hold a per-step unit mask (rnn/lstm/gru step_mask=1, an unrolled
 * module's). Files without one are still written as version 1, which every reader
 * takes; a reader of version 1 only refuses version 2 files by their version. */
#define MODEL_FILE_VERSION 2u
#define MODEL_FILE_VERSION_STEP_MASK 2u
#define MODEL_KIND_MODEL 0u
#define MODEL_KIND_CHECKPOINT 1u
#define MODEL_KIND_MODULE 2u

#endif
