/* tessera bench: latency and throughput of any model (a .tsr, an ONNX file, a zoo
 * name or an .arch file) on random input: inference by default, a training step
 * (forward, backward, SGD update) with --train. */
#define _XOPEN_SOURCE 700
#include "cli_exit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static cli_opt bench_opts[] = {
    {"batch", "N", "batch size (default 1)", NULL},
    {"train", NULL, "time a training step (forward, backward, SGD momentum update) instead of inference", NULL},
    {"iters", "K", "timed iterations (default: as many as fit in --seconds)", NULL},
    {"seconds", "S", "time to spend measuring when --iters is not given (default 3)", NULL},
    {"warmup", "K", "untimed iterations first (default 3)", NULL},
    {"input", "CxHxW", "for an architecture or a free-size model (input free=hw): the input shape (default as declared)",
     NULL},
    {"classes", "N", "for an architecture: the class count", NULL},
    {"bf16", NULL, "convolutions and recurrent layers in bfloat16 mixed precision (ts_ctx_set_bf16), inference or --train", NULL},
    {"winograd", "MODE", "where 3x3 stride-1 convolutions (16+ channels in, 32+ out) run Winograd kernels: off, inference (default) or training (also the training passes; results drift from direct by float rounding)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"constant-time", NULL, "inference in constant-time mode (docs/security.md): what it costs", NULL},
    {"profile", NULL, "inference: also the time per layer (fused layers under their convolution) and per kind; "
                      "--train: each layer's activation kept for backward, plain and as kept", NULL},
    {"compress-activations", "EB|auto", "--train: activations kept for backward compressed within EB times each "
                                        "tensor's range (0 <= EB < 1; 0: lossless), or per layer from the gradients "
                                        "(auto; docs/compressed-activations.md)", NULL},
    CLI_OPT_EXIT_THRESHOLD,
    CLI_OPT_JSON,
};
static cli_cmd bench_cmd = {"bench", "MODEL.tsr|MODEL.onnx|ARCH [--batch N] [options]",
                            "Prints the median time per batch (with the 10th and 90th percentiles), images per\n"
                            "second, GFLOP/s (2 x multiply-adds, x3 for a training step), and the peak resident\n"
                            "memory of the process. Inputs are random; weights are the model's.",
                            bench_opts, sizeof bench_opts / sizeof bench_opts[0]};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A free-size model at the size `in` asks for: the same architecture and weights with
 * that size declared, so that every mode (training, profile) and the MAC count see it. */
static ts_status resize_model(ts_ctx *ctx, const char *spec, const ts_shape *in, ts_model **m) {
    const ts_shape d = ts_model_input_shape(*m);
    if (!in->ndim || !ts_model_any_size(*m) || !memcmp(in->dims, d.dims, sizeof d.dims)) return TS_OK;
    if (in->ndim != 3 || in->dims[0] != d.dims[0])
        return ts_ctx_set_error(ctx, TS_ESHAPE, "--input: %s takes %lldxHxW images", spec, (long long)d.dims[0]);
    ts_model *r;
    ts_status st = ts_model_from_arch(ctx, ts_model_arch_text(*m), spec, in, 0, 1, &r);
    for (int t = 0; !st && t < ts_model_tensor_count(r); t++) {
        ts_tensor_info a, b;
        ts_model_tensor(*m, t, &a);
        ts_model_tensor(r, t, &b);
        memcpy(b.data, a.data, (size_t)a.numel * sizeof(float));
    }
    if (st) return st;
    ts_model_free(*m);
    *m = r;
    return TS_OK;
}

static ts_status load_any(ts_ctx *ctx, const char *spec, const ts_shape *in, int classes, ts_model **m) {
    const char *zoo = ts_zoo_arch(spec);
    if (zoo) return ts_model_from_arch(ctx, zoo, spec, in, classes, 1, m);
    if (cli_ends_with(spec, ".arch")) return ts_model_from_arch_file(ctx, spec, in, classes, 1, m);
    ts_status st = cli_load_model(ctx, spec, CLI_LOAD_ONNX, m);
    return st ? st : resize_model(ctx, spec, in, m);
}

/* one iteration: inference (through the early exit when rho >= 0, which samples left
 * in exited), or a whole training step */
static ts_status step(ts_ctx *ctx, ts_model *m, ts_optimizer *opt, const float *x, const int32_t *y, int n,
                      float *logits, float *dl, float rho, int *exited) {
    if (!opt && rho >= 0) return ts_model_predict_exit(ctx, m, x, n, rho, logits, exited);
    if (!opt) return ts_model_predict(ctx, m, x, n, logits);
    ts_status st = ts_model_forward_train(ctx, m, x, n, logits, 1);
    if (st) return st;
    ts_softmax_cross_entropy(n, ts_model_classes(m), logits, y, 0.0f, dl);
    if ((st = ts_model_backward(ctx, m, dl))) return st;
    return ts_optimizer_step(ctx, opt, 0.01f);
}

