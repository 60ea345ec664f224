/* ONNX's RNN, LSTM and GRU as tessera's rnn, lstm and gru layers, and what feeds
 * them: an embedding (Gather of token ids cast to integers from a constant table),
 * zeros as initial states, and the sequence lengths tessera's export computes from
 * the token ids. ONNX's nodes are time-major (layout 0: X (T, N, F), Y (T, D, N, H),
 * Y_h (D, N, H)); tessera's layers are batch-first with both directions side by side,
 * which is the same memory per sample: the values only see the batch axis elsewhere
 * (value.bax), so no data moves. */
#include "onnx_import.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ embedding */

ts_status embedding_gather(importer *im, const Onnx__NodeProto *n, const value *table, const value *ids) {
    if (!ids->ints) return unsupported(im, "the indices '%s' are computed floats, not token ids", ids->name);
    if (im->off && ids->bax) return unsupported(im, "the token ids '%s' do not have their batch axis first", ids->name);
    if (table->rank != 2 || table->dims[0] < 1 || table->dims[1] < 1 || table->dims[0] > INT32_MAX ||
        table->dims[1] > INT32_MAX)
        return unsupported(im, "a Gather of computed indices from a constant that is not a (vocabulary, dim) table");
    const int rr = ids->rank + 1;
    if (rr > ONNX_MAX_RANK) return unsupported(im, "result rank %d", rr);
    const char *in;
    ts_status st = materialize(im, ids, &in);
    if (st) return st;
    layer_attrs a;
    nn_attrs_default(LAYER_EMBEDDING, &a);
    a.vocab = (int)table->dims[0];
    a.features = (int)table->dims[1];
    a.padding_idx = -1; /* ONNX does not say; it only matters to training */
    int64_t dims[ONNX_MAX_RANK];
    memcpy(dims, ids->dims, (size_t)ids->rank * sizeof *dims);
    dims[ids->rank] = table->dims[1];
    value tmp = {.kind = VALUE_LAYER, .rank = rr};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    int li;
    const char *ins[1] = {in};
    if ((st = value_sample_shape(im, &tmp, &out)) || (st = emit_layer(im, LAYER_EMBEDDING, node_base(n), ins, 1, &a, &out, &li)))
        return st;
    float *w = const_floats(im, table);
    if (!w) return ts_ctx_status(im->ctx);
    st = add_fill(im, im->layers[li]->t.weight, w, table->c->numel);
    free(w);
    if (st) return st;
    return define_layer(im, n, 0, li, rr, dims);
}

/* ------------------------------------------------------------ sequence lengths */

/* The lengths tessera's export gives a recurrent node (onnx_export.c,
 * lengths_from_ids): ReduceMax(Cast(Not(Equal(ids, 0))) * [1..T], axes=[1],
 * keepdims=0), then a Cast: 1 + the last step whose id is not 0, which is how the
 * layers find each sample's length from the ids. Each step is a VALUE_LENGTHS of the
 * ids' layer one stage further; the recurrent node then takes the ids as its second
 * input. Any other computation of lengths is refused at the op that departs. */
enum { LEN_IS_PAD = 1, LEN_NOT_PAD, LEN_STEPS, LEN_DONE };

static int all_equal(const value *c, double want) {
    for (int64_t i = 0; i < c->c->numel; i++)
        if ((c->c->is_float ? (double)c->c->f[i] : (double)c->c->i[i]) != want) return 0;
    return c->c->numel > 0;
}

/* c holds 1, 2, ..., T along its last axis and nothing else */
static int is_steps(const value *c, int64_t t) {
    if (c->kind != VALUE_CONST || c->c->numel != t || c->rank < 1 || c->dims[c->rank - 1] != t) return 0;
    for (int64_t i = 0; i < t; i++)
        if ((c->c->is_float ? (double)c->c->f[i] : (double)c->c->i[i]) != (double)(i + 1)) return 0;
    return 1;
}

