/* Model object: creation from architecture text, tensor table, parameter blocks,
 * initialization, metadata and accessors. */
#include "layers.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t rng_mix(uint64_t a, uint64_t b) {
    return ts_mix64(a ^ (b + TS_GOLDEN64 + (a << 6) + (a >> 2)));
}

ts_model *model_new_empty(void) { return calloc(1, sizeof(ts_model)); }

int model_add_tensor(ts_ctx *ctx, ts_model *m, int li, const char *suffix, ts_tensor_role role, const ts_shape *shape) {
    if (m->ntensors % 32 == 0) {
        tensor_entry *t = realloc(m->tensors, (size_t)(m->ntensors + 32) * sizeof *t);
        if (!t) {
            ts_fail(ctx, TS_ENOMEM, "out of memory for the tensor table");
            return -1;
        }
        m->tensors = t;
    }
    tensor_entry *e = &m->tensors[m->ntensors];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s.%s", m->layers[li].name, suffix);
    e->role = role;
    e->shape = *shape;
    e->numel = shape_numel(shape);
    e->layer = li;
    size_t *total = role == TS_TENSOR_PARAM ? &m->nparams : &m->nbuffers;
    if (e->numel < 1 || (uint64_t)e->numel > MODEL_MAX_VALUES - (m->nparams + m->nbuffers)) {
        ts_fail(ctx, TS_ESHAPE, "%s:%d: tensor %s makes the model larger than %llu values",
                m->parsing ? m->parsing : "<arch>", m->layers[li].line, e->name, (unsigned long long)MODEL_MAX_VALUES);
        return -1;
    }
    e->offset = *total;
    *total += (size_t)e->numel;
    return m->ntensors++;
}

ts_status model_alloc_tensors(ts_ctx *ctx, ts_model *m) {
    size_t pb = (m->nparams ? m->nparams : 1) * sizeof(float), bb = (m->nbuffers ? m->nbuffers : 1) * sizeof(float);
    m->params = ts_calloc(ctx, pb, "model parameters");
    m->buffers = ts_calloc(ctx, bb, "model buffers");
    if (!m->params || !m->buffers) return TS_ENOMEM;
    return TS_OK;
}

/* Gradients exist only once something trains: loading or inspecting a model does
 * not pay for them. */
ts_status model_ensure_grads(ts_ctx *ctx, ts_model *m) {
    if (m->grads) return TS_OK;
    m->grads = ts_calloc(ctx, (m->nparams ? m->nparams : 1) * sizeof(float), "model gradients");
    return m->grads ? TS_OK : TS_ENOMEM;
}

/* Public tensor order: parameters in declaration order, then buffers. */
ts_status model_order_tensors(ts_ctx *ctx, ts_model *m) {
    m->order = malloc((size_t)(m->ntensors ? m->ntensors : 1) * sizeof *m->order);
    if (!m->order) return ts_fail(ctx, TS_ENOMEM, "out of memory for the tensor table");
    int k = 0;
    for (int role = TS_TENSOR_PARAM; role <= TS_TENSOR_BUFFER; role++)
        for (int t = 0; t < m->ntensors; t++)
            if ((int)m->tensors[t].role == role) m->order[k++] = t;
    return TS_OK;
}

ts_status model_parse(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                      const int *vocab, ts_model **out) {
    *out = NULL;
    nn_builder *b;
    ts_status st = arch_parse(ctx, text, source, input, classes, vocab, &b);
    if (st) return st;
    ts_model *m;
    if ((st = nn_builder_finish_unallocated(b, &m))) return st;
    if (!(m->arch_text = vocab ? arch_write_model(m) : strdup(text))) {
        ts_model_free(m);
        return ts_fail(ctx, TS_ENOMEM, "out of memory copying architecture");
    }
    *out = m;
    return TS_OK;
}

/* PyTorch defaults: conv and dense weights kaiming_uniform(a=sqrt(5)), i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the same bound for biases; batch norm
 * gamma 1, beta 0, running mean 0, running var 1; prelu slopes 0.25. Each tensor
 * draws from its own stream (seed, tensor index) so adding a layer does not shift
 * the others. */
