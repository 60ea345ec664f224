/* ONNX converters for dense algebra: Add, Sub, Mul, Div (broadcasting, constants
 * folded), Sum, Gemm and MatMul. */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ dense algebra */


/* A constant used where a computed value is needed: a `constant` layer repeating
 * it for every sample (fed by the model input for the batch size). `like` is a
 * computed operand it combines with, for the batch-axis alignment. */
ts_status lift_const(importer *im, const Onnx__NodeProto *n, const value *c, const value *like, value *out) {
    ts_shape s;
    ts_status st = strip_batch_axes(im, c, like ? like->rank : c->rank, &s);
    if (st) return st;
    if (im->off && (!like || c->rank != like->rank))
        return unsupported(im, "constant '%s' cannot be aligned with the batch axis", c->name);
    layer_attrs a;
    nn_attrs_default(LAYER_CONSTANT, &a);
    a.tshape = s;
    const char *ins[1] = {im->layers[0]->name};
    char base[LAYER_NAME_MAX];
    snprintf(base, sizeof base, "%.40s_const", node_base(n));
    int li;
    if ((st = emit_layer(im, LAYER_CONSTANT, base, ins, 1, &a, &s, &li))) return st;
    float *f = const_floats(im, c);
    if (!f) return oom(im);
    st = add_fill(im, im->layers[li]->t.konst, f, c->c->numel);
    free(f);
    if (st) return st;
    *out = *c;
    out->kind = VALUE_LAYER;
    out->c = NULL;
    out->layer = li;
    if (im->off) out->dims[0] = -1;
    return TS_OK;
}

/* strips leading constant axes that line up with the batch axis (must be 1) */
ts_status strip_batch_axes(importer *im, const value *c, int layer_rank, ts_shape *s) {
    int rc = c->rank;
    int keep = rc;
    if (im->off && rc >= layer_rank) {
        keep = layer_rank - 1;
        for (int k = 0; k < rc - keep; k++)
            if (c->dims[k] != 1)
                return unsupported(im, "constant '%s' varies along the batch axis (dims[%d] = %lld)", c->name, k,
                                   (long long)c->dims[k]);
    }
    if (keep > TS_MAX_DIMS) return unsupported(im, "constant '%s' has rank %d", c->name, rc);
    memset(s, 0, sizeof *s);
    for (int k = 0; k < keep; k++) s->dims[k] = c->dims[rc - keep + k];
    s->ndim = keep;
    if (keep == 0) {
        s->ndim = 1;
        s->dims[0] = 1;
    }
    for (int k = 0; k < s->ndim; k++)
        if (s->dims[k] < 1) return unsupported(im, "constant '%s' is empty", c->name);
    return TS_OK;
}

ts_status const_sample_shape(importer *im, const value *c, const value *x, ts_shape *s) {
    if (!im->off || (!x->bax && !x->fold)) return strip_batch_axes(im, c, x->rank, s);
    if (c->rank > x->rank)
        return unsupported(im, "constant '%s' has more axes than '%s' and would broadcast across the batch", c->name,
                           x->name);
    const int on_batch = x->bax - (x->rank - c->rank); /* c's axis on x's batch axis, when c reaches it */
    memset(s, 0, sizeof *s);
    for (int a = 0; a < c->rank; a++) {
        if (a == on_batch) {
            if (c->dims[a] != 1)
                return unsupported(im, "constant '%s' varies along the batch axis (dims[%d] = %lld)", c->name, a,
                                   (long long)c->dims[a]);
            if (!x->fold) continue;
        }
        if (s->ndim == TS_MAX_DIMS) return unsupported(im, "constant '%s' has rank %d", c->name, c->rank);
        if (c->dims[a] < 1) return unsupported(im, "constant '%s' is empty", c->name);
        s->dims[s->ndim++] = c->dims[a];
    }
    if (s->ndim == 0) {
        s->ndim = 1;
        s->dims[0] = 1;
    }
    return TS_OK;
}

