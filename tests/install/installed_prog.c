/* Built by tests/install/test_install.sh against an installed libtessera (the
 * headers and flags pkg-config gives): builds the zoo's lenet5 for 1x28x28 inputs
 * and 10 classes, runs it on zeros, and reports a failed load's message. Prints
 * "ok VERSION CLASSES LOGIT0" and exits 0 when all went as expected. */
#include <tessera.h>

#include <math.h>
#include <stdio.h>

int main(void) {
    ts_ctx *ctx = NULL;
    ts_model *m = NULL;
    if (ts_ctx_create(&ctx)) return 1;
    ts_shape in = {3, {1, 28, 28}};
    const char *arch = ts_zoo_arch("lenet5");
    if (!arch || ts_model_from_arch(ctx, arch, "lenet5", &in, 10, 1, &m)) {
        fprintf(stderr, "lenet5: %s\n", ts_ctx_error(ctx));
        return 1;
    }
    static float x[2 * 28 * 28], logits[2 * 10];
    if (ts_model_predict(ctx, m, x, 2, logits)) {
        fprintf(stderr, "predict: %s\n", ts_ctx_error(ctx));
        return 1;
    }
    ts_model *none = NULL;
    ts_status st = ts_model_load(ctx, "no-such-model.tsr", &none);
    if (st != TS_EIO || !*ts_ctx_error(ctx)) {
        fprintf(stderr, "loading a missing file gave %s: '%s'\n", ts_status_name(st), ts_ctx_error(ctx));
        return 1;
    }
    int ok = isfinite(logits[0]) && logits[0] == logits[10]; /* same input, same logits */
    printf("%s %s %d %.6f\n", ok ? "ok" : "bad", TS_VERSION_STRING, ts_model_classes(m), logits[0]);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return ok ? 0 : 1;
}
