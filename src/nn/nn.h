/* The model graph: layers, their kinds table, tensors, execution state. */
#ifndef TS_NN_H
#define TS_NN_H

#include "core/core.h"
#include "ops/dispatch.h"

#define LAYER_MAX_INPUTS 64 /* densenet121 concatenates up to 32 */
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
    LAYER_HARDSWISH,
    LAYER_SQRT,
    LAYER_ERF,
    LAYER_POW,
    LAYER_REDUCEMEAN,
    LAYER_RESIZE,
    /* sequences (docs/sequences.md) */
    LAYER_EMBEDDING,
    LAYER_RNN,
    LAYER_LSTM,
    LAYER_GRU,
    LAYER_KIND_COUNT
} layer_kind;

/* A layer's attributes: what the architecture text's keys set, what a builder
 * caller fills (nn_attrs_default gives a kind's defaults), what the schema in
 * LAYER_OPS describes (attrs.c). Attributes a kind does not use stay at their
 * defaults. One macro, so layer can hold the same fields by name (below). */
#define LAYER_ATTR_FIELDS                                                                     \
    int features;                   /* conv2d: output channels; dense: output features */    \
    int kh, kw, sh, sw, ph, pw, dh, dw, groups;                                               \
    int bias;                       /* conv2d/dense: has a bias */                           \
    int ceil_mode, count_include_pad;                                                         \
    float alpha;                    /* leakyrelu slope; elu/selu/hardsigmoid alpha */         \
    float p;                        /* dropout probability */                                 \
    float eps, momentum;            /* batchnorm */                                           \
    int pbh, pbw;                   /* conv2d/pools: bottom and right padding */              \
    int oph, opw;                   /* convtranspose: output padding (bottom and right) */    \
    float beta, gamma;              /* hardsigmoid beta; selu gamma */                        \
    float lo, hi;                   /* clip bounds (-/+INFINITY when absent) */               \
    int axis;                       /* softmax, logsoftmax, concat: per-sample axis */        \
    int coerce;                     /* softmax, logsoftmax: over all axes from axis on */     \
    int op;                         /* binary: binary_op */                                   \
    int const_first;                /* binary: the constant is the left operand */            \
    int pad_mode;                   /* pad: pad_mode */                                       \
    float value;                    /* pad: the constant fill */                              \
    int nperm;                      /* transpose: entries in perm (0: reverse the axes) */    \
    int perm[TS_MAX_DIMS];          /* transpose: output axis i is input axis perm[i] */      \
    int npads;                      /* pad: entries in pads (2 per per-sample axis) */        \
    int pads[2 * TS_MAX_DIMS];      /* pad: begins, then ends, per axis (negative crops) */   \
    int naxes;                      /* reducemean: entries in axes */                         \
    int axes[TS_MAX_DIMS];          /* reducemean: the per-sample axes averaged over */       \
    float exponent;                 /* pow: x^exponent */                                     \
    int size_h, size_w;             /* resize: output H and W (0: from the scale) */          \
    float scale_h, scale_w;         /* resize: factors (0: from the size) */                  \
    int resize_mode, coord_mode, nearest_mode; /* resize: ops.h's resize_* enums */            \
    int vocab, padding_idx;         /* embedding: rows; the row kept at zero (-1: none) */          \
    int target_vocab;               /* input: a translation model's target vocabulary size */        \
    int free_hw;                    /* input: H and W free, shape= the default size (free_hw.c) */   \
    int bidirectional, sequence;    /* rnn/lstm/gru: two directions; output every step (1), the final states (0), with lstm cells (2) */ \
    int initial;                    /* rnn/lstm/gru: the last input is the initial state */            \
    int step_mask;                  /* rnn/lstm/gru: a per-step unit mask (buffer step_keep, T x D x H) */ \
    int cell_act, lbr;              /* rnn: 0 tanh, 1 relu; gru: linear_before_reset */              \
    int exit_out;                   /* dense: an early exit's logits, an auxiliary output (early_exit.c) */ \
    int early_view;                 /* conv2d: an early-view depthwise conv, trained with the exit's weights */ \
    ts_shape tshape;                /* reshape/constant: target; binary: constant; prelu: slope; matmul: B */

