/* tessera patch: a weak model's class answered by a module from a stronger model
 * (CNNSplitter's patching; docs/modules.md "Patching a weak model"). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli_modules.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static cli_opt patch_opts[] = {
    {"class", "I|NAME", "the weak model's class to patch, by index or name (required)", NULL},
    {"with", "MODULE.tsm", "the module that answers it, from any model of the same input shape (required)", NULL},
    {"out", "FILE", "the patched model (.tsr, required)", NULL},
    {"data", "NAME|PATH", "training data the module's score range is measured on (default: the weak model's)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"rescale", "minmax|posterior", "the module's score as the class's output: rescaled to [0, 1] by its range on the\n"
                                    "                             training data (minmax, CNNSplitter's, default), or the probability of the\n"
                                    "                             class that a logistic regression on the training data gives (posterior)", NULL},
    {"limit", "N", "measure the range on the first N training samples only (default: all)", NULL},
    {"no-eval", NULL, "skip the test-set comparison of the weak and the patched model", NULL},
    {"force", NULL, "replace the output even when it is write-protected", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"quiet", NULL, "no progress bar", NULL},
};
static cli_cmd patch_cmd = {
    "patch", "WEAK --class I|NAME --with MODULE.tsm --out FILE [--data NAME|PATH] [options]",
    "Patches a model that is weak on one class with a module for that class cut from a stronger\n"
    "model (CNNSplitter, docs/modules.md): the patched model outputs the weak model's softmax,\n"
    "with the class's entry replaced by the module's score rescaled to [0, 1] by the least and\n"
    "greatest score it gives on the training data; the prediction is the highest. No retraining;\n"
    "the module may come from a model of other classes and other data. The result is one model,\n"
    "saved and exported like any other; `tessera eval FILE` prints the class's precision, recall\n"
    "and F1 and the other classes' accuracy beside the weak model's.",
    patch_opts, sizeof patch_opts / sizeof patch_opts[0]};

/* --class as an index or one of the weak model's class names; -1 when neither. */
static int class_arg(const ts_model *m, const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end) return v >= 0 && v < ts_model_classes(m) ? (int)v : -2;
    for (int c = 0; c < ts_model_classes(m); c++) {
        char name[64];
        if (!strcmp(cli_class_name(m, c, name, sizeof name), s)) return c;
    }
    return -1;
}

static void print_eval_row(const char *what, double weak, double patched) {
    printf("  %-24s %8.2f%% %8.2f%% %+8.2f\n", what, 100 * weak, 100 * patched, 100 * (patched - weak));
}

static void json_patch_eval(json_out *J, const char *key, const ts_patch_eval *e) {
    json_object(J, key);
    json_num(J, "target_precision", e->precision);
    json_num(J, "target_recall", e->recall);
    json_num(J, "target_f1", e->f1);
    json_num(J, "others", e->others);
    json_num(J, "top1", e->top1);
    json_close(J);
}

void print_patch_eval(const ts_patch_eval *w, const ts_patch_eval *p) {
    if (cli_json()) {
        json_patch_eval(cli_json(), "weak", w);
        json_patch_eval(cli_json(), "patched", p);
    }
    printf("  %-24s %9s %9s %8s\n", "", "weak", "patched", "change");
    print_eval_row("target precision", w->precision, p->precision);
    print_eval_row("target recall", w->recall, p->recall);
    print_eval_row("target F1", w->f1, p->f1);
    print_eval_row("other classes' accuracy", w->others, p->others);
    print_eval_row("top-1, all classes", w->top1, p->top1);
}

