/* Execution: activation and gradient buffers planned once per batch capacity,
 * forward in inference or training mode, backward with gradient accumulation for
 * tensors that feed several layers. */
#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Packed inference heads (conv2d_packed_*): built on the first inference for a
 * (batch size, thread count, bf16) and kept until the weights change. Two sets are
 * kept, so that a loop alternating full and final partial batches does not rebuild. */
#define PACKED_SETS 2
typedef struct exec_packed {
    int stale; /* set by exec_weights_changed */
    struct {
        conv2d_packed_set *set;
        int n, threads, bf16, wino;
        int cl; /* heads read and write channels-last where e->cl says (every head packed) */
        uint64_t used;
    } e[PACKED_SETS];
    uint64_t clock;
} exec_packed;

static void packed_free(exec_packed *p) {
    if (!p) return;
    for (int i = 0; i < PACKED_SETS; i++) conv2d_packed_set_free(p->e[i].set);
    free(p);
}

void exec_weights_changed(const ts_model *m) {
    if (m && m->exec.packed) m->exec.packed->stale = 1;
    for (int i = 0; m && i < FREE_HW_VIEWS; i++) exec_weights_changed(m->hw_view[i]); /* they share the weights */
}

void exec_release(exec_state *e) {
    if (e->ls) {
        /* layer 0 (input) owns only its grad */
        for (int i = 0; e->ls && i < e->nls; i++) {
            if (!e->ls[i].alias && !e->ls[i].in_arena) ts_free(e->ls[i].out);
            ts_free(e->ls[i].aux);
        }
    }
    free(e->ls);
    free(e->fuse_last);
    free(e->fuse_skip);
    free(e->fuse_bn);
    free(e->fuse_act);
    free(e->fuse_res);
    free(e->cl);
    free(e->blk);
    free(e->blk_may);
    free(e->fuse_head);
    free(e->shuffle_from);
    free(e->bn_concat);
    free(e->chain_last);
    free(e->chain_skip);
    free(e->bn_relu);
    free(e->bn_relu_on);
    packed_free(e->packed);
    act_plan_free(e->act);
    ts_free(e->fold);
    ts_free(e->grad_arena);
    ts_free(e->infer_arena);
    ts_free(e->scratch);
    ts_free(e->accum);
    memset(e, 0, sizeof *e);
}

/* padded: room for the shape in nChw16c (blk_numel), as a training pass may keep it
 * (layer_may_block) */
static size_t floats_bytes(int n, const ts_shape *s, int padded, int *ok) {
    size_t b;
    const int64_t per = padded ? blk_numel(s) : shape_numel(s);
    if (!ts_mul_size((size_t)n, (size_t)per, &b) || !ts_mul_size(b, sizeof(float), &b)) *ok = 0;
    return b;
}

/* Gradient buffers share one arena. Backward runs from the last layer down, so
 * layer li's gradient is live from the backward of its last consumer (the first
 * to write it) through its own backward: the layer-index interval [li, last
 * consumer]. Buffers whose intervals overlap get disjoint memory, the others may
 * share it (greedy placement, largest first); in a ResNet only a few gradients are
 * live at a time, so this removes most of the gradient memory. */
typedef struct grad_slot {
    int layer, first, last;
    size_t bytes, offset;
} grad_slot;

static int slot_by_size(const void *a, const void *b) {
    const grad_slot *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->layer - y->layer;
}

/* Sorts the n slots largest first and gives each the lowest offset clear of every
 * slot placed before it whose interval [first, last] overlaps its own; returns the
 * bytes they span. */
static size_t place_slots(grad_slot *slots, int n) {
    qsort(slots, (size_t)n, sizeof *slots, slot_by_size);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int j = 0; j < i; j++) {
                const grad_slot *p = &slots[j];
                int overlap = p->first <= slots[i].last && slots[i].first <= p->last;
                if (overlap && off < p->offset + p->bytes && p->offset < off + slots[i].bytes) {
                    off = p->offset + p->bytes;
                    again = 1;
                }
            }
        }
        slots[i].offset = off;
        if (off + slots[i].bytes > total) total = off + slots[i].bytes;
    }
    for (int i = 0; i < n; i++) /* apart from every slot live at the same time */
        for (int j = 0; j < i; j++)
            TS_ASSERT(slots[j].first > slots[i].last || slots[i].first > slots[j].last ||
                      slots[j].offset + slots[j].bytes <= slots[i].offset ||
                      slots[i].offset + slots[i].bytes <= slots[j].offset);
    return total;
}

static ts_status plan_grads(ts_ctx *ctx, ts_model *m, int cap) {
    exec_state *e = &m->exec;
    int n = m->nlayers - 1;
    grad_slot *slots = calloc((size_t)(n > 0 ? n : 1), sizeof *slots);
    if (!slots) return ts_fail(ctx, TS_ENOMEM, "out of memory planning gradient buffers");
    int ok = 1;
    for (int li = 1; li < m->nlayers; li++) {
        grad_slot *g = &slots[li - 1];
        g->layer = g->first = g->last = li;
        g->bytes = (floats_bytes(cap, &m->layers[li].out, layer_may_block(m, li), &ok) + 63) & ~(size_t)63;
    }
    for (int li = 1; li < m->nlayers; li++)
        for (int k = 0; k < m->layers[li].ninputs; k++) {
            int src = m->layers[li].inputs[k];
            if (src > 0 && slots[src - 1].last < li) slots[src - 1].last = li;
        }
    /* the early exit's gradient is written before the backward starts */
    if (m->exit_layer) slots[m->exit_layer - 1].last = m->nlayers - 1;
    /* a batch norm fused with its ReLU in training reads the ReLU's gradient in its
     * own backward, at index li: that gradient lives down to li */
    for (int li = 1; li < m->nlayers; li++)
        if (e->bn_relu && e->bn_relu[li]) slots[e->bn_relu[li] - 1].first = li;
    const size_t total = place_slots(slots, n);
    e->grad_arena = total ? ts_alloc(ctx, total, "gradient buffers") : NULL;
    if (total && !e->grad_arena) {
        free(slots);
        return TS_ENOMEM;
    }
    e->grad_arena_bytes = total;
    for (int i = 0; i < n; i++) e->ls[slots[i].layer].grad = (float *)((char *)e->grad_arena + slots[i].offset);
    free(slots);
    return TS_OK;
}