/* numpy broadcast of two dims lists; 0 when incompatible */
int broadcast(int ra, const int64_t *a, int rb, const int64_t *b, int *rr, int64_t *r) {
    int n = ra > rb ? ra : rb;
    for (int k = 0; k < n; k++) {
        int64_t x = k < n - ra ? 1 : a[k - (n - ra)], y = k < n - rb ? 1 : b[k - (n - rb)];
        if (x == -1 || y == -1) {
            r[k] = -1;
            continue;
        }
        if (x != y && x != 1 && y != 1) return 0;
        r[k] = x == 1 ? y : x;
    }
    *rr = n;
    return 1;
}

/* elementwise arithmetic of two constants (shape math of exported graphs) */
static ts_status fold_binary(importer *im, int op, const value *a, const value *b, ts_onnx_tensor **out) {
    int rr;
    int64_t dims[ONNX_MAX_RANK * 2];
    if (a->rank > ONNX_MAX_RANK || b->rank > ONNX_MAX_RANK || !broadcast(a->rank, a->dims, b->rank, b->dims, &rr, dims))
        return bad_node(im, "operands '%s' and '%s' do not broadcast", a->name, b->name);
    int is_float = a->c->is_float || b->c->is_float;
    ts_onnx_tensor *t = onnx_tensor_new(is_float, rr, dims);
    if (!t) return oom(im);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t ia = 0, ib = 0, rem = i, sa = 1, sb = 1;
        for (int k = rr - 1; k >= 0; k--) {
            int64_t d = rem % dims[k];
            rem /= dims[k];
            int ka = k - (rr - a->rank), kb = k - (rr - b->rank);
            if (ka >= 0) {
                if (a->dims[ka] > 1) ia += d * sa;
                sa *= a->dims[ka];
            }
            if (kb >= 0) {
                if (b->dims[kb] > 1) ib += d * sb;
                sb *= b->dims[kb];
            }
        }
        if (is_float) {
            double x = a->c->is_float ? a->c->f[ia] : (double)a->c->i[ia];
            double y = b->c->is_float ? b->c->f[ib] : (double)b->c->i[ib];
            t->f[i] = (float)(op == BINARY_ADD ? x + y : op == BINARY_SUB ? x - y : op == BINARY_MUL ? x * y : x / y);
        } else {
            int64_t x = a->c->i[ia], y = b->c->i[ib];
            if (op == BINARY_DIV && y == 0) {
                ts_onnx_tensor_free(t);
                return bad_node(im, "integer division by zero");
            }
            t->i[i] = op == BINARY_ADD ? x + y : op == BINARY_SUB ? x - y : op == BINARY_MUL ? x * y : x / y;
        }
    }
    *out = t;
    return TS_OK;
}

