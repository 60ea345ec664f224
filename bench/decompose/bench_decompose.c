/* bench_decompose: the evaluation harness for tessera's decomposition into per-class
 * modules, set beside the figures of Pan & Rajan, ICSE'22 ("Decomposing convolutional
 * neural networks into reusable and replaceable modules"; see
 * /work/shared/reference/modularization.md, sections 2 and 10, and bench/decompose/README.md).
 *
 *   bench_decompose cost    MODEL.tsr DATA
 *   bench_decompose intra   MODEL.tsr DATA ARCH EPOCHS NPAIRS SEED
 *   bench_decompose inter   MODEL_A.tsr DATA_A MODEL_B.tsr DATA_B CLASSES_A CLASSES_B
 *   bench_decompose replace WEAK.tsr STRONG.tsr DATA CLASS
 *
 * Uses only the public API (include/tessera.h). Build:
 *   gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Iinclude bench/decompose/bench_decompose.c \
 *       build/libtessera.a -ldnnl -lprotobuf-c -lz -lm -fopenmp -o build/bench_decompose
 *
 * Environment:
 *   BENCH_THREADS=2        kernel threads (ts_ctx_set_threads)
 *   BENCH_DATA_DIR=DIR     data_dir for ts_dataset_load / ts_composed_dataset (else the
 *                          model's "data.dir" metadata, else $TESSERA_DATA and the standard places)
 *   BENCH_TP_IMAGES=2000   images per timed throughput pass (cost)
 *   BENCH_TP_PASSES=5      timed passes; the median is reported (cost)
 *   BENCH_INTER_EPOCHS=3   epochs of the from-scratch reference model (inter)
 *   BENCH_RETUNE_SAMPLES=500  per-class training samples for ts_module_retune (inter, replace)
 *   BENCH_SMOKE=1          cap every training set at 1000 and test set at 500 samples
 *                          (a leak/plumbing check; the figures are then meaningless)
 *
 * Everything printed is deterministic for a given thread count except the times and
 * throughputs. Errors: one line on stderr with ts_ctx_error, exit status 1 (2: usage). */
#include "tessera.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- plumbing */

#define CHECK(expr)                    \
    do {                               \
        if ((st = (expr)) != TS_OK) goto done; \
    } while (0)

static ts_ctx *g_ctx;
static int g_smoke;

static ts_status fail(ts_status st, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ts_ctx_set_error(g_ctx, st, "%s", buf);
}

static long env_long(const char *name, long def, long lo, long hi) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi) {
        fprintf(stderr, "bench_decompose: %s=%s ignored (expected %ld..%ld)\n", name, s, lo, hi);
        return def;
    }
    return v;
}

typedef struct clk {
    double wall, cpu;
} clk;

static clk clk_now(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    clk c = {(double)a.tv_sec + 1e-9 * (double)a.tv_nsec, (double)b.tv_sec + 1e-9 * (double)b.tv_nsec};
    return c;
}

static clk clk_since(clk t0) {
    clk t = clk_now();
    t.wall -= t0.wall;
    t.cpu -= t0.cpu;
    return t;
}

static int64_t model_macs(const ts_model *m) {
    int64_t t = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (ts_model_layer(m, i, &li) == TS_OK) t += li.macs;
    }
    return t;
}

static const char *data_dir_for(const ts_model *m) {
    const char *d = getenv("BENCH_DATA_DIR");
    if (d && *d) return d;
    return m ? ts_model_get_meta(m, "data.dir") : NULL;
}

/* Class c's name from the model's "classes" metadata (one per line), into buf. */
static const char *class_name(const ts_model *m, int c, char *buf, size_t n) {
    const char *p = ts_model_get_meta(m, "classes");
    for (int i = 0; p && i < c; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p) {
        snprintf(buf, n, "%d", c);
        return buf;
    }
    size_t len = strcspn(p, "\n");
    if (len >= n) len = n - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return buf;
}

static ts_status parse_int_list(const char *s, int **out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *v = malloc(sizeof *v * (size_t)cap);
    if (!v) return fail(TS_ENOMEM, "out of memory");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long c = strtol(p, &end, 10);
        if (end == p || errno || c < 0 || c > 1000000 || (*end && *end != ',')) {
            free(v);
            return fail(TS_EINVAL, "'%s': expected class indices like 0,7", s);
        }
        v[(*n)++] = (int)c;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        free(v);
        return fail(TS_EINVAL, "'%s': empty class list", s);
    }
    *out = v;
    return TS_OK;
}

/* --------------------------------------------------------------- datasets */

/* Loads a split; in smoke mode keeps only the first samples. */
static ts_status load_split(const char *spec, ts_split split, const char *dir, ts_dataset **out) {
    ts_status st = ts_dataset_load(g_ctx, spec, split, dir, out);
    if (st || !g_smoke) return st;
    int64_t cap = split == TS_SPLIT_TRAIN ? 1000 : 500;
    if ((*out)->count <= cap) return TS_OK;
    int64_t *idx = malloc(sizeof *idx * (size_t)cap);
    if (!idx) return fail(TS_ENOMEM, "out of memory");
    for (int64_t i = 0; i < cap; i++) idx[i] = i;
    ts_dataset *cut = NULL;
    st = ts_dataset_subset(g_ctx, *out, idx, cap, &cut);
    free(idx);
    ts_dataset_free(*out);
    *out = cut;
    return st;
}

/* The samples of ds whose label is one of cls[0..n) (original order), at most `limit`
 * per class (0: all). relabel: label becomes the position in cls and the dataset has
 * n classes (named after the originals); else labels and classes are kept. */
