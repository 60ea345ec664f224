/* tessera eval and tessera predict. */
#include "cli_exit.h"
#include "cli_modules.h"
#include "cli_text.h"
#include "dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_LANGS_MAX 16 /* languages of a translation set read both ways (it has 2) */

/* --constant-time: the library's constant-time mode, which runs the reference
 * kernels (docs/security.md); asking for oneDNN as well is a contradiction. */
static int setup_constant_time(const cli_cmd *cmd, ts_ctx *ctx) {
    if (!cli_get(cmd, "constant-time")) return 0;
    const char *be = cli_get(cmd, "backend");
    if (be && strcmp(be, "ref")) {
        fprintf(stderr, "tessera %s: --constant-time runs the reference kernels; drop --backend %s\n", cmd->name, be);
        return EXIT_USAGE;
    }
    ts_ctx_set_constant_time(ctx, 1);
    return 0;
}


/* eval's figures as --json writes them: fractions, not percentages. */
static void json_eval(json_out *J, const ts_model *m, const char *model, const char *data, const char *split,
                      const ts_eval_report *ev, double secs, int constant_time) {
    json_str(J, "model", model);
    json_str(J, "data", data);
    json_str(J, "split", split);
    json_int(J, "images", (long long)ev->count);
    json_num(J, "seconds", secs);
    json_num(J, "images_per_second", secs > 0 ? ev->count / secs : 0);
    json_bool(J, "constant_time", constant_time);
    json_num(J, "top1", ev->top1);
    json_num(J, "top5", ev->top5);
    json_num(J, "loss", ev->loss);
    const int k = ev->classes;
    json_array(J, "classes");
    for (int c = 0; c < k; c++) {
        int64_t support = 0;
        for (int j = 0; j < k; j++) support += ev->confusion[(size_t)c * k + j];
        char name[64];
        json_object(J, NULL);
        json_int(J, "id", c);
        json_str(J, "name", cli_class_name(m, c, name, sizeof name));
        json_num(J, "precision", ts_eval_precision(ev, c));
        json_num(J, "recall", ts_eval_recall(ev, c));
        json_int(J, "support", (long long)support);
        json_close(J);
    }
    json_close(J);
    json_array(J, "confusion"); /* rows: true class, columns: predicted */
    for (int c = 0; c < k; c++) {
        json_array(J, NULL);
        for (int j = 0; j < k; j++) json_int(J, NULL, (long long)ev->confusion[(size_t)c * k + j]);
        json_close(J);
    }
    json_close(J);
}

