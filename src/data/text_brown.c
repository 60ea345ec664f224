/* The Brown corpus as NLTK ships it (brown.zip): documents brown/ca01 ..
 * brown/cr09, one sentence a line, tokens "word/tag". Tags are mapped to the 12
 * universal tags of Petrov, Das & McDonald (2012). Sentences are numbered in
 * document-name order; every 10th (number % 10 == 9) is the test split. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

const char *const data_universal_tags[12] = {".",    "ADJ", "ADP",  "ADV", "CONJ", "DET",
                                             "NOUN", "NUM", "PRON", "PRT", "VERB", "X"};
enum { U_PUNCT, U_ADJ, U_ADP, U_ADV, U_CONJ, U_DET, U_NOUN, U_NUM, U_PRON, U_PRT, U_VERB, U_X };

/* Base Brown tags (upper case, without the -HL/-TL/-NC suffixes). Reconstructed
 * from the published en-brown.map and checked against NLTK's universal-tag counts
 * of the news category (docs/data.md): possessive determiners (PP$, WP$) are DET,
 * ordinals (OD) ADJ, existential "there" (EX) and interjections (UH) PRT. */
static const struct {
    const char *tag;
    uint8_t uni;
} brown_base[] = {
    {".", U_PUNCT},   {",", U_PUNCT},   {":", U_PUNCT},  {"--", U_PUNCT},  {"(", U_PUNCT},   {")", U_PUNCT},
    {"'", U_PUNCT},   {"''", U_PUNCT},  {"``", U_PUNCT}, {"*", U_ADV},     {"ABL", U_PRT},   {"ABN", U_PRT},
    {"ABX", U_DET},   {"AP", U_ADJ},    {"AP$", U_PRT},  {"AT", U_DET},    {"BE", U_VERB},   {"BED", U_VERB},
    {"BEDZ", U_VERB}, {"BEG", U_VERB},  {"BEM", U_VERB}, {"BEN", U_VERB},  {"BER", U_VERB},  {"BEZ", U_VERB},
    {"CC", U_CONJ},   {"CD", U_NUM},    {"CD$", U_NOUN}, {"CS", U_ADP},    {"DO", U_VERB},   {"DOD", U_VERB},
    {"DOZ", U_VERB},  {"DT", U_DET},    {"DT$", U_DET},  {"DTI", U_DET},   {"DTS", U_DET},   {"DTX", U_DET},
    {"EX", U_PRT},    {"HV", U_VERB},   {"HVD", U_VERB}, {"HVG", U_VERB},  {"HVN", U_VERB},  {"HVZ", U_VERB},
    {"IN", U_ADP},    {"JJ", U_ADJ},    {"JJ$", U_ADJ},  {"JJR", U_ADJ},   {"JJS", U_ADJ},   {"JJT", U_ADJ},
    {"MD", U_VERB},   {"NIL", U_X},     {"NN", U_NOUN},  {"NN$", U_NOUN},  {"NNS", U_NOUN},  {"NNS$", U_NOUN},
    {"NP", U_NOUN},   {"NP$", U_NOUN},  {"NPS", U_NOUN}, {"NPS$", U_NOUN}, {"NR", U_NOUN},   {"NR$", U_NOUN},
    {"NRS", U_NOUN},  {"OD", U_ADJ},    {"PN", U_NOUN},  {"PN$", U_NOUN},  {"PP$", U_DET},   {"PP$$", U_PRON},
    {"PPL", U_PRON},  {"PPLS", U_PRON}, {"PPO", U_PRON}, {"PPS", U_PRON},  {"PPSS", U_PRON}, {"QL", U_ADV},
    {"QLP", U_ADV},   {"RB", U_ADV},    {"RB$", U_PRT},  {"RBR", U_ADV},   {"RBT", U_ADV},   {"RN", U_ADV},
    {"RP", U_PRT},    {"TO", U_PRT},    {"UH", U_PRT},   {"VB", U_VERB},   {"VBD", U_VERB},  {"VBG", U_VERB},
    {"VBN", U_VERB},  {"VBZ", U_VERB},  {"WDT", U_DET},  {"WP$", U_DET},   {"WPO", U_PRON},  {"WPS", U_PRON},
    {"WQL", U_ADV},   {"WRB", U_ADV},
};

/* A base tag (upper-cased copy in t, n bytes); a trailing "*" (negation: "isn't"
 * BEZ*) is dropped when the tag without it is known. -1 when unknown. */
static int base_universal(const char *t, size_t n) {
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof brown_base / sizeof brown_base[0]; i++)
            if (strlen(brown_base[i].tag) == n && memcmp(brown_base[i].tag, t, n) == 0) return brown_base[i].uni;
        if (n < 2 || t[n - 1] != '*') break;
        n--;
    }
    return -1;
}

