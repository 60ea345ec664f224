/* Channel shuffles in fused inference. ShuffleNet, as PyTorch exports it, mixes its
 * two branches with concat -> reshape (g, C/g, H, W) -> transpose (1,0,2,3) -> reshape
 * (C,H,W), then splits the result in two along the channels (Slice, imported as pad
 * with negative channel pads). Run layer by layer that is four copies of every value,
 * in NCHW only (a transpose and a crop have no channels-last variant), so the
 * convolutions around them convert their tensors too. Here each crop, or a reshape
 * back to (C,H,W) that something else reads whole, becomes one channel gather
 * straight from the concat's inputs ("a gather"); the concat, the transpose and the
 * reshapes between are not run. A gather keeps its sources' layout, so the network
 * stays channels-last (exec.c, plan_channels_last). Training runs the layers.
 * gather_sources, here too, says what such a gather, or a batch norm reading around a
 * concat (exec.c, plan_bn_concats), reads instead of its graph inputs. */
#include "layers.h"

#include <string.h>

/* Is r2 a reshape to (C,H,W) of a transpose (1,0,2,3) of a reshape to (g, C/g, H, W)
 * of layer x, (C,H,W)? Sets *x_out and *g_out. */
static int shuffle_reshape(const ts_model *m, int r2, int *x_out, int *g_out) {
    const layer *l2 = &m->layers[r2];
    if (l2->kind != LAYER_RESHAPE || l2->out.ndim != 3 || l2->inputs[0] <= 0) return 0;
    const layer *t = &m->layers[l2->inputs[0]];
    if (t->kind != LAYER_TRANSPOSE || t->nperm != 4 || t->perm[0] != 1 || t->perm[1] != 0 || t->perm[2] != 2 ||
        t->perm[3] != 3 || t->inputs[0] <= 0)
        return 0;
    const layer *l1 = &m->layers[t->inputs[0]];
    if (l1->kind != LAYER_RESHAPE || l1->out.ndim != 4 || l1->inputs[0] <= 0) return 0;
    const int x = l1->inputs[0];
    const ts_shape *xs = &m->layers[x].out, *s1 = &l1->out;
    if (xs->ndim != 3 || s1->dims[0] * s1->dims[1] != xs->dims[0] || s1->dims[2] != xs->dims[1] ||
        s1->dims[3] != xs->dims[2])
        return 0;
    for (int d = 0; d < 3; d++)
        if (l2->out.dims[d] != xs->dims[d]) return 0;
    *x_out = x;
    *g_out = (int)s1->dims[0];
    return 1;
}

/* A pad that only crops the channels of a (C,H,W) tensor. */
static int channel_crop(const layer *p) {
    return p->kind == LAYER_PAD && p->npads == 6 && p->pad_mode == PAD_CONSTANT && p->pads[0] <= 0 &&
           p->pads[3] <= 0 && !p->pads[1] && !p->pads[2] && !p->pads[4] && !p->pads[5];
}

void plan_shuffles(ts_model *m, const int *uses) {
    exec_state *e = &m->exec;
    const int n = m->nlayers;
    for (int t = 1; t < n - 1; t++) {
        const layer *lt = &m->layers[t];
        if (lt->kind != LAYER_TRANSPOSE || e->fuse_skip[t] || uses[lt->inputs[0]] != 1) continue;
        /* every reader of the transpose a reshape back to (C,H,W): the shuffle is all it feeds */
        int ok = uses[t] > 0, x = 0, g = 0;
        for (int r = t + 1; ok && r < n; r++)
            for (int k = 0; ok && k < m->layers[r].ninputs; k++)
                if (m->layers[r].inputs[k] == t) ok = r < n - 1 && shuffle_reshape(m, r, &x, &g);
        if (!ok) continue;
        int first = 0; /* the first gather: the skipped layers count as its part in a profile */
        for (int r2 = t + 1; r2 < n; r2++) {
            if (m->layers[r2].inputs[0] != t || m->layers[r2].kind != LAYER_RESHAPE) continue;
            int whole = uses[r2] == 0; /* someone reads the shuffled tensor as it is */
            for (int p = r2 + 1; p < n; p++)
                for (int k = 0; k < m->layers[p].ninputs; k++) {
                    if (m->layers[p].inputs[k] != r2) continue;
                    if (channel_crop(&m->layers[p]) && m->layers[p].ninputs == 1) {
                        e->shuffle_from[p] = x;
                        if (!first || p < first) first = p;
                    } else {
                        whole = 1;
                    }
                }
            if (whole) {
                e->shuffle_from[r2] = x;
                if (!first || r2 < first) first = r2;
            } else {
                e->fuse_skip[r2] = 1;
            }
        }
        const int r1 = lt->inputs[0];
        e->fuse_skip[t] = e->fuse_skip[r1] = 1;
        e->fuse_head[t] = e->fuse_head[r1] = first;
        for (int r2 = t + 1; r2 < n; r2++)
            if (m->layers[r2].inputs[0] == t && e->fuse_skip[r2]) e->fuse_head[r2] = first;
    }
    /* a concatenation read only by shuffles is not run: its gathers read its inputs */
    for (int x = 1; x < n - 1; x++) {
        const layer *c = &m->layers[x];
        if (c->kind != LAYER_CONCAT || c->axis != 0 || e->fuse_skip[x] || !uses[x]) continue;
        int all = 1, head = 0;
        for (int r = x + 1; all && r < n; r++)
            for (int k = 0; k < m->layers[r].ninputs; k++)
                if (m->layers[r].inputs[k] == x) {
                    all = m->layers[r].kind == LAYER_RESHAPE && e->fuse_skip[r] && e->fuse_head[r];
                    if (all && !head) head = e->fuse_head[r];
                }
        for (int k = 0; all && k < c->ninputs; k++) all = c->inputs[k] > 0;
        if (!all) continue;
        e->fuse_skip[x] = 1;
        e->fuse_head[x] = head;
    }
}

