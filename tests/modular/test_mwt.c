/* Modularization while training, MwT-style (src/modular/mwt.c, src/ops/mask_loss_ref.c,
 * the modular switch of src/train/trainer.c).
 *
 * The mask losses equal PyTorch's (tests/fixtures/mwt_loss.tsfx, written by
 * tests/fixtures/gen_mwt_fixture.py) in value and gradient, and their gradient equals
 * finite differences, edge cases included (no pair of a kind, a zero row, one sample).
 * The generators are wired as MwT's: named after their batch norm, fc1 halving from
 * 128 channels, fc2's bias 1; with masks forced to 1 the model computes what the
 * original does; the gradient of the whole modular objective (cross-entropy plus the
 * mask losses) through the generators equals finite differences. The modular model
 * saves, loads and predicts the same. Modular training on synthetic textures lowers
 * the coupling loss, reports both terms, refuses a model without generators, and a
 * checkpointed run resumes bit-identically. */
#include "tessera.h"

#include "common/fixture.h"
#include "common/test.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "train/train.h"
#include "modular/modular.h"

#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_mwt_XXXXXX";

/* MwT's weights */
static const float ALPHA = 0.5f, BETA = 1.5f;

/* ---- the mask losses */

/* alpha * mean_l cohesion_l + beta * mean_l coupling_l over nl layers, with gradients
 * into d[l] (zeroed here). */
static double layers_loss(int n, int nl, const int *c, float *const *m, const int32_t *y, float *const *d, double *coh,
                          double *coup) {
    size_t work = 1;
    for (int l = 0; l < nl; l++)
        if (mask_pair_loss_work(n, c[l]) > work) work = mask_pair_loss_work(n, c[l]);
    double *w = malloc(work * sizeof *w);
    if (!w) exit(2);
    *coh = *coup = 0.0;
    for (int l = 0; l < nl; l++) {
        double a, b;
        if (d[l]) memset(d[l], 0, sizeof(float) * (size_t)n * (size_t)c[l]);
        mask_pair_loss_ref(n, c[l], m[l], y, ALPHA / (float)nl, BETA / (float)nl, d[l], w, &a, &b);
        *coh += a / nl;
        *coup += b / nl;
    }
    free(w);
    return ALPHA * *coh + BETA * *coup;
}

static void test_loss_torch_parity(void) {
    char err[256];
    fixture *fx = fixture_load("tests/fixtures/mwt_loss.tsfx", err, sizeof err);
    CHECK(fx != NULL, "fixture: %s", err);
    if (!fx) return;
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "case%d.labels", k);
        const fixture_tensor *lab = fixture_find(fx, name);
        CHECK(lab != NULL, "%s missing", name);
        if (!lab) break;
        const int n = (int)lab->numel;
        int32_t y[64];
        for (int i = 0; i < n && i < 64; i++) y[i] = (int32_t)lab->data[i];
        int c[8], nl = 0;
        float *m[8], *d[8];
        const fixture_tensor *g[8];
        for (; nl < 8; nl++) {
            snprintf(name, sizeof name, "case%d.masks%d", k, nl);
            const fixture_tensor *t = fixture_find(fx, name);
            if (!t) break;
            snprintf(name, sizeof name, "case%d.grad%d", k, nl);
            g[nl] = fixture_find(fx, name);
            CHECK(g[nl] != NULL && t->ndim == 2 && t->dims[0] == n, "case %d layer %d", k, nl);
            if (!g[nl]) break;
            c[nl] = (int)t->dims[1];
            m[nl] = t->data;
            d[nl] = test_falloc((size_t)t->numel);
        }
        double coh, coup;
        const double loss = layers_loss(n, nl, c, m, y, d, &coh, &coup);
        snprintf(name, sizeof name, "case%d.loss", k);
        const fixture_tensor *tl = fixture_find(fx, name);
        snprintf(name, sizeof name, "case%d.cohesion", k);
        const fixture_tensor *tc = fixture_find(fx, name);
        snprintf(name, sizeof name, "case%d.coupling", k);
        const fixture_tensor *tp = fixture_find(fx, name);
        CHECK(tl && tc && tp, "case %d: loss values missing", k);
        if (tl && tc && tp) {
            CHECK_NEAR(loss, tl->data[0], 1e-5, 1e-6);
            CHECK_NEAR(coh, tc->data[0], 1e-5, 1e-6);
            CHECK_NEAR(coup, tp->data[0], 1e-5, 1e-6);
        }
        for (int l = 0; l < nl; l++) {
            snprintf(name, sizeof name, "case %d grad %d", k, l);
            CHECK(test_allclose(name, d[l], g[l]->data, (size_t)g[l]->numel, 1e-5, 1e-6), "%s", name);
            free(d[l]);
        }
    }
    fixture_free(fx);
}

