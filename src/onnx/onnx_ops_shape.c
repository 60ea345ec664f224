/* ONNX converters for shape ops: Flatten, Reshape, Squeeze, Unsqueeze, Transpose,
 * Concat, Pad. */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ shape ops */

/* a new logical shape over the same data: a view of a layer (the batch at bax,
 * folded as fold with a per-sample share bsub), or a constant */
static ts_status define_reshaped(importer *im, const Onnx__NodeProto *n, const value *x, int rank, const int64_t *dims,
                                 int bax, int fold, int64_t bsub) {
    if (rank > ONNX_MAX_RANK) return unsupported(im, "result rank %d (at most %d)", rank, ONNX_MAX_RANK);
    if (x->kind == VALUE_CONST) {
        ts_onnx_tensor *t = onnx_tensor_new(x->c->is_float, rank, dims);
        if (!t) return oom(im);
        if (t->numel != x->c->numel) {
            ts_onnx_tensor_free(t);
            return bad_node(im, "reshaping %lld values into %lld", (long long)x->c->numel, (long long)t->numel);
        }
        size_t bytes = (size_t)t->numel * (t->is_float ? sizeof(float) : sizeof(int64_t));
        if (bytes) memcpy(t->is_float ? (void *)t->f : (void *)t->i, x->c->is_float ? (void *)x->c->f : (void *)x->c->i, bytes);
        return define_const(im, n, 0, t);
    }
    value tmp = {.kind = VALUE_LAYER, .rank = rank, .bax = bax, .fold = fold, .bsub = bsub};
    memcpy(tmp.dims, dims, (size_t)rank * sizeof *dims);
    ts_shape s, s0;
    ts_status st = value_sample_shape(im, &tmp, &s);
    if (!st) st = value_sample_shape(im, x, &s0);
    if (st) return st;
    if (ts_shape_numel(&s) != ts_shape_numel(&s0))
        return bad_node(im, "the new shape holds %lld values per sample, the input %lld", (long long)ts_shape_numel(&s),
                        (long long)ts_shape_numel(&s0));
    st = define_like(im, n, 0, x, rank, dims, bax);
    value *v = st ? NULL : node_output(im, n, 0);
    if (v) {
        v->fold = fold;
        v->bsub = bsub;
    }
    return st;
}

ts_status op_flatten(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    int64_t axis = attr_int(n, "axis", 1);
    if (axis < -x->rank || axis > x->rank) return bad_node(im, "axis %lld out of range", (long long)axis);
    if (axis < 0) axis += x->rank;
    int64_t dims[2] = {1, 1};
    if (x->kind == VALUE_LAYER && im->off) {
        if (axis == 0) return unsupported(im, "axis=0 flattens the batch axis into the sample");
        for (int k = 1; k < axis; k++)
            if (x->dims[k] != 1) return unsupported(im, "axis=%lld merges sample axes into the batch axis", (long long)axis);
        dims[0] = -1;
        dims[1] = shape_numel_dims(x->rank - (int)axis, x->dims + axis);
        return define_reshaped(im, n, x, 2, dims, 0, FOLD_NONE, 0);
    }
    dims[0] = shape_numel_dims((int)axis, x->dims);
    dims[1] = shape_numel_dims(x->rank - (int)axis, x->dims + axis);
    return define_reshaped(im, n, x, 2, dims, 0, FOLD_NONE, 0);
}

/* shape[k] = d of a Reshape of x: 0 copies x's axis k (unless allowzero); -1 is
 * inferred later (*infer says where) */
static ts_status reshape_entry(importer *im, const value *x, int64_t d, int k, int allowzero, int *infer, int64_t *out) {
    if (d == 0 && !allowzero) {
        if (k >= x->rank) return bad_node(im, "shape[%d] = 0 copies a dimension the input does not have", k);
        d = x->dims[k];
    }
    if (d == -1) {
        if (*infer >= 0) return bad_node(im, "shape has more than one -1");
        *infer = k;
    } else if (d < 0) {
        return bad_node(im, "shape[%d] = %lld", k, (long long)d);
    }
    *out = d;
    return TS_OK;
}