/* The inputs of concat x into src: their count. */
static int concat_inputs(const ts_model *m, int x, int *src) {
    const layer *c = &m->layers[x];
    memcpy(src, c->inputs, (size_t)c->ninputs * sizeof *src);
    return c->ninputs;
}

/* Gather li's sources into src: the concat's inputs when the concat is not run, else
 * the shuffled tensor itself; 0 when li is no gather. */
static int shuffle_sources(const ts_model *m, int li, int *src) {
    const exec_state *e = &m->exec;
    const int x = e->shuffle_from[li];
    if (!x) return 0;
    if (m->layers[x].kind == LAYER_CONCAT && e->fuse_skip[x]) return concat_inputs(m, x, src);
    src[0] = x;
    return 1;
}

int gather_sources(const ts_model *m, int li, int *src) {
    const exec_state *e = &m->exec;
    if (e->bn_concat && e->bn_concat[li]) return concat_inputs(m, e->bn_concat[li], src);
    return e->shuffle_from ? shuffle_sources(m, li, src) : 0;
}

/* Gather li: out (N, hi-lo, H, W) or channels-last (N, H, W, hi-lo) from the sources
 * (N, C_k, H, W) or (N, H, W, C_k), in the same layout: output channel j is channel
 * s = lo + j of the shuffled tensor, channel (s mod g) * (C/g) + s / g of the
 * concatenation of the sources. */
ts_status shuffle_forward(ts_ctx *ctx, ts_model *m, int li) {
    exec_state *e = &m->exec;
    const layer *l = &m->layers[li];
    const int r2 = l->kind == LAYER_PAD ? l->inputs[0] : li;
    const int x = e->shuffle_from[li];
    /* two reshapes of one transpose share its buffer, and an earlier one filled it in
     * this pass (unless the pass left it out) */
    for (int r = m->layers[r2].inputs[0] + 1; r < li && l->kind == LAYER_RESHAPE; r++)
        if (m->layers[r].kind == LAYER_RESHAPE && m->layers[r].inputs[0] == l->inputs[0] && e->shuffle_from[r] &&
            !(e->skip_now && e->skip_now[r]))
            return TS_OK;
    const int g = (int)m->layers[m->layers[m->layers[r2].inputs[0]].inputs[0]].out.dims[0];
    const int64_t C = m->layers[x].out.dims[0], hw = m->layers[x].out.dims[1] * m->layers[x].out.dims[2];
    const int lo = l->kind == LAYER_PAD ? -l->pads[0] : 0, co = (int)l->out.dims[0];
    int src[LAYER_MAX_INPUTS];
    const int ns = shuffle_sources(m, li, src);
    const float *sp[LAYER_MAX_INPUTS];
    int64_t sc[LAYER_MAX_INPUTS];
    for (int k = 0; k < ns; k++) {
        sp[k] = e->ls[src[k]].out;
        sc[k] = m->layers[src[k]].out.dims[0];
    }
    /* (source, channel) of each output channel */
    int *map = ts_alloc(ctx, 2 * (size_t)co * sizeof *map, "channel shuffle map");
    if (!map) return TS_ENOMEM;
    for (int j = 0; j < co; j++) {
        const int64_t s = lo + j, cat = (s % g) * (C / g) + s / g;
        int k = 0;
        int64_t base = 0;
        while (cat >= base + sc[k]) base += sc[k++];
        map[2 * j] = k;
        map[2 * j + 1] = (int)(cat - base);
    }
    float *out = e->ls[li].out;
    const int64_t nn = e->n;
    const int threads = ts_ctx_threads(ctx);
    if (layer_cl(m, li)) {
        /* each position a row: out row (co) from the source rows (C_k) */
        const int64_t rows = nn * hw;
        /* ShuffleNet's case: g sources of C/g channels each, an aligned range */
        int even = ns == g && lo % g == 0 && co % g == 0;
        for (int k = 0; even && k < ns; k++) even = sc[k] == C / g;
        if (even && g == 2) {
            const int64_t c = C / 2, i0 = lo / 2, ni = co / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                const float *a = sp[0] + r * c + i0, *b = sp[1] + r * c + i0;
                float *o = out + r * co;
                for (int64_t i = 0; i < ni; i++) {
                    o[2 * i] = a[i];
                    o[2 * i + 1] = b[i];
                }
            }
        } else {
#pragma omp parallel for num_threads(threads) schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                float *o = out + r * co;
                for (int j = 0; j < co; j++) o[j] = sp[map[2 * j]][r * sc[map[2 * j]] + map[2 * j + 1]];
            }
        }
    } else {
        /* each (sample, channel) a plane of H*W */
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t q = 0; q < nn * co; q++) {
            const int64_t s = q / co, j = q % co;
            const int k = map[2 * j];
            memcpy(out + q * hw, sp[k] + (s * sc[k] + map[2 * j + 1]) * hw, (size_t)hw * sizeof(float));
        }
    }
    ts_free(map);
    return TS_OK;
}
