/* ONNX converters for reductions and normalizations over computed values:
 * ReduceMean (a reducemean layer) and LayerNormalization (opset 17), which becomes
 * the graph PyTorch exports for it before opset 17: mean, x - mean, its square's
 * mean, + epsilon, sqrt, divide, then scale and bias. */
#include "onnx_import.h"

#include <stdlib.h>
#include <string.h>

/* mean over the ONNX axes of a computed value, keeping them with size 1 */
static ts_status reducemean_value(importer *im, const Onnx__NodeProto *n, const value *x, const int64_t *axes,
                                  int naxes, value *res) {
    ts_status st = need_layer_value(im, x);
    if (st) return st;
    layer_attrs a;
    nn_attrs_default(LAYER_REDUCEMEAN, &a);
    a.naxes = naxes;
    value v = *x;
    for (int k = 0; k < naxes; k++) {
        int64_t ax = axes[k] < 0 ? axes[k] + x->rank : axes[k];
        if (ax < 0 || ax >= x->rank) return bad_node(im, "axis %lld is out of range for rank %d", (long long)axes[k], x->rank);
        a.axes[k] = sample_axis_of(im, x, (int)ax); /* wherever the batch axis is (time-major attention) */
        if (a.axes[k] < 0) return unsupported(im, "axis %lld is the batch axis", (long long)axes[k]);
        for (int j = 0; j < k; j++)
            if (a.axes[j] == a.axes[k]) return bad_node(im, "axis %lld is listed twice", (long long)axes[k]);
        v.dims[ax] = 1;
    }
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    ts_shape out;
    if ((st = value_sample_shape(im, &v, &out))) return st;
    const char *ins[1] = {in};
    int li;
    if ((st = emit_layer(im, LAYER_REDUCEMEAN, node_base(n), ins, 1, &a, &out, &li))) return st;
    *res = v;
    res->layer = li;
    return TS_OK;
}

ts_status op_reducemean(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if (x->kind != VALUE_LAYER) return unsupported(im, "ReduceMean of a constant");
    if (n->n_input > 1 && node_input(im, n, 1)) return unsupported(im, "axes as an input (opset 18)");
    const int64_t *given;
    int naxes = attr_ints(n, "axes", &given);
    int64_t axes[ONNX_MAX_RANK];
    if (naxes > x->rank) return bad_node(im, "%d axes for a rank-%d input", naxes, x->rank);
    if (naxes == 0) { /* every axis */
        naxes = x->rank;
        for (int k = 0; k < naxes; k++) axes[k] = k;
    } else {
        memcpy(axes, given, (size_t)naxes * sizeof *axes);
    }
    value res;
    if ((st = reducemean_value(im, n, x, axes, naxes, &res))) return st;
    if (attr_int(n, "keepdims", 1)) return define_layer_as(im, n, 0, res.layer, res.rank, res.dims, &res);
    /* keepdims=0: the same values seen without the reduced axes */
    int64_t dims[ONNX_MAX_RANK];
    int r = 0, bax = 0;
    for (int k = 0; k < res.rank; k++) {
        int reduced = 0;
        for (int j = 0; j < naxes; j++) reduced |= (axes[j] < 0 ? axes[j] + res.rank : axes[j]) == k;
        if (k == res.bax) bax = r;
        if (!reduced) dims[r++] = res.dims[k];
    }
    return define_layer_bax(im, n, 0, res.layer, r, dims, bax);
}

/* frees what a value owns (a folded constant) */
static void value_drop(value *v) {
    if (v->kind == VALUE_CONST) ts_onnx_tensor_free(v->c);
    v->c = NULL;
}

ts_status op_layernorm(importer *im, const Onnx__NodeProto *n) {
    value *x, *scale, *bias = NULL;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "scale", &scale);
    if (!st && node_input(im, n, 2)) st = require_const(im, n, 2, "bias", &bias);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    int64_t axis = attr_int(n, "axis", -1);
    if (axis < -x->rank || axis >= x->rank) return bad_node(im, "axis %lld is out of range for rank %d", (long long)axis, x->rank);
    if (axis < 0) axis += x->rank;
    if (im->off && x->bax >= axis) return unsupported(im, "axis %lld: the normalized axes hold the batch axis", (long long)axis);
    int64_t axes[ONNX_MAX_RANK];
    int naxes = 0;
    for (int64_t k = axis; k < x->rank; k++) axes[naxes++] = k;
    const float eps = attr_float(n, "epsilon", 1e-5f);
    int64_t one = 1;
    ts_onnx_tensor *et = onnx_tensor_new(1, 0, &one);
    if (!et) return oom(im);
    et->f[0] = eps;
    value epsv = {.name = "epsilon", .kind = VALUE_CONST, .c = et, .rank = 0};
    value mean = {0}, d = {0}, sq = {0}, var = {0}, ve = {0}, sd = {0}, y = {0}, ys = {0}, yb = {0};
    st = reducemean_value(im, n, x, axes, naxes, &mean);
    if (!st) st = binary_value(im, n, BINARY_SUB, x, &mean, &d);
    if (!st) st = binary_value(im, n, BINARY_MUL, &d, &d, &sq);
    if (!st) st = reducemean_value(im, n, &sq, axes, naxes, &var);
    if (!st) st = binary_value(im, n, BINARY_ADD, &var, &epsv, &ve);
    if (!st) st = unary_value(im, n, LAYER_SQRT, NULL, &ve, &sd);
    if (!st) st = binary_value(im, n, BINARY_DIV, &d, &sd, &y);
    if (!st) st = binary_value(im, n, BINARY_MUL, &y, scale, &ys);
    if (!st && bias) st = binary_value(im, n, BINARY_ADD, &ys, bias, &yb);
    const value *last = bias ? &yb : &ys;
    if (!st) st = define_layer_as(im, n, 0, last->layer, x->rank, x->dims, x);
    /* Mean and InvStdDev (training outputs) are not computed */
    for (int k = 1; k < 3 && !st; k++)
        if (output_used(im, n, k)) st = define_uncomputed(im, n, k);
    value *all[] = {&epsv, &mean, &d, &sq, &var, &ve, &sd, &y, &ys, &yb};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) value_drop(all[k]);
    return st;
}
