/* The CLI on text (issue 16): train, eval, predict and info on a CLINC150 intent
 * classifier, a Brown tagger and a Tatoeba translator, each trained briefly on the small
 * sets of tests/fixtures/text (10 CLINC150 intents and oos, 400 Tatoeba pairs, synthetic
 * sentences in Brown's layout and tags; gen_text_fixtures.py writes them), a resumed
 * text run, a translator trained both ways (decomposed per target language, composed),
 * decompose on the classifier (hidden units) and on the tagger
 * (per tag; compose, eval, predict and reuse of its modules), --json, and the
 * refusals. Checks the flows and their output, not accuracy (bench/RESULTS.md has
 * that). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "common/cli_run.h"
#include "common/json_check.h"
#include "common/test.h"

#include <limits.h>
#include <stdlib.h>

static cli_runner R;
static char g_data[PATH_MAX]; /* tests/fixtures/text, absolute */

#define COMMON "--data-dir %s --epochs 1 --batch 32 --threads 1 --optimizer adam --lr 0.005 --quiet"

static void test_classifier(void) {
    int rc = cli_run(&R, "train --data clinc_oos --limit 300 " COMMON " --out %s/c.tsr", g_data, R.dir);
    CHECK(rc == 0 && strstr(R.out, "test accuracy:") && strstr(R.out, "110 texts"), "train: exit %d: %s%s", rc, R.out,
          R.err);
    rc = cli_run(&R, "eval %s/c.tsr --limit 64", R.dir);
    CHECK(rc == 0 && strstr(R.out, "64 texts") && strstr(R.out, "top-1"), "eval: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/c.tsr \"what is my account balance\" \"set an alarm\" --top 2", R.dir);
    CHECK(rc == 0 && cli_count_lines(R.out) == 2 && strstr(R.out, "\"set an alarm\":") && strstr(R.out, "%"),
          "predict: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/c.tsr \"set an alarm\" --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL), "predict --json: exit %d: %s", rc, R.out);
    rc = cli_run(&R, "predict %s/c.tsr --data clinc_oos", R.dir);
    CHECK(rc == 2 && strstr(R.err, "give the texts as arguments"), "predict --data on a text model: exit %d: %s", rc,
          R.err);
    rc = cli_run(&R, "info %s/c.tsr", R.dir);
    CHECK(rc == 0 && strstr(R.out, "embedding") && strstr(R.out, "lstm") && strstr(R.out, "more lines)") &&
              cli_count_lines(R.out) < 40,
          "info: the vocabulary is summed up: exit %d, %d lines", rc, cli_count_lines(R.out));
    rc = cli_run(&R, "bench %s/c.tsr --batch 8 --iters 3 --warmup 1 --threads 1", R.dir);
    CHECK(rc == 0 && strstr(R.out, "tokens/s"), "bench: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "bench lstm-seq2seq --batch 2 --iters 2 --warmup 1 --threads 1 --train");
    CHECK(rc == 0 && strstr(R.out, "tokens/s"), "bench --train of the zoo translator: exit %d: %s%s", rc, R.out, R.err);
    /* an image architecture on text data, and image data for a text model */
    rc = cli_run(&R, "train --data clinc_oos --limit 50 --arch demo " COMMON " --out %s/x.tsr", g_data, R.dir);
    CHECK(rc != 0 && !cli_exists(&R, "x.tsr"), "--arch demo on text: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "train --data clinc_oos --limit 50 --max-len 0 " COMMON " --out %s/x.tsr", g_data, R.dir);
    CHECK(rc == 2 || rc == 3, "--max-len 0: exit %d: %s", rc, R.err);
}

static void test_resume(void) {
    int rc = cli_run(&R, "train --data clinc_oos --limit 200 --val-split 40 --no-test " COMMON
                         " --checkpoint %s/r.ckpt --out %s/r.tsr", g_data, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "(+ validation)"), "train: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "train --resume %s/r.ckpt --epochs 2 --quiet --threads 1 --no-test --out %s/r2.tsr", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "epoch 2"), "resume: exit %d: %s%s", rc, R.out, R.err);
}

static void test_tagger(void) {
    int rc = cli_run(&R, "train --data brown --limit 200 --max-len 16 " COMMON " --out %s/t.tsr", g_data, R.dir);
    CHECK(rc == 0 && strstr(R.out, "test token accuracy:"), "train: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/t.tsr \"the jury said it did find that .\"", R.dir);
    CHECK(rc == 0 && strstr(R.out, "the/") && strstr(R.out, "jury/") && strstr(R.out, "./"), "predict: exit %d: %s%s",
          rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/t.tsr --limit 40", R.dir);
    CHECK(rc == 0 && strstr(R.out, "whole sentences") && strstr(R.out, "tokens"), "eval: exit %d: %s%s", rc, R.out,
          R.err);
}

static void test_translator(void) {
    /* --no-test: decoding the 5,031 test sentences is most of the time (ten times more
     * under AddressSanitizer); eval --limit below scores BLEU the same way */
    int rc = cli_run(&R, "train --data tatoeba --limit 120 --max-len 6 --target-len 8 --no-test " COMMON " --out %s/m.tsr",
                     g_data, R.dir);
    CHECK(rc == 0 && strstr(R.out, "saved"), "train: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/m.tsr --limit 12 --beam 2", R.dir);
    CHECK(rc == 0 && strstr(R.out, "BLEU") && strstr(R.out, "beam search"), "eval: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/m.tsr --limit 12 --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "\"bleu\"") && strstr(R.out, "\"top1\"") &&
              strstr(R.out, "\"target_words\""),
          "eval --json of a translator: %s", R.out);
    rc = cli_run(&R, "eval %s/m.tsr --limit 30 --beam 0", R.dir);
    CHECK(rc == 2, "--beam 0: exit %d", rc);
    rc = cli_run(&R, "predict %s/m.tsr \"i am here .\" --beam 3", R.dir);
    CHECK(rc == 0 && strstr(R.out, "\"i am here .\" -> \""), "predict: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/m.tsr \"go .\" --json", R.dir);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "\"translation\""), "predict --json: %s", R.out);
}

/* A translator trained both ways: predict --to, decompose per target language, its
 * modules composed (routed by the language tag), eval per language; the refusals. */
static void test_translator_both_ways(void) {
    int rc = cli_run(&R, "train --data tatoeba --both-ways --limit 160 --max-len 7 --target-len 8 --no-test " COMMON
                         " --out %s/b.tsr", g_data, R.dir);
    CHECK(rc == 0 && strstr(R.out, "160 samples"), "train --both-ways: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/b.tsr --to eng \"je suis ici .\"", R.dir);
    CHECK(rc == 0 && strstr(R.out, "\"je suis ici .\" -> \""), "predict --to: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "predict %s/b.tsr \"je suis ici .\"", R.dir);
    CHECK(rc == 2 && strstr(R.err, "--to") && strstr(R.err, "fra,eng"), "no --to: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "predict %s/b.tsr --to deu \"hi .\"", R.dir);
    CHECK(rc == 2 && strstr(R.err, "deu"), "--to an unknown language: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "predict %s/m.tsr --to fra \"hi .\"", R.dir);
    CHECK(rc == 2 && strstr(R.err, "one way"), "--to on a one-way translator: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "decompose %s/b.tsr --out %s/bmods --positives 40 --limit 200 --threads 1 --quiet", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "one per target language") && strstr(R.out, "origin-BLEU") &&
              strstr(R.out, "the largest differences first") &&
              cli_exists(&R, "bmods/class0.tsm") && cli_exists(&R, "bmods/class1.tsm"),
          "decompose a translator: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/b.tsr --out %s/bmodsp --positives 40 --limit 200 --threads 1 --no-eval --quiet "
                 "--rank-by-use", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "--rank-by-use: of those, the ones the language's own pairs use least") &&
              cli_exists(&R, "bmodsp/class1.tsm"),
          "decompose a translator --rank-by-use: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/b.tsr --out %s/bmodsq --no-eval --quiet --rank-by-use --text-rule paper", R.dir,
                 R.dir);
    CHECK(rc == 2 && strstr(R.err, "--rank-by-use") && !cli_exists(&R, "bmodsq/class0.tsm"),
          "--rank-by-use with --text-rule paper: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "compose %s/bmods/class0.tsm %s/bmods/class1.tsm --out %s/bc.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "composed 2 languages: fra, eng"), "compose: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/bc.tsr --limit 24", R.dir);
    CHECK(rc == 0 && strstr(R.out, "into fra") && strstr(R.out, "into eng"), "eval per language: exit %d: %s%s", rc,
          R.out, R.err);
    rc = cli_run(&R, "predict %s/bc.tsr --to fra \"i am here .\"", R.dir);
    CHECK(rc == 0 && strstr(R.out, "->"), "predict with the composed: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/b.tsr --out %s/bmods2 --unrolled --no-eval --quiet", R.dir, R.dir);
    CHECK(rc != 0 && strstr(R.err, "rolled") && !cli_exists(&R, "bmods2/class0.tsm"), "--unrolled: exit %d: %s", rc,
          R.err);
    rc = cli_run(&R, "decompose %s/m.tsr --out %s/bmods3 --no-eval --quiet", R.dir, R.dir);
    CHECK(rc != 0 && strstr(R.err, "--both-ways") && !cli_exists(&R, "bmods3/class0.tsm"), "one way: exit %d: %s", rc,
          R.err);
    rc = cli_run(&R, "train --data clinc_oos --both-ways --limit 50 " COMMON " --out %s/x.tsr", g_data, R.dir);
    CHECK(rc == 2 && strstr(R.err, "pairs") && !cli_exists(&R, "x.tsr"), "--both-ways on CLINC: exit %d: %s", rc, R.err);
}

