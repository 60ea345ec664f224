/* Bytes to normalized floats: x = (pixel/255 - mean[c]) / std[c], through the same
 * 256-entry table per channel as the training loader. No augmentation here. */
#include "data.h"

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
