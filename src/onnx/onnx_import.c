/* ONNX -> tessera model. The graph is walked in dependency order; each node's
 * converter (onnx_ops.c) emits architecture-text layers and queues their tensors.
 * The text is then parsed like any architecture, so an imported model is an
 * ordinary model, and the parser re-checks every shape the importer computed. */
#include "onnx_import.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_onnx_import_config_default(ts_onnx_import_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->batch_axis = 1;
}

/* ------------------------------------------------------------ messages */

static const char *node_type(const Onnx__NodeProto *n) { return n && n->op_type ? n->op_type : "?"; }

const char *node_base(const Onnx__NodeProto *n) {
    if (n->name && *n->name) return n->name;
    if (n->n_output && n->output[0] && *n->output[0]) return n->output[0];
    return n->op_type ? n->op_type : "node";
}

static ts_status node_fail(importer *im, ts_status st, const char *fmt, va_list ap) {
    char why[512];
    vsnprintf(why, sizeof why, fmt, ap);
    const Onnx__NodeProto *n = im->node;
    if (!n) return ts_fail(im->ctx, st, "%s: %s", im->file, why);
    return ts_fail(im->ctx, st, "%s: %s node '%s' (opset %d): %s", im->file, node_type(n), node_base(n), im->opset,
                   why);
}

ts_status unsupported(importer *im, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ts_status st = node_fail(im, TS_EUNSUPPORTED, fmt, ap);
    va_end(ap);
    return st;
}

ts_status bad_node(importer *im, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ts_status st = node_fail(im, TS_EFORMAT, fmt, ap);
    va_end(ap);
    return st;
}

/* ------------------------------------------------------------ values */

static value *find_value(importer *im, const char *name) {
    for (int i = im->nvalues - 1; i >= 0; i--)
        if (!strcmp(im->values[i]->name, name)) return im->values[i];
    return NULL;
}

static value *new_value(importer *im, const char *name) {
    if (find_value(im, name)) {
        bad_node(im, "value '%s' is produced twice (ONNX graphs are single-assignment)", name);
        return NULL;
    }
    if (im->nvalues == im->capvalues) {
        int cap = im->capvalues ? 2 * im->capvalues : 64;
        value **nv = realloc(im->values, (size_t)cap * sizeof *nv);
        if (!nv) {
            ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory for values", im->file);
            return NULL;
        }
        im->values = nv;
        im->capvalues = cap;
    }
    value *v = calloc(1, sizeof *v);
    if (!v) {
        ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory for values", im->file);
        return NULL;
    }
    im->values[im->nvalues++] = v;
    v->name = name;
    v->layer = -1;
    return v;
}

/* a named constant; takes t (freed on failure) */
static ts_status new_const_value(importer *im, const char *name, ts_onnx_tensor *t) {
    value *v = new_value(im, name);
    if (!v) {
        ts_onnx_tensor_free(t);
        return ts_ctx_status(im->ctx);
    }
    v->kind = VALUE_CONST;
    v->c = t;
    v->rank = t->rank;
    memcpy(v->dims, t->dims, sizeof v->dims);
    return TS_OK;
}

value *node_input(importer *im, const Onnx__NodeProto *n, int k) {
    if (k >= (int)n->n_input || !n->input[k] || !*n->input[k]) return NULL;
    return find_value(im, n->input[k]);
}

value *node_output(importer *im, const Onnx__NodeProto *n, int k) {
    if (k >= (int)n->n_output || !n->output[k] || !*n->output[k]) return NULL;
    return find_value(im, n->output[k]);
}

ts_status require_input(importer *im, const Onnx__NodeProto *n, int k, value **v) {
    *v = node_input(im, n, k);
    if (!*v) return bad_node(im, "input %d is missing", k);
    return TS_OK;
}

ts_status require_const(importer *im, const Onnx__NodeProto *n, int k, const char *what, value **v) {
    ts_status st = require_input(im, n, k, v);
    if (st) return st;
    if ((*v)->kind != VALUE_CONST)
        return unsupported(im, "its %s ('%s') must be a constant (an initializer or a Constant node)", what,
                           (*v)->name);
    return TS_OK;
}

static ts_status define_out(importer *im, const Onnx__NodeProto *n, int k, value **v) {
    *v = NULL;
    if (k >= (int)n->n_output || !n->output[k] || !*n->output[k]) return TS_OK; /* optional output not wanted */
    *v = new_value(im, n->output[k]);
    return *v ? TS_OK : ts_ctx_status(im->ctx);
}

ts_status define_const(importer *im, const Onnx__NodeProto *n, int k, ts_onnx_tensor *t) {
    value *v;
    ts_status st = define_out(im, n, k, &v);
    if (st || !v) {
        ts_onnx_tensor_free(t);
        return st;
    }
    v->kind = VALUE_CONST;
    v->c = t;
    v->rank = t->rank;
    memcpy(v->dims, t->dims, sizeof v->dims);
    return TS_OK;
}

ts_status define_layer_bax(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims,
                           int bax) {
    value *v;
    ts_status st = define_out(im, n, k, &v);
    if (st || !v) return st;
    if (rank > ONNX_MAX_RANK) return unsupported(im, "output rank %d (at most %d)", rank, ONNX_MAX_RANK);
    v->kind = VALUE_LAYER;
    v->layer = layer;
    v->rank = rank;
    memcpy(v->dims, dims, (size_t)rank * sizeof *dims);
    v->bax = im->off ? bax : 0;
    if (im->off) v->dims[v->bax] = -1;
    return TS_OK;
}

