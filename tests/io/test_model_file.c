/* The .tsr model file (docs/file-format.md): a save/load round trip keeps every
 * tensor bit, the metadata, the architecture text and its input/classes overrides
 * and the predictions; saves are atomic; hostile files (empty, truncated anywhere,
 * wrong magic or version, lengths and counts past the end, changed shapes, NaN,
 * unknown or duplicate sections, trailing bytes, flipped bytes) fail with a status
 * and a message naming the file, never a crash or a leak; checkpoints load as
 * models and models are refused as checkpoints. */
#include "tessera.h"
#include "core/testing.h"

#include "common/test.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_model_file_XXXXXX";

/* ------------------------------------------------------------------ helpers */

static void path_in_tmp(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_tmp, name); }

static void write_bytes(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    if (n) CHECK(fwrite(d, 1, n, f) == n, "short write to %s", path);
    fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    uint8_t *d = test_read_file(path, n);
    CHECK(d != NULL, "cannot read %s", path);
    return d;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Files left in the temp folder whose name contains `part` (NULL: any). */
static int count_files(const char *part) {
    DIR *d = opendir(g_tmp);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!part || strstr(e->d_name, part)) n++;
    }
    closedir(d);
    return n;
}

static void remove_tmp_files(void) {
    DIR *d = opendir(g_tmp);
    if (!d) return;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* A section of a file image: tag, payload offset and length. */
typedef struct file_section {
    uint32_t tag;
    size_t header, off, len;
} file_section;

#define TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

static int find_section(const uint8_t *d, size_t n, uint32_t tag, file_section *out) {
    if (n < 16) return 0;
    uint32_t nsec = get_u32(d + 12);
    size_t at = 16;
    for (uint32_t i = 0; i < nsec && at + 12 <= n; i++) {
        uint32_t t = get_u32(d + at);
        uint64_t len = (uint64_t)get_u32(d + at + 4) | (uint64_t)get_u32(d + at + 8) << 32;
        if (t == tag) {
            out->tag = t;
            out->header = at;
            out->off = at + 12;
            out->len = (size_t)len;
            return 1;
        }
        at += 12 + (size_t)len;
    }
    return 0;
}

/* Offsets inside TENS of tensor `which`: its first dimension and its data. */
static int find_tensor(const uint8_t *d, size_t n, int which, size_t *dim_off, size_t *data_off, size_t *name_off) {
    file_section s;
    if (!find_section(d, n, TAG('T', 'E', 'N', 'S'), &s)) return 0;
    size_t at = s.off;
    uint32_t count = get_u32(d + at);
    at += 4;
    for (uint32_t i = 0; i < count; i++) {
        if (name_off) *name_off = at;
        uint32_t nlen = get_u32(d + at);
        at += 4 + nlen + 2; /* name, dtype, role */
        uint32_t ndim = get_u32(d + at);
        at += 4;
        size_t first_dim = at;
        int64_t numel = 1;
        for (uint32_t k = 0; k < ndim; k++) {
            numel *= (int64_t)get_u32(d + at);
            at += 8;
        }
        if ((int)i == which) {
            *dim_off = first_dim;
            *data_off = at;
            return 1;
        }
        at += (size_t)numel * 4;
    }
    return 0;
}

/* Offset of the first occurrence of s at or after `from`, or 0. */
static size_t find_text(const uint8_t *d, size_t n, size_t from, const char *s) {
    size_t k = strlen(s);
    for (size_t i = from; i + k <= n; i++)
        if (!memcmp(d + i, s, k)) return i;
    return 0;
}

/* Loading `d` (n bytes) as a model must fail (with `want` unless it is -1) and name the file. */
static void expect_load_fails(const char *what, const uint8_t *d, size_t n, int want) {
    char path[256];
    path_in_tmp(path, sizeof path, "hostile.tsr");
    write_bytes(path, d, n);
    ts_model *m = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_model_load(g_ctx, path, &m);
    CHECK(st != TS_OK, "%s: loaded", what);
    if (want >= 0) CHECK(st == (ts_status)want, "%s: status %s, want %s (%s)", what, ts_status_name(st),
                         ts_status_name((ts_status)want), ts_ctx_error(g_ctx));
    CHECK(m == NULL, "%s: out not NULL", what);
    if (st == TS_OK) ts_model_free(m);
    CHECK(strstr(ts_ctx_error(g_ctx), path) != NULL, "%s: message '%s' does not name the file", what,
          ts_ctx_error(g_ctx));
    unlink(path);
}

/* The same image through the checkpoint loader. */
static void expect_ckpt_fails(const char *what, const uint8_t *d, size_t n) {
    char path[256];
    path_in_tmp(path, sizeof path, "hostile.ckpt");
    write_bytes(path, d, n);
    ts_model *m = NULL;
    ts_train_config cfg;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_checkpoint_load_model(g_ctx, path, &m, &cfg);
    CHECK(st != TS_OK, "%s: checkpoint loaded", what);
    CHECK(m == NULL, "%s: model not NULL", what);
    if (st == TS_OK) ts_model_free(m);
    CHECK(strstr(ts_ctx_error(g_ctx), path) != NULL, "%s: message '%s' does not name the file", what,
          ts_ctx_error(g_ctx));
    unlink(path);
}

static const char *SMALL_ARCH = "# a small net with every kind of tensor\n"
                                "input     shape=1x8x8 classes=4\n"
                                "conv2d    name=conv1 out=3 kernel=3 padding=1 bias=0\n"
                                "batchnorm name=bn1\n"
                                "relu      name=relu1\n"
                                "maxpool   name=pool1 kernel=2\n"
                                "flatten   name=flat\n"
                                "dropout   name=drop p=0.2\n"
                                "dense     name=fc1 out=6\n"
                                "batchnorm name=bn2\n"
                                "relu      name=relu2\n"
                                "dense     name=fc2 out=classes\n";

/* A model whose every tensor (including running statistics) is far from its
 * initial value, with metadata. */
static ts_model *make_small(uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, SMALL_ARCH, "small.arch", NULL, 0, seed, &m);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) return NULL;
    float x[16 * 64], logits[16 * 4];
    for (int it = 0; it < 3; it++) {
        test_fill_uniform(x, 16 * 64, seed + (unsigned)it, -1, 2);
        ts_model_forward_train(g_ctx, m, x, 16, logits, 3);
    }
    for (int t = 0; t < ts_model_tensor_count(m); t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        if (ti.role == TS_TENSOR_PARAM)
            for (int64_t i = 0; i < ti.numel; i++) ti.data[i] += 0.01f * (float)((i % 7) - 3) + 1e-3f * (float)t;
    }
    ts_model_set_meta(g_ctx, m, "dataset", "synthetic");
    ts_model_set_meta(g_ctx, m, "classes", "zero\none\ntwo\nthree");
    ts_model_set_meta(g_ctx, m, "empty", "");
    ts_model_set_meta(g_ctx, m, "note", "spaces, = signs, ünïcödé");
    ts_preprocess pp = {1, {0.1307f}, {0.3081f}, 0, 0};
    ts_model_set_preprocess(g_ctx, m, &pp);
    return m;
}

