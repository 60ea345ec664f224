/* Text datasets: the tokenizer, the vocabulary (determinism, text form, garbled
 * forms refused), corpus BLEU against NLTK, the readers on the shared sets
 * (CLINC150, Brown, Tatoeba; BLEU on 3000 Tatoeba sentences) and on small files written here (SpamAssassin's
 * layout, hostile inputs: empty and 1 MB lines, invalid UTF-8, truncated gzip and
 * zip, a zip that lies about sizes), limit and split. */
#include "common/test.h"
#include "data/data.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static ts_ctx *g_ctx;
static char g_tmp[] = "/tmp/tessera-text-XXXXXX";

static const char *tpath(const char *name) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", g_tmp, name);
    return b;
}

static const char *write_tmp(const char *name, const void *d, size_t n) {
    const char *p = tpath(name);
    if (!test_write_file(p, d, n)) fprintf(stderr, "cannot write %s\n", p);
    return p;
}

/* The tokens of text joined by spaces (static buffer), or "ERROR". */
static const char *tok(const char *text) {
    static char out[4096];
    char *t;
    int n;
    if (ts_text_tokenize(g_ctx, text, &t, &n)) return "ERROR";
    snprintf(out, sizeof out, "%s", t);
    ts_text_free(t);
    return out;
}

/* ---------------------------------------------------------------- tokenizer */

