/* The layer kinds table: adding a kind means adding a row here, and the
 * static_assert fails until every kind has one. A kind whose forward branches on
 * values, indexes by them or calls libm on them also needs a constant-time path
 * (ctx->constant_time, ops.h's *_ct kernels, docs/security.md). */
#include "layers.h"

#include <stdio.h>
#include <string.h>

_Static_assert(LAYER_KIND_COUNT == 31, "add the new layer kind to LAYER_OPS");

#define ROW(name, fn, macs, aux, scratch) {name, fn##_infer, fn##_forward, fn##_backward, macs, aux, scratch}

const layer_ops LAYER_OPS[LAYER_KIND_COUNT] = {
    [LAYER_INPUT] = ROW("input", input, no_macs, no_bytes, no_bytes),
    [LAYER_CONV2D] = ROW("conv2d", conv2d, conv2d_macs, no_bytes, conv2d_scratch),
    [LAYER_MAXPOOL] = ROW("maxpool", maxpool, no_macs, maxpool_aux, no_bytes),
    [LAYER_AVGPOOL] = ROW("avgpool", avgpool, no_macs, no_bytes, no_bytes),
    [LAYER_GLOBALAVGPOOL] = ROW("globalavgpool", globalavgpool, no_macs, no_bytes, no_bytes),
    [LAYER_BATCHNORM] = ROW("batchnorm", batchnorm, no_macs, batchnorm_aux, no_bytes),
    [LAYER_DENSE] = ROW("dense", dense, dense_macs, no_bytes, no_bytes),
    [LAYER_RELU] = ROW("relu", activation, no_macs, no_bytes, no_bytes),
    [LAYER_LEAKYRELU] = ROW("leakyrelu", activation, no_macs, no_bytes, no_bytes),
    [LAYER_SIGMOID] = ROW("sigmoid", activation, no_macs, no_bytes, no_bytes),
    [LAYER_TANH] = ROW("tanh", activation, no_macs, no_bytes, no_bytes),
    [LAYER_SOFTMAX] = ROW("softmax", softmax, no_macs, no_bytes, no_bytes),
    [LAYER_ADD] = ROW("add", add, no_macs, no_bytes, no_bytes),
    [LAYER_CONCAT] = ROW("concat", concat, no_macs, no_bytes, no_bytes),
    [LAYER_FLATTEN] = ROW("flatten", flatten, no_macs, no_bytes, no_bytes),
    [LAYER_DROPOUT] = ROW("dropout", dropout, no_macs, dropout_aux, no_bytes),
    [LAYER_MASK] = ROW("mask", mask, no_macs, no_bytes, no_bytes),
    [LAYER_ELU] = ROW("elu", eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_SELU] = ROW("selu", eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_HARDSIGMOID] = ROW("hardsigmoid", eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_CLIP] = ROW("clip", eltwise, no_macs, no_bytes, no_bytes),
    [LAYER_PRELU] = ROW("prelu", prelu, no_macs, no_bytes, no_bytes),
    [LAYER_GLOBALMAXPOOL] = ROW("globalmaxpool", globalmaxpool, no_macs, globalmaxpool_aux, no_bytes),
    [LAYER_LOGSOFTMAX] = ROW("logsoftmax", softmax, no_macs, no_bytes, no_bytes),
    [LAYER_RESHAPE] = ROW("reshape", reshape, no_macs, no_bytes, no_bytes),
    [LAYER_TRANSPOSE] = ROW("transpose", transpose, no_macs, no_bytes, no_bytes),
    [LAYER_PAD] = ROW("pad", pad, no_macs, no_bytes, no_bytes),
    [LAYER_BINARY] = ROW("binary", binary, no_macs, no_bytes, no_bytes),
    [LAYER_MATMUL] = ROW("matmul", matmul, matmul_macs, no_bytes, no_bytes),
    [LAYER_CONVTRANSPOSE] = ROW("convtranspose", convtranspose, convtranspose_macs, no_bytes, convtranspose_scratch),
    [LAYER_CONSTANT] = ROW("constant", constant, no_macs, no_bytes, no_bytes),
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
