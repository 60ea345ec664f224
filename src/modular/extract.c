/* Sub-task extraction (SeaM-style, Qi et al. ICSE'23; the brief is
 * ../shared/reference/modularization-successors.md, section 3): a trained classifier
 * re-engineered, without changing its weights, into a smaller ordinary model that
 * tells k of its classes apart.
 *
 * One real-valued score per kernel (channel of a ReLU over convolution maps) and per
 * dense unit (feature of a ReLU over a vector), binarized with a straight-through
 * estimator on the frozen origin (mask_net.c); a new head, Linear(classes -> k) over
 * the origin's logits, starts as the rows of the chosen classes. Loss:
 *   CE(head, y) + alpha * mean(binary masks)
 * on the sub-task's training samples, Adam on the scores (lr) and the head (lr_head).
 * The epoch kept is the one with the fewest kept units among those whose top-1 on a
 * validation part carved from the sub-task's training samples is at least the origin's
 * (argmax over the chosen classes' logits) less max_loss points, else the most
 * accurate; the masked network is then sliced (model_slice).
 *
 * Differences from SeaM, on purpose: masks are per kernel and dense unit, not per
 * weight, since only whole kernels leave the computation; head and masks train
 * together from the first step (SeaM alternates a head-only epoch and four mask
 * epochs); selection uses a validation part, never the test set. */
#include "modular.h"

#include "data/data.h"
#include "train/train.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_extract_config_default(ts_extract_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->alpha = 0.25f;
    cfg->epochs = 8;
    cfg->epoch_samples = 0;
    cfg->val_count = 1000;
    cfg->lr = 0.05f;
    cfg->lr_head = 0.01f;
    cfg->train_batch = 64;
    cfg->max_loss = 0.0f;
    cfg->adapt = 1;
}

static ts_status check_config(ts_ctx *ctx, const ts_extract_config *c) {
    if (!(c->alpha >= 0.0f && c->alpha <= 100.0f))
        return ts_fail(ctx, TS_EINVAL, "extract: alpha %g out of [0, 100]", (double)c->alpha);
    if (c->epochs < 1 || c->epochs > 100000) return ts_fail(ctx, TS_EINVAL, "extract: epochs %d out of 1..100000", c->epochs);
    if (c->epoch_samples < 0) return ts_fail(ctx, TS_EINVAL, "extract: epoch samples must be >= 0");
    if (c->val_count < 1) return ts_fail(ctx, TS_EINVAL, "extract: the validation part needs at least 1 sample");
    if (!(c->lr > 0.0f && c->lr <= 10.0f) || !(c->lr_head >= 0.0f && c->lr_head <= 10.0f))
        return ts_fail(ctx, TS_EINVAL, "extract: learning rates %g, %g out of (0, 10]", (double)c->lr, (double)c->lr_head);
    if (c->train_batch < 1 || c->train_batch > 4096)
        return ts_fail(ctx, TS_EINVAL, "extract: training batch %d out of 1..4096", c->train_batch);
    if (!(c->max_loss >= 0.0f && c->max_loss <= 100.0f))
        return ts_fail(ctx, TS_EINVAL, "extract: max accuracy loss %g out of [0, 100] points", (double)c->max_loss);
    return TS_OK;
}

/* The samples of ds whose label is classes[j], relabelled j, in their order. */
static ts_status subtask_data(ts_ctx *ctx, const ts_dataset *ds, const int *classes, int k, ts_dataset **out) {
    int64_t n = 0;
    for (int64_t i = 0; i < ds->count; i++)
        for (int j = 0; j < k; j++) n += ds->labels[i] == classes[j];
    ts_dataset *r = NULL;
    ts_status st = data_dataset_new(ctx, n, ds->channels, ds->height, ds->width, k, ds->name, 1, &r);
    if (st) return st;
    const size_t per = (size_t)ds->channels * (size_t)ds->height * (size_t)ds->width;
    int64_t at = 0;
    for (int64_t i = 0; i < ds->count; i++)
        for (int j = 0; j < k; j++)
            if (ds->labels[i] == classes[j]) {
                memcpy(r->images + (size_t)at * per, ds->images + (size_t)i * per, per);
                r->labels[at++] = j;
            }
    const char *names[256];
    for (int j = 0; j < k; j++) names[j] = ds->class_names ? ds->class_names[classes[j]] : NULL;
    if ((st = data_dataset_set_names(ctx, r, ds->class_names ? names : NULL))) {
        ts_dataset_free(r);
        return st;
    }
    *out = r;
    return TS_OK;
}

