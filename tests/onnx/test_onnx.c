/* ONNX import and export (src/onnx).
 *
 * PyTorch-exported ResNet-20, VGG-11 (narrow) and a MobileNetV2-style network
 * (tests/fixtures/onnx, made by gen_onnx_fixtures.py) import in eval mode (batch
 * norm folded), in training mode (batch norm and dropout kept) and at opsets 9,
 * 13 and 17, and predict PyTorch's logits on a fixed batch; a training-mode import
 * trains on from the imported running statistics. Every zoo architecture and the
 * imported networks go native -> ONNX -> native with bit-identical outputs.
 * Hostile files (truncated, wrong wire type, short tensor data, overflowing dims,
 * a cycle, an input nothing produces, unsupported ops) give clear errors. */
#include "tessera.h"
#include "core/testing.h"

#include "common/test.h"
#include "common/tiny_onnx.h"

#include <stdint.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera_onnx_XXXXXX";

#define FIX "tests/fixtures/onnx/"

/* ------------------------------------------------------------------ TSIO */

typedef struct tsio {
    int64_t xd[8], yd[8];
    int xr, yr;
    float *x, *y;
    int64_t nx, ny;
} tsio;

static int read_block(const uint8_t *b, size_t len, size_t *off, int *rank, int64_t *dims, float **data, int64_t *n) {
    uint32_t r;
    if (*off + 4 > len) return 0;
    memcpy(&r, b + *off, 4);
    *off += 4;
    if (r > 8 || *off + 8 * r > len) return 0;
    *rank = (int)r;
    *n = 1;
    for (uint32_t k = 0; k < r; k++) {
        memcpy(&dims[k], b + *off, 8);
        *off += 8;
        *n *= dims[k];
    }
    if (*n < 0 || *off + 4 * (size_t)*n > len) return 0;
    *data = test_falloc((size_t)*n);
    memcpy(*data, b + *off, 4 * (size_t)*n);
    *off += 4 * (size_t)*n;
    return 1;
}

static int load_tsio(const char *path, tsio *io) {
    memset(io, 0, sizeof *io);
    size_t len;
    uint8_t *b = test_read_file(path, &len);
    CHECK(b != NULL, "cannot read %s", path);
    if (!b) return 0;
    size_t off = 8;
    int ok = len > 8 && !memcmp(b, "TSIO", 4) && read_block(b, len, &off, &io->xr, io->xd, &io->x, &io->nx) &&
             read_block(b, len, &off, &io->yr, io->yd, &io->y, &io->ny);
    free(b);
    CHECK(ok, "%s is not a TSIO file", path);
    return ok;
}

static void free_tsio(tsio *io) {
    free(io->x);
    free(io->y);
}

static ts_model *import(const char *path, ts_status want) {
    ts_model *m = NULL;
    ts_status st = ts_onnx_import(g_ctx, path, NULL, &m);
    CHECK(st == want, "%s: status %d, want %d: %s", path, st, want, ts_ctx_error(g_ctx));
    return m;
}