ts_status define_layer(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims) {
    return define_layer_bax(im, n, k, layer, rank, dims, 0);
}

ts_status define_layer_as(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims,
                          const value *like) {
    ts_status st = define_layer_bax(im, n, k, layer, rank, dims, like->bax);
    value *v = st ? NULL : node_output(im, n, k);
    if (v && im->off) {
        v->fold = like->fold;
        v->bsub = like->bsub;
    }
    return st;
}

int onnx_batch_marker(int64_t d, int64_t *k) {
    if (d >= 0 || d % ONNX_BATCH_DIM) return 0;
    *k = d / ONNX_BATCH_DIM;
    return 1;
}

ts_status define_like(importer *im, const Onnx__NodeProto *n, int k, const value *src, int rank, const int64_t *dims,
                      int bax) {
    if (src->kind == VALUE_LAYER) {
        ts_status st = define_layer_bax(im, n, k, src->layer, rank, dims, bax);
        value *v = st ? NULL : node_output(im, n, k);
        if (v) {
            v->ints = src->ints;
            v->fold = src->fold;
            v->bsub = src->bsub;
        }
        return st;
    }
    value *v;
    ts_status st = define_out(im, n, k, &v);
    if (st || !v) return st;
    if (rank > ONNX_MAX_RANK) return unsupported(im, "output rank %d (at most %d)", rank, ONNX_MAX_RANK);
    v->kind = src->kind;
    v->layer = src->layer;
    v->stage = src->stage;
    v->rank = rank;
    v->bax = bax;
    memcpy(v->dims, dims, (size_t)rank * sizeof *dims);
    return TS_OK;
}

ts_status define_alias(importer *im, const Onnx__NodeProto *n, int k, const value *src) {
    if (src->kind == VALUE_CONST) {
        ts_onnx_tensor *t = onnx_tensor_copy(src->c);
        if (!t) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file);
        return define_const(im, n, k, t);
    }
    return define_like(im, n, k, src, src->rank, src->dims, src->bax);
}

value batch_first_view(const value *v) {
    value w = *v;
    if (v->bax == 0) return w;
    w.dims[0] = v->dims[v->bax];
    for (int a = 0, j = 1; a < v->rank; a++)
        if (a != v->bax) w.dims[j++] = v->dims[a];
    w.bax = 0;
    return w;
}

int batch_first_axis(const value *v, int a) { return a == v->bax ? 0 : a < v->bax ? a + 1 : a; }

int sample_axis_of(const importer *im, const value *v, int a) {
    if (!im->off) return a;
    if (a == v->bax) return -1;
    return v->fold || a < v->bax ? a : a - 1;
}

int value_read(importer *im, const char *name) {
    const Onnx__GraphProto *g = im->graph;
    if (!g || !name || !*name) return 0;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_input; k++)
            if (g->node[i]->input[k] && !strcmp(g->node[i]->input[k], name)) return 1;
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name && !strcmp(g->output[i]->name, name)) return 1;
    return 0;
}

/* ------------------------------------------------------------ attributes */

const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name)) return n->attribute[i];
    return NULL;
}

int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : def;
}

float attr_float(const Onnx__NodeProto *n, const char *name, float def) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : def;
}

int attr_ints(const Onnx__NodeProto *n, const char *name, const int64_t **vals) {
    const Onnx__AttributeProto *a = attr(n, name);
    *vals = a ? a->ints : NULL;
    return a ? (int)(a->n_ints > 64 ? 64 : a->n_ints) : 0;
}

const char *attr_string(const Onnx__NodeProto *n, const char *name, const char *def, char *buf, size_t cap) {
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a || !a->has_s) return def;
    size_t len = a->s.len < cap - 1 ? a->s.len : cap - 1;
    memcpy(buf, a->s.data, len);
    buf[len] = '\0';
    return buf;
}

/* ------------------------------------------------------------ shapes */

int64_t shape_numel_dims(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= dims[k];
    return n;
}

ts_status value_sample_shape(importer *im, const value *v, ts_shape *s) {
    memset(s, 0, sizeof *s);
    const int folded = im->off && v->fold;
    int r = v->rank - (folded ? 0 : im->off);
    if (r < 0) return unsupported(im, "value '%s' has no batch axis", v->name);
    if (r > TS_MAX_DIMS)
        return unsupported(im, "value '%s' has %d dimensions per sample (at most %d)", v->name, r, TS_MAX_DIMS);
    for (int a = 0, k = 0; a < v->rank; a++) { /* every axis but the batch's, in order (folded: its share) */
        if (im->off && a == v->bax) {
            if (folded) s->dims[k++] = v->bsub;
            continue;
        }
        if (v->dims[a] < 1) return unsupported(im, "value '%s' has an empty or unknown dimension (axis %d)", v->name, a);
        s->dims[k++] = v->dims[a];
    }
    s->ndim = r;
    if (r == 0) {
        s->ndim = 1;
        s->dims[0] = 1;
    }
    return TS_OK;
}