static ts_status class_subset(const ts_dataset *ds, const int *cls, int n, int64_t limit, int relabel,
                              ts_dataset **out) {
    *out = NULL;
    int64_t *idx = malloc(sizeof *idx * (size_t)(ds->count ? ds->count : 1));
    int64_t *taken = calloc((size_t)n, sizeof *taken);
    int32_t *pos = malloc(sizeof *pos * (size_t)(ds->count ? ds->count : 1));
    ts_status st = TS_OK;
    if (!idx || !taken || !pos) {
        st = fail(TS_ENOMEM, "out of memory");
        goto done;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < ds->count; i++) {
        int p = -1;
        for (int j = 0; j < n && p < 0; j++)
            if (ds->labels[i] == cls[j]) p = j;
        if (p < 0 || (limit > 0 && taken[p] >= limit)) continue;
        taken[p]++;
        pos[m] = p;
        idx[m++] = i;
    }
    if (m == 0) {
        st = fail(TS_EINVAL, "dataset %s has no samples of the requested classes", ds->name);
        goto done;
    }
    ts_dataset *r = NULL;
    CHECK(ts_dataset_subset(g_ctx, ds, idx, m, &r));
    if (relabel) {
        /* dataset arrays are plain malloc blocks (docs/data.md): rebuild the names for n classes */
        char **names = calloc((size_t)n, sizeof *names);
        if (!names) {
            ts_dataset_free(r);
            st = fail(TS_ENOMEM, "out of memory");
            goto done;
        }
        for (int j = 0; j < n; j++) {
            const char *s = r->class_names && cls[j] < r->classes ? r->class_names[cls[j]] : NULL;
            names[j] = strdup(s ? s : "");
        }
        for (int j = 0; r->class_names && j < r->classes; j++) free(r->class_names[j]);
        free(r->class_names);
        r->class_names = names;
        r->classes = n;
        for (int64_t i = 0; i < m; i++) r->labels[i] = pos[i];
        for (int j = 0; j < n; j++)
            if (!names[j]) {
                ts_dataset_free(r);
                st = fail(TS_ENOMEM, "out of memory");
                goto done;
            }
    }
    *out = r;
done:
    free(idx);
    free(taken);
    free(pos);
    return st;
}

/* Samples of ds with label `label` (pos) and the rest (neg), labels kept. */
static ts_status split_by_label(const ts_dataset *ds, int label, ts_dataset **pos, ts_dataset **neg) {
    *pos = *neg = NULL;
    int64_t *idx = malloc(sizeof *idx * (size_t)(ds->count ? ds->count : 1));
    if (!idx) return fail(TS_ENOMEM, "out of memory");
    int64_t np = 0, nn = 0;
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->labels[i] == label) idx[np++] = i;
    ts_status st = np ? ts_dataset_subset(g_ctx, ds, idx, np, pos)
                      : fail(TS_EINVAL, "no training sample of class %d for re-tuning", label);
    for (int64_t i = 0; !st && i < ds->count; i++)
        if (ds->labels[i] != label) idx[nn++] = i;
    if (!st) st = nn ? ts_dataset_subset(g_ctx, ds, idx, nn, neg) : fail(TS_EINVAL, "no negative for re-tuning");
    free(idx);
    if (st) {
        ts_dataset_free(*pos);
        *pos = NULL;
    }
    return st;
}

/* ------------------------------------------------------------- measuring */

typedef struct eval {
    double top1, top5;
    int classes;
    double recall[16], precision[16]; /* first 16 classes */
} eval;

static ts_status evaluate(ts_model *m, const ts_dataset *ds, eval *e) {
    ts_eval_report r;
    ts_status st = ts_evaluate(g_ctx, m, ds, 256, &r);
    if (st) return st;
    memset(e, 0, sizeof *e);
    e->top1 = 100.0 * r.top1;
    e->top5 = 100.0 * r.top5;
    e->classes = r.classes;
    for (int c = 0; c < r.classes && c < 16; c++) {
        e->recall[c] = 100.0 * ts_eval_recall(&r, c);
        e->precision[c] = 100.0 * ts_eval_precision(&r, c);
    }
    ts_eval_report_free(&r);
    return TS_OK;
}

/* Top-1 of the original model restricted to the logits of classes a and b, on a test
 * set relabelled a -> 0, b -> 1 (what the origin itself knows about the pair). */
