/* The resize layer kind: PyTorch parity of the forward (through the model) and of the
 * input gradient (the kernel) for F.interpolate's nearest, nearest-exact and bilinear
 * with align_corners on and off, scale 2, a scale of 1.5 and sizes that do not divide
 * (tests/fixtures/resize.tsfx, from gen_resize_fixture.py); the backward as the exact
 * transpose of the forward for every mode, coordinate and rounding rule; and the
 * architecture text: keys written back as read, and the errors. */
#include "common/fixture.h"
#include "common/test.h"
#include "nn/nn.h"

#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;

/* the layer's keys for each case of gen_resize_fixture.py, in its order */
static const char *const CASES[] = {
    "scale=2 coord=asymmetric nearest=floor",              /* nearest, scale_factor=2 */
    "size=7x6 coord=asymmetric nearest=floor",             /* nearest, size (7, 6) */
    "size=3x3 coord=asymmetric nearest=floor",             /* nearest, size (3, 3) */
    "size=7x6 coord=half_pixel nearest=round_prefer_ceil", /* nearest-exact */
    "scale=2 mode=linear",                                 /* bilinear */
    "scale=2 mode=linear coord=align_corners",
    "size=7x6 mode=linear",
    "size=3x3 mode=linear coord=align_corners",
    "scale=1.5 mode=linear",
    "size=2x3 mode=linear",
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

static ts_model *build(const char *keys, const char *input) {
    char text[256];
    snprintf(text, sizeof text, "input shape=%s\nresize name=t %s\n", input, keys);
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, text, "resize.arch", NULL, 0, 1, &m) == TS_OK, "%s: %s", keys,
          ts_ctx_error(g_ctx));
    return m;
}

/* the taps of layer l of m (its input of ih x iw) into ty (oh) and tx (ow) */
static void taps_of(const layer *l, int ih, int iw, int oh, int ow, resize_tap *ty, resize_tap *tx) {
    resize_taps((resize_mode)l->resize_mode, (resize_coord)l->coord_mode, (resize_nearest)l->nearest_mode, ih, oh,
                l->scale_h, ty);
    resize_taps((resize_mode)l->resize_mode, (resize_coord)l->coord_mode, (resize_nearest)l->nearest_mode, iw, ow,
                l->scale_w, tx);
}

