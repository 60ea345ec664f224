/* Checkpoints: a model file (kind 1) with a TRAN section holding the training
 * configuration, the context settings that change results (version 2: threads,
 * backend, bf16) and the divergence check's running loss, modular training's switch,
 * weights and the epoch's running mask-loss sums (version 3), position (epoch, batch
 * in epoch, optimizer steps, the epoch's running sums) and optimizer buffers.
 * Version 4 adds, after the optimizer buffers, early stopping's state: the best
 * validated epoch, its top-1, the epochs since, and with keep_best that epoch's
 * tensors, so a resumed run keeps its patience count and its best model.
 * Randomness is a function of (seed, epoch, step), so the seed and position are the
 * whole RNG state. Versions 1 (no settings), 2 (not modular) and 3 still load. */
#include "io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TRAN_VERSION 4u

static void write_config(wbuf *b, const ts_train_config *c) {
    wbuf_u32(b, (uint32_t)c->epochs);
    wbuf_u32(b, (uint32_t)c->batch);
    wbuf_f32(b, c->lr);
    wbuf_u32(b, (uint32_t)c->optim.kind);
    wbuf_f32(b, c->optim.momentum);
    wbuf_f32(b, c->optim.dampening);
    wbuf_u32(b, (uint32_t)c->optim.nesterov);
    wbuf_f32(b, c->optim.weight_decay);
    wbuf_f32(b, c->optim.beta1);
    wbuf_f32(b, c->optim.beta2);
    wbuf_f32(b, c->optim.eps);
    wbuf_u32(b, (uint32_t)c->schedule);
    wbuf_u32(b, (uint32_t)c->step_size);
    wbuf_f32(b, c->gamma);
    wbuf_f32(b, c->label_smoothing);
    wbuf_u64(b, c->seed);
    wbuf_u32(b, (uint32_t)c->crop_pad);
    wbuf_u32(b, (uint32_t)c->flip);
}

static ts_status read_config(rbuf *r, ts_train_config *c) {
    uint32_t u[8];
    ts_status st;
    memset(c, 0, sizeof *c);
    if ((st = rbuf_u32(r, &u[0], "epochs")) || (st = rbuf_u32(r, &u[1], "batch")) || (st = rbuf_f32(r, &c->lr, "lr")) ||
        (st = rbuf_u32(r, &u[2], "optimizer")) || (st = rbuf_f32(r, &c->optim.momentum, "momentum")) ||
        (st = rbuf_f32(r, &c->optim.dampening, "dampening")) || (st = rbuf_u32(r, &u[3], "nesterov")) ||
        (st = rbuf_f32(r, &c->optim.weight_decay, "weight decay")) || (st = rbuf_f32(r, &c->optim.beta1, "beta1")) ||
        (st = rbuf_f32(r, &c->optim.beta2, "beta2")) || (st = rbuf_f32(r, &c->optim.eps, "eps")) ||
        (st = rbuf_u32(r, &u[4], "schedule")) || (st = rbuf_u32(r, &u[5], "step size")) ||
        (st = rbuf_f32(r, &c->gamma, "gamma")) || (st = rbuf_f32(r, &c->label_smoothing, "label smoothing")) ||
        (st = rbuf_u64(r, &c->seed, "seed")) || (st = rbuf_u32(r, &u[6], "crop padding")) ||
        (st = rbuf_u32(r, &u[7], "flip")))
        return st;
    if (u[0] < 1 || u[0] > 100000 || u[1] < 1 || u[1] > 65536 || u[2] > TS_OPT_ADAMW || u[3] > 1 ||
        u[4] > TS_SCHED_ONECYCLE || u[5] > 100000 || u[6] > 64 || u[7] > 1 || !isfinite(c->lr) ||
        !isfinite(c->optim.momentum) || !isfinite(c->optim.weight_decay) || !isfinite(c->gamma) ||
        !isfinite(c->optim.dampening) || !isfinite(c->optim.beta1) || !isfinite(c->optim.beta2) ||
        !isfinite(c->optim.eps) || !isfinite(c->label_smoothing))
        return ts_fail(r->ctx, TS_EFORMAT, "%s: training configuration out of range", r->path);
    c->epochs = (int)u[0];
    c->batch = (int)u[1];
    c->optim.kind = (ts_optimizer_kind)u[2];
    c->optim.nesterov = (int)u[3];
    c->schedule = (ts_schedule_kind)u[4];
    c->step_size = (int)u[5];
    c->crop_pad = (int)u[6];
    c->flip = (int)u[7];
    return TS_OK;
}