/* decompose on the classifier of test_classifier (hidden units, unrolled and the default
 * rolled, docs/sequences.md); its modules composed, evaluated and reused; and
 * its refusals on text models: another method, a tagger. */
static void test_decompose(void) {
    const char *opts = "--positives 20 --confidence 0 --threads 1 --quiet";
    int rc = cli_run(&R, "decompose %s/c.tsr --out %s/mods --classes 3,7 --no-eval --unrolled %s", R.dir, R.dir, opts);
    CHECK(rc == 0 && strstr(R.out, "hidden units") && strstr(R.out, "unrolled") && strstr(R.out, "2 modules") &&
              cli_exists(&R, "mods/class3.tsm") &&
              cli_exists(&R, "mods/class7.tsm"),
          "decompose: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/c.tsr --out %s/mods2 --classes 5 --max-remove 0.1 --json %s", R.dir, R.dir, opts);
    CHECK(rc == 0 && json_check(R.out, NULL) && strstr(R.out, "\"hidden-units\"") && strstr(R.out, "\"own_acc\"") &&
              strstr(R.out, "\"fit_scores\":1"),
          "decompose --json: exit %d: %s%s", rc, R.out, R.err);
    /* the published rule alone, and a refinement asked for beside it refused */
    rc = cli_run(&R, "decompose %s/c.tsr --out %s/mods4 --classes 5 --no-eval --text-rule paper %s", R.dir, R.dir, opts);
    CHECK(rc == 0 && cli_exists(&R, "mods4/class5.tsm"), "--text-rule paper: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "decompose %s/c.tsr --out %s/mods6 --rank-by-use %s", R.dir, R.dir, opts);
    CHECK(rc != 0 && cli_count_lines(R.err) == 1 && strstr(R.err, "rank_by_use") && !cli_exists(&R, "mods6"),
          "--rank-by-use on a classifier: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "decompose %s/c.tsr --out %s/mods5 --text-rule paper --rank-by-margin %s", R.dir, R.dir, opts);
    CHECK(rc == 2 && cli_count_lines(R.err) == 1 && !cli_exists(&R, "mods5"), "--text-rule paper --rank-by-margin: exit %d: %s",
          rc, R.err);
    /* text modules compose into a model that reads text (the origin's vocabulary) */
    rc = cli_run(&R, "compose %s/mods/class3.tsm %s/mods/class7.tsm %s/mods2/class5.tsm --out %s/tc.tsr", R.dir, R.dir,
                 R.dir, R.dir);
    CHECK(rc == 0, "compose text modules: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "predict %s/tc.tsr \"set an alarm for seven\"", R.dir);
    CHECK(rc == 0 && cli_count_lines(R.out) == 1 && strstr(R.out, "%"), "predict: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "eval %s/tc.tsr --data-dir %s", R.dir, g_data);
    CHECK(rc == 0 && strstr(R.out, "30 texts") && strstr(R.out, "top-1"), "eval: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "reuse %s/mods/class3.tsm %s/mods2/class5.tsm --data-dir %s --out %s/tr.tsr", R.dir, R.dir, g_data,
                 R.dir);
    CHECK(rc == 0 && strstr(R.out, "20 texts"), "reuse: exit %d: %s%s", rc, R.out, R.err);
    /* --retune on text modules: their scores calibrated on the two intents' training texts */
    rc = cli_run(&R, "reuse %s/mods/class3.tsm %s/mods2/class5.tsm --retune --retune-samples 7 --data-dir %s --out "
                 "%s/tr2.tsr", R.dir, R.dir, g_data, R.dir);
    CHECK(rc == 0 && strstr(R.out, "re-tuned 2 modules on 14 training texts") && strstr(R.out, "calibration only") &&
              strstr(R.out, "20 texts") && cli_exists(&R, "tr2.tsr"),
          "reuse --retune: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "decompose %s/c.tsr --out %s/mods3 --method grad %s", R.dir, R.dir, opts);
    CHECK(rc != 0 && strstr(R.err, "hidden unit") && !cli_exists(&R, "mods3/class0.tsm"), "--method grad: exit %d: %s",
          rc, R.err);
}

/* decompose on the tagger of test_tagger (per tag, unrolled), compose, eval, predict and
 * reuse of its modules (--no-eval where the test split would be read again: each read of
 * Brown costs seconds; test_tagger_decompose checks the figures). */
static void test_decompose_tagger(void) {
    int rc = cli_run(&R, "decompose %s/t.tsr --out %s/tags --positives 20 --confidence 0 --threads 1 --quiet --limit 300 "
                         "--no-eval", R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "unrolled") && strstr(R.out, "12 modules") && cli_exists(&R, "tags/class0.tsm") &&
              cli_exists(&R, "tags/class11.tsm"),
          "decompose a tagger: exit %d: %s%s", rc, R.out, R.err);
    char mods[1200] = "";
    for (int c = 0; c < 12; c++) {
        const size_t at = strlen(mods);
        snprintf(mods + at, sizeof mods - at, " %s/tags/class%d.tsm", R.dir, c);
    }
    rc = cli_run(&R, "compose%s --out %s/tall.tsr", mods, R.dir);
    CHECK(rc == 0, "compose a tagger's modules: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "eval %s/tall.tsr --data-dir %s --limit 20", R.dir, g_data);
    CHECK(rc == 0 && strstr(R.out, "tokens") && strstr(R.out, "whole sentences"), "eval: exit %d: %s%s", rc, R.out,
          R.err);
    rc = cli_run(&R, "predict %s/tall.tsr \"the jury said it did find that .\"", R.dir);
    CHECK(rc == 0 && strstr(R.out, "jury/"), "predict: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "reuse %s/tags/class1.tsm %s/tags/class3.tsm --no-eval --out %s/tr2.tsr", R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "ADJ, ADV"), "reuse of two tags: exit %d: %s%s", rc, R.out, R.err);
    rc = cli_run(&R, "reuse %s/tags/class1.tsm %s/tags/class3.tsm --retune --data-dir %s --out %s/tr3.tsr", R.dir,
                 R.dir, g_data, R.dir);
    CHECK(rc == 5 && cli_count_lines(R.err) == 1 && strstr(R.err, "tagger") && !cli_exists(&R, "tr3.tsr"),
          "reuse --retune of a tagger's modules: exit %d: %s", rc, R.err);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-text")) return 1;
    /* small sets in the real layouts, committed (tests/fixtures/gen_text_fixtures.py) */
    if (!realpath("tests/fixtures/text", g_data)) {
        printf("tests/fixtures/text: not found (run the tests from the repository root)\n");
        return 1;
    }
    RUN(test_classifier);
    RUN(test_resume);
    RUN(test_tagger);
    RUN(test_decompose);
    RUN(test_decompose_tagger);
    RUN(test_translator);
    RUN(test_translator_both_ways);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_text");
}
