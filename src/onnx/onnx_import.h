/* The importer's state, shared by onnx_import.c (graph walk, values, emission)
 * and onnx_ops.c (one converter per ONNX op type). */
#ifndef TS_ONNX_IMPORT_H
#define TS_ONNX_IMPORT_H

#include "nn/nn.h"
#include "onnx.h"

/* Shape() of a batched value yields this for the batch axis, so that a later
 * Reshape can tell "keep the batch" from a literal size. */
#define ONNX_BATCH_DIM (-((int64_t)1 << 40))
/* Shape arithmetic multiplies it (PyTorch's bsz * num_heads): k * ONNX_BATCH_DIM is
 * the batch times k. *k = the factor when d is such a marker. */
int onnx_batch_marker(int64_t d, int64_t *k);

/* How the batch sits in a value's batch axis (value.fold): alone, or folded with a
 * per-sample factor of size value.bsub into one ONNX axis, the batch as its outer
 * factor (index n * bsub + j: MultiheadAttention's (L, N * heads, hd)) or its inner
 * one (j * N + n: its (L * N, E)). Either way each sample holds that axis as an axis
 * of size bsub, in place. */
enum { FOLD_NONE = 0, FOLD_OUTER, FOLD_INNER };

/* VALUE_POISON: an output tessera does not compute (a node reading it is refused).
 * In check mode, downstream of a refused node or graph input: VALUE_FAILED, data
 * of unknown shape (the nodes reading it get only the shape-free checks of
 * onnx_rules.c), and VALUE_UNKNOWN, a constant of unknown value (Shape of such
 * data, and the shape arithmetic on it). */
/* VALUE_ZEROS: zeros as large as the batch (ConstantOfShape of a shape holding
 * Shape's batch marker: PyTorch's initial state of an RNN/LSTM/GRU); only a Slice or
 * a recurrent node may read it. VALUE_LENGTHS: a stage of the sequence lengths
 * computed from the token ids in `layer` (tessera's export, onnx_ops_recurrent.c);
 * only the next op of that computation or a recurrent node may read it. */
typedef enum value_kind {
    VALUE_NONE = 0, VALUE_CONST, VALUE_LAYER, VALUE_POISON, VALUE_FAILED, VALUE_UNKNOWN, VALUE_ZEROS, VALUE_LENGTHS
} value_kind;

/* An ONNX value: a constant, or the output of an emitted layer seen through a
 * logical ONNX shape (reshapes are views until an op needs the layout). */
typedef struct value {
    const char *name;  /* ONNX name (owned by the proto) */
    value_kind kind;
    ts_onnx_tensor *c; /* VALUE_CONST, owned */
    int layer;         /* VALUE_LAYER: emitted layer index */
    int rank;          /* ONNX rank, with the batch axis in batch mode */
    int64_t dims[ONNX_MAX_RANK]; /* dims[bax] = -1 (any batch) in batch mode */
    /* Batch mode: the ONNX axis that is the batch. The layer holds each sample's
     * values in the order of the other axes, so a Transpose that only moves the
     * batch axis (to time-major and back, around ONNX's recurrent ops) is a view. */
    int bax;
    int fold;          /* FOLD_*: the batch folded with another axis at bax */
    int64_t bsub;      /* folded: the per-sample size of axis bax */
    int ints;          /* VALUE_LAYER: cast to an integer type (token ids for a Gather) */
    int stage;         /* VALUE_LENGTHS: how far the computation has come */
} value;

typedef struct emitted {
    char name[LAYER_NAME_MAX];
    ts_shape out;      /* per-sample output shape as the layer computes it */
    nn_added t;        /* what the builder made: its index, shape and tensors */
} emitted;

typedef struct fill {
    int tensor;        /* index in the model's tensor table (nn_added) */
    float *data;       /* owned */
    int64_t numel;
} fill;

