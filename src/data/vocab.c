/* The vocabulary of a text dataset: words and their training counts by id, a
 * hash table from word to id, and a text form for a model's metadata. */
#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ts_vocab {
    int32_t size, cap;
    char **words;    /* (size) owned */
    int64_t *counts; /* (size) training counts; 0 for the four specials */
    int32_t *slots;  /* (nslots) id + 1, or 0 when empty; open addressing */
    size_t nslots;   /* a power of two, more than twice size */
};

static const char *const specials[4] = {"<pad>", "<unk>", "<bos>", "<eos>"};

static size_t slot_of(const ts_vocab *v, const char *word, size_t len) {
    size_t i = (size_t)data_fnv1a(word, len) & (v->nslots - 1);
    for (;; i = (i + 1) & (v->nslots - 1)) {
        int32_t id = v->slots[i];
        if (!id || (strncmp(v->words[id - 1], word, len) == 0 && v->words[id - 1][len] == '\0')) return i;
    }
}

static ts_status rehash(ts_ctx *ctx, ts_vocab *v, size_t nslots) {
    int32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return ts_fail(ctx, TS_ENOMEM, "vocabulary: out of memory");
    free(v->slots);
    v->slots = slots;
    v->nslots = nslots;
    for (int32_t id = 0; id < v->size; id++) v->slots[slot_of(v, v->words[id], strlen(v->words[id]))] = id + 1;
    return TS_OK;
}

static ts_status vocab_new(ts_ctx *ctx, ts_vocab **out) {
    *out = NULL;
    ts_vocab *v = calloc(1, sizeof *v);
    if (!v) return ts_fail(ctx, TS_ENOMEM, "vocabulary: out of memory");
    ts_status st = rehash(ctx, v, 64);
    if (st) {
        free(v);
        return st;
    }
    *out = v;
    return TS_OK;
}

