/* Error-bounded compression of activations (COMET's SZ-style codec, docs/compressed-
 * activations.md): each value is predicted from its reconstructed left neighbour
 * (1-D Lorenzo along W; a row's first value from the one above it), the residual is
 * quantized to a code with bins of 2·eb, and the codes are packed with a Rice code
 * whose parameter is chosen per block of 32. Guarantees, checked on every value
 * in the encoder with the decoder's own arithmetic:
 *  - |x - x'| <= eb;
 *  - a zero stays a zero (lossless: the same zero, +0.0 or -0.0) and a non-zero value
 *    keeps its sign and stays non-zero, so a ReLU's mask (x > 0) is exact;
 *  - a value that cannot meet both (or NaN, infinity, a residual beyond 2^20 bins) is
 *    stored verbatim, so eb = 0 is lossless.
 * A chunk whose codes would take more room than the plain floats is stored plain. */
#include "ops.h"

#include <math.h>
#include <string.h>

/* Codes, the frequent ones small (a Rice code spends more bits on larger codes):
 * 0 the bin q = 0 (a constant run, a run of ReLU zeros); 1 a +0.0 the bins miss; 2 and 3
 * the bins q = -1 and 1; 4 and 5 +eb/2 and -eb/2, for a value within eb of zero whose bin
 * would lose its sign; 6 a -0.0 the bins miss; 7 a verbatim value (its 32 bits follow);
 * 5 + zigzag(q) any other bin (zigzag(q) >= 3). */
enum { CODE_BIN0 = 0, CODE_ZERO = 1, CODE_HALF_POS = 4, CODE_HALF_NEG = 5, CODE_NEGZERO = 6, CODE_VERBATIM = 7 };
enum { CODE_FAR_BINS = 5 }; /* code - zigzag(q) for |q| >= 2 */
#define QMAX (1 << 20)      /* residuals beyond this many bins are stored verbatim */
#define BLOCK 32            /* codes per Rice parameter */
#define UNARY_CAP 24        /* longer quotients: the cap's ones, then the code in CODE_BITS */
#define CODE_BITS 22        /* every code < 2^22 (zigzag of |q| < 2^20, plus 5) */
#define K_BITS 5            /* the Rice parameter, 0..CODE_BITS */
enum { CHUNK_PLAIN = 0, CHUNK_CODED = 1 };

