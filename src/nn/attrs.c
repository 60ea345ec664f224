/* Layer attributes driven by the schema in LAYER_OPS (layer_table.c): defaults,
 * range checks, the text form of each value (parsed and written the same way), so
 * a new kind's keys need no code here. */
#include "nn.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *float_field(const attr_spec *sp, layer_attrs *a, int second) {
    return (float *)(void *)((char *)a + (second ? sp->off2 : sp->off));
}
static ts_shape *shape_field(const attr_spec *sp, layer_attrs *a) { return (ts_shape *)(void *)((char *)a + sp->off); }
static const int *cint(const attr_spec *sp, const layer_attrs *a, int second) {
    return attr_int_field(sp, (layer_attrs *)a, second);
}

const attr_spec *attr_find(layer_kind kind, const char *key) {
    for (int i = 0; i < LAYER_OPS[kind].nattrs; i++)
        if (!strcmp(LAYER_OPS[kind].attrs[i].key, key)) return &LAYER_OPS[kind].attrs[i];
    return NULL;
}

static void set_default(const attr_spec *sp, layer_attrs *a) {
    switch (sp->type) {
    case ATTR_INT:
    case ATTR_OUT:
    case ATTR_CHOICE: *attr_int_field(sp, a, 0) = (int)sp->def; break;
    case ATTR_FLOAT: *float_field(sp, a, 0) = (float)sp->def; break;
    case ATTR_PAIR: *attr_int_field(sp, a, 0) = *attr_int_field(sp, a, 1) = (int)sp->def; break;
    case ATTR_FPAIR: *float_field(sp, a, 0) = *float_field(sp, a, 1) = (float)sp->def; break;
    case ATTR_PADDING: a->ph = a->pw = a->pbh = a->pbw = 0; break;
    case ATTR_SHAPE: {
        ts_shape *s = shape_field(sp, a);
        memset(s, 0, sizeof *s);
        if (sp->def > 0) { /* prelu: one slope */
            s->ndim = 1;
            s->dims[0] = (int64_t)sp->def;
        }
        break;
    }
    case ATTR_INTLIST: *attr_int_field(sp, a, 1) = 0; break;
    }
}

void nn_attrs_default(layer_kind kind, layer_attrs *a) {
    memset(a, 0, sizeof *a);
    a->dh = a->dw = 1; /* average pooling has no dilation key: it is 1 */
    for (int i = 0; i < LAYER_OPS[kind].nattrs; i++) set_default(&LAYER_OPS[kind].attrs[i], a);
}

/* ---- parsing one value */

static int expect(char *expected, size_t cap, const char *fmt, ...) TS_PRINTF(3, 4);
static int expect(char *expected, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(expected, cap, fmt, ap);
    va_end(ap);
    return 0;
}

