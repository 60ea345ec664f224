/* Compressed activations in training (COMET; docs/compressed-activations.md).
 *
 * Memory: in a compressed plan the layer outputs that may share memory live in one
 * arena. Output t is live over a layer interval: forward from t to its last consumer,
 * backward over the steps that read it, which all lie in [b, last consumer] where b
 * is t itself or, for a ReLU fused with its batch norm, that batch norm. Outputs whose
 * intervals do not overlap share memory (greedy, largest first, as the gradients).
 * Between forward and backward an output the backward reads is held compressed
 * (compress_ref.c); it is restored into its own place in the arena before the first
 * backward step that reads it, when nothing else live uses that place.
 *
 * What each backward step reads decides what is kept: a kind listed in
 * backward_reads reads only what it says; any other kind is taken to read all its
 * inputs and its output. */
#include "layers.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct act_tensor {
    int lo, hi;          /* the plan's live interval (layer indices) */
    size_t bytes, offset;/* place in the arena (capacity samples) */
    /* the last training forward pass */
    int kept;            /* a backward step reads it */
    int last_use;        /* the last forward step that reads it */
    int restore_at;      /* the first backward step that reads it */
    int packed;          /* held compressed now */
    float eb;            /* absolute bound used */
    float range;         /* max - min of its finite values */
    double nonzero;      /* share of its values that are not zero */
    float eb_next;       /* adaptive: the relative bound its readers' gradients asked for (< 0: none) */
    uint8_t *store;      /* (n) chunks, one per sample, back to back */
    size_t store_cap, store_used;
    size_t *offsets;     /* (capacity + 1) chunk starts in store */
} act_tensor;

struct act_plan {
    int nlayers;
    void *arena;
    size_t arena_bytes;
    act_tensor *t;       /* (nlayers); only shareable layers are used */
    void *work;          /* codec scratch per thread: a chunk and 2 words per value */
    size_t work_bytes;
    int passes;          /* training forward passes since the plan was made */
};

int act_shareable(const ts_model *m, int li) {
    if (li < 1 || li >= m->nlayers - 1 || li == m->exit_layer) return 0; /* outputs the caller reads */
    const layer *l = &m->layers[li];
    if (l->kind == LAYER_RESHAPE || l->kind == LAYER_FLATTEN) return 0;     /* an alias of its input */
    for (int c = li + 1; c < m->nlayers; c++) {
        const layer *u = &m->layers[c];
        if ((u->kind == LAYER_RESHAPE || u->kind == LAYER_FLATTEN) && u->inputs[0] == li) return 0; /* aliased */
    }
    return 1;
}

/* Which of its own tensors layer l's backward reads: 1 its inputs, 2 its output. */
static int backward_reads(const layer *l) {
    switch (l->kind) {
    case LAYER_CONV2D: case LAYER_DENSE: case LAYER_BATCHNORM:
        return 1; /* dW and batch norm's x-hat from the input */
    case LAYER_RELU:
        return 2; /* the mask from its output (activation_backward) */
    case LAYER_ADD: case LAYER_MAXPOOL: case LAYER_AVGPOOL: case LAYER_GLOBALAVGPOOL:
        return 0; /* max pooling: its workspace */
    default:
        return 3;
    }
}

static int uses_input(const layer *l, int t) {
    for (int k = 0; k < l->ninputs; k++)
        if (l->inputs[k] == t) return 1;
    return 0;
}

static size_t out_bytes(const ts_model *m, int li, int n) {
    return (size_t)n * (size_t)shape_numel(&m->layers[li].out) * sizeof(float);
}

/* The buffer: room for padded channels where a pass may block it, as exec.c's training
 * plans (exec_blocked.c) */
static size_t buf_bytes(const ts_model *m, int li, int n) {
    const ts_shape *s = &m->layers[li].out;
    return (size_t)n * (size_t)(layer_may_block(m, li) ? blk_numel(s) : shape_numel(s)) * sizeof(float);
}

