/* ONNX converters that only fold constants, as exporters emit them for shape and
 * pad arithmetic: ConstantOfShape, Range, Equal, Where. On computed values they
 * are refused (tessera has no boolean tensors). */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int64_t broadcast_source(int rr, const int64_t *dims, int64_t i, int rx, const int64_t *xdims) {
    int64_t src = 0, stride = 1;
    for (int k = rr - 1; k >= 0; k--) {
        int64_t d = i % dims[k];
        i /= dims[k];
        int kx = k - (rr - rx);
        if (kx >= 0) {
            if (xdims[kx] > 1) src += d * stride;
            stride *= xdims[kx];
        }
    }
    return src;
}

static double number(const ts_onnx_tensor *t, int64_t i) { return t->is_float ? (double)t->f[i] : (double)t->i[i]; }

static ts_status all_const(importer *im, const Onnx__NodeProto *n, int count, value **v) {
    static const char *const what[] = {"first input", "second input", "third input"};
    for (int k = 0; k < count; k++) {
        ts_status st = require_const(im, n, k, what[k], &v[k]);
        if (st) return st;
    }
    return TS_OK;
}

/* ConstantOfShape over a shape holding the batch marker: zeros as large as the batch
 * (PyTorch's initial RNN/LSTM/GRU state, which a recurrent node then takes as its
 * zero start); any other fill would be a constant tensor as large as the batch */
static ts_status zeros_of_batch(importer *im, const Onnx__NodeProto *n, const value *s) {
    const Onnx__AttributeProto *a = attr(n, "value");
    if (a && a->t) {
        ts_onnx_tensor *fillv;
        char what[200];
        snprintf(what, sizeof what, "%s: ConstantOfShape node '%.100s' value", im->file, node_base(n));
        ts_status st = onnx_tensor_from_proto(im->ctx, a->t, what, &fillv);
        if (st) return st;
        const int zero = fillv->numel == 1 && (fillv->is_float ? fillv->f[0] == 0.0f : fillv->i[0] == 0);
        ts_onnx_tensor_free(fillv);
        if (!zero) return unsupported(im, "a constant other than zeros as large as the batch");
    }
    value z = {.kind = VALUE_ZEROS, .layer = -1};
    int64_t dims[ONNX_MAX_RANK];
    int markers = 0;
    for (int k = 0; k < s->c->numel; k++) {
        dims[k] = s->c->i[k] == ONNX_BATCH_DIM ? -1 : s->c->i[k];
        if (s->c->i[k] == ONNX_BATCH_DIM) z.bax = k, markers++;
        else if (dims[k] < 1) return unsupported(im, "shape[%d] = %lld with the batch size", k, (long long)dims[k]);
    }
    if (markers != 1 || !im->off) return unsupported(im, "the batch size used more than once in a shape");
    return define_like(im, n, 0, &z, (int)s->c->numel, dims, z.bax);
}

ts_status op_constantofshape(importer *im, const Onnx__NodeProto *n) {
    value *s;
    ts_status st = require_const(im, n, 0, "shape", &s);
    if (st) return st;
    if (s->c->is_float || s->rank != 1 || s->c->numel > ONNX_MAX_RANK)
        return bad_node(im, "the shape must be a 1-D integer tensor of at most %d values", ONNX_MAX_RANK);
    int64_t dims[ONNX_MAX_RANK], numel = 1;
    for (int k = 0; k < s->c->numel; k++)
        if (s->c->i[k] == ONNX_BATCH_DIM) return zeros_of_batch(im, n, s);
    for (int k = 0; k < s->c->numel; k++) {
        dims[k] = s->c->i[k];
        if (dims[k] < 0) return bad_node(im, "shape[%d] = %lld", k, (long long)dims[k]);
        if (dims[k] && numel > FOLD_MAX_ELEMENTS / dims[k])
            return unsupported(im, "a constant of more than %lld values", (long long)FOLD_MAX_ELEMENTS);
        numel *= dims[k];
    }
    const Onnx__AttributeProto *a = attr(n, "value");
    ts_onnx_tensor *fillv = NULL;
    if (a && a->t) {
        char what[200];
        snprintf(what, sizeof what, "%s: ConstantOfShape node '%.100s' value", im->file, node_base(n));
        if ((st = onnx_tensor_from_proto(im->ctx, a->t, what, &fillv))) return st;
        if (fillv->numel != 1) {
            ts_onnx_tensor_free(fillv);
            return bad_node(im, "value must hold exactly one element");
        }
    }
    ts_onnx_tensor *t = onnx_tensor_new(fillv ? fillv->is_float : 1, (int)s->c->numel, dims);
    if (!t) {
        ts_onnx_tensor_free(fillv);
        return oom(im);
    }
    for (int64_t i = 0; i < t->numel && fillv; i++) {
        if (t->is_float) t->f[i] = fillv->f[0];
        else t->i[i] = fillv->i[0];
    }
    ts_onnx_tensor_free(fillv);
    return define_const(im, n, 0, t);
}

