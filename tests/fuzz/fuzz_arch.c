/* Architecture text: parsed and checked without allocating the parameters (a valid
 * text may declare a model of many gigabytes, which is not a bug). */
#include "fuzz_common.h"

#include "nn/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    ts_model *m = NULL;
    fuzz_check_message(model_parse(fuzz_ctx(), text, "fuzz.arch", NULL, 0, NULL, &m));
    ts_model_free(m);
    free(text);
    return 0;
}
