/* TEMPORARY (being written): reshape, transpose, pad, binary, matmul. */
#include "layers.h"

#define TODO_LAYER(kind)                                                                          \
    ts_status kind##_infer(ts_ctx *ctx, ts_model *m, layer *l, const char *source) {               \
        (void)m;                                                                                  \
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s:%d: %s not implemented yet", source, l->line, #kind); \
    }                                                                                             \
    ts_status kind##_forward(ts_ctx *ctx, ts_model *m, int li) {                                   \
        (void)m; (void)li;                                                                        \
        return ts_fail(ctx, TS_EUNSUPPORTED, #kind);                                              \
    }                                                                                             \
    ts_status kind##_backward(ts_ctx *ctx, ts_model *m, int li) {                                  \
        (void)m; (void)li;                                                                        \
        return ts_fail(ctx, TS_EUNSUPPORTED, #kind);                                              \
    }
TODO_LAYER(reshape)
TODO_LAYER(transpose)
TODO_LAYER(pad)
TODO_LAYER(binary)
TODO_LAYER(matmul)
int64_t matmul_macs(const ts_model *m, const layer *l) {
    (void)m; (void)l;
    return 0;
}
