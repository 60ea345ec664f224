/* Image folders, the layout torchvision's ImageFolder reads: ROOT/CLASS/[...]/NAME with
 * NAME ending in .png, .jpg, .jpeg, .pgm or .ppm (any case). Classes are the class folders' names in byte order (Python's sorted());
 * samples are ordered by class, then by folder path, then by file name (ImageFolder's
 * sorted os.walk). ROOT/train with ROOT/test (or ROOT/val) beside it gives the two
 * splits; otherwise ROOT is the training split and there is no test split. Every
 * image is brought to one shape with ts_image_fit (docs/data.md, "Image folders"). */
#include "data/data.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FOLDER_PATH_MAX 4096
#define FOLDER_DEPTH_MAX 8 /* below a class folder; also what stops a symlink loop */

/* A growing list of strings (class names, or file paths with the length of their
 * folder part, which orders them). */
typedef struct str_list {
    char **s;
    size_t *dirlen;
    int n, cap;
} str_list;

static void list_free(str_list *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->dirlen);
    memset(l, 0, sizeof *l);
}

static int list_add(str_list *l, const char *s, size_t dirlen) {
    if (l->n == l->cap) {
        if (l->cap > (1 << 28)) return 0;
        int cap = l->cap ? 2 * l->cap : 64;
        char **ns = realloc(l->s, sizeof *ns * (size_t)cap);
        if (ns) l->s = ns;
        size_t *nd = realloc(l->dirlen, sizeof *nd * (size_t)cap);
        if (nd) l->dirlen = nd;
        if (!ns || !nd) return 0;
        l->cap = cap;
    }
    if (!(l->s[l->n] = strdup(s))) return 0;
    l->dirlen[l->n++] = dirlen;
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name) {
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".pgm", ".ppm"};
    const size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        const size_t e = strlen(ext[i]);
        if (n > e && !strcasecmp(name + n - e, ext[i])) return 1;
    }
    return 0;
}

static int join(char *out, const char *dir, const char *name) {
    int n = snprintf(out, FOLDER_PATH_MAX, "%s/%s", dir, name);
    return n > 0 && n < FOLDER_PATH_MAX;
}

/* The entries of dir that are folders (dirs 1) or image files (dirs 0), hidden ones
 * (".name") skipped, sorted. Returns 1, or -1 when dir cannot be read (none listed:
 * ImageFolder's os.walk passes over such folders too), 0 when memory ran out. */
static int list_dir(const char *dir, int dirs, str_list *out) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int ok = 1;
    struct dirent *e;
    char p[FOLDER_PATH_MAX];
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !join(p, dir, e->d_name)) continue;
        const int kind = data_path_kind(p); /* follows links, as ImageFolder does */
        if (dirs ? kind == 2 : kind == 1 && has_image_ext(e->d_name)) ok = list_add(out, e->d_name, 0);
    }
    closedir(d);
    if (ok && out->n) qsort(out->s, (size_t)out->n, sizeof *out->s, cmp_str);
    return ok;
}

/* Every image file under dir (its path), recursing FOLDER_DEPTH_MAX levels; stops
 * after `stop` files when stop > 0. 0 when out of memory. */
static int walk(const char *dir, int depth, int stop, str_list *files) {
    str_list sub = {0};
    int ok = list_dir(dir, 0, &sub) != 0;
    for (int i = 0; ok && i < sub.n && !(stop > 0 && files->n >= stop); i++) {
        char p[FOLDER_PATH_MAX];
        if (join(p, dir, sub.s[i])) ok = list_add(files, p, strlen(dir));
    }
    list_free(&sub);
    if (!ok || depth >= FOLDER_DEPTH_MAX || (stop > 0 && files->n >= stop)) return ok;
    if (!list_dir(dir, 1, &sub)) {
        list_free(&sub);
        return 0;
    }
    for (int i = 0; ok && i < sub.n && !(stop > 0 && files->n >= stop); i++) {
        char p[FOLDER_PATH_MAX];
        if (join(p, dir, sub.s[i])) ok = walk(p, depth + 1, stop, files);
    }
    list_free(&sub);
    return ok;
}

/* ImageFolder's order within a class: by folder path, then by file name */
static int cmp_file(const void *a, const void *b, void *lst) {
    const str_list *l = lst;
    const int i = *(const int *)a, j = *(const int *)b;
    const size_t di = l->dirlen[i], dj = l->dirlen[j], dn = di < dj ? di : dj;
    int c = strncmp(l->s[i], l->s[j], dn);
    if (c) return c;
    if (di != dj) return di < dj ? -1 : 1;
    return strcmp(l->s[i] + di + 1, l->s[j] + dj + 1);
}

