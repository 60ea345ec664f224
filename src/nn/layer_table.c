/* The layer kinds table: adding a kind means adding a row here (and its attribute
 * schema above it), and the static_assert fails until every kind has one; the text
 * parser and writer, the builder's checks and `tessera info` follow from the row. A kind whose forward branches on
 * values, indexes by them or calls libm on them also needs a constant-time path
 * (ctx->constant_time, ops.h's *_ct kernels, docs/security.md). */
#include "layers.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

_Static_assert(LAYER_KIND_COUNT == 41, "add the new layer kind to LAYER_OPS");

/* ---- attribute schemas: one row per key (nn.h's attr_spec); defaults and ranges are
 * the text format's (docs/arch-format.md) and PyTorch's */
#define F(field) ((unsigned short)offsetof(layer_attrs, field))
#define INT(key, field, def, lo, hi, onnx) {key, ATTR_INT, F(field), 0, def, lo, hi, 0, NULL, onnx}
#define FLT(key, field, def, lo, hi, onnx) {key, ATTR_FLOAT, F(field), 0, def, lo, hi, 0, NULL, onnx}
#define PAIR(key, a, b, def, lo, flags, onnx) {key, ATTR_PAIR, F(a), F(b), def, lo, 65536, flags, NULL, onnx}
#define PADDING {"padding", ATTR_PADDING, F(ph), 0, 0, 0, 65536, 0, NULL, "pads"}
#define OUT {"out", ATTR_OUT, F(features), 0, 0, 1, 1 << 24, ATTR_REQUIRED, NULL, NULL}
#define SHAPE(key, flags) {key, ATTR_SHAPE, F(tshape), 0, 0, 1, 1 << 24, flags, NULL, NULL}
#define BIAS INT("bias", bias, 1, 0, 1, NULL)
#define A(name, ...) static const attr_spec name[] = {__VA_ARGS__}
#define NA(name) name, (int)(sizeof name / sizeof name[0])

static const char *const PAD_MODES[] = {"constant", "reflect", "edge", NULL};
static const char *const BINARY_OPS[] = {"add", "sub", "mul", "div", NULL};
static const char *const FREE_AXES[] = {"none", "hw", NULL};
/* ONNX's defaults for selu (PyTorch's constants rounded to float) */
#define SELU_ALPHA 1.67326319217681884765625
#define SELU_GAMMA 1.05070102214813232421875

A(A_INPUT, SHAPE("shape", ATTR_REQUIRED), INT("classes", features, 0, 1, 1 << 24, NULL),
  {"vocab", ATTR_INT, F(vocab), 0, 0, 1, 1 << 24, ATTR_OMIT_DEFAULT, NULL, NULL},
  {"target_vocab", ATTR_INT, F(target_vocab), 0, 0, 1, 1 << 24, ATTR_OMIT_DEFAULT, NULL, NULL},
  {"free", ATTR_CHOICE, F(free_hw), 0, 0, 0, 1, ATTR_OMIT_DEFAULT, FREE_AXES, NULL});
A(A_CONV2D, OUT, PAIR("kernel", kh, kw, 0, 1, ATTR_REQUIRED, "kernel_shape"), PAIR("stride", sh, sw, 1, 1, 0, "strides"),
  PADDING, PAIR("dilation", dh, dw, 1, 1, 0, "dilations"), INT("groups", groups, 1, 1, 1 << 20, "group"), BIAS,
  {"view", ATTR_INT, F(early_view), 0, 0, 0, 1, ATTR_OMIT_DEFAULT, NULL, NULL});
A(A_CONVTRANSPOSE, OUT, PAIR("kernel", kh, kw, 0, 1, ATTR_REQUIRED, "kernel_shape"),
  PAIR("stride", sh, sw, 1, 1, 0, "strides"), PADDING, PAIR("output_padding", oph, opw, 0, 0, 0, "output_padding"),
  PAIR("dilation", dh, dw, 1, 1, 0, "dilations"), INT("groups", groups, 1, 1, 1 << 20, "group"), BIAS);
A(A_MAXPOOL, PAIR("kernel", kh, kw, 0, 1, ATTR_REQUIRED, "kernel_shape"),
  PAIR("stride", sh, sw, 0, 1, ATTR_KERNEL_DEFAULT, "strides"), PADDING, INT("ceil", ceil_mode, 0, 0, 1, "ceil_mode"),
  PAIR("dilation", dh, dw, 1, 1, ATTR_OMIT_DEFAULT, "dilations"));