static float *predict(ts_model *m, const float *x, int n) {
    float *y = test_falloc((size_t)n * (size_t)ts_model_classes(m));
    ts_status st = ts_model_predict(g_ctx, m, x, n, y);
    CHECK(st == TS_OK, "predict: %s", ts_ctx_error(g_ctx));
    return y;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* ------------------------------------------------------------------ PyTorch parity */

/* the model at path imported with cfg (NULL: defaults) against PyTorch's outputs in iop */
static void check_file_against_torch(const char *path, const char *iop, const ts_onnx_import_config *cfg) {
    tsio io;
    if (!load_tsio(iop, &io)) return;
    ts_model *m = NULL;
    ts_status st = ts_onnx_import(g_ctx, path, cfg, &m);
    CHECK(st == TS_OK, "%s: %s", path, ts_ctx_error(g_ctx));
    if (m) {
        int n = (int)io.xd[0], c = (int)io.yd[1];
        CHECK(ts_model_classes(m) == c, "%s: %d outputs", path, ts_model_classes(m));
        float *y = predict(m, io.x, n);
        /* logits within 1e-4 relative (plus 1e-5 absolute for values near 0) */
        int ok = test_allclose(path, y, io.y, (size_t)io.ny, 1e-4, 1e-5);
        CHECK(ok, "%s: logits differ from PyTorch", path);
        for (int i = 0; i < n; i++)
            CHECK(argmax(y + i * c, c) == argmax(io.y + i * c, c), "%s: sample %d class differs", path, i);
        free(y);
        ts_model_free(m);
    }
    free_tsio(&io);
}

static void check_against_torch(const char *net, const char *variant) {
    char path[256], iop[256];
    snprintf(path, sizeof path, FIX "%s_%s.onnx", net, variant);
    snprintf(iop, sizeof iop, FIX "%s_io.bin", net);
    check_file_against_torch(path, iop, NULL);
}

/* A graph with symbolic height and width imports at the size the caller gives
 * (ts_onnx_import_config.input_shape), and matches PyTorch at two sizes; a wrong
 * count of axes, or a size that contradicts a fixed axis, is refused. */
static void test_free_size(void) {
    ts_onnx_import_config cfg;
    ts_onnx_import_config_default(&cfg);
    ts_model *m = NULL;
    CHECK(ts_onnx_import(g_ctx, FIX "opsnet_free_op13.onnx", &cfg, &m) == TS_EUNSUPPORTED &&
              strstr(ts_ctx_error(g_ctx), "symbolic"),
          "no size given: %s", ts_ctx_error(g_ctx));
    cfg.input_shape = (ts_shape){3, {3, 16, 16}};
    check_file_against_torch(FIX "opsnet_free_op13.onnx", FIX "opsnet_io.bin", &cfg);
    cfg.input_shape = (ts_shape){3, {3, 24, 20}};
    check_file_against_torch(FIX "opsnet_free_op13.onnx", FIX "opsnet_free_io.bin", &cfg);
    cfg.input_shape = (ts_shape){2, {3, 16}};
    CHECK(ts_onnx_import(g_ctx, FIX "opsnet_free_op13.onnx", &cfg, &m) == TS_EINVAL &&
              strstr(ts_ctx_error(g_ctx), "has 2 axes"),
          "two axes: %s", ts_ctx_error(g_ctx));
    cfg.input_shape = (ts_shape){3, {3, 32, 30}};
    CHECK(ts_onnx_import(g_ctx, FIX "resnet20_eval.onnx", &cfg, &m) == TS_EINVAL &&
              strstr(ts_ctx_error(g_ctx), "axis 3 is 32"),
          "contradicts a fixed axis: %s", ts_ctx_error(g_ctx));
    CHECK(!m, "no model after a refusal");
}

/* m at the size of io's x against its y (within 1e-5), into got (malloc'ed) */
static float *check_at_size(ts_model *m, const tsio *io, const char *what) {
    const int n = (int)io->xd[0], h = (int)io->xd[2], w = (int)io->xd[3];
    ts_shape os;
    float *got = test_falloc((size_t)io->ny);
    ts_status st = ts_model_predict_hw(g_ctx, m, io->x, n, h, w, got, &os);
    CHECK(st == TS_OK, "%s at %dx%d: %s", what, h, w, ts_ctx_error(g_ctx));
    CHECK(n * ts_shape_numel(&os) == io->ny && os.dims[1] == io->yd[2] && os.dims[2] == io->yd[3],
          "%s at %dx%d: output %lldx%lldx%lld", what, h, w, (long long)os.dims[0], (long long)os.dims[1],
          (long long)os.dims[2]);
    if (!st) CHECK(test_allclose(what, got, io->y, (size_t)io->ny, 1e-5, 1e-5), "%s at %dx%d differs from PyTorch",
                   what, h, w);
    return got;
}

/* A fully convolutional graph with symbolic height and width imports as a free-size
 * model (opsets 13 and 17) and matches PyTorch at two sizes; so does its .tsr file and
 * its export, which keeps the axes symbolic; a flatten + Gemm head is refused, naming
 * the node; --input-shape still fixes the size. */
static void test_free_hw_import(void) {
    tsio a, b;
    if (!load_tsio(FIX "freenet_io_a.bin", &a)) return;
    if (!load_tsio(FIX "freenet_io_b.bin", &b)) {
        free_tsio(&a);
        return;
    }
    const char *files[2] = {FIX "freenet_op13.onnx", FIX "freenet_op17.onnx"};
    for (int f = 0; f < 2; f++) {
        ts_model *m = import(files[f], TS_OK), *l = NULL, *e = NULL;
        if (!m) continue;
        const ts_shape in = ts_model_input_shape(m);
        CHECK(ts_model_any_size(m) && in.dims[1] == 224 && in.dims[2] == 224, "%s: not free at 224x224", files[f]);
        float *ya = check_at_size(m, &a, files[f]), *yb = check_at_size(m, &b, files[f]);
        free(check_at_size(m, &a, files[f])); /* back to the first size */
        char path[256];
        snprintf(path, sizeof path, "%s/free.tsr", g_tmp);
        CHECK(ts_model_save(g_ctx, m, path) == TS_OK && ts_model_load(g_ctx, path, &l) == TS_OK, "%s",
              ts_ctx_error(g_ctx));
        if (l) {
            float *la = check_at_size(l, &a, "free.tsr"), *lb = check_at_size(l, &b, "free.tsr");
            CHECK(!memcmp(la, ya, (size_t)a.ny * sizeof *la) && !memcmp(lb, yb, (size_t)b.ny * sizeof *lb),
                  "the .tsr file's outputs differ");
            free(la);
            free(lb);
        }
        snprintf(path, sizeof path, "%s/free.onnx", g_tmp);
        CHECK(ts_onnx_export(g_ctx, m, path) == TS_OK, "export: %s", ts_ctx_error(g_ctx));
        e = import(path, TS_OK);
        if (e) {
            CHECK(ts_model_any_size(e), "the export's height and width are not symbolic");
            free(check_at_size(e, &b, "re-imported export"));
            free(check_at_size(e, &a, "re-imported export"));
        }
        free(ya);
        free(yb);
        ts_model_free(e);
        ts_model_free(l);
        ts_model_free(m);
    }
    /* --input-shape fixes the size */
    ts_onnx_import_config cfg;
    ts_onnx_import_config_default(&cfg);
    cfg.input_shape = (ts_shape){3, {3, 16, 24}};
    ts_model *m = NULL;
    CHECK(ts_onnx_import(g_ctx, files[0], &cfg, &m) == TS_OK && !ts_model_any_size(m), "%s", ts_ctx_error(g_ctx));
    if (m) {
        float *y = predict(m, a.x, 1);
        CHECK(test_allclose("freenet at 16x24 (fixed)", y, a.y, (size_t)a.ny, 1e-5, 1e-5), "fixed import differs");
        free(y);
        ts_model_free(m);
        m = NULL;
    }
    /* a flatten + Gemm head depends on the size */
    CHECK(ts_onnx_import(g_ctx, FIX "fixednet_op13.onnx", NULL, &m) == TS_EUNSUPPORTED &&
              strstr(ts_ctx_error(g_ctx), "symbolic") && strstr(ts_ctx_error(g_ctx), "/fc/Gemm") &&
              strstr(ts_ctx_error(g_ctx), "--input-shape"),
          "fixednet: %s", ts_ctx_error(g_ctx));
    CHECK(!m, "no model after a refusal");
    cfg.input_shape = (ts_shape){3, {3, 16, 16}};
    CHECK(ts_onnx_import(g_ctx, FIX "fixednet_op13.onnx", &cfg, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    free_tsio(&a);
    free_tsio(&b);
}

/* PyTorch's padding layers (pads computed with ConstantOfShape, Slice, Transpose,
 * Cast on constants), slices of computed values (a channel chunk, a spatial crop)
 * and a class token x[:, 0]; constants folded by Slice (steps, clamping, both
 * forms), Range, Equal, Where and ConstantOfShape (foldnet; gen_onnx_patterns.py) */
static void test_torch_patterns(void) {
    static const char *const nets[] = {"padnet", "slicenet", "clsnet"};
    for (int i = 0; i < 3; i++)
        for (int opset = 11; opset <= 17; opset += opset == 11 ? 2 : 4) {
            char path[256], iop[256];
            snprintf(path, sizeof path, FIX "%s_op%d.onnx", nets[i], opset);
            snprintf(iop, sizeof iop, FIX "%s_io.bin", nets[i]);
            check_file_against_torch(path, iop, NULL);
        }
    check_file_against_torch(FIX "foldnet_op13.onnx", FIX "foldnet_io.bin", NULL);
    check_file_against_torch(FIX "foldnet_op9.onnx", FIX "foldnet_op9_io.bin", NULL);
}

/* torchvision's VisionTransformer (gen_onnx_vit_fixtures.py): its nn.MultiheadAttention
 * folds the batch with the heads ((L, N*heads, hd), batch outer) and with the tokens
 * ((L*N, E), batch inner); and nn.TransformerEncoder time-major (PyTorch's default),
 * its attention and LayerNorms with the batch at axis 1. Each imports as a batched
 * model, matches PyTorch at batch 2 (1e-5), gives a sample alone what it gives in the
 * batch, and exported, imports back with the same outputs. Folds the importer cannot
 * express are refused, naming the node. */
static void test_torch_vit(void) {
    static const char *const nets[][2] = {
        {"vitnet_op13", "vitnet_io"}, {"vitnet_op17", "vitnet_io"}, {"tencnet_op13", "tencnet_io"}};
    for (size_t i = 0; i < sizeof nets / sizeof *nets; i++) {
        char path[256], iop[256], again[256];
        snprintf(path, sizeof path, FIX "%s.onnx", nets[i][0]);
        snprintf(iop, sizeof iop, FIX "%s.bin", nets[i][1]);
        tsio io;
        if (!load_tsio(iop, &io)) continue;
        const int n = (int)io.xd[0], c = (int)io.yd[1];
        const size_t per = (size_t)(io.nx / n);
        ts_model *m = import(path, TS_OK);
        if (!m) {
            free_tsio(&io);
            continue;
        }
        float *y = predict(m, io.x, n), *y1 = predict(m, io.x + per, 1);
        CHECK(test_allclose(path, y, io.y, (size_t)io.ny, 1e-5, 1e-5), "%s: logits differ from PyTorch", path);
        CHECK(test_allclose(path, y1, y + c, (size_t)c, 1e-6, 1e-6), "%s: sample 1 alone differs", path);
        snprintf(again, sizeof again, "%s/vit_again.onnx", g_tmp);
        CHECK(ts_onnx_export(g_ctx, m, again) == TS_OK, "%s: export: %s", path, ts_ctx_error(g_ctx));
        ts_model *b = import(again, TS_OK);
        float *yb = b ? predict(b, io.x, n) : NULL;
        CHECK(yb && !memcmp(y, yb, (size_t)io.ny * sizeof *y), "%s: outputs differ after import -> export -> import",
              path);
        free(yb);
        ts_model_free(b);
        free(y1);
        free(y);
        ts_model_free(m);
        free_tsio(&io);
    }
    ts_model_free(import(FIX "fold_refused_reshape.onnx", TS_EUNSUPPORTED));
    CHECK(strstr(ts_ctx_error(g_ctx), "Reshape node 'fold' (opset 13): the new shape moves values across the batch"),
          "reshape: %s", ts_ctx_error(g_ctx));
    ts_model_free(import(FIX "fold_refused_op.onnx", TS_EUNSUPPORTED));
    CHECK(strstr(ts_ctx_error(g_ctx), "ReduceMean node 'mean' (opset 13): input 'r' has the batch folded"),
          "op: %s", ts_ctx_error(g_ctx));
}

/* PyTorch 1.13's exports of nn.RNN/LSTM/GRU after an nn.Embedding
 * (gen_onnx_rnn_fixtures.py): batch-first and time-major, 1 and 2 layers, one and two
 * directions, heads on out[:, -1], h_n[-1] and every step; opsets 9 to 17. Each
 * imports and gives PyTorch's outputs within 1e-5 (+ 1e-5 relative), and exported
 * again it imports back with the same outputs. */
static void test_torch_recurrent(void) {
    static const struct {
        const char *net;
        int opsets[4];
    } nets[] = {{"lstm_bf_bi2_out", {9, 11, 13, 17}}, {"gru_tm_h", {9, 11, 13, 17}}, {"rnn_relu_bi2_h", {11, 17}},
                {"lstm_tm2_h", {13}},                 {"gru_bf_bi_seq", {13}},          {"rnn_tanh_tm_out", {9}},
                {"lstm_tm_relu_out", {13}},           {"gru_long_out", {13}}};
    for (size_t i = 0; i < sizeof nets / sizeof *nets; i++) {
        char path[256], iop[256];
        snprintf(iop, sizeof iop, FIX "rnn_%s_io.bin", nets[i].net);
        tsio io;
        if (!load_tsio(iop, &io)) continue;
        for (int k = 0; k < 4 && nets[i].opsets[k]; k++) {
            snprintf(path, sizeof path, FIX "rnn_%s_op%d.onnx", nets[i].net, nets[i].opsets[k]);
            ts_model *m = import(path, TS_OK);
            if (!m) continue;
            float *y = test_falloc((size_t)io.ny);
            CHECK(ts_model_predict(g_ctx, m, io.x, (int)io.xd[0], y) == TS_OK, "%s: %s", path, ts_ctx_error(g_ctx));
            CHECK(test_allclose(path, y, io.y, (size_t)io.ny, 1e-5, 1e-5), "%s: outputs differ from PyTorch", path);
            /* and exported again, it imports back with the same outputs */
            char again[256];
            snprintf(again, sizeof again, "%s/rnn_again.onnx", g_tmp);
            CHECK(ts_onnx_export(g_ctx, m, again) == TS_OK, "%s: export: %s", path, ts_ctx_error(g_ctx));
            ts_model *b = import(again, TS_OK);
            float *yb = test_falloc((size_t)io.ny);
            CHECK(b && ts_model_predict(g_ctx, b, io.x, (int)io.xd[0], yb) == TS_OK &&
                      !memcmp(y, yb, (size_t)io.ny * sizeof *y),
                  "%s: outputs differ after import -> export -> import", path);
            free(yb);
            ts_model_free(b);
            free(y);
            ts_model_free(m);
        }
        free_tsio(&io);
    }
}

/* One LSTM node (rnn_node_*.onnx, gen_onnx_rnn_fixtures.py): layout=1 gives what the
 * time-major node gives; each attribute or input tessera has no counterpart for is
 * refused with the node and the attribute named, and --check lists it after an
 * earlier refusal too. */
static void test_recurrent_refusals(void) {
    ts_model *a = import(FIX "rnn_node_ok.onnx", TS_OK), *b = import(FIX "rnn_node_layout1.onnx", TS_OK), *c = NULL;
    /* a time-major graph input, its axis 1 the batch: the model takes each sample batch-first */
    ts_onnx_import_config cfg;
    ts_onnx_import_config_default(&cfg);
    ts_model_free(import(FIX "rnn_node_time_major.onnx", TS_EUNSUPPORTED));
    cfg.batch_axis = 2;
    CHECK(ts_onnx_import(g_ctx, FIX "rnn_node_time_major.onnx", &cfg, &c) == TS_OK, "time-major: %s", ts_ctx_error(g_ctx));
    if (a && b && c) {
        float x[3 * 5 * 3];
        test_fill_uniform(x, 45, 3, -1.0f, 1.0f);
        float *ya = predict(a, x, 3), *yb = predict(b, x, 3), *yc = predict(c, x, 3);
        CHECK(ts_model_classes(a) == 4 && !memcmp(ya, yb, 12 * sizeof *ya), "layout=1 differs from layout=0");
        CHECK(!memcmp(ya, yc, 12 * sizeof *ya), "a time-major input differs from the transposed one");
        free(ya);
        free(yb);
        free(yc);
    }
    ts_model_free(a);
    ts_model_free(b);
    ts_model_free(c);
    static const char *const refused[][2] = {{"reverse", "attribute direction 'reverse'"},
                                             {"clip", "attribute clip"},
                                             {"activations", "attribute activations: 'Relu' where the default is Tanh"},
                                             {"input_forget", "attribute input_forget=1"},
                                             {"seq_lens", "sequence_lens ('lens')"}};
    for (int i = 0; i < 5; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "rnn_node_%s.onnx", refused[i][0]);
        ts_model_free(import(path, TS_EUNSUPPORTED));
        const char *e = ts_ctx_error(g_ctx);
        CHECK(strstr(e, "LSTM node 'lstm' (opset 14): ") && strstr(e, refused[i][1]), "%s: %s", refused[i][0], e);
    }
    char *report = NULL;
    CHECK(ts_onnx_check(g_ctx, FIX "rnn_node_check.onnx", NULL, &report) == TS_EUNSUPPORTED, "check");
    CHECK(report && strstr(report, "Cos node 'cos'") &&
              strstr(report, "LSTM node 'lstm' (opset 14): attribute direction 'reverse'"),
          "check report: %s", report ? report : "(none)");
    free(report);
}

static void test_torch_resnet20(void) {
    check_against_torch("resnet20", "eval");
    check_against_torch("resnet20", "train");
    check_against_torch("resnet20", "eval_op9");
    check_against_torch("resnet20", "eval_op17");
}

static void test_torch_vgg11(void) {
    check_against_torch("vgg11", "eval");
    check_against_torch("vgg11", "train");
}

static void test_torch_mobilenetv2(void) {
    check_against_torch("mobilenetv2", "eval");
    check_against_torch("mobilenetv2", "train");
}

/* LayerNorm (decomposed at 11 and 13, LayerNormalization at 17), GELU's Erf,
 * Hardswish (HardSigmoid + Mul, HardSwish at 17), an AvgPool2d (a zero Pad and
 * AveragePool), a 10-input Concat, ReduceMean over H and W, Pow and Sqrt
 * (gen_onnx_ops_fixtures.py) */
static void test_torch_opsnet(void) {
    check_against_torch("opsnet", "eval_op11");
    check_against_torch("opsnet", "eval_op13");
    check_against_torch("opsnet", "eval_op17");
    /* AvgPool2d's all-zero Pad imports as nothing */
    ts_model *m = import(FIX "opsnet_eval_op13.onnx", TS_OK);
    if (!m) return;
    int pads = 0, pools = 0, wide = 0;
    for (int i = 0; i < ts_model_layer_count(m); i++) {
        ts_layer_info li;
        if (ts_model_layer(m, i, &li)) continue;
        pads += !strcmp(li.kind, "pad");
        pools += !strcmp(li.kind, "avgpool");
        if (li.ninputs == 10) /* the wide concat: names past ts_layer_info's eight */
            wide += ts_model_layer_input(m, i, 9) != NULL && ts_model_layer_input(m, i, 10) == NULL &&
                    !strcmp(ts_model_layer_input(m, i, 7), li.inputs[7]);
    }
    CHECK(pads == 0 && pools == 1, "%d pad layers, %d avgpool", pads, pools);
    CHECK(wide == 1, "the 10-input concat's names: %d", wide);
    ts_model_free(m);
}

/* F.interpolate: nearest x2, bilinear x1.5 and bilinear x2 with align_corners as
 * Resize at opsets 11, 13 and 17; nearest x2 as Upsample (opset 9) and Resize-10; size=
 * (bilinear and nearest), whose sizes PyTorch computes with Shape, Slice and Concat
 * (gen_onnx_resize_fixtures.py) */
static void test_torch_resize(void) {
    check_against_torch("resizenet", "eval_op11");
    check_against_torch("resizenet", "eval_op13");
    check_against_torch("resizenet", "eval_op17");
    check_against_torch("upsamplenet", "eval_op9");
    check_against_torch("upsamplenet", "eval_op10");
    check_against_torch("sizenet", "eval_op11");
    check_against_torch("sizenet", "eval_op13");
    check_against_torch("sizenet", "eval_op17");
}

/* Upsample at opset 7 (scales as an attribute): nearest repeats, linear interpolates
 * asymmetrically (o/2: 0, 0.5, 1, then the edge) */
static void test_upsample7(void) {
    static const float x[4] = {1, 2, 3, 4};
    static const float nearest[24] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4};
    static const float linear[16] = {1, 1.5f, 2, 2, 2, 2.5f, 3, 3, 3, 3.5f, 4, 4, 3, 3.5f, 4, 4};
    const struct {
        const char *path;
        const float *want;
        int n;
    } cases[] = {{FIX "upsample7_nearest.onnx", nearest, 24}, {FIX "upsample7_linear.onnx", linear, 16}};
    for (int i = 0; i < 2; i++) {
        ts_model *m = import(cases[i].path, TS_OK);
        if (!m) continue;
        CHECK(ts_model_classes(m) == cases[i].n, "%s: %d outputs", cases[i].path, ts_model_classes(m));
        if (ts_model_classes(m) == cases[i].n) {
            float *y = predict(m, x, 1);
            test_allclose(cases[i].path, y, cases[i].want, (size_t)cases[i].n, 0, 0);
            free(y);
        }
        ts_model_free(m);
    }
}

/* Resize nodes tessera does not compute are refused with the reason, naming the node */
static void test_resize_refused(void) {
    static const struct {
        const char *why, *want;
    } cases[] = {
        {"cubic", "mode 'cubic'"},
        {"crop", "'tf_crop_and_resize'"},
        {"channels", "scale 2 on axis 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "resize_refused_%s.onnx", cases[i].why);
        ts_model *m = NULL;
        ts_status st = ts_onnx_import(g_ctx, path, NULL, &m);
        const char *err = ts_ctx_error(g_ctx);
        CHECK(st == TS_EUNSUPPORTED && strstr(err, cases[i].want) && strstr(err, "Resize node 'resize_"),
              "%s: status %d: %s", cases[i].why, st, err);
        ts_model_free(m);
    }
}

/* A training-mode export keeps batch norm: its running statistics are the
 * imported ones, and training goes on from them. */
static void test_train_imported(void) {
    ts_model *m = import(FIX "resnet20_train.onnx", TS_OK);
    if (!m) return;
    int t = ts_model_find_tensor(m, "BatchNormalization_0.running_mean");
    int tn = ts_model_tensor_count(m);
    int found_bn = 0;
    for (int i = 0; i < tn; i++) {
        ts_tensor_info info;
        ts_model_tensor(m, i, &info);
        if (strstr(info.name, "running_var")) found_bn++;
    }
    CHECK(found_bn >= 19, "only %d batch norms kept", found_bn);
    (void)t;
    ts_optim_config oc;
    ts_optim_config_default(&oc, TS_OPT_SGD);
    ts_optimizer *opt = NULL;
    CHECK(ts_optimizer_create(g_ctx, m, &oc, &opt) == TS_OK, "optimizer: %s", ts_ctx_error(g_ctx));
    tsio io;
    if (opt && load_tsio(FIX "resnet20_io.bin", &io)) {
        int n = (int)io.xd[0], c = ts_model_classes(m);
        float *logits = test_falloc((size_t)n * c), *dl = test_falloc((size_t)n * c);
        double first = 0, last = 0;
        for (int step = 0; step < 5; step++) {
            CHECK(ts_model_forward_train(g_ctx, m, io.x, n, logits, 1) == TS_OK, "%s", ts_ctx_error(g_ctx));
            /* softmax cross-entropy towards class 0 */
            double loss = 0;
            for (int i = 0; i < n; i++) {
                float *z = logits + i * c, mx = z[argmax(z, c)];
                double s = 0;
                for (int j = 0; j < c; j++) s += exp(z[j] - mx);
                for (int j = 0; j < c; j++) dl[i * c + j] = (float)((exp(z[j] - mx) / s - (j == 0)) / n);
                loss += -(z[0] - mx - log(s)) / n;
            }
            if (step == 0) first = loss;
            last = loss;
            CHECK(ts_model_backward(g_ctx, m, dl) == TS_OK, "%s", ts_ctx_error(g_ctx));
            CHECK(ts_optimizer_step(g_ctx, opt, 0.05f) == TS_OK, "%s", ts_ctx_error(g_ctx));
        }
        CHECK(isfinite(last) && last < first, "loss %g -> %g", first, last);
        free(logits);
        free(dl);
        free_tsio(&io);
    }
    ts_optimizer_free(opt);
    ts_model_free(m);
}

/* ------------------------------------------------------------------ round trips */

static void randomize_buffers(ts_model *m, uint64_t seed) {
    /* running statistics away from 0/1 so batch norm export is exercised */
    int tn = ts_model_tensor_count(m);
    for (int i = 0; i < tn; i++) {
        ts_tensor_info info;
        ts_model_tensor(m, i, &info);
        if (strstr(info.name, "running_var")) test_fill_uniform(info.data, (size_t)info.numel, seed + (uint64_t)i, 0.5f, 2.0f);
        else if (strstr(info.name, "running_mean")) test_fill_uniform(info.data, (size_t)info.numel, seed + (uint64_t)i, -0.5f, 0.5f);
    }
}

/* With TESSERA_ONNX_EXPORT_DIR set, each exported model is kept there with a TSIO
 * file of its input and tessera's output: scripts/onnx-check.sh runs
 * onnx.checker and onnxruntime over them. */
static void keep_export(const char *onnx_path, const char *what, const ts_model *m, const float *x, const float *y,
                        int n) {
    const char *dir = getenv("TESSERA_ONNX_EXPORT_DIR");
    if (!dir) return;
    char path[512];
    size_t len;
    uint8_t *b = test_read_file(onnx_path, &len);
    snprintf(path, sizeof path, "%s/%s.onnx", dir, what);
    CHECK(b && test_write_file(path, b, len), "keep %s", path);
    free(b);
    snprintf(path, sizeof path, "%s/%s_io.bin", dir, what);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "write %s", path);
    if (!f) return;
    ts_layer_info in, out;
    ts_model_layer(m, 0, &in);
    ts_model_layer(m, ts_model_layer_count(m) - 1, &out);
    const ts_shape *sh[2] = {&in.out, &out.out};
    const float *data[2] = {x, y};
    uint32_t version = 1;
    fwrite("TSIO", 1, 4, f);
    fwrite(&version, 4, 1, f);
    for (int k = 0; k < 2; k++) {
        uint32_t r = (uint32_t)sh[k]->ndim + 1;
        int64_t nn = n, per = 1;
        fwrite(&r, 4, 1, f);
        fwrite(&nn, 8, 1, f);
        for (int d = 0; d < sh[k]->ndim; d++) {
            fwrite(&sh[k]->dims[d], 8, 1, f);
            per *= sh[k]->dims[d];
        }
        fwrite(data[k], 4, (size_t)(per * n), f);
    }
    fclose(f);
}

static void round_trip(ts_model *m, const char *what) {
    char path[256];
    snprintf(path, sizeof path, "%s/rt.onnx", g_tmp);
    ts_status st = ts_onnx_export(g_ctx, m, path);
    CHECK(st == TS_OK, "%s: export: %s", what, ts_ctx_error(g_ctx));
    if (st) return;
    ts_model *b = import(path, TS_OK);
    if (!b) return;
    CHECK(ts_model_classes(b) == ts_model_classes(m), "%s: classes", what);
    ts_tensor_info in;
    memset(&in, 0, sizeof in);
    int64_t per = 1;
    ts_layer_info li;
    ts_model_layer(m, 0, &li);
    for (int k = 0; k < li.out.ndim; k++) per *= li.out.dims[k];
    int n = 3;
    float *x = test_falloc((size_t)(per * n));
    test_fill_uniform(x, (size_t)(per * n), 7, -1.0f, 1.0f);
    float *ya = predict(m, x, n), *yb = predict(b, x, n);
    size_t ny = (size_t)n * (size_t)ts_model_classes(m);
    keep_export(path, what, m, x, ya, n);
    int same = !memcmp(ya, yb, ny * sizeof(float));
    if (!same) test_allclose(what, yb, ya, ny, 0, 0);
    CHECK(same, "%s: outputs differ after native -> ONNX -> native", what);
    free(x);
    free(ya);
    free(yb);
    ts_model_free(b);
}

/* round_trip of the model that arch text builds with weights from seed */
static void round_trip_arch(const char *arch, const char *what, uint64_t seed) {
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, arch, what, NULL, 0, seed, &m);
    CHECK(st == TS_OK, "%s: %s", what, ts_ctx_error(g_ctx));
    if (!m) return;
    round_trip(m, what);
    ts_model_free(m);
}