static ts_status pair_accuracy_of_origin(ts_model *m, const ts_dataset *ds, int a, int b, double *acc) {
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(g_ctx, m, &pp);
    if (st) return st;
    const ts_shape in = ts_model_input_shape(m);
    const size_t in_sz = (size_t)ts_shape_numel(&in);
    const int k = ts_model_classes(m), B = 256;
    float *x = malloc(sizeof *x * (size_t)B * in_sz), *lg = malloc(sizeof *lg * (size_t)B * (size_t)k);
    if (!x || !lg) {
        free(x);
        free(lg);
        return fail(TS_ENOMEM, "out of memory");
    }
    int64_t hit = 0;
    for (int64_t s = 0; s < ds->count && !st; s += B) {
        int n = (int)(ds->count - s < B ? ds->count - s : B);
        ts_preprocess_images(&pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        if ((st = ts_model_predict(g_ctx, m, x, n, lg))) break;
        for (int i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * k;
            int pred = row[b] > row[a] ? 1 : 0; /* ties to the lower index, as ts_evaluate */
            hit += pred == ds->labels[s + i];
        }
    }
    free(x);
    free(lg);
    *acc = ds->count ? 100.0 * (double)hit / (double)ds->count : 0;
    return st;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Inference throughput (images/s): the first `images` test images, preprocessed once,
 * run through ts_model_predict in batches of 256; one untimed warm-up pass, then
 * `passes` timed passes; the median. */
static ts_status throughput(ts_model *m, const ts_dataset *ds, double *ips) {
    const int64_t images_req = env_long("BENCH_TP_IMAGES", 2000, 1, 1000000);
    const int passes = (int)env_long("BENCH_TP_PASSES", 5, 1, 101);
    const int64_t n = ds->count < images_req ? ds->count : images_req;
    const int B = 256, k = ts_model_classes(m);
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(g_ctx, m, &pp);
    if (st) return st;
    const ts_shape in = ts_model_input_shape(m);
    const size_t in_sz = (size_t)ts_shape_numel(&in);
    float *x = malloc(sizeof *x * (size_t)n * in_sz), *lg = malloc(sizeof *lg * (size_t)B * (size_t)k);
    double *t = malloc(sizeof *t * (size_t)passes);
    if (!x || !lg || !t) {
        st = fail(TS_ENOMEM, "out of memory");
        goto done;
    }
    ts_preprocess_images(&pp, ds->images, n, ds->channels, ds->height, ds->width, x);
    for (int p = -1; p < passes; p++) {
        clk t0 = clk_now();
        for (int64_t s = 0; s < n; s += B) {
            int b = (int)(n - s < B ? n - s : B);
            CHECK(ts_model_predict(g_ctx, m, x + (size_t)s * in_sz, b, lg));
        }
        if (p >= 0) t[p] = (double)n / clk_since(t0).wall;
    }
    qsort(t, (size_t)passes, sizeof *t, cmp_double);
    *ips = passes % 2 ? t[passes / 2] : 0.5 * (t[passes / 2 - 1] + t[passes / 2]);
done:
    free(x);
    free(lg);
    free(t);
    return st;
}

/* ----------------------------------------------------------- decomposing */

typedef struct decomp {
    ts_module **mods;
    int n;
    clk time;
    int64_t batches;      /* inference batches of the scan */
    int64_t scanned_max;  /* samples run through the model: at most batches x batch */
    int64_t drawn;        /* training samples drawn (including skipped ones) */
} decomp;

typedef struct scan_count {
    int64_t calls, prev, last;
} scan_count;

/* Called after every inference batch with the samples drawn so far, then once more
 * with (total, total) when the scan is over. */
static int count_cb(void *user, int64_t done, int64_t total) {
    scan_count *s = user;
    (void)total;
    s->calls++;
    s->prev = s->last;
    s->last = done;
    return 0;
}

/* ts_decompose with the default configuration; classes NULL/0 = all. The progress
 * callback runs once per inference batch and once at the end, which gives the
 * number of batches of the scan. */
static ts_status decompose(const ts_model *m, const char *origin, const ts_dataset *train, const int *classes, int n,
                           decomp *d) {
    memset(d, 0, sizeof *d);
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    scan_count sc = {0, 0, 0};
    clk t0 = clk_now();
    ts_status st = ts_decompose(g_ctx, m, train, &cfg, classes, n, count_cb, &sc, &d->mods, &d->n);
    d->time = clk_since(t0);
    if (st) return st;
    d->batches = sc.calls > 0 ? sc.calls - 1 : 0;
    const int B = cfg.batch > 256 ? 256 : cfg.batch;
    d->scanned_max = d->batches * B;
    if (d->scanned_max > train->count) d->scanned_max = train->count;
    d->drawn = sc.prev; /* the last batch's position; the final call reports the total */
    for (int i = 0; i < d->n && !st; i++) st = ts_module_set_origin(g_ctx, d->mods[i], origin);
    return st;
}

static ts_status compose(ts_module *const *mods, int k, double max_macs, ts_model **out, clk *time) {
    ts_compose_config cc;
    ts_compose_config_default(&cc);
    if (max_macs > 0) cc.max_macs = max_macs;
    clk t0 = clk_now();
    ts_status st = ts_compose(g_ctx, mods, k, &cc, out);
    if (time) *time = clk_since(t0);
    return st;
}

/* ------------------------------------------------------ training (scratch) */

typedef struct train_log {
    const char *indent;
    double last_acc, last_loss;
} train_log;

static int on_epoch(const ts_epoch_report *r, void *user) {
    train_log *lg = user;
    lg->last_acc = r->train_acc;
    lg->last_loss = r->train_loss;
    printf("%sscratch epoch %lld: train loss %.4f acc %.2f%% | %.1fs\n", lg->indent, (long long)r->epoch + 1,
           r->train_loss, 100 * r->train_acc, r->seconds);
    fflush(stdout);
    return 0;
}

/* Adam lr 1e-3 constant for the demo CNN (and LeNet-5); SGD lr 0.1, momentum 0.9,
 * cosine schedule for everything else (the ResNets, VGG, All-CNN-C); batch 128. */
static ts_train_config scratch_config(const char *arch, int epochs, uint64_t seed) {
    ts_train_config tc;
    ts_train_config_default(&tc);
    tc.epochs = epochs;
    tc.batch = 128;
    tc.seed = seed;
    if (!strcmp(arch, "demo") || !strcmp(arch, "lenet5")) {
        ts_optim_config_default(&tc.optim, TS_OPT_ADAM);
        tc.lr = 1e-3f;
        tc.schedule = TS_SCHED_CONSTANT;
    } else {
        ts_optim_config_default(&tc.optim, TS_OPT_SGD);
        tc.optim.momentum = 0.9f;
        tc.lr = 0.1f;
        tc.schedule = TS_SCHED_COSINE;
    }
    return tc;
}

static const char *config_desc(const ts_train_config *tc, char *buf, size_t n) {
    snprintf(buf, n, "%s lr %g%s, %s schedule, batch %d, %d epochs, seed %llu",
             tc->optim.kind == TS_OPT_ADAM ? "Adam" : tc->optim.kind == TS_OPT_ADAMW ? "AdamW" : "SGD", (double)tc->lr,
             tc->optim.kind == TS_OPT_SGD ? " momentum 0.9" : "",
             tc->schedule == TS_SCHED_COSINE ? "cosine" : tc->schedule == TS_SCHED_CONSTANT ? "constant" : "other",
             tc->batch, tc->epochs, (unsigned long long)tc->seed);
    return buf;
}

/* A new `arch` model (zoo name or .arch file) for train's images and `classes`
 * classes, trained from scratch. */
static ts_status train_scratch(const char *arch, const ts_dataset *train, int classes, const ts_train_config *tc,
                               const char *indent, ts_model **out, clk *time) {
    *out = NULL;
    ts_model *m = NULL;
    ts_trainer *tr = NULL;
    ts_shape in = {3, {train->channels, train->height, train->width}};
    clk t0 = clk_now();
    const char *text = ts_zoo_arch(arch);
    ts_status st = text ? ts_model_from_arch(g_ctx, text, arch, &in, classes, tc->seed, &m)
                        : ts_model_from_arch_file(g_ctx, arch, &in, classes, tc->seed, &m);
    if (st) goto done;
    CHECK(ts_model_set_meta(g_ctx, m, "arch", arch));
    CHECK(ts_trainer_create(g_ctx, m, train, NULL, tc, &tr));
    train_log lg = {indent, 0, 0};
    ts_train_hooks hooks = {NULL, on_epoch, &lg};
    CHECK(ts_trainer_run(g_ctx, tr, &hooks));
    *time = clk_since(t0);
    *out = m;
    m = NULL;
done:
    ts_trainer_free(tr);
    ts_model_free(m);
    return st;
}

/* ------------------------------------------------------------------ cost */

static int cmd_cost(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bench_decompose cost MODEL.tsr DATA\n");
        return 2;
    }
    const char *mpath = argv[0], *spec = argv[1];
    ts_status st = TS_OK;
    ts_model *m = NULL, *cd = NULL, *ce = NULL;
    ts_dataset *train = NULL, *test = NULL;
    decomp d = {0};
    eval eo, ed, ee;
    CHECK(ts_model_load(g_ctx, mpath, &m));
    const char *dir = data_dir_for(m);
    CHECK(load_split(spec, TS_SPLIT_TRAIN, dir, &train));
    CHECK(load_split(spec, TS_SPLIT_TEST, dir, &test));
    const int K = ts_model_classes(m);

    CHECK(decompose(m, mpath, train, NULL, 0, &d));
    clk tcd, tce;
    CHECK(compose(d.mods, d.n, 0, &cd, &tcd));
    CHECK(compose(d.mods, d.n, 10.0 > d.n ? 10.0 : (double)d.n, &ce, &tce));
    CHECK(evaluate(m, test, &eo));
    CHECK(evaluate(cd, test, &ed));
    CHECK(evaluate(ce, test, &ee));
    double tpo, tpd, tpe;
    CHECK(throughput(m, test, &tpo));
    CHECK(throughput(cd, test, &tpd));
    CHECK(throughput(ce, test, &tpe));
    const int64_t mo = model_macs(m), md = model_macs(cd), me = model_macs(ce);

    const char *arch = ts_model_get_meta(m, "arch");
    printf("==== decomposition cost: %s (%s) on %s, test split %lld images ====\n", mpath, arch ? arch : "?", spec,
           (long long)test->count);
    printf("%-44s %-30s %s\n", "", "ours", "paper (Pan & Rajan ICSE'22)");
    printf("%-44s %6.2f / %6.2f\n", "original top-1 / top-5 (%)", eo.top1, eo.top5);
    printf("%-44s %6.2f / %6.2f   (%+.2f / %+.2f)   avg -1.77 / -0.85 (CI+TI+MC-BLN)\n",
           "composed, default (max_macs 1.5) top-1/top-5", ed.top1, ed.top5, ed.top1 - eo.top1, ed.top5 - eo.top5);
    printf("%-44s %6.2f / %6.2f   (%+.2f / %+.2f)   ResNet-20 CIFAR-10 87.1 -> 87.0 top-1\n",
           "composed, exact copies (max_macs 10)", ee.top1, ee.top5, ee.top1 - eo.top1, ee.top5 - eo.top5);
    printf("%-44s %.3fM / %.3fM (%.2fx) / %.3fM (%.2fx)   ~%dx (every module a full network)\n",
           "MACs/img: original / default / exact", mo / 1e6, md / 1e6, (double)md / (double)mo, me / 1e6,
           (double)me / (double)mo, K);
    printf("%-44s %.0f / %.0f (%.2fx) / %.0f (%.2fx)   not reported\n", "throughput img/s: original / default / exact",
           tpo, tpd, tpd / tpo, tpe, tpe / tpo);
    printf("%-44s %.2fs wall, %.2fs CPU (%lld batches, <= %lld images scanned, %lld drawn)\n",
           "decomposition time (ts_decompose, default)", d.time.wall, d.time.cpu, (long long)d.batches,
           (long long)d.scanned_max, (long long)d.drawn);
    printf("%-44s %.3fs / %.3fs wall\n", "compose time: default / exact", tcd.wall, tce.wall);
    /* per-module summary */
    double ji = 0, jmin = 1e9, jmax = -1, conv = 0, unit = 0;
    printf("  %-5s %-14s %5s %5s %9s %9s %7s %9s\n", "class", "name", "pos", "neg", "units%", "conv-pos%", "JI",
           "threshold");
    for (int i = 0; i < d.n; i++) {
        ts_module_info in;
        if (ts_module_info_get(d.mods[i], &in)) {
            st = fail(TS_EINVAL, "ts_module_info_get failed for module %d", i);
            goto done;
        }
        double u = in.units ? 100.0 * in.units_kept / in.units : 100.0;
        double cv = in.conv_units ? 100.0 * in.conv_units_kept / in.conv_units : 100.0;
        printf("  %-5d %-14.14s %5d %5d %8.2f%% %8.2f%% %7.4f %9.4f\n", in.class_index, in.class_name, in.positives,
               in.negatives, u, cv, in.jaccard, (double)in.threshold);
        ji += in.jaccard;
        conv += cv;
        unit += u;
        if (in.jaccard < jmin) jmin = in.jaccard;
        if (in.jaccard > jmax) jmax = in.jaccard;
    }
    if (d.n) {
        printf("%-44s %.4f (min %.4f, max %.4f)   paper avg 0.63 (+BLN)\n", "Jaccard index module vs model, mean",
               ji / d.n, jmin, jmax);
        printf("%-44s %.2f%% / %.2f%%\n", "ReLU units / conv positions kept, mean", unit / d.n, conv / d.n);
    }
    printf("per-class recall original -> composed default -> exact (%%):");
    for (int c = 0; c < K && c < 16; c++) printf(" %d:%.1f/%.1f/%.1f", c, eo.recall[c], ed.recall[c], ee.recall[c]);
    printf("\n");
done:
    ts_modules_free(d.mods, d.n);
    ts_model_free(m);
    ts_model_free(cd);
    ts_model_free(ce);
    ts_dataset_free(train);
    ts_dataset_free(test);
    return st ? 1 : 0;
}

/* ----------------------------------------------------------------- intra */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_pair(const void *a, const void *b) {
    const int *x = a, *y = b;
    return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

static int cmd_intra(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_decompose intra MODEL.tsr DATA ARCH EPOCHS NPAIRS SEED\n");
        return 2;
    }
    const char *mpath = argv[0], *spec = argv[1], *arch = argv[2];
    char *end;
    long epochs = strtol(argv[3], &end, 10);
    if (*end || epochs < 1 || epochs > 1000) return fprintf(stderr, "intra: EPOCHS '%s' out of 1..1000\n", argv[3]), 2;
    long npairs = strtol(argv[4], &end, 10);
    if (*end || npairs < 0 || npairs > 100000) return fprintf(stderr, "intra: NPAIRS '%s' invalid\n", argv[4]), 2;
    unsigned long long seed = strtoull(argv[5], &end, 10);
    if (*end || !*argv[5]) return fprintf(stderr, "intra: SEED '%s' invalid\n", argv[5]), 2;
    if (!ts_zoo_arch(arch) && !strstr(arch, ".arch"))
        return fprintf(stderr, "intra: ARCH '%s' is neither a zoo name nor an .arch file\n", arch), 2;

    ts_status st = TS_OK;
    ts_model *m = NULL;
    ts_dataset *train = NULL, *test = NULL;
    decomp d = {0};
    int *pairs = NULL;
    CHECK(ts_model_load(g_ctx, mpath, &m));
    const char *dir = data_dir_for(m);
    CHECK(load_split(spec, TS_SPLIT_TRAIN, dir, &train));
    CHECK(load_split(spec, TS_SPLIT_TEST, dir, &test));
    const int K = ts_model_classes(m);
    const int total = K * (K - 1) / 2;
    if (total < 1) {
        st = fail(TS_EINVAL, "%s has %d classes: no pairs", mpath, K);
        goto done;
    }
    if (!(pairs = malloc(sizeof *pairs * 2 * (size_t)total))) {
        st = fail(TS_ENOMEM, "out of memory");
        goto done;
    }
    int np = 0;
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) {
            pairs[2 * np] = a;
            pairs[2 * np + 1] = b;
            np++;
        }
    if (npairs > 0 && npairs < total) {
        uint64_t s = seed;
        for (int i = total - 1; i > 0; i--) {
            int j = (int)(splitmix64(&s) % (uint64_t)(i + 1));
            int t0 = pairs[2 * i], t1 = pairs[2 * i + 1];
            pairs[2 * i] = pairs[2 * j];
            pairs[2 * i + 1] = pairs[2 * j + 1];
            pairs[2 * j] = t0;
            pairs[2 * j + 1] = t1;
        }
        np = (int)npairs;
        qsort(pairs, (size_t)np, 2 * sizeof *pairs, cmp_pair);
    }
    ts_train_config tc = scratch_config(arch, (int)epochs, seed);
    char desc[160];
    printf("==== intra-dataset reuse: %s on %s, %d of %d class pairs (seed %llu) vs %s from scratch ====\n", mpath,
           spec, np, total, seed, arch);
    printf("scratch: %s, on the pair's training samples relabelled 0/1\n", config_desc(&tc, desc, sizeof desc));
    fflush(stdout);

    /* every pair is decomposed on its own (ts_decompose with its two classes), as a
     * user building that one classifier would; the scan draws positives only for the
     * requested classes and negatives of every class */
    const int64_t fwd_origin = model_macs(m);
    fflush(stdout);

    double sum_d = 0, sum_e = 0, sum_ee = 0, sum_c = 0, sum_s = 0, sum_o = 0;
    double sum_rcpu = 0, sum_scpu = 0, sum_rm = 0, sum_sm = 0;
    char line[8192];
    size_t lo = 0;
    lo += (size_t)snprintf(line + lo, sizeof line - lo, "%-28s %8s %8s %8s %8s %8s %9s %9s %10s %10s\n", "pair",
                           "orig2", "reuse", "reuse-ex", "scratch", "diff", "reuseCPU", "scrCPU", "reuseMACs",
                           "scrMACs");
    for (int p = 0; p < np; p++) {
        const int cls[2] = {pairs[2 * p], pairs[2 * p + 1]};
        ts_dataset *tr2 = NULL, *te2 = NULL;
        ts_model *cm = NULL, *cme = NULL, *sm = NULL;
        clk tc2 = {0, 0}, ts2 = {0, 0};
        eval ec, ee, es;
        double orig2 = 0;
        char na[32], nb[32];
        printf("-- pair %d/%d: %d (%s) vs %d (%s)\n", p + 1, np, cls[0], class_name(m, cls[0], na, sizeof na), cls[1],
               class_name(m, cls[1], nb, sizeof nb));
        fflush(stdout);
        st = decompose(m, mpath, train, cls, 2, &d);
        if (!st) st = class_subset(train, cls, 2, 0, 1, &tr2);
        if (!st) st = class_subset(test, cls, 2, 0, 1, &te2);
        if (!st) st = compose(d.mods, 2, 0, &cm, &tc2);
        if (!st) st = compose(d.mods, 2, 2.0, &cme, NULL);
        if (!st) st = evaluate(cm, te2, &ec);
        if (!st) st = evaluate(cme, te2, &ee);
        if (!st) st = pair_accuracy_of_origin(m, te2, cls[0], cls[1], &orig2);
        if (!st) st = train_scratch(arch, tr2, 2, &tc, "   ", &sm, &ts2);
        if (!st) st = evaluate(sm, te2, &es);
        if (!st) {
            double rcpu = d.time.cpu + tc2.cpu;
            double reuse_macs = (double)fwd_origin * (double)d.scanned_max;
            double smacs = 3.0 * (double)model_macs(sm) * (double)tr2->count * (double)epochs;
            char pn[64];
            snprintf(pn, sizeof pn, "%d-%d %.10s/%.10s", cls[0], cls[1], na, nb);
            printf("   %s: composed %.2f%% (exact %.2f%%), origin 2-logit %.2f%%, scratch %.2f%% -> diff %+.2f; "
                   "CPU s reuse %.2f vs scratch %.1f (wall %.2f vs %.1f); decomposition scanned <= %lld images\n",
                   pn, ec.top1, ee.top1, orig2, es.top1, ec.top1 - es.top1, rcpu, ts2.cpu, d.time.wall + tc2.wall,
                   ts2.wall, (long long)d.scanned_max);
            fflush(stdout);
            if (lo < sizeof line)
                lo += (size_t)snprintf(line + lo, sizeof line - lo,
                                       "%-28s %7.2f%% %7.2f%% %7.2f%% %7.2f%% %+8.2f %9.2f %9.1f %10.3g %10.3g\n", pn,
                                       orig2, ec.top1, ee.top1, es.top1, ec.top1 - es.top1, rcpu, ts2.cpu, reuse_macs,
                                       smacs);
            sum_d += ec.top1 - es.top1;
            sum_e += ee.top1 - es.top1;
            sum_ee += ee.top1;
            sum_c += ec.top1;
            sum_s += es.top1;
            sum_o += orig2;
            sum_rcpu += rcpu;
            sum_scpu += ts2.cpu;
            sum_rm += reuse_macs;
            sum_sm += smacs;
        }
        ts_dataset_free(tr2);
        ts_dataset_free(te2);
        ts_model_free(cm);
        ts_model_free(cme);
        ts_model_free(sm);
        ts_modules_free(d.mods, d.n);
        d.mods = NULL;
        d.n = 0;
        if (st) goto done;
    }
    printf("==== intra-dataset reuse summary: %s (%s) on %s, scratch %s, %ld epochs ====\n", mpath,
           ts_model_get_meta(m, "arch") ? ts_model_get_meta(m, "arch") : "?", spec, arch, epochs);
    fputs(line, stdout);
    printf("%-28s %7.2f%% %7.2f%% %7.2f%% %7.2f%% %+8.2f %9.2f %9.1f %10.3g %10.3g\n", "mean", sum_o / np, sum_c / np,
           sum_ee / np, sum_s / np, sum_d / np, sum_rcpu / np, sum_scpu / np, sum_rm / np, sum_sm / np);
    printf("mean diff reuse - scratch: %+.2f points (default compose), %+.2f (exact copies)   "
           "paper: +2.5 overall, CIFAR-10 +6.6, CIFAR-100 -0.67, ImageNet-200 +1.5 (FSE'20 dense, FMNIST: +0.00)\n",
           sum_d / np, sum_e / np);
    printf("cost per pair: reuse %.2f CPU-s (%.3g MACs) vs scratch %.1f CPU-s (%.3g MACs): scratch/reuse %.1fx CPU, "
           "%.1fx MACs   paper: ~37x less CO2e for reuse\n",
           sum_rcpu / np, sum_rm / np, sum_scpu / np, sum_sm / np, sum_scpu / sum_rcpu, sum_sm / sum_rm);
done:
    free(pairs);
    ts_modules_free(d.mods, d.n);
    ts_model_free(m);
    ts_dataset_free(train);
    ts_dataset_free(test);
    return st ? 1 : 0;
}

