/* Recurrent layers on oneDNN's RNN primitives (vanilla RNN, LSTM, GRU and GRU with
 * linear_before_reset), with rnn_ref.c's semantics, forward and backward.
 *
 * Each direction runs as its own left-to-right primitive; the second direction reads
 * every sequence reversed within its length (a copy). Padding then always comes after
 * a sample's real steps, so no real step depends on it: outputs past a sample's length
 * are zeroed afterwards, its final state is its output at its last real step, and in
 * the backward pass the gradients at padded steps are zero, which keeps them out of
 * every sum (weights, inputs, earlier states). What this cannot give is an LSTM's
 * cell at a padded sample's last real step (sequence=2 of a padded batch): there the
 * samples of each length run together, as a batch of that many steps without padding
 * (one primitive per length). A row of padding only (the initial state passed through)
 * is TS_EUNSUPPORTED and runs on the reference.
 *
 * Weights: ours are (D, G*H, F+H), each gate row W_ih's then W_hh's, PyTorch's gate
 * order; oneDNN's are per direction ldgoi (G, H, F) and (G, H, H) in its gate order
 * (lstm i,f,g,o as ours; gru u,r,o = our z,r,n), packed here and reordered to the
 * layout the primitive picks. Biases: oneDNN has one per gate (b_ih + b_hh), and for
 * linear_before_reset a fourth, our b_hn. oneDNN accumulates weight gradients, so they
 * start at zero.
 *
 * Training workspace: a 64-byte head (ws_head: how the batch was split, below), then
 * per slice (one for the batch whole) and direction: the outputs of every step (N,T,H),
 * the final h (N,H), for lstm the final c (N,H), then oneDNN's own workspace (64-byte
 * aligned). */
#include "dnnl_backend.h"

#include <string.h>

#define ALIGN64(x) (((x) + (size_t)63) & ~(size_t)63)

/* oneDNN's gate k is our gate gate_of(k) */
static int gate_of(const rnn_params *p, int k) { return p->cell == RNN_GRU && k < 2 ? 1 - k : k; }
static int bias_gates(const rnn_params *p) { return p->cell == RNN_GRU && p->lbr ? 4 : rnn_gates(p->cell); }
static inline int len_of(const int32_t *len, int i, int t) { return len ? len[i] : t; }
static inline int64_t state_at(const rnn_params *p, int i, int d, int cell) {
    return (int64_t)i * rnn_state_size(p) + (int64_t)(cell ? p->dirs + d : d) * p->h;
}

/* How oneDNN runs this batch: 0 not at all (a row of padding only), 1 as one batch,
 * 2 by length: an lstm's final cells of a padded batch, and a ReLU RNN's padded batch in
 * training (oneDNN runs the padded steps, whose ReLU states can grow to inf; their zero
 * gradients times inf would be NaN in the weight gradients). */
static int batch_plan(const rnn_params *p, const int32_t *len, int train) {
    int ragged = 0;
    for (int i = 0; len && i < p->n; i++) {
        if (len[i] < 1 || len[i] > p->t) return 0;
        if (len[i] != p->t) ragged = 1;
    }
    if (!ragged) return 1;
    return (p->cell == RNN_LSTM && p->sequence == 2) || (p->cell == RNN_RELU && train) ? 2 : 1;
}

/* Descriptors: ours (f32, the layouts of our buffers), and what the primitive reads and
 * writes: with ctx->bf16 (mixed precision) the layer's input, states h, outputs and
 * weights in bfloat16; biases, an lstm's cells and every gradient stay f32. */
typedef struct rnn_mds {
    dnnl_memory_desc_t src, iter, wl, wi, bias, dst;                /* f32, ours */
    dnnl_memory_desc_t src_p, iter_p, dst_p, wl_any, wi_any;         /* the primitive's */
    dnnl_memory_desc_t dwl_any, dwi_any;                             /* weight gradients, f32 */
} rnn_mds;

/* bfloat16 where asked for and the CPU computes in it (AVX512-BF16, AMX); elsewhere
 * these layers stay f32 (oneDNN would emulate bf16 there). */