/* The zoo's sequence models export (embedding as Gather, recurrent layers as ONNX's
 * RNN/LSTM/GRU between transposes, lengths from the ids) and import back with the
 * same outputs on a padded batch; onnxruntime checks the exports too
 * (scripts/onnx-check.sh, kept here with tessera's outputs). */
static void test_round_trip_sequence_models(void) {
    static const char *const names[] = {"lstm-clinc", "gru-clinc", "rnn-clinc", "lstm-pos", "lstm-seq2seq"};
    for (int z = 0; z < 5; z++) {
        const int seq2seq = z == 4;
        const ts_shape in = seq2seq ? (ts_shape){2, {2, 7}} : (ts_shape){1, {9}};
        ts_model *m = NULL;
        ts_status st = ts_model_from_arch_seq(g_ctx, ts_zoo_arch(names[z]), names[z], &in, z < 3 ? 5 : 0, 30, 25, 5, &m);
        CHECK(st == TS_OK, "%s: %s", names[z], ts_ctx_error(g_ctx));
        if (!m) continue;
        const int n = 3, per = (int)ts_shape_numel(&in);
        float *x = test_falloc((size_t)(per * n));
        const int row = seq2seq ? 7 : 9;
        for (int i = 0; i < per * n; i++) /* ids 1..24; sample k's rows padded in their last 2k steps */
            x[i] = i % per % row >= row - 2 * (i / per) ? 0.0f : (float)(1 + (i * 7) % 24);
        char path[256];
        snprintf(path, sizeof path, "%s/seq.onnx", g_tmp);
        float *y = predict(m, x, n);
        st = ts_onnx_export(g_ctx, m, path);
        CHECK(st == TS_OK, "%s: export: %s", names[z], ts_ctx_error(g_ctx));
        if (!st) keep_export(path, names[z], m, x, y, n);
        ts_model *b = st ? NULL : import(path, TS_OK);
        if (b) {
            ts_layer_info out;
            ts_model_layer(m, ts_model_layer_count(m) - 1, &out);
            const size_t ny = (size_t)n * (size_t)ts_shape_numel(&out.out);
            float *yb = predict(b, x, n);
            int same = yb && !memcmp(y, yb, ny * sizeof(float));
            if (yb && !same) test_allclose(names[z], yb, y, ny, 0, 0);
            CHECK(same, "%s: outputs differ after native -> ONNX -> native", names[z]);
            free(yb);
            ts_model_free(b);
        }
        free(x);
        free(y);
        ts_model_free(m);
    }
}

