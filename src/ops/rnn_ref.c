/* Reference recurrent cells (rnn, lstm, gru), forward and backward through time.
 * Per direction, the input projection of every step is one GEMM; each step then
 * adds the recurrent GEMM of the previous state and applies the gates per sample.
 * Padding is handled by selects, not branches: a step at or past a sample's length
 * leaves its states as they were and outputs 0, which is what PyTorch's packed
 * sequences compute, and what constant-time inference needs (no branch on data). */
#include "ct_math.h"
#include "ops.h"

#include <math.h>
#include <string.h>

typedef void (*act_fn)(eltwise_kind kind, float alpha, size_t count, float *out, const float *in, int nthreads);

static inline int64_t gh_of(const rnn_params *p) { return (int64_t)rnn_gates(p->cell) * p->h; }

/* Per direction, what the backward pass reads: post-activation gates (N,T,G*H), the
 * state before each step (N,T,H), and for lstm the cell before and after (N,T,H) x 2,
 * for gru the recurrent n term (N,T,H). */
static size_t ws_per_dir(const rnn_params *p) {
    const size_t nt = (size_t)p->n * (size_t)p->t, h = (size_t)p->h;
    size_t f = nt * (size_t)gh_of(p) + nt * h;
    if (p->cell == RNN_LSTM) f += 2 * nt * h;
    if (p->cell == RNN_GRU) f += nt * h;
    return f;
}

size_t rnn_workspace_floats(const rnn_params *p) { return (size_t)p->dirs * ws_per_dir(p); }

size_t rnn_scratch_floats(const rnn_params *p) {
    const size_t nt = (size_t)p->n * (size_t)p->t, gh = (size_t)gh_of(p), nh = (size_t)p->n * (size_t)p->h;
    /* forward: XG, HG, h, c, rh, hn; backward: dXG, dHG (all steps), dh, dc, d(rh), and
     * r*h of every step for gru without linear_before_reset */
    const size_t fwd = nt * gh + (size_t)p->n * gh + 5 * nh; /* + the masked state, with a step mask */
    const size_t bwd = 2 * nt * gh + 3 * nh + nt * (size_t)p->h;
    return fwd > bwd ? fwd : bwd;
}

void rnn_lengths_from_ids(int n, int t, const float *ids, int32_t *len) {
    for (int i = 0; i < n; i++) {
        uint32_t l = 0;
        for (int s = 0; s < t; s++) l = ct_selu(ct_mask32(ids[(int64_t)i * t + s] != 0.0f), (uint32_t)s + 1u, l);
        len[i] = (int32_t)l;
    }
}

/* Threads for the work of one step (a GEMM of the batch's states and a pass over its
 * gates): one below about a million multiply-adds, where a parallel region's start
 * and barrier, T of them a direction, cost more than they save (and spin long on a
 * loaded machine). The GEMMs over every step at once take nthreads. */
#define RNN_STEP_PAR_MIN ((int64_t)1 << 20)
static int step_threads(const rnn_params *p, int nthreads) {
    const int64_t work = (int64_t)p->n * gh_of(p) * p->h;
    return nthreads > 1 && work >= RNN_STEP_PAR_MIN ? nthreads : 1;
}

/* c (rows, cols) += bias (cols) per row */
static void add_bias(int64_t rows, int64_t cols, float *c, const float *bias) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) c[r * cols + j] += bias[j];
}

/* Where direction d's h (c: its cell) of sample i sits in a whole state (h0, dh0,
 * sequence=2's output) */
static inline int64_t state_at(const rnn_params *p, int i, int d, int cell) {
    return (int64_t)i * rnn_state_size(p) + (int64_t)(cell ? p->dirs + d : d) * p->h;
}

/* Step mask (keep non-NULL): at step t, direction d, a unit j with keep[t][d][j] = 0
 * is what the paper's per-step weight copy with node j removed computes: its W_ih
 * and W_hh rows (every gate block) and both biases are zero at t, so all its gate
 * pre-activations are 0; its column of W_hh is zero at t, so its previous state
 * feeds no gate at t; and its output at t reaches nothing (the next layer's input
 * weight for it at t is zero, i.e. y is 0 there). Its own state update is the
 * cell's with zero pre-activations (lstm c' = c/2, gru h' = h/2, rnn h' = 0). The
 * keep values multiply, so the cost does not depend on them. */
