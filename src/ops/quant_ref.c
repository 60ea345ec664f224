/* Post-training int8 quantization, the reference: symmetric, zero point 0.
 *
 * An activation x is held as q = clamp(nearbyint(x * (1/s)), lo, hi) with one scale s
 * per tensor (0..255 when it is never negative, as after a ReLU, else -128..127), a
 * weight per output channel k as clamp(nearbyint(w * (1/s_k)), -127, 127) with
 * s_k = max|w_k| / 127. The reference convolution runs on the dequantized values
 * (s * q, "fake quantization", as PyTorch's observers do): the same integers as
 * oneDNN's int8 convolution, summed in float instead of int32, so the two agree to
 * float rounding (tests/nn/test_int8.c). Multiplying by the same float inverse as
 * oneDNN's reorders do gives the same integers, not only close ones. */
#include "ops.h"

#include <math.h>

static float quantize_one(float x, float inv, float lo, float hi) {
    float q = nearbyintf(x * inv);
    q = q < lo ? lo : q;
    return q > hi ? hi : q;
}

void quantize_fake_ref(size_t count, float *out, const float *in, float scale, int u8, int nthreads) {
    const float inv = 1.0f / scale, lo = u8 ? 0.0f : -128.0f, hi = u8 ? 255.0f : 127.0f;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (size_t i = 0; i < count; i++) out[i] = scale * quantize_one(in[i], inv, lo, hi);
}

float quantize_weight_scale(int64_t per, const float *w /* (per) */) {
    float mx = 0.0f;
    for (int64_t i = 0; i < per; i++) mx = fabsf(w[i]) > mx ? fabsf(w[i]) : mx;
    const float s = mx / 127.0f;
    /* an all-zero channel (or one so small its inverse scale overflows) stays zero with any scale */
    return s > 0.0f && isfinite(1.0f / s) ? s : 1.0f;
}

void quantize_weights_ref(int k, int64_t per, float *out, float *scale, const float *w) {
    for (int o = 0; o < k; o++) {
        const float *src = w + (size_t)o * (size_t)per;
        const float s = quantize_weight_scale(per, src), inv = 1.0f / s;
        if (scale) scale[o] = s;
        for (int64_t i = 0; i < per; i++) out[(size_t)o * (size_t)per + (size_t)i] = s * quantize_one(src[i], inv, -127.0f, 127.0f);
    }
}