/* The version 2 and 3 fields after the configuration. */
typedef struct tran_extra {
    uint32_t version;
    ts_run_settings settings; /* threads 0: not recorded (version 1) */
    double loss_avg, loss_low;
    double coh_sum, coup_sum; /* modular training's running sums in the epoch (version 3) */
} tran_extra;

/* Version 3: modular training's switch and weights (cfg) and running sums (x). */
static ts_status read_modular(rbuf *r, ts_train_config *cfg, tran_extra *x) {
    uint32_t on;
    ts_status st;
    if ((st = rbuf_u32(r, &on, "modular")) || (st = rbuf_f32(r, &cfg->mwt_alpha, "modular alpha")) ||
        (st = rbuf_f32(r, &cfg->mwt_beta, "modular beta")) || (st = rbuf_f64(r, &x->coh_sum, "epoch cohesion")) ||
        (st = rbuf_f64(r, &x->coup_sum, "epoch coupling")))
        return st;
    if (on > 1 || !(cfg->mwt_alpha >= 0 && cfg->mwt_alpha <= 1e3f) || !(cfg->mwt_beta >= 0 && cfg->mwt_beta <= 1e3f) ||
        !isfinite(x->coh_sum) || !isfinite(x->coup_sum))
        return ts_fail(r->ctx, TS_EFORMAT, "%s: modular training settings out of range (modular %u, alpha %g, beta %g)",
                       r->path, on, cfg->mwt_alpha, cfg->mwt_beta);
    cfg->modular = (int)on;
    return TS_OK;
}

static ts_status read_extra(rbuf *r, uint32_t version, ts_train_config *cfg, tran_extra *x) {
    memset(x, 0, sizeof *x);
    cfg->mwt_alpha = 0.5f; /* before version 3: never modular, the defaults */
    cfg->mwt_beta = 1.5f;
    cfg->exit_weight = 0.5f; /* not recorded: an early exit's defaults (the CLI's options override) */
    cfg->exit_transfer = 0.8f;
    cfg->exit_distill = 0.0f;
    cfg->exit_temperature = 4.0f;
    if (version < 2) return TS_OK;
    uint32_t u[3];
    ts_status st;
    if ((st = rbuf_u32(r, &u[0], "threads")) || (st = rbuf_u32(r, &u[1], "backend")) ||
        (st = rbuf_u32(r, &u[2], "bf16")) || (st = rbuf_f64(r, &x->loss_avg, "running loss")) ||
        (st = rbuf_f64(r, &x->loss_low, "lowest running loss")))
        return st;
    if (u[0] < 1 || u[0] > 1024 || u[1] > TS_BACKEND_REF || u[2] > 1 || !isfinite(x->loss_avg) ||
        !isfinite(x->loss_low) || x->loss_avg < 0 || x->loss_low < 0)
        return ts_fail(r->ctx, TS_EFORMAT, "%s: recorded settings out of range (threads %u, backend %u, bf16 %u)",
                       r->path, u[0], u[1], u[2]);
    x->settings.threads = (int)u[0];
    x->settings.backend = (ts_backend)u[1];
    x->settings.bf16 = (int)u[2];
    return version >= 3 ? read_modular(r, cfg, x) : TS_OK;
}

/* The version, the configuration and the version 2 fields. */
static ts_status read_head(rbuf *r, ts_train_config *cfg, tran_extra *x) {
    uint32_t version;
    ts_status st = rbuf_u32(r, &version, "checkpoint version");
    if (!st && (version < 1 || version > TRAN_VERSION))
        st = ts_fail(r->ctx, TS_EUNSUPPORTED, "%s: checkpoint state version %u, this tessera reads 1 to %u", r->path,
                     version, TRAN_VERSION);
    if (!st) st = read_config(r, cfg);
    if (!st) st = read_extra(r, version, cfg, x);
    if (!st) x->version = version;
    return st;
}