/* Heads for inference fusion: a conv2d, then the batch norm that is its only
 * consumer (if any), then an activation that reads only that (if any): ReLU, clip,
 * hardswish, or x * sigmoid(x) / x * hardsigmoid(x; 1/6, 1/2) written as a sigmoid
 * and a multiplication (SiLU and hardswish as ONNX exports them). Any other conv2d is
 * a head alone (its weights packed once). The convolution then writes the last fused
 * layer's output directly (docs/design.md, "Inference fusion"). */

/* Is l the gate of x * gate(x): a sigmoid, or ONNX's hardsigmoid with PyTorch's 1/6 and
 * 1/2 (Hardswish exported before opset 14)? */
static conv_act_kind gate_kind(const layer *l) {
    if (l->kind == LAYER_SIGMOID) return CONV_ACT_SWISH;
    if (l->kind == LAYER_HARDSIGMOID && l->alpha == 1.0f / 6.0f && l->beta == 0.5f) return CONV_ACT_HARDSWISH;
    return CONV_ACT_NONE;
}

/* The activation that reads layer x (and nothing else reads x), as a post-op: sets
 * *act, *gate (the sigmoid of a swish, else 0) and returns its last layer, or x
 * when there is none. */
static int fusable_activation(const ts_model *m, const int *uses, const int *only, int x, conv_act *act, int *gate) {
    *act = (conv_act){CONV_ACT_NONE, 0.0f, 0.0f, 0};
    *gate = 0;
    if (uses[x] == 1) {
        const layer *a = &m->layers[only[x]];
        if (a->kind == LAYER_RELU) *act = (conv_act){CONV_ACT_CLAMP, 0.0f, INFINITY, 0};
        else if (a->kind == LAYER_CLIP) *act = (conv_act){CONV_ACT_CLAMP, a->lo, a->hi, 0};
        else if (a->kind == LAYER_HARDSWISH) *act = (conv_act){CONV_ACT_HARDSWISH, 0.0f, 0.0f, 0};
        return act->kind ? only[x] : x;
    }
    if (uses[x] != 2) return x;
    /* x * g(x): g reads x and only the product reads g; the product reads x and g */
    for (int g = x + 1; g < m->nlayers; g++) {
        const layer *gl = &m->layers[g];
        if (gl->ninputs != 1 || gl->inputs[0] != x || uses[g] != 1 || !gate_kind(gl)) continue;
        const layer *p = &m->layers[only[g]];
        if (p->kind != LAYER_BINARY || p->op != BINARY_MUL || p->ninputs != 2 || p->tshape.ndim != 0) return x;
        if (!((p->inputs[0] == x && p->inputs[1] == g) || (p->inputs[0] == g && p->inputs[1] == x))) return x;
        *act = (conv_act){gate_kind(gl), 0.0f, 0.0f, 0};
        *gate = g;
        return only[g];
    }
    return x;
}

/* Layers that compute each element from the same element of their inputs, whatever
 * the order of the elements: they run on channels-last tensors unchanged. */
static int layout_free(const layer *l) {
    switch (l->kind) {
    case LAYER_RELU: case LAYER_LEAKYRELU: case LAYER_SIGMOID: case LAYER_TANH: case LAYER_ELU: case LAYER_SELU:
    case LAYER_HARDSIGMOID: case LAYER_CLIP: case LAYER_HARDSWISH: case LAYER_SQRT: case LAYER_ERF: case LAYER_POW:
    case LAYER_ADD:
        return 1;
    default:
        return 0;
    }
}

/* Layers with a channels-last variant in inference whose output is in the order of
 * their input: the layout-free ones, binary (walks each operand by its own strides),
 * pooling (oneDNN's, on nhwc), concat (rows of (N,H,W) positions) and batch norm
 * (each position a row of C). */
static int follows_layout(const layer *l) {
    return layout_free(l) || l->kind == LAYER_BINARY || l->kind == LAYER_MAXPOOL || l->kind == LAYER_AVGPOOL ||
           l->kind == LAYER_CONCAT || l->kind == LAYER_BATCHNORM;
}

/* A per-sample (C,H,W) output with more than one position: the only kind whose
 * channels-last order differs from NCHW. */
static int spatial_tensor(const layer *l) {
    return l->out.ndim == 3 && l->out.dims[1] * l->out.dims[2] > 1;
}

/* Which outputs fused inference keeps channels-last, (N,H,W,C) (e->cl). oneDNN's
 * convolutions want that order, so a network of convolutions and the layers that
 * follow their input's layout (element-wise ones, squeeze-excitation products,
 * residual additions, pooling, concatenation, batch norm, channel-shuffle gathers)
 * runs without converting its activations at all. A candidate is a head's output or such a layer's; it stays one
 * while everything that reads it takes channels-last (a head, a global average pool,
 * or a following layer itself channels-last or with a single position out), and a
 * following layer stays one while its spatial inputs are. The network's output is
 * NCHW. Decided once per plan, to a fixed point (each round only clears flags). */
static void plan_channels_last(ts_model *m) {
    exec_state *e = &m->exec;
    const int n = m->nlayers;
    for (int l = 1; l < n - 1; l++) {
        const layer *x = &m->layers[l];
        const int head_out = e->fuse_head[l] && e->fuse_last[e->fuse_head[l]] == l;
        const int runs = head_out || !e->fuse_skip[l]; /* its output is written */
        e->cl[l] = (char)(runs && spatial_tensor(x) && (head_out || follows_layout(x) || e->shuffle_from[l]));
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int r = 1; r < n; r++) {
            const layer *x = &m->layers[r];
            if (e->fuse_last[r] || e->fuse_skip[r]) continue; /* a head, or inside one */
            if (x->kind == LAYER_GLOBALAVGPOOL) continue;     /* reads either order */
            int srcs[LAYER_MAX_INPUTS], ns = gather_sources(m, r, srcs); /* a skipped concat's inputs */
            const int follows = ns || follows_layout(x);
            if (!ns) {
                ns = x->ninputs;
                memcpy(srcs, x->inputs, (size_t)ns * sizeof *srcs);
            }
            for (int k = 0; k < ns; k++) {
                const int src = srcs[k];
                if (follows && spatial_tensor(&m->layers[src]) && e->cl[src] != e->cl[r] &&
                    (e->cl[r] || spatial_tensor(x))) {
                    e->cl[src] = e->cl[r] = 0; /* one order for all of its spatial operands */
                    changed = 1;
                } else if (!follows && e->cl[src]) {
                    e->cl[src] = 0;
                    changed = 1;
                }
            }
        }
    }
}

