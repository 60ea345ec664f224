/* batchnorm layer over channels: (C,H,W) as BatchNorm2d or (F) as BatchNorm1d.
 * Tensors: weight (gamma), bias (beta), running_mean, running_var (buffers). */
#include "layers.h"

#include <math.h>
#include <string.h>

static bn_params bn_layer_params(const ts_model *m, const layer *l, int n) {
    const ts_shape *in = input_shape(m, l, 0);
    bn_params p = {n, (int)in->dims[0], 1, l->eps};
    if (in->ndim == 3) p.spatial = (int)(in->dims[1] * in->dims[2]);
    return p;
}

ts_status batchnorm_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs != 1)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: batchnorm '%s' takes exactly one input", source, l->line, l->name);
    const ts_shape *in = input_shape(m, l, 0);
    if (in->ndim != 3 && in->ndim != 1)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: batchnorm '%s' needs a CxHxW or F input, got %d-d", source, l->line,
                       l->name, in->ndim);
    l->out = *in;
    int li = (int)(l - m->layers);
    ts_shape cs = {1, {in->dims[0]}};
    if ((l->weight = model_add_tensor(ctx, m, li, "weight", TS_TENSOR_PARAM, &cs)) < 0 ||
        (l->bias_t = model_add_tensor(ctx, m, li, "bias", TS_TENSOR_PARAM, &cs)) < 0 ||
        (l->running_mean = model_add_tensor(ctx, m, li, "running_mean", TS_TENSOR_BUFFER, &cs)) < 0 ||
        (l->running_var = model_add_tensor(ctx, m, li, "running_var", TS_TENSOR_BUFFER, &cs)) < 0)
        return ts_ctx_status(ctx);
    return TS_OK;
}

size_t batchnorm_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx;
    (void)n;
    /* batch mean, batch var; for synchronized batch norm also 2C sums and the count over
     * the ranks (bn_sync_forward) */
    return sizeof(float) * (4 * (size_t)input_shape(m, l, 0)->dims[0] + 2);
}

/* PyTorch: running stats use the unbiased batch variance (cnt values per channel) */
static void update_running_stats_n(ts_model *m, layer *l, const bn_params *p, const float *mean, const float *var,
                                   double cnt) {
    float *rm = tensor_data(m, l->running_mean), *rv = tensor_data(m, l->running_var);
    float unbias = cnt > 1 ? (float)(cnt / (cnt - 1)) : 1.0f;
    float mom = l->momentum;
    for (int c = 0; c < p->c; c++) {
        rm[c] = (1 - mom) * rm[c] + mom * mean[c];
        rv[c] = (1 - mom) * rv[c] + mom * var[c] * unbias;
    }
}

static void update_running_stats(ts_model *m, layer *l, const bn_params *p, const float *mean, const float *var) {
    update_running_stats_n(m, l, p, mean, var, (double)p->n * p->spatial);
}

/* ---- synchronized batch norm: statistics and gradients over every rank's samples */

static ts_status bn_allreduce(ts_ctx *ctx, const ts_model *m, const layer *l, float *buf, size_t n) {
    char err[256] = "";
    if (m->sync_bn->allreduce_sum(buf, n, m->sync_bn->user, err, sizeof err))
        return ts_fail(ctx, TS_EIO, "synchronized batch norm '%s': %s", l->name, err[0] ? err : "the sum over the ranks failed");
    return TS_OK;
}

/* aux: mean (C), var (C), sums (2C), then the count over the ranks as hi * 4096 + lo
 * (two floats whose sums stay exact up to 2^36 values) */
static ts_status bn_sync_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const bn_params p = bn_layer_params(m, l, m->exec.n);
    float *mean = m->exec.ls[li].aux, *var = mean + p.c, *buf = var + p.c, *cnt = buf + 2 * p.c;
    const float *in = layer_input(m, li, 0);
    const int threads = ts_ctx_threads(ctx);
    const double local = (double)p.n * p.spatial;
    batchnorm_sums_ref(&p, in, NULL, buf, threads);
    buf[p.c] = (float)floor(local / 4096.0);
    buf[p.c + 1] = (float)(local - 4096.0 * floor(local / 4096.0));
    ts_status st = bn_allreduce(ctx, m, l, buf, (size_t)p.c + 2);
    if (st) return st;
    cnt[0] = buf[p.c];
    cnt[1] = buf[p.c + 1];
    const double total = 4096.0 * cnt[0] + cnt[1];
    for (int c = 0; c < p.c; c++) mean[c] = total > 0 ? (float)(buf[c] / total) : 0.0f;
    batchnorm_sums_ref(&p, in, mean, buf, threads);
    if ((st = bn_allreduce(ctx, m, l, buf, (size_t)p.c))) return st;
    for (int c = 0; c < p.c; c++) var[c] = total > 0 ? (float)(buf[c] / total) : 0.0f; /* biased */
    batchnorm_forward_infer_ref(&p, m->exec.ls[li].out, in, tensor_data(m, l->weight), tensor_data(m, l->bias_t), mean,
                                var, threads);
    update_running_stats_n(m, l, &p, mean, var, total);
    return TS_OK;
}

