/* PNG through libpng. libpng reports errors by calling an error function that must
 * not return: ours keeps the message and longjmps back into png_decode, which turns it
 * into a ts_fail; warnings are dropped. Everything that must survive the longjmp lives
 * in a png_job the caller of the setjmp owns, never in that function's locals. */
#include "data/data.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_job {
    const char *name;
    const uint8_t *data;
    size_t len, pos;
    char msg[256];    /* libpng's (or our reader's) message */
    int too_large;    /* refused from the header: TS_EUNSUPPORTED */
    png_structp png;
    png_infop info;
    uint8_t *rows;    /* (h, w, c) decoded, owned until done */
    png_bytep *row_ptrs;
    int c, h, w;
} png_job;

static void on_error(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    if (!j->msg[0]) snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void on_read(png_structp png, png_bytep out, size_t n) {
    png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos) {
        png_job *e = png_get_error_ptr(png);
        snprintf(e->msg, sizeof e->msg, "truncated at byte %zu (expected %zu more bytes)", j->len, n - (j->len - j->pos));
        png_error(png, e->msg);
    }
    memcpy(out, j->data + j->pos, n);
    j->pos += n;
}

/* Decodes into j->rows; 0 on success, 1 after a libpng error (message in j->msg). */
static int png_decode(png_job *j) {
    if (setjmp(png_jmpbuf(j->png))) return 1;
    png_set_read_fn(j->png, j, on_read);
    png_read_info(j->png, j->info);
    png_uint_32 w, h;
    int depth, type, interlace;
    png_get_IHDR(j->png, j->info, &w, &h, &depth, &type, &interlace, NULL, NULL);
    if ((unsigned long long)w * h > (unsigned long long)TS_IMAGE_MAX_PIXELS) {
        snprintf(j->msg, sizeof j->msg, "%lux%lu pixels is too large (at most %ld pixels)", (unsigned long)w,
                 (unsigned long)h, (long)TS_IMAGE_MAX_PIXELS);
        j->too_large = 1;
        return 1;
    }
    /* to 8-bit gray or RGB: palettes expanded, low depths widened, 16 bits scaled
     * (v * 255 / 65535, rounded), alpha stripped, transparency (tRNS) ignored */
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(j->png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(j->png);
    if (depth == 16) png_set_scale_16(j->png);
    /* (a palette's tRNS becomes alpha when it is expanded: stripped too) */
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(j->png, j->info, PNG_INFO_tRNS)) png_set_strip_alpha(j->png);
    png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    j->c = png_get_channels(j->png, j->info);
    j->h = (int)h;
    j->w = (int)w;
    const size_t rowbytes = png_get_rowbytes(j->png, j->info);
    if ((j->c != 1 && j->c != 3) || rowbytes != (size_t)w * (size_t)j->c) {
        snprintf(j->msg, sizeof j->msg, "unexpected layout after conversion (%d channels)", j->c);
        return 1;
    }
    j->rows = malloc(rowbytes * h);
    j->row_ptrs = malloc(sizeof *j->row_ptrs * h);
    if (!j->rows || !j->row_ptrs) {
        snprintf(j->msg, sizeof j->msg, "out of memory for %lux%lu pixels", (unsigned long)w, (unsigned long)h);
        return 1;
    }
    for (png_uint_32 y = 0; y < h; y++) j->row_ptrs[y] = j->rows + (size_t)y * rowbytes;
    png_read_image(j->png, j->row_ptrs);
    return 0;
}

ts_status data_png_decode(ts_ctx *ctx, const char *name, const uint8_t *data, size_t len, int *c, int *h, int *w,
                          uint8_t **pixels) {
    png_job j = {.name = name, .data = data, .len = len};
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j, on_error, on_warning);
    if (j.png) j.info = png_create_info_struct(j.png);
    if (!j.png || !j.info) {
        png_destroy_read_struct(j.png ? &j.png : NULL, NULL, NULL);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory starting the PNG decoder", name);
    }
    ts_status st = TS_OK;
    if (png_decode(&j)) {
        const int oom = !strncmp(j.msg, "out of memory", 13) || !strcmp(j.msg, "Out of memory");
        st = ts_fail(ctx, j.too_large ? TS_EUNSUPPORTED : oom ? TS_ENOMEM : TS_EFORMAT, "%s: PNG: %s", name,
                     j.msg[0] ? j.msg : "corrupt data");
    } else {
        uint8_t *chw = malloc((size_t)j.c * j.h * j.w);
        if (!chw) {
            st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for %dx%d pixels", name, j.w, j.h);
        } else {
            data_planar_from_interleaved(chw, j.rows, j.c, j.h, j.w);
            *c = j.c;
            *h = j.h;
            *w = j.w;
            *pixels = chw;
        }
    }
    png_destroy_read_struct(&j.png, &j.info, NULL);
    free(j.rows);
    free(j.row_ptrs);
    return st;
}
