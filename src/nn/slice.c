/* Physical slicing (issue 14): a model whose mask layers zero whole channels becomes
 * an equivalent, smaller model without those channels and without what only they used.
 *
 * A channel is an index on axis 0 of a layer's per-sample output: C of (C,H,W), a
 * feature of (F). Three passes over the graph, one flag per output channel each:
 *  - zero (forward): known to be zero for every input. A mask's all-zero plane starts
 *    one; layers that map 0 to 0 exactly (relu, pools, dropout...) carry it; batch norm,
 *    sigmoid and everything else whose f(0) may differ from 0 end it.
 *  - need (backward): its value reaches the model's output. A layer needs the channels
 *    behind its live outputs (needed and not zero); a conv2d or dense layer needs every
 *    input channel of a group as soon as one output of the group is live.
 *    (A two-input binary joins when each operand broadcasts only within channels, C,1,1
 *    into C,H,W; a reshape that keeps axis 0 is channel-wise: MwT's gated batch norms.)
 *  - keep: physically present. A layer that maps channel c to channel c cannot drop a
 *    channel its input has, so channel-wise layers, additions and concatenations tie
 *    their tensors' keep sets together. Each set starts as its live channels; tied sets
 *    take their union until nothing changes. At an addition this is the union rule: a
 *    channel either side needs and has non-zero is produced by both, and the side where
 *    it is zero keeps it, its mask still zeroing it. Computing a channel nobody needs is
 *    harmless (its value is never used, or multiplied by a mask's 0).
 * conv2d (groups 1) and dense layers are where the sets may differ: they keep the rows
 * of their kept output channels and the columns of their input's kept channels; a
 * needed input channel that is zero is not kept, its columns go. Layers this file does
 * not know are barriers: they keep every input and output channel. Every set keeps at
 * least one channel (a layer cannot output nothing): a conv2d whose inputs are all zero
 * then reads one zero channel and outputs its bias, as before. */
#include "layers.h"

#include <stdlib.h>
#include <string.h>

typedef enum slice_role {
    ROLE_BARRIER,     /* keeps every input and output channel */
    ROLE_CHANNELWISE, /* output channel c comes from input 0's channel c alone */
    ROLE_JOIN,        /* add, two-input binary: the inputs and the output share channels */
    ROLE_CONCAT,      /* concat on axis 0: the output is the inputs' channels in turn */
    ROLE_FLATTEN,     /* output features [c*plane, (c+1)*plane) are input channel c */
    ROLE_PRODUCER     /* conv2d (groups 1), dense: any output rows from any input columns */
} slice_role;

typedef struct slicer {
    ts_ctx *ctx;
    const ts_model *m;
    slice_role *role;    /* (nlayers) */
    int64_t *off;        /* (nlayers + 1): layer li's flags are [off[li], off[li + 1]) */
    unsigned char *zero; /* (off[nlayers]) known zero */
    unsigned char *need; /* (off[nlayers]) its value reaches the output */
    unsigned char *keep; /* (off[nlayers]) physically present */
    int *kept;           /* (off[nlayers]) layer li's kept channels in order, from off[li] */
    int *nkept;          /* (nlayers) */
} slicer;

static int64_t channels(const ts_model *m, int li) { return m->layers[li].out.dims[0]; }

/* values per channel of layer li's per-sample output */
static int64_t plane(const ts_model *m, int li) { return shape_numel(&m->layers[li].out) / channels(m, li); }

/* tensor_data for a model only read */
static const float *tensor_at(const ts_model *m, int t) {
    const tensor_entry *e = &m->tensors[t];
    return (e->role == TS_TENSOR_PARAM ? m->params : m->buffers) + e->offset;
}

static int same_shape(const ts_shape *a, const ts_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->dims[d] != b->dims[d]) return 0;
    return 1;
}

/* An operand of per-sample shape a that broadcasts into out within each channel
 * (C,1,1 into C,H,W): its channel c meets the output's channel c alone. */
static int channel_aligned(const ts_shape *a, const ts_shape *out) {
    return a->ndim == out->ndim && a->ndim >= 1 && a->dims[0] == out->dims[0];
}

