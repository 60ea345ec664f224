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
    cfg->mwt_alpha = 0.5f;
    cfg->mwt_beta = 1.5f;
    cfg->exit_weight = 0.5f;
    cfg->exit_transfer = 0.8f;
    cfg->exit_temperature = 4.0f;
}

/* Modular training: finds the mask layers (ReLUs over a vector named
 * "<bn>" TS_MWT_MASK_SUFFIX) and allocates their per-step gradients. */
static ts_status mwt_setup(ts_ctx *ctx, ts_trainer *tr) {
    const ts_model *m = tr->model;
    const size_t sl = strlen(TS_MWT_MASK_SUFFIX);
    if (!(tr->cfg.mwt_alpha >= 0 && tr->cfg.mwt_alpha <= 1e3f) || !(tr->cfg.mwt_beta >= 0 && tr->cfg.mwt_beta <= 1e3f))
        return ts_fail(ctx, TS_EINVAL, "modular training: alpha %g and beta %g must be in [0, 1000]", tr->cfg.mwt_alpha,
                       tr->cfg.mwt_beta);
    if (!(tr->gen_of = malloc(sizeof *tr->gen_of * (size_t)m->nlayers)) ||
        !(tr->gen_layer = malloc(sizeof *tr->gen_layer * (size_t)m->nlayers)) ||
        !(tr->gen_off = malloc(sizeof *tr->gen_off * (size_t)m->nlayers)))
        return ts_fail(ctx, TS_ENOMEM, "modular training: out of memory");
    int64_t total = 0;
    size_t work = 0;
    for (int li = 0; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        const size_t n = strlen(l->name);
        tr->gen_of[li] = -1;
        if (l->kind != LAYER_RELU || l->out.ndim != 1 || n < sl || strcmp(l->name + n - sl, TS_MWT_MASK_SUFFIX)) continue;
        const int c = (int)l->out.dims[0];
        tr->gen_of[li] = tr->ngens;
        tr->gen_off[tr->ngens] = total;
        tr->gen_layer[tr->ngens++] = li;
        total += (int64_t)tr->cfg.batch * c;
        const size_t w = mask_pair_loss_work(tr->cfg.batch, c);
        if (w > work) work = w;
    }
    if (tr->ngens == 0)
        return ts_fail(ctx, TS_EINVAL, "modular training: the model has no mask generators (layers named "
                                       "'<bn>" TS_MWT_MASK_SUFFIX "', ts_model_add_mask_generators)");
    tr->gen_grad = ts_alloc(ctx, (size_t)total * sizeof(float), "mask loss gradients");
    tr->gen_work = ts_alloc(ctx, work * sizeof(double), "mask loss scratch");
    return tr->gen_grad && tr->gen_work ? TS_OK : TS_ENOMEM;
}

/* The mask losses of the batch just forwarded (n samples, labels y): their
 * gradients into gen_grad, the means over the generators into coh and coup. */
static void mwt_losses(ts_trainer *tr, int n, const int32_t *y, double *coh, double *coup) {
    ts_model *m = tr->model;
    const float wc = tr->cfg.mwt_alpha / (float)tr->ngens, wp = tr->cfg.mwt_beta / (float)tr->ngens;
    double sc = 0.0, sp = 0.0;
    for (int g = 0; g < tr->ngens; g++) {
        const int li = tr->gen_layer[g], c = (int)m->layers[li].out.dims[0];
        float *d = tr->gen_grad + tr->gen_off[g];
        memset(d, 0, sizeof *d * (size_t)n * (size_t)c);
        double lc, lp;
        mask_pair_loss_ref(n, c, m->exec.ls[li].out, y, wc, wp, d, tr->gen_work, &lc, &lp);
        sc += lc;
        sp += lp;
    }
    *coh = sc / tr->ngens;
    *coup = sp / tr->ngens;
}