static ts_status lengths_stage(importer *im, const Onnx__NodeProto *n, const value *from, int stage, int rank,
                               const int64_t *dims) {
    value v = *from;
    v.kind = VALUE_LENGTHS;
    v.stage = stage;
    return define_like(im, n, 0, &v, rank, dims, 0);
}

ts_status lengths_step(importer *im, const Onnx__NodeProto *n, int *handled) {
    *handled = 0;
    const char *op = n->op_type ? n->op_type : "";
    value *a = node_input(im, n, 0), *b = node_input(im, n, 1);
    if (!a || !im->off) return TS_OK;
    if (!strcmp(op, "Equal") && b) {
        value *ids = a->kind == VALUE_LAYER ? a : b, *zero = ids == a ? b : a;
        if (ids->kind != VALUE_LAYER || ids->bax || ids->rank != 2 || zero->kind != VALUE_CONST || zero->c->numel != 1 ||
            !all_equal(zero, 0.0))
            return TS_OK;
        *handled = 1;
        return lengths_stage(im, n, ids, LEN_IS_PAD, 2, ids->dims);
    }
    if (a->kind != VALUE_LENGTHS) return TS_OK;
    if (!strcmp(op, "Not") && a->stage == LEN_IS_PAD) {
        *handled = 1;
        return lengths_stage(im, n, a, LEN_NOT_PAD, a->rank, a->dims);
    }
    if (!strcmp(op, "Cast") || !strcmp(op, "Identity")) {
        *handled = 1;
        return define_alias(im, n, 0, a);
    }
    if (!strcmp(op, "Mul") && b) {
        value *m = a->kind == VALUE_LENGTHS ? a : b, *steps = m == a ? b : a;
        if (m->kind != VALUE_LENGTHS || m->stage != LEN_NOT_PAD || !is_steps(steps, m->dims[1])) return TS_OK;
        *handled = 1;
        return lengths_stage(im, n, m, LEN_STEPS, m->rank, m->dims);
    }
    if (!strcmp(op, "ReduceMax") && a->stage == LEN_STEPS && !node_input(im, n, 1)) {
        const int64_t *axes;
        const int na = attr_ints(n, "axes", &axes);
        if (na != 1 || (axes[0] != 1 && axes[0] != -1) || attr_int(n, "keepdims", 1) != 0) return TS_OK;
        *handled = 1;
        return lengths_stage(im, n, a, LEN_DONE, a->rank, a->dims); /* the ids' (N, T), for the recurrent node */
    }
    return TS_OK;
}

/* ------------------------------------------------------------ RNN, LSTM, GRU */

typedef struct rnn_node {
    layer_kind kind;
    int gates, dirs, hidden, layout; /* layout 1: batch-first X, Y, Y_h, Y_c */
    int64_t t, f;
    const char *x, *ids, *init; /* layer names: the sequence, its token ids, the initial states */
    const value *w, *r, *b;
} rnn_node;

/* activations: absent, or each direction's ONNX defaults (rnn: Tanh or Relu, the same
 * for both directions); *relu for rnn */
static ts_status check_activations(importer *im, const Onnx__NodeProto *n, const rnn_node *rn, int *relu) {
    static const char *const LSTM_ACTS[3] = {"Sigmoid", "Tanh", "Tanh"}, *const GRU_ACTS[2] = {"Sigmoid", "Tanh"};
    const Onnx__AttributeProto *a = attr(n, "activations");
    *relu = 0;
    if (attr(n, "activation_alpha") || attr(n, "activation_beta"))
        return unsupported(im, "attribute activation_alpha/activation_beta: only the default activations are supported");
    if (!a || a->n_strings == 0) return TS_OK;
    const int per = rn->gates == 1 ? 1 : rn->gates == 4 ? 3 : 2;
    /* one list per direction; one list for both is read as meant for each */
    if (a->n_strings != (size_t)(per * rn->dirs) && a->n_strings != (size_t)per)
        return bad_node(im, "attribute activations has %zu names for %d direction(s)", a->n_strings, rn->dirs);
    const int lists = (int)a->n_strings / per;
    for (int d = 0; d < lists; d++)
        for (int k = 0; k < per; k++) {
            const ProtobufCBinaryData *s = &a->strings[d * per + k];
            char name[32];
            const size_t len = s->len < sizeof name - 1 ? s->len : sizeof name - 1;
            memcpy(name, s->data, len);
            name[len] = '\0';
            if (rn->gates == 1) {
                const int is_relu = !strcasecmp(name, "Relu");
                if (!is_relu && strcasecmp(name, "Tanh"))
                    return unsupported(im, "attribute activations: '%s' (an RNN cell is Tanh or Relu)", name);
                if (d && is_relu != *relu)
                    return unsupported(im, "attribute activations: the two directions use different activations");
                *relu = is_relu;
            } else if (strcasecmp(name, (rn->gates == 4 ? LSTM_ACTS : GRU_ACTS)[k])) {
                return unsupported(im, "attribute activations: '%s' where the default is %s (only the defaults are supported)",
                                   name, (rn->gates == 4 ? LSTM_ACTS : GRU_ACTS)[k]);
            }
        }
    return TS_OK;
}

