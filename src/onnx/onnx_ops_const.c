/* ONNX converters for constants and shape arithmetic: Constant, Shape, Gather,
 * Cast, Expand. */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ constants */

ts_status op_constant(importer *im, const Onnx__NodeProto *n) {
    const Onnx__AttributeProto *a;
    ts_onnx_tensor *t = NULL;
    if ((a = attr(n, "value")) && a->t) {
        char what[200];
        snprintf(what, sizeof what, "%s: Constant node '%.100s'", im->file, node_base(n));
        ts_status st = onnx_tensor_from_proto(im->ctx, a->t, what, &t);
        if (st) return st;
    } else if ((a = attr(n, "value_float")) && a->has_f) {
        t = onnx_tensor_new(1, 0, NULL);
        if (t) t->f[0] = a->f;
    } else if ((a = attr(n, "value_int")) && a->has_i) {
        t = onnx_tensor_new(0, 0, NULL);
        if (t) t->i[0] = a->i;
    } else if ((a = attr(n, "value_floats"))) {
        int64_t d = (int64_t)a->n_floats;
        t = onnx_tensor_new(1, 1, &d);
        if (t && d) memcpy(t->f, a->floats, (size_t)d * sizeof(float));
    } else if ((a = attr(n, "value_ints"))) {
        int64_t d = (int64_t)a->n_ints;
        t = onnx_tensor_new(0, 1, &d);
        if (t && d) memcpy(t->i, a->ints, (size_t)d * sizeof(int64_t));
    } else {
        return unsupported(im, "only value, value_float(s) and value_int(s) constants are supported");
    }
    if (!t) return oom(im);
    return define_const(im, n, 0, t);
}

ts_status op_shape(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    int64_t start = attr_int(n, "start", 0), end = attr_int(n, "end", x->rank);
    if (start < 0) start += x->rank;
    if (end < 0) end += x->rank;
    if (start < 0) start = 0;
    if (end > x->rank) end = x->rank;
    int64_t len = end > start ? end - start : 0;
    ts_onnx_tensor *t = onnx_tensor_new(0, 1, &len);
    if (!t) return oom(im);
    for (int64_t k = 0; k < len; k++) {
        int64_t d = x->dims[start + k];
        /* the batch's axis: the marker, times the per-sample share when folded */
        if (x->kind == VALUE_LAYER && im->off && start + k == x->bax) d = ONNX_BATCH_DIM * (x->fold ? x->bsub : 1);
        t->i[k] = d;
    }
    return define_const(im, n, 0, t);
}

ts_status op_gather(importer *im, const Onnx__NodeProto *n) {
    value *x, *idx;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    int64_t axis = attr_int(n, "axis", 0);
    idx = node_input(im, n, 1);
    if (idx && idx->kind == VALUE_LAYER && x->kind == VALUE_CONST && axis == 0) return embedding_gather(im, n, x, idx);
    if ((st = require_const(im, n, 1, "indices", &idx))) return st;
    if (idx->c->is_float) return bad_node(im, "indices must be integers");
    if (axis < -x->rank || axis >= x->rank) return bad_node(im, "axis out of range");
    if (axis < 0) axis += x->rank;
    if (x->kind != VALUE_CONST) return gather_computed(im, n, x, idx, (int)axis);
    int rr = x->rank - 1 + idx->rank;
    if (rr > ONNX_MAX_RANK) return unsupported(im, "result rank %d", rr);
    int64_t dims[ONNX_MAX_RANK];
    int r = 0;
    for (int k = 0; k < axis; k++) dims[r++] = x->dims[k];
    for (int k = 0; k < idx->rank; k++) dims[r++] = idx->dims[k];
    for (int k = (int)axis + 1; k < x->rank; k++) dims[r++] = x->dims[k];
    ts_onnx_tensor *t = onnx_tensor_new(x->c->is_float, rr, dims);
    if (!t) return oom(im);
    int64_t outer = shape_numel_dims((int)axis, x->dims), inner = shape_numel_dims(x->rank - (int)axis - 1, x->dims + axis + 1);
    int64_t len = x->dims[axis];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < idx->c->numel; j++) {
            int64_t g = idx->c->i[j] < 0 ? idx->c->i[j] + len : idx->c->i[j];
            if (g < 0 || g >= len) {
                ts_onnx_tensor_free(t);
                return bad_node(im, "index %lld out of range for %lld", (long long)idx->c->i[j], (long long)len);
            }
            for (int64_t i = 0; i < inner; i++) {
                int64_t dst = (o * idx->c->numel + j) * inner + i, src = (o * len + g) * inner + i;
                if (t->is_float) t->f[dst] = x->c->f[src];
                else t->i[dst] = x->c->i[src];
            }
        }
    return define_const(im, n, 0, t);
}

ts_status op_cast(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    int64_t to = attr_int(n, "to", 0);
    int to_float = to == ONNX_FLOAT || to == ONNX_DOUBLE;
    if (x->kind == VALUE_LAYER) {
        /* to an integer type: token ids, which only a Gather from a constant table (an
         * embedding) reads; the values stay the floats they were */
        int is_int = to == ONNX_INT64 || to == ONNX_INT32;
        if (!to_float && !is_int) return unsupported(im, "casting computed values to %s", onnx_dtype_name((int)to));
        if ((st = define_alias(im, n, 0, x))) return st;
        value *v = node_output(im, n, 0);
        if (v) v->ints = is_int;
        return TS_OK;
    }
    ts_onnx_tensor *t = onnx_tensor_new(to_float, x->rank, x->dims);
    if (!t) return oom(im);
    for (int64_t i = 0; i < t->numel; i++) {
        if (to_float) t->f[i] = x->c->is_float ? x->c->f[i] : (float)x->c->i[i];
        else t->i[i] = x->c->is_float ? onnx_float_to_int64(x->c->f[i]) : x->c->i[i];
    }
    return define_const(im, n, 0, t);
}