/* order (n) by size, largest first, then by layer (insertion: a few hundred at most) */
static void sort_by_size(int *order, int n, const act_tensor *t) {
    for (int i = 1; i < n; i++) {
        const int x = order[i];
        int j = i;
        while (j > 0 && (t[order[j - 1]].bytes < t[x].bytes || (t[order[j - 1]].bytes == t[x].bytes && order[j - 1] > x))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

void act_plan_free(struct act_plan *p) {
    if (!p) return;
    for (int i = 0; p->t && i < p->nlayers; i++) {
        free(p->t[i].store);
        free(p->t[i].offsets);
    }
    free(p->t);
    ts_free(p->arena);
    ts_free(p->work);
    free(p);
}

/* Live intervals, covering both ways a batch norm and its ReLU may run. */
static void plan_intervals(const ts_model *m, act_tensor *t) {
    const exec_state *e = &m->exec;
    for (int li = 1; li < m->nlayers; li++) {
        t[li].lo = t[li].hi = li;
        for (int c = li + 1; c < m->nlayers; c++)
            if (uses_input(&m->layers[c], li)) t[li].hi = c;
    }
    for (int b = 1; b < m->nlayers; b++)
        if (e->bn_relu[b] && t[e->bn_relu[b]].lo > b) t[e->bn_relu[b]].lo = b; /* the fused backward reads the ReLU's output */
}

/* Places the shareable outputs in one arena and points ls[].out at their places
 * (exec_plan, after plan_fusion, for a training plan of `cap` samples). */
ts_status act_plan_make(ts_ctx *ctx, ts_model *m, int cap) {
    exec_state *e = &m->exec;
    struct act_plan *p = calloc(1, sizeof *p);
    if (!p) return ts_fail(ctx, TS_ENOMEM, "out of memory planning compressed activations");
    e->act = p;
    p->nlayers = m->nlayers;
    p->t = calloc((size_t)m->nlayers, sizeof *p->t);
    int *order = calloc((size_t)m->nlayers, sizeof *order);
    if (!p->t || !order) {
        free(order);
        return ts_fail(ctx, TS_ENOMEM, "out of memory planning compressed activations");
    }
    plan_intervals(m, p->t);
    for (int li = 0; li < m->nlayers; li++) p->t[li].eb_next = -1.0f; /* nothing measured yet */
    int n = 0;
    for (int li = 1; li < m->nlayers; li++) {
        if (!act_shareable(m, li)) continue;
        p->t[li].bytes = (buf_bytes(m, li, cap) + 63) & ~(size_t)63;
        p->t[li].offsets = calloc((size_t)cap + 1, sizeof *p->t[li].offsets);
        if (!p->t[li].offsets) {
            free(order);
            return ts_fail(ctx, TS_ENOMEM, "out of memory planning compressed activations");
        }
        order[n++] = li;
    }
    sort_by_size(order, n, p->t);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        act_tensor *a = &p->t[order[i]];
        size_t off = 0; /* lowest offset clear of every placed output whose interval overlaps */
        for (int again = 1; again;) {
            again = 0;
            for (int j = 0; j < i; j++) {
                const act_tensor *b = &p->t[order[j]];
                if (b->lo <= a->hi && a->lo <= b->hi && off < b->offset + b->bytes && b->offset < off + a->bytes) {
                    off = b->offset + b->bytes;
                    again = 1;
                }
            }
        }
        a->offset = off;
        if (off + a->bytes > total) total = off + a->bytes;
    }
    if (total && !(p->arena = ts_alloc(ctx, total, "activation arena"))) {
        free(order);
        return TS_ENOMEM;
    }
    p->arena_bytes = total;
    for (int i = 0; i < n; i++) {
        e->ls[order[i]].out = (float *)((char *)p->arena + p->t[order[i]].offset);
        e->ls[order[i]].in_arena = 1;
    }
    free(order);
    return TS_OK;
}

/* For this pass (bn_relu_on set): which outputs backward reads, and when. */
void act_forward_begin(ts_model *m) {
    exec_state *e = &m->exec;
    struct act_plan *p = e->act;
    p->passes++;
    for (int t = 1; t < m->nlayers; t++) {
        act_tensor *a = &p->t[t];
        if (t < m->act_rel_n && a->eb_next >= 0.0f) m->act_rel[t] = a->eb_next; /* adaptive: from the last measurement */
        a->eb_next = -1.0f;
        a->kept = a->packed = 0;
        a->store_used = 0;
        a->eb = 0.0f;
        a->last_use = a->restore_at = t;
        if (!act_shareable(m, t)) continue;
        const layer *l = &m->layers[t];
        if (e->bn_relu_on[t] == 2) a->restore_at = l->inputs[0], a->kept = 1; /* read by its batch norm's backward */
        else if (e->bn_relu_on[t] != 1 && (backward_reads(l) & 2)) a->kept = 1;
        for (int c = t + 1; c < m->nlayers; c++) {
            const layer *u = &m->layers[c];
            if (!uses_input(u, t)) continue;
            a->last_use = c;
            const int reads = e->bn_relu_on[c] == 1 || (e->bn_relu_on[c] == 0 && (backward_reads(u) & 1));
            if (reads) {
                a->kept = 1;
                a->restore_at = c;
            }
        }
    }
}

static ts_status ensure_work(ts_ctx *ctx, struct act_plan *p, size_t bytes) {
    if (p->work_bytes >= bytes) return TS_OK;
    ts_free(p->work);
    p->work_bytes = 0;
    if (!(p->work = ts_alloc(ctx, bytes, "activation compression scratch"))) return TS_ENOMEM;
    p->work_bytes = bytes;
    return TS_OK;
}

/* The range (max - min) of the finite values of x (count) and the share of them
 * that are not zero. */
/* Over count values; with c > 0 they are nChw16c with c channels padded to 16 and sp
 * positions, and the padding is left out. */
static float value_range(const float *x, size_t count, size_t c, size_t sp, int nt, double *nonzero) {
    const size_t cb = c ? (c + 15) / 16 : 1, last = c ? c - 16 * (cb - 1) : 16; /* lanes used in the last block */
    float lo = INFINITY, hi = -INFINITY;
    size_t nz = 0, real = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(min : lo) reduction(max : hi) reduction(+ : nz, real)
    for (size_t i = 0; i < count; i++) {
        if (c && i % 16 >= last && i / (16 * sp) % cb == cb - 1) continue;
        real++;
        nz += x[i] != 0.0f;
        if (isfinite(x[i])) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
    }
    *nonzero = real ? (double)nz / (double)real : 0.0;
    return hi >= lo ? hi - lo : 0.0f;
}

static size_t chunk_stride(size_t per) { return (act_codec_bound(per) + 63) & ~(size_t)63; }

/* Output t of this pass into its store: per sample, groups of `threads` samples
 * encoded in parallel and appended in order (the bytes do not depend on the thread
 * count). */
static ts_status compress_one(ts_ctx *ctx, ts_model *m, int t) {
    exec_state *e = &m->exec;
    struct act_plan *p = e->act;
    act_tensor *a = &p->t[t];
    const ts_shape *s = &m->layers[t].out;
    const size_t per = (size_t)shape_numel(s), row = s->ndim ? (size_t)s->dims[s->ndim - 1] : 1;
    const float *x = e->ls[t].out;
    const int nt = ts_ctx_threads(ctx);
    const size_t stride = chunk_stride(per), words = 2 * per;
    /* a blocked output (exec_blocked.c) goes through an NCHW copy of each sample: the
     * codec predicts along W rows, and so holds the same bytes as an NCHW pass's. Its
     * samples are perb apart (the channels padded to 16). */
    const int blk = layer_blk(m, t);
    const size_t c = blk ? (size_t)s->dims[0] : 0, sp = blk ? per / c : 0, perb = blk ? (size_t)blk_numel(s) : per;
    ts_status st = ensure_work(ctx, p, (size_t)nt * (stride + words * sizeof(uint32_t) + (blk ? per * sizeof(float) : 0)));
    if (st) return st;
    /* the range and the nonzero share of the real channels alone */
    a->range = value_range(x, (size_t)e->n * perb, perb != per ? c : 0, sp, nt, &a->nonzero);
    const float rel = m->act_compress == ACT_ADAPTIVE && t < m->act_rel_n ? m->act_rel[t] : m->act_eb;
    const float eb = rel * a->range;
    a->eb = isfinite(eb) && eb > 0.0f ? eb : 0.0f;
    uint8_t *chunks = p->work;
    uint32_t *scratch = (uint32_t *)(chunks + (size_t)nt * stride);
    float *plain = (float *)(scratch + (size_t)nt * words);
    size_t sizes[64];
    const int group = nt < 64 ? nt : 64;
    a->store_used = 0;
    for (int s0 = 0; s0 < e->n; s0 += group) {
        const int cnt = e->n - s0 < group ? e->n - s0 : group;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int i = 0; i < cnt; i++) {
            const float *v = x + (size_t)(s0 + i) * perb;
            if (blk) {
                blocked16_to_nchw(1, (int64_t)c, (int64_t)sp, plain + (size_t)i * per, v, 1);
                v = plain + (size_t)i * per;
            }
            sizes[i] = act_codec_encode(chunks + (size_t)i * stride, v, per, row, a->eb, scratch + (size_t)i * words);
        }
        for (int i = 0; i < cnt; i++) {
            const size_t need = a->store_used + sizes[i];
            if (need > a->store_cap) { /* grows in the first passes, then stays */
                const size_t cap = need + need / 4;
                uint8_t *grown = realloc(a->store, cap);
                if (!grown) return ts_fail(ctx, TS_ENOMEM, "layer %s: out of memory for its compressed activations",
                                           m->layers[t].name);
                a->store = grown;
                a->store_cap = cap;
            }
            a->offsets[s0 + i] = a->store_used;
            memcpy(a->store + a->store_used, chunks + (size_t)i * stride, sizes[i]);
            a->store_used = need;
        }
    }
    a->offsets[e->n] = a->store_used;
    a->packed = 1;
    if (a->store_cap > 2 * a->store_used + 65536) { /* the first passes of a fresh net compress worse: give back */
        const size_t cap = a->store_used + a->store_used / 4;
        uint8_t *less = realloc(a->store, cap ? cap : 1);
        if (less) {
            a->store = less;
            a->store_cap = cap;
        }
    }
    return TS_OK;
}

ts_status act_forward_until(ts_ctx *ctx, ts_model *m, int li) {
    struct act_plan *p = m->exec.act;
    for (int t = 1; t < m->nlayers && t < li; t++) {
        act_tensor *a = &p->t[t];
        if (a->kept && !a->packed && a->last_use < li) {
            ts_status st = compress_one(ctx, m, t);
            if (st) return st;
        }
    }
    return TS_OK;
}

ts_status act_backward_at(ts_ctx *ctx, ts_model *m, int li) {
    exec_state *e = &m->exec;
    struct act_plan *p = e->act;
    for (int t = 1; t < m->nlayers; t++) { /* t > li, or below it: a ReLU read by its batch norm */
        act_tensor *a = &p->t[t];
        if (!a->packed || a->restore_at != li) continue;
        const ts_shape *s = &m->layers[t].out;
        const size_t per = (size_t)shape_numel(s), row = s->ndim ? (size_t)s->dims[s->ndim - 1] : 1;
        float *x = e->ls[t].out;
        const int nt = ts_ctx_threads(ctx), blk = layer_blk(m, t);
        const size_t c = blk ? (size_t)s->dims[0] : 0, sp = blk ? per / c : 0, perb = blk ? (size_t)blk_numel(s) : per;
        ts_status st = ensure_work(ctx, p, (size_t)nt * per * (sizeof(uint32_t) + (blk ? sizeof(float) : 0)));
        if (st) return st;
        uint32_t *scratch = p->work;
        float *plain = (float *)(scratch + (size_t)nt * per);
        int bad = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
        for (int i = 0; i < e->n; i++) {
            const size_t th = (size_t)omp_get_thread_num();
            float *v = blk ? plain + th * per : x + (size_t)i * per;
            bad |= !act_codec_decode(v, a->store + a->offsets[i], a->offsets[i + 1] - a->offsets[i], per, row, a->eb,
                                     scratch + th * per);
            if (blk) nchw_to_blocked16(1, (int64_t)c, (int64_t)sp, x + (size_t)i * perb, v, 1);
        }
        if (bad) return ts_fail(ctx, TS_EFORMAT, "layer %s: its compressed activations do not decode",
                                m->layers[t].name);
    }
    return TS_OK;
}

/* ------------------------------------------------- adaptive error bound */

/* COMET's analysis: a weight gradient sums S products dy * x over the batch and the
 * positions (S = N x OH x OW for a convolution, N for a dense layer); an error e in x,
 * uniform in [-eb, eb] and zero where x is a (kept) zero, adds sum dy * e, about normal
 * with standard deviation eb / sqrt(3) * mean|dy| * sqrt(S * nonzero). A batch norm's
 * dgamma = sum dy * x-hat sees e / sigma_B instead. Each layer's bound is set so that
 * this stays at ACT_NOISE of the gradient's own mean magnitude, measured every
 * ACT_EVERY passes on the reader's backward, and at most ACT_EB_MAX of the range. */
#define ACT_NOISE 0.1
#define ACT_EVERY 8

/* The mean of |x| over `real` values stored as `count` (more when nChw16c pads the
 * channels with zeros) */
static double mean_abs(const float *x, size_t count, size_t real) {
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += fabs((double)x[i]); /* one thread, fixed order */
    return real ? s / (double)real : 0.0;
}

void act_backward_done(ts_model *m, int li) {
    exec_state *e = &m->exec;
    struct act_plan *p = e->act;
    const layer *l = &m->layers[li];
    if (m->act_compress != ACT_ADAPTIVE || (p->passes - 1) % ACT_EVERY || l->ninputs < 1 || l->weight < 0) return;
    if (l->kind != LAYER_CONV2D && l->kind != LAYER_DENSE && l->kind != LAYER_BATCHNORM) return;
    const int t = l->inputs[0];
    act_tensor *a = t > 0 ? &p->t[t] : NULL;
    if (!a || !e->ls[t].in_arena || !a->packed || !(a->range > 0.0f) || !(a->nonzero > 0.0)) return;
    const int dy_layer = e->bn_relu_on[li] == 1 ? e->bn_relu[li] : li; /* fused: the ReLU's gradient */
    const ts_shape *out = &m->layers[li].out;
    const size_t count = (size_t)e->n * (size_t)shape_numel(out);
    const double positions = (double)count / (double)(out->ndim ? out->dims[0] : 1); /* S */
    const double dy = mean_abs(e->ls[dy_layer].grad, layer_count(m, dy_layer), count);
    const size_t nw = (size_t)m->tensors[l->weight].numel;
    const double g = mean_abs(tensor_grad(m, l->weight), nw, nw);
    /* A batch norm divides each channel's error by that channel's sigma_B, while the
     * bound is one for the whole tensor: the channel with the smallest sigma_B decides.
     * (With the mean of 1 / sigma_B, `auto` diverged on CIFAR-10's ResNet-20 at step 46.) */
    double scale = 1.0;
    if (l->kind == LAYER_BATCHNORM) {
        const int c = (int)out->dims[0];
        const float *var = (const float *)e->ls[li].aux + c;
        scale = 0.0;
        for (int k = 0; k < c; k++) {
            const double inv = 1.0 / sqrt((double)var[k] + (double)l->eps);
            scale = inv > scale ? inv : scale;
        }
    }
    if (!(dy > 0.0) || !(g > 0.0) || !(scale > 0.0)) return;
    const double eb = ACT_NOISE * g * sqrt(3.0) / (dy * sqrt(positions * a->nonzero) * scale);
    double rel = eb / (double)a->range;
    if (!(rel <= ACT_EB_MAX)) rel = ACT_EB_MAX;
    if (a->eb_next < 0.0f || (float)rel < a->eb_next) a->eb_next = (float)rel; /* the strictest reader */
}

/* ------------------------------------------------------------- reporting */

/* Without compression: does a backward step of the last pass read output t? */
static int read_by_backward(const ts_model *m, int t) {
    const exec_state *e = &m->exec;
    const unsigned char *on = e->bn_relu_on;
    const int own = on && on[t] ? on[t] == 2 : (backward_reads(&m->layers[t]) & 2) != 0;
    if (own) return 1;
    for (int c = t + 1; c < m->nlayers; c++) {
        const layer *u = &m->layers[c];
        if (!uses_input(u, t)) continue;
        if (on && on[c]) {
            if (on[c] == 1) return 1;
        } else if (backward_reads(u) & 1) {
            return 1;
        }
        /* a reshape passes its input on: its readers read t */
        if ((u->kind == LAYER_RESHAPE || u->kind == LAYER_FLATTEN) && read_by_backward(m, c)) return 1;
    }
    return 0;
}

ts_status ts_model_activation_layer(const ts_model *m, int li, ts_activation_layer *out) {
    if (!m || !out || li < 0 || li >= m->nlayers) return TS_EINVAL;
    memset(out, 0, sizeof *out);
    const exec_state *e = &m->exec;
    if (!e->ls || !e->train || li == 0 || e->ls[li].alias) return TS_OK;
    out->plain_bytes = out_bytes(m, li, e->n);
    const act_tensor *a = e->act ? &e->act->t[li] : NULL;
    if (a && e->ls[li].in_arena) {
        out->kept = a->kept;
        out->compressed = a->packed;
        out->bytes = a->packed ? a->store_used : 0;
        out->eb = a->eb;
    } else {
        out->kept = read_by_backward(m, li);
        out->bytes = out->kept ? out->plain_bytes : 0;
    }
    return TS_OK;
}

ts_status ts_model_activation_memory(const ts_model *m, ts_activation_memory *out) {
    if (!m || !out) return TS_EINVAL;
    memset(out, 0, sizeof *out);
    const exec_state *e = &m->exec;
    if (!e->ls || !e->train) return TS_OK;
    out->compressed = e->act != NULL;
    for (int li = 1; li < m->nlayers; li++) {
        if (e->ls[li].alias) continue;
        const size_t planned = buf_bytes(m, li, e->capacity); /* what the plan holds, padding included */
        out->plain_bytes += planned;
        if (!e->ls[li].in_arena) out->buffer_bytes += planned;
        ts_activation_layer info;
        ts_model_activation_layer(m, li, &info);
        if (!info.kept) continue;
        out->kept_plain_bytes += info.plain_bytes;
        out->kept_bytes += info.bytes;
        if (e->act && e->ls[li].in_arena) out->held_bytes += e->act->t[li].store_cap;
    }
    if (e->act) out->buffer_bytes += e->act->arena_bytes;
    return TS_OK;
}

ts_status ts_model_set_activation_compression(ts_ctx *ctx, ts_model *m, float eb, int adaptive) {
    if (!ctx || !m) return ts_fail(ctx, TS_EINVAL, "ts_model_set_activation_compression: NULL argument");
    if (isnan(eb) || eb >= 1.0f || (adaptive && !(eb > 0.0f && eb <= ACT_EB_MAX)))
        return ts_fail(ctx, TS_EINVAL, "activation compression: error bound %g must be %s (a fraction of each "
                       "tensor's range)", (double)eb,
                       adaptive ? "in (0, 0.1] when adaptive" : "below 1 (0: lossless; negative: off)");
    free(m->act_rel);
    m->act_rel = NULL;
    m->act_rel_n = 0;
    if (adaptive && !(m->act_rel = malloc((size_t)m->nlayers * sizeof *m->act_rel)))
        return ts_fail(ctx, TS_ENOMEM, "out of memory for per-layer error bounds");
    for (int li = 0; adaptive && li < m->nlayers; li++) m->act_rel[li] = eb; /* where each layer starts */
    if (adaptive) m->act_rel_n = m->nlayers; /* layers added later start at act_eb */
    m->act_compress = eb < 0.0f ? ACT_OFF : adaptive ? ACT_ADAPTIVE : ACT_FIXED;
    m->act_eb = eb >= 0.0f ? eb : 0.0f;
    exec_release(&m->exec); /* an adaptive plan starts afresh */
    return TS_OK;
}
