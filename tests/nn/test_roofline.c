/* Where the cost goes (info --profile): each layer's MACs, parameters and the bytes it
 * must move, by hand on a small graph, and the measured roofline's figures sane. */
#include "common/test.h"
#include "tessera.h"

#include <string.h>

static const char *ARCH = "input shape=3x8x8 classes=10\n"
                          "conv2d name=c out=4 kernel=3 padding=1 bias=1\n"
                          "batchnorm name=bn\n"
                          "relu name=r\n"
                          "add name=a in=r,bn\n"
                          "flatten name=f\n"
                          "dense name=fc out=10\n";

static void test_layer_costs(void) {
    ts_ctx *ctx = NULL;
    ts_model *m = NULL;
    CHECK(ts_ctx_create(&ctx) == TS_OK, "ctx");
    CHECK(ts_model_from_arch(ctx, ARCH, "t", NULL, 0, 1, &m) == TS_OK, "model: %s", ts_ctx_error(ctx));
    ts_layer_cost c;
    CHECK(ts_model_layer_cost(m, 0, &c) == TS_OK && c.macs == 0 && c.in_bytes == 0 && c.out_bytes == 0, "input");
    /* conv: 4 x 3 x 3 x 3 MACs per output position, 8x8 positions (padding counted) */
    CHECK(ts_model_layer_cost(m, 1, &c) == TS_OK, "conv");
    CHECK(c.macs == 4 * 27 * 64 && c.params == 4 * 27 + 4 && c.weight_bytes == 4 * (4 * 27 + 4), "conv counts: %lld %lld %lld",
          (long long)c.macs, (long long)c.params, (long long)c.weight_bytes);
    CHECK(c.in_bytes == 4 * 3 * 64 && c.out_bytes == 4 * 4 * 64, "conv bytes: %lld %lld", (long long)c.in_bytes,
          (long long)c.out_bytes);
    /* batch norm: 2 x 4 parameters, 2 x 4 running statistics read */
    CHECK(ts_model_layer_cost(m, 2, &c) == TS_OK && c.params == 8 && c.weight_bytes == 4 * 16, "bn: %lld %lld",
          (long long)c.params, (long long)c.weight_bytes);
    /* add reads both inputs */
    CHECK(ts_model_layer_cost(m, 4, &c) == TS_OK && c.in_bytes == 2 * 4 * 4 * 64 && c.out_bytes == 4 * 4 * 64, "add");
    /* flatten of a computed layer shares its buffer: nothing moves */
    CHECK(ts_model_layer_cost(m, 5, &c) == TS_OK && c.in_bytes == 0 && c.out_bytes == 0, "flatten moves nothing");
    CHECK(ts_model_layer_cost(m, 6, &c) == TS_OK && c.macs == 10 * 256 && c.in_bytes == 4 * 256 && c.out_bytes == 40,
          "dense");
    /* the MACs are ts_layer_info's */
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        CHECK(ts_model_layer(m, i, &li) == TS_OK && ts_model_layer_cost(m, i, &c) == TS_OK && li.macs == c.macs &&
                  li.params == c.params,
              "layer %d: the same MACs and parameters as info", i);
    }
    CHECK(ts_model_layer_cost(m, 7, &c) == TS_EINVAL && ts_model_layer_cost(m, -1, &c) == TS_EINVAL, "out of range");
    ts_model_free(m);
    ts_ctx_free(ctx);
}

static void test_roofline(void) {
    ts_ctx *ctx = NULL;
    CHECK(ts_ctx_create(&ctx) == TS_OK && ts_ctx_set_threads(ctx, 1) == TS_OK, "ctx");
    ts_roofline r;
    CHECK(ts_machine_roofline(ctx, &r) == TS_OK, "roofline: %s", ts_ctx_error(ctx));
    /* sane for any CPU of this century, loaded or not */
    CHECK(r.threads == 1 && r.peak_gflops > 0.5 && r.peak_gflops < 1e5, "peak %g", r.peak_gflops);
    CHECK(r.gemm_gflops > 0.1 && r.bandwidth_gbs > 0.1 && r.bandwidth_gbs < 1e4, "sgemm %g, bandwidth %g",
          r.gemm_gflops, r.bandwidth_gbs);
    CHECK(r.ridge > 0 && r.ridge == r.peak_gflops / r.bandwidth_gbs, "ridge %g", r.ridge);
    CHECK(ts_machine_roofline(ctx, NULL) == TS_EINVAL, "NULL refused");
    ts_ctx_free(ctx);
}

int main(void) {
    RUN(test_layer_costs);
    RUN(test_roofline);
    TEST_MAIN_END("test_roofline");
}
