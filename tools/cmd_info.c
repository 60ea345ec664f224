/* tessera info and tessera zoo. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static cli_opt info_opts[] = {
    {"input", "CxHxW", "with an architecture: input shape to use (default: as declared)", NULL},
    {"classes", "N", "with an architecture: class count to use", NULL},
    {"profile", NULL, "also run inference and print, per layer as it runs (fused chains as one), the bytes it moves, "
                      "its time, GFLOP/s and FLOPs per byte against this machine's measured peak and bandwidth", NULL},
    {"batch", "N", "with --profile: batch size (default 1)", NULL},
    {"iters", "K", "with --profile: inference calls averaged (default 20)", NULL},
    {"threads", "N", "with --profile: threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "with --profile: kernels, oneDNN (default) or the plain-C reference", NULL},
    CLI_OPT_JSON,
};
static cli_cmd info_cmd = {"info", "MODEL|MODEL.onnx|MODULE.tsm|ARCH [options]",
                           "Prints every layer with its inputs, output shape, parameters, multiply-accumulates per\n"
                           "sample and attributes (as the architecture text writes them), the totals, and the model's\n"
                           "metadata. ARCH may be a zoo name or an .arch file. With --profile, also where inference\n"
                           "spends its time and whether each layer is compute- or memory-bound (a roofline measured\n"
                           "on this machine: sgemm peak and STREAM-triad bandwidth; docs/cli.md).",
                           info_opts, sizeof info_opts / sizeof info_opts[0]};

static void shape_str(const ts_shape *s, char *buf, size_t n) {
    size_t off = 0;
    buf[0] = '\0';
    for (int d = 0; d < s->ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, d ? "x%lld" : "%lld", (long long)s->dims[d]);
}

static void human(double v, char *buf, size_t n) {
    if (v >= 1e9) snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%.1fK", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
}

/* Layer i (li); its inputs by name through the model: li->inputs holds only the first 8. */
static void json_layer(json_out *J, const ts_model *m, int i, const ts_layer_info *li) {
    char shape[64];
    shape_str(&li->out, shape, sizeof shape);
    json_object(J, NULL);
    json_str(J, "name", li->name);
    json_str(J, "kind", li->kind);
    json_array(J, "inputs");
    for (int k = 0; k < li->ninputs; k++) json_str(J, NULL, ts_model_layer_input(m, i, k));
    json_close(J);
    json_str(J, "output", shape);
    json_int(J, "params", (long long)li->params);
    json_int(J, "macs", (long long)li->macs);
    json_str(J, "attributes", li->attrs);
    json_close(J);
}

static void json_module(json_out *J, const ts_module_info *mi) {
    json_object(J, "module");
    json_int(J, "class", mi->class_index);
    json_str(J, "name", mi->class_name);
    json_str(J, "origin", mi->origin);
    json_str(J, "dataset", mi->dataset);
    json_int(J, "origin_classes", mi->origin_classes);
    char id[24];
    snprintf(id, sizeof id, "%016llx", (unsigned long long)mi->origin_id);
    json_str(J, "origin_id", id);
    json_int(J, "positives", mi->positives);
    json_int(J, "negatives", mi->negatives);
    json_num(J, "weights_kept", mi->weights ? (double)mi->weights_kept / mi->weights : 1.0);
    json_num(J, "conv_units_kept", mi->conv_units ? (double)mi->conv_units_kept / mi->conv_units : 1.0);
    json_num(J, "units_kept", mi->units ? (double)mi->units_kept / mi->units : 1.0);
    json_num(J, "jaccard", mi->jaccard);
    json_num(J, "scale", mi->scale);
    json_num(J, "shift", mi->shift);
    json_num(J, "threshold", mi->threshold);
    json_str(J, "method", cli_method_name(mi->method));
    json_int(J, "kernels", (long long)mi->kernels);
    json_int(J, "kernels_kept", (long long)mi->kernels_kept);
    json_int(J, "origin_params", (long long)mi->params);
    json_int(J, "origin_macs", (long long)mi->origin_macs);
    json_close(J);
}

