/* Modules: per-class pieces of a trained classifier (decompose.c finds them,
 * module.c holds them, compose.c builds models from them, retune.c adapts them,
 * src/modular/module_file.c stores them). */
#ifndef TS_MODULAR_H
#define TS_MODULAR_H

#include "nn/layers.h"

/* Keep bits for the output units of one ReLU layer of the origin (one sample). */
typedef struct module_mask {
    int layer;          /* index of the ReLU layer in the origin */
    int64_t units;      /* per-sample output units of that layer */
    uint64_t *keep;     /* (units + 63) / 64 words; bit set = unit kept */
} module_mask;

struct ts_module {
    ts_model *origin;        /* owned copy of the model it was cut from */
    uint64_t origin_id;      /* hash of the origin's architecture text and tensors */
    int cls;                 /* class index in the origin */
    char *class_name, *dataset, *origin_name;
    int nmasks;              /* one per ReLU layer of the origin, in layer order */
    module_mask *masks;
    ts_module_info info;     /* counts and statistics; its strings point into this module */
    /* a module read from a sliced file (module_file.c): which of origin's parameter and
     * buffer values the file held, params then buffers (the others are zero and never
     * reach the module's output). NULL: all of them (a whole origin). */
    uint8_t *present;
};

/* The origin with a mask layer ("<relu>.keep") after every ReLU the module masks,
 * outputting all of the origin's logits: the module's computation before its head. */
ts_status module_masked_origin(ts_ctx *ctx, const ts_module *mod, ts_model **out);
/* Copies every tensor of layer `from` of src into layer `to` of dst with the same
 * suffix and size (TS_ESHAPE naming `what` when one has no counterpart). */
ts_status model_copy_layer_tensors(ts_ctx *ctx, const ts_model *src, int from, ts_model *dst, int to, const char *what);

/* ts_prune_model's model before slicing (prune.c): m with a mask layer ("<layer>.keep")
 * after every layer of each narrowed channel group, zeroing the channels it drops. */
ts_status prune_masked_model(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, ts_model **masked);

/* The only layer reading layer li's output, or -1 when none or several do. */
int model_sole_consumer(const ts_model *m, int li);

static inline int mask_get(const module_mask *mk, int64_t u) { return (int)(mk->keep[u >> 6] >> (u & 63) & 1u); }
static inline int64_t mask_words(int64_t units) { return (units + 63) / 64; }

/* The one output of mm (a module's model: ts_module_model) on every sample of ds, in
 * out (ds->count), with mm's preprocessing (the constant-time one when the context is
 * in that mode), `batch` samples at a time (1..MODULE_EVAL_BATCH_MAX); progress, when
 * given, after each batch (non-zero cancels). `what` names the caller in messages. */
ts_status module_model_scores(ts_ctx *ctx, ts_model *mm, const ts_dataset *ds, int batch, float *out,
                              ts_progress_fn progress, void *user, const char *what);
/* 1 when a and b normalize the same channels the same way. */
int module_same_preprocess(const ts_preprocess *a, const ts_preprocess *b);
/* The per-channel affine (a batch norm with mean 0, variance 1: gamma, beta) that maps
 * inputs normalized by `from` to inputs normalized by `to`: x_to = x_from * gamma + beta. */
void module_renorm_affine(const ts_preprocess *from, const ts_preprocess *to, float gamma[4], float beta[4]);

/* The logits layer of a classifier: its last layer, or the input of a final softmax. */
int module_logits_layer(const ts_model *m);
/* How many inputs of later layers read layer li's output (*only: the last reader). */
int model_consumers(const ts_model *m, int li, int *only);

/* A new module for class cls of `origin` (copied), with every unit kept. */
ts_status module_create(ts_ctx *ctx, const ts_model *origin, int cls, ts_module **out);
/* Recounts units and live weights after the masks changed (TS_ENOMEM when its
 * scratch cannot be allocated: the counts are then not to be trusted). */
ts_status module_count(ts_ctx *ctx, ts_module *mod);
/* BLN backtracking (backtrack.c): clears the keep bits of the units that feed the
 * classifier and are tied mostly to the other classes (|w_uc| > delta (|w_c| +
 * |w_uc|)), then, back through dense layers, of the units whose every consumer is
 * removed. Returns how many units it removed (0 when delta >= 1). */
int64_t module_backtrack(ts_module *mod, float delta);
/* Sets chain[k] (one byte per mask, zeroed by the caller) for every mask that
 * module_backtrack may change; changes nothing. */