typedef struct layer_attrs {
    LAYER_ATTR_FIELDS
} layer_attrs;

/* One node of the graph. */
typedef struct layer {
    layer_kind kind;
    char name[LAYER_NAME_MAX];
    int line;                       /* line in the architecture text (0 when built in code) */
    int ninputs;
    int inputs[LAYER_MAX_INPUTS];   /* indices of earlier layers */
    ts_shape out;                   /* per-sample output shape */
    /* the attributes, by name (l->kh) or as one value (l->attrs): the two members
     * of the union share their layout (C11 6.5.2.3, common initial sequence) */
    union {
        layer_attrs attrs;
        struct {
            LAYER_ATTR_FIELDS
        };
    };
    /* tensors: indices into the model's tensor table (-1 when absent) */
    int weight, bias_t, running_mean, running_var;
    int mask;                       /* mask: its keep tensor (a buffer); rnn/lstm/gru: step_keep (-1: none) */
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
    int alias;         /* out is its input's buffer (a reshape: the same values), not its own */
    int in_arena;      /* out lies in an arena: compressed training's (act_compress.c) or inference's (exec.c) */
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
    void *infer_arena;      /* a ts_model_predict plan's outputs, those live apart sharing memory (exec.c) */
    size_t infer_arena_bytes;
    /* inference fusion: conv2d -> batchnorm [-> relu] run as one convolution with
     * the batch norm folded in; fuse_last[li] is the last fused layer of a head
     * (0 otherwise), fuse_skip[li] marks the layers it replaces */
    int *fuse_last;
    unsigned char *fuse_skip;
    int *fuse_bn;           /* fuse_bn[li]: head li's batch norm (0: none) */
    conv_act *fuse_act;     /* fuse_act[li]: head li's activation, as a post-op */
    int *fuse_res;          /* fuse_res[li]: the layer head li adds before its activation (fuse_act[li].residual) */
    /* cl[l]: fused inference keeps layer l's output channels-last, (N,H,W,C) (exec.c,
     * plan_channels_last); cl_now is cl during a pass that does so, else NULL */
    char *cl;
    const char *cl_now;
    /* blk[l]: a training pass keeps layer l's output and its gradient in nChw16c
     * (exec_blocked.c); blk_now is blk during such a pass, else NULL */
    char *blk;
    const char *blk_now;
    char *blk_may; /* blk_may[l]: a training pass may block l (the graph's rules, before the fixed point) */
    ts_backend train_backend; /* the kernels of the last training forward: its backward's (exec.c) */
    const unsigned char *skip_now; /* the layers the running pass leaves out (a two-part pass), else NULL */
    int *chain_last;        /* chain_last[l]: an element-wise chain (GELU) from l runs as one kernel to this layer */
    unsigned char *chain_skip; /* the layers such a chain replaces after its first */
    int *fuse_head;         /* fuse_head[l]: the head whose convolution computes fused layer l (0: none) */
    int *shuffle_from;      /* shuffle_from[l]: layer l runs as a channel gather from this concat's inputs or
                             * tensor (exec_shuffle.c; 0: none) */
    int *bn_concat;         /* bn_concat[l]: batch norm l reads the inputs of this concatenation, which is not
                             * run (DenseNet; 0: none) */
    int fused;              /* the last forward pass ran fused */
    float *fold;       /* folded weights and bias of the largest head */
    /* training fusion: bn_relu[li] is the ReLU that is batch norm li's only consumer
     * (0 otherwise); bn_relu_on marks the pairs fused in the last training forward
     * (1 on the batch norm, 2 on its ReLU), so the backward takes the same path */
    int *bn_relu;
    unsigned char *bn_relu_on;
    struct exec_packed *packed; /* the heads packed for oneDNN (exec.c); NULL until used */
    uint64_t dropout_seed;
    double *profile;   /* (nlayers) seconds added per layer during a profiled call, else NULL */
    struct act_plan *act; /* compressed activations: this plan's arena and stores (act_compress.c), else NULL */
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
    const char *parsing;            /* source name while a builder runs, for messages */
    float *params, *grads;          /* one block each: all trainable tensors (grads once training) */
    size_t nparams;
    float *buffers;                 /* running statistics */
    size_t nbuffers;
    meta_entry *meta;
    int nmeta;
    /* int8 inference (quant.c): qscale[li] > 0 is conv2d li's input scale (qu8[li]: its
     * input is never negative, 0..255), parsed from the "int8.inputs" metadata when
     * qdirty; NULL when the model is not quantized */
    float *qscale;
    unsigned char *qu8;
    int qdirty;
    /* data-parallel training with synchronized batch norm: the trainer's communicator
     * (set while a trainer with cfg.sync_bn runs on several ranks, else NULL) */
    const ts_comm *sync_bn;
    int exit_layer;                 /* the early exit's logits layer (exit=1), 0 when none (early_exit.c) */
    /* a free-size model (input free=hw, free_hw.c): the graph rebuilt at the last two
     * other heights and widths asked for (most recent first), sharing params and buffers
     * with this model, each with its own execution plan; NULL until then */
#define FREE_HW_VIEWS 2
    struct ts_model *hw_view[FREE_HW_VIEWS];
    int shares_storage;             /* a hw_view: params and buffers are its owner's */
    int act_compress;               /* compressed activations in training (act_compress.c): ACT_* ... */
    float act_eb;                   /* ... within act_eb times each tensor's range (adaptive: to start with) */
    float *act_rel;                 /* adaptive: (act_rel_n) each output's relative bound now, else NULL */
    int act_rel_n;
    exec_state exec;
};

