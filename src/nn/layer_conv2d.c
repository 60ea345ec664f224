/* conv2d layer: weight (K, C/groups, KH, KW), optional bias (K). */
#include "layers.h"

/* the kernel geometry of a conv2d or convtranspose layer l, for a convolution of
 * (n, c, h, w) into k channels */
conv2d_params layer_conv_geometry(const layer *l, int n, int c, int h, int w, int k) {
    conv2d_params p = {0};
    p.n = n;
    p.c = c;
    p.h = h;
    p.w = w;
    p.k = k;
    p.kh = l->kh;
    p.kw = l->kw;
    p.sh = l->sh;
    p.sw = l->sw;
    p.ph = l->ph;
    p.pw = l->pw;
    p.pbh = l->pbh;
    p.pbw = l->pbw;
    p.dh = l->dh;
    p.dw = l->dw;
    p.groups = l->groups;
    conv2d_params_finish(&p);
    return p;
}

conv2d_params layer_conv_params(const ts_model *m, const layer *l, int n) {
    const ts_shape *in = input_shape(m, l, 0);
    return layer_conv_geometry(l, n, (int)in->dims[0], (int)in->dims[1], (int)in->dims[2], l->features);
}

ts_status conv2d_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    ts_shape in;
    ts_status st = expect_image_input(ctx, m, l, source, &in);
    if (st) return st;
    if (in.dims[0] % l->groups || l->features % l->groups)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: conv2d '%s': groups=%d must divide input channels %lld and out=%d",
                       source, l->line, l->name, l->groups, (long long)in.dims[0], l->features);
    conv2d_params p = layer_conv_params(m, l, 1);
    if (!conv2d_params_finish(&p))
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: conv2d '%s': kernel %dx%d (dilation %dx%d) does not fit input %lldx%lld "
                       "with padding %d,%d,%d,%d", source, l->line, l->name, l->kh, l->kw, l->dh, l->dw,
                       (long long)in.dims[1], (long long)in.dims[2], l->ph, l->pw, l->pbh, l->pbw);
    l->out.ndim = 3;
    l->out.dims[0] = l->features;
    l->out.dims[1] = p.oh;
    l->out.dims[2] = p.ow;
    int li = (int)(l - m->layers);
    ts_shape ws = {4, {l->features, in.dims[0] / l->groups, l->kh, l->kw}};
    if ((l->weight = model_add_tensor(ctx, m, li, "weight", TS_TENSOR_PARAM, &ws)) < 0) return ts_ctx_status(ctx);
    if (l->bias) {
        ts_shape bs = {1, {l->features}};
        if ((l->bias_t = model_add_tensor(ctx, m, li, "bias", TS_TENSOR_PARAM, &bs)) < 0) return ts_ctx_status(ctx);
    }
    return TS_OK;
}

int64_t conv2d_macs(const ts_model *m, const layer *l) {
    const ts_shape *in = input_shape(m, l, 0);
    return l->out.dims[0] * l->out.dims[1] * l->out.dims[2] * (in->dims[0] / l->groups) * l->kh * l->kw;
}

size_t conv2d_scratch(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    conv2d_params p = layer_conv_params(m, l, n);
    return ops_conv2d_scratch_size(ctx, &p);
}

ts_status conv2d_forward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    conv2d_params p = layer_conv_params(m, l, m->exec.n);
    const float *bias = l->bias ? tensor_data(m, l->bias_t) : NULL;
    float qs;
    int u8;
    p.src_blocked = layer_blk(m, l->inputs[0]);
    p.dst_blocked = layer_blk(m, li);
    if (m->exec.train || !model_quant_layer(m, li, &qs, &u8))
        return ops_conv2d_forward(ctx, &p, m->exec.ls[li].out, layer_input(m, li, 0), tensor_data(m, l->weight), bias,
                                  m->exec.scratch);
    /* int8 inference, unfused (the reference backend, captures): the quantized values
     * of the input and of each output channel's weights, in fp32 (ops/quant_ref.c) */
    const size_t nx = (size_t)p.n * (size_t)p.c * (size_t)p.h * (size_t)p.w, nw = (size_t)m->tensors[l->weight].numel;
    float *xq = ts_alloc(ctx, (nx + nw) * sizeof *xq, "an int8 convolution's operands");
    if (!xq) return TS_ENOMEM;
    quantize_fake_ref(nx, xq, layer_input(m, li, 0), qs, u8, ts_ctx_threads(ctx));
    quantize_weights_ref(p.k, (int64_t)(nw / (size_t)p.k), xq + nx, NULL, tensor_data(m, l->weight));
    ts_status st = ops_conv2d_forward(ctx, &p, m->exec.ls[li].out, xq, xq + nx, bias, m->exec.scratch);
    ts_free(xq);
    return st;
}

ts_status conv2d_backward(ts_ctx *ctx, ts_model *m, int li) {
    layer *l = &m->layers[li];
    conv2d_params p = layer_conv_params(m, l, m->exec.n);
    p.src_blocked = layer_blk(m, l->inputs[0]);
    p.dst_blocked = layer_blk(m, li);
    float *din = layer_input_grad(m, li, 0); /* NULL: the input needs no gradient */
    ts_status st = ops_conv2d_backward(ctx, &p, din, tensor_grad(m, l->weight),
                                       l->bias ? tensor_grad(m, l->bias_t) : NULL, m->exec.ls[li].grad,
                                       layer_input(m, li, 0), tensor_data(m, l->weight), m->exec.scratch);
    if (st || !din) return st;
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
