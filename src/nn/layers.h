/* Per-kind layer functions, gathered into LAYER_OPS by layer_table.c. */
#ifndef TS_NN_LAYERS_H
#define TS_NN_LAYERS_H

#include "nn.h"

#define DECLARE_LAYER(kind)                                                                  \
    ts_status kind##_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source);         \
    ts_status kind##_forward(ts_ctx *ctx, ts_model *m, int li);                              \
    ts_status kind##_backward(ts_ctx *ctx, ts_model *m, int li);

DECLARE_LAYER(input)
DECLARE_LAYER(conv2d)
DECLARE_LAYER(maxpool)
DECLARE_LAYER(avgpool)
DECLARE_LAYER(globalavgpool)
DECLARE_LAYER(batchnorm)
DECLARE_LAYER(dense)
DECLARE_LAYER(activation)
DECLARE_LAYER(softmax)
DECLARE_LAYER(add)
DECLARE_LAYER(concat)
DECLARE_LAYER(flatten)
DECLARE_LAYER(dropout)
DECLARE_LAYER(mask)
DECLARE_LAYER(eltwise)      /* elu, selu, hardsigmoid, clip, hardswish, sqrt, erf, pow */
DECLARE_LAYER(prelu)
DECLARE_LAYER(globalmaxpool)
DECLARE_LAYER(reshape)
DECLARE_LAYER(transpose)
DECLARE_LAYER(pad)
DECLARE_LAYER(binary)
DECLARE_LAYER(matmul)
DECLARE_LAYER(constant)
DECLARE_LAYER(convtranspose)
DECLARE_LAYER(reducemean)
DECLARE_LAYER(resize)
DECLARE_LAYER(embedding)
DECLARE_LAYER(recurrent)   /* rnn, lstm, gru */

int64_t conv2d_macs(const ts_model *m, const layer *l);
int64_t dense_macs(const ts_model *m, const layer *l);
int64_t matmul_macs(const ts_model *m, const layer *l);
size_t globalmaxpool_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
int64_t no_macs(const ts_model *m, const layer *l);
size_t conv2d_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
int64_t convtranspose_macs(const ts_model *m, const layer *l);
size_t convtranspose_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
size_t maxpool_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
size_t batchnorm_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
size_t dropout_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
size_t no_bytes(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
size_t resize_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
/* The kernel parameters of rnn/lstm/gru layer l for a batch of n (its input's steps
 * and features, its cell, directions, output kind). */
rnn_params recurrent_params(const ts_model *m, const layer *l, int n);
int64_t recurrent_macs(const ts_model *m, const layer *l);
size_t recurrent_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
size_t recurrent_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n);

/* Batch norm li and the ReLU r that is its only consumer, as one training pass
 * (exec.c); only where batchnorm_relu_fusable. */
int batchnorm_relu_fusable(const ts_ctx *ctx, const ts_model *m, int li);
ts_status batchnorm_relu_forward(ts_ctx *ctx, ts_model *m, int li, int r);
/* Inference on a channels-last input into layer to's output (li, or its ReLU: fused). */
ts_status batchnorm_cl_forward(ts_ctx *ctx, ts_model *m, int li, int to);
ts_status batchnorm_relu_backward(ts_ctx *ctx, ts_model *m, int li, int r);

/* Shared shape helpers */
ts_status expect_image_input(ts_ctx *ctx, const ts_model *m, const layer *l, const char *source, ts_shape *in);
conv2d_params layer_conv_params(const ts_model *m, const layer *l, int n);
conv2d_params layer_conv_geometry(const layer *l, int n, int c, int h, int w, int k);
pool2d_params layer_pool_params(const ts_model *m, const layer *l, int n);
static inline const ts_shape *input_shape(const ts_model *m, const layer *l, int k) {
    return &m->layers[l->inputs[k]].out;
}
/* "3x4x5" into buf (truncated to cap), for messages; returns buf. */
const char *shape_text(const ts_shape *s, char *buf, size_t cap);
/* Fails unless layer l has exactly one input. */
ts_status expect_one_input(ts_ctx *ctx, const layer *l, const char *source);

#endif