int rnn_bf16(const ts_ctx *ctx) {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ctx->bf16 && (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

static dnnl_memory_desc_t md_dt(dnnl_job *job, int ndims, const dnnl_dim_t *dims, dnnl_data_type_t dt,
                                dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    memset(&md, 0, sizeof md);
    if (job->status == TS_OK)
        dnnl_job_check(job, dnnl_memory_desc_init_by_tag(&md, ndims, dims, dt, tag), "dnnl_memory_desc_init_by_tag");
    return md;
}

/* train: for a training forward and its backward. A GRU trains in f32 whatever the
 * setting: oneDNN 2.6's bf16 GRU backward is its reference driver, slower than f32
 * (bench/RESULTS.md). */
static void mds_init(dnnl_job *job, const rnn_params *p, int train, rnn_mds *d) {
    const int G = rnn_gates(p->cell);
    const int bf16 = rnn_bf16(job->ctx) && !(train && p->cell == RNN_GRU);
    const dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t src = {p->t, p->n, p->f}, dst = {p->t, p->n, p->h}, iter = {1, 1, p->n, p->h};
    dnnl_dims_t wl = {1, 1, p->f, G, p->h}, wi = {1, 1, p->h, G, p->h}, bias = {1, 1, bias_gates(p), p->h};
    d->src = dnnl_job_md(job, 3, src, dnnl_ntc); /* (N,T,F) as it is */
    d->dst = dnnl_job_md(job, 3, dst, dnnl_ntc);
    d->iter = dnnl_job_md(job, 4, iter, dnnl_ldnc);
    d->wl = dnnl_job_md(job, 5, wl, dnnl_ldgoi);
    d->wi = dnnl_job_md(job, 5, wi, dnnl_ldgoi);
    d->bias = dnnl_job_md(job, 4, bias, dnnl_ldgo);
    d->src_p = md_dt(job, 3, src, dt, dnnl_ntc);
    d->dst_p = md_dt(job, 3, dst, dt, dnnl_ntc);
    d->iter_p = md_dt(job, 4, iter, dt, dnnl_ldnc);
    d->wl_any = md_dt(job, 5, wl, dt, dnnl_format_tag_any);
    d->wi_any = md_dt(job, 5, wi, dt, dnnl_format_tag_any);
    d->dwl_any = dnnl_job_md(job, 5, wl, dnnl_format_tag_any);
    d->dwi_any = dnnl_job_md(job, 5, wi, dnnl_format_tag_any);
}

static dnnl_primitive_desc_t forward_pd(dnnl_job *job, const rnn_params *p, const rnn_mds *d, int train) {
    if (job->status != TS_OK) return NULL;
    const dnnl_prop_kind_t prop = train ? dnnl_forward_training : dnnl_forward_inference;
    const dnnl_rnn_direction_t dir = dnnl_unidirectional_left2right;
    dnnl_rnn_desc_t rd;
    dnnl_status_t st;
    if (p->cell == RNN_LSTM)
        st = dnnl_lstm_forward_desc_init(&rd, prop, dir, &d->src_p, &d->iter_p, &d->iter, &d->wl_any, &d->wi_any,
                                         &d->bias, &d->dst_p, &d->iter_p, &d->iter, 0);
    else if (p->cell == RNN_GRU)
        st = (p->lbr ? dnnl_lbr_gru_forward_desc_init : dnnl_gru_forward_desc_init)(
            &rd, prop, dir, &d->src_p, &d->iter_p, &d->wl_any, &d->wi_any, &d->bias, &d->dst_p, &d->iter_p, 0);
    else
        st = dnnl_vanilla_rnn_forward_desc_init(&rd, prop, p->cell == RNN_RELU ? dnnl_eltwise_relu : dnnl_eltwise_tanh,
                                                dir, &d->src_p, &d->iter_p, &d->wl_any, &d->wi_any, &d->bias,
                                                &d->dst_p, &d->iter_p, 0, 0.0f, 0.0f);
    if (!dnnl_job_check(job, st, "the RNN descriptor")) return NULL;
    return dnnl_job_pd(job, &rd, NULL, 0);
}

static dnnl_primitive_desc_t backward_pd(dnnl_job *job, const rnn_params *p, const rnn_mds *d,
                                         const_dnnl_primitive_desc_t fwd) {
    if (job->status != TS_OK) return NULL;
    const dnnl_rnn_direction_t dir = dnnl_unidirectional_left2right;
    dnnl_rnn_desc_t rd;
    dnnl_status_t st;
    if (p->cell == RNN_LSTM)
        st = dnnl_lstm_backward_desc_init(&rd, dnnl_backward, dir, &d->src_p, &d->iter_p, &d->iter, &d->wl_any,
                                          &d->wi_any, &d->bias, &d->dst_p, &d->iter_p, &d->iter, &d->src, &d->iter,
                                          &d->iter, &d->dwl_any, &d->dwi_any, &d->bias, &d->dst, &d->iter, &d->iter, 0);
    else if (p->cell == RNN_GRU)
        st = (p->lbr ? dnnl_lbr_gru_backward_desc_init : dnnl_gru_backward_desc_init)(
            &rd, dnnl_backward, dir, &d->src_p, &d->iter_p, &d->wl_any, &d->wi_any, &d->bias, &d->dst_p, &d->iter_p,
            &d->src, &d->iter, &d->dwl_any, &d->dwi_any, &d->bias, &d->dst, &d->iter, 0);
    else
        st = dnnl_vanilla_rnn_backward_desc_init(&rd, dnnl_backward,
                                                 p->cell == RNN_RELU ? dnnl_eltwise_relu : dnnl_eltwise_tanh, dir,
                                                 &d->src_p, &d->iter_p, &d->wl_any, &d->wi_any, &d->bias, &d->dst_p,
                                                 &d->iter_p, &d->src, &d->iter, &d->dwl_any, &d->dwi_any, &d->bias,
                                                 &d->dst, &d->iter, 0, 0.0f, 0.0f);
    if (!dnnl_job_check(job, st, "the RNN backward descriptor")) return NULL;
    return dnnl_job_pd(job, &rd, fwd, 0);
}

/* The md a pd wants for execution argument `arg`; NULL once the job has failed. */
static const dnnl_memory_desc_t *arg_md(dnnl_job *job, const_dnnl_primitive_desc_t pd, int arg) {
    if (job->status != TS_OK) return NULL;
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    if (!md) dnnl_job_fail(job, TS_EINVAL, "dnnl_primitive_desc_query_md(exec_arg_md) failed");
    return md;
}

/* Float data of a job memory (a slot); NULL once the job has failed. */
static float *data_of(dnnl_job *job, dnnl_memory_t m) {
    void *ptr = NULL;
    if (job->status != TS_OK || !m) return NULL;
    if (!dnnl_job_check(job, dnnl_memory_get_data_handle(m, &ptr), "dnnl_memory_get_data_handle")) return NULL;
    return ptr;
}

static dnnl_memory_t zeroed(dnnl_job *job, const dnnl_memory_desc_t *md) {
    dnnl_memory_t m = dnnl_job_memory_alloc(job, md);
    float *f = data_of(job, m);
    if (f) memset(f, 0, dnnl_memory_desc_get_size(md));
    return m;
}

static void job_wait(dnnl_job *job) {
    if (job->status == TS_OK) dnnl_job_check(job, dnnl_stream_wait(job->dnnl->stream), "dnnl_stream_wait");
}

/* Direction d's sequences as its primitive reads them: x itself, or each reversed
 * within its length (the padding after it left in place). */
static dnnl_memory_t source(dnnl_job *job, const rnn_params *p, const rnn_mds *md, int d, const float *x,
                            const int32_t *len) {
    if (d == 0) return dnnl_job_memory(job, &md->src, (void *)x);
    dnnl_memory_t m = dnnl_job_memory_alloc(job, &md->src);
    float *xr = data_of(job, m);
    if (!xr) return NULL;
    const int T = p->t;
    const size_t fb = sizeof(float) * (size_t)p->f;
    for (int i = 0; i < p->n; i++) {
        const int L = len_of(len, i, T);
        for (int s = 0; s < T; s++)
            memcpy(xr + ((int64_t)i * T + s) * p->f, x + ((int64_t)i * T + (s < L ? L - 1 - s : s)) * p->f, fb);
    }
    return m;
}

/* Direction d's initial h (cell 0) or lstm c (cell 1), (N,H): zeros without h0. */
static dnnl_memory_t initial(dnnl_job *job, const rnn_params *p, const rnn_mds *md, int d, int cell,
                             const float *h0) {
    dnnl_memory_t m = zeroed(job, &md->iter);
    float *s = data_of(job, m);
    for (int i = 0; s && h0 && i < p->n; i++)
        memcpy(s + (int64_t)i * p->h, h0 + state_at(p, i, d, cell), sizeof(float) * (size_t)p->h);
    return m;
}

/* Direction d's weights in the layouts pd wants (its WEIGHTS_LAYER, WEIGHTS_ITER) and its
 * bias, packed from ours. */
static void weights(dnnl_job *job, const rnn_params *p, const rnn_mds *md, const_dnnl_primitive_desc_t pd, int d,
                    const float *w, const float *b, dnnl_memory_t *wl, dnnl_memory_t *wi, dnnl_memory_t *bias) {
    const int G = rnn_gates(p->cell), H = p->h, F = p->f, GH = G * H;
    const int64_t ldw = F + H;
    dnnl_memory_t ul = dnnl_job_memory_alloc(job, &md->wl), ui = dnnl_job_memory_alloc(job, &md->wi);
    dnnl_memory_t ub = dnnl_job_memory_alloc(job, &md->bias);
    float *pl = data_of(job, ul), *pi = data_of(job, ui), *pb = data_of(job, ub);
    if (!pl || !pi || !pb) return;
    const float *W = w + (int64_t)d * GH * ldw, *bih = b + (int64_t)d * 2 * GH, *bhh = bih + GH;
    for (int k = 0; k < G; k++) {
        const int g = gate_of(p, k);
        for (int o = 0; o < H; o++) {
            const float *row = W + ((int64_t)g * H + o) * ldw;
            memcpy(pl + ((int64_t)k * H + o) * F, row, sizeof(float) * (size_t)F);
            memcpy(pi + ((int64_t)k * H + o) * H, row + F, sizeof(float) * (size_t)H);
            /* linear_before_reset keeps b_hn apart (the fourth bias), inside r * (.) */
            const int apart = p->cell == RNN_GRU && p->lbr && g == 2;
            pb[(int64_t)k * H + o] = bih[g * H + o] + (apart ? 0.0f : bhh[g * H + o]);
        }
    }
    if (p->cell == RNN_GRU && p->lbr) memcpy(pb + 3 * (int64_t)H, bhh + 2 * H, sizeof(float) * (size_t)H);
    *wl = dnnl_job_layout(job, ul, arg_md(job, pd, DNNL_ARG_WEIGHTS_LAYER), 1);
    *wi = dnnl_job_layout(job, ui, arg_md(job, pd, DNNL_ARG_WEIGHTS_ITER), 1);
    *bias = dnnl_job_layout(job, ub, arg_md(job, pd, DNNL_ARG_BIAS), 1);
}

/* Bytes of one direction's training workspace for pd. */
static size_t dir_bytes(const rnn_params *p, const_dnnl_primitive_desc_t pd) {
    const size_t nh = (size_t)p->n * (size_t)p->h, nth = nh * (size_t)p->t;
    const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0);
    const size_t prim = w ? dnnl_memory_desc_get_size(w) : 0;
    return ALIGN64(sizeof(float) * (nth + nh * (p->cell == RNN_LSTM ? 2 : 1))) + ALIGN64(prim);
}

/* Pointers into direction d's part of the training workspace. */
typedef struct dir_ws {
    float *dst, *hn, *cn; /* (N,T,H), (N,H), lstm (N,H) */
    void *prim;
} dir_ws;

static dir_ws dir_ws_at(const rnn_params *p, void *ws, size_t bytes, int d) {
    const size_t nh = (size_t)p->n * (size_t)p->h;
    char *base = (char *)ws + (size_t)d * bytes;
    dir_ws r = {(float *)base, NULL, NULL, NULL};
    r.hn = r.dst + nh * (size_t)p->t;
    if (p->cell == RNN_LSTM) r.cn = r.hn + nh;
    r.prim = base + ALIGN64(sizeof(float) * (nh * (size_t)p->t + nh * (p->cell == RNN_LSTM ? 2 : 1)));
    return r;
}

/* Bytes of a training workspace for p; 0 where oneDNN cannot train it. */
static size_t workspace_bytes(ts_ctx *ctx, const rnn_params *p) {
    if (p->n < 1 || p->t < 1) return 0;
    dnnl_job job;
    if (dnnl_job_begin(&job, ctx, "RNN forward") != TS_OK) return 0;
    rnn_mds md;
    mds_init(&job, p, 1, &md);
    dnnl_primitive_desc_t fwd = forward_pd(&job, p, &md, 1);
    dnnl_primitive_desc_t bwd = backward_pd(&job, p, &md, fwd); /* trained only where both exist */
    const size_t bytes = bwd ? dir_bytes(p, fwd) * (size_t)p->dirs : 0;
    if (dnnl_job_end(&job) == TS_OK) return bytes;
    ts_ctx_clear_error(ctx); /* a size query: the reference runs instead, nothing failed */
    return 0;
}

/* ------------------------------------------------- the batch in slices, one per thread
 *
 * oneDNN's RNN primitives gain little from a second thread at the sizes text models
 * have (batch 64, 128 units: 13% for an LSTM's inference, and a GRU is slower on two
 * threads than on one; bench/RESULTS.md): every step is a small GEMM and a barrier. The
 * samples of a batch are independent, so with T threads the batch runs as T slices
 * side by side, each on one thread with its own primitive (dnnl_lanes), for layers up
 * to about 256 units (an LSTM's weights up to 2 MiB; measured in bench/RESULTS.md, 2
 * threads: 1.1-1.8x at 128 and 256 units, slower at 512). Slice l holds
 * samples [n l / T, n (l + 1) / T); the weight gradients are the slices' summed in
 * slice order, so a thread count gives the same bits on every run (another count
 * gives other rounding, as elsewhere). */
#define RNN_LANE_MIN 8 /* samples a slice has at least */
#define RNN_LANE_WEIGHTS ((int64_t)1 << 19) /* weights of a direction at most (2 MiB) */
#define RNN_WS_HEAD 64 /* a training workspace starts with how it was split (ws_head) */

typedef struct ws_head {
    int32_t lanes;  /* slices the forward pass ran (1: the batch whole) */
    uint64_t share; /* bytes of the workspace after the head each slice had */
} ws_head;

static int lanes_for(ts_ctx *ctx, const rnn_params *p) {
    /* wide layers: each slice would stream all the weights at every step, where
     * oneDNN's threads split them (an LSTM of 512 units trained 1.3x slower so) */
    if ((int64_t)rnn_gates(p->cell) * p->h * (p->f + p->h) > RNN_LANE_WEIGHTS) return 1;
    int k = ts_ctx_threads(ctx);
    if (k > DNNL_LANES) k = DNNL_LANES;
    if (k > p->n / RNN_LANE_MIN) k = p->n / RNN_LANE_MIN;
    return k < 1 ? 1 : k;
}

static int lane_first(const rnn_params *p, int k, int l) { return (int)((int64_t)p->n * l / k); }

/* Slice l of k as its own batch, from sample *n0 on */
static rnn_params lane_params(const rnn_params *p, int k, int l, int *n0) {
    rnn_params q = *p;
    *n0 = lane_first(p, k, l);
    q.n = lane_first(p, k, l + 1) - *n0;
    return q;
}

size_t rnn_dnnl_workspace_bytes(ts_ctx *ctx, const rnn_params *p) {
    size_t need = workspace_bytes(ctx, p);
    if (!need) return 0;
    if ((p->cell == RNN_LSTM && p->sequence == 2) || p->cell == RNN_RELU) {
        /* a padded batch runs by length: up to T batches, each with the fixed part of a
         * workspace (oneDNN's is tens of kB whatever the batch) */
        rnn_params one = *p;
        one.n = one.t = 1;
        need += (size_t)p->t * (workspace_bytes(ctx, &one) + 4096);
    }
    const int k = lanes_for(ctx, p);
    if (k > 1) { /* the largest slice's, k times */
        rnn_params q = *p;
        q.n = (p->n + k - 1) / k;
        const size_t lane = ALIGN64(workspace_bytes(ctx, &q));
        if (lane && lane * (size_t)k > need) need = lane * (size_t)k;
    }
    return RNN_WS_HEAD + need;
}

/* Direction d's outputs into y (the file's comment says how padding is handled). */
static void outputs(const rnn_params *p, const int32_t *len, int d, const float *dst, const float *cn, float *y) {
    const int T = p->t, H = p->h;
    const int64_t DH = (int64_t)p->dirs * H;
    const size_t hb = sizeof(float) * (size_t)H;
    for (int i = 0; i < p->n; i++) {
        const int L = len_of(len, i, T);
        if (p->sequence == 1) {
            for (int t = 0; t < T; t++) {
                float *yo = y + ((int64_t)i * T + t) * DH + (int64_t)d * H;
                if (t < L)
                    memcpy(yo, dst + ((int64_t)i * T + (d ? L - 1 - t : t)) * H, hb);
                else
                    memset(yo, 0, hb);
            }
            continue;
        }
        const float *last = dst + ((int64_t)i * T + L - 1) * H;
        memcpy(p->sequence == 2 ? y + state_at(p, i, d, 0) : y + (int64_t)i * DH + (int64_t)d * H, last, hb);
        if (p->sequence == 2 && p->cell == RNN_LSTM) memcpy(y + state_at(p, i, d, 1), cn + (int64_t)i * H, hb);
    }
}

/* One batch on oneDNN; *used: the workspace bytes it took. */
static ts_status forward_run(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                             const float *w, const float *b, float *y, void *ws, size_t ws_bytes, size_t *used) {
    for (int d = 0; d < p->dirs; d++) {
        dnnl_job job;
        if (dnnl_job_begin(&job, ctx, "RNN forward") != TS_OK) return job.status;
        rnn_mds md;
        mds_init(&job, p, ws != NULL, &md);
        dnnl_primitive_desc_t pd = forward_pd(&job, p, &md, ws != NULL);
        if (ws) backward_pd(&job, p, &md, pd); /* trained on oneDNN only where its backward exists */
        size_t per_dir = 0;
        if (job.status == TS_OK && ws) {
            per_dir = dir_bytes(p, pd);
            if (per_dir * (size_t)p->dirs > ws_bytes) { /* planned for the reference */
                dnnl_job_end(&job);
                return TS_EUNSUPPORTED;
            }
            *used = per_dir * (size_t)p->dirs;
        }
        const int lstm = p->cell == RNN_LSTM;
        dnnl_memory_t src = dnnl_job_layout(&job, source(&job, p, &md, d, x, len), &md.src_p, 1);
        dnnl_memory_t hi = dnnl_job_layout(&job, initial(&job, p, &md, d, 0, h0), &md.iter_p, 1);
        dnnl_memory_t ci = lstm ? initial(&job, p, &md, d, 1, h0) : NULL;
        dnnl_memory_t wl = NULL, wi = NULL, bias = NULL;
        weights(&job, p, &md, pd, d, w, b, &wl, &wi, &bias);
        dnnl_memory_t dst, hn, cn = NULL, prim = NULL;
        if (ws) {
            const dir_ws at = dir_ws_at(p, ws, per_dir, d);
            dst = dnnl_job_memory(&job, &md.dst_p, at.dst);
            hn = dnnl_job_memory(&job, &md.iter_p, at.hn);
            if (lstm) cn = dnnl_job_memory(&job, &md.iter, at.cn);
            prim = dnnl_job_memory(&job, arg_md(&job, pd, DNNL_ARG_WORKSPACE), at.prim);
        } else {
            dst = dnnl_job_memory_alloc(&job, &md.dst_p);
            hn = dnnl_job_memory_alloc(&job, &md.iter_p);
            if (lstm) cn = dnnl_job_memory_alloc(&job, &md.iter);
        }
        dnnl_exec_arg_t args[11] = {{DNNL_ARG_SRC_LAYER, src},    {DNNL_ARG_SRC_ITER, hi},
                                    {DNNL_ARG_WEIGHTS_LAYER, wl}, {DNNL_ARG_WEIGHTS_ITER, wi},
                                    {DNNL_ARG_BIAS, bias},        {DNNL_ARG_DST_LAYER, dst},
                                    {DNNL_ARG_DST_ITER, hn}};
        int na = 7;
        if (lstm) {
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC_ITER_C, ci};
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST_ITER_C, cn};
        }
        if (prim) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, prim};
        dnnl_job_execute(&job, pd, na, args);
        dnnl_memory_t dst32 = dnnl_job_layout(&job, dst, &md.dst, 1); /* bf16 outputs as f32 */
        job_wait(&job);
        const float *dd = data_of(&job, dst32), *cd = lstm ? data_of(&job, cn) : NULL;
        if (job.status == TS_OK) outputs(p, len, d, dd, cd, y);
        ts_status s = dnnl_job_end(&job);
        if (s != TS_OK) return s;
    }
    return TS_OK;
}

