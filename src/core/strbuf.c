/* A growable string: the one that composition's metadata, architecture text and the
 * ONNX check report are written with. A failed allocation sticks (failed = 1) and
 * later appends do nothing, so callers check once at the end. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void ts_strbuf_printf(ts_strbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}

char *ts_strbuf_take(ts_strbuf *b) {
    char *s = b->failed ? NULL : b->s;
    if (b->failed) free(b->s);
    else if (!s && (s = malloc(1))) s[0] = '\0';
    b->s = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
    return s;
}

void ts_strbuf_free(ts_strbuf *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}