/* Central differences of the one-layer loss at every mask value, against mask_pair_loss_ref. */
static void fd_check(const char *what, int n, int c, float *m, const int32_t *y) {
    float *d = test_falloc((size_t)n * c), *dd = test_falloc((size_t)n * c);
    float *mp[1] = {m}, *dp[1] = {d}, *none[1] = {NULL};
    double coh, coup;
    layers_loss(n, 1, &c, mp, y, dp, &coh, &coup);
    for (int i = 0; i < n * c; i++) {
        const float keep = m[i], h = 1e-3f;
        m[i] = keep + h;
        const float up = m[i];
        const double lp = layers_loss(n, 1, &c, mp, y, none, &coh, &coup);
        m[i] = keep - h;
        const float down = m[i];
        const double lm = layers_loss(n, 1, &c, mp, y, none, &coh, &coup);
        m[i] = keep;
        dd[i] = (float)((lp - lm) / ((double)up - (double)down));
    }
    CHECK(test_allclose(what, d, dd, (size_t)n * c, 1e-3, 1e-5), "%s", what);
    free(d);
    free(dd);
}

static void test_loss_finite_differences(void) {
    enum { N = 10, C = 6 };
    float m[N * C];
    test_fill_uniform(m, N * C, 7, 0.05f, 1.0f);
    int32_t y[N] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 2};
    fd_check("three classes", N, C, m, y);
    int32_t one[N] = {0};
    fd_check("one class: cohesion only", N, C, m, one);
    int32_t all[N] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    fd_check("all distinct: coupling only", N, C, m, all);

    /* the terms without their pairs are 0, and one sample has no pair at all */
    double w[N * C + N + C], coh, coup;
    float d[N * C];
    memset(d, 0, sizeof d);
    mask_pair_loss_ref(N, C, m, one, 1, 1, d, w, &coh, &coup);
    CHECK(coup == 0.0 && coh > 0.0 && coh < 1.0, "one class: cohesion %g coupling %g", coh, coup);
    mask_pair_loss_ref(N, C, m, all, 1, 1, NULL, w, &coh, &coup);
    CHECK(coh == 0.0 && coup > 0.0 && coup <= 1.0, "distinct: cohesion %g coupling %g", coh, coup);
    memset(d, 0, sizeof d);
    mask_pair_loss_ref(1, C, m, y, 1, 1, d, w, &coh, &coup);
    int zero = 1;
    for (int k = 0; k < C; k++) zero &= d[k] == 0.0f;
    CHECK(coh == 0.0 && coup == 0.0 && zero, "one sample: %g %g", coh, coup);

    /* a row of zeros (every kernel closed) gives cosines of 0 and finite gradients */
    for (int k = 0; k < C; k++) m[k] = 0.0f;
    memset(d, 0, sizeof d);
    mask_pair_loss_ref(N, C, m, y, 1, 1, d, w, &coh, &coup);
    int finite = 1;
    for (int i = 0; i < N * C; i++) finite &= isfinite(d[i]);
    CHECK(finite && isfinite(coh) && isfinite(coup), "zero row: %g %g", coh, coup);
}

/* ---- the generators */

static const char *ARCH = "input     shape=3x8x8 classes=4\n"
                          "conv2d    name=conv1 out=8 kernel=3 padding=1\n"
                          "batchnorm name=bn1\n"
                          "relu      name=relu1\n"
                          "conv2d    name=conv2 out=128 kernel=3 padding=1\n"
                          "batchnorm name=bn2\n"
                          "relu      name=relu2\n"
                          "conv2d    name=conv3 out=4 kernel=1\n" /* no batch norm: no generator */
                          "relu      name=relu3\n"
                          "globalavgpool name=gap\n"
                          "dense     name=fc out=classes\n";

