/* Work spread over ranks (ts_ctx_set_comm), without MPI: each rank is a thread with
 * its own context and model, and the communicator gathers through shared memory, as
 * tools/dist_mpi.c does over MPI. On 2 and 3 ranks, with uneven shares (a rank may get
 * no batch), every rank gets exactly a lone run's result:
 *  - ts_evaluate: top-1, top-5, the loss to the bit and the confusion matrix;
 *  - ts_module_evaluate: own and rest accuracies;
 *  - ts_decompose, activation method (batches small enough that classes fill in the
 *    middle of a round of batches, so batches formed ahead are formed again): every
 *    module's masks, threshold and counts;
 *  - ts_decompose, CNNSplitter search: masks, fitness and generations.
 * A communicator without allgatherv is refused. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h"

#include <pthread.h>
#include <unistd.h>

#define MAX_RANKS 3

static const char *ARCH = "input     shape=1x8x8 classes=4\n"
                          "conv2d    name=c1 out=8 kernel=3 padding=1\n"
                          "relu      name=r1\n"
                          "maxpool   name=p1 kernel=2\n"
                          "conv2d    name=c2 out=12 kernel=3 padding=1\n"
                          "relu      name=r2\n"
                          "flatten   name=flat\n"
                          "dense     name=fc1 out=16\n"
                          "relu      name=r3\n"
                          "dense     name=fc out=classes\n";

/* The ranks' meeting point: each posts its part, every rank copies all of them. */
typedef struct thread_comm {
    pthread_barrier_t barrier;
    int size;
    const void *posted[MAX_RANKS];
} thread_comm;

typedef enum job { JOB_EVAL, JOB_MODULE_EVAL, JOB_ACTIVATION, JOB_GA } job;

typedef struct rank_arg {
    thread_comm *tc;
    int rank;
    job what;
    ts_status st;
    char err[256];
    ts_eval_report ev;       /* JOB_EVAL */
    double own, rest;        /* JOB_MODULE_EVAL */
    ts_module **mods;        /* JOB_ACTIVATION, JOB_GA */
    int nmods;
} rank_arg;

static char g_model_path[256];
static ts_dataset *g_train, *g_testset;

static int thread_gather(const void *mine, void *all, const size_t *counts, void *user, char *err, size_t err_size) {
    (void)err;
    (void)err_size;
    rank_arg *a = user;
    thread_comm *tc = a->tc;
    tc->posted[a->rank] = mine;
    pthread_barrier_wait(&tc->barrier);
    size_t off = 0;
    for (int r = 0; r < tc->size; r++) {
        memcpy((char *)all + off, tc->posted[r], counts[r]);
        off += counts[r];
    }
    pthread_barrier_wait(&tc->barrier); /* nobody's part is read after this */
    return 0;
}

static int thread_sum(float *buf, size_t n, void *user, char *err, size_t err_size) {
    (void)buf;
    (void)n;
    (void)user;
    snprintf(err, err_size, "not used here");
    return 1;
}

static void decompose_config(ts_decompose_config *cfg, job what) {
    ts_decompose_config_default(cfg);
    cfg->positives = 40;
    cfg->confidence = 0.5f;
    cfg->batch = 16;
    if (what != JOB_GA) return;
    cfg->method = TS_DECOMPOSE_GA;
    cfg->ga_population = 10;
    cfg->ga_generations = 5;
    cfg->ga_parents = 5;
    cfg->ga_elites = 2;
    cfg->ga_patience = 3;
    cfg->ga_val_per_class = 15;
}

/* One rank's run (size 1: alone, no communicator). */
static void *rank_main(void *p) {
    rank_arg *a = p;
    ts_ctx *ctx = NULL;
    ts_model *m = NULL;
    ts_module **mods = NULL;
    int n = 0;
    ts_ctx_create(&ctx);
    ts_ctx_set_threads(ctx, 1);
    ts_comm comm = {0};
    comm.rank = a->rank;
    comm.size = a->tc ? a->tc->size : 1;
    comm.allreduce_sum = thread_sum;
    comm.allgatherv = thread_gather;
    comm.user = a;
    ts_status st = ts_ctx_set_comm(ctx, a->tc ? &comm : NULL);
    if (!st) st = ts_model_load(ctx, g_model_path, &m);
    if (!st && a->what == JOB_EVAL) st = ts_evaluate(ctx, m, g_testset, 32, &a->ev);
    ts_decompose_config cfg;
    decompose_config(&cfg, a->what == JOB_MODULE_EVAL ? JOB_ACTIVATION : a->what);
    if (!st && a->what != JOB_EVAL) st = ts_decompose(ctx, m, g_train, &cfg, NULL, 0, NULL, NULL, &mods, &n);
    if (!st && a->what == JOB_MODULE_EVAL) st = ts_module_evaluate(ctx, mods[1], g_testset, 24, &a->own, &a->rest);
    if (!st && a->what != JOB_EVAL && a->what != JOB_MODULE_EVAL) {
        a->mods = mods;
        a->nmods = n;
        mods = NULL;
    }
    a->st = st;
    snprintf(a->err, sizeof a->err, "%s", ts_ctx_error(ctx));
    ts_modules_free(mods, n);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return NULL;
}