/* An int8 model exports as QDQ: QuantizeLinear/DequantizeLinear in front of every
 * convolution's input, int8 weights with per-channel scales (axis 0) through
 * DequantizeLinear; the importer refuses QuantizeLinear (not claimed), so onnxruntime
 * checks the values (scripts/onnx-check.sh, kept here with tessera's outputs). */
static void test_export_int8(void) {
    ts_model *m = NULL, *q = NULL;
    CHECK(ts_model_from_arch(g_ctx, ts_zoo_arch("resnet20"), "resnet20", NULL, 10, 3, &m) == TS_OK, "%s",
          ts_ctx_error(g_ctx));
    if (!m) return;
    randomize_buffers(m, 5);
    const int n = 16, per = 3 * 32 * 32;
    float *x = test_falloc((size_t)(per * n));
    test_fill_uniform(x, (size_t)(per * n), 9, -1.0f, 1.0f);
    ts_quantize_config cfg;
    ts_quantize_config_default(&cfg);
    CHECK(ts_model_quantize(g_ctx, m, x, n, &cfg, &q) == TS_OK, "quantize: %s", ts_ctx_error(g_ctx));
    char path[256];
    snprintf(path, sizeof path, "%s/int8.onnx", g_tmp);
    if (q) {
        float *y = predict(q, x, 3);
        CHECK(ts_onnx_export(g_ctx, q, path) == TS_OK, "export: %s", ts_ctx_error(g_ctx));
        keep_export(path, "resnet20-int8", q, x, y, 3);
        size_t len = 0;
        uint8_t *b = test_read_file(path, &len);
        int quant = 0, dequant = 0;
        for (size_t i = 0; b && i + 16 < len; i++) {
            quant += !memcmp(b + i, "QuantizeLinear", 14) && (i == 0 || b[i - 1] != 'e');
            dequant += !memcmp(b + i, "DequantizeLinear", 16);
        }
        /* 21 convolutions: a Quantize for each input, a Dequantize for it and its weights */
        CHECK(quant >= 21 && dequant >= 42, "QDQ nodes: %d quantize, %d dequantize", quant, dequant);
        free(b);
        free(y);
    }
    free(x);
    ts_model_free(m);
    ts_model_free(q);
}

