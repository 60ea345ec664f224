/* The .tsr model file: magic "TSRM", version, kind, then tagged sections
 * (ARCH, META, TENS, and TRAN in checkpoints), each with its length. Layout in
 * docs/file-format.md. Writes are atomic; reads check every size against what the
 * file holds. */
#include "io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)1 << 36)   /* 64 GiB */
#define MAX_ARCH_BYTES ((size_t)16 << 20)
#define MAX_META_BYTES ((size_t)1 << 20)
#define MAX_NAME_BYTES 4096u
#define MAX_SECTIONS 64u

static void write_arch(wbuf *b, const ts_model *m) {
    wbuf_str(b, m->arch_text);
    wbuf_u32(b, (uint32_t)m->input.ndim);
    for (int d = 0; d < m->input.ndim; d++) wbuf_u64(b, (uint64_t)m->input.dims[d]);
    wbuf_u32(b, (uint32_t)m->classes);
}

static void write_meta(wbuf *b, const ts_model *m) {
    wbuf_u32(b, (uint32_t)m->nmeta);
    for (int i = 0; i < m->nmeta; i++) {
        wbuf_str(b, m->meta[i].key);
        wbuf_str(b, m->meta[i].value);
    }
}

static void write_tensors(wbuf *b, const ts_model *m) {
    wbuf_u32(b, (uint32_t)m->ntensors);
    for (int i = 0; i < m->ntensors; i++) {
        ts_tensor_info t;
        model_tensor_peek(m, i, &t);
        wbuf_str(b, t.name);
        wbuf_u8(b, 0); /* dtype: float32 */
        wbuf_u8(b, (uint8_t)t.role);
        wbuf_u32(b, (uint32_t)t.ndim);
        for (int d = 0; d < t.ndim; d++) wbuf_u64(b, (uint64_t)t.dims[d]);
        wbuf_bytes(b, t.data, (size_t)t.numel * sizeof(float)); /* little-endian host (x86-64, arm64) */
    }
}

static void section(wbuf *b, uint32_t tag, const wbuf *payload) {
    wbuf_u32(b, tag);
    wbuf_u64(b, payload->len);
    wbuf_bytes(b, payload->data, payload->len);
}

/* The oldest version that can hold m (io.h). */
static uint32_t file_version(const ts_model *m) {
    for (int li = 0; li < m->nlayers; li++)
        if (m->layers[li].step_mask) return MODEL_FILE_VERSION_STEP_MASK;
    return 1u;
}

/* A step mask (T, D, H) holds 0 or 1 only: anything else is a damaged file, not a
 * softer mask. */
static ts_status check_step_masks(ts_ctx *ctx, const ts_model *m, const char *path, uint32_t version) {
    for (int li = 0; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        if (!l->step_mask) continue;
        if (version < MODEL_FILE_VERSION_STEP_MASK)
            return ts_fail(ctx, TS_EFORMAT,
                           "%s: layer '%s' has step_mask=1, which file version %u cannot hold (2 does)", path, l->name,
                           version);
        const float *k = tensor_data((ts_model *)m, l->mask);
        for (int64_t i = 0; i < m->tensors[l->mask].numel; i++)
            if (k[i] != 0.0f && k[i] != 1.0f)
                return ts_fail(ctx, TS_EFORMAT, "%s: tensor '%s' element %lld is %g (a step mask holds 0 or 1)", path,
                               m->tensors[l->mask].name, (long long)i, (double)k[i]);
    }
    return TS_OK;
}

ts_status model_file_write(ts_ctx *ctx, const ts_model *m, const char *path, uint32_t kind, const io_section *extra,
                           int nextra) {
    wbuf out = {0}, arch = {0}, meta = {0}, tens = {0};
    write_arch(&arch, m);
    write_meta(&meta, m);
    write_tensors(&tens, m);
    wbuf_bytes(&out, MODEL_FILE_MAGIC, 4);
    wbuf_u32(&out, file_version(m));
    wbuf_u32(&out, kind);
    wbuf_u32(&out, 3u + (uint32_t)nextra);
    section(&out, TAG_ARCH, &arch);
    section(&out, TAG_META, &meta);
    section(&out, TAG_TENS, &tens);
    for (int i = 0; i < nextra; i++) {
        wbuf_u32(&out, extra[i].tag);
        wbuf_u64(&out, extra[i].len);
        wbuf_bytes(&out, extra[i].data, extra[i].len);
    }
    ts_status st = TS_OK;
    if (out.failed || arch.failed || meta.failed || tens.failed)
        st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory serializing the model", path);
    else st = io_write_atomic(ctx, path, out.data, out.len);
    wbuf_free(&out);
    wbuf_free(&arch);
    wbuf_free(&meta);
    wbuf_free(&tens);
    return st;
}