/* Direction d's gradients of its outputs, as its primitive's diff_dst (N,T,H) and, for
 * an lstm's final cell, diff_dst_iter_c (N,H); both zeroed before. */
static void output_grads(const rnn_params *p, const int32_t *len, int d, const float *dy, float *ddst, float *dcn) {
    const int T = p->t, H = p->h;
    const int64_t DH = (int64_t)p->dirs * H;
    const size_t hb = sizeof(float) * (size_t)H;
    for (int i = 0; i < p->n; i++) {
        const int L = len_of(len, i, T);
        if (p->sequence == 1) {
            for (int t = 0; t < L; t++)
                memcpy(ddst + ((int64_t)i * T + (d ? L - 1 - t : t)) * H, dy + ((int64_t)i * T + t) * DH + (int64_t)d * H,
                       hb);
            continue;
        }
        memcpy(ddst + ((int64_t)i * T + L - 1) * H,
               p->sequence == 2 ? dy + state_at(p, i, d, 0) : dy + (int64_t)i * DH + (int64_t)d * H, hb);
        if (p->sequence == 2 && p->cell == RNN_LSTM) memcpy(dcn + (int64_t)i * H, dy + state_at(p, i, d, 1), hb);
    }
}

/* Direction d's weight and bias gradients (pd's layouts) into ours. */
static void weight_grads(dnnl_job *job, const rnn_params *p, const rnn_mds *md, int d, dnnl_memory_t dwl,
                         dnnl_memory_t dwi, const float *dbias, float *dw, float *db) {
    dnnl_memory_t ul = dnnl_job_memory_alloc(job, &md->wl), ui = dnnl_job_memory_alloc(job, &md->wi);
    dnnl_job_reorder(job, dwl, ul);
    dnnl_job_reorder(job, dwi, ui);
    job_wait(job);
    const float *pl = data_of(job, ul), *pi = data_of(job, ui);
    if (!pl || !pi || !dbias) return;
    const int G = rnn_gates(p->cell), H = p->h, F = p->f, GH = G * H;
    const int64_t ldw = F + H;
    float *W = dw + (int64_t)d * GH * ldw, *bih = db + (int64_t)d * 2 * GH, *bhh = bih + GH;
    for (int k = 0; k < G; k++) {
        const int g = gate_of(p, k);
        for (int o = 0; o < H; o++) {
            float *row = W + ((int64_t)g * H + o) * ldw;
            memcpy(row, pl + ((int64_t)k * H + o) * F, sizeof(float) * (size_t)F);
            memcpy(row + F, pi + ((int64_t)k * H + o) * H, sizeof(float) * (size_t)H);
            bih[g * H + o] = bhh[g * H + o] = dbias[(int64_t)k * H + o];
        }
    }
    if (p->cell == RNN_GRU && p->lbr) memcpy(bhh + 2 * H, dbias + 3 * (int64_t)H, sizeof(float) * (size_t)H);
}

