/* Architecture text from layers, the inverse of arch.c: what a model built in code
 * (composition, ONNX import) saves, and what `tessera info` shows. Driven by the
 * attribute schema in LAYER_OPS, so a new kind needs nothing here. */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *arch_write_model(const ts_model *m) {
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    for (int li = 0; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        char line[2048], attrs[1536];
        size_t n;
        if (l->kind == LAYER_INPUT) {
            char shape[160];
            n = (size_t)snprintf(line, sizeof line, "input name=%s shape=%s classes=%d\n", l->name,
                                 shape_text(&m->input, shape, sizeof shape), m->classes);
        } else {
            n = (size_t)snprintf(line, sizeof line, "%s name=%s in=", LAYER_OPS[l->kind].name, l->name);
            for (int k = 0; k < l->ninputs && n < sizeof line; k++)
                n += (size_t)snprintf(line + n, sizeof line - n, "%s%s", k ? "," : "", m->layers[l->inputs[k]].name);
            attrs_write(l->kind, &l->attrs, attrs, sizeof attrs);
            if (n < sizeof line) n += (size_t)snprintf(line + n, sizeof line - n, "%s\n", attrs);
        }
        if (n >= sizeof line) { /* 8 names of 63 characters and every key fit; this cannot happen */
            free(s);
            return NULL;
        }
        if (len + n + 1 > cap) {
            while (len + n + 1 > cap) cap *= 2;
            char *ns = realloc(s, cap);
            if (!ns) {
                free(s);
                return NULL;
            }
            s = ns;
        }
        memcpy(s + len, line, n + 1);
        len += n;
    }
    return s;
}
