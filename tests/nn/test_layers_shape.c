/* The layer kinds ONNX models need for rearranging and combining tensors: reshape,
 * transpose, pad, concat along any axis, binary (add/sub/mul/div with numpy
 * broadcasting, two inputs or a constant) and matmul (numpy.matmul with a trained
 * B). Forward values against hand-computed numpy results, the kernels' gradients on
 * small cases by hand, a whole-model finite-difference gradient check through the
 * public API, thread-count determinism, the text writer read back by the parser,
 * and parse errors naming file:line. */
#include "tessera.h"

#include "common/test.h"
#include "nn/nn.h"

#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_shape_XXXXXX";

/* ------------------------------------------------------------------ helpers */

static ts_model *make_model(const char *text, uint64_t seed) {
    ts_model *m = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_model_from_arch(g_ctx, text, "shape.arch", NULL, 0, seed, &m);
    CHECK(st == TS_OK, "model: %s", ts_ctx_error(g_ctx));
    return m;
}

static void set_tensor(const ts_model *m, const char *name, const float *v, int64_t count) {
    ts_tensor_info t = test_tensor(m, name);
    CHECK(t.numel == count, "tensor %s has %lld values, test gives %lld", name, (long long)t.numel, (long long)count);
    if (t.numel == count) memcpy(t.data, v, (size_t)count * sizeof(float));
}

static ts_shape layer_out(const ts_model *m, const char *name) {
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (ts_model_layer(m, i, &li) == TS_OK && !strcmp(li.name, name)) return li.out;
    }
    CHECK(0, "layer %s missing", name);
    ts_shape none = {0, {0}};
    return none;
}

static int shape_eq(const ts_shape *s, int ndim, const int64_t *dims) {
    if (s->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (s->dims[i] != dims[i]) return 0;
    return 1;
}

#define CHECK_SHAPE(m, name, ...)                                                                  \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        const int nd_ = (int)(sizeof want_ / sizeof want_[0]);                                     \
        ts_shape got_ = layer_out(m, name);                                                        \
        CHECK(shape_eq(&got_, nd_, want_), "layer %s: %d-d (%lld,%lld,%lld,%lld), want %d-d", name, \
              got_.ndim, (long long)got_.dims[0], (long long)got_.dims[1], (long long)got_.dims[2], \
              (long long)got_.dims[3], nd_);                                                       \
    } while (0)

/* x: n samples of 0, 1, 2, ... offset by 100 per sample (easy to read in failures) */
static float *iota_input(const ts_model *m, int n) {
    ts_shape s = ts_model_input_shape(m);
    const size_t sz = (size_t)ts_shape_numel(&s);
    float *x = test_falloc((size_t)n * sz);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < sz; j++) x[(size_t)i * sz + j] = (float)(100 * i + (int)j);
    return x;
}

static float *predict(ts_model *m, const float *x, int n) {
    float *out = test_falloc((size_t)n * (size_t)ts_model_classes(m));
    CHECK(ts_model_predict(g_ctx, m, x, n, out) == TS_OK, "predict: %s", ts_ctx_error(g_ctx));
    return out;
}

/* ------------------------------------------------------------------ reshape */

static void test_reshape(void) {
    ts_model *m = make_model("input shape=2x3x4\nreshape name=r shape=4x1x6\n", 1);
    if (!m) return;
    CHECK_SHAPE(m, "r", 4, 1, 6);
    float *x = iota_input(m, 3), *y = predict(m, x, 3);
    test_allclose("reshape is the identity on values", y, x, 72, 0, 0);
    CHECK(ts_model_tensor_count(m) == 0 && ts_model_param_count(m) == 0, "reshape has no tensors");
    free(x), free(y);
    ts_model_free(m);
}

/* ---------------------------------------------------------------- transpose */

static void test_transpose(void) {
    /* rank 4: out[a,b,c,d] = in[b,d,a,c] for perm=2,0,3,1 */
    ts_model *m = make_model("input shape=2x3x4x5\ntranspose name=t perm=2,0,3,1\n", 1);
    if (m) {
        CHECK_SHAPE(m, "t", 4, 2, 5, 3);
        const int n = 2;
        float *x = iota_input(m, n), *y = predict(m, x, n), *want = test_falloc(n * 120);
        for (int s = 0; s < n; s++)
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 2; b++)
                    for (int c = 0; c < 5; c++)
                        for (int d = 0; d < 3; d++)
                            want[s * 120 + ((a * 2 + b) * 5 + c) * 3 + d] = x[s * 120 + ((b * 3 + d) * 4 + a) * 5 + c];
        test_allclose("transpose 2,0,3,1", y, want, n * 120, 0, 0);
        free(x), free(y), free(want);
        ts_model_free(m);
    }
    /* without perm: the axes reversed (ONNX default) */
    m = make_model("input shape=2x3x4\ntranspose name=t\n", 1);
    if (m) {
        CHECK_SHAPE(m, "t", 4, 3, 2);
        float *x = iota_input(m, 1), *y = predict(m, x, 1);
        int bad = 0;
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 3; b++)
                for (int c = 0; c < 2; c++) bad += y[(a * 3 + b) * 2 + c] != x[(c * 3 + b) * 4 + a];
        CHECK(bad == 0, "reversed transpose: %d wrong", bad);
        free(x), free(y);
        ts_model_free(m);
    }
}

/* ---------------------------------------------------------------------- pad */

static void check_pad(const char *arch, const float *x, int nx, const float *want, int nwant) {
    ts_model *m = make_model(arch, 1);
    if (!m) return;
    ts_shape s = ts_model_input_shape(m);
    CHECK(ts_shape_numel(&s) == nx, "%s: input numel", arch);
    CHECK(ts_model_classes(m) == nwant, "%s: output has %d values, want %d", arch, ts_model_classes(m), nwant);
    if (ts_model_classes(m) == nwant) {
        float *y = predict(m, x, 1);
        test_allclose(arch, y, want, (size_t)nwant, 0, 0);
        free(y);
    }
    ts_model_free(m);
}

