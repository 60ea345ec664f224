/* tessera train: architecture + dataset -> trained model file, with progress,
 * validation, checkpoints and exact resume. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli.h"
#include "cli_text.h"
#include "dist.h"
#include "train_log.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The CLI may keep process state; the library may not. The signal that stopped the
 * run (SIGINT from Ctrl-C, SIGTERM from Slurm, Kubernetes, Docker or timeout), 0 while
 * none has. */
static volatile sig_atomic_t g_interrupted;
static const char *stop_reason(void) { return g_interrupted == SIGTERM ? "terminated (SIGTERM)" : "interrupted"; }

/* Ctrl-C and SIGTERM are taken by a thread of our own (sigtimedwait) and blocked in
 * every other thread, which inherit the mask: a signal handled on a oneDNN/OpenMP
 * worker in the middle of a kernel was followed by heap corruption in oneDNN's gemm in
 * about 1 run in 10 (abort "corrupted size vs. prev_size", 4 of 40 SIGTERM'd runs of
 * the demo on 2 threads; 0 of 80 since). While training runs (`armed`) a signal only
 * asks it to stop after the step; before and after, it ends the process as the
 * default action would. */
typedef struct sig_watch {
    pthread_t thread;
    sigset_t set;
    volatile sig_atomic_t armed, done;
    int started;
} sig_watch;

static void *watch_signals(void *arg) {
    sig_watch *w = arg;
    const struct timespec tick = {0, 50 * 1000 * 1000};
    while (!w->done) {
        const int sig = sigtimedwait(&w->set, NULL, &tick);
        if (sig != SIGINT && sig != SIGTERM) continue;
        if (w->armed) {
            g_interrupted = sig;
            continue;
        }
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        signal(sig, SIG_DFL);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        raise(sig); /* delivered to this thread at once: the process ends by the signal */
    }
    return NULL;
}

/* Blocks SIGINT and SIGTERM in this thread (and so in every thread made after) and
 * starts the watcher; when it cannot, signals keep their default action. */
static void watch_start(sig_watch *w) {
    memset(w, 0, sizeof *w);
    sigemptyset(&w->set);
    sigaddset(&w->set, SIGINT);
    sigaddset(&w->set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &w->set, NULL)) return;
    if (pthread_create(&w->thread, NULL, watch_signals, w)) {
        pthread_sigmask(SIG_UNBLOCK, &w->set, NULL);
        return;
    }
    w->started = 1;
}

static void watch_stop(sig_watch *w) {
    if (!w->started) return;
    w->done = 1;
    pthread_join(w->thread, NULL);
    pthread_sigmask(SIG_UNBLOCK, &w->set, NULL); /* a signal still pending acts now, by default */
}