void model_init_params(ts_model *m, uint64_t seed) {
    for (int li = 0; li < m->nlayers; li++) {
        layer *l = &m->layers[li];
        if (l->kind == LAYER_CONV2D || l->kind == LAYER_DENSE || l->kind == LAYER_CONVTRANSPOSE) {
            /* convtranspose (C, out/groups, kh, kw): fan_in is out/groups*kh*kw as PyTorch */
            tensor_entry *w = &m->tensors[l->weight];
            int64_t fan_in = w->numel / w->shape.dims[0];
            float bound = 1.0f / sqrtf((float)fan_in);
            ts_rng r;
            ts_rng_seed(&r, rng_mix(seed, (uint64_t)l->weight));
            float *d = tensor_data(m, l->weight);
            for (int64_t i = 0; i < w->numel; i++) d[i] = (2.0f * ts_rng_uniform(&r) - 1.0f) * bound;
            if (l->bias_t >= 0) {
                ts_rng_seed(&r, rng_mix(seed, (uint64_t)l->bias_t));
                float *b = tensor_data(m, l->bias_t);
                for (int64_t i = 0; i < m->tensors[l->bias_t].numel; i++)
                    b[i] = (2.0f * ts_rng_uniform(&r) - 1.0f) * bound;
            }
        } else if (l->kind == LAYER_BATCHNORM) {
            int64_t c = m->tensors[l->weight].numel;
            float *g = tensor_data(m, l->weight), *b = tensor_data(m, l->bias_t);
            float *rm = tensor_data(m, l->running_mean), *rv = tensor_data(m, l->running_var);
            for (int64_t i = 0; i < c; i++) {
                g[i] = 1.0f;
                b[i] = 0.0f;
                rm[i] = 0.0f;
                rv[i] = 1.0f;
            }
        } else if (l->kind == LAYER_MASK) {
            float *k = tensor_data(m, l->mask);
            for (int64_t i = 0; i < m->tensors[l->mask].numel; i++) k[i] = 1.0f;
        } else if (l->kind == LAYER_BINARY && l->konst >= 0) {
            /* the identity operand: 0 for add and sub, 1 for mul and div */
            const float v = l->op == BINARY_MUL || l->op == BINARY_DIV ? 1.0f : 0.0f;
            float *k = tensor_data(m, l->konst);
            for (int64_t i = 0; i < m->tensors[l->konst].numel; i++) k[i] = v;
        } else if (l->kind == LAYER_MATMUL && l->ninputs == 1) { /* two inputs: no weight */
            /* as dense: U(-1/sqrt(K), 1/sqrt(K)), K the contracted axis of b */
            const tensor_entry *w = &m->tensors[l->weight];
            const int64_t k = w->shape.ndim >= 2 ? w->shape.dims[w->shape.ndim - 2] : w->shape.dims[0];
            const float bound = 1.0f / sqrtf((float)k);
            ts_rng r;
            ts_rng_seed(&r, rng_mix(seed, (uint64_t)l->weight));
            float *d = tensor_data(m, l->weight);
            for (int64_t i = 0; i < w->numel; i++) d[i] = (2.0f * ts_rng_uniform(&r) - 1.0f) * bound;
        } else if (l->kind == LAYER_EMBEDDING) { /* nn.Embedding: N(0, 1), the padding row zero */
            const tensor_entry *w = &m->tensors[l->weight];
            ts_rng r;
            ts_rng_seed(&r, rng_mix(seed, (uint64_t)l->weight));
            float *d = tensor_data(m, l->weight);
            for (int64_t i = 0; i < w->numel; i += 2) { /* Box-Muller, two values a draw */
                const double u1 = 1.0 - (double)ts_rng_uniform(&r), u2 = (double)ts_rng_uniform(&r);
                const double rad = sqrt(-2.0 * log(u1));
                d[i] = (float)(rad * cos(6.283185307179586 * u2));
                if (i + 1 < w->numel) d[i + 1] = (float)(rad * sin(6.283185307179586 * u2));
            }
            if (l->padding_idx >= 0) memset(d + (int64_t)l->padding_idx * l->features, 0, sizeof *d * l->features);
        } else if (l->kind == LAYER_RNN || l->kind == LAYER_LSTM || l->kind == LAYER_GRU) {
            /* nn.RNN/LSTM/GRU: every weight and bias U(-1/sqrt(H), 1/sqrt(H)) */
            const float bound = 1.0f / sqrtf((float)l->features);
            const int ts[2] = {l->weight, l->bias_t};
            for (int k = 0; k < 2; k++) {
                ts_rng r;
                ts_rng_seed(&r, rng_mix(seed, (uint64_t)ts[k]));
                float *d = tensor_data(m, ts[k]);
                for (int64_t i = 0; i < m->tensors[ts[k]].numel; i++) d[i] = (2.0f * ts_rng_uniform(&r) - 1.0f) * bound;
            }
            for (int64_t i = 0; l->mask >= 0 && i < m->tensors[l->mask].numel; i++) /* step_keep: every unit kept */
                tensor_data(m, l->mask)[i] = 1.0f;
        } else if (l->kind == LAYER_PRELU) { /* PyTorch nn.PReLU: 0.25 */
            float *a = tensor_data(m, l->weight);
            for (int64_t i = 0; i < m->tensors[l->weight].numel; i++) a[i] = 0.25f;
        }
    }
}

