/* Image files (PNG, JPEG, PGM/PPM, told by their first bytes): ts_image_decode from
 * memory, then ts_image_fit of what decodes to a small gray and a small RGB shape. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    int c, h, w;
    uint8_t *px = NULL;
    ts_status st = ts_image_decode(fuzz_ctx(), "fuzz", data, size, &c, &h, &w, &px);
    fuzz_check_message(st);
    if (!st) {
        uint8_t out[3 * 12 * 10];
        fuzz_check_message(ts_image_fit(fuzz_ctx(), px, c, h, w, 1, 12, 10, out));
        fuzz_check_message(ts_image_fit(fuzz_ctx(), px, c, h, w, 3, 10, 12, out));
    }
    ts_image_free(px);
    return 0;
}
