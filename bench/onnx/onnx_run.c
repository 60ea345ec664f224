/* Imports an ONNX classifier with libtessera, checks it against PyTorch's outputs and
 * times inference: the tessera half of `make bench-onnx` (bench/onnx/run.sh).
 *
 *   onnx_run MODEL.onnx IO.bin [--threads T] [--batch B --reps R] [--winograd 0|1]
 *
 * IO.bin (bench/onnx/export_torchvision.py): x (2, 3, 224, 224) float32, then
 * PyTorch's logits (2, classes) float32. Prints one line:
 *   parity max_abs=.. max_rel=.. top1=2/2 [ms_b<B>=<median of R runs>]
 * where max_rel is the largest difference relative to the largest |logit| of the
 * sample. Exit 0 when it ran (parity is reported, not judged), 1 on an error. */
#include "tessera.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: onnx_run MODEL.onnx IO.bin [--threads T] [--batch B --reps R] [--winograd 0|1]\n");
        return 1;
    }
    int threads = 1, batch = 0, reps = 10, wino = 1;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--winograd")) wino = atoi(argv[i + 1]);
    }
    ts_ctx *ctx;
    if (ts_ctx_create(&ctx)) return 1;
    ts_model *m = NULL;
    ts_status st = ts_ctx_set_threads(ctx, threads);
    if (!st) st = ts_ctx_set_winograd(ctx, wino ? TS_WINOGRAD_INFERENCE : TS_WINOGRAD_OFF);
    if (!st) st = ts_onnx_import(ctx, argv[1], NULL, &m);
    if (st) {
        fprintf(stderr, "onnx_run: %s\n", ts_ctx_error(ctx));
        ts_ctx_free(ctx);
        return 1;
    }
    const ts_shape in = ts_model_input_shape(m);
    size_t per = 1;
    for (int k = 0; k < in.ndim; k++) per *= (size_t)in.dims[k];
    const int classes = ts_model_classes(m);
    FILE *f = fopen(argv[2], "rb");
    float *io = malloc((2 * per + 2 * (size_t)classes) * sizeof *io);
    float *y = malloc(2 * (size_t)classes * sizeof *y);
    int rc = 1;
    if (!f || !io || !y || fread(io, sizeof *io, 2 * per + 2 * (size_t)classes, f) != 2 * per + 2 * (size_t)classes) {
        fprintf(stderr, "onnx_run: %s: cannot read %zu inputs and %d logits per sample\n", argv[2], per, classes);
        goto out;
    }
    if ((st = ts_model_predict(ctx, m, io, 2, y))) {
        fprintf(stderr, "onnx_run: %s\n", ts_ctx_error(ctx));
        goto out;
    }
    const float *want = io + 2 * per;
    double max_abs = 0, max_rel = 0;
    int top1 = 0;
    for (int s = 0; s < 2; s++) {
        double scale = 0;
        for (int c = 0; c < classes; c++) scale = fmax(scale, fabs(want[s * classes + c]));
        for (int c = 0; c < classes; c++) {
            double d = fabs((double)y[s * classes + c] - want[s * classes + c]);
            max_abs = fmax(max_abs, d);
            max_rel = fmax(max_rel, d / (scale > 0 ? scale : 1));
        }
        top1 += argmax(y + s * classes, classes) == argmax(want + s * classes, classes);
    }
    printf("parity max_abs=%.3g max_rel=%.3g top1=%d/2", max_abs, max_rel, top1);
    if (batch > 0) {
        float *xb = malloc((size_t)batch * per * sizeof *xb), *yb = malloc((size_t)batch * (size_t)classes * sizeof *yb);
        double *t = malloc((size_t)(reps > 0 ? reps : 1) * sizeof *t);
        if (!xb || !yb || !t) {
            free(xb), free(yb), free(t);
            goto out;
        }
        for (int b = 0; b < batch; b++) memcpy(xb + (size_t)b * per, io + (size_t)(b % 2) * per, per * sizeof *xb);
        st = ts_model_predict(ctx, m, xb, batch, yb); /* warm-up: plans, primitives, buffers */
        for (int r = 0; r < reps && !st; r++) {
            double t0 = now_ms();
            st = ts_model_predict(ctx, m, xb, batch, yb);
            t[r] = now_ms() - t0;
        }
        if (!st) {
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            printf(" ms_b%d=%.3f", batch, t[reps / 2]);
        }
        free(xb), free(yb), free(t);
        if (st) {
            fprintf(stderr, "\nonnx_run: %s\n", ts_ctx_error(ctx));
            goto out;
        }
    }
    printf("\n");
    rc = 0;
out:
    if (f) fclose(f);
    free(io);
    free(y);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}
