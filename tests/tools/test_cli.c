/* The tessera CLI as a user meets it: help, exit codes, one-line errors, no partial
 * files, and a small train -> eval -> predict -> info -> resume flow on Fashion-MNIST.
 * Runs the binary named by $TESSERA_BIN (scripts/run-tests.sh sets it). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "common/cli_run.h"
#include "common/test.h"
#include "tessera.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

static int have_fashion(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}

static void test_help_and_usage(void) {
    CHECK(cli_run(&R, "--help") == 0 && strstr(R.out, "train"), "top-level help: %s", R.out);
    const char *cmds[] = {"train",   "eval",  "predict", "info",    "zoo",  "decompose",
                          "extract", "patch", "compose", "replace", "reuse"};
    for (int i = 0; i < 11; i++) {
        CHECK(cli_run(&R, "%s --help", cmds[i]) == 0, "%s --help exit", cmds[i]);
        char want[64];
        snprintf(want, sizeof want, "usage: tessera %s", cmds[i]);
        CHECK(strstr(R.out, want) != NULL, "%s --help prints usage: %s", cmds[i], R.out);
    }
    CHECK(cli_run(&R, "%s", "") == 2, "no command is a usage error");
    CHECK(cli_run(&R, "frobnicate") == 2 && strstr(R.err, "frobnicate"), "unknown command: %s", R.err);
    CHECK(cli_run(&R, "train --data fashion-mnist --bogus 1 --out x") == 2 && strstr(R.err, "--bogus"), "unknown option: %s", R.err);
    CHECK(cli_run(&R, "train --data fashion-mnist") == 2 && strstr(R.err, "--out"), "missing --out: %s", R.err);
    CHECK(cli_run(&R, "train --data fashion-mnist --out x --epochs abc") == 2 && strstr(R.err, "--epochs"), "bad epochs: %s", R.err);
    CHECK(cli_run(&R, "train --data fashion-mnist --out x --optimizer rmsprop") == 2, "bad optimizer");
    CHECK(cli_run(&R, "zoo") == 0 && strstr(R.out, "resnet20") && strstr(R.out, "vgg16"), "zoo list: %s", R.out);
    CHECK(cli_run(&R, "zoo nosuchnet") == 7, "unknown zoo name");
    CHECK(cli_run(&R, "info resnet20") == 0 && strstr(R.out, "272474 parameters"), "info resnet20: %s", R.out);
    CHECK(!cli_exists(&R, "x"), "no output left by failed commands");
}

static void test_missing_data(void) {
    char dd[300];
    snprintf(dd, sizeof dd, "%s/empty", R.dir);
    mkdir(dd, 0755);
    int rc = cli_run(&R, "train --data cifar100 --data-dir %s --out %s/m.tsr", dd, R.dir);
    CHECK(rc == 7, "a dataset that is not installed: exit %d", rc);
    CHECK(strstr(R.err, "cifar100") && cli_count_lines(R.err) == 1, "one line naming the dataset: %s", R.err);
    rc = cli_run(&R, "train --data %s/does-not-exist --out %s/m.tsr", R.dir, R.dir);
    CHECK(rc != 0 && cli_count_lines(R.err) == 1, "missing path: exit %d: %s", rc, R.err);
}

/* A model trained on a dataset found through --data-dir is evaluated without it: eval
 * looks in the folder its training recorded. */
