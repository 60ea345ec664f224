/* tessera extract: a smaller model for a few of a classifier's classes, re-engineered
 * from it without retraining its weights (SeaM-style; docs/modules.md). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli_modules.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static cli_opt extract_opts[] = {
    {"classes", "I,J[,...]", "the sub-task: two or more class indices of the model (required); output j is the j-th", NULL},
    {"out", "FILE", "the extracted model (.tsr, required)", NULL},
    {"data", "NAME|PATH", "training data to learn the masks on (default: the model's own)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"alpha", "F", "first weight of the kept fraction of kernels and dense units in the loss (default 0.25), x1.5 after an epoch that meets the accuracy bound, x0.5 after one that does not", NULL},
    {"epochs", "N", "mask-learning epochs (default 8)", NULL},
    {"epoch-samples", "N", "training samples per epoch (default 0: all of the classes' samples)", NULL},
    {"val", "N", "samples of the classes carved from the training data to choose the epoch (default 1000)", NULL},
    {"lr", "F", "Adam learning rate of the masks (default 0.05)", NULL},
    {"lr-head", "F", "Adam learning rate of the new head (default 0.01)", NULL},
    {"max-loss", "F", "choose the fewest kernels among epochs within this many points of the model's validation "
                      "top-1 on the classes (default 0: at least the model's)", NULL},
    {"fixed-alpha", NULL, "keep alpha fixed", NULL},
    {"seed", "S", "data order and validation part (default 0)", NULL},
    {"no-eval", NULL, "skip the test-set evaluation of both models", NULL},
    {"force", NULL, "replace the output even when it is write-protected", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"quiet", NULL, "no progress bar", NULL},
};
static cli_cmd extract_cmd = {
    "extract", "MODEL --classes I,J[,...] --out FILE [--data NAME|PATH] [options]",
    "Re-engineers a trained classifier for a sub-task, \"which of these classes\" (SeaM-style,\n"
    "docs/modules.md): learns masks over its convolution kernels and dense units, on the frozen\n"
    "model and the classes' training samples, that keep as few as the sub-task needs, and a new\n"
    "head over its logits; the epoch is chosen on a validation part of the training data. The\n"
    "result is an ordinary model, physically smaller (removed kernels are gone from the file and\n"
    "the computation; batch norms folded). Prints kernels kept, parameters and MACs against the\n"
    "model's, and both models' top-1 on the classes' test samples (the model's as the argmax over\n"
    "those classes' logits). `tessera eval FILE` finds its test samples by itself.",
    extract_opts, sizeof extract_opts / sizeof extract_opts[0]};

int cmd_extract(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&extract_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&extract_cmd, "out"), *cls = cli_get(&extract_cmd, "classes");
    if (npos != 1 || !out || !cls) {
        fprintf(stderr, "tessera extract: expected one MODEL, --classes I,J and --out FILE (see tessera extract --help)\n");
        return EXIT_USAGE;
    }
    ts_extract_config cfg;
    ts_extract_config_default(&cfg);
    long epochs, esamples, val, seed;
    double alpha, lr, lr_head, maxloss;
    if (!cli_float(&extract_cmd, "alpha", 0.25, 0.0, 100.0, &alpha) ||
        !cli_int(&extract_cmd, "epochs", 8, 1, 100000, &epochs) ||
        !cli_int(&extract_cmd, "epoch-samples", 0, 0, 1000000000L, &esamples) ||
        !cli_int(&extract_cmd, "val", 1000, 1, 1000000000L, &val) ||
        !cli_float(&extract_cmd, "lr", 0.05, 1e-9, 10.0, &lr) ||
        !cli_float(&extract_cmd, "lr-head", 0.01, 0.0, 10.0, &lr_head) ||
        !cli_float(&extract_cmd, "max-loss", 0.0, 0.0, 100.0, &maxloss) ||
        !cli_int(&extract_cmd, "seed", 0, 0, 0x7fffffffffffffffL, &seed))
        return EXIT_USAGE;
    int *classes = NULL, k = 0;
    if (!parse_class_list(cls, &classes, &k) || k < 2) {
        fprintf(stderr, "tessera extract: --classes: expected two or more class indices like 3,5\n");
        free(classes);
        return EXIT_USAGE;
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < i; j++)
            if (classes[i] == classes[j]) {
                fprintf(stderr, "tessera extract: --classes: class %d is listed twice\n", classes[i]);
                free(classes);
                return EXIT_USAGE;
            }
    if ((rc = cli_refuse_same(&extract_cmd, "--out", out, (const char *const *)pos, 1))) {
        free(classes);
        return rc;
    }
    cfg.alpha = (float)alpha;
    cfg.epochs = (int)epochs;
    cfg.epoch_samples = esamples;
    cfg.val_count = val;
    cfg.lr = (float)lr;
    cfg.lr_head = (float)lr_head;
    cfg.max_loss = (float)maxloss;
    cfg.seed = (uint64_t)seed;
    cfg.adapt = !cli_get(&extract_cmd, "fixed-alpha");
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) {
        free(classes);
        return EXIT_NOMEM;
    }
    ts_model *m = NULL, *xm = NULL;
    ts_dataset *train = NULL, *test = NULL;
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&extract_cmd, ctx))) goto done;
    cli_setup_files(&extract_cmd, ctx);
    if ((st = cli_load_model(ctx, pos[0], 0, &m))) goto fail;
    const char *spec = cli_get(&extract_cmd, "data");
    if (!spec) spec = ts_model_get_meta(m, "data");
    if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", pos[0]);
        goto fail;
    }
    const char *ddir = cli_data_dir(&extract_cmd, m);
    if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TRAIN, ddir, 0, &train))) goto fail;
    int eval = !cli_get(&extract_cmd, "no-eval");
    /* provenance that resolves from another folder: the data's absolute path */
    char found[PATH_MAX], data_abs[PATH_MAX];
    if ((st = ts_dataset_locate(ctx, spec, TS_SPLIT_TRAIN, ddir, found, sizeof found))) goto fail;
    if (!realpath(found, data_abs)) snprintf(data_abs, sizeof data_abs, "%s", found);
    cfg.dataset = data_abs;
    progress pr;
    progress_start(&pr);
    int quiet = cli_get(&extract_cmd, "quiet") != NULL;
    ts_extract_report rep;
    st = ts_extract(ctx, m, train, classes, k, &cfg, quiet ? NULL : progress_cb, &pr, &xm, &rep);
    if (!quiet) progress_end(&pr);
    if (st) goto fail;
    /* the test samples of the classes, as `tessera eval` on the result reads them */
    double xacc = 0, oacc = 0;
    if (eval) {
        if ((st = ts_composed_dataset(ctx, xm, TS_SPLIT_TEST, ddir, 0, &test))) goto fail;
        if ((st = ts_evaluate_classes(ctx, xm, test, NULL, k, &xacc)) ||
            (st = ts_evaluate_classes(ctx, m, test, classes, k, &oacc)))
            goto fail;
    }
    if ((st = ts_model_save(ctx, xm, out))) goto fail;
    printf("extracted classes %s of %s in %.2fs (data: %s, %lld training and %lld validation samples of those "
           "classes; epoch %d of %d chosen)\n",
           cls, pos[0], rep.seconds, data_abs, (long long)rep.train_count, (long long)rep.val_count, rep.selected_epoch,
           cfg.epochs);
    printf("kernels and dense units kept: %lld of %lld (%.2f%%)\n", (long long)rep.units_kept, (long long)rep.units,
           rep.units ? 100.0 * (double)rep.units_kept / (double)rep.units : 0);
    printf("parameters: %lld of the model's %lld (%.2f%%); MACs per sample: %.3fM of %.3fM (%.2f%%)\n",
           (long long)rep.params, (long long)rep.origin_params,
           rep.origin_params ? 100.0 * (double)rep.params / (double)rep.origin_params : 0, rep.macs / 1e6,
           rep.origin_macs / 1e6, rep.origin_macs ? 100.0 * (double)rep.macs / (double)rep.origin_macs : 0);
    printf("validation top-1 on the classes: extracted %.2f%%, model %.2f%% (argmax over their logits)\n",
           100 * rep.val_accuracy, 100 * rep.origin_val_accuracy);
    if (eval)
        printf("test top-1 on the classes (%lld images): extracted %.2f%%, model %.2f%%\n", (long long)test->count,
               100 * xacc, 100 * oacc);
    printf("wrote %s\n", out);
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("extract", ctx, st);
done:
    free(classes);
    ts_model_free(m);
    ts_model_free(xm);
    ts_dataset_free(train);
    ts_dataset_free(test);
    ts_ctx_free(ctx);
    return rc;
}
