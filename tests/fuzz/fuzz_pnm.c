/* Netpbm images (PGM/PPM, binary and ASCII): ts_image_load_pnm. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    const char *p = fuzz_write(0, ".pnm", data, size);
    if (!p) return 0;
    int c, h, w;
    uint8_t *px = NULL;
    fuzz_check_message(ts_image_load_pnm(fuzz_ctx(), p, &c, &h, &w, &px));
    ts_image_free(px);
    return 0;
}
