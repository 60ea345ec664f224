/* One converter per ONNX op type: attributes mapped to tessera layers exactly as
 * the ONNX operator spec defines them (docs/onnx.md lists what is claimed). */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ small helpers */

static ts_status oom(importer *im) { return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file); }

static ts_status need_layer_value(importer *im, const value *v) {
    if (v->kind == VALUE_LAYER) return TS_OK;
    return unsupported(im, "input '%s' is a constant; tessera computes this op only on values derived from the model input",
                       v->name);
}

/* emits a one-input layer reading `in` (a layer name) with out shape `out`, and
 * defines output 0 with logical dims */
static ts_status emit_unary(importer *im, const Onnx__NodeProto *n, const char *kind, const char *in, const char *attrs,
                           const ts_shape *out, int rank, const int64_t *dims, int *li) {
    const char *ins[1] = {in};
    ts_status st = emit_layer(im, kind, node_base(n), ins, 1, attrs, out, li);
    if (st) return st;
    return define_layer(im, n, 0, *li, rank, dims);
}

/* Elementwise: runs on the layer as laid out; the logical shape passes through. */
static ts_status elementwise(importer *im, const Onnx__NodeProto *n, const char *kind, const char *attrs) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    int li;
    emitted *e = im->layers[x->layer];
    ts_shape out = e->out;
    int rank = x->rank;
    int64_t dims[ONNX_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    return emit_unary(im, n, kind, e->name, attrs, &out, rank, dims, &li);
}

static ts_status op_relu(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, "relu", ""); }
static ts_status op_sigmoid(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, "sigmoid", ""); }
static ts_status op_tanh(importer *im, const Onnx__NodeProto *n) { return elementwise(im, n, "tanh", ""); }

static ts_status op_leakyrelu(importer *im, const Onnx__NodeProto *n) {
    char a[64];
    snprintf(a, sizeof a, "slope=%.9g", (double)attr_float(n, "alpha", 0.01f));
    return elementwise(im, n, "leakyrelu", a);
}

static ts_status op_elu(importer *im, const Onnx__NodeProto *n) {
    char a[64];
    snprintf(a, sizeof a, "alpha=%.9g", (double)attr_float(n, "alpha", 1.0f));
    return elementwise(im, n, "elu", a);
}

static ts_status op_selu(importer *im, const Onnx__NodeProto *n) {
    char a[96];
    snprintf(a, sizeof a, "alpha=%.9g gamma=%.9g", (double)attr_float(n, "alpha", 1.67326319217681884765625f),
             (double)attr_float(n, "gamma", 1.05070102214813232421875f));
    return elementwise(im, n, "selu", a);
}

static ts_status op_hardsigmoid(importer *im, const Onnx__NodeProto *n) {
    char a[96];
    snprintf(a, sizeof a, "alpha=%.9g beta=%.9g", (double)attr_float(n, "alpha", 0.2f),
             (double)attr_float(n, "beta", 0.5f));
    return elementwise(im, n, "hardsigmoid", a);
}

/* a scalar constant input (Clip's min/max, Dropout's ratio) */
static ts_status scalar_input(importer *im, const Onnx__NodeProto *n, int k, const char *what, int *present, double *val) {
    value *v = node_input(im, n, k);
    *present = 0;
    if (!v) return TS_OK;
    if (v->kind != VALUE_CONST) return unsupported(im, "its %s must be a constant", what);
    if (v->c->numel != 1) return bad_node(im, "its %s must be a single value, not %lld", what, (long long)v->c->numel);
    *present = 1;
    *val = v->c->is_float ? (double)v->c->f[0] : (double)v->c->i[0];
    return TS_OK;
}

static ts_status op_clip(importer *im, const Onnx__NodeProto *n) {
    char a[96] = "";
    size_t len = 0;
    if (im->opset < 11) {
        const Onnx__AttributeProto *lo = attr(n, "min"), *hi = attr(n, "max");
        if (lo && lo->has_f) len += (size_t)snprintf(a + len, sizeof a - len, "min=%.9g ", (double)lo->f);
        if (hi && hi->has_f) len += (size_t)snprintf(a + len, sizeof a - len, "max=%.9g", (double)hi->f);
    } else {
        int has;
        double v;
        ts_status st = scalar_input(im, n, 1, "min", &has, &v);
        if (st) return st;
        if (has && !isinf(v)) len += (size_t)snprintf(a + len, sizeof a - len, "min=%.9g ", v);
        if ((st = scalar_input(im, n, 2, "max", &has, &v))) return st;
        if (has && !isinf(v)) len += (size_t)snprintf(a + len, sizeof a - len, "max=%.9g", v);
    }
    return elementwise(im, n, "clip", a);
}

static ts_status op_identity(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    return define_alias(im, n, 0, x);
}

static ts_status op_dropout(importer *im, const Onnx__NodeProto *n) {
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
        char a[48];
        snprintf(a, sizeof a, "p=%.9g", ratio);
        if ((st = elementwise(im, n, "dropout", a))) return st;
    }
    /* the mask is not computed: a node that reads it is refused */
    return define_uncomputed(im, n, 1);
}

/* ------------------------------------------------------------ spatial ops */

typedef struct spatial {
    int nsp;               /* 1 or 2 spatial axes in ONNX */
    int64_t c, h, w;       /* as a 2-D image: 1-D data has h = 1 */
    int kh, kw, sh, sw, dh, dw;
    int pt, pl, pb, pr;    /* pads */
    int64_t oh, ow;
} spatial;

