/* ONNX converters for activations and other elementwise ops (Relu, LeakyRelu, Elu,
 * Selu, Sigmoid, HardSigmoid, HardSwish, Tanh, Clip, PRelu, Sqrt, Erf, Pow, Softmax,
 * LogSoftmax, Identity, Dropout), and the helpers every converter shares. */
#include "onnx_import.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ small helpers */

ts_status oom(importer *im) { return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file); }

ts_status need_layer_value(importer *im, const value *v) {
    if (v->kind == VALUE_LAYER) return TS_OK;
    return unsupported(im, "input '%s' is a constant; tessera computes this op only on values derived from the model input",
                       v->name);
}

/* emits a one-input layer reading `in` (a layer name) with out shape `out`, and
 * defines output 0 with logical dims */
ts_status emit_unary(importer *im, const Onnx__NodeProto *n, layer_kind kind, const char *in,
                           const layer_attrs *attrs, const ts_shape *out, int rank, const int64_t *dims, int *li) {
    const char *ins[1] = {in};
    ts_status st = emit_layer(im, kind, node_base(n), ins, 1, attrs, out, li);
    if (st) return st;
    return define_layer(im, n, 0, *li, rank, dims);
}

/* Elementwise: runs on the layer as laid out; the logical shape passes through. */
ts_status elementwise(importer *im, const Onnx__NodeProto *n, layer_kind kind, const layer_attrs *attrs) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    int li;
    emitted *e = im->layers[x->layer];
    ts_shape out = e->out;
    const char *ins[1] = {e->name};
    ts_status est = emit_layer(im, kind, node_base(n), ins, 1, attrs, &out, &li);
    return est ? est : define_layer_as(im, n, 0, li, x->rank, x->dims, x); /* wherever the batch axis is */
}

ts_status op_relu(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, LAYER_RELU, NULL); }
ts_status op_sigmoid(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, LAYER_SIGMOID, NULL); }
ts_status op_tanh(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, LAYER_TANH, NULL); }

ts_status op_leakyrelu(importer *im, const Onnx__NodeProto *n) {
    layer_attrs a;
    nn_attrs_default(LAYER_LEAKYRELU, &a);
    a.alpha = attr_float(n, "alpha", 0.01f);
    return elementwise(im, n, LAYER_LEAKYRELU, &a);
}

ts_status op_elu(importer *im, const Onnx__NodeProto *n) {
    layer_attrs a;
    nn_attrs_default(LAYER_ELU, &a);
    a.alpha = attr_float(n, "alpha", 1.0f);
    return elementwise(im, n, LAYER_ELU, &a);
}

ts_status op_selu(importer *im, const Onnx__NodeProto *n) {
    layer_attrs a;
    nn_attrs_default(LAYER_SELU, &a); /* ONNX's defaults are the schema's */
    a.alpha = attr_float(n, "alpha", a.alpha);
    a.gamma = attr_float(n, "gamma", a.gamma);
    return elementwise(im, n, LAYER_SELU, &a);
}

ts_status op_hardsigmoid(importer *im, const Onnx__NodeProto *n) {
    layer_attrs a;
    nn_attrs_default(LAYER_HARDSIGMOID, &a);
    a.alpha = attr_float(n, "alpha", 0.2f);
    a.beta = attr_float(n, "beta", 0.5f);
    return elementwise(im, n, LAYER_HARDSIGMOID, &a);
}

ts_status op_hardswish(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, LAYER_HARDSWISH, NULL); }

/* kind over a computed value as a new value, or folded when x is a constant (the
 * reference kernel on float32, as the layer would compute it) */
