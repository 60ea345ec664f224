/* Learned kernel masks (GradSplitter-style, Qi et al. SANER'23 / TOSEM; the brief is
 * ../shared/reference/modularization-successors.md, section 3).
 *
 * Every class c gets one real-valued score per convolution kernel: per channel of
 * every ReLU with a (C,H,W) output, where tessera's module masks live, binarized in
 * the forward pass with a straight-through gradient (mask_net.c). The frozen origin
 * runs once per class in one "splitter" network. Branch c ends in module c's score,
 * the channelled margin logit_c - mean of the other logits (tessera's concern
 * modularization), times a learned scale plus a learned shift; the loss is
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

/* Scores of the K modules on ds (preprocessed with pp) into out (count, K), calibrated
 * by cal (scale[K], shift[K]); returns top-1 against the labels in *acc. */
static ts_status splitter_eval(mask_net *sp, const ts_dataset *ds, const ts_preprocess *pp, const float *cal,
                               int batch, float *out, double *acc) {
    const int K = sp->K;
    const size_t in_sz = (size_t)shape_numel(&sp->origin->input);
    float *x = ts_alloc(sp->ctx, (size_t)batch * in_sz * sizeof(float), "mask learning batch");
    if (!x) return TS_ENOMEM;
    ts_status st = TS_OK;
    int64_t right = 0;
    mask_net_set_masks(sp);
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
    const double t0 = ts_monotonic_s();
    mask_net sp = {0};
    ts_dataset *tr = NULL, *va = NULL;
    ts_loader *ld = NULL;
    ts_module **mods = NULL;
    float *margin = NULL, *x = NULL, *out = NULL, *dout = NULL, *ds = NULL, *vscores = NULL, *best = NULL, *sp_s = NULL, *sn_s = NULL;
    int32_t *y = NULL;
    float cal[2 * 256], best_cal[2 * 256], cgrad[2 * 256], cm1[2 * 256] = {0}, cm2[2 * 256] = {0};
    if (K > 256) return ts_fail(ctx, TS_EUNSUPPORTED, "decompose --method grad: more than 256 classes");
    for (int k = 0; k < K; k++) {
        cal[k] = 1.0f;
        cal[K + k] = 0.0f;
    }
    if ((st = ts_dataset_split(ctx, train, val_count, cfg->seed ^ 0x76616cull, &tr, &va))) goto done;
    /* branch k's head: the channelled margin logit_k - mean of the other logits */
    if (!(margin = malloc(sizeof(float) * (size_t)K * (size_t)K))) goto nomem;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < K; j++) margin[k * K + j] = j == k ? 1.0f : -1.0f / (float)(K - 1);
    const mask_net_spec spec = {"decompose --method grad", K, 0, 1, margin, "margin"};
    if ((st = mask_net_build(&sp, ctx, m, &spec, cfg->seed))) goto done;
    const int64_t S = (int64_t)K * sp.C;
    if (!(best = malloc(sizeof(float) * (size_t)S))) goto nomem;
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
            mask_net_set_masks(&sp);
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
            st = model_backward_observe(ctx, sp.net, dout, mask_net_observe, &sp);
            if (st) goto done;
            step++;
            mask_net_step_scores(&sp, l1, cfg->lr, step);
            if (cfg->lr_head > 0) mask_net_adam(cal, cgrad, cm1, cm2, 2 * K, cfg->lr_head, step);
            for (int k = 0; k < K; k++)
                if (cal[k] < 1e-3f) cal[k] = 1e-3f; /* a module's score must keep its direction */
            if (progress && progress(user, step, total)) {
                st = ts_fail(ctx, TS_ECANCELED, "decompose: canceled");
                goto done;
            }
        }
        /* selection on the validation part */
        if ((st = splitter_eval(&sp, va, &pp, cal, 128, vscores, &acc))) goto done;
        const double kept = mask_net_kept(sp.score, S);
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
    const double secs = ts_monotonic_s() - t0;
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
    mask_net_free(&sp);
    free(margin);
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
