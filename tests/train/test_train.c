/* Training: optimizer updates against PyTorch's formulas computed here in double,
 * learning-rate schedules against torch's definitions, end-to-end training on a
 * synthetic dataset built in memory, bit-identical reruns and resumes (at an epoch
 * end and mid-epoch, SGD momentum and AdamW, dropout and augmentation on),
 * divergence reporting, evaluation on a model whose predictions are known by
 * construction, and validation reporting. */
#include "tessera.h"
#include "core/testing.h"

#include "common/test.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_train_XXXXXX";

/* ------------------------------------------------------------------ helpers */

static ts_model *make_model(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, text, "train.arch", NULL, 0, seed, &m);
    CHECK(st == TS_OK, "model: %s", ts_ctx_error(g_ctx));
    return m;
}

static ts_tensor_info tensor_at(const ts_model *m, int i) {
    ts_tensor_info t;
    memset(&t, 0, sizeof t);
    CHECK(ts_model_tensor(m, i, &t) == TS_OK, "tensor %d", i);
    return t;
}

/* 1 when every tensor (parameters and buffers) of a and b is bit-identical. */
static int same_tensors(const ts_model *a, const ts_model *b, const char *what) {
    if (ts_model_tensor_count(a) != ts_model_tensor_count(b)) {
        CHECK(0, "%s: tensor counts differ", what);
        return 0;
    }
    int same = 1;
    for (int t = 0; t < ts_model_tensor_count(a); t++) {
        ts_tensor_info ta = tensor_at(a, t), tb = tensor_at(b, t);
        if (ta.numel != tb.numel || memcmp(ta.data, tb.data, (size_t)ta.numel * sizeof(float))) {
            int64_t first = 0;
            while (first < ta.numel && ta.data[first] == tb.data[first]) first++;
            CHECK(0, "%s: %s differs (first at %lld: %.9g vs %.9g)", what, ta.name, (long long)first,
                  first < ta.numel ? ta.data[first] : 0.0, first < tb.numel ? tb.data[first] : 0.0);
            same = 0;
        }
    }
    return same;
}

/* ---------------------------------------------------------- optimizers */

/* A model of 8 parameters (dense 3 -> 2 with bias) whose values and gradients the
 * test sets directly. */
static const char *TINY = "input shape=3 classes=2\ndense name=fc out=2\n";

typedef struct ref_opt {
    ts_optim_config c;
    double p[8], buf[8], m1[8], m2[8];
    int64_t t;
} ref_opt;

/* torch.optim.SGD / Adam / AdamW, single-tensor path, in double. */
static void ref_step(ref_opt *o, const double *g, double lr) {
    const ts_optim_config *c = &o->c;
    o->t++;
    for (int i = 0; i < 8; i++) {
        double d = g[i], p = o->p[i];
        if (c->kind == TS_OPT_SGD) {
            if (c->weight_decay != 0) d += (double)c->weight_decay * p;
            if (c->momentum != 0) {
                o->buf[i] = o->t == 1 ? d : (double)c->momentum * o->buf[i] + (1.0 - (double)c->dampening) * d;
                d = c->nesterov ? d + (double)c->momentum * o->buf[i] : o->buf[i];
            }
            o->p[i] = p - lr * d;
        } else {
            if (c->kind == TS_OPT_ADAMW) p *= 1.0 - lr * (double)c->weight_decay;
            else if (c->weight_decay != 0) d += (double)c->weight_decay * p;
            const double b1 = c->beta1, b2 = c->beta2;
            o->m1[i] = b1 * o->m1[i] + (1 - b1) * d;
            o->m2[i] = b2 * o->m2[i] + (1 - b2) * d * d;
            const double bc1 = 1 - pow(b1, (double)o->t), bc2 = 1 - pow(b2, (double)o->t);
            const double denom = sqrt(o->m2[i]) / sqrt(bc2) + (double)c->eps;
            o->p[i] = p - lr / bc1 * o->m1[i] / denom;
        }
    }
}