void module_backtrack_masks(ts_module *mod, uint8_t *chain);
/* Hash identifying a model's architecture and tensors. */
uint64_t module_model_id(const ts_model *m);
/* ReLU activity read through the capture API (ts_model_predict_capture with the
 * masks' layers and this callback): one bit per unit of each mask's ReLU, set when
 * the unit is positive, laid out as the masks (offsets word_off, W words in all).
 * per_sample: bits holds a row per sample of the call (first + j), overwritten;
 * otherwise one row, ORed over every sample. */
typedef struct activity_sink {
    const module_mask *masks;
    int nmasks;
    const int64_t *word_off;
    int64_t W;
    uint64_t *bits;
    int per_sample;
} activity_sink;
int module_record_activity(void *user, int layer, int64_t first, int n, const float *out);

/* FSE'20's concern identification on the dense units, per class c (decompose.c): I_c,
 * the intersection of the activity of c's positives, restarted from the next positive
 * whenever the reset mask (the last dense ReLU: the layer that feeds the classifier)
 * keeps fewer than 10% of its units, as the paper stops removing once fewer than 10%
 * of the last layer's edges are left (its code resets). */
typedef struct every_rule {
    int on;
    const uint8_t *dense; /* per mask: a ReLU over a vector */
    int reset_mask;       /* -1: no dense unit, nothing to do */
    uint64_t *I;          /* (classes, W) */
    uint8_t *fresh;       /* (classes) the next positive starts the intersection */
} every_rule;
/* Adds the activity a (W words, laid out as the masks at word_off) of a positive of
 * class c. */
void every_rule_add(every_rule *e, const module_mask *masks, int nmasks, const int64_t *word_off, int64_t W, int c,
                    const uint64_t *a);

/* Most samples module evaluation and retuning preprocess at once: bounds their
 * memory, nothing else depends on it. */
#define MODULE_EVAL_BATCH_MAX 256

/* Class-balanced logistic regression of y (1 for sp, 0 for sn) on a * s + b. */
void module_fit_logistic(const float *sp, int64_t np, const float *sn, int64_t nn, float *a, float *b);

/* Threshold maximizing balanced accuracy of "score > t" (sorts both arrays; np, nn >= 1). */
float module_balanced_threshold(float *sp, int64_t np, float *sn, int64_t nn);

/* ts_decompose with cfg->method TS_DECOMPOSE_GRAD (decompose_grad.c): arguments, the
 * dataset and the class list already checked by ts_decompose. */
ts_status decompose_grad(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                         const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                         int *count);

/* ---- the frozen-origin network that kernel masks are learned on (mask_net.c) */
/* One gated ReLU of the origin: masks act on its C channels of `plane` units. */
typedef struct mask_gate {
    int relu;       /* origin layer */
    int channels;
    int64_t plane;  /* H x W, or 1 for a ReLU over a vector */
    int64_t off;    /* offset of its channels in a branch's score vector */
} mask_gate;

typedef struct mask_net_spec {
    const char *what;     /* names the caller in messages ("decompose --method grad") */
    int branches;         /* K copies of the origin, one score vector each */
    int vector_gates;     /* also mask ReLUs over vectors (dense units), not only (C,H,W) maps */
    int head_out;         /* each branch ends in a dense layer on the origin's logits with */
    const float *head_w;  /* head_out outputs and these weights, (K, head_out, classes); bias 0 */
    const char *head_name;
} mask_net_spec;

typedef struct mask_net {
    ts_ctx *ctx;
    const ts_model *origin;
    int K, ngates;
    int64_t C;          /* channels over all gates: a branch's score count */
    mask_gate *gates;
    ts_model *net;      /* the K branches; outputs: their heads' outputs in turn */
    int head_layer;     /* branch 0's head in net */
    int *mask_layer;    /* (K * ngates): the branch's mask layer in net */
    int *net_gate;      /* (net->nlayers): k * ngates + g for a mask layer, else -1 */
    float *score, *grad;/* (K * C): kernel scores (all 1 at first) and their gradient of this step */
    float *m1, *m2;     /* Adam moments of the scores */
} mask_net;

/* Builds the network (batch norms folded, dropout removed, a mask layer "<relu>.keep"
 * after every gate) with gradients allocated; mask_net_free frees it, also on failure. */
ts_status mask_net_build(mask_net *mn, ts_ctx *ctx, const ts_model *origin, const mask_net_spec *spec, uint64_t seed);
void mask_net_free(mask_net *mn);
/* The mask layers' keep buffers from the binarized scores (score > 0). */
void mask_net_set_masks(mask_net *mn);
/* Backward observer (model_backward_observe, user = the mask_net): writes d loss / d
 * binary mask of each channel into grad. */
