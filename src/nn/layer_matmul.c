/* matmul: ONNX MatMul (numpy.matmul) of the per-sample input A with a trained right
 * operand `<name>.weight` of shape b= (any rank 1..6), or with a second input B
 * (in=a,b: both computed, each sample its own B, as attention's Q K^T). A 1-D A is a
 * row vector and a 1-D B a column vector, the axis dropped from the output; the batch
 * axes before the last two broadcast between A and B; a 0-d result is output as (1). */
#include "layers.h"

#include <string.h>

typedef enum matmul_fit { MATMUL_OK = 0, MATMUL_BAD_K, MATMUL_BAD_BATCH } matmul_fit;

/* Kernel parameters for a batch of n and the per-sample output shape; *axis gets
 * the batch axis (from the right of the batch axes) that does not broadcast. */
static matmul_fit matmul_plan(const ts_shape *a, const ts_shape *b, int n, matmul_params *q, ts_shape *out, int *axis) {
    memset(q, 0, sizeof *q);
    memset(out, 0, sizeof *out);
    const int ra = a->ndim, rb = b->ndim;
    const int64_t ka = a->dims[ra - 1], kb = rb >= 2 ? b->dims[rb - 2] : b->dims[0];
    if (ka != kb) return MATMUL_BAD_K;
    q->n = n;
    q->m = ra >= 2 ? (int)a->dims[ra - 2] : 1;
    q->k = (int)ka;
    q->p = rb >= 2 ? (int)b->dims[rb - 1] : 1;
    /* at most 4 batch axes (rank 6 minus the matrix axes), so the output has at most 6 */
    const int na = ra > 2 ? ra - 2 : 0, nb = rb > 2 ? rb - 2 : 0, r = na > nb ? na : nb;
    q->batch_rank = r;
    int64_t sa = 1, sb = 1;
    q->a_count = q->b_count = q->c_count = 1;
    for (int i = r - 1; i >= 0; i--) {
        const int ia = i - (r - na), ib = i - (r - nb);
        const int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            *axis = r - i;
            return MATMUL_BAD_BATCH;
        }
        q->batch[i] = da > db ? da : db;
        q->a_stride[i] = da == 1 ? 0 : sa;
        q->b_stride[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
        q->c_count *= q->batch[i];
    }
    q->a_count = sa;
    q->b_count = sb;
    for (int i = 0; i < r; i++) out->dims[out->ndim++] = q->batch[i];
    if (ra >= 2) out->dims[out->ndim++] = q->m;
    if (rb >= 2) out->dims[out->ndim++] = q->p;
    if (out->ndim == 0) out->dims[out->ndim++] = 1; /* vector . vector */
    return MATMUL_OK;
}

/* B's per-sample shape: the second input's, or b= */
static const ts_shape *matmul_b(const ts_model *m, const layer *l) {
    return l->ninputs == 2 ? input_shape(m, l, 1) : &l->tshape;
}

ts_status matmul_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs == 2 ? l->tshape.ndim != 0 : l->ninputs != 1 || l->tshape.ndim == 0)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: matmul '%s' takes one input and the weight 'b' (b=KxN), or two inputs (in=a,b) and no 'b'",
                       source, l->line, l->name);
    const ts_shape *a = input_shape(m, l, 0), *b = matmul_b(m, l);
    matmul_params q;
    int axis = 0;
    char ta[96], tb[96];
    switch (matmul_plan(a, b, 1, &q, &l->out, &axis)) {
    case MATMUL_BAD_K:
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: matmul '%s': input %s and b=%s do not multiply (%lld vs %lld)", source,
                       l->line, l->name, shape_text(a, ta, sizeof ta), shape_text(b, tb, sizeof tb),
                       (long long)a->dims[a->ndim - 1], (long long)b->dims[b->ndim >= 2 ? b->ndim - 2 : 0]);
    case MATMUL_BAD_BATCH:
        return ts_fail(ctx, TS_ESHAPE,
                       "%s:%d: matmul '%s': the batch axes of input %s and b=%s do not broadcast (batch axis %d from "
                       "the right)",
                       source, l->line, l->name, shape_text(a, ta, sizeof ta), shape_text(b, tb, sizeof tb),
                       axis);
    case MATMUL_OK: break;
    }
    if (l->ninputs == 2) return TS_OK;
    int li = (int)(l - m->layers);
    l->weight = model_add_tensor(ctx, m, li, "weight", TS_TENSOR_PARAM, &l->tshape);
    return l->weight < 0 ? ts_ctx_status(ctx) : TS_OK;
}