static cli_opt eval_opts[] = {
    {"data", "NAME|PATH", "dataset (default: the one the model was trained on)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"split", "test|train", "which split to evaluate (default test)", NULL},
    {"batch", "N", "batch size (default 256)", NULL},
    {"limit", "N", "evaluate the first N samples only", NULL},
    {"beam", "B", "a translator's BLEU: beam search of width B (default 1: greedy)", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"constant-time", NULL, "inference whose timing does not depend on the images (docs/security.md)", NULL},
    {"bf16", NULL, "bfloat16 convolutions and recurrent layers (faster; accuracy in bench/RESULTS.md)", NULL},
    {"winograd", "MODE", "where 3x3 stride-1 convolutions (16+ channels in, 32+ out) run Winograd kernels: off, inference (default) or training (also the training passes; results drift from direct by float rounding)", NULL},
    CLI_OPT_EXIT_THRESHOLD,
    CLI_OPT_JSON,
};
static cli_cmd eval_cmd = {"eval", "MODEL [--data NAME|PATH] [options]",
                           "Prints top-1 and top-5 accuracy, loss, per-class precision and recall, and the confusion\n"
                           "matrix (rows: true class, columns: predicted). For a patched model (tessera patch), also the\n"
                           "patched class's precision, recall and F1 and the other classes' accuracy beside the weak\n"
                           "model's. For a model with an early exit, also each threshold's top-1 and mean MACs per\n"
                           "sample (0.50 to 0.95 and 1, no exit) and the cheapest within 1 point of no exit.",
                           eval_opts, sizeof eval_opts / sizeof eval_opts[0]};

static int eval_main(int argc, char **argv, cli_dist *dist);

/* Under mpirun the ranks share the batches (docs/distributed.md); rank 0 prints. */
int cmd_eval(int argc, char **argv) {
    cli_dist dist;
    int rc = dist_begin("eval", &dist);
    return rc ? rc : dist_end("eval", &dist, eval_main(argc, argv, &dist));
}

static int eval_main(int argc, char **argv, cli_dist *dist) {
    char *pos[1];
    int npos;
    int rc = cli_parse(&eval_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&eval_cmd);
    if (npos != 1) {
        fprintf(stderr, "tessera eval: expected one MODEL file (see tessera eval --help)\n");
        return EXIT_USAGE;
    }
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *m = NULL;
    ts_dataset *ds = NULL;
    ts_text_dataset *texts = NULL;
    ts_status st = TS_OK;
    long batch, limit;
    if ((rc = cli_setup_ctx(&eval_cmd, ctx)) || (rc = setup_constant_time(&eval_cmd, ctx)) ||
        (rc = cli_setup_bf16(&eval_cmd, ctx)) || (rc = dist_setup(&eval_cmd, ctx, dist, 1)))
        goto done;
    if (!cli_int(&eval_cmd, "batch", 256, 1, 65536, &batch) || !cli_int(&eval_cmd, "limit", 0, 0, 1L << 40, &limit)) {
        rc = EXIT_USAGE;
        goto done;
    }
    const char *split_s = cli_get(&eval_cmd, "split");
    ts_split split = TS_SPLIT_TEST;
    if (split_s && !strcmp(split_s, "train")) split = TS_SPLIT_TRAIN;
    else if (split_s && strcmp(split_s, "test")) {
        fprintf(stderr, "tessera eval: --split: '%s' is not test or train\n", split_s);
        rc = EXIT_USAGE;
        goto done;
    }
    if ((st = cli_load_model(ctx, pos[0], CLI_LOAD_ONNX, &m))) goto fail;
    float rho;
    if ((rc = cli_exit_threshold(&eval_cmd, m, ctx, &rho))) goto done;
    const char *spec = cli_get(&eval_cmd, "data");
    if (!spec) spec = ts_model_get_meta(m, "data");
    if (!spec && ts_model_get_meta(m, "composed.origin.0") && cli_is_text_model(m)) {
        /* composed text modules: their classes of their dataset */
        spec = "the modules' dataset";
        if ((st = cli_text_composed_dataset(ctx, m, pos[0], split, cli_data_dir(&eval_cmd, m), limit, &texts)))
            goto fail;
    } else if (!spec && ts_model_get_meta(m, "composed.origin.0")) {
        /* a composed model: each class from its module's dataset */
        spec = "the modules' datasets";
        /* --limit spreads over the classes: the set is ordered class by class */
        int k = ts_model_classes(m);
        int64_t per = limit > 0 ? (limit + k - 1) / k : 0;
        if ((st = ts_composed_dataset(ctx, m, split, cli_get(&eval_cmd, "data-dir"), per, &ds))) goto fail;
    } else if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", pos[0]);
        goto fail;
    } else if (cli_is_text_model(m)) {
        if ((st = cli_text_load_for_model(ctx, m, pos[0], spec, split, cli_data_dir(&eval_cmd, m), limit, &texts)))
            goto fail;
    } else if ((st = cli_load_dataset(ctx, spec, split, cli_data_dir(&eval_cmd, m), limit, &ds))) goto fail;
    double t0 = cli_now(), whole = 0;
    ts_eval_report ev;
    if ((st = texts ? ts_evaluate_text(ctx, m, texts, (int)batch, &ev, &whole) : ts_evaluate(ctx, m, ds, (int)batch, &ev)))
        goto fail;
    double secs = cli_now() - t0;
    const char *unit = !texts                               ? "images"
                       : texts->task == TS_SEQ_TAG          ? "tokens"
                       : texts->task == TS_SEQ_TRANSLATE    ? "target words"
                                                            : "texts";
    printf("model %s on %s (%s, %lld %s, %.2fs, %.0f %s/s%s)\n", pos[0], spec,
           split == TS_SPLIT_TEST ? "test" : "train", (long long)ev.count, unit, secs, secs > 0 ? ev.count / secs : 0,
           !texts ? "img" : texts->task == TS_SEQ_TRANSLATE ? "word" : unit, ts_ctx_get_constant_time(ctx) ? ", constant-time" : "");
    char loss[32];
    printf("top-1 %.2f%%  top-5 %.2f%%  loss %s", 100 * ev.top1, 100 * ev.top5, cli_num(loss, sizeof loss, ev.loss, 4));
    if (ev.exit_top1 >= 0) printf("  (early exit alone: top-1 %.2f%%)", 100 * ev.exit_top1);
    if (texts && texts->task == TS_SEQ_TAG) printf("  whole sentences %.2f%%", 100 * whole);
    if (texts && texts->task == TS_SEQ_TRANSLATE) { /* scores are per target word; BLEU is what counts */
        long beam;
        double bleu;
        if (!cli_int(&eval_cmd, "beam", 1, 1, 64, &beam)) {
            ts_eval_report_free(&ev);
            rc = EXIT_USAGE;
            goto done;
        }
        double by_class[EVAL_LANGS_MAX];
        const int langs = texts->labels && texts->classes <= EVAL_LANGS_MAX ? texts->classes : 0;
        if ((st = ts_evaluate_bleu_each(ctx, m, texts, (int)beam, (int)batch, &bleu, langs ? by_class : NULL))) {
            ts_eval_report_free(&ev);
            goto fail;
        }
        printf(" (per target word, reading the reference's words before it)\nBLEU %.2f (%s) on %lld sentences\n",
               100 * bleu, beam > 1 ? "beam search" : "greedy", (long long)texts->count);
        /* a translator trained both ways: each language written on its own */
        for (int c = 0; c < langs; c++) {
            long long k = 0;
            for (int64_t s = 0; s < texts->count; s++) k += texts->labels[s] == c;
            if (!k) continue;
            printf("  into %-10s BLEU %.2f on %lld sentences\n", texts->class_names[c], 100 * by_class[c], k);
            if (J) {
                char key[96];
                snprintf(key, sizeof key, "bleu_into_%.80s", texts->class_names[c]);
                json_num(J, key, by_class[c]);
            }
        }
        if (J) { /* the figures printed above; no per-class table over a target vocabulary */
            json_str(J, "model", pos[0]);
            json_str(J, "data", spec);
            json_str(J, "split", split == TS_SPLIT_TEST ? "test" : "train");
            json_int(J, "sentences", (long long)texts->count);
            json_int(J, "target_words", (long long)ev.count);
            json_num(J, "top1", ev.top1);
            json_num(J, "top5", ev.top5);
            json_num(J, "loss", ev.loss);
            json_int(J, "beam", beam);
            json_num(J, "bleu", bleu);
        }
        ts_eval_report_free(&ev);
        rc = EXIT_OK;
        goto done;
    }
    printf("\n\n");
    int k = ev.classes;
    printf("%-4s %-20s %9s %9s %8s\n", "id", "class", "precision", "recall", "support");
    for (int c = 0; c < k; c++) {
        int64_t support = 0;
        for (int j = 0; j < k; j++) support += ev.confusion[(size_t)c * k + j];
        char name[64];
        printf("%-4d %-20s %8.2f%% %8.2f%% %8lld\n", c, cli_class_name(m, c, name, sizeof name),
               100 * ts_eval_precision(&ev, c), 100 * ts_eval_recall(&ev, c), (long long)support);
    }
    if (k <= 100) { /* beyond that, a table nobody can read (--json has it) */
        printf("\nconfusion matrix (rows: true, columns: predicted)\n     ");
        for (int j = 0; j < k; j++) printf("%6d", j);
        printf("\n");
        for (int c = 0; c < k; c++) {
            printf("%4d ", c);
            for (int j = 0; j < k; j++) printf("%6lld", (long long)ev.confusion[(size_t)c * k + j]);
            printf("\n");
        }
    }
    if (J) json_eval(J, m, pos[0], spec, split == TS_SPLIT_TEST ? "test" : "train", &ev, secs, ts_ctx_get_constant_time(ctx));
    if (ev.exit_top1 >= 0 && J) json_num(J, "exit_top1", ev.exit_top1);
    ts_eval_report_free(&ev);
    if (ds && (st = cli_exit_eval(ctx, m, ds, (int)batch, rho, J))) goto fail;
    if (ts_patch_target(m) >= 0) {
        /* a patched model: the class's figures beside the weak model's (inside it) */
        ts_patch_eval we, pe;
        char name[64];
        const int t = ts_patch_target(m);
        if ((st = ts_patch_evaluate(ctx, m, ds, (int)batch, &we, &pe))) goto fail;
        printf("\npatched class %d (%s): %lld samples of it, %lld of the others\n", t,
               cli_class_name(m, t, name, sizeof name), (long long)we.target_count, (long long)we.other_count);
        if (J) {
            json_object(J, "patch");
            json_int(J, "class", t);
            json_str(J, "name", name);
            json_int(J, "target_samples", (long long)we.target_count);
            json_int(J, "other_samples", (long long)we.other_count);
        }
        print_patch_eval(&we, &pe);
        if (J) json_close(J);
    }
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("eval", ctx, st);
done:
    ts_dataset_free(ds);
    ts_text_dataset_free(texts);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}

