/* Execution: activation and gradient buffers planned once per batch capacity,
 * forward in inference or training mode, backward with gradient accumulation for
 * tensors that feed several layers. */
#include "layers.h"

#include <stdlib.h>
#include <string.h>

void exec_release(exec_state *e) {
    if (e->ls) {
        /* layer 0 (input) owns only its grad */
        for (int i = 0; e->ls && i < e->nls; i++) {
            ts_free(e->ls[i].out);
            ts_free(e->ls[i].grad);
            ts_free(e->ls[i].aux);
        }
    }
    free(e->ls);
    ts_free(e->scratch);
    ts_free(e->accum);
    memset(e, 0, sizeof *e);
}

static size_t floats_bytes(int n, const ts_shape *s, int *ok) {
    size_t b;
    if (!ts_mul_size((size_t)n, (size_t)shape_numel(s), &b) || !ts_mul_size(b, sizeof(float), &b)) *ok = 0;
    return b;
}

/* Buffers for a batch of up to n. Gradient buffers only when `train`. */
static ts_status exec_plan(ts_ctx *ctx, ts_model *m, int n, int train) {
    exec_state *e = &m->exec;
    if (e->ls && e->capacity >= n && (!train || e->has_grads)) return TS_OK;
    if (n < 1) return ts_fail(ctx, TS_EINVAL, "batch size %d must be at least 1", n);
    if (train) {
        ts_status st = model_ensure_grads(ctx, m);
        if (st) return st;
    }
    int cap = n > e->capacity ? n : e->capacity;
    exec_release(e);
    e->ls = calloc((size_t)m->nlayers, sizeof *e->ls);
    if (!e->ls) return ts_fail(ctx, TS_ENOMEM, "out of memory planning execution buffers");
    e->nls = m->nlayers;
    size_t scratch = 0, accum = 0;
    int ok = 1;
    for (int li = 0; li < m->nlayers; li++) {
        layer *l = &m->layers[li];
        layer_state *s = &e->ls[li];
        size_t ob = floats_bytes(cap, &l->out, &ok);
        if (!ok) return ts_fail(ctx, TS_ENOMEM, "layer %s: activation size overflows at batch %d", l->name, cap);
        if (ob > accum) accum = ob;
        if (li > 0) {
            if (!(s->out = ts_alloc(ctx, ob, l->name))) return TS_ENOMEM;
            if (train && !(s->grad = ts_alloc(ctx, ob, l->name))) return TS_ENOMEM;
            s->aux_bytes = LAYER_OPS[l->kind].aux_bytes(ctx, m, l, cap);
            if (s->aux_bytes && !(s->aux = ts_alloc(ctx, s->aux_bytes, l->name))) return TS_ENOMEM;
            size_t sb = LAYER_OPS[l->kind].scratch_bytes(ctx, m, l, cap);
            if (sb > scratch) scratch = sb;
        }
    }
    if (scratch && !(e->scratch = ts_alloc(ctx, scratch, "kernel scratch"))) return TS_ENOMEM;
    e->scratch_bytes = scratch;
    if (train && !(e->accum = ts_alloc(ctx, accum, "gradient accumulator"))) return TS_ENOMEM;
    e->capacity = cap;
    e->has_grads = train;
    return TS_OK;
}

ts_status exec_prepare(ts_ctx *ctx, ts_model *m, int n) { return exec_plan(ctx, m, n, 1); }

const float *layer_input(ts_model *m, int li, int k) {
    int src = m->layers[li].inputs[k];
    return src == 0 ? m->exec.input : m->exec.ls[src].out;
}

float *layer_input_grad(ts_model *m, int li, int k) {
    int src = m->layers[li].inputs[k];
    if (src == 0) return NULL; /* nobody needs d loss / d model input */
    layer_state *s = &m->exec.ls[src];
    return s->grad_ready ? m->exec.accum : s->grad;
}

void layer_input_grad_commit(ts_model *m, int li, int k, int nthreads) {
    int src = m->layers[li].inputs[k];
    layer_state *s = &m->exec.ls[src];
    if (!s->grad_ready) {
        s->grad_ready = 1;
        return;
    }
    size_t cnt = (size_t)m->exec.n * (size_t)shape_numel(&m->layers[src].out);
    float *g = s->grad;
    const float *a = m->exec.accum;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (size_t i = 0; i < cnt; i++) g[i] += a[i];
}

static ts_status run_forward(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, int train) {
    exec_state *e = &m->exec;
    e->n = n;
    e->train = train;
    e->input = x;
    for (int li = 1; li < m->nlayers; li++) {
        ts_status st = LAYER_OPS[m->layers[li].kind].forward(ctx, m, li);
        if (st) return st;
    }
    if (logits) memcpy(logits, e->ls[m->nlayers - 1].out, (size_t)n * (size_t)m->classes * sizeof(float));
    return TS_OK;
}

#define PREDICT_CHUNK 256

ts_status ts_model_predict(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits) {
    if (!ctx || !m || !x || !logits || n < 0) return ts_fail(ctx, TS_EINVAL, "ts_model_predict: bad argument");
    size_t in_sz = (size_t)shape_numel(&m->input);
    for (int s = 0; s < n; s += PREDICT_CHUNK) {
        int b = n - s < PREDICT_CHUNK ? n - s : PREDICT_CHUNK;
        ts_status st = exec_plan(ctx, m, b, 0);
        if (st) return st;
        st = run_forward(ctx, m, x + (size_t)s * in_sz, b, logits + (size_t)s * (size_t)m->classes, 0);
        if (st) return st;
    }
    return TS_OK;
}

ts_status ts_model_forward_train(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, uint64_t dropout_seed) {
    if (!ctx || !m || !x || n < 1) return ts_fail(ctx, TS_EINVAL, "ts_model_forward_train: bad argument");
    ts_status st = exec_plan(ctx, m, n, 1);
    if (st) return st;
    m->exec.dropout_seed = dropout_seed;
    return run_forward(ctx, m, x, n, logits, 1);
}

ts_status ts_model_backward(ts_ctx *ctx, ts_model *m, const float *dlogits) {
    exec_state *e = &m->exec;
    if (!e->train || !e->has_grads || !e->n)
        return ts_fail(ctx, TS_EINVAL, "ts_model_backward: no training forward pass to differentiate");
    memset(m->grads, 0, m->nparams * sizeof(float));
    for (int li = 0; li < m->nlayers; li++) e->ls[li].grad_ready = 0;
    int last = m->nlayers - 1;
    memcpy(e->ls[last].grad, dlogits, (size_t)e->n * (size_t)m->classes * sizeof(float));
    e->ls[last].grad_ready = 1;
    for (int li = last; li >= 1; li--) {
        if (!e->ls[li].grad_ready) continue; /* output unused: contributes nothing */
        ts_status st = LAYER_OPS[m->layers[li].kind].backward(ctx, m, li);
        if (st) return st;
    }
    return TS_OK;
}
