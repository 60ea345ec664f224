/* Reference softmax cross-entropy (PyTorch CrossEntropyLoss, mean reduction,
 * label_smoothing). Per row, with logp = log_softmax(x) and eps = smoothing:
 *   loss = -(1 - eps) logp[y] - eps/C sum_j logp[j]
 *   dloss/dx_j = (softmax_j - (1 - eps) [j == y] - eps/C) / N   */
#include "ct_math.h"
#include "ops.h"

#include <math.h>

float softmax_xent_ref(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                       float smoothing, float *dlogits /* (N,classes) or NULL */) {
    return softmax_xent_ignore_ref(n, classes, logits, labels, INT32_MIN, smoothing, dlogits, NULL);
}

float softmax_xent_ignore_ref(int n, int classes, const float *logits /* (N,classes) */,
                              const int32_t *labels /* (N) */, int32_t ignore, float smoothing,
                              float *dlogits /* (N,classes) or NULL */, int *counted) {
    if (counted) *counted = 0;
    if (n <= 0 || classes <= 0) return 0.0f;
    int valid = 0;
    for (int i = 0; i < n; i++) valid += labels[i] != ignore;
    if (counted) *counted = valid;
    const double eps = smoothing, uni = eps / classes, invn = valid ? 1.0 / valid : 0.0;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * classes;
        float *dx = dlogits ? dlogits + (size_t)i * classes : NULL;
        const int32_t y = labels[i];
        if (y == ignore) { /* no loss, no gradient (PyTorch's ignore_index) */
            if (dx)
                for (int j = 0; j < classes; j++) dx[j] = 0.0f;
            continue;
        }
        if (y < 0 || y >= classes) { /* never index out of bounds; poison the result instead */
            total = NAN;
            if (dx)
                for (int j = 0; j < classes; j++) dx[j] = NAN;
            continue;
        }
        double mx = -INFINITY;
        for (int j = 0; j < classes; j++) mx = x[j] > mx ? x[j] : mx;
        double se = 0.0, sx = 0.0;
        for (int j = 0; j < classes; j++) {
            se += exp(x[j] - mx);
            sx += x[j];
        }
        const double lse = mx + log(se);
        /* sum_j logp[j] = sum_j x[j] - C lse */
        /* the smoothing term only with smoothing: a -inf logit would make it 0 * inf */
        total += -(1.0 - eps) * (x[y] - lse) - (eps > 0 ? uni * (sx - classes * lse) : 0.0);
        if (dx)
            for (int j = 0; j < classes; j++) {
                const double target = (j == y ? 1.0 - eps : 0.0) + uni;
                dx[j] = (float)((exp(x[j] - lse) - target) * invn);
            }
    }
    return (float)(total * invn);
}

/* The loss of softmax_xent_ref (no gradient) without a branch or an address that
 * depends on the logits or the labels: the maximum by mask select, exp and log from
 * ct_math.h, x[y] read by a pass over the row. A label outside 0..classes-1 poisons
 * the result with NaN, as the reference does. */
float softmax_xent_ct(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                      float smoothing) {
    if (n <= 0 || classes <= 0) return 0.0f;
    const double eps = smoothing, uni = eps / classes, invn = 1.0 / n;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * classes;
        const int32_t y = labels[i];
        double mx = -INFINITY, xy = NAN;
        for (int j = 0; j < classes; j++) {
            mx = ct_seld(ct_mask64(x[j] > mx), x[j], mx);
            xy = ct_seld(ct_mask64(j == y), x[j], xy);
        }
        double se = 0.0, sx = 0.0;
        for (int j = 0; j < classes; j++) {
            se += ct_exp(x[j] - mx);
            sx += x[j];
        }
        const double lse = mx + ct_log(se);
        total += -(1.0 - eps) * (xy - lse) - uni * (sx - classes * lse);
    }
    return (float)(total * invn);
}
