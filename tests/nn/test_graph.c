/* The model graph end to end through the public API: a whole-model finite
 * difference gradient check over every layer kind with fan-out, concat and
 * train-mode batch norm (both backends), dropout semantics, predict vs batch size
 * and chunking, backend agreement on zoo models, seeded determinism, and batch
 * norm running statistics against a hand computation; reading any layer's outputs
 * through the capture API. */
#include "tessera.h"

#include "common/test.h"
#include "nn/nn.h"

#include <stdint.h>

static ts_ctx *g_ctx;

/* ------------------------------------------------------------------ helpers */

static ts_model *make_model(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, text, "graph.arch", NULL, 0, seed, &m);
    CHECK(st == TS_OK, "model: %s", ts_ctx_error(g_ctx));
    return m;
}

static ts_model *make_zoo(const char *name, const ts_shape *in, int classes, uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, ts_zoo_arch(name), name, in, classes, seed, &m);
    CHECK(st == TS_OK, "%s: %s", name, ts_ctx_error(g_ctx));
    return m;
}

/* Runs a short training so batch-norm running statistics are not the defaults. */
static void warm_running_stats(ts_model *m, int n, uint64_t seed) {
    ts_shape s = ts_model_input_shape(m);
    size_t in_sz = (size_t)ts_shape_numel(&s);
    float *x = test_falloc((size_t)n * in_sz), *logits = test_falloc((size_t)n * ts_model_classes(m));
    for (int it = 0; it < 3; it++) {
        test_fill_uniform(x, (size_t)n * in_sz, seed + it, -1.5f, 2.0f);
        CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 7) == TS_OK, "%s", ts_ctx_error(g_ctx));
    }
    free(x);
    free(logits);
}

/* --------------------------------------------------- whole-model gradients */

/* Every kind with gradients: conv (with and without bias), 2-d and 1-d batch norm
 * in training mode, tanh, sigmoid, leakyrelu (on few values: each kink a
 * perturbation crosses spoils a difference quotient), add with a fan-out input (a1 feeds
 * c2 and res; res feeds c3, p2 and gap), max and average pooling, global average
 * pooling, concat of images and of vectors, flatten, dropout with a fixed mask,
 * a keep-mask with every third unit removed, dense. */
static const char *GRAD_ARCH =
    "input     shape=2x6x6 classes=3\n"
    "conv2d    name=c1 out=4 kernel=3 padding=1 bias=0\n"
    "batchnorm name=bn1\n"
    "tanh      name=a1\n"
    "conv2d    name=c2 out=4 kernel=3 padding=1\n"
    "tanh      name=t2\n"
    "mask      name=mk\n"
    "add       name=res in=mk,a1\n"
    "conv2d    name=c3 in=res out=2 kernel=1\n"
    "sigmoid   name=s3\n"
    "maxpool   name=p1 in=s3 kernel=2\n"
    "avgpool   name=p2 in=res kernel=3 stride=2 padding=1\n"
    "concat    name=cat in=p1,p2\n"
    "flatten   name=flat\n"
    "globalavgpool name=gap in=res\n"
    "concat    name=cat2 in=flat,gap\n"
    "dropout   name=drop p=0.25\n"
    "dense     name=fc1 out=8\n"
    "batchnorm name=bn2\n"
    "leakyrelu name=a4 slope=0.1\n"
    "dense     name=fc2 out=classes\n";

#define GRAD_N 5
#define DROP_SEED 12345u

static double fd_loss(ts_model *m, const float *x, const int32_t *y, float *logits) {
    ts_status st = ts_model_forward_train(g_ctx, m, x, GRAD_N, logits, DROP_SEED);
    CHECK(st == TS_OK, "forward: %s", ts_ctx_error(g_ctx));
    return ts_softmax_cross_entropy(GRAD_N, 3, logits, y, 0.1f, NULL);
}

