/* Saliency maps: the gradient of a class's logit with respect to the input, plain or
 * by guided backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving
 * for Simplicity: The All Convolutional Net", ICLR 2015 workshop, section 3.4).
 *
 * The gradient must be the inference function's, not the training one's: batch norm
 * with its running statistics, dropout the identity, the running statistics left
 * alone. So the model is rebuilt through the graph builder as that function (each
 * batch norm an affine x * a + b of two constant `binary` layers, dropout removed, a
 * final softmax dropped so the output is the logits) with a `mask` of ones after the
 * input, whose output gradient is d score / d input (backward computes no gradient
 * for the model input itself). The training forward and backward of that copy then
 * differentiate exactly what ts_model_predict computes. Guided backpropagation needs
 * no change in src/nn: a backward observer clamps the gradient arriving at each ReLU
 * to its positive part before the ReLU's own backward masks it by the ReLU's input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

/* Samples per forward/backward pass: bounds the copy's activation memory. */
#define SALIENCY_CHUNK 32

static const float *tensor_values(const ts_model *m, int t) {
    const tensor_entry *e = &m->tensors[t];
    return (e->role == TS_TENSOR_PARAM ? m->params : m->buffers) + e->offset;
}

/* The logits layer: the last one, or the input of a final softmax / log-softmax. */
static int logits_layer(const ts_model *m) {
    const layer *l = &m->layers[m->nlayers - 1];
    if ((l->kind == LAYER_SOFTMAX || l->kind == LAYER_LOGSOFTMAX) && l->inputs[0] > 0 &&
        shape_numel(&m->layers[l->inputs[0]].out) == m->classes)
        return l->inputs[0];
    return m->nlayers - 1;
}

/* Adds batch norm `bn` of m as out = in * a + b, two constant binary layers named
 * after it (a per channel: axis 0 of its per-sample input). */
static ts_status add_affine(nn_builder *b, const layer *bn, int in, int *mul, int *add) {
    layer_attrs a;
    nn_attrs_default(LAYER_BINARY, &a);
    a.tshape = bn->out;
    for (int i = 1; i < a.tshape.ndim; i++) a.tshape.dims[i] = 1;
    a.op = BINARY_MUL;
    nn_added ad;
    ts_status st = nn_add_at(b, LAYER_BINARY, bn->name, &in, 1, &a, &ad);
    if (st) return st;
    *mul = ad.layer;
    char name[LAYER_NAME_MAX];
    snprintf(name, sizeof name, "%.*s.shift", LAYER_NAME_MAX - 8, bn->name);
    a.op = BINARY_ADD;
    st = nn_add_at(b, LAYER_BINARY, name, mul, 1, &a, &ad);
    *add = ad.layer;
    return st;
}

/* a = gamma / sqrt(var + eps), b = beta - mean * a: inference batch norm. */
static void set_affine(const ts_model *m, const layer *bn, ts_model *net, int mul, int add) {
    const int64_t C = bn->out.dims[0];
    const float *g = tensor_values(m, bn->weight), *be = tensor_values(m, bn->bias_t);
    const float *mu = tensor_values(m, bn->running_mean), *var = tensor_values(m, bn->running_var);
    float *a = tensor_data(net, net->layers[mul].konst), *b = tensor_data(net, net->layers[add].konst);
    for (int64_t c = 0; c < C; c++) {
        a[c] = g[c] / sqrtf(var[c] + bn->eps);
        b[c] = be[c] - mu[c] * a[c];
    }
}

/* Every tensor of net named as one of m's gets its values. */
static void copy_tensors(const ts_model *m, ts_model *net) {
    for (int j = 0; j < net->ntensors; j++)
        for (int i = 0; i < m->ntensors; i++)
            if (!strcmp(net->tensors[j].name, m->tensors[i].name) && net->tensors[j].numel == m->tensors[i].numel) {
                memcpy(tensor_data(net, j), tensor_values(m, i), sizeof(float) * (size_t)m->tensors[i].numel);
                break;
            }
}