static void test_round_trip_zoo(void) {
    for (int i = 0; ts_zoo_name(i); i++) {
        const char *name = ts_zoo_name(i);
        if (strstr(ts_zoo_arch(name), "embedding")) continue; /* sequence models: no ONNX form yet (docs/onnx.md) */
        ts_shape in = {3, {3, 32, 32}};
        ts_model *m = NULL;
        ts_status st = ts_model_from_arch(g_ctx, ts_zoo_arch(name), name, &in, 10, 3, &m);
        CHECK(st == TS_OK, "%s: %s", name, ts_ctx_error(g_ctx));
        if (!m) continue;
        randomize_buffers(m, 11);
        round_trip(m, name);
        ts_model_free(m);
    }
}

static void test_round_trip_new_kinds(void) {
    static const char *const arch =
        "input shape=2x6x6\n"
        "conv2d name=c out=4 kernel=3 padding=1,0,1,2 bias=1\n"
        "prelu name=p shape=4x1x1\n"
        "maxpool name=mp kernel=2 stride=1 padding=0,0,1,1\n"
        "elu name=e alpha=0.5\n"
        "clip name=cl min=-1 max=2\n"
        "transpose name=t perm=0,2,1\n"
        "pad name=pd pads=0,1,0,0,0,1 mode=reflect\n"
        "binary name=b op=mul const=1x1x7\n"
        "binary name=b2 op=sub const=7x7 const_first=1\n"
        "selu name=s\n"
        "hardsigmoid name=h\n"
        "reshape name=r shape=4x49\n"
        "matmul name=mm b=49x5\n"
        "logsoftmax name=ls axis=0\n"
        "flatten name=f\n"
        "dense name=fc out=3\n"
        "softmax name=sm\n";
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, arch, "kinds.arch", NULL, 0, 5, &m);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    int tn = ts_model_tensor_count(m);
    for (int i = 0; i < tn; i++) {
        ts_tensor_info info;
        ts_model_tensor(m, i, &info);
        if (strstr(info.name, ".const")) test_fill_uniform(info.data, (size_t)info.numel, 30 + (uint64_t)i, 0.5f, 1.5f);
    }
    round_trip(m, "new_kinds");
    ts_model_free(m);
}

