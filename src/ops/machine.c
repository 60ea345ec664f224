/* The two lines of a roofline (Williams et al.; Sze et al.'s survey counts data
 * movement beside MACs): the fp32 rate this machine reaches and the memory bandwidth
 * it streams at, both measured, not read from a data sheet, because the CPU under
 * tessera changes between machines and a VM's clock is not its label's.
 *
 * - Compute peak: independent chains of fused multiply-adds in the widest vectors the
 *   CPU has (AVX-512, else AVX2+FMA, else plain floats), on every thread: what the
 *   cores can do at all, whatever a kernel's blocking.
 * - And what a well-blocked kernel reaches: a 2048x2048x2048 sgemm (oneDNN's where it
 *   is the backend, else the reference GEMM), best of a few.
 * - Memory: the STREAM triad a = b + s c over three 32 MiB arrays (well past the last
 *   level cache), best of a few, counting 3 x 4 bytes per element (no write-allocate). */
#include "ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <stdlib.h>
#include <omp.h>
#include <string.h>

#define PEAK_N 2048
#define FMA_ITERS 20000000L /* about 30 ms a try on a 4 GHz core */
#define PEAK_TRIES 3
#define TRIAD_COUNT ((size_t)8 << 20) /* floats per array: 32 MiB */
#define TRIAD_TRIES 4

/* FMA chains: 12 independent accumulators cover 2 FMA pipes of latency 4 (or 6); each
 * returns the flops it did and a value that depends on every step (so none is dropped). */
#define FMA_CHAINS 12
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double fma_avx512(long iters, float *sink) {
    __m512 acc[FMA_CHAINS];
    const __m512 mul = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], mul, add);
    for (int k = 1; k < FMA_CHAINS; k++) acc[0] = _mm512_add_ps(acc[0], acc[k]);
    *sink = _mm512_reduce_add_ps(acc[0]);
    return 2.0 * 16 * FMA_CHAINS * (double)iters;
}
__attribute__((target("avx2,fma"))) static double fma_avx2(long iters, float *sink) {
    __m256 acc[FMA_CHAINS];
    const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], mul, add);
    for (int k = 1; k < FMA_CHAINS; k++) acc[0] = _mm256_add_ps(acc[0], acc[k]);
    float v[8];
    _mm256_storeu_ps(v, acc[0]);
    *sink = v[0] + v[7];
    return 2.0 * 8 * FMA_CHAINS * (double)iters;
}
#endif
static double fma_plain(long iters, float *sink) {
    float acc[FMA_CHAINS];
    for (int k = 0; k < FMA_CHAINS; k++) acc[k] = (float)k;
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < FMA_CHAINS; k++) acc[k] = acc[k] * 0.9999999f + 1e-7f;
    for (int k = 1; k < FMA_CHAINS; k++) acc[0] += acc[k];
    *sink = acc[0];
    return 2.0 * FMA_CHAINS * (double)iters;
}

ts_status machine_fma_gflops(ts_ctx *ctx, double *gflops) {
    const int threads = ts_ctx_threads(ctx);
    int kind = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    kind = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    double best = 0.0;
    float sink[TS_THREADS_MAX] = {0};
    for (int t = 0; t < 3; t++) {
        double flops = 0.0;
        const double t0 = ts_monotonic_s();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        {
            const int id = omp_get_thread_num();
#if defined(__x86_64__)
            if (kind == 2) flops += fma_avx512(FMA_ITERS, &sink[id]);
            else if (kind == 1) flops += fma_avx2(FMA_ITERS, &sink[id]);
            else
#endif
                flops += fma_plain(FMA_ITERS / 8, &sink[id]);
        }
        const double sec = ts_monotonic_s() - t0;
        if (sec > 0 && flops / sec / 1e9 > best && sink[0] == sink[0]) best = flops / sec / 1e9;
    }
    (void)ctx;
    *gflops = best;
    return TS_OK;
}

ts_status machine_peak_gflops(ts_ctx *ctx, int use_dnnl, double *gflops) {
    const size_t n = PEAK_N;
    float *a = ts_alloc(ctx, 3 * n * n * sizeof(float), "peak measurement");
    if (!a) return TS_ENOMEM;
    float *b = a + n * n, *c = b + n * n;
    for (size_t i = 0; i < 2 * n * n; i++) a[i] = (float)((i * 2654435761u) >> 24) / 256.0f - 0.5f;
    const int threads = ts_ctx_threads(ctx);
    double best = 0.0;
    ts_status st = TS_OK;
    for (int t = 0; t < PEAK_TRIES + 1 && !st; t++) { /* the first run warms up (JIT, pages) */
        const double t0 = ts_monotonic_s();
        if (use_dnnl) st = gemm_dnnl(ctx, (int64_t)n, (int64_t)n, (int64_t)n, c, a, b);
        else gemm_ref(0, 0, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n, threads);
        const double s = ts_monotonic_s() - t0;
        const double rate = 2.0 * (double)n * n * n / s / 1e9;
        if (t > 0 && s > 0 && rate > best) best = rate;
    }
    ts_free(a);
    if (st) return st;
    *gflops = best;
    return TS_OK;
}

ts_status machine_bandwidth_gbs(ts_ctx *ctx, double *gbs) {
    const size_t n = TRIAD_COUNT;
    float *a = ts_alloc(ctx, 3 * n * sizeof(float), "bandwidth measurement");
    if (!a) return TS_ENOMEM;
    float *b = a + n, *c = b + n;
    const int threads = ts_ctx_threads(ctx);
    /* first touch by the threads that stream them (pages near their cores) */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        a[i] = 0.0f;
        b[i] = 1.0f;
        c[i] = 2.0f;
    }
    double best = 0.0;
    for (int t = 0; t < TRIAD_TRIES; t++) {
        const float s = 0.5f + (float)t;
        const double t0 = ts_monotonic_s();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        const double sec = ts_monotonic_s() - t0;
        const double rate = 3.0 * (double)n * sizeof(float) / sec / 1e9;
        if (sec > 0 && rate > best) best = rate;
        b[t] = a[n - 1 - (size_t)t]; /* the result is read: the loop cannot be dropped */
    }
    ts_free(a);
    *gbs = best;
    return TS_OK;
}