static void mask_step(const rnn_params *p, const float *mk, int t, float *XG, float *HG) {
    const int64_t GH = gh_of(p), T = p->t, H = p->h;
    for (int i = 0; i < p->n; i++) {
        float *xg = XG + ((int64_t)i * T + t) * GH, *hg = HG + (int64_t)i * GH;
        for (int64_t j = 0; j < GH; j++) {
            xg[j] *= mk[j % H];
            hg[j] *= mk[j % H];
        }
    }
}

void rnn_forward_ref(const rnn_params *p, const float *x, const int32_t *len, const float *h0, const float *w,
                     const float *b, const float *keep, float *y, float *ws, float *scratch, int ct, int nthreads) {
    const int N = p->n, T = p->t, F = p->f, H = p->h, D = p->dirs;
    const int64_t GH = gh_of(p), NT = (int64_t)N * T, ldw = F + H, DH = (int64_t)D * H;
    const size_t hb = sizeof(float) * (size_t)H;
    const int st = step_threads(p, nthreads);
    const act_fn act = ct ? eltwise_forward_ct : eltwise_forward_ref;
    float *XG = scratch, *HG = XG + NT * GH, *h = HG + (int64_t)N * GH, *c = h + (int64_t)N * H;
    float *rh = c + (int64_t)N * H, *hn = rh + (int64_t)N * H, *hm = hn + (int64_t)N * H;
    const size_t wsd = ws_per_dir(p);
    for (int d = 0; d < D; d++) {
        const float *W = w + d * GH * ldw, *bih = b + d * 2 * GH, *bhh = bih + GH;
        float *wg = ws ? ws + d * wsd : NULL, *whp = wg ? wg + NT * GH : NULL;
        float *wcp = whp && p->cell == RNN_LSTM ? whp + NT * H : NULL, *wc = wcp ? wcp + NT * H : NULL;
        float *whn = whp && p->cell == RNN_GRU ? whp + NT * H : NULL;
        /* every step's input projection at once: XG (N*T, GH) = x W_ih^T + b_ih */
        gemm_ref(0, 1, (int)NT, (int)GH, F, 1.0f, x, F, W, ldw, 0.0f, XG, (int)GH, nthreads);
        add_bias(NT, GH, XG, bih);
        memset(h, 0, sizeof *h * (size_t)N * H);
        memset(c, 0, sizeof *c * (size_t)N * H);
        for (int i = 0; h0 && i < N; i++) {
            memcpy(h + (int64_t)i * H, h0 + state_at(p, i, d, 0), hb);
            if (p->cell == RNN_LSTM) memcpy(c + (int64_t)i * H, h0 + state_at(p, i, d, 1), hb);
        }
        for (int s = 0; s < T; s++) {
            const int t = d ? T - 1 - s : s;
            const float *mk = keep ? keep + ((int64_t)t * D + d) * H : NULL; /* (H) */
            const float *hr = h; /* the state the recurrence reads at this step */
            if (mk) {
                for (int64_t q = 0; q < (int64_t)N * H; q++) hm[q] = h[q] * mk[q % H];
                hr = hm;
            }
            gemm_ref(0, 1, N, (int)GH, H, 1.0f, hr, H, W + F, ldw, 0.0f, HG, (int)GH, st);
            add_bias(N, GH, HG, bhh);
            if (mk) mask_step(p, mk, t, XG, HG);
            if (p->cell == RNN_GRU && !p->lbr) { /* r first, then hn = W_hn (r h) + b_hn */
                for (int i = 0; i < N; i++) {
                    float *g = XG + ((int64_t)i * T + t) * GH;
                    for (int j = 0; j < H; j++) g[j] += HG[(int64_t)i * GH + j];
                    act(ELTWISE_SIGMOID, 0.0f, (size_t)H, g, g, 1);
                    for (int j = 0; j < H; j++) rh[(int64_t)i * H + j] = g[j] * hr[(int64_t)i * H + j];
                }
                gemm_ref(0, 1, N, H, H, 1.0f, rh, H, W + 2 * (int64_t)H * ldw + F, ldw, 0.0f, hn, H, st);
                add_bias(N, H, hn, bhh + 2 * H);
                for (int64_t q = 0; mk && q < (int64_t)N * H; q++) hn[q] *= mk[q % H];
            }
#pragma omp parallel for num_threads(st) schedule(static) if (st > 1)
            for (int i = 0; i < N; i++) {
                float *g = XG + ((int64_t)i * T + t) * GH; /* this step's gates, in place */
                const float *hg = HG + (int64_t)i * GH;
                float *hi = h + (int64_t)i * H, *ci = c + (int64_t)i * H;
                const uint32_t v = ct_mask32(len ? t < len[i] : 1);
                const int64_t at = (int64_t)i * T + t;
                if (whp) memcpy(whp + at * H, hi, sizeof *hi * (size_t)H);
                if (wcp) memcpy(wcp + at * H, ci, sizeof *ci * (size_t)H);
                float hnew[H > 0 ? H : 1], tmp[H > 0 ? H : 1];
                switch (p->cell) {
                case RNN_TANH:
                case RNN_RELU:
                    for (int j = 0; j < H; j++) g[j] += hg[j];
                    act(p->cell == RNN_TANH ? ELTWISE_TANH : ELTWISE_RELU, 0.0f, (size_t)H, g, g, 1);
                    memcpy(hnew, g, sizeof hnew);
                    break;
                case RNN_LSTM: {
                    for (int j = 0; j < 4 * H; j++) g[j] += hg[j];
                    act(ELTWISE_SIGMOID, 0.0f, 2 * (size_t)H, g, g, 1);
                    act(ELTWISE_TANH, 0.0f, (size_t)H, g + 2 * H, g + 2 * H, 1);
                    act(ELTWISE_SIGMOID, 0.0f, (size_t)H, g + 3 * H, g + 3 * H, 1);
                    float cnew[H > 0 ? H : 1];
                    for (int j = 0; j < H; j++) cnew[j] = g[H + j] * ci[j] + g[j] * g[2 * H + j];
                    act(ELTWISE_TANH, 0.0f, (size_t)H, tmp, cnew, 1);
                    for (int j = 0; j < H; j++) {
                        hnew[j] = g[3 * H + j] * tmp[j];
                        ci[j] = ct_self(v, cnew[j], ci[j]);
                    }
                    if (wc) memcpy(wc + at * H, ci, sizeof *ci * (size_t)H);
                    break;
                }
                case RNN_GRU: {
                    const float *hni = hn + (int64_t)i * H;
                    if (p->lbr) {
                        for (int j = 0; j < 2 * H; j++) g[j] += hg[j];
                        act(ELTWISE_SIGMOID, 0.0f, 2 * (size_t)H, g, g, 1);
                        hni = hg + 2 * H;
                        for (int j = 0; j < H; j++) tmp[j] = g[2 * H + j] + g[j] * hni[j];
                    } else {
                        for (int j = 0; j < H; j++) g[H + j] += hg[H + j];
                        act(ELTWISE_SIGMOID, 0.0f, (size_t)H, g + H, g + H, 1);
                        for (int j = 0; j < H; j++) tmp[j] = g[2 * H + j] + hni[j];
                    }
                    act(ELTWISE_TANH, 0.0f, (size_t)H, g + 2 * H, tmp, 1);
                    if (whn) memcpy(whn + at * H, hni, sizeof *hni * (size_t)H);
                    for (int j = 0; j < H; j++) hnew[j] = (1.0f - g[H + j]) * g[2 * H + j] + g[H + j] * hi[j];
                    break;
                }
                }
                if (wg) memcpy(wg + at * GH, g, sizeof *g * (size_t)GH);
                for (int j = 0; j < H; j++) hi[j] = ct_self(v, hnew[j], hi[j]);
                if (p->sequence == 1)
                    for (int j = 0; j < H; j++)
                        y[at * DH + (int64_t)d * H + j] = ct_self(v, mk ? hnew[j] * mk[j] : hnew[j], 0.0f);
            }
        }
        if (p->sequence == 0 && !keep)
            for (int i = 0; i < N; i++) memcpy(y + (int64_t)i * DH + (int64_t)d * H, h + (int64_t)i * H, hb);
        /* masked final states: the output of the sample's last real step (the backward
         * direction's is step 0), masked at that step like sequence=1's; the mask is
         * selected over every step, so no address depends on the length */
        for (int i = 0; p->sequence == 0 && keep && i < N; i++) {
            const int last = d ? 0 : len ? len[i] - 1 : T - 1;
            for (int j = 0; j < H; j++) {
                float mv = 0.0f;
                for (int t = 0; t < T; t++) mv = ct_self(ct_mask32(t == last), keep[((int64_t)t * D + d) * H + j], mv);
                y[(int64_t)i * DH + (int64_t)d * H + j] = h[(int64_t)i * H + j] * mv;
            }
        }
        for (int i = 0; p->sequence == 2 && i < N; i++) {
            memcpy(y + state_at(p, i, d, 0), h + (int64_t)i * H, hb);
            if (p->cell == RNN_LSTM) memcpy(y + state_at(p, i, d, 1), c + (int64_t)i * H, hb);
        }
    }
}