/* Runs `what` on `size` ranks (0: alone) into args[0 .. max(size, 1)). */
static void run_ranks(job what, int size, rank_arg *args) {
    static thread_comm tc;
    pthread_t th[MAX_RANKS];
    memset(args, 0, sizeof *args * MAX_RANKS);
    if (size == 0) {
        args[0].what = what;
        rank_main(&args[0]);
        return;
    }
    tc.size = size;
    pthread_barrier_init(&tc.barrier, NULL, (unsigned)size);
    for (int r = 0; r < size; r++) {
        args[r] = (rank_arg){.tc = &tc, .rank = r, .what = what};
        pthread_create(&th[r], NULL, rank_main, &args[r]);
    }
    for (int r = 0; r < size; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&tc.barrier);
}

static void free_args(rank_arg *args) {
    for (int r = 0; r < MAX_RANKS; r++) {
        ts_eval_report_free(&args[r].ev);
        ts_modules_free(args[r].mods, args[r].nmods);
    }
}

static void evaluate_matches_alone(void) {
    rank_arg lone[MAX_RANKS], ranks[MAX_RANKS];
    run_ranks(JOB_EVAL, 0, lone);
    CHECK(lone[0].st == TS_OK, "alone: %s", lone[0].err);
    for (int size = 2; size <= 3 && !lone[0].st; size++) {
        run_ranks(JOB_EVAL, size, ranks);
        for (int r = 0; r < size; r++) {
            const ts_eval_report *a = &lone[0].ev, *b = &ranks[r].ev;
            CHECK(ranks[r].st == TS_OK, "%d ranks, rank %d: %s", size, r, ranks[r].err);
            if (ranks[r].st) continue;
            CHECK(a->count == b->count && a->top1 == b->top1 && a->top5 == b->top5 && a->loss == b->loss,
                  "%d ranks, rank %d: count %lld top-1 %.17g top-5 %.17g loss %.17g; alone %lld %.17g %.17g %.17g",
                  size, r, (long long)b->count, b->top1, b->top5, b->loss, (long long)a->count, a->top1, a->top5,
                  a->loss);
            CHECK(!memcmp(a->confusion, b->confusion, sizeof(int64_t) * 16), "%d ranks, rank %d: confusion differs",
                  size, r);
        }
        free_args(ranks);
    }
    CHECK(lone[0].ev.top1 > 0.5, "the model is no better than chance: top-1 %.3f", lone[0].ev.top1);
    free_args(lone);
}

static void module_evaluate_matches_alone(void) {
    rank_arg lone[MAX_RANKS], ranks[MAX_RANKS];
    run_ranks(JOB_MODULE_EVAL, 0, lone);
    CHECK(lone[0].st == TS_OK, "alone: %s", lone[0].err);
    run_ranks(JOB_MODULE_EVAL, 3, ranks);
    for (int r = 0; r < 3 && !lone[0].st; r++)
        CHECK(ranks[r].st == TS_OK && ranks[r].own == lone[0].own && ranks[r].rest == lone[0].rest,
              "rank %d of 3: own %.6f rest %.6f (%s); alone %.6f %.6f", r, ranks[r].own, ranks[r].rest, ranks[r].err,
              lone[0].own, lone[0].rest);
    free_args(ranks);
    free_args(lone);
}

