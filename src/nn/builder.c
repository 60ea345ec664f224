/* The graph builder: every model is made here, one nn_add per layer, whether from
 * architecture text, ONNX, composition, a clone or a caller's own code. Each call
 * checks the attributes against the kind's schema, runs the kind's shape inference
 * (which declares the layer's tensors) and reports errors with the layer's name at
 * the call that caused them. */
#include "layers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nn_builder {
    ts_ctx *ctx;
    ts_model *m;            /* layers and tensors so far; nothing allocated */
    int cap;                /* layers allocated */
    int line;               /* for messages, 0 when built in code */
    int want_classes;       /* > 0: the last layer must output this many values */
    char source[256];
};

/* "source:line" or "source" */
static const char *where(const nn_builder *b, char *buf, size_t cap) {
    if (b->line > 0) snprintf(buf, cap, "%s:%d", b->source, b->line);
    else snprintf(buf, cap, "%s", b->source);
    return buf;
}

void nn_builder_free(nn_builder *b) {
    if (!b) return;
    ts_model_free(b->m);
    free(b);
}

void nn_builder_set_line(nn_builder *b, int line) { b->line = line; }
int nn_builder_layer_count(const nn_builder *b) { return b->m->nlayers; }
const layer *nn_builder_layer(const nn_builder *b, int index) { return &b->m->layers[index]; }

int nn_builder_find(const nn_builder *b, const char *name) {
    for (int i = b->m->nlayers - 1; i >= 0; i--)
        if (!strcmp(b->m->layers[i].name, name)) return i;
    return -1;
}

static int valid_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= LAYER_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i])) return 0;
    return 1;
}

/* Appends layer l (kind, name, inputs and attributes set) and infers its shape. */
static ts_status push_layer(nn_builder *b, const layer *proto, nn_added *out) {
    ts_model *m = b->m;
    char at[300];
    if (m->nlayers == ARCH_MAX_LAYERS)
        return ts_fail(b->ctx, TS_EFORMAT, "%s: too many layers (at most %d)", where(b, at, sizeof at), ARCH_MAX_LAYERS);
    if (m->nlayers == b->cap) {
        int ncap = b->cap ? b->cap * 2 : 32;
        layer *nl = realloc(m->layers, (size_t)ncap * sizeof *nl);
        if (!nl) return ts_fail(b->ctx, TS_ENOMEM, "%s: out of memory for layers", b->source);
        m->layers = nl;
        b->cap = ncap;
    }
    layer *l = &m->layers[m->nlayers];
    *l = *proto;
    l->line = b->line;
    l->weight = l->bias_t = l->running_mean = l->running_var = l->mask = l->konst = -1;
    const int tensors_before = m->ntensors;
    const size_t params_before = m->nparams, buffers_before = m->nbuffers;
    m->nlayers++;
    m->parsing = b->source;
    ts_status st = LAYER_OPS[l->kind].infer(b->ctx, m, l, b->source);
    m->parsing = NULL;
    if (!st) {
        int64_t numel = shape_numel(&l->out);
        if (numel < 1 || numel > ARCH_MAX_ELEMENTS) {
            char count[32];
            snprintf(count, sizeof count, "%lld", (long long)numel);
            st = ts_fail(b->ctx, TS_ESHAPE, "%s: %s '%s' would output %s elements per sample (at most %lld)",
                         where(b, at, sizeof at), LAYER_OPS[l->kind].name, l->name, numel < 0 ? "too many" : count,
                         (long long)ARCH_MAX_ELEMENTS);
        }
    }
    if (st) {
        m->nlayers--;
        m->ntensors = tensors_before; /* the failed layer's tensors go with it */
        m->nparams = params_before;
        m->nbuffers = buffers_before;
        return st;
    }
    if (out) {
        out->layer = m->nlayers - 1;
        out->out = l->out;
        out->weight = l->weight;
        out->bias = l->bias_t;
        out->running_mean = l->running_mean;
        out->running_var = l->running_var;
        out->mask = l->mask;
        out->konst = l->konst;
    }
    return TS_OK;
}

