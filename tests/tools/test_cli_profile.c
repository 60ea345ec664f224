/* tessera info --profile: per layer as inference runs it (a fused chain is one row),
 * bytes moved, time, GFLOP/s and arithmetic intensity against the measured roofline;
 * --json carries the same; the profile's options alone are usage errors. */
#include "common/cli_run.h"
#include "common/json_check.h"
#include "common/test.h"

#include <stdio.h>
#include <string.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

static void test_profile_text(void) {
    int rc = cli_run(&R, "info resnet20 --profile --batch 2 --iters 2 --threads 1");
    CHECK(rc == 0, "exit %d: %s", rc, R.err);
    CHECK(strstr(R.out, "roofline (measured): peak ") && strstr(R.out, "GB/s (STREAM triad)"), "roofline line: %s", R.out);
    /* ResNet's conv -> bn -> add -> relu runs as one: one row names all four, no row for its batch norm */
    CHECK(strstr(R.out, "layer1.0.conv2           conv2d+batchnorm+add+relu"), "fused residual row: %s", R.out);
    const char *prof = strstr(R.out, "profile: batch 2");
    CHECK(prof && !strstr(prof, "layer1.0.bn2 "), "the fused batch norm has no row of its own: %s", prof ? prof : R.out);
    CHECK(strstr(R.out, "compute\n") && strstr(R.out, "memory\n") && strstr(R.out, "% of the time in memory-bound layers"),
          "bound column and total: %s", R.out);
}

static void test_profile_json(void) {
    int rc = cli_run(&R, "info resnet20 --profile --iters 1 --threads 1 --json");
    long at = -1;
    CHECK(rc == 0 && json_check(R.out, &at), "exit %d, JSON error at %ld: %.300s %s", rc, at, R.out, R.err);
    const char *keys[] = {"\"profile\":", "\"peak_gflops\":", "\"sgemm_gflops\":", "\"bandwidth_gbs\":",
                          "\"ridge_flop_per_byte\":", "\"units\":", "\"runs_as\":\"conv2d+batchnorm+relu\"",
                          "\"bytes_moved\":", "\"flop_per_byte\":", "\"bound\":\"compute\"", "\"memory_bound_time_share\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECK(strstr(R.out, keys[i]), "has %s", keys[i]);
}

/* A concat of ten inputs (info --json once read past the eight names ts_layer_info
 * holds and crashed on DenseNet) and a ShuffleNet channel shuffle, which inference runs
 * as gathers: the first gather's row names the layers it replaced, and no unit moves a
 * negative number of bytes. */
static void test_profile_wide_concat_and_shuffle(void) {
    static const char *arch = "input shape=4x8x8\n"
                              "conv2d name=c out=4 kernel=1\n"
                              "concat name=wide in=c,c,c,c,c,c,c,c,c,c\n"
                              "conv2d name=a out=8 kernel=1\n"
                              "relu name=ar\n"
                              "conv2d name=b out=8 kernel=1 in=wide\n"
                              "relu name=br\n"
                              "concat name=cat in=ar,br\n"
                              "reshape name=s1 shape=2x8x8x8\n"
                              "transpose name=t perm=1,0,2,3\n"
                              "reshape name=s2 shape=16x8x8\n"
                              "pad name=lo pads=0,0,0,-8,0,0\n"
                              "pad name=hi in=s2 pads=-8,0,0,0,0,0\n"
                              "add name=sum in=lo,hi\n"
                              "globalavgpool name=gp\n"
                              "dense name=fc out=3\n";
    char path[512];
    snprintf(path, sizeof path, "%s/shuffle.arch", R.dir);
    CHECK(test_write_file(path, arch, strlen(arch)), "cannot write %s", path);
    int rc = cli_run(&R, "info %s --json", path);
    long at = -1;
    CHECK(rc == 0 && json_check(R.out, &at), "exit %d, JSON error at %ld: %.300s %s", rc, at, R.out, R.err);
    CHECK(strstr(R.out, "\"inputs\":[\"c\",\"c\",\"c\",\"c\",\"c\",\"c\",\"c\",\"c\",\"c\",\"c\"]"),
          "all ten inputs: %.2000s", R.out);
    rc = cli_run(&R, "info %s --profile --iters 1 --threads 1 --json", path);
    CHECK(rc == 0 && json_check(R.out, &at), "exit %d, JSON error at %ld: %.300s %s", rc, at, R.out, R.err);
    CHECK(strstr(R.out, "\"runs_as\":\"pad+concat+reshape+transpose+reshape\""), "the gather's row: %.3000s", R.out);
    CHECK(!strstr(R.out, "\"bytes_moved\":-"), "no negative traffic: %.3000s", R.out);
}

static void test_profile_usage(void) {
    int rc = cli_run(&R, "info resnet20 --batch 4");
    CHECK(rc == 2 && strstr(R.err, "go with --profile"), "--batch alone: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info resnet20 --profile --batch 0");
    CHECK(rc == 2, "--batch 0: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info %s/none.tsr --profile", R.dir);
    CHECK(rc == 3 && !strstr(R.out, "profile:"), "missing model: exit %d: %s", rc, R.err);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-profile")) return 1;
    RUN(test_profile_text);
    RUN(test_profile_json);
    RUN(test_profile_wide_concat_and_shuffle);
    RUN(test_profile_usage);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_profile");
}
