/* The training loop: batches from the loader, forward, loss, backward, optimizer
 * step with the scheduled rate, validation at each epoch end. Every random choice
 * derives from (seed, epoch, step), so a resumed run repeats an uninterrupted one. */
#include "core/testing.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

float ts_softmax_cross_entropy(int n, int classes, const float *logits, const int32_t *labels, float smoothing,
                               float *dlogits) {
    return softmax_xent_ref(n, classes, logits, labels, smoothing, dlogits);
}

void ts_train_config_default(ts_train_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 10;
    cfg->batch = 128;
    cfg->lr = 0.1f;
    ts_optim_config_default(&cfg->optim, TS_OPT_SGD);
    cfg->schedule = TS_SCHED_CONSTANT;
    cfg->gamma = 0.1f;
    cfg->seed = 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ts_status ts_trainer_create(ts_ctx *ctx, ts_model *m, const ts_dataset *train, const ts_dataset *val,
                            const ts_train_config *cfg, ts_trainer **out) {
    *out = NULL;
    ts_train_config def;
    if (!cfg) {
        ts_train_config_default(&def);
        cfg = &def;
    }
    if (cfg->epochs < 1 || cfg->epochs > 100000) return ts_fail(ctx, TS_EINVAL, "epochs: %d out of 1..100000", cfg->epochs);
    if (cfg->batch < 1 || cfg->batch > 65536) return ts_fail(ctx, TS_EINVAL, "batch: %d out of 1..65536", cfg->batch);
    if (!(cfg->lr > 0) || !isfinite(cfg->lr)) return ts_fail(ctx, TS_EINVAL, "lr: %g must be positive", cfg->lr);
    if (!(cfg->label_smoothing >= 0 && cfg->label_smoothing < 1))
        return ts_fail(ctx, TS_EINVAL, "label smoothing: %g out of [0, 1)", cfg->label_smoothing);
    if (cfg->crop_pad < 0 || cfg->crop_pad > 64) return ts_fail(ctx, TS_EINVAL, "crop padding %d out of 0..64", cfg->crop_pad);
    if (train->count < 1 || (val && val->count < 1))
        return ts_fail(ctx, TS_EINVAL, "%s set %s is empty", train->count < 1 ? "training" : "validation",
                       train->count < 1 ? train->name : val->name);
    ts_status st = train_check_dataset(ctx, m, train, "training");
    if (!st && val) st = train_check_dataset(ctx, m, val, "validation");
    if (st) return st;

    ts_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return ts_fail(ctx, TS_ENOMEM, "trainer: out of memory");
    tr->model = m;
    tr->train = train;
    tr->val = val;
    tr->cfg = *cfg;

    /* preprocessing: keep the model's (fine-tuning, resume), else measure the data */
    if (!ts_model_get_meta(m, "preprocess.mean")) {
        ts_preprocess pp;
        memset(&pp, 0, sizeof pp);
        pp.channels = train->channels;
        ts_dataset_channel_stats(train, pp.mean, pp.std);
        for (int c = 0; c < pp.channels; c++)
            if (!(pp.std[c] > 1e-6f)) pp.std[c] = 1.0f; /* constant channel: only centre it */
        if ((st = ts_model_set_preprocess(ctx, m, &pp))) goto fail;
    }
    if ((st = ts_model_get_preprocess(ctx, m, &tr->pp))) goto fail;
    tr->pp.crop_pad = cfg->crop_pad;
    tr->pp.flip = cfg->flip;

    if ((st = ts_optimizer_create(ctx, m, &cfg->optim, &tr->opt))) goto fail;
    if ((st = ts_loader_create(ctx, train, cfg->batch, 1, &tr->pp, cfg->seed, &tr->loader))) goto fail;
    tr->sched.kind = cfg->schedule;
    tr->sched.lr = cfg->lr;
    tr->sched.step_size = cfg->step_size;
    tr->sched.gamma = cfg->gamma;
    tr->sched.steps_per_epoch = ts_loader_batches(tr->loader);
    tr->sched.total_steps = tr->sched.steps_per_epoch * cfg->epochs;

    size_t in_sz = (size_t)shape_numel(&m->input), b = (size_t)cfg->batch, k = (size_t)m->classes;
    tr->x = ts_alloc(ctx, b * in_sz * sizeof(float), "training batch");
    tr->logits = ts_alloc(ctx, b * k * sizeof(float), "training logits");
    tr->dlogits = ts_alloc(ctx, b * k * sizeof(float), "training logit gradients");
    tr->y = ts_alloc(ctx, b * sizeof(int32_t), "training labels");
    if (!tr->x || !tr->logits || !tr->dlogits || !tr->y) {
        st = TS_ENOMEM;
        goto fail;
    }
    *out = tr;
    return TS_OK;
fail:
    ts_trainer_free(tr);
    return st;
}

void ts_trainer_free(ts_trainer *tr) {
    if (!tr) return;
    ts_optimizer_free(tr->opt);
    ts_loader_free(tr->loader);
    ts_free(tr->x);
    ts_free(tr->logits);
    ts_free(tr->dlogits);
    ts_free(tr->y);
    free(tr);
}

int64_t ts_trainer_epoch(const ts_trainer *tr) { return tr->epoch; }
int64_t ts_trainer_step(const ts_trainer *tr) { return tr->opt->steps; }

static int argmax_row(const float *row, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[best]) best = j;
    return best;
}