/* Is l a binary of its one input and a one-element constant, value v, op `op`? */
static int scalar_binary(ts_model *m, const layer *l, binary_op op, float v) {
    if (l->kind != LAYER_BINARY || l->op != (int)op || l->ninputs != 1 || l->konst < 0) return 0;
    if (shape_numel(&l->tshape) != 1 || (op == BINARY_DIV && l->const_first)) return 0;
    return tensor_data(m, l->konst)[0] == v;
}

/* GELU as PyTorch exports it (nn.GELU, ConvNeXt, ViT): d = x / sqrt 2, erf(d), + 1,
 * x times that, times 1/2; each read only by the next. Returns the last layer of the
 * chain that starts at d, or 0. */
static int gelu_chain(ts_model *m, const int *uses, const int *only, int d) {
    const layer *l = &m->layers[d];
    if (!scalar_binary(m, l, BINARY_DIV, 1.41421356f) || uses[d] != 1) return 0;
    const int x = l->inputs[0], e = only[d];
    if (m->layers[e].kind != LAYER_ERF || uses[e] != 1) return 0;
    const int a = only[e];
    if (!scalar_binary(m, &m->layers[a], BINARY_ADD, 1.0f) || uses[a] != 1) return 0;
    const layer *p = &m->layers[only[a]];
    if (p->kind != LAYER_BINARY || p->op != BINARY_MUL || p->ninputs != 2 || p->tshape.ndim != 0 || uses[only[a]] != 1)
        return 0;
    if (!((p->inputs[0] == x && p->inputs[1] == a) || (p->inputs[0] == a && p->inputs[1] == x))) return 0;
    const int h = only[only[a]];
    return scalar_binary(m, &m->layers[h], BINARY_MUL, 0.5f) ? h : 0;
}

/* The addition a head's output (x: its convolution or batch norm) goes to alone, as
 * ResNet's conv -> bn -> add(., shortcut) -> relu, when the other operand is already
 * computed (an earlier layer) and written, and no other head took that addition:
 * the add becomes oneDNN's binary post-op, before the activation. Returns it, or 0. */
static int residual_add(const ts_model *m, const int *uses, const int *only, int li, int x) {
    const exec_state *e = &m->exec;
    if (x == m->nlayers - 1 || uses[x] != 1) return 0;
    const int add = only[x];
    const layer *a = &m->layers[add];
    if (a->kind != LAYER_ADD || a->ninputs != 2 || add == m->nlayers - 1 || e->fuse_skip[add]) return 0;
    const int r = a->inputs[0] == x ? a->inputs[1] : a->inputs[0];
    const int r_written = !e->fuse_skip[r] || (e->fuse_head[r] && e->fuse_last[e->fuse_head[r]] == r);
    return r != x && r < li && r_written ? add : 0;
}

/* DenseNet's concat -> batch norm (-> ReLU): a channel concatenation read by a batch
 * norm alone is not run in fused inference; the batch norm reads the concatenation's
 * inputs where they lie (batchnorm_concat_forward) and keeps their layout. */
static void plan_bn_concats(ts_model *m, const int *uses, const int *only) {
    exec_state *e = &m->exec;
    for (int c = 1; c < m->nlayers - 1; c++) {
        const layer *l = &m->layers[c];
        if (l->kind != LAYER_CONCAT || l->axis != 0 || l->out.ndim != 3 || uses[c] != 1 || e->fuse_skip[c]) continue;
        const int b = only[c];
        if (m->layers[b].kind != LAYER_BATCHNORM || e->fuse_skip[b] || e->fuse_head[b]) continue;
        int ok = 1;
        for (int k = 0; ok && k < l->ninputs; k++) ok = l->inputs[k] > 0;
        if (!ok) continue;
        e->bn_concat[b] = c;
        e->fuse_skip[c] = 1;
        e->fuse_head[c] = b;
    }
}

static ts_status plan_fusion(ts_ctx *ctx, ts_model *m) {
    exec_state *e = &m->exec;
    int n = m->nlayers;
    int *uses = calloc((size_t)n, sizeof *uses), *only = calloc((size_t)n, sizeof *only);
    e->fuse_last = calloc((size_t)n, sizeof *e->fuse_last);
    e->fuse_bn = calloc((size_t)n, sizeof *e->fuse_bn);
    e->fuse_act = calloc((size_t)n, sizeof *e->fuse_act);
    e->fuse_res = calloc((size_t)n, sizeof *e->fuse_res);
    e->fuse_skip = calloc((size_t)n, 1);
    e->cl = calloc((size_t)n, 1);
    e->fuse_head = calloc((size_t)n, sizeof *e->fuse_head);
    e->shuffle_from = calloc((size_t)n, sizeof *e->shuffle_from);
    e->bn_concat = calloc((size_t)n, sizeof *e->bn_concat);
    e->chain_last = calloc((size_t)n, sizeof *e->chain_last);
    e->chain_skip = calloc((size_t)n, 1);
    e->bn_relu = calloc((size_t)n, sizeof *e->bn_relu);
    e->bn_relu_on = calloc((size_t)n, 1);
    if (!uses || !only || !e->fuse_last || !e->fuse_bn || !e->fuse_act || !e->fuse_res || !e->fuse_skip || !e->cl ||
        !e->fuse_head || !e->shuffle_from || !e->bn_concat || !e->chain_last || !e->chain_skip || !e->bn_relu || !e->bn_relu_on) {
        free(uses);
        free(only);
        return ts_fail(ctx, TS_ENOMEM, "out of memory planning inference fusion");
    }
    for (int li = 1; li < n; li++)
        for (int k = 0; k < m->layers[li].ninputs; k++) {
            int src = m->layers[li].inputs[k];
            uses[src]++;
            only[src] = li;
        }
    for (int li = 1; li < n - 1; li++)
        if (m->layers[li].kind == LAYER_BATCHNORM && uses[li] == 1 && m->layers[only[li]].kind == LAYER_RELU)
            e->bn_relu[li] = only[li];
    /* element-wise chains run as one kernel: GELU (oneDNN's gelu_erf) */
    for (int li = 1; li < n; li++) {
        const int last = gelu_chain(m, uses, only, li);
        if (!last) continue;
        e->chain_last[li] = last;
        e->fuse_head[li] = li;
        for (int j = only[li];; j = only[j]) { /* erf, + 1, x times, times 1/2 */
            e->chain_skip[j] = 1;
            e->fuse_head[j] = li;
            if (j == last) break;
        }
    }
    size_t fold = 0;
    for (int li = 1; li < n; li++) {
        const layer *c = &m->layers[li];
        if (c->kind != LAYER_CONV2D || li == n - 1) continue;
        int x = li; /* what the activation reads: the convolution or its batch norm */
        if (uses[li] == 1 && m->layers[only[li]].kind == LAYER_BATCHNORM && m->layers[only[li]].ninputs == 1) {
            x = e->fuse_bn[li] = only[li];
            e->fuse_skip[x] = 1;
        }
        const int add = residual_add(m, uses, only, li, x);
        if (add) {
            const layer *a = &m->layers[add];
            e->fuse_res[li] = a->inputs[0] == x ? a->inputs[1] : a->inputs[0];
            e->fuse_skip[add] = 1;
            e->fuse_head[add] = li;
            x = add;
        }
        int gate = 0, last = x == n - 1 ? x : fusable_activation(m, uses, only, x, &e->fuse_act[li], &gate);
        e->fuse_act[li].residual = add != 0;
        if (gate) e->fuse_skip[gate] = 1;
        e->fuse_last[li] = last;
        if (last != li) e->fuse_skip[last] = e->fuse_skip[li] = 1; /* the convolution's own output is not written */
        e->fuse_head[x] = e->fuse_head[last] = li;
        if (e->fuse_bn[li]) e->fuse_head[e->fuse_bn[li]] = li; /* also under a residual add */
        if (gate) e->fuse_head[gate] = li;
        size_t need = (size_t)m->tensors[c->weight].numel + (size_t)c->features;
        if (need > fold) fold = need;
    }
    plan_shuffles(m, uses);
    plan_bn_concats(m, uses, only);
    plan_channels_last(m);
    free(uses);
    free(only);
    if (fold && !(e->fold = ts_alloc(ctx, fold * sizeof(float), "folded weights"))) return TS_ENOMEM;
    return TS_OK;
}

