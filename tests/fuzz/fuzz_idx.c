/* IDX image/label pairs (MNIST layout), raw or gzip: the first byte chooses gzip
 * names (bit 0); the next 4 bytes (little-endian) where the images file ends. */
#include "fuzz_common.h"

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    if (size < 5) return 0;
    int gz = data[0] & 1;
    uint32_t cut = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
    data += 5;
    size -= 5;
    if (cut > size) cut = (uint32_t)size;
    const char *img = fuzz_write(0, gz ? "-images.gz" : "-images", data, cut);
    const char *lbl = fuzz_write(1, gz ? "-labels.gz" : "-labels", data + cut, size - cut);
    if (!img || !lbl) return 0;
    ts_dataset *ds = NULL;
    fuzz_check_message(data_idx_load(fuzz_ctx(), img, lbl, 10, "fuzz", 0, &ds));
    ts_dataset_free(ds);
    return 0;
}
