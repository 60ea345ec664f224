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
        opt.both_ways = names && cli_text_model_translates(m); /* a translator's classes are its languages */
        st = ts_text_dataset_load(ctx, spec, split, data_dir, &opt, out);
    }
    ts_vocab_free(vocab);
    ts_vocab_free(target);
    free(names);
    return st;
}

/* The source's language tag for a translator trained both ways (its "classes" are the
 * languages it writes): "<2LANG>" into tag, 1; 0 for a one-way translator; -1 (error
 * set) when `to` is missing, unknown, or given to a one-way translator. */
static int language_tag(ts_ctx *ctx, const ts_model *m, const char *path, const char *to, char tag[80]) {
    const char *langs = ts_model_get_meta(m, "classes");
    if (!langs) {
        if (to) ts_ctx_set_error(ctx, TS_EINVAL, "%s: --to %s: the model translates one way only", path, to);
        return to ? -1 : 0;
    }
    char list[256];
    snprintf(list, sizeof list, "%s", langs);
    for (char *p = list; *p; p++) *p = *p == '\n' ? ',' : *p;
    if (!to) {
        ts_ctx_set_error(ctx, TS_EINVAL, "%s: the model translates into %s: say which with --to", path, list);
        return -1;
    }
    const size_t n = strlen(to);
    for (const char *p = langs; *p;) {
        const size_t k = strcspn(p, "\n");
        if (k == n && !strncmp(p, to, n) && n < 64) {
            snprintf(tag, 80, "<2%s>", to);
            return 1;
        }
        p += k + (p[k] == '\n');
    }
    ts_ctx_set_error(ctx, TS_EINVAL, "%s: --to %s: the model translates into %s", path, to, list);
    return -1;
}

ts_status cli_text_translate(ts_ctx *ctx, ts_model *m, const char *path, const char *text, int beam, const char *to,
                             char **out) {
    *out = NULL;
    int t, tl;
    model_lengths(m, &t, &tl);
    const ts_shape in = ts_model_input_shape(m);
    if (!t || tl < 2 || in.ndim != 2) return ts_ctx_set_error(ctx, TS_EFORMAT, "%s: no source and target lengths", path);
    char tag[80];
    const int tagged = language_tag(ctx, m, path, to, tag);
    if (tagged < 0) return TS_EINVAL;
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
    if (!st && tagged && (ids[0] = ts_vocab_id(one.vocab, tag)) == TS_TOKEN_UNK)
        st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: the vocabulary has no language tag %s", path, tag);
    if (!st) st = ts_vocab_encode(ctx, one.vocab, text, ids + tagged, t - tagged, &len);
    if (!st) {
        len += tagged;
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

/* ---- modules of text models composed (compose, reuse, replace, eval) */

ts_status cli_text_compose_meta(ts_ctx *ctx, ts_module *const *mods, int n, ts_model *cm) {
    int text = 0;
    for (int j = 0; j < n; j++) text += ts_module_origin_meta(mods[j], TEXT_META_VOCAB) != NULL;
    if (text == 0) return TS_OK;
    ts_module_info a, b;
    ts_module_info_get(mods[0], &a);
    for (int j = 0; j < n; j++) {
        const char *v = ts_module_origin_meta(mods[j], TEXT_META_VOCAB);
        ts_module_info_get(mods[j], &b);
        if (!v)
            return ts_ctx_set_error(ctx, TS_EINVAL, "module %d (class '%s') reads images and module 1 (class '%s') "
                                    "text: compose modules of one kind", j + 1, b.class_name, a.class_name);
        if (strcmp(v, ts_module_origin_meta(mods[0], TEXT_META_VOCAB)))
            return ts_ctx_set_error(ctx, TS_EINVAL, "module %d (class '%s', from %s) reads another vocabulary than "
                                    "module 1 (class '%s', from %s): text modules compose when they read the same "
                                    "token ids", j + 1, b.class_name, b.origin, a.class_name, a.origin);
    }
    static const char *const keys[] = {TEXT_META_VOCAB, TEXT_META_TASK, TEXT_META_LENGTHS};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *v = ts_module_origin_meta(mods[0], keys[k]);
        ts_status st = v ? ts_model_set_meta(ctx, cm, keys[k], v) : TS_OK;
        if (st) return st;
    }
    return TS_OK;
}

/* Output j's class name in a composed model's "classes" (one per line), in buf. */
static int composed_name(const ts_model *m, int j, char *buf, size_t n) {
    const char *s = ts_model_get_meta(m, "classes");
    for (int i = 0; s && i < j; i++) s = (s = strchr(s, '\n')) ? s + 1 : NULL;
    if (!s) return 0;
    size_t len = strcspn(s, "\n");
    if (len >= n) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 1;
}

ts_status cli_text_composed_dataset(ts_ctx *ctx, const ts_model *cm, const char *path, ts_split split,
                                    const char *data_dir, long limit, ts_text_dataset **out) {
    *out = NULL;
    const ts_shape in = ts_model_input_shape(cm);
    /* a tagger's modules composed output a score per module at each step */
    const int k = ts_model_classes(cm) / (cli_text_model_tags(cm) && in.ndim == 1 ? (int)in.dims[0] : 1);
    char spec[512] = "";
    for (int j = 0; j < k; j++) {
        char key[48];
        snprintf(key, sizeof key, "composed.origin.%d", j);
        const char *v = ts_model_get_meta(cm, key), *d = v ? strstr(v, "dataset=") : NULL;
        size_t len = d ? strcspn(d + 8, ";") : 0;
        if (!d || len == 0 || len >= sizeof spec)
            return ts_ctx_set_error(ctx, TS_EFORMAT, "%s: metadata '%s' names no dataset", path, key);
        if (j > 0 && (strlen(spec) != len || strncmp(spec, d + 8, len)))
            return ts_ctx_set_error(ctx, TS_EUNSUPPORTED, "%s: its text modules come from datasets %s and %.*s; "
                                    "evaluate it with --data on a set of its classes", path, spec, (int)len, d + 8);
        memcpy(spec, d + 8, len);
        spec[len] = '\0';
    }
    ts_vocab *vocab = NULL;
    ts_text_dataset *all = NULL;
    int *classes = malloc(sizeof *classes * (size_t)(k > 0 ? k : 1));
    ts_status st = classes ? cli_text_model_vocab(ctx, cm, path, &vocab) : ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory");
    if (!st) {
        ts_text_options opt;
        ts_text_options_default(&opt);
        opt.max_len = in.ndim == 1 ? (int)in.dims[0] : 0;
        opt.vocab = vocab;
        st = ts_text_dataset_load(ctx, spec, split, data_dir, &opt, &all);
    }
    /* each output's class, found by name: the origin's label order need not be the set's */
    for (int j = 0; !st && j < k; j++) {
        char name[256];
        int c = -1;
        if (!composed_name(cm, j, name, sizeof name))
            st = ts_ctx_set_error(ctx, TS_EFORMAT, "%s: metadata 'classes' has no name for output %d", path, j);
        for (int i = 0; !st && c < 0 && i < all->classes; i++)
            if (!strcmp(all->class_names[i], name)) c = i;
        if (!st && c < 0)
            st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: output %d's class '%s' is not a class of %s", path, j, name, spec);
        classes[j] = c;
    }
    if (!st) st = ts_text_dataset_select(ctx, all, classes, k, out);
    if (!st && limit > 0 && (*out)->count > limit) (*out)->count = limit;
    ts_text_dataset_free(all);
    ts_vocab_free(vocab);
    free(classes);
    return st;
}
