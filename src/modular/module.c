/* The module object: an origin model, one class, keep-masks on its ReLU outputs,
 * and the counts reported about it. */
#include "modular.h"

#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int module_logits_layer(const ts_model *m) {
    int last = m->nlayers - 1;
    if (m->layers[last].kind == LAYER_SOFTMAX) return m->layers[last].inputs[0];
    return last;
}

/* FNV-1a over the architecture text, the shape, and every tensor's bytes. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) { return ts_fnv1a(h, p, n); }

uint64_t module_model_id(const ts_model *m) {
    uint64_t h = TS_FNV1A_INIT;
    h = fnv(h, m->arch_text, strlen(m->arch_text));
    h = fnv(h, m->input.dims, sizeof m->input.dims[0] * (size_t)m->input.ndim);
    h = fnv(h, &m->classes, sizeof m->classes);
    h = fnv(h, m->params, m->nparams * sizeof(float));
    h = fnv(h, m->buffers, m->nbuffers * sizeof(float));
    /* the input normalization is part of what the model computes */
    static const char *const keys[2] = {"preprocess.mean", "preprocess.std"};
    for (int i = 0; i < 2; i++) {
        const char *v = ts_model_get_meta(m, keys[i]);
        h = fnv(h, v ? v : "", v ? strlen(v) + 1 : 1);
    }
    return h;
}