/* X (N, C, L) or (N, C, H, W); in whole-tensor mode N must be 1 */
static ts_status spatial_input(importer *im, const value *x, spatial *sp) {
    memset(sp, 0, sizeof *sp);
    if (x->kind != VALUE_LAYER) return need_layer_value(im, x);
    if (!im->off && x->dims[0] != 1)
        return unsupported(im, "in whole-tensor mode the batch axis of '%s' must be 1, not %lld", x->name,
                           (long long)x->dims[0]);
    if (x->rank != 3 && x->rank != 4)
        return unsupported(im, "input '%s' has rank %d; 1-D and 2-D data (rank 3 or 4) are supported", x->name, x->rank);
    sp->nsp = x->rank - 2;
    sp->c = x->dims[1];
    sp->h = sp->nsp == 2 ? x->dims[2] : 1;
    sp->w = x->dims[x->rank - 1];
    return TS_OK;
}

static int get_spatial_ints(const Onnx__NodeProto *n, const char *name, int nsp, int def, int *a, int *b) {
    const int64_t *v;
    int cnt = attr_ints(n, name, &v);
    *a = *b = def;
    if (!cnt) return 1;
    if (cnt != nsp) return 0;
    for (int k = 0; k < cnt; k++)
        if (v[k] < 0 || v[k] > 65536) return 0;
    if (nsp == 2) {
        *a = (int)v[0];
        *b = (int)v[1];
    } else {
        *b = (int)v[0];
    }
    return 1;
}

/* kernel, strides, dilations, pads (explicit or auto_pad) and the output size.
 * pool: ceil_mode applies, and PyTorch's rule that the last window starts inside. */
static ts_status spatial_attrs(importer *im, const Onnx__NodeProto *n, spatial *sp, int kh, int kw, int ceil_mode) {
    sp->kh = kh;
    sp->kw = kw;
    if (!get_spatial_ints(n, "strides", sp->nsp, 1, &sp->sh, &sp->sw) || sp->sh < 1 || sp->sw < 1)
        return bad_node(im, "strides must be %d positive integers", sp->nsp);
    if (!get_spatial_ints(n, "dilations", sp->nsp, 1, &sp->dh, &sp->dw) || sp->dh < 1 || sp->dw < 1)
        return bad_node(im, "dilations must be %d positive integers", sp->nsp);
    char buf[32];
    const char *ap = attr_string(n, "auto_pad", "NOTSET", buf, sizeof buf);
    int64_t eh = (int64_t)(kh - 1) * sp->dh + 1, ew = (int64_t)(kw - 1) * sp->dw + 1;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        int upper = !strcmp(ap, "SAME_UPPER");
        int64_t oh = (sp->h + sp->sh - 1) / sp->sh, ow = (sp->w + sp->sw - 1) / sp->sw;
        int64_t th = (oh - 1) * sp->sh + eh - sp->h, tw = (ow - 1) * sp->sw + ew - sp->w;
        if (th < 0) th = 0;
        if (tw < 0) tw = 0;
        sp->pt = (int)(upper ? th / 2 : th - th / 2);
        sp->pb = (int)(th - sp->pt);
        sp->pl = (int)(upper ? tw / 2 : tw - tw / 2);
        sp->pr = (int)(tw - sp->pl);
        sp->oh = oh;
        sp->ow = ow;
        return TS_OK;
    }
    if (!strcmp(ap, "VALID")) {
        sp->pt = sp->pb = sp->pl = sp->pr = 0;
    } else if (!strcmp(ap, "NOTSET")) {
        const int64_t *p;
        int cnt = attr_ints(n, "pads", &p);
        if (cnt && cnt != 2 * sp->nsp) return bad_node(im, "pads has %d values, expected %d", cnt, 2 * sp->nsp);
        for (int k = 0; k < cnt; k++)
            if (p[k] < 0 || p[k] > 65536) return unsupported(im, "pads[%d] = %lld (0 to 65536 are supported)", k, (long long)p[k]);
        if (cnt == 4) {
            sp->pt = (int)p[0];
            sp->pl = (int)p[1];
            sp->pb = (int)p[2];
            sp->pr = (int)p[3];
        } else if (cnt == 2) {
            sp->pl = (int)p[0];
            sp->pr = (int)p[1];
        }
    } else {
        return bad_node(im, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    }
    int64_t nh = sp->h + sp->pt + sp->pb - eh, nw = sp->w + sp->pl + sp->pr - ew;
    if (nh < 0 || nw < 0) return bad_node(im, "the kernel is larger than the padded input");
    sp->oh = (ceil_mode ? (nh + sp->sh - 1) / sp->sh : nh / sp->sh) + 1;
    sp->ow = (ceil_mode ? (nw + sp->sw - 1) / sp->sw : nw / sp->sw) + 1;
    if (ceil_mode) {
        if ((sp->oh - 1) * sp->sh >= sp->h + sp->pt) sp->oh--;
        if ((sp->ow - 1) * sp->sw >= sp->w + sp->pl) sp->ow--;
    }
    return TS_OK;
}

static ts_status spatial_in_layer(importer *im, const value *x, const spatial *sp, const char **name) {
    ts_shape s = {.ndim = 3, .dims = {sp->c, sp->h, sp->w}};
    return materialize_as(im, x, &s, name);
}

/* output dims (N, K, [OH,] OW) */
static void spatial_out_dims(const importer *im, const value *x, const spatial *sp, int64_t k, int64_t *dims) {
    dims[0] = im->off ? -1 : 1;
    (void)x;
    dims[1] = k;
    if (sp->nsp == 2) {
        dims[2] = sp->oh;
        dims[3] = sp->ow;
    } else {
        dims[2] = sp->ow;
    }
}

static void pad_text(const spatial *sp, char *buf, size_t cap) {
    snprintf(buf, cap, "padding=%d,%d,%d,%d", sp->pt, sp->pl, sp->pb, sp->pr);
}

/* the bias input of Conv and ConvTranspose: absent, or a constant of k values */
static ts_status check_bias(importer *im, const value *b, int64_t k) {
    if (!b) return TS_OK;
    if (b->kind != VALUE_CONST) return unsupported(im, "its bias must be a constant");
    if (b->c->numel != k)
        return bad_node(im, "bias has %lld values for %lld output channels", (long long)b->c->numel, (long long)k);
    return TS_OK;
}

