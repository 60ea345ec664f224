/* Option parsing, exit codes, progress bar: everything the subcommands share. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_exit_code(ts_status st) {
    switch (st) {
    case TS_OK: return EXIT_OK;
    case TS_EINVAL: return EXIT_USAGE;
    case TS_ENOMEM: return EXIT_NOMEM;
    case TS_EIO: return EXIT_IO;
    case TS_EFORMAT: return EXIT_FORMAT;
    case TS_EUNSUPPORTED: return EXIT_UNSUPPORTED;
    case TS_ESHAPE: return EXIT_SHAPE;
    case TS_ENOTFOUND: return EXIT_NOTFOUND;
    case TS_EDIVERGED: return EXIT_DIVERGED;
    case TS_ECANCELED: return EXIT_INTERRUPTED;
    default: return EXIT_FAILURE_OTHER;
    }
}

int cli_fail(const char *cmd, ts_ctx *ctx, ts_status st) {
    const char *msg = ctx ? ts_ctx_error(ctx) : "";
    fprintf(stderr, "tessera %s: %s\n", cmd, *msg ? msg : ts_status_name(st));
    if (cli_json()) cli_json_finish(cli_exit_code(st), *msg ? msg : ts_status_name(st));
    return cli_exit_code(st);
}

void cli_help(const cli_cmd *cmd, FILE *f) {
    fprintf(f, "usage: tessera %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->nopts) fprintf(f, "\noptions:\n");
    for (int i = 0; i < cmd->nopts; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", cmd->opts[i].name, cmd->opts[i].arg ? " " : "",
                 cmd->opts[i].arg ? cmd->opts[i].arg : "");
        fprintf(f, "  %-26s %s\n", left, cmd->opts[i].help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help");
}

static cli_opt *find_opt(const cli_cmd *cmd, const char *name, size_t len) {
    for (int i = 0; i < cmd->nopts; i++)
        if (strlen(cmd->opts[i].name) == len && !strncmp(cmd->opts[i].name, name, len)) return &cmd->opts[i];
    return NULL;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, char **pos, int *npos, int maxpos) {
    *npos = 0;
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            cli_help(cmd, stdout);
            return -1;
        }
        if (!only_pos && a[0] == '-' && a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            cli_opt *o = find_opt(cmd, name, len);
            if (!o) {
                fprintf(stderr, "tessera %s: unknown option '--%.*s' (see tessera %s --help)\n", cmd->name, (int)len,
                        name, cmd->name);
                return EXIT_USAGE;
            }
            if (!o->arg) {
                if (eq) {
                    fprintf(stderr, "tessera %s: --%s takes no value\n", cmd->name, o->name);
                    return EXIT_USAGE;
                }
                o->value = "1";
            } else if (eq) {
                o->value = eq + 1;
            } else {
                if (i + 1 >= argc) {
                    fprintf(stderr, "tessera %s: --%s needs a value (%s)\n", cmd->name, o->name, o->arg);
                    return EXIT_USAGE;
                }
                o->value = argv[++i];
            }
            continue;
        }
        if (*npos >= maxpos) {
            fprintf(stderr, "tessera %s: unexpected argument '%s' (see tessera %s --help)\n", cmd->name, a, cmd->name);
            return EXIT_USAGE;
        }
        pos[(*npos)++] = a;
    }
    return 0;
}

const char *cli_get(const cli_cmd *cmd, const char *name) {
    cli_opt *o = find_opt(cmd, name, strlen(name));
    return o ? o->value : NULL;
}

int cli_int(const cli_cmd *cmd, const char *name, long def, long lo, long hi, long *out) {
    const char *v = cli_get(cmd, name);
    if (!v) {
        *out = def;
        return 1;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "tessera %s: --%s: '%s' is not an integer in %ld..%ld\n", cmd->name, name, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

int cli_float(const cli_cmd *cmd, const char *name, double def, double lo, double hi, double *out) {
    const char *v = cli_get(cmd, name);
    if (!v) {
        *out = def;
        return 1;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "tessera %s: --%s: '%s' is not a number in %g..%g\n", cmd->name, name, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

int cli_compress_activations(const cli_cmd *cmd, double *eb, int *adaptive) {
    const char *v = cli_get(cmd, "compress-activations");
    *adaptive = v && !strcmp(v, "auto");
    if (*adaptive) {
        *eb = 0.01; /* where each layer starts (docs/compressed-activations.md) */
        return 1;
    }
    return cli_float(cmd, "compress-activations", -1.0, 0.0, 0.999, eb);
}

