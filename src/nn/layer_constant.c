/* constant: every sample's output is the buffer `<name>.value` (shape=...). Its one
 * input only sets the batch size; ONNX graphs that combine a stored tensor with
 * computed values (Concat of a constant, Sum of constants and activations) need it. */
#include "layers.h"

#include <string.h>

ts_status constant_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {
    if (l->ninputs != 1)
        return ts_fail(ctx, TS_EFORMAT, "%s:%d: constant '%s' takes exactly one input (for the batch size), got %d",
                       source, l->line, l->name, l->ninputs);
    l->out = l->tshape;
    int li = (int)(l - m->layers);
    l->konst = model_add_tensor(ctx, m, li, "value", TS_TENSOR_BUFFER, &l->out);
    return l->konst < 0 ? ts_ctx_status(ctx) : TS_OK;
}

/* out: (N, shape) = value repeated */
ts_status constant_forward(ts_ctx *ctx, ts_model *m, int li) {
    (void)ctx;
    layer *l = &m->layers[li];
    size_t per = (size_t)shape_numel(&l->out);
    const float *v = tensor_data(m, l->konst);
    float *out = m->exec.ls[li].out;
    for (int i = 0; i < m->exec.n; i++) memcpy(out + (size_t)i * per, v, per * sizeof *v);
    return TS_OK;
}

/* the output does not depend on the input: its gradient is zero */
ts_status constant_backward(ts_ctx *ctx, ts_model *m, int li) {
    float *din = layer_input_grad(m, li, 0);
    if (!din) return TS_OK;
    int src = m->layers[li].inputs[0];
    memset(din, 0, (size_t)m->exec.n * (size_t)shape_numel(&m->layers[src].out) * sizeof *din);
    layer_input_grad_commit(m, li, 0, ts_ctx_threads(ctx));
    return TS_OK;
}
