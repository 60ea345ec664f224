/* Backend dispatch: what the layers call. Each ops_* function runs the oneDNN kernel
 * when ctx->backend == TS_BACKEND_DNNL and oneDNN supports the case, else the
 * reference kernel. The choice depends only on (backend, params), so a forward and
 * its backward always take the same path. With ctx->constant_time (inference only)
 * it is never oneDNN: the *_ct variant where there is one, else the reference.
 * Returns TS_OK or an error on ctx. */
#ifndef TS_OPS_DISPATCH_H
#define TS_OPS_DISPATCH_H

#include "ops.h"

/* Scratch (bytes) the caller must provide to ops_conv2d_* for these params. */
size_t ops_conv2d_scratch_size(ts_ctx *ctx, const conv2d_params *p);
ts_status ops_conv2d_forward(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                             const float *bias, void *scratch);
/* Inference with batch norm folded into w/bias by the caller: oneDNN's inference
 * convolution with act (ReLU, ReLU6, SiLU, ...) as a post-op, and with act.residual
 * the residual added before it. Only when ops_fusion_enabled. */
int ops_fusion_enabled(const ts_ctx *ctx);
ts_status ops_conv2d_forward_fused(ts_ctx *ctx, const conv2d_params *p, float *out /* (N,K,OH,OW) */,
                                   const float *in /* (N,C,H,W) */, const float *w /* (K,C/G,KH,KW) */,
                                   const float *bias /* (K) */, conv_act act,
                                   const float *residual /* (N,K,OH,OW) when act.residual, else NULL */,
                                   void *scratch);
ts_status ops_conv2d_backward_data(ts_ctx *ctx, const conv2d_params *p, float *din, const float *dout,
                                   const float *w, void *scratch);
ts_status ops_conv2d_backward_weights(ts_ctx *ctx, const conv2d_params *p, float *dw, float *dbias,
                                      const float *dout, const float *in, void *scratch);
/* Both: weight (and bias) gradients, then din unless it is NULL. */
ts_status ops_conv2d_backward(ts_ctx *ctx, const conv2d_params *p, float *din /* (N,C,H,W) or NULL */,
                              float *dw /* (K,C/G,KH,KW) */, float *dbias /* (K) or NULL */,
                              const float *dout /* (N,K,OH,OW) */, const float *in /* (N,C,H,W) */,
                              const float *w /* (K,C/G,KH,KW) */, void *scratch);

/* Max-pool workspace (bytes): argmax indices for ref, oneDNN's workspace otherwise. */
size_t ops_maxpool2d_workspace_size(ts_ctx *ctx, const pool2d_params *p);
/* ws may be NULL at inference (no backward will follow). */
ts_status ops_maxpool2d_forward(ts_ctx *ctx, const pool2d_params *p, float *out, void *ws, const float *in);
ts_status ops_maxpool2d_backward(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout, const void *ws);
ts_status ops_avgpool2d_forward(ts_ctx *ctx, const pool2d_params *p, float *out, const float *in);
ts_status ops_avgpool2d_backward(ts_ctx *ctx, const pool2d_params *p, float *din, const float *dout);

ts_status ops_batchnorm_forward_train(ts_ctx *ctx, const bn_params *p, float *out, float *mean, float *var,
                                      const float *in, const float *gamma, const float *beta);
ts_status ops_batchnorm_forward_infer(ts_ctx *ctx, const bn_params *p, float *out, const float *in,
                                      const float *gamma, const float *beta, const float *mean, const float *var);
ts_status ops_batchnorm_backward(ts_ctx *ctx, const bn_params *p, float *din, float *dgamma, float *dbeta,
                                 const float *dout, const float *in, const float *gamma, const float *mean,
                                 const float *var);

/* Batch norm and the ReLU after it in one pass, in training (batchnorm_vec.c): the
 * forward writes max(0, y); the backward takes that output and d(loss)/d(that
 * output). Only where ops_batchnorm_relu_fusable (the oneDNN backend, images). */
int ops_batchnorm_relu_fusable(const ts_ctx *ctx, const bn_params *p);
ts_status ops_batchnorm_relu_forward_train(ts_ctx *ctx, const bn_params *p, float *out /* (N,C,S) */,
                                           float *mean /* (C) */, float *var /* (C) */, const float *in /* (N,C,S) */,
                                           const float *gamma /* (C) */, const float *beta /* (C) */);
ts_status ops_batchnorm_relu_backward(ts_ctx *ctx, const bn_params *p, float *din /* (N,C,S) */, float *dgamma,
                                      float *dbeta, const float *dout /* (N,C,S) */, const float *in /* (N,C,S) */,
                                      const float *relu_out /* (N,C,S) */, const float *gamma, const float *mean,
                                      const float *var);

/* c (N,c_count,m,p) = a (N,a_count,m,k) b (b_count,k,p) with q's broadcasting */
ts_status ops_matmul_forward(ts_ctx *ctx, const matmul_params *q, float *c, const float *a, const float *b);
ts_status ops_dense_forward(ts_ctx *ctx, int n, int in_f, int out_f, float *out, const float *in, const float *w,
                            const float *bias);
ts_status ops_dense_backward_data(ts_ctx *ctx, int n, int in_f, int out_f, float *din, const float *dout,
                                  const float *w);
ts_status ops_dense_backward_weights(ts_ctx *ctx, int n, int in_f, int out_f, float *dw, float *dbias,
                                     const float *dout, const float *in);

/* Softmax (log_softmax 0) or log-softmax over the middle axis of (outer, len, inner):
 * oneDNN's, or the reference (constant-time mode: softmax_axis_forward_ct). */
ts_status ops_softmax_forward(ts_ctx *ctx, size_t outer, size_t len, size_t inner, int log_softmax,
                              float *out /* (outer,len,inner) */, const float *in /* (outer,len,inner) */);
ts_status ops_eltwise_forward(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *out,
                              const float *in);
ts_status ops_eltwise_backward(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *din,
                               const float *dout, const float *in, const float *out);

/* Recurrent layers (rnn, lstm, gru; ops.h's rnn_params). Training workspace (bytes):
 * enough for either kernel, whatever the backend now. The forward sets *on_dnnl to
 * how it ran (0 the reference, 1 oneDNN in f32, 2 oneDNN in bf16), which can depend on
 * the batch (a row of padding only runs on the reference), and its backward must be
 * given that value, the same ws and the same inputs (and the same bf16 setting). keep
 * (a step mask) and constant-time mode always take the reference. */
size_t ops_rnn_workspace_size(ts_ctx *ctx, const rnn_params *p);
ts_status ops_rnn_forward(ts_ctx *ctx, const rnn_params *p, const float *x /* (N,T,F) */,
                          const int32_t *len /* (N) or NULL */, const float *h0 /* (N, rnn_state_size) or NULL */,
                          const float *w, const float *b, const float *keep /* (T,D,H) or NULL */, float *y,
                          void *ws /* NULL at inference */, size_t ws_bytes, float *scratch, int *on_dnnl);
ts_status ops_rnn_backward(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                           const float *w, const float *b, const float *dy, const void *ws, size_t ws_bytes,
                           int on_dnnl, float *dx, float *dh0, float *dw, float *db, float *scratch);

#endif
