/* ONNX converters for Resize (opsets 10, 11, 13, 18) and Upsample (7, 9): a `resize`
 * layer over the last two axes. Scales and sizes must be constants (folded shape
 * arithmetic counts); every axis before H and W must keep its size. Refused with a
 * reason: cubic mode, tf_crop_and_resize, antialiased linear downsampling,
 * keep_aspect_ratio_policy other than stretch. */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* What a node asks for, per ONNX axis: a scale (has_scales) or a size. */
typedef struct resize_req {
    int rank;
    int has_scales;
    float scales[ONNX_MAX_RANK];
    int64_t sizes[ONNX_MAX_RANK];
} resize_req;

/* the index of ONNX's name s in the resize schema's choices for key (they are ONNX's
 * names), or -1 */
static int choice_index(const char *key, const char *s) {
    const char *const *names = attr_find(LAYER_RESIZE, key)->choices;
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], s)) return i;
    return -1;
}

/* scales (float) or sizes (int64) from a constant of `count` values, for the axes
 * listed in axes (opset 18; NULL: all axes in order) */
static ts_status req_from_const(importer *im, const value *c, int is_scales, const int64_t *axes, int naxes,
                                resize_req *r) {
    const int count = axes ? naxes : r->rank;
    if (c->c->numel != count)
        return bad_node(im, "%s has %lld values; the input has rank %d%s", is_scales ? "scales" : "sizes",
                        (long long)c->c->numel, r->rank, axes ? " (and axes lists fewer)" : "");
    if (is_scales != c->c->is_float) return bad_node(im, "%s must be %s", is_scales ? "scales" : "sizes",
                                                     is_scales ? "float" : "int64");
    r->has_scales = is_scales;
    for (int k = 0; k < count; k++) {
        int64_t ax = axes ? axes[k] : k;
        if (ax < 0) ax += r->rank;
        if (ax < 0 || ax >= r->rank) return bad_node(im, "axes has %lld for rank %d", (long long)axes[k], r->rank);
        if (is_scales) {
            const float s = c->c->f[k];
            if (!(s > 0.0f) || s > 65536.0f) return bad_node(im, "scales[%d] is %g (must be in (0, 65536])", k, s);
            r->scales[ax] = s;
        } else {
            r->sizes[ax] = c->c->i[k];
        }
    }
    return TS_OK;
}

/* the identity along the axes before H and W: scale 1 or the same size (the batch
 * axis's size may be the batch marker or the declared batch) */
static ts_status req_check_leading(importer *im, const value *x, const resize_req *r) {
    for (int k = 0; k < r->rank - 2; k++) {
        const int batch = im->off && k == 0;
        if (r->has_scales) {
            if (r->scales[k] != 1.0f)
                return unsupported(im, "scale %g on axis %d (%s); tessera resizes the last two axes", r->scales[k], k,
                                   batch ? "the batch" : "before H and W");
        } else if (batch ? !(r->sizes[0] == ONNX_BATCH_DIM || (im->batch0 > 0 && r->sizes[0] == im->batch0))
                         : r->sizes[k] != x->dims[k]) {
            return unsupported(im, "size %lld on axis %d (%s, of size %lld); tessera resizes the last two axes",
                               (long long)r->sizes[k], k, batch ? "the batch" : "before H and W",
                               (long long)x->dims[k]);
        }
    }
    return TS_OK;
}