static ts_status model_from_text(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input,
                                 int classes, const int *vocab, uint64_t seed, ts_model **out) {
    ts_model *m;
    ts_status st = model_parse(ctx, text, source, input, classes, vocab, &m);
    if (st) return st;
    if ((st = model_alloc_tensors(ctx, m))) {
        ts_model_free(m);
        return st;
    }
    model_init_params(m, seed);
    *out = m;
    return TS_OK;
}

ts_status ts_model_from_arch(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                             uint64_t seed, ts_model **out) {
    if (!ctx || !text || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_from_arch: NULL argument");
    *out = NULL;
    return model_from_text(ctx, text, source, input, classes, NULL, seed, out);
}

ts_status ts_model_from_arch_seq(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                                 int vocab, int target_vocab, uint64_t seed, ts_model **out) {
    if (!ctx || !text || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_from_arch_seq: NULL argument");
    *out = NULL;
    if (classes < 0 || vocab < 0 || target_vocab < 0)
        return ts_fail(ctx, TS_EINVAL, "ts_model_from_arch_seq: classes %d, vocab %d, target_vocab %d (expected >= 0)",
                       classes, vocab, target_vocab);
    const int v[2] = {vocab, target_vocab};
    return model_from_text(ctx, text, source, input, classes, v, seed, out);
}

ts_status ts_model_from_arch_file(ts_ctx *ctx, const char *path, const ts_shape *input, int classes, uint64_t seed,
                                  ts_model **out) {
    if (!ctx || !path || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_from_arch_file: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    ts_status st = TS_OK;
    for (;;) {
        if (len > ((size_t)16 << 20)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: architecture file larger than 16 MiB", path);
            break;
        }
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) st = ts_fail(ctx, TS_EIO, "%s: read error at byte %zu", path, len);
            break;
        }
    }
    fclose(f);
    if (!st) {
        buf[len] = '\0';
        if (strlen(buf) != len) st = ts_fail(ctx, TS_EFORMAT, "%s: NUL byte at offset %zu (not a text file)", path, strlen(buf));
    }
    if (!st) {
        st = ts_model_from_arch(ctx, buf, path, input, classes, seed, out);
    }
    free(buf);
    return st;
}

void ts_model_free(ts_model *m) {
    if (!m) return;
    exec_release(&m->exec);
    for (int i = 0; i < FREE_HW_VIEWS; i++) ts_model_free(m->hw_view[i]);
    if (m->shares_storage) m->params = m->buffers = NULL; /* its owner's */
    free(m->arch_text);
    free(m->layers);
    free(m->tensors);
    free(m->order);
    ts_free(m->params);
    ts_free(m->grads);
    ts_free(m->buffers);
    for (int i = 0; i < m->nmeta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->meta);
    free(m->qscale);
    free(m->qu8);
    free(m->act_rel);
    free(m);
}

ts_shape ts_model_input_shape(const ts_model *m) { return m->input; }
int ts_model_classes(const ts_model *m) { return m->classes; }
const char *ts_model_arch_text(const ts_model *m) { return m->arch_text; }
int ts_model_tensor_count(const ts_model *m) { return m->ntensors; }
int64_t ts_model_param_count(const ts_model *m) { return (int64_t)m->nparams; }
int ts_model_layer_count(const ts_model *m) { return m->nlayers; }

void ts_model_params_changed(ts_model *m) { exec_weights_changed(m); }

ts_status ts_model_tensor(const ts_model *m, int index, ts_tensor_info *info) {
    ts_status st = model_tensor_peek(m, index, info);
    if (!st) exec_weights_changed(m); /* the caller may write through info->data */
    return st;
}

ts_status model_tensor_peek(const ts_model *m, int index, ts_tensor_info *info) {
    if (!m || !info || index < 0 || index >= m->ntensors) return TS_EINVAL;
    const tensor_entry *e = &m->tensors[m->order[index]];
    memset(info, 0, sizeof *info);
    info->name = e->name;
    info->role = e->role;
    info->ndim = e->shape.ndim;
    memcpy(info->dims, e->shape.dims, sizeof info->dims);
    info->numel = e->numel;
    info->data = (e->role == TS_TENSOR_PARAM ? m->params : m->buffers) + e->offset;
    info->grad = e->role == TS_TENSOR_PARAM && m->grads ? m->grads + e->offset : NULL;
    return TS_OK;
}

int ts_model_find_tensor(const ts_model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[m->order[i]].name, name)) return i;
    return -1;
}

