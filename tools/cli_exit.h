/* The early exit in the CLI (cli_exit.c, docs/early-exit.md). */
#ifndef TS_CLI_EXIT_H
#define TS_CLI_EXIT_H

#include "cli.h"

/* The --exit-threshold option of eval, predict and bench. */
#define CLI_OPT_EXIT_THRESHOLD                                                                                    \
    {"exit-threshold", "RHO", "a model with an early exit: samples whose top probability there is >= RHO stop at it " \
                              "(1: none; not in constant-time mode)", NULL}

/* --exit-threshold into *rho (-1 when not given). 0, or EXIT_USAGE after a message
 * (no exit in the model, out of [0, 1], constant-time mode). */
int cli_exit_threshold(const cli_cmd *cmd, const ts_model *m, ts_ctx *ctx, float *rho);
/* eval of a model with an early exit: the sweep of thresholds (rho < 0) or the one
 * given, each one's top-1, exited fraction and mean MACs per sample, the chosen one
 * run with ts_model_predict_exit; J (may be NULL) gets "early_exit". Nothing for a
 * model without an exit. */
ts_status cli_exit_eval(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, float rho, json_out *J);

#endif
