/* tessera compose: a classifier built from modules, without retraining. */
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

/* --------------------------------------------------------------- compose */

static cli_opt compose_opts[] = {
    {"out", "FILE", "where to write the composed model (required)", NULL},
    {"max-macs", "F", "compute budget against the origin model: modules of one origin share layers\n"
                      "                             up to the cut that keeps within it (default 1.5; >= the module\n"
                      "                             count gives every module its own copy)", NULL},
    {"best-of", NULL, "the arguments are folders of modules of several models (tessera decompose);\n"
                      "                             per class, the module with the best F1 on validation data is used", NULL},
    {"select", "f1|greedy", "--best-of: per class the best F1 of the module's own answer (f1, default), or\n"
                            "                             swaps from the best run while the composition's validation top-1 rises\n"
                            "                             (greedy)", NULL},
    {"no-calibrate", NULL, "--best-of: keep each module's own score calibration (default: refit on the validation samples)", NULL},
    {"classes", "I,J[,...]", "--best-of: these classes (default: those every folder has)", NULL},
    {"data", "NAME|PATH", "--best-of: the validation data (default: the modules' dataset)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"split", "train|test", "--best-of: the split the validation samples come from (default train)", NULL},
    {"val", "FIRST:COUNT", "--best-of: validation samples FIRST..FIRST+COUNT-1 of the split (default: the 5000\n"
                           "                             training samples after those the models trained on, when they\n"
                           "                             were trained with --limit)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
    CLI_OPT_JSON,
};
static cli_cmd compose_cmd = {"compose", "MODULE.tsm... --out FILE [options] | --best-of DIR... --out FILE",
                              "Builds a classifier from modules, from one model or several, without retraining:\n"
                              "output j is module j's score and the prediction is the highest (the voting rule).\n"
                              "Evaluate it with tessera eval FILE (each class is scored on its module's dataset).\n"
                              "With --best-of, each folder holds one model's modules; for each class the module\n"
                              "with the best F1 on samples the models did not train on is composed.",
                              compose_opts, sizeof compose_opts / sizeof compose_opts[0]};

static int best_of(char **dirs, int nd, const char *out);

int cmd_compose(int argc, char **argv) {
    char *pos[MAX_MODULE_ARGS];
    int npos;
    int rc = cli_parse(&compose_cmd, argc, argv, pos, &npos, MAX_MODULE_ARGS);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&compose_cmd);
    const char *out = cli_get(&compose_cmd, "out");
    if (cli_get(&compose_cmd, "best-of")) {
        if (npos < 1 || !out) {
            fprintf(stderr, "tessera compose: --best-of expects folders of modules and --out FILE (see --help)\n");
            return EXIT_USAGE;
        }
        return best_of(pos, npos, out);
    }
    const char *bo[] = {"classes", "data", "split", "val", "no-calibrate", "select"};
    for (int i = 0; i < 6; i++)
        if (cli_get(&compose_cmd, bo[i])) {
            fprintf(stderr, "tessera compose: --%s goes with --best-of\n", bo[i]);
            return EXIT_USAGE;
        }
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
    if ((st = ts_compose(ctx, mods, npos, &cc, &cm)) || (st = cli_text_compose_meta(ctx, mods, npos, cm))) goto fail;
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    print_compose_summary(cm, mods, npos);
    printf("wrote %s\n", out);
    if (J) json_str(J, "wrote", out);
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

/* ------------------------------------------------------------- best of N */

/* "FIRST:COUNT" */
static int parse_range(const char *s, long *first, long *count) {
    char *end;
    *first = strtol(s, &end, 10);
    if (end == s || *end != ':' || *first < 0) return 0;
    const char *c = end + 1;
    *count = strtol(c, &end, 10);
    return end != c && !*end && *count > 0;
}

static int best_of(char **dirs, int nd, const char *out) {
    ts_best_of_config bc;
    ts_best_of_config_default(&bc);
    if (!compose_opts_get(&compose_cmd, &bc.compose)) return EXIT_USAGE;
    bc.recalibrate = !cli_get(&compose_cmd, "no-calibrate");
    const char *sel = cli_get(&compose_cmd, "select");
    if (sel && !strcmp(sel, "greedy")) bc.select = TS_BEST_OF_GREEDY;
    else if (sel && strcmp(sel, "f1")) {
        fprintf(stderr, "tessera compose: --select: '%s' is not f1 or greedy\n", sel);
        return EXIT_USAGE;
    }
    const char *split_s = cli_get(&compose_cmd, "split");
    ts_split split = TS_SPLIT_TRAIN;
    if (split_s && !strcmp(split_s, "test")) split = TS_SPLIT_TEST;
    else if (split_s && strcmp(split_s, "train")) {
        fprintf(stderr, "tessera compose: --split: '%s' is not train or test\n", split_s);
        return EXIT_USAGE;
    }
    long first = -1, count = 5000;
    const char *vs = cli_get(&compose_cmd, "val");
    if (vs && !parse_range(vs, &first, &count)) {
        fprintf(stderr, "tessera compose: --val: '%s' is not FIRST:COUNT (like 55000:5000)\n", vs);
        return EXIT_USAGE;
    }
    int *want = NULL, nwant = 0;
    const char *cls = cli_get(&compose_cmd, "classes");
    if (cls && (!parse_class_list(cls, &want, &nwant) || nwant < 1)) {
        fprintf(stderr, "tessera compose: --classes: expected class indices like 0,3,5\n");
        free(want);
        return EXIT_USAGE;
    }
    for (int i = 0; i < nd; i++)
        if (cli_same_file(out, dirs[i])) {
            fprintf(stderr, "tessera compose: --out %s is one of the folders\n", out);
            free(want);
            return EXIT_USAGE;
        }
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) {
        free(want);
        return EXIT_NOMEM;
    }
    int rc;
    ts_status st = TS_OK;
    ts_module ***runs = calloc((size_t)nd, sizeof *runs);
    int *nrun = calloc((size_t)nd, sizeof *nrun);
    ts_module **cand = NULL;
    int *classes = NULL, k = 0;
    ts_best_of_report rep = {0};
    ts_dataset *full = NULL, *val = NULL;
    ts_model *cm = NULL;
    if (!runs || !nrun) {
        rc = EXIT_NOMEM;
        goto done;
    }
    if ((rc = cli_setup_ctx(&compose_cmd, ctx))) goto done;
    cli_setup_files(&compose_cmd, ctx);
    if ((st = ts_file_check_output(ctx, out))) goto fail;
    for (int r = 0; r < nd; r++)
        if ((st = load_module_dir(ctx, dirs[r], out, &runs[r], &nrun[r]))) goto fail;
    /* the classes: those asked for, else those every folder has */
    classes = malloc(sizeof *classes * (size_t)(nrun[0] + nwant + 1));
    if (!classes) {
        rc = EXIT_NOMEM;
        goto done;
    }
    if (want) {
        memcpy(classes, want, sizeof *classes * (size_t)nwant);
        k = nwant;
    } else
        for (int i = 0; i < nrun[0]; i++) {
            ts_module_info a;
            ts_module_info_get(runs[0][i], &a);
            int everywhere = 1;
            for (int r = 1; r < nd && everywhere; r++) {
                int found = 0;
                for (int q = 0; q < nrun[r] && !found; q++) {
                    ts_module_info b;
                    ts_module_info_get(runs[r][q], &b);
                    found = b.class_index == a.class_index;
                }
                everywhere = found;
            }
            if (everywhere) classes[k++] = a.class_index;
        }
    if (k < 1) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "the folders have no class in common");
        goto fail;
    }
    cand = calloc((size_t)nd * (size_t)k, sizeof *cand);
    if (!cand) {
        rc = EXIT_NOMEM;
        goto done;
    }
    for (int r = 0; r < nd; r++)
        for (int j = 0; j < k; j++)
            for (int q = 0; q < nrun[r]; q++) {
                ts_module_info b;
                ts_module_info_get(runs[r][q], &b);
                if (b.class_index == classes[j]) cand[(size_t)r * k + j] = runs[r][q];
            }
    /* the validation samples: by default those after what every model trained on */
    ts_module_info i0;
    ts_module_info_get(runs[0][0], &i0);
    if (first < 0) {
        long most = 0;
        for (int r = 0; r < nd && first != -2; r++)
            for (int q = 0; q < nrun[r]; q++) {
                const char *lim = ts_module_origin_meta(runs[r][q], "train.limit");
                char *end;
                const long v = lim ? strtol(lim, &end, 10) : -1;
                if (!lim || end == lim || *end || v < 0) {
                    first = -2;
                    break;
                }
                most = v > most ? v : most;
            }
        if (first == -2 || split != TS_SPLIT_TRAIN) {
            st = ts_ctx_set_error(ctx, TS_EINVAL,
                                  "pass --val FIRST:COUNT: samples of the %s split none of the models trained on (the "
                                  "models record no --limit that would leave some)",
                                  split == TS_SPLIT_TRAIN ? "training" : "test");
            goto fail;
        }
        first = most;
    }
    const char *spec = cli_get(&compose_cmd, "data");
    if (!spec) spec = i0.dataset;
    if (!spec || !*spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "the modules record no dataset; pass --data");
        goto fail;
    }
    if ((st = cli_load_dataset(ctx, spec, split, cli_get(&compose_cmd, "data-dir"), 0, &full))) goto fail;
    if (first >= full->count) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "--val: sample %ld is past the %lld samples of %s", first,
                              (long long)full->count, spec);
        goto fail;
    }
    if (count > full->count - first) count = (long)(full->count - first); /* no overflow: first < count of samples */
    {
        int64_t *idx = malloc(sizeof *idx * (size_t)count);
        if (!idx) {
            rc = EXIT_NOMEM;
            goto done;
        }
        for (long i = 0; i < count; i++) idx[i] = first + i;
        st = ts_dataset_subset(ctx, full, idx, count, &val);
        free(idx);
        if (st) goto fail;
    }
    double t0 = cli_now();
    if ((st = ts_compose_best_of(ctx, cand, nd, k, val, &bc, &rep, &cm))) goto fail;
    if ((st = ts_model_save(ctx, cm, out))) goto fail;
    printf("best of %d runs, chosen by %s on %s samples %ld..%ld of %s (%.2fs; scores %s)\n", nd,
           bc.select == TS_BEST_OF_GREEDY ? "the composition's top-1" : "F1", split == TS_SPLIT_TRAIN ? "training" : "test",
           first, first + count - 1, spec, cli_now() - t0,
           bc.recalibrate ? "recalibrated on them" : "as the modules were calibrated");
    printf("%-4s %-20s", "id", "class");
    for (int r = 0; r < nd; r++) printf(" %8s%-2d", "F1 run ", r);
    printf("  chosen\n");
    for (int j = 0; j < k; j++) {
        ts_module_info a;
        ts_module_info_get(cand[(size_t)rep.picks[j] * k + j], &a);
        printf("%-4d %-20.20s", a.class_index, a.class_name);
        for (int r = 0; r < nd; r++) {
            const double f = rep.f1[(size_t)j * nd + r];
            if (f < 0) printf(" %10s", "-");
            else printf(" %9.2f%%", 100 * f);
        }
        printf("  %s\n", dirs[rep.picks[j]]);
    }
    printf("validation top-1, composed:");
    for (int r = 0; r < nd; r++) printf(" %s %.2f%%,", dirs[r], 100 * rep.run_top1[r]);
    printf(" best-of %.2f%%\n", 100 * rep.val_top1);
    printf("wrote %s\n", out);
    json_out *J = cli_json();
    if (J) {
        json_int(J, "runs", nd);
        json_str(J, "select", bc.select == TS_BEST_OF_GREEDY ? "greedy" : "f1");
        json_str(J, "split", split == TS_SPLIT_TRAIN ? "train" : "test");
        json_int(J, "val_first", first);
        json_int(J, "val_count", count);
        json_str(J, "data", spec);
        json_bool(J, "recalibrated", bc.recalibrate);
        json_array(J, "classes");
        for (int j = 0; j < k; j++) {
            ts_module_info a;
            ts_module_info_get(cand[(size_t)rep.picks[j] * k + j], &a);
            json_object(J, NULL);
            json_int(J, "id", a.class_index);
            json_str(J, "name", a.class_name);
            json_array(J, "f1"); /* per run; null where the run has no module of the class */
            for (int r = 0; r < nd; r++) {
                const double f = rep.f1[(size_t)j * nd + r];
                if (f < 0) json_str(J, NULL, NULL);
                else json_num(J, NULL, f);
            }
            json_close(J);
            json_str(J, "chosen", dirs[rep.picks[j]]);
            json_close(J);
        }
        json_close(J);
        json_array(J, "run_top1");
        for (int r = 0; r < nd; r++) json_num(J, NULL, rep.run_top1[r]);
        json_close(J);
        json_num(J, "val_top1", rep.val_top1);
        json_num(J, "seconds", cli_now() - t0);
        json_str(J, "wrote", out);
    }
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("compose", ctx, st);
done:
    for (int r = 0; runs && r < nd; r++) ts_modules_free(runs[r], runs[r] ? nrun[r] : 0);
    free(runs);
    free(nrun);
    free(cand);
    ts_best_of_report_free(&rep);
    free(classes);
    free(want);
    ts_dataset_free(full);
    ts_dataset_free(val);
    ts_model_free(cm);
    ts_ctx_free(ctx);
    return rc;
}
