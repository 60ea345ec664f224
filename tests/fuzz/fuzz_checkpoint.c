/* Checkpoints: ts_checkpoint_load_model (model plus training configuration). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    const char *p = fuzz_write(0, ".ckpt", data, size);
    if (!p) return 0;
    ts_model *m = NULL;
    ts_train_config cfg;
    fuzz_check_message(ts_checkpoint_load_model(fuzz_ctx(), p, &m, &cfg));
    ts_model_free(m);
    return 0;
}
