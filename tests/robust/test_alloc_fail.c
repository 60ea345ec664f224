/* Allocation-failure injection. This binary is linked with
 * -Wl,--wrap=malloc,calloc,realloc,strdup,strndup,aligned_alloc,free (Makefile), so
 * every allocation libtessera's own code makes goes through the counter below
 * (allocations inside libdnnl, libprotobuf-c, libz, libgomp and libc are not
 * reached by --wrap and are not failed).
 *
 * A short flow through the public API runs once to count its allocations (N), then
 * once for each n in 1..N with the n-th allocation failing.
 * Every run must either fail with TS_ENOMEM and a message on its context, or
 * succeed with exactly the results of the undisturbed run (an allocation that was
 * optional), must not crash, and must free everything it allocated: the wrapper
 * tracks the live blocks of each run, and LeakSanitizer checks again at exit in the
 * ASan build.
 *
 * Six flows: the main one (flow_main lists its steps), every other layer kind
 * (flow_kinds), the import of a PyTorch MobileNetV2 export (flow_mobilenet), the
 * text datasets (flow_text), pruning (flow_prune) and image files and folders
 * (flow_images; libpng's and libjpeg's own allocations are not reached). The plain
 * build fails every allocation of each; the ASan build, slower, every 16th of the
 * MobileNetV2 import and every one of the others (asan_stride).
 *
 * For debugging: TESSERA_ALLOC_FAIL_FLOW=f runs only flow f (0-based),
 * TESSERA_ALLOC_FAIL_N=n only case n, TESSERA_ALLOC_FAIL_STRIDE=s every s-th case,
 * TESSERA_ALLOC_FAIL_VERBOSE=1 prints where each optional allocation was made. */
#include "common/test.h"
#include "onnx/onnx.pb-c.h"
#include "tessera.h"
#include "core/testing.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

/* ------------------------------------------------------------- the counter */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void __real_free(void *p);

/* Test-only process state: the wrapper cannot take a context. */
static atomic_int g_armed;        /* counting and tracking on */
static atomic_long g_calls;       /* allocation calls since arming */
static long g_fail_at;            /* the call that fails (0: none) */
static atomic_int g_failed_once;  /* the injected failure happened */
static void *g_fail_site;         /* return address of the failed call (TESSERA_ALLOC_FAIL_VERBOSE) */
static atomic_flag g_lock = ATOMIC_FLAG_INIT;

/* Live blocks allocated while armed: an open-addressing set of pointers. */
#define LIVE_CAP (1 << 18)
#define TOMB ((void *)1)
static void **g_live;
static long g_nlive;

static void lock(void) {
    while (atomic_flag_test_and_set_explicit(&g_lock, memory_order_acquire)) {
    }
}
static void unlock(void) { atomic_flag_clear_explicit(&g_lock, memory_order_release); }

static size_t slot_of(const void *p) {
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 40) & (LIVE_CAP - 1);
}

static void live_add(void *p) {
    if (!p || !g_live) return;
    lock();
    size_t i = slot_of(p);
    while (g_live[i] && g_live[i] != TOMB) i = (i + 1) & (LIVE_CAP - 1);
    g_live[i] = p;
    g_nlive++;
    unlock();
}

static void live_remove(void *p) {
    if (!p || !g_live) return;
    lock();
    size_t i = slot_of(p);
    for (size_t k = 0; k < LIVE_CAP && g_live[i]; k++, i = (i + 1) & (LIVE_CAP - 1))
        if (g_live[i] == p) {
            g_live[i] = TOMB;
            g_nlive--;
            break;
        }
    unlock();
}

/* 1 when this call is the one to fail; site is the wrapper's caller */
static int inject_at(void *site) {
    if (!atomic_load(&g_armed)) return 0;
    long n = atomic_fetch_add(&g_calls, 1) + 1;
    if (g_fail_at && n == g_fail_at) {
        atomic_store(&g_failed_once, 1);
        g_fail_site = site;
        return 1;
    }
    return 0;
}
#define inject() inject_at(__builtin_return_address(0))

static void *track(void *p) {
    if (p && atomic_load(&g_armed)) live_add(p);
    return p;
}

void *__wrap_malloc(size_t n) { return inject() ? NULL : track(__real_malloc(n)); }
void *__wrap_calloc(size_t n, size_t size) { return inject() ? NULL : track(__real_calloc(n, size)); }
char *__wrap_strdup(const char *s) { return inject() ? NULL : track(__real_strdup(s)); }
char *__wrap_strndup(const char *s, size_t n) { return inject() ? NULL : track(__real_strndup(s, n)); }
void *__wrap_aligned_alloc(size_t align, size_t n) { return inject() ? NULL : track(__real_aligned_alloc(align, n)); }

void *__wrap_realloc(void *p, size_t n) {
    if (inject()) return NULL; /* the old block stays valid, as realloc promises */
    void *q = __real_realloc(p, n);
    if (q && atomic_load(&g_armed)) {
        live_remove(p);
        live_add(q);
    }
    return q;
}

void __wrap_free(void *p) {
    if (p && atomic_load(&g_armed)) live_remove(p);
    __real_free(p);
}

static void arm(long fail_at) {
    memset(g_live, 0, LIVE_CAP * sizeof *g_live);
    g_nlive = 0;
    g_fail_at = fail_at;
    atomic_store(&g_failed_once, 0);
    atomic_store(&g_calls, 0);
    atomic_store(&g_armed, 1);
}

static void disarm(void) { atomic_store(&g_armed, 0); }

/* Which case a crash happened in: printed by the signal handler or ASan's death callback. */
static volatile long g_current = -1;

static void say_case(void) {
    char buf[96];
    int n = snprintf(buf, sizeof buf, "test_alloc_fail: died while failing allocation %ld\n", (long)g_current);
    if (n > 0 && write(2, buf, (size_t)n) < 0) {
    }
}

