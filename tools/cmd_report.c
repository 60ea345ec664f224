/* tessera report: one self-contained HTML file (inline CSS and SVG, images as data:
 * URIs, no script, nothing fetched) about a model: its training curves from a --log
 * folder, its confusion matrix and per-class figures, its most confident mistakes,
 * saliency maps, and its modules or patch when there are. */
#define _XOPEN_SOURCE 700 /* mkstemp, fdopen, fsync */
#include "cli_modules.h"
#include "png_write.h"
#include "report_svg.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static cli_opt report_opts[] = {
    {"out", "FILE", "the report (.html, required)", NULL},
    {"data", "NAME|PATH", "test data (default: the model's; a composed model's: its modules')", NULL},
    {"data-dir", "DIR", "where known dataset names are looked up first (also $TESSERA_DATA)", NULL},
    {"limit", "N", "use the first N test samples only (default: all)", NULL},
    {"modules", "DIR|A.tsm,B.tsm", "modules to map: every .tsm of a folder, or files separated by commas", NULL},
    {"worst", "N", "the N most confidently misclassified test images (default 12)", NULL},
    {"saliency", "N", "saliency maps of the first N test images (default 4; 0: none)", NULL},
    {"batch", "N", "inference batch (default 256)", NULL},
    {"force", NULL, "replace the output even when it is write-protected", NULL},
    {"threads", "N", "threads (default: all cores)", NULL},
    {"backend", "dnnl|ref", "kernels: oneDNN (default) or the plain-C reference", NULL},
};
static cli_cmd report_cmd = {
    "report", "[RUN_DIR] MODEL --out FILE [--data NAME|PATH] [--modules DIR|FILES] [options]",
    "Writes one self-contained HTML file (inline CSS and SVG, images as data: URIs, no script,\n"
    "nothing fetched) about a model (.tsr or .onnx): training and validation loss and accuracy\n"
    "and the learning rate from RUN_DIR/metrics.csv (tessera train --log RUN_DIR), the confusion\n"
    "matrix as a heat map, per-class precision, recall and F1, the test images misclassified\n"
    "with the highest confidence, and saliency maps (guided backpropagation beside the plain\n"
    "gradient) of the first test images. With --modules: which kernels each module keeps per\n"
    "layer, their sizes, and the modules composed against the model on their classes. For a\n"
    "patched model (tessera patch): the patched class before and after.",
    report_opts, sizeof report_opts / sizeof report_opts[0]};

static const char *const CSS =
    "body{font-family:sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222;background:#fff}"
    "h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}"
    ".meta{color:#555;font-size:14px}.figure{width:100%;max-width:760px;height:auto;display:block;margin:8px 0}"
    ".pair{display:flex;flex-wrap:wrap;gap:12px}.pair .figure{max-width:540px;flex:1 1 420px}"
    "table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{padding:3px 10px;text-align:right;"
    "border-bottom:1px solid #e4e4e4}th{background:#f2f2f2}td.name,th.name{text-align:left}"
    ".f1bar{display:inline-block;height:9px;background:#4a7fb5;vertical-align:middle;margin-left:6px}"
    ".thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumb{width:112px;font-size:11px;text-align:center;margin:0}"
    ".thumb img,.sal img{width:112px;height:112px;image-rendering:pixelated;border:1px solid #bbb;display:block}"
    ".sal{display:flex;gap:8px;align-items:flex-start;margin:8px 0}.sal figure{margin:0;font-size:11px;"
    "text-align:center;width:150px}.sal img{margin:0 auto}.note{color:#666;font-size:13px}";

/* ---- the training log */

typedef struct curve_data {
    int n;
    double *step, *loss, *acc, *lr;         /* step rows */
    int ne;
    double *estep, *eloss, *eacc, *vloss, *vacc, *elr; /* epoch rows */
} curve_data;

static void curve_free(curve_data *c) {
    double *all[] = {c->step, c->loss, c->acc, c->lr, c->estep, c->eloss, c->eacc, c->vloss, c->vacc, c->elr};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* Cell `col` of a CSV line as a number (NaN when empty or absent). */
static double csv_cell(const char *line, int col) {
    for (int i = 0; i < col && line; i++) {
        line = strchr(line, ',');
        if (line) line++;
    }
    if (!line || *line == ',' || *line == '\n' || !*line) return NAN;
    char *end;
    const double v = strtod(line, &end);
    return end == line ? NAN : v;
}

/* Column index of name in the header line, -1 when absent. */
static int csv_column(const char *header, const char *name) {
    const size_t n = strlen(name);
    int col = 0;
    for (const char *p = header; p; col++) {
        if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == '\n' || p[n] == '\r' || !p[n])) return col;
        p = strchr(p, ',');
        if (p) p++;
    }
    return -1;
}

