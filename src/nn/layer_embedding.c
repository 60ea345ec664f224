/* embedding: token ids (any per-sample shape, each value an integer id) to vectors,
 * PyTorch's nn.Embedding: out = in's shape + (dim), weight (vocab, dim) initialized
 * N(0, 1) with the padding_idx row at zero; that row gets no gradient. An id that
 * is not an integer in [0, vocab) fails the forward pass with a message naming the
 * sample and position; constant-time inference gives zeros for it instead (a
 * refusal would branch on the value; docs/security.md). */
#include "layers.h"

#include <string.h>

ts_status embedding_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_status st = expect_one_input(ctx, l, source);
    if (st) return st;
    const ts_shape *in = input_shape(m, l, 0);
    char is[96];
    if (in->ndim >= TS_MAX_DIMS)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: embedding '%s': input '%s' (%s) has too many axes to add one", source,
                       l->line, l->name, m->layers[l->inputs[0]].name, shape_text(in, is, sizeof is));
    if (l->padding_idx >= l->vocab)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: embedding '%s': padding_idx %d is not a row of vocab=%d", source,
                       l->line, l->name, l->padding_idx, l->vocab);
    if (shape_numel(in) * l->features > ARCH_MAX_ELEMENTS)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: embedding '%s': output too large", source, l->line, l->name);
    l->out = *in;
    l->out.dims[l->out.ndim++] = l->features;
    ts_shape ws = {2, {l->vocab, l->features}};
    if ((l->weight = model_add_tensor(ctx, m, (int)(l - m->layers), "weight", TS_TENSOR_PARAM, &ws)) < 0)
        return ts_ctx_status(ctx);
    return TS_OK;
}

ts_status embedding_forward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    const int64_t per = shape_numel(input_shape(m, l, 0)), count = per * m->exec.n;
    const float *ids = layer_input(m, li, 0), *w = tensor_data(m, l->weight);
    float *out = m->exec.ls[li].out;
    if (ctx->constant_time) {
        embedding_forward_ct(count, l->features, l->vocab, ids, w, out, ts_ctx_threads(ctx));
        return TS_OK;
    }
    const int64_t bad = embedding_forward_ref(count, l->features, l->vocab, ids, w, out);
    if (bad >= 0)
        return ts_fail(ctx, TS_EINVAL, "embedding '%s': sample %lld, position %lld holds %g, not a token id in [0, %d)",
                       l->name, (long long)(bad / per), (long long)(bad % per), (double)ids[bad], l->vocab);
    return TS_OK;
}

ts_status embedding_backward(ts_ctx *ctx, ts_model *m, int li) {
    const layer *l = &m->layers[li];
    const int64_t count = shape_numel(input_shape(m, l, 0)) * m->exec.n;
    embedding_backward_ref(count, l->features, l->vocab, layer_input(m, li, 0), m->exec.ls[li].grad,
                           tensor_grad(m, l->weight), l->padding_idx);
    float *din = layer_input_grad(m, li, 0);
    if (din) { /* ids are not differentiable */
        memset(din, 0, sizeof *din * (size_t)count);
        layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    }
    return TS_OK;
}