/* Folds head li's batch norm into its conv (w' = w * g/sqrt(v+eps), b' = (b - mu) *
 * g/sqrt(v+eps) + beta), into e->fold: w' (K,C/G,KH,KW) then b' (K). */
static void fold_head(ts_model *m, int li) {
    exec_state *e = &m->exec;
    const layer *c = &m->layers[li];
    const int bi = e->fuse_bn[li] ? e->fuse_bn[li] : li;
    const int k = c->features;
    const int64_t per = m->tensors[c->weight].numel / k;
    const float *w = tensor_data(m, c->weight), *bias = c->bias ? tensor_data(m, c->bias_t) : NULL;
    float *wf = e->fold, *bf = e->fold + (size_t)k * (size_t)per;
    if (bi == li) { /* no batch norm: the weights and bias as they are */
        memcpy(wf, w, sizeof(float) * (size_t)k * (size_t)per);
        for (int o = 0; o < k; o++) bf[o] = bias ? bias[o] : 0.0f;
        return;
    }
    const layer *bn = &m->layers[bi];
    const float *g = tensor_data(m, bn->weight), *beta = tensor_data(m, bn->bias_t);
    const float *mu = tensor_data(m, bn->running_mean), *var = tensor_data(m, bn->running_var);
    for (int o = 0; o < k; o++) {
        float s = g[o] / sqrtf(var[o] + bn->eps);
        for (int64_t i = 0; i < per; i++) wf[(size_t)o * (size_t)per + (size_t)i] = w[(size_t)o * (size_t)per + (size_t)i] * s;
        bf[o] = ((bias ? bias[o] : 0.0f) - mu[o]) * s + beta[o];
    }
}

/* conv li with its batch norm folded in, writing the output of the head's last
 * layer: packed when a set has it, else folded and run per call. */
static ts_status fused_forward(ts_ctx *ctx, ts_model *m, int li, conv2d_packed_set *set) {
    exec_state *e = &m->exec;
    int last = e->fuse_last[li];
    TS_ASSERT(!set || !e->packed->stale); /* packed weights match the tensors */
    const int r = e->fuse_res[li];
    const float *res = !e->fuse_act[li].residual ? NULL : r == 0 ? e->input : e->ls[r].out;
    if (conv2d_packed_ready(set, li))
        return conv2d_packed_run(ctx, set, li, e->ls[last].out, layer_input(m, li, 0), res);
    fold_head(m, li);
    const layer *c = &m->layers[li];
    float *wf = e->fold, *bf = e->fold + (size_t)m->tensors[c->weight].numel;
    conv2d_params p = layer_conv_params(m, c, e->n);
    float qs;
    int u8;
    if (!model_quant_layer(m, li, &qs, &u8))
        return ops_conv2d_forward_fused(ctx, &p, e->ls[last].out, layer_input(m, li, 0), wf, bf, e->fuse_act[li], res,
                                        e->scratch);
    /* int8 where oneDNN could not pack it: the same quantized values, in fp32 */
    quantize_weights_ref(c->features, m->tensors[c->weight].numel / c->features, wf, NULL, wf);
    const size_t count = (size_t)p.n * (size_t)p.c * (size_t)p.h * (size_t)p.w;
    float *xq = ts_alloc(ctx, count * sizeof *xq, "an int8 convolution's input");
    if (!xq) return TS_ENOMEM;
    quantize_fake_ref(count, xq, layer_input(m, li, 0), qs, u8, ts_ctx_threads(ctx));
    ts_status st = ops_conv2d_forward_fused(ctx, &p, e->ls[last].out, xq, wf, bf, e->fuse_act[li], res, e->scratch);
    ts_free(xq);
    return st;
}

/* The heads packed into a new set, channels-last where e->cl says when `cl`. Sets
 * *all to whether every head could be packed. */
