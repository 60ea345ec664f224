/* Work spread over ranks (ts_ctx_set_comm, docs/distributed.md): the context holds
 * the caller's communicator; callers split whole batches or items by rank and gather
 * the rows every rank computed, so every rank ends with a lone run's result. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

ts_status ts_ctx_set_comm(ts_ctx *ctx, const ts_comm *comm) {
    if (!ctx) return TS_EINVAL;
    if (!comm || comm->size == 1) {
        memset(&ctx->comm, 0, sizeof ctx->comm);
        ctx->comm.size = 1;
        return TS_OK;
    }
    if (comm->size < 1 || comm->rank < 0 || comm->rank >= comm->size)
        return ts_fail(ctx, TS_EINVAL, "communicator: rank %d of %d ranks (expected 0 <= rank < ranks)", comm->rank,
                       comm->size);
    if (!comm->allgatherv) return ts_fail(ctx, TS_EINVAL, "communicator: no allgatherv, which spreading work needs");
    ctx->comm = *comm;
    return TS_OK;
}

void ctx_share(const ts_ctx *ctx, int r, int64_t n, int64_t *lo, int64_t *hi) {
    const int64_t R = ctx_ranks(ctx);
    *lo = n * r / R;
    *hi = n * (r + 1) / R;
}

/* Rows of rank r: its whole batches, clipped to n. */
static void rows_of(const ts_ctx *ctx, int r, int64_t n, int batch, int64_t *lo, int64_t *hi) {
    if (batch < 1) {
        ctx_share(ctx, r, n, lo, hi);
        return;
    }
    const int64_t nb = (n + batch - 1) / batch;
    ctx_share(ctx, r, nb, lo, hi);
    *lo = *lo * batch < n ? *lo * batch : n;
    *hi = *hi * batch < n ? *hi * batch : n;
}

void ctx_batch_rows(const ts_ctx *ctx, int64_t n, int batch, int64_t *lo, int64_t *hi) {
    rows_of(ctx, ctx_rank(ctx), n, batch, lo, hi);
}

ts_status ctx_gather_rows(ts_ctx *ctx, void *rows, int64_t n, int batch, size_t row_bytes, const char *what) {
    const int R = ctx_ranks(ctx);
    if (R == 1 || n == 0 || row_bytes == 0) return TS_OK;
    size_t *counts = malloc(sizeof *counts * (size_t)R);
    int64_t lo, hi;
    ctx_batch_rows(ctx, n, batch, &lo, &hi);
    const size_t mine = (size_t)(hi - lo) * row_bytes;
    void *copy = malloc(mine ? mine : 1); /* allgatherv's input may not overlap its output */
    if (!counts || !copy) {
        free(counts);
        free(copy);
        return ts_fail(ctx, TS_ENOMEM, "%s: out of memory gathering the ranks' results", what);
    }
    for (int r = 0; r < R; r++) {
        int64_t a, b;
        rows_of(ctx, r, n, batch, &a, &b);
        counts[r] = (size_t)(b - a) * row_bytes;
    }
    memcpy(copy, (char *)rows + (size_t)lo * row_bytes, mine);
    char err[256] = "";
    const int bad = ctx->comm.allgatherv(copy, rows, counts, ctx->comm.user, err, sizeof err);
    free(counts);
    free(copy);
    if (bad)
        return ts_fail(ctx, TS_EIO, "%s: rank %d of %d: gathering the ranks' results failed: %s", what,
                       ctx->comm.rank, R, err[0] ? err : "no reason given");
    return TS_OK;
}