static cli_opt train_opts[] = {
    {"arch", "NAME|FILE", "architecture: a zoo name (tessera zoo) or an .arch file (default demo)", NULL},
    {"init", "MODEL.tsr", "start from this model's weights instead (fine-tuning, e.g. an imported ONNX model)", NULL},
    {"data", "NAME|PATH", "fashion-mnist, mnist, cifar10, cifar100, a folder/file in those layouts, or an image folder (CLASS/*.png|jpg, as torchvision's ImageFolder); text: clinc_oos, brown, tatoeba, spam-assassin (docs/sequences.md)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"image-size", "HxW", "an image folder: every image resized and center-cropped to HxW (default: the first image's size)", NULL},
    {"channels", "1|3", "an image folder: images converted to gray (1) or RGB (3) (default: the first image's)", NULL},
    {"out", "FILE", "where to write the trained model (required)", NULL},
    {"epochs", "N", "epochs to train (default 10)", NULL},
    {"batch", "N", "batch size (default 128)", NULL},
    {"lr", "F", "learning rate; one-cycle: maximum (default 0.1 for sgd, 0.001 for adam/adamw)", NULL},
    {"optimizer", "sgd|adam|adamw", "optimizer, PyTorch semantics (default sgd)", NULL},
    {"momentum", "F", "SGD momentum (default 0.9)", NULL},
    {"nesterov", NULL, "SGD with Nesterov momentum", NULL},
    {"weight-decay", "F", "L2 (sgd, adam) or decoupled (adamw) weight decay (default 0; adamw 0.01)", NULL},
    {"schedule", "KIND", "constant, step, cosine or onecycle (default constant)", NULL},
    {"step-size", "N", "step schedule: decay every N epochs (default: at 50% and 75%)", NULL},
    {"gamma", "F", "step schedule: decay factor (default 0.1)", NULL},
    {"augment", "LIST", "comma list of crop, flip (random crop pads by --crop-pad)", NULL},
    {"crop-pad", "N", "padding for random crops (default 4)", NULL},
    {"label-smoothing", "F", "label smoothing in [0,1) (default 0)", NULL},
    {"modular", NULL, "modular training (MwT): a mask generator on every conv + batch norm, loss CE + alpha cohesion + beta coupling (docs/modules.md)", NULL},
    {"alpha", "F", "--modular: weight of the cohesion loss (default 0.5)", NULL},
    {"beta", "F", "--modular: weight of the coupling loss (default 1.5)", NULL},
    {"early-exit", "after=LAYER[,channels=N][,view=0|1]", "add an early exit (T-RECX) after a layer or stage (stage1: its last layer), with early-view assistance unless view=0 (docs/early-exit.md)", NULL},
    {"exit-weight", "F", "early exit: loss CE_final + F * L_exit, L_exit the exit's cross-entropy (or its mix with --exit-distill) (default 0.5)", NULL},
    {"exit-transfer", "F", "early exit: copy the exit's depthwise weights into the early view before every batch for this fraction of the epochs (default 0.8)", NULL},
    {"exit-distill", "B", "early exit: the exit also learns the final head's softened outputs, loss (1-B) CE_exit + B T^2 KL (self-distillation; default 0: T-RECX's CE_exit)", NULL},
    {"exit-temperature", "T", "early exit: the softmax temperature of --exit-distill (default 4)", NULL},
    {"val-split", "N|F", "hold out N training samples (a whole number) or a fraction 0 < F < 1 for validation", NULL},
    {"early-stop", "N", "stop after N epochs in a row without a better validation top-1 (needs --val-split)", NULL},
    {"keep-best", NULL, "save the epoch with the best validation top-1, not the last (needs --val-split)", NULL},
    {"sync-bn", NULL, "under mpirun: batch norm's statistics over the whole global batch (all ranks), as PyTorch's "
                      "SyncBatchNorm; default: each rank's own share", NULL},
    {"compress-activations", "EB|auto", "keep the activations the backward pass reads compressed between forward and "
                                        "backward, each value within EB times its tensor's range (0 <= EB < 1; 0: "
                                        "lossless), or with each layer's bound set from its gradients (auto; "
                                        "docs/compressed-activations.md)", NULL},
    {"limit", "N", "train on the first N (>= 1) training samples only", NULL},
    {"max-len", "T", "text: tokens per text, longer ones cut (default: the longest, at most 512)", NULL},
    {"target-len", "T", "translation: target tokens with <bos> and <eos> (default: the longest, at most 514)", NULL},
    {"min-count", "N", "text: words seen fewer times in training are <unk> (default 1)", NULL},
    {"both-ways", NULL, "translation: also read every pair target to source; one model translates both ways, "
                        "the language to write chosen by a tag word that starts the source (predict --to)", NULL},
    {"seed", "S", "random seed: same seed and threads give identical weights (default 1)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"bf16", NULL, "bfloat16 mixed-precision convolutions and recurrent layers (oneDNN; weights and optimizer stay float32; give it again with --resume)", NULL},
    {"winograd", "MODE", "where 3x3 stride-1 convolutions (16+ channels in, 32+ out) run Winograd kernels: off, inference (default) or training (also the training passes; results drift from direct by float rounding)", NULL},
    {"checkpoint", "FILE", "save a resumable checkpoint after every epoch (and on Ctrl-C or SIGTERM); a diverging run keeps the last state that trained (with --resume: the resumed file)", NULL},
    {"checkpoint-every", "N", "also checkpoint every N steps", NULL},
    {"resume", "CKPT", "continue a checkpoint exactly; --epochs may extend it", NULL},
    {"force", NULL, "replace --out and --checkpoint even when they are write-protected", NULL},
    {"no-test", NULL, "skip the test-set evaluation after training", NULL},
    {"log", "DIR", "write per-epoch metrics to DIR/metrics.csv and DIR/metrics.jsonl (appended on --resume)", NULL},
    {"log-every", "N", "--log: also a row every N steps", NULL},
    {"quiet", NULL, "no progress bar", NULL},
};

static cli_cmd train_cmd = {"train", "--data NAME|PATH --out FILE [options]",
                            "Trains a model and writes it to --out. Prints a progress bar, a line per epoch, and the\n"
                            "test accuracy at the end. Ctrl-C (exit 130) and SIGTERM (exit 143) save --checkpoint first.\n"
                            "Under mpirun, data-parallel over the ranks: --batch is the global batch (docs/distributed.md).",
                            train_opts, sizeof train_opts / sizeof train_opts[0]};

typedef struct train_run {
    ts_ctx *ctx;
    ts_trainer *tr;
    progress bar;
    int quiet;
    int bar_on;          /* the progress bar of the current epoch was started */
    int batch;
    int modular;
    int has_exit;        /* the model has an early exit: its figures are printed */
    const char *checkpoint;
    char pending[4096];  /* checkpoint + ".pending" */
    int has_pending;
    long every;
    train_log log;       /* --log */
    long long last_step; /* optimizer steps done, as the last step reported */
    long long count;     /* training images (texts) per epoch */
    const char *unit;    /* "img", or "text" */
    long long steps;     /* optimizer steps this run took */
    ts_status ckpt_status;
    char *ckpt_error;    /* the message of ckpt_status: the trainer's own "stopped" replaces it on ctx */
} train_run;

/* Checkpoints are written as <file>.pending and become <file> only when the next
 * step's loss has come out finite: a run that diverges keeps, in <file>, the last
 * state that still trained. The renames are atomic, so <file> is always whole. */
static ts_status promote_pending(train_run *run) {
    if (!run->has_pending) return TS_OK;
    run->has_pending = 0;
    return ts_file_replace(run->ctx, run->pending, run->checkpoint);
}

static ts_status save_pending(train_run *run) {
    ts_status st = ts_checkpoint_save(run->ctx, run->tr, run->pending);
    if (!st) run->has_pending = 1;
    return st;
}

/* A checkpoint failure stops training; its message is kept for the end. */
static int checkpoint_failed(train_run *run, ts_status st) {
    run->ckpt_status = st;
    if (st && !run->ckpt_error) run->ckpt_error = strdup(ts_ctx_error(run->ctx));
    return st != TS_OK;
}

static int on_step(const ts_train_progress *p, void *user) {
    train_run *run = user;
    if (!run->quiet) {
        if (p->batch == 1 || !run->bar_on) { /* an epoch's first step (or a resumed one's): timed from here */
            progress_start(&run->bar);
            run->bar.unit = run->unit;
            run->bar.base = p->batch;
            run->bar_on = 1;
        }
        char label[48], extra[128], loss[32];
        snprintf(label, sizeof label, "epoch %lld/%lld", (long long)p->epoch + 1, (long long)p->epochs);
        cli_num(loss, sizeof loss, p->loss, 4);
        if (run->modular)
            snprintf(extra, sizeof extra, "loss %s acc %.2f%% coh %.3f coup %.3f lr %.3g", loss, 100.0 * p->acc,
                     p->cohesion, p->coupling, p->lr);
        else
            snprintf(extra, sizeof extra, "loss %s acc %.2f%% lr %.3g", loss, 100.0 * p->acc, p->lr);
        progress_update(&run->bar, label, p->batch, p->batches, extra, run->batch);
        if (p->batch == p->batches) {
            progress_end(&run->bar);
            run->bar_on = 0;
        }
    }
    train_log_step(&run->log, p);
    run->last_step = p->step;
    run->steps++;
    /* this step's loss did not diverge: the state before it is a good checkpoint */
    if (checkpoint_failed(run, promote_pending(run))) return 1;
    if (run->checkpoint && run->every > 0 && p->step % run->every == 0 && checkpoint_failed(run, save_pending(run)))
        return 1;
    return g_interrupted ? 1 : 0;
}

static int on_epoch(const ts_epoch_report *r, void *user) {
    train_run *run = user;
    char a[32], b[32];
    printf("epoch %lld: train loss %s acc %.2f%%", (long long)r->epoch + 1, cli_num(a, sizeof a, r->train_loss, 4),
           100 * r->train_acc);
    if (run->modular)
        printf(" | cohesion loss %s coupling loss %s", cli_num(a, sizeof a, r->cohesion, 4),
               cli_num(b, sizeof b, r->coupling, 4));
    if (run->has_exit)
        printf(" | exit loss %s acc %.2f%%", cli_num(a, sizeof a, r->exit_loss, 4), 100 * r->exit_acc);
    if (r->val_acc >= 0) printf(" | val loss %s acc %.2f%%", cli_num(a, sizeof a, r->val_loss, 4), 100 * r->val_acc);
    if (run->has_exit && r->val_exit_acc >= 0) printf(" exit %.2f%%", 100 * r->val_exit_acc);
    if (r->act_kept_bytes > 0) /* --compress-activations: what it saved on this data */
        printf(" | activations kept %.1f of %.1f MiB (%.1fx)", r->act_kept_bytes / 1048576.0,
               r->act_kept_plain_bytes / 1048576.0, r->act_kept_plain_bytes / r->act_kept_bytes);
    printf(" | %.1fs\n", r->seconds);
    fflush(stdout);
    train_log_epoch(&run->log, r, run->last_step, run->count, run->modular, run->has_exit);
    if (run->checkpoint) {
        ts_status st = promote_pending(run);
        /* the validation loss, when there is one, vouches for the new state */
        if (!st) st = save_pending(run);
        if (!st && r->val_acc >= 0 && isfinite(r->val_loss)) st = promote_pending(run);
        if (checkpoint_failed(run, st)) return 1;
    }
    return g_interrupted ? 1 : 0;
}

static int parse_optimizer(const char *s, ts_optimizer_kind *k) {
    if (!strcmp(s, "sgd")) *k = TS_OPT_SGD;
    else if (!strcmp(s, "adam")) *k = TS_OPT_ADAM;
    else if (!strcmp(s, "adamw")) *k = TS_OPT_ADAMW;
    else return 0;
    return 1;
}

static int parse_schedule(const char *s, ts_schedule_kind *k) {
    if (!strcmp(s, "constant")) *k = TS_SCHED_CONSTANT;
    else if (!strcmp(s, "step")) *k = TS_SCHED_STEP;
    else if (!strcmp(s, "cosine")) *k = TS_SCHED_COSINE;
    else if (!strcmp(s, "onecycle")) *k = TS_SCHED_ONECYCLE;
    else return 0;
    return 1;
}

/* --early-exit after=LAYER[,channels=N][,view=0|1] into cfg (after points into buf). */
static ts_status parse_exit(ts_ctx *ctx, const char *spec, char *buf, size_t cap, ts_exit_config *cfg) {
    ts_exit_config_default(cfg);
    snprintf(buf, cap, "%s", spec);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '='), *end = NULL;
        long v = 0;
        if (eq) {
            *eq = '\0';
            v = strtol(eq + 1, &end, 10);
        }
        if (eq && !strcmp(t, "after") && eq[1]) cfg->after = eq + 1;
        else if (eq && !strcmp(t, "channels") && *end == '\0' && v >= 1 && v <= 4096) cfg->channels = (int)v;
        else if (eq && !strcmp(t, "view") && *end == '\0' && (v == 0 || v == 1)) cfg->early_view = (int)v;
        else
            return ts_ctx_set_error(ctx, TS_EINVAL, "--early-exit: '%s%s%s' is not after=LAYER, channels=1..4096 or "
                                                    "view=0|1", t, eq ? "=" : "", eq ? eq + 1 : "");
    }
    if (!cfg->after) return ts_ctx_set_error(ctx, TS_EINVAL, "--early-exit: after=LAYER is required");
    return TS_OK;
}

/* The --arch model (zoo text, else a file) with --early-exit's exit block. */
static ts_status exit_model(ts_ctx *ctx, const char *arch, const char *zoo_text, const ts_shape *in, int classes,
                            uint64_t seed, ts_model **m) {
    char spec[512];
    ts_exit_config ec;
    ts_status st = parse_exit(ctx, cli_get(&train_cmd, "early-exit"), spec, sizeof spec, &ec);
    if (st) return st;
    if (zoo_text) return ts_model_from_arch_exit(ctx, zoo_text, arch, in, classes, seed, &ec, m);
    FILE *f = fopen(arch, "rb");
    if (!f) return ts_ctx_set_error(ctx, TS_ENOTFOUND, "--arch: '%s' is neither a zoo architecture nor a readable file", arch);
    char *text = malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    const int big = text && n == (1 << 20) - 1;
    fclose(f);
    if (!text) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory reading %s", arch);
    text[n] = '\0';
    st = big ? ts_ctx_set_error(ctx, TS_EINVAL, "%s: over 1 MiB, too long for an architecture", arch)
             : ts_model_from_arch_exit(ctx, text, arch, in, classes, seed, &ec, m);
    free(text);
    return st;
}

/* Fills cfg from options; `resumed` keeps the checkpoint's values unless given. */
static int config_from_options(const cli_cmd *c, ts_train_config *cfg, int resumed) {
    long v;
    double f;
    if (!resumed) {
        ts_optimizer_kind ok = TS_OPT_SGD;
        const char *o = cli_get(c, "optimizer");
        if (o && !parse_optimizer(o, &ok)) {
            fprintf(stderr, "tessera train: --optimizer: '%s' is not one of sgd, adam, adamw\n", o);
            return EXIT_USAGE;
        }
        ts_optim_config_default(&cfg->optim, ok);
        cfg->lr = ok == TS_OPT_SGD ? 0.1f : 0.001f;
        cfg->modular = cli_get(c, "modular") != NULL;
    } else if (cli_get(c, "optimizer") || cli_get(c, "batch") || cli_get(c, "seed") ||
               (cli_get(c, "modular") && !cfg->modular)) {
        fprintf(stderr, "tessera train: --optimizer, --batch, --seed and --modular cannot change when resuming\n");
        return EXIT_USAGE;
    }
    if (!cfg->modular && (cli_get(c, "alpha") || cli_get(c, "beta"))) {
        fprintf(stderr, "tessera train: --alpha and --beta weigh the losses of --modular training\n");
        return EXIT_USAGE;
    }
    if (!cli_float(c, "alpha", cfg->mwt_alpha, 0, 1000, &f)) return EXIT_USAGE;
    cfg->mwt_alpha = (float)f;
    if (!cli_float(c, "beta", cfg->mwt_beta, 0, 1000, &f)) return EXIT_USAGE;
    cfg->mwt_beta = (float)f;
    if (!cli_float(c, "exit-weight", cfg->exit_weight, 0, 100, &f)) return EXIT_USAGE;
    cfg->exit_weight = (float)f;
    if (!cli_float(c, "exit-transfer", cfg->exit_transfer, 0, 1, &f)) return EXIT_USAGE;
    cfg->exit_transfer = (float)f;
    if (!cli_float(c, "exit-distill", cfg->exit_distill, 0, 1, &f)) return EXIT_USAGE;
    cfg->exit_distill = (float)f;
    if (!cli_float(c, "exit-temperature", cfg->exit_temperature, 0.1, 100, &f)) return EXIT_USAGE;
    cfg->exit_temperature = (float)f;
    if (!cli_int(c, "early-stop", 0, 1, 100000, &v)) return EXIT_USAGE;
    cfg->early_stop = (int)v;
    cfg->keep_best = cli_get(c, "keep-best") != NULL;
    cfg->sync_bn = cli_get(c, "sync-bn") != NULL;
    int adaptive = 0;
    if (!cli_compress_activations(c, &f, &adaptive)) return EXIT_USAGE;
    cfg->compress_activations = f < 0 ? 0 : adaptive ? 2 : 1;
    cfg->compress_eb = f < 0 ? 0.0f : (float)f;
    if (cfg->compress_activations && cfg->modular) {
        fprintf(stderr, "tessera train: --compress-activations does not combine with --modular (its mask losses read "
                        "the activations after the forward pass)\n");
        return EXIT_USAGE;
    }
    if (!cli_int(c, "epochs", cfg->epochs, 1, 100000, &v)) return EXIT_USAGE;
    cfg->epochs = (int)v;
    if (!cli_int(c, "batch", cfg->batch, 1, 65536, &v)) return EXIT_USAGE;
    cfg->batch = (int)v;
    if (!cli_float(c, "lr", cfg->lr, 1e-12, 1e3, &f)) return EXIT_USAGE;
    cfg->lr = (float)f;
    if (!cli_float(c, "momentum", cfg->optim.momentum, 0, 0.9999, &f)) return EXIT_USAGE;
    cfg->optim.momentum = (float)f;
    if (cli_get(c, "nesterov")) cfg->optim.nesterov = 1;
    if (!cli_float(c, "weight-decay", cfg->optim.weight_decay, 0, 10, &f)) return EXIT_USAGE;
    cfg->optim.weight_decay = (float)f;
    const char *s = cli_get(c, "schedule");
    if (s && !parse_schedule(s, &cfg->schedule)) {
        fprintf(stderr, "tessera train: --schedule: '%s' is not one of constant, step, cosine, onecycle\n", s);
        return EXIT_USAGE;
    }
    if (!cli_int(c, "step-size", cfg->step_size, 0, 100000, &v)) return EXIT_USAGE;
    cfg->step_size = (int)v;
    if (!cli_float(c, "gamma", cfg->gamma, 1e-6, 1, &f)) return EXIT_USAGE;
    cfg->gamma = (float)f;
    if (!cli_float(c, "label-smoothing", cfg->label_smoothing, 0, 0.999, &f)) return EXIT_USAGE;
    cfg->label_smoothing = (float)f;
    if (!cli_int(c, "seed", (long)(cfg->seed & 0x7fffffff), 0, 0x7fffffffL, &v)) return EXIT_USAGE;
    if (!resumed) cfg->seed = (uint64_t)v;
    const char *aug = cli_get(c, "augment");
    long pad;
    if (!cli_int(c, "crop-pad", 4, 0, 64, &pad)) return EXIT_USAGE;
    if (aug) {
        cfg->crop_pad = 0;
        cfg->flip = 0;
        char buf[128];
        snprintf(buf, sizeof buf, "%s", aug);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!strcmp(t, "crop")) cfg->crop_pad = (int)pad;
            else if (!strcmp(t, "flip")) cfg->flip = 1;
            else if (strcmp(t, "none")) {
                fprintf(stderr, "tessera train: --augment: unknown augmentation '%s' (expected crop, flip)\n", t);
                return EXIT_USAGE;
            }
        }
    }
    return 0;
}

