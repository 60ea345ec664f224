/* Reference softmax over the last axis, and softmax / log-softmax over any axis.
 * Sums run in double in a fixed order. */
#include "ct_math.h"
#include "ops.h"

#include <math.h>

#define SOFTMAX_PAR_MIN 65536 /* values below which a loop runs on one thread */

void softmax_forward_ref(size_t rows, size_t cols, float *out /* (rows,cols) */, const float *in /* (rows,cols) */) {
    for (size_t r = 0; r < rows; r++) {
        const float *x = in + r * cols;
        float *y = out + r * cols;
        float mx = -INFINITY;
        for (size_t j = 0; j < cols; j++) mx = x[j] > mx ? x[j] : mx;
        /* subtracting the max keeps exp <= 1: no overflow however large the logits */
        double sum = 0.0;
        for (size_t j = 0; j < cols; j++) {
            y[j] = expf(x[j] - mx);
            sum += y[j];
        }
        const float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < cols; j++) y[j] *= inv;
    }
}

/* din = y * (dy - sum_j dy_j y_j), the softmax Jacobian applied to dy. */
void softmax_backward_ref(size_t rows, size_t cols, float *din /* (rows,cols) */, const float *dout /* (rows,cols) */,
                          const float *out /* (rows,cols), forward output */) {
    for (size_t r = 0; r < rows; r++) {
        const float *dy = dout + r * cols, *y = out + r * cols;
        float *dx = din + r * cols;
        double dot = 0.0;
        for (size_t j = 0; j < cols; j++) dot += (double)dy[j] * y[j];
        const float d = (float)dot;
        for (size_t j = 0; j < cols; j++) dx[j] = y[j] * (dy[j] - d);
    }
}

/* Softmax or log-softmax along the middle axis of (outer, len, inner). Lines are
 * independent, so threading over them cannot change the results. */
void softmax_axis_forward_ref(size_t outer, size_t len, size_t inner, int log_softmax, float *out /* (outer,len,inner) */,
                              const float *in /* (outer,len,inner) */, int nthreads) {
    if (inner == 1 && !log_softmax) { /* the plain rows: the kernel above, unchanged */
        softmax_forward_ref(outer, len, out, in);
        return;
    }
    const size_t lines = outer * inner;
    const int nt = (double)lines * len < SOFTMAX_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t l = 0; l < lines; l++) {
        const size_t o = l / inner, i = l % inner;
        const float *x = in + o * len * inner + i;
        float *y = out + o * len * inner + i;
        float mx = -INFINITY;
        for (size_t j = 0; j < len; j++) mx = x[j * inner] > mx ? x[j * inner] : mx;
        double sum = 0.0;
        if (log_softmax) {
            for (size_t j = 0; j < len; j++) sum += expf(x[j * inner] - mx);
            const float lse = (float)log(sum);
            for (size_t j = 0; j < len; j++) y[j * inner] = x[j * inner] - mx - lse;
        } else {
            for (size_t j = 0; j < len; j++) {
                y[j * inner] = expf(x[j * inner] - mx);
                sum += y[j * inner];
            }
            const float inv = (float)(1.0 / sum);
            for (size_t j = 0; j < len; j++) y[j * inner] *= inv;
        }
    }
}

void softmax_axis_backward_ref(size_t outer, size_t len, size_t inner, int log_softmax, float *din /* (outer,len,inner) */,
                               const float *dout /* (outer,len,inner) */, const float *out /* (outer,len,inner) */,
                               int nthreads) {
    if (inner == 1 && !log_softmax) {
        softmax_backward_ref(outer, len, din, dout, out);
        return;
    }
    const size_t lines = outer * inner;
    const int nt = (double)lines * len < SOFTMAX_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t l = 0; l < lines; l++) {
        const size_t o = l / inner, i = l % inner, base = o * len * inner + i;
        const float *dy = dout + base, *y = out + base;
        float *dx = din + base;
        double acc = 0.0;
        if (log_softmax) { /* din = dy - softmax * sum dy, softmax = exp(y) */
            for (size_t j = 0; j < len; j++) acc += dy[j * inner];
            const float s = (float)acc;
            for (size_t j = 0; j < len; j++) dx[j * inner] = dy[j * inner] - expf(y[j * inner]) * s;
        } else { /* din = y (dy - sum dy y) */
            for (size_t j = 0; j < len; j++) acc += (double)dy[j * inner] * y[j * inner];
            const float d = (float)acc;
            for (size_t j = 0; j < len; j++) dx[j * inner] = y[j * inner] * (dy[j * inner] - d);
        }
    }
}

/* ---------------------------------------------------------- constant time */

/* softmax_axis_forward_ref without a branch on the values: the maximum by mask
 * select, exp from ct_exp (rounded to float as expf), 1/sum by Newton steps and the
 * log of log-softmax from ct_log. Within an ulp or two of the reference. */
void softmax_axis_forward_ct(size_t outer, size_t len, size_t inner, int log_softmax,
                             float *out /* (outer,len,inner) */, const float *in /* (outer,len,inner) */,
                             int nthreads) {
    const size_t lines = outer * inner;
    const int nt = (double)lines * len < SOFTMAX_PAR_MIN || nthreads < 1 ? 1 : nthreads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t l = 0; l < lines; l++) {
        const size_t o = l / inner, i = l % inner;
        const float *x = in + o * len * inner + i;
        float *y = out + o * len * inner + i;
        float mx = -INFINITY;
        for (size_t j = 0; j < len; j++) mx = ct_self(ct_mask32(x[j * inner] > mx), x[j * inner], mx);
        double sum = 0.0;
        if (log_softmax) {
            for (size_t j = 0; j < len; j++) sum += (float)ct_exp((double)(x[j * inner] - mx));
            const float lse = (float)ct_log(sum);
            for (size_t j = 0; j < len; j++) y[j * inner] = x[j * inner] - mx - lse;
        } else {
            for (size_t j = 0; j < len; j++) {
                y[j * inner] = (float)ct_exp((double)(x[j * inner] - mx));
                sum += y[j * inner];
            }
            const float inv = (float)ct_recip(sum);
            for (size_t j = 0; j < len; j++) y[j * inner] *= inv;
        }
    }
}