/* ---- the attribute schema: one row per key of a kind, from which the text parser,
 * the text writer, the builder's checks, `tessera info` and the ONNX exporter's
 * attributes are driven (attrs.c) */
typedef enum attr_type {
    ATTR_INT,     /* key=N */
    ATTR_OUT,     /* key=N or key=classes (the model's class count) */
    ATTR_FLOAT,   /* key=F */
    ATTR_PAIR,    /* key=N or HxW: two int fields (off, off2) */
    ATTR_PADDING, /* padding=N, HxW or t,l,b,r: ph, pw, pbh, pbw */
    ATTR_SHAPE,   /* key=AxBxC: a ts_shape field */
    ATTR_INTLIST, /* key=a,b,c: an int array (off) and its count (off2) */
    ATTR_CHOICE,  /* key=name: an int field, the name's index in choices */
    ATTR_FPAIR    /* key=F or FxF: two float fields (off, off2) */
} attr_type;

enum {
    ATTR_REQUIRED = 1,      /* no default: the text must give it */
    ATTR_OMIT_DEFAULT = 2,  /* written only when not the default (clip bounds, binary const); a FLOAT,
                             * PAIR or FPAIR at its default passes the range check (resize's
                             * unset size and scale are 0) */
    ATTR_KERNEL_DEFAULT = 4 /* PAIR: 0 means "as the kernel" (pool strides, PyTorch's default) */
};

typedef struct attr_spec {
    const char *key;
    attr_type type;
    unsigned short off, off2;   /* offsetof(layer_attrs, field); PAIR: second field; INTLIST: count */
    double def, lo, hi;         /* default, and the range of every value */
    int flags;
    const char *const *choices; /* CHOICE: the names, NULL-terminated */
    const char *onnx;           /* the ONNX attribute it maps to, or NULL (the exporter's own) */
} attr_spec;

