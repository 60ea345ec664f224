/* Structured pruning (docs/pruning.md): complexity-driven at initialization (Zawish,
 * Davy & Abraham 2022) and by filter L1 norm of a trained model (Li et al. 2017).
 *
 * Channel groups. A layer's output channels belong to a group with every tensor that
 * must keep the same channels: channel-wise layers (batch norm, activations, pools,
 * dropout, a depthwise conv) share their input's, an `add` joins its inputs' and its
 * own. A group whose channels come from conv2d/dense layers (its sources) can be
 * narrowed: the sources lose filters, the members follow, and the layers reading it
 * (conv2d, dense, flatten, concat on channels) lose input channels by shape inference.
 * A group is left whole when it holds the model's input or output or meets a layer
 * this file does not know (its input and output groups); the output of a flatten or
 * concat is sized by its inputs, so when that output may not change (it is whole, or
 * an add ties it to something else) neither may its inputs. */
#include "modular.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct prune_plan {
    const ts_model *m;
    int *group;      /* (nlayers) group of the layer's output, -1: not pruned (or sized by its inputs) */
    int ngroups;
    int64_t *orig;   /* (ngroups) channels in m */
    int64_t *size;   /* (ngroups) channels after pruning */
    int multiple;    /* widths kept at multiples of it (1: any) */
} prune_plan;

typedef struct cost {
    int64_t params, macs, memory;
} cost;

static int is_depthwise(const ts_model *m, const layer *l) {
    return l->kind == LAYER_CONV2D && l->groups > 1 && l->groups == input_shape(m, l, 0)->dims[0] &&
           l->features == l->groups;
}

/* conv2d (groups 1) and dense over a vector: output channels from any input channels */
static int is_source(const ts_model *m, const layer *l) {
    return (l->kind == LAYER_CONV2D && l->groups == 1) || (l->kind == LAYER_DENSE && input_shape(m, l, 0)->ndim == 1);
}

/* output channel c from input channel c alone, with attributes that do not name the count */
static int is_channelwise(const ts_model *m, const layer *l) {
    switch (l->kind) {
    case LAYER_BATCHNORM: case LAYER_RELU: case LAYER_LEAKYRELU: case LAYER_SIGMOID: case LAYER_TANH:
    case LAYER_DROPOUT: case LAYER_ELU: case LAYER_SELU: case LAYER_HARDSIGMOID: case LAYER_CLIP:
    case LAYER_HARDSWISH: case LAYER_SQRT: case LAYER_ERF: case LAYER_POW: return 1;
    case LAYER_MAXPOOL: case LAYER_AVGPOOL: case LAYER_GLOBALAVGPOOL: case LAYER_GLOBALMAXPOOL:
        return input_shape(m, l, 0)->ndim == 3;
    case LAYER_CONV2D: return is_depthwise(m, l);
    default: return 0;
    }
}

/* flatten of an image, concat on channels: sized by the inputs */
static int is_derived(const ts_model *m, const layer *l) {
    return (l->kind == LAYER_FLATTEN && input_shape(m, l, 0)->ndim == 3) || (l->kind == LAYER_CONCAT && l->axis == 0);
}

