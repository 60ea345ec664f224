/* Bytes to normalized floats: x = (pixel/255 - mean[c]) / std[c], through the same
 * 256-entry table per channel as the training loader. No augmentation here. */
#include "data.h"

#include <string.h>

void data_norm_table(const ts_preprocess *pp, int c, float table[256]) {
    for (int v = 0; v < 256; v++) table[v] = ((float)v / 255.0f - pp->mean[c]) / pp->std[c];
}

void ts_preprocess_images(const ts_preprocess *pp, const uint8_t *images /* (count,C,H,W) */, int64_t count, int c,
                          int h, int w, float *out /* (count,C,H,W) */) {
    const size_t plane = (size_t)h * (size_t)w;
    for (int ch = 0; ch < c; ch++) {
        float lut[256];
        data_norm_table(pp, ch < 4 ? ch : 3, lut);
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *src = images + ((size_t)i * c + ch) * plane;
            float *dst = out + ((size_t)i * c + ch) * plane;
            for (size_t j = 0; j < plane; j++) dst[j] = lut[src[j]];
        }
    }
}

/* Every pixel ORs together all 256 table entries, each masked by (entry == pixel):
 * no load address depends on the pixel. The comparison and masks are plain integer
 * operations in a loop that gcc vectorizes; nothing branches on the pixel. */
void ts_preprocess_images_ct(const ts_preprocess *pp, const uint8_t *images /* (count,C,H,W) */, int64_t count,
                             int c, int h, int w, float *out /* (count,C,H,W) */) {
    const size_t plane = (size_t)h * (size_t)w;
    for (int ch = 0; ch < c; ch++) {
        float lut[256];
        uint32_t bits[256];
        data_norm_table(pp, ch < 4 ? ch : 3, lut);
        memcpy(bits, lut, sizeof bits);
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *src = images + ((size_t)i * c + ch) * plane;
            float *dst = out + ((size_t)i * c + ch) * plane;
            for (size_t j = 0; j < plane; j++) {
                const uint32_t px = src[j];
                uint32_t v = 0;
                for (uint32_t e = 0; e < 256; e++) v |= bits[e] & (0u - (uint32_t)(e == px));
                memcpy(&dst[j], &v, sizeof v);
            }
        }
    }
}