int cmd_patch(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&patch_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&patch_cmd, "out"), *cls = cli_get(&patch_cmd, "class"),
               *with = cli_get(&patch_cmd, "with");
    if (npos != 1 || !out || !cls || !with) {
        fprintf(stderr, "tessera patch: expected one WEAK model, --class, --with MODULE.tsm and --out FILE (see tessera "
                        "patch --help)\n");
        return EXIT_USAGE;
    }
    long limit;
    if (!cli_int(&patch_cmd, "limit", 0, 0, 1L << 40, &limit)) return EXIT_USAGE;
    const char *inputs[2] = {pos[0], with};
    if ((rc = cli_refuse_same(&patch_cmd, "--out", out, inputs, 2))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *weak = NULL, *pm = NULL;
    ts_module *mod = NULL;
    ts_dataset *train = NULL, *test = NULL;
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&patch_cmd, ctx))) goto done;
    cli_setup_files(&patch_cmd, ctx);
    if ((st = ts_file_check_output(ctx, out))) goto fail;
    if ((st = cli_load_model(ctx, pos[0], 0, &weak))) goto fail;
    const int target = class_arg(weak, cls);
    if (target < 0) {
        if (target == -2)
            fprintf(stderr, "tessera patch: --class: %s is out of range: %s has classes 0..%d\n", cls, pos[0],
                    ts_model_classes(weak) - 1);
        else
            fprintf(stderr, "tessera patch: --class: '%s' is neither a class index nor a class name of %s\n", cls,
                    pos[0]);
        rc = EXIT_USAGE;
        goto done;
    }
    if ((st = ts_module_load(ctx, with, &mod))) goto fail;
    const char *spec = cli_get(&patch_cmd, "data");
    if (!spec) spec = ts_model_get_meta(weak, "data");
    if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", pos[0]);
        goto fail;
    }
    const char *ddir = cli_data_dir(&patch_cmd, weak);
    if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TRAIN, ddir, limit, &train))) goto fail;
    char weak_abs[PATH_MAX], mod_abs[PATH_MAX];
    if (!realpath(pos[0], weak_abs)) snprintf(weak_abs, sizeof weak_abs, "%s", pos[0]);
    if (!realpath(with, mod_abs)) snprintf(mod_abs, sizeof mod_abs, "%s", with);
    ts_patch_config cfg;
    ts_patch_config_default(&cfg);
    const char *rs = cli_get(&patch_cmd, "rescale");
    if (rs && !strcmp(rs, "posterior")) cfg.rescale = TS_PATCH_POSTERIOR;
    else if (rs && strcmp(rs, "minmax")) {
        fprintf(stderr, "tessera patch: --rescale: '%s' is not minmax or posterior\n", rs);
        rc = EXIT_USAGE;
        goto done;
    }
    cfg.weak_name = weak_abs;
    cfg.module_name = mod_abs;
    progress pr;
    progress_start(&pr);
    const int quiet = cli_get(&patch_cmd, "quiet") != NULL;
    ts_patch_report rep;
    double t0 = cli_now();
    st = ts_patch(ctx, weak, target, mod, train, &cfg, quiet ? NULL : progress_cb, &pr, &pm, &rep);
    if (!quiet) progress_end(&pr);
    if (st) goto fail; /* the library's message names both files by their full paths */
    ts_module_info mi;
    ts_module_info_get(mod, &mi);
    char tname[64];
    printf("patched class %d (%s) of %s with %s (class %d '%s' of %s, %s) in %.2fs\n", target,
           cli_class_name(weak, target, tname, sizeof tname), pos[0], with, mi.class_index, mi.class_name,
           *mi.origin ? mi.origin : "an unnamed model", *mi.dataset ? mi.dataset : "unknown data", cli_now() - t0);
    printf("module score range on %lld training samples of %s: [%g, %g]; class output %s%s\n",
           (long long)rep.range_samples, spec, (double)rep.score_min, (double)rep.score_max,
           cfg.rescale == TS_PATCH_POSTERIOR ? "sigmoid(a s + b), fitted there" : "(s - min) / (max - min)",
           rep.renormalized ? "; the module's input normalization differs: mapped exactly" : "");
    printf("parameters: patched %lld, weak %lld; MACs per sample: %.3fM, weak %.3fM\n",
           (long long)ts_model_param_count(pm), (long long)ts_model_param_count(weak), model_macs(pm) / 1e6,
           model_macs(weak) / 1e6);
    if (!cli_get(&patch_cmd, "no-eval")) {
        ts_patch_eval we, pe;
        if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TEST, ddir, 0, &test))) goto fail;
        if ((st = ts_patch_evaluate(ctx, pm, test, 256, &we, &pe))) goto fail;
        printf("on %s test (%lld of the class, %lld of the others):\n", spec, (long long)we.target_count,
               (long long)we.other_count);
        print_patch_eval(&we, &pe);
    }
    if ((st = ts_model_save(ctx, pm, out))) goto fail;
    printf("wrote %s\n", out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("patch", ctx, st);
done:
    ts_model_free(weak);
    ts_model_free(pm);
    ts_module_free(mod);
    ts_dataset_free(train);
    ts_dataset_free(test);
    ts_ctx_free(ctx);
    return rc;
}
