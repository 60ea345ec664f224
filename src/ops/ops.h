/* Kernels. Each op has a plain-C reference (`*_ref`, in <op>_ref.c: the truth, the
 * fallback, the base of constant-time mode) and, where oneDNN covers it, a fast
 * version (`*_dnnl`, in <op>_dnnl.c) with the identical signature plus the context.
 * Inference ops whose reference looks at values (max, select, exp) also have a
 * constant-time variant (`*_ct`, next to the reference, built from ct_math.h). The `ops_*` dispatchers (dispatch.c) pick one
 * according to ctx->constant_time and ctx->backend.
 *
 * All tensors are float32, contiguous, batch first (NCHW for images).
 * Backward kernels OVERWRITE their outputs (din, dw, db, ...); the graph code
 * accumulates when a tensor feeds several layers.
 * Kernels that need scratch memory say how much via *_scratch_size and take it from
 * the caller; they never allocate (except oneDNN's own primitive creation).
 */
#ifndef TS_OPS_H
#define TS_OPS_H

#include "core/core.h"

/* ------------------------------------------------------------ convolution */

typedef struct conv2d_params {
    int n;          /* batch */
    int c, h, w;    /* input channels, height, width */
    int k;          /* output channels */
    int kh, kw;     /* kernel size */
    int sh, sw;     /* stride */
    int ph, pw;     /* zero padding at the top and left */
    int dh, dw;     /* dilation (1 = dense) */
    int groups;     /* c and k divisible by groups; groups == c == k is depthwise */
    int oh, ow;     /* output size, filled by conv2d_params_finish */
    int pbh, pbw;   /* zero padding at the bottom and right (= ph, pw unless asymmetric, as ONNX pads) */
    /* The input (and its gradient) / the output (and its gradient) in oneDNN's nChw16c
     * instead of NCHW: sample i, channel block b, position s, lane j at
     * ((i * CB + b) * H*W + s) * 16 + j, CB = ceil(C/16); the lanes past c (k) in the
     * last block are zeros. Training keeps such tensors blocked between layers
     * (exec_blocked.c). oneDNN takes them as they are (and writes zeros there); the
     * reference kernels run on NCHW copies (dispatch.c). */
    int src_blocked, dst_blocked;
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

/* out[n,c,:] += bias[c]; and dbias[c] = sum over n and the plane of dout[n,c,:]
 * (in double, fixed order). A transposed convolution's bias (its data passes are
 * conv2d's backward data and forward, which have no bias). */
void channel_bias_add_ref(int n, int c, size_t spatial, float *out /* (N,C,S) */, const float *bias /* (C) */,
                          int nthreads);
void channel_bias_grad_ref(int n, int c, size_t spatial, float *dbias /* (C) */, const float *dout /* (N,C,S) */,
                           int nthreads);

/* ---------------------------------------------------------------- pooling */

typedef enum pool_kind { POOL_MAX = 0, POOL_AVG = 1 } pool_kind;

/* Output size as ATen (and ONNX): OH = floor((H + ph + pbh - dh*(kh-1) - 1) / sh) + 1,
 * ceil instead of floor with ceil_mode, where the last window must then start inside
 * the input or the top padding. Each padding is less than the kernel's extent; a
 * window that still covers no input gives -inf (max, no gradient) or 0 (average). */
typedef struct pool2d_params {
    int n, c, h, w;
    int kh, kw, sh, sw, ph, pw;  /* ph, pw: padding at the top and left */
    int ceil_mode;          /* PyTorch ceil_mode */
    int count_include_pad;  /* avg only: divide by the window clipped to the padded
                               input [-ph, H+pbh) (1, PyTorch default), or by the
                               number of real inputs in it (0) */
    int oh, ow;             /* filled by pool2d_params_finish */
    int pbh, pbw;           /* padding at the bottom and right (= ph, pw unless asymmetric) */
    int dh, dw;             /* dilation, >= 1; max pooling only (average needs 1) */
    int nhwc;               /* inference: in and out channels-last, (N,H,W,C) and (N,OH,OW,C) */
    int blocked;            /* max pooling in training: in, out and their gradients in nChw16c
                               (conv2d_params.src_blocked, padded alike), oneDNN only */
} pool2d_params;

int pool2d_params_finish(pool2d_params *p);

/* Max pooling records, per output element, the flat input index (h*W+w) of its max
 * within its (n,c) plane in `argmax` (-1 for a window with no input); backward
 * scatters through it. Ties pick the first in row-major window order, as PyTorch. */
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
/* Synchronized batch norm (batchnorm_ref.c): per-channel sums over this rank's samples
 * (center NULL: of x; else of (x - center)^2), the backward's sums of dy and of
 * dy * xhat, and dx from the sums over every rank (count: N*S summed over the ranks). */
void batchnorm_sums_ref(const bn_params *p, const float *in /* (N,C,S) */, const float *center /* (C) or NULL */,
                        float *out /* (C) */, int nthreads);
void batchnorm_backward_sums_ref(const bn_params *p, float *sdy /* (C) */, float *sdyx /* (C) */,
                                 const float *dout /* (N,C,S) */, const float *in /* (N,C,S) */,
                                 const float *mean /* (C) */, const float *var /* (C) */, int nthreads);
void batchnorm_backward_apply_ref(const bn_params *p, float *din /* (N,C,S) */, const float *dout /* (N,C,S) */,
                                  const float *in /* (N,C,S) */, const float *gamma /* (C) */,
                                  const float *mean /* (C) */, const float *var /* (C) */, const float *sdy /* (C) */,
                                  const float *sdyx /* (C) */, double count, int nthreads);
void batchnorm_forward_infer_ref(const bn_params *p, float *out, const float *in, const float *gamma,
                                 const float *beta, const float *mean, const float *var, int nthreads);
/* Backward of the training forward (batch statistics). */
void batchnorm_backward_ref(const bn_params *p, float *din /* (N,C,S) */, float *dgamma /* (C) */,
                            float *dbeta /* (C) */, const float *dout /* (N,C,S) */, const float *in,
                            const float *gamma, const float *mean, const float *var, int nthreads);

/* The same on plain tensors, vectorized (batchnorm_vec.c): the oneDNN backend's path
 * for images. With relu the forward writes max(0, y) and the backward takes that
 * output as relu_out (NULL without) and masks dout where it is zero. */
/* Inference on channels-last rows: (N*spatial, C) in and out (p->n * p->spatial rows),
 * then ReLU when `relu`. */
void batchnorm_infer_rows(const bn_params *p, int relu, float *out, const float *in, const float *gamma,
                          const float *beta, const float *mean, const float *var, int nthreads);
/* The same for channels [c0, c0 + cp) of a (N, C, S) output (p->c = C), or channels-last
 * (N*S, C) rows when `cl`, from a tensor of those channels alone, (N, cp, S) or (N*S, cp):
 * a part of a concatenation normalized where it lies (DenseNet's concat -> batch norm in
 * fused inference). gamma, beta, mean and var are indexed by output channel. */
void batchnorm_infer_part(const bn_params *p, int relu, int cl, int64_t c0, int64_t cp,
                          float *out /* (N,C,S) or (N*S,C) */, const float *in /* (N,cp,S) or (N*S,cp) */,
                          const float *gamma /* (C) */, const float *beta /* (C) */, const float *mean /* (C) */,
                          const float *var /* (C) */, int nthreads);
void batchnorm_forward_train_vec(const bn_params *p, float *out /* (N,C,S) */, float *mean /* (C) */,
                                 float *var /* (C), biased */, const float *in /* (N,C,S) */,
                                 const float *gamma /* (C) */, const float *beta /* (C) */, int relu, int nthreads);
void batchnorm_backward_vec(const bn_params *p, float *din /* (N,C,S) */, float *dgamma /* (C) */,
                            float *dbeta /* (C) */, const float *dout /* (N,C,S) */, const float *in /* (N,C,S) */,
                            const float *relu_out /* (N,C,S) or NULL */, const float *gamma /* (C) */,
                            const float *mean /* (C) */, const float *var /* (C) */, int nthreads);
/* The same on nChw16c tensors (conv2d_params.src_blocked), for training that keeps
 * activations blocked between layers. C need not be a multiple of 16: the padded
 * channels (CP = C rounded up to 16) are read as any finite values (zeros, as every
 * producer writes them) and written as zeros. part
 * holds (2, N, CP) doubles, each (sample, channel)'s sums, added over the samples in
 * order so that results do not depend on the thread count, then room of 2 CP doubles
 * for up to four (CP) float arrays of per-channel coefficients.
 * Statistics as careful as the plain kernels'. */
#define BN_BLOCKED_PART(n, c) (((size_t)2 * (size_t)(n) + 2) * (((size_t)(c) + 15) / 16 * 16))
void batchnorm_forward_train_blocked(const bn_params *p, float *out /* nChw16c */, float *mean /* (C) */,
                                     float *var /* (C), biased */, const float *in /* nChw16c */,
                                     const float *gamma /* (C) */, const float *beta /* (C) */, int relu,
                                     double *part /* BN_BLOCKED_PART(N, C) */, int nthreads);
void batchnorm_backward_blocked(const bn_params *p, float *din /* nChw16c */, float *dgamma /* (C) */,
                                float *dbeta /* (C) */, const float *dout /* nChw16c */, const float *in /* nChw16c */,
                                const float *relu_out /* nChw16c or NULL */, const float *gamma /* (C) */,
                                const float *mean /* (C) */, const float *var /* (C) */,
                                double *part /* BN_BLOCKED_PART(N, C) */, int nthreads);

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
    ELTWISE_GELU = 4,       /* x/2 (1 + erf(x/sqrt 2)): no layer of its own; imported GELUs fused (exec.c) */
    ELTWISE_COUNT
} eltwise_kind;

