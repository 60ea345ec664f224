/* tessera decompose, compose, replace and reuse: per-class modules. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h> /* rmdir */

/* ---------------------------------------------------------------- shared */

static int64_t model_macs(const ts_model *m) {
    int64_t t = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (!ts_model_layer(m, i, &li)) t += li.macs;
    }
    return t;
}

static void shape_text(const ts_shape *s, char *buf, size_t n) {
    size_t off = 0;
    buf[0] = '\0';
    for (int d = 0; d < s->ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, d ? "x%lld" : "%lld", (long long)s->dims[d]);
}

/* Loads module files; on failure frees what it loaded. Modules that take different
 * input shapes are refused here, where their files are known (ts_compose can only
 * name them by position). */
static ts_status load_modules(ts_ctx *ctx, char **paths, int n, ts_module ***out) {
    ts_module **mods = calloc((size_t)(n ? n : 1), sizeof *mods);
    if (!mods) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    ts_status st = TS_OK;
    ts_module_info first, info;
    for (int i = 0; i < n && !st; i++) {
        if ((st = ts_module_load(ctx, paths[i], &mods[i]))) break;
        ts_module_info_get(mods[i], i ? &info : &first);
        if (!i) continue;
        int same = info.input.ndim == first.input.ndim;
        for (int d = 0; same && d < info.input.ndim; d++) same = info.input.dims[d] == first.input.dims[d];
        if (!same) {
            char a[96], b[96];
            shape_text(&first.input, a, sizeof a);
            shape_text(&info.input, b, sizeof b);
            st = ts_ctx_set_error(ctx, TS_ESHAPE, "%s: module takes %s inputs, but %s takes %s (modules must take one "
                                  "input shape)", paths[i], b, paths[0], a);
        }
    }
    if (st) {
        ts_modules_free(mods, n);
        return st;
    }
    *out = mods;
    return TS_OK;
}

static int progress_cb(void *user, int64_t done, int64_t total) {
    progress_update(user, "scanning", done, total, NULL, 1.0);
    return 0;
}

static int parse_class_list(const char *s, int **out, int *n) {
    *n = 0;
    *out = NULL;
    if (!s) return 1;
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *v = malloc(sizeof *v * (size_t)cap);
    if (!v) return 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long c = strtol(p, &end, 10);
        if (end == p || errno || c < 0 || c > (1 << 24) || (*end && *end != ',')) {
            free(v);
            return 0;
        }
        v[(*n)++] = (int)c;
        p = *end ? end + 1 : end;
    }
    *out = v;
    return 1;
}

static void print_compose_summary(const ts_model *cm, ts_module *const *mods, int k) {
    /* the origins' total cost, once per distinct origin */
    int64_t origin_macs = 0;
    for (int i = 0; i < k; i++) {
        ts_module_info a;
        ts_module_info_get(mods[i], &a);
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) {
            ts_module_info b;
            ts_module_info_get(mods[j], &b);
            seen = a.origin_id == b.origin_id;
        }
        if (!seen) origin_macs += a.origin_macs;
    }
    int64_t macs = model_macs(cm);
    printf("composed %d classes:", k);
    for (int j = 0; j < k; j++) {
        char name[64];
        printf("%s %s", j ? "," : "", cli_class_name(cm, j, name, sizeof name));
    }
    int origins = 0, uncalibrated = 0;
    for (int i = 0; i < k; i++) {
        ts_module_info a;
        ts_module_info_get(mods[i], &a);
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) {
            ts_module_info b;
            ts_module_info_get(mods[j], &b);
            seen = a.origin_id == b.origin_id;
        }
        origins += !seen;
        uncalibrated += a.scale == 1.0f && a.shift == 0.0f;
    }
    printf("\nMACs per sample %.2fM (%.2fx the origin model%s: %.2fM), %d layers\n", macs / 1e6,
           origin_macs ? (double)macs / (double)origin_macs : 0.0, origins > 1 ? "s together" : "", origin_macs / 1e6,
           ts_model_layer_count(cm));
    if (origins > 1 && uncalibrated)
        printf("note: the modules come from %d models and %d of their scores are not calibrated against each other;\n"
               "      --retune (tessera reuse, tessera replace) calibrates them on training data\n",
               origins, uncalibrated);
}