int mask_net_observe(void *user, ts_model *net, int li);
/* Adam (PyTorch's) on n values at step t (1-based). */
void mask_net_adam(float *p, const float *g, float *m1, float *m2, int64_t n, float lr, int64_t t);
/* One Adam step of the scores: the observed gradient clipped to [-1, 1] (the
 * straight-through hardtanh), plus l1 (d of the kept-fraction penalty). */
void mask_net_step_scores(mask_net *mn, float l1, float lr, int64_t step);
/* Fraction of the n scores > 0. */
double mask_net_kept(const float *score, int64_t n);
/* Jaccard index of two sets of T flags (one byte each); two empty sets are alike (1). */
double module_kernel_jaccard(const uint8_t *a, const uint8_t *b, int64_t T);
/* ts_decompose with cfg->method TS_DECOMPOSE_MWT (decompose_mwt.c), likewise. */
ts_status decompose_mwt(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                        const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                        int *count);

/* ts_decompose with cfg->method TS_DECOMPOSE_GA (decompose_ga.c), likewise. */
ts_status decompose_ga(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                       const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                       int *count);
/* CNNSplitter's genes for a layer of `channels` kernels: 10 groups below 256 kernels,
 * else 100, never more than the kernels. */
int ga_groups(int channels);
/* One layer's kept kernels from its genes: order (channels) lists the kernels by
 * importance, most important first; group g holds ranks [g C / G, (g + 1) C / G) and
 * keep[k] (channels) is 1 exactly for the kernels of the groups whose gene is 1. */
void ga_decode(const int *order, int channels, int groups, const uint8_t *genes, uint8_t *keep);

/* ---- recurrent classifiers (rnn_units.c, decompose_text.c) */
#define RNN_CHAIN_MAX 16
/* A recurrent classifier or tagger as a chain: input -> embedding -> recurrent
 * layers -> dense head (dropout anywhere between, an optional final softmax). A
 * classifier's last recurrent layer outputs its final states (sequence=0); a
 * tagger's all output every step and its head scores each step. */
typedef struct rnn_chain {
    int n;                    /* recurrent layers */
    int layer[RNN_CHAIN_MAX]; /* their indices, in order */
    int dirs[RNN_CHAIN_MAX];  /* 1 or 2 */
    int hidden[RNN_CHAIN_MAX];/* H per direction */
    int ids[RNN_CHAIN_MAX];   /* reads the token ids (padding masked) */
    int head;                 /* the dense layer giving the logits */
    int tagger;               /* the head gives a score per label at every step, (T, labels) */
} rnn_chain;
/* Fills ch, or fails naming what in m is not such a classifier (`what` in messages). */
ts_status rnn_chain_find(ts_ctx *ctx, const ts_model *m, rnn_chain *ch, const char *what);
/* Mean states of a chain's units, for compensation: mean[i] (chain layer i's D*H
 * units) over every real step, last (the last layer's D*H) the mean final state. */
typedef struct rnn_means {
    const float *mean[RNN_CHAIN_MAX];
    const float *last;
} rnn_means;
/* m with the units whose keep byte is 0 removed (keep[i]: chain layer i's D*H units,
 * direction-major): zeroed in place (zeroed, same shapes as m; NULL: not made) and cut
 * out (sliced: H' = the most any direction keeps, at least 1; a direction keeping
 * fewer carries zeroed units). Either output may be NULL. With comp, each removed
 * unit's mean state times its weights is first added to the biases of what reads it
 * (its layer's recurrence, b_hh; the next layer's b_ih; the head's bias, with the mean
 * final state; docs/sequences.md, "compensate"). */
ts_status rnn_remove_units(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const uint8_t *const *keep,
                           const rnn_means *comp, ts_model **zeroed, ts_model **sliced);
/* m with units removed per step (step_keep[i]: chain layer i's (T, D*H) bytes, 1 kept):
 * the units removed at every step cut out as rnn_remove_units does, the rest masked per
 * step on their layers (step_mask=1) when any is removed at some step. */
ts_status rnn_remove_units_steps(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const uint8_t *const *step_keep,
                                 int T, ts_model **sliced);
/* The model's layers up to its last recurrent one, every recurrent layer outputting
 * every step (sequence=1): what hidden states are read from. */
