/* Data-parallel training in the library (ts_trainer_set_comm), without MPI: each
 * rank is a thread with its own context, model and trainer, and the communicator
 * sums through shared memory in rank order, as tools/dist_mpi.c does over MPI.
 * 2 and 3 ranks match 1 rank with the same global batch within float rounding
 * (a short last batch leaves one of 3 ranks no sample), every rank ends with the
 * same bits, reruns are bit-identical, and batch norm's running statistics agree
 * across ranks. */
#include "tessera.h"

#include "common/test.h"

#include <pthread.h>

#define MAX_RANKS 3
#define MAX_FLOATS (1 << 16)

/* The ranks' meeting point: each posts its buffer, rank 0 sums them in rank order. */
typedef struct thread_comm {
    pthread_barrier_t barrier;
    int size;
    float *posted[MAX_RANKS];
    float sum[MAX_FLOATS];
} thread_comm;

typedef struct rank_arg {
    thread_comm *tc;
    int rank;
    const char *arch;
    const ts_dataset *ds;
    int batch;
    int overlap;     /* sums begun inside backward, in buckets of 50 floats */
    int sync_bn;     /* synchronized batch norm */
    ts_model *model; /* out */
    ts_status st;
} rank_arg;

static int thread_sum(float *buf, size_t n, void *user, char *err, size_t err_size) {
    rank_arg *a = user;
    thread_comm *tc = a->tc;
    if (n > MAX_FLOATS) {
        snprintf(err, err_size, "%zu values", n);
        return 1;
    }
    tc->posted[a->rank] = buf;
    pthread_barrier_wait(&tc->barrier);
    if (a->rank == 0)
        for (size_t i = 0; i < n; i++) {
            float s = tc->posted[0][i];
            for (int r = 1; r < tc->size; r++) s += tc->posted[r][i];
            tc->sum[i] = s;
        }
    pthread_barrier_wait(&tc->barrier);
    memcpy(buf, tc->sum, n * sizeof(float));
    /* nobody's buffer is read after this, and sum is rewritten only after the next first wait */
    pthread_barrier_wait(&tc->barrier);
    return 0;
}

/* Overlap as the trainer sees it: each bucket summed at once when begun (n == 0: nothing
 * in flight to move). The buckets are cut where the MPI communicator would cut them. */
static int thread_start(float *buf, size_t n, void *user, char *err, size_t err_size) {
    rank_arg *a = user;
    a->overlap++; /* counts the calls: backward must have made some */
    return n ? thread_sum(buf, n, user, err, err_size) : 0;
}

static int thread_wait(void *user, char *err, size_t err_size) {
    (void)user;
    (void)err;
    (void)err_size;
    return 0;
}

/* test-only: the ranks train on the reference kernels (sync_bn_matches_one) */
static int g_reference;

static ts_status train_rank(rank_arg *a) {
    ts_ctx *ctx = NULL;
    ts_trainer *tr = NULL;
    ts_status st = ts_ctx_create(&ctx);
    if (st) return st;
    ts_ctx_set_threads(ctx, 1);
    if (g_reference) ts_ctx_set_backend(ctx, TS_BACKEND_REF);
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 2;
    cfg.batch = a->batch;
    cfg.lr = 0.05f;
    cfg.seed = 7;
    cfg.flip = 1; /* augmentation positions are the batch's, whatever the rank */
    cfg.sync_bn = a->sync_bn;
    ts_comm comm = {a->rank, a->tc ? a->tc->size : 1, thread_sum, a, NULL, NULL, 0, NULL};
    if (a->overlap) {
        comm.allreduce_start = thread_start;
        comm.allreduce_wait = thread_wait;
        comm.bucket = 50;
    }
    if (!(st = ts_model_from_arch(ctx, a->arch, "dp.arch", NULL, 0, 3, &a->model)) &&
        !(st = ts_trainer_create(ctx, a->model, a->ds, NULL, &cfg, &tr)) &&
        !(st = ts_trainer_set_comm(ctx, tr, a->tc ? &comm : NULL)))
        st = ts_trainer_run(ctx, tr, NULL);
    if (st) fprintf(stderr, "  rank %d: %s\n", a->rank, ts_ctx_error(ctx));
    ts_trainer_free(tr);
    ts_ctx_free(ctx);
    return st;
}