/* the kinds torchvision's newer networks brought */
static void test_round_trip_reduce_kinds(void) {
    static const char *const arch =
        "input shape=3x6x6\n"
        "conv2d name=c out=12 kernel=3 padding=1\n"
        "hardswish name=hs\n"
        "reducemean name=rm axes=0\n"
        "binary name=d in=hs,rm op=sub\n"
        "pow name=p exponent=2\n"
        "sigmoid name=s\n"
        "sqrt name=q\n"
        "erf name=e\n"
        "reshape name=rs shape=12x36\n"
        "transpose name=tp perm=1,0\n"
        "matmul name=mm in=rs,tp\n"
        "reducemean name=g axes=1\n"
        "flatten name=f\n"
        "dense name=fc out=4\n";
    round_trip_arch(arch, "reduce_kinds", 6);
}

/* resize in every form that has an ONNX one: scale and size, nearest with each
 * rounding rule, linear, each coordinate mode */
static void test_round_trip_resize(void) {
    static const char *const arch =
        "input shape=3x5x6\n"
        "resize name=r1 scale=2 coord=asymmetric nearest=floor\n"
        "conv2d name=c out=4 kernel=3 stride=2 padding=1\n"
        "resize name=r2 size=7x5 mode=linear coord=align_corners\n"
        "resize name=r3 scale=1.5x0.75 mode=linear coord=pytorch_half_pixel\n"
        "resize name=r4 size=4x9 coord=tf_half_pixel_for_nn\n"
        "resize name=r5 scale=0.5 nearest=ceil\n"
        "resize name=r6 size=3x5 nearest=round_prefer_ceil coord=asymmetric\n"
        "resize name=r7 scale=1.7 mode=linear\n"
        "flatten name=f\n"; /* every resized value is an output (160) */
    round_trip_arch(arch, "resize", 8);
    /* ONNX applies the coordinate rule to every axis: tf_half_pixel_for_nn rounding up
     * would move the channels, so that form is not exported */
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(
        g_ctx, "input shape=2x4x4\nresize name=r scale=2 coord=tf_half_pixel_for_nn nearest=ceil\n", "tf.arch", NULL, 0,
        8, &m);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    char path[256];
    snprintf(path, sizeof path, "%s/tf.onnx", g_tmp);
    st = ts_onnx_export(g_ctx, m, path);
    CHECK(st == TS_EUNSUPPORTED && strstr(ts_ctx_error(g_ctx), "tf_half_pixel_for_nn"), "status %d: %s", st,
          ts_ctx_error(g_ctx));
    ts_model_free(m);
}

/* the layers of composed models (mask), constants, channel concat, asymmetric
 * average pooling, global max pooling */