/* a op b as a new value (a layer, or a folded constant that *res owns) */
ts_status binary_value(importer *im, const Onnx__NodeProto *n, int op, const value *a, const value *b, value *res) {
    ts_status st;
    memset(res, 0, sizeof *res);
    if (a->kind == VALUE_CONST && b->kind == VALUE_CONST) {
        if ((st = fold_binary(im, op, a, b, &res->c))) return st;
        res->kind = VALUE_CONST;
        res->rank = res->c->rank;
        memcpy(res->dims, res->c->dims, sizeof res->dims);
        return TS_OK;
    }
    int rr;
    int64_t dims[ONNX_MAX_RANK * 2];
    if (!broadcast(a->rank, a->dims, b->rank, b->dims, &rr, dims))
        return bad_node(im, "operands '%s' and '%s' do not broadcast", a->name, b->name);
    if (rr > ONNX_MAX_RANK) return unsupported(im, "result rank %d", rr);
    int li;
    layer_attrs attrs;
    nn_attrs_default(LAYER_BINARY, &attrs);
    attrs.op = op;
    /* the result has the computed operand's batch layout */
    const value *lay = a->kind == VALUE_LAYER ? a : b;
    value tmp = {.kind = VALUE_LAYER, .rank = rr, .bax = lay->bax, .fold = lay->fold, .bsub = lay->bsub};
    memcpy(tmp.dims, dims, sizeof tmp.dims);
    if (a->kind == VALUE_LAYER && b->kind == VALUE_LAYER) {
        if (im->off && a->rank != b->rank)
            return unsupported(im, "operands of rank %d and %d would broadcast across the batch axis", a->rank, b->rank);
        if (im->off && (a->bax != b->bax || a->fold != b->fold || (a->fold && a->bsub != b->bsub)))
            return unsupported(im, "operands '%s' and '%s' hold the batch differently (axis %d and %d%s)", a->name,
                               b->name, a->bax, b->bax, a->fold != b->fold || a->fold ? ", folded" : "");
        const char *ins[2];
        if ((st = materialize(im, a, &ins[0])) || (st = materialize(im, b, &ins[1]))) return st;
        ts_shape out;
        if ((st = value_sample_shape(im, &tmp, &out))) return st;
        int same = a->rank == b->rank && !memcmp(a->dims, b->dims, (size_t)a->rank * sizeof *a->dims);
        if (op == BINARY_ADD && same) st = emit_layer(im, LAYER_ADD, node_base(n), ins, 2, NULL, &out, &li);
        else st = emit_layer(im, LAYER_BINARY, node_base(n), ins, 2, &attrs, &out, &li);
        if (st) return st;
        goto done;
    }
    int const_first = a->kind == VALUE_CONST;
    const value *x = const_first ? b : a, *c = const_first ? a : b;
    if (x->kind != VALUE_LAYER) return unsupported(im, "input '%s' is not computed", x->name);
    if (im->off && c->rank > x->rank)
        return unsupported(im, "constant '%s' has more axes than '%s' and would broadcast across the batch", c->name, x->name);
    ts_shape cs;
    if ((st = const_sample_shape(im, c, x, &cs))) return st;
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    attrs.tshape = cs;
    attrs.const_first = const_first;
    const char *ins[1] = {in};
    if ((st = emit_layer(im, LAYER_BINARY, node_base(n), ins, 1, &attrs, &out, &li))) return st;
    float *f = const_floats(im, c);
    if (!f) return oom(im);
    st = add_fill(im, im->layers[li]->t.konst, f, c->c->numel);
    free(f);
    if (st) return st;
done:
    *res = tmp;
    res->layer = li;
    if (im->off) res->dims[res->bax] = -1;
    return TS_OK;
}

static ts_status define_result(importer *im, const Onnx__NodeProto *n, value *res) {
    if (res->kind == VALUE_CONST) return define_const(im, n, 0, res->c);
    return define_layer_as(im, n, 0, res->layer, res->rank, res->dims, res);
}

static ts_status binary_node(importer *im, const Onnx__NodeProto *n, int op) {
    value *a, *b, res;
    ts_status st = require_input(im, n, 0, &a);
    if (!st) st = require_input(im, n, 1, &b);
    if (st) return st;
    if ((a->rank < im->off && a->kind == VALUE_LAYER) || (b->rank < im->off && b->kind == VALUE_LAYER))
        return unsupported(im, "a scalar input has no batch axis");
    /* before opset 7: broadcast=1 with no axis is numpy's suffix broadcast; an axis
     * (aligning B elsewhere) is not supported, and without broadcast shapes match */
    if (im->opset < 7 && attr(n, "axis")) return unsupported(im, "the legacy broadcast axis attribute");
    if (im->opset < 7 && !attr_int(n, "broadcast", 0) &&
        (a->rank != b->rank || memcmp(a->dims + im->off, b->dims + im->off, (size_t)(a->rank - im->off) * sizeof *a->dims)))
        return bad_node(im, "operands differ in shape without broadcast=1 (opset %d)", im->opset);
    if ((st = binary_value(im, n, op, a, b, &res))) return st;
    return define_result(im, n, &res);
}


ts_status op_add(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_ADD); }
ts_status op_sub(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_SUB); }
ts_status op_mul(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_MUL); }
ts_status op_div(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_DIV); }