static int find(int *parent, int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

static void join(int *parent, int a, int b) {
    a = find(parent, a);
    b = find(parent, b);
    if (a != b) parent[a > b ? a : b] = a < b ? a : b;
}

static void plan_free(prune_plan *p) {
    free(p->group);
    free(p->orig);
    free(p->size);
    memset(p, 0, sizeof *p);
}

/* The narrowest group g may become: one channel, or `multiple` (a group already
 * narrower than that stays as it is). */
static int64_t floor_of(const prune_plan *p, int g) {
    return p->multiple <= 1 ? 1 : p->orig[g] < p->multiple ? p->orig[g] : p->multiple;
}

/* Group g narrowed from `from` channels to at most `want`: rounded down to a multiple,
 * kept at floor_of (a width that does not shrink stays `from`). */
static int64_t narrowed(const prune_plan *p, int g, int64_t from, int64_t want) {
    if (want >= from) return from;
    if (p->multiple > 1) want -= want % p->multiple;
    return want < floor_of(p, g) ? floor_of(p, g) : want;
}

/* "one filter", or "16 filters" with a multiple of 16, for the messages; buf holds 32 */
static const char *narrowest(const prune_plan *p, char *buf) {
    if (p->multiple <= 1) return "one filter";
    snprintf(buf, 32, "%d filters", p->multiple);
    return buf;
}

/* Marks root r whole; returns whether it changed. */
static int fix(unsigned char *whole, int r) {
    const int was = whole[r];
    whole[r] = 1;
    return !was;
}

static void mark_whole(const ts_model *m, int *parent, unsigned char *whole, const int *nsrc, const int *nder) {
    const int n = m->nlayers;
    fix(whole, find(parent, 0));
    fix(whole, find(parent, n - 1));
    for (int li = 1; li < n; li++) {
        const layer *l = &m->layers[li];
        const int r = find(parent, li);
        if (is_source(m, l) || is_channelwise(m, l) || l->kind == LAYER_ADD || is_derived(m, l)) continue;
        fix(whole, r); /* a layer not known here: its output and inputs stay as they are */
        for (int k = 0; k < l->ninputs; k++) fix(whole, find(parent, l->inputs[k]));
    }
    for (int r = 0; r < n; r++)
        if (parent[r] == r && (nder[r] > 1 || (nder[r] && nsrc[r]) || (!nder[r] && !nsrc[r]))) fix(whole, r);
    for (int changed = 1; changed;) { /* a whole derived output keeps its inputs whole, down chains */
        changed = 0;
        for (int li = 1; li < n; li++)
            if (is_derived(m, &m->layers[li]) && whole[find(parent, li)])
                for (int k = 0; k < m->layers[li].ninputs; k++) changed |= fix(whole, find(parent, m->layers[li].inputs[k]));
    }
}

static ts_status plan_groups(ts_ctx *ctx, const ts_model *m, prune_plan *p) {
    memset(p, 0, sizeof *p);
    p->m = m;
    const int n = m->nlayers;
    int *parent = malloc((size_t)n * sizeof *parent), *nsrc = calloc((size_t)n, sizeof *nsrc);
    int *nder = calloc((size_t)n, sizeof *nder), *gid = malloc((size_t)n * sizeof *gid);
    unsigned char *whole = calloc((size_t)n, 1);
    p->group = malloc((size_t)n * sizeof *p->group);
    p->orig = malloc((size_t)n * sizeof *p->orig);
    p->size = malloc((size_t)n * sizeof *p->size);
    ts_status st = TS_OK;
    if (!parent || !nsrc || !nder || !gid || !whole || !p->group || !p->orig || !p->size) {
        st = ts_fail(ctx, TS_ENOMEM, "prune: out of memory");
        goto done;
    }
    for (int li = 0; li < n; li++) parent[li] = li;
    for (int li = 1; li < n; li++) {
        const layer *l = &m->layers[li];
        if (is_channelwise(m, l)) join(parent, li, l->inputs[0]);
        else if (l->kind == LAYER_ADD)
            for (int k = 0; k < l->ninputs; k++) join(parent, li, l->inputs[k]);
    }
    for (int li = 1; li < n; li++) {
        nsrc[find(parent, li)] += is_source(m, &m->layers[li]);
        nder[find(parent, li)] += is_derived(m, &m->layers[li]);
    }
    mark_whole(m, parent, whole, nsrc, nder);
    for (int li = 0; li < n; li++) gid[li] = -1;
    for (int li = 0; li < n; li++) {
        const int r = find(parent, li);
        if (whole[r]) {
            p->group[li] = -1;
            continue;
        }
        if (!nsrc[r]) { /* sized by its inputs (a flatten, a concat) */
            p->group[li] = -1;
            continue;
        }
        if (gid[r] < 0) {
            gid[r] = p->ngroups;
            p->orig[p->ngroups] = p->size[p->ngroups] = m->layers[li].out.dims[0];
            p->ngroups++;
        }
        p->group[li] = gid[r];
    }
done:
    free(parent);
    free(nsrc);
    free(nder);
    free(gid);
    free(whole);
    if (st) plan_free(p);
    return st;
}

/* ------------------------------------------------------------------ cost */

static int64_t layer_params(const ts_model *m, int li) {
    int64_t n = 0;
    for (int t = 0; t < m->ntensors; t++)
        if (m->tensors[t].layer == li && m->tensors[t].role == TS_TENSOR_PARAM) n += m->tensors[t].numel;
    return n;
}

/* Layer li's own complexity (the weight of a draw): parameters, MACs, or
 * (3 params + 2 outputs) x 4 bytes. */
static void layer_cost(const ts_model *m, int li, cost *c) {
    const layer *l = &m->layers[li];
    c->params = layer_params(m, li);
    c->macs = LAYER_OPS[l->kind].macs(m, l);
    c->memory = (3 * c->params + 2 * shape_numel(&l->out)) * 4;
}

static void model_cost(const ts_model *m, cost *c) {
    memset(c, 0, sizeof *c);
    for (int li = 1; li < m->nlayers; li++) {
        cost lc;
        layer_cost(m, li, &lc);
        c->params += lc.params;
        c->macs += lc.macs;
        c->memory += lc.memory;
    }
}

static double cost_of(const cost *c, ts_prune_mode mode) {
    return (double)(mode == TS_PRUNE_PARAMS ? c->params : mode == TS_PRUNE_FLOPS ? c->macs : c->memory);
}

/* ------------------------------------------------------------------ rebuilding m */

typedef enum rebuild_kind {
    REBUILD_MEASURE, /* the groups at p->size, without storage: for counting */
    REBUILD_INIT,    /* the groups at p->size, initialized from the seed */
    REBUILD_MASKED   /* m's shapes with a mask after every layer of a group that loses channels */
} rebuild_kind;

/* m rebuilt through the builder; at (nlayers, may be NULL) receives where each layer of
 * m went (its mask follows it). */
static ts_status rebuild(ts_ctx *ctx, const prune_plan *p, rebuild_kind kind, uint64_t seed, int *at, ts_model **out) {
    const ts_model *m = p->m;
    *out = NULL;
    int *map = malloc((size_t)m->nlayers * sizeof *map);
    if (!map) return ts_fail(ctx, TS_ENOMEM, "prune: out of memory");
    nn_builder *b;
    ts_status st = nn_builder_create(ctx, "prune", 0, &m->input, m->classes, m->layers[0].name, &b);
    map[0] = 0;
    if (at) at[0] = 0;
    for (int li = 1; li < m->nlayers && !st; li++) {
        const layer *l = &m->layers[li];
        const int g = p->group[li];
        int ins[LAYER_MAX_INPUTS];
        for (int k = 0; k < l->ninputs; k++) ins[k] = map[l->inputs[k]];
        layer_attrs a = l->attrs;
        if (kind != REBUILD_MASKED && g >= 0) {
            if (is_source(m, l)) a.features = (int)p->size[g];
            else if (is_depthwise(m, l)) a.features = a.groups = (int)p->size[g];
        }
        nn_added ad;
        if ((st = nn_add_at(b, l->kind, l->name, ins, l->ninputs, &a, &ad))) break;
        map[li] = ad.layer;
        if (at) at[li] = ad.layer;
        if (kind == REBUILD_MASKED && g >= 0 && p->size[g] < p->orig[g]) {
            char name[LAYER_NAME_MAX];
            snprintf(name, sizeof name, "%.*s.keep", LAYER_NAME_MAX - 6, l->name);
            st = nn_add_at(b, LAYER_MASK, name, &ad.layer, 1, NULL, &ad);
            map[li] = ad.layer;
        }
    }
    free(map);
    if (st) {
        nn_builder_free(b);
        return st;
    }
    return kind == REBUILD_MEASURE ? nn_builder_finish_unallocated(b, out) : nn_builder_finish(b, seed, NULL, out);
}

/* The share of m's complexity (base) that the groups at p->size remove. */
static ts_status achieved_at(ts_ctx *ctx, const prune_plan *p, ts_prune_mode mode, double base, double *share) {
    ts_model *cur;
    ts_status st = rebuild(ctx, p, REBUILD_MEASURE, 0, NULL, &cur);
    if (st) return st;
    cost c;
    model_cost(cur, &c);
    ts_model_free(cur);
    *share = base > 0 ? 1.0 - cost_of(&c, mode) / base : 0.0;
    return TS_OK;
}

/* ------------------------------------------------------------------ entry points */

void ts_prune_config_default(ts_prune_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->mode = TS_PRUNE_FLOPS;
    cfg->target = 0.5;
}

void ts_prune_report_free(ts_prune_report *rep) {
    if (!rep) return;
    free(rep->layers);
    rep->layers = NULL;
    rep->nlayers = 0;
}

static const char *mode_name(ts_prune_mode mode) {
    return mode == TS_PRUNE_PARAMS ? "parameters" : mode == TS_PRUNE_FLOPS ? "FLOPs" : "memory";
}

/* Checks the arguments and groups m's channels. */
static ts_status prune_begin(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, const char *what,
                             prune_plan *p) {
    memset(p, 0, sizeof *p);
    if (!ctx || !m || !cfg) return ts_fail(ctx, TS_EINVAL, "%s: NULL argument", what);
    if ((unsigned)cfg->mode > TS_PRUNE_MEMORY) return ts_fail(ctx, TS_EINVAL, "%s: unknown mode %d", what, (int)cfg->mode);
    if (!(cfg->target > 0.0 && cfg->target < 1.0))
        return ts_fail(ctx, TS_EINVAL, "%s: target %g is not a share strictly between 0 and 1", what, cfg->target);
    if (!(cfg->chunk >= 0.0 && cfg->chunk < 1.0))
        return ts_fail(ctx, TS_EINVAL, "%s: chunk %g is not a share in [0, 1)", what, cfg->chunk);
    if (cfg->multiple < 0 || cfg->multiple > 4096)
        return ts_fail(ctx, TS_EINVAL, "%s: multiple %d is not a width from 0 to 4096", what, cfg->multiple);
    ts_status st = plan_groups(ctx, m, p);
    p->multiple = cfg->multiple > 1 ? cfg->multiple : 1;
    if (!st && !p->ngroups)
        st = ts_fail(ctx, TS_EUNSUPPORTED, "%s: no layer can be pruned (every conv2d/dense output reaches the model's "
                     "output, or a layer pruning does not handle)", what);
    if (st) plan_free(p);
    return st;
}

static int find_layer(const ts_model *m, const char *name) {
    for (int li = 0; li < m->nlayers; li++)
        if (!strcmp(m->layers[li].name, name)) return li;
    return -1;
}

static ts_status fill_report(ts_ctx *ctx, const prune_plan *p, const ts_model *after, const ts_prune_config *cfg,
                             ts_prune_report *rep) {
    const ts_model *m = p->m;
    cost b, a;
    model_cost(m, &b);
    model_cost(after, &a);
    rep->params_before = b.params;
    rep->params_after = a.params;
    rep->macs_before = b.macs;
    rep->macs_after = a.macs;
    rep->memory_before = b.memory;
    rep->memory_after = a.memory;
    rep->target = cfg->target;
    rep->achieved = cost_of(&b, cfg->mode) > 0 ? 1.0 - cost_of(&a, cfg->mode) / cost_of(&b, cfg->mode) : 0.0;
    rep->groups = p->ngroups;
    rep->nlayers = 0;
    for (int li = 1; li < m->nlayers; li++) rep->nlayers += m->layers[li].kind == LAYER_CONV2D || m->layers[li].kind == LAYER_DENSE;
    rep->layers = calloc((size_t)(rep->nlayers ? rep->nlayers : 1), sizeof *rep->layers);
    if (!rep->layers) return ts_fail(ctx, TS_ENOMEM, "prune: out of memory for the report");
    for (int li = 1, k = 0; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        if (l->kind != LAYER_CONV2D && l->kind != LAYER_DENSE) continue;
        ts_prune_layer *r = &rep->layers[k++];
        snprintf(r->name, sizeof r->name, "%s", l->name);
        r->group = p->group[li];
        r->before = l->out.dims[0];
        const int j = find_layer(after, l->name);
        r->after = j >= 0 ? after->layers[j].out.dims[0] : 0;
    }
    return TS_OK;
}

/* The report on *out (when st is TS_OK and rep is given); on failure nothing is left.
 * Frees the plan; returns st or the report's failure. */
static ts_status prune_end(ts_ctx *ctx, prune_plan *p, ts_status st, const ts_prune_config *cfg, int draws,
                           double ratio, ts_model **out, ts_prune_report *rep) {
    if (!st && rep) {
        st = fill_report(ctx, p, *out, cfg, rep);
        rep->draws = draws;
        rep->ratio = ratio;
        rep->multiple = p->multiple;
    }
    if (st) {
        ts_prune_report_free(rep);
        ts_model_free(*out);
        *out = NULL;
    }
    plan_free(p);
    return st;
}

/* One draw: a source layer of a group that can still lose a channel, at random in
 * proportion to its own complexity in cur; -1 when none can. */
static int draw_layer(const prune_plan *p, const ts_model *cur, ts_prune_mode mode, ts_rng *rng) {
    double sum = 0; /* two passes over the candidates: their total weight, then the draw */
    for (int pass = 0; pass < 2; pass++) {
        const double u = pass ? (double)(ts_rng_next(rng) >> 11) * 0x1p-53 * sum : 0;
        double acc = 0;
        int last = -1;
        for (int li = 1; li < cur->nlayers; li++) {
            const int g = p->group[li];
            if (g < 0 || p->size[g] <= floor_of(p, g) || !is_source(cur, &cur->layers[li])) continue;
            cost c;
            layer_cost(cur, li, &c);
            acc += cost_of(&c, mode);
            if (acc <= 0) continue;
            last = li;
            if (pass && u < acc) return li;
        }
        if (pass) return last; /* u rounded up to the sum */
        if (acc <= 0) return -1;
        sum = acc;
    }
    return -1;
}

ts_status ts_prune_arch(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, ts_model **out,
                        ts_prune_report *rep) {
    if (rep) memset(rep, 0, sizeof *rep);
    if (out) *out = NULL;
    prune_plan p;
    ts_status st = prune_begin(ctx, m, cfg, "ts_prune_arch", &p);
    if (st) return st;
    if (!out) {
        plan_free(&p);
        return ts_fail(ctx, TS_EINVAL, "ts_prune_arch: NULL argument");
    }
    cost base;
    model_cost(m, &base);
    const double total = cost_of(&base, cfg->mode);
    ts_rng rng;
    ts_rng_seed(&rng, cfg->seed);
    int draws = 0;
    for (;;) {
        ts_model *cur;
        if ((st = rebuild(ctx, &p, REBUILD_MEASURE, 0, NULL, &cur))) break;
        cost c;
        model_cost(cur, &c);
        const double share = total > 0 ? 1.0 - cost_of(&c, cfg->mode) / total : 0.0;
        const int li = share >= cfg->target ? -1 : draw_layer(&p, cur, cfg->mode, &rng);
        ts_model_free(cur);
        if (share >= cfg->target) break;
        if (li < 0) {
            char lo[32];
            st = ts_fail(ctx, TS_EINVAL, "pruning: cannot remove %.2f%% of the %s: with every prunable layer "
                         "down to %s, %.2f%% is removed", 100 * cfg->target, mode_name(cfg->mode), narrowest(&p, lo),
                         100 * share);
            break;
        }
        const int g = p.group[li];
        int64_t k = (int64_t)floor(cfg->chunk * (double)p.orig[g]);
        if (k < 1) k = 1;
        p.size[g] = narrowed(&p, g, p.size[g], p.size[g] - k);
        draws++;
    }
    if (!st) st = rebuild(ctx, &p, REBUILD_INIT, cfg->seed, NULL, out);
    return prune_end(ctx, &p, st, cfg, draws, 0.0, out, rep);
}

/* ---- magnitude pruning */

/* score[off[g] + c]: the L1 norm per weight of filter c of each source of group g, summed */
static double *filter_scores(const prune_plan *p, int64_t *off) {
    const ts_model *m = p->m;
    off[0] = 0;
    for (int g = 0; g < p->ngroups; g++) off[g + 1] = off[g] + p->orig[g];
    double *score = calloc((size_t)(off[p->ngroups] ? off[p->ngroups] : 1), sizeof *score);
    if (!score) return NULL;
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        const int g = p->group[li];
        if (g < 0 || !is_source(m, l)) continue;
        const tensor_entry *w = &m->tensors[l->weight];
        const int64_t nk = w->shape.dims[0], per = w->numel / nk;
        const float *wd = tensor_data((ts_model *)m, l->weight); /* read only */
        for (int64_t k = 0; k < nk; k++) {
            double s = 0;
            for (int64_t e = 0; e < per; e++) s += fabs((double)wd[k * per + e]);
            score[off[g] + k] += s / (double)per;
        }
    }
    return score;
}