/* Reshape of a layer whose batch axis is not first or is folded, or to a shape that
 * puts it elsewhere or folds it (around recurrent nodes: (T, N, D, H) to (T, N, D*H);
 * in attention: (L, N, E) to (L, N*heads, hd), (L, N*heads, hd) to (L*N, E) and back).
 * The new shape names the batch by Shape's marker, times k when the batch folds with
 * a per-sample factor k. Seen as (A, N, B), the values before and after the batch,
 * the result must be (A, N, B) too, the factor k on the batch's outer or inner side:
 * then each sample's values keep their order and the reshape is a view. */
/* *p *= f for the non-negative sizes of a file's shapes; 0 when that would overflow */
static int size_mul(int64_t *p, int64_t f) {
    if (*p < 0 || f < 0 || (f && *p > INT64_MAX / f)) return 0;
    *p *= f;
    return 1;
}

static ts_status reshape_moved(importer *im, const Onnx__NodeProto *n, const value *x, const int64_t *target, int rank,
                               int allowzero) {
    int64_t dims[ONNX_MAX_RANK], known[2] = {1, 1}, mult = 1;
    int nb = -1, infer = -1;
    for (int k = 0; k < rank; k++) {
        int64_t d = target[k], f;
        if (d == 0 && !allowzero && k == x->bax) d = ONNX_BATCH_DIM * (x->fold ? x->bsub : 1);
        if (onnx_batch_marker(d, &f)) {
            if (nb >= 0) return unsupported(im, "the new shape has the batch size twice");
            nb = k;
            mult = f;
            dims[k] = -1;
            continue;
        }
        ts_status st = reshape_entry(im, x, d, k, allowzero, &infer, &dims[k]);
        if (st) return st;
    }
    if (nb < 0) return unsupported(im, "the new shape does not keep the batch axis by itself");
    int64_t want[2] = {shape_numel_dims(x->bax, x->dims), shape_numel_dims(x->rank - x->bax - 1, x->dims + x->bax + 1)};
    int sizes_ok = want[0] >= 0 && want[1] >= 0 && (!x->fold || size_mul(&want[x->fold == FOLD_OUTER], x->bsub));
    for (int k = 0; k < rank; k++)
        if (k != nb && k != infer) sizes_ok &= size_mul(&known[k > nb], dims[k]);
    if (!sizes_ok) return unsupported(im, "the new shape's sizes overflow");
    const int first = mult > 1 ? FOLD_OUTER : FOLD_NONE, last = mult > 1 ? FOLD_INNER : FOLD_NONE;
    for (int fold = first; fold <= last; fold++) {
        int64_t have[2] = {known[0], known[1]};
        if (!size_mul(&have[0], fold == FOLD_INNER ? mult : 1) || !size_mul(&have[1], fold == FOLD_OUTER ? mult : 1))
            continue;
        if (infer >= 0) {
            const int side = infer > nb;
            if (have[side] == 0 || want[side] % have[side]) continue;
            dims[infer] = want[side] / have[side];
            have[side] = want[side];
        }
        if (have[0] == want[0] && have[1] == want[1])
            return define_reshaped(im, n, x, rank, dims, nb, fold, fold ? mult : 0);
    }
    return unsupported(im, "the new shape moves values across the batch axis (axis %d%s)", x->bax,
                       x->fold ? ", folded with another" : "");
}

