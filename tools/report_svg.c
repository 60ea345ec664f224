/* Inline SVG figures for tessera report. Coordinates are in the viewBox's units; the
 * page's CSS scales each figure to its column. */
#include "report_svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FONT "font-family=\"sans-serif\""

void html_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A tick step of 1, 2 or 5 times a power of ten giving about `want` ticks over range. */
static double nice_step(double range, int want) {
    if (!(range > 0)) return 1;
    const double raw = range / want, p = pow(10, floor(log10(raw))), r = raw / p;
    return p * (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10);
}

/* A tick label: no trailing zeros, at most 4 significant digits. */
static void tick_text(char *b, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-3)) snprintf(b, n, "%.2g", v);
    else {
        const int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(b, n, "%.*f", dec > 6 ? 6 : dec, v);
    }
}

static void svg_open(FILE *f, const char *id, int w, int h, const char *title) {
    /* never drawn larger than its own size: text stays at the sizes given */
    fprintf(f, "<svg id=\"%s\" class=\"figure\" viewBox=\"0 0 %d %d\" style=\"max-width:%dpx\" role=\"img\">\n",
            id, w, h, w);
    fputs("<title>", f);
    html_text(f, title);
    fprintf(f, "</title>\n<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\" " FONT
               ">",
            w / 2);
    html_text(f, title);
    fputs("</text>\n", f);
}

typedef struct range {
    double lo, hi;
} range;

/* The data's range widened to whole ticks (a flat series gets a unit around it). */
static range axis_range(double lo, double hi, double *step) {
    if (!isfinite(hi - lo)) { /* values near DBL_MAX: no useful axis, but a finite one */
        lo = -1;
        hi = 1;
    }
    if (!(hi > lo)) {
        lo -= 0.5;
        hi += 0.5;
    }
    *step = nice_step(hi - lo, 5);
    return (range){floor(lo / *step) * *step, ceil(hi / *step) * *step};
}

void svg_line_chart(FILE *f, const char *id, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *s, int ns) {
    const int W = 560, H = 350, L = 70, R = 20, T = 56, B = 52, pw = W - L - R, ph = H - T - B;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i]) || !isfinite(s[k].x[i])) continue;
            x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]), y1 = fmax(y1, s[k].y[i]);
        }
    if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    double xs, ys;
    const range xr = axis_range(x0, x1, &xs), yr = axis_range(y0, y1, &ys);
    svg_open(f, id, W, H, title);
#define PX(v) (L + ((v) - xr.lo) / (xr.hi - xr.lo) * pw)
#define PY(v) (T + ph - ((v) - yr.lo) / (yr.hi - yr.lo) * ph)
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#999\"/>\n", L, T, pw, ph);
    char b[32];
    for (int i = 0; i <= 40 && yr.lo + i * ys <= yr.hi + ys / 2; i++) {
        const double v = yr.lo + i * ys;
        tick_text(b, sizeof b, v, ys);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e2e2\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\" " FONT ">%s</text>\n",
                L, L + pw, PY(v), PY(v), L - 6, PY(v) + 4, b);
    }
    for (int i = 0; i <= 40 && xr.lo + i * xs <= xr.hi + xs / 2; i++) {
        const double v = xr.lo + i * xs;
        tick_text(b, sizeof b, v, xs);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#e2e2e2\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\" " FONT ">%s</text>\n",
                PX(v), PX(v), T, T + ph, PX(v), T + ph + 16, b);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\" " FONT ">", L + pw / 2, H - 10);
    html_text(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" " FONT
               ">",
            T + ph / 2);
    html_text(f, ylabel);
    fputs("</text>\n", f);
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<g class=\"series\"><path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" d=\"", s[k].color);
        int pen = 0;
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) {
                pen = 0;
                continue;
            }
            fprintf(f, "%c%.1f %.1f", pen ? 'L' : 'M', PX(s[k].x[i]), PY(s[k].y[i]));
            pen = 1;
        }
        fputs("\"/>", f);
        for (int i = 0; s[k].dots && i < s[k].n; i++)
            if (isfinite(s[k].y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", PX(s[k].x[i]), PY(s[k].y[i]),
                        s[k].color);
        fputs("</g>\n", f);
    }
    /* legend: one row between the title and the plot */
    int lx = L;
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"42\" y2=\"42\" stroke=\"%s\" stroke-width=\"3\"/>", lx, lx + 22,
                s[k].color);
        fprintf(f, "<text x=\"%d\" y=\"46\" font-size=\"12\" " FONT ">", lx + 28);
        html_text(f, s[k].name);
        fputs("</text>\n", f);
        lx += 44 + 7 * (int)strlen(s[k].name);
    }
