#include "common/test.h"
#include "core/core.h" /* ts_rng */

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

test_state g_test;

double test_case_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void test_case_time(const char *name, double start) {
    if (getenv("TESSERA_TEST_TIMES")) printf("time %s: %.2f s\n", name, test_case_clock() - start);
}

int test_allclose(const char *what, const float *got, const float *want, size_t n, double rtol, double atol) {
    size_t worst = 0, bad = 0;
    double worst_err = -1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim)) bad++;
        double e = d / (lim > 0 ? lim : 1e-30);
        if (!(e <= worst_err)) { worst_err = e; worst = i; }
    }
    if (bad) {
        CHECK(bad == 0, "%s: %zu of %zu differ; worst [%zu] got %.9g want %.9g", what, bad, n, worst,
              (double)got[worst], (double)want[worst]);
        return 0;
    }
    return 1;
}

ts_tensor_info test_tensor(const ts_model *m, const char *name) {
    ts_tensor_info t;
    memset(&t, 0, sizeof t);
    int i = ts_model_find_tensor(m, name);
    CHECK(i >= 0, "tensor %s missing", name);
    if (i >= 0) ts_model_tensor(m, i, &t);
    return t;
}

void test_fill_uniform(float *x, size_t n, unsigned long long seed, float lo, float hi) {
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        float u = (float)((s >> 40) & 0xffffff) / 16777216.0f;
        x[i] = lo + (hi - lo) * u;
    }
}

ts_model *test_train_adam(ts_ctx *ctx, const char *arch, const char *source, const ts_dataset *train,
                          uint64_t init_seed, uint64_t seed, int epochs, int batch, float lr) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(ctx, arch, source, NULL, 0, init_seed, &m);
    CHECK(st == TS_OK, "model %s: %s", source, ts_ctx_error(ctx));
    if (st) return NULL;
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = epochs;
    cfg.batch = batch;
    cfg.lr = lr;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAM);
    cfg.seed = seed;
    ts_trainer *tr = NULL;
    if (!(st = ts_trainer_create(ctx, m, train, NULL, &cfg, &tr))) st = ts_trainer_run(ctx, tr, NULL);
    CHECK(st == TS_OK, "training %s: %s", source, ts_ctx_error(ctx));
    ts_trainer_free(tr);
    if (st) {
        ts_model_free(m);
        return NULL;
    }
    return m;
}

ts_text_dataset *test_alloc_texts(int64_t count, int T, ts_seq_task task, int classes, const char *name) {
    ts_text_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) exit(2);
    ds->count = count;
    ds->task = task;
    ds->max_len = T;
    ds->tokens = calloc((size_t)count * (size_t)T, sizeof(int32_t));
    ds->lengths = calloc((size_t)count, sizeof(int32_t));
    ds->labels = calloc((size_t)count * (size_t)(task == TS_SEQ_TAG ? T : 1), sizeof(int32_t));
    if (!ds->tokens || !ds->lengths || !ds->labels) exit(2);
    ds->classes = classes;
    snprintf(ds->name, sizeof ds->name, "%s", name);
    return ds;
}

void test_free_texts(ts_text_dataset *ds) {
    if (!ds) return;
    free(ds->tokens);
    free(ds->lengths);
    free(ds->labels);
    free(ds);
}

ts_text_dataset *test_first_marker_texts(int64_t count, int T, int vocab, int classes, uint64_t seed) {
    ts_text_dataset *ds = test_alloc_texts(count, T, TS_SEQ_CLASSIFY, classes, "synthetic-first");
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int64_t i = 0; i < count; i++) {
        const int len = 3 + (int)ts_rng_below(&r, (uint64_t)T - 2);
        ds->lengths[i] = len;
        int32_t *tok = ds->tokens + i * T;
        for (int t = 0; t < len; t++) tok[t] = classes + 1 + (int32_t)ts_rng_below(&r, (uint64_t)(vocab - classes - 1));
        const int c = (int)ts_rng_below(&r, (uint64_t)classes), at = (int)ts_rng_below(&r, (uint64_t)len - 1);
        tok[at] = 1 + c;
        tok[at + 1 + (int)ts_rng_below(&r, (uint64_t)(len - at - 1))] = 1 + (int)ts_rng_below(&r, (uint64_t)classes);
        ds->labels[i] = c;
    }
    return ds;
}

ts_model *test_train_text_adam(ts_ctx *ctx, const char *arch, int classes, const ts_text_dataset *train,
                               const ts_text_dataset *val, uint64_t init_seed, int epochs, double *val_acc) {
    ts_model *m = NULL;
    if (val_acc) *val_acc = 0;
    ts_status st = ts_model_from_arch(ctx, arch, "text.arch", NULL, classes, init_seed, &m);
    CHECK(st == TS_OK, "model: %s", ts_ctx_error(ctx));
    if (st) return NULL;
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = epochs;
    cfg.batch = 32;
    cfg.lr = 0.01f;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAM);
    ts_trainer *tr = NULL;
    if (!(st = ts_trainer_create_text(ctx, m, train, val, &cfg, &tr))) st = ts_trainer_run(ctx, tr, NULL);
    CHECK(st == TS_OK, "training: %s", ts_ctx_error(ctx));
    if (!st && val_acc) {
        ts_train_summary sum;
        ts_trainer_summary(tr, &sum);
        *val_acc = sum.best_val_acc;
    }
    ts_trainer_free(tr);
    if (st) {
        ts_model_free(m);
        return NULL;
    }
    return m;
}

