/* Where a model's cost goes, counted the way Sze et al. ask for (Efficient Processing
 * of Deep Neural Networks, 2017): multiply-accumulates, and beside them the bytes a
 * layer must move at least once (its inputs read, its output written, its weights
 * read), whose ratio is the arithmetic intensity that decides, against the machine's
 * measured roofline (ops/machine.c), whether a layer can be compute-bound at all. */
#include "nn.h"

#include "../ops/ops.h"
#include "layers.h"

#include <string.h>

ts_status ts_model_layer_cost(const ts_model *m, int index, ts_layer_cost *out) {
    if (!m || !out || index < 0 || index >= m->nlayers) return TS_EINVAL;
    const layer *l = &m->layers[index];
    memset(out, 0, sizeof *out);
    if (l->kind == LAYER_INPUT) return TS_OK;
    out->macs = LAYER_OPS[l->kind].macs(m, l);
    for (int t = 0; t < m->ntensors; t++) {
        if (m->tensors[t].layer != index) continue;
        if (m->tensors[t].role == TS_TENSOR_PARAM) out->params += m->tensors[t].numel;
        out->weight_bytes += m->tensors[t].numel * (int64_t)sizeof(float);
    }
    /* a reshape or flatten of a computed layer shares its input's buffer: no traffic */
    if ((l->kind == LAYER_RESHAPE || l->kind == LAYER_FLATTEN) && l->inputs[0] > 0) return TS_OK;
    for (int k = 0; k < l->ninputs; k++) {
        const layer *in = &m->layers[l->inputs[k]];
        int64_t e = in->kind == LAYER_INPUT ? shape_numel(&m->input) : shape_numel(&in->out);
        /* a second input that is an integer side input (token ids) is counted all the same */
        out->in_bytes += e * (int64_t)sizeof(float);
    }
    out->out_bytes = shape_numel(&l->out) * (int64_t)sizeof(float);
    return TS_OK;
}

ts_status ts_machine_roofline(ts_ctx *ctx, ts_roofline *out) {
    if (!ctx || !out) return ts_fail(ctx, TS_EINVAL, "ts_machine_roofline: bad argument");
    memset(out, 0, sizeof *out);
    out->threads = ts_ctx_threads(ctx);
    ts_status st = ts_threads_start(ctx, out->threads);
    if (!st) st = machine_fma_gflops(ctx, &out->peak_gflops);
    if (!st) st = machine_peak_gflops(ctx, ctx->backend == TS_BACKEND_DNNL, &out->gemm_gflops);
    if (!st) st = machine_bandwidth_gbs(ctx, &out->bandwidth_gbs);
    if (st) return st;
    out->ridge = out->bandwidth_gbs > 0 ? out->peak_gflops / out->bandwidth_gbs : 0.0;
    return TS_OK;
}
