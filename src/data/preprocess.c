/* Bytes to normalized floats: x = (pixel/255 - mean[c]) / std[c], through a
 * 256-entry table per channel, the same formula as the training loader, so
 * evaluation sees exactly the values training saw. No augmentation here. */
#include "core/core.h"

void ts_preprocess_images(const ts_preprocess *pp, const uint8_t *images /* (count,C,H,W) */, int64_t count, int c,
                          int h, int w, float *out /* (count,C,H,W) */) {
    const size_t plane = (size_t)h * (size_t)w;
    for (int ch = 0; ch < c; ch++) {
        int pc = ch < 4 ? ch : 3;
        float lut[256];
        for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - pp->mean[pc]) / pp->std[pc];
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *src = images + ((size_t)i * c + ch) * plane;
            float *dst = out + ((size_t)i * c + ch) * plane;
            for (size_t j = 0; j < plane; j++) dst[j] = lut[src[j]];
        }
    }
}
