/* CIFAR binary batches, raw or gzip (first byte: bit 0 gzip, bit 1 CIFAR-100's
 * two label bytes). */
#include "fuzz_common.h"

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    if (size < 1) return 0;
    int gz = data[0] & 1, label_bytes = data[0] & 2 ? 2 : 1;
    const char *p = fuzz_write(0, gz ? ".bin.gz" : ".bin", data + 1, size - 1);
    if (!p) return 0;
    ts_dataset *ds = NULL;
    fuzz_check_message(data_cifar_load(fuzz_ctx(), &p, 1, label_bytes, "fuzz", 0, &ds));
    ts_dataset_free(ds);
    return 0;
}