int cmd_info(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&info_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&info_cmd);
    if (J) json_str(J, "model", npos == 1 ? pos[0] : NULL);
    if (npos != 1) {
        fprintf(stderr, "tessera info: expected one MODEL or ARCH (see tessera info --help)\n");
        return EXIT_USAGE;
    }
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *m = NULL;
    ts_status st;
    ts_shape in = {0, {0}};
    const char *ins = cli_get(&info_cmd, "input");
    if (ins) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", ins);
        char *save = NULL;
        for (char *t = strtok_r(buf, "x", &save); t; t = strtok_r(NULL, "x", &save)) {
            char *end;
            long v = strtol(t, &end, 10);
            if (*end || end == t || v < 1 || v > 1 << 24 || in.ndim == TS_MAX_DIMS) {
                fprintf(stderr, "tessera info: --input: '%s' is not like 3x32x32\n", ins);
                ts_ctx_free(ctx);
                return EXIT_USAGE;
            }
            in.dims[in.ndim++] = v;
        }
    }
    long classes, batch, iters;
    if (!cli_int(&info_cmd, "classes", 0, 0, 1 << 24, &classes) || !cli_int(&info_cmd, "batch", 1, 1, 1 << 16, &batch) ||
        !cli_int(&info_cmd, "iters", 20, 1, 1 << 20, &iters)) {
        ts_ctx_free(ctx);
        return EXIT_USAGE;
    }
    const int prof = cli_get(&info_cmd, "profile") != NULL;
    if (!prof && (cli_get(&info_cmd, "batch") || cli_get(&info_cmd, "iters") || cli_get(&info_cmd, "threads") ||
                  cli_get(&info_cmd, "backend"))) {
        fprintf(stderr, "tessera info: --batch, --iters, --threads and --backend go with --profile\n");
        ts_ctx_free(ctx);
        return EXIT_USAGE;
    }
    if ((rc = cli_setup_ctx(&info_cmd, ctx))) {
        ts_ctx_free(ctx);
        return rc;
    }
    const char *zoo = ts_zoo_arch(pos[0]);
    size_t len = strlen(pos[0]);
    if (zoo) st = ts_model_from_arch(ctx, zoo, pos[0], &in, (int)classes, 1, &m);
    else if (len > 5 && !strcmp(pos[0] + len - 5, ".arch")) st = ts_model_from_arch_file(ctx, pos[0], &in, (int)classes, 1, &m);
    else if (len > 4 && !strcmp(pos[0] + len - 4, ".tsm")) {
        /* a module: its own line, then the module alone as a model (the origin with masks) */
        ts_module *mod = NULL;
        if (!(st = ts_module_load(ctx, pos[0], &mod))) {
            ts_module_info mi;
            ts_module_info_get(mod, &mi);
            printf("module for class %d '%s' of %s (dataset %s, %d classes, origin id %016llx)\n", mi.class_index,
                   mi.class_name, *mi.origin ? mi.origin : "?", *mi.dataset ? mi.dataset : "?", mi.origin_classes,
                   (unsigned long long)mi.origin_id);
            /* a module without ReLU masks (a text model's: its units are removed from the
             * stored model itself) has no unit or kernel figures to print */
            const int masked = mi.units > 0;
            printf("positives %d, negatives %d; keeps %.2f%% of weights", mi.positives, mi.negatives,
                   mi.weights ? 100.0 * mi.weights_kept / mi.weights : 100.0);
            if (masked)
                printf(", %.2f%% of conv output positions, %.2f%% of ReLU units",
                       mi.conv_units ? 100.0 * mi.conv_units_kept / mi.conv_units : 100.0,
                       100.0 * mi.units_kept / mi.units);
            printf("; Jaccard %.4f; score = %g * margin + %g, yes above %g\n", mi.jaccard, (double)mi.scale,
                   (double)mi.shift, (double)mi.threshold);
            if (J) json_module(J, &mi);
            st = ts_module_model(ctx, mod, &m);
            if (!st) {
                /* the module alone is sliced: what it really costs against its origin */
                int64_t macs = 0;
                for (int i = 0; i < ts_model_layer_count(m); i++) {
                    ts_layer_info li;
                    ts_model_layer(m, i, &li);
                    macs += li.macs;
                }
                const int64_t p = ts_model_param_count(m);
                if (J) {
                    json_int(J, "module_params", (long long)p);
                    json_int(J, "module_macs", (long long)macs);
                }
                printf("method %s; ", cli_method_name(mi.method));
                if (masked)
                    printf("kernels kept %lld of %lld (%.2f%%); ", (long long)mi.kernels_kept, (long long)mi.kernels,
                           mi.kernels ? 100.0 * mi.kernels_kept / mi.kernels : 100.0);
                printf("alone it has %lld parameters (%.2f%% of the "
                       "origin's %lld) and %lld MACs per sample (%.2f%% of the origin's %lld)\n", (long long)p,
                       mi.params ? 100.0 * p / mi.params : 100.0, (long long)mi.params, (long long)macs,
                       mi.origin_macs ? 100.0 * macs / mi.origin_macs : 100.0, (long long)mi.origin_macs);
            }
            ts_module_free(mod);
        }
    } else st = cli_load_model(ctx, pos[0], CLI_LOAD_ONNX, &m);
    if (st) {
        rc = cli_fail("info", ctx, st);
        ts_ctx_free(ctx);
        return rc;
    }
    printf("%-4s %-24s %-13s %-28s %-12s %10s %10s  %s\n", "#", "layer", "kind", "inputs", "output", "params", "MACs",
           "attributes");
    int64_t tp = 0, tm = 0;
    if (J) json_array(J, "layers");
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        ts_model_layer(m, i, &li);
        if (J) json_layer(J, m, i, &li);
        char inputs[256] = "", shape[64], p[32], mac[32];
        size_t off = 0;
        for (int k = 0; k < li.ninputs && off < sizeof inputs; k++)
            off += (size_t)snprintf(inputs + off, sizeof inputs - off, k ? ",%s" : "%s", ts_model_layer_input(m, i, k));
        shape_str(&li.out, shape, sizeof shape);
        human((double)li.params, p, sizeof p);
        human((double)li.macs, mac, sizeof mac);
        printf("%-4d %-24s %-13s %-28s %-12s %10s %10s  %s\n", i, li.name, li.kind, inputs, shape, p, mac, li.attrs);
        tp += li.params;
        tm += li.macs;
    }
    char p[32], mac[32];
    human((double)tp, p, sizeof p);
    human((double)tm, mac, sizeof mac);
    char nc[48];
    printf("total: %d layers, %lld parameters (%s), %lld MACs per sample (%s), %s\n", ts_model_layer_count(m),
           (long long)tp, p, (long long)tm, mac, cli_plural(nc, sizeof nc, ts_model_classes(m), "class"));
    const ts_shape dflt = ts_model_input_shape(m);
    if (ts_model_any_size(m))
        printf("input: height and width free (H x W any; shapes, MACs and classes above at the default %lldx%lld)\n",
               (long long)dflt.dims[1], (long long)dflt.dims[2]);
    if (J) {
        json_close(J);
        json_int(J, "layer_count", ts_model_layer_count(m));
        json_int(J, "params", (long long)tp);
        json_int(J, "macs", (long long)tm);
        json_int(J, "classes", ts_model_classes(m));
        json_bool(J, "any_size", ts_model_any_size(m));
        json_object(J, "meta");
        for (int i = 0; i < ts_model_meta_count(m); i++) {
            const char *k, *v;
            ts_model_meta_at(m, i, &k, &v);
            json_str(J, k, v);
        }
        json_close(J);
    }
    for (int i = 0; i < ts_model_meta_count(m); i++) {
        const char *k, *v;
        ts_model_meta_at(m, i, &k, &v);
        if (!strcmp(k, "classes")) {
            printf("meta %s: ", k);
            for (const char *c = v; *c; c++) putchar(*c == '\n' ? ',' : *c);
            printf("\n");
        } else if (strchr(v, '\n')) { /* a vocabulary: its first line and the count of the rest (--json has it all) */
            long lines = 0;
            for (const char *c = v; *c; c++) lines += *c == '\n';
            printf("meta %s: %.*s (%ld more lines)\n", k, (int)(strchr(v, '\n') - v), v, lines);
        } else {
            printf("meta %s: %s\n", k, v);
        }
    }
    rc = prof ? info_profile(ctx, m, batch, iters, J) : EXIT_OK;
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}

static cli_cmd zoo_cmd = {"zoo", "[NAME]", "Lists the built-in architectures, or prints one (save it, edit it, pass it to --arch).",
                          NULL, 0};

int cmd_zoo(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&zoo_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    if (npos == 1) {
        const char *t = ts_zoo_arch(pos[0]);
        if (!t) {
            fprintf(stderr, "tessera zoo: no architecture named '%s' (tessera zoo lists them)\n", pos[0]);
            return EXIT_NOTFOUND;
        }
        fputs(t, stdout);
        return EXIT_OK;
    }
    for (int i = 0; ts_zoo_name(i); i++) printf("%s\n", ts_zoo_name(i));
    return EXIT_OK;
}
