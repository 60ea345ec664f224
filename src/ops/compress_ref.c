/* Error-bounded compression of activations (COMET's SZ-style codec, docs/compressed-
 * activations.md), one chunk (a sample) at a time:
 *  1. every value is quantized on its own to a bin of width 2·eb, q = round(x / 2eb),
 *     and comes back as q·2eb ("pre-quantization": no value waits for its neighbour's
 *     reconstruction, so the pass has no serial chain);
 *  2. the chunk is coded either as the bins themselves or as each bin's difference from
 *     its left neighbour's (1-D Lorenzo along W; a row's first from the first of the row
 *     above), whichever the two histograms say costs fewer bits: the early layers of a
 *     network on real images are smooth, the deep ones and random inputs are not;
 *  3. the symbols are packed by a range asymmetric numeral system (rANS: two states,
 *     the even and the odd values', sharing one byte stream) with the chunk's own
 *     frequency table, so a symbol costs about its information content (a run of
 *     ReLU zeros a fraction of a bit each, where a Rice code spends at least one).
 * Guarantees, checked on every value in the encoder with the decoder's arithmetic:
 *  - |x - x'| <= eb;
 *  - a zero stays a zero (lossless: the same zero, +0.0 or -0.0) and a non-zero value
 *    keeps its sign and stays non-zero, so a ReLU's mask (x > 0) is exact;
 *  - a value that cannot meet both (or NaN, infinity, a bin beyond 2^20) is stored
 *    verbatim, so eb = 0 is lossless (as is a bound below 2^-125, too small to divide by).
 * A chunk whose code would take more room than the plain floats is stored plain. */
#include "ops.h"

#include <math.h>
#include <string.h>

/* Symbols. A regular value's zigzag z (of its bin, or of its bin's difference from
 * the prediction) below 16 is symbol 4 + z; a larger one is symbol 20 + (k - 4) for
 * k = floor(log2 z), its k low bits in the extra-bit stream (as DEFLATE's length
 * classes). The specials: +-eb/2 for a non-zero value within eb of zero (its bin, 0,
 * would lose it), a verbatim value (its 32 bits in the side stream), a -0.0 (lossless
 * only; lossy, either zero will do). A special counts as bin 0 for the prediction of
 * the next value. */
enum { SYM_HALF_POS = 0, SYM_HALF_NEG = 1, SYM_VERBATIM = 2, SYM_NEGZERO = 3, SYM_BIN = 4 };
#define DIRECT 16                     /* zigzags with a symbol of their own */
#define SYM_CLASS (SYM_BIN + DIRECT)  /* the class of zigzags in [2^4, 2^5) */
#define QMAX (1 << 20)                /* bins beyond this are stored verbatim */
#define ZZ_BITS 22                    /* zigzags of differences stay below 4 QMAX = 2^22 */
#define NSYM (SYM_CLASS + ZZ_BITS - 4)
#define PROB_BITS 12                  /* the frequency table sums to 2^12 */
#define PROB_SCALE (1u << PROB_BITS)
#define RANS_L (1u << 23)             /* the coder's state stays in [RANS_L, 2^31) */
enum { CHUNK_PLAIN = 0, CHUNK_RANS = 2 };
enum { MODE_DIRECT = 0, MODE_LORENZO = 1 };