static int parse_int_text(const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* "3" -> (3,3); "3x5" -> (3,5) */
static int parse_pair_text(const char *val, long lo, long hi, long *a, long *b) {
    char *end;
    errno = 0;
    long v1 = strtol(val, &end, 10), v2 = v1;
    if (!errno && end != val && *end == 'x') {
        const char *s2 = end + 1;
        v2 = strtol(s2, &end, 10);
        if (end == s2) return 0;
    }
    if (errno || end == val || *end || v1 < lo || v2 < lo || v1 > hi || v2 > hi) return 0;
    *a = v1;
    *b = v2;
    return 1;
}

/* "1.5" -> (1.5, 1.5); "2x0.5" -> (2, 0.5): decimal numbers in lo..hi (no hex: "0x2"
 * is refused, not read as 2) */
static int parse_fpair_text(const char *val, double lo, double hi, float *a, float *b) {
    float v[2];
    const char *s = val;
    int count = 0;
    for (; count < 2; count++) {
        const char *x = strchr(s, 'x'), *stop = x ? x : s + strlen(s);
        char part[64];
        if (stop == s || (size_t)(stop - s) >= sizeof part || strchr(s, 'X') || (x && count == 1)) return 0;
        memcpy(part, s, (size_t)(stop - s));
        part[stop - s] = '\0';
        char *end;
        errno = 0;
        v[count] = strtof(part, &end);
        if (errno || *end || !(v[count] >= lo && v[count] <= hi)) return 0;
        if (!x) break;
        s = x + 1;
    }
    *a = v[0];
    *b = count ? v[1] : v[0];
    return 1;
}

/* padding=N, HxW, or t,l,b,r (top, left, bottom, right: ONNX pads begin_h, begin_w,
 * end_h, end_w); the symmetric forms set bottom = top, right = left */
static int parse_padding_text(const char *val, long v[4]) {
    int count = 0;
    char sep = 0;
    const char *s = val;
    for (;;) {
        char *end;
        errno = 0;
        v[count] = strtol(s, &end, 10);
        if (errno || end == s || !isdigit((unsigned char)*s) || v[count] > 65536) break;
        count++;
        if (*end == '\0') {
            s = end;
            break;
        }
        if (count == 4 || (sep && *end != sep) || (*end != 'x' && *end != ',')) break;
        sep = *end;
        s = end + 1;
    }
    if (*s != '\0' || !(count == 1 || (count == 2 && sep == 'x') || (count == 4 && sep == ','))) return 0;
    if (count == 1) v[1] = v[0];
    if (count < 4) v[2] = v[0], v[3] = v[1];
    return 1;
}

/* "3x32x32" */
static int parse_dims_text(const char *val, ts_shape *s, int *too_many) {
    memset(s, 0, sizeof *s);
    *too_many = 0;
    for (const char *p = val; *p;) {
        if (s->ndim == TS_MAX_DIMS) {
            *too_many = 1;
            return 0;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > (1L << 24)) return 0;
        s->dims[s->ndim++] = v;
        if (*end == 'x') p = end + 1;
        else if (*end == '\0') p = end;
        else return 0;
    }
    return s->ndim > 0;
}

int attr_parse(const attr_spec *sp, const char *val, int classes, layer_attrs *a, char *expected, size_t cap) {
    switch (sp->type) {
    case ATTR_OUT:
        if (!strcmp(val, "classes")) {
            if (classes < 1) return expect(expected, cap, "a number: out=classes needs classes=N on the input line");
            *attr_int_field(sp, a, 0) = classes;
            return 1;
        }
        /* fall through */
    case ATTR_INT: {
        long v;
        if (!parse_int_text(val, (long)sp->lo, (long)sp->hi, &v))
            return expect(expected, cap, "an integer in %ld..%ld", (long)sp->lo, (long)sp->hi);
        *attr_int_field(sp, a, 0) = (int)v;
        return 1;
    }
    case ATTR_FLOAT: {
        char *end;
        errno = 0;
        float v = strtof(val, &end);
        if (errno || end == val || *end || !(v >= sp->lo && v <= sp->hi)) {
            if (sp->lo == -FLT_MAX && sp->hi == FLT_MAX) return expect(expected, cap, "a finite number");
            return expect(expected, cap, "a number in %g..%g", sp->lo, sp->hi);
        }
        *float_field(sp, a, 0) = v;
        return 1;
    }
    case ATTR_PAIR: {
        long v1, v2;
        if (!parse_pair_text(val, (long)sp->lo, (long)sp->hi, &v1, &v2))
            return expect(expected, cap, "N or HxW, N >= %ld", (long)sp->lo);
        *attr_int_field(sp, a, 0) = (int)v1;
        *attr_int_field(sp, a, 1) = (int)v2;
        return 1;
    }
    case ATTR_FPAIR:
        if (!parse_fpair_text(val, sp->lo, sp->hi, float_field(sp, a, 0), float_field(sp, a, 1)))
            return expect(expected, cap, "F or FxF, each in %g..%g", sp->lo, sp->hi);
        return 1;
    case ATTR_PADDING: {
        long v[4];
        if (!parse_padding_text(val, v))
            return expect(expected, cap, "N, HxW or t,l,b,r (top, left, bottom, right), each 0..65536");
        a->ph = (int)v[0];
        a->pw = (int)v[1];
        a->pbh = (int)v[2];
        a->pbw = (int)v[3];
        return 1;
    }
    case ATTR_SHAPE: {
        int too_many;
        if (!parse_dims_text(val, shape_field(sp, a), &too_many))
            return expect(expected, cap, too_many ? "at most 6 dimensions like 3x32x32" : "dimensions like 3x32x32");
        return 1;
    }
    case ATTR_INTLIST: {
        int *out = attr_int_field(sp, a, 0), c = 0;
        const int max = sp->off2 == offsetof(layer_attrs, npads) ? 2 * TS_MAX_DIMS : TS_MAX_DIMS;
        for (const char *p = val;;) {
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (errno || end == p || v < sp->lo || v > sp->hi || c == max || (*end != ',' && *end != '\0'))
                return expect(expected, cap, "at most %d comma-separated integers in %ld..%ld", max, (long)sp->lo,
                              (long)sp->hi);
            out[c++] = (int)v;
            if (*end == '\0') break;
            p = end + 1;
        }
        *attr_int_field(sp, a, 1) = c;
        return 1;
    }
    case ATTR_CHOICE: {
        size_t len = (size_t)snprintf(expected, cap, "one of");
        for (int i = 0; sp->choices[i]; i++) {
            if (!strcmp(val, sp->choices[i])) {
                *attr_int_field(sp, a, 0) = i;
                return 1;
            }
            if (len < cap) len += (size_t)snprintf(expected + len, cap - len, "%s %s", i ? "," : "", sp->choices[i]);
        }
        return 0;
    }
    }
    return expect(expected, cap, "a known attribute type");
}

/* ---- writing one value */

int attr_write_value(const attr_spec *sp, const layer_attrs *a, char *dst, size_t cap) {
    if (cap) dst[0] = '\0';
    switch (sp->type) {
    case ATTR_INT:
    case ATTR_OUT: return snprintf(dst, cap, "%d", *cint(sp, a, 0));
    case ATTR_FLOAT: return snprintf(dst, cap, "%.9g", (double)*float_field(sp, (layer_attrs *)a, 0));
    case ATTR_PAIR: return snprintf(dst, cap, "%dx%d", *cint(sp, a, 0), *cint(sp, a, 1));
    case ATTR_FPAIR:
        return snprintf(dst, cap, "%.9gx%.9g", (double)*float_field(sp, (layer_attrs *)a, 0),
                        (double)*float_field(sp, (layer_attrs *)a, 1));
    case ATTR_PADDING:
        if (a->pbh == a->ph && a->pbw == a->pw) return snprintf(dst, cap, "%dx%d", a->ph, a->pw);
        return snprintf(dst, cap, "%d,%d,%d,%d", a->ph, a->pw, a->pbh, a->pbw);
    case ATTR_SHAPE:
    case ATTR_INTLIST: {
        const ts_shape *s = shape_field(sp, (layer_attrs *)a);
        const int n = sp->type == ATTR_SHAPE ? s->ndim : *cint(sp, a, 1);
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            long long v = sp->type == ATTR_SHAPE ? (long long)s->dims[i] : (long long)cint(sp, a, 0)[i];
            int w = snprintf(len < cap ? dst + len : NULL, len < cap ? cap - len : 0, "%s%lld",
                             i ? (sp->type == ATTR_SHAPE ? "x" : ",") : "", v);
            if (w > 0) len += (size_t)w;
        }
        return (int)len;
    }
    case ATTR_CHOICE: {
        const int v = *cint(sp, a, 0);
        if (v < sp->lo || v > sp->hi) return snprintf(dst, cap, "%d", v); /* attrs_check refuses it */
        return snprintf(dst, cap, "%s", sp->choices[v]);
    }
    }
    return 0;
}