void eltwise_forward_ref(eltwise_kind kind, float alpha, size_t count, float *out, const float *in, int nthreads);
/* `in` is the forward input and `out` the forward output (either may be used). */
void eltwise_backward_ref(eltwise_kind kind, float alpha, size_t count, float *din, const float *dout,
                          const float *in, const float *out, int nthreads);

/* Elementwise functions with attributes (ONNX Elu, Selu, HardSigmoid, Clip), with
 * PyTorch's gradients; reference only. NaN propagates. */
typedef enum unary_kind {
    UNARY_ELU = 0,     /* x > 0 ? x : alpha (exp(x) - 1) */
    UNARY_SELU,        /* x > 0 ? gamma x : gamma alpha (exp(x) - 1) */
    UNARY_HARDSIGMOID, /* max(0, min(1, alpha x + beta)); gradient alpha where 0 < alpha x + beta < 1 */
    UNARY_CLIP,        /* min(max(x, lo), hi); gradient 1 where lo <= x <= hi (torch.clamp) */
    UNARY_HARDSWISH,   /* x max(0, min(1, x/6 + 1/2)) as ONNX; gradient torch's: 0 below -3, 1 above 3, x/3 + 1/2 between */
    UNARY_SQRT,        /* sqrt(x) (NaN below 0); gradient dout / (2 sqrt(x)) */
    UNARY_ERF,         /* erf(x); gradient 2/sqrt(pi) exp(-x^2) */
    UNARY_POW,         /* x^alpha (powf); gradient alpha x^(alpha-1), 0 when alpha is 0 (torch.pow) */
    UNARY_COUNT
} unary_kind;