typedef struct importer {
    ts_ctx *ctx;
    const char *file;  /* for messages */
    const ts_onnx_import_config *cfg;
    int off;           /* 1 in batch mode: ONNX axis k is per-sample axis k-1 */
    int64_t batch0;    /* the input's declared batch size, -1 when symbolic */
    int64_t free_hw[2];/* the size a symbolic height and width import at (onnx_free_hw.c) */
    int any_size;      /* the input's height and width were symbolic: the model takes any size */
    int out_bax;       /* the graph output's batch axis (batch_axis > 1 only) */
    int opset;
    int checking;      /* ts_onnx_check: note unsupported nodes and go on */
    const Onnx__GraphProto *graph;
    ts_strbuf report;  /* check mode: one line per unsupported node */
    /* the node being converted, for messages */
    const Onnx__NodeProto *node;
    /* values by name */
    value **values;    /* each allocated on its own: converters hold pointers across new values */
    int nvalues, capvalues;
    /* the graph being built */
    nn_builder *b;
    emitted **layers;  /* each allocated on its own: names stay put while layers are added */
    int nlayers, caplayers;
    fill *fills;
    int nfills, capfills;
} importer;

/* One import of the model's bytes (onnx_import.c): a symbolic height and width become
 * free_hw; *any_size (may be NULL) says whether they were. */
ts_status onnx_import_at(ts_ctx *ctx, const void *data, size_t size, const char *name,
                         const ts_onnx_import_config *cfg, int checking, const int64_t free_hw[2], int *any_size,
                         ts_model **out, char **report);
/* The import (onnx_free_hw.c): a graph whose input has a symbolic height and width is
 * imported at two sizes, and becomes a free-size model when both give the same layers
 * and tensors; else it is refused, naming the first layer that depends on the size. */
ts_status onnx_import_bytes(ts_ctx *ctx, const void *data, size_t size, const char *name,
                            const ts_onnx_import_config *cfg, int checking, ts_model **out, char **report);

/* converters: ONNX op type -> layers; return TS_EUNSUPPORTED via unsupported() */
typedef ts_status (*convert_fn)(importer *im, const Onnx__NodeProto *n);
convert_fn onnx_converter(const char *op_type);

/* ---- shared by the converters (onnx_ops_activation.c, onnx_ops_algebra.c) */
ts_status oom(importer *im);
/* unsupported() unless v is computed from the model input */
ts_status need_layer_value(importer *im, const value *v);
/* a one-input layer reading `in` with out shape `out`; defines output 0 with logical dims */
ts_status emit_unary(importer *im, const Onnx__NodeProto *n, layer_kind kind, const char *in,
                     const layer_attrs *attrs, const ts_shape *out, int rank, const int64_t *dims, int *li);
/* an elementwise layer over input 0 as laid out */
ts_status elementwise(importer *im, const Onnx__NodeProto *n, layer_kind kind, const layer_attrs *attrs);
/* kind (hardswish, sqrt, erf, pow) over x as a new value: a layer, or a folded
 * constant that *res owns when x is a constant */
ts_status unary_value(importer *im, const Onnx__NodeProto *n, layer_kind kind, const layer_attrs *attrs,
                      const value *x, value *res);
/* a op b (binary_op) with numpy broadcasting as a new value: a layer, or a folded
 * constant that *res owns */
ts_status binary_value(importer *im, const Onnx__NodeProto *n, int op, const value *a, const value *b, value *res);
/* a scalar constant input k (Clip's min/max, Dropout's ratio); *present 0 when absent */
ts_status scalar_input(importer *im, const Onnx__NodeProto *n, int k, const char *what, int *present, double *val);
/* constant c as a `constant` layer repeated for every sample, aligned with `like` */
ts_status lift_const(importer *im, const Onnx__NodeProto *n, const value *c, const value *like, value *out);
/* a constant's per-sample shape for a layer of rank layer_rank (leading batch axes removed) */
ts_status strip_batch_axes(importer *im, const value *c, int layer_rank, ts_shape *s);
/* index into x (rank rx, xdims) of element i of its numpy broadcast to (rr, dims) */
int64_t broadcast_source(int rr, const int64_t *dims, int64_t i, int rx, const int64_t *xdims);
/* Gather of one constant index along ONNX axis `axis` of computed x (onnx_ops_slice.c) */
ts_status gather_computed(importer *im, const Onnx__NodeProto *n, const value *x, const value *idx, int axis);
/* numpy broadcast of two dims lists; 0 when incompatible */
int broadcast(int ra, const int64_t *a, int rb, const int64_t *b, int *rr, int64_t *r);

