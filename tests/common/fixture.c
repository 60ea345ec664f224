/* .tsfx fixture reader: the file is treated as hostile; every count and length is
 * checked against the bytes that remain before it is used. */
#include "common/fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const unsigned char *p;
    size_t len, off;
    char *err;
    size_t errlen;
} reader;

static void fail(reader *r, const char *fmt, ...) {
    if (!r->err || !r->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
}

static int take(reader *r, size_t n, const char *what, const unsigned char **out) {
    if (n > r->len - r->off) {
        fail(r, "truncated at byte %zu reading %s (need %zu bytes, %zu left)", r->off, what, n, r->len - r->off);
        return 0;
    }
    *out = r->p + r->off;
    r->off += n;
    return 1;
}

static int read_u32(reader *r, const char *what, uint32_t *v) {
    const unsigned char *b;
    if (!take(r, 4, what, &b)) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static int read_i64(reader *r, const char *what, int64_t *v) {
    const unsigned char *b;
    if (!take(r, 8, what, &b)) return 0;
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--) u = u << 8 | b[i];
    *v = (int64_t)u;
    return 1;
}

static float f32_le(const unsigned char *b) {
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void fixture_free(fixture *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    free(f);
}

fixture *fixture_parse(const unsigned char *buf, size_t len, char *err, size_t errlen) {
    reader r = {buf, len, 0, err, errlen};
    const unsigned char *b;
    uint32_t version, count;
    if (err && errlen) err[0] = '\0';
    if (!take(&r, 4, "magic", &b)) return NULL;
    if (memcmp(b, "TSFX", 4) != 0) {
        fail(&r, "bad magic (expected \"TSFX\")");
        return NULL;
    }
    if (!read_u32(&r, "version", &version) || !read_u32(&r, "tensor count", &count)) return NULL;
    if (version != 1) {
        fail(&r, "unsupported version %u (expected 1)", version);
        return NULL;
    }
    /* Each tensor takes at least 8 bytes (name length and ndim). */
    if (count > (len - r.off) / 8) {
        fail(&r, "tensor count %u does not fit in %zu remaining bytes", count, len - r.off);
        return NULL;
    }
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->tensors = calloc(count ? count : 1, sizeof *f->tensors))) {
        free(f);
        fail(&r, "out of memory");
        return NULL;
    }
    for (uint32_t t = 0; t < count; t++) {
        fixture_tensor *ft = &f->tensors[t];
        f->count = (int)t + 1; /* so fixture_free releases what this one holds */
        uint32_t name_len, ndim;
        size_t at = r.off;
        if (!read_u32(&r, "name length", &name_len)) goto bad;
        if (name_len == 0 || !take(&r, name_len, "name", &b)) {
            if (name_len == 0) fail(&r, "tensor %u at byte %zu: empty name", t, at);
            goto bad;
        }
        if (memchr(b, '\0', name_len)) {
            fail(&r, "tensor %u at byte %zu: NUL in name", t, at);
            goto bad;
        }
        if (!(ft->name = malloc((size_t)name_len + 1))) goto oom;
        memcpy(ft->name, b, name_len);
        ft->name[name_len] = '\0';
        if (!read_u32(&r, "ndim", &ndim)) goto bad;
        if (ndim > FIXTURE_MAX_DIMS) {
            fail(&r, "tensor '%s': ndim %u exceeds %d", ft->name, ndim, FIXTURE_MAX_DIMS);
            goto bad;
        }
        ft->ndim = (int)ndim;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            if (!read_i64(&r, "dimension", &ft->dims[d])) goto bad;
            /* A dimension larger than the file's float count cannot be honest. */
            if (ft->dims[d] < 0 || (uint64_t)ft->dims[d] > len / 4) {
                fail(&r, "tensor '%s': dimension %u is %lld", ft->name, d, (long long)ft->dims[d]);
                goto bad;
            }
            if (ft->dims[d] != 0 && numel > (uint64_t)(len / 4) / (uint64_t)ft->dims[d]) {
                fail(&r, "tensor '%s': element count overflows the file size", ft->name);
                goto bad;
            }
            numel *= (uint64_t)ft->dims[d];
        }
        ft->numel = (int64_t)numel;
        if (!take(&r, (size_t)numel * 4, ft->name, &b)) goto bad;
        if (!(ft->data = malloc(numel ? (size_t)numel * sizeof(float) : 1))) goto oom;
        for (uint64_t i = 0; i < numel; i++) ft->data[i] = f32_le(b + 4 * i);
        for (uint32_t u = 0; u < t; u++)
            if (strcmp(f->tensors[u].name, ft->name) == 0) {
                fail(&r, "tensor '%s' appears twice", ft->name);
                goto bad;
            }
    }
    if (r.off != len) {
        fail(&r, "%zu trailing bytes after %u tensors", len - r.off, count);
        goto bad;
    }
    return f;
oom:
    fail(&r, "out of memory");
bad:
    fixture_free(f);
    return NULL;
}

fixture *fixture_load(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (err && errlen) snprintf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            unsigned char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nb) {
                free(buf);
                fclose(fp);
                if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0) break;
    }
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr) {
        free(buf);
        if (err && errlen) snprintf(err, errlen, "%s: read error", path);
        return NULL;
    }
    char msg[256];
    fixture *f = fixture_parse(buf, len, msg, sizeof msg);
    free(buf);
    if (!f && err && errlen) snprintf(err, errlen, "%s: %s", path, msg);
    return f;
}

const fixture_tensor *fixture_find(const fixture *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
