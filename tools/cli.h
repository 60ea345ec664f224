/* The tessera command line: shared option parsing, progress display, exit codes. */
#ifndef TS_CLI_H
#define TS_CLI_H

#include "tessera.h"

#include <stdio.h>

#include "cli_json.h"

/* Exit codes (docs/cli.md): 0 success; 2 usage; otherwise by failure kind. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_OTHER = 1,
    EXIT_USAGE = 2,
    EXIT_IO = 3,
    EXIT_FORMAT = 4,
    EXIT_UNSUPPORTED = 5,
    EXIT_SHAPE = 6,
    EXIT_NOTFOUND = 7,
    EXIT_DIVERGED = 8,
    EXIT_NOMEM = 10,
    EXIT_INTERRUPTED = 130,  /* 128 + SIGINT */
    EXIT_TERMINATED = 143,   /* 128 + SIGTERM */
};

int cli_exit_code(ts_status st);

/* The --json option, in the commands that have it (cli_json.h). */
#define CLI_OPT_JSON {"json", NULL, "one JSON document on stdout with every figure, instead of the text", NULL}

typedef struct cli_opt {
    const char *name;   /* without the leading -- */
    const char *arg;    /* argument placeholder, NULL for a flag */
    const char *help;
    const char *value;  /* parsed value (flags: "1") */
} cli_opt;

typedef struct cli_cmd {
    const char *name;
    const char *usage;       /* "MODEL [options]" */
    const char *summary;
    cli_opt *opts;
    int nopts;
} cli_cmd;

/* Parses argv (after the subcommand name). Returns -1 when --help was printed
 * (exit 0), EXIT_USAGE after printing an error, 0 on success. Positional
 * arguments are collected in pos (at most maxpos). */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, char **pos, int *npos, int maxpos);
void cli_help(const cli_cmd *cmd, FILE *f);
const char *cli_get(const cli_cmd *cmd, const char *name);
/* Typed getters: print "tessera CMD: --opt: ..." and return 0 on a bad value. */
int cli_int(const cli_cmd *cmd, const char *name, long def, long lo, long hi, long *out);
int cli_float(const cli_cmd *cmd, const char *name, double def, double lo, double hi, double *out);
/* --compress-activations EB|auto: *eb the bound (-1 when not given; auto: the adaptive
 * mode's start, 0.01) and *adaptive; 0 (after one line on stderr) when malformed. */
int cli_compress_activations(const cli_cmd *cmd, double *eb, int *adaptive);
/* --name AxBxC as a shape: 1 when absent (out->ndim 0) or parsed, 0 after printing
 * "tessera CMD: --name: 'v' is not like 3x32x32" (then exit EXIT_USAGE). */
int cli_shape(const cli_cmd *cmd, const char *name, ts_shape *out);

/* Reports a library failure: "tessera CMD: message" and returns the exit code. */
int cli_fail(const char *cmd, ts_ctx *ctx, ts_status st);

/* Progress bar on stderr with rate and ETA; redrawn in place on a terminal,
 * a line every 10% otherwise. items_per_unit <= 0: no rate (the steps are not images). */
typedef struct progress {
    double start, last;
    int tty;
    int last_decile;
    long long base; /* steps already done at progress_start: the rate counts only later ones */
    const char *unit; /* what the rate counts ("img" when NULL) */
} progress;

double cli_now(void);
void progress_start(progress *p);
void progress_update(progress *p, const char *label, long long done, long long total, const char *extra,
                     double items_per_unit);
void progress_end(progress *p);

/* Shared setup: threads and backend from options. */
int cli_setup_ctx(const cli_cmd *cmd, ts_ctx *ctx);
/* Notes from the library printed as "tessera CMD: note: ..."; --force, when the
 * command has it, lets outputs the user could not write be replaced. */
void cli_setup_files(const cli_cmd *cmd, ts_ctx *ctx);
/* Whether a and b name the same file: the same device and inode, or, when neither
 * exists, the same name in the same folder. */