/* The backward of forward_run's batch; *used as there. */
static ts_status backward_run(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                              const float *w, const float *b, const float *dy, const void *ws, size_t ws_bytes,
                              float *dx, float *dh0, float *dw, float *db, size_t *used) {
    const int T = p->t, F = p->f, H = p->h, lstm = p->cell == RNN_LSTM;
    for (int d = 0; d < p->dirs; d++) {
        dnnl_job job;
        if (dnnl_job_begin(&job, ctx, "RNN backward") != TS_OK) return job.status;
        rnn_mds md;
        mds_init(&job, p, 1, &md);
        dnnl_primitive_desc_t fwd = forward_pd(&job, p, &md, 1);
        dnnl_primitive_desc_t pd = backward_pd(&job, p, &md, fwd);
        if (job.status == TS_OK && (!pd || !ws || dir_bytes(p, fwd) * (size_t)p->dirs > ws_bytes))
            dnnl_job_fail(&job, TS_EINVAL, "the forward pass's workspace does not fit this batch");
        const size_t per_dir = job.status == TS_OK ? dir_bytes(p, fwd) : 0;
        *used = per_dir * (size_t)p->dirs;
        const dir_ws at = job.status == TS_OK && ws ? dir_ws_at(p, (void *)ws, per_dir, d) : (dir_ws){0};
        dnnl_memory_t src = dnnl_job_layout(&job, source(&job, p, &md, d, x, len), &md.src_p, 1);
        dnnl_memory_t hi = dnnl_job_layout(&job, initial(&job, p, &md, d, 0, h0), &md.iter_p, 1);
        dnnl_memory_t ci = lstm ? initial(&job, p, &md, d, 1, h0) : NULL;
        dnnl_memory_t wl = NULL, wi = NULL, bias = NULL;
        weights(&job, p, &md, pd, d, w, b, &wl, &wi, &bias);
        dnnl_memory_t ddst = zeroed(&job, &md.dst), dhn = zeroed(&job, &md.iter);
        dnnl_memory_t dcn = lstm ? zeroed(&job, &md.iter) : NULL;
        float *pdd = data_of(&job, ddst), *pdc = lstm ? data_of(&job, dcn) : NULL;
        if (pdd) output_grads(p, len, d, dy, pdd, pdc);
        /* direction 0 writes dx itself; direction 1 adds its own, un-reversed, below */
        dnnl_memory_t dsrc = d == 0 && dx ? dnnl_job_memory(&job, &md.src, dx) : dnnl_job_memory_alloc(&job, &md.src);
        dnnl_memory_t dhi = dnnl_job_memory_alloc(&job, &md.iter);
        dnnl_memory_t dci = lstm ? dnnl_job_memory_alloc(&job, &md.iter) : NULL;
        dnnl_memory_t dwl = pd ? zeroed(&job, arg_md(&job, pd, DNNL_ARG_DIFF_WEIGHTS_LAYER)) : NULL;
        dnnl_memory_t dwi = pd ? zeroed(&job, arg_md(&job, pd, DNNL_ARG_DIFF_WEIGHTS_ITER)) : NULL;
        dnnl_memory_t dbias = zeroed(&job, &md.bias);
        dnnl_exec_arg_t args[24] = {
            {DNNL_ARG_SRC_LAYER, src},
            {DNNL_ARG_SRC_ITER, hi},
            {DNNL_ARG_WEIGHTS_LAYER, wl},
            {DNNL_ARG_WEIGHTS_ITER, wi},
            {DNNL_ARG_BIAS, bias},
            {DNNL_ARG_DST_LAYER, dnnl_job_memory(&job, &md.dst_p, at.dst)},
            {DNNL_ARG_DST_ITER, dnnl_job_memory(&job, &md.iter_p, at.hn)},
            {DNNL_ARG_WORKSPACE, pd ? dnnl_job_memory(&job, arg_md(&job, pd, DNNL_ARG_WORKSPACE), at.prim) : NULL},
            {DNNL_ARG_DIFF_DST_LAYER, ddst},
            {DNNL_ARG_DIFF_DST_ITER, dhn},
            {DNNL_ARG_DIFF_SRC_LAYER, dsrc},
            {DNNL_ARG_DIFF_SRC_ITER, dhi},
            {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl},
            {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},
            {DNNL_ARG_DIFF_BIAS, dbias},
        };
        int na = 15;
        if (lstm) {
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC_ITER_C, ci};
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST_ITER_C, dnnl_job_memory(&job, &md.iter, at.cn)};
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST_ITER_C, dcn};
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC_ITER_C, dci};
        }
        dnnl_job_execute(&job, pd, na, args);
        job_wait(&job);
        weight_grads(&job, p, &md, d, dwl, dwi, data_of(&job, dbias), dw, db);
        const float *ps = data_of(&job, dsrc), *ph = data_of(&job, dhi), *pc = lstm ? data_of(&job, dci) : NULL;
        if (job.status == TS_OK && d == 1 && dx) /* un-reversed; padding steps get nothing */
            for (int i = 0; i < p->n; i++) {
                const int L = len_of(len, i, T);
                for (int t = 0; t < L; t++) {
                    float *o = dx + ((int64_t)i * T + t) * F;
                    const float *g = ps + ((int64_t)i * T + (L - 1 - t)) * F;
                    for (int j = 0; j < F; j++) o[j] += g[j];
                }
            }
        for (int i = 0; job.status == TS_OK && dh0 && i < p->n; i++) {
            memcpy(dh0 + state_at(p, i, d, 0), ph + (int64_t)i * H, sizeof(float) * (size_t)H);
            if (lstm) memcpy(dh0 + state_at(p, i, d, 1), pc + (int64_t)i * H, sizeof(float) * (size_t)H);
        }
        ts_status s = dnnl_job_end(&job);
        if (s == TS_EUNSUPPORTED) /* the forward ran on oneDNN: its backward must too */
            return ts_fail(ctx, TS_EUNSUPPORTED, "oneDNN has no RNN backward for this layer, though it ran its forward");
        if (s != TS_OK) return s;
    }
    return TS_OK;
}