static void expect_same_model(const ts_model *a, ts_model *b, const char *what) {
    CHECK(ts_model_tensor_count(a) == ts_model_tensor_count(b), "%s: tensor counts", what);
    CHECK(ts_model_param_count(a) == ts_model_param_count(b), "%s: param counts", what);
    for (int t = 0; t < ts_model_tensor_count(a) && t < ts_model_tensor_count(b); t++) {
        ts_tensor_info ta, tb;
        ts_model_tensor(a, t, &ta);
        ts_model_tensor(b, t, &tb);
        CHECK(!strcmp(ta.name, tb.name) && ta.role == tb.role && ta.ndim == tb.ndim && ta.numel == tb.numel,
              "%s: tensor %d %s vs %s", what, t, ta.name, tb.name);
        CHECK(memcmp(ta.dims, tb.dims, sizeof ta.dims) == 0, "%s: %s dims", what, ta.name);
        if (ta.numel == tb.numel)
            CHECK(memcmp(ta.data, tb.data, (size_t)ta.numel * sizeof(float)) == 0, "%s: %s data differs", what,
                  ta.name);
    }
    CHECK(!strcmp(ts_model_arch_text(a), ts_model_arch_text(b)), "%s: arch text", what);
    ts_shape ia = ts_model_input_shape(a), ib = ts_model_input_shape(b);
    CHECK(ia.ndim == ib.ndim && memcmp(ia.dims, ib.dims, sizeof ia.dims) == 0, "%s: input shape", what);
    CHECK(ts_model_classes(a) == ts_model_classes(b), "%s: classes %d vs %d", what, ts_model_classes(a),
          ts_model_classes(b));
    CHECK(ts_model_meta_count(a) == ts_model_meta_count(b), "%s: meta count %d vs %d", what, ts_model_meta_count(a),
          ts_model_meta_count(b));
    for (int i = 0; i < ts_model_meta_count(a); i++) {
        const char *k, *v;
        ts_model_meta_at(a, i, &k, &v);
        const char *vb = ts_model_get_meta(b, k);
        CHECK(vb && !strcmp(v, vb), "%s: meta %s = '%s' vs '%s'", what, k, v, vb ? vb : "(missing)");
    }
}

