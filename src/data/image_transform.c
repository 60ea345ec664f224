/* Conversion and geometry on byte images (C, H, W), bit-exact with what PIL and
 * torchvision do to a PIL image (docs/data.md, "Image transforms"): convert("L"),
 * Image.resize(BILINEAR) (Pillow's Resample.c: antialiased when shrinking, 8-bit
 * fixed-point weights), torchvision's Resize(size) and CenterCrop offsets. */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ts_status check_image(ts_ctx *ctx, const char *fn, const void *in, int c, int h, int w, const void *out) {
    if (!in || !out) return ts_fail(ctx, TS_EINVAL, "%s: NULL image", fn);
    if ((c != 1 && c != 3) || h < 1 || w < 1 || (long long)h * w > TS_IMAGE_MAX_PIXELS)
        return ts_fail(ctx, TS_EINVAL, "%s: image %dx%dx%d (expected 1 or 3 channels, at most %ld pixels)", fn, c, h,
                       w, (long)TS_IMAGE_MAX_PIXELS);
    return TS_OK;
}

ts_status ts_image_convert(ts_ctx *ctx, const uint8_t *in, int c, int h, int w, int out_c, uint8_t *out) {
    ts_status st = check_image(ctx, "ts_image_convert", in, c, h, w, out);
    if (st) return st;
    if (out_c != 1 && out_c != 3)
        return ts_fail(ctx, TS_EINVAL, "ts_image_convert: %d output channels (expected 1 or 3)", out_c);
    const size_t plane = (size_t)h * (size_t)w;
    if (c == out_c) {
        memmove(out, in, plane * (size_t)c);
    } else if (c == 1) {
        for (int k = 2; k >= 0; k--) memmove(out + (size_t)k * plane, in, plane);
    } else {
        /* PIL's L24: ITU-R 601-2 luma in 16-bit fixed point, rounded */
        const uint8_t *r = in, *g = in + plane, *b = in + 2 * plane;
        for (size_t p = 0; p < plane; p++)
            out[p] = (uint8_t)(((uint32_t)r[p] * 19595u + (uint32_t)g[p] * 38470u + (uint32_t)b[p] * 7471u + 0x8000u) >> 16);
    }
    return TS_OK;
}

/* ------------------------------------------------------------------ resize */

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's, for 8-bit images */

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for in_size -> out_size:
 * output i reads inputs bounds[2i] .. bounds[2i] + bounds[2i+1] - 1 with weights
 * k[i*ksize ..]. Returns ksize, 0 when out of memory. */
static int coeffs(int in_size, int out_size, int **bounds_out, int32_t **k_out) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale; /* the triangle's support is 1 */
    const int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof *bounds * 2 * (size_t)out_size);
    double *kd = malloc(sizeof *kd * (size_t)ksize);
    int32_t *k = calloc((size_t)out_size * (size_t)ksize, sizeof *k);
    if (!bounds || !kd || !k) {
        free(bounds);
        free(kd);
        free(k);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            kd[x] = bilinear((x + xmin - center + 0.5) * ss);
            ww += kd[x];
        }
        for (int x = 0; x < xmax; x++) {
            const double v = ww != 0.0 ? kd[x] / ww : kd[x];
            k[(size_t)xx * ksize + x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(kd);
    *bounds_out = bounds;
    *k_out = k;
    return ksize;
}

static uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* One pass over `lines` lines of `n` samples each (the resized axis), samples `step`
 * apart within a line and lines `line_step` apart: out gets out_n samples a line. */
static void resample(uint8_t *out, const uint8_t *in, int lines, size_t in_line_step, size_t in_step,
                     size_t out_line_step, size_t out_step, int out_n, int ksize, const int *bounds, const int32_t *k) {
    for (int l = 0; l < lines; l++) {
        const uint8_t *src = in + (size_t)l * in_line_step;
        uint8_t *dst = out + (size_t)l * out_line_step;
        for (int o = 0; o < out_n; o++) {
            const int32_t *kk = k + (size_t)o * ksize;
            const int lo = bounds[2 * o], n = bounds[2 * o + 1];
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < n; x++) ss += (int32_t)src[(size_t)(lo + x) * in_step] * kk[x];
            dst[(size_t)o * out_step] = clip8(ss);
        }
    }
}