/* ------------------------------------------------- a padded batch, by length */

/* The samples of length L, in order, into idx; their count. */
static int of_length(const rnn_params *p, const int32_t *len, int L, int *idx) {
    int k = 0;
    for (int i = 0; i < p->n; i++)
        if (len[i] == L) idx[k++] = i;
    return k;
}

/* Buffers of one length's batch, allocated for the largest. */
typedef struct bucket_bufs {
    int *idx;
    float *x, *h0, *y, *dx, *dh0, *dw, *db;
} bucket_bufs;

static void bucket_free(bucket_bufs *u) {
    ts_free(u->idx);
    ts_free(u->x);
    ts_free(u->h0);
    ts_free(u->y);
    ts_free(u->dx);
    ts_free(u->dh0);
    ts_free(u->dw);
    ts_free(u->db);
}

/* Floats of one sample's output y (and dy): (T, D*H), (D*H) or a whole state. */
static size_t out_row(const rnn_params *p) {
    const size_t dh = (size_t)p->dirs * (size_t)p->h;
    return p->sequence == 1 ? (size_t)p->t * dh : p->sequence == 2 ? (size_t)rnn_state_size(p) : dh;
}

static ts_status bucket_alloc(ts_ctx *ctx, const rnn_params *p, int backward, bucket_bufs *u) {
    memset(u, 0, sizeof *u);
    const size_t ntf = (size_t)p->n * (size_t)p->t * (size_t)p->f * sizeof(float);
    const size_t ns = (size_t)p->n * (size_t)rnn_state_size(p) * sizeof(float);
    const size_t ny = (size_t)p->n * out_row(p) * sizeof(float);
    const size_t nw = (size_t)rnn_weight_count(p) * sizeof(float);
    const size_t nb = (size_t)p->dirs * 2 * (size_t)rnn_gates(p->cell) * (size_t)p->h * sizeof(float);
    int ok = (u->idx = ts_alloc(ctx, sizeof *u->idx * (size_t)p->n, "an RNN batch's sample order")) &&
             (u->x = ts_alloc(ctx, ntf, "an RNN batch of one length")) &&
             (u->h0 = ts_alloc(ctx, ns, "its initial states")) && (u->y = ts_alloc(ctx, ny, "its outputs"));
    if (ok && backward)
        ok = (u->dx = ts_alloc(ctx, ntf, "its input gradients")) &&
             (u->dh0 = ts_alloc(ctx, ns, "its state gradients")) &&
             (u->dw = ts_alloc(ctx, nw, "its weight gradients")) && (u->db = ts_alloc(ctx, nb, "its bias gradients"));
    if (ok) return TS_OK;
    bucket_free(u);
    return TS_ENOMEM;
}