static int push(double **a, int n, double v) {
    if ((n & (n - 1)) == 0) { /* grow at powers of two */
        double *p = realloc(*a, sizeof *p * (size_t)(n ? 2 * n : 1));
        if (!p) return 0;
        *a = p;
    }
    (*a)[n] = v;
    return 1;
}

static void scale(double *v, int n, double k) {
    for (int i = 0; i < n; i++) v[i] *= k;
}

static ts_status read_metrics(ts_ctx *ctx, const char *dir, curve_data *c) {
    char path[4096], line[1024], header[1024];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return ts_ctx_set_error(ctx, TS_EIO, "%s: cannot open (RUN_DIR is tessera train --log's folder)", path);
    ts_status st = TS_OK;
    enum { KIND, STEP, LOSS, ACC, LR, VLOSS, VACC, NCOL };
    static const char *const names[NCOL] = {"kind", "step", "loss", "accuracy", "lr", "val_loss", "val_accuracy"};
    int col[NCOL];
    if (!fgets(header, sizeof header, f)) st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: empty", path);
    for (int i = 0; !st && i < NCOL; i++)
        if ((col[i] = csv_column(header, names[i])) < 0)
            st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: line 1: no column '%s' (expected train --log's header)", path,
                                  names[i]);
    for (int ln = 2; !st && fgets(line, sizeof line, f); ln++) {
        const int epoch = !strncmp(line, "epoch,", 6);
        if (!strchr(line, '\n') && !feof(f))
            st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: line %d: longer than %d bytes", path, ln, (int)sizeof line - 2);
        else if (!epoch && strncmp(line, "step,", 5))
            st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: line %d: kind is not step or epoch", path, ln);
        else if (epoch) {
            int ok = push(&c->estep, c->ne, csv_cell(line, col[STEP])) && push(&c->eloss, c->ne, csv_cell(line, col[LOSS])) &&
                     push(&c->eacc, c->ne, csv_cell(line, col[ACC])) && push(&c->vloss, c->ne, csv_cell(line, col[VLOSS])) &&
                     push(&c->vacc, c->ne, csv_cell(line, col[VACC])) && push(&c->elr, c->ne, csv_cell(line, col[LR]));
            if (!ok) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
            c->ne++;
        } else {
            int ok = push(&c->step, c->n, csv_cell(line, col[STEP])) && push(&c->loss, c->n, csv_cell(line, col[LOSS])) &&
                     push(&c->acc, c->n, csv_cell(line, col[ACC])) && push(&c->lr, c->n, csv_cell(line, col[LR]));
            if (!ok) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
            c->n++;
        }
    }
    fclose(f);
    scale(c->acc, c->n, 100); /* fractions in the log, percentages on the chart */
    scale(c->eacc, c->ne, 100);
    scale(c->vacc, c->ne, 100);
    if (!st && c->n + c->ne == 0) st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: no step or epoch rows", path);
    return st;
}


static void section_curves(FILE *f, const char *dir, const curve_data *c) {
    fputs("<section id=\"curves\"><h2>Training</h2>\n<p class=\"meta\">From ", f);
    html_text(f, dir);
    fputs("/metrics.csv: each step row is the running mean over its epoch so far; epoch rows give the whole epoch "
          "and the validation figures.</p>\n<div class=\"pair\">\n",
          f);
    const svg_series loss[] = {{"training (steps)", "#9ecae1", c->step, c->loss, c->n, 0},
                               {"training (epochs)", "#2171b5", c->estep, c->eloss, c->ne, 1},
                               {"validation", "#e6550d", c->estep, c->vloss, c->ne, 1}};
    const svg_series acc[] = {{"training (steps)", "#9ecae1", c->step, c->acc, c->n, 0},
                              {"training (epochs)", "#2171b5", c->estep, c->eacc, c->ne, 1},
                              {"validation", "#e6550d", c->estep, c->vacc, c->ne, 1}};
    svg_line_chart(f, "loss-curve", "Loss", "optimizer step", "cross-entropy", loss, 3);
    svg_line_chart(f, "accuracy-curve", "Accuracy", "optimizer step", "top-1 (%)", acc, 3);
    fputs("</div></section>\n<section id=\"lr\"><h2>Learning rate</h2>\n", f);
    const svg_series lr[] = {c->n ? (svg_series){"learning rate", "#31a354", c->step, c->lr, c->n, 0}
                                  : (svg_series){"learning rate", "#31a354", c->estep, c->elr, c->ne, 1}};
    svg_line_chart(f, "lr-curve", "Learning-rate schedule", "optimizer step", "learning rate", lr, 1);
    fputs("</section>\n", f);
}