ts_status op_reshape(importer *im, const Onnx__NodeProto *n) {
    value *x, *s;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    const int64_t *target;
    int rank;
    if (im->opset < 5) {
        rank = attr_ints(n, "shape", &target);
    } else {
        if ((st = require_const(im, n, 1, "shape", &s))) return st;
        if (s->c->is_float || s->rank != 1) return bad_node(im, "shape must be a 1-D int64 tensor");
        target = s->c->i;
        rank = (int)s->c->numel;
    }
    if (rank > ONNX_MAX_RANK) return unsupported(im, "result rank %d (at most %d)", rank, ONNX_MAX_RANK);
    int allowzero = (int)attr_int(n, "allowzero", 0);
    int64_t dims[ONNX_MAX_RANK];
    int infer = -1;
    int batched = x->kind == VALUE_LAYER && im->off;
    int moved = batched && (x->bax || x->fold);
    for (int k = 0; k < rank && batched; k++) { /* the batch elsewhere, or folded with another axis */
        int64_t f;
        moved |= onnx_batch_marker(target[k], &f) && (k || f != 1);
    }
    if (moved) return reshape_moved(im, n, x, target, rank, allowzero);
    int64_t known = 1;
    for (int k = 0; k < rank; k++) {
        int64_t d = target[k];
        if (d == ONNX_BATCH_DIM || (batched && k == 0 && ((d == 0 && !allowzero) || (im->batch0 > 0 && d == im->batch0)))) {
            if (!batched || k != 0) return unsupported(im, "the batch size is used as a sample dimension");
            dims[k] = -1;
            continue;
        }
        if ((st = reshape_entry(im, x, d, k, allowzero, &infer, &dims[k]))) return st;
        if (infer != k) known *= dims[k];
    }
    if (batched) {
        ts_shape s0;
        if ((st = value_sample_shape(im, x, &s0))) return st;
        int64_t per = ts_shape_numel(&s0);
        if (dims[0] != -1 || (infer > 0 && known == 0)) {
            return unsupported(im, "the new shape does not keep the batch axis first");
        }
        if (infer == 0) {
            /* -1 first: the batch when the rest holds exactly one sample */
            if (known != per) return unsupported(im, "the new shape does not keep the batch axis first");
        } else if (infer > 0) {
            if (known == 0 || per % known) return bad_node(im, "cannot infer the -1 dimension");
            dims[infer] = per / known;
        }
        dims[0] = -1;
    } else if (infer >= 0) {
        int64_t total = x->kind == VALUE_CONST ? x->c->numel : shape_numel_dims(x->rank, x->dims);
        if (known == 0 || total % known) return bad_node(im, "cannot infer the -1 dimension");
        dims[infer] = total / known;
    }
    return define_reshaped(im, n, x, rank, dims, 0, FOLD_NONE, 0);
}

/* axes from the attribute (before opset 13) or the second input */
static ts_status axes_of(importer *im, const Onnx__NodeProto *n, const int64_t **axes, int *count) {
    if (im->opset < 13) {
        *count = attr_ints(n, "axes", axes);
        return TS_OK;
    }
    value *a = node_input(im, n, 1);
    *axes = NULL;
    *count = 0;
    if (!a) return TS_OK;
    if (a->kind != VALUE_CONST || a->c->is_float) return unsupported(im, "axes must be a constant int64 tensor");
    if (a->c->numel > ONNX_MAX_RANK) return bad_node(im, "%lld axes", (long long)a->c->numel);
    *axes = a->c->i;
    *count = (int)a->c->numel;
    return TS_OK;
}

ts_status op_squeeze(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    const int64_t *axes;
    int cnt;
    if ((st = axes_of(im, n, &axes, &cnt))) return st;
    int drop[ONNX_MAX_RANK] = {0};
    for (int k = 0; k < cnt; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + x->rank : axes[k];
        if (a < 0 || a >= x->rank) return bad_node(im, "axis %lld out of range", (long long)axes[k]);
        if (x->kind == VALUE_LAYER && im->off && a == x->bax) return unsupported(im, "squeezing the batch axis");
        if (x->dims[a] != 1) return bad_node(im, "axis %lld has size %lld, not 1", (long long)a, (long long)x->dims[a]);
        drop[a] = 1;
    }
    if (!cnt)
        for (int k = 0; k < x->rank; k++) drop[k] = x->dims[k] == 1 && !(x->kind == VALUE_LAYER && im->off && k == x->bax);
    int64_t dims[ONNX_MAX_RANK];
    int r = 0, bax = 0;
    for (int k = 0; k < x->rank; k++) {
        if (k == x->bax) bax = r;
        if (!drop[k]) dims[r++] = x->dims[k];
    }
    return define_reshaped(im, n, x, r, dims, bax, FOLD_NONE, 0);
}

