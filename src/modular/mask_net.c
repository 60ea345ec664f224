/* The frozen-origin network that kernel masks are learned on (decompose --method grad,
 * extract; the brief is ../shared/reference/modularization-successors.md, section 3).
 *
 * Every "gate" of the origin, a ReLU whose output is (C,H,W) (and, when asked, a ReLU
 * over a vector: one unit per feature), gets one real-valued score per channel and
 * branch. The forward pass binarizes it (kept when > 0) and zeroes the channel's map
 * through a mask layer after the ReLU; the backward pass is straight-through: the score
 * receives d loss / d binary mask (the observer below sums it), which the caller clips
 * to [-1, 1] (hardtanh). The origin runs once per branch in one network, its batch
 * norms folded into the convolutions before them (so they behave as in inference: the
 * papers keep the base model in eval mode) and its dropout removed. Branch k ends in a
 * dense head over the origin's logits (head_out outputs, initial weights given, bias
 * zero); the branches' heads are concatenated into the network's output. */
#include "modular.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

ts_status mask_net_build(mask_net *mn, ts_ctx *ctx, const ts_model *o, const mask_net_spec *spec, uint64_t seed) {
    memset(mn, 0, sizeof *mn);
    mn->ctx = ctx;
    mn->origin = o;
    mn->K = spec->branches;
    const char *what = spec->what;
    const int K = mn->K, L = o->nlayers, h = module_logits_layer(o);
    int *map = malloc(sizeof *map * (size_t)L), *src = NULL, *bnof = NULL;
    int *head_layer = malloc(sizeof *head_layer * (size_t)K);
    nn_builder *b = NULL;
    ts_status st = TS_OK;
    if (!map || !head_layer) goto nomem;
    if (!(mn->gates = calloc((size_t)L, sizeof *mn->gates))) goto nomem;
    for (int li = 1; li <= h; li++) {
        const layer *l = &o->layers[li];
        if (l->kind != LAYER_RELU || !(l->out.ndim == 3 || (spec->vector_gates && l->out.ndim == 1))) continue;
        mask_gate *g = &mn->gates[mn->ngates++];
        g->relu = li;
        g->channels = (int)l->out.dims[0];
        g->plane = shape_numel(&l->out) / g->channels;
        g->off = mn->C;
        mn->C += g->channels;
    }
    if (mn->ngates == 0) {
        st = ts_fail(ctx, TS_EUNSUPPORTED, "%s: the model has no ReLU over convolution maps (CxHxW)%s to mask", what,
                     spec->vector_gates ? " or dense units" : "");
        goto done;
    }
    if ((st = nn_builder_create(ctx, what, 0, &o->input, K * spec->head_out, o->layers[0].name, &b))) goto done;
    /* net layer -> origin layer and folded batch norm, for the tensors */
    const int cap = K * (2 * L + 2) + 2;
    src = malloc(sizeof *src * (size_t)cap);
    bnof = malloc(sizeof *bnof * (size_t)cap);
    mn->mask_layer = malloc(sizeof *mn->mask_layer * (size_t)K * (size_t)mn->ngates);
    if (!src || !bnof || !mn->mask_layer) goto nomem;
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
                             "%s: batch norm '%s' does not follow a convolution or dense layer alone, so it cannot "
                             "be frozen by folding",
                             what, l->name);
                goto done;
            }
            int ins[LAYER_MAX_INPUTS];
            for (int i = 0; i < l->ninputs; i++) ins[i] = map[l->inputs[i]];
            layer_attrs a = l->attrs;
            int bn = -1;
            if ((l->kind == LAYER_CONV2D || l->kind == LAYER_DENSE) && (bn = folded_bn(o, li)) >= 0) a.bias = 1;
            char name[LAYER_NAME_MAX];
            if (K > 1) snprintf(name, sizeof name, "m%d.%.*s", k, LAYER_NAME_MAX - 16, l->name);
            else snprintf(name, sizeof name, "%s", l->name);
            nn_added ad;
            if ((st = nn_add_at(b, l->kind, name, ins, l->ninputs, &a, &ad))) goto done;
            src[ad.layer] = li;
            bnof[ad.layer] = bn;
            map[li] = ad.layer;
            if (gi < mn->ngates && mn->gates[gi].relu == li) {
                char gname[LAYER_NAME_MAX];
                snprintf(gname, sizeof gname, "%.*s.keep", LAYER_NAME_MAX - 8, name);
                memcpy(name, gname, sizeof name);
                if ((st = nn_add_at(b, LAYER_MASK, name, &ad.layer, 1, NULL, &ad))) goto done;
                mn->mask_layer[k * mn->ngates + gi++] = ad.layer;
                map[li] = ad.layer;
            }
        }
        layer_attrs d;
        nn_attrs_default(LAYER_DENSE, &d);
        d.features = spec->head_out;
        char name[LAYER_NAME_MAX];
        if (K > 1) snprintf(name, sizeof name, "m%d.%s", k, spec->head_name);
        else snprintf(name, sizeof name, "%s", spec->head_name);
        nn_added ad;
        if ((st = nn_add_at(b, LAYER_DENSE, name, &map[h], 1, &d, &ad))) goto done;
        head_layer[k] = ad.layer;
    }
    /* the K heads in one vector: concats of at most LAYER_MAX_INPUTS inputs, chained */
    layer_attrs c;
    nn_attrs_default(LAYER_CONCAT, &c);
    int ins[LAYER_MAX_INPUTS], have = 0, part = 0;
    for (int k = 0; k < K && K > 1;) {
        while (have < LAYER_MAX_INPUTS && k < K) ins[have++] = head_layer[k++];
        char name[LAYER_NAME_MAX];
        snprintf(name, sizeof name, k == K ? "heads" : "heads.%d", part++);
        nn_added ad;
        if (have == 1) break; /* one branch left alone: K >= 2, so never the first */
        if ((st = nn_add_at(b, LAYER_CONCAT, name, ins, have, &c, &ad))) goto done;
        ins[0] = ad.layer;
        have = 1;
    }
    if ((st = nn_builder_finish(b, seed, NULL, &mn->net))) {
        b = NULL;
        goto done;
    }
    b = NULL;
    ts_model *net = mn->net;
    for (int li = 1; li < net->nlayers; li++) {
        if (src[li] < 0) continue;
        if (bnof[li] >= 0) fold_into(o, src[li], bnof[li], net, li);
        else if ((st = model_copy_layer_tensors(ctx, o, src[li], net, li, what))) goto done;
    }
    const int ol = o->classes;
    for (int k = 0; k < K; k++) {
        const layer *l = &net->layers[head_layer[k]];
        memcpy(tensor_data(net, l->weight), spec->head_w + (size_t)k * (size_t)spec->head_out * (size_t)ol,
               sizeof(float) * (size_t)spec->head_out * (size_t)ol);
        memset(tensor_data(net, l->bias_t), 0, sizeof(float) * (size_t)spec->head_out);
    }
    mn->head_layer = head_layer[0];
    if (!(mn->net_gate = malloc(sizeof *mn->net_gate * (size_t)net->nlayers))) goto nomem;
    for (int li = 0; li < net->nlayers; li++) mn->net_gate[li] = -1;
    for (int i = 0; i < K * mn->ngates; i++) mn->net_gate[mn->mask_layer[i]] = i;
    const int64_t S = (int64_t)K * mn->C;
    mn->score = malloc(sizeof(float) * (size_t)S);
    mn->grad = calloc((size_t)S, sizeof(float));
    mn->m1 = calloc((size_t)S, sizeof(float));
    mn->m2 = calloc((size_t)S, sizeof(float));
    if (!mn->score || !mn->grad || !mn->m1 || !mn->m2) goto nomem;
    for (int64_t i = 0; i < S; i++) mn->score[i] = 1.0f;
    exec_weights_changed(net);
    if ((st = model_ensure_grads(ctx, net))) goto done;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory", what);
