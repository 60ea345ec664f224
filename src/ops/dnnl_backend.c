/* oneDNN plumbing shared by the *_dnnl kernels: the ctx-owned engine and stream,
 * and the dnnl_job that owns every object a kernel call creates (dnnl_backend.h). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "dnnl_backend.h"

#include <dnnl_debug.h>
#include <omp.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

/* ctx->dnnl_release: core frees the backend state through it, knowing nothing of oneDNN. */
static void ops_dnnl_release(void *dnnl) {
    ops_dnnl *d = dnnl;
    if (!d) return;
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    for (int i = 0; i < DNNL_JOB_MAX_SLOT; i++) free(d->slot[i]);
    free(d->scratch);
    for (int i = 0; i < DNNL_LANES; i++) ts_ctx_free(d->lane[i]);
    free(d);
}

/* Status of a failed oneDNN call. "unimplemented" is a fallback signal only where a
 * primitive descriptor is created (dnnl_job_pd); anywhere else it is a failure. */
static ts_status dnnl_error_status(dnnl_status_t st) { return st == dnnl_out_of_memory ? TS_ENOMEM : TS_EINVAL; }

/* The ctx's engine and stream, created on first use. */
static ts_status dnnl_get(ts_ctx *ctx, ops_dnnl **out) {
    if (ctx->dnnl) {
        *out = ctx->dnnl;
        return TS_OK;
    }
    ops_dnnl *d = calloc(1, sizeof *d);
    if (!d) return ts_fail(ctx, TS_ENOMEM, "oneDNN engine: out of memory for the backend state");
    dnnl_status_t st = dnnl_engine_create(&d->engine, dnnl_cpu, 0);
    if (st != dnnl_success) {
        ops_dnnl_release(d);
        return ts_fail(ctx, dnnl_error_status(st),
                       "oneDNN engine: dnnl_engine_create(cpu, 0) failed: %s", dnnl_status2str(st));
    }
    st = dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        ops_dnnl_release(d);
        return ts_fail(ctx, dnnl_error_status(st),
                       "oneDNN stream: dnnl_stream_create failed: %s", dnnl_status2str(st));
    }
    ctx->dnnl = d;
    ctx->dnnl_release = ops_dnnl_release;
    *out = d;
    return TS_OK;
}

/* oneDNN also allocates memory of its own while it creates a primitive and first runs
 * it (JIT code buffers, C++ objects): a failure there is std::bad_alloc thrown through
 * the C API or a write through a null code buffer, either of which ends the process.
 * That memory cannot be given to it, so under a limit on the address space (ulimit -v
 * or -d) a job first makes sure that much could still be mapped and fails with
 * TS_ENOMEM when it could not. Measured: ResNet-20 at batch 128 needs about 22 MB of
 * it in all (crashes under limits up to 22 MB above the one where tessera's own
 * allocations start to fail). Without a limit nothing is probed. */
#define DNNL_HEADROOM ((size_t)48 << 20)

static int address_space_limited(void) {
    struct rlimit as, data;
    return (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) ||
           (getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur != RLIM_INFINITY);
}

void dnnl_job_headroom(dnnl_job *job) {
    if (job->status != TS_OK || !job->limited) return;
    void *p = mmap(NULL, DNNL_HEADROOM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        char reason[128];
        snprintf(reason, sizeof reason, "out of memory: less than the %zu MB oneDNN may need of its own are left",
                 DNNL_HEADROOM >> 20);
        dnnl_job_fail(job, TS_ENOMEM, reason);
        return;
    }
    munmap(p, DNNL_HEADROOM);
}

ts_status dnnl_job_begin(dnnl_job *job, ts_ctx *ctx, const char *what) {
    memset(job, 0, sizeof *job);
    job->ctx = ctx;
    job->what = what;
    if (!ctx) {
        job->status = TS_EINVAL;
        return TS_EINVAL;
    }
    /* oneDNN (OpenMP build) sizes both its blocking decisions at creation and its
     * parallel regions at execution by the calling thread's OpenMP thread count. */
    omp_set_num_threads(ts_ctx_threads(ctx));
    /* the team oneDNN's regions will use, started where a failure can be reported */
    job->status = ts_threads_start(ctx, ts_ctx_threads(ctx));
    if (job->status == TS_OK) job->status = dnnl_get(ctx, &job->dnnl);
    job->limited = address_space_limited();
    dnnl_job_headroom(job);
    return job->status;
}