/* Metadata of the extracted model: its classes' names and, per output, where the
 * class's data is (the form ts_composed_dataset reads), the origin's preprocessing. */
static ts_status extract_meta(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const int *classes, int k,
                              const char *dataset, ts_model *x) {
    ts_strbuf names = {0}, v = {0};
    ts_status st = TS_OK;
    for (int j = 0; j < k; j++) {
        const char *nm = train->class_names ? train->class_names[classes[j]] : NULL;
        ts_strbuf_printf(&names, "%s", j ? "\n" : "");
        if (nm)
            for (const char *p = nm; *p; p++) ts_strbuf_printf(&names, "%c", *p == '\n' ? ' ' : *p);
        else
            ts_strbuf_printf(&names, "%d", classes[j]);
    }
    const uint64_t id = module_model_id(m);
    for (int j = 0; j < k && !st; j++) {
        char key[48];
        v.len = 0;
        ts_strbuf_printf(&v, "dataset=%s;class=%d;origin=extract;id=%016" PRIx64, dataset, classes[j], id);
        snprintf(key, sizeof key, "composed.origin.%d", j);
        st = v.failed ? ts_fail(ctx, TS_ENOMEM, "extract: out of memory") : ts_model_set_meta(ctx, x, key, v.s);
    }
    v.len = 0;
    for (int j = 0; j < k; j++) ts_strbuf_printf(&v, "%s%d", j ? "," : "", classes[j]);
    if (!st) st = names.failed || v.failed ? ts_fail(ctx, TS_ENOMEM, "extract: out of memory") : TS_OK;
    if (!st) st = ts_model_set_meta(ctx, x, "classes", names.s ? names.s : "");
    if (!st) st = ts_model_set_meta(ctx, x, "extract.classes", v.s);
    if (!st) st = ts_model_set_meta(ctx, x, "dataset", dataset);
    if (!st) st = ts_model_set_meta(ctx, x, "arch", "extracted");
    static const char *const keep[] = {"preprocess.mean", "preprocess.std"};
    for (int i = 0; i < 2 && !st; i++) {
        const char *pv = ts_model_get_meta(m, keep[i]);
        if (pv) st = ts_model_set_meta(ctx, x, keep[i], pv);
    }
    ts_strbuf_free(&names);
    ts_strbuf_free(&v);
    return st;
}