ts_status model_file_write_with(ts_ctx *ctx, const ts_model *m, const char *path, uint32_t kind, uint32_t tag, wbuf *b,
                                const char *what) {
    ts_status st;
    if (b->failed) st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory serializing the %s", path, what);
    else {
        io_section sec = {tag, b->data, b->len};
        st = model_file_write(ctx, m, path, kind, &sec, 1);
    }
    wbuf_free(b);
    return st;
}

ts_status ts_model_save(ts_ctx *ctx, const ts_model *m, const char *path) {
    if (!ctx || !m || !path) return ts_fail(ctx, TS_EINVAL, "ts_model_save: NULL argument");
    return model_file_write(ctx, m, path, MODEL_KIND_MODEL, NULL, 0);
}

/* Parses the architecture, then checks that the TENS section (tens_len bytes) can
 * hold its tensors before any storage is allocated: a small hostile file must not
 * make us allocate gigabytes. */
static ts_status read_arch(ts_ctx *ctx, rbuf *r, size_t tens_len, ts_model **out) {
    char *text = NULL;
    ts_status st = rbuf_str(r, &text, MAX_ARCH_BYTES, "architecture text");
    if (st) return st;
    uint32_t ndim, classes;
    ts_shape in;
    memset(&in, 0, sizeof in);
    size_t at = r->base + r->off;
    if ((st = rbuf_u32(r, &ndim, "input rank"))) goto done;
    if (ndim < 1 || ndim > TS_MAX_DIMS) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: input rank %u at byte %zu out of 1..%d", r->path, ndim, at, TS_MAX_DIMS);
        goto done;
    }
    in.ndim = (int)ndim;
    for (uint32_t d = 0; d < ndim; d++) {
        at = r->base + r->off;
        if ((st = rbuf_i64(r, &in.dims[d], "input dimension"))) goto done;
        if (in.dims[d] < 1 || in.dims[d] > (1 << 24)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: input dimension %lld at byte %zu out of 1..16777216", r->path,
                         (long long)in.dims[d], at);
            goto done;
        }
    }
    at = r->base + r->off;
    if ((st = rbuf_u32(r, &classes, "class count"))) goto done;
    if (classes < 1 || classes > (1u << 24)) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: class count %u at byte %zu out of 1..16777216", r->path, classes, at);
        goto done;
    }
    {
        char src[512];
        snprintf(src, sizeof src, "%s (architecture)", r->path);
        if ((st = model_parse(ctx, text, src, &in, (int)classes, NULL, out))) goto done;
        uint64_t need = ((uint64_t)(*out)->nparams + (*out)->nbuffers) * sizeof(float);
        if (need > tens_len) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: the architecture needs %llu bytes of tensor data but the TENS section "
                         "holds %zu", r->path, (unsigned long long)need, tens_len);
        } else {
            st = model_alloc_tensors(ctx, *out);
        }
        if (st) {
            ts_model_free(*out);
            *out = NULL;
        }
    }
done:
    free(text);
    return st;
}

static ts_status read_meta(ts_ctx *ctx, rbuf *r, ts_model *m) {
    uint32_t count;
    ts_status st = rbuf_u32(r, &count, "metadata count");
    if (st) return st;
    if (count > 4096) return ts_fail(ctx, TS_EFORMAT, "%s: %u metadata entries (at most 4096)", r->path, count);
    for (uint32_t i = 0; i < count && !st; i++) {
        char *k = NULL, *v = NULL;
        if (!(st = rbuf_str(r, &k, MAX_META_BYTES, "metadata key")) &&
            !(st = rbuf_str(r, &v, MAX_META_BYTES, "metadata value"))) {
            if (!*k) st = ts_fail(ctx, TS_EFORMAT, "%s: metadata entry %u has an empty key", r->path, i);
            else st = ts_model_set_meta(ctx, m, k, v);
        }
        free(k);
        free(v);
    }
    return st;
}