ts_status nn_builder_create(ts_ctx *ctx, const char *source, int line, const ts_shape *input, int classes,
                            const char *input_name, nn_builder **out) {
    *out = NULL;
    nn_builder *b = calloc(1, sizeof *b);
    if (!b || !(b->m = model_new_empty())) {
        free(b);
        return ts_fail(ctx, TS_ENOMEM, "out of memory for a model");
    }
    b->ctx = ctx;
    b->line = line;
    snprintf(b->source, sizeof b->source, "%s", source ? source : "<model>");
    int ok = input->ndim >= 1 && input->ndim <= TS_MAX_DIMS;
    for (int d = 0; ok && d < input->ndim; d++) ok = input->dims[d] >= 1 && input->dims[d] <= (1L << 24);
    if (!ok || classes < 0 || classes > (1 << 24)) {
        char s[96];
        ts_status st = ts_fail(ctx, TS_ESHAPE, "%s: input shape %s or classes %d is invalid", b->source,
                               shape_text(input, s, sizeof s), classes);
        nn_builder_free(b);
        return st;
    }
    b->m->input = *input;
    b->m->classes = classes;
    b->want_classes = classes;
    layer in;
    memset(&in, 0, sizeof in);
    in.kind = LAYER_INPUT;
    nn_attrs_default(LAYER_INPUT, &in.attrs);
    in.tshape = *input;
    in.features = classes;
    const char *name = input_name ? input_name : "input0"; /* kind plus position, as every default name */
    if (!valid_name(name)) {
        ts_status st = ts_fail(ctx, TS_EFORMAT, "%s: input: name=%s is invalid (expected letters, digits, '.', '_' "
                               "or '-', under 64 characters)", b->source, name);
        nn_builder_free(b);
        return st;
    }
    snprintf(in.name, sizeof in.name, "%s", name);
    ts_status st = push_layer(b, &in, NULL);
    if (st) {
        nn_builder_free(b);
        return st;
    }
    *out = b;
    return TS_OK;
}

ts_status nn_builder_set_free_hw(nn_builder *b) {
    ts_model *m = b->m;
    char at[300];
    if (m->nlayers != 1)
        return ts_fail(b->ctx, TS_EINVAL, "%s: free=hw is set on the input before any layer", where(b, at, sizeof at));
    if (m->input.ndim != 3)
        return ts_fail(b->ctx, TS_ESHAPE, "%s: input: free=hw needs an image input (shape=CxHxW), not %d axes",
                       where(b, at, sizeof at), m->input.ndim);
    m->layers[0].free_hw = 1;
    b->want_classes = 0; /* the output's size may follow the input's */
    return TS_OK;
}

ts_status nn_add_at(nn_builder *b, layer_kind kind, const char *name, const int *inputs, int n,
                    const layer_attrs *attrs, nn_added *out) {
    ts_model *m = b->m;
    char at[300];
    if ((int)kind < 0 || kind >= LAYER_KIND_COUNT)
        return ts_fail(b->ctx, TS_EINVAL, "%s: unknown layer kind %d", where(b, at, sizeof at), (int)kind);
    const char *kn = LAYER_OPS[kind].name;
    if (kind == LAYER_INPUT)
        return ts_fail(b->ctx, TS_EFORMAT, "%s: only one input layer is allowed, and it comes first",
                       where(b, at, sizeof at));
    layer l;
    memset(&l, 0, sizeof l);
    l.kind = kind;
    if (name) {
        if (!valid_name(name))
            return ts_fail(b->ctx, TS_EFORMAT, "%s: %s: name=%s is invalid (expected letters, digits, '.', '_' or "
                           "'-', under 64 characters)", where(b, at, sizeof at), kn, name);
        if (nn_builder_find(b, name) >= 0)
            return ts_fail(b->ctx, TS_EFORMAT, "%s: layer name '%s' is already used", where(b, at, sizeof at), name);
        snprintf(l.name, sizeof l.name, "%s", name);
    } else {
        /* default name: kind plus position, unique because position is */
        snprintf(l.name, sizeof l.name, "%s%d", kn, m->nlayers);
        if (nn_builder_find(b, l.name) >= 0)
            return ts_fail(b->ctx, TS_EFORMAT, "%s: default name '%s' clashes with an earlier layer; give name=",
                           where(b, at, sizeof at), l.name);
    }
    if (n == 0) {
        l.inputs[l.ninputs++] = m->nlayers - 1;
    } else {
        if (n < 0 || n > LAYER_MAX_INPUTS)
            return ts_fail(b->ctx, TS_EFORMAT, "%s: %s: more than %d inputs", where(b, at, sizeof at), kn,
                           LAYER_MAX_INPUTS);
        for (int k = 0; k < n; k++) {
            if (inputs[k] < 0 || inputs[k] >= m->nlayers)
                return ts_fail(b->ctx, TS_EINVAL, "%s: %s '%s': input %d is not an earlier layer",
                               where(b, at, sizeof at), kn, l.name, inputs[k]);
            l.inputs[l.ninputs++] = inputs[k];
        }
    }
    if (attrs) l.attrs = *attrs;
    else nn_attrs_default(kind, &l.attrs);
    /* pool strides left at 0 are the kernel (PyTorch); average pooling has no dilation */
    for (int i = 0; i < LAYER_OPS[kind].nattrs; i++) {
        const attr_spec *sp = &LAYER_OPS[kind].attrs[i];
        if ((sp->flags & ATTR_KERNEL_DEFAULT) && *attr_int_field(sp, &l.attrs, 0) == 0) {
            *attr_int_field(sp, &l.attrs, 0) = l.kh;
            *attr_int_field(sp, &l.attrs, 1) = l.kw;
        }
    }
    if (kind == LAYER_AVGPOOL) l.dh = l.dw = 1;
    char what[400];
    snprintf(what, sizeof what, "%s: %s '%s'", where(b, at, sizeof at), kn, l.name);
    ts_status st = attrs_check(b->ctx, kind, &l.attrs, what);
    if (st) return st;
    if (kind == LAYER_BINARY && l.const_first && l.tshape.ndim == 0)
        return ts_fail(b->ctx, TS_EFORMAT, "%s: binary: const_first=1 needs const=AxB", where(b, at, sizeof at));
    return push_layer(b, &l, out);
}

