/* Architecture text parser. One layer per line: `kind key=value ...`; `#` starts a
 * comment. Every key is checked against the kind's list; errors name the line.
 * Grammar and keys: docs/arch-format.md. */
#include "nn.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCH_MAX_LAYERS 20000
/* per-sample elements of any layer output; kernels index with int */
#define ARCH_MAX_ELEMENTS ((int64_t)1 << 30)
#define ARCH_MAX_KEYS 16

/* Keys each kind accepts besides name= and in=. */
static const char *const KIND_KEYS[LAYER_KIND_COUNT] = {
    [LAYER_INPUT] = "shape classes",
    [LAYER_CONV2D] = "out kernel stride padding dilation groups bias",
    [LAYER_MAXPOOL] = "kernel stride padding ceil dilation",
    [LAYER_AVGPOOL] = "kernel stride padding ceil count_include_pad",
    [LAYER_GLOBALAVGPOOL] = "",
    [LAYER_BATCHNORM] = "eps momentum",
    [LAYER_DENSE] = "out bias",
    [LAYER_RELU] = "",
    [LAYER_LEAKYRELU] = "slope",
    [LAYER_SIGMOID] = "",
    [LAYER_TANH] = "",
    [LAYER_SOFTMAX] = "axis coerce",
    [LAYER_ADD] = "",
    [LAYER_CONCAT] = "axis",
    [LAYER_FLATTEN] = "",
    [LAYER_DROPOUT] = "p",
    [LAYER_MASK] = "",
    [LAYER_ELU] = "alpha",
    [LAYER_SELU] = "alpha gamma",
    [LAYER_HARDSIGMOID] = "alpha beta",
    [LAYER_CLIP] = "min max",
    [LAYER_PRELU] = "shape",
    [LAYER_GLOBALMAXPOOL] = "",
    [LAYER_LOGSOFTMAX] = "axis coerce",
    [LAYER_RESHAPE] = "shape",
    [LAYER_TRANSPOSE] = "perm",
    [LAYER_PAD] = "pads mode value",
    [LAYER_BINARY] = "op const const_first",
    [LAYER_MATMUL] = "b",
    [LAYER_CONVTRANSPOSE] = "out kernel stride padding output_padding dilation groups bias",
    [LAYER_CONSTANT] = "shape",
};

typedef struct kv {
    char *key, *val;
} kv;

static int key_allowed(layer_kind k, const char *key) {
    if (!strcmp(key, "name") || !strcmp(key, "in")) return 1;
    const char *list = KIND_KEYS[k];
    size_t n = strlen(key);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, key, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static kv *find_key(kv *kvs, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kvs[i].key, key)) return &kvs[i];
    return NULL;
}

typedef struct parse_pos {
    ts_ctx *ctx;
    const char *source;
    int line;
    const char *kind;
} parse_pos;

static ts_status bad(parse_pos *pp, const char *key, const char *val, const char *expected) {
    return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: %s=%s is invalid (expected %s)", pp->source, pp->line, pp->kind,
                   key, val, expected);
}

static ts_status parse_int(parse_pos *pp, kv *kvs, int n, const char *key, int def, int lo, int hi, int *out) {
    kv *e = find_key(kvs, n, key);
    if (!e) {
        *out = def;
        return TS_OK;
    }
    char *end;
    errno = 0;
    long v = strtol(e->val, &end, 10);
    if (errno || end == e->val || *end || v < lo || v > hi) {
        char exp[64];
        snprintf(exp, sizeof exp, "an integer in %d..%d", lo, hi);
        return bad(pp, key, e->val, exp);
    }
    *out = (int)v;
    return TS_OK;
}