static void *rank_main(void *p) {
    rank_arg *a = p;
    a->st = train_rank(a);
    return NULL;
}

/* Trains on `size` ranks (0: alone, without a communicator); models[r] per rank. With
 * overlap, returns how often rank 0's backward called allreduce_start. */
static int train_ranks_sync(const char *arch, const ts_dataset *ds, int batch, int size, int overlap, int sync_bn,
                            ts_model **models) {
    static thread_comm tc;
    rank_arg args[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    const int n = size ? size : 1;
    memset(args, 0, sizeof args);
    if (size) {
        tc.size = size;
        pthread_barrier_init(&tc.barrier, NULL, (unsigned)size);
    }
    for (int r = 0; r < n; r++) {
        args[r] = (rank_arg){size ? &tc : NULL, r, arch, ds, batch, overlap, sync_bn, NULL, TS_OK};
        pthread_create(&th[r], NULL, rank_main, &args[r]);
    }
    for (int r = 0; r < n; r++) {
        pthread_join(th[r], NULL);
        CHECK(args[r].st == TS_OK, "rank %d of %d failed", r, n);
        models[r] = args[r].model;
    }
    if (size) pthread_barrier_destroy(&tc.barrier);
    return args[0].overlap;
}

static int train_ranks_overlap(const char *arch, const ts_dataset *ds, int batch, int size, int overlap,
                               ts_model **models) {
    return train_ranks_sync(arch, ds, batch, size, overlap, 0, models);
}

static void train_ranks(const char *arch, const ts_dataset *ds, int batch, int size, ts_model **models) {
    train_ranks_overlap(arch, ds, batch, size, 0, models);
}

/* Largest |a - b| / (1 + |b|) over every tensor; -1 when the shapes differ. */
static double max_difference(const ts_model *a, const ts_model *b, int bits) {
    if (!a || !b || ts_model_tensor_count(a) != ts_model_tensor_count(b)) return -1;
    double worst = 0;
    for (int t = 0; t < ts_model_tensor_count(a); t++) {
        ts_tensor_info x, y;
        if (ts_model_tensor(a, t, &x) || ts_model_tensor(b, t, &y) || x.numel != y.numel) return -1;
        if (bits && memcmp(x.data, y.data, (size_t)x.numel * sizeof(float))) return 1;
        for (int64_t i = 0; i < x.numel; i++) {
            double d = fabs((double)x.data[i] - (double)y.data[i]) / (1.0 + fabs((double)y.data[i]));
            if (d > worst) worst = d;
        }
    }
    return worst;
}

static void free_models(ts_model **m, int n) {
    for (int r = 0; r < n; r++) ts_model_free(m[r]);
}

static const char *DENSE = "input shape=1x8x8 classes=4\nflatten name=flat\ndense name=fc1 out=16\nrelu name=r1\n"
                           "dense name=fc2 out=classes\n";
static const char *CONV_BN = "input shape=1x8x8 classes=4\nconv2d name=c1 out=4 kernel=3 padding=1\n"
                             "batchnorm name=bn1\nrelu name=r1\nflatten name=flat\ndense name=fc out=classes\n";

static void ranks_match_one(void) {
    /* 92 samples in batches of 30: the last batch has 2, so of 3 ranks one gets none */
    ts_dataset *ds = test_quadrant_dataset(92, 5);
    ts_model *one[1] = {NULL}, *two[2] = {NULL}, *three[3] = {NULL}, *again[2] = {NULL};
    train_ranks(DENSE, ds, 30, 0, one);
    train_ranks(DENSE, ds, 30, 2, two);
    train_ranks(DENSE, ds, 30, 3, three);
    train_ranks(DENSE, ds, 30, 2, again);
    double d2 = max_difference(two[0], one[0], 0), d3 = max_difference(three[0], one[0], 0);
    printf("  8 steps, 2 ranks vs 1: %.3g; 3 ranks vs 1: %.3g\n", d2, d3);
    CHECK(d2 >= 0 && d2 <= 1e-5, "2 ranks vs 1: %.3g", d2);
    CHECK(d3 >= 0 && d3 <= 1e-5, "3 ranks vs 1: %.3g", d3);
    CHECK(max_difference(two[1], two[0], 1) == 0 && max_difference(three[1], three[0], 1) == 0 &&
              max_difference(three[2], three[0], 1) == 0, "the ranks' weights differ");
    CHECK(max_difference(again[0], two[0], 1) == 0, "two 2-rank runs differ");
    free_models(one, 1);
    free_models(two, 2);
    free_models(three, 3);
    free_models(again, 2);
    test_free_dataset(ds);
}

static void batch_norm_ranks_agree(void) {
    ts_dataset *ds = test_quadrant_dataset(64, 9);
    ts_model *one[1] = {NULL}, *two[2] = {NULL};
    train_ranks(CONV_BN, ds, 16, 0, one);
    train_ranks(CONV_BN, ds, 16, 2, two);
    CHECK(max_difference(two[1], two[0], 1) == 0, "ranks' weights or running statistics differ");
    /* per-rank batch statistics: near 1 rank's, not equal */
    double d = max_difference(two[0], one[0], 0);
    printf("  batch norm, 2 ranks vs 1 after 8 steps: %.3g\n", d);
    CHECK(d >= 0 && d < 0.2, "2 ranks drifted from 1 rank: %.3g", d);
    free_models(one, 1);
    free_models(two, 2);
    test_free_dataset(ds);
}

/* --sync-bn: the statistics and the gradient sums of batch norm over every rank's
 * samples, so 2 ranks equal 1 rank with the same global batch to float rounding (with
 * per-rank statistics they only come close: batch_norm_ranks_agree), also when the
 * gradients' sums begin during backward between the batch norms' own sums. On the
 * reference kernels: synchronized batch norm computes with them on any backend, and
 * oneDNN's own batch norm (1 rank's) differs from them by rounding that 8 steps of
 * training grow to 7e-4. */
static void sync_bn_matches_one(void) {
    g_reference = 1;
    static const char *TWO_BN = "input shape=1x8x8 classes=4\nconv2d name=c1 out=4 kernel=3 padding=1\n"
                                "batchnorm name=bn1\nrelu name=r1\nconv2d name=c2 out=6 kernel=3 padding=1\n"
                                "batchnorm name=bn2\nadd name=a in=bn2,bn2\nrelu name=r2\nflatten name=flat\n"
                                "dense name=fc out=classes\n";
    ts_dataset *ds = test_quadrant_dataset(64, 9);
    ts_model *one[1] = {NULL}, *two[2] = {NULL}, *over[2] = {NULL}, *per[2] = {NULL};
    train_ranks(TWO_BN, ds, 16, 0, one);
    train_ranks_sync(TWO_BN, ds, 16, 2, 0, 1, two);
    train_ranks_sync(TWO_BN, ds, 16, 2, 1, 1, over);
    train_ranks(TWO_BN, ds, 16, 2, per);
    const double d = max_difference(two[0], one[0], 0), dp = max_difference(per[0], one[0], 0);
    printf("  8 steps with 2 batch norms, 2 ranks vs 1: synchronized %.3g, per-rank statistics %.3g\n", d, dp);
    CHECK(d >= 0 && d <= 1e-5, "synchronized batch norm, 2 ranks vs 1: %.3g", d);
    CHECK(dp > 10 * d, "per-rank statistics should differ more: %.3g vs %.3g", dp, d);
    CHECK(max_difference(two[1], two[0], 1) == 0, "the ranks' weights differ");
    CHECK(max_difference(over[0], two[0], 1) == 0 && max_difference(over[1], two[0], 1) == 0,
          "sums begun during backward changed the weights");
    free_models(one, 1);
    free_models(two, 2);
    free_models(over, 2);
    free_models(per, 2);
    test_free_dataset(ds);
    g_reference = 0;
}

static void overlap_same_bits(void) {
    /* buckets of 50 floats: fc2's 68 gradients begun before fc1's backward, fc1's 1,040 after it */
    ts_dataset *ds = test_quadrant_dataset(92, 5);
    ts_model *plain[2] = {NULL}, *over[2] = {NULL};
    train_ranks(DENSE, ds, 30, 2, plain);
    int calls = train_ranks_overlap(DENSE, ds, 30, 2, 1, over);
    CHECK(calls > 16, "allreduce_start called %d times in 8 steps", calls - 1);
    CHECK(max_difference(over[0], plain[0], 1) == 0 && max_difference(over[1], plain[0], 1) == 0,
          "sums begun during backward changed the weights");
    free_models(plain, 2);
    free_models(over, 2);
    test_free_dataset(ds);
}

static void refusals(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    ts_dataset *ds = test_quadrant_dataset(16, 1);
    ts_model *m = NULL;
    ts_trainer *tr = NULL;
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.batch = 2;
    CHECK(!ts_model_from_arch(ctx, DENSE, "dp.arch", NULL, 0, 3, &m) && !ts_trainer_create(ctx, m, ds, NULL, &cfg, &tr),
          "setup: %s", ts_ctx_error(ctx));
    ts_comm c = {0, 3, thread_sum, NULL, NULL, NULL, 0, NULL};
    CHECK(ts_trainer_set_comm(ctx, tr, &c) == TS_EINVAL && strstr(ts_ctx_error(ctx), "smaller than the 3 ranks"),
          "batch 2 on 3 ranks: %s", ts_ctx_error(ctx));
    ts_comm bad = {3, 2, thread_sum, NULL, NULL, NULL, 0, NULL};
    CHECK(ts_trainer_set_comm(ctx, tr, &bad) == TS_EINVAL, "rank 3 of 2 accepted");
    ts_comm none = {0, 2, NULL, NULL, NULL, NULL, 0, NULL};
    CHECK(ts_trainer_set_comm(ctx, tr, &none) == TS_EINVAL, "no allreduce accepted");
    /* synchronized batch norm: 16 samples in batches of 3 leave 1 for the last batch */
    ts_trainer *trs = NULL;
    cfg.batch = 3;
    cfg.sync_bn = 1;
    CHECK(!ts_trainer_create(ctx, m, ds, NULL, &cfg, &trs), "setup: %s", ts_ctx_error(ctx));
    ts_comm c2 = {0, 2, thread_sum, NULL, NULL, NULL, 0, NULL};
    CHECK(ts_trainer_set_comm(ctx, trs, &c2) == TS_EINVAL && strstr(ts_ctx_error(ctx), "last batch of 1 sample (of 16"),
          "sync-bn with an empty rank: %s", ts_ctx_error(ctx));
    ts_trainer_free(trs);
    ts_comm half = {0, 2, thread_sum, NULL, thread_start, NULL, 0, NULL};
    CHECK(ts_trainer_set_comm(ctx, tr, &half) == TS_EINVAL, "allreduce_start without allreduce_wait accepted");
    ts_trainer_free(tr);
    ts_model_free(m);
    test_free_dataset(ds);
    ts_ctx_free(ctx);
}

int main(void) {
    RUN(ranks_match_one);
    RUN(batch_norm_ranks_agree);
    RUN(sync_bn_matches_one);
    RUN(overlap_same_bits);
    RUN(refusals);
    TEST_MAIN_END("test_data_parallel");
}