ts_status dnnl_lanes(ts_ctx *ctx, int n, ts_ctx **lane) {
    if (n < 1 || n > DNNL_LANES) return ts_fail(ctx, TS_EINVAL, "internal: %d lanes (1..%d)", n, DNNL_LANES);
    ops_dnnl *d = NULL;
    ts_status st = dnnl_get(ctx, &d);
    /* the region's team, started where a failure can be reported (threads.c) */
    if (!st) st = ts_threads_start(ctx, n);
    for (int i = 0; i < n && !st; i++) {
        if (!d->lane[i] && ts_ctx_create(&d->lane[i]) != TS_OK)
            return ts_fail(ctx, TS_ENOMEM, "oneDNN: out of memory for a thread's context");
        ts_ctx *l = d->lane[i];
        l->backend = ctx->backend;
        l->constant_time = ctx->constant_time;
        l->bf16 = ctx->bf16;
        l->winograd = ctx->winograd;
        lane[i] = l;
    }
    return st;
}

ts_status dnnl_lanes_status(ts_ctx *ctx, int n, ts_ctx *const *lane, const ts_status *st) {
    ts_status first = TS_OK;
    for (int i = 0; i < n; i++) {
        if (st[i] && st[i] != TS_EUNSUPPORTED && (!first || first == TS_EUNSUPPORTED))
            first = ts_fail(ctx, st[i], "%s", ts_ctx_error(lane[i]));
        else if (st[i] == TS_EUNSUPPORTED && !first)
            first = TS_EUNSUPPORTED;
        ts_ctx_clear_error(lane[i]);
    }
    return first;
}

void dnnl_job_fail(dnnl_job *job, ts_status status, const char *reason) {
    if (job->status != TS_OK) return;
    job->status = ts_fail(job->ctx, status, "oneDNN %s: %s", job->what, reason);
}

int dnnl_job_check(dnnl_job *job, dnnl_status_t st, const char *call) {
    if (st == dnnl_success) return 1;
    if (job->status != TS_OK) return 0;
    job->status = ts_fail(job->ctx, dnnl_error_status(st), "oneDNN %s: %s failed: %s", job->what, call, dnnl_status2str(st));
    return 0;
}

dnnl_memory_desc_t dnnl_job_md(dnnl_job *job, int ndims, const dnnl_dim_t *dims, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    memset(&md, 0, sizeof md);
    if (job->status != TS_OK) return md;
    dnnl_job_check(job, dnnl_memory_desc_init_by_tag(&md, ndims, dims, dnnl_f32, tag), "dnnl_memory_desc_init_by_tag");
    return md;
}

/* data: the caller's buffer, or DNNL_MEMORY_ALLOCATE */
static dnnl_memory_t job_memory(dnnl_job *job, const dnnl_memory_desc_t *md, void *data) {
    if (job->status != TS_OK) return NULL;
    if (job->nmem == DNNL_JOB_MAX_MEM) {
        dnnl_job_fail(job, TS_EINVAL, "internal: too many memory objects in one call");
        return NULL;
    }
    dnnl_memory_t m = NULL;
    if (!dnnl_job_check(job, dnnl_memory_create(&m, md, job->dnnl->engine, data), "dnnl_memory_create")) return NULL;
    job->mem[job->nmem++] = m;
    return m;
}

dnnl_memory_t dnnl_job_memory(dnnl_job *job, const dnnl_memory_desc_t *md, void *data) {
    if (job->status == TS_OK && !data) {
        dnnl_job_fail(job, TS_EINVAL, "a required tensor pointer is NULL");
        return NULL;
    }
    return job_memory(job, md, data);
}

int dnnl_job_grow(dnnl_job *job, void **buf, size_t *cap, size_t bytes, const char *what) {
    if (job->status != TS_OK) return 0;
    if (bytes <= *cap) return 1;
    ts_free(*buf); /* first, so that the old and the new buffer are never both held */
    *buf = NULL;
    *cap = 0;
    size_t rounded;
    if (!ts_add_size(bytes, 63, &rounded) || !(*buf = ts_alloc(NULL, rounded & ~(size_t)63, what))) {
        char reason[160];
        snprintf(reason, sizeof reason, "out of memory for %s (%zu bytes)", what, bytes);
        dnnl_job_fail(job, TS_ENOMEM, reason);
        return 0;
    }
    *cap = bytes;
    return 1;
}

dnnl_memory_t dnnl_job_memory_alloc(dnnl_job *job, const dnnl_memory_desc_t *md) {
    if (job->status != TS_OK) return NULL;
    if (job->nslot == DNNL_JOB_MAX_SLOT) {
        dnnl_job_fail(job, TS_EINVAL, "internal: too many temporary buffers in one call");
        return NULL;
    }
    ops_dnnl *d = job->dnnl;
    int k = job->nslot++;
    size_t bytes = dnnl_memory_desc_get_size(md);
    if (!dnnl_job_grow(job, &d->slot[k], &d->slot_bytes[k], bytes, "a temporary buffer")) return NULL;
    return job_memory(job, md, bytes ? d->slot[k] : DNNL_MEMORY_NONE);
}

