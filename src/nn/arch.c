/* Architecture text parser. One layer per line: `kind key=value ...`; `#` starts a
 * comment. Every key is checked against the kind's schema (LAYER_OPS), each line
 * becomes one nn_add; errors name the line. Grammar and keys: docs/arch-format.md. */
#include "nn.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCH_MAX_KEYS 16

typedef struct kv {
    char *key, *val;
} kv;

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

/* The kind's attributes from the line's keys, over its defaults; every key must be
 * name=, in= or one of the kind's schema. */
static ts_status parse_attrs(parse_pos *pp, layer_kind kind, kv *kvs, int n, int classes, layer_attrs *a) {
    nn_attrs_default(kind, a);
    for (int i = 0; i < n; i++) {
        if (!strcmp(kvs[i].key, "name") || !strcmp(kvs[i].key, "in")) continue;
        const attr_spec *sp = attr_find(kind, kvs[i].key);
        if (!sp) {
            char keys[256] = "name in";
            for (int k = 0; k < LAYER_OPS[kind].nattrs; k++) {
                size_t len = strlen(keys);
                snprintf(keys + len, sizeof keys - len, " %s", LAYER_OPS[kind].attrs[k].key);
            }
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: unknown key '%s' (accepted: %s)", pp->source, pp->line,
                           pp->kind, kvs[i].key, keys);
        }
        char expected[160];
        if (!attr_parse(sp, kvs[i].val, classes, a, expected, sizeof expected))
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: %s=%s is invalid (expected %s)", pp->source, pp->line,
                           pp->kind, kvs[i].key, kvs[i].val, expected);
    }
    for (int k = 0; k < LAYER_OPS[kind].nattrs; k++) {
        const attr_spec *sp = &LAYER_OPS[kind].attrs[k];
        if ((sp->flags & ATTR_REQUIRED) && !find_key(kvs, n, sp->key))
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: missing required key '%s'", pp->source, pp->line,
                           pp->kind, sp->key);
    }
    return TS_OK;
}

/* One layer line after the input line: its attributes, then the builder. */
static ts_status parse_layer(parse_pos *pp, nn_builder *b, int classes, const int vocab[2], layer_kind kind, kv *kvs,
                             int nkv) {
    layer_attrs a;
    char vbuf[ARCH_MAX_KEYS][16];
    for (int i = 0; i < nkv; i++) { /* the input line's (or the caller's) vocabulary sizes */
        const int which = !strcmp(kvs[i].val, "vocab") ? 0 : !strcmp(kvs[i].val, "target_vocab") ? 1 : -1;
        if (which < 0 || !strcmp(kvs[i].key, "name") || !strcmp(kvs[i].key, "in")) continue;
        if (vocab[which] < 1)
            return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: %s=%s needs %s=N on the input line", pp->source, pp->line,
                           pp->kind, kvs[i].key, kvs[i].val, kvs[i].val);
        snprintf(vbuf[i], sizeof vbuf[i], "%d", vocab[which]);
        kvs[i].val = vbuf[i];
    }
    ts_status st = parse_attrs(pp, kind, kvs, nkv, classes, &a);
    if (st) return st;
    kv *name = find_key(kvs, nkv, "name");
    kv *in = find_key(kvs, nkv, "in");
    const char *ins[LAYER_MAX_INPUTS + 2];
    int n = 0;
    if (in) {
        char *save = NULL;
        for (char *t = strtok_r(in->val, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n == LAYER_MAX_INPUTS + 1) break; /* nn_add reports "more than N inputs" */
            ins[n++] = t;
        }
        ins[n] = NULL;
        if (n == 0) return ts_fail(pp->ctx, TS_EFORMAT, "%s:%d: %s: in=%s names no layer", pp->source, pp->line, pp->kind, in->val);
    }
    nn_builder_set_line(b, pp->line);
    return nn_add(b, kind, name ? name->val : NULL, in ? ins : NULL, &a, NULL);
}

ts_status arch_parse(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                     const int *vocab, nn_builder **out) {
    *out = NULL;
    size_t len = strlen(text);
    char *buf = ts_alloc(ctx, len + 1, "architecture text");
    if (!buf) return TS_ENOMEM;
    memcpy(buf, text, len + 1);
    ts_status st = TS_OK;
    parse_pos pp = {ctx, source ? source : "<arch>", 0, ""};
    nn_builder *b = NULL;
    int model_classes = 0, model_vocab[2] = {0, 0};
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
        if ((kind == LAYER_INPUT) != (b == NULL)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s:%d: %s", pp.source, pp.line,
                         kind == LAYER_INPUT ? "only one input layer is allowed, and it comes first"
                                             : "the first layer must be 'input shape=CxHxW'");
            break;
        }
        if (kind != LAYER_INPUT) {
            st = parse_layer(&pp, b, model_classes, model_vocab, kind, kvs, nkv);
            continue;
        }
        if (find_key(kvs, nkv, "in")) {
            st = ts_fail(ctx, TS_EFORMAT, "%s:%d: input: takes no 'in'", pp.source, pp.line);
            break;
        }
        layer_attrs a;
        if ((st = parse_attrs(&pp, kind, kvs, nkv, 0, &a))) break;
        /* the caller (a dataset, a saved model) may override both */
        ts_shape shape = input && input->ndim > 0 ? *input : a.tshape;
        model_classes = classes > 0 ? classes : a.features;
        model_vocab[0] = vocab && vocab[0] > 0 ? vocab[0] : a.vocab;
        model_vocab[1] = vocab && vocab[1] > 0 ? vocab[1] : a.target_vocab;
        kv *name = find_key(kvs, nkv, "name");
        if ((st = nn_builder_create(ctx, pp.source, pp.line, &shape, model_classes, name ? name->val : NULL, &b))) break;
        if (a.free_hw && (st = nn_builder_set_free_hw(b))) break;
        nn_builder_set_line(b, pp.line);
    }
    ts_free(buf);
    if (!st && !b) st = ts_fail(ctx, TS_EFORMAT, "%s: no layers at all (expected an input line, then layers)", pp.source);
    if (st) {
        nn_builder_free(b);
        return st;
    }
    *out = b;
    return TS_OK;
}