static slice_role role_of(const ts_model *m, const layer *l) {
    if (l->kind == LAYER_INPUT) return ROLE_BARRIER;
    const ts_shape *in = input_shape(m, l, 0);
    switch (l->kind) {
    case LAYER_CONV2D:
        if (l->groups == 1) return ROLE_PRODUCER;
        /* depthwise: one input and one output channel per group */
        return l->groups == in->dims[0] && l->features == l->groups ? ROLE_CHANNELWISE : ROLE_BARRIER;
    case LAYER_DENSE: return in->ndim == 1 ? ROLE_PRODUCER : ROLE_BARRIER; /* per step: not sliced */
    case LAYER_MAXPOOL: case LAYER_AVGPOOL: case LAYER_GLOBALAVGPOOL: case LAYER_GLOBALMAXPOOL:
    case LAYER_BATCHNORM: case LAYER_RELU: case LAYER_LEAKYRELU: case LAYER_SIGMOID: case LAYER_TANH:
    case LAYER_DROPOUT: case LAYER_MASK: case LAYER_ELU: case LAYER_SELU: case LAYER_HARDSIGMOID:
    case LAYER_CLIP: case LAYER_PRELU: case LAYER_HARDSWISH: case LAYER_SQRT: case LAYER_ERF: case LAYER_POW:
        return ROLE_CHANNELWISE;
    case LAYER_SOFTMAX: case LAYER_LOGSOFTMAX: /* along an axis after the channels: per channel */
        return (l->axis < 0 ? l->axis + l->out.ndim : l->axis) >= 1 ? ROLE_CHANNELWISE : ROLE_BARRIER;
    case LAYER_RESIZE: /* each plane before H and W on its own */
        return l->out.ndim >= 3 ? ROLE_CHANNELWISE : ROLE_BARRIER;
    case LAYER_PAD: /* nothing added to or cropped from the channels */
        return l->pads[0] == 0 && l->pads[l->out.ndim] == 0 ? ROLE_CHANNELWISE : ROLE_BARRIER;
    case LAYER_BINARY: /* elementwise only where nothing broadcasts across the output's channels */
        if (l->tshape.ndim > 0) return same_shape(in, &l->out) ? ROLE_CHANNELWISE : ROLE_BARRIER;
        return channel_aligned(in, &l->out) && channel_aligned(input_shape(m, l, 1), &l->out) ? ROLE_JOIN
                                                                                              : ROLE_BARRIER;
    case LAYER_RESHAPE: /* axis 0 unchanged: each channel's values stay together, in order (C -> C,1,1) */
        return in->ndim >= 1 && l->out.ndim >= 1 && in->dims[0] == l->out.dims[0] ? ROLE_CHANNELWISE : ROLE_BARRIER;
    case LAYER_ADD: return ROLE_JOIN;
    case LAYER_CONCAT: return l->axis == 0 ? ROLE_CONCAT : ROLE_BARRIER;
    case LAYER_FLATTEN: return ROLE_FLATTEN;
    default: return ROLE_BARRIER;
    }
}

/* Does a channel-wise layer map an all-zero channel to an all-zero channel, exactly? */
static int keeps_zero(const layer *l) {
    switch (l->kind) {
    case LAYER_SIGMOID: case LAYER_BATCHNORM: case LAYER_SOFTMAX: case LAYER_LOGSOFTMAX: return 0;
    case LAYER_HARDSIGMOID: return l->beta <= 0.0f; /* max(0, min(1, alpha*0 + beta)) */
    case LAYER_CLIP: return l->lo <= 0.0f && l->hi >= 0.0f;
    case LAYER_POW: return l->exponent > 0.0f; /* 0^0 = 1, 0^-1 = inf */
    case LAYER_PAD: return l->pad_mode != PAD_CONSTANT || l->value == 0.0f;
    case LAYER_BINARY: return l->op == BINARY_MUL; /* 0 * k; 0 + k, 0 / k, k / 0 are not known 0 */
    default: return 1; /* relu, leakyrelu, tanh, elu, selu, prelu, hardswish, sqrt, erf, pools, dropout, mask,
                        * resize */
    }
}