size_t act_codec_bound(size_t count) {
    /* a chunk larger than plain is stored plain, so the bound is the plain size */
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

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The bound both sides use: NaN, negative and bounds so small that 1 / 2eb is not a
 * normal float become 0 (lossless, stricter), huge ones 2^125 (so 2eb stays finite). */
static float usable_eb(float eb) {
    if (!(eb >= 0x1p-125f)) return 0.0f;
    return eb < 0x1p125f ? eb : 0x1p125f;
}

static inline uint32_t zigzag(int32_t d) { return ((uint32_t)d << 1) ^ (uint32_t)(d >> 31); }
static inline int32_t unzigzag(uint32_t z) { return (int32_t)(z >> 1) ^ -(int32_t)(z & 1u); }

/* Step 1: each value's bin q[i] (0 for a special) and its special symbol in kind[i]
 * (SYM_BIN: none). Branch-free: which of a ReLU's zeros, small and large values comes
 * next is not predictable. */
static void quantize_ref(const float *restrict x, size_t from, size_t count, float eb, int32_t *restrict q,
                         uint8_t *restrict kind) {
    const float step = 2.0f * eb, inv_step = step > 0.0f ? 1.0f / step : 0.0f;
    const float half = 0.5f * eb, lim = (float)(QMAX - 1); /* so every |bin| < QMAX */
    const int lossy = eb > 0.0f, half_ok = half != 0.0f;
    for (size_t i = from; i < count; i++) {
        const float xi = x[i];
        const float r = xi * inv_step; /* eb = 0: 0, only bin 0 */
        const int in_range = fabsf(r) < lim;
        const float rc = in_range ? r : 0.0f; /* the conversion below is defined for every value */
        const float rf = truncf(rc + copysignf(0.5f, rc)); /* nearest, halves away from zero */
        const int32_t b = (int32_t)rf;
        const float v = rf * step;
        /* by its bits: with denormals-are-zero set (fpenv.c), a denormal compares equal to 0 */
        const int zero = (f2u(xi) & 0x7fffffffu) == 0u, negative = (int)(f2u(xi) >> 31);
        /* lossy: a zero's bin is 0 and comes back +0.0; lossless only +0.0 is bin 0 */
        const int zero_ok = lossy | (f2u(xi) == 0u);
        /* |v| <= 2|x| makes x - v exact (Sterbenz), so the bound is checked exactly: a value
         * just below eb rounds to bin 1 at 2eb, and x - v itself would round to eb */
        const int value_ok = (fabsf(xi - v) <= eb) & (fabsf(v) <= 2.0f * fabsf(xi)) & (v != 0.0f) &
                             ((int)(f2u(v) >> 31) == negative);
        const int regular = in_range & ((zero & zero_ok) | ((1 - zero) & value_ok));
        const int small = (1 - zero) & lossy & (fabsf(xi) <= eb) & half_ok;
        const int special = zero * SYM_NEGZERO + (1 - zero) * (small * (SYM_HALF_POS + negative * (SYM_HALF_NEG - SYM_HALF_POS)) +
                                                               (1 - small) * SYM_VERBATIM);
        q[i] = regular ? b : 0;
        kind[i] = (uint8_t)(regular * SYM_BIN + (1 - regular) * special);
    }
}


#if defined(__AVX512F__)
#include <immintrin.h>
/* quantize_ref's arithmetic on 16 values at a time (GCC does not vectorize the plain
 * loop); returns how many it did, a multiple of 16. The comparisons are the C
 * operators' (ordered, except != ). */
static size_t quantize_avx512(const float *x, size_t count, float eb, int32_t *q, uint8_t *kind) {
    const float step = 2.0f * eb, inv_step = step > 0.0f ? 1.0f / step : 0.0f;
    const float half = 0.5f * eb;
    const __mmask16 lossy = eb > 0.0f ? 0xffff : 0, half_ok = half != 0.0f ? 0xffff : 0;
    const __m512 vinv = _mm512_set1_ps(inv_step), vstep = _mm512_set1_ps(step), veb = _mm512_set1_ps(eb);
    const __m512 vlim = _mm512_set1_ps((float)(QMAX - 1)), vhalf = _mm512_set1_ps(0.5f), zero = _mm512_setzero_ps();
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), abs_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512i s_bin = _mm512_set1_epi32(SYM_BIN), s_verb = _mm512_set1_epi32(SYM_VERBATIM);
    const __m512i s_negzero = _mm512_set1_epi32(SYM_NEGZERO), s_hpos = _mm512_set1_epi32(SYM_HALF_POS);
    const __m512i s_hneg = _mm512_set1_epi32(SYM_HALF_NEG);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m512 xv = _mm512_loadu_ps(x + i);
        const __m512i xb = _mm512_castps_si512(xv);
        const __m512 r = _mm512_mul_ps(xv, vinv);
        const __m512 ar = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r), abs_mask));
        const __mmask16 in_range = _mm512_cmp_ps_mask(ar, vlim, _CMP_LT_OQ);
        const __m512 rc = _mm512_maskz_mov_ps(in_range, r);
        const __m512 h = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(rc), sign),
                                                             _mm512_castps_si512(vhalf)));
        const __m512 rf = _mm512_roundscale_ps(_mm512_add_ps(rc, h), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m512i b = _mm512_cvttps_epi32(rf);
        const __m512 v = _mm512_mul_ps(rf, vstep);
        const __mmask16 is_zero = _mm512_testn_epi32_mask(xb, abs_mask);
        const __mmask16 negative = _mm512_test_epi32_mask(xb, sign);
        const __mmask16 zero_ok = lossy | _mm512_cmpeq_epi32_mask(xb, _mm512_setzero_si512());
        const __m512 err = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(xv, v)), abs_mask));
        const __mmask16 v_negative = _mm512_test_epi32_mask(_mm512_castps_si512(v), sign);
        const __m512 ax = _mm512_castsi512_ps(_mm512_and_si512(xb, abs_mask));
        const __m512 av = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
        const __mmask16 value_ok = _mm512_cmp_ps_mask(err, veb, _CMP_LE_OQ) &
                                   _mm512_cmp_ps_mask(av, _mm512_add_ps(ax, ax), _CMP_LE_OQ) &
                                   _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ) & (__mmask16)~(v_negative ^ negative);
        const __mmask16 regular = in_range & ((is_zero & zero_ok) | ((__mmask16)~is_zero & value_ok));
        const __mmask16 small = (__mmask16)~is_zero & lossy & _mm512_cmp_ps_mask(ax, veb, _CMP_LE_OQ) & half_ok;
        __m512i k = _mm512_mask_mov_epi32(s_verb, small, _mm512_mask_mov_epi32(s_hpos, negative, s_hneg));
        k = _mm512_mask_mov_epi32(k, is_zero, s_negzero);
        k = _mm512_mask_mov_epi32(k, regular, s_bin);
        _mm512_storeu_si512((void *)(q + i), _mm512_maskz_mov_epi32(regular, b));
        _mm_storeu_si128((__m128i *)(kind + i), _mm512_cvtepi32_epi8(k));
    }
    return i;
}
#endif

