/* File safety and fault handling through the CLI (issue 13): what tessera must never
 * overwrite, and the broken states it must never save. Each test fails on the code
 * before the fix. Runs the binary named by $TESSERA_BIN (scripts/run-tests.sh sets
 * it) on a tiny 10-class 1x8x8 IDX dataset made here. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "common/cli_run.h"
#include "common/test.h"
#include "tessera.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static const char *g_bin;
static char g_dir[256];
static char g_out[1 << 16], g_err[1 << 16];

/* small enough that a run of a few epochs takes well under a second */
static const char *const ARCH = "input shape=1x8x8 classes=10\n"
                                "conv2d name=c1 out=6 kernel=3 padding=1\n"
                                "batchnorm name=b1\n"
                                "relu\n"
                                "maxpool kernel=2\n"
                                "flatten\n"
                                "dense name=fc out=classes\n";

/* $D in fmt stands for the test folder. */
static void expand(char *out, size_t n, const char *fmt, va_list ap) {
    char raw[8192];
    vsnprintf(raw, sizeof raw, fmt, ap);
    size_t o = 0;
    for (const char *p = raw; *p && o + 1 < n; p++) {
        if (p[0] == '$' && p[1] == 'D') {
            o += (size_t)snprintf(out + o, n - o, "%s", g_dir);
            p++;
        } else {
            out[o++] = *p;
        }
        if (o >= n) o = n - 1;
    }
    out[o] = '\0';
}

/* Runs `tessera ARGS` (prefix: environment or a limit for the shell) with stdout and
 * stderr captured; returns the exit code. */