/* the converters, one per ONNX op type (the table in onnx_ops.c) */
ts_status op_conv(importer *im, const Onnx__NodeProto *n);
ts_status op_convtranspose(importer *im, const Onnx__NodeProto *n);
ts_status op_maxpool(importer *im, const Onnx__NodeProto *n);
ts_status op_avgpool(importer *im, const Onnx__NodeProto *n);
ts_status op_globalavgpool(importer *im, const Onnx__NodeProto *n);
ts_status op_globalmaxpool(importer *im, const Onnx__NodeProto *n);
ts_status op_batchnorm(importer *im, const Onnx__NodeProto *n);
ts_status op_relu(importer *im, const Onnx__NodeProto *n);
ts_status op_leakyrelu(importer *im, const Onnx__NodeProto *n);
ts_status op_prelu(importer *im, const Onnx__NodeProto *n);
ts_status op_elu(importer *im, const Onnx__NodeProto *n);
ts_status op_selu(importer *im, const Onnx__NodeProto *n);
ts_status op_sigmoid(importer *im, const Onnx__NodeProto *n);
ts_status op_hardsigmoid(importer *im, const Onnx__NodeProto *n);
ts_status op_hardswish(importer *im, const Onnx__NodeProto *n);
ts_status op_sqrt(importer *im, const Onnx__NodeProto *n);
ts_status op_erf(importer *im, const Onnx__NodeProto *n);
ts_status op_pow(importer *im, const Onnx__NodeProto *n);
ts_status op_reducemean(importer *im, const Onnx__NodeProto *n);
ts_status op_layernorm(importer *im, const Onnx__NodeProto *n);
ts_status op_tanh(importer *im, const Onnx__NodeProto *n);
ts_status op_clip(importer *im, const Onnx__NodeProto *n);
ts_status op_gemm(importer *im, const Onnx__NodeProto *n);
ts_status op_matmul(importer *im, const Onnx__NodeProto *n);
ts_status op_add(importer *im, const Onnx__NodeProto *n);
ts_status op_sub(importer *im, const Onnx__NodeProto *n);
ts_status op_mul(importer *im, const Onnx__NodeProto *n);
ts_status op_div(importer *im, const Onnx__NodeProto *n);
ts_status op_sum(importer *im, const Onnx__NodeProto *n);
ts_status op_softmax(importer *im, const Onnx__NodeProto *n);
ts_status op_logsoftmax(importer *im, const Onnx__NodeProto *n);
ts_status op_flatten(importer *im, const Onnx__NodeProto *n);
ts_status op_reshape(importer *im, const Onnx__NodeProto *n);
ts_status op_concat(importer *im, const Onnx__NodeProto *n);
ts_status op_transpose(importer *im, const Onnx__NodeProto *n);
ts_status op_squeeze(importer *im, const Onnx__NodeProto *n);
ts_status op_unsqueeze(importer *im, const Onnx__NodeProto *n);
ts_status op_pad(importer *im, const Onnx__NodeProto *n);
ts_status op_identity(importer *im, const Onnx__NodeProto *n);
ts_status op_dropout(importer *im, const Onnx__NodeProto *n);
ts_status op_constant(importer *im, const Onnx__NodeProto *n);
ts_status op_shape(importer *im, const Onnx__NodeProto *n);
ts_status op_gather(importer *im, const Onnx__NodeProto *n);
ts_status op_cast(importer *im, const Onnx__NodeProto *n);
ts_status op_slice(importer *im, const Onnx__NodeProto *n);
ts_status op_split(importer *im, const Onnx__NodeProto *n);
ts_status op_constantofshape(importer *im, const Onnx__NodeProto *n);
ts_status op_range(importer *im, const Onnx__NodeProto *n);
ts_status op_equal(importer *im, const Onnx__NodeProto *n);
ts_status op_where(importer *im, const Onnx__NodeProto *n);
ts_status op_expand(importer *im, const Onnx__NodeProto *n);
ts_status op_resize(importer *im, const Onnx__NodeProto *n);
ts_status op_upsample(importer *im, const Onnx__NodeProto *n);
ts_status op_rnn(importer *im, const Onnx__NodeProto *n);
ts_status op_lstm(importer *im, const Onnx__NodeProto *n);
ts_status op_gru(importer *im, const Onnx__NodeProto *n);
/* the steps of the lengths computation that ride on other ops (onnx_ops_recurrent.c):
 * *handled 0 when the node is not one of them */