/* Rows idx[0..k) of src (rows of `row` floats, the first `take` of each) into dst. */
static void gather(const int *idx, int k, size_t row, size_t take, const float *src, float *dst) {
    for (int j = 0; j < k; j++) memcpy(dst + (size_t)j * take, src + (size_t)idx[j] * row, take * sizeof(float));
}

static ts_status forward_by_length(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len,
                                   const float *h0, const float *w, const float *b, float *y, void *ws,
                                   size_t ws_bytes) {
    bucket_bufs u;
    ts_status s = bucket_alloc(ctx, p, 0, &u);
    const size_t S = (size_t)rnn_state_size(p), F = (size_t)p->f;
    size_t off = 0;
    for (int L = 1; !s && L <= p->t; L++) {
        const int k = of_length(p, len, L, u.idx);
        if (!k) continue;
        rnn_params q = *p;
        q.n = k;
        q.t = L;
        gather(u.idx, k, (size_t)p->t * F, (size_t)L * F, x, u.x);
        if (h0) gather(u.idx, k, S, S, h0, u.h0);
        size_t used = 0;
        s = forward_run(ctx, &q, u.x, NULL, h0 ? u.h0 : NULL, w, b, u.y, ws ? (char *)ws + off : NULL,
                        ws ? ws_bytes - off : 0, &used);
        off += used;
        const size_t row = out_row(p), part = out_row(&q); /* sequence=1: the first L steps */
        for (int j = 0; !s && j < k; j++) {
            memcpy(y + (size_t)u.idx[j] * row, u.y + (size_t)j * part, part * sizeof(float));
            memset(y + (size_t)u.idx[j] * row + part, 0, (row - part) * sizeof(float));
        }
    }
    bucket_free(&u);
    return s;
}

