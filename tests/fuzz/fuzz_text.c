/* The text dataset readers and the vocabulary parser. The first byte chooses:
 * 0 CLINC150 JSON, 1 Brown zip, 2 sentence pairs, 3 sentence pairs gzip, 4 the
 * vocabulary text form, 5 tokenizer and BLEU over the text (the first byte / 6, odd:
 * pairs read both ways); the second byte is max_len (0: the default) and the third
 * the limit (0: none). */
#include "fuzz_common.h"

#include "data/data.h"

static void load(const char *suffix, const uint8_t *data, size_t size, const ts_text_options *opt) {
    const char *p = fuzz_write(0, suffix, data, size);
    if (!p) return;
    ts_text_dataset *ds = NULL, *a = NULL, *b = NULL;
    ts_status st = ts_text_dataset_load(fuzz_ctx(), p, TS_SPLIT_TRAIN, NULL, opt, &ds);
    fuzz_check_message(st);
    if (!st) fuzz_check_message(ts_text_dataset_split(fuzz_ctx(), ds, ds->count / 2, 1, &a, &b));
    ts_text_dataset_free(a);
    ts_text_dataset_free(b);
    ts_text_dataset_free(ds);
}

/* The vocabulary parser; what parses must save to the same text. */
static void vocab(const uint8_t *data, size_t size) {
    ts_vocab *v = NULL;
    if (ts_vocab_parse(fuzz_ctx(), (const char *)data, size, &v) != TS_OK) {
        fuzz_check_message(TS_EFORMAT);
        return;
    }
    char *s = NULL;
    if (ts_vocab_save(fuzz_ctx(), v, &s) || strlen(s) != size || memcmp(s, data, size)) abort();
    ts_text_free(s);
    ts_vocab_free(v);
}

/* The text as hypothesis and its tokens as reference: BLEU 1 or 0, never else. */
static void tokens_and_bleu(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1), *tok = NULL;
    if (!text) return;
    memcpy(text, data, size);
    text[size] = '\0';
    int n;
    if (ts_text_tokenize(fuzz_ctx(), text, &tok, &n) == TS_OK) {
        const char *h = tok;
        double b = -1;
        if (ts_corpus_bleu_text(fuzz_ctx(), &h, &h, 1, 1, &b) || (b != 0 && b != 1)) abort();
    }
    ts_text_free(tok);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    if (size < 3) return 0;
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.max_len = data[1];
    opt.limit = data[2];
    opt.both_ways = (data[0] / 6) & 1;
    const uint8_t *d = data + 3;
    size_t n = size - 3;
    switch (data[0] % 6) {
    case 0: load(".json", d, n, &opt); break;
    case 1: load(".zip", d, n, &opt); break;
    case 2: load(".txt", d, n, &opt); break;
    case 3: load(".txt.gz", d, n, &opt); break;
    case 4: vocab(d, n); break;
    default: tokens_and_bleu(d, n); break;
    }
    return 0;
}
