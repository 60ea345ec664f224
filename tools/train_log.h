/* train --log DIR: the run's metrics as DIR/metrics.csv and DIR/metrics.jsonl, a row
 * per epoch and (--log-every N) one every N steps, written as training goes. */
#ifndef TS_TRAIN_LOG_H
#define TS_TRAIN_LOG_H

#include "cli.h"

typedef struct train_log {
    FILE *csv, *jsonl;
    long every;          /* a step row every N steps (0: epoch rows only) */
    int batch;           /* images per step */
    double last_t;       /* when the last step row (or the run) began */
    long long last_step; /* the optimizer step of the last step row */
    float lr;            /* the last step's learning rate */
} train_log;

/* Opens (creating DIR when missing) the two files; `append` (a resumed run) adds to
 * them. Returns TS_OK or TS_EIO with a message on ctx naming the file. */
ts_status train_log_open(ts_ctx *ctx, train_log *lg, const char *dir, int append, long every, int batch);
void train_log_close(train_log *lg);
/* After each step: remembers the rate and writes a step row every `every` steps. */
void train_log_step(train_log *lg, const ts_train_progress *p);
/* After each epoch (seconds: the epoch's, validation included; count: images trained).
 * modular, has_exit: the run's model is trained modular, has an early exit (their
 * columns are filled); the compressed-activation columns when r has them. */
void train_log_epoch(train_log *lg, const ts_epoch_report *r, long long step, long long count, int modular,
                     int has_exit);

#endif
