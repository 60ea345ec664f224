/* The model graph: layers, their kinds table, tensors, execution state. */
#ifndef TS_NN_H
#define TS_NN_H

#include "core/core.h"
#include "ops/dispatch.h"

#define LAYER_MAX_INPUTS 8
#define LAYER_NAME_MAX 64
#define TENSOR_NAME_MAX 96

typedef enum layer_kind {
    LAYER_INPUT = 0,
    LAYER_CONV2D,
    LAYER_MAXPOOL,
    LAYER_AVGPOOL,
    LAYER_GLOBALAVGPOOL,
    LAYER_BATCHNORM,
    LAYER_DENSE,
    LAYER_RELU,
    LAYER_LEAKYRELU,
    LAYER_SIGMOID,
    LAYER_TANH,
    LAYER_SOFTMAX,
    LAYER_ADD,
    LAYER_CONCAT,
    LAYER_FLATTEN,
    LAYER_DROPOUT,
    LAYER_MASK,
    /* kinds that ONNX models need (docs/onnx.md) */
    LAYER_ELU,
    LAYER_SELU,
    LAYER_HARDSIGMOID,
    LAYER_CLIP,
    LAYER_PRELU,
    LAYER_GLOBALMAXPOOL,
    LAYER_LOGSOFTMAX,
    LAYER_RESHAPE,
    LAYER_TRANSPOSE,
    LAYER_PAD,
    LAYER_BINARY,
    LAYER_MATMUL,
    LAYER_CONVTRANSPOSE,
    LAYER_CONSTANT,
    LAYER_KIND_COUNT
} layer_kind;

/* One node of the graph. Attributes not used by a kind stay zero. */
typedef struct layer {
    layer_kind kind;
    char name[LAYER_NAME_MAX];
    int line;                       /* line in the architecture text */
    int ninputs;
    int inputs[LAYER_MAX_INPUTS];   /* indices of earlier layers */
    ts_shape out;                   /* per-sample output shape */
    /* attributes */
    int features;                   /* conv2d: output channels; dense: output features */
    int kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int bias;                       /* conv2d/dense: has a bias */
    int ceil_mode, count_include_pad;
    float alpha;                    /* leakyrelu negative slope */
    float p;                        /* dropout probability */
    float eps, momentum;            /* batchnorm */
    /* tensors: indices into the model's tensor table (-1 when absent) */
    int weight, bias_t, running_mean, running_var;
    int mask;                       /* mask: its keep tensor (a buffer) */
    /* attributes of the kinds ONNX models need */
    int pbh, pbw;                   /* conv2d/pools: bottom and right padding (= ph, pw unless asymmetric) */
    int oph, opw;                   /* convtranspose: output padding (added at the bottom and right) */
    float beta, gamma;              /* hardsigmoid beta; selu gamma (alpha above is elu/selu/hardsigmoid alpha) */
    float lo, hi;                   /* clip bounds (-/+INFINITY when absent) */
    int axis;                       /* softmax, logsoftmax, concat: per-sample axis */
    int coerce;                     /* softmax, logsoftmax: over all axes from axis on (ONNX opset < 13) */
    int op;                         /* binary: binary_op */
    int const_first;                /* binary: the constant is the left operand */
    int pad_mode;                   /* pad: pad_mode */
    float value;                    /* pad: the constant fill */
    int perm[TS_MAX_DIMS];          /* transpose: output axis i is input axis perm[i] */
    int pads[2 * TS_MAX_DIMS];      /* pad: begins, then ends, per per-sample axis (negative crops) */
    ts_shape tshape;                /* reshape: target; binary: constant; prelu: slope; matmul: B */
    int konst;                      /* binary: its constant tensor (a buffer), -1 when two inputs */
} layer;

/* binary_op and pad_mode are declared with their kernels in ops/ops.h */

typedef struct tensor_entry {
    char name[TENSOR_NAME_MAX];
    ts_tensor_role role;
    ts_shape shape;
    int64_t numel;
    size_t offset;                  /* into params/grads (PARAM) or buffers (BUFFER) */
    int layer;
} tensor_entry;

/* Per-layer execution state for one batch capacity. */
typedef struct layer_state {
    float *out;        /* (N, out) */
    float *grad;       /* (N, out): d loss / d out */
    void *aux;         /* maxpool workspace, dropout mask, bn batch mean+var */
    size_t aux_bytes;
    int grad_ready;    /* grad written in this backward pass */
} layer_state;

typedef struct exec_state {
    int capacity;      /* batch size the buffers were planned for */
    int nls;           /* entries in ls */
    int has_grads;     /* gradient buffers allocated */
    int n;             /* samples in the current pass */
    int train;         /* last forward was in training mode */
    const float *input;/* caller's input for the current pass */
    layer_state *ls;   /* (nlayers) */
    void *scratch;     /* shared by all layers, max of their needs */
    size_t scratch_bytes;
    float *accum;      /* temp for gradient accumulation, max layer size */
    void *grad_arena;  /* every layer's grad lives here; buffers of layers whose
                        * gradients are never live at once share memory */
    size_t grad_arena_bytes;
    /* inference fusion: conv2d -> batchnorm [-> relu] run as one convolution with
     * the batch norm folded in; fuse_last[li] is the last fused layer of a head
     * (0 otherwise), fuse_skip[li] marks the layers it replaces */
    int *fuse_last;
    unsigned char *fuse_skip;
    float *fold;       /* folded weights and bias of the largest head */
    /* training fusion: bn_relu[li] is the ReLU that is batch norm li's only consumer
     * (0 otherwise); bn_relu_on marks the pairs fused in the last training forward
     * (1 on the batch norm, 2 on its ReLU), so the backward takes the same path */
    int *bn_relu;
    unsigned char *bn_relu_on;
    struct exec_packed *packed; /* the heads packed for oneDNN (exec.c); NULL until used */
    uint64_t dropout_seed;
} exec_state;

