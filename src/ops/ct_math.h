/* Building blocks of the constant-time kernels (the *_ct functions of ops.h, used when
 * ctx->constant_time is set): comparisons turned into all-ones / all-zero masks,
 * selection by bit operations, and exp, expm1, log and the reciprocal computed from
 * polynomials and bit manipulation, with no table lookup and no branch on the value.
 *
 * A mask goes through an empty asm statement (ct_hide*) so that the compiler cannot
 * know it is 0 or ~0 and turn the select back into a branch. Everything here is
 * static inline; the accuracy is double precision unless said otherwise (the float
 * kernels round once at the end, so they agree with glibc's float functions to
 * within an ulp, almost always exactly).
 *
 * Division is avoided on values (ct_recip_pos uses Newton steps): the latency of
 * DIVSD/DIVSS depends on the operands on some x86 cores. Subnormal operands are the
 * caller's business: constant-time prediction runs with flush-to-zero and
 * denormals-are-zero set (src/core/fpenv.c). */
#ifndef TS_OPS_CT_MATH_H
#define TS_OPS_CT_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t ct_hide32(uint32_t x) {
#if defined(__GNUC__)
    __asm__("" : "+r"(x));
#endif
    return x;
}

static inline uint64_t ct_hide64(uint64_t x) {
#if defined(__GNUC__)
    __asm__("" : "+r"(x));
#endif
    return x;
}

/* ~0 when c (0 or 1, as a comparison gives) is 1, else 0 */
static inline uint32_t ct_mask32(int c) { return ct_hide32(0u - (uint32_t)c); }
static inline uint64_t ct_mask64(int c) { return ct_hide64(0u - (uint64_t)c); }

