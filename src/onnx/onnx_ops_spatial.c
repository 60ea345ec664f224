/* ONNX converters for spatial ops: Conv, ConvTranspose, MaxPool, AveragePool, the
 * global pools and BatchNormalization. */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* a convolution's or pooling's geometry as layer attributes, over kind's defaults */
static layer_attrs spatial_layer_attrs(const spatial *sp, layer_kind kind) {
    layer_attrs a;
    nn_attrs_default(kind, &a);
    a.kh = sp->kh;
    a.kw = sp->kw;
    a.sh = sp->sh;
    a.sw = sp->sw;
    a.ph = sp->pt;
    a.pw = sp->pl;
    a.pbh = sp->pb;
    a.pbw = sp->pr;
    a.dh = sp->dh;
    a.dw = sp->dw;
    return a;
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
    ts_status st = add_fill(im, im->layers[li]->t.weight, wf, w->c->numel);
    free(wf);
    if (!st && b) {
        float *bf = const_floats(im, b);
        if (!bf) return oom(im);
        st = add_fill(im, im->layers[li]->t.bias, bf, b->c->numel);
        free(bf);
    }
    return st;
}

ts_status op_conv(importer *im, const Onnx__NodeProto *n) {
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
    layer_attrs a = spatial_layer_attrs(&sp, LAYER_CONV2D);
    if (k > (1 << 24) || group > (1 << 20)) return unsupported(im, "%lld output channels in %lld groups", (long long)k, (long long)group);
    a.features = (int)k;
    a.groups = (int)group;
    a.bias = b ? 1 : 0;
    ts_shape out = {.ndim = 3, .dims = {k, sp.oh, sp.ow}};
    int64_t dims[4];
    spatial_out_dims(im, x, &sp, k, dims);
    int li;
    if ((st = emit_unary(im, n, LAYER_CONV2D, in, &a, &out, x->rank, dims, &li))) return st;
    return fill_weight_bias(im, li, w, b);
}

/* ConvTranspose: out = stride*(in-1) + output_padding + (k-1)*d+1 - pads; with
 * output_shape or auto_pad the pads follow from the wanted size (ONNX's rule) */
ts_status op_convtranspose(importer *im, const Onnx__NodeProto *n) {
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
    layer_attrs a = spatial_layer_attrs(&sp, LAYER_CONVTRANSPOSE);
    if (k > (1 << 24) || group > (1 << 20)) return unsupported(im, "%lld output channels in %lld groups", (long long)k, (long long)group);
    a.features = (int)k;
    a.groups = (int)group;
    a.bias = b ? 1 : 0;
    a.oph = sp.nsp == 2 ? oph : 0;
    a.opw = opw;
    ts_shape out = {.ndim = 3, .dims = {k, sp.oh, sp.ow}};
    int64_t dims[4];
    spatial_out_dims(im, x, &sp, k, dims);
    int li;
    if ((st = emit_unary(im, n, LAYER_CONVTRANSPOSE, in, &a, &out, x->rank, dims, &li))) return st;
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
    layer_attrs a = spatial_layer_attrs(&sp, is_max ? LAYER_MAXPOOL : LAYER_AVGPOOL);
    a.ceil_mode = ceil_mode;
    if (!is_max) a.count_include_pad = (int)attr_int(n, "count_include_pad", 0);
    ts_shape out = {.ndim = 3, .dims = {sp.c, sp.oh, sp.ow}};
    int64_t dims[4];
    spatial_out_dims(im, x, &sp, sp.c, dims);
    int li;
    return emit_unary(im, n, is_max ? LAYER_MAXPOOL : LAYER_AVGPOOL, in, &a, &out, x->rank, dims, &li);
}

ts_status op_maxpool(importer *im, const Onnx__NodeProto *n) { return pool(im, n, 1); }
ts_status op_avgpool(importer *im, const Onnx__NodeProto *n) { return pool(im, n, 0); }

static ts_status global_pool(importer *im, const Onnx__NodeProto *n, layer_kind kind) {
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
    return emit_unary(im, n, kind, in, NULL, &out, x->rank, dims, &li);
}

ts_status op_globalavgpool(importer *im, const Onnx__NodeProto *n) { return global_pool(im, n, LAYER_GLOBALAVGPOOL); }
ts_status op_globalmaxpool(importer *im, const Onnx__NodeProto *n) { return global_pool(im, n, LAYER_GLOBALMAXPOOL); }

ts_status op_batchnorm(importer *im, const Onnx__NodeProto *n) {
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
    layer_attrs a;
    nn_attrs_default(LAYER_BATCHNORM, &a);
    a.eps = attr_float(n, "epsilon", 1e-5f);
    a.momentum = (float)(1.0 - (double)attr_float(n, "momentum", 0.9f));
    int li;
    if ((st = emit_unary(im, n, LAYER_BATCHNORM, in, &a, &s, x->rank, x->dims, &li))) return st;
    const nn_added *to = &im->layers[li]->t;
    const int tensor[4] = {to->weight, to->bias, to->running_mean, to->running_var};
    for (int k = 0; k < 4 && !st; k++) {
        float *f = const_floats(im, t[k]);
        if (!f) return oom(im);
        st = add_fill(im, tensor[k], f, c);
        free(f);
    }
    /* training-mode outputs (updated running statistics) are not computed */
    for (int k = 1; k < (int)n->n_output && !st; k++) st = define_uncomputed(im, n, k);
    return st;
}