static int shape_equal(const ts_shape *a, const ts_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int k = 0; k < a->ndim; k++)
        if (a->dims[k] != b->dims[k]) return 0;
    return 1;
}

void onnx_shape_text(const ts_shape *s, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < s->ndim && len < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", k ? "x" : "", (long long)s->dims[k]);
}

ts_status sample_axis(importer *im, int64_t axis, int rank, const char *what, int *out) {
    if (axis < -rank || axis >= rank) return bad_node(im, "%s %lld is out of range for rank %d", what, (long long)axis, rank);
    if (axis < 0) axis += rank;
    if (axis < im->off) return unsupported(im, "%s %lld is the batch axis", what, (long long)axis);
    *out = (int)axis - im->off;
    return TS_OK;
}

float *const_floats(importer *im, const value *v) {
    int64_t n = v->c->numel;
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (!f) {
        ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) f[i] = v->c->is_float ? v->c->f[i] : (float)v->c->i[i];
    return f;
}

/* ------------------------------------------------------------ emission */

static int layer_index(importer *im, const char *name) {
    for (int i = 0; i < im->nlayers; i++)
        if (!strcmp(im->layers[i]->name, name)) return i;
    return -1;
}

ts_status emit_layer(importer *im, layer_kind kind, const char *base, const char *const *ins, int nins,
                     const layer_attrs *attrs, const ts_shape *out, int *li) {
    /* names: letters, digits, '.', '_', '-'; unique; short enough for tensor names */
    char name[LAYER_NAME_MAX];
    size_t len = 0;
    for (const char *p = base; *p && len < 40; p++)
        name[len++] = isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-' ? *p : '_';
    if (len == 0) name[len++] = 'n';
    name[len] = '\0';
    if (!strcmp(name, "input") && im->nlayers > 0) name[0] = 'I';
    char unique[LAYER_NAME_MAX];
    snprintf(unique, sizeof unique, "%.40s", name);
    for (int k = 2; layer_index(im, unique) >= 0; k++) snprintf(unique, sizeof unique, "%.40s_%d", name, k);
    if (im->nlayers == im->caplayers) {
        int cap = im->caplayers ? 2 * im->caplayers : 64;
        emitted **nl = realloc(im->layers, (size_t)cap * sizeof *nl);
        if (!nl) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory for layers", im->file);
        im->layers = nl;
        im->caplayers = cap;
    }
    emitted *e = calloc(1, sizeof *e);
    if (!e) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory for layers", im->file);
    ts_status st;
    if (kind == LAYER_INPUT) {
        if (im->b) st = ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: more than one graph input is computed", im->file);
        else st = nn_builder_create(im->ctx, im->file, 0, out, 0, unique, &im->b);
        e->t.layer = 0;
        e->t.out = *out;
    } else {
        int idx[LAYER_MAX_INPUTS];
        if (nins > LAYER_MAX_INPUTS) st = unsupported(im, "more than %d inputs", LAYER_MAX_INPUTS);
        else if (!im->b) st = bad_node(im, "internal: a layer before the input");
        else st = TS_OK;
        for (int k = 0; k < nins && !st; k++)
            if ((idx[k] = layer_index(im, ins[k])) < 0) st = bad_node(im, "internal: no layer '%s'", ins[k]);
        if (!st) st = nn_add_at(im->b, kind, unique, idx, nins, attrs, &e->t);
        /* the converters predict the shape they define their values with; the builder
         * infers it: they must agree */
        if (!st && out && !shape_equal(out, &e->t.out)) {
            char a[96], b[96];
            onnx_shape_text(&e->t.out, a, sizeof a);
            onnx_shape_text(out, b, sizeof b);
            st = bad_node(im, "internal: layer '%s' outputs %s, the converter expected %s", unique, a, b);
        }
    }
    if (st) {
        free(e);
        return st;
    }
    im->layers[im->nlayers] = e;
    memcpy(e->name, unique, sizeof unique);
    e->out = e->t.out;
    *li = im->nlayers++;
    return TS_OK;
}

ts_status add_fill(importer *im, int tensor, const float *data, int64_t numel) {
    if (im->nfills == im->capfills) {
        int cap = im->capfills ? 2 * im->capfills : 64;
        fill *nf = realloc(im->fills, (size_t)cap * sizeof *nf);
        if (!nf) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file);
        im->fills = nf;
        im->capfills = cap;
    }
    fill *f = &im->fills[im->nfills];
    f->tensor = tensor;
    f->numel = numel;
    f->data = malloc((size_t)(numel ? numel : 1) * sizeof(float));
    if (!f->data) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory for tensor %d", im->file, tensor);
    memcpy(f->data, data, (size_t)numel * sizeof(float));
    im->nfills++;
    return TS_OK;
}

ts_status materialize_as(importer *im, const value *v, const ts_shape *want, const char **layer_name) {
    if (v->kind != VALUE_LAYER)
        return unsupported(im, "input '%s' is a constant where tessera needs a computed value", v->name);
    emitted *e = im->layers[v->layer];
    if (shape_equal(&e->out, want)) {
        *layer_name = e->name;
        return TS_OK;
    }
    if (ts_shape_numel(&e->out) != ts_shape_numel(want))
        return bad_node(im, "internal: value '%s' cannot be viewed with a different element count", v->name);
    layer_attrs a;
    nn_attrs_default(LAYER_RESHAPE, &a);
    a.tshape = *want;
    char base[LAYER_NAME_MAX];
    snprintf(base, sizeof base, "%.40s_as", e->name);
    const char *ins[1] = {e->name};
    int li;
    ts_status st = emit_layer(im, LAYER_RESHAPE, base, ins, 1, &a, want, &li);
    if (st) return st;
    *layer_name = im->layers[li]->name;
    return TS_OK;
}

