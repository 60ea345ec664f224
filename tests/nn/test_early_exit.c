/* Early exits (T-RECX, docs/early-exit.md): the exit block and early view that
 * ts_model_from_arch_exit adds, checked layer by layer; the joint loss's gradients
 * (CE_final + w CE_exit) against finite differences; ts_model_predict_exit against
 * ts_model_predict (rho = 1 bit for bit; below, each sample's logits are its exit's or
 * its full network's); the architecture text, file round trip and the builder's
 * checks; constant-time refusal; a few training steps lowering both losses, and the
 * weight transfer; ts_evaluate_exit's sweep against the decisions made by hand; the
 * exit's self-distillation gradient against finite differences, and training with it. */
#include "common/test.h"
#include "nn/nn.h"
#include "train/train.h"

#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_exit_XXXXXX";

#define N 6
#define K 4
static const char *TINY = "input shape=1x8x8 classes=4\n"
                          "conv2d name=conv1 out=8 kernel=3 padding=1 bias=0\n"
                          "batchnorm name=bn1\n"
                          "relu name=relu1\n"
                          "conv2d name=stage1.conv out=8 kernel=3 padding=1\n"
                          "relu name=stage1.relu\n"
                          "conv2d name=stage2.conv out=8 kernel=3 stride=2 padding=1\n"
                          "batchnorm name=stage2.bn\n"
                          "relu name=stage2.relu\n"
                          "globalavgpool name=gap\n"
                          "dense name=fc out=classes\n";

static ts_model *exit_model(int view, uint64_t seed) {
    ts_exit_config ec;
    ts_exit_config_default(&ec);
    ec.after = "stage1";
    ec.channels = 4;
    ec.early_view = view;
    ts_model *m = NULL;
    CHECK(ts_model_from_arch_exit(g_ctx, TINY, "tiny.arch", NULL, 0, seed, &ec, &m) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    return m;
}

static int layer_index(const ts_model *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name)) return i;
    CHECK(0, "no layer %s", name);
    return 0;
}

static void fill_input(float *x, int n, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
    }
}

static void test_block_shape(void) {
    ts_model *m = exit_model(1, 1);
    if (!m) return;
    const layer *in = &m->layers[layer_index(m, "exit.conv")];
    CHECK(!strcmp(m->layers[in->inputs[0]].name, "stage1.relu"), "exit reads %s", m->layers[in->inputs[0]].name);
    const layer *dw = &m->layers[layer_index(m, "exit.dw")];
    CHECK(dw->groups == 4 && dw->features == 4 && dw->kh == 2 && dw->sh == 2, "exit depthwise 2x2 stride 2");
    CHECK(dw->out.dims[0] == 4 && dw->out.dims[1] == 4 && dw->out.dims[2] == 4, "exit depthwise output 4x4x4");
    const int ex = layer_index(m, "exit.fc");
    CHECK(m->exit_layer == ex && m->layers[ex].exit_out && m->layers[ex].out.dims[0] == K, "exit logits layer");
    const layer *vd = &m->layers[layer_index(m, "view.dw")];
    CHECK(vd->early_view && vd->groups == 4 && vd->out.dims[1] == 2, "view depthwise");
    const layer *cat = &m->layers[layer_index(m, "view.concat")];
    CHECK(cat->out.dims[0] == 8 + 4 * 2 * 2, "concat of 8 pooled and 16 viewed: %lld", (long long)cat->out.dims[0]);
    CHECK(m->layers[m->nlayers - 1].inputs[0] == layer_index(m, "view.concat"), "final dense reads the concat");
    int src, dst;
    CHECK(exit_view_pair(m, &src, &dst) && src == layer_index(m, "exit.dw") && dst == layer_index(m, "view.dw"),
          "weight transfer pair");
    /* MACs: the exit's path plus the rest is every layer but the exit-only ones */
    ts_exit_info info;
    CHECK(ts_model_exit_info(m, &info) && info.layer == ex, "exit info");
    int64_t all = 0, exit_only = 0;
    for (int li = 1; li < m->nlayers; li++) all += LAYER_OPS[m->layers[li].kind].macs(m, &m->layers[li]);
    for (int li = layer_index(m, "exit.conv"); li <= ex; li++)
        exit_only += LAYER_OPS[m->layers[li].kind].macs(m, &m->layers[li]);
    CHECK(info.macs_plain == all - exit_only, "plain %lld vs %lld", (long long)info.macs_plain,
          (long long)(all - exit_only));
    CHECK(info.macs_exit + info.macs_rest == all, "exit %lld + rest %lld vs %lld", (long long)info.macs_exit,
          (long long)info.macs_rest, (long long)all);
    ts_model_free(m);
}

