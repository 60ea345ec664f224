/* rnn, lstm, gru: one recurrent layer (PyTorch's nn.RNN/LSTM/GRU with num_layers=1,
 * batch_first=True), over a per-sample sequence (T, F). Output: every step's state
 * (T, D*H) with sequence=1, else the final states (D*H), PyTorch's h_n of both
 * directions side by side. Stacked layers are layers in the graph (dropout between
 * them is a dropout layer).
 *
 * Padding: with a second input, the token ids (T) the sequence was embedded from,
 * each sample's length is 1 + the last position whose id is not 0 (<pad>); steps
 * past it output 0 and leave the states alone, so a padded batch gives every
 * sequence what it gives alone (PyTorch's packed sequences).
 *
 * Initial states: with initial=1 the last input is one (S) per sample, S = D*H, or
 * 2*D*H for lstm (h of each direction, then c): what sequence=2 outputs, the final h
 * and c, so an encoder's end starts a decoder. Without it the states start at zero.
 *
 * Tensors: weight (D, G*H, F+H), each gate row W_ih's then W_hh's; bias (D, 2, G*H),
 * b_ih then b_hh; G = 1, 4 (i,f,g,o) or 3 (r,z,n). Kernels: ops/rnn_ref.c.
 *
 * step_mask=1 adds a buffer step_keep (T, D, H) of 0/1: unit j of direction d is
 * removed at step t where it is 0 (a module of the unrolled decomposition, src/modular;
 * the kernel's comment says what that computes). Inference only: such a layer is not
 * trained (a module is not). */
#include "layers.h"

#include <string.h>

static rnn_cell cell_of(const layer *l) {
    return l->kind == LAYER_LSTM ? RNN_LSTM : l->kind == LAYER_GRU ? RNN_GRU : l->cell_act ? RNN_RELU : RNN_TANH;
}

rnn_params recurrent_params(const ts_model *m, const layer *l, int n) {
    const ts_shape *in = input_shape(m, l, 0);
    rnn_params p = {cell_of(l), n, (int)in->dims[0], (int)in->dims[1], l->features, l->bidirectional ? 2 : 1,
                    l->sequence, l->kind == LAYER_GRU ? l->lbr : 0};
    return p;
}

ts_status recurrent_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    const char *kind = LAYER_OPS[l->kind].name;
    if (l->ninputs < 1 + l->initial || l->ninputs > 2 + l->initial)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: %s '%s' takes a sequence, optionally its token ids%s", source,
                       l->line, kind, l->name, l->initial ? ", then the initial state (initial=1)" : "");
    const ts_shape *in = input_shape(m, l, 0);
    char is[96];
    if (in->ndim != 2)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s' needs a sequence (TxF) but '%s' outputs %s", source, l->line,
                       kind, l->name, m->layers[l->inputs[0]].name, shape_text(in, is, sizeof is));
    if (l->ninputs - l->initial == 2) {
        const ts_shape *ids = input_shape(m, l, 1);
        if (shape_numel(ids) != in->dims[0] || ids->dims[0] != in->dims[0])
            return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s': the token ids '%s' (%s) must have one value per step (%lld)",
                           source, l->line, kind, l->name, m->layers[l->inputs[1]].name,
                           shape_text(ids, is, sizeof is), (long long)in->dims[0]);
    }
    const rnn_params p = recurrent_params(m, l, 1);
    const int64_t g = rnn_gates(p.cell), per_step = (int64_t)p.dirs * g * p.h;
    if (rnn_weight_count(&p) > ARCH_MAX_ELEMENTS || per_step * p.t > ARCH_MAX_ELEMENTS)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s': %d steps of %d features into %d units is too large", source,
                       l->line, kind, l->name, p.t, p.f, p.h);
    if (l->initial) {
        const ts_shape *h0 = input_shape(m, l, l->ninputs - 1);
        if (h0->ndim != 1 || h0->dims[0] != rnn_state_size(&p))
            return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s': the initial state '%s' is %s, expected %lld values (%s)",
                           source, l->line, kind, l->name, m->layers[l->inputs[l->ninputs - 1]].name,
                           shape_text(h0, is, sizeof is), (long long)rnn_state_size(&p),
                           p.cell == RNN_LSTM ? "h then c of each direction" : "h of each direction");
    }
    if (p.sequence == 1) {
        l->out.ndim = 2;
        l->out.dims[0] = p.t;
        l->out.dims[1] = (int64_t)p.dirs * p.h;
    } else {
        l->out.ndim = 1;
        l->out.dims[0] = p.sequence == 2 ? rnn_state_size(&p) : (int64_t)p.dirs * p.h;
    }
    const int li = (int)(l - m->layers);
    ts_shape ws = {3, {p.dirs, g * p.h, p.f + p.h}}, bs = {3, {p.dirs, 2, g * p.h}};
    if ((l->weight = model_add_tensor(ctx, m, li, "weight", TS_TENSOR_PARAM, &ws)) < 0) return ts_ctx_status(ctx);
    if ((l->bias_t = model_add_tensor(ctx, m, li, "bias", TS_TENSOR_PARAM, &bs)) < 0) return ts_ctx_status(ctx);
    l->mask = -1;
    if (l->step_mask) {
        if (p.sequence == 2)
            return ts_fail(ctx, TS_EFORMAT,
                           "%s:%d: %s '%s': step_mask=1 needs sequence=1 or 0 (outputs, not a decoder's start)",
                           source, l->line, kind, l->name);
        ts_shape ks = {3, {p.t, p.dirs, p.h}};
        if ((l->mask = model_add_tensor(ctx, m, li, "step_keep", TS_TENSOR_BUFFER, &ks)) < 0) return ts_ctx_status(ctx);
    }
    return TS_OK;
}