dnnl_primitive_attr_t dnnl_job_attr_create(dnnl_job *job) {
    dnnl_primitive_attr_t attr = NULL;
    if (job->status != TS_OK) return NULL;
    if (dnnl_job_check(job, dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create") &&
        dnnl_job_check(job, dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
                       "dnnl_primitive_attr_set_scratchpad_mode"))
        return attr;
    if (attr) dnnl_primitive_attr_destroy(attr);
    return NULL;
}

/* The job's plain attributes (scratchpad in user mode), made on first use. */
static const_dnnl_primitive_attr_t job_attr(dnnl_job *job) {
    if (!job->attr) job->attr = dnnl_job_attr_create(job);
    return job->attr;
}

size_t dnnl_pd_scratchpad_size(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = pd ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

dnnl_primitive_desc_t dnnl_job_pd(dnnl_job *job, const_dnnl_op_desc_t op_desc, const_dnnl_primitive_desc_t hint,
                                  int required) {
    return dnnl_job_pd_attr(job, op_desc, NULL, hint, required);
}

dnnl_primitive_desc_t dnnl_job_pd_attr(dnnl_job *job, const_dnnl_op_desc_t op_desc, const_dnnl_primitive_attr_t attr,
                                       const_dnnl_primitive_desc_t hint, int required) {
    if (job->status != TS_OK) return NULL;
    if (job->npd == DNNL_JOB_MAX_PD) {
        dnnl_job_fail(job, TS_EINVAL, "internal: too many primitive descriptors in one call");
        return NULL;
    }
    if (attr) {
        dnnl_scratchpad_mode_t mode = dnnl_scratchpad_mode_library;
        if (dnnl_job_check(job, dnnl_primitive_attr_get_scratchpad_mode(attr, &mode),
                           "dnnl_primitive_attr_get_scratchpad_mode") &&
            mode != dnnl_scratchpad_mode_user)
            dnnl_job_fail(job, TS_EINVAL, "internal: attributes not made by dnnl_job_attr_create");
    } else {
        attr = job_attr(job);
    }
    if (job->status != TS_OK) return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, op_desc, attr, job->dnnl->engine, hint);
    if (st == dnnl_unimplemented && !required) {
        job->status = TS_EUNSUPPORTED; /* not an error: the dispatcher falls back */
        return NULL;
    }
    if (!dnnl_job_check(job, st, "dnnl_primitive_desc_create")) return NULL;
    job->pd[job->npd++] = pd;
    return pd;
}

const dnnl_memory_desc_t *dnnl_job_query_md(dnnl_job *job, const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
    if (job->status != TS_OK) return NULL;
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
    if (!md) dnnl_job_fail(job, TS_EINVAL, "dnnl_primitive_desc_query_md failed");
    return md;
}

/* Memory over the ctx's scratchpad, grown to what pd wants; NULL when it wants none
 * or the job has failed. */
static dnnl_memory_t job_scratchpad(dnnl_job *job, const_dnnl_primitive_desc_t pd) {
    ops_dnnl *d = job->dnnl;
    size_t bytes = dnnl_pd_scratchpad_size(pd);
    if (job->status != TS_OK || bytes == 0) return NULL;
    /* primitives of this job that ran on the old buffer are done with it first */
    if (bytes > d->scratch_bytes && job->nprim > 0 &&
        !dnnl_job_check(job, dnnl_stream_wait(d->stream), "dnnl_stream_wait"))
        return NULL;
    if (!dnnl_job_grow(job, &d->scratch, &d->scratch_bytes, bytes, "a scratchpad")) return NULL;
    return job_memory(job, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), d->scratch);
}

void dnnl_job_execute(dnnl_job *job, const_dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args) {
    if (job->status != TS_OK) return;
    dnnl_exec_arg_t all[DNNL_JOB_MAX_ARGS + 1];
    if (nargs > DNNL_JOB_MAX_ARGS) {
        dnnl_job_fail(job, TS_EINVAL, "internal: too many arguments");
        return;
    }
    for (int i = 0; i < nargs; i++) {
        if (!args[i].memory) {
            dnnl_job_fail(job, TS_EINVAL, "internal: missing argument memory");
            return;
        }
        all[i] = args[i];
    }
    if (job->nprim == DNNL_JOB_MAX_PRIM) {
        dnnl_job_fail(job, TS_EINVAL, "internal: too many primitives in one call");
        return;
    }
    dnnl_memory_t scratch = job_scratchpad(job, pd);
    if (scratch) all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, scratch};
    dnnl_job_headroom(job);
    dnnl_primitive_t prim = NULL;
    if (job->status != TS_OK || !dnnl_job_check(job, dnnl_primitive_create(&prim, pd), "dnnl_primitive_create")) return;
    job->prim[job->nprim++] = prim;
    dnnl_job_check(job, dnnl_primitive_execute(prim, job->dnnl->stream, nargs, all), "dnnl_primitive_execute");
}