static void check_optimizer(const char *what, ts_optim_config cfg) {
    ts_model *m = make_model(TINY, 1);
    if (!m) return;
    ts_optimizer *opt = NULL;
    CHECK(ts_optimizer_create(g_ctx, m, &cfg, &opt) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    if (!opt) {
        ts_model_free(m);
        return;
    }
    /* gradients exist once an optimizer (or a training pass) needs them */
    ts_tensor_info w = tensor_at(m, 0), b = tensor_at(m, 1);
    CHECK(w.numel == 6 && b.numel == 2 && b.data == w.data + 6 && w.grad && b.grad == w.grad + 6, "tiny layout");
    float *p = w.data, *g = w.grad;
    ref_opt r;
    memset(&r, 0, sizeof r);
    r.c = cfg;
    const float p0[8] = {0.5f, -0.25f, 1.5f, -2.0f, 0.125f, 0.75f, -0.1f, 0.3f};
    for (int i = 0; i < 8; i++) p[i] = p0[i], r.p[i] = p0[i];
    const float lrs[4] = {0.1f, 0.05f, 0.2f, 0.01f};
    for (int step = 0; step < 4; step++) {
        double gd[8];
        for (int i = 0; i < 8; i++) {
            /* different signs and scales per step, one gradient exactly 0 */
            float gi = (float)((i * 37 + step * 11) % 17 - 8) * 0.125f * (step == 2 ? 10.0f : 1.0f);
            if (i == 5 && step == 1) gi = 0.0f;
            g[i] = gi;
            gd[i] = gi;
        }
        CHECK(ts_optimizer_step(g_ctx, opt, lrs[step]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ref_step(&r, gd, (double)lrs[step]);
        for (int i = 0; i < 8; i++)
            CHECK(fabs(p[i] - r.p[i]) <= 2e-6 * fabs(r.p[i]) + 1e-7, "%s step %d p[%d]: %.9g, want %.9g", what,
                  step + 1, i, p[i], r.p[i]);
        CHECK(ts_optimizer_steps(opt) == step + 1, "%s: steps %lld", what, (long long)ts_optimizer_steps(opt));
    }
    ts_optimizer_free(opt);
    ts_model_free(m);
}

static void test_sgd(void) {
    ts_optim_config c;
    ts_optim_config_default(&c, TS_OPT_SGD);
    CHECK(c.momentum == 0.9f && c.dampening == 0 && !c.nesterov && c.weight_decay == 0, "SGD defaults");
    check_optimizer("sgd momentum 0.9", c);
    c.momentum = 0;
    check_optimizer("sgd plain", c);
    c.weight_decay = 0.01f;
    check_optimizer("sgd plain + wd", c);
    c.momentum = 0.8f;
    c.dampening = 0.3f;
    check_optimizer("sgd momentum + dampening + wd", c);
    c.dampening = 0;
    c.nesterov = 1;
    c.weight_decay = 5e-4f;
    check_optimizer("sgd nesterov + wd", c);
    /* Nesterov needs momentum and no dampening, as in torch */
    ts_model *m = make_model(TINY, 1);
    ts_optimizer *o = NULL;
    c.dampening = 0.1f;
    CHECK(ts_optimizer_create(g_ctx, m, &c, &o) == TS_EINVAL && o == NULL, "nesterov with dampening accepted");
    c.dampening = 0;
    c.momentum = 0;
    CHECK(ts_optimizer_create(g_ctx, m, &c, &o) == TS_EINVAL && o == NULL, "nesterov without momentum accepted");
    ts_optim_config_default(&c, TS_OPT_SGD);
    c.weight_decay = -1;
    CHECK(ts_optimizer_create(g_ctx, m, &c, &o) == TS_EINVAL && o == NULL, "negative weight decay accepted");
    ts_optim_config_default(&c, TS_OPT_SGD);
    CHECK(ts_optimizer_create(g_ctx, m, &c, &o) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (o) {
        CHECK(ts_optimizer_step(g_ctx, o, -0.1f) == TS_EINVAL, "negative lr accepted");
        CHECK(ts_optimizer_step(g_ctx, o, NAN) == TS_EINVAL, "NaN lr accepted");
        CHECK(ts_optimizer_steps(o) == 0, "failed steps counted");
        ts_optimizer_free(o);
    }
    ts_model_free(m);
}

static void test_adam(void) {
    ts_optim_config c;
    ts_optim_config_default(&c, TS_OPT_ADAM);
    CHECK(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.weight_decay == 0, "Adam defaults");
    check_optimizer("adam", c);
    c.weight_decay = 0.1f;
    check_optimizer("adam + L2", c);
    c.beta1 = 0.5f;
    c.beta2 = 0.9f;
    c.eps = 1e-3f;
    check_optimizer("adam betas 0.5/0.9 eps 1e-3", c);
    ts_optim_config w;
    ts_optim_config_default(&w, TS_OPT_ADAMW);
    CHECK(w.weight_decay == 0.01f && w.beta1 == 0.9f && w.beta2 == 0.999f, "AdamW defaults");
    check_optimizer("adamw", w);
    w.weight_decay = 0.5f;
    check_optimizer("adamw wd 0.5", w);
    w.beta1 = 0;
    check_optimizer("adamw beta1 0", w);
    ts_model *m = make_model(TINY, 1);
    ts_optimizer *o = NULL;
    w.beta2 = 1.0f;
    CHECK(ts_optimizer_create(g_ctx, m, &w, &o) == TS_EINVAL && o == NULL, "beta2 = 1 accepted");
    ts_optim_config_default(&w, TS_OPT_ADAMW);
    w.eps = 0;
    CHECK(ts_optimizer_create(g_ctx, m, &w, &o) == TS_EINVAL && o == NULL, "eps = 0 accepted");
    ts_model_free(m);
}

/* ------------------------------------------------------------ schedules */

static double cos_anneal(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (cos(3.14159265358979323846 * pct) + 1.0);
}

#define CHECK_LR(s, step, want)                                                                               \
    do {                                                                                                      \
        double got_ = ts_schedule_lr(s, step), want_ = (want);                                                \
        CHECK(fabs(got_ - want_) <= 1e-6 * fabs(want_) + 1e-12, "kind %d step %lld: lr %.9g, want %.9g",     \
              (int)(s)->kind, (long long)(step), got_, want_);                                                \
    } while (0)

static void test_schedules(void) {
    ts_schedule s = {TS_SCHED_CONSTANT, 0.1f, 0, 0.1f, 1000, 10};
    CHECK_LR(&s, 0, 0.1f);
    CHECK_LR(&s, 999, 0.1f);

    /* step, milestones at 50% and 75% of 10 epochs of 10 steps */
    s.kind = TS_SCHED_STEP;
    s.total_steps = 100;
    for (int64_t t = 0; t < 100; t++) {
        const int64_t e = t / 10;
        const double want = 0.1f * (e >= 5 ? 0.1 : 1.0) * (e >= 7 ? 0.1 : 1.0);
        CHECK_LR(&s, t, want);
    }
    /* step_size mode: every 3 epochs, gamma 0.5 */
    s.step_size = 3;
    s.gamma = 0.5f;
    for (int64_t t = 0; t < 100; t += 7) CHECK_LR(&s, t, 0.1f * pow(0.5, (double)(t / 10 / 3)));
    CHECK_LR(&s, 29, 0.1f);
    CHECK_LR(&s, 30, 0.1f * 0.5);
    CHECK_LR(&s, 60, 0.1f * 0.25);

    /* cosine over 1000 steps: lr, lr/2 at the midpoint, ~0 at the end */
    s.kind = TS_SCHED_COSINE;
    s.total_steps = 1000;
    s.steps_per_epoch = 100;
    CHECK_LR(&s, 0, 0.1f);
    CHECK_LR(&s, 500, 0.1f / 2);
    CHECK_LR(&s, 250, cos_anneal(0.1f, 0, 0.25));
    CHECK_LR(&s, 999, cos_anneal(0.1f, 0, 0.999));
    CHECK(ts_schedule_lr(&s, 999) < 1e-6f, "cosine end %g", ts_schedule_lr(&s, 999));
    for (int64_t t = 1; t < 1000; t++)
        if (!(ts_schedule_lr(&s, t) <= ts_schedule_lr(&s, t - 1))) {
            CHECK(0, "cosine not decreasing at %lld", (long long)t);
            break;
        }

    /* one-cycle (torch OneCycleLR defaults) over 1000 steps */
    s.kind = TS_SCHED_ONECYCLE;
    s.lr = 0.4f;
    const double max_lr = 0.4f, init = max_lr / 25, min_lr = init / 1e4;
    const double up = 0.3 * 1000 - 1, down = 999;
    CHECK_LR(&s, 0, max_lr / 25);
    CHECK_LR(&s, 299, max_lr);
    CHECK_LR(&s, 999, max_lr / 25e4);
    for (int64_t t = 0; t < 1000; t += 37) {
        double want = t <= up ? cos_anneal(init, max_lr, t / up) : cos_anneal(max_lr, min_lr, (t - up) / (down - up));
        CHECK_LR(&s, t, want);
    }
    int64_t peak = 0;
    for (int64_t t = 1; t < 1000; t++)
        if (ts_schedule_lr(&s, t) > ts_schedule_lr(&s, peak)) peak = t;
    CHECK(peak == 299, "one-cycle peak at step %lld", (long long)peak);
}

/* ------------------------------------------------------- end to end */

static const char *QUAD_ARCH = "input     shape=1x8x8 classes=4\n"
                               "conv2d    name=conv1 out=4 kernel=3 padding=1 bias=0\n"
                               "batchnorm name=bn1\n"
                               "relu      name=relu1\n"
                               "maxpool   name=pool1 kernel=2\n"
                               "flatten   name=flat\n"
                               "dropout   name=drop p=0.2\n"
                               "dense     name=fc out=classes\n";

typedef struct epoch_log {
    int n;
    ts_epoch_report r[16];
    int steps;
    int64_t last_step;
    int bad_progress;
    const ts_schedule *sched; /* when set, each step's lr is checked against it */
    int64_t stop_step;        /* on_step returns 1 when step reaches it (0: never) */
    int64_t stop_epoch;       /* on_epoch returns 1 after this epoch (-1: never) */
} epoch_log;

static int log_step(const ts_train_progress *p, void *user) {
    epoch_log *l = user;
    l->steps++;
    if (l->last_step && p->step != l->last_step + 1) l->bad_progress++;
    if (p->batch < 1 || p->batch > p->batches || p->epoch >= p->epochs || !isfinite(p->loss) || p->acc < 0 ||
        p->acc > 1)
        l->bad_progress++;
    if (l->sched && ts_schedule_lr(l->sched, p->step - 1) != p->lr) l->bad_progress++;
    l->last_step = p->step;
    return l->stop_step > 0 && p->step == l->stop_step;
}

static int log_epoch(const ts_epoch_report *r, void *user) {
    epoch_log *l = user;
    if (r->epoch >= 0 && r->epoch < 16) l->r[r->epoch] = *r;
    l->n++;
    return l->stop_epoch >= 0 && r->epoch == l->stop_epoch;
}

static void test_train_quadrants(void) {
    ts_dataset *train = test_quadrant_dataset(256, 1), *test = test_quadrant_dataset(200, 2);
    ts_model *m = make_model(QUAD_ARCH, 5);
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 5;
    cfg.batch = 32;
    cfg.lr = 0.05f;
    cfg.seed = 3;
    ts_trainer *tr = NULL;
    if (m) CHECK(ts_trainer_create(g_ctx, m, train, test, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!tr) goto done;
    /* the trainer measured the preprocessing from the training set */
    ts_preprocess pp;
    CHECK(ts_model_get_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    {
        float mean, sd;
        ts_dataset_channel_stats(train, &mean, &sd);
        CHECK(pp.channels == 1 && pp.mean[0] == mean && pp.std[0] == sd, "preprocess %g/%g vs %g/%g", pp.mean[0],
              pp.std[0], mean, sd);
    }
    epoch_log log;
    memset(&log, 0, sizeof log);
    log.stop_epoch = -1;
    ts_train_hooks hooks = {log_step, log_epoch, &log};
    CHECK(ts_trainer_run(g_ctx, tr, &hooks) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(log.n == 5 && log.steps == 5 * 8, "epochs %d steps %d", log.n, log.steps);
    CHECK(log.bad_progress == 0, "%d bad progress reports", log.bad_progress);
    CHECK(ts_trainer_epoch(tr) == 5 && ts_trainer_step(tr) == 40, "position %lld/%lld",
          (long long)ts_trainer_epoch(tr), (long long)ts_trainer_step(tr));
    CHECK(log.r[4].train_loss < 0.5 * log.r[0].train_loss, "loss %g -> %g", log.r[0].train_loss, log.r[4].train_loss);
    for (int e = 1; e < 5; e++)
        CHECK(log.r[e].train_loss < log.r[0].train_loss, "epoch %d loss %g not below epoch 0's %g", e,
              log.r[e].train_loss, log.r[0].train_loss);
    CHECK(log.r[4].train_acc > 0.9, "train accuracy %g", log.r[4].train_acc);
    /* validation: reported each epoch and equal to ts_evaluate at the end */
    for (int e = 0; e < 5; e++)
        CHECK(log.r[e].epoch == e && log.r[e].val_loss > 0 && log.r[e].val_acc >= 0 && log.r[e].val_acc <= 1 &&
                  log.r[e].seconds >= 0,
              "epoch %d report", e);
    ts_eval_report ev;
    CHECK(ts_evaluate(g_ctx, m, test, cfg.batch, &ev) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (ev.confusion) {
        CHECK(ev.top1 > 0.9, "test accuracy %g", ev.top1);
        CHECK(ev.top5 == 1.0, "top5 with 4 classes %g", ev.top5);
        CHECK(ev.count == 200 && ev.classes == 4, "count %lld classes %d", (long long)ev.count, ev.classes);
        CHECK(ev.top1 == log.r[4].val_acc, "val_acc %g vs evaluate %g", log.r[4].val_acc, ev.top1);
        CHECK(log.r[4].val_loss == ev.loss, "val_loss %.17g vs evaluate %.17g", log.r[4].val_loss, ev.loss);
        int64_t total = 0;
        for (int i = 0; i < 16; i++) total += ev.confusion[i];
        CHECK(total == 200, "confusion sums to %lld", (long long)total);
        ts_eval_report_free(&ev);
    }
done:
    ts_trainer_free(tr);
    ts_model_free(m);
    test_free_dataset(train);
    test_free_dataset(test);
}

/* Trains QUAD_ARCH from seed 5 with cfg; returns the model (caller frees). */
static ts_model *train_once(const ts_train_config *cfg, const ts_dataset *train, const ts_dataset *val,
                            epoch_log *log) {
    ts_model *m = make_model(QUAD_ARCH, 5);
    ts_trainer *tr = NULL;
    if (m) CHECK(ts_trainer_create(g_ctx, m, train, val, cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!tr) {
        ts_model_free(m);
        return NULL;
    }
    ts_train_hooks hooks = {log_step, log_epoch, log};
    CHECK(ts_trainer_run(g_ctx, tr, &hooks) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_trainer_free(tr);
    return m;
}

static void test_determinism(void) {
    ts_dataset *train = test_quadrant_dataset(100, 4);
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 2;
    cfg.batch = 16;
    cfg.lr = 0.05f;
    cfg.seed = 9;
    cfg.crop_pad = 1;
    cfg.flip = 1;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAMW);
    ts_ctx_set_threads(g_ctx, 2);
    epoch_log l1, l2, l3;
    memset(&l1, 0, sizeof l1);
    memset(&l2, 0, sizeof l2);
    memset(&l3, 0, sizeof l3);
    l1.stop_epoch = l2.stop_epoch = l3.stop_epoch = -1;
    ts_model *a = train_once(&cfg, train, NULL, &l1), *b = train_once(&cfg, train, NULL, &l2);
    if (a && b) {
        same_tensors(a, b, "same seed and threads");
        CHECK(l1.r[1].train_loss == l2.r[1].train_loss, "losses differ");
        CHECK(l1.r[0].val_loss == -1 && l1.r[0].val_acc == -1, "no validation set: %g", l1.r[0].val_loss);
    }
    /* a different seed trains differently */
    cfg.seed = 10;
    ts_model *c = train_once(&cfg, train, NULL, &l3);
    if (a && c) {
        ts_tensor_info ta = tensor_at(a, 0), tc = tensor_at(c, 0);
        CHECK(memcmp(ta.data, tc.data, (size_t)ta.numel * sizeof(float)) != 0, "seed has no effect");
    }
    ts_ctx_set_threads(g_ctx, 1);
    ts_model_free(a);
    ts_model_free(b);
    ts_model_free(c);
    test_free_dataset(train);
}

/* Interrupts a run (at step stop_step, or after epoch stop_epoch), saves a
 * checkpoint, resumes from it in a new model and trainer, and compares with the
 * uninterrupted run `ref` and its epoch reports. */
static void resume_case(const char *what, const ts_train_config *cfg, const ts_dataset *train, const ts_dataset *val,
                        int64_t stop_step, int64_t stop_epoch, const ts_model *ref, const epoch_log *ref_log) {
    char ck[256];
    snprintf(ck, sizeof ck, "%s/resume.ckpt", g_tmp);
    ts_model *m = make_model(QUAD_ARCH, 5);
    ts_trainer *tr = NULL;
    if (m) CHECK(ts_trainer_create(g_ctx, m, train, val, cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!tr) {
        ts_model_free(m);
        return;
    }
    epoch_log l1;
    memset(&l1, 0, sizeof l1);
    l1.stop_step = stop_step;
    l1.stop_epoch = stop_epoch;
    ts_train_hooks hooks = {log_step, log_epoch, &l1};
    ts_status st = ts_trainer_run(g_ctx, tr, &hooks);
    CHECK(st == TS_ECANCELED, "%s: interrupted run returned %s", what, ts_status_name(st));
    const int64_t epoch = ts_trainer_epoch(tr), step = ts_trainer_step(tr);
    if (stop_step) CHECK(step == stop_step, "%s: stopped at step %lld", what, (long long)step);
    else CHECK(epoch == stop_epoch + 1, "%s: stopped after epoch %lld", what, (long long)epoch);
    CHECK(ts_checkpoint_save(g_ctx, tr, ck) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    ts_train_summary s1;
    ts_trainer_summary(tr, &s1);
    ts_trainer_free(tr);
    ts_model_free(m);

    ts_model *m2 = NULL;
    ts_train_config cfg2;
    memset(&cfg2, 0, sizeof cfg2);
    CHECK(ts_checkpoint_load_model(g_ctx, ck, &m2, &cfg2) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    if (!m2) return;
    CHECK(cfg2.epochs == cfg->epochs && cfg2.batch == cfg->batch && cfg2.lr == cfg->lr && cfg2.seed == cfg->seed &&
              cfg2.optim.kind == cfg->optim.kind && cfg2.optim.momentum == cfg->optim.momentum &&
              cfg2.optim.weight_decay == cfg->optim.weight_decay && cfg2.crop_pad == cfg->crop_pad &&
              cfg2.flip == cfg->flip && cfg2.schedule == cfg->schedule,
          "%s: configuration not restored", what);
    /* not recorded: the early exit's defaults */
    CHECK(cfg2.exit_weight == 0.5f && cfg2.exit_transfer == 0.8f && cfg2.exit_distill == 0.0f &&
              cfg2.exit_temperature == 4.0f,
          "%s: exit defaults %g %g %g %g", what, cfg2.exit_weight, cfg2.exit_transfer, cfg2.exit_distill,
          cfg2.exit_temperature);
    ts_trainer *tr2 = NULL;
    cfg2.keep_best = cfg->keep_best; /* run settings, given again on resume (as `tessera train --resume` does) */
    cfg2.early_stop = cfg->early_stop;
    CHECK(ts_trainer_create(g_ctx, m2, train, val, &cfg2, &tr2) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    if (tr2) {
        CHECK(ts_checkpoint_restore(g_ctx, tr2, ck) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
        ts_train_summary s2;
        ts_trainer_summary(tr2, &s2);
        CHECK(s2.best_epoch == s1.best_epoch && s2.best_val_acc == s1.best_val_acc, "%s: best epoch %lld (%g) restored "
              "as %lld (%g)", what, (long long)s1.best_epoch, s1.best_val_acc, (long long)s2.best_epoch, s2.best_val_acc);
        CHECK(ts_trainer_epoch(tr2) == epoch && ts_trainer_step(tr2) == step, "%s: restored at %lld/%lld", what,
              (long long)ts_trainer_epoch(tr2), (long long)ts_trainer_step(tr2));
        epoch_log l2;
        memset(&l2, 0, sizeof l2);
        l2.stop_epoch = -1;
        l2.last_step = step;
        ts_train_hooks h2 = {log_step, log_epoch, &l2};
        CHECK(ts_trainer_run(g_ctx, tr2, &h2) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
        CHECK(l2.bad_progress == 0, "%s: step numbering after resume", what);
        CHECK(ts_trainer_step(tr2) == ts_trainer_step(tr2) && ts_trainer_epoch(tr2) == cfg->epochs, "%s: end", what);
        same_tensors(ref, m2, what);
        /* the epoch reports after the resume point match the uninterrupted run */
        for (int64_t e = epoch; e < cfg->epochs; e++) {
            CHECK(l2.r[e].train_loss == ref_log->r[e].train_loss && l2.r[e].train_acc == ref_log->r[e].train_acc,
                  "%s: epoch %lld train loss %.17g vs %.17g", what, (long long)e, l2.r[e].train_loss,
                  ref_log->r[e].train_loss);
            CHECK(l2.r[e].val_loss == ref_log->r[e].val_loss, "%s: epoch %lld val loss %.17g vs %.17g", what,
                  (long long)e, l2.r[e].val_loss, ref_log->r[e].val_loss);
        }
        /* running the finished trainer again does nothing */
        CHECK(ts_trainer_run(g_ctx, tr2, NULL) == TS_OK && ts_trainer_step(tr2) == ts_trainer_step(tr2), "rerun");
        ts_trainer_free(tr2);
    }
    ts_model_free(m2);
    unlink(ck);
}

static void test_resume(void) {
    /* 84 samples in batches of 16: 6 batches per epoch, the last one of 4 */
    ts_dataset *train = test_quadrant_dataset(84, 6), *val = test_quadrant_dataset(30, 7);
    for (int k = 0; k < 3; k++) {
        ts_train_config cfg;
        ts_train_config_default(&cfg);
        cfg.epochs = 3;
        cfg.keep_best = k == 2; /* the best epoch's weights and patience carried by the checkpoint */
        cfg.early_stop = k == 2 ? 2 : 0;
        cfg.batch = 16;
        cfg.seed = 21 + (uint64_t)k;
        cfg.crop_pad = 2;
        cfg.flip = 1;
        cfg.label_smoothing = 0.1f;
        if (k != 1) {
            cfg.lr = k == 2 ? 0.3f : 0.05f; /* k 2: large steps, so the best epoch need not be the last */
            ts_optim_config_default(&cfg.optim, TS_OPT_SGD);
            cfg.optim.weight_decay = 5e-4f;
            cfg.optim.nesterov = 1;
            cfg.schedule = TS_SCHED_COSINE;
        } else {
            cfg.lr = 0.01f;
            ts_optim_config_default(&cfg.optim, TS_OPT_ADAMW);
            cfg.schedule = TS_SCHED_ONECYCLE;
        }
        const char *name = k == 0 ? "sgd" : k == 1 ? "adamw" : "sgd keep-best";
        ts_schedule sched = {cfg.schedule, cfg.lr, 0, cfg.gamma, 18, 6};
        epoch_log ref_log;
        memset(&ref_log, 0, sizeof ref_log);
        ref_log.stop_epoch = -1;
        ref_log.sched = &sched;
        ts_model *ref = train_once(&cfg, train, val, &ref_log);
        if (!ref) continue;
        CHECK(ref_log.steps == 18 && ref_log.bad_progress == 0, "%s: %d steps, %d bad reports (lr schedule)", name,
              ref_log.steps, ref_log.bad_progress);
        char what[64];
        /* the same trainer continues after a cancel, without a checkpoint */
        {
            ts_model *m = make_model(QUAD_ARCH, 5);
            ts_trainer *tr = NULL;
            if (m) CHECK(ts_trainer_create(g_ctx, m, train, val, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
            if (tr) {
                epoch_log l;
                memset(&l, 0, sizeof l);
                l.stop_step = 8;
                l.stop_epoch = -1;
                ts_train_hooks h = {log_step, log_epoch, &l};
                CHECK(ts_trainer_run(g_ctx, tr, &h) == TS_ECANCELED, "cancel at step 8");
                CHECK(ts_trainer_run(g_ctx, tr, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
                CHECK(ts_trainer_step(tr) == 18, "steps %lld", (long long)ts_trainer_step(tr));
                snprintf(what, sizeof what, "%s: continued after a cancel", name);
                same_tensors(ref, m, what);
                ts_trainer_free(tr);
            }
            ts_model_free(m);
        }
        snprintf(what, sizeof what, "%s: stop after epoch 1", name);
        resume_case(what, &cfg, train, val, 0, 0, ref, &ref_log);
        snprintf(what, sizeof what, "%s: stop at step 4 (mid epoch 1)", name);
        resume_case(what, &cfg, train, val, 4, -1, ref, &ref_log);
        snprintf(what, sizeof what, "%s: stop at step 11 (mid epoch 2)", name);
        resume_case(what, &cfg, train, val, 11, -1, ref, &ref_log);
        snprintf(what, sizeof what, "%s: stop at step 6 (epoch end, before validation)", name);
        resume_case(what, &cfg, train, val, 6, -1, ref, &ref_log);
        ts_model_free(ref);
    }
    test_free_dataset(train);
    test_free_dataset(val);
}

static void test_divergence(void) {
    ts_dataset *train = test_quadrant_dataset(64, 8);
    ts_model *m = make_model("input shape=1x8x8 classes=4\nconv2d name=c out=8 kernel=3\nrelu name=r\n"
                             "flatten name=f\ndense name=fc out=classes\n",
                             1);
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 3;
    cfg.batch = 16;
    cfg.lr = 1e20f;
    cfg.optim.momentum = 0;
    ts_trainer *tr = NULL;
    if (m) CHECK(ts_trainer_create(g_ctx, m, train, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr) {
        ts_ctx_clear_error(g_ctx);
        ts_status st = ts_trainer_run(g_ctx, tr, NULL);
        CHECK(st == TS_EDIVERGED, "huge lr: %s (%s)", ts_status_name(st), ts_ctx_error(g_ctx));
        const char *msg = ts_ctx_error(g_ctx);
        const char *at = strstr(msg, "step ");
        CHECK(at != NULL, "message does not name the step: %s", msg);
        if (at) {
            long step = atol(at + 5);
            CHECK(step >= 1 && step <= ts_trainer_step(tr) + 1, "message step %ld, trainer at %lld", step,
                  (long long)ts_trainer_step(tr));
        }
        ts_trainer_free(tr);
    }
    ts_model_free(m);
    test_free_dataset(train);
}

static void test_trainer_errors(void) {
    ts_dataset *train = test_quadrant_dataset(16, 9);
    ts_model *m = make_model("input shape=1x6x6 classes=4\nflatten name=f\ndense name=fc out=classes\n", 1);
    ts_model *m3 = make_model("input shape=1x8x8 classes=3\nflatten name=f\ndense name=fc out=classes\n", 1);
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    ts_trainer *tr = NULL;
    if (m) {
        ts_ctx_clear_error(g_ctx);
        CHECK(ts_trainer_create(g_ctx, m, train, NULL, &cfg, &tr) == TS_ESHAPE && tr == NULL, "image size mismatch");
        CHECK(strstr(ts_ctx_error(g_ctx), train->name) != NULL, "message: %s", ts_ctx_error(g_ctx));
        ts_eval_report ev;
        CHECK(ts_evaluate(g_ctx, m, train, 8, &ev) == TS_ESHAPE && ev.confusion == NULL, "evaluate mismatch");
    }
    if (m3) {
        CHECK(ts_trainer_create(g_ctx, m3, train, NULL, &cfg, &tr) == TS_ESHAPE && tr == NULL, "too few classes");
        ts_model_free(m3);
        m3 = make_model("input shape=1x8x8 classes=4\nflatten name=f\ndense name=fc out=classes\n", 1);
    }
    if (m3) {
        ts_train_config bad = cfg;
        bad.epochs = 0;
        CHECK(ts_trainer_create(g_ctx, m3, train, NULL, &bad, &tr) == TS_EINVAL && tr == NULL, "epochs 0");
        bad = cfg;
        bad.batch = 0;
        CHECK(ts_trainer_create(g_ctx, m3, train, NULL, &bad, &tr) == TS_EINVAL && tr == NULL, "batch 0");
        bad = cfg;
        bad.lr = 0;
        CHECK(ts_trainer_create(g_ctx, m3, train, NULL, &bad, &tr) == TS_EINVAL && tr == NULL, "lr 0");
        bad = cfg;
        bad.label_smoothing = 1.0f;
        CHECK(ts_trainer_create(g_ctx, m3, train, NULL, &bad, &tr) == TS_EINVAL && tr == NULL, "smoothing 1");
        /* a model trained with more classes than the dataset has is fine */
        ts_model *m5 = make_model("input shape=1x8x8 classes=6\nflatten name=f\ndense name=fc out=classes\n", 1);
        if (m5) {
            CHECK(ts_trainer_create(g_ctx, m5, train, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
            ts_trainer_free(tr);
            tr = NULL;
            ts_model_free(m5);
        }
    }
    ts_model_free(m);
    ts_model_free(m3);
    test_free_dataset(train);
}

/* ---------------------------------------------------------- evaluation */

static void test_evaluate_known(void) {
    /* logits = pixel/255 (identity dense, no bias, no preprocessing metadata) */
    ts_model *m = make_model("input shape=1x2x3 classes=6\nflatten name=f\ndense name=fc out=classes bias=0\n", 1);
    if (!m) return;
    ts_tensor_info w = tensor_at(m, 0);
    for (int o = 0; o < 6; o++)
        for (int i = 0; i < 6; i++) w.data[o * 6 + i] = o == i ? 1.0f : 0.0f;
    enum { N = 9 };
    static const uint8_t px[N][6] = {
        {250, 10, 20, 30, 40, 50},  /* label 0: right */
        {10, 250, 20, 30, 40, 50},  /* label 1: right */
        {10, 20, 250, 30, 40, 50},  /* label 1: predicted 2, label rank 4 (top5 hit) */
        {10, 20, 30, 40, 50, 250},  /* label 0: predicted 5, label lowest (rank 5: top5 miss) */
        {200, 200, 0, 0, 0, 0},     /* label 1: tie, argmax takes 0; rank 0 (top5 hit) */
        {0, 0, 0, 0, 255, 0},       /* label 4: right */
        {0, 0, 0, 255, 1, 2},       /* label 3: right */
        {5, 4, 3, 2, 1, 0},         /* label 5: predicted 0, label lowest (top5 miss) */
        {9, 8, 7, 6, 10, 100},      /* label 4: predicted 5, rank 1 */
    };
    static const int32_t lab[N] = {0, 1, 1, 0, 1, 4, 3, 5, 4};
    static const int pred[N] = {0, 1, 2, 5, 0, 4, 3, 0, 5};
    static const int top5_hit[N] = {1, 1, 1, 0, 1, 1, 1, 0, 1};
    ts_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.count = N;
    ds.channels = 1;
    ds.height = 2;
    ds.width = 3;
    ds.classes = 6;
    ds.images = (uint8_t *)px;
    ds.labels = (int32_t *)lab;
    snprintf(ds.name, sizeof ds.name, "known");
    int64_t want_conf[36] = {0};
    double want_loss = 0;
    int want_top1 = 0, want_top5 = 0;
    for (int i = 0; i < N; i++) {
        want_conf[lab[i] * 6 + pred[i]]++;
        want_top1 += pred[i] == lab[i];
        want_top5 += top5_hit[i];
        double mx = 0, se = 0;
        for (int j = 0; j < 6; j++) mx = fmax(mx, px[i][j] / 255.0);
        for (int j = 0; j < 6; j++) se += exp(px[i][j] / 255.0 - mx);
        want_loss += -(px[i][lab[i]] / 255.0 - mx - log(se));
    }
    want_loss /= N;
    const int batches[3] = {4, 0, 100}; /* partial batches, the default, one batch */
    for (int b = 0; b < 3; b++) {
        ts_eval_report ev;
        CHECK(ts_evaluate(g_ctx, m, &ds, batches[b], &ev) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!ev.confusion) continue;
        CHECK(ev.classes == 6 && ev.count == N, "classes %d count %lld", ev.classes, (long long)ev.count);
        CHECK_NEAR(ev.top1, (double)want_top1 / N, 1e-12, 0);
        CHECK_NEAR(ev.top5, (double)want_top5 / N, 1e-12, 0);
        CHECK_NEAR(ev.loss, want_loss, 1e-5, 0);
        CHECK(memcmp(ev.confusion, want_conf, sizeof want_conf) == 0, "confusion matrix (batch %d)", batches[b]);
        /* precision of class 0: predicted 0 three times (samples 0, 4, 7), right once */
        CHECK_NEAR(ts_eval_precision(&ev, 0), 1.0 / 3, 1e-12, 0);
        CHECK_NEAR(ts_eval_recall(&ev, 0), 1.0 / 2, 1e-12, 0);
        CHECK_NEAR(ts_eval_precision(&ev, 5), 0.0, 0, 0);
        CHECK_NEAR(ts_eval_recall(&ev, 1), 1.0 / 3, 1e-12, 0);
        CHECK_NEAR(ts_eval_precision(&ev, 2), 0.0, 0, 0);
        CHECK_NEAR(ts_eval_recall(&ev, 2), 0.0, 0, 0); /* no samples of class 2: undefined -> 0 */
        CHECK_NEAR(ts_eval_recall(&ev, 3), 1.0, 0, 0);
        ts_eval_report_free(&ev);
        CHECK(ev.confusion == NULL, "report not cleared");
    }
    /* with preprocessing metadata the evaluation normalizes: mean 0.5, std 0.5 -> 2x - 1 */
    ts_preprocess pp = {1, {0.5f}, {0.5f}, 0, 0};
    CHECK(ts_model_set_preprocess(g_ctx, m, &pp) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_eval_report ev;
    CHECK(ts_evaluate(g_ctx, m, &ds, 4, &ev) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (ev.confusion) {
        CHECK(memcmp(ev.confusion, want_conf, sizeof want_conf) == 0, "normalized: confusion matrix changed");
        double want2 = 0; /* softmax ignores the shift: logits 2*px/255 */
        for (int i = 0; i < N; i++) {
            double mx = 0, se = 0;
            for (int j = 0; j < 6; j++) mx = fmax(mx, 2 * px[i][j] / 255.0);
            for (int j = 0; j < 6; j++) se += exp(2 * px[i][j] / 255.0 - mx);
            want2 += -(2 * px[i][lab[i]] / 255.0 - mx - log(se)) / N;
        }
        CHECK_NEAR(ev.loss, want2, 1e-5, 0);
        ts_eval_report_free(&ev);
    }
    ts_eval_report_free(NULL);
    ts_model_free(m);
}

/* A label outside 0..classes-1 in a caller-built dataset must be refused, not used
 * as an index into the confusion matrix. Run in a child process so that a memory
 * error fails this case instead of ending the binary. */
static void test_evaluate_bad_label(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        ts_ctx *ctx = NULL;
        if (ts_ctx_create(&ctx) != TS_OK) _exit(3);
        ts_model *m = NULL;
        if (ts_model_from_arch(ctx, "input shape=1x2x2 classes=4\nflatten\ndense out=classes\n", "bad.arch", NULL, 0,
                               1, &m) != TS_OK)
            _exit(3);
        uint8_t px[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        int32_t lab[3] = {1, 9, -2}; /* 9 and -2 are not classes of a 4-class set */
        ts_dataset ds;
        memset(&ds, 0, sizeof ds);
        ds.count = 3;
        ds.channels = 1;
        ds.height = ds.width = 2;
        ds.classes = 4;
        ds.images = px;
        ds.labels = lab;
        snprintf(ds.name, sizeof ds.name, "badlabels");
        ts_eval_report ev;
        ts_status st = ts_evaluate(ctx, m, &ds, 8, &ev);
        int ok = st != TS_OK && ev.confusion == NULL && strstr(ts_ctx_error(ctx), "label");
        if (st == TS_OK) ts_eval_report_free(&ev);
        ts_model_free(m);
        ts_ctx_free(ctx);
        _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0, "fork failed");
    if (pid <= 0) return;
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "ts_evaluate with labels 9 and -2 in a 4-class dataset: %s (exit %d, signal %d)",
          WIFEXITED(status) && WEXITSTATUS(status) == 1 ? "accepted, or no message naming the label"
                                                         : "crashed or reported a memory error",
          WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void test_softmax_cross_entropy(void) {
    const float logits[6] = {1.0f, 2.0f, 0.5f, -1.0f, 0.0f, 3.0f};
    const int32_t y[2] = {1, 0};
    float d[6];
    for (int sm = 0; sm < 2; sm++) {
        const double eps = sm ? 0.1 : 0.0;
        float loss = ts_softmax_cross_entropy(2, 3, logits, y, (float)eps, d);
        double want = 0;
        for (int i = 0; i < 2; i++) {
            double mx = -1e30, se = 0;
            for (int j = 0; j < 3; j++) mx = fmax(mx, logits[i * 3 + j]);
            for (int j = 0; j < 3; j++) se += exp(logits[i * 3 + j] - mx);
            double lse = mx + log(se);
            for (int j = 0; j < 3; j++) {
                double target = (j == y[i] ? 1 - eps : 0) + eps / 3;
                want += -target * (logits[i * 3 + j] - lse) / 2;
                CHECK_NEAR(d[i * 3 + j], (exp(logits[i * 3 + j] - lse) - target) / 2, 1e-6, 1e-7);
            }
        }
        CHECK_NEAR(loss, want, 1e-6, 0);
    }
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_sgd);
    RUN(test_adam);
    RUN(test_schedules);
    RUN(test_softmax_cross_entropy);
    RUN(test_train_quadrants);
    RUN(test_determinism);
    RUN(test_resume);
    RUN(test_divergence);
    RUN(test_trainer_errors);
    RUN(test_evaluate_known);
    RUN(test_evaluate_bad_label);
    rmdir(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_train");
}
