/* What commands are given as a model: one loader, so that every command that reads a
 * model takes the same kinds of file (docs/cli.md). */
#include "cli.h"

#include <string.h>

ts_status cli_load_model(ts_ctx *ctx, const char *path, int accept, ts_model **out) {
    *out = NULL;
    if ((accept & CLI_LOAD_ONNX) && cli_ends_with(path, ".onnx")) {
        ts_status st = ts_onnx_import(ctx, path, NULL, out);
        if (!st) cli_set_image_shape(ctx, ts_model_input_shape(*out));
        return st;
    }
    if ((accept & CLI_LOAD_MODULE) && cli_ends_with(path, ".tsm")) {
        /* a module alone is a one-output model: its score (> 0: its class) */
        ts_module *mod = NULL;
        ts_status st = ts_module_load(ctx, path, &mod);
        if (!st) st = ts_module_model(ctx, mod, out);
        if (!st) cli_set_image_shape(ctx, ts_model_input_shape(*out));
        ts_module_free(mod);
        return st;
    }
    ts_status st = ts_model_load(ctx, path, out);
    if (!st) cli_set_image_shape(ctx, ts_model_input_shape(*out));
    return st;
}

void cli_set_image_shape(ts_ctx *ctx, ts_shape in) {
    if (in.ndim == 3 && (in.dims[0] == 1 || in.dims[0] == 3) &&
        ts_ctx_set_image_shape(ctx, (int)in.dims[0], (int)in.dims[1], (int)in.dims[2]))
        ts_ctx_clear_error(ctx); /* too large for images: image folders then fail on the shape */
}
