/* Composing a translator's language modules (decompose_translator.c) into one
 * translator that writes every language of its modules: each module's model runs on
 * the input (2, Tm) and a gate keeps, per sample, the scores of the module whose
 * language the source's tag names. The gate is ordinary layers, so the composed
 * model saves, loads, exports and decodes like any translator:
 *
 *   first  = the source's first id (pad: crop (2, Tm) to (1, 1))
 *   d_i    = first - tag_i                      (binary, constant)
 *   g_i    = relu(1 - d_i * d_i)                 1 when the tag is module i's, else 0 (ids are whole)
 *   out    = sum_i g_i * scores_i               (binary per module, then add)
 *
 * Every module runs for every sample (k modules: k times one module's work); a source
 * whose tag no module writes gets all-zero scores, so decoding writes nothing. Modules
 * of different models compose when their vocabularies are the same (reuse: the
 * language of one model beside another model's). */
#include "modular.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int translator_module_tag(const ts_module *mod) {
    const char *v = ts_model_get_meta(mod->origin, TRANSLATOR_TAG_META);
    char *end = NULL;
    const long t = v ? strtol(v, &end, 10) : -1;
    return v && end != v && !*end && t > TS_TOKEN_EOS && t < (1L << 30) ? (int)t : -1;
}

static int same_meta(const ts_model *a, const ts_model *b, const char *key) {
    const char *x = ts_model_get_meta(a, key), *y = ts_model_get_meta(b, key);
    return (!x && !y) || (x && y && !strcmp(x, y));
}

/* A constant binary layer (op with the constant c of shape (1); const_first: c op x) */
static ts_status add_const(nn_builder *b, const char *name, int in, binary_op op, int const_first, int *out,
                           int *konst) {
    layer_attrs a;
    nn_attrs_default(LAYER_BINARY, &a);
    a.op = op;
    a.const_first = const_first;
    a.tshape.ndim = 1;
    a.tshape.dims[0] = 1;
    nn_added ad;
    ts_status st = nn_add_at(b, LAYER_BINARY, name, &in, 1, &a, &ad);
    *out = ad.layer;
    *konst = ad.konst;
    return st;
}

