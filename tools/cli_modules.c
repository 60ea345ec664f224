/* Shared by tessera decompose, compose, replace and reuse: loading modules, the
 * composition summary, re-tuning. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli_modules.h"
#include "cli_text.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h> /* rmdir */

/* ---------------------------------------------------------------- shared */

int64_t model_macs(const ts_model *m) {
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
ts_status load_modules(ts_ctx *ctx, char **paths, int n, ts_module ***out) {
    ts_module **mods = calloc((size_t)(n ? n : 1), sizeof *mods);
    if (!mods) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    ts_status st = TS_OK;
    ts_module_info first, info;
    for (int i = 0; i < n && !st; i++) {
        if ((st = ts_module_load(ctx, paths[i], &mods[i]))) break;
        ts_module_info_get(mods[i], i ? &info : &first);
        if (!i) cli_set_image_shape(ctx, first.input); /* image folders are read at the modules' input shape */
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

int progress_cb(void *user, int64_t done, int64_t total) {
    progress_update(user, "scanning", done, total, NULL, 1.0);
    return 0;
}

int parse_class_list(const char *s, int **out, int *n) {
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

void print_compose_summary(const ts_model *cm, ts_module *const *mods, int k) {
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
    const int routed = cli_text_model_translates(cm); /* a translator's language modules */
    printf("composed %d %s:", k, routed ? "languages" : "classes");
    for (int j = 0; j < k; j++) {
        char name[64];
        ts_module_info a;
        ts_module_info_get(mods[j], &a);
        printf("%s %s", j ? "," : "", routed ? a.class_name : cli_class_name(cm, j, name, sizeof name));
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
    json_out *J = cli_json();
    if (J) {
        json_array(J, "classes");
        for (int j = 0; j < k; j++) {
            char name[64];
            ts_module_info a;
            ts_module_info_get(mods[j], &a);
            json_str(J, NULL, routed ? a.class_name : cli_class_name(cm, j, name, sizeof name));
        }
        json_close(J);
        json_num(J, "macs", (double)macs);
        json_num(J, "origin_macs", (double)origin_macs);
        json_num(J, "macs_vs_origin", origin_macs ? (double)macs / (double)origin_macs : 0.0);
        json_int(J, "layers", ts_model_layer_count(cm));
        json_int(J, "origins", origins);
        json_int(J, "uncalibrated", origins > 1 ? uncalibrated : 0);
    }
    if (origins > 1 && uncalibrated && !routed)
        printf("note: the modules come from %d models and %d of their scores are not calibrated against each other;\n"
               "      --retune (tessera reuse, tessera replace) calibrates them on training data\n",
               origins, uncalibrated);
}

int compose_opts_get(const cli_cmd *cmd, ts_compose_config *cc) {
    ts_compose_config_default(cc);
    return cli_float(cmd, "max-macs", 1.5, 1.0, 1e9, &cc->max_macs);
}

/* --retune of text modules: calibration only (ts_module_retune_text), on the training
 * split of their dataset read as the composed model reads it; *used gets the number of
 * texts it read. */
static ts_status retune_text_modules(ts_ctx *ctx, ts_module **mods, int k, const ts_model *cm, const char *ddir,
                                     long limit, int64_t *used) {
    *used = 0;
    if (cli_text_model_tags(cm) || cli_text_model_translates(cm))
        return ts_ctx_set_error(ctx, TS_EUNSUPPORTED, "--retune: these are modules of a %s; re-tuning calibrates "
                                "classifiers' modules (one label a text), these compose as decomposed",
                                cli_text_model_tags(cm) ? "tagger" : "translator");
    ts_text_dataset *tt = NULL;
    ts_status st = cli_text_composed_dataset(ctx, cm, "the composed modules", TS_SPLIT_TRAIN, ddir, 0, &tt);
    for (int j = 0; j < k && !st; j++) st = ts_module_retune_text(ctx, mods[j], tt, j, limit, 256);
    for (int j = 0; j < k && !st; j++) {
        int64_t c = 0;
        for (int64_t i = 0; i < tt->count; i++) c += tt->labels[i] == j;
        *used += c < limit ? c : limit;
    }
    ts_text_dataset_free(tt);
    return st;
}

/* --retune of reuse and replace: each module is re-tuned (ts_module_retune) with the
 * first `limit` training samples of its own class as positives and those of every
 * other listed class as negatives, each class from its module's dataset; text modules
 * are calibrated (ts_module_retune_text). Prints what it did. */
ts_status retune_modules(ts_ctx *ctx, ts_module **mods, int k, const char *ddir, long limit) {
    double t0 = cli_now();
    ts_model *cm = NULL;
    ts_dataset *tr = NULL;
    int64_t *idx = NULL, used = 0;
    ts_compose_config cc;
    ts_compose_config_default(&cc);
    ts_status st = ts_compose(ctx, mods, k, &cc, &cm);
    int text = 0;
    for (int j = 0; j < k && !st; j++) text |= ts_module_origin_meta(mods[j], TEXT_META_VOCAB) != NULL;
    if (text) {
        /* refuses modules that read images or other vocabularies beside these */
        st = cli_text_compose_meta(ctx, mods, k, cm);
        if (!st) st = retune_text_modules(ctx, mods, k, cm, ddir, limit, &used);
        goto done;
    }
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
    if (!st) used = tr->count;
done:
    if (!st)
        printf("re-tuned %d modules on %lld training %s in %.2fs%s\n", k, (long long)used, text ? "texts" : "samples",
               cli_now() - t0, text ? " (calibration only: text modules keep their units)" : "");
    if (!st && cli_json()) {
        json_object(cli_json(), "retuned");
        json_int(cli_json(), "modules", k);
        json_int(cli_json(), "samples", (long long)used);
        json_num(cli_json(), "seconds", cli_now() - t0);
        json_close(cli_json());
    }
    free(idx);
    ts_dataset_free(tr);
    ts_model_free(cm);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every *.tsm in dir, ordered by class index; refused when one is the file `output`. */
ts_status load_module_dir(ts_ctx *ctx, const char *dir, const char *output, ts_module ***out, int *n) {
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
        if (output && cli_same_file(output, paths[np - 1])) {
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