static void test_pad(void) {
    const float v5[5] = {1, 2, 3, 4, 5};
    /* numpy.pad([1,2,3,4,5], (2,3), mode) */
    const float reflect[10] = {3, 2, 1, 2, 3, 4, 5, 4, 3, 2}, edge[10] = {1, 1, 1, 2, 3, 4, 5, 5, 5, 5};
    const float constant[10] = {-1, -1, 1, 2, 3, 4, 5, -1, -1, -1};
    check_pad("input shape=5\npad pads=2,3 mode=reflect\n", v5, 5, reflect, 10);
    check_pad("input shape=5\npad pads=2,3 mode=edge\n", v5, 5, edge, 10);
    check_pad("input shape=5\npad pads=2,3 value=-1\n", v5, 5, constant, 10);
    /* reflect past the whole axis: numpy repeats the reflection, period 2(n-1) */
    const float v3[3] = {1, 2, 3}, far[8] = {2, 1, 2, 3, 2, 1, 2, 3}, far2[9] = {1, 2, 3, 2, 1, 2, 3, 2, 1};
    check_pad("input shape=3\npad pads=5,0 mode=reflect\n", v3, 3, far, 8);
    check_pad("input shape=3\npad pads=0,6 mode=reflect\n", v3, 3, far2, 9);
    /* an axis of one value: reflect repeats it, as numpy */
    const float one[1] = {7}, ones[4] = {7, 7, 7, 7};
    check_pad("input shape=1\npad pads=2,1 mode=reflect\n", one, 1, ones, 4);
    /* 2-D constant: numpy.pad([[1,2,3],[4,5,6]], ((1,0),(0,2)), constant_values=9) */
    const float m23[6] = {1, 2, 3, 4, 5, 6};
    const float c2d[15] = {9, 9, 9, 9, 9, 1, 2, 3, 9, 9, 4, 5, 6, 9, 9};
    check_pad("input shape=2x3\npad pads=1,0,0,2 value=9\n", m23, 6, c2d, 15);
    /* 2-D reflect and edge: ((1,1),(2,1)) */
    const float r2d[24] = {6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2};
    check_pad("input shape=2x3\npad pads=1,2,1,1 mode=reflect\n", m23, 6, r2d, 24);
    const float e2d[24] = {1, 1, 1, 2, 3, 3, 1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6, 4, 4, 4, 5, 6, 6};
    check_pad("input shape=2x3\npad pads=1,2,1,1 mode=edge\n", m23, 6, e2d, 24);
    /* negative pads crop: rows 1..2 of a 3x4 iota, one 0 in front, the last two columns cut */
    const float m34[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, crop[6] = {0, 4, 5, 0, 8, 9};
    check_pad("input shape=3x4\npad pads=-1,1,0,-2\n", m34, 12, crop, 6);
    /* crop one end, reflect at the other, relative to what is kept (as onnxruntime) */
    const float cr[6] = {2, 3, 4, 5, 4, 3};
    check_pad("input shape=5\npad pads=-1,2 mode=reflect\n", v5, 5, cr, 6);
    const float ce[5] = {1, 1, 2, 3, 4};
    check_pad("input shape=5\npad pads=1,-1 mode=edge\n", v5, 5, ce, 5);
    /* 3-D: only the middle axis padded, with -inf */
    ts_model *m = make_model("input shape=2x2x2\npad name=p pads=0,1,0,0,0,0 value=-inf\n", 1);
    if (m) {
        CHECK_SHAPE(m, "p", 2, 3, 2);
        float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        float *y = predict(m, x, 1);
        const float ninf = -INFINITY, want[12] = {ninf, ninf, 1, 2, 3, 4, ninf, ninf, 5, 6, 7, 8};
        CHECK(!memcmp(y, want, sizeof want), "pad with -inf");
        free(y);
        ts_model_free(m);
    }
}

/* The pad kernel's gradient: every output adds into the input it read. */
static void test_pad_backward_kernel(void) {
    const int64_t d3[1] = {3};
    const float g[6] = {1, 2, 3, 4, 5, 6};
    float din[3];
    /* edge, pads (2,1): out = a a a b c c */
    const int p21[2] = {2, 1};
    pad_backward_ref(1, 1, d3, p21, PAD_EDGE, din, g, 1);
    const float e[3] = {6, 4, 11};
    test_allclose("pad edge backward", din, e, 3, 0, 0);
    /* reflect, pads (2,1): out = c b a b c b */
    pad_backward_ref(1, 1, d3, p21, PAD_REFLECT, din, g, 1);
    const float r[3] = {3, 12, 6};
    test_allclose("pad reflect backward", din, r, 3, 0, 0);
    /* constant with a crop, pads (1,-1): out = v a b; c gets nothing */
    const int p1m1[2] = {1, -1};
    pad_backward_ref(1, 1, d3, p1m1, PAD_CONSTANT, din, g, 1);
    const float c[3] = {2, 3, 0};
    test_allclose("pad constant crop backward", din, c, 3, 0, 0);
    /* two samples, 2-D edge ((1,0),(0,1)) of 2x2: out (3,3) = a a' ... */
    const int64_t d22[2] = {2, 2};
    const int p2[4] = {1, 0, 0, 1};
    float g2[18], din2[8];
    for (int i = 0; i < 18; i++) g2[i] = (float)(i + 1);
    pad_backward_ref(2, 2, d22, p2, PAD_EDGE, din2, g2, 2);
    /* out rows: [x00 x01 x01], [x00 x01 x01], [x10 x11 x11] */
    const float w2[8] = {1 + 4, 2 + 3 + 5 + 6, 7, 8 + 9, 10 + 13, 11 + 12 + 14 + 15, 16, 17 + 18};
    test_allclose("pad 2-d edge backward, 2 samples", din2, w2, 8, 0, 0);
}

/* ------------------------------------------------------------------- concat */

static void test_concat_axes(void) {
    /* input (2,3,4) and pad of it (2,3,5) along axis 2; and the input twice along axis 1 */
    ts_model *m = make_model("input shape=2x3x4\npad name=p pads=0,0,0,0,0,1 value=-1\n"
                             "concat name=c2 in=input0,p axis=-1\nconcat name=c1 in=input0,input0 axis=1\n"
                             "flatten name=f2 in=c2\nflatten name=f1 in=c1\nconcat name=all in=f2,f1\n",
                             1);
    if (!m) return;
    CHECK_SHAPE(m, "c2", 2, 3, 9);
    CHECK(m->layers[2].axis == 2, "axis=-1 is stored as 2 (written back so)");
    CHECK_SHAPE(m, "c1", 2, 6, 4);
    const int n = 2;
    float *x = iota_input(m, n), *y = predict(m, x, n);
    float want[2 * (54 + 48)];
    for (int s = 0; s < n; s++) {
        float *w = want + s * 102;
        const float *xs = x + s * 24;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 3; b++)
                for (int c = 0; c < 9; c++)
                    w[(a * 3 + b) * 9 + c] = c < 4 ? xs[(a * 3 + b) * 4 + c] : c < 8 ? xs[(a * 3 + b) * 4 + c - 4] : -1;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 6; b++)
                for (int c = 0; c < 4; c++) w[54 + (a * 6 + b) * 4 + c] = xs[(a * 3 + b % 3) * 4 + c];
    }
    test_allclose("concat axes 2 and 1", y, want, 204, 0, 0);
    free(x), free(y);
    ts_model_free(m);
}

