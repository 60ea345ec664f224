/* The .tsm module file: a model file of kind 2 plus a MODL section with the class,
 * provenance and calibration (docs/file-format.md).
 *
 * Version 2 (written since 2026-12) is physically sliced: the model it holds is the
 * origin with the module's masks applied and every channel they remove gone
 * (model_slice), and MODL adds the origin's architecture text and, per origin layer,
 * which output channels were kept. Reading expands it back to the origin's shape (the
 * removed values zero, never reaching the module's output) so that everything that
 * works on a module (compose, replace, retune, eval) works unchanged, and records
 * which values the file held (ts_module.present) so that composition can merge the
 * modules of one origin. Version 1 (the whole origin plus keep-masks) still loads:
 * reads check every mask against the origin's ReLU layers and the origin's hash
 * against its tensors. Version 3 adds the module's sizes as decomposition measured them
 * against the real origin (a text module's stored model is already its own smaller
 * model, so they cannot be recounted from the file). */
#include "io/io.h"
#include "modular.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODL_VERSION 3u
#define MAX_STR 4096u
#define MAX_ARCH (64u << 20)
#define MODL_SIZES 8 /* version 3's sizes: see ts_module_save */

/* FNV-1a of the section's bytes before the checksum: the masks are not covered by
 * the origin hash, so a flipped bit there must be caught too. */
static uint64_t modl_checksum(const uint8_t *p, size_t n) { return ts_fnv1a(TS_FNV1A_INIT, p, n); }

/* The fields both versions share, from the class index through the seconds. */
static void write_common(wbuf *b, const ts_module *mod) {
    wbuf_u32(b, (uint32_t)mod->cls);
    wbuf_str(b, mod->class_name);
    wbuf_str(b, mod->dataset);
    wbuf_str(b, mod->origin_name);
    wbuf_u64(b, mod->origin_id);
    wbuf_f32(b, mod->info.scale);
    wbuf_f32(b, mod->info.shift);
    wbuf_f32(b, mod->info.threshold);
    wbuf_u32(b, (uint32_t)mod->info.positives);
    wbuf_u32(b, (uint32_t)mod->info.negatives);
    wbuf_f64(b, mod->info.seconds);
}

ts_status ts_module_save(ts_ctx *ctx, const ts_module *mod, const char *path) {
    if (!ctx || !mod || !path) return ts_fail(ctx, TS_EINVAL, "ts_module_save: NULL argument");
    ts_model *mm = NULL, *sm = NULL;
    slice_report rep = {.want_keep = 1};
    ts_status st = module_masked_origin(ctx, mod, &mm);
    if (st || (st = model_slice(ctx, mm, &sm, &rep))) goto done;
    const ts_model *o = mod->origin;
    wbuf b = {0};
    wbuf_u32(&b, MODL_VERSION);
    write_common(&b, mod);
    wbuf_u32(&b, (uint32_t)mod->info.method);
    wbuf_u32(&b, (uint32_t)(mod->info.selected_epoch < 0 ? 0 : mod->info.selected_epoch));
    wbuf_f64(&b, mod->info.val_accuracy);
    wbuf_f64(&b, mod->info.origin_val_accuracy);
    /* written from the layers: the origin's own text may declare another input shape
     * (ts_model_from_arch with an input override keeps the text as given) */
    char *arch = arch_write_model(o);
    if (!arch) {
        wbuf_free(&b);
        st = ts_fail(ctx, TS_ENOMEM, "out of memory writing a module");
        goto done;
    }
    wbuf_str(&b, arch);
    free(arch);
    wbuf_u32(&b, (uint32_t)o->nlayers);
    /* origin layer li is masked-origin layer j: the same name, in the same order */
    for (int li = 0, j = 0; li < o->nlayers; li++, j++) {
        while (strcmp(mm->layers[j].name, o->layers[li].name)) j++;
        const int64_t ch = o->layers[li].out.dims[0];
        wbuf_u64(&b, (uint64_t)ch);
        const unsigned char *k = rep.keep + rep.keep_off[j];
        for (int64_t c = 0; c < ch; c += 8) {
            uint8_t byte = 0;
            for (int64_t i = c; i < c + 8 && i < ch; i++) byte |= (uint8_t)(k[i] ? 1u : 0u) << (i - c);
            wbuf_u8(&b, byte);
        }
    }
    /* version 3: the sizes against the origin, as measured when the module was made */
    const ts_module_info *in = &mod->info;
    const int64_t sizes[MODL_SIZES] = {in->params,   in->params_kept,        in->origin_macs, in->macs_kept,
                                       in->weights, in->weights_kept, in->origin_params_live, in->origin_macs_live};
    for (int i = 0; i < MODL_SIZES; i++) wbuf_u64(&b, (uint64_t)sizes[i]);
    wbuf_u64(&b, module_model_id(sm)); /* the tensors' integrity, as version 1's origin hash was */
    wbuf_u64(&b, b.failed ? 0 : modl_checksum(b.data, b.len));
    st = model_file_write_with(ctx, sm, path, MODEL_KIND_MODULE, TAG_MODL, &b, "module");
done:
    slice_report_free(&rep);
    ts_model_free(mm);
    ts_model_free(sm);
    return st;
}