static ts_status packed_build(ts_ctx *ctx, ts_model *m, int n, int cl, conv2d_packed_set **out, int *all) {
    exec_state *e = &m->exec;
    conv2d_packed_set *set;
    ts_status st = conv2d_packed_set_create(ctx, m->nlayers, &set);
    if (st) return st;
    *all = 1;
    for (int li = 1; li < m->nlayers && !st; li++) {
        if (!e->fuse_last[li]) continue;
        fold_head(m, li);
        const layer *c = &m->layers[li];
        conv2d_params p = layer_conv_params(m, c, n);
        const unsigned nhwc = !cl ? 0u
                              : (e->cl[c->inputs[0]] ? CONV_PACKED_SRC_NHWC : 0u) |
                                    (e->cl[e->fuse_last[li]] ? CONV_PACKED_DST_NHWC : 0u) |
                                    (e->fuse_act[li].residual && e->cl[e->fuse_res[li]] ? CONV_PACKED_RES_NHWC : 0u);
        float qs;
        int u8;
        conv_quant q = {0};
        float *wscale = NULL;
        if (model_quant_layer(m, li, &qs, &u8)) { /* int8: one scale per output channel of the folded weights */
            const int64_t per = m->tensors[c->weight].numel / c->features;
            if (!(wscale = malloc(sizeof *wscale * (size_t)c->features))) {
                st = ts_fail(ctx, TS_ENOMEM, "out of memory for int8 scales");
                break;
            }
            for (int k = 0; k < c->features; k++) wscale[k] = quantize_weight_scale(per, e->fold + (size_t)k * (size_t)per);
            q = (conv_quant){qs, u8, wscale};
        }
        st = conv2d_packed_add(ctx, set, li, &p, e->fold, e->fold + (size_t)m->tensors[c->weight].numel,
                               e->fuse_act[li], nhwc, wscale ? &q : NULL);
        free(wscale);
        if (st == TS_EUNSUPPORTED) { /* this head runs per call, in NCHW */
            *all = 0;
            st = TS_OK;
        }
    }
    if (st) conv2d_packed_set_free(set);
    else *out = set;
    return st;
}

/* The packed set for a batch of n (built if needed; NULL with TS_OK when the model
 * has no fusion heads) and whether its heads use e->cl's channels-last tensors:
 * only when oneDNN packs every head (one it cannot pack stays on the per-call path,
 * which is NCHW). */
static ts_status packed_for(ts_ctx *ctx, ts_model *m, int n, conv2d_packed_set **out, int *cl) {
    exec_state *e = &m->exec;
    *out = NULL;
    *cl = 0;
    int heads = 0;
    for (int li = 1; li < m->nlayers; li++) heads += e->fuse_last[li] != 0;
    if (!heads) return TS_OK;
    if (!e->packed && !(e->packed = calloc(1, sizeof *e->packed)))
        return ts_fail(ctx, TS_ENOMEM, "out of memory for packed inference weights");
    exec_packed *pk = e->packed;
    if (pk->stale) {
        for (int i = 0; i < PACKED_SETS; i++) {
            conv2d_packed_set_free(pk->e[i].set);
            pk->e[i].set = NULL;
        }
        pk->stale = 0;
    }
    const int threads = ts_ctx_threads(ctx), bf16 = ctx->bf16 != 0, wino = ctx->winograd != TS_WINOGRAD_OFF;
    int victim = 0;
    for (int i = 0; i < PACKED_SETS; i++) {
        if (pk->e[i].set && pk->e[i].n == n && pk->e[i].threads == threads && pk->e[i].bf16 == bf16 &&
            pk->e[i].wino == wino) {
            pk->e[i].used = ++pk->clock;
            *out = pk->e[i].set;
            *cl = pk->e[i].cl;
            return TS_OK;
        }
        if (!pk->e[i].set || (pk->e[victim].set && pk->e[i].used < pk->e[victim].used)) victim = i;
    }
    conv2d_packed_set_free(pk->e[victim].set);
    pk->e[victim].set = NULL;
    conv2d_packed_set *set = NULL;
    int all = 0, use_cl = 1;
    ts_status st = packed_build(ctx, m, n, 1, &set, &all);
    if (!st && !all) { /* some head runs per call: NCHW everywhere */
        conv2d_packed_set_free(set);
        set = NULL;
        use_cl = 0;
        st = packed_build(ctx, m, n, 0, &set, &all);
    }
    if (st) return st;
    pk->e[victim].set = set;
    pk->e[victim].n = n;
    pk->e[victim].threads = threads;
    pk->e[victim].bf16 = bf16;
    pk->e[victim].wino = wino;
    pk->e[victim].cl = use_cl;
    pk->e[victim].used = ++pk->clock;
    *out = set;
    *cl = use_cl;
    return TS_OK;
}

/* The outputs of a ts_model_predict plan in one arena (after plan_fusion). An output
 * lives from the step that writes it to the last step that reads it, whichever way the
 * pass runs (fused or not): a head writes its last fused layer's output at the head's
 * step, as a GELU chain and a channels-last batch norm + ReLU do; a channel-shuffle
 * gather and a batch norm after a skipped concat read their sources at their own step;
 * a reshape's readers read its input's
 * buffer; the network's output is read after the pass. Outputs never live at the same
 * time share memory (place_slots), where every other plan gives each its own buffer:
 * ViT-B/16 at batch 32 held 12.5 GB that way. Captures, two-part passes (early exits,
 * the translator's stepper) and training read outputs later: they plan without it. */
static ts_status plan_infer_arena(ts_ctx *ctx, ts_model *m, int cap) {
    exec_state *e = &m->exec;
    const int n = m->nlayers;
    int *root = malloc((size_t)n * sizeof *root);
    grad_slot *t = calloc((size_t)n, sizeof *t); /* per layer: first and last step of its root's buffer */
    grad_slot *slots = calloc((size_t)n, sizeof *slots);
    if (!root || !t || !slots) {
        free(root), free(t), free(slots);
        return ts_fail(ctx, TS_ENOMEM, "out of memory planning the inference arena");
    }
    for (int l = 0; l < n; l++) {
        root[l] = e->ls[l].alias ? root[m->layers[l].inputs[0]] : l;
        t[l].first = t[l].last = l;
    }
#define READ_AT(src, step) (t[root[src]].last = t[root[src]].last > (step) ? t[root[src]].last : (step))
#define WRITE_AT(dst, step) (t[root[dst]].first = t[root[dst]].first < (step) ? t[root[dst]].first : (step))
    for (int l = 1; l < n; l++) {
        for (int k = 0; k < m->layers[l].ninputs; k++) READ_AT(m->layers[l].inputs[k], l);
        if (e->fuse_last[l]) WRITE_AT(e->fuse_last[l], l);
        if (e->chain_last[l]) WRITE_AT(e->chain_last[l], l);
        if (e->bn_relu[l]) WRITE_AT(e->bn_relu[l], l);
        int src[LAYER_MAX_INPUTS];
        const int ns = gather_sources(m, l, src);
        for (int k = 0; k < ns; k++) READ_AT(src[k], l);
    }
    READ_AT(n - 1, n);
#undef READ_AT
#undef WRITE_AT
    int count = 0, ok = 1;
    for (int l = 1; l < n; l++) {
        if (e->ls[l].alias) continue;
        grad_slot *g = &slots[count++];
        g->layer = l;
        g->first = t[l].first;
        g->last = t[l].last;
        g->bytes = (floats_bytes(cap, &m->layers[l].out, 0, &ok) + 63) & ~(size_t)63;
    }
    const size_t total = place_slots(slots, count);
    e->infer_arena = total ? ts_alloc(ctx, total, "inference activations") : NULL;
    if (total && !e->infer_arena) {
        free(root), free(t), free(slots);
        return TS_ENOMEM;
    }
    e->infer_arena_bytes = total;
    for (int i = 0; i < count; i++) {
        e->ls[slots[i].layer].out = (float *)((char *)e->infer_arena + slots[i].offset);
        e->ls[slots[i].layer].in_arena = 1;
    }
    for (int l = 1; l < n; l++) /* a reshape shares its input's place */
        if (e->ls[l].alias) e->ls[l].out = e->ls[m->layers[l].inputs[0]].out;
    free(root), free(t), free(slots);
    return TS_OK;
}