A(A_AVGPOOL, PAIR("kernel", kh, kw, 0, 1, ATTR_REQUIRED, "kernel_shape"),
  PAIR("stride", sh, sw, 0, 1, ATTR_KERNEL_DEFAULT, "strides"), PADDING, INT("ceil", ceil_mode, 0, 0, 1, "ceil_mode"),
  INT("count_include_pad", count_include_pad, 1, 0, 1, "count_include_pad"));
A(A_BATCHNORM, FLT("eps", eps, 1e-5f, 1e-12f, 1.0f, "epsilon"), FLT("momentum", momentum, 0.1f, 0.0f, 1.0f, NULL));
A(A_DENSE, OUT, BIAS, {"exit", ATTR_INT, F(exit_out), 0, 0, 0, 1, ATTR_OMIT_DEFAULT, NULL, NULL});
A(A_LEAKYRELU, FLT("slope", alpha, 0.01f, -1e6f, 1e6f, "alpha"));
A(A_SOFTMAX, INT("axis", axis, -1, -TS_MAX_DIMS, TS_MAX_DIMS - 1, NULL), INT("coerce", coerce, 0, 0, 1, NULL));
A(A_CONCAT, INT("axis", axis, 0, -TS_MAX_DIMS, TS_MAX_DIMS - 1, NULL));
A(A_DROPOUT, FLT("p", p, 0.5f, 0.0f, 0.999f, NULL));
A(A_ELU, FLT("alpha", alpha, 1.0f, -1e6f, 1e6f, "alpha"));
A(A_SELU, FLT("alpha", alpha, SELU_ALPHA, -1e6f, 1e6f, "alpha"), FLT("gamma", gamma, SELU_GAMMA, -1e6f, 1e6f, "gamma"));
A(A_HARDSIGMOID, FLT("alpha", alpha, 0.2f, -1e6f, 1e6f, "alpha"), FLT("beta", beta, 0.5f, -1e6f, 1e6f, "beta"));
A(A_CLIP, {"min", ATTR_FLOAT, F(lo), 0, -INFINITY, -FLT_MAX, FLT_MAX, ATTR_OMIT_DEFAULT, NULL, NULL},
  {"max", ATTR_FLOAT, F(hi), 0, INFINITY, -FLT_MAX, FLT_MAX, ATTR_OMIT_DEFAULT, NULL, NULL});
A(A_PRELU, {"shape", ATTR_SHAPE, F(tshape), 0, 1, 1, 1 << 24, 0, NULL, NULL});
A(A_RESHAPE, SHAPE("shape", ATTR_REQUIRED));
A(A_TRANSPOSE, {"perm", ATTR_INTLIST, F(perm), F(nperm), 0, 0, TS_MAX_DIMS - 1, 0, NULL, NULL});
A(A_PAD, {"pads", ATTR_INTLIST, F(pads), F(npads), 0, -(1 << 24), 1 << 24, ATTR_REQUIRED, NULL, NULL},
  {"mode", ATTR_CHOICE, F(pad_mode), 0, PAD_CONSTANT, 0, 2, 0, PAD_MODES, NULL},
  FLT("value", value, 0.0f, -INFINITY, INFINITY, NULL));
A(A_BINARY, {"op", ATTR_CHOICE, F(op), 0, 0, 0, 3, ATTR_REQUIRED, BINARY_OPS, NULL}, SHAPE("const", ATTR_OMIT_DEFAULT),
  INT("const_first", const_first, 0, 0, 1, NULL));
A(A_MATMUL, SHAPE("b", ATTR_OMIT_DEFAULT));
A(A_CONSTANT, SHAPE("shape", ATTR_REQUIRED));
A(A_POW, FLT("exponent", exponent, 2.0f, -1e6f, 1e6f, NULL));
/* resize: ONNX Resize's defaults (PyTorch's nearest is coord=asymmetric nearest=floor,
 * its bilinear coord=half_pixel or align_corners); exactly one of size and scale */