ts_status op_unsqueeze(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    const int64_t *axes;
    int cnt;
    if ((st = axes_of(im, n, &axes, &cnt))) return st;
    int r = x->rank + cnt;
    if (r > ONNX_MAX_RANK) return unsupported(im, "result rank %d", r);
    int ins[ONNX_MAX_RANK] = {0};
    for (int k = 0; k < cnt; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r : axes[k];
        if (a < 0 || a >= r || ins[a]) return bad_node(im, "axis %lld is out of range or repeated", (long long)axes[k]);
        ins[a] = 1;
    }
    int64_t dims[ONNX_MAX_RANK];
    int bax = 0; /* an axis inserted before the batch axis moves it (a later op may move it back) */
    for (int k = 0, j = 0; k < r; k++) {
        if (!ins[k] && j == x->bax) bax = k;
        dims[k] = ins[k] ? 1 : x->dims[j++];
    }
    return define_reshaped(im, n, x, r, dims, bax, FOLD_NONE, 0);
}

ts_status op_transpose(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    const int64_t *p;
    int cnt = attr_ints(n, "perm", &p);
    int perm[ONNX_MAX_RANK], seen[ONNX_MAX_RANK] = {0};
    if (cnt && cnt != x->rank) return bad_node(im, "perm has %d entries for rank %d", cnt, x->rank);
    for (int k = 0; k < x->rank; k++) {
        perm[k] = cnt ? (int)p[k] : x->rank - 1 - k;
        if (perm[k] < 0 || perm[k] >= x->rank || seen[perm[k]]++) return bad_node(im, "perm is not a permutation");
    }
    int64_t dims[ONNX_MAX_RANK];
    for (int k = 0; k < x->rank; k++) dims[k] = x->dims[perm[k]];
    if (x->kind == VALUE_CONST) {
        ts_onnx_tensor *t = onnx_tensor_new(x->c->is_float, x->rank, dims);
        if (!t) return oom(im);
        int64_t stride[ONNX_MAX_RANK];
        for (int k = x->rank - 1, s = 1; k >= 0; k--) {
            stride[k] = s;
            s *= (int)x->dims[k];
        }
        for (int64_t i = 0; i < t->numel; i++) {
            int64_t rem = i, src = 0;
            for (int k = x->rank - 1; k >= 0; k--) {
                src += (rem % dims[k]) * stride[perm[k]];
                rem /= dims[k];
            }
            if (t->is_float) t->f[i] = x->c->f[src];
            else t->i[i] = x->c->i[src];
        }
        return define_const(im, n, 0, t);
    }
    /* the batch axis goes where perm puts it (a view: the layer keeps each sample's
     * values in the order of the other axes); those move with a transpose layer */
    layer_attrs pa;
    nn_attrs_default(LAYER_TRANSPOSE, &pa);
    int bax = 0, moved = 0;
    for (int k = 0; k < x->rank; k++) {
        if (im->off && perm[k] == x->bax) {
            bax = k;
            if (!x->fold) continue; /* folded: each sample's share of the axis moves with the others */
        }
        const int a = perm[k] == x->bax && x->fold ? perm[k] : sample_axis_of(im, x, perm[k]);
        moved |= a != pa.nperm;
        if (pa.nperm < TS_MAX_DIMS) pa.perm[pa.nperm++] = a;
    }
    if (!moved) return define_like(im, n, 0, x, x->rank, dims, bax);
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    value tmp = {.kind = VALUE_LAYER, .rank = x->rank, .bax = bax, .fold = x->fold, .bsub = x->bsub};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    int li;
    const char *ins[1] = {in};
    if ((st = emit_layer(im, LAYER_TRANSPOSE, node_base(n), ins, 1, &pa, &out, &li))) return st;
    return define_layer_as(im, n, 0, li, x->rank, dims, &tmp);
}

