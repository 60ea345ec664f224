/* Slice, and Gather of one index of a computed value. Constants are sliced at
 * import with ONNX's full semantics (starts, ends, axes, steps; negative values;
 * clamping). A computed value is cropped along its per-sample axes with step 1,
 * which is a `pad` layer with negative pads (its backward and export come with
 * it): PyTorch's x[:, :c] and chunk, and ViT's class token x[:, 0]. */
#include "onnx_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* start and length of a slice of an axis of size dim (ONNX's clamping rules) */
static void slice_range(int64_t dim, int64_t s, int64_t e, int64_t step, int64_t *start, int64_t *len) {
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    *len = 0;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        if (e > s) *len = (e - s - 1) / step + 1;
    } else {
        int64_t mag = step == INT64_MIN ? INT64_MAX : -step;
        s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
        e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        if (s > e) *len = (s - e - 1) / mag + 1;
    }
    *start = s;
}

typedef struct slice_spec {
    int64_t start[ONNX_MAX_RANK], len[ONNX_MAX_RANK], step[ONNX_MAX_RANK];
} slice_spec;

/* a constant integer list input; *count -1 when absent (an error when required) */
static ts_status int_list(importer *im, const Onnx__NodeProto *n, int k, int required, const char *what,
                          const int64_t **vals, int *count) {
    value *v = node_input(im, n, k);
    *vals = NULL;
    *count = -1;
    if (!v) return required ? bad_node(im, "the %s input is missing", what) : TS_OK;
    if (v->kind != VALUE_CONST) return unsupported(im, "its %s ('%s') must be a constant", what, v->name);
    if (v->c->is_float || v->rank != 1) return bad_node(im, "%s must be a 1-D integer tensor", what);
    *vals = v->c->i;
    *count = (int)(v->c->numel > 64 ? 64 : v->c->numel);
    return TS_OK;
}

/* the slice of every axis of x: starts/ends/axes as attributes before opset 10,
 * constant inputs (with steps) from 10 */
static ts_status slice_spec_of(importer *im, const Onnx__NodeProto *n, const value *x, slice_spec *sp) {
    const int64_t *starts, *ends, *axes, *steps = NULL;
    int ns, ne, na, nst = -1;
    ts_status st;
    if (im->opset < 10) {
        ns = attr_ints(n, "starts", &starts);
        ne = attr_ints(n, "ends", &ends);
        na = attr(n, "axes") ? attr_ints(n, "axes", &axes) : -1;
    } else if ((st = int_list(im, n, 1, 1, "starts", &starts, &ns)) || (st = int_list(im, n, 2, 1, "ends", &ends, &ne)) ||
               (st = int_list(im, n, 3, 0, "axes", &axes, &na)) || (st = int_list(im, n, 4, 0, "steps", &steps, &nst))) {
        return st;
    }
    if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns) || ns > x->rank)
        return bad_node(im, "starts, ends, axes and steps have different lengths (or more than the rank %d)", x->rank);
    int seen[ONNX_MAX_RANK] = {0};
    for (int k = 0; k < x->rank; k++) {
        sp->start[k] = 0;
        sp->len[k] = x->dims[k];
        sp->step[k] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int64_t a = na >= 0 ? axes[i] : i;
        if (a < -x->rank || a >= x->rank) return bad_node(im, "axis %lld out of range for rank %d", (long long)a, x->rank);
        if (a < 0) a += x->rank;
        if (seen[a]++) return bad_node(im, "axis %lld is repeated", (long long)a);
        int64_t step = nst >= 0 ? steps[i] : 1;
        if (step == 0) return bad_node(im, "a step of 0");
        sp->step[a] = step;
        if (x->dims[a] < 0) {
            /* the batch axis: only the whole of it */
            int whole = starts[i] == 0 && step == 1 &&
                        (ends[i] >= INT32_MAX || (im->batch0 > 0 && ends[i] >= im->batch0));
            if (!whole) return unsupported(im, "slicing the batch axis");
            continue;
        }
        slice_range(x->dims[a], starts[i], ends[i], step, &sp->start[a], &sp->len[a]);
    }
    return TS_OK;
}