static void test_recorded_data_dir(void) {
    const char *shared = test_shared_data();
    char probe[512];
    snprintf(probe, sizeof probe, "%s/cifar10/test_batch.bin.gz", shared ? shared : "");
    struct stat st;
    if (!shared || getenv("TESSERA_DATA") || stat(probe, &st) != 0) return;
    char dir[512];
    if (!realpath(shared, dir)) return;
    int rc = cli_run(&R, "train --arch resnet20 --data cifar10 --data-dir %s --limit 64 --epochs 1 --batch 32 "
                 "--quiet --no-test --out %s/c10.tsr",
                 dir, R.dir);
    CHECK(rc == 0, "train on cifar10 from --data-dir: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "eval %s/c10.tsr --limit 64", R.dir);
    CHECK(rc == 0 && strstr(R.out, "cifar10"), "eval without --data-dir: exit %d: %s %s", rc, R.out, R.err);
}

static void test_bad_files(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/garbage.tsr", R.dir);
    FILE *f = fopen(p, "wb");
    fputs("this is not a model", f);
    fclose(f);
    int rc = cli_run(&R, "eval %s --data fashion-mnist", p);
    CHECK(rc == 4, "garbage model: exit %d", rc);
    CHECK(strstr(R.err, "garbage.tsr") && cli_count_lines(R.err) == 1, "one line naming the file: %s", R.err);
    rc = cli_run(&R, "info %s/nothing.tsr", R.dir);
    CHECK(rc == 3 && strstr(R.err, "nothing.tsr"), "missing model: exit %d: %s", rc, R.err);
    snprintf(p, sizeof p, "%s/bad.arch", R.dir);
    f = fopen(p, "wb");
    fputs("input shape=1x28x28\nconv2d out=8 kernel=3 wings=2\n", f);
    fclose(f);
    rc = cli_run(&R, "info %s", p);
    CHECK(rc == 4 && strstr(R.err, "bad.arch:2:") && strstr(R.err, "wings"), "bad arch: exit %d: %s", rc, R.err);
}

static void write_pgm(const char *name, int w, int h, int truncate) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", R.dir, name);
    FILE *f = fopen(p, "wb");
    fprintf(f, "P5\n# a test image\n%d %d\n255\n", w, h);
    int n = w * h - (truncate ? 10 : 0);
    for (int i = 0; i < n; i++) fputc((i * 7) & 255, f);
    fclose(f);
}

static void test_train_flow(void) {
    if (!have_fashion()) {
        printf("note: dataset-fashion-mnist not installed; CLI training flow skipped\n");
        return;
    }
    int rc = cli_run(&R, "train --data fashion-mnist --limit 320 --epochs 1 --batch 64 --threads 2 --optimizer adam "
                 "--out %s/m.tsr --checkpoint %s/c.ckpt --quiet --no-test", R.dir, R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "epoch 1:") && strstr(R.out, "saved"), "train output: %s", R.out);
    CHECK(cli_exists(&R, "m.tsr") && cli_exists(&R, "c.ckpt") && !cli_leftover_tmp(&R), "model and checkpoint written, no temp files");

    rc = cli_run(&R, "eval %s/m.tsr --limit 300", R.dir);
    CHECK(rc == 0 && strstr(R.out, "top-1") && strstr(R.out, "confusion matrix") && strstr(R.out, "Ankle boot"),
          "eval: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/c.ckpt --limit 100", R.dir);
    CHECK(rc == 0, "a checkpoint evaluates like a model: %s", R.err);

    rc = cli_run(&R, "predict %s/m.tsr --data fashion-mnist --index 0,1", R.dir);
    CHECK(rc == 0 && cli_count_lines(R.out) == 2 && strstr(R.out, "(true: Ankle boot)"), "predict dataset: %s %s", R.out, R.err);
    rc = cli_run(&R, "predict %s/m.tsr --data fashion-mnist --index 70000", R.dir);
    CHECK(rc == 2, "index out of range: exit %d", rc);

    write_pgm("ok.pgm", 28, 28, 0);
    write_pgm("small.pgm", 20, 28, 0);
    write_pgm("cut.pgm", 28, 28, 1);
    rc = cli_run(&R, "predict %s/m.tsr %s/ok.pgm", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "ok.pgm:") && strstr(R.out, "%"), "predict image: %s %s", R.out, R.err);
    rc = cli_run(&R, "predict %s/m.tsr %s/small.pgm", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "small.pgm:"), "another size is resized and cropped: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "predict %s/m.tsr %s/cut.pgm", R.dir, R.dir);
    CHECK(rc == 4 && strstr(R.err, "truncated"), "truncated image: exit %d: %s", rc, R.err);

    char p[512];
    snprintf(p, sizeof p, "%s/hot.pgm", R.dir);
    FILE *f = fopen(p, "wb");
    fprintf(f, "P5 28 28 1\n");
    for (int i = 0; i < 28 * 28; i++) fputc(i == 5 ? 200 : 1, f);
    fclose(f);
    rc = cli_run(&R, "predict %s/m.tsr %s", R.dir, p);
    CHECK(rc == 4 && strstr(R.err, "maxval"), "pixel above maxval: exit %d: %s", rc, R.err);

    rc = cli_run(&R, "info %s/m.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "total:") && strstr(R.out, "preprocess.mean"), "info model: %s", R.out);

    rc = cli_run(&R, "train --resume %s/c.ckpt --epochs 2 --quiet --no-test --out %s/m2.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 2:") && !strstr(R.out, "epoch 1:"), "resume continues at epoch 2: %s %s", R.out,
          R.err);
    /* on the same 320 samples: the limit is recorded even when the split was read that short */
    CHECK(strstr(R.out, ": 320 samples"), "resume trains on the checkpoint's --limit 320: %s", R.out);
    rc = cli_run(&R, "train --resume %s/m.tsr --out %s/m3.tsr", R.dir, R.dir);
    CHECK(rc == 4 && strstr(R.err, "not a checkpoint"), "resume from a model: exit %d: %s", rc, R.err);

    rc = cli_run(&R, "train --data fashion-mnist --limit 64 --epochs 1 --quiet --no-test --out %s/no/such/dir/m.tsr", R.dir);
    CHECK(rc == 3 && cli_count_lines(R.err) == 1, "unwritable output: exit %d: %s", rc, R.err);
}