#undef PX
#undef PY
    fputs("</svg>\n", f);
}

/* White to a deep blue (t in [0, 1]), and whether text on it should be white. */
static void blues(double t, char *b, size_t n, int *dark) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    const int r = (int)lround(247 - t * (247 - 8)), g = (int)lround(251 - t * (251 - 48)),
              bl = (int)lround(255 - t * (255 - 107));
    snprintf(b, n, "#%02x%02x%02x", r, g, bl);
    if (dark) *dark = t > 0.55;
}

/* A vertical colour scale at (x, y), height h, from 0% to 100%, in `gradient`'s colours. */
static void colour_scale(FILE *f, const char *gradient, int x, int y, int h, const char *label) {
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"%d\" fill=\"url(#%s)\" stroke=\"#999\"/>\n", x, y, h,
            gradient);
    for (int i = 0; i <= 4; i++) {
        const double yy = y + h - h * i / 4.0;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>"
                   "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" " FONT ">%d%%</text>\n",
                x + 14, x + 18, yy, yy, x + 21, yy + 4, 25 * i);
    }
    fprintf(f, "<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" " FONT ">", x - 6,
            y + h / 2);
    html_text(f, label);
    fputs("</text>\n", f);
}

static void gradient_def(FILE *f, const char *id, const char *from, const char *to) {
    fprintf(f, "<defs><linearGradient id=\"%s\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\"><stop offset=\"0\" "
               "stop-color=\"%s\"/><stop offset=\"1\" stop-color=\"%s\"/></linearGradient></defs>\n",
            id, from, to);
}

void svg_confusion(FILE *f, const char *id, const int64_t *counts, int k, const char *const *names) {
    const int cell = k <= 12 ? 38 : k <= 30 ? 18 : k <= 60 ? 9 : 5, labels = k <= 60;
    const int L = labels ? 130 : 40, T = 40, side = cell * k, W = L + side + 90, H = T + side + (labels ? 110 : 40);
    svg_open(f, id, W, H, "Confusion matrix (rows: true class, columns: predicted)");
    gradient_def(f, "confusion-scale", "#f7fbff", "#08306b");
    for (int r = 0; r < k; r++) {
        int64_t row = 0;
        for (int c = 0; c < k; c++) row += counts[(size_t)r * k + c];
        for (int c = 0; c < k; c++) {
            const int64_t v = counts[(size_t)r * k + c];
            char col[16];
            int dark;
            blues(row ? (double)v / (double)row : 0, col, sizeof col, &dark);
            fprintf(f, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"#fff\">"
                       "<title>true ",
                    L + c * cell, T + r * cell, cell, cell, col);
            html_text(f, names[r]);
            fputs(", predicted ", f);
            html_text(f, names[c]);
            fprintf(f, ": %lld</title></rect>", (long long)v);
            if (cell >= 30)
                fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\" fill=\"%s\" " FONT
                           ">%lld</text>",
                        L + c * cell + cell / 2, T + r * cell + cell / 2 + 4, dark ? "#fff" : "#222", (long long)v);
        }
        fputc('\n', f);
    }
    for (int i = 0; labels && i < k; i++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"11\" " FONT ">", L - 6,
                T + i * cell + cell / 2 + 4);
        html_text(f, names[i]);
        fprintf(f, "</text><text transform=\"translate(%d %d) rotate(-45)\" text-anchor=\"end\" font-size=\"11\" " FONT
                   ">",
                L + i * cell + cell / 2 + 3, T + side + 8);
        html_text(f, names[i]);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\" " FONT ">predicted</text>\n",
            L + side / 2, H - 6);
    fprintf(f, "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" " FONT
               ">true class</text>\n",
            T + side / 2);
    colour_scale(f, "confusion-scale", L + side + 30, T, side, "share of the true class");
    fputs("</svg>\n", f);
}