static matmul_params matmul_params_of(const ts_model *m, const layer *l, int n) {
    matmul_params q;
    ts_shape out;
    int axis;
    matmul_plan(input_shape(m, l, 0), matmul_b(m, l), n, &q, &out, &axis); /* checked by matmul_infer */
    return q;
}

/* Multiply-adds per sample. */
int64_t matmul_macs(const ts_model *m, const layer *l) {
    const matmul_params q = matmul_params_of(m, l, 1);
    return q.c_count * q.m * (int64_t)q.k * q.p;
}

/* Two inputs: one sample at a time, each with its own B (the kernels share one B). */
static ts_status matmul2_forward(ts_ctx *ctx, ts_model *m, int li) {
    const matmul_params q = matmul_params_of(m, &m->layers[li], 1);
    const int64_t as = q.a_count * q.m * q.k, bs = q.b_count * q.k * q.p, cs = q.c_count * q.m * q.p;
    const float *a = layer_input(m, li, 0), *b = layer_input(m, li, 1);
    ts_status st = TS_OK;
    for (int s = 0; s < m->exec.n && !st; s++) st = ops_matmul_forward(ctx, &q, m->exec.ls[li].out + s * cs, a + s * as, b + s * bs);
    return st;
}

static ts_status matmul2_backward(ts_ctx *ctx, ts_model *m, int li) {
    const matmul_params q = matmul_params_of(m, &m->layers[li], 1);
    const int64_t as = q.a_count * q.m * q.k, bs = q.b_count * q.k * q.p, cs = q.c_count * q.m * q.p;
    const int nt = ts_ctx_threads(ctx);
    const float *a = layer_input(m, li, 0), *b = layer_input(m, li, 1), *dc = m->exec.ls[li].grad;
    float *da = layer_input_grad(m, li, 0);
    if (da) {
        for (int s = 0; s < m->exec.n; s++) matmul_backward_data_ref(&q, da + s * as, dc + s * cs, b + s * bs, nt);
        layer_input_grad_commit(m, li, 0, nt);
    }
    float *db = layer_input_grad(m, li, 1);
    if (db) { /* dB of a sample = A^T dC of that sample */
        for (int s = 0; s < m->exec.n; s++) matmul_backward_weights_ref(&q, db + s * bs, dc + s * cs, a + s * as, nt);
        layer_input_grad_commit(m, li, 1, nt);
    }
    return TS_OK;
}

ts_status matmul_forward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    if (l->ninputs == 2) return matmul2_forward(ctx, m, li);
    const matmul_params q = matmul_params_of(m, l, m->exec.n);
    return ops_matmul_forward(ctx, &q, m->exec.ls[li].out, layer_input(m, li, 0), tensor_data(m, l->weight));
}

ts_status matmul_backward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    if (l->ninputs == 2) return matmul2_backward(ctx, m, li);
    const matmul_params q = matmul_params_of(m, l, m->exec.n);
    const int nt = ts_ctx_threads(ctx);
    matmul_backward_weights_ref(&q, tensor_grad(m, l->weight), m->exec.ls[li].grad, layer_input(m, li, 0), nt);
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    matmul_backward_data_ref(&q, din, m->exec.ls[li].grad, tensor_data(m, l->weight), nt);
    layer_input_grad_commit(m, li, 0, nt);
    return TS_OK;
}