/* ---- predictions */

typedef struct preds {
    int64_t n;
    int k;
    int32_t *pred;
    float *conf; /* probability of the prediction (softmax of logits, or the model's own) */
} preds;

/* x (n, C, H, W) of images [first, first + n) of ds, preprocessed as m's inputs. */
static ts_status batch_inputs(ts_ctx *ctx, const ts_model *m, const ts_dataset *ds, int64_t first, int n, float *x) {
    ts_preprocess pp;
    ts_status st = ts_model_get_preprocess(ctx, m, &pp);
    if (st) return st;
    const size_t img = (size_t)ds->channels * ds->height * ds->width;
    ts_preprocess_images(&pp, ds->images + (size_t)first * img, n, ds->channels, ds->height, ds->width, x);
    return TS_OK;
}

/* What the model's outputs are: logits (0), probabilities (1: a final softmax, or a
 * patched model's softmax with one entry replaced) or log-probabilities (2). */
static int output_kind(const ts_model *m) {
    ts_layer_info li;
    if (ts_patch_target(m) >= 0) return 1;
    if (ts_model_layer(m, ts_model_layer_count(m) - 1, &li)) return 0;
    return !strcmp(li.kind, "softmax") ? 1 : !strcmp(li.kind, "logsoftmax") ? 2 : 0;
}

static ts_status predict_all(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, preds *p) {
    const int k = ts_model_classes(m), kind = output_kind(m);
    const size_t img = (size_t)ds->channels * ds->height * ds->width;
    p->n = ds->count;
    p->k = k;
    p->pred = malloc(sizeof *p->pred * (size_t)(ds->count ? ds->count : 1));
    p->conf = malloc(sizeof *p->conf * (size_t)(ds->count ? ds->count : 1));
    float *x = malloc(sizeof *x * img * (size_t)batch), *lg = malloc(sizeof *lg * (size_t)k * (size_t)batch);
    ts_status st = (!p->pred || !p->conf || !x || !lg) ? ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory") : TS_OK;
    for (int64_t s = 0; !st && s < ds->count; s += batch) {
        const int b = ds->count - s < batch ? (int)(ds->count - s) : batch;
        if ((st = batch_inputs(ctx, m, ds, s, b, x)) || (st = ts_model_predict(ctx, m, x, b, lg))) break;
        for (int i = 0; i < b; i++) {
            const float *r = lg + (size_t)i * k;
            const int a = ts_argmax(r, k);
            double z = 0;
            for (int j = 0; j < k; j++) z += exp((double)r[j] - r[a]);
            p->pred[s + i] = a;
            p->conf[s + i] = kind == 1 ? r[a] : kind == 2 ? (float)exp(r[a]) : (float)(1.0 / z);
        }
    }
    free(x);
    free(lg);
    return st;
}

/* Channels of a PNG of ds's images: RGB for 3, else grayscale (the first channel). */
static int png_channels(const ts_dataset *ds) { return ds->channels == 3 ? 3 : 1; }

/* The image of sample i as PNG pixels (H, W, png_channels). */
static void image_pixels(const ts_dataset *ds, int64_t i, uint8_t *px) {
    const int C = png_channels(ds), plane = ds->height * ds->width;
    const uint8_t *src = ds->images + (size_t)i * (size_t)ds->channels * plane;
    for (int p = 0; p < plane; p++)
        for (int c = 0; c < C; c++) px[(size_t)p * C + c] = src[(size_t)c * plane + p];
}

static void img_tag(FILE *f, const ts_dataset *ds, const uint8_t *px, int channels, const char *alt) {
    fputs("<img alt=\"", f);
    html_text(f, alt);
    fputs("\" src=\"", f);
    png_write_data_uri(f, px, ds->width, ds->height, channels);
    fputs("\">", f);
}

/* ---- sections */

static void section_summary(FILE *f, const char *model, const char *data, const ts_dataset *ds,
                            const ts_eval_report *ev, const ts_model *m) {
    fputs("<h1>tessera report: ", f);
    html_text(f, model);
    fputs("</h1>\n<section id=\"summary\"><p class=\"meta\">", f);
    char b[64];
    fprintf(f, "%d classes, input %dx%dx%d, %lld parameters. Test data: ", ts_model_classes(m), ds->channels,
            ds->height, ds->width, (long long)ts_model_param_count(m));
    html_text(f, data);
    fprintf(f, " (%lld images).</p>\n<table><tr><th>top-1</th><th>top-5</th><th>loss</th></tr><tr><td>%.2f%%</td>"
               "<td>%.2f%%</td><td>%s</td></tr></table></section>\n",
            (long long)ev->count, 100 * ev->top1, 100 * ev->top5, cli_num(b, sizeof b, ev->loss, 4));
}