typedef struct unary_params {
    unary_kind kind;
    float alpha, beta, gamma; /* as above; unused ones are ignored */
    float lo, hi;             /* clip bounds, -INFINITY / INFINITY when absent */
} unary_params;

void unary_forward_ref(const unary_params *p, size_t count, float *out /* (count) */, const float *in /* (count) */,
                       int nthreads);
void unary_backward_ref(const unary_params *p, size_t count, float *din /* (count) */, const float *dout /* (count) */,
                        const float *in /* (count), forward input */, int nthreads);

/* Mean over the per-sample axes whose bits are set in axes_mask (bit d: axis d), the
 * output keeping those axes with size 1 (ONNX ReduceMean, keepdims=1). Summed in
 * double in a fixed order; no branch on values, so it also serves constant-time
 * inference. The backward writes every din element (dout / count). */
void reducemean_forward_ref(int n, int ndim, const int64_t *dims /* (ndim) */, unsigned axes_mask,
                            float *out /* (N, dims with the reduced axes 1) */, const float *in /* (N, dims) */,
                            int nthreads);
void reducemean_backward_ref(int n, int ndim, const int64_t *dims /* (ndim) */, unsigned axes_mask,
                             float *din /* (N, dims) */, const float *dout /* (N, dims with the reduced axes 1) */,
                             int nthreads);

/* PReLU: out = in > 0 ? in : slope * in, slope broadcast over each sample. dims is
 * the per-sample shape (ndim axes), sdims the slope's shape right-aligned to it
 * (ndim axes, each 1 or equal to dims). */
void prelu_forward_ref(int n, int ndim, const int64_t *dims, const int64_t *sdims, float *out /* (N,dims) */,
                       const float *in /* (N,dims) */, const float *slope /* (sdims) */, int nthreads);
/* din (may be NULL) = in > 0 ? dout : slope * dout; dslope (may be NULL) = the sum
 * of (in > 0 ? 0 : in * dout) over the batch and the broadcast axes, in a fixed order. */
void prelu_backward_ref(int n, int ndim, const int64_t *dims, const int64_t *sdims, float *din /* (N,dims) */,
                        float *dslope /* (sdims) */, const float *dout /* (N,dims) */, const float *in /* (N,dims) */,
                        const float *slope /* (sdims) */, int nthreads);

/* ---------------------------------------------------------- other (ref only) */

/* Softmax over the last axis of a (rows, cols) matrix, max-subtracted. */
void softmax_forward_ref(size_t rows, size_t cols, float *out, const float *in);
void softmax_backward_ref(size_t rows, size_t cols, float *din, const float *dout, const float *out);

/* Softmax or log-softmax (log_softmax != 0) over the middle axis of (outer, len,
 * inner): each of the outer*inner lines of len values strided by inner. With
 * inner == 1 and not log_softmax it is softmax_forward_ref. Log-softmax is
 * x - max - log(sum exp(x - max)). Backward takes the forward output: softmax
 * din = y (dy - sum dy y); log-softmax din = dy - exp(y) sum dy. */
void softmax_axis_forward_ref(size_t outer, size_t len, size_t inner, int log_softmax,
                              float *out /* (outer,len,inner) */, const float *in /* (outer,len,inner) */,
                              int nthreads);
void softmax_axis_backward_ref(size_t outer, size_t len, size_t inner, int log_softmax,
                               float *din /* (outer,len,inner) */, const float *dout /* (outer,len,inner) */,
                               const float *out /* (outer,len,inner) */, int nthreads);

/* Global average pool: (N,C,S) -> (N,C). */
/* Sum of x[0..s) in double, in a fixed order (eight interleaved partial sums). */
double sum_f64(const float *x, size_t s);
void global_avgpool_forward_ref(int n, int c, int spatial, float *out, const float *in);
/* The same over a channels-last input in (N,S,C); within an ulp of it. */
void global_avgpool_forward_nhwc(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,S,C) */);
void global_avgpool_backward_ref(int n, int c, int spatial, float *din, const float *dout);
/* Both on nChw16c (training's blocked activations), C padded to 16 in the last block:
 * the same sums as the nhwc functions; the padding's gradient is zero. */
void global_avgpool_forward_blocked16(int n, int c, int spatial, float *out /* (N,C) */,
                                      const float *in /* (N,ceil(C/16),S,16) */);
void global_avgpool_backward_blocked16(int n, int c, int spatial, float *din /* (N,ceil(C/16),S,16) */,
                                       const float *dout /* (N,C) */);

/* Global max pool: (N,C,S) -> (N,C); argmax (N,C) (may be NULL at inference) gets
 * the index in S of the first maximum (NaN propagates, as max pooling). */
void global_maxpool_forward_ref(int n, int c, int spatial, float *out /* (N,C) */, int32_t *argmax /* (N,C) */,
                                const float *in /* (N,C,S) */);
void global_maxpool_backward_ref(int n, int c, int spatial, float *din /* (N,C,S) */, const float *dout /* (N,C) */,
                                 const int32_t *argmax /* (N,C) */);

/* Concatenation along channels of per-sample blocks: input i has n rows of sizes[i]
 * floats; out rows are the concatenation. Backward splits. */