static cli_opt predict_opts[] = {
    {"data", "NAME|PATH", "predict dataset samples instead of image files", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first", NULL},
    {"index", "I[,J...]", "with --data: which test samples (default 0)", NULL},
    {"top", "K", "show the K most likely classes (default 3)", NULL},
    {"beam", "B", "a translator: beam search of width B (default 1: greedy)", NULL},
    {"to", "LANG", "a translator trained both ways (train --both-ways): the language to write, e.g. fra or eng", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"constant-time", NULL, "inference whose timing does not depend on the images (docs/security.md)", NULL},
    CLI_OPT_EXIT_THRESHOLD,
    {"bf16", NULL, "bfloat16 convolutions and recurrent layers (faster; accuracy in bench/RESULTS.md)", NULL},
    {"winograd", "MODE", "where 3x3 stride-1 convolutions (16+ channels in, 32+ out) run Winograd kernels: off, inference (default) or training (also the training passes; results drift from direct by float rounding)", NULL},
    CLI_OPT_JSON,
};
static cli_cmd predict_cmd = {"predict", "MODEL IMAGE... | MODEL --data NAME --index I | TEXT-MODEL \"TEXT\"...",
                              "Classifies image files (PNG, JPEG, PGM/PPM; converted to the model's channels,\n"
                              "resized and center-cropped to its input as torchvision's Resize + CenterCrop), dataset\n"
                              "samples, or texts, printing the top classes with their probabilities (for a patched\n"
                              "model, its outputs as they are: the weak model's probabilities and the patched class's\n"
                              "output; for a tagger, each word's tag; for a translator, the translation).",
                              predict_opts, sizeof predict_opts / sizeof predict_opts[0]};

/* The ranking is the library's branch-free ts_top_k (the t-th best: the highest
 * score below the previous pick, ties by index). Printing is not constant-time:
 * the answer is the requester's to see (docs/security.md). */
static void print_top(const ts_model *m, const char *what, const float *logits, int k, int top, int label,
                      const char *other) {
    /* a patched model's outputs are already probabilities (and the module's rescaled
     * score): shown as they are, not through another softmax */
    const int raw = ts_patch_target(m) >= 0;
    int idx[1000];
    const int found = ts_top_k(logits, k, top, idx);
    const float mx = logits[ts_argmax(logits, k)];
    double sum = 0;
    for (int j = 0; j < k; j++) sum += exp((double)(logits[j] - mx));
    json_out *J = cli_json();
    if (J) {
        json_object(J, NULL);
        json_str(J, "input", what);
        json_array(J, "top");
        for (int t = 0; t < found; t++) {
            char name[64];
            json_object(J, NULL);
            json_int(J, "class", idx[t]);
            json_str(J, "name", cli_class_name(m, idx[t], name, sizeof name));
            json_num(J, raw ? "output" : "probability",
                     raw ? logits[idx[t]] : exp((double)(logits[idx[t]] - mx)) / sum);
            json_close(J);
        }
        json_close(J);
        if (label >= 0 || other) {
            char name[64];
            json_object(J, "true");
            if (label >= 0) json_int(J, "class", label);
            json_str(J, "name", label >= 0 ? cli_class_name(m, label, name, sizeof name) : other);
            json_bool(J, "in_model", label >= 0);
            json_close(J);
        }
        json_close(J);
    }
    printf("%s:", what);
    for (int t = 0; t < found; t++) {
        const int best = idx[t];
        char name[64];
        printf("%s %s %.2f%%", t ? "," : "", cli_class_name(m, best, name, sizeof name),
               raw ? 100.0 * logits[best] : 100.0 * exp((double)(logits[best] - mx)) / sum);
    }
    if (label >= 0) {
        char name[64];
        printf("  (true: %s)", cli_class_name(m, label, name, sizeof name));
    } else if (other) {
        printf("  (true: %s, not a class of this model)", other);
    }
    printf("\n");
}

/* Whether a composed model's recorded dataset `rec` is the one given as `spec`: the
 * same name, or the same file or folder once both are looked up. */
static int same_dataset(ts_ctx *ctx, const char *rec, const char *spec, const char *dir) {
    if (!strcmp(rec, spec)) return 1;
    char a[4096], b[4096];
    int same = !ts_dataset_locate(ctx, rec, TS_SPLIT_TEST, dir, a, sizeof a) &&
               !ts_dataset_locate(ctx, spec, TS_SPLIT_TEST, dir, b, sizeof b) && cli_same_file(a, b);
    ts_ctx_clear_error(ctx);
    return same;
}

/* For a composed (or extracted) model, the output each label of dataset `spec` means
 * (*out: classes entries, -1 where the model has no output for it): output J answers
 * the class its module came from, which the dataset's label does not index. NULL when
 * the model's outputs are the dataset's classes. */
static ts_status composed_outputs(ts_ctx *ctx, const ts_model *m, const char *spec, const char *dir, int classes,
                                  int **out) {
    *out = NULL;
    if (!ts_model_get_meta(m, "composed.origin.0")) return TS_OK;
    int *map = malloc((size_t)classes * sizeof *map);
    if (!map) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    for (int c = 0; c < classes; c++) map[c] = -1;
    for (int j = 0; j < ts_model_classes(m); j++) {
        char key[48], rec[4096];
        snprintf(key, sizeof key, "composed.origin.%d", j);
        const char *v = ts_model_get_meta(m, key), *d = v ? strstr(v, "dataset=") : NULL;
        const char *c = d ? strstr(d, ";class=") : NULL;
        if (!c || (size_t)(c - d - 8) >= sizeof rec) continue;
        snprintf(rec, sizeof rec, "%.*s", (int)(c - d - 8), d + 8);
        const long cls = strtol(c + 7, NULL, 10);
        if (cls >= 0 && cls < classes && map[cls] < 0 && same_dataset(ctx, rec, spec, dir)) map[cls] = j;
    }
    *out = map;
    return TS_OK;
}

/* A text model on texts given as arguments: a classifier's top classes, or a
 * tagger's tag for every word (word/TAG ...). */
static ts_status predict_text(ts_ctx *ctx, ts_model *m, const char *path, char **texts, int n, int top, int beam,
                              const char *to) {
    const ts_shape in = ts_model_input_shape(m);
    const int T = in.ndim == 1 ? (int)in.dims[0] : 0, K = ts_model_classes(m), tags = cli_text_model_tags(m);
    float *x = malloc(sizeof *x * (size_t)(T > 0 ? T : 1)), *logits = malloc(sizeof *logits * (size_t)K);
    ts_status st = x && logits ? TS_OK : ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    json_out *J = cli_json();
    for (int i = 0; i < n && !st && cli_text_model_translates(m); i++) {
        char *tr = NULL;
        if ((st = cli_text_translate(ctx, m, path, texts[i], beam, to, &tr))) break;
        printf("\"%s\" -> \"%s\"\n", texts[i], tr);
        if (J) {
            json_object(J, NULL);
            json_str(J, "input", texts[i]);
            json_str(J, "translation", tr);
            json_close(J);
        }
        ts_text_free(tr);
    }
    for (int i = 0; i < n && !st && !cli_text_model_translates(m); i++) {
        int len = 0;
        char *tokens = NULL, what[96];
        if ((st = cli_text_encode(ctx, m, path, texts[i], x, &len)) || (st = ts_model_predict(ctx, m, x, 1, logits)))
            break;
        snprintf(what, sizeof what, "\"%.80s\"", texts[i]);
        if (!tags) {
            print_top(m, what, logits, K, top, -1, NULL);
            continue;
        }
        if ((st = ts_text_tokenize(ctx, texts[i], &tokens, NULL))) break;
        const int C = K / T;
        if (J) {
            json_object(J, NULL);
            json_str(J, "input", texts[i]);
            json_array(J, "tags");
        }
        char *save = NULL, *w = strtok_r(tokens, " ", &save);
        for (int t = 0; t < len && w; t++, w = strtok_r(NULL, " ", &save)) {
            char name[64];
            cli_class_name(m, ts_argmax(logits + (size_t)t * C, C), name, sizeof name);
            printf("%s%s/%s", t ? " " : "", w, name);
            if (J) {
                json_object(J, NULL);
                json_str(J, "word", w);
                json_str(J, "tag", name);
                json_close(J);
            }
        }
        printf("%s\n", len < (int)strlen(texts[i]) && len == T ? " (cut at the model's length)" : "");
        if (J) {
            json_close(J);
            json_close(J);
        }
        ts_text_free(tokens);
    }
    free(x);
    free(logits);
    return st;
}

/* One image: with an exit threshold (rho >= 0) through the early exit, saying where it left. */
static ts_status predict_image(ts_ctx *ctx, ts_model *m, const float *x, float rho, float *logits) {
    if (rho < 0) return ts_model_predict(ctx, m, x, 1, logits);
    int exited = 0;
    ts_status st = ts_model_predict_exit(ctx, m, x, 1, rho, logits, &exited);
    if (!st && !cli_json()) printf("(%s) ", exited ? "left at the early exit" : "ran the whole network");
    return st;
}

/* One image file on a free-size model: only its channels converted, run at its own
 * height and width; the top classes of whatever the model outputs at that size. */
static ts_status predict_any_size(ts_ctx *ctx, ts_model *m, const char *path, const ts_preprocess *pp, float rho,
                                  int top) {
    const ts_shape in = ts_model_input_shape(m);
    const int C = (int)in.dims[0];
    int c, h, w;
    uint8_t *px, *fitted = NULL;
    float *x = NULL, *out = NULL;
    ts_shape os;
    ts_status st = ts_image_load(ctx, path, &c, &h, &w, &px);
    if (st) return st;
    if (rho >= 0 && (h != in.dims[1] || w != in.dims[2]))
        st = ts_ctx_set_error(ctx, TS_EUNSUPPORTED, "%s: %dx%d: the early exit runs at the model's default size "
                              "%lldx%lld only", path, h, w, (long long)in.dims[1], (long long)in.dims[2]);
    if (!st) st = ts_model_output_shape_hw(ctx, m, h, w, &os);
    const size_t npx = (size_t)C * (size_t)h * (size_t)w;
    if (!st && (!(fitted = malloc(npx)) || !(x = malloc(npx * sizeof *x)) ||
                !(out = malloc((size_t)ts_shape_numel(&os) * sizeof *out))))
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    if (!st) st = ts_image_fit(ctx, px, c, h, w, C, h, w, fitted);
    if (st && st != TS_ENOMEM) st = ts_ctx_set_error(ctx, st, "%s: %s", path, ts_ctx_error(ctx));
    if (!st) {
        (ts_ctx_get_constant_time(ctx) ? ts_preprocess_images_ct : ts_preprocess_images)(pp, fitted, 1, C, h, w, x);
        st = rho >= 0 ? predict_image(ctx, m, x, rho, out) : ts_model_predict_hw(ctx, m, x, 1, h, w, out, NULL);
    }
    char what[4200];
    snprintf(what, sizeof what, "%s (%dx%d)", path, h, w);
    if (!st) print_top(m, what, out, (int)ts_shape_numel(&os), top, -1, NULL);
    ts_image_free(px);
    free(fitted);
    free(x);
    free(out);
    return st;
}

int cmd_predict(int argc, char **argv) {
    char *pos[4096];
    int npos;
    int rc = cli_parse(&predict_cmd, argc, argv, pos, &npos, 4096);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&predict_cmd);
    if (J) json_array(J, "predictions");
    const char *spec = cli_get(&predict_cmd, "data");
    if (npos < 1 || (npos < 2 && !spec)) {
        fprintf(stderr, "tessera predict: expected MODEL and images, or MODEL --data NAME (see --help)\n");
        return EXIT_USAGE;
    }
    long top;
    if (!cli_int(&predict_cmd, "top", 3, 1, 1000, &top)) return EXIT_USAGE;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *m = NULL;
    ts_dataset *ds = NULL;
    float *x = NULL, *logits = NULL;
    uint8_t *fitted = NULL; /* (C, H, W) an image file brought to the model's input */
    int *composed = NULL;
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&predict_cmd, ctx)) || (rc = setup_constant_time(&predict_cmd, ctx)) ||
        (rc = cli_setup_bf16(&predict_cmd, ctx)))
        goto done;
    if ((st = cli_load_model(ctx, pos[0], CLI_LOAD_ONNX, &m))) goto fail;
    if (cli_is_text_model(m)) {
        if (spec || npos < 2) {
            fprintf(stderr, "tessera predict: %s reads text: give the texts as arguments (tessera predict %s \"some "
                    "text\")\n", pos[0], pos[0]);
            rc = EXIT_USAGE;
            goto done;
        }
        long beam;
        if (!cli_int(&predict_cmd, "beam", 1, 1, 64, &beam)) {
            rc = EXIT_USAGE;
            goto done;
        }
        if (cli_get(&predict_cmd, "to") && !cli_text_model_translates(m)) {
            st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: --to is for a translator", pos[0]);
            goto fail;
        }
        if ((st = predict_text(ctx, m, pos[0], pos + 1, npos - 1, (int)top, (int)beam, cli_get(&predict_cmd, "to"))))
            goto fail;
        rc = EXIT_OK;
        goto done;
    }
    float rho;
    if ((rc = cli_exit_threshold(&predict_cmd, m, ctx, &rho))) goto done;
    ts_shape in = ts_model_input_shape(m);
    if (in.ndim != 3) {
        st = ts_ctx_set_error(ctx, TS_EUNSUPPORTED, "%s: model input is not an image", pos[0]);
        goto fail;
    }
    int C = (int)in.dims[0], H = (int)in.dims[1], W = (int)in.dims[2], K = ts_model_classes(m);
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto fail;
    const int ct = ts_ctx_get_constant_time(ctx);
    x = malloc((size_t)C * H * W * sizeof(float));
    logits = malloc((size_t)K * sizeof(float));
    fitted = malloc((size_t)C * H * W);
    if (!x || !logits || !fitted) {
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
        goto fail;
    }
    if (spec) {
        if ((st = ts_dataset_load(ctx, spec, TS_SPLIT_TEST, cli_get(&predict_cmd, "data-dir"), &ds))) goto fail;
        if (ds->channels != C || ds->height != H || ds->width != W) {
            st = ts_ctx_set_error(ctx, TS_ESHAPE, "%s has %dx%dx%d images, the model takes %dx%dx%d", spec, ds->channels,
                         ds->height, ds->width, C, H, W);
            goto fail;
        }
        if ((st = composed_outputs(ctx, m, spec, cli_get(&predict_cmd, "data-dir"), ds->classes, &composed))) goto fail;
        const char *list = cli_get(&predict_cmd, "index");
        if (!list) list = "0";
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", list);
        if (!strpbrk(buf, "0123456789")) {
            fprintf(stderr, "tessera predict: --index: '%s' names no sample (expected I[,J...])\n", list);
            rc = EXIT_USAGE;
            goto done;
        }
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *end;
            long i = strtol(t, &end, 10);
            if (*end || end == t || i < 0 || i >= ds->count) {
                fprintf(stderr, "tessera predict: --index: '%s' is not in 0..%lld\n", t, (long long)ds->count - 1);
                rc = EXIT_USAGE;
                goto done;
            }
            (ct ? ts_preprocess_images_ct : ts_preprocess_images)(&pp, ds->images + (size_t)i * C * H * W, 1, C, H,
                                                                  W, x);
            if ((st = predict_image(ctx, m, x, rho, logits))) goto fail;
            char what[64], other[96];
            snprintf(what, sizeof what, "%s[%ld]", spec, i);
            const int y = ds->labels[i], out = composed ? composed[y] : y;
            if (ds->class_names && ds->class_names[y]) snprintf(other, sizeof other, "%s %s", spec, ds->class_names[y]);
            else snprintf(other, sizeof other, "%s class %d", spec, y);
            print_top(m, what, logits, K, (int)top, out, other);
        }
    } else if (ts_model_any_size(m)) {
        for (int f = 1; f < npos; f++)
            if ((st = predict_any_size(ctx, m, pos[f], &pp, rho, (int)top))) goto fail;
    } else {
        for (int f = 1; f < npos; f++) {
            /* any size and colour: converted, resized and center-cropped to the model's
             * input as torchvision's Resize + CenterCrop (docs/data.md) */
            int c, h, w;
            uint8_t *px;
            if ((st = ts_image_load(ctx, pos[f], &c, &h, &w, &px))) goto fail;
            st = ts_image_fit(ctx, px, c, h, w, C, H, W, fitted);
            ts_image_free(px);
            if (st) {
                st = ts_ctx_set_error(ctx, st, "%s: %s", pos[f], ts_ctx_error(ctx));
                goto fail;
            }
            (ct ? ts_preprocess_images_ct : ts_preprocess_images)(&pp, fitted, 1, C, H, W, x);
            if ((st = predict_image(ctx, m, x, rho, logits))) goto fail;
            print_top(m, pos[f], logits, K, (int)top, -1, NULL);
        }
    }
    rc = EXIT_OK;
    goto done;
fail:
    rc = cli_fail("predict", ctx, st);
done:
    free(composed);
    free(fitted);
    free(x);
    free(logits);
    ts_dataset_free(ds);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}