/* the attributes that tessera's layers have no counterpart for */
static ts_status check_attributes(importer *im, const Onnx__NodeProto *n, rnn_node *rn) {
    char buf[32];
    const char *dir = attr_string(n, "direction", "forward", buf, sizeof buf);
    if (!strcmp(dir, "forward")) rn->dirs = 1;
    else if (!strcmp(dir, "bidirectional")) rn->dirs = 2;
    else if (!strcmp(dir, "reverse"))
        return unsupported(im, "attribute direction 'reverse': tessera's layers run forward or both ways");
    else return bad_node(im, "attribute direction '%s'", dir);
    if (attr(n, "clip")) return unsupported(im, "attribute clip: the cell's inputs are not clipped in tessera");
    if (rn->kind == LAYER_LSTM && attr_int(n, "input_forget", 0))
        return unsupported(im, "attribute input_forget=1 (coupled input and forget gates)");
    rn->layout = (int)attr_int(n, "layout", 0);
    if (rn->layout != 0 && rn->layout != 1) return bad_node(im, "attribute layout %d", rn->layout);
    const int64_t h = attr_int(n, "hidden_size", 0);
    if (h < 1 || h > 65536) return unsupported(im, "attribute hidden_size %lld (1 to 65536)", (long long)h);
    rn->hidden = (int)h;
    return TS_OK;
}

/* W (D, G*H, F), R (D, G*H, H), B (D, 2*G*H) */
static ts_status check_weights(importer *im, const Onnx__NodeProto *n, rnn_node *rn) {
    value *b = node_input(im, n, 3);
    ts_status st = require_const(im, n, 1, "W", (value **)&rn->w);
    if (!st) st = require_const(im, n, 2, "R", (value **)&rn->r);
    if (st) return st;
    if (b && b->kind != VALUE_CONST) return unsupported(im, "its B ('%s') must be a constant", b->name);
    rn->b = b;
    const int64_t gh = (int64_t)rn->gates * rn->hidden;
    const value *w = rn->w, *r = rn->r;
    if (w->rank != 3 || w->dims[0] != rn->dirs || w->dims[1] != gh || w->dims[2] != rn->f)
        return bad_node(im, "W is not (%d, %lld, %lld)", rn->dirs, (long long)gh, (long long)rn->f);
    if (r->rank != 3 || r->dims[0] != rn->dirs || r->dims[1] != gh || r->dims[2] != rn->hidden)
        return bad_node(im, "R is not (%d, %lld, %d)", rn->dirs, (long long)gh, rn->hidden);
    if (b && (b->rank != 2 || b->dims[0] != rn->dirs || b->dims[1] != 2 * gh))
        return bad_node(im, "B is not (%d, %lld)", rn->dirs, (long long)(2 * gh));
    return TS_OK;
}

/* X as a layer: (T, N, F) with the batch at axis 1 (layout 0) or (N, T, F) (layout 1);
 * in whole-tensor mode a batch of 1 */