static void test_round_trip_more_kinds(void) {
    static const char *const arch =
        "input shape=3x8x8\n"
        "conv2d name=c1 out=4 kernel=3 padding=1\n"
        "batchnorm name=bn\n"
        "relu name=r\n"
        "mask name=mk\n"
        "conv2d name=c2 out=4 kernel=3 padding=1 in=r\n"
        "concat name=cat in=mk,c2 axis=0\n"
        "tanh name=t\n"
        "avgpool name=ap kernel=2 padding=0,0,1,1 count_include_pad=0\n"
        "constant name=k shape=8x4x4 in=ap\n"
        "add name=a in=ap,k\n"
        "sigmoid name=s\n"
        "leakyrelu name=lr slope=0.1\n"
        "convtranspose name=ct out=3 kernel=3 stride=2 padding=1,0,0,1 output_padding=1\n"
        "relu name=r2\n"
        "globalmaxpool name=g\n"
        "dropout name=d p=0.3\n"
        "dense name=fc out=5\n";
    ts_model *m = NULL;
    ts_status st = ts_model_from_arch(g_ctx, arch, "more.arch", NULL, 0, 9, &m);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) return;
    randomize_buffers(m, 5);
    int tn = ts_model_tensor_count(m);
    for (int i = 0; i < tn; i++) {
        ts_tensor_info info;
        ts_model_tensor(m, i, &info);
        if (strstr(info.name, ".value")) test_fill_uniform(info.data, (size_t)info.numel, 40, -1.0f, 1.0f);
        if (strstr(info.name, ".keep"))
            for (int64_t j = 0; j < info.numel; j++) info.data[j] = (float)((j * 7 + 3) % 5 != 0);
    }
    round_trip(m, "more_kinds");
    ts_model_free(m);
}

static void test_round_trip_imported(void) {
    static const char *const nets[] = {"resnet20_eval", "mobilenetv2_train", "vgg11_eval", "opsnet_eval_op17",
                                       "padnet_op17", "slicenet_op13", "clsnet_op11"};
    for (int i = 0; i < 7; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s.onnx", nets[i]);
        ts_model *m = import(path, TS_OK);
        if (!m) continue;
        round_trip(m, nets[i]);
        ts_model_free(m);
    }
}

/* ------------------------------------------------------------------ hostile files */