ts_status compose_translators(ts_ctx *ctx, ts_module *const *mods, int k, ts_model **out) {
    *out = NULL;
    const ts_model *o0 = mods[0]->origin;
    for (int j = 0; j < k; j++) {
        const ts_model *o = mods[j]->origin;
        if (!translator_model(o))
            return ts_fail(ctx, TS_EINVAL, "compose: module %d (language '%s') is not a translator's; a translator's "
                           "language modules compose only with each other", j, mods[j]->class_name);
        if (translator_module_tag(mods[j]) < 0)
            return ts_fail(ctx, TS_EFORMAT, "compose: module %d (language '%s') records no language tag (%s)", j,
                           mods[j]->class_name, TRANSLATOR_TAG_META);
        const ts_shape *a = &o->layers[o->nlayers - 1].out, *b = &o0->layers[o0->nlayers - 1].out;
        if (o->input.dims[1] != o0->input.dims[1] || a->dims[1] != b->dims[1])
            return ts_fail(ctx, TS_ESHAPE, "compose: module %d (language '%s') takes %lld steps and writes %lld words, "
                           "module 0 %lld and %lld", j, mods[j]->class_name, (long long)o->input.dims[1],
                           (long long)a->dims[1], (long long)o0->input.dims[1], (long long)b->dims[1]);
        if (!same_meta(o, o0, "text.vocab") || !same_meta(o, o0, "text.target_vocab"))
            return ts_fail(ctx, TS_EINVAL, "compose: module %d (language '%s') reads or writes another vocabulary than "
                           "module 0's: translators compose only over the same words", j, mods[j]->class_name);
        for (int i = 0; i < j; i++)
            if (translator_module_tag(mods[i]) == translator_module_tag(mods[j]))
                return ts_fail(ctx, TS_EINVAL, "compose: modules %d and %d both write '%s'", i, j,
                               mods[j]->class_name);
    }
    const int64_t Tm = o0->input.dims[1];
    nn_builder *b = NULL;
    ts_status st = nn_builder_create(ctx, "<composed>", 0, &o0->input, o0->classes, "compose.input", &b);
    int **to = calloc((size_t)k, sizeof *to), *scores = calloc((size_t)k, sizeof *scores);
    int *kd = calloc((size_t)k, sizeof *kd), *kone = calloc((size_t)k, sizeof *kone), *gated = calloc((size_t)k, sizeof *gated);
    if (!st && (!to || !scores || !kd || !kone || !gated)) st = ts_fail(ctx, TS_ENOMEM, "compose: out of memory");
    char name[160];
    for (int j = 0; j < k && !st; j++) {
        const ts_model *o = mods[j]->origin;
        if (!(to[j] = malloc(sizeof(int) * (size_t)o->nlayers))) {
            st = ts_fail(ctx, TS_ENOMEM, "compose: out of memory");
            break;
        }
        to[j][0] = 0;
        for (int li = 1; li < o->nlayers && !st; li++) {
            const layer *l = &o->layers[li];
            int in[LAYER_MAX_INPUTS];
            for (int q = 0; q < l->ninputs; q++) in[q] = to[j][l->inputs[q]];
            snprintf(name, sizeof name, "m%d.%.50s", j, l->name); /* within LAYER_NAME_MAX, whatever the language's name */
            nn_added ad;
            layer_attrs a = l->attrs;
            st = nn_add_at(b, l->kind, name, in, l->ninputs, &a, &ad);
            to[j][li] = ad.layer;
        }
        if (!st) scores[j] = to[j][o->nlayers - 1];
    }
    /* the gate */
    int first = -1;
    if (!st) {
        layer_attrs p;
        nn_attrs_default(LAYER_PAD, &p);
        p.npads = 4;
        p.pads[0] = p.pads[1] = 0;
        p.pads[2] = -1;
        p.pads[3] = (int)(1 - Tm);
        const int in0 = 0;
        nn_added ad;
        st = nn_add_at(b, LAYER_PAD, "route.first", &in0, 1, &p, &ad);
        first = ad.layer;
    }
    for (int j = 0; j < k && !st; j++) {
        int d, sq, g, r;
        snprintf(name, sizeof name, "route.%d.diff", j);
        st = add_const(b, name, first, BINARY_SUB, 0, &d, &kd[j]);
        nn_added ad;
        layer_attrs a;
        nn_attrs_default(LAYER_BINARY, &a);
        a.op = BINARY_MUL;
        const int two[2] = {d, d};
        snprintf(name, sizeof name, "route.%d.square", j);
        if (!st) st = nn_add_at(b, LAYER_BINARY, name, two, 2, &a, &ad);
        sq = ad.layer;
        snprintf(name, sizeof name, "route.%d.near", j);
        if (!st) st = add_const(b, name, sq, BINARY_SUB, 1, &g, &kone[j]);
        snprintf(name, sizeof name, "route.%d.gate", j);
        if (!st) st = nn_add_at(b, LAYER_RELU, name, &g, 1, NULL, &ad);
        r = ad.layer;
        const int pair[2] = {scores[j], r};
        snprintf(name, sizeof name, "route.%d.scores", j);
        if (!st) st = nn_add_at(b, LAYER_BINARY, name, pair, 2, &a, &ad);
        gated[j] = ad.layer;
    }
    if (!st && k > 1) st = nn_add_at(b, LAYER_ADD, "route.sum", gated, k, NULL, NULL);
    ts_model *cm = NULL;
    if (!st) st = nn_builder_finish(b, 0, NULL, &cm);
    else nn_builder_free(b);
    for (int j = 0; j < k && !st; j++) {
        const ts_model *o = mods[j]->origin;
        for (int li = 1; li < o->nlayers && !st; li++)
            st = model_copy_layer_tensors(ctx, o, li, cm, to[j][li], "compose");
    }
    if (!st) {
        for (int j = 0; j < k; j++) { /* kd, kone: the constant tensors */
            *tensor_data(cm, kd[j]) = (float)translator_module_tag(mods[j]);
            *tensor_data(cm, kone[j]) = 1.0f;
        }
        ts_model_params_changed(cm);
        /* the origin's text metadata (vocabularies, lengths, languages) and where its data
         * is, then what was composed */
        for (int i = 0; i < o0->nmeta && !st; i++)
            if (!strncmp(o0->meta[i].key, "text.", 5) || !strcmp(o0->meta[i].key, "classes") ||
                !strcmp(o0->meta[i].key, "dataset") || !strcmp(o0->meta[i].key, "data") ||
                !strcmp(o0->meta[i].key, "data.dir"))
                if (strcmp(o0->meta[i].key, TRANSLATOR_TAG_META))
                    st = ts_model_set_meta(ctx, cm, o0->meta[i].key, o0->meta[i].value);
        char key[64], val[1200];
        for (int j = 0; j < k && !st; j++) {
            const ts_module *mod = mods[j];
            snprintf(key, sizeof key, "composed.origin.%d", j);
            snprintf(val, sizeof val, "dataset=%.400s;class=%d;origin=%.600s;id=%016llx", mod->dataset, mod->cls,
                     mod->origin_name, (unsigned long long)mod->origin_id);
            st = ts_model_set_meta(ctx, cm, key, val);
        }
    }
    for (int j = 0; to && j < k; j++) free(to[j]);
    free(to);
    free(scores);
    free(kd);
    free(kone);
    free(gated);
    if (st) {
        ts_model_free(cm);
        return st;
    }
    *out = cm;
    return TS_OK;
}