size_t act_codec_bound(size_t count) {
    /* per value at worst a capped quotient, the code and 32 verbatim bits; a chunk
     * larger than plain is stored plain, so the bound is the plain size */
    return 1 + count * sizeof(float);
}

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The reconstruction, shared by encoder and decoder so both compute the same float
 * (the build does not contract a*b+c: -std=c11 sets -ffp-contract=off): pred + step * q,
 * or for q = 0 pred itself, so a run of -0.0 (oneDNN's ReLU writes them) stays one. */
static inline float reconstruct(float pred, float step, int32_t q) { return q ? pred + step * (float)q : pred; }

/* Code of x given its prediction; *xr receives what the decoder will see. Every case
 * is computed and one chosen, without branches: which of a ReLU's zeros, small and large
 * values comes next is not predictable. */
static inline uint32_t quantize(float x, float pred, float eb, float step, float inv_step, float *xr) {
    const int zero = x == 0.0f, negative = signbit(x) != 0;
    const float r = (x - pred) * inv_step; /* eb = 0: inv_step 0, only bin 0 */
    const int in_range = fabsf(r) < (float)QMAX;
    /* nearest, halves away from zero (a truncating conversion, no libm call) */
    const int32_t q = in_range ? (int32_t)(r + copysignf(0.5f, r)) : 0;
    const float v = reconstruct(pred, step, q);
    /* lossless, a zero keeps its sign; lossy, either zero will do (a ReLU's mask and the
     * products it enters are the same) */
    const int keeps_zero = eb > 0.0f ? v == 0.0f : f2u(v) == f2u(x);
    const int keeps_value = (fabsf(x - v) <= eb) & (v != 0.0f) & ((signbit(v) != 0) == negative);
    const int bin = in_range & ((zero & keeps_zero) | ((1 - zero) & keeps_value));
    const uint32_t zz = ((uint32_t)q << 1) ^ (uint32_t)(q >> 31); /* zigzag: 1 -> 2, -1 -> 1 */
    const uint32_t bin_code = zz + (zz > 2 ? CODE_FAR_BINS : zz > 0); /* -1, 1 -> 2, 3; the others from 8 */
    /* a small value on the wrong side of zero in its bin: +-eb/2 */
    const float half = negative ? -0.5f * eb : 0.5f * eb;
    const int small = (1 - zero) & (eb > 0.0f) & (fabsf(x) <= eb) & (half != 0.0f);
    const uint32_t small_code = negative ? CODE_HALF_NEG : CODE_HALF_POS;
    const uint32_t exact_code = zero ? (negative ? CODE_NEGZERO : CODE_ZERO) : CODE_VERBATIM;
    *xr = bin ? v : small ? half : x;
    return bin ? bin_code : small ? small_code : exact_code;
}

typedef struct bit_writer {
    uint8_t *p, *end;
    uint64_t acc;
    int n;
} bit_writer;

/* len <= 32 */
static inline int put_bits(bit_writer *w, uint32_t v, int len) {
    w->acc |= (uint64_t)v << w->n;
    w->n += len;
    if (w->n >= 32) {
        if (w->end - w->p < 4) return 0;
        for (int i = 0; i < 4; i++) w->p[i] = (uint8_t)(w->acc >> (8 * i));
        w->p += 4;
        w->acc >>= 32;
        w->n -= 32;
    }
    return 1;
}

static size_t rice_cost(const uint32_t *c, int cnt, int k) {
    size_t bits = 0;
    for (int i = 0; i < cnt; i++) {
        const uint32_t u = c[i] >> k;
        bits += u < UNARY_CAP ? u + 1 + (size_t)k : UNARY_CAP + CODE_BITS;
    }
    return bits;
}

static int rice_k(const uint32_t *c, int cnt) {
    uint64_t sum = 0;
    for (int i = 0; i < cnt; i++) sum += c[i];
    int k = 0;
    while (k < CODE_BITS && ((uint64_t)cnt << (k + 1)) <= sum) k++;
    int best = k > 0 ? k - 1 : k;
    size_t best_cost = rice_cost(c, cnt, best);
    for (int t = best + 1; t <= k + 1 && t <= CODE_BITS; t++) {
        size_t cost = rice_cost(c, cnt, t);
        if (cost < best_cost) best = t, best_cost = cost;
    }
    return best;
}

static int put_code(bit_writer *w, uint32_t c, int k, uint32_t raw) {
    const uint32_t u = c >> k;
    int ok;
    if (u < UNARY_CAP && u + 1 + (uint32_t)k <= 32) { /* u ones, a zero, the k low bits: one write */
        ok = put_bits(w, ((1u << u) - 1u) | ((c & ((1u << k) - 1u)) << u << 1), (int)u + 1 + k);
    } else if (u < UNARY_CAP) {
        ok = put_bits(w, (1u << u) - 1u, (int)u + 1);
        if (ok && k) ok = put_bits(w, c & ((1u << k) - 1u), k);
    } else {
        ok = put_bits(w, (1u << UNARY_CAP) - 1u, UNARY_CAP) && put_bits(w, c, CODE_BITS);
    }
    if (ok && c == CODE_VERBATIM) ok = put_bits(w, raw, 32);
    return ok;
}

/* Values are visited row by row for the first column (each predicted from the one
 * above), and LANES rows at a time for the others, so that LANES independent chains of
 * prediction and reconstruction overlap in the processor; the codes land at their
 * positions, so the stream is in plain order whatever the visit. */
#define LANES 8

/* Group g's rows (from row g, at most LANES): how many, and each one's length in len. */
static size_t lane_group(size_t g, size_t count, size_t row, size_t len[LANES]) {
    const size_t rows = (count + row - 1) / row, nl = rows - g < LANES ? rows - g : LANES;
    for (size_t l = 0; l < nl; l++) len[l] = count - (g + l) * row < row ? count - (g + l) * row : row;
    return nl;
}

size_t act_codec_encode(uint8_t *dst, const float *x, size_t count, size_t row, float eb, uint32_t *scratch) {
    uint32_t *codes = scratch, *raw = scratch + count; /* (count) each; raw where codes say verbatim */
    const float step = 2.0f * eb, inv_step = step > 0.0f ? 1.0f / step : 0.0f;
    const size_t rows = (count + row - 1) / row;
    float above = 0.0f; /* the reconstructed first value of the row above */
    for (size_t g = 0; g < rows; g += LANES) {
        float pred[LANES];
        size_t len[LANES];
        const size_t nl = lane_group(g, count, row, len);
        for (size_t l = 0; l < nl; l++) {
            const size_t i = (g + l) * row;
            codes[i] = quantize(x[i], above, eb, step, inv_step, &above);
            raw[i] = f2u(x[i]);
            pred[l] = above;
        }
        for (size_t j = 1; j < row; j++)
            for (size_t l = 0; l < nl; l++) {
                if (j >= len[l]) continue; /* the last, short row */
                const size_t i = (g + l) * row + j;
                codes[i] = quantize(x[i], pred[l], eb, step, inv_step, &pred[l]);
                raw[i] = f2u(x[i]);
            }
    }
    bit_writer w = {dst + 1, dst + act_codec_bound(count), 0, 0};
    int ok = 1;
    for (size_t b = 0; ok && b < count; b += BLOCK) {
        const int cnt = count - b < BLOCK ? (int)(count - b) : BLOCK;
        const int k = rice_k(codes + b, cnt);
        ok = put_bits(&w, (uint32_t)k, K_BITS);
        for (int i = 0; ok && i < cnt; i++) ok = put_code(&w, codes[b + i], k, raw[b + i]);
    }
    while (ok && w.n > 0) { /* the last bits, whole bytes */
        if (w.p == w.end) ok = 0;
        else *w.p++ = (uint8_t)w.acc;
        w.acc >>= 8;
        w.n -= 8;
    }
    if (!ok || (size_t)(w.p - dst) >= act_codec_bound(count)) {
        dst[0] = CHUNK_PLAIN;
        memcpy(dst + 1, x, count * sizeof(float));
        return act_codec_bound(count);
    }
    dst[0] = CHUNK_CODED;
    return (size_t)(w.p - dst);
}

typedef struct bit_reader {
    const uint8_t *p, *end;
    uint64_t acc;
    int n;
} bit_reader;

static void refill(bit_reader *r) {
    while (r->n <= 56) { /* whole bytes while they fit */
        const uint64_t byte = r->p < r->end ? *r->p : 0; /* past the end: zeros (an overrun is caught below) */
        r->p++;
        r->acc |= byte << r->n;
        r->n += 8;
    }
}

static inline uint32_t get_bits(bit_reader *r, int len) {
    if (r->n < len) refill(r); /* len <= 32 */
    const uint32_t v = (uint32_t)(r->acc & (len == 32 ? 0xffffffffu : ((1u << len) - 1u)));
    r->acc >>= len;
    r->n -= len;
    return v;
}

static inline uint32_t get_code(bit_reader *r, int k) {
    if (r->n < UNARY_CAP + 1) refill(r);
    const int ones = __builtin_ctzll(~r->acc);
    if (ones >= UNARY_CAP) {
        get_bits(r, UNARY_CAP);
        return get_bits(r, CODE_BITS);
    }
    r->acc >>= ones + 1;
    r->n -= ones + 1;
    return ((uint32_t)ones << k) | (k ? get_bits(r, k) : 0u);
}

/* Value of code c after pred; v: the verbatim value read with it. Bins and the other
 * codes are both computed and one chosen, without branches. */
static inline float decode_one(uint32_t c, float v, float pred, float step, float eb) {
    const uint32_t z = c > CODE_VERBATIM ? c - CODE_FAR_BINS : c == 2 || c == 3 ? c - 1 : 0u; /* zigzag(q) */
    const float bin = reconstruct(pred, step, (int32_t)(z >> 1) ^ -(int32_t)(z & 1u));
    const float direct[CODE_VERBATIM + 1] = {bin, 0.0f, bin, bin, 0.5f * eb, -0.5f * eb, -0.0f, v};
    return c > CODE_VERBATIM ? bin : direct[c];
}

int act_codec_decode(float *x, const uint8_t *src, size_t bytes, size_t count, size_t row, float eb,
                     uint32_t *scratch) {
    if (bytes < 1) return 0;
    if (src[0] == CHUNK_PLAIN) {
        if (bytes != act_codec_bound(count)) return 0;
        memcpy(x, src + 1, count * sizeof(float));
        return 1;
    }
    if (src[0] != CHUNK_CODED) return 0;
    uint32_t *codes = scratch; /* (count); verbatim values go straight to x */
    bit_reader r = {src + 1, src + bytes, 0, 0};
    int k = 0;
    for (size_t i = 0; i < count; i++) {
        if (i % BLOCK == 0 && (k = (int)get_bits(&r, K_BITS)) > CODE_BITS) return 0;
        codes[i] = get_code(&r, k);
        if (codes[i] == CODE_VERBATIM) x[i] = u2f(get_bits(&r, 32));
    }
    /* every bit read lay inside the chunk */
    if ((size_t)(r.p - (src + 1)) * 8 - (size_t)r.n > (bytes - 1) * 8) return 0;
    const float step = 2.0f * eb;
    const size_t rows = (count + row - 1) / row;
    float above = 0.0f;
    for (size_t g = 0; g < rows; g += LANES) { /* the encoder's order */
        float pred[LANES];
        size_t len[LANES];
        const size_t nl = lane_group(g, count, row, len);
        for (size_t l = 0; l < nl; l++) {
            const size_t i = (g + l) * row;
            pred[l] = above = x[i] = decode_one(codes[i], x[i], above, step, eb);
        }
        for (size_t j = 1; j < row; j++)
            for (size_t l = 0; l < nl; l++)
                if (j < len[l]) pred[l] = x[(g + l) * row + j] = decode_one(codes[(g + l) * row + j],
                                                                           x[(g + l) * row + j], pred[l], step, eb);
    }
    return 1;
}
