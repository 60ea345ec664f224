#define _XOPEN_SOURCE 700 /* realpath */
/* --compress-activations as a user meets it (docs/compressed-activations.md): the
 * refusals (a bound outside [0, 1), with --modular, bench without --train: exit 2, one
 * line, no output); `tessera bench --train` reporting the activation memory with and
 * without, per layer under --profile and in --json; and, where CIFAR-10 is in the
 * shared data, `tessera train` with compression repeating bit for bit under the same
 * seed, lossless (EB 0) giving the plain run's model. */
#include "common/cli_run.h"
#include "common/json_check.h"
#include "common/test.h"
#include "tessera.h"

#include <sys/stat.h>

static cli_runner R; /* test-only state: the folder and the last command's output */

static void test_refusals(void) {
    const char *bad[] = {"1", "1.5", "-0.1", "abc", "nan"};
    for (int i = 0; i < 5; i++) {
        CHECK(cli_run(&R, "train --data cifar10 --compress-activations %s --out %s/x.tsr", bad[i], R.dir) == 2 &&
                  strstr(R.err, "--compress-activations") && cli_count_lines(R.err) == 1,
              "train, bound %s: %s", bad[i], R.err);
        CHECK(cli_run(&R, "bench resnet8 --train --compress-activations %s", bad[i]) == 2 &&
                  strstr(R.err, "--compress-activations") && cli_count_lines(R.err) == 1,
              "bench, bound %s: %s", bad[i], R.err);
    }
    CHECK(cli_run(&R, "train --data cifar10 --modular --compress-activations 0.01 --out %s/x.tsr", R.dir) == 2 &&
              strstr(R.err, "--modular") && cli_count_lines(R.err) == 1,
          "with --modular: %s", R.err);
    CHECK(cli_run(&R, "bench resnet8 --compress-activations 0.01") == 2 && strstr(R.err, "--train"),
          "bench without --train: %s", R.err);
    CHECK(cli_run(&R, "train --help") == 0 && strstr(R.out, "--compress-activations"), "train --help");
    CHECK(!cli_exists(&R, "x.tsr") && !cli_leftover_tmp(&R), "no output on failure");
}

/* The number after `key` in s, or -1. */
static double number_after(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? strtod(p + strlen(key), NULL) : -1.0;
}