/* Where the data is, as the model records it, so that it is found again from any
 * folder: a path made absolute; a known name found through a relative folder (npm's
 * ./node_modules, a relative $TESSERA_DATA) as the absolute folder it was found in;
 * --data-dir made absolute (rec_dir, "" when not given). */
static void data_record(ts_ctx *ctx, const char *spec, const char *data_dir, char *rec, char *rec_dir) {
    char found[PATH_MAX];
    struct stat sb;
    snprintf(rec, PATH_MAX, "%s", spec);
    rec_dir[0] = '\0';
    if (data_dir && !realpath(data_dir, rec_dir)) snprintf(rec_dir, PATH_MAX, "%s", data_dir);
    if (stat(spec, &sb) == 0) {
        if (!realpath(spec, rec)) snprintf(rec, PATH_MAX, "%s", spec);
    } else if (!data_dir && !ts_dataset_locate(ctx, spec, TS_SPLIT_TRAIN, NULL, found, sizeof found) && found[0] != '/') {
        if (!realpath(found, rec)) snprintf(rec, PATH_MAX, "%s", spec);
    }
    ts_ctx_clear_error(ctx);
}

static int set_class_meta(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, const char *spec) {
    size_t len = 1;
    for (int i = 0; i < ds->classes; i++) len += strlen(ds->class_names && ds->class_names[i] ? ds->class_names[i] : "") + 12;
    char *names = malloc(len);
    if (!names) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    names[0] = '\0';
    size_t off = 0;
    for (int i = 0; i < ds->classes; i++) {
        const char *n = ds->class_names && ds->class_names[i] ? ds->class_names[i] : NULL;
        off += (size_t)snprintf(names + off, len - off, i ? "\n%s" : "%s", n ? n : "");
        if (!n) off += (size_t)snprintf(names + off, len - off, "%d", i);
    }
    ts_status st = ts_model_set_meta(ctx, m, "classes", names);
    free(names);
    if (!st) st = ts_model_set_meta(ctx, m, "dataset", ds->name);
    if (!st) st = ts_model_set_meta(ctx, m, "data", spec);
    return st;
}

