/* The CLI on real image files (docs/data.md, "Image folders"): a tiny ImageFolder
 * (3 classes x 4 images of mixed PNG/JPEG sizes, copied from tests/fixtures/images)
 * trains one epoch, evaluates, decomposes and composes; a folder with train/ and val/;
 * --image-size and --channels; predict on JPEG and PNG files of any size; the
 * refusals. Checks the flows, not accuracy. */
#include "common/cli_run.h"
#include "common/json_check.h"
#include "common/test.h"

#include <sys/stat.h>

static cli_runner R;

#define FIX "tests/fixtures/images/"
#define COMMON "--epochs 1 --batch 4 --threads 1 --optimizer adam --quiet"

static void copy(const char *from, const char *to_fmt, const char *a, int i) {
    char to[512];
    snprintf(to, sizeof to, to_fmt, R.dir, a, i);
    size_t len;
    uint8_t *b = test_read_file(from, &len);
    CHECK(b && test_write_file(to, b, len), "copy %s -> %s", from, to);
    free(b);
}

/* DIR/root/CLASS/N.ext: 4 images a class, PNG and JPEG of three sizes */
static void make_folder(const char *root) {
    static const char *const classes[] = {"cat", "dog", "owl"};
    static const char *const files[] = {FIX "rgb8.png", FIX "baseline.jpg", FIX "progressive.jpg", FIX "palette8.png"};
    char p[512];
    snprintf(p, sizeof p, "%s/%s", R.dir, root);
    mkdir(p, 0755);
    for (int c = 0; c < 3; c++) {
        snprintf(p, sizeof p, "%s/%s/%s", R.dir, root, classes[c]);
        mkdir(p, 0755);
        for (int i = 0; i < 4; i++) {
            char fmt[64];
            snprintf(fmt, sizeof fmt, "%%s/%s/%%s/%%d%s", root, strstr(files[i], ".png") ? ".png" : ".JPG");
            copy(files[i], fmt, classes[c], c * 4 + i);
        }
    }
}

static void test_folder_flows(void) {
    make_folder("pets");
    /* the first image (cat/0.png, 7x9 RGB) sets the size; no test split: said, not fatal */
    int rc = cli_run(&R, "train --data %s/pets --val-split 3 " COMMON " --out %s/m.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "9 samples (+ validation)") && strstr(R.out, "no test split"), "train: exit %d: %s%s",
          rc, R.out, R.err);
    rc = cli_run(&R, "info %s/m.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "3x7x9"), "the model takes 3x7x9: %s", R.out);
    rc = cli_run(&R, "eval %s/m.tsr --split train", R.dir);
    CHECK(rc == 0 && strstr(R.out, "12 images") && strstr(R.out, "owl"), "eval: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/m.tsr", R.dir);
    CHECK(rc == 7 && strstr(R.err, "no test split"), "eval of a missing test split: exit %d: %s", rc, R.err);
    /* predict on files of other sizes and colours: fitted to 3x7x9 */
    rc = cli_run(&R, "predict %s/m.tsr " FIX "baseline.jpg " FIX "gray16.png " FIX "src.ppm --top 2", R.dir);
    CHECK(rc == 0 && cli_count_lines(R.out) == 3 && strstr(R.out, "baseline.jpg: ") && strstr(R.out, "gray16.png: ") &&
              (strstr(R.out, "cat") || strstr(R.out, "dog") || strstr(R.out, "owl")),
          "predict: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/m.tsr " FIX "progressive.jpg --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "\"probability\""), "predict --json: %s", R.out);
    rc = cli_run(&R, "predict %s/m.tsr " FIX "cmyk.jpg", R.dir);
    CHECK(rc == 5 && strstr(R.err, "cmyk.jpg: JPEG: CMYK"), "CMYK: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "predict %s/m.tsr " FIX "make-images.py", R.dir);
    CHECK(rc == 5 && strstr(R.err, "make-images.py: not a PNG, JPEG or PGM/PPM image"), "not an image: exit %d: %s", rc,
          R.err);
    /* --image-size and --channels */
    rc = cli_run(&R, "train --data %s/pets --image-size 12x10 --channels 1 --no-test " COMMON " --out %s/g.tsr", R.dir,
                 R.dir);
    CHECK(rc == 0, "train 1x12x10: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "info %s/g.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "1x12x10"), "the model takes 1x12x10: %s", R.out);
    rc = cli_run(&R, "eval %s/g.tsr --split train --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "\"images\":12"), "eval 1x12x10: exit %d: %s%s", rc,
          R.out, R.err);
    rc = cli_run(&R, "train --data %s/pets --channels 2 " COMMON " --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 2 && !cli_exists(&R, "x.tsr"), "--channels 2: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --data %s/pets --image-size 3x12x10 " COMMON " --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 2 && !cli_exists(&R, "x.tsr"), "--image-size 3x12x10: exit %d: %s", rc, R.err);
    /* a corrupt image names its file, and nothing is written */
    char p[512];
    snprintf(p, sizeof p, "%s/pets/dog/bad.png", R.dir);
    CHECK(test_write_file(p, "\x89PNG\r\n\x1a\nxx", 10), "write");
    rc = cli_run(&R, "train --data %s/pets " COMMON " --out %s/x.tsr", R.dir, R.dir);
    CHECK(rc == 4 && strstr(R.err, "bad.png") && !cli_exists(&R, "x.tsr"), "corrupt image: exit %d: %s", rc, R.err);
    remove(p);
}

static void test_split_folder(void) {
    /* train/ and val/: the test split's classes index the training split's */
    char p[512];
    snprintf(p, sizeof p, "%s/zoo", R.dir);
    mkdir(p, 0755);
    make_folder("zoo/train");
    snprintf(p, sizeof p, "%s/zoo/val", R.dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/zoo/val/owl", R.dir);
    mkdir(p, 0755);
    copy(FIX "gray.jpg", "%s/zoo/val/%s/%d.jpg", "owl", 0);
    copy(FIX "rgba8.png", "%s/zoo/val/%s/%d.png", "owl", 1);
    int rc = cli_run(&R, "train --data %s/zoo --image-size 8x8 " COMMON " --out %s/z.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "test accuracy:") && strstr(R.out, "on 2 images"), "train: exit %d: %s%s", rc, R.out,
          R.err);
    rc = cli_run(&R, "eval %s/z.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "2 images"), "eval: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/z.tsr --out %s/mods --confidence 0 --threads 1 --quiet", R.dir, R.dir);
    CHECK(rc == 0 && cli_exists(&R, "mods/class2.tsm"), "decompose: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "compose %s/mods/class0.tsm %s/mods/class2.tsm --out %s/two.tsr --threads 1", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "cat, owl"), "compose: exit %d: %s%s", rc, R.out, R.err);
    /* the composed model finds its classes' images in the folder the modules recorded */
    rc = cli_run(&R, "eval %s/two.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "2 images"), "eval composed: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/two.tsr --data %s/zoo --index 1", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "(true: owl)"), "predict composed: exit %d: %s%s", rc, R.out, R.err);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-images")) return 1;
    RUN(test_folder_flows);
    RUN(test_split_folder);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_images");
}