/* simd 0: the plain loop alone (act_codec_encode_ref, the tests' oracle) */
static void quantize(const float *restrict x, size_t count, float eb, int32_t *restrict q, uint8_t *restrict kind,
                     int simd) {
    size_t done = 0;
#if defined(__AVX512F__)
    if (simd) done = quantize_avx512(x, count, eb, q, kind);
#endif
    (void)simd;
    quantize_ref(x, done, count, eb, q, kind);
}

/* The prediction of value i = r0 + j (r0 a row's start) in Lorenzo mode: its left
 * neighbour's bin, or for a row's first value the first of the row above's (0 for the
 * first). */
static inline int32_t predict(const int32_t *q, size_t r0, size_t j, size_t row) {
    return j ? q[r0 + j - 1] : r0 ? q[r0 - row] : 0;
}

/* Symbol of zigzag zz (< 2^ZZ_BITS) and how many extra bits follow it. */
static inline int zz_class(uint32_t zz) { return zz < DIRECT ? 0 : 31 - __builtin_clz(zz); }
static inline uint8_t symbol_of(uint32_t zz) {
    return zz < DIRECT ? (uint8_t)(SYM_BIN + zz) : (uint8_t)(SYM_CLASS + zz_class(zz) - 4);
}

/* The extra bits, least significant first, in value order. */
typedef struct bit_writer {
    uint8_t *p;
    uint64_t acc;
    int n;
} bit_writer;

static inline void put_bits(bit_writer *w, uint32_t v, int len) { /* len <= 32 */
    w->acc |= (uint64_t)v << w->n;
    w->n += len;
    while (w->n >= 8) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->n -= 8;
    }
}

typedef struct bit_reader {
    const uint8_t *p, *end;
    uint64_t acc;
    int n;
} bit_reader;

static inline int get_bits(bit_reader *r, int len, uint32_t *v) { /* len <= 32 */
    while (r->n < len) {
        if (r->p == r->end) return 0;
        r->acc |= (uint64_t)*r->p++ << r->n;
        r->n += 8;
    }
    *v = (uint32_t)(r->acc & ((1ull << len) - 1u));
    r->acc >>= len;
    r->n -= len;
    return 1;
}

/* Bits an order-0 code of histogram h (NSYM) over n symbols needs, the classes' extra
 * bits included. */
static double code_cost(const uint32_t *h, double n) {
    double bits = 0.0;
    for (int s = 0; s < NSYM; s++)
        if (h[s]) bits += h[s] * (log2(n / h[s]) + (s >= SYM_CLASS ? s - SYM_CLASS + 4 : 0));
    return bits;
}