const char *ts_model_layer_input(const ts_model *m, int index, int k) {
    if (!m || index < 1 || index >= m->nlayers || k < 0 || k >= m->layers[index].ninputs) return NULL;
    return m->layers[m->layers[index].inputs[k]].name;
}

ts_status ts_model_layer(const ts_model *m, int index, ts_layer_info *info) {
    if (!m || !info || index < 0 || index >= m->nlayers) return TS_EINVAL;
    const layer *l = &m->layers[index];
    memset(info, 0, sizeof *info);
    info->name = l->name;
    info->kind = LAYER_OPS[l->kind].name;
    info->line = l->line;
    info->out = l->out;
    for (int t = 0; t < m->ntensors; t++)
        if (m->tensors[t].layer == index && m->tensors[t].role == TS_TENSOR_PARAM) info->params += m->tensors[t].numel;
    info->macs = LAYER_OPS[l->kind].macs(m, l);
    info->ninputs = l->kind == LAYER_INPUT ? 0 : l->ninputs;
    const int shown = (int)(sizeof info->inputs / sizeof info->inputs[0]);
    for (int k = 0; k < info->ninputs && k < shown; k++) info->inputs[k] = m->layers[l->inputs[k]].name;
    if (l->kind == LAYER_INPUT && l->free_hw) snprintf(info->attrs, sizeof info->attrs, "free=hw");
    if (l->kind != LAYER_INPUT) { /* from the kind's schema, without the leading space */
        char a[sizeof info->attrs + 1];
        attrs_write(l->kind, &l->attrs, a, sizeof a);
        size_t len = strlen(a + (a[0] == ' '));
        if (len >= sizeof info->attrs) len = sizeof info->attrs - 1;
        memcpy(info->attrs, a + (a[0] == ' '), len);
        info->attrs[len] = '\0';
    }
    return TS_OK;
}

/* ------------------------------------------------------------- metadata */

ts_status ts_model_set_meta(ts_ctx *ctx, ts_model *m, const char *key, const char *value) {
    if (!m || !key || !*key) return ts_fail(ctx, TS_EINVAL, "metadata: empty key");
    if (!strcmp(key, QUANT_META_KEY)) { /* inference re-reads it */
        m->qdirty = 1;
        for (int i = 0; i < FREE_HW_VIEWS; i++) { /* a free model's other sizes copied the old scales: rebuilt */
            ts_model_free(m->hw_view[i]);
            m->hw_view[i] = NULL;
        }
    }
    for (int i = 0; i < m->nmeta; i++) {
        if (strcmp(m->meta[i].key, key)) continue;
        if (!value) {
            free(m->meta[i].key);
            free(m->meta[i].value);
            m->meta[i] = m->meta[--m->nmeta];
            return TS_OK;
        }
        char *v = strdup(value);
        if (!v) return ts_fail(ctx, TS_ENOMEM, "metadata: out of memory");
        free(m->meta[i].value);
        m->meta[i].value = v;
        return TS_OK;
    }
    if (!value) return TS_OK;
    meta_entry *nm = realloc(m->meta, (size_t)(m->nmeta + 1) * sizeof *nm);
    if (!nm) return ts_fail(ctx, TS_ENOMEM, "metadata: out of memory");
    m->meta = nm;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return ts_fail(ctx, TS_ENOMEM, "metadata: out of memory");
    }
    m->meta[m->nmeta].key = k;
    m->meta[m->nmeta].value = v;
    m->nmeta++;
    return TS_OK;
}

const char *ts_model_get_meta(const ts_model *m, const char *key) {
    for (int i = 0; i < m->nmeta; i++)
        if (!strcmp(m->meta[i].key, key)) return m->meta[i].value;
    return NULL;
}

int ts_model_meta_count(const ts_model *m) { return m->nmeta; }

void ts_model_meta_at(const ts_model *m, int index, const char **key, const char **value) {
    *key = *value = NULL;
    if (index < 0 || index >= m->nmeta) return;
    *key = m->meta[index].key;
    *value = m->meta[index].value;
}