static void section_confusion(FILE *f, const ts_eval_report *ev, const char *const *names) {
    fputs("<section id=\"confusion\"><h2>Confusion matrix</h2>\n", f);
    svg_confusion(f, "confusion-matrix", ev->confusion, ev->classes, names);
    fputs("</section>\n<section id=\"per-class\"><h2>Per class</h2>\n<table id=\"per-class-table\"><tr><th>id</th>"
          "<th class=\"name\">class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>\n",
          f);
    const int k = ev->classes;
    for (int c = 0; c < k; c++) {
        int64_t support = 0;
        for (int j = 0; j < k; j++) support += ev->confusion[(size_t)c * k + j];
        const double p = ts_eval_precision(ev, c), r = ts_eval_recall(ev, c), f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
        fprintf(f, "<tr><td>%d</td><td class=\"name\">", c);
        html_text(f, names[c]);
        fprintf(f, "</td><td>%.2f%%</td><td>%.2f%%</td><td>%.2f%%<span class=\"f1bar\" style=\"width:%.0fpx\"></span>"
                   "</td><td>%lld</td></tr>\n",
                100 * p, 100 * r, 100 * f1, 80 * f1, (long long)support);
    }
    fputs("</table></section>\n", f);
}

static int by_confidence(const void *a, const void *b, void *conf) {
    const float ca = ((const float *)conf)[*(const int64_t *)a], cb = ((const float *)conf)[*(const int64_t *)b];
    return ca < cb ? 1 : ca > cb ? -1 : (*(const int64_t *)a > *(const int64_t *)b) - (*(const int64_t *)a < *(const int64_t *)b);
}