/* Range(start, limit, delta): ceil((limit - start) / delta) values, at least 0 */
ts_status op_range(importer *im, const Onnx__NodeProto *n) {
    value *v[3];
    ts_status st = all_const(im, n, 3, v);
    if (st) return st;
    for (int k = 0; k < 3; k++)
        if (v[k]->c->numel != 1) return bad_node(im, "start, limit and delta must be scalars");
    int is_float = v[0]->c->is_float;
    double start = number(v[0]->c, 0), limit = number(v[1]->c, 0), delta = number(v[2]->c, 0);
    if (delta == 0 || !isfinite(start) || !isfinite(limit) || !isfinite(delta))
        return bad_node(im, "delta is 0, or a bound is not finite");
    double count = ceil((limit - start) / delta);
    if (count < 0) count = 0;
    if (count > (double)FOLD_MAX_ELEMENTS)
        return unsupported(im, "a range of more than %lld values", (long long)FOLD_MAX_ELEMENTS);
    int64_t len = (int64_t)count;
    ts_onnx_tensor *t = onnx_tensor_new(is_float, 1, &len);
    if (!t) return oom(im);
    for (int64_t i = 0; i < len; i++) {
        if (is_float) t->f[i] = (float)(v[0]->c->f[0] + (double)i * v[2]->c->f[0]);
        else t->i[i] = v[0]->c->i[0] + i * v[2]->c->i[0];
    }
    return define_const(im, n, 0, t);
}

/* the node's first count inputs, which must be constants, and their broadcast shape */
static ts_status broadcast_all(importer *im, const Onnx__NodeProto *n, value **v, int count, int *rr, int64_t *dims) {
    ts_status st = all_const(im, n, count, v);
    if (st) return st;
    int r = v[0]->rank;
    int64_t d[2 * ONNX_MAX_RANK];
    memcpy(d, v[0]->dims, (size_t)r * sizeof *d);
    for (int k = 1; k < count; k++) {
        int64_t acc[2 * ONNX_MAX_RANK];
        if (!broadcast(r, d, v[k]->rank, v[k]->dims, &r, acc) || r > ONNX_MAX_RANK)
            return bad_node(im, "the inputs do not broadcast");
        memcpy(d, acc, (size_t)r * sizeof *d);
    }
    int64_t numel = 1;
    for (int k = 0; k < r; k++) {
        if (d[k] && numel > FOLD_MAX_ELEMENTS / d[k])
            return unsupported(im, "a constant of more than %lld values", (long long)FOLD_MAX_ELEMENTS);
        numel *= d[k];
    }
    *rr = r;
    memcpy(dims, d, (size_t)r * sizeof *d);
    return TS_OK;
}

/* Equal (1 where the two inputs are equal) and Where (X where the condition
 * holds, else Y), broadcast */
static ts_status fold_select(importer *im, const Onnx__NodeProto *n, int is_where) {
    value *v[3];
    int rr = 0;
    int64_t dims[ONNX_MAX_RANK];
    ts_status st = broadcast_all(im, n, v, is_where ? 3 : 2, &rr, dims);
    if (st) return st;
    if (is_where && v[1]->c->is_float != v[2]->c->is_float) return bad_node(im, "X and Y have different types");
    ts_onnx_tensor *t = onnx_tensor_new(is_where && v[1]->c->is_float, rr, dims);
    if (!t) return oom(im);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t a = broadcast_source(rr, dims, i, v[0]->rank, v[0]->dims);
        if (!is_where) {
            int64_t b = broadcast_source(rr, dims, i, v[1]->rank, v[1]->dims);
            int both_int = !v[0]->c->is_float && !v[1]->c->is_float;
            t->i[i] = both_int ? v[0]->c->i[a] == v[1]->c->i[b] : number(v[0]->c, a) == number(v[1]->c, b);
            continue;
        }
        const value *from = number(v[0]->c, a) != 0 ? v[1] : v[2];
        int64_t s = broadcast_source(rr, dims, i, from->rank, from->dims);
        if (t->is_float) t->f[i] = from->c->f[s];
        else t->i[i] = from->c->i[s];
    }
    return define_const(im, n, 0, t);
}

ts_status op_equal(importer *im, const Onnx__NodeProto *n) { return fold_select(im, n, 0); }

ts_status op_where(importer *im, const Onnx__NodeProto *n) { return fold_select(im, n, 1); }