/* p->size for ratio step s of 1000: each group loses floor(s/1000 of its channels),
 * keeping one (or a multiple); the removal only grows with s */
static void sizes_at(prune_plan *p, int s) {
    for (int g = 0; g < p->ngroups; g++) {
        p->size[g] = narrowed(p, g, p->orig[g], p->orig[g] - s * p->orig[g] / 1000);
    }
}

/* The smallest ratio step reaching the target (removal only grows with it) */
static ts_status find_ratio(ts_ctx *ctx, prune_plan *p, const ts_prune_config *cfg, int *step) {
    cost base;
    model_cost(p->m, &base);
    const double total = cost_of(&base, cfg->mode);
    double share;
    sizes_at(p, 1000);
    ts_status st = achieved_at(ctx, p, cfg->mode, total, &share);
    if (st) return st;
    char narrow[32];
    if (share < cfg->target)
        return ts_fail(ctx, TS_EINVAL, "pruning: cannot remove %.2f%% of the %s: with every prunable layer "
                       "down to %s, %.2f%% is removed", 100 * cfg->target, mode_name(cfg->mode), narrowest(p, narrow),
                       100 * share);
    int lo = 0, hi = 1000; /* share(lo) < target <= share(hi) */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        sizes_at(p, mid);
        if ((st = achieved_at(ctx, p, cfg->mode, total, &share))) return st;
        if (share >= cfg->target) hi = mid;
        else lo = mid;
    }
    *step = hi;
    /* from lo to hi several groups may lose a channel at once (a step is coarse on
     * narrow layers): take those channels one at a time (one multiple at a time),
     * stopping at the target */
    int64_t *want = malloc((size_t)p->ngroups * sizeof *want);
    if (!want) return ts_fail(ctx, TS_ENOMEM, "prune: out of memory");
    sizes_at(p, hi);
    memcpy(want, p->size, (size_t)p->ngroups * sizeof *want);
    sizes_at(p, lo);
    share = 0;
    for (int g = 0; g < p->ngroups && share < cfg->target && !st; g++)
        while (p->size[g] > want[g] && share < cfg->target && !st) {
            const int64_t next = narrowed(p, g, p->size[g], p->size[g] - 1);
            p->size[g] = next < want[g] ? want[g] : next;
            st = achieved_at(ctx, p, cfg->mode, total, &share);
        }
    free(want);
    return st;
}

