/* Data-parallel training (docs/distributed.md): which samples of a batch a rank
 * takes, and the sums over ranks the trainer needs, through the caller's
 * communicator (ts_comm). The library holds no transport of its own. */
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DP_BUCKET_DEFAULT 65536 /* floats: 256 KiB, four buckets for ResNet-20 */

/* The overlap plan: ready[li] is the lowest gradient offset of layers li and later, so
 * that once backward reaches layer li, grads[ready[li + 1], nparams) are final.
 * Parameters are stored in layer order; a model where they are not (every layer's
 * below its successors') gets no plan, and its sums wait for backward's end. */
static size_t *plan_overlap(const ts_model *m) {
    size_t *ready = malloc(sizeof *ready * ((size_t)m->nlayers + 1));
    if (!ready) return NULL;
    for (int li = 0; li <= m->nlayers; li++) ready[li] = m->nparams;
    for (int t = 0; t < m->ntensors; t++) {
        const tensor_entry *e = &m->tensors[t];
        if (e->role == TS_TENSOR_PARAM && e->offset < ready[e->layer]) ready[e->layer] = e->offset;
    }
    for (int li = m->nlayers - 1; li >= 0; li--)
        if (ready[li + 1] < ready[li]) ready[li] = ready[li + 1];
    for (int t = 0; t < m->ntensors; t++) {
        const tensor_entry *e = &m->tensors[t];
        if (e->role == TS_TENSOR_PARAM && e->offset + (size_t)e->numel > ready[e->layer + 1]) {
            free(ready);
            return NULL;
        }
    }
    return ready;
}