ts_status materialize(importer *im, const value *v, const char **layer_name) {
    if (v->kind != VALUE_LAYER)
        return unsupported(im, "input '%s' is a constant where tessera needs a computed value", v->name);
    ts_shape want;
    ts_status st = value_sample_shape(im, v, &want);
    if (st) return st;
    return materialize_as(im, v, &want, layer_name);
}

ts_status define_uncomputed(importer *im, const Onnx__NodeProto *n, int k) {
    value *v;
    ts_status st = define_out(im, n, k, &v);
    if (!st && v) v->kind = VALUE_POISON;
    return st;
}

int output_used(importer *im, const Onnx__NodeProto *n, int k) {
    (void)im;
    return k < (int)n->n_output && n->output[k] && *n->output[k];
}

/* ------------------------------------------------------------ the walk */

static ts_status report_add(importer *im, const char *line) {
    ts_strbuf_printf(&im->report, "%s\n", line);
    return im->report.failed ? ts_fail(im->ctx, TS_ENOMEM, "out of memory") : TS_OK;
}

static void importer_free(importer *im) {
    for (int i = 0; i < im->nvalues; i++) {
        ts_onnx_tensor_free(im->values[i]->c);
        free(im->values[i]);
    }
    free(im->values);
    for (int i = 0; i < im->nfills; i++) free(im->fills[i].data);
    free(im->fills);
    for (int i = 0; i < im->nlayers; i++) free(im->layers[i]);
    free(im->layers);
    nn_builder_free(im->b);
}

/* check mode: value `name` cannot be computed (kind VALUE_FAILED or VALUE_UNKNOWN) */
static ts_status mark_failed(importer *im, const char *name, value_kind kind) {
    value *v = find_value(im, name);
    if (!v && !(v = new_value(im, name))) return ts_ctx_status(im->ctx);
    ts_onnx_tensor_free(v->c);
    v->c = NULL;
    v->kind = kind;
    return TS_OK;
}

static int is_initializer(const Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name)) return 1;
    return 0;
}

static ts_status read_opset(importer *im, const Onnx__ModelProto *mp) {
    im->opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) im->opset = o->has_version ? (int)o->version : -1;
    }
    if (im->opset < 0) {
        if (mp->n_opset_import == 0) return ts_fail(im->ctx, TS_EFORMAT, "%s: no opset_import (not an ONNX model?)", im->file);
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: no ai.onnx opset is imported", im->file);
    }
    /* 9 to 17 are the target; older graphs import where their ops mean the same */
    if (im->opset < 1 || im->opset > 17)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: opset %d is not supported (opsets 1 to 17 are)", im->file,
                       im->opset);
    return TS_OK;
}

/* The model input: its element type, rank and sizes (fixed, or given by the
 * caller's input shape) become the input layer. */
static ts_status define_model_input(importer *im, const Onnx__ValueInfoProto *vi) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph input '%s' is not a tensor", im->file, vi->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    /* integers are token ids (nn.Embedding's input): the model takes them as floats */
    const int ids = tt->has_elem_type && (tt->elem_type == ONNX_INT64 || tt->elem_type == ONNX_INT32);
    if (tt->has_elem_type && tt->elem_type != ONNX_FLOAT && !ids)
        return ts_fail(im->ctx, TS_EUNSUPPORTED,
                       "%s: graph input '%s' is %s; tessera models take float32 input (or int64/int32 token ids)",
                       im->file, vi->name, onnx_dtype_name(tt->elem_type));
    if (!tt->shape) return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph input '%s' has no shape", im->file, vi->name);
    int rank = (int)tt->shape->n_dim;
    const int bax = im->off ? im->cfg->batch_axis - 1 : 0;
    if (rank < im->off || rank > ONNX_MAX_RANK || rank - im->off > TS_MAX_DIMS)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph input '%s' has rank %d (1 to %d with a batch axis)",
                       im->file, vi->name, rank, TS_MAX_DIMS + 1);
    if (im->off && bax >= rank)
        return ts_fail(im->ctx, TS_EINVAL, "%s: the batch axis given (%d) is not an axis of graph input '%s' (rank %d)",
                       im->file, bax, vi->name, rank);
    int64_t dims[ONNX_MAX_RANK];
    im->batch0 = -1;
    const ts_shape *given = &im->cfg->input_shape;
    if (given->ndim && given->ndim != rank - im->off)
        return ts_fail(im->ctx, TS_EINVAL, "%s: the input shape given has %d axes; graph input '%s' has %d%s",
                       im->file, given->ndim, vi->name, rank - im->off, im->off ? " besides the batch axis" : "");
    /* an image whose height and width are both symbolic (and not given): a free-size
     * model, imported at im->free_hw */
    int any_size = !given->ndim && rank - im->off == 3 && bax == 0;
    for (int k = rank - 2; any_size && k < rank; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        any_size = !(d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0);
    }
    for (int k = 0; k < rank; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        int known = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0;
        if (any_size && k >= rank - 2) {
            dims[k] = im->free_hw[k - (rank - 2)];
            continue;
        }
        if (im->off && k == bax) {
            im->batch0 = known ? d->dim_value : -1;
            dims[k] = -1;
            continue;
        }
        const int64_t want = given->ndim ? given->dims[im->off && k > bax ? k - 1 : k] : 0;
        if (want > 0 && known && want != d->dim_value)
            return ts_fail(im->ctx, TS_EINVAL, "%s: graph input '%s' axis %d is %lld; the input shape given says %lld",
                           im->file, vi->name, k, (long long)d->dim_value, (long long)want);
        if (want > 0 && !known) {
            dims[k] = want;
            continue;
        }
        if (!known)
            return ts_fail(im->ctx, TS_EUNSUPPORTED,
                           "%s: graph input '%s' axis %d is %s; tessera needs a fixed sample shape", im->file,
                           vi->name, k,
                           d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? "symbolic" : "unknown");
        dims[k] = d->dim_value;
    }
    value v0 = {.name = vi->name, .kind = VALUE_LAYER, .rank = rank, .bax = bax, .ints = ids};
    memcpy(v0.dims, dims, (size_t)rank * sizeof *dims);
    ts_shape s;
    ts_status st = value_sample_shape(im, &v0, &s);
    if (st) return st;
    int li;
    if ((st = emit_layer(im, LAYER_INPUT, "input", NULL, 0, NULL, &s, &li))) return st;
    if (any_size && (st = nn_builder_set_free_hw(im->b))) return st;
    im->any_size = any_size;
    value *v = new_value(im, vi->name);
    if (!v) return ts_ctx_status(im->ctx);
    *v = v0;
    v->layer = li;
    return TS_OK;
}

