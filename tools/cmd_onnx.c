/* tessera import and tessera export: ONNX in and out. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static cli_opt import_opts[] = {
    {"out", "FILE.tsr", "where to write the tessera model (required unless --check)", NULL},
    {"check", NULL, "only list every input and node that cannot be imported, all at once", NULL},
    {"no-batch", NULL, "the input has no batch axis: the whole tensor is one sample", NULL},
    {"batch-axis", "K", "the input's axis K is the batch (1 for a time-major (T, N, F) sequence); default 0", NULL},
    {"input-shape", "CxHxW", "sizes for the input's symbolic axes (one sample's; with --no-batch, the whole tensor's)",
     NULL},
    {"mean", "M[,M..]", "the input normalization the model was trained with: per-channel mean of pixel/255", NULL},
    {"std", "S[,S..]", "... and standard deviation (eval, predict and train then normalize images so)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
};
static cli_cmd import_cmd = {"import", "MODEL.onnx --out MODEL.tsr [options]",
                             "Reads an ONNX model (opsets 9 to 17; operators in docs/onnx.md) into a tessera model.\n"
                             "The input's first axis is the batch; the rest must have fixed sizes (--input-shape\n"
                             "fixes symbolic ones), except a symbolic height and width together: a fully convolutional\n"
                             "graph then imports as a free-size model (any image size per call, 224x224 by default;\n"
                             "refused, naming the node, when something depends on the size). Batch norm keeps\n"
                             "its running statistics, so training can continue (tessera train --init MODEL.tsr).\n"
                             "Operators: Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool\n"
                             "BatchNormalization Relu LeakyRelu PRelu Elu Selu Sigmoid HardSigmoid Tanh Clip Gemm\n"
                             "MatMul Add Sub Mul Div Sum Softmax LogSoftmax Flatten Reshape Concat Transpose Squeeze\n"
                             "Unsqueeze Pad Identity Dropout Expand HardSwish Sqrt Erf Pow ReduceMean\n"
                             "LayerNormalization Slice Split Gather RNN LSTM GRU, and Constant Shape Cast ConstantOfShape\n"
                             "Range Equal Where on constants. An int64/int32 input is token ids (for an embedding's\n"
                             "Gather), which the model takes as floats. --check lists every refused input and node at\n"
                             "once.",
                             import_opts, sizeof import_opts / sizeof import_opts[0]};

/* "0.5,0.25" -> values; returns the count, or -1 when malformed */
static int parse_list(const char *s, float *v, int max) {
    int n = 0;
    while (s && *s) {
        char *end;
        double d = strtod(s, &end);
        if (end == s || n == max || !(d > -1e6 && d < 1e6)) return -1;
        v[n++] = (float)d;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}

static cli_opt export_opts[] = {
    {"out", "FILE.onnx", "where to write the ONNX model (required)", NULL},
    {"force", NULL, "replace an output file even when it is write-protected", NULL},
};
static cli_cmd export_cmd = {"export", "MODEL.tsr|MODULE.tsm --out MODEL.onnx",
                             "Writes a tessera model (also a composed model, or a module alone: one output, its score)\n"
                             "as ONNX opset 13, with a symbolic batch axis. Inference semantics: batch norm uses running\n"
                             "statistics, dropout is off. The input is what the model takes after its preprocessing\n"
                             "(see tessera info).",
                             export_opts, sizeof export_opts / sizeof export_opts[0]};

int cmd_import(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&import_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&import_cmd, "out");
    int check = cli_get(&import_cmd, "check") != NULL;
    if (npos != 1 || (!out && !check)) {
        fprintf(stderr, "tessera import: expected MODEL.onnx and --out FILE.tsr (see tessera import --help)\n");
        return EXIT_USAGE;
    }
    if (!check && (rc = cli_refuse_same(&import_cmd, "--out", out, (const char *const *)pos, 1))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    cli_setup_files(&import_cmd, ctx);
    ts_onnx_import_config cfg;
    ts_onnx_import_config_default(&cfg);
    cfg.batch_axis = cli_get(&import_cmd, "no-batch") == NULL;
    long axis;
    if (!cli_int(&import_cmd, "batch-axis", 0, 0, 7, &axis)) {
        ts_ctx_free(ctx);
        return EXIT_USAGE;
    }
    if (axis && !cfg.batch_axis) {
        fprintf(stderr, "tessera import: --batch-axis and --no-batch contradict each other\n");
        ts_ctx_free(ctx);
        return EXIT_USAGE;
    }
    if (cfg.batch_axis) cfg.batch_axis = (int)axis + 1;
    if (!cli_shape(&import_cmd, "input-shape", &cfg.input_shape)) {
        ts_ctx_free(ctx);
        return EXIT_USAGE;
    }
    ts_status st;
    if (check) {
        char *report = NULL;
        st = ts_onnx_check(ctx, pos[0], &cfg, &report);
        if (st == TS_OK) printf("%s: every node can be imported\n", pos[0]);
        else if (report) fputs(report, stdout);
        ts_onnx_free(report);
        rc = st ? cli_fail("import", ctx, st) : EXIT_OK;
        ts_ctx_free(ctx);
        return rc;
    }
    const char *mean = cli_get(&import_cmd, "mean"), *sd = cli_get(&import_cmd, "std");
    ts_preprocess pp;
    memset(&pp, 0, sizeof pp);
    if (mean || sd) {
        int nm = parse_list(mean, pp.mean, 4), ns = parse_list(sd, pp.std, 4);
        int ok = nm > 0 && nm == ns;
        for (int c = 0; c < ns && ok; c++) ok = pp.std[c] > 0;
        if (!ok) {
            fprintf(stderr, "tessera import: --mean and --std need the same number (1 to 4) of values, std > 0\n");
            ts_ctx_free(ctx);
            return EXIT_USAGE;
        }
        pp.channels = nm;
    }
    ts_model *m = NULL;
    st = ts_onnx_import(ctx, pos[0], &cfg, &m);
    if (!st && pp.channels) st = ts_model_set_preprocess(ctx, m, &pp);
    if (!st) st = ts_model_save(ctx, m, out);
    if (!st) {
        printf("imported %s: %d layers, %lld parameters, %d outputs per sample -> %s\n", pos[0],
               ts_model_layer_count(m), (long long)ts_model_param_count(m), ts_model_classes(m), out);
    }
    rc = st ? cli_fail("import", ctx, st) : EXIT_OK;
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}

int cmd_export(int argc, char **argv) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&export_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const char *out = cli_get(&export_cmd, "out");
    if (npos != 1 || !out) {
        fprintf(stderr, "tessera export: expected MODEL.tsr and --out FILE.onnx (see tessera export --help)\n");
        return EXIT_USAGE;
    }
    if ((rc = cli_refuse_same(&export_cmd, "--out", out, (const char *const *)pos, 1))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    cli_setup_files(&export_cmd, ctx);
    ts_model *m = NULL;
    ts_status st = cli_load_model(ctx, pos[0], CLI_LOAD_MODULE, &m);
    if (!st) st = ts_onnx_export(ctx, m, out);
    if (!st) printf("exported %s -> %s (ONNX opset 13)\n", pos[0], out);
    rc = st ? cli_fail("export", ctx, st) : EXIT_OK;
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}
