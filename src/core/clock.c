/* A monotonic clock for the durations the library reports (seconds spent). */
#include "core.h"

#include <time.h>

double ts_monotonic_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