static void gradcheck(ts_backend backend) {
    CHECK(ts_ctx_set_backend(g_ctx, backend) == TS_OK, "backend");
    ts_model *m = make_model(GRAD_ARCH, 42);
    if (!m) return;
    ts_tensor_info keep = test_tensor(m, "mk.keep");
    for (int64_t i = 0; i < keep.numel; i += 3) keep.data[i] = 0.0f;
    ts_shape s = ts_model_input_shape(m);
    const size_t in_sz = (size_t)ts_shape_numel(&s);
    float *x = test_falloc(GRAD_N * in_sz), *logits = test_falloc(GRAD_N * 3), *dl = test_falloc(GRAD_N * 3);
    test_fill_uniform(x, GRAD_N * in_sz, 3, -1.0f, 1.0f);
    int32_t y[GRAD_N] = {0, 2, 1, 1, 0};
    /* analytic */
    CHECK(ts_model_forward_train(g_ctx, m, x, GRAD_N, logits, DROP_SEED) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float loss0 = ts_softmax_cross_entropy(GRAD_N, 3, logits, y, 0.1f, dl);
    CHECK(isfinite(loss0) && loss0 > 0, "loss %g", loss0);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const int64_t np = ts_model_param_count(m);
    float *ana = test_falloc((size_t)np);
    double gmax = 0;
    int ntensors = ts_model_tensor_count(m), nparam_tensors = 0;
    {
        int64_t off = 0;
        for (int t = 0; t < ntensors; t++) {
            ts_tensor_info ti;
            ts_model_tensor(m, t, &ti);
            if (ti.role != TS_TENSOR_PARAM) continue;
            nparam_tensors++;
            memcpy(ana + off, ti.grad, (size_t)ti.numel * sizeof(float));
            for (int64_t i = 0; i < ti.numel; i++) gmax = fmax(gmax, fabs(ti.grad[i]));
            off += ti.numel;
        }
        CHECK(off == np, "param tensors cover %lld of %lld", (long long)off, (long long)np);
    }
    CHECK(nparam_tensors == 13, "param tensors %d", nparam_tensors);
    CHECK(gmax > 1e-3, "gradients vanish: max %g", gmax);
    /* numeric: several elements of every parameter tensor. A step that carries an
     * activation across a kink (leakyrelu at 0, a max-pool window changing its
     * winner) spoils that difference quotient by O(h), so a failing element is
     * retried with smaller steps; a wrong analytic gradient fails at every step.
     * Float rounding of the loss adds about 3e-8/h. */
    const float hs[3] = {2e-3f, 5e-4f, 2.5e-4f};
    int64_t off = 0;
    int checked = 0, retried = 0;
    for (int t = 0; t < ntensors; t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        if (ti.role != TS_TENSOR_PARAM) continue;
        const int64_t picks = ti.numel < 6 ? ti.numel : 6;
        for (int64_t k = 0; k < picks; k++) {
            int64_t i = picks == ti.numel ? k : (k * (ti.numel - 1)) / (picks - 1);
            if (k == 2 && ti.numel > 6) i = (ti.numel * 7 + 3) / 13 == i + 1 ? i + 2 : (ti.numel * 7 + 3) / 13;
            const double a = ana[off + i];
            double num = 0, lim = 0;
            int ok = 0;
            for (int hi = 0; hi < 3 && !ok; hi++) {
                const float save = ti.data[i];
                const float xp = save + hs[hi], xm = save - hs[hi];
                ti.data[i] = xp;
                const double lp = fd_loss(m, x, y, logits);
                ti.data[i] = xm;
                const double lm = fd_loss(m, x, y, logits);
                ti.data[i] = save;
                num = (lp - lm) / ((double)xp - (double)xm); /* the step actually taken */
                lim = 2e-2 * fmax(fabs(a), fabs(num)) + 1e-5 + 3e-8 / hs[hi];
                ok = fabs(num - a) <= lim;
                retried += !ok;
            }
            CHECK(ok, "backend %d: d loss / d %s[%lld]: analytic %.6g, numeric %.6g (allowed %.3g)", (int)backend,
                  ti.name, (long long)i, a, num, lim);
            checked++;
        }
        off += ti.numel;
    }
    CHECK(retried < checked / 5, "%d of %d elements needed a smaller step", retried, checked);
    CHECK(checked > 50, "checked %d", checked);
    /* a second backward gives the same gradients (grads are overwritten, not accumulated) */
    CHECK(ts_model_forward_train(g_ctx, m, x, GRAD_N, logits, DROP_SEED) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_softmax_cross_entropy(GRAD_N, 3, logits, y, 0.1f, dl);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    {
        int64_t o = 0;
        for (int t = 0; t < ntensors; t++) {
            ts_tensor_info ti;
            ts_model_tensor(m, t, &ti);
            if (ti.role != TS_TENSOR_PARAM) continue;
            char what[128];
            snprintf(what, sizeof what, "second backward %s", ti.name);
            test_allclose(what, ti.grad, ana + o, (size_t)ti.numel, 1e-5, 1e-7);
            o += ti.numel;
        }
    }
    free(ana);
    free(x);
    free(logits);
    free(dl);
    ts_model_free(m);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
}

static void test_gradcheck_ref(void) { gradcheck(TS_BACKEND_REF); }
static void test_gradcheck_dnnl(void) { gradcheck(TS_BACKEND_DNNL); }

/* The two backends give the same gradients on the same model and batch. */
/* One training forward (dropout seed 3) and backward of x (n samples, labels y) on
 * the ctx's current backend and precision; copies the logits (n, classes) and every
 * parameter gradient (one block starting at the first tensor) into grads. */
static void train_pass(ts_model *m, const float *x, int n, const int32_t *y, float *logits, float *grads) {
    const int k = ts_model_classes(m);
    float *dl = test_falloc((size_t)n * k);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_softmax_cross_entropy(n, k, logits, y, 0.0f, dl);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_tensor_info first;
    ts_model_tensor(m, 0, &first);
    if (first.grad) memcpy(grads, first.grad, (size_t)ts_model_param_count(m) * sizeof(float));
    free(dl);
}

/* train_pass on the reference kernels, then on oneDNN: logits and gradients agree. */
static void train_backends_agree(ts_model *m, const float *x, int n, const int32_t *y, const char *what) {
    const size_t np = (size_t)ts_model_param_count(m), nl = (size_t)n * ts_model_classes(m);
    float *l_ref = test_falloc(nl), *g_ref = test_falloc(np), *l = test_falloc(nl), *g = test_falloc(np);
    char w[96];
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    train_pass(m, x, n, y, l_ref, g_ref);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    train_pass(m, x, n, y, l, g);
    snprintf(w, sizeof w, "%strain logits dnnl vs ref", what);
    test_allclose(w, l, l_ref, nl, 1e-4, 1e-5);
    snprintf(w, sizeof w, "%sgradients dnnl vs ref", what);
    test_allclose(w, g, g_ref, np, 1e-3, 1e-5);
    free(l_ref), free(g_ref), free(l), free(g);
}

/* A oneDNN training pass, then the same forward and a backward after the backend was
 * set to the reference: the backward runs on its forward's kernels, so it gives the
 * oneDNN pass's gradients (within rtol and atol), and the ctx stays on the reference. */
static void backward_after_backend_change(ts_model *m, const float *x, int n, const int32_t *y, double rtol,
                                          double atol, const char *what) {
    const int k = ts_model_classes(m);
    const size_t np = (size_t)ts_model_param_count(m);
    float *g = test_falloc(np), *logits = test_falloc((size_t)n * k), *dl = test_falloc((size_t)n * k);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    train_pass(m, x, n, y, logits, g);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_softmax_cross_entropy(n, k, logits, y, 0.0f, dl);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s: backward after a backend change: %s", what,
          ts_ctx_error(g_ctx));
    CHECK(ts_ctx_get_backend(g_ctx) == TS_BACKEND_REF, "%s: the backward left the ctx's backend changed", what);
    ts_tensor_info first;
    ts_model_tensor(m, 0, &first);
    test_allclose(what, first.grad, g, np, rtol, atol);
    free(g), free(logits), free(dl);
}

static void test_gradients_backends_agree(void) {
    ts_model *m = make_model(GRAD_ARCH, 5);
    if (!m) return;
    float *x = test_falloc(GRAD_N * 72);
    test_fill_uniform(x, GRAD_N * 72, 9, -1.0f, 1.0f);
    int32_t y[GRAD_N] = {2, 1, 0, 0, 1};
    train_backends_agree(m, x, GRAD_N, y, "");
    /* the max pool's backward reads oneDNN's workspace, not argmax indices (this crashed) */
    backward_after_backend_change(m, x, GRAD_N, y, 1e-6, 1e-7, "gradients, backend changed before backward");
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    free(x);
    ts_model_free(m);
}

/* Batch norm + ReLU fused in training (oneDNN backend, planes of 16 or more): the
 * gradients and the running statistics match the unfused reference path, with the
 * ReLU's output feeding two layers, a batch norm after an add, and a batch norm whose
 * ReLU is not its only consumer (not fused). */
static const char *BNRELU_ARCH =
    "input     shape=3x8x8 classes=4\n"
    "conv2d    name=c1 out=6 kernel=3 padding=1 bias=0\n"
    "batchnorm name=bn1\n"
    "relu      name=r1\n"
    "conv2d    name=c2 out=6 kernel=3 padding=1 bias=0\n"
    "batchnorm name=bn2\n"
    "add       name=res in=bn2,r1\n"
    "batchnorm name=bn3\n"
    "relu      name=r3\n"
    "conv2d    name=c4 in=r3 out=5 kernel=3 padding=1\n"
    "batchnorm name=bn4\n"
    "relu      name=r4\n"
    "add       name=res2 in=r4,bn4\n"
    "globalavgpool name=gap in=res2\n"
    "flatten   name=f\n"
    "dense     name=fc out=classes\n";

static void test_bn_relu_fusion(void) {
    ts_model *m = make_model(BNRELU_ARCH, 17);
    if (!m) return;
    const int n = 6;
    const size_t in_sz = 3 * 64;
    float *x = test_falloc(n * in_sz), *logits = test_falloc(n * 4);
    test_fill_uniform(x, n * in_sz, 19, -1.0f, 1.5f);
    int32_t y[6] = {0, 1, 2, 3, 1, 2};
    train_backends_agree(m, x, n, y, "bn+relu ");
    /* the backward follows its forward when the backend changes in between */
    backward_after_backend_change(m, x, n, y, 1e-3, 1e-5, "bn+relu gradients, backend changed before backward");
    /* running statistics: a fused step and a reference step from the same start */
    ts_model *a = make_model(BNRELU_ARCH, 17), *r = make_model(BNRELU_ARCH, 17);
    if (a && r) {
        ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
        CHECK(ts_model_forward_train(g_ctx, a, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
        CHECK(ts_model_forward_train(g_ctx, r, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
        const char *names[3] = {"bn1.running_var", "bn3.running_mean", "bn4.running_var"};
        for (int i = 0; i < 3; i++) {
            ts_tensor_info ta = test_tensor(a, names[i]), tr = test_tensor(r, names[i]);
            test_allclose(names[i], ta.data, tr.data, (size_t)ta.numel, 1e-5, 1e-6);
        }
    }
    ts_model_free(a);
    ts_model_free(r);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    free(x), free(logits);
    ts_model_free(m);
}

/* Training that keeps activations in nChw16c between the layers that can (oneDNN,
 * exec_blocked.c): which outputs are blocked (a max pool and the convs around it are,
 * and 24 channels padded to 32; a conv before an average pool and everything 1-D stay
 * NCHW), logits and
 * gradients against the reference kernels, running statistics, a backward after the
 * backend changed, the same bits twice, and inference passes left in NCHW. */
static void predict_on_both(ts_model *m, const float *x, int n, float *fast, float *ref);

static const char *BLOCKED_ARCH =
    "input     shape=3x8x8 classes=4\n"
    "conv2d    name=c1 out=16 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b1\n"
    "relu      name=r1\n"
    "conv2d    name=c2 out=16 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b2\n"
    "add       name=a1 in=b2,r1\n"
    "relu      name=r2\n"
    "conv2d    name=c3 out=32 kernel=3 stride=2 padding=1 bias=0\n"
    "batchnorm name=b3\n"
    "relu      name=r3\n"
    "conv2d    name=c4 out=32 kernel=1\n"
    "sigmoid   name=s4\n"
    "conv2d    name=c5 in=r2 out=32 kernel=1 stride=2\n"
    "add       name=a2 in=s4,c5\n"
    "globalavgpool name=g1\n"
    "conv2d    name=c6 in=r1 out=16 kernel=1\n"
    "maxpool   name=mp kernel=2\n"
    "conv2d    name=c7 out=16 kernel=1\n"
    "globalavgpool name=g2\n"
    "conv2d    name=c8 in=r3 out=24 kernel=1\n"
    "globalavgpool name=g3\n"
    "conv2d    name=c9 in=r1 out=16 kernel=1\n"
    "avgpool   name=ap kernel=2\n"
    "globalavgpool name=g4\n"
    "concat    name=cat in=g1,g2,g3,g4\n"
    "dense     name=fc out=classes\n";

static int sum_one_rank(float *buf, size_t n, void *user, char *err, size_t err_size) {
    (void)buf, (void)n, (void)user, (void)err, (void)err_size;
    return 0;
}

static void test_training_blocked(void) {
    ts_model *m = make_model(BLOCKED_ARCH, 23);
    if (!m) return;
    const int n = 5;
    const size_t in_sz = 3 * 64, np = (size_t)ts_model_param_count(m);
    float *x = test_falloc(n * in_sz), *logits = test_falloc(n * 4);
    float *g1 = test_falloc(np), *g2 = test_falloc(np), *l2 = test_falloc(n * 4);
    test_fill_uniform(x, n * in_sz, 29, -1.0f, 1.5f);
    int32_t y[5] = {0, 1, 2, 3, 1};
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
    /* layers 1-14, c6, mp, c7 (16-18) and c8 (20, 24 channels, padded) blocked; c9 (22,
     * read by an average pool), ap and the 1-D outputs not */
    CHECK(m->exec.blk_now != NULL, "no blocked plan");
    for (int l = 1; m->exec.blk_now && l < m->nlayers; l++) {
        const int want = l <= 14 || (l >= 16 && l <= 18) || l == 20;
        CHECK(m->exec.blk_now[l] == want, "layer %d (%s): blocked %d, want %d", l, m->layers[l].name,
              m->exec.blk_now[l], want);
    }
    train_backends_agree(m, x, n, y, "blocked ");
    /* the same bits twice */
    train_pass(m, x, n, y, logits, g1);
    train_pass(m, x, n, y, l2, g2);
    CHECK(!memcmp(g1, g2, np * sizeof *g1) && !memcmp(logits, l2, n * 4 * sizeof *l2), "blocked training not repeatable");
    /* the backward follows its forward's layouts when the backend changes in between */
    backward_after_backend_change(m, x, n, y, 1e-6, 1e-7, "blocked gradients, backend changed before backward");
    /* synchronized batch norm (data-parallel) sums its statistics in NCHW: no blocked
     * plan, the same gradients (one rank: the sum is the rank's own) */
    ts_comm one = {.rank = 0, .size = 1, .allreduce_sum = sum_one_rank};
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    m->sync_bn = &one;
    float *g_sync = test_falloc(np), *l_sync = test_falloc(n * 4);
    train_pass(m, x, n, y, l_sync, g_sync);
    CHECK(m->exec.blk_now == NULL, "blocked with synchronized batch norm");
    test_allclose("synchronized batch norm, one rank", g_sync, g1, np, 1e-4, 1e-6);
    m->sync_bn = NULL;
    train_pass(m, x, n, y, l_sync, g_sync);
    CHECK(m->exec.blk_now != NULL, "blocked plan not back without sync");
    CHECK(!memcmp(g_sync, g1, np * sizeof *g1), "blocked gradients differ after sync");
    free(g_sync), free(l_sync);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    /* the reference kernels train in NCHW; inference passes are never blocked */
    CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(m->exec.blk_now == NULL, "blocked on the reference kernels");
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    float *p_dnnl = test_falloc(n * 4), *p_ref = test_falloc(n * 4);
    predict_on_both(m, x, n, p_dnnl, p_ref);
    CHECK(m->exec.blk_now == NULL, "a predict pass left blocked");
    test_allclose("predict after blocked training", p_dnnl, p_ref, n * 4, 1e-4, 1e-5);
    /* running statistics: one oneDNN step and one reference step from the same start */
    ts_model *a = make_model(BLOCKED_ARCH, 23), *r = make_model(BLOCKED_ARCH, 23);
    if (a && r) {
        CHECK(ts_model_forward_train(g_ctx, a, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
        CHECK(ts_model_forward_train(g_ctx, r, x, n, logits, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
        const char *names[4] = {"b1.running_var", "b2.running_mean", "b3.running_var", "b3.running_mean"};
        for (int i = 0; i < 4; i++) {
            ts_tensor_info ta = test_tensor(a, names[i]), tr = test_tensor(r, names[i]);
            test_allclose(names[i], ta.data, tr.data, (size_t)ta.numel, 1e-5, 1e-6);
        }
    }
    ts_model_free(a);
    ts_model_free(r);
    free(x), free(logits), free(g1), free(g2), free(l2), free(p_dnnl), free(p_ref);
    ts_model_free(m);
}

/* Blocked training with channels that are not multiples of 16 (a pruned network's
 * widths): nChw16c pads them with zeros. Convolutions (one depthwise), batch norm with
 * and without its ReLU, an add, a leaky ReLU, a tanh, a max pool and global average
 * pools run padded; a sigmoid (which would not keep the zeros) and its input, and 7
 * channels, stay NCHW. Logits and gradients against the reference kernels, the same bits twice, a
 * backward after the backend changed, and inference after it. */
static const char *PADDED_ARCH =
    "input     shape=3x8x8 classes=4\n"
    "conv2d    name=c1 out=13 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b1\n"
    "relu      name=r1\n"
    "conv2d    name=c2 out=13 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b2\n"
    "add       name=a1 in=b2,r1\n"
    "leakyrelu name=r2 slope=0.1\n"
    "maxpool   name=mp kernel=2\n"
    "conv2d    name=c3 out=22 kernel=3 padding=1 bias=0\n"
    "batchnorm name=b3\n"
    "tanh      name=t3\n"
    "conv2d    name=c4 out=13 kernel=1\n"
    "sigmoid   name=s4\n"
    "globalavgpool name=g1\n"
    "conv2d    name=c5 in=r2 out=13 kernel=3 padding=1 groups=13\n"
    "globalavgpool name=g2\n"
    "globalavgpool name=g3 in=t3\n"
    "conv2d    name=c6 in=r2 out=7 kernel=1\n"
    "globalavgpool name=g4\n"
    "concat    name=cat in=g1,g2,g3,g4\n"
    "dense     name=fc out=classes\n";

static void test_training_blocked_padded(void) {
    ts_model *m = make_model(PADDED_ARCH, 31);
    if (!m) return;
    const int n = 6;
    const size_t in_sz = 3 * 64, np = (size_t)ts_model_param_count(m);
    float *x = test_falloc(n * in_sz), *l1 = test_falloc(n * 4), *l2 = test_falloc(n * 4), *l3 = test_falloc(n * 4);
    float *g1 = test_falloc(np), *g2 = test_falloc(np);
    test_fill_uniform(x, n * in_sz, 37, -1.0f, 1.5f);
    int32_t y[6] = {0, 1, 2, 3, 1, 2};
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    train_pass(m, x, n, y, l1, g1);
    /* c1 .. t3 (1-11) and c5 (15) blocked; c4 (read by the sigmoid), s4, c6 (7
     * channels: 16 would more than double them) and the 1-D outputs not */
    CHECK(m->exec.blk_now != NULL, "no blocked plan");
    for (int l = 1; m->exec.blk_now && l < m->nlayers; l++) {
        const int want = l <= 11 || l == 15;
        CHECK(m->exec.blk_now[l] == want, "layer %d (%s): blocked %d, want %d", l, m->layers[l].name,
              m->exec.blk_now[l], want);
    }
    train_backends_agree(m, x, n, y, "padded blocked ");
    train_pass(m, x, n, y, l2, g2);
    CHECK(!memcmp(g1, g2, np * sizeof *g1) && !memcmp(l1, l2, n * 4 * sizeof *l2), "padded training not repeatable");
    backward_after_backend_change(m, x, n, y, 1e-6, 1e-7, "padded gradients, backend changed before backward");
    /* an inference pass on the training plan's (padded) buffers, NCHW */
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    predict_on_both(m, x, n, l3, l2);
    test_allclose("predict after padded training", l3, l2, n * 4, 1e-4, 1e-5);
    free(x), free(l1), free(l2), free(l3), free(g1), free(g2);
    ts_model_free(m);
}

static void test_backward_needs_forward(void) {
    ts_model *m = make_model("input shape=4 classes=2\ndense name=fc out=2\n", 1);
    if (!m) return;
    float dl[2] = {0.5f, -0.5f}, x[4] = {1, 2, 3, 4}, logits[2];
    ts_ctx_clear_error(g_ctx);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_EINVAL, "backward before forward");
    CHECK(strlen(ts_ctx_error(g_ctx)) > 0, "no message");
    CHECK(ts_model_predict(g_ctx, m, x, 1, logits) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_EINVAL, "backward after predict");
    CHECK(ts_model_forward_train(g_ctx, m, x, 1, logits, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    /* dense: dW = dl^T x, db = dl */
    ts_tensor_info w = test_tensor(m, "fc.weight"), b = test_tensor(m, "fc.bias");
    for (int o = 0; o < 2; o++) {
        for (int i = 0; i < 4; i++) CHECK_NEAR(w.grad[o * 4 + i], dl[o] * x[i], 1e-6, 1e-7);
        CHECK_NEAR(b.grad[o], dl[o], 1e-6, 1e-7);
        double want = b.data[o];
        for (int i = 0; i < 4; i++) want += (double)w.data[o * 4 + i] * x[i];
        CHECK_NEAR(logits[o], want, 1e-5, 1e-6);
    }
    CHECK(ts_model_forward_train(g_ctx, m, x, 0, logits, 0) == TS_EINVAL, "n = 0");
    ts_model_free(m);
}

/* ------------------------------------------------------------------ dropout */

static void test_dropout(void) {
    /* the last layer is the dropout itself: logits are the mask times the input */
    ts_model *m = make_model("input shape=1000 classes=1000\ndropout name=d p=0.5\n", 1);
    if (!m) return;
    const int n = 2, k = 1000;
    float *x = test_falloc((size_t)n * k), *a = test_falloc((size_t)n * k), *b = test_falloc((size_t)n * k), *c = test_falloc((size_t)n * k);
    test_fill_uniform(x, (size_t)n * k, 1, 0.5f, 1.5f);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, a, 77) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_forward_train(g_ctx, m, x, n, b, 77) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_forward_train(g_ctx, m, x, n, c, 78) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(memcmp(a, b, (size_t)n * k * sizeof(float)) == 0, "same dropout seed, different output");
    int zeros = 0, kept_ok = 1, differ = 0;
    for (int i = 0; i < n * k; i++) {
        if (a[i] == 0.0f) zeros++;
        else if (a[i] != 2.0f * x[i]) kept_ok = 0;
        differ += (a[i] == 0.0f) != (c[i] == 0.0f);
    }
    CHECK(kept_ok, "kept elements are not scaled by 1/(1-p)");
    CHECK(zeros > 900 && zeros < 1100, "dropped %d of 2000 at p=0.5", zeros);
    CHECK(differ > 700, "seeds 77 and 78 give masks differing in only %d places", differ);
    /* backward applies the same mask */
    float *dl = test_falloc((size_t)n * k);
    for (int i = 0; i < n * k; i++) dl[i] = 1.0f;
    CHECK(ts_model_forward_train(g_ctx, m, x, n, a, 77) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    /* inference is the identity */
    CHECK(ts_model_predict(g_ctx, m, x, n, c) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(memcmp(c, x, (size_t)n * k * sizeof(float)) == 0, "dropout at inference is not the identity");
    ts_model_free(m);

    /* p = 0 in training is the identity: same model with and without the layer */
    const char *with = "input shape=1x6x6 classes=4\nconv2d name=c out=3 kernel=3\nflatten name=f\n"
                       "dropout name=d p=0\ndense name=fc out=classes\n";
    const char *without = "input shape=1x6x6 classes=4\nconv2d name=c out=3 kernel=3\nflatten name=f\n"
                          "dense name=fc out=classes\n";
    ts_model *m1 = make_model(with, 3), *m2 = make_model(without, 3);
    if (m1 && m2) {
        float xi[3 * 36], l1[12], l2[12], dli[12];
        test_fill_uniform(xi, 3 * 36, 4, -1, 1);
        CHECK(ts_model_forward_train(g_ctx, m1, xi, 3, l1, 99) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_forward_train(g_ctx, m2, xi, 3, l2, 99) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(memcmp(l1, l2, sizeof l1) == 0, "dropout p=0 changes the training forward");
        test_fill_uniform(dli, 12, 5, -1, 1);
        CHECK(ts_model_backward(g_ctx, m1, dli) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_backward(g_ctx, m2, dli) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_tensor_info g1 = test_tensor(m1, "c.weight"), g2 = test_tensor(m2, "c.weight");
        CHECK(g1.numel == g2.numel && memcmp(g1.grad, g2.grad, (size_t)g1.numel * sizeof(float)) == 0,
              "dropout p=0 changes gradients");
        /* p > 0: inference still equals the model without dropout */
        ts_model *m3 = make_model("input shape=1x6x6 classes=4\nconv2d name=c out=3 kernel=3\nflatten name=f\n"
                                  "dropout name=d p=0.6\ndense name=fc out=classes\n",
                                  3);
        if (m3) {
            CHECK(ts_model_predict(g_ctx, m3, xi, 3, l1) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(ts_model_predict(g_ctx, m2, xi, 3, l2) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(memcmp(l1, l2, sizeof l1) == 0, "dropout p=0.6 changes inference");
            CHECK(ts_model_forward_train(g_ctx, m3, xi, 3, l1, 99) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(memcmp(l1, l2, sizeof l1) != 0, "dropout p=0.6 does nothing in training");
            ts_model_free(m3);
        }
    }
    ts_model_free(m1);
    ts_model_free(m2);
    free(x), free(a), free(b), free(c), free(dl);
}

/* ------------------------------------------------------------------ predict */

static void check_predict_batches(ts_model *m, const char *what) {
    const int n = 300, k = ts_model_classes(m);
    ts_shape s = ts_model_input_shape(m);
    const size_t in_sz = (size_t)ts_shape_numel(&s);
    float *x = test_falloc((size_t)n * in_sz), *all = test_falloc((size_t)n * k), *one = test_falloc((size_t)n * k);
    float *seven = test_falloc((size_t)n * k);
    test_fill_uniform(x, (size_t)n * in_sz, 21, -1.0f, 1.0f);
    CHECK(ts_model_predict(g_ctx, m, x, n, all) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int i = 0; i < n; i++)
        CHECK(ts_model_predict(g_ctx, m, x + (size_t)i * in_sz, 1, one + (size_t)i * k) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
    for (int i = 0; i < n; i += 7) {
        int b = n - i < 7 ? n - i : 7;
        CHECK(ts_model_predict(g_ctx, m, x + (size_t)i * in_sz, b, seven + (size_t)i * k) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
    }
    char w[128];
    snprintf(w, sizeof w, "%s: predict 300 vs 1 at a time", what);
    test_allclose(w, all, one, (size_t)n * k, 1e-5, 1e-6);
    snprintf(w, sizeof w, "%s: predict 300 vs 7 at a time", what);
    test_allclose(w, all, seven, (size_t)n * k, 1e-5, 1e-6);
    /* rows past the first chunk of 256 are really computed */
    int nonzero = 0;
    for (size_t i = (size_t)256 * k; i < (size_t)n * k; i++) nonzero += all[i] != 0.0f;
    CHECK(nonzero > 0, "%s: rows 256.. are zero", what);
    /* n = 0 is a no-op */
    CHECK(ts_model_predict(g_ctx, m, x, 0, all) == TS_OK, "n=0");
    free(x), free(all), free(one), free(seven);
}

static void test_predict_batches(void) {
    /* no batch norm or dropout: the training forward is the inference forward */
    const char *plain = "input shape=2x8x8 classes=5\nconv2d name=c1 out=4 kernel=3 padding=1\nrelu name=r1\n"
                        "maxpool name=p1 kernel=2\nconv2d name=c2 out=6 kernel=3\ntanh name=t\n"
                        "avgpool name=p2 kernel=2\nflatten name=f\ndense name=fc out=classes\n";
    ts_model *m = make_model(plain, 8);
    if (m) {
        check_predict_batches(m, "plain");
        const int ns[3] = {1, 7, 300};
        for (int t = 0; t < 3; t++) {
            const int n = ns[t];
            float *x = test_falloc((size_t)n * 128), *a = test_falloc((size_t)n * 5), *b = test_falloc((size_t)n * 5);
            test_fill_uniform(x, (size_t)n * 128, 30 + t, -1, 1);
            CHECK(ts_model_predict(g_ctx, m, x, n, a) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(ts_model_forward_train(g_ctx, m, x, n, b, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
            char w[64];
            snprintf(w, sizeof w, "predict vs train forward, n=%d", n);
            test_allclose(w, a, b, (size_t)n * 5, 1e-5, 1e-6);
            free(x), free(a), free(b);
        }
        ts_model_free(m);
    }
    /* batch norm with trained running statistics and dropout */
    const char *bn = "input shape=1x8x8 classes=4\nconv2d name=c1 out=4 kernel=3 padding=1 bias=0\nbatchnorm name=bn1\n"
                     "relu name=r1\nmaxpool name=p1 kernel=2\nflatten name=f\ndropout name=d p=0.3\n"
                     "dense name=fc1 out=10\nbatchnorm name=bn2\nrelu name=r2\ndense name=fc2 out=classes\n";
    m = make_model(bn, 9);
    if (m) {
        warm_running_stats(m, 16, 40);
        ts_tensor_info rv = test_tensor(m, "bn1.running_var");
        CHECK(rv.data && rv.data[0] != 1.0f, "running stats did not move");
        check_predict_batches(m, "batchnorm");
        ts_model_free(m);
    }
    CHECK(ts_ctx_set_backend(g_ctx, TS_BACKEND_REF) == TS_OK, "ref");
    m = make_model(bn, 9);
    if (m) {
        warm_running_stats(m, 16, 40);
        check_predict_batches(m, "batchnorm ref");
        ts_model_free(m);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
}

/* ----------------------------------------------------- backend agreement */

static void backends_agree(const char *name, const ts_shape *in, int n) {
    ts_model *m = make_zoo(name, in, 10, 11);
    if (!m) return;
    const size_t in_sz = (size_t)ts_shape_numel(in);
    float *x = test_falloc((size_t)n * in_sz), *ref = test_falloc((size_t)n * 10), *fast = test_falloc((size_t)n * 10);
    test_fill_uniform(x, (size_t)n * in_sz, 50, -2.0f, 2.0f);
    char w[96];
    /* training forward (batch statistics) */
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, ref, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, fast, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    snprintf(w, sizeof w, "%s train forward dnnl vs ref", name);
    test_allclose(w, fast, ref, (size_t)n * 10, 1e-4, 1e-5);
    /* inference (running statistics, now moved by the two passes) */
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_model_predict(g_ctx, m, x, n, ref) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    CHECK(ts_model_predict(g_ctx, m, x, n, fast) == TS_OK, "%s", ts_ctx_error(g_ctx));
    snprintf(w, sizeof w, "%s predict dnnl vs ref", name);
    test_allclose(w, fast, ref, (size_t)n * 10, 1e-4, 1e-5);
    double mx = 0;
    for (int i = 0; i < n * 10; i++) mx = fmax(mx, fabs(ref[i]));
    CHECK(mx > 1e-3, "%s logits all near zero", name);
    free(x), free(ref), free(fast);
    ts_model_free(m);
}

static void test_backends_agree_zoo(void) {
    ts_shape cifar = {3, {3, 32, 32}}, mnist = {3, {1, 28, 28}};
    backends_agree("resnet20", &cifar, 3);
    backends_agree("demo", &mnist, 5);
}

/* bf16 inference (ts_ctx_set_bf16): the fused convolutions take bfloat16 inputs and
 * weights. Logits stay within bfloat16's rounding of the fp32 ones (8 bits of
 * mantissa, accumulated in fp32), and the mode is off again once cleared. */
static void test_bf16_inference(void) {
    ts_shape cifar = {3, {3, 32, 32}};
    ts_model *m = make_zoo("resnet20", &cifar, 10, 21);
    if (!m) return;
    const int n = 4;
    const size_t in_sz = 3 * 32 * 32;
    float *x = test_falloc(n * in_sz), *f32 = test_falloc(n * 10), *bf = test_falloc(n * 10), *again = test_falloc(n * 10);
    test_fill_uniform(x, n * in_sz, 60, -2.0f, 2.0f);
    CHECK(ts_model_forward_train(g_ctx, m, x, n, f32, 1) == TS_OK, "%s", ts_ctx_error(g_ctx)); /* move BN statistics */
    CHECK(ts_model_predict(g_ctx, m, x, n, f32) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_ctx_set_bf16(g_ctx, 1) == TS_OK && ts_ctx_get_bf16(g_ctx) == 1, "bf16 on");
    CHECK(ts_model_predict(g_ctx, m, x, n, bf) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_bf16(g_ctx, 0);
    CHECK(ts_model_predict(g_ctx, m, x, n, again) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(again, f32, n * 10 * sizeof(float)), "fp32 again after bf16 is cleared");
    double mx = 0, diff = 0;
    for (int i = 0; i < n * 10; i++) {
        mx = fmax(mx, fabs(f32[i]));
        diff = fmax(diff, fabs(bf[i] - f32[i]));
    }
    CHECK(mx > 1e-3, "logits all near zero");
    CHECK(diff <= 0.03 * mx + 1e-3, "bf16 logits differ by %g (largest logit %g)", diff, mx);
    if (diff == 0) printf("note: bf16 gave the fp32 logits exactly (no bf16 convolution on this CPU?)\n");
    free(x), free(f32), free(bf), free(again);
    ts_model_free(m);
}

/* bf16 mixed-precision training (ts_ctx_set_bf16 on a training pass): logits and
 * gradients stay close to fp32, the same inputs give the same bits twice, and a few
 * SGD steps on one batch lower the loss. "Close" for gradients is a cosine similarity
 * of the whole gradient above 0.9: rounding to bf16 compounds backwards through the
 * batch norms (about 0.96 here; PyTorch 1.13's CPU autocast gives 0.945 on the same
 * network with random data and labels). */
static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void test_bf16_training(void) {
    ts_shape cifar = {3, {3, 32, 32}};
    ts_model *m = make_zoo("resnet20", &cifar, 10, 23);
    if (!m) return;
    const int n = 8;
    const size_t in_sz = 3 * 32 * 32, np = (size_t)ts_model_param_count(m);
    float *x = test_falloc(n * in_sz), *l32 = test_falloc(n * 10), *l16 = test_falloc(n * 10), *dl = test_falloc(n * 10);
    float *g32 = test_falloc(np), *g16 = test_falloc(np), *again = test_falloc(np);
    test_fill_uniform(x, n * in_sz, 70, -2.0f, 2.0f);
    int32_t y[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    train_pass(m, x, n, y, l32, g32);
    ts_ctx_set_bf16(g_ctx, 1);
    train_pass(m, x, n, y, l16, g16);
    train_pass(m, x, n, y, l16, again);
    CHECK(!memcmp(g16, again, np * sizeof(float)), "bf16 gradients differ between two identical passes");
    double mx = 0, diff = 0;
    for (int i = 0; i < n * 10; i++) mx = fmax(mx, fabs(l32[i])), diff = fmax(diff, fabs(l16[i] - l32[i]));
    CHECK(diff <= 0.03 * mx + 1e-3, "bf16 training logits differ by %g (largest %g)", diff, mx);
    double cs = cosine(g32, g16, np);
    CHECK(cs > 0.9, "bf16 gradient cosine similarity to fp32 %.5f", cs);
    int same = !memcmp(g32, g16, np * sizeof(float));
    CHECK(!same, "bf16 gave the fp32 gradients exactly (no bf16 convolution ran?)");
    /* a few steps on this batch lower its loss */
    ts_optim_config oc;
    ts_optim_config_default(&oc, TS_OPT_SGD);
    oc.momentum = 0.9f;
    ts_optimizer *opt = NULL;
    CHECK(ts_optimizer_create(g_ctx, m, &oc, &opt) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float first_loss = 0, loss = 0;
    for (int step = 0; step < 6 && opt; step++) {
        CHECK(ts_model_forward_train(g_ctx, m, x, n, l16, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
        loss = ts_softmax_cross_entropy(n, 10, l16, y, 0.0f, dl);
        if (step == 0) first_loss = loss;
        CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_optimizer_step(g_ctx, opt, 0.05f) == TS_OK, "%s", ts_ctx_error(g_ctx));
    }
    CHECK(loss < first_loss, "bf16 training: loss %g after 6 steps, %g before", loss, first_loss);
    ts_optimizer_free(opt);
    ts_ctx_set_bf16(g_ctx, 0);
    free(x), free(l32), free(l16), free(dl), free(g32), free(g16), free(again);
    ts_model_free(m);
}

/* Packed inference weights (batch norm folded, oneDNN layout, built once per batch
 * size and thread count) follow every change to the model: a write through a
 * pointer kept from before (with ts_model_params_changed), a write through a fresh
 * ts_model_tensor, an optimizer step, training-mode batch norm statistics, a new
 * thread count, and a ctx other than the one that packed them. The reference
 * backend (no packing) is the oracle each time. */
static void predict_vs_ref(ts_model *m, const float *x, int n, float *out, const char *what) {
    float *ref = test_falloc((size_t)n * 10);
    CHECK(ts_model_predict(g_ctx, m, x, n, out) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_model_predict(g_ctx, m, x, n, ref) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    test_allclose(what, out, ref, (size_t)n * 10, 1e-4, 1e-5);
    free(ref);
}

static int differs(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > 1e-3f * (1.0f + fabsf(a[i]))) return 1;
    return 0;
}

static void test_packed_weights_follow_changes(void) {
    ts_shape cifar = {3, {3, 32, 32}};
    ts_model *m = make_zoo("resnet20", &cifar, 10, 31);
    if (!m) return;
    const int n = 3;
    const size_t in_sz = 3 * 32 * 32;
    float *x = test_falloc(n * in_sz), *a = test_falloc(n * 10), *b = test_falloc(n * 10);
    test_fill_uniform(x, n * in_sz, 61, -2.0f, 2.0f);
    warm_running_stats(m, 4, 62);
    ts_tensor_info w = test_tensor(m, "layer1.0.conv1.weight"), g = test_tensor(m, "layer2.0.bn1.weight");
    predict_vs_ref(m, x, n, a, "packed");
    predict_vs_ref(m, x, 1, b, "packed, batch 1");

    /* a pointer kept from before the inference, then ts_model_params_changed */
    for (int64_t i = 0; i < w.numel; i++) w.data[i] *= -1.5f;
    ts_model_params_changed(m);
    predict_vs_ref(m, x, n, b, "after a write and ts_model_params_changed");
    CHECK(differs(a, b, n * 10), "the write changed nothing");

    /* a write through a fresh ts_model_tensor */
    memcpy(a, b, n * 10 * sizeof(float));
    ts_tensor_info g2 = test_tensor(m, "layer2.0.bn1.weight");
    CHECK(g2.data == g.data, "same storage");
    for (int64_t i = 0; i < g2.numel; i++) g2.data[i] = 0.25f + 0.01f * (float)i;
    predict_vs_ref(m, x, n, b, "after a write through ts_model_tensor");
    CHECK(differs(a, b, n * 10), "the batch-norm write changed nothing");

    /* training-mode statistics and an optimizer step */
    memcpy(a, b, n * 10 * sizeof(float));
    ts_optim_config oc;
    ts_optim_config_default(&oc, TS_OPT_SGD);
    oc.momentum = 0.9f;
    ts_optimizer *opt = NULL;
    CHECK(ts_optimizer_create(g_ctx, m, &oc, &opt) == TS_OK, "%s", ts_ctx_error(g_ctx));
    int32_t y[3] = {1, 4, 7};
    float dl[30];
    CHECK(ts_model_forward_train(g_ctx, m, x, n, b, 5) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_softmax_cross_entropy(n, 10, b, y, 0, dl);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_optimizer_step(g_ctx, opt, 0.5f) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_optimizer_free(opt);
    predict_vs_ref(m, x, n, b, "after a training step");
    CHECK(differs(a, b, n * 10), "the training step changed nothing");

    /* another thread count, then another ctx (freed before this one runs again) */
    int threads = ts_ctx_get_threads(g_ctx);
    ts_ctx_set_threads(g_ctx, 1);
    predict_vs_ref(m, x, n, a, "1 thread");
    ts_ctx_set_threads(g_ctx, threads);
    ts_ctx *other = NULL;
    CHECK(ts_ctx_create(&other) == TS_OK, "second ctx");
    if (other) {
        CHECK(ts_model_predict(other, m, x, n, a) == TS_OK, "%s", ts_ctx_error(other));
        ts_ctx_free(other);
    }
    predict_vs_ref(m, x, n, a, "after another ctx was used and freed");
    free(x), free(a), free(b);
    ts_model_free(m);
}

/* ------------------------------------------------------------ determinism */

static void test_seed_determinism(void) {
    ts_shape cifar = {3, {3, 32, 32}};
    ts_model *a = make_zoo("resnet20", &cifar, 10, 123), *b = make_zoo("resnet20", &cifar, 10, 123);
    ts_model *c = make_zoo("resnet20", &cifar, 10, 124);
    if (!a || !b || !c) goto done;
    CHECK(ts_model_tensor_count(a) == ts_model_tensor_count(c), "tensor counts");
    int conv_tensors = 0;
    for (int t = 0; t < ts_model_tensor_count(a); t++) {
        ts_tensor_info ta, tb, tc;
        ts_model_tensor(a, t, &ta);
        ts_model_tensor(b, t, &tb);
        ts_model_tensor(c, t, &tc);
        CHECK(memcmp(ta.data, tb.data, (size_t)ta.numel * sizeof(float)) == 0, "same seed: %s differs", ta.name);
        if (strstr(ta.name, "conv") && strstr(ta.name, ".weight")) {
            conv_tensors++;
            int64_t same = 0;
            for (int64_t i = 0; i < ta.numel; i++) same += ta.data[i] == tc.data[i];
            CHECK(same * 100 < ta.numel, "different seed: %s has %lld of %lld equal", ta.name, (long long)same,
                  (long long)ta.numel);
        }
    }
    CHECK(conv_tensors >= 19, "conv weights %d", conv_tensors);
    /* forward outputs are bit-identical too, for the same thread count */
    {
        float x[2 * 3072], la[20], lb[20];
        test_fill_uniform(x, 2 * 3072, 8, -1, 1);
        CHECK(ts_model_forward_train(g_ctx, a, x, 2, la, 5) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_forward_train(g_ctx, b, x, 2, lb, 5) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(memcmp(la, lb, sizeof la) == 0, "same model, same batch: different logits");
    }
done:
    ts_model_free(a);
    ts_model_free(b);
    ts_model_free(c);
}

/* ---------------------------------------------- batch-norm running stats */

static void test_batchnorm_running_stats(void) {
    /* 2 channels of 2x2, batch 3: per channel 12 values */
    ts_model *m = make_model("input shape=2x2x2 classes=8\nbatchnorm name=bn\nflatten name=f\n", 1);
    ts_model *m5 = make_model("input shape=2x2x2 classes=8\nbatchnorm name=bn momentum=0.5 eps=0.01\nflatten name=f\n",
                              1);
    if (!m || !m5) goto done;
    const int n = 3;
    float x[2][24], out[24];
    test_fill_uniform(x[0], 24, 61, -2.0f, 3.0f);
    test_fill_uniform(x[1], 24, 62, 0.0f, 5.0f);
    for (int which = 0; which < 2; which++) {
        ts_model *mm = which ? m5 : m;
        const double mom = which ? 0.5 : 0.1, eps = which ? 0.01 : 1e-5;
        ts_tensor_info g = test_tensor(mm, "bn.weight"), b = test_tensor(mm, "bn.bias");
        ts_tensor_info rm = test_tensor(mm, "bn.running_mean"), rv = test_tensor(mm, "bn.running_var");
        g.data[0] = 1.5f, g.data[1] = -0.5f;
        b.data[0] = 0.25f, b.data[1] = 2.0f;
        double want_rm[2] = {0, 0}, want_rv[2] = {1, 1};
        for (int step = 0; step < 2; step++) {
            CHECK(ts_model_forward_train(g_ctx, mm, x[step], n, out, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
            for (int c = 0; c < 2; c++) {
                double sum = 0, sq = 0;
                for (int i = 0; i < n; i++)
                    for (int p = 0; p < 4; p++) sum += x[step][(i * 2 + c) * 4 + p];
                double mean = sum / 12;
                for (int i = 0; i < n; i++)
                    for (int p = 0; p < 4; p++) {
                        double d = x[step][(i * 2 + c) * 4 + p] - mean;
                        sq += d * d;
                    }
                double var_b = sq / 12, var_u = sq / 11;
                want_rm[c] = (1 - mom) * want_rm[c] + mom * mean;
                want_rv[c] = (1 - mom) * want_rv[c] + mom * var_u;
                CHECK_NEAR(rm.data[c], want_rm[c], 1e-5, 1e-6);
                CHECK_NEAR(rv.data[c], want_rv[c], 1e-5, 1e-6);
                for (int i = 0; i < n; i++)
                    for (int p = 0; p < 4; p++) {
                        int j = (i * 2 + c) * 4 + p;
                        double y = (x[step][j] - mean) / sqrt(var_b + eps) * g.data[c] + b.data[c];
                        CHECK_NEAR(out[j], y, 1e-4, 1e-5);
                    }
            }
        }
        /* inference uses the running statistics */
        CHECK(ts_model_predict(g_ctx, mm, x[0], n, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 2; c++)
                for (int p = 0; p < 4; p++) {
                    int j = (i * 2 + c) * 4 + p;
                    double y = (x[0][j] - rm.data[c]) / sqrt(rv.data[c] + eps) * g.data[c] + b.data[c];
                    CHECK_NEAR(out[j], y, 1e-4, 1e-5);
                }
    }
    /* 1-d batch norm over features, batch 4 */
    {
        ts_model *m1 = make_model("input shape=3 classes=3\nbatchnorm name=bn\n", 1);
        if (m1) {
            float xv[12], o[12];
            test_fill_uniform(xv, 12, 70, -1, 1);
            CHECK(ts_model_forward_train(g_ctx, m1, xv, 4, o, 0) == TS_OK, "%s", ts_ctx_error(g_ctx));
            ts_tensor_info rm = test_tensor(m1, "bn.running_mean"), rv = test_tensor(m1, "bn.running_var");
            for (int f = 0; f < 3; f++) {
                double s = 0, q = 0;
                for (int i = 0; i < 4; i++) s += xv[i * 3 + f];
                double mean = s / 4;
                for (int i = 0; i < 4; i++) q += (xv[i * 3 + f] - mean) * (xv[i * 3 + f] - mean);
                CHECK_NEAR(rm.data[f], 0.1 * mean, 1e-5, 1e-6);
                CHECK_NEAR(rv.data[f], 0.9 + 0.1 * q / 3, 1e-5, 1e-6);
                for (int i = 0; i < 4; i++)
                    CHECK_NEAR(o[i * 3 + f], (xv[i * 3 + f] - mean) / sqrt(q / 4 + 1e-5), 1e-4, 1e-5);
            }
            ts_model_free(m1);
        }
    }
done:
    ts_model_free(m);
    ts_model_free(m5);
}

/* Buffers survive growing and shrinking the batch between calls. */
static void test_replanning(void) {
    ts_model *m = make_model(GRAD_ARCH, 4);
    if (!m) return;
    const int ns[] = {2, 9, 1, 9, 300, 3};
    float *x = test_falloc(300 * 72), *l1 = test_falloc(300 * 3), *l2 = test_falloc(300 * 3), *dl = test_falloc(300 * 3);
    test_fill_uniform(x, 300 * 72, 2, -1, 1);
    int32_t *y = calloc(300, sizeof *y);
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int n = ns[t];
        CHECK(ts_model_forward_train(g_ctx, m, x, n, l1, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_softmax_cross_entropy(n, 3, l1, y, 0, dl);
        CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_model_predict(g_ctx, m, x, n, l2) == TS_OK, "%s", ts_ctx_error(g_ctx));
        for (int i = 0; i < n * 3; i++) CHECK(isfinite(l1[i]) && isfinite(l2[i]), "n=%d non-finite", n);
    }
    free(x), free(l1), free(l2), free(dl), free(y);
    ts_model_free(m);
}

/* ------------------------------------------------------ the capture API */

typedef struct captured {
    int layers[8], nl;
    float *out[8];        /* (samples, numel of layer) */
    int64_t numel[8];
    int64_t next[8];      /* samples seen so far, per layer: groups come in order */
    int calls, stop_after;
} captured;

static int on_capture(void *user, int layer, int64_t first, int n, const float *out) {
    captured *c = user;
    int k = 0;
    while (k < c->nl && c->layers[k] != layer) k++;
    CHECK(k < c->nl, "capture of layer %d, not requested", layer);
    if (k == c->nl) return 1;
    CHECK(first == c->next[k], "layer %d: group at %lld, expected %lld", layer, (long long)first, (long long)c->next[k]);
    memcpy(c->out[k] + (size_t)first * (size_t)c->numel[k], out, (size_t)n * (size_t)c->numel[k] * sizeof(float));
    c->next[k] = first + n;
    return ++c->calls == c->stop_after;
}

/* Inference of n samples x that captures layer `layer` (numel values per sample) into out. */
static void capture_one(ts_model *m, const float *x, int n, int layer, int64_t numel, float *out) {
    CHECK(numel == ts_shape_numel(&m->layers[layer].out), "layer %d holds %lld values per sample, not %lld", layer,
          (long long)ts_shape_numel(&m->layers[layer].out), (long long)numel);
    captured c;
    memset(&c, 0, sizeof c);
    c.nl = 1;
    c.layers[0] = layer;
    c.numel[0] = numel;
    c.out[0] = out;
    ts_capture cap = {c.layers, c.nl, on_capture, &c};
    float *logits = test_falloc((size_t)n * (size_t)ts_model_classes(m));
    CHECK(ts_model_predict_capture(g_ctx, m, x, n, logits, &cap) == TS_OK, "%s", ts_ctx_error(g_ctx));
    free(logits);
}

/* Inference of n samples x on the reference kernels into ref, then on oneDNN (fused)
 * into fast; the backend is left at oneDNN, so the plan's fields show the fused pass. */
static void predict_on_both(ts_model *m, const float *x, int n, float *fast, float *ref) {
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_model_predict(g_ctx, m, x, n, ref) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    CHECK(ts_model_predict(g_ctx, m, x, n, fast) == TS_OK, "%s", ts_ctx_error(g_ctx));
}

/* ts_model_predict's plan lets outputs that are never live at the same time share
 * memory (one arena); a capture plans every output its own buffer. On both backends
 * (fused and not) the two give the same logits bit for bit, the arena is smaller than
 * the outputs it holds, and a predict after the capture keeps the capture's plan. */
static void arena_agrees(ts_model *m, const float *x, int n, const char *what) {
    const int k = ts_model_classes(m), last = ts_model_layer_count(m) - 1;
    float *a = test_falloc((size_t)n * (size_t)k), *b = test_falloc((size_t)n * (size_t)k),
          *c = test_falloc((size_t)n * (size_t)k);
    for (int be = 0; be < 2; be++) {
        ts_ctx_set_backend(g_ctx, be ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        exec_release(&m->exec); /* a fresh plan */
        CHECK(ts_model_predict(g_ctx, m, x, n, a) == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
        size_t outputs = 0;
        for (int l = 1; l <= last; l++)
            if (!m->exec.ls[l].alias)
                outputs += (size_t)m->exec.capacity * (size_t)ts_shape_numel(&m->layers[l].out) * sizeof(float);
        CHECK(m->exec.infer_arena_bytes > 0 && m->exec.infer_arena_bytes < outputs, "%s: arena %zu of %zu bytes",
              what, m->exec.infer_arena_bytes, outputs);
        capture_one(m, x, n, last, k, b);
        CHECK(m->exec.infer_arena_bytes == 0, "%s: a capture plans without the arena", what);
        CHECK(ts_model_predict(g_ctx, m, x, n, c) == TS_OK && m->exec.infer_arena_bytes == 0,
              "%s: predict keeps the capture's plan", what);
        CHECK(!memcmp(a, b, (size_t)n * (size_t)k * sizeof(float)) && !memcmp(a, c, (size_t)n * (size_t)k * sizeof(float)),
              "%s, %s backend: the arena's logits differ", what, be ? "reference" : "oneDNN");
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    free(a), free(b), free(c);
}

/* The arena on the zoo's convolutional networks: residual additions fused into their
 * convolutions (ResNets), plain stacks, depthwise-separable blocks. */
static void test_inference_arena(void) {
    static const struct {
        const char *name;
        ts_shape in;
    } nets[] = {{"resnet20", {3, {3, 32, 32}}}, {"resnet8", {3, {3, 32, 32}}}, {"demo", {3, {1, 28, 28}}},
                {"ds-cnn", {3, {1, 49, 10}}}, {"allcnn-c", {3, {3, 32, 32}}}};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        ts_model *m = make_zoo(nets[i].name, &nets[i].in, 10, 13);
        if (!m) continue;
        warm_running_stats(m, 4, 5);
        const int n = 3;
        const size_t in = (size_t)ts_shape_numel(&nets[i].in);
        float *x = test_falloc((size_t)n * in);
        test_fill_uniform(x, (size_t)n * in, 31, -2.0f, 2.0f);
        arena_agrees(m, x, n, nets[i].name);
        free(x);
        ts_model_free(m);
    }
}

/* Inference fusion of the activations imported networks use (ReLU6 as clip, SiLU as
 * sigmoid then mul, Hardswish as hardsigmoid then mul or as one layer) and the
 * channels-last tensors between convolutions, additions, element-wise layers, a
 * squeeze-excitation product and global average pooling: the oneDNN path matches
 * the reference kernels, and a captured channels-last layer reads as NCHW all the same. */
static void test_activation_fusion(void) {
    static const char *arch = "input shape=3x12x12\n"
                              "conv2d name=c1 out=16 kernel=3 padding=1\n"
                              "clip name=r6 min=0 max=6\n"
                              "conv2d name=dw out=16 kernel=3 padding=1 groups=16\n"
                              "sigmoid name=g\n"
                              "binary name=sw in=dw,g op=mul\n"
                              "conv2d name=c2 out=16 kernel=1\n"
                              "hardsigmoid name=hs alpha=0.16666667 beta=0.5\n"
                              "binary name=hsw in=hs,c2 op=mul\n"
                              "conv2d name=c3 out=16 kernel=1 in=hsw\n"
                              "conv2d name=c4 out=16 kernel=1 in=hsw\n"
                              "add name=a in=c3,c4\n"
                              "hardswish name=h\n"
                              "globalavgpool name=gq\n"
                              "reshape name=gs shape=16x1x1\n"
                              "binary name=se in=h,gs op=mul\n"
                              "conv2d name=c5 out=8 kernel=1\n"
                              "batchnorm name=bn\n"
                              "sigmoid name=g2\n"
                              "binary name=sw2 in=bn,g2 op=mul\n"
                              "globalavgpool name=gp\n"
                              "dense name=fc out=5\n";
    ts_model *m = make_model(arch, 8);
    if (!m) return;
    warm_running_stats(m, 8, 3);
    const int n = 7, in = 3 * 12 * 12;
    float *x = test_falloc((size_t)n * in), *y[2];
    test_fill_uniform(x, (size_t)n * in, 21, -2.0f, 2.0f);
    const int r6 = 2, plane = 16 * 12 * 12;
    float *cap_out[2];
    for (int b = 0; b < 2; b++) {
        y[b] = test_falloc((size_t)n * 5);
        cap_out[b] = test_falloc((size_t)n * plane);
        ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        CHECK(ts_model_predict(g_ctx, m, x, n, y[b]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        capture_one(m, x, n, r6, plane, cap_out[b]);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    test_allclose("fused activations: oneDNN vs reference", y[0], y[1], (size_t)n * 5, 1e-4, 1e-5);
    arena_agrees(m, x, n, "fused activations");
    test_allclose("channels-last layer captured", cap_out[0], cap_out[1], (size_t)n * plane, 1e-4, 1e-5);
    /* the plan: every convolution a head, with the activation it absorbed */
    const exec_state *e = &m->exec;
    CHECK(e->fuse_act, "fusion planned");
    if (e->fuse_act) {
        static const struct {
            int conv, last;
            conv_act_kind act;
        } want[] = {{1, 2, CONV_ACT_CLAMP}, {3, 5, CONV_ACT_SWISH}, {6, 8, CONV_ACT_HARDSWISH}, {9, 9, CONV_ACT_NONE},
                    {10, 12, CONV_ACT_HARDSWISH}, {16, 19, CONV_ACT_SWISH}};
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
            CHECK(e->fuse_last[want[i].conv] == want[i].last && e->fuse_act[want[i].conv].kind == want[i].act,
                  "conv %d: fused to %d with act %d", want[i].conv, e->fuse_last[want[i].conv],
                  (int)e->fuse_act[want[i].conv].kind);
        /* channels-last from the first convolution to the last pooling: the heads'
         * outputs (c4's takes in the addition of c3 and the hardswish), the
         * squeeze-excitation product */
        CHECK(e->fuse_act[10].residual && e->fuse_res[10] == 9 && !e->fuse_act[9].residual, "c4 adds c3: %d %d",
              e->fuse_act[10].residual, e->fuse_res[10]);
        static const int cl[] = {0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0};
        for (int l = 0; l < (int)(sizeof cl / sizeof cl[0]); l++)
            CHECK(e->cl[l] == cl[l], "layer %d: channels-last %d, want %d", l, e->cl[l], cl[l]);
    }
    /* the profile: time on the heads and the unfused layers, none on what a head absorbed */
    double sec[22] = {0};
    float logits[7 * 5];
    CHECK(ts_model_layer_count(m) == 22, "%d layers", ts_model_layer_count(m));
    CHECK(ts_model_predict_profile(g_ctx, m, x, n, logits, sec) == TS_OK, "%s", ts_ctx_error(g_ctx));
    test_allclose("profiled logits", logits, y[0], (size_t)n * 5, 0.0, 0.0);
    static const int into[][2] = {{1, 1}, {2, 1}, {4, 3}, {5, 3}, {7, 6}, {8, 6}, {11, 10}, {12, 10}, {17, 16}, {19, 16}, {20, 20}};
    for (size_t i = 0; i < sizeof into / sizeof into[0]; i++) {
        const int l = into[i][0], h = into[i][1];
        CHECK(ts_model_layer_fused_into(m, l) == h, "layer %d fused into %d, want %d", l, ts_model_layer_fused_into(m, l), h);
        CHECK(l == h ? sec[l] > 0.0 : sec[l] == 0.0, "layer %d: %g s", l, sec[l]);
    }
    CHECK(ts_model_layer_fused_into(m, 22) == -1 && ts_model_predict_profile(g_ctx, m, x, n, logits, NULL) == TS_EINVAL,
          "bad arguments");
    for (int b = 0; b < 2; b++) {
        free(y[b]);
        free(cap_out[b]);
    }
    free(x);
    ts_model_free(m);
}

/* Channels-last through pooling (max, average, one that the reference does because
 * oneDNN differs there: ceil mode), concatenation along channels and along height,
 * and a batch norm and ReLU (one pass) between a concatenation and a convolution
 * (DenseNet's order): the
 * fused oneDNN path matches the reference kernels, with each of them channels-last. */
static void test_channels_last_layers(void) {
    static const char *arch = "input shape=3x13x13\n"
                              "conv2d name=c1 out=8 kernel=3 padding=1\n"
                              "relu name=r1\n"
                              "maxpool name=mp kernel=3 stride=2 padding=1\n"
                              "conv2d name=c2 out=6 kernel=1\n"
                              "conv2d name=c3 out=5 kernel=3 padding=1 in=mp\n"
                              "concat name=cat in=c2,c3\n"
                              "batchnorm name=bn\n"
                              "relu name=r2\n"
                              "conv2d name=c4 out=8 kernel=1\n"
                              "avgpool name=ap kernel=2 stride=2 ceil=1\n"
                              "concat name=hcat in=ap,ap axis=1\n"
                              "conv2d name=c5 out=4 kernel=1\n"
                              "globalavgpool name=gp\n"
                              "dense name=fc out=3\n";
    ts_model *m = make_model(arch, 9);
    if (!m) return;
    warm_running_stats(m, 8, 4);
    const int n = 5, in = 3 * 13 * 13;
    float *x = test_falloc((size_t)n * in), y[2][5 * 3];
    test_fill_uniform(x, (size_t)n * in, 22, -2.0f, 2.0f);
    for (int b = 0; b < 2; b++) {
        ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        CHECK(ts_model_predict(g_ctx, m, x, n, y[b]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!b) {
            /* the concatenation the batch norm reads is not run: the batch norm reads c2 and c3 */
            static const int cl[] = {0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0};
            for (int l = 0; l < 15; l++)
                CHECK(m->exec.cl[l] == cl[l], "layer %d: channels-last %d, want %d", l, m->exec.cl[l], cl[l]);
            CHECK(m->exec.bn_concat[7] == 6 && m->exec.fuse_skip[6] && ts_model_layer_fused_into(m, 6) == 7,
                  "the batch norm reads the concatenation's inputs: %d", m->exec.bn_concat[7]);
            CHECK(ts_model_layer_fused_into(m, 8) == 7, "the relu after the batch norm runs with it: %d",
                  ts_model_layer_fused_into(m, 8));
        }
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    test_allclose("channels-last pooling, concat, batch norm: oneDNN vs reference", y[0], y[1], (size_t)n * 3, 1e-4,
                  1e-5);
    arena_agrees(m, x, n, "channels-last pooling, concat, batch norm");
    free(x);
    ts_model_free(m);
}

/* Channel shuffles as ShuffleNet exports them (concat -> reshape (g, C/g, H, W) ->
 * transpose (1,0,2,3) -> reshape -> channel crops) run in fused inference as channel
 * gathers from the concat's inputs, channels-last like the convolutions around them:
 * two halves of a g=2 shuffle, a shuffled tensor read whole through two reshapes of
 * one transpose, and a g=3 shuffle of uneven inputs cropped at an odd channel, one
 * crop read by a pad (which keeps it and its sources NCHW; captured, it still runs as
 * a gather), and a g=3 shuffle whose crops run channels-last on the general path. The
 * oneDNN path matches the reference kernels and the arena, the plan skips what the
 * gathers replace, and a transpose that is not a shuffle is left alone. */
static void test_channel_shuffle(void) {
    static const char *arch = "input shape=4x10x10\n"
                              "conv2d name=c0 out=8 kernel=3 padding=1\n"                 /* 1 */
                              "relu name=r0\n"                                              /* 2 */
                              "conv2d name=b1 out=8 kernel=3 stride=2 padding=1 groups=8\n" /* 3 */
                              "conv2d name=b1p out=8 kernel=1\n"                            /* 4 */
                              "relu name=b1r\n"                                             /* 5 */
                              "conv2d name=b2 out=8 kernel=1 in=r0\n"                       /* 6 */
                              "relu name=b2r\n"                                             /* 7 */
                              "conv2d name=b2d out=8 kernel=3 stride=2 padding=1 groups=8\n" /* 8 */
                              "conv2d name=b2p out=8 kernel=1\n"                            /* 9 */
                              "relu name=b2pr\n"                                            /* 10 */
                              "concat name=cat in=b1r,b2pr\n"                               /* 11 */
                              "reshape name=s1 shape=2x8x5x5\n"                             /* 12 */
                              "transpose name=t perm=1,0,2,3\n"                             /* 13 */
                              "reshape name=s2 shape=16x5x5\n"                              /* 14 */
                              "reshape name=s2b shape=16x5x5 in=t\n"                        /* 15 */
                              "pad name=lo in=s2 pads=0,0,0,-8,0,0\n"                       /* 16 */
                              "pad name=hi in=s2b pads=-8,0,0,0,0,0\n"                      /* 17 */
                              "conv2d name=c1 out=8 kernel=1 in=hi\n"                       /* 18 */
                              "relu name=c1r\n"                                             /* 19 */
                              "conv2d name=c1d out=8 kernel=3 padding=1 groups=8\n"         /* 20 */
                              "conv2d name=c1p out=8 kernel=1\n"                            /* 21 */
                              "relu name=c1pr\n"                                            /* 22 */
                              "concat name=cat2 in=lo,c1pr\n"                               /* 23 */
                              "reshape name=s3 shape=2x8x5x5\n"                             /* 24 */
                              "transpose name=t2 perm=1,0,2,3\n"                            /* 25 */
                              "reshape name=s4 shape=16x5x5\n"                              /* 26 */
                              "reshape name=s4b shape=16x5x5 in=t2\n"                       /* 27 */
                              "conv2d name=c5 out=4 kernel=1 in=s4\n"                       /* 28 */
                              "conv2d name=c6 out=8 kernel=1 in=s4b\n"                      /* 29 */
                              "concat name=cat3 in=c5,c6\n"                                 /* 30 */
                              "reshape name=s5 shape=3x4x5x5\n"                             /* 31 */
                              "transpose name=t3 perm=1,0,2,3\n"                            /* 32 */
                              "reshape name=s6 shape=12x5x5\n"                              /* 33 */
                              "pad name=odd pads=0,0,0,-7,0,0\n"                            /* 34 */
                              "pad name=rest in=s6 pads=-5,0,0,0,0,0\n"                     /* 35 */
                              "conv2d name=c7 out=6 kernel=1 in=odd\n"                      /* 36 */
                              "pad name=pp in=rest pads=0,1,1,0,1,1\n"                      /* 37 */
                              "conv2d name=c8 out=6 kernel=3\n"                             /* 38 */
                              "add name=a in=c7,c8\n"                                       /* 39 */
                              "globalavgpool name=gp\n"                                     /* 40 */
                              "dense name=fc out=3\n";                                      /* 41 */
    ts_model *m = make_model(arch, 12);
    if (!m) return;
    /* a crop the pad keeps NCHW: captured, inference still runs it as a gather */
    const int n = 5, in = 4 * 10 * 10, odd = 34, odd_numel = 5 * 5 * 5; /* channels [0, 5) of 12 */
    float *x = test_falloc((size_t)n * in), y[2][5 * 3], cap_out[2][5 * 5 * 5 * 5];
    test_fill_uniform(x, (size_t)n * in, 23, -2.0f, 2.0f);
    for (int b = 0; b < 2; b++) {
        ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        CHECK(ts_model_predict(g_ctx, m, x, n, y[b]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!b) {
            const exec_state *e = &m->exec;
            static const int gather[] = {16, 17, 26, 27, 34, 35}, skipped[] = {11, 12, 13, 14, 15, 23, 24, 25, 30, 31, 32, 33};
            static const int from[] = {11, 11, 23, 23, 30, 30};
            for (int i = 0; i < 6; i++)
                CHECK(e->shuffle_from[gather[i]] == from[i] && !e->fuse_skip[gather[i]], "layer %d: a gather from %d",
                      gather[i], e->shuffle_from[gather[i]]);
            for (int i = 0; i < 12; i++)
                CHECK(e->fuse_skip[skipped[i]] && !e->shuffle_from[skipped[i]], "layer %d: not run", skipped[i]);
            /* the convolutions' outputs and the g=2 gathers channels-last; the g=3 crop
             * the pad reads NCHW, and so its sources c5 and c6 and the other crop */
            static const int cl[] = {0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1,
                                     0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0};
            for (int l = 0; l < 42; l++)
                CHECK(e->cl[l] == cl[l], "layer %d: channels-last %d, want %d", l, e->cl[l], cl[l]);
            CHECK(ts_model_layer_fused_into(m, 13) == 16 && ts_model_layer_fused_into(m, 11) == 16 &&
                      ts_model_layer_fused_into(m, 17) == 17,
                  "the shuffle's layers count as its first gather: %d %d", ts_model_layer_fused_into(m, 13),
                  ts_model_layer_fused_into(m, 11));
        }
        capture_one(m, x, n, odd, odd_numel, cap_out[b]);
        if (!b) CHECK(m->exec.fused && !m->exec.cl[odd], "the capture ran fused, the crop NCHW");
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    test_allclose("channel shuffles: oneDNN vs reference", y[0], y[1], (size_t)n * 3, 1e-4, 1e-5);
    test_allclose("a captured gather", cap_out[0], cap_out[1], (size_t)n * odd_numel, 1e-4, 1e-5);
    arena_agrees(m, x, n, "channel shuffles");
    ts_model_free(m);
    /* a g=3 shuffle of uneven inputs whose crops convolutions read: the gathers run
     * channels-last on the general path (not ShuffleNet's two equal halves) */
    static const char *arch3 = "input name=x shape=4x6x6\n"
                               "conv2d name=p out=4 kernel=1\n"              /* 1 */
                               "conv2d name=q out=8 kernel=3 padding=1 in=x\n" /* 2 */
                               "concat name=cat in=p,q\n"                    /* 3 */
                               "reshape name=s1 shape=3x4x6x6\n"             /* 4 */
                               "transpose name=t perm=1,0,2,3\n"             /* 5 */
                               "reshape name=s2 shape=12x6x6\n"              /* 6 */
                               "pad name=odd pads=0,0,0,-7,0,0\n"            /* 7 */
                               "pad name=rest in=s2 pads=-5,0,0,0,0,0\n"     /* 8 */
                               "conv2d name=c7 out=6 kernel=1 in=odd\n"      /* 9 */
                               "conv2d name=c8 out=6 kernel=3 padding=1 in=rest\n"
                               "add name=a in=c7,c8\n"
                               "globalavgpool name=gp\n"
                               "dense name=fc out=3\n";
    m = make_model(arch3, 15);
    if (m) {
        const int n3 = 3, in3 = 4 * 6 * 6;
        float *x3 = test_falloc((size_t)n3 * in3), y3[2][3 * 3];
        test_fill_uniform(x3, (size_t)n3 * in3, 25, -2.0f, 2.0f);
        predict_on_both(m, x3, n3, y3[0], y3[1]);
        CHECK(m->exec.shuffle_from[7] == 3 && m->exec.shuffle_from[8] == 3 && m->exec.cl[7] && m->exec.cl[8] &&
                  m->exec.cl[1] && m->exec.cl[2],
              "g=3 gathers channels-last: %d %d %d %d", m->exec.shuffle_from[7], m->exec.shuffle_from[8],
              m->exec.cl[7], m->exec.cl[8]);
        test_allclose("g=3 channels-last gathers: oneDNN vs reference", y3[0], y3[1], (size_t)n3 * 3, 1e-4, 1e-5);
        arena_agrees(m, x3, n3, "g=3 channels-last gathers");
        free(x3);
        ts_model_free(m);
    }
    /* a transpose of the last two axes is no shuffle: nothing fused, the same outputs */
    static char other[4096];
    CHECK(strlen(arch) < sizeof other, "arch text fits");
    snprintf(other, sizeof other, "%s", arch);
    char *p = strstr(other, "name=t perm=1,0,2,3");
    memcpy(p, "name=t perm=0,1,3,2", strlen("name=t perm=0,1,3,2"));
    m = make_model(other, 12);
    if (!m) {
        free(x);
        return;
    }
    for (int b = 0; b < 2; b++) {
        ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        CHECK(ts_model_predict(g_ctx, m, x, n, y[b]) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!b)
            CHECK(!m->exec.shuffle_from[16] && !m->exec.shuffle_from[17] && !m->exec.fuse_skip[13] &&
                      m->exec.shuffle_from[26] == 23,
                  "only the real shuffles gather: %d %d", m->exec.shuffle_from[16], m->exec.shuffle_from[26]);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    test_allclose("a transpose that is not a shuffle: oneDNN vs reference", y[0], y[1], (size_t)n * 3, 1e-4, 1e-5);
    free(x);
    ts_model_free(m);
}

/* A batch norm after a concatenation reads the concatenation's inputs in fused
 * inference (the concat is not run), in NCHW where a pad reads the batch norm (and
 * so its sources stay NCHW) and channels-last with its ReLU before a convolution;
 * the oneDNN path matches the reference kernels and the arena's plan. */
static void test_concat_batchnorm(void) {
    static const char *arch = "input name=x shape=3x9x9\n"
                              "conv2d name=a out=5 kernel=3 padding=1\n"  /* 1 */
                              "conv2d name=b out=7 kernel=1 in=x\n"       /* 2 */
                              "concat name=cat in=a,b\n"                 /* 3 */
                              "batchnorm name=bn\n"                      /* 4 */
                              "pad name=p pads=0,1,1,0,1,1\n"            /* 5 */
                              "conv2d name=c out=4 kernel=3\n"           /* 6 */
                              "conv2d name=e out=6 kernel=1 in=b\n"      /* 7 */
                              "concat name=cat2 in=c,e,c\n"              /* 8 */
                              "batchnorm name=bn2\n"                     /* 9 */
                              "relu name=r\n"                            /* 10 */
                              "conv2d name=d out=3 kernel=1\n"           /* 11 */
                              "globalavgpool name=gp\n"                  /* 12 */
                              "dense name=fc out=3\n";                   /* 13 */
    ts_model *m = make_model(arch, 14);
    if (!m) return;
    warm_running_stats(m, 4, 6);
    const int n = 4, in = 3 * 9 * 9;
    float *x = test_falloc((size_t)n * in), y[2][4 * 3];
    test_fill_uniform(x, (size_t)n * in, 24, -2.0f, 2.0f);
    predict_on_both(m, x, n, y[0], y[1]);
    const exec_state *e = &m->exec;
    CHECK(e->bn_concat[4] == 3 && e->bn_concat[9] == 8 && e->fuse_skip[3] && e->fuse_skip[8],
          "both batch norms read their concatenations' inputs: %d %d", e->bn_concat[4], e->bn_concat[9]);
    CHECK(!e->cl[4] && !e->cl[1] && !e->cl[2] && e->cl[6] && e->cl[7] && e->cl[10],
          "bn NCHW with a and b; c, e and bn2's ReLU channels-last: %d %d %d %d %d %d", e->cl[4], e->cl[1], e->cl[2],
          e->cl[6], e->cl[7], e->cl[10]);
    test_allclose("concat -> batch norm: oneDNN vs reference", y[0], y[1], (size_t)n * 3, 1e-4, 1e-5);
    arena_agrees(m, x, n, "concat -> batch norm");
    free(x);
    ts_model_free(m);
}

/* GELU as PyTorch exports it (x / sqrt 2, erf, + 1, times x, times 1/2) runs as one
 * oneDNN gelu_erf kernel in inference, within float rounding of the five layers on
 * the reference kernels; with another constant it is left alone. */
static void test_gelu_chain(void) {
    static const char *arch = "input shape=4x5x5\n"
                              "conv2d name=c out=6 kernel=1\n"
                              "binary name=d const=1 op=div\n"
                              "erf name=e\n"
                              "binary name=a const=1 op=add\n"
                              "binary name=p in=c,a op=mul\n"
                              "binary name=h const=1 op=mul\n"
                              "conv2d name=c2 out=3 kernel=1\n"
                              "globalavgpool name=gp\n";
    for (int variant = 0; variant < 2; variant++) {
        ts_model *m = make_model(arch, 10);
        if (!m) return;
        static const char *names[3] = {"d.const", "a.const", "h.const"};
        const float values[3] = {variant ? 1.5f : 1.41421356f, 1.0f, 0.5f};
        for (int i = 0; i < 3; i++) {
            ts_tensor_info ti;
            CHECK(ts_model_tensor(m, ts_model_find_tensor(m, names[i]), &ti) == TS_OK, "%s", names[i]);
            ti.data[0] = values[i];
        }
        ts_model_params_changed(m);
        const int n = 3, in = 4 * 5 * 5;
        float *x = test_falloc((size_t)n * in), y[2][3 * 3];
        test_fill_uniform(x, (size_t)n * in, 23, -3.0f, 3.0f);
        for (int b = 0; b < 2; b++) {
            ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_REF : TS_BACKEND_DNNL);
            CHECK(ts_model_predict(g_ctx, m, x, n, y[b]) == TS_OK, "%s", ts_ctx_error(g_ctx));
            if (!b) CHECK(variant || ts_model_layer_fused_into(m, 5) == 2, "the product belongs to the chain");
        }
        ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
        CHECK(m->exec.chain_last[2] == (variant ? 0 : 6), "variant %d: chain to %d", variant, m->exec.chain_last[2]);
        test_allclose("gelu chain: oneDNN vs reference", y[0], y[1], (size_t)n * 3, 1e-5, 1e-6);
        arena_agrees(m, x, n, "gelu chain");
        free(x);
        ts_model_free(m);
    }
}

/* Every requested layer's outputs arrive for every sample, in order, past the
 * library's internal group size; a layer that inference fuses away (the conv and
 * batch norm under a ReLU) reads the same on oneDNN as on the reference kernels;
 * the last layer's outputs are the logits; a callback can stop the call. */
static void test_capture(void) {
    static const char *arch = "input shape=3x8x8\n"
                              "conv2d name=c out=4 kernel=3 padding=1\n"
                              "batchnorm name=bn\n"
                              "relu name=r\n"
                              "maxpool name=p kernel=2\n"
                              "flatten name=f\n"
                              "dense name=fc out=5\n";
    ts_model *m = make_model(arch, 3);
    if (!m) return;
    warm_running_stats(m, 16, 5);
    const int n = 300, in = 3 * 8 * 8;
    float *x = test_falloc((size_t)n * in), *logits = test_falloc((size_t)n * 5);
    test_fill_uniform(x, (size_t)n * in, 11, -1.0f, 1.0f);
    captured got[2];
    for (int b = 0; b < 2; b++) {
        captured *c = &got[b];
        memset(c, 0, sizeof *c);
        const int want[] = {1, 2, 3, 0, 6};
        c->nl = 5;
        for (int k = 0; k < c->nl; k++) {
            c->layers[k] = want[k];
            ts_layer_info li;
            ts_model_layer(m, want[k], &li);
            c->numel[k] = ts_shape_numel(&li.out);
            c->out[k] = test_falloc((size_t)n * (size_t)c->numel[k]);
        }
        ts_ctx_set_backend(g_ctx, b ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        ts_capture cap = {c->layers, c->nl, on_capture, c};
        CHECK(ts_model_predict_capture(g_ctx, m, x, n, logits, &cap) == TS_OK, "%s", ts_ctx_error(g_ctx));
        for (int k = 0; k < c->nl; k++) CHECK(c->next[k] == n, "layer %d: %lld samples", c->layers[k], (long long)c->next[k]);
        CHECK(!memcmp(c->out[4], logits, (size_t)n * 5 * sizeof(float)), "last layer captured = logits");
        CHECK(!memcmp(c->out[3], x, (size_t)n * in * sizeof(float)), "input layer captured = input");
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    for (int k = 0; k < 5; k++)
        test_allclose("captured dnnl vs ref", got[0].out[k], got[1].out[k], (size_t)n * (size_t)got[0].numel[k], 1e-4,
                      1e-5);
    /* a callback that stops */
    captured c = got[0];
    memset(c.next, 0, sizeof c.next);
    c.calls = 0;
    c.stop_after = 2;
    ts_capture cap = {c.layers, c.nl, on_capture, &c};
    CHECK(ts_model_predict_capture(g_ctx, m, x, n, logits, &cap) == TS_ECANCELED, "stopped by the callback");
    CHECK(c.calls == 2, "%d calls after asking to stop", c.calls);
    int bad = 99;
    ts_capture wrong = {&bad, 1, on_capture, &c};
    CHECK(ts_model_predict_capture(g_ctx, m, x, n, logits, &wrong) == TS_EINVAL, "a layer outside the model");
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 5; k++) free(got[b].out[k]);
    free(x);
    free(logits);
    ts_model_free(m);
}

int main(void) {
    if (ts_ctx_create(&g_ctx) != TS_OK) {
        fprintf(stderr, "cannot create a context\n");
        return 2;
    }
    RUN(test_gradcheck_ref);
    RUN(test_gradcheck_dnnl);
    RUN(test_gradients_backends_agree);
    RUN(test_bn_relu_fusion);
    RUN(test_training_blocked);
    RUN(test_training_blocked_padded);
    RUN(test_backward_needs_forward);
    RUN(test_dropout);
    RUN(test_predict_batches);
    RUN(test_backends_agree_zoo);
    RUN(test_bf16_inference);
    RUN(test_bf16_training);
    RUN(test_packed_weights_follow_changes);
    RUN(test_seed_determinism);
    RUN(test_batchnorm_running_stats);
    RUN(test_replanning);
    RUN(test_capture);
    RUN(test_activation_fusion);
    RUN(test_channels_last_layers);
    RUN(test_channel_shuffle);
    RUN(test_inference_arena);
    RUN(test_concat_batchnorm);
    RUN(test_gelu_chain);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_graph");
}