ts_status nn_add(nn_builder *b, layer_kind kind, const char *name, const char *const *inputs,
                 const layer_attrs *attrs, nn_added *out) {
    int idx[LAYER_MAX_INPUTS], n = 0;
    char at[300];
    for (int k = 0; inputs && inputs[k]; k++) {
        if (n == LAYER_MAX_INPUTS)
            return ts_fail(b->ctx, TS_EFORMAT, "%s: %s: more than %d inputs", where(b, at, sizeof at),
                           (int)kind >= 0 && kind < LAYER_KIND_COUNT ? LAYER_OPS[kind].name : "?", LAYER_MAX_INPUTS);
        int i = nn_builder_find(b, inputs[k]);
        if (i < 0)
            return ts_fail(b->ctx, TS_EFORMAT, "%s: %s: input '%s' is not an earlier layer", where(b, at, sizeof at),
                           (int)kind >= 0 && kind < LAYER_KIND_COUNT ? LAYER_OPS[kind].name : "?", inputs[k]);
        idx[n++] = i;
    }
    return nn_add_at(b, kind, name, idx, n, attrs, out);
}

/* The whole graph's checks, then the model without storage. */
ts_status nn_builder_finish_unallocated(nn_builder *b, ts_model **out) {
    *out = NULL;
    ts_model *m = b->m;
    ts_status st = TS_OK;
    if (m->nlayers < 2) {
        st = ts_fail(b->ctx, TS_EFORMAT, "%s: no layers after input (expected at least one layer)", b->source);
        goto done;
    }
    /* The output is usually a vector of class scores; an imported model may output
     * any shape, and then `classes` counts its values per sample. */
    const layer *last = &m->layers[m->nlayers - 1];
    int64_t nout = shape_numel(&last->out);
    char at[300];
    b->line = last->line;
    if (nout > (1 << 24)) {
        st = ts_fail(b->ctx, TS_ESHAPE, "%s: the last layer '%s' outputs %lld values per sample (at most %d)",
                     where(b, at, sizeof at), last->name, (long long)nout, 1 << 24);
        goto done;
    }
    if (b->want_classes && nout != b->want_classes) {
        st = ts_fail(b->ctx, TS_ESHAPE, "%s: the last layer '%s' outputs %lld values but input declares classes=%d",
                     where(b, at, sizeof at), last->name, (long long)nout, b->want_classes);
        goto done;
    }
    m->classes = (int)nout;
    if ((st = exit_check(b->ctx, m, where(b, at, sizeof at)))) goto done;
    if (m->layers[0].free_hw && (st = free_hw_check(b->ctx, m, b->source))) goto done;
    if ((st = model_order_tensors(b->ctx, m))) goto done;
    *out = m;
    b->m = NULL;
done:
    nn_builder_free(b);
    return st;
}

ts_status nn_builder_finish(nn_builder *b, uint64_t seed, const char *text, ts_model **out) {
    ts_ctx *ctx = b->ctx;
    ts_model *m;
    ts_status st = nn_builder_finish_unallocated(b, &m);
    if (st) return st;
    m->arch_text = text ? strdup(text) : arch_write_model(m);
    if (!m->arch_text) st = ts_fail(ctx, TS_ENOMEM, "out of memory for the architecture text");
    if (!st) st = model_alloc_tensors(ctx, m);
    if (st) {
        ts_model_free(m);
        return st;
    }
    model_init_params(m, seed);
    *out = m;
    return TS_OK;
}
