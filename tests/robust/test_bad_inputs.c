/* Hostile inputs through the CLI, one table: each case crafts a bad file (or bad
 * arguments, or a hostile environment: a read-only folder, a full disk) in a fresh
 * folder, runs `tessera ...` ($TESSERA_BIN, as scripts/run-tests.sh sets it), and
 * checks that
 *  - the exit code is the one docs/cli.md gives for that kind of failure;
 *  - stderr is exactly one line, "tessera CMD: ...", naming the file (or option) and
 *    what was wrong;
 *  - no output file or folder and no temporary file is left: the case folder holds
 *    exactly the files and folders the case crafted, and they are still there;
 *  - nothing leaked: in the ASan build the CLI runs with ASAN_OPTIONS exitcode=99, so
 *    a LeakSanitizer (or ASan, or UBSan) report turns into exit 99 and extra lines.
 *
 * Valid files (a tiny 10-class 1x8x8 model, its checkpoint, modules, ONNX export, IDX,
 * CIFAR and PGM/PPM data) are made once through the library in base/; `^` in a
 * command line stands for that folder and `@` for the case's own folder. Cases that
 * mutate a model file name their byte positions symbolically (the first tensor's
 * data, the TRAN section, ...) so that they survive changes to the architecture. */
#include "common/test.h"
#include "common/tiny_onnx.h"
#include "tessera.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* not in POSIX; declared here rather than asking the whole file for _DEFAULT_SOURCE */
int setgroups(size_t size, const gid_t *list);

/* ------------------------------------------------------------------ valid inputs */

static const char *const ARCH10 = "input shape=1x8x8 classes=10\n"
                                  "conv2d name=conv1 out=4 kernel=3 padding=1\n"
                                  "batchnorm name=bn1\n"
                                  "relu name=relu1\n"
                                  "maxpool name=pool1 kernel=2\n"
                                  "flatten name=flat\n"
                                  "dense name=fc out=classes\n";

typedef enum base_id {
    B_NONE = 0,
    B_MODEL,      /* m.tsr */
    B_CKPT,       /* c.ckpt */
    B_MODULE,     /* class0.tsm */
    B_ONNX,       /* m.onnx (exported from m.tsr) */
    B_TRAIN_IMG,  /* d/train-images-idx3-ubyte: 20 images 8x8 */
    B_TRAIN_LAB,
    B_TEST_IMG,   /* d/t10k-images-idx3-ubyte: 10 images */
    B_TEST_LAB,
    B_CIFAR,      /* test_batch.bin: 3 CIFAR-10 records */
    B_CIFAR100,   /* c100/test.bin: 2 CIFAR-100 records */
    B_PGM,        /* x.pgm 8x8 */
    B_PPM,        /* x.ppm 8x8 colour */
    B_ARCH,       /* net.arch */
    B_COUNT
} base_id;

static const char *const BASE_NAME[B_COUNT] = {
    "", "m.tsr", "c.ckpt", "class0.tsm", "m.onnx", "d/train-images-idx3-ubyte", "d/train-labels-idx1-ubyte",
    "d/t10k-images-idx3-ubyte", "d/t10k-labels-idx1-ubyte", "test_batch.bin", "c100/test.bin", "x.pgm", "x.ppm",
    "net.arch"};

static uint8_t *g_base[B_COUNT];
static size_t g_base_len[B_COUNT];

/* Byte positions inside a model-format file (.tsr, .ckpt, .tsm). */
typedef enum at_id {
    AT_START = 0,
    AT_END,         /* the file's length */
    AT_SEC0_LEN,    /* the first section's u64 length */
    AT_ARCH_LEN,    /* u32 length of the architecture text */
    AT_ARCH_TEXT,
    AT_RANK,        /* u32 input rank */
    AT_DIM0,        /* i64 first input dimension */
    AT_CLASSES,     /* u32 class count */
    AT_META,        /* u32 metadata count */
    AT_TENS,        /* u32 tensor count */
    AT_T0_NAME,     /* the first tensor's name bytes */
    AT_T0_DTYPE,
    AT_T0_RANK,
    AT_T0_DIM0,
    AT_T0_DATA,
    AT_TRAN,        /* checkpoint: the TRAN payload (u32 version) */
    AT_MODL,        /* module: the MODL payload */
    AT_HALF,        /* half the file's length (any file) */
    AT_COUNT
} at_id;

static size_t g_at[B_COUNT][AT_COUNT];

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void find_positions(base_id b) {
    const uint8_t *d = g_base[b];
    size_t len = g_base_len[b], *at = g_at[b];
    at[AT_END] = len;
    at[AT_HALF] = len / 2;
    if (b != B_MODEL && b != B_CKPT && b != B_MODULE) return;
    at[AT_SEC0_LEN] = 20;
    size_t off = 16;
    uint32_t nsec = le32(d + 12);
    for (uint32_t s = 0; s < nsec && off + 12 <= len; s++) {
        uint64_t slen = (uint64_t)le32(d + off + 4) | (uint64_t)le32(d + off + 8) << 32;
        size_t p = off + 12;
        if (!memcmp(d + off, "ARCH", 4)) {
            at[AT_ARCH_LEN] = p;
            at[AT_ARCH_TEXT] = p + 4;
            at[AT_RANK] = p + 4 + le32(d + p);
            at[AT_DIM0] = at[AT_RANK] + 4;
            at[AT_CLASSES] = at[AT_DIM0] + 8 * le32(d + at[AT_RANK]);
        } else if (!memcmp(d + off, "META", 4)) {
            at[AT_META] = p;
        } else if (!memcmp(d + off, "TENS", 4)) {
            at[AT_TENS] = p;
            at[AT_T0_NAME] = p + 8;
            at[AT_T0_DTYPE] = p + 8 + le32(d + p + 4);
            at[AT_T0_RANK] = at[AT_T0_DTYPE] + 2;
            at[AT_T0_DIM0] = at[AT_T0_RANK] + 4;
            at[AT_T0_DATA] = at[AT_T0_DIM0] + 8 * le32(d + at[AT_T0_RANK]);
        } else if (!memcmp(d + off, "TRAN", 4)) {
            at[AT_TRAN] = p;
        } else if (!memcmp(d + off, "MODL", 4)) {
            at[AT_MODL] = p;
        }
        off = p + (size_t)slen;
    }
}

/* ------------------------------------------------------------------ the table */

