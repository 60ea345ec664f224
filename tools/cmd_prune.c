/* tessera prune: structured pruning of an architecture at initialization
 * (complexity-driven) or of a trained model (filter L1 norm); docs/pruning.md. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static cli_opt prune_opts[] = {
    {"arch", "NAME|FILE", "prune this architecture (a zoo name or an .arch file) at initialization, instead of a MODEL", NULL},
    {"mode", "params|flops|memory", "the complexity to remove (default flops)", NULL},
    {"target", "F", "share of it to remove, 0 < F < 1 (default 0.5)", NULL},
    {"out", "FILE", "the pruned architecture (.arch, with --arch) or model (.tsr) (required)", NULL},
    {"seed", "S", "with --arch: the layer sampling and the saved weights' initialization (default 0)", NULL},
    {"chunk", "F", "with --arch: filters removed per draw, as a share of the layer's (default 0: one filter)", NULL},
    {"multiple-of", "N", "keep every narrowed layer's width a multiple of N, at least N (16 suits AVX-512's blocked kernels; default 1: any width)", NULL},
    {"force", NULL, "replace the output even when it is write-protected", NULL},
    CLI_OPT_JSON,
};
static cli_cmd prune_cmd = {
    "prune", "MODEL|--arch NAME|FILE --mode params|flops|memory --target F --out FILE [options]",
    "Removes whole filters (output channels of conv2d and dense layers) with the batch-norm\n"
    "channels and next layers' inputs they feed, until the share --target of the network's\n"
    "parameters, FLOPs or memory ((3 x parameters + 2 x outputs) x 4 bytes per layer) is gone.\n"
    "Channels tied by residual additions are pruned together; the classifier stays whole.\n"
    "With --arch (Zawish et al. 2022, at initialization): layers drawn at random in proportion to\n"
    "their share of the complexity lose filters; --out is the narrower architecture, to train from\n"
    "scratch with `tessera train --arch FILE`. With a trained MODEL (Li et al. 2017): the filters\n"
    "of smallest L1 norm go, the same share of every group's channels; --out is the smaller\n"
    "model with the remaining weights, to fine-tune with `tessera train --init FILE`.\n"
    "Prints each conv2d/dense layer's channels before and after, and the totals.",
    prune_opts, sizeof prune_opts / sizeof prune_opts[0]};

static const char *MODE_NAMES[] = {"params", "flops", "memory"};

static void json_report(json_out *J, const ts_prune_report *r, const char *mode) {
    json_str(J, "mode", mode);
    json_num(J, "target", r->target);
    json_num(J, "achieved", r->achieved);
    json_int(J, "groups", r->groups);
    json_int(J, "draws", r->draws);
    json_num(J, "ratio", r->ratio);
    json_int(J, "multiple", r->multiple);
    json_int(J, "params_before", (long long)r->params_before);
    json_int(J, "params_after", (long long)r->params_after);
    json_int(J, "macs_before", (long long)r->macs_before);
    json_int(J, "macs_after", (long long)r->macs_after);
    json_int(J, "memory_before", (long long)r->memory_before);
    json_int(J, "memory_after", (long long)r->memory_after);
    json_array(J, "layers");
    for (int i = 0; i < r->nlayers; i++) {
        json_object(J, NULL);
        json_str(J, "name", r->layers[i].name);
        json_int(J, "group", r->layers[i].group);
        json_int(J, "before", (long long)r->layers[i].before);
        json_int(J, "after", (long long)r->layers[i].after);
        json_close(J);
    }
    json_close(J);
}

static double removed(int64_t before, int64_t after) { return before ? 100.0 * (double)(before - after) / (double)before : 0; }

static void print_report(const ts_prune_report *r, const char *mode) {
    printf("%-28s %6s %17s\n", "layer", "group", "channels");
    for (int i = 0; i < r->nlayers; i++) {
        const ts_prune_layer *l = &r->layers[i];
        char g[16];
        snprintf(g, sizeof g, l->group >= 0 ? "%d" : "-", l->group);
        printf("%-28s %6s %7lld -> %-7lld\n", l->name, g, (long long)l->before, (long long)l->after);
    }
    printf("parameters: %lld -> %lld (-%.2f%%)\n", (long long)r->params_before, (long long)r->params_after,
           removed(r->params_before, r->params_after));
    printf("MACs per sample: %lld -> %lld (-%.2f%%); FLOPs %lld -> %lld\n", (long long)r->macs_before,
           (long long)r->macs_after, removed(r->macs_before, r->macs_after), 2 * (long long)r->macs_before,
           2 * (long long)r->macs_after);
    printf("memory per sample: %lld -> %lld bytes (-%.2f%%)\n", (long long)r->memory_before, (long long)r->memory_after,
           removed(r->memory_before, r->memory_after));
    printf("removed %.2f%% of the %s (target %.2f%%), %d channel groups", 100 * r->achieved, mode, 100 * r->target,
           r->groups);
    if (r->multiple > 1) printf(", widths multiples of %d", r->multiple);
    if (r->draws) printf(", %d draws\n", r->draws);
    else if (r->multiple > 1) printf(", ratio %.3f of each group before rounding to the multiples\n", r->ratio);
    else printf(", ratio %.3f of each group\n", r->ratio);
}

/* The architecture named by --arch: a zoo name or an .arch file. */
static ts_status load_arch(ts_ctx *ctx, const char *arch, ts_model **m) {
    const char *zoo = ts_zoo_arch(arch);
    if (zoo) return ts_model_from_arch(ctx, zoo, arch, NULL, 0, 0, m);
    if (cli_ends_with(arch, ".arch") || strchr(arch, '/')) return ts_model_from_arch_file(ctx, arch, NULL, 0, 0, m);
    return ts_ctx_set_error(ctx, TS_ENOTFOUND, "--arch: '%s' is neither a zoo architecture (see tessera zoo) nor an "
                            ".arch file", arch);
}