void dnnl_job_reorder(dnnl_job *job, dnnl_memory_t src, dnnl_memory_t dst) {
    if (job->status != TS_OK || src == dst) return;
    const dnnl_memory_desc_t *smd = NULL, *dmd = NULL;
    if (!dnnl_job_check(job, dnnl_memory_get_memory_desc(src, &smd), "dnnl_memory_get_memory_desc")) return;
    if (!dnnl_job_check(job, dnnl_memory_get_memory_desc(dst, &dmd), "dnnl_memory_get_memory_desc")) return;
    if (job->npd == DNNL_JOB_MAX_PD) {
        dnnl_job_fail(job, TS_EINVAL, "internal: too many primitive descriptors in one call");
        return;
    }
    const_dnnl_primitive_attr_t attr = job_attr(job);
    if (!attr) return;
    dnnl_primitive_desc_t pd = NULL;
    if (!dnnl_job_check(job, dnnl_reorder_primitive_desc_create(&pd, smd, job->dnnl->engine, dmd, job->dnnl->engine, attr),
                        "dnnl_reorder_primitive_desc_create"))
        return;
    job->pd[job->npd++] = pd;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    dnnl_job_execute(job, pd, 2, args);
}

dnnl_memory_t dnnl_job_layout(dnnl_job *job, dnnl_memory_t user, const dnnl_memory_desc_t *want, int copy_in) {
    if (job->status != TS_OK || !user || !want) return NULL;
    const dnnl_memory_desc_t *have = NULL;
    if (!dnnl_job_check(job, dnnl_memory_get_memory_desc(user, &have), "dnnl_memory_get_memory_desc")) return NULL;
    if (dnnl_memory_desc_equal(have, want)) return user;
    dnnl_memory_t m = dnnl_job_memory_alloc(job, want);
    if (copy_in) dnnl_job_reorder(job, user, m);
    return m;
}

ts_status dnnl_job_end(dnnl_job *job) {
    if (job->dnnl && job->nprim > 0) {
        dnnl_status_t st = dnnl_stream_wait(job->dnnl->stream);
        dnnl_job_check(job, st, "dnnl_stream_wait");
    }
    for (int i = job->nprim - 1; i >= 0; i--) dnnl_primitive_destroy(job->prim[i]);
    for (int i = job->npd - 1; i >= 0; i--) dnnl_primitive_desc_destroy(job->pd[i]);
    for (int i = job->nmem - 1; i >= 0; i--) dnnl_memory_destroy(job->mem[i]);
    if (job->attr) dnnl_primitive_attr_destroy(job->attr);
    job->attr = NULL;
    job->nprim = job->npd = job->nmem = 0;
    return job->status;
}

/* bf16 lives here because it is a oneDNN feature: its bf16 convolutions need AVX-512
 * (emulated below AVX-512-BF16). Without it every convolution would fall back to the
 * float32 reference kernels, so the mode is refused instead. */
ts_status ts_ctx_set_bf16(ts_ctx *ctx, int on) {
    if (!ctx) return TS_EINVAL;
    if (on) {
        dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
        if ((isa & dnnl_cpu_isa_avx512_core) != dnnl_cpu_isa_avx512_core)
            return ts_fail(ctx, TS_EUNSUPPORTED,
                           "bf16: oneDNN has bfloat16 convolutions only on CPUs with AVX-512 (this one: %s)",
                           dnnl_cpu_isa2str(isa));
    }
    ctx->bf16 = on != 0;
    return TS_OK;
}

ts_status ts_ctx_set_winograd(ts_ctx *ctx, ts_winograd mode) {
    if (!ctx) return TS_EINVAL;
    if (mode != TS_WINOGRAD_OFF && mode != TS_WINOGRAD_INFERENCE && mode != TS_WINOGRAD_TRAINING)
        return ts_fail(ctx, TS_EINVAL, "winograd: mode %d is none of off (0), inference (1), training (2)", (int)mode);
    ctx->winograd = mode;
    return TS_OK;
}

ts_winograd ts_ctx_get_winograd(const ts_ctx *ctx) { return ctx ? (ts_winograd)ctx->winograd : TS_WINOGRAD_OFF; }