/* ----------------------------------------------------------------- inter */

/* Cross-check of ts_composed_dataset: the same samples built from the two datasets
 * given on the command line. */
static ts_status crosscheck(const ts_dataset *got, const ts_dataset *const *src, const int *cls, int k,
                            int *identical) {
    *identical = 0;
    int64_t total = 0;
    for (int j = 0; j < k; j++)
        for (int64_t i = 0; i < src[j]->count; i++) total += src[j]->labels[i] == cls[j];
    if (total != got->count) {
        printf("   cross-check: ts_composed_dataset has %lld images, the given datasets %lld\n", (long long)got->count,
               (long long)total);
        return TS_OK;
    }
    const size_t per = (size_t)got->channels * got->height * got->width;
    int64_t at = 0;
    for (int j = 0; j < k; j++) {
        const ts_dataset *s = src[j];
        if ((size_t)s->channels * s->height * s->width != per) {
            printf("   cross-check: dataset %d image size differs\n", j);
            return TS_OK;
        }
        for (int64_t i = 0; i < s->count; i++) {
            if (s->labels[i] != cls[j]) continue;
            if (got->labels[at] != j || memcmp(got->images + (size_t)at * per, s->images + (size_t)i * per, per)) {
                printf("   cross-check: sample %lld differs (label %d, expected %d)\n", (long long)at, got->labels[at],
                       j);
                return TS_OK;
            }
            at++;
        }
    }
    *identical = 1;
    return TS_OK;
}

