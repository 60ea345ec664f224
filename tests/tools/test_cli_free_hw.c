/* The CLI on a free-size model (input free=hw): import of an ONNX graph with symbolic
 * height and width, info saying so, predict running each image at its own size, bench
 * at the default size and at --input's, export keeping the axes symbolic; a graph
 * whose head depends on the size is refused, naming the node. */
#include "common/cli_run.h"
#include "common/test.h"

static cli_runner R;

#define ONNX "tests/fixtures/onnx/"
#define IMG "tests/fixtures/images/"

static void test_free_model(void) {
    int rc = cli_run(&R, "import " ONNX "freenet_op13.onnx --out %s/f.tsr", R.dir);
    CHECK(rc == 0, "import: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "info %s/f.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "free=hw") && strstr(R.out, "height and width free") && strstr(R.out, "224x224"),
          "info: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/f.tsr " IMG "fit_3x20x24.ppm " IMG "rgb8.png " IMG "resize_37x20.ppm --top 2 "
                     "--threads 1", R.dir);
    CHECK(rc == 0 && cli_count_lines(R.out) == 3 && strstr(R.out, "fit_3x20x24.ppm (20x24): ") &&
              strstr(R.out, "rgb8.png (7x9): ") && strstr(R.out, "resize_37x20.ppm (37x20): "),
          "predict: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "bench %s/f.tsr --input 3x40x56 --iters 2 --warmup 1 --threads 1", R.dir);
    CHECK(rc == 0 && strstr(R.out, "inference"), "bench --input: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "bench %s/f.tsr --input 1x40x56 --iters 2 --warmup 1 --threads 1", R.dir);
    CHECK(rc != 0 && strstr(R.err, "3xHxW"), "bench --input of another channel count: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "export %s/f.tsr --out %s/f.onnx", R.dir, R.dir);
    CHECK(rc == 0, "export: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "info %s/f.onnx", R.dir);
    CHECK(rc == 0 && strstr(R.out, "height and width free"), "info of the export: exit %d: %s%s", rc, R.out, R.err);
}

static void test_fixed_refused(void) {
    int rc = cli_run(&R, "import " ONNX "fixednet_op13.onnx --out %s/x.tsr", R.dir);
    CHECK(rc == 5 && strstr(R.err, "symbolic") && strstr(R.err, "/fc/Gemm") && strstr(R.err, "--input-shape") &&
              !cli_exists(&R, "x.tsr"),
          "import: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "import " ONNX "fixednet_op13.onnx --check");
    CHECK(rc == 5 && strstr(R.out, "symbolic") && strstr(R.out, "/fc/Gemm"), "--check: exit %d: %s%s", rc, R.out,
          R.err);
    rc = cli_run(&R, "import " ONNX "freenet_op17.onnx --check");
    CHECK(rc == 0, "--check of a free-size graph: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "import " ONNX "fixednet_op13.onnx --input-shape 3x16x16 --out %s/x.tsr", R.dir);
    CHECK(rc == 0, "import --input-shape: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "info %s/x.tsr", R.dir);
    CHECK(rc == 0 && !strstr(R.out, "free"), "a fixed model: %s", R.out);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-free-hw")) return 1;
    RUN(test_free_model);
    RUN(test_fixed_refused);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_free_hw");
}