static void expect_same_predictions(ts_model *a, ts_model *b, const char *what) {
    ts_shape s = ts_model_input_shape(a);
    const size_t in_sz = (size_t)ts_shape_numel(&s);
    const int n = 5, k = ts_model_classes(a);
    float *x = malloc((size_t)n * in_sz * sizeof(float)), *la = malloc((size_t)n * k * sizeof(float));
    float *lb = malloc((size_t)n * k * sizeof(float));
    test_fill_uniform(x, (size_t)n * in_sz, 17, -1, 1);
    CHECK(ts_model_predict(g_ctx, a, x, n, la) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_predict(g_ctx, b, x, n, lb) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(memcmp(la, lb, (size_t)n * k * sizeof(float)) == 0, "%s: predictions differ", what);
    free(x), free(la), free(lb);
}

/* ------------------------------------------------------------ round trip */

static void test_round_trip(void) {
    ts_model *m = make_small(5);
    if (!m) return;
    char path[256];
    path_in_tmp(path, sizeof path, "small.tsr");
    CHECK(ts_model_save(g_ctx, m, path) == TS_OK, "save: %s", ts_ctx_error(g_ctx));
    CHECK(count_files(".tmp.") == 0, "temporary file left behind");
    ts_model *l = NULL;
    CHECK(ts_model_load(g_ctx, path, &l) == TS_OK, "load: %s", ts_ctx_error(g_ctx));
    if (l) {
        expect_same_model(m, l, "small");
        CHECK(ts_model_get_meta(l, "empty") && !strcmp(ts_model_get_meta(l, "empty"), ""), "empty meta value");
        ts_preprocess pp;
        CHECK(ts_model_get_preprocess(g_ctx, l, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(pp.channels == 1 && pp.mean[0] == 0.1307f && pp.std[0] == 0.3081f, "preprocess %g %g", pp.mean[0],
              pp.std[0]);
        expect_same_predictions(m, l, "small");
        /* saving the loaded model writes the same bytes */
        char path2[256];
        path_in_tmp(path2, sizeof path2, "small2.tsr");
        CHECK(ts_model_save(g_ctx, l, path2) == TS_OK, "resave: %s", ts_ctx_error(g_ctx));
        size_t n1, n2;
        uint8_t *d1 = read_bytes(path, &n1), *d2 = read_bytes(path2, &n2);
        CHECK(d1 && d2 && n1 == n2 && memcmp(d1, d2, n1) == 0, "resaved file differs (%zu vs %zu bytes)", n1, n2);
        free(d1), free(d2);
        unlink(path2);
        ts_model_free(l);
    }
    /* overwriting an existing file replaces it */
    ts_model *m2 = make_small(6);
    if (m2) {
        CHECK(ts_model_save(g_ctx, m2, path) == TS_OK, "overwrite: %s", ts_ctx_error(g_ctx));
        CHECK(ts_model_load(g_ctx, path, &l) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (l) {
            expect_same_model(m2, l, "overwritten");
            ts_model_free(l);
        }
        ts_model_free(m2);
    }
    CHECK(count_files(".tmp.") == 0, "temporary file left behind");
    unlink(path);
    ts_model_free(m);
}

static void test_round_trip_overrides(void) {
    /* resnet20's text declares 3x32x32 and 10 classes; the file keeps 1x28x28 / 100 */
    ts_shape in = {3, {1, 28, 28}};
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, ts_zoo_arch("resnet20"), "resnet20", &in, 100, 3, &m) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (!m) return;
    float x[4 * 784], lg[4 * 100];
    test_fill_uniform(x, 4 * 784, 1, 0, 1);
    ts_model_forward_train(g_ctx, m, x, 4, lg, 0); /* move running statistics */
    char path[256];
    path_in_tmp(path, sizeof path, "resnet.tsr");
    CHECK(ts_model_save(g_ctx, m, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model *l = NULL;
    CHECK(ts_model_load(g_ctx, path, &l) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (l) {
        ts_shape li = ts_model_input_shape(l);
        CHECK(li.ndim == 3 && li.dims[0] == 1 && li.dims[1] == 28 && li.dims[2] == 28, "input override lost");
        CHECK(ts_model_classes(l) == 100, "classes override lost: %d", ts_model_classes(l));
        CHECK(!strcmp(ts_model_arch_text(l), ts_zoo_arch("resnet20")), "arch text");
        expect_same_model(m, l, "resnet20 1x28x28/100");
        expect_same_predictions(m, l, "resnet20");
        ts_model_free(l);
    }
    unlink(path);
    ts_model_free(m);
}

static void test_save_atomic_failure(void) {
    ts_model *m = make_small(7);
    if (!m) return;
    int before = count_files(NULL);
    char path[256];
    path_in_tmp(path, sizeof path, "no/such/folder/model.tsr");
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_model_save(g_ctx, m, path);
    CHECK(st == TS_EIO, "save into a missing folder: %s", ts_status_name(st));
    CHECK(strstr(ts_ctx_error(g_ctx), path) != NULL, "message '%s' does not name the file", ts_ctx_error(g_ctx));
    CHECK(count_files(NULL) == before, "files left behind: %d vs %d", count_files(NULL), before);
    /* a path that is a directory cannot be replaced */
    path_in_tmp(path, sizeof path, "adir");
    mkdir(path, 0700);
    ts_ctx_clear_error(g_ctx);
    st = ts_model_save(g_ctx, m, path);
    CHECK(st == TS_EIO, "save over a directory: %s", ts_status_name(st));
    CHECK(count_files(".tmp.") == 0, "temporary file left after a failed rename");
    rmdir(path);
    /* loading what is not there */
    path_in_tmp(path, sizeof path, "missing.tsr");
    ts_model *l = NULL;
    ts_ctx_clear_error(g_ctx);
    CHECK(ts_model_load(g_ctx, path, &l) == TS_EIO && l == NULL, "missing file");
    CHECK(strstr(ts_ctx_error(g_ctx), path) != NULL, "message '%s'", ts_ctx_error(g_ctx));
    ts_ctx_clear_error(g_ctx);
    CHECK(ts_model_load(g_ctx, g_tmp, &l) != TS_OK && l == NULL, "a directory loaded");
    ts_model_free(m);
}

/* -------------------------------------------------------------- hostile */

static void test_hostile(void) {
    ts_model *m = make_small(8);
    if (!m) return;
    char path[256];
    path_in_tmp(path, sizeof path, "good.tsr");
    CHECK(ts_model_save(g_ctx, m, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    size_t n;
    uint8_t *good = read_bytes(path, &n);
    unlink(path);
    if (!good) return;
    uint8_t *d = malloc(2 * n + 64); /* room for appended sections */
    CHECK(n > 1000, "file of %zu bytes", n);

    expect_load_fails("empty file", good, 0, TS_EFORMAT);
    /* truncated at ~40 evenly spaced lengths, and just before the end */
    for (int i = 0; i < 40; i++) {
        size_t len = (n - 1) * (size_t)i / 39;
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu of %zu", len, n);
        expect_load_fails(what, good, len, -1);
    }
    for (size_t len = n - 8; len < n; len++) expect_load_fails("truncated near the end", good, len, -1);

#define MUTATE(what, want, stmt)                    \
    do {                                            \
        memcpy(d, good, n);                         \
        size_t dn = n;                              \
        stmt;                                       \
        expect_load_fails(what, d, dn, want);       \
    } while (0)

    MUTATE("wrong magic", TS_EFORMAT, d[0] = 'X');
    MUTATE("a future version", -1, put_u32(d + 4, 3)); /* 2 is read since step masks (2026-12) */
    MUTATE("version 0", -1, put_u32(d + 4, 0));
    MUTATE("unknown kind", TS_EFORMAT, put_u32(d + 8, 7));
    MUTATE("section count 2", TS_EFORMAT, put_u32(d + 12, 2));
    MUTATE("section count huge", TS_EFORMAT, put_u32(d + 12, 0xffffffffu));
    MUTATE("section count 4, three present", TS_EFORMAT, put_u32(d + 12, 4));
    MUTATE("extra trailing bytes", TS_EFORMAT, (d[n] = 1, d[n + 1] = 2, d[n + 2] = 3, dn = n + 3));
    MUTATE("one trailing zero", TS_EFORMAT, (d[n] = 0, dn = n + 1));

    file_section arch, meta, tens;
    CHECK(find_section(good, n, TAG('A', 'R', 'C', 'H'), &arch), "no ARCH");
    CHECK(find_section(good, n, TAG('M', 'E', 'T', 'A'), &meta), "no META");
    CHECK(find_section(good, n, TAG('T', 'E', 'N', 'S'), &tens), "no TENS");
    CHECK(tens.off + tens.len == n, "TENS is not last");

    MUTATE("section length past the end", TS_EFORMAT, put_u64(d + arch.header + 4, n));
    MUTATE("section length 2^64-1", TS_EFORMAT, put_u64(d + arch.header + 4, UINT64_MAX));
    MUTATE("last section length one past", TS_EFORMAT, put_u64(d + tens.header + 4, tens.len + 1));
    MUTATE("section length one short", TS_EFORMAT, put_u64(d + tens.header + 4, tens.len - 1));
    MUTATE("unknown section tag", TS_EFORMAT, put_u32(d + meta.header, TAG('X', 'T', 'R', 'A')));
    MUTATE("missing TENS (tag renamed to META twice)", TS_EFORMAT, put_u32(d + tens.header, TAG('M', 'E', 'T', 'A')));
    /* duplicate section: a second META appended and counted */
    MUTATE("duplicate section", TS_EFORMAT, (put_u32(d + 12, 4), memcpy(d + n, good + meta.header, 12 + meta.len),
                                            dn = n + 12 + meta.len));
    /* counts and lengths inside sections */
    MUTATE("arch text length huge", TS_EFORMAT, put_u32(d + arch.off, 0xffffffffu));
    MUTATE("arch text length past the section", TS_EFORMAT, put_u32(d + arch.off, (uint32_t)arch.len));
    MUTATE("arch text with a NUL", TS_EFORMAT, d[arch.off + 4 + 5] = 0);
    {
        size_t at = find_text(good, n, arch.off, "dense");
        CHECK(at > 0, "no 'dense' in the ARCH section");
        MUTATE("arch text that does not parse", TS_EFORMAT, memcpy(d + at, "dunce", 5));
    }
    {
        uint32_t alen = get_u32(good + arch.off);
        size_t rank_at = arch.off + 4 + alen;
        MUTATE("input rank 0", TS_EFORMAT, put_u32(d + rank_at, 0));
        MUTATE("input rank huge", TS_EFORMAT, put_u32(d + rank_at, 0xffffffffu));
        MUTATE("input dim negative", TS_EFORMAT, put_u64(d + rank_at + 4, (uint64_t)-1));
        MUTATE("input dim 2^40", TS_EFORMAT, put_u64(d + rank_at + 4, (uint64_t)1 << 40));
        MUTATE("input shape that breaks the arch", -1, put_u64(d + rank_at + 4 + 8, 1)); /* 1x1x8 */
        size_t classes_at = rank_at + 4 + 3 * 8;
        MUTATE("classes 0", TS_EFORMAT, put_u32(d + classes_at, 0));
        MUTATE("classes huge", TS_EFORMAT, put_u32(d + classes_at, 0xffffffffu));
        MUTATE("classes disagree with the final layer", TS_ESHAPE, put_u32(d + classes_at, 5));
    }
    MUTATE("metadata count huge", TS_EFORMAT, put_u32(d + meta.off, 0xffffffffu));
    MUTATE("metadata count one more", TS_EFORMAT, put_u32(d + meta.off, get_u32(good + meta.off) + 1));
    MUTATE("metadata key length huge", TS_EFORMAT, put_u32(d + meta.off + 4, 0x7fffffffu));
    MUTATE("metadata empty key", TS_EFORMAT, put_u32(d + meta.off + 4, 0));
    MUTATE("tensor count huge", TS_EFORMAT, put_u32(d + tens.off, 0xffffffffu));
    MUTATE("tensor count one less", TS_EFORMAT, put_u32(d + tens.off, get_u32(good + tens.off) - 1));
    {
        size_t dim_at, data_at, name_at;
        CHECK(find_tensor(good, n, 0, &dim_at, &data_at, &name_at), "tensor 0 not found");
        MUTATE("tensor shape changed", TS_ESHAPE, put_u64(d + dim_at, get_u32(good + dim_at) + 1));
        MUTATE("tensor dim huge", TS_ESHAPE, put_u64(d + dim_at, UINT64_MAX / 2));
        MUTATE("tensor rank changed", TS_ESHAPE, put_u32(d + dim_at - 4, 3));
        MUTATE("tensor rank huge", TS_ESHAPE, put_u32(d + dim_at - 4, 0xffffffffu));
        MUTATE("tensor dtype 1", TS_EUNSUPPORTED, d[dim_at - 6] = 1);
        MUTATE("tensor role changed", TS_EFORMAT, d[dim_at - 5] = 1);
        MUTATE("tensor name length huge", TS_EFORMAT, put_u32(d + name_at, 0xfffffff0u));
        MUTATE("tensor name unknown", TS_EFORMAT, d[name_at + 4] = 'Z');
        const float nan = NAN, inf = INFINITY;
        MUTATE("NaN in a weight", TS_EFORMAT, memcpy(d + data_at + 8, &nan, 4));
        MUTATE("Inf in a weight", TS_EFORMAT, memcpy(d + data_at, &inf, 4));
        /* bn2.weight (tensor 5) renamed bn1.weight (tensor 1): a duplicate */
        size_t dim1, data1, name1, dim5, data5, name5;
        CHECK(find_tensor(good, n, 1, &dim1, &data1, &name1), "tensor 1 not found");
        CHECK(find_tensor(good, n, 5, &dim5, &data5, &name5), "tensor 5 not found");
        CHECK(!memcmp(good + name1 + 4, "bn1.weight", 10) && !memcmp(good + name5 + 4, "bn2.weight", 10),
              "tensor order");
        MUTATE("tensor appears twice", TS_EFORMAT, d[name5 + 4 + 2] = '1');
        /* the last tensor is bn2.running_var: NaN in a buffer */
        MUTATE("NaN in a running statistic", TS_EFORMAT, memcpy(d + n - 4, &nan, 4));
    }

    /* fuzz-lite: single-byte changes at 300 spread positions never crash or leak */
    int loaded = 0;
    for (int i = 0; i < 300; i++) {
        size_t pos = (size_t)((uint64_t)i * 2654435761u % n);
        memcpy(d, good, n);
        d[pos] ^= (uint8_t)(1u << (i % 8));
        path_in_tmp(path, sizeof path, "fuzz.tsr");
        write_bytes(path, d, n);
        ts_model *l = NULL;
        ts_status st = ts_model_load(g_ctx, path, &l);
        if (st == TS_OK) {
            loaded++;
            float x[64], lg[4];
            test_fill_uniform(x, 64, 1, 0, 1);
            CHECK(ts_model_predict(g_ctx, l, x, 1, lg) == TS_OK, "fuzzed model loaded but does not predict");
            ts_model_free(l);
        } else {
            CHECK(l == NULL, "fuzz %zu: out set on failure", pos);
            CHECK(strstr(ts_ctx_error(g_ctx), path) != NULL, "fuzz at byte %zu: message '%s'", pos, ts_ctx_error(g_ctx));
        }
    }
    unlink(path);
    CHECK(loaded > 0 && loaded < 300, "fuzz: %d of 300 loaded", loaded); /* flips in float data load fine */
#undef MUTATE
    free(d);
    free(good);
    CHECK(count_files(NULL) == 0, "files left: %d", count_files(NULL));
}

/* ----------------------------------------------------------- checkpoints */

static ts_dataset *tiny_dataset(void) {
    ts_dataset *ds = calloc(1, sizeof *ds);
    ds->count = 24;
    ds->channels = 1;
    ds->height = ds->width = 8;
    ds->classes = 4;
    ds->images = malloc(24 * 64);
    ds->labels = malloc(24 * sizeof(int32_t));
    for (int i = 0; i < 24; i++) {
        ds->labels[i] = i % 4;
        for (int p = 0; p < 64; p++) ds->images[i * 64 + p] = (uint8_t)((p * 7 + i * 13 + (i % 4) * 60) & 0xff);
    }
    snprintf(ds->name, sizeof ds->name, "tiny");
    return ds;
}

static void free_dataset(ts_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds);
}

static void test_checkpoint_files(void) {
    ts_dataset *ds = tiny_dataset();
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, SMALL_ARCH, "small.arch", NULL, 0, 1, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 2;
    cfg.batch = 8;
    cfg.lr = 0.05f;
    cfg.seed = 77;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAMW);
    cfg.flip = 1;
    ts_trainer *tr = NULL;
    if (m) CHECK(ts_trainer_create(g_ctx, m, ds, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!tr) goto done;
    CHECK(ts_trainer_run(g_ctx, tr, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    char ck[256], mp[256];
    path_in_tmp(ck, sizeof ck, "run.ckpt");
    path_in_tmp(mp, sizeof mp, "run.tsr");
    CHECK(ts_checkpoint_save(g_ctx, tr, ck) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_save(g_ctx, m, mp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(count_files(".tmp.") == 0, "temporary file left behind");

    /* a checkpoint is a model file */
    ts_model *l = NULL;
    CHECK(ts_model_load(g_ctx, ck, &l) == TS_OK, "checkpoint as model: %s", ts_ctx_error(g_ctx));
    if (l) {
        expect_same_model(m, l, "checkpoint as model");
        expect_same_predictions(m, l, "checkpoint as model");
        ts_model_free(l);
    }
    /* and gives back its configuration */
    ts_train_config got;
    memset(&got, 0, sizeof got);
    l = NULL;
    CHECK(ts_checkpoint_load_model(g_ctx, ck, &l, &got) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (l) {
        expect_same_model(m, l, "checkpoint model");
        CHECK(got.epochs == 2 && got.batch == 8 && got.lr == 0.05f && got.seed == 77 && got.flip == 1 &&
                  got.crop_pad == 0 && got.optim.kind == TS_OPT_ADAMW && got.optim.weight_decay == 0.01f &&
                  got.optim.beta2 == 0.999f && got.schedule == cfg.schedule && got.gamma == cfg.gamma,
              "configuration not restored");
        ts_model_free(l);
    }
    /* a plain model is not a checkpoint */
    l = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_checkpoint_load_model(g_ctx, mp, &l, &got);
    CHECK(st == TS_EFORMAT && l == NULL, "model as checkpoint: %s", ts_status_name(st));
    CHECK(strstr(ts_ctx_error(g_ctx), mp) && strstr(ts_ctx_error(g_ctx), "checkpoint"), "message: %s",
          ts_ctx_error(g_ctx));
    ts_ctx_clear_error(g_ctx);
    st = ts_checkpoint_restore(g_ctx, tr, mp);
    CHECK(st == TS_EFORMAT, "restore from a model: %s", ts_status_name(st));
    CHECK(ts_trainer_epoch(tr) == 2 && ts_trainer_step(tr) == 6, "failed restore changed the trainer");

    /* hostile checkpoints */
    size_t n;
    uint8_t *good = read_bytes(ck, &n);
    if (good) {
        uint8_t *d = malloc(n);
        file_section tran;
        CHECK(find_section(good, n, TAG('T', 'R', 'A', 'N'), &tran), "no TRAN section");
        CHECK(good[8] == 1, "kind byte %u", good[8]);
        for (int i = 0; i < 30; i++) {
            size_t len = (n - 1) * (size_t)i / 29;
            char what[64];
            snprintf(what, sizeof what, "checkpoint truncated at %zu", len);
            expect_ckpt_fails(what, good, len);
        }
        memcpy(d, good, n);
        put_u32(d + tran.off, 9);
        expect_ckpt_fails("TRAN version 9", d, n);
        memcpy(d, good, n);
        put_u32(d + tran.off + 4, 0); /* epochs 0 */
        expect_ckpt_fails("epochs 0", d, n);
        memcpy(d, good, n);
        put_u32(d + tran.header, TAG('T', 'R', 'A', 'X'));
        expect_ckpt_fails("TRAN renamed", d, n);
        /* the restore path on a truncated file */
        path_in_tmp(ck, sizeof ck, "bad.ckpt");
        write_bytes(ck, good, n - 4);
        ts_ctx_clear_error(g_ctx);
        st = ts_checkpoint_restore(g_ctx, tr, ck);
        CHECK(st != TS_OK && strstr(ts_ctx_error(g_ctx), ck), "restore of a truncated checkpoint: %s",
              ts_ctx_error(g_ctx));
        CHECK(ts_trainer_epoch(tr) == 2 && ts_trainer_step(tr) == 6, "failed restore moved the trainer");
        unlink(ck);
        free(d);
        free(good);
    }
    unlink(mp); /* run.ckpt stays for the cases below */
done:
    ts_trainer_free(tr);
    ts_model_free(m);
    free_dataset(ds);
}

/* Loads run.ckpt (written by test_checkpoint_files) as bytes. */
static uint8_t *saved_checkpoint(size_t *n, file_section *tran) {
    char ck[256];
    path_in_tmp(ck, sizeof ck, "run.ckpt");
    uint8_t *good = read_bytes(ck, n);
    if (good) CHECK(find_section(good, *n, TAG('T', 'R', 'A', 'N'), tran), "no TRAN section");
    return good;
}

/* ts_checkpoint_restore must check the TRAN version as ts_checkpoint_load_model does. */
static void test_checkpoint_restore_version(void) {
    size_t n;
    file_section tran;
    uint8_t *good = saved_checkpoint(&n, &tran);
    if (!good) return;
    char ck[256], bad[256];
    path_in_tmp(ck, sizeof ck, "run.ckpt");
    path_in_tmp(bad, sizeof bad, "version9.ckpt");
    put_u32(good + tran.off, 9);
    write_bytes(bad, good, n);
    ts_dataset *ds = tiny_dataset();
    ts_model *m = NULL;
    ts_train_config cfg;
    ts_trainer *tr = NULL;
    CHECK(ts_checkpoint_load_model(g_ctx, ck, &m, &cfg) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (m) CHECK(ts_trainer_create(g_ctx, m, ds, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr) {
        ts_ctx_clear_error(g_ctx);
        ts_status st = ts_checkpoint_restore(g_ctx, tr, bad);
        CHECK(st == TS_EUNSUPPORTED, "restore of TRAN version 9: %s", ts_status_name(st));
        CHECK(strstr(ts_ctx_error(g_ctx), bad) != NULL, "message '%s' does not name the file", ts_ctx_error(g_ctx));
        CHECK(ts_trainer_epoch(tr) == 0 && ts_trainer_step(tr) == 0, "restore of version 9 moved the trainer to %lld",
              (long long)ts_trainer_step(tr));
        /* the real one restores */
        CHECK(ts_checkpoint_restore(g_ctx, tr, ck) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_trainer_epoch(tr) == 2 && ts_trainer_step(tr) == 6, "restored at %lld/%lld",
              (long long)ts_trainer_epoch(tr), (long long)ts_trainer_step(tr));
    }
    /* a trainer made with another batch size or seed cannot resume it */
    ts_trainer_free(tr);
    tr = NULL;
    ts_train_config other = cfg;
    other.batch = 4;
    if (m) CHECK(ts_trainer_create(g_ctx, m, ds, NULL, &other, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr) {
        ts_ctx_clear_error(g_ctx);
        CHECK(ts_checkpoint_restore(g_ctx, tr, ck) == TS_EINVAL, "restore with batch 4: %s", ts_ctx_error(g_ctx));
        CHECK(strstr(ts_ctx_error(g_ctx), ck) != NULL, "message '%s'", ts_ctx_error(g_ctx));
        CHECK(ts_trainer_step(tr) == 0, "failed restore moved the trainer");
    }
    unlink(bad);
    ts_trainer_free(tr);
    ts_model_free(m);
    free_dataset(ds);
    free(good);
}

/* docs/file-format.md: the TRAN section is for checkpoints (kind 1) only. */
static void test_checkpoint_kind(void) {
    size_t n;
    file_section tran;
    uint8_t *good = saved_checkpoint(&n, &tran);
    if (!good) return;
    CHECK(good[8] == 1, "checkpoint kind %u", good[8]);
    good[8] = 0;
    expect_ckpt_fails("kind 0 (model) with a TRAN section", good, n);
    free(good);
}

/* A 200-byte file whose architecture would need 1 GiB of weights is refused before
 * anything is allocated (the TENS section cannot hold them). */
static void test_small_file_big_arch(void) {
    const char *arch = "input shape=1x512x512 classes=1000\nflatten\ndense name=fc out=classes\n";
    uint8_t buf[512];
    size_t n = 0, alen = strlen(arch);
    memcpy(buf, "TSRM", 4);
    put_u32(buf + 4, 1);
    put_u32(buf + 8, 0);
    put_u32(buf + 12, 3);
    n = 16;
    /* ARCH: text, rank 3, dims 1x512x512, classes 1000 */
    size_t arch_len = 4 + alen + 4 + 3 * 8 + 4;
    put_u32(buf + n, 0x48435241u); /* "ARCH" */
    put_u64(buf + n + 4, arch_len);
    n += 12;
    put_u32(buf + n, (uint32_t)alen);
    memcpy(buf + n + 4, arch, alen);
    n += 4 + alen;
    put_u32(buf + n, 3);
    put_u64(buf + n + 4, 1);
    put_u64(buf + n + 12, 512);
    put_u64(buf + n + 20, 512);
    put_u32(buf + n + 28, 1000);
    n += 32;
    put_u32(buf + n, 0x4154454du); /* "META" */
    put_u64(buf + n + 4, 4);
    put_u32(buf + n + 12, 0);
    n += 16;
    put_u32(buf + n, 0x534e4554u); /* "TENS" */
    put_u64(buf + n + 4, 4);
    put_u32(buf + n + 12, 2);
    n += 16;
    expect_load_fails("tiny file, huge architecture", buf, n, TS_EFORMAT);
    CHECK(strstr(ts_ctx_error(g_ctx), "TENS section holds") != NULL, "message: %s", ts_ctx_error(g_ctx));
}

static void test_null_arguments(void) {
    ts_model *l = NULL;
    CHECK(ts_model_load(g_ctx, NULL, &l) == TS_EINVAL, "NULL path");
    CHECK(ts_model_save(g_ctx, NULL, "x") == TS_EINVAL, "NULL model");
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_round_trip);
    RUN(test_round_trip_overrides);
    RUN(test_save_atomic_failure);
    RUN(test_hostile);
    RUN(test_checkpoint_files);
    RUN(test_checkpoint_restore_version);
    RUN(test_checkpoint_kind);
    RUN(test_small_file_big_arch);
    RUN(test_null_arguments);
    remove_tmp_files();
    rmdir(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_model_file");
}