/* The two module sets are the same: masks, thresholds, counts, search figures. */
static int same_modules(const rank_arg *a, const rank_arg *b, char *why, size_t n) {
    if (a->nmods != b->nmods) return snprintf(why, n, "%d modules against %d", b->nmods, a->nmods), 0;
    for (int c = 0; c < a->nmods; c++) {
        const ts_module *x = a->mods[c], *y = b->mods[c];
        ts_module_info i, j;
        ts_module_info_get(x, &i);
        ts_module_info_get(y, &j);
        if (i.threshold != j.threshold || i.positives != j.positives || i.negatives != j.negatives ||
            i.units_kept != j.units_kept || i.kernels_kept != j.kernels_kept || i.fitness != j.fitness ||
            i.generations != j.generations || i.val_accuracy != j.val_accuracy)
            return snprintf(why, n, "module %d: threshold %g/%g, positives %d/%d, units %lld/%lld, fitness %g/%g", c,
                            (double)j.threshold, (double)i.threshold, j.positives, i.positives,
                            (long long)j.units_kept, (long long)i.units_kept, j.fitness, i.fitness),
                   0;
        if (x->nmasks != y->nmasks) return snprintf(why, n, "module %d: mask counts differ", c), 0;
        for (int k = 0; k < x->nmasks; k++)
            if (memcmp(x->masks[k].keep, y->masks[k].keep, sizeof(uint64_t) * (size_t)mask_words(x->masks[k].units)))
                return snprintf(why, n, "module %d: mask %d differs", c, k), 0;
    }
    return 1;
}

static void decompose_matches_alone(job what, const char *name) {
    rank_arg lone[MAX_RANKS], ranks[MAX_RANKS];
    run_ranks(what, 0, lone);
    CHECK(lone[0].st == TS_OK && lone[0].nmods == 4, "%s alone: %s", name, lone[0].err);
    for (int size = 2; size <= 3 && !lone[0].st; size++) {
        run_ranks(what, size, ranks);
        for (int r = 0; r < size; r++) {
            char why[256] = "";
            CHECK(ranks[r].st == TS_OK, "%s, %d ranks, rank %d: %s", name, size, r, ranks[r].err);
            if (!ranks[r].st) CHECK(same_modules(&lone[0], &ranks[r], why, sizeof why), "%s, %d ranks, rank %d: %s",
                                    name, size, r, why);
        }
        free_args(ranks);
    }
    /* not a trivial agreement: the modules drop something */
    int64_t kept = 0, all = 0;
    for (int c = 0; c < lone[0].nmods; c++) {
        ts_module_info in;
        ts_module_info_get(lone[0].mods[c], &in);
        kept += what == JOB_GA ? in.kernels_kept : in.units_kept;
        all += what == JOB_GA ? in.kernels : in.units;
    }
    CHECK(kept < all, "%s: the modules keep everything (%lld of %lld)", name, (long long)kept, (long long)all);
    free_args(lone);
}

static void activation_matches_alone(void) { decompose_matches_alone(JOB_ACTIVATION, "activation"); }
static void ga_matches_alone(void) { decompose_matches_alone(JOB_GA, "ga"); }

static void refusals(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    ts_comm comm = {0};
    comm.rank = 0;
    comm.size = 2;
    comm.allreduce_sum = thread_sum;
    CHECK(ts_ctx_set_comm(ctx, &comm) == TS_EINVAL && strstr(ts_ctx_error(ctx), "allgatherv"),
          "no allgatherv: %s", ts_ctx_error(ctx));
    comm.allgatherv = thread_gather;
    comm.rank = 2;
    CHECK(ts_ctx_set_comm(ctx, &comm) == TS_EINVAL && strstr(ts_ctx_error(ctx), "rank 2 of 2"), "rank 2 of 2: %s",
          ts_ctx_error(ctx));
    CHECK(ts_ctx_set_comm(ctx, NULL) == TS_OK, "NULL: alone");
    ts_ctx_free(ctx);
}

int main(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    ts_ctx_set_threads(ctx, 1);
    g_train = test_quadrant_dataset(400, 21);
    g_testset = test_quadrant_dataset(150, 5);
    ts_model *m = test_train_adam(ctx, ARCH, "spread.arch", g_train, 3, 4, 4, 32, 0.01f);
    snprintf(g_model_path, sizeof g_model_path, "/tmp/tessera_spread_%d.tsr", (int)getpid());
    CHECK(m && ts_model_save(ctx, m, g_model_path) == TS_OK, "save %s: %s", g_model_path, ts_ctx_error(ctx));
    if (m) {
        RUN(evaluate_matches_alone);
        RUN(module_evaluate_matches_alone);
        RUN(activation_matches_alone);
        RUN(ga_matches_alone);
    }
    RUN(refusals);
    unlink(g_model_path);
    ts_model_free(m);
    test_free_dataset(g_train);
    test_free_dataset(g_testset);
    ts_ctx_free(ctx);
    TEST_MAIN_END("test_dist_spread");
}