static int compose_opts_get(const cli_cmd *cmd, ts_compose_config *cc) {
    ts_compose_config_default(cc);
    return cli_float(cmd, "max-macs", 1.5, 1.0, 1e9, &cc->max_macs);
}

/* ------------------------------------------------------------- decompose */

static cli_opt decompose_opts[] = {
    {"data", "NAME|PATH", "training data to identify concerns on (default: the model's own)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"out", "DIR", "folder for the modules, one classN.tsm per class (required)", NULL},
    {"classes", "I[,J...]", "decompose only these classes (default: all)", NULL},
    {"positives", "N", "confident training inputs per class for concern identification (default 1000)", NULL},
    {"confidence", "F", "softmax probability a positive needs (default 0.9)", NULL},
    {"tangling", "F", "negatives per positive for tangling identification (default 1.0)", NULL},
    {"seed", "S", "order in which training inputs are drawn (default 0)", NULL},
    {"batch", "N", "inference batch (default 128)", NULL},
    {"no-eval", NULL, "skip the per-module test-set evaluation and the composed check", NULL},
    {"max-macs", "F", "for the composed check: compute budget (default 1.5)", NULL},
    {"force", NULL, "replace a module file even when it is write-protected", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"quiet", NULL, "no progress bar", NULL},
};
static cli_cmd decompose_cmd = {
    "decompose", "MODEL --out DIR [--data NAME|PATH] [options]",
    "Cuts a trained classifier into one module per class (Pan & Rajan's concern identification,\n"
    "tangling identification and output channelling; docs/modules.md) and writes DIR/classN.tsm.\n"
    "Prints per module: positives and negatives used, binary accuracy on its own class and on\n"
    "the rest (test split), the fraction of weights and of conv output positions it keeps, its\n"
    "Jaccard index against the model, and the time; then the model against all modules composed.",
    decompose_opts, sizeof decompose_opts / sizeof decompose_opts[0]};

/* decompose's output. Each module is saved as DIR/classN.tsm.pending and renamed to
 * DIR/classN.tsm only once every module is saved and the report is done, so a file
 * already in DIR is replaced only by a run that gets that far. A failing run removes
 * its pending files and then DIR, when it made DIR itself (rmdir: never a folder that
 * holds anything else); a rename that fails midway keeps the modules already renamed. */
static const char *const PENDING = ".pending";

static int module_out_path(char *buf, size_t n, const char *dir, const ts_module *mod, const char *suffix) {
    ts_module_info in;
    ts_module_info_get(mod, &in);
    return (size_t)snprintf(buf, n, "%s/class%d.tsm%s", dir, in.class_index, suffix) < n;
}

/* Renames mods[0 .. n) from their pending names into place, counting in *placed.
 * What would make a rename fail or must not be replaced (a folder in the way, a
 * write-protected module, the input model itself) is looked for first, so that it
 * fails the run before any file that was already there is replaced. */
static ts_status module_out_place(ts_ctx *ctx, const char *dir, const char *model, ts_module *const *mods, int n,
                                  int *placed) {
    char from[4096], to[4096];
    for (int i = 0; i < n; i++) {
        ts_status st;
        if (!module_out_path(to, sizeof to, dir, mods[i], "")) /* shorter than the pending name */
            return ts_ctx_set_error(ctx, TS_EINVAL, "%s: output path too long", dir);
        if (cli_same_file(to, model))
            return ts_ctx_set_error(ctx, TS_EINVAL, "%s: is the input model %s; choose another --out folder", to, model);
        if ((st = ts_file_check_output(ctx, to))) return st;
    }
    for (; *placed < n; (*placed)++) {
        module_out_path(from, sizeof from, dir, mods[*placed], PENDING);
        module_out_path(to, sizeof to, dir, mods[*placed], "");
        ts_status st = ts_file_replace(ctx, from, to);
        if (st)
            return ts_ctx_set_error(ctx, st, "%s (%d of %d modules were already in place)", ts_ctx_error(ctx), *placed, n);
    }
    return TS_OK;
}

/* Undoes a failed run: mods[0 .. saved) were written, the first `placed` of them
 * already renamed into place. Those stay: each may have replaced an older module, which
 * is gone, and the error says how many there are. Only the pending files go, then DIR
 * when this run made it and it is empty. */
static void module_out_remove(const char *dir, int made_dir, ts_module *const *mods, int saved, int placed) {
    for (int i = placed; i < saved; i++) {
        char path[4096];
        if (module_out_path(path, sizeof path, dir, mods[i], PENDING)) remove(path);
    }
    if (made_dir) rmdir(dir);
}

int cmd_decompose(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&decompose_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *outdir = cli_get(&decompose_cmd, "out");
    if (npos != 1 || !outdir) {
        fprintf(stderr, "tessera decompose: expected one MODEL and --out DIR (see tessera decompose --help)\n");
        return EXIT_USAGE;
    }
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    long positives, seed, batch;
    double conf, tang;
    int *classes = NULL, ncls = 0;
    ts_compose_config cc;
    if (!cli_int(&decompose_cmd, "positives", 1000, 1, 1000000, &positives) ||
        !cli_float(&decompose_cmd, "confidence", 0.9, 0.0, 0.999999, &conf) ||
        !cli_float(&decompose_cmd, "tangling", 1.0, 0.0, 100.0, &tang) ||
        !cli_int(&decompose_cmd, "seed", 0, 0, 0x7fffffffffffffffL, &seed) ||
        !cli_int(&decompose_cmd, "batch", 128, 1, 256, &batch) || !compose_opts_get(&decompose_cmd, &cc))
        return EXIT_USAGE;
    if (!parse_class_list(cli_get(&decompose_cmd, "classes"), &classes, &ncls)) {
        fprintf(stderr, "tessera decompose: --classes: expected class indices like 0,3,5\n");
        return EXIT_USAGE;
    }
    cfg.positives = (int)positives;
    cfg.confidence = (float)conf;
    cfg.tangling = (float)tang;
    cfg.seed = (uint64_t)seed;
    cfg.batch = (int)batch;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) {
        free(classes);
        return EXIT_NOMEM;
    }
    ts_model *m = NULL, *cm = NULL;
    ts_dataset *train = NULL, *test = NULL;
    ts_module **mods = NULL;
    int nmods = 0;
    int made_dir = 0, saved = 0, placed = 0; /* what this run wrote, for module_out_remove */
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&decompose_cmd, ctx))) goto done;
    cli_setup_files(&decompose_cmd, ctx);
    if ((st = ts_model_load(ctx, pos[0], &m))) goto fail;
    const char *spec = cli_get(&decompose_cmd, "data");
    if (!spec) spec = ts_model_get_meta(m, "data");
    if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", pos[0]);
        goto fail;
    }
    const char *ddir = cli_get(&decompose_cmd, "data-dir");
    if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TRAIN, ddir, 0, &train))) goto fail;
    int eval = !cli_get(&decompose_cmd, "no-eval");
    /* the test split before anything is written: a missing or bad one costs no output */
    if (eval && (st = cli_load_dataset(ctx, spec, TS_SPLIT_TEST, ddir, 0, &test))) goto fail;
    if (mkdir(outdir, 0777) == 0) {
        made_dir = 1;
    } else if (errno != EEXIST) {
        st = ts_ctx_set_error(ctx, TS_EIO, "%s: cannot create the output folder: %s", outdir, strerror(errno));
        goto fail;
    }
    progress pr;
    progress_start(&pr);
    int quiet = cli_get(&decompose_cmd, "quiet") != NULL;
    double t0 = cli_now();
    st = ts_decompose(ctx, m, train, &cfg, classes, ncls, quiet ? NULL : progress_cb, &pr, &mods, &nmods);
    if (!quiet) progress_end(&pr);
    if (st) goto fail;
    double secs = cli_now() - t0;
    /* provenance that still resolves from another folder: absolute paths */
    char origin[PATH_MAX], data_abs[PATH_MAX];
    if (!realpath(pos[0], origin)) snprintf(origin, sizeof origin, "%s", pos[0]);
    struct stat sb;
    if (stat(spec, &sb) || !realpath(spec, data_abs)) snprintf(data_abs, sizeof data_abs, "%s", spec);
    for (; saved < nmods; saved++) {
        char path[4096];
        if (!module_out_path(path, sizeof path, outdir, mods[saved], PENDING)) {
            st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: output path too long", outdir);
            goto fail;
        }
        if ((st = ts_module_set_origin(ctx, mods[saved], origin)) ||
            (st = ts_module_set_dataset(ctx, mods[saved], data_abs)) || (st = ts_module_save(ctx, mods[saved], path)))
            goto fail;
    }
    printf("decomposed %s into %d modules in %.2fs (data: %s, %lld training samples)\n", pos[0], nmods, secs, spec,
           (long long)train->count);
    printf("%-5s %-16s %5s %5s %8s %8s %8s %8s %7s %7s\n", "class", "name", "pos", "neg", "own-acc", "rest-acc",
           "weights", "conv-pos", "JI", "secs");
    for (int i = 0; i < nmods; i++) {
        ts_module_info in;
        ts_module_info_get(mods[i], &in);
        double own = 0, rest = 0;
        if (eval && (st = ts_module_evaluate(ctx, mods[i], test, 256, &own, &rest))) goto fail;
        char o[16] = "-", r[16] = "-";
        if (eval) {
            snprintf(o, sizeof o, "%.2f%%", 100 * own);
            snprintf(r, sizeof r, "%.2f%%", 100 * rest);
        }
        printf("%-5d %-16.16s %5d %5d %8s %8s %7.2f%% %7.2f%% %7.4f %7.2f\n", in.class_index, in.class_name,
               in.positives, in.negatives, o, r, in.weights ? 100.0 * in.weights_kept / in.weights : 100.0,
               in.conv_units ? 100.0 * in.conv_units_kept / in.conv_units : 100.0, in.jaccard, in.seconds);
    }
    if (eval && nmods == ts_model_classes(m) && !ncls) {
        ts_eval_report a, b;
        if ((st = ts_evaluate(ctx, m, test, 256, &a))) goto fail;
        if ((st = ts_compose(ctx, mods, nmods, &cc, &cm)) || (st = ts_evaluate(ctx, cm, test, 256, &b))) {
            ts_eval_report_free(&a);
            goto fail;
        }
        printf("original model: top-1 %.2f%%  top-5 %.2f%%   all modules composed: top-1 %.2f%%  top-5 %.2f%%  "
               "(%.2fx the MACs)\n",
               100 * a.top1, 100 * a.top5, 100 * b.top1, 100 * b.top5, (double)model_macs(cm) / (double)model_macs(m));
        ts_eval_report_free(&a);
        ts_eval_report_free(&b);
    }
    if ((st = module_out_place(ctx, outdir, pos[0], mods, saved, &placed))) goto fail;
    printf("modules written to %s/\n", outdir);
    rc = EXIT_OK;
    goto done;