/* Per-kind table: every layer kind has a name, its attribute schema, shape inference
 * (which also declares the layer's tensors), forward, backward, MAC count and
 * aux-memory need. */
typedef struct layer_ops {
    const char *name;
    const attr_spec *attrs;         /* nattrs rows */
    int nattrs;
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

/* ---- attributes (attrs.c) */
/* The kind's defaults; fields the kind does not use are zero. */
void nn_attrs_default(layer_kind kind, layer_attrs *a);
/* The row of kind's schema for key, or NULL. */
const attr_spec *attr_find(layer_kind kind, const char *key);
/* Parses one value into a; classes resolves out=classes (0: unknown). On failure
 * returns 0 and writes what was expected into expected. */
int attr_parse(const attr_spec *sp, const char *val, int classes, layer_attrs *a, char *expected, size_t cap);
/* Checks every attribute of a against kind's schema; the message names `where`. */
ts_status attrs_check(ts_ctx *ctx, layer_kind kind, const layer_attrs *a, const char *where);
/* Writes one attribute's value as the parser reads it ("3x3"); returns the length as
 * snprintf. attrs_write writes all of a kind's keys (" out=8 kernel=3x3 ...", each
 * with a leading space), skipping ATTR_OMIT_DEFAULT ones at their default. */
int attr_write_value(const attr_spec *sp, const layer_attrs *a, char *dst, size_t cap);
int attr_is_default(const attr_spec *sp, const layer_attrs *a);
int attrs_write(layer_kind kind, const layer_attrs *a, char *dst, size_t cap);
/* Attribute values by row: pointers into a */
static inline int *attr_int_field(const attr_spec *sp, layer_attrs *a, int second) {
    return (int *)(void *)((char *)a + (second ? sp->off2 : sp->off));
}

/* ---- the graph builder (builder.c): every model is built through it, whether from
 * architecture text (arch.c), ONNX (onnx_import.c), composition, cloning or a
 * caller's own code. Shape errors surface at the nn_add that causes them. */
typedef struct nn_builder nn_builder;

/* What nn_add made: the layer's index, per-sample output shape and tensors (indices
 * into the model's tensor table, -1 when absent). */
typedef struct nn_added {
    int layer;
    ts_shape out;
    int weight, bias, running_mean, running_var, mask, konst;
} nn_added;

/* A builder for a model taking per-sample inputs of `input` (the input layer, named
 * input_name or "input0", is layer 0). classes > 0: the last layer must output that
 * many values (0: whatever it outputs). source names the graph in messages, line
 * (0: none) the input's line in it. */
ts_status nn_builder_create(ts_ctx *ctx, const char *source, int line, const ts_shape *input, int classes,
                            const char *input_name, nn_builder **out);
/* Adds a layer. name: NULL for "<kind><index>"; inputs: NULL for the previous layer,
 * else a NULL-terminated list of earlier layers' names; attrs: NULL for the kind's
 * defaults. out may be NULL. */
ts_status nn_add(nn_builder *b, layer_kind kind, const char *name, const char *const *inputs,
                 const layer_attrs *attrs, nn_added *out);
/* The same with inputs as layer indices (n of them; n == 0 for the previous layer). */
ts_status nn_add_at(nn_builder *b, layer_kind kind, const char *name, const int *inputs, int n,
                    const layer_attrs *attrs, nn_added *out);
/* Messages from the next nn_add say "source:line". */
void nn_builder_set_line(nn_builder *b, int line);
int nn_builder_layer_count(const nn_builder *b);
const layer *nn_builder_layer(const nn_builder *b, int index);
int nn_builder_find(const nn_builder *b, const char *name); /* index, or -1 */
/* The model so far, without storage (sizes known), for readers that only check. */
ts_status nn_builder_finish_unallocated(nn_builder *b, ts_model **out);
/* The model: tensors allocated and initialized from seed (PyTorch's defaults). The
 * builder is consumed either way. text: the architecture text to keep (NULL: written
 * from the layers). */
ts_status nn_builder_finish(nn_builder *b, uint64_t seed, const char *text, ts_model **out);
void nn_builder_free(nn_builder *b);

/* Marks the input's H and W free (the input is CxHxW; its shape the default size). */
ts_status nn_builder_set_free_hw(nn_builder *b);

/* ---- free image size (free_hw.c) */
/* Checks that a model whose input is free=hw computes the same parameters at another
 * size: a layer whose tensors depend on H and W (a dense after a flatten) or whose
 * shape rule fails there (a reshape to a fixed size) is named in the error. */
ts_status free_hw_check(ts_ctx *ctx, const ts_model *m, const char *source);
/* The per-sample output shape of m for inputs of height h and width w (nothing kept). */
ts_status free_hw_output_at(ts_ctx *ctx, const ts_model *m, int h, int w, ts_shape *out);

/* Architecture text of a whole model, as arch_parse reads it (malloc'ed; NULL when
 * out of memory). */
char *arch_write_model(const ts_model *m);

/* Declares a tensor of layer li; returns its index or -1 (error on ctx). */
int model_add_tensor(ts_ctx *ctx, ts_model *m, int li, const char *suffix, ts_tensor_role role, const ts_shape *shape);

/* Parses architecture text into a builder (the layers added, nothing allocated).
 * input/classes/vocab, when given (ndim > 0, > 0, vocab[i] > 0), replace what the input
 * line declares: vocab[0] its vocab=, vocab[1] its target_vocab= (a key's value
 * `vocab` or `target_vocab` reads them). vocab may be NULL. */
ts_status arch_parse(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                     const int *vocab, nn_builder **out);

/* Largest model: parameters plus buffers, in float values (16 GiB); most layers;
 * per-sample elements of any layer output (kernels index with int). */
#define MODEL_MAX_VALUES ((uint64_t)1 << 32)
#define ARCH_MAX_LAYERS 20000
#define ARCH_MAX_ELEMENTS ((int64_t)1 << 30)

/* Parses text into a model without storage (sizes known, nothing allocated). With
 * vocab (as arch_parse's) the model keeps its text written from the layers (the
 * vocabulary sizes resolved), else text itself. */
ts_status model_parse(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                      const int *vocab, ts_model **out);
ts_status model_alloc_tensors(ts_ctx *ctx, ts_model *m);
ts_status model_ensure_grads(ts_ctx *ctx, ts_model *m);
void model_init_params(ts_model *m, uint64_t seed);
ts_model *model_new_empty(void);
/* The public tensor order (parameters, then buffers), once all layers are in. */
ts_status model_order_tensors(ts_ctx *ctx, ts_model *m);
ts_status model_clone(ts_ctx *ctx, const ts_model *m, ts_model **out);

/* ts_model_backward that calls observe(user, m, li) before the backward of every
 * layer li that is not fused into its batch norm, while d loss / d out of li is in
 * m->exec.ls[li].grad ((n, out); later layers' gradient buffers may be reused by
 * then). Non-zero from observe stops it (TS_ECANCELED). Mask learning reads the
 * gradients of its mask layers this way (src/modular/decompose_grad.c). */
typedef int (*grad_observer_fn)(void *user, ts_model *m, int li);
ts_status model_backward_observe(ts_ctx *ctx, ts_model *m, const float *dlogits, grad_observer_fn observe,
                                 void *user);

/* ---- early exits (early_exit.c, docs/early-exit.md) */
/* on[l] = 1 for every layer that layer `out` depends on, itself and the input included */
void exit_ancestors(const ts_model *m, int out, unsigned char *on /* (nlayers) */);
/* Sets m->exit_layer from the dense layers marked exit=1: at most one, not the last
 * layer, `classes` outputs; messages name `where`. */
ts_status exit_check(ts_ctx *ctx, ts_model *m, const char *where);
/* The early-view pair whose weights training ties: *dst the conv2d marked view=1 on
 * the final output's path, *src the exit's own depthwise conv2d of the same weight
 * shape. 1 when both exist. */
int exit_view_pair(const ts_model *m, int *src, int *dst);
/* The top softmax probability of a row of k logits: what an exit's threshold reads. */
float exit_top_probability(const float *z, int k);

/* model_backward_observe with d loss / d the early exit's logits (n, classes) added
 * at m->exit_layer (dexit NULL: none). */
ts_status model_backward_exit(ts_ctx *ctx, ts_model *m, const float *dlogits, const float *dexit,
                              grad_observer_fn observe, void *user);
/* Inference over the layers skip does not mark (NULL: all), n samples of x, fusion
 * as ts_model_predict; outputs stay in m->exec.ls. *layout: 1 fused, + 2 channels-last,
 * so that two parts of one network can check they ran alike. */
ts_status exec_predict_part(ts_ctx *ctx, ts_model *m, const float *x, int n, const unsigned char *skip, int *layout);

/* ---- physical slicing (slice.c, docs/modules.md) */
typedef struct slice_report {
    int64_t params_before, params_after;     /* trainable scalars */
    int64_t macs_before, macs_after;         /* per sample, LAYER_OPS[].macs summed */
    int64_t channels_before, channels_after; /* conv2d/dense output channels (kernels) in all */
    /* with want_keep set by the caller (the report is read: zero-initialize it): which
     * output channels (axis 0) of each layer li
     * of the input model were kept, keep[keep_off[li] + c] (malloc'ed; slice_report_free) */
    int want_keep;
    unsigned char *keep;
    int64_t *keep_off;       /* (nlayers + 1) */
} slice_report;
void slice_report_free(slice_report *rep);
/* An equivalent model (same outputs as m within float rounding, 1e-5 relative) with
 * every channel that is known to be zero or not needed physically removed: mask layers'
 * all-zero planes and what only they used. Same layer names, metadata and preprocess;
 * a mask left all ones goes. rep may be NULL. */
ts_status model_slice(ts_ctx *ctx, const ts_model *m, ts_model **out, slice_report *rep);
/* Trainable scalars, multiply-accumulates per sample and conv2d/dense output channels
 * (kernels) of m: the figures slice_report compares. */
void model_measure(const ts_model *m, int64_t *params, int64_t *macs, int64_t *kernels);

/* ---- int8 inference (quant.c) */
#define QUANT_META_KEY "int8.inputs"
/* Re-reads the quantization from the metadata when it changed (cheap otherwise). */
void model_quant_refresh(ts_model *m);
/* TS_EFORMAT naming source when the metadata's int8 scales do not fit m. */
ts_status model_quant_check(ts_ctx *ctx, const ts_model *m, const char *source);
/* Whether conv2d li runs in int8 in inference, and its input's scale and sign. */
static inline int model_quant_layer(const ts_model *m, int li, float *scale, int *u8) {
    if (!m->qscale || m->qscale[li] <= 0.0f) return 0;
    *scale = m->qscale[li];
    *u8 = m->qu8[li];
    return 1;
}

void exec_release(exec_state *e);
/* Channel shuffles in fused inference (exec_shuffle.c): plan_shuffles marks the gathers
 * (shuffle_from) and the layers they replace (fuse_skip), given each layer's reader
 * count; shuffle_forward runs gather li. */
void plan_shuffles(ts_model *m, const int *uses);
/* What layer li reads in fused inference when it reads around a layer that is not run
 * (a gather: the concat's inputs or the shuffled tensor; a batch norm after a concat,
 * bn_concat: the concat's inputs): their count, into src (LAYER_MAX_INPUTS); 0 when
 * it reads its own inputs. */
int gather_sources(const ts_model *m, int li, int *src);
ts_status shuffle_forward(ts_ctx *ctx, ts_model *m, int li);
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
/* Compressed activations in training (act_compress.c). The plan places the outputs
 * that may share memory in one arena (their live layer intervals, forward and
 * backward, apart) and sets ls[].out for them; a training forward compresses each
 * output the backward reads after its last forward use (act_forward_until: every
 * use before layer li done), and the backward restores it before the first step that
 * reads it (act_backward_at, at the top of step li). */
enum { ACT_OFF = 0, ACT_FIXED = 1, ACT_ADAPTIVE = 2 };
#define ACT_EB_MAX 0.1f /* the largest bound the adaptive mode sets */
int act_shareable(const ts_model *m, int li);
/* after backward step li: the adaptive mode's measurement of its gradients */
void act_backward_done(ts_model *m, int li);
ts_status act_plan_make(ts_ctx *ctx, ts_model *m, int cap);
void act_plan_free(struct act_plan *p);
void act_forward_begin(ts_model *m);
ts_status act_forward_until(ts_ctx *ctx, ts_model *m, int li);
ts_status act_backward_at(ts_ctx *ctx, ts_model *m, int li);
const float *layer_input(ts_model *m, int li, int k);
/* Is layer l's output channels-last, (N,H,W,C), in the pass that runs now? */
static inline int layer_cl(const ts_model *m, int l) { return m->exec.cl_now && m->exec.cl_now[l]; }
/* Is layer l's output (and its gradient) nChw16c in the training pass that runs now?
 * Then its channels are padded to a multiple of 16 with zeros (blk_numel). */
static inline int layer_blk(const ts_model *m, int l) { return m->exec.blk_now && m->exec.blk_now[l]; }
/* Values per sample of a (C,H,W) shape in nChw16c: C rounded up to 16. A training plan
 * sizes the activations and gradients of the layers a pass may block (layer_may_block)
 * so (exec.c), whatever the pass's layout. */
static inline int64_t blk_numel(const ts_shape *s) {
    return s->ndim == 3 ? (s->dims[0] + 15) / 16 * 16 * s->dims[1] * s->dims[2] : ts_shape_numel(s);
}
/* May a training pass keep layer li's output nChw16c (exec_blocked.c)? From the graph
 * alone, once per training plan (blk_may; 0 without one): a pass may block fewer. */
static inline int layer_may_block(const ts_model *m, int li) { return m->exec.blk_may && m->exec.blk_may[li]; }
/* Fills blk_may (and allocates blk) for a training plan, before its buffers are sized. */
ts_status plan_blocked_candidates(ts_ctx *ctx, ts_model *m);
/* Values of layer l's output (or its gradient) for the batch in the pass that runs now,
 * in its layout: what element-wise kernels run over. */
static inline size_t layer_count(const ts_model *m, int l) {
    const ts_shape *s = &m->layers[l].out;
    return (size_t)m->exec.n * (size_t)(layer_blk(m, l) ? blk_numel(s) : ts_shape_numel(s));
}
/* Sets blk and blk_now for a training pass on ctx's kernels (exec_blocked.c). */
void plan_blocked(const ts_ctx *ctx, ts_model *m);
/* The kernel scratch a training plan of cap samples needs for its blocked batch norms
 * (their per-sample sums, in exec.scratch). */
size_t blocked_scratch_bytes(const ts_model *m, int cap);
/* Where layer li's backward writes d loss / d input k: the input layer's grad
 * buffer, or the shared accumulator when that buffer already holds a gradient
 * from another consumer (then layer_input_grad_commit adds it). NULL if the input
 * needs no gradient (the model input). */
float *layer_input_grad(ts_model *m, int li, int k);
void layer_input_grad_commit(ts_model *m, int li, int k, int nthreads);

static inline int64_t shape_numel(const ts_shape *s) { return ts_shape_numel(s); }
uint64_t rng_mix(uint64_t a, uint64_t b);

#endif
