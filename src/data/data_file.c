/* Reading dataset files whole, raw or gzip (bounded), and finding them in a folder. */
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

/* ------------------------------------------------------------ file reading */

void *data_malloc(ts_ctx *ctx, size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", what, bytes);
    return p;
}

int data_path_kind(const char *path) {
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) return 0;
    if (S_ISREG(st.st_mode)) return 1;
    if (S_ISDIR(st.st_mode)) return 2;
    return 0;
}

const char *data_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int data_find_file(const char *dir, const char *base, char *out, size_t outsz) {
    static const char *const ext[] = {"", ".gz"};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(out, outsz, "%s/%s%s", dir, base, ext[i]);
        if (n > 0 && (size_t)n < outsz && data_path_kind(out) == 1) return 1;
    }
    return 0;
}

/* How much to allocate before reading: the file size, or for gzip the
 * uncompressed size its trailer claims, bounded by what deflate can expand to
 * (about 1032:1) and by 256 MiB so that a lying trailer costs nothing. */
static size_t read_hint(FILE *f, size_t file_size) {
    uint8_t m[2], t[4];
    if (file_size < 18 || fread(m, 1, 2, f) != 2 || m[0] != 0x1f || m[1] != 0x8b) return file_size;
    if (fseek(f, -4, SEEK_END) != 0 || fread(t, 1, 4, f) != 4) return file_size;
    size_t isize = (size_t)t[0] | ((size_t)t[1] << 8) | ((size_t)t[2] << 16) | ((size_t)t[3] << 24);
    size_t limit = file_size < SIZE_MAX / 1032 ? file_size * 1032 : SIZE_MAX;
    if (limit > ((size_t)256 << 20)) limit = (size_t)256 << 20;
    return isize < limit ? isize : limit;
}

ts_status data_read_file(ts_ctx *ctx, const char *path, size_t max, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    struct stat st;
    if (stat(path, &st) != 0) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return ts_fail(ctx, TS_EIO, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = read_hint(f, (size_t)st.st_size);
    fclose(f);
    if (cap < 4096) cap = 4096;
    if (cap > max) cap = max ? max : 1;

    gzFile gz = gzopen(path, "rb");
    if (!gz) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(gz, 1 << 17);
    uint8_t *b = malloc(cap);
    if (!b) {
        gzclose(gz);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", path, cap);
    }
    size_t n = 0;
    ts_status status = TS_OK;
    while (n < max) {
        if (n == cap) {
            /* full: probe for more before doubling, so an exact hint costs no copy */
            uint8_t probe[4096];
            int got = gzread(gz, probe, (unsigned)(max - n < sizeof probe ? max - n : sizeof probe));
            if (got <= 0) {
                break; /* an error is reported below */
            }
            size_t ncap;
            if (!ts_mul_size(cap, 2, &ncap)) {
                status = ts_fail(ctx, TS_ENOMEM, "%s: file too large", path);
                break;
            }
            if (ncap > max) ncap = max;
            uint8_t *nb = realloc(b, ncap);
            if (!nb) {
                status = ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", path, ncap);
                break;
            }
            b = nb;
            cap = ncap;
            memcpy(b + n, probe, (size_t)got);
            n += (size_t)got;
            continue;
        }
        size_t want = cap - n;
        if (want > (1u << 30)) want = 1u << 30;
        int got = gzread(gz, b + n, (unsigned)want);
        if (got <= 0) break;
        n += (size_t)got;
    }
    if (!status) {
        int err = Z_OK;
        const char *msg = gzerror(gz, &err);
        if (err == Z_ERRNO)
            status = ts_fail(ctx, TS_EIO, "%s: read error after %zu bytes: %s", path, n, strerror(errno));
        else if (err != Z_OK)
            status = ts_fail(ctx, TS_EFORMAT, "%s: bad gzip data after %zu uncompressed bytes: %s", path, n, msg);
    }
    gzclose(gz);
    if (status) {
        free(b);
        return status;
    }
    *buf = b;
    *len = n;
    return TS_OK;
}
