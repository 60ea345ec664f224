/* What `bench` and `info --profile` share: a fixed pseudo-random batch for any model,
 * and the name of a fused chain as inference runs it. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* The fewest rows of any embedding layer's table (0: none, an image model) */
static int64_t smallest_vocab(const ts_model *m) {
    int64_t v = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (ts_model_layer(m, i, &li) || strcmp(li.kind, "embedding")) continue;
        char name[160];
        snprintf(name, sizeof name, "%s.weight", li.name);
        ts_tensor_info t;
        const int ti = ts_model_find_tensor(m, name);
        if (ti >= 0 && !ts_model_tensor(m, ti, &t) && t.ndim == 2 && (v == 0 || t.dims[0] < v)) v = t.dims[0];
    }
    return v;
}

int64_t cli_random_batch(const ts_model *m, float *x, int64_t n) {
    const ts_shape shape = ts_model_input_shape(m);
    const int64_t per = ts_shape_numel(&shape), vocab = smallest_vocab(m);
    uint64_t s = 0x2545f4914f6cdd1dULL;
    for (int64_t i = 0; i < per * n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = vocab > 1 ? (float)(1 + (int64_t)((s >> 40) % (uint64_t)(vocab - 1)))
                         : (float)((double)(s >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
    }
    return vocab;
}

void cli_fused_kinds(const ts_model *m, int head, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int j = 1; j < ts_model_layer_count(m) && used + 1 < cap; j++) {
        ts_layer_info li;
        if (j == head || ts_model_layer_fused_into(m, j) != head || ts_model_layer(m, j, &li)) continue;
        int w = snprintf(buf + used, cap - used, "+%s", li.kind);
        used = w < 0 || (size_t)w >= cap - used ? cap - 1 : used + (size_t)w;
    }
}
