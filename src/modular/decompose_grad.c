/* Learned kernel masks (GradSplitter-style, Qi et al. SANER'23 / TOSEM; the brief is
 * ../shared/reference/modularization-successors.md, section 3).
 *
 * Every class c gets one real-valued score per convolution kernel: per channel of
 * every ReLU with a (C,H,W) output, where tessera's module masks live. The forward
 * pass binarizes it (kept when > 0) and zeroes the channel's map; the backward pass
 * is straight-through: the score receives the gradient of the loss with respect to
 * the binary mask, clipped to [-1, 1] (hardtanh). The frozen origin runs once per
 * class in one "splitter" network, its batch norms folded into the convolutions
 * before them (so they behave as in inference: the paper keeps the base model in eval
 * mode) and its dropout removed. Branch c ends in module c's score, the channelled
 * margin logit_c - mean of the other logits (tessera's concern modularization),
 * times a learned scale plus a learned shift; the loss is
 *   CE(softmax over the classes' scores, y) + alpha * sum over modules of mean(module's binary masks),
 * minimized by Adam on the scores (lr) and the calibrations (lr_head).
 *
 * Differences from the paper, on purpose: the module head is that affine calibration
 * of the channelled margin (tessera's module form, which every other command reads)
 * rather than a new Linear-ReLU-Linear-sigmoid; masks and calibrations are trained
 * together from the first step (the paper alternates head-only and mask epochs); the
 * epoch is chosen on a validation part carved from the training set, never the test
 * set: the fewest kept kernels among epochs within max_loss points of the origin's
 * validation top-1, else the most accurate. */
#include "modular.h"

#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One gated ReLU of the origin: module masks act on its C channels of `plane` units. */
typedef struct gate {
    int relu;       /* origin layer */
    int channels;
    int64_t plane;  /* H x W */
    int64_t off;    /* offset of its channels in a module's score vector */
} gate;

typedef struct splitter {
    ts_ctx *ctx;
    const ts_model *origin;
    int K, ngates;
    int64_t C;          /* channels over all gates: a module's score count */
    gate *gates;
    ts_model *net;      /* the K branches; output k = branch k's channelled margin */
    int *mask_layer;    /* [K * ngates]: the branch's mask layer in net */
    int *net_gate;      /* [net->nlayers]: k * ngates + g for a mask layer, else -1 */
    float *score, *grad;/* [K * C]: kernel scores and their gradient of this step */
    float *m1, *m2;     /* Adam moments of the scores */
} splitter;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- building the splitter network */

/* The batch norm that folds into conv/dense layer li: its only consumer, a batch norm.
 * Returns its index or -1. */
static int folded_bn(const ts_model *m, int li) {
    const int bn = model_sole_consumer(m, li);
    return bn >= 0 && m->layers[bn].kind == LAYER_BATCHNORM ? bn : -1;
}

/* net layer `to` is origin conv/dense `li` with batch norm `bn` folded in:
 * w'[o] = w[o] * g[o] / sqrt(v[o] + eps), b'[o] = (b[o] - mean[o]) * g[o] / sqrt(v[o] + eps) + beta[o]. */
static void fold_into(const ts_model *o, int li, int bn, ts_model *net, int to) {
    ts_model *om = (ts_model *)o;
    const layer *l = &o->layers[li], *b = &o->layers[bn];
    const int O = l->features;
    const int64_t per = o->tensors[l->weight].numel / O;
    const float *w = tensor_data(om, l->weight), *bias = l->bias_t >= 0 ? tensor_data(om, l->bias_t) : NULL;
    const float *g = tensor_data(om, b->weight), *beta = tensor_data(om, b->bias_t);
    const float *mean = tensor_data(om, b->running_mean), *var = tensor_data(om, b->running_var);
    float *nw = tensor_data(net, net->layers[to].weight), *nb = tensor_data(net, net->layers[to].bias_t);
    for (int c = 0; c < O; c++) {
        const float s = g[c] / sqrtf(var[c] + b->eps);
        for (int64_t i = 0; i < per; i++) nw[(int64_t)c * per + i] = w[(int64_t)c * per + i] * s;
        nb[c] = ((bias ? bias[c] : 0.0f) - mean[c]) * s + beta[c];
    }
}