/* emits the layer for x resized as r with mode, coordinates and rounding in a */
static ts_status resize_emit(importer *im, const Onnx__NodeProto *n, const value *x, const resize_req *r,
                             layer_attrs *a) {
    ts_status st = req_check_leading(im, x, r);
    if (st) return st;
    const int h = r->rank - 2, w = r->rank - 1;
    if (r->has_scales) {
        a->scale_h = r->scales[h];
        a->scale_w = r->scales[w];
    } else {
        for (int k = h; k <= w; k++)
            if (r->sizes[k] < 1 || r->sizes[k] > 65536)
                return unsupported(im, "output size %lld on axis %d (1..65536 are supported)", (long long)r->sizes[k],
                                   k);
        a->size_h = (int)r->sizes[h];
        a->size_w = (int)r->sizes[w];
    }
    int64_t dims[ONNX_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    dims[h] = r->has_scales ? (int64_t)floor((double)x->dims[h] * a->scale_h) : a->size_h;
    dims[w] = r->has_scales ? (int64_t)floor((double)x->dims[w] * a->scale_w) : a->size_w;
    if (dims[h] < 1 || dims[w] < 1 || dims[h] > 65536 || dims[w] > 65536)
        return unsupported(im, "'%s' resized to %lldx%lld (each side must be 1..65536)", x->name, (long long)dims[h],
                           (long long)dims[w]);
    const char *in;
    if ((st = materialize(im, x, &in))) return st;
    value tmp = {.kind = VALUE_LAYER, .rank = x->rank};
    memcpy(tmp.dims, dims, sizeof dims);
    ts_shape out;
    if ((st = value_sample_shape(im, &tmp, &out))) return st;
    int li;
    return emit_unary(im, n, LAYER_RESIZE, in, a, &out, x->rank, dims, &li);
}

/* X as a layer value with H and W after the batch axis */
static ts_status resize_input(importer *im, const Onnx__NodeProto *n, value **x, resize_req *r) {
    ts_status st = require_input(im, n, 0, x);
    if (st) return st;
    if ((st = need_layer_value(im, *x))) return st;
    if ((*x)->rank - im->off < 2)
        return unsupported(im, "input '%s' has rank %d; Resize needs H and W%s", (*x)->name, (*x)->rank,
                           im->off ? " after the batch axis" : "");
    memset(r, 0, sizeof *r);
    r->rank = (*x)->rank;
    for (int k = 0; k < r->rank; k++) {
        r->scales[k] = 1.0f;
        r->sizes[k] = (*x)->dims[k];
    }
    if (im->off) r->sizes[0] = ONNX_BATCH_DIM;
    return TS_OK;
}

/* Upsample and Resize before opset 11: asymmetric coordinates; nearest takes the
 * floor when enlarging and the ceiling when shrinking (onnxruntime's reading of
 * those opsets), so the two axes must not go opposite ways */
static ts_status resize_legacy(importer *im, const Onnx__NodeProto *n, const value *x, const resize_req *r) {
    char buf[32];
    const char *mode = attr_string(n, "mode", "nearest", buf, sizeof buf);
    layer_attrs a;
    nn_attrs_default(LAYER_RESIZE, &a);
    a.coord_mode = RESIZE_ASYMMETRIC;
    if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear")) {
        a.resize_mode = RESIZE_LINEAR;
    } else if (!strcmp(mode, "nearest")) {
        const float sh = r->scales[r->rank - 2], sw = r->scales[r->rank - 1];
        if ((sh < 1.0f && sw > 1.0f) || (sh > 1.0f && sw < 1.0f))
            return unsupported(im, "nearest with scales %g and %g (one axis enlarged, the other shrunk)", sh, sw);
        a.nearest_mode = sh < 1.0f || sw < 1.0f ? RESIZE_CEIL : RESIZE_FLOOR;
    } else {
        return unsupported(im, "mode '%s' (nearest and linear are supported)", mode);
    }
    return resize_emit(im, n, x, r, &a);
}

ts_status op_upsample(importer *im, const Onnx__NodeProto *n) {
    if (im->opset < 7) return unsupported(im, "Upsample before opset 7 (height_scale/width_scale attributes)");
    value *x;
    resize_req r;
    ts_status st = resize_input(im, n, &x, &r);
    if (st) return st;
    if (im->opset < 9) {
        const Onnx__AttributeProto *s = attr(n, "scales");
        if (!s || (int)s->n_floats != r.rank) return bad_node(im, "scales must list %d floats", r.rank);
        ts_onnx_tensor t = {.is_float = 1, .rank = 1, .dims = {r.rank}, .numel = r.rank, .f = s->floats};
        value c = {.kind = VALUE_CONST, .c = &t};
        if ((st = req_from_const(im, &c, 1, NULL, 0, &r))) return st;
    } else {
        value *c;
        if ((st = require_const(im, n, 1, "scales", &c))) return st;
        if ((st = req_from_const(im, c, 1, NULL, 0, &r))) return st;
    }
    for (int k = 0; k < r.rank; k++)
        if (r.scales[k] < 1.0f) return bad_node(im, "Upsample's scales[%d] is %g (must be >= 1)", k, r.scales[k]);
    return resize_legacy(im, n, x, &r);
}