/* output k of the node: the slice sp of constant x */
static ts_status slice_const(importer *im, const Onnx__NodeProto *n, int k_out, const value *x, const slice_spec *sp) {
    ts_onnx_tensor *t = onnx_tensor_new(x->c->is_float, x->rank, sp->len);
    if (!t) return oom(im);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t rem = i, src = 0, stride = 1;
        for (int k = x->rank - 1; k >= 0; k--) {
            int64_t d = rem % sp->len[k];
            rem /= sp->len[k];
            src += (sp->start[k] + d * sp->step[k]) * stride;
            stride *= x->dims[k];
        }
        if (t->is_float) t->f[i] = x->c->f[src];
        else t->i[i] = x->c->i[src];
    }
    return define_const(im, n, k_out, t);
}

/* x's per-sample axes cut to [start, start + len) (step 1): a `pad` layer with
 * negative pads; *li stays x's layer when nothing is cut */
static ts_status emit_crop(importer *im, const Onnx__NodeProto *n, const value *x, const int64_t *start,
                           const int64_t *len, int *li) {
    layer_attrs pa;
    nn_attrs_default(LAYER_PAD, &pa);
    int64_t dims[ONNX_MAX_RANK];
    int cut = 0, r = x->rank - im->off;
    for (int k = 0; k < x->rank; k++) {
        dims[k] = k < im->off ? x->dims[k] : len[k];
        if (k < im->off) continue;
        if (len[k] < 1) return unsupported(im, "the result would be empty along axis %d", k);
        pa.pads[k - im->off] = (int)-start[k];
        pa.pads[r + k - im->off] = (int)-(x->dims[k] - start[k] - len[k]);
        cut |= len[k] != x->dims[k];
    }
    *li = x->layer;
    if (!cut) return TS_OK;
    if (r > TS_MAX_DIMS) return unsupported(im, "value '%s' has %d dimensions per sample", x->name, r);
    pa.npads = 2 * r;
    const char *in;
    ts_status st = materialize(im, x, &in);
    value tmp = {.kind = VALUE_LAYER, .rank = x->rank};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if (!st) st = value_sample_shape(im, &tmp, &out);
    const char *ins[1] = {in};
    if (!st) st = emit_layer(im, LAYER_PAD, node_base(n), ins, 1, &pa, &out, li);
    return st;
}

ts_status op_slice(importer *im, const Onnx__NodeProto *n) {
    value *x;
    slice_spec sp;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = slice_spec_of(im, n, x, &sp);
    if (st) return st;
    if (x->kind == VALUE_CONST) return slice_const(im, n, 0, x, &sp);
    if (x->kind == VALUE_ZEROS) return define_like(im, n, 0, x, x->rank, sp.len, x->bax); /* still zeros */
    if ((st = need_layer_value(im, x))) return st;
    for (int k = 0; k < x->rank; k++)
        if (!(im->off && k == x->bax) && sp.step[k] != 1 && sp.len[k] > 1)
            return unsupported(im, "a step other than 1 on a computed value");
    /* the crop runs on the layer's order: the batch axis first */
    const value cx = batch_first_view(x);
    int64_t start[ONNX_MAX_RANK], len[ONNX_MAX_RANK];
    for (int k = 0; k < x->rank; k++) {
        const int c = im->off ? batch_first_axis(x, k) : k;
        start[c] = sp.start[k];
        len[c] = sp.len[k];
    }
    int li;
    if ((st = emit_crop(im, n, &cx, start, len, &li))) return st;
    return define_layer_bax(im, n, 0, li, x->rank, sp.len, x->bax);
}

/* Split: consecutive parts of one axis, each a Slice (a crop of a computed value);
 * sizes from `split` (an attribute before opset 13, a constant input from 13) or
 * equal parts (the last one smaller when the axis does not divide, as opset 18) */