/* The text datasets of a run: the training split as read, its training and
 * validation parts, the test split. */
typedef struct text_sets {
    ts_text_dataset *full, *train, *val, *test;
} text_sets;

static void text_sets_free(text_sets *t) {
    if (t->train != t->full) ts_text_dataset_free(t->train);
    ts_text_dataset_free(t->val);
    ts_text_dataset_free(t->full);
    ts_text_dataset_free(t->test);
}

/* A run on a text dataset up to its trainer: the splits read (a resumed or --init
 * model's vocabulary, classes and length kept), the sequence model built from --arch
 * with the data's length, classes and vocabulary, a validation part carved. */
static ts_status text_prepare(ts_ctx *ctx, const char *spec, const char *data_dir, const char *rec, const char *rec_dir,
                              ts_model **m, const ts_train_config *cfg, double vs, long limit, text_sets *t,
                              ts_trainer **tr) {
    ts_status st;
    long max_len, target_len, min_count;
    if (!cli_int(&train_cmd, "max-len", 0, 1, 512, &max_len) || !cli_int(&train_cmd, "target-len", 0, 3, 514, &target_len) ||
        !cli_int(&train_cmd, "min-count", 1, 1, 1L << 30, &min_count))
        return ts_ctx_set_error(ctx, TS_EINVAL, "--max-len, --target-len or --min-count: see tessera train --help");
    if (*m && !cli_is_text_model(*m))
        return ts_ctx_set_error(ctx, TS_EINVAL, "%s is a text dataset but the model to go on from reads images", spec);
    if (*m) {
        if (cli_get(&train_cmd, "both-ways") && !(cli_text_model_translates(*m) && ts_model_get_meta(*m, "classes")))
            return ts_ctx_set_error(ctx, TS_EINVAL, "--both-ways: the model to go on from was not trained both ways "
                                    "(its vocabularies have no language tags)");
        if ((st = cli_text_load_for_model(ctx, *m, "the model", spec, TS_SPLIT_TRAIN, data_dir, limit, &t->full)))
            return st;
    } else {
        ts_text_options opt;
        ts_text_options_default(&opt);
        opt.max_len = (int)max_len;
        opt.target_len = (int)target_len;
        opt.min_count = (int)min_count;
        opt.limit = limit;
        opt.both_ways = cli_get(&train_cmd, "both-ways") != NULL;
        if ((st = ts_text_dataset_load(ctx, spec, TS_SPLIT_TRAIN, data_dir, &opt, &t->full))) return st;
    }
    if (!*m) {
        const char *arch = cli_get(&train_cmd, "arch");
        if (!arch)
            arch = t->full->task == TS_SEQ_TAG ? "lstm-pos" : t->full->task == TS_SEQ_TRANSLATE ? "lstm-seq2seq" : "lstm-clinc";
        const char *text = ts_zoo_arch(arch);
        char *file = NULL;
        if (!text && (strchr(arch, '/') || strstr(arch, ".arch"))) {
            FILE *f = fopen(arch, "rb");
            long n = -1;
            if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && n < (16L << 20) && !fseek(f, 0, SEEK_SET) &&
                (file = calloc(1, (size_t)n + 1)) && fread(file, 1, (size_t)n, f) != (size_t)n) {
                free(file);
                file = NULL;
            }
            if (f) fclose(f);
            if (!file) return ts_ctx_set_error(ctx, TS_EIO, "%s: cannot read the architecture", arch);
            text = file;
        }
        if (!text)
            return ts_ctx_set_error(ctx, TS_ENOTFOUND, "--arch: '%s' is neither a zoo architecture (see tessera zoo) nor "
                                    "a file", arch);
        const ts_shape in = ts_text_input_shape(t->full);
        st = ts_model_from_arch_seq(ctx, text, arch, &in, t->full->task == TS_SEQ_CLASSIFY ? t->full->classes : 0,
                                    ts_vocab_size(t->full->vocab),
                                    t->full->target_vocab ? ts_vocab_size(t->full->target_vocab) : 0, cfg->seed, m);
        free(file);
        if (st || (st = cli_text_set_meta(ctx, *m, t->full, rec)) || (st = ts_model_set_meta(ctx, *m, "arch", arch)) ||
            (*rec_dir && (st = ts_model_set_meta(ctx, *m, "data.dir", rec_dir))))
            return st;
    }
    if (limit > 0) {
        char b[32];
        snprintf(b, sizeof b, "%ld", limit);
        if ((st = ts_model_set_meta(ctx, *m, "train.limit", b))) return st;
    }
    const int64_t val_count = vs > 0 && vs < 1 ? (int64_t)(vs * (double)t->full->count + 0.5) : (int64_t)vs;
    if (val_count >= t->full->count)
        return ts_ctx_set_error(ctx, TS_EINVAL, "--val-split %g leaves no training samples (dataset has %lld)", vs,
                                (long long)t->full->count);
    t->train = t->full;
    if (val_count > 0) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)val_count);
        if ((st = ts_text_dataset_split(ctx, t->full, val_count, cfg->seed, &t->train, &t->val)) ||
            (st = ts_model_set_meta(ctx, *m, "train.val_split", b)))
            return st;
    }
    if (!cli_get(&train_cmd, "no-test")) {
        ts_status ls = cli_text_load_for_model(ctx, *m, "the model", spec, TS_SPLIT_TEST, data_dir, 0, &t->test);
        if (ls == TS_EFORMAT || ls == TS_ENOMEM || ls == TS_EUNSUPPORTED) return ls;
        if (ls) {
            printf("no test split to evaluate: %s\n", ts_ctx_error(ctx));
            ts_ctx_clear_error(ctx);
        }
    }
    return ts_trainer_create_text(ctx, *m, t->train, t->val, cfg, tr);
}

