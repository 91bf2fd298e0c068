/* Seeded random numbers (xoshiro256**): the whole state is four words, so checkpoints save and
 * restore it exactly and a resumed run draws the same numbers as an uninterrupted one. */
#ifndef MR_RNG_H
#define MR_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} mr_rng;

void mr_rng_seed(mr_rng *rng, uint64_t seed);
uint64_t mr_rng_next(mr_rng *rng);
/* Uniform in [0, 1). */
float mr_rng_uniform(mr_rng *rng);
double mr_rng_uniform_double(mr_rng *rng);
/* Standard normal (Box-Muller, no cached spare so the state is just the four words). */
float mr_rng_normal(mr_rng *rng);
/* Uniform integer in [0, n). */
uint64_t mr_rng_below(mr_rng *rng, uint64_t n);
/* Fisher-Yates shuffle. */
void mr_rng_shuffle_i64(mr_rng *rng, int64_t *items, int64_t n);

#endif