typedef enum craft_op {
    C_NONE = 0,  /* nothing (argument cases) */
    C_COPY,      /* the base file unchanged */
    C_CUT,       /* the base file cut at the position */
    C_PUT8,      /* the base file with a byte, u32, u64 (little-endian), big-endian u32 or float at the position */
    C_PUT32,
    C_PUT64,
    C_PUT32BE,
    C_PUTF32,
    C_APPEND,    /* the base file and `text` after it */
    C_TEXT,      /* `text` */
    C_PIXELS,    /* `text`, then `val` bytes of value 7 */
    C_GZBAD,     /* the base file gzipped, with a byte in the middle of the stream flipped */
    C_ONNX,      /* a hand-made graph: `val` picks which (onnx_variant) */
    C_MKDIR,     /* a folder (and its parents), made first so that `extra` may go inside it */
} craft_op;

typedef enum onnx_variant {
    OX_WIRE = 0, /* field 7 (graph) sent as a varint */
    OX_SHORT,    /* an initializer with dims (5) and 4 values */
    OX_HUGE,     /* an initializer with dims 2^40 x 2^40 */
    OX_CYCLE,    /* a = Relu(b), b = Relu(a) */
    OX_GHOST,    /* an input no node produces */
    OX_UNSUP,    /* Cos */
    OX_INT_INPUT /* the graph input is int64 */
} onnx_variant;

/* how the CLI is started: as is, as nobody (root ignores permission bits), under a file size limit */
enum { RUN_PLAIN = 0, RUN_NOBODY = 1, RUN_FSIZE = 2 };

typedef struct bad_case {
    const char *name;    /* what is wrong */
    craft_op op;
    base_id base;
    at_id at;
    long off;            /* added to the position */
    uint64_t val;        /* the value written (C_PUTF32: see fval) */
    double fval;
    const char *file;    /* the crafted file, in the case folder ("" none) */
    const char *text;    /* C_TEXT, C_APPEND, C_PIXELS: the bytes (tlen of them; 0: up to the NUL) */
    size_t tlen;
    base_id also;        /* a base file copied beside it unchanged (as BASE_NAME's last part) */
    const char *args;    /* tessera arguments; @ = the case folder, ^ = base/ */
    int code;            /* expected exit code */
    const char *names;   /* what the message must name (default: file) */
    const char *want;    /* ... and what was wrong */
    int env;
    const char *extra;   /* another crafted file beside it, holding extra_text (extra_len bytes; 0: up to the NUL) */
    const char *extra_text;
    size_t extra_len;
} bad_case;

#define U64(x) ((uint64_t)(x))