int attr_is_default(const attr_spec *sp, const layer_attrs *a) {
    layer_attrs d;
    memset(&d, 0, sizeof d);
    set_default(sp, &d);
    char x[256], y[256];
    attr_write_value(sp, a, x, sizeof x);
    attr_write_value(sp, &d, y, sizeof y);
    return !strcmp(x, y);
}

int attrs_write(layer_kind kind, const layer_attrs *a, char *dst, size_t cap) {
    size_t len = 0;
    if (cap) dst[0] = '\0';
    for (int i = 0; i < LAYER_OPS[kind].nattrs; i++) {
        const attr_spec *sp = &LAYER_OPS[kind].attrs[i];
        if ((sp->flags & ATTR_OMIT_DEFAULT) && attr_is_default(sp, a)) continue;
        if (sp->type == ATTR_INTLIST && *cint(sp, a, 1) == 0) continue; /* not resolved: the default */
        char v[256];
        attr_write_value(sp, a, v, sizeof v);
        int w = snprintf(len < cap ? dst + len : NULL, len < cap ? cap - len : 0, " %s=%s", sp->key, v);
        if (w > 0) len += (size_t)w;
    }
    return (int)len;
}

/* ---- checks for attributes set in code (the parser checks as it reads) */

ts_status attrs_check(ts_ctx *ctx, layer_kind kind, const layer_attrs *a, const char *where) {
    for (int i = 0; i < LAYER_OPS[kind].nattrs; i++) {
        const attr_spec *sp = &LAYER_OPS[kind].attrs[i];
        int ok = 1;
        switch (sp->type) {
        case ATTR_INT:
        case ATTR_OUT:
        case ATTR_CHOICE: ok = *cint(sp, a, 0) >= sp->lo && *cint(sp, a, 0) <= sp->hi; break;
        case ATTR_FLOAT: {
            const float v = *float_field(sp, (layer_attrs *)a, 0);
            ok = v >= sp->lo && v <= sp->hi;
            if (sp->flags & ATTR_OMIT_DEFAULT) ok |= v == (float)sp->def; /* clip: no bound */
            break;
        }
        case ATTR_PAIR:
            for (int k = 0; k < 2; k++) {
                const int v = *cint(sp, a, k);
                ok &= (v >= sp->lo && v <= sp->hi) || (v == 0 && (sp->flags & ATTR_KERNEL_DEFAULT)) ||
                      (v == (int)sp->def && (sp->flags & ATTR_OMIT_DEFAULT));
            }
            break;
        case ATTR_FPAIR:
            for (int k = 0; k < 2; k++) {
                const float v = *float_field(sp, (layer_attrs *)a, k);
                ok &= (v >= sp->lo && v <= sp->hi) || ((sp->flags & ATTR_OMIT_DEFAULT) && v == (float)sp->def);
            }
            break;
        case ATTR_PADDING:
            ok = a->ph >= 0 && a->pw >= 0 && a->pbh >= 0 && a->pbw >= 0 && a->ph <= 65536 && a->pw <= 65536 &&
                 a->pbh <= 65536 && a->pbw <= 65536;
            break;
        case ATTR_SHAPE: {
            const ts_shape *s = shape_field(sp, (layer_attrs *)a);
            ok = s->ndim >= 0 && s->ndim <= TS_MAX_DIMS && (s->ndim > 0 || !(sp->flags & ATTR_REQUIRED));
            for (int d = 0; ok && d < s->ndim; d++) ok = s->dims[d] >= 1 && s->dims[d] <= (int64_t)sp->hi;
            break;
        }
        case ATTR_INTLIST: {
            const int n = *cint(sp, a, 1);
            const int max = sp->off2 == offsetof(layer_attrs, npads) ? 2 * TS_MAX_DIMS : TS_MAX_DIMS;
            ok = n >= 0 && n <= max && (n > 0 || !(sp->flags & ATTR_REQUIRED));
            for (int k = 0; ok && k < n; k++) ok = cint(sp, a, 0)[k] >= sp->lo && cint(sp, a, 0)[k] <= sp->hi;
            break;
        }
        }
        if (!ok) {
            char v[256];
            attr_write_value(sp, a, v, sizeof v);
            return ts_fail(ctx, TS_EINVAL, "%s: %s=%s is out of range%s", where, sp->key, *v ? v : "(none)",
                           sp->flags & ATTR_REQUIRED ? " or missing" : "");
        }
    }
    return TS_OK;
}