static ts_status sequence_input(importer *im, const Onnx__NodeProto *n, rnn_node *rn) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    if (x->rank != 3) return bad_node(im, "X has rank %d, not 3", x->rank);
    const int nax = rn->layout ? 0 : 1, tax = rn->layout ? 1 : 0;
    if (im->off && x->bax != nax)
        return unsupported(im, "X's batch axis is axis %d of the model input's; with layout=%d it must be axis %d "
                               "(a time-major graph input: import the model with the batch first)",
                           x->bax, rn->layout, nax);
    if (!im->off && x->dims[nax] != 1)
        return unsupported(im, "in whole-tensor mode the batch axis of X must have size 1 (it has %lld)",
                           (long long)x->dims[nax]);
    rn->t = x->dims[tax];
    rn->f = x->dims[2];
    const ts_shape want = {2, {rn->t, rn->f}};
    return materialize_as(im, x, &want, &rn->x);
}

/* sequence_lens: absent, constant full lengths, or tessera's lengths from the ids */
static ts_status sequence_lengths(importer *im, const Onnx__NodeProto *n, rnn_node *rn) {
    value *s = node_input(im, n, 4);
    rn->ids = NULL;
    if (!s) return TS_OK;
    if (s->kind == VALUE_CONST && all_equal(s, (double)rn->t)) return TS_OK;
    if (s->kind == VALUE_LENGTHS && s->stage == LEN_DONE) {
        if (s->dims[1] != rn->t)
            return unsupported(im, "sequence_lens come from token ids of %lld steps, X has %lld", (long long)s->dims[1],
                               (long long)rn->t);
        value ids = *s;
        ids.kind = VALUE_LAYER;
        const ts_shape want = {1, {rn->t}};
        return materialize_as(im, &ids, &want, &rn->ids);
    }
    return unsupported(im, "sequence_lens ('%s'): tessera takes lengths only as constants equal to the %lld steps, "
                           "or computed from the token ids as its export writes them (docs/onnx.md)",
                       s->name, (long long)rn->t);
}

/* one initial state input: 0 when absent or zeros, 1 when computed (as a layer name) */
static ts_status initial_state(importer *im, const Onnx__NodeProto *n, int k, const rnn_node *rn, const char **name) {
    value *v = node_input(im, n, k);
    *name = NULL;
    if (!v || v->kind == VALUE_ZEROS || (v->kind == VALUE_CONST && all_equal(v, 0.0))) return TS_OK;
    const char *what = k == 5 ? "initial_h" : "initial_c";
    if (v->kind == VALUE_CONST) return unsupported(im, "%s ('%s') is a constant other than zeros", what, v->name);
    if (v->kind != VALUE_LAYER) return unsupported(im, "%s ('%s') is not computed from the input", what, v->name);
    if (v->rank != 3 || (im->off && v->bax != (rn->layout ? 0 : 1)))
        return unsupported(im, "%s ('%s') is not laid out as X is", what, v->name);
    const ts_shape want = {1, {(int64_t)rn->dirs * rn->hidden}};
    return materialize_as(im, v, &want, name);
}

/* initial_h (and initial_c) as one input of (S) per sample, S = D*H (h then c for lstm) */
static ts_status initial_states(importer *im, const Onnx__NodeProto *n, rnn_node *rn) {
    const char *h, *c = NULL;
    ts_status st = initial_state(im, n, 5, rn, &h);
    if (!st && rn->kind == LAYER_LSTM) st = initial_state(im, n, 6, rn, &c);
    if (st) return st;
    rn->init = h;
    if (rn->kind != LAYER_LSTM || (!h && !c)) return TS_OK;
    if (!h || !c) return unsupported(im, "one of initial_h and initial_c is computed and the other zero");
    layer_attrs a;
    nn_attrs_default(LAYER_CONCAT, &a);
    a.axis = 0;
    const char *ins[2] = {h, c};
    const ts_shape out = {1, {2 * (int64_t)rn->dirs * rn->hidden}};
    int li;
    if ((st = emit_layer(im, LAYER_CONCAT, node_base(n), ins, 2, &a, &out, &li))) return st;
    rn->init = im->layers[li]->name;
    return TS_OK;
}