static void test_text_and_file_round_trip(void) {
    ts_model *m = exit_model(1, 2);
    if (!m) return;
    const char *text = ts_model_arch_text(m);
    CHECK(strstr(text, " exit=1") && strstr(text, " view=1"), "text marks the exit and the view:\n%s", text);
    ts_model *a = NULL, *b = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "again.arch", NULL, 0, 2, &a) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (a) CHECK(a->exit_layer == m->exit_layer && a->nlayers == m->nlayers, "text round trip keeps the exit");
    char path[256];
    snprintf(path, sizeof path, "%s/exit.tsr", g_tmp);
    CHECK(ts_model_save(g_ctx, m, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_load(g_ctx, path, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (b) {
        CHECK(b->exit_layer == m->exit_layer, "file round trip keeps the exit");
        CHECK(!memcmp(b->params, m->params, m->nparams * sizeof(float)), "weights");
    }
    ts_model_free(a);
    ts_model_free(b);
    ts_model_free(m);
}

static void test_builder_checks(void) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, "input shape=4 classes=2\ndense name=fc out=2 exit=1\n", "last.arch", NULL, 0, 1,
                             &m) == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "last layer"),
          "an exit as the last layer: %s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx,
                             "input shape=4 classes=2\ndense name=a out=2 exit=1\ndense name=b in=input0 out=2 exit=1\n"
                             "dense name=fc in=input0 out=2\n",
                             "two.arch", NULL, 0, 1, &m) == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "second early exit"),
          "two exits: %s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx, "input shape=4 classes=2\ndense name=a out=3 exit=1\ndense name=fc in=input0 out=2\n",
                             "wide.arch", NULL, 0, 1, &m) == TS_ESHAPE,
          "an exit of 3 outputs for 2 classes: %s", ts_ctx_error(g_ctx));
    ts_exit_config ec;
    ts_exit_config_default(&ec);
    ec.after = "stage9";
    CHECK(ts_model_from_arch_exit(g_ctx, TINY, "tiny.arch", NULL, 0, 1, &ec, &m) == TS_ENOTFOUND &&
              strstr(ts_ctx_error(g_ctx), "stage9"),
          "unknown stage: %s", ts_ctx_error(g_ctx));
    CHECK(m == NULL, "no model on failure");
}