static ts_status backward_by_length(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len,
                                    const float *h0, const float *w, const float *b, const float *dy,
                                    const void *ws, size_t ws_bytes, float *dx, float *dh0, float *dw, float *db) {
    bucket_bufs u;
    ts_status s = bucket_alloc(ctx, p, 1, &u);
    const size_t S = (size_t)rnn_state_size(p), F = (size_t)p->f, T = (size_t)p->t;
    const size_t nw = (size_t)rnn_weight_count(p), nb = (size_t)p->dirs * 2 * (size_t)rnn_gates(p->cell) * (size_t)p->h;
    size_t off = 0;
    int first = 1;
    if (!s && dx) memset(dx, 0, (size_t)p->n * T * F * sizeof(float)); /* padding steps get nothing */
    for (int L = 1; !s && L <= p->t; L++) {
        const int k = of_length(p, len, L, u.idx);
        if (!k) continue;
        rnn_params q = *p;
        q.n = k;
        q.t = L;
        gather(u.idx, k, T * F, (size_t)L * F, x, u.x);
        if (h0) gather(u.idx, k, S, S, h0, u.h0);
        gather(u.idx, k, out_row(p), out_row(&q), dy, u.y);
        size_t used = 0;
        /* the first length's weight gradients straight into dw, db; the others summed in */
        s = backward_run(ctx, &q, u.x, NULL, h0 ? u.h0 : NULL, w, b, u.y, (const char *)ws + off, ws_bytes - off,
                         dx ? u.dx : NULL, dh0 ? u.dh0 : NULL, first ? dw : u.dw, first ? db : u.db, &used);
        off += used;
        if (s) break;
        if (!first) {
            for (size_t i = 0; i < nw; i++) dw[i] += u.dw[i];
            for (size_t i = 0; i < nb; i++) db[i] += u.db[i];
        }
        first = 0;
        for (int j = 0; j < k; j++) {
            if (dx) memcpy(dx + (size_t)u.idx[j] * T * F, u.dx + (size_t)j * L * F, (size_t)L * F * sizeof(float));
            if (dh0) memcpy(dh0 + (size_t)u.idx[j] * S, u.dh0 + (size_t)j * S, S * sizeof(float));
        }
    }
    bucket_free(&u);
    return s;
}

/* One batch (plan 1) in k slices, forward; ws: the workspace after its head, each
 * slice taking `share` bytes of it. */
static ts_status forward_lanes(ts_ctx *ctx, int k, const rnn_params *p, const float *x, const int32_t *len,
                               const float *h0, const float *w, const float *b, float *y, char *ws, size_t share) {
    ts_ctx *lane[DNNL_LANES];
    ts_status st[DNNL_LANES];
    ts_status s = dnnl_lanes(ctx, k, lane);
    if (s) return s;
    const size_t S = (size_t)rnn_state_size(p), row = out_row(p), tf = (size_t)p->t * (size_t)p->f;
#pragma omp parallel for num_threads(k) schedule(static, 1)
    for (int l = 0; l < k; l++) {
        int n0;
        const rnn_params q = lane_params(p, k, l, &n0);
        size_t used = 0;
        st[l] = forward_run(lane[l], &q, x + (size_t)n0 * tf, len ? len + n0 : NULL, h0 ? h0 + (size_t)n0 * S : NULL,
                            w, b, y + (size_t)n0 * row, ws ? ws + (size_t)l * share : NULL, ws ? share : 0, &used);
    }
    return dnnl_lanes_status(ctx, k, lane, st);
}