done:
    nn_builder_free(b);
    free(map);
    free(src);
    free(bnof);
    free(head_layer);
    return st;
}

void mask_net_free(mask_net *mn) {
    ts_model_free(mn->net);
    free(mn->gates);
    free(mn->mask_layer);
    free(mn->net_gate);
    free(mn->score);
    free(mn->grad);
    free(mn->m1);
    free(mn->m2);
    memset(mn, 0, sizeof *mn);
}

void mask_net_set_masks(mask_net *mn) {
    for (int k = 0; k < mn->K; k++)
        for (int g = 0; g < mn->ngates; g++) {
            const mask_gate *gt = &mn->gates[g];
            float *keep = tensor_data(mn->net, mn->net->layers[mn->mask_layer[k * mn->ngates + g]].mask);
            const float *s = mn->score + (size_t)k * (size_t)mn->C + gt->off;
            for (int ch = 0; ch < gt->channels; ch++) {
                const float v = s[ch] > 0.0f ? 1.0f : 0.0f;
                for (int64_t u = 0; u < gt->plane; u++) keep[(int64_t)ch * gt->plane + u] = v;
            }
        }
}

/* d loss / d mask for each channel of each mask layer is the sum over samples and
 * positions of (d loss / d out) * in. */
int mask_net_observe(void *user, ts_model *net, int li) {
    mask_net *mn = user;
    const int i = mn->net_gate[li];
    if (i < 0) return 0;
    const int k = i / mn->ngates, g = i % mn->ngates;
    const mask_gate *gt = &mn->gates[g];
    const float *dy = net->exec.ls[li].grad, *x = layer_input(net, li, 0);
    const int n = net->exec.n;
    const int64_t per = (int64_t)gt->channels * gt->plane;
    float *out = mn->grad + (size_t)k * (size_t)mn->C + gt->off;
#pragma omp parallel for num_threads(ts_ctx_threads(mn->ctx)) schedule(static)
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

void mask_net_adam(float *p, const float *g, float *m1, float *m2, int64_t n, float lr, int64_t t) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const double c1 = 1.0 - pow(b1, (double)t), c2 = 1.0 - pow(b2, (double)t);
    for (int64_t i = 0; i < n; i++) {
        m1[i] = (float)(b1 * m1[i] + (1 - b1) * g[i]);
        m2[i] = (float)(b2 * m2[i] + (1 - b2) * (double)g[i] * g[i]);
        p[i] -= (float)(lr * (m1[i] / c1) / (sqrt(m2[i] / c2) + eps));
    }
}

void mask_net_step_scores(mask_net *mn, float l1, float lr, int64_t step) {
    const int64_t S = (int64_t)mn->K * mn->C;
    for (int64_t i = 0; i < S; i++) {
        const float g = mn->grad[i] < -1.0f ? -1.0f : mn->grad[i] > 1.0f ? 1.0f : mn->grad[i];
        mn->grad[i] = g + l1;
    }
    mask_net_adam(mn->score, mn->grad, mn->m1, mn->m2, S, lr, step);
}

double mask_net_kept(const float *score, int64_t n) {
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) kept += score[i] > 0.0f;
    return n ? (double)kept / (double)n : 1.0;
}