static void test_tokenizer(void) {
    CHECK(!strcmp(tok("Hello, World!"), "hello , world !"), "%s", tok("Hello, World!"));
    CHECK(!strcmp(tok("don't   stop\tnow\n"), "don ' t stop now"), "%s", tok("don't   stop\tnow\n"));
    CHECK(!strcmp(tok("Café ÜBER"), "café Über"), "ASCII only is lower-cased: %s", tok("Café ÜBER"));
    CHECK(!strcmp(tok("a\xff"
                      "b \xc3"),
                  "a\xef\xbf\xbd"
                  "b \xef\xbf\xbd"),
          "invalid UTF-8 becomes U+FFFD");
    CHECK(!strcmp(tok("\xed\xa0\x80x"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx"), "a surrogate is 3 invalid bytes");
    CHECK(!strcmp(tok("x\x01y\x7fz"), "x y z"), "control bytes separate");
    CHECK(!strcmp(tok(""), "") && !strcmp(tok(" \t "), ""), "empty");
    CHECK(!strcmp(tok("3.5kg"), "3 . 5kg"), "%s", tok("3.5kg"));
    char longw[200], want[80];
    memset(longw, 'A', 100);
    longw[100] = '\0';
    memset(want, 'a', 64);
    want[64] = '\0';
    CHECK(!strcmp(tok(longw), want), "a long token keeps 64 bytes");
    for (int i = 0; i < 30; i++) memcpy(longw + 3 * i, "\xe2\x82\xac", 3); /* 30 euro signs, 90 bytes */
    longw[90] = '\0';
    CHECK(strlen(tok(longw)) == 63, "whole characters within 64 bytes: %zu", strlen(tok(longw)));
    /* a 1 MB line: every token counted, time linear */
    size_t big = 1 << 20;
    char *line = malloc(big + 1);
    for (size_t i = 0; i < big; i++) line[i] = i % 3 == 2 ? ' ' : 'x';
    line[big] = '\0';
    int n = 0;
    CHECK(ts_text_tokenize(g_ctx, line, NULL, &n) == TS_OK && n == (int)((big + 2) / 3), "%d tokens", n);
    memset(line, 'y', big);
    char *t = NULL;
    CHECK(ts_text_tokenize(g_ctx, line, &t, &n) == TS_OK && n == 1 && strlen(t) == 64, "one token, 64 bytes");
    ts_text_free(t);
    free(line);
}

/* --------------------------------------------------------------- vocabulary */

static char *saved(const ts_vocab *v) {
    char *s = NULL;
    CHECK(ts_vocab_save(g_ctx, v, &s) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return s;
}

static void test_vocab(void) {
    const char *texts[] = {"b a a c", "A b d", "e"};
    const char *shuffled[] = {"e", "A b d", "b a a c"};
    ts_vocab *v, *w, *m2;
    CHECK(ts_vocab_build(g_ctx, texts, 3, 1, &v) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_vocab_build(g_ctx, shuffled, 3, 1, &w) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_vocab_build(g_ctx, texts, 3, 2, &m2) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_vocab_size(v) == 9 && ts_vocab_size(m2) == 6, "sizes %d %d", ts_vocab_size(v), ts_vocab_size(m2));
    const char *order[] = {"<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c", "d", "e"};
    for (int i = 0; i < 9; i++) {
        CHECK(ts_vocab_word(v, i) && !strcmp(ts_vocab_word(v, i), order[i]), "id %d: %s", i, ts_vocab_word(v, i));
        CHECK(ts_vocab_id(v, order[i]) == i, "word %s", order[i]);
    }
    CHECK(ts_vocab_word(v, 9) == NULL && ts_vocab_word(v, -1) == NULL, "out of range");
    CHECK(ts_vocab_id(v, "zzz") == TS_TOKEN_UNK && ts_vocab_id(m2, "c") == TS_TOKEN_UNK, "unknown");
    char *sv = saved(v), *sw = saved(w);
    CHECK(sv && sw && !strcmp(sv, sw), "the order of the texts does not matter");
    CHECK(sv && !strncmp(sv, "tessera-vocab 1 9\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t3\nb\t2\nc\t1\n", 60), "%s",
          sv);
    /* round trip */
    ts_vocab *r = NULL;
    CHECK(sv && ts_vocab_parse(g_ctx, sv, strlen(sv), &r) == TS_OK, "%s", ts_ctx_error(g_ctx));
    char *sr = r ? saved(r) : NULL;
    CHECK(sr && !strcmp(sr, sv), "round trip");
    /* encode, decode */
    int32_t ids[8];
    int n = 0;
    CHECK(ts_vocab_encode(g_ctx, v, "A b, ZZZ", ids, 8, &n) == TS_OK && n == 4, "n %d", n);
    CHECK(ids[0] == 4 && ids[1] == 5 && ids[2] == 1 && ids[3] == 1, "ids %d %d %d %d", ids[0], ids[1], ids[2], ids[3]);
    CHECK(ts_vocab_encode(g_ctx, v, "a b c d", ids, 2, &n) == TS_OK && n == 2, "truncated at max");
    int32_t seq[] = {2, 4, 0, 5, 3, 6};
    char *text = NULL;
    CHECK(ts_vocab_decode(g_ctx, v, seq, 6, &text) == TS_OK && text && !strcmp(text, "a b"), "%s", text);
    ts_text_free(text);
    int32_t bad[] = {4, 99};
    CHECK(ts_vocab_decode(g_ctx, v, bad, 2, &text) == TS_EINVAL && text == NULL, "id out of range");
    ts_text_free(sv);
    ts_text_free(sw);
    ts_text_free(sr);
    ts_vocab_free(r);
    ts_vocab_free(v);
    ts_vocab_free(w);
    ts_vocab_free(m2);
}

static void test_vocab_garbled(void) {
    static const char *const bad[] = {
        "",
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\n",             /* size lies: too big */
        "tessera-vocab 1 4\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t1\n",       /* too small */
        "tessera-vocab 1 6\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t2\na\t1\n", /* repeated */
        "tessera-vocab 1 6\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t1\nb\t2\n", /* counts ascend */
        "tessera-vocab 1 6\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\nb\t1\na\t1\n", /* ties not in byte order */
        "tessera-vocab 1 5\n<unk>\t0\n<pad>\t0\n<bos>\t0\n<eos>\t0\na\t1\n",       /* specials swapped */
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t-1\n",      /* sign */
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t01\n",      /* leading zero */
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\nA\t1\n",       /* upper case */
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na b\t1\n",     /* a space */
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\t1",         /* no line end */
        "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na1\n",         /* no tab */
        "tessera-vocab 1 99999999999999999999\n",                                  /* huge size */
        "tessera-vocab 2 4\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\n",             /* version */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ts_vocab *v = (ts_vocab *)1;
        ts_ctx_clear_error(g_ctx);
        ts_status st = ts_vocab_parse(g_ctx, bad[i], strlen(bad[i]), &v);
        const char *msg = ts_ctx_error(g_ctx);
        CHECK(st == TS_EFORMAT && v == NULL && *msg && !strchr(msg, '\n'), "case %zu: %d %s", i, (int)st, msg);
    }
    /* a NUL inside a word */
    const char nul[] = "tessera-vocab 1 5\n<pad>\t0\n<unk>\t0\n<bos>\t0\n<eos>\t0\na\0b\t1\n";
    ts_vocab *v = NULL;
    CHECK(ts_vocab_parse(g_ctx, nul, sizeof nul - 1, &v) == TS_EFORMAT && !v, "NUL in a word");
}

/* --------------------------------------------------------------------- BLEU */

static void test_bleu(void) {
    /* NLTK 3.8 corpus_bleu (tests/fixtures/gen_text_expect.py) */
    static const char *const h1[] = {
        "it is a guide to action which ensures that the military always obeys the commands of the party",
        "he read the book because he was interested in world history"};
    static const char *const r1[] = {
        "it is a guide to action that ensures that the military will forever heed party commands",
        "it is the guiding principle which guarantees the military forces always being under the command of the party",
        "he was interested in world history because he read the book",
        "he read the book because he was interested in world history"};
    static const char *const h4[] = {"le chat est sur le tapis rouge", "il fait beau aujourd'hui"};
    static const char *const r4[] = {"le chat est sur le tapis", "il fait très beau aujourd'hui"};
    const char *same = "the cat is on the mat", *thes = "the the the the the the the", *short6 = "a b c d e f",
               *ref10 = "a b c d e f g h i j";
    double b = -1;
    CHECK(ts_corpus_bleu_text(g_ctx, &same, &same, 1, 1, &b) == TS_OK && b == 1.0, "identical: %g", b);
    CHECK(ts_corpus_bleu_text(g_ctx, h1, r1, 2, 2, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_NEAR(b, 0.699060739791, 0, 1e-9);
    CHECK(ts_corpus_bleu_text(g_ctx, &thes, &same, 1, 1, &b) == TS_OK && b == 0.0, "no 2-gram match: %g", b);
    CHECK(ts_corpus_bleu_text(g_ctx, &short6, &ref10, 1, 1, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_NEAR(b, exp(1.0 - 10.0 / 6.0), 0, 1e-12); /* brevity penalty only */
    CHECK_NEAR(b, 0.513417119033, 0, 1e-9);
    CHECK(ts_corpus_bleu_text(g_ctx, h4, r4, 2, 1, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_NEAR(b, 0.701687939128, 0, 1e-9);
    /* ids: the same as the text form; an empty hypothesis scores 0 */
    int32_t hy[] = {5, 6, 7, 8, 9}, rf[] = {5, 6, 7, 8, 9};
    ts_token_seq hs = {hy, 5}, rs = {rf, 5}, empty = {NULL, 0};
    CHECK(ts_corpus_bleu(g_ctx, &hs, &rs, 1, 1, &b) == TS_OK && b == 1.0, "ids identical %g", b);
    CHECK(ts_corpus_bleu(g_ctx, &empty, &rs, 1, 1, &b) == TS_OK && b == 0.0, "empty %g", b);
    CHECK(ts_corpus_bleu(g_ctx, &hs, &rs, 1, 0, &b) == TS_EINVAL, "0 references");
}

/* sacrebleu's own test values (mjpost/sacrebleu, test/test_bleu.py), as facts, in
 * TS_BLEU_SACREBLEU: its README example with tokenize='none' (tokens split at spaces,
 * as the _text functions do; two reference streams) is 49.1919566; three empty
 * hypotheses score 0; an identical sentence 1. Its statistics case ("am I am a
 * character sequence" against "I am a symbol string sequence a a": matches 4, 2, 1, 0
 * of 6, 5, 4, 3 n-grams) under its default 'exp' smoothing and brevity penalty:
 * exp(1 - 8/6) * (4/6 * 2/5 * 1/4 * 1/(2*3))^(1/4). NLTK's style differs on the README
 * example because "It wasn't surprising." (3 tokens) counts as one 4-gram there. */
static void test_bleu_sacrebleu(void) {
    static const char *const hyps[] = {"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
    /* hypothesis i's references: stream 1's i-th, then stream 2's */
    static const char *const refs[] = {"The dog bit the man.",   "The dog had bit the man.",
                                       "It was not unexpected.", "No one was surprised.",
                                       "The man bit him first.", "The man had bitten the dog."};
    static const char *const empties[] = {"", "", ""};
    const char *test = "this is a test", *am = "am I am a character sequence",
               *am_ref = "I am a symbol string sequence a a";
    const ts_bleu_style sb = TS_BLEU_SACREBLEU;
    double b = -1;
    CHECK(ts_corpus_bleu_text_style(g_ctx, sb, hyps, refs, 3, 2, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_NEAR(100.0 * b, 49.1919566, 0, 1e-6);
    CHECK(ts_corpus_bleu_text(g_ctx, hyps, refs, 3, 2, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_NEAR(100.0 * b, 47.0001003684, 0, 1e-8); /* NLTK: 4-grams 2 of 6, not of 5 */
    CHECK(ts_corpus_bleu_text_style(g_ctx, sb, empties, refs, 3, 2, &b) == TS_OK && b == 0.0, "empty: %g", b);
    CHECK(ts_corpus_bleu_text_style(g_ctx, sb, &test, &test, 1, 1, &b) == TS_OK && b == 1.0, "identical: %g", b);
    CHECK(ts_corpus_bleu_text_style(g_ctx, sb, &am, &am_ref, 1, 1, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK_NEAR(b, exp(1.0 - 8.0 / 6.0) * pow(4.0 / 6 * 2.0 / 5 * 1.0 / 4 * 1.0 / 6, 0.25), 0, 1e-12);
    CHECK(ts_corpus_bleu_text(g_ctx, &am, &am_ref, 1, 1, &b) == TS_OK && b == 0.0, "NLTK, no 4-gram match: %g", b);
    /* a corpus too short for 4-grams: sacrebleu 0, NLTK its floor of one 4-gram */
    const char *two = "a b";
    CHECK(ts_corpus_bleu_text_style(g_ctx, sb, &two, &two, 1, 1, &b) == TS_OK && b == 0.0, "2 tokens: %g", b);
    CHECK(ts_corpus_bleu_text_style(g_ctx, (ts_bleu_style)2, &two, &two, 1, 1, &b) == TS_EINVAL, "style 2");
    ts_ctx_clear_error(g_ctx);
}

/* BLEU on real sentences, as tests/fixtures/gen_text_expect.py makes them: the French
 * side of lines 40000..42999 of eng-fra.txt.gz as references; hypothesis k drops
 * word i when (i + k) % 5 == 1 and is reversed when k % 7 == 0. */
static void test_bleu_tatoeba(void) {
    const char *shared = test_shared_data();
    char path[1024];
    snprintf(path, sizeof path, "%s/text/tatoeba/eng-fra.txt.gz", shared ? shared : ".");
    gzFile gz = shared ? gzopen(path, "rb") : NULL;
    if (!gz) return;
    enum { FIRST = 40000, N = 3000 };
    static char line[4096], *hyp[N], *ref[N];
    int k = 0;
    for (int no = 0; k < N && gzgets(gz, line, sizeof line); no++) {
        if (no < FIRST) continue;
        line[strcspn(line, "\n")] = '\0';
        char *fr = strchr(line, '\t');
        ref[k] = strdup(fr ? fr + 1 : "");
        char *words[256], *save = NULL, *copy = strdup(ref[k]);
        int n = 0, kept = 0;
        for (char *w = strtok_r(copy, " ", &save); w && n < 256; w = strtok_r(NULL, " ", &save), n++)
            if ((n + k) % 5 != 1) words[kept++] = w;
        hyp[k] = calloc(strlen(ref[k]) + 2, 1);
        for (int i = 0; i < kept; i++) {
            strcat(hyp[k], words[k % 7 == 0 ? kept - 1 - i : i]);
            strcat(hyp[k], " ");
        }
        free(copy);
        k++;
    }
    gzclose(gz);
    double b = -1;
    CHECK(k == N && ts_corpus_bleu_text(g_ctx, (const char *const *)hyp, (const char *const *)ref, N, 1, &b) == TS_OK,
          "%d lines: %s", k, ts_ctx_error(g_ctx));
    CHECK_NEAR(b, 0.419412685882, 0, 1e-9); /* NLTK 3.8 */
    for (int i = 0; i < k; i++) {
        free(hyp[i]);
        free(ref[i]);
    }
}

/* ------------------------------------------------------------ real datasets */

static char *decode_row(const ts_vocab *v, const int32_t *ids, int n) {
    char *t = NULL;
    CHECK(ts_vocab_decode(g_ctx, v, ids, n, &t) == TS_OK, "%s", ts_ctx_error(g_ctx));
    return t;
}

static void test_clinc(void) {
    const char *shared = test_shared_data();
    if (!shared) {
        printf("note: ../shared/data not found; CLINC150 check skipped\n");
        return;
    }
    ts_text_dataset *tr = NULL, *te = NULL;
    ts_status st = ts_text_dataset_load(g_ctx, "clinc_oos", TS_SPLIT_TRAIN, shared, NULL, &tr);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (st) return;
    CHECK(tr->count == 15100 && tr->classes == 151 && tr->task == TS_SEQ_CLASSIFY, "%lld %d", (long long)tr->count,
          tr->classes);
    for (int i = 1; i < tr->classes; i++) CHECK(strcmp(tr->class_names[i - 1], tr->class_names[i]) < 0, "sorted");
    char *t = decode_row(tr->vocab, tr->tokens, tr->lengths[0]);
    CHECK(t && !strcmp(t, "what expression would i use to say i love you if i were an italian"), "%s", t);
    ts_text_free(t);
    CHECK(!strcmp(tr->class_names[tr->labels[0]], "translate"), "%s", tr->class_names[tr->labels[0]]);
    CHECK(!strcmp(tr->class_names[tr->labels[15000]], "oos"), "oos_train follows train");
    for (int64_t i = 0; i < tr->count; i++)
        if (tr->lengths[i] < 1 || tr->lengths[i] > tr->max_len) CHECK(0, "length %d", tr->lengths[i]);
    /* the test split encoded with the training split's vocabulary and labels */
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.vocab = tr->vocab;
    opt.class_names = (const char *const *)tr->class_names;
    opt.classes = tr->classes;
    opt.max_len = tr->max_len;
    st = ts_text_dataset_load(g_ctx, "clinc_oos", TS_SPLIT_TEST, shared, &opt, &te);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!st) {
        CHECK(te->count == 5500 && te->classes == 151 && ts_vocab_size(te->vocab) == ts_vocab_size(tr->vocab), "%lld",
              (long long)te->count);
        t = decode_row(te->vocab, te->tokens, te->lengths[0]);
        CHECK(t && !strcmp(t, "how would you say fly in italian"), "%s", t);
        ts_text_free(t);
    }
    /* split */
    ts_text_dataset *a = NULL, *b = NULL;
    CHECK(ts_text_dataset_split(g_ctx, tr, 1000, 7, &a, &b) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (a && b) {
        CHECK(a->count == 14100 && b->count == 1000 && a->classes == 151, "split sizes");
        CHECK(ts_vocab_size(a->vocab) == ts_vocab_size(tr->vocab), "vocabulary copied");
    }
    ts_text_dataset_free(a);
    ts_text_dataset_free(b);
    ts_text_dataset_free(tr);
    ts_text_dataset_free(te);
}

/* ts_text_dataset_select: the samples of the chosen classes, relabelled in their order */
static void test_select(void) {
    ts_text_dataset *ds = test_first_marker_texts(60, 6, 12, 4, 3), *sel = NULL;
    const int want[2] = {2, 0};
    int64_t n2 = 0, n0 = 0;
    for (int64_t i = 0; i < ds->count; i++) {
        n2 += ds->labels[i] == 2;
        n0 += ds->labels[i] == 0;
    }
    CHECK(ts_text_dataset_select(g_ctx, ds, want, 2, &sel) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (sel) {
        CHECK(sel->count == n2 + n0 && sel->classes == 2 && n2 > 0 && n0 > 0, "%lld samples of %lld + %lld",
              (long long)sel->count, (long long)n2, (long long)n0);
        for (int64_t i = 0, k = 0; i < ds->count; i++) {
            if (ds->labels[i] != 2 && ds->labels[i] != 0) continue;
            CHECK(sel->labels[k] == (ds->labels[i] == 2 ? 0 : 1) && sel->lengths[k] == ds->lengths[i] &&
                      !memcmp(sel->tokens + k * 6, ds->tokens + i * 6, 6 * sizeof(int32_t)),
                  "sample %lld (selected %lld) differs", (long long)i, (long long)k);
            k++;
        }
    }
    ts_text_dataset_free(sel);
    const int twice[2] = {1, 1}, outside[1] = {4};
    CHECK(ts_text_dataset_select(g_ctx, ds, twice, 2, &sel) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "twice"), "%s",
          ts_ctx_error(g_ctx));
    CHECK(ts_text_dataset_select(g_ctx, ds, outside, 1, &sel) == TS_EINVAL && strstr(ts_ctx_error(g_ctx), "class 4"),
          "%s", ts_ctx_error(g_ctx));
    ds->labels[7] = 9; /* a label outside the set's classes: refused, never read past the table */
    CHECK(ts_text_dataset_select(g_ctx, ds, want, 2, &sel) == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "sample 7") &&
              !sel,
          "%s", ts_ctx_error(g_ctx));
    test_free_texts(ds);
}

static void test_brown(void) {
    const char *shared = test_shared_data();
    if (!shared) return;
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.limit = 1000;
    ts_text_dataset *tr = NULL, *te = NULL;
    ts_status st = ts_text_dataset_load(g_ctx, "brown", TS_SPLIT_TRAIN, shared, &opt, &tr);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (st) return;
    CHECK(tr->count == 1000 && tr->classes == 12 && tr->task == TS_SEQ_TAG, "%lld", (long long)tr->count);
    char *t = decode_row(tr->vocab, tr->tokens, tr->lengths[0]);
    CHECK(t && !strncmp(t, "the fulton county grand jury said friday an investigation of atlanta's", 70), "%s", t);
    ts_text_free(t);
    /* The/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd ... of/in Atlanta's/np$ */
    static const char *const want[] = {"DET",  "NOUN", "NOUN", "ADJ", "NOUN", "VERB",
                                       "NOUN", "DET",  "NOUN", "ADP", "NOUN"};
    for (int j = 0; j < 11; j++)
        CHECK(!strcmp(tr->class_names[tr->labels[j]], want[j]), "tag %d: %s", j, tr->class_names[tr->labels[j]]);
    CHECK(tr->labels[tr->lengths[0]] == -1 || tr->lengths[0] == tr->max_len, "-1 past the length");
    /* The news category (documents ca01..ca44: the first 4623 sentences, 4161 of them
     * training) against NLTK's universal-tag counts published in the NLTK book, ch. 5
     * sec. 2.3: equal for 9 tags; NLTK has NOUN 30640, PRT 2264, VERB 14399, and its
     * counts sum to 14 less than the 100554 tokens of the category. */
    static const int64_t news[12] = {11928, 6706, 12355, 3349, 2717, 11389, 30654, 2166, 2535, 2265, 14398, 92};
    int64_t got[12] = {0};
    for (int part = 0; part < 2; part++) {
        ts_text_dataset *d = NULL;
        opt.limit = part ? 462 : 4161;
        st = ts_text_dataset_load(g_ctx, "brown", part ? TS_SPLIT_TEST : TS_SPLIT_TRAIN, shared, &opt, &d);
        CHECK(st == TS_OK && d->count == opt.limit, "%s", ts_ctx_error(g_ctx));
        for (int64_t i = 0; d && i < d->count; i++)
            for (int j = 0; j < d->lengths[i]; j++) got[d->labels[i * d->max_len + j]]++;
        ts_text_dataset_free(d);
    }
    for (int c = 0; c < 12; c++)
        CHECK(got[c] == news[c], "%s: %lld, expected %lld", data_universal_tags[c], (long long)got[c],
              (long long)news[c]);
    /* the whole training split: 57340 sentences less every 10th */
    opt.limit = 0;
    ts_text_dataset *all = NULL;
    st = ts_text_dataset_load(g_ctx, "brown", TS_SPLIT_TRAIN, shared, &opt, &all);
    CHECK(st == TS_OK && all->count == 51606 && all->max_len == 180, "%s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(all);
    /* the whole test split: every 10th sentence of 57340 */
    opt.limit = 0;
    opt.max_len = 50;
    st = ts_text_dataset_load(g_ctx, "brown", TS_SPLIT_TEST, shared, &opt, &te);
    CHECK(st == TS_OK && te && te->count == 5734 && te->max_len == 50, "%s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(tr);
    ts_text_dataset_free(te);
}

static void test_universal_map(void) {
    static const struct {
        const char *brown, *uni;
    } cases[] = {{"at", "DET"},    {"np-tl", "NOUN"}, {"nn-tl-hl", "NOUN"}, {"pp$", "DET"},    {"od", "ADJ"},
                 {"bez*", "VERB"}, {"*", "ADV"},      {"ppss+bem", "PRT"},  {"md+hv", "VERB"}, {"fw-nn", "X"},
                 {"''", "."},      {"cs", "ADP"},     {"ex", "PRT"},        {"zzz", "X"},      {"to", "PRT"},
                 {"wdt", "DET"},   {"ql", "ADV"},     {"cd", "NUM"},        {"nil", "X"},      {"--", "."}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int u = data_brown_universal(cases[i].brown, strlen(cases[i].brown));
        CHECK(!strcmp(data_universal_tags[u], cases[i].uni), "%s: %s", cases[i].brown, data_universal_tags[u]);
    }
}

static void test_tatoeba(void) {
    const char *shared = test_shared_data();
    if (!shared) return;
    ts_text_dataset *tr = NULL, *te = NULL;
    ts_status st = ts_text_dataset_load(g_ctx, "tatoeba", TS_SPLIT_TRAIN, shared, NULL, &tr);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (st) return;
    CHECK(tr->count == 44969 && tr->task == TS_SEQ_TRANSLATE && tr->target_vocab && tr->classes == 0, "%lld",
          (long long)tr->count);
    char *s = decode_row(tr->vocab, tr->tokens, tr->lengths[0]);
    char *t = decode_row(tr->target_vocab, tr->targets, tr->target_lengths[0]);
    CHECK(s && t && !strcmp(s, "go .") && !strcmp(t, "va !"), "%s / %s", s, t);
    CHECK(tr->targets[0] == TS_TOKEN_BOS && tr->targets[tr->target_lengths[0] - 1] == TS_TOKEN_EOS, "bos ... eos");
    ts_text_free(s);
    ts_text_free(t);
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.vocab = tr->vocab;
    opt.target_vocab = tr->target_vocab;
    opt.max_len = 6;
    opt.target_len = 5;
    st = ts_text_dataset_load(g_ctx, "tatoeba", TS_SPLIT_TEST, shared, &opt, &te);
    CHECK(st == TS_OK && te->count == 5031, "%s", ts_ctx_error(g_ctx));
    for (int64_t i = 0; te && i < te->count; i++)
        if (te->target_lengths[i] > 5 || te->targets[i * 5 + te->target_lengths[i] - 1] != TS_TOKEN_EOS ||
            te->lengths[i] > 6)
            CHECK(0, "truncation keeps <eos> last: sample %lld", (long long)i);
    ts_text_dataset_free(tr);
    ts_text_dataset_free(te);
}

/* ------------------------------------------------------ small and hostile files */

static ts_status load_path(const char *path, ts_split split, const ts_text_options *opt, ts_text_dataset **ds) {
    ts_ctx_clear_error(g_ctx);
    ts_status st = ts_text_dataset_load(g_ctx, path, split, NULL, opt, ds);
    if (st) CHECK(*ds == NULL && *ts_ctx_error(g_ctx) && !strchr(ts_ctx_error(g_ctx), '\n'), "one-line error");
    return st;
}

static void test_pairs_hostile(void) {
    ts_text_dataset *ds = NULL;
    /* blank lines skipped, CRLF, a third column ignored, invalid UTF-8 repaired */
    const char ok[] = "\nHi.\tSalut !\r\n   \nRun!\tCours\xff !\tCC-BY\n";
    const char *p = write_tmp("pairs.txt", ok, sizeof ok - 1);
    ts_status st = load_path(p, TS_SPLIT_TRAIN, NULL, &ds);
    int64_t tr = st ? -1 : ds->count;
    ts_text_dataset_free(ds);
    st = load_path(p, TS_SPLIT_TEST, NULL, &ds);
    CHECK(!st && tr + ds->count == 2, "%lld + %lld", (long long)tr, ds ? (long long)ds->count : -1LL);
    ts_text_dataset_free(ds);
    /* a line without a tab: its number */
    const char notab[] = "a\tb\nno tab here\n";
    st = load_path(write_tmp("notab.txt", notab, sizeof notab - 1), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "line 2"), "%s", ts_ctx_error(g_ctx));
    /* a 1 MB line: read, truncated to max_len */
    size_t big = 1 << 20;
    char *line = malloc(big + 8);
    for (size_t i = 0; i < big; i++) line[i] = i % 2 ? ' ' : 'w';
    memcpy(line + big, "\tx y\n", 5);
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.max_len = 40;
    p = write_tmp("big.txt", line, big + 5);
    st = load_path(p, TS_SPLIT_TRAIN, &opt, &ds);
    if (st == TS_OK && ds->count == 0) { /* the pair hashed into the test split */
        ts_text_dataset_free(ds);
        st = load_path(p, TS_SPLIT_TEST, &opt, &ds);
    }
    CHECK(st == TS_OK && ds->count == 1 && ds->lengths[0] == 40 && ds->max_len == 40, "%s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(ds);
    free(line);
    /* a truncated gzip */
    size_t n;
    uint8_t *gz = NULL;
    const char *shared = test_shared_data();
    char real[1024];
    snprintf(real, sizeof real, "%s/text/tatoeba/eng-fra.txt.gz", shared ? shared : ".");
    if ((gz = test_read_file(real, &n)) != NULL) {
        st = load_path(write_tmp("cut.txt.gz", gz, n / 2), TS_SPLIT_TRAIN, NULL, &ds);
        CHECK(st == TS_EFORMAT, "truncated gzip: %d %s", (int)st, ts_ctx_error(g_ctx));
        free(gz);
    }
}

/* Pairs read both ways: each pair twice, labelled by the language written, the
 * source starting with that language's tag; a test split read with the training
 * vocabularies; one-way and both-way sets refuse each other's languages. */
static void test_pairs_both_ways(void) {
    const char text[] = "I am hungry.\tJ'ai faim.\nGo!\tVa !\nHe runs.\tIl court.\nWe eat.\tNous mangeons.\n"
                        "She sings.\tElle chante.\nThey play.\tIls jouent.\nRun!\tCours !\n";
    const char *p = write_tmp("eng-fra.txt", text, sizeof text - 1);
    ts_text_options opt;
    ts_text_options_default(&opt);
    ts_text_dataset *one = NULL, *both = NULL, *both_test = NULL, *one_test = NULL;
    ts_status st = load_path(p, TS_SPLIT_TRAIN, &opt, &one);
    opt.both_ways = 1;
    if (!st) st = load_path(p, TS_SPLIT_TRAIN, &opt, &both);
    CHECK(st == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (st) goto done;
    CHECK(both->count == 2 * one->count && both->classes == 2 && one->classes == 0 && !one->labels, "%lld, %lld",
          (long long)both->count, (long long)one->count);
    CHECK(!strcmp(both->class_names[0], "fra") && !strcmp(both->class_names[1], "eng"), "languages named by the file");
    const int32_t tag_fr = ts_vocab_id(both->vocab, "<2fra>"), tag_en = ts_vocab_id(both->vocab, "<2eng>");
    CHECK(tag_fr > TS_TOKEN_EOS && tag_en > TS_TOKEN_EOS && ts_vocab_id(one->vocab, "<2fra>") == TS_TOKEN_UNK,
          "tags %d %d in the both-ways vocabulary only", tag_fr, tag_en);
    const int T = both->max_len;
    for (int64_t i = 0; i + 1 < both->count; i += 2) {
        CHECK(both->lengths[i] == one->lengths[i / 2] + 1, "the tag takes a place: %d vs %d", both->lengths[i],
              one->lengths[i / 2]);
        CHECK(both->labels[i] == 0 && both->labels[i + 1] == 1, "pair %lld: labels %d %d", (long long)i,
              both->labels[i], both->labels[i + 1]);
        CHECK(both->tokens[i * T] == tag_fr && both->tokens[(i + 1) * T] == tag_en, "pair %lld starts with its tag",
              (long long)i);
        /* the way back: the French words are its source, the English its target */
        char *fw = decode_row(both->vocab, both->tokens + i * T + 1, both->lengths[i] - 1);
        char *bt = decode_row(both->target_vocab, both->targets + (i + 1) * both->target_len + 1,
                              both->target_lengths[i + 1] - 2);
        CHECK(fw && bt && !strcmp(fw, bt), "pair %lld: '%s' vs '%s'", (long long)i, fw, bt);
        ts_text_free(fw);
        ts_text_free(bt);
    }
    /* the test split, encoded with the training vocabularies and languages */
    ts_text_options te;
    ts_text_options_default(&te);
    te.vocab = both->vocab;
    te.target_vocab = both->target_vocab;
    te.class_names = (const char *const *)both->class_names;
    te.classes = 2;
    te.both_ways = 1;
    st = load_path(p, TS_SPLIT_TEST, &te, &both_test);
    CHECK(st == TS_OK && both_test->count % 2 == 0 && both_test->count + both->count == 14, "%s", ts_ctx_error(g_ctx));
    int sel = 1;
    ts_text_dataset *eng = NULL;
    CHECK(ts_text_dataset_select(g_ctx, both, &sel, 1, &eng) == TS_OK && eng->count == one->count &&
              eng->labels[0] == 0 && !strcmp(eng->class_names[0], "eng"),
          "selecting the pairs into English: %s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(eng);
    /* a one-way vocabulary has no tags; languages for a set read one way are refused */
    te.vocab = one->vocab;
    te.target_vocab = one->target_vocab;
    st = load_path(p, TS_SPLIT_TRAIN, &te, &one_test);
    CHECK(st == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "<2fra>"), "%s", ts_ctx_error(g_ctx));
    te.both_ways = 0;
    st = load_path(p, TS_SPLIT_TRAIN, &te, &one_test);
    CHECK(st == TS_EINVAL, "%s", ts_ctx_error(g_ctx));
    /* a file naming one language twice: the fallback names, so the labels stay apart */
    ts_text_dataset *same = NULL;
    st = load_path(write_tmp("eng-eng.txt", text, sizeof text - 1), TS_SPLIT_TRAIN, &opt, &same);
    CHECK(st == TS_OK && !strcmp(same->class_names[0], "target") && !strcmp(same->class_names[1], "source") &&
              same->labels[0] == 0 && same->labels[1] == 1,
          "eng-eng.txt: %s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(same);
    /* only pairs are read both ways */
    const char json[] = "{\"train\": [[\"hi\", \"greet\"]], \"test\": []}";
    opt.both_ways = 1;
    st = load_path(write_tmp("data_full.json", json, sizeof json - 1), TS_SPLIT_TRAIN, &opt, &one_test);
    CHECK(st == TS_EINVAL, "both ways on CLINC: %s", ts_ctx_error(g_ctx));
done:
    ts_text_dataset_free(one);
    ts_text_dataset_free(both);
    ts_text_dataset_free(both_test);
    ts_text_dataset_free(one_test);
}

static void test_clinc_hostile(void) {
    static const char *const bad[] = {
        "",
        "[]",
        "{\"train\": [[\"a\", \"b\"]], \"nope\": []}",
        "{\"train\": [[\"a\"]]}",
        "{\"train\": [[\"a\", 3]]}",
        "{\"train\": [[\"a\", \"b\"]]} x",
        "{\"train\": [[\"a\\ud800\", \"b\"]]}",
        "{\"train\": [[\"a\", \"b\"]], \"train\": []}",
        "{\"val\": "
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"train\": [[\"unterminated, \"b\"]]",
        "{\"train\": [[\"a\x01\", \"b\"]]}",
        "{\"train\": [[\"a\\u0\"]]}",           /* an escape cut by the closing quote (found by fuzz_text) */
        "{\"train\": [[\"a\\u00g0\", \"b\"]]}", /* not hex */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ts_text_dataset *ds = NULL;
        ts_status st = load_path(write_tmp("bad.json", bad[i], strlen(bad[i])), TS_SPLIT_TRAIN, NULL, &ds);
        CHECK(st == TS_EFORMAT, "case %zu: %d %s", i, (int)st, ts_ctx_error(g_ctx));
        ts_text_dataset_free(ds);
    }
    /* no sample at all: an empty dataset */
    ts_text_dataset *none = NULL;
    CHECK(load_path(write_tmp("none.json", "{}", 2), TS_SPLIT_TRAIN, NULL, &none) == TS_OK && none->count == 0, "%s",
          ts_ctx_error(g_ctx));
    ts_text_dataset_free(none);
    /* escapes, an empty utterance skipped, the split's labels given */
    const char ok[] =
        "{\"train\": [[\"Caf\\u00e9 \\\"ok\\\"\", \"b\"], [\"  \", \"a\"], [\"x\", \"a\"]], \"test\": []}";
    ts_text_dataset *ds = NULL;
    ts_status st = load_path(write_tmp("ok.json", ok, sizeof ok - 1), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_OK && ds->count == 2 && ds->classes == 2, "%s", ts_ctx_error(g_ctx));
    if (!st) {
        char *t = decode_row(ds->vocab, ds->tokens, ds->lengths[0]);
        CHECK(t && !strcmp(t, "café \" ok \""), "%s", t);
        ts_text_free(t);
    }
    ts_text_dataset_free(ds);
    const char *names[] = {"a"};
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.class_names = names;
    opt.classes = 1;
    st = load_path(tpath("ok.json"), TS_SPLIT_TRAIN, &opt, &ds);
    CHECK(st == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "\"b\""), "%s", ts_ctx_error(g_ctx));
}

/* Little-endian fields {value, bytes} appended to z at *n. */
static void put_fields(uint8_t *z, size_t *n, const uint32_t (*f)[2], int count) {
    for (int i = 0; i < count; i++)
        for (uint32_t k = 0; k < f[i][1]; k++) z[(*n)++] = (uint8_t)(f[i][0] >> (8 * k));
}

/* A zip of one stored entry; declared sizes and CRC can lie. */
static size_t make_zip(uint8_t *z, const char *name, const char *data, uint32_t declared, uint32_t crc) {
    uint32_t nl = (uint32_t)strlen(name), dl = (uint32_t)strlen(data);
    size_t n = 0;
    /* signature, version, flags, method, time and date, CRC, sizes, name and extra lengths */
    const uint32_t local[][2] = {{0x04034b50, 4}, {20, 2}, {0, 2},        {0, 2},  {0, 4},
                                 {crc, 4},        {dl, 4}, {declared, 4}, {nl, 2}, {0, 2}};
    put_fields(z, &n, local, 10);
    memcpy(z + n, name, nl);
    memcpy(z + n + nl, data, dl);
    n += nl + dl;
    uint32_t cd = (uint32_t)n;
    /* the same, after a second version; then comment length, disk, attributes, offset 0 */
    const uint32_t central[][2] = {{0x02014b50, 4}, {20, 2}, {20, 2}, {0, 2}, {0, 2}, {0, 4}, {crc, 4}, {dl, 4},
                                   {declared, 4},   {nl, 2}, {0, 2},  {0, 2}, {0, 2}, {0, 2}, {0, 4},   {0, 4}};
    put_fields(z, &n, central, 16);
    memcpy(z + n, name, nl);
    n += nl;
    const uint32_t end[][2] = {{0x06054b50, 4}, {0, 2}, {0, 2}, {1, 2}, {1, 2}, {(uint32_t)n - cd, 4}, {cd, 4}, {0, 2}};
    put_fields(z, &n, end, 8);
    return n;
}

static void test_zip_hostile(void) {
    const char *doc = "\tThe/at dog/nn barked/vbd ./.\n\n\tIt/pps ran/vbd ./.\n";
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)doc, (uInt)strlen(doc)), len = (uint32_t)strlen(doc);
    uint8_t z[1024];
    ts_text_dataset *ds = NULL;
    size_t n = make_zip(z, "brown/ca01", doc, len, crc);
    ts_status st = load_path(write_tmp("ok.zip", z, n), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_OK && ds->count == 2 && ds->lengths[0] == 4, "%s", ts_ctx_error(g_ctx));
    if (!st) CHECK(!strcmp(ds->class_names[ds->labels[2]], "VERB"), "barked");
    ts_text_dataset_free(ds);
    n = make_zip(z, "brown/ca01", doc, len * 5000, crc);
    st = load_path(write_tmp("lies.zip", z, n), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT, "a size that lies: %s", ts_ctx_error(g_ctx));
    n = make_zip(z, "brown/ca01", doc, len, crc ^ 1);
    st = load_path(write_tmp("crc.zip", z, n), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "CRC"), "%s", ts_ctx_error(g_ctx));
    n = make_zip(z, "brown/ca01", doc, len, crc);
    st = load_path(write_tmp("cut.zip", z, n - 10), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT, "truncated: %s", ts_ctx_error(g_ctx));
    n = make_zip(z, "brown/README", doc, len, crc);
    st = load_path(write_tmp("nodoc.zip", z, n), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT, "no documents: %s", ts_ctx_error(g_ctx));
    const char *bad = "\tThe/at dog barked/vbd\n";
    n = make_zip(z, "brown/ca01", bad, (uint32_t)strlen(bad),
                 (uint32_t)crc32(0, (const Bytef *)bad, (uInt)strlen(bad)));
    st = load_path(write_tmp("notag.zip", z, n), TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT && strstr(ts_ctx_error(g_ctx), "line 1"), "%s", ts_ctx_error(g_ctx));
}

/* SpamAssassin's layout, written here (the npm package is not among the shared data). */
static void test_spam_layout(void) {
    char dir[256], sub[512];
    snprintf(dir, sizeof dir, "%.200s/spam", g_tmp);
    snprintf(sub, sizeof sub, "%s/spam-1", dir);
    mkdir(dir, 0755);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/easy-ham-1", dir);
    mkdir(sub, 0755);
    const char list[] = "[\"easy-ham-1/00001.a.txt\", \"spam-1/00001.b.txt\"]";
    write_tmp("spam/file_list.json", list, sizeof list - 1);
    const char ham[] = "From: a@b\nSubject: Meeting today\nX-Other: zzz\n\nSee you at noon.\n";
    const char spam[] = "Subject: WIN MONEY\r\n\r\nClick \x93here\x94 now!!!\r\n";
    write_tmp("spam/easy-ham-1/00001.a.txt", ham, sizeof ham - 1);
    write_tmp("spam/spam-1/00001.b.txt", spam, sizeof spam - 1);
    ts_text_dataset *ds = NULL;
    ts_status st = load_path(dir, TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_OK && ds->count == 2 && ds->classes == 2 && ds->labels[0] == 0 && ds->labels[1] == 1, "%s",
          ts_ctx_error(g_ctx));
    if (!st) {
        char *t = decode_row(ds->vocab, ds->tokens, ds->lengths[0]);
        CHECK(t && !strcmp(t, "meeting today see you at noon ."), "%s", t);
        ts_text_free(t);
    }
    ts_text_dataset_free(ds);
    const char evil[] = "[\"../../etc/passwd\"]";
    write_tmp("spam/file_list.json", evil, sizeof evil - 1);
    st = load_path(dir, TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_EFORMAT, "a name outside the folder: %s", ts_ctx_error(g_ctx));
    st = load_path("spam-assassin", TS_SPLIT_TRAIN, NULL, &ds);
    CHECK(st == TS_OK || st == TS_ENOTFOUND, "not installed: %s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(ds);
}

static void test_names(void) {
    ts_text_dataset *ds = NULL;
    CHECK(ts_text_dataset_load(g_ctx, "nonesuch", TS_SPLIT_TRAIN, NULL, NULL, &ds) == TS_ENOTFOUND, "unknown name");
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.limit = 3;
    CHECK(ts_text_dataset_load(g_ctx, "brown", TS_SPLIT_TRAIN, "/nonexistent", &opt, &ds) == TS_OK ||
              strstr(ts_ctx_error(g_ctx), "/nonexistent/brown"),
          "searched: %s", ts_ctx_error(g_ctx));
    ts_text_dataset_free(ds);
    ds = NULL;
    CHECK(ts_text_dataset_load(g_ctx, "brown", (ts_split)5, NULL, NULL, &ds) == TS_EINVAL, "bad split");
}

int main(void) {
    if (!test_begin(&g_ctx, g_tmp)) return 1;
    RUN(test_tokenizer);
    RUN(test_vocab);
    RUN(test_vocab_garbled);
    RUN(test_bleu);
    RUN(test_bleu_sacrebleu);
    RUN(test_bleu_tatoeba);
    RUN(test_universal_map);
    RUN(test_clinc);
    RUN(test_select);
    RUN(test_brown);
    RUN(test_tatoeba);
    RUN(test_pairs_hostile);
    RUN(test_pairs_both_ways);
    RUN(test_clinc_hostile);
    RUN(test_zip_hostile);
    RUN(test_spam_layout);
    RUN(test_names);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    ts_ctx_free(g_ctx);
    TEST_MAIN_END("test_text");
}
