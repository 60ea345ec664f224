/* The tokenizer of text datasets: ASCII lower-casing, whitespace and punctuation
 * splitting, UTF-8 kept whole and repaired. No locale is consulted, so the same
 * bytes give the same tokens everywhere. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

static int is_space_or_control(unsigned c) { return c <= 0x20 || c == 0x7f; }

static int is_ascii_punct(unsigned c) {
    return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid:
 * overlong forms, surrogates and code points above U+10FFFF are invalid. */
static int utf8_length(const uint8_t *s, size_t n) {
    unsigned c = s[0];
    int len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? (c <= 0xef ? 3 : 0) : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && c == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
    if (len == 3 && c == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
    if (len == 4 && c == 0xf0 && s[1] < 0x90) return 0;  /* overlong */
    if (len == 4 && c == 0xf4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return len;
}

/* Room for need_bytes in buf and one more token start. */
static ts_status grow(ts_ctx *ctx, data_tokens *t, size_t need_bytes) {
    if (need_bytes > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < need_bytes) {
            if (cap > SIZE_MAX / 2) return ts_fail(ctx, TS_ENOMEM, "tokenizer: text too large");
            cap *= 2;
        }
        char *b = realloc(t->buf, cap);
        if (!b) return ts_fail(ctx, TS_ENOMEM, "tokenizer: out of memory allocating %zu bytes", cap);
        t->buf = b;
        t->cap = cap;
    }
    if (t->count == t->cap_tokens) {
        if (t->cap_tokens > INT32_MAX / 2) return ts_fail(ctx, TS_ENOMEM, "tokenizer: too many tokens");
        int cap = t->cap_tokens ? t->cap_tokens * 2 : 64;
        int32_t *s = realloc(t->start, (size_t)cap * sizeof *s);
        if (!s) return ts_fail(ctx, TS_ENOMEM, "tokenizer: out of memory");
        t->start = s;
        t->cap_tokens = cap;
    }
    return TS_OK;
}

/* Appends one character (n bytes) to the open token, opening one when none is;
 * a character that would make the token longer than DATA_TOKEN_MAX is dropped.
 * An open token's NUL is at buf[size]; closing it moves size past that NUL. */
static ts_status put(ts_ctx *ctx, data_tokens *t, int *open, const uint8_t *ch, int n, int raw) {
    if (raw || !*open) {
        ts_status st = grow(ctx, t, t->size + DATA_TOKEN_MAX + 2);
        if (st) return st;
    }
    if (!*open) {
        t->start[t->count++] = (int32_t)t->size;
        t->buf[t->size] = '\0';
        *open = 1;
    }
    if (!raw && t->size - (size_t)t->start[t->count - 1] + (size_t)n > DATA_TOKEN_MAX) return TS_OK;
    memcpy(t->buf + t->size, ch, (size_t)n);
    t->size += (size_t)n;
    t->buf[t->size] = '\0';
    return TS_OK;
}

static void close_token(data_tokens *t, int *open) {
    if (*open) t->size++;
    *open = 0;
}

ts_status data_tokenize(ts_ctx *ctx, const char *text, size_t len, data_tokenize_mode mode, data_tokens *t) {
    static const uint8_t replacement[3] = {0xef, 0xbf, 0xbd}; /* U+FFFD */
    t->size = 0;
    t->count = 0;
    if (len > INT32_MAX / 4) return ts_fail(ctx, TS_EINVAL, "tokenizer: text of %zu bytes is too long", len);
    const uint8_t *s = (const uint8_t *)text;
    int open = 0;
    ts_status st = TS_OK;
    int raw = mode == TOKENIZE_RAW;
    for (size_t i = 0; i < len && !st;) {
        unsigned c = s[i];
        if (raw) {
            i++;
            if (c <= 0x20 || c == 0x7f)
                close_token(t, &open);
            else
                st = put(ctx, t, &open, s + i - 1, 1, 1);
            continue;
        }
        if (c < 0x80) {
            i++;
            if (is_space_or_control(c)) {
                close_token(t, &open);
            } else if (mode == TOKENIZE_TEXT && is_ascii_punct(c)) {
                uint8_t ch = (uint8_t)c;
                close_token(t, &open);
                st = put(ctx, t, &open, &ch, 1, 0);
                close_token(t, &open);
            } else {
                uint8_t ch = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                st = put(ctx, t, &open, &ch, 1, 0);
            }
            continue;
        }
        int n = utf8_length(s + i, len - i);
        st = n ? put(ctx, t, &open, s + i, n, 0) : put(ctx, t, &open, replacement, 3, 0);
        i += n ? (size_t)n : 1;
    }
    close_token(t, &open);
    return st;
}

void data_tokens_free(data_tokens *t) {
    if (!t) return;
    free(t->buf);
    free(t->start);
    memset(t, 0, sizeof *t);
}

void ts_text_free(void *p) { free(p); }

ts_status ts_text_tokenize(ts_ctx *ctx, const char *text, char **tokens, int *count) {
    if (tokens) *tokens = NULL;
    if (count) *count = 0;
    if (!text) return ts_fail(ctx, TS_EINVAL, "ts_text_tokenize: text is NULL");
    data_tokens t = {0};
    ts_status st = data_tokenize(ctx, text, strlen(text), TOKENIZE_TEXT, &t);
    if (st) {
        data_tokens_free(&t);
        return st;
    }
    if (count) *count = t.count;
    if (tokens) {
        char *out = malloc(t.size + 1); /* the NULs between tokens become spaces */
        if (!out) {
            data_tokens_free(&t);
            return ts_fail(ctx, TS_ENOMEM, "ts_text_tokenize: out of memory");
        }
        size_t n = 0;
        for (int i = 0; i < t.count; i++) {
            const char *w = t.buf + t.start[i];
            size_t l = strlen(w);
            if (i) out[n++] = ' ';
            memcpy(out + n, w, l);
            n += l;
        }
        out[n] = '\0';
        *tokens = out;
    }
    data_tokens_free(&t);
    return TS_OK;
}
