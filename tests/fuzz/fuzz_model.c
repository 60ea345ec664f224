/* Model files (.tsr; also checkpoints read as models): ts_model_load, then one
 * inference when it loads, so that what the reader accepted is usable. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    const char *p = fuzz_write(0, ".tsr", data, size);
    if (!p) return 0;
    ts_model *m = NULL;
    ts_status st = ts_model_load(fuzz_ctx(), p, &m);
    fuzz_check_message(st);
    if (!st) {
        ts_shape in = ts_model_input_shape(m);
        int64_t n = ts_shape_numel(&in);
        if (n > 0 && n < (1 << 20)) {
            float *x = calloc((size_t)n, sizeof *x), *y = calloc((size_t)ts_model_classes(m), sizeof *y);
            if (x && y) fuzz_check_message(ts_model_predict(fuzz_ctx(), m, x, 1, y));
            free(x);
            free(y);
        }
    }
    ts_model_free(m);
    return 0;
}
