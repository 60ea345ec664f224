/* tessera prune as a user meets it: --help, the refusals (exit 2 for usage, 7 for an
 * unknown architecture, 2 for a target the network cannot reach, no output left behind), an
 * architecture pruned at initialization whose MACs `tessera info` confirms and which
 * `tessera train --arch` trains, the same seed giving the same file, --json; and on
 * Fashion-MNIST (when installed) a trained LeNet-5 pruned by filter norms and
 * fine-tuned with `tessera train --init`. */
#include "common/cli_run.h"
#include "common/test.h"
#include "tessera.h"

#include <sys/stat.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

static int have_fashion(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}

/* The number after `key` in s, or -1. */
static long long number_after(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* Y of "key X -> Y" in s, or -1. */
static long long arrow_after(const char *s, const char *key) {
    const char *p = strstr(s, key);
    p = p ? strstr(p, " -> ") : NULL;
    return p ? strtoll(p + 4, NULL, 10) : -1;
}

static void test_usage(void) {
    CHECK(cli_run(&R, "prune --help") == 0 && strstr(R.out, "usage: tessera prune") && strstr(R.out, "--mode"),
          "help: %s", R.out);
    CHECK(cli_run(&R, "--help") == 0 && strstr(R.out, "prune"), "listed: %s", R.out);
    CHECK(cli_run(&R, "prune --arch resnet20 --target 0.5") == 2 && strstr(R.err, "--out"), "no --out: %s", R.err);
    CHECK(cli_run(&R, "prune --arch resnet20 --mode speed --out %s/x.arch", R.dir) == 2 && strstr(R.err, "--mode"),
          "bad mode: %s", R.err);
    const char *targets[] = {"0", "1", "1.5", "-0.2", "abc"};
    for (int i = 0; i < 5; i++)
        CHECK(cli_run(&R, "prune --arch resnet20 --target %s --out %s/x.arch", targets[i], R.dir) == 2 &&
                  strstr(R.err, "--target") && cli_count_lines(R.err) == 1,
              "target %s: %s", targets[i], R.err);
    CHECK(cli_run(&R, "prune --arch resnet20 --out %s/x.tsr", R.dir) == 2 && strstr(R.err, ".arch"), "arch to .tsr: %s",
          R.err);
    CHECK(cli_run(&R, "prune m.tsr --arch resnet20 --out %s/x.arch", R.dir) == 2, "both a model and --arch");
    CHECK(cli_run(&R, "prune m.tsr --seed 3 --out %s/x.tsr", R.dir) == 2 && strstr(R.err, "--seed"), "seed: %s", R.err);
    CHECK(cli_run(&R, "prune --arch nosuchnet --out %s/x.arch", R.dir) == 7 && strstr(R.err, "nosuchnet"),
          "unknown arch: %s", R.err);
    CHECK(cli_run(&R, "prune --arch lenet5 --target 0.9999 --out %s/x.arch", R.dir) == 2 &&
              strstr(R.err, "cannot remove") && cli_count_lines(R.err) == 1,
          "unreachable: %s", R.err);
    CHECK(cli_run(&R, "prune %s/missing.tsr --out %s/x.tsr", R.dir, R.dir) == 3, "missing model: %s", R.err);
    CHECK(!cli_exists(&R, "x.arch") && !cli_exists(&R, "x.tsr") && !cli_leftover_tmp(&R), "no output on failure");
}

static void test_arch(void) {
    int rc = cli_run(&R, "prune --arch resnet20 --mode params --target 0.4 --seed 5 --out %s/a.arch", R.dir);
    CHECK(rc == 0 && strstr(R.out, "layer1.0.conv1") && strstr(R.out, "removed") && strstr(R.out, "wrote"),
          "prune: exit %d: %s %s", rc, R.out, R.err);
    const long long params = arrow_after(R.out, "parameters: "), macs = arrow_after(R.out, "MACs per sample: ");
    rc = cli_run(&R, "info %s/a.arch", R.dir);
    CHECK(rc == 0 && number_after(R.out, "layers, ") == params, "info params: %s (prune said %lld)", R.out, params);
    CHECK(macs > 0 && number_after(R.out, "parameters (") >= 0, "info: %s", R.out);
    const char *t = strstr(R.out, "parameters (");
    CHECK(t && number_after(t, "), ") == macs, "info MACs: %s (prune said %lld)", R.out, macs);
    rc = cli_run(&R, "prune --arch resnet20 --mode params --target 0.4 --seed 5 --out %s/b.arch --json", R.dir);
    CHECK(rc == 0 && strstr(R.out, "\"command\"") && strstr(R.out, "\"achieved\"") && strstr(R.out, "\"layers\""),
          "json: %s", R.out);
    char a[1 << 15], b[1 << 15], path[512];
    snprintf(path, sizeof path, "%s/a.arch", R.dir);
    cli_slurp(path, a, sizeof a);
    snprintf(path, sizeof path, "%s/b.arch", R.dir);
    cli_slurp(path, b, sizeof b);
    CHECK(*a && !strcmp(a, b), "the same seed writes the same architecture");
    /* --multiple-of: every width written is a multiple of 8 (the classifier's 10 aside) */
    rc = cli_run(&R, "prune --arch resnet20 --mode flops --target 0.5 --multiple-of 8 --out %s/m8.arch", R.dir);
    CHECK(rc == 0 && strstr(R.out, "multiples of 8"), "multiple-of: exit %d: %s %s", rc, R.out, R.err);
    snprintf(path, sizeof path, "%s/m8.arch", R.dir);
    cli_slurp(path, a, sizeof a);
    for (const char *o = strstr(a, " out="); o; o = strstr(o + 1, " out=")) {
        const long w = strtol(o + 5, NULL, 10);
        CHECK(w == 10 || (w > 0 && w % 8 == 0), "width %ld in %s", w, a);
    }
    CHECK(cli_run(&R, "prune --arch resnet20 --multiple-of 0 --out %s/m0.arch", R.dir) == 2 &&
          strstr(R.err, "--multiple-of"), "multiple-of 0: %s", R.err);
    /* a pruned architecture trains (a few steps) */
    if (!have_fashion()) return;
    rc = cli_run(&R, "prune --arch lenet5 --mode flops --target 0.5 --out %s/l5.arch", R.dir);
    CHECK(rc == 0, "prune lenet5: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --arch %s/l5.arch --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 "
                 "--quiet --no-test --out %s/l5p.tsr", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "l5p.tsr"), "train the pruned arch: exit %d: %s", rc, R.err);
}