ts_status unary_value(importer *im, const Onnx__NodeProto *n, layer_kind kind, const layer_attrs *attrs,
                      const value *x, value *res) {
    memset(res, 0, sizeof *res);
    if (x->kind == VALUE_CONST) {
        layer_attrs a;
        if (!attrs) nn_attrs_default(kind, &a);
        unary_params p = {.kind = kind == LAYER_SQRT ? UNARY_SQRT : kind == LAYER_ERF ? UNARY_ERF
                                  : kind == LAYER_POW ? UNARY_POW : UNARY_HARDSWISH,
                          .alpha = (attrs ? attrs : &a)->exponent};
        ts_onnx_tensor *t = onnx_tensor_new(1, x->rank, x->dims);
        float *f = t ? const_floats(im, x) : NULL;
        if (!f) {
            ts_onnx_tensor_free(t);
            return oom(im);
        }
        unary_forward_ref(&p, (size_t)t->numel, t->f, f, 1);
        free(f);
        res->kind = VALUE_CONST;
        res->c = t;
        res->rank = t->rank;
        memcpy(res->dims, t->dims, sizeof res->dims);
        return TS_OK;
    }
    ts_status st = need_layer_value(im, x);
    if (st) return st;
    const emitted *e = im->layers[x->layer];
    const char *ins[1] = {e->name};
    int li;
    if ((st = emit_layer(im, kind, node_base(n), ins, 1, attrs, &e->out, &li))) return st;
    *res = *x; /* the same dims, the batch where x has it */
    res->name = NULL;
    res->layer = li;
    return TS_OK;
}

static ts_status unary_node(importer *im, const Onnx__NodeProto *n, layer_kind kind, const layer_attrs *attrs) {
    value *x, res;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = unary_value(im, n, kind, attrs, x, &res);
    if (st) return st;
    if (res.kind == VALUE_CONST) return define_const(im, n, 0, res.c);
    return define_layer_as(im, n, 0, res.layer, res.rank, res.dims, &res);
}

ts_status op_sqrt(importer *im, const Onnx__NodeProto *n) { return unary_node(im, n, LAYER_SQRT, NULL); }
ts_status op_erf(importer *im, const Onnx__NodeProto *n) { return unary_node(im, n, LAYER_ERF, NULL); }

/* Pow(X, Y) with Y a constant holding one value (any shape that does not widen X) */
ts_status op_pow(importer *im, const Onnx__NodeProto *n) {
    value *x, *y;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "exponent", &y);
    if (st) return st;
    if (y->c->numel < 1) return bad_node(im, "the exponent is empty");
    const double e = y->c->is_float ? (double)y->c->f[0] : (double)y->c->i[0];
    for (int64_t i = 1; i < y->c->numel; i++)
        if ((y->c->is_float ? (double)y->c->f[i] : (double)y->c->i[i]) != e)
            return unsupported(im, "an exponent that varies by element (one value is supported)");
    if (y->rank > x->rank) return unsupported(im, "an exponent of higher rank than the base");
    for (int k = 1; k <= y->rank; k++) {
        const int64_t yd = y->dims[y->rank - k], xd = x->dims[x->rank - k];
        if (yd != 1 && yd != xd) return bad_node(im, "the exponent's shape does not broadcast to the base's");
    }
    if (x->kind == VALUE_CONST && !x->c->is_float) return unsupported(im, "an integer base");
    layer_attrs a;
    nn_attrs_default(LAYER_POW, &a);
    a.exponent = (float)e;
    return unary_node(im, n, LAYER_POW, &a);
}

/* a scalar constant input (Clip's min/max, Dropout's ratio) */
ts_status scalar_input(importer *im, const Onnx__NodeProto *n, int k, const char *what, int *present, double *val) {
    value *v = node_input(im, n, k);
    *present = 0;
    if (!v) return TS_OK;
    if (v->kind != VALUE_CONST) return unsupported(im, "its %s must be a constant", what);
    if (v->c->numel != 1) return bad_node(im, "its %s must be a single value, not %lld", what, (long long)v->c->numel);
    *present = 1;
    *val = v->c->is_float ? (double)v->c->f[0] : (double)v->c->i[0];
    return TS_OK;
}

ts_status op_clip(importer *im, const Onnx__NodeProto *n) {
    layer_attrs a;
    nn_attrs_default(LAYER_CLIP, &a); /* no bounds */
    if (im->opset < 11) {
        const Onnx__AttributeProto *lo = attr(n, "min"), *hi = attr(n, "max");
        if (lo && lo->has_f) a.lo = lo->f;
        if (hi && hi->has_f) a.hi = hi->f;
    } else {
        int has;
        double v;
        ts_status st = scalar_input(im, n, 1, "min", &has, &v);
        if (st) return st;
        if (has && !isinf(v)) a.lo = (float)v;
        if ((st = scalar_input(im, n, 2, "max", &has, &v))) return st;
        if (has && !isinf(v)) a.hi = (float)v;
    }
    return elementwise(im, n, LAYER_CLIP, &a);
}