/* qsort_r is not in C11/POSIX: an insertion sort over indices would be quadratic, so a
 * merge sort it is */
static void sort_files(int *idx, int *tmp, int n, const str_list *l) {
    if (n < 2) return;
    const int h = n / 2;
    sort_files(idx, tmp, h, l);
    sort_files(idx + h, tmp, n - h, l);
    int a = 0, b = h, o = 0;
    while (a < h || b < n)
        tmp[o++] = b >= n || (a < h && cmp_file(&idx[a], &idx[b], (void *)l) <= 0) ? idx[a++] : idx[b++];
    memcpy(idx, tmp, sizeof *idx * (size_t)n);
}

/* The image files of one class folder in ImageFolder's order (files: appended). */
static ts_status class_files(ts_ctx *ctx, const char *dir, int stop, str_list *files) {
    str_list raw = {0};
    if (!walk(dir, 0, 0, &raw)) {
        list_free(&raw);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory listing the images", dir);
    }
    int *idx = malloc(sizeof *idx * (size_t)(raw.n ? raw.n : 1)), *tmp = malloc(sizeof *tmp * (size_t)(raw.n ? raw.n : 1));
    int ok = idx && tmp;
    if (ok) {
        for (int i = 0; i < raw.n; i++) idx[i] = i;
        sort_files(idx, tmp, raw.n, &raw);
        for (int i = 0; ok && i < raw.n && !(stop > 0 && files->n >= stop); i++)
            ok = list_add(files, raw.s[idx[i]], raw.dirlen[idx[i]]);
    }
    free(idx);
    free(tmp);
    list_free(&raw);
    return ok ? TS_OK : ts_fail(ctx, TS_ENOMEM, "%s: out of memory listing the images", dir);
}

/* 1 when dir has a class folder holding at least one image, 0 when not, -1 when
 * memory ran out. */
static int has_classes(const char *dir) {
    str_list cls = {0};
    int found = 0;
    const int listed = list_dir(dir, 1, &cls);
    if (!listed) found = -1;
    for (int i = 0; listed == 1 && i < cls.n && !found; i++) {
        char p[FOLDER_PATH_MAX];
        str_list one = {0};
        if (join(p, dir, cls.s[i])) found = !walk(p, 0, 1, &one) ? -1 : one.n > 0;
        list_free(&one);
    }
    list_free(&cls);
    return found;
}

/* The folders of the two splits (test[0] '\0' when there is none); -1 when memory
 * ran out, else 0. */
static int split_roots(const char *dir, char *train, char *test) {
    char t[FOLDER_PATH_MAX];
    test[0] = '\0';
    const int has = join(t, dir, "train") && data_path_kind(t) == 2 ? has_classes(t) : 0;
    if (has < 0) return -1;
    if (has) {
        strcpy(train, t);
        if (join(t, dir, "test") && data_path_kind(t) == 2) strcpy(test, t);
        else if (join(t, dir, "val") && data_path_kind(t) == 2) strcpy(test, t);
        return 0;
    }
    snprintf(train, FOLDER_PATH_MAX, "%s", dir);
    return 0;
}

int data_image_folder_detect(const char *dir) {
    char train[FOLDER_PATH_MAX], test[FOLDER_PATH_MAX];
    return split_roots(dir, train, test) < 0 ? -1 : has_classes(train);
}

/* The shape images are brought to: the context's, each 0 taken from the first image
 * of the training split (first class, first file). */
static ts_status target_shape(ts_ctx *ctx, const char *train, const str_list *classes, int *C, int *H, int *W) {
    ts_ctx_get_image_shape(ctx, C, H, W);
    if (*C && *H && *W) return TS_OK;
    char p[FOLDER_PATH_MAX];
    str_list one = {0};
    ts_status st = join(p, train, classes->s[0]) ? class_files(ctx, p, 1, &one) : ts_fail(ctx, TS_EINVAL, "%s: path too long", train);
    if (!st && one.n == 0) st = ts_fail(ctx, TS_EFORMAT, "%s: class folder %s has no images", train, classes->s[0]);
    int c, h, w;
    uint8_t *px = NULL;
    if (!st && !(st = ts_image_load(ctx, one.s[0], &c, &h, &w, &px))) {
        if (!*C) *C = c;
        if (!*H) *H = h;
        if (!*W) *W = w;
    }
    ts_image_free(px);
    list_free(&one);
    return st;
}

