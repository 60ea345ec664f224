/* The sequence layer kinds: rnn (tanh, relu), lstm and gru against PyTorch 1.13 over a
 * padded batch, forward and every gradient (tests/fixtures/rnn.tsfx, from
 * gen_rnn_fixture.py); padding invariance through a whole model (a padded batch
 * gives each sequence's own outputs and gradients); gru without
 * linear_before_reset against its definition written out; embedding's rows, padding
 * row, refusals and constant-time variant; the architecture keys and their errors.
 * Finite differences and constant-time inference of each kind are in
 * test_layer_kinds.c. */
#include "common/fixture.h"
#include "common/test.h"
#include "nn/nn.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static ts_ctx *g_ctx;
/* the oneDNN kernels' tolerance: float32, or bfloat16 (test_torch_parity_bf16) */
static double g_rtol = 1e-4, g_atol = 1e-5;
static int g_bf16;

typedef struct torch_case {
    rnn_cell cell;
    int h, dirs, sequence, initial;
} torch_case;

/* gen_rnn_fixture.py's CASES, in its order (sequence: 1 "all", 0 "final", 2 "state") */
static const torch_case CASES[] = {
    {RNN_TANH, 3, 1, 1, 0}, {RNN_RELU, 3, 2, 0, 0}, {RNN_LSTM, 3, 1, 1, 0}, {RNN_LSTM, 4, 2, 1, 0},
    {RNN_LSTM, 3, 2, 0, 0}, {RNN_GRU, 3, 1, 0, 0},  {RNN_GRU, 4, 2, 1, 0},  {RNN_LSTM, 3, 2, 2, 1},
    {RNN_GRU, 3, 1, 1, 1},  {RNN_TANH, 2, 2, 2, 1},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

static const fixture_tensor *need(const fixture *fx, const char *name, int64_t numel) {
    const fixture_tensor *t = fixture_find(fx, name);
    CHECK(t && t->numel == numel, "fixture tensor %s: want %lld values", name, (long long)numel);
    return t && t->numel == numel ? t : NULL;
}

static void test_torch_parity(void) {
    char err[256];
    fixture *fx = fixture_load("tests/fixtures/rnn.tsfx", err, sizeof err);
    CHECK(fx != NULL, "%s", err);
    if (!fx) return;
    const fixture_tensor *x = fixture_find(fx, "x"), *lens = fixture_find(fx, "lengths");
    CHECK(x && x->ndim == 3 && lens && lens->numel == x->dims[0], "x (N,T,F) and lengths (N)");
    if (!x || x->ndim != 3 || !lens || lens->numel != x->dims[0]) {
        fixture_free(fx);
        return;
    }
    const int n = (int)x->dims[0], t = (int)x->dims[1], f = (int)x->dims[2];
    int32_t len[8];
    for (int i = 0; i < n; i++) len[i] = (int32_t)lens->data[i];
    for (int k = 0; k < NCASES; k++) {
        const torch_case *c = &CASES[k];
        for (int threads = 1; threads <= 2; threads++) {
            rnn_params p = {c->cell, n, t, f, c->h, c->dirs, c->sequence, 1};

            const int64_t nw = rnn_weight_count(&p), nb = (int64_t)c->dirs * 2 * rnn_gates(c->cell) * c->h;
            const int64_t ny = c->sequence == 1   ? (int64_t)n * t * c->dirs * c->h
                               : c->sequence == 2 ? (int64_t)n * rnn_state_size(&p)
                                                  : (int64_t)n * c->dirs * c->h;
            const int64_t ns = (int64_t)n * rnn_state_size(&p);
            char name[64], what[96];
#define FX(s, count) (snprintf(name, sizeof name, "case%d." s, k), need(fx, name, count))
            const fixture_tensor *w = FX("w", nw), *b = FX("b", nb), *y = FX("y", ny), *r = FX("r", ny);
            const fixture_tensor *dx = FX("dx", (int64_t)n * t * f), *dw = FX("dw", nw), *db = FX("db", nb);
            const fixture_tensor *h0 = c->initial ? FX("h0", ns) : NULL, *dh0 = c->initial ? FX("dh0", ns) : NULL;
#undef FX
            if (!w || !b || !y || !r || !dx || !dw || !db || (c->initial && (!h0 || !dh0))) break;
            float *got = test_falloc((size_t)ny), *ws = test_falloc(rnn_workspace_floats(&p));
            float *scratch = test_falloc(rnn_scratch_floats(&p));
            float *gx = test_falloc((size_t)n * t * f), *gw = test_falloc((size_t)nw), *gb = test_falloc((size_t)nb);
            float *gh0 = test_falloc((size_t)ns);
            const float *h0d = h0 ? h0->data : NULL;
            rnn_forward_ref(&p, x->data, len, h0d, w->data, b->data, NULL, got, ws, scratch, 0, threads);
            snprintf(what, sizeof what, "case %d (%d threads): y", k, threads);
            test_allclose(what, got, y->data, (size_t)ny, 1e-4, 1e-5);
            rnn_backward_ref(&p, x->data, len, w->data, r->data, ws, gx, h0 ? gh0 : NULL, gw, gb, scratch, threads);
            if (h0) {
                snprintf(what, sizeof what, "case %d (%d threads): dh0", k, threads);
                test_allclose(what, gh0, dh0->data, (size_t)ns, 1e-4, 1e-5);
            }
            snprintf(what, sizeof what, "case %d (%d threads): dx", k, threads);
            test_allclose(what, gx, dx->data, (size_t)n * t * f, 1e-4, 1e-5);
            snprintf(what, sizeof what, "case %d (%d threads): dw", k, threads);
            test_allclose(what, gw, dw->data, (size_t)nw, 1e-4, 1e-5);
            snprintf(what, sizeof what, "case %d (%d threads): db", k, threads);
            test_allclose(what, gb, db->data, (size_t)nb, 1e-4, 1e-5);
            /* oneDNN's primitives: the same values, training and inference (an lstm's
             * final cells of a padded batch run by length) */
            ts_ctx_set_threads(g_ctx, threads);
            const size_t wsb = rnn_dnnl_workspace_bytes(g_ctx, &p);
            void *dws = test_falloc((wsb + 3) / 4 + 1);
            ts_status st = rnn_forward_dnnl(g_ctx, &p, x->data, len, h0d, w->data, b->data, got, dws, wsb);
            {
                CHECK(wsb > 0 && st == TS_OK, "case %d: oneDNN forward: %s", k, ts_ctx_error(g_ctx));
                snprintf(what, sizeof what, "case %d (%d threads): oneDNN%s y", k, threads, g_bf16 ? " bf16" : "");
                test_allclose(what, got, y->data, (size_t)ny, g_rtol, g_atol);
                memset(gx, 0, sizeof *gx * (size_t)n * t * f);
                st = rnn_backward_dnnl(g_ctx, &p, x->data, len, h0d, w->data, b->data, r->data, dws, wsb, gx,
                                       h0 ? gh0 : NULL, gw, gb);
                CHECK(st == TS_OK, "case %d: oneDNN backward: %s", k, ts_ctx_error(g_ctx));
                if (h0) {
                    snprintf(what, sizeof what, "case %d (%d threads): oneDNN%s dh0", k, threads, g_bf16 ? " bf16" : "");
                    test_allclose(what, gh0, dh0->data, (size_t)ns, g_rtol, g_atol);
                }
                snprintf(what, sizeof what, "case %d (%d threads): oneDNN%s dx", k, threads, g_bf16 ? " bf16" : "");
                test_allclose(what, gx, dx->data, (size_t)n * t * f, g_rtol, g_atol);
                snprintf(what, sizeof what, "case %d (%d threads): oneDNN%s dw", k, threads, g_bf16 ? " bf16" : "");
                test_allclose(what, gw, dw->data, (size_t)nw, g_rtol, g_atol);
                snprintf(what, sizeof what, "case %d (%d threads): oneDNN%s db", k, threads, g_bf16 ? " bf16" : "");
                test_allclose(what, gb, db->data, (size_t)nb, g_rtol, g_atol);
                st = rnn_forward_dnnl(g_ctx, &p, x->data, len, h0d, w->data, b->data, got, NULL, 0);
                CHECK(st == TS_OK, "case %d: oneDNN inference: %s", k, ts_ctx_error(g_ctx));
                snprintf(what, sizeof what, "case %d (%d threads): oneDNN%s inference y", k, threads, g_bf16 ? " bf16" : "");
                test_allclose(what, got, y->data, (size_t)ny, g_rtol, g_atol);
            }
            free(dws);
            ts_ctx_set_threads(g_ctx, 1);
            /* inference (no workspace) and constant-time inference give the same y */
            rnn_forward_ref(&p, x->data, len, h0d, w->data, b->data, NULL, got, NULL, scratch, 1, threads);
            snprintf(what, sizeof what, "case %d: constant-time y", k);
            test_allclose(what, got, y->data, (size_t)ny, 1e-4, 1e-5);
            free(got);
            free(ws);
            free(scratch);
            free(gx);
            free(gw);
            free(gb);
            free(gh0);
        }
    }
    fixture_free(fx);
}

/* The same in bfloat16 where the CPU has it: inputs, states and weights rounded to 8
 * significant bits, so a few percent of tolerance. */
static void test_torch_parity_bf16(void) {
    if (ts_ctx_set_bf16(g_ctx, 1) != TS_OK || !rnn_bf16(g_ctx)) {
        printf("  (no bf16 recurrent kernels on this CPU: skipped)\n");
        ts_ctx_set_bf16(g_ctx, 0);
        return;
    }
    g_bf16 = 1;
    g_rtol = 5e-2;
    g_atol = 3e-2;
    test_torch_parity();
    g_bf16 = 0;
    g_rtol = 1e-4;
    g_atol = 1e-5;
    ts_ctx_set_bf16(g_ctx, 0);
}

/* The by-length path (a padded batch run as one unpadded batch per length) for every
 * output kind: oneDNN against the reference, training forward and every gradient, on a
 * ReLU RNN (which trains that way on padded batches) and an LSTM. */
static void test_by_length(void) {
    enum { N = 5, T = 6, F = 3, H = 4 };
    const int32_t len[N] = {6, 2, 4, 2, 1};
    static const rnn_cell cells[2] = {RNN_RELU, RNN_LSTM};
    for (int ci = 0; ci < 2; ci++)
        for (int seq = 0; seq <= 2; seq++) {
            rnn_params p = {cells[ci], N, T, F, H, 2, seq, 1};
            const size_t nw = (size_t)rnn_weight_count(&p), nb = 2 * 2 * (size_t)rnn_gates(p.cell) * H;
            const size_t ns = (size_t)N * (size_t)rnn_state_size(&p);
            const size_t ny = seq == 1 ? (size_t)N * T * 2 * H : seq == 2 ? ns : (size_t)N * 2 * H;
            float *x = test_falloc((size_t)N * T * F), *w = test_falloc(nw), *b = test_falloc(nb);
            float *h0 = test_falloc(ns), *dy = test_falloc(ny), *y0 = test_falloc(ny), *y1 = test_falloc(ny);
            float *g0[4] = {test_falloc((size_t)N * T * F), test_falloc(ns), test_falloc(nw), test_falloc(nb)};
            float *g1[4] = {test_falloc((size_t)N * T * F), test_falloc(ns), test_falloc(nw), test_falloc(nb)};
            test_fill_uniform(x, (size_t)N * T * F, 11, -1, 1);
            test_fill_uniform(w, nw, 12, -0.5f, 0.5f);
            test_fill_uniform(b, nb, 13, -0.2f, 0.2f);
            test_fill_uniform(h0, ns, 14, -0.5f, 0.5f);
            test_fill_uniform(dy, ny, 15, -1, 1);
            float *ws = test_falloc(rnn_workspace_floats(&p)), *scratch = test_falloc(rnn_scratch_floats(&p));
            rnn_forward_ref(&p, x, len, h0, w, b, NULL, y0, ws, scratch, 0, 1);
            rnn_backward_ref(&p, x, len, w, dy, ws, g0[0], g0[1], g0[2], g0[3], scratch, 1);
            const size_t wsb = rnn_dnnl_workspace_bytes(g_ctx, &p);
            float *dws = test_falloc((wsb + 3) / 4 + 1);
            CHECK(rnn_forward_dnnl(g_ctx, &p, x, len, h0, w, b, y1, dws, wsb) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(rnn_backward_dnnl(g_ctx, &p, x, len, h0, w, b, dy, dws, wsb, g1[0], g1[1], g1[2], g1[3]) == TS_OK,
                  "%s", ts_ctx_error(g_ctx));
            static const char *const names[4] = {"dx", "dh0", "dw", "db"};
            const size_t counts[4] = {(size_t)N * T * F, ns, nw, nb};
            char what[96];
            snprintf(what, sizeof what, "by length, cell %d sequence %d: y", (int)p.cell, seq);
            test_allclose(what, y1, y0, ny, 1e-4, 1e-5);
            for (int k = 0; k < 4; k++) {
                snprintf(what, sizeof what, "by length, cell %d sequence %d: %s", (int)p.cell, seq, names[k]);
                test_allclose(what, g1[k], g0[k], counts[k], 1e-4, 1e-5);
            }
            free(x), free(w), free(b), free(h0), free(dy), free(y0), free(y1), free(ws), free(scratch), free(dws);
            for (int k = 0; k < 4; k++) free(g0[k]), free(g1[k]);
        }
}

/* A batch in slices, one per thread (rnn_dnnl.c, lanes): oneDNN on 2 and 3 threads
 * against the reference, training forward and every gradient, every cell, both
 * directions, every output kind over a padded batch; the same bits on a second run;
 * a workspace planned for one thread run on two (the batch whole, as planned) and one
 * filled on two threads read back on one (split as its forward was). The workspace's
 * first int32 is how many slices the forward pass ran. */
static void test_lanes(void) {
    enum { N = 24, T = 6, F = 3, H = 5 };
    int32_t len[N];
    for (int i = 0; i < N; i++) len[i] = 1 + (i * 5) % T;
    static const rnn_cell cells[4] = {RNN_TANH, RNN_RELU, RNN_LSTM, RNN_GRU};
    for (int ci = 0; ci < 4; ci++)
        for (int dirs = 1; dirs <= 2; dirs++)
            for (int seq = 0; seq <= 2; seq++) {
                rnn_params p = {cells[ci], N, T, F, H, dirs, seq, 1};
                const size_t nw = (size_t)rnn_weight_count(&p), nb = (size_t)dirs * 2 * rnn_gates(p.cell) * H;
                const size_t ns = (size_t)N * (size_t)rnn_state_size(&p), nx = (size_t)N * T * F;
                const size_t ny = seq == 1 ? (size_t)N * T * dirs * H : seq == 2 ? ns : (size_t)N * dirs * H;
                float *x = test_falloc(nx), *w = test_falloc(nw), *b = test_falloc(nb), *h0 = test_falloc(ns);
                float *dy = test_falloc(ny), *y0 = test_falloc(ny), *y1 = test_falloc(ny), *y2 = test_falloc(ny);
                float *g0[4] = {test_falloc(nx), test_falloc(ns), test_falloc(nw), test_falloc(nb)};
                float *g1[4] = {test_falloc(nx), test_falloc(ns), test_falloc(nw), test_falloc(nb)};
                float *g2[4] = {test_falloc(nx), test_falloc(ns), test_falloc(nw), test_falloc(nb)};
                test_fill_uniform(x, nx, 21, -1, 1);
                test_fill_uniform(w, nw, 22, -0.5f, 0.5f);
                test_fill_uniform(b, nb, 23, -0.2f, 0.2f);
                test_fill_uniform(h0, ns, 24, -0.5f, 0.5f);
                test_fill_uniform(dy, ny, 25, -1, 1);
                float *ws = test_falloc(rnn_workspace_floats(&p)), *scratch = test_falloc(rnn_scratch_floats(&p));
                rnn_forward_ref(&p, x, len, h0, w, b, NULL, y0, ws, scratch, 0, 1);
                rnn_backward_ref(&p, x, len, w, dy, ws, g0[0], g0[1], g0[2], g0[3], scratch, 1);
                static const char *const names[4] = {"dx", "dh0", "dw", "db"};
                const size_t counts[4] = {nx, ns, nw, nb};
                char what[128];
                /* plan, forward, backward: threads (2,2,2), (3,3,3), (1,2,2), (2,2,1) */
                static const int th[4][3] = {{2, 2, 2}, {3, 3, 3}, {1, 2, 2}, {2, 2, 1}};
                for (int r = 0; r < 4; r++) {
                    ts_ctx_set_threads(g_ctx, th[r][0]);
                    const size_t wsb = rnn_dnnl_workspace_bytes(g_ctx, &p);
                    float *dws = test_falloc((wsb + 3) / 4 + 1);
                    ts_ctx_set_threads(g_ctx, th[r][1]);
                    for (int rep = 0; rep < (r == 0 ? 2 : 1); rep++) {
                        float *yy = rep ? y2 : y1, *const *gg = rep ? g2 : g1;
                        ts_ctx_set_threads(g_ctx, th[r][1]);
                        CHECK(rnn_forward_dnnl(g_ctx, &p, x, len, h0, w, b, yy, dws, wsb) == TS_OK, "%s",
                              ts_ctx_error(g_ctx));
                        int32_t lanes;
                        memcpy(&lanes, dws, sizeof lanes);
                        /* sliced where the batch runs whole (not by length) and the plan had room */
                        const int whole = !(p.cell == RNN_LSTM && seq == 2) && p.cell != RNN_RELU;
                        const int want = whole && th[r][0] > 1 ? th[r][1] : 1;
                        CHECK(lanes == want, "cell %d dirs %d sequence %d, threads %d/%d: %d slices, want %d",
                              (int)p.cell, dirs, seq, th[r][0], th[r][1], lanes, want);
                        ts_ctx_set_threads(g_ctx, th[r][2]);
                        CHECK(rnn_backward_dnnl(g_ctx, &p, x, len, h0, w, b, dy, dws, wsb, gg[0], gg[1], gg[2],
                                                gg[3]) == TS_OK,
                              "%s", ts_ctx_error(g_ctx));
                    }
                    snprintf(what, sizeof what, "slices, cell %d dirs %d sequence %d threads %d/%d/%d: y",
                             (int)p.cell, dirs, seq, th[r][0], th[r][1], th[r][2]);
                    test_allclose(what, y1, y0, ny, 1e-4, 1e-5);
                    for (int k = 0; k < 4; k++) {
                        snprintf(what, sizeof what, "slices, cell %d dirs %d sequence %d threads %d/%d/%d: %s",
                                 (int)p.cell, dirs, seq, th[r][0], th[r][1], th[r][2], names[k]);
                        test_allclose(what, g1[k], g0[k], counts[k], 1e-4, 1e-5);
                    }
                    if (r == 0) {
                        CHECK(!memcmp(y1, y2, ny * sizeof *y1), "slices, cell %d: y differs between two runs",
                              (int)p.cell);
                        for (int k = 0; k < 4; k++)
                            CHECK(!memcmp(g1[k], g2[k], counts[k] * sizeof(float)),
                                  "slices, cell %d: %s differs between two runs", (int)p.cell, names[k]);
                    }
                    free(dws);
                }
                /* inference: no workspace */
                ts_ctx_set_threads(g_ctx, 2);
                CHECK(rnn_forward_dnnl(g_ctx, &p, x, len, h0, w, b, y1, NULL, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
                snprintf(what, sizeof what, "slices, cell %d dirs %d sequence %d: inference y", (int)p.cell, dirs, seq);
                test_allclose(what, y1, y0, ny, 1e-4, 1e-5);
                ts_ctx_set_threads(g_ctx, 1);
                free(x), free(w), free(b), free(h0), free(dy), free(y0), free(y1), free(y2), free(ws), free(scratch);
                for (int k = 0; k < 4; k++) free(g0[k]), free(g1[k]), free(g2[k]);
            }
}

/* gru with linear_before_reset=0 (ONNX's default) against its definition, one
 * sample, one direction: n = tanh(W_in x + b_in + W_hn (r h) + b_hn) */
static void test_gru_reset_before(void) {
    enum { T = 4, F = 3, H = 2 };
    rnn_params p = {RNN_GRU, 1, T, F, H, 1, 1, 0};
    float x[T * F], w[3 * H * (F + H)], b[2 * 3 * H], y[T * H], want[T * H];
    test_fill_uniform(x, T * F, 1, -1, 1);
    test_fill_uniform(w, 3 * H * (F + H), 2, -1, 1);
    test_fill_uniform(b, 6 * H, 3, -1, 1);
    float *scratch = test_falloc(rnn_scratch_floats(&p));
    rnn_forward_ref(&p, x, NULL, NULL, w, b, NULL, y, NULL, scratch, 0, 1);
    double h[H] = {0, 0};
    for (int t = 0; t < T; t++) {
        double gate[3][H];
        for (int gi = 0; gi < 2; gi++)
            for (int j = 0; j < H; j++) {
                const float *row = w + (gi * H + j) * (F + H);
                double a = b[gi * H + j] + b[3 * H + gi * H + j];
                for (int q = 0; q < F; q++) a += row[q] * x[t * F + q];
                for (int q = 0; q < H; q++) a += row[F + q] * h[q];
                gate[gi][j] = 1.0 / (1.0 + exp(-a));
            }
        for (int j = 0; j < H; j++) {
            const float *row = w + (2 * H + j) * (F + H);
            double a = b[2 * H + j] + b[5 * H + j];
            for (int q = 0; q < F; q++) a += row[q] * x[t * F + q];
            for (int q = 0; q < H; q++) a += row[F + q] * gate[0][q] * h[q];
            gate[2][j] = tanh(a);
        }
        for (int j = 0; j < H; j++) h[j] = (1 - gate[1][j]) * gate[2][j] + gate[1][j] * h[j];
        for (int j = 0; j < H; j++) want[t * H + j] = (float)h[j];
    }
    test_allclose("gru linear_before_reset=0", y, want, T * H, 1e-5, 1e-6);
    free(scratch);
}

static ts_model *model_of(const char *text) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "seq.arch", NULL, 0, 5, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return m;
}

/* Every tensor of b from a (same names and sizes). */
static void copy_tensors(ts_model *a, ts_model *b) {
    for (int i = 0; i < ts_model_tensor_count(a); i++) {
        ts_tensor_info ta, tb;
        ts_model_tensor(a, i, &ta);
        ts_model_tensor(b, i, &tb);
        CHECK(ta.numel == tb.numel, "tensor %s", ta.name);
        if (ta.numel == tb.numel) memcpy(tb.data, ta.data, sizeof(float) * (size_t)ta.numel);
    }
}

/* A padded batch through embedding, stacked bidirectional lstm and gru, and a dense
 * head: each sequence's outputs and the weight gradients equal those of the same
 * sequence alone in a model with T = its length. */
static void test_padding_invariance(void) {
    static const char *const cells[] = {"lstm", "gru", "rnn"};
    for (int ci = 0; ci < 3; ci++) {
        char text[1024];
        const int T = 7, L = 4;
        const char *fmt = "input shape=%d\nembedding name=e vocab=11 dim=5 padding_idx=0\n"
                          "%s name=r1 in=e,input0 hidden=6 bidirectional=1\n"
                          "%s name=r2 in=r1,input0 hidden=4 sequence=0 bidirectional=1\ndense name=out out=3\n";
        snprintf(text, sizeof text, fmt, T, cells[ci], cells[ci]);
        ts_model *pad = model_of(text);
        snprintf(text, sizeof text, fmt, L, cells[ci], cells[ci]);
        ts_model *one = model_of(text);
        if (!pad || !one) {
            ts_model_free(pad);
            ts_model_free(one);
            return;
        }
        copy_tensors(pad, one);
        const float ids_pad[2 * 7] = {3, 5, 1, 9, 0, 0, 0, /* length 4, padded */ 2, 4, 6, 8, 10, 1, 7};
        float y_pad[2 * 3], y_one[3];
        CHECK(ts_model_predict(g_ctx, pad, ids_pad, 2, y_pad) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_predict(g_ctx, one, ids_pad, 1, y_one) == TS_OK, "%s", ts_ctx_error(g_ctx));
        char what[64];
        snprintf(what, sizeof what, "%s: padded batch, outputs", cells[ci]);
        test_allclose(what, y_pad, y_one, 3, 1e-5, 1e-6);
        /* gradients of sample 0 alone: the padded model on one sample */
        const float r[3] = {0.5f, -1.0f, 2.0f};
        CHECK(ts_model_forward_train(g_ctx, pad, ids_pad, 1, y_pad, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
        /* the default backend trained both recurrent layers on oneDNN (the layer's aux
         * header records how its forward ran; its backward took the same path) */
        for (int li = 1; li < pad->nlayers; li++)
            if (pad->layers[li].kind == LAYER_RNN || pad->layers[li].kind == LAYER_LSTM ||
                pad->layers[li].kind == LAYER_GRU)
                CHECK(*(const int *)pad->exec.ls[li].aux == 1, "%s: layer %s ran its training forward on %s", cells[ci],
                      pad->layers[li].name, *(const int *)pad->exec.ls[li].aux ? "oneDNN bf16" : "the reference");
        CHECK(ts_model_backward(g_ctx, pad, r) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_forward_train(g_ctx, one, ids_pad, 1, y_one, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_backward(g_ctx, one, r) == TS_OK, "%s", ts_ctx_error(g_ctx));
        for (int i = 0; i < ts_model_tensor_count(pad); i++) {
            ts_tensor_info ta, tb;
            ts_model_tensor(pad, i, &ta);
            ts_model_tensor(one, i, &tb);
            if (ta.role != TS_TENSOR_PARAM) continue;
            snprintf(what, sizeof what, "%s: padded batch, d/d %s", cells[ci], ta.name);
            test_allclose(what, ta.grad, tb.grad, (size_t)ta.numel, 1e-5, 1e-6);
        }
        ts_model_free(pad);
        ts_model_free(one);
    }
}

static void test_embedding(void) {
    ts_model *m = model_of("input shape=4\nembedding name=e vocab=6 dim=3 padding_idx=2\nflatten name=f\n");
    if (!m) return;
    ts_tensor_info w;
    ts_model_tensor(m, 0, &w);
    CHECK(w.numel == 18 && w.data[6] == 0 && w.data[7] == 0 && w.data[8] == 0, "padding row 2 starts at zero");
    const float ids[4] = {5, 0, 2, 5};
    float y[12], yc[12];
    CHECK(ts_model_predict(g_ctx, m, ids, 1, y) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) CHECK(y[i * 3 + j] == w.data[(int)ids[i] * 3 + j], "row of id %g", ids[i]);
    ts_ctx_set_constant_time(g_ctx, 1);
    CHECK(ts_model_predict(g_ctx, m, ids, 1, yc) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(y, yc, sizeof y), "constant-time rows are the same bits");
    const float bad[4] = {1, 6, NAN, -1};
    CHECK(ts_model_predict(g_ctx, m, bad, 1, yc) == TS_OK, "constant time: %s", ts_ctx_error(g_ctx));
    for (int j = 3; j < 12; j++) CHECK(yc[j] == 0.0f, "constant time: an invalid id reads as zeros");
    ts_ctx_set_constant_time(g_ctx, 0);
    CHECK(ts_model_predict(g_ctx, m, bad, 1, yc) == TS_EINVAL, "an id past the vocabulary is refused");
    CHECK(strstr(ts_ctx_error(g_ctx), "position 1 holds 6"), "message: %s", ts_ctx_error(g_ctx));
    const float frac[4] = {1, 2.5f, 0, 0};
    CHECK(ts_model_predict(g_ctx, m, frac, 1, yc) == TS_EINVAL, "a fractional id is refused");
    /* the padding row gets no gradient; the others the sum of their positions' */
    const float r[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    CHECK(ts_model_forward_train(g_ctx, m, ids, 1, y, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_backward(g_ctx, m, r) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model_tensor(m, 0, &w);
    CHECK(w.grad[15] == 1 + 10 && w.grad[16] == 2 + 11 && w.grad[17] == 3 + 12, "id 5's row: two positions");
    CHECK(w.grad[0] == 4 && w.grad[6] == 0 && w.grad[3] == 0, "id 0's row, the padding row, an unused row");
    ts_model_free(m);
}

static void expect_arch_error(const char *text, const char *needle) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "bad.arch", NULL, 0, 1, &m) != TS_OK, "refused: %s", text);
    CHECK(strstr(ts_ctx_error(g_ctx), needle), "message '%s' names '%s'", ts_ctx_error(g_ctx), needle);
    ts_model_free(m);
}

static void test_arch(void) {
    ts_model *m = model_of("input shape=5\nembedding name=e vocab=20 dim=4\n"
                           "gru name=g in=e,input0 hidden=3 bidirectional=1 linear_before_reset=0\n"
                           "rnn name=r hidden=2 act=relu sequence=0\ndense name=d out=10\n");
    if (m) {
        const char *arch = ts_model_arch_text(m);
        CHECK(arch != NULL, "arch text");
        ts_model *again = NULL;
        CHECK(ts_model_from_arch(g_ctx, arch, "again", NULL, 0, 1, &again) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(again && ts_model_param_count(again) == ts_model_param_count(m), "same parameters");
        CHECK(ts_model_param_count(m) == 20 * 4 + 2 * 9 * 7 + 2 * 2 * 9 + 2 * 8 + 2 * 2 + 2 * 10 + 10,
              "parameter count %lld", (long long)ts_model_param_count(m));
        ts_model_free(again);
        ts_model_free(m);
    }
    /* the zoo's sequence models take the data's length, classes and vocabulary */
    for (int z = 0; z < 6; z++) {
        static const char *const names[] = {"lstm-clinc", "gru-clinc", "rnn-clinc", "lstm-pos", "gru-pos", "rnn-pos"};
        const char *text = ts_zoo_arch(names[z]);
        CHECK(text != NULL, "zoo %s", names[z]);
        if (!text) continue;
        ts_model *zm = NULL;
        const int tagger = z >= 3;
        const ts_shape in20 = {1, {20}};
        CHECK(ts_model_from_arch_seq(g_ctx, text, names[z], &in20, tagger ? 0 : 7, 123, 0, 1, &zm) == TS_OK, "%s: %s",
              names[z], ts_ctx_error(g_ctx));
        if (!zm) continue;
        ts_tensor_info w;
        ts_model_tensor(zm, 0, &w);
        CHECK(w.ndim == 2 && w.dims[0] == 123 && w.dims[1] == 64, "%s: embedding 123 x 64", names[z]);
        CHECK(ts_model_input_shape(zm).ndim == 1 && ts_model_input_shape(zm).dims[0] == 20, "%s: 20 tokens", names[z]);
        CHECK(ts_model_classes(zm) == (tagger ? 20 * 12 : 7), "%s: outputs %d", names[z], ts_model_classes(zm));
        CHECK(strstr(ts_model_arch_text(zm), "vocab=123") && !strstr(ts_model_arch_text(zm), "vocab=vocab"),
              "%s: the kept text has the number", names[z]);
        ts_model *back = NULL;
        CHECK(ts_model_from_arch(g_ctx, ts_model_arch_text(zm), "back", NULL, 0, 1, &back) == TS_OK, "%s: %s",
              names[z], ts_ctx_error(g_ctx));
        CHECK(back && ts_model_param_count(back) == ts_model_param_count(zm), "%s: written text reads back", names[z]);
        ts_model_free(back);
        ts_model_free(zm);
    }
    expect_arch_error("input shape=5\nembedding name=e vocab=vocab dim=4\n", "vocab=vocab needs vocab=N");
    expect_arch_error("input shape=5\nembedding name=e vocab=9 dim=4\ndense name=d out=target_vocab\n",
                      "out=target_vocab needs target_vocab=N");
    expect_arch_error("input shape=5\nembedding name=e vocab=20 dim=4\nlstm name=l in=e,input0\n", "hidden");
    expect_arch_error("input shape=5\nembedding name=e vocab=4 dim=4 padding_idx=4\n", "padding_idx");
    expect_arch_error("input shape=3x4x4\nlstm name=l hidden=2\n", "needs a sequence");
    expect_arch_error("input shape=5x4\ntranspose name=ids perm=1,0\nlstm name=l in=input0,ids hidden=2\n",
                      "one value per step");
    expect_arch_error("input shape=5x4\nrnn name=l hidden=2 act=sigmoid\n", "act");
    expect_arch_error("input shape=5x4\ngru name=e hidden=3 sequence=0\nlstm name=l in=input0,e hidden=3 initial=1\n",
                      "expected 6 values (h then c");
    expect_arch_error("input shape=5x4\nlstm name=l hidden=3 initial=1\n", "then the initial state");
}

int main(void) {
    char tmp[] = "/tmp/tessera_rnn_XXXXXX";
    if (!test_begin(&g_ctx, tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_torch_parity);
    RUN(test_torch_parity_bf16);
    RUN(test_by_length);
    RUN(test_lanes);
    RUN(test_gru_reset_before);
    RUN(test_padding_invariance);
    RUN(test_embedding);
    RUN(test_arch);
    ts_ctx_free(g_ctx);
    rmdir(tmp);
    TEST_MAIN_END("test_recurrent");
}