ts_status op_identity(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    return define_alias(im, n, 0, x);
}

ts_status op_dropout(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    double ratio = attr_float(n, "ratio", 0.5f);
    int training = 0;
    if (im->opset >= 12) {
        int has;
        double v;
        if ((st = scalar_input(im, n, 1, "ratio", &has, &v))) return st;
        if (has) ratio = v;
        if ((st = scalar_input(im, n, 2, "training_mode", &has, &v))) return st;
        training = has && v != 0;
    }
    if (ratio < 0 || ratio >= 1) return bad_node(im, "ratio %g is outside [0, 1)", ratio);
    if (training && ratio > 0 && im->cfg->exact_inference)
        return unsupported(im, "training_mode=true makes the ONNX output random; tessera applies dropout only while training");
    if (x->kind == VALUE_CONST || (!training && ratio > 0 && im->opset >= 12) || ratio == 0) {
        if ((st = define_alias(im, n, 0, x))) return st;
    } else {
        /* kept as a layer so that fine-tuning the imported model drops out too */
        layer_attrs a;
        nn_attrs_default(LAYER_DROPOUT, &a);
        a.p = (float)ratio;
        if ((st = elementwise(im, n, LAYER_DROPOUT, &a))) return st;
    }
    /* the mask is not computed: a node that reads it is refused */
    return define_uncomputed(im, n, 1);
}


ts_status op_prelu(importer *im, const Onnx__NodeProto *n) {
    value *x, *s;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "slope", &s);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    if (s->rank > x->rank) return bad_node(im, "slope has more axes than the input");
    ts_shape ss;
    if (im->opset < 7 && s->rank == 1 && x->rank > 2 && s->dims[0] == x->dims[1] && s->dims[0] > 1 && im->off) {
        /* PRelu before opset 7: a slope per channel (axis 1) */
        ss.ndim = x->rank - 1;
        ss.dims[0] = s->dims[0];
        for (int k = 1; k < ss.ndim; k++) ss.dims[k] = 1;
    } else if ((st = strip_batch_axes(im, s, x->rank, &ss))) {
        return st;
    }
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    layer_attrs pa;
    nn_attrs_default(LAYER_PRELU, &pa);
    pa.tshape = ss;
    int li;
    ts_shape out;
    if ((st = value_sample_shape(im, x, &out))) return st;
    if ((st = emit_unary(im, n, LAYER_PRELU, in, &pa, &out, x->rank, x->dims, &li))) return st;
    float *f = const_floats(im, s);
    if (!f) return oom(im);
    st = add_fill(im, im->layers[li]->t.weight, f, s->c->numel);
    free(f);
    return st;
}

static ts_status softmax_node(importer *im, const Onnx__NodeProto *n, layer_kind kind) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    int coerce = im->opset < 13;
    int64_t axis = attr_int(n, "axis", coerce ? 1 : -1);
    int a;
    if (x->bax || x->fold) { /* the batch axis moved or folded: any other axis, the batch's before it */
        if (axis < -x->rank || axis >= x->rank) return bad_node(im, "axis %lld is out of range", (long long)axis);
        if (axis < 0) axis += x->rank;
        if (axis == x->bax || (coerce && axis < x->bax))
            return unsupported(im, "axis %lld %s the batch axis (axis %d)", (long long)axis,
                               axis == x->bax ? "is" : "spans", x->bax);
        a = sample_axis_of(im, x, (int)axis);
    } else if ((st = sample_axis(im, axis, x->rank, "axis", &a))) {
        return st;
    }
    if (x->rank - im->off == 0) return unsupported(im, "a scalar per sample");
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    layer_attrs sa;
    nn_attrs_default(kind, &sa);
    sa.axis = a;
    sa.coerce = coerce;
    ts_shape out;
    if ((st = value_sample_shape(im, x, &out))) return st;
    int li;
    const char *ins[1] = {in};
    if ((st = emit_layer(im, kind, node_base(n), ins, 1, &sa, &out, &li))) return st;
    return define_layer_as(im, n, 0, li, x->rank, x->dims, x);
}

ts_status op_softmax(importer *im, const Onnx__NodeProto *n) { return softmax_node(im, n, LAYER_SOFTMAX); }
ts_status op_logsoftmax(importer *im, const Onnx__NodeProto *n) { return softmax_node(im, n, LAYER_LOGSOFTMAX); }
