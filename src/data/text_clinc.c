/* CLINC150 (clinc_oos): a JSON object of splits, each a list of
 * [utterance, intent] pairs. Training = "train" then "oos_train", test = "test"
 * then "oos_test", whatever the order of the keys; "val" and "oos_val" are
 * checked but not kept. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

static const char *const clinc_keys[6] = {"train", "oos_train", "test", "oos_test", "val", "oos_val"};

/* One list of pairs; added to s when `wanted`, else only checked. */
static ts_status read_pairs(ts_ctx *ctx, json_cursor *c, int wanted, text_samples *s) {
    ts_status st = json_expect(ctx, c, '[', "to start a list of [utterance, intent] pairs");
    if (st || json_accept(c, ']')) return st;
    do {
        char *text = NULL, *label = NULL;
        size_t tl = 0, ll = 0;
        st = json_expect(ctx, c, '[', "to start an [utterance, intent] pair");
        if (!st) st = json_string(ctx, c, &text, &tl);
        if (!st) st = json_expect(ctx, c, ',', "between utterance and intent");
        if (!st) st = json_string(ctx, c, &label, &ll);
        if (!st) st = json_expect(ctx, c, ']', "to end an [utterance, intent] pair");
        if (!st && wanted) st = text_samples_add(ctx, s, text, tl, NULL, 0, label, ll);
        free(text);
        free(label);
    } while (!st && json_accept(c, ','));
    if (!st) st = json_expect(ctx, c, ']', "to end a list of pairs");
    return st;
}

/* One pass over the object: the pairs of key `want` (an index of clinc_keys) are added. */
static ts_status read_object(ts_ctx *ctx, json_cursor *c, int want, text_samples *s) {
    int seen[6] = {0};
    ts_status st = json_expect(ctx, c, '{', "to start the object of splits");
    if (!st && !json_accept(c, '}')) {
        do {
            char *key;
            size_t at = (size_t)(c->p - c->start);
            st = json_string(ctx, c, &key, NULL);
            if (st) break;
            int k = 0;
            char q[48];
            while (k < 6 && strcmp(key, clinc_keys[k])) k++;
            if (k == 6 || seen[k])
                st = ts_fail(ctx, TS_EFORMAT,
                             "%s: byte %zu: %s key \"%s\" (expected train, val, test, oos_train, oos_val, oos_test, "
                             "once each)",
                             c->file, at, k == 6 ? "unknown" : "repeated", data_quote(key, q, sizeof q));
            free(key);
            if (st) break;
            seen[k] = 1;
            st = json_expect(ctx, c, ':', "after a key");
            if (!st) st = read_pairs(ctx, c, k == want, s);
        } while (!st && json_accept(c, ','));
        if (!st) st = json_expect(ctx, c, '}', "to end the object of splits");
    }
    if (!st && !json_at_end(c))
        st = ts_fail(ctx, TS_EFORMAT, "%s: trailing data at byte %lld", c->file, (long long)(c->p - c->start));
    return st;
}

ts_status text_read_clinc(ts_ctx *ctx, const char *path, ts_split split, text_samples *s) {
    uint8_t *buf;
    size_t len;
    ts_status st = data_read_file(ctx, path, SIZE_MAX, &buf, &len);
    if (st) return st;
    s->task = TS_SEQ_CLASSIFY;
    for (int pass = 0; !st && pass < 2; pass++) {
        json_cursor c = {(const char *)buf, (const char *)buf, (const char *)buf + len, data_basename(path), 0};
        st = read_object(ctx, &c, (split == TS_SPLIT_TRAIN ? 0 : 2) + pass, s);
    }
    free(buf);
    return st;
}
