/* Early exits (T-RECX, docs/early-exit.md): which layer is the exit, the layers its
 * path needs and their MACs, the early-view pair whose weights training ties, and the
 * exit block added to an architecture through the builder. */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void exit_ancestors(const ts_model *m, int out, unsigned char *on /* (nlayers) */) {
    memset(on, 0, (size_t)m->nlayers);
    on[out] = 1;
    for (int li = out; li >= 1; li--)
        if (on[li])
            for (int k = 0; k < m->layers[li].ninputs; k++) on[m->layers[li].inputs[k]] = 1;
    on[0] = 1;
}

ts_status exit_check(ts_ctx *ctx, ts_model *m, const char *where) {
    m->exit_layer = 0;
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        if (l->kind != LAYER_DENSE || !l->exit_out) continue;
        if (li == m->nlayers - 1)
            return ts_fail(ctx, TS_EFORMAT, "%s: dense '%s': exit=1 marks an early exit, but it is the last layer "
                                            "(the final output)", where, l->name);
        if (m->exit_layer)
            return ts_fail(ctx, TS_EFORMAT, "%s: dense '%s': a second early exit (the first is '%s'; at most one)", where,
                           l->name, m->layers[m->exit_layer].name);
        if (shape_numel(&l->out) != m->classes)
            return ts_fail(ctx, TS_ESHAPE, "%s: dense '%s': an early exit outputs %lld values, the model's classes are %d",
                           where, l->name, (long long)shape_numel(&l->out), m->classes);
        m->exit_layer = li;
    }
    return TS_OK;
}