int data_brown_universal(const char *tag, size_t len) {
    char t[32];
    if (len == 0 || len >= sizeof t) return U_X;
    for (size_t i = 0; i < len; i++) t[i] = (char)(tag[i] >= 'a' && tag[i] <= 'z' ? tag[i] - 32 : tag[i]);
    if (len > 3 && memcmp(t, "FW-", 3) == 0) return U_X; /* foreign words */
    /* -HL headline, -TL title, -NC cited word: the word's own tag comes first */
    while (len > 3 && (memcmp(t + len - 3, "-HL", 3) == 0 || memcmp(t + len - 3, "-TL", 3) == 0 ||
                       memcmp(t + len - 3, "-NC", 3) == 0))
        len -= 3;
    const char *plus = memchr(t, '+', len);
    if (!plus) {
        int u = base_universal(t, len);
        return u < 0 ? U_X : u;
    }
    /* a contraction ("i'm" PPSS+BEM): its parts' tag when they agree, else PRT */
    int a = base_universal(t, (size_t)(plus - t)), b = base_universal(plus + 1, len - (size_t)(plus - t) - 1);
    return a >= 0 && a == b ? a : U_PRT;
}

/* A Brown document name: brown/cXNN (or cXNN at the top level). */
static int is_document(const char *name) {
    const char *b = strrchr(name, '/');
    b = b ? b + 1 : name;
    return strlen(b) == 4 && b[0] == 'c' && b[1] >= 'a' && b[1] <= 'z' && b[2] >= '0' && b[2] <= '9' && b[3] >= '0' &&
           b[3] <= '9';
}

static int is_sep(unsigned char c) { return c <= 0x20 || c == 0x7f; }

/* The sentences of one document in s (those of `split`); *number counts sentences. */
static ts_status read_document(ts_ctx *ctx, const char *path, const char *doc, const char *text, size_t len,
                               ts_split split, int64_t *number, text_samples *s, char *words, uint8_t *tags) {
    size_t pos = 0;
    for (int64_t line = 1; pos < len && (!s->stop || s->count < s->stop); line++) {
        const char *l = text + pos, *nl = memchr(l, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - l) : len - pos;
        pos += n + 1;
        size_t i = 0, w = 0;
        int ntok = 0;
        while (i < n) {
            while (i < n && is_sep((unsigned char)l[i])) i++;
            if (i == n) break;
            size_t b = i;
            while (i < n && !is_sep((unsigned char)l[i])) i++;
            const char *slash = NULL;
            for (size_t k = b; k < i; k++)
                if (l[k] == '/') slash = l + k;
            if (!slash || slash == l + b || slash == l + i - 1)
                return ts_fail(ctx, TS_EFORMAT, "%s: %s line %lld: token \"%.*s\" is not word/tag", path, doc,
                               (long long)line, (int)(i - b < 40 ? i - b : 40), l + b);
            tags[ntok++] = (uint8_t)data_brown_universal(slash + 1, (size_t)(l + i - slash - 1));
            memcpy(words + w, l + b, (size_t)(slash - l - b));
            w += (size_t)(slash - l - b);
            words[w++] = ' ';
        }
        if (!ntok) continue;
        int test = *number % 10 == 9;
        (*number)++;
        if (test != (split == TS_SPLIT_TEST)) continue;
        ts_status st = text_samples_add(ctx, s, words, w - 1, NULL, 0, NULL, 0);
        if (!st) st = text_samples_set_tags(ctx, s, tags, ntok);
        if (st) return st;
    }
    return TS_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const zip_entry *)a)->name, ((const zip_entry *)b)->name);
}

ts_status text_read_brown(ts_ctx *ctx, const char *path, ts_split split, text_samples *s) {
    uint8_t *buf;
    size_t len;
    zip_entry *e = NULL;
    int n = 0, docs = 0;
    s->task = TS_SEQ_TAG;
    s->fixed_names = data_universal_tags;
    s->nfixed = 12;
    ts_status st = data_read_file(ctx, path, SIZE_MAX, &buf, &len);
    if (st) return st;
    st = data_zip_list(ctx, path, buf, len, &e, &n);
    if (!st) qsort(e, (size_t)n, sizeof *e, by_name);
    int64_t number = 0;
    for (int i = 0; !st && i < n && (!s->stop || s->count < s->stop); i++) {
        if (!is_document(e[i].name)) continue;
        docs++;
        uint8_t *text;
        size_t tl;
        st = data_zip_read(ctx, path, buf, len, &e[i], &text, &tl);
        /* a line's words (at most the line) and tags (a token takes at least 3 bytes and a separator) */
        char *words = st ? NULL : malloc(tl + 1);
        uint8_t *tags = words ? malloc(tl / 2 + 2) : NULL;
        if (!st && !tags) st = ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
        if (!st) st = read_document(ctx, path, e[i].name, (const char *)text, tl, split, &number, s, words, tags);
        free(words);
        free(tags);
        free(text);
    }
    if (!st && !docs) st = ts_fail(ctx, TS_EFORMAT, "%s: no Brown documents (expected entries like brown/ca01)", path);
    free(e);
    free(buf);
    return st;
}