typedef struct prof_row {
    int layer;
    double s;
} prof_row;

static int prof_by_time(const void *a, const void *b) {
    const prof_row *x = a, *y = b;
    return x->s > y->s ? -1 : x->s < y->s ? 1 : x->layer - y->layer;
}

/* `--profile`: `iters` more inference calls timed per layer; the slowest layers, then
 * the time per kind of layer (a fused chain counts as its own kind, "conv2d+relu"). */
static ts_status profile(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, long iters) {
    const int nl = ts_model_layer_count(m);
    double *sec = calloc((size_t)nl, sizeof *sec);
    prof_row *rows = calloc((size_t)nl, sizeof *rows), *kinds = calloc((size_t)nl, sizeof *kinds);
    char (*names)[96] = calloc((size_t)nl, sizeof *names);
    ts_status st = TS_OK;
    if (!sec || !rows || !kinds || !names) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory for the profile");
    for (long i = 0; i < iters && !st; i++) st = ts_model_predict_profile(ctx, m, x, n, logits, sec);
    if (!st) {
        double total = 0.0;
        int nk = 0;
        for (int i = 0; i < nl; i++) {
            rows[i] = (prof_row){i, sec[i] / (double)iters};
            total += rows[i].s;
            ts_layer_info li;
            if (ts_model_layer_fused_into(m, i) != i || ts_model_layer(m, i, &li)) continue;
            char tail[80];
            cli_fused_kinds(m, i, tail, sizeof tail);
            snprintf(names[i], sizeof names[i], "%s%s", li.kind, tail);
            int k = 0;
            while (k < nk && strcmp(names[kinds[k].layer], names[i])) k++;
            if (k == nk) kinds[nk++] = (prof_row){i, 0.0};
            kinds[k].s += rows[i].s;
        }
        qsort(rows, (size_t)nl, sizeof *rows, prof_by_time);
        qsort(kinds, (size_t)nk, sizeof *kinds, prof_by_time);
        printf("profile over %ld calls: %.3f ms per batch in layers\n", iters, 1e3 * total);
        printf("  %-34s %-30s %9s %6s\n", "slowest layers", "kind", "ms", "share");
        for (int i = 0; i < nl && i < 15 && rows[i].s > 0.0; i++) {
            ts_layer_info li;
            if (ts_model_layer(m, rows[i].layer, &li)) continue;
            printf("  %-34.34s %-30.30s %9.3f %5.1f%%\n", li.name, names[rows[i].layer], 1e3 * rows[i].s,
                   100.0 * rows[i].s / total);
        }
        printf("  %-34s %-30s %9s %6s\n", "by kind", "layers", "ms", "share");
        for (int k = 0; k < nk && kinds[k].s > 0.0; k++) {
            int count = 0;
            for (int i = 0; i < nl; i++) count += ts_model_layer_fused_into(m, i) == i && !strcmp(names[i], names[kinds[k].layer]);
            printf("  %-34.34s %-30d %9.3f %5.1f%%\n", names[kinds[k].layer], count, 1e3 * kinds[k].s,
                   100.0 * kinds[k].s / total);
        }
    }
    free(sec);
    free(rows);
    free(kinds);
    free(names);
    return st;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* --train: the activation memory of the last step (exact, from the plan and the
 * compressed sizes); with per_layer, each layer kept for backward. */
static void activation_report(const ts_model *m, json_out *J, int per_layer) {
    ts_activation_memory am;
    if (ts_model_activation_memory(m, &am)) return;
    const double ratio = am.kept_bytes ? (double)am.kept_plain_bytes / (double)am.kept_bytes : 0.0;
    printf("activation buffers: %.1f MiB (%.1f MiB as one buffer per layer)\n", mib(am.buffer_bytes), mib(am.plain_bytes));
    if (am.compressed)
        printf("kept for backward: %.2f MiB compressed of %.1f MiB (%.1fx; the stores hold %.2f MiB)\n",
               mib(am.kept_bytes), mib(am.kept_plain_bytes), ratio, mib(am.held_bytes));
    else
        printf("kept for backward: %.1f MiB\n", mib(am.kept_bytes));
    if (per_layer) printf("  %-34s %-10s %10s %10s %7s %10s\n", "layer", "kind", "plain KiB", "kept KiB", "ratio", "eb");
    if (J) {
        json_int(J, "activation_buffer_bytes", (long long)am.buffer_bytes);
        json_int(J, "activation_plain_bytes", (long long)am.plain_bytes);
        json_int(J, "activation_kept_bytes", (long long)am.kept_bytes);
        json_int(J, "activation_kept_plain_bytes", (long long)am.kept_plain_bytes);
        json_int(J, "activation_store_bytes", (long long)am.held_bytes);
        json_num(J, "activation_ratio", ratio);
        if (per_layer) json_array(J, "activations");
    }
    for (int i = 0; per_layer && i < ts_model_layer_count(m); i++) {
        ts_activation_layer al;
        ts_layer_info li;
        if (ts_model_activation_layer(m, i, &al) || !al.kept || ts_model_layer(m, i, &li)) continue;
        const double r = al.bytes ? (double)al.plain_bytes / (double)al.bytes : 0.0;
        printf("  %-34.34s %-10.10s %10.1f %10.1f %6.1fx %10.3g\n", li.name, li.kind, (double)al.plain_bytes / 1024.0,
               (double)al.bytes / 1024.0, r, (double)al.eb);
        if (J) {
            json_object(J, NULL);
            json_str(J, "layer", li.name);
            json_int(J, "plain_bytes", (long long)al.plain_bytes);
            json_int(J, "bytes", (long long)al.bytes);
            json_num(J, "ratio", r);
            json_num(J, "eb", al.eb);
            json_close(J);
        }
    }
    if (J && per_layer) json_close(J);
}

int cmd_bench(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&bench_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&bench_cmd);
    if (npos != 1) {
        fprintf(stderr, "tessera bench: expected one MODEL or ARCH (see tessera bench --help)\n");
        return EXIT_USAGE;
    }
    long batch, iters, warmup, classes;
    double seconds;
    if (!cli_int(&bench_cmd, "batch", 1, 1, 1 << 16, &batch) || !cli_int(&bench_cmd, "iters", 0, 0, 1 << 24, &iters) ||
        !cli_int(&bench_cmd, "warmup", 3, 0, 1 << 20, &warmup) || !cli_int(&bench_cmd, "classes", 0, 0, 1 << 24, &classes) ||
        !cli_float(&bench_cmd, "seconds", 3.0, 0.01, 1e6, &seconds))
        return EXIT_USAGE;
    ts_shape in = {0, {0}};
    const char *ins = cli_get(&bench_cmd, "input");
    for (const char *p = ins; p && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1 << 24 || in.ndim == TS_MAX_DIMS || (*end && *end != 'x')) {
            fprintf(stderr, "tessera bench: --input: '%s' is not like 3x32x32\n", ins);
            return EXIT_USAGE;
        }
        in.dims[in.ndim++] = v;
        p = *end ? end + 1 : end;
    }
    if (cli_get(&bench_cmd, "train") && cli_get(&bench_cmd, "constant-time")) {
        /* constant time is a property of inference; a training step has none to time */
        fprintf(stderr, "tessera bench: --constant-time times inference; it cannot be combined with --train\n");
        return EXIT_USAGE;
    }
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *m = NULL;
    ts_optimizer *opt = NULL;
    float *x = NULL, *logits = NULL, *dl = NULL;
    int32_t *y = NULL;
    int *exited = NULL;
    double *times = NULL;
    ts_status st = TS_OK;
    int train = cli_get(&bench_cmd, "train") != NULL;
    if ((rc = cli_setup_ctx(&bench_cmd, ctx))) goto done;
    if (cli_get(&bench_cmd, "constant-time")) ts_ctx_set_constant_time(ctx, 1);
    double eb = -1.0;
    int adaptive = 0;
    if (!cli_compress_activations(&bench_cmd, &eb, &adaptive)) {
        rc = EXIT_USAGE;
        goto done;
    }
    if (!train && cli_get(&bench_cmd, "compress-activations")) {
        fprintf(stderr, "tessera bench: --compress-activations applies to --train (inference keeps no activations)\n");
        rc = EXIT_USAGE;
        goto done;
    }
    if ((rc = cli_setup_bf16(&bench_cmd, ctx))) goto done;
    if ((st = load_any(ctx, pos[0], &in, (int)classes, &m))) goto fail;
    if (eb >= 0 && (st = ts_model_set_activation_compression(ctx, m, (float)eb, adaptive))) goto fail;
    float rho;
    if ((rc = cli_exit_threshold(&bench_cmd, m, ctx, &rho))) goto done;
    if (rho >= 0 && (train || cli_get(&bench_cmd, "profile"))) {
        fprintf(stderr, "tessera bench: --exit-threshold times inference through the exit, not --train or --profile\n");
        rc = EXIT_USAGE;
        goto done;
    }
    ts_shape shape = ts_model_input_shape(m);
    int64_t per = ts_shape_numel(&shape), k = ts_model_classes(m), n = batch;
    x = malloc((size_t)(per * n) * sizeof *x);
    logits = malloc((size_t)(k * n) * sizeof *logits);
    dl = malloc((size_t)(k * n) * sizeof *dl);
    y = malloc((size_t)n * sizeof *y);
    exited = calloc((size_t)n, sizeof *exited);
    if (!x || !logits || !dl || !y || !exited) {
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory for a batch of %ld", batch);
        goto fail;
    }
    const int64_t vocab = cli_random_batch(m, x, n);
    for (int64_t i = 0; i < n; i++) y[i] = (int32_t)(i % k);
    if (train) {
        ts_optim_config oc;
        ts_optim_config_default(&oc, TS_OPT_SGD);
        if ((st = ts_optimizer_create(ctx, m, &oc, &opt))) goto fail;
    }
    for (long i = 0; i < warmup; i++)
        if ((st = step(ctx, m, opt, x, y, (int)n, logits, dl, rho, exited))) goto fail;
    long cap = iters ? iters : 1 << 20;
    times = malloc((size_t)cap * sizeof *times);
    if (!times) {
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
        goto fail;
    }
    long done_iters = 0;
    double t_start = cli_now();
    while (done_iters < cap) {
        double t0 = cli_now();
        if ((st = step(ctx, m, opt, x, y, (int)n, logits, dl, rho, exited))) goto fail;
        times[done_iters++] = cli_now() - t0;
        if (!iters && cli_now() - t_start >= seconds && done_iters >= 5) break;
    }
    qsort(times, (size_t)done_iters, sizeof *times, cmp_double);
    double med = times[done_iters / 2], p10 = times[done_iters / 10], p90 = times[(done_iters * 9) / 10];
    int64_t macs = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (!ts_model_layer(m, i, &li)) macs += li.macs;
    }
    double flop = 2.0 * (double)macs * (double)n * (train ? 3.0 : 1.0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s: %s, batch %ld, %d threads, %s kernels%s, %ld iterations\n", pos[0], train ? "training step" : "inference",
           batch, ts_ctx_get_threads(ctx), ts_ctx_get_constant_time(ctx) ? "constant-time"
           : ts_ctx_get_backend(ctx) == TS_BACKEND_REF ? "reference" : "oneDNN",
           ts_ctx_get_bf16(ctx) ? ", bf16" : "", done_iters);
    printf("time per batch: median %.3f ms (p10 %.3f, p90 %.3f)\n", 1e3 * med, 1e3 * p10, 1e3 * p90);
    if (vocab > 1) /* a sample is a text of `per` token ids */
        printf("throughput: %.1f texts/s, %.0f tokens/s, %.1f GFLOP/s (%.3f GFLOP per text%s)\n", (double)n / med,
               (double)(n * per) / med, flop / med / 1e9, flop / (double)n / 1e9, train ? ", x3 for forward+backward" : "");
    else
        printf("throughput: %.1f images/s, %.1f GFLOP/s (%.3f GFLOP per image%s)\n", (double)n / med, flop / med / 1e9,
               flop / (double)n / 1e9, train ? ", x3 for forward+backward" : "");
    printf("peak resident memory: %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    int left = 0;
    for (int64_t i = 0; rho >= 0 && i < n; i++) left += exited[i];
    if (train) activation_report(m, J, cli_get(&bench_cmd, "profile") != NULL);
    if (rho >= 0)
        printf("early exit at rho %.2f: %d of %lld samples of the (random) batch left at the exit; GFLOP/s counts "
               "every layer\n", rho, left, (long long)n);
    if (J) {
        json_str(J, "model", pos[0]);
        json_str(J, "mode", train ? "training step" : "inference");
        json_int(J, "batch", batch);
        json_int(J, "threads", ts_ctx_get_threads(ctx));
        json_str(J, "kernels", ts_ctx_get_constant_time(ctx)                ? "constant-time"
                               : ts_ctx_get_backend(ctx) == TS_BACKEND_REF ? "reference"
                                                                           : "oneDNN");
        json_bool(J, "bf16", ts_ctx_get_bf16(ctx));
        json_int(J, "iterations", done_iters);
        json_num(J, "median_ms", 1e3 * med);
        json_num(J, "p10_ms", 1e3 * p10);
        json_num(J, "p90_ms", 1e3 * p90);
        json_num(J, "images_per_second", (double)n / med);
        if (vocab > 1) json_num(J, "tokens_per_second", (double)(n * per) / med);
        json_num(J, "gflops", flop / med / 1e9);
        json_num(J, "gflop_per_image", flop / (double)n / 1e9);
        json_num(J, "peak_memory_mib", (double)ru.ru_maxrss / 1024.0);
        if (rho >= 0) {
            json_num(J, "exit_threshold", rho);
            json_int(J, "exited", left);
        }
    }
    if (!train && cli_get(&bench_cmd, "profile") && (st = profile(ctx, m, x, (int)n, logits, done_iters))) goto fail;
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("bench", ctx, st);
done:
    free(times);
    free(x);
    free(logits);
    free(dl);
    free(y);
    free(exited);
    ts_optimizer_free(opt);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}
