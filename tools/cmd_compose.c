/* tessera compose: a classifier built from modules, without retraining. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli_modules.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h> /* rmdir */

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