void concat_forward_ref(int n, int count, const size_t *sizes, float *out, const float *const *ins);
void concat_backward_ref(int n, int count, const size_t *sizes, float *const *dins, const float *dout);
/* concat_forward_ref's result on nthreads threads: each copies one contiguous range of
 * out (so a single long row, a channel concat of NCHW samples at batch 1, is split too). */
void concat_forward_par(int n, int count, const size_t *sizes /* (count) */, float *out /* (N, sum sizes) */,
                        const float *const *ins /* count tensors, (N, sizes[i]) */, int nthreads);

/* Dropout (inverted): mask holds 0 or 1/(1-p); out = in * mask. */
void dropout_apply_ref(size_t count, float *out, const float *in, const float *mask);

/* Softmax cross-entropy with label smoothing eps (PyTorch semantics: target
 * distribution (1-eps) one-hot + eps/classes uniform), mean over the batch.
 * Writes d(loss)/d(logits) to dlogits when not NULL. Returns the loss. */
float softmax_xent_ref(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                       float smoothing, float *dlogits /* (N,classes) or NULL */);
/* The same where rows labelled `ignore` add nothing and get a zero gradient, and the
 * mean is over the other rows (PyTorch's ignore_index); *counted (may be NULL) is their
 * number. */
float softmax_xent_ignore_ref(int n, int classes, const float *logits /* (N,classes) */,
                              const int32_t *labels /* (N) */, int32_t ignore, float smoothing,
                              float *dlogits /* (N,classes) or NULL */, int *counted);
/* softmax_xent_ignore_ref on the vector units, rows split over nthreads (xent_vec.c):
 * the same results to float rounding, and the same for any thread count. For wide rows
 * (a translator's or a tagger's vocabulary). */
float softmax_xent_vec(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                       int32_t ignore, float smoothing, float *dlogits /* (N,classes) or NULL */, int *counted,
                       int nthreads);

/* MwT's cohesion and coupling losses of one layer's per-sample masks (mask_loss_ref.c
 * says how): cohesion = 1 - mean cosine of same-label pairs, coupling = mean cosine of
 * different-label pairs, each 0 without such a pair. dmasks, when not NULL, is ADDED
 * the gradient of w_coh * cohesion + w_coup * coupling (so a layer's output gradient
 * can take it in place). work holds mask_pair_loss_work(n, c) doubles. */
size_t mask_pair_loss_work(int n, int c);
void mask_pair_loss_ref(int n, int c, const float *masks /* (N,C) */, const int32_t *labels /* (N) */, float w_coh,
                        float w_coup, float *dmasks /* (N,C) or NULL */, double *work /* mask_pair_loss_work */,
                        double *cohesion, double *coupling);

/* C = alpha * op(A) op(B) + beta * C, row-major, op = transpose when trans != 0.
 * A is (M,K) after op, B (K,N) after op, C (M,N). The ref conv and dense kernels
 * build on this; it is blocked and threaded, not naive. */
void gemm_ref(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
              int ldb, float beta, float *c, int ldc, int nthreads);

/* ------------------------------------------- layout, broadcasting, matmul (ref only) */

/* Axes of the tensors below: a batch axis plus up to TS_MAX_DIMS per-sample axes. */
#define OPS_MAX_RANK (TS_MAX_DIMS + 1)

/* (N, C, S) to oneDNN's nChw16c, (N, ceil(C/16), S, 16), and back. The channels past C
 * in the last block are written as zeros one way and skipped the other. */
void nchw_to_blocked16(int64_t n, int64_t c, int64_t s, float *dst /* (N,ceil(C/16),S,16) */, const float *src /* (N,C,S) */,
                       int nthreads);
void blocked16_to_nchw(int64_t n, int64_t c, int64_t s, float *dst /* (N,C,S) */, const float *src /* (N,ceil(C/16),S,16) */,
                       int nthreads);
/* out (dims, row-major) = in read through element strides: out[i0,...] =
 * in[sum_d i_d * in_strides[d]]. A transpose (strides permuted) or a broadcast copy
 * (some strides 0). rank 1..OPS_MAX_RANK. */
void strided_copy_ref(int rank, const int64_t *dims /* (rank) */, float *out /* (dims) */, const float *in,
                      const int64_t *in_strides /* (rank) */, int nthreads);

/* ONNX Pad of every sample (numpy.pad): per axis d, pads[d] values before and
 * pads[ndim + d] after; a negative pad crops first. Modes: constant (value), reflect
 * (mirror without repeating the edge, periodic past the edge as numpy; an axis of one
 * value repeats it), edge (replicate). The output dims are dims[d] + pads[d] +
 * pads[ndim + d]; the caller checks that each axis keeps at least one input value
 * after cropping. */
typedef enum pad_mode { PAD_CONSTANT = 0, PAD_REFLECT, PAD_EDGE } pad_mode;
void pad_forward_ref(int n, int ndim, const int64_t *dims /* (ndim) */, const int *pads /* (2*ndim) */,
                     pad_mode mode, float value, float *out /* (N, padded dims) */, const float *in /* (N,dims) */,
                     int nthreads);
/* din = the sum of dout over the output positions that read each input value
 * (overwritten; cropped inputs get 0). */
void pad_backward_ref(int n, int ndim, const int64_t *dims, const int *pads, pad_mode mode,
                      float *din /* (N,dims) */, const float *dout /* (N, padded dims) */, int nthreads);