fail:
    module_out_remove(outdir, made_dir, mods, saved, placed);
    rc = cli_fail("decompose", ctx, st);
done:
    free(classes);
    ts_modules_free(mods, nmods);
    ts_dataset_free(train);
    ts_dataset_free(test);
    ts_model_free(m);
    ts_model_free(cm);
    ts_ctx_free(ctx);
    return rc;
}

/* --------------------------------------------------------------- compose */

static cli_opt compose_opts[] = {
    {"out", "FILE", "where to write the composed model (required)", NULL},
    {"max-macs", "F", "compute budget against the origin model: modules of one origin share layers\n"
                      "                             up to the cut that keeps within it (default 1.5; >= the module\n"
                      "                             count gives every module its own copy)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
};
static cli_cmd compose_cmd = {"compose", "MODULE.tsm... --out FILE [options]",
                              "Builds a classifier from modules, from one model or several, without retraining:\n"
                              "output j is module j's score and the prediction is the highest (the voting rule).\n"
                              "Evaluate it with tessera eval FILE (each class is scored on its module's dataset).",
                              compose_opts, sizeof compose_opts / sizeof compose_opts[0]};

#define MAX_MODULE_ARGS 4096

int cmd_compose(int argc, char **argv) {
    char *pos[MAX_MODULE_ARGS];
    int npos;
    int rc = cli_parse(&compose_cmd, argc, argv, pos, &npos, MAX_MODULE_ARGS);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&compose_cmd, "out");
    if (npos < 1 || !out) {
        fprintf(stderr, "tessera compose: expected MODULE files and --out FILE (see tessera compose --help)\n");
        return EXIT_USAGE;
    }
    ts_compose_config cc;
    if (!compose_opts_get(&compose_cmd, &cc)) return EXIT_USAGE;
    if ((rc = cli_refuse_same(&compose_cmd, "--out", out, (const char *const *)pos, npos))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_module **mods = NULL;
    ts_model *cm = NULL;
    ts_status st;
    if ((rc = cli_setup_ctx(&compose_cmd, ctx))) goto done;
    cli_setup_files(&compose_cmd, ctx);
    if ((st = load_modules(ctx, pos, npos, &mods))) goto fail;
    if ((st = ts_compose(ctx, mods, npos, &cc, &cm))) goto fail;
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    print_compose_summary(cm, mods, npos);
    printf("wrote %s\n", out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("compose", ctx, st);
done:
    ts_modules_free(mods, mods ? npos : 0);
    ts_model_free(cm);
    ts_ctx_free(ctx);
    return rc;
}

/* --retune of reuse and replace: each module is re-tuned (ts_module_retune) with the
 * first `limit` training samples of its own class as positives and those of every
 * other listed class as negatives, each class from its module's dataset. Prints
 * what it did. */
static ts_status retune_modules(ts_ctx *ctx, ts_module **mods, int k, const char *ddir, long limit) {
    double t0 = cli_now();
    ts_model *cm = NULL;
    ts_dataset *tr = NULL;
    int64_t *idx = NULL;
    ts_compose_config cc;
    ts_compose_config_default(&cc);
    ts_status st = ts_compose(ctx, mods, k, &cc, &cm);
    if (!st) st = ts_composed_dataset(ctx, cm, TS_SPLIT_TRAIN, ddir, limit, &tr);
    if (!st && !(idx = malloc(sizeof *idx * (size_t)(tr->count ? tr->count : 1))))
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    for (int j = 0; j < k && !st; j++) {
        ts_dataset *pos = NULL, *neg = NULL;
        int64_t np = 0, nn = 0;
        for (int64_t i = 0; i < tr->count; i++)
            if (tr->labels[i] == j) idx[np++] = i;
        st = ts_dataset_subset(ctx, tr, idx, np, &pos);
        for (int64_t i = 0; i < tr->count; i++)
            if (tr->labels[i] != j) idx[nn++] = i;
        if (!st) st = ts_dataset_subset(ctx, tr, idx, nn, &neg);
        /* labels of pos/neg are positions in the new model: only their images are used */
        if (!st) st = ts_module_retune(ctx, mods[j], pos, neg, 256);
        ts_dataset_free(pos);
        ts_dataset_free(neg);
    }
    if (!st) printf("re-tuned %d modules on %lld training samples in %.2fs\n", k, (long long)tr->count, cli_now() - t0);
    free(idx);
    ts_dataset_free(tr);
    ts_model_free(cm);
    return st;
}

/* --------------------------------------------------------------- replace */

static cli_opt replace_opts[] = {
    {"class", "C", "the class to replace (its index in the model; required)", NULL},
    {"with", "MODULE.tsm", "the module that takes its place (required)", NULL},
    {"out", "FILE", "where to write the new model (required)", NULL},
    {"max-macs", "F", "compute budget, as for compose (default 1.5)", NULL},
    {"retune", NULL, "calibrate every module's score on training data of all the classes (recommended\n"
                     "                             when the new module comes from another model)", NULL},
    {"retune-samples", "N", "training samples per class used for re-tuning (default 500)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
};
static cli_cmd replace_cmd = {
    "replace", "MODEL.tsr|MODULES-DIR --class C --with MODULE.tsm --out FILE",
    "Swaps one class's module for another, for example a stronger model's. The first argument\n"
    "is a folder of modules (from tessera decompose) or a model, whose classes are then taken\n"
    "as they are (its own outputs, channelled).",
    replace_opts, sizeof replace_opts / sizeof replace_opts[0]};

static int is_dir(const char *p) {
    struct stat sb;
    return !stat(p, &sb) && S_ISDIR(sb.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every *.tsm in dir, ordered by class index; refused when one is the file `output`. */
static ts_status load_module_dir(ts_ctx *ctx, const char *dir, const char *output, ts_module ***out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return ts_ctx_set_error(ctx, TS_EIO, "%s: cannot open the folder: %s", dir, strerror(errno));
    char **paths = NULL;
    int np = 0, cap = 0;
    ts_status st = TS_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".tsm")) continue;
        if (np == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(paths, sizeof *p * (size_t)cap);
            if (!p) {
                st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
                break;
            }
            paths = p;
        }
        size_t plen = strlen(dir) + len + 2;
        if (!(paths[np] = malloc(plen))) {
            st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
            break;
        }
        snprintf(paths[np++], plen, "%s/%s", dir, e->d_name);
        if (cli_same_file(output, paths[np - 1])) {
            st = ts_ctx_set_error(ctx, TS_EINVAL, "--out %s is the same file as the input %s; choose another output",
                                  output, paths[np - 1]);
            break;
        }
    }
    closedir(d);
    if (!st && np == 0) st = ts_ctx_set_error(ctx, TS_ENOTFOUND, "%s: no .tsm module files in the folder", dir);
    if (!st) {
        qsort(paths, (size_t)np, sizeof *paths, cmp_str);
        st = load_modules(ctx, paths, np, out);
    }
    if (!st) {
        /* by class index */
        ts_module **m = *out;
        for (int i = 1; i < np; i++)
            for (int j = i; j > 0; j--) {
                ts_module_info a, b;
                ts_module_info_get(m[j - 1], &a);
                ts_module_info_get(m[j], &b);
                if (a.class_index <= b.class_index) break;
                ts_module *t = m[j - 1];
                m[j - 1] = m[j];
                m[j] = t;
            }
        *n = np;
    }
    for (int i = 0; i < np; i++) free(paths[i]);
    free(paths);
    return st;
}

int cmd_replace(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&replace_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&replace_cmd, "out"), *with = cli_get(&replace_cmd, "with");
    long cls;
    ts_compose_config cc;
    if (npos != 1 || !out || !with || !cli_get(&replace_cmd, "class")) {
        fprintf(stderr, "tessera replace: expected MODEL or MODULES-DIR, --class, --with and --out (see --help)\n");
        return EXIT_USAGE;
    }
    if (!cli_int(&replace_cmd, "class", 0, 0, 1 << 24, &cls) || !compose_opts_get(&replace_cmd, &cc)) return EXIT_USAGE;
    const char *inputs[2] = {pos[0], with};
    if ((rc = cli_refuse_same(&replace_cmd, "--out", out, inputs, 2))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_module **mods = NULL, *repl = NULL;
    int n = 0;
    ts_model *m = NULL, *cm = NULL;
    ts_status st;
    if ((rc = cli_setup_ctx(&replace_cmd, ctx))) goto done;
    cli_setup_files(&replace_cmd, ctx);
    if (is_dir(pos[0])) {
        if ((st = load_module_dir(ctx, pos[0], out, &mods, &n))) goto fail;
    } else {
        if ((st = ts_model_load(ctx, pos[0], &m))) goto fail;
        n = ts_model_classes(m);
        if (!(mods = calloc((size_t)n, sizeof *mods))) {
            st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
            goto fail;
        }
        char origin[PATH_MAX];
        if (!realpath(pos[0], origin)) snprintf(origin, sizeof origin, "%s", pos[0]);
        for (int c = 0; c < n; c++)
            if ((st = ts_module_from_model(ctx, m, c, &mods[c])) || (st = ts_module_set_origin(ctx, mods[c], origin)))
                goto fail;
    }
    int at = -1;
    for (int i = 0; i < n; i++) {
        ts_module_info in;
        ts_module_info_get(mods[i], &in);
        if (in.class_index == cls) at = i;
    }
    if (at < 0) {
        st = ts_ctx_set_error(ctx, TS_ENOTFOUND, "%s: has no module for class %ld", pos[0], cls);
        goto fail;
    }
    if ((st = ts_module_load(ctx, with, &repl))) goto fail;
    ts_module_info old, neu;
    ts_module_info_get(mods[at], &old);
    ts_module_info_get(repl, &neu);
    if (strcmp(old.class_name, neu.class_name))
        fprintf(stderr, "tessera replace: note: class %ld is '%s' here and '%s' in %s; the new model calls it '%s'\n",
                cls, old.class_name, neu.class_name, with, neu.class_name);
    ts_module_free(mods[at]);
    mods[at] = repl;
    repl = NULL;
    if (cli_get(&replace_cmd, "retune")) {
        long samples;
        if (!cli_int(&replace_cmd, "retune-samples", 500, 1, 1L << 30, &samples)) {
            rc = EXIT_USAGE;
            goto done;
        }
        if ((st = retune_modules(ctx, mods, n, cli_get(&replace_cmd, "data-dir"), samples))) goto fail;
    }
    if ((st = ts_compose(ctx, mods, n, &cc, &cm))) goto fail;
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    print_compose_summary(cm, mods, n);
    printf("class %ld now from %s; wrote %s\n", cls, with, out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("replace", ctx, st);
done:
    ts_modules_free(mods, n);
    ts_module_free(repl);
    ts_model_free(m);
    ts_model_free(cm);
    ts_ctx_free(ctx);
    return rc;
}

/* ----------------------------------------------------------------- reuse */

static cli_opt reuse_opts[] = {
    {"out", "FILE", "where to write the new classifier (required)", NULL},
    {"retune", NULL, "re-run tangling identification against the other modules' classes, and calibrate\n"
                     "                             each module's score on them (no weight is trained)", NULL},
    {"retune-samples", "N", "training samples per class used for re-tuning (default 500)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"no-eval", NULL, "skip the evaluation on the classes' test samples", NULL},
    {"max-macs", "F", "compute budget, as for compose (default 1.5)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
};
static cli_cmd reuse_cmd = {
    "reuse", "MODULE.tsm... --out FILE [--retune]",
    "Builds a k-class classifier from modules of any models and datasets (for example two\n"
    "Fashion-MNIST classes and two MNIST digits) and evaluates it on the test samples of those\n"
    "classes, each from its module's dataset. --retune is the paper's continuous learning.",
    reuse_opts, sizeof reuse_opts / sizeof reuse_opts[0]};

int cmd_reuse(int argc, char **argv) {
    char *pos[MAX_MODULE_ARGS];
    int npos;
    int rc = cli_parse(&reuse_cmd, argc, argv, pos, &npos, MAX_MODULE_ARGS);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&reuse_cmd, "out");
    if (npos < 2 || !out) {
        fprintf(stderr, "tessera reuse: expected at least two MODULE files and --out FILE (see --help)\n");
        return EXIT_USAGE;
    }
    long samples;
    ts_compose_config cc;
    if (!cli_int(&reuse_cmd, "retune-samples", 500, 1, 1L << 30, &samples) || !compose_opts_get(&reuse_cmd, &cc))
        return EXIT_USAGE;
    if ((rc = cli_refuse_same(&reuse_cmd, "--out", out, (const char *const *)pos, npos))) return rc;
    const char *ddir = cli_get(&reuse_cmd, "data-dir");
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_module **mods = NULL;
    ts_model *cm = NULL;
    ts_dataset *te = NULL;
    ts_status st;
    if ((rc = cli_setup_ctx(&reuse_cmd, ctx))) goto done;
    cli_setup_files(&reuse_cmd, ctx);
    if ((st = load_modules(ctx, pos, npos, &mods))) goto fail;
    if (cli_get(&reuse_cmd, "retune")) {
        if ((st = retune_modules(ctx, mods, npos, ddir, samples))) goto fail;
    }
    if ((st = ts_compose(ctx, mods, npos, &cc, &cm))) goto fail;
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    print_compose_summary(cm, mods, npos);
    if (!cli_get(&reuse_cmd, "no-eval")) {
        ts_eval_report ev;
        if ((st = ts_composed_dataset(ctx, cm, TS_SPLIT_TEST, ddir, 0, &te))) goto fail;
        if ((st = ts_evaluate(ctx, cm, te, 256, &ev))) goto fail;
        printf("test: top-1 %.2f%% on %lld images;", 100 * ev.top1, (long long)ev.count);
        for (int c = 0; c < ev.classes; c++) {
            char name[64];
            printf(" %s %.2f%%", cli_class_name(cm, c, name, sizeof name), 100 * ts_eval_recall(&ev, c));
        }
        printf("\n");
        ts_eval_report_free(&ev);
    }
    printf("wrote %s\n", out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("reuse", ctx, st);
done:
    ts_modules_free(mods, mods ? npos : 0);
    ts_model_free(cm);
    ts_dataset_free(te);
    ts_ctx_free(ctx);
    return rc;
}
