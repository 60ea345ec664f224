/* Modularization while training, MwT-style (Qi et al., ICSE'24; the brief is
 * ../shared/reference/modularization-successors.md, section "MwT"): a mask generator
 * on every convolution followed by a batch norm. From the convolution's input x
 * (C_in,H,W), per sample:
 *   mask = relu(tanh(fc2(relu(fc1(globalavgpool(x))))))          (C_out)
 * fc1: C_in -> C_out (C_out / 2 from 128 channels on), no bias; fc2: -> C_out, bias
 * 1.0 so that every kernel starts open (tanh(1) = 0.76). The batch norm's output is
 * multiplied by the mask, channel by channel. The generators are ordinary layers
 * named after their batch norm ("<bn>.gen.fc1", ..., "<bn>.gen.mask", "<bn>.gated"),
 * so the result is an ordinary model that saves, loads, evaluates and trains; the
 * trainer finds the masks by the suffix TS_MWT_MASK_SUFFIX (train/trainer.c). */
#include "modular.h"

#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Channels at which fc1 halves its width, as MwT's MaskGenerator. */
#define MWT_WIDE 128

/* The batch norm consuming conv2d li alone (the pair a generator gates), or -1. */
static int gated_bn(const ts_model *m, int li) {
    if (m->layers[li].kind != LAYER_CONV2D) return -1;
    const int bn = model_sole_consumer(m, li);
    return bn >= 0 && m->layers[bn].kind == LAYER_BATCHNORM ? bn : -1;
}

/* Whether batch norm bn is already gated: its only consumer is "<bn>.gated". */
static int already_gated(const ts_model *m, int bn) {
    char want[LAYER_NAME_MAX + 8];
    snprintf(want, sizeof want, "%s.gated", m->layers[bn].name);
    const int c = model_sole_consumer(m, bn);
    return c >= 0 && !strcmp(m->layers[c].name, want);
}

/* Adds one generator for batch norm `bn` (already added at net layer at_bn) of conv
 * `conv` whose input is net layer at_in; *gated receives the gated output's layer. */
static ts_status add_generator(ts_ctx *ctx, nn_builder *b, const ts_model *m, int conv, int bn, int at_in, int at_bn,
                               int *gated, int *fc2) {
    const int cout = m->layers[conv].features;
    const char *bname = m->layers[bn].name;
    if (strlen(bname) + sizeof ".gen.shape" > LAYER_NAME_MAX)
        return ts_fail(ctx, TS_EINVAL, "mask generators: batch norm name '%s' is too long to name its generator after",
                       bname);
    struct step {
        layer_kind kind;
        const char *suffix;
    } steps[] = {{LAYER_GLOBALAVGPOOL, "gen.pool"}, {LAYER_DENSE, "gen.fc1"}, {LAYER_RELU, "gen.relu"},
                 {LAYER_DENSE, "gen.fc2"},          {LAYER_TANH, "gen.tanh"}, {LAYER_RELU, "gen.mask"},
                 {LAYER_RESHAPE, "gen.shape"}};
    int prev = at_in;
    nn_added ad;
    ts_status st;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        layer_attrs a;
        nn_attrs_default(steps[s].kind, &a);
        if (steps[s].kind == LAYER_DENSE) {
            const int first = !strcmp(steps[s].suffix, "gen.fc1");
            a.features = first && cout >= MWT_WIDE ? cout / 2 : cout;
            a.bias = !first;
        }
        if (steps[s].kind == LAYER_RESHAPE) a.tshape = (ts_shape){3, {cout, 1, 1}};
        char name[LAYER_NAME_MAX + 16]; /* fits: the length was checked above */
        snprintf(name, sizeof name, "%s.%s", bname, steps[s].suffix);
        if ((st = nn_add_at(b, steps[s].kind, name, &prev, 1, &a, &ad))) return st;
        if (!strcmp(steps[s].suffix, "gen.fc2")) *fc2 = ad.layer;
        prev = ad.layer;
    }
    layer_attrs a;
    nn_attrs_default(LAYER_BINARY, &a);
    a.op = BINARY_MUL;
    char name[LAYER_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s.gated", bname);
    const int ins[2] = {at_bn, prev};
    if ((st = nn_add_at(b, LAYER_BINARY, name, ins, 2, &a, &ad))) return st;
    *gated = ad.layer;
    return TS_OK;
}

ts_status ts_model_add_mask_generators(ts_ctx *ctx, const ts_model *m, uint64_t seed, ts_model **out) {
    if (!ctx || !m || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_add_mask_generators: NULL argument");
    *out = NULL;
    const int L = m->nlayers;
    /* map: origin layer -> the net layer its consumers read; at: -> its own copy;
     * bn_conv: batch norm -> the conv it gates (-1 when none) */
    int *map = malloc(sizeof *map * (size_t)L), *at = malloc(sizeof *at * (size_t)L);
    int *bn_conv = malloc(sizeof *bn_conv * (size_t)L), *fc2 = malloc(sizeof *fc2 * (size_t)L);
    nn_builder *b = NULL;
    ts_model *net = NULL;
    ts_status st = TS_OK;
    if (!map || !at || !bn_conv || !fc2) {
        st = ts_fail(ctx, TS_ENOMEM, "mask generators: out of memory");
        goto done;
    }
    for (int li = 0; li < L; li++) bn_conv[li] = fc2[li] = -1;
    for (int li = 1; li < L; li++) {
        const int bn = gated_bn(m, li);
        if (bn >= 0 && !already_gated(m, bn)) bn_conv[bn] = li;
    }
    if ((st = nn_builder_create(ctx, "mask generators", 0, &m->input, m->classes, m->layers[0].name, &b))) goto done;
    map[0] = at[0] = 0;
    for (int li = 1; li < L; li++) {
        const layer *l = &m->layers[li];
        int ins[LAYER_MAX_INPUTS];
        for (int i = 0; i < l->ninputs; i++) ins[i] = map[l->inputs[i]];
        nn_added ad;
        if ((st = nn_add_at(b, l->kind, l->name, ins, l->ninputs, &l->attrs, &ad))) goto done;
        map[li] = at[li] = ad.layer;
        const int conv = bn_conv[li];
        if (conv >= 0 &&
            (st = add_generator(ctx, b, m, conv, li, map[m->layers[conv].inputs[0]], ad.layer, &map[li], &fc2[li])))
            goto done;
    }
    st = nn_builder_finish(b, seed, NULL, &net);
    b = NULL;
    if (st) goto done;
    for (int li = 1; li < L && !st; li++) st = model_copy_layer_tensors(ctx, m, li, net, at[li], "mask generators");
    for (int i = 0; i < m->nmeta && !st; i++) st = ts_model_set_meta(ctx, net, m->meta[i].key, m->meta[i].value);
    if (st) goto done;
    for (int li = 1; li < L; li++) {
        if (fc2[li] < 0) continue;
        const tensor_entry *e = &net->tensors[net->layers[fc2[li]].bias_t];
        float *bias = tensor_data(net, net->layers[fc2[li]].bias_t);
        for (int64_t i = 0; i < e->numel; i++) bias[i] = 1.0f; /* every kernel open at the start */
    }
    *out = net;
    net = NULL;
done:
    nn_builder_free(b);
    ts_model_free(net);
    free(map);
    free(at);
    free(bn_conv);
    free(fc2);
    return st;
}