/* Resizing the last two axes (H, W) of every plane, as ONNX Resize (modes nearest and
 * linear) and PyTorch's F.interpolate (nearest, bilinear). Each output index along
 * an axis reads two input indices with weights (resize_taps, from the shapes and
 * attributes only): out[y,x] = wy0 (wx0 in[y0,x0] + wx1 in[y0,x1]) + wy1 (wx0 in[y1,x0]
 * + wx1 in[y1,x1]), PyTorch's order; nearest copies in[y0,x0]. No branch or address
 * depends on the values, so the kernels also serve constant-time inference. */
typedef enum resize_mode { RESIZE_NEAREST = 0, RESIZE_LINEAR } resize_mode;
/* ONNX's coordinate_transformation_mode: where output index o reads, with scale s
 * (the given one, else out/in), input length in and resized length L (in * s when the
 * scale is given, as ONNX's reference, else out): half_pixel (o + 1/2)/s - 1/2;
 * asymmetric o/s; align_corners o (in-1)/(L-1) (0 when L is 1); pytorch_half_pixel as
 * half_pixel, 0 when L is 1; tf_half_pixel_for_nn (o + 1/2)/s */
typedef enum resize_coord {
    RESIZE_HALF_PIXEL = 0,
    RESIZE_ASYMMETRIC,
    RESIZE_ALIGN_CORNERS,
    RESIZE_PYTORCH_HALF_PIXEL,
    RESIZE_TF_HALF_PIXEL_FOR_NN
} resize_coord;
/* ONNX's nearest_mode: how a source coordinate becomes an index (then clamped) */
typedef enum resize_nearest {
    RESIZE_ROUND_PREFER_FLOOR = 0,
    RESIZE_ROUND_PREFER_CEIL,
    RESIZE_FLOOR,
    RESIZE_CEIL
} resize_nearest;
typedef struct resize_tap {
    int i0, i1;     /* input indices, clamped to the axis */
    float w0, w1;   /* their weights: linear 1 - w1 and w1; nearest 1 and 0 */
} resize_tap;
/* The taps of an axis of in_len values resized to out_len (taps: out_len entries).
 * scale: the factor the coordinates use (ONNX's scales value), or 0 for
 * out_len / in_len (ONNX's sizes). Linear clamps the coordinate to [0, in_len - 1]
 * (ONNX's edge padding and PyTorch's clamp at 0 give the same values). */
void resize_taps(resize_mode mode, resize_coord coord, resize_nearest nearest, int in_len, int out_len, float scale,
                 resize_tap *taps /* (out_len) */);
void resize_forward_ref(resize_mode mode, int64_t planes, int ih, int iw, int oh, int ow,
                        const resize_tap *ty /* (oh) */, const resize_tap *tx /* (ow) */,
                        float *out /* (planes,OH,OW) */, const float *in /* (planes,H,W) */, int nthreads);
/* din (overwritten) = each dout spread back with its weights (the transposed
 * interpolation; nearest: a scatter-add), summed in a fixed order per plane. */
void resize_backward_ref(resize_mode mode, int64_t planes, int ih, int iw, int oh, int ow,
                         const resize_tap *ty /* (oh) */, const resize_tap *tx /* (ow) */,
                         float *din /* (planes,H,W) */, const float *dout /* (planes,OH,OW) */, int nthreads);

/* out = a op b elementwise with numpy broadcasting. Both operands are read through
 * element strides per axis of out (0 where the operand broadcasts), so an operand
 * without the batch axis has stride 0 there. Division by zero gives inf or NaN. */
typedef enum binary_op { BINARY_ADD = 0, BINARY_SUB, BINARY_MUL, BINARY_DIV } binary_op;
void binary_forward_ref(binary_op op, int rank, const int64_t *dims /* (rank) */, float *out /* (dims) */,
                        const float *a, const int64_t *a_strides /* (rank) */, const float *b,
                        const int64_t *b_strides /* (rank) */, int nthreads);
/* da (may be NULL) = d out/d a times dout, summed over the axes where a broadcasts,
 * in a's own row-major layout (overwritten); likewise db. Sums run in a fixed order:
 * the result does not depend on nthreads. */
void binary_backward_ref(binary_op op, int rank, const int64_t *dims, float *da, float *db,
                         const float *dout /* (dims) */, const float *a, const int64_t *a_strides, const float *b,
                         const int64_t *b_strides, int nthreads);

/* numpy.matmul of every sample's A with one shared B: C[s, i] = A[s, ia(i)] B[ib(i)]
 * for each sample s and each output batch index i, with A's and B's batch axes
 * broadcast. A 1-D operand is a matrix with m = 1 (A) or p = 1 (B). */
typedef struct matmul_params {
    int n;                              /* samples */
    int m, k, p;                        /* A matrices (m,k), B (k,p), C (m,p) */
    int batch_rank;                     /* output batch axes, 0..TS_MAX_DIMS */
    int64_t batch[TS_MAX_DIMS];         /* their sizes */
    int64_t a_stride[TS_MAX_DIMS];      /* in matrices of one sample's A; 0 where A broadcasts */
    int64_t b_stride[TS_MAX_DIMS];      /* in matrices of B; 0 where B broadcasts */
    int64_t a_count, b_count, c_count;  /* matrices in one sample's A, in B, in one sample's C */
} matmul_params;
/* Matrix i of a sample's C: the offsets, in matrices, of its A in the sample's A and of its B. */
void matmul_batch_index(const matmul_params *q, int64_t i, int64_t *ia, int64_t *ib);
void matmul_forward_ref(const matmul_params *q, float *c /* (N,c_count,m,p) */, const float *a /* (N,a_count,m,k) */,
                        const float *b /* (b_count,k,p) */, int nthreads);
