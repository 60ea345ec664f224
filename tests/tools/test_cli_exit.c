/* Early exits from the command line (docs/early-exit.md): train --early-exit on the
 * DS-CNN of the zoo, eval's sweep and chosen threshold (text and --json), one
 * --exit-threshold in eval, predict and bench, the refusals (constant-time mode, a model
 * without an exit, a bad --early-exit), an exit declared in an .arch file, and ONNX
 * export. A synthetic IDX dataset in the test's folder keeps it fast. */
#include "common/cli_run.h"
#include "common/test.h"
#include "tessera.h"

#include <stdint.h>
#include <sys/stat.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

/* DIR/digits: an IDX pair of `count` 28x28 images whose class is a bright band */
static void write_idx(const char *prefix, int count) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/digits", R.dir);
    CHECK(test_write_band_idx(dir, prefix, count), "write %s/%s", dir, prefix);
}

#define TRAIN "train --data %s/digits --limit 320 --epochs 1 --batch 32 --threads 1 --optimizer adam --quiet --no-test"

static void test_train_with_exit(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/digits", R.dir);
    mkdir(p, 0755);
    write_idx("train", 320);
    write_idx("t10k", 120);
    int rc = cli_run(&R, TRAIN " --arch ds-cnn --early-exit after=block2 --exit-weight 0.3 --out %s/ee.tsr", R.dir,
                     R.dir);
    CHECK(rc == 0, "train --early-exit: exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "early exit (loss weight 0.3") && strstr(R.out, "exit loss"), "train prints the exit: %s", R.out);
    rc = cli_run(&R, TRAIN " --arch ds-cnn --early-exit after=block2 --exit-distill 0.5 --exit-temperature 3 --log "
                 "%s/eelog --out %s/eed.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "distilled from the final head: weight 0.5, temperature 3"),
          "train --exit-distill: exit %d: %s %s", rc, R.out, R.err);
    /* --log: the exit's loss and top-1 in the epoch rows, as on the epoch line */
    char csv[1 << 13], jl[1 << 13];
    snprintf(p, sizeof p, "%s/eelog/metrics.csv", R.dir);
    cli_slurp(p, csv, sizeof csv);
    snprintf(p, sizeof p, "%s/eelog/metrics.jsonl", R.dir);
    cli_slurp(p, jl, sizeof jl);
    const char *row = strstr(csv, "\nepoch,1,");
    int commas = 0, filled[18] = {0};
    for (const char *c = row ? row + 1 : NULL; c && *c && *c != '\n'; c++) {
        if (*c == ',') commas++;
        else if (commas < 18) filled[commas] = 1;
    }
    /* cells 13 and 14: exit_loss, exit_accuracy; 15 (val_exit_accuracy) empty without a
     * validation split; 11, 12 (modular) and 16, 17 (activations) empty */
    CHECK(row && commas == 17 && filled[13] && filled[14] && !filled[15] && !filled[11] && !filled[12] &&
              !filled[16] && !filled[17],
          "exit columns: %s", csv);
    CHECK(strstr(jl, "\"exit_loss\":") && strstr(jl, "\"exit_accuracy\":"), "JSON line: %s", jl);
    rc = cli_run(&R, TRAIN " --arch ds-cnn --out %s/plain.tsr", R.dir, R.dir);
    CHECK(rc == 0, "train plain: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info %s/ee.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "exit=1") && strstr(R.out, "view=1") && strstr(R.out, "block2.pw_relu"),
          "info shows the exit: %s", R.out);
}

static void test_bad_exit_options(void) {
    int rc = cli_run(&R, TRAIN " --arch ds-cnn --early-exit after=block9 --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 7 && strstr(R.err, "block9") && cli_count_lines(R.err) == 1, "unknown stage: exit %d: %s", rc, R.err);
    rc = cli_run(&R, TRAIN " --arch ds-cnn --early-exit after=block2,view=2 --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "view=2") && cli_count_lines(R.err) == 1, "bad view: exit %d: %s", rc, R.err);
    rc = cli_run(&R, TRAIN " --arch lenet5 --early-exit after=conv1 --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 5 && strstr(R.err, "early view") && cli_count_lines(R.err) == 1, "no gap head: exit %d: %s", rc, R.err);
    rc = cli_run(&R, TRAIN " --arch ds-cnn --early-exit after=block2 --exit-weight -1 --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--exit-weight"), "negative weight: exit %d: %s", rc, R.err);
    rc = cli_run(&R, TRAIN " --arch ds-cnn --early-exit after=block2 --exit-distill 1.5 --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--exit-distill"), "distill 1.5: exit %d: %s", rc, R.err);
    CHECK(!cli_exists(&R, "x.tsr"), "no model left by a failed run");
}

static void test_eval_sweep(void) {
    int rc = cli_run(&R, "eval %s/ee.tsr --data %s/digits --threads 1", R.dir, R.dir);
    CHECK(rc == 0, "eval: exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "early exit alone: top-1") && strstr(R.out, "early exit 'exit.fc'") &&
              strstr(R.out, "(no early exit)") && strstr(R.out, "chosen rho") &&
              strstr(R.out, "ts_model_predict_exit at rho"),
          "eval prints the sweep: %s", R.out);
    rc = cli_run(&R, "eval %s/ee.tsr --data %s/digits --threads 1 --json", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "\"early_exit\"") && strstr(R.out, "\"sweep\"") && strstr(R.out, "\"chosen\"") &&
              strstr(R.out, "\"macs_per_sample\"") && strstr(R.out, "\"exit_top1\""),
          "eval --json: %s", R.out);
    /* rho 1: the plain network's top-1, measured through ts_model_predict_exit */
    rc = cli_run(&R, "eval %s/ee.tsr --data %s/digits --threads 1 --exit-threshold 1", R.dir, R.dir);
    char top[32], want[96];
    const char *t = strstr(R.out, "top-1 ");
    snprintf(top, sizeof top, "%.12s", t ? t + 6 : "");
    *strchr(top, '%') = '\0';
    snprintf(want, sizeof want, "at rho 1.00: top-1 %s%%, 0.00%% left", top);
    CHECK(rc == 0 && strstr(R.out, want), "rho 1 (want '%s'): %s", want, R.out);
}

static void test_threshold_in_predict_and_bench(void) {
    int rc = cli_run(&R, "predict %s/ee.tsr --data %s/digits --index 0,1 --exit-threshold 0", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "left at the early exit"), "predict, rho 0: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/ee.tsr --data %s/digits --index 0 --exit-threshold 1", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "ran the whole network"), "predict, rho 1: %s", R.out);
    rc = cli_run(&R, "bench %s/ee.tsr --batch 8 --iters 3 --warmup 1 --threads 1 --exit-threshold 0.5 --json", R.dir);
    CHECK(rc == 0 && strstr(R.out, "\"exit_threshold\""), "bench --exit-threshold: %s %s", R.out, R.err);
    /* refusals */
    rc = cli_run(&R, "eval %s/plain.tsr --data %s/digits --exit-threshold 0.5", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "no early exit"), "a model without an exit: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "eval %s/ee.tsr --data %s/digits --exit-threshold 0.5 --constant-time", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "constant-time") && cli_count_lines(R.err) == 1, "constant-time: exit %d: %s", rc,
          R.err);
    rc = cli_run(&R, "eval %s/ee.tsr --data %s/digits --exit-threshold 1.5", R.dir, R.dir);
    CHECK(rc == 2 && strstr(R.err, "--exit-threshold"), "rho 1.5: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "bench %s/ee.tsr --exit-threshold 0.5 --train", R.dir);
    CHECK(rc == 2, "bench --train with a threshold: exit %d", rc);
}

