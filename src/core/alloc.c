/* Checked, aligned allocation. Every failure is named on the context. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define TS_ALIGN 64

void *ts_alloc(ts_ctx *ctx, size_t bytes, const char *what) {
    size_t rounded;
    if (!ts_add_size(bytes, TS_ALIGN - 1, &rounded)) {
        ts_fail(ctx, TS_ENOMEM, "%s: size %zu overflows", what ? what : "allocation", bytes);
        return NULL;
    }
    rounded &= ~(size_t)(TS_ALIGN - 1);
    if (rounded == 0) rounded = TS_ALIGN;
    void *p = aligned_alloc(TS_ALIGN, rounded);
    if (!p) ts_fail(ctx, TS_ENOMEM, "%s: out of memory allocating %zu bytes", what ? what : "allocation", bytes);
    return p;
}

void *ts_calloc(ts_ctx *ctx, size_t bytes, const char *what) {
    void *p = ts_alloc(ctx, bytes, what);
    if (p) memset(p, 0, bytes);
    return p;
}

void ts_free(void *p) { free(p); }

int ts_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int ts_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}