/* How much of the training split to read: with --limit (or a resumed run's) and no
 * validation split, which draws from all of it, only the samples trained on. 0: all. */
static long first_samples(const ts_model *resumed) {
    const char *limit = cli_get(&train_cmd, "limit");
    if (resumed && !limit) limit = ts_model_get_meta(resumed, "train.limit");
    int split = cli_get(&train_cmd, "val-split") || (resumed && ts_model_get_meta(resumed, "train.val_split"));
    char *end;
    long n = limit && !split ? strtol(limit, &end, 10) : 0;
    return n > 0 && n < (1L << 40) ? n : 0; /* a bad --limit is reported below */
}

/* Resuming: the settings the checkpoint was saved under are used unless the command
 * line overrides them, and an override (or a machine with fewer cores) is said to
 * lose bit-identity with an uninterrupted run. Older checkpoints record none. */
static ts_status resume_settings(ts_ctx *ctx, const char *resume) {
    ts_run_settings rs;
    ts_status st = ts_checkpoint_settings(ctx, resume, &rs);
    if (st || !rs.threads) return st;
    const char *lost = "the result will not be bit-identical to an uninterrupted run";
    int threads = ts_ctx_get_threads(ctx);
    if (!cli_get(&train_cmd, "threads")) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if ((st = ts_ctx_set_threads(ctx, ncpu > 0 && rs.threads > ncpu ? (int)ncpu : rs.threads))) return st;
        threads = ts_ctx_get_threads(ctx);
    }
    if (threads != rs.threads)
        fprintf(stderr, "tessera train: note: %s was saved with %d threads, this run uses %d: %s\n", resume,
                rs.threads, threads, lost);
    if (!cli_get(&train_cmd, "backend")) ts_ctx_set_backend(ctx, rs.backend);
    else if (ts_ctx_get_backend(ctx) != rs.backend)
        fprintf(stderr, "tessera train: note: %s was saved with --backend %s: %s\n", resume,
                rs.backend == TS_BACKEND_REF ? "ref" : "dnnl", lost);
    if (rs.bf16 && !ts_ctx_get_bf16(ctx) && ts_ctx_get_backend(ctx) == TS_BACKEND_DNNL && ts_ctx_set_bf16(ctx, 1)) {
        ts_ctx_clear_error(ctx);
        fprintf(stderr, "tessera train: note: %s was saved with --bf16, which this CPU lacks: %s\n", resume, lost);
    } else if (rs.bf16 != ts_ctx_get_bf16(ctx)) {
        fprintf(stderr, "tessera train: note: %s was saved %s --bf16: %s\n", resume, rs.bf16 ? "with" : "without", lost);
    }
    return TS_OK;
}

/* The outputs of a run, checked and locked before any training: refused when one is
 * an input, is write-protected or is being written by another run. */
static int claim_outputs(ts_ctx *ctx, const char *out, const char *ckpt, ts_file_lock **locks, ts_status *st) {
    const char *resume = cli_get(&train_cmd, "resume");
    const char *inputs[] = {cli_get(&train_cmd, "init"), cli_get(&train_cmd, "arch"), cli_get(&train_cmd, "data"),
                            resume};
    int rc = cli_refuse_same(&train_cmd, "--out", out, inputs, 4);
    if (!rc && ckpt) rc = cli_refuse_same(&train_cmd, "--checkpoint", ckpt, inputs, 3); /* resuming into it is fine */
    if (!rc && cli_same_file(out, ckpt)) {
        fprintf(stderr, "tessera train: --out and --checkpoint name the same file %s; a model would replace the "
                "checkpoint\n", out);
        rc = EXIT_USAGE;
    }
    if (rc) return rc;
    if ((*st = ts_file_check_output(ctx, out)) || (ckpt && (*st = ts_file_check_output(ctx, ckpt))) ||
        (*st = ts_file_lock_acquire(ctx, out, &locks[0])) || (ckpt && (*st = ts_file_lock_acquire(ctx, ckpt, &locks[1]))))
        return cli_fail("train", ctx, *st);
    return 0;
}

/* --val-split: a whole number of samples, or a fraction strictly between 0 and 1
 * (1.5 is neither, and is refused rather than read as one sample). */
static int parse_val_split(double *vs) {
    if (!cli_float(&train_cmd, "val-split", 0, 0, 1e12, vs)) return EXIT_USAGE;
    if (cli_get(&train_cmd, "val-split") && !((*vs > 0 && *vs < 1) || (*vs >= 1 && *vs == floor(*vs)))) {
        fprintf(stderr, "tessera train: --val-split: '%s' is neither a fraction between 0 and 1 nor a whole number of "
                "samples\n", cli_get(&train_cmd, "val-split"));
        return EXIT_USAGE;
    }
    return 0;
}

/* Options a checkpoint already settles: the architecture is the checkpoint's. */
static int refuse_resume_conflicts(const ts_model *m, const char *resume) {
    const char *arch = cli_get(&train_cmd, "arch"), *had = ts_model_get_meta(m, "arch");
    if (cli_get(&train_cmd, "init")) {
        fprintf(stderr, "tessera train: --init and --resume exclude each other (%s holds the weights)\n", resume);
        return EXIT_USAGE;
    }
    if (arch && (!had || strcmp(arch, had))) {
        fprintf(stderr, "tessera train: --arch %s conflicts with %s, which trains %s; drop --arch to resume it\n", arch,
                resume, had ? had : "another architecture");
        return EXIT_USAGE;
    }
    return 0;
}