/* A prelu slope or binary constant of shape t (right-aligned to the output) that
 * varies along the channels, and is sliced with them. */
static int varies_per_channel(const layer *l, const ts_shape *t) { return t->ndim == l->out.ndim && t->dims[0] > 1; }

/* Is channel c of mask li's keep plane all `v`? */
static int mask_plane_is(const ts_model *m, int li, int64_t c, float v) {
    const int64_t p = plane(m, li);
    const float *k = tensor_at(m, m->layers[li].mask) + c * p;
    for (int64_t i = 0; i < p; i++)
        if (k[i] != v) return 0;
    return 1;
}

/* ------------------------------------------------------------------ zero */

/* conv2d and dense, any groups: output k is zero when its bias is (or there is none)
 * and its weights over every input channel of its group that is not zero are all 0.
 * weight: (K, C/groups, block) */
static void producer_zero(slicer *s, int li) {
    const ts_model *m = s->m;
    const layer *l = &m->layers[li];
    const tensor_entry *w = &m->tensors[l->weight];
    const int64_t nk = w->shape.dims[0], cg = w->shape.dims[1], block = w->numel / (nk * cg);
    const int64_t kg = nk / (l->kind == LAYER_CONV2D ? l->groups : 1); /* outputs per group */
    const float *wd = tensor_at(m, l->weight), *b = l->bias_t >= 0 ? tensor_at(m, l->bias_t) : NULL;
    const unsigned char *zin = s->zero + s->off[l->inputs[0]];
    for (int64_t k = 0; k < nk; k++) {
        int z = !b || b[k] == 0.0f;
        const int64_t g = k / kg;
        for (int64_t j = 0; z && j < cg; j++) {
            if (zin[g * cg + j]) continue;
            for (int64_t e = 0; z && e < block; e++) z = wd[(k * cg + j) * block + e] == 0.0f;
        }
        s->zero[s->off[li] + k] = (unsigned char)z;
    }
}

/* an add or a two-input binary: zero where every input is (add, sub) or any is (mul) */
static void join_zero(slicer *s, int li) {
    const layer *l = &s->m->layers[li];
    const int any = l->kind == LAYER_BINARY && l->op == BINARY_MUL;
    if (l->kind == LAYER_BINARY && l->op == BINARY_DIV) return; /* 0 / 0 is not 0 */
    for (int64_t c = 0; c < channels(s->m, li); c++) {
        int z = !any;
        for (int k = 0; k < l->ninputs; k++) {
            const int zk = s->zero[s->off[l->inputs[k]] + c];
            z = any ? z || zk : z && zk;
        }
        s->zero[s->off[li] + c] = (unsigned char)z;
    }
}

static void zero_pass(slicer *s) {
    const ts_model *m = s->m;
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        unsigned char *z = s->zero + s->off[li];
        const unsigned char *zin = s->zero + s->off[l->inputs[0]];
        const int64_t nc = channels(m, li);
        /* a dense layer per step (a barrier) reads rows of its input, not channels: not known zero */
        if (l->kind == LAYER_CONV2D || (l->kind == LAYER_DENSE && s->role[li] == ROLE_PRODUCER)) {
            producer_zero(s, li);
            continue;
        }
        switch (s->role[li]) {
        case ROLE_CHANNELWISE:
            for (int64_t c = 0; c < nc; c++)
                z[c] = (keeps_zero(l) && zin[c]) || (l->kind == LAYER_MASK && mask_plane_is(m, li, c, 0.0f));
            break;
        case ROLE_JOIN: join_zero(s, li); break;
        case ROLE_CONCAT:
            for (int64_t k = 0, at = 0; k < l->ninputs; at += channels(m, l->inputs[k]), k++)
                memcpy(z + at, s->zero + s->off[l->inputs[k]], (size_t)channels(m, l->inputs[k]));
            break;
        case ROLE_FLATTEN: {
            const int64_t p = plane(m, l->inputs[0]);
            for (int64_t f = 0; f < nc; f++) z[f] = zin[f / p];
            break;
        }
        default: break; /* barriers and producers' own rules: nothing known */
        }
    }
}