/* ------------------------------------------------------------------- binary */

static void test_binary_broadcast(void) {
    /* (3,4,5) + (5): the second operand is the input's last row x[2,3,:] */
    ts_model *m = make_model("input shape=3x4x5\npad name=row pads=-2,-3,0,0,0,0\nreshape name=r shape=5\n"
                             "binary name=b in=input0,r op=add\n",
                             1);
    if (m) {
        CHECK_SHAPE(m, "b", 3, 4, 5);
        float *x = iota_input(m, 2), *y = predict(m, x, 2), want[120];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 60; i++) want[s * 60 + i] = x[s * 60 + i] + x[s * 60 + 55 + i % 5];
        test_allclose("(3,4,5)+(5)", y, want, 120, 0, 0);
        free(x), free(y);
        ts_model_free(m);
    }
    /* (3,1,5) * (4,1) -> (3,4,5): A = x[:,0:1,:], B[j] = x[0,j,0] */
    m = make_model("input shape=3x4x5\npad name=a pads=0,0,0,0,-3,0\npad name=col in=input0 pads=0,0,0,-2,0,-4\n"
                   "reshape name=bb shape=4x1\nbinary name=b in=a,bb op=mul\n",
                   1);
    if (m) {
        CHECK_SHAPE(m, "a", 3, 1, 5);
        CHECK_SHAPE(m, "b", 3, 4, 5);
        float *x = iota_input(m, 2), *y = predict(m, x, 2), want[120];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 5; k++)
                        want[s * 60 + (i * 4 + j) * 5 + k] = x[s * 60 + i * 20 + k] * x[s * 60 + j * 5];
        test_allclose("(3,1,5)*(4,1)", y, want, 120, 0, 0);
        free(x), free(y);
        ts_model_free(m);
    }
    /* sub and div of two inputs of one shape, and in=a,a */
    m = make_model("input shape=6\nbinary name=s in=input0,input0 op=sub\nbinary name=d in=input0,input0 op=div\n"
                   "binary name=q in=input0,input0 op=mul\nconcat name=c in=s,d,q\n",
                   1);
    if (m) {
        float x[6] = {1, -2, 3, 0.5f, -4, 8}, want[18];
        for (int i = 0; i < 6; i++) want[i] = 0, want[6 + i] = 1, want[12 + i] = x[i] * x[i];
        float *y = predict(m, x, 1);
        test_allclose("a-a, a/a, a*a", y, want, 18, 0, 0);
        free(y);
        ts_model_free(m);
    }
}

static void test_binary_const(void) {
    /* c - x and c / x with c (3) broadcast over (2,3) */
    ts_model *m = make_model("input shape=2x3\nbinary name=s op=sub const=3 const_first=1\n"
                             "binary name=d in=input0 op=div const=3 const_first=1\n"
                             "binary name=xs in=input0 op=sub const=3\nbinary name=xd in=input0 op=div const=3\n"
                             "concat name=c in=s,d,xs,xd\n",
                             1);
    if (m) {
        CHECK(ts_model_param_count(m) == 0, "constants are not parameters");
        ts_tensor_info c = test_tensor(m, "s.const");
        CHECK(c.role == TS_TENSOR_BUFFER && c.ndim == 1 && c.dims[0] == 3, "s.const is a (3) buffer");
        const float cv[3] = {1, -2, 4};
        set_tensor(m, "s.const", cv, 3);
        set_tensor(m, "d.const", cv, 3);
        set_tensor(m, "xs.const", cv, 3);
        set_tensor(m, "xd.const", cv, 3);
        float x[12] = {1, 2, -4, 0.5f, 8, 3, -1, 2, 5, 10, -3, 0.25f}, want[48];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 6; i++) {
                const float xi = x[s * 6 + i], ci = cv[i % 3];
                want[s * 24 + i] = ci - xi;
                want[s * 24 + 6 + i] = ci / xi;
                want[s * 24 + 12 + i] = xi - ci;
                want[s * 24 + 18 + i] = xi / ci;
            }
        float *y = predict(m, x, 2);
        test_allclose("const sub/div, both orders", y, want, 48, 1e-7, 0);
        free(y);
        ts_model_free(m);
    }
    /* the constant broadcasts the input up: (3) * (2,3) -> (2,3); and defaults */
    m = make_model("input shape=3\nbinary name=u op=mul const=2x1x3\nbinary name=a in=input0 op=add const=1\n"
                   "binary name=mm in=input0 op=mul const=3\nbinary name=dd in=input0 op=div const=1x1\n"
                   "binary name=ss in=input0 op=sub const=3\nflatten name=f in=u\nflatten name=fd in=dd\n"
                   "concat name=c in=f,a,mm,fd,ss\n",
                   1);
    if (m) {
        CHECK_SHAPE(m, "u", 2, 1, 3);
        CHECK_SHAPE(m, "dd", 1, 3);
        const float cv[6] = {1, 2, 3, -1, -2, -3};
        set_tensor(m, "u.const", cv, 6);
        float x[3] = {2, -5, 0.5f}, want[18];
        for (int i = 0; i < 6; i++) want[i] = x[i % 3] * cv[i];
        for (int k = 0; k < 4; k++) /* add 0, mul 1, div 1, sub 0: the identity */
            for (int i = 0; i < 3; i++) want[6 + 3 * k + i] = x[i];
        float *y = predict(m, x, 1);
        test_allclose("constant broadcasting up, default constants", y, want, 18, 0, 0);
        free(y);
        ts_model_free(m);
    }
    /* division by zero follows IEEE: inf and NaN, as numpy */
    m = make_model("input shape=2\nbinary name=d op=div const=2 const_first=1\n", 1);
    if (m) {
        const float cv[2] = {1, 0};
        set_tensor(m, "d.const", cv, 2);
        float x[2] = {0, 0};
        float *y = predict(m, x, 1);
        CHECK(isinf(y[0]) && y[0] > 0 && isnan(y[1]), "1/0 = %g, 0/0 = %g", y[0], y[1]);
        free(y);
        ts_model_free(m);
    }
}

