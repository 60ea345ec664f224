/* The report's figures as inline SVG (report_svg.c): line charts, a heat map with a
 * colour scale, grouped bars, a strip map; each an <svg> with the given id, sized by
 * its viewBox, with a title, labelled axes and a legend where there are series. */
#ifndef TS_REPORT_SVG_H
#define TS_REPORT_SVG_H

#include <stdint.h>
#include <stdio.h>

/* Text with &, <, > and " escaped. */
void html_text(FILE *f, const char *s);

typedef struct svg_series {
    const char *name;
    const char *color;
    const double *x, *y; /* n points; a NaN y leaves a gap */
    int n;
    int dots;            /* draw a dot at each point (few points), not only the line */
} svg_series;

void svg_line_chart(FILE *f, const char *id, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *s, int ns);

/* A k x k matrix of counts (rows: true class, columns: predicted), each cell coloured
 * by its share of its row, the count written in it when k is small enough. */
void svg_confusion(FILE *f, const char *id, const int64_t *counts, int k, const char *const *names);

/* ng groups of ns bars, values (ng, ns) in [0, 1], shown as percentages. */
void svg_bars(FILE *f, const char *id, const char *title, const char *const *groups, int ng,
              const char *const *series, const char *const *colors, const double *values, int ns);

/* Rows of cells in column blocks: block b holds widths[b] cells under label blocks[b];
 * values (rows, sum of widths) in [0, 1] coloured from white to `color`, with a
 * colour scale named `scale`. */
void svg_strip_map(FILE *f, const char *id, const char *title, const char *const *rows, int nrows,
                   const char *const *blocks, const int *widths, int nblocks, const float *values,
                   const char *scale);

#endif