/* da (overwritten) = dc B^T, summed over the batch axes where A broadcasts. */
void matmul_backward_data_ref(const matmul_params *q, float *da /* (N,a_count,m,k) */,
                              const float *dc /* (N,c_count,m,p) */, const float *b /* (b_count,k,p) */, int nthreads);
/* db (overwritten) = A^T dc, summed over the samples and where B broadcasts. */
void matmul_backward_weights_ref(const matmul_params *q, float *db /* (b_count,k,p) */,
                                 const float *dc /* (N,c_count,m,p) */, const float *a /* (N,a_count,m,k) */,
                                 int nthreads);

/* ---------------------------------------------------------- constant time */

/* Inference kernels for constant-time mode (ts_ctx_set_constant_time; docs/security.md):
 * the reference forwards above with no branch and no memory address that depends on
 * the tensor values, only on the shapes. Comparisons become masks and selects by bit
 * operations; exp, expm1, log and reciprocals come from ct_math.h (polynomials, no
 * tables, no division of a value). Same contracts as the _ref versions. Bit-identical
 * to them: relu, leaky relu, clip, hardsigmoid, prelu, max pooling, global max
 * pooling. Within an ulp or two of them (a double rounded once instead of libm's
 * float functions or a float division): sigmoid, tanh, elu, selu, softmax,
 * log-softmax, average pooling, global average pooling, division. Kernels not listed
 * (convolution, dense, gemm, batch norm at inference, add, concat, pad, layout,
 * matmul, the mask multiply, resize) have no value-dependent branch or address and serve
 * both modes. */
void eltwise_forward_ct(eltwise_kind kind, float alpha, size_t count, float *out /* (count) */,
                        const float *in /* (count) */, int nthreads);
void unary_forward_ct(const unary_params *p, size_t count, float *out /* (count) */, const float *in /* (count) */,
                      int nthreads);
void prelu_forward_ct(int n, int ndim, const int64_t *dims, const int64_t *sdims, float *out /* (N,dims) */,
                      const float *in /* (N,dims) */, const float *slope /* (sdims) */, int nthreads);
/* No argmax: inference only. */
void maxpool2d_forward_ct(const pool2d_params *p, float *out /* (N,C,OH,OW) */, const float *in /* (N,C,H,W) */,
                          int nthreads);
void avgpool2d_forward_ct(const pool2d_params *p, float *out /* (N,C,OH,OW) */, const float *in /* (N,C,H,W) */,
                          int nthreads);
void global_maxpool_forward_ct(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */);
void global_avgpool_forward_ct(int n, int c, int spatial, float *out /* (N,C) */, const float *in /* (N,C,S) */);
void softmax_axis_forward_ct(size_t outer, size_t len, size_t inner, int log_softmax,
                             float *out /* (outer,len,inner) */, const float *in /* (outer,len,inner) */,
                             int nthreads);
void binary_forward_ct(binary_op op, int rank, const int64_t *dims /* (rank) */, float *out /* (dims) */,
                       const float *a, const int64_t *a_strides /* (rank) */, const float *b,
                       const int64_t *b_strides /* (rank) */, int nthreads);
/* The loss of softmax_xent_ref, without gradient; labels are read without indexing
 * by them. */
float softmax_xent_ct(int n, int classes, const float *logits /* (N,classes) */, const int32_t *labels /* (N) */,
                      float smoothing);

/* --------------------------------------------------------------- oneDNN */

/* Same contracts as the _ref versions. Return TS_OK, or TS_EUNSUPPORTED when oneDNN
 * has no implementation for the case (the dispatcher then falls back to _ref), or an
 * error recorded on ctx. The ctx owns the engine and stream (ctx->dnnl). */
ts_status conv2d_forward_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in, const float *w,
                              const float *bias);
/* The activation fused after an inference convolution. */
typedef enum conv_act_kind {
    CONV_ACT_NONE = 0,
    CONV_ACT_CLAMP,     /* min(max(x, lo), hi): ReLU is {0, +inf}, ReLU6 {0, 6} */
    CONV_ACT_SWISH,     /* x sigmoid(x) (SiLU: EfficientNet's Sigmoid then Mul) */
    CONV_ACT_HARDSWISH, /* x max(0, min(1, x/6 + 1/2)) (MobileNetV3) */
} conv_act_kind;
typedef struct conv_act {
    conv_act_kind kind;
    float lo, hi; /* CONV_ACT_CLAMP */
    int residual; /* a tensor of the output's shape is added before the activation (ResNet's
                   * conv -> bn -> add -> relu): the run's `residual` argument */
} conv_act;
/* act over count values in place, in plain C (where oneDNN has no convolution) */
void conv_act_apply_ref(conv_act act, size_t count, float *x /* (count) */);
ts_status conv2d_forward_inference_dnnl(ts_ctx *ctx, const conv2d_params *p, float *out, const float *in,
                                        const float *w, const float *bias, conv_act act);
ts_status conv2d_backward_data_dnnl(ts_ctx *ctx, const conv2d_params *p, float *din, const float *dout,
                                    const float *w);
/* backward weights, then backward data when din is not NULL, sharing the reorder of dout */
ts_status conv2d_backward_dnnl(ts_ctx *ctx, const conv2d_params *p, float *din, float *dw, float *dbias,
                               const float *dout, const float *in, const float *w);
/* Packed inference convolutions: primitives created and weights reordered into
 * oneDNN's layout once, then run many times (conv2d_dnnl.c). A set has one slot per
 * index the caller chooses (a layer index), its own engine and stream, and is tied
 * to one batch size (p->n) and the ctx's thread count at creation. */
/* ------------------------------------------------ int8 inference (quant_ref.c) */

