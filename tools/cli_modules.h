/* Shared by tessera decompose, compose, replace and reuse (cli_modules.c). */
#ifndef TS_CLI_MODULES_H
#define TS_CLI_MODULES_H

#include "cli.h"

/* Most module files one command line may name. */
#define MAX_MODULE_ARGS 4096

/* Multiply-accumulates per sample of a whole model. */
int64_t model_macs(const ts_model *m);
/* Loads module files into a new array (*out); on failure frees what it loaded.
 * Modules that take different input shapes are refused, naming their files. */
ts_status load_modules(ts_ctx *ctx, char **paths, int n, ts_module ***out);
/* Every *.tsm in dir, ordered by class index; refused when one is the file `output`
 * (NULL: no output to check). */
ts_status load_module_dir(ts_ctx *ctx, const char *dir, const char *output, ts_module ***out, int *n);
/* ts_progress_fn drawing the CLI's progress bar (user: a cli_progress). */
int progress_cb(void *user, int64_t done, int64_t total);
/* "3,5,7" into a malloc'ed list (NULL, 0 for no list); 1 on success, 0 if malformed. */
int parse_class_list(const char *s, int **out, int *n);
/* What a composition kept and cost, against its origins. */
void print_compose_summary(const ts_model *cm, ts_module *const *mods, int k);
/* A patched model's figures beside the weak model's (tessera patch and eval). */
void print_patch_eval(const ts_patch_eval *weak, const ts_patch_eval *patched);
/* --max-macs into a compose configuration; 0, or the exit code of a bad value. */
int compose_opts_get(const cli_cmd *cmd, ts_compose_config *cc);
/* --retune of reuse and replace: each module re-tuned with the first `limit` training
 * samples of its class against those of every other listed class (text modules: their
 * scores calibrated, ts_module_retune_text). */
ts_status retune_modules(ts_ctx *ctx, ts_module **mods, int k, const char *ddir, long limit);

#endif
