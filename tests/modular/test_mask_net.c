/* The network kernel masks are learned on (src/modular/mask_net.c), on a small model
 * with random weights and batch-norm statistics (no data needed):
 *  - with every mask kept, each branch's output is its head over the origin's logits
 *    in inference (batch norms folded, dropout removed), within float rounding;
 *  - scores binarize at 0 into whole channel planes (and single dense units);
 *  - the straight-through gradient the observer writes, d loss / d binary mask of each
 *    channel, matches central finite differences of the loss in that channel's mask
 *    value, for kept and removed channels of every gate and branch (the model pools
 *    by average: after a max pool, a removed channel's plane is all ties, which the
 *    backward routes to each window's first element, so there the straight-through
 *    gradient is not the derivative from either side; GradSplitter's PyTorch code
 *    does the same);
 *  - a score step clips that gradient to [-1, 1] (hardtanh) and adds the penalty's;
 *  - a model whose ReLUs are not over maps or vectors, or a batch norm that follows no
 *    convolution, is refused. */
#include "tessera.h"

#include "common/test.h"
#include "modular/modular.h"

#include <math.h>

static ts_ctx *g_ctx;

static const char *ARCH = "input shape=2x8x8 classes=3\n"
                          "conv2d name=c1 out=4 kernel=3 padding=1 bias=0\n"
                          "batchnorm name=b1\n"
                          "relu name=r1\n"
                          "avgpool name=p1 kernel=2\n"
                          "conv2d name=c2 out=5 kernel=3 padding=1\n"
                          "relu name=r2\n"
                          "flatten name=f\n"
                          "dropout name=d p=0.5\n"
                          "dense name=fc1 out=6\n"
                          "batchnorm name=b3\n"
                          "relu name=r3\n"
                          "dense name=fc2 out=classes\n";

enum { N = 3, K = 2, CLS = 3, IN = 2 * 8 * 8 };

static ts_model *make_origin(void) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, ARCH, "mask.arch", NULL, 0, 7, &m) == TS_OK, "model: %s", ts_ctx_error(g_ctx));
    if (m) test_randomize_model(m, 70);
    return m;
}

/* loss = sum over outputs of out * r (r fixed): d loss / d out = r */
static double loss_of(const float *out, const float *r, int n) {
    double l = 0;
    for (int i = 0; i < n; i++) l += (double)out[i] * (double)r[i];
    return l;
}

/* The origin and its mask network with K branches, heads random from seed (into head,
 * K * CLS); NULL after a failed CHECK. */
static ts_model *make_net(mask_net *mn, float *head, uint64_t seed) {
    ts_model *o = make_origin();
    if (!o) return NULL;
    test_fill_uniform(head, K * CLS, seed, -1.0f, 1.0f);
    const mask_net_spec spec = {"test", K, 1, 1, head, "h"};
    ts_status st = mask_net_build(mn, g_ctx, o, &spec, 1);
    CHECK(st == TS_OK, "build: %s", ts_ctx_error(g_ctx));
    if (st) {
        mask_net_free(mn);
        ts_model_free(o);
        return NULL;
    }
    return o;
}

