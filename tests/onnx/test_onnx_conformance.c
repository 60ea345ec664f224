/* ONNX backend conformance: every case of the ONNX backend test data that Debian's
 * libonnx-testdata installs (node/, pytorch-converted/, pytorch-operator/,
 * simple/). A case is model.onnx plus test_data_set_0/input_K.pb and
 * output_K.pb. The first input is the model's input; later inputs are bound as
 * constants (a tessera model has one input). Import runs with the first axis as
 * the batch and, when that is refused, with the whole tensor as one sample.
 *
 * Prints one line per op type (passed, failed, unsupported) and the totals; with
 * -v also each case that did not pass and why. A case is labelled with the op its
 * name tests (test_averagepool_2d_pads -> AveragePool), or "(composite)" when the
 * name matches no op of a graph of several op types. Fails when a case of an
 * op tessera claims (docs/onnx.md) fails; unsupported cases are reported, and an
 * op is "complete" when all its cases pass. Skips when the data is not installed.
 *
 * Usage: test_onnx_conformance [-v] [DATA_DIR] */
#include "tessera.h"

#include "onnx/onnx.pb-c.h"

#include <ctype.h>
#include <math.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_OPS 256
#define MAX_INPUTS 16

/* the ops tessera claims: every case labelled with one of these must not fail */
static const char *const CLAIMED[] = {
    "Slice", "Gather",
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Relu",
    "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Clip", "Gemm", "MatMul", "Add", "Sub",
    "Mul", "Div", "Sum", "Softmax", "LogSoftmax", "Flatten", "Reshape", "Concat", "Transpose", "Squeeze",
    "Unsqueeze", "Pad", "Identity", "Dropout", "Expand", "HardSwish", "Sqrt", "Erf", "Pow", "ReduceMean",
    "Resize", "Upsample",
    "LayerNormalization", "RNN", "LSTM", "GRU", NULL};

typedef struct op_stats {
    char name[64];
    int passed, failed, unsupported;
} op_stats;

static op_stats g_ops[MAX_OPS];
static int g_nops;
static int g_verbose;