static const bad_case CASES[] = {
    /* ---- model files (.tsr) */
    {"model: empty file", C_TEXT, .file = "m.tsr", .text = "", .args = "info @/m.tsr", .code = 4, .want = "magic at byte 0 truncated"},
    {"model: cut inside the magic", C_CUT, B_MODEL, AT_START, 2, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "truncated"},
    {"model: cut inside the header", C_CUT, B_MODEL, AT_START, 10, .file = "m.tsr", .args = "eval @/m.tsr", .code = 4, .want = "kind at byte 8 truncated"},
    {"model: cut inside the architecture section", C_CUT, B_MODEL, AT_ARCH_TEXT, 20, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "claims"},
    {"model: cut inside tensor data", C_CUT, B_MODEL, AT_END, -6, .file = "m.tsr", .args = "export @/m.tsr --out @/o.onnx", .code = 4, .want = "remain"},
    {"model: wrong magic", C_PUT8, B_MODEL, AT_START, 0, 'X', .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "not a tessera model file"},
    {"model: newer version", C_PUT32, B_MODEL, AT_START, 4, 3, .file = "m.tsr", .args = "info @/m.tsr", .code = 5, .want = "file version 3"},
    {"model: unknown kind", C_PUT32, B_MODEL, AT_START, 8, 7, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "kind 7"},
    {"model: section count overflow", C_PUT32, B_MODEL, AT_START, 12, 0xffffffffu, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "section count 4294967295"},
    {"model: section length overflow", C_PUT64, B_MODEL, AT_SEC0_LEN, 0, U64(-1), .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "claims 18446744073709551615 bytes"},
    {"model: unknown section tag", C_PUT8, B_MODEL, AT_SEC0_LEN, -4, 'Z', .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "unknown section tag"},
    {"model: architecture text length overflow", C_PUT32, B_MODEL, AT_ARCH_LEN, 0, 0xfffffff0u, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "exceeds the limit"},
    {"model: architecture text garbled", C_PUT8, B_MODEL, AT_ARCH_TEXT, 0, '?', .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "(architecture):1"},
    {"model: input rank out of range", C_PUT32, B_MODEL, AT_RANK, 0, 99, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "input rank 99"},
    {"model: negative input dimension", C_PUT64, B_MODEL, AT_DIM0, 0, U64(-8), .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "input dimension -8"},
    {"model: huge input dimension", C_PUT64, B_MODEL, AT_DIM0, 0, U64(1) << 40, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "input dimension 1099511627776"},
    {"model: zero classes", C_PUT32, B_MODEL, AT_CLASSES, 0, 0, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "class count 0"},
    {"model: metadata count overflow", C_PUT32, B_MODEL, AT_META, 0, 0x7fffffffu, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "metadata entries"},
    {"model: tensor count overflow", C_PUT32, B_MODEL, AT_TENS, 0, 0xffffffffu, .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "4294967295 tensors"},
    {"model: tensor not in the architecture", C_PUT8, B_MODEL, AT_T0_NAME, 0, 'k', .file = "m.tsr", .args = "info @/m.tsr", .code = 4, .want = "'konv1.weight'"},
    {"model: tensor of an unsupported dtype", C_PUT8, B_MODEL, AT_T0_DTYPE, 0, 1, .file = "m.tsr", .args = "info @/m.tsr", .code = 5, .want = "dtype 1"},
    {"model: tensor rank differs from the architecture", C_PUT32, B_MODEL, AT_T0_RANK, 0, 2, .file = "m.tsr", .args = "info @/m.tsr", .code = 6, .want = "rank 2"},
    {"model: negative tensor dimension", C_PUT64, B_MODEL, AT_T0_DIM0, 0, U64(-4), .file = "m.tsr", .args = "info @/m.tsr", .code = 6, .want = "dimension 0 is -4"},
    {"model: tensor dimension that overflows", C_PUT64, B_MODEL, AT_T0_DIM0, 0, U64(1) << 62, .file = "m.tsr", .args = "eval @/m.tsr", .code = 6, .want = "dimension 0 is 4611686018427387904"},
    {"model: shape that does not match the architecture", C_PUT64, B_MODEL, AT_T0_DIM0, 0, 8, .file = "m.tsr", .args = "info @/m.tsr", .code = 6, .want = "the architecture expects 4"},
    {"model: NaN weight", C_PUTF32, B_MODEL, AT_T0_DATA, 8, .fval = NAN, .file = "m.tsr", .args = "eval @/m.tsr", .code = 4, .want = "element 2 is NaN"},
    {"model: infinite weight", C_PUTF32, B_MODEL, AT_T0_DATA, 0, .fval = INFINITY, .file = "m.tsr", .args = "export @/m.tsr --out @/o.onnx", .code = 4, .want = "element 0 is infinite"},
    {"model: trailing bytes", C_APPEND, B_MODEL, .file = "m.tsr", .text = "junk", .args = "info @/m.tsr", .code = 4, .want = "4 unexpected bytes after the last section"},
    {"model: a module given as a model", C_COPY, B_MODULE, .file = "m.tsr", .args = "eval @/m.tsr", .code = 2, .want = "is a module file"},
    {"model: missing", C_NONE, .args = "eval @/none.tsr", .code = 3, .names = "none.tsr", .want = "cannot open"},

    /* ---- checkpoints */
    {"checkpoint: truncated", C_CUT, B_CKPT, AT_END, -7, .file = "c.ckpt", .args = "train --resume @/c.ckpt --out @/o.tsr", .code = 4, .want = "remain"},
    {"checkpoint: a model file", C_COPY, B_MODEL, .file = "c.ckpt", .args = "train --resume @/c.ckpt --out @/o.tsr", .code = 4, .want = "not a checkpoint"},
    {"checkpoint: newer training-state version", C_PUT32, B_CKPT, AT_TRAN, 0, 9, .file = "c.ckpt", .args = "train --resume @/c.ckpt --out @/o.tsr", .code = 5, .want = "checkpoint state version 9"},
    {"checkpoint: zero epochs in its configuration", C_PUT32, B_CKPT, AT_TRAN, 4, 0, .file = "c.ckpt", .args = "train --resume @/c.ckpt --out @/o.tsr", .code = 4, .want = "training configuration out of range"},
    {"checkpoint: modular switch neither 0 nor 1", C_PUT32, B_CKPT, AT_TRAN, 108, 2, .file = "c.ckpt", .args = "train --resume @/c.ckpt --out @/o.tsr", .code = 4, .want = "modular training settings out of range"},
    {"checkpoint: optimizer state count overflow", C_PUT64, B_CKPT, AT_TRAN, 184, U64(1) << 61, .file = "c.ckpt", .args = "train --resume @/c.ckpt --out @/o.tsr --quiet", .code = 4, .want = "optimizer state holds 2305843009213693952 values"},
    {"checkpoint: NaN weight", C_PUTF32, B_CKPT, AT_T0_DATA, 4, .fval = NAN, .file = "c.ckpt", .args = "eval @/c.ckpt", .code = 4, .want = "is NaN"},
    {"checkpoint: missing", C_NONE, .args = "train --resume @/none.ckpt --out @/o.tsr", .code = 3, .names = "none.ckpt", .want = "cannot open"},

    /* ---- modules (.tsm) */
    {"module: truncated", C_CUT, B_MODULE, AT_END, -20, .file = "a.tsm", .args = "compose @/a.tsm --out @/o.tsr", .code = 4, .want = "remain"},
    {"module: a flipped mask bit", C_PUT8, B_MODULE, AT_END, -12, 0x5a, .file = "a.tsm", .args = "compose @/a.tsm --out @/o.tsr", .code = 4, .want = "checksum"},
    {"module: tensors changed under it", C_PUTF32, B_MODULE, AT_T0_DATA, 0, .fval = 0.125, .file = "a.tsm", .args = "info @/a.tsm", .code = 4, .want = "model hash"},
    {"module: a model given as a module", C_COPY, B_MODEL, .file = "a.tsm", .args = "compose @/a.tsm --out @/o.tsr", .code = 2, .want = "not a module"},
    {"module: modules of different input shapes", C_COPY, B_MODULE, .file = "a.tsm", .args = "compose @/a.tsm ^/wide1.tsm --out @/o.tsr", .code = 6, .names = "wide1.tsm", .want = "takes 1x10x10 inputs"},
    {"module: missing", C_NONE, .args = "compose @/none.tsm --out @/o.tsr", .code = 3, .names = "none.tsm", .want = "cannot open"},

    /* ---- architecture text */
    {"arch: empty file", C_TEXT, .file = "a.arch", .text = "", .args = "info @/a.arch", .code = 4, .want = "no layers at all"},
    {"arch: unknown layer kind", C_TEXT, .file = "a.arch", .text = "input shape=1x8x8 classes=10\nconv3d out=4 kernel=3\n", .args = "info @/a.arch", .code = 4, .want = "a.arch:2"},
    {"arch: negative size", C_TEXT, .file = "a.arch", .text = "input shape=1x8x8 classes=10\nconv2d out=-8 kernel=3\nflatten\ndense out=classes\n", .args = "info @/a.arch", .code = 4, .want = "a.arch:2"},
    {"arch: input shape that overflows", C_TEXT, .file = "a.arch", .text = "input shape=4096x1000000000x1000000000 classes=10\nflatten\ndense out=classes\n", .args = "info @/a.arch", .code = 4, .want = "a.arch:1"},
    {"arch: an input that is not an earlier layer", C_TEXT, .file = "a.arch", .text = "input shape=1x8x8 classes=10\nflatten name=f in=later\ndense name=later out=classes\n", .args = "info @/a.arch", .code = 4, .want = "a.arch:2"},
    {"arch: kernel larger than its input", C_TEXT, .file = "a.arch", .text = "input shape=1x8x8 classes=10\nmaxpool kernel=16\nflatten\ndense out=classes\n", .args = "train --arch @/a.arch --data ^/d --out @/o.tsr --quiet", .code = 6, .want = "a.arch:2"},
    {"arch: missing", C_NONE, .args = "train --arch @/none.arch --data ^/d --out @/o.tsr", .code = 3, .names = "none.arch", .want = "cannot open"},

    /* ---- IDX datasets */
    {"idx: images truncated", C_CUT, B_TRAIN_IMG, AT_END, -30, .file = "train-images-idx3-ubyte", .also = B_TRAIN_LAB, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr --quiet", .code = 4, .want = "truncated"},
    {"idx: wrong magic", C_PUT32BE, B_TRAIN_IMG, AT_START, 0, 0x12345678u, .file = "train-images-idx3-ubyte", .also = B_TRAIN_LAB, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 4, .want = "bad magic"},
    {"idx: float elements", C_PUT8, B_TRAIN_IMG, AT_START, 2, 0x0d, .file = "train-images-idx3-ubyte", .also = B_TRAIN_LAB, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 5, .want = "element type 0x0D"},
    {"idx: image count overflow", C_PUT32BE, B_TRAIN_IMG, AT_START, 4, 0xffffffffu, .file = "train-images-idx3-ubyte", .also = B_TRAIN_LAB, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 4, .want = "count 4294967295"},
    {"idx: image size out of range", C_PUT32BE, B_TRAIN_IMG, AT_START, 8, 0x7fffffffu, .file = "train-images-idx3-ubyte", .also = B_TRAIN_LAB, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 4, .want = "out of range"},
    {"idx: label out of range", C_PUT8, B_TRAIN_LAB, AT_START, 11, 12, .file = "train-labels-idx1-ubyte", .also = B_TRAIN_IMG, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 4, .want = "label 3 has value 12"},
    {"idx: label count differs from image count", C_TEXT, .file = "train-labels-idx1-ubyte", .text = "\0\0\x08\x01\0\0\0\x03\x01\x02\x03", .tlen = 11, .also = B_TRAIN_IMG, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 4, .want = "expected equal counts"},
    {"idx: empty dataset", C_TEXT, .file = "train-images-idx3-ubyte", .text = "\0\0\x08\x03\0\0\0\0\0\0\0\x08\0\0\0\x08", .tlen = 16, .extra = "train-labels-idx1-ubyte", .extra_text = "\0\0\x08\x01\0\0\0\0", .extra_len = 8, .args = "train --data @/train-images-idx3-ubyte --out @/o.tsr", .code = 4, .want = "contains no images"},
    {"idx: trailing bytes", C_APPEND, B_TEST_LAB, .file = "t10k-labels-idx1-ubyte", .text = "xyz", .also = B_TEST_IMG, .args = "eval ^/m.tsr --data @/t10k-labels-idx1-ubyte", .code = 4, .want = "3 unexpected bytes"},
    {"idx: corrupt gzip", C_GZBAD, B_TEST_IMG, .file = "t10k-images-idx3-ubyte.gz", .also = B_TEST_LAB, .args = "eval ^/m.tsr --data @/t10k-images-idx3-ubyte.gz", .code = 4, .want = "bad gzip data"},
    {"idx: labels file missing", C_COPY, B_TEST_IMG, .file = "t10k-images-idx3-ubyte", .args = "eval ^/m.tsr --data @/t10k-images-idx3-ubyte", .code = 3, .want = "matching labels file"},
    {"idx: images of another size than the model's", C_PUT64, B_TEST_IMG, AT_START, 8, 0x1000000004000000ull, .file = "t10k-images-idx3-ubyte", .also = B_TEST_LAB, .args = "eval ^/m.tsr --data @/t10k-images-idx3-ubyte", .code = 6, .want = "1x4x16"},

    /* ---- CIFAR datasets */
    {"cifar: empty file", C_TEXT, .file = "test_batch.bin", .text = "", .args = "eval ^/m.tsr --data @/test_batch.bin", .code = 4, .want = "empty file"},
    {"cifar: last record truncated", C_CUT, B_CIFAR, AT_END, -100, .file = "test_batch.bin", .args = "eval ^/m.tsr --data @/test_batch.bin", .code = 4, .want = "record 2 truncated"},
    {"cifar: label out of range", C_PUT8, B_CIFAR, AT_START, 3073, 10, .file = "test_batch.bin", .args = "eval ^/m.tsr --data @/test_batch.bin", .code = 4, .want = "record 1 has label 10"},
    {"cifar-100: coarse label out of range", C_PUT8, B_CIFAR100, AT_START, 0, 25, .file = "test.bin", .args = "eval ^/m.tsr --data @/test.bin", .code = 4, .want = "coarse label 25"},
    {"cifar: too many class names", C_COPY, B_CIFAR, .file = "test_batch.bin", .extra = "batches.meta.txt", .extra_text = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n", .args = "eval ^/m.tsr --data @/test_batch.bin", .code = 4, .names = "batches.meta.txt", .want = "more than 10 class names"},
    {"cifar: images that do not fit the model", C_COPY, B_CIFAR, .file = "test_batch.bin", .args = "eval ^/m.tsr --data @/test_batch.bin", .code = 6, .want = "3x32x32"},
    {"cifar-100: more classes than the model outputs", C_COPY, B_CIFAR100, .file = "test.bin", .args = "train --init ^/m32.tsr --data @/test.bin --out @/o.tsr", .code = 6, .want = "100 classes"},

    /* ---- PGM/PPM images */
    {"image: truncated pixels", C_PIXELS, .file = "a.pgm", .text = "P5 8 8 255\n", .val = 50, .args = "predict ^/m.tsr @/a.pgm", .code = 4, .want = "truncated"},
    {"image: wrong magic", C_PIXELS, .file = "a.pgm", .text = "P9 8 8 255\n", .val = 64, .args = "predict ^/m.tsr @/a.pgm", .code = 5, .want = "not a PNG, JPEG or PGM/PPM image"},
    {"image: 16-bit maxval", C_PIXELS, .file = "a.pgm", .text = "P5 8 8 65535\n", .val = 128, .args = "predict ^/m.tsr @/a.pgm", .code = 5, .want = "maxval"},
    {"image: zero maxval", C_PIXELS, .file = "a.pgm", .text = "P5 8 8 0\n", .val = 64, .args = "predict ^/m.tsr @/a.pgm", .code = 4, .want = "maxval"},
    {"image: width that overflows", C_PIXELS, .file = "a.pgm", .text = "P5 99999999999999999999 8 255\n", .val = 64, .args = "predict ^/m.tsr @/a.pgm", .code = 4, .want = "width"},
    {"image: text where a number belongs", C_TEXT, .file = "a.pgm", .text = "P2 8 eight 255\n", .args = "predict ^/m.tsr @/a.pgm", .code = 4, .want = "expected a decimal number"},
    {"image: pixel above maxval", C_PIXELS, .file = "a.pgm", .text = "P5 8 8 5\n", .val = 64, .args = "predict ^/m.tsr @/a.pgm", .code = 4, .want = "above maxval 5"},
    /* (an image of another size or colour is fitted to the model: not an error) */
    {"image: more pixels than the limit", C_PIXELS, .file = "a.pgm", .text = "P5 9000 9000 255\n", .val = 80, .args = "predict ^/m.tsr @/a.pgm", .code = 5, .want = "too large"},
    {"image: missing", C_NONE, .args = "predict ^/m.tsr @/none.pgm", .code = 3, .names = "none.pgm", .want = "cannot open"},

    /* ---- ONNX */
    {"onnx: empty file", C_TEXT, .file = "a.onnx", .text = "", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = "graph"},
    {"onnx: truncated", C_CUT, B_ONNX, AT_HALF, 0, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = NULL},
    {"onnx: wrong wire type", C_ONNX, .val = OX_WIRE, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = "protobuf"},
    {"onnx: tensor data shorter than its dims", C_ONNX, .val = OX_SHORT, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = "dims say 5"},
    {"onnx: dims that overflow", C_ONNX, .val = OX_HUGE, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = "overflow"},
    {"onnx: a cycle", C_ONNX, .val = OX_CYCLE, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = "cycle"},
    {"onnx: an input nothing produces", C_ONNX, .val = OX_GHOST, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 4, .want = "'ghost' is never produced"},
    {"onnx: an unsupported operator", C_ONNX, .val = OX_UNSUP, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 5, .want = "Cos node"},
    {"onnx: an integer graph input", C_ONNX, .val = OX_INT_INPUT, .file = "a.onnx", .args = "import @/a.onnx --out @/o.tsr", .code = 5, .want = "'x'"},
    {"onnx: truncated, --check", C_CUT, B_ONNX, AT_END, -1, .file = "a.onnx", .args = "import @/a.onnx --check", .code = 4, .want = NULL},
    {"onnx: missing", C_NONE, .args = "import @/none.onnx --out @/o.tsr", .code = 3, .names = "none.onnx", .want = "cannot open"},

    /* ---- command-line arguments */
    {"args: unknown command", C_NONE, .args = "frobnicate", .code = 2, .names = "frobnicate", .want = "unknown command"},
    {"args: unknown option", C_NONE, .args = "eval ^/m.tsr --bogus 1", .code = 2, .names = "--bogus", .want = "unknown option"},
    {"args: a number that is not one", C_NONE, .args = "train --data ^/d --out @/o.tsr --epochs abc", .code = 2, .names = "--epochs", .want = "'abc'"},
    {"args: a number out of range", C_NONE, .args = "train --data ^/d --out @/o.tsr --batch 0", .code = 2, .names = "--batch", .want = "'0'"},
    {"args: NaN learning rate", C_NONE, .args = "train --data ^/d --out @/o.tsr --lr nan", .code = 2, .names = "--lr", .want = "'nan'"},
    {"args: negative thread count", C_NONE, .args = "eval ^/m.tsr --threads -2", .code = 2, .names = "--threads", .want = "'-2'"},
    {"args: a value missing at the end", C_NONE, .args = "train --data ^/d --out", .code = 2, .names = "--out", .want = "needs a value"},
    {"args: a required option missing", C_NONE, .args = "import ^/m.onnx", .code = 2, .names = "--out", .want = "expected"},
    {"args: unknown backend", C_NONE, .args = "eval ^/m.tsr --backend gpu", .code = 2, .names = "--backend", .want = "'gpu'"},
    {"args: bf16 with the reference backend", C_NONE, .args = "train --data ^/d --out @/o.tsr --bf16 --backend ref", .code = 2, .names = "--bf16", .want = "--backend ref"},
    {"args: bf16 with constant-time inference", C_NONE, .args = "eval ^/m.tsr --bf16 --constant-time", .code = 2, .names = "--bf16", .want = "--constant-time"},
    {"args: unknown optimizer", C_NONE, .args = "train --data ^/d --out @/o.tsr --optimizer rmsprop", .code = 2, .names = "--optimizer", .want = "'rmsprop'"},
    {"args: an extra argument", C_NONE, .args = "info ^/m.tsr ^/m.tsr", .code = 2, .names = "m.tsr", .want = "unexpected argument"},
    {"args: a flag given a value", C_NONE, .args = "train --data ^/d --out @/o.tsr --quiet=1", .code = 2, .names = "--quiet", .want = "takes no value"},
    {"args: a sample index out of range", C_NONE, .args = "predict ^/m.tsr --data ^/d --index 99", .code = 2, .names = "--index", .want = "'99'"},
    {"args: mean and std of different lengths", C_NONE, .args = "import ^/m.onnx --out @/o.tsr --mean 0.5,0.5 --std 0.5", .code = 2, .names = "--std", .want = "same number"},
    {"args: validation split larger than the data", C_NONE, .args = "train --data ^/d --out @/o.tsr --val-split 500", .code = 2, .names = "--val-split", .want = "leaves no training samples"},
    {"args: unknown dataset name", C_NONE, .args = "train --data imagenet --out @/o.tsr", .code = 7, .names = "imagenet", .want = "unknown name"},
    {"args: dataset not installed", C_NONE, .args = "train --data cifar100 --out @/o.tsr", .code = 7, .names = "cifar100", .want = "not installed"},
    {"args: unknown zoo architecture", C_NONE, .args = "train --arch nosuchnet --data ^/d --out @/o.tsr", .code = 7, .names = "nosuchnet", .want = "zoo"},
    {"args: a dataset path that does not exist", C_NONE, .args = "eval ^/m.tsr --data @/nothing/here", .code = 3, .names = "nothing/here", .want = "no such file or folder"},
    {"args: a dataset folder without dataset files", C_MKDIR, .file = "empty", .args = "eval ^/m.tsr --data @/empty", .code = 5, .names = "empty", .want = "no dataset files found"},

    /* ---- where outputs go */
    {"output: folder does not exist", C_NONE, .args = "import ^/m.onnx --out @/no/such/o.tsr", .code = 3, .names = "o.tsr", .want = "cannot create"},
    {"output: path is a folder", C_MKDIR, .file = "o.tsr", .args = "export ^/m.tsr --out @/o.tsr", .code = 3, .names = "o.tsr", .want = "rename"},
    {"output: read-only folder", C_NONE, .args = "import ^/m.onnx --out @/o.tsr", .code = 3, .names = "o.tsr", .want = "Permission denied", .env = RUN_NOBODY},
    {"output: disk full writing a model", C_NONE, .args = "train --arch ^/net.arch --data ^/d --epochs 1 --batch 10 --quiet --no-test --out @/o.tsr", .code = 3, .names = "o.tsr", .want = "File too large", .env = RUN_FSIZE},
    {"output: disk full writing a checkpoint", C_NONE, .args = "train --arch ^/net.arch --data ^/d --epochs 1 --batch 10 --quiet --no-test --checkpoint @/c.ckpt --out @/o.tsr", .code = 3, .names = "c.ckpt", .want = "File too large", .env = RUN_FSIZE},
    {"output: disk full importing", C_NONE, .args = "import ^/m.onnx --out @/o.tsr", .code = 3, .names = "o.tsr", .want = "File too large", .env = RUN_FSIZE},
    {"output: disk full exporting", C_NONE, .args = "export ^/m.tsr --out @/o.onnx", .code = 3, .names = "o.onnx", .want = "File too large", .env = RUN_FSIZE},
    {"output: disk full decomposing", C_NONE, .args = "decompose ^/m.tsr --data ^/d --positives 2 --confidence 0 --no-eval --quiet --out @/mods", .code = 3, .names = "class0.tsm", .want = "File too large", .env = RUN_FSIZE},
    {"output: decomposing images that do not fit the model", C_COPY, B_CIFAR, .file = "test_batch.bin", .args = "decompose ^/m.tsr --data @/test_batch.bin --no-eval --quiet --out @/mods", .code = 6, .want = "3x32x32"},
    {"output: decomposing into a folder with a folder in the way", C_MKDIR, .file = "mods/class5.tsm", .extra = "mods/class0.tsm", .extra_text = "an older module", .args = "decompose ^/m.tsr --data ^/d --positives 2 --confidence 0 --no-eval --quiet --out @/mods", .code = 3, .want = "is a folder"},
    {"output: disk full composing", C_NONE, .args = "compose ^/class0.tsm ^/class1.tsm --out @/o.tsr", .code = 3, .names = "o.tsr", .want = "File too large", .env = RUN_FSIZE},
};

#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

/* ------------------------------------------------------------------ running */

static const char *g_bin;
static char g_root[] = "/tmp/tessera-bad-XXXXXX";
static char g_basedir[300], g_casedir[300];
static char g_err[1 << 16];
static int g_skipped;

static void slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    buf[got] = '\0';
    if (f) fclose(f);
}

/* @ -> the case folder, ^ -> the base folder */
static void expand(const char *in, char *out, size_t n) {
    size_t o = 0;
    for (; *in && o + 1 < n; in++) {
        const char *rep = *in == '@' ? g_casedir : *in == '^' ? g_basedir : NULL;
        if (rep) {
            int k = snprintf(out + o, n - o, "%s", rep);
            o += k > 0 ? (size_t)k : 0;
        } else {
            out[o++] = *in;
        }
    }
    out[o < n ? o : n - 1] = '\0';
}

/* Runs the CLI on the expanded argument line; stdout and stderr go to files outside
 * the case folder. Returns the exit code (128 + signal when killed), -1 when the
 * child could not be started as asked (a skipped case). */
static int run_cli(const char *args, int env) {
    char line[4096], out[400], err[400];
    expand(args, line, sizeof line);
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)g_bin;
    for (char *save = NULL, *t = strtok_r(line, " ", &save); t && argc < 63; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
    argv[argc] = NULL;
    snprintf(out, sizeof out, "%s/stdout", g_root);
    snprintf(err, sizeof err, "%s/stderr", g_root);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0666), fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0) _exit(120);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        char home[400], data[400], asan[1024];
        snprintf(home, sizeof home, "%s/home", g_root);
        snprintf(data, sizeof data, "%s/nodata", g_root);
        const char *prev = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof asan, "%s%sexitcode=99", prev ? prev : "", prev && *prev ? ":" : "");
        setenv("HOME", home, 1);
        setenv("TESSERA_DATA", data, 1);
        setenv("ASAN_OPTIONS", asan, 1);
        if (env == RUN_FSIZE) {
            /* a nearly full disk: writes past 600 bytes fail with EFBIG, not SIGXFSZ */
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {600, 600};
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(121);
        }
        if (env == RUN_NOBODY && geteuid() == 0) {
            /* root ignores permission bits: become nobody so that the read-only folder is one */
            if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(122);
        }
        execv(g_bin, argv);
        _exit(123);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    slurp(err, g_err, sizeof g_err);
    if (WIFEXITED(status) && WEXITSTATUS(status) >= 121 && WEXITSTATUS(status) <= 123) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------------ crafting */