static int same_shape(const ts_shape *a, const ts_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

static int is_depthwise(const layer *l) {
    return l->kind == LAYER_CONV2D && l->groups == l->features && l->groups > 1;
}

int exit_view_pair(const ts_model *m, int *src, int *dst) {
    *src = *dst = 0;
    if (!m->exit_layer) return 0;
    unsigned char *ex = malloc((size_t)m->nlayers), *fin = malloc((size_t)m->nlayers);
    if (ex && fin) {
        exit_ancestors(m, m->exit_layer, ex);
        exit_ancestors(m, m->nlayers - 1, fin);
        for (int li = 1; li < m->nlayers; li++) {
            const layer *l = &m->layers[li];
            if (!*dst && l->kind == LAYER_CONV2D && l->early_view && fin[li]) *dst = li;
        }
        /* the exit's own depthwise convolution of the same weight shape (the last one) */
        for (int li = 1; *dst && li < m->nlayers; li++)
            if (ex[li] && !fin[li] && is_depthwise(&m->layers[li]) &&
                same_shape(&m->tensors[m->layers[li].weight].shape, &m->tensors[m->layers[*dst].weight].shape) &&
                (m->layers[li].bias_t >= 0) == (m->layers[*dst].bias_t >= 0))
                *src = li;
    }
    free(ex);
    free(fin);
    if (!*src) *dst = 0;
    return *src != 0;
}

int ts_model_exit_info(const ts_model *m, ts_exit_info *info) {
    if (!m || !m->exit_layer) return 0;
    unsigned char *ex = malloc((size_t)m->nlayers), *fin = malloc((size_t)m->nlayers);
    int ok = ex && fin;
    if (ok) {
        memset(info, 0, sizeof *info);
        info->layer = m->exit_layer;
        exit_ancestors(m, m->exit_layer, ex);
        exit_ancestors(m, m->nlayers - 1, fin);
        for (int li = 1; li < m->nlayers; li++) {
            const int64_t macs = LAYER_OPS[m->layers[li].kind].macs(m, &m->layers[li]);
            if (ex[li]) info->macs_exit += macs;
            if (fin[li]) info->macs_plain += macs;
            if (fin[li] && !ex[li]) info->macs_rest += macs;
        }
    }
    free(ex);
    free(fin);
    return ok;
}

float exit_top_probability(const float *z, int k) {
    float mx = z[0];
    for (int j = 1; j < k; j++)
        if (z[j] > mx) mx = z[j];
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += exp((double)(z[j] - mx));
    return (float)(1.0 / sum);
}

void ts_exit_config_default(ts_exit_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->channels = 32;
    cfg->early_view = 1;
}

/* ---- adding the exit block to an architecture: the parsed layers are replayed into a
 * new builder, the exit inserted after its layer and the head rewritten for early view */

/* cfg->after as a layer of b: the name itself, else the last layer named "after.*" */
static int find_after(const nn_builder *b, const char *after) {
    int at = nn_builder_find(b, after);
    const size_t n = strlen(after);
    if (at >= 0) return at;
    for (int li = nn_builder_layer_count(b) - 1; li >= 1; li--) {
        const char *name = nn_builder_layer(b, li)->name;
        if (!strncmp(name, after, n) && name[n] == '.') return li;
    }
    return -1;
}

/* The final feature map the early view reads: the last layer is a dense on a
 * globalavgpool (through a flatten or not); its input. -1 when the head is not so. */
static int head_features(const nn_builder *b, int *gap) {
    const int last = nn_builder_layer_count(b) - 1;
    const layer *d = nn_builder_layer(b, last);
    if (d->kind != LAYER_DENSE || d->ninputs != 1) return -1;
    int g = d->inputs[0];
    if (nn_builder_layer(b, g)->kind == LAYER_FLATTEN) g = nn_builder_layer(b, g)->inputs[0];
    if (nn_builder_layer(b, g)->kind != LAYER_GLOBALAVGPOOL) return -1;
    *gap = d->inputs[0];
    return nn_builder_layer(b, g)->inputs[0];
}

static ts_status add_layer(nn_builder *b, layer_kind kind, const char *name, int in0, int in1,
                           const layer_attrs *a, int *idx) {
    const int in[2] = {in0, in1};
    nn_added got;
    ts_status st = nn_add_at(b, kind, name, in, in1 >= 0 ? 2 : 1, a, &got);
    if (!st) *idx = got.layer;
    return st;
}

/* depthwise 2x2 stride 2 (T-RECX's DepthwiseConv2D, no padding needed on even sizes)
 * and its ReLU, on `in` of `ch` channels; *out the ReLU */
static ts_status add_depthwise(nn_builder *b, const char *prefix, int in, int ch, int view, int *out) {
    char name[LAYER_NAME_MAX];
    layer_attrs a;
    nn_attrs_default(LAYER_CONV2D, &a);
    a.features = a.groups = ch;
    a.kh = a.kw = a.sh = a.sw = 2;
    a.early_view = view;
    int dw;
    snprintf(name, sizeof name, "%s.dw", prefix);
    ts_status st = add_layer(b, LAYER_CONV2D, name, in, -1, &a, &dw);
    snprintf(name, sizeof name, "%s.relu", prefix);
    return st ? st : add_layer(b, LAYER_RELU, name, dw, -1, NULL, out);
}

/* The exit block after layer `at` (C, H, W) of the new builder. */
static ts_status add_exit(ts_ctx *ctx, nn_builder *b, int at, const ts_exit_config *cfg, int classes) {
    const layer *src = nn_builder_layer(b, at);
    if (src->out.ndim != 3 || src->out.dims[1] < 2 || src->out.dims[2] < 2)
        return ts_fail(ctx, TS_ESHAPE, "early exit after '%s': needs a CxHxW feature map of at least 2x2 (it outputs "
                                       "%d axes)", src->name, src->out.ndim);
    layer_attrs a;
    int conv, relu, pool, flat, fc;
    nn_attrs_default(LAYER_CONV2D, &a);
    a.features = cfg->channels;
    a.kh = a.kw = 1;
    ts_status st = add_layer(b, LAYER_CONV2D, "exit.conv", at, -1, &a, &conv);
    if (!st) st = add_depthwise(b, "exit", conv, cfg->channels, 0, &relu);
    if (st) return st;
    /* an average pool to 4x4, as T-RECX's 4x4 pool on ResNet-8's 16x16 */
    const ts_shape *s = &nn_builder_layer(b, relu)->out;
    nn_attrs_default(LAYER_AVGPOOL, &a);
    a.kh = s->dims[1] >= 8 ? (int)s->dims[1] / 4 : 1;
    a.kw = s->dims[2] >= 8 ? (int)s->dims[2] / 4 : 1;
    a.sh = a.kh;
    a.sw = a.kw;
    if ((st = add_layer(b, LAYER_AVGPOOL, "exit.pool", relu, -1, &a, &pool))) return st;
    if ((st = add_layer(b, LAYER_FLATTEN, "exit.flatten", pool, -1, NULL, &flat))) return st;
    nn_attrs_default(LAYER_DENSE, &a);
    a.features = classes;
    a.exit_out = 1;
    return add_layer(b, LAYER_DENSE, "exit.fc", flat, -1, &a, &fc);
}

/* The early view in front of the final dense: concat(gap, flatten(ReLU(depthwise of the
 * first `channels` channels of feat))); *out the concat */
static ts_status add_view(ts_ctx *ctx, nn_builder *b, int feat, int gap, int channels, int *out) {
    const layer *f = nn_builder_layer(b, feat);
    if (f->out.ndim != 3 || f->out.dims[0] < channels || f->out.dims[1] < 2 || f->out.dims[2] < 2)
        return ts_fail(ctx, TS_ESHAPE, "early view: the final feature map '%s' needs at least %d channels of 2x2",
                       f->name, channels);
    layer_attrs a;
    int crop = feat, relu, flat;
    ts_status st = TS_OK;
    if (f->out.dims[0] > channels) { /* the first `channels` channels: a pad that crops the rest */
        nn_attrs_default(LAYER_PAD, &a);
        a.npads = 6;
        memset(a.pads, 0, sizeof a.pads);
        a.pads[3] = channels - (int)f->out.dims[0];
        st = add_layer(b, LAYER_PAD, "view.crop", feat, -1, &a, &crop);
    }
    if (!st) st = add_depthwise(b, "view", crop, channels, 1, &relu);
    if (!st) st = add_layer(b, LAYER_FLATTEN, "view.flatten", relu, -1, NULL, &flat);
    nn_attrs_default(LAYER_CONCAT, &a);
    return st ? st : add_layer(b, LAYER_CONCAT, "view.concat", gap, flat, &a, out);
}

static ts_status replay_with_exit(ts_ctx *ctx, nn_builder *from, nn_builder *to, const ts_exit_config *cfg,
                                  int classes) {
    const int n = nn_builder_layer_count(from);
    int *map = malloc(sizeof *map * (size_t)n);
    if (!map) return ts_fail(ctx, TS_ENOMEM, "out of memory adding an early exit");
    ts_status st = TS_OK;
    int after = find_after(from, cfg->after), gap = -1, feat = -1;
    if (after < 1)
        st = ts_fail(ctx, TS_ENOTFOUND, "early exit: after=%s is neither a layer nor a stage (layers named '%s.*')",
                     cfg->after, cfg->after);
    else if (cfg->early_view && (feat = head_features(from, &gap)) < 0)
        st = ts_fail(ctx, TS_EUNSUPPORTED, "early view: the network must end in globalavgpool -> dense (it ends in %s "
                                          "'%s'); turn early view off (view=0)", LAYER_OPS[nn_builder_layer(from, n - 1)->kind].name,
                     nn_builder_layer(from, n - 1)->name);
    else if (feat >= 0 && feat < after)
        st = ts_fail(ctx, TS_EINVAL, "early exit: after=%s is past the final feature map '%s'", cfg->after,
                     nn_builder_layer(from, feat)->name);
    map[0] = 0;
    for (int li = 1; li < n && !st; li++) {
        const layer *l = nn_builder_layer(from, li);
        int in[LAYER_MAX_INPUTS];
        for (int k = 0; k < l->ninputs; k++) in[k] = map[l->inputs[k]];
        if (li == n - 1 && cfg->early_view) {
            int concat = 0;
            if ((st = add_view(ctx, to, map[feat], map[gap], cfg->channels, &concat))) break;
            in[0] = concat;
        }
        nn_builder_set_line(to, l->line);
        nn_added got;
        if ((st = nn_add_at(to, l->kind, l->name, in, l->ninputs, &l->attrs, &got))) break;
        map[li] = got.layer;
        if (li == after) st = add_exit(ctx, to, got.layer, cfg, classes);
    }
    free(map);
    return st;
}

ts_status ts_model_from_arch_exit(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input,
                                  int classes, uint64_t seed, const ts_exit_config *cfg, ts_model **out) {
    if (!ctx || !text || !source || !cfg || !cfg->after || !out)
        return ts_fail(ctx, TS_EINVAL, "ts_model_from_arch_exit: NULL argument");
    *out = NULL;
    if (cfg->channels < 1 || cfg->channels > 4096)
        return ts_fail(ctx, TS_EINVAL, "early exit: %d channels out of 1..4096", cfg->channels);
    nn_builder *from = NULL, *to = NULL;
    ts_status st = arch_parse(ctx, text, source, input, classes, NULL, &from);
    if (st) return st;
    const layer *in = nn_builder_layer(from, 0);
    const int n = nn_builder_layer_count(from);
    const int k = (int)shape_numel(&nn_builder_layer(from, n - 1)->out);
    for (int li = 1; li < n && !st; li++)
        if (nn_builder_layer(from, li)->exit_out)
            st = ts_fail(ctx, TS_EINVAL, "%s: already has an early exit ('%s')", source, nn_builder_layer(from, li)->name);
    if (!st) st = nn_builder_create(ctx, source, in->line, &in->out, k, in->name, &to);
    if (!st) st = replay_with_exit(ctx, from, to, cfg, k);
    nn_builder_free(from);
    if (st) {
        nn_builder_free(to);
        return st;
    }
    return nn_builder_finish(to, seed, NULL, out);
}