/* The `want` wrong predictions with the highest confidence, by insertion (want is small). */
static int worst_of(const ts_dataset *ds, const preds *p, int want, int64_t *idx) {
    int n = 0;
    for (int64_t i = 0; i < p->n; i++) {
        if (p->pred[i] == ds->labels[i]) continue;
        if (n == want && by_confidence(&i, &idx[n - 1], p->conf) >= 0) continue;
        int j = n < want ? n++ : n - 1;
        while (j > 0 && by_confidence(&i, &idx[j - 1], p->conf) < 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    return n;
}

static void section_worst(FILE *f, const ts_dataset *ds, const preds *p, int want, const char *const *names,
                          uint8_t *px) {
    fputs("<section id=\"misclassified\"><h2>Most confident mistakes</h2>\n", f);
    int64_t *idx = malloc(sizeof *idx * (size_t)(want > 0 ? want : 1));
    const int n = idx ? worst_of(ds, p, want, idx) : 0;
    if (!n) fputs("<p class=\"note\">No misclassified test image.</p>\n", f);
    fputs("<div class=\"thumbs\">\n", f);
    for (int i = 0; i < n; i++) {
        const int64_t s = idx[i];
        char alt[64];
        snprintf(alt, sizeof alt, "test image %lld", (long long)s);
        fputs("<figure class=\"thumb\">", f);
        image_pixels(ds, s, px);
        img_tag(f, ds, px, png_channels(ds), alt);
        fprintf(f, "<figcaption>#%lld<br>true: ", (long long)s);
        html_text(f, names[ds->labels[s]]);
        fputs("<br>predicted: ", f);
        html_text(f, names[p->pred[s]]);
        fprintf(f, "<br>%.1f%% sure</figcaption></figure>\n", 100 * p->conf[s]);
    }
    fputs("</div></section>\n", f);
    free(idx);
}

/* |g| over channels per pixel, scaled by its 99th percentile, as a black-red-yellow-white
 * heat colour (H, W, 3). */
static void heat_pixels(const float *g, int C, int plane, uint8_t *px, float *tmp) {
    for (int p = 0; p < plane; p++) {
        float v = 0;
        for (int c = 0; c < C; c++) v = fmaxf(v, fabsf(g[(size_t)c * plane + p]));
        tmp[p] = v;
    }
    float *sorted = tmp + plane;
    memcpy(sorted, tmp, sizeof *tmp * (size_t)plane);
    for (int i = 1; i < plane; i++) { /* small images: insertion sort */
        const float v = sorted[i];
        int j = i;
        for (; j > 0 && sorted[j - 1] > v; j--) sorted[j] = sorted[j - 1];
        sorted[j] = v;
    }
    const float top = sorted[(int)(0.99 * (plane - 1))] > 0 ? sorted[(int)(0.99 * (plane - 1))] : sorted[plane - 1];
    for (int p = 0; p < plane; p++) {
        const float t = top > 0 ? fminf(tmp[p] / top, 1.0f) : 0.0f;
        px[3 * p] = (uint8_t)lroundf(255 * fminf(1.0f, 3 * t));
        px[3 * p + 1] = (uint8_t)lroundf(255 * fminf(1.0f, fmaxf(0.0f, 3 * t - 1)));
        px[3 * p + 2] = (uint8_t)lroundf(255 * fminf(1.0f, fmaxf(0.0f, 3 * t - 2)));
    }
}

static ts_status section_saliency(ts_ctx *ctx, FILE *f, const ts_model *m, const ts_dataset *ds, const preds *p,
                                  int n, const char *const *names, uint8_t *px) {
    if (n > ds->count) n = (int)ds->count;
    const int C = ds->channels, plane = ds->height * ds->width;
    const size_t img = (size_t)C * plane;
    float *x = malloc(sizeof *x * img * (size_t)n), *gg = malloc(sizeof *gg * img * (size_t)n),
          *gp = malloc(sizeof *gp * img * (size_t)n), *tmp = malloc(sizeof *tmp * 2 * (size_t)plane);
    int *cls = malloc(sizeof *cls * (size_t)n);
    ts_status st = (!x || !gg || !gp || !tmp || !cls) ? ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory") : TS_OK;
    for (int i = 0; !st && i < n; i++) cls[i] = p->pred[i];
    if (!st) st = batch_inputs(ctx, m, ds, 0, n, x);
    if (!st) st = ts_model_saliency(ctx, m, x, n, cls, 1, gg);
    if (!st) st = ts_model_saliency(ctx, m, x, n, cls, 0, gp);
    if (!st) {
        fputs("<section id=\"saliency\"><h2>Saliency</h2>\n<p class=\"meta\">The first test images, the gradient of the "
              "predicted class's logit with respect to each pixel by guided backpropagation (Springenberg et al.: "
              "through each ReLU only positive gradient where its input is positive) and plain; brighter is more "
              "influential (largest magnitude over channels, scaled to its 99th percentile).</p>\n",
              f);
        for (int i = 0; i < n; i++) {
            char alt[64];
            fputs("<div class=\"sal\"><figure>", f);
            image_pixels(ds, i, px);
            snprintf(alt, sizeof alt, "test image %d", i);
            img_tag(f, ds, px, png_channels(ds), alt);
            fprintf(f, "<figcaption>#%d true: ", i);
            html_text(f, names[ds->labels[i]]);
            fputs("<br>predicted: ", f);
            html_text(f, names[cls[i]]);
            fputs("</figcaption></figure><figure>", f);
            heat_pixels(gg + (size_t)i * img, C, plane, px, tmp);
            snprintf(alt, sizeof alt, "guided backpropagation of image %d", i);
            img_tag(f, ds, px, 3, alt);
            fputs("<figcaption>guided backpropagation</figcaption></figure><figure>", f);
            heat_pixels(gp + (size_t)i * img, C, plane, px, tmp);
            snprintf(alt, sizeof alt, "gradient of image %d", i);
            img_tag(f, ds, px, 3, alt);
            fputs("<figcaption>plain gradient</figcaption></figure></div>\n", f);
        }
        fputs("</section>\n", f);
    }
    free(x);
    free(gg);
    free(gp);
    free(tmp);
    free(cls);
    return st;
}

/* --modules: a folder of .tsm files or a comma-separated list. */
static ts_status load_report_modules(ts_ctx *ctx, const char *arg, ts_module ***mods, int *n) {
    struct stat sb;
    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) return load_module_dir(ctx, arg, NULL, mods, n);
    char *copy = strdup(arg), *paths[MAX_MODULE_ARGS];
    if (!copy) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    int k = 0;
    for (char *s = strtok(copy, ","); s && k < MAX_MODULE_ARGS; s = strtok(NULL, ",")) paths[k++] = s;
    ts_status st = k ? load_modules(ctx, paths, k, mods) : ts_ctx_set_error(ctx, TS_EINVAL, "--modules: no file");
    if (!st) *n = k;
    free(copy);
    return st;
}

static ts_status section_modules(ts_ctx *ctx, FILE *f, ts_model *m, const char *model, ts_module **mods, int k,
                                 const char *ddir, long limit) {
    /* the map: every module must mask the same layers (modules of one model) */
    ts_module_mask_info mi;
    const int nm = ts_module_mask_count(mods[0]);
    int total = 0, *widths = calloc((size_t)(nm ? nm : 1), sizeof *widths);
    const char **blocks = calloc((size_t)(nm ? nm : 1), sizeof *blocks), **rows = calloc((size_t)k, sizeof *rows);
    float *values = NULL;
    ts_status st = (!widths || !blocks || !rows) ? ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory") : TS_OK;
    for (int b = 0; !st && b < nm; b++) {
        if ((st = ts_module_mask(ctx, mods[0], b, &mi, NULL))) break;
        blocks[b] = mi.layer;
        widths[b] = mi.channels;
        total += mi.channels;
    }
    if (!st && !(values = malloc(sizeof *values * (size_t)k * (size_t)(total ? total : 1))))
        st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    int same = 1;
    ts_module_info info;
    for (int r = 0; !st && r < k; r++) {
        ts_module_info_get(mods[r], &info);
        rows[r] = info.class_name;
        same = same && ts_module_mask_count(mods[r]) == nm;
        for (int b = 0, at = 0; !st && same && b < nm; at += widths[b++]) {
            if ((st = ts_module_mask(ctx, mods[r], b, &mi, NULL))) break;
            if (mi.channels != widths[b] || strcmp(mi.layer, blocks[b])) same = 0;
            else st = ts_module_mask(ctx, mods[r], b, &mi, values + (size_t)r * total + at);
        }
    }
    if (!st) {
        fputs("<section id=\"modules\"><h2>Modules</h2>\n", f);
        if (same && nm)
            svg_strip_map(f, "module-map", "Kernels each module keeps, per ReLU layer", rows, k, blocks, widths, nm,
                          values, "kernel's units kept");
        else
            fputs("<p class=\"note\">The modules mask different layers (modules of different models, or text "
                  "modules cut physically): no common map.</p>\n",
                  f);
        fputs("<table id=\"module-table\"><tr><th class=\"name\">module</th><th>method</th><th>kernels kept</th>"
              "<th>parameters kept</th><th>MACs kept</th></tr>\n",
              f);
        for (int r = 0; r < k; r++) {
            ts_module_info_get(mods[r], &info);
            fputs("<tr><td class=\"name\">", f);
            html_text(f, info.class_name);
            fprintf(f, "</td><td>%s</td><td>%lld of %lld</td><td>%lld (%.1f%%)</td><td>%.1f%%</td></tr>\n",
                    cli_method_name(info.method), (long long)info.kernels_kept, (long long)info.kernels,
                    (long long)info.params_kept, info.params ? 100.0 * info.params_kept / info.params : 0,
                    info.origin_macs ? 100.0 * info.macs_kept / info.origin_macs : 0);
        }
        fputs("</table>\n", f);
    }
    free(widths);
    free(blocks);
    free(rows);
    free(values);
    if (st) return st;
    /* composed against the model on the modules' classes, when they are the model's */
    ts_model *cm = NULL;
    ts_dataset *ds = NULL;
    double composed = 0, original = -1;
    int *classes = malloc(sizeof *classes * (size_t)k);
    if (!classes) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    st = ts_compose(ctx, mods, k, NULL, &cm);
    const int64_t per = limit > 0 ? (limit + k - 1) / k : 0;
    if (!st) st = ts_composed_dataset(ctx, cm, TS_SPLIT_TEST, ddir, per, &ds);
    if (!st) st = ts_evaluate_classes(ctx, cm, ds, NULL, k, &composed);
    /* the modules are the model's when they name it as their origin (an absolute path) */
    char model_abs[PATH_MAX];
    if (!realpath(model, model_abs)) snprintf(model_abs, sizeof model_abs, "%s", model);
    int mine = 1;
    for (int r = 0; !st && r < k; r++) {
        ts_module_info_get(mods[r], &info);
        classes[r] = info.class_index;
        mine = mine && info.origin_classes == ts_model_classes(m) && (!*info.origin || !strcmp(info.origin, model_abs));
    }
    if (!st && mine) st = ts_evaluate_classes(ctx, m, ds, classes, k, &original);
    if (st) {
        fputs("<p class=\"note\">The modules could not be composed and evaluated: ", f);
        html_text(f, ts_ctx_error(ctx));
        fputs("</p>\n", f);
        ts_ctx_clear_error(ctx);
        st = TS_OK;
    } else {
        const char *groups[1] = {"top-1 on the modules' classes"}, *series[2] = {"composed modules", "the model"};
        const char *colors[2] = {"#31a354", "#3182bd"};
        const double v[2] = {composed, original};
        svg_bars(f, "compose-bars", "Composed modules against the model", groups, 1, series, colors, v,
                 original >= 0 ? 2 : 1);
        fprintf(f, "<p class=\"meta\">%d modules composed: %.2f%% top-1 on %lld test images of their classes", k,
                100 * composed, (long long)ds->count);
        if (original >= 0) fprintf(f, "; the model on the same images and classes: %.2f%%", 100 * original);
        else fputs(" (the modules are not this model's: no comparison)", f);
        fputs(".</p>\n", f);
    }
    fputs("</section>\n", f);
    ts_model_free(cm);
    ts_dataset_free(ds);
    free(classes);
    return st;
}

static ts_status section_patch(ts_ctx *ctx, FILE *f, ts_model *m, const ts_dataset *ds, int batch,
                               const char *const *names) {
    ts_patch_eval w, p;
    ts_status st = ts_patch_evaluate(ctx, m, ds, batch, &w, &p);
    if (st) return st;
    const int t = ts_patch_target(m);
    fputs("<section id=\"patch\"><h2>Patched class: ", f);
    html_text(f, names[t]);
    fputs("</h2>\n", f);
    const char *groups[5] = {"precision", "recall", "F1", "other classes", "top-1"};
    const char *series[2] = {"weak model", "patched"}, *colors[2] = {"#bdbdbd", "#e6550d"};
    const double v[10] = {w.precision, p.precision, w.recall, p.recall, w.f1, p.f1, w.others, p.others, w.top1, p.top1};
    svg_bars(f, "patch-bars", "The patched class before and after", groups, 5, series, colors, v, 2);
    fputs("<table><tr><th class=\"name\"></th><th>weak</th><th>patched</th></tr>\n", f);
    for (int i = 0; i < 5; i++)
        fprintf(f, "<tr><td class=\"name\">%s</td><td>%.2f%%</td><td>%.2f%%</td></tr>\n", groups[i], 100 * v[2 * i],
                100 * v[2 * i + 1]);
    fputs("</table></section>\n", f);
    return TS_OK;
}

/* ---- the command */

typedef struct report_args {
    const char *run_dir, *model, *out, *data, *data_dir;
    long limit, worst, saliency, batch;
} report_args;

static ts_status write_report(ts_ctx *ctx, FILE *f, const report_args *a, ts_model *m, const ts_dataset *ds,
                              ts_module **mods, int nmods) {
    const int k = ts_model_classes(m);
    char **names = calloc((size_t)k, sizeof *names);
    uint8_t *px = malloc((size_t)ds->height * ds->width * 3 + 3);
    curve_data cd = {0};
    preds p = {0};
    ts_eval_report ev = {0};
    ts_status st = (!names || !px) ? ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory") : TS_OK;
    for (int c = 0; !st && c < k; c++) {
        char b[64];
        if (!(names[c] = strdup(cli_class_name(m, c, b, sizeof b)))) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    }
    if (!st && a->run_dir) st = read_metrics(ctx, a->run_dir, &cd);
    if (!st) st = ts_evaluate(ctx, m, ds, (int)a->batch, &ev);
    if (!st) st = predict_all(ctx, m, ds, (int)a->batch, &p);
    if (!st) {
        fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tessera report: ", f);
        html_text(f, a->model);
        fprintf(f, "</title>\n<style>%s</style></head><body>\n", CSS);
        section_summary(f, a->model, a->data, ds, &ev, m);
        if (a->run_dir) section_curves(f, a->run_dir, &cd);
        else fputs("<p class=\"note\">No training log given (tessera report RUN_DIR MODEL ...).</p>\n", f);
        section_confusion(f, &ev, (const char *const *)names);
        section_worst(f, ds, &p, (int)a->worst, (const char *const *)names, px);
    }
    if (!st && a->saliency > 0) st = section_saliency(ctx, f, m, ds, &p, (int)a->saliency, (const char *const *)names, px);
    if (!st && nmods) st = section_modules(ctx, f, m, a->model, mods, nmods, a->data_dir, a->limit);
    if (!st && ts_patch_target(m) >= 0) st = section_patch(ctx, f, m, ds, (int)a->batch, (const char *const *)names);
    if (!st) fprintf(f, "<p class=\"note\">Written by tessera %s report.</p>\n</body></html>\n", TS_VERSION_STRING);
    for (int c = 0; names && c < k; c++) free(names[c]);
    free(names);
    free(px);
    curve_free(&cd);
    free(p.pred);
    free(p.conf);
    ts_eval_report_free(&ev);
    return st;
}

/* Writes the report to a new temporary beside out, then renames it into place. */
static ts_status write_atomically(ts_ctx *ctx, const report_args *a, ts_model *m, const ts_dataset *ds,
                                  ts_module **mods, int nmods) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld.XXXXXX", a->out, (long)getpid()) >= (int)sizeof tmp)
        return ts_ctx_set_error(ctx, TS_EINVAL, "%s: path too long", a->out);
    const int fd = mkstemp(tmp);
    if (fd < 0) return ts_ctx_set_error(ctx, TS_EIO, "%s: cannot create a temporary beside it", a->out);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        remove(tmp);
        return ts_ctx_set_error(ctx, TS_EIO, "%s: cannot write", tmp);
    }
    fchmod(fd, 0644);
    ts_status st = write_report(ctx, f, a, m, ds, mods, nmods);
    if (fflush(f) != 0 || fsync(fd) != 0 || ferror(f)) {
        if (!st) st = ts_ctx_set_error(ctx, TS_EIO, "%s: write failed (disk full?)", tmp);
    }
    fclose(f);
    if (!st) st = ts_file_replace(ctx, tmp, a->out);
    if (st) remove(tmp);
    return st;
}