static int write_onnx_variant(const char *path, int v) {
    if (v == OX_WIRE) {
        static const uint8_t wire[] = {0x08, 0x07, 0x38, 0x01};
        return test_write_file(path, wire, sizeof wire);
    }
    tiny t;
    tiny_init(&t);
    int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    switch (v) {
    case OX_SHORT:
        t.idims[0] = 5;
        tiny_node(&t, "Mul", "x", "w", "y");
        break;
    case OX_HUGE:
        t.init.n_dims = 2;
        t.init.dims = huge;
        tiny_node(&t, "Mul", "x", "w", "y");
        break;
    case OX_CYCLE:
        tiny_node(&t, "Relu", "b", NULL, "a");
        tiny_node(&t, "Relu", "a", NULL, "b");
        tiny_node(&t, "Add", "a", "x", "y");
        break;
    case OX_GHOST: tiny_node(&t, "Add", "x", "ghost", "y"); break;
    case OX_UNSUP: tiny_node(&t, "Cos", "x", NULL, "y"); break;
    default: /* OX_INT_INPUT */
        t.tt.elem_type = 7;
        tiny_node(&t, "Relu", "x", NULL, "y");
        break;
    }
    size_t len;
    uint8_t *b = tiny_pack(&t, &len);
    if (!b) return 0;
    int ok = test_write_file(path, b, len);
    free(b);
    return ok;
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Makes the case's files in g_casedir; names[] receives what it made. */
static int craft(const bad_case *c, const char **names, int *n) {
    char path[512];
    *n = 0;
    int ok = 1;
    if (c->op == C_MKDIR) {
        snprintf(path, sizeof path, "%s/%s", g_casedir, c->file);
        for (char *slash = strchr(path + strlen(g_casedir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            ok = ok && mkdir(path, 0755) == 0;
            *slash = '/';
        }
        ok = ok && mkdir(path, 0755) == 0;
        names[(*n)++] = c->file;
    }
    if (c->also) {
        const char *base = strrchr(BASE_NAME[c->also], '/');
        base = base ? base + 1 : BASE_NAME[c->also];
        snprintf(path, sizeof path, "%s/%s", g_casedir, base);
        ok = test_write_file(path, g_base[c->also], g_base_len[c->also]);
        names[(*n)++] = base;
    }
    if (c->extra) {
        snprintf(path, sizeof path, "%s/%s", g_casedir, c->extra);
        ok = ok && test_write_file(path, c->extra_text, c->extra_len ? c->extra_len : strlen(c->extra_text));
        names[(*n)++] = c->extra;
    }
    if (c->op == C_NONE || c->op == C_MKDIR) return ok;
    snprintf(path, sizeof path, "%s/%s", g_casedir, c->file);
    names[(*n)++] = c->file;
    size_t tlen = c->text ? (c->tlen ? c->tlen : strlen(c->text)) : 0;
    if (c->op == C_TEXT) return ok && test_write_file(path, c->text, tlen);
    if (c->op == C_ONNX) return ok && write_onnx_variant(path, (int)c->val);
    if (c->op == C_PIXELS) {
        size_t len = tlen + (size_t)c->val;
        uint8_t *b = malloc(len + 1);
        if (!b) return 0;
        memcpy(b, c->text, tlen);
        memset(b + tlen, 7, (size_t)c->val);
        ok = ok && test_write_file(path, b, len);
        free(b);
        return ok;
    }
    const uint8_t *src = g_base[c->base];
    size_t len = g_base_len[c->base];
    if (!src) return 0;
    if (c->op == C_GZBAD) {
        gzFile gz = gzopen(path, "wb");
        if (!gz || gzwrite(gz, src, (unsigned)len) != (int)len || gzclose(gz) != Z_OK) return 0;
        size_t glen;
        uint8_t *g = test_read_file(path, &glen);
        if (!g || glen < 40) {
            free(g);
            return 0;
        }
        for (size_t i = glen / 2; i < glen / 2 + 4; i++) g[i] ^= 0x55;
        ok = ok && test_write_file(path, g, glen);
        free(g);
        return ok;
    }
    size_t pos = g_at[c->base][c->at] + (size_t)c->off;
    uint8_t *b = malloc(len + tlen + 1);
    if (!b) return 0;
    memcpy(b, src, len);
    size_t out = len;
    switch (c->op) {
    case C_CUT: out = pos < len ? pos : len; break;
    case C_PUT8: b[pos] = (uint8_t)c->val; break;
    case C_PUT32: put_le(b + pos, c->val, 4); break;
    case C_PUT64: put_le(b + pos, c->val, 8); break;
    case C_PUT32BE:
        for (int i = 0; i < 4; i++) b[pos + (size_t)i] = (uint8_t)(c->val >> (24 - 8 * i));
        break;
    case C_PUTF32: {
        float f = (float)c->fval;
        memcpy(b + pos, &f, 4);
        break;
    }
    case C_APPEND:
        memcpy(b + len, c->text, tlen);
        out = len + tlen;
        break;
    default: break;
    }
    int patch = c->op >= C_PUT8 && c->op <= C_PUTF32;
    ok = ok && (!patch || pos + 8 <= len) && test_write_file(path, b, out);
    free(b);
    return ok;
}

/* Whether rel is one of names[], or (a folder) holds one of them. */
static int crafted(const char *rel, int is_dir, const char **names, int n) {
    size_t len = strlen(rel);
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], rel) || (is_dir && !strncmp(names[i], rel, len) && names[i][len] == '/')) return 1;
    return 0;
}

