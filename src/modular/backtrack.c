/* BLN backtracking (Pan & Rajan, ICSE'22, concern modularization; docs/modules.md):
 * the units that feed the classifier and are tied mostly to "not my class" leave the
 * module, then, back through dense layers, the units whose every consumer left.
 * A real change to the module's keep bits, so to its output. */
#include "modular.h"

#include <math.h>

/* The one layer that reads li's output, or -1 when there are none or several. */
static int sole_consumer(const ts_model *m, int li) {
    int found = -1;
    for (int j = li + 1; j < m->nlayers; j++)
        for (int k = 0; k < m->layers[j].ninputs; k++)
            if (m->layers[j].inputs[k] == li) {
                if (found >= 0) return -1;
                found = j;
            }
    return found;
}

static module_mask *mask_at(ts_module *mod, int li) {
    for (int i = 0; i < mod->nmasks; i++)
        if (mod->masks[i].layer == li) return &mod->masks[i];
    return NULL;
}

static void mask_clear(module_mask *mk, int64_t u) { mk->keep[u >> 6] &= ~(1ull << (u & 63)); }

/* The masked ReLU whose units are, one to one, the input features of dense layer li
 * (through dropout and flatten, each read by nothing else), or NULL. */
static module_mask *unit_source(ts_module *mod, int li) {
    const ts_model *m = mod->origin;
    const layer *d = &m->layers[li];
    int at = li, src = d->inputs[0];
    for (;;) {
        if (sole_consumer(m, src) != at) return NULL;
        const layer *s = &m->layers[src];
        if (s->kind == LAYER_RELU) break;
        if (s->kind != LAYER_DROPOUT && s->kind != LAYER_FLATTEN) return NULL;
        at = src;
        src = s->inputs[0];
    }
    module_mask *mk = mask_at(mod, src);
    return mk && mk->units == input_shape(m, d, 0)->dims[0] ? mk : NULL;
}

/* The dense layer that produces ReLU mask mk's input (through batch norm), or -1. */
static int dense_producer(const ts_model *m, const module_mask *mk) {
    int at = mk->layer, src = m->layers[at].inputs[0];
    for (;;) {
        if (sole_consumer(m, src) != at) return -1;
        if (m->layers[src].kind == LAYER_DENSE) return src;
        if (m->layers[src].kind != LAYER_BATCHNORM) return -1;
        at = src;
        src = m->layers[src].inputs[0];
    }
}

/* At the classifier (dense layer head, weights (K, F)): feature f is tied mostly to
 * the other classes when |w_uc| > delta (|w_c| + |w_uc|), w_c = W[c][f] and w_uc the
 * mean of W[j][f] over j != c (the column CM-C's V_uc reads). */
static int64_t remove_at_head(ts_module *mod, int head, module_mask *mk, float delta) {
    ts_model *m = mod->origin;
    const layer *l = &m->layers[head];
    const int64_t K = l->features, F = mk->units;
    const float *w = tensor_data(m, l->weight);
    int64_t removed = 0;
    for (int64_t f = 0; f < F; f++) {
        if (!mask_get(mk, f)) continue;
        double sum = 0;
        for (int64_t j = 0; j < K; j++) sum += j == mod->cls ? 0.0 : (double)w[j * F + f];
        double wc = fabs((double)w[(int64_t)mod->cls * F + f]), wuc = K > 1 ? fabs(sum / (double)(K - 1)) : 0.0;
        if (wuc > (double)delta * (wc + wuc)) {
            mask_clear(mk, f);
            removed++;
        }
    }
    return removed;
}

/* Dense layer d reads src's units and feeds out's: a unit of src whose every
 * non-zero weight leads to a removed unit of out is removed. */
static int64_t remove_unread(ts_module *mod, int d, module_mask *src, const module_mask *out) {
    ts_model *m = mod->origin;
    const int64_t O = m->layers[d].features, F = src->units;
    const float *w = tensor_data(m, m->layers[d].weight);
    int64_t removed = 0;
    for (int64_t f = 0; f < F; f++) {
        if (!mask_get(src, f)) continue;
        int read = 0;
        for (int64_t o = 0; o < O && !read; o++) read = w[o * F + f] != 0.0f && mask_get(out, o);
        if (!read) {
            mask_clear(src, f);
            removed++;
        }
    }
    return removed;
}

/* Walks the classifier's input and the dense layers before it; with chain, only
 * marks the masks on the way (the keep bits stay as they are). */
static int64_t backtrack(ts_module *mod, float delta, uint8_t *chain) {
    ts_model *m = mod->origin;
    int head = module_logits_layer(m);
    if (m->layers[head].kind != LAYER_DENSE || m->layers[head].features != m->classes) return 0;
    module_mask *mk = unit_source(mod, head);
    if (!mk) return 0;
    int64_t removed = 0;
    if (chain) chain[mk - mod->masks] = 1;
    else removed += remove_at_head(mod, head, mk, delta);
    for (int d; (d = dense_producer(m, mk)) >= 0;) {
        module_mask *src = unit_source(mod, d);
        if (!src || m->layers[d].features != mk->units) break;
        if (chain) chain[src - mod->masks] = 1;
        else removed += remove_unread(mod, d, src, mk);
        mk = src;
    }
    return removed;
}

int64_t module_backtrack(ts_module *mod, float delta) {
    return delta < 1.0f ? backtrack(mod, delta, NULL) : 0; /* no unit is tied more than wholly to V_uc */
}

void module_backtrack_masks(ts_module *mod, uint8_t *chain) { backtrack(mod, 0.0f, chain); }
