/* The tiny ONNX graph of tiny_onnx.h. */
#include "common/tiny_onnx.h"

#include <stdlib.h>
#include <string.h>


void tiny_init(tiny *t) {
    memset(t, 0, sizeof *t);
    onnx__model_proto__init(&t->mp);
    onnx__graph_proto__init(&t->g);
    onnx__operator_set_id_proto__init(&t->op);
    t->op.has_version = 1;
    t->op.version = 13;
    t->op.domain = (char *)"";
    t->ops[0] = &t->op;
    t->mp.n_opset_import = 1;
    t->mp.opset_import = t->ops;
    t->mp.graph = &t->g;
    onnx__value_info_proto__init(&t->in);
    onnx__value_info_proto__init(&t->out);
    onnx__type_proto__init(&t->tp);
    onnx__type_proto__tensor__init(&t->tt);
    onnx__tensor_shape_proto__init(&t->sp);
    for (int k = 0; k < 2; k++) {
        onnx__tensor_shape_proto__dimension__init(&t->d[k]);
        t->d[k].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        t->d[k].dim_value = k ? 4 : 1;
        t->pd[k] = &t->d[k];
    }
    t->sp.n_dim = 2;
    t->sp.dim = t->pd;
    t->tt.has_elem_type = 1;
    t->tt.elem_type = 1;
    t->tt.shape = &t->sp;
    t->tp.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tp.tensor_type = &t->tt;
    t->in.name = (char *)"x";
    t->in.type = &t->tp;
    t->out.name = (char *)"y";
    t->pin[0] = &t->in;
    t->pout[0] = &t->out;
    t->g.n_input = 1;
    t->g.input = t->pin;
    t->g.n_output = 1;
    t->g.output = t->pout;
    t->g.node = t->pnodes;
    onnx__tensor_proto__init(&t->init);
    t->init.name = (char *)"w";
    t->idims[0] = 4;
    t->init.n_dims = 1;
    t->init.dims = t->idims;
    t->init.has_data_type = 1;
    t->init.data_type = 1;
    t->init.n_float_data = 4;
    t->init.float_data = t->idata;
    t->pinit[0] = &t->init;
    t->g.n_initializer = 1;
    t->g.initializer = t->pinit;
}

void tiny_node(tiny *t, const char *op, const char *a, const char *b, const char *out) {
    int k = (int)t->g.n_node++;
    Onnx__NodeProto *n = &t->nodes[k];
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)op;
    t->nin[k][0] = (char *)a;
    t->nin[k][1] = (char *)b;
    n->n_input = b ? 2 : 1;
    n->input = t->nin[k];
    t->nout[k][0] = (char *)out;
    n->n_output = 1;
    n->output = t->nout[k];
    t->pnodes[k] = n;
}

uint8_t *tiny_pack(tiny *t, size_t *len) {
    *len = onnx__model_proto__get_packed_size(&t->mp);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b) onnx__model_proto__pack(&t->mp, b);
    return b;
}

