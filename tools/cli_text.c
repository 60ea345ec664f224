/* The commands on text: which --data is text, a sequence model's vocabulary and tags
 * in its metadata, and a split read the way the model was trained (its vocabulary,
 * its class order, its length). */
#include "cli_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const TEXT_NAMES[] = {"clinc_oos", "brown", "tatoeba", "spam-assassin", NULL};

int cli_is_text_data(const char *spec) {
    if (!spec) return 0;
    for (int i = 0; TEXT_NAMES[i]; i++)
        if (!strcmp(spec, TEXT_NAMES[i])) return 1;
    static const char *const suffixes[] = {".json", ".json.gz", ".zip", ".zip.gz", ".txt", ".txt.gz", ".tsv", ".tsv.gz", NULL};
    for (int i = 0; suffixes[i]; i++)
        if (cli_ends_with(spec, suffixes[i])) return 1;
    /* a folder holding one of the readers' files */
    static const char *const files[] = {"data_full.json", "data_full.json.gz", "brown.zip", "eng-fra.txt",
                                        "eng-fra.txt.gz", "file_list.json", NULL};
    struct stat sb;
    if (stat(spec, &sb) || !S_ISDIR(sb.st_mode)) return 0;
    for (int i = 0; files[i]; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", spec, files[i]);
        if (!stat(p, &sb)) return 1;
    }
    return 0;
}

int cli_is_text_model(const ts_model *m) { return m && ts_model_get_meta(m, TEXT_META_VOCAB) != NULL; }

ts_status cli_text_set_meta(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, const char *spec) {
    char *vocab = NULL;
    ts_status st = ts_vocab_save(ctx, ds->vocab, &vocab);
    if (st) return st;
    st = ts_model_set_meta(ctx, m, TEXT_META_VOCAB, vocab);
    ts_text_free(vocab);
    if (!st && ds->target_vocab && !(st = ts_vocab_save(ctx, ds->target_vocab, &vocab))) {
        st = ts_model_set_meta(ctx, m, TEXT_META_TARGET_VOCAB, vocab);
        ts_text_free(vocab);
    }
    char lens[48];
    snprintf(lens, sizeof lens, "%d %d", ds->max_len, ds->target_len);
    if (!st) st = ts_model_set_meta(ctx, m, TEXT_META_LENGTHS, lens);
    if (!st)
        st = ts_model_set_meta(ctx, m, TEXT_META_TASK,
                               ds->task == TS_SEQ_TAG ? "tag" : ds->task == TS_SEQ_TRANSLATE ? "translate" : "classify");
    size_t len = 1;
    for (int i = 0; i < ds->classes; i++) len += strlen(ds->class_names[i]) + 1;
    char *names = st || !ds->classes ? NULL : malloc(len);
    if (!st && ds->classes && !names) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    if (!st && names) {
        size_t off = 0;
        names[0] = '\0';
        for (int i = 0; i < ds->classes; i++) off += (size_t)snprintf(names + off, len - off, i ? "\n%s" : "%s", ds->class_names[i]);
        st = ts_model_set_meta(ctx, m, "classes", names);
    }
    free(names);
    if (!st) st = ts_model_set_meta(ctx, m, "dataset", ds->name);
    if (!st) st = ts_model_set_meta(ctx, m, "data", spec);
    return st;
}

/* The lines of a metadata value as a NULL-terminated array of strings (one block:
 * free(*out)); *n their number. */
static ts_status split_lines(ts_ctx *ctx, const char *text, char ***out, int *n) {
    int lines = 1;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    const size_t len = strlen(text) + 1;
    char **v = malloc(sizeof *v * (size_t)(lines + 1) + len);
    if (!v) return ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    char *s = (char *)(v + lines + 1);
    memcpy(s, text, len);
    int k = 0;
    v[k++] = s;
    for (char *p = s; *p; p++)
        if (*p == '\n') {
            *p = '\0';
            v[k++] = p + 1;
        }
    v[k] = NULL;
    *out = v;
    *n = k;
    return TS_OK;
}

/* The vocabulary stored under key in m (what names it in messages) */
static ts_status meta_vocab(ts_ctx *ctx, const ts_model *m, const char *path, const char *key, const char *what,
                            ts_vocab **out) {
    const char *v = ts_model_get_meta(m, key);
    if (!v) return ts_ctx_set_error(ctx, TS_EINVAL, "%s: not a %s model (no %s in its metadata)", path, what, key);
    ts_status st = ts_vocab_parse(ctx, v, strlen(v), out);
    if (st) ts_ctx_set_error(ctx, st, "%s: metadata '%s': %s", path, key, ts_ctx_error(ctx));
    return st;
}

ts_status cli_text_model_vocab(ts_ctx *ctx, const ts_model *m, const char *path, ts_vocab **out) {
    return meta_vocab(ctx, m, path, TEXT_META_VOCAB, "text", out);
}

int cli_text_model_tags(const ts_model *m) {
    const char *t = ts_model_get_meta(m, TEXT_META_TASK);
    return t && !strcmp(t, "tag");
}

