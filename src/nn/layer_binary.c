/* binary: ONNX Add, Sub, Mul, Div with numpy broadcasting of per-sample shapes
 * (right-aligned). Either two inputs (in=a,b), or one input and a constant buffer
 * `<name>.const` of shape const= (the left operand when const_first=1). The batch
 * axis is not broadcast: the constant is the same for every sample. */
#include "layers.h"

/* The two operands' per-sample shapes, left then right, and whether each is the
 * constant (1) or an input (0, with its input index). */
typedef struct binary_operands {
    const ts_shape *shape[2];
    int is_const[2];
    int input[2];
} binary_operands;

static binary_operands binary_operands_of(const ts_model *m, const layer *l) {
    binary_operands o;
    if (l->tshape.ndim == 0) { /* two inputs */
        for (int k = 0; k < 2; k++) {
            o.shape[k] = input_shape(m, l, k);
            o.is_const[k] = 0;
            o.input[k] = k;
        }
    } else {
        const int c = l->const_first ? 0 : 1;
        o.shape[c] = &l->tshape;
        o.is_const[c] = 1;
        o.input[c] = -1;
        o.shape[1 - c] = input_shape(m, l, 0);
        o.is_const[1 - c] = 0;
        o.input[1 - c] = 0;
    }
    return o;
}

ts_status binary_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    const int want = l->tshape.ndim > 0 ? 1 : 2;
    if (l->ninputs != want)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: binary '%s' takes %s, got %d", source, l->line, l->name,
                       want == 1 ? "exactly one input with const=" : "two inputs (in=a,b) or one input and const=AxB",
                       l->ninputs);
    binary_operands o = binary_operands_of(m, l);
    const ts_shape *a = o.shape[0], *b = o.shape[1];
    const int r = a->ndim > b->ndim ? a->ndim : b->ndim;
    l->out.ndim = r;
    for (int i = 0; i < r; i++) {
        const int ia = i - (r - a->ndim), ib = i - (r - b->ndim);
        const int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char ta[96], tb[96];
            return ts_fail(ctx, TS_ESHAPE,
                           "%s:%d: binary '%s': shapes %s and %s do not broadcast (axis %d from the right: %lld vs %lld)",
                           source, l->line, l->name, shape_text(a, ta, sizeof ta), shape_text(b, tb, sizeof tb),
                           r - i, (long long)da, (long long)db);
        }
        l->out.dims[i] = da > db ? da : db;
    }
    if (l->tshape.ndim > 0) {
        int li = (int)(l - m->layers);
        l->konst = model_add_tensor(ctx, m, li, "const", TS_TENSOR_BUFFER, &l->tshape);
        if (l->konst < 0) return ts_ctx_status(ctx);
    }
    return TS_OK;
}

/* Element strides over (N, out dims) of an operand of per-sample shape s: 0 on the
 * axes it broadcasts over, and on the batch axis for the constant. */
static void binary_strides(const layer *l, const ts_shape *s, int is_const, int64_t *strides) {
    const int r = l->out.ndim;
    int64_t step = 1;
    for (int i = r - 1; i >= 0; i--) {
        const int j = i - (r - s->ndim);
        if (j < 0 || s->dims[j] == 1) {
            strides[1 + i] = 0;
            continue;
        }
        strides[1 + i] = step;
        step *= s->dims[j];
    }
    strides[0] = is_const ? 0 : shape_numel(s);
}

typedef struct binary_walk {
    int rank;
    int64_t dims[OPS_MAX_RANK];
    int64_t strides[2][OPS_MAX_RANK];
    const float *data[2];
} binary_walk;

static binary_walk binary_walk_of(ts_model *m, int li) {
    const layer *l = &m->layers[li];
    binary_operands o = binary_operands_of(m, l);
    binary_walk w;
    w.rank = l->out.ndim + 1;
    w.dims[0] = m->exec.n;
    for (int i = 0; i < l->out.ndim; i++) w.dims[1 + i] = l->out.dims[i];
    for (int k = 0; k < 2; k++) {
        binary_strides(l, o.shape[k], o.is_const[k], w.strides[k]);
        w.data[k] = o.is_const[k] ? tensor_data(m, l->konst) : layer_input(m, li, o.input[k]);
    }
    return w;
}

/* The walk in channels-last order, (N,H,W,C), for a (C,H,W) output kept channels-last
 * (exec.c): each operand's strides for how it is stored, channels-last for an input
 * kept so, else NCHW's (a (C,1,1) squeeze-excitation scale, a constant) permuted. */
static void binary_walk_cl(const ts_model *m, const layer *l, binary_walk *w) {
    static const int perm[4] = {0, 2, 3, 1};
    binary_walk v = *w;
    for (int i = 0; i < 4; i++) v.dims[i] = w->dims[perm[i]];
    binary_operands o = binary_operands_of(m, l);
    for (int k = 0; k < 2; k++) {
        if (!o.is_const[k] && layer_cl(m, l->inputs[o.input[k]])) {
            const ts_shape *sh = o.shape[k]; /* (C,H,W): channels-last is what its producer wrote */
            const int64_t c = sh->dims[0], h = sh->dims[1], wd = sh->dims[2];
            v.strides[k][0] = c * h * wd;
            v.strides[k][1] = h == 1 ? 0 : wd * c;
            v.strides[k][2] = wd == 1 ? 0 : c;
            v.strides[k][3] = c == 1 ? 0 : 1;
        } else {
            for (int i = 0; i < 4; i++) v.strides[k][i] = w->strides[k][perm[i]];
        }
    }
    *w = v;
}

ts_status binary_forward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    binary_walk w = binary_walk_of(m, li);
    if (layer_cl(m, li)) binary_walk_cl(m, l, &w);
    (ctx->constant_time ? binary_forward_ct : binary_forward_ref)((binary_op)l->op, w.rank, w.dims,
                                                                  m->exec.ls[li].out, w.data[0], w.strides[0],
                                                                  w.data[1], w.strides[1], ts_ctx_threads(ctx));
    return TS_OK;
}

/* Each input's gradient is written and committed before the next is asked for:
 * in=a,a hands both to the same layer. */
ts_status binary_backward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    binary_operands o = binary_operands_of(m, l);
    binary_walk w = binary_walk_of(m, li);
    for (int k = 0; k < 2; k++) {
        if (o.is_const[k]) continue;
        float *din = layer_input_grad(m, li, o.input[k]);
        if (!din) continue;
        binary_backward_ref((binary_op)l->op, w.rank, w.dims, k == 0 ? din : NULL, k == 1 ? din : NULL,
                            m->exec.ls[li].grad, w.data[0], w.strides[0], w.data[1], w.strides[1],
                            ts_ctx_threads(ctx));
        layer_input_grad_commit(m, li, o.input[k], ts_ctx_threads(ctx));
    }
    return TS_OK;
}