/* The broadcast kernel's gradients by hand: a (3,1) op b (1,4). */
static void test_binary_backward_kernel(void) {
    const int64_t dims[2] = {3, 4}, sa[2] = {1, 0}, sb[2] = {0, 1};
    const float a[3] = {1, 2, -1}, b[4] = {2, -1, 0.5f, 4};
    float g[12], da[3], db[4], wa[3], wb[4];
    for (int i = 0; i < 12; i++) g[i] = (float)(i + 1) * 0.5f;
    for (int op = BINARY_ADD; op <= BINARY_DIV; op++) {
        for (int i = 0; i < 3; i++) wa[i] = 0;
        for (int j = 0; j < 4; j++) wb[j] = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) {
                const double gg = g[i * 4 + j], x = a[i], y = b[j];
                switch (op) {
                case BINARY_ADD: wa[i] += gg, wb[j] += gg; break;
                case BINARY_SUB: wa[i] += gg, wb[j] -= gg; break;
                case BINARY_MUL: wa[i] += gg * y, wb[j] += gg * x; break;
                default: wa[i] += gg / y, wb[j] -= gg * x / (y * y); break;
                }
            }
        binary_backward_ref((binary_op)op, 2, dims, da, db, g, a, sa, b, sb, 2);
        char w[64];
        snprintf(w, sizeof w, "binary op %d: d a", op);
        test_allclose(w, da, wa, 3, 1e-6, 1e-6);
        snprintf(w, sizeof w, "binary op %d: d b", op);
        test_allclose(w, db, wb, 4, 1e-6, 1e-6);
        /* one operand at a time gives the same */
        float da2[3], db2[4];
        binary_backward_ref((binary_op)op, 2, dims, da2, NULL, g, a, sa, b, sb, 1);
        binary_backward_ref((binary_op)op, 2, dims, NULL, db2, g, a, sa, b, sb, 1);
        CHECK(!memcmp(da, da2, sizeof da) && !memcmp(db, db2, sizeof db), "op %d: separate calls differ", op);
    }
}

/* ------------------------------------------------------------------- matmul */

/* numpy.matmul by definition, for one sample: A (ra dims), B (rb dims). */
static void naive_matmul(const ts_shape *as, const float *a, const ts_shape *bs, const float *b, float *out) {
    const int ra = as->ndim, rb = bs->ndim;
    const int64_t M = ra >= 2 ? as->dims[ra - 2] : 1, K = as->dims[ra - 1], P = rb >= 2 ? bs->dims[rb - 1] : 1;
    const int na = ra > 2 ? ra - 2 : 0, nb = rb > 2 ? rb - 2 : 0, nr = na > nb ? na : nb;
    int64_t batch = 1, bd[8];
    for (int i = 0; i < nr; i++) {
        const int ia = i - (nr - na), ib = i - (nr - nb);
        const int64_t x = ia >= 0 ? as->dims[ia] : 1, y = ib >= 0 ? bs->dims[ib] : 1;
        bd[i] = x > y ? x : y;
        batch *= bd[i];
    }
    for (int64_t t = 0; t < batch; t++) {
        int64_t idx[8], rem = t, oa = 0, ob = 0;
        for (int i = nr - 1; i >= 0; i--) idx[i] = rem % bd[i], rem /= bd[i];
        for (int i = 0; i < nr; i++) {
            const int ia = i - (nr - na), ib = i - (nr - nb);
            if (ia >= 0) oa = oa * as->dims[ia] + (as->dims[ia] == 1 ? 0 : idx[i]);
            if (ib >= 0) ob = ob * bs->dims[ib] + (bs->dims[ib] == 1 ? 0 : idx[i]);
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < P; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += (double)a[(oa * M + i) * K + k] * b[(ob * K + k) * P + j];
                out[(t * M + i) * P + j] = (float)s;
            }
    }
}

static void check_matmul(const char *in_shape, const char *b_shape, int ndim, const int64_t *want_dims, int64_t macs) {
    char text[256];
    snprintf(text, sizeof text, "input shape=%s\nmatmul name=mm b=%s\n", in_shape, b_shape);
    ts_model *m = make_model(text, 3);
    if (!m) return;
    ts_shape os = layer_out(m, "mm");
    CHECK(shape_eq(&os, ndim, want_dims), "%s x %s: output %d-d (%lld,...), want %d-d", in_shape, b_shape, os.ndim,
          (long long)os.dims[0], ndim);
    ts_layer_info li;
    ts_model_layer(m, 1, &li);
    CHECK(li.macs == macs, "%s x %s: %lld MACs, want %lld", in_shape, b_shape, (long long)li.macs, (long long)macs);
    ts_tensor_info w = test_tensor(m, "mm.weight");
    ts_shape bs = {w.ndim, {0}};
    memcpy(bs.dims, w.dims, sizeof bs.dims);
    CHECK(w.role == TS_TENSOR_PARAM && li.params == w.numel, "weight is a parameter");
    /* init bound 1/sqrt(K) */
    const int64_t K = bs.ndim >= 2 ? bs.dims[bs.ndim - 2] : bs.dims[0];
    float lim = 0;
    for (int64_t i = 0; i < w.numel; i++) lim = fmaxf(lim, fabsf(w.data[i]));
    CHECK(lim <= 1.0f / sqrtf((float)K) && (w.numel < 8 || lim > 0.3f / sqrtf((float)K)), "init max %g for K=%lld",
          lim, (long long)K);
    ts_shape as = ts_model_input_shape(m);
    const int n = 3;
    const int64_t asz = ts_shape_numel(&as), osz = ts_shape_numel(&os);
    float *x = test_falloc((size_t)(n * asz)), *want = test_falloc((size_t)(n * osz));
    test_fill_uniform(x, (size_t)(n * asz), 17, -1, 1);
    for (int s = 0; s < n; s++) naive_matmul(&as, x + s * asz, &bs, w.data, want + s * osz);
    float *y = predict(m, x, n);
    char what[96];
    snprintf(what, sizeof what, "matmul %s x %s", in_shape, b_shape);
    test_allclose(what, y, want, (size_t)(n * osz), 1e-5, 1e-6);
    free(x), free(want), free(y);
    ts_model_free(m);
}