int64_t recurrent_macs(const ts_model *m, const layer *l) {
    const rnn_params p = recurrent_params(m, l, 1);
    return rnn_weight_count(&p) * p.t;
}

/* aux: a header (whether oneDNN ran the forward), the lengths (N int32), then what
 * the backward reads; each part 64-byte aligned */
#define AUX_HEADER ((size_t)64)
static size_t lengths_bytes(int n) { return ((size_t)n * sizeof(int32_t) + 63) & ~(size_t)63; }

size_t recurrent_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    const rnn_params p = recurrent_params(m, l, n);
    return AUX_HEADER + lengths_bytes(n) + ops_rnn_workspace_size(ctx, &p);
}

size_t recurrent_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    const rnn_params p = recurrent_params(m, l, n);
    return rnn_scratch_floats(&p) * sizeof(float);
}

/* the lengths of this pass's samples, or NULL without token ids */
static const int32_t *lengths_of(ts_model *m, int li, const rnn_params *p) {
    const layer *l = &m->layers[li];
    if (l->ninputs - l->initial < 2) return NULL;
    int32_t *len = (int32_t *)((char *)m->exec.ls[li].aux + AUX_HEADER);
    rnn_lengths_from_ids(p->n, p->t, layer_input(m, li, 1), len);
    return len;
}

/* the workspace part of the aux memory and its size */
static void *workspace_of(const ts_model *m, int li, size_t *bytes) {
    const layer_state *s = &m->exec.ls[li];
    const size_t skip = AUX_HEADER + lengths_bytes(m->exec.capacity);
    *bytes = s->aux_bytes > skip ? s->aux_bytes - skip : 0;
    return (char *)s->aux + skip;
}

ts_status recurrent_forward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    const rnn_params p = recurrent_params(m, l, m->exec.n);
    const int32_t *len = lengths_of(m, li, &p);
    size_t ws_bytes = 0;
    void *ws = workspace_of(m, li, &ws_bytes);
    if (!m->exec.train) ws = NULL;
    const float *h0 = l->initial ? layer_input(m, li, l->ninputs - 1) : NULL;
    const float *keep = l->mask >= 0 ? tensor_data(m, l->mask) : NULL;
    return ops_rnn_forward(ctx, &p, layer_input(m, li, 0), len, h0, tensor_data(m, l->weight),
                           tensor_data(m, l->bias_t), keep, m->exec.ls[li].out, ws, ws_bytes, m->exec.scratch,
                           (int *)m->exec.ls[li].aux);
}

ts_status recurrent_backward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    if (l->mask >= 0)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s '%s' has a per-step unit mask (step_mask=1, an unrolled module): it runs, "
                       "it is not trained",
                       LAYER_OPS[l->kind].name, l->name);
    const rnn_params p = recurrent_params(m, l, m->exec.n);
    const int has_ids = l->ninputs - l->initial == 2;
    const int32_t *len = has_ids ? (const int32_t *)((const char *)m->exec.ls[li].aux + AUX_HEADER) : NULL;
    size_t ws_bytes = 0;
    const void *ws = workspace_of(m, li, &ws_bytes);
    const int on_dnnl = *(const int *)m->exec.ls[li].aux; /* the forward's path */
    const int nt = ts_ctx_threads(ctx);
    const float *x = layer_input(m, li, 0), *w = tensor_data(m, l->weight), *b = tensor_data(m, l->bias_t);
    const float *h0 = l->initial ? layer_input(m, li, l->ninputs - 1) : NULL;
    float *dw = tensor_grad(m, l->weight), *db = tensor_grad(m, l->bias_t);
    /* the initial state's gradient first: its buffer may be the shared accumulator,
     * which the sequence's commit below would then overwrite */
    float *dh0 = l->initial ? layer_input_grad(m, li, l->ninputs - 1) : NULL;
    float *dx = layer_input_grad(m, li, 0);
    ts_status s;
    if (dh0 && dx == dh0) { /* both need the accumulator: the state's gradient alone first */
        s = ops_rnn_backward(ctx, &p, x, len, h0, w, b, m->exec.ls[li].grad, ws, ws_bytes, on_dnnl, NULL, dh0, dw, db,
                             m->exec.scratch);
        if (s) return s;
        layer_input_grad_commit(m, li, l->ninputs - 1, nt);
        dh0 = NULL;
        dx = layer_input_grad(m, li, 0);
    }
    s = ops_rnn_backward(ctx, &p, x, len, h0, w, b, m->exec.ls[li].grad, ws, ws_bytes, on_dnnl, dx, dh0, dw, db,
                         m->exec.scratch);
    if (s) return s;
    if (dh0) layer_input_grad_commit(m, li, l->ninputs - 1, nt);
    if (dx) layer_input_grad_commit(m, li, 0, nt);
    float *dids = has_ids ? layer_input_grad(m, li, 1) : NULL;
    if (dids) { /* ids are not differentiable */
        memset(dids, 0, sizeof *dids * (size_t)p.n * (size_t)p.t);
        layer_input_grad_commit(m, li, 1, nt);
    }
    return TS_OK;
}