static void test_torch_parity(void) {
    char err[256];
    fixture *fx = fixture_load("tests/fixtures/resize.tsfx", err, sizeof err);
    CHECK(fx != NULL, "%s", err);
    if (!fx) return;
    const fixture_tensor *x = fixture_find(fx, "x");
    CHECK(x && x->ndim == 4, "x (N,C,H,W)");
    if (!x || x->ndim != 4) goto done;
    const int n = (int)x->dims[0], ih = (int)x->dims[2], iw = (int)x->dims[3];
    for (int k = 0; k < NCASES; k++) {
        char name[64], what[128];
        snprintf(name, sizeof name, "case%d.y", k);
        const fixture_tensor *y = fixture_find(fx, name);
        snprintf(name, sizeof name, "case%d.r", k);
        const fixture_tensor *r = fixture_find(fx, name);
        snprintf(name, sizeof name, "case%d.dx", k);
        const fixture_tensor *dx = fixture_find(fx, name);
        CHECK(y && r && dx && y->ndim == 4, "case %d missing", k);
        if (!y || !r || !dx || y->ndim != 4) continue;
        ts_model *m = build(CASES[k], "3x5x4");
        if (!m) continue;
        const int oh = (int)y->dims[2], ow = (int)y->dims[3];
        const layer *l = &m->layers[1];
        CHECK(l->out.dims[1] == oh && l->out.dims[2] == ow, "%s: %lldx%lld, PyTorch %dx%d", CASES[k],
              (long long)l->out.dims[1], (long long)l->out.dims[2], oh, ow);
        if (l->out.dims[1] == oh && l->out.dims[2] == ow) {
            float *out = test_falloc((size_t)y->numel), *din = test_falloc((size_t)x->numel);
            CHECK(ts_model_predict(g_ctx, m, x->data, n, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
            snprintf(what, sizeof what, "%s: forward", CASES[k]);
            /* nearest copies: exact; bilinear's weights round differently (within 1e-6) */
            const double tol = l->resize_mode == RESIZE_NEAREST ? 0 : 1e-5;
            test_allclose(what, out, y->data, (size_t)y->numel, tol, tol / 10);
            resize_tap *ty = malloc((size_t)(oh + ow) * sizeof *ty);
            taps_of(l, ih, iw, oh, ow, ty, ty + oh);
            resize_backward_ref((resize_mode)l->resize_mode, n * x->dims[1], ih, iw, oh, ow, ty, ty + oh, din,
                                r->data, 1);
            snprintf(what, sizeof what, "%s: input gradient", CASES[k]);
            test_allclose(what, din, dx->data, (size_t)x->numel, tol, tol / 10);
            free(ty);
            free(out);
            free(din);
        }
        ts_model_free(m);
    }
done:
    fixture_free(fx);
}

/* <dout, F x> = <B dout, x> for every mode, coordinate and rounding rule, enlarging,
 * shrinking and mixed; in double, so a wrong weight or index shows far above rounding */
static void test_backward_is_transpose(void) {
    static const int sizes[][4] = {{5, 4, 10, 8}, {5, 4, 3, 3}, {4, 6, 7, 2}, {3, 3, 1, 1}, {1, 5, 4, 5}};
    static const float scales[][2] = {{0, 0}, {2.0f, 2.0f}, {0.6f, 1.5f}};
    const int planes = 3;
    int checked = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int ih = sizes[si][0], iw = sizes[si][1], oh0 = sizes[si][2], ow0 = sizes[si][3];
        for (size_t sc = 0; sc < sizeof scales / sizeof scales[0]; sc++) {
            const float sh = scales[sc][0], sw = scales[sc][1];
            const int oh = sh > 0 ? (int)floor(ih * (double)sh) : oh0, ow = sw > 0 ? (int)floor(iw * (double)sw) : ow0;
            if (oh < 1 || ow < 1) continue;
            float *x = test_falloc((size_t)planes * ih * iw), *y = test_falloc((size_t)planes * oh * ow);
            float *g = test_falloc((size_t)planes * oh * ow), *dx = test_falloc((size_t)planes * ih * iw);
            resize_tap *ty = malloc((size_t)(oh + ow) * sizeof *ty);
            test_fill_uniform(x, (size_t)planes * ih * iw, 5 + si, -1.0f, 1.0f);
            test_fill_uniform(g, (size_t)planes * oh * ow, 9 + sc, -1.0f, 1.0f);
            for (int mode = 0; mode < 2; mode++)
                for (int coord = 0; coord < 5; coord++)
                    for (int near = 0; near < 4; near++) {
                        if (mode == RESIZE_LINEAR && near) continue;
                        resize_taps(mode, coord, near, ih, oh, sh, ty);
                        resize_taps(mode, coord, near, iw, ow, sw, ty + oh);
                        resize_forward_ref(mode, planes, ih, iw, oh, ow, ty, ty + oh, y, x, 1);
                        resize_backward_ref(mode, planes, ih, iw, oh, ow, ty, ty + oh, dx, g, 1);
                        double a = 0, b = 0, scale = 0;
                        for (int i = 0; i < planes * oh * ow; i++) a += (double)g[i] * y[i], scale += fabs(g[i] * y[i]);
                        for (int i = 0; i < planes * ih * iw; i++) b += (double)dx[i] * x[i];
                        CHECK(fabs(a - b) <= 1e-5 * (scale + 1),
                              "%dx%d -> %dx%d (scale %g,%g) mode %d coord %d nearest %d: <g, Fx> %.9g, <Bg, x> %.9g",
                              ih, iw, oh, ow, sh, sw, mode, coord, near, a, b);
                        /* every output reads inside the input, with weights summing to 1 */
                        for (int t = 0; t < oh + ow; t++) {
                            const int len = t < oh ? ih : iw;
                            CHECK(ty[t].i0 >= 0 && ty[t].i0 < len && ty[t].i1 >= 0 && ty[t].i1 < len &&
                                      fabsf(ty[t].w0 + ty[t].w1 - 1.0f) < 1e-6f,
                                  "tap %d: %d,%d %g,%g", t, ty[t].i0, ty[t].i1, ty[t].w0, ty[t].w1);
                        }
                        checked++;
                    }
            free(x);
            free(y);
            free(g);
            free(dx);
            free(ty);
        }
    }
    CHECK(checked > 100, "only %d configurations", checked);
}

/* ONNX's rounding rules at exact ties: 4 -> 8 asymmetric reads (o/2): 0.5 is a tie */
static void test_nearest_ties(void) {
    static const struct {
        resize_nearest rule;
        int want[8];
    } cases[] = {
        {RESIZE_ROUND_PREFER_FLOOR, {0, 0, 1, 1, 2, 2, 3, 3}},
        {RESIZE_ROUND_PREFER_CEIL, {0, 1, 1, 2, 2, 3, 3, 3}},
        {RESIZE_FLOOR, {0, 0, 1, 1, 2, 2, 3, 3}},
        {RESIZE_CEIL, {0, 1, 1, 2, 2, 3, 3, 3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        resize_tap t[8];
        resize_taps(RESIZE_NEAREST, RESIZE_ASYMMETRIC, cases[c].rule, 4, 8, 0.0f, t);
        for (int o = 0; o < 8; o++)
            CHECK(t[o].i0 == cases[c].want[o], "rule %d: output %d reads %d, want %d", (int)cases[c].rule, o, t[o].i0,
                  cases[c].want[o]);
    }
    /* align_corners to one output reads the first value; half_pixel linear at the
     * edges clamps */
    resize_tap t[3];
    resize_taps(RESIZE_LINEAR, RESIZE_ALIGN_CORNERS, RESIZE_FLOOR, 5, 1, 0.0f, t);
    CHECK(t[0].i0 == 0 && t[0].w1 == 0.0f, "align_corners to 1: %d %g", t[0].i0, t[0].w1);
    resize_taps(RESIZE_LINEAR, RESIZE_HALF_PIXEL, RESIZE_FLOOR, 2, 3, 0.0f, t);
    CHECK(t[0].i0 == 0 && t[0].w1 == 0.0f && t[2].i0 == 1 && t[2].w1 == 0.0f, "edges clamp");
}

/* keys are written as read; bad keys give one line naming the file, line and layer */
static void test_arch_text(void) {
    ts_model *m = build("scale=1.5x0.5 mode=linear coord=pytorch_half_pixel", "2x6x8");
    if (m) {
        char *text = arch_write_model(m);
        CHECK(text && strstr(text, " scale=1.5x0.5 mode=linear coord=pytorch_half_pixel nearest=round_prefer_floor\n"),
              "%s", text ? text : "(null)");
        CHECK(text && !strstr(text, "size="), "size written: %s", text ? text : "(null)");
        ts_model *again = NULL;
        CHECK(text && ts_model_from_arch(g_ctx, text, "written.arch", NULL, 0, 1, &again) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        char *text2 = again ? arch_write_model(again) : NULL;
        CHECK(text2 && !strcmp(text, text2), "written again: %s", text2 ? text2 : "(null)");
        free(text2);
        ts_model_free(again);
        CHECK(m->layers[1].out.dims[1] == 9 && m->layers[1].out.dims[2] == 4, "out %lldx%lld",
              (long long)m->layers[1].out.dims[1], (long long)m->layers[1].out.dims[2]);
        free(text);
        ts_model_free(m);
    }
    static const struct {
        const char *keys, *input, *want;
    } bad[] = {
        {"mode=linear", "2x6x8", "exactly one of size=HxW and scale=HxW"},
        {"size=3x3 scale=2", "2x6x8", "exactly one of"},
        {"scale=0x2", "2x6x8", "F or FxF"},
        {"scale=2x2x2", "2x6x8", "F or FxF"},
        {"size=0x4", "2x6x8", "N or HxW"},
        {"scale=0.1", "2x6x8", "resized to 0x0"},
        {"size=4x4", "8", "needs an input with H and W"},
        {"size=4x4 mode=cubic", "2x6x8", "one of nearest, linear"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "input shape=%s\nresize name=t %s\n", bad[i].input, bad[i].keys);
        ts_model *b = NULL;
        ts_status st = ts_model_from_arch(g_ctx, text, "bad.arch", NULL, 0, 1, &b);
        CHECK(st != TS_OK && strstr(ts_ctx_error(g_ctx), bad[i].want) && strstr(ts_ctx_error(g_ctx), "bad.arch:2"),
              "%s: status %d: %s", bad[i].keys, st, ts_ctx_error(g_ctx));
        ts_model_free(b);
    }
}

int main(void) {
    char tmp[] = "/tmp/tessera_resize_XXXXXX";
    if (!test_begin(&g_ctx, tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 1);
    RUN(test_torch_parity);
    RUN(test_backward_is_transpose);
    RUN(test_nearest_ties);
    RUN(test_arch_text);
    ts_ctx_free(g_ctx);
    rmdir(tmp);
    TEST_MAIN_END("test_layer_resize");
}
