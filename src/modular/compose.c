/* Composition: k modules become one k-output model, built layer by layer with the
 * graph builder, its tensors copied from the modules' origins.
 *
 * Modules cut from the same origin share its layers up to a cut and each run a
 * copy of the layers after it; a shared ReLU keeps a unit when any of the group's
 * modules keeps it, a copied one applies that module's own mask. Each module's
 * head is its class's logit minus the mean of the other logits (folded into the
 * origin's last dense layer), times the module's calibration scale, plus its
 * shift. Output j is module j's score; its argmax is Pan & Rajan's voting rule
 * (the module most confident its class is present wins). Origins with a different
 * input normalization get an exact per-channel affine (a batch-norm layer in
 * inference form) that maps the composed model's normalization to theirs. */
#include "modular.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_compose_config_default(ts_compose_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_macs = 1.5;
}

/* ---- the composed layers whose tensors come from the modules, filled once the
 * model has storage */
typedef enum fill_kind { FILL_COPY, FILL_MASK, FILL_HEAD, FILL_ORDER, FILL_RENORM } fill_kind;
typedef struct fill {
    fill_kind kind;
    nn_added to;           /* the composed layer and its tensors */
    int group, layer;      /* COPY: origin layer; MASK: origin ReLU layer */
    int member;            /* MASK: module position, or -1 for the group's union; HEAD: first position */
    int count;             /* HEAD: modules in this dense */
} fill;

typedef struct group {
    const ts_model *origin;
    int *members;          /* module positions */
    int n;
    int cut;               /* layers >= cut (and below the logits layer) are per module */
    ts_preprocess pp;
    ts_model *merged;      /* owned: the origin merged from sliced members (origin points here) */
    char (*names)[LAYER_NAME_MAX]; /* owned: the composed names of its shared layers [0, shared) */
    int shared;
    int twin, from;        /* layers [1, from) are read from group twin's (-1: none) */
    int match;             /* while the next group is placed: its first layers the same as ours, [1, match) */
} group;

typedef struct composer {
    ts_ctx *ctx;
    ts_module *const *mods;
    int k;
    group *groups;
    int ngroups;
    int *member_group;     /* module position -> group */
    nn_builder *b;
    fill *fills;
    int nfills, capfills;
    char (*names)[LAYER_NAME_MAX]; /* per origin layer: the name consumers read, for the current copy */
} composer;