/* ------------------------------------------------------------------ need */

static int live(const slicer *s, int64_t at) { return s->need[at] && !s->zero[at]; }

static int any_live(const slicer *s, int li, int64_t from, int64_t to) {
    for (int64_t c = from; c < to; c++)
        if (live(s, s->off[li] + c)) return 1;
    return 0;
}

/* conv2d and dense: a group with a live output needs all of the group's inputs
 * (zero ones are not kept anyway) */
static void producer_need(slicer *s, int li) {
    const ts_model *m = s->m;
    const layer *l = &m->layers[li];
    const int groups = l->kind == LAYER_CONV2D ? l->groups : 1;
    const int64_t kg = channels(m, li) / groups, cg = channels(m, l->inputs[0]) / groups;
    for (int g = 0; g < groups; g++)
        if (any_live(s, li, g * kg, (g + 1) * kg)) memset(s->need + s->off[l->inputs[0]] + g * cg, 1, (size_t)cg);
}

static void need_pass(slicer *s) {
    const ts_model *m = s->m;
    memset(s->need + s->off[m->nlayers - 1], 1, (size_t)channels(m, m->nlayers - 1)); /* the model's output */
    for (int li = m->nlayers - 1; li >= 1; li--) {
        const layer *l = &m->layers[li];
        const int64_t o = s->off[li], nc = channels(m, li);
        unsigned char *nin = s->need + s->off[l->inputs[0]];
        if (l->kind == LAYER_CONV2D || l->kind == LAYER_DENSE) {
            producer_need(s, li);
            continue;
        }
        switch (s->role[li]) {
        case ROLE_CHANNELWISE:
            for (int64_t c = 0; c < nc; c++) nin[c] |= (unsigned char)live(s, o + c);
            break;
        case ROLE_JOIN:
            for (int k = 0; k < l->ninputs; k++)
                for (int64_t c = 0; c < nc; c++) s->need[s->off[l->inputs[k]] + c] |= (unsigned char)live(s, o + c);
            break;
        case ROLE_CONCAT:
            for (int64_t k = 0, at = 0; k < l->ninputs; at += channels(m, l->inputs[k]), k++)
                for (int64_t c = 0; c < channels(m, l->inputs[k]); c++)
                    s->need[s->off[l->inputs[k]] + c] |= (unsigned char)live(s, o + at + c);
            break;
        case ROLE_FLATTEN: {
            const int64_t p = plane(m, l->inputs[0]);
            for (int64_t f = 0; f < nc; f++) nin[f / p] |= (unsigned char)live(s, o + f);
            break;
        }
        default: /* a barrier with a live output needs everything it reads */
            if (any_live(s, li, 0, nc))
                for (int k = 0; k < l->ninputs; k++)
                    memset(s->need + s->off[l->inputs[k]], 1, (size_t)channels(m, l->inputs[k]));
            break;
        }
    }
}

/* ------------------------------------------------------------------ keep */

/* For each j < nb, makes b[j] and a[j*per .. (j+1)*per - 1] (the flags b[j] stands
 * for) agree on their union; returns whether any flag changed. */
static int tie(unsigned char *a, unsigned char *b, int64_t nb, int64_t per) {
    int changed = 0;
    for (int64_t j = 0; j < nb; j++) {
        unsigned char u = b[j];
        for (int64_t i = 0; i < per; i++) u |= a[j * per + i];
        if (!u) continue;
        changed |= !b[j];
        b[j] = 1;
        for (int64_t i = 0; i < per; i++) {
            changed |= !a[j * per + i];
            a[j * per + i] = 1;
        }
    }
    return changed;
}

static int fill_all(unsigned char *a, int64_t n) {
    int changed = 0;
    for (int64_t i = 0; i < n; i++) {
        changed |= !a[i];
        a[i] = 1;
    }
    return changed;
}

