/* Internal core: context, errors, allocation, RNG, shapes.
 * Everything under src/ includes this; it includes nothing of tessera's. */
#ifndef TS_CORE_H
#define TS_CORE_H

#include "tessera.h"

#include <pthread.h>
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
    int threads_started;         /* OpenMP team size started on threads_owner (threads.c) */
    pthread_t threads_owner;     /* the calling thread that team belongs to */
    ts_backend backend;          /* which kernels the layers call */
    int constant_time;           /* inference without value-dependent timing (docs/security.md) */
    void *dnnl;                  /* oneDNN engine/stream, owned (ops/dnnl_backend.c) */
    void (*dnnl_release)(void *dnnl); /* frees dnnl: set by ops along with it */
    int bf16;                    /* convolutions in bfloat16 mixed precision (ts_ctx_set_bf16) */
    int winograd;                /* where Winograd convolutions run (ts_winograd, ts_ctx_set_winograd) */
    int image_shape[3];          /* what image folders are brought to (ts_ctx_set_image_shape) */
    ts_comm comm;                /* the ranks some calls spread over (ts_ctx_set_comm); size 1: alone */
};

/* Internal invariants (SQLite's habit): TS_ASSERT(cond) states an assumption the code
 * relies on. In the sanitizer build (make SAN=1 defines TS_DEBUG_ASSERT) a false
 * condition prints file:line and the condition to stderr and aborts: a bug in tessera,
 * never a user's error, which gets a ts_status. Elsewhere the condition is not
 * evaluated (only type-checked), so the library still never prints or aborts. */
#ifdef TS_DEBUG_ASSERT
#define TS_ASSERT(cond) ((cond) ? (void)0 : ts_assert_fail(__FILE__, __LINE__, #cond))
_Noreturn void ts_assert_fail(const char *file, int line, const char *cond);
#else
#define TS_ASSERT(cond) ((void)sizeof(!(cond)))
#endif

/* Records an error on ctx and returns status, so that callers write
 * `return ts_fail(ctx, TS_EFORMAT, "%s: ...", path);` */
ts_status ts_fail(ts_ctx *ctx, ts_status status, const char *fmt, ...) TS_PRINTF(3, 4);
/* Passes a one-line note to the context's note hook (nothing when there is none). */
void ts_note(ts_ctx *ctx, const char *fmt, ...) TS_PRINTF(2, 3);

/* Work spread over the context's ranks (comm.c, ts_ctx_set_comm). Whole batches go
 * to ranks in order: of nb batches, rank r runs [nb r / R, nb (r + 1) / R), so each
 * batch is the one a lone run makes and gives the same bits. */
static inline int ctx_ranks(const ts_ctx *ctx) { return ctx->comm.size > 1 ? ctx->comm.size : 1; }
static inline int ctx_rank(const ts_ctx *ctx) { return ctx->comm.size > 1 ? ctx->comm.rank : 0; }
/* Rank r's part [*lo, *hi) of n items (batches, chromosomes...). */
void ctx_share(const ts_ctx *ctx, int r, int64_t n, int64_t *lo, int64_t *hi);
/* Every rank's rows: rank r computed rows [lo_r, hi_r) of (n, row_bytes) rows (its
 * ctx_share of n, or of the batches covering them when batch > 0: batch rows per
 * batch) in place in `rows`; afterwards every rank holds all n. `what` names the
 * work in an error. Alone: nothing to do. */
ts_status ctx_gather_rows(ts_ctx *ctx, void *rows, int64_t n, int batch, size_t row_bytes, const char *what);
/* The rows of sample range [lo, hi) this rank computes when n rows go in batches of
 * `batch` (the whole batches ctx_share gives it). */
void ctx_batch_rows(const ts_ctx *ctx, int64_t n, int batch, int64_t *lo, int64_t *hi);

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

/* Seconds on a monotonic clock (clock.c), for the durations reports give. */
double ts_monotonic_s(void);

/* Floating-point environment of constant-time inference (fpenv.c): flush-to-zero,
 * denormals-are-zero and round-to-nearest on the calling thread and on the OpenMP
 * threads of a team of `nthreads`, until ts_fpenv_restore puts back what was there. */
typedef struct ts_fpenv {
    unsigned int saved; /* the calling thread's MXCSR (x86), 0 elsewhere */
    int nthreads;
} ts_fpenv;
void ts_fpenv_constant_time(ts_fpenv *env, int nthreads);
void ts_fpenv_restore(const ts_fpenv *env);

/* The one seed mixer: splitmix64's finalizer (Steele, Lea and Flood), used to seed
 * the RNG and to derive independent seeds. ts_splitmix64(z) is the value splitmix64
 * returns from state z; ts_mix64 is the finalizer alone. */
#define TS_GOLDEN64 0x9e3779b97f4a7c15ULL
static inline uint64_t ts_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline uint64_t ts_splitmix64(uint64_t z) { return ts_mix64(z + TS_GOLDEN64); }

/* The one FNV-1a (64-bit): h continues from TS_FNV1A_INIT over n bytes at p. */
#define TS_FNV1A_INIT 0xcbf29ce484222325ULL
static inline uint64_t ts_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Number of threads kernels should use for this ctx (>= 1). */
static inline int ts_ctx_threads(const ts_ctx *ctx) { return ctx && ctx->nthreads > 0 ? ctx->nthreads : 1; }

/* Most threads a ctx may use (ts_ctx_set_threads). */
#define TS_THREADS_MAX 1024
/* Makes sure the calling thread's OpenMP team of n threads exists, creating it now
 * when it does not (threads.c): libgomp exits the process when it cannot create a
 * thread inside a region, so the threads are tried here first and a failure is
 * TS_ENOMEM on ctx. Cheap once done for this ctx, calling thread and size. */
ts_status ts_threads_start(ts_ctx *ctx, int n);

/* A growable string (strbuf.c); zero-initialize, append, then take or free. */
typedef struct ts_strbuf {
    char *s;      /* NUL-terminated once anything was appended */
    size_t len, cap;
    int failed;   /* an allocation failed: appends stop, take returns NULL */
} ts_strbuf;
void ts_strbuf_printf(ts_strbuf *b, const char *fmt, ...) TS_PRINTF(2, 3);
/* The string (malloc'ed, "" when nothing was appended; NULL if an allocation
 * failed); the buffer is empty again after. */
char *ts_strbuf_take(ts_strbuf *b);
void ts_strbuf_free(ts_strbuf *b);

#endif
