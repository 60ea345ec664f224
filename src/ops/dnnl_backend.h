/* Internal to src/ops: the oneDNN engine/stream owned by a ts_ctx, and a small
 * "job" that owns every oneDNN object one kernel call creates, so that each
 * *_dnnl kernel is written as straight-line code and still frees everything on
 * every path:
 *
 *     dnnl_job job;
 *     if (dnnl_job_begin(&job, ctx, "convolution forward") != TS_OK) return job.status;
 *     dnnl_memory_desc_t md = dnnl_job_md(&job, 4, dims, dnnl_nchw);
 *     dnnl_memory_t src = dnnl_job_memory(&job, &md, (void *)in);
 *     ...                        // every helper is a no-op once one has failed
 *     return dnnl_job_end(&job); // waits, destroys everything, returns the first error
 *
 * Every primitive is created with its scratchpad in user mode and gets the ctx's
 * scratchpad buffer (grown by tessera's checked allocation) when it executes, so
 * oneDNN allocates no memory of its own where running out of it would crash the
 * process; a buffer that cannot be allocated is TS_ENOMEM like any other.
 *
 * A primitive descriptor that oneDNN cannot implement makes the job end with
 * TS_EUNSUPPORTED and no message (the dispatcher then falls back to the _ref
 * kernel); every other oneDNN failure is recorded on ctx with ts_fail, naming the
 * primitive and the call.
 */
#ifndef TS_OPS_DNNL_BACKEND_H
#define TS_OPS_DNNL_BACKEND_H

#include "ops.h"

#include <dnnl.h>

#define DNNL_JOB_MAX_MEM 48  /* memory objects of one job */
#define DNNL_JOB_MAX_SLOT 24 /* temporary buffers of one job (an RNN backward takes up to 22) */

#define DNNL_LANES 16 /* slices of one batch run side by side at most */

/* What ctx->dnnl points to: created on first use, freed through ctx->dnnl_release. */
typedef struct ops_dnnl {
    dnnl_engine_t engine; /* CPU engine 0 */
    dnnl_stream_t stream; /* in-order CPU stream on it */
    /* Grow-only buffers for the blocked-layout copies a job makes: the k-th
     * allocation of a job uses slot k. Jobs run one at a time per ctx, so the
     * buffers are reused across calls instead of malloc'ed (and page-faulted in)
     * on every step. */
    void *slot[DNNL_JOB_MAX_SLOT];
    size_t slot_bytes[DNNL_JOB_MAX_SLOT];
    /* Grow-only scratchpad shared by every primitive of a job: they run one after
     * the other on the in-order stream. */
    void *scratch;
    size_t scratch_bytes;
    /* Contexts of one thread each, for kernels that split a batch across the ctx's
     * threads themselves (dnnl_lanes): each has its own stream, buffers and error. */
    ts_ctx *lane[DNNL_LANES];
} ops_dnnl;

#define DNNL_JOB_MAX_PD 12
#define DNNL_JOB_MAX_ARGS 20 /* arguments of one execution, the scratchpad not counted */
#define DNNL_JOB_MAX_PRIM 12

typedef struct dnnl_job {
    ts_ctx *ctx;
    ops_dnnl *dnnl;
    const char *what;    /* primitive named in error messages: "convolution forward" */
    ts_status status;    /* first failure; helpers do nothing once it is set */
    int nmem, npd, nprim;
    int nslot;           /* slots taken by dnnl_job_memory_alloc in this job */
    dnnl_primitive_attr_t attr; /* plain attributes, scratchpad in user mode (created on first use) */
    int limited;         /* the address space is limited: probe the headroom (dnnl_job_headroom) */
    dnnl_memory_t mem[DNNL_JOB_MAX_MEM];
    dnnl_primitive_desc_t pd[DNNL_JOB_MAX_PD];
    dnnl_primitive_t prim[DNNL_JOB_MAX_PRIM];
} dnnl_job;

/* Gets (creating on first use) the ctx's engine and stream and sets the OpenMP
 * thread count to ts_ctx_threads(ctx). Returns TS_OK or an error on ctx. */
ts_status dnnl_job_begin(dnnl_job *job, ts_ctx *ctx, const char *what);
/* The first n (<= DNNL_LANES) lane contexts of ctx, made on first use, into lane[]:
 * one thread each, with ctx's precision settings (bf16, Winograd, backend) copied at
 * every call. A kernel runs one slice of its batch on each, in an OpenMP region of n
 * threads (a job each), then moves the first lane's error, if any, to ctx
 * (dnnl_lanes_status). oneDNN runs single-threaded inside the region, so the slices
 * share no state and the region has no barrier per step. Called outside parallel
 * regions; TS_OK or an error on ctx. */