/* One pass of layer li's ties; returns whether any flag changed. */
static int keep_layer(slicer *s, int li) {
    const ts_model *m = s->m;
    const layer *l = &m->layers[li];
    unsigned char *k = s->keep + s->off[li];
    const int64_t nc = channels(m, li);
    if (li == 0) return fill_all(k, nc); /* the model's input */
    int changed = li == m->nlayers - 1 ? fill_all(k, nc) : 0; /* and its output */
    switch (s->role[li]) {
    case ROLE_CHANNELWISE: changed |= tie(s->keep + s->off[l->inputs[0]], k, nc, 1); break;
    case ROLE_JOIN:
        for (int r = 0; r < 2; r++) /* twice: what the last input adds reaches the first */
            for (int i = 0; i < l->ninputs; i++) changed |= tie(s->keep + s->off[l->inputs[i]], k, nc, 1);
        break;
    case ROLE_CONCAT:
        for (int64_t i = 0, at = 0; i < l->ninputs; at += channels(m, l->inputs[i]), i++)
            changed |= tie(s->keep + s->off[l->inputs[i]], k + at, channels(m, l->inputs[i]), 1);
        break;
    case ROLE_FLATTEN:
        changed |= tie(k, s->keep + s->off[l->inputs[0]], channels(m, l->inputs[0]), plane(m, l->inputs[0]));
        break;
    case ROLE_BARRIER:
        changed |= fill_all(k, nc);
        for (int i = 0; i < l->ninputs; i++)
            changed |= fill_all(s->keep + s->off[l->inputs[i]], channels(m, l->inputs[i]));
        break;
    default: break;
    }
    if (!memchr(k, 1, (size_t)nc)) { /* a layer outputs something: a channel, even an unneeded one */
        k[0] = 1;
        changed = 1;
    }
    return changed;
}

static void keep_pass(slicer *s) {
    const ts_model *m = s->m;
    for (int64_t i = 0; i < s->off[m->nlayers]; i++) s->keep[i] = (unsigned char)live(s, i);
    /* sweeps alternately down and up the layers: a flag crosses a whole chain in one
     * sweep either way, so a few sweeps settle even a deep network */
    for (int changed = 1, sweep = 0; changed; sweep++) {
        changed = 0;
        for (int i = 0; i < m->nlayers; i++) changed |= keep_layer(s, sweep % 2 ? m->nlayers - 1 - i : i);
    }
    for (int li = 0; li < m->nlayers; li++) {
        int n = 0;
        for (int64_t c = 0; c < channels(m, li); c++)
            if (s->keep[s->off[li] + c]) s->kept[s->off[li] + n++] = (int)c;
        s->nkept[li] = n;
    }
}

/* ------------------------------------------------------------------ the new model */

static const int *kept_of(const slicer *s, int li) { return s->kept + s->off[li]; }

/* A mask whose kept planes are all ones does nothing: it goes (unless it is the output). */
static int mask_is_identity(const slicer *s, int li) {
    if (li == s->m->nlayers - 1) return 0;
    for (int i = 0; i < s->nkept[li]; i++)
        if (!mask_plane_is(s->m, li, kept_of(s, li)[i], 1.0f)) return 0;
    return 1;
}

/* Layer li's attributes for its kept channels. */
static layer_attrs sliced_attrs(const slicer *s, int li) {
    const layer *l = &s->m->layers[li];
    layer_attrs a = l->attrs;
    switch (l->kind) {
    case LAYER_CONV2D:
        if (s->role[li] == ROLE_CHANNELWISE) a.groups = s->nkept[li];
        a.features = s->nkept[li];
        break;
    case LAYER_DENSE: /* a dense over a sequence (per step) is a barrier: its outputs stay */
        if (s->role[li] == ROLE_PRODUCER) a.features = s->nkept[li];
        break;
    case LAYER_PRELU: case LAYER_BINARY:
        if (s->role[li] == ROLE_CHANNELWISE && varies_per_channel(l, &a.tshape)) a.tshape.dims[0] = s->nkept[li];
        break;
    case LAYER_RESHAPE:
        if (s->role[li] == ROLE_CHANNELWISE) a.tshape.dims[0] = s->nkept[li];
        break;
    default: break;
    }
    return a;
}

/* Copies tensor t of the origin into tensor nt of out: on axis 0 the entries rows
 * (NULL: all), on axis 1 the entries cols (NULL: all), the axes after whole. */