/* TS_EDIVERGED naming the first parameter tensor holding NaN or Inf */
static ts_status check_finite_params(ts_ctx *ctx, const ts_model *m, int64_t epoch, int64_t step) {
    int bad = 0;
    const float *p = m->params;
    size_t n = m->nparams;
    /* an OR of "not finite" over all values: no early exit, vectorizes */
    for (size_t i = 0; i < n; i++) bad |= !isfinite(p[i]);
    if (!bad) return TS_OK;
    for (int t = 0; t < m->ntensors; t++) {
        const tensor_entry *e = &m->tensors[t];
        if (e->role != TS_TENSOR_PARAM) continue;
        for (int64_t i = 0; i < e->numel; i++)
            if (!isfinite(p[e->offset + (size_t)i]))
                return ts_fail(ctx, TS_EDIVERGED,
                               "training diverged at epoch %lld, step %lld: %s holds %s after the update (lower --lr?)",
                               (long long)epoch + 1, (long long)step + 1, e->name,
                               isnan(p[e->offset + (size_t)i]) ? "NaN" : "Inf");
    }
    return ts_fail(ctx, TS_EDIVERGED, "training diverged at step %lld", (long long)step + 1);
}

/* Divergence is a loss that is not finite, or one more than DIVERGE_FACTOR times the
 * lowest running average of the losses so far: a blow-up that stays finite (1e15)
 * counts too. The base is never below ln(classes) + 1, the loss of a guess plus one,
 * so that a fitted model's one bad batch does not count. */
#define DIVERGE_FACTOR 20.0
#define LOSS_AVG_RATE 0.1

static double loss_bound(const ts_trainer *tr) {
    double base = tr->loss_low, floor = log((double)tr->model->classes) + 1.0;
    return DIVERGE_FACTOR * (base > floor ? base : floor);
}

static ts_status check_loss(ts_ctx *ctx, ts_trainer *tr, float loss, int64_t step) {
    double bound = loss_bound(tr);
    if (isfinite(loss) && (tr->loss_avg == 0 || loss <= bound)) {
        tr->loss_avg = tr->loss_avg == 0 ? loss : tr->loss_avg + LOSS_AVG_RATE * (loss - tr->loss_avg);
        if (tr->loss_low == 0 || tr->loss_avg < tr->loss_low) tr->loss_low = tr->loss_avg;
        return TS_OK;
    }
    tr->diverged = 1;
    if (!isfinite(loss))
        return ts_fail(ctx, TS_EDIVERGED, "training diverged at epoch %lld, step %lld: loss is %s (lower --lr?)",
                       (long long)tr->epoch + 1, (long long)step + 1, isnan(loss) ? "NaN" : "infinite");
    return ts_fail(ctx, TS_EDIVERGED,
                   "training diverged at epoch %lld, step %lld: loss %.4g is more than %g times its running "
                   "average %.4g (lower --lr?)", (long long)tr->epoch + 1, (long long)step + 1, loss, DIVERGE_FACTOR,
                   bound / DIVERGE_FACTOR);
}

