/* Data-parallel training (docs/distributed.md): which samples of a batch a rank
 * takes, and the sums over ranks the trainer needs, through the caller's
 * communicator (ts_comm). The library holds no transport of its own. */
#include "train.h"

#include <string.h>

ts_status ts_trainer_set_comm(ts_ctx *ctx, ts_trainer *tr, const ts_comm *comm) {
    if (!tr) return ts_fail(ctx, TS_EINVAL, "ts_trainer_set_comm: trainer is NULL");
    if (!comm || comm->size == 1) {
        memset(&tr->comm, 0, sizeof tr->comm);
        tr->comm.size = 1;
        return TS_OK;
    }
    if (comm->size < 1 || comm->rank < 0 || comm->rank >= comm->size)
        return ts_fail(ctx, TS_EINVAL, "data-parallel: rank %d of %d ranks (expected 0 <= rank < ranks)", comm->rank,
                       comm->size);
    if (!comm->allreduce_sum) return ts_fail(ctx, TS_EINVAL, "data-parallel: the communicator has no allreduce_sum");
    if (tr->cfg.modular)
        return ts_fail(ctx, TS_EUNSUPPORTED, "data-parallel: modular training (MwT) runs on one process only");
    if (tr->cfg.batch < comm->size)
        return ts_fail(ctx, TS_EINVAL, "data-parallel: batch %d is smaller than the %d ranks (each takes a share of it)",
                       tr->cfg.batch, comm->size);
    const ts_model *m = tr->model;
    ts_free(tr->dp_buf);
    tr->dp_buf = ts_alloc(ctx, (m->nparams + m->nbuffers + DP_STATS) * sizeof(float), "data-parallel sums");
    if (!tr->dp_buf) return TS_ENOMEM;
    tr->comm = *comm;
    return TS_OK;
}

void dp_shard(int n, const ts_comm *comm, int *lo, int *hi) {
    *lo = (int)((int64_t)n * comm->rank / comm->size);
    *hi = (int)((int64_t)n * (comm->rank + 1) / comm->size);
}

ts_status dp_sum(ts_ctx *ctx, ts_trainer *tr, float *buf, size_t n, const char *what) {
    char err[256] = "";
    if (n == 0 || !tr->comm.allreduce_sum(buf, n, tr->comm.user, err, sizeof err)) return TS_OK;
    return ts_fail(ctx, TS_EIO, "data-parallel: rank %d of %d: summing %s (%zu values) over the ranks failed: %s",
                   tr->comm.rank, tr->comm.size, what, n, err[0] ? err : "no reason given");
}

/* One sum a step, not three: on a network each costs a latency per rank, which
 * dominates beyond a few machines (bench/RESULTS.md, the scaling model). */
ts_status dp_sum_step(ts_ctx *ctx, ts_trainer *tr, int cnt, int total, float *loss, int *correct) {
    ts_model *m = tr->model;
    float *b = tr->dp_buf; /* (nparams + nbuffers + DP_STATS) */
    const size_t np = m->nparams, nb = m->nbuffers;
    memcpy(b, m->grads, np * sizeof(float));
    memcpy(b + np, m->buffers, nb * sizeof(float));
    b[np + nb] = *loss * (float)cnt;
    b[np + nb + 1] = (float)*correct;
    ts_status st = dp_sum(ctx, tr, b, np + nb + DP_STATS, "the gradients");
    if (st) return st;
    memcpy(m->grads, b, np * sizeof(float));
    /* a division, not a product with 1/size: identical values stay identical */
    const float size = (float)tr->comm.size;
    for (size_t i = 0; i < nb; i++) m->buffers[i] = b[np + i] / size;
    *loss = b[np + nb] / (float)total;
    *correct = (int)b[np + nb + 1];
    return TS_OK;
}

ts_status dp_agree_stop(ts_ctx *ctx, ts_trainer *tr, int *stop) {
    float flag = *stop ? 1.0f : 0.0f;
    ts_status st = dp_sum(ctx, tr, &flag, 1, "the stop flags");
    if (!st) *stop = flag > 0;
    return st;
}
