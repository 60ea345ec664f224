/* Internal core: context, errors, allocation, RNG, shapes.
 * Everything under src/ includes this; it includes nothing of tessera's. */
#ifndef TS_CORE_H
#define TS_CORE_H

#include "tessera.h"

#include <stddef.h>
#include <stdint.h>

/* printf-style checking for the error setter */
#if defined(__GNUC__)
#define TS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TS_PRINTF(a, b)
#endif

#define TS_ERRMSG_MAX 512

struct ts_ctx {
    ts_status status;            /* last error status (TS_OK when none) */
    char errmsg[TS_ERRMSG_MAX];  /* last error message, when it fits */
    char *errmsg_long;           /* a longer one, owned (NULL when errmsg holds it) */
    ts_note_fn note;             /* where notes go (ts_ctx_set_note_hook), or NULL */
    void *note_user;
    int force;                   /* replace write-protected outputs (ts_ctx_set_force) */
    int nthreads;                /* OpenMP threads used by kernels */
    ts_backend backend;          /* which kernels the layers call */
    int constant_time;           /* inference without value-dependent timing (docs/security.md) */
    void *dnnl;                  /* oneDNN engine/stream, owned (ops_dnnl.c) */
    int bf16;                    /* convolutions in bfloat16 mixed precision (ts_ctx_set_bf16) */
};

/* Records an error on ctx and returns status, so that callers write
 * `return ts_fail(ctx, TS_EFORMAT, "%s: ...", path);` */
ts_status ts_fail(ts_ctx *ctx, ts_status status, const char *fmt, ...) TS_PRINTF(3, 4);
/* Passes a one-line note to the context's note hook (nothing when there is none). */
void ts_note(ts_ctx *ctx, const char *fmt, ...) TS_PRINTF(2, 3);

/* Checked allocation: on failure records TS_ENOMEM on ctx with `what`, returns NULL.
 * Memory is 64-byte aligned; free with ts_free. */
void *ts_alloc(ts_ctx *ctx, size_t bytes, const char *what);
void *ts_calloc(ts_ctx *ctx, size_t bytes, const char *what);
void ts_free(void *p);

/* Overflow-checked size arithmetic: return 0 on overflow. */
int ts_mul_size(size_t a, size_t b, size_t *out);
int ts_add_size(size_t a, size_t b, size_t *out);

/* Deterministic RNG (xoshiro256**, seeded with splitmix64). State is plain data so
 * it can be saved in checkpoints. */
typedef struct ts_rng {
    uint64_t s[4];
} ts_rng;

void ts_rng_seed(ts_rng *r, uint64_t seed);
uint64_t ts_rng_next(ts_rng *r);
/* uniform in [0, 1) with 24 random bits, exact in float */
float ts_rng_uniform(ts_rng *r);
/* uniform integer in [0, n) without modulo bias; n > 0 */
uint64_t ts_rng_below(ts_rng *r, uint64_t n);
/* standard normal (Box-Muller, no cached second value so state stays plain) */
float ts_rng_normal(ts_rng *r);

/* Floating-point environment of constant-time inference (fpenv.c): flush-to-zero,
 * denormals-are-zero and round-to-nearest on the calling thread and on the OpenMP
 * threads of a team of `nthreads`, until ts_fpenv_restore puts back what was there. */
typedef struct ts_fpenv {
    unsigned int saved; /* the calling thread's MXCSR (x86), 0 elsewhere */
    int nthreads;
} ts_fpenv;
void ts_fpenv_constant_time(ts_fpenv *env, int nthreads);
void ts_fpenv_restore(const ts_fpenv *env);

/* Number of threads kernels should use for this ctx (>= 1). */
static inline int ts_ctx_threads(const ts_ctx *ctx) { return ctx && ctx->nthreads > 0 ? ctx->nthreads : 1; }

#endif