static ts_status fill_weight_bias(importer *im, int li, const value *w, const value *b) {
    float *wf = const_floats(im, w);
    if (!wf) return oom(im);
    ts_status st = add_fill(im, li, "weight", wf, w->c->numel);
    free(wf);
    if (!st && b) {
        float *bf = const_floats(im, b);
        if (!bf) return oom(im);
        st = add_fill(im, li, "bias", bf, b->c->numel);
        free(bf);
    }
    return st;
}

static ts_status op_conv(importer *im, const Onnx__NodeProto *n) {
    value *x, *w, *b = node_input(im, n, 2);
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "weight", &w);
    if (st) return st;
    spatial sp;
    if ((st = spatial_input(im, x, &sp))) return st;
    if (w->rank != x->rank) return bad_node(im, "weight rank %d does not match input rank %d", w->rank, x->rank);
    int64_t k = w->dims[0];
    int64_t group = attr_int(n, "group", 1);
    if (group < 1 || sp.c % group || k % group || w->dims[1] * group != sp.c)
        return bad_node(im, "group %lld does not fit %lld input channels and weight %lldx%lld", (long long)group,
                        (long long)sp.c, (long long)w->dims[0], (long long)w->dims[1]);
    int kh = sp.nsp == 2 ? (int)w->dims[2] : 1, kw = (int)w->dims[w->rank - 1];
    const int64_t *ks;
    int nks = attr_ints(n, "kernel_shape", &ks);
    if (nks && (nks != sp.nsp || ks[nks - 1] != kw || (sp.nsp == 2 && ks[0] != kh)))
        return bad_node(im, "kernel_shape does not match the weight's shape");
    if ((st = spatial_attrs(im, n, &sp, kh, kw, 0))) return st;
    if ((st = check_bias(im, b, k))) return st;
    const char *in;
    if ((st = spatial_in_layer(im, x, &sp, &in))) return st;
    char pads[64], attrs[256];
    pad_text(&sp, pads, sizeof pads);
    snprintf(attrs, sizeof attrs, "out=%lld kernel=%dx%d stride=%dx%d %s dilation=%dx%d groups=%lld bias=%d",
             (long long)k, sp.kh, sp.kw, sp.sh, sp.sw, pads, sp.dh, sp.dw, (long long)group, b ? 1 : 0);
    ts_shape out = {.ndim = 3, .dims = {k, sp.oh, sp.ow}};
    int64_t dims[4];
    spatial_out_dims(im, x, &sp, k, dims);
    int li;
    if ((st = emit_unary(im, n, "conv2d", in, attrs, &out, x->rank, dims, &li))) return st;
    return fill_weight_bias(im, li, w, b);
}

/* ConvTranspose: out = stride*(in-1) + output_padding + (k-1)*d+1 - pads; with
 * output_shape or auto_pad the pads follow from the wanted size (ONNX's rule) */
static ts_status op_convtranspose(importer *im, const Onnx__NodeProto *n) {
    value *x, *w, *b = node_input(im, n, 2);
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "weight", &w);
    if (st) return st;
    spatial sp;
    if ((st = spatial_input(im, x, &sp))) return st;
    if (w->rank != x->rank) return bad_node(im, "weight rank %d does not match input rank %d", w->rank, x->rank);
    int64_t group = attr_int(n, "group", 1);
    if (group < 1 || w->dims[0] != sp.c || sp.c % group)
        return bad_node(im, "weight %lldx%lld does not fit %lld input channels in %lld groups", (long long)w->dims[0],
                        (long long)w->dims[1], (long long)sp.c, (long long)group);
    int64_t k = w->dims[1] * group;
    sp.kh = sp.nsp == 2 ? (int)w->dims[2] : 1;
    sp.kw = (int)w->dims[w->rank - 1];
    if (!get_spatial_ints(n, "strides", sp.nsp, 1, &sp.sh, &sp.sw) || sp.sh < 1 || sp.sw < 1)
        return bad_node(im, "strides must be %d positive integers", sp.nsp);
    if (!get_spatial_ints(n, "dilations", sp.nsp, 1, &sp.dh, &sp.dw) || sp.dh < 1 || sp.dw < 1)
        return bad_node(im, "dilations must be %d positive integers", sp.nsp);
    int oph, opw;
    if (!get_spatial_ints(n, "output_padding", sp.nsp, 0, &oph, &opw)) return bad_node(im, "bad output_padding");
    int64_t full_h = (int64_t)sp.sh * (sp.h - 1) + oph + (int64_t)(sp.kh - 1) * sp.dh + 1;
    int64_t full_w = (int64_t)sp.sw * (sp.w - 1) + opw + (int64_t)(sp.kw - 1) * sp.dw + 1;
    char buf[32];
    const char *ap = attr_string(n, "auto_pad", "NOTSET", buf, sizeof buf);
    const int64_t *os;
    int nos = attr_ints(n, "output_shape", &os);
    if (nos || !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        int64_t want_h = sp.h * sp.sh, want_w = sp.w * sp.sw;
        if (nos) {
            if (nos != sp.nsp) return bad_node(im, "output_shape must have %d values", sp.nsp);
            want_w = os[nos - 1];
            want_h = sp.nsp == 2 ? os[0] : 1;
        }
        int64_t th = full_h - want_h, tw = full_w - want_w;
        /* a larger output_shape is reached by implicit output padding */
        if (th < 0) {
            oph += (int)-th;
            full_h -= th;
            th = 0;
        }
        if (tw < 0) {
            opw += (int)-tw;
            full_w -= tw;
            tw = 0;
        }
        int upper = !strcmp(ap, "SAME_UPPER");
        sp.pt = (int)(upper ? th / 2 : th - th / 2);
        sp.pb = (int)(th - sp.pt);
        sp.pl = (int)(upper ? tw / 2 : tw - tw / 2);
        sp.pr = (int)(tw - sp.pl);
    } else if (!strcmp(ap, "NOTSET") || !strcmp(ap, "VALID")) {
        const int64_t *p;
        int cnt = strcmp(ap, "VALID") ? attr_ints(n, "pads", &p) : 0;
        if (cnt && cnt != 2 * sp.nsp) return bad_node(im, "pads has %d values, expected %d", cnt, 2 * sp.nsp);
        for (int q = 0; q < cnt; q++)
            if (p[q] < 0 || p[q] > 65536) return unsupported(im, "pads[%d] = %lld", q, (long long)p[q]);
        if (cnt == 4) {
            sp.pt = (int)p[0];
            sp.pl = (int)p[1];
            sp.pb = (int)p[2];
            sp.pr = (int)p[3];
        } else if (cnt == 2) {
            sp.pl = (int)p[0];
            sp.pr = (int)p[1];
        }
    } else {
        return bad_node(im, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    }
    sp.oh = full_h - sp.pt - sp.pb;
    sp.ow = full_w - sp.pl - sp.pr;
    if (sp.oh < 1 || sp.ow < 1) return bad_node(im, "the output would be empty");
    if ((st = check_bias(im, b, k))) return st;
    const char *in;
    if ((st = spatial_in_layer(im, x, &sp, &in))) return st;
    char pads[64], attrs[320];
    pad_text(&sp, pads, sizeof pads);
    snprintf(attrs, sizeof attrs,
             "out=%lld kernel=%dx%d stride=%dx%d %s output_padding=%dx%d dilation=%dx%d groups=%lld bias=%d",
             (long long)k, sp.kh, sp.kw, sp.sh, sp.sw, pads, sp.nsp == 2 ? oph : 0, opw, sp.dh, sp.dw,
             (long long)group, b ? 1 : 0);
    ts_shape out = {.ndim = 3, .dims = {k, sp.oh, sp.ow}};
    int64_t dims[4];
    spatial_out_dims(im, x, &sp, k, dims);
    int li;
    if ((st = emit_unary(im, n, "convtranspose", in, attrs, &out, x->rank, dims, &li))) return st;
    return fill_weight_bias(im, li, w, b);
}

