/* tessera model -> ONNX (opset 13). Every layer becomes one to three standard
 * nodes; every value keeps the layout (batch, per-sample shape), so ONNX's
 * broadcasting is made to agree with tessera's per-sample broadcasting by
 * explicit reshapes where ranks differ. */
#include "core/testing.h"
#include "io/io.h"
#include "nn/nn.h"
#include "onnx.h"
#include "ops/ops.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT_OPSET 13

typedef struct exporter {
    ts_ctx *ctx;
    const ts_model *m;
    /* every allocation of the proto tree, freed together */
    void **owned;
    size_t nowned, capowned;
    Onnx__NodeProto **nodes;
    size_t nnodes, capnodes;
    Onnx__TensorProto **inits;
    size_t ninits, capinits;
    int failed;
    int tmp;        /* counter for helper value names */
} exporter;

static void *own(exporter *ex, void *p) {
    if (!p) {
        ex->failed = 1;
        return NULL;
    }
    if (ex->nowned == ex->capowned) {
        size_t cap = ex->capowned ? 2 * ex->capowned : 256;
        void **no = realloc(ex->owned, cap * sizeof *no);
        if (!no) {
            free(p);
            ex->failed = 1;
            return NULL;
        }
        ex->owned = no;
        ex->capowned = cap;
    }
    ex->owned[ex->nowned++] = p;
    return p;
}

static void *ex_calloc(exporter *ex, size_t n, size_t size) { return own(ex, calloc(n ? n : 1, size)); }

static char *ex_strdup(exporter *ex, const char *fmt, ...) TS_PRINTF(2, 3);
static char *ex_strdup(exporter *ex, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return own(ex, strdup(buf));
}

static int push(exporter *ex, void ***arr, size_t *n, size_t *cap, void *item) {
    if (!item) return 0;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        void **na = own(ex, calloc(nc, sizeof *na));
        if (!na) return 0;
        if (*n) memcpy(na, *arr, *n * sizeof *na);
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = item;
    return 1;
}

/* ---- initializers */

static const char *add_init(exporter *ex, const char *name, const int64_t *dims, int rank, const float *data) {
    Onnx__TensorProto *t = ex_calloc(ex, 1, sizeof *t);
    if (!t) return NULL;
    onnx__tensor_proto__init(t);
    t->name = ex_strdup(ex, "%s", name);
    t->n_dims = (size_t)rank;
    t->dims = ex_calloc(ex, (size_t)rank, sizeof *t->dims);
    int64_t numel = 1;
    for (int k = 0; k < rank && t->dims; k++) {
        t->dims[k] = dims[k];
        numel *= dims[k];
    }
    t->has_data_type = 1;
    t->data_type = ONNX_FLOAT;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)numel * sizeof(float);
    t->raw_data.data = ex_calloc(ex, t->raw_data.len, 1);
    if (!t->name || !t->dims || !t->raw_data.data) return NULL;
    memcpy(t->raw_data.data, data, t->raw_data.len); /* little-endian host (see file-format.md) */
    push(ex, (void ***)&ex->inits, &ex->ninits, &ex->capinits, t);
    return t->name;
}

static const char *add_init_i64(exporter *ex, const char *name, const int64_t *vals, int64_t count) {
    Onnx__TensorProto *t = ex_calloc(ex, 1, sizeof *t);
    if (!t) return NULL;
    onnx__tensor_proto__init(t);
    t->name = ex_strdup(ex, "%s", name);
    t->n_dims = 1;
    t->dims = ex_calloc(ex, 1, sizeof *t->dims);
    t->has_data_type = 1;
    t->data_type = ONNX_INT64;
    t->n_int64_data = (size_t)count;
    t->int64_data = ex_calloc(ex, (size_t)count, sizeof *t->int64_data);
    if (!t->name || !t->dims || !t->int64_data) return NULL;
    t->dims[0] = count;
    memcpy(t->int64_data, vals, (size_t)count * sizeof *vals);
    push(ex, (void ***)&ex->inits, &ex->ninits, &ex->capinits, t);
    return t->name;
}

/* An int8 or uint8 initializer (type ONNX_INT8 or ONNX_UINT8) of the values v,
 * already integers in the type's range. */
static const char *add_init_q8(exporter *ex, const char *name, const int64_t *dims, int rank, int type, const float *v) {
    Onnx__TensorProto *t = ex_calloc(ex, 1, sizeof *t);
    if (!t) return NULL;
    onnx__tensor_proto__init(t);
    t->name = ex_strdup(ex, "%s", name);
    t->n_dims = (size_t)rank;
    t->dims = ex_calloc(ex, (size_t)(rank ? rank : 1), sizeof *t->dims);
    int64_t numel = 1;
    for (int k = 0; k < rank && t->dims; k++) {
        t->dims[k] = dims[k];
        numel *= dims[k];
    }
    t->has_data_type = 1;
    t->data_type = type;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)numel;
    t->raw_data.data = ex_calloc(ex, t->raw_data.len ? t->raw_data.len : 1, 1);
    if (!t->name || !t->dims || !t->raw_data.data) return NULL;
    for (int64_t i = 0; i < numel; i++)
        t->raw_data.data[i] = type == ONNX_UINT8 ? (uint8_t)(int)v[i] : (uint8_t)(int8_t)(int)v[i];
    push(ex, (void ***)&ex->inits, &ex->ninits, &ex->capinits, t);
    return t->name;
}

static const char *tensor_init(exporter *ex, int t) {
    const tensor_entry *e = &ex->m->tensors[t];
    const float *data = (e->role == TS_TENSOR_PARAM ? ex->m->params : ex->m->buffers) + e->offset;
    return add_init(ex, e->name, e->shape.dims, e->shape.ndim, data);
}

static const char *scalar_init(exporter *ex, const char *name, float v) { return add_init(ex, name, NULL, 0, &v); }

/* ---- nodes */

static Onnx__NodeProto *add_node(exporter *ex, const char *op, const char *name, const char *const *ins, int nins,
                                 const char *out) {
    Onnx__NodeProto *n = ex_calloc(ex, 1, sizeof *n);
    if (!n) return NULL;
    onnx__node_proto__init(n);
    n->op_type = ex_strdup(ex, "%s", op);
    n->name = ex_strdup(ex, "%s", name);
    n->n_input = (size_t)nins;
    n->input = ex_calloc(ex, (size_t)nins, sizeof *n->input);
    n->n_output = 1;
    n->output = ex_calloc(ex, 1, sizeof *n->output);
    if (!n->op_type || !n->name || !n->input || !n->output) return NULL;
    for (int k = 0; k < nins; k++) n->input[k] = ex_strdup(ex, "%s", ins[k] ? ins[k] : "");
    n->output[0] = ex_strdup(ex, "%s", out);
    push(ex, (void ***)&ex->nodes, &ex->nnodes, &ex->capnodes, n);
    return n;
}