static void print_recalls(const char *what, const ts_model *names, const eval *e, int k) {
    printf("   %-34s top-1 %6.2f%%  recall:", what, e->top1);
    for (int c = 0; c < k && c < 16; c++) {
        char nb[32];
        printf(" %s %.1f", class_name(names, c, nb, sizeof nb), e->recall[c]);
    }
    printf("\n");
}

static ts_status retune_modules(ts_module **mods, int k, const ts_dataset *tr500, const int *labels) {
    ts_status st = TS_OK;
    for (int j = 0; j < k && !st; j++) {
        ts_dataset *pos = NULL, *neg = NULL;
        st = split_by_label(tr500, labels ? labels[j] : j, &pos, &neg);
        if (!st) st = ts_module_retune(g_ctx, mods[j], pos, neg, 256);
        ts_dataset_free(pos);
        ts_dataset_free(neg);
    }
    return st;
}

static int cmd_inter(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_decompose inter MODEL_A.tsr DATA_A MODEL_B.tsr DATA_B CLASSES_A CLASSES_B\n");
        return 2;
    }
    const char *pa = argv[0], *sa = argv[1], *pb = argv[2], *sb = argv[3];
    ts_status st = TS_OK;
    ts_model *ma = NULL, *mb = NULL, *c0 = NULL, *c1 = NULL, *sm = NULL;
    ts_dataset *tra = NULL, *trb = NULL, *tea = NULL, *teb = NULL, *test = NULL, *tr500 = NULL, *trall = NULL;
    int *ca = NULL, *cb = NULL, na = 0, nb = 0, k = 0;
    decomp da = {0}, db = {0};
    ts_module **mods = NULL;
    int *cls = NULL;
    const ts_dataset **src = NULL;
    CHECK(parse_int_list(argv[4], &ca, &na));
    CHECK(parse_int_list(argv[5], &cb, &nb));
    CHECK(ts_model_load(g_ctx, pa, &ma));
    CHECK(ts_model_load(g_ctx, pb, &mb));
    CHECK(load_split(sa, TS_SPLIT_TRAIN, data_dir_for(ma), &tra));
    CHECK(load_split(sb, TS_SPLIT_TRAIN, data_dir_for(mb), &trb));
    CHECK(load_split(sa, TS_SPLIT_TEST, data_dir_for(ma), &tea));
    CHECK(load_split(sb, TS_SPLIT_TEST, data_dir_for(mb), &teb));
    const char *cdir = getenv("BENCH_DATA_DIR");
    if (!cdir || !*cdir) cdir = ts_model_get_meta(mb, "data.dir");
    if (!cdir) cdir = ts_model_get_meta(ma, "data.dir");
    const long rsamples = env_long("BENCH_RETUNE_SAMPLES", 500, 1, 1000000);
    const int epochs = (int)env_long("BENCH_INTER_EPOCHS", 3, 1, 1000);

    CHECK(decompose(ma, pa, tra, ca, na, &da));
    CHECK(decompose(mb, pb, trb, cb, nb, &db));
    k = na + nb;
    mods = calloc((size_t)k, sizeof *mods);
    cls = malloc(sizeof *cls * (size_t)k);
    src = malloc(sizeof *src * (size_t)k);
    if (!mods || !cls || !src) {
        st = fail(TS_ENOMEM, "out of memory");
        goto done;
    }
    for (int j = 0; j < na; j++) {
        mods[j] = da.mods[j];
        cls[j] = ca[j];
        src[j] = tea;
    }
    for (int j = 0; j < nb; j++) {
        mods[na + j] = db.mods[j];
        cls[na + j] = cb[j];
        src[na + j] = teb;
    }
    CHECK(compose(mods, k, 0, &c0, NULL));
    CHECK(ts_composed_dataset(g_ctx, c0, TS_SPLIT_TEST, cdir, 0, &test));
    if (g_smoke) { /* keep the test set small, per class */
        int all[64];
        for (int j = 0; j < k && j < 64; j++) all[j] = j;
        ts_dataset *cut = NULL;
        CHECK(class_subset(test, all, k < 64 ? k : 64, 100, 0, &cut));
        ts_dataset_free(test);
        test = cut;
    }
    int same = 0;
    if (!g_smoke) CHECK(crosscheck(test, src, cls, k, &same));
    eval e0, e1, es;
    CHECK(evaluate(c0, test, &e0));

    clk trt = clk_now();
    CHECK(ts_composed_dataset(g_ctx, c0, TS_SPLIT_TRAIN, cdir, rsamples, &tr500));
    CHECK(retune_modules(mods, k, tr500, NULL));
    trt = clk_since(trt);
    CHECK(compose(mods, k, 0, &c1, NULL));
    CHECK(evaluate(c1, test, &e1));

    const char *arch = ts_model_get_meta(ma, "arch");
    if (!arch) {
        st = fail(TS_EINVAL, "%s has no 'arch' metadata: cannot train the from-scratch reference", pa);
        goto done;
    }
    CHECK(ts_composed_dataset(g_ctx, c0, TS_SPLIT_TRAIN, cdir, g_smoke ? 250 : 0, &trall));
    ts_train_config tc = scratch_config(arch, epochs, 1);
    char desc[160];
    clk tst = {0, 0};
    printf("==== inter-dataset reuse: %s classes %s + %s classes %s ====\n", pa, argv[4], pb, argv[5]);
    printf("   scratch reference: %s, %s on the mixed training set (%lld images)\n", arch,
           config_desc(&tc, desc, sizeof desc), (long long)trall->count);
    fflush(stdout);
    CHECK(train_scratch(arch, trall, k, &tc, "   ", &sm, &tst));
    CHECK(evaluate(sm, test, &es));
    printf("   test set: ts_composed_dataset test split, %lld images (%s); cross-check against %s/%s test splits: %s\n",
           (long long)test->count, cdir ? cdir : "default data places", sa, sb,
           g_smoke ? "skipped (smoke)" : same ? "identical" : "DIFFERENT (see above)");
    printf("   decomposition: A %.2fs, B %.2fs wall; re-tuning %d modules on %lld samples: %.2fs wall, %.2fs CPU\n",
           da.time.wall, db.time.wall, k, (long long)tr500->count, trt.wall, trt.cpu);
    for (int j = 0; j < k; j++) {
        ts_module_info in;
        ts_module_info_get(mods[j], &in);
        printf("   module %d: %s class %d (%s): after re-tuning scale %.4f shift %.4f, units kept %.2f%%, JI %.4f\n", j,
               in.dataset, in.class_index, in.class_name, (double)in.scale, (double)in.shift,
               in.units ? 100.0 * in.units_kept / in.units : 100.0, in.jaccard);
    }
    print_recalls("composed, no re-tuning", c0, &e0, k);
    print_recalls("composed, re-tuned (ts_module_retune)", c0, &e1, k);
    print_recalls("from scratch", c0, &es, k);
    printf("%-44s %-24s %s\n", "", "ours", "paper (Pan & Rajan ICSE'22, CIFAR-10 x CIFAR-100)");
    printf("%-44s %+7.2f points            -12.06%%\n", "reuse without re-tuning - scratch", e0.top1 - es.top1);
    printf("%-44s %+7.2f points            -7.63%% (continuous learning)\n", "reuse with re-tuning - scratch",
           e1.top1 - es.top1);
    printf("%-44s %.1f CPU-s (decompose + re-tune) vs %.1f CPU-s scratch (%d epochs)\n", "cost",
           da.time.cpu + db.time.cpu + trt.cpu, tst.cpu, epochs);