/* dgamma and dbeta stay this rank's own sums (the trainer adds every gradient over the
 * ranks); dx uses the sums over all of them. */
static ts_status bn_sync_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    const bn_params p = bn_layer_params(m, l, m->exec.n);
    const float *mean = m->exec.ls[li].aux, *var = mean + p.c, *cnt = var + 3 * p.c;
    float *buf = (float *)var + p.c;
    const float *in = layer_input(m, li, 0), *dout = m->exec.ls[li].grad;
    const int threads = ts_ctx_threads(ctx);
    batchnorm_backward_sums_ref(&p, buf, buf + p.c, dout, in, mean, var, threads);
    float *dg = tensor_grad(m, l->weight), *db = tensor_grad(m, l->bias_t);
    memcpy(db, buf, sizeof *db * (size_t)p.c);
    memcpy(dg, buf + p.c, sizeof *dg * (size_t)p.c);
    ts_status st = bn_allreduce(ctx, m, l, buf, 2 * (size_t)p.c);
    if (st) return st;
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK; /* the model input: no gradient wanted */
    batchnorm_backward_apply_ref(&p, din, dout, in, tensor_data(m, l->weight), mean, var, buf, buf + p.c,
                                 4096.0 * cnt[0] + cnt[1], threads);
    layer_input_grad_commit(m, li, 0, threads);
    return TS_OK;
}

/* Fused inference of batch norm li that reads the inputs of the concatenation
 * bn_concat[li] (not run), each into its channels of layer `to`'s output, channels-last
 * when `cl`; with `to` its ReLU, applied in the same pass. */
static ts_status batchnorm_concat_forward(ts_ctx *ctx, ts_model *m, int li, int to, int cl) {
    const layer *l = &m->layers[li], *c = &m->layers[m->exec.bn_concat[li]];
    bn_params p = bn_layer_params(m, l, m->exec.n);
    int64_t c0 = 0;
    for (int k = 0; k < c->ninputs; k++) {
        const int64_t cp = m->layers[c->inputs[k]].out.dims[0];
        batchnorm_infer_part(&p, to != li, cl, c0, cp, m->exec.ls[to].out, m->exec.ls[c->inputs[k]].out,
                             tensor_data(m, l->weight), tensor_data(m, l->bias_t), tensor_data(m, l->running_mean),
                             tensor_data(m, l->running_var), ts_ctx_threads(ctx));
        c0 += cp;
    }
    return TS_OK;
}

/* Inference on a channels-last input, written to layer `to`'s output: li's own, or
 * that of the ReLU that alone reads it (then applied in the same pass). */