/* Frequencies (NSYM) summing to PROB_SCALE, each symbol seen at least 1, from counts h
 * (n > 0 symbols). Deterministic: the rounding goes to the most frequent symbol. */
static void normalize(const uint32_t *h, size_t n, uint32_t *freq) {
    uint32_t sum = 0;
    int top = 0;
    for (int s = 0; s < NSYM; s++) {
        freq[s] = h[s] ? (uint32_t)((uint64_t)h[s] * PROB_SCALE / n) : 0u;
        if (h[s] && !freq[s]) freq[s] = 1;
        sum += freq[s];
        if (h[s] > h[top]) top = s;
    }
    if (sum <= PROB_SCALE) {
        freq[top] += PROB_SCALE - sum;
        return;
    }
    /* too many rare symbols raised to 1: take the excess from the largest ones */
    uint32_t excess = sum - PROB_SCALE;
    while (excess) {
        int big = 0;
        for (int s = 1; s < NSYM; s++)
            if (freq[s] > freq[big]) big = s;
        const uint32_t take = freq[big] - 1 < excess ? freq[big] - 1 : excess;
        freq[big] -= take;
        excess -= take;
    }
}

/* rANS encoding of one symbol (frequency f, cumulative start c): the state x becomes
 * floor(x / f) * 2^12 + x mod f + c, after shifting out bytes (written downwards from
 * *p, never below lo) until the result fits in 31 bits. The division is a multiply by
 * a 32-bit reciprocal, exact for x < 2^31 (Granlund and Montgomery). */
typedef struct rans_sym {
    uint32_t x_max, rcp, bias;
    uint16_t cmpl, shift;
} rans_sym;

static void rans_sym_init(rans_sym *s, uint32_t c, uint32_t f) {
    s->x_max = ((RANS_L >> PROB_BITS) << 8) * f;
    s->cmpl = (uint16_t)(PROB_SCALE - f);
    if (f < 2) { /* x * (2^32 - 1) >> 32 is x - 1: the bias adds it back */
        s->rcp = ~0u;
        s->shift = 0;
        s->bias = c + PROB_SCALE - 1;
    } else {
        uint32_t sh = 0;
        while (f > (1u << sh)) sh++;
        s->rcp = (uint32_t)(((1ull << (sh + 31)) + f - 1) / f);
        s->shift = (uint16_t)(sh - 1);
        s->bias = c;
    }
}

static inline int rans_put(uint32_t *x, uint8_t **p, const uint8_t *lo, const rans_sym *s) {
    uint32_t v = *x;
    /* at most two bytes out (x < 2^31, x_max >= 2^19), both written, then counted */
    if (*p - lo < 2) return 0;
    const int n = (v >= s->x_max) + ((uint64_t)v >= (uint64_t)s->x_max << 8);
    (*p)[-1] = (uint8_t)v;
    (*p)[-2] = (uint8_t)(v >> 8);
    *p -= n;
    v >>= 8 * n;
    const uint32_t d = (uint32_t)(((uint64_t)v * s->rcp) >> 32) >> s->shift;
    *x = v + s->bias + d * s->cmpl;
    return 1;
}