/* Expand: numpy broadcast to a shape. A constant expanded over the batch (Shape's
 * batch marker) becomes a `constant` layer; a computed value is broadcast by a
 * multiplication with ones. */
ts_status op_expand(importer *im, const Onnx__NodeProto *n) {
    value *x, *s;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "shape", &s);
    if (st) return st;
    if (s->c->is_float || s->rank != 1 || s->c->numel > ONNX_MAX_RANK) return bad_node(im, "shape must be a 1-D int64 tensor");
    int rs = (int)s->c->numel, batched = 0;
    int64_t sd[ONNX_MAX_RANK];
    for (int k = 0; k < rs; k++) {
        sd[k] = s->c->i[k];
        if (sd[k] == ONNX_BATCH_DIM) {
            if (k != 0 || !im->off) return unsupported(im, "the batch size used as a sample dimension");
            batched = 1;
            sd[k] = -1;
        } else if (sd[k] < 0) {
            return bad_node(im, "shape[%d] = %lld", k, (long long)sd[k]);
        }
    }
    if (x->kind == VALUE_LAYER && im->off) {
        /* the batch axis must stay where it is, with its size */
        if (rs > x->rank) return unsupported(im, "expanding adds axes before the batch axis");
        if (rs == x->rank && sd[0] != -1 && sd[0] != 1) return unsupported(im, "expanding the batch axis");
    }
    int rr;
    int64_t dims[2 * ONNX_MAX_RANK];
    if (!broadcast(x->rank, x->dims, rs, sd, &rr, dims) || rr > ONNX_MAX_RANK)
        return bad_node(im, "'%s' does not broadcast to the shape", x->name);
    if (x->kind == VALUE_CONST && !batched) {
        int64_t count = 1;
        for (int k = 0; k < rr; k++) {
            if (dims[k] && count > FOLD_MAX_ELEMENTS / dims[k])
                return unsupported(im, "a constant of more than %lld values", (long long)FOLD_MAX_ELEMENTS);
            count *= dims[k];
        }
        ts_onnx_tensor *t = onnx_tensor_new(x->c->is_float, rr, dims);
        if (!t) return oom(im);
        for (int64_t i = 0; i < t->numel; i++) {
            int64_t rem = i, src = 0, stride = 1;
            for (int k = rr - 1; k >= 0; k--) {
                int64_t d = rem % dims[k];
                rem /= dims[k];
                int kx = k - (rr - x->rank);
                if (kx >= 0) {
                    if (x->dims[kx] > 1) src += d * stride;
                    stride *= x->dims[kx];
                }
            }
            if (t->is_float) t->f[i] = x->c->f[src];
            else t->i[i] = x->c->i[src];
        }
        return define_const(im, n, 0, t);
    }
    value tmp = {.kind = VALUE_LAYER, .rank = rr};
    memcpy(tmp.dims, dims, (size_t)rr * sizeof *dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    int64_t numel = ts_shape_numel(&out);
    int li;
    if (x->kind == VALUE_CONST) {
        /* a per-sample constant: the expanded values, repeated for each sample */
        ts_onnx_tensor *t = NULL;
        value sample = *x;
        if (im->off && x->rank == rr) {
            if (x->dims[0] != 1) return unsupported(im, "constant '%s' varies along the batch axis", x->name);
            sample.rank = x->rank - 1;
            memmove(sample.dims, x->dims + 1, (size_t)sample.rank * sizeof *sample.dims);
        }
        int64_t od[ONNX_MAX_RANK];
        for (int k = 0; k < out.ndim; k++) od[k] = out.dims[k];
        t = onnx_tensor_new(1, out.ndim, od);
        if (!t) return oom(im);
        for (int64_t i = 0; i < numel; i++) {
            int64_t rem = i, src = 0, stride = 1;
            for (int k = out.ndim - 1; k >= 0; k--) {
                int64_t d = rem % od[k];
                rem /= od[k];
                int kx = k - (out.ndim - sample.rank);
                if (kx >= 0) {
                    if (sample.dims[kx] > 1) src += d * stride;
                    stride *= sample.dims[kx];
                }
            }
            t->f[i] = x->c->is_float ? x->c->f[src] : (float)x->c->i[src];
        }
        layer_attrs ca;
        nn_attrs_default(LAYER_CONSTANT, &ca);
        ca.tshape = out;
        const char *ins[1] = {im->layers[0]->name};
        st = emit_layer(im, LAYER_CONSTANT, node_base(n), ins, 1, &ca, &out, &li);
        if (!st) st = add_fill(im, im->layers[li]->t.konst, t->f, numel);
        ts_onnx_tensor_free(t);
        if (st) return st;
        return define_layer(im, n, 0, li, rr, dims);
    }
    if (im->off && x->rank != rr) return unsupported(im, "expanding would broadcast across the batch axis");
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    float *ones = malloc((size_t)numel * sizeof *ones);
    if (!ones) return oom(im);
    for (int64_t i = 0; i < numel; i++) ones[i] = 1.0f;
    layer_attrs ba;
    nn_attrs_default(LAYER_BINARY, &ba);
    ba.op = BINARY_MUL;
    ba.tshape = out;
    const char *ins[1] = {in};
    st = emit_layer(im, LAYER_BINARY, node_base(n), ins, 1, &ba, &out, &li);
    if (!st) st = add_fill(im, im->layers[li]->t.konst, ones, numel);
    free(ones);
    if (st) return st;
    return define_layer(im, n, 0, li, rr, dims);
}
