/* IDX reader (the MNIST / Fashion-MNIST format): a 4-byte big-endian magic whose
 * third byte is the element type (0x08 = unsigned byte) and fourth the number of
 * dimensions, then one big-endian uint32 per dimension, then the elements.
 * Images are 0x00000803 (N, rows, cols); labels are 0x00000801 (N). Every size in
 * the header is checked against the bytes actually present. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

#define IDX_SLACK 4096 /* bytes read past the declared end, to report trailing data */

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Validates an IDX header of `ndims` dimensions in buf[0..len) and writes the
 * dimensions to dims; the element bytes start at 4 + 4*ndims and fill the rest of
 * the file exactly. With limit > 0, a count above it becomes the limit and only
 * that many items need be there (what follows was not read). */
static ts_status idx_header(ts_ctx *ctx, const char *path, const uint8_t *buf, size_t len, int ndims, int64_t limit,
                            uint32_t *dims) {
    const char *what = ndims == 3 ? "images" : "labels";
    size_t header = 4 + 4 * (size_t)ndims;
    if (len == 0) return ts_fail(ctx, TS_EFORMAT, "%s: empty file (expected an IDX %s file)", path, what);
    if (len < 4)
        return ts_fail(ctx, TS_EFORMAT, "%s: file of %zu bytes is too short for an IDX magic number", path, len);
    uint32_t magic = be32(buf);
    uint32_t want = 0x00000800u | (uint32_t)ndims;
    if (buf[0] != 0 || buf[1] != 0)
        return ts_fail(ctx, TS_EFORMAT, "%s: bad magic 0x%08X at byte 0 (expected IDX %s magic 0x%08X)", path,
                       (unsigned)magic, what, (unsigned)want);
    if (buf[2] != 0x08)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: IDX element type 0x%02X at byte 2 is not supported (expected 0x08, unsigned byte)", path,
                       (unsigned)buf[2]);
    if (buf[3] != (uint8_t)ndims)
        return ts_fail(ctx, TS_EFORMAT, "%s: IDX %s file has dimension count %u at byte 3 (expected %d, magic 0x%08X)",
                       path, what, (unsigned)buf[3], ndims, (unsigned)want);
    if (len < header)
        return ts_fail(ctx, TS_EFORMAT, "%s: header truncated at byte %zu (expected %zu header bytes)", path, len,
                       header);
    size_t body = 1;
    for (int d = 0; d < ndims; d++) {
        dims[d] = be32(buf + 4 + 4 * d);
        if (!ts_mul_size(body, dims[d], &body))
            return ts_fail(ctx, TS_EFORMAT, "%s: dimensions overflow the address space at byte %d", path, 4 + 4 * d);
    }
    if (ndims == 3 && (dims[1] == 0 || dims[2] == 0 || dims[1] > 65535 || dims[2] > 65535))
        return ts_fail(ctx, TS_EFORMAT, "%s: image size %ux%u at byte 8 is out of range (expected 1..65535)", path,
                       (unsigned)dims[1], (unsigned)dims[2]);
    if (dims[0] > INT32_MAX)
        return ts_fail(ctx, TS_EFORMAT, "%s: count %u at byte 4 is out of range", path, (unsigned)dims[0]);
    int cut = limit > 0 && dims[0] > limit;
    if (cut) {
        body = body / dims[0] * (size_t)limit;
        dims[0] = (uint32_t)limit;
    }
    size_t have = len - header;
    if (have < body) {
        size_t per = body / (dims[0] ? dims[0] : 1);
        size_t item = per ? have / per : 0;
        return ts_fail(ctx, TS_EFORMAT,
                       "%s: %s %zu truncated at byte %zu (header says %u %s of %zu bytes, %zu data bytes expected)",
                       path, ndims == 3 ? "image" : "label", item, len, (unsigned)dims[0], what, per, body);
    }
    if (have > body && !cut)
        return ts_fail(ctx, TS_EFORMAT, "%s: %s%zu unexpected bytes after the last of %u %s, from byte %zu", path,
                       have - body >= IDX_SLACK ? "at least " : "", have - body, (unsigned)dims[0], what,
                       header + body);
    return TS_OK;
}

