/* libtessera: a C11 deep-learning engine for convolutional networks.
 *
 * Conventions
 *  - Every fallible call returns ts_status and leaves a one-line message on its
 *    context (ts_ctx_error). The library never prints, exits or aborts.
 *  - Whoever creates frees, with a ts_ call, never free(): an object that
 *    ts_X_create, ts_X_load or another call returns in *out is freed by ts_X_free
 *    (arrays of them by ts_Xs_free, reports and buffers by the _free named where
 *    they are returned). Every _free accepts NULL.
 *  - Configurations: a struct ts_X_config whose defaults
 *    void ts_X_config_default(ts_X_config *cfg) fills in (every field, so start
 *    from it and change what differs; a zeroed struct is not the defaults;
 *    ts_optim_config_default also takes the optimizer kind). A function taking
 *    `const ts_X_config *cfg` treats NULL as the defaults.
 *  - Tensors are float32, row-major, batch first: images are (N, C, H, W).
 *  - The same seed and thread count give bit-identical results.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum ts_status {
    TS_OK = 0,
    TS_EINVAL = 1,       /* bad argument or option */
    TS_ENOMEM = 2,       /* allocation failed */
    TS_EIO = 3,          /* file missing, unreadable or unwritable */
    TS_EFORMAT = 4,      /* file contents malformed */
    TS_EUNSUPPORTED = 5, /* valid request that tessera does not support */
    TS_ESHAPE = 6,       /* tensor shapes do not fit together */
    TS_ENOTFOUND = 7,    /* named dataset, layer or tensor not found */
    TS_EDIVERGED = 8,    /* training produced NaN or Inf */
    TS_ECANCELED = 9,    /* stopped by a callback */
    TS_STATUS_COUNT
} ts_status;

const char *ts_status_name(ts_status s);

/* --------------------------------------------------------------- context */

typedef struct ts_ctx ts_ctx;

typedef enum ts_backend {
    TS_BACKEND_DNNL = 0, /* oneDNN primitives where available (default) */
    TS_BACKEND_REF = 1,  /* plain-C reference kernels only */
} ts_backend;

ts_status ts_ctx_create(ts_ctx **out);
void ts_ctx_free(ts_ctx *ctx);
/* Message of the last failed call on ctx ("" when none). */
const char *ts_ctx_error(const ts_ctx *ctx);
ts_status ts_ctx_status(const ts_ctx *ctx);
void ts_ctx_clear_error(ts_ctx *ctx);
/* Records a failure on ctx (for callers and callbacks that report through it);
 * returns status. */
