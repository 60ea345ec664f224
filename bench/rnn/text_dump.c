/* Writes a text dataset's training and test splits as tessera reads them (the same
 * tokens, vocabulary, labels and lengths), for train_torch.py's PyTorch side:
 *   text_dump SPEC DATA_DIR MAX_LEN OUT_PREFIX      -> OUT_PREFIX.train.bin, .test.bin
 * Each file: int32 count, max_len, task (0 classify, 1 tag, 2 translate), classes,
 * vocabulary size, then tokens (count, max_len), lengths (count), and labels (count, or
 * count x max_len); for translation, in place of labels: target_len, then targets
 * (count, target_len; <bos> .. <eos>, 0 after) and target_lengths (count), and classes
 * is the target vocabulary's size. */
#include "tessera.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int dump(const ts_text_dataset *ds, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const int tr = ds->task == TS_SEQ_TRANSLATE;
    const int32_t head[5] = {(int32_t)ds->count, ds->max_len, (int32_t)ds->task,
                             tr ? ts_vocab_size(ds->target_vocab) : ds->classes, ts_vocab_size(ds->vocab)};
    const size_t n = (size_t)ds->count;
    const size_t nl = n * (ds->task == TS_SEQ_TAG ? (size_t)ds->max_len : 1);
    int ok = fwrite(head, sizeof head, 1, f) == 1 &&
             fwrite(ds->tokens, sizeof(int32_t), n * ds->max_len, f) == n * ds->max_len &&
             fwrite(ds->lengths, sizeof(int32_t), n, f) == n;
    if (tr) {
        const int32_t tl = ds->target_len;
        ok = ok && fwrite(&tl, sizeof tl, 1, f) == 1 &&
             fwrite(ds->targets, sizeof(int32_t), n * (size_t)tl, f) == n * (size_t)tl &&
             fwrite(ds->target_lengths, sizeof(int32_t), n, f) == n;
    } else {
        ok = ok && fwrite(ds->labels, sizeof(int32_t), nl, f) == nl;
    }
    ok = fclose(f) == 0 && ok;
    if (!ok) remove(path); /* no half-written dump left behind */
    return ok;
}

/* A length argument: a whole number in [0, 4096] (0: the set's longest), else -1. */
static int length_arg(const char *a) {
    char *end;
    errno = 0;
    const long v = strtol(a, &end, 10);
    return end == a || *end || errno || v < 0 || v > 4096 ? -1 : (int)v;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: text_dump SPEC DATA_DIR MAX_LEN OUT_PREFIX [TARGET_LEN]\n");
        return 2;
    }
    ts_ctx *ctx = NULL;
    ts_text_dataset *train = NULL, *test = NULL;
    if (ts_ctx_create(&ctx)) return 1;
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.max_len = length_arg(argv[3]);
    if (argc == 6) opt.target_len = length_arg(argv[5]);
    if (opt.max_len < 0 || opt.target_len < 0) {
        fprintf(stderr, "text_dump: MAX_LEN and TARGET_LEN are whole numbers in [0, 4096] (0: the longest)\n");
        return 2;
    }
    ts_status st = ts_text_dataset_load(ctx, argv[1], TS_SPLIT_TRAIN, argv[2], &opt, &train);
    if (!st) {
        opt.vocab = train->vocab;
        opt.class_names = (const char *const *)train->class_names;
        opt.classes = train->classes;
        opt.max_len = train->max_len;
        opt.target_vocab = train->target_vocab;
        opt.target_len = train->target_len;
        st = ts_text_dataset_load(ctx, argv[1], TS_SPLIT_TEST, argv[2], &opt, &test);
    }
    if (st) {
        fprintf(stderr, "text_dump: %s\n", ts_ctx_error(ctx));
        return 1;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s.train.bin", argv[4]);
    int ok = dump(train, p);
    snprintf(p, sizeof p, "%s.test.bin", argv[4]);
    ok = ok && dump(test, p);
    printf("%s: %lld training and %lld test samples, %d tokens each, vocabulary %d, %d %s\n", argv[1],
           (long long)train->count, (long long)test->count, train->max_len, ts_vocab_size(train->vocab),
           train->task == TS_SEQ_TRANSLATE ? ts_vocab_size(train->target_vocab) : train->classes,
           train->task == TS_SEQ_TRANSLATE ? "target words" : "classes");
    ts_text_dataset_free(train);
    ts_text_dataset_free(test);
    ts_ctx_free(ctx);
    return ok ? 0 : 1;
}