static ts_model *make(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "test", NULL, 0, seed, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return m;
}

static ts_model *gated(const ts_model *m, uint64_t seed) {
    ts_model *g = NULL;
    CHECK(ts_model_add_mask_generators(g_ctx, m, seed, &g) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return g;
}

static int find_layer(const ts_model *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name)) return i;
    return -1;
}

/* Sets every generator's fc2 to weight 0, bias 20: tanh gives 1, every mask is 1. */
static void open_all(ts_model *g) {
    for (int i = 0; i < g->nlayers; i++) {
        const layer *l = &g->layers[i];
        const size_t n = strlen(l->name);
        if (n < 8 || strcmp(l->name + n - 8, ".gen.fc2")) continue;
        memset(tensor_data(g, l->weight), 0, sizeof(float) * (size_t)g->tensors[l->weight].numel);
        float *b = tensor_data(g, l->bias_t);
        for (int64_t k = 0; k < g->tensors[l->bias_t].numel; k++) b[k] = 20.0f;
    }
    ts_model_params_changed(g);
}

static void test_generators_wiring(void) {
    ts_model *m = make(ARCH, 3), *g = m ? gated(m, 4) : NULL;
    if (!g) {
        ts_model_free(m);
        return;
    }
    const char *want[] = {"bn1.gen.pool", "bn1.gen.fc1", "bn1.gen.relu", "bn1.gen.fc2", "bn1.gen.tanh", "bn1.gen.mask",
                          "bn1.gen.shape", "bn1.gated", "bn2.gen.mask", "bn2.gated"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) CHECK(find_layer(g, want[i]) >= 0, "no layer %s", want[i]);
    CHECK(find_layer(g, "relu3.gated") < 0 && find_layer(g, "conv3.gen.mask") < 0, "conv3 has no batch norm");
    CHECK(g->nlayers == m->nlayers + 16, "%d layers from %d", g->nlayers, m->nlayers);
    /* fc1: C_in -> C_out, halved from 128 channels; no bias. fc2: bias 1. */
    const layer *f1 = &g->layers[find_layer(g, "bn1.gen.fc1")], *f2 = &g->layers[find_layer(g, "bn2.gen.fc1")];
    CHECK(f1->features == 8 && !f1->bias && g->tensors[f1->weight].shape.dims[1] == 3, "bn1 fc1 %d", f1->features);
    CHECK(f2->features == 64 && !f2->bias && g->tensors[f2->weight].shape.dims[1] == 8, "bn2 fc1 %d", f2->features);
    const layer *b2 = &g->layers[find_layer(g, "bn2.gen.fc2")];
    CHECK(b2->features == 128 && b2->bias, "bn2 fc2");
    const float *bias = tensor_data(g, b2->bias_t);
    int ones = 1;
    for (int k = 0; k < 128; k++) ones &= bias[k] == 1.0f;
    CHECK(ones, "fc2 bias starts at 1");
    /* the generator pools the conv's input, the mask multiplies the batch norm */
    const layer *pool = &g->layers[find_layer(g, "bn2.gen.pool")];
    CHECK(!strcmp(g->layers[pool->inputs[0]].name, "relu1"), "bn2's generator reads %s", g->layers[pool->inputs[0]].name);
    const layer *relu2 = &g->layers[find_layer(g, "relu2")];
    CHECK(!strcmp(g->layers[relu2->inputs[0]].name, "bn2.gated"), "relu2 reads %s", g->layers[relu2->inputs[0]].name);
    /* the original tensors are copied */
    ts_tensor_info a, b;
    int same = 1;
    for (int t = 0; t < ts_model_tensor_count(m); t++) {
        ts_model_tensor(m, t, &a);
        int u = ts_model_find_tensor(g, a.name);
        if (u < 0 || ts_model_tensor(g, u, &b) || b.numel != a.numel || memcmp(a.data, b.data, sizeof(float) * (size_t)a.numel))
            same = 0;
    }
    CHECK(same, "the original tensors are not all copied");
    /* twice: the gated batch norms stay as they are */
    ts_model *gg = gated(g, 5);
    if (gg) CHECK(gg->nlayers == g->nlayers, "generators added twice: %d layers from %d", gg->nlayers, g->nlayers);
    ts_model_free(gg);

    /* every mask 1: the original's outputs */
    open_all(g);
    enum { N = 5 };
    float x[N * 3 * 64], lm[N * 4], lg[N * 4];
    test_fill_uniform(x, sizeof x / sizeof x[0], 11, -1, 1);
    CHECK(ts_model_predict(g_ctx, m, x, N, lm) == TS_OK && ts_model_predict(g_ctx, g, x, N, lg) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    CHECK(test_allclose("masks of 1", lg, lm, N * 4, 1e-5, 1e-6), "inference");
    CHECK(ts_model_forward_train(g_ctx, m, x, N, lm, 1) == TS_OK && ts_model_forward_train(g_ctx, g, x, N, lg, 1) == TS_OK,
          "%s", ts_ctx_error(g_ctx));
    CHECK(test_allclose("masks of 1, training", lg, lm, N * 4, 1e-5, 1e-6), "training forward");
    ts_model_free(g);
    ts_model_free(m);
}

/* The modular objective of a training forward: CE + alpha mean coh + beta mean coup
 * over the mask layers; with grads (the mask-loss gradients, one per mask layer). */
typedef struct objective {
    int nl;
    int layer[8], c[8];
    float *d[8];
} objective;

static double objective_eval(ts_model *g, objective *o, const float *x, int n, const int32_t *y, float *dlogits) {
    float logits[16 * 4];
    if (ts_model_forward_train(g_ctx, g, x, n, logits, 1)) return NAN;
    double loss = ts_softmax_cross_entropy(n, 4, logits, y, 0, dlogits), coh, coup;
    float *m[8], *none[8] = {0};
    for (int l = 0; l < o->nl; l++) m[l] = g->exec.ls[o->layer[l]].out;
    return loss + layers_loss(n, o->nl, o->c, m, y, dlogits ? o->d : none, &coh, &coup);
}

static int add_mask_grad(void *user, ts_model *m, int li) {
    objective *o = user;
    for (int l = 0; l < o->nl; l++)
        if (o->layer[l] == li)
            for (int64_t i = 0; i < (int64_t)m->exec.n * o->c[l]; i++) m->exec.ls[li].grad[i] += o->d[l][i];
    return 0;
}

static void test_objective_gradient(void) {
    static const char *SMALL = "input     shape=3x6x6 classes=4\n"
                               "conv2d    name=conv1 out=6 kernel=3 padding=1\n"
                               "batchnorm name=bn1\n"
                               "relu      name=relu1\n"
                               "conv2d    name=conv2 out=5 kernel=3 padding=1\n"
                               "batchnorm name=bn2\n"
                               "relu      name=relu2\n"
                               "globalavgpool name=gap\n"
                               "dense     name=fc out=classes\n";
    ts_model *m = make(SMALL, 21), *g = m ? gated(m, 22) : NULL;
    ts_model_free(m);
    if (!g) return;
    enum { N = 8 };
    float x[N * 3 * 36], dlogits[N * 4];
    test_fill_uniform(x, sizeof x / sizeof x[0], 23, -1, 1);
    const int32_t y[N] = {0, 1, 2, 3, 0, 1, 1, 2};
    objective o = {2, {find_layer(g, "bn1.gen.mask"), find_layer(g, "bn2.gen.mask")}, {6, 5}, {0}};
    for (int l = 0; l < 2; l++) o.d[l] = test_falloc((size_t)N * o.c[l]);
    ts_tensor_info t;
    /* not conv1.weight: a step in it moves every unit of a standardized channel, and
     * the ReLU kinks crossed then spoil differences at any step float allows (its
     * gradient matches without the ReLU) */
    const char *names[] = {"bn1.gen.fc2.weight", "bn1.gen.fc1.weight", "bn2.gen.fc2.bias", "bn2.gen.fc1.weight",
                           "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight"};
    CHECK(isfinite(objective_eval(g, &o, x, N, y, dlogits)), "%s", ts_ctx_error(g_ctx));
    CHECK(model_backward_observe(g_ctx, g, dlogits, add_mask_grad, &o) == TS_OK, "%s", ts_ctx_error(g_ctx));
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const int ti = ts_model_find_tensor(g, names[k]);
        CHECK(ti >= 0 && ts_model_tensor(g, ti, &t) == TS_OK, "%s", names[k]);
        if (ti < 0) continue;
        float *grad = test_falloc((size_t)t.numel);
        memcpy(grad, t.grad, sizeof(float) * (size_t)t.numel);
        int bad = 0;
        double worst = 0;
        for (int64_t i = 0; i < t.numel && i < 24; i++) {
            const float keep = t.data[i], h = 2e-3f;
            t.data[i] = keep + h;
            ts_model_params_changed(g);
            const double lp = objective_eval(g, &o, x, N, y, NULL);
            t.data[i] = keep - h;
            ts_model_params_changed(g);
            const double lm = objective_eval(g, &o, x, N, y, NULL);
            t.data[i] = keep;
            ts_model_params_changed(g);
            const double fd = (lp - lm) / (2.0 * h), err = fabs(fd - grad[i]);
            if (err > 2e-3 + 2e-2 * fabs(fd)) bad++;
            if (err > worst) worst = err;
        }
        CHECK(bad == 0, "%s: %d gradients off finite differences (worst %g)", names[k], bad, worst);
        free(grad);
    }
    for (int l = 0; l < 2; l++) free(o.d[l]);
    ts_model_free(g);
}