ts_status op_split(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    int64_t axis = attr_int(n, "axis", 0);
    if (axis < -x->rank || axis >= x->rank) return bad_node(im, "axis %lld out of range", (long long)axis);
    if (axis < 0) axis += x->rank;
    if (x->kind == VALUE_LAYER && axis < im->off) return unsupported(im, "splitting the batch axis");
    if (x->kind != VALUE_CONST && (st = need_layer_value(im, x))) return st;
    const int64_t *sizes = NULL;
    int nsizes = 0, nout = (int)n->n_output;
    if (im->opset < 13) nsizes = attr_ints(n, "split", &sizes);
    else if ((st = int_list(im, n, 1, 0, "split", &sizes, &nsizes))) return st;
    if (nsizes < 0) nsizes = 0;
    if (nout < 1 || nout > 64 || (nsizes && nsizes != nout))
        return bad_node(im, "%d outputs for %d split sizes", nout, nsizes);
    const int64_t dim = x->dims[axis], part = (dim + nout - 1) / nout;
    int64_t start = 0;
    for (int k = 0; k < nout && !st; k++) {
        int64_t len = nsizes ? sizes[k] : k < nout - 1 ? part : dim - start;
        if (len < 0 || len > dim - start) return bad_node(im, "the split sizes do not add up to %lld", (long long)dim);
        slice_spec sp;
        for (int d = 0; d < x->rank; d++) {
            sp.start[d] = 0;
            sp.len[d] = x->dims[d];
            sp.step[d] = 1;
        }
        sp.start[axis] = start;
        sp.len[axis] = len;
        start += len;
        if (!output_used(im, n, k)) continue;
        int li;
        if (x->kind == VALUE_CONST) st = slice_const(im, n, k, x, &sp);
        else if (!(st = emit_crop(im, n, x, sp.start, sp.len, &li))) st = define_layer(im, n, k, li, x->rank, sp.len);
    }
    if (!st && start != dim) return bad_node(im, "the split sizes add up to %lld, not %lld", (long long)start, (long long)dim);
    return st;
}

/* index i of an axis of size dim (negative from the end); -1 when out of range */
static int64_t index_in(int64_t i, int64_t dim) {
    if (i < 0 && i >= -dim) i += dim;
    return i >= 0 && i < dim ? i : -1;
}

/* Gather along a per-sample axis of a computed value: each run of consecutive
 * indices is a crop, and several runs are concatenated along the axis; the result
 * is seen with the indices' shape in place of the axis */
ts_status gather_computed(importer *im, const Onnx__NodeProto *n, const value *lx, const value *idx, int laxis) {
    if (im->off && laxis == lx->bax) return unsupported(im, "Gather along the batch axis");
    /* the crops run on the layer's order: the batch axis first */
    const value cx = batch_first_view(lx), *x = &cx;
    const int axis = im->off ? batch_first_axis(lx, laxis) : laxis;
    int64_t count = idx->c->numel;
    if (count < 1 || count > LAYER_MAX_INPUTS)
        return unsupported(im, "Gather of %lld indices of a computed value (1 to %d)", (long long)count, LAYER_MAX_INPUTS);
    int rr = x->rank - 1 + idx->rank;
    if (rr > ONNX_MAX_RANK) return unsupported(im, "result rank %d", rr);
    const char *runs[LAYER_MAX_INPUTS];
    int nruns = 0, li = -1;
    ts_status st = TS_OK;
    for (int64_t j = 0; j < count && !st; j++) {
        int64_t start[ONNX_MAX_RANK] = {0}, len[ONNX_MAX_RANK];
        int64_t g = index_in(idx->c->i[j], x->dims[axis]);
        if (g < 0)
            return bad_node(im, "index %lld out of range for %lld", (long long)idx->c->i[j], (long long)x->dims[axis]);
        memcpy(len, x->dims, sizeof len);
        start[axis] = g;
        len[axis] = 1;
        while (j + 1 < count && g + len[axis] < x->dims[axis] && index_in(idx->c->i[j + 1], x->dims[axis]) == g + len[axis]) {
            len[axis]++;
            j++;
        }
        if ((st = emit_crop(im, n, x, start, len, &li))) return st;
        if (li == x->layer) st = materialize(im, x, &runs[nruns++]);
        else runs[nruns++] = im->layers[li]->name;
    }
    if (st) return st;
    int64_t dims[ONNX_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    dims[axis] = count;
    if (nruns > 1) {
        value tmp = {.kind = VALUE_LAYER, .rank = x->rank};
        memcpy(tmp.dims, dims, sizeof dims);
        ts_shape out;
        layer_attrs ca;
        nn_attrs_default(LAYER_CONCAT, &ca);
        ca.axis = axis - im->off;
        if ((st = value_sample_shape(im, &tmp, &out)) ||
            (st = emit_layer(im, LAYER_CONCAT, node_base(n), runs, nruns, &ca, &out, &li)))
            return st;
    }
    int r = 0;
    for (int k = 0; k < laxis; k++) dims[r++] = lx->dims[k];
    for (int k = 0; k < idx->rank; k++) dims[r++] = idx->dims[k];
    for (int k = laxis + 1; k < lx->rank; k++) dims[r++] = lx->dims[k];
    return define_layer_bax(im, n, 0, li, rr, dims, lx->bax < laxis ? lx->bax : lx->bax - 1 + idx->rank);
}