ts_status op_concat(importer *im, const Onnx__NodeProto *n) {
    if (n->n_input == 0) return bad_node(im, "no inputs");
    value *first;
    ts_status st = require_input(im, n, 0, &first);
    if (st) return st;
    int64_t axis = attr_int(n, "axis", im->opset < 4 ? 1 : 0);
    if (axis < -first->rank || axis >= first->rank) return bad_node(im, "axis %lld out of range", (long long)axis);
    if (axis < 0) axis += first->rank;
    int all_const = 1, any_const = 0, bax = 0;
    int64_t total = 0;
    for (size_t k = 0; k < n->n_input; k++) { /* the batch axis of the computed inputs */
        value *v = node_input(im, n, (int)k);
        if (v && v->kind == VALUE_LAYER) bax = v->bax;
    }
    for (size_t k = 0; k < n->n_input; k++) {
        value *v = node_input(im, n, (int)k);
        if (!v) return bad_node(im, "input %zu is missing", k);
        if (v->rank != first->rank) return bad_node(im, "inputs have different ranks");
        if (v->kind == VALUE_LAYER && v->bax != bax)
            return unsupported(im, "the inputs have their batch axes at different axes (%d and %d)", bax, v->bax);
        for (int d = 0; d < v->rank; d++)
            if (d != axis && v->dims[d] != first->dims[d] && !(v->kind == VALUE_LAYER && im->off && d == bax)) {
                if (im->off && d == bax && (v->kind == VALUE_LAYER || first->kind == VALUE_LAYER))
                    return unsupported(im, "input '%s' is a constant along the batch axis", v->name);
                return bad_node(im, "input '%s' differs beyond the concatenation axis", v->name);
            }
        all_const &= v->kind == VALUE_CONST;
        any_const |= v->kind == VALUE_CONST;
        total += v->dims[axis];
    }
    int64_t dims[ONNX_MAX_RANK];
    memcpy(dims, first->dims, sizeof dims);
    dims[axis] = total;
    if (all_const) {
        int is_float = first->c->is_float;
        ts_onnx_tensor *t = onnx_tensor_new(is_float, first->rank, dims);
        if (!t) return oom(im);
        int64_t outer = shape_numel_dims((int)axis, dims), inner = shape_numel_dims(first->rank - (int)axis - 1, dims + axis + 1);
        int64_t off = 0;
        for (size_t k = 0; k < n->n_input; k++) {
            value *v = node_input(im, n, (int)k);
            int64_t chunk = v->dims[axis] * inner;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t j = 0; j < chunk; j++) {
                    int64_t src = o * chunk + j, dst = o * total * inner + off + j;
                    if (is_float) t->f[dst] = v->c->is_float ? v->c->f[src] : (float)v->c->i[src];
                    else t->i[dst] = v->c->is_float ? onnx_float_to_int64(v->c->f[src]) : v->c->i[src];
                }
            off += chunk;
        }
        return define_const(im, n, 0, t);
    }
    if (n->n_input == 1) return define_alias(im, n, 0, first);
    const value *like = NULL;
    for (size_t k = 0; k < n->n_input && !like; k++)
        if (node_input(im, n, (int)k)->kind == VALUE_LAYER) like = node_input(im, n, (int)k);
    int a = (int)axis;
    if (bax && any_const) return unsupported(im, "a constant joins a value whose batch axis is not first");
    if (im->off && axis == bax) return unsupported(im, "axis %lld is the batch axis", (long long)axis);
    if (im->off) a = batch_first_axis(like, a) - 1;
    if (n->n_input > LAYER_MAX_INPUTS) return unsupported(im, "more than %d inputs", LAYER_MAX_INPUTS);
    const char *ins[LAYER_MAX_INPUTS];
    for (size_t k = 0; k < n->n_input; k++) {
        value *v = node_input(im, n, (int)k), lifted;
        if (any_const && v->kind == VALUE_CONST) {
            if ((st = lift_const(im, n, v, like, &lifted))) return st;
            v = &lifted;
        }
        if ((st = materialize(im, v, &ins[k]))) return st;
    }
    value tmp = {.kind = VALUE_LAYER, .rank = first->rank, .bax = bax};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    layer_attrs ca;
    nn_attrs_default(LAYER_CONCAT, &ca);
    ca.axis = a;
    int li;
    if ((st = emit_layer(im, LAYER_CONCAT, node_base(n), ins, (int)n->n_input, &ca, &out, &li))) return st;
    return define_layer_bax(im, n, 0, li, first->rank, dims, bax);
}

