/* Removing hidden units from a recurrent classifier or tagger (embedding ->
 * rnn/lstm/gru layers -> dense), for its per-label modules (decompose_text.c,
 * decompose_tagger.c).
 *
 * Removing unit j of direction d zeroes its row in every gate block of the layer's
 * weight (the W_ih and W_hh parts) and its biases, its column in the layer's own
 * W_hh, and its column in what reads the layer (the next recurrent layer's W_ih, in
 * both of its directions, or the dense head). From the zero initial state such a
 * unit's state stays exactly 0: rnn h = act(0) = 0 (tanh and relu); lstm i = f = o =
 * 1/2, g = tanh(0) = 0, so c = f 0 + i 0 = 0 and h = o tanh(0) = 0; gru n = tanh(0 +
 * r 0) = 0 (either linear_before_reset) and h = (1 - z) 0 + z 0 = 0. So cutting the
 * unit out of the layer (smaller H) and out of the next layer's inputs computes
 * the same outputs, with fewer parameters and multiply-accumulates.
 *
 * Unrolled modules (a tagger's by default) remove units per step instead: what remains after the
 * units removed at every step are cut out is a per-step mask on the layer
 * (step_mask=1, T x D x H; ops/rnn_ref.c says what it computes). A unit removed at
 * every step is one the rolled rule removes: zero pre-activations at every step from
 * a zero state keep it at 0, and nothing reads it, so cutting it out is exact. */
#include "modular.h"

#include <stdlib.h>
#include <string.h>

static int is_recurrent(layer_kind k) { return k == LAYER_RNN || k == LAYER_LSTM || k == LAYER_GRU; }
static int gates_of(layer_kind k) { return k == LAYER_LSTM ? 4 : k == LAYER_GRU ? 3 : 1; }

int rnn_chain_index(const rnn_chain *ch, int li) {
    for (int k = 0; k < ch->n; k++)
        if (ch->layer[k] == li) return k;
    return -1;
}

ts_status rnn_chain_find(ts_ctx *ctx, const ts_model *m, rnn_chain *ch, const char *what) {
    memset(ch, 0, sizeof *ch);
    int nrec = 0;
    for (int li = 1; li < m->nlayers; li++) nrec += is_recurrent(m->layers[li].kind);
    if (!nrec)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: the model has no rnn, lstm or gru layer (image classifiers: ts_decompose)", what);
    const int head = module_logits_layer(m), last = m->nlayers - 1;
    if (m->input.ndim != 1)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: the model does not take (T) token ids", what);
    const ts_shape *ho = &m->layers[head].out;
    ch->tagger = ho->ndim == 2;
    if (ho->ndim > 2 || (ch->tagger && ho->dims[0] != m->input.dims[0]))
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: the model outputs neither a score per label (a classifier) nor one per label at each of "
                       "its %lld steps (a tagger)",
                       what, (long long)m->input.dims[0]);
    int prev = 0, emb = -1;
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        const char *kind = LAYER_OPS[l->kind].name;
        if (li == last && li != head) /* the final softmax over the head */
            break;
        if (l->inputs[0] != prev)
            return ts_fail(ctx, TS_EUNSUPPORTED,
                           "%s: layer '%s' does not read '%s': only a chain embedding -> rnn/lstm/gru layers -> dense "
                           "is decomposed",
                           what, l->name, m->layers[prev].name);
        if (l->kind == LAYER_EMBEDDING && emb < 0 && prev == 0) {
            emb = li;
        } else if (l->kind == LAYER_DROPOUT && l->ninputs == 1) {
        } else if (is_recurrent(l->kind) && emb >= 0) {
            if (l->ninputs == 2 && l->inputs[1] != 0)
                return ts_fail(ctx, TS_EUNSUPPORTED, "%s: %s '%s' reads ids from '%s', not the model's input", what,
                               kind, l->name, m->layers[l->inputs[1]].name);
            if (ch->n == RNN_CHAIN_MAX)
                return ts_fail(ctx, TS_EUNSUPPORTED, "%s: more than %d recurrent layers", what, RNN_CHAIN_MAX);
            ch->layer[ch->n] = li;
            ch->dirs[ch->n] = l->bidirectional ? 2 : 1;
            ch->hidden[ch->n] = l->features;
            ch->ids[ch->n++] = l->ninputs == 2;
        } else if (l->kind == LAYER_DENSE && li == head && ch->n > 0) {
            ch->head = li;
        } else {
            return ts_fail(ctx, TS_EUNSUPPORTED,
                           "%s: layer '%s' (%s) is not part of a chain embedding -> rnn/lstm/gru layers -> dense", what,
                           l->name, kind);
        }
        prev = li;
    }
    if (!ch->head)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: the model does not end in a dense layer over its last %s layer",
                       what, LAYER_OPS[m->layers[ch->layer[ch->n - 1]].kind].name);
    for (int k = 0; k < ch->n; k++) {
        const layer *l = &m->layers[ch->layer[k]];
        const int every = k < ch->n - 1 || ch->tagger;
        if (l->sequence != every)
            return ts_fail(ctx, TS_EUNSUPPORTED, "%s: %s '%s' must output %s (sequence=%d)%s", what,
                           LAYER_OPS[l->kind].name, l->name, every ? "every step" : "its final states", every,
                           ch->tagger ? " in a tagger" : "");
        if (l->step_mask)
            return ts_fail(ctx, TS_EUNSUPPORTED, "%s: %s '%s' has a per-step unit mask: the model is a module already",
                           what, LAYER_OPS[l->kind].name, l->name);
    }
    return TS_OK;
}