/* mode, coordinate_transformation_mode, nearest_mode, antialias and
 * keep_aspect_ratio_policy of Resize 11+ into a */
static ts_status resize_attrs(importer *im, const Onnx__NodeProto *n, const value *x, const resize_req *r,
                              layer_attrs *a) {
    char b1[32], b2[32], b3[32], b4[32];
    const char *mode = attr_string(n, "mode", "nearest", b1, sizeof b1);
    const char *coord = attr_string(n, "coordinate_transformation_mode", "half_pixel", b2, sizeof b2);
    const char *nearest = attr_string(n, "nearest_mode", "round_prefer_floor", b3, sizeof b3);
    const char *policy = attr_string(n, "keep_aspect_ratio_policy", "stretch", b4, sizeof b4);
    nn_attrs_default(LAYER_RESIZE, a);
    if (!strcmp(mode, "linear")) a->resize_mode = RESIZE_LINEAR;
    else if (strcmp(mode, "nearest"))
        return unsupported(im, "mode '%s' (nearest and linear are supported; cubic is not)", mode);
    const int c = choice_index("coord", coord), nm = choice_index("nearest", nearest);
    if (c < 0)
        return unsupported(im, "coordinate_transformation_mode '%s' (half_pixel, asymmetric, align_corners, "
                               "pytorch_half_pixel and tf_half_pixel_for_nn are supported)",
                           coord);
    if (nm < 0) return bad_node(im, "nearest_mode '%s' is not an ONNX mode", nearest);
    a->coord_mode = c;
    a->nearest_mode = nm;
    /* (o + 1/2)/1 is not the identity on the axes tessera keeps unless it rounds down */
    if (c == RESIZE_TF_HALF_PIXEL_FOR_NN &&
        !(a->resize_mode == RESIZE_NEAREST && (nm == RESIZE_ROUND_PREFER_FLOOR || nm == RESIZE_FLOOR)))
        return unsupported(im, "tf_half_pixel_for_nn with mode %s and nearest_mode %s (it would move the values of "
                               "the axes before H and W)",
                           mode, nearest);
    if (!r->has_scales && strcmp(policy, "stretch"))
        return unsupported(im, "keep_aspect_ratio_policy '%s' (stretch is supported)", policy);
    if (attr_int(n, "antialias", 0) && a->resize_mode == RESIZE_LINEAR) {
        for (int k = r->rank - 2; k < r->rank; k++)
            if (r->has_scales ? r->scales[k] < 1.0f : r->sizes[k] < x->dims[k])
                return unsupported(im, "antialias=1 when linear resizing shrinks an axis");
    }
    return TS_OK;
}

ts_status op_resize(importer *im, const Onnx__NodeProto *n) {
    value *x;
    resize_req r;
    ts_status st = resize_input(im, n, &x, &r);
    if (st) return st;
    if (im->opset < 11) {
        value *c;
        if ((st = require_const(im, n, 1, "scales", &c))) return st;
        if ((st = req_from_const(im, c, 1, NULL, 0, &r))) return st;
        return resize_legacy(im, n, x, &r);
    }
    char buf[32];
    if (!strcmp(attr_string(n, "coordinate_transformation_mode", "", buf, sizeof buf), "tf_crop_and_resize"))
        return unsupported(im, "coordinate_transformation_mode 'tf_crop_and_resize' (a crop by roi)");
    /* roi (input 1) matters only for tf_crop_and_resize; an empty scales is absent */
    value *scales = node_input(im, n, 2), *sizes = node_input(im, n, 3);
    if (scales && scales->kind == VALUE_CONST && scales->c->numel == 0) scales = NULL;
    if (!scales == !sizes) return bad_node(im, "needs exactly one of scales and sizes");
    value *c = scales ? scales : sizes;
    if (c->kind != VALUE_CONST)
        return unsupported(im, "its %s ('%s') must be a constant (an initializer, a Constant node or folded shape "
                               "arithmetic)",
                           scales ? "scales" : "sizes", c->name);
    const int64_t *axes = NULL;
    const int naxes = attr_ints(n, "axes", &axes);
    if ((st = req_from_const(im, c, scales != NULL, naxes ? axes : NULL, naxes, &r))) return st;
    layer_attrs a;
    if ((st = resize_attrs(im, n, x, &r, &a))) return st;
    return resize_emit(im, n, x, &r, &a);
}