static void test_heads_and_binarization(void) {
    float head[K * CLS];
    mask_net mn;
    ts_model *o = make_net(&mn, head, 3);
    if (!o) return;
    CHECK(mn.ngates == 3 && mn.C == 4 + 5 + 6 && mn.gates[0].plane == 64 && mn.gates[1].plane == 16 &&
              mn.gates[2].plane == 1 && ts_model_classes(mn.net) == K,
          "gates %d, C %lld, outputs %d", mn.ngates, (long long)mn.C, ts_model_classes(mn.net));
    float x[N * IN], lo[N * CLS], out[N * K];
    test_fill_uniform(x, N * IN, 11, -2.0f, 2.0f);
    mask_net_set_masks(&mn);
    CHECK(ts_model_predict(g_ctx, o, x, N, lo) == TS_OK && ts_model_predict(g_ctx, mn.net, x, N, out) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    float want[N * K];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int j = 0; j < CLS; j++) s += (double)head[k * CLS + j] * lo[i * CLS + j];
            want[i * K + k] = (float)s;
        }
    test_allclose("all kept: heads over the origin's logits", out, want, N * K, 1e-4, 1e-4);
    /* binarization: branch 1, gate 0 channel 2 and gate 2 unit 4 removed */
    for (int64_t i = 0; i < K * mn.C; i++) mn.score[i] = 0.5f;
    mn.score[mn.C + mn.gates[0].off + 2] = -1e-6f;
    mn.score[mn.C + mn.gates[2].off + 4] = 0.0f; /* not > 0: removed */
    mask_net_set_masks(&mn);
    CHECK(fabs(mask_net_kept(mn.score, K * mn.C) - (double)(K * mn.C - 2) / (double)(K * mn.C)) < 1e-12, "kept");
    ts_tensor_info m0 = {0}, m2 = {0};
    for (int t = 0; t < ts_model_tensor_count(mn.net); t++) {
        ts_tensor_info ti;
        ts_model_tensor(mn.net, t, &ti);
        if (!strcmp(ti.name, "m1.r1.keep.keep")) m0 = ti;
        if (!strcmp(ti.name, "m1.r3.keep.keep")) m2 = ti;
    }
    int ok = m0.data && m2.data && m0.numel == 4 * 64 && m2.numel == 6;
    for (int64_t u = 0; ok && u < m0.numel; u++) ok = m0.data[u] == (u / 64 == 2 ? 0.0f : 1.0f);
    for (int64_t u = 0; ok && u < m2.numel; u++) ok = m2.data[u] == (u == 4 ? 0.0f : 1.0f);
    CHECK(ok, "mask planes of branch 1 do not follow its scores");
    /* a score step: gradient clipped to [-1, 1], plus the penalty's l1 */
    for (int64_t i = 0; i < K * mn.C; i++) mn.grad[i] = i % 3 == 0 ? 5.0f : i % 3 == 1 ? -5.0f : 0.25f;
    mask_net_step_scores(&mn, 0.125f, 0.01f, 1);
    ok = 1;
    for (int64_t i = 0; i < K * mn.C; i++) ok &= mn.grad[i] == (i % 3 == 0 ? 1.125f : i % 3 == 1 ? -0.875f : 0.375f);
    CHECK(ok, "clipped gradient plus penalty");
    mask_net_free(&mn);
    ts_model_free(o);
}

/* d loss / d mask value of channel ch of gate g in branch k, by central differences */
static double fd_grad(mask_net *mn, const float *x, const float *r, int k, int g, int ch) {
    const mask_gate *gt = &mn->gates[g];
    ts_tensor_info keep = {0};
    for (int t = 0; t < ts_model_tensor_count(mn->net); t++) {
        ts_tensor_info ti;
        ts_model_tensor(mn->net, t, &ti);
        char want[2 * LAYER_NAME_MAX];
        snprintf(want, sizeof want, "m%d.%s.keep.keep", k, mn->origin->layers[gt->relu].name);
        if (!strcmp(ti.name, want)) keep = ti;
    }
    if (!keep.data) return NAN;
    const double eps = 1e-2;
    float *plane = keep.data + (int64_t)ch * gt->plane, v = plane[0], out[N * K];
    double l[2];
    for (int s = 0; s < 2; s++) {
        for (int64_t u = 0; u < gt->plane; u++) plane[u] = v + (float)(s ? eps : -eps);
        ts_model_params_changed(mn->net);
        if (ts_model_predict(g_ctx, mn->net, x, N, out)) return NAN;
        l[s] = loss_of(out, r, N * K);
    }
    for (int64_t u = 0; u < gt->plane; u++) plane[u] = v;
    ts_model_params_changed(mn->net);
    return (l[1] - l[0]) / (2 * eps);
}