/* decompose -> info -> compose -> eval -> replace -> reuse, and the refusals, on the
 * small models test_train_flow wrote (m.tsr, and m2.tsr after its resume). */
static void test_modules_flow(void) {
    if (!have_fashion() || !cli_exists(&R, "m.tsr") || !cli_exists(&R, "m2.tsr")) return;
    int rc = cli_run(&R, "decompose %s/m.tsr --out %s/mods --positives 40 --confidence 0.3 --limit 1500 --threads 2 --quiet", R.dir,
                     R.dir);
    CHECK(rc == 0 && strstr(R.out, "own-acc") && strstr(R.out, "Ankle boot") && strstr(R.out, "all modules composed"),
          "decompose: exit %d: %s %s", rc, R.out, R.err);
    CHECK(cli_exists(&R, "mods/class0.tsm") && cli_exists(&R, "mods/class9.tsm") && !cli_exists(&R, "mods/class10.tsm"), "ten modules written");
    rc = cli_run(&R, "decompose %s/m2.tsr --out %s/mods2 --classes 3,7 --positives 40 --confidence 0.3 --no-eval --quiet", R.dir,
             R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mods2/class3.tsm") && cli_exists(&R, "mods2/class7.tsm") && !cli_exists(&R, "mods2/class0.tsm"),
          "decompose --classes: exit %d: %s", rc, R.err);

    rc = cli_run(&R, "info %s/mods/class3.tsm", R.dir);
    CHECK(rc == 0 && strstr(R.out, "module for class 3 'Dress'") && strstr(R.out, "total:"), "info module: %s %s", R.out,
          R.err);

    rc = cli_run(&R, "compose %s/mods/class1.tsm %s/mods/class5.tsm --out %s/two.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "composed 2 classes: Trouser, Sandal") && cli_exists(&R, "two.tsr"), "compose: exit %d: %s %s",
          rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/two.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "top-1") && strstr(R.out, "Sandal") && strstr(R.out, "2000 images"),
          "eval of a composed model on its classes' test samples: exit %d: %s %s", rc, R.out, R.err);

    rc = cli_run(&R, "replace %s/mods --class 3 --with %s/mods2/class3.tsm --out %s/fixed.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "class 3 now from") && cli_exists(&R, "fixed.tsr"), "replace in a folder: exit %d: %s %s", rc,
          R.out, R.err);
    rc = cli_run(&R, "replace %s/m.tsr --class 7 --with %s/mods2/class7.tsm --out %s/fixed2.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "fixed2.tsr"), "replace in a model: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "replace %s/m.tsr --class 7 --with %s/mods2/class7.tsm --retune --retune-samples 30 --out %s/fixed3.tsr",
             R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "re-tuned 10 modules") && cli_exists(&R, "fixed3.tsr"), "replace --retune: exit %d: %s %s",
          rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/fixed2.tsr --data fashion-mnist --limit 200", R.dir);
    CHECK(rc == 0 && strstr(R.out, "top-1"), "eval of a replaced model: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "reuse %s/mods/class0.tsm %s/mods2/class7.tsm --retune --retune-samples 40 --out %s/ru.tsr", R.dir, R.dir,
             R.dir);
    CHECK(rc == 0 && strstr(R.out, "re-tuned 2 modules") && strstr(R.out, "test: top-1"), "reuse: exit %d: %s %s", rc,
          R.out, R.err);

    /* refusals: one line, a meaningful code, nothing written */
    rc = cli_run(&R, "compose %s/m.tsr --out %s/bad.tsr", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "not a module") && cli_count_lines(R.err) == 1 && !cli_exists(&R, "bad.tsr"),
          "a model given as a module: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "eval %s/mods/class3.tsm", R.dir);
    CHECK(rc == 2 && strstr(R.err, "module file"), "a module given as a model: exit %d: %s", rc, R.err);
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/mods/class3.tsm", R.dir);
    snprintf(dst, sizeof dst, "%s/cut.tsm", R.dir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (in && out) {
        fseek(in, 0, SEEK_END);
        long len = ftell(in);
        fseek(in, 0, SEEK_SET);
        for (long i = 0; i < len - 100; i++) fputc(fgetc(in), out);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    rc = cli_run(&R, "compose %s --out %s/bad.tsr", dst, R.dir);
    CHECK(rc == 4 && strstr(R.err, "cut.tsm") && !cli_exists(&R, "bad.tsr"), "truncated module: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "compose %s/mods/class1.tsm %s/mods/class1.tsm --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "same class"), "a module twice: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "replace %s/mods --class 42 --with %s/mods2/class3.tsm --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 7 && strstr(R.err, "class 42"), "replace an absent class: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "decompose %s/m.tsr --out %s/mods3 --confidence 2", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "confidence"), "bad option: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "compose --out %s/bad.tsr", R.dir);
    CHECK(rc == 2 && !cli_exists(&R, "bad.tsr"), "compose without modules: exit %d", rc);
    /* CNNSplitter's search, as small as it gets: two classes searched */
    rc = cli_run(&R, "decompose %s/m.tsr --method ga --classes 1,5 --population 4 --generations 2 --parents 2 --elites 1 "
             "--val-per-class 5 --positives 10 --confidence 0.3 --limit 3000 --no-eval --quiet --out %s/mods-ga", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mods-ga/class1.tsm") && cli_exists(&R, "mods-ga/class5.tsm") && strstr(R.out, "method ga:") &&
              strstr(R.out, "best fitness"),
          "decompose --method ga: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "info %s/mods-ga/class5.tsm", R.dir);
    CHECK(rc == 0 && strstr(R.out, "method ga;"), "info of a ga module: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/m.tsr --method ga --population 1 --out %s/mods4", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "population") && !cli_exists(&R, "mods4"), "ga population 1: exit %d: %s", rc, R.err);

    /* extract: a two-class model, evaluated on its classes' test images by itself */
    rc = cli_run(&R, "extract %s/m.tsr --classes 1,5 --epochs 1 --epoch-samples 640 --val 200 --threads 2 --quiet --out %s/x.tsr",
             R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "x.tsr") && strstr(R.out, "parameters:") && strstr(R.out, "test top-1 on the classes (2000"),
          "extract: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/x.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "2000 images") && strstr(R.out, "top-1"), "eval extracted: exit %d: %s %s", rc, R.out,
          R.err);
    const char *bad_classes[] = {"3", "3,3", "3,42", "a,b"};
    for (int i = 0; i < 4; i++) {
        rc = cli_run(&R, "extract %s/m.tsr --classes %s --epochs 1 --out %s/bad.tsr", R.dir, bad_classes[i], R.dir);
        CHECK(rc == 2 && !cli_exists(&R, "bad.tsr"), "extract --classes %s: exit %d: %s", bad_classes[i], rc, R.err);
    }

    /* patch: m2's Dress answered by m's module (by class name), then eval shows both */
    rc = cli_run(&R, "patch %s/m2.tsr --class Dress --with %s/mods/class3.tsm --limit 2000 --quiet --out %s/patched.tsr", R.dir,
             R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "patched.tsr") && strstr(R.out, "patched class 3 (Dress)") &&
              strstr(R.out, "target recall") && strstr(R.out, "score range on 2000"),
          "patch: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/patched.tsr --limit 500", R.dir);
    CHECK(rc == 0 && strstr(R.out, "patched class 3 (Dress)") && strstr(R.out, "target F1") &&
              strstr(R.out, "other classes' accuracy"),
          "eval patched: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "patch %s/m2.tsr --class 10 --with %s/mods/class3.tsm --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "out of range") && cli_count_lines(R.err) == 1 && !cli_exists(&R, "bad.tsr"),
          "patch --class 10: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "patch %s/m2.tsr --class Parrot --with %s/mods/class3.tsm --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "Parrot") && !cli_exists(&R, "bad.tsr"), "patch --class Parrot: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "patch %s/m2.tsr --class 3 --with %s/m.tsr --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "m.tsr") && !cli_exists(&R, "bad.tsr"), "patch with a model: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "patch %s/m2.tsr --class 3 --with %s/mods/class3.tsm --out %s/m2.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2, "patch over its input: exit %d: %s", rc, R.err);

    /* best of two runs (m's ten modules, m2's two): the classes both have, chosen on the
     * training samples after the 320 both models trained on */
    rc = cli_run(&R, "compose --best-of %s/mods %s/mods2 --out %s/best.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "best of 2 runs") && strstr(R.out, "samples 320..5319") && strstr(R.out, "Sneaker") &&
              cli_exists(&R, "best.tsr"),
          "compose --best-of: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/best.tsr --limit 400", R.dir);
    CHECK(rc == 0 && strstr(R.out, "Dress") && strstr(R.out, "400 images"), "eval best-of: exit %d: %s %s", rc, R.out,
          R.err);
    rc = cli_run(&R, "compose --best-of %s/mods %s/mods2 --val 59990:9223372036854775807 --out %s/best2.tsr", R.dir, R.dir,
             R.dir);
    CHECK(rc == 0 && strstr(R.out, "samples 59990..59999"), "--val with a huge count: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "compose --best-of %s/mods %s/mods2 --val 60000:10 --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "past the") && !cli_exists(&R, "bad.tsr"), "--val past the end: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "compose --best-of %s/mods %s/mods2 --val 1:x --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--val") && !cli_exists(&R, "bad.tsr"), "--val 1:x: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "compose --best-of %s/mods %s/mods2 --split test --out %s/bad.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--val FIRST:COUNT") && !cli_exists(&R, "bad.tsr"), "--split test without --val: exit %d: %s",
          rc, R.err);
    rc = cli_run(&R, "compose %s/mods/class1.tsm --val 0:10 --out %s/bad.tsr", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--best-of") && !cli_exists(&R, "bad.tsr"), "--val without --best-of: exit %d: %s", rc, R.err);
    CHECK(!cli_leftover_tmp(&R), "no temporary files left");
}