ts_status op_sum(importer *im, const Onnx__NodeProto *n) {
    if (n->n_input == 0) return bad_node(im, "Sum needs at least one input");
    value *first;
    ts_status st = require_input(im, n, 0, &first);
    if (st) return st;
    if (n->n_input == 1) return define_alias(im, n, 0, first);
    /* pairwise, broadcasting; a constant next to computed values is lifted */
    value acc = *first, next;
    acc.c = NULL;
    ts_onnx_tensor *owned = NULL;
    if (first->kind == VALUE_CONST) acc.c = first->c;
    for (size_t k = 1; k < n->n_input && !st; k++) {
        value *v = node_input(im, n, (int)k);
        if (!v) {
            st = bad_node(im, "input %zu is missing", k);
            break;
        }
        st = binary_value(im, n, BINARY_ADD, &acc, v, &next);
        ts_onnx_tensor_free(owned);
        owned = next.kind == VALUE_CONST ? next.c : NULL;
        acc = next;
    }
    if (st) {
        ts_onnx_tensor_free(owned);
        return st;
    }
    if (acc.kind == VALUE_CONST) return define_const(im, n, 0, owned);
    return define_layer(im, n, 0, acc.layer, acc.rank, acc.dims);
}

static float *transpose2(const float *src, int64_t rows, int64_t cols) {
    int64_t count = rows * cols;
    float *t = malloc((size_t)(count > 0 ? count : 1) * sizeof *t);
    if (!t) return NULL;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) t[c * rows + r] = src[r * cols + c];
    return t;
}

/* dense layer: y = x W^T + b for a per-sample vector x (K) */
static ts_status emit_dense(importer *im, const Onnx__NodeProto *n, const value *x, const float *w /* (out, K) */,
                            int64_t nout, const float *bias /* (out) or NULL */, int rank, const int64_t *dims) {
    ts_shape s = {.ndim = 1, .dims = {x->dims[x->rank - 1]}};
    const char *in;
    ts_status st = materialize_as(im, x, &s, &in);
    if (st) return st;
    layer_attrs a;
    nn_attrs_default(LAYER_DENSE, &a);
    if (nout > (1 << 24)) return unsupported(im, "%lld output features", (long long)nout);
    a.features = (int)nout;
    a.bias = bias ? 1 : 0;
    ts_shape out = {.ndim = 1, .dims = {nout}};
    int li;
    if ((st = emit_unary(im, n, LAYER_DENSE, in, &a, &out, rank, dims, &li))) return st;
    if ((st = add_fill(im, im->layers[li]->t.weight, w, nout * s.dims[0]))) return st;
    if (bias) st = add_fill(im, im->layers[li]->t.bias, bias, nout);
    return st;
}