static op_stats *stats_for(const char *op) {
    for (int i = 0; i < g_nops; i++)
        if (!strcmp(g_ops[i].name, op)) return &g_ops[i];
    if (g_nops == MAX_OPS) return &g_ops[MAX_OPS - 1];
    op_stats *s = &g_ops[g_nops++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", op);
    return s;
}

static int claimed(const char *op) {
    for (int i = 0; CLAIMED[i]; i++)
        if (!strcmp(CLAIMED[i], op)) return 1;
    return 0;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return b;
}

static int is_dir(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* The op a case tests: the graph op whose lowercase name is the longest prefix
 * of the test name (test_<op>...), else the first op that is not plumbing. */
static void case_label(const char *model_path, const char *test, char *label, size_t cap) {
    snprintf(label, cap, "(unreadable)");
    size_t len;
    uint8_t *b = read_all(model_path, &len);
    if (!b) return;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, b);
    free(b);
    if (!mp || !mp->graph) {
        if (mp) onnx__model_proto__free_unpacked(mp, NULL);
        return;
    }
    const char *name = !strncmp(test, "test_", 5) ? test + 5 : test;
    size_t best = 0;
    int several = 0;
    const char *first = NULL;
    for (size_t i = 0; i < mp->graph->n_node; i++) {
        const char *op = mp->graph->node[i]->op_type;
        if (!op) continue;
        size_t n = strlen(op), k;
        for (k = 0; k < n && name[k] && tolower((unsigned char)name[k]) == tolower((unsigned char)op[k]); k++) {}
        if (k == n && n > best && (name[n] == '\0' || name[n] == '_' || isdigit((unsigned char)name[n]))) {
            best = n;
            snprintf(label, cap, "%s", op);
        }
        static const char *const plumbing[] = {"Constant", "Shape", "Gather", "Unsqueeze", "Cast", "Identity", NULL};
        int p = 0;
        for (int j = 0; plumbing[j]; j++) p |= !strcmp(plumbing[j], op);
        if (!p && !first) first = op;
        if (!p && first && strcmp(first, op)) several = 1;
    }
    /* a test of a function written out in several ops, or of an op tessera has no
     * name for, counts as composite rather than for its first op */
    if (!best) snprintf(label, cap, "%s", several || strstr(test, "_expanded") ? "(composite)" : first ? first : "(none)");
    onnx__model_proto__free_unpacked(mp, NULL);
}

typedef enum outcome { PASS, FAIL, UNSUPPORTED } outcome;

/* t's values with axis `axis` moved to the front (the batch-first order a tessera
 * model reads and writes); a copy the caller frees */
static float *axis_first(const ts_onnx_tensor *t, int axis) {
    const int r = ts_onnx_tensor_rank(t);
    int64_t outer = 1, inner = 1, dim = ts_onnx_tensor_dim(t, axis), numel = ts_onnx_tensor_numel(t);
    for (int k = 0; k < axis; k++) outer *= ts_onnx_tensor_dim(t, k);
    for (int k = axis + 1; k < r; k++) inner *= ts_onnx_tensor_dim(t, k);
    float *out = malloc((size_t)(numel ? numel : 1) * sizeof *out);
    const float *in = ts_onnx_tensor_floats(t);
    for (int64_t b = 0; out && b < dim; b++) /* (outer, dim, inner) -> (dim, outer, inner) */
        for (int64_t o = 0; o < outer; o++)
            memcpy(out + (b * outer + o) * inner, in + (o * dim + b) * inner, (size_t)inner * sizeof *out);
    return out;
}

static outcome run_case(ts_ctx *ctx, const char *dir, char *why, size_t cap) {
    char path[1400];
    ts_onnx_tensor *in[MAX_INPUTS] = {0}, *want = NULL;
    int nin = 0;
    outcome res = FAIL;
    for (; nin < MAX_INPUTS; nin++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, nin);
        FILE *f = fopen(path, "rb");
        if (!f) break;
        fclose(f);
        if (ts_onnx_tensor_load(ctx, path, &in[nin])) {
            snprintf(why, cap, "input: %.900s", ts_ctx_error(ctx));
            res = UNSUPPORTED;
            goto done;
        }
    }
    snprintf(path, sizeof path, "%s/test_data_set_0/output_1.pb", dir);
    FILE *f2 = fopen(path, "rb");
    if (f2) {
        fclose(f2);
        snprintf(why, cap, "several outputs (a tessera model has one)");
        res = UNSUPPORTED;
        goto done;
    }
    snprintf(path, sizeof path, "%s/test_data_set_0/output_0.pb", dir);
    if (ts_onnx_tensor_load(ctx, path, &want)) {
        snprintf(why, cap, "expected output: %.900s", ts_ctx_error(ctx));
        res = UNSUPPORTED;
        goto done;
    }
    if (nin == 0 || !ts_onnx_tensor_is_float(in[0]) || !ts_onnx_tensor_is_float(want)) {
        snprintf(why, cap, "non-float input or output (tessera models take and give float32)");
        res = UNSUPPORTED;
        goto done;
    }
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ts_onnx_import_config cfg;
    ts_onnx_import_config_default(&cfg);
    cfg.bind = (const ts_onnx_tensor *const *)in + 1;
    cfg.nbind = nin - 1;
    cfg.exact_inference = 1;
    ts_model *m = NULL;
    ts_status st = ts_onnx_import(ctx, path, &cfg, &m);
    int batch = 1;
    if (st == TS_EUNSUPPORTED) {
        char first[512];
        snprintf(first, sizeof first, "%s", ts_ctx_error(ctx));
        cfg.batch_axis = 0;
        batch = 0;
        st = ts_onnx_import(ctx, path, &cfg, &m);
        if (st == TS_EUNSUPPORTED && ts_onnx_tensor_rank(in[0]) >= 2) {
            /* time-major: the batch as the input's second axis (the recurrent ops) */
            cfg.batch_axis = 2;
            batch = 2;
            st = ts_onnx_import(ctx, path, &cfg, &m);
        }
        if (st == TS_EUNSUPPORTED) {
            /* the batch-axis reason is usually the informative one */
            const char *msg = strstr(first, "): ") ? strstr(first, "): ") + 3 : first;
            snprintf(why, cap, "%s", msg);
            res = UNSUPPORTED;
            goto done;
        }
    }
    if (st) {
        snprintf(why, cap, "import failed: %.900s", ts_ctx_error(ctx));
        goto done;
    }
    int n = batch ? (int)(ts_onnx_tensor_rank(in[0]) ? ts_onnx_tensor_dim(in[0], batch - 1) : 1) : 1;
    /* batch-first copies of the input and the expected output where the batch is elsewhere */
    const char *ob = ts_model_get_meta(m, "onnx.output_batch_axis");
    float *x_first = batch == 2 ? axis_first(in[0], 1) : NULL;
    float *w_first = ob && atoi(ob) > 0 && atoi(ob) < ts_onnx_tensor_rank(want) ? axis_first(want, atoi(ob)) : NULL;
    int64_t per = ts_model_classes(m);
    if ((int64_t)n * per != ts_onnx_tensor_numel(want) || n < 1) {
        snprintf(why, cap, "output has %lld values, expected %lld", (long long)n * per,
                 (long long)ts_onnx_tensor_numel(want));
        ts_model_free(m);
        goto done;
    }
    float *y = malloc((size_t)(n * per) * sizeof *y);
    if (!y || ts_model_predict(ctx, m, x_first ? x_first : ts_onnx_tensor_floats(in[0]), n, y)) {
        snprintf(why, cap, "predict failed: %.900s", y ? ts_ctx_error(ctx) : "out of memory");
        free(y);
        free(x_first);
        free(w_first);
        ts_model_free(m);
        goto done;
    }
    /* the ONNX backend tests' tolerance is rtol 1e-3, atol 1e-7; atol 1e-6 here
     * for float32 sums that cancel to near zero */
    const float *w = w_first ? w_first : ts_onnx_tensor_floats(want);
    int64_t bad = -1;
    for (int64_t i = 0; i < n * per && bad < 0; i++) {
        double d = fabs((double)y[i] - (double)w[i]);
        int both_nan = y[i] != y[i] && w[i] != w[i];
        int same_inf = y[i] == w[i];
        if (!both_nan && !same_inf && !(d <= 1e-6 + 1e-3 * fabs((double)w[i]))) bad = i;
    }
    if (bad >= 0) snprintf(why, cap, "value %lld: %.9g, expected %.9g", (long long)bad, (double)y[bad], (double)w[bad]);
    else res = PASS;
    free(y);
    free(x_first);
    free(w_first);
    ts_model_free(m);
done:
    for (int i = 0; i < nin; i++) ts_onnx_tensor_free(in[i]);
    ts_onnx_tensor_free(want);
    return res;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_suite(ts_ctx *ctx, const char *root, const char *suite, int *total) {
    char sdir[1024];
    snprintf(sdir, sizeof sdir, "%s/%s", root, suite);
    DIR *d = opendir(sdir);
    if (!d) return;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int i = 0; i < n; i++) {
        char dir[1100], model[1200], label[64], why[2048] = "";
        snprintf(dir, sizeof dir, "%s/%s", sdir, names[i]);
        snprintf(model, sizeof model, "%s/model.onnx", dir);
        if (!is_dir(dir)) {
            free(names[i]);
            continue;
        }
        case_label(model, names[i], label, sizeof label);
        outcome o = run_case(ctx, dir, why, sizeof why);
        op_stats *s = stats_for(label);
        (*total)++;
        if (o == PASS) s->passed++;
        else if (o == FAIL) s->failed++;
        else s->unsupported++;
        if (g_verbose && o != PASS)
            printf("  %-12s %s/%s [%s]: %s\n", o == FAIL ? "FAILED" : "unsupported", suite, names[i], label, why);
        else if (o == FAIL && claimed(label))
            printf("  FAILED %s/%s [%s]: %s\n", suite, names[i], label, why);
        free(names[i]);
    }
    free(names);
}

