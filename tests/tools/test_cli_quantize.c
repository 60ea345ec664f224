/* tessera quantize: calibrates a trained Fashion-MNIST model, prints each convolution's
 * scale and both models' top-1, writes an int8 model that eval, predict, bench and
 * export take; refusals are usage or input errors with nothing written. */
#include "common/cli_run.h"
#include "common/json_check.h"
#include "common/test.h"

#include <string.h>
#include <sys/stat.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

static int have_fashion(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}

static void test_quantize(void) {
    int rc = cli_run(&R, "train --data fashion-mnist --limit 640 --epochs 1 --batch 64 --threads 1 --optimizer adam "
                         "--quiet --no-test --out %s/f.tsr", R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "quantize %s/f.tsr --calib 64 --limit 300 --threads 1 --out %s/q.tsr", R.dir, R.dir);
    CHECK(rc == 0, "quantize: exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "calibrated ") && strstr(R.out, "on 64 fashion-mnist training images") &&
              strstr(R.out, "conv1                        s8") && strstr(R.out, " u8 ") &&
              strstr(R.out, "convolutions in int8") && strstr(R.out, "test top-1 on 300 images: fp32 ") &&
              strstr(R.out, "wrote "),
          "report: %s", R.out);
    rc = cli_run(&R, "eval %s/q.tsr --limit 100 --threads 1", R.dir);
    CHECK(rc == 0 && strstr(R.out, "top-1"), "eval int8: exit %d: %s %s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/q.tsr --data fashion-mnist --index 0,1 --threads 1", R.dir);
    CHECK(rc == 0, "predict int8: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "bench %s/q.tsr --iters 2 --threads 1", R.dir);
    CHECK(rc == 0 && strstr(R.out, "images/s"), "bench int8: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info %s/q.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "meta int8.calibration: 64 samples"), "info shows the calibration: %s", R.out);
    rc = cli_run(&R, "export %s/q.tsr --out %s/q.onnx", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "q.onnx"), "export int8: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "quantize %s/f.tsr --calib 32 --no-eval --threads 1 --json --out %s/qj.tsr", R.dir, R.dir);
    long at = -1;
    CHECK(rc == 0 && json_check(R.out, &at) && strstr(R.out, "\"layers\":[{\"name\":\"conv1\",\"input\":\"s8\"") &&
              strstr(R.out, "\"wrote\":"),
          "--json: exit %d, error at %ld: %s", rc, at, R.out);
    /* constant time refuses an int8 model */
    rc = cli_run(&R, "eval %s/q.tsr --limit 10 --constant-time", R.dir);
    CHECK(rc != 0 && strstr(R.err, "int8"), "constant time: exit %d: %s", rc, R.err);
}

static void test_refusals(void) {
    int rc = cli_run(&R, "quantize %s/f.tsr", R.dir);
    CHECK(rc == 2 && strstr(R.err, "--out"), "no --out: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "quantize %s/f.tsr --percentile 30 --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 2 && !cli_exists(&R, "x.tsr"), "percentile 30: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "quantize %s/q.tsr --no-eval --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc != 0 && strstr(R.err, "already quantized") && !cli_exists(&R, "x.tsr"), "twice: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "quantize %s/f.tsr --out %s/f.tsr", R.dir, R.dir);
    CHECK(rc == 2, "in place: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "quantize %s/none.tsr --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 3 && !cli_exists(&R, "x.tsr"), "missing model: exit %d: %s", rc, R.err);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-quantize")) return 1;
    if (have_fashion()) {
        RUN(test_quantize);
        RUN(test_refusals);
    } else {
        printf("note: dataset-fashion-mnist not installed; quantize cases skipped\n");
    }
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_quantize");
}