static ts_status splitter_build(splitter *sp, uint64_t seed) {
    ts_ctx *ctx = sp->ctx;
    const ts_model *o = sp->origin;
    const int K = sp->K, L = o->nlayers, h = module_logits_layer(o);
    int *map = malloc(sizeof *map * (size_t)L), *src = NULL, *bnof = NULL;
    int *score_layer = malloc(sizeof *score_layer * (size_t)K);
    nn_builder *b = NULL;
    ts_status st = TS_OK;
    if (!map || !score_layer) goto nomem;
    /* the gates: ReLUs with a (C,H,W) output */
    if (!(sp->gates = calloc((size_t)L, sizeof *sp->gates))) goto nomem;
    for (int li = 1; li <= h; li++) {
        const layer *l = &o->layers[li];
        if (l->kind != LAYER_RELU || l->out.ndim != 3) continue;
        gate *g = &sp->gates[sp->ngates++];
        g->relu = li;
        g->channels = (int)l->out.dims[0];
        g->plane = l->out.dims[1] * l->out.dims[2];
        g->off = sp->C;
        sp->C += g->channels;
    }
    if (sp->ngates == 0) {
        st = ts_fail(ctx, TS_EUNSUPPORTED,
                     "decompose --method grad: the model has no ReLU over convolution maps (CxHxW) to mask; use "
                     "--method activation");
        goto done;
    }
    if ((st = nn_builder_create(ctx, "grad splitter", 0, &o->input, K, o->layers[0].name, &b))) goto done;
    /* net layer -> origin layer and folded batch norm, for the tensors */
    const int cap = K * (2 * L + 2) + 2;
    src = malloc(sizeof *src * (size_t)cap);
    bnof = malloc(sizeof *bnof * (size_t)cap);
    sp->mask_layer = malloc(sizeof *sp->mask_layer * (size_t)K * (size_t)sp->ngates);
    if (!src || !bnof || !sp->mask_layer) goto nomem;
    for (int i = 0; i < cap; i++) src[i] = bnof[i] = -1;
    for (int k = 0; k < K; k++) {
        map[0] = 0;
        int gi = 0;
        for (int li = 1; li <= h; li++) {
            const layer *l = &o->layers[li];
            if (l->kind == LAYER_DROPOUT) { /* inference: the identity */
                map[li] = map[l->inputs[0]];
                continue;
            }
            if (l->kind == LAYER_BATCHNORM) {
                const int p = l->inputs[0];
                const layer_kind pk = o->layers[p].kind;
                if ((pk == LAYER_CONV2D || pk == LAYER_DENSE) && folded_bn(o, p) == li) {
                    map[li] = map[p];
                    continue;
                }
                st = ts_fail(ctx, TS_EUNSUPPORTED,
                             "decompose --method grad: batch norm '%s' does not follow a convolution or dense layer "
                             "alone, so it cannot be frozen by folding; use --method activation",
                             l->name);
                goto done;
            }
            int ins[LAYER_MAX_INPUTS];
            for (int i = 0; i < l->ninputs; i++) ins[i] = map[l->inputs[i]];
            layer_attrs a = l->attrs;
            int bn = -1;
            if ((l->kind == LAYER_CONV2D || l->kind == LAYER_DENSE) && (bn = folded_bn(o, li)) >= 0) a.bias = 1;
            char name[LAYER_NAME_MAX];
            snprintf(name, sizeof name, "m%d.%.*s", k, LAYER_NAME_MAX - 16, l->name);
            nn_added ad;
            if ((st = nn_add_at(b, l->kind, name, ins, l->ninputs, &a, &ad))) goto done;
            src[ad.layer] = li;
            bnof[ad.layer] = bn;
            map[li] = ad.layer;
            if (gi < sp->ngates && sp->gates[gi].relu == li) {
                snprintf(name, sizeof name, "m%d.%.*s.gate", k, LAYER_NAME_MAX - 20, l->name);
                if ((st = nn_add_at(b, LAYER_MASK, name, &ad.layer, 1, NULL, &ad))) goto done;
                sp->mask_layer[k * sp->ngates + gi++] = ad.layer;
                map[li] = ad.layer;
            }
        }
        layer_attrs d;
        nn_attrs_default(LAYER_DENSE, &d);
        d.features = 1;
        char name[LAYER_NAME_MAX];
        snprintf(name, sizeof name, "m%d.margin", k);
        nn_added ad;
        if ((st = nn_add_at(b, LAYER_DENSE, name, &map[h], 1, &d, &ad))) goto done;
        score_layer[k] = ad.layer;
    }
    /* the K margins in one vector: concats of at most LAYER_MAX_INPUTS inputs, chained */
    layer_attrs c;
    nn_attrs_default(LAYER_CONCAT, &c);
    int ins[LAYER_MAX_INPUTS], have = 0, part = 0;
    for (int k = 0; k < K;) {
        while (have < LAYER_MAX_INPUTS && k < K) ins[have++] = score_layer[k++];
        char name[LAYER_NAME_MAX];
        snprintf(name, sizeof name, k == K ? "margins" : "margins.%d", part++);
        nn_added ad;
        if (have == 1) break; /* one class left alone: K >= 2, so never the first */
        if ((st = nn_add_at(b, LAYER_CONCAT, name, ins, have, &c, &ad))) goto done;
        ins[0] = ad.layer;
        have = 1;
    }
    if ((st = nn_builder_finish(b, seed, NULL, &sp->net))) {
        b = NULL;
        goto done;
    }
    b = NULL;
    ts_model *net = sp->net;
    for (int li = 1; li < net->nlayers; li++) {
        if (src[li] < 0) continue;
        if (bnof[li] >= 0) fold_into(o, src[li], bnof[li], net, li);
        else if ((st = model_copy_layer_tensors(ctx, o, src[li], net, li, "decompose --method grad"))) goto done;
    }
    /* the margins: logit_k - mean of the others */
    const int ol = o->classes;
    for (int k = 0; k < K; k++) {
        const layer *l = &net->layers[score_layer[k]];
        float *w = tensor_data(net, l->weight);
        for (int j = 0; j < ol; j++) w[j] = j == k ? 1.0f : (ol > 1 ? -1.0f / (float)(ol - 1) : 0.0f);
        tensor_data(net, l->bias_t)[0] = 0.0f;
    }
    if (!(sp->net_gate = malloc(sizeof *sp->net_gate * (size_t)net->nlayers))) goto nomem;
    for (int li = 0; li < net->nlayers; li++) sp->net_gate[li] = -1;
    for (int i = 0; i < K * sp->ngates; i++) sp->net_gate[sp->mask_layer[i]] = i;
    exec_weights_changed(net);
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "decompose --method grad: out of memory");
done:
    nn_builder_free(b);
    free(map);
    free(src);
    free(bnof);
    free(score_layer);
    return st;
}