static fill *add_fill(composer *c, fill_kind kind, const nn_added *to) {
    if (c->nfills == c->capfills) {
        int cap = c->capfills ? c->capfills * 2 : 64;
        fill *f = realloc(c->fills, (size_t)cap * sizeof *f);
        if (!f) return NULL;
        c->fills = f;
        c->capfills = cap;
    }
    fill *f = &c->fills[c->nfills++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->to = *to;
    return f;
}

static ts_status name_of(composer *c, char *dst, const char *prefix, const char *base, const char *suffix) {
    int n = snprintf(dst, LAYER_NAME_MAX, "%s%s%s", prefix, base, suffix);
    if (n < 0 || n >= LAYER_NAME_MAX)
        return ts_fail(c->ctx, TS_EUNSUPPORTED, "compose: layer name '%s%s%s' is longer than %d characters", prefix,
                       base, suffix, LAYER_NAME_MAX - 1);
    return TS_OK;
}

/* Adds a layer reading the named layers (NULL-terminated). */
static ts_status add(composer *c, layer_kind kind, const char *name, const char *const *ins, const layer_attrs *a,
                     nn_added *out) {
    return nn_add(c->b, kind, name, ins, a, out);
}

/* Adds one origin layer under `name`, reading c->names for its inputs. */
static ts_status emit_layer(composer *c, const layer *l, const char *name, nn_added *out) {
    const char *ins[LAYER_MAX_INPUTS + 1];
    for (int i = 0; i < l->ninputs; i++) ins[i] = c->names[l->inputs[i]];
    ins[l->ninputs] = NULL;
    return add(c, l->kind, name, ins, &l->attrs, out);
}

/* A dense layer of `out` features reading `in`. */
static ts_status add_dense(composer *c, const char *name, const char *in, int out, int bias, nn_added *added) {
    layer_attrs a;
    nn_attrs_default(LAYER_DENSE, &a);
    a.features = out;
    a.bias = bias;
    const char *ins[2] = {in, NULL};
    return add(c, LAYER_DENSE, name, ins, &a, added);
}

static int mask_all_ones(const module_mask *mk) {
    for (int64_t u = 0; u < mk->units; u++)
        if (!mask_get(mk, u)) return 0;
    return 1;
}

/* Does any module of the group (member -1) or module `member` remove a unit of ReLU li? */
static int needs_mask(const composer *c, const group *g, int member, int li) {
    for (int i = 0; i < g->n; i++) {
        int j = g->members[i];
        if (member >= 0 && j != member) continue;
        const ts_module *mod = c->mods[j];
        for (int q = 0; q < mod->nmasks; q++)
            if (mod->masks[q].layer == li && !mask_all_ones(&mod->masks[q]) && member >= 0) return 1;
    }
    if (member >= 0) return 0;
    /* union: a unit is removed only when every module removes it */
    const ts_module *m0 = c->mods[g->members[0]];
    for (int q = 0; q < m0->nmasks; q++) {
        if (m0->masks[q].layer != li) continue;
        for (int64_t w = 0; w < mask_words(m0->masks[q].units); w++) {
            uint64_t u = 0;
            for (int i = 0; i < g->n; i++) u |= c->mods[g->members[i]]->masks[q].keep[w];
            int64_t bits = m0->masks[q].units - w * 64;
            uint64_t full = bits >= 64 ? ~0ull : (1ull << bits) - 1;
            if (u != full) return 1;
        }
    }
    return 0;
}

/* Emits layers [from, to) of the group's origin, except dropout (identity at
 * inference) and the logits dense layer, with masks after ReLUs. */
static ts_status emit_range(composer *c, int gi, int member, const char *prefix, int from, int to) {
    group *g = &c->groups[gi];
    const ts_model *m = g->origin;
    for (int li = from; li < to; li++) {
        const layer *l = &m->layers[li];
        if (l->kind == LAYER_DROPOUT) {
            memcpy(c->names[li], c->names[l->inputs[0]], LAYER_NAME_MAX);
            continue;
        }
        char name[LAYER_NAME_MAX];
        ts_status st = name_of(c, name, prefix, l->name, "");
        if (st) return st;
        nn_added to;
        if ((st = emit_layer(c, l, name, &to))) return st;
        int owns = 0; /* any layer holding tensors: weights, statistics, masks, constants */
        for (int t = 0; t < m->ntensors && !owns; t++) owns = m->tensors[t].layer == li;
        if (owns) {
            fill *f = add_fill(c, FILL_COPY, &to);
            if (!f) return ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            f->group = gi;
            f->layer = li;
        }
        memcpy(c->names[li], name, LAYER_NAME_MAX);
        if (l->kind == LAYER_RELU && needs_mask(c, g, member, li)) {
            char mname[LAYER_NAME_MAX];
            if ((st = name_of(c, mname, prefix, l->name, ".mask"))) return st;
            const char *ins[2] = {name, NULL};
            if ((st = add(c, LAYER_MASK, mname, ins, NULL, &to))) return st;
            fill *f = add_fill(c, FILL_MASK, &to);
            if (!f) return ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            f->group = gi;
            f->layer = li;
            f->member = member;
            memcpy(c->names[li], mname, LAYER_NAME_MAX);
        }
    }
    return TS_OK;
}

/* Is layer li of group gi's origin the same as of group gj's, tensors included, with the
 * same inputs and no ReLU mask in either group? Then one copy serves both: text modules
 * of one origin keep its embedding whole, and a module is one group (its own sliced
 * model), so each would otherwise carry its own copy of the largest tensor. Compared
 * byte for byte, unused input slots and struct padding included: bytes that differ
 * there only lose the sharing, they never share what differs. */
static int same_layer(const composer *c, int gi, int gj, int li) {
    const group *a = &c->groups[gi], *b = &c->groups[gj];
    const ts_model *ma = a->origin, *mb = b->origin;
    if (li >= ma->nlayers || li >= mb->nlayers) return 0;
    const layer *la = &ma->layers[li], *lb = &mb->layers[li];
    if (la->kind != lb->kind || la->ninputs != lb->ninputs || la->out.ndim != lb->out.ndim ||
        memcmp(la->inputs, lb->inputs, sizeof la->inputs) || memcmp(la->out.dims, lb->out.dims, sizeof la->out.dims) ||
        memcmp(&la->attrs, &lb->attrs, sizeof la->attrs))
        return 0;
    if (la->kind == LAYER_RELU && (needs_mask(c, a, -1, li) || needs_mask(c, b, -1, li))) return 0;
    int ta = 0, tb = 0;
    for (;;) {
        while (ta < ma->ntensors && ma->tensors[ta].layer != li) ta++;
        while (tb < mb->ntensors && mb->tensors[tb].layer != li) tb++;
        if (ta == ma->ntensors || tb == mb->ntensors) return ta == ma->ntensors && tb == mb->ntensors;
        const tensor_entry *ea = &ma->tensors[ta], *eb = &mb->tensors[tb];
        if (ea->role != eb->role || ea->numel != eb->numel) return 0;
        const float *da = (ea->role == TS_TENSOR_PARAM ? ma->params : ma->buffers) + ea->offset;
        const float *db = (eb->role == TS_TENSOR_PARAM ? mb->params : mb->buffers) + eb->offset;
        if (memcmp(da, db, sizeof(float) * (size_t)ea->numel)) return 0;
        ta++;
        tb++;
    }
}

/* Labels of a module's origin (the logits layer's last axis: a tagger scores each of its
 * T steps) and the steps it scores (1 for a classifier). */
static int origin_labels(const ts_model *o) {
    const ts_shape *s = &o->layers[module_logits_layer(o)].out;
    return (int)s->dims[s->ndim - 1];
}
static int origin_steps(const ts_model *o) {
    const ts_shape *s = &o->layers[module_logits_layer(o)].out;
    return s->ndim == 2 ? (int)s->dims[0] : 1;
}

static int64_t layer_macs(const ts_model *m, int li) { return LAYER_OPS[m->layers[li].kind].macs(m, &m->layers[li]); }

/* Earliest cut that keeps the group within max_macs times the origin's cost. */
static int choose_cut(const group *g, double max_macs) {
    const ts_model *m = g->origin;
    int h = module_logits_layer(m);
    int64_t total = 0;
    for (int li = 1; li < m->nlayers; li++) total += layer_macs(m, li);
    if (g->n == 1) return h; /* one module: sharing with itself is exact */
    if (max_macs >= (double)g->n) return 1;
    for (int cut = 1; cut < h; cut++) {
        int64_t shared = 0, tail = 0;
        for (int li = 1; li < cut; li++) shared += layer_macs(m, li);
        for (int li = cut; li < h; li++) tail += layer_macs(m, li);
        if ((double)(shared + (int64_t)g->n * tail) <= max_macs * (double)total) return cut;
    }
    return h;
}

static ts_status same_shape_check(ts_ctx *ctx, ts_module *const *mods, int k) {
    const ts_shape *s0 = &mods[0]->origin->input;
    for (int j = 1; j < k; j++) {
        const ts_shape *s = &mods[j]->origin->input;
        int same = s->ndim == s0->ndim;
        for (int d = 0; same && d < s->ndim; d++) same = s->dims[d] == s0->dims[d];
        if (!same) {
            char a[64], b[64];
            int pa = 0, pb = 0;
            for (int d = 0; d < s0->ndim; d++)
                pa += snprintf(a + pa, sizeof a - (size_t)pa, "%s%lld", d ? "x" : "", (long long)s0->dims[d]);
            for (int d = 0; d < s->ndim; d++)
                pb += snprintf(b + pb, sizeof b - (size_t)pb, "%s%lld", d ? "x" : "", (long long)s->dims[d]);
            return ts_fail(ctx, TS_ESHAPE,
                           "compose: module %d (class '%s') takes %s inputs, module 0 (class '%s') takes %s", j,
                           mods[j]->class_name, b, mods[0]->class_name, a);
        }
    }
    for (int j = 1; j < k; j++)
        if (origin_steps(mods[j]->origin) != origin_steps(mods[0]->origin))
            return ts_fail(ctx, TS_ESHAPE,
                           "compose: module %d (class '%s') scores %d step(s) a sample, module 0 (class '%s') %d: a "
                           "tagger's modules compose only with a tagger's",
                           j, mods[j]->class_name, origin_steps(mods[j]->origin), mods[0]->class_name,
                           origin_steps(mods[0]->origin));
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (mods[i]->origin_id == mods[j]->origin_id && mods[i]->cls == mods[j]->cls)
                return ts_fail(ctx, TS_EINVAL, "compose: modules %d and %d are the same class ('%s') of the same model",
                               i, j, mods[i]->class_name);
    return TS_OK;
}

int module_same_preprocess(const ts_preprocess *a, const ts_preprocess *b) {
    if (a->channels != b->channels) return 0;
    for (int i = 0; i < a->channels; i++)
        if (a->mean[i] != b->mean[i] || a->std[i] != b->std[i]) return 0;
    return 1;
}

void module_renorm_affine(const ts_preprocess *from, const ts_preprocess *to, float gamma[4], float beta[4]) {
    /* x_to = (x_from * std_from + mean_from - mean_to) / std_to */
    for (int c = 0; c < to->channels && c < 4; c++) {
        gamma[c] = from->std[c] / to->std[c];
        beta[c] = (from->mean[c] - to->mean[c]) / to->std[c];
    }
}

/* Copies n values into the composed model's tensor t (a table index from nn_add); a
 * tensor of another size means the builder and the fills disagree (a bug, reported). */
static ts_status set_floats(ts_ctx *ctx, ts_model *m, int t, const float *v, int64_t n) {
    if (t < 0 || t >= m->ntensors || m->tensors[t].numel != n)
        return ts_fail(ctx, TS_EINVAL, "compose: tensor %d is missing or not %lld values", t, (long long)n);
    memcpy(tensor_data(m, t), v, (size_t)n * sizeof(float));
    return TS_OK;
}

static const float *origin_tensor(const ts_model *o, const char *layer_name, const char *suffix, int64_t *numel) {
    char full[TENSOR_NAME_MAX];
    snprintf(full, sizeof full, "%s.%s", layer_name, suffix);
    int t = ts_model_find_tensor(o, full);
    ts_tensor_info ti;
    if (t < 0 || model_tensor_peek(o, t, &ti)) return NULL;
    *numel = ti.numel;
    return ti.data;
}

/* Fills the composed model's tensors from the origins. */
static ts_status fill_tensors(composer *c, ts_model *cm) {
    for (int f = 0; f < c->nfills; f++) {
        const fill *fl = &c->fills[f];
        if (fl->kind == FILL_COPY) {
            /* every tensor of the origin layer, in declaration order: the same kind and
             * attributes declare the same tensors */
            const ts_model *o = c->groups[fl->group].origin;
            int t2 = 0;
            for (int t = 0; t < o->ntensors; t++) {
                const tensor_entry *e = &o->tensors[t];
                if (e->layer != fl->layer) continue;
                while (t2 < cm->ntensors && cm->tensors[t2].layer != fl->to.layer) t2++;
                const float *src = (e->role == TS_TENSOR_PARAM ? o->params : o->buffers) + e->offset;
                ts_status st = set_floats(c->ctx, cm, t2 < cm->ntensors ? t2 : -1, src, e->numel);
                if (st) return st;
                t2++;
            }
        } else if (fl->kind == FILL_MASK) {
            const group *g = &c->groups[fl->group];
            ts_tensor_info ti = {0};
            ti.numel = cm->tensors[fl->to.mask].numel;
            ti.data = tensor_data(cm, fl->to.mask);
            /* modules of one origin lay out their masks alike: find this layer's once */
            const ts_module *m0 = c->mods[g->members[0]];
            int q = 0;
            while (q < m0->nmasks && m0->masks[q].layer != fl->layer) q++;
            if (q == m0->nmasks || m0->masks[q].units != ti.numel)
                return ts_fail(c->ctx, TS_EINVAL, "compose: no mask for layer %d", fl->layer);
            for (int64_t u = 0; u < ti.numel; u++) {
                int keep = 0;
                for (int i = 0; i < g->n && !keep; i++) {
                    int j = g->members[i];
                    if (fl->member < 0 || j == fl->member) keep = mask_get(&c->mods[j]->masks[q], u);
                }
                ti.data[u] = keep ? 1.0f : 0.0f;
            }
        } else if (fl->kind == FILL_HEAD) {
            const group *g = &c->groups[fl->group];
            const ts_model *o = g->origin;
            const int h = module_logits_layer(o), K = origin_labels(o);
            const layer *hl = &o->layers[h];
            int dense = hl->kind == LAYER_DENSE;
            const ts_shape *hin = input_shape(o, hl, 0);
            /* a dense layer applies to the last axis: a tagger's head to each step */
            int64_t F = dense ? (origin_steps(o) > 1 ? hin->dims[hin->ndim - 1] : shape_numel(hin)) : K;
            int64_t nw = 0, nb = 0;
            const float *W = dense ? origin_tensor(o, hl->name, "weight", &nw) : NULL;
            const float *Bv = dense && hl->bias ? origin_tensor(o, hl->name, "bias", &nb) : NULL;
            float *w = malloc((size_t)(fl->count * F) * sizeof(float)), *bias = malloc((size_t)fl->count * sizeof(float));
            if (!w || !bias) {
                free(w);
                free(bias);
                return ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            }
            for (int r = 0; r < fl->count; r++) {
                int j = fl->member >= 0 ? fl->member : g->members[r];
                const ts_module *mod = c->mods[j];
                const int cls = mod->cls;
                const double a = mod->info.scale, inv = K > 1 ? 1.0 / (K - 1) : 0.0;
                for (int64_t f2 = 0; f2 < F; f2++) {
                    double v;
                    if (dense) {
                        double sum = 0;
                        for (int q = 0; q < K; q++) sum += W[(size_t)q * F + f2];
                        double own = W[(size_t)cls * F + f2];
                        v = K > 1 ? own - (sum - own) * inv : own;
                    } else {
                        v = f2 == cls ? 1.0 : -inv;
                    }
                    w[(size_t)r * F + f2] = (float)(a * v);
                }
                double bv = 0;
                if (Bv) {
                    double sum = 0;
                    for (int q = 0; q < K; q++) sum += Bv[q];
                    bv = K > 1 ? Bv[cls] - (sum - Bv[cls]) * inv : Bv[cls];
                }
                bias[r] = (float)(a * bv + mod->info.shift);
            }
            ts_status st = set_floats(c->ctx, cm, fl->to.weight, w, fl->count * F);
            if (!st) st = set_floats(c->ctx, cm, fl->to.bias, bias, fl->count);
            free(w);
            free(bias);
            if (st) return st;
        } else if (fl->kind == FILL_ORDER) {
            /* permutation: output j = concatenated position of module j */
            int k = c->k;
            float *w = calloc((size_t)k * (size_t)k, sizeof(float));
            if (!w) return ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            int at = 0;
            for (int gi = 0; gi < c->ngroups; gi++)
                for (int i = 0; i < c->groups[gi].n; i++) w[(size_t)c->groups[gi].members[i] * k + at++] = 1.0f;
            ts_status st = set_floats(c->ctx, cm, fl->to.weight, w, (int64_t)k * k);
            free(w);
            if (st) return st;
        } else if (fl->kind == FILL_RENORM) {
            /* x_g = (x * s0 + m0 - m_g) / s_g, as batch norm with mean 0, var 1 */
            const ts_preprocess *p0 = &c->groups[0].pp, *pg = &c->groups[fl->group].pp;
            float gam[4], bet[4], zero[4] = {0, 0, 0, 0}, one[4] = {1, 1, 1, 1};
            module_renorm_affine(p0, pg, gam, bet);
            const float *vals[4] = {gam, bet, zero, one};
            const int ts[4] = {fl->to.weight, fl->to.bias, fl->to.running_mean, fl->to.running_var};
            for (int q = 0; q < 4; q++) {
                ts_status st = set_floats(c->ctx, cm, ts[q], vals[q], pg->channels);
                if (st) return st;
            }
        }
    }
    return TS_OK;
}

static ts_status compose_build(composer *c, const ts_compose_config *cfg) {
    ts_status st;
    nn_added to;
    /* pieces of the output: (layer name, modules in order) */
    char (*piece)[LAYER_NAME_MAX] = calloc((size_t)c->k, LAYER_NAME_MAX);
    int npieces = 0;
    if (!piece) return ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
    for (int gi = 0; gi < c->ngroups; gi++) {
        group *g = &c->groups[gi];
        const ts_model *o = g->origin;
        free(c->names);
        if (!(c->names = calloc((size_t)o->nlayers, LAYER_NAME_MAX))) {
            st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            goto done;
        }
        char gp[16] = "";
        int generated = 0; /* an origin that was itself composed: keep our names apart from its */
        for (int li = 0; li < o->nlayers; li++) generated |= !strncmp(o->layers[li].name, "compose.", 8);
        if (c->ngroups > 1 || generated) snprintf(gp, sizeof gp, "g%d.", gi);
        snprintf(c->names[0], LAYER_NAME_MAX, "compose.input");
        if (gi > 0 && !module_same_preprocess(&g->pp, &c->groups[0].pp)) {
            char rn[LAYER_NAME_MAX];
            snprintf(rn, sizeof rn, "%scompose.renorm", gp);
            layer_attrs a;
            nn_attrs_default(LAYER_BATCHNORM, &a);
            a.eps = 1e-12f;
            const char *ins[2] = {"compose.input", NULL};
            if ((st = add(c, LAYER_BATCHNORM, rn, ins, &a, &to))) goto done;
            fill *f = add_fill(c, FILL_RENORM, &to);
            if (!f) {
                st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
                goto done;
            }
            f->group = gi;
            memcpy(c->names[0], rn, LAYER_NAME_MAX);
        }
        g->cut = choose_cut(g, cfg->max_macs);
        const int h = module_logits_layer(o);
        const int dense = o->layers[h].kind == LAYER_DENSE;
        const int head_in = dense ? o->layers[h].inputs[0] : h; /* what the head dense reads */
        const int trunk_end = dense ? h : h + 1;                 /* origin layers emitted */
        const int shared_end = g->cut < trunk_end ? g->cut : trunk_end;
        /* the longest run of first layers an earlier group emitted the same: read its.
         * A group that reads its first layers from a twin holds the twin's very values
         * there, so as far as those go it matches as its twin does: each value is
         * compared once, not once per group (151 modules sharing an embedding) */
        int from = 1, twin = -1;
        for (int gj = 0; gj < gi; gj++) {
            group *h = &c->groups[gj];
            int p = h->twin >= 0 ? c->groups[h->twin].match : 1;
            if (strcmp(h->names[0], c->names[0])) p = 0; /* another input normalization */
            else if (h->twin < 0 || p >= h->from) {
                if (h->twin >= 0) p = h->from;
                while (p < shared_end && p < h->shared && same_layer(c, gi, gj, p)) p++;
            }
            h->match = p;
            if (p > from) {
                from = p;
                twin = gj;
            }
        }
        g->twin = twin;
        g->from = from;
        for (int li = 1; li < from; li++) memcpy(c->names[li], c->groups[twin].names[li], LAYER_NAME_MAX);
        if ((st = emit_range(c, gi, -1, gp, from, shared_end))) goto done;
        if (!(g->names = malloc((size_t)shared_end * LAYER_NAME_MAX))) {
            st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            goto done;
        }
        memcpy(g->names, c->names, (size_t)shared_end * LAYER_NAME_MAX);
        g->shared = shared_end;
        if (head_in < shared_end) {
            /* every module reads the shared features: one dense with a row per module */
            char hn[LAYER_NAME_MAX];
            snprintf(hn, sizeof hn, "%scompose.head", gp);
            if ((st = add_dense(c, hn, c->names[head_in], g->n, 1, &to))) goto done;
            fill *f = add_fill(c, FILL_HEAD, &to);
            if (!f) {
                st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
                goto done;
            }
            f->group = gi;
            f->member = -1;
            f->count = g->n;
            memcpy(piece[npieces++], hn, LAYER_NAME_MAX);
        } else {
            /* per-module copies of the layers after the cut */
            char (*saved)[LAYER_NAME_MAX] = malloc((size_t)o->nlayers * LAYER_NAME_MAX);
            if (!saved) {
                st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
                goto done;
            }
            memcpy(saved, c->names, (size_t)o->nlayers * LAYER_NAME_MAX);
            for (int i = 0; i < g->n && !st; i++) {
                int j = g->members[i];
                char mp[24], hn[LAYER_NAME_MAX];
                snprintf(mp, sizeof mp, "m%d.", j);
                memcpy(c->names, saved, (size_t)o->nlayers * LAYER_NAME_MAX);
                if ((st = emit_range(c, gi, j, mp, shared_end, trunk_end))) break;
                snprintf(hn, sizeof hn, "m%d.compose.head", j);
                if ((st = add_dense(c, hn, c->names[head_in], 1, 1, &to))) break;
                fill *f = add_fill(c, FILL_HEAD, &to);
                if (!f) {
                    st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
                    break;
                }
                f->group = gi;
                f->member = j;
                f->count = 1;
                memcpy(piece[npieces++], hn, LAYER_NAME_MAX);
            }
            free(saved);
            if (st) goto done;
        }
    }
    /* join the pieces, eight at a time, then restore the requested order */
    int in_order = 1, at = 0;
    for (int gi = 0; gi < c->ngroups; gi++)
        for (int i = 0; i < c->groups[gi].n; i++) in_order &= c->groups[gi].members[i] == at++;
    int round = 0;
    while (npieces > 1) {
        int out = 0;
        for (int p = 0; p < npieces; p += 8, out++) {
            int e = p + 8 < npieces ? p + 8 : npieces;
            if (e - p == 1) {
                memcpy(piece[out], piece[p], LAYER_NAME_MAX);
                continue;
            }
            char cn[LAYER_NAME_MAX];
            snprintf(cn, sizeof cn, "compose.join%d.%d", round, out);
            const char *ins[9];
            for (int q = p; q < e; q++) ins[q - p] = piece[q];
            ins[e - p] = NULL;
            layer_attrs a;
            nn_attrs_default(LAYER_CONCAT, &a);
            a.axis = origin_steps(c->mods[0]->origin) > 1; /* a tagger's scores: (T, modules) */
            if ((st = add(c, LAYER_CONCAT, cn, ins, &a, NULL))) goto done;
            memcpy(piece[out], cn, LAYER_NAME_MAX);
        }
        npieces = out;
        round++;
    }
    if (!in_order) {
        if ((st = add_dense(c, "compose.order", piece[0], c->k, 0, &to))) goto done;
        if (!add_fill(c, FILL_ORDER, &to)) {
            st = ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory");
            goto done;
        }
    }
    st = TS_OK;
done:
    free(piece);
    return st;
}

static ts_status compose_meta(composer *c, ts_model *cm) {
    ts_strbuf names = {0}, v = {0};
    const char *ds0 = c->mods[0]->dataset;
    int same_ds = 1;
    for (int j = 0; j < c->k; j++) {
        const ts_module *mod = c->mods[j];
        ts_strbuf_printf(&names, "%s", j ? "\n" : "");
        /* a bare number ("3" of MNIST) names its dataset too: "mnist:3" */
        const char *from = ts_model_get_meta(mod->origin, "dataset");
        if (from && strrchr(from, '/')) from = strrchr(from, '/') + 1;
        if (from && *from && *mod->class_name && strspn(mod->class_name, "0123456789") == strlen(mod->class_name))
            ts_strbuf_printf(&names, "%s:", from);
        for (const char *p = mod->class_name; *p; p++) ts_strbuf_printf(&names, "%c", *p == '\n' ? ' ' : *p);
        same_ds &= !strcmp(mod->dataset, ds0);
    }
    ts_status st = names.failed ? ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory") : TS_OK;
    if (!st) st = ts_model_set_meta(c->ctx, cm, "classes", names.s ? names.s : "");
    if (!st) st = ts_model_set_meta(c->ctx, cm, "dataset", same_ds ? ds0 : "mixed");
    if (!st) st = ts_model_set_meta(c->ctx, cm, "arch", "composed");
    for (int j = 0; j < c->k && !st; j++) {
        const ts_module *mod = c->mods[j];
        char key[48];
        v.len = 0;
        ts_strbuf_printf(&v, "dataset=%s;class=%d;origin=%s;id=%016" PRIx64, mod->dataset, mod->cls, mod->origin_name,
                  mod->origin_id);
        snprintf(key, sizeof key, "composed.origin.%d", j);
        st = v.failed ? ts_fail(c->ctx, TS_ENOMEM, "compose: out of memory") : ts_model_set_meta(c->ctx, cm, key, v.s);
    }
    /* the composed model's input normalization is the first origin's */
    const char *pm = ts_model_get_meta(c->groups[0].origin, "preprocess.mean");
    const char *ps = ts_model_get_meta(c->groups[0].origin, "preprocess.std");
    if (!st && pm) st = ts_model_set_meta(c->ctx, cm, "preprocess.mean", pm);
    if (!st && ps) st = ts_model_set_meta(c->ctx, cm, "preprocess.std", ps);
    ts_strbuf_free(&names);
    ts_strbuf_free(&v);
    return st;
}

/* Modules read from sliced files hold only the origin values they use (the others are
 * zero, ts_module.present). A group of them runs on one origin merged from all: each
 * value from a member that held it. Every member's own values are then exact, and a
 * layer shared by the group reads, for each kernel, the channels of the modules that
 * keep that kernel. */
static ts_status merge_sliced(ts_ctx *ctx, ts_module *const *mods, group *g) {
    int sliced = 0;
    for (int i = 0; i < g->n; i++) {
        const ts_module *m = mods[g->members[i]];
        if (!m->present) return TS_OK; /* a member with the whole origin: use it */
        sliced++;
    }
    if (sliced < 2) return TS_OK;
    ts_status st = model_clone(ctx, mods[g->members[0]]->origin, &g->merged);
    if (st) return st;
    ts_model *o = g->merged;
    for (int i = 1; i < g->n; i++) {
        const ts_module *m = mods[g->members[i]];
        for (size_t v = 0; v < o->nparams; v++)
            if (m->present[v]) o->params[v] = m->origin->params[v];
        for (size_t v = 0; v < o->nbuffers; v++)
            if (m->present[o->nparams + v]) o->buffers[v] = m->origin->buffers[v];
    }
    exec_weights_changed(o);
    g->origin = o;
    return TS_OK;
}

ts_status ts_compose(ts_ctx *ctx, ts_module *const *mods, int k, const ts_compose_config *cfg, ts_model **out) {
    if (!ctx || !mods || !out || k < 1) return ts_fail(ctx, TS_EINVAL, "ts_compose: needs at least one module");
    *out = NULL;
    for (int j = 0; j < k; j++)
        if (!mods[j]) return ts_fail(ctx, TS_EINVAL, "ts_compose: module %d is NULL", j);
    if (k > 100000) return ts_fail(ctx, TS_EINVAL, "compose: %d modules (at most 100000)", k);
    ts_compose_config def;
    if (!cfg) {
        ts_compose_config_default(&def);
        cfg = &def;
    }
    if (!(cfg->max_macs >= 1.0)) return ts_fail(ctx, TS_EINVAL, "compose: max_macs %g must be at least 1", cfg->max_macs);
    for (int j = 0; j < k; j++) /* a translator's language modules are routed, not voted */
        if (translator_model(mods[j]->origin)) return compose_translators(ctx, mods, k, out);
    ts_status st = same_shape_check(ctx, mods, k);
    if (st) return st;
    composer c = {0};
    c.ctx = ctx;
    c.mods = mods;
    c.k = k;
    ts_model *cm = NULL;
    c.groups = calloc((size_t)k, sizeof *c.groups);
    c.member_group = malloc((size_t)k * sizeof *c.member_group);
    if (!c.groups || !c.member_group) {
        st = ts_fail(ctx, TS_ENOMEM, "compose: out of memory");
        goto done;
    }
    for (int j = 0; j < k; j++) {
        int gi = 0;
        while (gi < c.ngroups && mods[c.groups[gi].members[0]]->origin_id != mods[j]->origin_id) gi++;
        group *g = &c.groups[gi];
        if (gi == c.ngroups) {
            c.ngroups++;
            g->origin = mods[j]->origin;
            if (!(g->members = malloc((size_t)k * sizeof *g->members))) {
                st = ts_fail(ctx, TS_ENOMEM, "compose: out of memory");
                goto done;
            }
            if ((st = ts_model_get_preprocess(ctx, g->origin, &g->pp))) goto done;
            if (gi > 0 && g->pp.channels != c.groups[0].pp.channels) {
                st = ts_fail(ctx, TS_ESHAPE, "compose: module %d (class '%s') normalizes %d channels, module 0 %d", j,
                             mods[j]->class_name, g->pp.channels, c.groups[0].pp.channels);
                goto done;
            }
        }
        g->members[g->n++] = j;
        c.member_group[j] = gi;
    }
    for (int gi = 0; gi < c.ngroups; gi++)
        if ((st = merge_sliced(ctx, mods, &c.groups[gi]))) goto done;
    const int steps = origin_steps(mods[0]->origin);
    if (steps > 1 && (int64_t)steps * k > (1 << 24)) {
        st = ts_fail(ctx, TS_EINVAL, "compose: %d modules of %d steps each are too many outputs", k, steps);
        goto done;
    }
    if ((st = nn_builder_create(ctx, "<composed>", 0, &mods[0]->origin->input, steps * k, "compose.input", &c.b)))
        goto done;
    if ((st = compose_build(&c, cfg))) goto done;
    st = nn_builder_finish(c.b, 0, NULL, &cm);
    c.b = NULL; /* consumed */
    if (st) goto done;
    if ((st = fill_tensors(&c, cm))) goto done;
    if ((st = compose_meta(&c, cm))) goto done;
    /* the channels every module removes, physically gone (docs/modules.md) */
    ts_model *sliced = NULL;
    if ((st = model_slice(ctx, cm, &sliced, NULL))) goto done;
    ts_model_free(cm);
    *out = sliced;
    cm = NULL;
done:
    ts_model_free(cm);
    for (int gi = 0; gi < c.ngroups; gi++) {
        free(c.groups[gi].members);
        free(c.groups[gi].names);
        ts_model_free(c.groups[gi].merged);
    }
    free(c.groups);
    free(c.member_group);
    nn_builder_free(c.b);
    free(c.fills);
    free(c.names);
    return st;
}