static ts_status parse_float(parse_pos *pp, kv *kvs, int n, const char *key, float def, float lo, float hi,
                             float *out) {
    kv *e = find_key(kvs, n, key);
    if (!e) {
        *out = def;
        return TS_OK;
    }
    char *end;
    errno = 0;
    float v = strtof(e->val, &end);
    if (errno || end == e->val || *end || !(v >= lo && v <= hi)) {
        char exp[64];
        if (lo == -FLT_MAX && hi == FLT_MAX) snprintf(exp, sizeof exp, "a finite number");
        else snprintf(exp, sizeof exp, "a number in %g..%g", lo, hi);
        return bad(pp, key, e->val, exp);
    }
    *out = v;
    return TS_OK;
}

/* "3" -> (3,3); "3x5" -> (3,5) */
static ts_status parse_pair(parse_pos *pp, kv *kvs, int n, const char *key, int def, int lo, int required, int *a,
                            int *b) {
    kv *e = find_key(kvs, n, key);
    if (!e) {
        if (required)
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: missing required key '%s'", pp->source, pp->line,
                           pp->kind, key);
        *a = *b = def;
        return TS_OK;
    }
    char *end;
    errno = 0;
    long v1 = strtol(e->val, &end, 10), v2 = v1;
    if (!errno && end != e->val && *end == 'x') {
        const char *s2 = end + 1;
        v2 = strtol(s2, &end, 10);
        if (end == s2) end = (char *)s2 - 1; /* force error */
    }
    if (errno || end == e->val || *end || v1 < lo || v2 < lo || v1 > 65536 || v2 > 65536)
        return bad(pp, key, e->val, lo == 0 ? "N or HxW, N >= 0" : "N or HxW, N >= 1");
    *a = (int)v1;
    *b = (int)v2;
    return TS_OK;
}

/* "3x32x32", the value of key */
static ts_status parse_dims(parse_pos *pp, const char *key, const char *val, ts_shape *s) {
    memset(s, 0, sizeof *s);
    const char *p = val;
    while (*p) {
        if (s->ndim == TS_MAX_DIMS) return bad(pp, key, val, "at most 6 dimensions like 3x32x32");
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > (1L << 24)) return bad(pp, key, val, "dimensions like 3x32x32");
        s->dims[s->ndim++] = v;
        if (*end == 'x') p = end + 1;
        else if (*end == '\0') p = end;
        else return bad(pp, key, val, "dimensions like 3x32x32");
    }
    if (s->ndim == 0) return bad(pp, key, val, "dimensions like 3x32x32");
    return TS_OK;
}

/* padding=N, HxW, or t,l,b,r (top, left, bottom, right: ONNX pads begin_h, begin_w,
 * end_h, end_w) into l->ph, pw, pbh, pbw; the symmetric forms set pbh = ph, pbw = pw. */
static ts_status parse_padding(parse_pos *pp, kv *kvs, int n, layer *l) {
    kv *e = find_key(kvs, n, "padding");
    if (!e) {
        l->ph = l->pw = l->pbh = l->pbw = 0;
        return TS_OK;
    }
    long v[4];
    int count = 0;
    char sep = 0;
    const char *s = e->val;
    for (;;) {
        char *end;
        errno = 0;
        v[count] = strtol(s, &end, 10);
        if (errno || end == s || !isdigit((unsigned char)*s) || v[count] > 65536) break;
        count++;
        if (*end == '\0') {
            s = end;
            break;
        }
        if (count == 4 || (sep && *end != sep) || (*end != 'x' && *end != ',')) break;
        sep = *end;
        s = end + 1;
    }
    if (*s != '\0' || !(count == 1 || (count == 2 && sep == 'x') || (count == 4 && sep == ',')))
        return bad(pp, "padding", e->val, "N, HxW or t,l,b,r (top, left, bottom, right), each 0..65536");
    if (count == 1) v[1] = v[0];
    if (count < 4) v[2] = v[0], v[3] = v[1];
    l->ph = (int)v[0];
    l->pw = (int)v[1];
    l->pbh = (int)v[2];
    l->pbw = (int)v[3];
    return TS_OK;
}

static ts_status parse_shape(parse_pos *pp, const char *val, ts_shape *s) { return parse_dims(pp, "shape", val, s); }

static ts_status missing_key(parse_pos *pp, const char *key) {
    return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: missing required key '%s'", pp->source, pp->line, pp->kind, key);
}