ts_status op_pad(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    char buf[32];
    const char *mode = attr_string(n, "mode", "constant", buf, sizeof buf);
    if (strcmp(mode, "constant") && strcmp(mode, "reflect") && strcmp(mode, "edge"))
        return unsupported(im, "mode '%s' (constant, reflect and edge are supported)", mode);
    const int64_t *pads;
    int cnt;
    double fill_value = 0;
    if (im->opset < 11) {
        cnt = attr_ints(n, "pads", &pads);
        fill_value = attr_float(n, "value", 0.0f);
    } else {
        value *p;
        if ((st = require_const(im, n, 1, "pads", &p))) return st;
        if (p->c->is_float) return bad_node(im, "pads must be int64");
        pads = p->c->i;
        cnt = (int)p->c->numel;
        int has;
        if ((st = scalar_input(im, n, 2, "constant_value", &has, &fill_value))) return st;
        if (n->n_input > 3 && node_input(im, n, 3)) return unsupported(im, "the axes input (opset 18)");
    }
    if (cnt != 2 * x->rank) return bad_node(im, "pads has %d values for rank %d", cnt, x->rank);
    int64_t dims[ONNX_MAX_RANK];
    for (int k = 0; k < x->rank; k++) {
        if (pads[k] < -65536 || pads[k] > 65536 || pads[k + x->rank] < -65536 || pads[k + x->rank] > 65536)
            return unsupported(im, "pads beyond +-65536");
        dims[k] = x->dims[k] + pads[k] + pads[k + x->rank];
    }
    if (im->off) {
        if (pads[0] || pads[x->rank]) return unsupported(im, "padding the batch axis");
        dims[0] = -1;
    }
    for (int k = im->off; k < x->rank; k++)
        if (dims[k] < 1) return unsupported(im, "the result would be empty along axis %d", k);
    int zero = 1; /* PyTorch's AvgPool2d exports an all-zero Pad before the pool: no layer */
    for (int k = 0; k < cnt; k++) zero &= pads[k] == 0;
    if (zero) return define_alias(im, n, 0, x);
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    layer_attrs pa;
    nn_attrs_default(LAYER_PAD, &pa);
    for (int half = 0; half < 2; half++)
        for (int k = im->off; k < x->rank && pa.npads < 2 * TS_MAX_DIMS; k++)
            pa.pads[pa.npads++] = (int)pads[half * x->rank + k];
    pa.pad_mode = !strcmp(mode, "reflect") ? PAD_REFLECT : !strcmp(mode, "edge") ? PAD_EDGE : PAD_CONSTANT;
    pa.value = (float)fill_value;
    value tmp = {.kind = VALUE_LAYER, .rank = x->rank};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    int li;
    return emit_unary(im, n, LAYER_PAD, in, &pa, &out, x->rank, dims, &li);
}
