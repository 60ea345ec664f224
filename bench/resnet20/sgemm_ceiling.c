/* The machine's fp32 matrix-multiply ceiling as oneDNN reaches it: dnnl_sgemm on
 * square 2048 matrices, best of several runs, with the thread count of
 * OMP_NUM_THREADS. bench/resnet20/run.sh divides achieved GFLOP/s by it. */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) return 1;
    for (long i = 0; i < (long)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = now();
        if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) return 1;
        double t = now() - t0;
        if (r > 0 && t < best) best = t;
    }
    printf("sgemm_gflops %.1f\n", 2.0 * n * n * (double)n / best / 1e9);
    free(a);
    free(b);
    free(c);
    return 0;
}
