/* Image files: the format told by the first bytes (PNG, JPEG, PGM/PPM), from a file
 * or from memory. The decoders are image_png.c, image_jpeg.c and pnm.c. */
#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Files larger than this are refused unread: no image within TS_IMAGE_MAX_PIXELS
 * needs more, and a user pointing at the wrong file learns it at once. */
#define IMAGE_FILE_MAX ((size_t)256 << 20)

void data_planar_from_interleaved(uint8_t *chw, const uint8_t *hwc, int c, int h, int w) {
    const size_t plane = (size_t)h * (size_t)w;
    for (size_t p = 0; p < plane; p++)
        for (int k = 0; k < c; k++) chw[(size_t)k * plane + p] = hwc[p * (size_t)c + (size_t)k];
}

ts_status ts_image_decode(ts_ctx *ctx, const char *name, const uint8_t *data, size_t len, int *c, int *h, int *w,
                          uint8_t **pixels) {
    if (!c || !h || !w || !pixels || (!data && len)) return ts_fail(ctx, TS_EINVAL, "ts_image_decode: NULL argument");
    *pixels = NULL;
    if (!name) name = "image";
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && !memcmp(data, png_magic, 8)) return data_png_decode(ctx, name, data, len, c, h, w, pixels);
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return data_jpeg_decode(ctx, name, data, len, c, h, w, pixels);
    if (len >= 2 && data[0] == 'P' && strchr("2356", data[1]) && data[1]) {
        FILE *f = fmemopen((void *)data, len, "rb");
        if (!f) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", name);
        ts_status st = data_pnm_read(ctx, f, name, (long long)len, c, h, w, pixels);
        fclose(f);
        return st;
    }
    if (len == 0) return ts_fail(ctx, TS_EFORMAT, "%s: empty file (expected a PNG, JPEG or PGM/PPM image)", name);
    return ts_fail(ctx, TS_EUNSUPPORTED,
                   "%s: not a PNG, JPEG or PGM/PPM image (its first bytes match none of their signatures)", name);
}

ts_status ts_image_load(ts_ctx *ctx, const char *path, int *c, int *h, int *w, uint8_t **pixels) {
    if (!path || !pixels) return ts_fail(ctx, TS_EINVAL, "ts_image_load: NULL argument");
    *pixels = NULL;
    uint8_t *buf;
    size_t len;
    ts_status st = data_read_file(ctx, path, IMAGE_FILE_MAX + 1, &buf, &len);
    if (st) return st;
    if (len > IMAGE_FILE_MAX)
        st = ts_fail(ctx, TS_EUNSUPPORTED, "%s: larger than %zu MiB, too large for an image", path, IMAGE_FILE_MAX >> 20);
    else
        st = ts_image_decode(ctx, path, buf, len, c, h, w, pixels);
    free(buf);
    return st;
}
