/* The failure side of TS_ASSERT (core.h), compiled only in the sanitizer build. */
#include "core.h"

#ifdef TS_DEBUG_ASSERT
#include <stdio.h>
#include <stdlib.h>

_Noreturn void ts_assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "%s:%d: tessera internal invariant failed: %s\n", file, line, cond);
    abort();
}
#else
typedef int ts_assert_unused; /* ISO C wants a translation unit to declare something */
#endif