void svg_bars(FILE *f, const char *id, const char *title, const char *const *groups, int ng,
              const char *const *series, const char *const *colors, const double *values, int ns) {
    const int L = 60, T = 40, gw = ng > 1 ? 30 * ns + 40 : 280, ph = 220, W = L + gw * ng + 30, H = T + ph + 70;
    svg_open(f, id, W, H, title);
    for (int i = 0; i <= 5; i++) {
        const double y = T + ph - ph * i / 5.0;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e2e2\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\" " FONT ">%d%%</text>\n",
                L, L + gw * ng, y, y, L - 6, y + 4, 20 * i);
    }
    for (int g = 0; g < ng; g++) {
        for (int s = 0; s < ns; s++) {
            double v = values[(size_t)g * ns + s];
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            const int x = L + g * gw + (gw - 30 * ns) / 2 + 30 * s;
            fprintf(f, "<rect class=\"bar\" x=\"%d\" y=\"%.1f\" width=\"26\" height=\"%.1f\" fill=\"%s\"><title>", x,
                    T + ph - v * ph, v * ph, colors[s]);
            html_text(f, series[s]);
            fprintf(f, ": %.2f%%</title></rect><text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\" " FONT
                       ">%.1f</text>",
                    100 * v, x + 13, T + ph - v * ph - 3, 100 * v);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\" " FONT ">", L + g * gw + gw / 2 + 5,
                T + ph + 16);
        html_text(f, groups[g]);
        fputs("</text>\n", f);
    }
    for (int s = 0; s < ns; s++) {
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" "
                   "font-size=\"12\" " FONT ">",
                L + 180 * s, H - 24, colors[s], L + 180 * s + 20, H - 12);
        html_text(f, series[s]);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

void svg_strip_map(FILE *f, const char *id, const char *title, const char *const *rows, int nrows,
                   const char *const *blocks, const int *widths, int nblocks, const float *values,
                   const char *scale) {
    int total = 0;
    for (int b = 0; b < nblocks; b++) total += widths[b];
    const int gap = 12, avail = 760 - 12 * nblocks;
    double cw = total > 0 ? (double)avail / total : 1;
    if (cw > 10) cw = 10;
    const int rh = nrows <= 20 ? 16 : nrows <= 60 ? 8 : 4, L = 130, T = 76;
    const int W = L + (int)ceil(cw * total) + gap * nblocks + 90, H = T + rh * nrows + 40;
    svg_open(f, id, W < 420 ? 420 : W, H < 200 ? 200 : H, title);
    gradient_def(f, "strip-scale", "#ffffff", "#1b7837");
    double x = L;
    for (int b = 0; b < nblocks; b++) {
        const double bw = cw * widths[b];
        fprintf(f, "<text transform=\"translate(%.1f %d) rotate(-30)\" font-size=\"11\" " FONT ">", x, T - 6);
        html_text(f, blocks[b]);
        fprintf(f, " (%d)</text>\n<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n",
                widths[b], x - 0.5, T - 1, bw + 1, rh * nrows + 2);
        x += bw + gap;
    }
    for (int r = 0; r < nrows; r++) {
        if (rh >= 8) {
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"%d\" " FONT ">", L - 8,
                    T + r * rh + rh - 3, rh >= 16 ? 11 : 7);
            html_text(f, rows[r]);
            fputs("</text>", f);
        }
        x = L;
        int col = 0;
        fputs("<g class=\"row\">", f);
        for (int b = 0; b < nblocks; b++) {
            for (int c = 0; c < widths[b]; c++, col++) {
                const float v = values[(size_t)r * total + col];
                const int g = (int)lround(255 - v * (255 - 120)), rr = (int)lround(255 - v * (255 - 27)),
                          bl = (int)lround(255 - v * (255 - 55));
                fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"#%02x%02x%02x\"/>",
                        x + cw * c, T + r * rh, cw + 0.05, rh - (rh >= 8 ? 1 : 0), rr, g, bl);
            }
            x += cw * widths[b] + gap;
        }
        fputs("</g>\n", f);
    }
    colour_scale(f, "strip-scale", (int)x + 34, T, rh * nrows < 100 ? 100 : rh * nrows, scale);
    fputs("</svg>\n", f);
}