/* One image file into dst (C, H, W). */
static ts_status load_one(ts_ctx *ctx, const char *path, int C, int H, int W, uint8_t *dst) {
    int c, h, w;
    uint8_t *px;
    ts_status st = ts_image_load(ctx, path, &c, &h, &w, &px);
    if (st) return st;
    st = ts_image_fit(ctx, px, c, h, w, C, H, W, dst);
    ts_image_free(px);
    if (st) st = ts_fail(ctx, st, "%s: %s", path, ts_ctx_error(ctx));
    return st;
}

ts_status data_image_folder_load(ts_ctx *ctx, const char *dir, ts_split split, const char *name, int64_t limit,
                                 ts_dataset **out) {
    *out = NULL;
    if (strlen(dir) >= FOLDER_PATH_MAX - 512) return ts_fail(ctx, TS_EINVAL, "%s: path too long", dir);
    char train[FOLDER_PATH_MAX], test[FOLDER_PATH_MAX];
    if (split_roots(dir, train, test) < 0) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory listing its folders", dir);
    if (split == TS_SPLIT_TEST && !test[0])
        return ts_fail(ctx, TS_ENOTFOUND,
                       "%s: an image folder with no test split (expected train/ and test/ or val/ in it; the whole "
                       "folder is the training split)",
                       dir);
    const char *root = split == TS_SPLIT_TEST ? test : train;
    str_list classes = {0}, here = {0}, files = {0};
    int *labels = NULL;
    ts_status st = TS_OK;
    const int listed = list_dir(train, 1, &classes), listed_test = split == TS_SPLIT_TEST ? list_dir(test, 1, &here) : 1;
    if (listed <= 0 || listed_test <= 0) {
        st = !listed || !listed_test ? ts_fail(ctx, TS_ENOMEM, "%s: out of memory listing its class folders", dir)
                                     : ts_fail(ctx, TS_EIO, "%s: cannot list its class folders", listed < 0 ? train : test);
        goto done;
    }
    if (classes.n == 0 || classes.n > 65535) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: %d class folders (expected 1 to 65535)", train, classes.n);
        goto done;
    }
    /* the test split's classes index the training split's list */
    const str_list *walk_classes = split == TS_SPLIT_TEST ? &here : &classes;
    int64_t cap = 0;
    for (int i = 0; i < walk_classes->n && !(limit > 0 && files.n >= limit); i++) {
        const char *cname = walk_classes->s[i];
        void *hit = bsearch(&cname, classes.s, (size_t)classes.n, sizeof *classes.s, cmp_str);
        if (!hit) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: class folder %s is not among the training split's %d classes in %s", root,
                         cname, classes.n, train);
            goto done;
        }
        const int label = (int)((char **)hit - classes.s), before = files.n;
        char p[FOLDER_PATH_MAX];
        if (!join(p, root, cname)) {
            st = ts_fail(ctx, TS_EINVAL, "%s/%s: path too long", root, cname);
            goto done;
        }
        if ((st = class_files(ctx, p, limit > 0 ? (int)(limit < 1 << 30 ? limit : 1 << 30) : 0, &files))) goto done;
        if (files.n == before && split == TS_SPLIT_TRAIN) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: class folder has no images (expected .png, .jpg, .jpeg, .pgm or .ppm files)",
                         p);
            goto done;
        }
        if (files.n > cap) {
            cap = files.n * 2;
            int *nl = realloc(labels, sizeof *nl * (size_t)cap);
            if (!nl) {
                st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory listing the images", dir);
                goto done;
            }
            labels = nl;
        }
        for (int f = before; f < files.n; f++) labels[f] = label;
    }
    int C, H, W;
    if ((st = target_shape(ctx, train, &classes, &C, &H, &W))) goto done;
    const int64_t count = limit > 0 && files.n > limit ? limit : files.n;
    size_t bytes;
    if (!ts_mul_size((size_t)count, (size_t)C * H * W, &bytes) || bytes > ((size_t)1 << 40)) {
        st = ts_fail(ctx, TS_ENOMEM, "%s: %lld images of %dx%dx%d are too many to hold", dir, (long long)count, C, H, W);
        goto done;
    }
    if ((st = data_dataset_new(ctx, count, C, H, W, classes.n, name, 1, out))) goto done;
    for (int64_t i = 0; i < count && !st; i++) {
        (*out)->labels[i] = labels[i];
        st = load_one(ctx, files.s[i], C, H, W, (*out)->images + (size_t)i * C * H * W);
    }
    if (!st) st = data_dataset_set_names(ctx, *out, (const char *const *)classes.s);
done:
    if (st && *out) {
        ts_dataset_free(*out);
        *out = NULL;
    }
    free(labels);
    list_free(&classes);
    list_free(&here);
    list_free(&files);
    return st;
}
