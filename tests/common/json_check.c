/* json_check: a recursive-descent reader that accepts only valid JSON. */
#include "common/json_check.h"

#include <string.h>

typedef struct reader {
    const char *s;
    long at;
    int depth;
} reader;

static void skip_ws(reader *r) {
    while (r->s[r->at] == ' ' || r->s[r->at] == '\t' || r->s[r->at] == '\n' || r->s[r->at] == '\r') r->at++;
}

static int value(reader *r);

static int string(reader *r) {
    if (r->s[r->at] != '"') return 0;
    for (r->at++;; r->at++) {
        const unsigned char c = (unsigned char)r->s[r->at];
        if (c == '"') {
            r->at++;
            return 1;
        }
        if (c < 0x20) return 0; /* control characters must be escaped (and NUL ends the text) */
        if (c != '\\') continue;
        const char e = r->s[++r->at];
        if (e == 'u') {
            for (int i = 1; i <= 4; i++)
                if (!strchr("0123456789abcdefABCDEF", r->s[r->at + i]) || !r->s[r->at + i]) return 0;
            r->at += 4;
        } else if (!e || !strchr("\"\\/bfnrt", e)) {
            return 0;
        }
    }
}

static int digits(reader *r) {
    long from = r->at;
    while (r->s[r->at] >= '0' && r->s[r->at] <= '9') r->at++;
    return r->at > from;
}

static int number(reader *r) {
    if (r->s[r->at] == '-') r->at++;
    if (r->s[r->at] == '0') r->at++;
    else if (!digits(r)) return 0;
    if (r->s[r->at] == '.') {
        r->at++;
        if (!digits(r)) return 0;
    }
    if (r->s[r->at] == 'e' || r->s[r->at] == 'E') {
        r->at++;
        if (r->s[r->at] == '+' || r->s[r->at] == '-') r->at++;
        if (!digits(r)) return 0;
    }
    return 1;
}

static int word(reader *r, const char *w) {
    size_t n = strlen(w);
    if (strncmp(r->s + r->at, w, n)) return 0;
    r->at += (long)n;
    return 1;
}

/* The members of an object or the elements of an array, after its opening bracket. */
static int members(reader *r, char close, int keyed) {
    skip_ws(r);
    if (r->s[r->at] == close) {
        r->at++;
        return 1;
    }
    for (;;) {
        skip_ws(r);
        if (keyed) {
            if (!string(r)) return 0;
            skip_ws(r);
            if (r->s[r->at++] != ':') return 0;
        }
        if (!value(r)) return 0;
        skip_ws(r);
        const char c = r->s[r->at++];
        if (c == close) return 1;
        if (c != ',') return 0;
    }
}

static int value(reader *r) {
    skip_ws(r);
    if (++r->depth > 256) return 0;
    int ok;
    switch (r->s[r->at]) {
    case '{': r->at++; ok = members(r, '}', 1); break;
    case '[': r->at++; ok = members(r, ']', 0); break;
    case '"': ok = string(r); break;
    case 't': ok = word(r, "true"); break;
    case 'f': ok = word(r, "false"); break;
    case 'n': ok = word(r, "null"); break;
    default: ok = number(r);
    }
    r->depth--;
    return ok;
}

int json_check(const char *s, long *error_at) {
    reader r = {s, 0, 0};
    int ok = value(&r);
    skip_ws(&r);
    ok = ok && !s[r.at];
    if (error_at) *error_at = ok ? -1 : r.at;
    return ok;
}
