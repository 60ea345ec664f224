/* The .tsm module file: a model file of kind 2 (the origin model's ARCH, META and
 * TENS sections) plus a MODL section with the class, provenance, calibration and
 * the keep-masks (docs/file-format.md). Reads check every mask against the
 * origin's ReLU layers and the origin's hash against its tensors. */
#include "io/io.h"
#include "modular.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MODL_VERSION 1u
#define MAX_STR 4096u

/* FNV-1a of the section's bytes before the checksum: the masks are not covered by
 * the origin hash, so a flipped bit there must be caught too. */
static uint64_t modl_checksum(const uint8_t *p, size_t n) { return ts_fnv1a(TS_FNV1A_INIT, p, n); }

ts_status ts_module_save(ts_ctx *ctx, const ts_module *mod, const char *path) {
    if (!ctx || !mod || !path) return ts_fail(ctx, TS_EINVAL, "ts_module_save: NULL argument");
    wbuf b = {0};
    wbuf_u32(&b, MODL_VERSION);
    wbuf_u32(&b, (uint32_t)mod->cls);
    wbuf_str(&b, mod->class_name);
    wbuf_str(&b, mod->dataset);
    wbuf_str(&b, mod->origin_name);
    wbuf_u64(&b, mod->origin_id);
    wbuf_f32(&b, mod->info.scale);
    wbuf_f32(&b, mod->info.shift);
    wbuf_f32(&b, mod->info.threshold);
    wbuf_u32(&b, (uint32_t)mod->info.positives);
    wbuf_u32(&b, (uint32_t)mod->info.negatives);
    wbuf_f64(&b, mod->info.seconds);
    wbuf_u32(&b, (uint32_t)mod->nmasks);
    for (int i = 0; i < mod->nmasks; i++) {
        const module_mask *mk = &mod->masks[i];
        wbuf_str(&b, mod->origin->layers[mk->layer].name);
        wbuf_u64(&b, (uint64_t)mk->units);
        for (int64_t w = 0; w < mask_words(mk->units); w++) wbuf_u64(&b, mk->keep[w]);
    }
    wbuf_u64(&b, b.failed ? 0 : modl_checksum(b.data, b.len));
    return model_file_write_with(ctx, mod->origin, path, MODEL_KIND_MODULE, TAG_MODL, &b, "module");
}

