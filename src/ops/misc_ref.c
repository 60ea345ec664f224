/* Reference kernels without a oneDNN counterpart: global average pooling, channel
 * concatenation and dropout. */
#include "ops.h"

#include <string.h>

void global_avgpool_forward_ref(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * s;
        double sum = 0.0; /* double, fixed order: the mean is within one rounding */
        for (size_t i = 0; i < s; i++) sum += x[i];
        out[pl] = s ? (float)(sum / (double)s) : 0.0f;
    }
}

/* The same with the mean as sum times 1/S (a shape constant) instead of a division of
 * the value: within an ulp of the reference. */
void global_avgpool_forward_ct(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    const double inv = s ? 1.0 / (double)s : 0.0;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * s;
        double sum = 0.0;
        for (size_t i = 0; i < s; i++) sum += x[i];
        out[pl] = (float)(sum * inv);
    }
}

void global_avgpool_backward_ref(int n, int c, int spatial, float *din /* (N,C,S) */, const float *dout /* (N,C) */) {
    const size_t planes = (size_t)n * (size_t)c, s = (size_t)spatial;
    for (size_t pl = 0; pl < planes; pl++) {
        const float g = (float)(dout[pl] / (double)s);
        float *dx = din + pl * s;
        for (size_t i = 0; i < s; i++) dx[i] = g;
    }
}

void concat_forward_ref(int n, int count, const size_t *sizes /* (count) */, float *out /* (N, sum sizes) */,
                        const float *const *ins /* count tensors, (N, sizes[i]) */) {
    size_t row = 0;
    for (int i = 0; i < count; i++) row += sizes[i];
    for (int r = 0; r < n; r++) {
        float *dst = out + (size_t)r * row;
        for (int i = 0; i < count; i++) {
            memcpy(dst, ins[i] + (size_t)r * sizes[i], sizes[i] * sizeof(float));
            dst += sizes[i];
        }
    }
}

void concat_backward_ref(int n, int count, const size_t *sizes /* (count) */,
                         float *const *dins /* count tensors, (N, sizes[i]) */, const float *dout /* (N, sum sizes) */) {
    size_t row = 0;
    for (int i = 0; i < count; i++) row += sizes[i];
    for (int r = 0; r < n; r++) {
        const float *src = dout + (size_t)r * row;
        for (int i = 0; i < count; i++) {
            memcpy(dins[i] + (size_t)r * sizes[i], src, sizes[i] * sizeof(float));
            src += sizes[i];
        }
    }
}

/* Also the backward: din = dout * mask. */
void dropout_apply_ref(size_t count, float *out /* (count) */, const float *in /* (count) */,
                       const float *mask /* (count), 0 or 1/(1-p) */) {
    for (size_t i = 0; i < count; i++) out[i] = in[i] * mask[i];
}