int rnn_chain_labels(const ts_model *m, const rnn_chain *ch) {
    const ts_shape *o = &m->layers[ch->head].out;
    return (int)o->dims[o->ndim - 1];
}

/* m's layers 1..upto again, chain layer k with hidden[k] units (NULL: as in m), every
 * recurrent layer outputting every step when `every_step`, with a step mask when
 * `step_mask`. Same layer indices as m. */
static ts_status rebuild(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const int *hidden, int upto,
                         int every_step, int step_mask, ts_model **out) {
    *out = NULL;
    nn_builder *b = NULL;
    const int classes = upto == m->nlayers - 1 ? m->classes : 0;
    ts_status st = nn_builder_create(ctx, "module", 0, &m->input, classes, m->layers[0].name, &b);
    for (int li = 1; li <= upto && !st; li++) {
        const layer *l = &m->layers[li];
        layer_attrs a = l->attrs;
        const int k = rnn_chain_index(ch, li);
        if (k >= 0 && hidden) a.features = hidden[k];
        if (k >= 0 && every_step) a.sequence = 1;
        if (k >= 0) a.step_mask = step_mask;
        nn_added ad;
        st = nn_add_at(b, l->kind, l->name, l->inputs, l->ninputs, &a, &ad);
        if (!st && ad.layer != li) st = ts_fail(ctx, TS_EINVAL, "module: layer '%s' moved in the rebuild", l->name);
    }
    if (st) {
        nn_builder_free(b);
        return st;
    }
    return nn_builder_finish(b, 0, NULL, out);
}

