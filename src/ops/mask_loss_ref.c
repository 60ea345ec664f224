/* MwT's mask losses (Qi et al., ICSE'24, src/modular_trainer.py loss_func_cos) over
 * one generator layer's per-sample masks M (N,C). Rows are L2-normalized as
 * F.normalize does, n_i = m_i / max(|m_i|, 1e-12); over the pairs i < j, with
 * S_ij = n_i . n_j:
 *   cohesion = 1 - mean of S_ij over same-label pairs   (0 when there is none)
 *   coupling = mean of S_ij over different-label pairs  (0 when there is none)
 * The gradient, for L = w_coh cohesion + w_coup coupling: with q_ij = -w_coh / same
 * pairs or w_coup / different pairs, dL/dn_i = sum_{j != i} q_ij n_j = g_i, and
 * through the normalization dL/dm_i = (g_i - n_i (n_i . g_i)) / |m_i|; a row whose norm
 * is at most 1e-12 is divided by the constant 1e-12, so its gradient is g_i / 1e-12
 * (PyTorch's clamp_min passes no gradient to the norm there). Sums are in double and
 * in a fixed order: the result does not depend on threads. */
#include "ops.h"

#include <math.h>

#define NORM_EPS 1e-12

size_t mask_pair_loss_work(int n, int c) { return (size_t)n * (size_t)c + (size_t)n + (size_t)c; }

static double dot(const double *a, const double *b, int c) {
    double s = 0.0;
    for (int k = 0; k < c; k++) s += a[k] * b[k];
    return s;
}

void mask_pair_loss_ref(int n, int c, const float *masks /* (N,C) */, const int32_t *labels /* (N) */, float w_coh,
                        float w_coup, float *dmasks /* (N,C) or NULL */, double *work /* mask_pair_loss_work */,
                        double *cohesion, double *coupling) {
    double *nrm = work, *len = work + (size_t)n * c, *g = len + n;
    for (int i = 0; i < n; i++) {
        const float *m = masks + (size_t)i * c;
        double s = 0.0;
        for (int k = 0; k < c; k++) s += (double)m[k] * m[k];
        len[i] = sqrt(s);
        const double r = len[i] > NORM_EPS ? len[i] : NORM_EPS;
        for (int k = 0; k < c; k++) nrm[(size_t)i * c + k] = m[k] / r;
    }
    double same = 0.0, diff = 0.0;
    int64_t nsame = 0, ndiff = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const double s = dot(nrm + (size_t)i * c, nrm + (size_t)j * c, c);
            if (labels[i] == labels[j]) {
                same += s;
                nsame++;
            } else {
                diff += s;
                ndiff++;
            }
        }
    *cohesion = nsame ? 1.0 - same / (double)nsame : 0.0;
    *coupling = ndiff ? diff / (double)ndiff : 0.0;
    if (!dmasks) return;
    /* each pair's S_ij is weighted q_ij in L; a class of pairs that is absent adds nothing */
    const double q_same = nsame ? -(double)w_coh / (double)nsame : 0.0;
    const double q_diff = ndiff ? (double)w_coup / (double)ndiff : 0.0;
    for (int i = 0; i < n; i++) {
        const double *ni = nrm + (size_t)i * c;
        for (int k = 0; k < c; k++) g[k] = 0.0;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            const double q = labels[i] == labels[j] ? q_same : q_diff;
            const double *nj = nrm + (size_t)j * c;
            for (int k = 0; k < c; k++) g[k] += q * nj[k];
        }
        float *dm = dmasks + (size_t)i * c;
        if (len[i] > NORM_EPS) {
            const double p = dot(ni, g, c);
            for (int k = 0; k < c; k++) dm[k] += (float)((g[k] - ni[k] * p) / len[i]);
        } else {
            for (int k = 0; k < c; k++) dm[k] += (float)(g[k] / NORM_EPS);
        }
    }
}