static size_t encode(uint8_t *dst, const float *x, size_t count, size_t row, float eb, uint32_t *scratch, int simd) {
    const size_t bound = act_codec_bound(count);
    int32_t *q = (int32_t *)scratch;             /* (count) bins */
    uint8_t *sym = (uint8_t *)(scratch + count); /* (count) symbols, direct code */
    uint8_t *lor = sym + count;                  /* (count) symbols, Lorenzo code */
    eb = usable_eb(eb);
    if (row == 0) row = 1;
    if (count == 0) goto plain;
    quantize(x, count, eb, q, sym, simd);
    /* both codes' symbols and histograms */
    for (size_t r0 = 0; r0 < count; r0 += row) {
        const size_t len = count - r0 < row ? count - r0 : row;
        for (size_t j = 0; j < len; j++) {
            const size_t i = r0 + j;
            const int regular = sym[i] == SYM_BIN;
            lor[i] = regular ? symbol_of(zigzag(q[i] - predict(q, r0, j, row))) : sym[i];
            sym[i] = regular ? symbol_of(zigzag(q[i])) : sym[i];
        }
    }
    uint32_t hd[NSYM] = {0}, hl[NSYM] = {0};
    for (size_t i = 0; i < count; i++) hd[sym[i]]++, hl[lor[i]]++;
    const uint32_t nside = hd[SYM_VERBATIM];
    const int mode = code_cost(hl, (double)count) < code_cost(hd, (double)count) ? MODE_LORENZO : MODE_DIRECT;
    const uint32_t *h = mode == MODE_LORENZO ? hl : hd;
    uint64_t extra = 0; /* bits */
    for (int s = SYM_CLASS; s < NSYM; s++) extra += (uint64_t)h[s] * (uint64_t)(s - SYM_CLASS + 4);
    const size_t extra_bytes = (size_t)((extra + 7) / 8);
    uint32_t freq[NSYM];
    normalize(h, count, freq);
    /* the header: kind, mode, the present symbols (a 64-bit mask), their frequencies
     * less one (16 bits each), the side words' count, the extra bits' bytes, then the
     * side words and the extra bits */
    uint64_t mask = 0;
    int present = 0;
    for (int s = 0; s < NSYM; s++)
        if (freq[s]) mask |= 1ull << s, present++;
    const size_t head = 2 + 8 + 2 * (size_t)present + 8 + 4 * (size_t)nside + extra_bytes;
    if (head + 8 >= bound) goto plain;
    dst[1] = (uint8_t)mode;
    for (int i = 0; i < 8; i++) dst[2 + i] = (uint8_t)(mask >> (8 * i));
    uint8_t *p = dst + 10;
    for (int s = 0; s < NSYM; s++)
        if (freq[s]) *p++ = (uint8_t)(freq[s] - 1), *p++ = (uint8_t)((freq[s] - 1) >> 8);
    put32(p, nside);
    put32(p + 4, (uint32_t)extra_bytes);
    p += 8;
    /* the side words and extra bits in value order */
    if (mode == MODE_LORENZO) sym = lor;
    bit_writer w = {p + 4 * (size_t)nside, 0, 0};
    for (size_t r0 = 0; (nside || extra) && r0 < count; r0 += row) {
        const size_t len = count - r0 < row ? count - r0 : row;
        for (size_t j = 0; j < len; j++) {
            const size_t i = r0 + j;
            if (sym[i] == SYM_VERBATIM) {
                put32(p, f2u(x[i]));
                p += 4;
            } else if (sym[i] >= SYM_CLASS) {
                const uint32_t zz = zigzag(mode == MODE_LORENZO ? q[i] - predict(q, r0, j, row) : q[i]);
                const int k = zz_class(zz);
                put_bits(&w, zz - (1u << k), k);
            }
        }
    }
    if (w.n) *w.p++ = (uint8_t)w.acc;
    /* rANS runs backwards over the symbols, its bytes from the chunk's end down */
    rans_sym rs[NSYM];
    for (int s = 0, c = 0; s < NSYM; c += (int)freq[s], s++)
        if (freq[s]) rans_sym_init(&rs[s], (uint32_t)c, freq[s]);
    /* two states, the even values' and the odd ones', so that the decoder's two
     * dependency chains overlap; they share the byte stream */
    uint8_t *out = dst + bound;
    const uint8_t *lo = dst + head + 8; /* room for the final states */
    uint32_t state[2] = {RANS_L, RANS_L};
    for (size_t i = count; i-- > 0;)
        if (!rans_put(&state[i & 1], &out, lo, &rs[sym[i]])) goto plain;
    put32(dst + head, state[0]);
    put32(dst + head + 4, state[1]);
    const size_t tail = (size_t)(dst + bound - out);
    if (head + 8 + tail >= bound) goto plain;
    memmove(dst + head + 8, out, tail);
    dst[0] = CHUNK_RANS;
    return head + 8 + tail;
plain:
    dst[0] = CHUNK_PLAIN;
    if (count) memcpy(dst + 1, x, count * sizeof(float));
    return bound;
}

size_t act_codec_encode(uint8_t *dst, const float *x, size_t count, size_t row, float eb, uint32_t *scratch) {
    return encode(dst, x, count, row, eb, scratch, 1);
}

size_t act_codec_encode_ref(uint8_t *dst, const float *x, size_t count, size_t row, float eb, uint32_t *scratch) {
    return encode(dst, x, count, row, eb, scratch, 0);
}