static ts_status copy_tensor(const slicer *s, ts_model *out, int nt, int t, const int *rows, int nrows,
                             const int *cols, int ncols) {
    if (t < 0 && nt < 0) return TS_OK;
    const tensor_entry *e = t >= 0 ? &s->m->tensors[t] : NULL;
    const int64_t nr = e ? e->shape.dims[0] : 0, nk = e && e->shape.ndim >= 2 ? e->shape.dims[1] : 1;
    const int64_t block = e ? e->numel / (nr * nk) : 0;
    if (!rows) nrows = (int)nr;
    if (!cols) ncols = (int)nk;
    if (!e || nt < 0 || out->tensors[nt].numel != (int64_t)nrows * ncols * block)
        return ts_fail(s->ctx, TS_EINVAL, "slice: tensor %s of the sliced model does not match its origin's %s",
                       nt >= 0 ? out->tensors[nt].name : "(none)", e ? e->name : "(none)");
    float *dst = tensor_data(out, nt);
    const float *src = tensor_at(s->m, t);
    for (int i = 0; i < nrows; i++)
        for (int j = 0; j < ncols; j++) {
            const int64_t r = rows ? rows[i] : i, c = cols ? cols[j] : j;
            memcpy(dst + ((int64_t)i * ncols + j) * block, src + (r * nk + c) * block, (size_t)block * sizeof *dst);
        }
    return TS_OK;
}

/* Fills sliced layer `to` from origin layer li: per-channel tensors take the kept rows
 * (and a conv2d or dense weight the kept input columns), the others are copied whole. */
static ts_status fill_layer(const slicer *s, ts_model *out, int li, const nn_added *to) {
    const layer *l = &s->m->layers[li];
    const int *rows = kept_of(s, li), nrows = s->nkept[li];
    const int *cols = NULL, ncols = s->nkept[l->inputs[0]];
    /* a dense over a sequence (per step) is a barrier: its tensors are copied whole */
    const int producer = l->kind == LAYER_CONV2D || (l->kind == LAYER_DENSE && s->role[li] == ROLE_PRODUCER);
    if (producer && s->role[li] == ROLE_PRODUCER) cols = kept_of(s, l->inputs[0]);
    const int per_channel = producer || l->kind == LAYER_BATCHNORM || l->kind == LAYER_MASK ||
                            (s->role[li] == ROLE_CHANNELWISE && varies_per_channel(l, &l->tshape));
    if (!per_channel) rows = NULL;
    const int from[6] = {l->weight, l->bias_t, l->running_mean, l->running_var, l->mask, l->konst};
    const int into[6] = {to->weight, to->bias, to->running_mean, to->running_var, to->mask, to->konst};
    ts_status st = TS_OK;
    for (int i = 0; i < 6 && !st; i++) st = copy_tensor(s, out, into[i], from[i], rows, nrows, i ? NULL : cols, ncols);
    return st;
}

static ts_status build(slicer *s, ts_model **out) {
    const ts_model *m = s->m;
    *out = NULL;
    int *idx = malloc((size_t)m->nlayers * sizeof *idx);         /* origin layer -> sliced layer */
    nn_added *added = calloc((size_t)m->nlayers, sizeof *added); /* layer -1: dropped */
    if (!idx || !added) {
        free(idx);
        free(added);
        return ts_fail(s->ctx, TS_ENOMEM, "slice: out of memory");
    }
    nn_builder *b;
    ts_status st = nn_builder_create(s->ctx, "slice", 0, &m->input, m->classes, m->layers[0].name, &b);
    idx[0] = 0;
    for (int li = 1; li < m->nlayers && !st; li++) {
        const layer *l = &m->layers[li];
        if (l->kind == LAYER_MASK && mask_is_identity(s, li)) {
            idx[li] = idx[l->inputs[0]];
            added[li].layer = -1;
            continue;
        }
        int ins[LAYER_MAX_INPUTS];
        for (int k = 0; k < l->ninputs; k++) ins[k] = idx[l->inputs[k]];
        const layer_attrs a = sliced_attrs(s, li);
        st = nn_add_at(b, l->kind, l->name, ins, l->ninputs, &a, &added[li]);
        idx[li] = added[li].layer;
    }
    ts_model *sm = NULL;
    if (st) nn_builder_free(b);
    else st = nn_builder_finish(b, 0, NULL, &sm); /* every tensor is overwritten below */
    for (int li = 1; li < m->nlayers && !st; li++)
        if (added[li].layer >= 0) st = fill_layer(s, sm, li, &added[li]);
    for (int i = 0; i < m->nmeta && !st; i++) st = ts_model_set_meta(s->ctx, sm, m->meta[i].key, m->meta[i].value);
    free(idx);
    free(added);
    if (st) {
        ts_model_free(sm);
        return st;
    }
    *out = sm;
    return TS_OK;
}