ts_status ts_model_set_preprocess(ts_ctx *ctx, ts_model *m, const ts_preprocess *pp) {
    if (pp->channels < 1 || pp->channels > 4) return ts_fail(ctx, TS_EINVAL, "preprocess: channels %d out of 1..4", pp->channels);
    char mean[128] = "", std[128] = "";
    for (int c = 0; c < pp->channels; c++) {
        size_t lm = strlen(mean), ls = strlen(std);
        snprintf(mean + lm, sizeof mean - lm, "%s%.9g", c ? "," : "", pp->mean[c]);
        snprintf(std + ls, sizeof std - ls, "%s%.9g", c ? "," : "", pp->std[c]);
    }
    ts_status st = ts_model_set_meta(ctx, m, "preprocess.mean", mean);
    if (!st) st = ts_model_set_meta(ctx, m, "preprocess.std", std);
    return st;
}

static int parse_floats(const char *s, float *out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        char *end;
        errno = 0;
        float v = strtof(s, &end);
        if (errno || end == s || !isfinite(v)) return -1;
        out[n++] = v;
        if (*end == ',') s = end + 1;
        else if (*end == '\0') s = end;
        else return -1;
    }
    return (s && *s) ? -1 : n;
}

ts_status ts_model_get_preprocess(ts_ctx *ctx, const ts_model *m, ts_preprocess *pp) {
    memset(pp, 0, sizeof *pp);
    int c = m->input.ndim == 3 ? (int)m->input.dims[0] : 1;
    if (c > 4) c = 4;
    pp->channels = c;
    for (int i = 0; i < 4; i++) {
        pp->mean[i] = 0.0f;
        pp->std[i] = 1.0f;
    }
    const char *ms = ts_model_get_meta(m, "preprocess.mean"), *ss = ts_model_get_meta(m, "preprocess.std");
    if (!ms && !ss) return TS_OK; /* raw pixel/255 */
    int nm = parse_floats(ms, pp->mean, 4), ns = parse_floats(ss, pp->std, 4);
    if (nm != c || ns != c)
        return ts_fail(ctx, TS_EFORMAT, "model metadata: preprocess.mean/std must hold %d numbers each", c);
    for (int i = 0; i < c; i++)
        if (!(pp->std[i] > 0)) return ts_fail(ctx, TS_EFORMAT, "model metadata: preprocess.std[%d] must be > 0", i);
    return TS_OK;
}

/* A deep copy: same layers, tensors, architecture text and metadata; no execution
 * state. Layers and tensor tables are copied as they are: nothing is re-inferred. */
ts_status model_clone(ts_ctx *ctx, const ts_model *m, ts_model **out) {
    *out = NULL;
    ts_model *c = model_new_empty();
    if (!c) return ts_fail(ctx, TS_ENOMEM, "out of memory for a model copy");
    ts_status st = TS_OK;
    c->input = m->input;
    c->classes = m->classes;
    c->exit_layer = m->exit_layer;
    c->nlayers = m->nlayers;
    c->ntensors = m->ntensors;
    c->nparams = m->nparams;
    c->nbuffers = m->nbuffers;
    c->layers = malloc((size_t)m->nlayers * sizeof *c->layers);
    c->tensors = malloc((size_t)(m->ntensors ? m->ntensors : 1) * sizeof *c->tensors);
    c->order = malloc((size_t)(m->ntensors ? m->ntensors : 1) * sizeof *c->order);
    c->arch_text = strdup(m->arch_text);
    if (!c->layers || !c->tensors || !c->order || !c->arch_text) {
        st = ts_fail(ctx, TS_ENOMEM, "out of memory for a model copy");
        goto fail;
    }
    memcpy(c->layers, m->layers, (size_t)m->nlayers * sizeof *c->layers);
    memcpy(c->tensors, m->tensors, (size_t)m->ntensors * sizeof *c->tensors);
    memcpy(c->order, m->order, (size_t)m->ntensors * sizeof *c->order);
    if ((st = model_alloc_tensors(ctx, c))) goto fail;
    memcpy(c->params, m->params, m->nparams * sizeof(float));
    memcpy(c->buffers, m->buffers, m->nbuffers * sizeof(float));
    for (int i = 0; i < m->nmeta; i++)
        if ((st = ts_model_set_meta(ctx, c, m->meta[i].key, m->meta[i].value))) goto fail;
    *out = c;
    return TS_OK;
fail:
    ts_model_free(c);
    return st;
}
