/* SGD (momentum, dampening, Nesterov, L2 weight decay), Adam and AdamW with the
 * exact update order of torch.optim in PyTorch 1.13 (single-tensor path). */
#include "core/testing.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ts_optim_config_default(ts_optim_config *cfg, ts_optimizer_kind kind) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    if (kind == TS_OPT_SGD) cfg->momentum = 0.9f;
    if (kind == TS_OPT_ADAMW) cfg->weight_decay = 0.01f;
}

ts_status ts_optimizer_create(ts_ctx *ctx, ts_model *m, const ts_optim_config *cfg, ts_optimizer **out) {
    *out = NULL;
    ts_optim_config def;
    if (!cfg) {
        ts_optim_config_default(&def, TS_OPT_SGD);
        cfg = &def;
    }
    if (cfg->kind < TS_OPT_SGD || cfg->kind > TS_OPT_ADAMW)
        return ts_fail(ctx, TS_EINVAL, "optimizer: unknown kind %d", (int)cfg->kind);
    if (!(cfg->momentum >= 0) || !(cfg->weight_decay >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) ||
        !(cfg->beta2 >= 0 && cfg->beta2 < 1) || !(cfg->eps > 0))
        return ts_fail(ctx, TS_EINVAL, "optimizer: momentum, weight decay >= 0, betas in [0,1), eps > 0 required");
    if (cfg->nesterov && (cfg->momentum <= 0 || cfg->dampening != 0))
        return ts_fail(ctx, TS_EINVAL, "optimizer: Nesterov momentum requires momentum > 0 and zero dampening");
    ts_status st = model_ensure_grads(ctx, m);
    if (st) return st;
    ts_optimizer *o = calloc(1, sizeof *o);
    if (!o) return ts_fail(ctx, TS_ENOMEM, "optimizer: out of memory");
    o->model = m;
    o->cfg = *cfg;
    o->state_count = cfg->kind == TS_OPT_SGD ? (cfg->momentum > 0 ? m->nparams : 0) : 2 * m->nparams;
    if (o->state_count && !(o->state = ts_calloc(ctx, o->state_count * sizeof(float), "optimizer state"))) {
        free(o);
        return TS_ENOMEM;
    }
    *out = o;
    return TS_OK;
}

void ts_optimizer_free(ts_optimizer *o) {
    if (!o) return;
    ts_free(o->state);
    free(o);
}

int64_t ts_optimizer_steps(const ts_optimizer *o) { return o->steps; }

static void sgd_step(ts_optimizer *o, float lr, int nt) {
    const ts_optim_config *c = &o->cfg;
    float *p = o->model->params;
    const float *g = o->model->grads;
    float *buf = o->state;
    size_t n = o->model->nparams;
    const float wd = c->weight_decay, mom = c->momentum, damp = c->dampening;
    const int first = o->steps == 0, nesterov = c->nesterov;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        if (mom != 0.0f) {
            float b = first ? d : buf[i] * mom + (1.0f - damp) * d;
            buf[i] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[i] = p[i] - lr * d;
    }
}

static void adam_step(ts_optimizer *o, float lr, int nt) {
    const ts_optim_config *c = &o->cfg;
    float *p = o->model->params;
    const float *g = o->model->grads;
    size_t n = o->model->nparams;
    float *m1 = o->state, *m2 = o->state + n;
    const int64_t t = o->steps + 1;
    /* PyTorch computes these scalars in Python double precision */
    const double bc1 = 1.0 - pow((double)c->beta1, (double)t);
    const double bc2 = 1.0 - pow((double)c->beta2, (double)t);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
    const int decoupled = c->kind == TS_OPT_ADAMW;
    const float decay = (float)(1.0 - (double)lr * (double)wd);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i];
        if (decoupled) pi = pi * decay;
        else if (wd != 0.0f) gi = gi + wd * pi;
        float a = m1[i] * b1 + gi * (1.0f - b1);
        float v = m2[i] * b2 + gi * gi * (1.0f - b2);
        m1[i] = a;
        m2[i] = v;
        float denom = sqrtf(v) / bc2_sqrt + eps;
        p[i] = pi + (-step_size) * (a / denom);
    }
}

ts_status ts_optimizer_step(ts_ctx *ctx, ts_optimizer *o, float lr) {
    if (!(lr >= 0) || !isfinite(lr)) return ts_fail(ctx, TS_EINVAL, "optimizer: learning rate %g is invalid", lr);
    int nt = ts_ctx_threads(ctx);
    if (o->cfg.kind == TS_OPT_SGD) sgd_step(o, lr, nt);
    else adam_step(o, lr, nt);
    exec_weights_changed(o->model);
    o->steps++;
    return TS_OK;
}