int act_codec_decode(float *x, const uint8_t *src, size_t bytes, size_t count, size_t row, float eb,
                     uint32_t *scratch) {
    if (bytes < 1) return 0;
    if (src[0] == CHUNK_PLAIN) {
        if (bytes != act_codec_bound(count)) return 0;
        if (count) memcpy(x, src + 1, count * sizeof(float));
        return 1;
    }
    if (src[0] != CHUNK_RANS || bytes < 10 || src[1] > MODE_LORENZO) return 0;
    eb = usable_eb(eb);
    if (row == 0) row = 1;
    const int mode = src[1];
    uint64_t mask = 0;
    for (int i = 0; i < 8; i++) mask |= (uint64_t)src[2 + i] << (8 * i);
    if (mask >> NSYM) return 0;
    const uint8_t *p = src + 10, *end = src + bytes;
    uint32_t freq[NSYM] = {0}, start[NSYM] = {0}, total = 0;
    for (int s = 0; s < NSYM; s++) {
        if (!(mask >> s & 1)) continue;
        if (end - p < 2) return 0;
        freq[s] = 1u + ((uint32_t)p[0] | (uint32_t)p[1] << 8);
        p += 2;
        start[s] = total;
        total += freq[s];
        if (total > PROB_SCALE) return 0;
    }
    if (total != PROB_SCALE || end - p < 8) return 0;
    const uint32_t nside = get32(p), extra_bytes = get32(p + 4);
    p += 8;
    if (nside > count || extra_bytes > bytes || (size_t)(end - p) < 4 * (size_t)nside + (size_t)extra_bytes + 4) return 0;
    const uint8_t *side = p, *side_end = p + 4 * (size_t)nside;
    bit_reader br = {side_end, side_end + extra_bytes, 0, 0};
    p = side_end + extra_bytes;
    /* per slot of the table, all a decoding step needs in one word: the symbol (6 bits),
     * its frequency (13) and the slot's offset in it (12) */
    uint32_t slots[PROB_SCALE];
    for (int s = 0; s < NSYM; s++)
        for (uint32_t k = 0; k < freq[s]; k++) slots[start[s] + k] = (uint32_t)s | freq[s] << 6 | k << 19;
    if (end - p < 8) return 0;
    uint32_t state[2] = {get32(p), get32(p + 4)};
    p += 8;
    for (int k = 0; k < 2; k++)
        if (state[k] < RANS_L || state[k] >= (1u << 31)) return 0;
    int32_t *q = (int32_t *)scratch; /* (count) bins */
    const float step = 2.0f * eb, half = 0.5f * eb;
    const int lorenzo = mode == MODE_LORENZO;
    float value[NSYM] = {0}; /* the specials' */
    value[SYM_HALF_POS] = half, value[SYM_HALF_NEG] = -half, value[SYM_NEGZERO] = -0.0f;
    for (size_t r0 = 0; r0 < count; r0 += row) {
        const size_t len = count - r0 < row ? count - r0 : row;
        int32_t prev = lorenzo && r0 ? q[r0 - row] : 0; /* a row's first: from the first above */
        for (size_t j = 0; j < len; j++) {
            const size_t i = r0 + j;
            uint32_t *st = &state[i & 1];
            const uint32_t e = slots[*st & (PROB_SCALE - 1)];
            const int s = (int)(e & 63u);
            *st = (e >> 6 & 0x1fffu) * (*st >> PROB_BITS) + (e >> 19);
            while (*st < RANS_L) {
                if (p == end) return 0;
                *st = *st << 8 | *p++;
            }
            uint32_t zz = (uint32_t)(s - SYM_BIN); /* a special: masked below */
            if (s >= SYM_CLASS) {
                const int k = s - SYM_CLASS + 4;
                if (!get_bits(&br, k, &zz)) return 0;
                zz += 1u << k;
            }
            /* bins and the frequent specials (+-eb/2 around a convolution's zeros) on one
             * path, chosen by selects (a branch per kind measured no faster) */
            const int32_t b = s >= SYM_BIN ? unzigzag(zz) + (lorenzo ? prev : 0) : 0;
            if (b <= -QMAX || b >= QMAX) return 0; /* no encoder writes one */
            q[i] = prev = b;
            x[i] = s >= SYM_BIN ? (float)b * step : value[s];
            if (s == SYM_VERBATIM) {
                if (side == side_end) return 0;
                x[i] = u2f(get32(side));
                side += 4;
            }
        }
    }
    /* every byte used, every side word and extra byte read, and the state back where
     * the encoder began */
    return p == end && side == side_end && br.p == br.end && state[0] == RANS_L && state[1] == RANS_L;
}
