/* Training passes that keep activations in oneDNN's blocked layout, nChw16c, between
 * the layers that can read and write it, instead of reordering every convolution's
 * input, output and their gradients to and from NCHW (104 activation reorders, 37.5 of
 * the 280 ms of a ResNet-20 training step on one thread).
 *
 * A layer output (and its gradient) is blocked when:
 *   - it is a 3-D (C,H,W) output. When C is not a multiple of 16 (a pruned network's
 *     widths), nChw16c pads it to one with zeros: a training plan sizes the buffers of
 *     the layers a pass may block for that (layer_may_block, blk_numel), oneDNN's
 *     kernels write zeros there and ours do too, and the element-wise layers run over
 *     the padded count (layer_count). A padded output is not blocked where the padding
 *     would add more than half, nor where a zero would not stay zero (a sigmoid);
 *   - a convolution, a batch norm, an element-wise activation, an add or a max pool
 *     (undilated) produces it;
 *   - every layer that reads it is one of those or a global average pool;
 *   - it is not the logits or the early exit's (the losses read those);
 *   - and the layers that follow their input's layout (batch norm, activation, add,
 *     max pool) have it for their output and every input alike (a fixed point).
 * Only on oneDNN kernels (the convolutions need them), and not with synchronized batch
 * norm (its sums over the ranks are NCHW kernels'). Compressed activations hold a
 * blocked output in NCHW order (act_compress.c). Everything else, and every inference
 * pass, sees NCHW. */
#include "layers.h"

#include <stdlib.h>
#include <string.h>

static int spatial16(const ts_shape *s) { return s->ndim == 3 && s->dims[0] > 0 && s->dims[0] % 16 == 0; }

/* May layer li's output be nChw16c, its channels padded if need be? Padded only where
 * the padding costs at most half the values (C = 11..15, 22..31, ...: a pruned
 * network's widths; 4 channels would take 4x their memory). */
static int blockable(const ts_model *m, int li) {
    const layer *l = &m->layers[li];
    if (spatial16(&l->out)) return 1;
    const int64_t c = l->out.ndim == 3 ? l->out.dims[0] : 0;
    return c > 0 && 2 * ((c + 15) / 16 * 16) <= 3 * c && l->kind != LAYER_SIGMOID;
}

/* Does layer li write its output in its input's layout (element by element, per
 * channel, or a max pool's windows per channel)? Dilated max pools are left out:
 * oneDNN has no kernel when a window misses the input (pool2d_dnnl.c). */
static int follows_input(const ts_model *m, int li) {
    const layer *l = &m->layers[li];
    return l->kind == LAYER_BATCHNORM || l->kind == LAYER_ADD || LAYER_OPS[l->kind].forward == activation_forward ||
           (l->kind == LAYER_MAXPOOL && l->dh == 1 && l->dw == 1);
}

static int reads_blocked(const ts_model *m, int li) {
    const layer *l = &m->layers[li];
    return l->kind == LAYER_CONV2D || l->kind == LAYER_GLOBALAVGPOOL || follows_input(m, li);
}

ts_status plan_blocked_candidates(ts_ctx *ctx, ts_model *m) {
    exec_state *e = &m->exec;
    const int n = m->nlayers;
    if (!(e->blk_may = calloc((size_t)n, 1)) || !(e->blk = calloc((size_t)n, 1)))
        return ts_fail(ctx, TS_ENOMEM, "out of memory planning training layouts");
    char *b = e->blk_may; /* b[0], the caller's input, stays 0 */
    for (int li = 1; li < n; li++)
        b[li] = li != n - 1 && li != m->exit_layer && blockable(m, li) &&
                (m->layers[li].kind == LAYER_CONV2D || follows_input(m, li));
    for (int li = 1; li < n; li++)
        if (!reads_blocked(m, li))
            for (int k = 0; k < m->layers[li].ninputs; k++) b[m->layers[li].inputs[k]] = 0;
    return TS_OK;
}

size_t blocked_scratch_bytes(const ts_model *m, int cap) {
    size_t most = 0;
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        if (l->kind != LAYER_BATCHNORM || !layer_may_block(m, li)) continue;
        const size_t b = sizeof(double) * BN_BLOCKED_PART(cap, l->out.dims[0]);
        if (b > most) most = b;
    }
    return most;
}

void plan_blocked(const ts_ctx *ctx, ts_model *m) {
    exec_state *e = &m->exec;
    e->blk_now = NULL;
    if (!e->blk || !ops_fusion_enabled(ctx) || m->sync_bn) return;
    const int n = m->nlayers;
    char *b = e->blk;
    memcpy(b, e->blk_may, (size_t)n); /* then only cleared */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int li = 1; li < n; li++) {
            if (!follows_input(m, li)) continue;
            const layer *l = &m->layers[li];
            int all = b[li];
            for (int k = 0; k < l->ninputs; k++) all &= b[l->inputs[k]];
            if (all) continue;
            changed |= b[li];
            b[li] = 0;
            for (int k = 0; k < l->ninputs; k++) changed |= b[l->inputs[k]], b[l->inputs[k]] = 0;
        }
    }
    for (int li = 1; li < n; li++)
        if (b[li]) {
            e->blk_now = b;
            return;
        }
}