ts_status rnn_probe_model(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, ts_model **out);
/* Chain position of layer li, or -1. */
int rnn_chain_index(const rnn_chain *ch, int li);
/* Labels of a chain's model: the head's outputs (a tagger's per step). */
int rnn_chain_labels(const ts_model *m, const rnn_chain *ch);
/* Row y's probability and whether y is the argmax (*top), from k logits or, after a
 * final softmax (probs), probabilities. */
float text_prob_row(const float *row, int k, int y, int probs, int *top);
/* Concern and tangling identification of one layer's U units (decompose_text.c) from
 * the rows pos (np) and neg (nn) of vals (rows, U): relu, a unit stays when some row
 * makes it positive; otherwise the trimmed-mean rule up to cfg->max_remove of U.
 * a, scratch: room for max(np, nn) floats; diff (U) doubles; order (U) ints. */
void rnn_identify_rows(int relu, const float *vals, int64_t U, const int64_t *pos, int64_t np, const int64_t *neg,
                       int64_t nn, const ts_decompose_text_config *cfg, float *a, float *scratch, double *diff,
                       int *order, uint8_t *keep);
/* Marks keep 0 for the `count` of units cand[0..nc) with the lowest score (U doubles),
 * ties to the lower index (reorders cand): the refinements' rankings. */
void rnn_remove_least(const double *score, int *cand, int64_t nc, int64_t count, uint8_t *keep);
/* fit_scores (decompose_text.c): scale a > 0 and shift b bringing a module's raw margins
 * s (n) closest to the origin's M (n) by least squares, the rows with own[i] (its
 * positives) and the others each weighing half in all; (1, 0) when the fit says nothing
 * usable (no spread, no positive covariance, not finite). */
void rnn_fit_margins(const float *s, const float *M, const uint8_t *own, int64_t n, float *a, float *b);
/* A translator's rank_by_use (decompose_translator.c): of the units rnn_identify_rows
 * removed (keep 0; diff < 0 marks every candidate) as many go again, those with the
 * lowest mean |state| on the rows pos (np of vals (rows, H)), ties to the lower index.
 * use: (H) doubles; cand: (H) ints. */
void rnn_rank_by_use(const float *vals, int64_t H, const int64_t *pos, int64_t np, const double *diff, double *use,
                     int *cand, uint8_t *keep);
/* Label c's module of m: units removed by keep (per chain layer, D*H bytes; with comp
 * compensated, as rnn_remove_units) or, when step_keep is given, per step (T*D*H
 * bytes each: rnn_remove_units_steps), with its counts filled (units_kept: an
 * unrolled module's mean over the steps). */
ts_status text_module_make(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const uint8_t *const *keep,
                           const rnn_means *comp, const uint8_t *const *step_keep, int T, int c, int npos, int nneg,
                           ts_module **out);
/* A text module's sizes against its origin m: parameters and MACs of the module's
 * model s, and weights (what the decomposition cuts) of both. */
void text_module_sizes(ts_module_info *in, const ts_model *m, const ts_model *s, int64_t weights, int64_t weights_kept);
/* perm (n): 0..n-1 in the seeded order texts are drawn in (Fisher-Yates). */
void text_draw_order(int64_t *perm, int64_t n, uint64_t seed);
/* The end of a decomposition: on failure (st) frees the nmod modules and returns st;
 * else hands them to *modules, *count. */
ts_status text_modules_hand_over(ts_status st, ts_module **mods, int nmod, ts_module ***modules, int *count);
/* ts_decompose_text on a tagger (decompose_tagger.c), arguments checked. */
ts_status decompose_tagger(ts_ctx *ctx, const ts_model *m, const rnn_chain *ch, const ts_text_dataset *train,
                           const ts_decompose_text_config *cfg, const int *classes, int n, ts_module ***modules,
                           int *count);
/* ts_decompose_text on an encoder-decoder translator whose set is read both ways:
 * a module per target language (decompose_translator.c), config checked. */
ts_status decompose_translator(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *train,
                               const ts_decompose_text_config *cfg, const int *classes, int n, ts_module ***modules,
                               int *count);
/* m takes a source and a target row (2, Tm) and scores each of the Tm steps. */
int translator_model(const ts_model *m);
/* A language module's model records the source tag id of its language here. */
#define TRANSLATOR_TAG_META "text.language_tag"
/* That id, or -1 when absent or not an id. */
int translator_module_tag(const ts_module *mod);
/* ts_compose of translator language modules (compose_translator.c). */
ts_status compose_translators(ts_ctx *ctx, ts_module *const *mods, int k, ts_model **out);
/* Softmax probability of class y in a row of k logits; *is_max: y is the argmax. */
float decompose_prob_of(const float *row, int k, int y, int *is_max);

#endif