static const char *const RESIZE_MODES[] = {"nearest", "linear", NULL};
static const char *const RESIZE_COORDS[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                                            "tf_half_pixel_for_nn", NULL};
static const char *const RESIZE_NEAREST_MODES[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil", NULL};
A(A_RESIZE, PAIR("size", size_h, size_w, 0, 1, ATTR_OMIT_DEFAULT, NULL),
  {"scale", ATTR_FPAIR, F(scale_h), F(scale_w), 0, 1.0 / 65536, 65536, ATTR_OMIT_DEFAULT, NULL, NULL},
  {"mode", ATTR_CHOICE, F(resize_mode), 0, RESIZE_NEAREST, 0, 1, 0, RESIZE_MODES, NULL},
  {"coord", ATTR_CHOICE, F(coord_mode), 0, RESIZE_HALF_PIXEL, 0, 4, 0, RESIZE_COORDS, NULL},
  {"nearest", ATTR_CHOICE, F(nearest_mode), 0, RESIZE_ROUND_PREFER_FLOOR, 0, 3, 0, RESIZE_NEAREST_MODES, NULL});
A(A_REDUCEMEAN, {"axes", ATTR_INTLIST, F(axes), F(naxes), 0, 0, TS_MAX_DIMS - 1, ATTR_REQUIRED, NULL, NULL});

/* sequences: PyTorch's nn.Embedding, nn.RNN, nn.LSTM, nn.GRU (one layer each; stack them) */
#define REQ_INT(key, field, lo, hi) {key, ATTR_INT, F(field), 0, 0, lo, hi, ATTR_REQUIRED, NULL, NULL}
static const char *const RNN_ACTS[] = {"tanh", "relu", NULL};
#define RNN_COMMON                                                                                                     \
    REQ_INT("hidden", features, 1, 1 << 16), INT("bidirectional", bidirectional, 0, 0, 1, NULL),                     \
        INT("sequence", sequence, 1, 0, 2, NULL), INT("initial", initial, 0, 0, 1, NULL),                             \
        {"step_mask", ATTR_INT, F(step_mask), 0, 0, 0, 1, ATTR_OMIT_DEFAULT, NULL, NULL}
A(A_EMBEDDING, REQ_INT("vocab", vocab, 1, 1 << 24), REQ_INT("dim", features, 1, 1 << 16),
  INT("padding_idx", padding_idx, -1, -1, 1 << 24, NULL));
A(A_RNN, RNN_COMMON, {"act", ATTR_CHOICE, F(cell_act), 0, 0, 0, 1, 0, RNN_ACTS, NULL});
A(A_LSTM, RNN_COMMON);
A(A_GRU, RNN_COMMON, INT("linear_before_reset", lbr, 1, 0, 1, NULL));

#define ROW(name, attrs, fn, macs, aux, scratch) {name, attrs, fn##_infer, fn##_forward, fn##_backward, macs, aux, scratch}
#define NONE NULL, 0

const layer_ops LAYER_OPS[LAYER_KIND_COUNT] = {
    [LAYER_INPUT] = ROW("input", NA(A_INPUT), input, no_macs, no_bytes, no_bytes),
    [LAYER_CONV2D] = ROW("conv2d", NA(A_CONV2D), conv2d, conv2d_macs, no_bytes, conv2d_scratch),
    [LAYER_MAXPOOL] = ROW("maxpool", NA(A_MAXPOOL), maxpool, no_macs, maxpool_aux, no_bytes),
    [LAYER_AVGPOOL] = ROW("avgpool", NA(A_AVGPOOL), avgpool, no_macs, no_bytes, no_bytes),
    [LAYER_GLOBALAVGPOOL] = ROW("globalavgpool", NONE, globalavgpool, no_macs, no_bytes, no_bytes),
    [LAYER_BATCHNORM] = ROW("batchnorm", NA(A_BATCHNORM), batchnorm, no_macs, batchnorm_aux, no_bytes),
    [LAYER_DENSE] = ROW("dense", NA(A_DENSE), dense, dense_macs, no_bytes, no_bytes),
    [LAYER_RELU] = ROW("relu", NONE, activation, no_macs, no_bytes, no_bytes),
    [LAYER_LEAKYRELU] = ROW("leakyrelu", NA(A_LEAKYRELU), activation, no_macs, no_bytes, no_bytes),
    [LAYER_SIGMOID] = ROW("sigmoid", NONE, activation, no_macs, no_bytes, no_bytes),
    [LAYER_TANH] = ROW("tanh", NONE, activation, no_macs, no_bytes, no_bytes),
    [LAYER_SOFTMAX] = ROW("softmax", NA(A_SOFTMAX), softmax, no_macs, no_bytes, no_bytes),
    [LAYER_ADD] = ROW("add", NONE, add, no_macs, no_bytes, no_bytes),
    [LAYER_CONCAT] = ROW("concat", NA(A_CONCAT), concat, no_macs, no_bytes, no_bytes),
    [LAYER_FLATTEN] = ROW("flatten", NONE, flatten, no_macs, no_bytes, no_bytes),
    [LAYER_DROPOUT] = ROW("dropout", NA(A_DROPOUT), dropout, no_macs, dropout_aux, no_bytes),
    [LAYER_MASK] = ROW("mask", NONE, mask, no_macs, no_bytes, no_bytes),
    [LAYER_ELU] = ROW("elu", NA(A_ELU), eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_SELU] = ROW("selu", NA(A_SELU), eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_HARDSIGMOID] = ROW("hardsigmoid", NA(A_HARDSIGMOID), eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_CLIP] = ROW("clip", NA(A_CLIP), eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_PRELU] = ROW("prelu", NA(A_PRELU), prelu, no_macs, no_bytes, no_bytes),
    [LAYER_GLOBALMAXPOOL] = ROW("globalmaxpool", NONE, globalmaxpool, no_macs, globalmaxpool_aux, no_bytes),
    [LAYER_LOGSOFTMAX] = ROW("logsoftmax", NA(A_SOFTMAX), softmax, no_macs, no_bytes, no_bytes),
    [LAYER_RESHAPE] = ROW("reshape", NA(A_RESHAPE), reshape, no_macs, no_bytes, no_bytes),
    [LAYER_TRANSPOSE] = ROW("transpose", NA(A_TRANSPOSE), transpose, no_macs, no_bytes, no_bytes),
    [LAYER_PAD] = ROW("pad", NA(A_PAD), pad, no_macs, no_bytes, no_bytes),
    [LAYER_BINARY] = ROW("binary", NA(A_BINARY), binary, no_macs, no_bytes, no_bytes),
    [LAYER_MATMUL] = ROW("matmul", NA(A_MATMUL), matmul, matmul_macs, no_bytes, no_bytes),
    [LAYER_CONVTRANSPOSE] =
        ROW("convtranspose", NA(A_CONVTRANSPOSE), convtranspose, convtranspose_macs, no_bytes, convtranspose_scratch),
    [LAYER_CONSTANT] = ROW("constant", NA(A_CONSTANT), constant, no_macs, no_bytes, no_bytes),
    [LAYER_HARDSWISH] = ROW("hardswish", NONE, eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_SQRT] = ROW("sqrt", NONE, eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_ERF] = ROW("erf", NONE, eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_POW] = ROW("pow", NA(A_POW), eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_REDUCEMEAN] = ROW("reducemean", NA(A_REDUCEMEAN), reducemean, no_macs, no_bytes, no_bytes),
    [LAYER_RESIZE] = ROW("resize", NA(A_RESIZE), resize, no_macs, no_bytes, resize_scratch),
    [LAYER_EMBEDDING] = ROW("embedding", NA(A_EMBEDDING), embedding, no_macs, no_bytes, no_bytes),
    [LAYER_RNN] = ROW("rnn", NA(A_RNN), recurrent, recurrent_macs, recurrent_aux, recurrent_scratch),
    [LAYER_LSTM] = ROW("lstm", NA(A_LSTM), recurrent, recurrent_macs, recurrent_aux, recurrent_scratch),
    [LAYER_GRU] = ROW("gru", NA(A_GRU), recurrent, recurrent_macs, recurrent_aux, recurrent_scratch),
};

layer_kind layer_kind_from_name(const char *name) {
    for (int k = 0; k < LAYER_KIND_COUNT; k++)
        if (!strcmp(LAYER_OPS[k].name, name)) return (layer_kind)k;
    return LAYER_KIND_COUNT;
}

int64_t no_macs(const ts_model *m, const layer *l) {
    (void)m;
    (void)l;
    return 0;
}

size_t no_bytes(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    (void)m;
    (void)l;
    (void)n;
    return 0;
}

ts_status expect_image_input(ts_ctx *ctx, const ts_model *m, const layer *l, const char *source, ts_shape *in) {
    if (l->ninputs != 1)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: %s '%s' takes exactly one input, got %d", source, l->line,
                       LAYER_OPS[l->kind].name, l->name, l->ninputs);
    *in = *input_shape(m, l, 0);
    if (in->ndim != 3)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s' needs a CxHxW input, but '%s' outputs %d-d", source, l->line,
                       LAYER_OPS[l->kind].name, l->name, m->layers[l->inputs[0]].name, in->ndim);
    return TS_OK;
}

const char *shape_text(const ts_shape *s, char *buf, size_t cap) {
    size_t len = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < s->ndim && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%lld", i ? "x" : "", (long long)s->dims[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
    return buf;
}

ts_status expect_one_input(ts_ctx *ctx, const layer *l, const char *source) {
    if (l->ninputs != 1)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: %s '%s' takes exactly one input, got %d", source, l->line,
                       LAYER_OPS[l->kind].name, l->name, l->ninputs);
    return TS_OK;
}
