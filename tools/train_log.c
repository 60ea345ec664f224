/* train --log (train_log.h). Rows are flushed as they are written, so a run that is
 * killed leaves every row up to its last step or epoch. */
#include "train_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

static const char *const COLUMNS =
    "kind,epoch,step,loss,accuracy,lr,images_per_second,peak_memory_mib,val_loss,val_accuracy,seconds,"
    "cohesion,coupling,exit_loss,exit_accuracy,val_exit_accuracy,activations_kept_mib,activations_plain_mib\n";

static double peak_mib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0;
}

static FILE *open_in(ts_ctx *ctx, const char *dir, const char *name, int append, ts_status *st) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    const int had = stat(p, &sb) == 0 && sb.st_size > 0;
    FILE *f = fopen(p, append ? "a" : "w");
    if (!f) *st = ts_ctx_set_error(ctx, TS_EIO, "--log: %s: cannot write: %s", p, strerror(errno));
    else if (!strcmp(name, "metrics.csv") && !(append && had)) fputs(COLUMNS, f);
    return f;
}

ts_status train_log_open(ts_ctx *ctx, train_log *lg, const char *dir, int append, long every, int batch) {
    memset(lg, 0, sizeof *lg);
    lg->every = every;
    lg->batch = batch;
    lg->last_t = cli_now();
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ts_ctx_set_error(ctx, TS_EIO, "--log: %s: cannot create the folder: %s", dir, strerror(errno));
    ts_status st = TS_OK;
    lg->csv = open_in(ctx, dir, "metrics.csv", append, &st);
    if (!st) lg->jsonl = open_in(ctx, dir, "metrics.jsonl", append, &st);
    if (st) train_log_close(lg);
    return st;
}

void train_log_close(train_log *lg) {
    if (lg->csv) fclose(lg->csv);
    if (lg->jsonl) fclose(lg->jsonl);
    lg->csv = lg->jsonl = NULL;
}

/* A CSV cell: empty when absent (v < -0.5 marks "none" for the validation figures). */
static void csv_num(FILE *f, double v, int present) {
    if (present) fprintf(f, ",%.6g", v);
    else fputc(',', f);
}

typedef struct row {
    const char *kind;
    long long epoch, step;
    double loss, acc, lr, rate, mem, val_loss, val_acc, seconds; /* seconds < 0: none (steps) */
    int has_val;
    /* epoch rows only, each when the run has it: modular training's mask losses, the
     * early exit's figures (val_exit < 0: no validation set), compressed activations */
    int modular, has_exit, has_act;
    double cohesion, coupling, exit_loss, exit_acc, val_exit, act_kept, act_plain;
} row;

/* A float's value as its shortest decimal (0.1, not 0.1000000015 from the widening). */
static double as_float(double v) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", v);
    return strtod(b, NULL);
}

static void write_row(train_log *lg, const row *r) {
    fprintf(lg->csv, "%s,%lld,%lld", r->kind, r->epoch, r->step);
    csv_num(lg->csv, r->loss, 1);
    csv_num(lg->csv, r->acc, 1);
    csv_num(lg->csv, r->lr, 1);
    csv_num(lg->csv, r->rate, 1);
    csv_num(lg->csv, r->mem, 1);
    csv_num(lg->csv, r->val_loss, r->has_val);
    csv_num(lg->csv, r->val_acc, r->has_val);
    csv_num(lg->csv, r->seconds, r->seconds >= 0);
    csv_num(lg->csv, r->cohesion, r->modular);
    csv_num(lg->csv, r->coupling, r->modular);
    csv_num(lg->csv, r->exit_loss, r->has_exit);
    csv_num(lg->csv, r->exit_acc, r->has_exit);
    csv_num(lg->csv, r->val_exit, r->has_exit && r->val_exit >= 0);
    csv_num(lg->csv, r->act_kept, r->has_act);
    csv_num(lg->csv, r->act_plain, r->has_act);
    fputc('\n', lg->csv);
    fflush(lg->csv);
    json_out j;
    json_begin(&j, lg->jsonl);
    json_str(&j, "kind", r->kind);
    json_int(&j, "epoch", r->epoch);
    json_int(&j, "step", r->step);
    json_num(&j, "loss", r->loss);
    json_num(&j, "accuracy", r->acc);
    json_num(&j, "lr", as_float(r->lr));
    json_num(&j, "images_per_second", r->rate);
    json_num(&j, "peak_memory_mib", r->mem);
    if (r->has_val) {
        json_num(&j, "val_loss", r->val_loss);
        json_num(&j, "val_accuracy", r->val_acc);
    }
    if (r->seconds >= 0) json_num(&j, "seconds", r->seconds);
    if (r->modular) {
        json_num(&j, "cohesion", r->cohesion);
        json_num(&j, "coupling", r->coupling);
    }
    if (r->has_exit) {
        json_num(&j, "exit_loss", r->exit_loss);
        json_num(&j, "exit_accuracy", r->exit_acc);
        if (r->val_exit >= 0) json_num(&j, "val_exit_accuracy", r->val_exit);
    }
    if (r->has_act) {
        json_num(&j, "activations_kept_mib", r->act_kept);
        json_num(&j, "activations_plain_mib", r->act_plain);
    }
    json_end(&j);
}

void train_log_step(train_log *lg, const ts_train_progress *p) {
    lg->lr = p->lr;
    if (!lg->csv || lg->every <= 0 || p->step % lg->every) return;
    const double now = cli_now(), dt = now - lg->last_t;
    const long long steps = p->step - lg->last_step;
    row r = {.kind = "step", .epoch = p->epoch + 1, .step = p->step, .loss = p->loss, .acc = p->acc, .lr = p->lr,
             .rate = dt > 0 ? (double)(steps * lg->batch) / dt : 0, .mem = peak_mib(), .seconds = -1};
    write_row(lg, &r);
    lg->last_t = now;
    lg->last_step = p->step;
}

void train_log_epoch(train_log *lg, const ts_epoch_report *e, long long step, long long count, int modular,
                     int has_exit) {
    if (!lg->csv) return;
    row r = {.kind = "epoch", .epoch = e->epoch + 1, .step = step, .loss = e->train_loss, .acc = e->train_acc,
             .lr = lg->lr, .rate = e->seconds > 0 ? (double)count / e->seconds : 0, .mem = peak_mib(),
             .val_loss = e->val_loss, .val_acc = e->val_acc, .seconds = e->seconds, .has_val = e->val_acc >= 0,
             .modular = modular, .has_exit = has_exit, .has_act = e->act_kept_bytes > 0, .cohesion = e->cohesion,
             .coupling = e->coupling, .exit_loss = e->exit_loss, .exit_acc = e->exit_acc, .val_exit = e->val_exit_acc,
             .act_kept = e->act_kept_bytes / 1048576.0, .act_plain = e->act_kept_plain_bytes / 1048576.0};
    write_row(lg, &r);
}