/* How an int8 convolution sees its operands: x ~ src_scale * q (q in 0..255 when
 * src_u8, else -128..127), w[k] ~ wei_scale[k] * q (q in -127..127). */
typedef struct conv_quant {
    float src_scale;
    int src_u8;
    const float *wei_scale; /* (K) */
} conv_quant;
/* out = scale * clamp(nearbyint(in / scale)) (the dequantized values; out may be in) */
void quantize_fake_ref(size_t count, float *out /* (count) */, const float *in /* (count) */, float scale, int u8,
                       int nthreads);
/* max|w| / 127 over one output channel's per weights (1 when all are zero) */
float quantize_weight_scale(int64_t per, const float *w /* (per) */);
/* Per output channel: scale[k] = quantize_weight_scale, out the dequantized weights
 * (out may be w; scale may be NULL). */
void quantize_weights_ref(int k, int64_t per, float *out /* (K,per) */, float *scale /* (K) or NULL */,
                          const float *w /* (K,per) */);

typedef struct conv2d_packed_set conv2d_packed_set;
ts_status conv2d_packed_set_create(ts_ctx *ctx, int nslots, conv2d_packed_set **out);
void conv2d_packed_set_free(conv2d_packed_set *s);
/* Packs slot: w (K,C/G,KH,KW) and bias (K) or NULL are copied (w in the primitive's
 * layout, bf16 when ctx->bf16), act as a post-op. nhwc: CONV_PACKED_SRC_NHWC and/or
 * CONV_PACKED_DST_NHWC, the run's `in` and `out` are channels-last, (N,H,W,C) and
 * (N,OH,OW,K), instead of NCHW; CONV_PACKED_RES_NHWC likewise the residual (act.residual). q non-NULL:
 * an int8 convolution (the source quantized on the way in, the weights once here, the
 * output still f32; ctx->bf16 does not apply). TS_EUNSUPPORTED (no message) where
 * oneDNN has no implementation. */
enum { CONV_PACKED_SRC_NHWC = 1, CONV_PACKED_DST_NHWC = 2, CONV_PACKED_RES_NHWC = 4 };
ts_status conv2d_packed_add(ts_ctx *ctx, conv2d_packed_set *s, int slot, const conv2d_params *p, const float *w,
                            const float *bias, conv_act act, unsigned nhwc, const conv_quant *q);
int conv2d_packed_ready(const conv2d_packed_set *s, int slot);
ts_status conv2d_packed_run(ts_ctx *ctx, conv2d_packed_set *s, int slot, float *out /* (N,K,OH,OW) */,
                            const float *in /* (N,C,H,W) */, const float *residual /* as out, or NULL */);

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
/* The roofline's lines, measured (machine.c), each the best of a few runs on
 * ts_ctx_threads(ctx) threads: the fp32 GFLOP/s of independent FMA chains in the
 * widest vectors the CPU has (its peak), of a large sgemm (oneDNN's when use_dnnl, else
 * the reference: what a blocked kernel reaches), and the STREAM-triad bandwidth in GB/s. */
ts_status machine_fma_gflops(ts_ctx *ctx, double *gflops);
ts_status machine_peak_gflops(ts_ctx *ctx, int use_dnnl, double *gflops);
ts_status machine_bandwidth_gbs(ts_ctx *ctx, double *gbs);

/* c (m,n) = a (m,k) b (k,n), row-major (gemm_dnnl.c); TS_EUNSUPPORTED for an empty product */
ts_status gemm_dnnl(ts_ctx *ctx, int64_t m, int64_t n, int64_t k, float *c, const float *a, const float *b);
ts_status dense_forward_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *out, const float *in, const float *w,
                             const float *bias);
ts_status dense_backward_data_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *din, const float *dout,
                                   const float *w);
ts_status dense_backward_weights_dnnl(ts_ctx *ctx, int n, int in_f, int out_f, float *dw, float *dbias,
                                      const float *dout, const float *in);
ts_status softmax_forward_dnnl(ts_ctx *ctx, size_t outer, size_t len, size_t inner, int log_softmax, float *out,
                               const float *in);
ts_status eltwise_forward_dnnl(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *out,
                               const float *in);
ts_status eltwise_backward_dnnl(ts_ctx *ctx, eltwise_kind kind, float alpha, size_t count, float *din,
                                const float *dout, const float *in, const float *out);


/* ------------------------------------------------------------- recurrent layers */

/* Recurrent cells, PyTorch's semantics and gate order: rnn h' = act(W_ih x + b_ih +
 * W_hh h + b_hh); lstm gates i,f,g,o; gru gates r,z,n with n = tanh(x_n + r (W_hn h +
 * b_hn)) when linear_before_reset (PyTorch), else tanh(x_n + W_hn (r h) + b_hn). */
typedef enum rnn_cell { RNN_TANH = 0, RNN_RELU = 1, RNN_LSTM = 2, RNN_GRU = 3 } rnn_cell;

typedef struct rnn_params {
    rnn_cell cell;
    int n, t, f, h; /* batch, steps, input features, hidden units */
    int dirs;       /* 1, or 2: the second direction reads each sequence from its end */
    int sequence;   /* 1: y is (N,T,dirs*H), every step's state; 0: (N,dirs*H), the final states;
                     * 2: (N,rnn_state_size), the final states and, for lstm, cells (a decoder's start) */
    int lbr;        /* gru: linear_before_reset */
} rnn_params;

static inline int rnn_gates(rnn_cell c) { return c == RNN_LSTM ? 4 : c == RNN_GRU ? 3 : 1; }
/* Weights per direction: (G*H, F+H), each row W_ih's then W_hh's; biases per
 * direction (2, G*H): b_ih then b_hh. */