ts_status ts_extract(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const int *classes, int k,
                     const ts_extract_config *cfg, ts_progress_fn progress, void *user, ts_model **out,
                     ts_extract_report *rep) {
    if (!ctx || !m || !train || !classes || !cfg || !out) return ts_fail(ctx, TS_EINVAL, "ts_extract: NULL argument");
    *out = NULL;
    ts_status st = check_config(ctx, cfg);
    if (st) return st;
    const int K = m->classes;
    if (k < 2 || k > 256 || k > K)
        return ts_fail(ctx, TS_EINVAL, "extract: %d classes asked; a sub-task needs 2 to %d classes of the model", k,
                       K < 256 ? K : 256);
    for (int j = 0; j < k; j++) {
        if (classes[j] < 0 || classes[j] >= K)
            return ts_fail(ctx, TS_EINVAL, "extract: class %d is not a class of the model (0..%d)", classes[j], K - 1);
        for (int i = 0; i < j; i++)
            if (classes[i] == classes[j]) return ts_fail(ctx, TS_EINVAL, "extract: class %d is listed twice", classes[j]);
    }
    if ((st = train_check_dataset(ctx, m, train, "training"))) return st;
    /* the data may hold fewer classes than the model outputs: each chosen one needs samples */
    for (int j = 0; j < k; j++) {
        int64_t have = 0;
        for (int64_t i = 0; classes[j] < train->classes && i < train->count && !have; i++)
            have = train->labels[i] == classes[j];
        if (!have)
            return ts_fail(ctx, TS_EINVAL, "extract: the training data %s holds no sample of class %d", train->name,
                           classes[j]);
    }
    const char *dataset = cfg->dataset;
    if (!dataset) dataset = ts_model_get_meta(m, "data");
    if (!dataset) dataset = ts_model_get_meta(m, "dataset");
    if (!dataset) dataset = train->name;
    const double t0 = ts_monotonic_s();
    mask_net mn = {0};
    ts_dataset *sub = NULL, *tr = NULL, *va = NULL;
    ts_loader *ld = NULL;
    ts_model *work = NULL, *x_model = NULL;
    float *head_w = NULL, *best = NULL, *hm = NULL, *x = NULL, *logits = NULL, *dl = NULL;
    int32_t *y = NULL;
    if ((st = subtask_data(ctx, train, classes, k, &sub))) goto done;
    int64_t val_count = cfg->val_count;
    if (val_count > sub->count / 2) val_count = sub->count / 2;
    if (val_count < 1 || sub->count - val_count < 1) {
        st = ts_fail(ctx, TS_EINVAL, "extract: the training data holds %lld samples of those classes: too few to carve "
                     "a validation part", (long long)sub->count);
        goto done;
    }
    if ((st = ts_dataset_split(ctx, sub, val_count, cfg->seed ^ 0x76616cull, &tr, &va))) goto done;
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto done;
    /* the origin's top-1 on the validation part, argmax over the chosen classes */
    double origin_acc = 0, acc = 0;
    if ((st = model_clone(ctx, m, &work))) goto done;
    if ((st = evaluate_classes(ctx, work, va, &pp, classes, k, &origin_acc))) goto done;

    /* the network: every kernel and dense unit gated, the head the chosen classes' rows */
    if (!(head_w = calloc((size_t)k * (size_t)K, sizeof *head_w))) goto nomem;
    for (int j = 0; j < k; j++) head_w[(size_t)j * K + classes[j]] = 1.0f;
    const mask_net_spec spec = {"extract", 1, 1, k, head_w, "head"};
    if ((st = mask_net_build(&mn, ctx, m, &spec, cfg->seed))) goto done;
    ts_model *net = mn.net;
    const layer *hl = &net->layers[mn.head_layer];
    float *hw = tensor_data(net, hl->weight), *hb = tensor_data(net, hl->bias_t);
    const int64_t HW = (int64_t)k * K, S = mn.C;
    /* best scores (S), best head (HW + k), Adam moments of the head (2 (HW + k)) */
    best = malloc(sizeof(float) * (size_t)(S + HW + k));
    hm = calloc((size_t)(2 * (HW + k)), sizeof(float));
    if (!best || !hm) goto nomem;
    const int B = cfg->train_batch;
    if ((st = ts_loader_create(ctx, tr, B, 1, &pp, cfg->seed ^ 0x6d61736bull, &ld))) goto done;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    x = ts_alloc(ctx, (size_t)B * in_sz * sizeof(float), "extract: batch");
    logits = ts_alloc(ctx, (size_t)B * (size_t)k * sizeof(float), "extract: outputs");
    dl = ts_alloc(ctx, (size_t)B * (size_t)k * sizeof(float), "extract: output gradients");
    y = malloc(sizeof *y * (size_t)B);
    if (!x || !logits || !dl || !y) goto nomem;
    int64_t per_epoch = ts_loader_batches(ld);
    if (cfg->epoch_samples > 0 && (cfg->epoch_samples + B - 1) / B < per_epoch) per_epoch = (cfg->epoch_samples + B - 1) / B;
    const int64_t total = per_epoch * cfg->epochs;
    int best_epoch = -1, best_ok = 0;
    double best_acc = -1, best_kept = 2;
    int64_t step = 0;
    float alpha = cfg->alpha;
    for (int e = 0; e < cfg->epochs; e++) {
        ts_loader_begin_epoch(ld, e);
        for (int64_t bi = 0; bi < per_epoch; bi++) {
            int nb = 0;
            if ((st = ts_loader_get(ld, bi, 0, x, y, &nb))) goto done;
            mask_net_set_masks(&mn);
            if ((st = ts_model_forward_train(ctx, net, x, nb, logits, 0))) goto done;
            ts_softmax_cross_entropy(nb, k, logits, y, 0.0f, dl);
            if ((st = model_backward_observe(ctx, net, dl, mask_net_observe, &mn))) goto done;
            step++;
            mask_net_step_scores(&mn, alpha / (float)S, cfg->lr, step); /* d(alpha * mean(masks)) / d mask */
            if (cfg->lr_head > 0) {
                mask_net_adam(hw, tensor_grad(net, hl->weight), hm, hm + HW, HW, cfg->lr_head, step);
                mask_net_adam(hb, tensor_grad(net, hl->bias_t), hm + 2 * HW, hm + 2 * HW + k, k, cfg->lr_head, step);
                exec_weights_changed(net);
            }
            if (progress && progress(user, step, total)) {
                st = ts_fail(ctx, TS_ECANCELED, "extract: canceled");
                goto done;
            }
        }
        mask_net_set_masks(&mn);
        if ((st = evaluate_classes(ctx, net, va, &pp, NULL, k, &acc))) goto done;
        const double kept = mask_net_kept(mn.score, S);
        const int ok = acc * 100.0 >= origin_acc * 100.0 - cfg->max_loss;
        /* the penalty follows the accuracy bound: eased while the sub-task is below
         * it, pressed while above (an epoch's steps can bring kernels back, since a
         * removed kernel still receives its gradient) */
        if (cfg->adapt) alpha *= ok ? 1.5f : 0.5f;
        if ((ok && (!best_ok || kept < best_kept)) || (!ok && !best_ok && acc > best_acc)) {
            best_ok = ok;
            best_acc = acc;
            best_kept = kept;
            best_epoch = e;
            memcpy(best, mn.score, sizeof(float) * (size_t)S);
            memcpy(best + S, hw, sizeof(float) * (size_t)HW);
            memcpy(best + S + HW, hb, sizeof(float) * (size_t)k);
        }
    }
    if (progress) progress(user, total, total);
    memcpy(mn.score, best, sizeof(float) * (size_t)S);
    memcpy(hw, best + S, sizeof(float) * (size_t)HW);
    memcpy(hb, best + S + HW, sizeof(float) * (size_t)k);
    mask_net_set_masks(&mn);
    exec_weights_changed(net);
    slice_report sr = {0};
    if ((st = model_slice(ctx, net, &x_model, &sr))) goto done;
    if ((st = extract_meta(ctx, m, train, classes, k, dataset, x_model))) goto done;
    if ((st = evaluate_classes(ctx, x_model, va, &pp, NULL, k, &acc))) goto done;
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->selected_epoch = best_epoch + 1;
        rep->val_accuracy = acc;
        rep->origin_val_accuracy = origin_acc;
        rep->val_count = va->count;
        rep->train_count = tr->count;
        rep->units = S;
        rep->units_kept = 0;
        for (int64_t i = 0; i < S; i++) rep->units_kept += best[i] > 0.0f;
        int64_t kern;
        model_measure(m, &rep->origin_params, &rep->origin_macs, &kern);
        model_measure(x_model, &rep->params, &rep->macs, &kern);
        rep->seconds = ts_monotonic_s() - t0;
    }
    *out = x_model;
    x_model = NULL;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "extract: out of memory");
done:
    mask_net_free(&mn);
    ts_model_free(work);
    ts_model_free(x_model);
    ts_dataset_free(sub);
    ts_dataset_free(tr);
    ts_dataset_free(va);
    ts_loader_free(ld);
    free(head_w);
    free(best);
    free(hm);
    ts_free(x);
    ts_free(logits);
    ts_free(dl);
    free(y);
    return st;
}
