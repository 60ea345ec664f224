/* dudect-style timing-leak measurement of tessera inference (docs/security.md).
 *
 * After Reparaz, Balasch and Verbauwhede, "Dude, is my code constant time?" (DATE
 * 2017): time one operation on inputs of two classes, the class of each measurement
 * drawn at random so that both classes see the same machine noise, then compare the
 * two distributions of cycle counts with Welch's t-test, on all measurements and on
 * the measurements below each of 100 percentile thresholds (dudect's cropping of the
 * slow tail, where interrupts and other noise live). |t| above 4.5 says the timing
 * depends on the class; |t| above 10, that it certainly does.
 *
 * The operation is what a deployment runs for one request: preprocess the image
 * bytes (ts_preprocess_images, or _ct in constant-time mode), ts_model_predict on a
 * batch of one, and ts_argmax of the logits. Experiments (classes chosen to make the
 * default mode leak as much as possible):
 *   image      class A: an all-black image (every pixel 0: each convolution map is
 *              its bias, every ReLU and max-pooling window takes the same path);
 *              class B: random pixels
 *   subnormal  floats straight into ts_model_predict; class A: zeros; class B: random
 *              subnormal floats (|x| < 1.2e-38), the slow path of x86 floating point
 *   null       the image experiment with one random image for both classes: the |t|
 *              that noise alone gives on this machine (a check of the harness)
 *   zero       floats straight into ts_model_predict; class A: zeros; class B: random
 *              values in [-1, 1)
 * Modes: dnnl (the default: oneDNN kernels), ref (the reference kernels), ct
 * (ts_ctx_set_constant_time). A model built from an architecture gets the
 * preprocessing x = (pixel/255 - 0.5) / 0.5, so the black image is all -1: every
 * input negative, as a trained model's normalization also makes it.
 *
 *   dudect [--experiment image|zero|subnormal|null|all] [--modes dnnl,ref,ct] [--measurements N]
 *          [--arch small|NAME|FILE.arch | --model FILE.tsr] [--threads N] [--seed S]
 *
 * Prints one line per (experiment, mode): measurements per class, median cycles of
 * each class, |t| over all measurements, the largest |t| over the crops (and at
 * which percentile), and the median latency in microseconds. */