/* Checks the section's checksum and reads its version (1 to MODL_VERSION). */
static ts_status modl_open(ts_ctx *ctx, rbuf *r, uint32_t *version) {
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
    ts_status st = rbuf_u32(r, version, "module version");
    if (st) return st;
    if (*version < 1 || *version > MODL_VERSION)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: module section version %u at byte %zu, this tessera reads 1 to %u",
                       r->path, *version, r->base + at, MODL_VERSION);
    return TS_OK;
}

/* The fields after the version; version 1 then holds the masks, versions 2 and 3 the slicing
 * (read by the caller). A version 1 origin hash must match the model in the file; a
 * version 2 one is the hash of the origin before slicing, taken as stored. */
static ts_status read_modl(ts_ctx *ctx, rbuf *r, ts_module *mod, uint32_t version) {
    uint32_t cls, pos, neg, nmasks;
    char *s = NULL;
    ts_status st;
    size_t at;
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
    if (version >= 2) mod->origin_id = id;
    else if (id != mod->origin_id)
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
    if (version >= 2) return TS_OK;
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

/* Which output channels of each origin layer a version 2 or 3 file kept: flags at
 * keep[off[li] + c]. */
typedef struct kept_channels {
    unsigned char *keep;
    int64_t *off;
} kept_channels;

/* The position of channel c among layer li's kept channels, or -1 when removed. */
static int64_t kept_rank(const kept_channels *k, int li, int64_t c) {
    const unsigned char *f = k->keep + k->off[li];
    if (!f[c]) return -1;
    int64_t r = 0;
    for (int64_t i = 0; i < c; i++) r += f[i];
    return r;
}

/* Layer li's kept channels in order, into idx (n of them expected). */
static int kept_list(const kept_channels *k, int li, int64_t *idx, int64_t n) {
    const unsigned char *f = k->keep + k->off[li];
    int64_t got = 0;
    for (int64_t c = 0; c < k->off[li + 1] - k->off[li]; c++)
        if (f[c]) {
            if (got == n) return 0;
            idx[got++] = c;
        }
    return got == n;
}

/* Scatters every tensor of the sliced model's layers into the origin-shaped o (zeroed
 * first), marking what the file held in present (o's params then buffers). Axis 0 of a
 * layer's tensor runs over its kept output channels, axis 1 of a weight over its
 * input's; other axes are whole. */
static ts_status expand(ts_ctx *ctx, const char *path, const ts_model *sm, ts_model *o, const kept_channels *k,
                        uint8_t *present) {
    memset(o->params, 0, o->nparams * sizeof(float));
    if (o->nbuffers) memset(o->buffers, 0, o->nbuffers * sizeof(float));
    int64_t maxc = 1;
    for (int li = 0; li < o->nlayers; li++)
        if (k->off[li + 1] - k->off[li] > maxc) maxc = k->off[li + 1] - k->off[li];
    for (int t = 0; t < o->ntensors; t++)
        for (int a = 0; a < 2 && a < o->tensors[t].shape.ndim; a++)
            if (o->tensors[t].shape.dims[a] > maxc) maxc = o->tensors[t].shape.dims[a];
    int64_t *m0 = malloc(sizeof *m0 * (size_t)maxc), *m1 = malloc(sizeof *m1 * (size_t)maxc);
    ts_status st = TS_OK;
    if (!m0 || !m1) {
        st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory expanding the module", path);
        goto done;
    }
    for (int li = 1; li < o->nlayers && !st; li++) {
        const layer *l = &o->layers[li];
        int j = 1;
        while (j < sm->nlayers && strcmp(sm->layers[j].name, l->name)) j++;
        if (j == sm->nlayers) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: origin layer '%s' is not in the module's sliced model", path, l->name);
            break;
        }
        const size_t on = strlen(l->name);
        for (int t = 0; t < o->ntensors && !st; t++) {
            const tensor_entry *te = &o->tensors[t];
            if (te->layer != li) continue;
            int u = 0;
            while (u < sm->ntensors && !(sm->tensors[u].layer == j && !strcmp(sm->tensors[u].name + on, te->name + on)))
                u++;
            const tensor_entry *se = u < sm->ntensors ? &sm->tensors[u] : NULL;
            int ok = se && se->shape.ndim == te->shape.ndim && se->role == te->role;
            int64_t d0 = te->shape.dims[0], e0 = ok ? se->shape.dims[0] : 0;
            int64_t d1 = te->shape.ndim > 1 ? te->shape.dims[1] : 1, e1 = ok && se->shape.ndim > 1 ? se->shape.dims[1] : 1;
            for (int a = 2; ok && a < te->shape.ndim; a++) ok = se->shape.dims[a] == te->shape.dims[a];
            /* axis 0: the layer's kept channels; axis 1: its input's */
            if (ok && e0 == d0)
                for (int64_t i = 0; i < d0; i++) m0[i] = i;
            else if (ok)
                ok = d0 == k->off[li + 1] - k->off[li] && kept_list(k, li, m0, e0);
            const int in = l->inputs[0];
            if (ok && te->shape.ndim > 1) {
                if (e1 == d1)
                    for (int64_t i = 0; i < d1; i++) m1[i] = i;
                else
                    ok = d1 == k->off[in + 1] - k->off[in] && kept_list(k, in, m1, e1);
            } else if (ok) {
                m1[0] = 0;
            }
            if (!ok) {
                st = ts_fail(ctx, TS_EFORMAT, "%s: tensor %s of the sliced model does not fit the origin's %s", path,
                             se ? se->name : "(missing)", te->name);
                break;
            }
            const int64_t rest = te->numel / (d0 * d1);
            const float *src = tensor_data((ts_model *)sm, u);
            float *dst = tensor_data(o, t);
            uint8_t *pr = present + (te->role == TS_TENSOR_PARAM ? 0 : o->nparams) + te->offset;
            for (int64_t a0 = 0; a0 < e0; a0++)
                for (int64_t a1 = 0; a1 < e1; a1++) {
                    const int64_t from = (a0 * e1 + a1) * rest, to = (m0[a0] * d1 + m1[a1]) * rest;
                    memcpy(dst + to, src + from, sizeof(float) * (size_t)rest);
                    memset(pr + to, 1, (size_t)rest);
                }
        }
    }
done:
    free(m0);
    free(m1);
    return st;
}

