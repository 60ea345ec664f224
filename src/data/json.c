/* A strict JSON reader for the shapes text datasets use (objects, arrays,
 * strings): a cursor over a buffer, with every read bounds-checked and a depth
 * limit, so hostile input fails with the byte offset. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

static void skip_ws(json_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static long long offset(const json_cursor *c) { return (long long)(c->p - c->start); }

int json_accept(json_cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

int json_at_end(json_cursor *c) {
    skip_ws(c);
    return c->p == c->end;
}

ts_status json_expect(ts_ctx *ctx, json_cursor *c, char ch, const char *what) {
    if (json_accept(c, ch)) return TS_OK;
    if (c->p >= c->end)
        return ts_fail(ctx, TS_EFORMAT, "%s: ends at byte %lld (expected '%c' %s)", c->file, offset(c), ch, what);
    return ts_fail(ctx, TS_EFORMAT, "%s: byte %lld: expected '%c' %s", c->file, offset(c), ch, what);
}

/* Four hex digits at p (the caller checked that 4 bytes remain); 0 when one is not. */
static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) return 0;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The escape at c->p (after the backslash) into o; bytes written, 0 when invalid. */
static size_t unescape(json_cursor *c, char *o) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (c->p >= c->end) return 0;
    const char *hit = strchr(from, *c->p);
    if (hit && *c->p) {
        c->p++;
        *o = to[hit - from];
        return 1;
    }
    unsigned cp, lo;
    if (*c->p != 'u' || c->end - c->p < 5 || !hex4(c->p + 1, &cp)) return 0;
    c->p += 5;
    if (cp >= 0xdc00 && cp <= 0xdfff) return 0; /* a lone low surrogate */
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || !hex4(c->p + 2, &lo) || lo < 0xdc00 ||
            lo > 0xdfff)
            return 0;
        c->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    return put_utf8(o, cp);
}

ts_status json_string(ts_ctx *ctx, json_cursor *c, char **out, size_t *len) {
    *out = NULL;
    ts_status st = json_expect(ctx, c, '"', "(a string)");
    if (st) return st;
    const char *begin = c->p;
    /* the unescaped string is never longer than its source */
    const char *q = begin;
    while (q < c->end && *q != '"') q += *q == '\\' && q + 1 < c->end ? 2 : 1;
    if (q >= c->end)
        return ts_fail(ctx, TS_EFORMAT, "%s: string at byte %lld has no end", c->file,
                       (long long)(begin - c->start - 1));
    char *s = malloc((size_t)(q - begin) + 1);
    if (!s) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", c->file);
    size_t n = 0;
    while (*c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch < 0x20) {
            free(s);
            return ts_fail(ctx, TS_EFORMAT, "%s: byte %lld: control character in a string", c->file, offset(c));
        }
        if (ch != '\\') {
            s[n++] = (char)ch;
            c->p++;
            continue;
        }
        c->p++;
        size_t k = unescape(c, s + n);
        if (!k) {
            free(s);
            return ts_fail(ctx, TS_EFORMAT, "%s: byte %lld: bad escape in a string", c->file, offset(c));
        }
        n += k;
    }
    c->p++;
    s[n] = '\0';
    *out = s;
    if (len) *len = n;
    return TS_OK;
}

/* A number or literal: the bytes JSON allows in them, at least one. */
static ts_status skip_scalar(ts_ctx *ctx, json_cursor *c) {
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(words[i]);
        if ((size_t)(c->end - c->p) >= l && memcmp(c->p, words[i], l) == 0) {
            c->p += l;
            return TS_OK;
        }
    }
    const char *b = c->p;
    while (c->p < c->end && strchr("0123456789+-.eE", *c->p) && *c->p) c->p++;
    if (c->p == b) return ts_fail(ctx, TS_EFORMAT, "%s: byte %lld: expected a JSON value", c->file, offset(c));
    return TS_OK;
}

ts_status json_skip(ts_ctx *ctx, json_cursor *c) {
    skip_ws(c);
    if (c->p >= c->end) return ts_fail(ctx, TS_EFORMAT, "%s: ends at byte %lld (expected a value)", c->file, offset(c));
    char open = *c->p;
    if (open == '"') {
        char *s;
        ts_status st = json_string(ctx, c, &s, NULL);
        free(s);
        return st;
    }
    if (open != '[' && open != '{') return skip_scalar(ctx, c);
    if (++c->depth > JSON_MAX_DEPTH)
        return ts_fail(ctx, TS_EFORMAT, "%s: byte %lld: nested deeper than %d", c->file, offset(c), JSON_MAX_DEPTH);
    c->p++;
    char close = open == '[' ? ']' : '}';
    ts_status st = TS_OK;
    if (!json_accept(c, close)) {
        do {
            if (open == '{') {
                char *key;
                st = json_string(ctx, c, &key, NULL);
                free(key);
                if (!st) st = json_expect(ctx, c, ':', "after a key");
            }
            if (!st) st = json_skip(ctx, c);
        } while (!st && json_accept(c, ','));
        if (!st) st = json_expect(ctx, c, close, open == '[' ? "to end an array" : "to end an object");
    }
    c->depth--;
    return st;
}
