/* Minimal test harness: each test binary runs named cases and ends with the line
 * "<binary>: N passed, N failed"; scripts/run-tests.sh sums them. */
#ifndef TS_TEST_H
#define TS_TEST_H

#include "tessera.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_state {
    int passed, failed;
    int case_failed;
    const char *case_name;
} test_state;

extern test_state g_test; /* test-only global: the harness is not library code */

double test_case_clock(void);                        /* monotonic seconds */
void test_case_time(const char *name, double start); /* prints under TESSERA_TEST_TIMES */

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            if (!g_test.case_failed) fprintf(stderr, "FAIL %s\n", g_test.case_name); \
            g_test.case_failed = 1;                                               \
            fprintf(stderr, "  %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_NEAR(a, b, rtol, atol)                                                        \
    do {                                                                                    \
        double a_ = (a), b_ = (b);                                                          \
        CHECK(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_), "%s=%.9g vs %s=%.9g", #a, a_, #b, b_); \
    } while (0)

/* With TESSERA_TEST_TIMES set, each case prints its wall time ("time NAME: S s"). */
#define RUN(fn)                                                    \
    do {                                                           \
        g_test.case_failed = 0;                                    \
        g_test.case_name = #fn;                                    \
        double t0_ = test_case_clock();                            \
        fn();                                                      \
        test_case_time(#fn, t0_);                                  \
        if (g_test.case_failed) g_test.failed++;                   \
        else g_test.passed++;                                      \
    } while (0)

#define TEST_MAIN_END(name)                                                           \
    do {                                                                              \
        printf("%s: %d passed, %d failed\n", name, g_test.passed, g_test.failed);     \
        return g_test.failed ? 1 : 0;                                                 \
    } while (0)

/* Compares two float arrays; reports the worst element. Returns 1 when all close. */
int test_allclose(const char *what, const float *got, const float *want, size_t n, double rtol, double atol);
/* m's public tensor `name` (data writable through it); a failed CHECK and all zeros
 * when m has none. */
ts_tensor_info test_tensor(const ts_model *m, const char *name);
/* Zeroed floats (at least one); exits the test binary when memory runs out. */
float *test_falloc(size_t n);
/* Fills with uniform values in [lo, hi) from a seeded generator. */
void test_fill_uniform(float *x, size_t n, unsigned long long seed, float lo, float hi);
/* 1 when s ends with suffix. */
int test_ends_with(const char *s, const char *suffix);
/* Every parameter of m uniform in [-1, 1); batch-norm running means in [-0.5, 0.5) and
 * variances in [0.5, 2): nothing at PyTorch's defaults. Mask layers' keep planes
 * (".keep") stay as they are. */
void test_randomize_model(ts_model *m, uint64_t seed);
/* A model from architecture text (initialized from init_seed) trained on `train` with
 * Adam at lr, batch size and epochs given, data order from seed; NULL (and a failed
 * CHECK naming what) when building or training fails. */
ts_model *test_train_adam(ts_ctx *ctx, const char *arch, const char *source, const ts_dataset *train,
                          uint64_t init_seed, uint64_t seed, int epochs, int batch, float lr);
/* Path of the shared data folder (../shared/data relative to the repo), or NULL. */
const char *test_shared_data(void);
/* A synthetic 4-class dataset of 1x8x8 images (one bright quadrant = the class),
 * deterministic in seed; free with test_free_dataset (plain malloc'ed arrays). */
ts_dataset *test_quadrant_dataset(int64_t count, uint64_t seed);
void test_free_dataset(ts_dataset *ds);
/* A text set of `count` texts padded to T (tokens, lengths, labels zeroed; labels
 * one per text, or T per text for a tag set); free with test_free_texts. */
ts_text_dataset *test_alloc_texts(int64_t count, int T, ts_seq_task task, int classes, const char *name);
void test_free_texts(ts_text_dataset *ds);
/* A synthetic classify set that needs the recurrence: texts of 3..T tokens from
 * classes+1..vocab-1, marker 1..classes at a random place and another marker after
 * it; the label is the first marker's. Deterministic in seed. */
ts_text_dataset *test_first_marker_texts(int64_t count, int T, int vocab, int classes, uint64_t seed);
/* A text model from architecture text (initialized from init_seed) trained on train
 * with Adam (lr 0.01, batch 32) for `epochs`; *val_acc (may be NULL) the best
 * validation top-1 (0 without val). NULL and a failed CHECK when either fails. */
ts_model *test_train_text_adam(ts_ctx *ctx, const char *arch, int classes, const ts_text_dataset *train,
                               const ts_text_dataset *val, uint64_t init_seed, int epochs, double *val_acc);
/* A test binary's set-up: its context and its temporary folder (tmp is a mkdtemp
 * template, filled in). Prints why and returns 0 on failure. */
int test_begin(ts_ctx **ctx, char *tmp);
/* Its end: the context freed, the temporary folder removed. */
void test_end(ts_ctx *ctx, const char *tmp);
/* A whole file (malloc'ed; NULL when unreadable), and writing one (1 on success). */
uint8_t *test_read_file(const char *path, size_t *len);
int test_write_file(const char *path, const void *d, size_t n);
/* Whether the model files a and b hold the same tensors, bit for bit (a load error is
 * printed). */
int test_same_weights(const char *a, const char *b);
/* v as 4 big-endian bytes at p (IDX headers). */
void test_put_be32(uint8_t *p, uint32_t v);
/* The headers of an IDX pair: images (16 bytes: count x rows x cols bytes follow) and
 * labels (8 bytes: count bytes follow). */
void test_put_idx_headers(uint8_t *images, uint8_t *labels, uint32_t count, uint32_t rows, uint32_t cols);
/* DIR/PREFIX-images-idx3-ubyte and -labels-idx1-ubyte: `count` (at most 512) 28x28
 * images whose class y = (i * 7) % 10 is a bright band (rows 2y+3..2y+5). 1 when written. */
int test_write_band_idx(const char *dir, const char *prefix, int count);

#endif