static void test_matmul_forward(void) {
    /* by hand: [1 2 3; 4 5 6] [1 0; 0 1; 1 1] = [4 5; 10 11] */
    ts_model *m = make_model("input shape=2x3\nmatmul name=mm b=3x2\n", 1);
    if (m) {
        const float w[6] = {1, 0, 0, 1, 1, 1}, x[6] = {1, 2, 3, 4, 5, 6}, want[4] = {4, 5, 10, 11};
        set_tensor(m, "mm.weight", w, 6);
        float *y = predict(m, x, 1);
        test_allclose("2x3 . 3x2", y, want, 4, 0, 0);
        free(y);
        ts_model_free(m);
    }
    const int64_t d24[] = {2, 4}, d4[] = {4}, d2[] = {2}, d1[] = {1}, d235[] = {2, 3, 5}, d2332[] = {2, 3, 3, 2};
    check_matmul("2x3", "3x4", 2, d24, 2 * 3 * 4);
    check_matmul("3", "3x4", 1, d4, 12);                   /* 1-D A */
    check_matmul("2x3", "3", 1, d2, 6);                    /* 1-D B */
    check_matmul("3", "3", 1, d1, 3);                      /* dot: output (1) */
    check_matmul("2x3x4", "4x5", 3, d235, 2 * 3 * 4 * 5);  /* batched A, one B */
    check_matmul("3x4", "2x4x5", 3, d235, 2 * 3 * 4 * 5);  /* A broadcast over B's batch */
    check_matmul("2x3x4", "2x4x5", 3, d235, 2 * 3 * 4 * 5);
    check_matmul("2x1x3x4", "3x4x2", 4, d2332, 2 * 3 * 3 * 4 * 2); /* both broadcast */
    check_matmul("4", "2x4x5", 2, (const int64_t[]){2, 5}, 40);    /* 1-D A with batched B */
    check_matmul("2x3x4", "4", 2, (const int64_t[]){2, 3}, 24);    /* batched A, 1-D B */
    check_matmul("1x3x4", "2x4x1", 3, (const int64_t[]){2, 3, 1}, 24);
}

/* A tall product takes the single-GEMM path: checked against the definition at
 * sampled elements, and fast enough to notice if it were not blocked. */