/* a further graph input: a constant the caller bound */
static ts_status define_bound_input(importer *im, const Onnx__ValueInfoProto *vi, int *bound) {
    if (*bound >= im->cfg->nbind || !im->cfg->bind || !im->cfg->bind[*bound])
        return ts_fail(im->ctx, TS_EUNSUPPORTED,
                       "%s: graph input '%s' is not an initializer: a tessera model has one input "
                       "(bind the others to constants)",
                       im->file, vi->name);
    ts_onnx_tensor *t = onnx_tensor_copy(im->cfg->bind[(*bound)++]);
    if (!t) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file);
    return new_const_value(im, vi->name, t);
}

/* The graph's inputs: the first that is not an initializer is the model input, the
 * others are bound constants. In check mode a refused input is reported, and what
 * reads it gets the shape-free checks. */
static ts_status define_inputs(importer *im, const Onnx__GraphProto *g) {
    int seen = 0, bound = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (!vi->name || !*vi->name) return ts_fail(im->ctx, TS_EFORMAT, "%s: graph input %zu has no name", im->file, i);
        if (is_initializer(g, vi->name)) continue;
        ts_status st = seen++ ? define_bound_input(im, vi, &bound) : define_model_input(im, vi);
        if (st == TS_EUNSUPPORTED && im->checking) {
            if ((st = report_add(im, ts_ctx_error(im->ctx)))) return st;
            ts_ctx_clear_error(im->ctx);
            st = mark_failed(im, vi->name, VALUE_FAILED);
        }
        if (st) return st;
    }
    if (seen == 0) return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: the graph has no input besides initializers", im->file);
    if (bound < im->cfg->nbind)
        return ts_fail(im->ctx, TS_EINVAL, "%s: %d values bound but the graph has only %d further inputs", im->file,
                       im->cfg->nbind, bound);
    return TS_OK;
}

static ts_status define_initializers(importer *im, const Onnx__GraphProto *g) {
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *p = g->initializer[i];
        if (!p->name || !*p->name) return ts_fail(im->ctx, TS_EFORMAT, "%s: initializer %zu has no name", im->file, i);
        char what[256];
        snprintf(what, sizeof what, "%s: initializer '%.160s'", im->file, p->name);
        ts_onnx_tensor *t;
        ts_status st = onnx_tensor_from_proto(im->ctx, p, what, &t);
        if (!st) st = new_const_value(im, p->name, t);
        if (st) return st;
    }
    return TS_OK;
}

static int produced_by_some_node(const Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_output; k++)
            if (g->node[i]->output[k] && !strcmp(g->node[i]->output[k], name)) return 1;
    return 0;
}

static int op_in(const char *op, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(op, *list)) return 1;
    return 0;
}

/* The values only some ops may read: a layer whose batch axis is not first (around
 * recurrent nodes), integer token ids, zeros as large as the batch and the stages of
 * the sequence lengths (onnx_import.h); any other op is refused on them. */