static inline uint32_t ct_fbits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline float ct_bitsf(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
static inline uint64_t ct_dbits(double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline double ct_bitsd(uint64_t u) {
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* m ? a : b, by bits */
static inline uint32_t ct_selu(uint32_t m, uint32_t a, uint32_t b) { return (a & m) | (b & ~m); }
static inline float ct_self(uint32_t m, float a, float b) { return ct_bitsf(ct_selu(m, ct_fbits(a), ct_fbits(b))); }
static inline double ct_seld(uint64_t m, double a, double b) {
    return ct_bitsd((ct_dbits(a) & m) | (ct_dbits(b) & ~m));
}

/* 1/d for d > 0 normal (and below 1e300): an initial guess from the exponent bits
 * (within 13%), then five Newton steps y <- y (2 - d y), each squaring the error. */
static inline double ct_recip_pos(double d) {
    double y = ct_bitsd(0x7FDE623822FC16E6ULL - ct_dbits(d));
    for (int i = 0; i < 5; i++) y = y * (2.0 - d * y);
    return y;
}

/* 1/d for every float value carried in a double: +-0 (and |d| < 1e-300) gives
 * +-inf, +-inf (and |d| > 1e300) gives +-0, NaN stays NaN. */
static inline double ct_recip(double d) {
    const uint64_t sign = ct_dbits(d) & 0x8000000000000000ULL;
    const double a = fabs(d);
    const uint64_t zero = ct_mask64(a < 1e-300), inf = ct_mask64(a > 1e300), nan = ct_mask64(d != d);
    double r = ct_recip_pos(ct_seld(zero | inf | nan, 1.0, a));
    r = ct_seld(zero, INFINITY, r);
    r = ct_seld(inf, 0.0, r);
    r = ct_bitsd(ct_dbits(r) | sign);
    return ct_seld(nan, d, r);
}

/* x = k ln2 + r with |r| <= ln2/2 (k = round(x / ln2) by the 1.5*2^52 trick, which
 * needs round-to-nearest); returns 2^k and sets *em1 = expm1(r) from its Taylor
 * series to degree 13 (error below 2e-16 relative). x must lie in [-708, 709]. */
static inline double ct_exp_reduce(double x, double *em1) {
    const double magic = 0x1.8p52, ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double t = x * 1.44269504088896338700e+00 + magic;
    const double kd = t - magic;
    const int64_t k = (int64_t)(ct_dbits(t) - ct_dbits(magic));
    const double r = (x - kd * ln2_hi) - kd * ln2_lo;
    /* expm1(r) = r (1 + r/2 (1 + r/3 (1 + ... (1 + r/13)))) */
    double q = 1.0;
    static const double inv[] = {0, 0, 1.0 / 2, 1.0 / 3, 1.0 / 4, 1.0 / 5, 1.0 / 6, 1.0 / 7,
                                 1.0 / 8, 1.0 / 9, 1.0 / 10, 1.0 / 11, 1.0 / 12, 1.0 / 13};
    for (int i = 13; i >= 2; i--) q = 1.0 + r * inv[i] * q;
    *em1 = r * q;
    return ct_bitsd((uint64_t)(k + 1023) << 52);
}

/* exp(x): 0 below -708 (where the result would be subnormal), +inf above 709 (the
 * kernels never pass more than 89), NaN stays NaN. */
static inline double ct_exp(double x) {
    const uint64_t nan = ct_mask64(x != x), lo = ct_mask64(x < -708.0), hi = ct_mask64(x > 709.0);
    const double xc = ct_seld(lo, -708.0, ct_seld(hi | nan, 709.0, x));
    double p;
    const double s = ct_exp_reduce(xc, &p);
    double e = s + s * p;
    e = ct_seld(lo, 0.0, e);
    e = ct_seld(hi, INFINITY, e);
    return ct_seld(nan, x, e);
}

/* expm1(x) = exp(x) - 1 with full relative accuracy near 0: 2^k expm1(r) + (2^k - 1),
 * where k = 0 leaves expm1(r) untouched. -1 below -708, +inf above 709. */
static inline double ct_expm1(double x) {
    const uint64_t nan = ct_mask64(x != x), lo = ct_mask64(x < -708.0), hi = ct_mask64(x > 709.0);
    const double xc = ct_seld(lo, -708.0, ct_seld(hi | nan, 709.0, x));
    double p;
    const double s = ct_exp_reduce(xc, &p);
    double e = s * p + (s - 1.0);
    e = ct_seld(lo, -1.0, e);
    e = ct_seld(hi, INFINITY, e);
    return ct_seld(nan, x, e);
}

/* log(x) for x > 0 normal: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m =
 * 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, by its series to s^25. +inf stays
 * +inf, 0 gives -inf, negative and NaN give NaN. */
static inline double ct_log(double x) {
    const uint64_t u = ct_dbits(x);
    const uint64_t nan = ct_mask64(!(x >= 0.0)), zero = ct_mask64(x == 0.0), inf = ct_mask64(x == INFINITY);
    int64_t e = (int64_t)((u >> 52) & 0x7ff) - 1023;
    double m = ct_bitsd((u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    const uint64_t big = ct_mask64(m > 1.41421356237309504880);
    m = ct_seld(big, m * 0.5, m);
    e += (int64_t)(big & 1);
    const double s = (m - 1.0) * ct_recip_pos(m + 1.0), s2 = s * s;
    /* atanh(s) = s (1 + s^2/3 + s^4/5 + ... + s^24/25) */
    static const double odd[] = {1.0,      1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9,  1.0 / 11, 1.0 / 13,
                                 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21, 1.0 / 23, 1.0 / 25};
    double q = odd[12];
    for (int n = 11; n >= 0; n--) q = odd[n] + s2 * q;
    const double ed = (double)e;
    double r = ed * 6.93147180369123816490e-01 + (ed * 1.90821492927058770002e-10 + 2.0 * s * q);
    r = ct_seld(zero, -INFINITY, r);
    r = ct_seld(inf, INFINITY, r);
    return ct_seld(nan, NAN, r);
}

/* sqrt(x) as exp(log(x) / 2) in double: +0 gives 0, +inf gives +inf, negative and NaN
 * give NaN. (A hardware square root's latency may depend on its operand.) */
static inline double ct_sqrt(double x) { return ct_exp(0.5 * ct_log(x)); }

/* erf(x): below |x| = 1 its Taylor series to x^33 (error below 1e-15); from there
 * 1 - erfc(|x|) with Numerical Recipes' erfcc Chebyshev fit (fractional error below
 * 1.2e-7 on erfc, so below 6e-8 on erf), the sign put back. Both are always computed
 * and one is selected. NaN stays NaN. */
static inline double ct_erf(double x) {
    const uint64_t nan = ct_mask64(x != x), neg = ct_mask64(x < 0.0);
    const double z = ct_seld(nan, 0.0, ct_seld(neg, -x, x)); /* |x|, 0 for NaN */
    /* 2/sqrt(pi) sum_n (-1)^n z^(2n+1) / (n! (2n+1)), z clamped to 1 where unused */
    const double zs = ct_seld(ct_mask64(z < 1.0), z, 1.0), z2 = zs * zs;
    /* reciprocals of n and 2n+1 as constants: no division on values */
    static const double inv_n[] = {0, 1.0, 1.0 / 2, 1.0 / 3, 1.0 / 4, 1.0 / 5, 1.0 / 6, 1.0 / 7, 1.0 / 8, 1.0 / 9,
                                   1.0 / 10, 1.0 / 11, 1.0 / 12, 1.0 / 13, 1.0 / 14, 1.0 / 15, 1.0 / 16};
    double term = zs, sum = zs;
    for (int n = 1; n <= 16; n++) {
        term *= -z2 * inv_n[n];
        sum += term * (1.0 / (double)(2 * n + 1)); /* depends on n only, never on x */
    }
    const double small = 1.12837916709551257390 * sum;
    const double zc = ct_seld(ct_mask64(z > 27.0), 27.0, z); /* erf is 1 in double from here; keeps inf out */
    const double t = ct_recip_pos(1.0 + 0.5 * zc);
    const double poly =
        -1.26551223 +
        t * (1.00002368 +
             t * (0.37409196 +
                  t * (0.09678418 +
                       t * (-0.18628806 +
                            t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    const double big = 1.0 - t * ct_exp(poly - zc * zc);
    double r = ct_seld(ct_mask64(z < 1.0), small, big);
    r = ct_seld(neg, -r, r);
    return ct_seld(nan, x, r);
}

#endif