static ts_status read_modl(ts_ctx *ctx, rbuf *r, ts_module *mod) {
    uint32_t version, cls, pos, neg, nmasks;
    char *s = NULL;
    ts_status st;
    if (r->len < 12)
        return ts_fail(ctx, TS_EFORMAT, "%s: module section at byte %zu is %zu bytes, too short", r->path, r->base,
                       r->len);
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++) sum |= (uint64_t)r->data[r->len - 8 + (size_t)i] << (8 * i);
    if (sum != modl_checksum(r->data, r->len - 8))
        return ts_fail(ctx, TS_EFORMAT, "%s: module section checksum at byte %zu does not match its contents (corrupted?)",
                       r->path, r->base + r->len - 8);
    r->len -= 8;
    size_t at = r->off;
    if ((st = rbuf_u32(r, &version, "module version"))) return st;
    if (version != MODL_VERSION)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: module section version %u at byte %zu, this tessera reads %u",
                       r->path, version, r->base + at, MODL_VERSION);
    at = r->off;
    if ((st = rbuf_u32(r, &cls, "class index"))) return st;
    if (cls >= (uint32_t)mod->origin->classes)
        return ts_fail(ctx, TS_EFORMAT, "%s: class index %u at byte %zu, but the model has %d classes", r->path, cls,
                       r->base + at, mod->origin->classes);
    mod->cls = (int)cls;
    free(mod->class_name);
    free(mod->dataset);
    free(mod->origin_name);
    mod->class_name = mod->dataset = mod->origin_name = NULL;
    if ((st = rbuf_str(r, &mod->class_name, MAX_STR, "class name"))) return st;
    if ((st = rbuf_str(r, &mod->dataset, MAX_STR, "dataset name"))) return st;
    if ((st = rbuf_str(r, &mod->origin_name, MAX_STR, "origin name"))) return st;
    uint64_t id;
    at = r->off;
    if ((st = rbuf_u64(r, &id, "origin hash"))) return st;
    if (id != mod->origin_id)
        return ts_fail(ctx, TS_EFORMAT,
                       "%s: origin hash at byte %zu does not match the model stored in the file (corrupted tensors?)",
                       r->path, r->base + at);
    at = r->off;
    if ((st = rbuf_f32(r, &mod->info.scale, "calibration scale")) || (st = rbuf_f32(r, &mod->info.shift, "calibration shift")))
        return st;
    if ((st = rbuf_f32(r, &mod->info.threshold, "yes/no threshold"))) return st;
    if (!isfinite(mod->info.scale) || !(mod->info.scale > 0) || !isfinite(mod->info.shift) ||
        !isfinite(mod->info.threshold))
        return ts_fail(ctx, TS_EFORMAT, "%s: calibration at byte %zu must be finite with a positive scale (and a finite threshold)", r->path,
                       r->base + at);
    if ((st = rbuf_u32(r, &pos, "positives")) || (st = rbuf_u32(r, &neg, "negatives")) ||
        (st = rbuf_f64(r, &mod->info.seconds, "seconds")))
        return st;
    mod->info.positives = (int)(pos > 1000000000u ? 1000000000u : pos);
    mod->info.negatives = (int)(neg > 1000000000u ? 1000000000u : neg);
    at = r->off;
    if ((st = rbuf_u32(r, &nmasks, "mask count"))) return st;
    if (nmasks != (uint32_t)mod->nmasks)
        return ts_fail(ctx, TS_EFORMAT, "%s: %u masks at byte %zu, but the model has %d ReLU layers", r->path, nmasks,
                       r->base + at, mod->nmasks);
    for (int i = 0; i < mod->nmasks; i++) {
        module_mask *mk = &mod->masks[i];
        const char *want = mod->origin->layers[mk->layer].name;
        at = r->off;
        if ((st = rbuf_str(r, &s, MAX_STR, "mask layer name"))) return st;
        int same = !strcmp(s, want);
        free(s);
        if (!same)
            return ts_fail(ctx, TS_EFORMAT, "%s: mask %d at byte %zu is for a layer other than ReLU '%s'", r->path, i,
                           r->base + at, want);
        uint64_t units;
        at = r->off;
        if ((st = rbuf_u64(r, &units, "mask units"))) return st;
        if (units != (uint64_t)mk->units)
            return ts_fail(ctx, TS_EFORMAT, "%s: mask for '%s' at byte %zu has %llu units, the layer outputs %lld",
                           r->path, want, r->base + at, (unsigned long long)units, (long long)mk->units);
        int64_t nw = mask_words(mk->units);
        if ((uint64_t)nw > (r->len - r->off) / 8)
            return ts_fail(ctx, TS_EFORMAT, "%s: mask for '%s' at byte %zu is truncated", r->path, want,
                           r->base + r->off);
        for (int64_t w = 0; w < nw; w++)
            if ((st = rbuf_u64(r, &mk->keep[w], "mask bits"))) return st;
        if (mk->units % 64) mk->keep[nw - 1] &= (1ull << (mk->units % 64)) - 1;
    }
    if (r->off != r->len)
        return ts_fail(ctx, TS_EFORMAT, "%s: %zu unexpected bytes at the end of the module section", r->path,
                       r->len - r->off);
    return TS_OK;
}

ts_status ts_module_load(ts_ctx *ctx, const char *path, ts_module **out) {
    if (!ctx || !path || !out) return ts_fail(ctx, TS_EINVAL, "ts_module_load: NULL argument");
    *out = NULL;
    ts_model *m = NULL;
    uint8_t *sec = NULL;
    size_t len = 0, base = 0;
    ts_status st = model_file_read(ctx, path, &m, TAG_MODL, &sec, &len, &base);
    if (st) return st;
    ts_module *mod = NULL;
    if (!(st = module_create(ctx, m, 0, &mod))) {
        rbuf r = {sec, len, 0, base, path, ctx};
        st = read_modl(ctx, &r, mod);
    }
    ts_model_free(m);
    free(sec);
    if (!st) st = module_count(ctx, mod);
    if (st) {
        ts_module_free(mod);
        return st;
    }
    *out = mod;
    return TS_OK;
}
