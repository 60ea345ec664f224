/* Sentence pairs, one a line: source<TAB>target (Tatoeba's eng-fra.txt; more
 * columns, such as the attribution of newer exports, are ignored). Blank lines are
 * skipped. A pair is in the test split when the FNV-1a hash of its source sentence
 * is 0 mod 10, so all translations of one sentence fall in the same split.
 *
 * Both ways (s->both_ways): each pair is also read target to source, and every
 * sample is labelled with the language it is translated into (the paper's
 * multi-target setting: a language tag starts the source, text_dataset.c). The
 * languages are named after the file, "eng-fra.txt" -> fra, eng (class 0: the
 * file's own direction), else target, source. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

/* "eng-fra.txt[.gz]" -> "eng", "fra" (2 to 8 lower-case letters each), else 0. */
static int language_names(const char *base, char src[16], char tgt[16]) {
    size_t a = 0, b = 0;
    while (base[a] >= 'a' && base[a] <= 'z') a++;
    if (a < 2 || a > 8 || base[a] != '-') return 0;
    const char *t = base + a + 1;
    while (t[b] >= 'a' && t[b] <= 'z') b++;
    if (b < 2 || b > 8 || (t[b] != '.' && t[b] != '\0')) return 0;
    memcpy(src, base, a);
    src[a] = '\0';
    memcpy(tgt, t, b);
    tgt[b] = '\0';
    return 1;
}

ts_status text_read_pairs(ts_ctx *ctx, const char *path, ts_split split, text_samples *s) {
    uint8_t *buf;
    size_t len;
    s->task = TS_SEQ_TRANSLATE;
    if (s->both_ways) {
        if (!language_names(data_basename(path), s->lang[1], s->lang[0]) || !strcmp(s->lang[0], s->lang[1])) {
            strcpy(s->lang[0], "target");
            strcpy(s->lang[1], "source");
        }
        s->lang_names[0] = s->lang[0];
        s->lang_names[1] = s->lang[1];
        s->fixed_names = s->lang_names;
        s->nfixed = 2;
    }
    ts_status st = data_read_file(ctx, path, SIZE_MAX, &buf, &len);
    if (st) return st;
    const char *text = (const char *)buf;
    size_t pos = 0;
    for (int64_t line = 1; !st && pos < len && (!s->stop || s->count < s->stop); line++) {
        const char *l = text + pos, *nl = memchr(l, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - l) : len - pos;
        pos += n + 1;
        if (n && l[n - 1] == '\r') n--;
        size_t blank = 0;
        while (blank < n && (l[blank] == ' ' || l[blank] == '\t')) blank++;
        if (blank == n) continue;
        const char *tab = memchr(l, '\t', n);
        if (!tab)
            st = ts_fail(ctx, TS_EFORMAT, "%s: line %lld: no tab (expected source<TAB>target)", data_basename(path),
                         (long long)line);
        if (st) break;
        size_t sl = (size_t)(tab - l);
        const char *t = tab + 1, *tab2 = memchr(t, '\t', n - sl - 1);
        size_t tl = tab2 ? (size_t)(tab2 - t) : n - sl - 1;
        int test = data_fnv1a(l, sl) % 10 == 0;
        if (test != (split == TS_SPLIT_TEST)) continue;
        if (!s->both_ways) {
            st = text_samples_add(ctx, s, l, sl, t, tl, NULL, 0);
            continue;
        }
        st = text_samples_add(ctx, s, l, sl, t, tl, s->lang[0], strlen(s->lang[0]));
        if (!st) st = text_samples_add(ctx, s, t, tl, l, sl, s->lang[1], strlen(s->lang[1]));
    }
    free(buf);
    return st;
}