static ts_status read_tensors(ts_ctx *ctx, rbuf *r, ts_model *m) {
    uint32_t count;
    ts_status st = rbuf_u32(r, &count, "tensor count");
    if (st) return st;
    if (count != (uint32_t)m->ntensors)
        return ts_fail(ctx, TS_EFORMAT, "%s: file holds %u tensors but its architecture has %d", r->path, count,
                       m->ntensors);
    char *seen = calloc((size_t)m->ntensors + 1, 1);
    if (!seen) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", r->path);
    for (uint32_t i = 0; i < count && !st; i++) {
        char *name = NULL;
        size_t at = r->base + r->off;
        if ((st = rbuf_str(r, &name, MAX_NAME_BYTES, "tensor name"))) break;
        int idx = ts_model_find_tensor(m, name);
        uint8_t dtype, role;
        uint32_t ndim = 0;
        ts_tensor_info t;
        if (idx < 0) st = ts_fail(ctx, TS_EFORMAT, "%s: tensor '%s' at byte %zu is not in the architecture", r->path, name, at);
        else if (seen[idx]) st = ts_fail(ctx, TS_EFORMAT, "%s: tensor '%s' at byte %zu appears twice", r->path, name, at);
        if (!st) {
            seen[idx] = 1;
            ts_model_tensor(m, idx, &t);
        }
        if (!st && !(st = rbuf_u8(r, &dtype, "tensor dtype")) && dtype != 0)
            st = ts_fail(ctx, TS_EUNSUPPORTED, "%s: tensor '%s' has dtype %u (only 0 = float32 is supported)", r->path,
                         name, dtype);
        if (!st && !(st = rbuf_u8(r, &role, "tensor role")) && role != (uint8_t)t.role)
            st = ts_fail(ctx, TS_EFORMAT, "%s: tensor '%s' role %u does not match the architecture (%u)", r->path, name,
                         role, (unsigned)t.role);
        if (!st && !(st = rbuf_u32(r, &ndim, "tensor rank")) && ndim != (uint32_t)t.ndim)
            st = ts_fail(ctx, TS_ESHAPE, "%s: tensor '%s' has rank %u, the architecture expects %d", r->path, name,
                         ndim, t.ndim);
        for (uint32_t d = 0; d < ndim && !st; d++) {
            int64_t dim;
            if (!(st = rbuf_i64(r, &dim, "tensor dimension")) && dim != t.dims[d])
                st = ts_fail(ctx, TS_ESHAPE, "%s: tensor '%s' dimension %u is %lld, the architecture expects %lld",
                             r->path, name, d, (long long)dim, (long long)t.dims[d]);
        }
        const uint8_t *p = NULL;
        if (!st) st = rbuf_view(r, &p, (size_t)t.numel * sizeof(float), "tensor data");
        if (!st) {
            memcpy(t.data, p, (size_t)t.numel * sizeof(float));
            for (int64_t j = 0; j < t.numel && !st; j++)
                if (!isfinite(t.data[j]))
                    st = ts_fail(ctx, TS_EFORMAT, "%s: tensor '%s' element %lld is %s", r->path, name, (long long)j,
                                 isnan(t.data[j]) ? "NaN" : "infinite");
        }
        free(name);
    }
    free(seen);
    return st;
}