static ts_status pool(importer *im, const Onnx__NodeProto *n, int is_max) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if (is_max && n->n_output > 1 && output_used(im, n, 1))
        return unsupported(im, "the Indices output is not supported");
    spatial sp;
    if ((st = spatial_input(im, x, &sp))) return st;
    int kh, kw;
    const int64_t *ks;
    int nks = attr_ints(n, "kernel_shape", &ks);
    if (nks != sp.nsp) return bad_node(im, "kernel_shape must have %d values", sp.nsp);
    if (!get_spatial_ints(n, "kernel_shape", sp.nsp, 1, &kh, &kw) || kh < 1 || kw < 1)
        return bad_node(im, "kernel_shape must be positive");
    if (attr_int(n, "storage_order", 0) != 0) return unsupported(im, "storage_order=1 is not supported");
    int ceil_mode = (int)attr_int(n, "ceil_mode", 0);
    if ((st = spatial_attrs(im, n, &sp, kh, kw, ceil_mode))) return st;
    if (!is_max && (sp.dh != 1 || sp.dw != 1)) return unsupported(im, "dilated average pooling is not supported");
    const char *in;
    if ((st = spatial_in_layer(im, x, &sp, &in))) return st;
    char pads[64], attrs[256];
    pad_text(&sp, pads, sizeof pads);
    if (is_max)
        snprintf(attrs, sizeof attrs, "kernel=%dx%d stride=%dx%d %s ceil=%d dilation=%dx%d", sp.kh, sp.kw, sp.sh, sp.sw,
                 pads, ceil_mode, sp.dh, sp.dw);
    else
        snprintf(attrs, sizeof attrs, "kernel=%dx%d stride=%dx%d %s ceil=%d count_include_pad=%d", sp.kh, sp.kw, sp.sh,
                 sp.sw, pads, ceil_mode, (int)attr_int(n, "count_include_pad", 0));
    ts_shape out = {.ndim = 3, .dims = {sp.c, sp.oh, sp.ow}};
    int64_t dims[4];
    spatial_out_dims(im, x, &sp, sp.c, dims);
    int li;
    return emit_unary(im, n, is_max ? "maxpool" : "avgpool", in, attrs, &out, x->rank, dims, &li);
}

static ts_status op_maxpool(importer *im, const Onnx__NodeProto *n) { return pool(im, n, 1); }
static ts_status op_avgpool(importer *im, const Onnx__NodeProto *n) { return pool(im, n, 0); }

static ts_status global_pool(importer *im, const Onnx__NodeProto *n, const char *kind) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    spatial sp;
    if ((st = spatial_input(im, x, &sp))) return st;
    const char *in;
    if ((st = spatial_in_layer(im, x, &sp, &in))) return st;
    ts_shape out = {.ndim = 1, .dims = {sp.c}};
    int64_t dims[4] = {im->off ? -1 : 1, sp.c, 1, 1};
    int li;
    return emit_unary(im, n, kind, in, "", &out, x->rank, dims, &li);
}

static ts_status op_globalavgpool(importer *im, const Onnx__NodeProto *n) { return global_pool(im, n, "globalavgpool"); }
static ts_status op_globalmaxpool(importer *im, const Onnx__NodeProto *n) { return global_pool(im, n, "globalmaxpool"); }

