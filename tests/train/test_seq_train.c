/* Training and evaluating sequence models on text datasets (ts_trainer_create_text,
 * ts_evaluate_text, ts_loader_create_text) on small synthetic tasks that need the
 * recurrence: a classifier (which of three marker tokens comes first) and a tagger
 * (a token is tagged 1 when the token before it is the marker), each over texts of
 * varying length padded to T. Checks that they learn, that a rerun is bit-identical,
 * that evaluation counts real tokens only, and the refusals. */
#include "common/test.h"
#include "nn/nn.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ts_ctx *g_ctx;

enum { T = 10, VOCAB = 12, COUNT = 600 };

/* A text dataset of the task, from a seed: lengths 3..T, tokens 1..VOCAB-1. */
static ts_text_dataset *make_set(ts_seq_task task, int64_t count, uint64_t seed) {
    if (task == TS_SEQ_CLASSIFY) /* marker 1, 2 or 3 at a random place; the first one decides */
        return test_first_marker_texts(count, T, VOCAB, 3, seed);
    ts_text_dataset *ds = test_alloc_texts(count, T, task, 2, "synthetic-tags");
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int64_t i = 0; i < count; i++) {
        const int len = 3 + (int)ts_rng_below(&r, T - 2);
        ds->lengths[i] = len;
        int32_t *tok = ds->tokens + i * T;
        for (int t = 0; t < len; t++) tok[t] = 4 + (int32_t)ts_rng_below(&r, VOCAB - 4); /* no marker */
        for (int t = 0; t < len; t++)
            if (ts_rng_below(&r, 4) == 0) tok[t] = 3;
        int32_t *tag = ds->labels + i * T;
        for (int t = 0; t < T; t++) tag[t] = t >= len ? -1 : t > 0 && tok[t - 1] == 3;
    }
    return ds;
}

static void free_set(ts_text_dataset *ds) { test_free_texts(ds); }

static const char *const CLASSIFIER = "input shape=10\nembedding name=e vocab=12 dim=8 padding_idx=0\n"
                                      "lstm name=l in=e,input0 hidden=16 sequence=0\ndense name=out out=classes\n";
static const char *const TAGGER = "input shape=10\nembedding name=e vocab=12 dim=8 padding_idx=0\n"
                                  "gru name=g in=e,input0 hidden=12 bidirectional=1\ndense name=out out=2\n";

/* Trains arch on train for `epochs`; the model (caller frees) and its validation top-1. */
static ts_model *train_model(const char *arch, int classes, const ts_text_dataset *train,
                             const ts_text_dataset *val, int epochs, double *val_acc) {
    return test_train_text_adam(g_ctx, arch, classes, train, val, 3, epochs, val_acc);
}

