/* A minimal PNG writer: signature, IHDR, one IDAT (zlib's compress2 of the rows, each
 * with filter byte 0), IEND; every chunk with its CRC-32 (zlib's crc32). */
#include "png_write.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A chunk at p: length, type, data (already at p + 8), CRC over type and data. */
static size_t put_chunk(uint8_t *p, const char *type, size_t n) {
    put_u32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    put_u32(p + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + 4, (uInt)(n + 4)));
    return n + 12;
}

int png_encode(const uint8_t *pixels, int w, int h, int channels, uint8_t **out, size_t *len) {
    const size_t row = (size_t)w * (size_t)channels + 1, raw_n = row * (size_t)h;
    uint8_t *raw = malloc(raw_n);
    uLongf zn = compressBound((uLong)raw_n);
    uint8_t *png = malloc(8 + 25 + 12 + zn + 12);
    if (!raw || !png) {
        free(raw);
        free(png);
        return -1;
    }
    for (int y = 0; y < h; y++) {
        raw[(size_t)y * row] = 0; /* filter: none */
        memcpy(raw + (size_t)y * row + 1, pixels + (size_t)y * (row - 1), row - 1);
    }
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(png, sig, 8);
    size_t at = 8;
    uint8_t *ihdr = png + at + 8;
    put_u32(ihdr, (uint32_t)w);
    put_u32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;                        /* bit depth */
    ihdr[9] = channels == 3 ? 2 : 0;    /* colour type: RGB or grayscale */
    ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, adaptive filtering, no interlace */
    at += put_chunk(png + at, "IHDR", 13);
    if (compress2(png + at + 8, &zn, raw, (uLong)raw_n, 9) != Z_OK) {
        free(raw);
        free(png);
        return -1;
    }
    at += put_chunk(png + at, "IDAT", zn);
    at += put_chunk(png + at, "IEND", 0);
    free(raw);
    *out = png;
    *len = at;
    return 0;
}

int png_write_data_uri(FILE *f, const uint8_t *pixels, int w, int h, int channels) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t *png;
    size_t n;
    if (png_encode(pixels, w, h, channels, &png, &n)) return -1;
    fputs("data:image/png;base64,", f);
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)png[i] << 16 | (i + 1 < n ? (uint32_t)png[i + 1] << 8 : 0) |
                           (i + 2 < n ? png[i + 2] : 0);
        const char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=',
                           i + 2 < n ? b64[v & 63] : '='};
        fwrite(q, 1, 4, f);
    }
    free(png);
    return 0;
}
