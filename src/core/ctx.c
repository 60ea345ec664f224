/* Context: status, error message, thread count, backend choice and constant-time mode. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(TS_STATUS_COUNT == 10, "update status_names when adding a status");
static const char *const status_names[TS_STATUS_COUNT] = {
    "ok", "invalid argument", "out of memory", "I/O error", "bad format",
    "unsupported", "shape mismatch", "not found", "diverged", "canceled",
};

const char *ts_status_name(ts_status s) {
    if ((int)s < 0 || s >= TS_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

ts_status ts_ctx_create(ts_ctx **out) {
    if (!out) return TS_EINVAL;
    *out = NULL;
    ts_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return TS_ENOMEM;
    ctx->nthreads = 1;
    ctx->comm.size = 1;
    ctx->backend = TS_BACKEND_DNNL;
    ctx->winograd = TS_WINOGRAD_INFERENCE;
    *out = ctx;
    return TS_OK;
}

void ts_ctx_free(ts_ctx *ctx) {
    if (!ctx) return;
    if (ctx->dnnl && ctx->dnnl_release) ctx->dnnl_release(ctx->dnnl);
    free(ctx->errmsg_long);
    free(ctx);
}

const char *ts_ctx_error(const ts_ctx *ctx) {
    if (!ctx) return "no context";
    return ctx->errmsg_long ? ctx->errmsg_long : ctx->errmsg;
}
ts_status ts_ctx_status(const ts_ctx *ctx) { return ctx ? ctx->status : TS_EINVAL; }

void ts_ctx_clear_error(ts_ctx *ctx) {
    if (!ctx) return;
    ctx->status = TS_OK;
    ctx->errmsg[0] = '\0';
    free(ctx->errmsg_long);
    ctx->errmsg_long = NULL;
}

void ts_ctx_set_note_hook(ts_ctx *ctx, ts_note_fn fn, void *user) {
    if (!ctx) return;
    ctx->note = fn;
    ctx->note_user = user;
}

void ts_note(ts_ctx *ctx, const char *fmt, ...) {
    if (!ctx || !ctx->note) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctx->note(ctx->note_user, line);
}

ts_status ts_ctx_set_force(ts_ctx *ctx, int on) {
    if (!ctx) return TS_EINVAL;
    ctx->force = on != 0;
    return TS_OK;
}

ts_status ts_ctx_set_threads(ts_ctx *ctx, int nthreads) {
    if (!ctx) return TS_EINVAL;
    if (nthreads < 1 || nthreads > TS_THREADS_MAX)
        return ts_fail(ctx, TS_EINVAL, "threads: %d is out of range (expected 1..%d)", nthreads, TS_THREADS_MAX);
    /* started now, while memory is still free, so that a failure is an error here and
     * not libgomp exiting the process inside a kernel later; the count stays as it was */
    ts_status st = ts_threads_start(ctx, nthreads);
    if (st == TS_OK) ctx->nthreads = nthreads;
    return st;
}

int ts_ctx_get_threads(const ts_ctx *ctx) { return ts_ctx_threads(ctx); }

ts_status ts_ctx_set_backend(ts_ctx *ctx, ts_backend backend) {
    if (!ctx) return TS_EINVAL;
    if (backend != TS_BACKEND_DNNL && backend != TS_BACKEND_REF)
        return ts_fail(ctx, TS_EINVAL, "backend: unknown value %d", (int)backend);
    ctx->backend = backend;
    return TS_OK;
}

ts_backend ts_ctx_get_backend(const ts_ctx *ctx) { return ctx ? ctx->backend : TS_BACKEND_REF; }

ts_status ts_ctx_set_constant_time(ts_ctx *ctx, int on) {
    if (!ctx) return TS_EINVAL;
    ctx->constant_time = on != 0;
    return TS_OK;
}

int ts_ctx_get_constant_time(const ts_ctx *ctx) { return ctx ? ctx->constant_time : 0; }

ts_status ts_ctx_set_image_shape(ts_ctx *ctx, int channels, int height, int width) {
    if (!ctx) return TS_EINVAL;
    if ((channels != 0 && channels != 1 && channels != 3) || height < 0 || width < 0 ||
        (long)height * width > TS_IMAGE_MAX_PIXELS)
        return ts_fail(ctx, TS_EINVAL, "image shape %dx%dx%d: expected 1 or 3 channels and at most %ld pixels",
                       channels, height, width, (long)TS_IMAGE_MAX_PIXELS);
    ctx->image_shape[0] = channels;
    ctx->image_shape[1] = height;
    ctx->image_shape[2] = width;
    return TS_OK;
}

void ts_ctx_get_image_shape(const ts_ctx *ctx, int *channels, int *height, int *width) {
    *channels = ctx ? ctx->image_shape[0] : 0;
    *height = ctx ? ctx->image_shape[1] : 0;
    *width = ctx ? ctx->image_shape[2] : 0;
}

/* A message that does not fit the context's buffer gets its own allocation, so that
 * long paths are never cut; if that allocation fails, the cut message stands. The
 * message is formatted before the old one goes: it may be an argument. */
static ts_status set_error(ts_ctx *ctx, ts_status status, const char *fmt, va_list ap) {
    if (!ctx) return status;
    char buf[TS_ERRMSG_MAX], *longer = NULL;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n >= (int)sizeof buf && (longer = malloc((size_t)n + 1))) vsnprintf(longer, (size_t)n + 1, fmt, again);
    va_end(again);
    ctx->status = status;
    free(ctx->errmsg_long);
    ctx->errmsg_long = longer;
    memcpy(ctx->errmsg, buf, sizeof buf);
    return status;
}

ts_status ts_fail(ts_ctx *ctx, ts_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

int64_t ts_shape_numel(const ts_shape *s) {
    if (!s || s->ndim < 0 || s->ndim > TS_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (s->dims[i] < 0 || (s->dims[i] > 0 && n > INT64_MAX / s->dims[i])) return -1;
        n *= s->dims[i];
    }
    return n;
}

ts_status ts_ctx_set_error(ts_ctx *ctx, ts_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

int ts_ctx_get_bf16(const ts_ctx *ctx) { return ctx ? ctx->bf16 : 0; }