ts_status model_file_read(ts_ctx *ctx, const char *path, ts_model **out, uint32_t extra_tag, uint8_t **extra,
                          size_t *extra_len, size_t *extra_base) {
    *out = NULL;
    if (extra) {
        *extra = NULL;
        *extra_len = 0;
    }
    uint8_t *data;
    size_t len;
    ts_status st = io_read_file(ctx, path, MAX_FILE_BYTES, &data, &len);
    if (st) return st;
    rbuf r = {data, len, 0, 0, path, ctx};
    char magic[4];
    uint32_t version, kind, nsec;
    ts_model *m = NULL;
    if ((st = rbuf_bytes(&r, magic, 4, "magic"))) goto done;
    if (memcmp(magic, MODEL_FILE_MAGIC, 4)) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: not a tessera model file (magic at byte 0 is not \"TSRM\")", path);
        goto done;
    }
    if ((st = rbuf_u32(&r, &version, "version"))) goto done;
    if (version < 1 || version > MODEL_FILE_VERSION) {
        st = ts_fail(ctx, TS_EUNSUPPORTED, "%s: file version %u, this tessera reads versions 1 to %u", path, version,
                     MODEL_FILE_VERSION);
        goto done;
    }
    if ((st = rbuf_u32(&r, &kind, "kind"))) goto done;
    if (kind > MODEL_KIND_MODULE) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: kind %u at byte 8 (expected 0 = model, 1 = checkpoint or 2 = module)", path,
                     kind);
        goto done;
    }
    if (kind == MODEL_KIND_MODULE && extra_tag != TAG_MODL) {
        st = ts_fail(ctx, TS_EINVAL, "%s: is a module file, not a model (compose it first: tessera compose)", path);
        goto done;
    }
    if (extra_tag == TAG_MODL && kind != MODEL_KIND_MODULE) {
        st = ts_fail(ctx, TS_EINVAL, "%s: is a %s file, not a module (kind %u at byte 8)", path,
                     kind == MODEL_KIND_CHECKPOINT ? "checkpoint" : "model", kind);
        goto done;
    }
    if ((st = rbuf_u32(&r, &nsec, "section count"))) goto done;
    if (nsec < 3 || nsec > MAX_SECTIONS) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: section count %u at byte 12 (expected 3..%u)", path, nsec, MAX_SECTIONS);
        goto done;
    }
    /* locate sections, then read them in dependency order */
    rbuf arch = {0}, meta = {0}, tens = {0}, xtra = {0};
    uint32_t xtra_tag = 0;
    for (uint32_t i = 0; i < nsec; i++) {
        uint32_t tag;
        uint64_t slen;
        size_t at = r.off;
        if ((st = rbuf_u32(&r, &tag, "section tag")) || (st = rbuf_u64(&r, &slen, "section length"))) goto done;
        const uint8_t *p;
        if (slen > r.len - r.off) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: section %u at byte %zu claims %llu bytes but %zu remain", path, i, at,
                         (unsigned long long)slen, r.len - r.off);
            goto done;
        }
        size_t base = r.off;
        rbuf_view(&r, &p, (size_t)slen, "section");
        rbuf sub = {p, (size_t)slen, 0, base, path, ctx};
        rbuf *slot = tag == TAG_ARCH ? &arch : tag == TAG_META ? &meta : tag == TAG_TENS ? &tens
                   : (tag == TAG_TRAN || tag == TAG_MODL) ? &xtra : NULL;
        if (!slot) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: unknown section tag 0x%08x at byte %zu", path, tag, at);
            goto done;
        }
        if (slot->data) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: duplicate section at byte %zu", path, at);
            goto done;
        }
        *slot = sub;
        if (slot == &xtra) xtra_tag = tag;
    }
    {
        uint32_t want = kind == MODEL_KIND_CHECKPOINT ? TAG_TRAN : kind == MODEL_KIND_MODULE ? TAG_MODL : 0;
        const char *kname = kind == MODEL_KIND_CHECKPOINT ? "checkpoint" : kind == MODEL_KIND_MODULE ? "module" : "model";
        if (want && (!xtra.data || xtra_tag != want)) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: kind %u (%s) lacks its %s section", path, kind, kname,
                         want == TAG_TRAN ? "TRAN" : "MODL");
            goto done;
        }
        if (!want && xtra.data) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: kind %u (%s) must not have a %s section", path, kind, kname,
                         xtra_tag == TAG_TRAN ? "TRAN" : "MODL");
            goto done;
        }
    }
    if (r.off != r.len) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: %zu unexpected bytes after the last section", path, r.len - r.off);
        goto done;
    }
    if (!arch.data || !meta.data || !tens.data) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: missing %s section", path, !arch.data ? "ARCH" : !meta.data ? "META" : "TENS");
        goto done;
    }
    if ((st = read_arch(ctx, &arch, tens.len, &m))) goto done;
    if ((st = read_meta(ctx, &meta, m))) goto done;
    if ((st = model_quant_check(ctx, m, path))) goto done;
    if ((st = read_tensors(ctx, &tens, m))) goto done;
    if ((st = check_step_masks(ctx, m, path, version))) goto done;
    rbuf *secs[3] = {&arch, &meta, &tens};
    for (int i = 0; i < 3; i++)
        if (secs[i]->off != secs[i]->len) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: %zu unexpected bytes at the end of the section at byte %zu", path,
                         secs[i]->len - secs[i]->off, secs[i]->base);
            goto done;
        }
    if (extra && extra_tag && xtra.data) {
        if (!(*extra = malloc(xtra.len ? xtra.len : 1))) {
            st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(*extra, xtra.data, xtra.len);
        *extra_len = xtra.len;
        if (extra_base) *extra_base = xtra.base;
    }
done:
    free(data);
    if (st) {
        ts_model_free(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

ts_status ts_model_load(ts_ctx *ctx, const char *path, ts_model **out) {
    if (!ctx || !path || !out) return ts_fail(ctx, TS_EINVAL, "ts_model_load: NULL argument");
    return model_file_read(ctx, path, out, 0, NULL, NULL, NULL);
}

ts_status ts_arch_save(ts_ctx *ctx, const ts_model *m, const char *path) {
    if (!ctx || !m || !path) return ts_fail(ctx, TS_EINVAL, "ts_arch_save: NULL argument");
    if (!m->arch_text) return ts_fail(ctx, TS_EINVAL, "ts_arch_save: the model has no architecture text");
    return io_write_atomic(ctx, path, m->arch_text, strlen(m->arch_text));
}
