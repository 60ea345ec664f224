/* TEMPORARY (being written): elu, selu, hardsigmoid, clip, prelu, globalmaxpool. */
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
TODO_LAYER(eltwise)
TODO_LAYER(prelu)
TODO_LAYER(globalmaxpool)
size_t globalmaxpool_aux(ts_ctx *ctx, const ts_model *m, const layer *l, int n) {
    (void)ctx; (void)m; (void)l; (void)n;
    return 0;
}
