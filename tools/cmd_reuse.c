/* tessera reuse: a classifier from modules of different models and datasets. */
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

/* ----------------------------------------------------------------- reuse */

static cli_opt reuse_opts[] = {
    {"out", "FILE", "where to write the new classifier (required)", NULL},
    {"retune", NULL, "re-run tangling identification against the other modules' classes, and calibrate\n"
                     "                             each module's score on them (no weight is trained; text\n"
                     "                             classifiers' modules: the calibration only)", NULL},
    {"retune-samples", "N", "training samples per class used for re-tuning (default 500)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"no-eval", NULL, "skip the evaluation on the classes' test samples", NULL},
    {"max-macs", "F", "compute budget, as for compose (default 1.5)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
    CLI_OPT_JSON,
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
    json_out *J = cli_json_start(&reuse_cmd);
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
    ts_text_dataset *tt = NULL;
    ts_status st;
    if ((rc = cli_setup_ctx(&reuse_cmd, ctx))) goto done;
    cli_setup_files(&reuse_cmd, ctx);
    if ((st = load_modules(ctx, pos, npos, &mods))) goto fail;
    if (cli_get(&reuse_cmd, "retune")) {
        if ((st = retune_modules(ctx, mods, npos, ddir, samples))) goto fail;
    }
    if ((st = ts_compose(ctx, mods, npos, &cc, &cm)) || (st = cli_text_compose_meta(ctx, mods, npos, cm))) goto fail;
    print_compose_summary(cm, mods, npos);
    /* evaluated before it is written: a failed evaluation leaves no model behind */
    if (!cli_get(&reuse_cmd, "no-eval")) {
        ts_eval_report ev;
        const int text = cli_is_text_model(cm);
        if (text ? (st = cli_text_composed_dataset(ctx, cm, out, TS_SPLIT_TEST, ddir, 0, &tt)) ||
                       (st = ts_evaluate_text(ctx, cm, tt, 256, &ev, NULL))
                 : (st = ts_composed_dataset(ctx, cm, TS_SPLIT_TEST, ddir, 0, &te)) ||
                       (st = ts_evaluate(ctx, cm, te, 256, &ev)))
            goto fail;
        const char *unit = !text ? "images" : cli_text_model_tags(cm) ? "tokens" : "texts";
        printf("test: top-1 %.2f%% on %lld %s;", 100 * ev.top1, (long long)ev.count, unit);
        for (int c = 0; c < ev.classes; c++) {
            char name[64];
            printf(" %s %.2f%%", cli_class_name(cm, c, name, sizeof name), 100 * ts_eval_recall(&ev, c));
        }
        printf("\n");
        if (J) {
            json_object(J, "test");
            json_num(J, "top1", ev.top1);
            json_int(J, "images", (long long)ev.count);
            json_array(J, "recall");
            for (int c = 0; c < ev.classes; c++) json_num(J, NULL, ts_eval_recall(&ev, c));
            json_close(J);
            json_close(J);
        }
        ts_eval_report_free(&ev);
    }
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    printf("wrote %s\n", out);
    if (J) json_str(J, "wrote", out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("reuse", ctx, st);
done:
    ts_modules_free(mods, mods ? npos : 0);
    ts_model_free(cm);
    ts_dataset_free(te);
    ts_text_dataset_free(tt);
    ts_ctx_free(ctx);
    return rc;
}