/* key=AxBxC into s; s->ndim stays 0 when the key is absent and not required */
static ts_status parse_shape_key(parse_pos *pp, kv *kvs, int n, const char *key, int required, ts_shape *s) {
    kv *e = find_key(kvs, n, key);
    if (!e) {
        memset(s, 0, sizeof *s);
        return required ? missing_key(pp, key) : TS_OK;
    }
    return parse_dims(pp, key, e->val, s);
}

/* key=2,0,1: up to max integers in lo..hi; *count is -1 when the key is absent */
static ts_status parse_int_list(parse_pos *pp, kv *kvs, int n, const char *key, int lo, int hi, int max, int *out,
                                int *count) {
    *count = -1;
    kv *e = find_key(kvs, n, key);
    if (!e) return TS_OK;
    char exp[96];
    snprintf(exp, sizeof exp, "at most %d comma-separated integers in %d..%d", max, lo, hi);
    int c = 0;
    for (const char *p = e->val;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < lo || v > hi || c == max || (*end != ',' && *end != '\0'))
            return bad(pp, key, e->val, exp);
        out[c++] = (int)v;
        if (*end == '\0') break;
        p = end + 1;
    }
    *count = c;
    return TS_OK;
}

/* key=one of names (count of them); def < 0: required */
static ts_status parse_choice(parse_pos *pp, kv *kvs, int n, const char *key, const char *const *names, int count,
                              int def, int *out) {
    kv *e = find_key(kvs, n, key);
    if (!e) {
        if (def < 0) return missing_key(pp, key);
        *out = def;
        return TS_OK;
    }
    char exp[96] = "one of";
    for (int i = 0; i < count; i++) {
        if (!strcmp(e->val, names[i])) {
            *out = i;
            return TS_OK;
        }
        size_t len = strlen(exp);
        snprintf(exp + len, sizeof exp - len, "%s %s", i ? "," : "", names[i]);
    }
    return bad(pp, key, e->val, exp);
}

/* The rank of a one-input layer's input, for keys that list one value per axis; -1
 * when the layer does not have exactly one input (its shape inference reports that). */
static int single_input_rank(const ts_model *m, const layer *l) {
    return l->ninputs == 1 ? m->layers[l->inputs[0]].out.ndim : -1;
}

static int find_layer(const ts_model *m, const char *name) {
    for (int i = m->nlayers - 1; i >= 0; i--)
        if (!strcmp(m->layers[i].name, name)) return i;
    return -1;
}

/* Splits a line in place into kind and key=value tokens. */
static ts_status tokenize(parse_pos *pp, char *line, char **kind, kv *kvs, int *nkv) {
    *nkv = 0;
    char *save = NULL;
    char *tok = strtok_r(line, " \t\r", &save);
    *kind = tok;
    while ((tok = strtok_r(NULL, " \t\r", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: '%s' is not of the form key=value", pp->source, pp->line, tok);
        if (*nkv == ARCH_MAX_KEYS)
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: too many keys (at most %d)", pp->source, pp->line,
                           ARCH_MAX_KEYS);
        *eq = '\0';
        for (int i = 0; i < *nkv; i++)
            if (!strcmp(kvs[i].key, tok))
                return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: key '%s' given twice", pp->source, pp->line, tok);
        kvs[*nkv].key = tok;
        kvs[*nkv].val = eq + 1;
        (*nkv)++;
    }
    return TS_OK;
}

/* out=N, or out=classes: the model's class count (from the input line or the caller) */
static ts_status parse_out(parse_pos *pp, const ts_model *m, kv *kvs, int n, int *out) {
    kv *e = find_key(kvs, n, "out");
    if (!e) return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: missing required key 'out'", pp->source, pp->line, pp->kind);
    if (!strcmp(e->val, "classes")) {
        if (m->classes < 1)
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: out=classes needs classes=N on the input line", pp->source,
                           pp->line, pp->kind);
        *out = m->classes;
        return TS_OK;
    }
    return parse_int(pp, kvs, n, "out", 0, 1, 1 << 24, out);
}

