/* tessera quantize: post-training int8 quantization of a trained CNN (docs/training.md). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static cli_opt quantize_opts[] = {
    {"out", "FILE", "the int8 model (.tsr, required)", NULL},
    {"data", "NAME|PATH", "calibration (training split) and evaluation (test split) data (default: the model's own)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"calib", "N", "training images the activation ranges are measured on (default 512), a seeded random choice", NULL},
    {"percentile", "P", "an input's range is this percentile of |x| over them (default 99.99; 100: the maximum)", NULL},
    {"limit", "N", "evaluate on the first N test images only (default: all)", NULL},
    {"no-eval", NULL, "skip the test-set comparison of the fp32 and int8 models", NULL},
    {"seed", "S", "which calibration images (default 0)", NULL},
    {"force", NULL, "replace the output even when it is write-protected", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels for the evaluation: oneDNN (default) or the plain-C reference", NULL},
    CLI_OPT_JSON,
};
static cli_cmd quantize_cmd = {
    "quantize", "MODEL --out FILE [--data NAME|PATH] [--calib N] [options]",
    "Post-training int8 quantization. Runs the model on --calib training images to measure the range of\n"
    "every convolution's input (one scale per tensor: 0..255 where it is never negative, as after a\n"
    "ReLU, else -128..127); weights get one scale per output channel when they are packed. Inference\n"
    "(eval, predict, bench) then runs the convolutions in int8 on oneDNN (VNNI or AMX where the CPU\n"
    "has them); every other layer stays fp32. Prints each convolution's scale and both models'\n"
    "test top-1 and images/s, and writes the model (the same weights, the scales in its metadata).",
    quantize_opts, sizeof quantize_opts / sizeof quantize_opts[0]};

/* top-1 and images/s of m on ds */
static ts_status measure(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, double *top1, double *rate) {
    ts_eval_report r;
    const double t0 = cli_now();
    ts_status st = ts_evaluate(ctx, m, ds, 128, &r);
    if (st) return st;
    const double s = cli_now() - t0;
    *top1 = r.top1;
    *rate = s > 0 ? (double)r.count / s : 0.0;
    ts_eval_report_free(&r);
    return TS_OK;
}

int cmd_quantize(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&quantize_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&quantize_cmd);
    const char *out = cli_get(&quantize_cmd, "out");
    if (npos != 1 || !out) {
        fprintf(stderr, "tessera quantize: expected one MODEL and --out FILE (see tessera quantize --help)\n");
        return EXIT_USAGE;
    }
    long calib, limit, seed;
    double pct;
    if (!cli_int(&quantize_cmd, "calib", 512, 1, 1 << 20, &calib) || !cli_int(&quantize_cmd, "limit", 0, 1, 1L << 40, &limit) ||
        !cli_int(&quantize_cmd, "seed", 0, 0, 0x7fffffffffffffffL, &seed) ||
        !cli_float(&quantize_cmd, "percentile", 99.99, 50.000001, 100.0, &pct))
        return EXIT_USAGE;
    if ((rc = cli_refuse_same(&quantize_cmd, "--out", out, (const char *const *)pos, 1))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *m = NULL, *q = NULL;
    ts_dataset *train = NULL, *test = NULL;
    ts_loader *ld = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&quantize_cmd, ctx))) goto done;
    cli_setup_files(&quantize_cmd, ctx);
    if ((st = cli_load_model(ctx, pos[0], 0, &m))) goto fail;
    if (ts_model_get_meta(m, "int8.inputs")) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s is already quantized (int8); quantize its fp32 original", pos[0]);
        goto fail;
    }
    const char *spec = cli_get(&quantize_cmd, "data");
    if (!spec) spec = ts_model_get_meta(m, "data");
    if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", pos[0]);
        goto fail;
    }
    const char *ddir = cli_data_dir(&quantize_cmd, m);
    if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TRAIN, ddir, 0, &train))) goto fail;
    const ts_shape in = ts_model_input_shape(m);
    const int64_t per = ts_shape_numel(&in);
    if (per != (int64_t)train->channels * train->height * train->width) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: images are %dx%dx%d, the model takes %lld values", spec, train->channels,
                              train->height, train->width, (long long)per);
        goto fail;
    }
    const int n = (int)(calib < train->count ? calib : train->count);
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto fail;
    x = malloc(sizeof *x * (size_t)n * (size_t)per);
    y = malloc(sizeof *y * (size_t)n);
    if (!x || !y) {
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory for %d calibration images", n);
        goto fail;
    }
    int got = 0;
    if ((st = ts_loader_create(ctx, train, n, 1, &pp, (uint64_t)seed, &ld))) goto fail;
    ts_loader_begin_epoch(ld, 0);
    if ((st = ts_loader_get(ld, 0, 0, x, y, &got))) goto fail;
    ts_quantize_config cfg;
    ts_quantize_config_default(&cfg);
    cfg.percentile = pct;
    const double t0 = cli_now();
    if ((st = ts_model_quantize(ctx, m, x, got, &cfg, &q))) goto fail;
    const double secs = cli_now() - t0;
    printf("calibrated %s on %d %s training images (percentile %g) in %.2fs\n", pos[0], got, spec, pct, secs);
    printf("  %-4s %-28s %-6s %12s\n", "#", "convolution", "input", "scale");
    if (J) {
        json_str(J, "model", pos[0]);
        json_int(J, "calibration_images", got);
        json_num(J, "percentile", pct);
        json_array(J, "layers");
    }
    int convs = 0;
    for (int i = 0; i < ts_model_layer_count(q); i++) {
        float s;
        int u8;
        ts_layer_info li;
        if (!ts_model_int8_layer(q, i, &s, &u8) || ts_model_layer(q, i, &li)) continue;
        convs++;
        printf("  %-4d %-28.28s %-6s %12.6g\n", i, li.name, u8 ? "u8" : "s8", (double)s);
        if (J) {
            json_object(J, NULL);
            json_str(J, "name", li.name);
            json_str(J, "input", u8 ? "u8" : "s8");
            json_num(J, "scale", s);
            json_close(J);
        }
    }
    if (J) json_close(J);
    printf("%d convolutions in int8; every other layer in fp32\n", convs);
    if (!cli_get(&quantize_cmd, "no-eval")) {
        if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TEST, ddir, limit, &test))) goto fail;
        double a32, r32, a8, r8;
        if ((st = measure(ctx, m, test, &a32, &r32)) || (st = measure(ctx, q, test, &a8, &r8))) goto fail;
        printf("test top-1 on %lld images: fp32 %.2f%%, int8 %.2f%% (%+.2f points); %.0f vs %.0f images/s in the "
               "evaluation (%d threads)\n",
               (long long)test->count, 100 * a32, 100 * a8, 100 * (a8 - a32), r32, r8, ts_ctx_get_threads(ctx));
        if (J) {
            json_int(J, "test_images", test->count);
            json_num(J, "fp32_top1", a32);
            json_num(J, "int8_top1", a8);
            json_num(J, "fp32_images_per_second", r32);
            json_num(J, "int8_images_per_second", r8);
        }
    }
    if ((st = ts_model_save(ctx, q, out))) goto fail;
    printf("wrote %s\n", out);
    if (J) json_str(J, "wrote", out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("quantize", ctx, st);
done:
    free(x);
    free(y);
    ts_loader_free(ld);
    ts_model_free(m);
    ts_model_free(q);
    ts_dataset_free(train);
    ts_dataset_free(test);
    ts_ctx_free(ctx);
    return rc;
}