int cmd_report(int argc, char **argv) {
    char *pos[2];
    int npos;
    int rc = cli_parse(&report_cmd, argc, argv, pos, &npos, 2);
    if (rc) return rc < 0 ? EXIT_OK : rc;
    report_args a = {0};
    a.out = cli_get(&report_cmd, "out");
    if (npos < 1 || !a.out) {
        fprintf(stderr, "tessera report: expected [RUN_DIR] MODEL and --out FILE (see tessera report --help)\n");
        return EXIT_USAGE;
    }
    a.model = pos[npos - 1];
    a.run_dir = npos == 2 ? pos[0] : NULL;
    struct stat sb;
    if (stat(a.model, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "tessera report: %s is a folder; expected the MODEL file last (RUN_DIR first)\n", a.model);
        return EXIT_USAGE;
    }
    if (a.run_dir && (stat(a.run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "tessera report: RUN_DIR %s is not a folder (tessera train --log DIR writes one)\n", a.run_dir);
        return EXIT_USAGE;
    }
    if (!cli_int(&report_cmd, "limit", 0, 0, 1L << 40, &a.limit) || !cli_int(&report_cmd, "worst", 12, 0, 1000, &a.worst) ||
        !cli_int(&report_cmd, "saliency", 4, 0, 64, &a.saliency) || !cli_int(&report_cmd, "batch", 256, 1, 65536, &a.batch))
        return EXIT_USAGE;
    const char *inputs[1] = {a.model};
    if ((rc = cli_refuse_same(&report_cmd, "--out", a.out, inputs, 1))) return rc;
    ts_ctx *ctx = NULL;
    if (ts_ctx_create(&ctx)) return EXIT_NOMEM;
    ts_model *m = NULL;
    ts_dataset *ds = NULL;
    ts_module **mods = NULL;
    int nmods = 0;
    ts_status st = TS_OK;
    if ((rc = cli_setup_ctx(&report_cmd, ctx))) goto done;
    cli_setup_files(&report_cmd, ctx);
    if ((st = ts_file_check_output(ctx, a.out))) goto fail;
    if ((st = cli_load_model(ctx, a.model, CLI_LOAD_ONNX, &m))) goto fail;
    if (ts_model_input_shape(m).ndim != 3) {
        st = ts_ctx_set_error(ctx, TS_EUNSUPPORTED, "%s: the report covers image classifiers (CxHxW input)", a.model);
        goto fail;
    }
    a.data = cli_get(&report_cmd, "data");
    a.data_dir = cli_get(&report_cmd, "data-dir");
    if (!a.data) a.data = ts_model_get_meta(m, "data");
    if (!a.data && ts_model_get_meta(m, "composed.origin.0")) {
        const int k = ts_model_classes(m);
        a.data = "the modules' datasets";
        if ((st = ts_composed_dataset(ctx, m, TS_SPLIT_TEST, cli_get(&report_cmd, "data-dir"),
                                      a.limit > 0 ? (a.limit + k - 1) / k : 0, &ds)))
            goto fail;
    } else if (!a.data) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s records no dataset; pass --data", a.model);
        goto fail;
    } else if ((st = cli_load_dataset(ctx, a.data, TS_SPLIT_TEST, cli_data_dir(&report_cmd, m), a.limit, &ds)))
        goto fail;
    if (ds->count < 1) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: no test samples", a.data);
        goto fail;
    }
    const char *ma = cli_get(&report_cmd, "modules");
    if (ma && (st = load_report_modules(ctx, ma, &mods, &nmods))) goto fail;
    if ((st = write_atomically(ctx, &a, m, ds, mods, nmods))) goto fail;
    printf("report: %s\n", a.out);
    goto done;
fail:
    rc = cli_fail("report", ctx, st);
done:
    ts_modules_free(mods, nmods);
    ts_dataset_free(ds);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return rc;
}
