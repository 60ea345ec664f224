/* Sentence pairs, one a line: source<TAB>target (Tatoeba's eng-fra.txt; more
 * columns, such as the attribution of newer exports, are ignored). Blank lines are
 * skipped. A pair is in the test split when the FNV-1a hash of its source sentence
 * is 0 mod 10, so all translations of one sentence fall in the same split. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

ts_status text_read_pairs(ts_ctx *ctx, const char *path, ts_split split, text_samples *s) {
    uint8_t *buf;
    size_t len;
    s->task = TS_SEQ_TRANSLATE;
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
        if (test == (split == TS_SPLIT_TEST)) st = text_samples_add(ctx, s, l, sl, t, tl, NULL, 0);
    }
    free(buf);
    return st;
}