static ts_status special_inputs(importer *im, const Onnx__NodeProto *n) {
    static const char *const MOVED[] = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Gather", "Slice", "Concat",
                                        "Shape", "RNN", "LSTM", "GRU", "Identity", "Relu", "Sigmoid", "Tanh",
                                        "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Clip", "Dropout",
                                        "Add", "Sub", "Mul", "Div", "MatMul", "Softmax", "LogSoftmax", "ReduceMean",
                                        "LayerNormalization", "Pow", "Sqrt", "Erf", NULL};
    /* the batch folded with another axis (attention's heads): these express it per sample */
    static const char *const FOLDED[] = {"Transpose", "Reshape", "Shape", "Identity", "Dropout", "Relu", "Sigmoid",
                                         "Tanh", "Add", "Sub", "Mul", "Div", "MatMul", "Gemm", "Softmax",
                                         "LogSoftmax", NULL};
    static const char *const IDS[] = {"Gather", "Shape", "Identity", "Cast", NULL};
    static const char *const ZEROS[] = {"Slice", "RNN", "LSTM", "GRU", "Identity", NULL};
    static const char *const LENGTHS[] = {"RNN", "LSTM", "GRU", "Identity", NULL};
    const char *op = n->op_type;
    for (size_t k = 0; k < n->n_input; k++) {
        value *v = node_input(im, n, (int)k);
        if (!v) continue;
        if (v->kind == VALUE_LAYER && v->bax && !op_in(op, MOVED))
            return unsupported(im, "input '%s' has its batch axis at axis %d (after a Transpose that moved it); "
                                   "this op needs it first", v->name, v->bax);
        if (v->kind == VALUE_LAYER && v->fold && !op_in(op, FOLDED))
            return unsupported(im, "input '%s' has the batch folded with another axis (axis %d, as %s factor of %lld "
                                   "per sample); this op needs the batch axis by itself", v->name, v->bax,
                               v->fold == FOLD_OUTER ? "the outer" : "the inner", (long long)v->bsub);
        if (v->kind == VALUE_LAYER && v->ints && !op_in(op, IDS))
            return unsupported(im, "input '%s' is computed integers (a Cast of the input): tessera takes them only "
                                   "as the indices of a Gather from a constant table (an embedding)", v->name);
        if (v->kind == VALUE_ZEROS && !op_in(op, ZEROS))
            return unsupported(im, "input '%s' is zeros as large as the batch (ConstantOfShape of the input's "
                                   "shape): tessera takes it only as a recurrent node's initial state", v->name);
        if (v->kind == VALUE_LENGTHS && !op_in(op, LENGTHS))
            return unsupported(im, "input '%s' is part of a computation of sequence lengths from the token ids "
                                   "that tessera does not recognize (docs/onnx.md, \"Recurrent nodes\")", v->name);
    }
    return TS_OK;
}

/* Converts nodes whose inputs are all known, pass after pass: ONNX requires a
 * topological order, but a wrong order should not be fatal, and a pass with no
 * progress tells a cycle from an input that nothing produces. */
static ts_status walk(importer *im, const Onnx__GraphProto *g) {
    size_t nn = g->n_node;
    char *done = calloc(nn ? nn : 1, 1);
    if (!done) return ts_fail(im->ctx, TS_ENOMEM, "%s: out of memory", im->file);
    ts_status st = TS_OK;
    size_t remaining = nn;
    while (remaining && !st) {
        size_t progress = 0;
        for (size_t i = 0; i < nn && !st; i++) {
            if (done[i]) continue;
            const Onnx__NodeProto *n = g->node[i];
            /* data: an input is computed from the model input (or would be) */
            int ready = 1, uncomputed = 0, unknown = 0, data = 0;
            for (size_t k = 0; k < n->n_input && ready; k++) {
                if (!n->input[k] || !*n->input[k]) continue;
                value *v = find_value(im, n->input[k]);
                if (!v) ready = 0;
                else if (v->kind == VALUE_POISON) uncomputed = 1;
                unknown |= v && (v->kind == VALUE_FAILED || v->kind == VALUE_UNKNOWN);
                data |= v && (v->kind == VALUE_FAILED || v->kind == VALUE_LAYER);
            }
            if (!ready) continue;
            done[i] = 1;
            remaining--;
            progress++;
            im->node = n;
            convert_fn fn = n->op_type && (!n->domain || !*n->domain || !strcmp(n->domain, "ai.onnx"))
                                ? onnx_converter(n->op_type)
                                : NULL;
            int handled = 0;
            if (!uncomputed && !unknown) st = lengths_step(im, n, &handled);
            if (handled || st) {
                /* a step of the sequence lengths computation (onnx_ops_recurrent.c) */
            } else if (!fn) {
                if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
                    st = unsupported(im, "operators of domain '%s' are not supported", n->domain);
                else
                    st = unsupported(im, "this operator is not supported (tessera import --help lists those that are)");
            } else if (uncomputed) {
                st = unsupported(im, "it reads an output that tessera does not compute (a Dropout mask, or a "
                                     "training-mode BatchNormalization's statistics)");
            } else if (unknown) {
                /* check mode, downstream of a refusal: no shapes, only the shape-free rules */
                st = data ? onnx_check_rules(im, n) : TS_OK;
            } else if (!(st = special_inputs(im, n))) {
                st = fn(im, n);
            }
            if (im->checking && (unknown || st == TS_EUNSUPPORTED)) {
                if (st == TS_EUNSUPPORTED && (st = report_add(im, ts_ctx_error(im->ctx)))) break;
                if (st) break;
                ts_ctx_clear_error(im->ctx);
                value_kind kind = data && strcmp(n->op_type ? n->op_type : "", "Shape") ? VALUE_FAILED : VALUE_UNKNOWN;
                for (size_t k = 0; k < n->n_output && !st; k++)
                    if (n->output[k] && *n->output[k]) st = mark_failed(im, n->output[k], kind);
            }
        }
        if (!st && progress == 0) {
            /* name the first stuck node and why */
            for (size_t i = 0; i < nn; i++) {
                if (done[i]) continue;
                const Onnx__NodeProto *n = g->node[i];
                im->node = n;
                for (size_t k = 0; k < n->n_input; k++) {
                    if (!n->input[k] || !*n->input[k] || find_value(im, n->input[k])) continue;
                    if (!produced_by_some_node(g, n->input[k]))
                        st = bad_node(im, "input '%s' is never produced (not a graph input, initializer or node output)",
                                      n->input[k]);
                    else
                        st = bad_node(im, "input '%s' depends on this node's own output: the graph has a cycle",
                                      n->input[k]);
                    break;
                }
                if (st) break;
            }
            if (!st) st = ts_fail(im->ctx, TS_EFORMAT, "%s: the graph cannot be ordered", im->file);
        }
    }
    im->node = NULL;
    free(done);
    return st;
}