static ts_status backward_lanes(ts_ctx *ctx, int k, const rnn_params *p, const float *x, const int32_t *len,
                                const float *h0, const float *w, const float *b, const float *dy, const char *ws,
                                size_t share, float *dx, float *dh0, float *dw, float *db) {
    ts_ctx *lane[DNNL_LANES];
    ts_status st[DNNL_LANES];
    const size_t nw = (size_t)rnn_weight_count(p), nb = (size_t)p->dirs * 2 * (size_t)rnn_gates(p->cell) * (size_t)p->h;
    ts_status s = dnnl_lanes(ctx, k, lane);
    /* slice 0's weight gradients straight into dw, db; the others' here, summed after */
    float *part = s ? NULL : ts_alloc(ctx, sizeof(float) * (nw + nb) * (size_t)(k - 1), "RNN weight gradients per thread");
    if (!s && !part) s = TS_ENOMEM;
    if (s) return s;
    const size_t S = (size_t)rnn_state_size(p), row = out_row(p), tf = (size_t)p->t * (size_t)p->f;
#pragma omp parallel for num_threads(k) schedule(static, 1)
    for (int l = 0; l < k; l++) {
        int n0;
        const rnn_params q = lane_params(p, k, l, &n0);
        float *pw = l ? part + (size_t)(l - 1) * (nw + nb) : dw, *pb = l ? pw + nw : db;
        size_t used = 0;
        st[l] = backward_run(lane[l], &q, x + (size_t)n0 * tf, len ? len + n0 : NULL, h0 ? h0 + (size_t)n0 * S : NULL,
                             w, b, dy + (size_t)n0 * row, ws + (size_t)l * share, share,
                             dx ? dx + (size_t)n0 * tf : NULL, dh0 ? dh0 + (size_t)n0 * S : NULL, pw, pb, &used);
    }
    s = dnnl_lanes_status(ctx, k, lane, st);
    if (s == TS_EUNSUPPORTED) /* the forward ran on oneDNN: its backward must too */
        s = ts_fail(ctx, TS_EUNSUPPORTED, "oneDNN has no RNN backward for this layer, though it ran its forward");
    if (!s) {
        const int64_t nwb = (int64_t)(nw + nb);
#pragma omp parallel for num_threads(k) schedule(static)
        for (int64_t i = 0; i < nwb; i++) { /* slice order, whatever the thread */
            float *to = i < (int64_t)nw ? dw + i : db + (i - (int64_t)nw);
            for (int l = 1; l < k; l++) *to += part[(size_t)(l - 1) * (nw + nb) + (size_t)i];
        }
    }
    ts_free(part);
    return s;
}

ts_status rnn_forward_dnnl(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                           const float *w, const float *b, float *y, void *ws, size_t ws_bytes) {
    const int plan = p->n < 1 || p->t < 1 ? 0 : batch_plan(p, len, ws != NULL);
    if (plan == 0) return TS_EUNSUPPORTED;
    char *body = NULL;
    size_t body_bytes = 0;
    if (ws) {
        if (ws_bytes < RNN_WS_HEAD) return TS_EUNSUPPORTED; /* planned for the reference */
        body = (char *)ws + RNN_WS_HEAD;
        body_bytes = ws_bytes - RNN_WS_HEAD;
    }
    int k = plan == 1 ? lanes_for(ctx, p) : 1;
    const size_t share = k > 1 ? (body_bytes / (size_t)k) & ~(size_t)63 : body_bytes;
    ts_status s = TS_EUNSUPPORTED;
    if (k > 1) {
        s = forward_lanes(ctx, k, p, x, len, h0, w, b, y, body, share);
        /* a slice's workspace too small (the thread count grew since it was planned):
         * the batch whole, as planned */
        if (s == TS_EUNSUPPORTED && ws) k = 1;
    }
    if (k == 1) {
        size_t used = 0;
        s = plan == 2 ? forward_by_length(ctx, p, x, len, h0, w, b, y, body, body_bytes)
                      : forward_run(ctx, p, x, len, h0, w, b, y, body, body_bytes, &used);
    }
    if (!s && ws) {
        ws_head head = {k, k > 1 ? share : body_bytes};
        memcpy(ws, &head, sizeof head);
    }
    return s;
}

ts_status rnn_backward_dnnl(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                            const float *w, const float *b, const float *dy, const void *ws, size_t ws_bytes,
                            float *dx, float *dh0, float *dw, float *db) {
    ws_head head;
    if (!ws || ws_bytes < RNN_WS_HEAD)
        return ts_fail(ctx, TS_EINVAL, "rnn: the forward pass's workspace does not fit this batch");
    memcpy(&head, ws, sizeof head);
    const char *body = (const char *)ws + RNN_WS_HEAD;
    const size_t body_bytes = ws_bytes - RNN_WS_HEAD;
    if (head.lanes < 1 || head.lanes > DNNL_LANES || head.lanes > p->n || head.share > body_bytes / (uint64_t)head.lanes)
        return ts_fail(ctx, TS_EINVAL, "rnn: the forward pass's workspace is not this batch's");
    if (head.lanes > 1)
        return backward_lanes(ctx, head.lanes, p, x, len, h0, w, b, dy, body, (size_t)head.share, dx, dh0, dw, db);
    if (batch_plan(p, len, 1) == 2)
        return backward_by_length(ctx, p, x, len, h0, w, b, dy, body, body_bytes, dx, dh0, dw, db);
    size_t used = 0;
    return backward_run(ctx, p, x, len, h0, w, b, dy, body, body_bytes, dx, dh0, dw, db, &used);
}