static void test_bench(void) {
    const char *common = "bench resnet8 --train --batch 8 --iters 2 --warmup 0 --threads 1 --input 3x16x16";
    CHECK(cli_run(&R, "%s", common) == 0 && strstr(R.out, "kept for backward: ") && !strstr(R.out, "compressed"),
          "plain: %s %s", R.out, R.err);
    const double plain_buf = number_after(R.out, "activation buffers: ");
    const double plain_kept = number_after(R.out, "kept for backward: ");
    CHECK(cli_run(&R, "%s --compress-activations 0.05 --profile", common) == 0 && strstr(R.out, "compressed of"),
          "compressed: %s %s", R.out, R.err);
    const double buf = number_after(R.out, "activation buffers: ");
    const double kept = number_after(R.out, "kept for backward: ");
    const double of = number_after(R.out, "compressed of ");
    CHECK(plain_buf > 0 && buf > 0 && buf < plain_buf / 2, "buffers %g MiB against %g", buf, plain_buf);
    CHECK(kept > 0 && kept < plain_kept / 3 && of == plain_kept, "kept %g MiB of %g, plain %g", kept, of, plain_kept);
    CHECK(strstr(R.out, "stage1.conv1") && strstr(R.out, "relu") && strstr(R.out, "ratio"), "per layer: %s", R.out);
    CHECK(cli_run(&R, "%s --compress-activations 0 --json --profile", common) == 0, "json: %s", R.err);
    long at = -1;
    CHECK(json_check(R.out, &at) && strstr(R.out, "\"activation_kept_bytes\"") && strstr(R.out, "\"activations\"") &&
              strstr(R.out, "\"eb\":0"),
          "json (error at %ld): %s", at, R.out);
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        const int x = fgetc(fa), y = fgetc(fb);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_train(void) {
    const char *shared = test_shared_data();
    char probe[512], dir[512];
    snprintf(probe, sizeof probe, "%s/cifar10/data_batch_1.bin.gz", shared ? shared : "");
    struct stat st;
    if (!shared || stat(probe, &st) != 0 || !realpath(shared, dir)) {
        printf("note: cifar10 not in the shared data; training cases skipped\n");
        return;
    }
    char arch[600];
    snprintf(arch, sizeof arch, "%s/small.arch", R.dir);
    FILE *f = fopen(arch, "w");
    if (!f) return;
    fputs("input shape=3x32x32 classes=10\nconv2d name=conv1 out=8 kernel=3 padding=1 bias=0\nbatchnorm name=bn1\n"
          "relu name=relu1\nmaxpool name=pool kernel=4\nconv2d name=conv2 out=8 kernel=3 padding=1\nrelu name=relu2\n"
          "globalavgpool name=gap\nflatten name=flat\ndense name=fc out=classes\n", f);
    fclose(f);
    const char *names[] = {"plain", "lossless", "a", "b"}, *opts[] = {"", "--compress-activations 0",
                                                                       "--compress-activations 0.05",
                                                                       "--compress-activations 0.05"};
    for (int i = 0; i < 4; i++) {
        CHECK(cli_run(&R, "train --arch %s --data cifar10 --data-dir %s --limit 96 --epochs 1 --batch 32 --threads 1 "
                          "--seed 4 --quiet --no-test %s --log %s/log-%s --out %s/%s.tsr",
                      arch, dir, opts[i], R.dir, names[i], R.dir, names[i]) == 0,
              "train %s: %s", names[i], R.err);
        /* the epoch line says what compression kept on this data */
        const char *kept = strstr(R.out, "| activations kept ");
        CHECK(!kept == (i == 0), "train %s: epoch line: %s", names[i], R.out);
        float k = 0, plain = 0, ratio = 0;
        if (kept)
            CHECK(sscanf(kept, "| activations kept %f of %f MiB (%fx)", &k, &plain, &ratio) == 3 && plain > 0 &&
                      k <= plain && (i == 1 || ratio > 1),
                  "train %s: %s", names[i], kept);
        /* and --log's epoch row the same two sizes (its last two cells) */
        char path[700], csv[4096];
        snprintf(path, sizeof path, "%s/log-%s/metrics.csv", R.dir, names[i]);
        cli_slurp(path, csv, sizeof csv);
        const char *row = strstr(csv, "\nepoch,1,");
        const char *end = row ? strchr(row + 1, '\n') : NULL;
        float lk = -1, lp = -1;
        if (end) { /* back over the last two cells */
            const char *c = end;
            for (int n = 0; n < 2 && c > row; c--) n += c[-1] == ',';
            sscanf(c, ",%f,%f", &lk, &lp);
        }
        CHECK(row && (i == 0 ? end && end[-1] == ',' && end[-2] == ','
                             : fabsf(lk - k) < 0.06f && fabsf(lp - plain) < 0.06f),
              "train %s: log row %.3f %.3f against the line's %.1f %.1f: %s", names[i], lk, lp, k, plain, csv);
    }
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/a.tsr", R.dir);
    snprintf(b, sizeof b, "%s/b.tsr", R.dir);
    CHECK(same_file(a, b), "the same seed gave different models with compression");
    snprintf(a, sizeof a, "%s/plain.tsr", R.dir);
    snprintf(b, sizeof b, "%s/lossless.tsr", R.dir);
    CHECK(same_file(a, b), "lossless compression changed the trained model");
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-compress")) return 1;
    RUN(test_refusals);
    RUN(test_bench);
    RUN(test_train);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_compress");
}
