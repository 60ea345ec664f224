/* Netpbm images (PGM/PPM, binary and ASCII), the dependency-free way to hand single
 * images to `tessera predict`. The header is parsed defensively: every number is
 * range-checked and the pixel data length is checked against the file. */
#include "data/data.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct pnm_reader {
    FILE *f;
    const char *path;
    ts_ctx *ctx;
    long off;
} pnm_reader;

static int next_char(pnm_reader *r) {
    int ch = fgetc(r->f);
    if (ch != EOF) r->off++;
    return ch;
}

/* Reads an unsigned decimal after whitespace and '#' comments. */
static ts_status read_number(pnm_reader *r, const char *field, long max, long *out) {
    int ch = next_char(r);
    for (;;) {
        while (ch != EOF && isspace(ch)) ch = next_char(r);
        if (ch != '#') break;
        while (ch != EOF && ch != '\n') ch = next_char(r);
    }
    if (ch == EOF || !isdigit(ch))
        return ts_fail(r->ctx, TS_EFORMAT, "%s: %s at byte %ld: expected a decimal number", r->path, field, r->off);
    long v = 0;
    while (ch != EOF && isdigit(ch)) {
        v = v * 10 + (ch - '0');
        if (v > max)
            return ts_fail(r->ctx, TS_EFORMAT, "%s: %s at byte %ld exceeds %ld", r->path, field, r->off, max);
        ch = next_char(r);
    }
    if (ch != EOF && !isspace(ch))
        return ts_fail(r->ctx, TS_EFORMAT, "%s: %s at byte %ld: unexpected character after the number", r->path, field,
                       r->off);
    *out = v;
    return TS_OK;
}

/* Reads a PGM/PPM image from f; `size` is how many bytes f holds (-1: a stream of
 * unknown length). The caller closes f. */
ts_status data_pnm_read(ts_ctx *ctx, FILE *f, const char *path, long long size, int *c, int *h, int *w,
                        uint8_t **pixels) {
    *pixels = NULL;
    pnm_reader r = {f, path, ctx, 0};
    ts_status st = TS_OK;
    uint8_t *hwc = NULL, *chw = NULL;
    int m0 = next_char(&r), m1 = next_char(&r);
    if (m0 != 'P' || (m1 != '2' && m1 != '3' && m1 != '5' && m1 != '6')) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: not a PGM/PPM image (expected magic P2, P3, P5 or P6 at byte 0)", path);
        goto done;
    }
    int channels = (m1 == '3' || m1 == '6') ? 3 : 1, binary = m1 >= '5';
    long width, height, maxval;
    if ((st = read_number(&r, "width", 1 << 15, &width)) || (st = read_number(&r, "height", 1 << 15, &height)) ||
        (st = read_number(&r, "maxval", 65535, &maxval)))
        goto done;
    if (width < 1 || height < 1 || maxval < 1 || maxval > 255) {
        st = ts_fail(ctx, maxval > 255 ? TS_EUNSUPPORTED : TS_EFORMAT,
                     "%s: size %ldx%ld, maxval %ld (expected positive sizes and maxval 1..255)", path, width, height, maxval);
        goto done;
    }
    if (width * height > TS_IMAGE_MAX_PIXELS) {
        st = ts_fail(ctx, TS_EUNSUPPORTED, "%s: %ldx%ld pixels is too large (at most %ld pixels)", path, width, height,
                     (long)TS_IMAGE_MAX_PIXELS);
        goto done;
    }
    size_t n = (size_t)width * (size_t)height * (size_t)channels;
    /* a hostile header must not make us allocate more than the file can fill:
     * binary pixels take a byte each, ASCII ones at least two */
    if (size < 0) {
        /* a pipe: no size to check against, so bound what a header can ask for */
        if (n > ((size_t)1 << 26)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: %zu pixels is too large for a stream (at most 67108864)", path, n);
            goto done;
        }
    } else {
        size_t remain = size > r.off ? (size_t)(size - r.off) : 0;
        if ((binary && remain < n) || (!binary && remain / 2 + 1 < n)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: pixel data truncated at byte %lld (expected %zu %s pixels)", path, size, n, binary ? "binary" : "ASCII");
            goto done;
        }
    }
    hwc = malloc(n);
    chw = malloc(n);
    if (!hwc || !chw) {
        st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for %zu pixels", path, n);
        goto done;
    }
    if (binary) {
        size_t got = fread(hwc, 1, n, f);
        if (got != n) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: pixel data truncated at byte %ld (expected %zu bytes, found %zu)", path,
                         r.off + (long)got, n, got);
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            if (hwc[i] > maxval) {
                st = ts_fail(ctx, TS_EFORMAT, "%s: pixel %zu at byte %ld is %u, above maxval %ld", path, i,
                             r.off + (long)i, hwc[i], maxval);
                goto done;
            }
    } else {
        for (size_t i = 0; i < n; i++) {
            long v;
            if ((st = read_number(&r, "pixel", maxval, &v))) goto done;
            hwc[i] = (uint8_t)v;
        }
    }
    /* rescale to 0..255 and move channels first */
    for (size_t p = 0; p < (size_t)width * (size_t)height; p++)
        for (int k = 0; k < channels; k++) {
            unsigned v = hwc[p * channels + k];
            chw[(size_t)k * width * height + p] = (uint8_t)(maxval == 255 ? v : (v * 255 + maxval / 2) / maxval);
        }
    *c = channels;
    *h = (int)height;
    *w = (int)width;
    *pixels = chw;
    chw = NULL;
done:
    free(hwc);
    free(chw);
    return st;
}

ts_status ts_image_load_pnm(ts_ctx *ctx, const char *path, int *c, int *h, int *w, uint8_t **pixels) {
    *pixels = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat fs;
    const long long size = fstat(fileno(f), &fs) == 0 && S_ISREG(fs.st_mode) ? (long long)fs.st_size : -1;
    ts_status st = data_pnm_read(ctx, f, path, size, c, h, w, pixels);
    fclose(f);
    return st;
}

void ts_image_free(uint8_t *pixels) { free(pixels); }