int cli_shape(const cli_cmd *cmd, const char *name, ts_shape *out) {
    memset(out, 0, sizeof *out);
    const char *v = cli_get(cmd, name);
    for (const char *p = v; p && *p;) {
        char *end;
        errno = 0;
        long d = strtol(p, &end, 10);
        if (errno || end == p || d < 1 || d > 1 << 24 || out->ndim == TS_MAX_DIMS || (*end && *end != 'x') ||
            (*end == 'x' && !end[1])) {
            fprintf(stderr, "tessera %s: --%s: '%s' is not like 3x32x32\n", cmd->name, name, v);
            return 0;
        }
        out->dims[out->ndim++] = d;
        p = *end ? end + 1 : end;
    }
    return 1;
}

int cli_setup_ctx(const cli_cmd *cmd, ts_ctx *ctx) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) ncpu = 1;
    long threads;
    if (!cli_int(cmd, "threads", ncpu, 1, 1024, &threads)) return EXIT_USAGE;
    if (threads > ncpu) {
        /* more threads than cores only makes each step wait on the others */
        fprintf(stderr, "tessera %s: note: --threads %ld is more than the %ld cores here; using %ld\n", cmd->name,
                threads, ncpu, ncpu);
        threads = ncpu;
    }
    ts_status st = ts_ctx_set_threads(ctx, (int)threads);
    if (st) return cli_fail(cmd->name, ctx, st);
    const char *be = cli_get(cmd, "backend");
    if (be) {
        if (!strcmp(be, "dnnl") || !strcmp(be, "onednn")) ts_ctx_set_backend(ctx, TS_BACKEND_DNNL);
        else if (!strcmp(be, "ref")) ts_ctx_set_backend(ctx, TS_BACKEND_REF);
        else {
            fprintf(stderr, "tessera %s: --backend: '%s' is not one of dnnl, ref\n", cmd->name, be);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static void print_note(void *user, const char *note) {
    fprintf(stderr, "tessera %s: note: %s\n", (const char *)user, note);
}

void cli_setup_files(const cli_cmd *cmd, ts_ctx *ctx) {
    ts_ctx_set_note_hook(ctx, print_note, (void *)cmd->name);
    ts_ctx_set_force(ctx, cli_get(cmd, "force") != NULL);
}

/* What names a file: its device and inode when it exists, else its folder's and its
 * own name (so that two outputs not written yet compare too). */
typedef struct file_id {
    int kind; /* 0: neither exists, 1: the file, 2: a name in an existing folder */
    dev_t dev;
    ino_t ino;
    const char *name;
} file_id;

static file_id file_id_of(const char *path) {
    file_id id = {0, 0, 0, NULL};
    struct stat st;
    if (stat(path, &st) == 0) {
        id.kind = 1;
        id.dev = st.st_dev;
        id.ino = st.st_ino;
        return id;
    }
    const char *slash = strrchr(path, '/');
    id.name = slash ? slash + 1 : path;
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (*id.name && stat(dir, &st) == 0) {
        id.kind = 2;
        id.dev = st.st_dev;
        id.ino = st.st_ino;
    }
    return id;
}

int cli_same_file(const char *a, const char *b) {
    if (!a || !b) return 0;
    file_id x = file_id_of(a), y = file_id_of(b);
    if (!x.kind || x.kind != y.kind || x.dev != y.dev || x.ino != y.ino) return 0;
    return x.kind == 1 || !strcmp(x.name, y.name);
}

int cli_refuse_same(const cli_cmd *cmd, const char *what, const char *out, const char *const *inputs, int n) {
    struct stat st;
    for (int i = 0; i < n; i++) /* an input that is not there (a zoo name) cannot be overwritten */
        if (out && inputs[i] && stat(inputs[i], &st) == 0 && cli_same_file(out, inputs[i])) {
            fprintf(stderr, "tessera %s: %s %s is the same file as the input %s; choose another output\n", cmd->name,
                    what, out, inputs[i]);
            return EXIT_USAGE;
        }
    return 0;
}

int cli_setup_bf16(const cli_cmd *cmd, ts_ctx *ctx) {
    const char *wino = cli_get(cmd, "winograd");
    if (wino) {
        ts_winograd mode = !strcmp(wino, "off")         ? TS_WINOGRAD_OFF
                           : !strcmp(wino, "inference") ? TS_WINOGRAD_INFERENCE
                           : !strcmp(wino, "training")  ? TS_WINOGRAD_TRAINING
                                                        : (ts_winograd)-1;
        if ((int)mode < 0) {
            fprintf(stderr, "tessera %s: --winograd %s: expected off, inference or training\n", cmd->name, wino);
            return EXIT_USAGE;
        }
        ts_ctx_set_winograd(ctx, mode);
    }
    if (!cli_get(cmd, "bf16")) return 0;
    if (cli_get(cmd, "constant-time") || ts_ctx_get_backend(ctx) != TS_BACKEND_DNNL) {
        fprintf(stderr, "tessera %s: --bf16 runs oneDNN kernels; it cannot be combined with %s\n", cmd->name,
                cli_get(cmd, "constant-time") ? "--constant-time" : "--backend ref");
        return EXIT_USAGE;
    }
    ts_status st = ts_ctx_set_bf16(ctx, 1);
    return st ? cli_fail(cmd->name, ctx, st) : 0;
}

const char *cli_class_name(const ts_model *m, int i, char *buf, size_t n) {
    const char *names = ts_model_get_meta(m, "classes");
    snprintf(buf, n, "%d", i);
    if (!names) return buf;
    const char *p = names;
    for (int k = 0; k < i && p; k++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p || !*p) return buf;
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len >= n) len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_start(progress *p) {
    p->start = p->last = cli_now();
    p->tty = isatty(2);
    p->last_decile = -1;
    p->base = 0;
    p->unit = NULL;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 359999) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void progress_update(progress *p, const char *label, long long done, long long total, const char *extra,
                     double items_per_unit) {
    double now = cli_now();
    int decile = total > 0 ? (int)(done * 10 / total) : 0;
    if (p->tty) {
        if (done < total && now - p->last < 0.1) return;
    } else if (decile == p->last_decile && done < total) {
        return;
    }
    p->last = now;
    p->last_decile = decile;
    double el = now - p->start;
    /* the rate needs steps timed from start: none yet on the first tick after it */
    const long long timed = done - p->base;
    double rate = el > 0 && timed > 0 ? (double)timed * items_per_unit / el : 0;
    char eta[32], elapsed[32];
    fmt_time(eta, sizeof eta, timed > 0 ? el / (double)timed * (double)(total - done) : 0);
    fmt_time(elapsed, sizeof elapsed, el);
    char bar[31];
    int fill = total > 0 ? (int)(30 * done / total) : 0;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[30] = '\0';
    char speed[40] = "";
    const char *unit = p->unit ? p->unit : "img";
    if (items_per_unit > 0 && timed > 0) snprintf(speed, sizeof speed, "%.0f %s/s ", rate, unit);
    else if (items_per_unit > 0) snprintf(speed, sizeof speed, "- %s/s ", unit);
    fprintf(stderr, "%s%s [%s] %lld/%lld %s | %s%s %s%s", p->tty ? "\r" : "", label, bar, done, total,
            extra ? extra : "", speed, done < total ? "ETA" : "in", done < total ? eta : elapsed, p->tty ? "\x1b[K" : "\n");
    fflush(stderr);
}

void progress_end(progress *p) {
    if (p->tty) fputc('\n', stderr);
}

ts_status cli_first_samples(ts_ctx *ctx, const ts_dataset *ds, long limit, ts_dataset **out) {
    *out = NULL;
    if (limit <= 0 || limit >= ds->count) return TS_OK;
    int64_t *idx = malloc((size_t)limit * sizeof *idx);
    if (!idx) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    for (long i = 0; i < limit; i++) idx[i] = i;
    ts_status st = ts_dataset_subset(ctx, ds, idx, limit, out);
    free(idx);
    return st;
}

const char *cli_data_dir(const cli_cmd *cmd, const ts_model *m) {
    const char *d = cli_get(cmd, "data-dir");
    if (d || cli_get(cmd, "data")) return d;
    return ts_model_get_meta(m, "data.dir");
}

ts_status cli_load_dataset(ts_ctx *ctx, const char *spec, ts_split split, const char *dir, long limit, ts_dataset **out) {
    ts_dataset *ds, *cut;
    ts_status st = ts_dataset_load_first(ctx, spec, split, dir, limit, &ds); /* reads no more than it keeps */
    if (st) return st;
    if ((st = cli_first_samples(ctx, ds, limit, &cut))) {
        ts_dataset_free(ds);
        return st;
    }
    if (cut) {
        ts_dataset_free(ds);
        ds = cut;
    }
    *out = ds;
    return TS_OK;
}

int cli_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

const char *cli_num(char *buf, size_t n, double v, int decimals) {
    if (isfinite(v) && fabs(v) < 1e6) snprintf(buf, n, "%.*f", decimals, v);
    else snprintf(buf, n, "%.4g", v);
    return buf;
}

const char *cli_plural(char *buf, size_t n, long long count, const char *noun) {
    const size_t len = strlen(noun);
    snprintf(buf, n, "%lld %s%s", count, noun, count == 1 ? "" : len && noun[len - 1] == 's' ? "es" : "s");
    return buf;
}

const char *cli_method_name(ts_decompose_method m) {
    return m == TS_DECOMPOSE_GRAD ? "grad" : m == TS_DECOMPOSE_MWT ? "mwt" : m == TS_DECOMPOSE_GA ? "ga" : "activation";
}