static ts_status op_batchnorm(importer *im, const Onnx__NodeProto *n) {
    value *x, *t[4];
    static const char *const what[4] = {"scale", "bias", "mean", "variance"};
    ts_status st = require_input(im, n, 0, &x);
    for (int k = 0; k < 4 && !st; k++) st = require_const(im, n, k + 1, what[k], &t[k]);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    if (x->rank < 2) return bad_node(im, "input rank %d (at least 2: N, C)", x->rank);
    if (!im->off && x->dims[0] != 1)
        return unsupported(im, "in whole-tensor mode the batch axis of '%s' must be 1", x->name);
    int64_t c = x->dims[1];
    for (int k = 0; k < 4; k++)
        if (t[k]->c->numel != c)
            return bad_node(im, "%s has %lld values for %lld channels", what[k], (long long)t[k]->c->numel, (long long)c);
    /* per sample: (C) after a dense layer, else channels by the rest flattened */
    ts_shape s;
    if (x->rank == 2) {
        s.ndim = 1;
        s.dims[0] = c;
    } else if (x->rank == 4) {
        s.ndim = 3;
        s.dims[0] = c;
        s.dims[1] = x->dims[2];
        s.dims[2] = x->dims[3];
    } else {
        s.ndim = 3;
        s.dims[0] = c;
        s.dims[1] = 1;
        s.dims[2] = shape_numel_dims(x->rank - 2, x->dims + 2);
    }
    const char *in;
    if ((st = materialize_as(im, x, &s, &in))) return st;
    /* ONNX momentum weighs the running value (0.9); tessera's, as PyTorch's, the batch (0.1) */
    char attrs[96];
    snprintf(attrs, sizeof attrs, "eps=%.9g momentum=%.9g", (double)attr_float(n, "epsilon", 1e-5f),
             1.0 - (double)attr_float(n, "momentum", 0.9f));
    int li;
    if ((st = emit_unary(im, n, "batchnorm", in, attrs, &s, x->rank, x->dims, &li))) return st;
    static const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 0; k < 4 && !st; k++) {
        float *f = const_floats(im, t[k]);
        if (!f) return oom(im);
        st = add_fill(im, li, suffix[k], f, c);
        free(f);
    }
    /* training-mode outputs (updated running statistics) are not computed */
    for (int k = 1; k < (int)n->n_output && !st; k++) st = define_uncomputed(im, n, k);
    return st;
}

/* ------------------------------------------------------------ dense algebra */

static ts_status strip_batch_axes(importer *im, const value *c, int layer_rank, ts_shape *s);

/* A constant used where a computed value is needed: a `constant` layer repeating
 * it for every sample (fed by the model input for the batch size). `like` is a
 * computed operand it combines with, for the batch-axis alignment. */