ts_status op_gemm(importer *im, const Onnx__NodeProto *n) {
    value *a, *b, *c = node_input(im, n, 2);
    ts_status st = require_input(im, n, 0, &a);
    if (!st) st = require_const(im, n, 1, "B", &b);
    if (st) return st;
    if ((st = need_layer_value(im, a))) return st;
    if (a->rank != 2 || b->rank != 2) return bad_node(im, "A and B must be 2-D");
    int ta = (int)attr_int(n, "transA", 0), tb = (int)attr_int(n, "transB", 0);
    float alpha = attr_float(n, "alpha", 1.0f), beta = attr_float(n, "beta", 1.0f);
    int64_t k = ta ? a->dims[0] : a->dims[1];
    int64_t kb = tb ? b->dims[1] : b->dims[0], nout = tb ? b->dims[0] : b->dims[1];
    if (k != kb && k != -1) return bad_node(im, "A has %lld columns but B has %lld rows", (long long)k, (long long)kb);
    if (c && c->kind != VALUE_CONST) return unsupported(im, "C must be a constant");
    if (im->off && ta) return unsupported(im, "transA=1 would mix the batch axis into the product");
    /* A folded (L * N, E) (attention's output projection): a matmul per sample's rows */
    const int folded = im->off && a->fold;
    if (folded && a->bax) return unsupported(im, "A has the batch folded into its column axis");
    /* W as (out, K), alpha folded in */
    float *w = tb ? const_floats(im, b) : NULL;
    if (!tb) {
        float *bf = const_floats(im, b);
        if (!bf) return oom(im);
        w = transpose2(bf, b->dims[0], b->dims[1]);
        free(bf);
    }
    if (!w) return oom(im);
    if (alpha != 1.0f)
        for (int64_t i = 0; i < nout * kb; i++) w[i] *= alpha;
    int64_t m = ta ? a->dims[1] : a->dims[0];
    int64_t dims[2] = {m, nout};
    float *bias = NULL;
    if (c) {
        /* C broadcasts to (M, out): per output column unless it varies by row */
        int64_t crow = c->rank == 2 ? c->dims[0] : 1, ccol = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        if (c->rank > 2 || (ccol != 1 && ccol != nout) || (crow != 1 && (im->off || crow != m))) {
            free(w);
            return im->off ? unsupported(im, "C varies along the batch axis") : bad_node(im, "C does not broadcast to (M, N)");
        }
        if (crow == 1) {
            bias = malloc((size_t)nout * sizeof *bias);
            if (!bias) {
                free(w);
                return oom(im);
            }
            for (int64_t j = 0; j < nout; j++) {
                int64_t idx = ccol == 1 ? 0 : j;
                bias[j] = beta * (c->c->is_float ? c->c->f[idx] : (float)c->c->i[idx]);
            }
        }
    }
    if ((im->off && !folded) || (m == 1 && !ta && !(c && !bias))) {
        value xv = *a;
        st = emit_dense(im, n, &xv, w, nout, bias, 2, dims);
        free(w);
        free(bias);
        return st;
    }
    /* whole-tensor mode or A folded: A (M, K) [transposed] times B, plus C */
    free(bias);
    const char *in;
    if ((st = materialize(im, a, &in))) {
        free(w);
        return st;
    }
    int li;
    if (ta) {
        ts_shape ts2 = {.ndim = 2, .dims = {a->dims[1], a->dims[0]}};
        const char *ins[1] = {in};
        layer_attrs pa;
        nn_attrs_default(LAYER_TRANSPOSE, &pa);
        pa.nperm = 2;
        pa.perm[0] = 1;
        pa.perm[1] = 0;
        if ((st = emit_layer(im, LAYER_TRANSPOSE, node_base(n), ins, 1, &pa, &ts2, &li))) {
            free(w);
            return st;
        }
        in = im->layers[li]->name;
    }
    float *bt = transpose2(w, nout, k); /* (K, out) */
    free(w);
    if (!bt) return oom(im);
    layer_attrs ma;
    nn_attrs_default(LAYER_MATMUL, &ma);
    ma.tshape = (ts_shape){.ndim = 2, .dims = {k, nout}};
    ts_shape out = {.ndim = 2, .dims = {folded ? a->bsub : m, nout}};
    const char *ins[1] = {in};
    st = emit_layer(im, LAYER_MATMUL, node_base(n), ins, 1, &ma, &out, &li);
    if (!st) st = add_fill(im, im->layers[li]->t.weight, bt, k * nout);
    free(bt);
    if (st) return st;
    if (c) {
        float *cf = const_floats(im, c);
        if (!cf) return oom(im);
        for (int64_t i = 0; i < c->c->numel; i++) cf[i] *= beta;
        ts_shape cs = {.ndim = c->rank ? c->rank : 1, .dims = {c->rank ? c->dims[0] : 1, c->rank > 1 ? c->dims[1] : 0}};
        layer_attrs ba;
        nn_attrs_default(LAYER_BINARY, &ba);
        ba.op = BINARY_ADD;
        ba.tshape = cs;
        const char *ins2[1] = {im->layers[li]->name};
        int li2;
        st = emit_layer(im, LAYER_BINARY, node_base(n), ins2, 1, &ba, &out, &li2);
        if (!st) st = add_fill(im, im->layers[li2]->t.konst, cf, c->c->numel);
        free(cf);
        li = li2;
        if (st) return st;
    }
    return define_layer_as(im, n, 0, li, 2, dims, a);
}

/* A and B both computed (attention's Q K^T and softmax(.) V): a two-input matmul,
 * each sample its own B */