ts_status ts_ctx_set_error(ts_ctx *ctx, ts_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Threads used by kernels (default: 1). They are started here, on the calling thread,
 * so that a system that cannot create them fails now with TS_ENOMEM (and the count
 * stays as it was) instead of inside a kernel, where OpenMP would end the process. */
ts_status ts_ctx_set_threads(ts_ctx *ctx, int nthreads);
int ts_ctx_get_threads(const ts_ctx *ctx);
ts_status ts_ctx_set_backend(ts_ctx *ctx, ts_backend backend);
ts_backend ts_ctx_get_backend(const ts_ctx *ctx);
/* Constant-time inference (default off; docs/security.md). When on, ts_model_predict
 * and what is built on it (ts_evaluate, ts_module_evaluate, the scores of modules and
 * composed models) run only kernels with no branch and no memory address that depends on the input
 * or activation values, only on the shapes: the reference kernels whatever the
 * backend (never oneDNN), with branch-free variants of ReLU and the other
 * activations, max pooling, softmax and log-softmax (exp and log from polynomials,
 * no tables), and with flush-to-zero and denormals-are-zero set (x86) for the
 * duration of the call, then restored; subnormal inputs and activations then count
 * as 0. Results equal the reference backend's bit for bit for convolution, dense,
 * batch norm, ReLU, max pooling and the other select-type layers, and within an ulp
 * or two where exp, log or a division is involved. Training is refused
 * (TS_EUNSUPPORTED from ts_model_forward_train) while it is on. What it does not hide
 * (the batch size, the model's shape, the cache footprint of the weights, thread
 * scheduling): docs/security.md. */
ts_status ts_ctx_set_constant_time(ts_ctx *ctx, int on);
/* bfloat16 mixed precision (default off), on the oneDNN backend: convolutions read
 * their large operands in bfloat16 (inference: input and weights; training also the
 * output gradient) and accumulate and write float32 on the CPU's AVX-512-BF16/AMX
 * units. Weights, weight gradients, batch norm, the optimizer and everything else
 * stay float32. Faster, with rounding of about 3 significant digits (accuracy figures
 * in bench/RESULTS.md). Turning it on returns TS_EUNSUPPORTED on CPUs without AVX-512,
 * where oneDNN has no bfloat16 convolutions. */
ts_status ts_ctx_set_bf16(ts_ctx *ctx, int on);
int ts_ctx_get_bf16(const ts_ctx *ctx);
/* Winograd convolutions, on the oneDNN backend in float32: a 3x3, stride-1,
 * undilated, ungrouped convolution with at least 16 input and 32 output channels runs
 * oneDNN's Winograd kernels (F(2x2,3x3) or F(4x4,3x3)), which need about half the
 * multiplications of the direct ones: 1.2-2.5x faster on such layers (figures in
 * bench/RESULTS.md). Their results differ from the direct kernels' by float rounding
 * of about 1e-6 of the outputs' scale. That is nothing for inference, but over many
 * optimizer steps (Adam's normalized updates most) it drifts further from PyTorch's
 * than the direct kernels do, so training keeps the direct kernels unless asked.
 * TS_WINOGRAD_INFERENCE (the default): inference only; TS_WINOGRAD_TRAINING: also the
 * training forward and backward-data passes (backward weights stays direct);
 * TS_WINOGRAD_OFF: direct everywhere. bf16, int8 and the reference backend never use
 * it. */
typedef enum ts_winograd { TS_WINOGRAD_OFF = 0, TS_WINOGRAD_INFERENCE = 1, TS_WINOGRAD_TRAINING = 2 } ts_winograd;
ts_status ts_ctx_set_winograd(ts_ctx *ctx, ts_winograd mode);
ts_winograd ts_ctx_get_winograd(const ts_ctx *ctx);
int ts_ctx_get_constant_time(const ts_ctx *ctx);
/* The shape (channels 1 or 3, height, width) images read from image files are
 * brought to when a dataset is an image folder (ts_dataset_load, docs/data.md); 0 for
 * a value: the first training image's. Default all 0. The CLI sets the model's input
 * shape here. */
ts_status ts_ctx_set_image_shape(ts_ctx *ctx, int channels, int height, int width);
void ts_ctx_get_image_shape(const ts_ctx *ctx, int *channels, int *height, int *width);
/* Notes: what the library did that a user should hear of but that is no failure
 * (a stale temporary file of a dead process removed). The library never prints: it
 * hands each note, one line, to this hook; without one they are dropped. */
typedef void (*ts_note_fn)(void *user, const char *note);
void ts_ctx_set_note_hook(ts_ctx *ctx, ts_note_fn fn, void *user);
/* Lets the file writers replace an output the user could not write (default off:
 * refused with TS_EIO). See "files" below. */
ts_status ts_ctx_set_force(ts_ctx *ctx, int on);

/* ----------------------------------------------------------------- shapes */

#define TS_MAX_DIMS 6

/* Shape of one sample (no batch axis): (C, H, W) for images; (T, F) for sequences. */
typedef struct ts_shape {
    int ndim;
    int64_t dims[TS_MAX_DIMS];
} ts_shape;

/* Number of elements, or -1 when the shape is invalid or the product overflows. */
int64_t ts_shape_numel(const ts_shape *s);


/* --------------------------------------------------------------- datasets */

/* An image classification dataset held in memory as bytes, as the files store it. */
typedef struct ts_dataset {
    int64_t count;           /* number of samples */
    int channels, height, width;
    int classes;             /* number of classes (labels are 0..classes-1) */
    uint8_t *images;         /* (count, C, H, W), 0..255 */
    int32_t *labels;         /* (count) */
    char name[64];           /* "fashion-mnist", "mnist", "cifar10", "cifar100", or the path */
    char **class_names;      /* classes entries, owned */
} ts_dataset;

typedef enum ts_split { TS_SPLIT_TRAIN = 0, TS_SPLIT_TEST = 1 } ts_split;

/* Loads a dataset. `spec` is a known name (fashion-mnist, mnist, cifar10, cifar100)
 * or a directory or file path in one of those layouts (IDX files, raw or .gz; CIFAR
 * binary batches, raw or .gz), or an image folder (ROOT/CLASS/ PNG and JPEG files, as
 * torchvision's ImageFolder; images brought to ts_ctx_set_image_shape's shape). Known names are looked up in `data_dir` when given,
 * else $TESSERA_DATA, else the standard places (see docs/data.md). A known name that
 * is not installed fails with TS_ENOTFOUND and a message saying how to install it. */
ts_status ts_dataset_load(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, ts_dataset **out);
/* The same, reading only the first `limit` samples (limit <= 0: all): a gzip file is
 * inflated only that far, and what follows them is neither read nor checked. */
ts_status ts_dataset_load_first(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, int64_t limit,
                                ts_dataset **out);
/* The file or folder ts_dataset_load would read for spec (the same search, the same
 * errors), written to path (size bytes): spec itself when it is a path, else the
 * folder where the known name was found. Relative when spec or data_dir is. */
ts_status ts_dataset_locate(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir, char *path,
                            size_t size);
void ts_dataset_free(ts_dataset *ds);

/* Splits `ds` into a training part and a held-out validation part of `val_count`
 * samples, chosen by a seeded shuffle (stratification not attempted). Both are new
 * datasets owned by the caller; ds is unchanged. */
ts_status ts_dataset_split(ts_ctx *ctx, const ts_dataset *ds, int64_t val_count, uint64_t seed, ts_dataset **train,
                           ts_dataset **val);
/* Copy of the samples at `idx` (count entries). */
ts_status ts_dataset_subset(ts_ctx *ctx, const ts_dataset *ds, const int64_t *idx, int64_t count, ts_dataset **out);

/* Per-channel mean and standard deviation of pixel/255 over the whole dataset
 * (population std), as torchvision's Normalize expects. */
void ts_dataset_channel_stats(const ts_dataset *ds, float *mean /* (C) */, float *std /* (C) */);

/* How a batch is made from bytes: x = (pixel/255 - mean[c]) / std[c], then optional
 * augmentation (training only). */
typedef struct ts_preprocess {
    int channels;
    float mean[4], std[4];
    int crop_pad;  /* random crop after zero padding by this many pixels (0: off) */
    int flip;      /* random horizontal flip with p = 0.5 (0: off) */
} ts_preprocess;

/* Iterates a dataset in batches. The order of an epoch and every random augmentation
 * are functions of (seed, epoch, sample position) only, so any batch can be rebuilt
 * exactly (resume) and results do not depend on the thread count. The loader
 * borrows ds and ctx (threads, error messages): both must outlive it. pp NULL means
 * x = pixel/255 without augmentation. */
typedef struct ts_loader ts_loader;

ts_status ts_loader_create(ts_ctx *ctx, const ts_dataset *ds, int batch, int shuffle, const ts_preprocess *pp,
                           uint64_t seed, ts_loader **out);
void ts_loader_free(ts_loader *ld);
/* Batches per epoch (the last may be partial). */
int64_t ts_loader_batches(const ts_loader *ld);
/* Fixes the sample order for `epoch` (identity when shuffle is off). */
void ts_loader_begin_epoch(ts_loader *ld, int64_t epoch);
/* Fills batch `index` of the current epoch: x is (B, C, H, W) floats, y is (B)
 * labels, *count the number of samples (B except possibly the last batch).
 * Augmentation applies only when `augment` is non-zero. */
ts_status ts_loader_get(ts_loader *ld, int64_t index, int augment, float *x, int32_t *y, int *count);
/* Samples [lo, hi) of batch `index` into x ((hi - lo), C, H, W) and y (hi - lo): the
 * values ts_loader_get puts at those positions (0 <= lo <= hi <= the batch's count).
 * A data-parallel rank reads only its share of each batch with it. */
ts_status ts_loader_get_range(ts_loader *ld, int64_t index, int lo, int hi, int augment, float *x, int32_t *y);

/* ---------------------------------------------------------- text datasets */

/* Text for sequence models (docs/data.md, "Text datasets"): a tokenizer, a
 * vocabulary built from training data, readers for CLINC150 (intent
 * classification), Brown (universal POS tagging), Tatoeba English-French
 * (translation) and SpamAssassin (ham/spam), and corpus BLEU. */

/* Tokenizes text (NUL-terminated UTF-8): ASCII letters lower-cased, ASCII
 * whitespace and control bytes separate tokens, each ASCII punctuation character
 * is a token of its own, every other byte belongs to a word; an invalid UTF-8 byte
 * becomes U+FFFD; a token longer than 64 bytes keeps its first whole characters
 * within 64 bytes. *tokens (free with ts_text_free) holds the tokens separated by
 * single spaces; *count their number (either may be NULL). */
ts_status ts_text_tokenize(ts_ctx *ctx, const char *text, char **tokens, int *count);
void ts_text_free(void *p);

/* Fixed ids of every vocabulary. */
enum { TS_TOKEN_PAD = 0, TS_TOKEN_UNK = 1, TS_TOKEN_BOS = 2, TS_TOKEN_EOS = 3 };

typedef struct ts_vocab ts_vocab;

/* A vocabulary of the tokens of texts[0..count-1] seen at least min_count times
 * (min_count < 1: 1): ids 0..3 are <pad>, <unk>, <bos>, <eos>, then words by
 * descending count, ties in byte order. */
ts_status ts_vocab_build(ts_ctx *ctx, const char *const *texts, int64_t count, int min_count, ts_vocab **out);
void ts_vocab_free(ts_vocab *v);
int32_t ts_vocab_size(const ts_vocab *v);
/* Id of a word (as the tokenizer writes it), TS_TOKEN_UNK when absent. */
int32_t ts_vocab_id(const ts_vocab *v, const char *word);
/* Word of an id; NULL when out of range. */
const char *ts_vocab_word(const ts_vocab *v, int32_t id);
/* Tokenizes text and writes the ids of its first `max` tokens to ids; *count is the
 * number written. Unknown words are TS_TOKEN_UNK. */
ts_status ts_vocab_encode(ts_ctx *ctx, const ts_vocab *v, const char *text, int32_t *ids, int max, int *count);
/* The words of ids[0..n-1] separated by spaces in *text (free with ts_text_free):
 * <pad> and <bos> are skipped, the first <eos> ends the text. */
ts_status ts_vocab_decode(ts_ctx *ctx, const ts_vocab *v, const int32_t *ids, int n, char **text);
/* The vocabulary as one text (free with ts_text_free), for a model's metadata:
 * "tessera-vocab 1 SIZE\n", then one "word\tcount\n" line per id. */
ts_status ts_vocab_save(ts_ctx *ctx, const ts_vocab *v, char **text);
/* Reads what ts_vocab_save wrote; anything else (a size that is not the line
 * count, a duplicate, words out of order, a bad count) fails with TS_EFORMAT. */
ts_status ts_vocab_parse(ts_ctx *ctx, const char *text, size_t len, ts_vocab **out);

typedef enum ts_seq_task { TS_SEQ_CLASSIFY = 0, TS_SEQ_TAG = 1, TS_SEQ_TRANSLATE = 2 } ts_seq_task;

typedef struct ts_text_dataset {
    int64_t count;
    ts_seq_task task;
    int max_len;             /* T: tokens per sample after padding/truncation */
    int32_t *tokens;         /* (count, max_len): ids, 0 (<pad>) after each sample's length */
    int32_t *lengths;        /* (count): 1..max_len */
    int32_t *labels;         /* classify: (count); tag: (count, max_len) with -1 past the length; translate: NULL,
                              * or read both ways (count) the language each source is translated into */
    int target_len;          /* translate: padded target length, <bos> ... <eos> included; else 0 */
    int32_t *targets;        /* translate: (count, target_len), 0 after the length; else NULL */
    int32_t *target_lengths; /* translate: (count); else NULL */
    int classes;             /* classify/tag: number of labels; translate: 0, or read both ways 2 (the languages) */
    char **class_names;      /* classes entries (intent names, universal POS tags), owned */
    char name[64];
    ts_vocab *vocab;         /* source vocabulary, owned */
    ts_vocab *target_vocab;  /* translate: target vocabulary, owned; else NULL */
} ts_text_dataset;

/* How a text dataset is read. Reusing the training split's vocabularies and class
 * names makes a test split encoded the same way. */
typedef struct ts_text_options {
    int max_len;                    /* T; longer samples are truncated. 0: the longest sample, at most 512 */
    int target_len;                 /* translate, <bos> and <eos> included. 0: the longest target + 2, at most 514 */
    int min_count;                  /* vocabulary built from the loaded samples: words seen fewer times are <unk> */
    int64_t limit;                  /* > 0: only the first `limit` samples of the split */
    const ts_vocab *vocab;          /* NULL: built; else copied and used */
    const ts_vocab *target_vocab;   /* translate: the same for targets */
    const char *const *class_names; /* classify/tag: NULL, or the label order to use (classes entries) */
    int classes;
    /* translate: also read every pair target to source. Each sample is labelled with the
     * language it is translated into (classes 2, named after the file: eng-fra.txt ->
     * "fra", "eng"; class 0 the file's direction) and its source starts with that
     * language's tag word, "<2fra>" or "<2eng>" (in the source vocabulary; no text
     * tokenizes to it): one model translates both ways (docs/sequences.md). */
    int both_ways;
} ts_text_options;

void ts_text_options_default(ts_text_options *opt);

/* Loads a split of a text dataset. spec is a known name (clinc_oos, brown,
 * tatoeba, spam-assassin) looked up as docs/data.md says (data_dir, then
 * $TESSERA_DATA, then the standard places), or a path: a folder holding one of
 * their files, or the file (.zip: Brown; file_list.json: SpamAssassin; other
 * .json: CLINC150's shape; anything else: tab-separated pairs; each may be .gz).
 * opt NULL: the defaults. Samples with no token are skipped. */
ts_status ts_text_dataset_load(ts_ctx *ctx, const char *spec, ts_split split, const char *data_dir,
                               const ts_text_options *opt, ts_text_dataset **out);
void ts_text_dataset_free(ts_text_dataset *ds);
/* A seeded held-out part of val_count samples, as ts_dataset_split; both parts
 * own copies of the vocabularies and class names. */
ts_status ts_text_dataset_split(ts_ctx *ctx, const ts_text_dataset *ds, int64_t val_count, uint64_t seed,
                                ts_text_dataset **train, ts_text_dataset **val);
/* The samples of a classify set ds whose label is classes[j], relabelled j (k
 * entries, distinct), in ds's order, with those classes' names: the evaluation set
 * of k modules of one text model composed (docs/sequences.md). Of a tag set: the
 * texts with a token of a listed tag, those tokens relabelled, the others -1 (not
 * scored). Of a translate set read both ways: the pairs into the listed languages. */
ts_status ts_text_dataset_select(ts_ctx *ctx, const ts_text_dataset *ds, const int *classes, int k,
                                 ts_text_dataset **out);

/* A token sequence for BLEU. */
typedef struct ts_token_seq {
    const int32_t *ids;
    int len;
} ts_token_seq;

/* Corpus BLEU-4 as NLTK's corpus_bleu without smoothing: uniform weights, clipped
 * n-gram counts summed over the corpus, the closest reference length (the shorter
 * on a tie) for the brevity penalty. refs holds refs_per_hyp references per
 * hypothesis (hypothesis i's are refs[i*refs_per_hyp ...]). An order with no match
 * gives 0 (NLTK: a value below 1e-70). */
ts_status ts_corpus_bleu(ts_ctx *ctx, const ts_token_seq *hyps, const ts_token_seq *refs, int64_t count,
                         int refs_per_hyp, double *bleu);
/* The same over texts whose tokens are separated by spaces (not otherwise tokenized). */
ts_status ts_corpus_bleu_text(ts_ctx *ctx, const char *const *hyps, const char *const *refs, int64_t count,
                              int refs_per_hyp, double *bleu);
/* The two in another style: TS_BLEU_NLTK is the above; TS_BLEU_SACREBLEU is
 * sacrebleu 2.x's corpus_bleu with tokenize='none' and its default 'exp' smoothing (a
 * hypothesis shorter than n adds no n-grams, an order without a match counts as
 * 1/(2^k * its n-grams) instead of giving 0; docs/data.md). They differ only where a
 * hypothesis is shorter than 4 tokens or an order has no match. */
typedef enum ts_bleu_style { TS_BLEU_NLTK = 0, TS_BLEU_SACREBLEU = 1 } ts_bleu_style;
ts_status ts_corpus_bleu_style(ts_ctx *ctx, ts_bleu_style style, const ts_token_seq *hyps, const ts_token_seq *refs,
                               int64_t count, int refs_per_hyp, double *bleu);
ts_status ts_corpus_bleu_text_style(ts_ctx *ctx, ts_bleu_style style, const char *const *hyps,
                                    const char *const *refs, int64_t count, int refs_per_hyp, double *bleu);

/* Batches of a text dataset for a model whose input is ts_text_input_shape(ds):
 * ts_loader_get writes x (B, that shape), the ids as floats, and y (B) labels or, for
 * tagging and translation, (B, T) tags or target words with -1 past each end. The
 * order of an epoch follows the same rule as ts_loader_create's. The loader borrows
 * ds. */
ts_status ts_loader_create_text(ts_ctx *ctx, const ts_text_dataset *ds, int batch, int shuffle, uint64_t seed,
                                ts_loader **out);
/* Labels ts_loader_get writes per sample: 1, or T for tagging and translation. */
int ts_loader_labels_per_sample(const ts_loader *ld);
/* The input of a model for ds: (T) token ids; for translation (2, Tm), the source
 * padded to Tm = max(T, target_len - 1), then the target from <bos> without its last
 * token (what the decoder reads while it learns to write the target from its first
 * word: teacher forcing), and the model outputs a score per target word per step
 * (Tm, target vocabulary). */
ts_shape ts_text_input_shape(const ts_text_dataset *ds);

/* ----------------------------------------------------------------- models */

/* A model is a directed acyclic graph of layers described by an architecture text
 * (docs/arch-format.md), with its parameters (trainable tensors), buffers (batch-norm
 * running statistics) and metadata (class names, preprocessing, provenance). */
typedef struct ts_model ts_model;

/* Parses an architecture text and initializes parameters as PyTorch does by default,
 * from `seed`. `source` names the text in error messages (a file name). `input`
 * (may be NULL) and `classes` (0: keep) replace what the text's input line
 * declares, so one architecture serves datasets of any image size and class count. */
ts_status ts_model_from_arch(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                             uint64_t seed, ts_model **out);
/* The same for a sequence model: input (NULL: the text's), classes (0: keep) and the
 * vocabulary sizes (0: keep) replacing the input line's `vocab=` and `target_vocab=`
 * (a translation model's), which a key's value `vocab` or `target_vocab` reads
 * (`embedding vocab=vocab`, `dense out=target_vocab`). The model keeps its
 * architecture text with those numbers written in. */
ts_status ts_model_from_arch_seq(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input, int classes,
                                 int vocab, int target_vocab, uint64_t seed, ts_model **out);
ts_status ts_model_from_arch_file(ts_ctx *ctx, const char *path, const ts_shape *input, int classes, uint64_t seed,
                                  ts_model **out);

/* Built-in architectures (the .arch files of zoo/, compiled in): the text for `name` ("resnet20",
 * "demo", ...), or NULL. ts_zoo_name(i) lists them, NULL past the end. */
const char *ts_zoo_arch(const char *name);
const char *ts_zoo_name(int index);
void ts_model_free(ts_model *m);

/* Saves the model (architecture, tensors, metadata) atomically: temp file + rename. */
ts_status ts_model_save(ts_ctx *ctx, const ts_model *m, const char *path);
/* Loads a model or a checkpoint file (the training state of a checkpoint is ignored). */
ts_status ts_model_load(ts_ctx *ctx, const char *path, ts_model **out);

ts_shape ts_model_input_shape(const ts_model *m);
int ts_model_classes(const ts_model *m);
const char *ts_model_arch_text(const ts_model *m);

/* Inference on n samples x (n, input shape) -> logits (n, classes). Uses the
 * model's running statistics; no gradient state is kept. */
ts_status ts_model_predict(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits);

/* ---- free image size (docs/arch-format.md, `input ... free=hw`). A model whose
 * input is CxHxW with H and W free takes images of any height and width (fully
 * convolutional models: every layer's shape is inferred per input size). Its input
 * shape (ts_model_input_shape) and classes are those of its declared default size,
 * at which ts_model_predict, training and evaluation run. */
/* 1 when the model's input height and width are free. */
int ts_model_any_size(const ts_model *m);
/* The per-sample output shape for inputs of height h and width w (TS_ESHAPE, with the
 * layer that cannot take that size, or for another size of a fixed-size model). */
ts_status ts_model_output_shape_hw(ts_ctx *ctx, ts_model *m, int h, int w, ts_shape *out);
/* Inference on n images x (n, C, h, w) -> out (n, *out_shape), out_shape as
 * ts_model_output_shape_hw's (out_shape may be NULL). The plan for the last size other
 * than the default is kept: a change of size re-plans, repeated calls do not. */
ts_status ts_model_predict_hw(ts_ctx *ctx, ts_model *m, const float *x, int n, int h, int w, float *out,
                              ts_shape *out_shape);

/* ---- early exits (T-RECX; docs/early-exit.md). A model may carry one early exit: a
 * branch ending in a dense layer marked `exit=1` that outputs `classes` logits, an
 * auxiliary output trained jointly with the final one. */
typedef struct ts_exit_config {
    const char *after;  /* the layer the exit reads: a name, or a stage prefix ("stage1":
                         * the last layer named "stage1.*") */
    int channels;       /* the exit's 1x1 convolution's output channels (32) */
    int early_view;     /* 1: early-view assistance, the exit's depthwise view of the final
                         * feature map's first `channels` channels fed to the final dense */
} ts_exit_config;
/* after NULL, channels 32, early_view 1 */
void ts_exit_config_default(ts_exit_config *cfg);
/* ts_model_from_arch with an exit block added after cfg->after: 1x1 conv to `channels`,
 * depthwise 2x2 stride 2 + ReLU, average pool to 4x4, flatten, dense to the classes
 * (`exit=1`); with early_view the head globalavgpool -> dense becomes
 * concat(globalavgpool, flatten(ReLU(depthwise 2x2 stride 2 of the first `channels`
 * channels))) -> dense. */
ts_status ts_model_from_arch_exit(ts_ctx *ctx, const char *text, const char *source, const ts_shape *input,
                                  int classes, uint64_t seed, const ts_exit_config *cfg, ts_model **out);
typedef struct ts_exit_info {
    int layer;           /* the exit's logits layer */
    int64_t macs_exit;   /* per sample: the layers the exit needs (its path from the input) */
    int64_t macs_rest;   /* the layers the final output needs beyond those */
    int64_t macs_plain;  /* the layers the final output needs (no exit taken, exit not run) */
} ts_exit_info;
/* 1 and *info filled when m has an early exit, else 0. */
int ts_model_exit_info(const ts_model *m, ts_exit_info *info);
/* Inference with the early exit: runs the layers the exit needs for all n samples;
 * a sample whose top softmax probability there is >= rho gets the exit's logits
 * (exited[i] = 1), the others, gathered into a smaller batch, run the rest of the
 * network (exited[i] = 0). rho >= 1 takes no exit: the logits are ts_model_predict's,
 * bit for bit (a float softmax can round to exactly 1). exited may be NULL. Refused
 * in constant-time mode (the time taken would tell which samples exited). */
ts_status ts_model_predict_exit(ts_ctx *ctx, ts_model *m, const float *x, int n, float rho, float *logits,
                                int *exited);

/* Training step building blocks: forward in training mode keeps what backward
 * needs; backward takes d(loss)/d(logits) (n, classes) and writes parameter
 * gradients (overwriting them). The backward runs on the kernels (backend) its
 * forward ran on, even if ts_ctx_set_backend changed it in between. */
ts_status ts_model_forward_train(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, uint64_t dropout_seed);
ts_status ts_model_backward(ts_ctx *ctx, ts_model *m, const float *dlogits);

/* Compressed activations in training (docs/compressed-activations.md, COMET): from the
 * next training forward pass on, each activation the backward pass reads is
 * compressed after its last forward use and decompressed just before the backward
 * step that reads it, and every activation shares one arena with those not live at
 * the same time. eb is relative to each tensor's range in that pass: every value is
 * kept within eb * (max - min) of itself; zeros and signs stay exact (a ReLU's mask
 * is exact) and eb = 0 is lossless; eb < 0 turns compression off. adaptive: each
 * layer's bound starts at eb (0 < eb <= 0.1) and then follows its gradients (COMET's
 * analysis: the error compression adds to the weight gradient that reads it stays at
 * a tenth of that gradient's magnitude), at most 0.1. The compressor is deterministic,
 * so training stays reproducible bit for bit. */
ts_status ts_model_set_activation_compression(ts_ctx *ctx, ts_model *m, float eb, int adaptive);

/* Activation memory of the last training forward pass (zeros before one). */
typedef struct ts_activation_memory {
    size_t plain_bytes;      /* every layer's output buffer, as training without compression holds them
                              * (at the plan's batch capacity, channels padded for nChw16c included) */
    size_t buffer_bytes;     /* the output buffers this plan holds (with compression: the shared arena
                              * and the layers kept apart from it; padding included alike) */
    size_t kept_plain_bytes; /* the activations backward reads, uncompressed (their values in the
                              * last batch, without padding) */
    size_t kept_bytes;       /* what holds them between forward and backward: the compressed
                              * sizes, plus those kept uncompressed (without compression: kept_plain_bytes) */
    size_t held_bytes;       /* the compressed stores as allocated (they grow in the first passes, and
                              * give room back when a pass needs less than half) */
    int compressed;          /* compression was on in that pass */
} ts_activation_memory;
ts_status ts_model_activation_memory(const ts_model *m, ts_activation_memory *out);

/* One layer's output in the last training forward pass: kept for backward or not,
 * its bytes plain and as kept, and the absolute error bound used (0 when lossless or
 * not compressed). */
typedef struct ts_activation_layer {
    int kept, compressed;
    size_t plain_bytes, bytes;
    float eb;
} ts_activation_layer;
ts_status ts_model_activation_layer(const ts_model *m, int layer, ts_activation_layer *out);

/* Saliency maps: out (n, input shape) = d score / d x for the n samples x (n, input
 * shape), the score being the logit of class class_idx[i] (NULL: each sample's
 * predicted class). The gradient is the inference function's: batch norm with its
 * running statistics, dropout the identity, a final softmax skipped; m is unchanged.
 * guided != 0: guided backpropagation (Springenberg et al., "Striving for Simplicity:
 * The All Convolutional Net"): through every ReLU only the gradient that is positive
 * where the ReLU's input is positive; every other layer (a model without ReLU
 * entirely) as the plain gradient. Refused in constant-time mode. */
ts_status ts_model_saliency(ts_ctx *ctx, const ts_model *m, const float *x, int n, const int *class_idx, int guided,
                            float *out);

/* Named tensors, in a stable order: parameters first in layer order, then buffers. */
typedef enum ts_tensor_role { TS_TENSOR_PARAM = 0, TS_TENSOR_BUFFER = 1 } ts_tensor_role;
typedef struct ts_tensor_info {
    const char *name;  /* "conv1.weight", "bn1.running_mean", ... (PyTorch state_dict names) */
    ts_tensor_role role;
    int ndim;
    int64_t dims[TS_MAX_DIMS];
    int64_t numel;
    float *data;       /* the model's storage (see ts_model_params_changed) */
    float *grad;       /* gradient of a parameter; NULL for buffers, and until the model
                        * first trains (ts_model_forward_train, ts_optimizer_create) */
} ts_tensor_info;

int ts_model_tensor_count(const ts_model *m);
ts_status ts_model_tensor(const ts_model *m, int index, ts_tensor_info *info);
/* Inference keeps a packed copy of the convolution weights (batch norm folded in,
 * in oneDNN's layout). ts_model_tensor, training and the optimizer mark it stale;
 * a caller that writes through a data pointer it obtained before an inference call
 * calls this before the next one. */
void ts_model_params_changed(ts_model *m);
/* Index of the tensor named `name`, or -1. */
int ts_model_find_tensor(const ts_model *m, const char *name);
int64_t ts_model_param_count(const ts_model *m); /* trainable scalars */

typedef struct ts_layer_info {
    const char *name;
    const char *kind;   /* "conv2d", "batchnorm", ... */
    int line;           /* line in the architecture text */
    ts_shape out;       /* per-sample output shape */
    int64_t params;     /* trainable scalars */
    int64_t macs;       /* multiply-accumulates per sample, forward */
    int ninputs;        /* up to 64 (a concat); the first 8 names are here, all by ts_model_layer_input */
    const char *inputs[8];
    char attrs[512];    /* attributes as the architecture text writes them: "out=8 kernel=3x3 ..." */
} ts_layer_info;

int ts_model_layer_count(const ts_model *m);
ts_status ts_model_layer(const ts_model *m, int index, ts_layer_info *info);
/* The name of input k (0..ninputs-1) of layer `index`, or NULL. */
const char *ts_model_layer_input(const ts_model *m, int index, int k);

/* Reading the outputs of any layers during inference. ts_model_predict_capture runs
 * as ts_model_predict and, for each group of samples it computes at once, calls fn
 * once per requested layer with that layer's outputs for samples first..first+n-1:
 * out is (n, per-sample numel of the layer's output shape), valid during the call
 * only. The groups cover the n samples in order; how large they are is the library's
 * business. fn returns 0 to go on; anything else stops the call with TS_ECANCELED.
 * Requesting a layer that inference would fuse away runs that call unfused. */
typedef int (*ts_capture_fn)(void *user, int layer, int64_t first, int n, const float *out);
typedef struct ts_capture {
    const int *layers; /* layer indices (ts_model_layer), nlayers of them */
    int nlayers;
    ts_capture_fn fn;
    void *user;
} ts_capture;
ts_status ts_model_predict_capture(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits,
                                   const ts_capture *capture);

/* Where inference spends its time: runs as ts_model_predict and adds each layer's
 * wall-clock seconds to seconds[layer] (ts_model_layer_count entries; the caller
 * zeroes them and may sum several calls). A layer that inference fuses into a
 * convolution (its batch norm, its activation; ts_model_layer_fused_into says which)
 * adds nothing: its time is the convolution's. */
ts_status ts_model_predict_profile(ts_ctx *ctx, ts_model *m, const float *x, int n, float *logits, double *seconds);
/* The layer whose computation includes layer `index` in inference (itself when it
 * runs on its own), as planned by the last inference call; -1 before any. */
int ts_model_layer_fused_into(const ts_model *m, int index);

/* Where the cost goes (Sze et al.: data movement matters as much as MACs). Per sample
 * unless said: the bytes are fp32 values a layer must move at least once (inputs read,
 * output written; a reshape or flatten of a computed layer moves nothing), weights per
 * call (parameters and buffers such as batch-norm statistics). */
typedef struct ts_layer_cost {
    int64_t macs;         /* multiply-accumulates, forward (as ts_layer_info) */
    int64_t params;       /* trainable scalars */
    int64_t in_bytes;     /* per sample: every input read once */
    int64_t out_bytes;    /* per sample: the output written once */
    int64_t weight_bytes; /* per call: parameters and buffers read once */
} ts_layer_cost;
ts_status ts_model_layer_cost(const ts_model *m, int index, ts_layer_cost *out);

/* This machine's roofline, measured on ctx's threads and backend (about a second):
 * the fp32 peak (independent FMA chains in the CPU's widest vectors), the rate of a
 * 2048^3 sgemm (what a well-blocked kernel reaches) and the STREAM-triad bandwidth; a
 * layer whose FLOPs per byte are below ridge cannot reach the peak. */
typedef struct ts_roofline {
    int threads;
    double peak_gflops;   /* fp32 GFLOP/s (2 FLOPs per MAC): FMA throughput */
    double gemm_gflops;   /* fp32 GFLOP/s of the sgemm (oneDNN's, or the reference's) */
    double bandwidth_gbs; /* GB/s, 10^9 bytes */
    double ridge;         /* peak_gflops / bandwidth_gbs, FLOPs per byte */
} ts_roofline;
ts_status ts_machine_roofline(ts_ctx *ctx, ts_roofline *out);

/* int8 inference, post-training (docs/training.md#int8). ts_model_quantize returns a
 * copy of m whose convolutions run in int8 in inference: each conv2d's input gets one
 * scale from the calibration samples x ((n, input) as ts_model_predict takes them;
 * a few hundred training images): the `percentile` of |x| over them (100: the
 * maximum), 0..255 where the input was never negative, else -128..127; weights get one
 * scale per output channel (max |w| / 127) when they are packed, after batch norm is
 * folded in. Everything else stays fp32. The scales are metadata, so the model saves
 * and loads as any other; training ignores them; constant-time mode refuses the model.
 * On oneDNN the convolutions are oneDNN's int8 ones (VNNI or AMX where the CPU has
 * them); the reference computes the same quantized values in fp32. */
typedef struct ts_quantize_config {
    double percentile; /* of |x| that sets an input's range: 99.99 by default, 100 = max */
} ts_quantize_config;
void ts_quantize_config_default(ts_quantize_config *cfg);
ts_status ts_model_quantize(ts_ctx *ctx, const ts_model *m, const float *x, int n, const ts_quantize_config *cfg,
                            ts_model **out);
/* 1 when layer `index` is a conv2d that runs in int8: its input's scale and whether the
 * input is quantized to 0..255 (else -128..127). 0 otherwise. */
int ts_model_int8_layer(const ts_model *m, int index, float *scale, int *is_unsigned);

/* Metadata: string key/value pairs saved with the model (class names, preprocessing,
 * dataset, training summary). Setting NULL removes the key. */
ts_status ts_model_set_meta(ts_ctx *ctx, ts_model *m, const char *key, const char *value);
const char *ts_model_get_meta(const ts_model *m, const char *key);
int ts_model_meta_count(const ts_model *m);
void ts_model_meta_at(const ts_model *m, int index, const char **key, const char **value);

/* Preprocessing stored in metadata ("preprocess.mean", "preprocess.std"). */
ts_status ts_model_set_preprocess(ts_ctx *ctx, ts_model *m, const ts_preprocess *pp);
ts_status ts_model_get_preprocess(ts_ctx *ctx, const ts_model *m, ts_preprocess *pp);

/* --------------------------------------------------------------- training */

/* Softmax cross-entropy, mean over the batch, with PyTorch's label smoothing.
 * Writes d(loss)/d(logits) when dlogits is not NULL. Returns the loss. */
float ts_softmax_cross_entropy(int n, int classes, const float *logits /* (n,classes) */,
                               const int32_t *labels /* (n) */, float smoothing, float *dlogits /* (n,classes) */);

typedef enum ts_optimizer_kind { TS_OPT_SGD = 0, TS_OPT_ADAM = 1, TS_OPT_ADAMW = 2 } ts_optimizer_kind;

/* Semantics are exactly torch.optim.SGD / Adam / AdamW (weight decay applies to
 * every parameter, as PyTorch does by default). */
typedef struct ts_optim_config {
    ts_optimizer_kind kind;
    float momentum;       /* SGD */
    float dampening;      /* SGD */
    int nesterov;         /* SGD */
    float weight_decay;   /* SGD/Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2, eps; /* Adam/AdamW */
} ts_optim_config;

/* Defaults for `kind`: SGD momentum 0.9; Adam betas (0.9, 0.999), eps 1e-8; AdamW
 * weight decay 0.01. ts_optimizer_create(NULL config): SGD's. */
void ts_optim_config_default(ts_optim_config *cfg, ts_optimizer_kind kind);

typedef struct ts_optimizer ts_optimizer;
ts_status ts_optimizer_create(ts_ctx *ctx, ts_model *m, const ts_optim_config *cfg, ts_optimizer **out);
void ts_optimizer_free(ts_optimizer *opt);
/* One update of every parameter of the model from its gradients, at rate lr. */
ts_status ts_optimizer_step(ts_ctx *ctx, ts_optimizer *opt, float lr);

typedef enum ts_schedule_kind {
    TS_SCHED_CONSTANT = 0,
    TS_SCHED_STEP = 1,     /* lr * gamma at each milestone (see docs/training.md) */
    TS_SCHED_COSINE = 2,   /* cosine annealing to 0 over all steps */
    TS_SCHED_ONECYCLE = 3, /* torch OneCycleLR: warm-up 30% from lr/25, cosine down to lr/25e4 */
} ts_schedule_kind;

typedef struct ts_schedule {
    ts_schedule_kind kind;
    float lr;          /* base (for one-cycle: maximum) rate */
    int step_size;     /* step: epochs between decays; 0 = at 50% and 75% of the epochs */
    float gamma;       /* step: decay factor (0.1) */
    int64_t total_steps;
    int64_t steps_per_epoch;
} ts_schedule;

/* Learning rate for optimizer step `step` (0-based). */
float ts_schedule_lr(const ts_schedule *s, int64_t step);

typedef struct ts_train_config {
    int epochs;
    int batch;
    float lr;
    ts_optim_config optim;
    ts_schedule_kind schedule;
    int step_size;
    float gamma;
    float label_smoothing;
    uint64_t seed;
    int crop_pad;      /* augmentation: random crop after padding by this many pixels */
    int flip;          /* augmentation: random horizontal flip */
    /* modular training, MwT-style (docs/modules.md, "Modular training (MwT)"): the
     * model carries mask generators (ts_model_add_mask_generators) and the loss is
     * CE + mwt_alpha * cohesion loss + mwt_beta * coupling loss, each the mean over
     * the generators */
    int modular;
    float mwt_alpha, mwt_beta;
    /* Safer training, on the validation top-1 (both need a validation set):
     * early_stop > 0 ends training after that many epochs in a row without a better
     * validation top-1 than the best so far; keep_best leaves the model, when training
     * ends (all epochs, or stopped early), with the weights and batch-norm statistics
     * of the epoch that had the best. A checkpoint carries the best epoch, the count
     * since it and (with keep_best) its tensors, so a resumed run goes on counting. */
    int early_stop;
    int keep_best;
    /* data-parallel (ts_trainer_set_comm on several ranks): batch norm's batch statistics
     * and its gradient's sums over every rank's samples, as one process would compute
     * them from the whole global batch (PyTorch's SyncBatchNorm); 0: each rank's own.
     * The last batch must then leave no rank without samples (ts_trainer_set_comm
     * refuses such a batch size). */
    int sync_bn;
    /* a model with an early exit (docs/early-exit.md): loss CE_final + exit_weight *
     * L_exit; for the first exit_transfer of the epochs (a fraction) the exit's
     * depthwise weights are copied into the early-view convolution before every batch.
     * L_exit = (1 - exit_distill) CE_exit + exit_distill T^2 KL(p_final,T || p_exit,T),
     * T = exit_temperature: the exit also learns the final head's softened outputs
     * (self-distillation; the final head gets no gradient from it). exit_distill 0:
     * T-RECX's plain CE_exit. */
    float exit_weight, exit_transfer;
    float exit_distill, exit_temperature;
    /* compressed activations (ts_model_set_activation_compression): 1 holds the
     * activations kept for backward compressed, each value within compress_eb times its
     * tensor's range (0: lossless); 2 adapts each layer's bound from its gradients,
     * starting at compress_eb (0 < compress_eb <= 0.1); 0: off */
    int compress_activations;
    float compress_eb;
} ts_train_config;

/* 10 epochs, batch 128, lr 0.1, SGD (ts_optim_config_default), constant rate, seed 1,
 * no augmentation or label smoothing, not modular (alpha 0.5, beta 1.5 when it is),
 * exit weight 0.5 and transfer 0.8, no distillation (temperature 4 when it is on; used
 * only by a model with an early exit). */
void ts_train_config_default(ts_train_config *cfg);

typedef struct ts_train_progress {
    int64_t epoch, epochs;     /* 0-based current epoch, total */
    int64_t batch, batches;    /* batches done in this epoch, per epoch */
    int64_t step;              /* optimizer steps done in total */
    float loss, acc;           /* running means over this epoch (loss: the cross-entropy) */
    float lr;
    float cohesion, coupling;  /* modular training: running means of the mask loss terms (else 0) */
} ts_train_progress;

typedef struct ts_epoch_report {
    int64_t epoch;             /* 0-based epoch just finished */
    double train_loss, train_acc;
    double val_loss, val_acc;  /* -1 when no validation set */
    double seconds;
    /* modular training: the epoch's means of the cohesion loss (1 - mean cosine of
     * same-class masks) and coupling loss (mean cosine of different-class masks); 0
     * otherwise. train_loss stays the cross-entropy alone. */
    double cohesion, coupling;
    /* a model with an early exit: the exit's training loss and top-1 and its validation
     * top-1 (-1 without a validation set); 0 without an exit */
    double exit_loss, exit_acc, val_exit_acc;
    /* training with compressed activations (ts_model_set_activation_compression): the
     * most bytes one step of the epoch kept for its backward pass (compressed, and any
     * kept plain) and what those activations take plain: ts_activation_memory's
     * kept_bytes and kept_plain_bytes at that step, on this process (data-parallel: this
     * rank's share of the batch; after a resume mid-epoch: the steps since); 0 otherwise */
    double act_kept_bytes, act_kept_plain_bytes;
} ts_epoch_report;

/* Hooks called by ts_trainer_run. Returning non-zero from either stops training
 * (TS_ECANCELED) after the current step; the trainer stays consistent, so a hook
 * may save a checkpoint (ts_checkpoint_save). */
typedef struct ts_train_hooks {
    int (*on_step)(const ts_train_progress *p, void *user);
    int (*on_epoch)(const ts_epoch_report *r, void *user);
    void *user;
} ts_train_hooks;

typedef struct ts_trainer ts_trainer;

/* The trainer borrows model and datasets (they must outlive it). It sets the
 * model's preprocessing from the training set's channel statistics unless the
 * model already has it (fine-tuning, resume). val may be NULL. */
ts_status ts_trainer_create(ts_ctx *ctx, ts_model *m, const ts_dataset *train, const ts_dataset *val,
                            const ts_train_config *cfg, ts_trainer **out);
/* The same for text: a classifier (input (T) token ids, output (classes)) or a tagger
 * (output (T, tags): a score per tag per step; the loss is the mean cross-entropy over
 * real tokens, padding ignored). No preprocessing is set; validation top-1 is the
 * accuracy per text or per token. */
ts_status ts_trainer_create_text(ts_ctx *ctx, ts_model *m, const ts_text_dataset *train, const ts_text_dataset *val,
                                 const ts_train_config *cfg, ts_trainer **out);
void ts_trainer_free(ts_trainer *tr);
/* Trains until cfg.epochs are done (continuing from a resumed position), or until
 * cfg.early_stop ends it (TS_OK; ts_trainer_summary says so). */
ts_status ts_trainer_run(ts_ctx *ctx, ts_trainer *tr, const ts_train_hooks *hooks);

typedef struct ts_train_summary {
    int64_t epochs_done;   /* epochs completed, resumed ones included */
    int64_t best_epoch;    /* 0-based epoch of this run with the best validation top-1; -1: none */
    double best_val_acc;   /* its validation top-1; -1 when none */
    int stopped_early;     /* cfg.early_stop ended training before cfg.epochs */
    int restored_best;     /* cfg.keep_best put that epoch's weights back into the model */
} ts_train_summary;
void ts_trainer_summary(const ts_trainer *tr, ts_train_summary *out);

/* Data-parallel training over several processes (docs/distributed.md). The library
 * knows no transport: the caller hands it this communicator (the CLI implements it
 * with MPI, tools/dist_mpi.c). Every rank runs the same trainer on the same data
 * with the same configuration; batch b of the global order is split in rank order
 * (rank r takes samples [n r / size, n (r + 1) / size) of its n), the gradients of
 * the global batch's mean loss are summed over the ranks, and every rank takes the
 * same optimizer step. Batch-norm statistics are per rank in the forward pass; the
 * running statistics are averaged over the ranks after each step. */
typedef struct ts_comm {
    int rank, size;  /* this process's rank in 0..size-1; the number of ranks */
    /* Sums buf (n floats) over all ranks in place. Every rank must end with the
     * same values, summed in rank order ((x0 + x1) + x2 ...), so that runs repeat
     * bit for bit. Returns 0, or non-zero after writing a message into err. */
    int (*allreduce_sum)(float *buf, size_t n, void *user, char *err, size_t err_size);
    void *user;
    /* Optional (both or neither), to overlap the gradients' sum with backward:
     * allreduce_start begins summing buf (n floats, with allreduce_sum's result) and
     * returns at once; n == 0 only lets the sums already begun progress. The trainer
     * calls it between layers of backward, with a bucket of the gradients backward has
     * finished once at least `bucket` floats (0: 65,536) are ready, and otherwise with
     * n == 0. allreduce_wait returns once every begun sum is done. */
    int (*allreduce_start)(float *buf, size_t n, void *user, char *err, size_t err_size);
    int (*allreduce_wait)(void *user, char *err, size_t err_size);
    size_t bucket;
    /* Optional; needed by ts_ctx_set_comm (the trainer does not use it). Every rank
     * passes counts[rank] bytes at `mine` and receives every rank's, concatenated in
     * rank order, in `all` (counts[0] + ... + counts[size - 1] bytes; it may not overlap
     * mine). counts (size entries) is the same on every rank. Returns 0, or non-zero
     * after writing a message into err. */
    int (*allgatherv)(const void *mine, void *all, const size_t *counts, void *user, char *err, size_t err_size);
} ts_comm;

/* Spreads the work of some calls on ctx over comm's ranks (copied; comm->user must
 * outlive its use; NULL or size 1: alone again). The calls are then collective: every
 * rank must make them in the same order with the same arguments (the same model and
 * data), and every rank gets the whole result, the same bits as a lone run with the
 * same threads per rank (docs/distributed.md). Spread: ts_evaluate, ts_module_evaluate,
 * the module scores of ts_compose_best_of and ts_patch (whole batches per rank), ts_decompose's
 * activation method (batches of its pass) and CNNSplitter search (fitness
 * evaluations). Every other call runs whole on each rank. Needs comm->allgatherv. */
ts_status ts_ctx_set_comm(ts_ctx *ctx, const ts_comm *comm);

/* Makes tr data-parallel over comm (copied; comm->user must outlive tr). Call it
 * before ts_trainer_run on every rank. NULL or size 1: training alone. Modular
 * training (cfg.modular) is not data-parallel: TS_EUNSUPPORTED. */
ts_status ts_trainer_set_comm(ts_ctx *ctx, ts_trainer *tr, const ts_comm *comm);

/* ------------------------------------------------------------- evaluation */

typedef struct ts_eval_report {
    int classes;
    int64_t count;
    double top1, top5, loss;   /* fractions; top-5 is top-k with k = min(5, classes); ties go to the lower index */
    int64_t *confusion;        /* (classes, classes): row = true label, column = prediction; NULL from
                                * ts_evaluate_text on a translation set */
    double exit_top1;          /* a model with an early exit: the exit's top-1 (every sample), else -1 */
} ts_eval_report;

ts_status ts_evaluate(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, ts_eval_report *out);
/* The early exit's trade-off on ds (docs/early-exit.md): for each point's rho (set by
 * the caller), the top-1 when samples whose top softmax probability at the exit is
 * >= rho stop there (rho >= 1: none), the fraction that stop, and the mean MACs per
 * sample, macs_exit + (1 - exited) * macs_rest (ts_exit_info; rho >= 1: macs_plain).
 * One pass computes both heads for every sample; ts_model_predict_exit gives the same
 * decisions. */
typedef struct ts_exit_point {
    float rho;
    double top1, exited, macs;
} ts_exit_point;
ts_status ts_evaluate_exit(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, int batch, ts_exit_point *points,
                           int npoints);
/* Top-1 of m on ds read as a sub-task of k classes: label j of ds stands for m's output
 * classes[j] (NULL: output j), and the prediction is the argmax over those k outputs
 * (ties to the lower j). With m's own preprocessing. */
ts_status ts_evaluate_classes(ts_ctx *ctx, ts_model *m, const ts_dataset *ds, const int *classes, int k, double *top1);
/* ts_evaluate on a text dataset: for tagging, count, top-1, top-5, the loss and the
 * confusion matrix are over real tokens (padding ignored), and seq_acc (may be NULL)
 * is the fraction of texts with every token right. On a translation set they are per
 * target word, reading the reference's words before it, and there is no confusion
 * matrix (NULL: it would be the target vocabulary squared). */
ts_status ts_evaluate_text(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int batch, ts_eval_report *out,
                           double *seq_acc);
/* Decodes ds's sources with an encoder-decoder model trained on ds's layout
 * (ts_text_input_shape): greedy with beam 1, else beam search of that width (mean
 * log-probability per word decides among finished hypotheses); batch sentences at a
 * time for greedy. out (count, Tm): each translation's target ids, ending with <eos>
 * (one that reaches Tm words without it is cut), 0 after. */
ts_status ts_translate(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, int32_t *out);
/* Corpus BLEU-4 (ts_corpus_bleu) of ts_translate's output against ds's targets,
 * both without <bos> and <eos>. */
ts_status ts_evaluate_bleu(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, double *bleu);
/* The same, and for a set read both ways (ds->classes languages, ds->labels) each
 * language's BLEU into by_class (ds->classes entries; NaN for one without sentences),
 * from the same translations (decoded once). by_class NULL: ts_evaluate_bleu. */
ts_status ts_evaluate_bleu_each(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, double *bleu,
                                double *by_class);
void ts_eval_report_free(ts_eval_report *r);
/* From the confusion matrix; 0 when undefined (or there is none). */
double ts_eval_precision(const ts_eval_report *r, int cls);
double ts_eval_recall(const ts_eval_report *r, int cls);

/* Preprocesses `count` images of bytes (count, C, H, W) into floats with pp. */
void ts_preprocess_images(const ts_preprocess *pp, const uint8_t *images, int64_t count, int c, int h, int w, float *out);
/* The same values, bit for bit, with no memory address that depends on a pixel
 * value: each pixel reads the whole 256-entry table of its channel instead of one
 * entry (for constant-time inference; ts_evaluate uses it in that mode). */
void ts_preprocess_images_ct(const ts_preprocess *pp, const uint8_t *images, int64_t count, int c, int h, int w,
                             float *out);

/* Index of the highest of k scores: the first on ties, and a NaN never replaces an
 * earlier score (the top-1 of ts_evaluate). -1 when k < 1. Branch-free: its time and
 * memory addresses depend on k only, not on the scores. */
int ts_argmax(const float *scores, int k);
/* The `top` best of k scores in idx (top entries), best first: each the first
 * maximum among the scores ranked below the previous one (lower, or equal at a
 * higher index). Fewer exist only when NaNs are among the scores; the rest of idx is
 * then -1. Returns how many were found. Branch-free, as ts_argmax: the time depends
 * on k and top only. */
int ts_top_k(const float *scores, int k, int top, int *idx);

/* ----------------------------------------------------------- modularity */

/* Decomposition (Pan & Rajan, FSE'20 / ICSE'22; docs/modules.md) cuts a trained
 * classifier into one module per class. A module answers "is x class c?": it is the
 * origin model with a keep-mask on every ReLU output (a unit is forced to 0 when
 * concern identification removes it: a dense unit not active on every confident
 * training input of c, or a convolution position active on none; and no sampled
 * input of the other classes activates it; or BLN backtracking removes it) and its
 * output channelled into score = logit_c - mean of the other logits (> 0 means yes).
 * Modules from any models compose into a classifier without retraining. */
typedef struct ts_module ts_module;

/* How modules are found: Pan & Rajan's activation analysis (a keep-bit per ReLU unit),
 * or GradSplitter-style learning of one binary mask per convolution kernel and class
 * on the frozen model (Qi et al., SANER'23/TOSEM). */
typedef enum ts_decompose_method {
    TS_DECOMPOSE_ACTIVATION = 0,
    TS_DECOMPOSE_GRAD = 1,
    /* a model trained with ts_train_config.modular (MwT): per class, the kernels its
     * mask generators open on at least theta of its training samples */
    TS_DECOMPOSE_MWT = 2,
    /* CNNSplitter's search (Qi et al., ASE'22): per class, a genetic algorithm over
     * groups of kernels ranked by importance, scored by the accuracy of compositions
     * with the other classes' modules and their difference from them */
    TS_DECOMPOSE_GA = 3
} ts_decompose_method;
/* Concern identification's rule for the units of dense layers (ReLUs over a
 * vector). Convolution maps always follow ICSE'22: a position is kept when any
 * confident positive activates it. */
typedef enum ts_decompose_rule {
    /* FSE'20: a dense unit is kept only when it is active on every confident positive
     * drawn since the last reset; the intersection restarts from the next positive
     * when the dense layer that feeds the classifier keeps fewer than 10% of its
     * units (the paper's "fewer than 10% of last-layer edges") */
    TS_DECOMPOSE_RULE_EVERY = 0,
    TS_DECOMPOSE_RULE_ANY = 1, /* kept when active on any confident positive (tessera before 2026-12) */
} ts_decompose_rule;

typedef struct ts_decompose_config {
    int positives;        /* confident training inputs of the class (1000) */
    float confidence;     /* softmax probability of the true class a positive needs (0.9) */
    float tangling;       /* negatives per positive, spread evenly over the other classes (1.0) */
    uint64_t seed;        /* order in which training inputs are drawn (0) */
    int batch;            /* inference batch (128) */
    ts_decompose_method method; /* TS_DECOMPOSE_ACTIVATION (default), _GRAD, _MWT or _GA */
    /* TS_DECOMPOSE_GRAD (docs/modules.md, "Learned kernel masks"): */
    float alpha;          /* weight of each module's mean kept-kernel fraction in the loss (0.01) */
    int epochs;           /* mask-learning epochs (4) */
    int64_t epoch_samples;/* training samples per epoch (10000; 0: the whole training part) */
    int64_t val_count;    /* samples carved from the training set to select the epoch (2000) */
    float lr;             /* Adam learning rate of the kernel masks (0.05) */
    float lr_head;        /* Adam learning rate of each module's score calibration (0.01) */
    int train_batch;      /* mask-learning batch (64) */
    float max_loss;       /* selection: the fewest kernels among epochs whose validation top-1 is within
                           * max_loss points of the origin's (1.0); none: the most accurate epoch */
    ts_decompose_rule rule; /* concern identification on dense units (TS_DECOMPOSE_RULE_EVERY) */
    /* BLN backtracking (ICSE'22): a unit that feeds the classifier is removed when
     * |w_uc| > bln_delta * (|w_c| + |w_uc|), w_c being its weight into the class's
     * logit and w_uc the mean of its weights into the others'; then, back through
     * dense layers, a unit whose every consumer was removed goes too (1: removes
     * nothing, the default, since the paper's 0.5 lowered composed accuracy by 1 to 1.3
     * points on the networks measured, docs/modules.md) */
    float bln_delta;
    /* TS_DECOMPOSE_MWT: a kernel is kept when its generated mask is > 0 on at least this
     * fraction of the class's training samples (0.9); lowered by 0.05 for a layer that
     * would keep none */
    float theta;
    /* TS_DECOMPOSE_GA (docs/modules.md, "CNNSplitter search"): */
    int ga_population;    /* chromosomes per class (100) */
    int ga_generations;   /* generations per class at most (200) */
    int ga_parents;       /* the fittest chromosomes that mate (50) */
    int ga_elites;        /* the fittest chromosomes kept as they are (20) */
    float ga_mutation;    /* fraction of an offspring's genes flipped (0.05) */
    int ga_patience;      /* a class stops after this many generations without a better best (20) */
    int ga_val_per_class; /* validation samples per class carved from the training set (50) */
    float ga_alpha;       /* fitness = a acc + (1 - ga_alpha) diff, a = ga_alpha + max(0, ga_gamma - acc) (0.9) */
    float ga_gamma;       /* (0.9) */
    /* TS_DECOMPOSE_GA: called after every generation of every class searched (NULL:
     * not called), with the class, the generation (0: the initial population) and the
     * best fitness so far; for a live display beside the progress callback */
    void (*ga_generation)(void *user, int cls, int generation, double best_fitness);
    void *ga_generation_user;
} ts_decompose_config;

void ts_decompose_config_default(ts_decompose_config *cfg);

/* Modularization while training (MwT, Qi et al. ICSE'24; docs/modules.md): a new
 * model equal to m with a mask generator on every conv2d whose only consumer is a
 * batch norm: globalavgpool of the conv's input -> dense (C_out, or C_out/2 from 128
 * channels on; no bias) -> relu -> dense (C_out, bias 1.0) -> tanh -> relu, the
 * per-sample mask that multiplies the batch norm's output channel by channel. Its
 * layers are named "<bn>.gen.pool", ".gen.fc1", ".gen.relu", ".gen.fc2", ".gen.tanh",
 * ".gen.mask", ".gen.shape" and "<bn>.gated"; m's tensors and metadata are copied,
 * the generators' weights initialized from seed. Batch norms already gated are left
 * as they are. Train the result with ts_train_config.modular. */
ts_status ts_model_add_mask_generators(ts_ctx *ctx, const ts_model *m, uint64_t seed, ts_model **out);

/* Progress callback: samples scanned so far out of at most `total`. Non-zero
 * return cancels (TS_ECANCELED). */
typedef int (*ts_progress_fn)(void *user, int64_t done, int64_t total);

/* One module per class listed in `classes` (n entries; NULL with n = 0 means every
 * class) from `train`, which must match the model (image shape, class count).
 * modules receives n (or all) new modules in that order, in an array that
 * ts_modules_free frees with them. Deterministic: one pass over the data, in an
 * order fixed by cfg->seed. */
ts_status ts_decompose(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                       const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                       int *count);

/* ---- recurrent classifiers (Imtiaz, Pan & Rajan, ICSE'23; docs/sequences.md,
 * "Decomposing a recurrent classifier") */
typedef struct ts_decompose_text_config {
    int positives;     /* M: texts of the label the model classifies right and confidently (500) */
    float confidence;  /* softmax probability of the true label a positive needs (0.9) */
    float tangling;    /* negatives per positive, spread evenly over the other labels: the paper's
                        * M/(labels-1) texts of each other label (1.0) */
    float max_remove;  /* tanh, lstm and gru layers: most of a layer's units removed; -1 (the default):
                        * 0.2 (the paper's) for classifiers and taggers, 0.05 (its code's) for
                        * translators (ts_decompose_text_max_remove) */
    float outlier_m;   /* a state |a| is an outlier when | |a| - median | > outlier_m * MAD (2) */
    uint64_t seed;     /* order in which training texts are drawn (0) */
    int batch;         /* inference batch (128) */
    int rolled;        /* 1: one removal set for every step (the paper's rolled); 0: a set per step, the
                        * unrolled variant, the paper's choice for many-output models; -1 (the default):
                        * rolled for a classifier, unrolled for a tagger (docs/sequences.md says why) */
    int step_min;      /* unrolled: a step with fewer positives or fewer negatives than this takes the rolled
                        * set (10) */
    /* Three refinements of a rolled classifier's modules (not taggers' or translators';
     * docs/sequences.md, "Decomposing a recurrent classifier", step 6); all 0 is the
     * paper's rule as it stands. Defaults: compensate and fit_scores 1, rank_by_margin 0. */
    int rank_by_margin; /* of the units the rule would remove (lower on positives than on negatives),
                         * the cap's worth least important to the module's margin go (|the unit's head
                         * weight for the label less its mean over the others| x its mean |state|);
                         * 0: those with the largest difference (last recurrent layer only) */
    int compensate;     /* a removed unit's mean state on the drawn texts, times its weights, is added to
                         * the biases of what reads it (its layer's recurrence, the next layer or head) */
    int fit_scores;     /* each module's score scale and shift fitted (least squares, positives and
                         * negatives weighted alike) to the origin's channelled margin on the drawn
                         * texts, so that composed modules vote on the origin's scale; 0: raw margins */
    /* A refinement of a translator's modules (docs/sequences.md, "Decomposing a
     * translator"; default 0: it helped an LSTM translator and cost a GRU one): */
    int rank_by_use;    /* of the decoder units the rule would remove (lower on the language's pairs
                         * than on the others'), the cap's worth the language's own pairs use least
                         * (lowest mean |state| there) go; 0: those with the largest difference.
                         * 1 on a set that is not a translation set is an error */
} ts_decompose_text_config;
void ts_decompose_text_config_default(ts_decompose_text_config *cfg);
/* The max_remove cfg means on a set of that task: its own, or for -1 the task's
 * default (0.05 for translation: on Tatoeba 0.2 costs 3-4 BLEU, docs/sequences.md). */
float ts_decompose_text_max_remove(const ts_decompose_text_config *cfg, ts_seq_task task);

/* One module per label listed in `classes` (n entries; NULL with n = 0: every label)
 * of a recurrent tagger (docs/sequences.md, "Decomposing a tagger": the same chain
 * with every recurrent layer outputting every step and the dense head scoring each
 * step, `train` a tag set; modules per tag from the tokens, rolled or unrolled as
 * cfg->rolled says; an unrolled module's layers carry a per-step unit mask), or
 * of a many-to-one recurrent classifier: input (T) token ids -> embedding -> one or
 * more rnn/lstm/gru layers (the last with sequence=0) -> dense, with dropout between
 * them and an optional final softmax; `train` a classify text set of the model's
 * length and labels. Per hidden unit, from the states of every real step: a relu
 * cell's unit is removed when no positive and no negative makes it positive; a
 * tanh/lstm/gru unit when its mean |state| (outliers dropped) is lower on positives
 * than on negatives, the most negative differences first, up to max_remove of the
 * layer (a label without a confident positive keeps every unit). A removed unit is
 * cut out of its layer (every gate block) and of the next layer's inputs: the
 * module's model is physically smaller. Its yes/no threshold is chosen as for image
 * modules, from the drawn texts. Its score is the
 * channelled head, as for ts_decompose's modules, so ts_compose and ts_module_model
 * take these modules too (a composed model takes the same (T) ids).
 *
 * An encoder-decoder translator (input (2, Tm): the source row then the target row;
 * a one-direction rnn/lstm/gru encoder whose final states start a decoder of the same
 * cell and units, a dense head over the decoder's steps) with `train` a translate set
 * read both ways (ts_text_options.both_ways) is decomposed per target language, the
 * paper's encoder-decoder labels: positives are the first `positives` pairs into the
 * language in the seeded order (no confidence test), negatives the pairs into the
 * others, and the decoder's units are identified from its teacher-forced states at
 * every real target step, rolled (cfg->rolled 0 is refused). The module's model
 * translates into its language as the origin does (ts_module_model gives it as it is;
 * ts_module_evaluate_bleu scores it); removed decoder units are cut out, the encoder
 * kept whole. Deterministic. */
ts_status ts_decompose_text(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *train,
                            const ts_decompose_text_config *cfg, const int *classes, int n, ts_module ***modules,
                            int *count);
/* A text module's binary accuracy on ds (labels as in its origin): own, the share of
 * its label's texts it says yes to (score > threshold); rest, the share of the others
 * it says no to. A tag module of a tagger on a tag set: the same per token. */
ts_status ts_module_evaluate_text(ts_ctx *ctx, const ts_module *mod, const ts_text_dataset *ds, int batch, double *own,
                                  double *rest);
/* A translator's language module on ds (a translate set read both ways, encoded as
 * its origin's): *bleu, corpus BLEU-4 (ts_evaluate_bleu, beam 1 greedy) of its
 * translations of the pairs into its language; *count how many there are (0: bleu 0). */
ts_status ts_module_evaluate_bleu(ts_ctx *ctx, const ts_module *mod, const ts_text_dataset *ds, int beam, int batch,
                                  double *bleu, int64_t *count);

typedef struct ts_module_info {
    int class_index;            /* in the origin model */
    const char *class_name;
    const char *dataset;        /* where its class's data is (ts_dataset_load spec; "" when unknown) */
    const char *origin;         /* the origin model's name (its file, or "") */
    uint64_t origin_id;         /* hash of the origin's architecture and tensors */
    int origin_classes;
    ts_shape input;
    int positives, negatives;   /* inputs used by concern and tangling identification */
    int64_t units, units_kept;  /* ReLU output units per sample, and those the mask keeps */
    int64_t conv_units, conv_units_kept; /* the same over convolution maps (CxHxW ReLUs) */
    int64_t weights, weights_kept;       /* conv/dense weights and biases of the origin, and those still live */
    double jaccard;             /* |module weights & model weights| / |union| = weights_kept / weights */
    int64_t kernels, kernels_kept; /* channels of the convolution maps (CxHxW ReLUs), and those with a kept unit */
    int64_t origin_macs;        /* multiply-accumulates per sample of the origin model */
    /* What the module needs, computed from its masks, against the origin's totals:
     * params = every parameter of the origin (ts_model_param_count); params_kept = params
     * less the conv/dense weights and biases that are not live (weights - weights_kept).
     * macs_kept = origin_macs less the multiply-accumulates of those dead weights (a
     * dense row or conv kernel whose units are all removed, or that reads only removed
     * inputs, costs nothing). The module runs as the masked origin: these are what a
     * sliced module would need, not what ts_module_model costs. */
    int64_t params, params_kept, macs_kept;
    /* The same for the origin itself with the units that no input drawn for the
     * decomposition activates removed (dead ReLUs are dead in the origin too): the
     * baseline that params_kept and macs_kept compare with (0 when unknown: a module
     * loaded from a file) */
    int64_t origin_params_live, origin_macs_live;
    /* How it was decomposed: the ts_decompose_rule of concern identification, and the
     * units that BLN backtracking removed (-1 and 0 for a module loaded from a file,
     * which does not record them, or made by ts_module_from_model) */
    int rule;
    int64_t bln_removed;
    double seconds;             /* wall time of its share of the decomposition */
    float scale, shift;         /* score calibration: score = scale * margin + shift (1, 0 until re-tuned) */
    float threshold;            /* the module answers "yes" when its score exceeds this: the cut with the best
                                 * balanced accuracy on its positives and negatives (0 once re-tuned) */
    ts_decompose_method method; /* how its masks were found */
    int selected_epoch;         /* TS_DECOMPOSE_GRAD: the mask-learning epoch chosen (1-based) */
    double val_accuracy;        /* TS_DECOMPOSE_GRAD and _GA: composed top-1 of all classes' modules on the validation
                                 * part at that epoch (_GA: at the end of the search), and the origin's there */
    double origin_val_accuracy;
    /* TS_DECOMPOSE_MWT and _GA (0 otherwise, and for a module loaded from a file): the mean Jaccard
     * index of the sets of open kernels of pairs of its class's samples (cohesion), and of
     * its module's kept kernels with each other module's of the decomposition (coupling) */
    double cohesion, coupling;
    /* TS_DECOMPOSE_GA (0 otherwise, and for a module loaded from a file): the generations
     * its class's search ran and the fitness of the chromosome chosen */
    int generations;
    double fitness;
} ts_module_info;

void ts_module_free(ts_module *mod);
/* ---- sub-task extraction (SeaM-style, docs/modules.md "Extracting a sub-task") */
typedef struct ts_extract_config {
    float alpha;          /* weight of the kept fraction of kernels and dense units in the loss (0.25);
                           * with adapt, its first value */
    int adapt;            /* after each epoch alpha x 1.5 when the validation top-1 meets the
                           * bound below, x 0.5 when not (1) */
    int epochs;           /* mask-learning epochs (8) */
    int64_t epoch_samples;/* sub-task training samples per epoch (0: all of the training part) */
    int64_t val_count;    /* sub-task samples carved from the training set to select the epoch (1000) */
    float lr;             /* Adam learning rate of the masks (0.05) */
    float lr_head;        /* Adam learning rate of the new head (0.01) */
    int train_batch;      /* mask-learning batch (64) */
    float max_loss;       /* selection: the fewest kernels among epochs whose validation top-1 is at
                           * least the origin's less max_loss points (0: at least the origin's);
                           * none: the most accurate epoch */
    uint64_t seed;        /* data order and validation part (0) */
    const char *dataset;  /* recorded as the classes' data (ts_dataset_load spec; NULL: the
                           * origin's "data" metadata, else its "dataset") */
} ts_extract_config;
void ts_extract_config_default(ts_extract_config *cfg);

typedef struct ts_extract_report {
    int selected_epoch;             /* 1-based */
    double val_accuracy;            /* the extracted model's top-1 on the validation part */
    double origin_val_accuracy;     /* the origin's there, argmax over the chosen classes' logits */
    int64_t val_count, train_count; /* sub-task samples used */
    int64_t units, units_kept;      /* maskable kernels and dense units, and those kept */
    int64_t params, origin_params;  /* trainable scalars */
    int64_t macs, origin_macs;      /* multiply-accumulates per sample */
    double seconds;
} ts_extract_report;

/* An ordinary, physically smaller model for the sub-task "which of these k classes"
 * (classes: k >= 2 distinct classes of m; output j is classes[j]), re-engineered from
 * m without changing its weights: masks over its kernels (channels of ReLUs over
 * convolution maps) and dense units learned with a straight-through estimator on the
 * sub-task's training samples in `train`, a new head over m's logits learned with
 * them; batch norms are folded and dropout removed. The epoch is chosen on a
 * validation part carved from those samples. Metadata records the classes so that
 * ts_composed_dataset finds its evaluation set. rep may be NULL. */
ts_status ts_extract(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const int *classes, int k,
                     const ts_extract_config *cfg, ts_progress_fn progress, void *user, ts_model **out,
                     ts_extract_report *rep);

/* Frees n modules and the array that holds them (what ts_decompose returns, or an
 * array the caller malloc'ed). NULL does nothing. */
void ts_modules_free(ts_module **mods, int n);
ts_status ts_module_info_get(const ts_module *mod, ts_module_info *info);
/* A module's keep-masks, one per ReLU layer of its origin, in layer order: which
 * kernels it keeps. (A text module's removed recurrent units are cut out of its layers
 * instead: no mask shows them.) */
int ts_module_mask_count(const ts_module *mod);
typedef struct ts_module_mask_info {
    const char *layer; /* the ReLU layer's name in the origin (valid while the module is) */
    int layer_index;   /* its index (ts_model_layer of the origin) */
    int channels;      /* kernels: C of a (C, H, W) output, else the units of a vector */
    int64_t plane;     /* units per kernel: H x W, or 1 */
} ts_module_mask_info;
/* Mask k (0..ts_module_mask_count - 1): its layer and size, and in kept (info->channels
 * entries; NULL: not wanted) the fraction of each kernel's units the module keeps (0:
 * the kernel is removed). Call once with kept NULL to learn the size. */
ts_status ts_module_mask(ts_ctx *ctx, const ts_module *mod, int k, ts_module_mask_info *info, float *kept);
/* Saves a module (.tsm: the origin model, its masks and class, docs/file-format.md),
 * atomically; loads one, checking every size and the masks against the model. */
ts_status ts_module_save(ts_ctx *ctx, const ts_module *mod, const char *path);
ts_status ts_module_load(ts_ctx *ctx, const char *path, ts_module **out);
/* A metadata value of the model the module was cut from (NULL when absent), such as
 * "train.limit": what its training read. */
const char *ts_module_origin_meta(const ts_module *mod, const char *key);
/* Records the origin's name (for example its file) in the module. */
ts_status ts_module_set_origin(ts_ctx *ctx, ts_module *mod, const char *origin);
/* Records where the module's class data lives, as ts_dataset_load takes it (a known
 * name or an absolute path). Decomposition records the origin's "data" metadata (the
 * spec it was trained on), else its "dataset" name. */
ts_status ts_module_set_dataset(ts_ctx *ctx, ts_module *mod, const char *spec);

/* The module alone as a one-output model: score (> 0: the input is its class). A
 * translator's language module: its translator model as it is. */
ts_status ts_module_model(ts_ctx *ctx, const ts_module *mod, ts_model **out);

/* Modules without masks for every class of m: the model itself, channelled. Used
 * to replace a class in a model that was never decomposed. */
ts_status ts_module_from_model(ts_ctx *ctx, const ts_model *m, int class_index, ts_module **out);

typedef struct ts_compose_config {
    /* Modules from one origin share the layers before a cut and each run their own
     * copy after it; the cut is the earliest that keeps the composed model within
     * max_macs times the origin's multiply-accumulates (1.5). Shared layers keep a
     * unit when any of the modules keeps it. max_macs >= the module count gives each
     * module its own full copy (exactly the modules' semantics). */
    double max_macs;
} ts_compose_config;

void ts_compose_config_default(ts_compose_config *cfg);

/* A k-class model from k modules (output j = module j's score, so the prediction is
 * the module with the highest score: Pan & Rajan's voting rule). Modules must take
 * the same input shape and preprocessing. Class names and origins go to metadata
 * ("classes", "composed.origins"). A translator's language modules
 * (ts_decompose_text on a set read both ways) compose otherwise: the model translates
 * each source with the module of the language its tag names (scores 0 when none
 * does), cfg ignored, the origin's "classes" (all its languages) kept
 * (docs/sequences.md, "Decomposing a translator"). */
ts_status ts_compose(ts_ctx *ctx, ts_module *const *mods, int k, const ts_compose_config *cfg, ts_model **out);

/* Best-of-N composition (docs/modules.md "Best-of-N composition"): cand holds `runs`
 * rows of k modules (row r: run r's modules for outputs 0..k-1; NULL where run r has
 * none), the modules of one output being the same class of their models; val: samples
 * none of the models trained on (labels as the modules' origins). */
typedef enum ts_best_of_select {
    TS_BEST_OF_F1 = 0,    /* per output, the candidate with the best F1 of its own yes/no answer (ties: earlier run) */
    TS_BEST_OF_GREEDY = 1 /* from the run whose composition is best on val, swap one output's module at a time
                           * while the composition's top-1 on val rises (coordinate ascent, at most 10 rounds) */
} ts_best_of_select;
typedef struct ts_best_of_config {
    ts_compose_config compose;
    /* 1 (default): first refit every candidate's score calibration (scale, shift;
     * threshold 0) on val by class-balanced logistic regression, so that modules of
     * different models answer on one scale (the candidates are changed) */
    int recalibrate;
    ts_best_of_select select; /* TS_BEST_OF_F1 */
} ts_best_of_config;
void ts_best_of_config_default(ts_best_of_config *cfg);
typedef struct ts_best_of_report {
    int runs, classes;
    int *picks;          /* (classes): the run each output's module comes from */
    double *f1;          /* (classes, runs): each candidate's F1 on val; -1 where missing */
    double *run_top1;    /* (runs): top-1 on val of each run's own modules composed */
    double val_top1;     /* top-1 on val of the picks composed */
} ts_best_of_report;
void ts_best_of_report_free(ts_best_of_report *rep);
/* Composes the picks as ts_compose does; rep receives the choice (free it with
 * ts_best_of_report_free). */
ts_status ts_compose_best_of(ts_ctx *ctx, ts_module *const *cand, int runs, int k, const ts_dataset *val,
                             const ts_best_of_config *cfg, ts_best_of_report *rep, ts_model **out);

/* ---- patching a weak model (CNNSplitter, docs/modules.md "Patching a weak model") */
/* How the module's score s becomes the target's output. */
typedef enum ts_patch_rescale {
    TS_PATCH_MINMAX = 0,   /* (s - min) / (max - min) over the training data: CNNSplitter's rule */
    TS_PATCH_POSTERIOR = 1 /* sigmoid(a s + b): logistic regression of "is the target" on s over the training
                            * data (labels as the weak model's), so the output is a probability like the
                            * weak model's softmax entries it sits beside */
} ts_patch_rescale;
typedef struct ts_patch_config {
    int batch;               /* inference batch for the score range (256; at most 256) */
    ts_patch_rescale rescale;/* TS_PATCH_MINMAX */
    const char *weak_name;   /* recorded as "patch.weak" (the weak model's file; NULL: not recorded) */
    const char *module_name; /* recorded in "patch.module" (the module's file; NULL: "") */
} ts_patch_config;
void ts_patch_config_default(ts_patch_config *cfg);

typedef struct ts_patch_report {
    float score_min, score_max; /* the module's score range on the training data */
    int64_t range_samples;      /* samples with a finite score, over which the range was taken */
    int renormalized;           /* the module's origin normalizes inputs differently: an exact affine was added */
    float a, b;                 /* the target's output is a s + b (minmax), or sigmoid(a s + b) (posterior) */
} ts_patch_report;

/* A new model: the weak model's softmax over its classes with the entry of class
 * `target` replaced by the module's score rescaled (cfg->rescale) over `train`, data of
 * the weak model's input shape: to [0, 1] by the least and greatest score it gives
 * there (labels unused), or to the class's probability by a logistic regression on
 * it (labels as the weak model's); the prediction is the argmax. The module may come from any model (other classes,
 * other data) with the same input shape and channel count; the weak model's
 * metadata is kept, the module's provenance added ("patch.class", "patch.module",
 * "patch.range"). Refused: target out of range, another input shape, a score that is
 * constant on train. progress: samples scored for the range. rep may be NULL. */
ts_status ts_patch(ts_ctx *ctx, const ts_model *weak, int target, const ts_module *mod, const ts_dataset *train,
                   const ts_patch_config *cfg, ts_progress_fn progress, void *user, ts_model **out,
                   ts_patch_report *rep);
/* The patched class of a model made by ts_patch, or -1 for any other model (also one
 * whose metadata says "patch.class" without a weak softmax of one value per class). */
int ts_patch_target(const ts_model *m);

typedef struct ts_patch_eval {
    double precision, recall, f1; /* of the target class */
    double others;                /* top-1 on the samples of the other classes */
    double top1;                  /* top-1 on all samples */
    int64_t target_count, other_count;
} ts_patch_eval;
/* A patched model on ds (labels as the weak model's): its figures, and those of the
 * weak model inside it (its softmax, argmax over all its classes), in one pass. */
ts_status ts_patch_evaluate(ts_ctx *ctx, ts_model *patched, const ts_dataset *ds, int batch, ts_patch_eval *weak,
                            ts_patch_eval *out);

/* Re-tuning for reuse across datasets ("continuous learning"): re-runs tangling
 * identification with `neg` (preprocessed by the module's own preprocessing) as
 * negatives, restoring units they activate, then fits the score calibration
 * (scale, shift) by logistic regression on `pos` (the module's class) against `neg`.
 * pos/neg: datasets of the module's input shape; every sample of neg is a negative,
 * every sample of pos a positive. */
ts_status ts_module_retune(ts_ctx *ctx, ts_module *mod, const ts_dataset *pos, const ts_dataset *neg, int batch);
/* The same for a module of a text classifier, calibration only: scale and shift by
 * the same logistic regression, on the texts of ds labelled `label` (positives)
 * against those of its other labels, the first per_class of each label (every text
 * with per_class < 1); threshold 0. No unit is restored: the recurrent rule ranks
 * units by activation, it has no "active on a negative" to undo. ds reads the
 * module's vocabulary and length; its labels need not be the origin's (a composed
 * model's set, relabelled). Refused for sets other than classification sets;
 * TS_EDIVERGED when the module's scores on one side are all NaN or infinite. The module
 * is unchanged on any failure. */
ts_status ts_module_retune_text(ts_ctx *ctx, ts_module *mod, const ts_text_dataset *ds, int label, int64_t per_class,
                                int batch);

/* The evaluation set of a composed model: for output j, the samples of its
 * module's class from that module's dataset (loaded as ts_dataset_load does),
 * labelled j; at most per_class_limit each (0: all). */
ts_status ts_composed_dataset(ts_ctx *ctx, const ts_model *composed, ts_split split, const char *data_dir,
                              int64_t per_class_limit, ts_dataset **out);

/* Binary accuracy of a module on ds (labels as in its origin): on inputs of its
 * class (true-positive rate) and on the rest (true-negative rate), answering yes
 * when the score exceeds info.threshold. */
ts_status ts_module_evaluate(ts_ctx *ctx, const ts_module *mod, const ts_dataset *ds, int batch, double *own,
                             double *rest);

/* ---------------------------------------------------------------- pruning */

/* Structured pruning: whole conv2d/dense filters (output channels) removed, with the
 * batch-norm channels and the next layers' input channels they feed (docs/pruning.md).
 * Channels that residual additions tie together (everything an `add` joins, through
 * channel-wise layers) form one group, pruned together at the same indices; a group
 * that reaches the model's output, its input or a layer pruning does not know (a
 * reshape, a recurrent layer, a grouped convolution that is not depthwise) is left
 * whole. Complexity is counted per sample over the whole network: parameters as
 * ts_model_param_count, FLOPs as 2 x the MACs `tessera info` sums, memory as the
 * authors' torchscope fork does, (3 x parameters + 2 x output values) x 4 bytes per
 * layer. */
typedef enum ts_prune_mode { TS_PRUNE_PARAMS = 0, TS_PRUNE_FLOPS = 1, TS_PRUNE_MEMORY = 2 } ts_prune_mode;

typedef struct ts_prune_config {
    ts_prune_mode mode;
    double target;  /* share of the mode's complexity to remove, 0 < target < 1 */
    uint64_t seed;  /* ts_prune_arch: the layer sampling and the new model's initialization */
    double chunk;   /* ts_prune_arch: filters removed per draw, as a share of the layer's
                     * original count (at least 1 filter; 0: one filter) */
    int multiple;   /* 0 or 1: any width; N > 1: a narrowed group keeps a multiple of N
                     * channels, at least N (a group narrower than N stays whole), so the
                     * widths suit blocked kernels (16 for AVX-512's nChw16c, 8 for AVX2) */
} ts_prune_config;
void ts_prune_config_default(ts_prune_config *cfg); /* flops, 0.5, seed 0, one filter a draw, any width */

typedef struct ts_prune_layer {
    char name[64];       /* a conv2d or dense layer of the model */
    int group;           /* its channel group, -1 when it is not pruned (left whole) */
    int64_t before, after; /* output channels */
} ts_prune_layer;

typedef struct ts_prune_report {
    int64_t params_before, params_after;  /* trainable scalars */
    int64_t macs_before, macs_after;      /* per sample */
    int64_t memory_before, memory_after;  /* bytes per sample, as above */
    double target, achieved;              /* share of the mode's complexity removed */
    int groups;                           /* channel groups that could be pruned */
    int draws;                            /* ts_prune_arch: layers drawn; ts_prune_model: 0 */
    double ratio;                         /* ts_prune_model: share of each group's channels removed */
    int multiple;                         /* cfg->multiple the widths kept to (1: any) */
    int nlayers;
    ts_prune_layer *layers;               /* (nlayers) malloc'ed: ts_prune_report_free */
} ts_prune_report;
void ts_prune_report_free(ts_prune_report *rep);

/* Complexity-driven pruning at initialization (Zawish, Davy & Abraham, 2022): each
 * prunable conv2d/dense layer l weighs C_l / sum C (its own parameters, FLOPs or
 * memory, recounted after every draw on the architecture as pruned so far); a layer
 * is drawn at random in proportion to its weight (seeded) and its group loses
 * `chunk` filters (down to a multiple of cfg->multiple), keeping at least one (or
 * `multiple`), until the share of the whole network's
 * complexity removed reaches the target. *out is the narrower architecture, newly
 * initialized from the seed, to be trained from scratch (its text:
 * ts_model_arch_text; ts_arch_save writes it). Only m's layers are read. TS_EINVAL
 * when the target is out of range or cannot be reached. rep may be NULL. */
ts_status ts_prune_arch(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, ts_model **out,
                        ts_prune_report *rep);
/* Magnitude pruning of a trained model (Li et al., ICLR'17): the channels of each
 * group ranked by the L1 norm of their filters (per weight, summed over the group's
 * layers); one ratio r for every group, the smallest (in steps of 1/1000) whose
 * removal reaches the target, drops the floor(r x channels) weakest of each
 * (keeping at least one; with cfg->multiple, the width kept rounded down to a multiple
 * of it, at least it). The result is m with those channels zeroed and then
 * physically cut out: an ordinary smaller model with m's weights for what is left
 * and m's metadata, to fine-tune (`tessera train --init`). cfg->seed and chunk are
 * not used. */
ts_status ts_prune_model(ts_ctx *ctx, const ts_model *m, const ts_prune_config *cfg, ts_model **out,
                         ts_prune_report *rep);
/* Writes m's architecture text to path as tessera writes every file (below). */
ts_status ts_arch_save(ts_ctx *ctx, const ts_model *m, const char *path);

/* ------------------------------------------------------------ checkpoints */

/* A checkpoint is a model file plus the trainer's state (optimizer buffers, epoch,
 * step, configuration, seeds): resuming continues bit-identically. */
ts_status ts_checkpoint_save(ts_ctx *ctx, const ts_trainer *tr, const char *path);
/* Loads a checkpoint into a model and returns the training configuration it was
 * made with (so the caller can reload the same datasets). */
ts_status ts_checkpoint_load_model(ts_ctx *ctx, const char *path, ts_model **model, ts_train_config *cfg);
/* Restores optimizer state and position from the checkpoint into a trainer created
 * for the model returned by ts_checkpoint_load_model. */
ts_status ts_checkpoint_restore(ts_ctx *ctx, ts_trainer *tr, const char *path);
/* The context settings that change results, as the checkpoint recorded them when it
 * was saved: resuming bit-identically needs the same. threads is 0 in a checkpoint
 * from before they were recorded (then nothing is known). A checkpoint is never
 * saved from a run that diverged (TS_EDIVERGED). */
typedef struct ts_run_settings {
    int threads;
    ts_backend backend;
    int bf16;
} ts_run_settings;
ts_status ts_checkpoint_settings(ts_ctx *ctx, const char *path, ts_run_settings *out);

/* ------------------------------------------------------------------ files */

/* Every file tessera writes (models, checkpoints, modules, ONNX) is written whole to
 * a new temporary in the target's folder, created exclusively and never through a
 * link (NAME.tmp.PID.XXXXXX, NAME shortened when the whole would pass 255 bytes),
 * synced, renamed over the target, and the folder synced. An existing target keeps
 * its mode (and, where allowed, its owner); one the user could not write (for root:
 * one with no write bit) is refused unless ts_ctx_set_force. Temporaries that dead
 * processes left for the same target are removed first, each with a note. */

/* TS_OK when path could be written so: its folder exists, it is not a folder, and it
 * is not write-protected (unless forced). Writes nothing: a check to run before
 * long work. */
ts_status ts_file_check_output(ts_ctx *ctx, const char *path);
/* Moves the file `from` over `to` in the same way (an atomic rename that keeps to's
 * mode and refuses a write-protected to; the folder synced afterwards). */
ts_status ts_file_replace(ts_ctx *ctx, const char *from, const char *to);

/* An advisory lock (flock) held while a process writes path, on PATH.lock beside it:
 * a second writer is refused (TS_EIO, "... is being written by another process (pid
 * N)"). The lock file is removed on unlock; one a killed process left is reused. */
typedef struct ts_file_lock ts_file_lock;
ts_status ts_file_lock_acquire(ts_ctx *ctx, const char *path, ts_file_lock **out);
void ts_file_lock_release(ts_file_lock *lock);

/* ------------------------------------------------------------------- ONNX */

/* A tensor read from an ONNX TensorProto file (the backend test data's
 * input_K.pb / output_K.pb): float32, float64 (kept as float32), int32 or int64. */
typedef struct ts_onnx_tensor ts_onnx_tensor;
ts_status ts_onnx_tensor_load(ts_ctx *ctx, const char *path, ts_onnx_tensor **out);
ts_status ts_onnx_tensor_parse(ts_ctx *ctx, const void *data, size_t size, const char *name, ts_onnx_tensor **out);
void ts_onnx_tensor_free(ts_onnx_tensor *t);
int ts_onnx_tensor_is_float(const ts_onnx_tensor *t);      /* float32/float64: values as floats */
int ts_onnx_tensor_rank(const ts_onnx_tensor *t);
int64_t ts_onnx_tensor_dim(const ts_onnx_tensor *t, int axis);
int64_t ts_onnx_tensor_numel(const ts_onnx_tensor *t);
const float *ts_onnx_tensor_floats(const ts_onnx_tensor *t); /* NULL unless float */

typedef struct ts_onnx_import_config {
    /* 1 (default): the input's first axis is the batch, the rest one sample's shape.
     * 0: the whole input tensor is one sample (models without a batch axis; the
     * model is then run with a batch of 1). k + 1 (k >= 1): the input's axis k is the
     * batch (a time-major sequence (T, N, F) is 2); the model takes and gives each
     * sample's values in the order of the other axes, batch first, and its metadata
     * onnx.output_batch_axis says which axis of the graph output the batch was. */
    int batch_axis;
    /* Values for graph inputs after the first (a tessera model has one input):
     * bind[i] feeds the (i+1)-th non-initializer graph input as a constant. */
    const ts_onnx_tensor *const *bind;
    int nbind;
    /* 1: refuse nodes whose ONNX inference output is random (Dropout with
     * training_mode=true), which tessera imports as training-only dropout */
    int exact_inference;
    /* Sizes for the input's axes (ndim 0: none given): one sample's shape in batch
     * mode, the whole tensor's in whole-tensor mode. They fill the axes the graph
     * leaves symbolic or unknown (a fully convolutional model's height and width, a
     * batch axis in whole-tensor mode); fixed axes must agree. */
    ts_shape input_shape;
} ts_onnx_import_config;
void ts_onnx_import_config_default(ts_onnx_import_config *cfg);

/* Reads an ONNX model (opsets 9 to 17) into a tessera model. Unsupported ops fail
 * with TS_EUNSUPPORTED naming the op type, the node and the opset. */
ts_status ts_onnx_import(ts_ctx *ctx, const char *path, const ts_onnx_import_config *cfg, ts_model **out);
/* The same from bytes in memory; `name` stands for the file in messages. */
ts_status ts_onnx_import_memory(ts_ctx *ctx, const void *data, size_t size, const char *name,
                                const ts_onnx_import_config *cfg, ts_model **out);
/* Lists every node the importer cannot convert, one line each ("OpType node 'name'
 * (opset N): why"), in *report (malloc'ed; free with ts_onnx_free). Returns TS_OK
 * when the whole model imports, TS_EUNSUPPORTED when something does not, or the
 * error that stopped reading. */
ts_status ts_onnx_check(ts_ctx *ctx, const char *path, const ts_onnx_import_config *cfg, char **report);
void ts_onnx_free(void *p);

/* Writes m as an ONNX model (opset 13; batch axis named "batch"). Inference
 * semantics: batch norm uses running statistics, dropout is identity. */
ts_status ts_onnx_export(ts_ctx *ctx, const ts_model *m, const char *path);

/* ----------------------------------------------------------------- images */

/* Reads a Netpbm image (PGM P5/P2 grayscale, PPM P6/P3 color, maxval <= 255) as
 * bytes (C, H, W) with C = 1 or 3. *pixels is malloc'ed; free with ts_image_free. */
ts_status ts_image_load_pnm(ts_ctx *ctx, const char *path, int *c, int *h, int *w, uint8_t **pixels);
void ts_image_free(uint8_t *pixels);

/* Images larger than this many pixels (width x height) are refused (TS_EUNSUPPORTED)
 * from their header, before any pixel memory is allocated: 8192 x 8192. */
#define TS_IMAGE_MAX_PIXELS (1L << 26)

/* Decodes a PNG, JPEG or PGM/PPM image, the format told by its first bytes, as bytes
 * (C, H, W), C = 1 (grayscale) or 3 (RGB) (docs/data.md, "Image files"): PNG of every
 * colour type and bit depth (alpha and transparency dropped, palettes expanded,
 * 16-bit scaled to 8), baseline and progressive JPEG (grayscale or colour; CMYK is
 * refused). `name` names the image in messages (a path). *pixels: free with
 * ts_image_free. TS_EFORMAT: not an image, corrupt or truncated; TS_EUNSUPPORTED:
 * too large, CMYK, or another format. */
ts_status ts_image_decode(ts_ctx *ctx, const char *name, const uint8_t *data, size_t len, int *c, int *h, int *w,
                          uint8_t **pixels);
/* ts_image_decode on the content of a file. */
ts_status ts_image_load(ts_ctx *ctx, const char *path, int *c, int *h, int *w, uint8_t **pixels);

/* Conversion and geometry on byte images (C, H, W), as PIL and torchvision do them
 * (docs/data.md, "Image transforms"). Outputs are the caller's. */
/* Channels 1 <-> 3: gray to RGB repeats the plane; RGB to gray is PIL's convert("L"):
 * (R*19595 + G*38470 + B*7471 + 32768) >> 16, ITU-R 601-2 luma. */
ts_status ts_image_convert(ts_ctx *ctx, const uint8_t *in /* (c,h,w) */, int c, int h, int w, int out_c,
                           uint8_t *out /* (out_c,h,w) */);
/* Bilinear resize to (oh, ow) exactly as PIL's Image.resize(BILINEAR) (what
 * torchvision's Resize does to a PIL image): a triangle filter widened by the scale
 * when shrinking (antialiased), 8-bit fixed-point weights, horizontal pass first. */
ts_status ts_image_resize(ts_ctx *ctx, const uint8_t *in /* (c,h,w) */, int c, int h, int w, int oh, int ow,
                          uint8_t *out /* (c,oh,ow) */);
/* The size torchvision's Resize(s) gives an h x w image: the shorter side becomes s,
 * the longer one s * longer / shorter, truncated. */
void ts_image_resize_shorter(int h, int w, int s, int *oh, int *ow);
/* The (oh, ow) window at torchvision's CenterCrop offsets (round((h-oh)/2), round half
 * to even, and the same across); oh <= h and ow <= w. */
ts_status ts_image_center_crop(ts_ctx *ctx, const uint8_t *in /* (c,h,w) */, int c, int h, int w, int oh, int ow,
                               uint8_t *out /* (c,oh,ow) */);
/* Brings any image to (C, H, W) as torchvision's eval transform Resize + CenterCrop:
 * channels converted, then resized so that it covers H x W with its aspect kept
 * (for H == W that is Resize(H)), then the center H x W. An image already H x W is
 * only converted. */
ts_status ts_image_fit(ts_ctx *ctx, const uint8_t *in /* (c,h,w) */, int c, int h, int w, int C, int H, int W,
                       uint8_t *out /* (C,H,W) */);

#ifdef __cplusplus
}
#endif
#endif
