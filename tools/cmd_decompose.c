/* tessera decompose: a trained classifier cut into one module per class. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli_modules.h"
#include "cli_text.h"
#include "dist.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h> /* rmdir */

/* ------------------------------------------------------------- decompose */

static cli_opt decompose_opts[] = {
    {"data", "NAME|PATH", "training data to identify concerns on (default: the model's own)", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"out", "DIR", "folder for the modules, one classN.tsm per class (required)", NULL},
    {"classes", "I[,J...]", "decompose only these classes (default: all)", NULL},
    {"positives", "N", "confident training inputs per class for concern identification (default 1000; text models 500)", NULL},
    {"confidence", "F", "softmax probability a positive needs (default 0.9)", NULL},
    {"tangling", "F", "negatives per positive for tangling identification (default 1.0)", NULL},
    {"method", "activation|grad|mwt|ga", "activation: Pan & Rajan's keep-bits per ReLU unit (default); grad: learned masks, one per convolution kernel and class, on the frozen model (GradSplitter-style); mwt: the kernels a model trained with train --modular opens for the class (MwT); ga: CNNSplitter's genetic search over groups of kernels ranked by importance", NULL},
    {"theta", "F", "mwt: keep a kernel its generator opens on at least this fraction of the class's training samples (default 0.9)", NULL},
    {"alpha", "F", "grad: weight of each module's kept-kernel fraction in the loss (default 0.01)", NULL},
    {"epochs", "N", "grad: mask-learning epochs (default 4)", NULL},
    {"epoch-samples", "N", "grad: training samples per epoch (default 10000; 0: all)", NULL},
    {"val", "N", "grad: samples carved from the training data to choose the epoch (default 2000)", NULL},
    {"lr", "F", "grad: Adam learning rate of the masks (default 0.05)", NULL},
    {"max-loss", "F", "grad: choose the fewest kernels within this many points of the origin's validation top-1 (default 1)", NULL},
    {"population", "N", "ga: chromosomes per class (default 100)", NULL},
    {"generations", "N", "ga: generations per class at most (default 200)", NULL},
    {"parents", "N", "ga: the fittest chromosomes that mate (default 50)", NULL},
    {"elites", "N", "ga: the fittest chromosomes kept as they are (default 20)", NULL},
    {"mutation", "F", "ga: fraction of an offspring's genes flipped (default 0.05)", NULL},
    {"patience", "N", "ga: a class stops after N generations without a better best (default 20)", NULL},
    {"val-per-class", "N", "ga: validation samples per class carved from the training data (default 50)", NULL},
    {"rule", "every|any", "concern identification on dense units: kept when active on every confident positive "
                          "(FSE'20, default) or on any", NULL},
    {"bln-delta", "F", "BLN backtracking: drop units feeding the classifier with |w_uc| > F(|w_c|+|w_uc|) "
                       "(default 1: none; the paper uses 0.5, docs/modules.md)", NULL},
    {"max-remove", "F", "text models: most of a tanh/lstm/gru layer's units a module removes (default 0.2; "
                        "translators 0.05)", NULL},
    {"rolled", NULL, "text models: one set of removed units for every step (the paper's rolled variant; the "
                     "default for a classifier)", NULL},
    {"unrolled", NULL, "text models: a set of removed units per step (the paper's unrolled variant; the default for "
                       "a tagger)", NULL},
    {"limit", "N", "draw positives and negatives from the first N training samples (or texts) only, and evaluate on "
                   "the first N test samples (default: all)", NULL},
    {"step-min", "N", "text models, unrolled: a step with fewer than N positives or negatives takes the rolled set "
                      "(default 10)", NULL},
    {"text-rule", "refined|paper", "text classifiers, rolled: refined (default) folds the removed units' mean "
                                   "states into the biases that read them and fits each module's score to the "
                                   "origin's margin; paper: the rule as published (docs/sequences.md)", NULL},
    {"rank-by-use", NULL, "translators: of the decoder units the rule names, remove those the language uses "
                          "least (off by default: it helped an LSTM translator and cost a GRU one)", NULL},
    {"rank-by-margin", NULL, "text classifiers, rolled, refined: of the units the rule names, remove those least "
                             "important to the module's margin (off by default: it cost a GRU 0.4 points)", NULL},
    {"seed", "S", "order in which training inputs are drawn, and ga's random draws (default 0)", NULL},
    {"batch", "N", "inference batch (default 128)", NULL},
    {"no-eval", NULL, "skip the per-module test-set evaluation and the composed check", NULL},
    {"max-macs", "F", "for the composed check: compute budget (default 1.5)", NULL},
    {"force", NULL, "replace a module file even when it is write-protected", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
    {"quiet", NULL, "no progress bar", NULL},
    CLI_OPT_JSON,
};
static cli_cmd decompose_cmd = {
    "decompose", "MODEL --out DIR [--data NAME|PATH] [options]",
    "Cuts a trained classifier into one module per class (Pan & Rajan's concern identification,\n"
    "tangling identification, output channelling and BLN backtracking; docs/modules.md) and writes\n"
    "DIR/classN.tsm. Prints the rule used and per module: positives and negatives used, binary\n"
    "accuracy on its own class and on the rest (test split), the ReLU units it keeps, the\n"
    "parameters and multiply-accumulates it needs as a share of the origin's (computed from its\n"
    "masks), the units BLN removed, its Jaccard index against the model, and the time; then the\n"
    "model against all modules composed. --method grad learns one mask per convolution kernel\n"
    "and class on the frozen model instead (GradSplitter-style; docs/modules.md); --method mwt\n"
    "keeps, per class, the kernels that a model trained with train --modular opens for it (MwT);\n"
    "--method ga searches, per class, which groups of kernels to keep with CNNSplitter's genetic\n"
    "algorithm (fitness: composed accuracy on a validation part and difference from the other\n"
    "modules), printing the generations run and the best fitness per class. A text model\n"
    "(embedding -> rnn/lstm/gru layers -> dense) is decomposed by hidden unit instead (Imtiaz, Pan &\n"
    "Rajan; docs/sequences.md): per module the recurrent units kept, parameters and MACs of its\n"
    "physically smaller model; a tagger's modules are one per tag, from the tokens. A classifier's\n"
    "modules are rolled (one set of removed units for every step) unless --unrolled, a tagger's\n"
    "unrolled (a set per step, kept as a per-step mask in the module) unless --rolled.",
    decompose_opts, sizeof decompose_opts / sizeof decompose_opts[0]};

/* decompose's output. Each module is saved as DIR/classN.tsm.pending and renamed to
 * DIR/classN.tsm only once every module is saved and the report is done, so a file
 * already in DIR is replaced only by a run that gets that far. A failing run removes
 * its pending files and then DIR, when it made DIR itself (rmdir: never a folder that
 * holds anything else); a rename that fails midway keeps the modules already renamed. */
static const char *const PENDING = ".pending";

static int module_out_path(char *buf, size_t n, const char *dir, const ts_module *mod, const char *suffix) {
    ts_module_info in;
    ts_module_info_get(mod, &in);
    return (size_t)snprintf(buf, n, "%s/class%d.tsm%s", dir, in.class_index, suffix) < n;
}

/* Renames mods[0 .. n) from their pending names into place, counting in *placed.
 * What would make a rename fail or must not be replaced (a folder in the way, a
 * write-protected module, the input model itself) is looked for first, so that it
 * fails the run before any file that was already there is replaced. */
static ts_status module_out_place(ts_ctx *ctx, const char *dir, const char *model, ts_module *const *mods, int n,
                                  int *placed) {
    char from[4096], to[4096];
    for (int i = 0; i < n; i++) {
        ts_status st;
        if (!module_out_path(to, sizeof to, dir, mods[i], "")) /* shorter than the pending name */
            return ts_ctx_set_error(ctx, TS_EINVAL, "%s: output path too long", dir);
        if (cli_same_file(to, model))
            return ts_ctx_set_error(ctx, TS_EINVAL, "%s: is the input model %s; choose another --out folder", to, model);
        if ((st = ts_file_check_output(ctx, to))) return st;
    }
    for (; *placed < n; (*placed)++) {
        module_out_path(from, sizeof from, dir, mods[*placed], PENDING);
        module_out_path(to, sizeof to, dir, mods[*placed], "");
        ts_status st = ts_file_replace(ctx, from, to);
        if (st)
            return ts_ctx_set_error(ctx, st, "%s (%d of %d modules were already in place)", ts_ctx_error(ctx), *placed, n);
    }
    return TS_OK;
}

/* Undoes a failed run: mods[0 .. saved) were written, the first `placed` of them
 * already renamed into place. Those stay: each may have replaced an older module, which
 * is gone, and the error says how many there are. Only the pending files go, then DIR
 * when this run made it and it is empty. */
static void module_out_remove(const char *dir, int made_dir, ts_module *const *mods, int saved, int placed) {
    for (int i = placed; i < saved; i++) {
        char path[4096];
        if (module_out_path(path, sizeof path, dir, mods[i], PENDING)) remove(path);
    }
    if (made_dir) rmdir(dir);
}

static double percent(int64_t part, int64_t whole) { return whole ? 100.0 * (double)part / (double)whole : 100.0; }

static void print_decompose_rule(const ts_decompose_config *cfg) {
    if (cfg->rule == TS_DECOMPOSE_RULE_ANY)
        printf("rule: any (a unit is kept when active on any confident positive");
    else
        printf("rule: every (FSE'20: a dense unit is kept when active on every confident positive; conv units when "
               "active on any");
    printf(", then restored when active on any negative); BLN backtracking: ");
    if (cfg->bln_delta < 1.0f) printf("delta %g\n", (double)cfg->bln_delta);
    else printf("off\n");
}

static void print_ga_summary(const ts_decompose_config *cfg, ts_module *const *mods, int n) {
    ts_module_info in;
    ts_module_info_get(mods[0], &in);
    printf("method ga: population %d, at most %d generations (patience %d), %d parents, %d elites, mutation %g, %d "
           "validation samples per class carved from the training data: modules composed %.2f%% top-1 there, the "
           "model %.2f%%\ngenerations / best fitness / coupling (mean Jaccard of kept kernels with the others'):",
           cfg->ga_population, cfg->ga_generations, cfg->ga_patience, cfg->ga_parents, cfg->ga_elites,
           (double)cfg->ga_mutation, cfg->ga_val_per_class, 100 * in.val_accuracy, 100 * in.origin_val_accuracy);
    for (int i = 0; i < n; i++) {
        ts_module_info_get(mods[i], &in);
        printf(" %d: %d/%.4f/%.3f", in.class_index, in.generations, in.fitness, in.coupling);
    }
    printf("\n");
}

/* The ga search's live line: the bar over generations, with the class and
 * generation last finished and its best fitness. */
typedef struct ga_live {
    progress pr;
    char extra[96];
} ga_live;

static void ga_generation(void *user, int cls, int generation, double best) {
    ga_live *l = user;
    snprintf(l->extra, sizeof l->extra, "class %d generation %d, best fitness %.4f", cls, generation, best);
}

static int ga_progress(void *user, int64_t done, int64_t total) {
    ga_live *l = user;
    progress_update(&l->pr, "generations", done, total, l->extra[0] ? l->extra : NULL, 0);
    return 0;
}

/* A module built from no confident positive keeps what its negatives alone decide:
 * it is written (the user asked for the class), but not silently. */
static void warn_no_positives(const ts_decompose_config *cfg, const ts_module *mod) {
    ts_module_info in;
    ts_module_info_get(mod, &in);
    if (in.positives > 0 || (cfg->method != TS_DECOMPOSE_ACTIVATION && cfg->method != TS_DECOMPOSE_GA)) return;
    fprintf(stderr, "tessera decompose: warning: the module for class %d '%s' was built from 0 confident positives (no "
            "training sample of the class got it as the answer with probability >= %g); lower --confidence or train "
            "the model longer\n", in.class_index, in.class_name, (double)cfg->confidence);
}

/* The settings and figures decompose prints before its table, for --json. */
static void json_decompose_head(json_out *J, const ts_decompose_config *cfg, ts_module *const *mods, int n) {
    ts_module_info in;
    ts_module_info_get(mods[0], &in);
    json_str(J, "method", cli_method_name(cfg->method));
    if (cfg->method == TS_DECOMPOSE_ACTIVATION) {
        json_str(J, "rule", cfg->rule == TS_DECOMPOSE_RULE_ANY ? "any" : "every");
        if (cfg->bln_delta < 1.0f) json_num(J, "bln_delta", cfg->bln_delta);
        else json_str(J, "bln_delta", NULL); /* off */
        json_num(J, "origin_params_live", in.params ? (double)in.origin_params_live / (double)in.params : 1.0);
        json_num(J, "origin_macs_live", in.origin_macs ? (double)in.origin_macs_live / (double)in.origin_macs : 1.0);
    }
    if (cfg->method == TS_DECOMPOSE_GRAD) {
        json_int(J, "selected_epoch", in.selected_epoch);
        json_int(J, "epochs", cfg->epochs);
        json_int(J, "val_count", (long long)cfg->val_count);
    }
    if (cfg->method == TS_DECOMPOSE_GA) {
        json_object(J, "ga");
        json_int(J, "population", cfg->ga_population);
        json_int(J, "generations", cfg->ga_generations);
        json_int(J, "patience", cfg->ga_patience);
        json_int(J, "parents", cfg->ga_parents);
        json_int(J, "elites", cfg->ga_elites);
        json_num(J, "mutation", cfg->ga_mutation);
        json_int(J, "val_per_class", cfg->ga_val_per_class);
        json_close(J);
    }
    if (cfg->method == TS_DECOMPOSE_GRAD || cfg->method == TS_DECOMPOSE_GA) {
        json_num(J, "val_top1_composed", in.val_accuracy);
        json_num(J, "val_top1_model", in.origin_val_accuracy);
    }
    if (cfg->method == TS_DECOMPOSE_MWT) json_num(J, "theta", cfg->theta);
    json_int(J, "origin_params", (long long)in.params);
    json_int(J, "origin_macs", (long long)in.origin_macs);
    (void)n;
}

/* One row of decompose's table, for --json (shares as fractions; own/rest: null without
 * evaluation). */
static void json_decompose_row(json_out *J, const ts_decompose_config *cfg, const ts_module_info *in, int eval,
                               double own, double rest) {
    json_object(J, NULL);
    json_int(J, "class", in->class_index);
    json_str(J, "name", in->class_name);
    json_int(J, "positives", in->positives);
    json_int(J, "negatives", in->negatives);
    if (eval) {
        json_num(J, "own_acc", own);
        json_num(J, "rest_acc", rest);
    } else {
        json_str(J, "own_acc", NULL);
        json_str(J, "rest_acc", NULL);
    }
    json_num(J, "kernels", in->kernels ? (double)in->kernels_kept / (double)in->kernels : 1.0);
    json_num(J, "units", percent(in->units_kept, in->units) / 100);
    json_num(J, "params", percent(in->params_kept, in->params) / 100);
    json_num(J, "macs", percent(in->macs_kept, in->origin_macs) / 100);
    json_int(J, "bln_removed", (long long)in->bln_removed);
    json_num(J, "jaccard", in->jaccard);
    json_num(J, "seconds", in->seconds);
    if (cfg->method == TS_DECOMPOSE_MWT || cfg->method == TS_DECOMPOSE_GA) json_num(J, "coupling", in->coupling);
    if (cfg->method == TS_DECOMPOSE_MWT) json_num(J, "cohesion", in->cohesion);
    if (cfg->method == TS_DECOMPOSE_GA) {
        json_int(J, "generations", in->generations);
        json_num(J, "fitness", in->fitness);
    }
    json_close(J);
}

/* The "composed" object of --json: the model's and the composed model's accuracies
 * and MACs ratio (left open). */
static void json_composed(json_out *J, const ts_eval_report *model, const ts_eval_report *composed, double macs) {
    json_object(J, "composed");
    json_num(J, "model_top1", model->top1);
    json_num(J, "model_top5", model->top5);
    json_num(J, "top1", composed->top1);
    json_num(J, "top5", composed->top5);
    json_num(J, "macs_vs_origin", macs);
}

/* A translator's modules, one per target language: each module's BLEU (greedy) on the
 * test pairs into its language beside the origin's on the same pairs. */
static ts_status report_translator(ts_ctx *ctx, ts_model *m, const char *path, const char *spec,
                                   const ts_text_dataset *train, const ts_text_dataset *test,
                                   const ts_decompose_text_config *cfg, ts_module **mods, int nmods, double secs,
                                   json_out *J) {
    ts_module_info in0;
    ts_module_info_get(mods[0], &in0);
    printf("decomposed %s into %d modules, one per target language, in %.2fs (data: %s, %lld training pairs)\n", path,
           nmods, secs, spec, (long long)train->count);
    printf("method: decoder units (Imtiaz et al., encoder-decoder, rolled): the units whose trimmed mean |state| is "
           "lower on pairs into the language than on pairs into the others go, at most %g of the decoder%s\n",
           (double)ts_decompose_text_max_remove(cfg, train->task),
           cfg->rank_by_use ? "; --rank-by-use: of those, the ones the language's own pairs use least (lowest "
                              "mean |state|)"
                            : ", the largest differences first");
    printf("units: decoder units kept; params, MACs: the module's model against the origin's %lld parameters and "
           "%.2fM multiply-accumulates per pair; BLEU: greedy, test pairs into the language\n",
           (long long)in0.params, in0.origin_macs / 1e6);
    if (J) {
        json_str(J, "model", path);
        json_int(J, "modules", nmods);
        json_num(J, "seconds", secs);
        json_str(J, "data", spec);
        json_int(J, "training_samples", (long long)train->count);
        json_str(J, "method", "decoder-units");
        json_int(J, "rank_by_use", cfg->rank_by_use);
        json_num(J, "max_remove", ts_decompose_text_max_remove(cfg, train->task));
        json_int(J, "origin_params", (long long)in0.params);
        json_int(J, "origin_macs", (long long)in0.origin_macs);
        json_array(J, "table");
    }
    printf("%-5s %-10s %5s %5s %7s %11s %7s %7s %7s %7s %7s\n", "label", "language", "pos", "neg", "pairs",
           "origin-BLEU", "BLEU", "units", "params", "MACs", "secs");
    ts_status st = TS_OK;
    for (int i = 0; i < nmods && !st; i++) {
        ts_module_info in;
        ts_module_info_get(mods[i], &in);
        double bm = 0, bo = 0;
        int64_t cnt = 0;
        char o[16] = "-", b[16] = "-";
        ts_text_dataset *sel = NULL;
        if (test && !(st = ts_module_evaluate_bleu(ctx, mods[i], test, 1, 64, &bm, &cnt)) && cnt &&
            !(st = ts_text_dataset_select(ctx, test, &in.class_index, 1, &sel)))
            st = ts_evaluate_bleu(ctx, m, sel, 1, 64, &bo);
        ts_text_dataset_free(sel);
        if (st) break;
        if (test && cnt) {
            snprintf(o, sizeof o, "%.2f", 100 * bo);
            snprintf(b, sizeof b, "%.2f", 100 * bm);
        }
        if (J) {
            json_object(J, NULL);
            json_int(J, "label", in.class_index);
            json_str(J, "name", in.class_name);
            json_int(J, "positives", in.positives);
            json_int(J, "negatives", in.negatives);
            json_int(J, "units", (long long)in.units);
            json_int(J, "units_kept", (long long)in.units_kept);
            json_int(J, "params_kept", (long long)in.params_kept);
            json_int(J, "macs_kept", (long long)in.macs_kept);
            if (test && cnt) {
                json_int(J, "test_pairs", (long long)cnt);
                json_num(J, "origin_bleu", 100 * bo);
                json_num(J, "bleu", 100 * bm);
            }
            json_close(J);
        }
        printf("%-5d %-10.10s %5d %5d %7lld %11s %7s %6.2f%% %6.2f%% %6.2f%% %7.2f\n", in.class_index, in.class_name,
               in.positives, in.negatives, (long long)cnt, o, b, percent(in.units_kept, in.units),
               percent(in.params_kept, in.params), percent(in.macs_kept, in.origin_macs), in.seconds);
    }
    if (J) json_close(J);
    return st;
}

/* ---- text models (ts_decompose_text, docs/sequences.md): the same folder, files and
 * report, with recurrent units in place of ReLU units. Saves each module under its
 * pending name (counted in *saved); the caller places them. */
static ts_status decompose_texts(ts_ctx *ctx, ts_model *m, const char *path, const char *spec,
                                 const ts_text_dataset *train, const ts_text_dataset *test, const char *outdir,
                                 const ts_decompose_text_config *cfg, const int *classes, int ncls, json_out *J,
                                 ts_module ***mods, int *nmods, int *saved) {
    double t0 = cli_now();
    ts_status st = ts_decompose_text(ctx, m, train, cfg, classes, ncls, mods, nmods);
    if (st) return st;
    const double secs = cli_now() - t0;
    char origin[PATH_MAX];
    if (!realpath(path, origin)) snprintf(origin, sizeof origin, "%s", path);
    for (; *saved < *nmods; (*saved)++) {
        char out[4096];
        ts_module *mod = (*mods)[*saved];
        if (!module_out_path(out, sizeof out, outdir, mod, PENDING))
            return ts_ctx_set_error(ctx, TS_EINVAL, "%s: output path too long", outdir);
        if ((st = ts_module_set_origin(ctx, mod, origin)) || (st = ts_module_set_dataset(ctx, mod, spec)) ||
            (st = ts_module_save(ctx, mod, out)))
            return st;
    }
    ts_module_info in0;
    ts_module_info_get((*mods)[0], &in0);
    if (train->task == TS_SEQ_TRANSLATE) return report_translator(ctx, m, path, spec, train, test, cfg, *mods, *nmods, secs, J);
    /* rolled -1 is the library's documented default (tessera.h): rolled for a classifier */
    const int tagger = train->task == TS_SEQ_TAG, rolled = cfg->rolled < 0 ? !tagger : cfg->rolled;
    printf("decomposed %s into %d modules in %.2fs (data: %s, %lld training texts)\n", path, *nmods, secs, spec,
           (long long)train->count);
    printf("method: hidden units (Imtiaz et al., %s): relu cells keep the units some positive or negative "
           "activates; tanh/lstm/gru cells lose the units whose trimmed mean |state| is lower on positives than on "
           "negatives, at most %g of a layer%s\n",
           !rolled ? "unrolled: a set per step" : "rolled", (double)ts_decompose_text_max_remove(cfg, train->task),
           tagger ? "; positives and negatives are tokens" : "");
    const int refined = rolled && !tagger && train->task == TS_SEQ_CLASSIFY;
    if (refined && (cfg->rank_by_margin || cfg->compensate || cfg->fit_scores))
        printf("refined:%s%s%s\n", cfg->rank_by_margin ? " of the units the rule names, those least important to the "
                                                       "module's margin go;" : "",
               cfg->compensate ? " removed units' mean states folded into the biases that read them;" : "",
               cfg->fit_scores ? " scores fitted to the origin's margins" : "");
    else if (refined)
        printf("refined: no (--text-rule paper)\n");
    if (!rolled)
        printf("units: the mean over the steps of the units a step keeps (a step with fewer than %d positives or "
               "negatives takes the rolled set)\n", cfg->step_min);
    printf("units: recurrent units kept; params, MACs: the module's sliced model against the origin's %lld "
           "parameters and %.2fM multiply-accumulates per text\n", (long long)in0.params, in0.origin_macs / 1e6);
    if (J) {
        json_str(J, "model", path);
        json_int(J, "modules", *nmods);
        json_num(J, "seconds", secs);
        json_str(J, "data", spec);
        json_int(J, "training_samples", (long long)train->count);
        json_str(J, "method", !rolled ? "hidden-units-unrolled" : "hidden-units");
        json_num(J, "max_remove", ts_decompose_text_max_remove(cfg, train->task));
        if (refined) {
            json_int(J, "rank_by_margin", cfg->rank_by_margin);
            json_int(J, "compensate", cfg->compensate);
            json_int(J, "fit_scores", cfg->fit_scores);
        }
        json_int(J, "origin_params", (long long)in0.params);
        json_int(J, "origin_macs", (long long)in0.origin_macs);
        json_array(J, "table");
    }
    printf("%-5s %-16s %5s %5s %8s %8s %7s %7s %7s %7s %7s\n", "label", "name", "pos", "neg", "own-acc", "rest-acc",
           "units", "params", "MACs", "JI", "secs");
    ts_decompose_config shown; /* the image table's row writer, with what applies to text */
    ts_decompose_config_default(&shown);
    for (int i = 0; i < *nmods; i++) {
        ts_module_info in;
        ts_module_info_get((*mods)[i], &in);
        double own = 0, rest = 0;
        if (test && (st = ts_module_evaluate_text(ctx, (*mods)[i], test, 256, &own, &rest))) return st;
        char o[16] = "-", r[16] = "-";
        if (test) {
            snprintf(o, sizeof o, "%.2f%%", 100 * own);
            snprintf(r, sizeof r, "%.2f%%", 100 * rest);
        }
        if (J) json_decompose_row(J, &shown, &in, test != NULL, own, rest);
        printf("%-5d %-16.16s %5d %5d %8s %8s %6.2f%% %6.2f%% %6.2f%% %7.4f %7.2f\n", in.class_index, in.class_name,
               in.positives, in.negatives, o, r, percent(in.units_kept, in.units), percent(in.params_kept, in.params),
               percent(in.macs_kept, in.origin_macs), in.jaccard, in.seconds);
    }
    if (J) json_close(J);
    const int labels = tagger ? ts_model_classes(m) / train->max_len : ts_model_classes(m);
    if (!test || *nmods != labels || ncls) return TS_OK;
    ts_eval_report a, b;
    ts_model *cm = NULL;
    if ((st = ts_evaluate_text(ctx, m, test, 256, &a, NULL))) return st;
    if (!(st = ts_compose(ctx, *mods, *nmods, NULL, &cm)) && !(st = ts_evaluate_text(ctx, cm, test, 256, &b, NULL))) {
        printf("original model: %s %.2f%%  top-5 %.2f%%   all modules composed: %s %.2f%%  top-5 %.2f%%\n"
               "the composed model (each module side by side): %.2fx the origin's MACs\n",
               tagger ? "token accuracy" : "top-1", 100 * a.top1, 100 * a.top5, tagger ? "token accuracy" : "top-1",
               100 * b.top1, 100 * b.top5, (double)model_macs(cm) / (double)model_macs(m));
        if (J) {
            json_composed(J, &a, &b, (double)model_macs(cm) / (double)model_macs(m));
            json_close(J);
        }
        ts_eval_report_free(&b);
    }
    ts_eval_report_free(&a);
    ts_model_free(cm);
    return st;
}

static int decompose_main(int argc, char **argv, cli_dist *dist);

/* Under mpirun the ranks share the work (docs/distributed.md); rank 0 prints and
 * writes the modules. */
int cmd_decompose(int argc, char **argv) {
    cli_dist dist;
    int rc = dist_begin("decompose", &dist);
    return rc ? rc : dist_end("decompose", &dist, decompose_main(argc, argv, &dist));
}

static int decompose_main(int argc, char **argv, cli_dist *dist) {
    const int lead = dist->rank == 0; /* the one rank that writes files */
    char *pos[1];
    int npos;
    int rc = cli_parse(&decompose_cmd, argc, argv, pos, &npos, 1);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    json_out *J = cli_json_start(&decompose_cmd);
    const char *outdir = cli_get(&decompose_cmd, "out");
    if (npos != 1 || !outdir) {
        fprintf(stderr, "tessera decompose: expected one MODEL and --out DIR (see tessera decompose --help)\n");
        return EXIT_USAGE;
    }
    ts_decompose_config cfg;
    ts_decompose_config_default(&cfg);
    long positives, seed, batch, step_min, limit;
    double conf, tang, delta, max_remove;
    int *classes = NULL, ncls = 0;
    ts_compose_config cc;
    if (!cli_int(&decompose_cmd, "positives", 1000, 1, 1000000, &positives) ||
        !cli_float(&decompose_cmd, "confidence", 0.9, 0.0, 0.999999, &conf) ||
        !cli_float(&decompose_cmd, "tangling", 1.0, 0.0, 100.0, &tang) ||
        !cli_float(&decompose_cmd, "bln-delta", 1.0, 0.0, 1.0, &delta) ||
        !cli_int(&decompose_cmd, "seed", 0, 0, 0x7fffffffffffffffL, &seed) ||
        !cli_int(&decompose_cmd, "batch", 128, 1, 256, &batch) || !compose_opts_get(&decompose_cmd, &cc) ||
        !cli_float(&decompose_cmd, "max-remove", -1.0, 0.0, 1.0, &max_remove) ||
        !cli_int(&decompose_cmd, "step-min", 10, 1, 1 << 20, &step_min) ||
        !cli_int(&decompose_cmd, "limit", 0, 0, 1L << 40, &limit))
        return EXIT_USAGE;
    if (cli_get(&decompose_cmd, "rolled") && cli_get(&decompose_cmd, "unrolled")) {
        fprintf(stderr, "tessera decompose: --rolled and --unrolled exclude each other\n");
        return EXIT_USAGE;
    }
    const char *method = cli_get(&decompose_cmd, "method");
    long epochs, esamples, val;
    double alpha, lr, maxloss;
    if (method && strcmp(method, "activation") && strcmp(method, "grad") && strcmp(method, "mwt") &&
        strcmp(method, "ga")) {
        fprintf(stderr, "tessera decompose: --method: expected activation, grad, mwt or ga, got '%s'\n", method);
        return EXIT_USAGE;
    }
    double theta;
    if (!cli_float(&decompose_cmd, "theta", 0.9, 0.01, 1.0, &theta)) return EXIT_USAGE;
    cfg.theta = (float)theta;
    if (!cli_float(&decompose_cmd, "alpha", 0.01, 0.0, 100.0, &alpha) ||
        !cli_int(&decompose_cmd, "epochs", 4, 1, 100000, &epochs) ||
        !cli_int(&decompose_cmd, "epoch-samples", 10000, 0, 1000000000L, &esamples) ||
        !cli_int(&decompose_cmd, "val", 2000, 1, 1000000000L, &val) ||
        !cli_float(&decompose_cmd, "lr", 0.05, 1e-9, 10.0, &lr) ||
        !cli_float(&decompose_cmd, "max-loss", 1.0, 0.0, 100.0, &maxloss))
        return EXIT_USAGE;
    long pop, gens, parents, elites, patience, vpc;
    double mutation;
    if (!cli_int(&decompose_cmd, "population", 100, 2, 100000, &pop) ||
        !cli_int(&decompose_cmd, "generations", 200, 0, 1000000, &gens) ||
        !cli_int(&decompose_cmd, "parents", 50, 1, 100000, &parents) ||
        !cli_int(&decompose_cmd, "elites", 20, 0, 99999, &elites) ||
        !cli_float(&decompose_cmd, "mutation", 0.05, 0.0, 1.0, &mutation) ||
        !cli_int(&decompose_cmd, "patience", 20, 1, 1000000, &patience) ||
        !cli_int(&decompose_cmd, "val-per-class", 50, 1, 1000000, &vpc))
        return EXIT_USAGE;
    cfg.ga_population = (int)pop;
    cfg.ga_generations = (int)gens;
    cfg.ga_parents = (int)parents;
    cfg.ga_elites = (int)elites;
    cfg.ga_mutation = (float)mutation;
    cfg.ga_patience = (int)patience;
    cfg.ga_val_per_class = (int)vpc;
    cfg.method = !method || !strcmp(method, "activation") ? TS_DECOMPOSE_ACTIVATION
                 : !strcmp(method, "grad")                 ? TS_DECOMPOSE_GRAD
                 : !strcmp(method, "mwt")                  ? TS_DECOMPOSE_MWT
                                                           : TS_DECOMPOSE_GA;
    cfg.alpha = (float)alpha;
    cfg.epochs = (int)epochs;
    cfg.epoch_samples = esamples;
    cfg.val_count = val;
    cfg.lr = (float)lr;
    cfg.max_loss = (float)maxloss;
    const char *rule = cli_get(&decompose_cmd, "rule"), *text_rule = cli_get(&decompose_cmd, "text-rule");
    if (rule && strcmp(rule, "every") && strcmp(rule, "any")) {
        fprintf(stderr, "tessera decompose: --rule: '%s' is not one of every, any\n", rule);
        return EXIT_USAGE;
    }
    if (text_rule && strcmp(text_rule, "refined") && strcmp(text_rule, "paper")) {
        fprintf(stderr, "tessera decompose: --text-rule: '%s' is not one of refined, paper\n", text_rule);
        return EXIT_USAGE;
    }
    if (text_rule && !strcmp(text_rule, "paper") &&
        (cli_get(&decompose_cmd, "rank-by-margin") || cli_get(&decompose_cmd, "rank-by-use"))) {
        fprintf(stderr, "tessera decompose: --rank-by-margin and --rank-by-use are refinements; --text-rule paper "
                        "has none\n");
        return EXIT_USAGE;
    }
    cfg.rule = rule && !strcmp(rule, "any") ? TS_DECOMPOSE_RULE_ANY : TS_DECOMPOSE_RULE_EVERY;
    cfg.bln_delta = (float)delta;
    if (!parse_class_list(cli_get(&decompose_cmd, "classes"), &classes, &ncls)) {
        fprintf(stderr, "tessera decompose: --classes: expected class indices like 0,3,5\n");
        return EXIT_USAGE;
    }
    /* each class has one output file: a class listed twice would be written twice */
    for (int i = 0; i < ncls; i++)
        for (int j = 0; j < i; j++)
            if (classes[i] == classes[j]) {
                fprintf(stderr, "tessera decompose: --classes: class %d is listed twice\n", classes[i]);
                free(classes);
                return EXIT_USAGE;
            }
    cfg.positives = (int)positives;
    cfg.confidence = (float)conf;
    cfg.tangling = (float)tang;
    cfg.seed = (uint64_t)seed;
    cfg.batch = (int)batch;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) {
        free(classes);
        return EXIT_NOMEM;
    }
    ts_model *m = NULL, *cm = NULL;
    ts_dataset *train = NULL, *test = NULL;
    ts_text_dataset *train_texts = NULL, *test_texts = NULL;
    ts_module **mods = NULL;
    int nmods = 0;
    int made_dir = 0, saved = 0, placed = 0; /* what this run wrote, for module_out_remove */
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&decompose_cmd, ctx)) || (rc = dist_setup(&decompose_cmd, ctx, dist, 1))) goto done;
    cli_setup_files(&decompose_cmd, ctx);
    if ((st = cli_load_model(ctx, pos[0], 0, &m))) goto fail;
    const char *spec = cli_get(&decompose_cmd, "data");
    if (!spec) spec = ts_model_get_meta(m, "data");
    if (!spec) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", pos[0]);
        goto fail;
    }
    const char *ddir = cli_data_dir(&decompose_cmd, m);
    int eval = !cli_get(&decompose_cmd, "no-eval");
    const int text = cli_is_text_model(m);
    if (text && dist->size > 1) {
        st = ts_ctx_set_error(ctx, TS_EUNSUPPORTED, "%s: a text model is decomposed on one process; run it without "
                              "mpirun", pos[0]);
        goto fail;
    }
    if (text && cfg.method != TS_DECOMPOSE_ACTIVATION) {
        st = ts_ctx_set_error(ctx, TS_EUNSUPPORTED,
                              "%s: --method %s: a text model is decomposed by hidden unit (the default method)", pos[0],
                              method);
        goto fail;
    }
    /* the test split before anything is written: a missing or bad one costs no output */
    if (text) {
        if ((st = cli_text_load_for_model(ctx, m, pos[0], spec, TS_SPLIT_TRAIN, ddir, limit, &train_texts)) ||
            (eval && (st = cli_text_load_for_model(ctx, m, pos[0], spec, TS_SPLIT_TEST, ddir, limit, &test_texts))))
            goto fail;
    } else {
        if ((st = cli_load_dataset(ctx, spec, TS_SPLIT_TRAIN, ddir, limit, &train))) goto fail;
        if (eval && (st = cli_load_dataset(ctx, spec, TS_SPLIT_TEST, ddir, limit, &test))) goto fail;
    }
    if (!lead) {
        /* the other ranks compute and stay silent */
    } else if (mkdir(outdir, 0777) == 0) {
        made_dir = 1;
    } else if (errno != EEXIST) {
        st = ts_ctx_set_error(ctx, TS_EIO, "%s: cannot create the output folder: %s", outdir, strerror(errno));
        goto fail;
    }
    if (text) {
        ts_decompose_text_config tcfg;
        ts_decompose_text_config_default(&tcfg);
        if (cli_get(&decompose_cmd, "positives")) tcfg.positives = cfg.positives;
        tcfg.confidence = cfg.confidence;
        tcfg.tangling = cfg.tangling;
        tcfg.max_remove = (float)max_remove;
        tcfg.seed = cfg.seed;
        tcfg.batch = cfg.batch;
        if (cli_get(&decompose_cmd, "rolled")) tcfg.rolled = 1;
        if (cli_get(&decompose_cmd, "unrolled")) tcfg.rolled = 0;
        tcfg.step_min = (int)step_min;
        if (cli_get(&decompose_cmd, "rank-by-margin")) tcfg.rank_by_margin = 1;
        if (cli_get(&decompose_cmd, "rank-by-use")) tcfg.rank_by_use = 1;
        if (text_rule && !strcmp(text_rule, "paper")) tcfg.rank_by_margin = tcfg.compensate = tcfg.fit_scores = tcfg.rank_by_use = 0;
        if ((st = decompose_texts(ctx, m, pos[0], spec, train_texts, test_texts, outdir, &tcfg, classes, ncls, J, &mods,
                                  &nmods, &saved)))
            goto fail;
        goto place;
    }
    ga_live live = {0};
    progress_start(&live.pr);
    int quiet = cli_get(&decompose_cmd, "quiet") != NULL || !lead;
    if (!quiet && cfg.method == TS_DECOMPOSE_GA) {
        cfg.ga_generation = ga_generation;
        cfg.ga_generation_user = &live;
    }
    double t0 = cli_now();
    st = ts_decompose(ctx, m, train, &cfg, classes, ncls,
                      quiet ? NULL : cfg.method == TS_DECOMPOSE_GA ? ga_progress : progress_cb,
                      cfg.method == TS_DECOMPOSE_GA ? (void *)&live : (void *)&live.pr, &mods, &nmods);
    if (!quiet) progress_end(&live.pr);
    if (st) goto fail;
    double secs = cli_now() - t0;
    /* provenance that still resolves from another folder: absolute paths */
    char origin[PATH_MAX], data_abs[PATH_MAX], found[PATH_MAX];
    if (!realpath(pos[0], origin)) snprintf(origin, sizeof origin, "%s", pos[0]);
    /* what was loaded: a known name becomes the folder it was found in (--data-dir,
     * $TESSERA_DATA or a standard place), so the module does not depend on them */
    if ((st = ts_dataset_locate(ctx, spec, TS_SPLIT_TRAIN, ddir, found, sizeof found))) goto fail;
    if (!realpath(found, data_abs)) snprintf(data_abs, sizeof data_abs, "%s", found);
    for (; lead && saved < nmods; saved++) {
        char path[4096];
        if (!module_out_path(path, sizeof path, outdir, mods[saved], PENDING)) {
            st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: output path too long", outdir);
            goto fail;
        }
        if ((st = ts_module_set_origin(ctx, mods[saved], origin)) ||
            (st = ts_module_set_dataset(ctx, mods[saved], data_abs)) || (st = ts_module_save(ctx, mods[saved], path)))
            goto fail;
    }
    printf("decomposed %s into %d modules in %.2fs (data: %s, %lld training samples)\n", pos[0], nmods, secs, data_abs,
           (long long)train->count);
    if (J) {
        json_str(J, "model", pos[0]);
        json_int(J, "modules", nmods);
        json_num(J, "seconds", secs);
        json_str(J, "data", data_abs);
        json_int(J, "training_samples", (long long)train->count);
        if (nmods > 0) json_decompose_head(J, &cfg, mods, nmods);
        json_array(J, "table");
    }
    if (nmods > 0 && cfg.method == TS_DECOMPOSE_GRAD) {
        ts_module_info in;
        ts_module_info_get(mods[0], &in);
        printf("method grad: masks of epoch %d of %d chosen on %lld validation samples carved from the training data: "
               "modules composed %.2f%% top-1 there, the model %.2f%%\n",
               in.selected_epoch, cfg.epochs, (long long)cfg.val_count, 100 * in.val_accuracy,
               100 * in.origin_val_accuracy);
    }
    if (nmods > 0 && cfg.method == TS_DECOMPOSE_GA) print_ga_summary(&cfg, mods, nmods);
    if (cfg.method == TS_DECOMPOSE_ACTIVATION) print_decompose_rule(&cfg);
    if (cfg.method == TS_DECOMPOSE_MWT)
        printf("method mwt: a module keeps the kernels its generators open (mask > 0) on at least %g of its class's "
               "training samples (less, by 0.05 steps, in a layer that would keep none); kernels whose output is added "
               "to a residual path are kept\n", (double)cfg.theta);
    ts_module_info in0;
    ts_module_info_get(mods[0], &in0);
    printf("units: ReLU output units kept; params, MACs: what the module needs, from its masks, as a share of the "
           "origin's %lld parameters and %.2fM multiply-accumulates per sample (a row or kernel whose units are all "
           "removed costs nothing); bln: units BLN removed; JI: kept / all conv and dense weights\n",
           (long long)in0.params, in0.origin_macs / 1e6);
    if (cfg.method == TS_DECOMPOSE_ACTIVATION) /* the baseline is measured on the inputs that method draws */
        printf("the origin itself needs %.2f%% of its parameters and %.2f%% of its MACs on the inputs drawn here "
               "(units that none of them activates are dead in the origin too)\n",
               percent(in0.origin_params_live, in0.params), percent(in0.origin_macs_live, in0.origin_macs));
    printf("%-5s %-16s %5s %5s %8s %8s %7s %7s %7s %7s %6s %7s %7s\n", "class", "name", "pos", "neg", "own-acc",
           "rest-acc", "kernels", "units", "params", "MACs", "bln", "JI", "secs");
    double krr = 0;
    for (int i = 0; i < nmods; i++) {
        ts_module_info in;
        ts_module_info_get(mods[i], &in);
        double own = 0, rest = 0;
        if (eval && (st = ts_module_evaluate(ctx, mods[i], test, 256, &own, &rest))) goto fail;
        char o[16] = "-", r[16] = "-";
        if (eval) {
            snprintf(o, sizeof o, "%.2f%%", 100 * own);
            snprintf(r, sizeof r, "%.2f%%", 100 * rest);
        }
        if (J) json_decompose_row(J, &cfg, &in, eval, own, rest);
        const double kr = in.kernels ? (double)in.kernels_kept / (double)in.kernels : 1.0;
        krr += kr / nmods;
        printf("%-5d %-16.16s %5d %5d %8s %8s %6.2f%% %6.2f%% %6.2f%% %6.2f%% %6lld %7.4f %7.2f\n", in.class_index,
               in.class_name, in.positives, in.negatives, o, r, 100 * kr, percent(in.units_kept, in.units),
               percent(in.params_kept, in.params), percent(in.macs_kept, in.origin_macs), (long long)in.bln_removed,
               in.jaccard, in.seconds);
    }
    printf("mean kernel retention (KRR): %.2f%%\n", 100 * krr);
    if (J) {
        json_close(J);
        json_num(J, "krr", krr);
    }
    if (cfg.method == TS_DECOMPOSE_MWT) {
        double coh = 0, coup = 0;
        printf("cohesion (mean Jaccard of the open kernels of the class's sample pairs) / coupling (mean Jaccard of "
               "the module's kernels with the others'):");
        for (int i = 0; i < nmods; i++) {
            ts_module_info in;
            ts_module_info_get(mods[i], &in);
            printf(" %d: %.3f/%.3f", in.class_index, in.cohesion, in.coupling);
            coh += in.cohesion / nmods;
            coup += in.coupling / nmods;
        }
        printf("\nmean cohesion %.4f, mean coupling %.4f\n", coh, coup);
        if (J) {
            json_num(J, "mean_cohesion", coh);
            json_num(J, "mean_coupling", coup);
        }
    }
    if (eval && nmods == ts_model_classes(m) && !ncls) {
        ts_eval_report a, b;
        if ((st = ts_evaluate(ctx, m, test, 256, &a))) goto fail;
        if ((st = ts_compose(ctx, mods, nmods, &cc, &cm)) || (st = ts_evaluate(ctx, cm, test, 256, &b))) {
            ts_eval_report_free(&a);
            goto fail;
        }
        printf("original model: top-1 %.2f%%  top-5 %.2f%%   all modules composed: top-1 %.2f%%  top-5 %.2f%%\n"
               "the composed model, sliced (what every module drops is gone): %.2fx the origin's MACs\n",
               100 * a.top1, 100 * a.top5, 100 * b.top1, 100 * b.top5, (double)model_macs(cm) / (double)model_macs(m));
        if (J) {
            json_composed(J, &a, &b, (double)model_macs(cm) / (double)model_macs(m));
            json_close(J);
        }
        ts_eval_report_free(&a);
        ts_eval_report_free(&b);
        /* kernel modules differ from each other far more than activation modules: a
         * shared trunk keeping their union hides what each alone answers */
        if (cfg.method == TS_DECOMPOSE_GA && cc.max_macs < nmods) {
            ts_compose_config own = cc;
            own.max_macs = nmods;
            ts_model_free(cm);
            cm = NULL;
            if ((st = ts_compose(ctx, mods, nmods, &own, &cm)) || (st = ts_evaluate(ctx, cm, test, 256, &b))) goto fail;
            printf("each module its own copy (the modules' exact answers): top-1 %.2f%%  top-5 %.2f%%\n", 100 * b.top1,
                   100 * b.top5);
            if (J) {
                json_object(J, "own_copies");
                json_num(J, "top1", b.top1);
                json_num(J, "top5", b.top5);
                json_close(J);
            }
            ts_eval_report_free(&b);
        }
    }
place:
    if (lead && (st = module_out_place(ctx, outdir, pos[0], mods, saved, &placed))) goto fail;
    printf("modules written to %s/\n", outdir);
    for (int i = 0; lead && i < nmods; i++) warn_no_positives(&cfg, mods[i]); /* about modules that were written */
    if (J) json_str(J, "written_to", outdir);
    rc = EXIT_OK;
    goto done;
fail:
    module_out_remove(outdir, made_dir, mods, saved, placed);
    rc = cli_fail("decompose", ctx, st);
done:
    free(classes);
    ts_modules_free(mods, nmods);
    ts_dataset_free(train);
    ts_dataset_free(test);
    ts_text_dataset_free(train_texts);
    ts_text_dataset_free(test_texts);
    ts_model_free(m);
    ts_model_free(cm);
    ts_ctx_free(ctx);
    return rc;
}