static void test_model(void) {
    if (!have_fashion()) return;
    int rc = cli_run(&R, "train --arch lenet5 --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 "
                     "--quiet --no-test --out %s/m.tsr", R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "prune %s/m.tsr --mode memory --target 0.3 --out %s/mp.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "ratio") && strstr(R.out, "memory"), "prune model: exit %d: %s %s", rc, R.out, R.err);
    const long long after = arrow_after(R.out, "parameters: ");
    rc = cli_run(&R, "info %s/mp.tsr", R.dir);
    CHECK(rc == 0 && after > 0 && number_after(R.out, "layers, ") == after, "info: %s (prune said %lld)", R.out, after);
    rc = cli_run(&R, "train --init %s/mp.tsr --data fashion-mnist --limit 256 --epochs 1 --batch 64 --threads 1 "
                 "--quiet --no-test --out %s/mf.tsr", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mf.tsr"), "fine-tune the pruned model: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "prune %s/m.tsr --out %s/m.tsr", R.dir, R.dir);
    CHECK(rc == 2, "output over the input: exit %d", rc);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-prune")) return 1;
    RUN(test_usage);
    RUN(test_arch);
    RUN(test_model);
    if (!have_fashion()) printf("note: dataset-fashion-mnist not installed; training cases skipped\n");
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_prune");
}
