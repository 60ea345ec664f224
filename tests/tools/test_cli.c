/* The tessera CLI as a user meets it: help, exit codes, one-line errors, no partial
 * files, and a small train -> eval -> predict -> info -> resume flow on Fashion-MNIST.
 * Runs the binary named by $TESSERA_BIN (scripts/run-tests.sh sets it). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "common/test.h"
#include "tessera.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *g_bin;
static char g_dir[256];
static char g_out[1 << 16], g_err[1 << 16];

static void slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    buf[got] = '\0';
    if (f) fclose(f);
}

/* Runs `tessera ARGS` with stdout/stderr captured; returns the exit code. */
static int run(const char *fmt, ...) {
    char args[2048], cmd[4096], o[512], e[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/stdout", g_dir);
    snprintf(e, sizeof e, "%s/stderr", g_dir);
    snprintf(cmd, sizeof cmd, "HOME=%s TESSERA_DATA=%s/nodata %s %s >%s 2>%s </dev/null", g_dir, g_dir, g_bin, args, o, e);
    int rc = system(cmd);
    slurp(o, g_out, sizeof g_out);
    slurp(e, g_err, sizeof g_err);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

static int exists(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int leftover_tmp(void) {
    DIR *d = opendir(g_dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) found = 1;
    if (d) closedir(d);
    return found;
}

static int have_fashion(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}

static void test_help_and_usage(void) {
    CHECK(run("--help") == 0 && strstr(g_out, "train"), "top-level help: %s", g_out);
    const char *cmds[] = {"train",   "eval",  "predict", "info",    "zoo",  "decompose",
                          "extract", "patch", "compose", "replace", "reuse"};
    for (int i = 0; i < 11; i++) {
        CHECK(run("%s --help", cmds[i]) == 0, "%s --help exit", cmds[i]);
        char want[64];
        snprintf(want, sizeof want, "usage: tessera %s", cmds[i]);
        CHECK(strstr(g_out, want) != NULL, "%s --help prints usage: %s", cmds[i], g_out);
    }
    CHECK(run("") == 2, "no command is a usage error");
    CHECK(run("frobnicate") == 2 && strstr(g_err, "frobnicate"), "unknown command: %s", g_err);
    CHECK(run("train --data fashion-mnist --bogus 1 --out x") == 2 && strstr(g_err, "--bogus"), "unknown option: %s", g_err);
    CHECK(run("train --data fashion-mnist") == 2 && strstr(g_err, "--out"), "missing --out: %s", g_err);
    CHECK(run("train --data fashion-mnist --out x --epochs abc") == 2 && strstr(g_err, "--epochs"), "bad epochs: %s", g_err);
    CHECK(run("train --data fashion-mnist --out x --optimizer rmsprop") == 2, "bad optimizer");
    CHECK(run("zoo") == 0 && strstr(g_out, "resnet20") && strstr(g_out, "vgg16"), "zoo list: %s", g_out);
    CHECK(run("zoo nosuchnet") == 7, "unknown zoo name");
    CHECK(run("info resnet20") == 0 && strstr(g_out, "272474 parameters"), "info resnet20: %s", g_out);
    CHECK(!exists("x"), "no output left by failed commands");
}

static void test_missing_data(void) {
    char dd[300];
    snprintf(dd, sizeof dd, "%s/empty", g_dir);
    mkdir(dd, 0755);
    int rc = run("train --data cifar100 --data-dir %s --out %s/m.tsr", dd, g_dir);
    CHECK(rc == 7, "a dataset that is not installed: exit %d", rc);
    CHECK(strstr(g_err, "cifar100") && count_lines(g_err) == 1, "one line naming the dataset: %s", g_err);
    rc = run("train --data %s/does-not-exist --out %s/m.tsr", g_dir, g_dir);
    CHECK(rc != 0 && count_lines(g_err) == 1, "missing path: exit %d: %s", rc, g_err);
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
    int rc = run("train --arch resnet20 --data cifar10 --data-dir %s --limit 64 --epochs 1 --batch 32 "
                 "--quiet --no-test --out %s/c10.tsr",
                 dir, g_dir);
    CHECK(rc == 0, "train on cifar10 from --data-dir: exit %d: %s", rc, g_err);
    rc = run("eval %s/c10.tsr --limit 64", g_dir);
    CHECK(rc == 0 && strstr(g_out, "cifar10"), "eval without --data-dir: exit %d: %s %s", rc, g_out, g_err);
}

static void test_bad_files(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/garbage.tsr", g_dir);
    FILE *f = fopen(p, "wb");
    fputs("this is not a model", f);
    fclose(f);
    int rc = run("eval %s --data fashion-mnist", p);
    CHECK(rc == 4, "garbage model: exit %d", rc);
    CHECK(strstr(g_err, "garbage.tsr") && count_lines(g_err) == 1, "one line naming the file: %s", g_err);
    rc = run("info %s/nothing.tsr", g_dir);
    CHECK(rc == 3 && strstr(g_err, "nothing.tsr"), "missing model: exit %d: %s", rc, g_err);
    snprintf(p, sizeof p, "%s/bad.arch", g_dir);
    f = fopen(p, "wb");
    fputs("input shape=1x28x28\nconv2d out=8 kernel=3 wings=2\n", f);
    fclose(f);
    rc = run("info %s", p);
    CHECK(rc == 4 && strstr(g_err, "bad.arch:2:") && strstr(g_err, "wings"), "bad arch: exit %d: %s", rc, g_err);
}

static void write_pgm(const char *name, int w, int h, int truncate) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
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
    int rc = run("train --data fashion-mnist --limit 320 --epochs 1 --batch 64 --threads 2 --optimizer adam "
                 "--out %s/m.tsr --checkpoint %s/c.ckpt --quiet --no-test", g_dir, g_dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, g_err);
    CHECK(strstr(g_out, "epoch 1:") && strstr(g_out, "saved"), "train output: %s", g_out);
    CHECK(exists("m.tsr") && exists("c.ckpt") && !leftover_tmp(), "model and checkpoint written, no temp files");

    rc = run("eval %s/m.tsr --limit 300", g_dir);
    CHECK(rc == 0 && strstr(g_out, "top-1") && strstr(g_out, "confusion matrix") && strstr(g_out, "Ankle boot"),
          "eval: exit %d: %s %s", rc, g_out, g_err);
    rc = run("eval %s/c.ckpt --limit 100", g_dir);
    CHECK(rc == 0, "a checkpoint evaluates like a model: %s", g_err);

    rc = run("predict %s/m.tsr --data fashion-mnist --index 0,1", g_dir);
    CHECK(rc == 0 && count_lines(g_out) == 2 && strstr(g_out, "(true: Ankle boot)"), "predict dataset: %s %s", g_out, g_err);
    rc = run("predict %s/m.tsr --data fashion-mnist --index 70000", g_dir);
    CHECK(rc == 2, "index out of range: exit %d", rc);

    write_pgm("ok.pgm", 28, 28, 0);
    write_pgm("small.pgm", 20, 28, 0);
    write_pgm("cut.pgm", 28, 28, 1);
    rc = run("predict %s/m.tsr %s/ok.pgm", g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "ok.pgm:") && strstr(g_out, "%"), "predict image: %s %s", g_out, g_err);
    rc = run("predict %s/m.tsr %s/small.pgm", g_dir, g_dir);
    CHECK(rc == 6 && strstr(g_err, "small.pgm"), "wrong image size: exit %d: %s", rc, g_err);
    rc = run("predict %s/m.tsr %s/cut.pgm", g_dir, g_dir);
    CHECK(rc == 4 && strstr(g_err, "truncated"), "truncated image: exit %d: %s", rc, g_err);

    char p[512];
    snprintf(p, sizeof p, "%s/hot.pgm", g_dir);
    FILE *f = fopen(p, "wb");
    fprintf(f, "P5 28 28 1\n");
    for (int i = 0; i < 28 * 28; i++) fputc(i == 5 ? 200 : 1, f);
    fclose(f);
    rc = run("predict %s/m.tsr %s", g_dir, p);
    CHECK(rc == 4 && strstr(g_err, "maxval"), "pixel above maxval: exit %d: %s", rc, g_err);

    rc = run("info %s/m.tsr", g_dir);
    CHECK(rc == 0 && strstr(g_out, "total:") && strstr(g_out, "preprocess.mean"), "info model: %s", g_out);

    rc = run("train --resume %s/c.ckpt --epochs 2 --quiet --no-test --out %s/m2.tsr", g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "epoch 2:") && !strstr(g_out, "epoch 1:"), "resume continues at epoch 2: %s %s", g_out,
          g_err);
    /* on the same 320 samples: the limit is recorded even when the split was read that short */
    CHECK(strstr(g_out, ": 320 samples"), "resume trains on the checkpoint's --limit 320: %s", g_out);
    rc = run("train --resume %s/m.tsr --out %s/m3.tsr", g_dir, g_dir);
    CHECK(rc == 4 && strstr(g_err, "not a checkpoint"), "resume from a model: exit %d: %s", rc, g_err);

    rc = run("train --data fashion-mnist --limit 64 --epochs 1 --quiet --no-test --out %s/no/such/dir/m.tsr", g_dir);
    CHECK(rc == 3 && count_lines(g_err) == 1, "unwritable output: exit %d: %s", rc, g_err);
}

