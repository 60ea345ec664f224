/* The ONNX op types tessera converts, each to its converter (onnx_ops_*.c, one file
 * per family; docs/onnx.md lists what is claimed). */
#include "onnx_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the table */

typedef struct op_entry {
    const char *name;
    convert_fn fn;
} op_entry;

static const op_entry OPS[] = {
    {"Conv", op_conv},
    {"ConvTranspose", op_convtranspose},
    {"MaxPool", op_maxpool},
    {"AveragePool", op_avgpool},
    {"GlobalAveragePool", op_globalavgpool},
    {"GlobalMaxPool", op_globalmaxpool},
    {"Resize", op_resize}, {"Upsample", op_upsample},
    {"BatchNormalization", op_batchnorm},
    {"Relu", op_relu},
    {"LeakyRelu", op_leakyrelu},
    {"PRelu", op_prelu},
    {"Elu", op_elu},
    {"Selu", op_selu},
    {"Sigmoid", op_sigmoid},
    {"HardSigmoid", op_hardsigmoid},
    {"HardSwish", op_hardswish},
    {"Sqrt", op_sqrt},
    {"Erf", op_erf},
    {"Pow", op_pow},
    {"ReduceMean", op_reducemean},
    {"LayerNormalization", op_layernorm},
    {"Tanh", op_tanh},
    {"Clip", op_clip},
    {"Gemm", op_gemm},
    {"MatMul", op_matmul},
    {"Add", op_add},
    {"Sub", op_sub},
    {"Mul", op_mul},
    {"Div", op_div},
    {"Sum", op_sum},
    {"Softmax", op_softmax},
    {"LogSoftmax", op_logsoftmax},
    {"Flatten", op_flatten},
    {"Reshape", op_reshape},
    {"Concat", op_concat},
    {"Transpose", op_transpose},
    {"Squeeze", op_squeeze},
    {"Unsqueeze", op_unsqueeze},
    {"Pad", op_pad},
    {"Identity", op_identity},
    {"Dropout", op_dropout},
    {"Constant", op_constant},
    {"Shape", op_shape},
    {"Gather", op_gather},
    {"Slice", op_slice},
    {"Split", op_split},
    {"ConstantOfShape", op_constantofshape},
    {"Range", op_range},
    {"Equal", op_equal},
    {"Where", op_where},
    {"Cast", op_cast},
    {"Expand", op_expand},
    {"RNN", op_rnn}, {"LSTM", op_lstm}, {"GRU", op_gru},
};

convert_fn onnx_converter(const char *op_type) {
    for (size_t i = 0; i < sizeof OPS / sizeof *OPS; i++)
        if (!strcmp(OPS[i].name, op_type)) return OPS[i].fn;
    return NULL;
}