int cmd_prune(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&prune_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&prune_cmd);
    const char *arch = cli_get(&prune_cmd, "arch"), *out = cli_get(&prune_cmd, "out");
    if (!out || (npos == 1) == (arch != NULL)) {
        fprintf(stderr, "tessera prune: expected one MODEL or --arch NAME|FILE, and --out FILE (see tessera prune --help)\n");
        return EXIT_USAGE;
    }
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    const char *mode = cli_get(&prune_cmd, "mode");
    if (mode) {
        int k = 0;
        while (k < 3 && strcmp(mode, MODE_NAMES[k])) k++;
        if (k == 3) {
            fprintf(stderr, "tessera prune: --mode: '%s' is not params, flops or memory\n", mode);
            return EXIT_USAGE;
        }
        cfg.mode = (ts_prune_mode)k;
    }
    long seed, multiple;
    if (!cli_float(&prune_cmd, "target", 0.5, 0.0, 1.0, &cfg.target) ||
        !cli_float(&prune_cmd, "chunk", 0.0, 0.0, 1.0, &cfg.chunk) ||
        !cli_int(&prune_cmd, "seed", 0, 0, 0x7fffffffffffffffL, &seed) ||
        !cli_int(&prune_cmd, "multiple-of", 1, 1, 4096, &multiple))
        return EXIT_USAGE;
    cfg.multiple = (int)multiple;
    if (cfg.target <= 0.0 || cfg.target >= 1.0 || cfg.chunk >= 1.0) {
        fprintf(stderr, "tessera prune: %s: expected a share %s, got %g\n", cfg.chunk >= 1.0 ? "--chunk" : "--target",
                cfg.chunk >= 1.0 ? "from 0 up to (not including) 1" : "strictly between 0 and 1",
                cfg.chunk >= 1.0 ? cfg.chunk : cfg.target);
        return EXIT_USAGE;
    }
    cfg.seed = (uint64_t)seed;
    if (!arch && (cli_get(&prune_cmd, "seed") || cli_get(&prune_cmd, "chunk"))) {
        fprintf(stderr, "tessera prune: --seed and --chunk apply to --arch only (a model is pruned by filter norms)\n");
        return EXIT_USAGE;
    }
    if (arch ? !cli_ends_with(out, ".arch") : !cli_ends_with(out, ".tsr")) {
        fprintf(stderr, "tessera prune: --out: expected %s, got %s\n", arch ? "an .arch file" : "a .tsr file", out);
        return EXIT_USAGE;
    }
    const char *inputs[] = {arch, npos ? pos[0] : NULL};
    if ((rc = cli_refuse_same(&prune_cmd, "--out", out, inputs, 2))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    cli_setup_files(&prune_cmd, ctx);
    ts_model *m = NULL, *pm = NULL;
    ts_prune_report rep = {0};
    ts_status st;
    if ((st = ts_file_check_output(ctx, out))) goto fail;
    if (arch) {
        if ((st = load_arch(ctx, arch, &m)) || (st = ts_prune_arch(ctx, m, &cfg, &pm, &rep)) ||
            (st = ts_arch_save(ctx, pm, out)))
            goto fail;
    } else {
        if ((st = ts_model_load(ctx, pos[0], &m)) || (st = ts_prune_model(ctx, m, &cfg, &pm, &rep)) ||
            (st = ts_model_save(ctx, pm, out)))
            goto fail;
    }
    print_report(&rep, MODE_NAMES[cfg.mode]);
    printf("wrote %s\n", out);
    if (J) {
        json_str(J, "input", arch ? arch : pos[0]);
        json_str(J, "out", out);
        json_report(J, &rep, MODE_NAMES[cfg.mode]);
    }
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("prune", ctx, st);
done:
    ts_prune_report_free(&rep);
    ts_model_free(m);
    ts_model_free(pm);
    ts_ctx_free(ctx);
    return rc;
}
