/* A tiny ONNX graph built with protobuf-c, for tests that craft models: input
 * x (N,4), an initializer w (4 float values), up to four nodes, output y. */
#ifndef TS_TEST_TINY_ONNX_H
#define TS_TEST_TINY_ONNX_H

#include "onnx/onnx.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tiny {
    Onnx__ModelProto mp;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op;
    Onnx__OperatorSetIdProto *ops[1];
    Onnx__NodeProto nodes[4];
    Onnx__NodeProto *pnodes[4];
    char *nin[4][2], *nout[4][1];
    Onnx__ValueInfoProto in, out;
    Onnx__ValueInfoProto *pin[1], *pout[1];
    Onnx__TypeProto tp;
    Onnx__TypeProto__Tensor tt;
    Onnx__TensorShapeProto sp;
    Onnx__TensorShapeProto__Dimension d[2];
    Onnx__TensorShapeProto__Dimension *pd[2];
    Onnx__TensorProto init;
    Onnx__TensorProto *pinit[1];
    int64_t idims[2];
    float idata[4];
} tiny;

void tiny_init(tiny *t);
/* appends node op(a[, b]) -> out; b may be NULL */
void tiny_node(tiny *t, const char *op, const char *a, const char *b, const char *out);
/* the serialized model (malloc'ed; *len its size) */
uint8_t *tiny_pack(tiny *t, size_t *len);

#endif