ts_status ts_image_resize(ts_ctx *ctx, const uint8_t *in, int c, int h, int w, int oh, int ow, uint8_t *out) {
    ts_status st = check_image(ctx, "ts_image_resize", in, c, h, w, out);
    if (st) return st;
    if (oh < 1 || ow < 1 || (long long)oh * ow > TS_IMAGE_MAX_PIXELS)
        return ts_fail(ctx, TS_EINVAL, "ts_image_resize: output %dx%d (expected 1 to %ld pixels)", oh, ow,
                       (long)TS_IMAGE_MAX_PIXELS);
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    uint8_t *tmp = NULL;
    const int kw = ow != w ? coeffs(w, ow, &bh, &kh) : 1, kht = oh != h ? coeffs(h, oh, &bv, &kv) : 1;
    /* Pillow: the horizontal pass first, rounded to bytes, then the vertical one */
    if (kw && kht && ow != w && oh != h) tmp = malloc((size_t)c * h * ow);
    if (!kw || !kht || (ow != w && oh != h && !tmp)) {
        st = ts_fail(ctx, TS_ENOMEM, "ts_image_resize: out of memory for %dx%d -> %dx%d", h, w, oh, ow);
        goto done;
    }
    for (int k = 0; k < c; k++) {
        const uint8_t *src = in + (size_t)k * h * w;
        uint8_t *dst = out + (size_t)k * oh * ow;
        if (ow == w && oh == h) {
            memcpy(dst, src, (size_t)h * w);
            continue;
        }
        const uint8_t *mid = src;
        if (ow != w) {
            uint8_t *hout = oh != h ? tmp + (size_t)k * h * ow : dst;
            resample(hout, src, h, (size_t)w, 1, (size_t)ow, 1, ow, kw, bh, kh);
            mid = hout;
        }
        if (oh != h) resample(dst, mid, ow, 1, (size_t)ow, 1, (size_t)ow, oh, kht, bv, kv);
    }
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    return st;
}

void ts_image_resize_shorter(int h, int w, int s, int *oh, int *ow) {
    if (w <= h) {
        *ow = s;
        *oh = (int)((long long)s * h / w);
    } else {
        *oh = s;
        *ow = (int)((long long)s * w / h);
    }
}

/* torchvision: int(round(d / 2.0)), Python's round taking halves to even */
static int center_offset(int d) {
    const int half = d / 2;
    return d % 2 == 0 || half % 2 == 0 ? half : half + 1;
}

ts_status ts_image_center_crop(ts_ctx *ctx, const uint8_t *in, int c, int h, int w, int oh, int ow, uint8_t *out) {
    ts_status st = check_image(ctx, "ts_image_center_crop", in, c, h, w, out);
    if (st) return st;
    if (oh < 1 || ow < 1 || oh > h || ow > w)
        return ts_fail(ctx, TS_EINVAL, "ts_image_center_crop: %dx%d from %dx%d (expected a window inside the image)",
                       oh, ow, h, w);
    const int top = center_offset(h - oh), left = center_offset(w - ow);
    for (int k = 0; k < c; k++)
        for (int y = 0; y < oh; y++)
            memmove(out + ((size_t)k * oh + y) * ow, in + ((size_t)k * h + top + y) * w + left, (size_t)ow);
    return TS_OK;
}

ts_status ts_image_fit(ts_ctx *ctx, const uint8_t *in, int c, int h, int w, int C, int H, int W, uint8_t *out) {
    ts_status st = check_image(ctx, "ts_image_fit", in, c, h, w, out);
    if (st) return st;
    if ((C != 1 && C != 3) || H < 1 || W < 1 || (long long)H * W > TS_IMAGE_MAX_PIXELS)
        return ts_fail(ctx, TS_EINVAL, "ts_image_fit: target %dx%dx%d (expected 1 or 3 channels, at most %ld pixels)",
                       C, H, W, (long)TS_IMAGE_MAX_PIXELS);
    /* the scale that makes the image cover H x W: the larger of H/h and W/w; the other
     * side truncated as torchvision's Resize(size) does */
    int rh, rw;
    if ((long long)H * w >= (long long)W * h) {
        rh = H;
        rw = (int)((long long)H * w / h);
    } else {
        rw = W;
        rh = (int)((long long)W * h / w);
    }
    if ((long long)rh * rw > TS_IMAGE_MAX_PIXELS)
        return ts_fail(ctx, TS_EUNSUPPORTED, "ts_image_fit: a %dx%d image resized to cover %dx%d is too large (%dx%d)",
                       h, w, H, W, rh, rw);
    const size_t conv_n = (size_t)C * h * w, res_n = (size_t)C * rh * rw;
    uint8_t *conv = c != C ? malloc(conv_n) : NULL, *res = rh != H || rw != W ? malloc(res_n) : NULL;
    if ((c != C && !conv) || ((rh != H || rw != W) && !res)) {
        st = ts_fail(ctx, TS_ENOMEM, "ts_image_fit: out of memory for a %dx%d image", rh, rw);
        goto done;
    }
    const uint8_t *src = in;
    if (c != C) {
        if ((st = ts_image_convert(ctx, in, c, h, w, C, conv))) goto done;
        src = conv;
    }
    if (rh == H && rw == W) {
        st = ts_image_resize(ctx, src, C, h, w, H, W, out);
    } else if (!(st = ts_image_resize(ctx, src, C, h, w, rh, rw, res))) {
        st = ts_image_center_crop(ctx, res, C, rh, rw, H, W, out);
    }
done:
    free(conv);
    free(res);
    return st;
}