/* What a plan is for: training, ts_model_predict (its outputs may share an arena:
 * plan_infer_arena), or another inference pass whose outputs are read after it. */
typedef enum plan_use { PLAN_TRAIN, PLAN_PREDICT, PLAN_KEEP } plan_use;

/* Buffers for a batch of up to n. Gradient buffers only for training. */
static ts_status exec_plan(ts_ctx *ctx, ts_model *m, int n, plan_use use) {
    const int train = use == PLAN_TRAIN;
    exec_state *e = &m->exec;
    model_quant_refresh(m); /* every pass, whichever entry (predict, predict_exit, train), sees the current int8 scales */
    /* a compressed plan (act_compress.c) shares output memory, which only a training
     * forward followed by its backward may use: every other pass plans afresh */
    const int compress = train && m->act_compress;
    /* a predict plan takes any plan that fits; a plan whose outputs are read later, none
     * that shares them */
    if (e->ls && e->capacity >= n && (!train || e->has_grads) && (e->act != NULL) == compress &&
        !(use == PLAN_KEEP && e->infer_arena_bytes))
        return TS_OK;
    const int arena = use == PLAN_PREDICT;
    if (n < 1) return ts_fail(ctx, TS_EINVAL, "batch size %d must be at least 1", n);
    if (train) {
        ts_status st = model_ensure_grads(ctx, m);
        if (st) return st;
    }
    int cap = n > e->capacity ? n : e->capacity;
    exec_release(e);
    e->ls = calloc((size_t)m->nlayers, sizeof *e->ls);
    if (!e->ls) return ts_fail(ctx, TS_ENOMEM, "out of memory planning execution buffers");
    e->nls = m->nlayers;
    if (train) { /* which outputs get room for padded channels (layer_may_block) */
        ts_status st = plan_blocked_candidates(ctx, m);
        if (st) return st;
    }
    size_t scratch = 0, accum = 0;
    int ok = 1;
    for (int li = 0; li < m->nlayers; li++) {
        layer *l = &m->layers[li];
        layer_state *s = &e->ls[li];
        size_t ob = floats_bytes(cap, &l->out, layer_may_block(m, li), &ok);
        if (!ok) return ts_fail(ctx, TS_ENOMEM, "layer %s: activation size overflows at batch %d", l->name, cap);
        if (ob > accum) accum = ob;
        if (li > 0 && (l->kind == LAYER_RESHAPE || l->kind == LAYER_FLATTEN) && l->inputs[0] > 0) {
            s->out = e->ls[l->inputs[0]].out; /* the same values in the same order: no copy */
            s->alias = 1;
        } else if (li > 0) {
            if (!arena && !(compress && act_shareable(m, li)) && !(s->out = ts_alloc(ctx, ob, l->name)))
                return TS_ENOMEM;
            s->aux_bytes = LAYER_OPS[l->kind].aux_bytes(ctx, m, l, cap);
            if (s->aux_bytes && !(s->aux = ts_alloc(ctx, s->aux_bytes, l->name))) return TS_ENOMEM;
            size_t sb = LAYER_OPS[l->kind].scratch_bytes(ctx, m, l, cap);
            if (sb > scratch) scratch = sb;
        }
    }
    if (train) {
        const size_t bn = blocked_scratch_bytes(m, cap);
        if (bn > scratch) scratch = bn;
    }
    if (scratch && !(e->scratch = ts_alloc(ctx, scratch, "kernel scratch"))) return TS_ENOMEM;
    e->scratch_bytes = scratch;
    if (train && !(e->accum = ts_alloc(ctx, accum, "gradient accumulator"))) return TS_ENOMEM;
    {
        ts_status st = plan_fusion(ctx, m);
        if (!st && arena) st = plan_infer_arena(ctx, m, cap);
        if (st) return st;
    }
    if (train) {
        ts_status st = plan_grads(ctx, m, cap);
        if (!st && compress) st = act_plan_make(ctx, m, cap);
        if (st) return st;
    }
    e->capacity = cap;
    e->has_grads = train;
    return TS_OK;
}

const float *layer_input(ts_model *m, int li, int k) {
    int src = m->layers[li].inputs[k];
    return src == 0 ? m->exec.input : m->exec.ls[src].out;
}

float *layer_input_grad(ts_model *m, int li, int k) {
    int src = m->layers[li].inputs[k];
    if (src == 0) return NULL; /* nobody needs d loss / d model input */
    layer_state *s = &m->exec.ls[src];
    return s->grad_ready ? m->exec.accum : s->grad;
}

void layer_input_grad_commit(ts_model *m, int li, int k, int nthreads) {
    int src = m->layers[li].inputs[k];
    layer_state *s = &m->exec.ls[src];
    if (!s->grad_ready) {
        s->grad_ready = 1;
        return;
    }
    const size_t cnt = layer_count(m, src);
    float *g = s->grad;
    const float *a = m->exec.accum;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (size_t i = 0; i < cnt; i++) g[i] += a[i];
}

/* The element-wise chain that starts at li (its first layer's input to its last
 * layer's output, whatever the layout): GELU. */