int cli_same_file(const char *a, const char *b);
/* Refuses an output (`what` is how the user gave it: "--out") that is the same file
 * as one of the inputs (NULL entries and inputs that do not exist are skipped):
 * prints one line and returns EXIT_USAGE; 0 when none is. */
int cli_refuse_same(const cli_cmd *cmd, const char *what, const char *out, const char *const *inputs, int n);
/* --bf16 (after cli_setup_ctx): mixed precision, refused with --constant-time or
 * --backend ref, and where oneDNN has no bf16 kernels. Returns 0 or an exit code. */
int cli_setup_bf16(const cli_cmd *cmd, ts_ctx *ctx);
/* Loads a dataset split; limit > 0 keeps only its first `limit` samples. */
ts_status cli_load_dataset(ts_ctx *ctx, const char *spec, ts_split split, const char *dir, long limit, ts_dataset **out);
/* Where known dataset names are looked up: --data-dir when given; else, when the data
 * is the model's own (no --data), the folder its training recorded ("data.dir");
 * else NULL (the standard places). */
const char *cli_data_dir(const cli_cmd *cmd, const ts_model *m);
/* The first `limit` samples of ds as a new dataset (NULL and TS_OK when limit
 * does not cut anything). */
ts_status cli_first_samples(ts_ctx *ctx, const ts_dataset *ds, long limit, ts_dataset **out);
/* A loss or other figure for people: v with `decimals` decimals, or in %g style
 * (4 significant digits) when it is that large (or not finite): never 19 digits. */
const char *cli_num(char *buf, size_t n, double v, int decimals);
/* "1 epoch", "2 epochs", "2 classes": count and the noun, plural unless count is 1. */
const char *cli_plural(char *buf, size_t n, long long count, const char *noun);
/* A decomposition method's name as --method takes it. */
const char *cli_method_name(ts_decompose_method m);
/* 1 when s ends with suffix. */
int cli_ends_with(const char *s, const char *suffix);
/* A fixed pseudo-random batch of n inputs for m (x: n x its input numel):
 * normalized-image-like values in [-1, 1), or for a sequence model token ids every
 * embedding has a row for (1..V-1: no padding). Returns V (0: an image model). */
int64_t cli_random_batch(const ts_model *m, float *x, int64_t n);
/* The part of a fused chain's name after its head, as the last inference ran it:
 * "+batchnorm+relu" (empty when the head runs alone). */
void cli_fused_kinds(const ts_model *m, int head, char *buf, size_t cap);
/* info --profile (info_profile.c): per layer MACs, bytes moved, time, GFLOP/s and
 * arithmetic intensity against the machine's measured roofline. */
int info_profile(ts_ctx *ctx, ts_model *m, long batch, long iters, json_out *J);
/* What cli_load_model accepts besides .tsr models and checkpoints. */
enum { CLI_LOAD_ONNX = 1, CLI_LOAD_MODULE = 2 };
/* Loads the MODEL argument of a command: a .tsr model or checkpoint; with
 * CLI_LOAD_ONNX an .onnx file, imported on the fly; with CLI_LOAD_MODULE a .tsm module
 * as the one-output model ts_module_model makes (its score). Image folders read
 * afterwards are brought to the model's input shape (cli_set_image_shape). */
ts_status cli_load_model(ts_ctx *ctx, const char *path, int accept, ts_model **out);
/* An image input shape (C x H x W, C 1 or 3) becomes the context's image shape, what
 * image folders are brought to (ts_ctx_set_image_shape); any other shape is ignored. */
void cli_set_image_shape(ts_ctx *ctx, ts_shape in);
/* Class name i from the model's metadata (or the number). */
const char *cli_class_name(const ts_model *m, int i, char *buf, size_t n);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_zoo(int argc, char **argv);
int cmd_decompose(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_compose(int argc, char **argv);
int cmd_patch(int argc, char **argv);
int cmd_replace(int argc, char **argv);
int cmd_reuse(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
