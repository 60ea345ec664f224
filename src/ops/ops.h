/* Kernels. Each op has a plain-C reference (`*_ref`, in <op>_ref.c: the truth, the
 * fallback, the base of constant-time mode) and, where oneDNN covers it, a fast
 * version (`*_dnnl`, in <op>_dnnl.c) with the identical signature plus the context.
 * The `ops_*` dispatchers (dispatch.c) pick one according to ctx->backend.
 *
 * All tensors are float32, contiguous, batch first (NCHW for images).
 * Backward kernels OVERWRITE their outputs (din, dw, db, ...); the graph code
 * accumulates when a tensor feeds several layers.
 * Kernels that need scratch memory say how much via *_scratch_size and take it from
 * the caller; they never allocate (except oneDNN's own primitive creation).
 */
#ifndef TS_OPS_H
#define TS_OPS_H

#include "../core/core.h"

/* ------------------------------------------------------------ convolution */

typedef struct conv2d_params {
    int n;          /* batch */
    int c, h, w;    /* input channels, height, width */
    int k;          /* output channels */
    int kh, kw;     /* kernel size */
    int sh, sw;     /* stride */
    int ph, pw;     /* zero padding, same on both sides */
    int dh, dw;     /* dilation (1 = dense) */
    int groups;     /* c and k divisible by groups; groups == c == k is depthwise */
    int oh, ow;     /* output size, filled by conv2d_params_finish */
} conv2d_params;

/* Computes oh/ow; returns 0 if the configuration is invalid (non-positive output,
 * channels not divisible by groups, ...). */
int conv2d_params_finish(conv2d_params *p);

/* Weights are (K, C/groups, KH, KW) as PyTorch; bias (K) may be NULL. */
size_t conv2d_scratch_size(const conv2d_params *p); /* bytes, for the ref kernels */
void conv2d_forward_ref(const conv2d_params *p, float *out /* (N,K,OH,OW) */,
                        const float *in /* (N,C,H,W) */, const float *w /* (K,C/G,KH,KW) */,
                        const float *bias /* (K) or NULL */, float *scratch, int nthreads);
void conv2d_backward_data_ref(const conv2d_params *p, float *din /* (N,C,H,W) */,
                              const float *dout /* (N,K,OH,OW) */, const float *w /* (K,C/G,KH,KW) */,
                              float *scratch, int nthreads);
void conv2d_backward_weights_ref(const conv2d_params *p, float *dw /* (K,C/G,KH,KW) */,
                                 float *dbias /* (K) or NULL */, const float *dout /* (N,K,OH,OW) */,
                                 const float *in /* (N,C,H,W) */, float *scratch, int nthreads);

/* ---------------------------------------------------------------- pooling */

typedef enum pool_kind { POOL_MAX = 0, POOL_AVG = 1 } pool_kind;

typedef struct pool2d_params {
    int n, c, h, w;
    int kh, kw, sh, sw, ph, pw;
    int ceil_mode;          /* PyTorch ceil_mode */
    int count_include_pad;  /* avg only: divide by full window (PyTorch default 1) */
    int oh, ow;             /* filled by pool2d_params_finish */
} pool2d_params;

int pool2d_params_finish(pool2d_params *p);

/* Max pooling records, per output element, the flat input index (h*W+w) of its max
 * within its (n,c) plane in `argmax`; backward scatters through it. Ties pick the
 * first in row-major window order, as PyTorch. */
void maxpool2d_forward_ref(const pool2d_params *p, float *out /* (N,C,OH,OW) */,
                           int32_t *argmax /* (N,C,OH,OW) or NULL at inference */,
                           const float *in /* (N,C,H,W) */, int nthreads);
void maxpool2d_backward_ref(const pool2d_params *p, float *din /* (N,C,H,W) */,
                            const float *dout /* (N,C,OH,OW) */, const int32_t *argmax, int nthreads);
void avgpool2d_forward_ref(const pool2d_params *p, float *out, const float *in, int nthreads);
void avgpool2d_backward_ref(const pool2d_params *p, float *din, const float *dout, int nthreads);

/* ------------------------------------------------------------- batch norm */

typedef struct bn_params {
    int n, c, spatial; /* spatial = H*W (1 after a dense layer) */
    float eps;
} bn_params;

/* Training: computes batch mean and biased variance per channel into mean/var and
 * normalizes with them. Running statistics are updated by the caller. */
void batchnorm_forward_train_ref(const bn_params *p, float *out /* (N,C,S) */, float *mean /* (C) */,
                                 float *var /* (C), biased */, const float *in /* (N,C,S) */,
                                 const float *gamma /* (C) */, const float *beta /* (C) */, int nthreads);
/* Inference: normalizes with the given (running) mean and variance. */
void batchnorm_forward_infer_ref(const bn_params *p, float *out, const float *in, const float *gamma,
                                 const float *beta, const float *mean, const float *var, int nthreads);
/* Backward of the training forward (batch statistics). */
void batchnorm_backward_ref(const bn_params *p, float *din /* (N,C,S) */, float *dgamma /* (C) */,
                            float *dbeta /* (C) */, const float *dout /* (N,C,S) */, const float *in,
                            const float *gamma, const float *mean, const float *var, int nthreads);

/* ----------------------------------------------------------- dense layer */

/* y = x W^T + b, W is (OUT, IN) as PyTorch's nn.Linear. */
void dense_forward_ref(int n, int in_f, int out_f, float *out /* (N,OUT) */, const float *in /* (N,IN) */,
                       const float *w /* (OUT,IN) */, const float *bias /* (OUT) or NULL */, int nthreads);
