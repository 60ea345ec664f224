/* Training internals shared with src/io (checkpoints). */
#ifndef TS_TRAIN_H
#define TS_TRAIN_H

#include "nn/nn.h"

struct ts_optimizer {
    ts_model *model;
    ts_optim_config cfg;
    float *state;        /* SGD: momentum (P); Adam: exp_avg (P) then exp_avg_sq (P) */
    size_t state_count;  /* floats in state */
    int64_t steps;
};

struct ts_trainer {
    ts_model *model;
    const ts_dataset *train, *val;
    const ts_text_dataset *text_train, *text_val; /* instead of train and val (ts_trainer_create_text) */
    int lps;              /* labels per sample: 1, or T for tagging */
    ts_train_config cfg;
    int act_was_on;       /* the model's activation compression before this trainer set its own */
    float act_was_eb;
    ts_optimizer *opt;
    ts_loader *loader;
    ts_preprocess pp;
    ts_schedule sched;
    int64_t epoch;        /* completed epochs */
    int64_t batch_in_epoch; /* batches done in the current epoch (resume mid-epoch) */
    double epoch_loss_sum, epoch_correct; /* running sums of the current epoch */
    int64_t epoch_seen;
    double loss_avg;      /* running (exponential) average of the step losses; 0 before the first */
    double loss_low;      /* the lowest that average has been (the divergence bound's base) */
    int diverged;         /* a step diverged: the state is never saved (ts_checkpoint_save) */
    float *x, *logits, *dlogits;
    int32_t *y;
    /* modular training (cfg.modular): the mask layers, their loss gradients of this
     * step and the epoch's running sums of the mask loss terms */
    int ngens;
    int *gen_layer;       /* (ngens) */
    int *gen_of;          /* (nlayers): index into gen_layer, or -1 */
    float *gen_grad;      /* (ngens, batch, C of the generator), packed */
    int64_t *gen_off;     /* (ngens) offsets into gen_grad */
    double *gen_work;     /* mask_pair_loss_work of the widest */
    double epoch_coh_sum, epoch_coup_sum;
    double epoch_act_kept, epoch_act_plain; /* compressed activations: the epoch's largest step */
    /* early stopping and the best epoch (best_epoch.c) */
    double best_val_acc;  /* -1 before the first validation */
    int64_t best_epoch;   /* -1 before the first validation */
    int64_t since_best;   /* validated epochs since the best */
    float *best_state;    /* keep_best: every tensor of the model at the best epoch, in order */
    int stopped_early, restored_best;
    ts_comm comm;         /* data-parallel ranks (data_parallel.c); size 1 when alone */
    float *dp_buf;        /* data-parallel: (nparams + nbuffers + DP_STATS) the step's sums */
    size_t *dp_ready;     /* overlap: (nlayers + 1) lowest gradient offset of layers li.. (NULL: none) */
    size_t dp_sent;       /* overlap: gradients [dp_sent, nparams) are being summed */
    char dp_err[256];     /* overlap: why a sum begun inside backward failed */
    /* an early exit (docs/early-exit.md): its loss gradients of this step, the epoch's
     * running sums, and the early-view pair whose weights are tied (0: none) */
    float *exit_dlogits;
    double epoch_exit_loss_sum, epoch_exit_correct;
    int view_src, view_dst;
};

/* After epoch `epoch`'s validation: tracks the best top-1 and, for keep_best, copies
 * the model's tensors when it improves. Returns 1 when cfg.early_stop says to stop. */
ts_status best_epoch_observe(ts_ctx *ctx, ts_trainer *tr, int64_t epoch, double val_acc, int *stop);
/* keep_best: puts the best epoch's tensors back into the model (once training ends). */
void best_epoch_restore(ts_trainer *tr);
/* Floats in best_state: every tensor of m. */
size_t best_epoch_state_floats(const ts_model *m);

/* Data-parallel training (data_parallel.c). A rank's samples [lo, hi) of a batch of n. */
void dp_shard(int n, const ts_comm *comm, int *lo, int *hi);
/* buf (n) summed over the ranks in place; a failure names `what`. */
ts_status dp_sum(ts_ctx *ctx, ts_trainer *tr, float *buf, size_t n, const char *what);
/* The step's sums over the ranks, in one call: the gradients (of this rank's cnt of
 * the batch's total samples, already weighed) summed, the buffers (batch-norm running
 * statistics) averaged, *loss (this rank's mean) and *correct made the batch's. */
#define DP_STATS 2
ts_status dp_sum_step(ts_ctx *ctx, ts_trainer *tr, int cnt, int total, float *loss, int *correct);
/* Backward observer (overlap): begins the sum of the gradients finished so far once a
 * bucket is ready. */
int dp_observe(void *user, ts_model *m, int li);
/* *stop becomes 1 on every rank when it was 1 on any: all ranks stop at one step. */
ts_status dp_agree_stop(ts_ctx *ctx, ts_trainer *tr, int *stop);

/* Layers whose name ends so are MwT mask outputs (src/modular/mwt.c makes them). */
#define TS_MWT_MASK_SUFFIX ".gen.mask"


/* Checks that ds fits m: image shape equal to the model input, no more classes
 * than the model outputs, every label in 0..classes-1. `what` names the set in messages
 * ("training", "validation", "evaluation"). */
ts_status train_check_dataset(ts_ctx *ctx, const ts_model *m, const ts_dataset *ds, const char *what);

/* The same for a text dataset: a classify or tag set whose texts have the model's input
 * length (T), labels (or tags, -1 for padding) within what the model outputs. */
ts_status train_check_text(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *ds, const char *what);

/* ts_evaluate_classes with the preprocessing given (a model built for a step, such as
 * extract's mask network, carries none of its own). */
ts_status evaluate_classes(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, const ts_preprocess *pp, const int *classes,
                           int k, double *top1);

/* An early exit's self-distillation (ts_train_config.exit_distill): z (n, k) the
 * exit's logits, zf (n, k) the final head's (the teacher, a constant), g (n, k) holds
 * d CE_exit / dz and becomes (1 - b) g + b T (q - p) / n, the gradient of
 * (1 - b) CE_exit + b T^2 KL(p || q) over the batch mean, p and q the final head's and
 * the exit's softmax at temperature T. Returns T^2 KL's batch mean. Double precision
 * inside: k may be large and T small. */
double train_exit_distill(int n, int k, const float *z, const float *zf, double b, double T, float *g);

/* ts_model_predict that also copies the early exit's logits (n, classes) into
 * exit_logits (evaluate_exit.c). */
ts_status evaluate_exit_pass(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, float *exit_logits);

/* ts_translate, incremental 0: every word by rerunning the whole model (translate.c),
 * the way any model of the layout decodes; 1: ts_translate itself. */
ts_status translate_run(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, int32_t *out,
                        int incremental);

#endif