typedef struct meta_entry {
    char *key, *value;
} meta_entry;

struct ts_model {
    char *arch_text;
    ts_shape input;
    int classes;
    layer *layers;
    int nlayers;
    tensor_entry *tensors;
    int ntensors;
    int *order;                     /* public tensor index -> table index */
    const char *parsing;            /* source name while arch_parse runs, for messages */
    float *params, *grads;          /* one block each: all trainable tensors (grads once training) */
    size_t nparams;
    float *buffers;                 /* running statistics */
    size_t nbuffers;
    meta_entry *meta;
    int nmeta;
    exec_state exec;
};

/* Per-kind table: every layer kind has a name, shape inference (which also declares
 * the layer's tensors), forward, backward, MAC count and aux-memory need. */
typedef struct layer_ops {
    const char *name;
    /* Checks inputs, sets l->out, declares tensors via model_add_tensor. */
    ts_status (*infer)(ts_ctx *ctx, ts_model *m, layer *l, const char *source);
    ts_status (*forward)(ts_ctx *ctx, ts_model *m, int li);
    ts_status (*backward)(ts_ctx *ctx, ts_model *m, int li);
    int64_t (*macs)(const ts_model *m, const layer *l);
    /* bytes of aux memory per batch of n; and scratch shared across layers */
    size_t (*aux_bytes)(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
    size_t (*scratch_bytes)(ts_ctx *ctx, const ts_model *m, const layer *l, int n);
} layer_ops;

extern const layer_ops LAYER_OPS[LAYER_KIND_COUNT];

layer_kind layer_kind_from_name(const char *name); /* LAYER_KIND_COUNT if unknown */

/* Declares a tensor of layer li; returns its index or -1 (error on ctx). */
int model_add_tensor(ts_ctx *ctx, ts_model *m, int li, const char *suffix, ts_tensor_role role, const ts_shape *shape);

/* Parses architecture text into layers (no tensors allocated yet). */
/* input/classes, when given (ndim > 0, > 0), replace what the input line declares. */
ts_status arch_parse(ts_ctx *ctx, ts_model *m, const char *text, const char *source, const ts_shape *input,
                     int classes);

/* Writes layer l's keys (" out=8 kernel=3x3 ...", each with a leading space) as the
 * parser reads them; returns the length, as snprintf (truncated past cap). */
int arch_layer_attrs(const layer *l, char *dst, size_t cap);

/* Allocates parameter storage after parsing; and initializes it from seed. */
/* Largest model: parameters plus buffers, in float values (16 GiB). */
#define MODEL_MAX_VALUES ((uint64_t)1 << 32)

/* Parses text into a model without storage (sizes known, nothing allocated). */
ts_status model_parse(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                      ts_model **out);
ts_status model_alloc_tensors(ts_ctx *ctx, ts_model *m);
ts_status model_ensure_grads(ts_ctx *ctx, ts_model *m);
void model_init_params(ts_model *m, uint64_t seed);
ts_model *model_new_empty(void);
ts_status model_clone(ts_ctx *ctx, const ts_model *m, ts_model **out);

void exec_release(exec_state *e);
/* The model's parameters or buffers may have changed: packed inference weights are
 * rebuilt before the next inference. Safe on a const model (only the cache changes). */
void exec_weights_changed(const ts_model *m);
/* ts_model_tensor for callers that only read: leaves packed inference weights valid. */
ts_status model_tensor_peek(const ts_model *m, int index, ts_tensor_info *info);

/* Helpers for layer implementations */
static inline float *tensor_data(ts_model *m, int t) {
    TS_ASSERT(t >= 0 && t < m->ntensors);
    tensor_entry *e = &m->tensors[t];
    return (e->role == TS_TENSOR_PARAM ? m->params : m->buffers) + e->offset;
}
static inline float *tensor_grad(ts_model *m, int t) {
    TS_ASSERT(t >= 0 && t < m->ntensors);
    return m->tensors[t].role == TS_TENSOR_PARAM ? m->grads + m->tensors[t].offset : NULL;
}
/* input activation of layer li's k-th input (the model input for INPUT) */
const float *layer_input(ts_model *m, int li, int k);
/* Where layer li's backward writes d loss / d input k: the input layer's grad
 * buffer, or the shared accumulator when that buffer already holds a gradient
 * from another consumer (then layer_input_grad_commit adds it). NULL if the input
 * needs no gradient (the model input). */
float *layer_input_grad(ts_model *m, int li, int k);
void layer_input_grad_commit(ts_model *m, int li, int k, int nthreads);

static inline int64_t shape_numel(const ts_shape *s) { return ts_shape_numel(s); }
uint64_t rng_mix(uint64_t a, uint64_t b);

#endif