/* the layer's weight (D, G*H, F+H) and bias (D, 2, G*H) in PyTorch's gate order from
 * ONNX's (lstm i,o,f,c -> i,f,g,o; gru z,r,h -> r,z,n) */
static ts_status fill_weights(importer *im, const rnn_node *rn, int li) {
    static const int LSTM_ORDER[4] = {0, 3, 1, 2}, GRU_ORDER[3] = {1, 0, 2}, RNN_ORDER[1] = {0};
    const int *order = rn->gates == 4 ? LSTM_ORDER : rn->gates == 3 ? GRU_ORDER : RNN_ORDER;
    const int64_t H = rn->hidden, F = rn->f, gh = rn->gates * H;
    float *W = const_floats(im, rn->w), *R = W ? const_floats(im, rn->r) : NULL;
    float *B = R && rn->b ? const_floats(im, rn->b) : NULL;
    float *w = R ? malloc(sizeof *w * (size_t)(rn->dirs * gh * (F + H))) : NULL;
    float *b = w ? calloc((size_t)(rn->dirs * 2 * gh), sizeof *b) : NULL;
    ts_status st = !b || (rn->b && !B) ? oom(im) : TS_OK;
    for (int d = 0; d < rn->dirs && !st; d++)
        for (int g = 0; g < rn->gates; g++)
            for (int64_t j = 0; j < H; j++) {
                const int64_t from = d * gh + g * H + j, to = d * gh + order[g] * H + j;
                memcpy(w + to * (F + H), W + from * F, sizeof *w * (size_t)F);
                memcpy(w + to * (F + H) + F, R + from * H, sizeof *w * (size_t)H);
                if (!B) continue;
                b[d * 2 * gh + order[g] * H + j] = B[d * 2 * gh + g * H + j];
                b[d * 2 * gh + gh + order[g] * H + j] = B[d * 2 * gh + gh + g * H + j];
            }
    if (!st) st = add_fill(im, im->layers[li]->t.weight, w, rn->dirs * gh * (F + H));
    if (!st) st = add_fill(im, im->layers[li]->t.bias, b, rn->dirs * 2 * gh);
    free(W), free(R), free(B), free(w), free(b);
    return st;
}

/* one layer with output mode `sequence` (1 every step, 0 the final h, 2 h then c) */
static ts_status emit_recurrent(importer *im, const Onnx__NodeProto *n, const rnn_node *rn, int relu, int lbr,
                                int sequence, int *li) {
    layer_attrs a;
    nn_attrs_default(rn->kind, &a);
    a.features = rn->hidden;
    a.bidirectional = rn->dirs == 2;
    a.sequence = sequence;
    a.initial = rn->init != NULL;
    a.cell_act = relu;
    a.lbr = lbr;
    const char *ins[3];
    int nins = 0;
    ins[nins++] = rn->x;
    if (rn->ids) ins[nins++] = rn->ids;
    if (rn->init) ins[nins++] = rn->init;
    const int64_t dh = (int64_t)rn->dirs * rn->hidden;
    const ts_shape out = sequence == 1 ? (ts_shape){2, {rn->t, dh}} : (ts_shape){1, {sequence == 2 ? 2 * dh : dh}};
    ts_status st = emit_layer(im, rn->kind, node_base(n), ins, nins, &a, &out, li);
    return st ? st : fill_weights(im, rn, *li);
}