void dense_backward_data_ref(int n, int in_f, int out_f, float *din /* (N,IN) */, const float *dout /* (N,OUT) */,
                             const float *w /* (OUT,IN) */, int nthreads);
void dense_backward_weights_ref(int n, int in_f, int out_f, float *dw /* (OUT,IN) */, float *dbias /* (OUT) or NULL */,
                                const float *dout /* (N,OUT) */, const float *in /* (N,IN) */, int nthreads);

/* ------------------------------------------------------------ elementwise */

typedef enum eltwise_kind {
    ELTWISE_RELU = 0,
    ELTWISE_LEAKY_RELU = 1, /* alpha = negative slope */
    ELTWISE_SIGMOID = 2,
    ELTWISE_TANH = 3,
    ELTWISE_COUNT
} eltwise_kind;

void eltwise_forward_ref(eltwise_kind kind, float alpha, size_t count, float *out, const float *in, int nthreads);
/* `in` is the forward input and `out` the forward output (either may be used). */
void eltwise_backward_ref(eltwise_kind kind, float alpha, size_t count, float *din, const float *dout,
                          const float *in, const float *out, int nthreads);

/* ---------------------------------------------------------- other (ref only) */

/* Softmax over the last axis of a (rows, cols) matrix, max-subtracted. */
void softmax_forward_ref(size_t rows, size_t cols, float *out, const float *in);
void softmax_backward_ref(size_t rows, size_t cols, float *din, const float *dout, const float *out);

/* Global average pool: (N,C,S) -> (N,C). */
void global_avgpool_forward_ref(int n, int c, int spatial, float *out, const float *in);
void global_avgpool_backward_ref(int n, int c, int spatial, float *din, const float *dout);

/* Concatenation along channels of per-sample blocks: input i has n rows of sizes[i]
 * floats; out rows are the concatenation. Backward splits. */
void concat_forward_ref(int n, int count, const size_t *sizes, float *out, const float *const *ins);
void concat_backward_ref(int n, int count, const size_t *sizes, float *const *dins, const float *dout);

/* Dropout (inverted): mask holds 0 or 1/(1-p); out = in * mask. */
void dropout_apply_ref(size_t count, float *out, const float *in, const float *mask);

/* Softmax cross-entropy with label smoothing eps (PyTorch semantics: target
 * distribution (1-eps) one-hot + eps/classes uniform), mean over the batch.
 * Writes d(loss)/d(logits) to dlogits when not NULL. Returns the loss. */
float softmax_xent_ref(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                       float smoothing, float *dlogits /* (N,classes) or NULL */);

/* C = alpha * op(A) op(B) + beta * C, row-major, op = transpose when trans != 0.
 * A is (M,K) after op, B (K,N) after op, C (M,N). The ref conv and dense kernels
 * build on this; it is blocked and threaded, not naive. */
void gemm_ref(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
              int ldb, float beta, float *c, int ldc, int nthreads);

/* --------------------------------------------------------------- oneDNN */

/* Same contracts as the _ref versions. Return TS_OK, or TS_EUNSUPPORTED when oneDNN
 * has no implementation for the case (the dispatcher then falls back to _ref), or an
 * error recorded on ctx. The ctx owns the engine and stream (ctx->dnnl). */
ts_status conv2d_forward_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                              const float *bias);
ts_status conv2d_backward_data_dnnl(ts_ctx *ctx, const conv2d_params *p, float *din, const float *dout,
                                    const float *w);
ts_status conv2d_backward_weights_dnnl(ts_ctx *ctx, const conv2d_params *p, float *dw, float *dbias,
                                       const float *dout, const float *in);
/* oneDNN max pooling keeps its own workspace; `ws` must hold pool2d_workspace_size_dnnl bytes. */
size_t maxpool2d_workspace_size_dnnl(ts_ctx *ctx, const pool2d_params *p);
ts_status maxpool2d_forward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *out, void *ws /* or NULL */,
                                 const float *in);
ts_status maxpool2d_backward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout,
                                  const void *ws);
ts_status avgpool2d_forward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *out, const float *in);
ts_status avgpool2d_backward_dnnl(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout);
ts_status batchnorm_forward_train_dnnl(ts_ctx *ctx, const bn_params *p, float *out, float *mean, float *var,
                                       const float *in, const float *gamma, const float *beta);
ts_status batchnorm_forward_infer_dnnl(ts_ctx *ctx, const bn_params *p, float *out, const float *in,
                                       const float *gamma, const float *beta, const float *mean, const float *var);
ts_status batchnorm_backward_dnnl(ts_ctx *ctx, const bn_params *p, float *din, float *dgamma, float *dbeta,
                                  const float *dout, const float *in, const float *gamma, const float *mean,
                                  const float *var);
ts_status dense_forward_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *out, const float *in, const float *w,
                             const float *bias);
ts_status dense_backward_data_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *din, const float *dout,
                                   const float *w);
ts_status dense_backward_weights_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *dw, float *dbias,
                                      const float *dout, const float *in);
ts_status eltwise_forward_dnnl(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *out,
                               const float *in);
ts_status eltwise_backward_dnnl(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *din,
                                const float *dout, const float *in, const float *out);
/* Frees the engine/stream held in ctx->dnnl (called by ts_ctx_free). */
void ops_dnnl_release(void *dnnl);

#endif
