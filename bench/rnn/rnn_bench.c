/* Tokens per second of a sequence classifier (embedding 64 -> one recurrent layer of
 * 128 units read to its final state -> dense 151, the zoo's *-clinc shape) at inference
 * and for one training step (forward + backward), median of runs; the PyTorch side is
 * torch_rnn.py with the same sizes. Usage:
 *   rnn_bench CELL BATCH STEPS THREADS RUNS [OUT.onnx]     (CELL: lstm, gru, rnn)
 * With OUT.onnx it also writes the model (random weights) as ONNX, which
 * ort_rnn.js times in onnxruntime. RNN_BF16=1 in the environment: bfloat16 mixed
 * precision (ts_ctx_set_bf16). */
#include "tessera.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: rnn_bench CELL BATCH STEPS THREADS RUNS [OUT.onnx]\n");
        return 2;
    }
    const char *cell = argv[1];
    const int batch = atoi(argv[2]), steps = atoi(argv[3]), threads = atoi(argv[4]), runs = atoi(argv[5]);
    if (batch < 1 || steps < 1 || threads < 1 || runs < 1 || runs > 100) {
        fprintf(stderr, "rnn_bench: bad sizes\n");
        return 2;
    }
    /* RNN_HIDDEN: other layer widths than the zoo classifier's 128 */
    const int hidden = getenv("RNN_HIDDEN") ? atoi(getenv("RNN_HIDDEN")) : 128;
    if (hidden < 1 || hidden > 4096) {
        fprintf(stderr, "rnn_bench: RNN_HIDDEN out of 1..4096\n");
        return 2;
    }
    char arch[512];
    snprintf(arch, sizeof arch,
             "input shape=%d vocab=8000 classes=151\nembedding name=emb vocab=vocab dim=64\n"
             "%s name=r in=emb,input0 hidden=%d sequence=0\ndense name=fc out=classes\n",
             steps, cell, hidden);
    ts_ctx *ctx = NULL;
    ts_model *m = NULL;
    if (ts_ctx_create(&ctx) || ts_ctx_set_threads(ctx, threads) ||
        ts_model_from_arch(ctx, arch, "rnn_bench", NULL, 0, 1, &m)) {
        fprintf(stderr, "rnn_bench: %s\n", ctx ? ts_ctx_error(ctx) : "out of memory");
        return 1;
    }
    const int bf16 = getenv("RNN_BF16") && atoi(getenv("RNN_BF16"));
    if (bf16 && ts_ctx_set_bf16(ctx, 1)) {
        fprintf(stderr, "rnn_bench: %s\n", ts_ctx_error(ctx));
        return 1;
    }
    float *x = malloc(sizeof *x * (size_t)batch * steps), *y = malloc(sizeof *y * (size_t)batch * 151);
    float *dy = malloc(sizeof *dy * (size_t)batch * 151);
    double *ti = malloc(sizeof *ti * (size_t)runs), *tt = malloc(sizeof *tt * (size_t)runs);
    if (!x || !y || !dy || !ti || !tt) return 1;
    for (int i = 0; i < batch * steps; i++) x[i] = (float)(1 + (i * 7919) % 7999);
    for (int i = 0; i < batch * 151; i++) dy[i] = 0.001f * (float)(i % 13);
    for (int r = -1; r < runs; r++) { /* one warm-up */
        double t0 = now();
        if (ts_model_predict(ctx, m, x, batch, y)) break;
        if (r >= 0) ti[r] = now() - t0;
        t0 = now();
        if (ts_model_forward_train(ctx, m, x, batch, y, 1) || ts_model_backward(ctx, m, dy)) break;
        if (r >= 0) tt[r] = now() - t0;
    }
    if (*ts_ctx_error(ctx)) {
        fprintf(stderr, "rnn_bench: %s\n", ts_ctx_error(ctx));
        return 1;
    }
    if (argc == 7 && ts_onnx_export(ctx, m, argv[6])) {
        fprintf(stderr, "rnn_bench: %s\n", ts_ctx_error(ctx));
        return 1;
    }
    qsort(ti, (size_t)runs, sizeof *ti, cmp);
    qsort(tt, (size_t)runs, sizeof *tt, cmp);
    const double tok = (double)batch * steps, mi = ti[runs / 2], mt = tt[runs / 2];
    printf("tessera%s %s batch %d steps %d threads %d: inference %.2f ms (%.0f tokens/s), training step %.2f ms "
           "(%.0f tokens/s)\n", bf16 ? " bf16" : "", cell, batch, steps, threads, 1e3 * mi, tok / mi, 1e3 * mt, tok / mt);
    free(x);
    free(y);
    free(dy);
    free(ti);
    free(tt);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return 0;
}