/* Models equal tensor for tensor, bit for bit. */
/* ONNX in and out: import a PyTorch export, fine-tune it with --init, export it
 * again; refusals have their exit codes and leave no file. */
static void test_onnx_flow(void) {
    char src[512];
    snprintf(src, sizeof src, "%s", "tests/fixtures/onnx/mobilenetv2_train.onnx");
    int rc = cli_run(&R, "import %s --out %s/mb.tsr --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25", src, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mb.tsr"), "import: exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "imported") != NULL, "import output: %s", R.out);
    rc = cli_run(&R, "info %s/mb.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "conv2d") && strstr(R.out, "clip"), "info: exit %d", rc);
    rc = cli_run(&R, "import %s --check", src);
    CHECK(rc == 0 && strstr(R.out, "every node can be imported"), "check: exit %d: %s", rc, R.out);
    rc = cli_run(&R, "export %s/mb.tsr --out %s/mb.onnx", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mb.onnx"), "export: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import %s/mb.onnx --out %s/mb2.tsr", R.dir, R.dir);
    CHECK(rc == 0, "re-import: exit %d: %s", rc, R.err);
    /* refusals */
    char p[512];
    snprintf(p, sizeof p, "%s/cut.onnx", R.dir);
    FILE *f = fopen(p, "wb");
    fwrite("\x08\x07\x3a\x7f", 1, 4, f);
    fclose(f);
    rc = cli_run(&R, "import %s --out %s/cut.tsr", p, R.dir);
    CHECK(rc == 4 && strstr(R.err, "cut.onnx") && cli_count_lines(R.err) == 1 && !cli_exists(&R, "cut.tsr"),
          "truncated: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import %s/none.onnx --out %s/none.tsr", R.dir, R.dir);
    CHECK(rc == 3 && strstr(R.err, "none.onnx"), "missing: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import %s", src);
    CHECK(rc == 2, "no --out: exit %d", rc);
    rc = cli_run(&R, "import %s --out %s/x.tsr --mean 0.5 --std 0,1", src, R.dir);
    CHECK(rc == 2, "bad --std: exit %d", rc);
    rc = cli_run(&R, "export %s/nothing.tsr --out %s/n.onnx", R.dir, R.dir);
    CHECK(rc == 3 && !cli_exists(&R, "n.onnx"), "export of a missing model: exit %d", rc);
    rc = cli_run(&R, "import /usr/share/libonnx-testdata/data/node/test_cos/model.onnx --check");
    if (rc != 3) CHECK(rc == 5 && strstr(R.out, "Cos node"), "check lists unsupported ops: exit %d: %s", rc, R.out);
    /* --check reports a refused graph input (here a symbolic height and width that a
     * Reshape fixes), not an empty report */
    rc = cli_run(&R, "import tests/fixtures/onnx/opsnet_free_op13.onnx --check");
    CHECK(rc == 5 && strstr(R.out, "symbolic") && strstr(R.out, "reshape") && cli_count_lines(R.err) == 1,
          "check of a symbolic input: exit %d: %s / %s", rc, R.out, R.err);
    rc = cli_run(&R, "import tests/fixtures/onnx/opsnet_free_op13.onnx --check --input-shape 3x16x16");
    CHECK(rc == 0 && strstr(R.out, "every node can be imported"), "check with the size: exit %d: %s", rc, R.out);
    /* a time-major sequence input: its batch axis named; a recurrent node's refusal listed */
    rc = cli_run(&R, "import tests/fixtures/onnx/rnn_node_time_major.onnx --out %s/tm.tsr", R.dir);
    CHECK(rc == 5 && strstr(R.err, "axis 1 is symbolic"), "time-major, batch first: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import tests/fixtures/onnx/rnn_node_time_major.onnx --out %s/tm.tsr --batch-axis 1", R.dir);
    CHECK(rc == 0 && cli_exists(&R, "tm.tsr"), "--batch-axis 1: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import tests/fixtures/onnx/rnn_node_time_major.onnx --out %s/tm.tsr --batch-axis 1 --no-batch",
                 R.dir);
    CHECK(rc == 2 && strstr(R.err, "contradict"), "--batch-axis with --no-batch: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import tests/fixtures/onnx/rnn_node_check.onnx --check");
    CHECK(rc == 5 && strstr(R.out, "Cos node") && strstr(R.out, "LSTM node 'lstm'") && cli_count_lines(R.out) == 2,
          "check of a reverse LSTM: exit %d: %s", rc, R.out);
    CHECK(!cli_leftover_tmp(&R), "temporary files left behind");
    if (!have_fashion()) return;
    /* fine-tuning an imported model: a 1x28x28 export is needed; the demo model
     * round-trips through ONNX and trains on from its weights */
    rc = cli_run(&R, "train --arch lenet5 --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 --quiet "
             "--no-test --out %s/l5.tsr", R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "export %s/l5.tsr --out %s/l5.onnx", R.dir, R.dir);
    CHECK(rc == 0, "export: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import %s/l5.onnx --out %s/l5i.tsr", R.dir, R.dir);
    CHECK(rc == 0, "import: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --init %s/l5i.tsr --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 --quiet "
             "--no-test --out %s/l5f.tsr", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "l5f.tsr"), "train --init: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --init %s/l5i.tsr --arch demo --data fashion-mnist --out %s/zz.tsr", R.dir, R.dir);
    CHECK(rc != 0 && !cli_exists(&R, "zz.tsr"), "--init with --arch: exit %d", rc);
}

