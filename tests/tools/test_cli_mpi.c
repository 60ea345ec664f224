/* Data-parallel training under Open MPI, as a user runs it (docs/distributed.md):
 * `mpirun -np 2 tessera train` on loopback. One step on 2 ranks equals one on 1 rank
 * with the same global batch; two 2-rank runs are bit-identical; a 2-rank checkpoint
 * resumes on 1 rank; a rank killed mid-run ends the job, non-zero, within 60 s, with
 * the checkpoint loadable. Skipped (and said so) where mpirun, the Fashion-MNIST
 * package or an MPI build of tessera is missing. */
#define _DEFAULT_SOURCE /* usleep, kill, setpgid */
#include "common/cli_run.h"
#include "common/test.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static cli_runner R;

/* Root may run Open MPI only when told; --oversubscribe: 2 ranks on fewer cores.
 * Leaks LeakSanitizer would see are Open MPI's, so the sanitizer build ignores them. */
#define MPIRUN2 "ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe -np 2"
/* lenet5 has no batch norm: per-rank batch statistics would differ from 1 rank's */
#define ONE_STEP "train --arch lenet5 --data fashion-mnist --limit 63 --batch 63 --epochs 1 --threads 1 --quiet --no-test"
#define BN_RUN "train --arch demo --data fashion-mnist --limit 256 --batch 64 --epochs 1 --threads 1 --quiet --no-test"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static ts_model *load(ts_ctx *ctx, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", R.dir, name);
    ts_model *m = NULL;
    CHECK(ts_model_load(ctx, p, &m) == TS_OK, "load %s: %s", p, ts_ctx_error(ctx));
    return m;
}

/* Every tensor of a and b within tol (tol 0: the same bits). */
static void compare_models(const char *what, const ts_model *a, const ts_model *b, double tol) {
    if (!a || !b) return;
    CHECK(ts_model_tensor_count(a) == ts_model_tensor_count(b), "%s: tensor counts differ", what);
    double worst = 0;
    for (int t = 0; t < ts_model_tensor_count(a) && t < ts_model_tensor_count(b); t++) {
        ts_tensor_info x, y;
        if (ts_model_tensor(a, t, &x) || ts_model_tensor(b, t, &y) || x.numel != y.numel) {
            CHECK(0, "%s: tensor %d differs in shape", what, t);
            return;
        }
        if (tol == 0) {
            CHECK(!memcmp(x.data, y.data, (size_t)x.numel * sizeof(float)), "%s: %s differs in its bits", what, x.name);
            continue;
        }
        for (int64_t i = 0; i < x.numel; i++) {
            double d = fabs((double)x.data[i] - (double)y.data[i]) / (1.0 + fabs((double)y.data[i]));
            if (d > worst) worst = d;
        }
    }
    if (tol > 0) CHECK(worst <= tol, "%s: largest difference %.3g (relative) above %.1g", what, worst, tol);
    printf("  %s: largest difference %.3g\n", what, worst);
}

