/* Zip archives held in memory: the central directory, and entries stored or
 * deflated (zlib raw inflate). Every offset and size is checked against the
 * buffer, an entry's declared size bounds its output, and its CRC-32 is verified. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

#define EOCD_SIZE 22
#define CDIR_SIZE 46
#define LOCAL_SIZE 30

/* The end-of-central-directory record: the last signature within the final 64 KiB + 22 bytes. */
static ts_status find_eocd(ts_ctx *ctx, const char *path, const uint8_t *buf, size_t len, size_t *at) {
    if (len < EOCD_SIZE) return ts_fail(ctx, TS_EFORMAT, "%s: %zu bytes is too short for a zip file", path, len);
    size_t lowest = len > EOCD_SIZE + 65535 ? len - EOCD_SIZE - 65535 : 0;
    for (size_t i = len - EOCD_SIZE + 1; i-- > lowest;)
        if (le32(buf + i) == 0x06054b50 && i + EOCD_SIZE + le16(buf + i + 20) == len) {
            *at = i;
            return TS_OK;
        }
    return ts_fail(ctx, TS_EFORMAT, "%s: no zip end-of-central-directory record (truncated or not a zip file)", path);
}

ts_status data_zip_list(ts_ctx *ctx, const char *path, const uint8_t *buf, size_t len, zip_entry **entries,
                        int *count) {
    *entries = NULL;
    *count = 0;
    size_t eocd = 0;
    ts_status st = find_eocd(ctx, path, buf, len, &eocd);
    if (st) return st;
    uint32_t n = le16(buf + eocd + 10), cd_size = le32(buf + eocd + 12), cd_off = le32(buf + eocd + 16);
    if (le16(buf + eocd + 4) != 0 || le16(buf + eocd + 6) != 0 || le16(buf + eocd + 8) != n)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: multi-disk zip archives are not supported", path);
    if ((size_t)cd_off > eocd || (size_t)cd_size > eocd - cd_off)
        return ts_fail(ctx, TS_EFORMAT, "%s: central directory at byte %u (%u bytes) lies outside the file (%zu bytes)",
                       path, cd_off, cd_size, len);
    zip_entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
    size_t p = cd_off, end = (size_t)cd_off + cd_size;
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < CDIR_SIZE || le32(buf + p) != 0x02014b50) {
            free(e);
            return ts_fail(ctx, TS_EFORMAT, "%s: central directory entry %u at byte %zu is missing or bad", path, i, p);
        }
        const uint8_t *h = buf + p;
        uint32_t name_len = le16(h + 28), extra = le16(h + 30), comment = le16(h + 32);
        if ((size_t)name_len + extra + comment > end - p - CDIR_SIZE || name_len >= sizeof e[i].name) {
            free(e);
            return ts_fail(ctx, TS_EFORMAT, "%s: central directory entry %u at byte %zu: name or fields overrun", path,
                           i, p);
        }
        e[i].method = le16(h + 10);
        e[i].crc = le32(h + 16);
        e[i].comp_size = le32(h + 20);
        e[i].size = le32(h + 24);
        e[i].local_offset = le32(h + 42);
        memcpy(e[i].name, h + CDIR_SIZE, name_len);
        e[i].name[name_len] = '\0';
        if (memchr(e[i].name, '\0', name_len)) e[i].name[0] = '\0'; /* a NUL in a name: never matches a wanted one */
        p += CDIR_SIZE + name_len + extra + comment;
    }
    *entries = e;
    *count = (int)n;
    return TS_OK;
}

ts_status data_zip_read(ts_ctx *ctx, const char *path, const uint8_t *buf, size_t len, const zip_entry *e,
                        uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    size_t lo = e->local_offset;
    if (lo > len || len - lo < LOCAL_SIZE || le32(buf + lo) != 0x04034b50)
        return ts_fail(ctx, TS_EFORMAT, "%s: %s: local header at byte %zu is missing or bad", path, e->name, lo);
    size_t data = lo + LOCAL_SIZE + le16(buf + lo + 26) + le16(buf + lo + 28);
    if (data > len || len - data < e->comp_size)
        return ts_fail(ctx, TS_EFORMAT, "%s: %s: %u compressed bytes at byte %zu overrun the file (%zu bytes)", path,
                       e->name, e->comp_size, data, len);
    if (e->method != 0 && e->method != 8)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: %s: compression method %u (expected 0 stored or 8 deflate)", path,
                       e->name, e->method);
    /* deflate expands at most about 1032:1: a larger declared size is a lie */
    if ((e->method == 0 && e->size != e->comp_size) || (uint64_t)e->size > (uint64_t)e->comp_size * 1032 + 64)
        return ts_fail(ctx, TS_EFORMAT, "%s: %s: declared size %u does not fit %u compressed bytes", path, e->name,
                       e->size, e->comp_size);
    uint8_t *o = malloc((size_t)e->size + 1);
    if (!o) return ts_fail(ctx, TS_ENOMEM, "%s: %s: out of memory allocating %u bytes", path, e->name, e->size);
    ts_status st = TS_OK;
    if (e->method == 0) {
        memcpy(o, buf + data, e->size);
    } else {
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit2(&z, -15) != Z_OK) {
            free(o);
            return ts_fail(ctx, TS_ENOMEM, "%s: %s: cannot start inflate", path, e->name);
        }
        z.next_in = (Bytef *)(buf + data);
        z.avail_in = e->comp_size;
        z.next_out = o;
        z.avail_out = e->size + 1; /* one byte more, to see an entry larger than declared */
        int rc = inflate(&z, Z_FINISH);
        if (rc != Z_STREAM_END || z.total_out != e->size)
            st = ts_fail(ctx, TS_EFORMAT, "%s: %s: deflate data %s (%lu bytes inflated, %u declared)", path, e->name,
                         rc == Z_STREAM_END   ? "has the wrong size"
                         : rc == Z_DATA_ERROR ? "is corrupt"
                                              : "is truncated",
                         (unsigned long)z.total_out, e->size);
        inflateEnd(&z);
    }
    if (!st && crc32(0L, o, e->size) != e->crc)
        st = ts_fail(ctx, TS_EFORMAT, "%s: %s: CRC-32 mismatch (corrupt entry)", path, e->name);
    if (st) {
        free(o);
        return st;
    }
    o[e->size] = '\0';
    *out = o;
    *out_len = e->size;
    return TS_OK;
}
