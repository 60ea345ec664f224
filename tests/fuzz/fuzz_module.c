/* Module files (.tsm): ts_module_load, then the module as a model (composition). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    const char *p = fuzz_write(0, ".tsm", data, size);
    if (!p) return 0;
    ts_module *mod = NULL;
    ts_status st = ts_module_load(fuzz_ctx(), p, &mod);
    fuzz_check_message(st);
    if (!st) {
        ts_model *m = NULL;
        fuzz_check_message(ts_module_model(fuzz_ctx(), mod, &m));
        ts_model_free(m);
    }
    ts_module_free(mod);
    return 0;
}
