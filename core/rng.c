/* xoshiro256** seeded through splitmix64; uniform, normal, bounded and shuffle helpers. */
#include "rng.h"

#include <math.h>

__extension__ typedef unsigned __int128 u128; /* GCC/Clang; -Wpedantic needs the marker */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mr_rng_seed(mr_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t mr_rng_next(mr_rng *rng) {
    uint64_t *s = rng->s;
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

float mr_rng_uniform(mr_rng *rng) {
    return (float)(mr_rng_next(rng) >> 40) * 0x1.0p-24f;
}

double mr_rng_uniform_double(mr_rng *rng) {
    return (double)(mr_rng_next(rng) >> 11) * 0x1.0p-53;
}

float mr_rng_normal(mr_rng *rng) {
    double u1 = 1.0 - mr_rng_uniform_double(rng); /* (0, 1] keeps log finite */
    double u2 = mr_rng_uniform_double(rng);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t mr_rng_below(mr_rng *rng, uint64_t n) {
    /* Lemire's multiply-shift with rejection: unbiased for every n. */
    u128 m = (u128)mr_rng_next(rng) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (u128)mr_rng_next(rng) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

void mr_rng_shuffle_i64(mr_rng *rng, int64_t *items, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mr_rng_below(rng, (uint64_t)i + 1);
        int64_t t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
}