int cli_text_model_translates(const ts_model *m) {
    const char *t = ts_model_get_meta(m, TEXT_META_TASK);
    return t && !strcmp(t, "translate");
}

ts_status cli_text_model_target_vocab(ts_ctx *ctx, const ts_model *m, const char *path, ts_vocab **out) {
    return meta_vocab(ctx, m, path, TEXT_META_TARGET_VOCAB, "translation", out);
}

/* The source and target lengths the model was trained with (0 0 when not recorded) */
static void model_lengths(const ts_model *m, int *t, int *tl) {
    const char *v = ts_model_get_meta(m, TEXT_META_LENGTHS);
    *t = *tl = 0;
    if (!v || sscanf(v, "%d %d", t, tl) != 2 || *t < 0 || *t > 512 || *tl < 0 || *tl > 514) *t = *tl = 0;
}

ts_status cli_text_load_for_model(ts_ctx *ctx, const ts_model *m, const char *path, const char *spec, ts_split split,
                                  const char *data_dir, long limit, ts_text_dataset **out) {
    *out = NULL;
    ts_vocab *vocab = NULL, *target = NULL;
    char **names = NULL;
    int n = 0;
    ts_status st = cli_text_model_vocab(ctx, m, path, &vocab);
    if (!st && cli_text_model_translates(m)) st = cli_text_model_target_vocab(ctx, m, path, &target);
    const char *cls = ts_model_get_meta(m, "classes");
    if (!st && cls) st = split_lines(ctx, cls, &names, &n);
    if (!st) {
        ts_text_options opt;
        ts_text_options_default(&opt);
        const ts_shape in = ts_model_input_shape(m);
        int t, tl;
        model_lengths(m, &t, &tl);
        opt.max_len = t ? t : in.ndim == 1 ? (int)in.dims[0] : 0;
        opt.target_len = tl;
        opt.limit = limit > 0 ? limit : 0;
        opt.vocab = vocab;
        opt.target_vocab = target;
        opt.class_names = (const char *const *)names;
        opt.classes = names ? n : 0;
        st = ts_text_dataset_load(ctx, spec, split, data_dir, &opt, out);
    }
    ts_vocab_free(vocab);
    ts_vocab_free(target);
    free(names);
    return st;
}

ts_status cli_text_translate(ts_ctx *ctx, ts_model *m, const char *path, const char *text, int beam, char **out) {
    *out = NULL;
    int t, tl;
    model_lengths(m, &t, &tl);
    const ts_shape in = ts_model_input_shape(m);
    if (!t || tl < 2 || in.ndim != 2) return ts_ctx_set_error(ctx, TS_EFORMAT, "%s: no source and target lengths", path);
    const int tm = (int)in.dims[1];
    ts_text_dataset one;
    memset(&one, 0, sizeof one);
    one.count = 1;
    one.task = TS_SEQ_TRANSLATE;
    one.max_len = t;
    one.target_len = tl;
    snprintf(one.name, sizeof one.name, "the text");
    int32_t *ids = calloc((size_t)t + (size_t)tl + (size_t)tm + 2, sizeof *ids), n = 0;
    int len = 0;
    ts_status st = ids ? cli_text_model_vocab(ctx, m, path, &one.vocab) : ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    if (!st) st = cli_text_model_target_vocab(ctx, m, path, &one.target_vocab);
    if (!st) st = ts_vocab_encode(ctx, one.vocab, text, ids, t, &len);
    if (!st) {
        one.tokens = ids;
        one.lengths = &n;
        n = len > 0 ? len : 1;
        one.targets = ids + t;          /* unused by decoding: (1, target_len) of <pad> */
        one.target_lengths = &n;
        st = ts_translate(ctx, m, &one, beam, 1, ids + t + tl);
    }
    if (!st) st = ts_vocab_decode(ctx, one.target_vocab, ids + t + tl, tm, out);
    ts_vocab_free(one.vocab);
    ts_vocab_free(one.target_vocab);
    free(ids);
    return st;
}

ts_status cli_text_encode(ts_ctx *ctx, const ts_model *m, const char *path, const char *text, float *x, int *len) {
    const ts_shape in = ts_model_input_shape(m);
    if (in.ndim != 1) return ts_ctx_set_error(ctx, TS_ESHAPE, "%s: a text model takes (T) token ids", path);
    const int T = (int)in.dims[0];
    ts_vocab *vocab = NULL;
    int32_t *ids = malloc(sizeof *ids * (size_t)T);
    ts_status st = ids ? cli_text_model_vocab(ctx, m, path, &vocab) : ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    int n = 0;
    if (!st) st = ts_vocab_encode(ctx, vocab, text, ids, T, &n);
    if (!st) {
        for (int t = 0; t < T; t++) x[t] = t < n ? (float)ids[t] : 0.0f;
        *len = n;
    }
    ts_vocab_free(vocab);
    free(ids);
    return st;
}