ts_status ts_trainer_set_comm(ts_ctx *ctx, ts_trainer *tr, const ts_comm *comm) {
    if (!tr) return ts_fail(ctx, TS_EINVAL, "ts_trainer_set_comm: trainer is NULL");
    if (tr->model->sync_bn == &tr->comm) tr->model->sync_bn = NULL;
    if (!comm || comm->size == 1) {
        memset(&tr->comm, 0, sizeof tr->comm);
        tr->comm.size = 1;
        return TS_OK;
    }
    if (comm->size < 1 || comm->rank < 0 || comm->rank >= comm->size)
        return ts_fail(ctx, TS_EINVAL, "data-parallel: rank %d of %d ranks (expected 0 <= rank < ranks)", comm->rank,
                       comm->size);
    if (!comm->allreduce_sum) return ts_fail(ctx, TS_EINVAL, "data-parallel: the communicator has no allreduce_sum");
    if (!comm->allreduce_start != !comm->allreduce_wait)
        return ts_fail(ctx, TS_EINVAL, "data-parallel: the communicator has one of allreduce_start and allreduce_wait");
    if (tr->cfg.modular)
        return ts_fail(ctx, TS_EUNSUPPORTED, "data-parallel: modular training (MwT) runs on one process only");
    if (tr->text_train)
        return ts_fail(ctx, TS_EUNSUPPORTED, "data-parallel: text training runs on one process only");
    if (tr->cfg.batch < comm->size)
        return ts_fail(ctx, TS_EINVAL, "data-parallel: batch %d is smaller than the %d ranks (each takes a share of it)",
                       tr->cfg.batch, comm->size);
    const ts_model *m = tr->model;
    ts_free(tr->dp_buf);
    tr->dp_buf = ts_alloc(ctx, (m->nparams + m->nbuffers + DP_STATS) * sizeof(float), "data-parallel sums");
    if (!tr->dp_buf) return TS_ENOMEM;
    free(tr->dp_ready);
    tr->dp_ready = NULL;
    if (comm->allreduce_start && !(tr->dp_ready = plan_overlap(m)) && m->nparams > 0)
        ts_note(ctx, "data-parallel: the parameters are not stored in layer order; their sums begin after backward");
    if (tr->cfg.sync_bn && tr->train) {
        /* every rank takes part in each batch norm's sums: none may sit out the last batch */
        const int64_t last = tr->train->count % tr->cfg.batch;
        if (last > 0 && last < comm->size)
            return ts_fail(ctx, TS_EINVAL, "synchronized batch norm: the last batch of %lld sample%s (of %lld, in "
                           "batches of %d) leaves some of the %d ranks none; choose a batch size that divides the "
                           "training set or leaves at least %d", (long long)last, last == 1 ? "" : "s",
                           (long long)tr->train->count, tr->cfg.batch, comm->size, comm->size);
    }
    tr->comm = *comm;
    if (!tr->comm.bucket) tr->comm.bucket = DP_BUCKET_DEFAULT;
    if (tr->cfg.sync_bn) tr->model->sync_bn = &tr->comm;
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
int dp_observe(void *user, ts_model *m, int li) {
    ts_trainer *tr = user;
    const size_t lo = tr->dp_ready[li + 1];
    size_t n = 0;
    if (tr->dp_sent - lo >= tr->comm.bucket) n = tr->dp_sent - lo; /* else: only progress */
    char err[128] = ""; /* with the words around it, fits dp_err */
    if (!tr->comm.allreduce_start(n ? m->grads + lo : NULL, n, tr->comm.user, err, sizeof err)) {
        if (n) tr->dp_sent = lo;
        return 0;
    }
    snprintf(tr->dp_err, sizeof tr->dp_err, "data-parallel: rank %d of %d: summing gradients during backward failed: %s",
             tr->comm.rank, tr->comm.size, err[0] ? err : "no reason given");
    return 1;
}

/* Overlap: the gradients not yet begun, then the rest, then the wait for all. */
static ts_status sum_begun(ts_ctx *ctx, ts_trainer *tr, float *rest, size_t nrest) {
    const ts_comm *c = &tr->comm;
    char err[200] = "";
    if ((tr->dp_sent && c->allreduce_start(tr->model->grads, tr->dp_sent, c->user, err, sizeof err)) ||
        c->allreduce_start(rest, nrest, c->user, err, sizeof err) || c->allreduce_wait(c->user, err, sizeof err))
        return ts_fail(ctx, TS_EIO, "data-parallel: rank %d of %d: summing the gradients over the ranks failed: %s",
                       c->rank, c->size, err[0] ? err : "no reason given");
    return TS_OK;
}

ts_status dp_sum_step(ts_ctx *ctx, ts_trainer *tr, int cnt, int total, float *loss, int *correct) {
    ts_model *m = tr->model;
    const size_t np = m->nparams, nb = m->nbuffers;
    /* dp_buf (nparams + nbuffers + DP_STATS): without overlap, all of it in one sum,
     * the gradients first; with overlap the gradients are summed in place, and the
     * buffers and stats from dp_buf's start */
    float *b = tr->dp_ready ? tr->dp_buf : tr->dp_buf + np;
    memcpy(b, m->buffers, nb * sizeof(float));
    b[nb] = *loss * (float)cnt;
    b[nb + 1] = (float)*correct;
    ts_status st;
    if (tr->dp_ready) {
        st = sum_begun(ctx, tr, b, nb + DP_STATS);
    } else {
        memcpy(tr->dp_buf, m->grads, np * sizeof(float));
        if (!(st = dp_sum(ctx, tr, tr->dp_buf, np + nb + DP_STATS, "the gradients")))
            memcpy(m->grads, tr->dp_buf, np * sizeof(float));
    }
    if (st) return st;
    /* a division, not a product with 1/size: identical values stay identical */
    const float size = (float)tr->comm.size;
    for (size_t i = 0; i < nb; i++) m->buffers[i] = b[i] / size;
    *loss = b[nb] / (float)total;
    *correct = (int)b[nb + 1];
    return TS_OK;
}

ts_status dp_agree_stop(ts_ctx *ctx, ts_trainer *tr, int *stop) {
    float flag = *stop ? 1.0f : 0.0f;
    ts_status st = dp_sum(ctx, tr, &flag, 1, "the stop flags");
    if (!st) *stop = flag > 0;
    return st;
}
