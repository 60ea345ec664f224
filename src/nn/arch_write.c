/* Architecture text from layers, the inverse of arch.c: what a model built in code
 * (composition, ONNX import) saves, and what `tessera info` shows. Driven by the
 * attribute schema in LAYER_OPS, so a new kind needs nothing here. */
#include "layers.h"


char *arch_write_model(const ts_model *m) {
    ts_strbuf b = {0};
    for (int li = 0; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        if (l->kind == LAYER_INPUT) {
            char shape[160];
            ts_strbuf_printf(&b, "input name=%s shape=%s classes=%d%s\n", l->name,
                             shape_text(&m->input, shape, sizeof shape), m->classes, l->free_hw ? " free=hw" : "");
            continue;
        }
        ts_strbuf_printf(&b, "%s name=%s in=", LAYER_OPS[l->kind].name, l->name);
        for (int k = 0; k < l->ninputs; k++) ts_strbuf_printf(&b, "%s%s", k ? "," : "", m->layers[l->inputs[k]].name);
        char attrs[1536];
        attrs_write(l->kind, &l->attrs, attrs, sizeof attrs);
        ts_strbuf_printf(&b, "%s\n", attrs);
    }
    return ts_strbuf_take(&b);
}