/* output k (Y_h or Y_c): states [off, off + D*H) of layer li's per-sample output */
static ts_status define_states(importer *im, const Onnx__NodeProto *n, int k, const rnn_node *rn, int li, int64_t off) {
    const int64_t dh = (int64_t)rn->dirs * rn->hidden, total = im->layers[li]->out.dims[0];
    int src = li;
    if (total != dh) { /* a crop of h then c */
        layer_attrs pa;
        nn_attrs_default(LAYER_PAD, &pa);
        pa.npads = 2;
        pa.pads[0] = (int)-off;
        pa.pads[1] = (int)-(total - off - dh);
        const char *ins[1] = {im->layers[li]->name};
        const ts_shape out = {1, {dh}};
        ts_status st = emit_layer(im, LAYER_PAD, node_base(n), ins, 1, &pa, &out, &src);
        if (st) return st;
    }
    const int64_t nb = im->off ? -1 : 1; /* whole-tensor mode: a batch of 1 */
    const int64_t dims[3] = {rn->layout ? nb : rn->dirs, rn->layout ? rn->dirs : nb, rn->hidden};
    return define_layer_bax(im, n, k, src, 3, dims, rn->layout ? 0 : 1);
}

ts_status recurrent_rules(importer *im, const Onnx__NodeProto *n) {
    const char *op = n->op_type;
    rnn_node rn = {.kind = !strcmp(op, "LSTM") ? LAYER_LSTM : !strcmp(op, "GRU") ? LAYER_GRU : LAYER_RNN};
    rn.gates = rn.kind == LAYER_LSTM ? 4 : rn.kind == LAYER_GRU ? 3 : 1;
    int relu;
    ts_status st = check_attributes(im, n, &rn);
    return st ? st : check_activations(im, n, &rn, &relu);
}

static ts_status recurrent(importer *im, const Onnx__NodeProto *n, layer_kind kind) {
    rnn_node rn = {.kind = kind, .gates = kind == LAYER_LSTM ? 4 : kind == LAYER_GRU ? 3 : 1};
    int relu;
    ts_status st = check_attributes(im, n, &rn);
    if (!st) st = check_activations(im, n, &rn, &relu);
    if (st) return st;
    if (kind == LAYER_LSTM && node_input(im, n, 7)) {
        value *p = node_input(im, n, 7);
        if (p->kind != VALUE_CONST || !all_equal(p, 0.0))
            return unsupported(im, "input P (peepholes) other than zeros: tessera's lstm has none");
    }
    if ((st = sequence_input(im, n, &rn)) || (st = check_weights(im, n, &rn)) || (st = sequence_lengths(im, n, &rn)) ||
        (st = initial_states(im, n, &rn)))
        return st;
    const int lbr = kind == LAYER_GRU ? (int)attr_int(n, "linear_before_reset", 0) != 0 : 0;
    const int want_y = value_read(im, n->n_output > 0 ? n->output[0] : NULL);
    const int want_h = value_read(im, n->n_output > 1 ? n->output[1] : NULL);
    const int want_c = kind == LAYER_LSTM && value_read(im, n->n_output > 2 ? n->output[2] : NULL);
    int li;
    if (want_y) { /* every step: (T, D*H) per sample is Y's (T, D, H) */
        if ((st = emit_recurrent(im, n, &rn, relu, lbr, 1, &li))) return st;
        const int64_t nb = im->off ? -1 : 1; /* whole-tensor mode: a batch of 1 */
        const int64_t dims[4] = {rn.layout ? nb : rn.t, rn.layout ? rn.t : rn.dirs, rn.layout ? rn.dirs : nb, rn.hidden};
        if ((st = define_layer_bax(im, n, 0, li, 4, dims, rn.layout ? 0 : 2))) return st;
    }
    /* the final states need a layer of their own: with padding they are not Y's last step */
    if (want_c || want_h) {
        if ((st = emit_recurrent(im, n, &rn, relu, lbr, want_c ? 2 : 0, &li))) return st;
        if (want_h && (st = define_states(im, n, 1, &rn, li, 0))) return st;
        if (want_c && (st = define_states(im, n, 2, &rn, li, (int64_t)rn.dirs * rn.hidden))) return st;
    }
    return TS_OK;
}

ts_status op_rnn(importer *im, const Onnx__NodeProto *n) { return recurrent(im, n, LAYER_RNN); }
ts_status op_lstm(importer *im, const Onnx__NodeProto *n) { return recurrent(im, n, LAYER_LSTM); }
ts_status op_gru(importer *im, const Onnx__NodeProto *n) { return recurrent(im, n, LAYER_GRU); }