ts_status ts_checkpoint_save(ts_ctx *ctx, const ts_trainer *tr, const char *path) {
    /* never replace a good checkpoint with a diverged state */
    if (tr->diverged)
        return ts_fail(ctx, TS_EDIVERGED, "%s: not saved: training diverged, this state is not one to resume", path);
    int bad = 0;
    for (size_t i = 0; i < tr->model->nparams; i++) bad |= !isfinite(tr->model->params[i]);
    if (bad)
        return ts_fail(ctx, TS_EDIVERGED, "%s: not saved: the parameters hold NaN or Inf (training diverged)", path);
    wbuf b = {0};
    wbuf_u32(&b, TRAN_VERSION);
    write_config(&b, &tr->cfg);
    wbuf_u32(&b, (uint32_t)ts_ctx_get_threads(ctx));
    wbuf_u32(&b, (uint32_t)ts_ctx_get_backend(ctx));
    wbuf_u32(&b, (uint32_t)ts_ctx_get_bf16(ctx));
    wbuf_f64(&b, tr->loss_avg);
    wbuf_f64(&b, tr->loss_low);
    wbuf_u32(&b, (uint32_t)(tr->cfg.modular != 0));
    wbuf_f32(&b, tr->cfg.mwt_alpha);
    wbuf_f32(&b, tr->cfg.mwt_beta);
    wbuf_f64(&b, tr->epoch_coh_sum);
    wbuf_f64(&b, tr->epoch_coup_sum);
    wbuf_u64(&b, (uint64_t)tr->epoch);
    wbuf_u64(&b, (uint64_t)tr->batch_in_epoch);
    wbuf_f64(&b, tr->epoch_loss_sum);
    wbuf_f64(&b, tr->epoch_correct);
    wbuf_u64(&b, (uint64_t)tr->epoch_seen);
    wbuf_u64(&b, (uint64_t)tr->opt->steps);
    wbuf_u64(&b, (uint64_t)tr->opt->state_count);
    wbuf_bytes(&b, tr->opt->state, tr->opt->state_count * sizeof(float));
    /* version 4: early stopping and the best epoch */
    const uint64_t nbest = tr->best_state && tr->best_epoch >= 0 ? best_epoch_state_floats(tr->model) : 0;
    wbuf_u64(&b, (uint64_t)(tr->best_epoch + 1));
    wbuf_f64(&b, tr->best_val_acc);
    wbuf_u64(&b, (uint64_t)tr->since_best);
    wbuf_u64(&b, nbest);
    if (nbest) wbuf_bytes(&b, tr->best_state, nbest * sizeof(float));
    return model_file_write_with(ctx, tr->model, path, MODEL_KIND_CHECKPOINT, TAG_TRAN, &b, "checkpoint");
}

static ts_status read_tran(ts_ctx *ctx, const char *path, ts_model **model, uint8_t **data, size_t *len,
                           size_t *base) {
    ts_status st = model_file_read(ctx, path, model, TAG_TRAN, data, len, base);
    if (st) return st;
    if (!*data) {
        ts_model_free(*model);
        *model = NULL;
        return ts_fail(ctx, TS_EFORMAT, "%s: a model file, not a checkpoint (no training state to resume)", path);
    }
    return TS_OK;
}

ts_status ts_checkpoint_load_model(ts_ctx *ctx, const char *path, ts_model **model, ts_train_config *cfg) {
    uint8_t *data;
    size_t len, base = 0;
    ts_status st = read_tran(ctx, path, model, &data, &len, &base);
    if (st) return st;
    rbuf r = {data, len, 0, base, path, ctx};
    tran_extra x;
    st = read_head(&r, cfg, &x);
    free(data);
    if (st) {
        ts_model_free(*model);
        *model = NULL;
    }
    return st;
}

ts_status ts_checkpoint_settings(ts_ctx *ctx, const char *path, ts_run_settings *out) {
    memset(out, 0, sizeof *out);
    ts_model *m = NULL;
    uint8_t *data;
    size_t len, base = 0;
    ts_status st = read_tran(ctx, path, &m, &data, &len, &base);
    if (st) return st;
    ts_model_free(m);
    rbuf r = {data, len, 0, base, path, ctx};
    ts_train_config cfg;
    tran_extra x;
    if (!(st = read_head(&r, &cfg, &x))) *out = x.settings;
    free(data);
    return st;
}

