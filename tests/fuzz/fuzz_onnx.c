/* ONNX models: ts_onnx_import_memory (the protobuf decoder, every converter and
 * the graph walk), then one inference when it imports, and an export of what was
 * imported, so that what the importer accepted is usable end to end. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    ts_model *m = NULL;
    ts_status st = ts_onnx_import_memory(fuzz_ctx(), data, size, "fuzz.onnx", NULL, &m);
    fuzz_check_message(st);
    if (!st) {
        ts_shape in = ts_model_input_shape(m);
        int64_t n = ts_shape_numel(&in);
        if (n > 0 && n < (1 << 20) && ts_model_param_count(m) < (1 << 22)) {
            float *x = calloc((size_t)n, sizeof *x), *y = calloc((size_t)ts_model_classes(m), sizeof *y);
            if (x && y) fuzz_check_message(ts_model_predict(fuzz_ctx(), m, x, 1, y));
            free(x);
            free(y);
            fuzz_check_message(ts_onnx_export(fuzz_ctx(), m, fuzz_path(0, ".onnx")));
        }
    }
    ts_model_free(m);
    return 0;
}