/* decompose -> info -> compose -> eval -> replace -> reuse, and the refusals, on the
 * small models test_train_flow wrote (m.tsr, and m2.tsr after its resume). */
static void test_modules_flow(void) {
    if (!have_fashion() || !exists("m.tsr") || !exists("m2.tsr")) return;
    int rc = run("decompose %s/m.tsr --out %s/mods --positives 40 --confidence 0.3 --threads 2 --quiet", g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "own-acc") && strstr(g_out, "Ankle boot") && strstr(g_out, "all modules composed"),
          "decompose: exit %d: %s %s", rc, g_out, g_err);
    CHECK(exists("mods/class0.tsm") && exists("mods/class9.tsm") && !exists("mods/class10.tsm"), "ten modules written");
    rc = run("decompose %s/m2.tsr --out %s/mods2 --classes 3,7 --positives 40 --confidence 0.3 --no-eval --quiet", g_dir,
             g_dir);
    CHECK(rc == 0 && exists("mods2/class3.tsm") && exists("mods2/class7.tsm") && !exists("mods2/class0.tsm"),
          "decompose --classes: exit %d: %s", rc, g_err);

    rc = run("info %s/mods/class3.tsm", g_dir);
    CHECK(rc == 0 && strstr(g_out, "module for class 3 'Dress'") && strstr(g_out, "total:"), "info module: %s %s", g_out,
          g_err);

    rc = run("compose %s/mods/class1.tsm %s/mods/class5.tsm --out %s/two.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "composed 2 classes: Trouser, Sandal") && exists("two.tsr"), "compose: exit %d: %s %s",
          rc, g_out, g_err);
    rc = run("eval %s/two.tsr", g_dir);
    CHECK(rc == 0 && strstr(g_out, "top-1") && strstr(g_out, "Sandal") && strstr(g_out, "2000 images"),
          "eval of a composed model on its classes' test samples: exit %d: %s %s", rc, g_out, g_err);

    rc = run("replace %s/mods --class 3 --with %s/mods2/class3.tsm --out %s/fixed.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "class 3 now from") && exists("fixed.tsr"), "replace in a folder: exit %d: %s %s", rc,
          g_out, g_err);
    rc = run("replace %s/m.tsr --class 7 --with %s/mods2/class7.tsm --out %s/fixed2.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 0 && exists("fixed2.tsr"), "replace in a model: exit %d: %s", rc, g_err);
    rc = run("replace %s/m.tsr --class 7 --with %s/mods2/class7.tsm --retune --retune-samples 30 --out %s/fixed3.tsr",
             g_dir, g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "re-tuned 10 modules") && exists("fixed3.tsr"), "replace --retune: exit %d: %s %s",
          rc, g_out, g_err);
    rc = run("eval %s/fixed2.tsr --data fashion-mnist --limit 200", g_dir);
    CHECK(rc == 0 && strstr(g_out, "top-1"), "eval of a replaced model: exit %d: %s", rc, g_err);
    rc = run("reuse %s/mods/class0.tsm %s/mods2/class7.tsm --retune --retune-samples 40 --out %s/ru.tsr", g_dir, g_dir,
             g_dir);
    CHECK(rc == 0 && strstr(g_out, "re-tuned 2 modules") && strstr(g_out, "test: top-1"), "reuse: exit %d: %s %s", rc,
          g_out, g_err);

    /* refusals: one line, a meaningful code, nothing written */
    rc = run("compose %s/m.tsr --out %s/bad.tsr", g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "not a module") && count_lines(g_err) == 1 && !exists("bad.tsr"),
          "a model given as a module: exit %d: %s", rc, g_err);
    rc = run("eval %s/mods/class3.tsm", g_dir);
    CHECK(rc == 2 && strstr(g_err, "module file"), "a module given as a model: exit %d: %s", rc, g_err);
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/mods/class3.tsm", g_dir);
    snprintf(dst, sizeof dst, "%s/cut.tsm", g_dir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (in && out) {
        fseek(in, 0, SEEK_END);
        long len = ftell(in);
        fseek(in, 0, SEEK_SET);
        for (long i = 0; i < len - 100; i++) fputc(fgetc(in), out);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    rc = run("compose %s --out %s/bad.tsr", dst, g_dir);
    CHECK(rc == 4 && strstr(g_err, "cut.tsm") && !exists("bad.tsr"), "truncated module: exit %d: %s", rc, g_err);
    rc = run("compose %s/mods/class1.tsm %s/mods/class1.tsm --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "same class"), "a module twice: exit %d: %s", rc, g_err);
    rc = run("replace %s/mods --class 42 --with %s/mods2/class3.tsm --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 7 && strstr(g_err, "class 42"), "replace an absent class: exit %d: %s", rc, g_err);
    rc = run("decompose %s/m.tsr --out %s/mods3 --confidence 2", g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "confidence"), "bad option: exit %d: %s", rc, g_err);
    rc = run("compose --out %s/bad.tsr", g_dir);
    CHECK(rc == 2 && !exists("bad.tsr"), "compose without modules: exit %d", rc);
    /* CNNSplitter's search, as small as it gets: two classes searched */
    rc = run("decompose %s/m.tsr --method ga --classes 1,5 --population 4 --generations 2 --parents 2 --elites 1 "
             "--val-per-class 5 --positives 10 --confidence 0.3 --no-eval --quiet --out %s/mods-ga", g_dir, g_dir);
    CHECK(rc == 0 && exists("mods-ga/class1.tsm") && exists("mods-ga/class5.tsm") && strstr(g_out, "method ga:") &&
              strstr(g_out, "best fitness"),
          "decompose --method ga: exit %d: %s %s", rc, g_out, g_err);
    rc = run("info %s/mods-ga/class5.tsm", g_dir);
    CHECK(rc == 0 && strstr(g_out, "method ga;"), "info of a ga module: exit %d: %s %s", rc, g_out, g_err);
    rc = run("decompose %s/m.tsr --method ga --population 1 --out %s/mods4", g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "population") && !exists("mods4"), "ga population 1: exit %d: %s", rc, g_err);

    /* extract: a two-class model, evaluated on its classes' test images by itself */
    rc = run("extract %s/m.tsr --classes 1,5 --epochs 1 --epoch-samples 640 --val 200 --threads 2 --quiet --out %s/x.tsr",
             g_dir, g_dir);
    CHECK(rc == 0 && exists("x.tsr") && strstr(g_out, "parameters:") && strstr(g_out, "test top-1 on the classes (2000"),
          "extract: exit %d: %s %s", rc, g_out, g_err);
    rc = run("eval %s/x.tsr", g_dir);
    CHECK(rc == 0 && strstr(g_out, "2000 images") && strstr(g_out, "top-1"), "eval extracted: exit %d: %s %s", rc, g_out,
          g_err);
    const char *bad_classes[] = {"3", "3,3", "3,42", "a,b"};
    for (int i = 0; i < 4; i++) {
        rc = run("extract %s/m.tsr --classes %s --epochs 1 --out %s/bad.tsr", g_dir, bad_classes[i], g_dir);
        CHECK(rc == 2 && !exists("bad.tsr"), "extract --classes %s: exit %d: %s", bad_classes[i], rc, g_err);
    }

    /* patch: m2's Dress answered by m's module (by class name), then eval shows both */
    rc = run("patch %s/m2.tsr --class Dress --with %s/mods/class3.tsm --limit 2000 --quiet --out %s/patched.tsr", g_dir,
             g_dir, g_dir);
    CHECK(rc == 0 && exists("patched.tsr") && strstr(g_out, "patched class 3 (Dress)") &&
              strstr(g_out, "target recall") && strstr(g_out, "score range on 2000"),
          "patch: exit %d: %s %s", rc, g_out, g_err);
    rc = run("eval %s/patched.tsr --limit 500", g_dir);
    CHECK(rc == 0 && strstr(g_out, "patched class 3 (Dress)") && strstr(g_out, "target F1") &&
              strstr(g_out, "other classes' accuracy"),
          "eval patched: exit %d: %s %s", rc, g_out, g_err);
    rc = run("patch %s/m2.tsr --class 10 --with %s/mods/class3.tsm --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "out of range") && count_lines(g_err) == 1 && !exists("bad.tsr"),
          "patch --class 10: exit %d: %s", rc, g_err);
    rc = run("patch %s/m2.tsr --class Parrot --with %s/mods/class3.tsm --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "Parrot") && !exists("bad.tsr"), "patch --class Parrot: exit %d: %s", rc, g_err);
    rc = run("patch %s/m2.tsr --class 3 --with %s/m.tsr --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "m.tsr") && !exists("bad.tsr"), "patch with a model: exit %d: %s", rc, g_err);
    rc = run("patch %s/m2.tsr --class 3 --with %s/mods/class3.tsm --out %s/m2.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2, "patch over its input: exit %d: %s", rc, g_err);

    /* best of two runs (m's ten modules, m2's two): the classes both have, chosen on the
     * training samples after the 320 both models trained on */
    rc = run("compose --best-of %s/mods %s/mods2 --out %s/best.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 0 && strstr(g_out, "best of 2 runs") && strstr(g_out, "samples 320..5319") && strstr(g_out, "Sneaker") &&
              exists("best.tsr"),
          "compose --best-of: exit %d: %s %s", rc, g_out, g_err);
    rc = run("eval %s/best.tsr --limit 400", g_dir);
    CHECK(rc == 0 && strstr(g_out, "Dress") && strstr(g_out, "400 images"), "eval best-of: exit %d: %s %s", rc, g_out,
          g_err);
    rc = run("compose --best-of %s/mods %s/mods2 --val 59990:9223372036854775807 --out %s/best2.tsr", g_dir, g_dir,
             g_dir);
    CHECK(rc == 0 && strstr(g_out, "samples 59990..59999"), "--val with a huge count: exit %d: %s %s", rc, g_out, g_err);
    rc = run("compose --best-of %s/mods %s/mods2 --val 60000:10 --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "past the") && !exists("bad.tsr"), "--val past the end: exit %d: %s", rc, g_err);
    rc = run("compose --best-of %s/mods %s/mods2 --val 1:x --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "--val") && !exists("bad.tsr"), "--val 1:x: exit %d: %s", rc, g_err);
    rc = run("compose --best-of %s/mods %s/mods2 --split test --out %s/bad.tsr", g_dir, g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "--val FIRST:COUNT") && !exists("bad.tsr"), "--split test without --val: exit %d: %s",
          rc, g_err);
    rc = run("compose %s/mods/class1.tsm --val 0:10 --out %s/bad.tsr", g_dir, g_dir);
    CHECK(rc == 2 && strstr(g_err, "--best-of") && !exists("bad.tsr"), "--val without --best-of: exit %d: %s", rc, g_err);
    CHECK(!leftover_tmp(), "no temporary files left");
}

/* Models equal tensor for tensor, bit for bit. */
/* ONNX in and out: import a PyTorch export, fine-tune it with --init, export it
 * again; refusals have their exit codes and leave no file. */
static void test_onnx_flow(void) {
    char src[512];
    snprintf(src, sizeof src, "%s", "tests/fixtures/onnx/mobilenetv2_train.onnx");
    int rc = run("import %s --out %s/mb.tsr --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25", src, g_dir);
    CHECK(rc == 0 && exists("mb.tsr"), "import: exit %d: %s", rc, g_err);
    CHECK(strstr(g_out, "imported") != NULL, "import output: %s", g_out);
    rc = run("info %s/mb.tsr", g_dir);
    CHECK(rc == 0 && strstr(g_out, "conv2d") && strstr(g_out, "clip"), "info: exit %d", rc);
    rc = run("import %s --check", src);
    CHECK(rc == 0 && strstr(g_out, "every node can be imported"), "check: exit %d: %s", rc, g_out);
    rc = run("export %s/mb.tsr --out %s/mb.onnx", g_dir, g_dir);
    CHECK(rc == 0 && exists("mb.onnx"), "export: exit %d: %s", rc, g_err);
    rc = run("import %s/mb.onnx --out %s/mb2.tsr", g_dir, g_dir);
    CHECK(rc == 0, "re-import: exit %d: %s", rc, g_err);
    /* refusals */
    char p[512];
    snprintf(p, sizeof p, "%s/cut.onnx", g_dir);
    FILE *f = fopen(p, "wb");
    fwrite("\x08\x07\x3a\x7f", 1, 4, f);
    fclose(f);
    rc = run("import %s --out %s/cut.tsr", p, g_dir);
    CHECK(rc == 4 && strstr(g_err, "cut.onnx") && count_lines(g_err) == 1 && !exists("cut.tsr"),
          "truncated: exit %d: %s", rc, g_err);
    rc = run("import %s/none.onnx --out %s/none.tsr", g_dir, g_dir);
    CHECK(rc == 3 && strstr(g_err, "none.onnx"), "missing: exit %d: %s", rc, g_err);
    rc = run("import %s", src);
    CHECK(rc == 2, "no --out: exit %d", rc);
    rc = run("import %s --out %s/x.tsr --mean 0.5 --std 0,1", src, g_dir);
    CHECK(rc == 2, "bad --std: exit %d", rc);
    rc = run("export %s/nothing.tsr --out %s/n.onnx", g_dir, g_dir);
    CHECK(rc == 3 && !exists("n.onnx"), "export of a missing model: exit %d", rc);
    rc = run("import /usr/share/libonnx-testdata/data/node/test_cos/model.onnx --check");
    if (rc != 3) CHECK(rc == 5 && strstr(g_out, "Cos node"), "check lists unsupported ops: exit %d: %s", rc, g_out);
    /* --check reports a refused graph input (here a symbolic height), not an empty report */
    rc = run("import tests/fixtures/onnx/opsnet_free_op13.onnx --check");
    CHECK(rc == 5 && strstr(g_out, "axis 2 is symbolic") && count_lines(g_err) == 1,
          "check of a symbolic input: exit %d: %s / %s", rc, g_out, g_err);
    rc = run("import tests/fixtures/onnx/opsnet_free_op13.onnx --check --input-shape 3x16x16");
    CHECK(rc == 0 && strstr(g_out, "every node can be imported"), "check with the size: exit %d: %s", rc, g_out);
    CHECK(!leftover_tmp(), "temporary files left behind");
    if (!have_fashion()) return;
    /* fine-tuning an imported model: a 1x28x28 export is needed; the demo model
     * round-trips through ONNX and trains on from its weights */
    rc = run("train --arch lenet5 --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 --quiet "
             "--no-test --out %s/l5.tsr", g_dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, g_err);
    rc = run("export %s/l5.tsr --out %s/l5.onnx", g_dir, g_dir);
    CHECK(rc == 0, "export: exit %d: %s", rc, g_err);
    rc = run("import %s/l5.onnx --out %s/l5i.tsr", g_dir, g_dir);
    CHECK(rc == 0, "import: exit %d: %s", rc, g_err);
    rc = run("train --init %s/l5i.tsr --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 --quiet "
             "--no-test --out %s/l5f.tsr", g_dir, g_dir);
    CHECK(rc == 0 && exists("l5f.tsr"), "train --init: exit %d: %s", rc, g_err);
    rc = run("train --init %s/l5i.tsr --arch demo --data fashion-mnist --out %s/zz.tsr", g_dir, g_dir);
    CHECK(rc != 0 && !exists("zz.tsr"), "--init with --arch: exit %d", rc);
}

/* A diverging run stops with exit 8 and a message naming the step; the checkpoint
 * on disk is the last good one (it loads, its weights are finite). */
static void test_diverge_keeps_checkpoint(void) {
    if (!have_fashion()) return;
    int rc = run("train --arch lenet5 --data fashion-mnist --limit 2048 --epochs 2 --batch 64 --threads 1 --lr 2 "
                 "--quiet --no-test --checkpoint %s/dv.ckpt --checkpoint-every 1 --out %s/dv.tsr", g_dir, g_dir);
    CHECK(rc == 8, "diverging run: exit %d: %s", rc, g_err);
    CHECK(strstr(g_err, "diverged") && strstr(g_err, "step ") && count_lines(g_err) == 1, "message: %s", g_err);
    CHECK(!exists("dv.tsr"), "no model written for a diverged run");
    CHECK(exists("dv.ckpt"), "the last good checkpoint is kept");
    rc = run("eval %s/dv.ckpt --limit 20", g_dir);
    CHECK(rc == 0, "the kept checkpoint loads and evaluates: exit %d: %s", rc, g_err);
    CHECK(!strstr(g_out, "nan") && !strstr(g_out, "NaN"), "finite results: %s", g_out);
    CHECK(!exists("dv.ckpt.pending"), "the unvouched pending checkpoint is removed");
}

static int same_weights(const char *a, const char *b) {
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
    if (!same) fprintf(stderr, "  %s\n", ts_ctx_error(ctx));
    ts_model_free(ma);
    ts_model_free(mb);
    ts_ctx_free(ctx);
    return same;
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
    int rc = run("%s --out %s/full.tsr", common, g_dir);
    CHECK(rc == 0, "uninterrupted run: exit %d: %s", rc, g_err);

    char cmd[2048], ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/k.ckpt", g_dir);
    unsigned long long rng = 0x9e3779b97f4a7c15ULL; /* fixed seed: the same kill times each run */
    int kills = 0, finished = 0;
    for (int round = 0; round < 5 && !finished; round++) {
        if (round == 0)
            snprintf(cmd, sizeof cmd, "exec %s %s --checkpoint %s --checkpoint-every 1 --out %s/part.tsr >/dev/null 2>&1",
                     g_bin, common, ckpt, g_dir);
        else
            snprintf(cmd, sizeof cmd, "exec %s train --resume %s --checkpoint %s --checkpoint-every 1 --quiet --no-test "
                     "--out %s/part.tsr >/dev/null 2>&1", g_bin, ckpt, ckpt, g_dir);
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
        rc = run("eval %s --limit 10", ckpt);
        CHECK(rc == 0, "round %d: the checkpoint on disk loads after SIGKILL at %ld ms: exit %d: %s", round, ms, rc,
              g_err);
        CHECK(!leftover_tmp() || 1, "temporary files"); /* a killed save may leave its .tmp; the next save reuses it */
    }
    printf("note: %d kills, %s\n", kills, finished ? "the last run completed" : "resuming to the end");
    if (!finished) {
        rc = run("train --resume %s --quiet --no-test --out %s/part.tsr", ckpt, g_dir);
        CHECK(rc == 0, "resume: exit %d: %s", rc, g_err);
    }
    CHECK(kills >= 1, "at least one kill landed");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/full.tsr", g_dir);
    snprintf(b, sizeof b, "%s/part.tsr", g_dir);
    CHECK(same_weights(a, b), "killed and resumed run ends bit-identical to the uninterrupted run");
}

int main(void) {
    g_bin = getenv("TESSERA_BIN");
    if (!g_bin) g_bin = "build/tessera";
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_cli: %s is not built\n", g_bin);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/tessera-cli-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    RUN(test_help_and_usage);
    RUN(test_missing_data);
    RUN(test_recorded_data_dir);
    RUN(test_bad_files);
    RUN(test_train_flow);
    RUN(test_modules_flow);
    RUN(test_onnx_flow);
    RUN(test_kill_and_resume);
    RUN(test_diverge_keeps_checkpoint);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END("test_cli");
}