/* Every file and folder under dir (recursively) must be one of names[] or a folder
 * that holds one; a folder that is neither counts as one stray entry. */
static int stray_files(const char *dir, const char *rel, const char **names, int n, char *first, size_t fsz) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int stray = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024], r[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        int dir = S_ISDIR(st.st_mode);
        if (dir && crafted(r, 1, names, n)) {
            stray += stray_files(p, r, names, n, first, fsz);
        } else if (!crafted(r, dir, names, n)) {
            if (!stray && !*first) snprintf(first, fsz, "%s%s", r, dir ? "/" : "");
            stray++;
        }
    }
    closedir(d);
    return stray;
}

static void remove_tree(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void run_case(int i) {
    const bad_case *c = &CASES[i];
    g_test.case_failed = 0;
    g_test.case_name = c->name;
    snprintf(g_casedir, sizeof g_casedir, "%s/case%03d", g_root, i);
    const char *names[4];
    int nn = 0;
    if (mkdir(g_casedir, 0755) != 0 || !craft(c, names, &nn)) {
        CHECK(0, "%s: could not craft the input", c->name);
        g_test.failed++;
        return;
    }
    if (c->env == RUN_NOBODY) chmod(g_casedir, 0555);
    int rc = run_cli(c->args, c->env);
    if (c->env == RUN_NOBODY) chmod(g_casedir, 0755);
    if (rc == -1) {
        printf("note: case '%s' skipped: cannot %s here\n", c->name,
               c->env == RUN_NOBODY ? "drop root to make a read-only folder" : "start the CLI as asked");
        g_skipped++;
        remove_tree(g_casedir);
        return;
    }
    const char *what = c->names ? c->names : c->file;
    if (getenv("TESSERA_BAD_VERBOSE")) printf("%-50s exit %d: %s", c->name, rc, g_err);
    CHECK(rc == c->code, "%s: exit %d, want %d%s: %s", c->name, rc, c->code,
          rc == 99 ? " (a sanitizer report: leak or memory error)" : "", g_err);
    CHECK(count_lines(g_err) == 1 && g_err[strlen(g_err) - 1] == '\n', "%s: stderr is not one line: %s", c->name, g_err);
    CHECK(!strncmp(g_err, "tessera", 7) && (g_err[7] == ' ' || g_err[7] == ':'),
          "%s: stderr does not start with 'tessera': %s", c->name, g_err);
    CHECK(strstr(g_err, what) != NULL, "%s: the message does not name '%s': %s", c->name, what, g_err);
    if (c->want) CHECK(strstr(g_err, c->want) != NULL, "%s: the message lacks '%s': %s", c->name, c->want, g_err);
    CHECK(!strstr(g_err, "Sanitizer") && !strstr(g_err, "runtime error"), "%s: sanitizer output: %s", c->name, g_err);
    char first[520] = ""; /* a relative path (512) and a slash */
    int stray = stray_files(g_casedir, "", names, nn, first, sizeof first);
    CHECK(stray == 0, "%s: %d file(s) or folder(s) left behind, e.g. %s", c->name, stray, first);
    for (int k = 0; k < nn; k++) {
        char p[700];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", g_casedir, names[k]);
        CHECK(lstat(p, &sb) == 0, "%s: the crafted %s is gone", c->name, names[k]);
    }
    if (c->extra) {
        char p[700];
        size_t len = 0, want = c->extra_len ? c->extra_len : strlen(c->extra_text);
        snprintf(p, sizeof p, "%s/%s", g_casedir, c->extra);
        uint8_t *b = test_read_file(p, &len);
        CHECK(b && len == want && !memcmp(b, c->extra_text, want), "%s: the crafted %s was changed", c->name, c->extra);
        free(b);
    }
    if (g_test.case_failed) g_test.failed++;
    else g_test.passed++;
    remove_tree(g_casedir);
}

/* ------------------------------------------------------------------ set-up */

static int write_base(const char *name, const void *d, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_basedir, name);
    return test_write_file(p, d, n);
}