static ts_status lift_const(importer *im, const Onnx__NodeProto *n, const value *c, const value *like, value *out) {
    ts_shape s;
    ts_status st = strip_batch_axes(im, c, like ? like->rank : c->rank, &s);
    if (st) return st;
    if (im->off && (!like || c->rank != like->rank))
        return unsupported(im, "constant '%s' cannot be aligned with the batch axis", c->name);
    char attrs[160] = "shape=";
    onnx_shape_text(&s, attrs + 6, sizeof attrs - 6);
    const char *ins[1] = {im->layers[0]->name};
    char base[LAYER_NAME_MAX];
    snprintf(base, sizeof base, "%.40s_const", node_base(n));
    int li;
    if ((st = emit_layer(im, "constant", base, ins, 1, attrs, &s, &li))) return st;
    float *f = const_floats(im, c);
    if (!f) return oom(im);
    st = add_fill(im, li, "value", f, c->c->numel);
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
static ts_status strip_batch_axes(importer *im, const value *c, int layer_rank, ts_shape *s) {
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

/* numpy broadcast of two dims lists; 0 when incompatible */
static int broadcast(int ra, const int64_t *a, int rb, const int64_t *b, int *rr, int64_t *r) {
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
static ts_status binary_emit(importer *im, const Onnx__NodeProto *n, int op, const value *a, const value *b, value *res) {
    static const char *const names[] = {"add", "sub", "mul", "div"};
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
    char attrs[200];
    if (a->kind == VALUE_LAYER && b->kind == VALUE_LAYER) {
        if (im->off && a->rank != b->rank)
            return unsupported(im, "operands of rank %d and %d would broadcast across the batch axis", a->rank, b->rank);
        const char *ins[2];
        if ((st = materialize(im, a, &ins[0])) || (st = materialize(im, b, &ins[1]))) return st;
        value tmp = {.kind = VALUE_LAYER, .rank = rr};
        memcpy(tmp.dims, dims, sizeof tmp.dims);
        ts_shape out;
        if ((st = value_sample_shape(im, &tmp, &out))) return st;
        int same = a->rank == b->rank && !memcmp(a->dims, b->dims, (size_t)a->rank * sizeof *a->dims);
        if (op == BINARY_ADD && same) st = emit_layer(im, "add", node_base(n), ins, 2, "", &out, &li);
        else {
            snprintf(attrs, sizeof attrs, "op=%s", names[op]);
            st = emit_layer(im, "binary", node_base(n), ins, 2, attrs, &out, &li);
        }
        if (st) return st;
        goto done;
    }
    int const_first = a->kind == VALUE_CONST;
    const value *x = const_first ? b : a, *c = const_first ? a : b;
    if (x->kind != VALUE_LAYER) return unsupported(im, "input '%s' is not computed", x->name);
    if (im->off && c->rank > x->rank)
        return unsupported(im, "constant '%s' has more axes than '%s' and would broadcast across the batch", c->name, x->name);
    ts_shape cs;
    if ((st = strip_batch_axes(im, c, x->rank, &cs))) return st;
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    value tmp = {.kind = VALUE_LAYER, .rank = rr};
    memcpy(tmp.dims, dims, sizeof tmp.dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    char cst[120];
    onnx_shape_text(&cs, cst, sizeof cst);
    snprintf(attrs, sizeof attrs, "op=%s const=%s const_first=%d", names[op], cst, const_first);
    const char *ins[1] = {in};
    if ((st = emit_layer(im, "binary", node_base(n), ins, 1, attrs, &out, &li))) return st;
    float *f = const_floats(im, c);
    if (!f) return oom(im);
    st = add_fill(im, li, "const", f, c->c->numel);
    free(f);
    if (st) return st;
done:
    res->kind = VALUE_LAYER;
    res->layer = li;
    res->rank = rr;
    memcpy(res->dims, dims, (size_t)rr * sizeof *dims);
    if (im->off) res->dims[0] = -1;
    return TS_OK;
}

static ts_status define_result(importer *im, const Onnx__NodeProto *n, value *res) {
    if (res->kind == VALUE_CONST) return define_const(im, n, 0, res->c);
    return define_layer(im, n, 0, res->layer, res->rank, res->dims);
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
    if ((st = binary_emit(im, n, op, a, b, &res))) return st;
    return define_result(im, n, &res);
}


static ts_status op_add(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_ADD); }
static ts_status op_sub(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_SUB); }
static ts_status op_mul(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_MUL); }
static ts_status op_div(importer *im, const Onnx__NodeProto *n) { return binary_node(im, n, BINARY_DIV); }

static ts_status op_sum(importer *im, const Onnx__NodeProto *n) {
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
        st = binary_emit(im, n, BINARY_ADD, &acc, v, &next);
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
    char attrs[64];
    snprintf(attrs, sizeof attrs, "out=%lld bias=%d", (long long)nout, bias ? 1 : 0);
    ts_shape out = {.ndim = 1, .dims = {nout}};
    int li;
    if ((st = emit_unary(im, n, "dense", in, attrs, &out, rank, dims, &li))) return st;
    if ((st = add_fill(im, li, "weight", w, nout * s.dims[0]))) return st;
    if (bias) st = add_fill(im, li, "bias", bias, nout);
    return st;
}

static ts_status op_gemm(importer *im, const Onnx__NodeProto *n) {
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
    if (im->off || (m == 1 && !ta && !(c && !bias))) {
        value xv = *a;
        st = emit_dense(im, n, &xv, w, nout, bias, 2, dims);
        free(w);
        free(bias);
        return st;
    }
    /* whole-tensor mode: A (M, K) [transposed] times B, plus C */
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
        if ((st = emit_layer(im, "transpose", node_base(n), ins, 1, "perm=1,0", &ts2, &li))) {
            free(w);
            return st;
        }
        in = im->layers[li]->name;
    }
    float *bt = transpose2(w, nout, k); /* (K, out) */
    free(w);
    if (!bt) return oom(im);
    char attrs[200];
    snprintf(attrs, sizeof attrs, "b=%lldx%lld", (long long)k, (long long)nout);
    ts_shape out = {.ndim = 2, .dims = {m, nout}};
    const char *ins[1] = {in};
    st = emit_layer(im, "matmul", node_base(n), ins, 1, attrs, &out, &li);
    if (!st) st = add_fill(im, li, "weight", bt, k * nout);
    free(bt);
    if (st) return st;
    if (c) {
        float *cf = const_floats(im, c);
        if (!cf) return oom(im);
        for (int64_t i = 0; i < c->c->numel; i++) cf[i] *= beta;
        ts_shape cs = {.ndim = c->rank ? c->rank : 1, .dims = {c->rank ? c->dims[0] : 1, c->rank > 1 ? c->dims[1] : 0}};
        char cst[80];
        onnx_shape_text(&cs, cst, sizeof cst);
        snprintf(attrs, sizeof attrs, "op=add const=%s const_first=0", cst);
        const char *ins2[1] = {im->layers[li]->name};
        int li2;
        st = emit_layer(im, "binary", node_base(n), ins2, 1, attrs, &out, &li2);
        if (!st) st = add_fill(im, li2, "const", cf, c->c->numel);
        free(cf);
        li = li2;
        if (st) return st;
    }
    return define_layer(im, n, 0, li, 2, dims);
}

static ts_status op_matmul(importer *im, const Onnx__NodeProto *n) {
    value *a, *b;
    ts_status st = require_input(im, n, 0, &a);
    if (!st) st = require_input(im, n, 1, &b);
    if (st) return st;
    if (a->kind != VALUE_LAYER) return unsupported(im, "A must be computed from the model input");
    if (b->kind != VALUE_CONST) return unsupported(im, "B must be a constant (an initializer)");
    if (im->off && a->rank < 2) return unsupported(im, "A is 1-D: its only axis is the batch");
    if (b->rank < 1) return bad_node(im, "B is a scalar");
    int64_t k = a->dims[a->rank - 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    if (k != kb) return bad_node(im, "A has %lld columns but B has %lld rows", (long long)k, (long long)kb);
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
    const char *in;
    if ((st = materialize(im, a, &in))) return st;
    char attrs[120] = "b=";
    onnx_shape_text(&bs, attrs + 2, sizeof attrs - 2);
    const char *ins[1] = {in};
    int li;
    if ((st = emit_layer(im, "matmul", node_base(n), ins, 1, attrs, &out, &li))) return st;
    float *bf = const_floats(im, b);
    if (!bf) return oom(im);
    st = add_fill(im, li, "weight", bf, b->c->numel);
    free(bf);
    if (st) return st;
    return define_layer(im, n, 0, li, rr, dims);
}

static ts_status op_prelu(importer *im, const Onnx__NodeProto *n) {
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
    char attrs[120] = "shape=";
    onnx_shape_text(&ss, attrs + 6, sizeof attrs - 6);
    int li;
    ts_shape out;
    if ((st = value_sample_shape(im, x, &out))) return st;
    if ((st = emit_unary(im, n, "prelu", in, attrs, &out, x->rank, x->dims, &li))) return st;
    float *f = const_floats(im, s);
    if (!f) return oom(im);
    st = add_fill(im, li, "slope", f, s->c->numel);
    free(f);
    return st;
}

static ts_status softmax_node(importer *im, const Onnx__NodeProto *n, const char *kind) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    if ((st = need_layer_value(im, x))) return st;
    int coerce = im->opset < 13;
    int64_t axis = attr_int(n, "axis", coerce ? 1 : -1);
    int a;
    if ((st = sample_axis(im, axis, x->rank, "axis", &a))) return st;
    if (x->rank - im->off == 0) return unsupported(im, "a scalar per sample");
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    char attrs[48];
    snprintf(attrs, sizeof attrs, "axis=%d coerce=%d", a, coerce);
    ts_shape out;
    if ((st = value_sample_shape(im, x, &out))) return st;
    int li;
    return emit_unary(im, n, kind, in, attrs, &out, x->rank, x->dims, &li);
}

