/* JPEG through libjpeg-turbo. libjpeg's default error handler prints and calls
 * exit(): ours formats the message and longjmps back into jpeg_decode; warnings are
 * dropped, except a premature end of data, which libjpeg would paper over with gray
 * rows and which we report as truncation. What must survive the longjmp lives in a
 * jpeg_job owned by the caller of the setjmp. */
#include "data/data.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct jpeg_job {
    struct jpeg_error_mgr err; /* first: libjpeg hands back a pointer to it */
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX + 64];
    ts_status status; /* of the failure: TS_EFORMAT unless set otherwise */
    struct jpeg_decompress_struct cinfo;
    int created;
    uint8_t *rows; /* (h, w, c), owned until done */
    int c, h, w;
} jpeg_job;

static void on_error_exit(j_common_ptr cinfo) {
    jpeg_job *j = (jpeg_job *)cinfo->err;
    if (!j->msg[0]) cinfo->err->format_message(cinfo, j->msg);
    if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) j->status = TS_ENOMEM;
    longjmp(j->jump, 1);
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void on_emit_message(j_common_ptr cinfo, int level) {
    jpeg_job *j = (jpeg_job *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(j->msg, sizeof j->msg, "truncated (the data ends before the image does)");
        longjmp(j->jump, 1);
    }
    if (level < 0) cinfo->err->num_warnings++;
}

/* Decodes into j->rows; 0 on success, 1 after a failure (message in j->msg). */
static int jpeg_decode(jpeg_job *j, const uint8_t *data, size_t len) {
    if (setjmp(j->jump)) return 1;
    struct jpeg_decompress_struct *ci = &j->cinfo;
    jpeg_create_decompress(ci);
    j->created = 1;
    jpeg_mem_src(ci, data, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    if ((unsigned long long)ci->image_width * ci->image_height > (unsigned long long)TS_IMAGE_MAX_PIXELS) {
        snprintf(j->msg, sizeof j->msg, "%ux%u pixels is too large (at most %ld pixels)", ci->image_width,
                 ci->image_height, (long)TS_IMAGE_MAX_PIXELS);
        j->status = TS_EUNSUPPORTED;
        return 1;
    }
    if (ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK) {
        snprintf(j->msg, sizeof j->msg, "CMYK images are not supported (expected grayscale or RGB; convert it first)");
        j->status = TS_EUNSUPPORTED;
        return 1;
    }
    ci->out_color_space = ci->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(ci);
    j->c = ci->output_components;
    j->h = (int)ci->output_height;
    j->w = (int)ci->output_width;
    const size_t stride = (size_t)j->w * (size_t)j->c;
    j->rows = malloc(stride * (size_t)j->h);
    if (!j->rows) {
        snprintf(j->msg, sizeof j->msg, "out of memory for %dx%d pixels", j->w, j->h);
        j->status = TS_ENOMEM;
        return 1;
    }
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = j->rows + (size_t)ci->output_scanline * stride;
        jpeg_read_scanlines(ci, &row, 1);
    }
    jpeg_finish_decompress(ci);
    return 0;
}

ts_status data_jpeg_decode(ts_ctx *ctx, const char *name, const uint8_t *data, size_t len, int *c, int *h, int *w,
                           uint8_t **pixels) {
    jpeg_job *j = calloc(1, sizeof *j);
    if (!j) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory starting the JPEG decoder", name);
    j->status = TS_EFORMAT;
    j->cinfo.err = jpeg_std_error(&j->err);
    j->err.error_exit = on_error_exit;
    j->err.output_message = on_output_message;
    j->err.emit_message = on_emit_message;
    ts_status st = TS_OK;
    if (jpeg_decode(j, data, len)) {
        st = ts_fail(ctx, j->status, "%s: JPEG: %s", name, j->msg[0] ? j->msg : "corrupt data");
    } else {
        uint8_t *chw = malloc((size_t)j->c * j->h * j->w);
        if (!chw) {
            st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for %dx%d pixels", name, j->w, j->h);
        } else {
            data_planar_from_interleaved(chw, j->rows, j->c, j->h, j->w);
            *c = j->c;
            *h = j->h;
            *w = j->w;
            *pixels = chw;
        }
    }
    if (j->created) jpeg_destroy_decompress(&j->cinfo);
    free(j->rows);
    free(j);
    return st;
}