static ts_status matmul_computed(importer *im, const Onnx__NodeProto *n, const value *a, const value *b) {
    if (a->rank - im->off < 2 || b->rank - im->off < 2)
        return unsupported(im, "a 1-D operand per sample in a product of two computed values");
    if (im->off && a->rank != b->rank)
        return unsupported(im, "operands of rank %d and %d would broadcast across the batch axis", a->rank, b->rank);
    /* the batch (folded with the heads or not) must be one of the stacking axes, the
     * same in both: each sample then multiplies its own matrices */
    if (im->off && (a->bax != b->bax || a->fold != b->fold || (a->fold && a->bsub != b->bsub)))
        return unsupported(im, "A and B hold the batch differently (axis %d and %d%s)", a->bax, b->bax,
                           a->fold || b->fold ? ", folded" : "");
    if (im->off && a->bax >= a->rank - 2)
        return unsupported(im, "the batch is in a matrix axis (axis %d of rank %d), not a stacking axis", a->bax,
                           a->rank);
    const int64_t k = a->dims[a->rank - 1], kb = b->dims[b->rank - 2];
    if (k != kb) return bad_node(im, "A has %lld columns but B has %lld rows", (long long)k, (long long)kb);
    int nr;
    int64_t rbatch[ONNX_MAX_RANK * 2];
    if (!broadcast(a->rank - 2, a->dims, b->rank - 2, b->dims, &nr, rbatch))
        return bad_node(im, "batch axes of A and B do not broadcast");
    int64_t dims[ONNX_MAX_RANK * 2];
    int rr = 0;
    for (int i = 0; i < nr; i++) dims[rr++] = rbatch[i];
    dims[rr++] = a->dims[a->rank - 2];
    dims[rr++] = b->dims[b->rank - 1];
    if (rr > ONNX_MAX_RANK) return unsupported(im, "result rank %d", rr);
    if (im->off) dims[a->bax] = -1;
    value tmp = {.kind = VALUE_LAYER, .rank = rr, .bax = a->bax, .fold = a->fold, .bsub = a->bsub};
    memcpy(tmp.dims, dims, (size_t)rr * sizeof *dims);
    ts_shape out;
    ts_status st = value_sample_shape(im, &tmp, &out);
    const char *ins[2];
    if (!st) st = materialize(im, a, &ins[0]);
    if (!st) st = materialize(im, b, &ins[1]);
    if (st) return st;
    layer_attrs ma;
    nn_attrs_default(LAYER_MATMUL, &ma);
    int li;
    if ((st = emit_layer(im, LAYER_MATMUL, node_base(n), ins, 2, &ma, &out, &li))) return st;
    return define_layer_as(im, n, 0, li, rr, dims, &tmp);
}

/* a matmul layer: A (materialized) times the constant B seen per sample as bs, giving
 * out; output 0 of rank rr and dims laid out as `lay` */
static ts_status emit_matmul_const(importer *im, const Onnx__NodeProto *n, const value *a, const value *b,
                                   const ts_shape *bs, const ts_shape *out, int rr, const int64_t *dims,
                                   const value *lay) {
    const char *in;
    ts_status st = materialize(im, a, &in);
    if (st) return st;
    layer_attrs ma;
    nn_attrs_default(LAYER_MATMUL, &ma);
    ma.tshape = *bs;
    const char *ins[1] = {in};
    int li;
    if ((st = emit_layer(im, LAYER_MATMUL, node_base(n), ins, 1, &ma, out, &li))) return st;
    float *bf = const_floats(im, b);
    if (!bf) return oom(im);
    st = add_fill(im, im->layers[li]->t.weight, bf, b->c->numel);
    free(bf);
    if (st) return st;
    return define_layer_as(im, n, 0, li, rr, dims, lay);
}

/* A's batch axis moved or folded (attention's (L, N, E) projections, the output
 * projection of (L * N, E)), B a constant matrix or vector: each sample's rows times B */