static ts_status op_softmax(importer *im, const Onnx__NodeProto *n) { return softmax_node(im, n, "softmax"); }
static ts_status op_logsoftmax(importer *im, const Onnx__NodeProto *n) { return softmax_node(im, n, "logsoftmax"); }

/* ------------------------------------------------------------ shape ops */

/* a new logical shape over the same data: a view of a layer, or a constant */
static ts_status define_reshaped(importer *im, const Onnx__NodeProto *n, const value *x, int rank, const int64_t *dims) {
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
    value tmp = {.kind = VALUE_LAYER, .rank = rank};
    memcpy(tmp.dims, dims, (size_t)rank * sizeof *dims);
    ts_shape s, s0;
    ts_status st = value_sample_shape(im, &tmp, &s);
    if (!st) st = value_sample_shape(im, x, &s0);
    if (st) return st;
    if (ts_shape_numel(&s) != ts_shape_numel(&s0))
        return bad_node(im, "the new shape holds %lld values per sample, the input %lld", (long long)ts_shape_numel(&s),
                        (long long)ts_shape_numel(&s0));
    return define_layer(im, n, 0, x->layer, rank, dims);
}

static ts_status op_flatten(importer *im, const Onnx__NodeProto *n) {
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
        return define_reshaped(im, n, x, 2, dims);
    }
    dims[0] = shape_numel_dims((int)axis, x->dims);
    dims[1] = shape_numel_dims(x->rank - (int)axis, x->dims + axis);
    return define_reshaped(im, n, x, 2, dims);
}

static ts_status op_reshape(importer *im, const Onnx__NodeProto *n) {
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
    int64_t known = 1;
    for (int k = 0; k < rank; k++) {
        int64_t d = target[k];
        if (d == ONNX_BATCH_DIM || (batched && k == 0 && ((d == 0 && !allowzero) || (im->batch0 > 0 && d == im->batch0)))) {
            if (!batched || k != 0) return unsupported(im, "the batch size is used as a sample dimension");
            dims[k] = -1;
            continue;
        }
        if (d == 0 && !allowzero) {
            if (k >= x->rank) return bad_node(im, "shape[%d] = 0 copies a dimension the input does not have", k);
            d = x->dims[k];
        }
        if (d == -1) {
            if (infer >= 0) return bad_node(im, "shape has more than one -1");
            infer = k;
            dims[k] = -1;
            continue;
        }
        if (d < 0) return bad_node(im, "shape[%d] = %lld", k, (long long)d);
        dims[k] = d;
        known *= d;
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
    return define_reshaped(im, n, x, rank, dims);
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

static ts_status op_squeeze(importer *im, const Onnx__NodeProto *n) {
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
        if (x->kind == VALUE_LAYER && a < im->off) return unsupported(im, "squeezing the batch axis");
        if (x->dims[a] != 1) return bad_node(im, "axis %lld has size %lld, not 1", (long long)a, (long long)x->dims[a]);
        drop[a] = 1;
    }
    if (!cnt)
        for (int k = (x->kind == VALUE_LAYER ? im->off : 0); k < x->rank; k++) drop[k] = x->dims[k] == 1;
    int64_t dims[ONNX_MAX_RANK];
    int r = 0;
    for (int k = 0; k < x->rank; k++)
        if (!drop[k]) dims[r++] = x->dims[k];
    return define_reshaped(im, n, x, r, dims);
}

static ts_status op_unsqueeze(importer *im, const Onnx__NodeProto *n) {
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
        if (x->kind == VALUE_LAYER && a < im->off) return unsupported(im, "inserting an axis before the batch axis");
        ins[a] = 1;
    }
    int64_t dims[ONNX_MAX_RANK];
    for (int k = 0, j = 0; k < r; k++) dims[k] = ins[k] ? 1 : x->dims[j++];
    return define_reshaped(im, n, x, r, dims);
}

static ts_status op_transpose(importer *im, const Onnx__NodeProto *n) {
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
    if (im->off && perm[0] != 0) return unsupported(im, "perm moves the batch axis");
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    char attrs[80] = "perm=";
    size_t len = 5;
    for (int k = im->off; k < x->rank; k++)
        len += (size_t)snprintf(attrs + len, sizeof attrs - len, "%s%d", k > im->off ? "," : "", perm[k] - im->off);
    value tmp = {.kind = VALUE_LAYER, .rank = x->rank};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    if (x->rank - im->off <= 1) return define_alias(im, n, 0, x); /* nothing moves */
    int li;
    return emit_unary(im, n, "transpose", in, attrs, &out, x->rank, dims, &li);
}