ts_status dnnl_lanes(ts_ctx *ctx, int n, ts_ctx **lane);
/* The first failure of lanes 0..n-1 (st[l] their statuses) moved to ctx, lane order;
 * TS_EUNSUPPORTED (no message) when that is the only failure; every lane's error is
 * cleared. */
ts_status dnnl_lanes_status(ts_ctx *ctx, int n, ts_ctx *const *lane, const ts_status *st);

/* Waits for the stream, destroys every object of the job, returns job->status. */
ts_status dnnl_job_end(dnnl_job *job);

/* Under a limit on the address space, makes sure oneDNN has room for the memory it
 * allocates by itself while creating and first running a primitive; TS_ENOMEM when
 * not. Done by dnnl_job_begin and before each primitive dnnl_job_execute creates. */
void dnnl_job_headroom(dnnl_job *job);

/* Records a failed oneDNN call (`call` names it); returns 1 when st is success. */
int dnnl_job_check(dnnl_job *job, dnnl_status_t st, const char *call);
/* Records an error that is not a oneDNN status (e.g. an inconsistent case). */
void dnnl_job_fail(dnnl_job *job, ts_status status, const char *reason);

/* Plain memory descriptor of f32 data; on failure records it and returns a zeroed md. */
dnnl_memory_desc_t dnnl_job_md(dnnl_job *job, int ndims, const dnnl_dim_t *dims, dnnl_format_tag_t tag);

/* Memory object over the caller's buffer `data` (not owned; const inputs are cast,
 * oneDNN only reads them); a NULL data is an error. Returns NULL once the job has
 * failed. */
dnnl_memory_t dnnl_job_memory(dnnl_job *job, const dnnl_memory_desc_t *md, void *data);
/* Memory object over a temporary buffer of the ctx (a slot), valid until the job ends. */
dnnl_memory_t dnnl_job_memory_alloc(dnnl_job *job, const dnnl_memory_desc_t *md);

/* Grows *buf (64-byte aligned, contents dropped) to at least `bytes`, *cap its size;
 * on failure records TS_ENOMEM naming `what` and returns 0. */
int dnnl_job_grow(dnnl_job *job, void **buf, size_t *cap, size_t bytes, const char *what);

/* New primitive attributes with the scratchpad in user mode (the caller destroys
 * them); NULL once the job has failed. */
dnnl_primitive_attr_t dnnl_job_attr_create(dnnl_job *job);
/* Bytes of scratchpad primitive descriptor pd wants (0: none). */
size_t dnnl_pd_scratchpad_size(const_dnnl_primitive_desc_t pd);

/* Primitive descriptor for an op descriptor; oneDNN's "unimplemented" ends the job
 * with TS_EUNSUPPORTED (no message) unless `required`, when it is an error. */
dnnl_primitive_desc_t dnnl_job_pd(dnnl_job *job, const_dnnl_op_desc_t op_desc, const_dnnl_primitive_desc_t hint,
                                  int required);
/* The same with primitive attributes (post-ops) made by dnnl_job_attr_create; attr
 * stays the caller's. */
dnnl_primitive_desc_t dnnl_job_pd_attr(dnnl_job *job, const_dnnl_op_desc_t op_desc, const_dnnl_primitive_attr_t attr,
                                       const_dnnl_primitive_desc_t hint, int required);
/* md of a pd (DNNL queries: dnnl_query_src_md, ...); NULL once the job has failed. */
const dnnl_memory_desc_t *dnnl_job_query_md(dnnl_job *job, const_dnnl_primitive_desc_t pd, dnnl_query_t what);

/* Creates the primitive of pd and executes it on the stream, with the ctx's
 * scratchpad (grown to what pd wants) as DNNL_ARG_SCRATCHPAD. */
void dnnl_job_execute(dnnl_job *job, const_dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args);

/* Returns `user` when its layout is `want`, else a job-owned memory of layout `want`
 * (filled from `user` by a reorder when `copy_in`). */
dnnl_memory_t dnnl_job_layout(dnnl_job *job, dnnl_memory_t user, const dnnl_memory_desc_t *want, int copy_in);
/* Reorders src into dst (no-op when they are the same object). */
void dnnl_job_reorder(dnnl_job *job, dnnl_memory_t src, dnnl_memory_t dst);

#endif
