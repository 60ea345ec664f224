/* Reference elementwise activations, PyTorch semantics (NaN propagates; ReLU's
 * gradient at exactly 0 is 0). Every element is independent, so threading cannot
 * change results. */
#include "ct_math.h"
#include "ops.h"

#include <math.h>

#define ELTWISE_PAR_MIN 65536 /* elements below which a loop runs on one thread */

/* 1/(1+e^-x) without overflow: exp only ever sees a non-positive argument. */
static inline float sigmoid_stable(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

void eltwise_forward_ref(eltwise_kind kind, float alpha, size_t count, float *out /* (count) */,
                         const float *in /* (count) */, int nthreads) {
    const int nt = count < ELTWISE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
    switch (kind) {
    case ELTWISE_RELU:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = in[i] < 0.0f ? 0.0f : in[i]; /* NaN stays NaN */
        break;
    case ELTWISE_LEAKY_RELU:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = in[i] > 0.0f ? in[i] : in[i] * alpha;
        break;
    case ELTWISE_SIGMOID:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = sigmoid_stable(in[i]);
        break;
    case ELTWISE_TANH:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = tanhf(in[i]);
        break;
    case ELTWISE_GELU: /* in the order of PyTorch's ONNX export: x (1 + erf(x / sqrt 2)) / 2 */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = in[i] * (erff(in[i] / 1.41421356f) + 1.0f) * 0.5f;
        break;
    default:
        break; /* unknown kinds are rejected by the layer code; never touch memory here */
    }
}

void eltwise_backward_ref(eltwise_kind kind, float alpha, size_t count, float *din /* (count) */,
                          const float *dout /* (count) */, const float *in /* (count), forward input */,
                          const float *out /* (count), forward output */, int nthreads) {
    const int nt = count < ELTWISE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
    switch (kind) {
    case ELTWISE_RELU: /* ATen threshold_backward: zero where input <= 0 */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) din[i] = in[i] <= 0.0f ? 0.0f : dout[i];
        break;
    case ELTWISE_LEAKY_RELU: /* ATen leaky_relu_backward: slope 1 only where input > 0 */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) din[i] = in[i] > 0.0f ? dout[i] : dout[i] * alpha;
        break;
    case ELTWISE_SIGMOID: /* from the output, as ATen: y (1 - y) */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) din[i] = dout[i] * (out[i] * (1.0f - out[i]));
        break;
    case ELTWISE_TANH: /* from the output, as ATen: 1 - y^2 */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) din[i] = dout[i] * (1.0f - out[i] * out[i]);
        break;
    case ELTWISE_GELU: /* from the input, as ATen: Phi(x) + x phi(x) */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) {
            const double x = in[i];
            const double cdf = 0.5 * (1.0 + erf(x * 0.70710678118654752)), pdf = exp(-0.5 * x * x) * 0.3989422804014327;
            din[i] = (float)(dout[i] * (cdf + x * pdf));
        }
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------- constant time */

/* The forward above without a branch on the values (ct_math.h): the same results for
 * relu and leaky relu, bit for bit; sigmoid and tanh in double from ct_exp and
 * ct_expm1, rounded once (within an ulp of expf/tanhf). */
void eltwise_forward_ct(eltwise_kind kind, float alpha, size_t count, float *out /* (count) */,
                        const float *in /* (count) */, int nthreads) {
    const int nt = count < ELTWISE_PAR_MIN || nthreads < 1 ? 1 : nthreads;
    switch (kind) {
    case ELTWISE_RELU:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = ct_self(ct_mask32(in[i] < 0.0f), 0.0f, in[i]);
        break;
    case ELTWISE_LEAKY_RELU:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) out[i] = ct_self(ct_mask32(in[i] > 0.0f), in[i], in[i] * alpha);
        break;
    case ELTWISE_SIGMOID:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) {
            /* e = exp(-|x|) in (0, 1]: 1/(1+e) for x >= 0, e/(1+e) below */
            const float x = in[i];
            const double e = ct_exp(-fabs((double)x)), s = ct_recip_pos(1.0 + e);
            const float y = (float)ct_seld(ct_mask64(x >= 0.0f), s, e * s);
            out[i] = ct_self(ct_mask32(x != x), x, y);
        }
        break;
    case ELTWISE_TANH:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) {
            /* tanh|x| = -m / (2 + m) with m = expm1(-2|x|) in (-1, 0]; |x| > 20 is 1 in float */
            const float x = in[i];
            const double a = fabs((double)x), ac = ct_seld(ct_mask64(a > 20.0), 20.0, a);
            const double m = ct_expm1(-2.0 * ac);
            const float t = (float)(-m * ct_recip_pos(2.0 + m));
            const float y = ct_bitsf(ct_fbits(t) | (ct_fbits(x) & 0x80000000u));
            out[i] = ct_self(ct_mask32(x != x), x, y);
        }
        break;
    case ELTWISE_GELU:
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < count; i++) { /* rounded where the reference rounds, 1/sqrt 2 multiplied */
            const float x = in[i], e = (float)ct_erf((double)(x * 0.70710678f));
            out[i] = x * (e + 1.0f) * 0.5f;
        }
        break;
    default:
        break;
    }
}