/* keep buffers of every mask layer from the binarized scores */
static void splitter_set_masks(splitter *sp) {
    for (int k = 0; k < sp->K; k++)
        for (int g = 0; g < sp->ngates; g++) {
            const gate *gt = &sp->gates[g];
            float *keep = tensor_data(sp->net, sp->net->layers[sp->mask_layer[k * sp->ngates + g]].mask);
            const float *s = sp->score + (size_t)k * (size_t)sp->C + gt->off;
            for (int ch = 0; ch < gt->channels; ch++) {
                const float v = s[ch] > 0.0f ? 1.0f : 0.0f;
                for (int64_t u = 0; u < gt->plane; u++) keep[(int64_t)ch * gt->plane + u] = v;
            }
        }
}

/* Backward observer: d loss / d mask for each channel of each mask layer is
 * sum over samples and positions of (d loss / d out) * in. */
static int observe_masks(void *user, ts_model *net, int li) {
    splitter *sp = user;
    const int i = sp->net_gate[li];
    if (i < 0) return 0;
    const int k = i / sp->ngates, g = i % sp->ngates;
    const gate *gt = &sp->gates[g];
    const float *dy = net->exec.ls[li].grad, *x = layer_input(net, li, 0);
    const int n = net->exec.n;
    const int64_t per = (int64_t)gt->channels * gt->plane;
    float *out = sp->grad + (size_t)k * (size_t)sp->C + gt->off;
#pragma omp parallel for num_threads(ts_ctx_threads(sp->ctx)) schedule(static)
    for (int ch = 0; ch < gt->channels; ch++) {
        double acc = 0;
        for (int s = 0; s < n; s++) {
            const float *a = dy + (int64_t)s * per + (int64_t)ch * gt->plane, *b = x + (int64_t)s * per + (int64_t)ch * gt->plane;
            for (int64_t u = 0; u < gt->plane; u++) acc += (double)a[u] * (double)b[u];
        }
        out[ch] = (float)acc;
    }
    return 0;
}