/* Adds a word that is not there yet; *id gets its id. */
static ts_status vocab_add(ts_ctx *ctx, ts_vocab *v, const char *word, size_t len, int64_t count, int32_t *id) {
    if (v->size >= INT32_MAX / 4) return ts_fail(ctx, TS_ENOMEM, "vocabulary: too many words");
    if ((size_t)(v->size + 1) * 2 >= v->nslots) {
        ts_status st = rehash(ctx, v, v->nslots * 2);
        if (st) return st;
    }
    if (v->size == v->cap) {
        int32_t cap = v->cap ? v->cap * 2 : 64;
        char **w = realloc(v->words, (size_t)cap * sizeof *w);
        if (w) v->words = w;
        int64_t *c = w ? realloc(v->counts, (size_t)cap * sizeof *c) : NULL;
        if (!c) return ts_fail(ctx, TS_ENOMEM, "vocabulary: out of memory");
        v->counts = c;
        v->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return ts_fail(ctx, TS_ENOMEM, "vocabulary: out of memory");
    memcpy(copy, word, len);
    copy[len] = '\0';
    size_t slot = slot_of(v, word, len);
    v->words[v->size] = copy;
    v->counts[v->size] = count;
    v->slots[slot] = ++v->size;
    *id = v->size - 1;
    return TS_OK;
}

static int32_t find(const ts_vocab *v, const char *word, size_t len) {
    int32_t id = v->slots[slot_of(v, word, len)];
    return id ? id - 1 : -1;
}

void ts_vocab_free(ts_vocab *v) {
    if (!v) return;
    for (int32_t i = 0; i < v->size; i++) free(v->words[i]);
    free(v->words);
    free(v->counts);
    free(v->slots);
    free(v);
}

int32_t ts_vocab_size(const ts_vocab *v) { return v ? v->size : 0; }

int32_t ts_vocab_id(const ts_vocab *v, const char *word) {
    if (!v || !word) return TS_TOKEN_UNK;
    int32_t id = find(v, word, strlen(word));
    return id < 0 ? TS_TOKEN_UNK : id;
}

const char *ts_vocab_word(const ts_vocab *v, int32_t id) { return v && id >= 0 && id < v->size ? v->words[id] : NULL; }

/* ------------------------------------------------------------- building */

ts_status data_vocab_counter(ts_ctx *ctx, ts_vocab **out) { return vocab_new(ctx, out); }

ts_status data_vocab_count(ts_ctx *ctx, ts_vocab *counter, const char *word) {
    size_t len = strlen(word);
    int32_t id = find(counter, word, len);
    if (id >= 0) {
        counter->counts[id]++;
        return TS_OK;
    }
    return vocab_add(ctx, counter, word, len, 1, &id);
}

static int by_count_then_bytes(int32_t x, int32_t y, const ts_vocab *v) {
    if (v->counts[x] != v->counts[y]) return v->counts[x] > v->counts[y] ? -1 : 1;
    return strcmp(v->words[x], v->words[y]);
}

static int is_special(const char *w) {
    for (int i = 0; i < 4; i++)
        if (strcmp(w, specials[i]) == 0) return 1;
    return 0;
}

/* Merge sort of ids by descending count, ties in byte order (qsort has no
 * context argument in C11, and a comparator must not read global state). */
static void sort_ids(int32_t *ids, int32_t *tmp, int32_t n, const ts_vocab *v) {
    if (n < 2) return;
    int32_t h = n / 2;
    sort_ids(ids, tmp, h, v);
    sort_ids(ids + h, tmp, n - h, v);
    int32_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = by_count_then_bytes(ids[j], ids[i], v) < 0 ? ids[j++] : ids[i++];
    while (i < h) tmp[k++] = ids[i++];
    while (j < n) tmp[k++] = ids[j++];
    memcpy(ids, tmp, (size_t)n * sizeof *ids);
}

ts_status data_vocab_finish(ts_ctx *ctx, const ts_vocab *counter, int min_count, ts_vocab **out) {
    *out = NULL;
    if (min_count < 1) min_count = 1;
    int32_t n = 0;
    int32_t *ids = malloc(((size_t)counter->size + 1) * sizeof *ids);
    int32_t *tmp = ids ? malloc(((size_t)counter->size + 1) * sizeof *tmp) : NULL;
    ts_vocab *v = NULL;
    ts_status st = tmp ? vocab_new(ctx, &v) : ts_fail(ctx, TS_ENOMEM, "vocabulary: out of memory");
    for (int32_t i = 0; !st && i < counter->size; i++)
        if (counter->counts[i] >= min_count && !is_special(counter->words[i])) ids[n++] = i;
    if (!st) sort_ids(ids, tmp, n, counter);
    int32_t id;
    for (int i = 0; !st && i < 4; i++) st = vocab_add(ctx, v, specials[i], strlen(specials[i]), 0, &id);
    for (int32_t i = 0; !st && i < n; i++)
        st = vocab_add(ctx, v, counter->words[ids[i]], strlen(counter->words[ids[i]]), counter->counts[ids[i]], &id);
    free(ids);
    free(tmp);
    if (st) {
        ts_vocab_free(v);
        return st;
    }
    *out = v;
    return TS_OK;
}

ts_status data_vocab_copy(ts_ctx *ctx, const ts_vocab *src, ts_vocab **out) {
    *out = NULL;
    ts_vocab *v;
    ts_status st = vocab_new(ctx, &v);
    int32_t id;
    for (int32_t i = 0; !st && i < src->size; i++)
        st = vocab_add(ctx, v, src->words[i], strlen(src->words[i]), src->counts[i], &id);
    if (st) {
        ts_vocab_free(v);
        return st;
    }
    *out = v;
    return TS_OK;
}

ts_status ts_vocab_build(ts_ctx *ctx, const char *const *texts, int64_t count, int min_count, ts_vocab **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "ts_vocab_build: out is NULL");
    *out = NULL;
    if (count < 0 || (count && !texts)) return ts_fail(ctx, TS_EINVAL, "ts_vocab_build: no texts");
    ts_vocab *counter;
    data_tokens t = {0};
    ts_status st = data_vocab_counter(ctx, &counter);
    for (int64_t i = 0; !st && i < count; i++) {
        if (!texts[i]) {
            st = ts_fail(ctx, TS_EINVAL, "ts_vocab_build: text %lld is NULL", (long long)i);
            break;
        }
        st = data_tokenize(ctx, texts[i], strlen(texts[i]), TOKENIZE_TEXT, &t);
        for (int k = 0; !st && k < t.count; k++) st = data_vocab_count(ctx, counter, t.buf + t.start[k]);
    }
    if (!st) st = data_vocab_finish(ctx, counter, min_count, out);
    data_tokens_free(&t);
    ts_vocab_free(counter);
    return st;
}

