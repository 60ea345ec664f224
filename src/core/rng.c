/* xoshiro256** seeded by splitmix64: fast, good quality, state is 32 bytes of plain
 * data so checkpoints can save and restore it exactly. */
#include "core.h"

void ts_rng_seed(ts_rng *r, uint64_t seed) {
    /* splitmix64's first four outputs from state `seed` */
    for (int i = 0; i < 4; i++) r->s[i] = ts_splitmix64(seed + (uint64_t)i * TS_GOLDEN64);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ts_rng_next(ts_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float ts_rng_uniform(ts_rng *r) { return (float)(ts_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

uint64_t ts_rng_below(ts_rng *r, uint64_t n) {
    /* rejection sampling: discard the top partial range */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = ts_rng_next(r);
    while (x >= limit);
    return x % n;
}
