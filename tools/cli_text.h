/* The commands on text datasets and sequence models (cli_text.c, docs/sequences.md). */
#ifndef TS_CLI_TEXT_H
#define TS_CLI_TEXT_H

#include "cli.h"

/* Metadata a text model carries: its vocabulary (ts_vocab_save's text) and its task
 * ("classify" or "tag"); its class or tag names are under "classes", one per line,
 * as an image model's. */
#define TEXT_META_VOCAB "text.vocab"
#define TEXT_META_TASK "text.task"
#define TEXT_META_TARGET_VOCAB "text.target_vocab" /* a translator's */
#define TEXT_META_LENGTHS "text.lengths"           /* "T TARGET_LEN": the lengths trained with */

/* --data names a text dataset: a known name (clinc_oos, brown, tatoeba,
 * spam-assassin), a file with a text reader's suffix, or a folder holding one. */
int cli_is_text_data(const char *spec);
/* m carries a vocabulary: it reads text. */
int cli_is_text_model(const ts_model *m);
/* Records ds's vocabulary, task, class or tag names, dataset name and spec in m. */
ts_status cli_text_set_meta(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, const char *spec);
/* m's vocabulary (path names m in messages). */
ts_status cli_text_model_vocab(ts_ctx *ctx, const ts_model *m, const char *path, ts_vocab **out);
/* m is a tagger; a translator. */
int cli_text_model_tags(const ts_model *m);
int cli_text_model_translates(const ts_model *m);
ts_status cli_text_model_target_vocab(ts_ctx *ctx, const ts_model *m, const char *path, ts_vocab **out);
/* A translator's translation of text (greedy with beam 1, else beam search) in *out
 * (free with ts_text_free). to: the language to write, for a translator trained both
 * ways (required there, refused for a one-way one; NULL: none). */
ts_status cli_text_translate(ts_ctx *ctx, ts_model *m, const char *path, const char *text, int beam, const char *to,
                             char **out);
/* A split of spec read as m was trained: its vocabulary, class or tag order and
 * length; limit > 0 reads only the first samples. */
ts_status cli_text_load_for_model(ts_ctx *ctx, const ts_model *m, const char *path, const char *spec, ts_split split,
                                  const char *data_dir, long limit, ts_text_dataset **out);
/* One text as m's input x (T) (ids, 0 after the text); *len its tokens kept. */
ts_status cli_text_encode(ts_ctx *ctx, const ts_model *m, const char *path, const char *text, float *x, int *len);

/* After ts_compose of mods into cm: when the modules come from text models, cm gets
 * their vocabulary, task and lengths, so that it reads text; refused when some read
 * images or another vocabulary. Nothing for image modules. */
ts_status cli_text_compose_meta(ts_ctx *ctx, ts_module *const *mods, int n, ts_model *cm);
/* The evaluation set of a composed text model (path names it in messages): the split
 * of its modules' dataset (one for all), each output's class found by name and
 * relabelled to the output; limit > 0 keeps the first samples. */
ts_status cli_text_composed_dataset(ts_ctx *ctx, const ts_model *cm, const char *path, ts_split split,
                                    const char *data_dir, long limit, ts_text_dataset **out);

#endif
