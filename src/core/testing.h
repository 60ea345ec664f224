/* Functions of libtessera that only tests need. They are not in tessera.h, so the
 * public libtessera.a hides them; tests link libtessera-internal.a, which keeps
 * every symbol. Uses only public types, so any layer may define what it declares. */
#ifndef TS_TESTING_H
#define TS_TESTING_H

#include "tessera.h"

/* Optimizer updates done so far. */
int64_t ts_optimizer_steps(const ts_optimizer *opt);
/* Completed epochs, and optimizer steps done, of a trainer (after a resume: where it
 * continues from). */
int64_t ts_trainer_epoch(const ts_trainer *tr);
int64_t ts_trainer_step(const ts_trainer *tr);

/* Writes a float32 ONNX TensorProto of the given dims (rank <= 8): test data for the
 * importer and for ts_onnx_tensor_load. */
ts_status ts_onnx_tensor_save(ts_ctx *ctx, const char *path, const char *name, const int64_t *dims, int rank,
                              const float *data);

#endif