/* Whether the test split is the very file trained on (--data names one file): then it
 * measures nothing a test would. */
static int test_is_training_file(ts_ctx *ctx, const char *spec, const char *data_dir) {
    char a[4096], b[4096];
    struct stat sb;
    int same = !ts_dataset_locate(ctx, spec, TS_SPLIT_TRAIN, data_dir, a, sizeof a) &&
               !ts_dataset_locate(ctx, spec, TS_SPLIT_TEST, data_dir, b, sizeof b) && stat(a, &sb) == 0 &&
               S_ISREG(sb.st_mode) && cli_same_file(a, b);
    ts_ctx_clear_error(ctx);
    return same;
}

/* The shape image folders are read at (docs/data.md): the model's input when there
 * is one (--resume, or --init with an image folder), else --image-size and --channels,
 * each defaulting to the first training image's. Returns 0 or an exit code. */
static int image_shape_setup(ts_ctx *ctx, const ts_model *m, const char *spec) {
    ts_shape size;
    long ch = 0;
    if (!cli_shape(&train_cmd, "image-size", &size) || !cli_int(&train_cmd, "channels", 0, 1, 3, &ch)) return EXIT_USAGE;
    if (size.ndim != 0 && size.ndim != 2) {
        fprintf(stderr, "tessera train: --image-size: '%s' is not like 32x32 (height x width)\n",
                cli_get(&train_cmd, "image-size"));
        return EXIT_USAGE;
    }
    if (ch == 2) {
        fprintf(stderr, "tessera train: --channels: 2 (expected 1, gray, or 3, RGB)\n");
        return EXIT_USAGE;
    }
    ts_model *peek = NULL;
    struct stat sb;
    const char *init = cli_get(&train_cmd, "init");
    if (!m && init && stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (ts_model_load(ctx, init, &peek)) { /* reported where it is loaded for training */
            ts_ctx_clear_error(ctx);
        }
        m = peek;
    }
    int rc = 0;
    if (m) {
        const ts_shape in = ts_model_input_shape(m);
        cli_set_image_shape(ctx, in);
        if (in.ndim == 3 && ((ch && ch != in.dims[0]) ||
                             (size.ndim && (size.dims[0] != in.dims[1] || size.dims[1] != in.dims[2])))) {
            fprintf(stderr, "tessera train: --image-size/--channels: the model takes %lldx%lldx%lld images\n",
                    (long long)in.dims[0], (long long)in.dims[1], (long long)in.dims[2]);
            rc = EXIT_USAGE;
        }
    } else if (ts_ctx_set_image_shape(ctx, (int)ch, size.ndim ? (int)size.dims[0] : 0, size.ndim ? (int)size.dims[1] : 0)) {
        rc = cli_fail("train", ctx, TS_EINVAL);
    }
    ts_model_free(peek);
    return rc;
}

/* What early stopping and --keep-best did, after the run. */
static void print_summary(const ts_trainer *tr, const ts_train_config *cfg) {
    ts_train_summary sm;
    ts_trainer_summary(tr, &sm);
    char n[48];
    if (sm.stopped_early)
        printf("stopped early after epoch %lld of %d: no better validation top-1 for %s\n", (long long)sm.epochs_done,
               cfg->epochs, cli_plural(n, sizeof n, cfg->early_stop, "epoch"));
    if (sm.restored_best)
        printf("kept epoch %lld, the best: validation top-1 %.2f%%\n", (long long)sm.best_epoch + 1,
               100 * sm.best_val_acc);
}

/* The test split's report. Under mpirun every rank calls it: the ranks share the
 * batches (ts_ctx_set_comm), rank 0 prints. */
static ts_status test_images(ts_ctx *ctx, ts_model *m, const ts_dataset *test) {
    ts_eval_report ev;
    ts_status st = ts_evaluate(ctx, m, test, 256, &ev);
    if (st) return st;
    char l[32];
    printf("test accuracy: %.2f%% (top-5 %.2f%%, loss %s) on %lld images\n", 100 * ev.top1, 100 * ev.top5,
           cli_num(l, sizeof l, ev.loss, 4), (long long)ev.count);
    if (ev.exit_top1 >= 0)
        printf("test accuracy at the early exit: %.2f%% (tessera eval sweeps its threshold)\n", 100 * ev.exit_top1);
    ts_eval_report_free(&ev);
    return TS_OK;
}

static int train_main(int argc, char **argv, cli_dist *dist);

static sig_watch g_watch; /* the signal watcher of this train command (one per process) */

int cmd_train(int argc, char **argv) {
    watch_start(&g_watch); /* before MPI's and OpenMP's threads exist, so they inherit the mask */
    cli_dist dist;
    int rc = dist_begin("train", &dist);
    if (!rc) rc = dist_end("train", &dist, train_main(argc, argv, &dist));
    watch_stop(&g_watch);
    return rc;
}