static void test_classifier(void) {
    ts_text_dataset *train = make_set(TS_SEQ_CLASSIFY, COUNT, 1), *val = make_set(TS_SEQ_CLASSIFY, 200, 2);
    double acc = 0, acc2 = 0;
    ts_model *m = train_model(CLASSIFIER, 3, train, val, 6, &acc);
    CHECK(acc >= 0.9, "the lstm learns which marker comes first: validation top-1 %.3f", acc);
    ts_model *again = train_model(CLASSIFIER, 3, train, val, 6, &acc2);
    if (m && again) {
        CHECK(acc == acc2, "a rerun gives the same accuracy");
        CHECK(!memcmp(m->params, again->params, m->nparams * sizeof(float)), "a rerun gives the same weights");
        ts_eval_report ev, ev2;
        CHECK(ts_evaluate_text(g_ctx, m, val, 7, &ev, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ts_evaluate_text(g_ctx, m, val, 200, &ev2, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
        CHECK(ev.count == 200 && ev.classes == 3 && ev.top1 == ev2.top1 && fabs(ev.loss - ev2.loss) < 1e-6 * ev.loss,
              "evaluation does not depend on the batch: %.4f %.4f, loss %.9g %.9g", ev.top1, ev2.top1, ev.loss,
              ev2.loss);
        int64_t diag = 0;
        for (int c = 0; c < 3; c++) diag += ev.confusion[c * 3 + c];
        CHECK(diag == (int64_t)(ev.top1 * 200 + 0.5), "the confusion matrix's diagonal is the top-1");
        ts_eval_report_free(&ev);
        ts_eval_report_free(&ev2);
    }
    ts_model_free(m);
    ts_model_free(again);
    free_set(train);
    free_set(val);
}

static void test_tagger(void) {
    ts_text_dataset *train = make_set(TS_SEQ_TAG, COUNT, 3), *val = make_set(TS_SEQ_TAG, 200, 4);
    double acc = 0, seq = 0;
    ts_model *m = train_model(TAGGER, 0, train, val, 6, &acc);
    CHECK(acc >= 0.97, "the gru tags the token after each marker: validation token accuracy %.3f", acc);
    if (m) {
        ts_eval_report ev;
        CHECK(ts_evaluate_text(g_ctx, m, val, 64, &ev, &seq) == TS_OK, "%s", ts_ctx_error(g_ctx));
        int64_t tokens = 0;
        for (int64_t i = 0; i < val->count; i++) tokens += val->lengths[i];
        CHECK(ev.count == tokens, "evaluation counts real tokens: %lld vs %lld", (long long)ev.count,
              (long long)tokens);
        CHECK(ev.top1 == acc, "token accuracy as in training's validation");
        CHECK(seq > 0.5 && seq <= ev.top1, "whole-text accuracy %.3f (token %.3f)", seq, ev.top1);
        ts_eval_report_free(&ev);
    }
    ts_model_free(m);
    free_set(train);
    free_set(val);
}

/* A translation set whose target is its source reversed (words 4..11 of vocabularies
 * of 8 words), lengths 2..5. */
static ts_text_dataset *make_reverse(int64_t count, uint64_t seed) {
    ts_text_dataset *ds = calloc(1, sizeof *ds);
    enum { TL = 7 }; /* <bos>, 5 words, <eos> */
    ds->count = count;
    ds->task = TS_SEQ_TRANSLATE;
    ds->max_len = 5;
    ds->target_len = TL;
    ds->tokens = calloc((size_t)count * 5, sizeof(int32_t));
    ds->lengths = calloc((size_t)count, sizeof(int32_t));
    ds->targets = calloc((size_t)count * TL, sizeof(int32_t));
    ds->target_lengths = calloc((size_t)count, sizeof(int32_t));
    snprintf(ds->name, sizeof ds->name, "synthetic-reverse");
    const char *words = "a b c d e f g h";
    CHECK(ts_vocab_build(g_ctx, &words, 1, 1, &ds->vocab) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_vocab_build(g_ctx, &words, 1, 1, &ds->target_vocab) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int64_t i = 0; i < count; i++) {
        const int len = 2 + (int)ts_rng_below(&r, 4);
        ds->lengths[i] = len;
        int32_t *tg = ds->targets + i * TL;
        tg[0] = TS_TOKEN_BOS;
        for (int t = 0; t < len; t++) ds->tokens[i * 5 + t] = 4 + (int32_t)ts_rng_below(&r, 8);
        for (int t = 0; t < len; t++) tg[1 + t] = ds->tokens[i * 5 + len - 1 - t];
        tg[len + 1] = TS_TOKEN_EOS;
        ds->target_lengths[i] = len + 2;
    }
    return ds;
}

static void free_reverse(ts_text_dataset *ds) {
    ts_vocab_free(ds->vocab);
    ts_vocab_free(ds->target_vocab);
    free(ds->targets);
    free(ds->target_lengths);
    free_set(ds);
}

/* The zoo's encoder-decoder, smaller, learns to reverse; greedy and beam decoding
 * write the reversed source, and BLEU says so. */
static void test_translation(void) {
    ts_text_dataset *train = make_reverse(1500, 7), *val = make_reverse(100, 8);
    const ts_shape in = ts_text_input_shape(train);
    CHECK(in.ndim == 2 && in.dims[0] == 2 && in.dims[1] == 6, "input 2 x max(5, 7 - 1)");
    const char *zoo = ts_zoo_arch("lstm-seq2seq");
    CHECK(zoo != NULL, "zoo lstm-seq2seq");
    char arch[2048];
    snprintf(arch, sizeof arch, "%s", zoo ? zoo : "");
    char *h;
    while ((h = strstr(arch, "hidden=256"))) memcpy(h, "hidden=048", 10); /* smaller, for the test */
    ts_model *m = NULL;
    CHECK(ts_model_from_arch_seq(g_ctx, arch, "seq2seq", &in, 0, ts_vocab_size(train->vocab),
                                 ts_vocab_size(train->target_vocab), 3, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (!m) goto done;
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 12;
    cfg.batch = 32;
    cfg.lr = 0.01f;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAM);
    ts_trainer *tr = NULL;
    CHECK(ts_trainer_create_text(g_ctx, m, train, val, &cfg, &tr) == TS_OK, "%s", ts_ctx_error(g_ctx));
    if (tr) CHECK(ts_trainer_run(g_ctx, tr, NULL) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_trainer_free(tr);
    ts_eval_report ev;
    double whole = 0, bleu1 = 0, bleu4 = 0;
    CHECK(ts_evaluate_text(g_ctx, m, val, 64, &ev, &whole) == TS_OK, "%s", ts_ctx_error(g_ctx));
    int64_t words = 0;
    for (int64_t i = 0; i < val->count; i++) words += val->target_lengths[i] - 1; /* each word and <eos> */
    CHECK(ev.count == words, "teacher-forced accuracy over %lld target words (%lld)", (long long)words,
          (long long)ev.count);
    CHECK(ev.top1 > 0.95, "teacher-forced word accuracy %.3f", ev.top1);
    ts_eval_report_free(&ev);
    int32_t *out = calloc((size_t)val->count * 6, sizeof *out);
    CHECK(ts_translate(g_ctx, m, val, 1, 16, out) == TS_OK, "%s", ts_ctx_error(g_ctx));
    int exact = 0;
    for (int64_t i = 0; i < val->count; i++) {
        const int len = val->lengths[i];
        int ok = out[i * 6 + len] == TS_TOKEN_EOS;
        for (int t = 0; t < len; t++) ok &= out[i * 6 + t] == val->targets[i * 7 + 1 + t];
        exact += ok;
    }
    CHECK(exact >= 90, "greedy decoding reverses %d of 100 sentences exactly", exact);
    CHECK(ts_evaluate_bleu(g_ctx, m, val, 1, 16, &bleu1) == TS_OK, "%s", ts_ctx_error(g_ctx));
    CHECK(ts_evaluate_bleu(g_ctx, m, val, 4, 16, &bleu4) == TS_OK, "%s", ts_ctx_error(g_ctx));
    /* BLEU-4 counts only the 4-grams of the longer sentences, where the mistakes are */
    CHECK(bleu1 > 0.75 && bleu4 > 0.75, "BLEU greedy %.4f, beam 4 %.4f (%d exact)", bleu1, bleu4, exact);
    CHECK(ts_translate(g_ctx, m, val, 0, 16, out) == TS_EINVAL, "beam 0 refused");
    /* incremental decoding (one decoder step a word, the state carried) gives the words
     * of rerunning the whole model for each: greedy and beam, on oneDNN (2 threads: the
     * decoder's batch in slices) and the reference kernels */
    int32_t *rerun = calloc((size_t)val->count * 6, sizeof *rerun);
    for (int variant = 0; variant < 6; variant++) {
        const int beam = variant % 3 == 0 ? 1 : variant % 3 == 1 ? 2 : 4, ref = variant >= 3;
        ts_ctx_set_backend(g_ctx, ref ? TS_BACKEND_REF : TS_BACKEND_DNNL);
        ts_ctx_set_threads(g_ctx, ref ? 1 : 2);
        CHECK(translate_run(g_ctx, m, val, beam, 16, out, 1) == TS_OK &&
                  translate_run(g_ctx, m, val, beam, 16, rerun, 0) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        int same = 0;
        for (int64_t i = 0; i < val->count; i++) same += !memcmp(out + i * 6, rerun + i * 6, 6 * sizeof *out);
        CHECK(same == val->count, "beam %d, %s: %d of %lld sentences decoded alike", beam, ref ? "ref" : "oneDNN",
              same, (long long)val->count);
    }
    ts_ctx_set_backend(g_ctx, TS_BACKEND_DNNL);
    ts_ctx_set_threads(g_ctx, 1);
    /* a model of the same form whose decoder reads an embedding of the source row: the
     * first batch's check finds that stepping differs, and every sentence (the later
     * ones too, in beam search) is decoded by rerunning the model */
    char odd[2048];
    snprintf(odd, sizeof odd, "%s", arch);
    char *dec = strstr(odd, "in=tgt_emb,tgt,enc");
    CHECK(dec != NULL, "the zoo's decoder line");
    ts_model *om = NULL;
    if (dec) {
        memcpy(dec, "in=src_emb,tgt,enc", 18);
        CHECK(ts_model_from_arch_seq(g_ctx, odd, "odd", &in, 0, ts_vocab_size(train->vocab),
                                     ts_vocab_size(train->target_vocab), 5, &om) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
    }
    for (int beam = 1; om && beam <= 3; beam += 2) {
        CHECK(translate_run(g_ctx, om, val, beam, 16, out, 1) == TS_OK &&
                  translate_run(g_ctx, om, val, beam, 16, rerun, 0) == TS_OK,
              "%s", ts_ctx_error(g_ctx));
        CHECK(!memcmp(out, rerun, (size_t)val->count * 6 * sizeof *out), "beam %d: a model stepping cannot follow",
              beam);
    }
    ts_model_free(om);
    free(rerun);
    free(out);
done:
    ts_model_free(m);
    free_reverse(train);
    free_reverse(val);
}

static void test_refusals(void) {
    ts_text_dataset *cls = make_set(TS_SEQ_CLASSIFY, 20, 5), *tag = make_set(TS_SEQ_TAG, 20, 6);
    ts_model *m = NULL;
    CHECK(ts_model_from_arch(g_ctx, CLASSIFIER, "seq.arch", NULL, 3, 3, &m) == TS_OK, "%s", ts_ctx_error(g_ctx));
    ts_trainer *tr = NULL;
    ts_eval_report ev;
    CHECK(ts_trainer_create_text(g_ctx, m, tag, NULL, NULL, &tr) == TS_ESHAPE, "a classifier refuses a tag set");
    CHECK(strstr(ts_ctx_error(g_ctx), "a score per tag for each of 10 steps"), "message: %s", ts_ctx_error(g_ctx));
    cls->labels[7] = 3;
    CHECK(ts_evaluate_text(g_ctx, m, cls, 8, &ev, NULL) == TS_EFORMAT, "a label past the outputs");
    CHECK(strstr(ts_ctx_error(g_ctx), "sample 7"), "message: %s", ts_ctx_error(g_ctx));
    cls->labels[7] = 0;
    cls->max_len = 9;
    CHECK(ts_evaluate_text(g_ctx, m, cls, 8, &ev, NULL) == TS_ESHAPE, "another text length");
    cls->max_len = T;
    cls->task = TS_SEQ_TRANSLATE;
    CHECK(ts_evaluate_text(g_ctx, m, cls, 8, &ev, NULL) == TS_EINVAL, "a translation set without targets");
    cls->task = TS_SEQ_CLASSIFY;
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.flip = 1;
    CHECK(ts_trainer_create_text(g_ctx, m, cls, NULL, &cfg, &tr) == TS_EINVAL, "image augmentation refused");
    cls->tokens[3] = VOCAB; /* past the embedding's rows: the forward pass says which */
    CHECK(ts_evaluate_text(g_ctx, m, cls, 8, &ev, NULL) == TS_EINVAL, "a token past the vocabulary");
    CHECK(strstr(ts_ctx_error(g_ctx), "sample 0, position 3 holds 12"), "message: %s", ts_ctx_error(g_ctx));
    ts_model_free(m);
    free_set(cls);
    free_set(tag);
}

int main(void) {
    char tmp[] = "/tmp/tessera_seqtrain_XXXXXX";
    if (!test_begin(&g_ctx, tmp)) return 1;
    ts_ctx_set_threads(g_ctx, 1); /* small batches: one thread is faster, and on a loaded machine much faster */
    RUN(test_classifier);
    RUN(test_tagger);
    RUN(test_translation);
    RUN(test_refusals);
    ts_ctx_free(g_ctx);
    rmdir(tmp);
    TEST_MAIN_END("test_seq_train");
}
