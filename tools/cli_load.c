/* What commands are given as a model: one loader, so that every command that reads a
 * model takes the same kinds of file (docs/cli.md). */
#include "cli.h"

#include <string.h>

ts_status cli_load_model(ts_ctx *ctx, const char *path, int accept, ts_model **out) {
    *out = NULL;
    if ((accept & CLI_LOAD_ONNX) && cli_ends_with(path, ".onnx")) return ts_onnx_import(ctx, path, NULL, out);
    if ((accept & CLI_LOAD_MODULE) && cli_ends_with(path, ".tsm")) {
        /* a module alone is a one-output model: its score (> 0: its class) */
        ts_module *mod = NULL;
        ts_status st = ts_module_load(ctx, path, &mod);
        if (!st) st = ts_module_model(ctx, mod, out);
        ts_module_free(mod);
        return st;
    }
    return ts_model_load(ctx, path, out);
}