/* A diverging run stops with exit 8 and a message naming the step; the checkpoint
 * on disk is the last good one (it loads, its weights are finite). */
static void test_diverge_keeps_checkpoint(void) {
    if (!have_fashion()) return;
    int rc = cli_run(&R, "train --arch lenet5 --data fashion-mnist --limit 2048 --epochs 2 --batch 64 --threads 1 --lr 2 "
                 "--quiet --no-test --checkpoint %s/dv.ckpt --checkpoint-every 1 --out %s/dv.tsr", R.dir, R.dir);
    CHECK(rc == 8, "diverging run: exit %d: %s", rc, R.err);
    CHECK(strstr(R.err, "diverged") && strstr(R.err, "step ") && cli_count_lines(R.err) == 1, "message: %s", R.err);
    CHECK(!cli_exists(&R, "dv.tsr"), "no model written for a diverged run");
    CHECK(cli_exists(&R, "dv.ckpt"), "the last good checkpoint is kept");
    rc = cli_run(&R, "eval %s/dv.ckpt --limit 20", R.dir);
    CHECK(rc == 0, "the kept checkpoint loads and evaluates: exit %d: %s", rc, R.err);
    CHECK(!strstr(R.out, "nan") && !strstr(R.out, "NaN"), "finite results: %s", R.out);
    CHECK(!cli_exists(&R, "dv.ckpt.pending"), "the unvouched pending checkpoint is removed");
}