/* column sums of a (rows, cols) into out (cols), overwritten */
static void col_sums(int64_t rows, int64_t cols, const float *a, float *out) {
    memset(out, 0, sizeof *out * (size_t)cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) out[j] += a[r * cols + j];
}

void rnn_backward_ref(const rnn_params *p, const float *x, const int32_t *len, const float *w, const float *dy,
                      const float *ws, float *dx, float *dh0, float *dw, float *db, float *scratch, int nthreads) {
    const int N = p->n, T = p->t, F = p->f, H = p->h, D = p->dirs;
    const int64_t GH = gh_of(p), NT = (int64_t)N * T, ldw = F + H, DH = (int64_t)D * H;
    const int gru0 = p->cell == RNN_GRU && !p->lbr;
    float *dXG = scratch, *dHG = dXG + NT * GH, *dh = dHG + NT * GH, *dc = dh + (int64_t)N * H;
    float *drh = dc + (int64_t)N * H, *rh_all = drh + (int64_t)N * H;
    const size_t wsd = ws_per_dir(p);
    const int nt = step_threads(p, nthreads);
    for (int d = 0; d < D; d++) {
        const float *W = w + d * GH * ldw;
        float *dW = dw + d * GH * ldw, *dbih = db + d * 2 * GH, *dbhh = dbih + GH;
        const float *wg = ws + d * wsd, *whp = wg + NT * GH;
        const float *wcp = p->cell == RNN_LSTM ? whp + NT * H : NULL, *wc = wcp ? wcp + NT * H : NULL;
        const float *whn = p->cell == RNN_GRU ? whp + NT * H : NULL;
        const size_t hb = sizeof(float) * (size_t)H;
        memset(dc, 0, hb * (size_t)N);
        if (p->sequence == 1) memset(dh, 0, hb * (size_t)N);
        for (int i = 0; p->sequence == 0 && i < N; i++) memcpy(dh + (int64_t)i * H, dy + (int64_t)i * DH + (int64_t)d * H, hb);
        for (int i = 0; p->sequence == 2 && i < N; i++) {
            memcpy(dh + (int64_t)i * H, dy + state_at(p, i, d, 0), hb);
            if (p->cell == RNN_LSTM) memcpy(dc + (int64_t)i * H, dy + state_at(p, i, d, 1), hb);
        }
        for (int s = T - 1; s >= 0; s--) {
            const int t = d ? T - 1 - s : s;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
            for (int i = 0; i < N; i++) {
                const int64_t at = (int64_t)i * T + t;
                float *gx = dXG + at * GH, *gh = dHG + at * GH, *dhi = dh + (int64_t)i * H, *dci = dc + (int64_t)i * H;
                if (len && t >= len[i]) { /* padding: the states passed through unchanged */
                    memset(gx, 0, sizeof *gx * (size_t)GH);
                    memset(gh, 0, sizeof *gh * (size_t)GH);
                    continue;
                }
                if (p->sequence == 1)
                    for (int j = 0; j < H; j++) dhi[j] += dy[at * DH + (int64_t)d * H + j];
                const float *g = wg + at * GH, *hp = whp + at * H;
                switch (p->cell) {
                case RNN_TANH:
                    for (int j = 0; j < H; j++) gx[j] = dhi[j] * (1.0f - g[j] * g[j]);
                    memset(dhi, 0, sizeof *dhi * (size_t)H);
                    break;
                case RNN_RELU:
                    for (int j = 0; j < H; j++) gx[j] = g[j] > 0.0f ? dhi[j] : 0.0f;
                    memset(dhi, 0, sizeof *dhi * (size_t)H);
                    break;
                case RNN_LSTM: {
                    const float *cp = wcp + at * H, *cn = wc + at * H;
                    float tc[H > 0 ? H : 1];
                    eltwise_forward_ref(ELTWISE_TANH, 0.0f, (size_t)H, tc, cn, 1);
                    for (int j = 0; j < H; j++) {
                        const float gi = g[j], gf = g[H + j], gg = g[2 * H + j], go = g[3 * H + j];
                        const float dct = dci[j] + dhi[j] * go * (1.0f - tc[j] * tc[j]);
                        gx[j] = dct * gg * gi * (1.0f - gi);
                        gx[H + j] = dct * cp[j] * gf * (1.0f - gf);
                        gx[2 * H + j] = dct * gi * (1.0f - gg * gg);
                        gx[3 * H + j] = dhi[j] * tc[j] * go * (1.0f - go);
                        dci[j] = dct * gf;
                        dhi[j] = 0.0f;
                    }
                    break;
                }
                case RNN_GRU: {
                    const float *hni = whn + at * H;
                    for (int j = 0; j < H; j++) {
                        const float r = g[j], z = g[H + j], nn = g[2 * H + j];
                        const float dnp = dhi[j] * (1.0f - z) * (1.0f - nn * nn);
                        gx[H + j] = dhi[j] * (hp[j] - nn) * z * (1.0f - z);
                        gx[2 * H + j] = dnp;
                        if (p->lbr) gx[j] = dnp * hni[j] * r * (1.0f - r);
                        dhi[j] = dhi[j] * z; /* the direct path; the W_hh paths are added below */
                    }
                    break;
                }
                }
                memcpy(gh, gx, sizeof *gh * (size_t)GH);
                if (p->cell == RNN_GRU && p->lbr)
                    for (int j = 0; j < H; j++) gh[2 * H + j] = gx[2 * H + j] * g[j];
            }
            /* this step's rows of dHG, one per sample, T*GH apart */
            const float *dhg_t = dHG + (int64_t)t * GH;
            const int ld_t = (int)((int64_t)T * GH);
            if (gru0) { /* d(r h) = dn W_hn, then r's gradient and the path through r h */
                gemm_ref(0, 0, N, H, H, 1.0f, dhg_t + 2 * H, ld_t, W + 2 * (int64_t)H * ldw + F, ldw, 0.0f, drh, H, nt);
                for (int i = 0; i < N; i++) {
                    const int64_t at = (int64_t)i * T + t;
                    if (len && t >= len[i]) continue;
                    const float *g = wg + at * GH, *hp = whp + at * H;
                    float *gx = dXG + at * GH, *gh = dHG + at * GH;
                    for (int j = 0; j < H; j++) {
                        const float r = g[j], dr = drh[(int64_t)i * H + j] * hp[j];
                        gx[j] = gh[j] = dr * r * (1.0f - r);
                        dh[(int64_t)i * H + j] += drh[(int64_t)i * H + j] * r;
                    }
                }
            }
            /* dh += dHG W_hh over the gates whose recurrent term is W h (gru0: r and z only) */
            gemm_ref(0, 0, N, H, gru0 ? 2 * H : (int)GH, 1.0f, dhg_t, ld_t, W + F, ldw, 1.0f, dh, H, nt);
        }
        for (int i = 0; dh0 && i < N; i++) { /* what reached the start: the initial states' gradients */
            memcpy(dh0 + state_at(p, i, d, 0), dh + (int64_t)i * H, hb);
            if (p->cell == RNN_LSTM) memcpy(dh0 + state_at(p, i, d, 1), dc + (int64_t)i * H, hb);
        }
        /* the weight gradients of every step at once */
        gemm_ref(1, 0, (int)GH, F, (int)NT, 1.0f, dXG, (int)GH, x, F, 0.0f, dW, ldw, nthreads);
        col_sums(NT, GH, dXG, dbih);
        gemm_ref(1, 0, gru0 ? 2 * H : (int)GH, H, (int)NT, 1.0f, dHG, (int)GH, whp, H, 0.0f, dW + F, ldw, nthreads);
        if (gru0) { /* W_hn's input was r h */
            for (int64_t a = 0; a < NT; a++)
                for (int j = 0; j < H; j++) rh_all[a * H + j] = wg[a * GH + j] * whp[a * H + j];
            gemm_ref(1, 0, H, H, (int)NT, 1.0f, dHG + 2 * H, (int)GH, rh_all, H, 0.0f, dW + 2 * (int64_t)H * ldw + F,
                     ldw, nthreads);
        }
        col_sums(NT, GH, dHG, dbhh);
        if (dx) gemm_ref(0, 0, (int)NT, F, (int)GH, 1.0f, dXG, (int)GH, W, ldw, d ? 1.0f : 0.0f, dx, F, nthreads);
    }
}

