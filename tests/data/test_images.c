/* Image files and image folders (docs/data.md): PNG of every colour type and bit
 * depth and JPEG variants against the pixels tests/fixtures/images/make-images.py
 * wrote (PIL's decoding for JPEG), hostile files (truncated at every length, bit
 * flips, lying headers, too large), the transforms against PIL and torchvision, and
 * ImageFolder layouts built in a temporary folder. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "common/test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FIX "tests/fixtures/images/"

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_images_XXXXXX";

typedef struct image {
    int c, h, w;
    uint8_t *px;
} image;

static image load(const char *path) {
    image im = {0};
    ts_status st = ts_image_load(g_ctx, path, &im.c, &im.h, &im.w, &im.px);
    CHECK(st == TS_OK, "%s: %s", path, ts_ctx_error(g_ctx));
    return im;
}

/* The largest difference between two images of one shape (-1: shapes differ). */
static int max_diff(image a, const uint8_t *b, int c, int h, int w) {
    if (!a.px || !b || a.c != c || a.h != h || a.w != w) return -1;
    int m = 0;
    for (size_t i = 0; i < (size_t)c * h * w; i++) {
        int d = abs((int)a.px[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

static void test_png_every_type(void) {
    static const char *const names[] = {"gray1", "gray2", "gray4", "gray8", "gray16", "gray8_trns", "graya8",
                                        "graya16", "rgb8", "rgb16", "rgba8", "rgba16", "rgb8_interlaced",
                                        "gray16_interlaced", "palette1", "palette2", "palette4", "palette8"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[256], q[256];
        const int gray = !strncmp(names[i], "gray", 4);
        snprintf(p, sizeof p, FIX "%s.png", names[i]);
        snprintf(q, sizeof q, FIX "%s.want.%s", names[i], gray ? "pgm" : "ppm");
        image got = load(p), want = load(q);
        CHECK(got.c == (gray ? 1 : 3), "%s: %d channels", names[i], got.c);
        CHECK(max_diff(got, want.px, want.c, want.h, want.w) == 0, "%s: differs from %s (max %d)", names[i], q,
              max_diff(got, want.px, want.c, want.h, want.w));
        /* the same from memory */
        size_t len;
        uint8_t *buf = test_read_file(p, &len), *px = NULL;
        int c, h, w;
        CHECK(buf && !ts_image_decode(g_ctx, "mem", buf, len, &c, &h, &w, &px) && max_diff(got, px, c, h, w) == 0,
              "%s from memory: %s", names[i], ts_ctx_error(g_ctx));
        ts_image_free(px);
        free(buf);
        ts_image_free(got.px);
        ts_image_free(want.px);
    }
}

static void test_jpeg_variants(void) {
    static const char *const names[] = {"baseline", "baseline444", "progressive", "gray"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[256], q[256];
        snprintf(p, sizeof p, FIX "%s.jpg", names[i]);
        snprintf(q, sizeof q, FIX "%s.want.%s", names[i], strcmp(names[i], "gray") ? "ppm" : "pgm");
        image got = load(p), want = load(q);
        const int d = max_diff(got, want.px, want.c, want.h, want.w);
        /* PIL decodes with the same libjpeg-turbo and settings: identical */
        CHECK(d == 0, "%s: max difference from PIL's decoding %d", names[i], d);
        ts_image_free(got.px);
        ts_image_free(want.px);
    }
    image im = {0};
    ts_status st = ts_image_load(g_ctx, FIX "cmyk.jpg", &im.c, &im.h, &im.w, &im.px);
    CHECK(st == TS_EUNSUPPORTED && strstr(ts_ctx_error(g_ctx), "cmyk.jpg: JPEG: CMYK") && !im.px, "cmyk: %d %s", st,
          ts_ctx_error(g_ctx));
}

/* Every failure: a status, a one-line message naming the input, no pixels. */
static void expect_fail(const char *what, const uint8_t *d, size_t n, ts_status want) {
    int c = 0, h = 0, w = 0;
    uint8_t *px = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_image_decode(g_ctx, what, d, n, &c, &h, &w, &px);
    const char *msg = ts_ctx_error(g_ctx);
    CHECK(st != TS_OK && (!want || st == want) && !px && !strncmp(msg, what, strlen(what)) && !strchr(msg, '\n'),
          "%s (%zu bytes): status %d (want %d), message '%s'", what, n, st, want, msg);
    ts_image_free(px);
}

static void test_hostile_files(void) {
    static const char *const files[] = {FIX "rgb8_interlaced.png", FIX "palette4.png", FIX "graya16.png",
                                        FIX "progressive.jpg", FIX "gray.jpg"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        uint8_t *buf = test_read_file(files[f], &len);
        CHECK(buf != NULL, "%s", files[f]);
        if (!buf) continue;
        /* every truncation: no crash, a message; up to the last chunk's end */
        const int png = buf[0] == 0x89;
        for (size_t n = 0; n < len - (png ? 12 : 2); n++) expect_fail("cut", buf, n, 0);
        /* a flipped byte anywhere: never a crash (a PNG's CRCs catch most) */
        for (size_t i = 0; i < len; i += 3) {
            buf[i] ^= 0x5a;
            int c, h, w;
            uint8_t *px = NULL;
            ts_status st = ts_image_decode(g_ctx, "flip", buf, len, &c, &h, &w, &px);
            CHECK(st || (px && c >= 1 && h >= 1 && w >= 1), "flip at %zu: ok without pixels", i);
            CHECK(!st || *ts_ctx_error(g_ctx), "flip at %zu: no message", i);
            ts_image_free(px);
            buf[i] ^= 0x5a;
        }
        free(buf);
    }
    expect_fail("empty.png", (const uint8_t *)"", 0, TS_EFORMAT);
    expect_fail("text.png", (const uint8_t *)"hello, world", 12, TS_EUNSUPPORTED);
    /* a PNG whose header says 10000 x 10000: refused from the header */
    size_t len;
    uint8_t *png = test_read_file(FIX "rgb8.png", &len);
    if (png) {
        test_put_be32(png + 16, 10000);
        test_put_be32(png + 20, 10000);
        test_put_be32(png + 29, (uint32_t)crc32(0, png + 12, 17));
        expect_fail("huge.png", png, len, TS_EUNSUPPORTED);
        CHECK(strstr(ts_ctx_error(g_ctx), "too large"), "%s", ts_ctx_error(g_ctx));
        png[29] ^= 1; /* and with a bad CRC: corrupt */
        expect_fail("crc.png", png, len, TS_EFORMAT);
        free(png);
    }
    uint8_t *jpg = test_read_file(FIX "baseline.jpg", &len);
    if (jpg) {
        for (size_t i = 2; i + 9 < len; i++)
            if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) { /* SOF0: height and width at +5: 8193 x 8192 */
                jpg[i + 5] = 0x20;
                jpg[i + 6] = 0x01;
                jpg[i + 7] = 0x20;
                jpg[i + 8] = 0x00;
                break;
            }
        expect_fail("huge.jpg", jpg, len, TS_EUNSUPPORTED);
        free(jpg);
    }
    /* a file that is not there, and a folder */
    int c, h, w;
    uint8_t *px = NULL;
    CHECK(ts_image_load(g_ctx, FIX "missing.png", &c, &h, &w, &px) == TS_EIO && !px, "missing: %s", ts_ctx_error(g_ctx));
    CHECK(ts_image_load(g_ctx, FIX, &c, &h, &w, &px) == TS_EIO && !px, "folder: %s", ts_ctx_error(g_ctx));
}

/* Each transform against what PIL/torchvision made of src.ppm: identical. */
static void test_transforms_match_pil(void) {
    image src = load(FIX "src.ppm");
    if (!src.px) return;
    uint8_t *out = malloc(3 * 100 * 100);
    int worst = 0;
    image want = load(FIX "gray.pgm");
    CHECK(!ts_image_convert(g_ctx, src.px, 3, src.h, src.w, 1, out), "%s", ts_ctx_error(g_ctx));
    int d = max_diff(want, out, 1, src.h, src.w);
    CHECK(d == 0, "convert L: max difference %d", d);
    ts_image_free(want.px);
    static const int sizes[][2] = {{16, 11}, {70, 90}, {20, 80}, {37, 20}, {5, 3}};
    for (size_t i = 0; i < 5; i++) {
        char p[128];
        const int oh = sizes[i][0], ow = sizes[i][1];
        snprintf(p, sizeof p, FIX "resize_%dx%d.ppm", oh, ow);
        want = load(p);
        CHECK(!ts_image_resize(g_ctx, src.px, 3, src.h, src.w, oh, ow, out), "%s", ts_ctx_error(g_ctx));
        d = max_diff(want, out, 3, oh, ow);
        CHECK(d == 0, "resize to %dx%d: max difference from PIL %d", oh, ow, d);
        if (d > worst) worst = d;
        ts_image_free(want.px);
    }
    int rh, rw;
    ts_image_resize_shorter(src.h, src.w, 20, &rh, &rw);
    CHECK(rh == 20 && rw == 28, "Resize(20) of 37x53: %dx%d", rh, rw);
    want = load(FIX "tv_resize20.ppm");
    uint8_t *r20 = malloc((size_t)3 * rh * rw);
    CHECK(!ts_image_resize(g_ctx, src.px, 3, src.h, src.w, rh, rw, r20), "%s", ts_ctx_error(g_ctx));
    CHECK((d = max_diff(want, r20, 3, rh, rw)) == 0, "Resize(20): %d", d);
    ts_image_free(want.px);
    want = load(FIX "tv_crop15.ppm");
    CHECK(!ts_image_center_crop(g_ctx, r20, 3, rh, rw, 15, 15, out), "%s", ts_ctx_error(g_ctx));
    CHECK((d = max_diff(want, out, 3, 15, 15)) == 0, "CenterCrop(15): %d", d);
    ts_image_free(want.px);
    free(r20);
    static const struct {
        const char *file;
        int c, h, w;
    } fits[] = {{"fit_3x24x24.ppm", 3, 24, 24}, {"fit_1x24x24.pgm", 1, 24, 24}, {"fit_3x20x24.ppm", 3, 20, 24}};
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, FIX "%s", fits[i].file);
        want = load(p);
        CHECK(!ts_image_fit(g_ctx, src.px, 3, src.h, src.w, fits[i].c, fits[i].h, fits[i].w, out), "%s",
              ts_ctx_error(g_ctx));
        CHECK((d = max_diff(want, out, fits[i].c, fits[i].h, fits[i].w)) == 0, "%s: %d", fits[i].file, d);
        ts_image_free(want.px);
    }
    /* odd crops: torchvision rounds half offsets to even */
    uint8_t ramp[9], cut[9];
    for (int i = 0; i < 9; i++) ramp[i] = (uint8_t)i;
    CHECK(!ts_image_center_crop(g_ctx, ramp, 1, 1, 9, 1, 6, cut) && cut[0] == 2, "9->6 starts at %d (round(1.5)=2)",
          cut[0]);
    CHECK(!ts_image_center_crop(g_ctx, ramp, 1, 1, 9, 1, 4, cut) && cut[0] == 2, "9->4 starts at %d (round(2.5)=2)",
          cut[0]);
    CHECK(!ts_image_center_crop(g_ctx, ramp, 1, 1, 9, 1, 2, cut) && cut[0] == 4, "9->2 starts at %d (round(3.5)=4)",
          cut[0]);
    CHECK(ts_image_center_crop(g_ctx, ramp, 1, 1, 9, 1, 10, cut) == TS_EINVAL, "a crop wider than the image");
    CHECK(ts_image_convert(g_ctx, ramp, 2, 1, 9, 1, cut) == TS_EINVAL, "2 channels");
    printf("  transforms: max difference from PIL/torchvision %d\n", worst);
    free(out);
    ts_image_free(src.px);
}

/* ------------------------------------------------------------ image folders */

static void copy_file(const char *from, const char *to) {
    size_t len;
    uint8_t *b = test_read_file(from, &len);
    CHECK(b && test_write_file(to, b, len), "copy %s -> %s", from, to);
    free(b);
}

static void mkdirf(const char *fmt, const char *a, const char *b) {
    char p[512];
    snprintf(p, sizeof p, fmt, a, b);
    mkdir(p, 0755);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* root/CLASS files: classes "b", "a", "C" (byte order: C, a, b), a nested folder, an
 * upper-case extension, a hidden folder and a text file that are skipped. */
static void make_folder(const char *root) {
    char p[512];
    mkdir(root, 0755);
    mkdirf("%s/%s", root, "b");
    mkdirf("%s/%s", root, "a");
    mkdirf("%s/%s", root, "C");
    mkdirf("%s/%s", root, "a/sub");
    mkdirf("%s/%s", root, ".hidden");
    static const char *const files[][2] = {
        {"C/z.png", "rgb8.png"},       {"C/b.JPG", "baseline.jpg"},   {"a/x.jpeg", "progressive.jpg"},
        {"a/sub/y.png", "gray8.png"},  {"a/a.PNG", "palette8.png"},   {"b/one.pgm", "gray.pgm"},
        {".hidden/h.png", "rgb8.png"}, {"a/notes.txt", "make-images.py"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[256];
        snprintf(p, sizeof p, "%s/%s", root, files[i][0]);
        snprintf(from, sizeof from, FIX "%s", files[i][1]);
        copy_file(from, p);
    }
}

static void test_image_folder(void) {
    char root[300];
    snprintf(root, sizeof root, "%s/flowers", g_tmp);
    make_folder(root);
    ts_dataset *ds = NULL;
    ts_ctx_set_image_shape(g_ctx, 0, 0, 0);
    ts_status st = ts_dataset_load(g_ctx, root, TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (ds) {
        CHECK(ds->classes == 3 && !strcmp(ds->class_names[0], "C") && !strcmp(ds->class_names[1], "a") &&
                  !strcmp(ds->class_names[2], "b"),
              "classes %d: %s %s", ds->classes, ds->class_names[0], ds->class_names[1]);
        /* C/b.JPG, C/z.png, a/a.PNG, a/x.jpeg, a/sub/y.png, b/one.pgm */
        static const int32_t labels[] = {0, 0, 1, 1, 1, 2};
        CHECK(ds->count == 6 && !memcmp(ds->labels, labels, sizeof labels), "count %lld", (long long)ds->count);
        /* the first image's shape: baseline.jpg is 3 x 21 x 30 */
        CHECK(ds->channels == 3 && ds->height == 21 && ds->width == 30, "shape %dx%dx%d", ds->channels, ds->height,
              ds->width);
        /* sample 4 (a/sub/y.png, 1 x 7 x 9 gray) as ts_image_fit makes it */
        image g = load(FIX "gray8.png");
        uint8_t *want = malloc(3 * 21 * 30);
        CHECK(g.px && !ts_image_fit(g_ctx, g.px, g.c, g.h, g.w, 3, 21, 30, want) &&
                  !memcmp(ds->images + 4 * 3 * 21 * 30, want, 3 * 21 * 30),
              "sample 4 is not gray8.png fitted");
        free(want);
        ts_image_free(g.px);
    }
    ts_dataset_free(ds);
    ds = NULL;
    /* the context's shape, and a limit */
    ts_ctx_set_image_shape(g_ctx, 1, 8, 8);
    st = ts_dataset_load_first(g_ctx, root, TS_SPLIT_TRAIN, NULL, 3, &ds);
    CHECK(st == TS_OK && ds && ds->count == 3 && ds->channels == 1 && ds->height == 8 && ds->width == 8 &&
              ds->labels[2] == 1,
          "limit 3 at 1x8x8: %s", ts_ctx_error(g_ctx));
    ts_dataset_free(ds);
    ds = NULL;
    /* no test split */
    st = ts_dataset_load(g_ctx, root, TS_SPLIT_TEST, NULL, &ds);
    CHECK(st == TS_ENOTFOUND && !ds && strstr(ts_ctx_error(g_ctx), "no test split"), "test: %d %s", st,
          ts_ctx_error(g_ctx));
    /* train/ and val/: the test split's labels index the training classes */
    char split[300], p[512];
    snprintf(split, sizeof split, "%s/split", g_tmp);
    mkdir(split, 0755);
    snprintf(p, sizeof p, "%s/train", split);
    make_folder(p);
    mkdirf("%s/%s", split, "val");
    mkdirf("%s/%s", split, "val/b");
    snprintf(p, sizeof p, "%s/val/b/q.png", split);
    copy_file(FIX "rgba8.png", p);
    st = ts_dataset_load(g_ctx, split, TS_SPLIT_TEST, NULL, &ds);
    CHECK(st == TS_OK && ds && ds->count == 1 && ds->labels[0] == 2 && ds->classes == 3 &&
              !strcmp(ds->class_names[2], "b"),
          "val: %s", ts_ctx_error(g_ctx));
    ts_dataset_free(ds);
    ds = NULL;
    st = ts_dataset_load(g_ctx, split, TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_OK && ds && ds->count == 6, "train/: %s", ts_ctx_error(g_ctx));
    ts_dataset_free(ds);
    ds = NULL;
    /* a test class the training split lacks */
    mkdirf("%s/%s", split, "val/zebra");
    snprintf(p, sizeof p, "%s/val/zebra/q.png", split);
    copy_file(FIX "rgba8.png", p);
    st = ts_dataset_load(g_ctx, split, TS_SPLIT_TEST, NULL, &ds);
    CHECK(st == TS_EFORMAT && !ds && strstr(ts_ctx_error(g_ctx), "zebra"), "zebra: %s", ts_ctx_error(g_ctx));
    /* an empty class folder, and a corrupt image: the file is named */
    mkdirf("%s/%s", root, "d");
    st = ts_dataset_load(g_ctx, root, TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT && !ds && strstr(ts_ctx_error(g_ctx), "no images"), "empty class: %s", ts_ctx_error(g_ctx));
    snprintf(p, sizeof p, "%s/d/bad.png", root);
    CHECK(test_write_file(p, "\x89PNG\r\n\x1a\n", 8), "write");
    st = ts_dataset_load(g_ctx, root, TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT && !ds && strstr(ts_ctx_error(g_ctx), "bad.png") && strstr(ts_ctx_error(g_ctx), "truncated"),
          "corrupt image: %s", ts_ctx_error(g_ctx));
    ts_ctx_set_image_shape(g_ctx, 0, 0, 0);
    CHECK(ts_ctx_set_image_shape(g_ctx, 2, 8, 8) == TS_EINVAL, "2 channels accepted");
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 1;
    RUN(test_png_every_type);
    RUN(test_jpeg_variants);
    RUN(test_hostile_files);
    RUN(test_transforms_match_pil);
    RUN(test_image_folder);
    rm_rf(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_images");
}
