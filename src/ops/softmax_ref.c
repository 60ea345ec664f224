/* Reference softmax over the last axis. Row sums run in double in a fixed order. */
#include "ops.h"

#include <math.h>

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