/* ------------------------------------------------------------------ embedding */

static inline int id_ok(float x, int v) { return x >= 0.0f && x < (float)v && x == floorf(x); }

int64_t embedding_forward_ref(int64_t count, int e, int v, const float *ids, const float *w, float *out) {
    for (int64_t i = 0; i < count; i++) {
        if (!id_ok(ids[i], v)) return i;
        memcpy(out + i * e, w + (int64_t)ids[i] * e, sizeof *out * (size_t)e);
    }
    return -1;
}

void embedding_forward_ct(int64_t count, int e, int v, const float *ids, const float *w, float *out, int nthreads) {
#pragma omp parallel for num_threads(nthreads > 0 ? nthreads : 1) schedule(static) if (count >= 64 && nthreads > 1)
    for (int64_t i = 0; i < count; i++) {
        const float x = ids[i];
        /* an invalid id (negative, too large, fractional, NaN) selects no row */
        const uint32_t ok = ct_mask32(x >= 0.0f) & ct_mask32(x < (float)v) & ct_mask32(x == floorf(x));
        const uint32_t id = ct_selu(ok, (uint32_t)(int32_t)ct_self(ok, x, 0.0f), 0xffffffffu);
        float *o = out + i * e;
        memset(o, 0, sizeof *o * (size_t)e);
        for (int r = 0; r < v; r++) {
            const uint32_t m = ct_mask32(id == (uint32_t)r);
            const float *row = w + (int64_t)r * e;
            for (int j = 0; j < e; j++) o[j] = ct_bitsf(ct_fbits(o[j]) | (ct_fbits(row[j]) & m));
        }
    }
}

void embedding_backward_ref(int64_t count, int e, int v, const float *ids, const float *dout, float *dw,
                            int padding_idx) {
    memset(dw, 0, sizeof *dw * (size_t)v * (size_t)e);
    for (int64_t i = 0; i < count; i++) {
        if (!id_ok(ids[i], v) || (int)ids[i] == padding_idx) continue;
        float *row = dw + (int64_t)ids[i] * e;
        for (int j = 0; j < e; j++) row[j] += dout[i * e + j];
    }
}