done:
    ts_modules_free(da.mods, da.n);
    ts_modules_free(db.mods, db.n);
    free(mods);
    free(cls);
    free(src);
    free(ca);
    free(cb);
    ts_model_free(ma);
    ts_model_free(mb);
    ts_model_free(c0);
    ts_model_free(c1);
    ts_model_free(sm);
    ts_dataset_free(tra);
    ts_dataset_free(trb);
    ts_dataset_free(tea);
    ts_dataset_free(teb);
    ts_dataset_free(test);
    ts_dataset_free(tr500);
    ts_dataset_free(trall);
    return st ? 1 : 0;
}

/* --------------------------------------------------------------- replace */

static void print_row(const char *what, const eval *e, int c) {
    printf("   %-46s top-1 %6.2f%%  top-5 %6.2f%%  class %d recall %6.2f%% precision %6.2f%%\n", what, e->top1, e->top5,
           c, e->recall[c], e->precision[c]);
}

static int cmd_replace(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bench_decompose replace WEAK.tsr STRONG.tsr DATA CLASS (-1: WEAK's lowest recall)\n");
        return 2;
    }
    const char *pw = argv[0], *ps = argv[1], *spec = argv[2];
    char *end;
    long cl = strtol(argv[3], &end, 10);
    if (*end || cl < -1 || cl > 1000000) return fprintf(stderr, "replace: CLASS '%s' invalid\n", argv[3]), 2;
    ts_status st = TS_OK;
    ts_model *mw = NULL, *ms = NULL, *before = NULL, *after = NULL, *before_t = NULL, *after_t = NULL;
    ts_dataset *train = NULL, *test = NULL, *tr500 = NULL;
    decomp dw = {0}, ds = {0};
    ts_module **mixed = NULL;
    CHECK(ts_model_load(g_ctx, pw, &mw));
    CHECK(ts_model_load(g_ctx, ps, &ms));
    const char *dir = data_dir_for(mw);
    CHECK(load_split(spec, TS_SPLIT_TRAIN, dir, &train));
    CHECK(load_split(spec, TS_SPLIT_TEST, dir, &test));
    const int K = ts_model_classes(mw);
    if (ts_model_classes(ms) != K) {
        st = fail(TS_EINVAL, "%s has %d classes, %s %d", pw, K, ps, ts_model_classes(ms));
        goto done;
    }
    if (K > 16) {
        st = fail(TS_EUNSUPPORTED, "replace reports per-class figures for at most 16 classes (%s has %d)", pw, K);
        goto done;
    }
    eval ew, es, eb, ea, ebt, eat;
    CHECK(evaluate(mw, test, &ew));
    CHECK(evaluate(ms, test, &es));
    int c = (int)cl;
    if (c < 0) {
        c = 0;
        for (int j = 1; j < K; j++)
            if (ew.recall[j] < ew.recall[c]) c = j;
    }
    if (c >= K) {
        st = fail(TS_EINVAL, "class %d is not a class of %s (0..%d)", c, pw, K - 1);
        goto done;
    }
    CHECK(decompose(mw, pw, train, NULL, 0, &dw));
    CHECK(decompose(ms, ps, train, &c, 1, &ds));
    CHECK(compose(dw.mods, dw.n, 0, &before, NULL));
    if (!(mixed = malloc(sizeof *mixed * (size_t)K))) {
        st = fail(TS_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(mixed, dw.mods, sizeof *mixed * (size_t)K);
    mixed[c] = ds.mods[0];
    CHECK(compose(mixed, K, 0, &after, NULL));
    CHECK(evaluate(before, test, &eb));
    CHECK(evaluate(after, test, &ea));

    /* the same with every module's score calibrated (ts_module_retune on its own
     * dataset): the margins of two different models are not on one scale */
    const long rs = env_long("BENCH_RETUNE_SAMPLES", 500, 1, 1000000);
    int *all = malloc(sizeof *all * (size_t)K), *labels = malloc(sizeof *labels * (size_t)K);
    if (!all || !labels) {
        free(all);
        free(labels);
        st = fail(TS_ENOMEM, "out of memory");
        goto done;
    }
    for (int j = 0; j < K; j++) all[j] = j;
    st = class_subset(train, all, K, rs, 0, &tr500);
    for (int j = 0; j < K; j++) {
        ts_module_info in;
        ts_module_info_get(mixed[j], &in);
        labels[j] = in.class_index;
    }
    free(all);
    clk rt = clk_now();
    if (!st) st = retune_modules(dw.mods, K, tr500, labels); /* also re-tunes mixed[j] for j != c */
    if (!st) st = retune_modules(&ds.mods[0], 1, tr500, &labels[c]);
    rt = clk_since(rt);
    free(labels);
    if (st) goto done;
    CHECK(compose(dw.mods, K, 0, &before_t, NULL));
    CHECK(compose(mixed, K, 0, &after_t, NULL));
    CHECK(evaluate(before_t, test, &ebt));
    CHECK(evaluate(after_t, test, &eat));

    char cn[32];
    printf("==== replacement: class %d (%s) of %s (%s) by the module of %s (%s), %s test split ====\n", c,
           class_name(mw, c, cn, sizeof cn), pw, ts_model_get_meta(mw, "arch") ? ts_model_get_meta(mw, "arch") : "?",
           ps, ts_model_get_meta(ms, "arch") ? ts_model_get_meta(ms, "arch") : "?", spec);
    if (cl < 0) printf("   (class chosen as WEAK's lowest-recall class)\n");
    print_row("WEAK model", &ew, c);
    print_row("STRONG model", &es, c);
    print_row("before: WEAK's modules composed", &eb, c);
    print_row("after: class replaced by STRONG's module", &ea, c);
    print_row("before, all modules re-tuned", &ebt, c);
    print_row("after, all modules re-tuned", &eat, c);
    printf("%-44s %-26s %s\n", "", "ours", "paper (Pan & Rajan ICSE'22)");
    printf("%-44s %+6.2f top-1, %+6.2f top-5    intra +0.7 top-1 / +1.0 top-5\n", "after - before (modules as cut)",
           ea.top1 - eb.top1, ea.top5 - eb.top5);
    printf("%-44s %+6.2f top-1, %+6.2f top-5\n", "after - before (re-tuned)", eat.top1 - ebt.top1, eat.top5 - ebt.top5);
    printf("%-44s %+6.2f top-1\n", "after - WEAK model", ea.top1 - ew.top1);
    printf("%-44s decompose WEAK %.2fs + STRONG %.2fs wall; re-tune %.2fs wall\n", "cost", dw.time.wall, ds.time.wall,
           rt.wall);
done:
    ts_modules_free(dw.mods, dw.n);
    ts_modules_free(ds.mods, ds.n);
    free(mixed);
    ts_model_free(mw);
    ts_model_free(ms);
    ts_model_free(before);
    ts_model_free(after);
    ts_model_free(before_t);
    ts_model_free(after_t);
    ts_dataset_free(train);
    ts_dataset_free(test);
    ts_dataset_free(tr500);
    return st ? 1 : 0;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
    fprintf(f, "usage: bench_decompose cost    MODEL.tsr DATA\n"
               "       bench_decompose intra   MODEL.tsr DATA ARCH EPOCHS NPAIRS SEED\n"
               "       bench_decompose inter   MODEL_A.tsr DATA_A MODEL_B.tsr DATA_B CLASSES_A CLASSES_B\n"
               "       bench_decompose replace WEAK.tsr STRONG.tsr DATA CLASS\n"
               "environment: BENCH_THREADS (2), BENCH_DATA_DIR, BENCH_TP_IMAGES (2000), BENCH_TP_PASSES (5),\n"
               "             BENCH_INTER_EPOCHS (3), BENCH_RETUNE_SAMPLES (500), BENCH_SMOKE (0)\n"
               "see bench/decompose/README.md\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int (*fn)(int, char **) = NULL;
    if (!strcmp(argv[1], "cost")) fn = cmd_cost;
    else if (!strcmp(argv[1], "intra")) fn = cmd_intra;
    else if (!strcmp(argv[1], "inter")) fn = cmd_inter;
    else if (!strcmp(argv[1], "replace")) fn = cmd_replace;
    if (!fn) {
        fprintf(stderr, "bench_decompose: unknown subcommand '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    if (ts_ctx_create(&g_ctx)) {
        fprintf(stderr, "bench_decompose: out of memory\n");
        return 1;
    }
    const int threads = (int)env_long("BENCH_THREADS", 2, 1, 1024);
    g_smoke = (int)env_long("BENCH_SMOKE", 0, 0, 1);
    if (ts_ctx_set_threads(g_ctx, threads)) {
        fprintf(stderr, "bench_decompose: %s\n", ts_ctx_error(g_ctx));
        ts_ctx_free(g_ctx);
        return 1;
    }
    if (g_smoke) printf("SMOKE MODE: datasets cut to a few samples; the figures below are meaningless\n");
    printf("bench_decompose %s: tessera %s, %d threads, backend %s\n", argv[1], TS_VERSION_STRING,
           ts_ctx_get_threads(g_ctx), ts_ctx_get_backend(g_ctx) == TS_BACKEND_DNNL ? "dnnl" : "ref");
    fflush(stdout);
    clk t0 = clk_now();
    int rc = fn(argc - 2, argv + 2);
    if (rc == 1) {
        const char *msg = ts_ctx_error(g_ctx);
        fprintf(stderr, "bench_decompose %s: error: %s (%s)\n", argv[1], msg && *msg ? msg : "unknown failure",
                ts_status_name(ts_ctx_status(g_ctx)));
    } else if (rc == 0) {
        clk t = clk_since(t0);
        printf("(bench_decompose %s: %.1fs wall, %.1fs CPU in all)\n", argv[1], t.wall, t.cpu);
    }
    fflush(stdout);
    ts_ctx_free(g_ctx);
    return rc;
}