static void test_straight_through_gradient(void) {
    float head[K * CLS];
    mask_net mn;
    ts_model *o = make_net(&mn, head, 4);
    if (!o) return;
    /* about a third of the channels removed */
    test_fill_uniform(mn.score, (size_t)(K * mn.C), 9, -0.5f, 1.0f);
    float x[N * IN], out[N * K], r[N * K];
    test_fill_uniform(x, N * IN, 12, -2.0f, 2.0f);
    test_fill_uniform(r, N * K, 13, -1.0f, 1.0f);
    mask_net_set_masks(&mn);
    ts_status st = ts_model_forward_train(g_ctx, mn.net, x, N, out, 0);
    if (!st) st = model_backward_observe(g_ctx, mn.net, r, mask_net_observe, &mn);
    CHECK(st == TS_OK, "forward/backward: %s", ts_ctx_error(g_ctx));
    if (st) {
        mask_net_free(&mn);
        ts_model_free(o);
        return;
    }
    int checked = 0, removed = 0, bad = 0;
    double worst = 0;
    for (int k = 0; k < K; k++)
        for (int g = 0; g < mn.ngates; g++)
            for (int ch = 0; ch < mn.gates[g].channels; ch++) {
                const double want = fd_grad(&mn, x, r, k, g, ch);
                const float got = mn.grad[(size_t)k * (size_t)mn.C + mn.gates[g].off + ch];
                const double err = fabs(got - want) / (1e-2 + fabs(want));
                if (!(err < 2e-2)) {
                    if (bad++ < 5)
                        printf("  branch %d gate %d channel %d: observed %.6g, finite differences %.6g\n", k, g, ch,
                               (double)got, want);
                }
                if (err > worst) worst = err;
                checked++;
                removed += !(mn.score[(size_t)k * (size_t)mn.C + mn.gates[g].off + ch] > 0.0f);
            }
    CHECK(bad == 0 && checked == K * 15 && removed > 3, "%d of %d channel gradients off (worst %.3g; %d removed)", bad,
          checked, worst, removed);
    mask_net_free(&mn);
    ts_model_free(o);
}

static void test_refusals(void) {
    static const char *const texts[] = {
        /* a batch norm over the input: nothing to fold it into */
        "input shape=1x4x4 classes=2\nbatchnorm name=b\nconv2d name=c out=2 kernel=3\nrelu name=r\nflatten name=f\n"
        "dense name=o out=classes\n",
        /* no ReLU at all */
        "input shape=1x4x4 classes=2\nflatten name=f\ndense name=o out=classes\n",
    };
    static const char *const want[] = {"cannot be frozen by folding", "no ReLU"};
    for (int i = 0; i < 2; i++) {
        ts_model *m = NULL;
        CHECK(ts_model_from_arch(g_ctx, texts[i], "refuse.arch", NULL, 0, 1, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (!m) continue;
        float head[2 * 2] = {1, 0, 0, 1};
        mask_net mn;
        const mask_net_spec spec = {"test", 2, 1, 1, head, "h"};
        ts_status st = mask_net_build(&mn, g_ctx, m, &spec, 1);
        CHECK(st == TS_EUNSUPPORTED && strstr(ts_ctx_error(g_ctx), want[i]), "case %d: %s: %s", i, ts_status_name(st),
              ts_ctx_error(g_ctx));
        mask_net_free(&mn);
        ts_model_free(m);
    }
}

int main(void) {
    char tmp[] = "/tmp/tessera-mask-net-XXXXXX";
    if (!test_begin(&g_ctx, tmp)) return 2;
    RUN(test_heads_and_binarization);
    RUN(test_straight_through_gradient);
    RUN(test_refusals);
    test_end(g_ctx, tmp);
    TEST_MAIN_END("test_mask_net");
}