static void one_step_equals_one_rank(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    /* 63 samples: shares of 31 and 32, so the ranks' parts must be weighed by size */
    int rc = cli_run(&R, ONE_STEP " --out %s/one.tsr", R.dir);
    CHECK(rc == 0, "1 rank: exit %d: %s", rc, R.err);
    rc = cli_run_under(&R, MPIRUN2, ONE_STEP " --out %s/two.tsr", R.dir);
    CHECK(rc == 0, "2 ranks: exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "data-parallel over 2 ranks") && strstr(R.out, "ms per step in allreduce"), "out: %s", R.out);
    CHECK(cli_count_lines(R.out) == 4, "progress from rank 0 only, 4 lines: %s", R.out);
    ts_model *a = load(ctx, "one.tsr"), *b = load(ctx, "two.tsr");
    compare_models("one step, 2 ranks vs 1", b, a, 1e-5);
    ts_model_free(a);
    ts_model_free(b);
    ts_ctx_free(ctx);
}

/* --sync-bn: batch norm over the global batch, so 2 ranks equal 1 even with batch norm
 * (on the reference kernels, which synchronized batch norm uses on any backend) */
static void sync_bn_equals_one_rank(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    /* the demo network without its dropout (each rank draws its own masks) */
    char arch[600];
    snprintf(arch, sizeof arch, "%s/bn.arch", R.dir);
    FILE *f = fopen(arch, "w");
    CHECK(f != NULL, "write %s", arch);
    if (!f) return;
    fputs("input shape=1x28x28 classes=10\nconv2d name=c1 out=8 kernel=3 padding=1 bias=0\nbatchnorm name=bn1\n"
          "relu name=r1\nmaxpool name=p1 kernel=2\nconv2d name=c2 out=8 kernel=3 padding=1 bias=0\n"
          "batchnorm name=bn2\nrelu name=r2\nflatten name=f\ndense name=fc out=classes\n", f);
    fclose(f);
#define SB_RUN "train --arch %s --data fashion-mnist --limit 256 --batch 64 --epochs 1 --threads 1 --quiet --no-test " \
               "--backend ref --sync-bn"
    int rc = cli_run(&R, SB_RUN " --out %s/sb1.tsr", arch, R.dir);
    CHECK(rc == 0, "1 rank: exit %d: %s", rc, R.err);
    rc = cli_run_under(&R, MPIRUN2, SB_RUN " --out %s/sb2.tsr", arch, R.dir);
    CHECK(rc == 0, "2 ranks: exit %d: %s", rc, R.err);
    ts_model *a = load(ctx, "sb1.tsr"), *b = load(ctx, "sb2.tsr");
    compare_models("4 steps with batch norm, --sync-bn, 2 ranks vs 1", b, a, 1e-5);
    ts_model_free(a);
    ts_model_free(b);
    /* a last batch that would leave a rank no sample is refused on every rank */
    rc = cli_run_under(&R, MPIRUN2, "train --arch demo --data fashion-mnist --limit 65 --batch 64 --epochs 1 --threads 1 "
                       "--quiet --no-test --sync-bn --out %s/sb3.tsr", R.dir);
    CHECK(rc == 2, "empty rank: exit %d", rc);
    CHECK(strstr(R.err, "leaves some of the 2 ranks none") && !cli_exists(&R, "sb3.tsr"), "empty rank: %s", R.err);
    ts_ctx_free(ctx);
}

static void two_runs_bit_identical(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    /* with batch norm: per-rank statistics, running ones averaged over the ranks */
    int rc = cli_run_under(&R, MPIRUN2, BN_RUN " --out %s/r1.tsr --checkpoint %s/c.ckpt", R.dir, R.dir);
    CHECK(rc == 0, "first run: exit %d: %s", rc, R.err);
    rc = cli_run_under(&R, MPIRUN2, BN_RUN " --out %s/r2.tsr", R.dir);
    CHECK(rc == 0, "second run: exit %d: %s", rc, R.err);
    ts_model *a = load(ctx, "r1.tsr"), *b = load(ctx, "r2.tsr");
    compare_models("two 2-rank runs", a, b, 0);
    ts_model_free(a);
    ts_model_free(b);
    ts_ctx_free(ctx);
}

static void resume_on_one_rank(void) {
    /* c.ckpt: the 2-rank run's checkpoint after its epoch, written by rank 0 */
    CHECK(cli_exists(&R, "c.ckpt") && !cli_leftover_tmp(&R), "2-rank checkpoint missing or temporaries left");
    int rc = cli_run(&R, "train --resume %s/c.ckpt --epochs 2 --threads 1 --quiet --no-test --out %s/r3.tsr", R.dir,
                     R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 2:"), "resume on 1 rank: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run_under(&R, MPIRUN2, "train --resume %s/c.ckpt --epochs 3 --threads 1 --quiet --no-test --out %s/r4.tsr",
                       R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 3:"), "resume again on 2 ranks: exit %d: %s %s", rc, R.out, R.err);
}

/* out without what differs run to run: lines with timings or the output folder, and
 * the last column (seconds) of decompose's table rows */
static void without_times(const char *out, char *buf, size_t n) {
    size_t k = 0;
    for (const char *l = out; *l && k + 1 < n;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
        int skip = 0;
        for (const char *q = l; q < l + len && !skip; q++)
            skip = !strncmp(q, "secs", 4) || !strncmp(q, "/s", 2) || !strncmp(q, " in ", 4) ||
                   !strncmp(q, "written to", 10);
        size_t keep = len;
        if (*l >= '0' && *l <= '9')
            while (keep > 0 && l[keep - 1] != ' ') keep--;
        if (!skip && k + keep < n) {
            memcpy(buf + k, l, keep);
            k += keep;
        }
        l += len;
    }
    buf[k] = '\0';
}

/* The modules in folders a and b are the same: counts, thresholds, every kernel's kept share. */
static void compare_modules(const char *what, const char *a, const char *b, int classes) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    for (int c = 0; c < classes; c++) {
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s/class%d.tsm", R.dir, a, c);
        snprintf(pb, sizeof pb, "%s/%s/class%d.tsm", R.dir, b, c);
        ts_module *x = NULL, *y = NULL;
        CHECK(!ts_module_load(ctx, pa, &x) && !ts_module_load(ctx, pb, &y), "%s: load class %d: %s", what, c,
              ts_ctx_error(ctx));
        ts_module_info i, j;
        if (x && y && !ts_module_info_get(x, &i) && !ts_module_info_get(y, &j)) {
            CHECK(i.threshold == j.threshold && i.positives == j.positives && i.negatives == j.negatives &&
                      i.params_kept == j.params_kept && ts_module_mask_count(x) == ts_module_mask_count(y),
                  "%s: class %d: threshold %g/%g, positives %d/%d, params %lld/%lld", what, c, (double)i.threshold,
                  (double)j.threshold, i.positives, j.positives, (long long)i.params_kept, (long long)j.params_kept);
            for (int k = 0; k < ts_module_mask_count(x) && k < ts_module_mask_count(y); k++) {
                ts_module_mask_info mi;
                float kx[4096], ky[4096];
                if (ts_module_mask(ctx, x, k, &mi, NULL) || mi.channels > 4096) continue;
                ts_module_mask(ctx, x, k, &mi, kx);
                ts_module_mask(ctx, y, k, &mi, ky);
                CHECK(!memcmp(kx, ky, sizeof(float) * (size_t)mi.channels), "%s: class %d: mask %d (%s) differs", what,
                      c, k, mi.layer);
            }
        }
        ts_module_free(x);
        ts_module_free(y);
    }
    ts_ctx_free(ctx);
}

/* Runs `args` (ending in an output name, given out1 and then out2) alone and on 2
 * ranks; both must succeed and print the same, which must contain `must`. */
static void alone_and_on_two(const char *what, const char *args, const char *out1, const char *out2, const char *must) {
    static char a[1 << 16], b[1 << 16];
    int rc = cli_run(&R, "%s%s", args, out1);
    CHECK(rc == 0, "%s, 1 rank: exit %d: %s", what, rc, R.err);
    without_times(R.out, a, sizeof a);
    rc = cli_run_under(&R, MPIRUN2, "%s%s", args, out2);
    CHECK(rc == 0, "%s, 2 ranks: exit %d: %s", what, rc, R.err);
    without_times(R.out, b, sizeof b);
    CHECK(!strcmp(a, b) && strstr(a, must), "%s, 2 ranks printed\n%s\n1 rank\n%s", what, b, a);
}

/* decompose and eval share their work among the ranks and give a lone run's results:
 * the same modules (activation method; CNNSplitter's search), the same report */
static void decompose_and_eval_match_one_rank(void) {
    const double t0 = now();
    /* LeNet-5: cheap enough for the sanitizer build */
    int rc = cli_run(&R, "train --arch lenet5 --optimizer adam --lr 0.002 --data fashion-mnist --limit 3000 --batch 64 "
                     "--epochs 2 --threads 1 --quiet --no-test --out %s/dec.tsr", R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    char args[1024];
    /* the per-module evaluation spreads as eval does (test_dist_spread checks it); left
     * out here, where the sanitizer build would spend half a minute on it */
    snprintf(args, sizeof args, "decompose %s/dec.tsr --positives 40 --confidence 0.5 --batch 16 --threads 1 --quiet "
             "--no-eval --out %s/", R.dir, R.dir);
    alone_and_on_two("decompose", args, "m1", "m2", "mean kernel retention");
    compare_modules("decompose, 2 ranks vs 1", "m1", "m2", 10);
    snprintf(args, sizeof args, "decompose %s/dec.tsr --positives 40 --confidence 0.5 --batch 16 --threads 1 --quiet "
             "--method ga --population 6 --generations 2 --parents 3 --elites 1 --val-per-class 8 --no-eval --out %s/",
             R.dir, R.dir);
    alone_and_on_two("ga", args, "g1", "g2", "best fitness");
    compare_modules("ga, 2 ranks vs 1", "g1", "g2", 10);
    /* 1050 samples in batches of 100: 6 and 5 batches, the last short */
    snprintf(args, sizeof args, "eval %s/dec.tsr --limit 1050 --batch 100 --threads 1", R.dir);
    alone_and_on_two("eval", args, "", "", "top-1");
    printf("  decompose (activation, ga) and eval on 1 and 2 ranks: %.1f s\n", now() - t0);
}

/* train under mpirun evaluates its validation and test splits with the ranks sharing
 * the batches: the test figures are those of eval alone on the saved model */
static void training_tests_like_eval(void) {
    int rc = cli_run_under(&R, MPIRUN2, "train --arch lenet5 --data fashion-mnist --limit 256 --val-split 0.25 --batch 64 "
                           "--epochs 1 --threads 1 --quiet --out %s/tv.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "| val loss"), "2 ranks: exit %d: %s %s", rc, R.out, R.err);
    const char *t = strstr(R.out, "test accuracy: ");
    char want[128] = "";
    if (t) snprintf(want, sizeof want, "top-1 %.*s", (int)strcspn(t + 15, " "), t + 15);
    rc = cli_run(&R, "eval %s/tv.tsr --threads 1", R.dir);
    CHECK(rc == 0 && t && strstr(R.out, want), "test split of the 2-rank run ('%s') against eval alone: %s", want,
          R.out);
}

/* The pid of rank `rank` among processes whose command line names our folder. */
static pid_t find_rank(int rank) {
    char want[32];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;
    while (d && !found && (e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        char p[64], buf[8192];
        snprintf(p, sizeof p, "/proc/%d/cmdline", (int)pid);
        FILE *f = fopen(p, "rb");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!buf[i]) buf[i] = ' ';
        buf[n] = '\0';
        if (!strstr(buf, R.dir) || !strstr(buf, " train ") || strstr(buf, "mpirun")) continue;
        snprintf(p, sizeof p, "/proc/%d/environ", (int)pid);
        f = fopen(p, "rb");
        n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        for (size_t i = 0; i + strlen(want) <= n; i++)
            if (!memcmp(buf + i, want, strlen(want)) && (i == 0 || !buf[i - 1]) &&
                (i + strlen(want) == n || !buf[i + strlen(want)]))
                found = pid;
    }
    if (d) closedir(d);
    return found;
}

static void killed_rank_ends_job(void) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "exec env HOME=%s TESSERA_DATA=%s/nodata " MPIRUN2 " %s train --arch lenet5 --data fashion-mnist "
             "--limit 4096 --batch 4 --epochs 20 --threads 1 --quiet --no-test --checkpoint %s/k.ckpt "
             "--checkpoint-every 25 --out %s/k.tsr >%s/k.out 2>%s/k.err </dev/null",
             R.dir, R.dir, R.bin, R.dir, R.dir, R.dir, R.dir);
    pid_t job = fork();
    if (job == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    CHECK(job > 0, "fork failed");
    if (job <= 0) return;
    pid_t victim = 0;
    for (double t0 = now(); now() - t0 < 30 && !(victim && cli_exists(&R, "k.ckpt"));) {
        if (!victim) victim = find_rank(1);
        usleep(20000);
    }
    CHECK(victim > 0 && cli_exists(&R, "k.ckpt"), "rank 1 (pid %d) or a first checkpoint not seen in 30 s", (int)victim);
    if (victim > 0) kill(victim, SIGKILL);
    const double t0 = now();
    int status = 0;
    pid_t done = 0;
    while (now() - t0 < 60 && (done = waitpid(job, &status, WNOHANG)) == 0) usleep(20000);
    const double took = now() - t0;
    if (done != job) { /* hung: clean up, then fail */
        kill(-job, SIGKILL);
        waitpid(job, &status, 0);
    }
    CHECK(done == job, "the job still ran 60 s after rank 1 was killed");
    CHECK(done == job && (!WIFEXITED(status) || WEXITSTATUS(status) != 0), "the job exited 0 after a rank died");
    printf("  killed rank 1: the job ended in %.1f s (exit %d)\n", took, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char p[512];
    snprintf(p, sizeof p, "%s/k.ckpt", R.dir);
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    ts_model *m = NULL;
    ts_train_config cfg;
    CHECK(ts_checkpoint_load_model(ctx, p, &m, &cfg) == TS_OK, "checkpoint after the kill: %s", ts_ctx_error(ctx));
    ts_model_free(m);
    ts_ctx_free(ctx);
}

static void errors_reach_the_user(void) {
    int rc = cli_run_under(&R, MPIRUN2, "train --data %s/no-such-data --threads 1 --quiet --out %s/e.tsr", R.dir, R.dir);
    CHECK(rc != 0 && strstr(R.err, "no-such-data"), "a bad --data on every rank: exit %d: %s", rc, R.err);
    rc = cli_run_under(&R, MPIRUN2, "train --arch demo --data fashion-mnist --limit 64 --batch 64 --modular "
                       "--threads 1 --quiet --no-test --out %s/e.tsr", R.dir);
    CHECK(rc != 0 && strstr(R.err, "modular training (MwT) runs on one process only"), "--modular: exit %d: %s", rc,
          R.err);
    CHECK(!cli_exists(&R, "e.tsr"), "a failed run wrote its --out");
    /* rank 0 alone checks --out: its failure must end rank 1, which waits in the first sum */
    const double t0 = now();
    rc = cli_run_under(&R, MPIRUN2, ONE_STEP " --out %s/no/such/dir/e.tsr", R.dir);
    CHECK(rc != 0 && strstr(R.err, "no/such/dir") && strstr(R.err, "rank 0 of 2 failed"),
          "one rank failing: exit %d: %s", rc, R.err);
    CHECK(now() - t0 < 60, "one rank failing: the job took %.0f s", now() - t0);
}

/* Why this machine cannot run the cases, or NULL. */
static const char *missing(void) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0) return "no mpirun (apt-get install openmpi-bin)";
    ts_ctx *ctx = NULL;
    ts_dataset *ds = NULL;
    ts_ctx_create(&ctx);
    ts_status st = ts_dataset_load_first(ctx, "fashion-mnist", TS_SPLIT_TRAIN, NULL, 16, &ds);
    ts_dataset_free(ds);
    ts_ctx_free(ctx);
    if (st) return "dataset-fashion-mnist not installed";
    int rc = cli_run_under(&R, MPIRUN2, "train --data fashion-mnist --limit 8 --batch 8 --epochs 1 --threads 1 "
                           "--quiet --no-test --out %s/probe.tsr", R.dir);
    if (rc != 0 && strstr(R.err, "built without MPI")) return "this tessera was built without MPI";
    return NULL; /* any other failure shows in the cases */
}

int main(void) {
    if (!cli_runner_begin(&R, "mpi")) {
        printf("test_cli_mpi: 0 passed, 1 failed\n");
        return 1;
    }
    const char *why = missing();
    if (why) {
        printf("test_cli_mpi: skipped: %s\n", why);
    } else {
        RUN(one_step_equals_one_rank);
        RUN(sync_bn_equals_one_rank);
        RUN(two_runs_bit_identical);
        RUN(resume_on_one_rank);
        RUN(decompose_and_eval_match_one_rank);
        RUN(training_tests_like_eval);
        RUN(killed_rank_ends_job);
        RUN(errors_reach_the_user);
    }
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_mpi");
}