/* ------------------------------------------------------ encode and decode */

ts_status ts_vocab_encode(ts_ctx *ctx, const ts_vocab *v, const char *text, int32_t *ids, int max, int *count) {
    if (count) *count = 0;
    if (!v || !text || (max > 0 && !ids)) return ts_fail(ctx, TS_EINVAL, "ts_vocab_encode: NULL argument");
    data_tokens t = {0};
    ts_status st = data_tokenize(ctx, text, strlen(text), TOKENIZE_TEXT, &t);
    int n = 0;
    for (; !st && n < t.count && n < max; n++) ids[n] = ts_vocab_id(v, t.buf + t.start[n]);
    data_tokens_free(&t);
    if (!st && count) *count = n;
    return st;
}

ts_status ts_vocab_decode(ts_ctx *ctx, const ts_vocab *v, const int32_t *ids, int n, char **text) {
    if (!text) return ts_fail(ctx, TS_EINVAL, "ts_vocab_decode: text is NULL");
    *text = NULL;
    if (!v || n < 0 || (n && !ids)) return ts_fail(ctx, TS_EINVAL, "ts_vocab_decode: NULL argument");
    size_t need = 1;
    int end = 0;
    for (; end < n && ids[end] != TS_TOKEN_EOS; end++) {
        if (ids[end] < 0 || ids[end] >= v->size)
            return ts_fail(ctx, TS_EINVAL, "ts_vocab_decode: id %d at %d is out of range (vocabulary of %d)",
                           (int)ids[end], end, (int)v->size);
        need += strlen(v->words[ids[end]]) + 1;
    }
    char *s = malloc(need);
    if (!s) return ts_fail(ctx, TS_ENOMEM, "ts_vocab_decode: out of memory");
    size_t k = 0;
    for (int i = 0; i < end; i++) {
        if (ids[i] == TS_TOKEN_PAD || ids[i] == TS_TOKEN_BOS) continue;
        size_t l = strlen(v->words[ids[i]]);
        if (k) s[k++] = ' ';
        memcpy(s + k, v->words[ids[i]], l);
        k += l;
    }
    s[k] = '\0';
    *text = s;
    return TS_OK;
}

/* -------------------------------------------------------- text form */

#define VOCAB_MAGIC "tessera-vocab 1 "

ts_status ts_vocab_save(ts_ctx *ctx, const ts_vocab *v, char **text) {
    if (!text) return ts_fail(ctx, TS_EINVAL, "ts_vocab_save: text is NULL");
    *text = NULL;
    if (!v) return ts_fail(ctx, TS_EINVAL, "ts_vocab_save: vocabulary is NULL");
    size_t need = sizeof VOCAB_MAGIC + 16;
    for (int32_t i = 0; i < v->size; i++) need += strlen(v->words[i]) + 22;
    char *s = malloc(need);
    if (!s) return ts_fail(ctx, TS_ENOMEM, "ts_vocab_save: out of memory");
    size_t k = (size_t)snprintf(s, need, VOCAB_MAGIC "%d\n", (int)v->size);
    for (int32_t i = 0; i < v->size; i++)
        k += (size_t)snprintf(s + k, need - k, "%s\t%lld\n", v->words[i], (long long)v->counts[i]);
    *text = s;
    return TS_OK;
}

/* A word as the tokenizer could have written it: 1..DATA_TOKEN_MAX bytes, no
 * whitespace or control byte, no upper-case ASCII letter. */
static int word_ok(const char *w, size_t len) {
    if (len == 0 || len > DATA_TOKEN_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)w[i];
        if (c <= 0x20 || c == 0x7f || (c >= 'A' && c <= 'Z')) return 0;
    }
    return 1;
}