static int cmp_stats(const void *a, const void *b) {
    const op_stats *x = a, *y = b;
    int cx = claimed(x->name), cy = claimed(y->name);
    if (cx != cy) return cy - cx;
    return strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    const char *root = "/usr/share/libonnx-testdata/data";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v")) g_verbose = 1;
        else root = argv[i];
    }
    if (!is_dir(root)) {
        printf("no ONNX backend test data in %s (Debian package libonnx-testdata): skipped\n", root);
        printf("test_onnx_conformance: 0 passed, 0 failed\n");
        return 0;
    }
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return 2;
    static const char *const suites[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
    int total = 0;
    for (int s = 0; s < 4; s++) run_suite(ctx, root, suites[s], &total);
    qsort(g_ops, (size_t)g_nops, sizeof *g_ops, cmp_stats);
    int p = 0, f = 0, u = 0, claimed_failed = 0, complete = 0, nclaimed = 0;
    printf("%-26s %7s %7s %12s\n", "op type", "passed", "failed", "unsupported");
    for (int i = 0; i < g_nops; i++) {
        op_stats *s = &g_ops[i];
        int c = claimed(s->name);
        if (c) {
            nclaimed++;
            claimed_failed += s->failed;
            complete += s->failed == 0 && s->unsupported == 0;
        }
        if (c || s->passed || s->failed)
            printf("%-26s %7d %7d %12d%s\n", s->name, s->passed, s->failed, s->unsupported,
                   c ? (s->failed == 0 && s->unsupported == 0 ? "  claimed, complete" : "  claimed") : "");
        p += s->passed;
        f += s->failed;
        u += s->unsupported;
    }
    int other = 0;
    for (int i = 0; i < g_nops; i++) other += !claimed(g_ops[i].name) && !g_ops[i].passed && !g_ops[i].failed;
    printf("(%d other op types: every case unsupported)\n", other);
    printf("total: %d cases, %d passed, %d failed, %d unsupported; claimed ops: %d, complete: %d, failed cases: %d\n",
           total, p, f, u, nclaimed, complete, claimed_failed);
    ts_ctx_free(ctx);
    printf("test_onnx_conformance: %d passed, %d failed\n", p, claimed_failed);
    return claimed_failed ? 1 : 0;
}