ts_status ts_checkpoint_restore(ts_ctx *ctx, ts_trainer *tr, const char *path) {
    ts_model *tmp = NULL;
    uint8_t *data;
    size_t len, base = 0;
    ts_status st = read_tran(ctx, path, &tmp, &data, &len, &base);
    if (st) return st;
    ts_model_free(tmp); /* the trainer's model came from ts_checkpoint_load_model */
    rbuf r = {data, len, 0, base, path, ctx};
    ts_train_config cfg;
    tran_extra x;
    uint64_t epoch, bie, seen, steps, count;
    double loss_sum, correct;
    if ((st = read_head(&r, &cfg, &x)) ||
        (st = rbuf_u64(&r, &epoch, "epoch")) || (st = rbuf_u64(&r, &bie, "batch in epoch")) ||
        (st = rbuf_f64(&r, &loss_sum, "epoch loss")) || (st = rbuf_f64(&r, &correct, "epoch correct")) ||
        (st = rbuf_u64(&r, &seen, "epoch samples")) || (st = rbuf_u64(&r, &steps, "optimizer steps")) ||
        (st = rbuf_u64(&r, &count, "optimizer state size")))
        goto done;
    if (count != tr->opt->state_count) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: optimizer state holds %llu values, the trainer's optimizer needs %zu", path,
                     (unsigned long long)count, tr->opt->state_count);
        goto done;
    }
    if (cfg.optim.kind != tr->cfg.optim.kind || cfg.batch != tr->cfg.batch || cfg.seed != tr->cfg.seed) {
        st = ts_fail(ctx, TS_EINVAL, "%s: resuming needs the checkpoint's optimizer, batch size and seed", path);
        goto done;
    }
    if (!cfg.modular != !tr->cfg.modular) {
        st = ts_fail(ctx, TS_EINVAL, "%s: the checkpoint was %s modular training; resume it %s --modular", path,
                     cfg.modular ? "saved by" : "not saved by", cfg.modular ? "with" : "without");
        goto done;
    }
    int64_t nb = ts_loader_batches(tr->loader);
    if (epoch > 100000 || (int64_t)bie > nb || steps > (uint64_t)1 << 50 || seen > (uint64_t)1 << 50) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: training position out of range (epoch %llu, batch %llu of %lld)", path,
                     (unsigned long long)epoch, (unsigned long long)bie, (long long)nb);
        goto done;
    }
    const uint8_t *p, *best = NULL;
    if ((st = rbuf_view(&r, &p, count * sizeof(float), "optimizer state"))) goto done;
    uint64_t best1 = 0, since = 0, nbest = 0;
    double best_acc = -1;
    if (x.version >= 4) {
        if ((st = rbuf_u64(&r, &best1, "best epoch")) || (st = rbuf_f64(&r, &best_acc, "best validation top-1")) ||
            (st = rbuf_u64(&r, &since, "epochs since the best")) || (st = rbuf_u64(&r, &nbest, "best epoch's tensors")))
            goto done;
        if (best1 > epoch || since > epoch || !isfinite(best_acc) || best_acc < -1 || best_acc > 1 ||
            (nbest && nbest != best_epoch_state_floats(tr->model))) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: early-stopping state out of range (best epoch %llu of %llu, top-1 %g, "
                         "%llu values for the best epoch's tensors)", path, (unsigned long long)best1,
                         (unsigned long long)epoch, best_acc, (unsigned long long)nbest);
            goto done;
        }
        if (nbest && (st = rbuf_view(&r, &best, nbest * sizeof(float), "best epoch's tensors"))) goto done;
    }
    if (r.off != r.len) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: %zu unexpected bytes after the training state", path, r.len - r.off);
        goto done;
    }
    if (count) memcpy(tr->opt->state, p, count * sizeof(float));
    tr->epoch = (int64_t)epoch;
    tr->batch_in_epoch = (int64_t)bie;
    tr->epoch_loss_sum = loss_sum;
    tr->epoch_correct = correct;
    tr->epoch_seen = (int64_t)seen;
    tr->epoch_coh_sum = x.coh_sum;
    tr->epoch_coup_sum = x.coup_sum;
    tr->opt->steps = (int64_t)steps;
    tr->loss_avg = x.loss_avg;
    tr->loss_low = x.loss_low;
    /* the best epoch goes on, unless keep_best wants its tensors and the checkpoint has
     * none (saved without keep_best, or before version 4): then it starts anew */
    if (best1 && (!tr->cfg.keep_best || best)) {
        tr->best_epoch = (int64_t)best1 - 1;
        tr->best_val_acc = best_acc;
        tr->since_best = (int64_t)since;
        if (best && tr->cfg.keep_best) {
            free(tr->best_state);
            if (!(tr->best_state = malloc(nbest * sizeof(float)))) {
                st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory for the best epoch's tensors", path);
                goto done;
            }
            memcpy(tr->best_state, best, nbest * sizeof(float));
        }
    }
done:
    free(data);
    return st;
}