ts_status batchnorm_cl_forward(ts_ctx *ctx, ts_model *m, int li, int to) {
    const layer *l = &m->layers[li];
    if (m->exec.fused && m->exec.bn_concat[li]) return batchnorm_concat_forward(ctx, m, li, to, 1);
    bn_params p = bn_layer_params(m, l, m->exec.n);
    batchnorm_infer_rows(&p, to != li, m->exec.ls[to].out, layer_input(m, li, 0), tensor_data(m, l->weight),
                         tensor_data(m, l->bias_t), tensor_data(m, l->running_mean), tensor_data(m, l->running_var),
                         ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status batchnorm_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    bn_params p = bn_layer_params(m, l, m->exec.n);
    float *out = m->exec.ls[li].out;
    const float *in = layer_input(m, li, 0);
    const float *gamma = tensor_data(m, l->weight), *beta = tensor_data(m, l->bias_t);
    if (!m->exec.train && m->exec.fused && m->exec.bn_concat[li]) /* reads a skipped concat's inputs */
        return batchnorm_concat_forward(ctx, m, li, li, layer_cl(m, li));
    if (layer_cl(m, l->inputs[0])) /* channels-last (fused inference): each position a row of C */
        return batchnorm_cl_forward(ctx, m, li, li);
    if (!m->exec.train)
        return ops_batchnorm_forward_infer(ctx, &p, out, in, gamma, beta, tensor_data(m, l->running_mean),
                                           tensor_data(m, l->running_var));
    if (m->sync_bn) return bn_sync_forward(ctx, m, li);
    float *mean = m->exec.ls[li].aux, *var = mean + p.c;
    if (layer_blk(m, li)) {
        batchnorm_forward_train_blocked(&p, out, mean, var, in, gamma, beta, 0, m->exec.scratch, ts_ctx_threads(ctx));
    } else {
        ts_status st = ops_batchnorm_forward_train(ctx, &p, out, mean, var, in, gamma, beta);
        if (st) return st;
    }
    update_running_stats(m, l, &p, mean, var);
    return TS_OK;
}

int batchnorm_relu_fusable(const ts_ctx *ctx, const ts_model *m, int li) {
    bn_params p = bn_layer_params(m, &m->layers[li], 1);
    return ops_batchnorm_relu_fusable(ctx, &p);
}

/* Training forward of batch norm li and the ReLU r that is its only consumer, in one
 * pass: the result goes to r's output; li's own output is not written. */
ts_status batchnorm_relu_forward(ts_ctx *ctx, ts_model *m, int li, int r) {
    layer *l = &m->layers[li];
    bn_params p = bn_layer_params(m, l, m->exec.n);
    float *mean = m->exec.ls[li].aux, *var = mean + p.c;
    if (layer_blk(m, li)) {
        batchnorm_forward_train_blocked(&p, m->exec.ls[r].out, mean, var, layer_input(m, li, 0),
                                        tensor_data(m, l->weight), tensor_data(m, l->bias_t), 1, m->exec.scratch,
                                        ts_ctx_threads(ctx));
    } else {
        ts_status st = ops_batchnorm_relu_forward_train(ctx, &p, m->exec.ls[r].out, mean, var, layer_input(m, li, 0),
                                                        tensor_data(m, l->weight), tensor_data(m, l->bias_t));
        if (st) return st;
    }
    update_running_stats(m, l, &p, mean, var);
    return TS_OK;
}

/* Backward from dout, the gradient of li's output, or with r (the fused ReLU) of
 * r's output, masked where r's output is zero; to li's input, weight and bias. */
static ts_status bn_backward(ts_ctx *ctx, ts_model *m, int li, int r) {
    layer *l = &m->layers[li];
    bn_params p = bn_layer_params(m, l, m->exec.n);
    const float *mean = m->exec.ls[li].aux, *var = mean + p.c;
    float *din = layer_input_grad(m, li, 0);
    float *tmp = NULL;
    if (!din) tmp = din = m->exec.accum; /* the kernel computes din anyway */
    float *dg = tensor_grad(m, l->weight), *db = tensor_grad(m, l->bias_t);
    const float *in = layer_input(m, li, 0), *gamma = tensor_data(m, l->weight);
    if (layer_blk(m, li)) {
        batchnorm_backward_blocked(&p, din, dg, db, r ? m->exec.ls[r].grad : m->exec.ls[li].grad, in,
                                   r ? m->exec.ls[r].out : NULL, gamma, mean, var, m->exec.scratch,
                                   ts_ctx_threads(ctx));
        if (!tmp) layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
        return TS_OK;
    }
    ts_status st = r ? ops_batchnorm_relu_backward(ctx, &p, din, dg, db, m->exec.ls[r].grad, in, m->exec.ls[r].out,
                                                   gamma, mean, var)
                     : ops_batchnorm_backward(ctx, &p, din, dg, db, m->exec.ls[li].grad, in, gamma, mean, var);
    if (st) return st;
    if (!tmp) layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status batchnorm_relu_backward(ts_ctx *ctx, ts_model *m, int li, int r) { return bn_backward(ctx, m, li, r); }

ts_status batchnorm_backward(ts_ctx *ctx, ts_model *m, int li) {
    return m->sync_bn ? bn_sync_backward(ctx, m, li) : bn_backward(ctx, m, li, 0);
}