static Onnx__AttributeProto *add_attr(exporter *ex, Onnx__NodeProto *n, const char *name) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = ex_calloc(ex, 1, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ex_strdup(ex, "%s", name);
    Onnx__AttributeProto **na = ex_calloc(ex, n->n_attribute + 1, sizeof *na);
    if (!na || !a->name) return NULL;
    if (n->n_attribute) memcpy(na, n->attribute, n->n_attribute * sizeof *na);
    na[n->n_attribute++] = a;
    n->attribute = na;
    return a;
}

static void attr_i(exporter *ex, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = add_attr(ex, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

static void attr_f(exporter *ex, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = add_attr(ex, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
}

static void attr_s(exporter *ex, Onnx__NodeProto *n, const char *name, const char *v) {
    Onnx__AttributeProto *a = add_attr(ex, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)ex_strdup(ex, "%s", v);
}

static void attr_ints(exporter *ex, Onnx__NodeProto *n, const char *name, const int64_t *v, int count) {
    Onnx__AttributeProto *a = add_attr(ex, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count;
    a->ints = ex_calloc(ex, (size_t)count, sizeof *a->ints);
    if (a->ints) memcpy(a->ints, v, (size_t)count * sizeof *v);
}

static const char *value_name(exporter *ex, int li) {
    return li == 0 ? "input" : ex->m->layers[li].name;
}

static const char *tmp_name(exporter *ex, const char *base, const char *what) {
    return ex_strdup(ex, "%s/%s%d", base, what, ex->tmp++);
}

/* Reshape src to (batch, dims...) */
static const char *reshape_to(exporter *ex, const char *src, const char *base, const int64_t *dims, int rank,
                              const char *out) {
    int64_t shape[TS_MAX_DIMS + 2];
    shape[0] = -1;
    for (int k = 0; k < rank; k++) shape[k + 1] = dims[k];
    const char *sname = add_init_i64(ex, tmp_name(ex, base, "shape"), shape, rank + 1);
    const char *dst = out ? out : tmp_name(ex, base, "reshaped");
    const char *ins[2] = {src, sname};
    add_node(ex, "Reshape", tmp_name(ex, base, "reshape"), ins, 2, dst);
    return dst;
}

/* src of per-sample shape s seen with rank `want` (leading 1s after the batch) */
static const char *lift_rank(exporter *ex, const char *src, const char *base, const ts_shape *s, int want) {
    if (s->ndim >= want) return src;
    int64_t dims[TS_MAX_DIMS];
    int pad = want - s->ndim;
    for (int k = 0; k < want; k++) dims[k] = k < pad ? 1 : s->dims[k - pad];
    return reshape_to(ex, src, base, dims, want, NULL);
}

/* The shape (batch of x, dims...) as an int64 value: Concat(Gather(Shape(x), 0), dims),
 * for ops that take a whole shape while the batch axis is symbolic */
static const char *batch_shape(exporter *ex, const char *x, const char *base, const int64_t *dims, int rank) {
    const int64_t zero = 0;
    const char *shp = tmp_name(ex, base, "shape"), *nb = tmp_name(ex, base, "batch"), *tgt = tmp_name(ex, base, "target");
    const char *ins1[1] = {x};
    add_node(ex, "Shape", tmp_name(ex, base, "shape_of"), ins1, 1, shp);
    const char *ins2[2] = {shp, add_init_i64(ex, tmp_name(ex, base, "zero"), &zero, 1)};
    attr_i(ex, add_node(ex, "Gather", tmp_name(ex, base, "gather"), ins2, 2, nb), "axis", 0);
    const char *ins3[2] = {nb, add_init_i64(ex, tmp_name(ex, base, "dims"), dims, rank)};
    attr_i(ex, add_node(ex, "Concat", tmp_name(ex, base, "concat"), ins3, 2, tgt), "axis", 0);
    return tgt;
}

/* Every attribute the kind's schema maps to an ONNX attribute of the same meaning
 * (attr_spec.onnx: kernel_shape, strides, pads in ONNX's begin/end order, group,
 * alpha, ...); those written only when not their default are skipped at it. */
static void schema_attrs(exporter *ex, Onnx__NodeProto *n, const layer *l) {
    for (int i = 0; i < LAYER_OPS[l->kind].nattrs; i++) {
        const attr_spec *sp = &LAYER_OPS[l->kind].attrs[i];
        if (!sp->onnx || ((sp->flags & ATTR_OMIT_DEFAULT) && attr_is_default(sp, &l->attrs))) continue;
        layer_attrs *a = (layer_attrs *)&l->attrs;
        switch (sp->type) {
        case ATTR_INT: attr_i(ex, n, sp->onnx, *attr_int_field(sp, a, 0)); break;
        case ATTR_FLOAT: attr_f(ex, n, sp->onnx, *(const float *)(const void *)((const char *)a + sp->off)); break;
        case ATTR_PAIR: {
            int64_t v[2] = {*attr_int_field(sp, a, 0), *attr_int_field(sp, a, 1)};
            attr_ints(ex, n, sp->onnx, v, 2);
            break;
        }
        case ATTR_PADDING: {
            int64_t v[4] = {l->ph, l->pw, l->pbh, l->pbw};
            attr_ints(ex, n, sp->onnx, v, 4);
            break;
        }
        default: break; /* shapes, lists and choices map by hand */
        }
    }
}

/* ---- sequence layers: ONNX's recurrent operators are time-major (T, N, F) and keep
 * the directions apart; tessera's layers are batch-first with both directions side by
 * side, so a layer becomes Transpose -> RNN/LSTM/GRU -> Transpose/Reshape. */

/* A node's extra outputs (add_node makes one): outs[0..k-1] replace its outputs */
static void node_outputs(exporter *ex, Onnx__NodeProto *n, const char *const *outs, int k) {
    if (!n) return;
    char **o = ex_calloc(ex, (size_t)k, sizeof *o);
    if (!o) return;
    for (int i = 0; i < k; i++) o[i] = ex_strdup(ex, "%s", outs[i] ? outs[i] : "");
    n->output = o;
    n->n_output = (size_t)k;
}

static void attr_strs(exporter *ex, Onnx__NodeProto *n, const char *name, const char *const *v, int count) {
    Onnx__AttributeProto *a = add_attr(ex, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
    a->n_strings = (size_t)count;
    a->strings = ex_calloc(ex, (size_t)count, sizeof *a->strings);
    for (int i = 0; a->strings && i < count; i++) {
        a->strings[i].data = (uint8_t *)ex_strdup(ex, "%s", v[i]);
        a->strings[i].len = strlen(v[i]);
    }
}

/* The lengths (N) as int32 from token ids (N, T): 1 + the last step whose id is not 0,
 * as the layer finds them: ReduceMax(Cast(ids != 0) * [1..T]) */
static const char *lengths_from_ids(exporter *ex, const char *ids, const char *base, int t) {
    float *steps = malloc(sizeof *steps * (size_t)t);
    if (!steps) return NULL;
    for (int i = 0; i < t; i++) steps[i] = (float)(i + 1);
    const int64_t dims[1] = {t};
    const char *range = add_init(ex, tmp_name(ex, base, "steps"), dims, 1, steps);
    free(steps);
    const char *zero = scalar_init(ex, tmp_name(ex, base, "zero"), 0.0f);
    const char *eq = tmp_name(ex, base, "is_pad"), *nz = tmp_name(ex, base, "not_pad"), *f = tmp_name(ex, base, "real");
    const char *w = tmp_name(ex, base, "at"), *mx = tmp_name(ex, base, "len_f"), *len = tmp_name(ex, base, "lengths");
    const char *i1[2] = {ids, zero}, *i2[1] = {eq}, *i3[1] = {nz}, *i4[2] = {f, range}, *i5[1] = {w}, *i6[1] = {mx};
    add_node(ex, "Equal", tmp_name(ex, base, "equal"), i1, 2, eq);
    add_node(ex, "Not", tmp_name(ex, base, "not"), i2, 1, nz);
    attr_i(ex, add_node(ex, "Cast", tmp_name(ex, base, "cast"), i3, 1, f), "to", ONNX_FLOAT);
    add_node(ex, "Mul", tmp_name(ex, base, "mul"), i4, 2, w);
    Onnx__NodeProto *r = add_node(ex, "ReduceMax", tmp_name(ex, base, "reducemax"), i5, 1, mx);
    const int64_t ax[1] = {1};
    attr_ints(ex, r, "axes", ax, 1);
    attr_i(ex, r, "keepdims", 0);
    attr_i(ex, add_node(ex, "Cast", tmp_name(ex, base, "cast"), i6, 1, len), "to", ONNX_INT32);
    return len;
}

/* (N, D*H) per-sample states, from (D, N, H) */
static const char *states_batch_first(exporter *ex, const char *src, const char *base, int64_t dh, const char *out) {
    const int64_t perm[3] = {1, 0, 2};
    const char *t = tmp_name(ex, base, "states"), *ins[1] = {src};
    attr_ints(ex, add_node(ex, "Transpose", tmp_name(ex, base, "transpose"), ins, 1, t), "perm", perm, 3);
    return reshape_to(ex, t, base, &dh, 1, out);
}

/* (D, N, H) from columns [off, off + D*H) of per-sample states (N, S) */
static const char *states_time_major(exporter *ex, const char *src, const char *base, int d, int h, int64_t off) {
    const int64_t st[1] = {off}, en[1] = {off + (int64_t)d * h}, ax[1] = {1}, dims[2] = {d, h}, perm[3] = {1, 0, 2};
    const char *cut = tmp_name(ex, base, "state_part"), *t = tmp_name(ex, base, "state_tm");
    const char *ins[4] = {src, add_init_i64(ex, tmp_name(ex, base, "starts"), st, 1),
                          add_init_i64(ex, tmp_name(ex, base, "ends"), en, 1), add_init_i64(ex, tmp_name(ex, base, "axes"), ax, 1)};
    add_node(ex, "Slice", tmp_name(ex, base, "slice"), ins, 4, cut);
    const char *r = reshape_to(ex, cut, base, dims, 2, NULL), *ins2[1] = {r};
    attr_ints(ex, add_node(ex, "Transpose", tmp_name(ex, base, "transpose"), ins2, 1, t), "perm", perm, 3);
    return t;
}

static ts_status export_recurrent(exporter *ex, int li) {
    const ts_model *m = ex->m;
    const layer *l = &m->layers[li];
    if (l->step_mask) /* ONNX's RNN, LSTM and GRU have one weight copy for every step */
        return ts_fail(ex->ctx, TS_EUNSUPPORTED,
                       "export: %s '%s' has a per-step unit mask (an unrolled tagger module), which ONNX's %s cannot "
                       "express",
                       LAYER_OPS[l->kind].name, l->name,
                       l->kind == LAYER_LSTM ? "LSTM" : l->kind == LAYER_GRU ? "GRU" : "RNN");
    const ts_shape *xs = &m->layers[l->inputs[0]].out;
    const int T = (int)xs->dims[0], F = (int)xs->dims[1], H = l->features, D = l->bidirectional ? 2 : 1;
    const int G = l->kind == LAYER_LSTM ? 4 : l->kind == LAYER_GRU ? 3 : 1;
    /* ONNX's gate order, as tessera's gate blocks: lstm i,o,f,c from i,f,g,o; gru z,r,h from r,z,n */
    static const int LSTM_ORDER[4] = {0, 3, 1, 2}, GRU_ORDER[3] = {1, 0, 2}, RNN_ORDER[1] = {0};
    const int *order = G == 4 ? LSTM_ORDER : G == 3 ? GRU_ORDER : RNN_ORDER;
    const tensor_entry *we = &m->tensors[l->weight], *be = &m->tensors[l->bias_t];
    const float *w = m->params + we->offset, *b = m->params + be->offset;
    const size_t gh = (size_t)G * H;
    float *W = malloc(sizeof *W * (size_t)D * gh * F), *R = malloc(sizeof *R * (size_t)D * gh * H);
    float *B = malloc(sizeof *B * (size_t)D * 2 * gh);
    if (!W || !R || !B) {
        free(W), free(R), free(B);
        return ts_fail(ex->ctx, TS_ENOMEM, "export: out of memory");
    }
    for (int d = 0; d < D; d++)
        for (int g = 0; g < G; g++)
            for (int j = 0; j < H; j++) {
                const size_t to = (size_t)d * gh + (size_t)g * H + j, from = (size_t)d * gh + (size_t)order[g] * H + j;
                memcpy(W + to * F, w + from * (size_t)(F + H), sizeof *W * (size_t)F);
                memcpy(R + to * H, w + from * (size_t)(F + H) + F, sizeof *R * (size_t)H);
                B[(size_t)d * 2 * gh + (size_t)g * H + j] = b[(size_t)d * 2 * gh + (size_t)order[g] * H + j];
                B[(size_t)d * 2 * gh + gh + (size_t)g * H + j] = b[(size_t)d * 2 * gh + gh + (size_t)order[g] * H + j];
            }
    const int64_t wd[3] = {D, (int64_t)gh, F}, rd[3] = {D, (int64_t)gh, H}, bd[2] = {D, 2 * (int64_t)gh};
    const char *base = l->name;
    const char *wn = add_init(ex, tmp_name(ex, base, "W"), wd, 3, W), *rn = add_init(ex, tmp_name(ex, base, "R"), rd, 3, R);
    const char *bn = add_init(ex, tmp_name(ex, base, "B"), bd, 2, B);
    free(W), free(R), free(B);
    /* X time-major */
    const int64_t perm3[3] = {1, 0, 2};
    const char *xt = tmp_name(ex, base, "x_tm"), *ix[1] = {value_name(ex, l->inputs[0])};
    attr_ints(ex, add_node(ex, "Transpose", tmp_name(ex, base, "transpose"), ix, 1, xt), "perm", perm3, 3);
    const int has_ids = l->ninputs - l->initial == 2;
    const char *lens = has_ids ? lengths_from_ids(ex, value_name(ex, l->inputs[1]), base, T) : NULL;
    const char *h0 = NULL, *c0 = NULL;
    if (l->initial) {
        const char *init = value_name(ex, l->inputs[l->ninputs - 1]);
        h0 = states_time_major(ex, init, base, D, H, 0);
        if (G == 4) c0 = states_time_major(ex, init, base, D, H, (int64_t)D * H);
    }
    const char *y = tmp_name(ex, base, "Y"), *yh = tmp_name(ex, base, "Y_h"), *yc = G == 4 ? tmp_name(ex, base, "Y_c") : NULL;
    const char *ins[7] = {xt, wn, rn, bn, lens, h0, c0};
    Onnx__NodeProto *n = add_node(ex, G == 4 ? "LSTM" : G == 3 ? "GRU" : "RNN", base, ins, G == 4 ? 7 : 6, y);
    const char *outs[3] = {y, yh, yc};
    node_outputs(ex, n, outs, G == 4 ? 3 : 2);
    attr_i(ex, n, "hidden_size", H);
    attr_s(ex, n, "direction", D == 2 ? "bidirectional" : "forward");
    if (G == 3) attr_i(ex, n, "linear_before_reset", l->lbr);
    if (G == 1) {
        const char *acts[2] = {l->cell_act ? "Relu" : "Tanh", l->cell_act ? "Relu" : "Tanh"};
        attr_strs(ex, n, "activations", acts, D);
    }
    const char *out = value_name(ex, li);
    const int64_t dh = (int64_t)D * H;
    if (l->sequence == 1) { /* Y (T, D, N, H) -> (N, T, D, H) -> (N, T, D*H) */
        const int64_t perm4[4] = {2, 0, 1, 3}, dims[2] = {T, dh};
        const char *yt = tmp_name(ex, base, "y_bf"), *iy[1] = {y};
        attr_ints(ex, add_node(ex, "Transpose", tmp_name(ex, base, "transpose"), iy, 1, yt), "perm", perm4, 4);
        reshape_to(ex, yt, base, dims, 2, out);
    } else if (l->sequence == 0 || G != 4) {
        states_batch_first(ex, yh, base, dh, out);
    } else { /* h then c, each (N, D*H) */
        const char *parts[2] = {states_batch_first(ex, yh, base, dh, NULL), states_batch_first(ex, yc, base, dh, NULL)};
        attr_i(ex, add_node(ex, "Concat", tmp_name(ex, base, "concat"), parts, 2, out), "axis", 1);
    }
    return ex->failed ? ts_fail(ex->ctx, TS_ENOMEM, "export: out of memory") : TS_OK;
}

/* ---- int8 convolutions as QDQ (QuantizeLinear -> DequantizeLinear in front of the
 * Conv's input, DequantizeLinear of int8 weights with one scale per output channel,
 * axis 0, opset 13): the values tessera's int8 inference computes with. */

/* x through Quantize/DequantizeLinear with scale s, zero point 0 (uint8 when u8, else int8) */
static const char *qdq_input(exporter *ex, const char *x, const char *base, float s, int u8) {
    const float zero = 0.0f;
    const char *sc = scalar_init(ex, tmp_name(ex, base, "x_scale"), s);
    const char *zp = add_init_q8(ex, tmp_name(ex, base, "x_zero_point"), NULL, 0, u8 ? ONNX_UINT8 : ONNX_INT8, &zero);
    const char *xq = tmp_name(ex, base, "x_q"), *xd = tmp_name(ex, base, "x_dq");
    const char *i1[3] = {x, sc, zp}, *i2[3] = {xq, sc, zp};
    add_node(ex, "QuantizeLinear", tmp_name(ex, base, "quantize"), i1, 3, xq);
    add_node(ex, "DequantizeLinear", tmp_name(ex, base, "dequantize"), i2, 3, xd);
    return xd;
}

/* conv2d li's weights as int8 per output channel, dequantized */
static const char *qdq_weights(exporter *ex, const layer *l) {
    const tensor_entry *e = &ex->m->tensors[l->weight];
    const float *w = ex->m->params + e->offset;
    const int k = l->features;
    const int64_t per = e->numel / k;
    float *q = malloc(sizeof *q * (size_t)e->numel), *scale = malloc(sizeof *scale * (size_t)k);
    float *zeros = calloc((size_t)k, sizeof *zeros);
    const char *out = NULL;
    if (q && scale && zeros) {
        for (int o = 0; o < k; o++) { /* the integers quantize_weights_ref dequantizes */
            scale[o] = quantize_weight_scale(per, w + (size_t)o * (size_t)per);
            const float inv = 1.0f / scale[o];
            for (int64_t i = 0; i < per; i++) {
                float v = nearbyintf(w[(size_t)o * (size_t)per + (size_t)i] * inv);
                q[(size_t)o * (size_t)per + (size_t)i] = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
            }
        }
        const int64_t kd[1] = {k};
        const char *wq = add_init_q8(ex, tmp_name(ex, l->name, "w_q"), e->shape.dims, e->shape.ndim, ONNX_INT8, q);
        const char *sc = add_init(ex, tmp_name(ex, l->name, "w_scale"), kd, 1, scale);
        const char *zp = add_init_q8(ex, tmp_name(ex, l->name, "w_zero_point"), kd, 1, ONNX_INT8, zeros);
        const char *ins[3] = {wq, sc, zp};
        out = tmp_name(ex, l->name, "w_dq");
        attr_i(ex, add_node(ex, "DequantizeLinear", tmp_name(ex, l->name, "dequantize_w"), ins, 3, out), "axis", 0);
    } else {
        ex->failed = 1;
    }
    free(q);
    free(scale);
    free(zeros);
    return out;
}

static ts_status export_layer(exporter *ex, int li) {
    const ts_model *m = ex->m;
    const layer *l = &m->layers[li];
    const char *out = value_name(ex, li), *name = l->name;
    const char *x = l->ninputs ? value_name(ex, l->inputs[0]) : NULL;
    const ts_shape *xs = l->ninputs ? &m->layers[l->inputs[0]].out : NULL;
    Onnx__NodeProto *n = NULL;
    switch (l->kind) {
    case LAYER_INPUT: return TS_OK;
    case LAYER_CONV2D: {
        float qs;
        int u8;
        const int q8 = ts_model_int8_layer(m, li, &qs, &u8);
        const char *ins[3] = {q8 ? qdq_input(ex, x, name, qs, u8) : x, q8 ? qdq_weights(ex, l) : tensor_init(ex, l->weight),
                              l->bias_t >= 0 ? tensor_init(ex, l->bias_t) : NULL};
        n = add_node(ex, "Conv", name, ins, l->bias_t >= 0 ? 3 : 2, out);
        schema_attrs(ex, n, l);
        break;
    }
    case LAYER_CONVTRANSPOSE: {
        const char *ins[3] = {x, tensor_init(ex, l->weight), l->bias_t >= 0 ? tensor_init(ex, l->bias_t) : NULL};
        n = add_node(ex, "ConvTranspose", name, ins, l->bias_t >= 0 ? 3 : 2, out);
        schema_attrs(ex, n, l);
        break;
    }
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL: {
        const char *ins[1] = {x};
        n = add_node(ex, l->kind == LAYER_MAXPOOL ? "MaxPool" : "AveragePool", name, ins, 1, out);
        schema_attrs(ex, n, l);
        break;
    }
    case LAYER_GLOBALAVGPOOL:
    case LAYER_GLOBALMAXPOOL: {
        const char *ins[1] = {x};
        const char *pooled = tmp_name(ex, name, "pooled");
        add_node(ex, l->kind == LAYER_GLOBALAVGPOOL ? "GlobalAveragePool" : "GlobalMaxPool", name, ins, 1, pooled);
        const char *ins2[1] = {pooled};
        n = add_node(ex, "Flatten", tmp_name(ex, name, "flatten"), ins2, 1, out);
        attr_i(ex, n, "axis", 1);
        break;
    }
    case LAYER_BATCHNORM: {
        const char *ins[5] = {x, tensor_init(ex, l->weight), tensor_init(ex, l->bias_t), tensor_init(ex, l->running_mean),
                              tensor_init(ex, l->running_var)};
        n = add_node(ex, "BatchNormalization", name, ins, 5, out);
        schema_attrs(ex, n, l);
        attr_f(ex, n, "momentum", 1.0f - l->momentum); /* ONNX weighs the running value */
        break;
    }
    case LAYER_EMBEDDING: { /* Gather of the ids as int64 */
        const char *ids = tmp_name(ex, name, "ids"), *ins[1] = {x};
        attr_i(ex, add_node(ex, "Cast", tmp_name(ex, name, "cast"), ins, 1, ids), "to", ONNX_INT64);
        const char *ins2[2] = {tensor_init(ex, l->weight), ids};
        n = add_node(ex, "Gather", name, ins2, 2, out);
        attr_i(ex, n, "axis", 0);
        break;
    }
    case LAYER_RNN:
    case LAYER_LSTM:
    case LAYER_GRU: return export_recurrent(ex, li);
    case LAYER_DENSE: {
        if (l->out.ndim != 1) { /* over a sequence: MatMul by W^T, then the bias */
            const tensor_entry *we = &m->tensors[l->weight];
            const int64_t o = we->shape.dims[0], i = we->shape.dims[1], dims[2] = {i, o};
            float *wt = malloc(sizeof *wt * (size_t)(o * i));
            if (!wt) return ts_fail(ex->ctx, TS_ENOMEM, "export: out of memory");
            const float *w = m->params + we->offset;
            for (int64_t r = 0; r < o; r++)
                for (int64_t c = 0; c < i; c++) wt[c * o + r] = w[r * i + c];
            const char *mm = l->bias_t >= 0 ? tmp_name(ex, name, "matmul") : out;
            const char *ins[2] = {x, add_init(ex, tmp_name(ex, name, "weight_t"), dims, 2, wt)};
            free(wt);
            n = add_node(ex, "MatMul", name, ins, 2, mm);
            if (l->bias_t >= 0) {
                const char *ins2[2] = {mm, tensor_init(ex, l->bias_t)};
                add_node(ex, "Add", tmp_name(ex, name, "add"), ins2, 2, out);
            }
            break;
        }
        const char *ins[3] = {x, tensor_init(ex, l->weight), l->bias_t >= 0 ? tensor_init(ex, l->bias_t) : NULL};
        n = add_node(ex, "Gemm", name, ins, l->bias_t >= 0 ? 3 : 2, out);
        attr_i(ex, n, "transB", 1);
        break;
    }
    case LAYER_RELU:
    case LAYER_SIGMOID:
    case LAYER_TANH: {
        const char *ins[1] = {x};
        n = add_node(ex, l->kind == LAYER_RELU ? "Relu" : l->kind == LAYER_SIGMOID ? "Sigmoid" : "Tanh", name, ins, 1, out);
        break;
    }
    case LAYER_LEAKYRELU:
    case LAYER_ELU: {
        const char *ins[1] = {x};
        n = add_node(ex, l->kind == LAYER_LEAKYRELU ? "LeakyRelu" : "Elu", name, ins, 1, out);
        schema_attrs(ex, n, l);
        break;
    }
    case LAYER_SELU: {
        const char *ins[1] = {x};
        n = add_node(ex, "Selu", name, ins, 1, out);
        schema_attrs(ex, n, l);
        break;
    }
    case LAYER_HARDSIGMOID: {
        const char *ins[1] = {x};
        n = add_node(ex, "HardSigmoid", name, ins, 1, out);
        schema_attrs(ex, n, l);
        break;
    }
    case LAYER_HARDSWISH: {
        /* HardSwish is opset 14; at 13 it is x * HardSigmoid(x; 1/6, 1/2), its definition */
        const char *ins[1] = {x};
        const char *hs = tmp_name(ex, name, "hardsigmoid");
        n = add_node(ex, "HardSigmoid", tmp_name(ex, name, "gate"), ins, 1, hs);
        attr_f(ex, n, "alpha", 1.0f / 6.0f);
        attr_f(ex, n, "beta", 0.5f);
        const char *ins2[2] = {x, hs};
        n = add_node(ex, "Mul", name, ins2, 2, out);
        break;
    }
    case LAYER_SQRT:
    case LAYER_ERF: {
        const char *ins[1] = {x};
        n = add_node(ex, l->kind == LAYER_SQRT ? "Sqrt" : "Erf", name, ins, 1, out);
        break;
    }
    case LAYER_POW: {
        const char *ins[2] = {x, scalar_init(ex, tmp_name(ex, name, "exponent"), l->exponent)};
        n = add_node(ex, "Pow", name, ins, 2, out);
        break;
    }
    case LAYER_REDUCEMEAN: {
        int64_t axes[TS_MAX_DIMS];
        for (int k = 0; k < l->naxes; k++) axes[k] = l->axes[k] + 1;
        const char *ins[1] = {x};
        n = add_node(ex, "ReduceMean", name, ins, 1, out);
        attr_ints(ex, n, "axes", axes, l->naxes);
        attr_i(ex, n, "keepdims", 1);
        break;
    }
    case LAYER_RESIZE: {
        /* scale: scales (1 before H and W); size: sizes, whose batch entry comes from x */
        const int r = xs->ndim;
        if (l->coord_mode == RESIZE_TF_HALF_PIXEL_FOR_NN &&
            !(l->resize_mode == RESIZE_NEAREST &&
              (l->nearest_mode == RESIZE_FLOOR || l->nearest_mode == RESIZE_ROUND_PREFER_FLOOR)))
            return ts_fail(ex->ctx, TS_EUNSUPPORTED,
                           "export: resize '%s': tf_half_pixel_for_nn that does not round down has no ONNX form "
                           "(ONNX applies it to the batch and channel axes too)",
                           l->name);
        const char *ins[4] = {x, NULL, NULL, NULL};
        if (l->size_h > 0) {
            int64_t dims[TS_MAX_DIMS];
            memcpy(dims, xs->dims, (size_t)r * sizeof *dims);
            dims[r - 2] = l->size_h;
            dims[r - 1] = l->size_w;
            ins[3] = batch_shape(ex, x, name, dims, r);
        } else {
            float scales[TS_MAX_DIMS + 1];
            const int64_t count = r + 1;
            for (int k = 0; k < r - 1; k++) scales[k] = 1.0f;
            scales[r - 1] = l->scale_h;
            scales[r] = l->scale_w;
            ins[2] = add_init(ex, tmp_name(ex, name, "scales"), &count, 1, scales);
        }
        n = add_node(ex, "Resize", name, ins, ins[3] ? 4 : 3, out);
        /* the schema's names are ONNX's */
        attr_s(ex, n, "mode", attr_find(LAYER_RESIZE, "mode")->choices[l->resize_mode]);
        attr_s(ex, n, "coordinate_transformation_mode", attr_find(LAYER_RESIZE, "coord")->choices[l->coord_mode]);
        if (l->resize_mode == RESIZE_NEAREST)
            attr_s(ex, n, "nearest_mode", attr_find(LAYER_RESIZE, "nearest")->choices[l->nearest_mode]);
        break;
    }
    case LAYER_CLIP: {
        const char *ins[3] = {x, l->lo > -INFINITY ? scalar_init(ex, tmp_name(ex, name, "min"), l->lo) : NULL,
                              l->hi < INFINITY ? scalar_init(ex, tmp_name(ex, name, "max"), l->hi) : NULL};
        n = add_node(ex, "Clip", name, ins, ins[2] ? 3 : ins[1] ? 2 : 1, out);
        break;
    }
    case LAYER_PRELU: {
        const char *ins[2] = {x, tensor_init(ex, l->weight)};
        n = add_node(ex, "PRelu", name, ins, 2, out);
        break;
    }
    case LAYER_SOFTMAX:
    case LAYER_LOGSOFTMAX: {
        const char *op = l->kind == LAYER_SOFTMAX ? "Softmax" : "LogSoftmax";
        int r = xs->ndim, a = l->axis < 0 ? l->axis + r : l->axis;
        const char *ins[1] = {x};
        if (!l->coerce || a == r - 1) {
            n = add_node(ex, op, name, ins, 1, out);
            attr_i(ex, n, "axis", a + 1);
        } else {
            /* over all axes from a on: flatten them, softmax, restore */
            int64_t dims[TS_MAX_DIMS + 1];
            int nd = 0;
            for (int k = 0; k < a; k++) dims[nd++] = xs->dims[k];
            int64_t rest = 1;
            for (int k = a; k < r; k++) rest *= xs->dims[k];
            dims[nd++] = rest;
            const char *flat = reshape_to(ex, x, name, dims, nd, NULL);
            const char *sm = tmp_name(ex, name, "softmax");
            const char *ins2[1] = {flat};
            n = add_node(ex, op, name, ins2, 1, sm);
            attr_i(ex, n, "axis", nd);
            reshape_to(ex, sm, name, xs->dims, r, out);
        }
        break;
    }
    case LAYER_ADD: {
        const char *ins[LAYER_MAX_INPUTS];
        for (int k = 0; k < l->ninputs; k++) ins[k] = value_name(ex, l->inputs[k]);
        n = add_node(ex, l->ninputs == 2 ? "Add" : "Sum", name, ins, l->ninputs, out);
        break;
    }
    case LAYER_CONCAT: {
        const char *ins[LAYER_MAX_INPUTS];
        for (int k = 0; k < l->ninputs; k++) ins[k] = value_name(ex, l->inputs[k]);
        n = add_node(ex, "Concat", name, ins, l->ninputs, out);
        attr_i(ex, n, "axis", l->axis + 1);
        break;
    }
    case LAYER_FLATTEN: {
        const char *ins[1] = {x};
        n = add_node(ex, "Flatten", name, ins, 1, out);
        attr_i(ex, n, "axis", 1);
        break;
    }
    case LAYER_DROPOUT: {
        const char *ins[2] = {x, scalar_init(ex, tmp_name(ex, name, "ratio"), l->p)};
        n = add_node(ex, "Dropout", name, ins, 2, out);
        break;
    }
    case LAYER_MASK: {
        const char *ins[2] = {x, tensor_init(ex, l->mask)};
        n = add_node(ex, "Mul", name, ins, 2, out);
        break;
    }
    case LAYER_CONSTANT: {
        /* the stored tensor expanded to (batch, shape): Expand(value, [N, shape]) */
        const ts_shape *s = &l->out;
        int64_t one_dims[TS_MAX_DIMS + 1], rest[TS_MAX_DIMS];
        one_dims[0] = 1;
        for (int k = 0; k < s->ndim; k++) one_dims[k + 1] = rest[k] = s->dims[k];
        const tensor_entry *e = &m->tensors[l->konst];
        const char *val = add_init(ex, e->name, one_dims, s->ndim + 1, m->buffers + e->offset);
        const char *ins4[2] = {val, batch_shape(ex, x, name, rest, s->ndim)};
        n = add_node(ex, "Expand", name, ins4, 2, out);
        break;
    }
    case LAYER_RESHAPE: n = NULL; reshape_to(ex, x, name, l->out.dims, l->out.ndim, out); break;
    case LAYER_TRANSPOSE: {
        int64_t perm[TS_MAX_DIMS + 1] = {0};
        for (int k = 0; k < xs->ndim; k++) perm[k + 1] = l->perm[k] + 1;
        const char *ins[1] = {x};
        n = add_node(ex, "Transpose", name, ins, 1, out);
        attr_ints(ex, n, "perm", perm, xs->ndim + 1);
        break;
    }
    case LAYER_PAD: {
        static const char *const modes[] = {"constant", "reflect", "edge"};
        int r = xs->ndim;
        int64_t pads[2 * (TS_MAX_DIMS + 1)] = {0};
        for (int k = 0; k < r; k++) {
            pads[k + 1] = l->pads[k];
            pads[r + 1 + k + 1] = l->pads[r + k];
        }
        const char *ins[3] = {x, add_init_i64(ex, tmp_name(ex, name, "pads"), pads, 2 * (r + 1)),
                              scalar_init(ex, tmp_name(ex, name, "value"), l->value)};
        n = add_node(ex, "Pad", name, ins, 3, out);
        attr_s(ex, n, "mode", modes[l->pad_mode]);
        break;
    }
    case LAYER_BINARY: {
        static const char *const ops[] = {"Add", "Sub", "Mul", "Div"};
        const char *a, *b;
        int want = l->out.ndim;
        if (l->konst >= 0) {
            const char *c = tensor_init(ex, l->konst);
            const char *xv = lift_rank(ex, x, name, xs, want);
            a = l->const_first ? c : xv;
            b = l->const_first ? xv : c;
        } else {
            a = lift_rank(ex, x, name, xs, want);
            b = lift_rank(ex, value_name(ex, l->inputs[1]), name, &m->layers[l->inputs[1]].out, want);
        }
        const char *ins[2] = {a, b};
        n = add_node(ex, ops[l->op], name, ins, 2, out);
        break;
    }
    case LAYER_MATMUL: {
        if (l->ninputs == 2) { /* both computed: per-sample ranks lifted to one, batch axis in front */
            const ts_shape *ys = &m->layers[l->inputs[1]].out;
            if (xs->ndim < 2 || ys->ndim < 2)
                return ts_fail(ex->ctx, TS_EUNSUPPORTED,
                               "export: matmul '%s' of two inputs with a 1-D operand has no ONNX form yet", l->name);
            const int want = xs->ndim > ys->ndim ? xs->ndim : ys->ndim;
            const char *ins[2] = {lift_rank(ex, x, name, xs, want),
                                  lift_rank(ex, value_name(ex, l->inputs[1]), name, ys, want)};
            n = add_node(ex, "MatMul", name, ins, 2, out);
            break;
        }
        const ts_shape *bs = &m->tensors[l->weight].shape;
        const char *a = x;
        if (xs->ndim == 1) {
            int64_t dims[TS_MAX_DIMS];
            int nd = 0;
            for (int k = 0; k < bs->ndim - 2; k++) dims[nd++] = 1;
            dims[nd++] = 1;
            dims[nd++] = xs->dims[0];
            if (bs->ndim > 1) a = reshape_to(ex, x, name, dims, nd, NULL);
        } else if (bs->ndim > xs->ndim) {
            a = lift_rank(ex, x, name, xs, bs->ndim);
        }
        const char *mm = tmp_name(ex, name, "matmul");
        const char *ins[2] = {a, tensor_init(ex, l->weight)};
        n = add_node(ex, "MatMul", name, ins, 2, mm);
        reshape_to(ex, mm, name, l->out.dims, l->out.ndim, out);
        break;
    }
    default:
        return ts_fail(ex->ctx, TS_EUNSUPPORTED, "export: layer '%s' (kind %d) has no ONNX form yet", l->name,
                       (int)l->kind);
    }
    (void)n;
    return ex->failed ? ts_fail(ex->ctx, TS_ENOMEM, "export: out of memory") : TS_OK;
}

/* names[k] (NULL: none) makes per-sample axis k symbolic: a free-size model's height
 * and width, and the output axes that follow them */
static Onnx__ValueInfoProto *value_info(exporter *ex, const char *name, const ts_shape *s, const char *const *names) {
    Onnx__ValueInfoProto *v = ex_calloc(ex, 1, sizeof *v);
    Onnx__TypeProto *tp = ex_calloc(ex, 1, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ex_calloc(ex, 1, sizeof *tt);
    Onnx__TensorShapeProto *sp = ex_calloc(ex, 1, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims = ex_calloc(ex, (size_t)s->ndim + 1, sizeof *dims);
    if (!v || !tp || !tt || !sp || !dims) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int k = 0; k <= s->ndim; k++) {
        Onnx__TensorShapeProto__Dimension *d = ex_calloc(ex, 1, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (k == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ex_strdup(ex, "batch");
        } else if (names && names[k - 1]) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ex_strdup(ex, "%s", names[k - 1]);
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = s->dims[k - 1];
        }
        dims[k] = d;
    }
    sp->n_dim = (size_t)s->ndim + 1;
    sp->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX_FLOAT;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = ex_strdup(ex, "%s", name);
    v->type = tp;
    return v;
}

/* A free-size model's symbolic axes: the input's height and width, and the output's
 * axes whose sizes follow them (those that differ at another size). */
static ts_status free_axes(ts_ctx *ctx, const ts_model *m, const char **in, const char **out) {
    static const char *const OUT_NAMES[TS_MAX_DIMS] = {"out_axis0", "out_axis1", "out_axis2",
                                                        "out_axis3", "out_axis4", "out_axis5"};
    in[1] = "height";
    in[2] = "width";
    ts_shape other;
    ts_status st = free_hw_output_at(ctx, m, (int)m->input.dims[1] + 32, (int)m->input.dims[2] + 32, &other);
    const ts_shape *o = &m->layers[m->nlayers - 1].out;
    for (int k = 0; !st && k < o->ndim; k++)
        if (other.dims[k] != o->dims[k])
            out[k] = o->ndim == 3 && k == 1 ? "out_height" : o->ndim == 3 && k == 2 ? "out_width" : OUT_NAMES[k];
    return st;
}

ts_status ts_onnx_export(ts_ctx *ctx, const ts_model *m, const char *path) {
    if (!ctx || !m || !path) return ts_fail(ctx, TS_EINVAL, "ts_onnx_export: NULL argument");
    exporter ex = {.ctx = ctx, .m = m};
    ts_status st = TS_OK;
    for (int li = 0; li < m->nlayers && !st; li++) st = export_layer(&ex, li);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!st) {
        Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
        Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
        Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
        const char *in_axes[TS_MAX_DIMS] = {0}, *out_axes[TS_MAX_DIMS] = {0};
        if (ts_model_any_size(m)) st = free_axes(ctx, m, in_axes, out_axes);
        Onnx__ValueInfoProto *in = value_info(&ex, "input", &m->input, in_axes);
        Onnx__ValueInfoProto *out =
            value_info(&ex, value_name(&ex, m->nlayers - 1), &m->layers[m->nlayers - 1].out, out_axes);
        /* an early exit's logits: a second graph output (the threshold is the caller's) */
        Onnx__ValueInfoProto *outs[2] = {
            out, m->exit_layer ? value_info(&ex, value_name(&ex, m->exit_layer), &m->layers[m->exit_layer].out, NULL)
                               : NULL};
        char *gname = ex_strdup(&ex, "tessera");
        char *producer = ex_strdup(&ex, "tessera");
        char *empty = ex_strdup(&ex, "%s", "");
        if (ex.failed || !in || !out || (m->exit_layer && !outs[1])) st = ts_fail(ctx, TS_ENOMEM, "export: out of memory");
        if (!st) {
            g.name = gname;
            g.n_node = ex.nnodes;
            g.node = ex.nodes;
            g.n_initializer = ex.ninits;
            g.initializer = ex.inits;
            g.n_input = 1;
            g.input = &in;
            g.n_output = m->exit_layer ? 2 : 1;
            g.output = outs;
            opset.domain = empty;
            opset.has_version = 1;
            opset.version = EXPORT_OPSET;
            Onnx__OperatorSetIdProto *ops[1] = {&opset};
            mp.has_ir_version = 1;
            mp.ir_version = 7; /* the IR version of opset 13 */
            mp.n_opset_import = 1;
            mp.opset_import = ops;
            mp.producer_name = producer;
            mp.graph = &g;
            /* the model's metadata (class names, input normalization, provenance)
             * rides along as metadata_props "tessera.<key>"; the importer restores it */
            mp.n_metadata_props = (size_t)m->nmeta;
            mp.metadata_props = ex_calloc(&ex, (size_t)m->nmeta, sizeof *mp.metadata_props);
            for (int i = 0; i < m->nmeta && mp.metadata_props; i++) {
                Onnx__StringStringEntryProto *e = ex_calloc(&ex, 1, sizeof *e);
                if (!e) break;
                onnx__string_string_entry_proto__init(e);
                e->key = ex_strdup(&ex, "tessera.%s", m->meta[i].key);
                e->value = own(&ex, strdup(m->meta[i].value));
                mp.metadata_props[i] = e;
            }
            if (ex.failed || !mp.metadata_props) st = ts_fail(ctx, TS_ENOMEM, "export: out of memory");
        }
        if (!st) {
            len = onnx__model_proto__get_packed_size(&mp);
            buf = malloc(len ? len : 1);
            if (!buf) st = ts_fail(ctx, TS_ENOMEM, "export: out of memory for %zu bytes", len);
            else onnx__model_proto__pack(&mp, buf);
        }
    }
    if (!st) st = io_write_atomic(ctx, path, buf, len);
    free(buf);
    for (size_t i = 0; i < ex.nowned; i++) free(ex.owned[i]);
    free(ex.owned);
    return st;
}

ts_status ts_onnx_tensor_save(ts_ctx *ctx, const char *path, const char *name, const int64_t *dims, int rank,
                              const float *data) {
    if (!ctx || !path || (rank && !dims) || rank < 0 || rank > ONNX_MAX_RANK)
        return ts_fail(ctx, TS_EINVAL, "ts_onnx_tensor_save: bad argument");
    Onnx__TensorProto t = ONNX__TENSOR_PROTO__INIT;
    int64_t numel = 1, d[ONNX_MAX_RANK];
    for (int k = 0; k < rank; k++) {
        d[k] = dims[k];
        numel *= dims[k];
    }
    t.name = (char *)(name ? name : "");
    t.n_dims = (size_t)rank;
    t.dims = d;
    t.has_data_type = 1;
    t.data_type = ONNX_FLOAT;
    t.has_raw_data = 1;
    t.raw_data.len = (size_t)numel * sizeof(float);
    t.raw_data.data = (uint8_t *)data;
    size_t len = onnx__tensor_proto__get_packed_size(&t);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
    onnx__tensor_proto__pack(&t, buf);
    ts_status st = io_write_atomic(ctx, path, buf, len);
    free(buf);
    return st;
}