/* Training killed with SIGKILL at random moments (seeded), with a checkpoint
 * saved after every step so that many kills land while a checkpoint is being
 * written: after each kill the checkpoint on disk loads, training resumes from it
 * (and is killed again), and the run that finally completes ends bit-identical to
 * an uninterrupted one. */
static void test_kill_and_resume(void) {
    if (!have_fashion()) return;
    const char *common = "train --data fashion-mnist --limit 1280 --batch 64 --epochs 3 --seed 3 --threads 2 "
                         "--optimizer sgd --lr 0.05 --augment crop,flip --val-split 64 --quiet --no-test";
    int rc = cli_run(&R, "%s --out %s/full.tsr", common, R.dir);
    CHECK(rc == 0, "uninterrupted run: exit %d: %s", rc, R.err);

    char cmd[8192], ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/k.ckpt", R.dir);
    unsigned long long rng = 0x9e3779b97f4a7c15ULL; /* fixed seed: the same kill times each run */
    int kills = 0, finished = 0;
    for (int round = 0; round < 5 && !finished; round++) {
        if (round == 0)
            snprintf(cmd, sizeof cmd, "exec %s %s --checkpoint %s --checkpoint-every 1 --out %s/part.tsr >/dev/null 2>&1",
                     R.bin, common, ckpt, R.dir);
        else
            snprintf(cmd, sizeof cmd, "exec %s train --resume %s --checkpoint %s --checkpoint-every 1 --quiet --no-test "
                     "--out %s/part.tsr >/dev/null 2>&1", R.bin, ckpt, ckpt, R.dir);
        struct stat st;
        time_t before = stat(ckpt, &st) == 0 ? st.st_mtime : 0;
        (void)before;
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        CHECK(pid > 0, "fork failed");
        if (pid <= 0) return;
        /* wait for a checkpoint to exist, then a random 50-450 ms, then kill */
        struct timespec poll = {0, 10 * 1000 * 1000};
        for (int i = 0; i < 6000 && stat(ckpt, &st) != 0; i++) nanosleep(&poll, NULL);
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        long ms = 50 + (long)((rng >> 33) % 400);
        struct timespec wait = {0, ms * 1000 * 1000};
        nanosleep(&wait, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status)) {
            finished = 1; /* completed before the kill */
            CHECK(WEXITSTATUS(status) == 0, "round %d ended with exit %d", round, WEXITSTATUS(status));
            break;
        }
        kills++;
        CHECK(stat(ckpt, &st) == 0, "round %d: a checkpoint exists after SIGKILL", round);
        rc = cli_run(&R, "eval %s --limit 10", ckpt);
        CHECK(rc == 0, "round %d: the checkpoint on disk loads after SIGKILL at %ld ms: exit %d: %s", round, ms, rc,
              R.err);
        CHECK(!cli_leftover_tmp(&R) || 1, "temporary files"); /* a killed save may leave its .tmp; the next save reuses it */
    }
    printf("note: %d kills, %s\n", kills, finished ? "the last run completed" : "resuming to the end");
    if (!finished) {
        rc = cli_run(&R, "train --resume %s --quiet --no-test --out %s/part.tsr", ckpt, R.dir);
        CHECK(rc == 0, "resume: exit %d: %s", rc, R.err);
    }
    CHECK(kills >= 1, "at least one kill landed");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/full.tsr", R.dir);
    snprintf(b, sizeof b, "%s/part.tsr", R.dir);
    CHECK(test_same_weights(a, b), "killed and resumed run ends bit-identical to the uninterrupted run");
}

int main(void) {
    if (!cli_runner_begin(&R, "cli")) return 1;
    RUN(test_help_and_usage);
    RUN(test_missing_data);
    RUN(test_recorded_data_dir);
    RUN(test_bad_files);
    RUN(test_train_flow);
    RUN(test_modules_flow);
    RUN(test_onnx_flow);
    RUN(test_kill_and_resume);
    RUN(test_diverge_keeps_checkpoint);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli");
}