void ts_module_free(ts_module *mod) {
    if (!mod) return;
    ts_model_free(mod->origin);
    for (int i = 0; i < mod->nmasks; i++) free(mod->masks[i].keep);
    free(mod->masks);
    free(mod->class_name);
    free(mod->dataset);
    free(mod->origin_name);
    free(mod->present);
    free(mod);
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* Class c's name from the model's "classes" metadata (one per line), else its index. */
static char *class_name_of(const ts_model *m, int c) {
    const char *list = ts_model_get_meta(m, "classes");
    char num[24];
    snprintf(num, sizeof num, "%d", c);
    if (!list) return strdup(num);
    const char *p = list;
    for (int i = 0; i < c && p; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p) return strdup(num);
    size_t n = strcspn(p, "\n");
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

ts_status module_create(ts_ctx *ctx, const ts_model *origin, int cls, ts_module **out) {
    *out = NULL;
    if (cls < 0 || cls >= origin->classes)
        return ts_fail(ctx, TS_EINVAL, "class %d is not a class of the model (0..%d)", cls, origin->classes - 1);
    ts_module *mod = calloc(1, sizeof *mod);
    if (!mod) return ts_fail(ctx, TS_ENOMEM, "out of memory for a module");
    ts_status st = model_clone(ctx, origin, &mod->origin);
    if (st) goto fail;
    mod->origin_id = module_model_id(origin);
    mod->cls = cls;
    mod->class_name = class_name_of(origin, cls);
    const char *spec = ts_model_get_meta(origin, "data");
    mod->dataset = dup_or_empty(spec ? spec : ts_model_get_meta(origin, "dataset"));
    mod->origin_name = dup_or_empty(ts_model_get_meta(origin, "origin"));
    int n = 0;
    for (int li = 0; li < origin->nlayers; li++) n += origin->layers[li].kind == LAYER_RELU;
    mod->masks = calloc((size_t)(n ? n : 1), sizeof *mod->masks);
    if (!mod->class_name || !mod->dataset || !mod->origin_name || !mod->masks) {
        st = ts_fail(ctx, TS_ENOMEM, "out of memory for a module");
        goto fail;
    }
    for (int li = 0; li < origin->nlayers; li++) {
        if (origin->layers[li].kind != LAYER_RELU) continue;
        module_mask *mk = &mod->masks[mod->nmasks++];
        mk->layer = li;
        mk->units = shape_numel(&origin->layers[li].out);
        int64_t w = mask_words(mk->units);
        if (!(mk->keep = malloc((size_t)w * sizeof(uint64_t)))) {
            st = ts_fail(ctx, TS_ENOMEM, "out of memory for a module mask");
            goto fail;
        }
        memset(mk->keep, 0xff, (size_t)w * sizeof(uint64_t));
        if (mk->units % 64) mk->keep[w - 1] = (1ull << (mk->units % 64)) - 1;
    }
    mod->info.scale = 1.0f;
    mod->info.rule = -1;
    if ((st = module_count(ctx, mod))) goto fail;
    *out = mod;
    return TS_OK;
fail:
    ts_module_free(mod);
    return st;
}

ts_status ts_module_from_model(ts_ctx *ctx, const ts_model *m, int class_index, ts_module **out) {
    if (!ctx || !m || !out) return ts_fail(ctx, TS_EINVAL, "ts_module_from_model: NULL argument");
    return module_create(ctx, m, class_index, out);
}

ts_status ts_module_set_origin(ts_ctx *ctx, ts_module *mod, const char *origin) {
    if (!mod) return ts_fail(ctx, TS_EINVAL, "ts_module_set_origin: NULL module");
    char *s = strdup(origin ? origin : "");
    if (!s) return ts_fail(ctx, TS_ENOMEM, "out of memory");
    free(mod->origin_name);
    mod->origin_name = s;
    return TS_OK;
}

ts_status ts_module_set_dataset(ts_ctx *ctx, ts_module *mod, const char *spec) {
    if (!mod) return ts_fail(ctx, TS_EINVAL, "ts_module_set_dataset: NULL module");
    char *s = strdup(spec ? spec : "");
    if (!s) return ts_fail(ctx, TS_ENOMEM, "out of memory");
    free(mod->dataset);
    mod->dataset = s;
    return TS_OK;
}

ts_status ts_module_info_get(const ts_module *mod, ts_module_info *info) {
    if (!mod || !info) return TS_EINVAL;
    *info = mod->info;
    info->class_index = mod->cls;
    info->class_name = mod->class_name;
    info->dataset = mod->dataset;
    info->origin = mod->origin_name;
    info->origin_id = mod->origin_id;
    info->origin_classes = mod->origin->classes;
    info->input = mod->origin->input;
    return TS_OK;
}

int ts_module_mask_count(const ts_module *mod) { return mod ? mod->nmasks : 0; }

ts_status ts_module_mask(ts_ctx *ctx, const ts_module *mod, int k, ts_module_mask_info *info, float *kept) {
    if (!mod || !info || k < 0 || k >= mod->nmasks)
        return ts_fail(ctx, TS_EINVAL, "ts_module_mask: mask %d is not in 0..%d", k, mod ? mod->nmasks - 1 : -1);
    const module_mask *mk = &mod->masks[k];
    const layer *l = &mod->origin->layers[mk->layer];
    info->layer = l->name;
    info->layer_index = mk->layer;
    /* a (C, H, W) map has C kernels of H x W units; anything else is a vector of units */
    info->channels = l->out.ndim == 3 ? (int)l->out.dims[0] : (int)mk->units;
    info->plane = mk->units / info->channels;
    for (int c = 0; kept && c < info->channels; c++) {
        int64_t on = 0;
        for (int64_t u = 0; u < info->plane; u++) on += mask_get(mk, (int64_t)c * info->plane + u);
        kept[c] = (float)((double)on / (double)info->plane);
    }
    return TS_OK;
}

/* ---- counting what a module keeps */

static const module_mask *mask_of_layer(const ts_module *mod, int li) {
    for (int i = 0; i < mod->nmasks; i++)
        if (mod->masks[i].layer == li) return &mod->masks[i];
    return NULL;
}

int model_consumers(const ts_model *m, int li, int *only) {
    int n = 0;
    for (int j = li + 1; j < m->nlayers; j++)
        for (int k = 0; k < m->layers[j].ninputs; k++)
            if (m->layers[j].inputs[k] == li) {
                n++;
                *only = j;
            }
    return n;
}

/* The ReLU whose mask decides layer li's output units: li's single consumer chain
 * through batch norm ends at a ReLU. NULL when there is none (then all count). */
static const module_mask *downstream_mask(const ts_module *mod, int li) {
    const ts_model *m = mod->origin;
    int j = -1; /* set by consumers whenever it returns 1 (gcc cannot see it with 64 inputs a layer) */
    while (model_consumers(m, li, &j) == 1) {
        if (m->layers[j].kind == LAYER_RELU) return mask_of_layer(mod, j);
        if (m->layers[j].kind != LAYER_BATCHNORM) return NULL;
        li = j;
    }
    return NULL;
}

/* Per-feature liveness of layer li's input k: fills live (features) with 1 where the
 * feature can be non-zero. Walks back through pooling, dropout and flatten to a
 * masked ReLU; anything else is taken as live. For a vector input, features are
 * the flattened units; for an image input, channels. */
static void input_live(const ts_module *mod, int li, int k, int64_t features, uint8_t *live) {
    const ts_model *m = mod->origin;
    memset(live, 1, (size_t)features);
    int src = m->layers[li].inputs[k];
    int flat = 0, pooled = 0;
    for (;;) {
        const layer *s = &m->layers[src];
        if (s->kind == LAYER_FLATTEN) flat = 1;
        else if (s->kind == LAYER_MAXPOOL || s->kind == LAYER_AVGPOOL || s->kind == LAYER_GLOBALAVGPOOL) pooled = 1;
        else if (s->kind != LAYER_DROPOUT) break;
        src = s->inputs[0];
    }
    const module_mask *mk = m->layers[src].kind == LAYER_RELU ? mask_of_layer(mod, src) : NULL;
    if (!mk) return;
    const ts_shape *o = &m->layers[src].out;
    if (flat && !pooled && mk->units == features) { /* unit to unit */
        for (int64_t u = 0; u < features; u++) live[u] = (uint8_t)mask_get(mk, u);
        return;
    }
    int64_t ch = o->dims[0], per = mk->units / (ch ? ch : 1);
    int64_t group = features / (ch ? ch : 1); /* features per channel after pooling/flatten */
    if (group < 1 || group * ch != features) return;
    for (int64_t c = 0; c < ch; c++) {
        int any = 0;
        for (int64_t u = c * per; u < (c + 1) * per && !any; u++) any = mask_get(mk, u);
        for (int64_t g = 0; g < group; g++) live[c * group + g] = (uint8_t)any;
    }
}

/* Per-output-channel liveness of conv/dense layer li (its masked ReLU decides). */
static void output_live(const ts_module *mod, int li, int64_t outs, uint8_t *live) {
    memset(live, 1, (size_t)outs);
    const module_mask *mk = downstream_mask(mod, li);
    if (!mk) return;
    int64_t per = mk->units / outs;
    for (int64_t o = 0; o < outs; o++) {
        int any = 0;
        for (int64_t u = o * per; u < (o + 1) * per && !any; u++) any = mask_get(mk, u);
        live[o] = (uint8_t)any;
    }
}

ts_status module_count(ts_ctx *ctx, ts_module *mod) {
    const ts_model *m = mod->origin;
    ts_module_info *in = &mod->info;
    in->units = in->units_kept = in->conv_units = in->conv_units_kept = 0;
    for (int i = 0; i < mod->nmasks; i++) {
        const module_mask *mk = &mod->masks[i];
        int64_t kept = 0;
        for (int64_t w = 0; w < mask_words(mk->units); w++) kept += __builtin_popcountll(mk->keep[w]);
        in->units += mk->units;
        in->units_kept += kept;
        if (m->layers[mk->layer].out.ndim == 3) {
            in->conv_units += mk->units;
            in->conv_units_kept += kept;
        }
    }
    in->weights = in->weights_kept = 0;
    int64_t dead_macs = 0; /* of the conv/dense weights that are not live */
    int head = module_logits_layer(m);
    for (int li = 1; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        if (l->kind != LAYER_CONV2D && l->kind != LAYER_DENSE) continue;
        int64_t outs = l->features;
        int64_t ins = input_shape(m, l, 0)->dims[0]; /* channels, or features of a vector */
        int64_t per = l->kind == LAYER_CONV2D ? (int64_t)l->kh * l->kw : 1;
        int64_t groups = l->kind == LAYER_CONV2D ? l->groups : 1;
        uint8_t *lo = malloc((size_t)outs), *lin = malloc((size_t)ins);
        int64_t total = outs * (ins / groups) * per + (l->bias ? outs : 0);
        in->weights += total;
        if (!lo || !lin) {
            free(lo);
            free(lin);
            return ts_fail(ctx, TS_ENOMEM, "module statistics: out of memory");
        }
        output_live(mod, li, outs, lo);
        if (li == head) memset(lo, 1, (size_t)outs); /* the channelled head reads every row */
        input_live(mod, li, 0, ins, lin);
        int64_t opg = outs / groups, ipg = ins / groups, live = 0;
        for (int64_t o = 0; o < outs; o++) {
            if (!lo[o]) continue;
            int64_t g = o / opg, kept = 0;
            for (int64_t i = g * ipg; i < (g + 1) * ipg; i++) kept += lin[i];
            live += kept * per;
            in->weights_kept += kept * per + (l->bias ? 1 : 0);
        }
        /* each weight is one multiply-accumulate per output position */
        int64_t positions = l->kind == LAYER_CONV2D ? l->out.dims[1] * l->out.dims[2] : 1;
        dead_macs += (outs * ipg * per - live) * positions;
        free(lo);
        free(lin);
    }
    in->jaccard = in->weights ? (double)in->weights_kept / (double)in->weights : 1.0;
    /* kernels: channels of the (C,H,W) ReLU maps, kept when any unit of their plane is */
    in->kernels = in->kernels_kept = 0;
    for (int i = 0; i < mod->nmasks; i++) {
        const module_mask *mk = &mod->masks[i];
        const ts_shape *s = &m->layers[mk->layer].out;
        if (s->ndim != 3) continue;
        const int64_t plane = s->dims[1] * s->dims[2];
        for (int64_t c = 0; c < s->dims[0]; c++) {
            int any = 0;
            for (int64_t u = c * plane; u < (c + 1) * plane && !any; u++) any = mask_get(mk, u);
            in->kernels++;
            in->kernels_kept += any;
        }
    }
    in->origin_macs = 0;
    for (int li = 1; li < m->nlayers; li++) in->origin_macs += LAYER_OPS[m->layers[li].kind].macs(m, &m->layers[li]);
    in->macs_kept = in->origin_macs - dead_macs;
    in->params = (int64_t)m->nparams;
    in->params_kept = in->params - (in->weights - in->weights_kept);
    return TS_OK;
}

int module_record_activity(void *user, int layer, int64_t first, int n, const float *out) {
    const activity_sink *s = user;
    int k = 0;
    while (k < s->nmasks && s->masks[k].layer != layer) k++;
    if (k == s->nmasks) return 1; /* not a layer we asked for */
    const int64_t units = s->masks[k].units;
    for (int j = 0; j < n; j++) {
        const float *a = out + (size_t)j * (size_t)units;
        uint64_t *w = s->bits + (s->per_sample ? (size_t)(first + j) * (size_t)s->W : 0) + s->word_off[k];
        for (int64_t b = 0; b < units; b += 64) {
            int64_t e = b + 64 < units ? b + 64 : units;
            uint64_t word = 0;
            for (int64_t u = b; u < e; u++) word |= (uint64_t)(a[u] > 0.0f) << (u - b);
            if (s->per_sample) w[b >> 6] = word;
            else w[b >> 6] |= word;
        }
    }
    return 0;
}

/* ---- running a module alone */

ts_status ts_module_model(ts_ctx *ctx, const ts_module *mod, ts_model **out) {
    if (!ctx || !mod || !out) return ts_fail(ctx, TS_EINVAL, "ts_module_model: NULL argument");
    /* a translator's module translates into its language as it is: no head to channel */
    if (translator_model(mod->origin)) return model_clone(ctx, mod->origin, out);
    ts_compose_config cfg;
    ts_compose_config_default(&cfg);
    ts_module *const one[1] = {(ts_module *)mod};
    return ts_compose(ctx, one, 1, &cfg, out);
}

const char *ts_module_origin_meta(const ts_module *mod, const char *key) {
    return mod && key ? ts_model_get_meta(mod->origin, key) : NULL;
}

ts_status module_model_scores(ts_ctx *ctx, ts_model *mm, const ts_dataset *ds, int batch, float *out,
                              ts_progress_fn progress, void *user, const char *what) {
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(ctx, mm, &pp);
    if (st) return st;
    const size_t in_sz = (size_t)shape_numel(&mm->input);
    float *x = ts_alloc(ctx, (size_t)batch * in_sz * sizeof(float), what);
    if (!x) return TS_ENOMEM;
    int64_t lo, hi; /* this rank's whole batches (ts_ctx_set_comm); alone: all */
    ctx_batch_rows(ctx, ds->count, batch, &lo, &hi);
    for (int64_t s = lo; s < hi && !st; s += batch) {
        const int n = (int)(hi - s < batch ? hi - s : batch);
        (ctx->constant_time ? ts_preprocess_images_ct : ts_preprocess_images)(
            &pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        if ((st = ts_model_predict(ctx, mm, x, n, out + s))) break;
        /* a rank's share of the bar stands for the whole */
        if (progress && progress(user, (s + n - lo) * ds->count / (hi - lo), ds->count))
            st = ts_fail(ctx, TS_ECANCELED, "%s: canceled", what);
    }
    ts_free(x);
    return st ? st : ctx_gather_rows(ctx, out, ds->count, batch, sizeof *out, what);
}

ts_status ts_module_evaluate(ts_ctx *ctx, const ts_module *mod, const ts_dataset *ds, int batch, double *own,
                             double *rest) {
    if (!ctx || !mod || !ds || !own || !rest) return ts_fail(ctx, TS_EINVAL, "ts_module_evaluate: NULL argument");
    *own = *rest = 0;
    ts_status st = train_check_dataset(ctx, mod->origin, ds, "module evaluation");
    if (st) return st;
    ts_model *mm = NULL;
    if ((st = ts_module_model(ctx, mod, &mm))) return st;
    if (batch < 1 || batch > MODULE_EVAL_BATCH_MAX) batch = MODULE_EVAL_BATCH_MAX;
    float *score = ts_alloc(ctx, (size_t)(ds->count ? ds->count : 1) * sizeof(float), "module scores");
    if (!score) {
        st = TS_ENOMEM;
        goto done;
    }
    if ((st = module_model_scores(ctx, mm, ds, batch, score, NULL, NULL, "module evaluation"))) goto done;
    int64_t npos = 0, nneg = 0, tp = 0, tn = 0;
    for (int64_t i = 0; i < ds->count; i++) {
        /* bitwise, not &&: no branch on the score (constant-time mode) */
        const int mine = ds->labels[i] == mod->cls, yes = score[i] > mod->info.threshold;
        npos += mine;
        nneg += !mine;
        tp += mine & yes;
        tn += !mine & !yes;
    }
    *own = npos ? (double)tp / (double)npos : 0;
    *rest = nneg ? (double)tn / (double)nneg : 0;
done:
    ts_free(score);
    ts_model_free(mm);
    return st;
}

/* ---- the module as a masked origin, for slicing */

int model_sole_consumer(const ts_model *m, int li) {
    int c = -1, uses = 0;
    for (int j = li + 1; j < m->nlayers; j++)
        for (int k = 0; k < m->layers[j].ninputs; k++)
            if (m->layers[j].inputs[k] == li) {
                uses++;
                c = j;
            }
    return uses == 1 ? c : -1;
}

ts_status model_copy_layer_tensors(ts_ctx *ctx, const ts_model *src, int from, ts_model *dst, int to, const char *what) {
    const size_t sn = strlen(src->layers[from].name), dn = strlen(dst->layers[to].name);
    for (int t = 0; t < src->ntensors; t++) {
        if (src->tensors[t].layer != from) continue;
        const char *suffix = src->tensors[t].name + sn;
        int u = 0;
        while (u < dst->ntensors && !(dst->tensors[u].layer == to && !strcmp(dst->tensors[u].name + dn, suffix))) u++;
        if (u == dst->ntensors || dst->tensors[u].numel != src->tensors[t].numel)
            return ts_fail(ctx, TS_ESHAPE, "%s: tensor %s has no counterpart", what, src->tensors[t].name);
        memcpy(tensor_data(dst, u), tensor_data((ts_model *)src, t), sizeof(float) * (size_t)src->tensors[t].numel);
    }
    return TS_OK;
}

ts_status module_masked_origin(ts_ctx *ctx, const ts_module *mod, ts_model **out) {
    *out = NULL;
    const ts_model *o = mod->origin;
    int *map = malloc(sizeof *map * (size_t)o->nlayers), *at = malloc(sizeof *at * (size_t)o->nlayers);
    int *mask_at = malloc(sizeof *mask_at * (size_t)(mod->nmasks ? mod->nmasks : 1));
    nn_builder *b = NULL;
    ts_model *mm = NULL;
    ts_status st;
    if (!map || !at || !mask_at) {
        st = ts_fail(ctx, TS_ENOMEM, "module: out of memory");
        goto done;
    }
    if ((st = nn_builder_create(ctx, "module", 0, &o->input, o->classes, o->layers[0].name, &b))) goto done;
    map[0] = at[0] = 0;
    for (int li = 1, k = 0; li < o->nlayers; li++) {
        const layer *l = &o->layers[li];
        int ins[LAYER_MAX_INPUTS];
        for (int i = 0; i < l->ninputs; i++) ins[i] = map[l->inputs[i]];
        nn_added ad;
        if ((st = nn_add_at(b, l->kind, l->name, ins, l->ninputs, &l->attrs, &ad))) goto done;
        map[li] = at[li] = ad.layer;
        if (k < mod->nmasks && mod->masks[k].layer == li) {
            char name[LAYER_NAME_MAX];
            snprintf(name, sizeof name, "%.*s.keep", LAYER_NAME_MAX - 6, l->name);
            if ((st = nn_add_at(b, LAYER_MASK, name, &ad.layer, 1, NULL, &ad))) goto done;
            mask_at[k++] = map[li] = ad.layer;
        }
    }
    st = nn_builder_finish(b, 0, NULL, &mm);
    b = NULL;
    if (st) goto done;
    for (int li = 1; li < o->nlayers && !st; li++)
        st = model_copy_layer_tensors(ctx, o, li, mm, at[li], "module");
    for (int k = 0; k < mod->nmasks && !st; k++) {
        const module_mask *mk = &mod->masks[k];
        float *keep = tensor_data(mm, mm->layers[mask_at[k]].mask);
        for (int64_t u = 0; u < mk->units; u++) keep[u] = (float)mask_get(mk, u);
    }
    for (int i = 0; i < o->nmeta && !st; i++) st = ts_model_set_meta(ctx, mm, o->meta[i].key, o->meta[i].value);
    if (st) goto done;
    *out = mm;
    mm = NULL;
done:
    nn_builder_free(b);
    ts_model_free(mm);
    free(map);
    free(at);
    free(mask_at);
    return st;
}