/* A version 2 or 3 file: tmp holds the common fields (read over the sliced model sm); the
 * rest of the section is read from r and the module rebuilt at the origin's shape. */
static ts_status load_sliced(ts_ctx *ctx, const char *path, rbuf *r, uint32_t version, const ts_model *sm,
                             ts_module *tmp, int64_t sizes[MODL_SIZES], ts_module **out) {
    uint32_t method, epoch, nl;
    double va, ova;
    char *arch = NULL;
    ts_model *o = NULL;
    ts_module *mod = NULL;
    kept_channels k = {0};
    uint8_t *present = NULL;
    ts_status st;
    size_t at;
    if ((st = rbuf_u32(r, &method, "method")) || (st = rbuf_u32(r, &epoch, "selected epoch")) ||
        (st = rbuf_f64(r, &va, "validation accuracy")) || (st = rbuf_f64(r, &ova, "origin validation accuracy")))
        goto done;
    if (method > TS_DECOMPOSE_GA) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: module method %u is not one this tessera knows", path, method);
        goto done;
    }
    at = r->off;
    if ((st = rbuf_str(r, &arch, MAX_ARCH, "origin architecture"))) goto done;
    if ((st = ts_model_from_arch(ctx, arch, path, NULL, 0, 0, &o))) {
        if (st != TS_ENOMEM) /* out of memory stays what it is */
            st = ts_fail(ctx, TS_EFORMAT, "%s: origin architecture at byte %zu: %s", path, r->base + at,
                         ts_ctx_error(ctx));
        goto done;
    }
    at = r->off;
    if ((st = rbuf_u32(r, &nl, "origin layer count"))) goto done;
    if (nl != (uint32_t)o->nlayers) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: %u layers at byte %zu, the origin architecture has %d", path, nl,
                     r->base + at, o->nlayers);
        goto done;
    }
    k.off = malloc(sizeof *k.off * (size_t)(o->nlayers + 1));
    if (!k.off) goto nomem;
    k.off[0] = 0;
    for (int li = 0; li < o->nlayers; li++) k.off[li + 1] = k.off[li] + o->layers[li].out.dims[0];
    if (!(k.keep = malloc((size_t)k.off[o->nlayers] + 1))) goto nomem;
    for (int li = 0; li < o->nlayers; li++) {
        uint64_t ch;
        at = r->off;
        if ((st = rbuf_u64(r, &ch, "channel count"))) goto done;
        if (ch != (uint64_t)o->layers[li].out.dims[0]) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: %llu channels for layer '%s' at byte %zu, the origin has %lld", path,
                         (unsigned long long)ch, o->layers[li].name, r->base + at, (long long)o->layers[li].out.dims[0]);
            goto done;
        }
        for (uint64_t c = 0; c < ch; c += 8) {
            uint8_t byte;
            if ((st = rbuf_u8(r, &byte, "kept channels"))) goto done;
            for (uint64_t i = c; i < c + 8 && i < ch; i++) k.keep[k.off[li] + (int64_t)i] = byte >> (i - c) & 1u;
        }
    }
    static const char *const size_names[MODL_SIZES] = {"origin parameters", "parameters kept", "origin MACs",
                                                        "MACs kept",         "weights",         "weights kept",
                                                        "origin live parameters", "origin live MACs"};
    for (int i = 0; version >= 3 && i < MODL_SIZES; i++) {
        uint64_t v;
        at = r->off;
        if ((st = rbuf_u64(r, &v, size_names[i]))) goto done;
        sizes[i] = (int64_t)v;
        /* the size each may not exceed (-1: none): a kept count its total; the origin's
         * live parameters and MACs its parameters and MACs */
        static const int8_t bound[MODL_SIZES] = {-1, 0, -1, 2, -1, 4, 0, 2};
        const int over = bound[i];
        if (v > (uint64_t)INT64_MAX || (over >= 0 && sizes[i] > sizes[over])) {
            st = ts_fail(ctx, TS_EFORMAT, "%s: %s at byte %zu is %llu, more than %s", path, size_names[i], r->base + at,
                         (unsigned long long)v, v > (uint64_t)INT64_MAX ? "a size can be" : size_names[over]);
            goto done;
        }
    }
    uint64_t id;
    at = r->off;
    if ((st = rbuf_u64(r, &id, "model hash"))) goto done;
    if (id != module_model_id(sm)) {
        st = ts_fail(ctx, TS_EFORMAT,
                     "%s: model hash at byte %zu does not match the sliced model stored in the file (corrupted tensors?)",
                     path, r->base + at);
        goto done;
    }
    if (r->off != r->len) {
        st = ts_fail(ctx, TS_EFORMAT, "%s: %zu unexpected bytes at the end of the module section", path, r->len - r->off);
        goto done;
    }
    if (!(present = calloc(o->nparams + o->nbuffers + 1, 1))) goto nomem;
    if ((st = expand(ctx, path, sm, o, &k, present))) goto done;
    for (int i = 0; i < sm->nmeta && !st; i++) st = ts_model_set_meta(ctx, o, sm->meta[i].key, sm->meta[i].value);
    if (st || (st = module_create(ctx, o, tmp->cls, &mod))) goto done;
    /* masks: removed channels 0; kept ones from the sliced model's mask, else whole */
    for (int i = 0; i < mod->nmasks; i++) {
        module_mask *mk = &mod->masks[i];
        const layer *l = &o->layers[mk->layer];
        const int64_t C = l->out.dims[0], plane = mk->units / C;
        char name[LAYER_NAME_MAX];
        snprintf(name, sizeof name, "%.*s.keep", LAYER_NAME_MAX - 6, l->name);
        int j = 1;
        while (j < sm->nlayers && strcmp(sm->layers[j].name, name)) j++;
        const float *keep = j < sm->nlayers && sm->layers[j].kind == LAYER_MASK ? tensor_data((ts_model *)sm, sm->layers[j].mask) : NULL;
        memset(mk->keep, 0, (size_t)mask_words(mk->units) * 8);
        for (int64_t c = 0; c < C; c++) {
            const int64_t rk = kept_rank(&k, mk->layer, c);
            if (rk < 0) continue;
            for (int64_t u = 0; u < plane; u++)
                if (!keep || keep[rk * plane + u] != 0.0f) mk->keep[(c * plane + u) >> 6] |= 1ull << ((c * plane + u) & 63);
        }
    }
    char *const strs[3] = {tmp->class_name, tmp->dataset, tmp->origin_name};
    free(mod->class_name);
    free(mod->dataset);
    free(mod->origin_name);
    mod->class_name = strs[0];
    mod->dataset = strs[1];
    mod->origin_name = strs[2];
    tmp->class_name = tmp->dataset = tmp->origin_name = NULL;
    mod->origin_id = tmp->origin_id;
    mod->info = tmp->info;
    mod->info.method = (ts_decompose_method)method;
    mod->info.selected_epoch = (int)epoch;
    mod->info.val_accuracy = va;
    mod->info.origin_val_accuracy = ova;
    mod->present = present;
    present = NULL;
    *out = mod;
    mod = NULL;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory reading the module", path);
