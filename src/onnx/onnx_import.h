/* The importer's state, shared by onnx_import.c (graph walk, values, emission)
 * and onnx_ops.c (one converter per ONNX op type). */
#ifndef TS_ONNX_IMPORT_H
#define TS_ONNX_IMPORT_H

#include "nn/nn.h"
#include "onnx.h"

/* Shape() of a batched value yields this for the batch axis, so that a later
 * Reshape can tell "keep the batch" from a literal size. */
#define ONNX_BATCH_DIM (-((int64_t)1 << 40))

typedef enum value_kind { VALUE_NONE = 0, VALUE_CONST, VALUE_LAYER, VALUE_POISON } value_kind;

/* An ONNX value: a constant, or the output of an emitted layer seen through a
 * logical ONNX shape (reshapes are views until an op needs the layout). */
typedef struct value {
    const char *name;  /* ONNX name (owned by the proto) */
    value_kind kind;
    ts_onnx_tensor *c; /* VALUE_CONST, owned */
    int layer;         /* VALUE_LAYER: emitted layer index */
    int rank;          /* ONNX rank, with the batch axis in batch mode */
    int64_t dims[ONNX_MAX_RANK]; /* dims[0] = -1 (any batch) in batch mode */
} value;

typedef struct emitted {
    char name[LAYER_NAME_MAX];
    ts_shape out;      /* per-sample output shape as the layer computes it */
} emitted;

typedef struct fill {
    char tensor[TENSOR_NAME_MAX];
    float *data;       /* owned */
    int64_t numel;
} fill;

typedef struct importer {
    ts_ctx *ctx;
    const char *file;  /* for messages */
    const ts_onnx_import_config *cfg;
    int off;           /* 1 in batch mode: ONNX axis k is per-sample axis k-1 */
    int64_t batch0;    /* the input's declared batch size, -1 when symbolic */
    int opset;
    int checking;      /* ts_onnx_check: note unsupported nodes and go on */
    char *report;      /* check mode: one line per unsupported node */
    size_t report_len;
    /* the node being converted, for messages */
    const Onnx__NodeProto *node;
    /* values by name */
    value **values;    /* each allocated on its own: converters hold pointers across new values */
    int nvalues, capvalues;
    /* the architecture being written */
    char *text;
    size_t text_len, text_cap;
    emitted **layers;  /* each allocated on its own: names stay put while layers are added */
    int nlayers, caplayers;
    fill *fills;
    int nfills, capfills;
} importer;

/* converters: ONNX op type -> layers; return TS_EUNSUPPORTED via unsupported() */
typedef ts_status (*convert_fn)(importer *im, const Onnx__NodeProto *n);
convert_fn onnx_converter(const char *op_type);

/* ---- helpers for converters (onnx_import.c) */
ts_status unsupported(importer *im, const char *fmt, ...) TS_PRINTF(2, 3);
ts_status bad_node(importer *im, const char *fmt, ...) TS_PRINTF(2, 3);
/* input k of the node: NULL when absent or the empty name */
value *node_input(importer *im, const Onnx__NodeProto *n, int k);
/* required input k: unsupported()/bad_node() when absent */
ts_status require_input(importer *im, const Onnx__NodeProto *n, int k, value **v);
ts_status require_const(importer *im, const Onnx__NodeProto *n, int k, const char *what, value **v);
/* defines output k as a constant (takes t) or as a view of a layer */
ts_status define_const(importer *im, const Onnx__NodeProto *n, int k, ts_onnx_tensor *t);
ts_status define_layer(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims);
ts_status define_alias(importer *im, const Onnx__NodeProto *n, int k, const value *v);
/* output k is named (optional outputs have an empty name) */
int output_used(importer *im, const Onnx__NodeProto *n, int k);
/* output k exists but tessera does not compute it (Dropout's mask, batch norm's
 * training outputs): a node that reads it is refused */
ts_status define_uncomputed(importer *im, const Onnx__NodeProto *n, int k);

const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name);
int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t def);
float attr_float(const Onnx__NodeProto *n, const char *name, float def);
/* ints attribute: count (0 when absent) and values */
int attr_ints(const Onnx__NodeProto *n, const char *name, const int64_t **vals);
const char *attr_string(const Onnx__NodeProto *n, const char *name, const char *def, char *buf, size_t cap);

/* per-sample shape of a layer value (rank-0 becomes (1)); fails when the value
 * does not fit tessera's limits */
ts_status value_sample_shape(importer *im, const value *v, ts_shape *s);
/* The name of a layer holding v in exactly its logical per-sample shape,
 * emitting a reshape when the layout differs. */
ts_status materialize(importer *im, const value *v, const char **layer_name);
/* the same in a given per-sample shape of the same element count */
ts_status materialize_as(importer *im, const value *v, const ts_shape *want, const char **layer_name);
/* "3x32x32" */
void onnx_shape_text(const ts_shape *s, char *buf, size_t cap);
/* Appends a layer line "kind name=<base> in=<ins> <attrs>" with output shape
 * out; returns its index in *li. base is made unique and valid. */
ts_status emit_layer(importer *im, const char *kind, const char *base, const char *const *ins, int nins,
                     const char *attrs, const ts_shape *out, int *li);
/* Queues data for tensor "<layer>.<suffix>" (copied). */
ts_status add_fill(importer *im, int li, const char *suffix, const float *data, int64_t numel);
/* the node's name for layers: its name, else its first output */
const char *node_base(const Onnx__NodeProto *n);
int64_t shape_numel_dims(int rank, const int64_t *dims);
/* ONNX axis -> per-sample axis; unsupported() for the batch axis */
ts_status sample_axis(importer *im, int64_t axis, int rank, const char *what, int *out);
/* float data of a constant as an owned copy converted from ints if needed */
float *const_floats(importer *im, const value *v);

#endif