static ts_status parse_attrs(parse_pos *pp, const ts_model *m, layer *l, kv *kvs, int n) {
    ts_status st = TS_OK;
    switch (l->kind) {
    case LAYER_CONV2D:
    case LAYER_CONVTRANSPOSE: {
        if ((st = parse_out(pp, m, kvs, n, &l->features))) return st;
        if ((st = parse_pair(pp, kvs, n, "kernel", 0, 1, 1, &l->kh, &l->kw))) return st;
        if ((st = parse_pair(pp, kvs, n, "stride", 1, 1, 0, &l->sh, &l->sw))) return st;
        if ((st = parse_padding(pp, kvs, n, l))) return st; /* symmetric unless padding=t,l,b,r */
        if ((st = parse_pair(pp, kvs, n, "dilation", 1, 1, 0, &l->dh, &l->dw))) return st;
        if ((st = parse_int(pp, kvs, n, "groups", 1, 1, 1 << 20, &l->groups))) return st;
        if ((st = parse_int(pp, kvs, n, "bias", 1, 0, 1, &l->bias))) return st;
        if (l->kind == LAYER_CONVTRANSPOSE &&
            (st = parse_pair(pp, kvs, n, "output_padding", 0, 0, 0, &l->oph, &l->opw)))
            return st;
        break;
    }
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL:
        if ((st = parse_pair(pp, kvs, n, "kernel", 0, 1, 1, &l->kh, &l->kw))) return st;
        if ((st = parse_pair(pp, kvs, n, "stride", 0, 1, 0, &l->sh, &l->sw))) return st;
        if (l->sh == 0) { /* PyTorch: stride defaults to the kernel size */
            l->sh = l->kh;
            l->sw = l->kw;
        }
        if ((st = parse_padding(pp, kvs, n, l))) return st; /* symmetric unless padding=t,l,b,r */
        if ((st = parse_int(pp, kvs, n, "ceil", 0, 0, 1, &l->ceil_mode))) return st;
        l->dh = l->dw = 1;
        if (l->kind == LAYER_MAXPOOL && (st = parse_pair(pp, kvs, n, "dilation", 1, 1, 0, &l->dh, &l->dw))) return st;
        if (l->kind == LAYER_AVGPOOL &&
            (st = parse_int(pp, kvs, n, "count_include_pad", 1, 0, 1, &l->count_include_pad)))
            return st;
        break;
    case LAYER_BATCHNORM:
        if ((st = parse_float(pp, kvs, n, "eps", 1e-5f, 1e-12f, 1.0f, &l->eps))) return st;
        if ((st = parse_float(pp, kvs, n, "momentum", 0.1f, 0.0f, 1.0f, &l->momentum))) return st;
        break;
    case LAYER_DENSE: {
        if ((st = parse_out(pp, m, kvs, n, &l->features))) return st;
        if ((st = parse_int(pp, kvs, n, "bias", 1, 0, 1, &l->bias))) return st;
        break;
    }
    case LAYER_LEAKYRELU:
        if ((st = parse_float(pp, kvs, n, "slope", 0.01f, -1e6f, 1e6f, &l->alpha))) return st;
        break;
    case LAYER_DROPOUT:
        if ((st = parse_float(pp, kvs, n, "p", 0.5f, 0.0f, 0.999f, &l->p))) return st;
        break;
    case LAYER_ELU:
        if ((st = parse_float(pp, kvs, n, "alpha", 1.0f, -1e6f, 1e6f, &l->alpha))) return st;
        break;
    case LAYER_SELU: /* ONNX's defaults (PyTorch's constants rounded to float) */
        if ((st = parse_float(pp, kvs, n, "alpha", 1.67326319217681884765625f, -1e6f, 1e6f, &l->alpha))) return st;
        if ((st = parse_float(pp, kvs, n, "gamma", 1.05070102214813232421875f, -1e6f, 1e6f, &l->gamma))) return st;
        break;
    case LAYER_HARDSIGMOID:
        if ((st = parse_float(pp, kvs, n, "alpha", 0.2f, -1e6f, 1e6f, &l->alpha))) return st;
        if ((st = parse_float(pp, kvs, n, "beta", 0.5f, -1e6f, 1e6f, &l->beta))) return st;
        break;
    case LAYER_CLIP: /* a missing bound is no bound */
        if ((st = parse_float(pp, kvs, n, "min", -INFINITY, -FLT_MAX, FLT_MAX, &l->lo))) return st;
        if ((st = parse_float(pp, kvs, n, "max", INFINITY, -FLT_MAX, FLT_MAX, &l->hi))) return st;
        break;
    case LAYER_PRELU: {
        kv *e = find_key(kvs, n, "shape");
        if (!e) {
            l->tshape.ndim = 1;
            l->tshape.dims[0] = 1;
        } else if ((st = parse_shape(pp, e->val, &l->tshape))) {
            return st;
        }
        break;
    }
    case LAYER_SOFTMAX:
    case LAYER_LOGSOFTMAX:
        if ((st = parse_int(pp, kvs, n, "axis", -1, -TS_MAX_DIMS, TS_MAX_DIMS - 1, &l->axis))) return st;
        if ((st = parse_int(pp, kvs, n, "coerce", 0, 0, 1, &l->coerce))) return st;
        break;
    case LAYER_CONCAT:
        if ((st = parse_int(pp, kvs, n, "axis", 0, -TS_MAX_DIMS, TS_MAX_DIMS - 1, &l->axis))) return st;
        break;
    case LAYER_RESHAPE:
    case LAYER_CONSTANT:
        if ((st = parse_shape_key(pp, kvs, n, "shape", 1, &l->tshape))) return st;
        break;
    case LAYER_TRANSPOSE: {
        int count, rank = single_input_rank(m, l);
        if ((st = parse_int_list(pp, kvs, n, "perm", 0, TS_MAX_DIMS - 1, TS_MAX_DIMS, l->perm, &count))) return st;
        if (count < 0) /* ONNX default: reverse the axes */
            for (int i = 0; i < rank; i++) l->perm[i] = rank - 1 - i;
        else if (rank >= 0 && count != rank)
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: transpose: perm=%s lists %d axes, but '%s' outputs %d-d",
                           pp->source, pp->line, find_key(kvs, n, "perm")->val, count, m->layers[l->inputs[0]].name,
                           rank);
        break;
    }
    case LAYER_PAD: {
        static const char *const modes[] = {"constant", "reflect", "edge"};
        int count, rank = single_input_rank(m, l);
        if ((st = parse_int_list(pp, kvs, n, "pads", -(1 << 24), 1 << 24, 2 * TS_MAX_DIMS, l->pads, &count)))
            return st;
        if (count < 0) return missing_key(pp, "pads");
        if (rank >= 0 && count != 2 * rank)
            return ts_fail(pp->ctx, TS_EFORMAT,
                           "%s:%d: pad: pads=%s has %d values, expected %d (begins then ends of each axis of '%s', "
                           "%d-d)",
                           pp->source, pp->line, find_key(kvs, n, "pads")->val, count, 2 * rank,
                           m->layers[l->inputs[0]].name, rank);
        if ((st = parse_choice(pp, kvs, n, "mode", modes, 3, PAD_CONSTANT, &l->pad_mode))) return st;
        if ((st = parse_float(pp, kvs, n, "value", 0.0f, -INFINITY, INFINITY, &l->value))) return st;
        break;
    }
    case LAYER_BINARY: {
        static const char *const ops[] = {"add", "sub", "mul", "div"};
        if ((st = parse_choice(pp, kvs, n, "op", ops, 4, -1, &l->op))) return st;
        if ((st = parse_shape_key(pp, kvs, n, "const", 0, &l->tshape))) return st;
        if ((st = parse_int(pp, kvs, n, "const_first", 0, 0, 1, &l->const_first))) return st;
        if (l->const_first && l->tshape.ndim == 0)
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: binary: const_first=1 needs const=AxB", pp->source, pp->line);
        break;
    }
    case LAYER_MATMUL:
        if ((st = parse_shape_key(pp, kvs, n, "b", 1, &l->tshape))) return st;
        break;
    default:
        break;
    }
    return st;
}