/* A decimal count without sign or leading zero, at most 10^18. */
static int parse_count(const char *s, size_t len, int64_t *out) {
    if (len == 0 || len > 18 || (len > 1 && s[0] == '0')) return 0;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static ts_status parse_lines(ts_ctx *ctx, const char *text, size_t len, ts_vocab *v) {
    size_t magic = strlen(VOCAB_MAGIC), pos;
    if (len < magic || memcmp(text, VOCAB_MAGIC, magic) != 0)
        return ts_fail(ctx, TS_EFORMAT, "vocabulary: does not start with \"%s\"", VOCAB_MAGIC "SIZE");
    const char *nl = memchr(text + magic, '\n', len - magic);
    int64_t size;
    if (!nl || !parse_count(text + magic, (size_t)(nl - text) - magic, &size) || size < 4 || size > INT32_MAX / 4)
        return ts_fail(ctx, TS_EFORMAT, "vocabulary: line 1: bad size (expected 4..%d)", INT32_MAX / 4);
    pos = (size_t)(nl - text) + 1;
    for (int64_t line = 2; pos < len; line++) {
        const char *s = text + pos;
        nl = memchr(s, '\n', len - pos);
        if (!nl) return ts_fail(ctx, TS_EFORMAT, "vocabulary: line %lld: no line end", (long long)line);
        const char *tab = memchr(s, '\t', (size_t)(nl - s));
        if (!tab)
            return ts_fail(ctx, TS_EFORMAT, "vocabulary: line %lld: no tab (expected word<TAB>count)", (long long)line);
        size_t wl = (size_t)(tab - s);
        int64_t count;
        int32_t id = v->size;
        if (id >= size)
            return ts_fail(ctx, TS_EFORMAT, "vocabulary: line %lld: more words than the size %lld", (long long)line,
                           (long long)size);
        if (!parse_count(tab + 1, (size_t)(nl - tab - 1), &count))
            return ts_fail(ctx, TS_EFORMAT, "vocabulary: line %lld: bad count", (long long)line);
        if (id < 4) {
            if (wl != strlen(specials[id]) || memcmp(s, specials[id], wl) != 0 || count != 0)
                return ts_fail(ctx, TS_EFORMAT, "vocabulary: line %lld: expected \"%s\\t0\"", (long long)line,
                               specials[id]);
        } else {
            if (!word_ok(s, wl) || find(v, s, wl) >= 0 || count < 1)
                return ts_fail(ctx, TS_EFORMAT, "vocabulary: line %lld: bad or repeated word, or count < 1",
                               (long long)line);
            if (id > 4) {
                const char *prev = v->words[id - 1];
                size_t pl = strlen(prev);
                int cmp = memcmp(prev, s, pl < wl ? pl : wl);
                if (count > v->counts[id - 1] || (count == v->counts[id - 1] && (cmp > 0 || (cmp == 0 && pl > wl))))
                    return ts_fail(ctx, TS_EFORMAT,
                                   "vocabulary: line %lld: out of order (expected descending counts, ties in byte "
                                   "order)",
                                   (long long)line);
            }
        }
        ts_status st = vocab_add(ctx, v, s, wl, count, &id);
        if (st) return st;
        pos = (size_t)(nl - text) + 1;
    }
    if (v->size != size)
        return ts_fail(ctx, TS_EFORMAT, "vocabulary: %d words but the header says %lld", (int)v->size, (long long)size);
    return TS_OK;
}

ts_status ts_vocab_parse(ts_ctx *ctx, const char *text, size_t len, ts_vocab **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "ts_vocab_parse: out is NULL");
    *out = NULL;
    if (!text && len) return ts_fail(ctx, TS_EINVAL, "ts_vocab_parse: text is NULL");
    ts_vocab *v;
    ts_status st = vocab_new(ctx, &v);
    if (!st) st = parse_lines(ctx, text ? text : "", len, v);
    if (st) {
        ts_vocab_free(v);
        return st;
    }
    *out = v;
    return TS_OK;
}