/* How many bytes of an IDX file to read (*max): the header and the items it declares
 * (the first `limit` of them when limit > 0), plus IDX_SLACK to see trailing bytes when
 * the whole file is read. So a gzip file is never inflated much past what its header
 * declares. SIZE_MAX when the header cannot be read: the full read then says why. */
static ts_status idx_read_size(ts_ctx *ctx, const char *path, int ndims, int64_t limit, size_t *max) {
    size_t header = 4 + 4 * (size_t)ndims, n = 0, need = 1;
    uint8_t *h = NULL;
    *max = SIZE_MAX;
    ts_status st = data_read_file(ctx, path, header, &h, &n);
    if (st == TS_ENOMEM) return st;
    if (st || n < header) {
        free(h);
        ts_ctx_clear_error(ctx);
        return TS_OK;
    }
    for (int d = 0; d < ndims; d++) {
        size_t dim = be32(h + 4 + 4 * d);
        if (d == 0 && limit > 0 && dim > (uint64_t)limit) dim = (size_t)limit;
        if (!ts_mul_size(need, dim, &need)) need = SIZE_MAX;
    }
    free(h);
    if (ts_add_size(need, header + (limit > 0 ? 0 : IDX_SLACK), &need)) *max = need;
    return TS_OK;
}

ts_status data_idx_load(ts_ctx *ctx, const char *images_path, const char *labels_path, int classes,
                        const char *name, int64_t limit, ts_dataset **out) {
    *out = NULL;
    uint8_t *img = NULL, *lab = NULL;
    size_t img_len = 0, lab_len = 0;
    ts_dataset *ds = NULL;
    uint32_t idims[3] = {0, 0, 0}, ldims[1] = {0};
    size_t max;
    ts_status st = idx_read_size(ctx, images_path, 3, limit, &max);
    if (st || (st = data_read_file(ctx, images_path, max, &img, &img_len))) goto done;
    if ((st = idx_header(ctx, images_path, img, img_len, 3, limit, idims))) goto done;
    if ((st = idx_read_size(ctx, labels_path, 1, limit, &max)) ||
        (st = data_read_file(ctx, labels_path, max, &lab, &lab_len)))
        goto done;
    if ((st = idx_header(ctx, labels_path, lab, lab_len, 1, limit, ldims))) goto done;
    if (idims[0] != ldims[0]) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: %u labels at byte 4 but %s has %u images (expected equal counts)",
                     labels_path, (unsigned)ldims[0], images_path, (unsigned)idims[0]);
        goto done;
    }
    if (idims[0] == 0) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: contains no images (count 0 at byte 4)", images_path);
        goto done;
    }
    int64_t n = idims[0];
    const uint8_t *lp = lab + 8;
    for (int64_t i = 0; i < n; i++) {
        if (lp[i] >= classes) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: label %lld has value %u at byte %lld (expected 0..%d)", labels_path,
                         (long long)i, (unsigned)lp[i], (long long)(8 + i), classes - 1);
            goto done;
        }
    }
    if ((st = data_dataset_new(ctx, n, 1, (int)idims[1], (int)idims[2], classes, name, 0, &ds))) goto done;
    /* The file buffer becomes the image array: move the pixels to its front. */
    memmove(img, img + 16, img_len - 16);
    ds->images = img;
    img = NULL;
    ds->labels = data_malloc(ctx, (size_t)n * sizeof(int32_t), "idx labels");
    if (!ds->labels) {
        st = TS_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) ds->labels[i] = lp[i];
    *out = ds;
    ds = NULL;
done:
    free(img);
    free(lab);
    ts_dataset_free(ds);
    return st;
}