/* Adam (PyTorch's) on n values at step t (1-based). */
static void adam(float *p, const float *g, float *m1, float *m2, int64_t n, float lr, int64_t t) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const double c1 = 1.0 - pow(b1, (double)t), c2 = 1.0 - pow(b2, (double)t);
    for (int64_t i = 0; i < n; i++) {
        m1[i] = (float)(b1 * m1[i] + (1 - b1) * g[i]);
        m2[i] = (float)(b2 * m2[i] + (1 - b2) * (double)g[i] * g[i]);
        p[i] -= (float)(lr * (m1[i] / c1) / (sqrt(m2[i] / c2) + eps));
    }
}

/* Fraction of scores > 0 over all modules. */
static double kept_fraction(const float *score, int64_t n) {
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) kept += score[i] > 0.0f;
    return n ? (double)kept / (double)n : 1.0;
}

/* Scores of the K modules on ds (preprocessed with pp) into out (count, K), calibrated
 * by cal (scale[K], shift[K]); returns top-1 against the labels in *acc. */
static ts_status splitter_eval(splitter *sp, const ts_dataset *ds, const ts_preprocess *pp, const float *cal,
                               int batch, float *out, double *acc) {
    const int K = sp->K;
    const size_t in_sz = (size_t)shape_numel(&sp->origin->input);
    float *x = ts_alloc(sp->ctx, (size_t)batch * in_sz * sizeof(float), "mask learning batch");
    if (!x) return TS_ENOMEM;
    ts_status st = TS_OK;
    int64_t right = 0;
    splitter_set_masks(sp);
    for (int64_t s = 0; s < ds->count && !st; s += batch) {
        const int n = (int)(ds->count - s < batch ? ds->count - s : batch);
        ts_preprocess_images(pp, ds->images + (size_t)s * in_sz, n, ds->channels, ds->height, ds->width, x);
        float *o = out + (size_t)s * (size_t)K;
        if ((st = ts_model_predict(sp->ctx, sp->net, x, n, o))) break;
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < K; k++) o[(size_t)i * K + k] = cal[k] * o[(size_t)i * K + k] + cal[K + k];
            right += ts_argmax(o + (size_t)i * K, K) == ds->labels[s + i];
        }
    }
    *acc = ds->count ? (double)right / (double)ds->count : 0;
    ts_free(x);
    return st;
}

