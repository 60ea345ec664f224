/* The in-memory text dataset: raw samples from a reader turned into padded id
 * arrays with vocabularies and class names; free and split. */
#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX_LEN_CAP 512 /* the default max_len never exceeds this */

void ts_text_options_default(ts_text_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->min_count = 1;
}

/* ------------------------------------------------------------- samples */

/* A NUL-terminated copy; a NUL inside becomes a space (a separator, as the
 * tokenizer treats every control byte). */
static char *copy_bytes(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) {
        for (size_t i = 0; i < n; i++) c[i] = s[i] ? s[i] : ' ';
        c[n] = '\0';
    }
    return c;
}

const char *data_quote(const char *s, char *out, size_t size) {
    size_t n = 0;
    for (; s[n] && n + 1 < size; n++) out[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? '?' : s[n];
    out[n] = '\0';
    return out;
}

ts_status text_samples_add(ts_ctx *ctx, text_samples *s, const char *src, size_t src_len, const char *tgt,
                           size_t tgt_len, const char *label, size_t label_len) {
    if (s->count == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 256;
        char **a = realloc(s->src, (size_t)cap * sizeof *a);
        if (a) s->src = a;
        char **b = a ? realloc(s->tgt, (size_t)cap * sizeof *b) : NULL;
        if (b) s->tgt = b;
        char **c = b ? realloc(s->label, (size_t)cap * sizeof *c) : NULL;
        if (c) s->label = c;
        uint8_t **d = c ? realloc(s->tags, (size_t)cap * sizeof *d) : NULL;
        if (d) s->tags = d;
        int32_t *e = d ? realloc(s->ntags, (size_t)cap * sizeof *e) : NULL;
        if (!e) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
        s->ntags = e;
        s->cap = cap;
    }
    int64_t i = s->count;
    s->src[i] = copy_bytes(src, src_len);
    s->tgt[i] = tgt ? copy_bytes(tgt, tgt_len) : NULL;
    s->label[i] = label ? copy_bytes(label, label_len) : NULL;
    s->tags[i] = NULL;
    s->ntags[i] = 0;
    s->count++; /* counted first, so that text_samples_free frees what was made */
    if (!s->src[i] || (tgt && !s->tgt[i]) || (label && !s->label[i]))
        return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    return TS_OK;
}

ts_status text_samples_set_tags(ts_ctx *ctx, text_samples *s, const uint8_t *tags, int n) {
    uint8_t *t = malloc(n ? (size_t)n : 1);
    if (!t) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    memcpy(t, tags, (size_t)n);
    s->tags[s->count - 1] = t;
    s->ntags[s->count - 1] = n;
    return TS_OK;
}

void text_samples_free(text_samples *s) {
    for (int64_t i = 0; i < s->count; i++) {
        free(s->src[i]);
        free(s->tgt[i]);
        free(s->label[i]);
        free(s->tags[i]);
    }
    free(s->src);
    free(s->tgt);
    free(s->label);
    free(s->tags);
    free(s->ntags);
    memset(s, 0, sizeof *s);
}

/* --------------------------------------------------------------- dataset */

void ts_text_dataset_free(ts_text_dataset *ds) {
    if (!ds) return;
    free(ds->tokens);
    free(ds->lengths);
    free(ds->labels);
    free(ds->targets);
    free(ds->target_lengths);
    if (ds->class_names) data_free_names(ds->class_names, ds->classes);
    ts_vocab_free(ds->vocab);
    ts_vocab_free(ds->target_vocab);
    free(ds);
}

static ts_status copy_names(ts_ctx *ctx, ts_text_dataset *ds, const char *const *names, int n) {
    ds->class_names = calloc(n ? (size_t)n : 1, sizeof *ds->class_names);
    if (!ds->class_names) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    ds->classes = n;
    for (int i = 0; i < n; i++)
        if (!(ds->class_names[i] = copy_bytes(names[i], strlen(names[i]))))
            return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    return TS_OK;
}

/* Arrays of a dataset of count samples, zeroed (tokens and targets <pad>). */
static ts_status alloc_arrays(ts_ctx *ctx, ts_text_dataset *ds) {
    size_t n = (size_t)ds->count, nt, ntgt;
    if (!ts_mul_size(n, (size_t)ds->max_len, &nt) || !ts_mul_size(n, (size_t)ds->target_len, &ntgt))
        return ts_fail(ctx, TS_ENOMEM, "text dataset: too large");
    ds->tokens = calloc(nt ? nt : 1, sizeof(int32_t));
    ds->lengths = calloc(n ? n : 1, sizeof(int32_t));
    if (!ds->tokens || !ds->lengths) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    if (ds->task == TS_SEQ_CLASSIFY) ds->labels = calloc(n ? n : 1, sizeof(int32_t));
    if (ds->task == TS_SEQ_TAG) ds->labels = calloc(nt ? nt : 1, sizeof(int32_t));
    if (ds->task == TS_SEQ_TRANSLATE && ds->classes > 0 && !(ds->labels = calloc(n ? n : 1, sizeof(int32_t))))
        return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    if (ds->task == TS_SEQ_TRANSLATE) {
        ds->targets = calloc(ntgt ? ntgt : 1, sizeof(int32_t));
        ds->target_lengths = calloc(n ? n : 1, sizeof(int32_t));
        if (!ds->targets || !ds->target_lengths) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    } else if (!ds->labels) {
        return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    }
    return TS_OK;
}

/* ------------------------------------------------------------- building */

/* The tokens of every sample's text, tokenized once: *out (count entries). */
static ts_status tokenize_all(ts_ctx *ctx, text_samples *s, char **texts, data_tokenize_mode mode, data_tokens **out) {
    *out = calloc(s->count ? (size_t)s->count : 1, sizeof **out);
    if (!*out) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    for (int64_t i = 0; i < s->count; i++) {
        ts_status st = data_tokenize(ctx, texts[i], strlen(texts[i]), mode, &(*out)[i]);
        if (st) return st;
    }
    return TS_OK;
}

static void tokens_free(data_tokens *tok, int64_t count) {
    if (!tok) return;
    for (int64_t i = 0; i < count; i++) data_tokens_free(&tok[i]);
    free(tok);
}

/* The language tag that starts a source translated into lang: "<2fra>" (the
 * tokenizer splits '<' off any text, so no text is read as a tag). */
void text_language_tag(const char *lang, char out[TEXT_TAG_MAX]) { snprintf(out, TEXT_TAG_MAX, "<2%s>", lang); }

/* tags: NULL, or (count) the tag word each sample's source starts with */
static ts_status make_vocab(ts_ctx *ctx, const data_tokens *tok, const int64_t *keep, int64_t n, const ts_vocab *given,
                            int min_count, char (*tags)[TEXT_TAG_MAX], ts_vocab **out) {
    if (given) return data_vocab_copy(ctx, given, out);
    ts_vocab *counter;
    ts_status st = data_vocab_counter(ctx, &counter);
    for (int64_t k = 0; !st && k < n; k++) {
        const data_tokens *t = &tok[keep[k]];
        if (tags) st = data_vocab_count(ctx, counter, tags[keep[k]]);
        for (int j = 0; !st && j < t->count; j++) st = data_vocab_count(ctx, counter, t->buf + t->start[j]);
    }
    if (!st) st = data_vocab_finish(ctx, counter, min_count, out);
    ts_vocab_free(counter);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Class names: given, fixed by the format, or the sorted distinct labels of every sample read. */
static ts_status make_names(ts_ctx *ctx, const text_samples *s, const ts_text_options *opt, ts_text_dataset *ds) {
    if (opt->class_names) {
        if (opt->classes < 1)
            return ts_fail(ctx, TS_EINVAL, "text dataset: class_names given with classes %d", opt->classes);
        for (int i = 0; i < opt->classes; i++)
            if (!opt->class_names[i]) return ts_fail(ctx, TS_EINVAL, "text dataset: class name %d is NULL", i);
        if (s->fixed_names) {
            int same = opt->classes == s->nfixed;
            for (int i = 0; same && i < s->nfixed; i++) same = strcmp(opt->class_names[i], s->fixed_names[i]) == 0;
            if (!same) return ts_fail(ctx, TS_EINVAL, "text dataset: the given class names differ from the format's");
        }
        return copy_names(ctx, ds, opt->class_names, opt->classes);
    }
    if (s->fixed_names) return copy_names(ctx, ds, s->fixed_names, s->nfixed);
    char **sorted = malloc((s->count ? (size_t)s->count : 1) * sizeof *sorted);
    if (!sorted) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    if (s->count) memcpy(sorted, s->label, (size_t)s->count * sizeof *sorted); /* label is NULL when none */
    qsort(sorted, (size_t)s->count, sizeof *sorted, cmp_str);
    int n = 0;
    for (int64_t i = 0; i < s->count; i++)
        if (!n || strcmp(sorted[n - 1], sorted[i])) sorted[n++] = sorted[i];
    ts_status st = copy_names(ctx, ds, (const char *const *)sorted, n);
    free(sorted);
    return st;
}

static int find_name(const ts_text_dataset *ds, const char *label) {
    for (int i = 0; i < ds->classes; i++)
        if (strcmp(ds->class_names[i], label) == 0) return i;
    return -1;
}

static int longest(const data_tokens *tok, const int64_t *keep, int64_t n, int extra, int cap) {
    int m = 1;
    for (int64_t k = 0; k < n; k++)
        if (tok[keep[k]].count + extra > m) m = tok[keep[k]].count + extra;
    return m < cap ? m : cap;
}

static ts_status fill(ts_ctx *ctx, const text_samples *s, const data_tokens *src, const data_tokens *tgt,
                      const int64_t *keep, ts_text_dataset *ds) {
    int T = ds->max_len, U = ds->target_len;
    const int tagged = ds->task == TS_SEQ_TRANSLATE && ds->classes > 0; /* a language tag starts each source */
    for (int64_t k = 0; k < ds->count; k++) {
        int64_t i = keep[k];
        const data_tokens *t = &src[i];
        int n = t->count + tagged < T ? t->count + tagged : T;
        ds->lengths[k] = n;
        for (int j = tagged; j < n; j++) ds->tokens[k * T + j] = ts_vocab_id(ds->vocab, t->buf + t->start[j - tagged]);
        if (tagged) {
            const int c = find_name(ds, s->label[i]);
            char tag[TEXT_TAG_MAX];
            text_language_tag(c < 0 ? s->label[i] : ds->class_names[c], tag);
            const int32_t id = ts_vocab_id(ds->vocab, tag);
            if (c < 0 || id == TS_TOKEN_UNK)
                return ts_fail(ctx, TS_EFORMAT, "%s: the source vocabulary has no language tag %s (a model trained one way?)",
                               ds->name, tag);
            ds->tokens[k * T] = id;
            ds->labels[k] = c;
        }
        if (ds->task == TS_SEQ_CLASSIFY) {
            int c = find_name(ds, s->label[i]);
            char q[64];
            if (c < 0)
                return ts_fail(ctx, TS_EFORMAT, "%s: sample %lld has label \"%s\", not among the %d class names",
                               ds->name, (long long)i, data_quote(s->label[i], q, sizeof q), ds->classes);
            ds->labels[k] = c;
        } else if (ds->task == TS_SEQ_TAG) {
            if (s->ntags[i] != t->count)
                return ts_fail(ctx, TS_EFORMAT, "%s: sample %lld has %d words but %d tags", ds->name, (long long)i,
                               t->count, (int)s->ntags[i]);
            for (int j = 0; j < T; j++) ds->labels[k * T + j] = j < n ? s->tags[i][j] : -1;
        } else {
            const data_tokens *u = &tgt[i];
            int m = u->count < U - 2 ? u->count : U - 2;
            int32_t *row = ds->targets + k * U;
            row[0] = TS_TOKEN_BOS;
            for (int j = 0; j < m; j++) row[1 + j] = ts_vocab_id(ds->target_vocab, u->buf + u->start[j]);
            row[m + 1] = TS_TOKEN_EOS;
            ds->target_lengths[k] = m + 2;
        }
    }
    return TS_OK;
}

ts_status text_dataset_build(ts_ctx *ctx, text_samples *s, const ts_text_options *opt_in, const char *name,
                             ts_text_dataset **out) {
    *out = NULL;
    ts_text_options opt;
    if (opt_in)
        opt = *opt_in;
    else
        ts_text_options_default(&opt);
    if (opt.max_len < 0 || opt.target_len < 0 || opt.limit < 0)
        return ts_fail(ctx, TS_EINVAL, "text dataset: negative max_len, target_len or limit");
    if (s->task == TS_SEQ_TRANSLATE && opt.target_len > 0 && opt.target_len < 3)
        return ts_fail(ctx, TS_EINVAL, "text dataset: target_len %d leaves no room for a word (expected >= 3)",
                       opt.target_len);
    ts_text_dataset *ds = calloc(1, sizeof *ds);
    int64_t *keep = malloc((s->count ? (size_t)s->count : 1) * sizeof *keep);
    data_tokens *src = NULL, *tgt = NULL; /* (count) each */
    if (!ds || !keep) {
        free(ds);
        free(keep);
        return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    }
    ds->task = s->task;
    snprintf(ds->name, sizeof ds->name, "%s", name);
    ts_status st = tokenize_all(ctx, s, s->src, s->task == TS_SEQ_TAG ? TOKENIZE_WORDS : TOKENIZE_TEXT, &src);
    if (!st && s->task == TS_SEQ_TRANSLATE) st = tokenize_all(ctx, s, s->tgt, TOKENIZE_TEXT, &tgt);
    /* samples with no token (on either side) are skipped; then the limit */
    int64_t n = 0;
    for (int64_t i = 0; !st && i < s->count && (!opt.limit || n < opt.limit); i++)
        if (src[i].count && (s->task != TS_SEQ_TRANSLATE || tgt[i].count)) keep[n++] = i;
    ds->count = n;
    const int tagged = s->task == TS_SEQ_TRANSLATE && s->both_ways;
    char(*tags)[TEXT_TAG_MAX] = NULL; /* (count): the language tag of each sample read both ways */
    if (!st && tagged && !(tags = malloc(sizeof *tags * (size_t)(s->count ? s->count : 1))))
        st = ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    for (int64_t i = 0; !st && tagged && i < s->count; i++) text_language_tag(s->label[i], tags[i]);
    if (!st && (s->task != TS_SEQ_TRANSLATE || tagged)) st = make_names(ctx, s, &opt, ds);
    if (!st && s->task == TS_SEQ_TRANSLATE && !tagged && opt.classes > 0)
        st = ts_fail(ctx, TS_EINVAL, "%s: languages given for a set read one way (a model trained both ways?)", name);
    if (!st) st = make_vocab(ctx, src, keep, n, opt.vocab, opt.min_count, tags, &ds->vocab);
    if (!st && s->task == TS_SEQ_TRANSLATE)
        st = make_vocab(ctx, tgt, keep, n, opt.target_vocab, opt.min_count, NULL, &ds->target_vocab);
    free(tags);
    if (!st) {
        ds->max_len = opt.max_len ? opt.max_len : longest(src, keep, n, tagged, TEXT_MAX_LEN_CAP);
        if (s->task == TS_SEQ_TRANSLATE)
            ds->target_len = opt.target_len ? opt.target_len : longest(tgt, keep, n, 2, TEXT_MAX_LEN_CAP + 2);
        st = alloc_arrays(ctx, ds);
    }
    if (!st) st = fill(ctx, s, src, tgt, keep, ds);
    tokens_free(src, s->count);
    tokens_free(tgt, s->count);
    free(keep);
    if (st) {
        ts_text_dataset_free(ds);
        return st;
    }
    *out = ds;
    return TS_OK;
}

/* ----------------------------------------------------------------- split */

/* Copy of ds's frame (task, sizes, names, vocabularies) with arrays for count samples. */
static ts_status text_subset(ts_ctx *ctx, const ts_text_dataset *ds, const int64_t *idx, int64_t count,
                             ts_text_dataset **out) {
    *out = NULL;
    ts_text_dataset *d = calloc(1, sizeof *d);
    if (!d) return ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    d->count = count;
    d->task = ds->task;
    d->max_len = ds->max_len;
    d->target_len = ds->target_len;
    memcpy(d->name, ds->name, sizeof d->name);
    ts_status st = ds->class_names ? copy_names(ctx, d, (const char *const *)ds->class_names, ds->classes) : TS_OK;
    if (!st && ds->vocab) st = data_vocab_copy(ctx, ds->vocab, &d->vocab);
    if (!st && ds->target_vocab) st = data_vocab_copy(ctx, ds->target_vocab, &d->target_vocab);
    if (!st) st = alloc_arrays(ctx, d);
    int T = ds->max_len, U = ds->target_len;
    for (int64_t k = 0; !st && k < count; k++) {
        int64_t i = idx[k];
        memcpy(d->tokens + k * T, ds->tokens + i * T, (size_t)T * sizeof(int32_t));
        d->lengths[k] = ds->lengths[i];
        if (ds->task == TS_SEQ_CLASSIFY) d->labels[k] = ds->labels[i];
        if (ds->task == TS_SEQ_TAG) memcpy(d->labels + k * T, ds->labels + i * T, (size_t)T * sizeof(int32_t));
        if (ds->task == TS_SEQ_TRANSLATE) {
            if (ds->labels && d->labels) d->labels[k] = ds->labels[i];
            memcpy(d->targets + k * U, ds->targets + i * U, (size_t)U * sizeof(int32_t));
            d->target_lengths[k] = ds->target_lengths[i];
        }
    }
    if (st) {
        ts_text_dataset_free(d);
        return st;
    }
    *out = d;
    return TS_OK;
}

static ts_status subset_any(ts_ctx *ctx, const void *ds, const int64_t *idx, int64_t count, void **out) {
    ts_text_dataset *d = NULL;
    ts_status st = text_subset(ctx, ds, idx, count, &d);
    *out = d;
    return st;
}

static void release_any(void *ds) { ts_text_dataset_free(ds); }

ts_status ts_text_dataset_split(ts_ctx *ctx, const ts_text_dataset *ds, int64_t val_count, uint64_t seed,
                                ts_text_dataset **train, ts_text_dataset **val) {
    void *a = NULL, *b = NULL;
    ts_status st =
        data_split(ctx, ds, ds ? ds->count : 0, val_count, seed, subset_any, release_any, train && val ? &a : NULL, &b);
    if (train) *train = a;
    if (val) *val = b;
    return st;
}

ts_status ts_text_dataset_select(ts_ctx *ctx, const ts_text_dataset *ds, const int *classes, int k,
                                 ts_text_dataset **out) {
    if (!ctx || !ds || !classes || !out || k < 1) return ts_fail(ctx, TS_EINVAL, "ts_text_dataset_select: bad argument");
    *out = NULL;
    if (ds->task == TS_SEQ_TRANSLATE && !ds->labels)
        return ts_fail(ctx, TS_EINVAL, "%s: selecting classes needs a classification or tagging set, or pairs read both ways",
                       ds->name);
    /* a tag set: the texts with a token of a selected tag; the other tokens become -1 (not scored) */
    const int lps = ds->task == TS_SEQ_TAG ? ds->max_len : 1;
    int *to = malloc(sizeof *to * (size_t)(ds->classes > 0 ? ds->classes : 1)); /* ds label -> new label, or -1 */
    int64_t *idx = malloc(sizeof *idx * (size_t)(ds->count ? ds->count : 1)), n = 0;
    const char **names = malloc(sizeof *names * (size_t)k);
    ts_status st = to && idx && names ? TS_OK : ts_fail(ctx, TS_ENOMEM, "text dataset: out of memory");
    for (int c = 0; !st && c < ds->classes; c++) to[c] = -1;
    for (int j = 0; !st && j < k; j++) {
        if (classes[j] < 0 || classes[j] >= ds->classes)
            st = ts_fail(ctx, TS_EINVAL, "%s: class %d is not among its %d classes", ds->name, classes[j], ds->classes);
        else if (to[classes[j]] >= 0)
            st = ts_fail(ctx, TS_EINVAL, "%s: class %d selected twice", ds->name, classes[j]);
        else {
            to[classes[j]] = j;
            names[j] = ds->class_names ? ds->class_names[classes[j]] : "";
        }
    }
    for (int64_t i = 0; !st && i < ds->count; i++) {
        int wanted = 0;
        for (int64_t t = 0; !st && t < lps; t++) {
            const int32_t y = ds->labels[i * lps + t];
            if (y < (lps > 1 ? -1 : 0) || y >= ds->classes)
                st = ts_fail(ctx, TS_EFORMAT, "%s: sample %lld has %s %d (expected %s0..%d)", ds->name, (long long)i,
                             lps > 1 ? "tag" : "label", y, lps > 1 ? "-1 or " : "", ds->classes - 1);
            else wanted |= y >= 0 && to[y] >= 0;
        }
        if (!st && wanted) idx[n++] = i;
    }
    ts_text_dataset *d = NULL;
    if (!st) st = text_subset(ctx, ds, idx, n, &d);
    if (!st && d->class_names) {
        data_free_names(d->class_names, d->classes);
        d->class_names = NULL;
    }
    if (!st) st = copy_names(ctx, d, names, k);
    for (int64_t i = 0; !st && i < n; i++)
        for (int64_t t = 0; t < lps; t++) {
            const int32_t y = ds->labels[idx[i] * lps + t];
            d->labels[i * lps + t] = y < 0 ? -1 : to[y];
        }
    free(to);
    free(idx);
    free(names);
    if (st) {
        ts_text_dataset_free(d);
        return st;
    }
    *out = d;
    return TS_OK;
}
