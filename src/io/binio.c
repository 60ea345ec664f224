/* Little-endian buffers and whole-file reads. The reader assumes every byte is
 * hostile: each read checks what remains and names the field and offset. */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int wbuf_reserve(wbuf *b, size_t n) {
    if (b->failed) return 0;
    if (n <= b->cap - b->len) return 1;
    size_t need = b->len + n, cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->failed = 1;
        return 0;
    }
    b->data = d;
    b->cap = cap;
    return 1;
}

void wbuf_bytes(wbuf *b, const void *p, size_t n) {
    if (!n || !wbuf_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void wbuf_u8(wbuf *b, uint8_t v) { wbuf_bytes(b, &v, 1); }

void wbuf_u32(wbuf *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wbuf_bytes(b, t, 4);
}

void wbuf_u64(wbuf *b, uint64_t v) {
    wbuf_u32(b, (uint32_t)v);
    wbuf_u32(b, (uint32_t)(v >> 32));
}

void wbuf_f32(wbuf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    wbuf_u32(b, u);
}

void wbuf_f64(wbuf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    wbuf_u64(b, u);
}

void wbuf_str(wbuf *b, const char *s) {
    size_t n = strlen(s);
    wbuf_u32(b, (uint32_t)n);
    wbuf_bytes(b, s, n);
}

void wbuf_free(wbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

ts_status rbuf_view(rbuf *r, const uint8_t **out, size_t n, const char *field) {
    if (n > r->len - r->off)
        return ts_fail(r->ctx, TS_EFORMAT, "%s: %s at byte %zu truncated (need %zu bytes, %zu remain)", r->path, field,
                       r->base + r->off, n, r->len - r->off);
    *out = r->data + r->off;
    r->off += n;
    return TS_OK;
}

ts_status rbuf_bytes(rbuf *r, void *out, size_t n, const char *field) {
    const uint8_t *p;
    ts_status st = rbuf_view(r, &p, n, field);
    if (!st && n) memcpy(out, p, n);
    return st;
}

ts_status rbuf_u8(rbuf *r, uint8_t *v, const char *field) { return rbuf_bytes(r, v, 1, field); }

ts_status rbuf_u32(rbuf *r, uint32_t *v, const char *field) {
    const uint8_t *p;
    ts_status st = rbuf_view(r, &p, 4, field);
    if (!st) *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return st;
}

ts_status rbuf_u64(rbuf *r, uint64_t *v, const char *field) {
    uint32_t lo, hi;
    ts_status st = rbuf_u32(r, &lo, field);
    if (!st) st = rbuf_u32(r, &hi, field);
    if (!st) *v = (uint64_t)lo | (uint64_t)hi << 32;
    return st;
}

ts_status rbuf_i64(rbuf *r, int64_t *v, const char *field) {
    uint64_t u;
    ts_status st = rbuf_u64(r, &u, field);
    if (!st) memcpy(v, &u, 8);
    return st;
}

ts_status rbuf_f32(rbuf *r, float *v, const char *field) {
    uint32_t u;
    ts_status st = rbuf_u32(r, &u, field);
    if (!st) memcpy(v, &u, 4);
    return st;
}

ts_status rbuf_f64(rbuf *r, double *v, const char *field) {
    uint64_t u;
    ts_status st = rbuf_u64(r, &u, field);
    if (!st) memcpy(v, &u, 8);
    return st;
}

ts_status rbuf_str(rbuf *r, char **out, size_t max, const char *field) {
    *out = NULL;
    size_t at = r->base + r->off;
    uint32_t n;
    ts_status st = rbuf_u32(r, &n, field);
    if (st) return st;
    if (n > max)
        return ts_fail(r->ctx, TS_EFORMAT, "%s: %s at byte %zu: length %u exceeds the limit %zu", r->path, field, at, n,
                       max);
    const uint8_t *p;
    if ((st = rbuf_view(r, &p, n, field))) return st;
    if (memchr(p, 0, n)) return ts_fail(r->ctx, TS_EFORMAT, "%s: %s at byte %zu contains a NUL byte", r->path, field, at);
    char *s = malloc((size_t)n + 1);
    if (!s) return ts_fail(r->ctx, TS_ENOMEM, "%s: out of memory reading %s", r->path, field);
    memcpy(s, p, n);
    s[n] = '\0';
    *out = s;
    return TS_OK;
}

ts_status io_read_file(ts_ctx *ctx, const char *path, size_t max, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(ctx, errno == ENOENT ? TS_EIO : TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ts_fail(ctx, TS_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        return ts_fail(ctx, TS_EFORMAT, "%s: %lld bytes is larger than the limit of %zu", path, (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return ts_fail(ctx, TS_EIO, "%s: read error at byte %zu of %zu", path, got, n);
    }
    *data = buf;
    *len = n;
    return TS_OK;
}