static void test_matmul_large(void) {
    ts_model *m = make_model("input shape=2x256x384\nmatmul name=mm b=384x192\n", 5);
    if (!m) return;
    const int n = 4;
    const size_t asz = 2 * 256 * 384, osz = 2 * 256 * 192;
    float *x = test_falloc(n * asz), *y = test_falloc(n * osz);
    test_fill_uniform(x, n * asz, 3, -1, 1);
    CHECK(ts_model_predict(g_ctx, m, x, n, y) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_tensor_info w = test_tensor(m, "mm.weight");
    int bad = 0;
    for (int t = 0; t < 200; t++) {
        const size_t row = ((size_t)t * 7919) % (n * 2 * 256), col = ((size_t)t * 104729) % 192;
        double s = 0;
        for (int k = 0; k < 384; k++) s += (double)x[row * 384 + k] * w.data[k * 192 + col];
        bad += fabs(y[row * 192 + col] - s) > 1e-4 + 1e-4 * fabs(s);
    }
    CHECK(bad == 0, "%d of 200 sampled elements wrong", bad);
    free(x), free(y);
    ts_model_free(m);
}

/* --------------------------------------------------- whole-model gradients */

/* Every new kind between a trained matmul and the loss, on smooth functions (no
 * kinks): reflect/edge/constant pads with crops, transposes of rank 3 and 4, matmul
 * with one B, with a batched B, with A broadcast, with 1-D operands, binary with two
 * broadcast inputs (each reduced), in=a,a, constants on either side and
 * broadcasting the input up, concat along axes 1 and 2 with fan-out, reshape. */
static const char *GRAD_ARCH =
    "input     shape=2x3x4 classes=3\n"
    "matmul    name=mm b=4x5\n"                               /* (2,3,5) */
    "tanh      name=t1\n"
    "transpose name=tr perm=2,0,1\n"                          /* (5,2,3) */
    "pad       name=pr pads=1,0,2,0,1,-1 mode=reflect\n"      /* (6,3,4) */
    "matmul    name=mb b=6x4x2\n"                             /* (6,3,2) */
    "binary    name=bc op=mul const=3x1\n"                    /* (6,3,2) */
    "pad       name=pe in=t1 pads=0,-1,2,1,0,0 mode=edge\n"   /* (3,2,7) */
    "pad       name=pc in=t1 pads=1,0,0,0,1,-2 value=0.5\n"   /* (3,4,3) */
    "matmul    name=ma b=2x1x3x2\n"                           /* (2,3,4,2) */
    "transpose name=t4 perm=3,1,0,2\n"                        /* (2,3,2,4) */
    "matmul    name=mv in=pc b=3\n"                           /* (3,4) */
    "binary    name=cu op=mul const=2x3x4\n"                  /* (2,3,4) */
    "matmul    name=m2 in=t1 b=5x1\n"                         /* (2,3,1) */
    "pad       name=px in=t1 pads=0,0,0,-1,-2,0\n"            /* (1,1,5) */
    "binary    name=bs in=m2,px op=sub\n"                     /* (2,3,5) */
    "sigmoid   name=sg in=m2\n"
    "binary    name=sh op=add const=1\n"                      /* (2,3,1), const set to 0.5 */
    "binary    name=dv in=t1,sh op=div\n"                     /* (2,3,5) */
    "binary    name=cs op=sub const=5 const_first=1\n"        /* (2,3,5) */
    "binary    name=cd in=sh op=div const=3x1 const_first=1\n"/* (2,3,1) */
    "binary    name=sq in=bs,bs op=mul\n"                     /* (2,3,5) */
    "concat    name=k1 in=dv,sq axis=1\n"                     /* (2,6,5) */
    "concat    name=k2 in=cs,bs axis=2\n"                     /* (2,3,10) */
    "reshape   name=rs in=k1 shape=6x10\n"
    "reshape   name=r1 in=bc shape=36\n"
    "flatten   name=f2 in=t4\n"
    "flatten   name=f3 in=cu\n"
    "reshape   name=f4 in=cd shape=6\n"
    "flatten   name=f5 in=rs\n"
    "flatten   name=f6 in=k2\n"
    "flatten   name=f7 in=pe\n"
    "matmul    name=v1 in=f4 b=6x2\n"                         /* (2): 1-D A */
    "matmul    name=v2 in=f4 b=6\n"                           /* (1): dot */
    "concat    name=all in=r1,f2,f3,f4,f5,f6,f7,v1\n"
    "concat    name=all2 in=all,v2\n"
    "dense     name=fc out=classes\n";

#define GRAD_N 4

static double fd_loss(ts_model *m, const float *x, const int32_t *y, float *logits) {
    CHECK(ts_model_forward_train(g_ctx, m, x, GRAD_N, logits, 1) == TS_OK, "forward: %s", ts_ctx_error(g_ctx));
    return ts_softmax_cross_entropy(GRAD_N, 3, logits, y, 0.0f, NULL);
}

static ts_model *grad_model(uint64_t seed) {
    ts_model *m = make_model(GRAD_ARCH, seed);
    if (!m) return NULL;
    const float half = 0.5f, c31[3] = {0.7f, -1.2f, 1.5f}, c5[5] = {0.3f, -0.2f, 1, 0.1f, -0.6f};
    float c234[24];
    for (int i = 0; i < 24; i++) c234[i] = 0.5f + 0.05f * (float)i * (i % 2 ? -1.0f : 1.0f);
    set_tensor(m, "sh.const", &half, 1);
    set_tensor(m, "bc.const", c31, 3);
    set_tensor(m, "cd.const", c31, 3);
    set_tensor(m, "cs.const", c5, 5);
    set_tensor(m, "cu.const", c234, 24);
    return m;
}

static void test_gradcheck(void) {
    ts_model *m = grad_model(42);
    if (!m) return;
    CHECK_SHAPE(m, "pr", 6, 3, 4);
    CHECK_SHAPE(m, "ma", 2, 3, 4, 2);
    CHECK_SHAPE(m, "t4", 2, 3, 2, 4);
    CHECK_SHAPE(m, "v2", 1);
    const size_t in_sz = 24;
    float *x = test_falloc(GRAD_N * in_sz), logits[GRAD_N * 3], dl[GRAD_N * 3];
    test_fill_uniform(x, GRAD_N * in_sz, 3, -1.0f, 1.0f);
    int32_t y[GRAD_N] = {0, 2, 1, 1};
    CHECK(ts_model_forward_train(g_ctx, m, x, GRAD_N, logits, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    float loss0 = ts_softmax_cross_entropy(GRAD_N, 3, logits, y, 0.0f, dl);
    CHECK(isfinite(loss0) && loss0 > 0, "loss %g", loss0);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    const int64_t np = ts_model_param_count(m);
    float *ana = test_falloc((size_t)np);
    int nt = ts_model_tensor_count(m), nparam = 0;
    {
        int64_t off = 0;
        for (int t = 0; t < nt; t++) {
            ts_tensor_info ti;
            ts_model_tensor(m, t, &ti);
            if (ti.role != TS_TENSOR_PARAM) continue;
            nparam++;
            memcpy(ana + off, ti.grad, (size_t)ti.numel * sizeof(float));
            off += ti.numel;
        }
    }
    CHECK(nparam == 9, "param tensors %d", nparam); /* 7 matmul weights, fc weight and bias */
    /* The model is smooth, so central differences are accurate to O(h^2); float
     * rounding of the loss adds about 3e-8/h. */
    const float h = 1e-3f;
    int64_t off = 0;
    int checked = 0;
    for (int t = 0; t < nt; t++) {
        ts_tensor_info ti;
        ts_model_tensor(m, t, &ti);
        if (ti.role != TS_TENSOR_PARAM) continue;
        const int64_t picks = ti.numel < 8 ? ti.numel : 8;
        double gmax = 0;
        for (int64_t i = 0; i < ti.numel; i++) gmax = fmax(gmax, fabs(ana[off + i]));
        CHECK(gmax > 1e-4, "%s: gradients vanish (max %g)", ti.name, gmax);
        for (int64_t k = 0; k < picks; k++) {
            const int64_t i = picks == ti.numel ? k : (k * (ti.numel - 1)) / (picks - 1);
            const float save = ti.data[i];
            const float xp = save + h, xm = save - h;
            ti.data[i] = xp;
            const double lp = fd_loss(m, x, y, logits);
            ti.data[i] = xm;
            const double lm = fd_loss(m, x, y, logits);
            ti.data[i] = save;
            const double num = (lp - lm) / ((double)xp - (double)xm), a = ana[off + i];
            const double lim = 1e-2 * fmax(fabs(a), fabs(num)) + 2e-5 + 3e-8 / h;
            CHECK(fabs(num - a) <= lim, "d loss / d %s[%lld]: analytic %.6g, numeric %.6g", ti.name, (long long)i, a,
                  num);
            checked++;
        }
        off += ti.numel;
    }
    CHECK(checked > 40, "checked %d", checked);
    /* training forward equals inference (no dropout or batch norm) */
    float pl[GRAD_N * 3];
    CHECK(ts_model_predict(g_ctx, m, x, GRAD_N, pl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    fd_loss(m, x, y, logits);
    test_allclose("predict vs training forward", pl, logits, GRAD_N * 3, 1e-6, 1e-7);
    free(ana);
    free(x);
    ts_model_free(m);
}

/* constant: every sample gets the stored tensor; its input (here a computed layer
 * that also feeds concat) receives a zero gradient from it, so d loss / d d1
 * comes from the concat path alone and matches central differences. */
static void test_constant(void) {
    const char *arch = "input shape=4 classes=3\n"
                       "dense name=d1 out=3\n"
                       "constant name=k in=d1 shape=2\n"
                       "concat name=c in=k,d1\n"
                       "tanh name=t\n"
                       "dense name=fc out=3\n";
    ts_model *m = make_model(arch, 7);
    if (!m) return;
    const float kv[2] = {0.25f, -1.5f};
    set_tensor(m, "k.value", kv, 2);
    float x[GRAD_N * 4], logits[GRAD_N * 3], dl[GRAD_N * 3];
    test_fill_uniform(x, GRAD_N * 4, 5, -1.0f, 1.0f);
    int32_t y[GRAD_N] = {0, 2, 1, 1};
    CHECK(ts_model_forward_train(g_ctx, m, x, GRAD_N, logits, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_softmax_cross_entropy(GRAD_N, 3, logits, y, 0.0f, dl);
    CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_tensor_info w;
    CHECK(ts_model_tensor(m, ts_model_find_tensor(m, "d1.weight"), &w) == TS_OK, "d1.weight");
    float *ana = test_falloc((size_t)w.numel);
    memcpy(ana, w.grad, (size_t)w.numel * sizeof *ana);
    const float h = 5e-3f;
    for (int64_t i = 0; i < w.numel; i++) {
        const float save = w.data[i];
        w.data[i] = save + h;
        double lp = fd_loss(m, x, y, logits);
        w.data[i] = save - h;
        double lm = fd_loss(m, x, y, logits);
        w.data[i] = save;
        double num = (lp - lm) / (2.0 * h);
        CHECK(fabs(num - ana[i]) <= 1e-2 * fmax(fabs(num), fabs(ana[i])) + 2e-5 + 3e-8 / h, "d1.weight[%lld]: %g vs %g",
              (long long)i, ana[i], num);
    }
    /* the forward values: the constant, then d1, per sample */
    ts_layer_info li;
    CHECK(ts_model_layer(m, 3, &li) == TS_OK && li.out.ndim == 1 && li.out.dims[0] == 5, "concat shape");
    free(ana);
    ts_model_free(m);
}

/* Results do not depend on the thread count, forward and backward, with tensors
 * large enough for the kernels to use threads. */
static void test_threads_deterministic(void) {
    const char *arch = "input shape=8x64x48 classes=4\n"
                       "matmul    name=mm b=48x40\n"                           /* (8,64,40) */
                       "transpose name=tr perm=2,0,1\n"                        /* (40,8,64) */
                       "pad       name=p pads=1,2,3,2,1,0 mode=reflect\n"      /* (43,11,67) */
                       "pad       name=pe in=mm pads=0,3,0,1,0,2 mode=edge\n"  /* (9,67,42) */
                       "matmul    name=mb in=p b=43x67x5\n"                    /* (43,11,5) */
                       "matmul    name=m2 in=mm b=40x1\n"                      /* (8,64,1) */
                       "sigmoid   name=sg\n"
                       "binary    name=b in=mm,sg op=div\n"                    /* (8,64,40) */
                       "binary    name=c in=b op=mul const=64x1\n"
                       "concat    name=k in=c,mm axis=2\n"
                       "flatten   name=f1 in=k\nflatten name=f2 in=mb\nflatten name=f3 in=pe\n"
                       "concat    name=all in=f1,f2,f3\n"
                       "dense     name=fc out=classes\n";
    const int n = 3;
    float *res[2][2] = {{NULL, NULL}, {NULL, NULL}};
    const int threads[2] = {1, 4};
    const int saved = ts_ctx_get_threads(g_ctx);
    int64_t np = 0;
    for (int t = 0; t < 2; t++) {
        CHECK(ts_ctx_set_threads(g_ctx, threads[t]) == TS_OK, "threads");
        ts_model *m = make_model(arch, 9);
        if (!m) break;
        float *x = test_falloc((size_t)n * 8 * 64 * 48), logits[3 * 4], dl[3 * 4];
        test_fill_uniform(x, (size_t)n * 8 * 64 * 48, 4, 0.5f, 1.5f);
        int32_t y[3] = {1, 3, 0};
        CHECK(ts_model_forward_train(g_ctx, m, x, n, logits, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
        ts_softmax_cross_entropy(n, 4, logits, y, 0, dl);
        CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
        np = ts_model_param_count(m);
        res[t][0] = test_falloc(12);
        memcpy(res[t][0], logits, sizeof logits);
        ts_tensor_info first;
        ts_model_tensor(m, 0, &first);
        res[t][1] = test_falloc((size_t)np);
        memcpy(res[t][1], first.grad, (size_t)np * sizeof(float));
        free(x);
        ts_model_free(m);
    }
    ts_ctx_set_threads(g_ctx, saved);
    if (res[0][0] && res[1][0]) {
        CHECK(!memcmp(res[0][0], res[1][0], 12 * sizeof(float)), "logits differ between 1 and 4 threads");
        CHECK(!memcmp(res[0][1], res[1][1], (size_t)np * sizeof(float)), "gradients differ between 1 and 4 threads");
    }
    for (int t = 0; t < 2; t++) free(res[t][0]), free(res[t][1]);
}

/* ------------------------------------------------------ writer and parser */

/* Every layer's keys as the writer puts them, read back by the parser, give the
 * same layer: the text a composed or imported model is saved as. */
static void test_writer_round_trip(void) {
    ts_model *m = grad_model(7);
    if (!m) return;
    char *text = malloc(1 << 16);
    size_t len = 0;
    len += (size_t)snprintf(text + len, (1 << 16) - len, "input shape=2x3x4 classes=3\n");
    for (int i = 1; i < m->nlayers; i++) {
        const layer *l = &m->layers[i];
        len += (size_t)snprintf(text + len, (1 << 16) - len, "%s name=%s in=", LAYER_OPS[l->kind].name, l->name);
        for (int k = 0; k < l->ninputs; k++)
            len += (size_t)snprintf(text + len, (1 << 16) - len, "%s%s", k ? "," : "", m->layers[l->inputs[k]].name);
        len += (size_t)attrs_write(l->kind, &l->attrs, text + len, (1 << 16) - len);
        len += (size_t)snprintf(text + len, (1 << 16) - len, "\n");
    }
    ts_model *r = make_model(text, 7);
    if (r) {
        CHECK(r->nlayers == m->nlayers && r->ntensors == m->ntensors, "layer or tensor count differs");
        for (int i = 1; i < m->nlayers && i < r->nlayers; i++) {
            const layer *a = &m->layers[i], *b = &r->layers[i];
            int same = a->kind == b->kind && !memcmp(&a->out, &b->out, sizeof a->out) &&
                       !memcmp(&a->tshape, &b->tshape, sizeof a->tshape) && a->axis == b->axis && a->op == b->op &&
                       a->const_first == b->const_first && a->pad_mode == b->pad_mode && a->value == b->value &&
                       !memcmp(a->perm, b->perm, sizeof a->perm) && !memcmp(a->pads, b->pads, sizeof a->pads) &&
                       a->konst == b->konst && a->weight == b->weight;
            CHECK(same, "layer %s differs after writing and parsing", a->name);
        }
    }
    /* pad's value survives as text, infinities included */
    ts_model *p = make_model("input shape=3\npad name=p pads=1,0 value=-inf\npad name=q pads=0,1 value=0.1\n", 1);
    if (p) {
        char buf[256];
        attrs_write(p->layers[1].kind, &p->layers[1].attrs, buf, sizeof buf);
        CHECK(strstr(buf, "pads=1,0") && strstr(buf, "mode=constant") && strstr(buf, "value=-inf"), "%s", buf);
        attrs_write(p->layers[2].kind, &p->layers[2].attrs, buf, sizeof buf);
        CHECK(strstr(buf, "value=0.100000001"), "%s", buf);
        ts_model_free(p);
    }
    free(text);
    ts_model_free(r);
    ts_model_free(m);
}

/* Expects text to fail with status want; the message names shape.arch:line and
 * each NULL-terminated word. */
static void expect_error(const char *what, const char *text, ts_status want, int line, ...) {
    ts_model *m = NULL;
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_model_from_arch(g_ctx, text, "shape.arch", NULL, 0, 1, &m);
    CHECK(st == want, "%s: status %s, want %s (%s)", what, ts_status_name(st), ts_status_name(want),
          ts_ctx_error(g_ctx));
    CHECK(m == NULL, "%s: a model on failure", what);
    if (m) ts_model_free(m);
    const char *msg = ts_ctx_error(g_ctx);
    char loc[64];
    snprintf(loc, sizeof loc, "shape.arch:%d:", line);
    CHECK(strstr(msg, loc) != NULL, "%s: message '%s' lacks '%s'", what, msg, loc);
    va_list ap;
    va_start(ap, line);
    for (const char *w; (w = va_arg(ap, const char *));)
        CHECK(strstr(msg, w) != NULL, "%s: message '%s' lacks '%s'", what, msg, w);
    va_end(ap);
}

static void test_parse_errors(void) {
    /* reshape */
    expect_error("numel mismatch", "input shape=2x3x4\nreshape name=r shape=5x5\n", TS_ESHAPE, 2, "shape=5x5", "25",
                 "24", NULL);
    expect_error("reshape without shape", "input shape=2x3\nreshape\n", TS_EFORMAT, 2, "shape", NULL);
    expect_error("reshape shape 0", "input shape=2x3\nreshape shape=0x6\n", TS_EFORMAT, 2, "shape=0x6", NULL);
    /* transpose */
    expect_error("perm repeats", "input shape=2x3x4\n\ntranspose name=t perm=0,0,1\n", TS_ESHAPE, 3, "perm=0,0,1",
                 "permutation", NULL);
    expect_error("perm out of range", "input shape=2x3x4\ntranspose perm=0,3,1\n", TS_ESHAPE, 2, "perm=0,3,1", NULL);
    expect_error("perm length", "input shape=2x3x4\ntranspose perm=1,0\n", TS_EFORMAT, 2, "perm=1,0", "3-d", NULL);
    expect_error("perm not numbers", "input shape=2x3\ntranspose perm=1,x\n", TS_EFORMAT, 2, "perm=1,x", NULL);
    expect_error("perm empty item", "input shape=2x3\ntranspose perm=1,,0\n", TS_EFORMAT, 2, "perm=1,,0", NULL);
    expect_error("perm negative", "input shape=2x3\ntranspose perm=-1,0\n", TS_EFORMAT, 2, "perm=-1,0", NULL);
    /* pad */
    expect_error("pads count", "input shape=2x3\npad pads=1,1,1\n", TS_EFORMAT, 2, "pads=1,1,1", "expected 4", NULL);
    expect_error("pads too many", "input shape=2\npad pads=1,1,1,1,1,1,1,1,1,1,1,1,1\n", TS_EFORMAT, 2, "pads=", NULL);
    expect_error("pads missing", "input shape=2x3\npad mode=edge\n", TS_EFORMAT, 2, "pads", NULL);
    expect_error("pad mode", "input shape=2x3\npad pads=0,0,1,1 mode=wrap\n", TS_EFORMAT, 2, "mode=wrap", "reflect",
                 NULL);
    expect_error("pad crops everything", "input shape=2x3\npad pads=0,-2,0,-1\n", TS_ESHAPE, 2, "axis 1", NULL);
    expect_error("pad value nan", "input shape=2x3\npad pads=0,0,0,0 value=nan\n", TS_EFORMAT, 2, "value=nan", NULL);
    /* binary */
    expect_error("bad op", "input shape=4\nbinary op=pow const=4\n", TS_EFORMAT, 2, "op=pow", "add", NULL);
    expect_error("op missing", "input shape=4\nbinary const=4\n", TS_EFORMAT, 2, "'op'", NULL);
    expect_error("not broadcastable", "input shape=3x4\nbinary name=b op=add const=3\n", TS_ESHAPE, 2, "3x4", "do not "
                 "broadcast", NULL);
    expect_error("inputs not broadcastable", "input shape=3x4\ntranspose name=t\nbinary name=b in=input0,t op=mul\n",
                 TS_ESHAPE, 3, "3x4", "4x3", NULL);
    expect_error("one input, no const", "input shape=3\nbinary op=add\n", TS_EFORMAT, 2, "two inputs", NULL);
    expect_error("const and two inputs", "input shape=3\nrelu name=r\nbinary in=input0,r op=add const=3\n",
                 TS_EFORMAT, 3, "one input", NULL);
    expect_error("const_first without const", "input shape=3\nrelu name=r\nbinary in=input0,r op=sub const_first=1\n",
                 TS_EFORMAT, 3, "const_first", NULL);
    /* matmul */
    expect_error("matmul K", "input shape=2x3\nmatmul name=mm b=4x5\n", TS_ESHAPE, 2, "b=4x5", "2x3", NULL);
    expect_error("matmul batch", "input shape=2x3x4\nmatmul name=mm b=3x4x5\n", TS_ESHAPE, 2, "broadcast", NULL);
    expect_error("matmul without b", "input shape=3\nmatmul\n", TS_EFORMAT, 2, "'b'", NULL);
    /* concat */
    expect_error("concat axis", "input shape=2x3\nconcat in=input0,input0 axis=2\n", TS_ESHAPE, 2, "axis=2", NULL);
    expect_error("concat axis negative", "input shape=2x3\nconcat in=input0,input0 axis=-3\n", TS_ESHAPE, 2, "axis=-3",
                 NULL);
    expect_error("concat other axes", "input shape=2x3\ntranspose name=t\nconcat in=input0,t axis=1\n", TS_ESHAPE, 3,
                 "axis 1", NULL);
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_reshape);
    RUN(test_transpose);
    RUN(test_pad);
    RUN(test_pad_backward_kernel);
    RUN(test_concat_axes);
    RUN(test_binary_broadcast);
    RUN(test_binary_const);
    RUN(test_binary_backward_kernel);
    RUN(test_matmul_forward);
    RUN(test_matmul_large);
    RUN(test_gradcheck);
    RUN(test_constant);
    RUN(test_threads_deterministic);
    RUN(test_writer_round_trip);
    RUN(test_parse_errors);
    rmdir(g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_layers_shape");
}