/* ------------------------------------------------------------------ entry */

void model_measure(const ts_model *m, int64_t *params, int64_t *macs, int64_t *kernels) {
    *params = (int64_t)m->nparams;
    *macs = *kernels = 0;
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        *macs += LAYER_OPS[l->kind].macs(m, l);
        if (l->kind == LAYER_CONV2D || l->kind == LAYER_DENSE) *kernels += l->out.dims[0];
    }
}

void slice_report_free(slice_report *rep) {
    free(rep->keep);
    free(rep->keep_off);
    rep->keep = NULL;
    rep->keep_off = NULL;
}

static void slicer_free(slicer *s) {
    free(s->role);
    free(s->off);
    free(s->zero);
    free(s->need);
    free(s->keep);
    free(s->kept);
    free(s->nkept);
}

ts_status model_slice(ts_ctx *ctx, const ts_model *m, ts_model **out, slice_report *rep) {
    if (!ctx || !m || !out) return ts_fail(ctx, TS_EINVAL, "model_slice: NULL argument");
    *out = NULL;
    if (!m->params || m->nlayers < 2) return ts_fail(ctx, TS_EINVAL, "model_slice: the model has no storage or layers");
    slicer s = {.ctx = ctx, .m = m};
    const int n = m->nlayers;
    s.role = malloc((size_t)n * sizeof *s.role);
    s.off = malloc((size_t)(n + 1) * sizeof *s.off);
    s.nkept = malloc((size_t)n * sizeof *s.nkept);
    ts_status st = TS_OK;
    if (!s.role || !s.off || !s.nkept) {
        st = ts_fail(ctx, TS_ENOMEM, "slice: out of memory");
        goto done;
    }
    s.off[0] = 0;
    for (int li = 0; li < n; li++) {
        s.role[li] = role_of(m, &m->layers[li]);
        s.off[li + 1] = s.off[li] + channels(m, li);
    }
    const size_t total = (size_t)s.off[n];
    s.zero = calloc(total, 1);
    s.need = calloc(total, 1);
    s.keep = calloc(total, 1);
    s.kept = malloc(total * sizeof *s.kept);
    if (!s.zero || !s.need || !s.keep || !s.kept) {
        st = ts_fail(ctx, TS_ENOMEM, "slice: out of memory for %zu channel flags", total);
        goto done;
    }
    zero_pass(&s);
    need_pass(&s);
    keep_pass(&s);
    if ((st = build(&s, out))) goto done;
    if (rep) {
        model_measure(m, &rep->params_before, &rep->macs_before, &rep->channels_before);
        model_measure(*out, &rep->params_after, &rep->macs_after, &rep->channels_after);
        rep->keep = NULL;
        rep->keep_off = NULL;
        if (rep->want_keep) {
            rep->keep = malloc(total ? total : 1);
            rep->keep_off = malloc((size_t)(n + 1) * sizeof *rep->keep_off);
            if (!rep->keep || !rep->keep_off) {
                slice_report_free(rep);
                ts_model_free(*out);
                *out = NULL;
                st = ts_fail(ctx, TS_ENOMEM, "slice: out of memory");
                goto done;
            }
            memcpy(rep->keep, s.keep, total);
            memcpy(rep->keep_off, s.off, (size_t)(n + 1) * sizeof *s.off);
        }
    }
done:
    slicer_free(&s);
    return st;
}