static int train_main(int argc, char **argv, cli_dist *dist) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&train_cmd, argc, argv, pos, &npos, 0);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    const int lead = dist->rank == 0; /* the one rank that writes files and prints */
    const char *out = cli_get(&train_cmd, "out"), *resume = cli_get(&train_cmd, "resume");
    if (!out) {
        fprintf(stderr, "tessera train: --out FILE is required (see tessera train --help)\n");
        return EXIT_USAGE;
    }
    if (!cli_get(&train_cmd, "data") && !resume) {
        fprintf(stderr, "tessera train: --data is required (fashion-mnist, mnist, cifar10, cifar100 or a path)\n");
        return EXIT_USAGE;
    }
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) {
        fprintf(stderr, "tessera train: out of memory\n");
        return EXIT_NOMEM;
    }
    ts_model *m = NULL;
    ts_dataset *full = NULL, *train = NULL, *val = NULL, *limited = NULL, *test = NULL;
    ts_trainer *tr = NULL;
    text_sets texts = {NULL, NULL, NULL, NULL};
    int64_t train_count = 0;
    ts_status st = TS_OK;
    ts_file_lock *locks[2] = {NULL, NULL};
    train_run run;
    memset(&run, 0, sizeof run);
    cli_setup_files(&train_cmd, ctx);
    /* a resumed run goes on writing its checkpoint, so that it can be resumed again */
    const char *ckpt = cli_get(&train_cmd, "checkpoint") ? cli_get(&train_cmd, "checkpoint") : resume;
    if (!lead) ckpt = NULL;
    if (ckpt && ckpt == resume && !cli_get(&train_cmd, "force") && ts_file_check_output(ctx, resume)) {
        /* someone else's, or a read-only copy: resumed from, not written */
        fprintf(stderr, "tessera train: note: %s; this run saves no checkpoint (give --checkpoint FILE)\n",
                ts_ctx_error(ctx));
        ts_ctx_clear_error(ctx);
        ckpt = NULL;
    }
    double vs;
    long limit;
    if ((rc = parse_val_split(&vs)) || (rc = cli_int(&train_cmd, "limit", 0, 1, 1L << 40, &limit) ? 0 : EXIT_USAGE))
        goto done;
    if (lead && (rc = claim_outputs(ctx, out, ckpt, locks, &st))) goto done;
    if ((rc = cli_setup_ctx(&train_cmd, ctx)) || (rc = dist_setup(&train_cmd, ctx, dist, 1))) goto done;
    if ((rc = cli_setup_bf16(&train_cmd, ctx))) goto done;
    if (resume && (st = resume_settings(ctx, resume))) goto fail;

    ts_train_config cfg;

    ts_train_config_default(&cfg);
    if (resume) {
        if ((st = ts_checkpoint_load_model(ctx, resume, &m, &cfg))) goto fail;
        if ((rc = refuse_resume_conflicts(m, resume)) || (rc = config_from_options(&train_cmd, &cfg, 1))) goto done;
    } else if ((rc = config_from_options(&train_cmd, &cfg, 0))) {
        goto done;
    }
    long every;
    if (!cli_int(&train_cmd, "log-every", 0, 1, 1L << 40, &every)) {
        rc = EXIT_USAGE;
        goto done;
    }
    if (every && !cli_get(&train_cmd, "log")) {
        fprintf(stderr, "tessera train: --log-every goes with --log DIR\n");
        rc = EXIT_USAGE;
        goto done;
    }
    if (lead && cli_get(&train_cmd, "log") &&
        (st = train_log_open(ctx, &run.log, cli_get(&train_cmd, "log"), resume != NULL, every, cfg.batch)))
        goto fail;
    const char *spec = cli_get(&train_cmd, "data");
    if (!spec && m) spec = ts_model_get_meta(m, "data");
    if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: records no dataset; pass --data", resume);
        goto fail;
    }
    const char *data_dir = cli_get(&train_cmd, "data-dir");
    if (!data_dir && m) data_dir = ts_model_get_meta(m, "data.dir");
    char rec[PATH_MAX], rec_dir[PATH_MAX];
    if (cli_is_text_data(spec) || cli_is_text_model(m)) { /* a sequence model (docs/sequences.md) */
        snprintf(rec, sizeof rec, "%s", spec);
        rec_dir[0] = '\0';
        if (data_dir && !realpath(data_dir, rec_dir)) snprintf(rec_dir, sizeof rec_dir, "%s", data_dir);
        if (!cli_is_text_data(spec) && !realpath(spec, rec)) snprintf(rec, sizeof rec, "%s", spec);
        if (resume && !cli_get(&train_cmd, "val-split") && ts_model_get_meta(m, "train.val_split"))
            vs = atof(ts_model_get_meta(m, "train.val_split"));
        if (resume && !cli_get(&train_cmd, "limit") && ts_model_get_meta(m, "train.limit"))
            limit = atol(ts_model_get_meta(m, "train.limit"));
        if (!m && cli_get(&train_cmd, "init") && (st = ts_model_load(ctx, cli_get(&train_cmd, "init"), &m))) goto fail;
        if ((st = text_prepare(ctx, spec, data_dir, rec, rec_dir, &m, &cfg, vs, limit, &texts, &tr))) goto fail;
        train_count = texts.train->count;
        goto prepared;
    }
    if ((rc = image_shape_setup(ctx, m, spec))) goto done;
    if ((st = ts_dataset_load_first(ctx, spec, TS_SPLIT_TRAIN, data_dir, first_samples(m), &full))) goto fail;
    data_record(ctx, spec, data_dir, rec, rec_dir);
    /* the test split before training: a corrupt one fails the run at once, a missing one is skipped */
    if (!cli_get(&train_cmd, "no-test") && test_is_training_file(ctx, spec, data_dir)) {
        printf("no test split to evaluate: --data names one file, the training data itself (evaluate on a test file "
               "with tessera eval MODEL --data FILE)\n");
    } else if (!cli_get(&train_cmd, "no-test")) {
        ts_status ls = ts_dataset_load(ctx, spec, TS_SPLIT_TEST, data_dir, &test);
        if (ls == TS_EFORMAT || ls == TS_ENOMEM || ls == TS_EUNSUPPORTED) {
            st = ls;
            goto fail;
        }
        if (ls) {
            printf("no test split to evaluate: %s\n", ts_ctx_error(ctx));
            ts_ctx_clear_error(ctx);
        }
    }

    const char *init = cli_get(&train_cmd, "init");
    if (!m && init) {
        if (cli_get(&train_cmd, "arch")) {
            st = ts_ctx_set_error(ctx, TS_EINVAL, "--init and --arch exclude each other");
            goto fail;
        }
        if ((st = ts_model_load(ctx, init, &m))) goto fail;
        if (!ts_model_get_meta(m, "classes") && (st = set_class_meta(ctx, m, full, rec))) goto fail;
        if (!ts_model_get_meta(m, "arch") && (st = ts_model_set_meta(ctx, m, "arch", init))) goto fail;
    }
    if (cli_get(&train_cmd, "early-exit") && (m || cfg.modular)) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "--early-exit builds the exit into a new --arch model (not with %s)",
                              resume ? "--resume: the checkpoint's model keeps its exit" : m ? "--init" : "--modular");
        goto fail;
    }
    if (!m) {
        const char *arch = cli_get(&train_cmd, "arch");
        if (!arch) arch = "demo";
        ts_shape in = {3, {full->channels, full->height, full->width}};
        const char *text = ts_zoo_arch(arch);
        if (cli_get(&train_cmd, "early-exit")) st = exit_model(ctx, arch, text, &in, full->classes, cfg.seed, &m);
        else if (text) st = ts_model_from_arch(ctx, text, arch, &in, full->classes, cfg.seed, &m);
        else if (strchr(arch, '/') || strstr(arch, ".arch")) st = ts_model_from_arch_file(ctx, arch, &in, full->classes, cfg.seed, &m);
        else st = ts_ctx_set_error(ctx, TS_ENOTFOUND, "--arch: '%s' is neither a zoo architecture (see tessera zoo) nor a file", arch);
        if (st) goto fail;
        if ((st = set_class_meta(ctx, m, full, rec))) goto fail;
        if ((st = ts_model_set_meta(ctx, m, "arch", arch))) goto fail;
        if (*rec_dir && (st = ts_model_set_meta(ctx, m, "data.dir", rec_dir))) goto fail;
    }

    if (cfg.modular && !resume) { /* a model that has generators (--init) keeps them */
        ts_model *gated = NULL;
        if ((st = ts_model_add_mask_generators(ctx, m, cfg.seed, &gated))) goto fail;
        ts_model_free(m);
        m = gated;
    }

    /* validation split, then an optional limit on the training part */
    if (resume && !cli_get(&train_cmd, "val-split")) {
        const char *saved = ts_model_get_meta(m, "train.val_split");
        if (saved) vs = atof(saved);
    }
    int64_t val_count = vs > 0 && vs < 1 ? (int64_t)(vs * (double)full->count + 0.5) : (int64_t)vs;
    if (val_count >= full->count) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "--val-split %g leaves no training samples (dataset has %lld)", vs, (long long)full->count);
        goto fail;
    }
    train = full;
    if (val_count > 0) {
        if ((st = ts_dataset_split(ctx, full, val_count, cfg.seed, &train, &val))) goto fail;
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)val_count);
        if ((st = ts_model_set_meta(ctx, m, "train.val_split", b))) goto fail;
    }
    if (resume && !cli_get(&train_cmd, "limit") && ts_model_get_meta(m, "train.limit"))
        limit = atol(ts_model_get_meta(m, "train.limit"));
    if ((st = cli_first_samples(ctx, train, limit, &limited))) goto fail;
    /* recorded whenever given: the split may already hold only the first `limit`
     * samples (read that way), and a resumed run must train on the same ones */
    if (limit > 0) {
        char b[32];
        snprintf(b, sizeof b, "%ld", limit);
        if ((st = ts_model_set_meta(ctx, m, "train.limit", b))) goto fail;
    }
    const ts_dataset *train_set = limited ? limited : train;

    ts_comm comm;
    if ((st = ts_trainer_create(ctx, m, train_set, val, &cfg, &tr))) goto fail;
    train_count = train_set->count;