static ts_status finish_output(importer *im, const Onnx__GraphProto *g, const char **out_layer) {
    if (g->n_output != 1)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: the graph has %zu outputs; a tessera model has exactly one",
                       im->file, g->n_output);
    const char *name = g->output[0]->name;
    value *v = name ? find_value(im, name) : NULL;
    if (!v) return ts_fail(im->ctx, TS_EFORMAT, "%s: graph output '%s' is never produced", im->file, name ? name : "");
    if (v->kind == VALUE_FAILED || v->kind == VALUE_UNKNOWN) return TS_EUNSUPPORTED; /* check mode: reported */
    if (v->kind == VALUE_POISON)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph output '%s' is an output that tessera does not compute",
                       im->file, name);
    if (v->kind == VALUE_ZEROS || v->kind == VALUE_LENGTHS)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph output '%s' is %s, which tessera does not output",
                       im->file, name, v->kind == VALUE_ZEROS ? "zeros as large as the batch" : "sequence lengths");
    if (v->kind != VALUE_LAYER)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph output '%s' is a constant, not computed from the input",
                       im->file, name);
    if (v->ints)
        return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: graph output '%s' is integers; tessera outputs float32",
                       im->file, name);
    if (im->off && v->fold)
        return ts_fail(im->ctx, TS_EUNSUPPORTED,
                       "%s: graph output '%s' has the batch folded with another axis (axis %d); a tessera model "
                       "outputs it by itself", im->file, name, v->bax);
    if (im->off && v->bax && im->cfg->batch_axis < 2)
        return ts_fail(im->ctx, TS_EUNSUPPORTED,
                       "%s: graph output '%s' has its batch axis at axis %d; a tessera model outputs it first",
                       im->file, name, v->bax);
    im->out_bax = v->bax;
    ts_status st = materialize(im, v, out_layer);
    if (st) return st;
    /* the model's output is its last layer */
    int li = layer_index(im, *out_layer);
    if (li != im->nlayers - 1 || li == 0) {
        layer_attrs a;
        nn_attrs_default(LAYER_RESHAPE, &a);
        a.tshape = im->layers[li]->out;
        const char *ins[1] = {im->layers[li]->name};
        int last;
        if ((st = emit_layer(im, LAYER_RESHAPE, "output", ins, 1, &a, &im->layers[li]->out, &last))) return st;
        *out_layer = im->layers[last]->name;
    }
    return TS_OK;
}

