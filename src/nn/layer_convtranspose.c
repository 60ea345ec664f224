/* convtranspose layer (PyTorch ConvTranspose2d, ONNX ConvTranspose): weight
 * (C, out/groups, KH, KW), optional bias (out). Input (C, H, W), output (out, OH, OW)
 * with OH = (H-1)*stride - top - bottom + dilation*(KH-1) + output_padding + 1.
 *
 * It is the adjoint of a convolution: take the conv2d from (out, OH, OW) to (C, H, W)
 * with the same kernel, stride, padding, dilation, groups and weights (conv2d's
 * (K, C/groups, ...) layout with K = C, C = out is this layer's weight as it is).
 * Then forward = that conv's backward data (plus the bias), backward data = its
 * forward, backward weights = its backward weights with input and output gradient
 * swapped. Output padding lengthens the output beyond the conv's reach, which the
 * conv's floor division absorbs as long as output_padding < stride. */
#include "layers.h"

/* The convolution whose backward data this layer is (see the top). */
static conv2d_params convtranspose_conv(const ts_model *m, const layer *l, int n) {
    const ts_shape *in = input_shape(m, l, 0);
    return layer_conv_geometry(l, n, l->features, (int)l->out.dims[1], (int)l->out.dims[2], (int)in->dims[0]);
}

ts_status convtranspose_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_shape in;
    ts_status st = expect_image_input(ctx, m, l, source, &in);
    if (st) return st;
    if (in.dims[0] % l->groups || l->features % l->groups)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: convtranspose '%s': groups=%d must divide input channels %lld and out=%d",
                       source, l->line, l->name, l->groups, (long long)in.dims[0], l->features);
    if (l->oph >= l->sh || l->opw >= l->sw)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: convtranspose '%s': output_padding %dx%d must be less than the stride %dx%d",
                       source, l->line, l->name, l->oph, l->opw, l->sh, l->sw);
    const int64_t oh = (in.dims[1] - 1) * l->sh - l->ph - l->pbh + (int64_t)l->dh * (l->kh - 1) + l->oph + 1;
    const int64_t ow = (in.dims[2] - 1) * l->sw - l->pw - l->pbw + (int64_t)l->dw * (l->kw - 1) + l->opw + 1;
    if (oh < 1 || ow < 1 || oh > (1 << 24) || ow > (1 << 24))
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: convtranspose '%s': input %lldx%lld with padding %d,%d,%d,%d gives an "
                       "output of %lldx%lld", source, l->line, l->name, (long long)in.dims[1], (long long)in.dims[2],
                       l->ph, l->pw, l->pbh, l->pbw, (long long)oh, (long long)ow);
    l->out.ndim = 3;
    l->out.dims[0] = l->features;
    l->out.dims[1] = oh;
    l->out.dims[2] = ow;
    conv2d_params p = convtranspose_conv(m, l, 1);
    if (!p.oh || p.oh != in.dims[1] || p.ow != in.dims[2]) /* cannot happen with the checks above */
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: convtranspose '%s': unsupported geometry", source, l->line, l->name);
    int li = (int)(l - m->layers);
    ts_shape ws = {4, {in.dims[0], l->features / l->groups, l->kh, l->kw}};
    if ((l->weight = model_add_tensor(ctx, m, li, "weight", TS_TENSOR_PARAM, &ws)) < 0) return ts_ctx_status(ctx);
    if (l->bias) {
        ts_shape bs = {1, {l->features}};
        if ((l->bias_t = model_add_tensor(ctx, m, li, "bias", TS_TENSOR_PARAM, &bs)) < 0) return ts_ctx_status(ctx);
    }
    return TS_OK;
}

int64_t convtranspose_macs(const ts_model *m, const layer *l) {
    const ts_shape *in = input_shape(m, l, 0);
    return in->dims[0] * in->dims[1] * in->dims[2] * (l->features / l->groups) * l->kh * l->kw;
}

size_t convtranspose_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    conv2d_params p = convtranspose_conv(m, l, n);
    return ops_conv2d_scratch_size(ctx, &p);
}

ts_status convtranspose_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    conv2d_params p = convtranspose_conv(m, l, m->exec.n);
    float *out = m->exec.ls[li].out;
    ts_status st = ops_conv2d_backward_data(ctx, &p, out, layer_input(m, li, 0), tensor_data(m, l->weight),
                                            m->exec.scratch);
    if (st) return st;
    if (l->bias)
        channel_bias_add_ref(p.n, p.c, (size_t)p.h * (size_t)p.w, out, tensor_data(m, l->bias_t),
                             ts_ctx_threads(ctx));
    return TS_OK;
}

ts_status convtranspose_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    conv2d_params p = convtranspose_conv(m, l, m->exec.n);
    const float *dout = m->exec.ls[li].grad, *x = layer_input(m, li, 0);
    /* the conv's "input" is this layer's output gradient, its "output gradient" x */
    ts_status st = ops_conv2d_backward_weights(ctx, &p, tensor_grad(m, l->weight), NULL, x, dout, m->exec.scratch);
    if (st) return st;
    if (l->bias)
        channel_bias_grad_ref(p.n, p.c, (size_t)p.h * (size_t)p.w, tensor_grad(m, l->bias_t), dout,
                              ts_ctx_threads(ctx));
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    st = ops_conv2d_forward(ctx, &p, din, dout, tensor_data(m, l->weight), NULL, m->exec.scratch);
    if (st) return st;
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