/* Backward observer: adds a mask layer's loss gradient to d loss / d its output. */
static int mwt_add_grad(void *user, ts_model *m, int li) {
    const ts_trainer *tr = user;
    const int g = tr->gen_of[li];
    if (g < 0) return 0;
    const size_t count = (size_t)m->exec.n * (size_t)m->layers[li].out.dims[0];
    const float *d = tr->gen_grad + tr->gen_off[g];
    float *grad = m->exec.ls[li].grad;
    for (size_t i = 0; i < count; i++) grad[i] += d[i];
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The checks of a configuration that do not depend on the data. */
static ts_status check_config(ts_ctx *ctx, const ts_train_config *cfg, int has_val) {
    if (cfg->epochs < 1 || cfg->epochs > 100000) return ts_fail(ctx, TS_EINVAL, "epochs: %d out of 1..100000", cfg->epochs);
    if (cfg->batch < 1 || cfg->batch > 65536) return ts_fail(ctx, TS_EINVAL, "batch: %d out of 1..65536", cfg->batch);
    if (!(cfg->lr > 0) || !isfinite(cfg->lr)) return ts_fail(ctx, TS_EINVAL, "lr: %g must be positive", cfg->lr);
    if (!(cfg->label_smoothing >= 0 && cfg->label_smoothing < 1))
        return ts_fail(ctx, TS_EINVAL, "label smoothing: %g out of [0, 1)", cfg->label_smoothing);
    if (cfg->crop_pad < 0 || cfg->crop_pad > 64) return ts_fail(ctx, TS_EINVAL, "crop padding %d out of 0..64", cfg->crop_pad);
    if (cfg->early_stop < 0 || cfg->early_stop > 100000)
        return ts_fail(ctx, TS_EINVAL, "early stopping patience %d out of 0..100000", cfg->early_stop);
    if (!(cfg->exit_weight >= 0 && cfg->exit_weight <= 100))
        return ts_fail(ctx, TS_EINVAL, "exit weight %g out of [0, 100]", cfg->exit_weight);
    if (!(cfg->exit_transfer >= 0 && cfg->exit_transfer <= 1))
        return ts_fail(ctx, TS_EINVAL, "exit weight transfer %g out of [0, 1] (a fraction of the epochs)",
                       cfg->exit_transfer);
    if (!(cfg->exit_distill >= 0 && cfg->exit_distill <= 1))
        return ts_fail(ctx, TS_EINVAL, "exit_distill: the exit's distillation weight %g is out of [0, 1]",
                       cfg->exit_distill);
    /* the temperature matters only with distillation (a config zeroed by hand has none) */
    if (cfg->exit_distill > 0 && !(cfg->exit_temperature >= 0.1f && cfg->exit_temperature <= 100))
        return ts_fail(ctx, TS_EINVAL, "exit_temperature: the exit's distillation temperature %g is out of [0.1, 100]",
                       cfg->exit_temperature);
    if (cfg->compress_activations < 0 || cfg->compress_activations > 2)
        return ts_fail(ctx, TS_EINVAL, "compress_activations: %d must be 0 (off), 1 (fixed) or 2 (adaptive)",
                       cfg->compress_activations);
    if (cfg->compress_activations == 1 && !(cfg->compress_eb >= 0 && cfg->compress_eb < 1))
        return ts_fail(ctx, TS_EINVAL, "activation compression: error bound %g out of [0, 1) (a fraction of each "
                       "tensor's range)", cfg->compress_eb);
    if (cfg->compress_activations == 2 && !(cfg->compress_eb > 0 && cfg->compress_eb <= 0.1f))
        return ts_fail(ctx, TS_EINVAL, "adaptive activation compression: starting bound %g out of (0, 0.1]",
                       cfg->compress_eb);
    if (cfg->compress_activations && cfg->modular) /* the mask losses read activations after the forward */
        return ts_fail(ctx, TS_EUNSUPPORTED, "compressed activations do not combine with modular training");
    if ((cfg->early_stop || cfg->keep_best) && !has_val)
        return ts_fail(ctx, TS_EINVAL, "%s needs a validation set (it watches the validation top-1)",
                       cfg->early_stop ? "early stopping" : "keeping the best epoch");
    return TS_OK;
}

/* A trainer for m with cfg (NULL: the defaults) checked, nothing else set up. */
static ts_status trainer_new(ts_ctx *ctx, ts_model *m, const ts_train_config *cfg, int has_val, ts_trainer **out) {
    ts_train_config def;
    if (!cfg) {
        ts_train_config_default(&def);
        cfg = &def;
    }
    ts_status st = check_config(ctx, cfg, has_val);
    if (st) return st;
    ts_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return ts_fail(ctx, TS_ENOMEM, "trainer: out of memory");
    tr->model = m;
    tr->cfg = *cfg;
    tr->lps = 1;
    tr->best_val_acc = -1;
    tr->best_epoch = -1;
    tr->comm.size = 1;
    *out = tr;
    return TS_OK;
}

/* What both kinds of trainer set up once the loader exists: optimizer, schedule,
 * batch buffers (labels per sample tr->lps), modular training. */
static ts_status trainer_finish(ts_ctx *ctx, ts_trainer *tr) {
    const ts_train_config *cfg = &tr->cfg;
    ts_model *m = tr->model;
    ts_status st;
    if ((st = ts_optimizer_create(ctx, m, &cfg->optim, &tr->opt))) return st;
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
    tr->y = ts_alloc(ctx, b * (size_t)tr->lps * sizeof(int32_t), "training labels");
    if (!tr->x || !tr->logits || !tr->dlogits || !tr->y) return TS_ENOMEM;
    if (cfg->modular && (st = mwt_setup(ctx, tr))) return st;
    tr->act_was_on = m->act_compress;
    tr->act_was_eb = m->act_eb;
    if (cfg->compress_activations &&
        (st = ts_model_set_activation_compression(ctx, m, cfg->compress_eb, cfg->compress_activations == 2)))
        return st;
    if (m->exit_layer) {
        if (tr->lps != 1) return ts_fail(ctx, TS_EUNSUPPORTED, "early exits are trained on images only");
        if (!(tr->exit_dlogits = ts_alloc(ctx, b * k * sizeof(float), "exit logit gradients"))) return TS_ENOMEM;
        exit_view_pair(m, &tr->view_src, &tr->view_dst);
    }
    return TS_OK;
}

/* T-RECX's weight transfer: the early view sees the final feature map through the
 * exit's own depthwise filters while they learn (the first exit_transfer of the epochs) */
static void exit_transfer_weights(ts_trainer *tr) {
    ts_model *m = tr->model;
    if (!tr->view_dst || (double)tr->epoch >= (double)tr->cfg.exit_transfer * tr->cfg.epochs) return;
    const layer *src = &m->layers[tr->view_src], *dst = &m->layers[tr->view_dst];
    memcpy(tensor_data(m, dst->weight), tensor_data(m, src->weight),
           sizeof(float) * (size_t)m->tensors[src->weight].numel);
    if (src->bias_t >= 0)
        memcpy(tensor_data(m, dst->bias_t), tensor_data(m, src->bias_t),
               sizeof(float) * (size_t)m->tensors[src->bias_t].numel);
}

double train_exit_distill(int n, int k, const float *z, const float *zf, double b, double T, float *g) {
    double kl = 0;
    for (int i = 0; i < n; i++) {
        const float *ze = z + (size_t)i * k, *zt = zf + (size_t)i * k;
        float *gi = g + (size_t)i * k;
        double me = ze[0], mt = zt[0], se = 0, st = 0;
        for (int j = 1; j < k; j++) {
            me = ze[j] > me ? ze[j] : me;
            mt = zt[j] > mt ? zt[j] : mt;
        }
        for (int j = 0; j < k; j++) {
            se += exp((ze[j] - me) / T);
            st += exp((zt[j] - mt) / T);
        }
        const double lse = log(se), lst = log(st);
        for (int j = 0; j < k; j++) {
            const double lq = (ze[j] - me) / T - lse, lp = (zt[j] - mt) / T - lst, p = exp(lp);
            kl += p * (lp - lq);
            gi[j] = (float)((1 - b) * gi[j] + b * T * (exp(lq) - p) / n);
        }
    }
    return T * T * kl / n;
}

/* The exit's loss of the batch just forwarded (its cross-entropy, or with distillation
 * the mix above), weighed; its gradient into tr->exit_dlogits; *correct its hits.
 * The final head's logits (tr->logits) must be those of the same forward. */
static float exit_loss(ts_trainer *tr, int n, int *correct) {
    ts_model *m = tr->model;
    const int k = m->classes;
    const float *z = m->exec.ls[m->exit_layer].out;
    const float w = tr->cfg.exit_weight;
    float loss = ts_softmax_cross_entropy(n, k, z, tr->y, tr->cfg.label_smoothing, tr->exit_dlogits);
    if (tr->cfg.exit_distill > 0)
        loss = (float)((1 - tr->cfg.exit_distill) * loss +
                       tr->cfg.exit_distill * train_exit_distill(n, k, z, tr->logits, tr->cfg.exit_distill,
                                                                 tr->cfg.exit_temperature, tr->exit_dlogits));
    for (size_t i = 0; i < (size_t)n * (size_t)k; i++) tr->exit_dlogits[i] *= w;
    *correct = 0;
    for (int i = 0; i < n; i++) *correct += ts_argmax(z + (size_t)i * k, k) == tr->y[i];
    return loss;
}

ts_status ts_trainer_create(ts_ctx *ctx, ts_model *m, const ts_dataset *train, const ts_dataset *val,
                            const ts_train_config *cfg, ts_trainer **out) {
    *out = NULL;
    ts_trainer *tr = NULL;
    ts_status st = trainer_new(ctx, m, cfg, val != NULL, &tr);
    if (st) return st;
    cfg = &tr->cfg;
    tr->train = train;
    tr->val = val;
    if (train->count < 1 || (val && val->count < 1)) {
        st = ts_fail(ctx, TS_EINVAL, "%s set %s is empty", train->count < 1 ? "training" : "validation",
                     train->count < 1 ? train->name : val->name);
        goto fail;
    }
    if ((st = train_check_dataset(ctx, m, train, "training")) ||
        (val && (st = train_check_dataset(ctx, m, val, "validation"))))
        goto fail;

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

    if ((st = ts_loader_create(ctx, train, cfg->batch, 1, &tr->pp, cfg->seed, &tr->loader))) goto fail;
    if ((st = trainer_finish(ctx, tr))) goto fail;
    *out = tr;
    return TS_OK;
fail:
    ts_trainer_free(tr);
    return st;
}

ts_status ts_trainer_create_text(ts_ctx *ctx, ts_model *m, const ts_text_dataset *train, const ts_text_dataset *val,
                                 const ts_train_config *cfg, ts_trainer **out) {
    if (!ctx || !m || !train || !out) return ts_fail(ctx, TS_EINVAL, "ts_trainer_create_text: NULL argument");
    *out = NULL;
    ts_trainer *tr = NULL;
    ts_status st = trainer_new(ctx, m, cfg, val != NULL, &tr);
    if (st) return st;
    cfg = &tr->cfg;
    tr->text_train = train;
    tr->text_val = val;

    if (cfg->modular || cfg->crop_pad || cfg->flip)
        st = ts_fail(ctx, TS_EINVAL, "text training: %s applies to images only",
                     cfg->modular ? "modular training" : "augmentation");
    else if (!(st = train_check_text(ctx, m, train, "training")) && val &&
             !(st = train_check_text(ctx, m, val, "validation")) && val->task != train->task)
        st = ts_fail(ctx, TS_EINVAL, "validation set %s is not the same task as training set %s", val->name,
                     train->name);
    if (st) {
        ts_trainer_free(tr);
        return st;
    }
    if ((st = ts_loader_create_text(ctx, train, cfg->batch, 1, cfg->seed, &tr->loader)) ||
        (tr->lps = ts_loader_labels_per_sample(tr->loader), (st = trainer_finish(ctx, tr)))) {
        ts_trainer_free(tr);
        return st;
    }
    *out = tr;
    return TS_OK;
}

void ts_trainer_free(ts_trainer *tr) {
    if (!tr) return;
    if (tr->model && tr->model->sync_bn == &tr->comm) tr->model->sync_bn = NULL; /* the model outlives us */
    if (tr->model && tr->cfg.compress_activations) { /* the model's own setting again */
        tr->model->act_compress = tr->act_was_on;
        tr->model->act_eb = tr->act_was_eb;
        if (tr->act_was_on != ACT_ADAPTIVE) { /* its bounds were ours */
            free(tr->model->act_rel);
            tr->model->act_rel = NULL;
            tr->model->act_rel_n = 0;
        }
    }
    ts_optimizer_free(tr->opt);
    ts_loader_free(tr->loader);
    ts_free(tr->x);
    ts_free(tr->logits);
    ts_free(tr->dlogits);
    ts_free(tr->y);
    ts_free(tr->gen_grad);
    ts_free(tr->gen_work);
    free(tr->gen_layer);
    free(tr->gen_of);
    free(tr->gen_off);
    free(tr->best_state);
    ts_free(tr->dp_buf);
    free(tr->dp_ready);
    ts_free(tr->exit_dlogits);
    free(tr);
}

int64_t ts_trainer_epoch(const ts_trainer *tr) { return tr->epoch; }
int64_t ts_trainer_step(const ts_trainer *tr) { return tr->opt->steps; }

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

/* Batch b's samples of this rank into tr->x, tr->y: all of them when alone, else
 * its share [lo, hi) of the batch's `total` (the global order is the same for any
 * rank count). */
static ts_status load_batch(ts_trainer *tr, int64_t b, int augment, int *lo, int *cnt, int *total) {
    if (tr->comm.size <= 1) {
        *lo = 0;
        ts_status st = ts_loader_get(tr->loader, b, augment, tr->x, tr->y, cnt);
        *total = *cnt;
        return st;
    }
    const int64_t left = tr->train->count - b * (int64_t)tr->cfg.batch;
    *total = (int)(left < tr->cfg.batch ? left : tr->cfg.batch);
    int hi;
    dp_shard(*total, &tr->comm, lo, &hi);
    *cnt = hi - *lo;
    return ts_loader_get_range(tr->loader, b, *lo, hi, augment, tr->x, tr->y);
}

/* Backward of this rank's cnt samples, as its part of the mean loss over the batch's
 * total; then, data-parallel, the sums over the ranks (dp_sum_step: the gradients,
 * the running statistics, *loss and *correct). */
static ts_status backward_batch(ts_ctx *ctx, ts_trainer *tr, int cnt, int total, float *loss, int *correct) {
    ts_model *m = tr->model;
    ts_status st;
    if (cnt > 0) {
        if (cnt != total) {
            const float part = (float)cnt / (float)total;
            for (size_t i = 0; i < (size_t)cnt * (size_t)m->classes; i++) tr->dlogits[i] *= part;
        }
        /* overlap: dp_observe begins the sums of finished gradients (modular training is never parallel) */
        grad_observer_fn observe = tr->ngens ? mwt_add_grad : tr->dp_ready ? dp_observe : NULL;
        tr->dp_sent = m->nparams;
        tr->dp_err[0] = '\0';
        if ((st = model_backward_exit(ctx, m, tr->dlogits, m->exit_layer ? tr->exit_dlogits : NULL, observe, tr)))
            return tr->dp_err[0] ? ts_fail(ctx, TS_EIO, "%s", tr->dp_err) : st;
    } else { /* a short last batch left this rank nothing: it adds zeros */
        if ((st = model_ensure_grads(ctx, m))) return st;
        memset(m->grads, 0, m->nparams * sizeof(float));
        tr->dp_sent = m->nparams;
    }
    return tr->comm.size <= 1 ? TS_OK : dp_sum_step(ctx, tr, cnt, total, loss, correct);
}

ts_status ts_trainer_run(ts_ctx *ctx, ts_trainer *tr, const ts_train_hooks *hooks) {
    ts_model *m = tr->model;
    const int k = m->classes;
    const int64_t nb = ts_loader_batches(tr->loader);
    const int augment = tr->cfg.crop_pad > 0 || tr->cfg.flip;
    const int parallel = tr->comm.size > 1;
    if (parallel && m->exit_layer)
        return ts_fail(ctx, TS_EUNSUPPORTED, "early exits are not trained data-parallel (one rank only)");
    while (tr->epoch < tr->cfg.epochs) {
        double t0 = now_seconds();
        ts_loader_begin_epoch(tr->loader, tr->epoch);
        if (tr->batch_in_epoch == 0) {
            tr->epoch_loss_sum = tr->epoch_correct = tr->epoch_coh_sum = tr->epoch_coup_sum = 0;
            tr->epoch_seen = 0;
            tr->epoch_exit_loss_sum = tr->epoch_exit_correct = 0;
            tr->epoch_act_kept = tr->epoch_act_plain = 0;
        }
        for (int64_t b = tr->batch_in_epoch; b < nb; b++) {
            int lo = 0, cnt = 0, total = 0;
            ts_status st = load_batch(tr, b, augment, &lo, &cnt, &total);
            if (st) return st;
            int64_t step = tr->opt->steps;
            float lr = ts_schedule_lr(&tr->sched, step);
            /* dropout: a rank's first sample is not the batch's first, so it draws apart */
            uint64_t dropout_seed = rng_mix(tr->cfg.seed, (uint64_t)step);
            if (lo > 0) dropout_seed = rng_mix(dropout_seed, (uint64_t)lo);
            /* per text, or per real token of a tagger (-1 marks padding) */
            const int kc = k / tr->lps;
            int units = cnt;
            float loss = 0.0f;
            double coh = 0.0, coup = 0.0;
            int correct = 0;
            float eloss = 0.0f;
            int ecorrect = 0;
            if (cnt > 0) {
                exit_transfer_weights(tr);
                if ((st = ts_model_forward_train(ctx, m, tr->x, cnt, tr->logits, dropout_seed))) return st;
                if (m->exit_layer) eloss = exit_loss(tr, cnt, &ecorrect);
                loss = tr->lps == 1 ? ts_softmax_cross_entropy(cnt, k, tr->logits, tr->y, tr->cfg.label_smoothing,
                                                               tr->dlogits)
                                    : softmax_xent_vec(cnt * tr->lps, kc, tr->logits, tr->y, -1,
                                                       tr->cfg.label_smoothing, tr->dlogits, &units,
                                                       ts_ctx_threads(ctx));
                if (tr->ngens) mwt_losses(tr, cnt, tr->y, &coh, &coup);
                for (int i = 0; i < cnt * tr->lps; i++)
                    correct += tr->y[i] >= 0 && ts_argmax(tr->logits + (size_t)i * kc, kc) == tr->y[i];
            }
            /* data-parallel (images only, a unit a sample): from here loss and correct are
             * the whole batch's, the same on every rank */
            if ((st = backward_batch(ctx, tr, cnt, total, &loss, &correct))) return st;
            if (parallel) units = total;
            ts_activation_memory am;
            if (m->act_compress && !ts_model_activation_memory(m, &am) && am.compressed &&
                am.kept_bytes > tr->epoch_act_kept) {
                tr->epoch_act_kept = (double)am.kept_bytes;
                tr->epoch_act_plain = (double)am.kept_plain_bytes;
            }
            /* the whole objective is held to the divergence bound (coh, coup: 0 unless modular) */
            const float objective =
                (float)(loss + tr->cfg.mwt_alpha * coh + tr->cfg.mwt_beta * coup + tr->cfg.exit_weight * eloss);
            if ((st = check_loss(ctx, tr, objective, step))) return st;
            tr->epoch_coh_sum += coh * cnt;
            tr->epoch_coup_sum += coup * cnt;
            tr->epoch_correct += correct;
            tr->epoch_loss_sum += (double)loss * units;
            tr->epoch_seen += units;
            tr->epoch_exit_loss_sum += (double)eloss * cnt;
            tr->epoch_exit_correct += ecorrect;
            if ((st = ts_optimizer_step(ctx, tr->opt, lr))) return st;
            /* a step that overflows the weights is caught here, before any checkpoint
             * can save them: the last checkpoint on disk stays the last good one */
            if ((st = check_finite_params(ctx, m, tr->epoch, step))) {
                tr->diverged = 1;
                return st;
            }
            tr->batch_in_epoch = b + 1;
            int stop = 0;
            if (hooks && hooks->on_step) {
                ts_train_progress p = {tr->epoch, tr->cfg.epochs, b + 1, nb, tr->opt->steps,
                                       (float)(tr->epoch_loss_sum / tr->epoch_seen),
                                       (float)(tr->epoch_correct / tr->epoch_seen), lr,
                                       (float)(tr->epoch_coh_sum / tr->epoch_seen),
                                       (float)(tr->epoch_coup_sum / tr->epoch_seen)};
                stop = hooks->on_step(&p, hooks->user);
            }
            if (parallel && (st = dp_agree_stop(ctx, tr, &stop))) return st;
            if (stop) return ts_fail(ctx, TS_ECANCELED, "training stopped by the caller");
        }
        ts_epoch_report r = {tr->epoch, tr->epoch_loss_sum / tr->epoch_seen, tr->epoch_correct / tr->epoch_seen, -1, -1, 0,
                             tr->epoch_coh_sum / tr->epoch_seen, tr->epoch_coup_sum / tr->epoch_seen,
                             tr->epoch_exit_loss_sum / tr->epoch_seen, tr->epoch_exit_correct / tr->epoch_seen,
                             m->exit_layer ? -1 : 0, tr->epoch_act_kept, tr->epoch_act_plain};
        if (tr->val || tr->text_val) {
            ts_eval_report ev;
            ts_status st = tr->val ? ts_evaluate(ctx, m, tr->val, tr->cfg.batch, &ev)
                                   : ts_evaluate_text(ctx, m, tr->text_val, tr->cfg.batch, &ev, NULL);
            if (st) return st;
            st = check_val_loss(ctx, tr, ev.loss);
            if (st) {
                ts_eval_report_free(&ev);
                return st;
            }
            r.val_loss = ev.loss;
            r.val_acc = ev.top1;
            if (m->exit_layer) r.val_exit_acc = ev.exit_top1;
            ts_eval_report_free(&ev);
        }
        int stop = 0;
        if (tr->val || tr->text_val) {
            ts_status st = best_epoch_observe(ctx, tr, tr->epoch, r.val_acc, &stop);
            if (st) return st;
        }
        r.seconds = now_seconds() - t0;
        tr->epoch++;
        tr->batch_in_epoch = 0;
        int halt = hooks && hooks->on_epoch && hooks->on_epoch(&r, hooks->user);
        if (parallel) {
            ts_status st = dp_agree_stop(ctx, tr, &halt);
            if (st) return st;
        }
        if (halt) {
            if (tr->epoch < tr->cfg.epochs) return ts_fail(ctx, TS_ECANCELED, "training stopped by the caller");
            break;
        }
        if (stop && tr->epoch < tr->cfg.epochs) {
            tr->stopped_early = 1;
            break;
        }
    }
    best_epoch_restore(tr);
    return TS_OK;
}