static ts_status chain_forward(ts_ctx *ctx, ts_model *m, int li) {
    const int last = m->exec.chain_last[li];
    const size_t count = (size_t)m->exec.n * (size_t)shape_numel(&m->layers[last].out);
    return ops_eltwise_forward(ctx, ELTWISE_GELU, 0.0f, count, m->exec.ls[last].out, layer_input(m, li, 0));
}

/* In a channels-last pass, a batch norm on a channels-last input and the ReLU that
 * alone reads it run as one pass (DenseNet's norm -> relu -> conv). */
static int bn_relu_cl(const ts_model *m, int li) {
    const exec_state *e = &m->exec;
    if (!e->cl_now || !e->bn_relu[li] || !e->cl_now[li]) return 0;
    const int c = e->bn_concat[li]; /* then its inputs share its layout */
    return e->cl_now[c ? m->layers[c].inputs[0] : m->layers[li].inputs[0]];
}

/* skip (NULL: none) marks layers this pass leaves out (an early exit runs the network in
 * two parts, early_exit_predict.c) */
static ts_status run_forward(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, int train,
                             int allow_fusion, const unsigned char *skip) {
    exec_state *e = &m->exec;
    TS_ASSERT(e->ls && n >= 1 && n <= e->capacity && (!train || e->has_grads)); /* planned for this batch */
    e->n = n;
    e->train = train;
    e->input = x;
    e->skip_now = skip;
    const int fuse = allow_fusion && !train && !ctx->constant_time && ops_fusion_enabled(ctx); /* a oneDNN path */
    e->fused = fuse;
    conv2d_packed_set *set = NULL;
    e->cl_now = NULL;
    e->blk_now = NULL;
    if (train) {
        e->train_backend = ctx->backend;
        plan_blocked(ctx, m);
    }
    if (fuse) {
        int cl = 0;
        ts_status st = packed_for(ctx, m, n, &set, &cl);
        if (st) return st;
        if (cl) e->cl_now = e->cl;
    } else if (train) {
        exec_weights_changed(m); /* batch norm updates its running statistics */
    }
    if (train) {
        memset(e->bn_relu_on, 0, (size_t)m->nlayers);
        for (int li = 1; li < m->nlayers; li++)
            if (e->bn_relu[li] && !m->sync_bn && batchnorm_relu_fusable(ctx, m, li)) {
                e->bn_relu_on[li] = 1;
                e->bn_relu_on[e->bn_relu[li]] = 2;
            }
        if (e->act) act_forward_begin(m);
    }
    for (int li = 1; li < m->nlayers; li++) {
        ts_status st;
        if (train && e->act && (st = act_forward_until(ctx, m, li))) return st; /* compress what is used up */
        if (skip && skip[li]) continue;
        const double t0 = e->profile ? ts_monotonic_s() : 0.0;
        if (fuse && e->fuse_last[li]) st = fused_forward(ctx, m, li, set);
        else if (fuse && e->fuse_skip[li]) continue;
        else if (fuse && e->shuffle_from[li]) st = shuffle_forward(ctx, m, li);
        else if (fuse && e->chain_last[li]) st = chain_forward(ctx, m, li);
        else if (fuse && e->chain_skip[li]) continue;
        else if (bn_relu_cl(m, li)) st = batchnorm_cl_forward(ctx, m, li, e->bn_relu[li]);
        else if (m->layers[li].kind == LAYER_RELU && bn_relu_cl(m, m->layers[li].inputs[0])) continue;
        else if (train && e->bn_relu_on[li] == 1) st = batchnorm_relu_forward(ctx, m, li, e->bn_relu[li]);
        else if (train && e->bn_relu_on[li] == 2) continue; /* done with its batch norm */
        else st = LAYER_OPS[m->layers[li].kind].forward(ctx, m, li);
        if (st) return st;
        if (e->profile) e->profile[li] += ts_monotonic_s() - t0;
    }
    if (train && e->act) {
        ts_status st = act_forward_until(ctx, m, m->nlayers);
        if (st) return st;
    }
    TS_ASSERT(ts_shape_numel(&m->layers[m->nlayers - 1].out) == m->classes); /* the logits layer */
    if (logits) memcpy(logits, e->ls[m->nlayers - 1].out, (size_t)n * (size_t)m->classes * sizeof(float));
    return TS_OK;
}

/* Samples per forward pass in inference: activation memory is planned for this many
 * (ts_model_predict_capture's callers see groups of at most this size). */
#define PREDICT_CHUNK 256

/* Does inference fuse away the output of one of the requested layers? */
static int capture_needs_unfused(const ts_model *m, const ts_capture *cap) {
    const exec_state *e = &m->exec;
    if (!e->fuse_skip) return 1; /* not planned yet: be safe */
    for (int i = 0; i < cap->nlayers; i++)
        if (e->fuse_skip[cap->layers[i]] || e->chain_skip[cap->layers[i]] || e->cl[cap->layers[i]] ||
            e->bn_relu[cap->layers[i]])
            return 1; /* not written, or not NCHW */
    return 0;
}

/* In constant-time mode (docs/security.md) the layers pick branch-free kernels from
 * ctx->constant_time; here the floating-point environment is set for the call
 * (flush-to-zero, denormals-are-zero) and restored after it, whatever happens. */
ts_status ts_model_predict_capture(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits,
                                   const ts_capture *cap) {
    if (!ctx || !m || !x || !logits || n < 0) return ts_fail(ctx, TS_EINVAL, "ts_model_predict: bad argument");
    if (cap && (cap->nlayers < 0 || (cap->nlayers && (!cap->layers || !cap->fn))))
        return ts_fail(ctx, TS_EINVAL, "ts_model_predict_capture: bad capture request");
    for (int i = 0; cap && i < cap->nlayers; i++)
        if (cap->layers[i] < 0 || cap->layers[i] >= m->nlayers)
            return ts_fail(ctx, TS_EINVAL, "ts_model_predict_capture: layer %d is not in the model (0..%d)",
                           cap->layers[i], m->nlayers - 1);
    const int capturing = cap && cap->nlayers > 0;
    model_quant_refresh(m);
    if (ctx->constant_time && m->qscale)
        return ts_fail(ctx, TS_EUNSUPPORTED, "constant-time mode does not cover int8 models (their kernels are oneDNN's): "
                       "use the fp32 model");
    size_t in_sz = (size_t)shape_numel(&m->input);
    ts_fpenv env;
    if (ctx->constant_time) ts_fpenv_constant_time(&env, ts_ctx_threads(ctx));
    ts_status st = TS_OK;
    for (int s = 0; s < n && !st; s += PREDICT_CHUNK) {
        int b = n - s < PREDICT_CHUNK ? n - s : PREDICT_CHUNK;
        st = exec_plan(ctx, m, b, capturing ? PLAN_KEEP : PLAN_PREDICT);
        if (st) break;
        const int fusion = !capturing || !capture_needs_unfused(m, cap);
        st = run_forward(ctx, m, x + (size_t)s * in_sz, b, logits + (size_t)s * (size_t)m->classes, 0, fusion, NULL);
        for (int i = 0; capturing && !st && i < cap->nlayers; i++) {
            const int li = cap->layers[i];
            if (cap->fn(cap->user, li, s, b, li == 0 ? m->exec.input : m->exec.ls[li].out))
                st = ts_fail(ctx, TS_ECANCELED, "ts_model_predict_capture: stopped by the capture callback");
        }
    }
    if (ctx->constant_time) ts_fpenv_restore(&env);
    return st;
}