int test_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

void test_randomize_model(ts_model *m, uint64_t seed) {
    for (int t = 0; t < ts_model_tensor_count(m); t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        if (test_ends_with(ti.name, ".keep")) continue;
        float lo = -1.0f, hi = 1.0f;
        if (test_ends_with(ti.name, ".running_mean")) lo = -0.5f, hi = 0.5f;
        if (test_ends_with(ti.name, ".running_var")) lo = 0.5f, hi = 2.0f;
        test_fill_uniform(ti.data, (size_t)ti.numel, seed + (uint64_t)t, lo, hi);
    }
}

const char *test_shared_data(void) {
    static const char *cands[] = {"../shared/data", "../../shared/data", NULL};
    const char *env = getenv("TESSERA_SHARED_DATA");
    struct stat st;
    if (env && stat(env, &st) == 0) return env;
    for (int i = 0; cands[i]; i++)
        if (stat(cands[i], &st) == 0 && S_ISDIR(st.st_mode)) return cands[i];
    return NULL;
}

float *test_falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* Images 1x8x8: dim noise everywhere, one bright quadrant; the class is the quadrant. */
ts_dataset *test_quadrant_dataset(int64_t count, uint64_t seed) {
    ts_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) exit(2);
    ds->count = count;
    ds->channels = 1;
    ds->height = ds->width = 8;
    ds->classes = 4;
    ds->images = malloc((size_t)count * 64);
    ds->labels = malloc((size_t)count * sizeof(int32_t));
    if (!ds->images || !ds->labels) exit(2);
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int64_t i = 0; i < count; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        int cls = (int)((s >> 33) % 4);
        ds->labels[i] = cls;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                int q = (y >= 4) * 2 + (x >= 4);
                int v = (int)((s >> 40) % 70);
                if (q == cls) v += 140;
                ds->images[i * 64 + y * 8 + x] = (uint8_t)v;
            }
    }
    snprintf(ds->name, sizeof ds->name, "quadrants-%llu", (unsigned long long)seed);
    return ds;
}

void test_free_dataset(ts_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds);
}

uint8_t *test_read_file(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    if (d && n > 0 && fread(d, 1, (size_t)n, f) != (size_t)n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    if (d) *len = (size_t)n;
    return d;
}

void test_put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int test_write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(d, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int test_begin(ts_ctx **ctx, char *tmp) {
    if (ts_ctx_create(ctx) != TS_OK) {
        fprintf(stderr, "cannot create a context\n");
        return 0;
    }
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "mkdtemp %s failed\n", tmp);
        return 0;
    }
    return 1;
}

void test_end(ts_ctx *ctx, const char *tmp) {
    ts_ctx_free(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
}

int test_same_weights(const char *a, const char *b) {
    ts_ctx *ctx;
    if (ts_ctx_create(&ctx)) return 0;
    ts_model *ma = NULL, *mb = NULL;
    int same = ts_model_load(ctx, a, &ma) == TS_OK && ts_model_load(ctx, b, &mb) == TS_OK &&
               ts_model_tensor_count(ma) == ts_model_tensor_count(mb);
    for (int i = 0; same && i < ts_model_tensor_count(ma); i++) {
        ts_tensor_info ta, tb;
        ts_model_tensor(ma, i, &ta);
        ts_model_tensor(mb, i, &tb);
        same = ta.numel == tb.numel && !memcmp(ta.data, tb.data, (size_t)ta.numel * sizeof(float));
    }
    if (!same && *ts_ctx_error(ctx)) fprintf(stderr, "  %s\n", ts_ctx_error(ctx));
    ts_model_free(ma);
    ts_model_free(mb);
    ts_ctx_free(ctx);
    return same;
}

void test_put_idx_headers(uint8_t *images, uint8_t *labels, uint32_t count, uint32_t rows, uint32_t cols) {
    test_put_be32(images, 0x803);
    test_put_be32(images + 4, count);
    test_put_be32(images + 8, rows);
    test_put_be32(images + 12, cols);
    test_put_be32(labels, 0x801);
    test_put_be32(labels + 4, count);
}

int test_write_band_idx(const char *dir, const char *prefix, int count) {
    char p[600];
    if (count < 0 || count > 512) return 0;
    uint8_t *img = calloc((size_t)16 + (size_t)count * 784, 1), lab[8 + 512];
    if (!img) return 0;
    test_put_idx_headers(img, lab, (uint32_t)count, 28, 28);
    for (int i = 0; i < count; i++) {
        int y = (i * 7) % 10;
        lab[8 + i] = (uint8_t)y;
        for (int r = 2 * y + 3; r < 2 * y + 6; r++)
            for (int c = 0; c < 28; c++) img[16 + (size_t)i * 784 + (size_t)r * 28 + c] = (uint8_t)(200 + (i + c) % 50);
    }
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, prefix);
    int ok = test_write_file(p, img, 16 + (size_t)count * 784);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, prefix);
    ok = ok && test_write_file(p, lab, 8 + (size_t)count);
    free(img);
    return ok;
}