static int run_with(const char *prefix, const char *fmt, ...) {
    char args[8192], cmd[16384], o[512], e[512];
    va_list ap;
    va_start(ap, fmt);
    expand(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/.stdout", g_dir);
    snprintf(e, sizeof e, "%s/.stderr", g_dir);
    snprintf(cmd, sizeof cmd, "%s TESSERA_DATA=%s/nodata %s %s >%s 2>%s </dev/null", prefix, g_dir, g_bin, args, o, e);
    int rc = system(cmd);
    cli_slurp(o, g_out, sizeof g_out);
    cli_slurp(e, g_err, sizeof g_err);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}
#define run(...) run_with("", __VA_ARGS__)

static void path_of(char *p, size_t n, const char *name) { snprintf(p, n, "%s/%s", g_dir, name); }

static int exists(const char *name) {
    char p[1024];
    path_of(p, sizeof p, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

static int mode_of(const char *name) {
    char p[1024];
    path_of(p, sizeof p, name);
    struct stat st;
    return stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int same_bytes(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    uint8_t *x = test_read_file(a, &la), *y = test_read_file(b, &lb);
    int same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

static int copy_file(const char *from, const char *to) {
    size_t n = 0;
    uint8_t *d = test_read_file(from, &n);
    int ok = d && test_write_file(to, d, n);
    free(d);
    return ok;
}

static int put_file(const char *name, const void *d, size_t n) {
    char p[1024];
    path_of(p, sizeof p, name);
    return test_write_file(p, d, n);
}

/* folder/{train,t10k}-{images,labels}: `count` 8x8 images, class i % 10 drawn as a
 * bright row at i % 10 (learnable). */
static int write_idx(const char *folder, const char *split, int count) {
    size_t ilen = 16 + (size_t)count * 64, llen = 8 + (size_t)count;
    uint8_t *img = calloc(1, ilen), *lab = calloc(1, llen);
    if (!img || !lab) return 0;
    test_put_idx_headers(img, lab, (uint32_t)count, 8, 8);
    for (int i = 0; i < count; i++) {
        int c = i % 10;
        lab[8 + i] = (uint8_t)c;
        for (int k = 0; k < 64; k++) img[16 + i * 64 + k] = (uint8_t)((k * 37 + i * 11) % 40);
        for (int k = 0; k < 8; k++) img[16 + i * 64 + (c % 8) * 8 + k] = (uint8_t)(c < 8 ? 250 : 120 + 10 * k);
    }
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte", folder, split);
    snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte", folder, split);
    int ok = put_file(a, img, ilen) && put_file(b, lab, llen);
    free(img);
    free(lab);
    return ok;
}

#define TRAIN "train --arch $D/net.arch --data $D/d --batch 8 --threads 1 --quiet --no-test"

/* d/ (200 training, 20 test images), net.arch, m.tsr, m.onnx, c.ckpt, mods/. */
static int make_inputs(void) {
    char p[512];
    const char *dirs[] = {"d", "nodata", "outside"};
    for (int i = 0; i < 3; i++) {
        path_of(p, sizeof p, dirs[i]);
        if (mkdir(p, 0755) != 0) return 0;
    }
    if (!write_idx("d", "train", 200) || !write_idx("d", "t10k", 20) || !put_file("net.arch", ARCH, strlen(ARCH)))
        return 0;
    int rc = run(TRAIN " --epochs 1 --lr 0.05 --out $D/m.tsr --checkpoint $D/c.ckpt");
    if (rc) fprintf(stderr, "making m.tsr: exit %d: %s\n", rc, g_err);
    if (!rc) rc = run("export $D/m.tsr --out $D/m.onnx");
    if (!rc) rc = run("decompose $D/m.tsr --out $D/mods --positives 2 --confidence 0 --no-eval --quiet --threads 1");
    if (rc) fprintf(stderr, "making inputs: exit %d: %s\n", rc, g_err);
    return rc == 0;
}

/* Item 1: a link planted at the temporary name the old code used (OUT.tmp.PID: the
 * pid is known, since exec keeps it) is never followed; the file it points to, outside
 * the folder, stays as it was. */
static void test_symlink_not_followed(void) {
    char victim[512], link[600], out[512], cmd[2048];
    path_of(victim, sizeof victim, "outside/victim.txt");
    put_file("outside/victim.txt", "precious\n", 9);
    path_of(out, sizeof out, "planted.onnx");
    pid_t pid = fork();
    if (pid == 0) {
        snprintf(link, sizeof link, "%s.tmp.%ld", out, (long)getpid());
        if (symlink(victim, link) != 0) _exit(120);
        snprintf(cmd, sizeof cmd, "%s/m.tsr", g_dir);
        int fd = open("/dev/null", 0);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(g_bin, g_bin, "export", cmd, "--out", out, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "export beside a planted link: status %d", status);
    size_t n = 0;
    uint8_t *v = test_read_file(victim, &n);
    CHECK(v && n == 9 && !memcmp(v, "precious\n", 9), "the file the link points to is untouched (%zu bytes)", n);
    free(v);
    char m[512];
    path_of(m, sizeof m, "m.onnx");
    CHECK(same_bytes(out, m), "the output itself was written whole");
    snprintf(link, sizeof link, "%s.tmp.%ld", out, (long)pid);
    struct stat st;
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the planted link is left alone (its process is gone, "
          "but it is no temporary file of tessera's)");
    unlink(link);
}

/* Item 2: an output that is the same file as an input is refused, by inode (a hard
 * link, a symbolic link, another spelling) and, for two outputs, by name. */
static void test_output_is_input(void) {
    char m[512], keep[512];
    path_of(m, sizeof m, "m.tsr");
    path_of(keep, sizeof keep, "keep.tsr");
    copy_file(m, keep);
    char hard[512], soft[512];
    path_of(hard, sizeof hard, "hard.tsr");
    path_of(soft, sizeof soft, "soft.tsr");
    CHECK(link(m, hard) == 0 && symlink(m, soft) == 0, "links made");
    struct {
        const char *args;
        const char *names;
    } cases[] = {
        {"export $D/m.tsr --out $D/m.tsr", "m.tsr"},
        {"export $D/m.tsr --out $D/hard.tsr", "hard.tsr"},
        {"export $D/m.tsr --out $D/soft.tsr", "soft.tsr"},
        {"export $D/m.tsr --out $D/../$(basename $D)/./m.tsr", "m.tsr"},
        {"import $D/m.onnx --out $D/m.onnx", "m.onnx"},
        {"compose $D/mods/class1.tsm $D/mods/class2.tsm --out $D/mods/class2.tsm", "class2.tsm"},
        {"reuse $D/mods/class1.tsm $D/mods/class2.tsm --no-eval --out $D/mods/class1.tsm", "class1.tsm"},
        {"replace $D/m.tsr --class 3 --with $D/mods/class3.tsm --out $D/mods/class3.tsm", "class3.tsm"},
        {"replace $D/m.tsr --class 3 --with $D/mods/class3.tsm --out $D/m.tsr", "m.tsr"},
        {"replace $D/mods --class 3 --with $D/mods/class3.tsm --out $D/mods/class5.tsm", "class5.tsm"},
        {TRAIN " --epochs 1 --init $D/m.tsr --out $D/m.tsr", "m.tsr"},
        {TRAIN " --epochs 1 --out $D/net.arch", "net.arch"},
        {TRAIN " --epochs 1 --checkpoint $D/x.ckpt --out $D/x.ckpt", "x.ckpt"},
        {"train --resume $D/c.ckpt --epochs 2 --quiet --no-test --out $D/c.ckpt", "c.ckpt"},
        {TRAIN " --epochs 1 --init $D/m.tsr --checkpoint $D/m.tsr --out $D/o.tsr", "m.tsr"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run(cases[i].args);
        CHECK(rc == 2 && count_lines(g_err) == 1 && strstr(g_err, cases[i].names) && strstr(g_err, "same file"),
              "%s: exit %d: %s", cases[i].args, rc, g_err);
        CHECK(same_bytes(m, keep), "%s: the input is unchanged", cases[i].args);
    }
    CHECK(!exists("x.ckpt") && !exists("o.tsr"), "nothing written");
    /* decompose into a folder where a module would replace the model */
    char mods[512], model[512];
    path_of(mods, sizeof mods, "dm");
    mkdir(mods, 0755);
    path_of(model, sizeof model, "dm/class0.tsm");
    copy_file(m, model);
    int rc = run("decompose $D/dm/class0.tsm --out $D/dm --positives 2 --confidence 0 --no-eval --quiet --threads 1");
    CHECK(rc == 2 && strstr(g_err, "class0.tsm") && same_bytes(model, keep), "decompose over its own model: exit %d: %s",
          rc, g_err);
    /* resuming into the checkpoint it reads stays allowed */
    rc = run("train --resume $D/c.ckpt --epochs 2 --quiet --no-test --checkpoint $D/c.ckpt --out $D/r.tsr");
    CHECK(rc == 0 && exists("r.tsr"), "--resume X --checkpoint X: exit %d: %s", rc, g_err);
    unlink(hard);
    unlink(soft);
}

/* Item 3: a replaced output keeps its mode; a write-protected one is refused unless
 * --force, before any work. */
static void test_modes(void) {
    char o[512], m[512], before[512];
    path_of(o, sizeof o, "p.onnx");
    path_of(m, sizeof m, "m.onnx");
    path_of(before, sizeof before, "p-before");
    put_file("p.onnx", "old", 3);
    chmod(o, 0600);
    int rc = run("export $D/m.tsr --out $D/p.onnx");
    CHECK(rc == 0 && mode_of("p.onnx") == 0600 && same_bytes(o, m), "a 0600 file stays 0600: exit %d, mode %o", rc,
          mode_of("p.onnx"));
    chmod(o, 0444);
    copy_file(o, before);
    rc = run("export $D/m.tsr --out $D/p.onnx");
    CHECK(rc == 3 && count_lines(g_err) == 1 && strstr(g_err, "p.onnx") && strstr(g_err, "write-protected") &&
              same_bytes(o, before), "a 0444 file is refused: exit %d: %s", rc, g_err);
    rc = run(TRAIN " --epochs 1 --out $D/p.onnx");
    CHECK(rc == 3 && strstr(g_err, "write-protected") && !strstr(g_out, "epoch 1"),
          "train refuses a write-protected --out before training: exit %d: %s %s", rc, g_out, g_err);
    rc = run("export $D/m.tsr --out $D/p.onnx --force");
    CHECK(rc == 0 && mode_of("p.onnx") == 0444, "--force replaces it and keeps its mode: exit %d, mode %o: %s", rc,
          mode_of("p.onnx"), g_err);
    /* a checkpoint replaced through its pending file keeps its mode too */
    char c[512];
    path_of(c, sizeof c, "mode.ckpt");
    rc = run(TRAIN " --epochs 1 --out $D/mo.tsr --checkpoint $D/mode.ckpt");
    chmod(c, 0640);
    rc = run("train --resume $D/mode.ckpt --epochs 2 --quiet --no-test --checkpoint $D/mode.ckpt --out $D/mo.tsr");
    CHECK(rc == 0 && mode_of("mode.ckpt") == 0640, "the checkpoint stays 0640: exit %d, mode %o", rc,
          mode_of("mode.ckpt"));
}

/* Item 4: a loss that blows up but stays finite is divergence: exit 8, and the
 * checkpoint on disk stays the last good one. The weights are scaled by 1e4 in a
 * checkpoint, as a huge learning rate would leave them; old code trained on and
 * saved the diverged state with exit 0. */
static void test_finite_blowup(void) {
    char c[512], good[512];
    path_of(c, sizeof c, "blow.ckpt");
    path_of(good, sizeof good, "good.ckpt");
    int rc = run(TRAIN " --epochs 1 --lr 0.05 --out $D/b.tsr --checkpoint $D/blow.ckpt");
    CHECK(rc == 0, "first epoch: exit %d: %s", rc, g_err);
    /* the state a huge step leaves: finite weights far too large */
    ts_ctx *ctx = NULL;
    ts_model *mdl = NULL;
    ts_train_config cfg;
    ts_ctx_create(&ctx);
    rc = (int)ts_checkpoint_load_model(ctx, c, &mdl, &cfg);
    CHECK(rc == 0, "load: %s", ts_ctx_error(ctx));
    ts_dataset *ds = NULL;
    ts_trainer *tr = NULL;
    char d[512];
    path_of(d, sizeof d, "d");
    if (!rc && !ts_dataset_load(ctx, d, TS_SPLIT_TRAIN, NULL, &ds) && !ts_trainer_create(ctx, mdl, ds, NULL, &cfg, &tr) &&
        !ts_checkpoint_restore(ctx, tr, c)) {
        for (int i = 0; i < ts_model_tensor_count(mdl); i++) {
            ts_tensor_info ti;
            ts_model_tensor(mdl, i, &ti);
            if (!strcmp(ti.name, "fc.weight"))
                for (int64_t k = 0; k < ti.numel; k++) ti.data[k] *= 1e4f;
        }
        ts_model_params_changed(mdl);
        CHECK(ts_checkpoint_save(ctx, tr, c) == TS_OK, "save: %s", ts_ctx_error(ctx));
        /* the library: the run stops, and a diverged trainer is never saved */
        cfg.epochs = 2;
        ts_trainer_free(tr);
        tr = NULL;
    }
    ts_trainer_free(tr);
    ts_dataset_free(ds);
    ts_model_free(mdl);
    ts_ctx_free(ctx);
    copy_file(c, good);
    rc = run("train --resume $D/blow.ckpt --epochs 3 --quiet --no-test --checkpoint $D/blow.ckpt "
             "--checkpoint-every 1 --out $D/blown.tsr");
    CHECK(rc == 8 && count_lines(g_err) == 1 && strstr(g_err, "diverged") && strstr(g_err, "times its running average"),
          "a finite blow-up is divergence: exit %d: %s", rc, g_err);
    CHECK(!exists("blown.tsr") && !exists("blow.ckpt.pending"), "no model and no pending checkpoint written");
    CHECK(same_bytes(c, good), "the checkpoint is still the one the run started from");
}

/* The library side of item 4: once a run diverged, its state is never saved. */
static void test_diverged_not_saved(void) {
    ts_ctx *ctx = NULL;
    ts_model *mdl = NULL;
    ts_dataset *ds = NULL;
    ts_trainer *tr = NULL;
    ts_ctx_create(&ctx);
    char d[512], c[512];
    path_of(d, sizeof d, "d");
    path_of(c, sizeof c, "lib.ckpt");
    ts_shape in = {3, {1, 8, 8}};
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 1;
    cfg.batch = 8;
    cfg.lr = 1e4f; /* far too large */
    cfg.optim.momentum = 0;
    ts_status st = ts_model_from_arch(ctx, ARCH, "net", &in, 10, 1, &mdl);
    if (!st) st = ts_dataset_load(ctx, d, TS_SPLIT_TRAIN, NULL, &ds);
    if (!st) st = ts_trainer_create(ctx, mdl, ds, NULL, &cfg, &tr);
    CHECK(!st, "setup: %s", ts_ctx_error(ctx));
    if (!st) {
        st = ts_trainer_run(ctx, tr, NULL);
        CHECK(st == TS_EDIVERGED, "lr 1e4 diverges: %s (%s)", ts_status_name(st), ts_ctx_error(ctx));
        st = ts_checkpoint_save(ctx, tr, c);
        CHECK(st == TS_EDIVERGED && strstr(ts_ctx_error(ctx), "diverged") && !exists("lib.ckpt"),
              "a diverged trainer is not saved: %s: %s", ts_status_name(st), ts_ctx_error(ctx));
    }
    ts_trainer_free(tr);
    ts_dataset_free(ds);
    ts_model_free(mdl);
    ts_ctx_free(ctx);
}

/* Item 5: a second writer of a checkpoint (or --out) is refused while the first holds
 * it; the lock here is taken by this process, the run is another one. */
static void test_second_writer(void) {
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    char c[512];
    path_of(c, sizeof c, "busy.ckpt");
    ts_file_lock *lock = NULL;
    CHECK(ts_file_lock_acquire(ctx, c, &lock) == TS_OK, "lock: %s", ts_ctx_error(ctx));
    int rc = run(TRAIN " --epochs 1 --out $D/busy.tsr --checkpoint $D/busy.ckpt");
    CHECK(rc == 3 && count_lines(g_err) == 1 && strstr(g_err, "busy.ckpt") && strstr(g_err, "another process"),
          "a second writer of the checkpoint: exit %d: %s", rc, g_err);
    CHECK(!exists("busy.tsr") && !exists("busy.ckpt"), "the refused run wrote nothing");
    rc = run(TRAIN " --epochs 1 --out $D/busy.ckpt");
    CHECK(rc == 3 && strstr(g_err, "another process"), "a second writer of --out: exit %d: %s", rc, g_err);
    ts_file_lock_release(lock);
    CHECK(!exists("busy.ckpt.lock"), "the lock file goes with the lock");
    rc = run(TRAIN " --epochs 1 --out $D/busy.tsr --checkpoint $D/busy.ckpt");
    CHECK(rc == 0 && exists("busy.ckpt") && !exists("busy.ckpt.lock") && !exists("busy.tsr.lock"),
          "once free, the run goes ahead and leaves no lock file: exit %d: %s", rc, g_err);
    ts_ctx_free(ctx);
}

/* Item 6: a checkpoint that cannot be written stops the run with the write error
 * (here a full disk: writes past 4 KB fail), not "stopped by the caller". */
static void test_checkpoint_write_error(void) {
    int rc = run_with("ulimit -f 4 && trap '' XFSZ &&",
                      TRAIN " --epochs 3 --checkpoint-every 2 --checkpoint $D/full.ckpt --out $D/full.tsr");
    CHECK(rc == 3 && count_lines(g_err) == 1 && strstr(g_err, "full.ckpt") && strstr(g_err, "write failed") &&
              !strstr(g_err, "stopped by the caller"), "checkpoint write error: exit %d: %s", rc, g_err);
    CHECK(!exists("full.tsr") && !exists("full.ckpt"), "nothing written");
}

/* Item 7: temporaries of dead processes for the same output are removed, each with a
 * note; one of a live process (this one) stays. */
static void test_stale_temps(void) {
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char a[64], b[64], live[64];
    snprintf(a, sizeof a, "s.onnx.tmp.%ld", (long)dead);
    snprintf(b, sizeof b, "s.onnx.tmp.%ld.x1y2z3", (long)dead);
    snprintf(live, sizeof live, "s.onnx.tmp.%ld", (long)getpid());
    put_file(a, "stale", 5);
    put_file(b, "stale", 5);
    put_file(live, "live", 4);
    put_file("other.onnx.tmp.1", "other", 5);
    int rc = run("export $D/m.tsr --out $D/s.onnx");
    CHECK(rc == 0 && !exists(a) && !exists(b), "stale temporaries removed: exit %d: %s", rc, g_err);
    CHECK(strstr(g_err, "note: removed") && strstr(g_err, a) && count_lines(g_err) == 2, "and said so: %s", g_err);
    CHECK(exists(live) && exists("other.onnx.tmp.1"), "a live process's temporary, and another output's, stay");
    char p[512];
    path_of(p, sizeof p, live);
    unlink(p);
    path_of(p, sizeof p, "other.onnx.tmp.1");
    unlink(p);
}

/* Item 8: the checkpoint records the thread count; resuming uses it, and an override
 * is said to lose bit-identity. A checkpoint of the old format (version 1) loads. */
static void test_recorded_settings(void) {
    char c[512];
    path_of(c, sizeof c, "set.ckpt");
    int rc = run(TRAIN " --epochs 1 --out $D/set.tsr --checkpoint $D/set.ckpt");
    CHECK(rc == 0, "train: exit %d: %s", rc, g_err);
    ts_ctx *ctx = NULL;
    ts_ctx_create(&ctx);
    ts_run_settings rs;
    CHECK(ts_checkpoint_settings(ctx, c, &rs) == TS_OK && rs.threads == 1 && rs.backend == TS_BACKEND_DNNL && !rs.bf16,
          "recorded: %d threads, backend %d, bf16 %d: %s", rs.threads, (int)rs.backend, rs.bf16, ts_ctx_error(ctx));
    rc = run("train --resume $D/set.ckpt --epochs 2 --quiet --no-test --out $D/set2.tsr");
    CHECK(rc == 0 && strstr(g_out, ", 1 thread\n") && !strstr(g_err, "bit-identical"),
          "resuming uses the recorded threads: exit %d: %s %s", rc, g_out, g_err);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu >= 2) {
        rc = run("train --resume $D/set.ckpt --epochs 2 --threads 2 --quiet --no-test --out $D/set2.tsr");
        CHECK(rc == 0 && strstr(g_err, "1 threads") && strstr(g_err, "not be bit-identical"),
              "an override is warned of: exit %d: %s", rc, g_err);
    }
    /* version 1: the same file without the 56 bytes after the configuration (version
     * 2's settings and running loss, 28; version 3's modular fields, 28) and the 32 at
     * the end of the section (version 4's early stopping: no validation, no tensors) */
    size_t n = 0;
    uint8_t *f = test_read_file(c, &n);
    size_t off = 16, tran = 0, tran_end = 0;
    uint32_t nsec = f ? (uint32_t)f[12] | (uint32_t)f[13] << 8 : 0;
    for (uint32_t s = 0; f && s < nsec && off + 12 <= n; s++) {
        uint64_t len = 0;
        for (int k = 7; k >= 0; k--) len = len << 8 | f[off + 4 + k];
        if (!memcmp(f + off, "TRAN", 4)) {
            tran = off;
            tran_end = off + 12 + (size_t)len;
            uint64_t nl = len - 56 - 32;
            for (int k = 0; k < 8; k++) f[off + 4 + k] = (uint8_t)(nl >> (8 * k));
            break;
        }
        off += 12 + (size_t)len;
    }
    CHECK(tran > 0, "TRAN section found");
    if (tran) {
        f[tran + 12] = 1; /* version 1 */
        memmove(f + tran_end - 32, f + tran_end, n - tran_end); /* version 4's tail first: it lies after the cut */
        size_t cut = tran + 12 + 80;
        memmove(f + cut, f + cut + 56, n - 32 - cut - 56);
        put_file("v1.ckpt", f, n - 32 - 56);
        char v1[512];
        path_of(v1, sizeof v1, "v1.ckpt");
        CHECK(ts_checkpoint_settings(ctx, v1, &rs) == TS_OK && rs.threads == 0, "a version 1 checkpoint: %s",
              ts_ctx_error(ctx));
        rc = run("train --resume $D/v1.ckpt --epochs 2 --quiet --no-test --out $D/v1.tsr");
        CHECK(rc == 0 && exists("v1.tsr"), "a version 1 checkpoint resumes: exit %d: %s", rc, g_err);
    }
    free(f);
    ts_ctx_free(ctx);
}

/* Item 11, the smaller ones. */
static void test_long_names_and_messages(void) {
    char name[300];
    memset(name, 'n', 250);
    memcpy(name + 250, ".onnx", 6); /* 255 bytes: the most a file name may have */
    int rc = run("export $D/m.tsr --out $D/%s", name);
    CHECK(rc == 0 && exists(name), "a 255-byte name is written: exit %d: %s", rc, g_err);
    rc = run(TRAIN " --epochs 1 --out $D/%s --checkpoint $D/%.240s.ckpt", name, name);
    CHECK(rc == 0, "and trained into, with a lock and a checkpoint beside it: exit %d: %s", rc, g_err);
    char p[1024];
    path_of(p, sizeof p, name);
    unlink(p);
    /* a missing model 700 bytes deep: the whole path is in the message */
    char deep[800];
    size_t o = 0;
    for (int i = 0; i < 7; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "%099d/", i);
    snprintf(deep + o, sizeof deep - o, "the-end.tsr");
    rc = run("info $D/%s", deep);
    CHECK(rc == 3 && strstr(g_err, deep) && strstr(g_err, "No such file"), "a long message is whole: exit %d: %.80s...",
          rc, g_err);
}

static void test_small_refusals(void) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = run("train --arch $D/net.arch --data $D/d --batch 8 --threads 1024 --quiet --no-test --epochs 1 "
                 "--out $D/t.tsr");
    char want[64];
    snprintf(want, sizeof want, ", %ld threads", ncpu);
    CHECK(rc == 0 && strstr(g_err, "--threads 1024") && strstr(g_err, "cores") && strstr(g_out, want),
          "--threads above the cores is capped, with a note: exit %d: %s %s", rc, g_out, g_err);
    rc = run("predict $D/m.tsr --data $D/d --index ''");
    CHECK(rc == 2 && strstr(g_err, "--index") && count_lines(g_err) == 1 && !*g_out, "--index '': exit %d: %s", rc,
          g_err);
    rc = run("predict $D/m.tsr --data $D/d --index ,");
    CHECK(rc == 2, "--index ',': exit %d", rc);
    /* a corrupt test split fails train at once, with nothing written */
    char bad[512], lab[512];
    path_of(bad, sizeof bad, "bad");
    mkdir(bad, 0755);
    CHECK(write_idx("bad", "train", 50) && write_idx("bad", "t10k", 20), "data written");
    path_of(lab, sizeof lab, "bad/t10k-labels-idx1-ubyte");
    FILE *f = fopen(lab, "r+b");
    if (f) {
        fseek(f, 12, SEEK_SET);
        fputc(77, f); /* label 77 of 10 classes */
        fclose(f);
    }
    rc = run("train --arch $D/net.arch --data $D/bad --batch 8 --threads 1 --quiet --epochs 1 --out $D/bad.tsr");
    CHECK(rc == 4 && strstr(g_err, "t10k-labels") && !exists("bad.tsr") && !strstr(g_out, "epoch 1"),
          "a corrupt test split: exit %d: %s %s", rc, g_out, g_err);
}

/* Item 11, gzip: a dataset read with --limit inflates only what it keeps (and zlib's
 * read-ahead, 256 KB here). The images file is valid gzip for its first 6000 images
 * (384 KB) and corrupt after them, so a reader that inflates it all fails. */
static void test_gzip_limit(void) {
    char dir[512], img[600], tmp[700];
    path_of(dir, sizeof dir, "gz");
    mkdir(dir, 0755);
    CHECK(write_idx("gz", "train", 10000), "data written");
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte", dir);
    snprintf(tmp, sizeof tmp, "%s.gz", img);
    size_t n = 0;
    uint8_t *raw = test_read_file(img, &n);
    gzFile gz = raw ? gzopen(tmp, "wb") : NULL;
    long flushed = 0;
    if (gz) {
        gzwrite(gz, raw, 16 + 6000 * 64);
        gzflush(gz, Z_FULL_FLUSH);
        flushed = (long)gzoffset(gz);
        gzwrite(gz, raw + 16 + 6000 * 64, (unsigned)(n - 16 - 6000 * 64));
        gzclose(gz);
    }
    free(raw);
    unlink(img);
    size_t zn = 0;
    uint8_t *z = test_read_file(tmp, &zn);
    CHECK(z && flushed > 0 && (size_t)flushed + 64 < zn, "gzip written (%ld of %zu bytes flushed)", flushed, zn);
    if (z && flushed > 0 && (size_t)flushed + 64 < zn) {
        for (size_t i = (size_t)flushed + 8; i < zn - 8; i += 3) z[i] ^= 0x5a; /* the rest is garbage */
        test_write_file(tmp, z, zn);
    }
    free(z);
    int rc = run(TRAIN " --data $D/gz --epochs 1 --out $D/gzall.tsr");
    CHECK(rc == 4 && strstr(g_err, "gzip"), "without --limit the corruption is found: exit %d: %s", rc, g_err);
    rc = run("train --arch $D/net.arch --data $D/gz --limit 50 --batch 8 --threads 1 --quiet --no-test --epochs 1 "
             "--out $D/gz50.tsr");
    CHECK(rc == 0 && exists("gz50.tsr") && strstr(g_out, "50 samples"),
          "train --limit 50 reads only 50 images: exit %d: %s %s", rc, g_out, g_err);
    rc = run("eval $D/gz50.tsr --data $D/gz/train-images-idx3-ubyte.gz --limit 20");
    CHECK(rc == 0 && strstr(g_out, "20 images"), "eval --limit 20 too: exit %d: %s %s", rc, g_out, g_err);
}

/* Item 9: out of memory inside oneDNN. Under any virtual-memory limit (ulimit -v), from
 * one too small to start up to one that suffices, inference and a training step end
 * with tessera's out-of-memory exit (10) or succeed: never a signal (oneDNN allocating
 * its own scratchpad: std::bad_alloc, then SIGSEGV) nor libgomp's exit 1 ("Thread
 * creation failed"). The smallest limit that succeeds is found by bisection, then the
 * limits below it are tried in 2 MB steps. */
static int bench_under(long mb, const char *args) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "ulimit -v %ld &&", mb * 1024);
    return run_with(prefix, "bench resnet20 --iters 1 --warmup 0 %s", args);
}

/* Below some limit the dynamic loader cannot map tessera's libraries (exit 127): the
 * process never starts, so nothing of tessera's runs to be judged. */
static int cannot_start(int rc) {
    return rc == 127 && strstr(g_err, "error while loading shared libraries") != NULL;
}

static void sweep_memory(const char *args) {
    long lo = 32, hi = 1024, at = hi; /* MB: lo fails, hi succeeds; at: the last limit tried */
    int rc = bench_under(hi, args);
    CHECK(rc == 0, "bench resnet20 %s under %ld MB: exit %d: %s", args, hi, rc, g_err);
    if (rc) return;
    int ok = 1, tried = 0;
    while (ok && hi - lo > 2) {
        at = (lo + hi) / 2;
        rc = bench_under(at, args);
        ok = rc == 0 || rc == 10 || cannot_start(rc);
        *(rc == 0 ? &hi : &lo) = at;
    }
    for (long mb = hi - 2; ok && mb > hi - 100 && mb > 32; mb -= 2, tried++) {
        rc = bench_under(at = mb, args);
        if (cannot_start(rc)) { /* and no lower limit can start it either */
            tried++;
            break;
        }
        ok = rc == 0 || rc == 10;
    }
    CHECK(ok, "bench resnet20 %s under ulimit -v %ld MB: exit %d (0 or 10 expected): %s", args, at, rc, g_err);
    CHECK(!ok || tried > 0, "limits below %ld MB tried", hi);
}

static void test_oom_in_onednn(void) {
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer reserves terabytes of shadow address space at start, so no
     * binary of this build can start under any ulimit -v: the plain build runs it. */
    printf("  (skipped under AddressSanitizer: its shadow memory cannot live under ulimit -v)\n");
    return;
#endif
    sweep_memory("--batch 16"); /* a training step takes seconds: left to docs/robustness.md's sweep */
}

/* Issue 14: a class listed twice is refused before any work, with one line and
 * nothing written; a dataset found by name through --data-dir is recorded as the
 * absolute folder it was loaded from, so a model composed from the modules is
 * evaluated from another folder with no --data-dir. */
static void test_decompose_classes_and_data_dir(void) {
    int rc = run("decompose $D/m.tsr --out $D/dup --classes 3,3 --positives 2 --confidence 0 --no-eval --quiet "
                 "--threads 1");
    CHECK(rc == 2 && count_lines(g_err) == 1 && strstr(g_err, "class 3 is listed twice") && !*g_out,
          "--classes 3,3: exit %d: %s %s", rc, g_out, g_err);
    CHECK(!exists("dup") && !exists("dup/class3.tsm"), "--classes 3,3 leaves nothing");
    char dd[512];
    path_of(dd, sizeof dd, "dd");
    mkdir(dd, 0755);
    path_of(dd, sizeof dd, "dd/mnist");
    mkdir(dd, 0755);
    CHECK(write_idx("dd/mnist", "train", 200) && write_idx("dd/mnist", "t10k", 20), "data written");
    rc = run("decompose $D/m.tsr --data mnist --data-dir $D/dd --out $D/dmods --classes 1,2 --positives 2 "
             "--confidence 0 --no-eval --quiet --threads 1");
    CHECK(rc == 0 && exists("dmods/class1.tsm") && exists("dmods/class2.tsm"), "decompose --data-dir: exit %d: %s", rc,
          g_err);
    CHECK(strstr(g_out, "rule: every (FSE'20") && strstr(g_out, "BLN backtracking: off") &&
              strstr(g_out, "params") && strstr(g_out, "the origin itself needs"),
          "the table names the rule and what the figures are: %s", g_out);
    char want[PATH_MAX + 16], real[PATH_MAX];
    snprintf(want, sizeof want, "dataset %s,", realpath(dd, real) ? real : dd);
    rc = run("decompose $D/m.tsr --out $D/amods --classes 1 --rule any --bln-delta 1 --positives 2 --confidence 0 "
             "--no-eval --quiet --threads 1");
    CHECK(rc == 0 && strstr(g_out, "rule: any") && strstr(g_out, "BLN backtracking: off"), "--rule any: exit %d: %s %s",
          rc, g_out, g_err);
    rc = run("decompose $D/m.tsr --out $D/bmods --rule some --positives 2 --no-eval --quiet --threads 1");
    CHECK(rc == 2 && count_lines(g_err) == 1 && strstr(g_err, "--rule") && !exists("bmods"), "--rule some: exit %d: %s",
          rc, g_err);
    rc = run("info $D/dmods/class1.tsm");
    CHECK(rc == 0 && strstr(g_out, want), "the module records %s: exit %d: %s", want, rc, g_out);
    rc = run("compose $D/dmods/class1.tsm $D/dmods/class2.tsm --out $D/dtwo.tsr");
    CHECK(rc == 0, "compose: exit %d: %s", rc, g_err);
    rc = run_with("cd / &&", "eval $D/dtwo.tsr");
    CHECK(rc == 0 && strstr(g_out, "top-1"), "eval from another folder without --data-dir: exit %d: %s %s", rc, g_out,
          g_err);
}

int main(void) {
    g_bin = getenv("TESSERA_BIN");
    if (!g_bin) g_bin = "build/tessera";
    static char bin[PATH_MAX]; /* absolute, so that a command may run in another folder */
    if (realpath(g_bin, bin)) g_bin = bin;
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_file_safety: %s is not built\n", g_bin);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/tessera-safety-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    if (!make_inputs()) {
        fprintf(stderr, "test_file_safety: cannot make the inputs\n");
        return 1;
    }
    RUN(test_symlink_not_followed);
    RUN(test_output_is_input);
    RUN(test_modes);
    RUN(test_finite_blowup);
    RUN(test_diverged_not_saved);
    RUN(test_second_writer);
    RUN(test_checkpoint_write_error);
    RUN(test_stale_temps);
    RUN(test_recorded_settings);
    RUN(test_long_names_and_messages);
    RUN(test_small_refusals);
    RUN(test_gzip_limit);
    RUN(test_oom_in_onednn);
    RUN(test_decompose_classes_and_data_dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END("test_file_safety");
}