static ts_status build_model(importer *im, const Onnx__ModelProto *mp, ts_model **out) {
    ts_model *m = NULL;
    if (!im->b) return ts_fail(im->ctx, TS_EUNSUPPORTED, "%s: no computed graph input", im->file);
    ts_status st = nn_builder_finish(im->b, 0, NULL, &m);
    im->b = NULL; /* consumed */
    if (st) return st;
    for (int i = 0; i < im->nfills && !st; i++) {
        fill *f = &im->fills[i];
        if (f->tensor < 0 || f->tensor >= m->ntensors) {
            st = ts_fail(im->ctx, TS_EINVAL, "%s: internal: tensor %d was not declared", im->file, f->tensor);
            break;
        }
        const tensor_entry *e = &m->tensors[f->tensor];
        if (e->numel != f->numel) {
            st = ts_fail(im->ctx, TS_ESHAPE, "%s: tensor %s has %lld values, the layer needs %lld", im->file, e->name,
                         (long long)f->numel, (long long)e->numel);
            break;
        }
        memcpy(tensor_data(m, f->tensor), f->data, (size_t)f->numel * sizeof(float));
    }
    /* metadata a tessera export carried (class names, normalization, ...) */
    for (size_t i = 0; i < mp->n_metadata_props && !st; i++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[i];
        if (e->key && e->value && !strncmp(e->key, "tessera.", 8) && e->key[8])
            st = ts_model_set_meta(im->ctx, m, e->key + 8, e->value);
    }
    if (!st) {
        ts_preprocess pp; /* a malformed normalization is not kept */
        if (ts_model_get_meta(m, "preprocess.mean") && ts_model_get_preprocess(im->ctx, m, &pp))
            st = ts_fail(im->ctx, TS_EFORMAT, "%s: metadata tessera.preprocess.* is malformed", im->file);
    }
    char opset[16];
    snprintf(opset, sizeof opset, "%d", im->opset);
    if (!st) st = ts_model_set_meta(im->ctx, m, "onnx.opset", opset);
    if (!st && mp->producer_name && *mp->producer_name)
        st = ts_model_set_meta(im->ctx, m, "onnx.producer", mp->producer_name);
    char axis[16];
    snprintf(axis, sizeof axis, "%d", im->off ? im->cfg->batch_axis : 0);
    if (!st) st = ts_model_set_meta(im->ctx, m, "onnx.batch_axis", axis);
    snprintf(axis, sizeof axis, "%d", im->out_bax);
    if (!st && im->out_bax) st = ts_model_set_meta(im->ctx, m, "onnx.output_batch_axis", axis);
    if (st) {
        ts_model_free(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

ts_status onnx_import_at(ts_ctx *ctx, const void *data, size_t size, const char *name,
                         const ts_onnx_import_config *cfg, int checking, const int64_t free_hw[2], int *any_size,
                         ts_model **out, char **report) {
    ts_onnx_import_config defcfg;
    if (!cfg) {
        ts_onnx_import_config_default(&defcfg);
        cfg = &defcfg;
    }
    if (cfg->nbind < 0 || (cfg->nbind && !cfg->bind)) return ts_fail(ctx, TS_EINVAL, "%s: bad bind list", name);
    if (cfg->batch_axis < 0 || cfg->batch_axis > ONNX_MAX_RANK)
        return ts_fail(ctx, TS_EINVAL, "%s: batch_axis %d (0: none, k + 1: the input's axis k)", name, cfg->batch_axis);
    onnx_pb_allocator pa;
    onnx_pb_allocator_init(&pa);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&pa.base, size, data);
    if (!mp && pa.failed) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory decoding the protobuf", name);
    if (!mp) return ts_fail(ctx, TS_EFORMAT, "%s: not a valid ONNX model (protobuf decoding failed: truncated or corrupt)", name);
    importer im = {.ctx = ctx, .file = name, .cfg = cfg, .off = cfg->batch_axis ? 1 : 0, .checking = checking,
                   .free_hw = {free_hw[0], free_hw[1]}};
    ts_status st = TS_OK;
    const Onnx__GraphProto *g = mp->graph;
    if (!g) st = ts_fail(ctx, TS_EFORMAT, "%s: the model has no graph", name);
    im.graph = g;
    if (!st) st = read_opset(&im, mp);
    if (!st) st = define_initializers(&im, g);
    if (!st) st = define_inputs(&im, g);
    if (!st) st = walk(&im, g);
    const char *last = NULL;
    if (!st) {
        st = finish_output(&im, g, &last);
        if (st == TS_EUNSUPPORTED && checking) {
            if (!im.report.s && ts_ctx_status(ctx)) st = report_add(&im, ts_ctx_error(ctx));
            ts_ctx_clear_error(ctx);
            st = TS_OK;
        }
    }
    if (!st && checking) st = im.report.s ? TS_EUNSUPPORTED : TS_OK;
    if (!st && out) st = build_model(&im, mp, out);
    if (any_size) *any_size = im.any_size;
    if (report) {
        *report = im.report.s;
        im.report.s = NULL;
    }
    ts_strbuf_free(&im.report);
    importer_free(&im);
    onnx__model_proto__free_unpacked(mp, &pa.base);
    return st;
}

ts_status ts_onnx_import_memory(ts_ctx *ctx, const void *data, size_t size, const char *name,
                                const ts_onnx_import_config *cfg, ts_model **out) {
    if (!ctx || (!data && size) || !out) return ts_fail(ctx, TS_EINVAL, "ts_onnx_import_memory: NULL argument");
    *out = NULL;
    return onnx_import_bytes(ctx, data, size, name ? name : "<memory>", cfg, 0, out, NULL);
}

ts_status ts_onnx_import(ts_ctx *ctx, const char *path, const ts_onnx_import_config *cfg, ts_model **out) {
    if (!ctx || !path || !out) return ts_fail(ctx, TS_EINVAL, "ts_onnx_import: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t size;
    ts_status st = onnx_read_file(ctx, path, &data, &size);
    if (st) return st;
    st = onnx_import_bytes(ctx, data, size, path, cfg, 0, out, NULL);
    free(data);
    return st;
}

ts_status ts_onnx_check(ts_ctx *ctx, const char *path, const ts_onnx_import_config *cfg, char **report) {
    if (!ctx || !path || !report) return ts_fail(ctx, TS_EINVAL, "ts_onnx_check: NULL argument");
    *report = NULL;
    uint8_t *data;
    size_t size;
    ts_status st = onnx_read_file(ctx, path, &data, &size);
    if (st) return st;
    st = onnx_import_bytes(ctx, data, size, path, cfg, 1, NULL, report);
    free(data);
    if (st == TS_EUNSUPPORTED)
        ts_fail(ctx, TS_EUNSUPPORTED, "%s: some nodes or inputs cannot be imported (listed in the report)", path);
    return st;
}
