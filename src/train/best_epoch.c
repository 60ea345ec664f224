/* Early stopping and the best epoch: the validation top-1 after each epoch decides
 * whether training goes on (cfg.early_stop, the patience) and which epoch's weights the
 * model keeps (cfg.keep_best). The copy is of every tensor, batch-norm statistics too,
 * so the model restored is exactly the one that was validated. */
#include "train.h"

#include <stdlib.h>
#include <string.h>

size_t best_epoch_state_floats(const ts_model *m) {
    size_t n = 0;
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info t;
        if (!ts_model_tensor(m, i, &t)) n += (size_t)t.numel;
    }
    return n;
}

/* Copies the model's tensors to (to_model 0) or from (1) buf. */
static void state_copy(ts_model *m, float *buf, int to_model) {
    size_t off = 0;
    for (int i = 0; i < ts_model_tensor_count(m); i++) {
        ts_tensor_info t;
        if (ts_model_tensor(m, i, &t)) continue;
        const size_t bytes = (size_t)t.numel * sizeof(float);
        if (to_model) memcpy(t.data, buf + off, bytes);
        else memcpy(buf + off, t.data, bytes);
        off += (size_t)t.numel;
    }
}

ts_status best_epoch_observe(ts_ctx *ctx, ts_trainer *tr, int64_t epoch, double val_acc, int *stop) {
    *stop = 0;
    if (tr->best_epoch < 0 || val_acc > tr->best_val_acc) {
        tr->best_val_acc = val_acc;
        tr->best_epoch = epoch;
        tr->since_best = 0;
        if (tr->cfg.keep_best) {
            if (!tr->best_state) {
                const size_t n = best_epoch_state_floats(tr->model);
                tr->best_state = malloc((n ? n : 1) * sizeof(float));
                if (!tr->best_state) return ts_fail(ctx, TS_ENOMEM, "keep best epoch: out of memory for %zu floats", n);
            }
            state_copy(tr->model, tr->best_state, 0);
        }
        return TS_OK;
    }
    tr->since_best++;
    *stop = tr->cfg.early_stop > 0 && tr->since_best >= tr->cfg.early_stop;
    return TS_OK;
}

void best_epoch_restore(ts_trainer *tr) {
    if (!tr->cfg.keep_best || !tr->best_state || tr->restored_best) return;
    state_copy(tr->model, tr->best_state, 1);
    tr->restored_best = 1;
}

void ts_trainer_summary(const ts_trainer *tr, ts_train_summary *out) {
    memset(out, 0, sizeof *out);
    out->epochs_done = tr->epoch;
    out->best_epoch = tr->best_epoch;
    out->best_val_acc = tr->best_epoch >= 0 ? tr->best_val_acc : -1;
    out->stopped_early = tr->stopped_early;
    out->restored_best = tr->restored_best;
}