done:
    free(arch);
    free(k.keep);
    free(k.off);
    free(present);
    ts_model_free(o);
    ts_module_free(mod);
    return st;
}

ts_status ts_module_load(ts_ctx *ctx, const char *path, ts_module **out) {
    if (!ctx || !path || !out) return ts_fail(ctx, TS_EINVAL, "ts_module_load: NULL argument");
    *out = NULL;
    ts_model *m = NULL;
    uint8_t *sec = NULL;
    size_t len = 0, base = 0;
    uint32_t version = 0;
    ts_status st = model_file_read(ctx, path, &m, TAG_MODL, &sec, &len, &base);
    if (st) return st;
    ts_module *mod = NULL, *tmp = NULL;
    int64_t sizes[MODL_SIZES] = {0};
    rbuf r = {sec, len, 0, base, path, ctx};
    if (!(st = modl_open(ctx, &r, &version)) && !(st = module_create(ctx, m, 0, &tmp)) &&
        !(st = read_modl(ctx, &r, tmp, version))) {
        if (version >= 2) {
            st = load_sliced(ctx, path, &r, version, m, tmp, sizes, &mod);
        } else {
            mod = tmp;
            tmp = NULL;
        }
    }
    ts_module_free(tmp);
    ts_model_free(m);
    free(sec);
    if (!st) st = module_count(ctx, mod);
    if (st) {
        ts_module_free(mod);
        return st;
    }
    if (version >= 3) { /* the figures against the real origin, which the file no longer holds whole */
        ts_module_info *in = &mod->info;
        in->params = sizes[0];
        in->params_kept = sizes[1];
        in->origin_macs = sizes[2];
        in->macs_kept = sizes[3];
        in->weights = sizes[4];
        in->weights_kept = sizes[5];
        in->origin_params_live = sizes[6];
        in->origin_macs_live = sizes[7];
        in->jaccard = in->weights ? (double)in->weights_kept / (double)in->weights : 1.0;
    }
    *out = mod;
    return TS_OK;
}