ts_status exec_predict_part(ts_ctx *ctx, ts_model *m, const float *x, int n, const unsigned char *skip, int *layout) {
    ts_status st = exec_plan(ctx, m, n, PLAN_KEEP);
    if (!st) st = run_forward(ctx, m, x, n, NULL, 0, 1, skip);
    *layout = m->exec.fused + 2 * (m->exec.cl_now != NULL);
    return st;
}

ts_status ts_model_predict(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits) {
    return ts_model_predict_capture(ctx, m, x, n, logits, NULL);
}

ts_status ts_model_predict_profile(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, double *seconds) {
    if (!ctx || !m || !seconds) return ts_fail(ctx, TS_EINVAL, "ts_model_predict_profile: bad argument");
    m->exec.profile = seconds;
    ts_status st = ts_model_predict_capture(ctx, m, x, n, logits, NULL);
    m->exec.profile = NULL;
    return st;
}

int ts_model_layer_fused_into(const ts_model *m, int index) {
    if (!m || index < 0 || index >= m->nlayers || !m->exec.fuse_head) return -1;
    const exec_state *e = &m->exec;
    if (m->layers[index].kind == LAYER_RELU && bn_relu_cl(m, m->layers[index].inputs[0]))
        return m->layers[index].inputs[0];
    return e->fused && e->fuse_head[index] ? e->fuse_head[index] : index;
}

static ts_status refuse_constant_time(ts_ctx *ctx, const char *what) {
    return ts_fail(ctx, TS_EUNSUPPORTED,
                   "%s: constant-time mode covers inference only; turn it off (ts_ctx_set_constant_time(ctx, 0)) to "
                   "train", what);
}

ts_status ts_model_forward_train(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, uint64_t dropout_seed) {
    if (!ctx || !m || !x || n < 1) return ts_fail(ctx, TS_EINVAL, "ts_model_forward_train: bad argument");
    if (ctx->constant_time) return refuse_constant_time(ctx, "ts_model_forward_train");
    ts_status st = exec_plan(ctx, m, n, PLAN_TRAIN);
    if (st) return st;
    m->exec.dropout_seed = dropout_seed;
    return run_forward(ctx, m, x, n, logits, 1, 0, NULL);
}

ts_status ts_model_backward(ts_ctx *ctx, ts_model *m, const float *dlogits) {
    return model_backward_observe(ctx, m, dlogits, NULL, NULL);
}

ts_status model_backward_observe(ts_ctx *ctx, ts_model *m, const float *dlogits, grad_observer_fn observe,
                                 void *user) {
    return model_backward_exit(ctx, m, dlogits, NULL, observe, user);
}

static ts_status backward_run(ts_ctx *ctx, ts_model *m, const float *dlogits, const float *dexit,
                              grad_observer_fn observe, void *user);

/* The backward runs on the kernels its forward ran on, whatever the backend is now: a
 * kernel's saved state (oneDNN's max-pool workspace against the reference's argmax,
 * nChw16c activations) is only its own to read. */
ts_status model_backward_exit(ts_ctx *ctx, ts_model *m, const float *dlogits, const float *dexit,
                              grad_observer_fn observe, void *user) {
    exec_state *e = &m->exec;
    if (ctx && ctx->constant_time) return refuse_constant_time(ctx, "ts_model_backward");
    if (!e->train || !e->has_grads || !e->n)
        return ts_fail(ctx, TS_EINVAL, "ts_model_backward: no training forward pass to differentiate");
    if (!ctx) return backward_run(ctx, m, dlogits, dexit, observe, user);
    const ts_backend now = ctx->backend;
    ctx->backend = e->train_backend;
    ts_status st = backward_run(ctx, m, dlogits, dexit, observe, user);
    ctx->backend = now;
    return st;
}

static ts_status backward_run(ts_ctx *ctx, ts_model *m, const float *dlogits, const float *dexit,
                              grad_observer_fn observe, void *user) {
    exec_state *e = &m->exec;
    memset(m->grads, 0, m->nparams * sizeof(float));
    for (int li = 0; li < m->nlayers; li++) e->ls[li].grad_ready = 0;
    int last = m->nlayers - 1;
    memcpy(e->ls[last].grad, dlogits, (size_t)e->n * (size_t)m->classes * sizeof(float));
    e->ls[last].grad_ready = 1;
    if (dexit && m->exit_layer) { /* the early exit's loss: its own seed (plan_grads keeps it live) */
        memcpy(e->ls[m->exit_layer].grad, dexit, (size_t)e->n * (size_t)m->classes * sizeof(float));
        e->ls[m->exit_layer].grad_ready = 1;
    }
    for (int li = last; li >= 1; li--) {
        ts_status st;
        if (e->act && (st = act_backward_at(ctx, m, li))) return st; /* restore what this step is the first to read */
        if (e->bn_relu_on[li] == 2) continue; /* in its batch norm's backward */
        if (e->bn_relu_on[li] == 1) {
            int r = e->bn_relu[li];
            if (!e->ls[r].grad_ready) continue;
            st = batchnorm_relu_backward(ctx, m, li, r);
        } else {
            if (!e->ls[li].grad_ready) continue; /* output unused: contributes nothing */
            if (observe && observe(user, m, li)) return ts_fail(ctx, TS_ECANCELED, "backward: stopped by its observer");
            st = LAYER_OPS[m->layers[li].kind].backward(ctx, m, li);
        }
        if (st) return st;
        if (e->act) act_backward_done(m, li);
    }
    return TS_OK;
}