/* CE_final + w CE_exit of a training forward; with grad, the gradients in m->grads */
static double joint_loss(ts_model *m, const float *x, const int32_t *y, float w, int grad) {
    float logits[N * K], d[N * K], de[N * K];
    CHECK(ts_model_forward_train(g_ctx, m, x, N, logits, 7) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const float *ze = m->exec.ls[m->exit_layer].out;
    const double lf = ts_softmax_cross_entropy(N, K, logits, y, 0.0f, d);
    const double le = ts_softmax_cross_entropy(N, K, ze, y, 0.0f, de);
    for (int i = 0; i < N * K; i++) de[i] *= w;
    if (grad) CHECK(model_backward_exit(g_ctx, m, d, de, NULL, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return lf + w * le;
}

static void test_joint_loss_gradients(void) {
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    ts_model *m = exit_model(1, 3);
    if (!m) return;
    float x[N * 8 * 8];
    fill_input(x, N * 8 * 8, 5);
    const int32_t y[N] = {0, 1, 2, 3, 1, 2};
    const float w = 0.5f;
    joint_loss(m, x, y, w, 1);
    float *g = test_falloc(m->nparams);
    memcpy(g, m->grads, m->nparams * sizeof(float));
    const float hs[3] = {1e-3f, 2.5e-4f, 6e-5f};
    int checked = 0, exit_nonzero = 0, view_nonzero = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const tensor_entry *te = &m->tensors[t];
        if (te->role != TS_TENSOR_PARAM) continue;
        float *p = m->params + te->offset;
        for (int64_t e = 0; e < te->numel; e += (te->numel + 2) / 3) {
            const float an = g[te->offset + (size_t)e];
            double num = 0, lim = 0;
            int ok = 0;
            for (int h = 0; h < 3 && !ok; h++) {
                const float save = p[e], xp = save + hs[h], xm = save - hs[h];
                p[e] = xp;
                const double lp = joint_loss(m, x, y, w, 0);
                p[e] = xm;
                const double lm = joint_loss(m, x, y, w, 0);
                p[e] = save;
                num = (lp - lm) / ((double)xp - (double)xm);
                lim = 2e-2 * fmax(fabs(num), fabs(an)) + 1e-4 + 1e-7 / hs[h];
                ok = fabs(num - an) <= lim;
            }
            CHECK(ok, "d loss / d %s[%lld]: analytic %.6g, numeric %.6g", te->name, (long long)e, an, num);
            if (!strncmp(te->name, "exit.", 5)) exit_nonzero += an != 0;
            if (!strncmp(te->name, "view.", 5)) view_nonzero += an != 0;
            checked++;
        }
    }
    CHECK(checked > 20 && exit_nonzero > 0 && view_nonzero > 0, "checked %d, exit %d, view %d nonzero", checked,
          exit_nonzero, view_nonzero);
    /* the exit's share: with w = 0 the exit's own parameters get no gradient */
    joint_loss(m, x, y, 0.0f, 1);
    const tensor_entry *ew = &m->tensors[m->layers[layer_index(m, "exit.fc")].weight];
    double s = 0;
    for (int64_t i = 0; i < ew->numel; i++) s += fabs(m->grads[ew->offset + (size_t)i]);
    CHECK(s == 0, "exit weight gradient %g with w = 0", s);
    free(g);
    ts_model_free(m);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
}

/* capture callback: the exit's logits, group by group, into user (M, K) */
static int copy_exit(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    memcpy((float *)user + (size_t)first * K, out, (size_t)n * K * sizeof(float));
    return 0;
}

/* ts_model_predict_exit of m against the plain network, on a backend */
static void check_predict_model(ts_backend be, ts_model *m) {
    ts_ctx_set_backend(g_ctx, be);
    enum { M = 40 };
    float *x = test_falloc(M * 8 * 8), plain[M * K], got[M * K], exit_logits[M * K];
    fill_input(x, M * 8 * 8, 9);
    int exited[M];
    CHECK(ts_model_predict(g_ctx, m, x, M, plain) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_predict_exit(g_ctx, m, x, M, 1.0f, got, exited) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(!memcmp(got, plain, sizeof got), "rho = 1: the plain network's logits bit for bit (backend %d)", be);
    int any = 0;
    for (int i = 0; i < M; i++) any |= exited[i];
    CHECK(!any, "rho = 1: nothing exits");
    /* the exit's own logits from the same batch, and a threshold at their median */
    int exit_layer = m->exit_layer;
    ts_capture cap = {&exit_layer, 1, copy_exit, exit_logits};
    CHECK(ts_model_predict_capture(g_ctx, m, x, M, got, &cap) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float p[M], sorted[M];
    for (int i = 0; i < M; i++) sorted[i] = p[i] = exit_top_probability(exit_logits + (size_t)i * K, K);
    for (int i = 1; i < M; i++)
        for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
            const float t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    const float rho = sorted[M / 2];
    CHECK(ts_model_predict_exit(g_ctx, m, x, M, rho, got, exited) == TS_OK, "%s", ts_ctx_error(g_ctx));
    int left = 0;
    for (int i = 0; i < M; i++) {
        CHECK(exited[i] == (p[i] >= rho), "sample %d: exited %d with p %g, rho %g", i, exited[i], p[i], rho);
        left += exited[i];
        const float *want = exited[i] ? exit_logits + (size_t)i * K : plain + (size_t)i * K;
        char what[64];
        snprintf(what, sizeof what, "sample %d (%s, backend %d)", i, exited[i] ? "exit" : "final", be);
        if (be == TS_BACKEND_REF) CHECK(!memcmp(got + (size_t)i * K, want, K * sizeof(float)), "%s: not bit-equal", what);
        else test_allclose(what, got + (size_t)i * K, want, K, 1e-5, 1e-6);
    }
    CHECK(left > 0 && left < M, "%d of %d exited at the median", left, M);
    free(x);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
}

static void test_predict_exit(void) {
    for (int be = 0; be < 2; be++) {
        ts_model *m = exit_model(1, 4);
        if (m) check_predict_model(be ? TS_BACKEND_DNNL : TS_BACKEND_REF, m);
        ts_model_free(m);
    }
}

/* An exit that reads a ShuffleNet channel shuffle whole while the final path reads its
 * two halves: fused inference runs the halves as gathers from the concat's inputs,
 * which the exit's part computes, so the continuing samples' rows of those inputs move
 * too (early_exit_predict.c, mark_sources); their logits stay the plain network's. */
static void test_predict_exit_shuffle(void) {
    static const char *arch = "input shape=1x8x8 classes=4\n"
                              "conv2d name=c0 out=8 kernel=3 padding=1\n"
                              "relu name=r0\n"
                              "conv2d name=a out=4 kernel=1\n"
                              "conv2d name=b out=4 kernel=3 padding=1 in=r0\n"
                              "concat name=cat in=a,b\n"
                              "reshape name=s1 shape=2x4x8x8\n"
                              "transpose name=t perm=1,0,2,3\n"
                              "reshape name=s2 shape=8x8x8\n"
                              "reshape name=s2b shape=8x8x8 in=t\n"
                              "pad name=lo pads=0,0,0,-4,0,0\n"
                              "pad name=hi in=s2b pads=-4,0,0,0,0,0\n"
                              "conv2d name=c1 out=4 kernel=1 in=hi\n"
                              "concat name=cat2 in=lo,c1\n"
                              "conv2d name=c2 out=8 kernel=3 stride=2 padding=1\n"
                              "relu name=r2\n"
                              "globalavgpool name=gap\n"
                              "dense name=fc out=classes\n";
    ts_exit_config ec;
    ts_exit_config_default(&ec);
    ec.after = "s2";
    ec.channels = 4;
    ts_model *m = NULL;
    CHECK(ts_model_from_arch_exit(g_ctx, arch, "shuffle.arch", NULL, 0, 5, &ec, &m) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (!m) return;
    check_predict_model(TS_BACKEND_DNNL, m);
    const int lo = layer_index(m, "lo"), hi = layer_index(m, "hi"), a = layer_index(m, "a");
    CHECK(m->exec.shuffle_from[lo] && m->exec.shuffle_from[hi], "the halves ran as gathers: %d %d",
          m->exec.shuffle_from[lo], m->exec.shuffle_from[hi]);
    CHECK(m->exec.fuse_skip[layer_index(m, "s2b")] && a > 0, "s2b not run");
    ts_model_free(m);
}

static void test_constant_time_refused(void) {
    ts_model *m = exit_model(0, 5);
    if (!m) return;
    float x[8 * 8] = {0}, z[K];
    ts_ctx_set_backend(g_ctx, TS_BACKEND_REF);
    CHECK(ts_ctx_set_constant_time(g_ctx, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_predict_exit(g_ctx, m, x, 1, 0.5f, z, NULL) == TS_EUNSUPPORTED &&
              strstr(ts_ctx_error(g_ctx), "constant-time"),
          "constant-time: %s", ts_ctx_error(g_ctx));
    CHECK(ts_model_predict(g_ctx, m, x, 1, z) == TS_OK, "plain inference stays: %s", ts_ctx_error(g_ctx));
    ts_ctx_set_constant_time(g_ctx, 0);
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    ts_model *plain = NULL;
    CHECK(ts_model_from_arch(g_ctx, TINY, "tiny.arch", NULL, 0, 1, &plain) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(plain && ts_model_predict_exit(g_ctx, plain, x, 1, 0.5f, z, NULL) == TS_EINVAL, "no exit: refused");
    ts_model_free(plain);
    ts_model_free(m);
}

/* 64 images of 4 classes, each class a bright quadrant (test_util.c), made once */
static ts_dataset *g_quadrants;
static const ts_dataset *quadrants(void) {
    if (!g_quadrants) g_quadrants = test_quadrant_dataset(64, 3);
    return g_quadrants;
}

static ts_train_config exit_train_config(int epochs, int batch, float lr) {
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = epochs;
    cfg.batch = batch;
    cfg.lr = lr;
    return cfg;
}

typedef struct losses {
    int n;
    double final[8], exit[8], val_exit[8];
} losses;

static int on_epoch(const ts_epoch_report *r, void *user) {
    losses *l = user;
    if (l->n < 8) {
        l->final[l->n] = r->train_loss;
        l->exit[l->n] = r->exit_loss;
        l->val_exit[l->n++] = r->val_exit_acc;
    }
    return 0;
}

static void test_training_lowers_both_losses(void) {
    const ts_dataset *ds = quadrants();
    ts_model *m = exit_model(1, 6);
    if (!m) return;
    const ts_train_config cfg = exit_train_config(8, 16, 0.05f);
    ts_trainer *tr = NULL;
    CHECK(ts_trainer_create(g_ctx, m, ds, ds, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    losses l = {0};
    ts_train_hooks hooks = {NULL, on_epoch, &l};
    CHECK(tr && ts_trainer_run(g_ctx, tr, &hooks) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(l.n == 8, "%d epochs reported", l.n);
    CHECK(l.final[7] < 0.5 * l.final[0] && l.exit[7] < 0.7 * l.exit[0], "final %.4f -> %.4f, exit %.4f -> %.4f",
          l.final[0], l.final[7], l.exit[0], l.exit[7]);
    CHECK(l.val_exit[7] >= 0.5, "validation exit top-1 %.3f", l.val_exit[7]);
    ts_eval_report ev;
    CHECK(ts_evaluate(g_ctx, m, ds, 16, &ev) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ev.exit_top1 == l.val_exit[7], "ts_evaluate's exit top-1 %.4f", ev.exit_top1);
    ts_eval_report_free(&ev);
    /* the sweep: a threshold of 0 sends every sample out at the exit, 1 none */
    ts_exit_point pts[3] = {{.rho = 0.0f}, {.rho = 0.6f}, {.rho = 1.0f}};
    ts_exit_info info;
    ts_model_exit_info(m, &info);
    CHECK(ts_evaluate_exit(g_ctx, m, ds, 16, pts, 3) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(pts[0].exited == 1.0 && pts[0].top1 == l.val_exit[7] && pts[0].macs == (double)info.macs_exit,
          "rho 0: exited %g top-1 %g macs %g", pts[0].exited, pts[0].top1, pts[0].macs);
    CHECK(pts[2].exited == 0.0 && pts[2].macs == (double)info.macs_plain, "rho 1: exited %g", pts[2].exited);
    CHECK(pts[1].macs == info.macs_exit + (1 - pts[1].exited) * info.macs_rest, "rho 0.6: macs %g", pts[1].macs);
    /* and the same decisions made by ts_model_predict_exit */
    float *x = test_falloc(64 * 8 * 8), z[64 * K];
    int out[64], right = 0, left = 0;
    ts_preprocess pp;
    ts_model_get_preprocess(g_ctx, m, &pp);
    ts_preprocess_images(&pp, ds->images, 64, 1, 8, 8, x);
    CHECK(ts_model_predict_exit(g_ctx, m, x, 64, 0.6f, z, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (int i = 0; i < 64; i++) {
        right += ts_argmax(z + (size_t)i * K, K) == ds->labels[i];
        left += out[i];
    }
    CHECK(right == (int)(pts[1].top1 * 64 + 0.5) && left == (int)(pts[1].exited * 64 + 0.5),
          "predict_exit %d right %d left, sweep %g %g", right, left, pts[1].top1, pts[1].exited);
    free(x);
    ts_trainer_free(tr);
    ts_model_free(m);
}

/* Self-distillation (exit_distill): train_exit_distill's gradient against finite
 * differences of (1 - b) CE + b T^2 KL in double; b = 0 leaves the CE gradient as it
 * is; training with it lowers both losses, and its exit learns the quadrants. */
static double distill_objective(int n, int k, const double *z, const float *zf, const int32_t *y, double b, double T) {
    double ce = 0, kl = 0;
    for (int i = 0; i < n; i++) {
        const double *ze = z + (size_t)i * k;
        const float *zt = zf + (size_t)i * k;
        double se = 0, sT = 0, st = 0;
        for (int j = 0; j < k; j++) {
            se += exp(ze[j]);
            sT += exp(ze[j] / T);
            st += exp(zt[j] / T);
        }
        ce += log(se) - ze[y[i]];
        for (int j = 0; j < k; j++) {
            const double lp = zt[j] / T - log(st), lq = ze[j] / T - log(sT);
            kl += exp(lp) * (lp - lq);
        }
    }
    return (1 - b) * ce / n + b * T * T * kl / n;
}

static void test_distill_gradient(void) {
    enum { DN = 3, DK = 5 };
    float z[DN * DK], zf[DN * DK], g[DN * DK], g0[DN * DK];
    const int32_t y[DN] = {1, 4, 0};
    fill_input(z, DN * DK, 21);
    fill_input(zf, DN * DK, 22);
    for (int i = 0; i < DN * DK; i++) {
        z[i] *= 3.0f;
        zf[i] *= 4.0f;
    }
    const double T[2] = {4.0, 0.5};
    for (int t = 0; t < 2; t++) {
        const double b = 0.7;
        ts_softmax_cross_entropy(DN, DK, z, y, 0.0f, g);
        memcpy(g0, g, sizeof g);
        const double kl = train_exit_distill(DN, DK, z, zf, b, T[t], g);
        double zd[DN * DK];
        for (int i = 0; i < DN * DK; i++) zd[i] = z[i];
        /* the returned T^2 KL: the objective at b = 1 */
        const double want_kl = distill_objective(DN, DK, zd, zf, y, 1.0, T[t]);
        CHECK(fabs(kl - want_kl) < 1e-9 * fmax(1.0, want_kl), "T %g: KL %.12g, want %.12g", T[t], kl, want_kl);
        for (int i = 0; i < DN * DK; i++) {
            const double h = 1e-5, keep = zd[i];
            zd[i] = keep + h;
            const double up = distill_objective(DN, DK, zd, zf, y, b, T[t]);
            zd[i] = keep - h;
            const double down = distill_objective(DN, DK, zd, zf, y, b, T[t]);
            zd[i] = keep;
            const double fd = (up - down) / (2 * h);
            CHECK(fabs(g[i] - fd) < 1e-5 + 1e-4 * fabs(fd), "T %g, logit %d: gradient %.8g, finite difference %.8g",
                  T[t], i, g[i], fd);
        }
        /* b = 0: the cross-entropy's gradient untouched */
        memcpy(g, g0, sizeof g);
        train_exit_distill(DN, DK, z, zf, 0.0, T[t], g);
        CHECK(!memcmp(g, g0, sizeof g), "b = 0 changes the gradient");
    }
}

static void test_distill_trains(void) {
    ts_model *m = exit_model(1, 6);
    if (!m) return;
    ts_train_config cfg = exit_train_config(8, 16, 0.05f);
    cfg.exit_distill = 0.5f;
    ts_trainer *tr = NULL;
    CHECK(ts_trainer_create(g_ctx, m, quadrants(), quadrants(), &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    losses l = {0};
    ts_train_hooks hooks = {NULL, on_epoch, &l};
    CHECK(tr && ts_trainer_run(g_ctx, tr, &hooks) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(l.n == 8 && l.final[7] < 0.5 * l.final[0] && l.exit[7] < 0.7 * l.exit[0],
          "final %.4f -> %.4f, exit %.4f -> %.4f", l.final[0], l.final[7], l.exit[0], l.exit[7]);
    CHECK(l.val_exit[7] >= 0.5, "validation exit top-1 %.3f", l.val_exit[7]);
    ts_trainer_free(tr);
    cfg.exit_distill = 1.5f;
    CHECK(ts_trainer_create(g_ctx, m, quadrants(), NULL, &cfg, &tr) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "distill"),
          "weight 1.5: %s", ts_ctx_error(g_ctx));
    cfg.exit_distill = 0.5f;
    cfg.exit_temperature = 0.0f;
    CHECK(ts_trainer_create(g_ctx, m, quadrants(), NULL, &cfg, &tr) == TS_EINVAL &&
          strstr(ts_ctx_error(g_ctx), "temperature"), "temperature 0: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
}

static void test_weight_transfer(void) {
    for (int transfer = 0; transfer < 2; transfer++) {
        ts_model *m = exit_model(1, 7);
        if (!m) return;
        ts_train_config cfg = exit_train_config(1, 64, 1e-12f); /* a step that changes nothing: the copy shows */
        cfg.exit_transfer = (float)transfer;
        ts_trainer *tr = NULL;
        CHECK(ts_trainer_create(g_ctx, m, quadrants(), NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(tr && ts_trainer_run(g_ctx, tr, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        const layer *src = &m->layers[layer_index(m, "exit.dw")], *dst = &m->layers[layer_index(m, "view.dw")];
        const float *a = tensor_data(m, src->weight), *b = tensor_data(m, dst->weight);
        double diff = 0;
        for (int64_t i = 0; i < m->tensors[src->weight].numel; i++) diff = fmax(diff, fabs(a[i] - b[i]));
        if (transfer) CHECK(diff < 1e-6, "transfer on: view weights differ from the exit's by %g", diff);
        else CHECK(diff > 1e-3, "transfer off: view weights equal the exit's (%g)", diff);
        ts_trainer_free(tr);
        ts_model_free(m);
    }
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_block_shape);
    RUN(test_text_and_file_round_trip);
    RUN(test_builder_checks);
    RUN(test_joint_loss_gradients);
    RUN(test_predict_exit);
    RUN(test_predict_exit_shuffle);
    RUN(test_constant_time_refused);
    RUN(test_training_lowers_both_losses);
    RUN(test_weight_transfer);
    RUN(test_distill_gradient);
    RUN(test_distill_trains);
    char path[256];
    snprintf(path, sizeof path, "%s/exit.tsr", g_tmp);
    unlink(path);
    rmdir(g_tmp);
    test_free_dataset(g_quadrants);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_early_exit");
}