/* The epoch's last update has no training loss after it: the validation loss, held
 * to the same bound, vouches for it. */
static ts_status check_val_loss(ts_ctx *ctx, ts_trainer *tr, double loss) {
    double bound = loss_bound(tr);
    if (isfinite(loss) && loss <= bound) return TS_OK;
    tr->diverged = 1;
    return ts_fail(ctx, TS_EDIVERGED,
                   "training diverged in epoch %lld: validation loss %.4g is more than %g times the running training "
                   "loss %.4g (lower --lr?)", (long long)tr->epoch + 1, loss, DIVERGE_FACTOR, bound / DIVERGE_FACTOR);
}

ts_status ts_trainer_run(ts_ctx *ctx, ts_trainer *tr, const ts_train_hooks *hooks) {
    ts_model *m = tr->model;
    const int k = m->classes;
    const int64_t nb = ts_loader_batches(tr->loader);
    const int augment = tr->cfg.crop_pad > 0 || tr->cfg.flip;
    while (tr->epoch < tr->cfg.epochs) {
        double t0 = now_seconds();
        ts_loader_begin_epoch(tr->loader, tr->epoch);
        if (tr->batch_in_epoch == 0) {
            tr->epoch_loss_sum = tr->epoch_correct = 0;
            tr->epoch_seen = 0;
        }
        for (int64_t b = tr->batch_in_epoch; b < nb; b++) {
            int cnt = 0;
            ts_status st = ts_loader_get(tr->loader, b, augment, tr->x, tr->y, &cnt);
            if (st) return st;
            int64_t step = tr->opt->steps;
            float lr = ts_schedule_lr(&tr->sched, step);
            if ((st = ts_model_forward_train(ctx, m, tr->x, cnt, tr->logits, rng_mix(tr->cfg.seed, (uint64_t)step))))
                return st;
            float loss = ts_softmax_cross_entropy(cnt, k, tr->logits, tr->y, tr->cfg.label_smoothing, tr->dlogits);
            if ((st = check_loss(ctx, tr, loss, step))) return st;
            for (int i = 0; i < cnt; i++) tr->epoch_correct += argmax_row(tr->logits + (size_t)i * k, k) == tr->y[i];
            tr->epoch_loss_sum += (double)loss * cnt;
            tr->epoch_seen += cnt;
            if ((st = ts_model_backward(ctx, m, tr->dlogits))) return st;
            if ((st = ts_optimizer_step(ctx, tr->opt, lr))) return st;
            /* a step that overflows the weights is caught here, before any checkpoint
             * can save them: the last checkpoint on disk stays the last good one */
            if ((st = check_finite_params(ctx, m, tr->epoch, step))) {
                tr->diverged = 1;
                return st;
            }
            tr->batch_in_epoch = b + 1;
            if (hooks && hooks->on_step) {
                ts_train_progress p = {tr->epoch, tr->cfg.epochs, b + 1, nb, tr->opt->steps,
                                       (float)(tr->epoch_loss_sum / tr->epoch_seen),
                                       (float)(tr->epoch_correct / tr->epoch_seen), lr};
                if (hooks->on_step(&p, hooks->user)) return ts_fail(ctx, TS_ECANCELED, "training stopped by the caller");
            }
        }
        ts_epoch_report r = {tr->epoch, tr->epoch_loss_sum / tr->epoch_seen, tr->epoch_correct / tr->epoch_seen, -1, -1, 0};
        if (tr->val) {
            ts_eval_report ev;
            ts_status st = ts_evaluate(ctx, m, tr->val, tr->cfg.batch, &ev);
            if (st) return st;
            st = check_val_loss(ctx, tr, ev.loss);
            if (st) {
                ts_eval_report_free(&ev);
                return st;
            }
            r.val_loss = ev.loss;
            r.val_acc = ev.top1;
            ts_eval_report_free(&ev);
        }
        r.seconds = now_seconds() - t0;
        tr->epoch++;
        tr->batch_in_epoch = 0;
        if (hooks && hooks->on_epoch && hooks->on_epoch(&r, hooks->user))
            return tr->epoch < tr->cfg.epochs ? ts_fail(ctx, TS_ECANCELED, "training stopped by the caller") : TS_OK;
    }
    return TS_OK;
}