ts_status arch_parse(ts_ctx *ctx, ts_model *m, const char *text, const char *source, const ts_shape *input,
                     int classes) {
    size_t len = strlen(text);
    char *buf = ts_alloc(ctx, len + 1, "architecture text");
    if (!buf) return TS_ENOMEM;
    memcpy(buf, text, len + 1);
    ts_status st = TS_OK;
    parse_pos pp = {ctx, source ? source : "<arch>", 0, ""};
    m->parsing = pp.source;
    int cap = 0;
    /* strtok_r would skip empty lines and lose line numbers: walk by hand */
    char *p = buf;
    while (p && *p != '\0' && st == TS_OK) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        pp.line++;
        char *hash = strchr(p, '#');
        if (hash) *hash = '\0';
        char *s = p;
        while (isspace((unsigned char)*s)) s++;
        p = nl ? nl + 1 : NULL;
        if (!*s) continue;

        char *kind_name;
        kv kvs[ARCH_MAX_KEYS];
        int nkv;
        if ((st = tokenize(&pp, s, &kind_name, kvs, &nkv))) break;
        layer_kind kind = layer_kind_from_name(kind_name);
        if (kind == LAYER_KIND_COUNT) {
            st = ts_fail(ctx, TS_EFORMAT, "%s:%d: unknown layer kind '%s'", pp.source, pp.line, kind_name);
            break;
        }
        pp.kind = LAYER_OPS[kind].name;
        for (int i = 0; i < nkv; i++)
            if (!key_allowed(kind, kvs[i].key)) {
                st = ts_fail(ctx, TS_EFORMAT, "%s:%d: %s: unknown key '%s' (accepted: name in%s%s)", pp.source,
                             pp.line, pp.kind, kvs[i].key, *KIND_KEYS[kind] ? " " : "", KIND_KEYS[kind]);
                break;
            }
        if (st) break;
        if ((kind == LAYER_INPUT) != (m->nlayers == 0)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s:%d: %s", pp.source, pp.line,
                         kind == LAYER_INPUT ? "only one input layer is allowed, and it comes first"
                                             : "the first layer must be 'input shape=CxHxW'");
            break;
        }
        if (m->nlayers == ARCH_MAX_LAYERS) {
            st = ts_fail(ctx, TS_EFORMAT, "%s:%d: too many layers (at most %d)", pp.source, pp.line, ARCH_MAX_LAYERS);
            break;
        }
        if (m->nlayers == cap) {
            int ncap = cap ? cap * 2 : 32;
            layer *nl2 = realloc(m->layers, (size_t)ncap * sizeof *nl2);
            if (!nl2) {
                st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for layers", pp.source);
                break;
            }
            m->layers = nl2;
            cap = ncap;
        }
        layer *l = &m->layers[m->nlayers];
        memset(l, 0, sizeof *l);
        l->kind = kind;
        l->line = pp.line;
        l->weight = l->bias_t = l->running_mean = l->running_var = l->mask = l->konst = -1;

        kv *name = find_key(kvs, nkv, "name");
        if (name) {
            size_t nlen = strlen(name->val);
            int okname = nlen < LAYER_NAME_MAX;
            for (size_t i = 0; i < nlen && okname; i++)
                okname = isalnum((unsigned char)name->val[i]) || strchr("._-", name->val[i]);
            if (!okname) {
                st = bad(&pp, "name", name->val, "letters, digits, '.', '_' or '-', under 64 characters");
                break;
            }
            if (find_layer(m, name->val) >= 0) {
                st = ts_fail(ctx, TS_EFORMAT, "%s:%d: layer name '%s' is already used", pp.source, pp.line, name->val);
                break;
            }
            memcpy(l->name, name->val, nlen + 1);
        } else {
            /* default name: kind plus position, unique because position is */
            snprintf(l->name, sizeof l->name, "%s%d", pp.kind, m->nlayers);
            if (find_layer(m, l->name) >= 0) {
                st = ts_fail(ctx, TS_EFORMAT, "%s:%d: default name '%s' clashes with an earlier layer; give name=",
                             pp.source, pp.line, l->name);
                break;
            }
        }

        kv *in = find_key(kvs, nkv, "in");
        if (kind == LAYER_INPUT) {
            if (in) {
                st = ts_fail(ctx, TS_EFORMAT, "%s:%d: input: takes no 'in'", pp.source, pp.line);
                break;
            }
            kv *shape = find_key(kvs, nkv, "shape");
            if (!shape) {
                st = ts_fail(ctx, TS_EFORMAT, "%s:%d: input: missing required key 'shape'", pp.source, pp.line);
                break;
            }
            if ((st = parse_shape(&pp, shape->val, &m->input))) break;
            int declared;
            if ((st = parse_int(&pp, kvs, nkv, "classes", 0, 1, 1 << 24, &declared))) break;
            m->classes = declared;
            /* the caller (a dataset, a saved model) may override both */
            if (input && input->ndim > 0) m->input = *input;
            if (classes > 0) m->classes = classes;
        } else if (in) {
            char *save = NULL;
            for (char *t = strtok_r(in->val, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int idx = find_layer(m, t);
                if (idx < 0) {
                    st = ts_fail(ctx, TS_EFORMAT, "%s:%d: %s: input '%s' is not an earlier layer", pp.source,
                                 pp.line, pp.kind, t);
                    break;
                }
                if (l->ninputs == LAYER_MAX_INPUTS) {
                    st = ts_fail(ctx, TS_EFORMAT, "%s:%d: %s: more than %d inputs", pp.source, pp.line, pp.kind,
                                 LAYER_MAX_INPUTS);
                    break;
                }
                l->inputs[l->ninputs++] = idx;
            }
            if (st) break;
        } else {
            l->inputs[l->ninputs++] = m->nlayers - 1;
        }
        if ((st = parse_attrs(&pp, m, l, kvs, nkv))) break;
        m->nlayers++;
        if ((st = LAYER_OPS[kind].infer(ctx, m, l, pp.source))) {
            m->nlayers--;
            break;
        }
        int64_t numel = shape_numel(&l->out);
        if (numel < 1 || numel > ARCH_MAX_ELEMENTS) {
            st = ts_fail(ctx, TS_ESHAPE, "%s:%d: %s '%s' would output %s elements per sample (at most %lld)",
                         pp.source, pp.line, pp.kind, l->name, numel < 0 ? "too many" : "0", (long long)ARCH_MAX_ELEMENTS);
            break;
        }
    }
    ts_free(buf);
    m->parsing = NULL;
    if (st) return st;
    if (m->nlayers == 0)
        return ts_fail(ctx, TS_EFORMAT, "%s: no layers at all (expected an input line, then layers)", pp.source);
    if (m->nlayers < 2)
        return ts_fail(ctx, TS_EFORMAT, "%s: no layers after input (expected at least one layer)", pp.source);
    /* The output is usually a vector of class scores; an imported model may output
     * any shape, and then `classes` counts its values per sample. */
    layer *last = &m->layers[m->nlayers - 1];
    int64_t nout = shape_numel(&last->out);
    if (nout > (1 << 24))
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: the last layer '%s' outputs %lld values per sample (at most %d)",
                       pp.source, last->line, last->name, (long long)nout, 1 << 24);
    if (m->classes && nout != m->classes)
        return ts_fail(ctx, TS_ESHAPE, "%s:%d: the last layer '%s' outputs %lld values but input declares classes=%d",
                       pp.source, last->line, last->name, (long long)nout, m->classes);
    m->classes = (int)nout;
    return TS_OK;
}