/* keep[c] for the size channels of highest score among n */
static ts_status sort_keep(ts_ctx *ctx, const double *score, int64_t n, int64_t size, unsigned char *keep) {
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return ts_fail(ctx, TS_ENOMEM, "prune: out of memory");
    for (int64_t c = 0; c < n; c++) idx[c] = (int)c;
    /* ranks by insertion: no global sort state, n is a layer's channel count */
    for (int64_t i = 1; i < n; i++) {
        const int v = idx[i];
        int64_t j = i;
        while (j > 0 && (score[idx[j - 1]] < score[v] || (score[idx[j - 1]] == score[v] && idx[j - 1] > v))) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
    memset(keep, 0, (size_t)n);
    for (int64_t i = 0; i < size; i++) keep[idx[i]] = 1;
    free(idx);
    return TS_OK;
}

/* The masked original: m with a mask after every layer of each narrowed group, zeroing
 * the channels with the weakest filters. */
static ts_status masked_model(ts_ctx *ctx, const prune_plan *p, const double *score, const int64_t *off,
                              ts_model **out) {
    const ts_model *m = p->m;
    int *at = malloc((size_t)m->nlayers * sizeof *at);
    unsigned char *keep = malloc((size_t)(off[p->ngroups] ? off[p->ngroups] : 1));
    ts_model *mm = NULL;
    ts_status st = !at || !keep ? ts_fail(ctx, TS_ENOMEM, "prune: out of memory") : TS_OK;
    for (int g = 0; g < p->ngroups && !st; g++) st = sort_keep(ctx, score + off[g], p->orig[g], p->size[g], keep + off[g]);
    if (!st) st = rebuild(ctx, p, REBUILD_MASKED, 0, at, &mm);
    for (int li = 1; li < m->nlayers && !st; li++) {
        st = model_copy_layer_tensors(ctx, m, li, mm, at[li], "prune");
        const int g = p->group[li];
        if (st || g < 0 || p->size[g] == p->orig[g]) continue;
        const layer *mk = &mm->layers[at[li] + 1]; /* the mask right after it */
        float *k = tensor_data(mm, mk->mask);
        const int64_t plane = shape_numel(&mk->out) / p->orig[g];
        for (int64_t c = 0; c < p->orig[g]; c++)
            for (int64_t i = 0; i < plane; i++) k[c * plane + i] = keep[off[g] + c] ? 1.0f : 0.0f;
    }
    for (int i = 0; i < m->nmeta && !st; i++) st = ts_model_set_meta(ctx, mm, m->meta[i].key, m->meta[i].value);
    free(at);
    free(keep);
    if (st) ts_model_free(mm);
    else *out = mm;
    return st;
}

static ts_status magnitude_masked(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, prune_plan *p,
                                  double *ratio, ts_model **masked) {
    *masked = NULL;
    ts_status st = prune_begin(ctx, m, cfg, "ts_prune_model", p);
    if (st) return st;
    if (!m->params) {
        plan_free(p);
        return ts_fail(ctx, TS_EINVAL, "ts_prune_model: the model has no weights");
    }
    int step = 0;
    int64_t *off = malloc((size_t)(p->ngroups + 1) * sizeof *off);
    double *score = off ? filter_scores(p, off) : NULL;
    if (!off || !score) st = ts_fail(ctx, TS_ENOMEM, "prune: out of memory");
    if (!st) st = find_ratio(ctx, p, cfg, &step);
    if (!st) st = masked_model(ctx, p, score, off, masked);
    *ratio = step / 1000.0;
    free(off);
    free(score);
    if (st) plan_free(p);
    return st;
}

ts_status prune_masked_model(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, ts_model **masked) {
    prune_plan p;
    double ratio;
    ts_status st = magnitude_masked(ctx, m, cfg, &p, &ratio, masked);
    if (!st) plan_free(&p);
    return st;
}

ts_status ts_prune_model(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, ts_model **out,
                         ts_prune_report *rep) {
    if (rep) memset(rep, 0, sizeof *rep);
    if (out) *out = NULL;
    if (!out) return ts_fail(ctx, TS_EINVAL, "ts_prune_model: NULL argument");
    prune_plan p;
    double ratio = 0;
    ts_model *masked = NULL;
    ts_status st = magnitude_masked(ctx, m, cfg, &p, &ratio, &masked);
    if (st) return st;
    st = model_slice(ctx, masked, out, NULL);
    ts_model_free(masked);
    return prune_end(ctx, &p, st, cfg, 0, ratio, out, rep);
}