static ts_status check_grad_config(ts_ctx *ctx, const ts_decompose_config *c) {
    if (!(c->alpha >= 0.0f && c->alpha <= 100.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: alpha %g out of [0, 100]", (double)c->alpha);
    if (c->epochs < 1 || c->epochs > 100000)
        return ts_fail(ctx, TS_EINVAL, "decompose: epochs %d out of 1..100000", c->epochs);
    if (c->epoch_samples < 0) return ts_fail(ctx, TS_EINVAL, "decompose: epoch samples must be >= 0");
    if (!(c->lr > 0.0f && c->lr <= 10.0f) || !(c->lr_head >= 0.0f && c->lr_head <= 10.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: learning rates %g, %g out of (0, 10]", (double)c->lr,
                       (double)c->lr_head);
    if (c->train_batch < 1 || c->train_batch > 4096)
        return ts_fail(ctx, TS_EINVAL, "decompose: training batch %d out of 1..4096", c->train_batch);
    if (!(c->max_loss >= 0.0f && c->max_loss <= 100.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose: max accuracy loss %g out of [0, 100] points", (double)c->max_loss);
    return TS_OK;
}

ts_status decompose_grad(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                         const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                         int *count) {
    ts_status st = check_grad_config(ctx, cfg);
    if (st) return st;
    const int K = m->classes;
    const int want = n ? n : K;
    if (K < 2) return ts_fail(ctx, TS_EINVAL, "decompose --method grad: the model has %d class; 2 or more needed", K);
    int64_t val_count = cfg->val_count;
    if (val_count > train->count / 2) val_count = train->count / 2;
    if (val_count < 1 || train->count - val_count < 1)
        return ts_fail(ctx, TS_EINVAL, "decompose --method grad: %lld training samples are too few to carve a "
                       "validation part", (long long)train->count);
    const double t0 = now_s();
    splitter sp = {0};
    sp.ctx = ctx;
    sp.origin = m;
    sp.K = K;
    ts_dataset *tr = NULL, *va = NULL;
    ts_loader *ld = NULL;
    ts_module **mods = NULL;
    float *x = NULL, *out = NULL, *dout = NULL, *ds = NULL, *vscores = NULL, *best = NULL, *sp_s = NULL, *sn_s = NULL;
    int32_t *y = NULL;
    float cal[2 * 256], best_cal[2 * 256], cgrad[2 * 256], cm1[2 * 256] = {0}, cm2[2 * 256] = {0};
    if (K > 256) return ts_fail(ctx, TS_EUNSUPPORTED, "decompose --method grad: more than 256 classes");
    for (int k = 0; k < K; k++) {
        cal[k] = 1.0f;
        cal[K + k] = 0.0f;
    }
    if ((st = ts_dataset_split(ctx, train, val_count, cfg->seed ^ 0x76616cull, &tr, &va))) goto done;
    if ((st = splitter_build(&sp, cfg->seed))) goto done;
    if ((st = model_ensure_grads(ctx, sp.net))) goto done;
    const int64_t S = (int64_t)K * sp.C;
    sp.score = malloc(sizeof(float) * (size_t)S);
    sp.grad = calloc((size_t)S, sizeof(float));
    sp.m1 = calloc((size_t)S, sizeof(float));
    sp.m2 = calloc((size_t)S, sizeof(float));
    best = malloc(sizeof(float) * (size_t)S);
    if (!sp.score || !sp.grad || !sp.m1 || !sp.m2 || !best) goto nomem;
    for (int64_t i = 0; i < S; i++) sp.score[i] = 1.0f;
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto done;
    const int B = cfg->train_batch;
    if ((st = ts_loader_create(ctx, tr, B, 1, &pp, cfg->seed ^ 0x6d61736bull, &ld))) goto done;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    x = ts_alloc(ctx, (size_t)B * in_sz * sizeof(float), "mask learning batch");
    out = ts_alloc(ctx, (size_t)B * (size_t)K * sizeof(float), "mask learning scores");
    dout = ts_alloc(ctx, (size_t)B * (size_t)K * sizeof(float), "mask learning gradients");
    ds = ts_alloc(ctx, (size_t)B * (size_t)K * sizeof(float), "mask learning score gradients");
    y = malloc(sizeof *y * (size_t)B);
    vscores = ts_alloc(ctx, (size_t)va->count * (size_t)K * sizeof(float), "validation scores");
    if (!x || !out || !dout || !ds || !y || !vscores) goto nomem;

    /* the origin's validation top-1: the target the selection compares against */
    double origin_acc = 0, acc = 0;
    {
        ts_model *work = NULL;
        if ((st = model_clone(ctx, m, &work))) goto done;
        ts_eval_report rep;
        st = ts_evaluate(ctx, work, va, 128, &rep);
        ts_model_free(work);
        if (st) goto done;
        origin_acc = rep.top1;
        ts_eval_report_free(&rep);
    }
    const int64_t per_epoch_all = ts_loader_batches(ld);
    int64_t per_epoch = per_epoch_all;
    if (cfg->epoch_samples > 0 && (cfg->epoch_samples + B - 1) / B < per_epoch) per_epoch = (cfg->epoch_samples + B - 1) / B;
    const int64_t total = per_epoch * cfg->epochs;
    int best_epoch = -1, best_ok = 0;
    double best_acc = -1, best_kept = 2;
    int64_t step = 0;
    /* d(alpha * mean of module k's binary masks) / d mask, straight through: the loss
     * holds that term once per module, so each sees alpha / C (not alpha / (K C)) */
    const float l1 = cfg->alpha / (float)sp.C;
    for (int e = 0; e < cfg->epochs; e++) {
        ts_loader_begin_epoch(ld, e);
        for (int64_t bi = 0; bi < per_epoch; bi++) {
            int nb = 0;
            if ((st = ts_loader_get(ld, bi, 0, x, y, &nb))) goto done;
            splitter_set_masks(&sp);
            if ((st = ts_model_forward_train(ctx, sp.net, x, nb, out, 0))) goto done;
            float *s = dout; /* calibrated scores, then their gradient */
            for (int i = 0; i < nb; i++)
                for (int k = 0; k < K; k++) s[i * K + k] = cal[k] * out[i * K + k] + cal[K + k];
            ts_softmax_cross_entropy(nb, K, s, y, 0.0f, ds);
            memset(cgrad, 0, sizeof(float) * 2 * (size_t)K);
            for (int i = 0; i < nb; i++)
                for (int k = 0; k < K; k++) {
                    const float g = ds[i * K + k];
                    cgrad[k] += g * out[i * K + k];
                    cgrad[K + k] += g;
                    dout[i * K + k] = g * cal[k];
                }
            st = model_backward_observe(ctx, sp.net, dout, observe_masks, &sp);
            if (st) goto done;
            step++;
            for (int64_t i = 0; i < S; i++) {
                const float g = sp.grad[i] < -1.0f ? -1.0f : sp.grad[i] > 1.0f ? 1.0f : sp.grad[i];
                sp.grad[i] = g + l1;
            }
            adam(sp.score, sp.grad, sp.m1, sp.m2, S, cfg->lr, step);
            if (cfg->lr_head > 0) adam(cal, cgrad, cm1, cm2, 2 * K, cfg->lr_head, step);
            for (int k = 0; k < K; k++)
                if (cal[k] < 1e-3f) cal[k] = 1e-3f; /* a module's score must keep its direction */
            if (progress && progress(user, step, total)) {
                st = ts_fail(ctx, TS_ECANCELED, "decompose: canceled");
                goto done;
            }
        }
        /* selection on the validation part */
        if ((st = splitter_eval(&sp, va, &pp, cal, 128, vscores, &acc))) goto done;
        const double kept = kept_fraction(sp.score, S);
        const int ok = acc * 100.0 >= origin_acc * 100.0 - cfg->max_loss;
        if ((ok && (!best_ok || kept < best_kept)) || (!ok && !best_ok && acc > best_acc)) {
            best_ok = ok;
            best_acc = acc;
            best_kept = kept;
            best_epoch = e;
            memcpy(best, sp.score, sizeof(float) * (size_t)S);
            memcpy(best_cal, cal, sizeof(float) * 2 * (size_t)K);
        }
    }
    if (progress) progress(user, total, total);
    memcpy(sp.score, best, sizeof(float) * (size_t)S);
    memcpy(cal, best_cal, sizeof(float) * 2 * (size_t)K);
    if ((st = splitter_eval(&sp, va, &pp, cal, 128, vscores, &acc))) goto done;

    /* the modules: channel planes of the chosen masks, calibrations, thresholds on the
     * validation part (its own class's samples as positives) */
    sp_s = malloc(sizeof(float) * (size_t)va->count);
    sn_s = malloc(sizeof(float) * (size_t)va->count);
    if (!(mods = calloc((size_t)want, sizeof *mods)) || !sp_s || !sn_s) goto nomem;
    const double secs = now_s() - t0;
    for (int w = 0; w < want; w++) {
        const int c = n ? classes[w] : w;
        if ((st = module_create(ctx, m, c, &mods[w]))) goto done;
        ts_module *mod = mods[w];
        for (int g = 0, k = 0; g < sp.ngates; g++) {
            while (k < mod->nmasks && mod->masks[k].layer != sp.gates[g].relu) k++;
            if (k == mod->nmasks) break;
            module_mask *mk = &mod->masks[k];
            const float *s = sp.score + (size_t)c * (size_t)sp.C + sp.gates[g].off;
            for (int ch = 0; ch < sp.gates[g].channels; ch++)
                if (!(s[ch] > 0.0f))
                    for (int64_t u = (int64_t)ch * sp.gates[g].plane; u < (int64_t)(ch + 1) * sp.gates[g].plane; u++)
                        mk->keep[u >> 6] &= ~(1ull << (u & 63));
        }
        mod->info.scale = cal[c];
        mod->info.shift = cal[K + c];
        int64_t np = 0, nn = 0;
        for (int64_t i = 0; i < va->count; i++) {
            const float v = vscores[(size_t)i * K + c];
            if (va->labels[i] == c) sp_s[np++] = v;
            else sn_s[nn++] = v;
        }
        mod->info.threshold = np && nn ? module_balanced_threshold(sp_s, np, sn_s, nn) : 0.0f;
        int64_t pos = 0;
        for (int64_t i = 0; i < tr->count; i++) pos += tr->labels[i] == c;
        mod->info.positives = (int)(pos > 1000000000 ? 1000000000 : pos);
        mod->info.negatives = (int)(tr->count - pos > 1000000000 ? 1000000000 : tr->count - pos);
        mod->info.seconds = secs / want;
        mod->info.method = TS_DECOMPOSE_GRAD;
        mod->info.selected_epoch = best_epoch + 1;
        mod->info.val_accuracy = acc;
        mod->info.origin_val_accuracy = origin_acc;
        if ((st = module_count(ctx, mod))) goto done;
    }
    *modules = mods;
    *count = want;
    mods = NULL;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "decompose --method grad: out of memory");
done:
    ts_modules_free(mods, want);
    ts_model_free(sp.net);
    free(sp.gates);
    free(sp.mask_layer);
    free(sp.net_gate);
    free(sp.score);
    free(sp.grad);
    free(sp.m1);
    free(sp.m2);
    free(best);
    free(sp_s);
    free(sn_s);
    ts_loader_free(ld);
    ts_dataset_free(tr);
    ts_dataset_free(va);
    ts_free(x);
    ts_free(out);
    ts_free(dout);
    ts_free(ds);
    ts_free(vscores);
    free(y);
    return st;
}
