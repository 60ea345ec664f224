/* Check mode (ts_onnx_check): the problems a node has whatever the shapes of its
 * inputs. Downstream of a refused node or graph input the importer knows no
 * shapes, so it cannot run the converter; these rules still find what the
 * converter would refuse on attributes, arity and constness alone, so that
 * --check lists every problem at once. They repeat a subset of the converters'
 * refusals, with the same wording. */
#include "onnx_import.h"

#include <string.h>

/* inputs that the converters need as constants: (op, input index, what) */
typedef struct const_input {
    const char *op;
    int input;
    int from_opset; /* the input exists from this opset (earlier: an attribute) */
    const char *what;
} const_input;

static const const_input CONST_INPUTS[] = {
    {"Conv", 1, 1, "weight"},       {"ConvTranspose", 1, 1, "weight"}, {"BatchNormalization", 1, 1, "scale"},
    {"BatchNormalization", 2, 1, "bias"}, {"BatchNormalization", 3, 1, "mean"}, {"BatchNormalization", 4, 1, "var"},
    {"Reshape", 1, 5, "shape"},     {"Expand", 1, 1, "shape"},         {"Pad", 1, 11, "pads"},
    {"Clip", 1, 11, "min"},         {"Clip", 2, 11, "max"},            {"Gather", 1, 1, "indices"},
    {"Slice", 1, 10, "starts"},     {"Slice", 2, 10, "ends"},          {"Slice", 3, 10, "axes"},
    {"Slice", 4, 10, "steps"},      {"Pow", 1, 1, "exponent"},         {"LayerNormalization", 1, 1, "scale"},
    {"LayerNormalization", 2, 1, "bias"}, {"Gemm", 2, 1, "C"},         {"Squeeze", 1, 13, "axes"},
    {"Unsqueeze", 1, 13, "axes"},   {"Split", 1, 13, "split"},         {"RNN", 1, 1, "W"},
    {"RNN", 2, 1, "R"},             {"RNN", 3, 1, "B"},                {"LSTM", 1, 1, "W"},
    {"LSTM", 2, 1, "R"},            {"LSTM", 3, 1, "B"},               {"GRU", 1, 1, "W"},
    {"GRU", 2, 1, "R"},             {"GRU", 3, 1, "B"},
};

/* an attribute that names the batch axis (0) in batch mode; negative axes need
 * the rank, which is not known here */
static ts_status batch_axis_attr(importer *im, const Onnx__NodeProto *n, const char *name, int64_t def,
                                 const char *what) {
    if (im->off && attr_int(n, name, def) == 0) return unsupported(im, "%s 0 is the batch axis", what);
    return TS_OK;
}

static ts_status rule_kernel(importer *im, const Onnx__NodeProto *n) {
    const int64_t *ks;
    if (attr_ints(n, "kernel_shape", &ks) > 2) return unsupported(im, "3-D kernels are not supported");
    return TS_OK;
}

static ts_status rule_maxpool(importer *im, const Onnx__NodeProto *n) {
    if (attr_int(n, "storage_order", 0) != 0) return unsupported(im, "storage_order=1 is not supported");
    if (n->n_output > 1 && output_used(im, n, 1)) return unsupported(im, "the Indices output is not supported");
    return rule_kernel(im, n);
}

static ts_status rule_avgpool(importer *im, const Onnx__NodeProto *n) {
    const int64_t *d;
    int nd = attr_ints(n, "dilations", &d);
    for (int k = 0; k < nd; k++)
        if (d[k] != 1) return unsupported(im, "dilations are not supported for AveragePool");
    return rule_kernel(im, n);
}

static ts_status rule_concat(importer *im, const Onnx__NodeProto *n) {
    if (n->n_input > LAYER_MAX_INPUTS) return unsupported(im, "more than %d inputs", LAYER_MAX_INPUTS);
    return batch_axis_attr(im, n, "axis", im->opset < 4 ? 1 : 0, "axis");
}

