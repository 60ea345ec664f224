/* Starting the kernels' OpenMP threads where a failure can still be reported.
 *
 * libgomp creates a parallel region's threads when the region starts, and when one
 * cannot be created (its stack is mapped, so a tight `ulimit -v` is enough) it prints
 * "libgomp: Thread creation failed" and calls exit(1): nothing the caller can catch,
 * and OpenMP has no call that asks whether a team could be made. What can be done:
 *   1. try the threads first with pthread_create and the default attributes (which
 *      libgomp uses too unless OMP_STACKSIZE or GOMP_STACKSIZE is set), and report
 *      TS_ENOMEM when they cannot be made;
 *   2. then, at once (nothing else runs in between), start a team of that size:
 *      libgomp keeps its threads for later regions of the calling thread, and a
 *      thread it lets go leaves its stack in glibc's stack cache (40 MB), where the
 *      next thread finds it without mapping memory again.
 * Done when the count is set (ts_ctx_set_threads: early, before models and batches
 * take the memory) and again cheaply before oneDNN runs (another calling thread).
 * Not covered: libgomp's own small allocations (a new team's bookkeeping), which
 * also exit on failure, and a stack size set through the environment that is larger
 * than the default. */
#include "core.h"

#include <errno.h>
#include <omp.h>
#include <string.h>

static void *probe_idle(void *arg) { return arg; }

/* Creates n - 1 threads at once and joins them; returns 0 or pthread_create's error,
 * with the number that could be made in *made. */
static int probe_threads(int n, int *made) {
    pthread_t t[TS_THREADS_MAX];
    int err = 0, k = 0;
    while (k < n - 1 && !(err = pthread_create(&t[k], NULL, probe_idle, NULL))) k++;
    for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
    *made = k;
    return err;
}

ts_status ts_threads_start(ts_ctx *ctx, int n) {
    if (!ctx || n <= 1) return TS_OK;
    if (n > TS_THREADS_MAX) return ts_fail(ctx, TS_EINVAL, "threads: %d is more than %d", n, TS_THREADS_MAX);
    pthread_t self = pthread_self();
    if (ctx->threads_started >= n && pthread_equal(ctx->threads_owner, self)) return TS_OK;
    int made = 0, err = probe_threads(n, &made);
    if (err)
        return ts_fail(ctx, err == EAGAIN || err == ENOMEM ? TS_ENOMEM : TS_EINVAL,
                       "threads: cannot start %d threads: only %d besides the caller could be created (%s)", n, made,
                       strerror(err));
    /* the team itself is what is wanted; the body must not be empty (GCC drops an
     * empty region) */
    int got = 1;
#pragma omp parallel num_threads(n)
    {
        if (omp_get_thread_num() == 0) got = omp_get_num_threads();
    }
    TS_ASSERT(got >= 1 && got <= n); /* fewer under OMP_THREAD_LIMIT: then that is all there will be */
    if (!pthread_equal(ctx->threads_owner, self) || n > ctx->threads_started) ctx->threads_started = n;
    ctx->threads_owner = self;
    return TS_OK;
}