static inline int64_t rnn_weight_count(const rnn_params *p) {
    return (int64_t)p->dirs * rnn_gates(p->cell) * p->h * (p->f + p->h);
}
/* Values per sample of a whole state: h of every direction, then for lstm c of every
 * direction. The initial states h0 and sequence=2's output are laid out so. */
static inline int64_t rnn_state_size(const rnn_params *p) {
    return (int64_t)p->dirs * p->h * (p->cell == RNN_LSTM ? 2 : 1);
}
/* Floats a training forward keeps for the backward pass (ws), and scratch for one
 * forward or backward call. */
size_t rnn_workspace_floats(const rnn_params *p);
size_t rnn_scratch_floats(const rnn_params *p);

/* Sequence lengths from token ids (N,T): 1 + the last position whose id is not 0
 * (<pad>), so padding sits at the end; 0 for an all-padding row. Branch-free. */
void rnn_lengths_from_ids(int n, int t, const float *ids /* (N,T) */, int32_t *len /* (N) */);

/* x (N,T,F) -> y. Steps at or past a sample's length (len NULL: all T) are padding:
 * their outputs are 0 and the states pass through, so a padded batch gives each
 * sequence's own result. ws: NULL at inference, else rnn_workspace_floats for the
 * backward pass. ct: constant-time activations and selects (docs/security.md).
 * keep: a per-step unit mask (1 kept, 0 removed at that step; sequence 0 or 1: the
 * final state is masked at the sample's last real step), the unrolled
 * decomposition's per-step weight copies (rnn_ref.c says how); inference only, there
 * is no backward through it. */
void rnn_forward_ref(const rnn_params *p, const float *x, const int32_t *len /* (N) or NULL */,
                     const float *h0 /* (N, rnn_state_size) or NULL: zeros */, const float *w, const float *b,
                     const float *keep /* (T, dirs, H) or NULL */, float *y, float *ws, float *scratch, int ct,
                     int nthreads);
/* Gradients of the forward above: dw, db overwritten; dx (N,T,F) and dh0 (as h0)
 * overwritten when not NULL. dy as y. */
void rnn_backward_ref(const rnn_params *p, const float *x, const int32_t *len, const float *w, const float *dy,
                      const float *ws, float *dx, float *dh0, float *dw, float *db, float *scratch, int nthreads);
/* The same two on oneDNN's RNN primitives (rnn_dnnl.c): TS_EUNSUPPORTED where they do
 * not apply (a row of padding only; no implementation; in training, no backward). ws: NULL at inference, else ws_bytes >=
 * rnn_dnnl_workspace_bytes for this batch (0 there: oneDNN cannot train the layer),
 * which the backward reads with the forward's h0, w and b. No step mask, no
 * constant-time variant. */
size_t rnn_dnnl_workspace_bytes(ts_ctx *ctx, const rnn_params *p);
/* Whether they run in bfloat16 (ts_ctx_set_bf16 and a CPU with AVX512-BF16): the
 * input, states h, outputs and weights; cells, biases and gradients stay f32, and a
 * GRU trains in f32 (it infers in bf16). */
int rnn_bf16(const ts_ctx *ctx);
ts_status rnn_forward_dnnl(ts_ctx *ctx, const rnn_params *p, const float *x /* (N,T,F) */,
                           const int32_t *len /* (N) or NULL */, const float *h0 /* (N, rnn_state_size) or NULL */,
                           const float *w, const float *b, float *y, void *ws, size_t ws_bytes);
ts_status rnn_backward_dnnl(ts_ctx *ctx, const rnn_params *p, const float *x, const int32_t *len, const float *h0,
                            const float *w, const float *b, const float *dy, const void *ws, size_t ws_bytes,
                            float *dx, float *dh0, float *dw, float *db);

/* Embedding: out (count, E) = rows of w (V, E) at ids (count). Returns the index of
 * the first id that is not an integer in [0, V) (nothing else then written past it),
 * or -1. The constant-time variant reads every row for every id and gives zeros for
 * an invalid id. */
int64_t embedding_forward_ref(int64_t count, int e, int v, const float *ids, const float *w, float *out);
void embedding_forward_ct(int64_t count, int e, int v, const float *ids, const float *w, float *out, int nthreads);
/* dw (V,E) overwritten: the sum of dout's rows per id; padding_idx's row (>= 0) stays 0. */
void embedding_backward_ref(int64_t count, int e, int v, const float *ids, const float *dout, float *dw,
                            int padding_idx);

/* ------------------------- error-bounded activation codec (compress_ref.c) */

/* Bytes act_codec_encode may write for count values (the plain floats and a byte). */
size_t act_codec_bound(size_t count);
/* x (count), rows of `row` values (W), into dst (act_codec_bound(count)) with
 * |x - x'| <= eb for every value, +0.0 and every value's sign kept (eb = 0: lossless);
 * scratch (2 * count words). Returns the bytes written. */
size_t act_codec_encode(uint8_t *dst, const float *x, size_t count, size_t row, float eb, uint32_t *scratch);
/* The same bytes from the plain-C quantization alone (where the build has an AVX-512
 * one): the tests' oracle. */
size_t act_codec_encode_ref(uint8_t *dst, const float *x, size_t count, size_t row, float eb, uint32_t *scratch);
/* The inverse, with the same count, row and eb; scratch (count words); 0 if src
 * (bytes) is not such a chunk. */
int act_codec_decode(float *x /* (count) */, const uint8_t *src, size_t bytes, size_t count, size_t row, float eb,
                     uint32_t *scratch);

#endif