static int write_idx(const char *split, int count) {
    size_t ilen = 16 + (size_t)count * 64, llen = 8 + (size_t)count;
    uint8_t *img = malloc(ilen), *lab = malloc(llen);
    if (!img || !lab) return 0;
    test_put_be32(img, 0x803);
    test_put_be32(img + 4, (uint32_t)count);
    test_put_be32(img + 8, 8);
    test_put_be32(img + 12, 8);
    for (size_t i = 16; i < ilen; i++) img[i] = (uint8_t)(i * 29 + (i >> 6) * 7);
    test_put_be32(lab, 0x801);
    test_put_be32(lab + 4, (uint32_t)count);
    for (int i = 0; i < count; i++) lab[8 + i] = (uint8_t)(i % 10);
    char a[64], b[64];
    snprintf(a, sizeof a, "d/%s-images-idx3-ubyte", split);
    snprintf(b, sizeof b, "d/%s-labels-idx1-ubyte", split);
    int ok = write_base(a, img, ilen) && write_base(b, lab, llen);
    free(img);
    free(lab);
    return ok;
}

/* Valid inputs in base/, made through the library. */
static int make_base(void) {
    char p[600];
    const char *dirs[] = {"base", "base/d", "base/c100", "home", "nodata"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", g_root, dirs[i]);
        if (mkdir(p, 0755) != 0) return 0;
    }
    if (!write_idx("train", 20) || !write_idx("t10k", 10)) return 0;
    static uint8_t rec[3 * 3073], rec100[2 * 3074];
    for (int i = 0; i < 3 * 3073; i++) rec[i] = (uint8_t)(i % 3073 == 0 ? i / 3073 : i * 13);
    for (int i = 0; i < 2 * 3074; i++) rec100[i] = (uint8_t)(i % 3074 == 0 ? 1 : i % 3074 == 1 ? 5 : i * 11);
    uint8_t img[64 * 3 + 32];
    int n = snprintf((char *)img, 32, "P5\n8 8\n255\n");
    for (int i = 0; i < 64; i++) img[n + i] = (uint8_t)(i * 4);
    uint8_t col[64 * 3 + 32];
    int nc = snprintf((char *)col, 32, "P6\n8 8\n255\n");
    for (int i = 0; i < 64 * 3; i++) col[nc + i] = (uint8_t)(i * 5);
    if (!write_base("test_batch.bin", rec, sizeof rec) || !write_base("c100/test.bin", rec100, sizeof rec100) ||
        !write_base("x.pgm", img, (size_t)n + 64) || !write_base("x.ppm", col, (size_t)nc + 64 * 3) ||
        !write_base("net.arch", ARCH10, strlen(ARCH10)))
        return 0;

    ts_ctx *ctx = NULL;
    ts_model *m = NULL, *wide = NULL;
    ts_dataset *ds = NULL;
    ts_trainer *tr = NULL;
    ts_module *m0 = NULL, *m1 = NULL, *w1 = NULL;
    ts_status st = ts_ctx_create(&ctx);
    char data[400], path[600];
    snprintf(data, sizeof data, "%s/d", g_basedir);
    if (!st) st = ts_model_from_arch(ctx, ARCH10, "net.arch", NULL, 0, 1, &m);
    if (!st) st = ts_dataset_load(ctx, data, TS_SPLIT_TRAIN, NULL, &ds);
    if (!st) st = ts_model_set_meta(ctx, m, "data", data);
    ts_train_config cfg;
    ts_train_config_default(&cfg);
    cfg.epochs = 1;
    cfg.batch = 10;
    if (!st) st = ts_trainer_create(ctx, m, ds, NULL, &cfg, &tr);
    if (!st) st = ts_trainer_run(ctx, tr, NULL);
    snprintf(path, sizeof path, "%s/c.ckpt", g_basedir);
    if (!st) st = ts_checkpoint_save(ctx, tr, path);
    snprintf(path, sizeof path, "%s/m.tsr", g_basedir);
    if (!st) st = ts_model_save(ctx, m, path);
    snprintf(path, sizeof path, "%s/m.onnx", g_basedir);
    if (!st) st = ts_onnx_export(ctx, m, path);
    if (!st) st = ts_module_from_model(ctx, m, 0, &m0);
    if (!st) st = ts_module_from_model(ctx, m, 1, &m1);
    snprintf(path, sizeof path, "%s/class0.tsm", g_basedir);
    if (!st) st = ts_module_save(ctx, m0, path);
    snprintf(path, sizeof path, "%s/class1.tsm", g_basedir);
    if (!st) st = ts_module_save(ctx, m1, path);
    ts_shape in10 = {3, {1, 10, 10}};
    if (!st) st = ts_model_from_arch(ctx, ARCH10, "net.arch", &in10, 0, 1, &wide);
    if (!st) st = ts_module_from_model(ctx, wide, 1, &w1);
    snprintf(path, sizeof path, "%s/wide1.tsm", g_basedir);
    if (!st) st = ts_module_save(ctx, w1, path);
    ts_model_free(wide);
    wide = NULL;
    ts_shape in32 = {3, {3, 32, 32}};
    if (!st) st = ts_model_from_arch(ctx, ARCH10, "net.arch", &in32, 0, 1, &wide);
    snprintf(path, sizeof path, "%s/m32.tsr", g_basedir);
    if (!st) st = ts_model_save(ctx, wide, path);
    if (st) fprintf(stderr, "test_bad_inputs: set-up failed: %s\n", ts_ctx_error(ctx));
    ts_module_free(m0);
    ts_module_free(m1);
    ts_module_free(w1);
    ts_trainer_free(tr);
    ts_dataset_free(ds);
    ts_model_free(m);
    ts_model_free(wide);
    ts_ctx_free(ctx);
    if (st) return 0;
    for (int b = 1; b < B_COUNT; b++) {
        snprintf(path, sizeof path, "%s/%s", g_basedir, BASE_NAME[b]);
        if (!(g_base[b] = test_read_file(path, &g_base_len[b]))) return 0;
        find_positions((base_id)b);
    }
    return 1;
}

int main(void) {
    g_bin = getenv("TESSERA_BIN");
    if (!g_bin) g_bin = "build/tessera";
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_bad_inputs: %s is not built\n", g_bin);
        return 1;
    }
    if (!mkdtemp(g_root) || chmod(g_root, 0755) != 0) return 1;
    snprintf(g_basedir, sizeof g_basedir, "%s/base", g_root);
    if (!make_base()) {
        remove_tree(g_root);
        return 1;
    }
    const char *only = getenv("TESSERA_BAD_CASE"); /* run the cases whose name contains this */
    int ran = 0;
    for (int i = 0; i < NCASES; i++) {
        if (only && !strstr(CASES[i].name, only)) continue;
        run_case(i);
        ran++;
    }
    printf("%d hostile-input cases run, %d skipped\n", ran, g_skipped);
    for (int b = 0; b < B_COUNT; b++) free(g_base[b]);
    remove_tree(g_root);
    TEST_MAIN_END("test_bad_inputs");
}
