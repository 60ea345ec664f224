/* ONNX TensorProto files (the backend test data's input_K.pb): decoding with
 * every size checked against the data. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    ts_onnx_tensor *t = NULL;
    ts_status st = ts_onnx_tensor_parse(fuzz_ctx(), data, size, "fuzz.pb", &t);
    fuzz_check_message(st);
    if (!st) {
        /* every value the reader claims is there must be readable */
        const float *f = ts_onnx_tensor_floats(t);
        volatile float sink = 0;
        int64_t n = ts_onnx_tensor_numel(t);
        for (int64_t i = 0; f && i < n; i++) sink += f[i];
        (void)sink;
    }
    ts_onnx_tensor_free(t);
    return 0;
}