#include "tessera.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t cycles_begin(void) {
    _mm_lfence();
    return __rdtsc();
}
static inline uint64_t cycles_end(void) {
    unsigned aux;
    const uint64_t t = __rdtscp(&aux);
    _mm_lfence();
    return t;
}
#define CYCLE_UNIT "TSC cycles"
#else
static inline uint64_t cycles_begin(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static inline uint64_t cycles_end(void) { return cycles_begin(); }
#define CYCLE_UNIT "ns"
#endif

/* conv-relu-maxpool twice and a dense layer: every data-dependent kernel of a CNN
 * classifier (ReLU, max pooling, the argmax), about 0.2M multiply-adds */
static const char *SMALL_ARCH = "input shape=1x28x28 classes=10\n"
                                "conv2d name=conv1 out=8 kernel=3 padding=1\n"
                                "relu name=relu1\n"
                                "maxpool name=pool1 kernel=2\n"
                                "conv2d name=conv2 out=16 kernel=3 padding=1\n"
                                "relu name=relu2\n"
                                "maxpool name=pool2 kernel=2\n"
                                "flatten name=flat\n"
                                "dense name=fc out=classes\n";

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* cycle counter ticks per microsecond */
static double ticks_per_us(void) {
    const double t0 = now_s();
    const uint64_t c0 = cycles_begin();
    while (now_s() - t0 < 0.2) {
    }
    const uint64_t c1 = cycles_end();
    return (double)(c1 - c0) / ((now_s() - t0) * 1e6);
}

/* Welch's t over the measurements of each class below `limit` */
typedef struct welch {
    double n[2], mean[2], m2[2];
} welch;

static void welch_add(welch *w, int cls, double x) { /* Welford */
    w->n[cls] += 1;
    const double d = x - w->mean[cls];
    w->mean[cls] += d / w->n[cls];
    w->m2[cls] += d * (x - w->mean[cls]);
}

static double welch_t(const welch *w) {
    if (w->n[0] < 2 || w->n[1] < 2) return 0;
    const double v0 = w->m2[0] / (w->n[0] - 1), v1 = w->m2[1] / (w->n[1] - 1);
    const double den = sqrt(v0 / w->n[0] + v1 / w->n[1]);
    return den > 0 ? (w->mean[0] - w->mean[1]) / den : 0;
}

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define NCROPS 100

typedef struct result {
    long n[2];
    double median[2], median_all;
    double t_all, t_max, t_max_pct;
} result;

static void analyse(const uint64_t *t, const uint8_t *cls, long n, result *r) {
    uint64_t *sorted = malloc((size_t)n * sizeof *sorted);
    uint64_t *per[2] = {malloc((size_t)n * sizeof(uint64_t)), malloc((size_t)n * sizeof(uint64_t))};
    if (!sorted || !per[0] || !per[1]) {
        fprintf(stderr, "dudect: out of memory\n");
        exit(1);
    }
    memset(r, 0, sizeof *r);
    for (long i = 0; i < n; i++) {
        sorted[i] = t[i];
        per[cls[i]][r->n[cls[i]]++] = t[i];
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u64);
    for (int c = 0; c < 2; c++) {
        qsort(per[c], (size_t)r->n[c], sizeof(uint64_t), cmp_u64);
        r->median[c] = r->n[c] ? (double)per[c][r->n[c] / 2] : 0;
    }
    r->median_all = (double)sorted[n / 2];
    /* dudect's thresholds: percentile 1 - 0.5^(10 (k+1) / NCROPS), k = 0..NCROPS-1 */
    welch all, crop[NCROPS];
    memset(&all, 0, sizeof all);
    uint64_t limit[NCROPS];
    double pct[NCROPS];
    memset(crop, 0, sizeof crop);
    for (int k = 0; k < NCROPS; k++) {
        pct[k] = 1 - pow(0.5, 10.0 * (k + 1) / NCROPS);
        limit[k] = sorted[(long)(pct[k] * (double)(n - 1))];
    }
    for (long i = 0; i < n; i++) {
        welch_add(&all, cls[i], (double)t[i]);
        for (int k = 0; k < NCROPS; k++)
            if (t[i] < limit[k]) welch_add(&crop[k], cls[i], (double)t[i]);
    }
    r->t_all = welch_t(&all);
    r->t_max = fabs(r->t_all);
    r->t_max_pct = 100;
    for (int k = 0; k < NCROPS; k++) {
        const double tk = fabs(welch_t(&crop[k]));
        if (tk > r->t_max) {
            r->t_max = tk;
            r->t_max_pct = 100 * pct[k];
        }
    }
    free(sorted);
    free(per[0]);
    free(per[1]);
}

static void die(ts_ctx *ctx, const char *what) {
    fprintf(stderr, "dudect: %s: %s\n", what, ctx ? ts_ctx_error(ctx) : "failed");
    exit(1);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

typedef struct setup {
    const char *experiment, *arch, *model;
    long measurements;
    int threads;
    uint64_t seed;
} setup;

/* One (experiment, mode) run. Returns its result. */
static void run(const setup *su, const char *mode, result *r, double tick_us) {
    ts_ctx *ctx;
    if (ts_ctx_create(&ctx)) die(NULL, "context");
    if (ts_ctx_set_threads(ctx, su->threads)) die(ctx, "threads");
    const int ct = !strcmp(mode, "ct");
    ts_ctx_set_backend(ctx, !strcmp(mode, "dnnl") ? TS_BACKEND_DNNL : TS_BACKEND_REF);
    ts_ctx_set_constant_time(ctx, ct);
    ts_model *m;
    if (su->model) {
        if (ts_model_load(ctx, su->model, &m)) die(ctx, su->model);
    } else {
        const char *text = !strcmp(su->arch, "small") ? SMALL_ARCH : ts_zoo_arch(su->arch);
        if (!text) text = read_text(su->arch);
        if (!text) {
            fprintf(stderr, "dudect: --arch %s: not small, a zoo name or a readable file\n", su->arch);
            exit(2);
        }
        if (ts_model_from_arch(ctx, text, su->arch, NULL, 0, su->seed, &m)) die(ctx, "architecture");
    }
    const ts_shape in = ts_model_input_shape(m);
    if (in.ndim != 3) die(ctx, "the model's input is not an image");
    const int C = (int)in.dims[0], H = (int)in.dims[1], W = (int)in.dims[2], K = ts_model_classes(m);
    const size_t sz = (size_t)C * H * W;
    ts_preprocess pp;
    if (!su->model) {
        pp = (ts_preprocess){.channels = C, .mean = {0.5f, 0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f, 0.5f}};
        if (ts_model_set_preprocess(ctx, m, &pp)) die(ctx, "preprocessing");
    }
    if (ts_model_get_preprocess(ctx, m, &pp)) die(ctx, "preprocessing");
    const int null = !strcmp(su->experiment, "null"), image = null || !strcmp(su->experiment, "image");
    const int zero = !strcmp(su->experiment, "zero");
    /* the two classes' inputs; measurements run in batches whose inputs are copied in
     * first, one slot per measurement, as dudect does: where an input lies and which
     * lines the copy brought into the cache depend on its position, not its class */
    enum { BATCH = 512 };
    uint8_t *bytes[2] = {calloc(sz, 1), calloc(sz, 1)}, *bslots = calloc(BATCH * sz, 1);
    float *floats[2] = {calloc(sz, sizeof(float)), calloc(sz, sizeof(float))};
    float *fslots = calloc(BATCH * sz, sizeof(float)), *x = calloc(sz, sizeof(float));
    float *logits = calloc((size_t)K, sizeof(float));
    uint64_t *t = malloc((size_t)su->measurements * sizeof *t);
    uint8_t *cls = malloc((size_t)su->measurements), bcls[BATCH];
    if (!bytes[0] || !bytes[1] || !bslots || !floats[0] || !floats[1] || !fslots || !x || !logits || !t || !cls)
        die(NULL, "memory");
    rng_state = su->seed * 0x2545F4914F6CDD1DULL + 1;
    for (size_t i = 0; i < sz; i++) {
        bytes[1][i] = (uint8_t)rng_next();
        /* a random subnormal: mantissa bits only, random sign */
        const uint32_t u = (uint32_t)(rng_next() & 0x807fffffu) | 1u;
        memcpy(&floats[1][i], &u, sizeof u);
        if (zero) floats[1][i] = (float)(rng_next() >> 40) / 8388608.0f - 1.0f;
    }
    if (null) memcpy(bytes[0], bytes[1], sz);
    volatile int sink = 0;
    const long warm = su->measurements / 10 < 1000 ? su->measurements / 10 : 1000;
    for (long b0 = -warm; b0 < su->measurements; b0 += BATCH) {
        const long nb = su->measurements - b0 < BATCH ? su->measurements - b0 : BATCH;
        for (long j = 0; j < nb; j++) {
            bcls[j] = (uint8_t)(rng_next() & 1);
            if (image) memcpy(bslots + (size_t)j * sz, bytes[bcls[j]], sz);
            else memcpy(fslots + (size_t)j * sz, floats[bcls[j]], sz * sizeof(float));
        }
        for (long j = 0; j < nb; j++) {
            const uint8_t *bx = bslots + (size_t)j * sz;
            const float *in = image ? x : fslots + (size_t)j * sz;
            const uint64_t t0 = cycles_begin();
            if (image) {
                if (ct) ts_preprocess_images_ct(&pp, bx, 1, C, H, W, x);
                else ts_preprocess_images(&pp, bx, 1, C, H, W, x);
            }
            if (ts_model_predict(ctx, m, in, 1, logits)) die(ctx, "predict");
            sink += ts_argmax(logits, K);
            const uint64_t t1 = cycles_end();
            if (b0 + j >= 0) {
                t[b0 + j] = t1 - t0;
                cls[b0 + j] = bcls[j];
            }
        }
    }
    (void)sink;
    analyse(t, cls, su->measurements, r);
    printf("%-10s %-5s %9ld %9ld %12.0f %12.0f %9.2f %9.2f %7.2f %10.2f\n", su->experiment, mode, r->n[0], r->n[1],
           r->median[0], r->median[1], fabs(r->t_all), r->t_max, r->t_max_pct, r->median_all / tick_us);
    fflush(stdout);
    free(bytes[0]);
    free(bytes[1]);
    free(bslots);
    free(fslots);
    free(floats[0]);
    free(floats[1]);
    free(x);
    free(logits);
    free(t);
    free(cls);
    ts_model_free(m);
    ts_ctx_free(ctx);
}

static void usage(void) {
    fprintf(stderr, "usage: dudect [--experiment image|zero|subnormal|null|all] [--modes dnnl,ref,ct] [--measurements N]\n"
                    "              [--arch small|NAME|FILE.arch | --model FILE.tsr] [--threads N] [--seed S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    setup su = {.experiment = "all", .arch = "small", .model = NULL, .measurements = 100000, .threads = 1, .seed = 1};
    const char *modes = "dnnl,ref,ct";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--experiment")) su.experiment = v;
        else if (!strcmp(a, "--modes")) modes = v;
        else if (!strcmp(a, "--measurements")) su.measurements = atol(v);
        else if (!strcmp(a, "--arch")) su.arch = v;
        else if (!strcmp(a, "--model")) su.model = v;
        else if (!strcmp(a, "--threads")) su.threads = atoi(v);
        else if (!strcmp(a, "--seed")) su.seed = strtoull(v, NULL, 10);
        else usage();
        i++;
    }
    if (su.measurements < 100 || su.threads < 1) usage();
    const double tick_us = ticks_per_us();
    printf("# dudect: %ld measurements per (experiment, mode), classes drawn at random; %s; %.1f ticks/us;"
           " model %s; %d thread(s)\n", su.measurements, CYCLE_UNIT, tick_us, su.model ? su.model : su.arch,
           su.threads);
    printf("# %-8s %-5s %9s %9s %12s %12s %9s %9s %7s %10s\n", "experiment", "mode", "n(A)", "n(B)", "median A",
           "median B", "|t| all", "max |t|", "at pct", "median us");
    const char *exps[4] = {"image", "zero", "subnormal", "null"};
    for (int e = 0; e < 4; e++) {
        if (strcmp(su.experiment, "all") && strcmp(su.experiment, exps[e])) continue;
        setup s = su;
        s.experiment = exps[e];
        char buf[64];
        snprintf(buf, sizeof buf, "%s", modes);
        for (char *save = NULL, *mode = strtok_r(buf, ",", &save); mode; mode = strtok_r(NULL, ",", &save)) {
            if (strcmp(mode, "dnnl") && strcmp(mode, "ref") && strcmp(mode, "ct")) usage();
            result r;
            run(&s, mode, &r, tick_us);
        }
    }
    return 0;
}