static void expect_fail(const char *what, const void *data, size_t len, ts_status want, const char *needle) {
    ts_model *m = NULL;
    ts_status st = ts_onnx_import_memory(g_ctx, data, len, what, NULL, &m);
    CHECK(st == want, "%s: status %d, want %d (%s)", what, st, want, ts_ctx_error(g_ctx));
    CHECK(m == NULL, "%s: a model came back", what);
    const char *msg = ts_ctx_error(g_ctx);
    CHECK(strstr(msg, what) != NULL, "%s: message '%s' does not name the file", what, msg);
    if (needle) CHECK(strstr(msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, msg, needle);
    ts_model_free(m);
}

static void test_hostile(void) {
    size_t len;
    tiny t;
    /* the well-formed tiny graph imports */
    tiny_init(&t);
    tiny_node(&t, "Mul", "x", "w", "h");
    tiny_node(&t, "Relu", "h", NULL, "y");
    uint8_t *good = tiny_pack(&t, &len);
    ts_model *m = NULL;
    CHECK(ts_onnx_import_memory(g_ctx, good, len, "tiny.onnx", NULL, &m) == TS_OK, "tiny: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    /* truncated: every prefix fails cleanly (never crashes) */
    int refused = 0;
    for (size_t cut = 0; cut < len; cut++) {
        m = NULL;
        ts_status st = ts_onnx_import_memory(g_ctx, good, cut, "cut.onnx", NULL, &m);
        refused += st != TS_OK;
        ts_model_free(m);
    }
    CHECK(refused >= (int)len - 2, "only %d of %zu prefixes refused", refused, len);
    expect_fail("half.onnx", good, len / 2, TS_EFORMAT, NULL);
    /* wrong wire type: field 7 (graph) as a varint */
    uint8_t wire[] = {0x08, 0x07, 0x38, 0x01};
    expect_fail("wire.onnx", wire, sizeof wire, TS_EFORMAT, "protobuf");
    free(good);

    /* tensor data shorter than its dims */
    tiny_init(&t);
    t.idims[0] = 5;
    tiny_node(&t, "Mul", "x", "w", "y");
    uint8_t *b = tiny_pack(&t, &len);
    expect_fail("short.onnx", b, len, TS_EFORMAT, "dims say 5");
    free(b);
    /* dims that overflow */
    tiny_init(&t);
    int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    t.init.n_dims = 2;
    t.init.dims = huge;
    tiny_node(&t, "Mul", "x", "w", "y");
    b = tiny_pack(&t, &len);
    expect_fail("overflow.onnx", b, len, TS_EFORMAT, "overflow");
    free(b);
    /* a cycle: a = Relu(b), b = Relu(a) */
    tiny_init(&t);
    tiny_node(&t, "Relu", "b", NULL, "a");
    tiny_node(&t, "Relu", "a", NULL, "b");
    tiny_node(&t, "Add", "a", "x", "y");
    b = tiny_pack(&t, &len);
    expect_fail("cycle.onnx", b, len, TS_EFORMAT, "cycle");
    free(b);
    /* an input nothing produces */
    tiny_init(&t);
    tiny_node(&t, "Add", "x", "ghost", "y");
    b = tiny_pack(&t, &len);
    expect_fail("ghost.onnx", b, len, TS_EFORMAT, "'ghost' is never produced");
    free(b);
    /* an unsupported op names type, node and opset; --check lists all of them */
    tiny_init(&t);
    tiny_node(&t, "Cos", "x", NULL, "a");
    tiny_node(&t, "Relu", "a", NULL, "c");
    tiny_node(&t, "Sin", "c", NULL, "y");
    b = tiny_pack(&t, &len);
    expect_fail("unsup.onnx", b, len, TS_EUNSUPPORTED, "Cos node 'Cos' (opset 13)");
    char path[256];
    snprintf(path, sizeof path, "%s/unsup.onnx", g_tmp);
    CHECK(test_write_file(path, b, len), "write");
    char *report = NULL;
    CHECK(ts_onnx_check(g_ctx, path, NULL, &report) == TS_EUNSUPPORTED, "check");
    CHECK(report && strstr(report, "Cos node") && strstr(report, "Sin node") && !strstr(report, "Relu node"),
          "report: %s", report ? report : "(none)");
    ts_onnx_free(report);
    free(b);
    /* reading an output tessera does not compute (Dropout's mask) is refused, not skipped */
    tiny_init(&t);
    tiny_node(&t, "Dropout", "x", NULL, "d");
    char *two[2] = {(char *)"d", (char *)"mask"};
    t.nodes[0].n_output = 2;
    t.nodes[0].output = two;
    tiny_node(&t, "Add", "d", "mask", "y");
    b = tiny_pack(&t, &len);
    expect_fail("mask.onnx", b, len, TS_EUNSUPPORTED, "does not compute");
    free(b);
    /* a missing file */
    m = NULL;
    CHECK(ts_onnx_import(g_ctx, "/nonexistent/x.onnx", NULL, &m) == TS_EIO, "missing file");
    CHECK(strstr(ts_ctx_error(g_ctx), "/nonexistent/x.onnx") != NULL, "names the file");
    /* a non-float initializer type the importer cannot use */
    tiny_init(&t);
    t.init.data_type = 8; /* string */
    tiny_node(&t, "Mul", "x", "w", "y");
    b = tiny_pack(&t, &len);
    expect_fail("string.onnx", b, len, TS_EUNSUPPORTED, "string");
    free(b);
    /* a real model cut short */
    size_t rl;
    uint8_t *real = test_read_file(FIX "resnet20_eval.onnx", &rl);
    CHECK(real != NULL, "read");
    if (real) {
        expect_fail("resnet20_cut.onnx", real, rl - 1000, TS_EFORMAT, NULL);
        free(real);
    }
}

/* ts_onnx_check of a tiny graph written to a file */
static char *check_tiny(tiny *t, const char *name) {
    size_t len;
    uint8_t *b = tiny_pack(t, &len);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    CHECK(b && test_write_file(path, b, len), "write %s", name);
    free(b);
    char *report = NULL;
    ts_status st = ts_onnx_check(g_ctx, path, NULL, &report);
    CHECK(st == TS_EUNSUPPORTED && report, "%s: status %d, %s", name, st, ts_ctx_error(g_ctx));
    return report;
}

/* --check reports refusals of the graph's inputs (a symbolic axis, a second
 * input, a non-float input) instead of an empty report, and still checks the nodes
 * downstream of a refused node, with the rules that need no shapes */
static void test_check_lists_all(void) {
    tiny t;
    tiny_init(&t);
    t.d[1].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    t.d[1].dim_param = (char *)"width";
    tiny_node(&t, "Relu", "x", NULL, "a");
    tiny_node(&t, "Cos", "a", NULL, "y");
    char *r = check_tiny(&t, "symbolic.onnx");
    CHECK(r && strstr(r, "graph input 'x' axis 1 is symbolic") && strstr(r, "Cos node"), "symbolic: %s", r ? r : "(none)");
    ts_onnx_free(r);

    tiny_init(&t);
    Onnx__ValueInfoProto z = t.in;
    z.name = (char *)"z";
    Onnx__ValueInfoProto *two[2] = {&t.in, &z};
    t.g.n_input = 2;
    t.g.input = two;
    tiny_node(&t, "Add", "x", "z", "y");
    r = check_tiny(&t, "two.onnx");
    CHECK(r && strstr(r, "graph input 'z' is not an initializer"), "second input: %s", r ? r : "(none)");
    ts_onnx_free(r);

    tiny_init(&t);
    t.tt.elem_type = 7; /* int64: token ids, which only an embedding's Gather reads */
    tiny_node(&t, "Relu", "x", NULL, "y");
    r = check_tiny(&t, "int.onnx");
    CHECK(r && strstr(r, "Relu node") && strstr(r, "input 'x' is computed integers"), "int input: %s", r ? r : "(none)");
    ts_onnx_free(r);

    /* after the refused Cos: a Conv whose weight is computed, a Concat along the
     * batch axis (the default axis 0), and an unsupported Sin: all four listed */
    tiny_init(&t);
    tiny_node(&t, "Cos", "x", NULL, "a");
    tiny_node(&t, "Conv", "a", "x", "c");
    tiny_node(&t, "Concat", "c", "c", "d");
    tiny_node(&t, "Sin", "d", NULL, "y");
    r = check_tiny(&t, "downstream.onnx");
    CHECK(r && strstr(r, "Cos node") && strstr(r, "Conv node 'Conv' (opset 13): its weight ('x') must be a constant") &&
              strstr(r, "Concat node 'Concat' (opset 13): axis 0 is the batch axis") && strstr(r, "Sin node"),
          "downstream: %s", r ? r : "(none)");
    ts_onnx_free(r);
    /* a node that reads only shape arithmetic of a refused value is not refused
     * for axis 0: Shape's output is a constant of unknown value */
    tiny_init(&t);
    tiny_node(&t, "Cos", "x", NULL, "a");
    tiny_node(&t, "Shape", "a", NULL, "s");
    tiny_node(&t, "Concat", "s", "s", "c");
    tiny_node(&t, "Reshape", "x", "c", "y");
    r = check_tiny(&t, "shape.onnx");
    CHECK(r && strstr(r, "Cos node") && !strstr(r, "Concat node") && !strstr(r, "Reshape node"), "shape: %s", r ? r : "(none)");
    ts_onnx_free(r);
}

/* TensorProto files (the backend test data format) */
static void test_tensor_files(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/t.pb", g_tmp);
    float v[6] = {1, -2, 3.5f, 4, 5, 6};
    int64_t dims[2] = {2, 3};
    CHECK(ts_onnx_tensor_save(g_ctx, path, "t", dims, 2, v) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_onnx_tensor *t = NULL;
    CHECK(ts_onnx_tensor_load(g_ctx, path, &t) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (t) {
        CHECK(ts_onnx_tensor_rank(t) == 2 && ts_onnx_tensor_dim(t, 1) == 3 && ts_onnx_tensor_numel(t) == 6, "shape");
        CHECK(!memcmp(ts_onnx_tensor_floats(t), v, sizeof v), "values");
        ts_onnx_tensor_free(t);
    }
    uint8_t junk[] = {0xff, 0xff, 0xff};
    t = NULL;
    CHECK(ts_onnx_tensor_parse(g_ctx, junk, sizeof junk, "junk.pb", &t) == TS_EFORMAT && !t, "junk refused");
}

/* Float constants cast to int64 outside its range (the fuzzer's find, undefined
 * behaviour before): truncation toward zero, saturated, NaN to 0. The files are the
 * fuzz regression inputs (tests/fuzz/make-regress.py). */
static void test_cast_out_of_range(void) {
    const float x[4] = {0, 0, 0, 0};
    ts_model *m = import("tests/fuzz/regress/onnx/cast-float-out-of-range.onnx", TS_OK);
    if (m) {
        float *y = predict(m, x, 1);
        CHECK(y[0] == 9223372036854775807.0f && y[1] == -9223372036854775808.0f && y[2] == 0 && y[3] == 1,
              "cast: %g %g %g %g", y[0], y[1], y[2], y[3]);
        free(y);
        ts_model_free(m);
    }
    m = import("tests/fuzz/regress/onnx/concat-float-into-int64.onnx", TS_OK);
    if (m) {
        float *y = predict(m, x, 1);
        CHECK(y[0] == 1 && y[1] == 2 && y[2] == 9223372036854775807.0f && y[3] == -9223372036854775808.0f,
              "concat: %g %g %g %g", y[0], y[1], y[2], y[3]);
        free(y);
        ts_model_free(m);
    }
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 2;
    RUN(test_torch_resnet20);
    RUN(test_torch_vgg11);
    RUN(test_torch_mobilenetv2);
    RUN(test_torch_opsnet);
    RUN(test_torch_resize);
    RUN(test_resize_refused);
    RUN(test_upsample7);
    RUN(test_free_size);
    RUN(test_free_hw_import);
    RUN(test_train_imported);
    RUN(test_torch_patterns);
    RUN(test_torch_vit);
    RUN(test_torch_recurrent);
    RUN(test_recurrent_refusals);
    RUN(test_round_trip_zoo);
    RUN(test_round_trip_sequence_models);
    RUN(test_export_int8);
    RUN(test_round_trip_new_kinds);
    RUN(test_round_trip_more_kinds);
    RUN(test_round_trip_reduce_kinds);
    RUN(test_round_trip_resize);
    RUN(test_round_trip_imported);
    RUN(test_hostile);
    RUN(test_check_lists_all);
    RUN(test_tensor_files);
    RUN(test_cast_out_of_range);
    test_end(g_ctx, g_tmp);
    TEST_MAIN_END("test_onnx");
}