/* an exit written in the architecture text, and ONNX export's second output */
static void test_arch_file_and_export(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/own.arch", R.dir);
    const char *text = "input shape=1x28x28 classes=10\n"
                       "conv2d name=c1 out=8 kernel=3 stride=2 padding=1\n"
                       "relu name=r1\n"
                       "globalavgpool name=egap\n"
                       "dense name=early out=classes exit=1\n"
                       "conv2d name=c2 in=r1 out=8 kernel=3 stride=2 padding=1\n"
                       "relu name=r2\n"
                       "globalavgpool name=gap\n"
                       "dense name=fc out=classes\n";
    CHECK(test_write_file(p, text, strlen(text)), "write %s", p);
    int rc = cli_run(&R, TRAIN " --arch %s --out %s/own.tsr", R.dir, p, R.dir);
    CHECK(rc == 0 && strstr(R.out, "exit loss"), "an .arch with exit=1 trains both: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/own.tsr --data %s/digits --threads 1", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "early exit 'early'"), "eval: %s", R.out);
    rc = cli_run(&R, "export %s/own.tsr --out %s/own.onnx", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "own.onnx"), "export: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import %s/own.onnx --out %s/back.tsr", R.dir, R.dir);
    CHECK(rc != 0 && strstr(R.err, "2 outputs"), "the exported graph has two outputs: %s", R.err);
}

int main(void) {
    if (!cli_runner_begin(&R, "exit")) return 1;
    RUN(test_train_with_exit);
    RUN(test_bad_exit_options);
    RUN(test_eval_sweep);
    RUN(test_threshold_in_predict_and_bench);
    RUN(test_arch_file_and_export);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_exit");
}