static ts_status rule_softmax(importer *im, const Onnx__NodeProto *n) {
    return batch_axis_attr(im, n, "axis", im->opset < 13 ? 1 : -1, "axis");
}

static ts_status rule_flatten(importer *im, const Onnx__NodeProto *n) {
    if (im->off && attr_int(n, "axis", 1) == 0) return unsupported(im, "axis=0 flattens the batch axis into the sample");
    return TS_OK;
}

/* Gather, Split: axis defaults to 0 */
static ts_status rule_axis(importer *im, const Onnx__NodeProto *n) {
    return batch_axis_attr(im, n, "axis", 0, "axis");
}

static ts_status rule_axes(importer *im, const Onnx__NodeProto *n) {
    const int64_t *a;
    int na = attr_ints(n, "axes", &a);
    for (int k = 0; k < na && im->off; k++)
        if (a[k] == 0) return unsupported(im, "axis 0 is the batch axis");
    return TS_OK;
}

static ts_status rule_reducemean(importer *im, const Onnx__NodeProto *n) {
    if (n->n_input > 1 && n->input[1] && *n->input[1]) return unsupported(im, "axes as an input (opset 18)");
    const int64_t *a;
    if (im->off && attr_ints(n, "axes", &a) == 0) return unsupported(im, "no axes: the mean over every axis includes the batch");
    return rule_axes(im, n);
}

static ts_status rule_pad(importer *im, const Onnx__NodeProto *n) {
    char buf[32];
    const char *mode = attr_string(n, "mode", "constant", buf, sizeof buf);
    if (strcmp(mode, "constant") && strcmp(mode, "reflect") && strcmp(mode, "edge"))
        return unsupported(im, "mode '%s' (constant, reflect and edge are supported)", mode);
    if (im->opset >= 11 && n->n_input > 3 && n->input[3] && *n->input[3]) return unsupported(im, "the axes input (opset 18)");
    return TS_OK;
}

static ts_status rule_gemm(importer *im, const Onnx__NodeProto *n) {
    if (im->off && attr_int(n, "transA", 0)) return unsupported(im, "transA=1 would mix the batch axis into the product");
    return TS_OK;
}

typedef struct rule {
    const char *op;
    ts_status (*fn)(importer *im, const Onnx__NodeProto *n);
} rule;

static const rule RULES[] = {
    {"Conv", rule_kernel},       {"ConvTranspose", rule_kernel}, {"MaxPool", rule_maxpool},
    {"AveragePool", rule_avgpool}, {"Concat", rule_concat},      {"Softmax", rule_softmax},
    {"LogSoftmax", rule_softmax}, {"Flatten", rule_flatten},     {"Gather", rule_axis},
    {"Squeeze", rule_axes},      {"RNN", recurrent_rules},       {"LSTM", recurrent_rules},
    {"GRU", recurrent_rules},
    {"ReduceMean", rule_reducemean}, {"Pad", rule_pad},           {"Gemm", rule_gemm},
    {"Split", rule_axis},
};

ts_status onnx_check_rules(importer *im, const Onnx__NodeProto *n) {
    for (size_t i = 0; i < sizeof CONST_INPUTS / sizeof *CONST_INPUTS; i++) {
        const const_input *c = &CONST_INPUTS[i];
        if (strcmp(c->op, n->op_type) || im->opset < c->from_opset) continue;
        value *table = node_input(im, n, 0);
        if (!strcmp(c->op, "Gather") && table && table->kind == VALUE_CONST) continue; /* an embedding's ids */
        value *v = node_input(im, n, c->input);
        if (v && (v->kind == VALUE_LAYER || v->kind == VALUE_FAILED))
            return unsupported(im, "its %s ('%s') must be a constant (an initializer or a Constant node)", c->what,
                               v->name);
    }
    for (size_t i = 0; i < sizeof RULES / sizeof *RULES; i++)
        if (!strcmp(RULES[i].op, n->op_type)) return RULES[i].fn(im, n);
    return TS_OK;
}
