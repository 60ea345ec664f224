/* tessera replace: one class's module swapped for another model's. */
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

/* --------------------------------------------------------------- replace */

static cli_opt replace_opts[] = {
    {"class", "C", "the class to replace (its index in the model; required)", NULL},
    {"with", "MODULE.tsm", "the module that takes its place (required)", NULL},
    {"out", "FILE", "where to write the new model (required)", NULL},
    {"max-macs", "F", "compute budget, as for compose (default 1.5)", NULL},
    {"retune", NULL, "calibrate every module's score on training data of all the classes (recommended\n"
                     "                             when the new module comes from another model; text classifiers'\n"
                     "                             modules too, taggers' and translators' refused)", NULL},
    {"retune-samples", "N", "training samples per class used for re-tuning (default 500)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
    CLI_OPT_JSON,
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

int cmd_replace(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&replace_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&replace_cmd);
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
        if ((st = cli_load_model(ctx, pos[0], 0, &m))) goto fail;
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
    if ((st = ts_compose(ctx, mods, n, &cc, &cm)) || (st = cli_text_compose_meta(ctx, mods, n, cm))) goto fail;
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    print_compose_summary(cm, mods, n);
    printf("class %ld now from %s; wrote %s\n", cls, with, out);
    if (J) {
        json_int(J, "class", cls);
        json_str(J, "with", with);
        json_str(J, "wrote", out);
    }
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