prepared:
    dist_comm(dist, &comm); /* text trainers refuse several ranks */
    if ((st = ts_trainer_set_comm(ctx, tr, &comm))) goto fail;
    if (resume && (st = ts_checkpoint_restore(ctx, tr, resume))) goto fail;
    if (resume) {
        ts_train_summary done_before;
        ts_trainer_summary(tr, &done_before);
        if (done_before.epochs_done >= cfg.epochs)
            fprintf(stderr, "tessera train: note: %s has already trained %lld of %d epochs: nothing to train (give "
                    "--epochs more than %lld to go on)\n", resume, (long long)done_before.epochs_done, cfg.epochs,
                    (long long)done_before.epochs_done);
    }

    run.ctx = ctx;
    run.tr = tr;
    run.count = train_count;
    run.unit = texts.train ? "text" : "img";
    run.quiet = cli_get(&train_cmd, "quiet") != NULL;
    run.batch = cfg.batch;
    run.modular = cfg.modular;
    run.has_exit = ts_model_exit_info(m, &(ts_exit_info){0});
    run.checkpoint = ckpt;
    if (run.checkpoint) snprintf(run.pending, sizeof run.pending, "%s.pending", run.checkpoint);
    if (!cli_int(&train_cmd, "checkpoint-every", 0, 0, 1L << 40, &run.every)) {
        rc = EXIT_USAGE;
        goto done;
    }
    char n1[64], n2[64], n3[64];
    printf("training %s on %s: %s%s, %s, batch %d, %s",
           ts_model_get_meta(m, "arch") ? ts_model_get_meta(m, "arch") : "model", spec,
           cli_plural(n1, sizeof n1, (long long)train_count, "sample"), val || texts.val ? " (+ validation)" : "",
           cli_plural(n2, sizeof n2, cfg.epochs, "epoch"), cfg.batch,
           cli_plural(n3, sizeof n3, ts_ctx_get_threads(ctx), "thread"));
    if (cfg.modular) printf(", modular (alpha %g, beta %g)", cfg.mwt_alpha, cfg.mwt_beta);
    if (run.has_exit) printf(", early exit (loss weight %g, weight transfer %g of the epochs", cfg.exit_weight,
                             cfg.exit_transfer);
    if (run.has_exit && cfg.exit_distill > 0)
        printf(", distilled from the final head: weight %g, temperature %g", cfg.exit_distill, cfg.exit_temperature);
    if (run.has_exit) printf(")");
    if (dist->size > 1) printf(", data-parallel over %d ranks (batch %d in all)", dist->size, cfg.batch);
    printf("\n");
    fflush(stdout);
    g_watch.armed = 1;
    ts_train_hooks hooks = {on_step, on_epoch, &run};
    double t0 = cli_now();
    st = ts_trainer_run(ctx, tr, &hooks);
    g_watch.armed = 0;
    if (run.checkpoint) {
        if (st == TS_OK || st == TS_ECANCELED) {
            ts_status ps = promote_pending(&run); /* finished (or stopped): the newest state stands */
            if (ps && !run.ckpt_status) run.ckpt_status = ps;
        } else if (run.has_pending) {
            remove(run.pending); /* diverged or failed: never vouched for */
            run.has_pending = 0;
        }
    }
    if (run.ckpt_status) {
        st = run.ckpt_status;
        if (run.ckpt_error) ts_ctx_set_error(ctx, st, "%s", run.ckpt_error);
        goto fail;
    }
    if (st == TS_ECANCELED) {
        if (run.checkpoint) {
            ts_status cs = ts_checkpoint_save(ctx, tr, run.checkpoint);
            if (cs) {
                st = cs;
                goto fail;
            }
            fprintf(stderr, "tessera train: %s; resume with --resume %s\n", stop_reason(), run.checkpoint);
        } else if (lead) { /* the other ranks leave the saying to rank 0 */
            fprintf(stderr, "tessera train: %s (no --checkpoint given, progress not saved)\n", stop_reason());
        }
        rc = g_interrupted == SIGTERM ? EXIT_TERMINATED : EXIT_INTERRUPTED;
        goto done;
    }
    if (st) goto fail;
    double secs = cli_now() - t0;
    if (dist->size > 1 && run.steps > 0)
        printf("data-parallel: %d ranks; %.3f ms per step in allreduce (%lld sums over %lld steps, rank 0)\n",
               dist->size, 1e3 * dist->seconds / (double)run.steps, dist->calls, run.steps);
    if (!lead) { /* rank 0 writes the model; every rank shares the test split's batches */
        if (test && (st = test_images(ctx, m, test))) goto fail;
        rc = EXIT_OK;
        goto done;
    }
    print_summary(tr, &cfg);
    if ((st = ts_model_save(ctx, m, out))) goto fail;
    printf("saved %s (%.1fs of training)\n", out, secs);

    if (texts.test) {
        ts_eval_report ev;
        double whole, bleu;
        if ((st = ts_evaluate_text(ctx, m, texts.test, 256, &ev, &whole))) goto fail;
        char l[32];
        if (texts.test->task == TS_SEQ_TRANSLATE) {
            if ((st = ts_evaluate_bleu(ctx, m, texts.test, 1, 256, &bleu))) {
                ts_eval_report_free(&ev);
                goto fail;
            }
            printf("test BLEU %.2f (greedy), word accuracy with the reference's words before %.2f%%, on %lld "
                   "sentences\n", 100 * bleu, 100 * ev.top1, (long long)texts.test->count);
        } else if (texts.test->task == TS_SEQ_TAG)
            printf("test token accuracy: %.2f%% (whole sentences %.2f%%, loss %s) on %lld tokens\n", 100 * ev.top1,
                   100 * whole, cli_num(l, sizeof l, ev.loss, 4), (long long)ev.count);
        else
            printf("test accuracy: %.2f%% (top-5 %.2f%%, loss %s) on %lld texts\n", 100 * ev.top1, 100 * ev.top5,
                   cli_num(l, sizeof l, ev.loss, 4), (long long)ev.count);
        ts_eval_report_free(&ev);
    }
    if (test && (st = test_images(ctx, m, test))) goto fail;
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("train", ctx, st);
done:
    ts_file_lock_release(locks[0]);
    ts_file_lock_release(locks[1]);
    free(run.ckpt_error);
    train_log_close(&run.log);
    ts_trainer_free(tr);
    text_sets_free(&texts);
    ts_dataset_free(test);
    ts_dataset_free(limited);
    if (train != full) ts_dataset_free(train);
    ts_dataset_free(val);
    ts_dataset_free(full);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}