static void on_crash(int sig) {
    say_case();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ------------------------------------------------------------- the flow */

static const char *const ARCH = "input shape=1x8x8 classes=4\n"
                                "conv2d name=conv1 out=4 kernel=3 padding=1\n"
                                "batchnorm name=bn1\n"
                                "relu name=relu1\n"
                                "maxpool name=pool1 kernel=2\n"
                                "flatten name=flat\n"
                                "dense name=fc1 out=8\n"
                                "relu name=relu2\n"
                                "dense name=fc2 out=classes\n";

static char g_dir[] = "/tmp/tessera-allocfail-XXXXXX";
static ts_dataset *g_train, *g_testset;   /* made before arming, freed at the end */
static uint8_t *g_tiny_onnx;           /* a tiny ONNX graph, packed before arming */
static size_t g_tiny_len;
static float g_x[8192];                /* inputs for predictions */

typedef struct flow_result {
    double top1, loss;       /* evaluation of the reloaded model */
    float composed[4 * 2];   /* the composed model's scores on g_x */
    float onnx[4 * 4];       /* the re-imported ONNX model's logits on g_x */
    float dnnl[4 * 4];       /* the reloaded model's logits on g_x with oneDNN kernels */
    float retuned[4];        /* a re-tuned module's scores on g_x */
    int64_t composed_count;  /* samples in the composed model's evaluation set */
    int64_t cifar_count;
    float tensor[6];         /* a TensorProto file written and read back */
    int modules;
    float kinds[2][3 * 8];   /* flow_kinds: logits of each re-imported model on g_x */
    float mobilenet[2 * 10]; /* flow_mobilenet: logits on g_x */
    double text[8];          /* flow_text: counts, sizes, BLEU and an id checksum */
    float pruned[4 * 4];     /* flow_prune: the magnitude-pruned model's logits on g_x */
    int64_t pruned_counts[4]; /* flow_prune: MACs and parameters after each pruning */
    double images[4];        /* flow_images: shapes and pixel checksums */
} flow_result;

/* The context of a flow; on failure err says why. */
static ts_status flow_ctx(ts_ctx **ctx, char *err, size_t errsz) {
    ts_status st = ts_ctx_create(ctx);
    if (st) snprintf(err, errsz, "ts_ctx_create: %s", ts_status_name(st));
    return st;
}

#define TRY(expr)                       \
    do {                                \
        if ((st = (expr)) != TS_OK) goto done; \
    } while (0)

/* Steps: context; model from an architecture file; split; trainer (Adam, crop and
 * flip, validation) for 2 steps; checkpoint save, load and restore; model save and
 * load; evaluation; prediction with oneDNN kernels; decomposition into 4 modules;
 * module save, load and info; composition and prediction; the composed model's
 * evaluation set (from the IDX folder its modules record); module evaluation; re-tuning
 * and a module alone as a model; a module from a whole model; ONNX export, import
 * from file and prediction; ONNX check and import from memory of a tiny graph;
 * TensorProto save and load; an IDX dataset, a gzipped CIFAR-10 batch and a PGM
 * image from files. *err receives the context's message (or why nothing was made). */
static ts_status flow_main(flow_result *res, char *err, size_t errsz) {
    ts_ctx *ctx = NULL;
    ts_model *m = NULL, *m2 = NULL, *m3 = NULL, *ck = NULL, *composed = NULL, *tinym = NULL, *alone = NULL;
    ts_dataset *tr_part = NULL, *val_part = NULL, *idx = NULL, *cds = NULL, *cifar = NULL, *pos = NULL, *neg = NULL;
    ts_trainer *tr = NULL, *tr2 = NULL;
    ts_module **mods = NULL, *loaded = NULL, *whole = NULL;
    ts_onnx_tensor *tensor = NULL;
    int nmods = 0;
    char *report = NULL;
    uint8_t *pixels = NULL;
    ts_eval_report ev;
    memset(&ev, 0, sizeof ev);
    char path[512];
    ts_status st = flow_ctx(&ctx, err, errsz);
    if (st) return st;
    TRY(ts_ctx_set_backend(ctx, TS_BACKEND_REF));
    ts_shape in = {3, {1, 8, 8}};
    snprintf(path, sizeof path, "%s/tiny.arch", g_dir);
    TRY(ts_model_from_arch_file(ctx, path, &in, 4, 7, &m));
    TRY(ts_model_set_meta(ctx, m, "classes", "tl\ntr\nbl\nbr"));
    snprintf(path, sizeof path, "%s/d", g_dir);
    TRY(ts_model_set_meta(ctx, m, "data", path));
    TRY(ts_dataset_split(ctx, g_train, 8, 3, &tr_part, &val_part));

    ts_train_config cfg;

    ts_train_config_default(&cfg);
    cfg.epochs = 1;
    cfg.batch = 16;
    cfg.lr = 0.01f;
    ts_optim_config_default(&cfg.optim, TS_OPT_ADAM);
    cfg.crop_pad = 1;
    cfg.flip = 1;
    cfg.seed = 5;
    TRY(ts_trainer_create(ctx, m, tr_part, val_part, &cfg, &tr));
    TRY(ts_trainer_run(ctx, tr, NULL));
    snprintf(path, sizeof path, "%s/c.ckpt", g_dir);
    TRY(ts_checkpoint_save(ctx, tr, path));
    ts_train_config cfg2;
    TRY(ts_checkpoint_load_model(ctx, path, &ck, &cfg2));
    TRY(ts_trainer_create(ctx, ck, tr_part, val_part, &cfg2, &tr2));
    TRY(ts_checkpoint_restore(ctx, tr2, path));

    snprintf(path, sizeof path, "%s/m.tsr", g_dir);
    TRY(ts_model_save(ctx, m, path));
    TRY(ts_model_load(ctx, path, &m2));
    TRY(ts_evaluate(ctx, m2, g_testset, 16, &ev));
    res->top1 = ev.top1;
    res->loss = ev.loss;
    TRY(ts_ctx_set_backend(ctx, TS_BACKEND_DNNL));
    TRY(ts_model_predict(ctx, m2, g_x, 4, res->dnnl));
    TRY(ts_ctx_set_backend(ctx, TS_BACKEND_REF));

    ts_decompose_config dc;
    ts_decompose_config_default(&dc);
    dc.positives = 6;
    dc.confidence = 0.0f;
    dc.batch = 16;
    TRY(ts_decompose(ctx, m2, g_train, &dc, NULL, 0, NULL, NULL, &mods, &nmods));
    res->modules = nmods;
    snprintf(path, sizeof path, "%s/class0.tsm", g_dir);
    TRY(ts_module_set_origin(ctx, mods[0], "m.tsr"));
    TRY(ts_module_save(ctx, mods[0], path));
    TRY(ts_module_load(ctx, path, &loaded));
    ts_module_info mi;
    TRY(ts_module_info_get(loaded, &mi));
    ts_module *pair[2] = {loaded, mods[2]};
    ts_compose_config cc;
    ts_compose_config_default(&cc);
    TRY(ts_compose(ctx, pair, 2, &cc, &composed));
    TRY(ts_model_predict(ctx, composed, g_x, 4, res->composed));
    TRY(ts_composed_dataset(ctx, composed, TS_SPLIT_TEST, NULL, 0, &cds));
    res->composed_count = cds->count;
    double own, rest;
    TRY(ts_module_evaluate(ctx, mods[1], g_testset, 16, &own, &rest));
    int64_t pi[3] = {0, 1, 2}, ni[5] = {3, 4, 5, 6, 7};
    TRY(ts_dataset_subset(ctx, g_testset, pi, 3, &pos));
    TRY(ts_dataset_subset(ctx, g_testset, ni, 5, &neg));
    TRY(ts_module_retune(ctx, mods[3], pos, neg, 4));
    TRY(ts_module_model(ctx, mods[3], &alone));
    TRY(ts_model_predict(ctx, alone, g_x, 4, res->retuned));
    TRY(ts_module_from_model(ctx, m2, 1, &whole));

    snprintf(path, sizeof path, "%s/m.onnx", g_dir);
    TRY(ts_onnx_export(ctx, m2, path));
    TRY(ts_onnx_import(ctx, path, NULL, &m3));
    TRY(ts_model_predict(ctx, m3, g_x, 4, res->onnx));
    snprintf(path, sizeof path, "%s/tiny.onnx", g_dir);
    TRY(ts_onnx_check(ctx, path, NULL, &report));
    TRY(ts_onnx_import_memory(ctx, g_tiny_onnx, g_tiny_len, "tiny.onnx", NULL, &tinym));
    snprintf(path, sizeof path, "%s/t.pb", g_dir);
    const float tv[6] = {1, -2, 3.5f, 4, 5, 6};
    const int64_t tdims[2] = {2, 3};
    TRY(ts_onnx_tensor_save(ctx, path, "t", tdims, 2, tv));
    TRY(ts_onnx_tensor_load(ctx, path, &tensor));
    memcpy(res->tensor, ts_onnx_tensor_floats(tensor), sizeof res->tensor);

    snprintf(path, sizeof path, "%s/d/t10k-images-idx3-ubyte", g_dir);
    TRY(ts_dataset_load(ctx, path, TS_SPLIT_TEST, NULL, &idx));
    snprintf(path, sizeof path, "%s/c10", g_dir);
    TRY(ts_dataset_load(ctx, path, TS_SPLIT_TEST, NULL, &cifar));
    res->cifar_count = cifar->count;
    int c, h, w;
    snprintf(path, sizeof path, "%s/x.pgm", g_dir);
    TRY(ts_image_load_pnm(ctx, path, &c, &h, &w, &pixels));
done:
    if (st) snprintf(err, errsz, "%s", ts_ctx_error(ctx));
    ts_image_free(pixels);
    ts_dataset_free(cifar);
    ts_dataset_free(idx);
    ts_onnx_tensor_free(tensor);
    ts_module_free(whole);
    ts_model_free(alone);
    ts_dataset_free(pos);
    ts_dataset_free(neg);
    ts_dataset_free(cds);
    ts_model_free(tinym);
    ts_onnx_free(report);
    ts_model_free(m3);
    ts_model_free(composed);
    ts_module_free(loaded);
    ts_modules_free(mods, nmods);
    ts_eval_report_free(&ev);
    ts_model_free(m2);
    ts_trainer_free(tr2);
    ts_model_free(ck);
    ts_trainer_free(tr);
    ts_dataset_free(tr_part);
    ts_dataset_free(val_part);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return st;
}

/* Architectures with every other layer kind (tests/onnx/test_onnx.c round-trips them). */
static const char *const KINDS_ARCH[2] = {
    "input shape=2x6x6 classes=3\n"
    "conv2d name=c out=4 kernel=3 padding=1,0,1,2 bias=1\n"
    "prelu name=p shape=4x1x1\n"
    "maxpool name=mp kernel=2 stride=1 padding=0,0,1,1\n"
    "elu name=e alpha=0.5\n"
    "clip name=cl min=-1 max=2\n"
    "transpose name=t perm=0,2,1\n"
    "pad name=pd pads=0,1,0,0,0,1 mode=reflect\n"
    "binary name=b op=mul const=1x1x7\n"
    "binary name=b2 op=sub const=7x7 const_first=1\n"
    "selu name=s\n"
    "hardsigmoid name=h\n"
    "reshape name=r shape=4x49\n"
    "matmul name=mm b=49x5\n"
    "logsoftmax name=ls axis=0\n"
    "flatten name=f\n"
    "dense name=fc out=classes\n",
    "input shape=3x8x8 classes=3\n"
    "conv2d name=c1 out=4 kernel=3 padding=1\n"
    "batchnorm name=bn\n"
    "relu name=r\n"
    "mask name=mk\n"
    "conv2d name=c2 out=4 kernel=3 padding=1 in=r groups=2\n"
    "concat name=cat in=mk,c2 axis=0\n"
    "tanh name=t\n"
    "avgpool name=ap kernel=2 padding=0,0,1,1 count_include_pad=0\n"
    "constant name=k shape=8x4x4 in=ap\n"
    "add name=a in=ap,k\n"
    "sigmoid name=s\n"
    "leakyrelu name=lr slope=0.1\n"
    "convtranspose name=ct out=3 kernel=3 stride=2 padding=1,0,0,1 output_padding=1\n"
    "relu name=r2\n"
    "globalmaxpool name=g\n"
    "dropout name=d p=0.3\n"
    "dense name=fc out=classes\n"};

/* For each architecture: model from text; one training step through the building
 * blocks (forward in training mode, loss, backward, SGD with Nesterov momentum);
 * save and load; ONNX export, import and prediction. */
static ts_status flow_kinds(flow_result *res, char *err, size_t errsz) {
    ts_ctx *ctx = NULL;
    ts_model *m = NULL, *m2 = NULL, *m3 = NULL;
    ts_optimizer *opt = NULL;
    char path[512];
    ts_status st = flow_ctx(&ctx, err, errsz);
    if (st) return st;
    TRY(ts_ctx_set_backend(ctx, TS_BACKEND_REF));
    for (int a = 0; a < 2; a++) {
        float logits[3 * 3], dlogits[3 * 3];
        int32_t y[3] = {0, 2, 1};
        TRY(ts_model_from_arch(ctx, KINDS_ARCH[a], "kinds.arch", NULL, 0, 3, &m));
        TRY(ts_model_forward_train(ctx, m, g_x, 3, logits, 9));
        ts_softmax_cross_entropy(3, 3, logits, y, 0.1f, dlogits);
        TRY(ts_model_backward(ctx, m, dlogits));
        ts_optim_config oc;
        ts_optim_config_default(&oc, TS_OPT_SGD);
        oc.nesterov = 1;
        oc.weight_decay = 1e-4f;
        TRY(ts_optimizer_create(ctx, m, &oc, &opt));
        TRY(ts_optimizer_step(ctx, opt, 0.01f));
        snprintf(path, sizeof path, "%s/k%d.tsr", g_dir, a);
        TRY(ts_model_save(ctx, m, path));
        TRY(ts_model_load(ctx, path, &m2));
        snprintf(path, sizeof path, "%s/k%d.onnx", g_dir, a);
        TRY(ts_onnx_export(ctx, m2, path));
        TRY(ts_onnx_import(ctx, path, NULL, &m3));
        TRY(ts_model_predict(ctx, m3, g_x, 3, res->kinds[a]));
        ts_optimizer_free(opt);
        ts_model_free(m);
        ts_model_free(m2);
        ts_model_free(m3);
        opt = NULL;
        m = m2 = m3 = NULL;
    }
done:
    if (st) snprintf(err, errsz, "%s", ts_ctx_error(ctx));
    ts_optimizer_free(opt);
    ts_model_free(m);
    ts_model_free(m2);
    ts_model_free(m3);
    ts_ctx_free(ctx);
    return st;
}

/* A PyTorch MobileNetV2-style training-mode export (depthwise convolutions, ReLU6 as
 * Clip, residual adds, batch norm, dropout; tests/fixtures/onnx): check, import,
 * predict, export. */
static ts_status flow_mobilenet(flow_result *res, char *err, size_t errsz) {
    ts_ctx *ctx = NULL;
    ts_model *m = NULL;
    char *report = NULL;
    char path[512];
    const char *src = "tests/fixtures/onnx/mobilenetv2_train.onnx";
    ts_status st = flow_ctx(&ctx, err, errsz);
    if (st) return st;
    TRY(ts_ctx_set_backend(ctx, TS_BACKEND_REF));
    TRY(ts_onnx_check(ctx, src, NULL, &report));
    TRY(ts_onnx_import(ctx, src, NULL, &m));
    ts_shape in = ts_model_input_shape(m);
    if (ts_shape_numel(&in) * 2 > (int64_t)(sizeof g_x / sizeof g_x[0]) || ts_model_classes(m) > 10) {
        st = ts_ctx_set_error(ctx, TS_EINVAL, "%s: unexpected input or output size", src);
        goto done;
    }
    TRY(ts_model_predict(ctx, m, g_x, 2, res->mobilenet));
    snprintf(path, sizeof path, "%s/mb.onnx", g_dir);
    TRY(ts_onnx_export(ctx, m, path));
done:
    if (st) snprintf(err, errsz, "%s", ts_ctx_error(ctx));
    ts_onnx_free(report);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return st;
}

/* Text datasets: CLINC150-shaped JSON and gzipped sentence pairs loaded (the second
 * with the first's vocabulary), split, the vocabulary saved, parsed, encoding and
 * decoding, tokenizing and corpus BLEU. */
static ts_status flow_text(flow_result *res, char *err, size_t errsz) {
    ts_ctx *ctx = NULL;
    ts_text_dataset *ds = NULL, *pairs = NULL, *a = NULL, *b = NULL;
    ts_vocab *v = NULL;
    char *saved = NULL, *text = NULL, *tokens = NULL, path[512];
    ts_status st = flow_ctx(&ctx, err, errsz);
    if (st) return st;
    snprintf(path, sizeof path, "%s/intents.json", g_dir);
    TRY(ts_text_dataset_load(ctx, path, TS_SPLIT_TRAIN, NULL, NULL, &ds));
    TRY(ts_text_dataset_split(ctx, ds, 1, 3, &a, &b));
    ts_text_options opt;
    ts_text_options_default(&opt);
    opt.vocab = ds->vocab;
    snprintf(path, sizeof path, "%s/pairs.txt.gz", g_dir);
    TRY(ts_text_dataset_load(ctx, path, TS_SPLIT_TRAIN, NULL, &opt, &pairs));
    TRY(ts_vocab_save(ctx, ds->vocab, &saved));
    TRY(ts_vocab_parse(ctx, saved, strlen(saved), &v));
    int32_t ids[16];
    int n = 0, count = 0;
    TRY(ts_vocab_encode(ctx, v, "Play some JAZZ, please", ids, 16, &n));
    TRY(ts_vocab_decode(ctx, v, ids, n, &text));
    TRY(ts_text_tokenize(ctx, "Caf\xc3\xa9 don't \xff", &tokens, &count));
    const char *hyp[] = {"a b c d e f", "le chat est sur le tapis rouge"};
    const char *ref[] = {"a b c d e f g h", "le chat est sur le tapis"};
    TRY(ts_corpus_bleu_text(ctx, hyp, ref, 2, 1, &res->text[0]));
    res->text[1] = (double)ds->count + 100.0 * ds->classes + 1e4 * a->count;
    res->text[2] = (double)pairs->count + 100.0 * pairs->target_len + 1e4 * ts_vocab_size(pairs->target_vocab);
    res->text[3] = ts_vocab_size(v) + 100.0 * n + 1e4 * count + 1e6 * (double)strlen(text) +
                   1e8 * (double)strlen(tokens);
    for (int64_t i = 0; i < ds->count * ds->max_len; i++) res->text[4] += (double)(ds->tokens[i] * (i + 1));
    for (int64_t i = 0; i < pairs->count * pairs->target_len; i++)
        res->text[5] += (double)(pairs->targets[i] * (i + 1));
done:
    if (st) snprintf(err, errsz, "%s", ts_ctx_error(ctx));
    ts_text_dataset_free(ds);
    ts_text_dataset_free(pairs);
    ts_text_dataset_free(a);
    ts_text_dataset_free(b);
    ts_vocab_free(v);
    ts_text_free(saved);
    ts_text_free(text);
    ts_text_free(tokens);
    ts_ctx_free(ctx);
    return st;
}

/* Pruning: a residual architecture pruned at initialization (ts_prune_arch, its text
 * written with ts_arch_save), and by filter norms (ts_prune_model) then predicting. */
static ts_status flow_prune(flow_result *res, char *err, size_t errsz) {
    static const char *const RES_ARCH = "input shape=1x8x8 classes=4\n"
                                        "conv2d name=c1 out=6 kernel=3 padding=1 bias=0\n"
                                        "batchnorm name=bn1\n"
                                        "relu name=r1\n"
                                        "conv2d name=c2 out=6 kernel=3 padding=1 bias=0\n"
                                        "batchnorm name=bn2\n"
                                        "add name=a in=bn2,r1\n"
                                        "relu name=r2\n"
                                        "flatten name=f\n"
                                        "dense name=fc1 out=8\n"
                                        "relu name=r3\n"
                                        "dense name=fc out=classes\n";
    ts_ctx *ctx = NULL;
    ts_model *m = NULL, *arch = NULL, *pruned = NULL;
    ts_prune_report r1, r2;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    char path[512];
    ts_status st = flow_ctx(&ctx, err, errsz);
    if (st) return st;
    TRY(ts_ctx_set_backend(ctx, TS_BACKEND_REF));
    TRY(ts_model_from_arch(ctx, RES_ARCH, "res.arch", NULL, 0, 3, &m));
    ts_prune_config cfg;
    ts_prune_config_default(&cfg);
    cfg.target = 0.4;
    cfg.seed = 2;
    TRY(ts_prune_arch(ctx, m, &cfg, &arch, &r1));
    snprintf(path, sizeof path, "%s/pruned.arch", g_dir);
    TRY(ts_arch_save(ctx, arch, path));
    cfg.mode = TS_PRUNE_MEMORY;
    TRY(ts_prune_model(ctx, m, &cfg, &pruned, &r2));
    TRY(ts_model_predict(ctx, pruned, g_x, 4, res->pruned));
    res->pruned_counts[0] = r1.macs_after;
    res->pruned_counts[1] = r1.params_after;
    res->pruned_counts[2] = r2.macs_after;
    res->pruned_counts[3] = r2.params_after;
done:
    if (st) snprintf(err, errsz, "%s", ts_ctx_error(ctx));
    ts_prune_report_free(&r1);
    ts_prune_report_free(&r2);
    ts_model_free(pruned);
    ts_model_free(arch);
    ts_model_free(m);
    ts_ctx_free(ctx);
    return st;
}

/* An image folder (PNG and JPEG files of two sizes, from tests/fixtures/images) at a
 * shape that resizes, converts and crops; a file decoded and fitted alone. */
static ts_status flow_images(flow_result *res, char *err, size_t errsz) {
    ts_ctx *ctx = NULL;
    ts_dataset *ds = NULL;
    uint8_t *px = NULL, fitted[3 * 5 * 6];
    char path[512];
    ts_status st = flow_ctx(&ctx, err, errsz);
    if (st) return st;
    TRY(ts_ctx_set_image_shape(ctx, 1, 6, 5));
    snprintf(path, sizeof path, "%s/imgs", g_dir);
    TRY(ts_dataset_load(ctx, path, TS_SPLIT_TRAIN, NULL, &ds));
    int c, h, w;
    snprintf(path, sizeof path, "%s/imgs/b/p.jpg", g_dir);
    TRY(ts_image_load(ctx, path, &c, &h, &w, &px));
    TRY(ts_image_fit(ctx, px, c, h, w, 3, 5, 6, fitted));
    res->images[0] = (double)ds->count + 100.0 * ds->classes + 1e4 * c + 1e5 * h + 1e7 * w;
    for (int64_t i = 0; i < ds->count * 6 * 5; i++) res->images[1] += (double)ds->images[i] * (double)(i + 1);
    for (int i = 0; i < 3 * 5 * 6; i++) res->images[2] += (double)fitted[i] * (i + 1);
    res->images[3] = (double)strlen(ds->class_names[0]) + 10.0 * ds->labels[ds->count - 1];
done:
    if (st) snprintf(err, errsz, "%s", ts_ctx_error(ctx));
    ts_image_free(px);
    ts_dataset_free(ds);
    ts_ctx_free(ctx);
    return st;
}

typedef struct flow_def {
    const char *name;
    ts_status (*run)(flow_result *res, char *err, size_t errsz);
    int asan_stride; /* in the ASan build, fail every this-many-th allocation (time) */
} flow_def;

static const flow_def FLOWS[] = {
    {"train-save-load-decompose-compose-ONNX-evaluate", flow_main, 1},
    {"every other layer kind: train step, save, load, ONNX", flow_kinds, 1},
    {"ONNX import of a MobileNetV2 export", flow_mobilenet, 16},
    {"text datasets, vocabulary, BLEU", flow_text, 1},
    {"pruning at initialization and by filter norms", flow_prune, 1},
    {"image files and an image folder", flow_images, 1},
};
#define NFLOWS ((int)(sizeof FLOWS / sizeof FLOWS[0]))

/* ------------------------------------------------------------- set-up */

/* x (N,4) -> Mul by w -> Gemm (4 -> 3) -> Relu -> y, built with protobuf-c */
static void make_tiny_onnx(void) {
    Onnx__ModelProto mp;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op, *ops[1] = {&op};
    onnx__model_proto__init(&mp);
    onnx__graph_proto__init(&g);
    onnx__operator_set_id_proto__init(&op);
    op.has_version = 1;
    op.version = 13;
    op.domain = (char *)"";
    mp.n_opset_import = 1;
    mp.opset_import = ops;
    mp.has_ir_version = 1;
    mp.ir_version = 7;
    mp.graph = &g;
    g.name = (char *)"tiny";
    Onnx__TensorShapeProto__Dimension d[2], *pd[2] = {&d[0], &d[1]};
    for (int k = 0; k < 2; k++) {
        onnx__tensor_shape_proto__dimension__init(&d[k]);
        d[k].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d[k].dim_value = k ? 4 : 1;
    }
    Onnx__TensorShapeProto sp;
    onnx__tensor_shape_proto__init(&sp);
    sp.n_dim = 2;
    sp.dim = pd;
    Onnx__TypeProto__Tensor tt;
    onnx__type_proto__tensor__init(&tt);
    tt.has_elem_type = 1;
    tt.elem_type = 1;
    tt.shape = &sp;
    Onnx__TypeProto tp;
    onnx__type_proto__init(&tp);
    tp.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp.tensor_type = &tt;
    Onnx__ValueInfoProto vin, vout, *pin[1] = {&vin}, *pout[1] = {&vout};
    onnx__value_info_proto__init(&vin);
    onnx__value_info_proto__init(&vout);
    vin.name = (char *)"x";
    vin.type = &tp;
    vout.name = (char *)"y";
    g.n_input = 1;
    g.input = pin;
    g.n_output = 1;
    g.output = pout;
    /* initializers: w (4), gw (3,4), gb (3) */
    static float wv[4] = {1, -2, 0.5f, 3}, gwv[12] = {1, 0, 0, 1, 0, 1, 1, 0, -1, 1, 0, 1}, gbv[3] = {0.1f, 0, -0.1f};
    static int64_t wd[1] = {4}, gwd[2] = {3, 4}, gbd[1] = {3};
    Onnx__TensorProto t[3], *pt[3] = {&t[0], &t[1], &t[2]};
    const char *tn[3] = {"w", "gw", "gb"};
    float *tv[3] = {wv, gwv, gbv};
    int64_t *td[3] = {wd, gwd, gbd};
    size_t tnd[3] = {1, 2, 1}, tcount[3] = {4, 12, 3};
    for (int k = 0; k < 3; k++) {
        onnx__tensor_proto__init(&t[k]);
        t[k].name = (char *)tn[k];
        t[k].n_dims = tnd[k];
        t[k].dims = td[k];
        t[k].has_data_type = 1;
        t[k].data_type = 1;
        t[k].n_float_data = tcount[k];
        t[k].float_data = tv[k];
    }
    g.n_initializer = 3;
    g.initializer = pt;
    Onnx__NodeProto n[3], *pn[3] = {&n[0], &n[1], &n[2]};
    char *in0[2] = {(char *)"x", (char *)"w"}, *out0[1] = {(char *)"h"};
    char *in1[3] = {(char *)"h", (char *)"gw", (char *)"gb"}, *out1[1] = {(char *)"g"};
    char *in2[1] = {(char *)"g"}, *out2[1] = {(char *)"y"};
    const char *types[3] = {"Mul", "Gemm", "Relu"};
    char **ins[3] = {in0, in1, in2}, **outs[3] = {out0, out1, out2};
    size_t nins[3] = {2, 3, 1};
    Onnx__AttributeProto tb, *ptb[1] = {&tb};
    onnx__attribute_proto__init(&tb);
    tb.name = (char *)"transB";
    tb.has_type = 1;
    tb.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    tb.has_i = 1;
    tb.i = 1;
    for (int k = 0; k < 3; k++) {
        onnx__node_proto__init(&n[k]);
        n[k].op_type = (char *)types[k];
        n[k].name = (char *)types[k];
        n[k].n_input = nins[k];
        n[k].input = ins[k];
        n[k].n_output = 1;
        n[k].output = outs[k];
    }
    n[1].n_attribute = 1;
    n[1].attribute = ptb;
    g.n_node = 3;
    g.node = pn;
    g_tiny_len = onnx__model_proto__get_packed_size(&mp);
    g_tiny_onnx = malloc(g_tiny_len);
    if (g_tiny_onnx) onnx__model_proto__pack(&mp, g_tiny_onnx);
}

/* Files the flow reads: an IDX pair of 6 images of 8x8, a PGM image, the tiny ONNX graph. */
static int write_inputs(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/d", g_dir);
    if (mkdir(p, 0755) != 0) return 0;
    uint8_t img[16 + 6 * 64], lab[8 + 6];
    test_put_be32(img, 0x803);
    test_put_be32(img + 4, 6);
    test_put_be32(img + 8, 8);
    test_put_be32(img + 12, 8);
    for (int i = 0; i < 6 * 64; i++) img[16 + i] = (uint8_t)(i * 37);
    test_put_be32(lab, 0x801);
    test_put_be32(lab + 4, 6);
    for (int i = 0; i < 6; i++) lab[8 + i] = (uint8_t)(i % 10);
    snprintf(p, sizeof p, "%s/d/t10k-images-idx3-ubyte", g_dir);
    int ok = test_write_file(p, img, sizeof img);
    snprintf(p, sizeof p, "%s/d/t10k-labels-idx1-ubyte", g_dir);
    ok = ok && test_write_file(p, lab, sizeof lab);
    char pgm[128 + 64];
    int n = snprintf(pgm, 128, "P5\n# x\n8 8\n255\n");
    for (int i = 0; i < 64; i++) pgm[n + i] = (char)(i * 3);
    snprintf(p, sizeof p, "%s/x.pgm", g_dir);
    ok = ok && test_write_file(p, pgm, (size_t)n + 64);
    snprintf(p, sizeof p, "%s/tiny.onnx", g_dir);
    ok = ok && g_tiny_onnx && test_write_file(p, g_tiny_onnx, g_tiny_len);
    snprintf(p, sizeof p, "%s/tiny.arch", g_dir);
    ok = ok && test_write_file(p, ARCH, strlen(ARCH));
    /* a CIFAR-10 test batch of 3 records, gzipped, and its class names */
    snprintf(p, sizeof p, "%s/c10", g_dir);
    if (!ok || mkdir(p, 0755) != 0) return 0;
    static uint8_t rec[3 * 3073];
    for (int i = 0; i < 3 * 3073; i++) rec[i] = (uint8_t)(i % 3073 == 0 ? i / 3073 : i * 13);
    snprintf(p, sizeof p, "%s/c10/test_batch.bin.gz", g_dir);
    gzFile gz = gzopen(p, "wb");
    ok = gz && gzwrite(gz, rec, sizeof rec) == (int)sizeof rec;
    if (gz && gzclose(gz) != Z_OK) ok = 0;
    const char *names = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
    snprintf(p, sizeof p, "%s/c10/batches.meta.txt", g_dir);
    ok = ok && test_write_file(p, names, strlen(names));
    /* text: intents (CLINC150's shape) and gzipped sentence pairs */
    const char *intents = "{\"train\": [[\"play some jazz\", \"music\"], [\"Caf\\u00e9 \\\"ok\\\"\", \"oos\"], "
                          "[\"what time is it\", \"time\"], [\"play it again\", \"music\"]], \"test\": []}";
    snprintf(p, sizeof p, "%s/intents.json", g_dir);
    ok = ok && test_write_file(p, intents, strlen(intents));
    const char *pairs = "Go.\tVa !\nPlay some jazz.\tJoue du jazz.\nRun!\tCours !\nWho?\tQui ?\nHi.\tSalut !\n";
    snprintf(p, sizeof p, "%s/pairs.txt.gz", g_dir);
    gz = ok ? gzopen(p, "wb") : NULL;
    ok = gz && gzwrite(gz, pairs, (unsigned)strlen(pairs)) == (int)strlen(pairs);
    if (gz && gzclose(gz) != Z_OK) ok = 0;
    /* images: imgs/a (two PNGs), imgs/b (a JPEG) */
    static const char *const imgs[][2] = {{"a/x.png", "rgb8.png"}, {"a/y.PNG", "palette4.png"}, {"b/p.jpg", "baseline.jpg"}};
    snprintf(p, sizeof p, "%s/imgs", g_dir);
    ok = ok && mkdir(p, 0755) == 0;
    for (int i = 0; ok && i < 2; i++) {
        snprintf(p, sizeof p, "%s/imgs/%s", g_dir, i ? "b" : "a");
        ok = mkdir(p, 0755) == 0;
    }
    for (int i = 0; ok && i < 3; i++) {
        char from[256];
        size_t len;
        snprintf(from, sizeof from, "tests/fixtures/images/%s", imgs[i][1]);
        uint8_t *b = test_read_file(from, &len);
        snprintf(p, sizeof p, "%s/imgs/%s", g_dir, imgs[i][0]);
        ok = b && test_write_file(p, b, len);
        free(b);
    }
    return ok;
}

static int same_result(const flow_result *a, const flow_result *b) {
    return a->top1 == b->top1 && a->loss == b->loss && a->modules == b->modules &&
           !memcmp(a->composed, b->composed, sizeof a->composed) && !memcmp(a->onnx, b->onnx, sizeof a->onnx) &&
           !memcmp(a->dnnl, b->dnnl, sizeof a->dnnl) && !memcmp(a->retuned, b->retuned, sizeof a->retuned) &&
           a->composed_count == b->composed_count && a->cifar_count == b->cifar_count &&
           !memcmp(a->tensor, b->tensor, sizeof a->tensor) && !memcmp(a->kinds, b->kinds, sizeof a->kinds) &&
           !memcmp(a->mobilenet, b->mobilenet, sizeof a->mobilenet) &&
           !memcmp(a->text, b->text, sizeof a->text) && !memcmp(a->pruned, b->pruned, sizeof a->pruned) &&
           !memcmp(a->pruned_counts, b->pruned_counts, sizeof a->pruned_counts) &&
           !memcmp(a->images, b->images, sizeof a->images);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void);
static long g_total[NFLOWS];
static flow_result g_base[NFLOWS];
static long g_ran_total, g_calls_total;

/* One undisturbed run of every flow counts its allocations; a second must make the
 * same count and results (the injection below relies on a deterministic order). */
static void test_baseline(void) {
    for (int f = 0; f < NFLOWS; f++) {
        char err[600] = "";
        memset(&g_base[f], 0, sizeof g_base[f]);
        arm(0);
        ts_status st = FLOWS[f].run(&g_base[f], err, sizeof err);
        disarm();
        g_total[f] = atomic_load(&g_calls);
        CHECK(st == TS_OK, "%s: the undisturbed flow fails: %s", FLOWS[f].name, err);
        CHECK(g_nlive == 0, "%s: the undisturbed flow leaves %ld blocks allocated", FLOWS[f].name, g_nlive);
        flow_result again;
        memset(&again, 0, sizeof again);
        arm(0);
        st = FLOWS[f].run(&again, err, sizeof err);
        disarm();
        CHECK(st == TS_OK && atomic_load(&g_calls) == g_total[f] && same_result(&again, &g_base[f]),
              "%s: a second undisturbed run differs: %ld allocations vs %ld", FLOWS[f].name, atomic_load(&g_calls),
              g_total[f]);
        if (st) g_total[f] = 0;
    }
    CHECK(g_base[0].modules == 4, "decomposition made %d modules", g_base[0].modules);
    CHECK(g_base[0].cifar_count == 3 && g_base[0].composed_count > 0 && g_base[0].tensor[2] == 3.5f,
          "CIFAR batch of %lld, composed evaluation set of %lld", (long long)g_base[0].cifar_count,
          (long long)g_base[0].composed_count);
}

static void inject_flow(int f) {
    long only = getenv("TESSERA_ALLOC_FAIL_N") ? atol(getenv("TESSERA_ALLOC_FAIL_N")) : 0;
    long stride = getenv("TESSERA_ALLOC_FAIL_STRIDE") ? atol(getenv("TESSERA_ALLOC_FAIL_STRIDE")) : 1;
    if (stride < 1) stride = 1;
#if defined(__SANITIZE_ADDRESS__)
    if (!getenv("TESSERA_ALLOC_FAIL_STRIDE")) stride = FLOWS[f].asan_stride;
#endif
    int verbose = getenv("TESSERA_ALLOC_FAIL_VERBOSE") != NULL;
    long ran = 0, failed_ok = 0, optional = 0, reported = 0;
    double t0 = now_s();
    const char *name = FLOWS[f].name;
    for (long n = only ? only : 1; n <= (only ? only : g_total[f]); n += stride) {
        flow_result r;
        memset(&r, 0, sizeof r);
        char err[600] = "";
        g_current = n;
        arm(n);
        ts_status st = FLOWS[f].run(&r, err, sizeof err);
        disarm();
        g_current = -1;
        ran++;
        int bad = 0;
        if (!atomic_load(&g_failed_once)) {
            CHECK(0, "%s: allocation %ld: the flow made only %ld allocations this time", name, n, atomic_load(&g_calls));
            bad = 1;
        } else if (st == TS_OK) {
            optional++;
            if (verbose)
                printf("%s: allocation %ld (called from main%+ld) was optional\n", name, n,
                       (long)((char *)g_fail_site - (char *)(uintptr_t)main));
            if (!same_result(&r, &g_base[f])) {
                CHECK(0, "%s: allocation %ld failed, the flow succeeded, but with different results", name, n);
                bad = 1;
            }
        } else if (st != TS_ENOMEM || !*err) {
            CHECK(0, "%s: allocation %ld: status %s, message '%s' (want out of memory with a message)", name, n,
                  ts_status_name(st), err);
            bad = 1;
        } else {
            failed_ok++;
        }
        if (g_nlive != 0) {
            CHECK(0, "%s: allocation %ld (%s): %ld blocks still allocated after every free", name, n, err, g_nlive);
            bad = 1;
        }
        if (bad && ++reported >= 20) {
            fprintf(stderr, "  (stopping after 20 failing cases)\n");
            break;
        }
    }
    g_ran_total += ran;
    g_calls_total += g_total[f];
    printf("%s: %ld allocations, %ld cases run (%ld failed with out of memory, %ld succeeded without the "
           "allocation), %.1fs\n",
           name, g_total[f], ran, failed_ok, optional, now_s() - t0);
}

static void test_every_allocation_fails(void) {
    const char *which = getenv("TESSERA_ALLOC_FAIL_FLOW"); /* only the flow with this index */
    for (int f = 0; f < NFLOWS; f++)
        if (g_total[f] > 0 && (!which || atoi(which) == f)) inject_flow(f);
    printf("allocation failure injection: %ld allocations in %d flows, %ld injection cases run\n", g_calls_total,
           NFLOWS, g_ran_total);
}

int main(void) {
    ts_ctx *setup = NULL;
    if (!test_begin(&setup, g_dir)) return 2;
    ts_ctx_free(setup);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    signal(SIGABRT, on_crash);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(say_case);
#endif
    g_live = calloc(LIVE_CAP, sizeof *g_live);
    g_train = test_quadrant_dataset(48, 11);
    g_testset = test_quadrant_dataset(16, 12);
    test_fill_uniform(g_x, sizeof g_x / sizeof g_x[0], 5, -1, 1);
    make_tiny_onnx();
    if (!g_live || !write_inputs()) {
        fprintf(stderr, "test_alloc_fail: set-up failed\n");
        return 2;
    }
    RUN(test_baseline);
    RUN(test_every_allocation_fails);
    test_free_dataset(g_train);
    test_free_dataset(g_testset);
    free(g_tiny_onnx);
    free(g_live);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END("test_alloc_fail");
}