/* The inference function of m as a trainable copy, its layer 1 the input's mask. */
static ts_status saliency_net(ts_ctx *ctx, const ts_model *m, ts_model **out) {
    const int h = logits_layer(m);
    int *map = malloc(sizeof *map * (size_t)m->nlayers), *bn_mul = malloc(sizeof *bn_mul * (size_t)m->nlayers);
    nn_builder *b = NULL;
    ts_status st = TS_OK;
    if (!map || !bn_mul) {
        st = ts_fail(ctx, TS_ENOMEM, "ts_model_saliency: out of memory");
        goto done;
    }
    if ((st = nn_builder_create(ctx, "saliency", 0, &m->input, m->classes, m->layers[0].name, &b))) goto done;
    int zero = 0;
    nn_added ad;
    if ((st = nn_add_at(b, LAYER_MASK, "saliency.input", &zero, 1, NULL, &ad))) goto done;
    map[0] = ad.layer;
    for (int li = 1; li <= h; li++) {
        const layer *l = &m->layers[li];
        bn_mul[li] = -1;
        if (l->kind == LAYER_DROPOUT) {
            map[li] = map[l->inputs[0]];
            continue;
        }
        if (l->kind == LAYER_BATCHNORM) {
            if ((st = add_affine(b, l, map[l->inputs[0]], &bn_mul[li], &map[li]))) goto done;
            continue;
        }
        int ins[LAYER_MAX_INPUTS];
        for (int i = 0; i < l->ninputs; i++) ins[i] = map[l->inputs[i]];
        if ((st = nn_add_at(b, l->kind, l->name, ins, l->ninputs, &l->attrs, &ad))) goto done;
        map[li] = ad.layer;
    }
    st = nn_builder_finish(b, 0, NULL, out);
    b = NULL;
    if (st) goto done;
    copy_tensors(m, *out);
    const layer *mask = &(*out)->layers[1];
    float *ones = tensor_data(*out, mask->mask);
    for (int64_t i = 0; i < shape_numel(&mask->out); i++) ones[i] = 1.0f;
    for (int li = 1; li <= h; li++)
        if (bn_mul[li] >= 0) set_affine(m, &m->layers[li], *out, bn_mul[li], map[li]);
done:
    nn_builder_free(b);
    free(map);
    free(bn_mul);
    return st;
}

typedef struct saliency_pass {
    int guided;
    float *out; /* (n, input numel): the input mask's output gradient lands here */
    size_t count;
} saliency_pass;

static int saliency_observe(void *user, ts_model *net, int li) {
    saliency_pass *p = user;
    float *g = net->exec.ls[li].grad;
    if (li == 1) memcpy(p->out, g, sizeof(float) * p->count);
    else if (p->guided && net->layers[li].kind == LAYER_RELU) {
        const size_t cnt = layer_count(net, li); /* padded channels too when blocked */
        for (size_t i = 0; i < cnt; i++) g[i] = g[i] > 0.0f ? g[i] : 0.0f;
    }
    return 0;
}

ts_status ts_model_saliency(ts_ctx *ctx, const ts_model *m, const float *x, int n, const int *class_idx, int guided,
                            float *out) {
    if (!ctx || !m || !x || !out || n < 1) return ts_fail(ctx, TS_EINVAL, "ts_model_saliency: bad argument");
    if (ts_ctx_get_constant_time(ctx))
        return ts_fail(ctx, TS_EUNSUPPORTED, "ts_model_saliency: a gradient, refused in constant-time mode");
    for (int i = 0; class_idx && i < n; i++)
        if (class_idx[i] < 0 || class_idx[i] >= m->classes)
            return ts_fail(ctx, TS_EINVAL, "ts_model_saliency: class %d of sample %d is not in 0..%d", class_idx[i], i,
                           m->classes - 1);
    ts_model *net = NULL;
    ts_status st = saliency_net(ctx, m, &net);
    const size_t in_sz = (size_t)shape_numel(&m->input), K = (size_t)m->classes;
    const int chunk = n < SALIENCY_CHUNK ? n : SALIENCY_CHUNK;
    float *logits = st ? NULL : malloc(sizeof(float) * K * (size_t)chunk);
    float *dlogits = st ? NULL : malloc(sizeof(float) * K * (size_t)chunk);
    if (!st && (!logits || !dlogits)) st = ts_fail(ctx, TS_ENOMEM, "ts_model_saliency: out of memory");
    memset(out, 0, sizeof(float) * in_sz * (size_t)n);
    for (int s = 0; s < n && !st; s += chunk) {
        const int b = n - s < chunk ? n - s : chunk;
        if ((st = ts_model_forward_train(ctx, net, x + (size_t)s * in_sz, b, logits, 0))) break;
        memset(dlogits, 0, sizeof(float) * K * (size_t)b);
        for (int i = 0; i < b; i++) {
            const int c = class_idx ? class_idx[s + i] : ts_argmax(logits + (size_t)i * K, (int)K);
            dlogits[(size_t)i * K + (size_t)(c < 0 ? 0 : c)] = 1.0f;
        }
        saliency_pass p = {guided, out + (size_t)s * in_sz, (size_t)b * in_sz};
        st = model_backward_observe(ctx, net, dlogits, saliency_observe, &p);
    }
    free(logits);
    free(dlogits);
    ts_model_free(net);
    return st;
}