ts_status rnn_probe_model(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, ts_model **out) {
    const int upto = ch->layer[ch->n - 1];
    ts_status st = rebuild(ctx, m, ch, NULL, upto, 1, 0, out);
    for (int li = 1; li <= upto && !st; li++) st = model_copy_layer_tensors(ctx, m, li, *out, li, "module probe");
    if (st) {
        ts_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* Zeroes the removed units of chain layer k in z (see the top of the file). */
static void zero_layer(ts_model *z, const rnn_chain *ch, int k, const uint8_t *keep) {
    const layer *l = &z->layers[ch->layer[k]];
    const int64_t D = ch->dirs[k], H = ch->hidden[k], G = gates_of(l->kind);
    const int64_t F = input_shape(z, l, 0)->dims[1], C = F + H;
    float *W = tensor_data(z, l->weight) /* (D, G*H, F+H) */, *B = tensor_data(z, l->bias_t) /* (D, 2, G*H) */;
    const layer *nx = &z->layers[k + 1 < ch->n ? ch->layer[k + 1] : ch->head];
    float *NW = tensor_data(z, nx->weight); /* recurrent: (D2, G2*H2, D*H+H2); dense: (K, D*H) */
    const int64_t nrows = nx->kind == LAYER_DENSE ? nx->features
                                                  : (int64_t)ch->dirs[k + 1] * gates_of(nx->kind) * ch->hidden[k + 1];
    const int64_t ncols = nx->kind == LAYER_DENSE ? D * H : D * H + ch->hidden[k + 1];
    for (int64_t d = 0; d < D; d++)
        for (int64_t j = 0; j < H; j++) {
            if (keep[d * H + j]) continue;
            float *Wd = W + d * G * H * C;
            for (int64_t g = 0; g < G; g++) {
                memset(Wd + (g * H + j) * C, 0, sizeof(float) * (size_t)C);
                B[(d * 2 + 0) * G * H + g * H + j] = 0;
                B[(d * 2 + 1) * G * H + g * H + j] = 0;
            }
            for (int64_t r = 0; r < G * H; r++) Wd[r * C + F + j] = 0;
            for (int64_t r = 0; r < nrows; r++) NW[r * ncols + d * H + j] = 0;
        }
}

/* What a removed unit gave the units that read it, kept on average: for each removed
 * unit (d, j) of chain layer k, its weight times its mean state is added to the bias of
 * every row that reads it, in its own layer's recurrence (b_hh of its direction's gate
 * rows; for a GRU's n gate the b_hn that r multiplies, exact for linear_before_reset)
 * and in the next recurrent layer (b_ih); the dense head gets the mean final state
 * instead. Before zero_layer, which leaves these biases as they are. */
static void compensate(ts_model *z, const rnn_chain *ch, const uint8_t *const *keep, const rnn_means *mv) {
    for (int k = 0; k < ch->n; k++) {
        const layer *l = &z->layers[ch->layer[k]];
        const int64_t D = ch->dirs[k], H = ch->hidden[k], G = gates_of(l->kind);
        const int64_t F = input_shape(z, l, 0)->dims[1], C = F + H;
        const float *W = tensor_data(z, l->weight); /* (D, G*H, F+H) */
        float *B = tensor_data(z, l->bias_t);       /* (D, 2, G*H) */
        const layer *nx = &z->layers[k + 1 < ch->n ? ch->layer[k + 1] : ch->head];
        const float *NW = tensor_data(z, nx->weight);
        float *NB = nx->bias_t >= 0 ? tensor_data(z, nx->bias_t) : NULL;
        const int dense = nx->kind == LAYER_DENSE;
        const int64_t G2H2 = dense ? nx->features : (int64_t)gates_of(nx->kind) * ch->hidden[k + 1];
        const int64_t nrows = dense ? nx->features : (int64_t)ch->dirs[k + 1] * G2H2;
        const int64_t ncols = dense ? D * H : D * H + ch->hidden[k + 1];
        for (int64_t d = 0; d < D; d++)
            for (int64_t j = 0; j < H; j++) {
                const int64_t u = d * H + j;
                if (keep[k][u]) continue;
                const double mu = mv->mean[k][u];
                for (int64_t r = 0; r < G * H; r++) {
                    if (!keep[k][d * H + r % H]) continue; /* a removed unit's own rows are zeroed anyway */
                    B[(d * 2 + 1) * G * H + r] += (float)(W[(d * G * H + r) * C + F + j] * mu);
                }
                if (!NB) continue;
                const double read = dense ? mv->last[u] : mu;
                for (int64_t r = 0; r < nrows; r++) {
                    const int64_t b = dense ? r : (r / G2H2) * 2 * G2H2 + r % G2H2; /* b_ih of its direction */
                    NB[b] += (float)(NW[r * ncols + u] * read);
                }
            }
    }
}

/* Per direction, the units the sliced layer carries: the kept ones in order, then
 * removed ones (zeroed) up to Hs. idx: (D, Hs). */
static int slice_units(const uint8_t *keep, int D, int H, int *idx) {
    int Hs = 1;
    for (int d = 0; d < D; d++) {
        int n = 0;
        for (int j = 0; j < H; j++) n += keep[d * H + j] != 0;
        if (n > Hs) Hs = n;
    }
    for (int d = 0; d < D; d++) {
        int n = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < H && n < Hs; j++)
                if ((keep[d * H + j] != 0) == (pass == 0)) idx[d * Hs + n++] = j;
    }
    return Hs;
}

/* The sliced tensors of chain layer k (and of the head after the last) from z. */
static void gather_layer(const ts_model *z, ts_model *s, const rnn_chain *ch, int k, int *const *idx, const int *Hs) {
    const layer *zl = &z->layers[ch->layer[k]], *sl = &s->layers[ch->layer[k]];
    const int64_t D = ch->dirs[k], H = ch->hidden[k], G = gates_of(zl->kind), h = Hs[k];
    const int64_t F = input_shape(z, zl, 0)->dims[1], Fs = input_shape(s, sl, 0)->dims[1];
    const float *W = tensor_data((ts_model *)z, zl->weight), *B = tensor_data((ts_model *)z, zl->bias_t);
    float *SW = tensor_data(s, sl->weight), *SB = tensor_data(s, sl->bias_t);
    /* input column c' of the sliced layer is column inmap(c') of the origin's */
    for (int64_t d = 0; d < D; d++)
        for (int64_t g = 0; g < G; g++)
            for (int64_t r = 0; r < h; r++) {
                const int64_t src = d * G * H + g * H + idx[k][d * h + r], dst = d * G * h + g * h + r;
                const float *in = W + src * (F + H);
                float *o = SW + dst * (Fs + h);
                for (int64_t c = 0; c < Fs; c++) {
                    int64_t from = c;
                    if (k > 0) { /* the previous layer's outputs, both its directions */
                        const int64_t hp = Hs[k - 1], dp = c / hp;
                        from = dp * ch->hidden[k - 1] + idx[k - 1][c];
                    }
                    o[c] = in[from];
                }
                for (int64_t c = 0; c < h; c++) o[Fs + c] = in[F + idx[k][d * h + c]];
                for (int64_t sidx = 0; sidx < 2; sidx++)
                    SB[(d * 2 + sidx) * G * h + g * h + r] = B[(d * 2 + sidx) * G * H + g * H + idx[k][d * h + r]];
            }
    if (k + 1 < ch->n) return;
    const layer *zh = &z->layers[ch->head], *sh = &s->layers[ch->head];
    const float *HW = tensor_data((ts_model *)z, zh->weight);
    float *SHW = tensor_data(s, sh->weight);
    for (int64_t o = 0; o < zh->features; o++)
        for (int64_t c = 0; c < D * h; c++) SHW[o * D * h + c] = HW[o * D * H + (c / h) * H + idx[k][c]];
    if (zh->bias_t >= 0)
        memcpy(tensor_data(s, sh->bias_t), tensor_data((ts_model *)z, zh->bias_t), sizeof(float) * (size_t)zh->features);
}

static ts_status copy_meta(ts_ctx *ctx, const ts_model *from, ts_model *to) {
    ts_status st = TS_OK;
    for (int i = 0; i < from->nmeta && !st; i++) st = ts_model_set_meta(ctx, to, from->meta[i].key, from->meta[i].value);
    return st;
}

ts_status rnn_remove_units(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const uint8_t *const *keep,
                           const rnn_means *comp, ts_model **zeroed, ts_model **sliced) {
    if (zeroed) *zeroed = NULL;
    if (sliced) *sliced = NULL;
    ts_model *z = NULL, *s = NULL;
    int *idx[RNN_CHAIN_MAX] = {0}, Hs[RNN_CHAIN_MAX];
    ts_status st = model_clone(ctx, m, &z);
    if (st) return st;
    if (comp) compensate(z, ch, keep, comp);
    for (int k = 0; k < ch->n; k++) zero_layer(z, ch, k, keep[k]);
    ts_model_params_changed(z);
    if (sliced) {
        for (int k = 0; k < ch->n && !st; k++) {
            if (!(idx[k] = malloc(sizeof(int) * (size_t)ch->dirs[k] * (size_t)ch->hidden[k])))
                st = ts_fail(ctx, TS_ENOMEM, "module: out of memory");
            else
                Hs[k] = slice_units(keep[k], ch->dirs[k], ch->hidden[k], idx[k]);
        }
        if (!st) st = rebuild(ctx, m, ch, Hs, m->nlayers - 1, 0, 0, &s);
        for (int li = 1; li < m->nlayers && !st; li++)
            if (rnn_chain_index(ch, li) < 0 && li != ch->head) st = model_copy_layer_tensors(ctx, z, li, s, li, "module");
        if (!st) {
            for (int k = 0; k < ch->n; k++) gather_layer(z, s, ch, k, idx, Hs);
            ts_model_params_changed(s);
            st = copy_meta(ctx, m, s);
        }
    }
    for (int k = 0; k < ch->n; k++) free(idx[k]);
    if (st) {
        ts_model_free(z);
        ts_model_free(s);
        return st;
    }
    if (zeroed) *zeroed = z;
    else ts_model_free(z);
    if (sliced) *sliced = s;
    return TS_OK;
}

/* The sliced model s (from rnn_remove_units with keep_any) again with a step mask on
 * every chain layer: unit r of direction d of sliced layer k is origin unit
 * idx[d * Hs + r] (slice_units' order), removed at step t where its step_keep byte is
 * 0; a filler unit (zeroed, keep_any 0) is 0 at every step. */
static ts_status add_step_masks(ts_ctx *ctx, const ts_model *s, const rnn_chain *ch, const uint8_t *const *keep_any,
                                const uint8_t *const *step_keep, int T, ts_model **out) {
    ts_model *w = NULL;
    int Hs[RNN_CHAIN_MAX];
    for (int k = 0; k < ch->n; k++) Hs[k] = s->layers[ch->layer[k]].features;
    ts_status st = rebuild(ctx, s, ch, Hs, s->nlayers - 1, 0, 1, &w);
    for (int li = 1; li < s->nlayers && !st; li++) st = model_copy_layer_tensors(ctx, s, li, w, li, "module");
    if (!st) st = copy_meta(ctx, s, w);
    for (int k = 0; k < ch->n && !st; k++) {
        const int D = ch->dirs[k], H = ch->hidden[k], h = Hs[k];
        int *idx = malloc(sizeof(int) * (size_t)D * (size_t)h);
        if (!idx) {
            st = ts_fail(ctx, TS_ENOMEM, "module: out of memory");
            break;
        }
        slice_units(keep_any[k], D, H, idx);
        const layer *l = &w->layers[ch->layer[k]];
        float *mk = tensor_data(w, l->mask); /* (T, D, h) */
        for (int64_t t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
                for (int r = 0; r < h; r++) {
                    const int64_t u = (int64_t)d * H + idx[d * h + r];
                    mk[(t * D + d) * h + r] = keep_any[k][u] && step_keep[k][t * D * H + u] ? 1.0f : 0.0f;
                }
        free(idx);
    }
    if (st) {
        ts_model_free(w);
        return st;
    }
    ts_model_params_changed(w);
    *out = w;
    return TS_OK;
}

ts_status rnn_remove_units_steps(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const uint8_t *const *step_keep,
                                 int T, ts_model **sliced) {
    *sliced = NULL;
    uint8_t *any[RNN_CHAIN_MAX] = {0};
    ts_status st = TS_OK;
    int partial = 0; /* some kept unit is removed at some step */
    for (int k = 0; k < ch->n && !st; k++) {
        const int64_t U = (int64_t)ch->dirs[k] * ch->hidden[k];
        if (!(any[k] = calloc((size_t)U, 1))) {
            st = ts_fail(ctx, TS_ENOMEM, "module: out of memory");
            break;
        }
        for (int64_t t = 0; t < T; t++)
            for (int64_t u = 0; u < U; u++) any[k][u] |= step_keep[k][t * U + u] != 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t u = 0; u < U; u++) partial |= any[k][u] && !step_keep[k][t * U + u];
    }
    ts_model *s = NULL;
    if (!st) st = rnn_remove_units(ctx, m, ch, (const uint8_t *const *)any, NULL, NULL, &s);
    if (!st && partial) {
        ts_model *w = NULL;
        st = add_step_masks(ctx, s, ch, (const uint8_t *const *)any, step_keep, T, &w);
        ts_model_free(s);
        s = w;
    }
    for (int k = 0; k < ch->n; k++) free(any[k]);
    if (st) return st;
    *sliced = s;
    return TS_OK;
}