ts_status lengths_step(importer *im, const Onnx__NodeProto *n, int *handled);
/* Gather of token ids cast to integers from a constant table: an `embedding` layer */
ts_status embedding_gather(importer *im, const Onnx__NodeProto *n, const value *table, const value *ids);

/* check mode: the problems a node would have whatever its inputs' shapes
 * (onnx_rules.c); TS_OK when none is known */
ts_status onnx_check_rules(importer *im, const Onnx__NodeProto *n);
/* the refusals of an RNN/LSTM/GRU node's attributes (onnx_ops_recurrent.c) */
ts_status recurrent_rules(importer *im, const Onnx__NodeProto *n);

/* ---- helpers for converters (onnx_import.c) */
ts_status unsupported(importer *im, const char *fmt, ...) TS_PRINTF(2, 3);
ts_status bad_node(importer *im, const char *fmt, ...) TS_PRINTF(2, 3);
/* output k of the node once defined: NULL when absent, unnamed or not yet defined */
value *node_output(importer *im, const Onnx__NodeProto *n, int k);
/* input k of the node: NULL when absent or the empty name */
value *node_input(importer *im, const Onnx__NodeProto *n, int k);
/* required input k: unsupported()/bad_node() when absent */
ts_status require_input(importer *im, const Onnx__NodeProto *n, int k, value **v);
ts_status require_const(importer *im, const Onnx__NodeProto *n, int k, const char *what, value **v);
/* defines output k as a constant (takes t) or as a view of a layer */
ts_status define_const(importer *im, const Onnx__NodeProto *n, int k, ts_onnx_tensor *t);
ts_status define_layer(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims);
/* the same with the batch at ONNX axis bax */
ts_status define_layer_bax(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims,
                           int bax);
/* the same with the batch laid out as in `like` (its bax, fold and bsub) */
ts_status define_layer_as(importer *im, const Onnx__NodeProto *n, int k, int layer, int rank, const int64_t *dims,
                          const value *like);
/* ONNX axis a (0 <= a < rank) of layer value v as an axis of its per-sample shape;
 * -1 when it holds the batch (the batch axis, folded or not) */
int sample_axis_of(const importer *im, const value *v, int a);
/* constant c combined with layer value x (right-aligned broadcasting): its shape per
 * sample of x, the axis on x's batch axis dropped (kept, 1, when folded) */
ts_status const_sample_shape(importer *im, const value *c, const value *x, ts_shape *s);
/* output k as a copy of v's description (its kind, layer, dims, batch axis) with new dims */
ts_status define_like(importer *im, const Onnx__NodeProto *n, int k, const value *v, int rank, const int64_t *dims,
                      int bax);
/* v seen with its batch axis first: the order its layer holds (v itself when it is) */
value batch_first_view(const value *v);
/* ONNX axis a of v (0 <= a < rank) as an axis of batch_first_view(v) */
int batch_first_axis(const value *v, int a);
/* the value named name is read by some node or is a graph output */
int value_read(importer *im, const char *name);
/* Folded constants stay small: a hostile shape must not allocate gigabytes
 * (ConstantOfShape, Range, Expand of a constant, ...). */
#define FOLD_MAX_ELEMENTS ((int64_t)1 << 22)
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
/* Adds a layer through the graph builder: kind reading the emitted layers named
 * ins, with attrs (NULL: the kind's defaults); out, when given, is the shape the
 * converter expects (checked against the builder's). Returns its index in *li;
 * im->layers[*li]->t holds its tensors. base is made unique and valid. LAYER_INPUT
 * starts the builder. */
ts_status emit_layer(importer *im, layer_kind kind, const char *base, const char *const *ins, int nins,
                     const layer_attrs *attrs, const ts_shape *out, int *li);
/* Queues data for tensor index `tensor` of the model (copied), set once it is built. */
ts_status add_fill(importer *im, int tensor, const float *data, int64_t numel);
/* the node's name for layers: its name, else its first output */
const char *node_base(const Onnx__NodeProto *n);
int64_t shape_numel_dims(int rank, const int64_t *dims);
/* ONNX axis -> per-sample axis; unsupported() for the batch axis */
ts_status sample_axis(importer *im, int64_t axis, int rank, const char *what, int *out);
/* float data of a constant as an owned copy converted from ints if needed */
float *const_floats(importer *im, const value *v);

#endif