static ts_status matmul_moved(importer *im, const Onnx__NodeProto *n, const value *a, const value *b) {
    if (b->rank > 2)
        return unsupported(im, "B has %d axes while A's batch axis is not first by itself (axis %d)", b->rank, a->bax);
    if (a->bax == a->rank - 1) return unsupported(im, "A's batch axis is the one the product sums over");
    int64_t dims[ONNX_MAX_RANK];
    int rr = a->rank - (b->rank == 1);
    memcpy(dims, a->dims, (size_t)a->rank * sizeof *dims);
    if (b->rank == 2) dims[rr - 1] = b->dims[1];
    value tmp = {.kind = VALUE_LAYER, .rank = rr, .bax = a->bax, .fold = a->fold, .bsub = a->bsub};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out, as;
    ts_status st = value_sample_shape(im, &tmp, &out);
    if (!st) st = value_sample_shape(im, a, &as);
    if (st) return st;
    if (as.ndim < 2) return unsupported(im, "A is a vector per sample");
    const ts_shape bs = {.ndim = b->rank, .dims = {b->dims[0], b->rank == 2 ? b->dims[1] : 0}};
    return emit_matmul_const(im, n, a, b, &bs, &out, rr, dims, &tmp);
}

ts_status op_matmul(importer *im, const Onnx__NodeProto *n) {
    value *a, *b;
    ts_status st = require_input(im, n, 0, &a);
    if (!st) st = require_input(im, n, 1, &b);
    if (st) return st;
    if (a->kind != VALUE_LAYER) return unsupported(im, "A must be computed from the model input");
    if (b->kind == VALUE_LAYER) return matmul_computed(im, n, a, b);
    if (b->kind != VALUE_CONST) return unsupported(im, "B must be a constant or computed from the model input");
    if (im->off && a->rank < 2) return unsupported(im, "A is 1-D: its only axis is the batch");
    if (b->rank < 1) return bad_node(im, "B is a scalar");
    int64_t k = a->dims[a->rank - 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    if (k != kb) return bad_node(im, "A has %lld columns but B has %lld rows", (long long)k, (long long)kb);
    if (im->off && (a->bax || a->fold)) return matmul_moved(im, n, a, b);
    /* the common case, a vector per sample times a matrix: a dense layer */
    if (im->off && a->rank == 2 && b->rank == 2) {
        float *bf = const_floats(im, b);
        if (!bf) return oom(im);
        float *w = transpose2(bf, b->dims[0], b->dims[1]);
        free(bf);
        if (!w) return oom(im);
        int64_t dims[2] = {-1, b->dims[1]};
        st = emit_dense(im, n, a, w, b->dims[1], NULL, 2, dims);
        free(w);
        return st;
    }
    ts_shape bs;
    if ((st = strip_batch_axes(im, b, a->rank, &bs))) return st;
    if (b->rank == 1) bs = (ts_shape){.ndim = 1, .dims = {b->dims[0]}};
    /* the numpy result shape over full ONNX shapes */
    int ra = a->rank, rb = b->rank;
    int64_t abatch[ONNX_MAX_RANK], bbatch[ONNX_MAX_RANK], rbatch[ONNX_MAX_RANK * 2];
    int na = ra >= 2 ? ra - 2 : 0, nb = rb >= 2 ? rb - 2 : 0, nr;
    memcpy(abatch, a->dims, (size_t)na * sizeof *abatch);
    memcpy(bbatch, b->dims, (size_t)nb * sizeof *bbatch);
    if (!broadcast(na, abatch, nb, bbatch, &nr, rbatch)) return bad_node(im, "batch axes of A and B do not broadcast");
    int64_t dims[ONNX_MAX_RANK * 2];
    int rr = 0;
    for (int i = 0; i < nr; i++) dims[rr++] = rbatch[i];
    if (ra >= 2) dims[rr++] = a->dims[ra - 2];
    if (rb >= 2) dims[rr++] = b->dims[rb - 1];
    if (rr > ONNX_MAX_RANK) return unsupported(im, "result rank %d", rr);
    if (im->off) dims[0] = -1;
    value tmp = {.kind = VALUE_LAYER, .rank = rr};
    memcpy(tmp.dims, dims, (size_t)rr * sizeof *dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    return emit_matmul_const(im, n, a, b, &bs, &out, rr, dims, &tmp);
}