static void test_save_load(void) {
    ts_model *m = make(ARCH, 31), *g = m ? gated(m, 32) : NULL, *back = NULL, *reparsed = NULL;
    ts_model_free(m);
    if (!g) return;
    char path[256];
    snprintf(path, sizeof path, "%s/gated.tsr", g_tmp);
    CHECK(ts_model_save(g_ctx, g, path) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_load(g_ctx, path, &back) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_model_from_arch(g_ctx, ts_model_arch_text(g), "written", NULL, 0, 1, &reparsed) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (back) {
        enum { N = 3 };
        float x[N * 3 * 64], a[N * 4], b[N * 4];
        test_fill_uniform(x, sizeof x / sizeof x[0], 33, -1, 1);
        CHECK(ts_model_predict(g_ctx, g, x, N, a) == TS_OK && ts_model_predict(g_ctx, back, x, N, b) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        CHECK(!memcmp(a, b, sizeof a), "loaded model predicts differently");
        CHECK(back->nlayers == g->nlayers, "layers");
    }
    if (reparsed) CHECK(reparsed->nlayers == g->nlayers, "the architecture text reads back");
    ts_model_free(back);
    ts_model_free(reparsed);
    ts_model_free(g);
    unlink(path);
}

/* ---- training */

static const char *TEXTURE_ARCH = "input     shape=1x8x8 classes=4\n"
                          "conv2d    name=conv1 out=8 kernel=3 padding=1\n"
                          "batchnorm name=bn1\n"
                          "relu      name=relu1\n"
                          "conv2d    name=conv2 out=8 kernel=3 padding=1\n"
                          "batchnorm name=bn2\n"
                          "relu      name=relu2\n"
                          "globalavgpool name=gap\n"
                          "dense     name=fc out=classes\n";

typedef struct reports {
    int n;
    ts_epoch_report r[64];
    int bad_progress;
    int64_t stop_epoch, stop_step; /* stop after this epoch or step (-1, 0: never) */
} reports;

static int on_step(const ts_train_progress *p, void *user) {
    reports *r = user;
    if (!(p->cohesion >= 0 && p->cohesion <= 2 && p->coupling >= 0 && p->coupling <= 1)) r->bad_progress++;
    return r->stop_step > 0 && p->step == r->stop_step;
}

static int on_epoch(const ts_epoch_report *e, void *user) {
    reports *r = user;
    if (e->epoch >= 0 && e->epoch < 64) r->r[e->epoch] = *e;
    r->n++;
    return e->epoch == r->stop_epoch;
}

static void modular_config(ts_train_config *cfg) {
    ts_train_config_default(cfg);
    cfg->epochs = 40;
    cfg->batch = 32;
    cfg->lr = 0.05f;
    cfg->optim.momentum = 0.9f;
    cfg->optim.nesterov = 1;
    cfg->modular = 1;
    cfg->seed = 41;
}

/* Images 1x8x8 whose class is a texture, which a global average of convolution maps
 * (what a generator sees) can tell apart, unlike the position of test_quadrant_dataset:
 * horizontal stripes, vertical stripes, a checkerboard, a flat field; plus noise. */
static ts_dataset *texture_dataset(int64_t count, uint64_t seed) {
    ts_dataset *ds = test_quadrant_dataset(count, seed); /* the arrays, labels and name */
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 7;
    for (int64_t i = 0; i < count; i++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                const int c = ds->labels[i];
                const int on = c == 0 ? y & 1 : c == 1 ? x & 1 : c == 2 ? (x + y) & 1 : 1;
                ds->images[i * 64 + y * 8 + x] = (uint8_t)((s >> 40) % 60 + (on ? (c == 3 ? 90 : 170) : 0));
            }
    snprintf(ds->name, sizeof ds->name, "textures-%llu", (unsigned long long)seed);
    return ds;
}

/* ---- decomposition of the trained modular model (--method mwt) */

/* Independently of decompose_mwt.c: per class and channel of generator mask layer
 * `layer`, the training samples whose mask is > 0 in inference. */
typedef struct open_count {
    int C;
    int32_t label;
    int64_t *count; /* (classes, C) */
} open_count;

static int count_one(void *user, int layer, int64_t first, int n, const float *out) {
    open_count *o = user;
    (void)layer;
    (void)first;
    for (int ch = 0; ch < o->C && n == 1; ch++) o->count[o->label * o->C + ch] += out[ch] > 0.0f;
    return n != 1;
}

static int count_open(ts_model *g, const ts_dataset *ds, int layer, int64_t *count /* (classes, C) */) {
    ts_preprocess pp;
    if (ts_model_get_preprocess(g_ctx, g, &pp)) return 0;
    open_count o = {(int)g->layers[layer].out.dims[0], 0, count};
    const ts_capture cap = {&layer, 1, count_one, &o};
    float x[64], logits[8];
    memset(count, 0, sizeof *count * (size_t)g->classes * (size_t)o.C);
    for (int64_t i = 0; i < ds->count; i++) {
        ts_preprocess_images(&pp, ds->images + i * 64, 1, 1, 8, 8, x);
        o.label = ds->labels[i];
        if (ts_model_predict_capture(g_ctx, g, x, 1, logits, &cap)) return 0;
    }
    return 1;
}

static void decompose_checks(ts_model *g, const ts_dataset *train) {
    ts_decompose_config dc;
    ts_decompose_config_default(&dc);
    dc.method = TS_DECOMPOSE_MWT;
    ts_module **mods = NULL;
    int nm = 0;
    CHECK(ts_decompose(g_ctx, g, train, &dc, NULL, 0, NULL, NULL, &mods, &nm) == TS_OK && nm == 4, "%s",
          ts_ctx_error(g_ctx));
    if (!mods) return;
    /* which kernels each module keeps, against the counts made here: each gated output
     * is read by its ReLU alone, so the dropped kernels are the ReLU's dropped channels */
    int64_t per[4] = {0}, dropped = 0;
    for (int64_t i = 0; i < train->count; i++) per[train->labels[i]]++;
    for (int gi = 1; gi <= 2; gi++) {
        char mname[32], rname[32];
        snprintf(mname, sizeof mname, "bn%d.gen.mask", gi);
        snprintf(rname, sizeof rname, "relu%d", gi);
        const int mask = find_layer(g, mname), relu = find_layer(g, rname);
        int64_t count[4 * 8];
        const int counted = mask >= 0 && relu >= 0 && count_open(g, train, mask, count);
        CHECK(counted, "counting the open kernels of %s", mname);
        for (int c = 0; c < nm && counted; c++) {
            const ts_module *mod = mods[c];
            const module_mask *mk = NULL;
            for (int k = 0; k < mod->nmasks; k++)
                if (mod->masks[k].layer == relu) mk = &mod->masks[k];
            CHECK(mk != NULL, "no mask at %s", rname);
            if (!mk) break;
            float theta = 0.9f; /* lowered while the layer would keep nothing */
            for (int any = 0; !any; theta -= 0.05f)
                for (int ch = 0; ch < 8; ch++) any |= (double)count[c * 8 + ch] >= (double)theta * (double)per[c];
            theta += 0.05f;
            for (int ch = 0; ch < 8; ch++) {
                const int want = (double)count[c * 8 + ch] >= (double)theta * (double)per[c];
                CHECK(mask_get(mk, ch * 64) == want && mask_get(mk, ch * 64 + 63) == want,
                      "%s class %d kernel %d: kept %d, %lld of %lld samples open it", mname, c, ch,
                      mask_get(mk, ch * 64), (long long)count[c * 8 + ch], (long long)per[c]);
                dropped += !want;
            }
        }
    }
    for (int c = 0; c < nm; c++) {
        ts_module_info in;
        ts_module_info_get(mods[c], &in);
        CHECK(in.method == TS_DECOMPOSE_MWT && in.cohesion > 0 && in.cohesion <= 1 && in.coupling > 0 &&
                  in.coupling <= 1,
              "class %d: cohesion %g coupling %g", c, in.cohesion, in.coupling);
    }
    printf("note: modular textures: the 4 modules drop %lld of their 64 kernels\n", (long long)dropped);
    CHECK(dropped > 0, "no module drops a kernel: nothing to slice");
    /* the module alone (sliced) scores as the masked origin, margin written out here */
    for (int c = 0; c < nm; c++) {
        ts_model *alone = NULL, *masked = NULL;
        CHECK(ts_module_model(g_ctx, mods[c], &alone) == TS_OK && module_masked_origin(g_ctx, mods[c], &masked) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        if (alone && masked) {
            enum { N = 16 };
            ts_preprocess pp;
            ts_model_get_preprocess(g_ctx, g, &pp);
            float x[N * 64], score[N], logits[N * 4], margin[N];
            ts_preprocess_images(&pp, train->images, N, 1, 8, 8, x);
            CHECK(ts_model_predict(g_ctx, alone, x, N, score) == TS_OK &&
                      ts_model_predict(g_ctx, masked, x, N, logits) == TS_OK,
                  "%s", ts_ctx_error(g_ctx));
            for (int i = 0; i < N; i++) {
                double rest = 0;
                for (int j = 0; j < 4; j++) rest += j == c ? 0 : logits[i * 4 + j];
                margin[i] = (float)(logits[i * 4 + c] - rest / 3);
            }
            CHECK(test_allclose("sliced module", score, margin, N, 1e-4, 1e-5), "class %d", c);
        }
        /* a module that drops kernels is smaller than one that keeps them all */
        ts_module *whole = NULL;
        ts_model *whole_alone = NULL;
        CHECK(ts_module_from_model(g_ctx, g, c, &whole) == TS_OK && ts_module_model(g_ctx, whole, &whole_alone) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        if (alone && whole_alone && mods[c]->info.kernels_kept < mods[c]->info.kernels)
            CHECK(ts_model_param_count(alone) < ts_model_param_count(whole_alone), "class %d: %lld parameters of %lld",
                  c, (long long)ts_model_param_count(alone), (long long)ts_model_param_count(whole_alone));
        ts_model_free(whole_alone);
        ts_module_free(whole);
        ts_model_free(alone);
        ts_model_free(masked);
    }
    ts_modules_free(mods, nm);
    /* a model without generators is refused */
    ts_model *plain = make(TEXTURE_ARCH, 44);
    mods = NULL;
    if (plain) CHECK(ts_decompose(g_ctx, plain, train, &dc, NULL, 0, NULL, NULL, &mods, &nm) == TS_EINVAL && !mods,
                     "plain model decomposed with --method mwt");
    ts_model_free(plain);
}

static void test_train_modular(void) {
    ts_dataset *train = texture_dataset(256, 41);
    ts_model *m = make(TEXTURE_ARCH, 42), *g = m ? gated(m, 43) : NULL;
    ts_train_config cfg;
    modular_config(&cfg);
    /* a model without generators is refused */
    ts_trainer *tr = NULL;
    CHECK(ts_trainer_create(g_ctx, m, train, NULL, &cfg, &tr) == TS_EINVAL && !tr, "no generators: accepted");
    CHECK(strstr(ts_ctx_error(g_ctx), "mask generators") != NULL, "message: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    if (!g) {
        test_free_dataset(train);
        return;
    }
    reports full;
    memset(&full, 0, sizeof full);
    full.stop_epoch = -1;
    CHECK(ts_trainer_create(g_ctx, g, train, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_train_hooks hooks = {on_step, on_epoch, &full};
    if (tr) CHECK(ts_trainer_run(g_ctx, tr, &hooks) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_trainer_free(tr);
    CHECK(full.n == cfg.epochs && full.bad_progress == 0, "%d reports, %d bad", full.n, full.bad_progress);
    const ts_epoch_report *first = &full.r[0], *last = &full.r[cfg.epochs - 1];
    /* every mask starts near tanh(1) in every channel, all cosines near 1, where the
     * coupling gradient is small: the loss leaves 1 slowly, then faster (MwT trains for
     * 200 epochs; here 40 short ones reach about 0.76) while same-class masks stay alike */
    CHECK(first->coupling > 0.99 && last->coupling < 0.9, "coupling loss %.5f -> %.5f", first->coupling,
          last->coupling);
    CHECK(last->train_acc > 0.9, "accuracy %.3f", last->train_acc);
    CHECK(first->cohesion >= 0 && last->cohesion < 0.05, "cohesion loss %.4f -> %.4f", first->cohesion, last->cohesion);
    printf("note: modular textures: coupling loss %.5f -> %.5f, cohesion loss %.5f -> %.5f, accuracy %.1f%%\n",
           first->coupling, last->coupling, first->cohesion, last->cohesion, 100 * last->train_acc);

    /* stopped in the middle of epoch 3 (8 steps an epoch) and checkpointed, then
     * resumed: the same model, and the same reports from that epoch on (its running
     * mask-loss sums travel in the checkpoint) */
    ts_model *m2 = make(TEXTURE_ARCH, 42), *g2 = m2 ? gated(m2, 43) : NULL, *g3 = NULL;
    ts_model_free(m2);
    reports part;
    memset(&part, 0, sizeof part);
    part.stop_epoch = -1;
    part.stop_step = 2 * 8 + 3;
    char ck[256];
    snprintf(ck, sizeof ck, "%s/modular.ckpt", g_tmp);
    if (g2) CHECK(ts_trainer_create(g_ctx, g2, train, NULL, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (g2 && tr) {
        hooks.user = &part;
        CHECK(ts_trainer_run(g_ctx, tr, &hooks) == TS_ECANCELED, "stopped");
        CHECK(ts_checkpoint_save(g_ctx, tr, ck) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_trainer_free(tr);
        tr = NULL;
    }
    ts_train_config cfg2;
    CHECK(ts_checkpoint_load_model(g_ctx, ck, &g3, &cfg2) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (g3) {
        CHECK(cfg2.modular == 1 && cfg2.mwt_alpha == ALPHA && cfg2.mwt_beta == BETA, "modular settings not restored");
        CHECK(ts_trainer_create(g_ctx, g3, train, NULL, &cfg2, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (tr) CHECK(ts_checkpoint_restore(g_ctx, tr, ck) == TS_OK, "%s", ts_ctx_error(g_ctx));
        reports rest;
        memset(&rest, 0, sizeof rest);
        rest.stop_epoch = -1;
        hooks.user = &rest;
        if (tr) CHECK(ts_trainer_run(g_ctx, tr, &hooks) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_trainer_free(tr);
        tr = NULL;
        for (int e = 2; e < cfg.epochs; e++)
            CHECK(rest.r[e].coupling == full.r[e].coupling && rest.r[e].cohesion == full.r[e].cohesion &&
                      rest.r[e].train_loss == full.r[e].train_loss,
                  "epoch %d after resume: coupling %.17g vs %.17g", e, rest.r[e].coupling, full.r[e].coupling);
        int same = g3->nparams == g->nparams && !memcmp(g3->params, g->params, sizeof(float) * g->nparams);
        CHECK(same, "resumed parameters differ from the uninterrupted run's");
        /* and a plain trainer refuses the modular checkpoint */
        cfg2.modular = 0;
        CHECK(ts_trainer_create(g_ctx, g3, train, NULL, &cfg2, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
        if (tr) CHECK(ts_checkpoint_restore(g_ctx, tr, ck) == TS_EINVAL, "plain resume of a modular checkpoint");
        ts_trainer_free(tr);
    }
    unlink(ck);
    ts_model_free(g3);
    ts_model_free(g2);
    decompose_checks(g, train);
    ts_model_free(g);
    test_free_dataset(train);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_loss_torch_parity);
    RUN(test_loss_finite_differences);
    RUN(test_generators_wiring);
    RUN(test_objective_gradient);
    RUN(test_save_load);
    RUN(test_train_modular);
    rmdir(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_mwt");
}