static ts_status op_concat(importer *im, const Onnx__NodeProto *n) {
    if (n->n_input == 0) return bad_node(im, "no inputs");
    value *first;
    ts_status st = require_input(im, n, 0, &first);
    if (st) return st;
    int64_t axis = attr_int(n, "axis", im->opset < 4 ? 1 : 0);
    if (axis < -first->rank || axis >= first->rank) return bad_node(im, "axis %lld out of range", (long long)axis);
    if (axis < 0) axis += first->rank;
    int all_const = 1, any_const = 0;
    int64_t total = 0;
    for (size_t k = 0; k < n->n_input; k++) {
        value *v = node_input(im, n, (int)k);
        if (!v) return bad_node(im, "input %zu is missing", k);
        if (v->rank != first->rank) return bad_node(im, "inputs have different ranks");
        for (int d = 0; d < v->rank; d++)
            if (d != axis && v->dims[d] != first->dims[d] && !(v->kind == VALUE_LAYER && d < im->off)) {
                if (d < im->off && (v->kind == VALUE_LAYER || first->kind == VALUE_LAYER))
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
    int a;
    if ((st = sample_axis(im, axis, first->rank, "axis", &a))) return st;
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
    value tmp = {.kind = VALUE_LAYER, .rank = first->rank};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    char attrs[32];
    snprintf(attrs, sizeof attrs, "axis=%d", a);
    int li;
    if ((st = emit_layer(im, "concat", node_base(n), ins, (int)n->n_input, attrs, &out, &li))) return st;
    return define_layer(im, n, 0, li, first->rank, dims);
}

static ts_status op_pad(importer *im, const Onnx__NodeProto *n) {
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
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    char attrs[320] = "pads=";
    size_t len = 5;
    for (int half = 0; half < 2; half++)
        for (int k = im->off; k < x->rank; k++)
            len += (size_t)snprintf(attrs + len, sizeof attrs - len, "%s%lld", len > 5 ? "," : "",
                                    (long long)pads[half * x->rank + k]);
    snprintf(attrs + len, sizeof attrs - len, " mode=%s value=%.9g", mode, fill_value);
    value tmp = {.kind = VALUE_LAYER, .rank = x->rank};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    int li;
    return emit_unary(im, n, "pad", in, attrs, &out, x->rank, dims, &li);
}

/* ------------------------------------------------------------ constants */

static ts_status op_constant(importer *im, const Onnx__NodeProto *n) {
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

static ts_status op_shape(importer *im, const Onnx__NodeProto *n) {
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
        t->i[k] = x->kind == VALUE_LAYER && start + k < im->off ? ONNX_BATCH_DIM : d;
    }
    return define_const(im, n, 0, t);
}

static ts_status op_gather(importer *im, const Onnx__NodeProto *n) {
    value *x, *idx;
    ts_status st = require_input(im, n, 0, &x);
    if (!st) st = require_const(im, n, 1, "indices", &idx);
    if (st) return st;
    if (x->kind != VALUE_CONST) return unsupported(im, "Gather on computed values (only constant folding is supported)");
    if (idx->c->is_float) return bad_node(im, "indices must be integers");
    int64_t axis = attr_int(n, "axis", 0);
    if (axis < -x->rank || axis >= x->rank) return bad_node(im, "axis out of range");
    if (axis < 0) axis += x->rank;
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

static ts_status op_cast(importer *im, const Onnx__NodeProto *n) {
    value *x;
    ts_status st = require_input(im, n, 0, &x);
    if (st) return st;
    int64_t to = attr_int(n, "to", 0);
    int to_float = to == ONNX_FLOAT || to == ONNX_DOUBLE;
    if (x->kind == VALUE_LAYER) {
        if (!to_float) return unsupported(im, "casting computed values to %s", onnx_dtype_name((int)to));
        return define_alias(im, n, 0, x);
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
static ts_status op_expand(importer *im, const Onnx__NodeProto *n) {
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
    char attrs[200], cst[120];
    onnx_shape_text(&out, cst, sizeof cst);
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
        snprintf(attrs, sizeof attrs, "shape=%s", cst);
        const char *ins[1] = {im->layers[0]->name};
        st = emit_layer(im, "constant", node_base(n), ins, 1, attrs, &out, &li);
        if (!st) st = add_fill(im, li, "value", t->f, numel);
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
    snprintf(attrs, sizeof attrs, "op=mul const=%s const_first=0", cst);
    const char *ins[1] = {in};
    st = emit_layer(im, "binary", node_base(n), ins, 1, attrs, &out, &li);
    if (!st) st = add_fill(im, li, "const", ones, numel);
    free(ones);
    if (st) return st;
    return define_layer(im, n, 0, li, rr, dims);
}

/* ------------------------------------------------------------ the table */

typedef struct op_entry {
    const char *name;
    convert_fn fn;
} op_entry;

static const op_entry OPS[] = {
    {"Conv", op_conv},
    {"ConvTranspose", op_convtranspose},
    {"MaxPool", op_maxpool},
    {"AveragePool", op_avgpool},
    {"GlobalAveragePool", op_globalavgpool},
    {"GlobalMaxPool", op_globalmaxpool},
    {"BatchNormalization", op_batchnorm},
    {"Relu", op_relu},
    {"LeakyRelu", op_leakyrelu},
    {"PRelu", op_prelu},
    {"Elu", op_elu},
    {"Selu", op_selu},
    {"Sigmoid", op_sigmoid},
    {"HardSigmoid", op_hardsigmoid},
    {"Tanh", op_tanh},
    {"Clip", op_clip},
    {"Gemm", op_gemm},
    {"MatMul", op_matmul},
    {"Add", op_add},
    {"Sub", op_sub},
    {"Mul", op_mul},
    {"Div", op_div},
    {"Sum", op_sum},
    {"Softmax", op_softmax},
    {"LogSoftmax", op_logsoftmax},
    {"Flatten", op_flatten},
    {"Reshape", op_reshape},
    {"Concat", op_concat},
    {"Transpose", op_transpose},
    {"Squeeze", op_squeeze},
    {"Unsqueeze", op_unsqueeze},
    {"Pad", op_pad},
    {"Identity", op_identity},
    {"Dropout", op_dropout},
    {"Constant", op_constant},
    {"Shape", op_shape},
    {"Gather", op_gather},
    {"Cast", op_cast},
    {"Expand", op_expand},
};

convert_fn onnx_converter(const char *op_type) {
    for (size_t i = 0; i < sizeof OPS / sizeof *OPS; i++)
        if (!strcmp(OPS[i].name, op_type)) return OPS[i].fn;
    return NULL;
}
